// methods/turboquant_prod.c — TurboQuant Algorithm 2 (arXiv 2504.19874):
// TurboQuant-MSE at bits-1 plus a 1-bit QJL sketch of the residual, so that
// inner products are unbiased:
//   <q, x> ~ <q, x_mse> + |r| sqrt(pi/2)/m <S q, sign(S r)>,  r = x - x_mse,
// S (m, d) i.i.d. N(0, 1), m = cfg->sketch_dim (0 = head_dim), seeded from
// its own kvq_rng_seed2 stream (never the rotation's). bits = 1 is pure QJL.
//
// Everything is computed in the rotated basis (y = R x): the residual there is
// R r and S R is again i.i.d. Gaussian given R, so the estimator is the same.
//
// Record (bytes_per_vector), bits >= 2:
//   [MSE codes at bits-1: tq_core_code_bytes][|x| fp16][signs: ceil(m/8)][|r| fp16]
// bits = 1: [signs: ceil(m/8)][|x| fp16]   (r = x)
// e.g. d = m = 128, bits = 3: 32 + 2 + 16 + 2 = 52 bytes = 3.25 bits/coord.
// Query state: [LUT (bits >= 2)][c S R q: m floats][sum of those: 1 float],
// c = sqrt(pi/2)/m. decode returns x_mse + |r| c R^T S^T sign(S r), so
// score = q . decode exactly (up to float rounding).
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include "pack.h"
#include "rng.h"
#include "tq_common.h"

typedef struct {
    tq_core core;       // bits - 1 (unused when !has_mse)
    bool has_mse;
    int d, m;
    float *s;           // (m, d) row-major sketch
    float c;            // sqrt(pi/2) / m
    size_t off_norm, off_signs, off_rnorm, bpv;
    kvq_rotation *rot;  // &core.rot
} tq_prod_plan;

void kvq_tq_prod_plan_free(void *plan)
{
    tq_prod_plan *p = plan;
    if (!p) return;
    tq_core_free(&p->core);
    free(p->s);
    free(p);
}

kvq_status kvq_tq_prod_plan_new(const kvq_plan_params *pp, void **plan)
{
    static const char who[] = "turboquant_prod";
    *plan = NULL;
    if (pp->bits < 1 || pp->bits > 8)
        return kvq_error(KVQ_ERR_ARG, "%s: bits %d out of range (expected 1..8)", who, pp->bits);
    kvq_status s = tq_check_dims(pp, who);
    if (s) return s;
    const int d = pp->head_dim;
    int m = pp->cfg && pp->cfg->sketch_dim > 0 ? pp->cfg->sketch_dim : d;
    if (m > KVQ_MAX_SKETCH_DIM)
        return kvq_error(KVQ_ERR_ARG, "%s: sketch_dim %d out of range (expected 1..%d)", who, m,
                         KVQ_MAX_SKETCH_DIM);
    int n_hi = pp->cfg ? pp->cfg->outlier_channels : 0;
    if (pp->bits == 1 && n_hi > 0)
        return kvq_error(KVQ_ERR_ARG,
                         "%s: outlier_channels %d needs bits >= 2 (bits 1 is pure QJL, no MSE stage)",
                         who, n_hi);
    tq_prod_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "%s: cannot allocate a plan", who);
    p->d = d;
    p->m = m;
    p->has_mse = pp->bits >= 2;
    if (p->has_mse) {
        s = tq_core_init(&p->core, pp, pp->bits - 1, n_hi, who);
    } else {   // rotation only: keeps one code path (rotated basis) for both cases
        bool had = pp->cfg && pp->cfg->use_hadamard;
        p->core.d = d;
        s = kvq_rotation_new(&p->core.rot, d, had, tq_stream_seed(pp, TQ_STREAM_ROT));
    }
    if (!s) {
        p->s = malloc((size_t)m * d * sizeof *p->s);
        if (!p->s) s = kvq_error(KVQ_ERR_NOMEM, "%s: cannot allocate a %dx%d sketch", who, m, d);
    }
    if (s) {
        kvq_tq_prod_plan_free(p);
        return s;
    }
    kvq_rng r;
    kvq_rng_seed(&r, tq_stream_seed(pp, TQ_STREAM_QJL));
    kvq_rng_gauss_fill(&r, p->s, (size_t)m * d);
    p->c = (float)(sqrt(M_PI / 2.0) / m);
    p->rot = &p->core.rot;
    size_t cb = p->has_mse ? tq_core_code_bytes(&p->core) : 0;
    size_t sb = kvq_pack_bytes((size_t)m, 1);
    if (p->has_mse) {
        p->off_norm = cb;
        p->off_signs = cb + 2;
        p->off_rnorm = cb + 2 + sb;
        p->bpv = cb + 2 + sb + 2;
    } else {
        p->off_signs = 0;
        p->off_norm = sb;
        p->off_rnorm = sb;   // |r| = |x|: the same field
        p->bpv = sb + 2;
    }
    *plan = p;
    return KVQ_OK;
}

size_t kvq_tq_prod_bytes_per_vector(const void *plan) { return ((const tq_prod_plan *)plan)->bpv; }

void kvq_tq_prod_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const tq_prod_plan *p = plan;
    const int d = p->d, m = p->m;
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];      // (chunk, d): rotated, then residual
    float sk[TQ_CHUNK * KVQ_MAX_SKETCH_DIM];   // (chunk, m): S r
    float rn[TQ_CHUNK], nx[TQ_CHUNK];
    uint8_t bits[KVQ_MAX_SKETCH_DIM];
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t cnt = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        kvq_rotation_apply_batch(p->rot, x + i0 * d, y, cnt);
        for (size_t i = 0; i < cnt; i++) {
            const float *xi = x + (i0 + i) * d;
            float *yi = y + i * d;
            double nn = 0.0;
            for (int j = 0; j < d; j++) nn += (double)xi[j] * xi[j];
            nx[i] = (float)sqrt(nn);
            float inv = nx[i] > 0.0f ? 1.0f / nx[i] : 0.0f;
            for (int j = 0; j < d; j++) yi[j] *= inv;
            uint8_t *rec = codes + (i0 + i) * p->bpv;
            if (p->has_mse) {
                float yhat[KVQ_MAX_HEAD_DIM];
                tq_core_quantize(&p->core, yi, rec, yhat);
                double rr = 0.0;
                for (int j = 0; j < d; j++) {
                    yi[j] -= yhat[j];
                    rr += (double)yi[j] * yi[j];
                }
                rn[i] = (float)sqrt(rr);
            } else {
                rn[i] = 1.0f;
            }
        }
        // sign(S r) only needs the direction of r, so the unit-scale residual will do.
        if (cnt >= 8)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)cnt, m, d, 1.0f, y, d, p->s,
                        d, 0.0f, sk, m);
        else
            for (size_t i = 0; i < cnt; i++)
                for (int k = 0; k < m; k++) {
                    const float *row = p->s + (size_t)k * d, *yi = y + i * d;
                    float acc = 0.0f;
                    for (int j = 0; j < d; j++) acc += row[j] * yi[j];
                    sk[i * m + k] = acc;
                }
        for (size_t i = 0; i < cnt; i++) {
            uint8_t *rec = codes + (i0 + i) * p->bpv;
            for (int k = 0; k < m; k++) bits[k] = sk[i * m + k] >= 0.0f;
            kvq_pack(bits, (size_t)m, 1, rec + p->off_signs);
            tq_put_f16(rec + p->off_norm, nx[i]);
            if (p->has_mse) tq_put_f16(rec + p->off_rnorm, nx[i] * rn[i]);
        }
    }
}

void kvq_tq_prod_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const tq_prod_plan *p = plan;
    const int d = p->d, m = p->m;
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];     // (chunk, d)
    float w[TQ_CHUNK * KVQ_MAX_SKETCH_DIM];   // (chunk, m): +-|r| c
    uint8_t bits[KVQ_MAX_SKETCH_DIM];
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t cnt = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        for (size_t i = 0; i < cnt; i++) {
            const uint8_t *rec = codes + (i0 + i) * p->bpv;
            float *yi = y + i * d, *wi = w + i * m;
            float norm = tq_get_f16(rec + p->off_norm), rnorm = tq_get_f16(rec + p->off_rnorm);
            if (p->has_mse) {
                tq_core_dequantize(&p->core, rec, yi);
                for (int j = 0; j < d; j++) yi[j] *= norm;
            } else {
                for (int j = 0; j < d; j++) yi[j] = 0.0f;
            }
            kvq_unpack(rec + p->off_signs, (size_t)m, 1, bits);
            const float a = rnorm * p->c;
            for (int k = 0; k < m; k++) wi[k] = bits[k] ? a : -a;
        }
        // Y (cnt, d) += W (cnt, m) S (m, d): the QJL reconstruction |r| c S^T sign
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)cnt, d, m, 1.0f, w, m, p->s, d,
                    1.0f, y, d);
        kvq_rotation_apply_t_batch(p->rot, y, x + i0 * d, cnt);
    }
}

size_t kvq_tq_prod_query_bytes(const void *plan)
{
    const tq_prod_plan *p = plan;
    return ((p->has_mse ? p->core.lut_floats : 0) + (size_t)p->m + 1) * sizeof(float);
}

void kvq_tq_prod_prepare_query(const void *plan, const float *q, void *qs)
{
    const tq_prod_plan *p = plan;
    float qr[KVQ_MAX_HEAD_DIM];
    kvq_rotation_apply(p->rot, q, qr);
    float *out = qs;
    if (p->has_mse) {
        tq_core_build_lut(&p->core, qr, out);
        out += p->core.lut_floats;
    }
    float sum = 0.0f;
    for (int k = 0; k < p->m; k++) {
        const float *row = p->s + (size_t)k * p->d;
        float acc = 0.0f;
        for (int j = 0; j < p->d; j++) acc += row[j] * qr[j];
        out[k] = p->c * acc;
        sum += out[k];
    }
    out[p->m] = sum;
}

// sum_k sq_k sign_k = 2 sum_{bit set} sq_k - sum_k sq_k
static float sign_dot(const float *sq, const uint8_t *packed, int m)
{
    float acc = 0.0f;
    for (int k = 0; k < m; k++) acc += sq[k] * (float)((packed[k >> 3] >> (k & 7)) & 1);
    return 2.0f * acc - sq[m];
}

void kvq_tq_prod_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                       float *scores)
{
    const tq_prod_plan *p = plan;
    const float *lut = qs;
    const float *sq = lut + (p->has_mse ? p->core.lut_floats : 0);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = codes + i * p->bpv;
        float s = tq_get_f16(rec + p->off_rnorm) * sign_dot(sq, rec + p->off_signs, p->m);
        if (p->has_mse) s += tq_get_f16(rec + p->off_norm) * tq_core_lut_dot(&p->core, lut, rec);
        scores[i] = s;
    }
}

size_t kvq_tq_prod_side_bytes(const void *plan)
{
    const tq_prod_plan *p = plan;
    size_t b = sizeof(float) * (size_t)p->m * (size_t)p->d;   // the sketch matrix S
    if (p->has_mse)
        b += kvq_rotation_bytes(&p->core.rot) + kvq_codebook_bytes(&p->core.cb_lo) +
             (p->core.n_hi ? kvq_codebook_bytes(&p->core.cb_hi) : 0);
    return b;
}
