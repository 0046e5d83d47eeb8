// frame.c — the studio's frame around the current view: the tab bar with
// the trace and config, the key hints (or the job's progress bar), the
// status line (or the `:` prompt), the log overlay and the "terminal too
// small" screen.
#include <string.h>
#include "label.h"
#include "ui.h"

#define MIN_W 80
#define MIN_H 24

// Tab labels at three widths: " 1 Explorer " each, "1 Explorer" each, or
// only the current view named ("2 3 [4 Plots] 5"): the trace and the config
// on the right matter more than the names of the other views.
static int tab_label(const kvs_ui *ui, int i, int level, char *t, size_t n)
{
    if (level == 0) return snprintf(t, n, " %d %s ", i + 1, kvs_views[i]->title);
    if (level == 1 || i == ui->view) return snprintf(t, n, "%d %s", i + 1, kvs_views[i]->title);
    return snprintf(t, n, "%d", i + 1);
}

static int tabs_width(const kvs_ui *ui, int level)
{
    int w = 0;
    char t[48];
    for (int i = 0; i < kvs_n_views; i++) w += tab_label(ui, i, level, t, sizeof t) + 1;
    return w;
}

static void draw_tabs(kvs_ui *ui)
{
    const kvs_session *s = ui->s;
    char right[256], label[160], id[16], trace[72];
    const char *tp = s->trace ? strrchr(s->trace->path, '/') : NULL;
    tp = tp ? tp + 1 : s->trace ? s->trace->path : "no trace";
    snprintf(trace, sizeof trace, "%.60s", tp);
    kvq_artifacts_id(s->art, id, sizeof id);
    kvq_config_label(&s->cfg, id, label, sizeof label);
    int level = 0;
    while (level < 2 && tabs_width(ui, level) + (int)strlen(trace) + (int)strlen(label) + 4 > COLS) level++;
    int room = COLS - tabs_width(ui, level) - 4;
    if ((int)strlen(trace) + (int)strlen(label) > room) {   // the trace without its extension, then a shorter label
        char *dot = strrchr(trace, '.');
        if (dot && dot != trace) *dot = 0;
        int lw = room - (int)strlen(trace);
        if (lw < 16) lw = 16;
        if (lw < (int)sizeof label) kvq_config_label(&s->cfg, id, label, (size_t)lw + 1);   // "..." when it does not fit
    }
    int x = 0;
    attr_t sel = kvs_attr(ui, KVS_C_SEL) | A_BOLD;
    mvhline(0, 0, ' ', COLS);
    for (int i = 0; i < kvs_n_views && x < COLS; i++) {
        char t[48];
        tab_label(ui, i, level, t, sizeof t);
        attrset(i == ui->view ? sel : A_NORMAL);
        mvaddnstr(0, x, t, COLS - x);
        kvs_hit_add(ui, (kvs_rect){0, x, 1, (int)strlen(t)}, KVS_HIT_TAB, i);
        x += (int)strlen(t) + 1;
    }
    attrset(A_NORMAL);
    snprintf(right, sizeof right, "%s  %s ", trace, label);
    kvq_text_sanitize(right, false);   // the trace's file name
    int rx = COLS - (int)strlen(right);
    if (rx > x) {
        attrset(kvs_attr(ui, KVS_C_ACCENT));
        mvaddstr(0, rx, right);
        attrset(A_NORMAL);
    }
}

static void draw_hints(kvs_ui *ui, int y)
{
    move(y, 0);
    clrtoeol();
    kvs_job *j = &ui->job;
    if (j->running) {   // background work (the explorer's statistics) shows its progress too
        pthread_mutex_lock(&j->mu);
        double f = j->fraction, eta = j->eta_s;
        char stage[64];
        snprintf(stage, sizeof stage, "%s", j->stage);
        pthread_mutex_unlock(&j->mu);
        char lab[96];
        snprintf(lab, sizeof lab, " %.40s %.40s ", j->name, stage);
        attrset(kvs_attr(ui, KVS_C_ACCENT));
        mvaddnstr(y, 0, lab, 40);
        int x = (int)strlen(lab) < 40 ? (int)strlen(lab) : 40;
        int bw = COLS - x - 32;
        if (bw > 4) {
            kvs_w_hbar(ui, y, x, bw, f, kvs_attr(ui, KVS_C_GOOD));
            x += bw;
        }
        char tail[64];
        if (eta >= 0) snprintf(tail, sizeof tail, " %3.0f%%  ETA %.0fs  Esc cancels", 100 * f, eta);
        else snprintf(tail, sizeof tail, " %3.0f%%  Esc cancels", 100 * f);
        mvaddnstr(y, x, tail, COLS - x);
        attrset(A_NORMAL);
        return;
    }
    int x = 0;
    if (ui->filter_active || ui->filter[0]) {
        attrset(kvs_attr(ui, KVS_C_ACCENT) | A_BOLD);
        mvprintw(y, 0, "/%s%s", ui->filter, ui->filter_active ? "_" : "");
        attrset(kvs_attr(ui, KVS_C_DIM));
        addstr(ui->filter_active ? "   Enter keeps the filter, Esc clears it" : "   (/ to change)");
        attrset(A_NORMAL);
        return;
    }
    // hints: the labelled keys of the current view (or of its mode: the
    // method picker, the log overlay), each whole or not at all, in table
    // order; the help text up to its first ':' or '(' (the rest is in help)
    static const kvs_keybind log_keys[] = {
        {KEY_UP, 0, "Up/Down", "scroll", NULL}, {KEY_PPAGE, 0, "PgUp/PgDn", "page", NULL},
        {KEY_HOME, 0, "Home/End", "oldest / newest", NULL}, {27, 0, "Esc/q/L", "close the log", NULL},
        {0, 0, NULL, NULL, NULL},
    };
    static const kvs_keybind prompt_keys[] = {
        {'\t', 0, "Tab", "complete", NULL}, {KEY_UP, 0, "Up/Down", "history", NULL},
        {'\n', 0, "Enter", "run the command", NULL}, {27, 0, "Esc", "cancel", NULL},
        {0, 0, NULL, NULL, NULL},
    };
    const kvs_keybind *k = ui->prompt_active ? prompt_keys : ui->show_log ? log_keys :
                           ui->hint_keys ? ui->hint_keys : kvs_views[ui->view]->keys;
    const char *tail = ui->prompt_active ? "" : COLS >= 100 ? ": command  ? help  q quit" : ": cmd  ? help  q quit";
    int room = COLS - (int)strlen(tail) - 2;
    char hint[1024] = "";
    for (int i = 0; k && k[i].key; i++) {
        if (!k[i].label) continue;
        char one[160];
        int hl = (int)strcspn(k[i].help, ":(");
        while (hl > 0 && k[i].help[hl - 1] == ' ') hl--;
        int len = snprintf(one, sizeof one, "%s %.*s  ", k[i].label, hl, k[i].help);
        if ((int)strlen(hint) + len - 2 > room) continue;   // a shorter one further on may still fit
        snprintf(hint + strlen(hint), sizeof hint - strlen(hint), "%s", one);
    }
    attrset(kvs_attr(ui, KVS_C_DIM));
    mvaddnstr(y, x, hint, room > 0 ? room : 0);
    attrset(kvs_attr(ui, KVS_C_ACCENT));
    mvaddstr(y, COLS - (int)strlen(tail) - 1, tail);
    attrset(A_NORMAL);
}

static void draw_status(kvs_ui *ui, int y)
{
    move(y, 0);
    clrtoeol();
    if (ui->prompt_active) {
        kvs_prompt_draw(ui, y);
        return;
    }
    pthread_mutex_lock(&ui->log_mu);
    attrset(ui->status_error ? kvs_attr(ui, KVS_C_BAD) : A_NORMAL);
    char line[sizeof ui->status];
    snprintf(line, sizeof line, "%s", ui->status);
    kvq_text_sanitize(line, false);
    int len = (int)strlen(line);
    if (len > COLS - 1) {   // whole words only, and a pointer to the whole line
        static const char more[] = " ... (L: log)";
        int cut = COLS - 1 - (int)sizeof more;
        while (cut > 0 && line[cut] != ' ') cut--;
        if (cut > 0) snprintf(line + cut, sizeof line - (size_t)cut, "%s", more);
    }
    mvaddnstr(y, 0, line, COLS - 1);
    attrset(A_NORMAL);
    pthread_mutex_unlock(&ui->log_mu);
}

// Row breaks of one log line wrapped at w cells (continuation rows: 2 cells
// of indent), at a space where one is in the last half of the row, so a
// number is never split over two rows. Fills brk (row starts) and returns
// the number of rows.
static int wrap_rows(const char *t, int w, int *brk, int max)
{
    int len = (int)strlen(t), n = 0, off = 0;
    while (n < max) {
        brk[n++] = off;
        int room = n > 1 ? w - 2 : w;
        if (len - off <= room) break;
        int cut = off + room;
        for (int k = cut; k > off + room / 2; k--)
            if (t[k] == ' ') {
                cut = k + 1;
                break;
            }
        off = cut;
    }
    return n;
}

// The log wraps at the box width, newest at the bottom; log_scroll counts
// rows from there.
static void draw_log(kvs_ui *ui, kvs_rect r)
{
    kvs_rect b = {r.y + 1, r.x + 2, r.h - 2, r.w - 4};
    for (int y = b.y; y < b.y + b.h; y++) mvhline(y, b.x, ' ', b.w);
    kvs_w_box(ui, b, "output log  (Up/Down/PgUp/PgDn/Home/End scroll; Esc, q or L closes)");
    kvs_rect in = kvs_w_inner(b);
    if (in.w < 8 || in.h < 1) return;
    pthread_mutex_lock(&ui->log_mu);
    int n = ui->log_n, w = in.w - 1, brk[64];   // one cell clear of the border
    int all = 0;
    for (int i = 0; i < n; i++) all += wrap_rows(ui->log[(ui->log_head + i) % KVS_LOG_LINES], w, brk, 64);
    int max_scroll = all > in.h ? all - in.h : 0;
    if (ui->log_scroll > max_scroll) ui->log_scroll = max_scroll;
    int top = all - in.h - ui->log_scroll;   // first row shown, counted from the oldest
    if (top < 0) top = 0;
    int row = 0, y = in.y;
    for (int i = 0; i < n && y < in.y + in.h; i++) {
        int k = (ui->log_head + i) % KVS_LOG_LINES;
        const char *t = ui->log[k];
        int nr = wrap_rows(t, w, brk, 64);
        if (row + nr <= top) {
            row += nr;
            continue;
        }
        attr_t a = ui->log_err[k] ? kvs_attr(ui, KVS_C_BAD) : A_NORMAL;
        for (int j = 0; j < nr && y < in.y + in.h; j++, row++) {
            if (row < top) continue;
            int end = j + 1 < nr ? brk[j + 1] : (int)strlen(t);
            kvs_w_text(ui, y++, in.x + (j ? 2 : 0), w, a, "%.*s", end - brk[j], t + brk[j]);
        }
    }
    kvs_w_scroll(ui, b, top, in.h, all > in.h ? all : in.h);
    pthread_mutex_unlock(&ui->log_mu);
}

void kvs_ui_draw(kvs_ui *ui)
{
    erase();
    kvs_hit_reset(ui);
    ui->too_small = COLS < MIN_W || LINES < MIN_H;
    if (ui->too_small) {
        const char *m1 = "terminal too small (need 80x24)";
        char m2[64];
        snprintf(m2, sizeof m2, "now %dx%d - enlarge it, or q to quit", COLS, LINES);
        int y = LINES / 2 - 1;
        attrset(kvs_attr(ui, KVS_C_WARN));
        mvaddnstr(y < 0 ? 0 : y, COLS > (int)strlen(m1) ? (COLS - (int)strlen(m1)) / 2 : 0, m1, COLS);
        attrset(A_NORMAL);
        if (y + 1 < LINES) mvaddnstr(y + 1, COLS > (int)strlen(m2) ? (COLS - (int)strlen(m2)) / 2 : 0, m2, COLS);
        if (ui->prompt_active && LINES > 2) kvs_prompt_draw(ui, LINES - 1);
        return;
    }
    draw_tabs(ui);
    ui->hint_keys = NULL;
    kvs_rect body = {1, 0, LINES - 3, COLS};
    kvs_views[ui->view]->draw(ui, body);
    if (ui->show_log) draw_log(ui, body);
    draw_hints(ui, LINES - 2);
    draw_status(ui, LINES - 1);
}

