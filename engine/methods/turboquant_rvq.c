// methods/turboquant_rvq.c — residual TurboQuant: P = cfg->num_residuals
// passes of per-coordinate scalar quantization in one random basis.
// Pass 1 quantizes y = R x/|x| (R: randomized Hadamard, or dense when
// use_hadamard is false) with the Lloyd-Max codebook of the Gaussian
// N(0, 1/d) coordinate law; pass p > 1 quantizes the residual left by passes
// 1..p-1 with a codebook fitted to that residual's law. The residual law
// (peaked, Laplacian-like, and for bits = 1 bimodal) has no closed form, so
// it is fitted at plan time: 512 seeded uniform random unit vectors of
// dimension d (65,536 exact coordinate samples) are pushed through the
// earlier passes and kvq_lloydmax_fit (100 Lloyd rounds) fits each pass's
// codebook on their residuals. Deterministic given cfg->seed.
//
// bits = bits per pass; a vector holds P * bits code bits per coordinate.
// Record (bytes_per_vector): [pass 1 codes]...[pass P codes][|x| fp16],
// each pass kvq_pack(d codes, bits); e.g. d=128, bits=2, P=2: 64 + 2 bytes.
// Query state: one LUT per pass, lut[p][j][k] = (R q)_j level_{p,k}.
#include <math.h>
#include <stdlib.h>
#include "pack.h"
#include "rng.h"
#include "tq_common.h"

#define RVQ_FIT_VECTORS 512
#define RVQ_MAX_PASSES 8

typedef struct {
    int d, bits, passes;
    kvq_rotation rot;
    kvq_codebook cb[RVQ_MAX_PASSES];
    size_t pass_bytes, bpv, lut_floats;   // lut_floats: per pass, d 2^bits
} tq_rvq_plan;

void kvq_tq_rvq_plan_free(void *plan)
{
    tq_rvq_plan *p = plan;
    if (!p) return;
    kvq_rotation_free(&p->rot);
    free(p);
}

// Fit passes 2..P on residuals of exact unit-vector coordinates.
static kvq_status rvq_fit(tq_rvq_plan *p, const kvq_plan_params *pp)
{
    const int d = p->d;
    const size_t n = (size_t)RVQ_FIT_VECTORS * d;
    float *e = malloc(n * sizeof *e);
    if (!e) return kvq_error(KVQ_ERR_NOMEM, "turboquant_rvq: cannot allocate fit samples");
    kvq_rng r;
    kvq_rng_seed(&r, tq_stream_seed(pp, TQ_STREAM_RVQ));
    for (int v = 0; v < RVQ_FIT_VECTORS; v++) kvq_rng_unit_vector(&r, e + (size_t)v * d, d);
    kvq_status s = KVQ_OK;
    for (int ps = 1; ps < p->passes && !s; ps++) {
        const kvq_codebook *prev = &p->cb[ps - 1];
        for (size_t i = 0; i < n; i++) e[i] -= prev->levels[kvq_codebook_index(prev, e[i])];
        s = kvq_lloydmax_fit(&p->cb[ps], e, n, p->bits, 100);
    }
    free(e);
    return s;
}

kvq_status kvq_tq_rvq_plan_new(const kvq_plan_params *pp, void **plan)
{
    static const char who[] = "turboquant_rvq";
    *plan = NULL;
    if (pp->bits < 1 || pp->bits > 8)
        return kvq_error(KVQ_ERR_ARG, "%s: bits per pass %d out of range (expected 1..8)", who,
                         pp->bits);
    kvq_status s = tq_check_dims(pp, who);
    if (s) return s;
    int passes = pp->cfg ? pp->cfg->num_residuals : 2;
    if (passes < 1 || passes > RVQ_MAX_PASSES)
        return kvq_error(KVQ_ERR_ARG, "%s: num_residuals %d out of range (expected 1..%d)", who,
                         passes, RVQ_MAX_PASSES);
    if (pp->cfg && pp->cfg->outlier_channels > 0)
        return kvq_error(KVQ_ERR_UNSUPPORTED,
                         "%s: outlier_channels %d is not supported (mixed channels exist in "
                         "turboquant_mse and turboquant_prod; set outlier_channels=0)",
                         who, pp->cfg->outlier_channels);
    tq_rvq_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "%s: cannot allocate a plan", who);
    p->d = pp->head_dim;
    p->bits = pp->bits;
    p->passes = passes;
    p->pass_bytes = kvq_pack_bytes((size_t)p->d, p->bits);
    p->bpv = (size_t)passes * p->pass_bytes + 2;
    p->lut_floats = (size_t)p->d << p->bits;
    s = kvq_lloydmax_solve(&p->cb[0], KVQ_DENSITY_GAUSS, 1.0 / sqrt((double)p->d), p->bits);
    if (!s) s = rvq_fit(p, pp);
    bool had = pp->cfg && pp->cfg->use_hadamard;
    if (!s) s = kvq_rotation_new(&p->rot, p->d, had, tq_stream_seed(pp, TQ_STREAM_ROT));
    if (s) {
        kvq_tq_rvq_plan_free(p);
        return s;
    }
    *plan = p;
    return KVQ_OK;
}

size_t kvq_tq_rvq_bytes_per_vector(const void *plan) { return ((const tq_rvq_plan *)plan)->bpv; }

void kvq_tq_rvq_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const tq_rvq_plan *p = plan;
    const int d = p->d;
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];
    uint8_t c[KVQ_MAX_HEAD_DIM];
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t cnt = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        kvq_rotation_apply_batch(&p->rot, x + i0 * d, y, cnt);
        for (size_t i = 0; i < cnt; i++) {
            const float *xi = x + (i0 + i) * d;
            float *yi = y + i * d;
            double nn = 0.0;
            for (int j = 0; j < d; j++) nn += (double)xi[j] * xi[j];
            float norm = (float)sqrt(nn), inv = norm > 0.0f ? 1.0f / norm : 0.0f;
            for (int j = 0; j < d; j++) yi[j] *= inv;
            uint8_t *rec = codes + (i0 + i) * p->bpv;
            for (int ps = 0; ps < p->passes; ps++) {   // yi becomes the running residual
                const kvq_codebook *cb = &p->cb[ps];
                for (int j = 0; j < d; j++) {
                    c[j] = (uint8_t)kvq_codebook_index(cb, yi[j]);
                    yi[j] -= cb->levels[c[j]];
                }
                kvq_pack(c, (size_t)d, p->bits, rec + ps * p->pass_bytes);
            }
            tq_put_f16(rec + p->passes * p->pass_bytes, norm);
        }
    }
}

void kvq_tq_rvq_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const tq_rvq_plan *p = plan;
    const int d = p->d;
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];
    uint8_t c[KVQ_MAX_HEAD_DIM];
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t cnt = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        for (size_t i = 0; i < cnt; i++) {
            const uint8_t *rec = codes + (i0 + i) * p->bpv;
            float *yi = y + i * d;
            for (int j = 0; j < d; j++) yi[j] = 0.0f;
            for (int ps = 0; ps < p->passes; ps++) {
                kvq_unpack(rec + ps * p->pass_bytes, (size_t)d, p->bits, c);
                for (int j = 0; j < d; j++) yi[j] += p->cb[ps].levels[c[j]];
            }
            float norm = tq_get_f16(rec + p->passes * p->pass_bytes);
            for (int j = 0; j < d; j++) yi[j] *= norm;
        }
        kvq_rotation_apply_t_batch(&p->rot, y, x + i0 * d, cnt);
    }
}

size_t kvq_tq_rvq_query_bytes(const void *plan)
{
    const tq_rvq_plan *p = plan;
    return (size_t)p->passes * p->lut_floats * sizeof(float);
}

void kvq_tq_rvq_prepare_query(const void *plan, const float *q, void *qs)
{
    const tq_rvq_plan *p = plan;
    float qr[KVQ_MAX_HEAD_DIM];
    kvq_rotation_apply(&p->rot, q, qr);
    float *lut = qs;
    const int nl = 1 << p->bits;
    for (int ps = 0; ps < p->passes; ps++)
        for (int j = 0; j < p->d; j++, lut += nl)
            for (int k = 0; k < nl; k++) lut[k] = qr[j] * p->cb[ps].levels[k];
}

void kvq_tq_rvq_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                      float *scores)
{
    const tq_rvq_plan *p = plan;
    const int d = p->d, nl = 1 << p->bits;
    uint8_t c[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = codes + i * p->bpv;
        const float *lut = qs;
        float acc = 0.0f;
        for (int ps = 0; ps < p->passes; ps++) {
            kvq_unpack(rec + ps * p->pass_bytes, (size_t)d, p->bits, c);
            for (int j = 0; j < d; j++, lut += nl) acc += lut[c[j]];
        }
        scores[i] = tq_get_f16(rec + p->passes * p->pass_bytes) * acc;
    }
}

size_t kvq_tq_rvq_side_bytes(const void *plan)
{
    const tq_rvq_plan *p = plan;
    size_t b = kvq_rotation_bytes(&p->rot);
    for (int i = 0; i < p->passes; i++) b += kvq_codebook_bytes(&p->cb[i]);
    return b;
}
