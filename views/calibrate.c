// calibrate.c — view 5: run a calibrator of engine/calib (the table
// kvq_calibrators) on the loaded trace on the worker thread, with a progress
// bar and ETA; Esc cancels (the engine then hands out nothing). The result
// becomes the session's artifacts; `s` saves them.
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tui.h"
#include "ui.h"

typedef struct {
    char method[32];
    kvq_calib_opts opts;
    kvq_artifacts *out;
} calib_job;

static void ensure_opts(kvs_ui *ui);

static int calib_run(kvs_job *j)
{
    calib_job *c = j->arg;
    kvq_progress p = {.fn = kvs_job_progress, .user = j};
    kvq_progress_begin(&p);
    pthread_mutex_lock(&j->s->lock);   // the trace stays put while we read it
    const kvq_trace *t = j->s->trace;
    kvq_status st = t ? kvq_calibrate(c->method, t, &c->opts, &p, &c->out)
                      : kvq_error(KVQ_ERR_ARG, "calibrate: no trace loaded");
    pthread_mutex_unlock(&j->s->lock);
    return st;
}

static void result_line(kvs_calib_state *cs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result_line(kvs_calib_state *cs, const char *fmt, ...)
{
    if (cs->n_result >= (int)(sizeof cs->result / sizeof cs->result[0])) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cs->result[cs->n_result++], sizeof cs->result[0], fmt, ap);
    va_end(ap);
}

static void calib_done(kvs_ui *ui, kvs_job *j)
{
    calib_job *c = j->arg;
    kvs_calib_state *cs = &ui->cal;
    kvs_session *s = ui->s;
    cs->n_result = 0;
    cs->confirm = 0;
    cs->running[0] = 0;
    double el = j->t_end - j->t_start;
    if (j->status == KVQ_ERR_CANCELLED) {
        result_line(cs, "%s: cancelled after %.1f s; nothing was kept", c->method, el);
        kvs_ui_set_status(ui, false, "calibration %s cancelled (no artifacts kept)", c->method);
    } else if (j->status) {
        result_line(cs, "%s failed: %s", c->method, j->msg);
        kvs_ui_set_status(ui, true, "calibrate %s: %s", c->method, j->msg);
    } else {
        kvs_dash_free(ui);   // a replay's plans may point into the old artifacts
        char sum[256];
        kvs_calib_opts_summary(&c->opts, sum, sizeof sum);
        pthread_mutex_lock(&s->lock);
        kvs_session_put_art(s, c->out, "", sum, NULL);   // unsaved; Enter asked before replacing one
        pthread_mutex_unlock(&s->lock);
        c->out = NULL;
        result_line(cs, "%s: done in %.1f s, %d artifact tensors (s saves them)", c->method, el,
                    kvq_artifacts_count(s->art));
        kvs_ui_set_status(ui, false, "calibration %s done in %.1f s: %d tensors; method %s now usable", c->method,
                          el, kvq_artifacts_count(s->art), c->method);
    }
    kvq_artifacts_free(c->out);
    free(c);
    j->arg = NULL;
}

int kvs_studio_calibrate(kvs_session *s, const char *method, const kvq_calib_opts *o)
{
    kvs_ui *ui = s->ui;
    if (!ui) return kvs_errorf(s, "calibrate: only available in the studio");
    const kvq_calibrator *c = kvq_calibrator_find(method);
    if (!c) return kvs_errorf(s, "calibrate: unknown calibrator '%s'", method);
    ensure_opts(ui);
    ui->cal.sel = (int)(c - kvq_calibrators);
    ui->cal.opts[ui->cal.sel] = *o;   // this calibrator's options only
    kvs_ui_switch(ui, "calibrate");
    return kvs_calib_start(ui, ui->cal.sel);
}

int kvs_calib_start(kvs_ui *ui, int row)
{
    if (row < 0 || row >= kvq_n_calibrators || row >= KVS_MAX_CALIBRATORS) return -1;
    if (!ui->s->trace) {
        kvs_ui_set_status(ui, true, "calibrate: no trace loaded (:load PATH)");
        return -1;
    }
    // a second Enter (or :calibrate) on the same row confirms replacing an unsaved set
    const kvs_art_slot *old = kvs_session_find_art(ui->s, kvq_calibrators[row].name);
    if (old && !old->dir[0] && ui->cal.confirm != row + 1) {
        char when[16];
        strftime(when, sizeof when, "%H:%M:%S", localtime(&old->when));
        ui->cal.confirm = row + 1;
        kvs_ui_set_status(ui, true, "%s artifacts of %s are not saved: Enter again replaces them, s saves them first",
                          old->method, when);
        return 0;
    }
    ui->cal.confirm = 0;
    calib_job *c = calloc(1, sizeof *c);
    if (!c) return -1;
    snprintf(c->method, sizeof c->method, "%s", kvq_calibrators[row].name);
    c->opts = ui->cal.opts[row];
    if (kvs_job_start(ui, "calibrate", calib_run, calib_done, c)) {
        free(c);
        return -1;
    }
    snprintf(ui->job.name, sizeof ui->job.name, "calibrate %s", c->method);
    snprintf(ui->cal.running, sizeof ui->cal.running, "%s", c->method);
    ui->cal.n_result = 0;
    return 0;
}

static void ensure_opts(kvs_ui *ui)
{
    if (ui->cal.opts_ready) return;
    for (int i = 0; i < KVS_MAX_CALIBRATORS; i++) kvq_calib_opts_default(&ui->cal.opts[i]);
    ui->cal.opts_ready = true;
}

// Rows of the calibrators table that pass the `/` filter.
static int visible_rows(kvs_ui *ui, int *rows)
{
    int n = 0;
    for (int i = 0; i < kvq_n_calibrators; i++) {
        char both[256];
        snprintf(both, sizeof both, "%s %s", kvq_calibrators[i].name, kvq_calibrators[i].description);
        if (kvs_filter_match(ui, both)) rows[n++] = i;
    }
    return n;
}

static void draw_progress(kvs_ui *ui, kvs_rect in)
{
    kvs_job *j = &ui->job;
    pthread_mutex_lock(&j->mu);
    double f = j->fraction, eta = j->eta_s, el = kvq_now_s() - j->t_start;
    char stage[64];
    snprintf(stage, sizeof stage, "%s", j->stage);
    pthread_mutex_unlock(&j->mu);
    kvs_w_text(ui, in.y + 1, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_TITLE), "calibrating %s: %s", ui->cal.running,
               stage[0] ? stage : "starting");
    kvs_w_hbar(ui, in.y + 3, in.x + 1, in.w - 10, f, kvs_attr(ui, KVS_C_GOOD));
    kvs_w_text(ui, in.y + 3, in.x + in.w - 8, 7, A_BOLD, "%5.1f%%", 100 * f);
    if (eta >= 0) kvs_w_text(ui, in.y + 5, in.x + 1, in.w - 2, A_NORMAL, "elapsed %.1f s   ETA %.0f s", el, eta);
    else kvs_w_text(ui, in.y + 5, in.x + 1, in.w - 2, A_NORMAL, "elapsed %.1f s   ETA unknown", el);
    kvs_w_text(ui, in.y + 7, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM),
               "Esc cancels (the engine stops at the next chunk and keeps nothing)");
}

// Every set the session holds, one per method: the one in use is marked.
static int draw_sets(kvs_ui *ui, kvs_rect in, int y)
{
    kvs_session *s = ui->s;
    if (!s->n_arts) return y;
    kvs_w_text(ui, y++, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_TITLE), "artifacts in this session (one set per method)");
    kvs_w_text(ui, y++, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM), "  %-10s %-8s %-22s %-24s %s", "method", "when",
               "saved", "trace", "options");
    for (int i = 0; i < s->n_arts && y < in.y + in.h; i++) {
        const kvs_art_slot *a = &s->arts[i];
        char when[16];
        strftime(when, sizeof when, "%H:%M:%S", localtime(&a->when));
        const char *tr = strrchr(a->trace, '/');
        kvs_w_text(ui, y++, in.x + 1, in.w - 2, a->art == s->art ? A_BOLD : A_NORMAL, "%c %-10s %-8s %-22.22s %-24.24s %s",
                   a->art == s->art ? '>' : ' ', a->method, when, a->dir[0] ? a->dir : "not saved",
                   tr ? tr + 1 : a->trace, a->options);
    }
    return y + 1;
}

// What the session's artifacts hold: the allocation table for RateQuant,
// d_eff for SpectralQuant, and every tensor with its shape.
static void draw_artifacts(kvs_ui *ui, kvs_rect in, int y)
{
    const kvs_art_slot *slot = kvs_session_find_art(ui->s, kvq_calibrators[ui->cal.sel].name);
    const kvq_artifacts *a = slot ? slot->art : ui->s->art;   // the chosen calibrator's set, else the one in use
    const char *dir = slot ? slot->dir : ui->s->art_dir;
    if (!a) {
        kvs_w_text(ui, y, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM),
                   "no artifacts yet: choose a calibrator and press Enter");
        return;
    }
    const char *m = kvq_artifacts_meta(a, "method");
    kvs_w_text(ui, y++, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_TITLE), "artifacts: %s%s%s", m ? m : "?",
               dir[0] ? " from " : " (not saved)", dir);
    int nd;
    int64_t sh[8];
    const float *bits = kvq_artifacts_get(a, "ratequant.bits", &nd, sh);
    if (bits && nd >= 1) {
        int nl = (int)sh[0], per = nd == 2 ? (int)sh[1] : 1;
        kvs_w_text(ui, y++, in.x + 1, in.w - 2, A_BOLD, "bit allocation per layer%s", per > 1 ? " (mean over heads)" : "");
        for (int l = 0; l < nl && y < in.y + in.h - 4; l++) {
            double b = 0;
            for (int h = 0; h < per; h++) b += bits[l * per + h];
            b /= per;
            kvs_w_text(ui, y, in.x + 1, 12, A_NORMAL, "layer %-3d %2.0f", l, b);
            kvs_w_hbar(ui, y++, in.x + 14, in.w / 2, b / 8, kvs_attr(ui, KVS_C_S1 + (int)b % KVS_N_SERIES));
        }
    }
    const float *de = kvq_artifacts_get(a, "spectral.d_eff", &nd, sh);
    if (de && nd == 2) {
        kvs_w_text(ui, y++, in.x + 1, in.w - 2, A_BOLD, "d_eff per layer x kv head");
        for (int l = 0; l < (int)sh[0] && y < in.y + in.h - 4; l++) {
            char line[256] = "";
            for (int h = 0; h < (int)sh[1] && strlen(line) < 200; h++)
                snprintf(line + strlen(line), sizeof line - strlen(line), " %6.1f", de[l * sh[1] + h]);
            kvs_w_text(ui, y++, in.x + 1, in.w - 2, A_NORMAL, "layer %-3d%s", l, line);
        }
    }
    char ename[96];   // SpectralQuant: the spectrum of the head selected in the explorer
    snprintf(ename, sizeof ename, "spectral.eigenvalues.l%d.h%d", ui->ex.layer, ui->ex.head);
    const float *ev = kvq_artifacts_get(a, ename, &nd, sh);
    if (ev && nd == 1 && sh[0] > 0 && sh[0] <= KVQ_MAX_HEAD_DIM && y + 8 < in.y + in.h) {
        float lg[KVQ_MAX_HEAD_DIM];
        double e0 = ev[0] > 0 ? ev[0] : 1;
        for (int i = 0; i < (int)sh[0]; i++) {
            double v = ev[i] > 0 ? log10(ev[i] / e0) + 4 : 0;
            lg[i] = (float)(v > 0 ? v : 0);
        }
        kvs_w_text(ui, y++, in.x + 1, in.w - 2, A_BOLD, "eigen spectrum, layer %d head %d (log10, 4 decades)",
                   ui->ex.layer, ui->ex.head);
        kvs_w_vbars(ui, (kvs_rect){y, in.x + 1, 5, in.w - 2}, lg, (int)sh[0], 4, NULL, kvs_attr(ui, KVS_C_S4), 0);
        y += 6;
    }
    int n = kvq_artifacts_count(a);
    kvs_w_text(ui, y++, in.x + 1, in.w - 2, A_BOLD, "%d tensors", n);
    for (int i = 0; i < n && y < in.y + in.h; i++) {
        const char *name = kvq_artifacts_name(a, i);
        kvq_artifacts_get(a, name, &nd, sh);
        char shape[96] = "";
        for (int k = 0; k < nd && k < 8; k++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", k ? " x " : "", (long long)sh[k]);
        if (i == 7 && n > 9) {
            kvs_w_text(ui, y++, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM), "  ... %d more", n - 7);
            break;
        }
        int nw = in.w - 2 - 2 - 4 - (int)strlen(shape);   // the shape is never cut; a long name is ("~")
        const char *cells[1] = {name};
        int w[1] = {nw < 36 ? (nw > 4 ? nw : 4) : 36};
        kvs_w_row(ui, y, in.x + 3, w[0] + 1, A_NORMAL, 1, w, cells);
        kvs_w_text(ui, y++, in.x + 3 + w[0] + 1, in.w - 4 - w[0], A_NORMAL, "(%s)", shape);
    }
}

static void calib_draw(kvs_ui *ui, kvs_rect r)
{
    ensure_opts(ui);
    kvs_calib_state *cs = &ui->cal;
    int lw = r.w * 2 / 5;
    kvs_rect lb = {r.y, r.x, r.h, lw}, rb = {r.y, r.x + lw, r.h, r.w - lw};
    kvs_w_box(ui, lb, "calibrators");
    kvs_rect li = kvs_w_inner(lb);
    int rows[64], n = visible_rows(ui, rows);
    int y = li.y;
    for (int i = 0; i < n && y < li.y + li.h; i++) {
        const kvq_calibrator *c = &kvq_calibrators[rows[i]];
        bool sel = rows[i] == cs->sel;
        kvs_hit_add(ui, (kvs_rect){y, li.x, 2, li.w}, KVS_HIT_VIEW, rows[i]);   // name + description
        kvs_w_text(ui, y++, li.x, li.w, sel ? kvs_attr(ui, KVS_C_SEL) : kvs_attr(ui, KVS_C_ACCENT), " %-10s", c->name);
        kvs_w_text(ui, y++, li.x + 3, li.w - 3, kvs_attr(ui, KVS_C_DIM), "%s", c->description);
    }
    if (!n) kvs_w_text(ui, y++, li.x + 1, li.w - 1, kvs_attr(ui, KVS_C_WARN), "nothing matches /%s", ui->filter);
    y++;
    kvs_part op[2] = {{.prio = 0}, {.prio = 1}};
    snprintf(op[0].text, sizeof op[0].text, "%s options", kvq_calibrators[cs->sel].name);
    snprintf(op[1].text, sizeof op[1].text, "(+/- target bits, f first 2 layers)");
    snprintf(op[1].brief, sizeof op[1].brief, "(+/- bits, f quick)");
    kvs_w_parts(ui, y++, li.x + 1, li.w - 2, kvs_attr(ui, KVS_C_TITLE), op, 2, " ");
    const char *const *names = kvq_calib_opts_names();
    int n_opts = 0, shown = 0, y0 = y;
    for (int i = 0; names[i]; i++) {
        char v[64];
        if (kvq_calib_opts_get(&cs->opts[cs->sel], names[i], v, sizeof v)) continue;
        n_opts++;
        if (y >= li.y + li.h) continue;
        char *end;
        double x = strtod(v, &end);
        if (end != v && !*end) snprintf(v, sizeof v, "%.6g", x);   // 0.1, not 0.10000000000000001
        int nw = (int)strlen(names[i]) > 16 ? (int)strlen(names[i]) : 16;
        if (2 + nw + 1 + (int)strlen(v) >= li.w - 1) {   // a long name goes to its own row, the value never cut
            kvs_w_text(ui, y++, li.x + 1, li.w - 1, A_NORMAL, "  %s", names[i]);
            if (y >= li.y + li.h) break;
            kvs_w_text(ui, y++, li.x + 1, li.w - 1, A_NORMAL, "  %16s %s", "", v);
        } else {
            kvs_w_text(ui, y++, li.x + 1, li.w - 1, A_NORMAL, "  %-16s %s", names[i], v);
        }
        shown++;
    }
    if (y0 < li.y + li.h) kvs_w_scroll(ui, lb, 0, shown, n_opts);
    kvs_w_box(ui, rb, kvs_job_busy(ui) && cs->running[0] ? "running" : "result");
    kvs_rect ri = kvs_w_inner(rb);
    if (kvs_job_busy(ui) && cs->running[0]) {
        draw_progress(ui, ri);
        return;
    }
    y = ri.y;
    for (int i = 0; i < cs->n_result; i++)
        kvs_w_text(ui, y++, ri.x + 1, ri.w - 2, A_NORMAL, "%s", cs->result[i]);
    if (cs->n_result) y++;
    y = draw_sets(ui, ri, y);
    draw_artifacts(ui, ri, y);
}

static int calib_move(kvs_ui *ui, int key)
{
    int rows[64], n = visible_rows(ui, rows), at = 0;
    if (!n) return KVS_KEY_HANDLED;
    for (int i = 0; i < n; i++)
        if (rows[i] == ui->cal.sel) at = i;
    if (key == KEY_UP || key == 'k') at = at > 0 ? at - 1 : 0;
    else at = at + 1 < n ? at + 1 : at;
    ui->cal.sel = rows[at];
    return KVS_KEY_REDRAW;
}

static int calib_enter(kvs_ui *ui, int key)
{
    (void)key;
    ensure_opts(ui);
    int rows[64], n = visible_rows(ui, rows);
    bool visible = false;
    for (int i = 0; i < n; i++) visible |= rows[i] == ui->cal.sel;
    if (!visible && n) ui->cal.sel = rows[0];
    if (n) kvs_calib_start(ui, ui->cal.sel);
    return KVS_KEY_REDRAW;
}

static int calib_bits(kvs_ui *ui, int key)
{
    ensure_opts(ui);
    double *t = &ui->cal.opts[ui->cal.sel].target_bits;
    *t += key == '+' || key == '=' ? 0.25 : -0.25;
    if (*t < 1) *t = 1;
    if (*t > 8) *t = 8;
    return KVS_KEY_REDRAW;
}

static int calib_quick(kvs_ui *ui, int key)
{
    (void)key;
    ensure_opts(ui);
    kvq_calib_opts *o = &ui->cal.opts[ui->cal.sel];
    o->layers = o->layers ? 0 : 2;
    kvs_ui_set_status(ui, false, "calibrate %s: %s", kvq_calibrators[ui->cal.sel].name,
                      o->layers ? "the first 2 layers only (quick)" : "all layers");
    return KVS_KEY_REDRAW;
}

static int calib_save(kvs_ui *ui, int key)
{
    (void)key;
    const char *m = kvq_calibrators[ui->cal.sel].name;
    if (!kvs_session_find_art(ui->s, m)) {
        kvs_ui_set_status(ui, true, "save: no %s artifacts yet (Enter calibrates)", m);
        return KVS_KEY_REDRAW;
    }
    char line[96];   // the cursor waits before METHOD for the directory
    snprintf(line, sizeof line, "save artifacts  %s", m);
    kvs_prompt_open_text(ui, line);
    kvs_prompt_set_point(ui, (int)strlen("save artifacts "));
    return KVS_KEY_REDRAW;
}

// A click selects a calibrator (Enter still starts it: a run takes a while).
static int calib_mouse(kvs_ui *ui, const kvs_mouse *m)
{
    if (m->kind != KVS_MOUSE_CLICK || m->tag != KVS_HIT_VIEW) return KVS_KEY_UNHANDLED;
    ui->cal.sel = m->index;
    return KVS_KEY_REDRAW;
}

static const kvs_keybind calib_keys[] = {
    {KEY_UP, 'k', "Up/Down", "choose a calibrator", calib_move},
    {KEY_DOWN, 'j', NULL, NULL, calib_move},
    {'\n', KEY_ENTER, "Enter", "calibrate on the trace", calib_enter},
    {'+', '=', "+/-", "target bits", calib_bits},
    {'-', 0, NULL, NULL, calib_bits},
    {'f', 0, "f", "quick: first 2 layers", calib_quick},
    {'s', 0, "s", "save artifacts DIR", calib_save},
    {'/', 0, "/", "filter", kvs_filter_start},
    {0, 0, NULL, NULL, NULL},
};

const kvs_view kvs_view_calibrate = {
    .name = "calibrate", .title = "Calibrate", .draw = calib_draw, .keys = calib_keys, .mouse = calib_mouse,
};
