// plots.c — view 4: rate-distortion curves of every run so far (bits per
// coordinate vs key cosine or attention error), compression bars, the
// per-layer key bit allocation and k-means convergence. Each plot is first
// built as a plain chart (series or bars), then drawn in curses (braille in
// UTF-8, one character per cell otherwise) or written as SVG (`export svg`).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "label.h"
#include "calib/kmeans.h"
#include "safetensors.h"
#include "tui.h"
#include "ui.h"

#define MAX_SERIES 16
#define MAX_POINTS KVS_MAX_RUNS
#define MAX_BARS KVS_MAX_RUNS

typedef struct {
    char name[272];
    int n;
    double x[MAX_POINTS], y[MAX_POINTS];
} series;

typedef struct {
    bool bars;                 // horizontal bars instead of lines
    char title[192], xlabel[64], ylabel[64];
    int n_series;
    series s[MAX_SERIES];
    int n_bars;
    char bar_label[MAX_BARS][272];
    double bar_v[MAX_BARS];
    int bar_color[MAX_BARS];
    char empty[160];           // why there is nothing to plot ("" when there is)
} chart;

typedef struct {
    const char *name, *title;
    void (*build)(const kvs_session *s, const kvs_plots_state *ps, chart *c);
} plot_kind;

static void sort_series(series *s)
{
    for (int i = 1; i < s->n; i++)   // insertion sort by x: a handful of points
        for (int j = i; j > 0 && s->x[j - 1] > s->x[j]; j--) {
            double tx = s->x[j], ty = s->y[j];
            s->x[j] = s->x[j - 1], s->y[j] = s->y[j - 1];
            s->x[j - 1] = tx, s->y[j - 1] = ty;
        }
}

// The rate-distortion y axes `a` cycles through: one metric each, never two
// metrics on one axis (lab runs measure attention error (keys), replays
// measure output error).
static const kvq_metric_id rd_axes[] = {KVQ_M_KEY_COSINE, KVQ_M_ATTN_KEY_ERROR, KVQ_M_OUTPUT_ERROR, KVQ_M_ATTN_KL};
#define N_RD_AXES ((int)(sizeof rd_axes / sizeof rd_axes[0]))

static double run_metric(const kvs_run *r, kvq_metric_id id)
{
    for (int i = 0; i < kvs_run_n_fields(); i++)
        if (kvs_run_field_metric(i) == id) return kvs_run_field(r, i);
    return NAN;
}

// One curve per configuration up to its key bits: the run label with the
// key width left out ("turboquant_mse v2 outlier_channels=48").
static void series_name(const kvs_run *r, char *buf, size_t n)
{
    char lab[256];
    if (r->cfg.n_bit_allocation) {   // an allocation is its own point: its label names it
        snprintf(buf, n, "%s", r->label);
        return;
    }
    kvq_config c = r->cfg;
    c.bits = 0;
    kvq_config_label(&c, "", lab, sizeof lab);
    const char *art = strstr(r->label, " art=");   // the id stays with the run's label
    char *k = strstr(lab, " k0/");
    if (k) memmove(k + 1, k + 4, strlen(k + 4) + 1);
    snprintf(buf, n, "%s%s", lab, art ? art : "");
}

static void build_rd(const kvs_session *s, const kvs_plots_state *ps, chart *c)
{
    int ax = ps && ps->y_axis > 0 && ps->y_axis < N_RD_AXES ? ps->y_axis : 0;
    const kvq_metric *ym = &kvq_metrics[rd_axes[ax]], *xm = &kvq_metrics[KVQ_M_KEY_BITS];
    snprintf(c->title, sizeof c->title, "rate-distortion: %s vs %s, one curve per configuration", xm->name, ym->name);
    snprintf(c->xlabel, sizeof c->xlabel, "%s (%s)", xm->name, xm->unit);
    if (ym->unit[0]) snprintf(c->ylabel, sizeof c->ylabel, "%s (%s)", ym->name, ym->unit);
    else snprintf(c->ylabel, sizeof c->ylabel, "%s", ym->name);
    for (int i = 0; i < s->n_runs; i++) {
        const kvs_run *r = &s->runs[i];
        double y = run_metric(r, ym->id);
        if (!isfinite(y) || !isfinite(r->key_bits)) continue;
        char name[sizeof c->s[0].name];
        series_name(r, name, sizeof name);
        int k = 0;
        while (k < c->n_series && strcmp(c->s[k].name, name)) k++;
        if (k == c->n_series) {
            if (k == MAX_SERIES) continue;
            c->n_series++;
            snprintf(c->s[k].name, sizeof c->s[k].name, "%s", name);
            c->s[k].n = 0;
        }
        series *sr = &c->s[k];
        if (sr->n < MAX_POINTS) {
            sr->x[sr->n] = r->key_bits;
            sr->y[sr->n++] = y;
        }
    }
    for (int k = 0; k < c->n_series; k++) sort_series(&c->s[k]);
    if (!c->n_series)
        snprintf(c->empty, sizeof c->empty, "no runs with %s yet: %s", ym->name,
                 ax == 0 || ax == 1 ? "run methods in the lab (2 Lab, r) or `run`" : "`benchmark` or `compare` a config");
}

static void build_compression(const kvs_session *s, const kvs_plots_state *ps, chart *c)
{
    (void)ps;
    c->bars = true;
    const kvq_metric *cm = &kvq_metrics[KVQ_M_COMPRESSION];
    snprintf(c->title, sizeof c->title, "%s: %s, every run", cm->name, cm->formula);
    snprintf(c->xlabel, sizeof c->xlabel, "%s", cm->unit);
    for (int i = 0; i < s->n_runs && c->n_bars < MAX_BARS; i++) {
        const kvs_run *r = &s->runs[i];
        snprintf(c->bar_label[c->n_bars], sizeof c->bar_label[0], "%d %s", i + 1, r->label);
        c->bar_v[c->n_bars] = r->compression;
        const kvq_method *m = kvq_method_find(r->cfg.method);
        c->bar_color[c->n_bars++] = m ? (int)(m - kvq_methods) : 0;
    }
    if (!c->n_bars) snprintf(c->empty, sizeof c->empty, "no runs yet: run methods in the lab (2 Lab, r) or `run`");
}

static void build_allocation(const kvs_session *s, const kvs_plots_state *ps, chart *c)
{
    (void)ps;
    c->bars = true;
    const kvq_config *cfg = &s->cfg;
    int nl = s->trace ? s->trace->n_layers : 0;
    const char *src = "uniform (config bits)";
    int nd = 0;
    int64_t sh[8];
    const float *rq = s->art ? kvq_artifacts_get(s->art, "ratequant.bits", &nd, sh) : NULL;
    if (cfg->n_bit_allocation > 0) {
        nl = cfg->n_bit_allocation;
        src = "config bit_allocation";
    } else if (rq && nd >= 1) {
        nl = (int)sh[0];
        src = "RateQuant artifacts";
    }
    snprintf(c->title, sizeof c->title, "per-layer key bit allocation: %s", src);
    snprintf(c->xlabel, sizeof c->xlabel, "bits");
    for (int l = 0; l < nl && l < MAX_BARS; l++) {
        double b = cfg->bits;
        if (cfg->n_bit_allocation > 0) {
            b = cfg->bit_allocation[l];
        } else if (rq && nd >= 1) {
            int per = nd == 2 ? (int)sh[1] : 1;
            b = 0;
            for (int h = 0; h < per; h++) b += rq[l * per + h];
            b /= per;
        }
        snprintf(c->bar_label[c->n_bars], sizeof c->bar_label[0], "layer %d", l);
        c->bar_v[c->n_bars] = b;
        c->bar_color[c->n_bars++] = (int)b;
    }
    if (!c->n_bars) snprintf(c->empty, sizeof c->empty, "no trace loaded");
}

static void build_kmeans(const kvs_session *s, const kvs_plots_state *ps, chart *c)
{
    (void)s;
    snprintf(c->title, sizeof c->title, "k-means convergence: %s",
             ps && ps->n_inertia ? ps->kmeans_label : "(press Enter to run on the explorer's head)");
    snprintf(c->xlabel, sizeof c->xlabel, "iteration");
    snprintf(c->ylabel, sizeof c->ylabel, "%s", kvq_metrics[KVQ_M_INERTIA].name);
    if (!ps || !ps->n_inertia) {
        snprintf(c->empty, sizeof c->empty,
                 "press Enter: k-means (k = 16) on the keys of the head selected in the explorer");
        return;
    }
    c->n_series = 1;
    snprintf(c->s[0].name, sizeof c->s[0].name, "%s", kvq_metrics[KVQ_M_INERTIA].name);
    for (int i = 0; i < ps->n_inertia && i < MAX_POINTS; i++) {
        c->s[0].x[i] = i + 1;
        c->s[0].y[i] = ps->inertia[i];
        c->s[0].n++;
    }
}

// A bar's value with the chart's unit; n/a when not measured (never nan).
static const char *bar_value(const chart *c, int i, char *buf, size_t n)
{
    if (isfinite(c->bar_v[i])) snprintf(buf, n, "%.2f%s", c->bar_v[i], c->xlabel);
    else snprintf(buf, n, "n/a");
    return buf;
}

static const plot_kind plots[] = {
    {"rd", "rate-distortion", build_rd},
    {"compression", "compression", build_compression},
    {"allocation", "bit allocation", build_allocation},
    {"kmeans", "k-means", build_kmeans},
};
#define N_PLOTS ((int)(sizeof plots / sizeof plots[0]))

static void ranges(const chart *c, double *x0, double *x1, double *y0, double *y1)
{
    *x0 = *y0 = INFINITY;
    *x1 = *y1 = -INFINITY;
    for (int k = 0; k < c->n_series; k++)
        for (int i = 0; i < c->s[k].n; i++) {
            *x0 = fmin(*x0, c->s[k].x[i]), *x1 = fmax(*x1, c->s[k].x[i]);
            *y0 = fmin(*y0, c->s[k].y[i]), *y1 = fmax(*y1, c->s[k].y[i]);
        }
    double px = (*x1 - *x0) * 0.05, py = (*y1 - *y0) * 0.08;
    if (!(px > 0)) px = 0.5;
    if (!(py > 0)) py = fabs(*y0) * 0.01 + 1e-3;
    *x0 -= px, *x1 += px, *y0 -= py, *y1 += py;
}

static double bars_max(const chart *c)
{
    double m = 0;
    for (int i = 0; i < c->n_bars; i++)
        if (isfinite(c->bar_v[i]) && c->bar_v[i] > m) m = c->bar_v[i];
    return m > 0 ? m : 1;
}

// ---- curses ----
static void draw_chart(kvs_ui *ui, kvs_rect r, const chart *c)
{
    kvs_w_box(ui, r, c->title);
    kvs_rect in = kvs_w_inner(r);
    if (c->empty[0]) {
        kvs_w_text(ui, in.y + 1, in.x + 2, in.w - 4, kvs_attr(ui, KVS_C_DIM), "%s", c->empty);
        return;
    }
    if (c->bars) {
        double m = bars_max(c);
        int lw = 30, vis = in.h;
        int first = c->n_bars > vis ? c->n_bars - vis : 0;   // newest runs stay visible
        for (int i = first; i < c->n_bars; i++) {
            int y = in.y + i - first;
            kvs_w_text(ui, y, in.x + 1, lw, A_NORMAL, "%-30.30s", c->bar_label[i]);
            kvs_w_hbar(ui, y, in.x + lw + 2, in.w - lw - 12, c->bar_v[i] / m,
                       kvs_attr(ui, (kvs_color)(KVS_C_S1 + c->bar_color[i] % KVS_N_SERIES)));
            char v[96];
            kvs_w_text(ui, y, in.x + in.w - 9, 9, A_BOLD, "%7s", bar_value(c, i, v, sizeof v));
        }
        return;
    }
    int legend_w = 34;
    kvs_rect pr = {in.y + 1, in.x + 9, in.h - 3, in.w - 9 - legend_w - 1};
    static kvs_plot p;   // large dot buffers: keep off the stack
    double x0, x1, y0, y1;
    ranges(c, &x0, &x1, &y0, &y1);
    kvs_plot_init(&p, pr, ui->utf8, x0, x1, y0, y1);
    for (int k = 0; k < c->n_series; k++) {
        const series *s = &c->s[k];
        for (int i = 0; i < s->n; i++) {
            kvs_plot_point(&p, s->x[i], s->y[i], k);
            if (i) kvs_plot_line(&p, s->x[i - 1], s->y[i - 1], s->x[i], s->y[i], k);
        }
    }
    kvs_plot_draw(ui, &p, c->xlabel, c->ylabel);
    int lx = in.x + in.w - legend_w;
    for (int k = 0; k < c->n_series && k < in.h; k++)
        kvs_w_text(ui, in.y + 1 + k, lx, legend_w, kvs_attr(ui, (kvs_color)(KVS_C_S1 + k % KVS_N_SERIES)),
                   "%s %-26.26s %d", ui->utf8 ? "\xe2\x94\x81\xe2\x94\x81" : "--", c->s[k].name, c->s[k].n);
}

static void plots_draw(kvs_ui *ui, kvs_rect r)
{
    kvs_plots_state *ps = &ui->plots;
    if (ps->which < 0 || ps->which >= N_PLOTS) ps->which = 0;
    // tabs of the plots
    int x = r.x + 1;
    for (int i = 0; i < N_PLOTS; i++) {
        char t[48];
        snprintf(t, sizeof t, " %s ", plots[i].title);
        kvs_w_text(ui, r.y, x, r.w - x, i == ps->which ? kvs_attr(ui, KVS_C_SEL) : kvs_attr(ui, KVS_C_DIM), "%s", t);
        x += (int)strlen(t) + 1;
    }
    chart *c = calloc(1, sizeof *c);
    if (!c) return;
    plots[ps->which].build(ui->s, ps, c);   // runs change only on this thread: no lock
    draw_chart(ui, (kvs_rect){r.y + 1, r.x, r.h - 1, r.w}, c);
    free(c);
}

// The rate-distortion chart alone, for the model view to show beside its own.
void kvs_plots_draw_rd(kvs_ui *ui, kvs_rect r)
{
    chart *c = calloc(1, sizeof *c);
    if (!c) return;
    build_rd(ui->s, &ui->plots, c);
    draw_chart(ui, r, c);
    free(c);
}

// ---- SVG ----
static const char *const svg_colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static void svg_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

static void svg_chart(FILE *f, const chart *c)
{
    const int W = 840, H = 520, L = 80, R = 190, T = 50, B = 60;
    const int pw = W - L - R, ph = H - T - B;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"16\">", L);
    svg_text(f, c->title);
    fputs("</text>\n", f);
    if (c->empty[0]) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#666\">", L, T + ph / 2);
        svg_text(f, c->empty);
        fputs("</text>\n</svg>\n", f);
        return;
    }
    if (c->bars) {
        double m = bars_max(c);
        double bh = (double)ph / (c->n_bars ? c->n_bars : 1);
        for (int i = 0; i < c->n_bars; i++) {
            char v[96];
            double y = T + i * bh, w = isfinite(c->bar_v[i]) ? c->bar_v[i] / m * (pw - 60) : 0;
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", L + 150, y + bh * 0.65);
            svg_text(f, c->bar_label[i]);
            fprintf(f, "</text>\n<rect x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>\n"
                       "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                    L + 156, y + bh * 0.15, w, bh * 0.7, svg_colors[c->bar_color[i] % 10], L + 160 + w,
                    y + bh * 0.65, bar_value(c, i, v, sizeof v));
        }
        fputs("</svg>\n", f);
        return;
    }
    double x0, x1, y0, y1;
    ranges(c, &x0, &x1, &y0, &y1);
#define SX(v) (L + ((v) - x0) / (x1 - x0) * pw)
#define SY(v) (T + ph - ((v) - y0) / (y1 - y0) * ph)
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", L, T, pw, ph);
    for (int i = 0; i <= 5; i++) {
        double xv = x0 + (x1 - x0) * i / 5, yv = y0 + (y1 - y0) * i / 5;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.3g</text>\n",
                SX(xv), T, SX(xv), T + ph, SX(xv), T + ph + 18, xv);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n",
                L, SY(yv), L + pw, SY(yv), L - 6, SY(yv) + 4, yv);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", L + pw / 2, H - 15);
    svg_text(f, c->xlabel);
    fprintf(f, "</text>\n<text x=\"18\" y=\"%d\" transform=\"rotate(-90 18 %d)\" text-anchor=\"middle\">", T + ph / 2,
            T + ph / 2);
    svg_text(f, c->ylabel);
    fputs("</text>\n", f);
    for (int k = 0; k < c->n_series; k++) {
        const series *s = &c->s[k];
        const char *col = svg_colors[k % 10];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (int i = 0; i < s->n; i++) fprintf(f, "%.1f,%.1f ", SX(s->x[i]), SY(s->y[i]));
        fputs("\"/>\n", f);
        for (int i = 0; i < s->n; i++)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", SX(s->x[i]), SY(s->y[i]), col);
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/><text x=\"%d\" y=\"%d\">",
                W - R + 15, T + 10 + 18 * k, W - R + 35, T + 10 + 18 * k, col, W - R + 40, T + 14 + 18 * k);
        svg_text(f, s->name);
        fputs("</text>\n", f);
    }
#undef SX
#undef SY
    fputs("</svg>\n", f);
}

int kvs_plot_export_svg(kvs_session *s, const char *path)
{
    kvs_ui *ui = s->ui;
    const kvs_plots_state *ps = ui ? &ui->plots : NULL;
    int which = ps && ps->which >= 0 && ps->which < N_PLOTS ? ps->which : 0;
    chart *c = calloc(1, sizeof *c);
    if (!c) return kvs_errorf(s, "export: out of memory");
    plots[which].build(s, ps, c);   // UI thread or batch: runs cannot change meanwhile
    kvq_atomic_file af;
    if (kvq_atomic_open(&af, path)) {
        free(c);
        return kvs_errorf(s, "export: %s", kvq_last_error());
    }
    svg_chart(af.fp, c);
    free(c);
    if (ferror((FILE *)af.fp)) {
        kvq_atomic_abort(&af);
        return kvs_errorf(s, "export: %s: write failed", path);
    }
    if (kvq_atomic_commit(&af)) return kvs_errorf(s, "export: %s", kvq_last_error());
    return 0;
}

// ---- k-means job ----
typedef struct {
    int layer, head, k;
    kvq_kmeans_result res;
} km_job;

static int km_run(kvs_job *j)
{
    km_job *m = j->arg;
    kvq_progress p = {.fn = kvs_job_progress, .user = j};
    kvq_progress_begin(&p);
    pthread_mutex_lock(&j->s->lock);
    const kvq_trace *t = j->s->trace;
    kvq_status st = KVQ_OK;
    float *x = t ? malloc(sizeof(float) * (size_t)t->n_tokens * (size_t)t->head_dim) : NULL;
    if (!t) st = kvq_error(KVQ_ERR_ARG, "k-means: no trace loaded");
    else if (!x) st = kvq_error(KVQ_ERR_NOMEM, "k-means: out of memory");
    else st = kvq_trace_keys(t, m->layer, m->head, x);
    if (!st) {
        // every row: the plotted inertia is over all the head's keys (docs/METRICS.md)
        kvq_kmeans_opts o = {.k = m->k, .max_iter = 60, .tol = 0, .seed = 42, .progress = &p,
                             .max_points_per_centroid = -1};
        st = kvq_kmeans(x, (size_t)t->n_tokens, t->head_dim, &o, &m->res);
    }
    pthread_mutex_unlock(&j->s->lock);
    free(x);
    return st;
}

static void km_done(kvs_ui *ui, kvs_job *j)
{
    km_job *m = j->arg;
    kvs_plots_state *ps = &ui->plots;
    if (j->status) {
        kvs_ui_set_status(ui, j->status != KVQ_ERR_CANCELLED, "k-means: %s", j->msg);
    } else {
        free(ps->inertia);
        ps->inertia = malloc(sizeof(double) * (size_t)(m->res.n_iter ? m->res.n_iter : 1));
        ps->n_inertia = ps->inertia ? m->res.n_iter : 0;
        if (ps->inertia) memcpy(ps->inertia, m->res.inertia, sizeof(double) * (size_t)m->res.n_iter);
        snprintf(ps->kmeans_label, sizeof ps->kmeans_label, "keys of layer %d head %d, k = %d, %d iterations",
                 m->layer, m->head, m->k, m->res.n_iter);
        kvs_ui_set_status(ui, false, "k-means: %s, inertia %.4g -> %.4g", ps->kmeans_label,
                          m->res.n_iter ? m->res.inertia[0] : 0.0,
                          m->res.n_iter ? m->res.inertia[m->res.n_iter - 1] : 0.0);
    }
    kvq_kmeans_result_free(&m->res);
    free(m);
    j->arg = NULL;
}

void kvs_plots_free(kvs_ui *ui)
{
    free(ui->plots.inertia);
    ui->plots.inertia = NULL;
    ui->plots.n_inertia = 0;
}

// ---- keys ----
static int k_next(kvs_ui *ui, int key)
{
    int d = key == KEY_LEFT || key == 'h' ? N_PLOTS - 1 : 1;
    ui->plots.which = (ui->plots.which + d) % N_PLOTS;
    return KVS_KEY_REDRAW;
}

static int k_axis(kvs_ui *ui, int key)
{
    (void)key;
    ui->plots.y_axis = (ui->plots.y_axis + 1) % N_RD_AXES;
    ui->plots.which = 0;
    return KVS_KEY_REDRAW;
}

static int k_enter(kvs_ui *ui, int key)
{
    (void)key;
    if (ui->plots.which != 3) return KVS_KEY_HANDLED;
    km_job *m = calloc(1, sizeof *m);
    if (!m) return KVS_KEY_HANDLED;
    m->layer = ui->ex.layer;
    m->head = ui->ex.head;
    m->k = 16;
    if (kvs_job_start(ui, "k-means", km_run, km_done, m)) free(m);
    return KVS_KEY_REDRAW;
}

static const kvs_keybind plots_keys[] = {
    {KEY_RIGHT, 'l', "Left/Right", "previous / next plot", k_next},
    {KEY_LEFT, 'h', NULL, NULL, k_next},
    {'a', 0, "a", "rate-distortion y axis: key cosine, attention error (keys), output error, attention KL", k_axis},
    {'\n', KEY_ENTER, "Enter", "run k-means (k-means plot)", k_enter},
    {0, 0, NULL, NULL, NULL},
};

const kvs_view kvs_view_plots = {
    .name = "plots", .title = "Plots", .draw = plots_draw, .keys = plots_keys,
};
