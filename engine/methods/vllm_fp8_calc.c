// methods/vllm_fp8_calc.c — vLLM's fp8 KV cache with --calculate-kv-scales
// (`vllm:fp8_e4m3_calc`, `vllm:fp8_e5m2_calc`): one byte a value, as
// vllm:fp8_*, but through a per-layer scale computed from the data.
// Read in vllm-project/vllm:
//   vllm/model_executor/layers/attention/attention.py @ 0014ca6b
//     set_default_quant_scales: k_range = K_SCALE_CONSTANT, v_range =
//     V_SCALE_CONSTANT (vllm/envs.py: 200 and 100), fp32 tensors;
//     Attention.calc_kv_scales: _k_scale = abs(key).max() / k_range, the
//     same for values, once, on the layer's first forward (then
//     calculate_kv_scales = False): one scale a layer over every kv head
//     and token of that first batch (the prompt's prefill).
//   csrc/quantization/fp8/nvidia/quant_utils.cuh (as engine/methods/
//     vllm_fp8.c): fp8 = __nv_cvt_float_to_fp8(x / scale, __NV_SATFINITE,
//     E4M3 | E5M2); read back fp8 -> float times scale.
// The scales live in artifacts tensor "vllm.kv_scales" (n_layers, 2) =
// [k_scale, v_scale] a layer, which kvq_vllm_kv_scale fills from the first
// batch (engine/deploy.c kvq_deploy_artifacts does it for `recommend`).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "f16.h"
#include "methods.h"

float kvq_vllm_kv_scale(const float *x, size_t n, bool is_value)
{
    // abs(key).max() of the model-dtype (fp16) tensor is exact in fp16;
    // dividing by the fp32 range tensor promotes to fp32.
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(kvq_f16_to_f32(kvq_f32_to_f16(x[i])));
        if (a > amax || isnan(a)) amax = a;   // torch.max propagates NaN
        if (isnan(amax)) break;
    }
    return amax / (is_value ? 100.0f : 200.0f);
}

typedef struct {
    int d;
    float scale;
} fp8c_plan;

static kvq_status fp8c_plan_new(const kvq_plan_params *pp, const char *who, void **plan)
{
    *plan = NULL;
    if (pp->head_dim <= 0 || pp->head_dim > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_ARG, "%s: head_dim %d out of range (expected 1..%d)", who, pp->head_dim,
                         KVQ_MAX_HEAD_DIM);
    int ndim = 0;
    int64_t shape[4] = {0};
    const float *s = pp->art ? kvq_artifacts_get(pp->art, "vllm.kv_scales", &ndim, shape) : NULL;
    if (!s || ndim != 2 || shape[1] != 2 || pp->layer < 0 || pp->layer >= shape[0])
        return kvq_error(KVQ_ERR_NEEDS_CALIBRATION,
                         "%s: needs the per-layer k/v scales of the first batch (artifacts tensor vllm.kv_scales, "
                         "(n_layers, 2), for layer %d); `recommend` computes them from the trace", who, pp->layer);
    float sc = s[2 * pp->layer + (pp->is_value ? 1 : 0)];
    if (!(sc > 0.0f) || !isfinite(sc))
        return kvq_error(KVQ_ERR_NUMERIC, "%s: layer %d %s scale %g (expected finite > 0; an all-zero first "
                         "batch gives 0)", who, pp->layer, pp->is_value ? "v" : "k", (double)sc);
    fp8c_plan *p = malloc(sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", who);
    p->d = pp->head_dim;
    p->scale = sc;
    *plan = p;
    return KVQ_OK;
}

#define FP8C_METHOD(p, who, enc, dec)                                                          \
    kvq_status kvq_##p##_plan_new(const kvq_plan_params *pp, void **plan)                      \
    { return fp8c_plan_new(pp, who, plan); }                                                   \
    void kvq_##p##_plan_free(void *plan) { free(plan); }                                       \
    size_t kvq_##p##_bytes_per_vector(const void *plan)                                        \
    { return (size_t)((const fp8c_plan *)plan)->d; }                                           \
    void kvq_##p##_encode(const void *plan, const float *x, size_t n, uint8_t *codes)          \
    {                                                                                          \
        const fp8c_plan *P = plan;                                                             \
        for (size_t i = 0; i < n * (size_t)P->d; i++) codes[i] = enc(x[i] / P->scale);         \
    }                                                                                          \
    void kvq_##p##_decode(const void *plan, const uint8_t *codes, size_t n, float *x)          \
    {                                                                                          \
        const fp8c_plan *P = plan;                                                             \
        for (size_t i = 0; i < n * (size_t)P->d; i++) x[i] = dec(codes[i]) * P->scale;         \
    }                                                                                          \
    size_t kvq_##p##_query_bytes(const void *plan)                                             \
    { return sizeof(float) * (size_t)((const fp8c_plan *)plan)->d; }                           \
    void kvq_##p##_prepare_query(const void *plan, const float *q, void *qs)                   \
    { memcpy(qs, q, kvq_##p##_query_bytes(plan)); }                                            \
    void kvq_##p##_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,     \
                         float *scores)                                                        \
    {                                                                                          \
        const fp8c_plan *P = plan;                                                             \
        const float *q = qs;                                                                   \
        for (size_t i = 0; i < n; i++) {                                                       \
            float acc = 0.0f;                                                                  \
            const uint8_t *c = codes + i * (size_t)P->d;                                       \
            for (int j = 0; j < P->d; j++) acc += dec(c[j]) * P->scale * q[j];                 \
            scores[i] = acc;                                                                   \
        }                                                                                      \
    }

FP8C_METHOD(vllm_fp8_e4m3_calc, "vllm:fp8_e4m3_calc", kvq_f32_to_f8e4m3_sat, kvq_f8e4m3_to_f32)
FP8C_METHOD(vllm_fp8_e5m2_calc, "vllm:fp8_e5m2_calc", kvq_f32_to_f8e5m2_sat, kvq_f8e5m2_to_f32)
