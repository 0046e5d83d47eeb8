// bench_data.c — see bench_data.h.
#include "bench_data.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kvq.h"
#include "trace.h"

static double wall_now(void *u)
{
    (void)u;
    return kvq_now_s();
}
const bench_clock bench_wall_clock = {wall_now, NULL};

void bench_tiled_free(bench_tiled *t)
{
    free(t->keys);
    free(t->vals);
    free(t->q);
    memset(t, 0, sizeof *t);
}

const char *bench_tiled_load(bench_tiled *t, const char *path, int d, int nh)
{
    static char msg[512];
    memset(t, 0, sizeof *t);
    kvq_trace *tr = NULL;
    if (kvq_trace_open(path, NULL, &tr)) {
        snprintf(msg, sizeof msg, "%s", kvq_last_error());
        return msg;
    }
    const char *e = NULL;
    if (tr->head_dim != d || tr->n_heads < nh || tr->n_queries < 1) {
        snprintf(msg, sizeof msg, "%s: head_dim %d, %d query heads, %d queries (expected head_dim %d, >= %d heads with queries)",
                 path, tr->head_dim, tr->n_heads, tr->n_queries, d, nh);
        e = msg;
    }
    size_t per = (size_t)tr->n_tokens * (size_t)d, ns = (size_t)tr->n_layers * (size_t)tr->n_kv_heads;
    float *q = NULL;
    if (!e) {
        t->ntok = tr->n_tokens;
        t->nstreams = (int)ns;
        t->d = d;
        t->keys = malloc(sizeof(float) * per * ns);
        t->vals = malloc(sizeof(float) * per * ns);
        t->q = malloc(sizeof(float) * (size_t)nh * (size_t)d);
        q = malloc(sizeof(float) * (size_t)tr->n_queries * (size_t)d);
        if (!t->keys || !t->vals || !t->q || !q) e = "bench: out of memory for the tiled trace";
    }
    for (int l = 0; !e && l < tr->n_layers; l++)
        for (int h = 0; !e && h < tr->n_kv_heads; h++) {
            size_t s = (size_t)(l * tr->n_kv_heads + h) * per;
            if (kvq_trace_keys(tr, l, h, t->keys + s) || kvq_trace_values(tr, l, h, t->vals + s)) {
                snprintf(msg, sizeof msg, "%s", kvq_last_error());
                e = msg;
            }
        }
    for (int h = 0; !e && h < nh; h++) {
        if (kvq_trace_queries(tr, 0, h, q)) {
            snprintf(msg, sizeof msg, "%s", kvq_last_error());
            e = msg;
        } else {
            memcpy(t->q + (size_t)h * (size_t)d, q + (size_t)(tr->n_queries - 1) * (size_t)d, sizeof(float) * (size_t)d);
        }
    }
    free(q);
    kvq_trace_free(tr);
    if (e) bench_tiled_free(t);
    return e;
}
