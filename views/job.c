// job.c — the one worker thread: runs a job function with progress and
// cancellation, then hands the result back to the UI thread. Generic over
// the job function so every long action (lab run, replay prefill,
// calibration) plugs in the same way.
#include <string.h>
#include "ui.h"

bool kvs_job_progress(double fraction, const char *stage, double eta_s, void *user)
{
    kvs_job *j = user;
    pthread_mutex_lock(&j->mu);
    if (fraction >= 0) j->fraction = fraction > 1 ? 1 : fraction;
    if (stage) snprintf(j->stage, sizeof j->stage, "%s", stage);
    // the engine's ETA when it has one, else linear from the elapsed time
    double el = kvq_now_s() - j->t_start;
    j->eta_s = eta_s >= 0 ? eta_s : j->fraction > 0.02 ? el * (1 - j->fraction) / j->fraction : -1;
    bool c = j->cancel;
    pthread_mutex_unlock(&j->mu);
    return c;
}

static void *job_main(void *arg)
{
    kvs_job *j = arg;
    kvq_clear_error();
    int st = j->fn(j);
    pthread_mutex_lock(&j->mu);
    j->status = st;
    snprintf(j->msg, sizeof j->msg, "%s", st ? kvq_last_error() : "");
    if (st && !j->msg[0]) snprintf(j->msg, sizeof j->msg, "%s", kvq_status_str((kvq_status)st));
    j->finished = true;
    j->t_end = kvq_now_s();
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

bool kvs_job_busy(const kvs_ui *ui) { return ui->job.running && !ui->job.background; }

void kvs_job_preempt(kvs_ui *ui)
{
    kvs_job *j = &ui->job;
    if (!j->running || !j->background) return;
    j->preempted = true;
    kvs_job_cancel(ui);
    kvs_job_wait(ui);
    j->preempted = false;
}

static int job_start(kvs_ui *ui, const char *name, kvs_job_fn fn, kvs_job_done_fn done, void *arg, bool bg)
{
    kvs_job *j = &ui->job;
    if (!bg) kvs_job_preempt(ui);   // background work waits for what the user asked
    if (j->running) {
        kvs_ui_set_status(ui, true, "%s: busy with %s (Esc cancels it)", name, j->name);
        return -1;
    }
    pthread_mutex_lock(&j->mu);
    snprintf(j->name, sizeof j->name, "%s", name);
    j->fn = fn;
    j->done = done;
    j->arg = arg;
    j->s = ui->s;
    j->finished = false;
    j->cancel = false;
    j->fraction = 0;
    j->eta_s = -1;
    j->stage[0] = 0;
    j->msg[0] = 0;
    j->status = 0;
    j->t_start = kvq_now_s();
    j->background = bg;
    j->preempted = false;
    j->quit_freely = bg;
    pthread_mutex_unlock(&j->mu);
    j->running = true;
    if (pthread_create(&j->thread, NULL, job_main, j)) {
        j->running = false;
        kvs_ui_set_status(ui, true, "%s: cannot start a worker thread", name);
        return -1;
    }
    return 0;
}

int kvs_job_start(kvs_ui *ui, const char *name, kvs_job_fn fn, kvs_job_done_fn done, void *arg)
{
    return job_start(ui, name, fn, done, arg, false);
}

int kvs_job_start_background(kvs_ui *ui, const char *name, kvs_job_fn fn, kvs_job_done_fn done, void *arg)
{
    return ui->job.running ? -1 : job_start(ui, name, fn, done, arg, true);
}

void kvs_job_poll(kvs_ui *ui)
{
    kvs_job *j = &ui->job;
    if (!j->running) return;
    pthread_mutex_lock(&j->mu);
    bool fin = j->finished;
    pthread_mutex_unlock(&j->mu);
    if (!fin) return;
    pthread_join(j->thread, NULL);
    j->running = false;
    j->finished = false;
    if (j->done) j->done(ui, j);
}

void kvs_job_cancel(kvs_ui *ui)
{
    kvs_job *j = &ui->job;
    pthread_mutex_lock(&j->mu);
    if (j->running) j->cancel = true;
    pthread_mutex_unlock(&j->mu);
}

void kvs_job_wait(kvs_ui *ui)
{
    kvs_job *j = &ui->job;
    if (!j->running) return;
    pthread_join(j->thread, NULL);
    j->running = false;
    j->finished = false;
    if (j->done) j->done(ui, j);
}
