// model_jobs.c — `ppl`, `generate` and `capture` typed at the `:` prompt
// run on the worker thread (views/job.c) like a calibration: the progress
// bar, Esc cancels within one layer (the runner polls before every layer),
// and the command's output lands in the log, opened when the run is done.
// A capture then opens the trace it wrote in the session.
#include <stdlib.h>
#include <string.h>
#include "tui.h"
#include "ui.h"

typedef struct {
    kvs_model_fn fn;
    void *task;                  // owned, free()
    char open[KVQ_PATH_LEN];     // trace to open after a successful run ("" = none)
    long log_before;             // ui->log_total when the job started
} model_job;

static int model_job_run(kvs_job *j)
{
    model_job *m = j->arg;
    kvq_progress p = {.fn = kvs_job_progress, .user = j};
    kvq_progress_begin(&p);
    int rc = m->fn(j->s, m->task, &p);
    // -1: the command printed its error already; the status keeps that line
    return rc == KVQ_ERR_CANCELLED ? KVQ_ERR_CANCELLED : rc ? KVQ_ERR_ARG : KVQ_OK;
}

static void model_job_done(kvs_ui *ui, kvs_job *j)
{
    model_job *m = j->arg;
    double el = j->t_end - j->t_start;
    if (j->status == KVQ_ERR_CANCELLED) {
        kvs_ui_set_status(ui, false, "%s cancelled after %.1f s (Esc)%s", j->name, el,
                          m->open[0] ? ": no trace written" : "");
    } else if (!j->status && m->open[0]) {
        if (!kvs_session_load(ui->s, m->open, NULL)) {
            const kvq_trace *t = ui->s->trace;
            kvs_ui_set_status(ui, false, "opened the captured trace %s: %d layers x %d kv heads, %d tokens", t->path,
                              t->n_layers, t->n_kv_heads, t->n_tokens);
        }
    } else if (!j->status && ui->log_total - m->log_before > 3) {
        ui->show_log = true;   // a page of figures: shown like `info`'s
        ui->log_scroll = 0;
    }
    free(m->task);
    free(m);
    j->arg = NULL;
}

int kvs_studio_model_job(kvs_session *s, const char *name, kvs_model_fn fn, void *task, const char *open_trace)
{
    kvs_ui *ui = s->ui;
    model_job *m = ui ? calloc(1, sizeof *m) : NULL;
    if (!m) {
        free(task);
        return kvs_errorf(s, "%s: %s", name, ui ? "out of memory" : "only available in the studio");
    }
    m->fn = fn;
    m->task = task;
    snprintf(m->open, sizeof m->open, "%s", open_trace ? open_trace : "");
    m->log_before = ui->log_total;
    if (kvs_job_start(ui, name, model_job_run, model_job_done, m)) {
        free(task);
        free(m);
        return -1;
    }
    kvs_ui_set_status(ui, false, "%s running (Esc cancels)", name);
    return 0;
}
