// session.c — session state and output routing.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "session.h"
#include <time.h>
#include <unistd.h>

void kvs_session_new_id(kvs_session *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(s->session_id, sizeof s->session_id, "%lx%05lx-%d", (unsigned long)ts.tv_sec,
             (unsigned long)(ts.tv_nsec / 10000) & 0xfffff, (int)getpid());
}

static void out_stdio(void *user, bool is_error, const char *line)
{
    (void)user;
    FILE *f = is_error ? stderr : stdout;
    fprintf(f, is_error ? "kvstudio: %s\n" : "%s\n", line);
    fflush(f);
}

void kvs_session_init(kvs_session *s)
{
    memset(s, 0, sizeof *s);
    kvq_config_default(&s->cfg);
    s->out = out_stdio;
    strcpy(s->view, "explorer");
    pthread_mutex_init(&s->lock, NULL);
}

void kvs_session_free(kvs_session *s)
{
    kvq_trace_free(s->trace);
    for (int i = 0; i < s->n_arts; i++) kvq_artifacts_free(s->arts[i].art);
    s->n_arts = 0;
    pthread_mutex_destroy(&s->lock);
    s->trace = NULL;
    s->art = NULL;
}

int kvs_session_load(kvs_session *s, const char *path, const kvq_trace_opts *opts)
{
    kvq_trace *t = NULL;
    if (kvq_trace_open(path, opts, &t)) return kvs_errorf(s, "%s", kvq_last_error());
    pthread_mutex_lock(&s->lock);
    kvq_trace_free(s->trace);
    s->trace = t;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

kvs_art_slot *kvs_session_find_art(kvs_session *s, const char *method)
{
    for (int i = 0; method && i < s->n_arts; i++)
        if (!strcmp(s->arts[i].method, method)) return &s->arts[i];
    return NULL;
}

void kvs_session_select_art(kvs_session *s)
{
    kvs_art_slot *a = kvs_session_find_art(s, s->cfg.method);
    if (!a) a = kvs_session_find_art(s, s->cfg.value_method);
    if (!a && s->n_arts) a = &s->arts[s->n_arts - 1];   // the newest (slots are in calibration order)
    s->art = a ? a->art : NULL;
    snprintf(s->art_dir, sizeof s->art_dir, "%s", a ? a->dir : "");
}

bool kvs_session_try_select_art(kvs_session *s)
{
    if (pthread_mutex_trylock(&s->lock)) return false;
    kvs_session_select_art(s);
    pthread_mutex_unlock(&s->lock);
    return true;
}

kvs_art_slot *kvs_session_put_art(kvs_session *s, kvq_artifacts *art, const char *dir, const char *options,
                                  bool *replaced_unsaved)
{
    const char *m = kvq_artifacts_meta(art, "method"), *tp = kvq_artifacts_meta(art, "trace.path");
    if (!m) m = "?";
    kvs_art_slot *a = kvs_session_find_art(s, m);
    if (replaced_unsaved) *replaced_unsaved = a && !a->dir[0];
    if (!a && s->n_arts == KVS_MAX_ARTS) {   // full: the oldest set goes
        kvq_artifacts_free(s->arts[0].art);
        memmove(s->arts, s->arts + 1, sizeof s->arts[0] * (KVS_MAX_ARTS - 1));
        s->n_arts--;
    }
    if (a) {   // the replaced set's slot moves to the end: slots stay in calibration order
        kvq_artifacts_free(a->art);
        int i = (int)(a - s->arts);
        memmove(a, a + 1, sizeof s->arts[0] * (size_t)(s->n_arts - i - 1));
        s->n_arts--;
    }
    a = &s->arts[s->n_arts++];
    memset(a, 0, sizeof *a);
    a->art = art;
    snprintf(a->method, sizeof a->method, "%s", m);
    snprintf(a->trace, sizeof a->trace, "%s", tp ? tp : "?");
    snprintf(a->options, sizeof a->options, "%s", options ? options : "");
    snprintf(a->dir, sizeof a->dir, "%s", dir ? dir : "");
    a->when = time(NULL);
    kvs_session_select_art(s);
    return a;
}

void kvs_session_add_run(kvs_session *s, const kvs_run *r)
{
    pthread_mutex_lock(&s->lock);
    kvs_run *nr;
    if (s->n_runs == KVS_MAX_RUNS) {
        memmove(s->runs, s->runs + 1, sizeof s->runs[0] * (KVS_MAX_RUNS - 1));
        s->n_runs--;
    }
    nr = &s->runs[s->n_runs++];
    *nr = *r;
    if (!nr->id[0]) {
        if (!s->session_id[0]) kvs_session_new_id(s);
        snprintf(nr->id, sizeof nr->id, "%s.%u", s->session_id, ++s->run_counter);
    }
    int saved = kvs_session_history_save_locked(s);
    pthread_mutex_unlock(&s->lock);
    if (saved) kvs_errorf(s, "run history not saved: %s", kvq_last_error());
}

static void out_v(kvs_session *s, bool is_error, const char *fmt, va_list ap)
{
    char buf[4096];
    vsnprintf(buf, sizeof buf, fmt, ap);
    // every line may carry file-derived text (names, metadata, paths): no
    // escape sequence reaches the terminal, and an error stays one line
    kvq_text_sanitize(buf, !is_error);
    s->out(s->out_user, is_error, buf);
}

void kvs_printf(kvs_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    out_v(s, false, fmt, ap);
    va_end(ap);
}

void kvs_puts(kvs_session *s, const char *text)
{
    char *c = strdup(text);
    if (c) kvq_text_sanitize(c, true);
    s->out(s->out_user, false, c ? c : "(out of memory)");
    free(c);
}

int kvs_errorf(kvs_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    out_v(s, true, fmt, ap);
    va_end(ap);
    return -1;
}
