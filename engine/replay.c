// replay.c — a trace through the caches: prefill, then decode with an attend
// per step, observers attached, exact fp32 attention alongside when the
// attention observer is on.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "replay.h"
#include "pool.h"
#include "rng.h"
#include "simd.h"

#define EXACT_BLOCK 128   // rows of keys/values converted at a time: 64 KB at head_dim 128

struct kvq_replay {
    kvq_trace *t;          // a reference (kvq_trace_ref), read row by row from its mapping, never copied whole
    int n_layers, n_heads, n_kv, d, total, prefill, pos;
    int n_queries;
    int attn_stride;       // every attn_stride-th query of a (layer, kv head) is compared exactly
    long long attn_pairs_total;  // exact (query, key) pairs over every query of a full replay
    uint64_t attn_seed;
    long attn_queries;     // query heads attended through the cache
    unsigned char *keep;   // (n_kv) this step's sampled groups
    int *qidx;             // (total) query row at each position, -1 when none
    float *kstage, *vstage;   // (n_kv, prefill, d) staging for append
    float *qstage, *out;   // (n_heads, d)
    int n_par;             // exact-attention tasks, each over kv heads g = task, task + n_par, ...
    float *kx;             // (n_par, EXACT_BLOCK, d) one block of a task's original keys or values
    float *wx;             // (n_par, per, total) exact weights
    float *sx;             // (n_heads, total) exact logits of every query head
    float *ox;             // (n_heads, d) exact outputs
    kvq_status *tst;       // (n_par) a task's read status
    float *lhat, *lex;     // (total) logits
    int32_t *lpos;         // (total)
    kvq_cache_set *caches;
    kvq_observers *obs;
};

void kvq_replay_opts_default(kvq_replay_opts *o)
{
    memset(o, 0, sizeof *o);
    kvq_observers_opts_default(&o->obs);
}

void kvq_replay_free(kvq_replay *r)
{
    if (!r) return;
    kvq_cache_set_free(r->caches);
    kvq_observers_free(r->obs);
    kvq_trace_free(r->t);
    free(r->qidx);
    free(r->kstage);
    free(r->vstage);
    free(r->qstage);
    free(r->out);
    free(r->kx);
    free(r->sx);
    free(r->wx);
    free(r->ox);
    free(r->tst);
    free(r->keep);
    free(r->lhat);
    free(r->lex);
    free(r->lpos);
    free(r);
}

kvq_status kvq_replay_new(const kvq_trace *t, const kvq_config *cfg, const kvq_artifacts *art,
                          const kvq_replay_opts *o, kvq_replay **out)
{
    *out = NULL;
    kvq_replay_opts def;
    if (!o) {
        kvq_replay_opts_default(&def);
        o = &def;
    }
    kvq_status cs = kvq_check_shape("replay", t->path, t->n_layers, t->n_kv_heads, t->head_dim);   // acc[]
    if (cs) return cs;
    if (!t->has_values)
        return kvq_error(KVQ_ERR_FORMAT, "%s: replay needs values (the trace has keys only)", t->path);
    if (o->seq_len < 0 || o->seq_len > t->n_tokens)
        return kvq_error(KVQ_ERR_ARG, "replay: seq_len %d (expected 0..%d, the trace's tokens)", o->seq_len,
                         t->n_tokens);
    kvq_replay *r = calloc(1, sizeof *r);
    if (!r) return kvq_error(KVQ_ERR_NOMEM, "replay: out of memory");
    r->t = kvq_trace_ref(t);
    r->n_layers = t->n_layers;
    r->n_heads = t->n_heads;
    r->n_kv = t->n_kv_heads;
    r->d = t->head_dim;
    r->total = o->seq_len ? o->seq_len : t->n_tokens;
    r->prefill = r->total / 2;
    r->n_queries = t->n_queries;
    size_t d = (size_t)r->d, T = (size_t)r->total, per = (size_t)(r->n_heads / r->n_kv);
    size_t stage = (size_t)r->n_kv * (size_t)(r->prefill > 1 ? r->prefill : 1) * d;
    r->qidx = malloc(sizeof(int) * T);
    r->kstage = malloc(sizeof(float) * stage);
    r->vstage = malloc(sizeof(float) * stage);
    r->qstage = malloc(sizeof(float) * (size_t)r->n_heads * d);
    r->out = malloc(sizeof(float) * (size_t)r->n_heads * d);
    r->lhat = malloc(sizeof(float) * T);
    r->lex = malloc(sizeof(float) * T);
    r->lpos = malloc(sizeof(int32_t) * T);
    if (r->n_queries) {
        r->n_par = kvq_threads() < r->n_kv ? kvq_threads() : r->n_kv;
        size_t np = (size_t)r->n_par, nh = (size_t)r->n_heads;
        r->kx = malloc(sizeof(float) * np * EXACT_BLOCK * d);
        r->wx = malloc(sizeof(float) * np * per * T);
        r->sx = malloc(sizeof(float) * nh * T);
        r->ox = malloc(sizeof(float) * nh * d);
        r->tst = calloc(np, sizeof *r->tst);
        r->keep = calloc((size_t)r->n_kv, 1);
    }
    if (!r->qidx || !r->kstage || !r->vstage || !r->qstage || !r->out || !r->lhat || !r->lex || !r->lpos ||
        (r->n_queries && (!r->keep || !r->kx || !r->sx || !r->wx || !r->ox || !r->tst))) {
        kvq_replay_free(r);
        return kvq_error(KVQ_ERR_NOMEM, "replay: out of memory");
    }
    for (size_t i = 0; i < T; i++) r->qidx[i] = -1;
    for (int i = 0; i < r->n_queries; i++) {
        int32_t p = t->query_positions[i];
        if (p >= 0 && (size_t)p < T) r->qidx[p] = i;
    }
    for (size_t p = (size_t)r->prefill; p < T; p++)
        if (r->qidx[p] >= 0) r->attn_pairs_total += (long long)(p + 1) * r->n_heads * r->n_layers;
    long long budget = o->attn_pairs ? o->attn_pairs : KVQ_REPLAY_ATTN_PAIRS;
    // the smallest stride that keeps the pairs within the budget
    r->attn_stride = budget > 0 && r->attn_pairs_total > budget
                         ? (int)((r->attn_pairs_total + budget - 1) / budget) : 1;
    r->attn_seed = o->obs.seed;
    kvq_observers_opts oo = o->obs;
    if (!r->n_queries) oo.which &= ~(unsigned)KVQ_OBS_ATTENTION;
    kvq_status st = kvq_cache_set_new(cfg, art, r->n_layers, r->n_kv, r->d, &r->caches);
    if (!st) st = kvq_observers_new(&oo, r->n_layers, r->n_kv, r->d, &r->obs);
    if (st) {
        kvq_replay_free(r);
        return st;
    }
    kvq_cache_set_attach(r->caches, r->obs);
    *out = r;
    return KVQ_OK;
}

// Append positions [p0, p0+n) of every kv head of layer l, read from the trace.
static kvq_status append(kvq_replay *r, int l, int p0, int n)
{
    size_t rows = (size_t)n * (size_t)r->d;
    kvq_status st = KVQ_OK;
    for (int h = 0; h < r->n_kv && !st; h++) {
        st = kvq_trace_rows(r->t, KVQ_STREAM_KEYS, l, h, p0, n, r->kstage + (size_t)h * rows);
        if (!st) st = kvq_trace_rows(r->t, KVQ_STREAM_VALUES, l, h, p0, n, r->vstage + (size_t)h * rows);
    }
    return st ? st : kvq_cache_append(r->caches->layers[l], r->kstage, r->vstage, n);
}

// Exact fp32 attention of the query heads of kv head g at position p over
// the original keys and values 0..p, through the SIMD row kernels (a scalar
// double loop here was most of a replay; OpenBLAS sgemm at 4 rows spent it
// spinning its threads). q: (n_heads, d); logits into sx, outputs into ox.
// Keys, then values, are converted EXACT_BLOCK rows at a time into a buffer
// that stays in L2 and serves all the group's query heads: converting 0..p
// whole and re-reading the f32 copy once per query head went to memory.
// The result is bit-identical to the whole-prefix form: dot rows are
// independent, and the axpy accumulators carry over blocks in row order.
static kvq_status exact(kvq_replay *r, int task, int l, int g, int p, const float *q)
{
    size_t d = (size_t)r->d, n = (size_t)p + 1, T = (size_t)r->total;
    int per = r->n_heads / r->n_kv;
    float *kx = r->kx + (size_t)task * EXACT_BLOCK * d, scale = 1.0f / sqrtf((float)d);
    kvq_status st = KVQ_OK;
    for (size_t b = 0; b < n && !st; b += EXACT_BLOCK) {
        size_t nb = n - b < EXACT_BLOCK ? n - b : EXACT_BLOCK;
        st = kvq_trace_rows(r->t, KVQ_STREAM_KEYS, l, g, (int)b, (int)nb, kx);
        for (int j = 0; j < per && !st; j++) {
            size_t h = (size_t)(g * per + j);
            kvq_dot_rows(q + h * d, kx, nb, d, r->sx + h * T + b);
        }
    }
    for (int j = 0; j < per && !st; j++) {
        size_t h = (size_t)(g * per + j);
        float *s = r->sx + h * T, *w = r->wx + ((size_t)task * (size_t)per + (size_t)j) * T;
        float m = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            s[i] *= scale;
            m = s[i] > m ? s[i] : m;
        }
        for (size_t i = 0; i < n; i++) w[i] = s[i] - m;
        kvq_exp_inplace(w, n);
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += w[i];
        float inv = (float)(1.0 / sum);
        for (size_t i = 0; i < n; i++) w[i] *= inv;
        memset(r->ox + h * d, 0, sizeof(float) * d);
    }
    for (size_t b = 0; b < n && !st; b += EXACT_BLOCK) {
        size_t nb = n - b < EXACT_BLOCK ? n - b : EXACT_BLOCK;
        st = kvq_trace_rows(r->t, KVQ_STREAM_VALUES, l, g, (int)b, (int)nb, kx);
        for (int j = 0; j < per && !st; j++) {
            size_t h = (size_t)(g * per + j);
            kvq_axpy_rows(r->wx + ((size_t)task * (size_t)per + (size_t)j) * T + b, kx, nb, d, r->ox + h * d);
        }
    }
    return st;
}

// Whether group (l, p, g) is in the seeded sample: a systematic sample,
// every attn_stride-th query row of each (layer, kv head) from a seeded
// offset (splitmix64 of the seed, layer and kv head). Every layer and head
// then gets the same share, spread evenly over positions: a Bernoulli sample
// of groups at the same rate moved the S1 KL figure by 2%.
static bool sampled(const kvq_replay *r, int l, int p, int g)
{
    if (r->attn_stride <= 1) return true;
    uint64_t z = kvq_rng_hash(r->attn_seed ^ ((uint64_t)(uint32_t)l << 32 | (uint64_t)(uint32_t)g));
    return ((uint64_t)r->qidx[p] + z % (uint64_t)r->attn_stride) % (uint64_t)r->attn_stride == 0;
}

typedef struct { kvq_replay *r; int l, p; } exact_job;

// Task t of the pool: kv heads t, t + n_par, ... (each writes only its own
// heads' rows of sx and ox, so the thread count does not change a bit).
static void exact_task(void *ctx, int task)
{
    exact_job *j = ctx;
    kvq_status st = KVQ_OK;
    for (int g = task; g < j->r->n_kv && !st; g += j->r->n_par)
        if (j->r->keep[g]) st = exact(j->r, task, j->l, g, j->p, j->r->qstage);
    j->r->tst[task] = st;
}

// The decode query at position p of layer l through the cache, and against
// exact attention when the attention observer is on.
static kvq_status attend(kvq_replay *r, int l, int p)
{
    int qi = r->qidx[p];
    if (qi < 0) return KVQ_OK;
    size_t d = (size_t)r->d, T = (size_t)r->total;
    kvq_status st = KVQ_OK;
    for (int h = 0; h < r->n_heads && !st; h++)
        st = kvq_trace_rows(r->t, KVQ_STREAM_QUERIES, l, h, qi, 1, r->qstage + (size_t)h * d);
    if (st) return st;
    kvq_cache *c = r->caches->layers[l];
    int32_t pos = p;
    st = kvq_cache_attend(c, r->qstage, r->n_heads, 1, &pos, r->out);
    if (!st) r->attn_queries += r->n_heads;
    if (st || !(kvq_observers_which(r->obs) & KVQ_OBS_ATTENTION)) return st;
    int any = 0, per = r->n_heads / r->n_kv;
    for (int g = 0; g < r->n_kv; g++) any += r->keep[g] = sampled(r, l, p, g);
    if (!any) return KVQ_OK;
    exact_job job = {r, l, p};
    kvq_parallel_for(r->n_par, exact_task, &job);
    for (int t = 0; t < r->n_par; t++)
        if (r->tst[t]) return r->tst[t];
    // the cache's logits use its own scratch: one head at a time, in head order
    for (int h = 0; h < r->n_heads && !st; h++) {
        if (!r->keep[h / per]) continue;
        int n = 0;
        st = kvq_cache_logits(c, r->qstage + (size_t)h * d, h, r->n_heads, p, r->lhat, r->lpos, &n);
        const float *sx = r->sx + (size_t)h * T;
        for (int i = 0; i < n && !st; i++) r->lex[i] = sx[r->lpos[i]];
        if (!st) kvq_observe_attention(r->obs, l, r->ox + (size_t)h * d, r->out + (size_t)h * d, r->lex, r->lhat, n);
    }
    return st;
}

kvq_status kvq_replay_step(kvq_replay *r, int n_tokens)
{
    if (!r || n_tokens < 1) return kvq_error(KVQ_ERR_ARG, "replay step: n_tokens %d (expected >= 1)", n_tokens);
    if (r->pos == 0 && r->prefill > 0) {
        for (int l = 0; l < r->n_layers; l++) {
            kvq_status st = append(r, l, 0, r->prefill);
            if (st) return st;
        }
        r->pos = r->prefill;
        n_tokens -= r->prefill;
    }
    for (; n_tokens > 0 && r->pos < r->total; n_tokens--) {
        for (int l = 0; l < r->n_layers; l++) {
            kvq_status st = append(r, l, r->pos, 1);
            if (!st && r->n_queries) st = attend(r, l, r->pos);
            if (st) return st;
        }
        r->pos++;
    }
    return KVQ_OK;
}

kvq_status kvq_replay_run(kvq_replay *r, kvq_progress *p)
{
    kvq_progress_begin(p);
    while (r->pos < r->total) {
        if (kvq_progress_report(p, (double)r->pos / r->total, r->pos < r->prefill ? "prefill" : "decode"))
            return kvq_error(KVQ_ERR_CANCELLED, "replay cancelled at token %d of %d", r->pos, r->total);
        kvq_status st = kvq_replay_step(r, r->pos == 0 ? r->prefill + 8 : 8);
        if (st) return st;
    }
    kvq_progress_report(p, 1.0, "done");
    return KVQ_OK;
}

void kvq_replay_restart(kvq_replay *r, unsigned keep)
{
    kvq_cache_set_reset(r->caches);
    kvq_observers_reset(r->obs, KVQ_OBS_ALL & ~keep);
    r->pos = 0;
    r->attn_queries = 0;
}

int kvq_replay_pos(const kvq_replay *r) { return r->pos; }
int kvq_replay_total(const kvq_replay *r) { return r->total; }
bool kvq_replay_done(const kvq_replay *r) { return r->pos >= r->total; }
kvq_cache_set *kvq_replay_caches(kvq_replay *r) { return r->caches; }
kvq_observers *kvq_replay_observers(kvq_replay *r) { return r->obs; }

void kvq_replay_snapshot_get(const kvq_replay *r, kvq_replay_snapshot *s)
{
    memset(s, 0, sizeof *s);
    s->pos = r->pos;
    s->total = r->total;
    s->n_layers = r->n_layers;
    s->bytes = kvq_cache_set_bytes(r->caches);
    for (int l = 0; l < r->n_layers; l++)
        s->fp16_bytes += (size_t)kvq_cache_visible(r->caches->layers[l]) * (size_t)r->n_kv * (size_t)r->d * 4;
    for (int l = 0; l < r->n_layers; l++) {
        s->key_bpc += 8.0 * (double)kvq_cache_key_bpv(r->caches->layers[l]) / r->d / r->n_layers;
        s->value_bpc += 8.0 * (double)kvq_cache_value_bpv(r->caches->layers[l]) / r->d / r->n_layers;
    }
    s->attn_queries = r->attn_queries;
    s->attn_rate = 1.0 / r->attn_stride;
    s->attn_pairs_total = r->attn_pairs_total;
    kvq_observers_report(r->obs, &s->report);
}
