// quantreport.h — what `kvstudio quantize` and the studio's method lab
// measure: encode every layer and kv head of a trace's keys and values with
// the configured methods, decode, and compare with the originals and with
// the exact q . k scores of the trace's queries. Encode speed is not part of
// it (benchmarks are separate).
//
// Which methods: keys use cfg->method at cfg->bits, or at
// cfg->bit_allocation[layer] for the layers it lists; values use
// cfg->value_method ("" = turboquant_mse) at cfg->value_bits, and fp16 when
// value_bits is 16. Plans are made per (layer, kv head, keys/values) from
// cfg and art (art may be NULL; methods needing calibration then fail).
//
// Definitions (every "mean" is over vectors, pooled over the layers and kv
// heads of the scope: one layer, or all):
//   bits_per_coord  = bytes held x 8 / coordinates, bytes held from the
//                     method's bytes_per_vector (codes + norms + scales +
//                     side data). Grouped methods (KIVI keys) encode whole
//                     groups; a tail of n_tokens % group tokens is held in
//                     fp16 (as the cache does) and counted at 16 bits.
//   bits_per_coord_with_side adds the plans' side tables (kvq_method
//                     side_bytes), amortized over this trace's tokens.
//   relative_mse    = mean |x - x_hat|^2 / |x|^2 (vectors with x = 0 skipped)
//   cosine          = mean x . x_hat / (|x| |x_hat|) (0 when x_hat = 0,
//                     vectors with x = 0 skipped)
//   ip_relative_error = sqrt( sum (s_hat - s)^2 / sum s^2 ) over (query,
//                     key) pairs, s = q . k exact (double), s_hat = the key
//                     method's score() from the codes. Pairs: for each query
//                     head h (kv head h / (n_heads / n_kv_heads), GQA), a
//                     fixed evenly spaced subset of its query rows
//                     (queries_per_head, 0 = all), each against every key at
//                     a position <= its own (causal mask). When those pairs
//                     number more than max_pairs, a sample of about
//                     max_pairs of them, uniform over the pairs, seeded by
//                     KVQ_QR_SAMPLE_SEED and (layer, query head), so the same
//                     trace and options give the same figure: each row draws
//                     floor(rate x units + U) of the key units of its prefix
//                     (method groups, one vector for most methods; U
//                     uniform in [0,1)) with replacement, rate = max_pairs /
//                     all pairs;
//                     pairs_sampled is then true and n_pairs counts the
//                     pairs drawn. Exact where the count is small (the
//                     sample traces at the default 64 query rows).
#ifndef KVQ_QUANTREPORT_H
#define KVQ_QUANTREPORT_H
#include "kvq.h"
#include "trace.h"

#define KVQ_QR_MAX_PAIRS 1048576L   // default max_pairs
#define KVQ_QR_SAMPLE_SEED 1u

typedef struct kvq_quantreport_opts {
    int max_tokens;         // use the first max_tokens tokens; 0 = all
    int queries_per_head;   // query rows sampled per query head; 0 = all (default 64)
    const bool *layer_mask; // (trace n_layers) layers to measure; NULL = all
    long max_pairs;         // q.k pairs measured exactly up to this; above, a sample (0 = always exact)
} kvq_quantreport_opts;

void kvq_quantreport_opts_default(kvq_quantreport_opts *o);

typedef struct kvq_quantreport_stream {
    double bits_per_coord;
    double relative_mse;
    double cosine;
    double bytes;   // bytes held in records
    double side_bytes;              // the plans' side tables (rotations, codebooks...), once per stream
    double bits_per_coord_with_side; // (bytes + side_bytes) x 8 / coords: depends on the token count
    double coords;  // coordinates held (vectors x head_dim)
    long n_vectors; // 0 (and NAN figures) for values of a trace without values
} kvq_quantreport_stream;

typedef struct kvq_quantreport_layer {
    int layer;    // index in the trace
    int key_bits; // key bits used in this layer (after bit_allocation)
    kvq_quantreport_stream keys, values;
    double ip_relative_error; // NAN when the trace has no queries
    long n_pairs;
} kvq_quantreport_layer;

typedef struct kvq_quantreport {
    char method[KVQ_NAME_LEN];       // key method
    char value_method[KVQ_NAME_LEN]; // resolved ("fp16" when value_bits = 16)
    int bits, value_bits;
    int n_tokens, head_dim, n_kv_heads, n_heads;
    kvq_quantreport_stream keys, values; // overall
    double ip_relative_error;
    long n_pairs;
    bool pairs_sampled;                           // q.k pairs are a seeded sample (see above)
    int n_layers;                                 // layers measured
    kvq_quantreport_layer layers[KVQ_MAX_LAYERS]; // (n_layers), in trace order
} kvq_quantreport;

// Runs the measurement. opts and prog may be NULL. prog is told after each
// layer ("layer 3/6") and may cancel: KVQ_ERR_CANCELLED, *out untouched.
// On any error *out is untouched and kvq_last_error() names the cause
// (unknown method, bits out of range, missing calibration, bad trace read).
// The kv heads of a layer run on the pool (pool.h), each converting its own
// blocks from the trace mapping; sums are combined in head order, so the
// result does not depend on the thread count. Several reports may run at
// once on different threads.
kvq_status kvq_quantreport_run(const kvq_trace *t, const kvq_config *cfg, const kvq_artifacts *art,
                               const kvq_quantreport_opts *opts, kvq_progress *prog,
                               kvq_quantreport *out);
#endif
