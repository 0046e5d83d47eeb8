// calib/ratequant.c — RateQuant calibration from a trace: layer (or head)
// sensitivities by noise injection, distortion curves of turboquant_mse fitted
// to D(r) = alpha exp(-beta r), and the greedy reverse water-filling that turns
// them into integer bits per layer.
//
// Why the weight is gain = attention error / relative key noise energy: the
// attention-output error of a small key perturbation grows linearly with its
// energy, so gain x D(b) predicts the error of a quantizer whose relative MSE
// is D(b); the allocation minimizes the sum of those predictions. With a
// model (opts.model) the measured error is the KL of the final next-token
// distributions instead, which is also linear in small noise energies, so
// the same weight and allocation apply.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "calib.h"
#include "model.h"
#include "pool.h"
#include "rng.h"

enum { RQ_STREAM_NOISE = 0x52514e, RQ_STREAM_SAMPLE = 0x525153 };


// One (layer, kv head) with its query heads, the first n tokens.
typedef struct rq_unit {
    int n, d, nq, group;
    float *k, *v, *q;        // (n, d), (n, d), (group, nq, d)
    int32_t *pos;            // (nq)
    float *o;                // (group, nq, d) exact attention outputs
    double o_energy;
} rq_unit;

static void unit_free(rq_unit *u)
{
    free(u->k); free(u->v); free(u->q); free(u->pos); free(u->o);
    memset(u, 0, sizeof *u);
}

static int tokens_used(const kvq_trace *t, const kvq_calib_opts *o)
{
    return o->sequence_length && o->sequence_length < t->n_tokens ? o->sequence_length : t->n_tokens;
}

// The measured tokens (sorted indices; NULL and *ns = n when the option is 0
// or not below n: every token): the first RQ_SINK tokens, which softmax
// attention leans on whatever the query (a uniform sample missed them and
// read layer 0 five times too sensitive on the sample trace), then one
// contiguous window of the rest at an offset drawn with the seed, so that
// every query keeps its recent keys; a query attends over the window's keys
// before it and the sinks.
#define RQ_SINK 4
static int sample_size(const kvq_calib_opts *o, int n)
{
    int want = o->sensitivity_tokens;
    if (want > 0 && want <= RQ_SINK) want = RQ_SINK + 1;   // the sinks and at least one more
    return want <= 0 || want >= n ? n : want;
}

static kvq_status token_sample(const kvq_calib_opts *o, int n, int32_t **idx, int *ns)
{
    *idx = NULL;
    *ns = n;
    int want = sample_size(o, n);
    if (want == n) return KVQ_OK;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)want);
    if (!all) return kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    kvq_rng r;
    kvq_rng_seed2(&r, o->seed, RQ_STREAM_SAMPLE);
    int w = want - RQ_SINK, span = n - RQ_SINK - w;   // window starts in RQ_SINK .. RQ_SINK + span
    int s0 = RQ_SINK + (int)(kvq_rng_uniform(&r) * (double)(span + 1));
    if (s0 > RQ_SINK + span) s0 = RQ_SINK + span;
    for (int i = 0; i < RQ_SINK; i++) all[i] = i;
    for (int i = 0; i < w; i++) all[RQ_SINK + i] = s0 + i;
    *idx = all;
    *ns = want;
    return KVQ_OK;
}

// Sampled tokens at positions <= p (the causal view of a query at p), minus 1:
// the last visible row of the sample, -1 when none is.
static int32_t last_visible(const int32_t *idx, int ns, int32_t p)
{
    int lo = 0, hi = ns;   // first sample index with position > p
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (idx[mid] <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo - 1;
}

// The unit's keys and values at the sampled tokens (idx (ns), NULL = the
// first ns); queries attend over those keys only, causally by position.
static kvq_status unit_load(const kvq_trace *t, const kvq_calib_opts *o, int l, int h, bool attn,
                            const int32_t *idx, int ns, rq_unit *u)
{
    memset(u, 0, sizeof *u);
    int n = tokens_used(t, o), d = t->head_dim, group = t->n_heads / t->n_kv_heads;
    u->n = ns;
    u->d = d;
    u->group = group;
    size_t full = (size_t)t->n_tokens * d;
    u->k = malloc(sizeof(float) * full);
    u->v = malloc(sizeof(float) * full);
    if (!u->k || !u->v) return kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    kvq_status s = kvq_trace_keys(t, l, h, u->k);
    if (!s) s = kvq_trace_values(t, l, h, u->v);
    if (!s && idx)   // gather in place: idx is increasing, so row idx[i] >= i is not yet overwritten
        for (int i = 0; i < ns; i++) {
            memmove(u->k + (size_t)i * d, u->k + (size_t)idx[i] * d, sizeof(float) * d);
            memmove(u->v + (size_t)i * d, u->v + (size_t)idx[i] * d, sizeof(float) * d);
        }
    if (s || !attn) return s;
    if (!t->n_queries) return kvq_error(KVQ_ERR_ARG, "%s: ratequant sensitivities need queries in the trace", t->path);
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)t->n_queries);
    float *qall = malloc(sizeof(float) * (size_t)t->n_queries * d);
    u->pos = malloc(sizeof(int32_t) * (size_t)t->n_queries);
    u->q = malloc(sizeof(float) * (size_t)t->n_queries * d * group);
    u->o = malloc(sizeof(float) * (size_t)t->n_queries * d * group);
    if (!rows || !qall || !u->pos || !u->q || !u->o) s = kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    if (!s) {
        u->nq = kvq_calib_query_rows(t, o, n, rows);
        int kept = 0;
        for (int i = 0; i < u->nq; i++) {
            int32_t p = t->query_positions[rows[i]];
            // with a window, only the queries inside it: one before it would see
            // the sinks alone, one after it would miss its recent keys
            if (idx && ns > RQ_SINK && (p < idx[RQ_SINK] || p > idx[ns - 1])) continue;
            rows[kept] = rows[i];
            u->pos[kept++] = idx ? last_visible(idx, ns, p) : p;
        }
        u->nq = kept;
    }
    for (int g = 0; g < group && !s; g++) {
        if ((s = kvq_trace_queries(t, l, h * group + g, qall))) break;
        float *qg = u->q + (size_t)g * u->nq * d;
        for (int i = 0; i < u->nq; i++) memcpy(qg + (size_t)i * d, qall + (size_t)rows[i] * d, sizeof(float) * d);
        s = kvq_calib_attention(qg, u->pos, u->nq, u->k, u->v, ns, d, u->o + (size_t)g * u->nq * d);
    }
    for (size_t i = 0; !s && i < (size_t)group * u->nq * d; i++) u->o_energy += (double)u->o[i] * u->o[i];
    free(rows);
    free(qall);
    return s;
}

// Squared attention-output error of the unit with keys k2 and values v2.
static kvq_status unit_attn_err(const rq_unit *u, const float *k2, const float *v2, float *scratch, double *err)
{
    *err = 0;
    for (int g = 0; g < u->group; g++) {
        size_t off = (size_t)g * u->nq * u->d;
        kvq_status s = kvq_calib_attention(u->q + off, u->pos, u->nq, k2, v2, u->n, u->d, scratch);
        if (s) return s;
        for (size_t i = 0; i < (size_t)u->nq * u->d; i++) {
            double e = (double)scratch[i] - u->o[off + i];
            *err += e * e;
        }
    }
    return KVQ_OK;
}

// x + noise_scale x std(x) x N(0,1) into y; returns |noise|^2 / |x|^2.
static double perturb(const float *x, float *y, size_t n, double noise_scale, kvq_rng *r)
{
    double m = 0, m2 = 0;
    for (size_t i = 0; i < n; i++) {
        m += x[i];
        m2 += (double)x[i] * x[i];
    }
    m /= (double)n;
    double var = m2 / (double)n - m * m, sd = noise_scale * sqrt(var > 0 ? var : 0), ne = 0;
    for (size_t i = 0; i < n; i++) {
        double z = sd * kvq_rng_gauss(r);
        y[i] = (float)(x[i] + z);
        ne += z * z;
    }
    return m2 > 0 ? ne / m2 : 0;
}

static int n_units(const kvq_trace *t, const kvq_calib_opts *o)
{
    return (o->layers ? o->layers : t->n_layers) * (o->per_head ? t->n_kv_heads : 1);
}

// The (layer, kv head) units of the first L layers run as tasks on the pool,
// a batch of kvq_threads() at a time; each task allocates its own buffers and
// writes its own slot, and the caller sums the slots in kv-head order, as
// the one-thread loop did: the artifacts do not depend on the thread count.
typedef struct {
    const kvq_trace *t;
    const kvq_calib_opts *o;
    const int32_t *idx;    // token sample (NULL = every token)
    int ns, H, S, base;    // sampled tokens, kv heads, draws (or rates), first unit of the batch
    const double *rates;   // curves: (S) bit rates
    double *slot;          // (batch, S, 4) sensitivities / (batch, S) curves
    kvq_status *st;
    char (*err)[200];      // kvq_last_error is per thread
} rq_job;

static void job_fail(rq_job *j, int i, kvq_status s)
{
    j->st[i] = s;
    if (s) snprintf(j->err[i], sizeof j->err[i], "%s", kvq_last_error());
}

// One unit's draws: per sample key error, reference energy, noise energy, value error.
static void sens_task(void *ctx, int i)
{
    rq_job *j = ctx;
    int unit = j->base + i, l = unit / j->H, h = unit % j->H, S = j->S;
    double *a = j->slot + (size_t)i * S * 4;
    memset(a, 0, sizeof(double) * (size_t)S * 4);
    rq_unit u;
    kvq_status s = unit_load(j->t, j->o, l, h, true, j->idx, j->ns, &u);
    size_t nd = (size_t)u.n * u.d;
    float *k2 = malloc(sizeof(float) * (nd ? nd : 1)), *v2 = malloc(sizeof(float) * (nd ? nd : 1));
    float *scr = malloc(sizeof(float) * (size_t)(j->t->n_queries + 1) * j->t->head_dim);
    if (!s && (!k2 || !v2 || !scr)) s = kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    for (int smp = 0; smp < S && !s; smp++) {
        kvq_rng r;
        kvq_rng_seed2(&r, j->o->seed, RQ_STREAM_NOISE + ((uint64_t)l * 4096 + (uint64_t)h) * 4096 + (uint64_t)smp);
        double ek, ev;
        double rho = perturb(u.k, k2, nd, j->o->noise_scale, &r);
        if ((s = unit_attn_err(&u, k2, u.v, scr, &ek))) break;
        perturb(u.v, v2, nd, j->o->noise_scale, &r);
        if ((s = unit_attn_err(&u, u.k, v2, scr, &ev))) break;
        a[smp * 4 + 0] = ek;
        a[smp * 4 + 1] = u.o_energy;
        a[smp * 4 + 2] = rho * u.o_energy;   // energy-weighted mean of rho over heads
        a[smp * 4 + 3] = ev;
    }
    unit_free(&u);
    free(k2), free(v2), free(scr);
    job_fail(j, i, s);
}

// Runs task over the units of the first L layers in batches; after each
// batch, done(ctx2, unit, slot) in unit order, then progress over [f0, f1].
typedef kvq_status (*rq_done_fn)(void *ctx2, int unit, const double *slot);
static kvq_status run_units(rq_job *j, int L, size_t slot_len, kvq_task_fn task, rq_done_fn done, void *ctx2,
                            kvq_progress *p, double f0, double f1, const char *stage)
{
    int U = L * j->H, B = kvq_threads() < U ? kvq_threads() : U;
    j->slot = malloc(sizeof(double) * slot_len * (size_t)B);
    j->st = malloc(sizeof(kvq_status) * (size_t)B);
    j->err = malloc(sizeof *j->err * (size_t)B);
    kvq_status s = (!j->slot || !j->st || !j->err) ? kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory") : KVQ_OK;
    for (int b0 = 0; b0 < U && !s; b0 += B) {
        int nb = U - b0 < B ? U - b0 : B;
        j->base = b0;
        kvq_parallel_for(nb, task, j);
        for (int i = 0; i < nb && !s; i++)
            s = j->st[i] ? kvq_error(j->st[i], "%s", j->err[i]) : done(ctx2, b0 + i, j->slot + slot_len * (size_t)i);
        if (!s && kvq_progress_report(p, f0 + (f1 - f0) * (b0 + nb) / (double)U, stage))
            s = kvq_error(KVQ_ERR_CANCELLED, "ratequant calibration cancelled");
    }
    free(j->slot), free(j->st), free(j->err);
    return s;
}

typedef struct {
    const kvq_calib_opts *o;
    int H, S, U;
    double *acc;               // (U, S, 4): the layer being summed
    kvq_rq_sensitivity *out;
    double *gain;
} sens_sum;

static kvq_status sens_done(void *ctx2, int unit, const double *a)
{
    sens_sum *c = ctx2;
    int l = unit / c->H, h = unit % c->H, S = c->S, U = c->U;
    if (h == 0) memset(c->acc, 0, sizeof(double) * (size_t)U * S * 4);
    double *acc = c->acc + (size_t)(c->o->per_head ? h : 0) * S * 4;
    for (int k = 0; k < S * 4; k++) acc[k] += a[k];
    if (h < c->H - 1) return KVQ_OK;
    for (int j = 0; j < U; j++) {
        kvq_rq_sensitivity *o1 = &c->out[l * U + j];
        double m = 0, m2 = 0, vm = 0, rho = 0;
        for (int smp = 0; smp < S; smp++) {
            const double *x = c->acc + ((size_t)j * S + smp) * 4;
            double e = x[1] > 0 ? x[0] / x[1] : 0;
            m += e;
            m2 += e * e;
            vm += x[1] > 0 ? x[3] / x[1] : 0;
            rho += x[1] > 0 ? x[2] / x[1] : 0;
        }
        o1->mean = m / S;
        o1->std = S > 1 ? sqrt(fmax(0, (m2 - m * m / S) / (S - 1))) : 0;
        o1->value_mean = vm / S;
        c->gain[l * U + j] = rho > 0 ? o1->mean / (rho / S) : o1->mean;
        if (c->o->per_head) snprintf(o1->name, sizeof o1->name, "layer_%d.head_%d", l, j);
        else snprintf(o1->name, sizeof o1->name, "layer_%d", l);
    }
    return KVQ_OK;
}

// Sensitivities plus the gain (error per unit of relative key noise energy),
// on the token sample (token_sample).
static kvq_status sensitivities(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, double f0, double f1,
                                kvq_rq_sensitivity *out, double *gain)
{
    int L = o->layers ? o->layers : t->n_layers, H = t->n_kv_heads, S = o->num_samples > 0 ? o->num_samples : 1;
    int U = o->per_head ? H : 1;
    rq_job j = {.t = t, .o = o, .H = H, .S = S};
    sens_sum c = {.o = o, .H = H, .S = S, .U = U, .out = out, .gain = gain};
    kvq_status s = token_sample(o, tokens_used(t, o), (int32_t **)&j.idx, &j.ns);
    if (!s && !(c.acc = malloc(sizeof(double) * (size_t)U * S * 4))) s = kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    if (!s) s = run_units(&j, L, (size_t)S * 4, sens_task, sens_done, &c, p, f0, f1, "sensitivity");
    free((void *)j.idx);
    free(c.acc);
    return s;
}

// ---- sensitivities from the model ----
// Checked against config.json alone, so a wrong pairing fails before the
// weights are read.
static kvq_status model_check(const kvq_trace *t, const kvq_model_config *c, const char *dir,
                              const kvq_calib_opts *o)
{
    static const char *const what[] = {"layers", "kv heads", "head_dim"};
    int have[3] = {c->n_layers, c->n_kv_heads, c->head_dim}, want[3] = {t->n_layers, t->n_kv_heads, t->head_dim};
    char diff[160] = "";
    size_t len = 0;
    for (int i = 0; i < 3; i++)
        if (have[i] != want[i] && len < sizeof diff)
            len += (size_t)snprintf(diff + len, sizeof diff - len, "%s%s %d vs %d", len ? ", " : "", what[i],
                                    have[i], want[i]);
    if (len)
        return kvq_error(KVQ_ERR_SHAPE, "ratequant: model %s does not match trace %s: %s (model vs trace)", dir,
                         t->path, diff);
    if (o->per_head)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "ratequant: per_head with model=%s: the model's key noise is per "
                         "layer (drop per_head, or model for trace-based per-head sensitivities)", dir);
    if (!t->tokens)
        return kvq_error(KVQ_ERR_FORMAT, "%s: no 'tokens' tensor (model sensitivities run %s on the token ids the "
                         "trace was captured from)", t->path, dir);
    return KVQ_OK;
}

kvq_status kvq_ratequant_model_sensitivities(const kvq_trace *t, const kvq_model *m, const kvq_calib_opts *o,
                                             kvq_progress *p, kvq_rq_sensitivity *out, double *gain)
{
    kvq_status s = model_check(t, &m->cfg, m->dir, o);
    if (s) return s;
    int L = o->layers ? o->layers : t->n_layers, n = tokens_used(t, o);
    int S = o->num_samples > 0 ? o->num_samples : 1, nl = m->cfg.n_layers;
    double *mean = malloc(sizeof(double) * (size_t)nl), *sd = malloc(sizeof(double) * (size_t)nl);
    float *k = malloc(sizeof(float) * (size_t)t->n_tokens * t->head_dim);
    if (!mean || !sd || !k) s = kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    // One OpenBLAS thread, as under kvq_calibrate: the model's sgemm sums
    // depend on OpenBLAS's thread split, and this entry point must give the
    // calibrator's numbers (tests/test_calib.c compares them to 1e-6).
    const int blas_threads = kvq_blas_threads_set(1);
    if (!s) s = kvq_model_sensitivities(m, t->tokens, n, o->noise_scale, S, o->seed, p, mean, sd);
    kvq_blas_threads_set(blas_threads);
    for (int l = 0; l < L && !s; l++) {
        // relative noise energy the model injected: (noise_scale x std)^2 over
        // the mean square, both over every kv head of the layer's keys
        double sum = 0, sum2 = 0, cnt = (double)n * t->head_dim * t->n_kv_heads;
        for (int h = 0; h < t->n_kv_heads && !s; h++) {
            s = kvq_trace_keys(t, l, h, k);
            for (size_t i = 0; !s && i < (size_t)n * t->head_dim; i++) {
                sum += k[i];
                sum2 += (double)k[i] * k[i];
            }
        }
        double mu = sum / cnt, ms = sum2 / cnt, rho = o->noise_scale * o->noise_scale * fmax(ms - mu * mu, 0) / ms;
        out[l].mean = mean[l];
        out[l].std = sd[l];
        out[l].value_mean = 0;
        snprintf(out[l].name, sizeof out[l].name, "layer_%d", l);
        if (gain) gain[l] = ms > 0 && rho > 0 ? mean[l] / rho : mean[l];
    }
    free(mean); free(sd); free(k);
    return s;
}

// Loads o->model for the call; progress: loading at f0, the model's noise
// runs over [f0, f1].
static kvq_status model_sensitivities(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, double f0,
                                      double f1, kvq_rq_sensitivity *out, double *gain)
{
    kvq_model_config mc;
    kvq_status s = kvq_model_config_load(o->model, &mc);
    if (!s) s = model_check(t, &mc, o->model, o);
    if (s) return s;
    if (kvq_progress_report(p, f0, "loading model"))
        return kvq_error(KVQ_ERR_CANCELLED, "ratequant calibration cancelled");
    kvq_model *m;
    if ((s = kvq_model_load(o->model, &m))) return s;
    kvq_subprogress sp;
    s = kvq_ratequant_model_sensitivities(t, m, o, kvq_subprogress_init(&sp, p, f0, f1, "sensitivity (model)"), out,
                                          gain);
    kvq_model_free(m);
    return s;
}

static kvq_status any_sensitivities(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, double f0,
                                    double f1, kvq_rq_sensitivity *out, double *gain)
{
    return o->model[0] ? model_sensitivities(t, o, p, f0, f1, out, gain) : sensitivities(t, o, p, f0, f1, out, gain);
}

kvq_status kvq_ratequant_sensitivities(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p,
                                       kvq_rq_sensitivity *out)
{
    double *gain = malloc(sizeof(double) * (size_t)n_units(t, o));
    if (!gain) return kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    kvq_status s = any_sensitivities(t, o, p, 0, 1, out, gain);
    free(gain);
    return s;
}

static void fit_curve(kvq_rq_curve *c)
{
    // least squares on log D = log alpha - beta r
    double sr = 0, sy = 0, srr = 0, sry = 0;
    int n = c->n_rates;
    for (int i = 0; i < n; i++) {
        double y = log(fmax(c->dist[i], 1e-30));
        sr += c->rate[i];
        sy += y;
        srr += c->rate[i] * c->rate[i];
        sry += c->rate[i] * y;
    }
    double den = n * srr - sr * sr, slope = den != 0 ? (n * sry - sr * sy) / den : 0, icpt = (sy - slope * sr) / n;
    c->alpha = exp(icpt);
    c->beta = -slope;
    double r2 = 0;
    for (int i = 0; i < n; i++) {
        double e = log(fmax(c->dist[i], 1e-30)) - (icpt + slope * c->rate[i]);
        r2 += e * e;
    }
    c->fit_error = n ? sqrt(r2 / n) : 0;
}

// One unit's mean relative key MSE at each of the S rates.
static void curve_task(void *ctx, int i)
{
    rq_job *j = ctx;
    int unit = j->base + i, l = unit / j->H, h = unit % j->H, d = j->t->head_dim;
    double *out = j->slot + (size_t)i * j->S;
    rq_unit u;
    kvq_status s = unit_load(j->t, j->o, l, h, false, j->idx, j->ns, &u);
    float *xh = malloc(sizeof(float) * (size_t)j->t->n_tokens * d);
    uint8_t *codes = NULL;
    if (!s && !xh) s = kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    for (int r = 0; r < j->S && !s; r++) {
        kvq_config cfg;
        kvq_config_default(&cfg);
        strcpy(cfg.method, "turboquant_mse");
        cfg.bits = (int)floor(j->rates[r]);
        cfg.outlier_channels = (int)lround((j->rates[r] - cfg.bits) * d);
        cfg.seed = j->o->seed;
        kvq_plan_params pp = {.bits = cfg.bits, .head_dim = d, .layer = l, .kv_head = h, .cfg = &cfg};
        kvq_quantizer qz;
        if ((s = kvq_quantizer_init(&qz, cfg.method, &pp))) break;
        uint8_t *c2 = realloc(codes, qz.bpv * (size_t)(u.n ? u.n : 1));
        if (!c2) {
            kvq_quantizer_free(&qz);
            s = kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
            break;
        }
        codes = c2;
        qz.m->encode(qz.plan, u.k, (size_t)u.n, codes);
        qz.m->decode(qz.plan, codes, (size_t)u.n, xh);
        kvq_quantizer_free(&qz);
        double e = 0;
        for (int v = 0; v < u.n; v++) {
            const float *a = u.k + (size_t)v * d, *b = xh + (size_t)v * d;
            double aa = 0, ee = 0;
            for (int c = 0; c < d; c++) {
                aa += (double)a[c] * a[c];
                ee += ((double)a[c] - b[c]) * ((double)a[c] - b[c]);
            }
            e += aa > 0 ? ee / aa : 0;
        }
        out[r] = e / u.n;
    }
    unit_free(&u);
    free(xh), free(codes);
    job_fail(j, i, s);
}

typedef struct {
    const kvq_calib_opts *o;
    const double *rates;
    int H, R, U;
    double *sum;   // (U, R): the layer being summed
    kvq_rq_curve *out;
} curve_sum;

static kvq_status curve_done(void *ctx2, int unit, const double *e)
{
    curve_sum *c = ctx2;
    int l = unit / c->H, h = unit % c->H, R = c->R;
    if (h == 0) memset(c->sum, 0, sizeof(double) * (size_t)c->U * R);
    for (int i = 0; i < R; i++) c->sum[(c->o->per_head ? h : 0) * R + i] += e[i];
    if (h < c->H - 1) return KVQ_OK;
    for (int j = 0; j < c->U; j++) {
        kvq_rq_curve *cv = &c->out[l * c->U + j];
        cv->n_rates = R;
        for (int i = 0; i < R; i++) {
            cv->rate[i] = c->rates[i];
            cv->dist[i] = c->sum[j * R + i] / (c->o->per_head ? 1 : c->H);
        }
        fit_curve(cv);
    }
    return KVQ_OK;
}

static kvq_status curves(const kvq_trace *t, const kvq_calib_opts *o, const double *rates, int R, kvq_progress *p,
                         double f0, double f1, kvq_rq_curve *out)
{
    if (R < 2 || R > KVQ_RQ_MAX_RATES)
        return kvq_error(KVQ_ERR_ARG, "ratequant: %d bit rates (expected 2..%d)", R, KVQ_RQ_MAX_RATES);
    int L = o->layers ? o->layers : t->n_layers, H = t->n_kv_heads, U = o->per_head ? H : 1;
    for (int i = 0; i < R; i++)
        if (rates[i] < 1 || rates[i] > 8)
            return kvq_error(KVQ_ERR_ARG, "ratequant: bit rate %g outside 1..8", rates[i]);
    rq_job j = {.t = t, .o = o, .H = H, .S = R, .rates = rates};
    curve_sum c = {.o = o, .rates = rates, .H = H, .R = R, .U = U, .out = out};
    kvq_status s = token_sample(o, tokens_used(t, o), (int32_t **)&j.idx, &j.ns);
    if (!s && !(c.sum = malloc(sizeof(double) * (size_t)U * R))) s = kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    if (!s) s = run_units(&j, L, (size_t)R, curve_task, curve_done, &c, p, f0, f1, "distortion");
    free((void *)j.idx);
    free(c.sum);
    return s;
}

kvq_status kvq_ratequant_fit_curves(const kvq_trace *t, const kvq_calib_opts *o, const double *rates, int n_rates,
                                    kvq_progress *p, kvq_rq_curve *out)
{
    return curves(t, o, rates, n_rates, p, 0, 1, out);
}

kvq_status kvq_ratequant_allocate(const double *w, const kvq_rq_curve *c, int n, double target_bits, int min_bits,
                                  int max_bits, int *bits)
{
    if (n <= 0 || min_bits < 1 || max_bits < min_bits || !isfinite(target_bits))
        return kvq_error(KVQ_ERR_ARG, "ratequant allocate: bad arguments (n %d, bits %d..%d, target %g)", n,
                         min_bits, max_bits, target_bits);
    long total = lround(target_bits * n);
    if (total < (long)min_bits * n) total = (long)min_bits * n;
    if (total > (long)max_bits * n) total = (long)max_bits * n;
    for (int i = 0; i < n; i++) bits[i] = min_bits;
    for (long k = (long)min_bits * n; k < total; k++) {
        int best = -1;
        double bg = 0;
        for (int i = 0; i < n; i++) {
            if (bits[i] >= max_bits) continue;
            double g = w[i] * c[i].alpha * (exp(-c[i].beta * bits[i]) - exp(-c[i].beta * (bits[i] + 1)));
            if (best < 0 || g > bg) {
                best = i;
                bg = g;
            }
        }
        bits[best]++;
    }
    return KVQ_OK;
}

static const double default_rates[] = {1, 1.5, 2, 3, 4};

kvq_status kvq_calib_ratequant(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, kvq_artifacts *out)
{
    int L = o->layers ? o->layers : t->n_layers, H = t->n_kv_heads, U = o->per_head ? H : 1, n = L * U;
    const int R = (int)(sizeof default_rates / sizeof default_rates[0]);
    kvq_status cs = kvq_check_shape("ratequant", t->path, L, H, t->head_dim);
    if (cs) return cs;
    if (o->min_bits > o->max_bits)
        return kvq_error(KVQ_ERR_ARG, "ratequant: min_bits %d > max_bits %d", o->min_bits, o->max_bits);
    kvq_rq_sensitivity *sens = calloc((size_t)n, sizeof *sens);
    kvq_rq_curve *cv = calloc((size_t)n, sizeof *cv);
    double *gain = malloc(sizeof(double) * (size_t)n);
    int *bits = malloc(sizeof(int) * (size_t)n);
    float *buf = malloc(sizeof(float) * (size_t)n * (R > 4 ? R : 4));
    kvq_status s = (!sens || !cv || !gain || !bits || !buf) ? kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory")
                                                              : KVQ_OK;
    if (!s) s = any_sensitivities(t, o, p, 0.0, 0.6, sens, gain);
    if (!s) s = curves(t, o, default_rates, R, p, 0.6, 0.98, cv);
    if (!s) s = kvq_ratequant_allocate(gain, cv, n, o->target_bits, o->min_bits, o->max_bits, bits);
    int64_t sh3[3] = {L, H, 0}, sh2[2] = {L, 0};
    int nd = o->per_head ? 2 : 1;   // leading dims: (L) or (L, H)
    int64_t *lead = o->per_head ? sh3 : sh2;
    if (!s) {
        for (int i = 0; i < n; i++) buf[i] = (float)bits[i];
        s = kvq_artifacts_put(out, "ratequant.bits", buf, nd, lead);
    }
    if (!s) {
        float tb = (float)o->target_bits;
        int64_t one = 1;
        s = kvq_artifacts_put(out, "ratequant.target_bits", &tb, 1, &one);
    }
    if (!s) {
        for (int i = 0; i < n; i++) {
            buf[i * 4 + 0] = (float)sens[i].mean;
            buf[i * 4 + 1] = (float)sens[i].std;
            buf[i * 4 + 2] = (float)sens[i].value_mean;
            buf[i * 4 + 3] = (float)gain[i];
        }
        lead[nd] = 4;
        s = kvq_artifacts_put(out, "ratequant.sensitivity", buf, nd + 1, lead);
    }
    if (!s) {
        for (int i = 0; i < n; i++) {
            buf[i * 3 + 0] = (float)cv[i].alpha;
            buf[i * 3 + 1] = (float)cv[i].beta;
            buf[i * 3 + 2] = (float)cv[i].fit_error;
        }
        lead[nd] = 3;
        s = kvq_artifacts_put(out, "ratequant.curve", buf, nd + 1, lead);
    }
    if (!s) {
        for (int i = 0; i < n; i++)
            for (int r = 0; r < R; r++) buf[i * R + r] = (float)cv[i].dist[r];
        lead[nd] = R;
        s = kvq_artifacts_put(out, "ratequant.distortion", buf, nd + 1, lead);
    }
    if (!s) {
        float rf[KVQ_RQ_MAX_RATES];
        int64_t nr = R;
        for (int r = 0; r < R; r++) rf[r] = (float)default_rates[r];
        s = kvq_artifacts_put(out, "ratequant.rates", rf, 1, &nr);
    }
    if (!s) s = kvq_artifacts_set_meta(out, "sensitivity_source", o->model[0] ? "model" : "trace");
    if (!s) {   // the token sample the trace measurements ran on (token_sample)
        char v[32];
        snprintf(v, sizeof v, "%d", sample_size(o, tokens_used(t, o)));
        s = kvq_artifacts_set_meta(out, "sensitivity.tokens", v);
    }
    if (!s && o->model[0]) s = kvq_artifacts_set_meta(out, "option.model", o->model);
    free(sens); free(cv); free(gain); free(bits); free(buf);
    return s;
}
