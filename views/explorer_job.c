// explorer_job.c — the explorer's work on the worker thread, so that a
// real-size trace (4 GB) opens at once: the check job runs the NaN/Inf scan
// an open with defer_scan skipped, then hands the trace to the session; the
// grid job fills the layers x kv heads grid (d_eff, top outlier ratio) one
// layer at a time, heads on the pool, while the UI draws the cells that
// arrived. The grid job runs in the background: any job the user starts
// preempts it and it resumes (with the cells it had) when the worker is idle.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pool.h"
#include "ui.h"

// KVSTUDIO_EXPLORER_DELAY_MS: a test hook, milliseconds each job sleeps per
// progress step (a scan round, a kv head of the grid), so the TUI tests see
// the screen before the work is done on a small trace. Unset: 0.
static int delay_ms(void)
{
    const char *v = getenv("KVSTUDIO_EXPLORER_DELAY_MS");
    int ms = v ? atoi(v) : 0;
    return ms > 0 && ms < 10000 ? ms : 0;
}

static void sleep_ms(int ms)
{
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// ---- the check job: the NaN/Inf scan of a trace opened with defer_scan ----
typedef struct {
    kvq_trace *t;   // the pending trace (ui->ex.pending), read-only here
    kvs_job *j;
    int delay;
} check_job;

static bool check_progress(double fraction, const char *stage, double eta_s, void *user)
{
    check_job *c = user;
    sleep_ms(c->delay);
    return kvs_job_progress(fraction, stage, eta_s, c->j);
}

static int check_run(kvs_job *j)
{
    check_job *c = j->arg;
    c->j = j;
    kvq_progress p = {.fn = check_progress, .user = c};
    kvq_progress_begin(&p);
    kvs_job_progress(0, "NaN/Inf scan", -1, j);
    return kvq_trace_validate(c->t, &p);
}

static void check_done(kvs_ui *ui, kvs_job *j)
{
    kvs_explorer_state *e = &ui->ex;
    check_job *c = j->arg;
    kvq_trace *t = c->t;
    free(c);
    j->arg = NULL;
    e->pending = NULL;
    if (j->status == KVQ_OK) {
        kvs_session *s = ui->s;
        pthread_mutex_lock(&s->lock);
        kvq_trace_free(s->trace);
        s->trace = t;
        pthread_mutex_unlock(&s->lock);
        kvs_ui_note(ui, "loaded %s: no NaN/Inf (%.1f s); %d layers x %d kv heads, %d tokens, head_dim %d"
                          "  (? help, : command)", t->path, j->t_end - j->t_start, t->n_layers, t->n_kv_heads,
                          t->n_tokens, t->head_dim);
        return;
    }
    if (j->status == KVQ_ERR_CANCELLED) {
        snprintf(e->open_err, sizeof e->open_err, "opening %.400s cancelled (Esc): no trace loaded", t->path);
        kvs_ui_set_status(ui, false, "%s", e->open_err);
    } else {
        snprintf(e->open_err, sizeof e->open_err, "%s", j->msg);
        kvs_ui_set_status(ui, true, "%s", j->msg);
    }
    kvq_trace_free(t);
}

int kvs_explorer_open(kvs_ui *ui, kvq_trace *t)
{
    kvs_explorer_state *e = &ui->ex;
    check_job *c = calloc(1, sizeof *c);
    if (!c) {
        kvq_trace_free(t);
        kvs_ui_set_status(ui, true, "out of memory");
        return -1;
    }
    c->t = t;
    c->delay = delay_ms();
    e->pending = t;
    e->open_err[0] = 0;
    char name[64];
    const char *base = strrchr(t->path, '/');
    snprintf(name, sizeof name, "checking %.40s", base ? base + 1 : t->path);
    if (kvs_job_start(ui, name, check_run, check_done, c)) {   // cannot start a thread: said why
        e->pending = NULL;
        free(c);
        kvq_trace_free(t);
        return -1;
    }
    ui->job.quit_freely = true;   // nothing of the scan is lost by quitting
    kvs_ui_transient(ui, "opening %s: %d layers x %d kv heads, %d tokens, head_dim %d: checking for NaN/Inf "
                      "(Esc cancels)", t->path, t->n_layers, t->n_kv_heads, t->n_tokens, t->head_dim);
    return 0;
}

// ---- the grid job: statistics of one half (keys or values) of the grid ----
// Cells go in batches of n_kv_heads (a count fixed by the trace, not the
// thread count), the heads on screen first: the columns the grid shows for
// every layer, then the columns scrolled off to the side.
typedef struct {
    kvq_trace *t;            // a reference of our own: `load` may replace the session's
    bool values;
    int n;                   // n_layers * n_kv_heads cells
    float *deff, *ratio;     // (n) results; NAN = not yet; written under job.mu
    int *order, n_order;     // cells still to compute, in this order
    int i0;                  // the batch the pool tasks work on: order[i0 + task]
    float *b_deff, *b_ratio; // (n_kv_heads) that batch's results, one per task
    int delay;
    double t0;
    int n_new;               // cells this run computed
} grid_job;

static void grid_task(void *ctx, int k)
{
    grid_job *g = ctx;
    const kvq_trace *t = g->t;
    const int c = g->order[g->i0 + k], l = c / t->n_kv_heads, h = c % t->n_kv_heads;
    kvq_head_stats st;
    kvq_status rc = kvs_explorer_head_stats(t, g->values, l, h, &st);
    g->b_deff[k] = rc ? -1 : (float)st.d_eff;   // -1: this head's statistics failed
    g->b_ratio[k] = rc ? -1 : (float)st.top_ratio[0];
    if (!rc) kvq_head_stats_free(&st);
}

static int grid_run(kvs_job *j)
{
    grid_job *g = j->arg;
    const int B = g->t->n_kv_heads;
    // Parallelism is ours (heads on the pool), as in `info`: OpenBLAS's own
    // workers would spin in sched_yield per dsyrk.
    const int blas_threads = kvq_blas_threads_set(1);
    int rc = KVQ_OK;
    char stage[64];
    const int known = g->n - g->n_order;   // cells a preempted run left: the bar resumes there
    snprintf(stage, sizeof stage, "%d/%d heads", known, g->n);
    kvs_job_progress((double)known / g->n, stage, -1, j);
    for (g->i0 = 0; g->i0 < g->n_order && !rc; g->i0 += B) {
        const int m = g->n_order - g->i0 < B ? g->n_order - g->i0 : B;
        kvq_parallel_for(m, grid_task, g);
        sleep_ms(g->delay * m);
        pthread_mutex_lock(&j->mu);
        for (int k = 0; k < m; k++) {
            const int c = g->order[g->i0 + k];
            g->deff[c] = g->b_deff[k];
            g->ratio[c] = g->b_ratio[k];
        }
        g->n_new += m;
        pthread_mutex_unlock(&j->mu);
        const int done = g->i0 + m;
        const double eta = (kvq_now_s() - g->t0) / done * (g->n_order - done);   // from this run's pace
        snprintf(stage, sizeof stage, "%d/%d heads", known + done, g->n);
        if (kvs_job_progress((double)(known + done) / g->n, stage, eta, j)) rc = KVQ_ERR_CANCELLED;
    }
    kvq_blas_threads_set(blas_threads);
    return rc;
}

// Copies the cells that arrived into the explorer's grid (UI thread).
void kvs_explorer_grid_sync(kvs_ui *ui)
{
    kvs_explorer_state *e = &ui->ex;
    grid_job *g = e->grid_job;
    if (!g || e->grid_trace != g->t || !e->grid_deff) return;
    const int half = g->values ? g->n : 0;
    pthread_mutex_lock(&ui->job.mu);
    for (int i = 0; i < g->n; i++)
        if (!isnan(g->deff[i])) {
            e->grid_deff[half + i] = g->deff[i];
            e->grid_ratio[half + i] = g->ratio[i];
        }
    pthread_mutex_unlock(&ui->job.mu);
}

static void grid_job_free(grid_job *g)
{
    if (!g) return;
    kvq_trace_free(g->t);
    free(g->deff), free(g->ratio), free(g->order), free(g->b_deff), free(g->b_ratio);
    free(g);
}

static void grid_done(kvs_ui *ui, kvs_job *j)
{
    kvs_explorer_state *e = &ui->ex;
    grid_job *g = j->arg;
    kvs_explorer_grid_sync(ui);
    e->grid_job = NULL;
    j->arg = NULL;
    const char *what = g->values ? "value" : "key";
    if (j->status == KVQ_OK) {
        kvs_ui_note(ui, "explorer: %s statistics of %d heads ready (%d computed in %.1f s)", what, g->n,
                          g->n_new, j->t_end - g->t0);
    } else if (j->status == KVQ_ERR_CANCELLED && !j->preempted && e->grid_trace == g->t) {
        e->grid_stopped = true;   // the user's Esc: no restart until r
        kvs_ui_transient(ui, "explorer: %s statistics stopped (Esc); r in the explorer resumes", what);
    } else if (j->status != KVQ_ERR_CANCELLED) {
        kvs_ui_set_status(ui, true, "explorer: %s statistics: %s", what, j->msg);
    }
    grid_job_free(g);
}

// Starts the grid job for the half on screen when cells are missing and
// the worker is idle (UI tick).
void kvs_explorer_grid_start(kvs_ui *ui)
{
    kvs_explorer_state *e = &ui->ex;
    const kvq_trace *t = ui->s->trace;
    if (!t || e->grid_trace != t || !e->grid_deff || e->grid_stopped || ui->job.running) return;
    const int n = t->n_layers * t->n_kv_heads, half = e->values ? n : 0;
    int missing = 0;
    for (int i = 0; i < n; i++) missing += isnan(e->grid_deff[half + i]);
    if (!missing) return;
    grid_job *g = calloc(1, sizeof *g);
    const int H = t->n_kv_heads;
    if (g) {
        g->deff = malloc(sizeof(float) * (size_t)n);
        g->ratio = malloc(sizeof(float) * (size_t)n);
        g->order = malloc(sizeof(int) * (size_t)n);
        g->b_deff = malloc(sizeof(float) * (size_t)H);
        g->b_ratio = malloc(sizeof(float) * (size_t)H);
    }
    if (!g || !g->deff || !g->ratio || !g->order || !g->b_deff || !g->b_ratio) {
        if (g) free(g->deff), free(g->ratio), free(g->order), free(g->b_deff), free(g->b_ratio);
        free(g);
        e->grid_stopped = true;
        kvs_ui_set_status(ui, true, "explorer: out of memory for the grid");
        return;
    }
    memcpy(g->deff, e->grid_deff + half, sizeof(float) * (size_t)n);   // resume: cells known stay
    memcpy(g->ratio, e->grid_ratio + half, sizeof(float) * (size_t)n);
    // the columns on screen (as last drawn; all before the first draw) first
    int h0 = e->grid_h0 >= 0 && e->grid_h0 < H ? e->grid_h0 : 0;
    int h1 = e->grid_fit > 0 && h0 + e->grid_fit < H ? h0 + e->grid_fit : H;
    for (int pass = 0; pass < 2; pass++)
        for (int c = 0; c < n; c++) {
            const bool shown = c % H >= h0 && c % H < h1;
            if (shown == (pass == 0) && isnan(g->deff[c])) g->order[g->n_order++] = c;
        }
    g->t = kvq_trace_ref(t);
    g->values = e->values;
    g->n = n;
    g->delay = delay_ms();
    g->t0 = kvq_now_s();
    e->grid_job = g;
    if (kvs_job_start_background(ui, e->values ? "explorer values" : "explorer keys", grid_run, grid_done, g)) {
        e->grid_job = NULL;
        e->grid_stopped = true;   // no worker thread: said why, not retried every tick
        grid_job_free(g);
    }
}

bool kvs_explorer_grid_half(const kvs_ui *ui, bool *values)
{
    const grid_job *g = ui->ex.grid_job;
    if (g && values) *values = g->values;
    return g != NULL;
}
