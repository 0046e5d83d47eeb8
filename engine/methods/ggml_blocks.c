// methods/ggml_blocks.c — scalar ggml block quantizers of q8_0, q4_0 and
// iq4_nl (formulas in ggml_blocks.h; q4_1, q5_0, q5_1 live in their method
// files). Float operations are written in ggml's order so results
// match bit for bit: the build uses -std=c11, where GCC does not contract
// a*b + c into FMA, and the f16 conversion rounds to nearest even as
// GGML_FP32_TO_FP16 does.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "ggml_blocks.h"

const int8_t kvq_iq4nl_grid[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};

void kvq_ggml_q8_0_quantize(const float *x, uint8_t *blk)
{
    float amax = 0.0f;
    for (int j = 0; j < KVQ_GGML_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    kvq_f16_store(blk, d);
    // ggml quantizes with the f32 scale and stores it rounded to f16; its
    // x86 kernel rounds with _mm256_round_ps(_MM_ROUND_NEAREST): ties to
    // even, which nearbyintf does in the default rounding mode.
    // A block whose amax is so small that 127/amax overflows gives Inf or NaN
    // products: cvtps2dq makes those INT_MIN, and the packs saturate to int8.
    for (int j = 0; j < KVQ_GGML_QK; j++) {
        const float t = nearbyintf(x[j] * id);
        const int c = !(fabsf(t) < 2147483648.0f) ? -128 : t > 127.0f ? 127 : t < -128.0f ? -128 : (int)t;
        blk[2 + j] = (uint8_t)(int8_t)c;
    }
}

void kvq_ggml_q8_0_dequantize(const uint8_t *blk, float *y)
{
    const float d = kvq_f16_load(blk);
    for (int j = 0; j < KVQ_GGML_QK; j++) y[j] = (float)(int8_t)blk[2 + j] * d;
}

float kvq_ggml_q8_0_dot(const uint8_t *blk, const float *q)
{
    float acc = 0.0f;
    for (int j = 0; j < KVQ_GGML_QK; j++) acc += (float)(int8_t)blk[2 + j] * q[j];
    return acc * kvq_f16_load(blk);
}

void kvq_ggml_q4_0_quantize(const float *x, uint8_t *blk)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < KVQ_GGML_QK; j++)
        if (amax < fabsf(x[j])) { // strict: the first of equal magnitudes wins, as ggml
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    kvq_f16_store(blk, d);
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        int lo = kvq_ggml_trunc_i8(x[j] * id + 8.5f), hi = kvq_ggml_trunc_i8(x[j + 16] * id + 8.5f);
        lo = lo < 15 ? lo : 15;
        hi = hi < 15 ? hi : 15;
        blk[2 + j] = (uint8_t)(lo | (hi << 4));
    }
}

void kvq_ggml_q4_0_dequantize(const uint8_t *blk, float *y)
{
    const float d = kvq_f16_load(blk);
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        y[j] = (float)((blk[2 + j] & 0x0f) - 8) * d;
        y[j + 16] = (float)((blk[2 + j] >> 4) - 8) * d;
    }
}

float kvq_ggml_q4_0_dot(const uint8_t *blk, const float *q)
{
    float acc = 0.0f;
    for (int j = 0; j < KVQ_GGML_QK / 2; j++)
        acc += (float)((blk[2 + j] & 0x0f) - 8) * q[j] + (float)((blk[2 + j] >> 4) - 8) * q[j + 16];
    return acc * kvq_f16_load(blk);
}

int kvq_ggml_iq4_nl_index(float x)
{
    // Comparing 2x with the sum of neighbours keeps both sides exact.
    const float x2 = x + x;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1) {
        const int j = idx + step;
        if (x2 >= (float)(kvq_iq4nl_grid[j - 1] + kvq_iq4nl_grid[j])) idx = j;
    }
    return idx;
}

void kvq_ggml_iq4_nl_quantize(const float *x, uint8_t *blk, int ntry)
{
    const int8_t *v = kvq_iq4nl_grid;
    uint8_t L[KVQ_GGML_QK];
    float w[KVQ_GGML_QK];
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < KVQ_GGML_QK; j++) {
        w[j] = x[j] * x[j];
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    // Below ggml's GROUP_MAX_EPS the scale is 0 and the codes 0 (and with
    // ntry > 0 ggml still re-picks them below: index of 0 is 8).
    float d = 0.0f;
    memset(L, 0, sizeof L);
    if (amax >= 1e-15f) {
        d = ntry > 0 ? -max / v[0] : max / v[0];
        float id = 1.0f / d;
        float sumqx = 0.0f, sumq2 = 0.0f;
        for (int j = 0; j < KVQ_GGML_QK; j++) {
            const int l = kvq_ggml_iq4_nl_index(id * x[j]);
            L[j] = (uint8_t)l;
            const float q = v[l];
            sumqx += w[j] * q * x[j];
            sumq2 += w[j] * q * q;
        }
        d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (float)(itry + v[0]) / max;
            sumqx = sumq2 = 0.0f;
            for (int j = 0; j < KVQ_GGML_QK; j++) {
                const float q = v[kvq_ggml_iq4_nl_index(id * x[j])];
                sumqx += w[j] * q * x[j];
                sumq2 += w[j] * q * q;
            }
            if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
    }
    kvq_f16_store(blk, d);
    if (ntry > 0) {
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < KVQ_GGML_QK; j++) L[j] = (uint8_t)kvq_ggml_iq4_nl_index(id * x[j]);
    }
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) blk[2 + j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

void kvq_ggml_iq4_nl_dequantize(const uint8_t *blk, float *y)
{
    const float d = kvq_f16_load(blk);
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        y[j] = d * (float)kvq_iq4nl_grid[blk[2 + j] & 0x0f];
        y[j + 16] = d * (float)kvq_iq4nl_grid[blk[2 + j] >> 4];
    }
}

float kvq_ggml_iq4_nl_dot(const uint8_t *blk, const float *q)
{
    float acc = 0.0f;
    for (int j = 0; j < KVQ_GGML_QK / 2; j++)
        acc += (float)kvq_iq4nl_grid[blk[2 + j] & 0x0f] * q[j] +
               (float)kvq_iq4nl_grid[blk[2 + j] >> 4] * q[j + 16];
    return acc * kvq_f16_load(blk);
}

kvq_status kvq_ggml_plan_new(const kvq_plan_params *pp, const char *who, void **plan)
{
    *plan = NULL;
    const int d = pp->head_dim;
    if (d <= 0 || d > KVQ_MAX_HEAD_DIM || d % KVQ_GGML_QK)
        return kvq_error(KVQ_ERR_ARG,
                         "%s: head_dim %d is not a multiple of %d in %d..%d (ggml blocks)", who, d,
                         KVQ_GGML_QK, KVQ_GGML_QK, KVQ_MAX_HEAD_DIM);
    kvq_ggml_plan *p = malloc(sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", who);
    p->d = d;
    p->nblk = d / KVQ_GGML_QK;
    *plan = p;
    return KVQ_OK;
}
