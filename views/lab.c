// lab.c — view 2, the method lab: a form built from the methods traits
// table and the config field table, `run` on the worker thread (the quantize
// report), per-layer results, and the run history with a side-by-side
// comparison. Every edit goes through the command language (`set k=v`,
// `method NAME`), so the form, scripts and the prompt validate alike.
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "commands.h"
#include "tui.h"
#include "ui.h"

// ---- the run job ----
typedef struct {
    kvq_config cfg;
    kvs_run run;
} lab_job;

static int lab_run(kvs_job *j)
{
    lab_job *l = j->arg;
    kvq_progress p = {.fn = kvs_job_progress, .user = j};
    kvq_progress_begin(&p);
    pthread_mutex_lock(&j->s->lock);   // the trace stays put while we read it
    kvq_status st = j->s->trace ? (kvq_status)kvs_run_measure(j->s->trace, &l->cfg, j->s->art, &p, &l->run)
                                : kvq_error(KVQ_ERR_ARG, "run: no trace loaded");
    pthread_mutex_unlock(&j->s->lock);
    return st;
}

static void lab_done(kvs_ui *ui, kvs_job *j)
{
    lab_job *l = j->arg;
    if (j->status == KVQ_ERR_CANCELLED) {
        kvs_ui_set_status(ui, false, "run cancelled");
    } else if (j->status) {
        kvs_ui_set_status(ui, true, "run %s: %s", l->cfg.method, j->msg);
    } else {
        kvs_session_add_run(ui->s, &l->run);
        ui->lab.sel_run = ui->s->n_runs - 1;
        char line[1024];
        kvs_run_summary(&l->run, line, sizeof line);
        kvs_ui_set_status(ui, false, "run %d: %s  (%.1f s)", ui->s->n_runs, line, j->t_end - j->t_start);
    }
    free(l);
    j->arg = NULL;
}

int kvs_lab_start_run(kvs_ui *ui)
{
    if (!ui->s->trace) {
        kvs_ui_set_status(ui, true, "run: no trace loaded (:load PATH)");
        return -1;
    }
    lab_job *l = calloc(1, sizeof *l);
    if (!l) return -1;
    l->cfg = ui->s->cfg;
    if (kvs_job_start(ui, "run", lab_run, lab_done, l)) {
        free(l);
        return -1;
    }
    snprintf(ui->job.name, sizeof ui->job.name, "run %s k%d", l->cfg.method, l->cfg.bits);
    return 0;
}

// ---- the form: rows are config fields (kvq_config_field_names) ----
// what the mouse can hit (kvs_hit_add while drawing)
enum { HIT_FIELD = KVS_HIT_VIEW, HIT_PICK, HIT_HISTORY, HIT_RUN };

static int form_rows(kvs_ui *ui, const char **rows, int max)
{
    const char *const *names = kvq_config_field_names();
    int n = 0;
    for (int i = 0; names[i] && n < max; i++)
        if (kvs_filter_match(ui, names[i])) rows[n++] = names[i];
    return n;
}

static const kvq_method *cur_method(const kvs_ui *ui) { return kvq_method_find(ui->s->cfg.method); }

static bool pick_visible(const kvs_ui *ui, int i)
{
    char both[256];
    snprintf(both, sizeof both, "%s %s", kvq_methods[i].name, kvq_methods[i].description);
    return kvs_filter_match(ui, both);
}

// The picker's own keys (the dispatcher routes them through lab_keys, whose
// handlers act on the picker while it is open): the footer shows these.
static int lab_move(kvs_ui *ui, int key);
static int lab_edit(kvs_ui *ui, int key);
static int lab_escape(kvs_ui *ui, int key);
static const kvs_keybind picker_keys[] = {
    {KEY_UP, 'k', "Up/Down", "method", lab_move},
    {'\n', KEY_ENTER, "Enter", "pick it", lab_edit},
    {27, 0, "Esc", "back to the form", lab_escape},
    {'/', 0, "/", "filter by name or description", kvs_filter_start},
    {0, 0, NULL, NULL, NULL},
};

static void draw_picker(kvs_ui *ui, kvs_rect r)
{
    ui->hint_keys = picker_keys;
    kvs_w_box(ui, r, ui->lab.pick_value ? "value method  (Enter picks, Esc back, / filter)" :
                                          "key method  (Enter picks, Esc back, / filter)");
    kvs_rect in = kvs_w_inner(r);
    for (int i = 0; !pick_visible(ui, ui->lab.pick) && i < kvq_n_methods; i++)   // the filter hid the cursor
        if (pick_visible(ui, i)) ui->lab.pick = i;
    int vis[256], n = 0, at = 0;
    for (int i = 0; i < kvq_n_methods && n < 256; i++)
        if (pick_visible(ui, i)) {
            if (i == ui->lab.pick) at = n;
            vis[n++] = i;
        }
    int rows = in.h - 1;   // one row for the description under the cursor
    if (rows < 1) rows = 1;
    int first = at >= rows ? at - rows + 1 : 0;   // the cursor stays on screen
    if (first > n - rows) first = n - rows > 0 ? n - rows : 0;
    int y = in.y;
    for (int k = first; k < n && y < in.y + in.h; k++) {
        const kvq_method *m = &kvq_methods[vis[k]];
        bool sel = vis[k] == ui->lab.pick;
        kvs_w_text(ui, y, in.x, in.w, sel ? kvs_attr(ui, KVS_C_SEL) : A_NORMAL, " %-16s %d..%-2d %s", m->name,
                   m->min_bits, m->max_bits, m->needs_calibration ? "cal" : "");
        kvs_hit_add(ui, (kvs_rect){y, in.x, sel ? 2 : 1, in.w}, HIT_PICK, vis[k]);
        y++;
        if (sel && y < in.y + in.h)   // the description of the one under the cursor
            kvs_w_text(ui, y++, in.x + 3, in.w - 3, kvs_attr(ui, KVS_C_DIM), "%s", m->description);
    }
    kvs_w_scroll(ui, r, first, rows, n);
}

static void draw_form(kvs_ui *ui, kvs_rect r)
{
    if (ui->lab.picking) {
        draw_picker(ui, r);
        return;
    }
    kvs_w_box(ui, r, "config  (Left/Right change, Enter edit)");
    kvs_rect in = kvs_w_inner(r);
    const kvq_method *m = cur_method(ui);
    int y = in.y;
    if (m) {
        kvs_w_text(ui, y++, in.x + 1, in.w - 1, kvs_attr(ui, KVS_C_ACCENT) | A_BOLD, "%s%s", m->name,
                   m->needs_calibration ? (kvs_session_find_art(ui->s, m->name) ? "  (calibrated)" : "  (needs calibration)") : "");
        kvs_w_text(ui, y++, in.x + 1, in.w - 1, kvs_attr(ui, KVS_C_DIM), "%s", m->description);
        kvs_w_text(ui, y++, in.x + 1, in.w - 1, kvs_attr(ui, KVS_C_DIM), "bits %d..%d  %s", m->min_bits, m->max_bits,
                   m->paper);
    }
    y++;
    const char *rows[128];
    int n = form_rows(ui, rows, 128);
    if (ui->lab.row >= n) ui->lab.row = n ? n - 1 : 0;
    int vis = in.y + in.h - y;
    if (vis < 1) return;
    if (ui->lab.row < ui->lab.first_row) ui->lab.first_row = ui->lab.row;
    if (ui->lab.row >= ui->lab.first_row + vis) ui->lab.first_row = ui->lab.row - vis + 1;
    if (ui->lab.first_row > n - vis) ui->lab.first_row = n - vis > 0 ? n - vis : 0;   // a taller window shows more
    kvs_w_scroll(ui, r, ui->lab.first_row, vis, n);
    for (int i = ui->lab.first_row; i < n && y < in.y + in.h; i++, y++) {
        char v[256];
        if (kvq_config_get(&ui->s->cfg, rows[i], v, sizeof v)) snprintf(v, sizeof v, "?");
        bool sel = i == ui->lab.row;
        int vw = in.w - 21 > 1 ? in.w - 21 : 1;
        if (vw > 1 && (int)strlen(v) > vw) snprintf(v + vw - 1, sizeof v - (size_t)(vw - 1), "~");   // Enter shows it whole
        kvs_w_text(ui, y, in.x, in.w, sel ? kvs_attr(ui, KVS_C_SEL) : A_NORMAL, " %-18s %-*.*s", rows[i],
                   vw, vw, v);
        kvs_hit_add(ui, (kvs_rect){y, in.x, 1, in.w}, HIT_FIELD, i);
    }
}

static const kvs_run *run_at(const kvs_ui *ui, int i)
{
    return i >= 0 && i < ui->s->n_runs ? &ui->s->runs[i] : NULL;
}

// Bars show 1 - cos on a log scale, 1e-4..1: longer = worse, and a few
// thousandths apart still look different.
static double err_frac(double cos)
{
    double e = 1 - cos;
    return e > 1e-4 ? (log10(e) + 4) / 4 : 0;
}

static void draw_results(kvs_ui *ui, kvs_rect r)
{
    int sel = ui->lab.sel_run < 0 ? ui->s->n_runs - 1 : ui->lab.sel_run;
    const kvs_run *a = run_at(ui, sel), *b = run_at(ui, ui->lab.cmp_run);
    if (b == a) b = NULL;
    char title[320];
    if (a && b) snprintf(title, sizeof title, "run %d vs run %d: per layer", sel + 1, ui->lab.cmp_run + 1);
    else if (a) snprintf(title, sizeof title, "run %d: %s, per layer", sel + 1, a->label);
    else snprintf(title, sizeof title, "results");
    kvs_w_box(ui, r, title);
    kvs_rect in = kvs_w_inner(r);
    if (!a) {
        kvs_w_text(ui, in.y + 1, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM),
                   kvs_job_busy(ui) ? "running..." : "no runs yet: press r to run the current config on the trace");
        return;
    }
    int y = in.y;
    // every figure the run measured, "name value unit", wrapped to the panel
    char line[512] = "";
    size_t len = 0;
    for (int i = 0; i < kvs_run_n_fields(); i++) {
        double v = kvs_run_field(a, i);
        if (!isfinite(v)) continue;
        char one[128];
        kvq_metric_fmt_named(kvs_run_field_metric(i), v, one, sizeof one);
        if (len && len + strlen(one) + 3 > (size_t)(in.w - 2)) {
            kvs_w_text(ui, y++, in.x + 1, in.w - 2, A_NORMAL, "%s", line);
            len = 0;
        }
        len += (size_t)snprintf(line + len, sizeof line - len, "%s%s", len ? "   " : "", one);
    }
    if (len) kvs_w_text(ui, y++, in.x + 1, in.w - 2, A_NORMAL, "%s", line);
    if (b) {   // the other run: its label, then as many whole figures as fit
        kvs_part p[64];
        int np = 0;
        p[np] = (kvs_part){.prio = 0};
        snprintf(p[np++].text, sizeof p[0].text, "vs %.120s", b->label);
        for (int i = 0; i < kvs_run_n_fields() && np < 64; i++) {
            double v = kvs_run_field(b, i);
            kvq_metric_id id = kvs_run_field_metric(i);   // the history's order of importance
            int pr = id == KVQ_M_KEY_COSINE ? 1 : id == KVQ_M_ATTN_KEY_ERROR ? 2 : id == KVQ_M_COMPRESSION ? 3 :
                     id == KVQ_M_KEY_BITS ? 4 : 10 + i;
            if (isfinite(v)) kvs_metric_part(&p[np++], id, v, pr);
        }
        kvs_w_parts(ui, y++, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_S2), p, np, "  ");
    }
    y++;
    kvs_part hp[2] = {{.prio = 0}, {.prio = 1}};
    snprintf(hp[0].text, sizeof hp[0].text, "%s", b ? "layer  key cosine A  key cosine B  delta" : "layer  key cosine  key rel MSE");
    snprintf(hp[1].text, sizeof hp[1].text, "  (bars: 1 - cos, log)");
    snprintf(hp[1].brief, sizeof hp[1].brief, "  (bars: 1-cos)");
    kvs_w_parts(ui, y++, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_TITLE), hp, 2, "");
    int tw = b ? 44 : 32;   // the figures of a row, then its bars
    int bw = in.w - tw - 3;
    int rows_left = in.y + in.h - y;
    kvs_w_scroll(ui, r, 0, rows_left, a->n_layers);
    for (int l = 0; l < a->n_layers && y < in.y + in.h; l++, y++) {
        double ca = a->layer_key_cosine[l];
        if (b && l < b->n_layers) {
            double cb = b->layer_key_cosine[l];
            char fa[32], fb[32];
            kvs_w_text(ui, y, in.x + 1, tw, A_NORMAL, "%5d  %-12s  %-12s  %+8.5f", l,
                       kvq_metric_fmt(KVQ_M_KEY_COSINE, ca, fa, sizeof fa), kvq_metric_fmt(KVQ_M_KEY_COSINE, cb, fb, sizeof fb),
                       ca - cb);
            if (bw >= 8) {   // narrow: the figures stay, the bars go
                kvs_w_hbar(ui, y, in.x + tw + 2, bw / 2, err_frac(ca), kvs_attr(ui, KVS_C_S1));
                kvs_w_hbar(ui, y, in.x + tw + 2 + bw / 2 + 1, bw / 2 - 1, err_frac(cb), kvs_attr(ui, KVS_C_S2));
            }
        } else {
            char fa[32], fm[32];
            kvs_w_text(ui, y, in.x + 1, tw, A_NORMAL, "%5d  %-10s  %-12s", l, kvq_metric_fmt(KVQ_M_KEY_COSINE, ca, fa, sizeof fa),
                       kvq_metric_fmt(KVQ_M_KEY_REL_MSE, a->layer_key_rel_mse[l], fm, sizeof fm));
            double f = err_frac(ca);
            if (bw >= 4) kvs_w_hbar(ui, y, in.x + tw + 2, bw, f, f > 0.6 ? kvs_attr(ui, KVS_C_BAD) : kvs_attr(ui, KVS_C_GOOD));
        }
    }
}

static void draw_history(kvs_ui *ui, kvs_rect r)
{
    kvs_w_box(ui, r, "run history  ([ ] select, c compare, r run)");
    kvs_rect in = kvs_w_inner(r);
    kvs_hit_add(ui, r, HIT_HISTORY, -1);
    // the figures of every run kind, headed by their metric names; n/a where
    // a run kind does not measure it. Narrow: short headers, then the least
    // telling columns go (output error is n/a for lab runs; the attention
    // error and the ratio stay longest).
    static const kvq_metric_id col[] = {KVQ_M_KEY_BITS, KVQ_M_KEY_COSINE, KVQ_M_QK_ERROR, KVQ_M_ATTN_KEY_ERROR,
                                        KVQ_M_OUTPUT_ERROR, KVQ_M_COMPRESSION};
    static const int prio[] = {4, 3, 5, 1, 6, 2};
    enum { NC = 2 + sizeof col / sizeof col[0] };
    int n = ui->s->n_runs, rows = in.h - 1;
    kvs_col c[NC] = {{.head = "#", .min_w = 3, .right = true}, {.head = "run", .min_w = 20, .flex = true}};
    for (int k = 2; k < NC; k++) {
        const kvq_metric_id id = col[k - 2];
        int need = 3;   // n/a
        for (int i = 0; i < n; i++) {
            const kvs_run *x = &ui->s->runs[i];
            const double v[] = {x->key_bits, x->key_cosine, x->qk_error, x->attn_key_error, x->output_error,
                                x->compression};
            char t[64];
            int len = snprintf(t, sizeof t, isfinite(v[k - 2]) ? kvq_metrics[id].fmt : "n/a", v[k - 2]);
            if (len > need) need = len;
        }
        c[k] = (kvs_col){.head = kvq_metrics[id].name, .brief = kvs_metric_abbr(id), .prio = prio[k - 2],
                         .min_w = need, .right = true};
    }
    int w[NC];
    const char *hdr[NC];
    kvs_table_fit(c, NC, in.w - 1, w, hdr);
    if (w[1] > 255) w[1] = 255;
    kvs_w_row(ui, in.y, in.x + 1, in.w - 1, kvs_attr(ui, KVS_C_TITLE), NC, w, hdr);
    int sel = ui->lab.sel_run < 0 ? n - 1 : ui->lab.sel_run;
    int first = sel >= rows ? sel - rows + 1 : 0;
    for (int i = first; i < n && i - first < rows; i++) {
        const kvs_run *x = &ui->s->runs[i];
        char cs[NC][256];
        snprintf(cs[0], 256, "%d", i + 1);
        snprintf(cs[1], 256, "%s", x->label);
        const double v[] = {x->key_bits, x->key_cosine, x->qk_error, x->attn_key_error, x->output_error,
                            x->compression};
        for (int k = 2; k < NC; k++)
            if (w[k]) kvs_fmt_metric(col[k - 2], v[k - 2], abs(w[k]), cs[k], 256);
        const char *cells[NC];
        for (int k = 0; k < NC; k++) cells[k] = cs[k];
        attr_t a = i == sel ? kvs_attr(ui, KVS_C_SEL) : i == ui->lab.cmp_run ? kvs_attr(ui, KVS_C_S2) : A_NORMAL;
        kvs_w_row(ui, in.y + 1 + i - first, in.x + 1, in.w - 1, a, NC, w, cells);
        kvs_hit_add(ui, (kvs_rect){in.y + 1 + i - first, in.x, 1, in.w}, HIT_RUN, i);
    }
    if (!n) kvs_w_text(ui, in.y + 1, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM), "empty");
    kvs_w_scroll(ui, r, first, rows, n);
}

static void lab_draw(kvs_ui *ui, kvs_rect r)
{
    int hh = r.h / 3 > 6 ? r.h / 3 : 6;
    int fw = r.w * 2 / 5;
    draw_form(ui, (kvs_rect){r.y, r.x, r.h - hh, fw});
    draw_results(ui, (kvs_rect){r.y, r.x + fw, r.h - hh, r.w - fw});
    draw_history(ui, (kvs_rect){r.y + r.h - hh, r.x, hh, r.w});
}

// ---- editing: every change is a command ----
static int exec_fmt(kvs_ui *ui, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int exec_fmt(kvs_ui *ui, const char *fmt, ...)
{
    char line[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return kvs_exec_line(ui->s, line);
}

static const int value_bits_cycle[] = {2, 3, 4, 8, 16};

static int lab_change(kvs_ui *ui, int key)
{
    if (ui->lab.picking) return KVS_KEY_HANDLED;
    const char *rows[128];
    int n = form_rows(ui, rows, 128);
    if (!n) return KVS_KEY_HANDLED;
    const char *f = rows[ui->lab.row];
    int d = key == KEY_LEFT || key == 'h' ? -1 : 1;
    kvq_config *c = &ui->s->cfg;
    char v[256];
    kvq_config_get(c, f, v, sizeof v);
    if (!strcmp(f, "method")) {
        const kvq_method *m = cur_method(ui);
        int i = m ? (int)(m - kvq_methods) : 0;
        i = (i + d + kvq_n_methods) % kvq_n_methods;
        exec_fmt(ui, "method %s", kvq_methods[i].name);
    } else if (!strcmp(f, "value_method")) {
        const kvq_method *m = kvq_method_find(c->value_method);
        int i = m ? (int)(m - kvq_methods) + d : d > 0 ? 0 : kvq_n_methods - 1;
        exec_fmt(ui, "set value_method=%s", i < 0 || i >= kvq_n_methods ? "" : kvq_methods[i].name);
    } else if (!strcmp(f, "value_bits")) {
        int k = 0;
        for (int i = 0; i < 5; i++)
            if (value_bits_cycle[i] == c->value_bits) k = i;
        k = (k + d + 5) % 5;
        exec_fmt(ui, "set value_bits=%d", value_bits_cycle[k]);
    } else if (!strcmp(f, "codebook")) {
        exec_fmt(ui, "set codebook=%s", strcmp(c->codebook, "uniform") ? "uniform" : "lloyd_max");
    } else if (!strcmp(v, "true") || !strcmp(v, "false")) {
        exec_fmt(ui, "set %s=%s", f, strcmp(v, "true") ? "true" : "false");
    } else {
        char *end;
        long x = strtol(v, &end, 10);
        if (*end || end == v) {   // text fields (paths, lists) are edited on the prompt
            kvs_ui_set_status(ui, false, "%s: press Enter to edit it on the command line", f);
            return KVS_KEY_REDRAW;
        }
        exec_fmt(ui, "set %s=%ld", f, x + d);
    }
    return KVS_KEY_REDRAW;
}

static int lab_edit(kvs_ui *ui, int key)
{
    (void)key;
    kvs_lab_state *l = &ui->lab;
    if (l->picking) {   // Enter picks the method under the cursor
        if (!pick_visible(ui, l->pick)) return KVS_KEY_HANDLED;
        l->picking = false;
        ui->filter[0] = 0;
        ui->filter_active = false;
        if (l->pick_value) exec_fmt(ui, "set value_method=%s", kvq_methods[l->pick].name);
        else exec_fmt(ui, "method %s", kvq_methods[l->pick].name);
        return KVS_KEY_REDRAW;
    }
    const char *rows[128];
    int n = form_rows(ui, rows, 128);
    if (!n) return KVS_KEY_HANDLED;
    const char *f = rows[l->row];
    if (!strcmp(f, "method") || !strcmp(f, "value_method")) {   // open the picker
        l->pick_value = f[0] == 'v';
        const kvq_method *m = kvq_method_find(l->pick_value ? ui->s->cfg.value_method : ui->s->cfg.method);
        l->pick = m ? (int)(m - kvq_methods) : 0;
        l->picking = true;
        ui->filter[0] = 0;
        ui->filter_active = false;
        return KVS_KEY_REDRAW;
    }
    char line[640], v[512];
    kvq_config_get(&ui->s->cfg, rows[ui->lab.row], v, sizeof v);
    if (!strcmp(rows[ui->lab.row], "method")) snprintf(line, sizeof line, "method ");
    else snprintf(line, sizeof line, "set %s=", rows[ui->lab.row]);
    kvs_prompt_open_edit(ui, line, v);
    return KVS_KEY_REDRAW;
}

static int lab_escape(kvs_ui *ui, int key)
{
    (void)key;
    if (!ui->lab.picking) return KVS_KEY_UNHANDLED;   // the global Esc
    ui->lab.picking = false;
    ui->filter[0] = 0;
    return KVS_KEY_REDRAW;
}

static int lab_move(kvs_ui *ui, int key)
{
    kvs_lab_state *l = &ui->lab;
    bool up = key == KEY_UP || key == 'k';
    if (l->picking) {   // next visible method in that direction
        for (int i = l->pick + (up ? -1 : 1); i >= 0 && i < kvq_n_methods; i += up ? -1 : 1)
            if (pick_visible(ui, i)) {
                l->pick = i;
                break;
            }
        return KVS_KEY_REDRAW;
    }
    const char *rows[128];
    int n = form_rows(ui, rows, 128);
    if (up) ui->lab.row = ui->lab.row > 0 ? ui->lab.row - 1 : 0;
    else ui->lab.row = ui->lab.row + 1 < n ? ui->lab.row + 1 : ui->lab.row;
    return KVS_KEY_REDRAW;
}

static int lab_run_key(kvs_ui *ui, int key)
{
    (void)key;
    kvs_lab_start_run(ui);
    return KVS_KEY_REDRAW;
}

static int lab_select_run(kvs_ui *ui, int key)
{
    int n = ui->s->n_runs;
    if (!n) return KVS_KEY_HANDLED;
    int sel = ui->lab.sel_run < 0 ? n - 1 : ui->lab.sel_run;
    sel += key == '[' ? -1 : 1;
    ui->lab.sel_run = sel < 0 ? 0 : sel >= n ? n - 1 : sel;
    return KVS_KEY_REDRAW;
}

static int lab_compare(kvs_ui *ui, int key)
{
    (void)key;
    int n = ui->s->n_runs;
    if (n < 2) {
        kvs_ui_set_status(ui, true, "compare: needs two runs in the history");
        return KVS_KEY_REDRAW;
    }
    int sel = ui->lab.sel_run < 0 ? n - 1 : ui->lab.sel_run;
    // c marks the selected run; select another with [ ] to see both
    ui->lab.cmp_run = ui->lab.cmp_run == sel ? -1 : sel;
    if (ui->lab.cmp_run >= 0) {
        if (ui->lab.sel_run < 0 || ui->lab.sel_run == sel) ui->lab.sel_run = sel > 0 ? sel - 1 : sel + 1;
        kvs_ui_set_status(ui, false, "comparing with run %d ([ ] picks the other side, c again stops)", sel + 1);
    }
    return KVS_KEY_REDRAW;
}

// A click selects a field, a method or a run; a click on the selected
// field (or any method in the picker) does what Enter does. The wheel over
// the history selects runs as [ ] do, elsewhere it moves the field cursor.
static int lab_mouse(kvs_ui *ui, const kvs_mouse *m)
{
    kvs_lab_state *l = &ui->lab;
    if (m->kind != KVS_MOUSE_CLICK) {
        if (m->tag != HIT_HISTORY && m->tag != HIT_RUN) return KVS_KEY_UNHANDLED;
        return lab_select_run(ui, m->kind == KVS_MOUSE_WHEEL_UP ? '[' : ']');
    }
    switch (m->tag) {
    case HIT_FIELD:
        if (l->row == m->index) return lab_edit(ui, '\n');
        l->row = m->index;
        return KVS_KEY_REDRAW;
    case HIT_PICK:
        l->pick = m->index;
        return lab_edit(ui, '\n');
    case HIT_RUN:
        l->sel_run = m->index;
        return KVS_KEY_REDRAW;
    default: return KVS_KEY_UNHANDLED;
    }
}

static const kvs_keybind lab_keys[] = {
    {KEY_UP, 'k', "Up/Down", "field", lab_move},
    {KEY_DOWN, 'j', NULL, NULL, lab_move},
    {KEY_LEFT, 'h', "Left/Right", "change value", lab_change},
    {KEY_RIGHT, 'l', NULL, NULL, lab_change},
    {'\n', KEY_ENTER, "Enter", "pick a method / edit on the command line", lab_edit},
    {27, 0, NULL, NULL, lab_escape},
    {'r', 0, "r", "run on the trace", lab_run_key},
    {'[', 0, "[ ]", "select run", lab_select_run},
    {']', 0, NULL, NULL, lab_select_run},
    {'c', 0, "c", "compare side by side", lab_compare},
    {'/', 0, "/", "filter fields or methods", kvs_filter_start},
    {0, 0, NULL, NULL, NULL},
};

const kvs_view kvs_view_lab = {
    .name = "lab", .title = "Lab", .draw = lab_draw, .keys = lab_keys, .mouse = lab_mouse,
};
