// progress.c — the terminal progress line of batch commands (progress.h).
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "progress.h"

void kvs_progress_format(char *buf, size_t n, const char *cmd, double fraction, const char *stage,
                         double elapsed_s, double eta_s)
{
    if (eta_s >= 0)
        snprintf(buf, n, "%s: %3.0f%% %s, %.0f s elapsed, about %.0f s left", cmd, fraction * 100, stage,
                 elapsed_s, eta_s);
    else
        snprintf(buf, n, "%s: %3.0f%% %s, %.0f s elapsed", cmd, fraction * 100, stage, elapsed_s);
}

static bool on_progress(double fraction, const char *stage, double eta_s, void *user)
{
    kvs_tty_progress *tp = user;
    const double now = kvq_now_s();
    if (!tp->on || now - tp->t0 < KVS_PROGRESS_AFTER_S || now - tp->last < 0.2) return false;
    char line[160];
    kvs_progress_format(line, sizeof line, tp->cmd, fraction, stage, now - tp->t0, eta_s);
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    tp->last = now;
    tp->shown = true;
    return false;
}

kvq_progress *kvs_tty_progress_begin(kvs_tty_progress *tp, const kvs_session *s, const char *cmd)
{
    memset(tp, 0, sizeof *tp);
    tp->cmd = cmd;
    tp->on = !s->ui && isatty(STDERR_FILENO);
    tp->p.fn = on_progress;
    tp->p.user = tp;
    tp->t0 = kvq_now_s();
    kvq_progress_begin(&tp->p);
    return &tp->p;
}

void kvs_tty_progress_end(kvs_tty_progress *tp)
{
    if (tp->shown) fprintf(stderr, "\r\033[K");
    tp->shown = false;
}
