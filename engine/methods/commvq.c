// methods/commvq.c — CommVQ (arXiv 2506.18879): additive quantization with a
// RoPE-commutative codebook; layout, block structure and why in commvq.h.
//
// encode: greedy residual choice + COMMVQ_SWEEPS improvement sweeps (scalar reference).
// score: a per-query LUT T[r][c] = q . W[r][c] (R x C floats), then a key costs
// R lookups. decode: the sum of the R codewords.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "commvq.h"
#include "methods.h"
#include "pack.h"

#define COMMVQ_SWEEPS 4

typedef struct {
    int d, R, C, lc;
    float *W;       // (R, C, d) copy of the artifact
    float *wnorm;   // (R, C) |w|^2
    size_t bpv;
} commvq_plan;

kvq_status kvq_commvq_shape(int d, int bits, int num_centroids, int *R, int *log2c)
{
    int lc = 0;
    while ((1 << lc) < num_centroids) lc++;
    if (num_centroids < 2 || num_centroids > 256 || (1 << lc) != num_centroids)
        return kvq_error(KVQ_ERR_ARG, "commvq: num_centroids %d (expected a power of two 2..256)",
                         num_centroids);
    if (d < 2 || d % 2)
        return kvq_error(KVQ_ERR_ARG, "commvq: head_dim %d (expected even: RoPE pairs)", d);
    if ((bits * d) % lc)
        return kvq_error(KVQ_ERR_ARG, "commvq: bits %d x head_dim %d is not a multiple of "
                         "log2(num_centroids) = %d", bits, d, lc);
    *R = bits * d / lc;
    *log2c = lc;
    return KVQ_OK;
}

void kvq_commvq_rope(float *x, int d, double pos, double theta)
{
    int h = d / 2;
    for (int j = 0; j < h; j++) {
        double ang = pos * pow(theta, -2.0 * j / d);
        double c = cos(ang), s = sin(ang);
        double a = x[j], b = x[j + h];
        x[j] = (float)(a * c - b * s);
        x[j + h] = (float)(b * c + a * s);
    }
}

// Value of codeword w against target e: |e|^2 - |e - w|^2 = 2 e.w - |w|^2.
static double gain(const float *e, const float *w, float wn, int d)
{
    double dot = 0;
    for (int j = 0; j < d; j++) dot += (double)e[j] * w[j];
    return 2 * dot - wn;
}

// The codeword of Wr (C, d) with the highest gain for res, starting from
// (best, bg) and switching only on a strict improvement.
static int best_codeword(const float *res, const float *Wr, const float *wn, int C, int d, int best,
                         double bg)
{
    for (int c = 0; c < C; c++) {
        double g = gain(res, Wr + (size_t)c * d, wn[c], d);
        if (g > bg) bg = g, best = c;
    }
    return best;
}

void kvq_commvq_encode_one(const float *W, const float *wnorm, int R, int C, int d,
                           const float *x, int sweeps, uint16_t *codes)
{
    float res[KVQ_MAX_HEAD_DIM];   // x - sum of chosen codewords
    memcpy(res, x, sizeof(float) * (size_t)d);
    for (int s = -1; s < sweeps; s++)   // s = -1: the greedy first pick
        for (int r = 0; r < R; r++) {
            const float *Wr = W + (size_t)r * C * d, *wn = wnorm + r * C;
            int best;
            if (s < 0) {
                best = best_codeword(res, Wr, wn, C, d, 0, -INFINITY);
            } else {
                const float *cur = Wr + (size_t)codes[r] * d;
                for (int j = 0; j < d; j++) res[j] += cur[j];   // target without codebook r
                best = best_codeword(res, Wr, wn, C, d, codes[r], gain(res, cur, wn[codes[r]], d));
            }
            codes[r] = (uint16_t)best;
            const float *w = Wr + (size_t)best * d;
            for (int j = 0; j < d; j++) res[j] -= w[j];
        }
}

kvq_status kvq_commvq_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    int d = pp->head_dim, R, lc;
    char name[96];
    snprintf(name, sizeof name, "commvq.codebooks.l%d.h%d", pp->layer, pp->kv_head);
    // C comes from the artifact (the calibration chose it); R must match bits.
    int nd = 0;
    int64_t sh[8];
    const float *W = kvq_artifacts_get(pp->art, name, &nd, sh);
    if (!W)
        return kvq_error(KVQ_ERR_NEEDS_CALIBRATION, "commvq: codebooks '%s' missing: run "
                         "`kvstudio precompute --method commvq --trace TRACE --output DIR` and "
                         "pass --artifacts DIR", name);
    if (nd != 3 || sh[2] != d || sh[1] < 2 || sh[1] > 256)
        return kvq_error(KVQ_ERR_SHAPE, "commvq: artifact '%s' is not (R, C, head_dim=%d) with "
                         "C in 2..256", name, d);
    kvq_status s = kvq_commvq_shape(d, pp->bits, (int)sh[1], &R, &lc);
    if (s) return s;
    if (sh[0] != R)
        return kvq_error(KVQ_ERR_SHAPE, "commvq: artifact '%s' has %lld codebooks, bits %d with "
                         "C=%lld needs %d (calibrated for another bit width?)", name,
                         (long long)sh[0], pp->bits, (long long)sh[1], R);
    int C = 1 << lc;
    commvq_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "commvq: out of memory");
    p->W = malloc(sizeof(float) * (size_t)R * C * d);
    p->wnorm = malloc(sizeof(float) * (size_t)R * C);
    if (!p->W || !p->wnorm) {
        kvq_commvq_plan_free(p);
        return kvq_error(KVQ_ERR_NOMEM, "commvq: out of memory for %dx%dx%d codebooks", R, C, d);
    }
    memcpy(p->W, W, sizeof(float) * (size_t)R * C * d);
    for (int i = 0; i < R * C; i++) {
        double nn = 0;
        for (int j = 0; j < d; j++) nn += (double)p->W[(size_t)i * d + j] * p->W[(size_t)i * d + j];
        p->wnorm[i] = (float)nn;
    }
    p->d = d, p->R = R, p->C = C, p->lc = lc;
    p->bpv = kvq_pack_bytes((size_t)R, lc);
    *plan = p;
    return KVQ_OK;
}

void kvq_commvq_plan_free(void *plan)
{
    commvq_plan *p = plan;
    if (!p) return;
    free(p->W);
    free(p->wnorm);
    free(p);
}

size_t kvq_commvq_bytes_per_vector(const void *plan) { return ((const commvq_plan *)plan)->bpv; }

void kvq_commvq_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const commvq_plan *p = plan;
    uint16_t c16[KVQ_MAX_HEAD_DIM * 8];   // R <= 8 * d (bits <= 8, log2c >= 1)
    uint8_t c8[KVQ_MAX_HEAD_DIM * 8];
    for (size_t t = 0; t < n; t++) {
        kvq_commvq_encode_one(p->W, p->wnorm, p->R, p->C, p->d, x + t * (size_t)p->d,
                              COMMVQ_SWEEPS, c16);
        for (int r = 0; r < p->R; r++) c8[r] = (uint8_t)c16[r];
        kvq_pack(c8, (size_t)p->R, p->lc, codes + t * p->bpv);
    }
}

void kvq_commvq_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const commvq_plan *p = plan;
    uint8_t c8[KVQ_MAX_HEAD_DIM * 8];
    for (size_t t = 0; t < n; t++) {
        kvq_unpack(codes + t * p->bpv, (size_t)p->R, p->lc, c8);
        float *out = x + t * (size_t)p->d;
        memset(out, 0, sizeof(float) * (size_t)p->d);
        for (int r = 0; r < p->R; r++) {
            const float *w = p->W + ((size_t)r * p->C + c8[r]) * p->d;
            for (int j = 0; j < p->d; j++) out[j] += w[j];
        }
    }
}

// qstate: (R, C) LUT of q . W[r][c]
size_t kvq_commvq_query_bytes(const void *plan)
{
    const commvq_plan *p = plan;
    return sizeof(float) * (size_t)p->R * p->C;
}

void kvq_commvq_prepare_query(const void *plan, const float *q, void *qs)
{
    const commvq_plan *p = plan;
    float *lut = qs;
    for (int i = 0; i < p->R * p->C; i++) {
        const float *w = p->W + (size_t)i * p->d;
        float acc = 0;
        for (int j = 0; j < p->d; j++) acc += w[j] * q[j];
        lut[i] = acc;
    }
}

void kvq_commvq_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                      float *scores)
{
    const commvq_plan *p = plan;
    const float *lut = qs;
    uint8_t c8[KVQ_MAX_HEAD_DIM * 8];
    for (size_t t = 0; t < n; t++) {
        kvq_unpack(codes + t * p->bpv, (size_t)p->R, p->lc, c8);
        float s = 0;
        for (int r = 0; r < p->R; r++) s += lut[r * p->C + c8[r]];
        scores[t] = s;
    }
}

size_t kvq_commvq_side_bytes(const void *plan)
{
    const commvq_plan *p = plan;
    return sizeof(float) * (size_t)p->R * (size_t)p->C * (size_t)p->d;   // codebooks (norms are derived)
}
