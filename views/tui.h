// tui.h — the studio: curses loop, views, the readline `:` prompt; and the
// studio actions the command handlers of app/cmd_ui.c call.
#ifndef KVS_TUI_H
#define KVS_TUI_H
#include "session.h"

// Runs the studio on a terminal until quit. The session may already hold a
// trace (or path names one to open). Returns the process exit status.
// Refuses (message, status 2) when stdin/stdout is not a terminal or TERM is
// missing/unknown; never lets curses exit the process.
int kvs_tui_run(kvs_session *s, const char *path);

// ---- studio actions (s->ui != NULL only while the studio runs) ----
// Each returns 0, or -1 after printing an error through the session.
int kvs_studio_view(kvs_session *s, const char *name);          // switch view
int kvs_studio_run(kvs_session *s);                             // lab run on the worker thread
int kvs_studio_play(kvs_session *s, int speed);                 // speed <= 0: keep the current one
int kvs_studio_pause(kvs_session *s);
int kvs_studio_step(kvs_session *s, int n);
// Calibration on the worker thread with the calibration view's progress
// bar (for `calibrate` while the studio runs). o: engine/calib/calib.h.
struct kvq_calib_opts;
int kvs_studio_calibrate(kvs_session *s, const char *method, const struct kvq_calib_opts *o);
// `recommend` in the studio (without --json): the Deploy view measures the
// table on the worker and shows it. Options not given (engine NULL, numbers
// < 0, artifacts NULL) keep the view's current values.
int kvs_studio_recommend(kvs_session *s, const char *engine, long context, double budget_gib, long seq_len,
                         const char *artifacts);
// Model runs (ppl, generate, capture; app/cmd_model.c): fn runs one command
// on task (a flat struct, freed with free() after) and prints through the
// session; returns 0, KVQ_ERR_CANCELLED (nothing printed) or -1 (error
// printed). Any thread; p may be NULL.
typedef int (*kvs_model_fn)(kvs_session *s, void *task, kvq_progress *p);
// fn on the worker thread with the progress bar (Esc cancels); when it
// succeeds, open_trace (NULL = none) is loaded into the session. Takes task,
// also when refused (busy). 0 / -1.
int kvs_studio_model_job(kvs_session *s, const char *name, kvs_model_fn fn, void *task, const char *open_trace);
// ---- the ppl / KL grid of the model view (`grid`): methods x key bits at
// one value width, each cell one ppl run of the session's model on a text ----
#define KVS_GRID_TEXT "sample_data/texts/textwrap-1k.py"   // the default text (1 KiB of Python)
#define KVS_GRID_MAX_METHODS 8
#define KVS_GRID_MAX_BITS 6
typedef enum { KVS_CELL_EMPTY, KVS_CELL_RUNNING, KVS_CELL_DONE, KVS_CELL_FAILED, KVS_CELL_CANCELLED } kvs_cell_state;
typedef struct kvs_grid_cell {
    kvs_cell_state state;
    double bpb;                  // KVQ_M_BITS_PER_BYTE through this cell's cache
    double ref_bpb;              // the same with the fp16 cache
    double kl;                   // KVQ_M_NEXT_TOKEN_KL, bits/token, KL(fp16 || cache)
    double key_bits, value_bits; // KVQ_M_KEY_RECORD_BITS, KVQ_M_VALUE_RECORD_BITS of the cache
    char label[96];              // kvq_config_label of the cell's config
    char err[160];               // FAILED: why
} kvs_grid_cell;
typedef struct kvs_grid_spec {
    char methods[KVS_GRID_MAX_METHODS][KVQ_NAME_LEN];
    int n_methods;
    int bits[KVS_GRID_MAX_BITS];   // key bits; a fixed-width method fills column 0 only
    int n_bits;
    int value_bits;                // 16 = fp16 values
    char text[KVQ_PATH_LEN];       // scored text (tokenizer.json of the model, or bytes)
    char model_dir[KVQ_PATH_LEN];
    bool keep[KVS_GRID_MAX_METHODS][KVS_GRID_MAX_BITS];   // cells computed already: not run again
} kvs_grid_spec;
typedef void (*kvs_grid_cell_fn)(void *user, int mi, int bi, const kvs_grid_cell *c);
// Every cell of g on top of config base (app/cmd_model.c), cell() called as
// each starts (RUNNING) and ends; calibrated methods use the session's set
// for them (held under s->lock throughout). Any thread. 0, KVQ_ERR_CANCELLED
// (cells left as they were) or -1 (message printed).
int kvs_grid_run(kvs_session *s, const kvs_grid_spec *g, const kvq_config *base, kvq_progress *p,
                 kvs_grid_cell_fn cell, void *user);
// Studio: the grid on the worker thread, filling the model view's table.
int kvs_studio_grid(kvs_session *s, const kvs_grid_spec *g);
// Names of the views, NULL-terminated (completion, help, errors).
const char *const *kvs_studio_view_names(void);

// ---- used in batch too (no curses) ----
// The measurement behind `run`: the quantize report of cfg on trace t turned
// into a history row. p may be NULL (no progress, no cancel). Any thread.
// Returns a kvq_status; the message is in kvq_last_error().
int kvs_run_measure(const kvq_trace *t, const kvq_config *cfg, const kvq_artifacts *art,
                    kvq_progress *p, kvs_run *r);
// One line: the run's label, then every figure it measured as "name value unit"
// (metric names from engine/metrics.h). Used by `run` and the lab's status line.
void kvs_run_summary(const kvs_run *r, char *buf, size_t n);
// Writes a plot as an SVG file, atomically: `plot` by name (rd, compression,
// allocation, kmeans), or NULL for the one the Plots view shows (in batch:
// rate-distortion). `what` gets its name for the message ("the
// compression plot (compression)").
int kvs_plot_export_svg(kvs_session *s, const char *path, const char *plot, char *what, size_t n);
#endif
