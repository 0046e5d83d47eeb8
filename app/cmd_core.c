// cmd_core.c — session, trace and config commands: load, info, help, set...
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cmds.h"
#include "label.h"
#include "pool.h"
#include "progress.h"
#include "stats.h"

int kvs_cmd_load(kvs_session *s, kvs_args *a)
{
    if (a->npos != 1) return kvs_errorf(s, "load: expected one PATH (usage: load PATH)");
    if (kvs_args_trace(s, a) || kvs_args_check_unused(s, a, "load")) return -1;
    const kvq_trace *t = s->trace;
    kvs_printf(s, "loaded %s: %d layers, %d heads, %d kv heads, %d tokens, head_dim %d", t->path,
               t->n_layers, t->n_heads, t->n_kv_heads, t->n_tokens, t->head_dim);
    return 0;
}

static const char *kind_name(kvq_trace_kind k)
{
    return k == KVQ_TRACE_KVTRACE ? "kvtrace" : k == KVQ_TRACE_NPY ? "npy" : "mlx_lm cache";
}

// One layer's statistics, every (kv head, stream) a task on the pool. Each
// task converts its own (n_tokens, head_dim) block from the mapping, so
// memory is one block per thread whatever the trace size, and the result
// does not depend on the thread count.
typedef struct {
    const kvq_trace *t;
    int layer, n_streams;     // n_streams: 2 with values, else 1
    kvq_head_stats *st;       // (n_kv_heads * n_streams)
    kvq_status *rc;           // per task
    char (*err)[1024];        // per task: kvq_last_error() is thread-local
} info_layer;

static void info_task(void *ctx, int task)
{
    info_layer *j = ctx;
    const kvq_trace *t = j->t;
    const int h = task / j->n_streams;
    const bool values = task % j->n_streams;
    float *buf = malloc(sizeof(float) * (size_t)t->n_tokens * (size_t)t->head_dim);
    kvq_status rc = buf ? KVQ_OK : kvq_error(KVQ_ERR_NOMEM, "out of memory");
    if (!rc) rc = values ? kvq_trace_values(t, j->layer, h, buf) : kvq_trace_keys(t, j->layer, h, buf);
    bool read = !rc;
    if (!rc) rc = kvq_head_stats_compute(buf, t->n_tokens, t->head_dim, &j->st[task]);
    free(buf);
    j->rc[task] = rc;
    if (rc && read)   // the statistics failed (e.g. a non-finite figure): say where
        snprintf(j->err[task], sizeof j->err[task], "%.400s: layer %d kv head %d %s: %.500s", t->path, j->layer, h,
                 values ? "values" : "keys", kvq_last_error());
    else if (rc)
        snprintf(j->err[task], sizeof j->err[task], "%s", kvq_last_error());
}

static json_t *stats_json(const kvq_head_stats *st)
{
    json_t *top = json_array();
    for (int k = 0; k < KVQ_STATS_TOP && st->top_chan[k] >= 0; k++)
        json_array_append_new(top, json_pack("{s:i, s:f, s:f}", "channel", st->top_chan[k], "max_abs",
                                             (double)st->chan_max[st->top_chan[k]], "ratio_to_median",
                                             st->top_ratio[k]));
    return json_pack("{s:f, s:f, s:f, s:f, s:o, s:f}", "mean_norm", st->mean_norm, "std_norm",
                     st->std_norm, "max_norm", st->max_norm, "channel_max_median", st->chan_median,
                     "outlier_channels", top, "d_eff", st->d_eff);
}

static void stats_line(kvs_session *s, const char *what, int l, int h, const kvq_head_stats *st)
{
    char top[160] = "";
    size_t len = 0;
    for (int k = 0; k < 3 && st->top_chan[k] >= 0 && len < sizeof top; k++)
        len += (size_t)snprintf(top + len, sizeof top - len, "%s%d(%.1fx)", k ? " " : "", st->top_chan[k],
                                st->top_ratio[k]);
    kvs_printf(s, "%5d %4d  %-6s %9.3f %8.3f %9.3f %7.1f  %s", l, h, what, st->mean_norm, st->std_norm,
               st->max_norm, st->d_eff, top);
}

int kvs_cmd_info(kvs_session *s, kvs_args *a)
{
    bool json = kvs_opt_flag(a, "json") || s->json;
    if (kvs_args_check_unused(s, a, "info") || kvs_args_trace(s, a)) return -1;
    const kvq_trace *t = s->trace;
    json_t *root = NULL, *layers = NULL;
    if (json) {
        root = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:s, s:s}", "path", t->path,
                         "format", kind_name(t->kind), "layers", t->n_layers, "heads", t->n_heads,
                         "kv_heads", t->n_kv_heads, "tokens", t->n_tokens, "head_dim", t->head_dim,
                         "queries", t->n_queries, "dtype", kvq_dtype_name(t->dtype), "model", t->model,
                         "source", t->source);
        if (isfinite(t->bits_per_byte)) json_object_set_new(root, "bits_per_byte", json_real(t->bits_per_byte));
        layers = json_array();
        json_object_set_new(root, "per_head", layers);
    } else {
        kvs_printf(s, "trace     %s (%s)", t->path, kind_name(t->kind));
        kvs_printf(s, "shape     %d layers, %d heads, %d kv heads, %d tokens, head_dim %d, %s", t->n_layers,
                   t->n_heads, t->n_kv_heads, t->n_tokens, t->head_dim, kvq_dtype_name(t->dtype));
        kvs_printf(s, "queries   %d%s", t->n_queries, t->n_queries ? "" : " (no attention metrics)");
        if (t->model[0]) kvs_printf(s, "model     %s", t->model);
        if (t->source[0]) kvs_printf(s, "source    %s", t->source);
        if (isfinite(t->bits_per_byte)) kvs_printf(s, "loss      %.4f bits/byte", t->bits_per_byte);
        kvs_printf(s, "%s", "");
        kvs_printf(s, "layer head  stream mean|x|   std|x|    max|x|   d_eff  top channels (max|x| / median)");
    }
    const int ns = t->has_values ? 2 : 1, nt = t->n_kv_heads * ns;
    info_layer job = {.t = t, .n_streams = ns, .st = calloc((size_t)nt, sizeof *job.st),
                      .rc = calloc((size_t)nt, sizeof *job.rc), .err = calloc((size_t)nt, sizeof *job.err)};
    int rc = job.st && job.rc && job.err ? 0 : kvs_errorf(s, "info: out of memory");
    kvs_tty_progress tp;
    kvq_progress *prog = kvs_tty_progress_begin(&tp, s, "info");
    // Parallelism is ours (heads on the pool): OpenBLAS's own workers spin in
    // sched_yield per dsyrk and took 5x the wall time of `info` on a busy machine.
    const int blas_threads = kvq_blas_threads_set(1);
    for (int l = 0; l < t->n_layers && !rc; l++) {
        job.layer = l;
        kvq_parallel_for(nt, info_task, &job);
        for (int i = 0; i < nt && !rc; i++)
            if (job.rc[i]) rc = kvs_errorf(s, "info: %s", job.err[i]);
        for (int h = 0; h < t->n_kv_heads && !rc; h++) {
            const kvq_head_stats *ks = &job.st[h * ns], *vs = &job.st[h * ns + ns - 1];
            if (json) {
                json_t *o = json_pack("{s:i, s:i, s:o}", "layer", l, "kv_head", h, "keys", stats_json(ks));
                if (t->has_values) json_object_set_new(o, "values", stats_json(vs));
                json_array_append_new(layers, o);
            } else {
                stats_line(s, "keys", l, h, ks);
                if (t->has_values) stats_line(s, "values", l, h, vs);
            }
        }
        for (int i = 0; i < nt; i++) kvq_head_stats_free(&job.st[i]);
        char stage[48];
        snprintf(stage, sizeof stage, "layer %d/%d", l + 1, t->n_layers);
        kvq_progress_report(prog, (double)(l + 1) / t->n_layers, stage);
    }
    kvs_tty_progress_end(&tp);
    kvq_blas_threads_set(blas_threads);
    free(job.st), free(job.rc), free(job.err);
    if (json) {
        if (!rc) {
            char *txt = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
            if (txt) kvs_puts(s, txt);
            free(txt);
        }
        json_decref(root);
    }
    return rc;
}

int kvs_cmd_help(kvs_session *s, kvs_args *a)
{
    if (a->npos > 0) {
        const kvs_command *c = kvs_command_find(a->pos[0]);
        if (!c) return kvs_errorf(s, "help: unknown command '%s'", a->pos[0]);
        kvs_command_print_help(s, c);
        return 0;
    }
    kvs_printf(s, "commands (each also works as `kvstudio COMMAND ...` and in scripts, except where marked):");
    for (int i = 0; i < kvs_n_commands; i++) {
        const kvs_command *c = &kvs_commands[i];
        char u[1024], h[512];
        kvs_command_usage(c, u, sizeof u);
        snprintf(h, sizeof h, "%s%s", c->help, c->studio_only ? " (studio only)" : "");
        if (strlen(u) <= 44) kvs_printf(s, "  %-44s %s", u, h);
        else kvs_printf(s, "  %s\n  %-44s %s", u, "", h);   // long usage: help below
    }
    return 0;
}

int kvs_cmd_quit(kvs_session *s, kvs_args *a)
{
    (void)a;
    s->quit = true;
    return 0;
}

int kvs_cmd_version(kvs_session *s, kvs_args *a)
{
    (void)a;
    kvs_printf(s, "kvstudio %s", KVQ_VERSION);
    return 0;
}

int kvs_cmd_methods(kvs_session *s, kvs_args *a)
{
    (void)a;
    for (int i = 0; i < kvq_n_methods; i++) {
        const kvq_method *m = &kvq_methods[i];
        kvs_printf(s, "  %-16s bits %d..%-2d %-11s %s", m->name, m->min_bits, m->max_bits,
                   m->needs_calibration ? "calibrated" : "", m->description);
    }
    return 0;
}

// Set fields on a copy; commit only if the whole config still checks.
static int set_checked(kvs_session *s, const char *key, const char *value)
{
    kvq_config c = s->cfg;
    if (kvq_config_set(&c, key, value)) return kvs_errorf(s, "%s", kvq_last_error());
    const char *why = kvq_config_check(&c);
    if (why) return kvs_errorf(s, "%s", why);
    s->cfg = c;
    return 0;
}

int kvs_cmd_set(kvs_session *s, kvs_args *a)
{
    if (a->npos) return kvs_errorf(s, "set: expected KEY=VALUE, got '%s'", a->pos[0]);
    if (!a->nopt) return kvs_errorf(s, "set: expected KEY=VALUE ...");
    kvq_config c = s->cfg;
    bool method = false, bits = false, changed = false;
    for (int i = 0; i < a->nopt; i++) {
        if (kvq_config_set(&c, a->key[i], a->val[i])) return kvs_errorf(s, "set: %s", kvq_last_error());
        method |= !strcmp(a->key[i], "method");
        bits |= !strcmp(a->key[i], "bits");
    }
    const char *why = method ? kvq_config_fit_bits(&c, bits, &changed) : NULL;   // as `method NAME` does
    if (!why) why = kvq_config_check(&c);
    if (why) return kvs_errorf(s, "set: %s", why);
    if (changed) kvs_printf(s, "set: bits %d -> %d (%s takes %d..%d bits)", s->cfg.bits, c.bits, c.method,
                            kvq_method_find(c.method)->min_bits, kvq_method_find(c.method)->max_bits);
    s->cfg = c;
    return 0;
}

// A config field as its JSON type: numbers, bools, a list of per-layer bits.
static json_t *field_json(const kvq_config *c, const char *name)
{
    char v[1024];
    kvq_config_field_info fi;
    if (kvq_config_get(c, name, v, sizeof v) || kvq_config_field_describe(name, &fi)) return json_null();
    switch (fi.kind) {
    case KVQ_FIELD_INT: return json_integer(strtol(v, NULL, 10));
    case KVQ_FIELD_U64: return json_integer((json_int_t)strtoull(v, NULL, 10));
    case KVQ_FIELD_BOOL: return json_boolean(!strcmp(v, "true"));
    case KVQ_FIELD_LIST: {
        json_t *l = json_array();
        for (int i = 0; i < c->n_bit_allocation; i++) json_array_append_new(l, json_integer(c->bit_allocation[i]));
        return l;
    }
    case KVQ_FIELD_STR: break;
    }
    return json_string(v);
}

int kvs_cmd_show(kvs_session *s, kvs_args *a)
{
    bool json = kvs_opt_flag(a, "json") || s->json;
    if (kvs_args_check_unused(s, a, "show")) return -1;
    const char *const *names = kvq_config_field_names();
    json_t *o = json ? json_object() : NULL;
    for (int i = 0; names[i]; i++) {
        char v[1024];
        kvq_config_get(&s->cfg, names[i], v, sizeof v);
        if (json) json_object_set_new(o, names[i], field_json(&s->cfg, names[i]));
        else kvs_printf(s, "  %-18s %s", names[i], v);
    }
    if (json) {
        char *txt = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (txt) kvs_puts(s, txt);
        free(txt);
        json_decref(o);
    }
    return 0;
}

static int one_value(kvs_session *s, kvs_args *a, const char *cmd, const char *field)
{
    if (a->npos != 1 || a->nopt) return kvs_errorf(s, "%s: expected one value (usage: %s VALUE)", cmd, cmd);
    return set_checked(s, field, a->pos[0]);
}

int kvs_cmd_method(kvs_session *s, kvs_args *a)
{
    if (a->npos == 1 && !a->nopt) {
        const kvq_method *m;
        if (kvq_method_lookup(a->pos[0], &m)) return kvs_errorf(s, "method: %s", kvq_last_error());
        kvq_config c = s->cfg;
        strcpy(c.method, m->name);
        bool changed;
        const char *why = kvq_config_fit_bits(&c, false, &changed);   // keep bits valid for the new method
        if (!why) why = kvq_config_check(&c);
        if (why) return kvs_errorf(s, "method: %s", why);
        if (changed && m->min_bits == m->max_bits)   // never silently: the width is part of what runs next
            kvs_printf(s, "method %s: bits %d -> %d (%s has a fixed width of %d bits)", m->name, s->cfg.bits, c.bits,
                       m->name, m->min_bits);
        else if (changed)
            kvs_printf(s, "method %s: bits %d -> %d (%s takes %d..%d bits)", m->name, s->cfg.bits, c.bits, m->name,
                       m->min_bits, m->max_bits);
        s->cfg = c;
        return 0;
    }
    return one_value(s, a, "method", "method");
}

int kvs_cmd_bits(kvs_session *s, kvs_args *a) { return one_value(s, a, "bits", "bits"); }
int kvs_cmd_value_bits(kvs_session *s, kvs_args *a) { return one_value(s, a, "value-bits", "value_bits"); }
