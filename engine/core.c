// core.c — status messages, thread-local errors, log sink, progress, clock.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "kvq.h"

static const char *const status_msgs[] = {
#define KVQ_X_MSG(name, msg) [name] = msg,
    KVQ_STATUS_LIST(KVQ_X_MSG)
#undef KVQ_X_MSG
};

const char *kvq_status_str(kvq_status s)
{
    return (s >= 0 && s < KVQ_STATUS_COUNT) ? status_msgs[s] : "unknown status";
}

static _Thread_local char err_buf[1024];

kvq_status kvq_check_shape(const char *who, const char *path, int n_layers, int n_kv_heads, int head_dim)
{
    const char *p = path ? path : "input", *w = who ? who : "engine";
    if (head_dim < 1 || head_dim > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: %s has head_dim %d, supported 1..%d", w, p, head_dim,
                         KVQ_MAX_HEAD_DIM);
    if (n_layers < 0 || n_layers > KVQ_MAX_LAYERS)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: %s has %d layers, supported 1..%d", w, p, n_layers, KVQ_MAX_LAYERS);
    if (n_kv_heads < 0)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: %s has %d kv heads, expected >= 1", w, p, n_kv_heads);
    return KVQ_OK;
}

kvq_status kvq_error(kvq_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return s;
}

const char *kvq_last_error(void) { return err_buf; }
void kvq_clear_error(void) { err_buf[0] = 0; }

static kvq_log_fn log_fn;
static void *log_user;

void kvq_log_set(kvq_log_fn fn, void *user)
{
    log_fn = fn;
    log_user = user;
}

void kvq_log(kvq_log_level level, const char *fmt, ...)
{
    if (!log_fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_fn(level, buf, log_user);
}

double kvq_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void kvq_progress_begin(kvq_progress *p)
{
    if (p) p->t_start = kvq_now_s();
}

bool kvq_progress_report(kvq_progress *p, double fraction, const char *stage)
{
    if (!p || !p->fn) return false;
    double el = kvq_now_s() - p->t_start;
    double eta = fraction > 1e-6 ? el * (1.0 - fraction) / fraction : -1.0;
    return p->fn(fraction, stage, eta, p->user);
}
