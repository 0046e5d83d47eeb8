// tui.c — the studio's loop: terminal checks, the views table, the global
// key table, key dispatch, the output sink (status line + log), colours, and
// the studio actions that the commands in app/cmd_ui.c call. The frame
// around the views is drawn by frame.c.
#include <ctype.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "commands.h"
#include "tui.h"
#include "ui.h"

#define DEFAULT_TRACE "sample_data/traces/code-1k.safetensors"

const kvs_view *const kvs_views[] = {&kvs_view_explorer, &kvs_view_lab, &kvs_view_dashboard,
                                     &kvs_view_plots, &kvs_view_calibrate, &kvs_view_help,
                                     &kvs_view_model, &kvs_view_deploy};
const int kvs_n_views = (int)(sizeof kvs_views / sizeof kvs_views[0]);

int kvs_view_index(const char *name)
{
    for (int i = 0; i < kvs_n_views; i++)
        if (!strcmp(kvs_views[i]->name, name)) return i;
    return -1;
}

const char *const *kvs_studio_view_names(void)
{
    static const char *names[16];
    for (int i = 0; i < kvs_n_views && i < 15; i++) names[i] = kvs_views[i]->name;
    return names;
}

// ---- global keys: whatever a view does not handle ----
static int gk_quit(kvs_ui *ui, int key)
{
    (void)key;
    if (kvs_job_busy(ui) && !ui->job.quit_freely) {
        ui->confirm_quit = true;
        kvs_ui_set_status(ui, false, "a job is running (%s): quit anyway? y/n", ui->job.name);
        return KVS_KEY_REDRAW;
    }
    return KVS_KEY_QUIT;
}
static int gk_help(kvs_ui *ui, int key)
{
    (void)key;
    if (ui->view != kvs_view_index("help")) ui->help_back = ui->view;   // in help, `?` is help's own key: back
    kvs_ui_switch(ui, "help");
    return KVS_KEY_REDRAW;
}

int kvs_help_back(kvs_ui *ui, int key)
{
    (void)key;
    int h = kvs_view_index("help"), b = ui->help_back;
    kvs_ui_switch(ui, kvs_views[b >= 0 && b < kvs_n_views && b != h ? b : 0]->name);
    return KVS_KEY_REDRAW;
}
static int gk_next(kvs_ui *ui, int key)
{
    int d = key == KEY_BTAB ? kvs_n_views - 1 : 1;
    kvs_ui_switch(ui, kvs_views[(ui->view + d) % kvs_n_views]->name);
    return KVS_KEY_REDRAW;
}
static int gk_digit(kvs_ui *ui, int key)
{
    int i = key - '1';
    if (i < 0 || i >= kvs_n_views) return KVS_KEY_UNHANDLED;
    kvs_ui_switch(ui, kvs_views[i]->name);
    return KVS_KEY_REDRAW;
}
static int gk_prompt(kvs_ui *ui, int key)
{
    (void)key;
    kvs_prompt_open(ui);
    return KVS_KEY_REDRAW;
}
static int gk_escape(kvs_ui *ui, int key)
{
    (void)key;
    if (kvs_job_busy(ui)) {
        kvs_job_cancel(ui);
        kvs_ui_set_status(ui, false, "cancelling %s...", ui->job.name);
    } else if (ui->dash.playing) {
        kvs_dash_pause(ui);
    } else if (ui->job.running) {   // the explorer's background statistics
        kvs_job_cancel(ui);
        kvs_ui_set_status(ui, false, "stopping %s...", ui->job.name);
    } else {
        ui->status[0] = 0;
    }
    return KVS_KEY_REDRAW;
}
static int gk_log(kvs_ui *ui, int key)
{
    (void)key;
    ui->show_log = !ui->show_log;
    ui->log_scroll = 0;
    return KVS_KEY_REDRAW;
}
static int gk_redraw(kvs_ui *ui, int key)
{
    (void)ui;
    (void)key;
    clearok(curscr, TRUE);
    return KVS_KEY_REDRAW;
}

const kvs_keybind kvs_global_keys[] = {
    {'q', KEY_F(10), "q/F10", "quit (asks while a job runs)", gk_quit},
    {'?', KEY_F(1), "?/F1", "help: keys and commands", gk_help},
    {'\t', KEY_BTAB, "Tab/S-Tab", "next / previous view", gk_next},
    {'1', 0, "1-9", "switch to the view of that tab number", gk_digit},
    {'2', 0, NULL, NULL, gk_digit},
    {'3', 0, NULL, NULL, gk_digit},
    {'4', 0, NULL, NULL, gk_digit},
    {'5', 0, NULL, NULL, gk_digit},
    {'6', 0, NULL, NULL, gk_digit},
    {'7', 0, NULL, NULL, gk_digit},
    {'8', 0, NULL, NULL, gk_digit},
    {'9', 0, NULL, NULL, gk_digit},
    {':', 0, ":", "command line (Tab completes, Up/Down history)", gk_prompt},
    {27, 0, "Esc", "cancel the running job / pause / stop the explorer's statistics / clear the status", gk_escape},
    {'L', 0, "L", "show the output log (Up/Down scroll)", gk_log},
    {12, 0, "^L", "repaint the screen", gk_redraw},
    {0, 0, NULL, NULL, NULL},
};

// ---- `/` filter ----
int kvs_filter_start(kvs_ui *ui, int key)
{
    (void)key;
    ui->filter_active = true;
    ui->filter[0] = 0;
    return KVS_KEY_REDRAW;
}

bool kvs_filter_match(const kvs_ui *ui, const char *text)
{
    if (!ui->filter[0]) return true;
    for (const char *p = text; *p; p++) {
        size_t i = 0;
        while (ui->filter[i] && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)ui->filter[i])) i++;
        if (!ui->filter[i]) return true;
    }
    return false;
}

static int filter_key(kvs_ui *ui, int key)
{
    size_t n = strlen(ui->filter);
    if (key == 27) {
        ui->filter[0] = 0;
        ui->filter_active = false;
    } else if (key == '\n' || key == KEY_ENTER) {
        ui->filter_active = false;
    } else if (key == KEY_BACKSPACE || key == 127 || key == 8) {
        if (n) ui->filter[n - 1] = 0;
        else ui->filter_active = false;
    } else if (key >= 32 && key < 127 && n + 1 < sizeof ui->filter) {
        ui->filter[n] = (char)key;
        ui->filter[n + 1] = 0;
    } else {
        return KVS_KEY_UNHANDLED;   // arrows keep moving the list while filtering
    }
    return KVS_KEY_REDRAW;
}

static const kvs_keybind *find_bind(const kvs_keybind *t, int key)
{
    for (int i = 0; t && t[i].key; i++)
        if (t[i].key == key || (t[i].alt_key && t[i].alt_key == key)) return &t[i];
    return NULL;
}

static int dispatch(const kvs_keybind *t, kvs_ui *ui, int key)
{
    const kvs_keybind *b = find_bind(t, key);
    return b ? b->fn(ui, key) : KVS_KEY_UNHANDLED;
}

// ---- output sink: every command line goes to the log and the status line ----
static void log_push(kvs_ui *ui, bool is_error, const char *line)
{
    int i = (ui->log_head + ui->log_n) % KVS_LOG_LINES;
    if (ui->log_n == KVS_LOG_LINES) ui->log_head = (ui->log_head + 1) % KVS_LOG_LINES;
    else ui->log_n++;
    snprintf(ui->log[i], sizeof ui->log[i], "%s", line);
    ui->log_total++;
    ui->log_err[i] = is_error;
}

// note: a routine job line (kvs_ui_note), which takes the status line only
// from another note or from a line shown KVS_NOTE_HOLD_S already;
// transient: always shown, and a note may replace it (kvs_ui_transient).
static void ui_put(kvs_ui *ui, bool is_error, bool note, bool transient, const char *text)
{
    pthread_mutex_lock(&ui->log_mu);
    double now = kvq_now_s();
    bool take = !note || ui->status_note || !ui->status[0] || now - ui->status_t >= KVS_NOTE_HOLD_S;
    const char *p = text;
    char line[256];
    do {   // long text (JSON) arrives unsplit: one log line per text line
        size_t n = strcspn(p, "\n");
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        log_push(ui, is_error, line);
        if (take && (*line || is_error)) {
            snprintf(ui->status, sizeof ui->status, "%s", line);
            ui->status_error = is_error;
            ui->status_note = note || transient;
            ui->status_t = now;
        }
        p += n;
        if (*p) p++;
    } while (*p);
    ui->status_dirty = true;
    pthread_mutex_unlock(&ui->log_mu);
}

static void ui_out(void *user, bool is_error, const char *text) { ui_put(user, is_error, false, false, text); }

static void ui_log(kvq_log_level level, const char *msg, void *user)
{
    if (level >= KVQ_LOG_INFO) ui_out(user, level >= KVQ_LOG_WARN, msg);
}

const char *kvs_ui_log_line(const kvs_ui *ui, int i)
{
    if (i < 0 || i >= ui->log_n) return NULL;
    return ui->log[(ui->log_head + i) % KVS_LOG_LINES];
}

#define UI_PUTF(ui, err, note, transient, fmt)        \
    do {                                                \
        char buf_[512];                                 \
        va_list ap_;                                    \
        va_start(ap_, fmt);                             \
        vsnprintf(buf_, sizeof buf_, fmt, ap_);         \
        va_end(ap_);                                    \
        ui_put(ui, err, note, transient, buf_);         \
    } while (0)

void kvs_ui_set_status(kvs_ui *ui, bool is_error, const char *fmt, ...) { UI_PUTF(ui, is_error, false, false, fmt); }
void kvs_ui_note(kvs_ui *ui, const char *fmt, ...) { UI_PUTF(ui, false, true, false, fmt); }
void kvs_ui_transient(kvs_ui *ui, const char *fmt, ...) { UI_PUTF(ui, false, false, true, fmt); }

// ---- state ----
kvs_ui *kvs_ui_new(kvs_session *s)
{
    kvs_ui *ui = calloc(1, sizeof *ui);
    if (!ui) return NULL;
    ui->s = s;
    pthread_mutex_init(&ui->log_mu, NULL);
    pthread_mutex_init(&ui->job.mu, NULL);
    int v = kvs_view_index(s->view);
    ui->view = v < 0 ? 0 : v;
    ui->ex.cached_layer = -1;
    ui->lab.cmp_run = -1;
    ui->lab.sel_run = -1;
    const kvq_method *m = kvq_method_find(s->cfg.method);
    ui->lab.method = m ? (int)(m - kvq_methods) : 0;
    ui->dash.speed = 4;
    const char *ascii = getenv("KVSTUDIO_ASCII");
    ui->ascii_forced = ascii && *ascii && strcmp(ascii, "0");
    s->out = ui_out;
    s->out_user = ui;
    s->ui = ui;
    s->interactive = true;
    kvq_log_set(ui_log, ui);
    return ui;
}

void kvs_ui_free(kvs_ui *ui)
{
    if (!ui) return;
    kvs_job_cancel(ui);
    kvs_job_wait(ui);
    kvs_dash_free(ui);
    kvs_explorer_free(ui);
    kvs_plots_free(ui);
    kvs_gen_free(ui);
    kvs_deploy_free(ui);
    kvq_log_set(NULL, NULL);
    kvs_session *s = ui->s;
    kvs_session fresh;   // restore the batch sink
    kvs_session_init(&fresh);
    s->out = fresh.out;
    s->out_user = fresh.out_user;
    pthread_mutex_destroy(&fresh.lock);
    s->ui = NULL;
    s->interactive = false;
    pthread_mutex_destroy(&ui->log_mu);
    pthread_mutex_destroy(&ui->job.mu);
    free(ui);
}

int kvs_ui_switch(kvs_ui *ui, const char *name)
{
    int i = kvs_view_index(name);
    if (i < 0) return -1;
    if (i != ui->view) {
        ui->filter_active = false;
        ui->filter[0] = 0;
        ui->help_scroll = 0;
    }
    ui->view = i;
    snprintf(ui->s->view, sizeof ui->s->view, "%s", name);
    return 0;
}

int kvs_ui_exec(kvs_ui *ui, const char *line)
{
    kvs_printf(ui->s, ":%s", line);
    long before = ui->log_total;
    // the worker holds the session lock while it reads the trace or uses the
    // artifacts: replacing (or saving) them would block the UI until the job ends
    char word[32] = "";
    sscanf(line, " %31s", word);
    if (kvs_job_busy(ui) && (!strcmp(word, "load") || !strcmp(word, "load-artifacts") || !strcmp(word, "save")))
        return kvs_errorf(ui->s, "%s: wait for %s to finish (Esc cancels it)", word, ui->job.name);
    // background work (the explorer's grid) yields to a command: it would
    // compete for the cores, and both set OpenBLAS's thread count; the tick
    // resumes it with the cells it had
    kvs_job_preempt(ui);
    // the trace being opened is not the session's until its NaN/Inf scan
    // passed: a command typed meanwhile (it may read the trace) waits for
    // the scan's end (about 2 s for 4 GB), then runs on what it found
    static const char *const no_trace_needed[] = {"help", "view", "quit", "exit", NULL};
    bool wait = ui->ex.pending && word[0] && word[0] != '#';
    for (int i = 0; no_trace_needed[i] && wait; i++) wait = strcmp(word, no_trace_needed[i]) != 0;
    if (wait) kvs_job_wait(ui);
    // `load PATH` (nothing else on the line) opens like the studio's start:
    // the header now, the NaN/Inf scan on the worker; the session keeps its
    // trace until the scan passed
    char lpath[KVQ_PATH_LEN], extra[8];
    if (!strcmp(word, "load") && sscanf(line, " load %511s %7s", lpath, extra) == 1 && lpath[0] != '-' &&
        !strpbrk(lpath, "\"'\\#") && strlen(lpath) < sizeof lpath - 1) {
        kvq_trace *t = NULL;
        kvq_trace_opts o = {.defer_scan = true};
        if (kvq_trace_open(lpath, &o, &t)) return kvs_errorf(ui->s, "%s", kvq_last_error());
        return kvs_explorer_open(ui, t);
    }
    int rc = kvs_exec_line(ui->s, line);
    // a command that printed a page (help, show, info) opens the log
    if (ui->log_total - before > 3) {
        ui->show_log = true;
        ui->log_scroll = 0;
    }
    return rc;
}

void kvs_ui_tick(kvs_ui *ui)
{
    kvs_job_poll(ui);
    kvs_session_try_select_art(ui->s);   // a method changed while a worker held the lock
    kvs_dash_tick(ui);
    kvs_explorer_tick(ui);
    if (strcmp(ui->s->view, kvs_views[ui->view]->name)) {   // `view NAME` from a script/prompt
        int i = kvs_view_index(ui->s->view);
        if (i >= 0) ui->view = i;
        else snprintf(ui->s->view, sizeof ui->s->view, "%s", kvs_views[ui->view]->name);
    }
}

// ---- colours ----
void kvs_colors_init(kvs_ui *ui)
{
    const char *nc = getenv("NO_COLOR");
    ui->colors = 0;
    if ((nc && *nc) || !has_colors() || start_color() == ERR) return;
    use_default_colors();
    bool c256 = COLORS >= 256;
    ui->colors = c256 ? 256 : 8;
    // role -> foreground (8 colours / 256 colours)
    static const short fg8[KVS_C_COUNT] = {-1, COLOR_CYAN, COLOR_BLACK, COLOR_GREEN, COLOR_YELLOW,
                                           COLOR_RED, COLOR_CYAN, COLOR_BLUE, COLOR_CYAN, COLOR_YELLOW,
                                           COLOR_GREEN, COLOR_MAGENTA, COLOR_RED, COLOR_BLUE};
    static const short fg256[KVS_C_COUNT] = {-1, 81, 16, 114, 221, 203, 117, 244,
                                             81, 221, 114, 176, 209, 111};
    for (int c = 1; c < KVS_C_COUNT; c++) {
        short bg = c == KVS_C_SEL ? (c256 ? 117 : COLOR_CYAN) : -1;
        init_pair((short)c, c256 ? fg256[c] : fg8[c], bg);
    }
}

attr_t kvs_attr(const kvs_ui *ui, kvs_color c)
{
    if (!ui->colors) {   // NO_COLOR / monochrome: attributes carry the meaning
        switch (c) {
        case KVS_C_TITLE: return A_BOLD;
        case KVS_C_SEL: return A_REVERSE;
        case KVS_C_BAD: return A_BOLD | A_UNDERLINE;
        case KVS_C_WARN: return A_BOLD;
        case KVS_C_DIM: return A_DIM;
        case KVS_C_ACCENT: return A_BOLD;
        default: return A_NORMAL;
        }
    }
    attr_t a = COLOR_PAIR(c);
    if (c == KVS_C_TITLE || c == KVS_C_BAD) a |= A_BOLD;
    return a;
}

static int ui_key(kvs_ui *ui, int key);
int kvs_ui_key(kvs_ui *ui, int key)
{
    int f = ui_key(ui, key);
    kvs_session_try_select_art(ui->s);   // the key may have changed the method (lab)
    return f;
}

static int ui_key(kvs_ui *ui, int key)
{
    if (ui->prompt_active) return kvs_prompt_key(ui, key);
    if (ui->confirm_quit) {
        ui->confirm_quit = false;
        if (key == 'y' || key == 'Y') return KVS_KEY_QUIT;
        kvs_ui_set_status(ui, false, "quit cancelled");
        return KVS_KEY_REDRAW;
    }
    if (ui->show_log) {
        switch (key) {
        case KEY_UP: case 'k': ui->log_scroll++; return KVS_KEY_REDRAW;
        case KEY_DOWN: case 'j': if (ui->log_scroll > 0) ui->log_scroll--; return KVS_KEY_REDRAW;
        case KEY_PPAGE: ui->log_scroll += 10; return KVS_KEY_REDRAW;
        case KEY_NPAGE: ui->log_scroll = ui->log_scroll > 10 ? ui->log_scroll - 10 : 0; return KVS_KEY_REDRAW;
        case KEY_HOME: case 'g': ui->log_scroll = KVS_LOG_LINES; return KVS_KEY_REDRAW;   // clamped when drawn
        case KEY_END: case 'G': ui->log_scroll = 0; return KVS_KEY_REDRAW;
        case 27: case 'L': case 'q': case '\n': case KEY_ENTER: ui->show_log = false; return KVS_KEY_REDRAW;
        case KEY_RESIZE: case 12: break;   // the terminal's, not the view's
        default:   // the overlay owns the keys: nothing reaches the view hidden under it
            kvs_ui_set_status(ui, false, "output log: Esc, q or L closes it (Up/Down/PgUp/PgDn/Home/End scroll)");
            return KVS_KEY_REDRAW;
        }
    }
    const kvs_view *v = kvs_views[ui->view];
    int f = KVS_KEY_UNHANDLED;
    if (ui->filter_active && (f = filter_key(ui, key))) return f;
    if (!ui->too_small) {
        // The trace being opened is not the session's until its NaN/Inf scan
        // passed: a view key (it may act on the trace: calibrate, run, replay)
        // waits for the scan's end, as a typed command does, instead of
        // finding no trace; the global keys (views, help, prompt, Esc, quit)
        // stay immediate.
        if (ui->ex.pending && key != KEY_RESIZE && !find_bind(kvs_global_keys, key)) kvs_job_wait(ui);
        f = dispatch(v->keys, ui, key);
        if (!f && v->key) f = v->key(ui, key);
    }
    if (!f) f = dispatch(kvs_global_keys, ui, key);
    return f;
}

// ---- the loop ----
// Ctrl-C acts like q (asks while a job runs; a second one quits); SIGTERM
// and SIGHUP quit. Either way curses is shut down and jobs are cancelled.
static volatile sig_atomic_t g_sigint, g_sigterm;
static void on_sigint(int sig) { (void)sig; g_sigint++; }
static void on_sigterm(int sig) { (void)sig; g_sigterm = 1; }

static void signals_install(struct sigaction *old_int, struct sigaction *old_term, struct sigaction *old_hup)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_sigint;   // no SA_RESTART: getch returns and the loop looks
    sigaction(SIGINT, &sa, old_int);
    sa.sa_handler = on_sigterm;
    sigaction(SIGTERM, &sa, old_term);
    sigaction(SIGHUP, &sa, old_hup);
}

static bool signals_quit(kvs_ui *ui)
{
    if (g_sigterm) return true;
    if (!g_sigint) return false;
    bool second = g_sigint > 1 || ui->confirm_quit;
    g_sigint = 0;
    if (second || !kvs_job_busy(ui) || ui->job.quit_freely) return true;
    ui->confirm_quit = true;
    kvs_ui_set_status(ui, false, "a job is running (%s): quit anyway? y/n (Ctrl-C again quits)", ui->job.name);
    return false;
}

static int refuse(kvs_session *s, const char *why)
{
    kvs_errorf(s, "%s", why);
    return 2;
}

int kvs_tui_run(kvs_session *s, const char *path)
{
    if (!isatty(0) || !isatty(1))
        return refuse(s, "the studio needs a terminal on stdin and stdout (use --script FILE, "
                         "a COMMAND, or pipe commands on stdin)");
    const char *term = getenv("TERM");
    if (!term || !*term)
        return refuse(s, "TERM is not set: cannot start the studio (try TERM=xterm-256color, or use "
                         "--script FILE / a COMMAND for batch mode)");
    // a model directory (config.json inside) opens the studio on the sample
    // trace with that model for generation in the dashboard
    char model_dir[KVQ_PATH_LEN] = "", cfg_json[KVQ_PATH_LEN + 16];
    struct stat sb;
    if (path && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(cfg_json, sizeof cfg_json, "%s/config.json", path);
        if (access(cfg_json, R_OK))
            return kvs_errorf(s, "%s: a directory without config.json is neither a trace nor a model", path), 1;
        snprintf(model_dir, sizeof model_dir, "%s", path);
        path = access(DEFAULT_TRACE, R_OK) == 0 ? DEFAULT_TRACE : NULL;
    }
    // Only the header is read before the first screen: the NaN/Inf scan (the
    // whole file, seconds at real sizes) runs on the worker after it.
    kvq_trace *opened = NULL;
    kvq_trace_opts topts = {.defer_scan = true};
    if (path && kvq_trace_open(path, &topts, &opened)) return kvs_errorf(s, "%s", kvq_last_error()), 1;
    setlocale(LC_ALL, "");
    SCREEN *scr = newterm(term, stdout, stdin);
    if (!scr) {
        kvq_trace_free(opened);
        kvs_errorf(s, "TERM='%s' is unknown to terminfo: cannot start the studio (try "
                      "TERM=xterm-256color, or use batch mode)", term);
        return 2;
    }
    set_term(scr);
    kvs_ui *ui = kvs_ui_new(s);
    if (!ui) {
        kvq_trace_free(opened);
        endwin();
        delscreen(scr);
        return refuse(s, "out of memory");
    }
    snprintf(ui->gen.model_dir, sizeof ui->gen.model_dir, "%s", model_dir);
    snprintf(s->model_dir, sizeof s->model_dir, "%s", model_dir);
    if (model_dir[0]) kvs_ui_switch(ui, "model");   // opened on a model: show it, not the sample trace
    const char *cs = setlocale(LC_CTYPE, NULL);
    ui->utf8 = !ui->ascii_forced && cs && (strstr(cs, "UTF-8") || strstr(cs, "utf8") || strstr(cs, "UTF8"));
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    // Home/End as other terminals send them: tmux and screen send ESC[1~ /
    // ESC[4~ whatever TERM says, and a terminfo entry (TERM=xterm) that lacks
    // them would hand the view ESC [ 4 ~ as four keys ("4" switches views)
    static const struct { const char *seq; int key; } extra_keys[] = {
        {"\033[1~", KEY_HOME}, {"\033[4~", KEY_END}, {"\033[7~", KEY_HOME}, {"\033[8~", KEY_END},
        {"\033[H", KEY_HOME},  {"\033[F", KEY_END},  {"\033OH", KEY_HOME},  {"\033OF", KEY_END},
    };
    for (size_t i = 0; i < sizeof extra_keys / sizeof extra_keys[0]; i++)
        if (key_defined(extra_keys[i].seq) <= 0) define_key(extra_keys[i].seq, extra_keys[i].key);
    kvs_mouse_enable(ui);
    set_escdelay(25);
    curs_set(0);
    timeout(100);   // >= 10 redraws a second while jobs/replays run
    kvs_colors_init(ui);
    if (opened) kvs_explorer_open(ui, opened);   // says "opening ...", then "loaded ..." when checked
    else if (s->trace)
        kvs_ui_set_status(ui, false, "loaded %s: %d layers x %d kv heads, %d tokens, head_dim %d  (? help, : command)",
                          s->trace->path, s->trace->n_layers, s->trace->n_kv_heads, s->trace->n_tokens,
                          s->trace->head_dim);
    char hist[KVQ_PATH_LEN];
    int prior = kvs_state_path("runs.json", hist, sizeof hist) ? kvs_session_history_open(s, hist) : 0;
    if (prior > 0)
        kvs_ui_set_status(ui, false, "%d earlier run%s restored from %s (lab and plots)", prior, prior == 1 ? "" : "s",
                          hist);
    if (model_dir[0])   // say what the trace views show: not this model's keys until one is captured
        kvs_ui_set_status(ui, false, "model %s (7 Model); the trace views show %s until c in the model view captures "
                          "one from it", model_dir, s->trace ? s->trace->path : path ? path : "no trace");
    struct sigaction old_int, old_term, old_hup;
    g_sigint = g_sigterm = 0;
    signals_install(&old_int, &old_term, &old_hup);
    bool quit = false;
    while (!s->quit && !quit && !(quit = signals_quit(ui))) {
        kvs_ui_tick(ui);
        kvs_ui_draw(ui);
        refresh();
        // wait up to one tick for a key, then take every key already typed
        // before the next (possibly busy) tick, so typing never lags a replay
        timeout(100);
        bool stale = false;   // a key since the draw: the clickable rectangles may have moved
        for (int ch = getch(); ch != ERR && !quit; ch = getch()) {
            timeout(0);
            if (ch == KEY_RESIZE) continue;   // ncurses already resized stdscr
            if (ch == KEY_MOUSE && stale) kvs_ui_draw(ui);
            if (ch == '\r') ch = '\n';
            quit = (ch == KEY_MOUSE ? kvs_ui_mouse_event(ui) : kvs_ui_key(ui, ch)) & KVS_KEY_QUIT;
            stale = true;
        }
    }
    kvs_prompt_shutdown(ui);
    endwin();
    delscreen(scr);
    kvs_ui_free(ui);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    return g_sigterm ? 128 + SIGTERM : 0;
}

// ---- studio actions for app/cmd_ui.c ----
static kvs_ui *studio(kvs_session *s, const char *cmd)
{
    if (!s->ui) kvs_errorf(s, "%s: only available in the studio", cmd);
    return s->ui;
}

int kvs_studio_view(kvs_session *s, const char *name)
{
    kvs_ui *ui = studio(s, "view");
    if (!ui) return -1;
    if (kvs_ui_switch(ui, name)) {
        char known[256] = "";
        for (int i = 0; i < kvs_n_views; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     kvs_views[i]->name);
        return kvs_errorf(s, "view: unknown view '%s' (known: %s)", name, known);
    }
    return 0;
}

int kvs_studio_run(kvs_session *s)
{
    kvs_ui *ui = studio(s, "run");
    return ui ? kvs_lab_start_run(ui) : -1;
}

int kvs_studio_play(kvs_session *s, int speed)
{
    kvs_ui *ui = studio(s, "play");
    if (!ui) return -1;
    if (speed > 0) ui->dash.speed = speed;
    return kvs_dash_play(ui, 1);
}

int kvs_studio_pause(kvs_session *s)
{
    kvs_ui *ui = studio(s, "pause");
    return ui ? kvs_dash_pause(ui) : -1;
}

int kvs_studio_step(kvs_session *s, int n)
{
    kvs_ui *ui = studio(s, "step");
    return ui ? kvs_dash_step(ui, n) : -1;
}
