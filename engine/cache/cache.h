// cache.h — the compressed KV cache: one kvq_cache per layer. Tokens are
// stored compressed (method records, see kvq.h) plus optional fp16 windows
// (sinks, recent residual_length); attention is answered from that form.
// Owner: issue 4. The model runner and the replay loop use only this API.
//
// Storage of one (layer, kv head), in position order:
//   sinks      positions [0, sink_tokens)              fp16, never evicted
//   compressed positions [base, base + n_compressed)   key/value method records
//   tail       positions [.., len)                      fp16: the recent
//              residual_length window plus, for grouped methods (KIVI keys),
//              the partial group that waits to fill.
// Tokens move from the tail into compressed storage in whole groups as the
// window slides. Protected layers (protect_layers first and last) and 16-bit
// streams keep everything fp16. With outlier_bits, keys whose norm exceeds
// KVQ_OUTLIER_THRESHOLD x the rolling mean of the last KVQ_OUTLIER_WINDOW key
// norms of that head are stored with the key method at outlier_bits (a
// per-token tag and a second record array).
//
// Threads: one cache is driven by one thread at a time (attend uses scratch
// owned by the cache); distinct caches are independent.
#ifndef KVQ_CACHE_H
#define KVQ_CACHE_H
#include "kvq.h"

#define KVQ_OUTLIER_THRESHOLD 3.0
#define KVQ_OUTLIER_WINDOW 128
#define KVQ_CACHE_BLOCK 32   // tokens per scoring/decoding block (rounded up to the group size)

typedef struct kvq_cache kvq_cache;
typedef struct kvq_observers kvq_observers;   // observe.h

// Every byte a cache holds goes through this pair (default malloc/free), so
// kvq_cache_bytes can be checked against an independent count. free gets the
// size that was allocated. Not used for method plans (shared, immutable) or
// for the reference (non-fused) attention's temporary fp32 copy.
typedef struct kvq_allocator {
    void *(*alloc)(size_t bytes, void *user);
    void (*free)(void *p, size_t bytes, void *user);
    void *user;
} kvq_allocator;

// One layer. cfg is copied; art may be NULL and must outlive the cache.
kvq_status kvq_cache_new(const kvq_config *cfg, const kvq_artifacts *art, int layer, int n_layers,
                         int n_kv_heads, int head_dim, kvq_cache **out);
// Same with an allocator (NULL = malloc/free); the allocator must outlive the cache.
kvq_status kvq_cache_new_ex(const kvq_config *cfg, const kvq_artifacts *art, int layer, int n_layers,
                            int n_kv_heads, int head_dim, const kvq_allocator *alloc,
                            kvq_cache **out);
void kvq_cache_free(kvq_cache *c);
void kvq_cache_reset(kvq_cache *c);   // drop all tokens, keep plans and capacity

// keys, values: (n_kv_heads, n, head_dim) row-major, the next n positions.
kvq_status kvq_cache_append(kvq_cache *c, const float *keys, const float *values, int n);

// queries: (n_heads, n_q, head_dim); positions: (n_q) absolute positions
// (a query at p sees cached positions <= p); out: (n_heads, n_q, head_dim).
// n_heads must be a multiple of n_kv_heads (GQA: head h -> kv head h / (n_heads/n_kv_heads)).
// Scores are scaled by 1/sqrt(head_dim). With cfg.use_fused_sdpa, scores come
// from the method's score() and values are decoded block by block inside an
// online softmax; otherwise the visible tokens are decoded to a temporary fp32
// copy (malloc, freed before return) and attended plainly: the reference.
kvq_status kvq_cache_attend(kvq_cache *c, const float *queries, int n_heads, int n_q,
                            const int32_t *positions, float *out);

int kvq_cache_len(const kvq_cache *c);       // tokens appended (including evicted)
// Bytes allocated right now through the allocator: the struct, records, fp16
// windows, tags, spare capacity (growth doubles; max_seq_len preallocates
// exactly) and fixed scratch (about (KVQ_CACHE_BLOCK + 4) x head_dim floats
// plus 4 query states). Method plans are not included.
size_t kvq_cache_bytes(const kvq_cache *c);
// Bytes of the method plans' side tables (rotations, codebooks, centroids,
// eigenbases, sketches) of this layer's streams; the memory observer reports
// kvq_cache_bytes + this, since a deployment holds both.
size_t kvq_cache_side_bytes(const kvq_cache *c);
// Tokens attention can see now (sinks + retained window), <= len.
int kvq_cache_visible(const kvq_cache *c);
// Bytes per vector of the layer's key / value records (2*head_dim for fp16 streams).
size_t kvq_cache_key_bpv(const kvq_cache *c);
size_t kvq_cache_value_bpv(const kvq_cache *c);

// Decode what one kv head holds: K, V: (n_visible, head_dim) and pos: (n_visible)
// in position order (any may be NULL); *n = kvq_cache_visible(c).
kvq_status kvq_cache_decode(kvq_cache *c, int kv_head, float *K, float *V, int32_t *pos,
                            int *n);
// Attention logits (q . k_hat / sqrt(head_dim), the same estimates the fused
// path uses) of one query q: (head_dim) for query head `head` (of n_heads) at
// position p over the visible positions <= p: logits, pos: (>= visible).
kvq_status kvq_cache_logits(kvq_cache *c, const float *q, int head, int n_heads, int32_t p,
                            float *logits, int32_t *pos, int *n);

// Observers (observe.h) see encodes, attends and memory; NULL detaches. The
// observers must outlive the attachment.
void kvq_cache_attach(kvq_cache *c, kvq_observers *obs);

// Plain fp32 attention of one query (the spec): q (d), K, V (n, d), kpos (n);
// keys with kpos > p are masked; out (d). Scale 1/sqrt(d), d <= KVQ_MAX_HEAD_DIM,
// double accumulation. n may be 0 (out = 0).
void kvq_attend_f32(const float *q, const float *K, const float *V, const int32_t *kpos, int n,
                    int d, int32_t p, float *out);

// All layers of a model/trace from one config (bit_allocation applied per layer).
typedef struct kvq_cache_set {
    int n_layers;
    kvq_cache **layers;   // (n_layers)
} kvq_cache_set;
kvq_status kvq_cache_set_new(const kvq_config *cfg, const kvq_artifacts *art, int n_layers,
                             int n_kv_heads, int head_dim, kvq_cache_set **out);
kvq_status kvq_cache_set_new_ex(const kvq_config *cfg, const kvq_artifacts *art, int n_layers,
                                int n_kv_heads, int head_dim, const kvq_allocator *alloc,
                                kvq_cache_set **out);
void kvq_cache_set_free(kvq_cache_set *s);
void kvq_cache_set_reset(kvq_cache_set *s);
void kvq_cache_set_attach(kvq_cache_set *s, kvq_observers *obs);
size_t kvq_cache_set_bytes(const kvq_cache_set *s);
#endif
