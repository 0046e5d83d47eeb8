// deploy.c — the engines' KV formats (see deploy.h).
//
// llama.cpp accepts 9 cache types for each of -ctk and -ctv (81 pairs); the
// table lists the common ones: the same type for K and V, and K one step
// wider than V along f16 > q8_0 > q5_1 > q5_0 > q4_1 > q4_0 (keys carry the
// outliers), plus the widely used q8_0 keys with q4_0 values. A quantized V
// cache needs flash attention (-fa on); a quantized K alone does not.
// vLLM: --kv-cache-dtype auto (the model dtype, fp16 here), fp8 (= e4m3) and
// fp8_e5m2 with the per-tensor scale 1.0 vLLM uses without calibrated scales,
// with --calculate-kv-scales (per-layer scales from the first batch), and the
// four merged TurboQuant presets.
// mlx_lm: kv_bits 2, 3, 4, 6, 8 at the default group of 64, and 4 and 8 bits
// at groups of 32 and 128 (scales and biases fp16).
// TheTom/llama-cpp-turboquant (69d8e4be): -ctk/-ctv turbo2, turbo3, turbo4
// (common/arg.cpp:383-397), the same type for K and V and q8_0 keys over
// turbo values (its asymmetric setting). Flash attention is switched on by the
// fork itself for turbo types (llama-context.cpp:3003-3009); -fa on says so.
// Two defaults of the fork change what a layer stores and are pinned off so
// the row holds what it names: TURBO_AUTO_ASYMMETRIC (K = V = turboN with
// n_head / n_head_kv >= 6 stores q8_0 keys, llama-kv-cache.cpp:122-146) and
// TURBO_LAYER_ADAPTIVE (turbo2 values on >= 8 layers keep q8_0 values in the
// first and last two, :277-291, :320-326).
#include "deploy.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "methods/methods.h"
#include "trace.h"

#define LC(k, v, fl) {.engine = "llamacpp", .name = k "/" v, .flags = fl, \
                      .key_method = "llamacpp:" k, .value_method = "llamacpp:" v}
// mlx_lm: the same kv_bits and kv_group_size for K and V (generate's
// --kv-bits / --kv-group-size, kv_bits= / kv_group_size= in the Python API).
#define MX(g, b) {.engine = "mlx", .name = "g" #g "_b" #b, .flags = "--kv-bits " #b " --kv-group-size " #g, \
                  .key_method = "mlx:affine_g" #g, .value_method = "mlx:affine_g" #g, \
                  .key_bits = b, .value_bits = b}
#define TT(k, v, fl) {.engine = "tomturbo", .name = k "/" v, .flags = fl, \
                      .key_method = "tomturbo:" k, .value_method = "tomturbo:" v}
// q8_0 keys: the fork's q8_0 is llama.cpp's (test_tom_turbo holds it to llamacpp:q8_0)
#define TQ(v, fl) {.engine = "tomturbo", .name = "q8_0/" v, .flags = fl, \
                   .key_method = "llamacpp:q8_0", .value_method = "tomturbo:" v}
// transformers: generate(..., cache_implementation="quantized", cache_config=
// {...}) builds QuantizedCache(backend, config, **cache_config) (cache_utils.py,
// huggingface/transformers 004999d9); q_group_size 64 and residual_length 128
// left at their defaults. quanto at its default axis 0; HQQ at axis 1 (its
// default axis 0 groups across the whole tensor, which kvstudio does not model).
#define TFQ(b) {.engine = "transformers", .name = "quanto_b" #b, \
               .flags = "cache_implementation=\"quantized\", cache_config={\"backend\": \"quanto\", \"nbits\": " #b "}", \
               .key_method = "transformers:quanto_qint" #b "_g64", .value_method = "transformers:quanto_qint" #b "_g64"}
#define TFH(b) {.engine = "transformers", .name = "hqq_b" #b, \
               .flags = "cache_implementation=\"quantized\", cache_config={\"backend\": \"hqq\", \"nbits\": " #b \
                        ", \"axis_key\": 1, \"axis_value\": 1}", \
               .key_method = "transformers:hqq_g64", .value_method = "transformers:hqq_g64", .key_bits = b, .value_bits = b}
#define VL(n, fl, m) {.engine = "vllm", .name = n, .flags = fl, .key_method = m, .value_method = m}
// vLLM TurboQuant (engine/methods/vllm_turboquant.c): K and V records of one
// slot; vLLM keeps the first and last 2 layers of a dense model at the model
// dtype (TurboQuantConfig.get_boundary_skip_layers, n = 2, merged into
// kv_cache_dtype_skip_layers by arg_utils.py for every turboquant_ dtype).
// Hybrid models get no boundary layers there; this table assumes dense.
#define VT(n, k, v) {.engine = "vllm", .name = n, .flags = "--kv-cache-dtype turboquant_" n, \
                     .key_method = k, .value_method = v, .boundary_layers = 2}

// vLLM fp8 with --calculate-kv-scales (methods/vllm_fp8_calc.c).
#define VC(n, fl, m) {.engine = "vllm", .name = n, .flags = fl, .key_method = m, .value_method = m, \
                      .calc_scales = true}

const kvq_deploy_format kvq_deploy_formats[] = {
    LC("f32", "f32", "-ctk f32 -ctv f32"),
    LC("f16", "f16", "-ctk f16 -ctv f16 (default)"),
    LC("bf16", "bf16", "-ctk bf16 -ctv bf16"),
    LC("q8_0", "q8_0", "-ctk q8_0 -ctv q8_0 -fa on"),
    LC("q5_1", "q5_1", "-ctk q5_1 -ctv q5_1 -fa on"),
    LC("q5_0", "q5_0", "-ctk q5_0 -ctv q5_0 -fa on"),
    LC("q4_1", "q4_1", "-ctk q4_1 -ctv q4_1 -fa on"),
    LC("iq4_nl", "iq4_nl", "-ctk iq4_nl -ctv iq4_nl -fa on"),
    LC("q4_0", "q4_0", "-ctk q4_0 -ctv q4_0 -fa on"),
    LC("f16", "q8_0", "-ctk f16 -ctv q8_0 -fa on"),
    LC("q8_0", "q5_1", "-ctk q8_0 -ctv q5_1 -fa on"),
    LC("q5_1", "q5_0", "-ctk q5_1 -ctv q5_0 -fa on"),
    LC("q5_0", "q4_1", "-ctk q5_0 -ctv q4_1 -fa on"),
    LC("q4_1", "q4_0", "-ctk q4_1 -ctv q4_0 -fa on"),
    LC("q8_0", "q4_0", "-ctk q8_0 -ctv q4_0 -fa on"),
    VL("auto", "--kv-cache-dtype auto", "fp16"),
    VL("fp8", "--kv-cache-dtype fp8", "vllm:fp8_e4m3"),
    VL("fp8_e5m2", "--kv-cache-dtype fp8_e5m2", "vllm:fp8_e5m2"),
    VC("fp8_calc", "--kv-cache-dtype fp8 --calculate-kv-scales", "vllm:fp8_e4m3_calc"),
    VC("fp8_e5m2_calc", "--kv-cache-dtype fp8_e5m2 --calculate-kv-scales", "vllm:fp8_e5m2_calc"),
    VT("k8v4", "vllm:fp8_e4m3", "vllm:tq_v4"),
    VT("4bit_nc", "vllm:tq_k4", "vllm:tq_v4"),
    VT("k3v4_nc", "vllm:tq_k3", "vllm:tq_v4"),
    VT("3bit_nc", "vllm:tq_k3", "vllm:tq_v3"),
    MX(64, 2), MX(64, 3), MX(64, 4), MX(64, 6), MX(64, 8),
    MX(32, 4), MX(32, 8), MX(128, 4), MX(128, 8),
    TT("turbo4", "turbo4", "TURBO_AUTO_ASYMMETRIC=0 -ctk turbo4 -ctv turbo4 -fa on"),
    TT("turbo3", "turbo3", "TURBO_AUTO_ASYMMETRIC=0 -ctk turbo3 -ctv turbo3 -fa on"),
    TT("turbo2", "turbo2", "TURBO_AUTO_ASYMMETRIC=0 TURBO_LAYER_ADAPTIVE=0 -ctk turbo2 -ctv turbo2 -fa on"),
    TQ("turbo4", "-ctk q8_0 -ctv turbo4 -fa on"),
    TQ("turbo3", "-ctk q8_0 -ctv turbo3 -fa on"),
    TQ("turbo2", "TURBO_LAYER_ADAPTIVE=0 -ctk q8_0 -ctv turbo2 -fa on"),
    TFQ(2), TFQ(4), TFH(1), TFH(2), TFH(3), TFH(4), TFH(8),
};
const int kvq_n_deploy_formats = (int)(sizeof kvq_deploy_formats / sizeof kvq_deploy_formats[0]);

void kvq_deploy_config(const kvq_deploy_format *f, uint64_t seed, kvq_config *out)
{
    kvq_config_default(out);
    out->seed = seed;
    const kvq_method *km = kvq_method_find(f->key_method), *vm = kvq_method_find(f->value_method);
    snprintf(out->method, sizeof out->method, "%s", f->key_method);
    snprintf(out->value_method, sizeof out->value_method, "%s", f->value_method);
    out->bits = f->key_bits ? f->key_bits : km ? km->min_bits : 16;
    out->value_bits = f->value_bits ? f->value_bits : vm ? vm->min_bits : 16;
    out->protect_layers = f->boundary_layers;
}

kvq_status kvq_deploy_artifacts(const kvq_deploy_format *f, const kvq_trace *t, int first_batch,
                                kvq_artifacts **out)
{
    *out = NULL;
    if (!f->calc_scales) return KVQ_OK;
    kvq_status s = kvq_check_shape("recommend", t->path, t->n_layers, t->n_kv_heads, t->head_dim);
    if (s) return s;
    if (!t->has_values)
        return kvq_error(KVQ_ERR_FORMAT, "%s: %s needs values (the trace has keys only)", t->path, f->flags);
    int nb = first_batch < 1 ? 1 : first_batch > t->n_tokens ? t->n_tokens : first_batch;
    size_t per = (size_t)t->n_tokens * (size_t)t->head_dim, nv = (size_t)nb * (size_t)t->head_dim;
    float *x = malloc(sizeof(float) * per * (size_t)t->n_kv_heads);
    float *sc = malloc(sizeof(float) * 2 * (size_t)t->n_layers);
    if (!x || !sc) {
        free(x), free(sc);
        return kvq_error(KVQ_ERR_NOMEM, "recommend: out of memory");
    }
    for (int l = 0; l < t->n_layers && !s; l++)
        for (int v = 0; v < 2 && !s; v++) {
            for (int h = 0; h < t->n_kv_heads && !s; h++)   // the batch's tokens of every head, packed
                s = (v ? kvq_trace_values : kvq_trace_keys)(t, l, h, x + (size_t)h * per);
            for (int h = 1; h < t->n_kv_heads && !s; h++)
                memmove(x + (size_t)h * nv, x + (size_t)h * per, sizeof(float) * nv);
            if (!s) sc[2 * l + v] = kvq_vllm_kv_scale(x, nv * (size_t)t->n_kv_heads, v);
        }
    int64_t shape[2] = {t->n_layers, 2};
    if (!s) s = kvq_artifacts_new(out);
    if (!s) s = kvq_artifacts_put(*out, "vllm.kv_scales", sc, 2, shape);
    if (!s) s = kvq_artifacts_set_meta(*out, "method", f->key_method);
    free(x), free(sc);
    if (s) {
        kvq_artifacts_free(*out);
        *out = NULL;
    }
    return s;
}

// Bytes of one record of `method` at `bits`, and its side tables.
static kvq_status record_bytes(const kvq_config *c, const kvq_artifacts *art, const char *method, int bits,
                               bool is_value, int head_dim, size_t *bpv, size_t *side)
{
    kvq_plan_params p = {.bits = bits, .head_dim = head_dim, .is_value = is_value, .cfg = c, .art = art};
    kvq_quantizer q;
    kvq_status s = kvq_quantizer_init(&q, method, &p);
    if (s) return s;
    *bpv = q.bpv;
    *side = q.side;
    kvq_quantizer_free(&q);
    return KVQ_OK;
}

kvq_status kvq_deploy_memory_of(const kvq_config *c, const kvq_artifacts *art, int n_layers, int n_kv_heads,
                                int head_dim, kvq_deploy_memory *out)
{
    memset(out, 0, sizeof *out);
    kvq_status s = kvq_check_shape("recommend", NULL, n_layers, n_kv_heads, head_dim);
    if (s) return s;
    size_t ks = 0, vs = 0;
    s = record_bytes(c, art, c->method, c->bits, false, head_dim, &out->key_bpv, &ks);
    if (s) return s;
    if (kvq_config_fp16_values(c)) out->value_bpv = 2 * (size_t)head_dim;
    else if ((s = record_bytes(c, art, c->value_method[0] ? c->value_method : "turboquant_mse", c->value_bits, true,
                               head_dim, &out->value_bpv, &vs)))
        return s;
    // Protected layers as kvq_cache_new_ex keeps them (fp16 K and V).
    int prot = c->protect_layers, n_prot = 0;
    for (int l = 0; l < n_layers; l++) n_prot += prot > 0 && (l < prot || l >= n_layers - prot);
    size_t streams = (size_t)(n_layers - n_prot) * (size_t)n_kv_heads;
    out->key_bpc = 8.0 * (double)out->key_bpv / head_dim;
    out->value_bpc = 8.0 * (double)out->value_bpv / head_dim;
    out->bytes_per_token = (out->key_bpv + out->value_bpv) * streams +
                           4 * (size_t)head_dim * (size_t)n_prot * (size_t)n_kv_heads;
    out->side_bytes = (ks + vs) * streams;
    return KVQ_OK;
}

double kvq_deploy_gib_at(const kvq_deploy_memory *m, long context)
{
    return ((double)m->bytes_per_token * (double)context + (double)m->side_bytes) / (1024.0 * 1024.0 * 1024.0);
}

void kvq_deploy_pareto(const double *mem, const double *err, int n, bool *front)
{
    for (int i = 0; i < n; i++) {
        front[i] = !isnan(err[i]) && !isnan(mem[i]);
        for (int j = 0; j < n && front[i]; j++) {
            if (j == i || isnan(err[j]) || isnan(mem[j])) continue;
            if (mem[j] <= mem[i] && err[j] <= err[i] && (mem[j] < mem[i] || err[j] < err[i])) front[i] = false;
        }
    }
}
