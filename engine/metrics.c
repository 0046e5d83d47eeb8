// metrics.c — the metrics table (see metrics.h). docs/METRICS.md is checked
// against it by tests/test_metrics.c, so the doc cannot drift from the code.
#include "metrics.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#define M(i) [KVQ_M_##i] = {.id = KVQ_M_##i

const kvq_metric kvq_metrics[KVQ_M_COUNT] = {
    M(KEY_BITS), .name = "key bits", .json = "key_bits_per_coord", .report = "keys.bits_per_coord",
     .unit = "bits/coord", .fmt = "%.3f",
     .formula = "bytes held by key records x 8 / key coordinates (a partial group held in fp16 counts 16)",
     .over = "every key vector encoded, all layers and kv heads (quantize, lab, benchmark)"},
    M(VALUE_BITS), .name = "value bits", .json = "value_bits_per_coord", .report = "values.bits_per_coord",
     .unit = "bits/coord", .fmt = "%.3f",
     .formula = "bytes held by value records x 8 / value coordinates (fp16 values: 16)",
     .over = "every value vector encoded, all layers and kv heads"},
    M(KEY_BITS_SIDE), .name = "key bits with side tables", .json = "key_bits_per_coord_with_side",
     .report = "keys.bits_per_coord_with_side", .unit = "bits/coord", .fmt = "%.3f",
     .formula = "(key record bytes + the plans' side tables: rotations, codebooks, centroids) x 8 / key coordinates",
     .over = "the trace's tokens (side tables amortize: longer traces pay less per token)"},
    M(VALUE_BITS_SIDE), .name = "value bits with side tables", .json = "value_bits_per_coord_with_side",
     .report = "values.bits_per_coord_with_side", .unit = "bits/coord", .fmt = "%.3f",
     .formula = "(value record bytes + side tables) x 8 / value coordinates", .over = "the trace's tokens"},
    M(COMPRESSION), .name = "compression", .json = "compression_ratio", .report = "", .unit = "x",
     .fmt = "%.2f",
     .formula = "fp16 K+V bytes / record bytes held = 32 / (key bits + value bits)",
     .over = "every key and value record (no windows, scratch or side tables)"},
    M(CACHE_COMPRESSION), .name = "cache compression", .json = "cache_compression_ratio",
     .report = "memory.compression_ratio", .unit = "x", .fmt = "%.2f",
     .formula = "peak fp16 K+V bytes of the visible tokens / peak bytes the caches allocated",
     .over = "a replay or model run (allocations: records, fp16 sinks/windows, scratch, side tables)"},
    M(CACHE_MB), .name = "peak cache memory", .json = "peak_cache_mb", .report = "memory.peak_compressed_mb",
     .unit = "MB", .fmt = "%.3f", .formula = "largest sum over layers of the bytes each cache allocated / 2^20",
     .over = "every append of a replay or model run"},
    M(FP16_MB), .name = "peak fp16 memory", .json = "peak_fp16_mb", .report = "memory.peak_fp16_mb",
     .unit = "MB", .fmt = "%.3f", .formula = "largest fp16 K+V bytes of the visible tokens / 2^20",
     .over = "every append of a replay or model run"},
    M(BYTES_PER_TOKEN), .name = "cache bytes per token", .json = "cache_bytes_per_token",
     .report = "memory.bytes_per_token", .unit = "bytes/token", .fmt = "%.1f",
     .formula = "bytes the caches hold now / visible tokens of the longest layer",
     .over = "all layers, K+V, at the end of the run"},
    M(KEY_REL_MSE), .name = "key rel MSE", .json = "key_relative_mse", .report = "keys.relative_mse",
     .unit = "", .fmt = "%.5f", .formula = "mean |k - k^|^2 / |k|^2 (k = 0 skipped)",
     .over = "key vectors: all of them (quantize, lab); the compressed keys the distortion observer samples "
             "(benchmark report distortion.mean_relative_mse)"},
    M(VALUE_REL_MSE), .name = "value rel MSE", .json = "value_relative_mse", .report = "values.relative_mse",
     .unit = "", .fmt = "%.5f", .formula = "mean |v - v^|^2 / |v|^2 (v = 0 skipped)",
     .over = "every value vector (quantize, lab)"},
    M(KEY_COSINE), .name = "key cosine", .json = "key_cosine", .report = "keys.cosine",
     .unit = "", .fmt = "%.4f", .formula = "mean k . k^ / (|k| |k^|)",
     .over = "key vectors: all (quantize, lab); the compressed keys sampled by the distortion observer "
             "(benchmark report distortion.mean_cosine_similarity); n/a when no key was compressed"},
    M(KEY_COSINE_MIN), .name = "min key cosine", .json = "min_key_cosine",
     .report = "distortion.min_cosine_similarity", .unit = "", .fmt = "%.4f",
     .formula = "min k . k^ / (|k| |k^|)", .over = "the compressed keys sampled by the distortion observer"},
    M(VALUE_COSINE), .name = "value cosine", .json = "value_cosine", .report = "values.cosine",
     .unit = "", .fmt = "%.4f", .formula = "mean v . v^ / (|v| |v^|)", .over = "every value vector (quantize, lab)"},
    M(QK_ERROR), .name = "q.k error", .json = "qk_error", .report = "ip_relative_error",
     .unit = "", .fmt = "%.5f",
     .formula = "sqrt( sum (s^ - s)^2 / sum s^2 ), s = q . k exact, s^ = the method's score from the codes",
     .over = "(query, key) pairs: 64 evenly spaced query rows per query head against every key at or before "
             "their position (quantize, lab)"},
    M(PROBE_ERROR), .name = "probe q.k error", .json = "probe_qk_error", .report = "distortion.mean_ip_error",
     .unit = "", .fmt = "%.5f", .formula = "mean |u . k - est(u . k)| / |k| for one random unit probe u",
     .over = "the compressed keys sampled by the distortion observer (benchmark, generate)"},
    M(ATTN_KEY_ERROR), .name = "attention error (keys)", .json = "attention_key_error", .report = "",
     .unit = "", .fmt = "%.5f",
     .formula = "sum |o - o^|^2 / sum |o|^2, o = exact causal attention output, o^ = the same with keys "
                "encoded and decoded (values exact)",
     .over = "64 evenly spaced query rows x every query head x every layer (lab `run`, calibration)"},
    M(OUTPUT_ERROR), .name = "output error", .json = "output_error", .report = "attention.mean_output_rel_error",
     .unit = "", .fmt = "%.4f",
     .formula = "mean |o - o^| / |o|, o = exact fp32 attention over the original K and V, o^ = the cache's "
                "attention (K and V compressed, windows, sinks)",
     .over = "every decode query of every query head and layer, or above 2^27 exact (query, key) pairs a "
             "stated seeded sample of them (attention sample rate) (benchmark, compare, dashboard, generate)"},
    M(ATTN_KL), .name = "attention KL", .json = "attention_kl", .report = "attention.mean_kl_divergence",
     .unit = "bits", .fmt = "%.5f",
     .formula = "mean KL(p || p^) in bits, p and p^ = softmax of exact and cached scores over the positions "
                "the cache holds",
     .over = "the queries output error is measured over (benchmark, compare, dashboard, generate)"},
    M(TOPK_RECALL), .name = "top-k recall", .json = "topk_recall", .report = "attention.topk_recall",
     .unit = "", .fmt = "%.3f", .formula = "mean |top-k(p) & top-k(p^)| / k (k = 8)",
     .over = "the queries output error is measured over"},
    M(ATTN_SAMPLE_RATE), .name = "attention sample rate", .json = "sample_rate", .report = "attention.sample_rate",
     .unit = "", .fmt = "%.4f",
     .formula = "1 / s, s = ceil(exact (query, key) pairs over every query / 2^27): every s-th query row of each "
                "(layer, kv head) from an offset hashed from the seed is compared exactly; 1 = every query",
     .over = "one replay (benchmark, compare); num_queries_attended counts the query heads that went through "
             "the cache, num_queries the ones compared"},
    M(NEXT_TOKEN_KL), .name = "next-token KL", .json = "next_token_kl", .report = "kl_divergence",
     .unit = "bits/token", .fmt = "%.5f",
     .formula = "mean KL(p_fp16 || p_cache) in bits of the model's next-token distributions",
     .over = "every predicted position of the text (ppl, recommend --model); 0 for the fp16 cache"},
    M(BITS_PER_BYTE), .name = "bits/byte", .json = "bits_per_byte", .report = "bits_per_byte",
     .unit = "bits/byte", .fmt = "%.4f",
     .formula = "sum of -log2 p(next token) of the model through the cache / UTF-8 bytes those tokens cover "
                "(byte-level models: mean -log2 p(next byte))",
     .over = "every predicted token of the text (ppl, recommend --model, capture, trace metadata)"},
    M(BITS_PER_TOKEN), .name = "bits/token", .json = "bits_per_token", .report = "bits_per_token",
     .unit = "bits/token", .fmt = "%.4f", .formula = "mean -log2 p(next token) of the model through the cache",
     .over = "every predicted token (ppl with a tokenizer.json or --tokens)"},
    M(PERPLEXITY), .name = "perplexity", .json = "perplexity", .report = "perplexity", .unit = "", .fmt = "%.3f",
     .formula = "2^(bits/token) = exp(mean -ln p(next token))",
     .over = "every predicted token (ppl with a tokenizer.json)"},
    M(ENCODE_MS), .name = "encode time", .json = "mean_encode_ms", .report = "latency.mean_encode_ms",
     .unit = "ms", .fmt = "%.3f", .formula = "mean wall time of one kvq_cache_append call",
     .over = "every append after the first 2 per layer (warm-up)"},
    M(ENCODE_P99_MS), .name = "encode p99", .json = "p99_encode_ms", .report = "latency.p99_encode_ms",
     .unit = "ms", .fmt = "%.3f", .formula = "99th percentile of the append times",
     .over = "every append after the warm-up"},
    M(ATTEND_MS), .name = "attend time", .json = "mean_attend_ms", .report = "latency.mean_decode_ms",
     .unit = "ms", .fmt = "%.3f", .formula = "mean wall time of one attend call (scores + values from the codes)",
     .over = "every attend after the first 2 per layer"},
    M(ENCODE_VPS), .name = "encode throughput", .json = "encode_vectors_per_s", .report = "",
     .unit = "vectors/s", .fmt = "%.0f",
     .formula = "key/value vectors appended (tokens x layers x kv heads) / total append time",
     .over = "the last run of a replay"},
    M(TOKENS_PER_S), .name = "throughput", .json = "tokens_per_s", .report = "prefill_tokens_per_s",
     .unit = "tokens/s", .fmt = "%.0f", .formula = "tokens / wall time of the model's forward passes",
     .over = "ppl: the whole text in chunks of 128; generate: prefill and decode separately"},
    M(KEY_NORM), .name = "key norm", .json = "mean_key_norm", .report = "key_norm.mean_key_norm",
     .unit = "", .fmt = "%.3f", .formula = "mean |k| (also std and max)", .over = "every key appended"},
    M(OUTLIER_FRACTION), .name = "outlier keys", .json = "outlier_fraction", .report = "key_norm.outlier_fraction",
     .unit = "%", .fmt = "%.2f",
     .formula = "100 x keys with |k| > 3 x the rolling mean of the previous 128 norms / keys",
     .over = "every key appended"},
    M(NORM), .name = "|x|", .json = "mean_norm", .report = "per_head.keys.mean_norm", .unit = "", .fmt = "%.3f",
     .formula = "mean (also std, max) of the Euclidean norm |x| of each vector",
     .over = "every vector of one stream (keys or values) of one layer and kv head (info, explorer)"},
    M(D_EFF), .name = "d_eff", .json = "d_eff", .report = "per_head.keys.d_eff", .unit = "dims", .fmt = "%.1f",
     .formula = "(sum l)^2 / sum l^2 over the eigenvalues l of the stream's covariance (LAPACK ssyevd)",
     .over = "one stream of one layer and kv head (info, explorer, spectral calibration)"},
    M(CHANNEL_RATIO), .name = "channel max / median", .json = "ratio_to_median",
     .report = "per_head.keys.outlier_channels[].ratio_to_median", .unit = "x", .fmt = "%.1f",
     .formula = "max |x_c| of channel c / the median over channels of that maximum",
     .over = "one stream of one layer and kv head; the top channels are listed (info, explorer)"},
    M(KEY_SENS_ATTN), .name = "key sensitivity (attention)", .json = "key_sensitivity", .report = "", .unit = "",
     .fmt = "%.3g",
     .formula = "mean over noise draws of sum |o' - o|^2 / sum |o|^2, o' with keys + noise_scale x std(k) x N(0, 1)",
     .over = "the layer's (or head's) kv heads x its calibration query rows (ratequant from a trace)"},
    M(VALUE_SENS_ATTN), .name = "value sensitivity (attention)", .json = "value_sensitivity", .report = "",
     .unit = "", .fmt = "%.3g", .formula = "the same with the values perturbed and the keys exact",
     .over = "as key sensitivity (attention); reported, not used by the allocation"},
    M(KEY_SENS_KL), .name = "key sensitivity (next-token KL)", .json = "key_sensitivity_kl", .report = "",
     .unit = "bits/token", .fmt = "%.3g",
     .formula = "mean over noise draws of the next-token KL when one layer's keys get noise_scale x std noise",
     .over = "the trace's tokens run through the model (ratequant --model)"},
    M(RQ_FIT_ERROR), .name = "rate curve fit error", .json = "fit_error", .report = "", .unit = "", .fmt = "%.4f",
     .formula = "RMS of the log residuals of D(r) = alpha exp(-beta r) fitted to turboquant_mse rel MSE at 1..4 bits",
     .over = "one layer's (or head's) keys (ratequant)"},
    M(TOP8_VARIANCE), .name = "top-8 variance share", .json = "top8_variance", .report = "", .unit = "%",
     .fmt = "%.1f", .formula = "100 x sum of the 8 largest covariance eigenvalues / sum of all",
     .over = "one layer's and kv head's keys (spectral calibration)"},
    M(CODEBOOK_USAGE), .name = "codebook usage", .json = "codebook_usage", .report = "", .unit = "%", .fmt = "%.1f",
     .formula = "100 x codewords chosen by at least one key / codewords",
     .over = "every key of the loaded trace, per layer (vecinfer calibration)"},
    M(INERTIA), .name = "k-means inertia", .json = "inertia", .report = "", .unit = "", .fmt = "%.4g",
     .formula = "sum over rows of |x - c(x)|^2, c(x) the nearest centroid, after each iteration",
     .over = "the keys of one layer and kv head (plots view, k = 16)"},
    M(FORMAT_BYTES_PER_TOKEN), .name = "KV bytes per token", .json = "kv_bytes_per_token", .report = "",
     .unit = "bytes/token", .fmt = "%.0f",
     .formula = "(key record bytes + value record bytes) x kv heads x layers, from the methods' bytes_per_vector",
     .over = "the trace's model shape, one token, K+V (recommend; no fp16 windows, side tables apart)"},
    M(KV_GIB_AT_CONTEXT), .name = "KV memory at context", .json = "kv_gib_at_context", .report = "",
     .unit = "GiB", .fmt = "%.4f",
     .formula = "(KV bytes per token x context tokens + side tables of every stream) / 2^30",
     .over = "the trace's model shape at --context tokens (recommend; --budget-gb compares against it)"},
    M(KEY_RECORD_BITS), .name = "key record bits", .json = "key_record_bits_per_coord", .report = "key_record_bits",
     .unit = "bits/coord", .fmt = "%.3f",
     .formula = "bytes of one key record (one token of one kv head) x 8 / head_dim, mean over layers",
     .over = "the caches of a model run (ppl, grid); tokens a cache keeps in fp16 (windows, sinks, a partial "
             "group) are not in it, unlike key bits"},
    M(VALUE_RECORD_BITS), .name = "value record bits", .json = "value_record_bits_per_coord",
     .report = "value_record_bits", .unit = "bits/coord", .fmt = "%.3f",
     .formula = "bytes of one value record x 8 / head_dim, mean over layers (fp16 values: 16)",
     .over = "the caches of a model run (ppl, grid)"},
    // Figures of the measuring tools (tools/bigmodel_check.py, tools/scale_check.sh,
    // bench/torch_bench.c), not of the engine; named here so they have one name too.
    M(PEAK_RSS), .name = "peak RSS", .json = "peak_rss_gb", .report = "", .unit = "GB", .fmt = "%.2f",
     .formula = "VmHWM of the process at exit / 1e9 (resident pages, mapped file pages included)",
     .over = "one kvstudio command (make bigmodel-check)"},
    M(PEAK_RSS_ANON), .name = "peak RssAnon", .json = "peak_rss_anon_mb", .report = "", .unit = "MB",
     .fmt = "%.0f", .formula = "largest RssAnon of /proc/PID/status over samples every 0.05 s / 2^20 "
                               "(anonymous pages only: mapped trace or weight pages do not count)",
     .over = "one kvstudio command (make scale-check, make bigmodel-check)"},
    M(STUDIO_FIRST_SCREEN), .name = "studio first screen", .json = "studio_first_screen_s", .report = "", .unit = "s", .fmt = "%.2f",
     .formula = "wall time from starting `kvstudio TRACE` in tmux (120x40) until the explorer's grid box is drawn, "
                "capture-pane polled every 0.05 s",
     .over = "one studio start (make scale-check, command studio)"},
    M(STUDIO_SETTLED), .name = "explorer settled", .json = "explorer_settled_s", .report = "", .unit = "s", .fmt = "%.2f",
     .formula = "wall time from the same start until the status line says the key statistics of every (layer, "
                "kv head) are ready (\"screen filled\": until no on-screen cell shows \"...\")",
     .over = "one studio start (make scale-check, command studio)"},
    M(PREFILL_RATIO), .name = "prefill ratio", .json = "prefill_ratio", .report = "", .unit = "x",
     .fmt = "%.3f", .formula = "median over rounds of (kvstudio prefill tokens/s) / (PyTorch prefill tokens/s), "
                              "the two timed alternately in each round; > 1 = kvstudio faster",
     .over = "128-token prefills of the same checkpoint at the same thread count (make bench, torch row)"},
    M(WALL_TIME), .name = "wall", .json = "wall_s", .report = "", .unit = "s", .fmt = "%.1f",
     .formula = "elapsed time of the command from its start to its exit",
     .over = "one kvstudio command (make scale-check, make bigmodel-check)"},
    M(CPU_TIME), .name = "CPU (user + sys)", .json = "cpu_s", .report = "", .unit = "s", .fmt = "%.1f",
     .formula = "user + system CPU time of the process and its threads (utime + stime of /proc/PID/stat, the last "
                "sample before exit)",
     .over = "one kvstudio command (make scale-check)"},
    M(TIME_RATIO), .name = "time ratio", .json = "ratios_to_first", .report = "", .unit = "x", .fmt = "%.3f",
     .formula = "median over rounds of (A's seconds per pass) / (B's), A and B timed in alternating rounds "
                "(A B, B A, ...); < 1 = A faster; [min, max] over the rounds beside it",
     .over = "the 8 rounds of one bench row after a warm-up (make bench; B = the row's first kernel)"},
    M(SPEEDUP), .name = "speed-up", .json = "speedup", .report = "", .unit = "x", .fmt = "%.2f",
     .formula = "1 / time ratio (min and max swap); > 1 = kvstudio faster",
     .over = "one bench row (tools/ggml_targets.py, the README's issue 16 table)"},
    M(BENCH_THROUGHPUT), .name = "bench throughput", .json = "kernels[].throughput", .report = "",
     .unit = "units/s", .fmt = "%.3g",
     .formula = "work units of one pass (vectors, keys, tokens or bytes: throughput_unit) x passes / the median "
                "call's seconds",
     .over = "one kernel of one bench row (make bench)"},
    M(EFFECTIVE_BANDWIDTH), .name = "effective bytes/s", .json = "effective_bytes_per_s", .report = "",
     .unit = "GB/s", .fmt = "%.2f",
     .formula = "record bytes a kvstudio cache holds for its tokens (keys + values, every kv head) / seconds of "
                "one attention pass; the streaming-read kernel's: ggml's K+V bytes / seconds of one summing pass "
                "(results.json: kernels[].throughput where throughput_unit is B)",
     .over = "one decode-attention bench row (make bench, ggml rows)"},
    M(THREAD_SCALING), .name = "2-thread scaling", .json = "thread_scaling", .report = "", .unit = "x", .fmt = "%.2f",
     .formula = "median seconds per pass at 1 thread / median at 2 threads, the same kernel in its 1- and "
                "2-thread rows (not alternated with each other)",
     .over = "one kernel of the ggml bench (tools/ggml_targets.py)"},
    M(BENCH_REL_DIFF), .name = "rel diff", .json = "rel_diff", .report = "", .unit = "", .fmt = "%.2e",
     .formula = "max_i |a_i - b_i| / max_i |b_i| of two outputs of one row: kvstudio against ggml, or one side "
                "against exact attention (fp32 with double sums, kvq_attend_f32) over the K/V its bytes decode "
                "to (attention: the NH x head_dim output; vec_dot: the 16384 scores)",
     .over = "the check of one ggml bench row (make bench, ggml rows; results.json rows[].max_rel_diff, "
             "kvstudio_rel_diff_to_exact, ggml_rel_diff_to_exact)"},
};

const char *kvq_metric_fmt(kvq_metric_id id, double v, char *buf, size_t n)
{
    if (!isfinite(v)) snprintf(buf, n, "n/a");
    else snprintf(buf, n, kvq_metrics[id].fmt, v);
    return buf;
}

const char *kvq_metric_fmt_unit(kvq_metric_id id, double v, char *buf, size_t n)
{
    const kvq_metric *m = &kvq_metrics[id];
    if (!isfinite(v)) snprintf(buf, n, "n/a");
    else if (!m->unit[0]) snprintf(buf, n, m->fmt, v);
    else {
        int k = snprintf(buf, n, m->fmt, v);
        if (k >= 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, strcmp(m->unit, "x") && strcmp(m->unit, "%") ? " %s" : "%s", m->unit);
    }
    return buf;
}

const char *kvq_metric_fmt_named(kvq_metric_id id, double v, char *buf, size_t n)
{
    char one[64];
    snprintf(buf, n, "%s %s", kvq_metrics[id].name, kvq_metric_fmt_unit(id, v, one, sizeof one));
    return buf;
}

const kvq_metric *kvq_metric_by_json(const char *json)
{
    for (int i = 0; i < KVQ_M_COUNT; i++)
        if (!strcmp(kvq_metrics[i].json, json)) return &kvq_metrics[i];
    return NULL;
}
