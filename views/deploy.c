// deploy.c — the Deploy view: the `recommend` table (engine/recommend.h) for
// the session's trace — every KV format llama.cpp, vLLM and mlx_lm offer,
// the exact flag, bits held K/V, KV memory per token and at a context, key
// rel MSE, output error, attention KL, rows within the budget first, the
// Pareto front marked, kvstudio's own best at the same budget beside them
// (not deployable) — and a memory vs quality scatter, one marker and colour
// per engine. The table is computed on the worker (progress, Esc cancels);
// engine, context, budget and tokens replayed are edited through the
// `recommend` command, so the prompt, scripts and the keys agree.
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "calib/calib.h"
#include "recommend.h"
#include "tui.h"
#include "ui.h"

#define DEFAULT_SEQ_LEN 128   // tokens replayed: a table in seconds on 1k-token traces
#define MAX_ENGINES 16
// Engines in deploy-table order get these markers (ASCII: NO_COLOR and
// LANG=C terminals tell them apart too); kvstudio's best gets '#'. '*'
// marks the Pareto front, as in the CLI's table.
static const char engine_marker[] = "o+x@%&=~^?";
#define OWN_MARKER '#'

typedef struct kvs_deploy_state {
    char engine[32];            // "all" or one engine
    long context;               // 0 = the trace's length
    double budget_gib;          // 0 = none
    int seq_len;                // tokens replayed, 0 = the whole trace
    char artifacts[KVQ_PATH_LEN];
    kvq_recommend_table *tab;   // last table, owned; NULL = none yet
    char tab_engine[32];        // tab->opts.engine points here
    const kvq_trace *tab_trace; // trace tab was measured on
    bool want;                  // (re)compute as soon as the worker is free
    int sel, first;             // cursor over rows (n = the kvstudio best), scroll
    int col0;                   // first metric column shown (narrow terminals scroll them)
    bool linear;                // plot's error axis linear (default log10)
    char err[512];
} kvs_deploy_state;

static kvs_deploy_state *state(kvs_ui *ui)
{
    if (!ui->dep) {
        ui->dep = calloc(1, sizeof *ui->dep);
        if (!ui->dep) return NULL;
        snprintf(ui->dep->engine, sizeof ui->dep->engine, "all");
        ui->dep->seq_len = DEFAULT_SEQ_LEN;
        ui->dep->want = true;
    }
    return ui->dep;
}

void kvs_deploy_free(kvs_ui *ui)
{
    if (!ui->dep) return;
    free(ui->dep->tab);
    free(ui->dep);
    ui->dep = NULL;
}

// Distinct engines of the deploy table, in table order.
static int engines(const char **out)
{
    int n = 0;
    for (int i = 0; i < kvq_n_deploy_formats && n < MAX_ENGINES; i++) {
        bool seen = false;
        for (int k = 0; k < n; k++) seen |= !strcmp(out[k], kvq_deploy_formats[i].engine);
        if (!seen) out[n++] = kvq_deploy_formats[i].engine;
    }
    return n;
}

static int engine_index(const char *name)
{
    const char *e[MAX_ENGINES];
    int n = engines(e);
    for (int k = 0; k < n; k++)
        if (!strcmp(e[k], name)) return k;
    return -1;
}

static char marker_of(const kvq_recommend_row *r)
{
    int k = engine_index(r->engine);
    return k < 0 ? OWN_MARKER : engine_marker[k % (int)(sizeof engine_marker - 1)];
}

static attr_t color_of(kvs_ui *ui, const kvq_recommend_row *r)
{
    int k = engine_index(r->engine);
    return k < 0 ? kvs_attr(ui, KVS_C_ACCENT) | A_BOLD : kvs_attr(ui, (kvs_color)(KVS_C_S1 + k % KVS_N_SERIES));
}

// ---- the job ----
typedef struct {
    kvq_recommend_opts o;
    char engine[32], artifacts[KVQ_PATH_LEN];
    const kvq_trace *trace;
    kvq_recommend_table *tab;
} deploy_job;

static int deploy_run(kvs_job *j)
{
    deploy_job *d = j->arg;
    kvq_progress p = {.fn = kvs_job_progress, .user = j};
    kvq_progress_begin(&p);
    pthread_mutex_lock(&j->s->lock);   // the trace stays put while we read it
    kvq_artifacts *art = NULL;
    kvq_status st = KVQ_OK;
    d->trace = j->s->trace;
    if (!d->trace) st = kvq_error(KVQ_ERR_ARG, "recommend: no trace loaded (:load PATH)");
    else if (d->artifacts[0]) st = kvq_artifacts_load_for_trace(d->artifacts, d->trace, &art);
    if (!st) st = kvq_recommend_run(d->trace, art, &d->o, &p, d->tab);
    pthread_mutex_unlock(&j->s->lock);
    kvq_artifacts_free(art);
    return st;
}

static void deploy_done(kvs_ui *ui, kvs_job *j)
{
    deploy_job *d = j->arg;
    kvs_deploy_state *ds = state(ui);
    if (!ds) {
        kvs_ui_set_status(ui, true, "recommend: out of memory");
    } else if (j->status == KVQ_ERR_CANCELLED) {
        if (!ds->want) kvs_ui_set_status(ui, false, "recommend cancelled (r measures again)");   // else new options follow
    } else if (j->status) {
        snprintf(ds->err, sizeof ds->err, "%s", j->msg);
        kvs_ui_set_status(ui, true, "%s", j->msg);
    } else {
        free(ds->tab);
        ds->tab = d->tab;
        d->tab = NULL;
        snprintf(ds->tab_engine, sizeof ds->tab_engine, "%s", d->engine);
        ds->tab->opts.engine = ds->tab_engine;
        ds->tab_trace = d->trace;
        ds->err[0] = 0;
        if (ds->sel > ds->tab->n) ds->sel = 0;
        if (!ds->tab->n_ok) snprintf(ds->err, sizeof ds->err, "recommend: no format of engine '%s' ran", d->engine);
        kvs_ui_set_status(ui, false, "recommend: %d formats measured on %d tokens in %.1f s", ds->tab->n,
                          ds->tab->replayed, j->t_end - j->t_start);
    }
    free(d->tab);
    free(d);
    j->arg = NULL;
}

static void deploy_start(kvs_ui *ui)
{
    kvs_deploy_state *ds = state(ui);
    if (!ds || !ui->s->trace || kvs_job_busy(ui)) return;
    ds->want = false;
    deploy_job *d = calloc(1, sizeof *d);
    if (d) d->tab = calloc(1, sizeof *d->tab);
    if (!d || !d->tab) {
        if (d) free(d);
        snprintf(ds->err, sizeof ds->err, "recommend: out of memory");
        return;
    }
    kvq_recommend_opts_default(&d->o);
    snprintf(d->engine, sizeof d->engine, "%s", ds->engine);
    snprintf(d->artifacts, sizeof d->artifacts, "%s", ds->artifacts);
    d->o.engine = d->engine;
    d->o.context = ds->context;
    d->o.budget_gib = ds->budget_gib;
    int n_tok = ui->s->trace->n_tokens;
    d->o.seq_len = ds->seq_len > n_tok ? n_tok : ds->seq_len;
    d->o.seed = ui->s->cfg.seed;
    if (kvs_job_start(ui, "recommend", deploy_run, deploy_done, d)) {
        free(d->tab);
        free(d);
        return;
    }
    snprintf(ui->job.name, sizeof ui->job.name, "recommend %s, %d tokens", d->engine, d->o.seq_len ? d->o.seq_len : n_tok);
}

// (Re)compute now, or once the running job ends (a running recommend is
// cancelled: its options are stale).
static void deploy_request(kvs_ui *ui)
{
    kvs_deploy_state *ds = state(ui);
    if (!ds) return;
    ds->want = true;
    if (kvs_job_busy(ui) && ui->job.fn == deploy_run) kvs_job_cancel(ui);
    else if (kvs_job_busy(ui)) kvs_ui_set_status(ui, false, "recommend: starts when %s ends (Esc cancels it)", ui->job.name);
    deploy_start(ui);
}

int kvs_studio_recommend(kvs_session *s, const char *engine, long context, double budget_gib, long seq_len,
                         const char *artifacts)
{
    kvs_ui *ui = s->ui;
    kvs_deploy_state *ds = ui ? state(ui) : NULL;
    if (!ds) return kvs_errorf(s, "recommend: only available in the studio");
    if (engine) snprintf(ds->engine, sizeof ds->engine, "%s", engine);
    if (context >= 0) ds->context = context;
    if (budget_gib >= 0) ds->budget_gib = budget_gib;
    if (seq_len >= 0) ds->seq_len = (int)seq_len;
    if (artifacts) snprintf(ds->artifacts, sizeof ds->artifacts, "%s", artifacts);
    kvs_ui_switch(ui, "deploy");
    deploy_request(ui);
    return 0;
}

// ---- drawing ----
enum { HIT_ROW = KVS_HIT_VIEW, HIT_LEGEND, HIT_TABLE };

static const kvq_recommend_row *row_at(const kvs_deploy_state *ds, int i)
{
    const kvq_recommend_table *t = ds->tab;
    if (!t || i < 0) return NULL;
    if (i < t->n) return &t->rows[i];
    return i == t->n && t->have_best ? &t->best : NULL;
}

static int n_lines(const kvs_deploy_state *ds) { return ds->tab ? ds->tab->n + ds->tab->have_best : 0; }

// "budget 2 GiB" / "budget none"
static void fmt_budget(double b, char *buf, size_t n)
{
    if (b > 0) snprintf(buf, n, "%g GiB", b);
    else snprintf(buf, n, "none");
}

// The view's options on one line; at narrow widths the key hints go
// first, then the words (kvs_fit_parts never cuts a number).
static void draw_settings(kvs_ui *ui, kvs_rect r, const kvs_deploy_state *ds)
{
    const kvq_trace *t = ui->s->trace;
    int n_tok = t ? t->n_tokens : 0, rep = ds->seq_len && ds->seq_len < n_tok ? ds->seq_len : n_tok;
    char bud[32];
    fmt_budget(ds->budget_gib, bud, sizeof bud);
    kvs_part p[4] = {{.prio = 0}, {.prio = 1}, {.prio = 2}, {.prio = 3}};
    snprintf(p[0].text, sizeof p[0].text, "engine %s (e)", ds->engine);
    snprintf(p[0].brief, sizeof p[0].brief, "%s", ds->engine);
    snprintf(p[1].text, sizeof p[1].text, "context %ld (c)", ds->context ? ds->context : n_tok);
    snprintf(p[1].brief, sizeof p[1].brief, "context %ld", ds->context ? ds->context : n_tok);
    snprintf(p[2].text, sizeof p[2].text, "budget %s (b)", bud);
    snprintf(p[2].brief, sizeof p[2].brief, "budget %s", bud);
    snprintf(p[3].text, sizeof p[3].text, "replay %d/%d tokens (t)", rep, n_tok);
    snprintf(p[3].brief, sizeof p[3].brief, "replay %d/%d", rep, n_tok);
    kvs_w_parts(ui, r.y, r.x + 1, r.w - 1, kvs_attr(ui, KVS_C_TITLE), p, 4, "  ");
}

// s in at most w cells: cut ones end in '~' (a cut flag must not read whole).
static const char *clip(const char *s, int w, char *buf, size_t n)
{
    if (w < 1) w = 1;
    if ((int)strlen(s) <= w) snprintf(buf, n, "%s", s);
    else snprintf(buf, n, "%.*s~", w - 1, s);
    return buf;
}

// Column headers split in two lines at the space nearest the middle, so
// the metric names (metrics table) fit 80 columns.
static void split_name(const char *name, char *a, char *b, size_t n)
{
    int len = (int)strlen(name), best = -1;
    for (int i = 0; i < len; i++)
        if (name[i] == ' ' && (best < 0 || abs(len / 2 - i) < abs(len / 2 - best))) best = i;
    if (best < 0) {
        snprintf(a, n, "%s", "");
        snprintf(b, n, "%s", name);
    } else {
        snprintf(a, n, "%.*s", best, name);
        snprintf(b, n, "%s", name + best + 1);
    }
}

// Widths of the fixed columns (engine, format) and of every metric column.
static void col_widths(const kvs_deploy_state *ds, int *we, int *wf, int *wc)
{
    *we = 6, *wf = ds->tab->have_best ? 10 : 6;   // "(own best)"
    for (int i = 0; i < n_lines(ds); i++) {
        const kvq_recommend_row *x = row_at(ds, i);
        int le = (int)strlen(x->engine), lf = (int)strlen(x->format);
        if (le > *we) *we = le < 12 ? le : 12;
        if (lf > *wf && i < ds->tab->n) *wf = lf < 14 ? lf : 14;
    }
    char a[48], b[48], v[48];
    for (int c = 0; c < KVQ_REC_N_COLS; c++) {
        kvq_metric_id m = kvq_recommend_cols[c].metric;
        split_name(kvq_metrics[m].name, a, b, sizeof a);
        wc[c] = (int)(strlen(a) > strlen(b) ? strlen(a) : strlen(b));
        int lv = (int)strlen(kvq_metric_fmt(m, 16.0, v, sizeof v));   // the widest value shape
        if (lv > wc[c]) wc[c] = lv;
    }
}

#define TAIL_W 13   // "front budget " after the metric columns (flags take the rest)
#define FIXED_W(we, wf) (2 + 1 + 1 + 1 + 1 + (we) + 1 + (wf) + 1)   // rank, front, marker, engine, format

// How many of the n scrolling columns (widths w[]) from ds->col0 fit in
// `room` cells; ds->col0 is clamped so the last one (and front/budget after
// it) can always be reached.
static int visible_cols(kvs_deploy_state *ds, int room, const int *w, int n)
{
    int max0 = n - 1;
    for (int c = n - 1, tail = TAIL_W; c >= 0; c--) {
        tail += w[c] + 1;
        if (tail > room) break;
        max0 = c;
    }
    if (ds->col0 > max0) ds->col0 = max0;
    if (ds->col0 < 0) ds->col0 = 0;
    int k = 0;
    for (int c = ds->col0, used = 0; c < n && used + w[c] + 1 <= room; c++, k++) used += w[c] + 1;
    return k;
}

static void draw_table(kvs_ui *ui, kvs_rect r, kvs_deploy_state *ds)
{
    const kvq_recommend_table *t = ds->tab;
    kvs_rect in = kvs_w_inner(r);
    // the ranking column stays beside the format; the others scroll (Left/Right) when they do not fit
    int we, wf, wc[KVQ_REC_N_COLS], order[KVQ_REC_N_COLS], ow[KVQ_REC_N_COLS], nv = 0, ns = 0;
    if (t) {
        col_widths(ds, &we, &wf, wc);
        int pin = t->by_output ? KVQ_REC_OUTPUT_ERROR : KVQ_REC_KEY_REL_MSE;
        order[ns++] = pin;
        for (int c = 0; c < KVQ_REC_N_COLS; c++)
            if (c != pin) order[ns++] = c;
        for (int k = 0; k < ns; k++) ow[k] = wc[order[k]];
        nv = 1 + visible_cols(ds, in.w - 1 - FIXED_W(we, wf) - ow[0] - 1, ow + 1, ns - 1);
    }
    char title[200];
    if (t)
        snprintf(title, sizeof title, "%s by %s, in budget first, * Pareto front%s", t->opts.engine,
                 kvq_metrics[kvq_recommend_rank_metric(t)].name, nv < ns ? " (Left/Right columns)" : "");
    else
        snprintf(title, sizeof title, "recommend");
    kvs_w_box(ui, r, title);
    kvs_hit_add(ui, r, HIT_TABLE, -1);
    if (!t) {
        const char *msg = ds->err[0] ? ds->err
                          : !ui->s->trace ? "no trace loaded: press : and type `load PATH`"
                          : kvs_job_busy(ui) && ui->job.fn == deploy_run ? "measuring every format on the trace... (Esc cancels)"
                          : kvs_job_busy(ui) ? "waiting for the running job (Esc cancels it)"
                                             : "r measures every format on the trace";
        kvs_w_text(ui, in.y + 1, in.x + 1, in.w - 2, ds->err[0] ? kvs_attr(ui, KVS_C_BAD) : kvs_attr(ui, KVS_C_DIM),
                   "%s", msg);
        return;
    }
    char a[48], b[48], v[48];
    int shown[KVQ_REC_N_COLS], n_shown = 0;   // the pinned column, then the scrolled ones
    shown[n_shown++] = order[0];
    for (int k = 1 + ds->col0; k < ns && n_shown < nv; k++) shown[n_shown++] = order[k];
    bool tail = 1 + ds->col0 + nv - 1 == ns;   // the last column shown: front, budget and flags follow
    attr_t ht = kvs_attr(ui, KVS_C_TITLE);
    int x0 = in.x + 1, xm = x0 + FIXED_W(we, wf);
    for (int line = 0; line < 2; line++) {
        kvs_w_text(ui, in.y + line, x0, in.w - 1, ht, "%2s  %-*s %-*s", line ? "#" : "", we + 2, line ? "engine" : "", wf,
                   line ? "format" : "");
        int x = xm;
        for (int k = 0; k < n_shown; k++) {
            int c = shown[k];
            split_name(kvq_metrics[kvq_recommend_cols[c].metric].name, a, b, sizeof a);
            kvs_w_text(ui, in.y + line, x, in.x + in.w - x, ht, "%*s", wc[c], line ? b : a);
            x += wc[c] + 1;
        }
        if (tail && x + TAIL_W <= in.x + in.w + 1)
            kvs_w_text(ui, in.y + line, x, in.x + in.w - x, ht, "%s", line ? "front budget  flags" : "");
    }
    int rows = in.h - 2, n = n_lines(ds);
    if (ds->sel >= n) ds->sel = n ? n - 1 : 0;
    if (ds->sel < ds->first) ds->first = ds->sel;
    if (ds->sel >= ds->first + rows) ds->first = ds->sel - rows + 1;
    if (ds->first > n - rows) ds->first = n - rows > 0 ? n - rows : 0;
    for (int i = ds->first; i < n && i - ds->first < rows; i++) {
        const kvq_recommend_row *x = row_at(ds, i);
        bool own = i >= t->n, sel = i == ds->sel;
        int y = in.y + 2 + i - ds->first, cx = xm;
        attr_t at = sel ? kvs_attr(ui, KVS_C_SEL) : own ? kvs_attr(ui, KVS_C_ACCENT) : A_NORMAL;
        char rk[8];
        snprintf(rk, sizeof rk, "%d", x->rank);
        if (sel) kvs_w_text(ui, y, in.x, in.w, at, "%*s", in.w, "");
        kvs_w_text(ui, y, x0, in.w - 1, at, "%2s%c %c %-*s %-*.*s", own || !x->ok ? "-" : rk, x->front ? '*' : ' ',
                   marker_of(x), we, x->engine, wf, wf, own ? "(own best)" : x->format);
        if (!x->ok) {
            char er[320];
            clip(x->error, in.x + in.w - cx - 8, er, sizeof er);
            kvs_w_text(ui, y, cx, in.x + in.w - cx, sel ? at : kvs_attr(ui, KVS_C_BAD), "failed: %s", er);
        } else {
            for (int k = 0; k < n_shown; k++) {
                int c = shown[k];
                kvs_w_text(ui, y, cx, in.x + in.w - cx, at, "%*s", wc[c],
                           kvq_metric_fmt(kvq_recommend_cols[c].metric, x->v[c], v, sizeof v));
                cx += wc[c] + 1;
            }
            if (tail && cx + TAIL_W <= in.x + in.w + 1) {
                bool budget = t->opts.budget_gib > 0 || own;
                const char *fit = !budget ? "-" : x->in_budget ? "fits" : "over";
                char fl[256];
                clip(own ? t->not_deployable : x->flags, in.x + in.w - cx - TAIL_W - 1, fl, sizeof fl);
                kvs_w_text(ui, y, cx, in.x + in.w - cx, sel || !budget || x->in_budget ? at : kvs_attr(ui, KVS_C_WARN),
                           "%5s %-6s  %s", x->front ? "*" : "-", fit, fl);
            }
        }
        kvs_hit_add(ui, (kvs_rect){y, in.x, 1, in.w}, HIT_ROW, i);
    }
}

// The selected row in full: what to pass the engine (or why it is not
// deployable), and every figure with its unit.
static void draw_detail(kvs_ui *ui, kvs_rect r, const kvs_deploy_state *ds)
{
    const kvq_recommend_row *x = row_at(ds, ds->sel);
    const kvq_recommend_table *t = ds->tab;
    if (!x) return;
    char line[512], out[512];
    if (ds->sel >= t->n)
        snprintf(line, sizeof line, "kvstudio's best within %.4f GiB: %s (%s)", t->own_budget_gib, x->label, x->flags);
    else
        snprintf(line, sizeof line, "%s %s:  %s", x->engine, x->format, x->flags);
    kvs_w_text(ui, r.y, r.x + 1, r.w - 1, kvs_attr(ui, KVS_C_ACCENT) | A_BOLD, "%s", clip(line, r.w - 2, out, sizeof out));
}

// Where an error lands on the plot's y axis: log10 by default (the formats
// span 1e-5..0.5), with exact zeros on the floor.
static double y_of(const kvs_deploy_state *ds, double e, double floor_log)
{
    if (ds->linear) return e;
    return e > 0 ? fmax(log10(e), floor_log) : floor_log;
}

static void draw_plot(kvs_ui *ui, kvs_rect r, const kvs_deploy_state *ds)
{
    const kvq_recommend_table *t = ds->tab;
    kvq_metric_id ym = kvq_recommend_rank_metric(t), xm = KVQ_M_KV_GIB_AT_CONTEXT;
    char title[160];
    snprintf(title, sizeof title, "%s (%s, y toggles) vs %s at %ld tokens", kvq_metrics[ym].name,
             ds->linear ? "linear" : "log", kvq_metrics[xm].name, t->opts.context);
    kvs_w_box(ui, r, title);
    kvs_rect in = kvs_w_inner(r);
    // legend on the right: one marker (and colour) per engine in the table
    const char *e[MAX_ENGINES];
    int ne = engines(e), legend_w = 22, ly = in.y;
    int lx = in.x + in.w - legend_w;
    for (int k = 0; k < ne && ly < in.y + in.h; k++) {
        int cnt = 0;
        for (int i = 0; i < t->n; i++) cnt += t->rows[i].ok && !strcmp(t->rows[i].engine, e[k]);
        if (!cnt) continue;
        kvq_recommend_row probe = {.engine = e[k]};
        kvs_hit_add(ui, (kvs_rect){ly, lx, 1, legend_w}, HIT_LEGEND, k);
        kvs_w_text(ui, ly++, lx, legend_w, color_of(ui, &probe), "%c %-12.12s %3d", marker_of(&probe), e[k], cnt);
    }
    if (t->have_best && ly < in.y + in.h)
        kvs_w_text(ui, ly++, lx, legend_w, color_of(ui, &t->best), "%c kvstudio (own)", OWN_MARKER);
    if (t->opts.budget_gib > 0 && ly < in.y + in.h) kvs_w_text(ui, ly++, lx, legend_w, kvs_attr(ui, KVS_C_DIM), ": budget");
    // scatter: GiB at the context (what the budget is in) vs the ranking error
    kvs_rect pr = {in.y + 1, in.x + 9, in.h - 3, in.w - 9 - legend_w - 1};
    if (pr.w < 8 || pr.h < 2) return;
    double x1 = t->opts.budget_gib, e_max = 0, e_min = INFINITY;
    for (int i = 0; i < n_lines(ds); i++) {
        const kvq_recommend_row *x = row_at(ds, i);
        double gx = x->v[KVQ_REC_GIB], ey = kvq_recommend_rank_err(t, x);
        if (!x->ok || !isfinite(gx) || !isfinite(ey)) continue;
        x1 = fmax(x1, gx);
        e_max = fmax(e_max, ey);
        if (ey > 0) e_min = fmin(e_min, ey);
    }
    // log floor: the decade of the smallest error, at most 3 decades under the largest
    double fl = isfinite(e_min) ? fmax(floor(log10(e_min)), floor(log10(e_max)) - 3) : -4;
    double y0 = ds->linear ? 0 : fl, y1 = ds->linear ? e_max * 1.05 : e_max > 0 ? log10(e_max) + 0.05 : fl + 1;
    static kvs_plot p;   // large dot buffers: keep off the stack
    kvs_plot_init(&p, pr, false, 0, x1 * 1.05, y0, y1);
    kvs_plot_draw(ui, &p, kvq_metrics[xm].name, NULL);
    if (!ds->linear) {   // the axis labels as errors, not their logs (over kvs_plot_draw's)
        attr_t dim = kvs_attr(ui, KVS_C_DIM);
        char hi[16], lo[16];
        if (kvs_fmt_num(pow(10, p.y1), 7, 3, hi, sizeof hi) < 0) snprintf(hi, sizeof hi, "%s", "");
        snprintf(lo, sizeof lo, "<=1e%d", (int)fl);   // the floor holds the exact formats too
        kvs_w_text(ui, p.r.y, p.r.x - 9, 7, dim, "%7s", hi);   // where kvs_plot_draw puts its labels
        kvs_w_text(ui, p.r.y + p.r.h - 1, p.r.x - 9, 7, dim, "%7s", lo);
    }
    int cw = p.r.w, ch = p.r.h;
    if (t->opts.budget_gib > 0) {   // the budget as a dotted vertical line
        int bx = (int)lround(t->opts.budget_gib / p.x1 * (cw - 1));
        for (int y = 0; y < ch; y++) kvs_w_text(ui, p.r.y + y, p.r.x + bx, 1, kvs_attr(ui, KVS_C_DIM), ":");
    }
    // the selected row last, so it is the one seen where points overlap
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n_lines(ds); i++) {
            if ((i == ds->sel) != pass) continue;
            const kvq_recommend_row *x = row_at(ds, i);
            double gx = x->v[KVQ_REC_GIB], ey = kvq_recommend_rank_err(t, x);
            if (!x->ok || !isfinite(gx) || !isfinite(ey)) continue;
            double yv = y_of(ds, ey, fl);
            int cx = (int)lround(gx / p.x1 * (cw - 1)), cy = (int)lround((1 - (yv - p.y0) / (p.y1 - p.y0)) * (ch - 1));
            attr_t a = pass ? kvs_attr(ui, KVS_C_SEL) | A_BOLD : color_of(ui, x);
            kvs_w_text(ui, p.r.y + cy, p.r.x + cx, 1, a, "%c", marker_of(x));
        }
}

static void deploy_draw(kvs_ui *ui, kvs_rect r)
{
    kvs_deploy_state *ds = state(ui);
    if (!ds) return;
    const kvq_trace *tr = ui->s->trace;
    if (ds->tab && ds->tab_trace != tr && !ds->want) {   // another trace: measure it
        free(ds->tab);
        ds->tab = NULL;
        ds->want = true;
    }
    if (ds->want) deploy_start(ui);
    draw_settings(ui, (kvs_rect){r.y, r.x, 1, r.w}, ds);
    int th = ds->tab ? (r.h - 2) * 11 / 20 : r.h - 1;
    if (ds->tab && th < 6) th = 6;
    draw_table(ui, (kvs_rect){r.y + 1, r.x, th, r.w}, ds);
    if (!ds->tab) return;
    draw_detail(ui, (kvs_rect){r.y + 1 + th, r.x, 1, r.w}, ds);
    draw_plot(ui, (kvs_rect){r.y + 2 + th, r.x, r.h - 2 - th, r.w}, ds);
}

// ---- keys ----
static int dk_move(kvs_ui *ui, int key)
{
    kvs_deploy_state *ds = state(ui);
    if (!ds) return KVS_KEY_HANDLED;
    int n = n_lines(ds);
    switch (key) {
    case KEY_UP: case 'k': ds->sel--; break;
    case KEY_DOWN: case 'j': ds->sel++; break;
    case KEY_PPAGE: ds->sel -= 8; break;
    case KEY_NPAGE: ds->sel += 8; break;
    case KEY_HOME: case 'g': ds->sel = 0; break;
    case KEY_END: case 'G': ds->sel = n - 1; break;
    default: return KVS_KEY_UNHANDLED;
    }
    if (ds->sel >= n) ds->sel = n - 1;
    if (ds->sel < 0) ds->sel = 0;
    return KVS_KEY_REDRAW;
}

static int exec_fmt(kvs_ui *ui, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int exec_fmt(kvs_ui *ui, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return kvs_ui_exec(ui, line);
}

static int dk_engine(kvs_ui *ui, int key)
{
    kvs_deploy_state *ds = state(ui);
    if (!ds) return KVS_KEY_HANDLED;
    const char *e[MAX_ENGINES];
    int n = engines(e), k = engine_index(ds->engine);   // -1 = all
    k += key == 'E' ? -1 : 1;
    if (k >= n) k = -1;
    if (k < -1) k = n - 1;
    exec_fmt(ui, "recommend --engine %s", k < 0 ? "all" : e[k]);
    return KVS_KEY_REDRAW;
}

// c / b / t: the option on the prompt, its value selected (typing replaces it)
static int dk_edit(kvs_ui *ui, int key)
{
    kvs_deploy_state *ds = state(ui);
    if (!ds) return KVS_KEY_HANDLED;
    char v[32];
    const char *opt = key == 'c' ? "context" : key == 'b' ? "budget-gb" : "seq-len";
    if (key == 'c') snprintf(v, sizeof v, "%ld", ds->context ? ds->context : ui->s->trace ? ui->s->trace->n_tokens : 0);
    else if (key == 'b') snprintf(v, sizeof v, "%g", ds->budget_gib);
    else snprintf(v, sizeof v, "%d", ds->seq_len);
    char line[64];
    snprintf(line, sizeof line, "recommend --%s ", opt);
    kvs_prompt_open_edit(ui, line, v);
    return KVS_KEY_REDRAW;
}

static int dk_cols(kvs_ui *ui, int key)
{
    kvs_deploy_state *ds = state(ui);
    if (ds) ds->col0 += key == KEY_LEFT || key == 'h' ? -1 : 1;   // clamped when drawn
    return KVS_KEY_REDRAW;
}

static int dk_axis(kvs_ui *ui, int key)
{
    (void)key;
    kvs_deploy_state *ds = state(ui);
    if (ds) ds->linear = !ds->linear;
    return KVS_KEY_REDRAW;
}

static int dk_rerun(kvs_ui *ui, int key)
{
    (void)key;
    deploy_request(ui);
    return KVS_KEY_REDRAW;
}

static int dk_enter(kvs_ui *ui, int key)
{
    (void)key;
    kvs_deploy_state *ds = state(ui);
    const kvq_recommend_row *x = ds ? row_at(ds, ds->sel) : NULL;
    if (!x) return KVS_KEY_HANDLED;
    char line[640] = "";
    size_t len = 0;
    for (int c = 0; c < KVQ_REC_N_COLS && x->ok; c++) {
        char one[96];
        kvq_metric_fmt_named(kvq_recommend_cols[c].metric, x->v[c], one, sizeof one);
        len += (size_t)snprintf(line + len, sizeof line - len, "%s%s", c ? ", " : "", one);
    }
    bool own = ds->sel >= ds->tab->n, budget = own || ds->tab->opts.budget_gib > 0;
    char rank[16] = "-";
    if (x->rank) snprintf(rank, sizeof rank, "%d", x->rank);
    kvs_ui_set_status(ui, false, "%s %s (rank %s%s%s): %s  %s", x->engine, own ? x->label : x->format, rank,
                      !budget ? "" : x->in_budget ? ", within the budget" : ", over the budget",
                      x->front ? ", on the Pareto front" : "", x->flags, x->ok ? line : x->error);
    return KVS_KEY_REDRAW;
}

static const kvs_keybind deploy_keys[] = {
    {KEY_UP, 'k', "Up/Down", "row", dk_move},
    {KEY_DOWN, 'j', NULL, NULL, dk_move},
    {KEY_PPAGE, 0, NULL, NULL, dk_move},
    {KEY_NPAGE, 0, NULL, NULL, dk_move},
    {KEY_HOME, 'g', NULL, NULL, dk_move},
    {KEY_END, 'G', NULL, NULL, dk_move},
    {KEY_LEFT, 'h', "Left/Right", "more columns", dk_cols},
    {KEY_RIGHT, 'l', NULL, NULL, dk_cols},
    {'e', 'E', "e/E", "engine: all, then each engine", dk_engine},
    {'c', 0, "c", "context (tokens)", dk_edit},
    {'b', 0, "b", "budget (GiB)", dk_edit},
    {'t', 0, "t", "tokens replayed", dk_edit},
    {'y', 0, "y", "plot: log / linear error axis", dk_axis},
    {'r', 0, "r", "measure again", dk_rerun},
    {'\n', KEY_ENTER, "Enter", "the row's flags and figures to the status line and log", dk_enter},
    {0, 0, NULL, NULL, NULL},
};

// Click a row to select it (again: Enter); click an engine in the legend to
// show only that engine (again: all); the wheel scrolls the table.
static int deploy_mouse(kvs_ui *ui, const kvs_mouse *m)
{
    kvs_deploy_state *ds = state(ui);
    if (!ds) return KVS_KEY_UNHANDLED;
    if (m->kind != KVS_MOUSE_CLICK)
        return m->tag == HIT_ROW || m->tag == HIT_TABLE ? dk_move(ui, m->kind == KVS_MOUSE_WHEEL_UP ? KEY_UP : KEY_DOWN)
                                                        : KVS_KEY_UNHANDLED;
    if (m->tag == HIT_ROW) {
        if (ds->sel == m->index) return dk_enter(ui, '\n');
        ds->sel = m->index;
        return KVS_KEY_REDRAW;
    }
    if (m->tag == HIT_LEGEND) {
        const char *e[MAX_ENGINES];
        int n = engines(e);
        if (m->index < 0 || m->index >= n) return KVS_KEY_HANDLED;
        exec_fmt(ui, "recommend --engine %s", strcmp(ds->engine, e[m->index]) ? e[m->index] : "all");
        return KVS_KEY_REDRAW;
    }
    return KVS_KEY_UNHANDLED;
}

const kvs_view kvs_view_deploy = {
    .name = "deploy", .title = "Deploy", .draw = deploy_draw, .keys = deploy_keys, .mouse = deploy_mouse,
};
