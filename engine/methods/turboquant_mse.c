// methods/turboquant_mse.c — TurboQuant Algorithm 1 (arXiv 2504.19874):
// store |x|, rotate x/|x| into a random basis (dense Haar or randomized
// Hadamard), quantize every coordinate with the Lloyd-Max codebook of the
// Beta law of one coordinate of a random unit vector in dimension d.
//
// Record (bytes_per_vector): [packed codes: tq_core_code_bytes][|x|: fp16]
// e.g. d=128, bits=3: 48 + 2 = 50 bytes = 3.125 bits per coordinate.
// Query state: the LUT lut[j][k] = (R q)_j level_k (tq_core lut_floats),
// so score(k) = |k| sum_j lut[j][code_j] = q . decode(k) without a decode.
#include <math.h>
#include <stdlib.h>
#include "tq_common.h"

typedef struct {
    tq_core core;
    size_t bpv;
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
    const tq_core *c = &p->core;
    const int d = c->d;
    const size_t cb = tq_core_code_bytes(c);
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];   // (chunk, d) rotated rows
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t m = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        // Rotation is linear: rotate x and scale by 1/|x| afterwards.
        kvq_rotation_apply_batch(&c->rot, x + i0 * d, y, m);
        for (size_t i = 0; i < m; i++) {
            const float *xi = x + (i0 + i) * d;
            float *yi = y + i * d;
            double nn = 0.0;
            for (int j = 0; j < d; j++) nn += (double)xi[j] * xi[j];
            float norm = (float)sqrt(nn), inv = norm > 0.0f ? 1.0f / norm : 0.0f;
            for (int j = 0; j < d; j++) yi[j] *= inv;
            uint8_t *rec = codes + (i0 + i) * p->bpv;
            tq_core_quantize(c, yi, rec, NULL);
            tq_put_f16(rec + cb, norm);
        }
    }
}

void kvq_tq_mse_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const tq_mse_plan *p = plan;
    const tq_core *c = &p->core;
    const int d = c->d;
    const size_t cb = tq_core_code_bytes(c);
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t m = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        for (size_t i = 0; i < m; i++) {
            const uint8_t *rec = codes + (i0 + i) * p->bpv;
            float norm = tq_get_f16(rec + cb);
            tq_core_dequantize(c, rec, y + i * d);
            for (int j = 0; j < d; j++) y[i * d + j] *= norm;
        }
        kvq_rotation_apply_t_batch(&c->rot, y, x + i0 * d, m);
    }
}

size_t kvq_tq_mse_query_bytes(const void *plan)
{
    return ((const tq_mse_plan *)plan)->core.lut_floats * sizeof(float);
}

void kvq_tq_mse_prepare_query(const void *plan, const float *q, void *qs)
{
    const tq_mse_plan *p = plan;
    float qr[KVQ_MAX_HEAD_DIM];
    kvq_rotation_apply(&p->core.rot, q, qr);
    tq_core_build_lut(&p->core, qr, qs);
}

void kvq_tq_mse_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                      float *scores)
{
    const tq_mse_plan *p = plan;
    const size_t cb = tq_core_code_bytes(&p->core);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = codes + i * p->bpv;
        scores[i] = tq_get_f16(rec + cb) * tq_core_lut_dot(&p->core, qs, rec);
    }
}
