// methods/mlx_affine.c — mlx_lm's quantized KV cache (QuantizedKVCache,
// `kv_bits` / `kv_group_size`): mx.quantize's affine format per group of
// group_size values along head_dim, codes of `bits` bits, one scale and one
// bias per group in the cache dtype (fp16 here), x ~= scale x q + bias.
//
// Arithmetic as mlx/backend/cpu/quantized.cpp `quantize` (ml-explore/mlx
// 846d1762, lines 1149-1206), in f32 over the fp16 inputs mlx_lm hands it:
// n_bins = 2^bits - 1; scale = max((max - min) / n_bins, 1e-7), negated
// unless |min| > |max|; edge = min when |min| > |max| else max; q0 =
// rint(edge / scale); when q0 != 0 the scale becomes edge / q0 and the bias
// edge (the edge value is then exact), else the bias stays 0 (a group of
// zeros). q = clamp(rint((x - bias) / scale), 0, n_bins); scale and bias are
// stored rounded to fp16. Packing (mlx/backend/common/quantized.h): LSB
// first, uint32 words for 2/4/8 bits, 3-byte packs for 3/6 and 5-byte packs
// for 5, which is one little-endian bit stream in every case.
//
// Record: head_dim x bits / 8 code bytes, then head_dim / group_size fp16
// scales, then as many fp16 biases. mlx_lm's quantized_kv_start is no fp16
// window: once the cache holds that many tokens it converts all of them
// (mlx_lm generate.py maybe_quantize_kv_cache, ml-explore/mlx-lm d78bf58e),
// so past it every token is in this format. tools/mlx_affine_vectors.py
// writes the test vectors (tests/data/formats/mlx_affine.txt).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "methods.h"

typedef struct {
    int d, g, bits;
} affine_plan;

static kvq_status affine_plan_new(const kvq_plan_params *pp, int g, const char *who, void **plan)
{
    *plan = NULL;
    int b = pp->bits;
    if (b < 2 || b > 8 || b == 7)
        return kvq_error(KVQ_ERR_ARG, "%s: bits %d not offered by mx.quantize (expected 2, 3, 4, 5, 6 or 8)", who, b);
    if (pp->head_dim % g)
        return kvq_error(KVQ_ERR_ARG, "%s: head_dim %d is not a multiple of the group size %d", who, pp->head_dim, g);
    affine_plan *p = malloc(sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", who);
    *p = (affine_plan){.d = pp->head_dim, .g = g, .bits = b};
    *plan = p;
    return KVQ_OK;
}

static size_t affine_bpv(const void *plan)
{
    const affine_plan *p = plan;
    return (size_t)p->d * (size_t)p->bits / 8 + 4 * (size_t)(p->d / p->g);
}

// One code of bits <= 8 at bit pos: it spans at most two bytes, and a
// record's code bytes are followed by its scales, so both reads stay in the
// record (the writes touch the second byte only when the code reaches it).
static void put_bits(uint8_t *s, size_t pos, unsigned v, int bits)
{
    const size_t b = pos >> 3;
    const unsigned sh = pos & 7;
    s[b] |= (uint8_t)(v << sh);
    if (sh + (unsigned)bits > 8) s[b + 1] |= (uint8_t)(v >> (8 - sh));
}

static unsigned get_bits(const uint8_t *s, size_t pos, int bits)
{
    const size_t b = pos >> 3;
    const unsigned w = s[b] | (unsigned)s[b + 1] << 8;
    return w >> (pos & 7) & ((1u << bits) - 1u);
}

static void affine_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const affine_plan *p = plan;
    const size_t bpv = affine_bpv(p), cb = (size_t)p->d * (size_t)p->bits / 8;
    const int ng = p->d / p->g;
    const float n_bins = (float)((1 << p->bits) - 1), eps = 1e-7f;
    for (size_t i = 0; i < n; i++) {
        uint8_t *rec = codes + i * bpv;
        memset(rec, 0, bpv);
        for (int gi = 0; gi < ng; gi++) {
            float w[KVQ_MAX_HEAD_DIM];
            float w_min = INFINITY, w_max = -INFINITY;
            for (int j = 0; j < p->g; j++) {
                w[j] = kvq_f16_to_f32(kvq_f32_to_f16(x[i * (size_t)p->d + (size_t)(gi * p->g + j)]));
                w_max = fmaxf(w_max, w[j]);
                w_min = fminf(w_min, w[j]);
            }
            bool mask = fabsf(w_min) > fabsf(w_max);
            float scale = fmaxf((w_max - w_min) / n_bins, eps);
            scale = mask ? scale : -scale;
            float edge = mask ? w_min : w_max;
            float q0 = rintf(edge / scale), bias = 0.0f;
            if (q0 != 0.0f) {
                scale = edge / q0;
                bias = edge;
            }
            for (int j = 0; j < p->g; j++) {
                float q = rintf((w[j] - bias) / scale);
                q = fminf(fmaxf(q, 0.0f), n_bins);
                put_bits(rec, (size_t)(gi * p->g + j) * (size_t)p->bits, (unsigned)q, p->bits);
            }
            kvq_f16_store(rec + cb + 2 * (size_t)gi, scale);
            kvq_f16_store(rec + cb + 2 * (size_t)(ng + gi), bias);
        }
    }
}

static void affine_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const affine_plan *p = plan;
    const size_t bpv = affine_bpv(p), cb = (size_t)p->d * (size_t)p->bits / 8;
    const int ng = p->d / p->g;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = codes + i * bpv;
        for (int gi = 0; gi < ng; gi++) {
            float s = kvq_f16_load(rec + cb + 2 * (size_t)gi), b = kvq_f16_load(rec + cb + 2 * (size_t)(ng + gi));
            for (int j = 0; j < p->g; j++) {
                size_t c = (size_t)(gi * p->g + j);
                x[i * (size_t)p->d + c] = s * (float)get_bits(rec, c * (size_t)p->bits, p->bits) + b;
            }
        }
    }
}

static void affine_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const affine_plan *p = plan;
    const float *q = qs;
    float k[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        affine_decode(p, codes + i * affine_bpv(p), 1, k);
        float acc = 0.0f;
        for (int j = 0; j < p->d; j++) acc += k[j] * q[j];
        scores[i] = acc;
    }
}

#define AFFINE_METHOD(p, g, who)                                                                          \
    kvq_status kvq_##p##_plan_new(const kvq_plan_params *pp, void **plan) { return affine_plan_new(pp, g, who, plan); } \
    void kvq_##p##_plan_free(void *plan) { free(plan); }                                                  \
    size_t kvq_##p##_bytes_per_vector(const void *plan) { return affine_bpv(plan); }                     \
    void kvq_##p##_encode(const void *plan, const float *x, size_t n, uint8_t *codes)                     \
    { affine_encode(plan, x, n, codes); }                                                                 \
    void kvq_##p##_decode(const void *plan, const uint8_t *codes, size_t n, float *x)                     \
    { affine_decode(plan, codes, n, x); }                                                                 \
    size_t kvq_##p##_query_bytes(const void *plan)                                                        \
    { return sizeof(float) * (size_t)((const affine_plan *)plan)->d; }                                    \
    void kvq_##p##_prepare_query(const void *plan, const float *q, void *qs)                              \
    { memcpy(qs, q, kvq_##p##_query_bytes(plan)); }                                                       \
    void kvq_##p##_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores) \
    { affine_score(plan, qs, codes, n, scores); }

AFFINE_METHOD(mlx_affine_g32, 32, "mlx:affine_g32")
AFFINE_METHOD(mlx_affine_g64, 64, "mlx:affine_g64")
AFFINE_METHOD(mlx_affine_g128, 128, "mlx:affine_g128")
