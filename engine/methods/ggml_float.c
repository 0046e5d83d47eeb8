// methods/ggml_float.c — llama.cpp's unquantized KV cache types f32, f16 and
// bf16 (`llamacpp:f32`, `llamacpp:f16`, `llamacpp:bf16`): a record is
// head_dim elements of 4 or 2 bytes, little-endian, what ggml allocates per
// token for that type. One file for the three: they differ only in the
// element conversion.
//
// Conversions as ggml's CPU from_float / to_float (ggml-cpu/ggml-cpu.c and
// ggml/src/ggml-impl.h at llama.cpp 80fb11ac): f32 is a copy; f16 is the x86
// F16C conversion (round to nearest even, a NaN keeps its top 10 payload
// bits and becomes quiet: bit 9 set); bf16 is ggml_compute_fp32_to_bf16:
// round to nearest even by adding 0x7fff plus the kept lsb, and any NaN is
// truncated and forced quiet (| 0x40). kvq_f32_to_f16/_bf16 (f16.c) round the
// same but keep a signalling NaN signalling where its payload survives, so
// NaNs are handled here. Decoding is exact (a shift or kvq_f16_to_f32).
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "methods.h"

typedef struct {
    int d;
} ggml_float_plan;

static kvq_status float_plan_new(const kvq_plan_params *pp, const char *who, void **plan)
{
    *plan = NULL;
    if (pp->head_dim <= 0 || pp->head_dim > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_ARG, "%s: head_dim %d out of range (expected 1..%d)", who,
                         pp->head_dim, KVQ_MAX_HEAD_DIM);
    ggml_float_plan *p = malloc(sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", who);
    p->d = pp->head_dim;
    *plan = p;
    return KVQ_OK;
}

static size_t plan_dim(const void *plan) { return (size_t)((const ggml_float_plan *)plan)->d; }

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint16_t ggml_f16(float f)
{
    uint16_t h = kvq_f32_to_f16(f);
    return (f32_bits(f) & 0x7fffffffu) > 0x7f800000u ? (uint16_t)(h | 0x200) : h;
}

static uint16_t ggml_bf16(float f)
{
    const uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

static void store16(uint8_t *c, uint16_t h)
{
    c[0] = (uint8_t)(h & 0xff);
    c[1] = (uint8_t)(h >> 8);
}

static float dot_halves(const uint8_t *c, const float *q, size_t d, bool bf16)
{
    float acc = 0.0f;
    for (size_t j = 0; j < d; j++) {
        const uint16_t h = (uint16_t)(c[2 * j] | (c[2 * j + 1] << 8));
        acc += (bf16 ? kvq_bf16_to_f32(h) : kvq_f16_to_f32(h)) * q[j];
    }
    return acc;
}

// ---- f32
kvq_status kvq_ggml_f32_plan_new(const kvq_plan_params *pp, void **plan)
{
    return float_plan_new(pp, "llamacpp:f32", plan);
}
void kvq_ggml_f32_plan_free(void *plan) { free(plan); }
size_t kvq_ggml_f32_bytes_per_vector(const void *plan) { return 4 * plan_dim(plan); }
void kvq_ggml_f32_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    memcpy(codes, x, n * kvq_ggml_f32_bytes_per_vector(plan));   // little-endian host (x86)
}
void kvq_ggml_f32_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    memcpy(x, codes, n * kvq_ggml_f32_bytes_per_vector(plan));
}
size_t kvq_ggml_f32_query_bytes(const void *plan) { return sizeof(float) * plan_dim(plan); }
void kvq_ggml_f32_prepare_query(const void *plan, const float *q, void *qs)
{
    memcpy(qs, q, kvq_ggml_f32_query_bytes(plan));
}
void kvq_ggml_f32_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                        float *scores)
{
    const size_t d = plan_dim(plan);
    const float *q = qs;
    for (size_t i = 0; i < n; i++) {
        float k[KVQ_MAX_HEAD_DIM], acc = 0.0f;
        memcpy(k, codes + i * 4 * d, 4 * d);
        for (size_t j = 0; j < d; j++) acc += k[j] * q[j];
        scores[i] = acc;
    }
}

// ---- f16 and bf16
#define HALF_METHOD(p, who, conv, from_half, is_bf16)                                         \
    kvq_status kvq_##p##_plan_new(const kvq_plan_params *pp, void **plan)                      \
    { return float_plan_new(pp, who, plan); }                                                  \
    void kvq_##p##_plan_free(void *plan) { free(plan); }                                       \
    size_t kvq_##p##_bytes_per_vector(const void *plan) { return 2 * plan_dim(plan); }        \
    void kvq_##p##_encode(const void *plan, const float *x, size_t n, uint8_t *codes)          \
    {                                                                                          \
        const size_t nv = n * plan_dim(plan);                                                  \
        for (size_t i = 0; i < nv; i++) store16(codes + 2 * i, conv(x[i]));                    \
    }                                                                                          \
    void kvq_##p##_decode(const void *plan, const uint8_t *codes, size_t n, float *x)          \
    { from_half(codes, x, n * plan_dim(plan)); }                                               \
    size_t kvq_##p##_query_bytes(const void *plan) { return sizeof(float) * plan_dim(plan); }  \
    void kvq_##p##_prepare_query(const void *plan, const float *q, void *qs)                   \
    { memcpy(qs, q, kvq_##p##_query_bytes(plan)); }                                            \
    void kvq_##p##_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,     \
                         float *scores)                                                        \
    {                                                                                          \
        const size_t d = plan_dim(plan);                                                       \
        for (size_t i = 0; i < n; i++) scores[i] = dot_halves(codes + i * 2 * d, qs, d, is_bf16); \
    }

HALF_METHOD(ggml_f16, "llamacpp:f16", ggml_f16, kvq_f16_row_to_f32, false)
HALF_METHOD(ggml_bf16, "llamacpp:bf16", ggml_bf16, kvq_bf16_row_to_f32, true)
