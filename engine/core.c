// core.c — status messages, thread-local errors, log sink, progress, clock.
#include <math.h>
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

// Length of the well-formed UTF-8 sequence at u (2..4), 0 when malformed.
static int utf8_len(const unsigned char *u)
{
    int n = u[0] >= 0xc2 && u[0] <= 0xdf ? 2 : u[0] >= 0xe0 && u[0] <= 0xef ? 3 : u[0] >= 0xf0 && u[0] <= 0xf4 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((u[i] & 0xc0) != 0x80) return 0;   // also stops at the NUL
    if ((u[0] == 0xe0 && u[1] < 0xa0) || (u[0] == 0xed && u[1] > 0x9f) || (u[0] == 0xf0 && u[1] < 0x90) ||
        (u[0] == 0xf4 && u[1] > 0x8f))
        return 0;   // overlong, surrogate, beyond U+10FFFF
    return n;
}

size_t kvq_text_sanitize(char *s, bool keep_ws)
{
    size_t bad = 0;
    for (unsigned char *u = (unsigned char *)s; *u;) {
        if (*u < 0x80) {
            if ((*u < 0x20 && !(keep_ws && (*u == '\n' || *u == '\t'))) || *u == 0x7f) *u = '?', bad++;
            u++;
            continue;
        }
        int n = utf8_len(u);
        if (n == 2 && u[0] == 0xc2 && u[1] <= 0x9f) {   // C1 control
            u[0] = u[1] = '?';
            bad++;
        } else if (!n) {
            *u = '?';
            bad++;
            n = 1;
        }
        u += n;
    }
    return bad;
}

const char *kvq_nonfinite_name(double v) { return isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"; }

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
