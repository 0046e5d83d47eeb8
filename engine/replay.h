// replay.h — replay a trace through a kvq_cache_set as an inference stack
// would: prefill of the first half of the tokens as one chunk per layer,
// then token-by-token decode of the rest with an attend per step (the
// trace's query at that position), every observer attached. With the
// attention observer each decode query is also answered exactly (fp32 sgemm,
// all original keys and values up to its position) and compared.
//
// Two ways to drive it: kvq_replay_run (to the end, progress + cancel), or
// kvq_replay_step from a worker thread, copying kvq_replay_snapshot out under
// the caller's own lock so a UI thread can draw it.
#ifndef KVQ_REPLAY_H
#define KVQ_REPLAY_H
#include "cache.h"
#include "observe.h"
#include "trace.h"

// The exact reference costs one (query, key) pair per query head and cached
// position; above attn_pairs pairs in a whole replay it runs on a seeded
// systematic sample: for each (layer, kv head), every s-th query row from an
// offset hashed from obs.seed, layer and head, s = ceil(total pairs /
// attn_pairs) (the same groups for any thread count or step size). Every
// query still goes through the cache; only the comparison is sampled. The
// snapshot states the sample.
#define KVQ_REPLAY_ATTN_PAIRS (1LL << 27)
typedef struct kvq_replay_opts {
    int seq_len;               // tokens replayed, 0 = the whole trace
    long long attn_pairs;      // exact-attention budget: 0 = KVQ_REPLAY_ATTN_PAIRS, < 0 = every query
    kvq_observers_opts obs;    // attention is dropped when the trace has no queries
} kvq_replay_opts;
void kvq_replay_opts_default(kvq_replay_opts *o);

typedef struct kvq_replay kvq_replay;

// Streams keys/values/queries row by row from t's mapping (anonymous memory:
// the compressed caches plus O(n_kv x prefill x head_dim) staging, never the
// trace) and holds a reference to t (kvq_trace_ref), so the caller may free
// its own handle at any time. art may be NULL and must outlive r.
kvq_status kvq_replay_new(const kvq_trace *t, const kvq_config *cfg, const kvq_artifacts *art,
                          const kvq_replay_opts *o, kvq_replay **out);
void kvq_replay_free(kvq_replay *r);

// Advance by up to n_tokens: the first call performs the whole prefill (it
// counts against n_tokens), later calls one decode token at a time. A no-op
// once done.
kvq_status kvq_replay_step(kvq_replay *r, int n_tokens);
// Step to the end, reporting progress every few tokens; KVQ_ERR_CANCELLED
// when the callback asks (the replay can then be restarted). p may be NULL.
kvq_status kvq_replay_run(kvq_replay *r, kvq_progress *p);
// Empty the caches and reset the observers except those in keep (KVQ_OBS_*),
// e.g. keep latency across repeated runs.
void kvq_replay_restart(kvq_replay *r, unsigned keep);

int kvq_replay_pos(const kvq_replay *r);     // tokens appended so far
int kvq_replay_total(const kvq_replay *r);   // tokens of a full replay
bool kvq_replay_done(const kvq_replay *r);
kvq_cache_set *kvq_replay_caches(kvq_replay *r);
kvq_observers *kvq_replay_observers(kvq_replay *r);

// What a dashboard draws: position, bytes and the observers' reports.
typedef struct kvq_replay_snapshot {
    int pos, total, n_layers;
    size_t bytes;              // all caches now (kvq_cache_set_bytes)
    size_t fp16_bytes;         // the same visible tokens as fp16 K+V
    double key_bpc, value_bpc; // bits per coordinate of a key / value record, mean over layers
    long attn_queries;         // query heads attended through the cache so far (all layers)
    double attn_rate;          // 1 / the sample's stride: about this fraction of the queries compared (1 = all)
    long long attn_pairs_total;// (query, key) pairs of the exact reference over every query of a full replay
    kvq_report report;         // report.attention.num_queries: the query heads compared
} kvq_replay_snapshot;
void kvq_replay_snapshot_get(const kvq_replay *r, kvq_replay_snapshot *s);
#endif
