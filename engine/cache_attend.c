// cache_attend.c — attention over the compressed cache. The fused path
// scores keys straight from their records (method score()) and decodes
// values one block at a time inside an online softmax (running max and sum),
// so no fp32 copy of K or V ever exists; the reference path decodes the
// visible tokens and runs kvq_attend_f32, the spec the fused path is tested
// against.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cache_impl.h"
#include "f16.h"

// A batch of queries of one kv head walked together, so each value block is
// decoded once for all of them (the query heads of a GQA group, and the
// queries of a prefill chunk).
typedef struct qbatch {
    int n;
    const float *q[KVQ_ATTN_BATCH];   // (d) each
    int32_t p[KVQ_ATTN_BATCH];        // position of each query
} qbatch;

// One block of consecutive positions [pos0, pos0 + n): scores (n_batch,
// c->block), scaled, masked = -INFINITY; V (n, d) decoded values when asked for.
typedef void (*chunk_fn)(void *u, const qbatch *b, const float *scores, const float *V, int32_t pos0, int n);

// fp16 rows of lanes lk/lv whose record 0 is position pos0, positions [lo, hi).
static void walk_f16(kvq_cache *c, const kvq_lane *lk, const kvq_lane *lv, int pos0, int lo, int hi,
                     const qbatch *b, float scale, bool values, chunk_fn fn, void *u)
{
    size_t d = (size_t)c->d;
    for (int p = lo; p < hi;) {
        int k = hi - p < (int)c->block ? hi - p : (int)c->block;
        kvq_f16_row_to_f32(kvq_lane_at(lk, (size_t)(p - pos0)), c->blk, (size_t)k * d);
        for (int qi = 0; qi < b->n; qi++) {
            float *sc = c->scores + (size_t)qi * c->block;
            const float *q = b->q[qi];
            for (int j = 0; j < k; j++) {
                const float *row = c->blk + (size_t)j * d;
                float s = 0;
                for (size_t t = 0; t < d; t++) s += q[t] * row[t];
                sc[j] = p + j > b->p[qi] ? -INFINITY : s * scale;
            }
        }
        if (values) kvq_f16_row_to_f32(kvq_lane_at(lv, (size_t)(p - pos0)), c->blk, (size_t)k * d);
        fn(u, b, c->scores, c->blk, p, k);
        p += k;
    }
}

// Every visible position <= max(p) of kv head h, in position order.
static void walk(kvq_cache *c, int h, const qbatch *b, bool values, chunk_fn fn, void *u)
{
    kvq_head_store *s = &c->hs[h];
    float scale = 1.0f / sqrtf((float)c->d);
    int32_t pmax = -1;
    for (int qi = 0; qi < b->n; qi++)
        if (b->p[qi] > pmax) pmax = b->p[qi];
    int lim = pmax + 1 < c->len ? pmax + 1 : c->len;
    if (lim <= 0) return;
    walk_f16(c, &s->sink_k, &s->sink_v, 0, 0, c->n_sink < lim ? c->n_sink : lim, b, scale, values, fn, u);
    int fv = kvq_cache_first_visible(c, s);
    int nc = (int)s->cv.n;
    int lo = fv > s->base ? fv : s->base, hi = s->base + nc < lim ? s->base + nc : lim;
    if (lo < hi) {
        for (int qi = 0; qi < b->n; qi++) {
            kvq_codec_prepare(&c->kc[h], b->q[qi], c->qs_k + (size_t)qi * c->qs_bytes);
            if (c->outliers) kvq_codec_prepare(&c->oc[h], b->q[qi], c->qs_o + (size_t)qi * c->qs_bytes);
        }
        size_t g = c->group;
        size_t i = (size_t)(lo - s->base) / g * g, end = ((size_t)(hi - s->base) + g - 1) / g * g;
        while (i < end) {
            size_t k = end - i < c->block ? end - i : c->block;
            for (int qi = 0; qi < b->n; qi++) {
                float *sc = c->scores + (size_t)qi * c->block;
                kvq_comp_keys_score(c, h, c->qs_k + (size_t)qi * c->qs_bytes,
                                    c->outliers ? c->qs_o + (size_t)qi * c->qs_bytes : NULL, i, k, sc);
                for (size_t j = 0; j < k; j++) {
                    int pos = s->base + (int)(i + j);
                    sc[j] = pos < lo || pos >= hi || pos > b->p[qi] ? -INFINITY : sc[j] * scale;
                }
            }
            if (values) kvq_codec_decode(&c->vc[h], kvq_lane_at(&s->cv, i), k, c->blk);
            fn(u, b, c->scores, c->blk, s->base + (int32_t)i, (int)k);
            i += k;
        }
    }
    int tpos0 = s->base + nc;
    lo = fv > tpos0 ? fv : tpos0;
    if (lo < lim) walk_f16(c, &s->tail_k, &s->tail_v, tpos0, lo, lim, b, scale, values, fn, u);
}

// Online softmax states of a batch: running max m, sum l, acc (n, d).
typedef struct online {
    float m[KVQ_ATTN_BATCH];
    double l[KVQ_ATTN_BATCH];
    float *acc;
    int d;
    size_t block;
} online;

static void online_update(void *u, const qbatch *b, const float *scores, const float *V, int32_t pos0, int n)
{
    (void)pos0;
    online *o = u;
    for (int qi = 0; qi < b->n; qi++) {
        const float *sc = scores + (size_t)qi * o->block;
        float *acc = o->acc + (size_t)qi * (size_t)o->d;
        float bm = -INFINITY;
        for (int j = 0; j < n; j++)
            if (sc[j] > bm) bm = sc[j];
        if (bm == -INFINITY) continue;
        if (bm > o->m[qi]) {   // rescale what was accumulated under the old max
            float corr = expf(o->m[qi] - bm);
            o->l[qi] *= corr;
            for (int t = 0; t < o->d; t++) acc[t] *= corr;
            o->m[qi] = bm;
        }
        for (int j = 0; j < n; j++) {
            if (sc[j] == -INFINITY) continue;
            float w = expf(sc[j] - o->m[qi]);
            o->l[qi] += w;
            const float *v = V + (size_t)j * (size_t)o->d;
            for (int t = 0; t < o->d; t++) acc[t] += w * v[t];
        }
    }
}

static void attend_fused(kvq_cache *c, const float *queries, int n_heads, int n_q,
                         const int32_t *positions, float *out)
{
    size_t d = (size_t)c->d;
    int per = n_heads / c->n_kv_heads, total = per * n_q;
    for (int h = 0; h < c->n_kv_heads; h++)
        // queries of the group in (head, query) order, KVQ_ATTN_BATCH at a time
        for (int first = 0; first < total; first += KVQ_ATTN_BATCH) {
            qbatch b = {.n = total - first < KVQ_ATTN_BATCH ? total - first : KVQ_ATTN_BATCH};
            float *dst[KVQ_ATTN_BATCH];
            online st = {.acc = c->acc, .d = c->d, .block = c->block};
            for (int qi = 0; qi < b.n; qi++) {
                int hq = h * per + (first + qi) / n_q, i = (first + qi) % n_q;
                size_t row = ((size_t)hq * (size_t)n_q + (size_t)i) * d;
                b.q[qi] = queries + row;
                b.p[qi] = positions[i];
                dst[qi] = out + row;
                st.m[qi] = -INFINITY;
                st.l[qi] = 0;
            }
            memset(c->acc, 0, sizeof(float) * d * (size_t)b.n);
            walk(c, h, &b, true, online_update, &st);
            for (int qi = 0; qi < b.n; qi++) {
                float inv = st.l[qi] > 0 ? (float)(1.0 / st.l[qi]) : 0.0f;
                for (size_t t = 0; t < d; t++) dst[qi][t] = c->acc[(size_t)qi * d + t] * inv;
            }
        }
}

static kvq_status attend_reference(kvq_cache *c, const float *queries, int n_heads, int n_q,
                                   const int32_t *positions, float *out)
{
    size_t d = (size_t)c->d, nv = (size_t)kvq_cache_visible(c);
    float *K = malloc(sizeof(float) * (nv ? nv : 1) * d);
    float *V = malloc(sizeof(float) * (nv ? nv : 1) * d);
    int32_t *pos = malloc(sizeof(int32_t) * (nv ? nv : 1));
    kvq_status st = K && V && pos ? KVQ_OK : kvq_error(KVQ_ERR_NOMEM, "cache attend: out of memory");
    int per = n_heads / c->n_kv_heads;
    for (int h = 0; h < c->n_kv_heads && !st; h++) {
        int n = 0;
        st = kvq_cache_decode(c, h, K, V, pos, &n);
        for (int hq = h * per; hq < (h + 1) * per && !st; hq++)
            for (int i = 0; i < n_q; i++) {
                size_t row = ((size_t)hq * (size_t)n_q + (size_t)i) * d;
                kvq_attend_f32(queries + row, K, V, pos, n, c->d, positions[i], out + row);
            }
    }
    free(K);
    free(V);
    free(pos);
    return st;
}

kvq_status kvq_cache_attend(kvq_cache *c, const float *queries, int n_heads, int n_q,
                            const int32_t *positions, float *out)
{
    if (!c || !queries || !positions || !out || n_q < 0)
        return kvq_error(KVQ_ERR_ARG, "cache attend: NULL argument or n_q %d < 0", n_q);
    if (n_heads < c->n_kv_heads || n_heads % c->n_kv_heads)
        return kvq_error(KVQ_ERR_SHAPE, "cache attend: %d query heads is not a multiple of %d kv heads",
                         n_heads, c->n_kv_heads);
    bool timed = kvq_observe_wants_latency(c->obs);
    double t0 = timed ? kvq_now_s() : 0;
    kvq_status st = KVQ_OK;
    if (c->cfg.use_fused_sdpa) attend_fused(c, queries, n_heads, n_q, positions, out);
    else st = attend_reference(c, queries, n_heads, n_q, positions, out);
    if (timed && !st) kvq_observe_decode_time(c->obs, c->layer, kvq_now_s() - t0);
    return st;
}

// ---- decode and logits ----
static void copy_rows(float *dst, const float *src, size_t n, size_t d)
{
    if (dst) memcpy(dst, src, sizeof(float) * n * d);
}

kvq_status kvq_cache_decode(kvq_cache *c, int kv_head, float *K, float *V, int32_t *pos, int *n)
{
    if (!c || kv_head < 0 || kv_head >= c->n_kv_heads || !n)
        return kvq_error(KVQ_ERR_ARG, "cache decode: kv_head %d (expected 0..%d)", kv_head,
                         c ? c->n_kv_heads - 1 : -1);
    kvq_head_store *s = &c->hs[kv_head];
    size_t d = (size_t)c->d, o = 0;
    for (int p = 0; p < c->n_sink; p++, o++) {
        if (K) kvq_f16_row_to_f32(kvq_lane_at(&s->sink_k, (size_t)p), K + o * d, d);
        if (V) kvq_f16_row_to_f32(kvq_lane_at(&s->sink_v, (size_t)p), V + o * d, d);
        if (pos) pos[o] = p;
    }
    int fv = kvq_cache_first_visible(c, s);
    size_t nc = s->cv.n, g = c->group;
    size_t first = fv > s->base ? (size_t)(fv - s->base) : 0;
    for (size_t i = first / g * g; i < nc;) {
        size_t k = nc - i < c->block ? nc - i : c->block;
        size_t skip = first > i ? first - i : 0;
        if (skip > k) skip = k;
        if (K) {
            kvq_comp_keys_decode(c, kv_head, i, k, c->blk);
            copy_rows(K + o * d, c->blk + skip * d, k - skip, d);
        }
        if (V) {
            kvq_codec_decode(&c->vc[kv_head], kvq_lane_at(&s->cv, i), k, c->blk);
            copy_rows(V + o * d, c->blk + skip * d, k - skip, d);
        }
        for (size_t j = skip; j < k; j++, o++)
            if (pos) pos[o] = s->base + (int32_t)(i + j);
        i += k;
    }
    int tpos0 = s->base + (int)nc;
    for (int p = fv > tpos0 ? fv : tpos0; p < c->len; p++, o++) {
        if (K) kvq_f16_row_to_f32(kvq_lane_at(&s->tail_k, (size_t)(p - tpos0)), K + o * d, d);
        if (V) kvq_f16_row_to_f32(kvq_lane_at(&s->tail_v, (size_t)(p - tpos0)), V + o * d, d);
        if (pos) pos[o] = p;
    }
    *n = (int)o;
    return KVQ_OK;
}

typedef struct logit_sink {
    float *logits;
    int32_t *pos;
    int n;
} logit_sink;

static void logit_collect(void *u, const qbatch *b, const float *sc, const float *V, int32_t pos0, int n)
{
    (void)V;
    (void)b;
    logit_sink *ls = u;
    for (int j = 0; j < n; j++) {
        if (sc[j] == -INFINITY) continue;
        ls->logits[ls->n] = sc[j];
        if (ls->pos) ls->pos[ls->n] = pos0 + j;
        ls->n++;
    }
}

kvq_status kvq_cache_logits(kvq_cache *c, const float *q, int head, int n_heads, int32_t p,
                            float *logits, int32_t *pos, int *n)
{
    if (!c || !q || !logits || !n || n_heads < c->n_kv_heads || n_heads % c->n_kv_heads || head < 0 ||
        head >= n_heads)
        return kvq_error(KVQ_ERR_ARG, "cache logits: head %d of %d query heads (%d kv heads)", head,
                         n_heads, c ? c->n_kv_heads : 0);
    logit_sink ls = {logits, pos, 0};
    qbatch b = {.n = 1, .q = {q}, .p = {p}};
    walk(c, head / (n_heads / c->n_kv_heads), &b, false, logit_collect, &ls);
    *n = ls.n;
    return KVQ_OK;
}

void kvq_attend_f32(const float *q, const float *K, const float *V, const int32_t *kpos, int n, int d,
                    int32_t p, float *out)
{
    double scale = 1.0 / sqrt((double)d), m = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (kpos[i] > p) continue;
        double s = 0;
        for (int t = 0; t < d; t++) s += (double)q[t] * K[(size_t)i * (size_t)d + (size_t)t];
        if (s * scale > m) m = s * scale;
    }
    double acc[KVQ_MAX_HEAD_DIM] = {0}, l = 0;
    if (m != -INFINITY)
        for (int i = 0; i < n; i++) {
            if (kpos[i] > p) continue;
            const float *k = K + (size_t)i * (size_t)d, *v = V + (size_t)i * (size_t)d;
            double s = 0;
            for (int t = 0; t < d; t++) s += (double)q[t] * k[t];
            double w = exp(s * scale - m);
            l += w;
            for (int t = 0; t < d; t++) acc[t] += w * v[t];
        }
    for (int t = 0; t < d; t++) out[t] = l > 0 ? (float)(acc[t] / l) : 0.0f;
}
