// cmd_calib.c — calibration commands: precompute (CLI: calibrate a trace file
// and write artifacts), calibrate (the session's trace into s->art, with a
// summary), save artifacts, load-artifacts.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "artifacts.h"
#include "calib/calib.h"
#include "cmds.h"
#include "metrics.h"
#include "tui.h"
#include "pack.h"

// Progress lines at most every 10% once a run has taken over 2 s, so short
// runs stay quiet and long ones show they are alive.
typedef struct {
    kvs_session *s;
    const char *cmd;
    double next, t0;
} calib_progress;

static bool on_progress(double fraction, const char *stage, double eta_s, void *user)
{
    calib_progress *cp = user;
    if (fraction >= cp->next && fraction < 1.0) {
        cp->next = floor(fraction * 10 + 1) / 10;
        if (kvq_now_s() - cp->t0 > 2.0)
            kvs_printf(cp->s, "%s: %3.0f%% %s (about %.0f s left)", cp->cmd, fraction * 100, stage,
                       eta_s > 0 ? eta_s : 0);
    }
    return false;
}

// Calibration options from the command's options (every kvq_calib_opts
// name, dashes or underscores, as --key value or key=value), plus `model`
// (a checkpoint directory: ratequant sensitivities from the model).
static int read_opts(kvs_session *s, kvs_args *a, const char *cmd, kvq_calib_opts *o)
{
    kvq_calib_opts_default(o);
    const char *const *names = kvq_calib_opts_names();
    for (int i = 0; names[i]; i++) {
        const char *v = kvs_opt_str(a, names[i], NULL);
        if (v && kvq_calib_opts_set(o, names[i], v)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    }
    const char *model = kvs_opt_str(a, "model", NULL);
    if (model && (!model[0] || strlen(model) >= sizeof o->model))
        return kvs_errorf(s, "%s: model: expected a checkpoint directory of 1..%zu characters", cmd,
                          sizeof o->model - 1);
    if (model) snprintf(o->model, sizeof o->model, "%s", model);
    return 0;
}

void kvs_calib_opts_summary(const kvq_calib_opts *o, char *buf, size_t n)
{
    kvq_calib_opts d;
    kvq_calib_opts_default(&d);
    const char *const *names = kvq_calib_opts_names();
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; names[i] && len < n; i++) {
        char a[64], b[64];
        if (kvq_calib_opts_get(o, names[i], a, sizeof a) || kvq_calib_opts_get(&d, names[i], b, sizeof b) || !strcmp(a, b))
            continue;
        char *end;
        double x = strtod(a, &end);
        if (end != a && !*end) snprintf(a, sizeof a, "%.6g", x);
        len += (size_t)snprintf(buf + len, n - len, "%s%s=%s", len ? " " : "", names[i], a);
    }
    if (o->model[0] && len < n) len += (size_t)snprintf(buf + len, n - len, "%smodel=%s", len ? " " : "", o->model);
    if (!buf[0]) snprintf(buf, n, "defaults");
}

// Only RateQuant reads opts.model; elsewhere it would be silently ignored.
static int check_model_opt(kvs_session *s, const char *cmd, const char *method, const kvq_calib_opts *o)
{
    if (o->model[0] && method && strcmp(method, "ratequant"))
        return kvs_errorf(s, "%s: model applies to ratequant only (sensitivities from the model), not to %s", cmd,
                          method);
    return 0;
}

static const float *tensor(const kvq_artifacts *a, const char *name, int *nd, int64_t *sh)
{
    return kvq_artifacts_get(a, name, nd, sh);
}

static void summary_ratequant(kvs_session *s, const kvq_artifacts *a)
{
    int nd;
    int64_t sh[8];
    const float *bits = tensor(a, "ratequant.bits", &nd, sh);
    const float *sens = tensor(a, "ratequant.sensitivity", NULL, NULL);
    const float *cv = tensor(a, "ratequant.curve", NULL, NULL);
    const float *tb = tensor(a, "ratequant.target_bits", NULL, NULL);
    if (!bits || !sens || !cv || !tb) return;
    int H = nd == 2 ? (int)sh[1] : 1, n = (int)sh[0] * H;
    const char *src = kvq_artifacts_meta(a, "sensitivity_source"), *model = kvq_artifacts_meta(a, "option.model");
    const kvq_metric *ks = &kvq_metrics[src && !strcmp(src, "model") ? KVQ_M_KEY_SENS_KL : KVQ_M_KEY_SENS_ATTN];
    if (src && !strcmp(src, "model"))
        kvs_printf(s, "sensitivities from the model %s: %s in %s (keys only)", model ? model : "?", ks->name, ks->unit);
    else
        kvs_printf(s, "sensitivities from the trace: %s = %s", ks->name, ks->formula);
    const char *ns = kvq_artifacts_meta(a, "sensitivity.tokens"), *nt = kvq_artifacts_meta(a, "trace.tokens");
    if (ns && nt && (!src || strcmp(src, "model")))
        kvs_printf(s, "measured on %s of %s tokens (sensitivity_tokens: 4 sinks + a window placed by the seed)", ns, nt);
    kvs_printf(s, "%-16s %4s  %-31s %29s  %8s %7s %20s", "unit", "bits", ks->name,
               kvq_metrics[KVQ_M_VALUE_SENS_ATTN].name, "alpha", "beta", kvq_metrics[KVQ_M_RQ_FIT_ERROR].name);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        char name[48];
        if (H > 1) snprintf(name, sizeof name, "layer_%d.head_%d", i / H, i % H);
        else snprintf(name, sizeof name, "layer_%d", i);
        kvs_printf(s, "%-16s %4.0f  %9.3g +- %-18.2g %29.3g  %8.4f %7.4f %20.4f", name, bits[i], sens[i * 4],
                   sens[i * 4 + 1], sens[i * 4 + 2], cv[i * 3], cv[i * 3 + 1], cv[i * 3 + 2]);
        sum += bits[i];
    }
    kvs_printf(s, "mean bits %.4g (target %.4g)", sum / n, tb[0]);
    if (H == 1) {   // the allocation in the form `set bit_allocation=...` takes
        char line[1024];
        size_t len = 0;
        for (int i = 0; i < n && len < sizeof line; i++)
            len += (size_t)snprintf(line + len, sizeof line - len, "%slayer_%d:%.0f", i ? "," : "", i, bits[i]);
        kvs_printf(s, "bit_allocation %s", line);
    }
}

// Spectrum per stream: d_eff, variance share of the top 8 dimensions, the
// signal/noise split (ceil(d_eff) dims at signal_bits, the rest noise_bits)
// with its rate, and the water-filled bits of the leading dims at target_bits.
static void summary_spectral(kvs_session *s, const kvq_artifacts *a, const kvq_calib_opts *o)
{
    int nd;
    int64_t sh[8];
    const float *deff = tensor(a, "spectral.d_eff", &nd, sh);
    if (!deff || nd != 2) return;
    int L = (int)sh[0], H = (int)sh[1];
    kvs_printf(s, "%5s %4s %6s %20s %7s %8s  bits of the leading dims at %g bits/coord", "layer", "head",
               kvq_metrics[KVQ_M_D_EFF].name, kvq_metrics[KVQ_M_TOP8_VARIANCE].name, "signal", "s/n rate",
               o->target_bits);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) {
            char name[96];
            snprintf(name, sizeof name, "spectral.eigenvalues.l%d.h%d", l, h);
            int64_t d;
            int n1;
            const float *e = tensor(a, name, &n1, &d);
            if (!e || d > KVQ_MAX_HEAD_DIM) continue;
            double tot = 0, top = 0;
            for (int i = 0; i < d; i++) {
                tot += e[i];
                if (i < 8) top += e[i];
            }
            int bits[KVQ_MAX_HEAD_DIM], sn = 0, nsig = 0;
            kvq_spectral_allocate(e, (int)d, 0, o->signal_bits, o->noise_bits, bits);
            for (int i = 0; i < d; i++) {
                sn += bits[i];
                nsig += bits[i] == o->signal_bits && i == nsig;
            }
            kvq_spectral_allocate(e, (int)d, o->target_bits, 0, 0, bits);
            char row[128] = "";
            size_t len = 0;
            for (int i = 0; i < d && i < 24 && len < sizeof row; i++)
                len += (size_t)snprintf(row + len, sizeof row - len, "%d", bits[i]);
            kvs_printf(s, "%5d %4d %6.1f %19.1f%% %7d %8.3f  %s...", l, h, deff[l * H + h], tot > 0 ? 100 * top / tot : 0,
                       nsig, (double)sn / (double)d, row);
        }
}

// Fraction of codewords the calibration keys actually use, per layer.
static void summary_vecinfer(kvs_session *s, const kvq_artifacts *a, const kvq_trace *t)
{
    int nd;
    int64_t sh[8];
    const float *cb = tensor(a, "vecinfer.codebook", &nd, sh);
    const float *lam = tensor(a, "vecinfer.smooth", NULL, NULL);
    if (!cb || !lam || nd != 4) return;
    int L = (int)sh[0], M = (int)sh[1], C = (int)sh[2], d = (int)(sh[1] * sh[3]);
    int lc = 0;
    while ((1 << lc) < C) lc++;
    kvs_printf(s, "%d subspaces x %d centroids per layer = %g bits/coord", M, C, (double)M * lc / d);
    kvs_printf(s, "%5s %13s %15s", "layer", "lambda range", kvq_metrics[KVQ_M_CODEBOOK_USAGE].name);
    kvq_config cfg;
    kvq_config_default(&cfg);
    float *k = t ? malloc(sizeof(float) * (size_t)t->n_tokens * d) : NULL;
    for (int l = 0; l < L; l++) {
        float lo = INFINITY, hi = 0;
        for (int i = 0; i < d; i++) {
            float v = lam[(size_t)l * d + i];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        char usage[32] = "-";
        kvq_plan_params pp = {.bits = M * lc / d, .head_dim = d, .layer = l, .cfg = &cfg, .art = a};
        kvq_quantizer q;
        if (k && t->head_dim == d && l < t->n_layers && (M * lc) % d == 0 &&
            !kvq_quantizer_init(&q, "vecinfer", &pp)) {
            uint8_t *used = calloc((size_t)M * C, 1), *code = malloc(q.bpv);
            uint8_t c[KVQ_MAX_HEAD_DIM];
            long n_used = 0;
            for (int h = 0; used && code && h < t->n_kv_heads; h++) {
                if (kvq_trace_keys(t, l, h, k)) break;
                for (int v = 0; v < t->n_tokens; v++) {
                    q.m->encode(q.plan, k + (size_t)v * d, 1, code);
                    kvq_unpack(code, (size_t)M, lc, c);
                    for (int m = 0; m < M; m++) {
                        n_used += !used[(size_t)m * C + c[m]];
                        used[(size_t)m * C + c[m]] = 1;
                    }
                }
            }
            snprintf(usage, sizeof usage, "%.1f%%", 100.0 * (double)n_used / ((double)M * C));
            free(used);
            free(code);
            kvq_quantizer_free(&q);
        }
        kvs_printf(s, "%5d %6.2f..%-6.2f %15s", l, lo, hi, usage);
    }
    free(k);
}

static void summary_tensors(kvs_session *s, const kvq_artifacts *a)
{
    int n = kvq_artifacts_count(a);
    for (int i = 0; i < n && i < 8; i++) {
        int nd;
        int64_t sh[8];
        const char *name = kvq_artifacts_name(a, i);
        kvq_artifacts_get(a, name, &nd, sh);
        char shape[96] = "";
        size_t len = 0;
        for (int d = 0; d < nd && len < sizeof shape; d++)
            len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%lld", d ? ", " : "", (long long)sh[d]);
        kvs_printf(s, "  %-36s (%s)", name, shape);
    }
    if (n > 8) kvs_printf(s, "  ... %d tensors in all", n);
}

static void print_summary(kvs_session *s, const kvq_artifacts *a, const kvq_trace *t, const kvq_calib_opts *o)
{
    const char *m = kvq_artifacts_meta(a, "method");
    if (!m) m = "";
    if (!strcmp(m, "ratequant")) summary_ratequant(s, a);
    else if (!strcmp(m, "spectral")) summary_spectral(s, a, o);
    else if (!strcmp(m, "vecinfer")) summary_vecinfer(s, a, t);
    else summary_tensors(s, a);
}

static int run_calibration(kvs_session *s, const char *cmd, const char *method, const kvq_trace *t,
                           const kvq_calib_opts *o, kvq_artifacts **out)
{
    calib_progress cp = {.s = s, .cmd = cmd, .next = 0.1, .t0 = kvq_now_s()};
    kvq_progress p = {.fn = on_progress, .user = &cp};
    double t0 = kvq_now_s();
    if (kvq_calibrate(method, t, o, &p, out)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    kvs_printf(s, "%s: %s calibrated on %s in %.1f s (%d tensors)", cmd, method, t->path, kvq_now_s() - t0,
               kvq_artifacts_count(*out));
    return 0;
}

int kvs_cmd_precompute(kvs_session *s, kvs_args *a)
{
    const char *method = kvs_opt_str(a, "method", NULL), *trace = kvs_opt_str(a, "trace", NULL);
    const char *output = kvs_opt_str(a, "output", NULL);
    bool quiet = kvs_opt_flag(a, "quiet");
    kvq_calib_opts o;
    if (read_opts(s, a, "precompute", &o) || kvs_args_check_unused(s, a, "precompute")) return -1;
    if (!method || !trace || !output)
        return kvs_errorf(s, "precompute: --method, --trace and --output are required (usage: precompute --method "
                          "{vecinfer,spectral,ratequant,rabitq,commvq} --trace T --output DIR)");
    if (a->npos) return kvs_errorf(s, "precompute: unexpected argument '%s'", a->pos[0]);
    if (check_model_opt(s, "precompute", method, &o)) return -1;
    kvq_trace *t;
    if (kvq_trace_open(trace, NULL, &t)) return kvs_errorf(s, "precompute: %s", kvq_last_error());
    kvq_artifacts *art = NULL;
    int rc = run_calibration(s, "precompute", method, t, &o, &art);
    if (!rc && kvq_artifacts_save(art, output)) rc = kvs_errorf(s, "precompute: %s", kvq_last_error());
    if (!rc) {
        if (!quiet) print_summary(s, art, t, &o);
        kvs_printf(s, "precompute: wrote %s (artifacts.safetensors, manifest.json)", output);
    }
    kvq_artifacts_free(art);
    kvq_trace_free(t);
    return rc;
}

int kvs_cmd_calibrate(kvs_session *s, kvs_args *a)
{
    kvq_calib_opts o;
    if (read_opts(s, a, "calibrate", &o) || kvs_args_check_unused(s, a, "calibrate")) return -1;
    if (a->npos != 1) return kvs_errorf(s, "calibrate: expected one METHOD (usage: calibrate METHOD [k=v ...])");
    if (check_model_opt(s, "calibrate", a->pos[0], &o)) return -1;
    if (!s->trace) return kvs_errorf(s, "calibrate: no trace loaded (run `load PATH` first)");
    if (s->ui) return kvs_studio_calibrate(s, a->pos[0], &o);   // worker thread + progress bar
    kvq_artifacts *art = NULL;
    if (run_calibration(s, "calibrate", a->pos[0], s->trace, &o, &art)) return -1;
    char sum[256];
    kvs_calib_opts_summary(&o, sum, sizeof sum);
    bool lost;
    pthread_mutex_lock(&s->lock);
    kvs_art_slot *old = kvs_session_find_art(s, a->pos[0]);
    char when[16] = "";
    if (old) strftime(when, sizeof when, "%H:%M:%S", localtime(&old->when));
    kvs_session_put_art(s, art, "", sum, &lost);   // not saved yet
    pthread_mutex_unlock(&s->lock);
    if (lost)
        kvs_errorf(s, "calibrate: warning: replaced the unsaved %s artifacts of %s (save each set with `save artifacts DIR`)",
                   a->pos[0], when);
    print_summary(s, art, s->trace, &o);
    kvs_printf(s, "calibrate: artifacts held in the session (unsaved; `save artifacts DIR` writes them)");
    return 0;
}

int kvs_cmd_save(kvs_session *s, kvs_args *a)
{
    if (kvs_args_check_unused(s, a, "save")) return -1;
    if ((a->npos != 2 && a->npos != 3) || strcmp(a->pos[0], "artifacts"))
        return kvs_errorf(s, "save: expected `save artifacts DIR [METHOD]`");
    const char *method = a->npos == 3 ? a->pos[2] : NULL;
    pthread_mutex_lock(&s->lock);
    kvs_art_slot *slot = method ? kvs_session_find_art(s, method) : NULL;
    for (int i = 0; !method && i < s->n_arts; i++)
        if (s->arts[i].art == s->art) slot = &s->arts[i];
    pthread_mutex_unlock(&s->lock);
    if (!slot && method) return kvs_errorf(s, "save: no %s artifacts in the session (run `calibrate %s`)", method, method);
    if (!slot) return kvs_errorf(s, "save: no artifacts in the session (run `calibrate METHOD` or `load-artifacts DIR`)");
    if (kvq_artifacts_save(slot->art, a->pos[1])) return kvs_errorf(s, "save: %s", kvq_last_error());
    pthread_mutex_lock(&s->lock);
    snprintf(slot->dir, sizeof slot->dir, "%s", a->pos[1]);
    kvs_session_select_art(s);
    pthread_mutex_unlock(&s->lock);
    kvs_printf(s, "saved %s artifacts to %s", slot->method, a->pos[1]);
    return 0;
}

int kvs_cmd_load_artifacts(kvs_session *s, kvs_args *a)
{
    if (kvs_args_check_unused(s, a, "load-artifacts")) return -1;
    if (a->npos != 1) return kvs_errorf(s, "load-artifacts: expected one DIR (usage: load-artifacts DIR)");
    const char *dir = a->pos[0];
    if (strlen(dir) >= sizeof s->art_dir) return kvs_errorf(s, "load-artifacts: path too long");
    kvq_artifacts *art;
    if (kvq_artifacts_load(dir, &art)) return kvs_errorf(s, "load-artifacts: %s", kvq_last_error());
    if (s->trace && kvq_artifacts_match_trace(art, s->trace)) {
        kvs_errorf(s, "load-artifacts: %s", kvq_last_error());
        kvq_artifacts_free(art);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    char sum[KVQ_PATH_LEN + 16];
    snprintf(sum, sizeof sum, "loaded from %s", dir);
    kvs_session_put_art(s, art, dir, sum, NULL);   // saved: it is on disk
    snprintf(s->cfg.artifacts, sizeof s->cfg.artifacts, "%s", dir);
    pthread_mutex_unlock(&s->lock);
    const char *m = kvq_artifacts_meta(art, "method"), *tp = kvq_artifacts_meta(art, "trace.path");
    kvs_printf(s, "loaded %s artifacts from %s (%d tensors, calibrated on %s)%s", m ? m : "?", dir,
               kvq_artifacts_count(art), tp ? tp : "?", s->trace ? "" : "; not checked: no trace loaded");
    return 0;
}
