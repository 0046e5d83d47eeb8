// quantreport.c — the measurement behind `kvstudio quantize` (definitions
// in quantreport.h). One pass per (layer, kv head): keys are encoded,
// decoded and scored against the sampled queries of the query heads that
// share them; values are encoded and decoded.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "pool.h"
#include "quantreport.h"
#include "rng.h"

#define QR_DEFAULT_QUERIES 64

void kvq_quantreport_opts_default(kvq_quantreport_opts *o)
{
    memset(o, 0, sizeof *o);
    o->queries_per_head = QR_DEFAULT_QUERIES;
    o->max_pairs = KVQ_QR_MAX_PAIRS;
}

// Running sums of one scope (a layer, or everything).
typedef struct {
    double rel_se, cos, bytes, coords, side;
    long n, n_vec; // n: vectors with x != 0 (the means' denominator)
} acc_stream;

typedef struct {
    double err2, ref2;
    long n;
} acc_ip;

static void acc_stream_add(acc_stream *a, const acc_stream *b)
{
    a->rel_se += b->rel_se, a->cos += b->cos, a->bytes += b->bytes, a->coords += b->coords;
    a->side += b->side;
    a->n += b->n, a->n_vec += b->n_vec;
}

static void stream_finish(const acc_stream *a, kvq_quantreport_stream *s)
{
    s->n_vectors = a->n_vec;
    s->bytes = a->bytes;
    s->coords = a->coords;
    s->bits_per_coord = a->coords > 0 ? a->bytes * 8.0 / a->coords : NAN;
    s->side_bytes = a->side;
    s->bits_per_coord_with_side = a->coords > 0 ? (a->bytes + a->side) * 8.0 / a->coords : NAN;
    s->relative_mse = a->n ? a->rel_se / (double)a->n : NAN;
    s->cosine = a->n ? a->cos / (double)a->n : NAN;
}

static double ip_finish(const acc_ip *a)
{
    if (!a->n) return NAN;
    return a->ref2 > 0 ? sqrt(a->err2 / a->ref2) : (a->err2 > 0 ? INFINITY : 0.0);
}

// Encodes x (n, d) with q and decodes into xhat (n, d). Whole groups go
// through the method; the tail past the last full group is held as fp16.
// codes: (n, q->bpv) scratch. Returns the number of vectors encoded.
static size_t stream_code(const kvq_quantizer *q, const float *x, int n, uint8_t *codes,
                          float *xhat, acc_stream *a)
{
    const int d = q->head_dim;
    const size_t n_enc = (size_t)n / q->group * q->group;
    if (n_enc) {
        q->m->encode(q->plan, x, n_enc, codes);
        q->m->decode(q->plan, codes, n_enc, xhat);
    }
    for (size_t i = n_enc * (size_t)d; i < (size_t)n * (size_t)d; i++)
        xhat[i] = kvq_f16_to_f32(kvq_f32_to_f16(x[i]));
    a->bytes += (double)n_enc * (double)q->bpv + (double)((size_t)n - n_enc) * 2.0 * d;
    a->side += (double)q->side;   // one plan per stream
    a->coords += (double)n * d;
    a->n_vec += n;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d, *yi = xhat + (size_t)i * d;
        double xx = 0, yy = 0, xy = 0, ee = 0;
        for (int j = 0; j < d; j++) {
            const double e = (double)xi[j] - yi[j];
            xx += (double)xi[j] * xi[j];
            yy += (double)yi[j] * yi[j];
            xy += (double)xi[j] * yi[j];
            ee += e * e;
        }
        if (xx <= 0) continue;
        a->rel_se += ee / xx;
        a->cos += yy > 0 ? xy / sqrt(xx * yy) : 0.0;
        a->n++;
    }
    return n_enc;
}

// One (query, key) pair into the q.k error sums: score is the method's
// estimate from the codes, or NULL for a key held in fp16 (khat row ht:
// the fp16 tail of a grouped method).
static void ip_add(acc_ip *a, const float *qv, const float *kt, const float *ht, const float *score, int d)
{
    double s = 0, s_hat = 0;
    for (int j = 0; j < d; j++) s += (double)qv[j] * kt[j];
    if (score) s_hat = *score;
    else
        for (int j = 0; j < d; j++) s_hat += (double)qv[j] * ht[j];
    a->err2 += (s_hat - s) * (s_hat - s);
    a->ref2 += s * s;
    a->n++;
}

// The sampled queries of one query head against the causal prefix of the
// keys. qrows: (n_queries, d); sel: (n_sel) rows to use, positions < n.
static void stream_score(const kvq_quantizer *q, const float *keys, const float *khat,
                         const uint8_t *codes, size_t n_enc, const float *qrows, const int *sel,
                         int n_sel, const int32_t *pos, float *scores, void *qstate, acc_ip *a)
{
    const int d = q->head_dim;
    for (int k = 0; k < n_sel; k++) {
        const float *qv = qrows + (size_t)sel[k] * d;
        const size_t nk = (size_t)pos[sel[k]] + 1;
        size_t n_score = (nk + q->group - 1) / q->group * q->group; // whole groups
        if (n_score > n_enc) n_score = n_enc;
        if (n_score) {
            q->m->prepare_query(q->plan, qv, qstate);
            q->m->score(q->plan, qstate, codes, n_score, scores);
        }
        for (size_t t = 0; t < nk; t++) {
            ip_add(a, qv, keys + t * d, khat + t * d, t < n_enc ? &scores[t] : NULL, d);
        }
    }
}

// Evenly spaced query rows among those whose position is < n.
static int select_queries(const kvq_trace *t, int n, int want, int *sel)
{
    int nc = 0;
    for (int i = 0; i < t->n_queries; i++)
        if (t->query_positions[i] >= 0 && t->query_positions[i] < n) sel[nc++] = i;
    if (want <= 0 || want >= nc) return nc;
    for (int k = 0; k < want; k++) sel[k] = sel[(int)(((2 * (long)k + 1) * nc) / (2 * (long)want))];
    return want;
}

// A seeded sample of the causal pairs of one query row, for traces whose
// pairs exceed max_pairs: units are method groups (one vector for most
// methods), drawn uniformly with replacement from the row's causal prefix,
// about rate x the prefix's units per row, so the sample is uniform over all
// pairs. Drawn encoded units are gathered and scored with one score() call.
// units, gidx: (n / group + 1); gcodes: (n + group) x bpv bytes.
static void stream_score_sampled(const kvq_quantizer *q, const float *keys, const float *khat,
                                 const uint8_t *codes, size_t n_enc, const float *qv, size_t nk,
                                 double rate, kvq_rng *rng, size_t *units, long *gidx,
                                 uint8_t *gcodes, float *scores, void *qstate, acc_ip *a)
{
    const int d = q->head_dim;
    const size_t G = q->group, rec = G * q->bpv, n_units = (nk + G - 1) / G;
    // every unit is drawn rate times on average, so every pair is too (a
    // partial last group holds fewer pairs but is as likely as the others)
    size_t m = (size_t)(rate * (double)n_units + kvq_rng_uniform(rng)); // unbiased rounding
    if (m > n_units) m = n_units;
    size_t ng = 0;
    for (size_t i = 0; i < m; i++) {
        size_t u = (size_t)(kvq_rng_uniform(rng) * (double)n_units);
        if (u >= n_units) u = n_units - 1;
        units[i] = u;
        gidx[i] = -1;
        if ((u + 1) * G <= n_enc) {
            memcpy(gcodes + ng * rec, codes + u * rec, rec);
            gidx[i] = (long)ng++;
        }
    }
    if (ng) {
        q->m->prepare_query(q->plan, qv, qstate);
        q->m->score(q->plan, qstate, gcodes, ng * G, scores);
    }
    for (size_t i = 0; i < m; i++) {
        const size_t t0 = units[i] * G, t1 = t0 + G < nk ? t0 + G : nk;
        for (size_t t = t0; t < t1; t++) {
            ip_add(a, qv, keys + t * d, khat + t * d, gidx[i] >= 0 ? &scores[(size_t)gidx[i] * G + (t - t0)] : NULL, d);
        }
    }
}

typedef struct {
    float *x, *xhat, *qrows, *scores;
    uint8_t *codes, *gcodes;
    size_t codes_cap;
    void *qstate;
    size_t qstate_cap;
    size_t *units;
    long *gidx;
} qr_bufs;

static void bufs_free(qr_bufs *b)
{
    free(b->x), free(b->xhat), free(b->qrows), free(b->scores), free(b->codes), free(b->qstate);
    free(b->gcodes), free(b->units), free(b->gidx);
}

static kvq_status bufs_fit(qr_bufs *b, const kvq_quantizer *q, int n)
{
    const size_t need = ((size_t)n + q->group) * q->bpv;
    if (need > b->codes_cap) {
        free(b->codes), free(b->gcodes);
        b->codes = malloc(need);
        b->gcodes = malloc(need);
        b->codes_cap = b->codes && b->gcodes ? need : 0;
    }
    if (q->qbytes > b->qstate_cap) {
        free(b->qstate);
        b->qstate = malloc(q->qbytes);
        b->qstate_cap = b->qstate ? q->qbytes : 0;
    }
    if ((need && !b->codes_cap) || (q->qbytes && !b->qstate))
        return kvq_error(KVQ_ERR_NOMEM, "quantize: cannot allocate %zu bytes of codes", need);
    return KVQ_OK;
}

// One layer: every kv head a task on the pool, with its own buffers and
// sums (combined in head order by the caller: same result on any thread
// count). Sampling draws from a stream seeded by (layer, query head).
typedef struct {
    const kvq_trace *t;
    const kvq_config *cfg;
    const kvq_artifacts *art;
    const char *vmethod;
    int layer, key_bits, n;
    bool fp16_values;
    const int *sel;          // (n_sel) query rows
    int n_sel;
    double rate;             // fraction of causal pairs sampled; 0 = all
    acc_stream *ak, *av;     // (n_kv_heads)
    acc_ip *aip;             // (n_kv_heads)
    kvq_status *rc;          // (n_kv_heads)
    char (*err)[1024];       // (n_kv_heads): kvq_last_error() is per thread
} qr_layer;

// Keys of one (layer, kv head): code, then score for every query head on it.
static kvq_status layer_keys(const qr_layer *j, const kvq_plan_params *pp, qr_bufs *b, acc_stream *ak,
                             acc_ip *aip)
{
    const kvq_trace *t = j->t;
    const int n = j->n;
    kvq_quantizer q;
    kvq_status s = kvq_quantizer_init(&q, j->cfg->method, pp);
    if (s) return s;
    if (!(s = bufs_fit(b, &q, n)) && !(s = kvq_trace_keys(t, pp->layer, pp->kv_head, b->x))) {
        const size_t n_enc = stream_code(&q, b->x, n, b->codes, b->xhat, ak);
        const int per_kv = t->n_heads / t->n_kv_heads;
        for (int h = pp->kv_head * per_kv; j->n_sel && h < (pp->kv_head + 1) * per_kv; h++) {
            if ((s = kvq_trace_queries(t, pp->layer, h, b->qrows))) break;
            if (j->rate <= 0) {
                stream_score(&q, b->x, b->xhat, b->codes, n_enc, b->qrows, j->sel, j->n_sel,
                             t->query_positions, b->scores, b->qstate, aip);
                continue;
            }
            kvq_rng rng;
            kvq_rng_seed2(&rng, KVQ_QR_SAMPLE_SEED, ((uint64_t)pp->layer << 32) | (uint64_t)h);
            for (int k = 0; k < j->n_sel; k++)
                stream_score_sampled(&q, b->x, b->xhat, b->codes, n_enc, b->qrows + (size_t)j->sel[k] * t->head_dim,
                                     (size_t)t->query_positions[j->sel[k]] + 1, j->rate, &rng, b->units,
                                     b->gidx, b->gcodes, b->scores, b->qstate, aip);
        }
    }
    kvq_quantizer_free(&q);
    return s;
}

static kvq_status layer_values(const qr_layer *j, const kvq_plan_params *pp, qr_bufs *b, acc_stream *av)
{
    kvq_quantizer q;
    kvq_status s = kvq_quantizer_init(&q, j->vmethod, pp);
    if (s) return s;
    if (!(s = bufs_fit(b, &q, j->n)) && !(s = kvq_trace_values(j->t, pp->layer, pp->kv_head, b->x)))
        stream_code(&q, b->x, j->n, b->codes, b->xhat, av);
    kvq_quantizer_free(&q);
    return s;
}

// A figure that comes out inf/NaN where it was measured (vectors held,
// pairs scored) is an error naming it, never a number printed with exit 0.
static kvq_status stream_finite(const kvq_trace *t, const kvq_quantreport_stream *st, const char *where,
                                const char *stream)
{
    if (st->n_vectors <= 0) return KVQ_OK;   // not measured (a trace without values): NaN by contract
    const char *bad = !isfinite(st->relative_mse) ? "relative_mse" : !isfinite(st->cosine) ? "cosine" : NULL;
    if (!bad) return KVQ_OK;
    return kvq_error(KVQ_ERR_NUMERIC, "%s %s: %s is %s: the values of %s are too large for float arithmetic "
                     "(or the method's artifacts are)", where, stream, bad,
                     kvq_nonfinite_name(!isfinite(st->relative_mse) ? st->relative_mse : st->cosine), t->path);
}

static kvq_status report_finite(const kvq_trace *t, const kvq_quantreport *r)
{
    kvq_status s = KVQ_OK;
    char where[32];
    for (int i = 0; i < r->n_layers && !s; i++) {
        const kvq_quantreport_layer *ly = &r->layers[i];
        snprintf(where, sizeof where, "layer %d", ly->layer);
        if ((s = stream_finite(t, &ly->keys, where, "keys")) || (s = stream_finite(t, &ly->values, where, "values")))
            break;
        if (ly->n_pairs > 0 && !isfinite(ly->ip_relative_error))
            s = kvq_error(KVQ_ERR_NUMERIC, "layer %d: q.k error is %s: the queries and keys of %s are too large for "
                          "float arithmetic (or the method's artifacts are)", ly->layer, kvq_nonfinite_name(ly->ip_relative_error), t->path);
    }
    return s;
}

static void layer_task(void *ctx, int h)
{
    const qr_layer *j = ctx;
    const kvq_trace *t = j->t;
    const size_t nd = (size_t)t->n_tokens * (size_t)t->head_dim;
    qr_bufs b = {0};
    b.x = malloc(sizeof(float) * nd);
    b.xhat = malloc(sizeof(float) * nd);
    b.scores = malloc(sizeof(float) * ((size_t)t->n_tokens + 64));
    b.qrows = malloc(sizeof(float) * (size_t)(t->n_queries ? t->n_queries : 1) * t->head_dim);
    b.units = malloc(sizeof(size_t) * ((size_t)t->n_tokens + 1));
    b.gidx = malloc(sizeof(long) * ((size_t)t->n_tokens + 1));
    kvq_status s = KVQ_OK;
    if (!b.x || !b.xhat || !b.scores || !b.qrows || !b.units || !b.gidx)
        s = kvq_error(KVQ_ERR_NOMEM, "quantize: cannot allocate buffers for %d tokens x %d", t->n_tokens,
                      t->head_dim);
    kvq_plan_params pp = {.bits = j->key_bits,
                          .head_dim = t->head_dim,
                          .layer = j->layer,
                          .kv_head = h,
                          .is_value = false,
                          .cfg = j->cfg,
                          .art = j->art};
    if (!s) s = layer_keys(j, &pp, &b, &j->ak[h], &j->aip[h]);
    if (!s && t->has_values) {
        pp.bits = j->fp16_values ? 16 : j->cfg->value_bits;
        pp.is_value = true;
        s = layer_values(j, &pp, &b, &j->av[h]);
    }
    bufs_free(&b);
    j->rc[h] = s;
    if (s) snprintf(j->err[h], sizeof j->err[h], "%s", kvq_last_error());
}

kvq_status kvq_quantreport_run(const kvq_trace *t, const kvq_config *cfg, const kvq_artifacts *art,
                               const kvq_quantreport_opts *opts, kvq_progress *prog,
                               kvq_quantreport *out)
{
    kvq_quantreport_opts o;
    if (opts)
        o = *opts;
    else
        kvq_quantreport_opts_default(&o);
    const kvq_method *m;
    if (kvq_method_lookup(cfg->method, &m)) return KVQ_ERR_UNKNOWN_METHOD;
    if (cfg->value_method[0] && kvq_method_lookup(cfg->value_method, &m)) {
        char msg[1024];   // the message names the known methods; copy before re-formatting
        snprintf(msg, sizeof msg, "%s", kvq_last_error());
        return kvq_error(KVQ_ERR_UNKNOWN_METHOD, "value_method: %s", msg);
    }
    const char *why = kvq_config_check(cfg);
    if (why) return kvq_error(KVQ_ERR_ARG, "%s", why);
    if (t->n_heads % t->n_kv_heads)
        return kvq_error(KVQ_ERR_SHAPE, "%s: %d query heads are not a multiple of %d kv heads",
                         t->path, t->n_heads, t->n_kv_heads);
    const int n = o.max_tokens > 0 && o.max_tokens < t->n_tokens ? o.max_tokens : t->n_tokens;
    const int d = t->head_dim, nkv = t->n_kv_heads;
    const bool fp16_values = kvq_config_fp16_values(cfg);
    const char *vmethod = fp16_values            ? "fp16"
                          : cfg->value_method[0] ? cfg->value_method
                                                 : "turboquant_mse";

    kvq_quantreport *r = calloc(1, sizeof *r); // ~40 KB: not on a worker's stack
    int *sel = malloc(sizeof(int) * (size_t)(t->n_queries ? t->n_queries : 1));
    qr_layer j = {.t = t, .cfg = cfg, .art = art, .vmethod = vmethod, .n = n, .fp16_values = fp16_values,
                  .sel = sel, .ak = calloc((size_t)nkv, sizeof *j.ak), .av = calloc((size_t)nkv, sizeof *j.av),
                  .aip = calloc((size_t)nkv, sizeof *j.aip), .rc = calloc((size_t)nkv, sizeof *j.rc),
                  .err = calloc((size_t)nkv, sizeof *j.err)};
    if (!r || !sel || !j.ak || !j.av || !j.aip || !j.rc || !j.err) {
        free(r), free(sel), free(j.ak), free(j.av), free(j.aip), free(j.rc), free(j.err);
        return kvq_error(KVQ_ERR_NOMEM, "quantize: cannot allocate buffers for %d tokens x %d",
                         t->n_tokens, d);
    }
    snprintf(r->method, sizeof r->method, "%s", cfg->method);
    snprintf(r->value_method, sizeof r->value_method, "%s", vmethod);
    r->bits = cfg->bits, r->value_bits = cfg->value_bits;
    r->n_tokens = n, r->head_dim = d, r->n_kv_heads = nkv, r->n_heads = t->n_heads;

    int n_todo = 0, n_done = 0;
    for (int l = 0; l < t->n_layers; l++) n_todo += !o.layer_mask || o.layer_mask[l];
    j.n_sel = t->n_queries ? select_queries(t, n, o.queries_per_head, sel) : 0;
    double all_pairs = 0; // every causal pair of the selected rows, all heads and layers measured
    for (int k = 0; k < j.n_sel; k++) all_pairs += (double)t->query_positions[sel[k]] + 1;
    all_pairs *= (double)t->n_heads * n_todo;
    if (o.max_pairs > 0 && all_pairs > (double)o.max_pairs) j.rate = (double)o.max_pairs / all_pairs;
    acc_stream tk = {0}, tv = {0};
    acc_ip tip = {0};
    kvq_status s = KVQ_OK;
    kvq_progress_begin(prog);
    for (int l = 0; l < t->n_layers && !s; l++) {
        if (o.layer_mask && !o.layer_mask[l]) continue;
        kvq_quantreport_layer *ly = &r->layers[r->n_layers++];
        ly->layer = l;
        ly->key_bits = l < cfg->n_bit_allocation ? cfg->bit_allocation[l] : cfg->bits;
        j.layer = l, j.key_bits = ly->key_bits;
        memset(j.ak, 0, sizeof *j.ak * (size_t)nkv), memset(j.av, 0, sizeof *j.av * (size_t)nkv);
        memset(j.aip, 0, sizeof *j.aip * (size_t)nkv);
        kvq_parallel_for(nkv, layer_task, &j);
        acc_stream lk = {0}, lv = {0};
        acc_ip lip = {0};
        for (int h = 0; h < nkv && !s; h++) {
            if (j.rc[h]) {
                s = kvq_error(j.rc[h], "%s", j.err[h]);
                break;
            }
            acc_stream_add(&lk, &j.ak[h]);
            acc_stream_add(&lv, &j.av[h]);
            lip.err2 += j.aip[h].err2, lip.ref2 += j.aip[h].ref2, lip.n += j.aip[h].n;
        }
        if (s) break;
        stream_finish(&lk, &ly->keys);
        stream_finish(&lv, &ly->values);
        ly->ip_relative_error = ip_finish(&lip);
        ly->n_pairs = lip.n;
        acc_stream_add(&tk, &lk);
        acc_stream_add(&tv, &lv);
        tip.err2 += lip.err2, tip.ref2 += lip.ref2, tip.n += lip.n;
        char stage[48];
        snprintf(stage, sizeof stage, "layer %d/%d", ++n_done, n_todo);
        if (kvq_progress_report(prog, (double)n_done / n_todo, stage))
            s = kvq_error(KVQ_ERR_CANCELLED, "quantize: cancelled after %s", stage);
    }
    if (!s) {
        stream_finish(&tk, &r->keys);
        stream_finish(&tv, &r->values);
        r->ip_relative_error = ip_finish(&tip);
        r->n_pairs = tip.n;
        r->pairs_sampled = j.rate > 0;
        s = report_finite(t, r);
    }
    if (!s) {
        *out = *r;
    }
    free(r), free(sel), free(j.ak), free(j.av), free(j.aip), free(j.rc), free(j.err);
    return s;
}
