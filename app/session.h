// session.h — what one kvstudio session holds: the loaded trace, the config,
// artifacts and the history of runs. Batch mode, scripts and the studio share
// it; commands (commands.h) are the only way to change it.
#ifndef KVS_SESSION_H
#define KVS_SESSION_H
#include <stdbool.h>
#include <stdio.h>
#include <time.h>
#include <pthread.h>
#include "kvq.h"
#include "metrics.h"
#include "trace.h"

// One finished run of a method on the trace (kvstudio quantize / lab "run" /
// benchmark / compare). Kept as plain numbers so the history can be shown,
// compared and exported; every figure is one metric of engine/metrics.h
// (named in the comment), NAN when that kind of run does not measure it.
#define KVS_MAX_RUNS 256
typedef struct kvs_run {
    kvq_config cfg;
    char id[48];               // unique over sessions: "<session id>.<counter>" (history merge key)
    char label[256];           // kvq_config_label: the whole configuration
    char source[16];           // "encode" (quantize, lab run) or "replay" (benchmark, compare)
    double key_bits, value_bits;     // KVQ_M_KEY_BITS, KVQ_M_VALUE_BITS
    double key_rel_mse, value_rel_mse;   // KVQ_M_KEY_REL_MSE, KVQ_M_VALUE_REL_MSE
    double key_cosine, value_cosine;     // KVQ_M_KEY_COSINE, KVQ_M_VALUE_COSINE
    double qk_error;            // KVQ_M_QK_ERROR (encode runs)
    double probe_error;         // KVQ_M_PROBE_ERROR (replay runs)
    double attn_key_error;      // KVQ_M_ATTN_KEY_ERROR (lab run)
    double output_error;        // KVQ_M_OUTPUT_ERROR (replay runs)
    double attn_kl;             // KVQ_M_ATTN_KL, bits (replay runs)
    double compression;         // KVQ_M_COMPRESSION: 32 / (key bits + value bits)
    double cache_compression;   // KVQ_M_CACHE_COMPRESSION (replay runs)
    double encode_vps;          // KVQ_M_ENCODE_VPS (replay runs)
    int n_layers;
    double layer_key_rel_mse[KVQ_MAX_LAYERS];
    double layer_key_cosine[KVQ_MAX_LAYERS];
} kvs_run;

typedef void (*kvs_out_fn)(void *user, bool is_error, const char *line);

// Calibration artifacts the session holds, one set per method side by side:
// calibrating spectral keeps ratequant's. s->art points at the set of the
// configured method (kvs_session_select_art), so switching methods never
// loses or mismatches a calibration.
#define KVS_MAX_ARTS 8
typedef struct kvs_art_slot {
    kvq_artifacts *art;          // owned
    char method[32];             // the artifacts' metadata `method`
    char trace[KVQ_PATH_LEN];    // trace calibrated on (metadata trace.path)
    char options[256];           // the options that differ from the defaults, "name=value ..."
    time_t when;                 // calibrated or loaded
    char dir[KVQ_PATH_LEN];      // saved to / loaded from; "" = unsaved
} kvs_art_slot;

typedef struct kvs_session {
    kvq_trace *trace;            // owned; NULL when none loaded
    kvq_config cfg;
    kvs_art_slot arts[KVS_MAX_ARTS];   // owned; [0, n_arts)
    int n_arts;
    kvq_artifacts *art;          // borrowed from arts[]: the configured method's set (NULL when none)
    char art_dir[KVQ_PATH_LEN];  // that set's dir ("" = unsaved)
    kvs_run runs[KVS_MAX_RUNS];
    int n_runs;
    bool json;                   // commands print JSON where they can
    bool quit;
    bool interactive;            // the studio is running (commands may switch views)
    char view[32];               // requested view name (studio reads it)
    kvs_out_fn out;              // where command output goes (stdout in batch)
    void *out_user;
    pthread_mutex_t lock;        // guards runs/trace while a worker thread is active
    char runs_path[KVQ_PATH_LEN];   // run history file ("" = not persisted)
    char session_id[32];         // prefix of this session's run ids (time + pid)
    unsigned run_counter;        // runs this session made (suffix of their ids)
    void *ui;                    // the studio's private state, NULL in batch
    char model_dir[KVQ_PATH_LEN];   // the model the studio was opened on: ppl/generate/capture's
                                    // default --model ("" = none)
} kvs_session;

void kvs_session_init(kvs_session *s);
void kvs_session_free(kvs_session *s);
// Replace the loaded trace (on error the old one stays).
int kvs_session_load(kvs_session *s, const char *path, const kvq_trace_opts *opts);
// A fresh s->session_id (wall clock + pid: distinct for sessions sharing a state dir).
void kvs_session_new_id(kvs_session *s);
// Keep art (owned from now on) as its method's set, replacing one of the
// same method (freed), and select it. dir: where it was loaded from / saved,
// "" = unsaved; options: summary text or NULL. The caller holds s->lock.
// Returns the slot it took; the previous set of that method is reported in
// *replaced_unsaved (true when it existed and was not saved; may be NULL).
kvs_art_slot *kvs_session_put_art(kvs_session *s, kvq_artifacts *art, const char *dir, const char *options,
                                  bool *replaced_unsaved);
// The calibration options that differ from the defaults, as "name=value ..."
// ("defaults" when none): the Calibrate view's list of sets.
struct kvq_calib_opts;
void kvs_calib_opts_summary(const struct kvq_calib_opts *o, char *buf, size_t n);
// The set calibrated for method, or NULL.
kvs_art_slot *kvs_session_find_art(kvs_session *s, const char *method);
// Point s->art / s->art_dir at the configured method's set (else the value
// method's, else the newest). The caller holds s->lock.
void kvs_session_select_art(kvs_session *s);
// The same without the lock held: skipped (false) while a worker holds it
// (a calibration holds it throughout); the studio retries every tick.
bool kvs_session_try_select_art(kvs_session *s);
// Append a run (drops the oldest when full). Thread-safe.
void kvs_session_add_run(kvs_session *s, const kvs_run *r);
// Sets every figure of r to NAN (no metric measured yet) and r->cfg = *cfg,
// r->label from kvq_config_label (art: the artifacts the run used, or NULL).
void kvs_run_init(kvs_run *r, const kvq_config *cfg, const kvq_artifacts *art, const char *source);
// The run's figures as a table (history, exports, the lab's history view):
// field i holds metric kvs_run_field_metric(i).
int kvs_run_n_fields(void);
kvq_metric_id kvs_run_field_metric(int i);
double kvs_run_field(const kvs_run *r, int i);

// Persist the run history in `path` (JSON, rewritten atomically after every
// run, so a crash of the studio or a worker loses nothing finished) and load
// the runs already there. Several sessions may share the file: every save
// takes flock(2) on path.lock, re-reads the file and writes the union of its
// runs and this session's (keyed by run id), so no session drops another's. A missing file is fine; an unreadable one is
// reported and left alone (renamed to path.bad). Returns runs loaded or -1.
int kvs_session_history_open(kvs_session *s, const char *path);
// Rewrites the history file now; the caller holds s->lock. 0 / -1.
int kvs_session_history_save_locked(kvs_session *s);
// The default place: $XDG_STATE_HOME/kvstudio/runs.json (or
// ~/.local/state/kvstudio/runs.json), directories created. false when neither is set.
bool kvs_state_path(const char *name, char *buf, size_t n);

// Output: one line per call (no trailing newline needed). printf-style.
void kvs_printf(kvs_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Long text (JSON documents): passed through unsplit and unbounded.
void kvs_puts(kvs_session *s, const char *text);
// Error line; returns -1 so handlers can `return kvs_errorf(...)`.
int kvs_errorf(kvs_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
