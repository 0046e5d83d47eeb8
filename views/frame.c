// frame.c — the studio's frame around the current view: the tab bar with
// the trace and config, the key hints (or the job's progress bar), the
// status line (or the `:` prompt), the log overlay and the "terminal too
// small" screen.
#include <string.h>
#include "label.h"
#include "ui.h"

#define MIN_W 80
#define MIN_H 24

static void draw_tabs(kvs_ui *ui)
{
    int x = 0;
    attr_t sel = kvs_attr(ui, KVS_C_SEL) | A_BOLD, dim = kvs_attr(ui, KVS_C_DIM);
    mvhline(0, 0, ' ', COLS);
    for (int i = 0; i < kvs_n_views && x < COLS; i++) {
        char t[48];
        snprintf(t, sizeof t, " %d %s ", i + 1, kvs_views[i]->title);
        attrset(i == ui->view ? sel : A_NORMAL);
        mvaddnstr(0, x, t, COLS - x);
        x += (int)strlen(t);
        attrset(dim);
        if (x < COLS) mvaddch(0, x++, ' ');
    }
    attrset(A_NORMAL);
    const kvs_session *s = ui->s;
    char right[160], label[96], id[16];
    const char *tp = s->trace ? strrchr(s->trace->path, '/') : NULL;
    tp = tp ? tp + 1 : s->trace ? s->trace->path : "no trace";
    kvq_artifacts_id(s->art, id, sizeof id);
    kvq_config_label(&s->cfg, id, label, sizeof label);   // the whole config, "..." when it does not fit
    snprintf(right, sizeof right, "%.60s  %s ", tp, label);
    kvq_text_sanitize(right, false);   // the trace's file name
    int rx = COLS - (int)strlen(right);
    if (rx <= x + 1) {   // no room for both: the config matters more than the file name
        snprintf(right, sizeof right, "%s ", label);
        rx = COLS - (int)strlen(right);
    }
    if (rx > x + 1) {
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
    if (kvs_job_busy(ui)) {
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
    // hints: the labelled keys of the current view, then the global essentials
    const kvs_keybind *k = kvs_views[ui->view]->keys;
    char hint[1024] = "";
    for (int i = 0; k && k[i].key; i++)
        if (k[i].label) snprintf(hint + strlen(hint), sizeof hint - strlen(hint), "%s %s  ", k[i].label, k[i].help);
    const char *tail = ": command  ? help  q quit";
    int room = COLS - (int)strlen(tail) - 2;
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
    mvaddnstr(y, 0, line, COLS - 1);
    attrset(A_NORMAL);
    pthread_mutex_unlock(&ui->log_mu);
}

static void draw_log(kvs_ui *ui, kvs_rect r)
{
    kvs_rect b = {r.y + 1, r.x + 2, r.h - 2, r.w - 4};
    for (int y = b.y; y < b.y + b.h; y++) mvhline(y, b.x, ' ', b.w);
    kvs_w_box(ui, b, "output log  (Up/Down/PgUp/PgDn/Home/End scroll; Esc, q or L closes)");
    kvs_rect in = kvs_w_inner(b);
    pthread_mutex_lock(&ui->log_mu);
    int n = ui->log_n;
    int max_scroll = n > in.h ? n - in.h : 0;
    if (ui->log_scroll > max_scroll) ui->log_scroll = max_scroll;
    int first = n - in.h - ui->log_scroll;
    if (first < 0) first = 0;
    for (int i = 0; i < in.h && first + i < n; i++) {
        int k = (ui->log_head + first + i) % KVS_LOG_LINES;
        kvs_w_text(ui, in.y + i, in.x, in.w, ui->log_err[k] ? kvs_attr(ui, KVS_C_BAD) : A_NORMAL, "%s",
                   ui->log[k]);
    }
    pthread_mutex_unlock(&ui->log_mu);
}

void kvs_ui_draw(kvs_ui *ui)
{
    erase();
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
    kvs_rect body = {1, 0, LINES - 3, COLS};
    kvs_views[ui->view]->draw(ui, body);
    if (ui->show_log) draw_log(ui, body);
    draw_hints(ui, LINES - 2);
    draw_status(ui, LINES - 1);
}

