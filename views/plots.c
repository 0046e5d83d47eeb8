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
    int slot;                  // colour and marker (config_slots)
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
    int bar_color[MAX_BARS];   // a series slot (config_slots) or, for the allocation, the bits
    double y_lo, y_hi;         // bounds the metric cannot cross (NAN = none): no negative error axis
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

// The slot (colour, marker) of every run's configuration: its rank among
// the configurations in order of first appearance in the history, so one
// configuration looks the same in every plot and in SVG, and two of them
// share a look only past 12 colours.
static void config_slots(const kvs_session *s, int *slot)
{
    static char names[KVS_MAX_RUNS][272];   // UI thread or batch, one at a time
    int n_names = 0;
    for (int i = 0; i < s->n_runs; i++) {
        char name[272];
        series_name(&s->runs[i], name, sizeof name);
        int k = 0;
        while (k < n_names && strcmp(names[k], name)) k++;
        if (k == n_names) snprintf(names[n_names++], sizeof names[0], "%s", name);
        slot[i] = k;
    }
}

// Bounds of a metric's axis: errors and counts from 0, cosines up to 1.
static void metric_bounds(kvq_metric_id id, chart *c)
{
    c->y_lo = c->y_hi = NAN;
    if (id == KVQ_M_KEY_COSINE || id == KVQ_M_VALUE_COSINE || id == KVQ_M_TOPK_RECALL) c->y_hi = 1;
    else c->y_lo = 0;
}

static void build_rd(const kvs_session *s, const kvs_plots_state *ps, chart *c)
{
    int ax = ps && ps->y_axis > 0 && ps->y_axis < N_RD_AXES ? ps->y_axis : 0;
    const kvq_metric *ym = &kvq_metrics[rd_axes[ax]], *xm = &kvq_metrics[KVQ_M_KEY_BITS];
    snprintf(c->title, sizeof c->title, "rate-distortion: %s vs %s, one curve per configuration", xm->name, ym->name);
    snprintf(c->xlabel, sizeof c->xlabel, "%s (%s)", xm->name, xm->unit);
    if (ym->unit[0]) snprintf(c->ylabel, sizeof c->ylabel, "%s (%s)", ym->name, ym->unit);
    else snprintf(c->ylabel, sizeof c->ylabel, "%s", ym->name);
    metric_bounds(ym->id, c);
    static int slot[KVS_MAX_RUNS];
    config_slots(s, slot);
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
            c->s[k].slot = slot[i];
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
    snprintf(c->title, sizeof c->title, "%s of every run: %s", cm->name, cm->formula);
    snprintf(c->xlabel, sizeof c->xlabel, "%s", cm->unit);
    static int slot[KVS_MAX_RUNS];
    config_slots(s, slot);
    for (int i = 0; i < s->n_runs && c->n_bars < MAX_BARS; i++) {
        const kvs_run *r = &s->runs[i];
        snprintf(c->bar_label[c->n_bars], sizeof c->bar_label[0], "%d %s", i + 1, r->label);
        c->bar_v[c->n_bars] = r->compression;
        c->bar_color[c->n_bars++] = slot[i];   // the colour of its curve in rate-distortion
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
    c->y_lo = 0, c->y_hi = NAN;
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
    char num[16];
    if (!isfinite(c->bar_v[i]) || kvs_fmt_num(c->bar_v[i], 7, 2, num, sizeof num) < 0) snprintf(buf, n, "n/a");
    else snprintf(buf, n, "%s%s%s", num, strcmp(c->xlabel, "x") ? " " : "", c->xlabel);
    return buf;
}

static const plot_kind plots[] = {
    {"rd", "rate-distortion", build_rd},
    {"compression", "compression", build_compression},
    {"allocation", "bit allocation", build_allocation},
    {"kmeans", "k-means", build_kmeans},
};
#define N_PLOTS ((int)(sizeof plots / sizeof plots[0]))

// A round step for about `ticks` intervals over span: 1, 2 or 5 x 10^k.
static double nice_step(double span, int ticks)
{
    double raw = span / ticks, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

// Data ranges padded a little and widened to round ticks (ystep, for SVG
// grid lines and labels), never past the metric's bounds.
static void ranges(const chart *c, double *x0, double *x1, double *y0, double *y1, double *ystep, double *xstep)
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
    if (isfinite(c->y_lo) && *y0 < c->y_lo) *y0 = c->y_lo;
    if (isfinite(c->y_hi) && *y1 > c->y_hi) *y1 = c->y_hi;
    *ystep = nice_step(*y1 - *y0, 5);
    *y0 = floor(*y0 / *ystep + 1e-9) * *ystep, *y1 = ceil(*y1 / *ystep - 1e-9) * *ystep;
    *xstep = nice_step(*x1 - *x0, 5);
    *x0 = floor(*x0 / *xstep + 1e-9) * *xstep, *x1 = ceil(*x1 / *xstep - 1e-9) * *xstep;
    if (isfinite(c->y_lo) && *y0 < c->y_lo) *y0 = c->y_lo;
    if (isfinite(c->y_hi) && *y1 > c->y_hi) *y1 = c->y_hi;
}

static double bars_max(const chart *c)
{
    double m = 0;
    for (int i = 0; i < c->n_bars; i++)
        if (isfinite(c->bar_v[i]) && c->bar_v[i] > m) m = c->bar_v[i];
    return m > 0 ? m : 1;
}

// ---- curses ----
static void draw_bars(kvs_ui *ui, kvs_rect r, kvs_rect in, const chart *c)
{
    double m = bars_max(c);
    int vw = 0, lw = 0;
    for (int i = 0; i < c->n_bars; i++) {
        char v[96];
        int l = (int)strlen(bar_value(c, i, v, sizeof v));
        vw = l > vw ? l : vw;
        l = (int)strlen(c->bar_label[i]);
        lw = l > lw ? l : lw;
    }
    if (lw > 30) lw = 30;
    if (lw > in.w / 2) lw = in.w / 2;   // labels cut end in '~'
    int bw = in.w - lw - vw - 4, vis = in.h;
    int first = c->n_bars > vis ? c->n_bars - vis : 0;   // newest runs stay visible
    for (int i = first; i < c->n_bars; i++) {
        int y = in.y + i - first;
        const char *cells[1] = {c->bar_label[i]};
        int w[1] = {lw};
        kvs_w_row(ui, y, in.x + 1, lw + 1, A_NORMAL, 1, w, cells);
        attr_t a = kvs_series_attr(ui, c->bar_color[i]);
        if (bw >= 4) kvs_w_hbar(ui, y, in.x + lw + 2, bw, c->bar_v[i] / m, a);
        char v[96];
        kvs_w_text(ui, y, in.x + in.w - vw - 1, vw, A_BOLD, "%*s", vw, bar_value(c, i, v, sizeof v));
    }
    kvs_w_scroll(ui, r, first, vis, c->n_bars);
}

// Legend rows: "-*- name (n)" in the series' colour; the marker is the one
// its points carry in the plot, so it reads without colour too.
static void draw_legend(kvs_ui *ui, int y, int x, int w, int rows, const chart *c)
{
    int shown = c->n_series <= rows ? c->n_series : rows - 1;
    for (int k = 0; k < shown; k++) {
        const series *s = &c->s[k];
        char m = kvs_series_marker(s->slot), cnt[16];
        snprintf(cnt, sizeof cnt, " (%d)", s->n);
        int nw = w - 5 - (int)strlen(cnt);
        const char *cells[1] = {s->name};
        int cw[1] = {nw > 1 ? nw : 1};
        attr_t a = kvs_series_attr(ui, s->slot);
        if (ui->utf8) kvs_w_text(ui, y + k, x, 8, a | A_BOLD, "\xe2\x94\x81%c\xe2\x94\x81", m);   // 7 bytes, 3 cells
        else kvs_w_text(ui, y + k, x, 4, a | A_BOLD, "-%c-", m);
        kvs_w_row(ui, y + k, x + 4, nw + 1, a, 1, cw, cells);
        if ((int)strlen(s->name) < nw) kvs_w_text(ui, y + k, x + 4 + (int)strlen(s->name), (int)strlen(cnt), kvs_attr(ui, KVS_C_DIM), "%s", cnt);
    }
    if (shown < c->n_series)
        kvs_w_text(ui, y + shown, x, w, kvs_attr(ui, KVS_C_ACCENT), "+%d more series", c->n_series - shown);
}

static void draw_chart(kvs_ui *ui, kvs_rect r, const chart *c)
{
    kvs_w_box(ui, r, c->title);
    kvs_rect in = kvs_w_inner(r);
    if (c->empty[0]) {
        kvs_w_text(ui, in.y + 1, in.x + 2, in.w - 4, kvs_attr(ui, KVS_C_DIM), "%s", c->empty);
        return;
    }
    if (c->bars) {
        draw_bars(ui, r, in, c);
        return;
    }
    int legend_w = in.w >= 120 ? 44 : 34;
    kvs_rect pr = {in.y + 1, in.x + 9, in.h - 3, in.w - 9 - legend_w - 1};
    static kvs_plot p;   // large dot buffers: keep off the stack
    double x0, x1, y0, y1, ys, xs;
    ranges(c, &x0, &x1, &y0, &y1, &ys, &xs);
    kvs_plot_init(&p, pr, ui->utf8, x0, x1, y0, y1);
    for (int k = 0; k < c->n_series; k++) {
        const series *s = &c->s[k];
        for (int i = 1; i < s->n; i++) kvs_plot_line(&p, s->x[i - 1], s->y[i - 1], s->x[i], s->y[i], s->slot);
    }
    for (int k = 0; k < c->n_series; k++)   // points over every line
        for (int i = 0; i < c->s[k].n; i++) kvs_plot_point(&p, c->s[k].x[i], c->s[k].y[i], c->s[k].slot);
    kvs_plot_draw(ui, &p, c->xlabel, c->ylabel);
    draw_legend(ui, in.y + 1, in.x + in.w - legend_w, legend_w, in.h - 1, c);
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
        kvs_hit_add(ui, (kvs_rect){r.y, x, 1, (int)strlen(t)}, KVS_HIT_VIEW, i);   // a click switches plot
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
// The hues of the studio's series colours (tui.c: cyan, yellow, green,
// magenta, red, blue; slots 7..12 their bright half), dark enough for white
// paper: a configuration has the same colour and marker on screen and in SVG.
static const char *const svg_colors[12] = {"#1b9aaa", "#c99700", "#2ca02c", "#b83dba", "#d62728", "#1f5fd1",
                                           "#0d5f6a", "#8a6400", "#176617", "#76207a", "#8c1515", "#12398a"};
static const char *svg_color(int slot) { return svg_colors[(slot < 0 ? 0 : slot) % 12]; }

static void svg_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
}

// A series' marker as text centred on (x, y): the character the terminal draws.
static void svg_marker(FILE *f, double x, double y, int slot, int size)
{
    char m[2] = {kvs_series_marker(slot), 0};
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" dominant-baseline=\"central\" "
               "font-family=\"monospace\" font-weight=\"bold\" font-size=\"%d\" fill=\"%s\">",
            x, y, size, svg_color(slot));
    svg_text(f, m);
    fputs("</text>\n", f);
}

// Tick label of v on a grid of step: as many decimals as the step has, no -0.
static void tick_label(double v, double step, char *buf, size_t n)
{
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) < step * 1e-6) v = 0;
    snprintf(buf, n, "%.*f", dec, v);
}

static void svg_chart(FILE *f, const chart *c)
{
    const int W = 840, H = 520, L = 80, R = 230, T = 50, B = 60;
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
                    L + 156, y + bh * 0.15, w, bh * 0.7, svg_color(c->bar_color[i]), L + 160 + w,
                    y + bh * 0.65, bar_value(c, i, v, sizeof v));
        }
        fputs("</svg>\n", f);
        return;
    }
    double x0, x1, y0, y1, ys, xs;
    ranges(c, &x0, &x1, &y0, &y1, &ys, &xs);
#define SX(v) (L + ((v) - x0) / (x1 - x0) * pw)
#define SY(v) (T + ph - ((v) - y0) / (y1 - y0) * ph)
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", L, T, pw, ph);
    char lab[32];
    for (int i = 0; x0 + i * xs <= x1 + xs * 1e-6 && i < 64; i++) {   // round ticks: multiples of the step
        double xv = x0 + i * xs;
        tick_label(xv, xs, lab, sizeof lab);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>"
                   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                SX(xv), T, SX(xv), T + ph, SX(xv), T + ph + 18, lab);
    }
    for (int i = 0; y0 + i * ys <= y1 + ys * 1e-6 && i < 64; i++) {
        double yv = y0 + i * ys;
        tick_label(yv, ys, lab, sizeof lab);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                L, SY(yv), L + pw, SY(yv), L - 6, SY(yv) + 4, lab);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", L + pw / 2, H - 15);
    svg_text(f, c->xlabel);
    fprintf(f, "</text>\n<text x=\"18\" y=\"%d\" transform=\"rotate(-90 18 %d)\" text-anchor=\"middle\">", T + ph / 2,
            T + ph / 2);
    svg_text(f, c->ylabel);
    fputs("</text>\n", f);
    for (int k = 0; k < c->n_series; k++) {
        const series *s = &c->s[k];
        const char *col = svg_color(s->slot);
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (int i = 0; i < s->n; i++) fprintf(f, "%.1f,%.1f ", SX(s->x[i]), SY(s->y[i]));
        fputs("\"/>\n", f);
        for (int i = 0; i < s->n; i++) svg_marker(f, SX(s->x[i]), SY(s->y[i]), s->slot, 14);
        int ly = T + 10 + 18 * k;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n",
                W - R + 15, ly, W - R + 45, ly, col);
        svg_marker(f, W - R + 30, ly, s->slot, 14);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", W - R + 52, ly + 4);
        svg_text(f, s->name);
        fputs("</text>\n", f);
    }
#undef SX
#undef SY
    fputs("</svg>\n", f);
}

int kvs_plot_export_svg(kvs_session *s, const char *path, const char *plot, char *what, size_t n)
{
    kvs_ui *ui = s->ui;
    const kvs_plots_state *ps = ui ? &ui->plots : NULL;
    int which = ps && ps->which >= 0 && ps->which < N_PLOTS ? ps->which : 0;
    if (plot && plot[0]) {
        which = -1;
        for (int i = 0; i < N_PLOTS; i++)
            if (!strcmp(plot, plots[i].name)) which = i;
        if (which < 0) return kvs_errorf(s, "export svg: unknown plot '%s' (expected rd, compression, allocation or kmeans)", plot);
    }
    if (what) snprintf(what, n, "the %s plot (%s)", plots[which].title, plots[which].name);
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

static int plots_mouse(kvs_ui *ui, const kvs_mouse *m)
{
    if (m->kind != KVS_MOUSE_CLICK || m->tag != KVS_HIT_VIEW || m->index < 0 || m->index >= N_PLOTS)
        return KVS_KEY_UNHANDLED;
    ui->plots.which = m->index;
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
    .name = "plots", .title = "Plots", .draw = plots_draw, .keys = plots_keys, .mouse = plots_mouse,
};
