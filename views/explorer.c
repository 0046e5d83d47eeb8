// explorer.c — view 1, the trace explorer: the layers x kv heads grid and,
// for the selected head, the norm sparkline over tokens, per-channel max |x|
// with outlier channels highlighted and the covariance spectrum with d_eff;
// keys or values (v toggles). The grid fills from a background job
// (explorer_job.c) as its cells arrive; a trace still being checked for
// NaN/Inf shows its shape only.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ui.h"

// A channel is an outlier when its max |x| is this many times the median.
#define OUTLIER_RATIO 3.0

kvq_status kvs_explorer_head_stats(const kvq_trace *t, bool values, int l, int h, kvq_head_stats *st)
{
    float *buf = malloc(sizeof(float) * (size_t)t->n_tokens * (size_t)t->head_dim);
    if (!buf) return kvq_error(KVQ_ERR_NOMEM, "explorer: out of memory");
    kvq_status rc = values ? kvq_trace_values(t, l, h, buf) : kvq_trace_keys(t, l, h, buf);
    if (!rc) rc = kvq_head_stats_compute(buf, t->n_tokens, t->head_dim, st);
    free(buf);
    return rc;
}

static void grid_reset(kvs_explorer_state *e, const kvq_trace *t)
{
    free(e->grid_deff);
    free(e->grid_ratio);
    e->grid_deff = e->grid_ratio = NULL;
    e->grid_trace = t;
    e->grid_stopped = false;
    if (!t) return;
    int n = 2 * t->n_layers * t->n_kv_heads;   // keys, then values (v switches the grid too)
    e->grid_deff = malloc(sizeof(float) * (size_t)n);
    e->grid_ratio = malloc(sizeof(float) * (size_t)n);
    if (!e->grid_deff || !e->grid_ratio) return;
    for (int i = 0; i < n; i++) e->grid_deff[i] = e->grid_ratio[i] = NAN;
}

// The grid follows the session's trace; a new trace starts it afresh.
static void grid_follow(kvs_ui *ui)
{
    kvs_explorer_state *e = &ui->ex;
    const kvq_trace *t = ui->s->trace;
    if (e->grid_trace == t) return;
    grid_reset(e, t);
    e->cached_layer = -1;
    if (t && e->layer >= t->n_layers) e->layer = 0;
    if (t && e->head >= t->n_kv_heads) e->head = 0;
}

void kvs_explorer_tick(kvs_ui *ui)
{
    grid_follow(ui);
    kvs_explorer_grid_sync(ui);
    kvs_explorer_grid_start(ui);
}

static void ensure_stats(kvs_ui *ui)
{
    kvs_explorer_state *e = &ui->ex;
    const kvq_trace *t = ui->s->trace;
    grid_follow(ui);
    if (!t) return;
    if (e->values && !t->has_values) e->values = false;
    if (e->cached_layer == e->layer && e->cached_head == e->head && e->cached_values == e->values) return;
    if (e->have_stats) kvq_head_stats_free(&e->st);
    e->have_stats = false;
    e->err[0] = 0;
    if (kvs_explorer_head_stats(t, e->values, e->layer, e->head, &e->st))
        snprintf(e->err, sizeof e->err, "%s", kvq_last_error());
    else
        e->have_stats = true;
    e->cached_layer = e->layer;
    e->cached_head = e->head;
    e->cached_values = e->values;
}

// t: the session's trace, or a pending one (no numbers: every cell "...").
static void draw_grid(kvs_ui *ui, kvs_rect r, const kvq_trace *t, bool pending)
{
    kvs_explorer_state *e = &ui->ex;
    kvs_w_box(ui, r, e->values ? "layers x kv heads: values" : "layers x kv heads: keys");
    kvs_rect in = kvs_w_inner(r);
    kvs_w_text(ui, in.y, in.x, in.w, kvs_attr(ui, KVS_C_DIM), "d_eff (outlier x)");
    int cw = 11, fit = (in.w - 8) / cw;
    if (fit < 1) fit = 1;
    int h0 = e->head >= fit ? e->head - fit + 1 : 0;   // heads scroll sideways with the cursor
    e->grid_h0 = h0, e->grid_fit = fit;   // the grid job computes these columns first
    char hdr[160] = "layer";
    for (int h = h0; h < t->n_kv_heads && h < h0 + fit && (int)strlen(hdr) + cw < (int)sizeof hdr; h++)
        snprintf(hdr + strlen(hdr), sizeof hdr - strlen(hdr), "   head %-3d", h);
    kvs_w_text(ui, in.y + 1, in.x, in.w, kvs_attr(ui, KVS_C_TITLE), "%s", hdr);
    int rows = in.h - 2;
    int first = e->layer >= rows ? e->layer - rows + 1 : 0;   // scroll to keep the cursor visible
    int half = e->values ? t->n_layers * t->n_kv_heads : 0;
    for (int i = 0; i < rows && first + i < t->n_layers; i++) {
        int l = first + i, y = in.y + 2 + i;
        kvs_w_text(ui, y, in.x, 5, A_NORMAL, "%5d", l);
        for (int h = h0; h < t->n_kv_heads && h < h0 + fit; h++) {
            int x = in.x + 5 + 3 + (h - h0) * cw;
            int k = half + l * t->n_kv_heads + h;
            float d = e->grid_deff && !pending ? e->grid_deff[k] : NAN;
            float q = e->grid_ratio && !pending ? e->grid_ratio[k] : NAN;
            bool sel = l == e->layer && h == e->head;
            attr_t a = sel ? kvs_attr(ui, KVS_C_SEL) : q >= OUTLIER_RATIO ? kvs_attr(ui, KVS_C_WARN) : A_NORMAL;
            char dd[8], qq[8];
            if (isnan(d)) kvs_w_text(ui, y, x, cw - 1, a, "%-10s", e->grid_stopped ? "    -" : "   ...");
            else if (d < 0) kvs_w_text(ui, y, x, cw - 1, a, "%-10s", "  failed");
            else if (kvs_fmt_num(d, 5, 1, dd, sizeof dd) > 0 && kvs_fmt_num(q, 4, 1, qq, sizeof qq) > 0)
                kvs_w_text(ui, y, x, cw - 1, a, "%5s %4sx", dd, qq);
        }
    }
    kvs_w_scroll(ui, r, first, rows, t->n_layers);
    if (t->n_kv_heads > fit && r.w > 24)   // heads off to the side (Left/Right scroll them)
        kvs_w_text(ui, r.y + r.h - 1, r.x + 1, 16, kvs_attr(ui, KVS_C_ACCENT), " %sheads %d-%d/%d%s ", h0 ? "<" : "",
                   h0, (h0 + fit < t->n_kv_heads ? h0 + fit : t->n_kv_heads) - 1, t->n_kv_heads,
                   h0 + fit < t->n_kv_heads ? ">" : "");
}

// A y-axis label right-aligned in 7 cells, never cut.
static void axis_label(kvs_ui *ui, int y, int x, double v, int dec)
{
    char b[16];
    if (kvs_fmt_num(v, 7, dec, b, sizeof b) > 0) kvs_w_text(ui, y, x, 7, kvs_attr(ui, KVS_C_DIM), "%7s", b);
}

// Channel (or index) axis under a bar chart of n columns drawn over w cells:
// the first, middle and last index at their columns, and the axis name.
static void index_axis(kvs_ui *ui, int y, int x, int w, int n, const char *name)
{
    if (w < 12 || n < 1) return;
    attr_t a = kvs_attr(ui, KVS_C_DIM);
    int cols = w < n ? w : n;
    char b[16];
    snprintf(b, sizeof b, "%d", 0);
    kvs_w_text(ui, y, x, w, a, "%s", b);
    int mid = n / 2, mx = (int)((long)mid * cols / n);
    snprintf(b, sizeof b, "%d", mid);
    if (mx > 4 && mx + (int)strlen(b) < cols - 6) kvs_w_text(ui, y, x + mx, w - mx, a, "%s", b);
    snprintf(b, sizeof b, "%d", n - 1);
    int lx = cols - 1 - (int)strlen(b);   // a cell clear of the border
    kvs_w_text(ui, y, x + lx, w - lx, a, "%s", b);
    // the axis name between the middle and the last index, where it fits
    char m[16];
    int ml = snprintf(m, sizeof m, "%d", mid), nl = (int)strlen(name);
    int nx = (mx + ml + lx) / 2 - nl / 2;
    if (nx > mx + ml + 1 && nx + nl < lx - 1) kvs_w_text(ui, y, x + nx, nl, a, "%s", name);
}

static void draw_head(kvs_ui *ui, kvs_rect r)
{
    kvs_explorer_state *e = &ui->ex;
    const char *what = e->values ? "values" : "keys";
    const char *sym = e->values ? "v" : "k";
    char title[96];
    snprintf(title, sizeof title, "layer %d, kv head %d: %s", e->layer, e->head, what);
    kvs_w_box(ui, r, title);
    kvs_rect in = kvs_w_inner(r);
    if (!e->have_stats) {
        kvs_w_text(ui, in.y, in.x, in.w, kvs_attr(ui, KVS_C_BAD), "%s", e->err[0] ? e->err : "no statistics");
        return;
    }
    const kvq_head_stats *st = &e->st;
    kvs_part p[6] = {{.prio = 0}};
    snprintf(p[0].text, sizeof p[0].text, "|%s| mean %.3f", sym, st->mean_norm);
    snprintf(p[1].text, sizeof p[1].text, "std %.3f", st->std_norm);
    snprintf(p[2].text, sizeof p[2].text, "max %.3f", st->max_norm);
    snprintf(p[3].text, sizeof p[3].text, "d_eff %.1f of %d", st->d_eff, st->d);
    snprintf(p[3].brief, sizeof p[3].brief, "d_eff %.1f", st->d_eff);
    snprintf(p[4].text, sizeof p[4].text, "%d tokens", st->n);
    p[1].prio = 2, p[2].prio = 1, p[4].prio = 3;
    kvs_w_parts(ui, in.y, in.x, in.w - 1, A_NORMAL, p, 5, "   ");
    // three panels share the remaining height
    int avail = in.h - 2;
    int hn = avail / 4 > 3 ? avail / 4 : 3, hc = (avail - hn) / 2, hs = avail - hn - hc;
    int y = in.y + 2;
    // norms over tokens
    // bars start at the smallest norm: norms sit far from 0 and their spread is the story
    float lo = st->norms[0];
    for (int i = 1; i < st->n; i++) lo = st->norms[i] < lo ? st->norms[i] : lo;
    float *rel = malloc(sizeof(float) * (size_t)st->n);
    kvs_part pn[2] = {{.prio = 0}, {.prio = 1}};
    snprintf(pn[0].text, sizeof pn[0].text, "|%s| over %d tokens", sym, st->n);
    snprintf(pn[1].text, sizeof pn[1].text, "(max per column, from %.2f)", lo);
    snprintf(pn[1].brief, sizeof pn[1].brief, "(max per column)");
    kvs_w_parts(ui, y, in.x, in.w - 1, kvs_attr(ui, KVS_C_TITLE), pn, 2, " ");
    kvs_rect nr = {y + 1, in.x + 8, hn - 1, in.w - 8};
    axis_label(ui, nr.y, in.x, st->max_norm, 2);
    axis_label(ui, nr.y + nr.h - 1, in.x, lo, 2);
    if (rel) {
        for (int i = 0; i < st->n; i++) rel[i] = st->norms[i] - lo + 0.02f * (float)(st->max_norm - lo);
        kvs_w_vbars(ui, nr, rel, st->n, 1.02 * (st->max_norm - lo), NULL, kvs_attr(ui, KVS_C_ACCENT), 0);
        free(rel);
    }
    y += hn;
    // per-channel max |x|, outliers highlighted. Sized by the trace's
    // head_dim, not KVQ_MAX_HEAD_DIM: the explorer shows traces of any
    // head_dim (kvs_w_vbars reads mark[0..d-1]).
    bool *mark = calloc((size_t)st->d, sizeof *mark), *dmark = calloc((size_t)st->d, sizeof *dmark);
    float *lg = malloc(sizeof(float) * (size_t)st->d);
    if (!mark || !dmark || !lg) {
        free(mark), free(dmark), free(lg);
        return;
    }
    float cmax = 0;
    int n_out = 0;
    for (int j = 0; j < st->d; j++) {
        mark[j] = st->chan_max[j] >= OUTLIER_RATIO * st->chan_median;
        n_out += mark[j];
        if (st->chan_max[j] > cmax) cmax = st->chan_max[j];
    }
    kvs_part pc[3] = {{.prio = 0}, {.prio = 2}, {.prio = 1}};
    snprintf(pc[0].text, sizeof pc[0].text, "max |%s| per channel: %d outlier%s", sym, n_out, n_out == 1 ? "" : "s");
    snprintf(pc[1].text, sizeof pc[1].text, "(>= %.0fx median %.3f)", OUTLIER_RATIO, st->chan_median);
    snprintf(pc[1].brief, sizeof pc[1].brief, "(>= %.0fx median)", OUTLIER_RATIO);
    snprintf(pc[2].text, sizeof pc[2].text, "top:");
    for (int k = 0; k < 3 && st->top_chan[k] >= 0; k++) {
        snprintf(pc[2].text + strlen(pc[2].text), sizeof pc[2].text - strlen(pc[2].text), " %d(%.1fx)",
                 st->top_chan[k], st->top_ratio[k]);
        if (k == 0) snprintf(pc[2].brief, sizeof pc[2].brief, "top: %d(%.1fx)", st->top_chan[0], st->top_ratio[0]);
    }
    kvs_w_parts(ui, y, in.x, in.w - 1, kvs_attr(ui, KVS_C_TITLE), pc, 3, " ");
    // bars from 0 (the lower bound is labelled), the channel index below
    kvs_rect cr = {y + 1, in.x + 8, hc - 2, in.w - 8};
    if (cr.h < 1) cr.h = 1;
    axis_label(ui, cr.y, in.x, cmax, 2);
    if (cr.h > 1) axis_label(ui, cr.y + cr.h - 1, in.x, 0, 0);
    kvs_w_vbars(ui, cr, st->chan_max, st->d, cmax, mark, kvs_attr(ui, KVS_C_GOOD), kvs_attr(ui, KVS_C_BAD));
    index_axis(ui, cr.y + cr.h, cr.x, cr.w, st->d, "channel");
    y += hc;
    // spectrum on a log scale: 0 = 1e-4 of the largest eigenvalue
    double e0 = st->eig[0] > 0 ? st->eig[0] : 1;
    for (int j = 0; j < st->d; j++) {
        double v = st->eig[j] > 0 ? log10(st->eig[j] / e0) + 4 : 0;
        lg[j] = (float)(v > 0 ? v : 0);
    }
    double top_share = 0, tot = 0;
    int kd = (int)lround(st->d_eff);
    for (int j = 0; j < st->d; j++) {
        tot += st->eig[j];
        if (j < kd) top_share += st->eig[j];
    }
    kvs_part ps[2] = {{.prio = 0}, {.prio = 1}};
    snprintf(ps[0].text, sizeof ps[0].text, "eigen spectrum (log10, 4 decades): d_eff %.1f;", st->d_eff);
    snprintf(ps[0].brief, sizeof ps[0].brief, "eigenvalues (log): d_eff %.1f;", st->d_eff);
    snprintf(ps[1].text, sizeof ps[1].text, "the top %d hold %.0f%% of the variance", kd,
             tot > 0 ? 100 * top_share / tot : 0);
    snprintf(ps[1].brief, sizeof ps[1].brief, "top %d: %.0f%% of variance", kd, tot > 0 ? 100 * top_share / tot : 0);
    kvs_w_parts(ui, y, in.x, in.w - 1, kvs_attr(ui, KVS_C_TITLE), ps, 2, " ");
    kvs_rect sr = {y + 1, in.x + 8, hs - 1, in.w - 8};
    if (kd > 0 && kd <= st->d) dmark[kd - 1] = true;
    axis_label(ui, sr.y, in.x, st->eig[0], 2);
    if (sr.h > 1) axis_label(ui, sr.y + sr.h - 1, in.x, e0 * 1e-4, 2);   // the lowest decade shown
    kvs_w_vbars(ui, sr, lg, st->d, 4, dmark, kvs_attr(ui, KVS_C_S4), kvs_attr(ui, KVS_C_WARN));
    free(mark), free(dmark), free(lg);
}

// The grid of a trace whose NaN/Inf scan runs, and what the head panel
// will show once it passed.
static void draw_pending(kvs_ui *ui, kvs_rect r, const kvq_trace *t, int gw)
{
    draw_grid(ui, (kvs_rect){r.y, r.x, r.h, gw}, t, true);
    kvs_rect hr = {r.y, r.x + gw, r.h, r.w - gw};
    kvs_w_box(ui, hr, "opening");
    kvs_rect in = kvs_w_inner(hr);
    kvs_w_text(ui, in.y, in.x, in.w, A_NORMAL, "%s", t->path);
    kvs_w_text(ui, in.y + 1, in.x, in.w, A_NORMAL, "%d layers, %d heads, %d kv heads, %d tokens, head_dim %d",
               t->n_layers, t->n_heads, t->n_kv_heads, t->n_tokens, t->head_dim);
    kvs_w_text(ui, in.y + 3, in.x, in.w, kvs_attr(ui, KVS_C_WARN),
               "checking every tensor for NaN/Inf; the statistics follow (Esc cancels)");
}

static int grid_width(const kvs_ui *ui, kvs_rect r, const kvq_trace *t)
{
    (void)ui;
    int gw = 5 + 3 + 11 * t->n_kv_heads + 2;   // the grid gets what it needs, up to 2/5 of the width
    if (gw > r.w * 2 / 5) gw = r.w * 2 / 5;
    if (gw < 26) gw = 26;
    return gw;
}

static void explorer_draw(kvs_ui *ui, kvs_rect r)
{
    const kvq_trace *t = ui->s->trace;
    kvs_explorer_state *e = &ui->ex;
    if (e->pending) {   // the session's trace (if any) stays until the scan passed
        draw_pending(ui, r, e->pending, grid_width(ui, r, e->pending));
        return;
    }
    ensure_stats(ui);
    if (!t) {
        int y = r.y + 2;
        if (e->open_err[0]) {
            kvs_w_text(ui, y, r.x + 2, r.w - 4, kvs_attr(ui, KVS_C_BAD), "%s", e->open_err);
            y += 2;
        }
        kvs_w_text(ui, y, r.x + 2, r.w - 4, kvs_attr(ui, KVS_C_WARN),
                   "no trace loaded: press : and type `load PATH` (kvtrace .safetensors, .npy, mlx_lm cache)");
        return;
    }
    kvs_explorer_grid_sync(ui);
    int gw = grid_width(ui, r, t);
    draw_grid(ui, (kvs_rect){r.y, r.x, r.h, gw}, t, false);
    draw_head(ui, (kvs_rect){r.y, r.x + gw, r.h, r.w - gw});
}

static int move_cursor(kvs_ui *ui, int key)
{
    const kvq_trace *t = ui->s->trace;
    if (!t) return KVS_KEY_UNHANDLED;
    kvs_explorer_state *e = &ui->ex;
    switch (key) {
    case KEY_UP: case 'k': e->layer = e->layer > 0 ? e->layer - 1 : 0; break;
    case KEY_DOWN: case 'j': e->layer = e->layer + 1 < t->n_layers ? e->layer + 1 : e->layer; break;
    case KEY_LEFT: case 'h': e->head = e->head > 0 ? e->head - 1 : 0; break;
    case KEY_RIGHT: case 'l': e->head = e->head + 1 < t->n_kv_heads ? e->head + 1 : e->head; break;
    case KEY_HOME: case 'g': e->layer = 0; break;
    case KEY_END: case 'G': e->layer = t->n_layers - 1; break;
    default: return KVS_KEY_UNHANDLED;
    }
    return KVS_KEY_REDRAW;
}

static int toggle_values(kvs_ui *ui, int key)
{
    (void)key;
    const kvq_trace *t = ui->s->trace;
    if (t && !t->has_values) {
        kvs_ui_set_status(ui, true, "this trace has no values");
        return KVS_KEY_REDRAW;
    }
    ui->ex.values = !ui->ex.values;
    bool gv;
    if (kvs_explorer_grid_half(ui, &gv) && gv != ui->ex.values) kvs_job_preempt(ui);   // the tick starts this half
    return KVS_KEY_REDRAW;
}

static int resume_grid(kvs_ui *ui, int key)
{
    (void)key;
    if (!ui->s->trace) return KVS_KEY_UNHANDLED;
    if (!ui->ex.grid_stopped) {
        kvs_ui_set_status(ui, false, "explorer: the grid statistics are %s", kvs_explorer_grid_half(ui, NULL)
                                                                               ? "being computed" : "complete");
        return KVS_KEY_REDRAW;
    }
    ui->ex.grid_stopped = false;
    kvs_explorer_grid_start(ui);
    return KVS_KEY_REDRAW;
}

static int select_head(kvs_ui *ui, int key)
{
    (void)key;
    ensure_stats(ui);
    const kvs_explorer_state *e = &ui->ex;
    if (!e->have_stats) return KVS_KEY_HANDLED;
    kvs_ui_set_status(ui, false, "layer %d head %d %s: mean|x| %.3f std %.3f max %.3f d_eff %.1f top channel %d (%.1fx)",
                      e->layer, e->head, e->values ? "values" : "keys", e->st.mean_norm, e->st.std_norm,
                      e->st.max_norm, e->st.d_eff, e->st.top_chan[0], e->st.top_ratio[0]);
    return KVS_KEY_REDRAW;
}

static const kvs_keybind explorer_keys[] = {
    {KEY_UP, 'k', "Up/k", "previous layer", move_cursor},
    {KEY_DOWN, 'j', "Down/j", "next layer", move_cursor},
    {KEY_LEFT, 'h', "Left/h", "previous kv head", move_cursor},
    {KEY_RIGHT, 'l', "Right/l", "next kv head", move_cursor},
    {KEY_HOME, 'g', "g/G", "first / last layer", move_cursor},
    {KEY_END, 'G', NULL, NULL, move_cursor},
    {'v', 0, "v", "keys <-> values", toggle_values},
    {'r', 0, "r", "resume the grid statistics Esc stopped", resume_grid},
    {'\n', KEY_ENTER, "Enter", "head summary to the status line and log", select_head},
    {0, 0, NULL, NULL, NULL},
};

const kvs_view kvs_view_explorer = {
    .name = "explorer", .title = "Explorer", .draw = explorer_draw, .keys = explorer_keys,
};

void kvs_explorer_free(kvs_ui *ui)
{
    kvs_explorer_state *e = &ui->ex;
    if (e->have_stats) kvq_head_stats_free(&e->st);
    e->have_stats = false;
    grid_reset(e, NULL);
    kvq_trace_free(e->pending);   // the check job is joined by now (kvs_ui_free)
    e->pending = NULL;
}
