// prompt.c — the `:` command line: GNU readline's callback interface driven
// from curses. Keys come from getch and are handed to readline one byte at a
// time (rl_getc_function / rl_input_available_hook); readline never touches
// the terminal: no terminal prep, no signal handlers, output to /dev/null,
// redisplay and completion lists are drawn by us on the status lines.
// Lines run through kvs_exec_line (the one command language).
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <readline/history.h>
#include <readline/readline.h>
#include "commands.h"
#include "tui.h"
#include "ui.h"

static unsigned char g_in[64];   // bytes waiting for readline
static int g_in_n, g_in_pos;
static char *g_line;             // accepted line, run after readline returns
static bool g_got_line, g_eof;
static char g_matches[512];      // last completion list, shown above the prompt
static FILE *g_null, *g_null_in;   // readline's streams: never the terminal

static int rl_getc_fn(FILE *f)
{
    (void)f;
    return g_in_pos < g_in_n ? g_in[g_in_pos++] : EOF;
}
static int rl_avail_fn(void) { return g_in_pos < g_in_n; }
static void rl_redisplay_fn(void) {}   // the UI loop redraws from rl_line_buffer
static void rl_noprep(int meta) { (void)meta; }
static void rl_nodeprep(void) {}

static void on_line(char *line)
{
    g_got_line = true;
    g_eof = line == NULL;
    free(g_line);
    g_line = line;
    rl_callback_handler_remove();
}

static void show_matches(char **matches, int n, int maxlen)
{
    (void)maxlen;
    size_t len = 0;
    g_matches[0] = 0;
    for (int i = 1; i <= n && len < sizeof g_matches - 1; i++)
        len += (size_t)snprintf(g_matches + len, sizeof g_matches - len, "%s%s", i > 1 ? "  " : "", matches[i]);
}

// ---- completion (also used by the tests through kvs_prompt_complete) ----
typedef struct {
    const char *text;
    size_t tlen;
    void (*fn)(const char *, void *);
    void *user;
    int n;
} cands;

static void offer(cands *c, const char *prefix, const char *word, const char *suffix)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s%s", prefix, word, suffix);
    if (strncmp(buf, c->text, c->tlen)) return;
    c->fn(buf, c->user);
    c->n++;
}

// Config field names use underscores; options on the command line use dashes.
static void dashed(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s", name);
    for (char *p = out; *p; p++)
        if (*p == '_') *p = '-';
}

static int nth_word(const char *line, int start, char *first, size_t n)
{
    int words = 0;
    first[0] = 0;
    for (int i = 0; i < start;) {
        while (i < start && (line[i] == ' ' || line[i] == '\t')) i++;
        if (i >= start) break;
        int b = i;
        while (i < start && line[i] != ' ' && line[i] != '\t') i++;
        if (words == 0) snprintf(first, n, "%.*s", i - b, line + b);
        words++;
    }
    return words;   // complete words before the one being completed
}

int kvs_prompt_complete(const char *line, int start, const char *text,
                        void (*fn)(const char *word, void *user), void *user)
{
    cands c = {.text = text, .tlen = strlen(text), .fn = fn, .user = user};
    char cmd[64];
    int argi = nth_word(line, start, cmd, sizeof cmd);
    if (argi == 0) {
        for (int i = 0; i < kvs_n_commands; i++) offer(&c, "", kvs_commands[i].name, "");
        return c.n;
    }
    const kvs_command *k = kvs_command_find(cmd);
    const char *const *fields = kvq_config_field_names();
    char d[64];
    const char *eq = strchr(text, '=');
    if (eq) {   // key=value: method names after method=/value-method=
        size_t kl = (size_t)(eq - text);
        const char *key = text[0] == '-' && text[1] == '-' ? text + 2 : text;
        size_t keyl = kl - (size_t)(key - text);
        if ((keyl == 6 && !strncmp(key, "method", 6)) || (keyl == 12 && (!strncmp(key, "value-method", 12) ||
                                                                          !strncmp(key, "value_method", 12)))) {
            char pre[64];
            snprintf(pre, sizeof pre, "%.*s=", (int)kl, text);
            for (int i = 0; i < kvq_n_methods; i++) {
                offer(&c, pre, kvq_methods[i].name, "");
                if (kvq_methods[i].alias) offer(&c, pre, kvq_methods[i].alias, "");   // old names still typed
            }
        }
        return c.n;
    }
    if (text[0] == '-') {   // the options the parser accepts: the command's own, then its groups'
        if (!k) return 0;
        for (const kvs_option *o = k->options; o && o->name; o++) offer(&c, "--", o->name, "");
        if (k->groups & KVS_OPTS_TRACE) {
            offer(&c, "--", "values", "");
            offer(&c, "--", "dtype", "");
        }
        for (int i = 0; (k->groups & KVS_OPTS_CONFIG) && fields[i]; i++) {
            dashed(d, sizeof d, fields[i]);
            bool own = false;
            for (const kvs_option *o = k->options; o && o->name; o++) own |= !strcmp(o->name, d);
            if (!own) offer(&c, "--", d, "");
        }
        const char *const *co = kvq_calib_opts_names();
        for (int i = 0; (k->groups & KVS_OPTS_CALIB) && co[i]; i++) {
            dashed(d, sizeof d, co[i]);
            offer(&c, "--", d, "");
        }
        if (k->groups & KVS_OPTS_CALIB) offer(&c, "--", "model", "");
        return c.n;
    }
    if (!k) return 0;
    if (!strcmp(cmd, "method")) {
        for (int i = 0; i < kvq_n_methods; i++) {
            offer(&c, "", kvq_methods[i].name, "");
            if (kvq_methods[i].alias) offer(&c, "", kvq_methods[i].alias, "");
        }
        return c.n;
    }
    if (!strcmp(cmd, "calibrate")) {   // calibrator, then its options as k=v
        if (argi == 1)
            for (int i = 0; i < kvq_n_calibrators; i++) offer(&c, "", kvq_calibrators[i].name, "");
        const char *const *co = kvq_calib_opts_names();
        for (int i = 0; argi > 1 && co[i]; i++) {
            dashed(d, sizeof d, co[i]);
            offer(&c, "", d, "=");
        }
        return c.n;
    }
    if (!strcmp(cmd, "view")) {
        for (const char *const *v = kvs_studio_view_names(); *v; v++) offer(&c, "", *v, "");
        return c.n;
    }
    if (!strcmp(cmd, "help")) {
        for (int i = 0; i < kvs_n_commands; i++) offer(&c, "", kvs_commands[i].name, "");
        return c.n;
    }
    if (!strcmp(cmd, "set")) {
        for (int i = 0; fields[i]; i++) offer(&c, "", fields[i], "=");
        return c.n;
    }
    if (!strcmp(cmd, "export") && argi == 1) {
        static const char *const kinds[] = {"json", "csv", "svg"};
        for (int i = 0; i < 3; i++) offer(&c, "", kinds[i], "");
        return c.n;
    }
    if (!strcmp(cmd, "save") && argi == 1) {
        offer(&c, "", "artifacts", "");
        return c.n;
    }
    // anything else: file paths (load PATH, export json FILE, save artifacts DIR...)
    char *m;
    for (int st = 0; (m = rl_filename_completion_function(text, st)) != NULL; st++) {
        struct stat sb;
        bool dir = stat(m, &sb) == 0 && S_ISDIR(sb.st_mode);
        offer(&c, "", m, dir ? "/" : "");
        free(m);
    }
    return c.n;
}

typedef struct {
    char **v;
    int n, cap;
} strvec;

static void collect(const char *w, void *user)
{
    strvec *sv = user;
    if (sv->n + 1 >= sv->cap) {
        int cap = sv->cap ? 2 * sv->cap : 16;
        char **v = realloc(sv->v, sizeof *v * (size_t)cap);
        if (!v) return;
        sv->v = v;
        sv->cap = cap;
    }
    sv->v[sv->n++] = strdup(w);
}

static strvec g_cands;
static char *generator(const char *text, int state)
{
    (void)text;
    static int i;
    if (state == 0) i = 0;
    return i < g_cands.n ? strdup(g_cands.v[i++]) : NULL;
}

static char **attempt(const char *text, int start, int end)
{
    (void)end;
    for (int i = 0; i < g_cands.n; i++) free(g_cands.v[i]);
    g_cands.n = 0;
    kvs_prompt_complete(rl_line_buffer, start, text, collect, &g_cands);
    rl_attempted_completion_over = 1;   // no readline filename fallback: we did it
    bool open_ended = g_cands.n > 0;    // "key=" and "dir/" take no trailing space
    for (int i = 0; i < g_cands.n; i++) {
        size_t l = strlen(g_cands.v[i]);
        if (!l || (g_cands.v[i][l - 1] != '=' && g_cands.v[i][l - 1] != '/')) open_ended = false;
    }
    rl_completion_suppress_append = open_ended;
    g_matches[0] = 0;
    return g_cands.n ? rl_completion_matches(text, generator) : NULL;
}

// ---- lifecycle ----
static void history_file(kvs_ui *ui)
{
    if (!kvs_state_path("history", ui->history_path, sizeof ui->history_path)) ui->history_path[0] = 0;
}

static void prompt_init(kvs_ui *ui)
{
    if (ui->prompt_ready) return;
    g_null = fopen("/dev/null", "w");
    g_null_in = fopen("/dev/null", "r");
    rl_readline_name = "kvstudio";
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_prep_term_function = rl_noprep;
    rl_deprep_term_function = rl_nodeprep;
    rl_getc_function = rl_getc_fn;
    rl_input_available_hook = rl_avail_fn;
    rl_redisplay_function = rl_redisplay_fn;
    rl_completion_display_matches_hook = show_matches;
    rl_attempted_completion_function = attempt;
    rl_instream = g_null_in;   // typeahead reads must not steal bytes from curses
    rl_outstream = g_null;
    rl_variable_bind("bell-style", "none");
    rl_variable_bind("enable-bracketed-paste", "off");
    rl_variable_bind("show-all-if-ambiguous", "on");
    using_history();
    history_file(ui);
    if (ui->history_path[0]) read_history(ui->history_path);
    ui->prompt_ready = true;
}

void kvs_prompt_open(kvs_ui *ui)
{
    prompt_init(ui);
    g_in_n = g_in_pos = 0;
    g_got_line = false;
    g_matches[0] = 0;
    rl_callback_handler_install("", on_line);
    ui->prompt_active = true;
    curs_set(1);
}

void kvs_prompt_open_text(kvs_ui *ui, const char *text)
{
    kvs_prompt_open(ui);
    rl_insert_text(text);
}

void kvs_prompt_set_point(kvs_ui *ui, int point)
{
    (void)ui;
    if (point >= 0 && point <= rl_end) rl_point = point;
}

// The selected span of the prefilled line (bytes [g_sel0, g_sel1)), shown in
// reverse video: typing replaces it, Backspace/Delete remove it, any moving
// key just drops the selection (as a GUI text field does).
static int g_sel0 = -1, g_sel1 = -1;

void kvs_prompt_open_edit(kvs_ui *ui, const char *text, const char *value)
{
    kvs_prompt_open_text(ui, text);
    int a = rl_point;
    rl_insert_text(value);
    g_sel0 = a;
    g_sel1 = rl_point;
    if (g_sel1 <= g_sel0) g_sel0 = g_sel1 = -1;
}

// Before key `key`: a printable key or a deletion takes the selection away.
static void selection_key(int key)
{
    if (g_sel0 < 0) return;
    bool replace = key == KEY_BACKSPACE || key == 8 || key == 127 || key == KEY_DC ||
                   (key >= 32 && key < 256 && key != 127);
    if (replace && g_sel1 <= rl_end) {
        rl_delete_text(g_sel0, g_sel1);
        rl_point = g_sel0;
    }
    g_sel0 = g_sel1 = -1;
}

static void prompt_close(kvs_ui *ui)
{
    g_sel0 = g_sel1 = -1;
    if (ui->prompt_active && !g_got_line) rl_callback_handler_remove();
    ui->prompt_active = false;
    g_matches[0] = 0;
    curs_set(0);
}

static void feed(const char *bytes, int n)
{
    g_in_n = g_in_pos = 0;
    for (int i = 0; i < n && g_in_n < (int)sizeof g_in; i++) g_in[g_in_n++] = (unsigned char)bytes[i];
    while (g_in_pos < g_in_n && !g_got_line) rl_callback_read_char();
    g_in_n = g_in_pos = 0;
}

static void save_line(kvs_ui *ui, const char *line)
{
    HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
    if (last && !strcmp(last->line, line)) return;
    add_history(line);
    if (!ui->history_path[0]) return;
    struct stat sb;
    if (stat(ui->history_path, &sb)) write_history(ui->history_path);
    else append_history(1, ui->history_path);
}

int kvs_prompt_key(kvs_ui *ui, int key)
{
    if (g_sel0 >= 0) {
        bool del = key == KEY_BACKSPACE || key == 8 || key == 127 || key == KEY_DC;
        selection_key(key);
        if (del) return KVS_KEY_REDRAW;   // the selection was what it deleted
    }
    switch (key) {   // curses-decoded keys map to readline commands directly
    case 27: prompt_close(ui); return KVS_KEY_REDRAW;
    case KEY_LEFT: rl_backward_char(1, 0); break;
    case KEY_RIGHT: rl_forward_char(1, 0); break;
    case KEY_HOME: rl_beg_of_line(1, 0); break;
    case KEY_END: rl_end_of_line(1, 0); break;
    case KEY_UP: rl_get_previous_history(1, 0); break;
    case KEY_DOWN: rl_get_next_history(1, 0); break;
    case KEY_DC: rl_delete(1, 0); break;
    case KEY_BACKSPACE: case 8: case 127:
        if (rl_end == 0) {   // backspace on an empty line leaves, as in vim
            prompt_close(ui);
            return KVS_KEY_REDRAW;
        }
        rl_rubout(1, 0);
        break;
    case KEY_ENTER: case '\r': { char c = '\n'; feed(&c, 1); } break;
    default:
        if (key >= 0 && key < 256) {
            char c = (char)key;
            feed(&c, 1);
        }
        break;
    }
    if (!g_got_line) return KVS_KEY_REDRAW;
    // accepted (or ^D): close first so the command may open views, logs, jobs
    ui->prompt_active = false;
    g_matches[0] = 0;
    curs_set(0);
    char *line = g_line;
    g_line = NULL;
    if (!g_eof && line && line[strspn(line, " \t")]) {
        save_line(ui, line);
        kvs_ui_exec(ui, line);
    }
    free(line);
    return ui->s->quit ? KVS_KEY_QUIT : KVS_KEY_REDRAW;
}

void kvs_prompt_draw(kvs_ui *ui, int y)
{
    if (g_matches[0] && y > 0) {
        move(y - 1, 0);
        clrtoeol();
        kvs_w_text(ui, y - 1, 0, COLS, kvs_attr(ui, KVS_C_ACCENT), "%s", g_matches);
    }
    const char *buf = rl_line_buffer ? rl_line_buffer : "";
    int point = rl_point;
    // cells before the cursor (UTF-8 continuation bytes take no cell)
    int cur = 0;
    for (int i = 0; i < point && buf[i]; i++) cur += ((unsigned char)buf[i] & 0xC0) != 0x80;
    int w = COLS - 2, off = 0;
    if (cur > w) off = cur - w;
    int skip = 0, bi = 0;   // byte offset of cell `off`
    while (buf[bi] && skip < off) {
        bi++;
        while (((unsigned char)buf[bi] & 0xC0) == 0x80) bi++;
        skip++;
    }
    attrset(kvs_attr(ui, KVS_C_ACCENT) | A_BOLD);
    mvaddch(y, 0, ':');
    attrset(A_NORMAL);
    int len = (int)strlen(buf + bi), s0 = g_sel0 - bi, s1 = g_sel1 - bi;
    if (g_sel0 >= 0 && s0 >= 0 && s1 <= len) {
        addnstr(buf + bi, s0);
        attron(A_REVERSE);
        addnstr(buf + bi + s0, s1 - s0);
        attroff(A_REVERSE);
        addnstr(buf + bi + s1, len - s1);
    } else {
        addnstr(buf + bi, len);
    }
    clrtoeol();
    move(y, 1 + cur - off);
}

void kvs_prompt_shutdown(kvs_ui *ui)
{
    if (ui->prompt_active) prompt_close(ui);
    if (ui->prompt_ready && ui->history_path[0]) history_truncate_file(ui->history_path, 1000);
    if (ui->prompt_ready) clear_history();   // the next studio reads its own file again
    for (int i = 0; i < g_cands.n; i++) free(g_cands.v[i]);
    free(g_cands.v);
    g_cands = (strvec){0};
    free(g_line);
    g_line = NULL;
    if (g_null) fclose(g_null);
    if (g_null_in) fclose(g_null_in);
    g_null = g_null_in = NULL;
    rl_instream = rl_outstream = NULL;
    ui->prompt_ready = false;
}
