// cache.c — the compressed KV cache's storage: creation (per-layer bits,
// protected layers, asymmetric key/value coders, outlier coder), append,
// the tail -> compressed drain, sliding-window eviction, and byte
// accounting through the allocator. Attention lives in cache_attend.c.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cache_impl.h"
#include "f16.h"

// ---- allocation: every byte through the allocator, counted ----
static void *default_alloc(size_t n, void *user)
{
    (void)user;
    return malloc(n);
}

static void default_free(void *p, size_t n, void *user)
{
    (void)n;
    (void)user;
    free(p);
}

static void *c_alloc(kvq_cache *c, size_t n)
{
    if (n == 0) return NULL;
    void *p = c->al.alloc(n, c->al.user);
    if (p) c->bytes += n;
    return p;
}

static void c_free(kvq_cache *c, void *p, size_t n)
{
    if (!p) return;
    c->al.free(p, n, c->al.user);
    c->bytes -= n;
}

static kvq_status lane_resize(kvq_cache *c, kvq_lane *l, size_t cap)
{
    uint8_t *b = c_alloc(c, cap * l->rec);
    if (!b)
        return kvq_error(KVQ_ERR_NOMEM, "cache layer %d: cannot allocate %zu records of %zu bytes",
                         c->layer, cap, l->rec);
    if (l->n) memcpy(b, l->buf + l->head * l->rec, l->n * l->rec);
    c_free(c, l->buf, l->cap * l->rec);
    l->buf = b;
    l->cap = cap;
    l->head = 0;
    return KVQ_OK;
}

// Room for k more records at the end.
static kvq_status lane_reserve(kvq_cache *c, kvq_lane *l, size_t k)
{
    if (l->head + l->n + k <= l->cap) return KVQ_OK;
    if (l->n + k <= l->cap && l->head >= l->cap / 2) {   // slide down: amortized by >= cap/2 pops
        memmove(l->buf, l->buf + l->head * l->rec, l->n * l->rec);
        l->head = 0;
        return KVQ_OK;
    }
    size_t cap = l->cap ? l->cap * 2 : 1;
    while (cap < l->n + k) cap *= 2;
    return lane_resize(c, l, cap);
}

static uint8_t *lane_push(kvq_lane *l, size_t k)   // after lane_reserve
{
    uint8_t *p = l->buf + (l->head + l->n) * l->rec;
    l->n += k;
    return p;
}

static void lane_pop(kvq_lane *l, size_t k)
{
    l->head += k;
    l->n -= k;
    if (l->n == 0) l->head = 0;
}

static void lane_release(kvq_cache *c, kvq_lane *l)
{
    c_free(c, l->buf, l->cap * l->rec);
    memset(l, 0, sizeof *l);
}

// ---- coders ----
void kvq_codec_encode(const kvq_codec *k, const float *x, size_t n, uint8_t *codes)
{
    if (!k->raw16) {
        k->q.m->encode(k->q.plan, x, n, codes);
        return;
    }
    for (size_t i = 0; i < n; i++)
        kvq_f32_row_to_f16(x + i * (size_t)k->d, (uint16_t *)(void *)(codes + i * k->bpv), (size_t)k->d);
}

void kvq_codec_decode(const kvq_codec *k, const uint8_t *codes, size_t n, float *x)
{
    if (!k->raw16) k->q.m->decode(k->q.plan, codes, n, x);
    else kvq_f16_row_to_f32(codes, x, n * (size_t)k->d);
}

void kvq_codec_prepare(const kvq_codec *k, const float *q, void *qs)
{
    if (!k->raw16) k->q.m->prepare_query(k->q.plan, q, qs);
    else memcpy(qs, q, sizeof(float) * (size_t)k->d);
}

void kvq_codec_score(const kvq_codec *k, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    if (!k->raw16) {
        k->q.m->score(k->q.plan, qs, codes, n, scores);
        return;
    }
    const float *q = qs;
    float row[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        kvq_f16_row_to_f32(codes + i * k->bpv, row, (size_t)k->d);
        float s = 0;
        for (int j = 0; j < k->d; j++) s += q[j] * row[j];
        scores[i] = s;
    }
}

static kvq_status codec_init(kvq_codec *k, const char *method, bool raw16, const kvq_plan_params *p,
                             const char *what)
{
    memset(k, 0, sizeof *k);
    k->d = p->head_dim;
    if (raw16) {
        k->raw16 = true;
        k->bpv = 2 * (size_t)p->head_dim;
        k->qbytes = sizeof(float) * (size_t)p->head_dim;
        k->group = 1;
        return KVQ_OK;
    }
    kvq_status s = kvq_quantizer_init(&k->q, method, p);
    if (s) {
        char why[768];
        snprintf(why, sizeof why, "%s", kvq_last_error());
        return kvq_error(s, "cache layer %d kv head %d %s (%s, %d bits): %s", p->layer, p->kv_head,
                         what, method, p->bits, why);
    }
    k->bpv = k->q.bpv;
    k->qbytes = k->q.qbytes;
    k->group = k->q.group ? k->q.group : 1;
    return KVQ_OK;
}

static size_t gcd_sz(size_t a, size_t b) { return b ? gcd_sz(b, a % b) : a; }

// ---- creation ----
static kvq_status lanes_init(kvq_cache *c, kvq_head_store *s, int h)
{
    size_t f16row = 2 * (size_t)c->d;
    s->sink_k.rec = s->sink_v.rec = s->tail_k.rec = s->tail_v.rec = f16row;
    s->ck.rec = c->kc[h].bpv;
    s->cv.rec = c->vc[h].bpv;
    s->ok.rec = c->oc ? c->oc[h].bpv : 1;
    s->tags.rec = 1;
    s->base = c->cfg.sink_tokens;
    if (c->outliers) {
        s->ring = c_alloc(c, sizeof(float) * KVQ_OUTLIER_WINDOW);
        if (!s->ring) return kvq_error(KVQ_ERR_NOMEM, "cache layer %d: out of memory", c->layer);
        kvq_rolling_init(&s->roll, s->ring, KVQ_OUTLIER_WINDOW);
    }
    size_t m = (size_t)c->cfg.max_seq_len;
    if (!m) return KVQ_OK;
    // Preallocate so no growth happens up to max_seq_len. The tail holds the
    // window, a partial group and one incoming group; twice that lets the
    // FIFO slide down instead of growing (lane_reserve). Never more than m:
    // m tokens can never push a lane's end past m.
    size_t sinks = (size_t)c->cfg.sink_tokens < m ? (size_t)c->cfg.sink_tokens : m;
    size_t tail = c->all_fp16 ? m : 2 * ((size_t)c->cfg.residual_length + 2 * c->group);
    if (tail > m) tail = m;
    size_t comp = c->all_fp16 ? 0 : m;
    kvq_status st = KVQ_OK;
    if (sinks && !st) st = lane_reserve(c, &s->sink_k, sinks);
    if (sinks && !st) st = lane_reserve(c, &s->sink_v, sinks);
    if (tail && !st) st = lane_reserve(c, &s->tail_k, tail);
    if (tail && !st) st = lane_reserve(c, &s->tail_v, tail);
    if (comp && !st) st = lane_reserve(c, &s->ck, comp);
    if (comp && !st) st = lane_reserve(c, &s->cv, comp);
    if (c->outliers && !st) st = lane_reserve(c, &s->tags, m);
    return st;
}

kvq_status kvq_cache_new_ex(const kvq_config *cfg, const kvq_artifacts *art, int layer, int n_layers,
                            int n_kv_heads, int head_dim, const kvq_allocator *alloc, kvq_cache **out)
{
    *out = NULL;
    if (n_layers < 1 || n_layers > KVQ_MAX_LAYERS || layer < 0 || layer >= n_layers)
        return kvq_error(KVQ_ERR_ARG, "cache: layer %d of %d (expected 0 <= layer < n_layers <= %d)",
                         layer, n_layers, KVQ_MAX_LAYERS);
    if (n_kv_heads < 1 || head_dim < 1 || head_dim > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_ARG, "cache: n_kv_heads %d, head_dim %d (expected >= 1 and 1..%d)",
                         n_kv_heads, head_dim, KVQ_MAX_HEAD_DIM);
    const char *why = kvq_config_check(cfg);
    if (why) return kvq_error(KVQ_ERR_ARG, "cache config: %s", why);
    if (cfg->n_bit_allocation > 0 && cfg->n_bit_allocation != n_layers)
        return kvq_error(KVQ_ERR_ARG, "bit_allocation: %d layers given, the model has %d",
                         cfg->n_bit_allocation, n_layers);
    if (cfg->residual_length < 0 || cfg->sink_tokens < 0 || cfg->sliding_window < 0 ||
        cfg->max_seq_len < 0)
        return kvq_error(KVQ_ERR_ARG, "cache config: residual_length, sink_tokens, sliding_window "
                                      "and max_seq_len must be >= 0");
    kvq_allocator al = {default_alloc, default_free, NULL};
    if (alloc) al = *alloc;
    kvq_cache *c = al.alloc(sizeof *c, al.user);
    if (!c) return kvq_error(KVQ_ERR_NOMEM, "cache: out of memory");
    memset(c, 0, sizeof *c);
    c->al = al;
    c->bytes = sizeof *c;
    c->cfg = *cfg;
    c->layer = layer;
    c->n_layers = n_layers;
    c->n_kv_heads = n_kv_heads;
    c->d = head_dim;
    int prot = cfg->protect_layers;
    c->all_fp16 = prot > 0 && (layer < prot || layer >= n_layers - prot);
    int kbits = cfg->n_bit_allocation > 0 ? cfg->bit_allocation[layer] : cfg->bits;
    const kvq_method *km = kvq_method_find(cfg->method);
    bool k16 = c->all_fp16 || (kbits == 16 && km && km->max_bits < 16);
    const char *vmethod = cfg->value_method[0] ? cfg->value_method : "turboquant_mse";
    bool v16 = c->all_fp16 || kvq_config_fp16_values(cfg);
    c->outliers = cfg->outlier_bits > 0 && !c->all_fp16;
    bool o16 = cfg->outlier_bits == 16 && km && km->max_bits < 16;
    size_t nh = (size_t)n_kv_heads;
    kvq_status st = KVQ_OK;
    c->kc = c_alloc(c, nh * sizeof *c->kc);
    c->vc = c_alloc(c, nh * sizeof *c->vc);
    c->hs = c_alloc(c, nh * sizeof *c->hs);
    if (c->outliers) c->oc = c_alloc(c, nh * sizeof *c->oc);
    if (!c->kc || !c->vc || !c->hs || (c->outliers && !c->oc)) {
        kvq_cache_free(c);
        return kvq_error(KVQ_ERR_NOMEM, "cache: out of memory");
    }
    memset(c->kc, 0, nh * sizeof *c->kc);
    memset(c->vc, 0, nh * sizeof *c->vc);
    memset(c->hs, 0, nh * sizeof *c->hs);
    if (c->oc) memset(c->oc, 0, nh * sizeof *c->oc);
    for (int h = 0; h < n_kv_heads && !st; h++) {
        kvq_plan_params p = {.bits = kbits, .head_dim = head_dim, .layer = layer, .kv_head = h,
                             .cfg = &c->cfg, .art = art};
        st = codec_init(&c->kc[h], cfg->method, k16, &p, "keys");
        p.bits = cfg->value_bits;
        p.is_value = true;
        if (!st) st = codec_init(&c->vc[h], vmethod, v16, &p, "values");
        p.bits = cfg->outlier_bits;
        p.is_value = false;
        if (!st && c->outliers) st = codec_init(&c->oc[h], cfg->method, o16, &p, "outlier keys");
    }
    if (st) {
        kvq_cache_free(c);
        return st;
    }
    size_t gk = c->kc[0].group, gv = c->vc[0].group;
    c->group = gk / gcd_sz(gk, gv) * gv;
    if (c->outliers && (gk != 1 || c->oc[0].group != 1)) {
        kvq_cache_free(c);
        return kvq_error(KVQ_ERR_UNSUPPORTED, "outlier_bits: %s encodes keys in groups of %zu tokens; "
                         "outlier tokens need a per-token method", cfg->method, gk);
    }
    c->block = (KVQ_CACHE_BLOCK + c->group - 1) / c->group * c->group;
    if (c->block > KVQ_CACHE_BLOCK_MAX) {
        kvq_cache_free(c);
        return kvq_error(KVQ_ERR_UNSUPPORTED, "cache: group of %zu tokens exceeds %d", c->group,
                         KVQ_CACHE_BLOCK_MAX);
    }
    size_t qb = c->kc[0].qbytes;
    if (c->oc && c->oc[0].qbytes > qb) qb = c->oc[0].qbytes;
    if (qb < sizeof(float) * (size_t)head_dim) qb = sizeof(float) * (size_t)head_dim;
    c->qs_bytes = (qb + 15) / 16 * 16;
    c->blk = c_alloc(c, sizeof(float) * c->block * (size_t)head_dim);
    c->scores = c_alloc(c, sizeof(float) * c->block * KVQ_ATTN_BATCH);
    c->acc = c_alloc(c, sizeof(float) * (size_t)head_dim * KVQ_ATTN_BATCH);
    c->qs_k = c_alloc(c, c->qs_bytes * KVQ_ATTN_BATCH);
    if (c->outliers) c->qs_o = c_alloc(c, c->qs_bytes * KVQ_ATTN_BATCH);
    if (!c->blk || !c->scores || !c->acc || !c->qs_k || (c->outliers && !c->qs_o)) {
        kvq_cache_free(c);
        return kvq_error(KVQ_ERR_NOMEM, "cache: out of memory");
    }
    for (int h = 0; h < n_kv_heads && !st; h++) st = lanes_init(c, &c->hs[h], h);
    if (st) {
        kvq_cache_free(c);
        return st;
    }
    *out = c;
    return KVQ_OK;
}

kvq_status kvq_cache_new(const kvq_config *cfg, const kvq_artifacts *art, int layer, int n_layers,
                         int n_kv_heads, int head_dim, kvq_cache **out)
{
    return kvq_cache_new_ex(cfg, art, layer, n_layers, n_kv_heads, head_dim, NULL, out);
}

void kvq_cache_free(kvq_cache *c)
{
    if (!c) return;
    size_t nh = (size_t)c->n_kv_heads;
    if (c->hs)
        for (size_t h = 0; h < nh; h++) {
            kvq_head_store *s = &c->hs[h];
            kvq_lane *lanes[] = {&s->sink_k, &s->sink_v, &s->tail_k, &s->tail_v,
                                 &s->ck, &s->cv, &s->ok, &s->tags};
            for (size_t i = 0; i < sizeof lanes / sizeof lanes[0]; i++) lane_release(c, lanes[i]);
            c_free(c, s->ring, sizeof(float) * KVQ_OUTLIER_WINDOW);
        }
    for (size_t h = 0; h < nh; h++) {
        if (c->kc) kvq_quantizer_free(&c->kc[h].q);
        if (c->vc) kvq_quantizer_free(&c->vc[h].q);
        if (c->oc) kvq_quantizer_free(&c->oc[h].q);
    }
    c_free(c, c->kc, nh * sizeof *c->kc);
    c_free(c, c->vc, nh * sizeof *c->vc);
    c_free(c, c->oc, nh * sizeof *c->oc);
    c_free(c, c->hs, nh * sizeof *c->hs);
    c_free(c, c->blk, sizeof(float) * c->block * (size_t)c->d);
    c_free(c, c->scores, sizeof(float) * c->block * KVQ_ATTN_BATCH);
    c_free(c, c->acc, sizeof(float) * (size_t)c->d * KVQ_ATTN_BATCH);
    c_free(c, c->qs_k, c->qs_bytes * KVQ_ATTN_BATCH);
    c_free(c, c->qs_o, c->qs_bytes * KVQ_ATTN_BATCH);
    kvq_allocator al = c->al;
    al.free(c, sizeof *c, al.user);
}

void kvq_cache_reset(kvq_cache *c)
{
    if (!c) return;
    for (int h = 0; h < c->n_kv_heads; h++) {
        kvq_head_store *s = &c->hs[h];
        kvq_lane *lanes[] = {&s->sink_k, &s->sink_v, &s->tail_k, &s->tail_v,
                             &s->ck, &s->cv, &s->ok, &s->tags};
        for (size_t i = 0; i < sizeof lanes / sizeof lanes[0]; i++) lanes[i]->head = lanes[i]->n = 0;
        s->base = c->cfg.sink_tokens;
        if (s->ring) kvq_rolling_init(&s->roll, s->ring, KVQ_OUTLIER_WINDOW);
    }
    c->len = 0;
    c->n_sink = 0;
}

// ---- compressed keys ----
// Token idx's record is in ck (tag 0) or ok (tag 1, outlier token); ranges
// are walked in runs of equal tags so each run is one codec call.
static void split_index(const kvq_cache *c, const kvq_head_store *s, size_t idx, size_t *ni, size_t *oi)
{
    size_t o = 0;
    if (c->outliers)
        for (size_t i = 0; i < idx; i++) o += *kvq_lane_at(&s->tags, i);
    *oi = o;
    *ni = idx - o;
}

// Length of the run of equal tags (*tag) at token idx + i, capped at idx + n.
static size_t tag_run(const kvq_head_store *s, size_t idx, size_t i, size_t n, uint8_t *tag)
{
    *tag = *kvq_lane_at(&s->tags, idx + i);
    size_t r = 1;
    while (i + r < n && *kvq_lane_at(&s->tags, idx + i + r) == *tag) r++;
    return r;
}

// r records from record `rec` of ck (or ok when outlier): scored against qs
// into out (r) when score, else decoded into out (r, d).
static void keys_run(const kvq_cache *c, int h, bool outlier, bool score, const void *qs, size_t rec,
                     size_t r, float *out)
{
    const kvq_codec *k = outlier ? &c->oc[h] : &c->kc[h];
    const uint8_t *codes = kvq_lane_at(outlier ? &c->hs[h].ok : &c->hs[h].ck, rec);
    if (score) kvq_codec_score(k, qs, codes, r, out);
    else kvq_codec_decode(k, codes, r, out);
}

static void comp_keys(const kvq_cache *c, int h, bool score, const void *qs_k, const void *qs_o,
                      size_t idx, size_t n, float *out)
{
    if (!c->outliers) {
        keys_run(c, h, false, score, qs_k, idx, n, out);
        return;
    }
    const kvq_head_store *s = &c->hs[h];
    const size_t stride = score ? 1 : (size_t)c->d;   // floats of out per token
    size_t ni, oi;
    split_index(c, s, idx, &ni, &oi);
    for (size_t i = 0; i < n;) {
        uint8_t tag;
        size_t r = tag_run(s, idx, i, n, &tag);
        keys_run(c, h, tag, score, tag ? qs_o : qs_k, tag ? oi : ni, r, out + i * stride);
        *(tag ? &oi : &ni) += r;
        i += r;
    }
}

void kvq_comp_keys_decode(const kvq_cache *c, int h, size_t idx, size_t n, float *x)
{
    comp_keys(c, h, false, NULL, NULL, idx, n, x);
}

void kvq_comp_keys_score(const kvq_cache *c, int h, const void *qs_k, const void *qs_o, size_t idx,
                         size_t n, float *scores)
{
    comp_keys(c, h, true, qs_k, qs_o, idx, n, scores);
}

// ---- append ----
// Move whole groups of the tail beyond residual_length into compressed storage.
static kvq_status drain(kvq_cache *c, int h)
{
    kvq_head_store *s = &c->hs[h];
    size_t d = (size_t)c->d, res = (size_t)c->cfg.residual_length;
    while (!c->all_fp16 && s->tail_k.n >= res + c->group) {
        size_t k = s->tail_k.n - res;
        if (k > c->block) k = c->block;
        k -= k % c->group;
        size_t n_out = 0;
        for (size_t i = 0; i < k; i++) n_out += c->outliers ? *kvq_lane_at(&s->tags, s->cv.n + i) : 0;
        kvq_status st = lane_reserve(c, &s->ck, k - n_out);
        if (!st) st = lane_reserve(c, &s->cv, k);
        if (!st && n_out) st = lane_reserve(c, &s->ok, n_out);
        if (st) return st;
        size_t idx = s->cv.n;
        kvq_f16_row_to_f32(kvq_lane_at(&s->tail_k, 0), c->blk, k * d);
        if (!c->outliers) {
            kvq_codec_encode(&c->kc[h], c->blk, k, lane_push(&s->ck, k));
        } else {
            for (size_t i = 0; i < k;) {
                uint8_t tag;
                size_t r = tag_run(s, idx, i, k, &tag);
                if (tag) kvq_codec_encode(&c->oc[h], c->blk + i * d, r, lane_push(&s->ok, r));
                else kvq_codec_encode(&c->kc[h], c->blk + i * d, r, lane_push(&s->ck, r));
                i += r;
            }
        }
        lane_push(&s->cv, k);   // index for the value records; filled below
        if (kvq_observe_wants_distortion(c->obs)) {
            float *xh = kvq_observe_scratch(c->obs);
            kvq_comp_keys_decode(c, h, idx, k, xh);
            kvq_codec_prepare(&c->kc[h], kvq_observe_probe(c->obs), c->qs_k);
            if (c->outliers) kvq_codec_prepare(&c->oc[h], kvq_observe_probe(c->obs), c->qs_o);
            kvq_comp_keys_score(c, h, c->qs_k, c->qs_o, idx, k, c->scores);
            kvq_observe_encoded(c->obs, c->layer, c->blk, xh, c->scores, (int)k);
        }
        kvq_f16_row_to_f32(kvq_lane_at(&s->tail_v, 0), c->blk, k * d);
        kvq_codec_encode(&c->vc[h], c->blk, k, kvq_lane_at(&s->cv, idx));
        lane_pop(&s->tail_k, k);
        lane_pop(&s->tail_v, k);
    }
    return KVQ_OK;
}

// Sliding window: drop the oldest non-sink tokens beyond the window, whole
// groups from compressed storage, any count from the tail once it is empty.
static void evict(kvq_cache *c, int h)
{
    kvq_head_store *s = &c->hs[h];
    int target = c->len - c->cfg.sliding_window;
    if (c->cfg.sliding_window <= 0 || target <= s->base) return;
    if (s->cv.n) {
        size_t k = (size_t)(target - s->base);
        if (k > s->cv.n) k = s->cv.n;
        k -= k % c->group;
        size_t n_out = 0;
        for (size_t i = 0; c->outliers && i < k; i++) n_out += *kvq_lane_at(&s->tags, i);
        lane_pop(&s->ck, k - n_out);
        if (n_out) lane_pop(&s->ok, n_out);
        lane_pop(&s->cv, k);
        if (c->outliers) lane_pop(&s->tags, k);
        s->base += (int)k;
    }
    if (!s->cv.n && target > s->base) {
        size_t k = (size_t)(target - s->base);
        if (k > s->tail_k.n) k = s->tail_k.n;
        lane_pop(&s->tail_k, k);
        lane_pop(&s->tail_v, k);
        if (c->outliers) lane_pop(&s->tags, k);
        s->base += (int)k;
    }
}

// Store m tokens (rows of k, v: (m, d)) at positions [len, len+m) of head h.
static kvq_status push_tokens(kvq_cache *c, int h, const float *k, const float *v, int m)
{
    kvq_head_store *s = &c->hs[h];
    size_t d = (size_t)c->d;
    int sinks = c->cfg.sink_tokens;
    int ns = c->len < sinks ? (sinks - c->len < m ? sinks - c->len : m) : 0;
    size_t nt = (size_t)(m - ns);
    kvq_status st = KVQ_OK;
    if (ns) st = lane_reserve(c, &s->sink_k, (size_t)ns);
    if (ns && !st) st = lane_reserve(c, &s->sink_v, (size_t)ns);
    if (nt && !st) st = lane_reserve(c, &s->tail_k, nt);
    if (nt && !st) st = lane_reserve(c, &s->tail_v, nt);
    if (nt && c->outliers && !st) st = lane_reserve(c, &s->tags, nt);
    if (st) return st;
    for (int i = 0; i < m; i++) {
        const float *kr = k + (size_t)i * d, *vr = v + (size_t)i * d;
        bool sink = i < ns;
        kvq_f32_row_to_f16(kr, (uint16_t *)(void *)lane_push(sink ? &s->sink_k : &s->tail_k, 1), d);
        kvq_f32_row_to_f16(vr, (uint16_t *)(void *)lane_push(sink ? &s->sink_v : &s->tail_v, 1), d);
        if (!sink && c->outliers) {
            double nn = 0;
            for (size_t j = 0; j < d; j++) nn += (double)kr[j] * kr[j];
            *lane_push(&s->tags, 1) = kvq_rolling_push(&s->roll, (float)sqrt(nn), KVQ_OUTLIER_THRESHOLD);
        }
    }
    return KVQ_OK;
}

kvq_status kvq_cache_append(kvq_cache *c, const float *keys, const float *values, int n)
{
    if (!c || n < 0 || (n > 0 && (!keys || !values)))
        return kvq_error(KVQ_ERR_ARG, "cache append: need keys and values for %d tokens", n);
    if (n == 0) return KVQ_OK;
    bool timed = kvq_observe_wants_latency(c->obs);
    double t0 = timed ? kvq_now_s() : 0;
    size_t d = (size_t)c->d, nn = (size_t)n;
    for (int h = 0; h < c->n_kv_heads; h++)
        kvq_observe_keys(c->obs, c->layer, h, keys + (size_t)h * nn * d, n);
    // Pieces of one group keep the fp16 tail at residual_length + 2 groups
    // (drain() still encodes whole blocks when the window holds them).
    int piece = (int)(c->all_fp16 ? c->block : c->group);
    for (int off = 0; off < n;) {
        int m = n - off < piece ? n - off : piece;
        for (int h = 0; h < c->n_kv_heads; h++) {
            size_t row = ((size_t)h * nn + (size_t)off) * d;
            kvq_status st = push_tokens(c, h, keys + row, values + row, m);
            if (st) return st;
        }
        c->len += m;
        c->n_sink = c->len < c->cfg.sink_tokens ? c->len : c->cfg.sink_tokens;
        for (int h = 0; h < c->n_kv_heads; h++) {
            kvq_status st = drain(c, h);
            if (st) return st;
            evict(c, h);
        }
        off += m;
    }
    if (timed) kvq_observe_encode_time(c->obs, c->layer, kvq_now_s() - t0);
    if (c->obs) {
        int vis = kvq_cache_visible(c);
        size_t f16 = (size_t)vis * (size_t)c->n_kv_heads * d * 2 * 2;
        kvq_observe_memory(c->obs, c->layer, c->bytes + kvq_cache_side_bytes(c), f16, vis);
    }
    return KVQ_OK;
}

// ---- queries about the cache ----
int kvq_cache_len(const kvq_cache *c) { return c ? c->len : 0; }
size_t kvq_cache_bytes(const kvq_cache *c) { return c ? c->bytes : 0; }

size_t kvq_cache_side_bytes(const kvq_cache *c)
{
    size_t b = 0;
    for (int h = 0; c && h < c->n_kv_heads; h++) {
        b += c->kc[h].q.side + c->vc[h].q.side;
        if (c->oc) b += c->oc[h].q.side;
    }
    return b;
}
size_t kvq_cache_key_bpv(const kvq_cache *c) { return c->kc[0].bpv; }
size_t kvq_cache_value_bpv(const kvq_cache *c) { return c->vc[0].bpv; }

int kvq_cache_visible(const kvq_cache *c)
{
    if (!c) return 0;
    int fv = kvq_cache_first_visible(c, &c->hs[0]);
    return c->n_sink + (c->len > fv ? c->len - fv : 0);
}

void kvq_cache_attach(kvq_cache *c, kvq_observers *obs)
{
    if (c) c->obs = obs;
}
