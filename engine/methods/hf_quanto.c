// methods/hf_quanto.c — transformers:quanto_qint{2,4}_g64: transformers' QuantizedCache with the quanto backend
// (cache_implementation="quantized", backend "quanto", nbits 2 or 4, axis 0,
// q_group_size 64): optimum-quanto's MaxOptimizer + quantize_weight.
//
// transformers src/transformers/cache_utils.py (huggingface/transformers
// 004999d9): QuantoQuantizedLayer._quantize = MaxOptimizer()(t, qint{2,4},
// axis, q_group_size) then quantize_weight; nbits must be 2 or 4 and axis 0
// or -1. optimum-quanto (huggingface/optimum-quanto e33f8202):
// tensor/grouped.py group(axis 0) = reshape(-1, 64) of the [B, H, T, D]
// cache, so a group is 64 consecutive coordinates of one head's vector;
// tensor/optimizers/max_optimizer.py: scale = (max - min) / (2^bits - 1) and
// shift = -min, both in the cache dtype (fp16); library/quantize.py
// quantize_affine: q = clamp(round((x + shift) / scale), 0, 2^bits - 1);
// tensor/qbits.py: x' = scale * q - shift, in fp16.
//
// Arithmetic as torch runs it on CUDA fp16 tensors: each op in float32,
// rounded to fp16 once; the division by the Python int 2^bits - 1 is a
// multiply by its float reciprocal (ATen BinaryDivTrueKernel.cu); round is
// half to even. A constant group has scale 0 and 0/0 = NaN, which the uint8
// cast turns into code 0 (decode: 0 - shift = min, exact).
//
// Record: the head_dim x bits / 8 code bytes (LSB first, one little-endian
// bit stream), then head_dim / 64 fp16 scales, then as many fp16 shifts. The
// bytes held are quanto's: its PackedTensor (tensor/packed.py pack_weights)
// stores the same codes as a (ceil(G / (8/bits)), 64) uint8 matrix over all G
// groups of the layer's tensor, byte [r, c] holding code c of groups r,
// r + R, ... at bits x i; the order differs, the count does not (G a multiple
// of 8/bits). tests/test_hf_cache.c rebuilds that matrix from records.
//
// Not modelled: axis -1 (per channel over 64 consecutive rows of the whole
// [B*H*T, D] tensor, not one vector), and transformers re-quantizing the
// dequantized cache plus its fp16 residual at every flush. The residual: up
// to residual_length - 1 = 127 recent tokens per layer and head stay fp16
// (QuantizedLayer.update quantizes everything when the residual would reach
// 128); side_bytes counts that window's extra over records, 127 x (2 x
// head_dim - record), so memory at a context N >= 127 is the peak the cache
// holds. Accuracy figures quantize every token (the state right after a
// flush). tools/hf_cache_vectors.py writes the vectors.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "hf_round.h"
#include "methods.h"

#define QG 64           // q_group_size (transformers' default)
#define RESIDUAL 127    // fp16 tokens the residual holds at most (residual_length 128)

typedef struct {
    int d, bits;
} quanto_plan;

static float h(float x) { return hf_f16_round(x); }

static kvq_status quanto_plan_new(const kvq_plan_params *pp, int bits, const char *who, void **plan)
{
    *plan = NULL;
    if (pp->bits != bits)
        return kvq_error(KVQ_ERR_ARG, "%s: bits %d, expected %d (the qtype's width)", who, pp->bits, bits);
    if (pp->head_dim % QG)
        return kvq_error(KVQ_ERR_ARG, "%s: head_dim %d is not a multiple of the group size %d", who, pp->head_dim,
                         QG);
    quanto_plan *p = malloc(sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", who);
    *p = (quanto_plan){.d = pp->head_dim, .bits = bits};
    *plan = p;
    return KVQ_OK;
}

kvq_status kvq_hf_quanto_qint2_plan_new(const kvq_plan_params *pp, void **plan)
{
    return quanto_plan_new(pp, 2, "transformers:quanto_qint2_g64", plan);
}

kvq_status kvq_hf_quanto_qint4_plan_new(const kvq_plan_params *pp, void **plan)
{
    return quanto_plan_new(pp, 4, "transformers:quanto_qint4_g64", plan);
}


static size_t quanto_bytes_per_vector(const void *plan)
{
    const quanto_plan *p = plan;
    return (size_t)p->d * (size_t)p->bits / 8 + 4 * (size_t)(p->d / QG);
}

static size_t quanto_side_bytes(const void *plan)
{
    const quanto_plan *p = plan;
    return RESIDUAL * (2 * (size_t)p->d - quanto_bytes_per_vector(p));
}

static void quanto_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const quanto_plan *p = plan;
    const size_t bpv = quanto_bytes_per_vector(p), cb = (size_t)p->d * (size_t)p->bits / 8;
    const int ng = p->d / QG;
    const float qmax = (float)((1 << p->bits) - 1), inv = 1.0f / qmax;
    for (size_t i = 0; i < n; i++) {
        uint8_t *rec = codes + i * bpv;
        memset(rec, 0, bpv);
        for (int g = 0; g < ng; g++) {
            float w[QG], lo = INFINITY, hi = -INFINITY;
            for (int j = 0; j < QG; j++) {
                w[j] = h(x[i * (size_t)p->d + (size_t)(g * QG + j)]);   // the cache is fp16
                lo = fminf(lo, w[j]);
                hi = fmaxf(hi, w[j]);
            }
            float scale = h(h(hi - lo) * inv), shift = -lo;
            for (int j = 0; j < QG; j++) {
                // fmaxf(NaN, 0) = 0: the NaN of 0/0 becomes code 0, as the uint8 cast does
                float q = fminf(fmaxf(rintf(h(h(w[j] + shift) / scale)), 0.0f), qmax);
                size_t pos = (size_t)(g * QG + j) * (size_t)p->bits;
                rec[pos >> 3] |= (uint8_t)((unsigned)q << (pos & 7));
            }
            kvq_f16_store(rec + cb + 2 * (size_t)g, scale);
            kvq_f16_store(rec + cb + 2 * (size_t)(ng + g), shift);
        }
    }
}

static void quanto_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const quanto_plan *p = plan;
    const size_t bpv = quanto_bytes_per_vector(p), cb = (size_t)p->d * (size_t)p->bits / 8;
    const int ng = p->d / QG;
    const unsigned mask = (1u << p->bits) - 1;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = codes + i * bpv;
        for (int g = 0; g < ng; g++) {
            float s = kvq_f16_load(rec + cb + 2 * (size_t)g), t = kvq_f16_load(rec + cb + 2 * (size_t)(ng + g));
            float lut[16];   // the group's 2^bits values, fp16-rounded as quanto computes them
            for (unsigned q = 0; q <= mask; q++) lut[q] = h(h(s * (float)q) - t);
            for (int j = 0; j < QG; j++) {
                size_t c = (size_t)(g * QG + j), pos = c * (size_t)p->bits;
                x[i * (size_t)p->d + c] = lut[rec[pos >> 3] >> (pos & 7) & mask];
            }
        }
    }
}

static size_t quanto_query_bytes(const void *plan) { return sizeof(float) * (size_t)((const quanto_plan *)plan)->d; }

static void quanto_prepare_query(const void *plan, const float *q, void *qs)
{
    memcpy(qs, q, quanto_query_bytes(plan));
}

// transformers dequantizes the cache and runs plain attention on it.
static void quanto_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const quanto_plan *p = plan;
    const float *q = qs;
    float k[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        quanto_decode(p, codes + i * quanto_bytes_per_vector(p), 1, k);
        float acc = 0.0f;
        for (int j = 0; j < p->d; j++) acc += k[j] * q[j];
        scores[i] = acc;
    }
}

#define QUANTO_ROW(p)                                                                                      \
    void kvq_##p##_plan_free(void *plan) { free(plan); }                                                  \
    size_t kvq_##p##_bytes_per_vector(const void *plan) { return quanto_bytes_per_vector(plan); }        \
    size_t kvq_##p##_side_bytes(const void *plan) { return quanto_side_bytes(plan); }                    \
    void kvq_##p##_encode(const void *plan, const float *x, size_t n, uint8_t *codes)                     \
    { quanto_encode(plan, x, n, codes); }                                                                 \
    void kvq_##p##_decode(const void *plan, const uint8_t *codes, size_t n, float *x)                     \
    { quanto_decode(plan, codes, n, x); }                                                                 \
    size_t kvq_##p##_query_bytes(const void *plan) { return quanto_query_bytes(plan); }                  \
    void kvq_##p##_prepare_query(const void *plan, const float *q, void *qs)                              \
    { quanto_prepare_query(plan, q, qs); }                                                                \
    void kvq_##p##_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores) \
    { quanto_score(plan, qs, codes, n, scores); }

QUANTO_ROW(hf_quanto_qint2)
QUANTO_ROW(hf_quanto_qint4)
