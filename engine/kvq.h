// kvq.h — the kvstudio engine core: status codes, errors, logging, progress,
// the configuration struct, and the methods traits table.
//
// Contract for everything in engine/: no printing, no exit(), no curses.
// Failing functions return a kvq_status and leave a one-line human message
// (naming the file/field, what was found, what was expected) in a
// thread-local buffer read with kvq_last_error().
#ifndef KVQ_H
#define KVQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KVQ_VERSION "0.1.0"
#define KVQ_MAX_HEAD_DIM 256   // stack scratch in kernels is sized by this
#define KVQ_MAX_SKETCH_DIM 1024
#define KVQ_MAX_LAYERS 256
#define KVQ_NAME_LEN 32
#define KVQ_PATH_LEN 512

// ---- status codes (X-macro: enum + message table stay in sync) ----
#define KVQ_STATUS_LIST(X)                                              \
    X(KVQ_OK, "ok")                                                     \
    X(KVQ_ERR_IO, "i/o error")                                          \
    X(KVQ_ERR_FORMAT, "malformed input")                                \
    X(KVQ_ERR_NOMEM, "out of memory")                                   \
    X(KVQ_ERR_ARG, "invalid argument")                                  \
    X(KVQ_ERR_SHAPE, "shape mismatch")                                  \
    X(KVQ_ERR_NONFINITE, "non-finite value")                            \
    X(KVQ_ERR_UNSUPPORTED, "unsupported")                               \
    X(KVQ_ERR_UNKNOWN_METHOD, "unknown method")                         \
    X(KVQ_ERR_NEEDS_CALIBRATION, "method needs calibration artifacts")  \
    X(KVQ_ERR_CANCELLED, "cancelled")                                   \
    X(KVQ_ERR_NUMERIC, "numerical failure")                             \
    X(KVQ_ERR_NOT_IMPLEMENTED, "not implemented")

typedef enum {
#define KVQ_X_ENUM(name, msg) name,
    KVQ_STATUS_LIST(KVQ_X_ENUM)
#undef KVQ_X_ENUM
    KVQ_STATUS_COUNT
} kvq_status;

const char *kvq_status_str(kvq_status s);

// Text from files (trace metadata, tensor names, manifests, paths) on its
// way to a terminal: replaces in place, with '?', every byte that could
// drive the terminal: C0 controls (ESC included; tab and newline only when
// keep_ws), DEL, UTF-8-encoded C1 controls (U+0080..U+009F) and bytes that
// are not well-formed UTF-8 (a lone 0x9b is CSI to an 8-bit terminal).
// Printable ASCII and valid UTF-8 pass. Returns the count replaced.
size_t kvq_text_sanitize(char *s, bool keep_ws);

// "NaN", "+Inf" or "-Inf" for a non-finite v (messages naming a bad figure).
const char *kvq_nonfinite_name(double v);

// The shape limits every kernel, plan, calibrator and view sizes its fixed
// scratch by (KVQ_MAX_HEAD_DIM, KVQ_MAX_LAYERS). Traces of any head_dim
// load (info works on them); whoever computes on one calls this first:
// KVQ_ERR_UNSUPPORTED "WHO: PATH has head_dim 512, supported 1..256".
// path may be NULL; n_layers / n_kv_heads 0 = not checked.
kvq_status kvq_check_shape(const char *who, const char *path, int n_layers, int n_kv_heads, int head_dim);

// Set the thread-local error message (printf-style) and return `s`, so a
// failing path reads: `return kvq_error(KVQ_ERR_FORMAT, "%s: ...", path);`
kvq_status kvq_error(kvq_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
// Last message set on this thread; never NULL ("" when none).
const char *kvq_last_error(void);
void kvq_clear_error(void);

// ---- logging: the engine never prints; the app installs a sink ----
typedef enum { KVQ_LOG_DEBUG, KVQ_LOG_INFO, KVQ_LOG_WARN, KVQ_LOG_ERROR } kvq_log_level;
typedef void (*kvq_log_fn)(kvq_log_level level, const char *msg, void *user);
void kvq_log_set(kvq_log_fn fn, void *user);   // fn NULL = discard
void kvq_log(kvq_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// ---- progress and cancellation for long jobs (calibration, replay) ----
// fraction in [0,1]; stage is a short label; eta_s < 0 when unknown.
// Return true to request cancellation; the engine then stops at the next
// chunk boundary and returns KVQ_ERR_CANCELLED, leaving no partial output.
typedef bool (*kvq_progress_fn)(double fraction, const char *stage, double eta_s, void *user);
typedef struct {
    kvq_progress_fn fn;
    void *user;
    double t_start;   // filled by kvq_progress_begin
} kvq_progress;
void kvq_progress_begin(kvq_progress *p);
// Reports and returns true when the caller asked to cancel. NULL p is fine.
bool kvq_progress_report(kvq_progress *p, double fraction, const char *stage);

double kvq_now_s(void);   // monotonic seconds

// ---- configuration: mirrors the original library's KVCacheConfig ----
typedef struct kvq_config {
    char method[KVQ_NAME_LEN];       // key method (row name in the methods table)
    int bits;                        // key bits per coordinate, method-specific range
    int value_bits;                  // 2, 3, 4, 8 or 16 (= fp16)
    char value_method[KVQ_NAME_LEN]; // "" = turboquant_mse (16 bits => fp16)
    int num_residuals;               // turboquant_rvq passes
    bool use_hadamard;               // randomized Hadamard instead of dense rotation
    char codebook[KVQ_NAME_LEN];     // "lloyd_max" (default) | "uniform"
    char smooth_factors[KVQ_PATH_LEN]; // artifact path (VecInfer), "" = none
    char rotations[KVQ_PATH_LEN];      // artifact path (SpectralQuant), "" = none
    char artifacts[KVQ_PATH_LEN];      // artifact directory, "" = none
    int n_bit_allocation;            // 0 = uniform; else per-layer key bits
    int bit_allocation[KVQ_MAX_LAYERS];
    int outlier_bits;                // 0 = off; width for outlier tokens
    int outlier_channels;            // mixed channels: this many at bits+1 (0 = off)
    int sketch_dim;                  // QJL / turboquant_prod m; 0 = head_dim
    int num_clusters;                // RaBitQ IVF centroids
    int num_subspaces;               // product VQ (VecInfer)
    int num_centroids;               // product VQ / CommVQ codebook size
    bool use_fused_sdpa;             // score from codes inside online softmax
    bool query_int8;                 // turboquant_mse keys: score with the query rounded to int8
    int signal_bits;                 // SpectralQuant
    int noise_bits;
    uint64_t seed;
    // cache options (issue 4)
    int residual_length;             // recent tokens kept in fp16
    int sink_tokens;                 // first tokens kept in fp16
    int protect_layers;              // this many first and last layers left fp16
    int sliding_window;              // 0 = off
    int max_seq_len;                 // 0 = grow on demand
} kvq_config;

void kvq_config_default(kvq_config *c);
// NULL when valid, else a static/thread-local one-line message naming the field.
const char *kvq_config_check(const kvq_config *c);
// Whether values are kept as plain fp16: value_bits 16, unless value_method
// names a 16-bit-or-wider format of its own (llamacpp:bf16, llamacpp:f32).
bool kvq_config_fp16_values(const kvq_config *c);
// Set one field from text ("bits", "3"); names are the struct's field names
// (dashes accepted for underscores). Returns KVQ_OK or KVQ_ERR_ARG + message.
kvq_status kvq_config_set(kvq_config *c, const char *key, const char *value);
// Field names for completion/help; NULL-terminated.
const char *const *kvq_config_field_names(void);
// Current value of a field as text into buf; KVQ_ERR_ARG when unknown.
kvq_status kvq_config_get(const kvq_config *c, const char *key, char *buf, size_t n);
// What a field holds, for help text and typed output (JSON numbers/bools).
typedef enum { KVQ_FIELD_INT, KVQ_FIELD_BOOL, KVQ_FIELD_STR, KVQ_FIELD_U64, KVQ_FIELD_LIST } kvq_field_kind;
typedef struct kvq_config_field_info {
    kvq_field_kind kind;
    const char *help;       // one line (static)
    char values[96];        // accepted values: "1..16", "2, 3, 4, 8 or 16", "true or false", "text"
} kvq_config_field_info;
// KVQ_ERR_ARG when key is not a field (dashes accepted for underscores).
kvq_status kvq_config_field_describe(const char *key, kvq_config_field_info *out);

// ---- calibration artifacts (opaque; engine/artifacts.c) ----
typedef struct kvq_artifacts kvq_artifacts;

// ---- the methods traits table ----
// A method quantizes vectors of one (layer, kv head) stream. Each vector
// becomes one fixed-size record of bytes_per_vector bytes (packed codes +
// norms/scales/side data) so a batch is one contiguous buffer
// (n, bytes_per_vector). Plans hold everything expensive and immutable and
// may be used from several threads at once; kernels never allocate.
typedef struct kvq_plan_params {
    int bits;          // resolved bits for this stream (after bit_allocation)
    int head_dim;
    int layer, kv_head;  // which stream (for per-layer/head artifacts)
    bool is_value;       // values vs keys
    const kvq_config *cfg;
    const kvq_artifacts *art;  // may be NULL
} kvq_plan_params;

typedef struct kvq_method {
    const char *name;             // engine formats are "engine:format", e.g. "llamacpp:q4_1"
    const char *alias;            // an older name kvq_method_find also accepts, or NULL
    const char *description;
    const char *paper;            // citation, "" for baselines
    bool needs_calibration;
    int min_bits, max_bits;
    kvq_status (*plan_new)(const kvq_plan_params *p, void **plan);
    void (*plan_free)(void *plan);
    size_t (*bytes_per_vector)(const void *plan);
    // x: (n, head_dim) row-major -> codes: (n, bytes_per_vector)
    void (*encode)(const void *plan, const float *x, size_t n, uint8_t *codes);
    // codes -> x: (n, head_dim)
    void (*decode)(const void *plan, const uint8_t *codes, size_t n, float *x);
    // bytes of per-query state (LUTs, projected query); filled by prepare_query
    size_t (*query_bytes)(const void *plan);
    void (*prepare_query)(const void *plan, const float *q, void *qstate);
    // scores[i] ~= q . k_i for n keys straight from codes (no full decode)
    void (*score)(const void *plan, const void *qstate, const uint8_t *codes, size_t n,
                  float *scores);
    // Optional (NULL = 1): vectors that share side data and must be encoded,
    // decoded and scored together (KIVI keys: per-channel scales over 32
    // tokens). Then n is always a multiple of it and records are laid out
    // group after group; the cache keeps a partial group in fp16 meanwhile.
    size_t (*group_vectors)(const void *plan);
    // Optional (NULL = 0): bytes of per-stream side tables the plan holds and a
    // deployment must keep beside the records (rotation matrix or signs,
    // codebooks, centroids, eigenbases, sketch matrices). Memory figures add it.
    size_t (*side_bytes)(const void *plan);
} kvq_method;

extern const kvq_method kvq_methods[];
extern const int kvq_n_methods;
const kvq_method *kvq_method_find(const char *name);  // by name or alias; NULL when unknown
// KVQ_ERR_UNKNOWN_METHOD with "unknown method 'x' (known: a, b, ...)".
kvq_status kvq_method_lookup(const char *name, const kvq_method **out);

// A method + its plan: the unit the cache and the report use.
typedef struct kvq_quantizer {
    const kvq_method *m;
    void *plan;
    size_t bpv;       // bytes per vector
    size_t qbytes;    // query state bytes
    size_t group;     // vectors per encode group (1 for most methods)
    size_t side;      // side-table bytes of this stream (see side_bytes)
    int head_dim;
    int bits;
} kvq_quantizer;

kvq_status kvq_quantizer_init(kvq_quantizer *q, const char *method, const kvq_plan_params *p);
void kvq_quantizer_free(kvq_quantizer *q);

#endif
