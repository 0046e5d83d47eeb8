// metrics.h — the one vocabulary of every figure kvstudio prints: each metric
// has one row in kvq_metrics[] (name as shown, JSON key, unit, formula, what it
// averages over), and every printer (CLI, JSON, studio, plots, exports, the
// help glossary, docs/METRICS.md) takes its words from that row.
//
// KL divergences are in bits everywhere (log base 2); bits/byte is the model's
// loss, a different metric. Two metrics that differ in formula never share a
// name: "attention error (keys)" (calibration/lab: keys only, squared, ratio
// of sums) is not "output error" (replay: K and V through the cache, mean of
// per-query norms).
#ifndef KVQ_METRICS_H
#define KVQ_METRICS_H
#include <stddef.h>

typedef enum kvq_metric_id {
    KVQ_M_KEY_BITS, KVQ_M_VALUE_BITS, KVQ_M_KEY_BITS_SIDE, KVQ_M_VALUE_BITS_SIDE,
    KVQ_M_COMPRESSION, KVQ_M_CACHE_COMPRESSION, KVQ_M_CACHE_MB, KVQ_M_FP16_MB, KVQ_M_BYTES_PER_TOKEN,
    KVQ_M_KEY_REL_MSE, KVQ_M_VALUE_REL_MSE, KVQ_M_KEY_COSINE, KVQ_M_KEY_COSINE_MIN, KVQ_M_VALUE_COSINE,
    KVQ_M_QK_ERROR, KVQ_M_PROBE_ERROR,
    KVQ_M_ATTN_KEY_ERROR, KVQ_M_OUTPUT_ERROR, KVQ_M_ATTN_KL, KVQ_M_TOPK_RECALL, KVQ_M_ATTN_SAMPLE_RATE,
    KVQ_M_NEXT_TOKEN_KL, KVQ_M_BITS_PER_BYTE, KVQ_M_BITS_PER_TOKEN, KVQ_M_PERPLEXITY,
    KVQ_M_ENCODE_MS, KVQ_M_ENCODE_P99_MS, KVQ_M_ATTEND_MS, KVQ_M_ENCODE_VPS, KVQ_M_TOKENS_PER_S,
    KVQ_M_KEY_NORM, KVQ_M_OUTLIER_FRACTION,
    KVQ_M_NORM, KVQ_M_D_EFF, KVQ_M_CHANNEL_RATIO,
    KVQ_M_KEY_SENS_ATTN, KVQ_M_VALUE_SENS_ATTN, KVQ_M_KEY_SENS_KL, KVQ_M_RQ_FIT_ERROR,
    KVQ_M_TOP8_VARIANCE, KVQ_M_CODEBOOK_USAGE, KVQ_M_INERTIA,
    KVQ_M_FORMAT_BYTES_PER_TOKEN, KVQ_M_KV_GIB_AT_CONTEXT,
    KVQ_M_KEY_RECORD_BITS, KVQ_M_VALUE_RECORD_BITS,
    KVQ_M_PEAK_RSS, KVQ_M_PEAK_RSS_ANON, KVQ_M_STUDIO_FIRST_SCREEN, KVQ_M_STUDIO_SETTLED, KVQ_M_PREFILL_RATIO,
    KVQ_M_WALL_TIME, KVQ_M_CPU_TIME, KVQ_M_TIME_RATIO, KVQ_M_SPEEDUP, KVQ_M_BENCH_THROUGHPUT, KVQ_M_EFFECTIVE_BANDWIDTH,
    KVQ_M_THREAD_SCALING, KVQ_M_BENCH_REL_DIFF,
    KVQ_M_COUNT
} kvq_metric_id;

typedef struct kvq_metric {
    kvq_metric_id id;
    const char *name;      // as shown in text, column headers, plots, help ("key cosine")
    const char *json;      // key in flat JSON records: run history, export json/csv, compare rows
    const char *report;    // where nested reports hold it ("distortion.mean_cosine_similarity"), "" = none
    const char *unit;      // "bits/coord", "x", "MB", "bits", "ms", "" = unitless ratio
    const char *fmt;       // printf format of one value ("%.4f")
    const char *formula;
    const char *over;      // what the mean/sum runs over, and who measures it
} kvq_metric;

extern const kvq_metric kvq_metrics[KVQ_M_COUNT];

static inline const kvq_metric *kvq_metric_get(kvq_metric_id id) { return &kvq_metrics[id]; }
// v with the metric's format into buf (n bytes); "n/a" when v is not finite
// (NaN is never printed). Returns buf.
const char *kvq_metric_fmt(kvq_metric_id id, double v, char *buf, size_t n);
// Same with the unit appended ("0.0321 bits"); no unit for unitless metrics.
const char *kvq_metric_fmt_unit(kvq_metric_id id, double v, char *buf, size_t n);
// "name value unit" ("attention KL 0.05253 bits"; "key cosine n/a").
const char *kvq_metric_fmt_named(kvq_metric_id id, double v, char *buf, size_t n);
// The row whose json key is `json`; NULL when none.
const kvq_metric *kvq_metric_by_json(const char *json);
#endif
