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
#include "rng.h"

enum { RQ_STREAM_NOISE = 0x52514e };

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

static kvq_status unit_load(const kvq_trace *t, const kvq_calib_opts *o, int l, int h, bool attn, rq_unit *u)
{
    memset(u, 0, sizeof *u);
    int n = tokens_used(t, o), d = t->head_dim, group = t->n_heads / t->n_kv_heads;
    u->n = n;
    u->d = d;
    u->group = group;
    size_t full = (size_t)t->n_tokens * d;
    u->k = malloc(sizeof(float) * full);
    u->v = malloc(sizeof(float) * full);
    if (!u->k || !u->v) return kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    kvq_status s = kvq_trace_keys(t, l, h, u->k);
    if (!s) s = kvq_trace_values(t, l, h, u->v);
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
        for (int i = 0; i < u->nq; i++) u->pos[i] = t->query_positions[rows[i]];
    }
    for (int g = 0; g < group && !s; g++) {
        if ((s = kvq_trace_queries(t, l, h * group + g, qall))) break;
        float *qg = u->q + (size_t)g * u->nq * d;
        for (int i = 0; i < u->nq; i++) memcpy(qg + (size_t)i * d, qall + (size_t)rows[i] * d, sizeof(float) * d);
        s = kvq_calib_attention(qg, u->pos, u->nq, u->k, u->v, n, d, u->o + (size_t)g * u->nq * d);
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

// Sensitivities plus the gain (error per unit of relative key noise energy).
static kvq_status sensitivities(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, double f0, double f1,
                                kvq_rq_sensitivity *out, double *gain)
{
    int L = o->layers ? o->layers : t->n_layers, H = t->n_kv_heads, S = o->num_samples > 0 ? o->num_samples : 1;
    int U = o->per_head ? H : 1;
    size_t sz = (size_t)t->n_tokens * t->head_dim;
    float *k2 = malloc(sizeof(float) * sz), *v2 = malloc(sizeof(float) * sz);
    float *scr = malloc(sizeof(float) * (size_t)(t->n_queries + 1) * t->head_dim);
    // per (unit, sample): key error, reference energy, noise energy, value error
    double *acc = calloc((size_t)U * S * 4, sizeof(double));
    kvq_status s = (!k2 || !v2 || !scr || !acc) ? kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory") : KVQ_OK;
    for (int l = 0; l < L && !s; l++) {
        memset(acc, 0, sizeof(double) * (size_t)U * S * 4);
        for (int h = 0; h < H && !s; h++) {
            rq_unit u;
            if ((s = unit_load(t, o, l, h, true, &u))) {
                unit_free(&u);
                break;
            }
            size_t nd = (size_t)u.n * u.d;
            double *a = acc + (size_t)(o->per_head ? h : 0) * S * 4;
            for (int smp = 0; smp < S && !s; smp++) {
                kvq_rng r;
                kvq_rng_seed2(&r, o->seed, RQ_STREAM_NOISE + ((uint64_t)l * 4096 + (uint64_t)h) * 4096 + (uint64_t)smp);
                double ek, ev;
                double rho = perturb(u.k, k2, nd, o->noise_scale, &r);
                if ((s = unit_attn_err(&u, k2, u.v, scr, &ek))) break;
                perturb(u.v, v2, nd, o->noise_scale, &r);
                if ((s = unit_attn_err(&u, u.k, v2, scr, &ev))) break;
                a[smp * 4 + 0] += ek;
                a[smp * 4 + 1] += u.o_energy;
                a[smp * 4 + 2] += rho * u.o_energy;   // energy-weighted mean of rho over heads
                a[smp * 4 + 3] += ev;
            }
            unit_free(&u);
            if (!s && kvq_progress_report(p, f0 + (f1 - f0) * (l * H + h + 1) / (double)(L * H), "sensitivity"))
                s = kvq_error(KVQ_ERR_CANCELLED, "ratequant calibration cancelled");
        }
        for (int j = 0; j < U && !s; j++) {
            kvq_rq_sensitivity *o1 = &out[l * U + j];
            double m = 0, m2 = 0, vm = 0, rho = 0;
            for (int smp = 0; smp < S; smp++) {
                const double *a = acc + ((size_t)j * S + smp) * 4;
                double e = a[1] > 0 ? a[0] / a[1] : 0;
                m += e;
                m2 += e * e;
                vm += a[1] > 0 ? a[3] / a[1] : 0;
                rho += a[1] > 0 ? a[2] / a[1] : 0;
            }
            o1->mean = m / S;
            o1->std = S > 1 ? sqrt(fmax(0, (m2 - m * m / S) / (S - 1))) : 0;
            o1->value_mean = vm / S;
            gain[l * U + j] = rho > 0 ? o1->mean / (rho / S) : o1->mean;
            if (o->per_head) snprintf(o1->name, sizeof o1->name, "layer_%d.head_%d", l, j);
            else snprintf(o1->name, sizeof o1->name, "layer_%d", l);
        }
    }
    free(k2); free(v2); free(scr); free(acc);
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
    if (!s) s = kvq_model_sensitivities(m, t->tokens, n, o->noise_scale, S, o->seed, p, mean, sd);
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

static kvq_status curves(const kvq_trace *t, const kvq_calib_opts *o, const double *rates, int R, kvq_progress *p,
                         double f0, double f1, kvq_rq_curve *out)
{
    if (R < 2 || R > KVQ_RQ_MAX_RATES)
        return kvq_error(KVQ_ERR_ARG, "ratequant: %d bit rates (expected 2..%d)", R, KVQ_RQ_MAX_RATES);
    int L = o->layers ? o->layers : t->n_layers, H = t->n_kv_heads, U = o->per_head ? H : 1, d = t->head_dim;
    for (int i = 0; i < R; i++)
        if (rates[i] < 1 || rates[i] > 8)
            return kvq_error(KVQ_ERR_ARG, "ratequant: bit rate %g outside 1..8", rates[i]);
    double *sum = calloc((size_t)U * R, sizeof(double));
    float *xh = malloc(sizeof(float) * (size_t)t->n_tokens * d);
    uint8_t *codes = NULL;
    kvq_status s = (!sum || !xh) ? kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory") : KVQ_OK;
    for (int l = 0; l < L && !s; l++) {
        memset(sum, 0, sizeof(double) * (size_t)U * R);
        for (int h = 0; h < H && !s; h++) {
            rq_unit u;
            if ((s = unit_load(t, o, l, h, false, &u))) {
                unit_free(&u);
                break;
            }
            for (int i = 0; i < R && !s; i++) {
                kvq_config cfg;
                kvq_config_default(&cfg);
                strcpy(cfg.method, "turboquant_mse");
                cfg.bits = (int)floor(rates[i]);
                cfg.outlier_channels = (int)lround((rates[i] - cfg.bits) * d);
                cfg.seed = o->seed;
                kvq_plan_params pp = {.bits = cfg.bits, .head_dim = d, .layer = l, .kv_head = h, .cfg = &cfg};
                kvq_quantizer qz;
                if ((s = kvq_quantizer_init(&qz, cfg.method, &pp))) break;
                uint8_t *c2 = realloc(codes, qz.bpv * (size_t)u.n);
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
                    for (int j = 0; j < d; j++) {
                        aa += (double)a[j] * a[j];
                        ee += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
                    }
                    e += aa > 0 ? ee / aa : 0;
                }
                sum[(o->per_head ? h : 0) * R + i] += e / u.n;
            }
            unit_free(&u);
            if (!s && kvq_progress_report(p, f0 + (f1 - f0) * (l * H + h + 1) / (double)(L * H), "distortion"))
                s = kvq_error(KVQ_ERR_CANCELLED, "ratequant calibration cancelled");
        }
        for (int j = 0; j < U && !s; j++) {
            kvq_rq_curve *c = &out[l * U + j];
            c->n_rates = R;
            for (int i = 0; i < R; i++) {
                c->rate[i] = rates[i];
                c->dist[i] = sum[j * R + i] / (o->per_head ? 1 : H);
            }
            fit_curve(c);
        }
    }
    free(sum); free(xh); free(codes);
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
    if (!s && o->model[0]) s = kvq_artifacts_set_meta(out, "option.model", o->model);
    free(sens); free(cv); free(gain); free(bits); free(buf);
    return s;
}
