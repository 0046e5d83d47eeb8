// deploy.h — the KV-cache formats inference engines offer, as a user deploys
// them (the exact flag), each mapped onto the methods table rows that hold
// values byte for byte as that engine does; plus the memory arithmetic and
// the Pareto marking `kvstudio recommend` ranks them with.
//
// Only formats with a measured methods row are listed: nothing here is a
// placeholder.
#ifndef KVQ_DEPLOY_H
#define KVQ_DEPLOY_H
#include <stdbool.h>
#include <stddef.h>
#include "kvq.h"

typedef struct kvq_deploy_format {
    const char *engine;        // "llamacpp", "vllm", "mlx", "transformers"
    const char *name;          // "q8_0/q4_0" (K/V) or "fp8"
    const char *flags;         // what to pass the engine: "-ctk q8_0 -ctv q4_0 -fa on"
    const char *key_method;    // methods table rows (fixed width)
    const char *value_method;
    int key_bits, value_bits;  // 0 = the method's fixed width
    int boundary_layers;       // first and last this many layers kept in the
                               // model dtype (fp16): vLLM's TurboQuant presets
    bool calc_scales;          // scales from the first batch (kvq_deploy_artifacts)
} kvq_deploy_format;

extern const kvq_deploy_format kvq_deploy_formats[];
extern const int kvq_n_deploy_formats;

// The config that replays format f exactly: key/value methods at the row's
// widths, protect_layers = f->boundary_layers, no fp16 windows, sinks or
// outlier paths (an engine has none; transformers' fp16 residual is counted
// in memory as side bytes and not replayed: every token quantized, its state
// right after a flush). base supplies the seed; everything else is default.
void kvq_deploy_config(const kvq_deploy_format *f, uint64_t seed, kvq_config *out);

// The artifacts format f replays with: for calc_scales rows (vLLM
// --calculate-kv-scales) "vllm.kv_scales" (n_layers, 2), each layer's
// [k_scale, v_scale] from its tokens [0, first_batch) over every kv head,
// as vLLM's first forward computes them (the replay's prefill, at least
// one token); else *out = NULL. Caller frees *out (kvq_artifacts_free).
struct kvq_trace;
kvq_status kvq_deploy_artifacts(const kvq_deploy_format *f, const struct kvq_trace *t, int first_batch,
                                kvq_artifacts **out);

// What a config holds per token for a model shape: bytes_per_vector of the
// key and the value method (layer 0, kv head 0 plans; art may be NULL unless
// a method needs calibration) x n_kv_heads x n_layers, K and V. side_bytes:
// the plans' side tables (rotations, codebooks; for transformers:* the fp16
// residual window beyond its records) over all streams, K and V,
// paid once, not per token. key/value_bpc: record bytes x 8 / head_dim.
// Layers the config protects (protect_layers first and last, as the cache
// keeps them) count 2 x head_dim bytes a key and a value record instead.
typedef struct kvq_deploy_memory {
    size_t key_bpv, value_bpv;     // bytes of one key / value record
    double key_bpc, value_bpc;     // bits per coordinate of a record
    size_t bytes_per_token;        // (key_bpv + value_bpv) x n_kv_heads x quantized layers
                                   // + 4 x head_dim x n_kv_heads x protected layers
    size_t side_bytes;
} kvq_deploy_memory;
// fp16 values (kvq_config_fp16_values) count 2 x head_dim bytes a record.
kvq_status kvq_deploy_memory_of(const kvq_config *c, const kvq_artifacts *art, int n_layers, int n_kv_heads,
                                int head_dim, kvq_deploy_memory *out);
// (bytes_per_token x context + side_bytes) / 2^30.
double kvq_deploy_gib_at(const kvq_deploy_memory *m, long context);

// front[i] = true when no j has mem[j] <= mem[i] and err[j] <= err[i] with
// one of them strictly smaller. A NaN error is never on the front and never
// dominates. n >= 0; mem/err/front of n entries.
void kvq_deploy_pareto(const double *mem, const double *err, int n, bool *front);
#endif
