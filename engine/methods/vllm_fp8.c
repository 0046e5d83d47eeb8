// methods/vllm_fp8.c — vLLM's fp8 KV cache (`vllm:fp8_e4m3`, `vllm:fp8_e5m2`;
// kv_cache_dtype "fp8" is e4m3): one byte per value, so a token's slot holds
// head_dim bytes per kv head, what vLLM allocates for an fp8 cache.
// Write path as vllm csrc/quantization/fp8/nvidia/quant_utils.cuh
// (scaled_vec_conversion, vllm-project/vllm 03476e5c): fp8 = __nv_cvt_float_
// to_fp8(x / scale, __NV_SATFINITE, E4M3 | E5M2), conversion rules in f16.h;
// read path: fp8 -> half (exact) -> float, times scale. The per-tensor
// scale is 1.0 here, vLLM's value when the checkpoint carries no
// k_scale/v_scale and calculate_kv_scales is off, so x / scale and
// y * scale are exact and the codes are the plain conversion.
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "methods.h"

typedef struct {
    int d;
} fp8_plan;

static kvq_status fp8_plan_new(const kvq_plan_params *pp, const char *who, void **plan)
{
    *plan = NULL;
    if (pp->head_dim <= 0 || pp->head_dim > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_ARG, "%s: head_dim %d out of range (expected 1..%d)", who,
                         pp->head_dim, KVQ_MAX_HEAD_DIM);
    fp8_plan *p = malloc(sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", who);
    p->d = pp->head_dim;
    *plan = p;
    return KVQ_OK;
}

static size_t fp8_dim(const void *plan) { return (size_t)((const fp8_plan *)plan)->d; }

#define FP8_METHOD(p, who, enc, dec)                                                           \
    kvq_status kvq_##p##_plan_new(const kvq_plan_params *pp, void **plan)                      \
    { return fp8_plan_new(pp, who, plan); }                                                    \
    void kvq_##p##_plan_free(void *plan) { free(plan); }                                       \
    size_t kvq_##p##_bytes_per_vector(const void *plan) { return fp8_dim(plan); }              \
    void kvq_##p##_encode(const void *plan, const float *x, size_t n, uint8_t *codes)          \
    {                                                                                          \
        const size_t nv = n * fp8_dim(plan);                                                   \
        for (size_t i = 0; i < nv; i++) codes[i] = enc(x[i]);                                  \
    }                                                                                          \
    void kvq_##p##_decode(const void *plan, const uint8_t *codes, size_t n, float *x)          \
    {                                                                                          \
        const size_t nv = n * fp8_dim(plan);                                                   \
        for (size_t i = 0; i < nv; i++) x[i] = dec(codes[i]);                                  \
    }                                                                                          \
    size_t kvq_##p##_query_bytes(const void *plan) { return sizeof(float) * fp8_dim(plan); }   \
    void kvq_##p##_prepare_query(const void *plan, const float *q, void *qs)                   \
    { memcpy(qs, q, kvq_##p##_query_bytes(plan)); }                                            \
    void kvq_##p##_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,     \
                         float *scores)                                                        \
    {                                                                                          \
        const size_t d = fp8_dim(plan);                                                        \
        const float *q = qs;                                                                   \
        for (size_t i = 0; i < n; i++) {                                                       \
            float acc = 0.0f;                                                                  \
            for (size_t j = 0; j < d; j++) acc += dec(codes[i * d + j]) * q[j];                \
            scores[i] = acc;                                                                   \
        }                                                                                      \
    }

FP8_METHOD(vllm_fp8_e4m3, "vllm:fp8_e4m3", kvq_f32_to_f8e4m3_sat, kvq_f8e4m3_to_f32)
FP8_METHOD(vllm_fp8_e5m2, "vllm:fp8_e5m2", kvq_f32_to_f8e5m2_sat, kvq_f8e5m2_to_f32)
