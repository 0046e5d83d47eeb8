// replay.c — a trace through the caches: prefill, then decode with an attend
// per step, observers attached, exact fp32 attention alongside when the
// attention observer is on.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "replay.h"

struct kvq_replay {
    int n_layers, n_heads, n_kv, d, total, prefill, pos;
    int n_queries;
    float *K, *V;          // (n_layers, n_kv, total, d) original
    float *Q;              // (n_layers, n_heads, n_queries, d) or NULL
    int *qidx;             // (total) query row at each position, -1 when none
    float *kstage, *vstage;   // (n_kv, total, d) staging for append
    float *qstage, *out;   // (n_heads, d)
    float *lhat, *lex;     // (total) logits
    double *sall;          // (total) exact logits of every position
    int32_t *lpos;         // (total)
    float *oex;            // (d)
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
    free(r->K);
    free(r->V);
    free(r->Q);
    free(r->qidx);
    free(r->kstage);
    free(r->vstage);
    free(r->qstage);
    free(r->out);
    free(r->lhat);
    free(r->lex);
    free(r->sall);
    free(r->lpos);
    free(r->oex);
    free(r);
}

static float *stream(const kvq_replay *r, const float *base, int heads, int rows, int l, int h)
{
    return (float *)base + (((size_t)l * (size_t)heads + (size_t)h) * (size_t)rows) * (size_t)r->d;
}

static kvq_status load(kvq_replay *r, const kvq_trace *t)
{
    size_t d = (size_t)r->d, T = (size_t)t->n_tokens;
    float *buf = malloc(sizeof(float) * T * d);
    if (!buf) return kvq_error(KVQ_ERR_NOMEM, "replay: out of memory");
    kvq_status st = KVQ_OK;
    for (int l = 0; l < r->n_layers && !st; l++)
        for (int h = 0; h < r->n_kv && !st; h++) {
            st = kvq_trace_keys(t, l, h, buf);
            if (!st) memcpy(stream(r, r->K, r->n_kv, r->total, l, h), buf, sizeof(float) * (size_t)r->total * d);
            if (!st) st = kvq_trace_values(t, l, h, buf);
            if (!st) memcpy(stream(r, r->V, r->n_kv, r->total, l, h), buf, sizeof(float) * (size_t)r->total * d);
        }
    if (r->Q && !st) {
        for (int l = 0; l < r->n_layers && !st; l++)
            for (int h = 0; h < r->n_heads && !st; h++)
                st = kvq_trace_queries(t, l, h, stream(r, r->Q, r->n_heads, r->n_queries, l, h));
    }
    free(buf);
    return st;
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
    r->n_layers = t->n_layers;
    r->n_heads = t->n_heads;
    r->n_kv = t->n_kv_heads;
    r->d = t->head_dim;
    r->total = o->seq_len ? o->seq_len : t->n_tokens;
    r->prefill = r->total / 2;
    r->n_queries = t->n_queries;
    size_t d = (size_t)r->d, T = (size_t)r->total, NL = (size_t)r->n_layers;
    size_t kv = NL * (size_t)r->n_kv * T * d;
    r->K = malloc(sizeof(float) * kv);
    r->V = malloc(sizeof(float) * kv);
    if (r->n_queries) r->Q = malloc(sizeof(float) * NL * (size_t)r->n_heads * (size_t)r->n_queries * d);
    r->qidx = malloc(sizeof(int) * T);
    r->kstage = malloc(sizeof(float) * (size_t)r->n_kv * T * d);
    r->vstage = malloc(sizeof(float) * (size_t)r->n_kv * T * d);
    r->qstage = malloc(sizeof(float) * (size_t)r->n_heads * d);
    r->out = malloc(sizeof(float) * (size_t)r->n_heads * d);
    r->lhat = malloc(sizeof(float) * T);
    r->lex = malloc(sizeof(float) * T);
    r->sall = malloc(sizeof(double) * T);
    r->lpos = malloc(sizeof(int32_t) * T);
    r->oex = malloc(sizeof(float) * d);
    if (!r->K || !r->V || (r->n_queries && !r->Q) || !r->qidx || !r->kstage || !r->vstage ||
        !r->qstage || !r->out || !r->lhat || !r->lex || !r->sall || !r->lpos || !r->oex) {
        kvq_replay_free(r);
        return kvq_error(KVQ_ERR_NOMEM, "replay: out of memory");
    }
    for (size_t i = 0; i < T; i++) r->qidx[i] = -1;
    for (int i = 0; i < r->n_queries; i++) {
        int32_t p = t->query_positions[i];
        if (p >= 0 && (size_t)p < T) r->qidx[p] = i;
    }
    kvq_observers_opts oo = o->obs;
    if (!r->n_queries) oo.which &= ~(unsigned)KVQ_OBS_ATTENTION;
    kvq_status st = load(r, t);
    if (!st) st = kvq_cache_set_new(cfg, art, r->n_layers, r->n_kv, r->d, &r->caches);
    if (!st) st = kvq_observers_new(&oo, r->n_layers, r->n_kv, r->d, &r->obs);
    if (st) {
        kvq_replay_free(r);
        return st;
    }
    kvq_cache_set_attach(r->caches, r->obs);
    *out = r;
    return KVQ_OK;
}

// Append positions [p0, p0+n) of every kv head of layer l.
static kvq_status append(kvq_replay *r, int l, int p0, int n)
{
    size_t d = (size_t)r->d, rows = (size_t)n * d;
    for (int h = 0; h < r->n_kv; h++) {
        memcpy(r->kstage + (size_t)h * rows, stream(r, r->K, r->n_kv, r->total, l, h) + (size_t)p0 * d,
               sizeof(float) * rows);
        memcpy(r->vstage + (size_t)h * rows, stream(r, r->V, r->n_kv, r->total, l, h) + (size_t)p0 * d,
               sizeof(float) * rows);
    }
    return kvq_cache_append(r->caches->layers[l], r->kstage, r->vstage, n);
}

// Exact attention of q at position p over the original keys 0..p (the
// computation of kvq_attend_f32, keeping the logits): logits (p+1), out (d).
static void exact(const kvq_replay *r, const float *q, const float *K, const float *V, int p, double *logits,
                  float *out)
{
    size_t d = (size_t)r->d;
    double scale = 1.0 / sqrt((double)r->d), m = -INFINITY, l = 0, acc[KVQ_MAX_HEAD_DIM] = {0};
    for (int i = 0; i <= p; i++) {
        const float *k = K + (size_t)i * d;
        double s = 0;
        for (size_t t = 0; t < d; t++) s += (double)q[t] * k[t];
        logits[i] = s * scale;
        if (logits[i] > m) m = logits[i];
    }
    for (int i = 0; i <= p; i++) {
        double w = exp(logits[i] - m);
        const float *v = V + (size_t)i * d;
        l += w;
        for (size_t t = 0; t < d; t++) acc[t] += w * v[t];
    }
    for (size_t t = 0; t < d; t++) out[t] = (float)(acc[t] / l);
}

// The decode query at position p of layer l through the cache, and against
// exact attention when the attention observer is on.
static kvq_status attend(kvq_replay *r, int l, int p)
{
    int qi = r->qidx[p];
    if (qi < 0) return KVQ_OK;
    size_t d = (size_t)r->d;
    for (int h = 0; h < r->n_heads; h++)
        memcpy(r->qstage + (size_t)h * d, stream(r, r->Q, r->n_heads, r->n_queries, l, h) + (size_t)qi * d,
               sizeof(float) * d);
    kvq_cache *c = r->caches->layers[l];
    int32_t pos = p;
    kvq_status st = kvq_cache_attend(c, r->qstage, r->n_heads, 1, &pos, r->out);
    if (st || !(kvq_observers_which(r->obs) & KVQ_OBS_ATTENTION)) return st;
    int per = r->n_heads / r->n_kv;
    for (int h = 0; h < r->n_heads && !st; h++) {
        const float *q = r->qstage + (size_t)h * d;
        const float *K = stream(r, r->K, r->n_kv, r->total, l, h / per);
        const float *V = stream(r, r->V, r->n_kv, r->total, l, h / per);
        exact(r, q, K, V, p, r->sall, r->oex);
        int n = 0;
        st = kvq_cache_logits(c, q, h, r->n_heads, p, r->lhat, r->lpos, &n);
        for (int i = 0; i < n && !st; i++) r->lex[i] = (float)r->sall[r->lpos[i]];
        if (!st) kvq_observe_attention(r->obs, l, r->oex, r->out + (size_t)h * d, r->lex, r->lhat, n);
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
            if (!st && r->Q) st = attend(r, l, r->pos);
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
    kvq_observers_report(r->obs, &s->report);
}
