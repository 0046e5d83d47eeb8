// cache_attend.c — attention over the compressed cache. The fused path
// scores keys straight from their records (method score(); turboquant_mse
// keys: all queries of a batch per pass over the codes) and folds values in
// block by block inside an online softmax (running max and sum), so no fp32
// copy of K or V ever exists. turboquant_mse values are not decoded at all:
// their softmax-weighted levels are summed in the rotated basis and each
// query pays one inverse rotation at the end (a rotation is linear, and
// every value of a stream shares it). The reference path decodes the visible
// tokens and runs kvq_attend_f32, the spec the fused path is tested against.
//
// Threads: the fused path is cut into tasks (kv head, query batch, range of
// positions) by the data alone, run through kvq_parallel_for, and partial
// softmax states are merged in a fixed order: any thread count gives the
// same bits. Tasks keep their scratch on their own stack (<= 160 KB) and the
// caller's stack holds the partial states (8 x ~8 KB at head_dim 256); a
// configuration whose scratch would not fit runs the tasks serially on the
// cache's scratch instead.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cache_impl.h"
#include "f16.h"
#include "methods/methods.h"
#include "methods/turboquant_mse.h"
#include "pool.h"
#include "simd.h"

// A batch of queries of one kv head walked together, so each value block is
// decoded once for all of them (the query heads of a GQA group, and the
// queries of a prefill chunk).
typedef struct qbatch {
    int n;
    const float *q[KVQ_ATTN_BATCH];   // (d) each
    int32_t p[KVQ_ATTN_BATCH];        // position of each query
} qbatch;

// Working memory of one walk: the cache's own (serial use) or a task's
// stack buffer (parallel use).
typedef struct scratch {
    size_t block;           // positions per step (a multiple of the cache's group)
    float *blk;             // (block, d) decoded keys/values
    float *scores;          // (KVQ_ATTN_BATCH, block)
    uint8_t *qs_k, *qs_o;   // (KVQ_ATTN_BATCH, qs_bytes)
} scratch;

// One block of consecutive positions [pos0, pos0 + n): scores (n_batch,
// block), scaled, masked = -INFINITY (the callee may overwrite them); V
// (n, d) decoded values when asked for, or, when vrec is not NULL, the
// value records of the block for a rotated-basis accumulation instead.
typedef void (*chunk_fn)(void *u, const qbatch *b, float *scores, const float *V,
                         const uint8_t *vrec, int32_t pos0, int n);

// fp16 rows of lanes lk/lv whose record 0 is position pos0, positions [lo, hi).
static void walk_f16(kvq_cache *c, const scratch *w, const kvq_lane *lk, const kvq_lane *lv, int pos0,
                     int lo, int hi, const qbatch *b, float scale, bool values, chunk_fn fn, void *u)
{
    size_t d = (size_t)c->d;
    for (int p = lo; p < hi;) {
        int k = hi - p < (int)w->block ? hi - p : (int)w->block;
        kvq_f16_to_f32_fast(kvq_lane_at(lk, (size_t)(p - pos0)), w->blk, (size_t)k * d);
        for (int qi = 0; qi < b->n; qi++) {
            float *sc = w->scores + (size_t)qi * w->block;
            kvq_dot_rows(b->q[qi], w->blk, (size_t)k, d, sc);
            if (p + k - 1 <= b->p[qi]) kvq_scale_f32(sc, (size_t)k, scale);   // all visible
            else
                for (int j = 0; j < k; j++) sc[j] = p + j > b->p[qi] ? -INFINITY : sc[j] * scale;
        }
        if (values) kvq_f16_to_f32_fast(kvq_lane_at(lv, (size_t)(p - pos0)), w->blk, (size_t)k * d);
        fn(u, b, w->scores, w->blk, NULL, p, k);
        p += k;
    }
}

// Records that are plain f16 rows (head_dim IEEE halves, little-endian,
// decoded exactly by a conversion): raw fp16 streams, the fp16 method and
// llamacpp:f16 (ggml's f16 rows; only its encoder's NaN rule differs).
static bool f16_rows(const kvq_codec *k)
{
    return k->raw16 || k->q.m->encode == kvq_fp16_encode || k->q.m->encode == kvq_ggml_f16_encode;
}

static bool rotated_values(const kvq_cache *c, int h)
{
    return !c->vc[h].raw16 && kvq_tq_mse_is(c->vc[h].q.m);
}

// Every visible position <= max(p) of kv head h within [r_lo, r_hi), in
// position order. rot: values of the compressed region go to fn as records
// (rotated accumulation) rather than decoded.
static void walk(kvq_cache *c, const scratch *w, int h, const qbatch *b, bool values, bool rot,
                 int r_lo, int r_hi, chunk_fn fn, void *u)
{
    kvq_head_store *s = &c->hs[h];
    float scale = 1.0f / sqrtf((float)c->d);
    int32_t pmax = -1;
    for (int qi = 0; qi < b->n; qi++)
        if (b->p[qi] > pmax) pmax = b->p[qi];
    int lim = pmax + 1 < c->len ? pmax + 1 : c->len;
    if (r_hi < lim) lim = r_hi;
    if (lim <= r_lo) return;
    int sink_hi = c->n_sink < lim ? c->n_sink : lim;
    if (r_lo < sink_hi) walk_f16(c, w, &s->sink_k, &s->sink_v, 0, r_lo, sink_hi, b, scale, values, fn, u);
    int fv = kvq_cache_first_visible(c, s);
    if (fv < r_lo) fv = r_lo;
    int nc = (int)s->cv.n;
    int lo = fv > s->base ? fv : s->base, hi = s->base + nc < lim ? s->base + nc : lim;
    if (lo < hi) {
        const void *qsp[KVQ_ATTN_BATCH];
        for (int qi = 0; qi < b->n; qi++) {
            qsp[qi] = w->qs_k + (size_t)qi * c->qs_bytes;
            kvq_codec_prepare(&c->kc[h], b->q[qi], w->qs_k + (size_t)qi * c->qs_bytes);
            if (c->outliers) kvq_codec_prepare(&c->oc[h], b->q[qi], w->qs_o + (size_t)qi * c->qs_bytes);
        }
        bool multi = !c->outliers && !c->kc[h].raw16 && kvq_tq_mse_is(c->kc[h].q.m);
        bool raw_k = !c->outliers && f16_rows(&c->kc[h]);
        size_t g = c->group;
        size_t i = (size_t)(lo - s->base) / g * g, end = ((size_t)(hi - s->base) + g - 1) / g * g;
        while (i < end) {
            size_t k = end - i < w->block ? end - i : w->block;
            if (multi)
                kvq_tq_mse_score_multi(c->kc[h].q.plan, qsp, b->n, kvq_lane_at(&s->ck, i), k, w->scores,
                                       w->block);
            else if (raw_k)   // fp16 keys: convert the block once for all queries
                kvq_f16_to_f32_fast(kvq_lane_at(&s->ck, i), w->blk, k * (size_t)c->d);
            const int p0 = s->base + (int)i;   // position of record i
            for (int qi = 0; qi < b->n; qi++) {
                float *sc = w->scores + (size_t)qi * w->block;
                if (raw_k) kvq_dot_rows(b->q[qi], w->blk, k, (size_t)c->d, sc);
                else if (!multi)
                    kvq_comp_keys_score(c, h, w->qs_k + (size_t)qi * c->qs_bytes,
                                        c->outliers ? w->qs_o + (size_t)qi * c->qs_bytes : NULL, i, k, sc);
                if (p0 >= lo && p0 + (int)k <= hi && p0 + (int)k - 1 <= b->p[qi]) {
                    kvq_scale_f32(sc, k, scale);   // all visible: no mask
                    continue;
                }
                for (size_t j = 0; j < k; j++) {
                    int pos = s->base + (int)(i + j);
                    sc[j] = pos < lo || pos >= hi || pos > b->p[qi] ? -INFINITY : sc[j] * scale;
                }
            }
            const uint8_t *vrec = NULL;
            if (values && rot) vrec = kvq_lane_at(&s->cv, i);
            else if (values && f16_rows(&c->vc[h]))
                kvq_f16_to_f32_fast(kvq_lane_at(&s->cv, i), w->blk, k * (size_t)c->d);
            else if (values) kvq_codec_decode(&c->vc[h], kvq_lane_at(&s->cv, i), k, w->blk);
            fn(u, b, w->scores, w->blk, vrec, s->base + (int32_t)i, (int)k);
            i += k;
        }
    }
    int tpos0 = s->base + nc;
    lo = fv > tpos0 ? fv : tpos0;
    if (lo < lim) walk_f16(c, w, &s->tail_k, &s->tail_v, tpos0, lo, lim, b, scale, values, fn, u);
}

// Online softmax state of a batch over one range of positions: running
// max m, sum l, acc (n, d) of decoded values and acc_rot (n, d) of values
// kept in the value method's rotated basis (turboquant_mse). Tasks on
// different threads write neighbouring states of the caller's array every
// block, so each state starts on its own cache line (without this the
// 2-thread tq_mse attention at 64K ran at 1.35x its 1-thread speed).
typedef struct online {
    _Alignas(64) float m[KVQ_ATTN_BATCH];
    double l[KVQ_ATTN_BATCH];
    float acc[KVQ_ATTN_BATCH * KVQ_MAX_HEAD_DIM];
    float acc_rot[KVQ_ATTN_BATCH * KVQ_MAX_HEAD_DIM];
    bool any_rot;
    const void *vplan;   // turboquant_mse value plan when rotated
    bool vperm;          // acc_rot in that plan's permuted order
    int d;
    size_t block;
} online;

// block: the stride of the scores the walk hands over (its scratch's).
static void online_init(online *o, const kvq_cache *c, int h, int n, size_t block)
{
    o->d = c->d;
    o->block = block;
    o->any_rot = false;
    o->vplan = rotated_values(c, h) ? c->vc[h].q.plan : NULL;
    o->vperm = o->vplan && kvq_tq_mse_acc_permuted(o->vplan);
    for (int qi = 0; qi < n; qi++) {
        o->m[qi] = -INFINITY;
        o->l[qi] = 0;
    }
    memset(o->acc, 0, sizeof(float) * (size_t)c->d * (size_t)n);
    memset(o->acc_rot, 0, sizeof(float) * (size_t)c->d * (size_t)n);
}

static void online_update(void *u, const qbatch *b, float *scores, const float *V, const uint8_t *vrec,
                          int32_t pos0, int n)
{
    (void)pos0;
    online *o = u;
    const size_t d = (size_t)o->d;
    for (int qi = 0; qi < b->n; qi++) {
        float *sc = scores + (size_t)qi * o->block;
        float *acc = o->acc + (size_t)qi * d, *accr = o->acc_rot + (size_t)qi * d;
        float bm = kvq_max_f32(sc, (size_t)n);
        if (bm == -INFINITY) {   // nothing visible in this block for this query
            for (int j = 0; j < n; j++) sc[j] = 0.0f;
            continue;
        }
        if (bm > o->m[qi]) {   // rescale what was accumulated under the old max
            float corr = expf(o->m[qi] - bm);
            o->l[qi] *= corr;
            for (size_t t = 0; t < d; t++) acc[t] *= corr;
            if (o->any_rot)
                for (size_t t = 0; t < d; t++) accr[t] *= corr;
            o->m[qi] = bm;
        }
        // scores become the softmax weights (masked: exp(-inf) = 0)
        o->l[qi] += kvq_exp_sub_sum(sc, (size_t)n, o->m[qi]);
        if (!vrec) kvq_axpy_rows(sc, V, (size_t)n, d, acc);
    }
    if (vrec) {
        kvq_tq_mse_accumulate(o->vplan, vrec, (size_t)n, scores, o->block, b->n, o->acc_rot, o->vperm);
        o->any_rot = true;
    }
}

// ---- the fused path, cut into tasks ----
// Task = (kv head, query batch, range of positions). The cut depends on the
// data only (never on the thread count), and partial softmax states are
// merged in a fixed order, so any number of threads gives the same bits.
#define ATTN_MAX_TASKS 8
#define ATTN_RANGE_MIN 4096          // positions per range at the least
#define ATTN_TASK_SCRATCH (160 * 1024)   // head_dim 256 with outlier channels: ~145 KB

typedef struct job {
    kvq_cache *c;
    const float *queries;
    const int32_t *positions;
    int n_q, per, total;       // queries per head, heads per kv head, per * n_q
    int n_batches, n_ranges, lim;
    int pair0;                 // first (kv head, batch) pair of this round
    bool own_scratch;          // tasks use a stack buffer (else c's scratch, serially)
    online *part;              // (tasks) partial states
} job;

static void job_batch(const job *j, int pair, int *h, qbatch *b)
{
    *h = pair / j->n_batches;
    int first = (pair % j->n_batches) * KVQ_ATTN_BATCH;
    b->n = j->total - first < KVQ_ATTN_BATCH ? j->total - first : KVQ_ATTN_BATCH;
    size_t d = (size_t)j->c->d;
    for (int qi = 0; qi < b->n; qi++) {
        int hq = *h * j->per + (first + qi) / j->n_q, i = (first + qi) % j->n_q;
        b->q[qi] = j->queries + ((size_t)hq * (size_t)j->n_q + (size_t)i) * d;
        b->p[qi] = j->positions[i];
    }
}

// A task walks ATTN_BLOCK positions per step (rounded up to the cache's
// group; never fewer than the cache's own block): twice the cache's
// scratch block, which it keeps small because the cache's scratch counts in
// the bytes it holds. Per-step costs (calls, query states, the softmax
// passes' set-up) were 9% of a tq_mse 3/2 decode step's instructions at 32.
#define ATTN_BLOCK 64

static size_t task_block(const kvq_cache *c)
{
    size_t b = (ATTN_BLOCK + c->group - 1) / c->group * c->group;
    return b > c->block ? b : c->block;
}

static size_t task_scratch_bytes(const kvq_cache *c)
{
    size_t qs = c->qs_bytes * KVQ_ATTN_BATCH * (c->outliers ? 2 : 1);
    return sizeof(float) * task_block(c) * ((size_t)c->d + KVQ_ATTN_BATCH) + qs + 64;
}

static void run_task(void *u, int t)
{
    const job *j = u;
    kvq_cache *c = j->c;
    int pair = j->pair0 + t / j->n_ranges, r = t % j->n_ranges, h;
    qbatch b;
    job_batch(j, pair, &h, &b);
    int r_lo = (int)((long long)j->lim * r / j->n_ranges);
    int r_hi = (int)((long long)j->lim * (r + 1) / j->n_ranges);
    // a stack buffer of its own, or (when that would not fit) the cache's
    // scratch, serially
    _Alignas(64) uint8_t buf[ATTN_TASK_SCRATCH];
    scratch w = {c->block, c->blk, c->scores, c->qs_k, c->qs_o};
    if (j->own_scratch) {
        w.block = task_block(c);
        w.blk = (float *)(void *)buf;
        w.scores = w.blk + w.block * (size_t)c->d;
        w.qs_k = (uint8_t *)(w.scores + w.block * KVQ_ATTN_BATCH);
        w.qs_o = w.qs_k + c->qs_bytes * KVQ_ATTN_BATCH;
    }
    online *o = &j->part[t];
    online_init(o, c, h, b.n, w.block);
    walk(c, &w, h, &b, true, o->vplan != NULL, r_lo, r_hi, online_update, o);
}

// Merge the ranges of one pair into out rows (fixed order).
static void merge_pair(const job *j, int pair, const online *parts, float *out)
{
    kvq_cache *c = j->c;
    size_t d = (size_t)c->d;
    int h;
    qbatch b;
    job_batch(j, pair, &h, &b);
    for (int qi = 0; qi < b.n; qi++) {
        float m = -INFINITY;
        for (int r = 0; r < j->n_ranges; r++)
            if (parts[r].m[qi] > m) m = parts[r].m[qi];
        float acc[KVQ_MAX_HEAD_DIM] = {0}, accr[KVQ_MAX_HEAD_DIM] = {0};
        double l = 0;
        bool any_rot = false;
        if (m != -INFINITY)
            for (int r = 0; r < j->n_ranges; r++) {
                const online *o = &parts[r];
                if (o->m[qi] == -INFINITY) continue;
                float f = expf(o->m[qi] - m);
                l += o->l[qi] * f;
                for (size_t t = 0; t < d; t++) acc[t] += f * o->acc[(size_t)qi * d + t];
                if (o->any_rot) {
                    any_rot = true;
                    for (size_t t = 0; t < d; t++) accr[t] += f * o->acc_rot[(size_t)qi * d + t];
                }
            }
        if (any_rot) {   // the one inverse rotation of this query
            float back[KVQ_MAX_HEAD_DIM];
            kvq_tq_mse_unrotate(parts[0].vplan, accr, back, parts[0].vperm);
            for (size_t t = 0; t < d; t++) acc[t] += back[t];
        }
        float inv = l > 0 ? (float)(1.0 / l) : 0.0f;
        int first = (pair % j->n_batches) * KVQ_ATTN_BATCH;
        int hq = h * j->per + (first + qi) / j->n_q, i = (first + qi) % j->n_q;
        float *dst = out + ((size_t)hq * (size_t)j->n_q + (size_t)i) * d;
        for (size_t t = 0; t < d; t++) dst[t] = acc[t] * inv;
    }
}

static void attend_fused(kvq_cache *c, const float *queries, int n_heads, int n_q,
                         const int32_t *positions, float *out)
{
    job j = {.c = c, .queries = queries, .positions = positions, .n_q = n_q};
    j.per = n_heads / c->n_kv_heads;
    j.total = j.per * n_q;
    if (j.total == 0) return;
    j.n_batches = (j.total + KVQ_ATTN_BATCH - 1) / KVQ_ATTN_BATCH;
    int32_t pmax = -1;
    for (int i = 0; i < n_q; i++)
        if (positions[i] > pmax) pmax = positions[i];
    j.lim = pmax + 1 < c->len ? pmax + 1 : c->len;
    if (j.lim < 0) j.lim = 0;
    int pairs = c->n_kv_heads * j.n_batches;
    j.n_ranges = j.lim / ATTN_RANGE_MIN;
    if (j.n_ranges > ATTN_MAX_TASKS / pairs) j.n_ranges = ATTN_MAX_TASKS / pairs;
    if (j.n_ranges < 1) j.n_ranges = 1;
    j.own_scratch = task_scratch_bytes(c) <= ATTN_TASK_SCRATCH;
    int per_round = ATTN_MAX_TASKS / j.n_ranges;
    if (per_round < 1) per_round = 1;
    online part[ATTN_MAX_TASKS];
    j.part = part;
    for (j.pair0 = 0; j.pair0 < pairs; j.pair0 += per_round) {
        int np = pairs - j.pair0 < per_round ? pairs - j.pair0 : per_round;
        if (j.own_scratch) kvq_parallel_for(np * j.n_ranges, run_task, &j);
        else
            for (int t = 0; t < np * j.n_ranges; t++) run_task(&j, t);
        for (int p = 0; p < np; p++) merge_pair(&j, j.pair0 + p, part + p * j.n_ranges, out);
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

static void logit_collect(void *u, const qbatch *b, float *sc, const float *V, const uint8_t *vrec,
                          int32_t pos0, int n)
{
    (void)V;
    (void)vrec;
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
    scratch w = {c->block, c->blk, c->scores, c->qs_k, c->qs_o};
    walk(c, &w, head / (n_heads / c->n_kv_heads), &b, false, false, 0, c->len, logit_collect, &ls);
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
