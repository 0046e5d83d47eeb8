// methods.c — the one traits table of quantization methods.
// Adding a method = one file under methods/ + one row here.
#include <stdio.h>
#include <string.h>
#include "methods/methods.h"

const kvq_method kvq_methods[] = {
    {.name = "fp16", .description = "uncompressed fp16 baseline", .paper = "",
     .min_bits = 16, .max_bits = 16, KVQ_METHOD_FNS(fp16)},
    // llama.cpp's -ctk/-ctv cache types, byte-equal to ggml's CPU KV write
    // path (`make peers`). A quantized V cache needs flash attention (-fa on).
    // bits is the config knob (1..16); a fixed format ignores it, and its
    // storage comes from bytes_per_vector (f32: 32 bits a value).
    {.name = "llamacpp:f32", .description = "ggml f32 cache: 4 bytes a value",
     .paper = "llama.cpp ggml", .min_bits = 16, .max_bits = 16, KVQ_METHOD_FNS(ggml_f32)},
    {.name = "llamacpp:f16", .description = "ggml f16 cache (llama.cpp's default): 2 bytes a value",
     .paper = "llama.cpp ggml", .min_bits = 16, .max_bits = 16, KVQ_METHOD_FNS(ggml_f16)},
    {.name = "llamacpp:bf16", .description = "ggml bf16 cache: 2 bytes a value",
     .paper = "llama.cpp ggml", .min_bits = 16, .max_bits = 16, KVQ_METHOD_FNS(ggml_bf16)},
    {.name = "llamacpp:q8_0", .alias = "q8_0",
     .description = "ggml q8_0: blocks of 32, f16 scale, int8 (8.5 bits)",
     .paper = "llama.cpp ggml-quants.c", .min_bits = 8, .max_bits = 8, KVQ_METHOD_FNS(q8_0)},
    {.name = "llamacpp:q4_0", .alias = "q4_0",
     .description = "ggml q4_0: blocks of 32, d = max/-8, 4 bits (4.5 bits)",
     .paper = "llama.cpp ggml-quants.c", .min_bits = 4, .max_bits = 4, KVQ_METHOD_FNS(q4_0)},
    {.name = "llamacpp:q4_1", .description = "ggml q4_1: blocks of 32, f16 scale + min, 4 bits (5 bits)",
     .paper = "llama.cpp ggml-quants.c", .min_bits = 4, .max_bits = 4, KVQ_METHOD_FNS(q4_1)},
    {.name = "llamacpp:iq4_nl", .alias = "iq4_nl",
     .description = "ggml iq4_nl: f16 scale x non-uniform 16-level grid",
     .paper = "llama.cpp ggml-quants.c", .min_bits = 4, .max_bits = 4, KVQ_METHOD_FNS(iq4_nl)},
    {.name = "llamacpp:q5_0", .description = "ggml q5_0: blocks of 32, d = max/-16, 5 bits (5.5 bits)",
     .paper = "llama.cpp ggml-quants.c", .min_bits = 5, .max_bits = 5, KVQ_METHOD_FNS(q5_0)},
    {.name = "llamacpp:q5_1", .description = "ggml q5_1: blocks of 32, f16 scale + min, 5 bits (6 bits)",
     .paper = "llama.cpp ggml-quants.c", .min_bits = 5, .max_bits = 5, KVQ_METHOD_FNS(q5_1)},
    // vLLM's kv_cache_dtype fp8 (= fp8_e4m3) and fp8_e5m2, per-tensor scale 1.0.
    {.name = "vllm:fp8_e4m3", .description = "vLLM fp8 cache: E4M3 per value, saturating (8 bits)",
     .paper = "vLLM quant_utils.cuh", .min_bits = 8, .max_bits = 8, KVQ_METHOD_FNS(vllm_fp8_e4m3)},
    {.name = "vllm:fp8_e5m2", .description = "vLLM fp8 cache: E5M2 per value, saturating (8 bits)",
     .paper = "vLLM quant_utils.cuh", .min_bits = 8, .max_bits = 8, KVQ_METHOD_FNS(vllm_fp8_e5m2)},
    // vLLM fp8 with --calculate-kv-scales: per-layer scales from the first
    // batch, artifacts tensor vllm.kv_scales (methods/vllm_fp8_calc.c).
    {.name = "vllm:fp8_e4m3_calc", .description = "vLLM fp8 cache, calculated scales: E4M3 of x / (max|x| / 200 or 100)",
     .paper = "vLLM attention.py calc_kv_scales", .needs_calibration = true, .min_bits = 8, .max_bits = 8,
     KVQ_METHOD_FNS(vllm_fp8_e4m3_calc)},
    {.name = "vllm:fp8_e5m2_calc", .description = "vLLM fp8_e5m2 cache, calculated scales: E5M2 of x / scale",
     .paper = "vLLM attention.py calc_kv_scales", .needs_calibration = true, .min_bits = 8, .max_bits = 8,
     KVQ_METHOD_FNS(vllm_fp8_e5m2_calc)},
    // vLLM's TurboQuant presets (--kv-cache-dtype turboquant_*): key and
    // value records of the combined slot (methods/vllm_turboquant.c).
    {.name = "vllm:tq_k4", .description = "vLLM TurboQuant keys: Hadamard + 4-bit Lloyd-Max, fp16 norm, norm-corrected",
     .paper = "vLLM triton_turboquant_store.py", .min_bits = 4, .max_bits = 4, KVQ_METHOD_FNS(vllm_tq_k4)},
    {.name = "vllm:tq_k3", .description = "vLLM TurboQuant keys: Hadamard + 3-bit Lloyd-Max, fp16 norm, norm-corrected",
     .paper = "vLLM triton_turboquant_store.py", .min_bits = 3, .max_bits = 3, KVQ_METHOD_FNS(vllm_tq_k3)},
    {.name = "vllm:tq_v4", .description = "vLLM TurboQuant values: 4-bit uniform, fp16 scale + min",
     .paper = "vLLM triton_turboquant_store.py", .min_bits = 4, .max_bits = 4, KVQ_METHOD_FNS(vllm_tq_v4)},
    {.name = "vllm:tq_v3", .description = "vLLM TurboQuant values: 3-bit uniform, fp16 scale + min",
     .paper = "vLLM triton_turboquant_store.py", .min_bits = 3, .max_bits = 3, KVQ_METHOD_FNS(vllm_tq_v3)},
    // mlx_lm's QuantizedKVCache: mx.quantize affine groups along head_dim
    // (kv_group_size 32/64/128), kv_bits 2..8 (not 7), fp16 scale + bias.
    {.name = "mlx:affine_g32", .description = "mlx_lm kv cache: affine groups of 32, fp16 scale + bias",
     .paper = "mlx quantized.cpp", .min_bits = 2, .max_bits = 8, KVQ_METHOD_FNS(mlx_affine_g32)},
    {.name = "mlx:affine_g64", .description = "mlx_lm kv cache (default group): affine groups of 64, fp16 scale + bias",
     .paper = "mlx quantized.cpp", .min_bits = 2, .max_bits = 8, KVQ_METHOD_FNS(mlx_affine_g64)},
    {.name = "mlx:affine_g128", .description = "mlx_lm kv cache: affine groups of 128, fp16 scale + bias",
     .paper = "mlx quantized.cpp", .min_bits = 2, .max_bits = 8, KVQ_METHOD_FNS(mlx_affine_g128)},
    {.name = "q4_0_hadamard", .description = "q4_0 after a randomized Hadamard rotation",
     .paper = "QuaRot-style rotation + ggml q4_0", .min_bits = 4, .max_bits = 4,
     KVQ_METHOD_FNS(q4_0_hadamard),
     .side_bytes = kvq_q4_0_hadamard_side_bytes},
    {.name = "kivi", .description = "KIVI asymmetric: keys per channel, values per token, group 32",
     .paper = "arXiv 2402.02750", .min_bits = 2, .max_bits = 8, KVQ_METHOD_FNS(kivi),
     .group_vectors = kvq_kivi_group_vectors},
    {.name = "turboquant_mse", .description = "TurboQuant Alg. 1: rotate + Lloyd-Max per coordinate",
     .paper = "arXiv 2504.19874", .min_bits = 1, .max_bits = 8, KVQ_METHOD_FNS(tq_mse),
     .side_bytes = kvq_tq_mse_side_bytes},
    {.name = "turboquant_prod", .description = "TurboQuant Alg. 2: MSE at b-1 bits + 1-bit QJL residual",
     .paper = "arXiv 2504.19874", .min_bits = 1, .max_bits = 8, KVQ_METHOD_FNS(tq_prod),
     .side_bytes = kvq_tq_prod_side_bytes},
    {.name = "turboquant_rvq", .description = "residual passes of Hadamard + Lloyd-Max",
     .paper = "arXiv 2504.19874 (residual variant)", .min_bits = 1, .max_bits = 8,
     KVQ_METHOD_FNS(tq_rvq),
     .side_bytes = kvq_tq_rvq_side_bytes},
    {.name = "qjl", .description = "1-bit quantized JL sketch of keys + norm, outlier channels apart",
     .paper = "arXiv 2406.03482", .min_bits = 1, .max_bits = 1, KVQ_METHOD_FNS(qjl),
     .side_bytes = kvq_qjl_side_bytes},
    {.name = "polarquant", .description = "recursive polar transform, per-level angle codebooks",
     .paper = "arXiv 2502.02617", .min_bits = 2, .max_bits = 8, KVQ_METHOD_FNS(polarquant),
     .side_bytes = kvq_polarquant_side_bytes},
    {.name = "rabitq", .description = "IVF + 1-bit (or extended) codes with unbiased estimator",
     .paper = "RaBitQ, SIGMOD 2024", .min_bits = 1, .max_bits = 8, .needs_calibration = true,
     KVQ_METHOD_FNS(rabitq),
     .side_bytes = kvq_rabitq_side_bytes},
    {.name = "commvq", .description = "RoPE-commutative additive 2x2 codebooks trained by EM",
     .paper = "arXiv 2506.18879", .min_bits = 1, .max_bits = 4, .needs_calibration = true,
     KVQ_METHOD_FNS(commvq),
     .side_bytes = kvq_commvq_side_bytes},
    {.name = "vecinfer", .description = "smoothing + Hadamard + product-VQ codebooks",
     .paper = "VecInfer", .min_bits = 1, .max_bits = 4, .needs_calibration = true,
     KVQ_METHOD_FNS(vecinfer),
     .side_bytes = kvq_vecinfer_side_bytes},
    {.name = "spectral", .description = "SpectralQuant: eigenbasis, signal/noise bits",
     .paper = "SpectralQuant", .min_bits = 1, .max_bits = 8, .needs_calibration = true,
     KVQ_METHOD_FNS(spectral),
     .side_bytes = kvq_spectral_side_bytes},
    {.name = "ratequant", .description = "RateQuant per-layer bit allocation over turboquant_mse",
     .paper = "RateQuant", .min_bits = 1, .max_bits = 8, .needs_calibration = true,
     KVQ_METHOD_FNS(ratequant),
     .side_bytes = kvq_ratequant_side_bytes},
    // TheTom/llama-cpp-turboquant's -ctk/-ctv turbo2/3/4: per 128 values an f16
    // corrected norm and WHT-rotated centroid indices (heads padded to 128).
    // Last in the table, so the studio's method picker keeps its first page.
    {.name = "tomturbo:turbo2", .description = "TurboQuant fork turbo2: WHT + 2-bit centroids, f16 norm (2.125 bits)",
     .paper = "llama-cpp-turboquant ggml-turbo-quant.c", .min_bits = 2, .max_bits = 2, KVQ_METHOD_FNS(tomturbo_turbo2)},
    {.name = "tomturbo:turbo3", .description = "TurboQuant fork turbo3: WHT + 3-bit centroids, f16 norm (3.125 bits)",
     .paper = "llama-cpp-turboquant ggml-turbo-quant.c", .min_bits = 3, .max_bits = 3, KVQ_METHOD_FNS(tomturbo_turbo3)},
    {.name = "tomturbo:turbo4", .description = "TurboQuant fork turbo4: WHT + 4-bit centroids, f16 norm (4.25 bits)",
     .paper = "llama-cpp-turboquant ggml-turbo-quant.c", .min_bits = 4, .max_bits = 4, KVQ_METHOD_FNS(tomturbo_turbo4)},
    // transformers' QuantizedCache (cache_implementation="quantized"): groups
    // of 64 along head_dim, fp16 scale + shift/zero; side_bytes = the fp16
    // residual window (up to 127 tokens a stream).
    {.name = "transformers:quanto_qint2_g64",
     .description = "transformers quanto cache nbits 2, axis 0: groups of 64, fp16 scale + shift",
     .paper = "optimum-quanto MaxOptimizer", .min_bits = 2, .max_bits = 2, KVQ_METHOD_FNS(hf_quanto_qint2),
     .side_bytes = kvq_hf_quanto_qint2_side_bytes},
    {.name = "transformers:quanto_qint4_g64",
     .description = "transformers quanto cache nbits 4, axis 0: groups of 64, fp16 scale + shift",
     .paper = "optimum-quanto MaxOptimizer", .min_bits = 4, .max_bits = 4, KVQ_METHOD_FNS(hf_quanto_qint4),
     .side_bytes = kvq_hf_quanto_qint4_side_bytes},
    {.name = "transformers:hqq_g64",
     .description = "transformers HQQ cache, axis 1: groups of 64, proximal zero, fp16 scale + zero",
     .paper = "hqq optimize_weights_proximal", .min_bits = 1, .max_bits = 8, KVQ_METHOD_FNS(hf_hqq),
     .side_bytes = kvq_hf_hqq_side_bytes},
};
const int kvq_n_methods = (int)(sizeof kvq_methods / sizeof kvq_methods[0]);

const kvq_method *kvq_method_find(const char *name)
{
    for (int i = 0; i < kvq_n_methods; i++)
        if (name && (strcmp(kvq_methods[i].name, name) == 0 ||
                     (kvq_methods[i].alias && strcmp(kvq_methods[i].alias, name) == 0)))
            return &kvq_methods[i];
    return NULL;
}

kvq_status kvq_method_lookup(const char *name, const kvq_method **out)
{
    *out = kvq_method_find(name);
    if (*out) return KVQ_OK;
    char known[1024] = "";
    size_t len = 0;
    for (int i = 0; i < kvq_n_methods; i++)
        len += (size_t)snprintf(known + len, len < sizeof known ? sizeof known - len : 0, "%s%s",
                                i ? ", " : "", kvq_methods[i].name);
    return kvq_error(KVQ_ERR_UNKNOWN_METHOD, "unknown method '%s' (known: %s)", name ? name : "",
                     known);
}

kvq_status kvq_quantizer_init(kvq_quantizer *q, const char *method, const kvq_plan_params *p)
{
    memset(q, 0, sizeof *q);
    const kvq_method *m;
    kvq_status s = kvq_method_lookup(method, &m);
    if (s) return s;
    if (p->bits < m->min_bits || p->bits > m->max_bits)
        return kvq_error(KVQ_ERR_ARG, "%s: bits %d out of range (expected %d..%d)", m->name,
                         p->bits, m->min_bits, m->max_bits);
    if (p->head_dim <= 0 || p->head_dim > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_ARG, "%s: head_dim %d out of range (expected 1..%d)", m->name,
                         p->head_dim, KVQ_MAX_HEAD_DIM);
    s = m->plan_new(p, &q->plan);
    if (s) return s;
    q->m = m;
    q->bpv = m->bytes_per_vector(q->plan);
    q->qbytes = m->query_bytes(q->plan);
    q->group = m->group_vectors ? m->group_vectors(q->plan) : 1;
    q->side = m->side_bytes ? m->side_bytes(q->plan) : 0;
    q->head_dim = p->head_dim;
    q->bits = p->bits;
    return KVQ_OK;
}

void kvq_quantizer_free(kvq_quantizer *q)
{
    if (q->m && q->plan) q->m->plan_free(q->plan);
    memset(q, 0, sizeof *q);
}
