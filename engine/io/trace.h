// trace.h — KV traces: kvtrace safetensors files (TRACE_FORMAT.md), NumPy
// .npy key/value pairs, and mlx_lm prompt caches, behind one read API.
// All loaders validate fully on open (shapes, layer set, head counts,
// non-finite values named by layer/head/token), so later reads cannot fail
// except on bad arguments. Status on rejection: KVQ_ERR_IO (cannot open),
// KVQ_ERR_FORMAT (malformed file, missing layer, not kvtrace metadata),
// KVQ_ERR_SHAPE (dims disagree between layers, files or metadata),
// KVQ_ERR_NONFINITE ("<path>: layers.3.keys: NaN at head 1, token 517,
// channel 12"), KVQ_ERR_UNSUPPORTED (kvtrace version != 1, quantized mlx_lm
// cache); the message is one line naming the file and tensor or field.
// kvtrace: values and queries are optional but all-or-none across layers;
// tensors outside the format are ignored with a warning through kvq_log.
// npy: n_queries = 0, n_heads = n_kv_heads, model/source describe the file.
// mlx_lm: keys and values required, batch 1, n_heads = n_kv_heads.
#ifndef KVQ_TRACE_H
#define KVQ_TRACE_H
#include <stdbool.h>
#include "kvq.h"
#include "safetensors.h"

typedef enum { KVQ_TRACE_KVTRACE, KVQ_TRACE_NPY, KVQ_TRACE_MLX } kvq_trace_kind;

typedef struct kvq_trace_opts {
    const char *values_path;   // npy only: optional values file
    bool npy_dtype_bf16;       // --dtype bf16: reinterpret 2-byte opaque npy data as bf16
    // safetensors: skip the NaN/Inf scan of every tensor on open (it reads the
    // whole file: about 2 s for 4 GB); the caller runs kvq_trace_validate
    // before it reads any data (the studio: on its worker, with progress).
    bool defer_scan;
} kvq_trace_opts;

typedef struct kvq_trace {
    char path[KVQ_PATH_LEN];
    kvq_trace_kind kind;
    int n_layers, n_heads, n_kv_heads, n_tokens, head_dim;
    int n_queries;             // 0 when the trace has no queries
    bool has_values;
    kvq_dtype dtype;           // storage dtype of keys
    char model[256], source[256];
    double rope_theta;         // 0 when unknown
    bool post_rope;
    double bits_per_byte;      // NAN when absent
    int32_t *query_positions;  // (n_queries), owned; 0..n-1 when absent in file
    int32_t *tokens;           // (n_tokens) or NULL
    void *impl;                // loader state (mappings, tensor refs)
} kvq_trace;

// path: .safetensors (kvtrace when __metadata__ format = kvtrace, else an
// mlx_lm cache when every tensor is "{L}.0"/"{L}.1") or .npy (by extension
// or magic; keys). opts may be NULL. *out is NULL on failure.
kvq_status kvq_trace_open(const char *path, const kvq_trace_opts *opts, kvq_trace **out);
// Another owner of t (a replay streaming from it on a worker thread while the
// session loads a new trace): every owner calls kvq_trace_free, the last one
// frees. Thread-safe. Returns t.
kvq_trace *kvq_trace_ref(const kvq_trace *t);
// The NaN/Inf scan an open with opts->defer_scan skipped: KVQ_OK (and the
// trace counts as scanned), KVQ_ERR_NONFINITE with the same message open
// gives ("PATH: layers.3.keys: NaN at head 2, token 5, channel 7"), or
// KVQ_ERR_CANCELLED when p asked to stop (checked every few tensors; the
// trace stays unscanned). Already scanned (or opened without defer_scan):
// KVQ_OK at once. p may be NULL. Not concurrent with itself on one trace.
kvq_status kvq_trace_validate(const kvq_trace *t, kvq_progress *p);
void kvq_trace_free(kvq_trace *t);

// Copies as f32 (the full mapping is validated, so only bad arguments fail:
// KVQ_ERR_ARG for a layer/head out of range or a stream the trace lacks). keys/values: out (n_tokens, head_dim) for one kv head;
// queries: out (n_queries, head_dim) for one query head.
kvq_status kvq_trace_keys(const kvq_trace *t, int layer, int kv_head, float *out);
kvq_status kvq_trace_values(const kvq_trace *t, int layer, int kv_head, float *out);
kvq_status kvq_trace_queries(const kvq_trace *t, int layer, int head, float *out);

// Rows [row0, row0 + n_rows) of one stream as f32, out (n_rows, head_dim):
// what streaming readers use instead of whole-stream copies (a replay of a
// 4 GB trace holds a few rows, not the trace). head is a kv head for keys
// and values, a query head for queries; rows are tokens or query rows.
typedef enum { KVQ_STREAM_KEYS, KVQ_STREAM_VALUES, KVQ_STREAM_QUERIES } kvq_stream;
kvq_status kvq_trace_rows(const kvq_trace *t, kvq_stream which, int layer, int head, int row0, int n_rows,
                          float *out);
#endif
