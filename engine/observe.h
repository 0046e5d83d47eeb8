// observe.h — observers of a cache run: distortion, latency, memory, key
// norms (the original library's four) and attention (new). One
// kvq_observers bundle holds any subset; attach it to one cache or a whole
// set (cache.h). Detached costs one pointer test per call. Reports are plain
// structs whose fields carry the original library's names.
//
// Not thread-safe: the caches a bundle is attached to are driven by one
// thread; a UI thread reads reports through its own snapshot copy (replay.h).
#ifndef KVQ_OBSERVE_H
#define KVQ_OBSERVE_H
#include "kvq.h"

enum {
    KVQ_OBS_DISTORTION = 1, KVQ_OBS_LATENCY = 2, KVQ_OBS_MEMORY = 4, KVQ_OBS_KEY_NORM = 8,
    KVQ_OBS_ATTENTION = 16, KVQ_OBS_ALL = 31
};

typedef struct kvq_observers_opts {
    unsigned which;            // KVQ_OBS_* mask of observers to create
    double sample_rate;        // distortion: fraction of encoded keys measured (1.0)
    int warmup_calls;          // latency: first calls per layer not timed (2)
    double outlier_threshold;  // key_norm: norm > threshold x rolling mean (3.0)
    int window_size;           // key_norm: rolling window in tokens (128)
    int topk;                  // attention: recall of the top-k keys (8, max 64)
    uint64_t seed;             // distortion: random probe queries for mean_ip_error
} kvq_observers_opts;
void kvq_observers_opts_default(kvq_observers_opts *o);

// Keys only (the stream attention scores depend on).
typedef struct kvq_distortion_report {
    double mean_cosine_similarity, min_cosine_similarity;
    double mean_ip_error;        // mean |q.k - est(q.k)| / |k| for random unit q
    double mean_relative_mse;    // mean |k - k_hat|^2 / |k|^2
    int n_layers;
    double per_layer_cosine_similarity[KVQ_MAX_LAYERS];  // NAN for layers not measured
    int worst_layer;             // lowest mean cosine, -1 when none
    long total_tokens_measured;
} kvq_distortion_report;

// encode = one kvq_cache_append call, decode = one attend call (scores and
// value decoding from the compressed form), milliseconds.
typedef struct kvq_latency_report {
    double mean_encode_ms, mean_decode_ms, p99_encode_ms, total_encode_ms, total_decode_ms;
    int n_layers;
    double per_layer_encode_ms[KVQ_MAX_LAYERS];   // total per layer
    int slowest_layer;
    long num_encode_calls, num_decode_calls;
} kvq_latency_report;

// Bytes are what the caches allocated (kvq_cache_bytes: records, fp16
// windows, side tables, spare capacity and each cache's fixed attention
// scratch, which dominates below a few hundred tokens); fp16 is what the same
// visible tokens take as fp16 K+V. MB = 2^20 bytes.
typedef struct kvq_memory_report {
    double peak_compressed_mb, peak_fp16_mb, compression_ratio;
    long total_tokens;            // visible tokens of the longest layer at the last update
    double bytes_per_token;       // all layers, K+V, at the peak
    int n_layers;
    double per_layer_mb[KVQ_MAX_LAYERS];   // current
} kvq_memory_report;

typedef struct kvq_key_norm_report {
    double mean_key_norm, std_key_norm, max_key_norm;
    long outlier_count, total_keys;
    double outlier_fraction, mean_outlier_norm;
    int n_layers;
    long per_layer_outlier_count[KVQ_MAX_LAYERS];
} kvq_key_norm_report;

// Against exact fp32 attention over the original keys and values (all
// positions <= the query's). KL and recall compare the two distributions over
// the positions the cache still holds (both softmaxes renormalized there), so
// a sliding window shows up in the output error, not in KL.
typedef struct kvq_attention_report {
    double mean_output_rel_error;  // mean |o - o_hat| / |o|
    double mean_kl_divergence;     // mean KL(p_exact || p_hat), bits (log2)
    double topk_recall;            // mean |top-k(exact) & top-k(hat)| / k
    int topk;
    long num_queries;
    int n_layers;
    double per_layer_output_rel_error[KVQ_MAX_LAYERS];
    double per_layer_kl_divergence[KVQ_MAX_LAYERS];
    double per_layer_topk_recall[KVQ_MAX_LAYERS];
} kvq_attention_report;

typedef struct kvq_report {
    unsigned which;   // KVQ_OBS_* present
    kvq_distortion_report distortion;
    kvq_latency_report latency;
    kvq_memory_report memory;
    kvq_key_norm_report key_norm;
    kvq_attention_report attention;
} kvq_report;

kvq_status kvq_observers_new(const kvq_observers_opts *opts, int n_layers, int n_kv_heads,
                             int head_dim, kvq_observers **out);
void kvq_observers_free(kvq_observers *o);
void kvq_observers_reset(kvq_observers *o, unsigned which);   // KVQ_OBS_* mask
unsigned kvq_observers_which(const kvq_observers *o);
void kvq_observers_report(const kvq_observers *o, kvq_report *r);

// Rolling mean of the last `window` norms (the key_norm rule, shared with the
// cache's outlier tagging). ring: caller memory of `window` floats.
typedef struct kvq_rolling {
    float *ring;
    int window, count, idx;
    double sum;
} kvq_rolling;
void kvq_rolling_init(kvq_rolling *r, float *ring, int window);
// true when x > threshold x the mean of the previous norms (never for the first);
// then x joins the window.
bool kvq_rolling_push(kvq_rolling *r, float x, double threshold);

// ---- hooks (called by the cache and the replay loop; o may be NULL) ----
// keys: (n, d) as appended, for key norms.
void kvq_observe_keys(kvq_observers *o, int layer, int kv_head, const float *keys, int n);
// Distortion: x, x_hat (n, d) original and decoded keys; est (n): the score()
// estimate of probe . x for the probe from kvq_observe_probe.
bool kvq_observe_wants_distortion(const kvq_observers *o);
const float *kvq_observe_probe(const kvq_observers *o);   // (d), unit
float *kvq_observe_scratch(kvq_observers *o);   // (KVQ_CACHE_BLOCK_MAX, d) for x_hat
#define KVQ_CACHE_BLOCK_MAX 256
void kvq_observe_encoded(kvq_observers *o, int layer, const float *x, const float *x_hat,
                         const float *est, int n);
bool kvq_observe_wants_latency(const kvq_observers *o);
void kvq_observe_encode_time(kvq_observers *o, int layer, double seconds);
void kvq_observe_decode_time(kvq_observers *o, int layer, double seconds);
// bytes allocated by the layer's cache and fp16 K+V bytes of its visible tokens.
void kvq_observe_memory(kvq_observers *o, int layer, size_t bytes, size_t fp16_bytes, int tokens);
// One query: exact/hat outputs (d); exact/hat logits over the same n positions.
void kvq_observe_attention(kvq_observers *o, int layer, const float *out_exact,
                           const float *out_hat, const float *logit_exact, const float *logit_hat,
                           int n);
#endif
