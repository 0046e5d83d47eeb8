// cache_impl.h — private layout of kvq_cache shared by cache.c (storage:
// append, drain, eviction) and cache_attend.c (attention, decode, logits).
// Not part of the engine API.
#ifndef KVQ_CACHE_IMPL_H
#define KVQ_CACHE_IMPL_H
#include "cache.h"
#include "observe.h"

// Queries attended together (one value decode per block serves them all).
#define KVQ_ATTN_BATCH 4

// A FIFO of fixed-size records: live records are [head, head + n) of buf
// (cap records). Popping the front advances head; pushing slides the live
// records down or doubles cap, so growth is amortized and a sliding window
// reaches a flat capacity.
typedef struct kvq_lane {
    uint8_t *buf;
    size_t rec, head, n, cap;
} kvq_lane;

static inline uint8_t *kvq_lane_at(const kvq_lane *l, size_t i) { return l->buf + (l->head + i) * l->rec; }

// One stream's coder: a method quantizer, or raw fp16 records (q.m == NULL).
typedef struct kvq_codec {
    kvq_quantizer q;
    bool raw16;
    size_t bpv, qbytes, group;
    int d;
} kvq_codec;

// Storage of one kv head (see cache.h for the regions).
typedef struct kvq_head_store {
    kvq_lane sink_k, sink_v;   // fp16 rows, positions [0, n_sink)
    kvq_lane tail_k, tail_v;   // fp16 rows, positions [base + cv.n, len)
    kvq_lane ck, cv;           // key records of non-outlier tokens; value records of all
    kvq_lane ok;               // key records of outlier tokens (outlier_bits)
    kvq_lane tags;             // 1 byte per token of [base, len): 1 = outlier
    int base;                  // position of the first non-sink token held
    kvq_rolling roll;          // key norms, for outlier tags
    float *ring;               // (KVQ_OUTLIER_WINDOW) when outliers
} kvq_head_store;

struct kvq_cache {
    kvq_config cfg;
    kvq_allocator al;
    size_t bytes;              // live bytes through al, this struct included
    int layer, n_layers, n_kv_heads, d;
    int len;                   // positions appended
    int n_sink;                // sink tokens held: min(len, sink_tokens)
    bool all_fp16;             // protected layer: nothing is compressed
    bool outliers;             // outlier_bits active
    size_t group, block;       // tokens that move together; tokens per block
    kvq_codec *kc, *vc, *oc;   // (n_kv_heads) key, value, outlier-key coders (oc NULL when off)
    kvq_head_store *hs;        // (n_kv_heads)
    float *blk;                // (block, d) staging: encode input, decoded keys/values
    float *scores;             // (KVQ_ATTN_BATCH, block)
    float *acc;                // (KVQ_ATTN_BATCH, d) online-softmax accumulators
    uint8_t *qs_k, *qs_o;      // (KVQ_ATTN_BATCH, qs_bytes) query states of kc and oc
    size_t qs_bytes;           // one query state, rounded up to 16
    kvq_observers *obs;
};

// Position of the first non-sink token attention can see.
static inline int kvq_cache_first_visible(const kvq_cache *c, const kvq_head_store *s)
{
    int fv = s->base;
    if (c->cfg.sliding_window > 0 && c->len - c->cfg.sliding_window > fv)
        fv = c->len - c->cfg.sliding_window;
    return fv;
}

// codec kernels (cache.c)
void kvq_codec_encode(const kvq_codec *k, const float *x, size_t n, uint8_t *codes);
void kvq_codec_decode(const kvq_codec *k, const uint8_t *codes, size_t n, float *x);
void kvq_codec_prepare(const kvq_codec *k, const float *q, void *qs);
void kvq_codec_score(const kvq_codec *k, const void *qs, const uint8_t *codes, size_t n,
                     float *scores);
// Compressed keys [idx, idx + n) of one head (idx, n whole groups), with outlier runs.
void kvq_comp_keys_decode(const kvq_cache *c, int h, size_t idx, size_t n, float *x);
void kvq_comp_keys_score(const kvq_cache *c, int h, const void *qs_k, const void *qs_o, size_t idx,
                         size_t n, float *scores);
#endif
