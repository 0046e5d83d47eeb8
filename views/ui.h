// ui.h — studio internals shared by the files of views/: the UI state, the
// views table, key tables, widgets, the worker-thread job, the `:` prompt.
// Only the UI thread calls anything here except kvs_job_progress (worker).
#ifndef KVS_UI_H
#define KVS_UI_H
#include <curses.h>
#include <pthread.h>
#include <stdbool.h>
#include "session.h"
#include "stats.h"
#include "calib/calib.h"
#include "tui.h"

// ---- key handling: every key handler returns these flags ----
enum { KVS_KEY_UNHANDLED = 0, KVS_KEY_HANDLED = 1, KVS_KEY_REDRAW = 2, KVS_KEY_QUIT = 4 };

typedef struct kvs_ui kvs_ui;

// One row of a key table. Tables end with key == 0. The help view prints
// these same rows, so what help says is what the dispatcher does.
typedef struct kvs_keybind {
    int key;              // curses key code or character
    int alt_key;          // a second code for the same action (0 = none)
    const char *label;    // "Space", "+/-"
    const char *help;     // one line
    int (*fn)(kvs_ui *ui, int key);
} kvs_keybind;

// A screen region, in stdscr cells.
typedef struct kvs_rect { int y, x, h, w; } kvs_rect;

// ---- mouse (mouse.c): draw records what it laid out, clicks are looked up there ----
// Hit tags: the frame's, then each view's own from KVS_HIT_VIEW up.
enum { KVS_HIT_NONE = -1, KVS_HIT_TAB = 0, KVS_HIT_VIEW = 16 };
typedef enum { KVS_MOUSE_CLICK, KVS_MOUSE_WHEEL_UP, KVS_MOUSE_WHEEL_DOWN } kvs_mouse_kind;
typedef struct kvs_mouse {
    kvs_mouse_kind kind;
    int y, x;                  // stdscr cell
    int tag, index;            // the topmost rectangle drawn there (tag KVS_HIT_NONE: none)
} kvs_mouse;

typedef struct kvs_view {
    const char *name;     // `view NAME`
    const char *title;    // tab label
    void (*draw)(kvs_ui *ui, kvs_rect r);
    const kvs_keybind *keys;            // view keys (may be NULL)
    int (*key)(kvs_ui *ui, int key);    // keys not in the table (may be NULL)
    // clicks and wheel inside the view (may be NULL); an unhandled wheel
    // moves the view as Up/Down would. Returns KVS_KEY_* flags.
    int (*mouse)(kvs_ui *ui, const kvs_mouse *m);
} kvs_view;

extern const kvs_view kvs_view_explorer, kvs_view_lab, kvs_view_dashboard, kvs_view_plots,
    kvs_view_calibrate, kvs_view_help;
extern const kvs_view kvs_view_deploy;
extern const kvs_view kvs_view_model;
extern const kvs_view *const kvs_views[];
extern const int kvs_n_views;
extern const kvs_keybind kvs_global_keys[];
int kvs_view_index(const char *name);   // -1 when unknown
int kvs_filter_start(kvs_ui *ui, int key);   // key handler: `/` starts filtering
int kvs_help_back(kvs_ui *ui, int key);     // key handler: leave help to the view `?` came from
bool kvs_filter_match(const kvs_ui *ui, const char *text);   // case-insensitive substring

// ---- colours: roles map to pairs (8/256 colours) or attributes (NO_COLOR) ----
typedef enum {
    KVS_C_NORMAL, KVS_C_TITLE, KVS_C_SEL, KVS_C_GOOD, KVS_C_WARN, KVS_C_BAD, KVS_C_ACCENT, KVS_C_DIM,
    KVS_C_S1, KVS_C_S2, KVS_C_S3, KVS_C_S4, KVS_C_S5, KVS_C_S6,   // plot series
    KVS_C_COUNT
} kvs_color;
#define KVS_N_SERIES 6
void kvs_colors_init(kvs_ui *ui);
attr_t kvs_attr(const kvs_ui *ui, kvs_color c);

// ---- worker thread: one job at a time, generic over its function ----
typedef struct kvs_job kvs_job;
// Runs on the worker thread; must not touch curses. Returns a kvq_status;
// on failure leave a message with kvq_error (thread-local, copied for the UI).
typedef int (*kvs_job_fn)(kvs_job *j);
// Runs on the UI thread after the worker finished (status in j->status).
typedef void (*kvs_job_done_fn)(kvs_ui *ui, kvs_job *j);
struct kvs_job {
    char name[64];
    kvs_job_fn fn;
    kvs_job_done_fn done;
    void *arg;                 // owned by the job's creator; freed in done
    kvs_session *s;
    pthread_t thread;
    pthread_mutex_t mu;        // guards the progress fields below
    bool running, finished;    // finished: worker returned, UI not yet told
    volatile bool cancel;      // set by the UI; polled through kvs_job_progress
    double fraction, eta_s, t_start, t_end;
    char stage[64];
    int status;
    char msg[512];
    // background (kvs_job_start_background): the explorer's statistics. It
    // never makes the studio busy: kvs_job_busy is false, a kvs_job_start
    // preempts it (cancelled and joined, done called with preempted set)
    // and quitting does not ask.
    bool background, preempted;
    bool quit_freely;          // set by the starter: quitting need not ask (the open's NaN/Inf scan)
};
// kvq_progress_fn for engine calls; user = the kvs_job.
bool kvs_job_progress(double fraction, const char *stage, double eta_s, void *user);
int kvs_job_start(kvs_ui *ui, const char *name, kvs_job_fn fn, kvs_job_done_fn done, void *arg);
void kvs_job_poll(kvs_ui *ui);      // UI tick: joins a finished job and calls done
void kvs_job_cancel(kvs_ui *ui);
void kvs_job_wait(kvs_ui *ui);      // join (tests, quit)
// A foreground job runs (a background one does not count).
bool kvs_job_busy(const kvs_ui *ui);
// Starts fn as a background job; -1 (nothing said) when any job runs.
int kvs_job_start_background(kvs_ui *ui, const char *name, kvs_job_fn fn, kvs_job_done_fn done, void *arg);
// Cancels and joins a running background job (done sees preempted).
void kvs_job_preempt(kvs_ui *ui);

// ---- per-view state ----
typedef struct kvs_explorer_state {
    int layer, head;
    bool values;               // show values instead of keys
    int cached_layer, cached_head, cached_values;   // which stats are in st
    bool have_stats;
    kvq_head_stats st;
    char err[256];
    // grid summary: d_eff and top outlier ratio per (layer, kv head), filled
    // by a background job (explorer_job.c) as cells arrive
    const void *grid_trace;    // trace the grid belongs to
    float *grid_deff, *grid_ratio;   // (2, n_layers, n_kv_heads): keys, values; NAN = not yet, -1 failed
    void *grid_job;            // the running grid job's arg (explorer_job.c), NULL when none
    bool grid_stopped;         // Esc stopped the grid job: no restart until r
    int grid_h0, grid_fit;     // the head columns the grid showed last (0, 0 before the first draw)
    // a trace opened without its NaN/Inf scan (kvq_trace_opts.defer_scan):
    // the check job scans it, then it becomes the session's trace. Nothing
    // shows its numbers before that.
    void *pending;             // kvq_trace, owned; NULL when none
    char open_err[512];        // why the last such open failed (NaN at ...), "" when none
} kvs_explorer_state;

typedef struct kvs_lab_state {
    int method;                // index into kvq_methods
    int row;                   // form cursor
    int sel_run;               // history cursor
    int cmp_run;               // run compared side by side (-1 none)
    bool focus_history;
    int first_row;             // scroll of the form
    bool picking;              // the method picker replaces the form
    bool pick_value;           // picking value_method instead of method
    int pick;                  // cursor in kvq_methods
} kvs_lab_state;

#define KVS_DASH_HIST 256
typedef struct kvs_dash_state {
    void *replay;              // kvq_replay (engine/replay.h), NULL when none
    void *snap;                // kvq_replay_snapshot of the last step, owned
    kvq_config cfg;            // config the replay was built with
    const void *trace, *art;   // session trace/artifacts it was built from
    bool playing, prefilling;  // prefilling: the worker owns the replay
    bool play_after_prefill;
    int speed;                 // tokens per tick (at most; a tick is ~100 ms)
    int n_hist;                // histories over decode steps (oldest dropped)
    float hist_cos[KVS_DASH_HIST], hist_attn[KVS_DASH_HIST], hist_mem[KVS_DASH_HIST],
        hist_out[KVS_DASH_HIST];
    char err[256];
} kvs_dash_state;

// Text generation through the quantized caches (gen.c), shown by the dashboard.
#define KVS_GEN_TEXT 4096
typedef struct kvs_gen_state {
    char model_dir[KVQ_PATH_LEN];   // "" = sample_data/refmodel
    char prompt[256];
    int max_tokens;
    double temperature;
    bool active;               // the dashboard shows the generation, not the replay
    bool running;
    // written by the worker under job.mu, read by the UI under it
    char text[KVS_GEN_TEXT];   // prompt + generated bytes, oldest dropped
    int text_len;
    void *snap;                // kvq_replay_snapshot of the runner's observers, owned
    bool have_snap;
} kvs_gen_state;

typedef struct kvs_plots_state {
    int which;                 // index into the plots table (plots.c)
    int y_axis;                // rate-distortion y axis: index into kvs_rd_axes (plots.c)
    double *inertia;           // k-means convergence (n_inertia), owned
    int n_inertia;
    char kmeans_label[96];
} kvs_plots_state;

#define KVS_MAX_CALIBRATORS 16   // >= kvq_n_calibrators (checked where options are set up)
typedef struct kvs_calib_state {
    int sel;                   // row of the calibrators table
    // each calibrator owns its options: +/- on ratequant's target_bits must
    // not turn vecinfer's default into a subspace count head_dim rejects
    kvq_calib_opts opts[KVS_MAX_CALIBRATORS];
    bool opts_ready;
    char result[16][160];      // last result lines
    int n_result;
    char running[32];          // calibrator of the job in flight
    int confirm;               // row + 1 whose unsaved set Enter again replaces (0 = none asked)
} kvs_calib_state;

// The model view (model.c): the session's model, its ppl / KL grid.
#define KVS_MODEL_INFO 14
typedef struct kvs_model_state {
    char info_dir[KVQ_PATH_LEN];   // the model the info lines describe ("" = not read yet)
    char info[KVS_MODEL_INFO][128];   // "arch      llama (Llama)" ...
    int n_info;
    char info_err[256];            // config.json unreadable: why
    kvs_grid_spec grid;            // the grid asked for last
    kvq_config base;               // the session config it ran on
    bool have_grid;
    // written by the worker under job.mu, read by the UI under it
    kvs_grid_cell cells[KVS_GRID_MAX_METHODS][KVS_GRID_MAX_BITS];
    int cur_m, cur_b;              // cursor cell
} kvs_model_state;

#define KVS_LOG_LINES 512
struct kvs_ui {
    kvs_session *s;
    int view;
    bool utf8, ascii_forced;
    int colors;                // 0 (NO_COLOR or mono), 8 or 256
    bool too_small;
    // status line and log (every output line goes to both)
    char status[512];
    bool status_error;
    bool status_note;          // the status line holds a kvs_ui_note line
    double status_t;           // when it was set (kvq_now_s)
    char log[KVS_LOG_LINES][256];
    bool log_err[KVS_LOG_LINES];
    int log_n, log_head;       // ring buffer
    long log_total;            // lines ever logged
    pthread_mutex_t log_mu;    // engine log lines may come from the worker
    bool status_dirty;
    bool show_log;             // log overlay
    int log_scroll;
    // `:` prompt (prompt.c)
    bool prompt_active;
    bool prompt_ready;         // readline initialised
    char history_path[KVQ_PATH_LEN];
    // `/` filter of the current view's list (reset when the view changes)
    bool filter_active;
    char filter[64];
    int help_scroll;
    // footer hints for this frame when the view is in a mode of its own (the
    // method picker): set by the view's draw, reset before each frame
    const kvs_keybind *hint_keys;
    int help_back;             // the view `?` opened help from (`?`/Esc return to it)
    // quit confirmation while a job runs
    bool confirm_quit;
    // rectangles the last frame drew (mouse.c), topmost last
#define KVS_MAX_HITS 256
    struct kvs_hit { kvs_rect r; int tag, index; } hits[KVS_MAX_HITS];
    int n_hits;
    struct kvs_deploy_state *dep;   // deploy.c, NULL until the view is first used
    kvs_job job;
    kvs_explorer_state ex;
    kvs_lab_state lab;
    kvs_dash_state dash;
    kvs_gen_state gen;
    kvs_plots_state plots;
    kvs_calib_state cal;
    kvs_model_state model;
};

// ---- tui.c (kvs_ui_draw: frame.c) ----
// Build the UI state for a session (no curses calls). Installs the output
// sink and s->ui; kvs_ui_free restores them.
kvs_ui *kvs_ui_new(kvs_session *s);
void kvs_ui_free(kvs_ui *ui);
void kvs_ui_draw(kvs_ui *ui);            // whole screen into stdscr (no refresh)
int kvs_ui_key(kvs_ui *ui, int key);     // one key through prompt/view/global tables
void kvs_ui_tick(kvs_ui *ui);            // jobs, replay, session->view changes
void kvs_ui_set_status(kvs_ui *ui, bool is_error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// A routine line of a background job (a trace checked, statistics ready):
// always in the log; on the status line only in place of another note or of
// a line that has been there KVS_NOTE_HOLD_S, so a job finishing never hides
// what the user has not had time to read (earlier runs restored, a run's
// result, the model hint).
#define KVS_NOTE_HOLD_S 4.0
void kvs_ui_note(kvs_ui *ui, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// A line the user's action starts a job with ("opening ...: checking"):
// shown at once, like kvs_ui_set_status, and the job's note replaces it.
void kvs_ui_transient(kvs_ui *ui, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int kvs_ui_switch(kvs_ui *ui, const char *name);   // 0 / -1
int kvs_ui_exec(kvs_ui *ui, const char *line);     // kvs_exec_line + status/log routing
const char *kvs_ui_log_line(const kvs_ui *ui, int i);   // i = 0 oldest

// ---- widgets.c: everything clips to its rectangle ----
void kvs_w_box(kvs_ui *ui, kvs_rect r, const char *title);
kvs_rect kvs_w_inner(kvs_rect r);
void kvs_w_text(kvs_ui *ui, int y, int x, int maxw, attr_t a, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
// Horizontal bar of frac in [0,1] over w cells (eighth blocks in UTF-8).
void kvs_w_hbar(kvs_ui *ui, int y, int x, int w, double frac, attr_t a);
// Values resampled (max per bucket) to w cells of ▁..█ (ASCII ramp otherwise).
void kvs_w_sparkline(kvs_ui *ui, int y, int x, int w, const float *v, int n, attr_t a);
// Vertical bars of v (n values, resampled to r.w columns) from 0..vmax; bars
// of columns containing a marked index use attr hi.
void kvs_w_vbars(kvs_ui *ui, kvs_rect r, const float *v, int n, double vmax, const bool *mark,
                 attr_t a, attr_t hi);

// Line plot canvas: braille (2x4 dots per cell) in UTF-8, one char per cell otherwise.
#define KVS_PLOT_MAX_W 256
#define KVS_PLOT_MAX_H 96
typedef struct kvs_plot {
    kvs_rect r;                // plotting area (without axes)
    double x0, x1, y0, y1;     // data ranges
    bool braille;
    int dw, dh;                // dots
    uint8_t dots[KVS_PLOT_MAX_H][KVS_PLOT_MAX_W];      // braille bit masks per cell
    int8_t series[KVS_PLOT_MAX_H][KVS_PLOT_MAX_W];     // series per cell (-1 empty)
    int8_t point[KVS_PLOT_MAX_H][KVS_PLOT_MAX_W];      // series of a data point in the cell (-1 none)
} kvs_plot;
// A series' look, the same in every plot that draws it (and in SVG, plots.c):
// colour (6 pairs, then the same bold; NO_COLOR: plain) and point marker.
#define KVS_N_MARKERS 10
attr_t kvs_series_attr(const kvs_ui *ui, int series);
char kvs_series_marker(int series);   // '*', 'o', 'x', ...
void kvs_plot_init(kvs_plot *p, kvs_rect r, bool braille, double x0, double x1, double y0, double y1);
void kvs_plot_point(kvs_plot *p, double x, double y, int series);   // a data point: its marker
void kvs_plot_line(kvs_plot *p, double xa, double ya, double xb, double yb, int series);
// Draws the dots plus axes labels around p->r (needs 9 columns left, 1 row below).
void kvs_plot_draw(kvs_ui *ui, const kvs_plot *p, const char *xlabel, const char *ylabel);
// Fixed-width table row: cells truncated/padded to widths (negative = right aligned).
void kvs_w_row(kvs_ui *ui, int y, int x, int maxw, attr_t a, int n, const int *widths,
               const char *const *cells);

// ---- mouse.c ----
void kvs_hit_reset(kvs_ui *ui);                                  // start of a frame
void kvs_hit_add(kvs_ui *ui, kvs_rect r, int tag, int index);    // off-screen parts dropped
// The last rectangle added that holds (y, x); false (tag KVS_HIT_NONE) when none.
bool kvs_hit_find(const kvs_ui *ui, int y, int x, int *tag, int *index);
void kvs_mouse_enable(kvs_ui *ui);       // mousemask; KVSTUDIO_NO_MOUSE=1 leaves the mouse to the terminal
int kvs_ui_mouse(kvs_ui *ui, kvs_mouse *m);   // fills m->tag/index from the hits, dispatches
int kvs_ui_mouse_event(kvs_ui *ui);      // after KEY_MOUSE: getmouse, then kvs_ui_mouse
// Numbers that never show cut: v in at most w cells with up to dec decimals,
// fewer decimals while within 5%, then k/M/G suffixes or the shortest
// exponent ("1.8e-5"). Returns the length, or -1 when it cannot fit (the
// caller drops the figure or the column). "n/a" when v is not finite.
int kvs_fmt_num(double v, int w, int dec, char *buf, size_t n);
// Same, starting from the metric's own format (engine/metrics.c).
int kvs_fmt_metric(kvq_metric_id id, double v, int w, char *buf, size_t n);
const char *kvs_metric_abbr(kvq_metric_id id);   // short label for narrow panels
// One figure of a line: full text, a shorter one, and how readily it goes
// (0 = last to go). kvs_fit_parts shortens labels (least important first),
// then drops whole parts until the line fits w cells; never cuts one.
typedef struct kvs_part { char text[128], brief[96]; int prio; } kvs_part;
void kvs_metric_part(kvs_part *p, kvq_metric_id id, double v, int prio);   // "name value unit"
int kvs_fit_parts(kvs_part *p, int n, int w, const char *sep, char *out, size_t on);   // parts shown
int kvs_w_parts(kvs_ui *ui, int y, int x, int w, attr_t a, kvs_part *p, int n, const char *sep);
// Table columns by priority: full headers if all fit, else short headers,
// else the columns with the largest prio go (prio 0 stays). width[i] = 0 for
// a dropped column, negative for right-aligned; the flex column takes the rest.
typedef struct kvs_col { const char *head, *brief; int prio, min_w; bool flex, right; } kvs_col;
int kvs_table_fit(const kvs_col *c, int n, int w, int *width, const char **hdr);
// Scroll markers of a list drawn inside box: ^/v on the right border and
// " 3-12 of 40 v" in the bottom border, only when n > vis.
void kvs_w_scroll(kvs_ui *ui, kvs_rect box, int first, int vis, int n);

// ---- prompt.c: GNU readline (callback interface) on the status line ----
void kvs_prompt_open(kvs_ui *ui);
void kvs_prompt_open_text(kvs_ui *ui, const char *text);   // prefilled line
void kvs_prompt_set_point(kvs_ui *ui, int point);   // cursor at byte `point` of the line
// prefilled `text` + `value`, value selected: typing replaces it (field edits)
void kvs_prompt_open_edit(kvs_ui *ui, const char *text, const char *value);
int kvs_prompt_key(kvs_ui *ui, int key);
void kvs_prompt_draw(kvs_ui *ui, int y);
void kvs_prompt_shutdown(kvs_ui *ui);   // saves history
// Completion candidates for the word at `start` in `line` (exposed for tests):
// calls fn(word, user) per match. Returns the count.
int kvs_prompt_complete(const char *line, int start, const char *text,
                        void (*fn)(const char *word, void *user), void *user);

// ---- views with extra entry points ----
int kvs_lab_start_run(kvs_ui *ui);                       // lab.c: run current config
int kvs_dash_play(kvs_ui *ui, int toggle_or_on);          // dashboard.c
int kvs_dash_pause(kvs_ui *ui);
int kvs_dash_step(kvs_ui *ui, int n);
void kvs_dash_tick(kvs_ui *ui);
void kvs_dash_free(kvs_ui *ui);
void kvs_explorer_free(kvs_ui *ui);
// explorer.c: UI tick (the grid job starts when cells are missing).
void kvs_explorer_tick(kvs_ui *ui);
// Statistics of one (layer, kv head) of keys or values (thread-safe: the
// grid job calls it from pool tasks); st freed with kvq_head_stats_free.
kvq_status kvs_explorer_head_stats(const kvq_trace *t, bool values, int l, int h, kvq_head_stats *st);
// explorer_job.c. kvs_explorer_open takes t, opened with defer_scan: the
// check job scans it (progress bar, Esc cancels) and then makes it the
// session's trace; 0, or -1 (said why, t freed).
int kvs_explorer_open(kvs_ui *ui, kvq_trace *t);
void kvs_explorer_grid_start(kvs_ui *ui);   // the grid job for the half on screen, if needed
void kvs_explorer_grid_sync(kvs_ui *ui);    // cells that arrived -> the grid
bool kvs_explorer_grid_half(const kvs_ui *ui, bool *values);   // a grid job runs (and its half)
void kvs_plots_free(kvs_ui *ui);
int kvs_calib_start(kvs_ui *ui, int row);                 // calibrate.c
int kvs_gen_start(kvs_ui *ui);                            // gen.c: generate on the worker
void kvs_gen_free(kvs_ui *ui);
void kvs_deploy_free(kvs_ui *ui);                         // deploy.c
void kvs_plots_draw_rd(kvs_ui *ui, kvs_rect r);             // plots.c: the rate-distortion plot in r
#endif
