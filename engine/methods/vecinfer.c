// methods/vecinfer.c — VecInfer: smoothing + Walsh-Hadamard + product VQ
// (see vecinfer.h for the transform, the artifacts and the record).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "methods.h"
#include "pack.h"
#include "rotate.h"
#include "vecinfer.h"

typedef struct vi_plan {
    int d, M, C, sd, logc;
    size_t bytes;
    float lambda[KVQ_MAX_HEAD_DIM];
    float *cb;   // (M, C, sd) centroids of this layer, owned copy
} vi_plan;

void kvq_vecinfer_transform_key(const float *lambda, const float *k, float *out, int d)
{
    float s = 1.0f / sqrtf((float)d);
    for (int i = 0; i < d; i++) out[i] = k[i] / lambda[i];
    kvq_fwht(out, d);
    for (int i = 0; i < d; i++) out[i] *= s;
}

void kvq_vecinfer_transform_query(const float *lambda, const float *q, float *out, int d)
{
    float s = 1.0f / sqrtf((float)d);
    for (int i = 0; i < d; i++) out[i] = q[i] * lambda[i];
    kvq_fwht(out, d);
    for (int i = 0; i < d; i++) out[i] *= s;
}

void kvq_vecinfer_untransform_key(const float *lambda, const float *kt, float *out, int d)
{
    // H is symmetric and orthonormal, so it is its own inverse.
    float s = 1.0f / sqrtf((float)d);
    memcpy(out, kt, sizeof(float) * (size_t)d);
    kvq_fwht(out, d);
    for (int i = 0; i < d; i++) out[i] *= s * lambda[i];
}

static int log2_exact(int c)
{
    int l = 0;
    while ((1 << l) < c) l++;
    return (1 << l) == c ? l : -1;
}

int kvq_vecinfer_subspaces(int bits, int d, int num_centroids)
{
    int lc = log2_exact(num_centroids);
    if (lc <= 0 || (bits * d) % lc) return 0;
    int M = bits * d / lc;
    return M > 0 && M <= d && d % M == 0 ? M : 0;
}

static kvq_status needs(const kvq_plan_params *pp, const char *what)
{
    return kvq_error(KVQ_ERR_NEEDS_CALIBRATION,
                     "vecinfer needs calibration (%s for layer %d): run `kvstudio precompute --method vecinfer "
                     "--trace T --output DIR --target-bits %d` (or `calibrate vecinfer`)",
                     what, pp->layer, pp->bits);
}

kvq_status kvq_vecinfer_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    int d = pp->head_dim;
    if (d < 2 || (d & (d - 1)))
        return kvq_error(KVQ_ERR_ARG, "vecinfer: head_dim %d is not a power of two (the Hadamard transform needs one)", d);
    if (pp->is_value)
        return kvq_error(KVQ_ERR_ARG, "vecinfer: quantizes keys only (its codebooks are trained on keys); "
                         "pick another value_method");
    int nd_s, nd_c;
    int64_t ss[8], sc[8];
    const float *smooth = kvq_artifacts_get(pp->art, "vecinfer.smooth", &nd_s, ss);
    const float *cb = kvq_artifacts_get(pp->art, "vecinfer.codebook", &nd_c, sc);
    if (!smooth || !cb) return needs(pp, smooth ? "vecinfer.codebook missing" : "vecinfer.smooth missing");
    if (nd_s != 2 || ss[1] != d || nd_c != 4 || sc[0] != ss[0] || sc[1] * sc[3] != d)
        return kvq_error(KVQ_ERR_SHAPE, "vecinfer: artifacts vecinfer.smooth / vecinfer.codebook have shapes "
                         "that do not fit head_dim %d (expected (L, %d) and (L, M, C, %d/M))", d, d, d);
    if (pp->layer < 0 || pp->layer >= ss[0])
        return needs(pp, "artifacts cover fewer layers");
    int M = (int)sc[1], C = (int)sc[2], lc = log2_exact(C);
    if (lc < 1 || lc > 8)
        return kvq_error(KVQ_ERR_SHAPE, "vecinfer: codebook size %d is not a power of two in 2..256", C);
    if (M * lc != pp->bits * d)
        return kvq_error(KVQ_ERR_NEEDS_CALIBRATION,
                         "vecinfer: artifacts hold %d subspaces x %d centroids = %g bits/coord, but bits is %d: "
                         "recalibrate with `kvstudio precompute --method vecinfer --target-bits %d ...`",
                         M, C, (double)M * lc / d, pp->bits, pp->bits);
    vi_plan *p = calloc(1, sizeof *p);
    size_t ncb = (size_t)M * C * (d / M);
    if (!p || !(p->cb = malloc(sizeof(float) * ncb))) {
        free(p);
        return kvq_error(KVQ_ERR_NOMEM, "vecinfer: out of memory");
    }
    p->d = d;
    p->M = M;
    p->C = C;
    p->sd = d / M;
    p->logc = lc;
    p->bytes = kvq_pack_bytes((size_t)M, lc);
    for (int i = 0; i < d; i++) {
        float l = smooth[(size_t)pp->layer * d + i];
        p->lambda[i] = l > 0 && isfinite(l) ? l : 1.0f;   // a dead channel stays unscaled
    }
    memcpy(p->cb, cb + (size_t)pp->layer * ncb, sizeof(float) * ncb);
    *plan = p;
    return KVQ_OK;
}

void kvq_vecinfer_plan_free(void *plan)
{
    vi_plan *p = plan;
    if (p) free(p->cb);
    free(p);
}

size_t kvq_vecinfer_bytes_per_vector(const void *plan) { return ((const vi_plan *)plan)->bytes; }

void kvq_vecinfer_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const vi_plan *p = plan;
    float kt[KVQ_MAX_HEAD_DIM];
    uint8_t c[KVQ_MAX_HEAD_DIM];
    for (size_t v = 0; v < n; v++) {
        kvq_vecinfer_transform_key(p->lambda, x + v * p->d, kt, p->d);
        for (int m = 0; m < p->M; m++) {
            const float *sub = kt + m * p->sd, *cent = p->cb + (size_t)m * p->C * p->sd;
            float best = INFINITY;
            int bi = 0;
            for (int j = 0; j < p->C; j++) {
                float e = 0;
                for (int i = 0; i < p->sd; i++) {
                    float t = sub[i] - cent[(size_t)j * p->sd + i];
                    e += t * t;
                }
                if (e < best) {
                    best = e;
                    bi = j;
                }
            }
            c[m] = (uint8_t)bi;
        }
        kvq_pack(c, (size_t)p->M, p->logc, codes + v * p->bytes);
    }
}

void kvq_vecinfer_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const vi_plan *p = plan;
    float kt[KVQ_MAX_HEAD_DIM];
    uint8_t c[KVQ_MAX_HEAD_DIM];
    for (size_t v = 0; v < n; v++) {
        kvq_unpack(codes + v * p->bytes, (size_t)p->M, p->logc, c);
        for (int m = 0; m < p->M; m++)
            memcpy(kt + m * p->sd, p->cb + ((size_t)m * p->C + c[m]) * p->sd, sizeof(float) * (size_t)p->sd);
        kvq_vecinfer_untransform_key(p->lambda, kt, x + v * p->d, p->d);
    }
}

// Query state: the LUT (M, C) of q' . centroid per subspace.
size_t kvq_vecinfer_query_bytes(const void *plan)
{
    const vi_plan *p = plan;
    return sizeof(float) * (size_t)p->M * (size_t)p->C;
}

void kvq_vecinfer_prepare_query(const void *plan, const float *q, void *qs)
{
    const vi_plan *p = plan;
    float qt[KVQ_MAX_HEAD_DIM], *lut = qs;
    kvq_vecinfer_transform_query(p->lambda, q, qt, p->d);
    for (int m = 0; m < p->M; m++)
        for (int j = 0; j < p->C; j++) {
            const float *cent = p->cb + ((size_t)m * p->C + j) * p->sd;
            float s = 0;
            for (int i = 0; i < p->sd; i++) s += qt[m * p->sd + i] * cent[i];
            lut[(size_t)m * p->C + j] = s;
        }
}

void kvq_vecinfer_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const vi_plan *p = plan;
    const float *lut = qs;
    uint8_t c[KVQ_MAX_HEAD_DIM];
    for (size_t v = 0; v < n; v++) {
        kvq_unpack(codes + v * p->bytes, (size_t)p->M, p->logc, c);
        float s = 0;
        for (int m = 0; m < p->M; m++) s += lut[(size_t)m * p->C + c[m]];
        scores[v] = s;
    }
}

size_t kvq_vecinfer_side_bytes(const void *plan)
{
    const vi_plan *p = plan;
    return sizeof(float) * ((size_t)p->d + (size_t)p->M * (size_t)p->C * (size_t)p->sd);   // lambda + codebooks
}
