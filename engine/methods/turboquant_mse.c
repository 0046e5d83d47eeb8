// methods/turboquant_mse.c — TurboQuant Algorithm 1 (arXiv 2504.19874):
// store |x|, rotate x/|x| into a random basis (dense Haar or randomized
// Hadamard), quantize every coordinate with the Lloyd-Max codebook of the
// Beta law of one coordinate of a random unit vector in dimension d.
//
// Record (bytes_per_vector): [packed codes: tq_core_code_bytes][|x|: fp16]
// e.g. d=128, bits=3: 48 + 2 = 50 bytes = 3.125 bits per coordinate.
// Query state: the LUT lut[j][k] = (R q)_j level_k (tq_core lut_floats),
// so score(k) = |k| sum_j lut[j][code_j] = q . decode(k) without a decode
// (the scalar spec), then R q itself, which the AVX2 kernel multiplies with
// 8 levels at a time (vpermps of the codebook by the codes). With config
// query_int8 (keys), the state ends with the query rounded to int8
// (tq_q8) and every score of the plan is tq_i8_score_rows'.
#include <math.h>
#include <stdlib.h>
#include "simd.h"
#include "tq_common.h"
#include "turboquant_mse.h"

typedef struct {
    tq_core core;
    size_t bpv;
    bool i8;            // keys scored from an int8 query (config query_int8)
    tq_i8_levels lv8;   // when i8
} tq_mse_plan;

kvq_status kvq_tq_mse_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    tq_mse_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "turboquant_mse: cannot allocate a plan");
    int n_hi = pp->cfg ? pp->cfg->outlier_channels : 0;
    kvq_status s = tq_core_init(&p->core, pp, pp->bits, n_hi, "turboquant_mse");
    if (s) {
        tq_core_free(&p->core);
        free(p);
        return s;
    }
    p->bpv = tq_core_code_bytes(&p->core) + 2;
    p->i8 = pp->cfg && pp->cfg->query_int8 && !pp->is_value;
    if (p->i8 && (s = tq_i8_levels_init(&p->core, &p->lv8, "turboquant_mse"))) {
        kvq_tq_mse_plan_free(p);
        return s;
    }
    *plan = p;
    return KVQ_OK;
}

void kvq_tq_mse_plan_free(void *plan)
{
    tq_mse_plan *p = plan;
    if (!p) return;
    tq_core_free(&p->core);
    free(p);
}

size_t kvq_tq_mse_bytes_per_vector(const void *plan) { return ((const tq_mse_plan *)plan)->bpv; }

void kvq_tq_mse_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const tq_mse_plan *p = plan;
    tq_core_encode_rows(&p->core, x, n, codes, p->bpv);
}

void kvq_tq_mse_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const tq_mse_plan *p = plan;
    tq_core_decode_rows(&p->core, codes, p->bpv, n, x);
}

// Query state: the LUT (lut_floats), then R q (d), then R q in the AVX2
// kernels' permuted order (d; a copy when d % 64 != 0), then (i8 plans)
// the tq_q8 of R q.
size_t kvq_tq_mse_query_bytes(const void *plan)
{
    const tq_mse_plan *p = plan;
    const tq_core *c = &p->core;
    return (c->lut_floats + 2 * (size_t)c->d) * sizeof(float) + (p->i8 ? sizeof(tq_q8) : 0);
}

static const tq_q8 *query_q8(const tq_core *c, const void *qs)
{
    return (const tq_q8 *)(const void *)((const float *)qs + c->lut_floats + 2 * (size_t)c->d);
}

static const float *query_rotated(const tq_core *c, const void *qs)
{
    return (const float *)qs + c->lut_floats;
}

static const float *query_permuted(const tq_core *c, const void *qs)
{
    return (const float *)qs + c->lut_floats + c->d;
}

void kvq_tq_mse_prepare_query(const void *plan, const float *q, void *qs)
{
    const tq_mse_plan *p = plan;
    const int d = p->core.d;
    float *qr = (float *)qs + p->core.lut_floats, *qp = qr + d;
    tq_core_rotate(&p->core, q, qr);
    tq_core_build_lut(&p->core, qr, qs);
    if (d % 64 == 0) tq_permute(d, qr, qp);
    else memcpy(qp, qr, sizeof(float) * (size_t)d);
    if (p->i8) tq_i8_quantize_query(&p->core, &p->lv8, qr, (tq_q8 *)(void *)(qp + d));
}

static bool fast_scores(const tq_core *c) { return tq_core_grouped(c) && kvq_simd_avx2(); }

// nq <= 8 queries from their states, by the fastest path available.
static void score_states(const tq_mse_plan *p, const void *const *qs, int nq, const uint8_t *codes,
                         size_t n, float *scores, size_t lds)
{
    const float *q[8];
    if (tq_core_permuted(&p->core)) {
        for (int i = 0; i < nq; i++) q[i] = query_permuted(&p->core, qs[i]);
        tq_core_score_rows_p(&p->core, q, nq, codes, p->bpv, n, scores, lds);
    } else {
        for (int i = 0; i < nq; i++) q[i] = query_rotated(&p->core, qs[i]);
        tq_core_score_rows(&p->core, q, nq, codes, p->bpv, n, scores, lds);
    }
}

static void score_i8(const tq_mse_plan *p, const void *const *qs, int nq, const uint8_t *codes, size_t n,
                     float *scores, size_t lds)
{
    const tq_q8 *q[8];
    for (int q0 = 0; q0 < nq; q0 += 8) {
        int k = nq - q0 < 8 ? nq - q0 : 8;
        for (int i = 0; i < k; i++) q[i] = query_q8(&p->core, qs[q0 + i]);
        tq_i8_score_rows(&p->core, &p->lv8, q, k, codes, p->bpv, n, scores + (size_t)q0 * lds, lds);
    }
}

void kvq_tq_mse_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                      float *scores)
{
    const tq_mse_plan *p = plan;
    if (p->i8) {
        score_i8(p, &qs, 1, codes, n, scores, n);
        return;
    }
    if (fast_scores(&p->core)) {
        score_states(p, &qs, 1, codes, n, scores, n);
        return;
    }
    const size_t cb = tq_core_code_bytes(&p->core);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = codes + i * p->bpv;
        scores[i] = tq_get_f16(rec + cb) * tq_core_lut_dot(&p->core, qs, rec);
    }
}

// ---- fused-attention extensions (turboquant_mse.h) ----
bool kvq_tq_mse_is(const kvq_method *m) { return m && m->encode == kvq_tq_mse_encode; }

void kvq_tq_mse_score_multi(const void *plan, const void *const *qs, int nq, const uint8_t *codes,
                            size_t n, float *scores, size_t lds)
{
    const tq_mse_plan *p = plan;
    if (p->i8) {
        score_i8(p, qs, nq, codes, n, scores, lds);
        return;
    }
    if (fast_scores(&p->core)) {
        for (int q0 = 0; q0 < nq; q0 += 8)
            score_states(p, qs + q0, nq - q0 < 8 ? nq - q0 : 8, codes, n, scores + (size_t)q0 * lds, lds);
        return;
    }
    for (int q = 0; q < nq; q++) kvq_tq_mse_score(plan, qs[q], codes, n, scores + (size_t)q * lds);
}

bool kvq_tq_mse_acc_permuted(const void *plan)
{
    return tq_core_permuted(&((const tq_mse_plan *)plan)->core);
}

void kvq_tq_mse_accumulate(const void *plan, const uint8_t *codes, size_t n, const float *w,
                           size_t ldw, int nq, float *acc, bool permuted)
{
    const tq_mse_plan *p = plan;
    if (permuted) tq_core_accumulate_rows_p(&p->core, codes, p->bpv, n, w, ldw, nq, acc);
    else tq_core_accumulate_rows(&p->core, codes, p->bpv, n, w, ldw, nq, acc);
}

void kvq_tq_mse_unrotate(const void *plan, const float *acc, float *out, bool permuted)
{
    const tq_core *c = &((const tq_mse_plan *)plan)->core;
    float nat[KVQ_MAX_HEAD_DIM];
    if (permuted) {
        tq_unpermute(c->d, acc, nat);
        acc = nat;
    }
    tq_core_rotate_t(c, acc, out);
}

size_t kvq_tq_mse_side_bytes(const void *plan)
{
    const tq_core *c = &((const tq_mse_plan *)plan)->core;
    return kvq_rotation_bytes(&c->rot) + kvq_codebook_bytes(&c->cb_lo) +
           (c->n_hi ? kvq_codebook_bytes(&c->cb_hi) : 0);
}
