// cmd_recommend.c — `recommend`: prints the table of engine/recommend.c
// (every KV format the chosen engine offers, replayed on the trace exactly
// as the engine stores it: the flag to set, bits held, memory per token and
// at --context, key rel MSE, output error, attention KL; rows within
// --budget-gb first, ranked, the Pareto front marked; kvstudio's own best at
// the same budget apart, labelled as not deployable) as text or JSON. The
// studio's Deploy view (views/deploy.c) shows the same table.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "calib/calib.h"
#include "cmds.h"
#include "recommend.h"
#include "tui.h"

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *row_json(const kvq_recommend_row *r)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "engine", r->engine, "format", r->format, "flags", r->flags,
                          "key_method", r->cfg.method, "value_method",
                          r->cfg.value_method[0] ? r->cfg.value_method : "turboquant_mse");
    if (r->rank) json_object_set_new(o, "rank", json_integer(r->rank));
    json_object_set_new(o, "label", json_string(r->label));
    for (int c = 0; c < KVQ_REC_N_COLS; c++) {
        const kvq_recommend_col *col = &kvq_recommend_cols[c];
        if (col->measured && !r->ok) continue;   // a failed row has no measured figures
        json_object_set_new(o, kvq_metrics[col->metric].json,
                            col->integer ? json_integer((json_int_t)r->v[c]) : num(r->v[c]));
    }
    if (!r->ok) {
        json_object_set_new(o, "error", json_string(r->error));
        return o;
    }
    json_object_set_new(o, "within_budget", json_boolean(r->in_budget));
    json_object_set_new(o, "pareto_front", json_boolean(r->front));
    return o;
}

static void print_row(kvs_session *s, const kvq_recommend_row *r, const char *rank, bool budget)
{
    char line[1024], f[32];
    int n = snprintf(line, sizeof line, "%4s  %-8s  %-13s  %-46s", rank, r->engine, r->format, r->flags);
    if (!r->ok) {
        kvs_printf(s, "%s  failed: %s", line, r->error);
        return;
    }
    for (int c = 0; c < KVQ_REC_N_COLS && n < (int)sizeof line; c++) {
        kvq_metric_id m = kvq_recommend_cols[c].metric;
        n += snprintf(line + n, sizeof line - (size_t)n, "  %*s", (int)strlen(kvq_metrics[m].name),
                      kvq_metric_fmt(m, r->v[c], f, sizeof f));
    }
    kvs_printf(s, "%s  %5s  %s", line, r->front ? "*" : "-", !budget ? "-" : r->in_budget ? "fits" : "over");
}

static int print_json(kvs_session *s, const kvq_trace *t, const kvq_recommend_table *tb)
{
    json_t *ja = json_array();
    for (int i = 0; i < tb->n; i++) json_array_append_new(ja, row_json(&tb->rows[i]));
    const kvq_recommend_opts *o = &tb->opts;
    json_t *root = json_pack("{s:s, s:s, s:i, s:i, s:i, s:I, s:o, s:i, s:s, s:o}", "trace", t->path, "engine",
                             o->engine, "n_layers", tb->n_layers, "n_kv_heads", tb->n_kv_heads, "head_dim",
                             tb->head_dim, "context", (json_int_t)o->context, "budget_gib",
                             o->budget_gib > 0 ? json_real(o->budget_gib) : json_null(), "seq_len", tb->replayed,
                             "rank_by", kvq_metrics[kvq_recommend_rank_metric(tb)].json, "rows", ja);
    json_t *jb = tb->have_best ? row_json(&tb->best) : json_null();
    if (tb->have_best) {
        json_object_set_new(jb, "deployable", json_false());
        json_object_set_new(jb, "budget_gib", json_real(tb->own_budget_gib));
    }
    json_object_set_new(root, "kvstudio_best", jb);
    char *txt = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
    json_decref(root);
    if (!txt) return kvs_errorf(s, "recommend: cannot serialize the table");
    kvs_puts(s, txt);
    free(txt);
    return 0;
}

static void print_text(kvs_session *s, const kvq_trace *t, const kvq_recommend_table *tb)
{
    const kvq_recommend_opts *o = &tb->opts;
    char bud[64] = "none", hdr[1024];
    if (o->budget_gib > 0) snprintf(bud, sizeof bud, "%g GiB", o->budget_gib);
    const char *rank_name = kvq_metrics[kvq_recommend_rank_metric(tb)].name;
    kvs_printf(s, "recommend on %s: %d layers x %d kv heads x head_dim %d, context %ld tokens, budget %s", t->path,
               tb->n_layers, tb->n_kv_heads, tb->head_dim, o->context, bud);
    kvs_printf(s, "%d tokens replayed (prefill %d, decode %d); ranked by %s, rows within the budget first",
               tb->replayed, tb->replayed / 2, tb->replayed - tb->replayed / 2, rank_name);
    int n = snprintf(hdr, sizeof hdr, "%4s  %-8s  %-13s  %-46s", "rank", "engine", "format", "flags");
    for (int c = 0; c < KVQ_REC_N_COLS && n < (int)sizeof hdr; c++)
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "  %s", kvq_metrics[kvq_recommend_cols[c].metric].name);
    kvs_printf(s, "%s  %5s  %s", hdr, "front", "budget");
    for (int i = 0; i < tb->n; i++) {
        char rk[16];
        snprintf(rk, sizeof rk, "%d", tb->rows[i].rank);
        print_row(s, &tb->rows[i], tb->rows[i].ok ? rk : "-", o->budget_gib > 0);
    }
    kvs_printf(s, "units: bits/coord, bytes/token, GiB at %ld tokens; front * = on the Pareto front over (%s, %s)",
               o->context, kvq_metrics[KVQ_M_FORMAT_BYTES_PER_TOKEN].name, rank_name);
    if (tb->have_best) {
        kvs_printf(s, "kvstudio's best within %s GiB (%s):",
                   kvq_metric_fmt(KVQ_M_KV_GIB_AT_CONTEXT, tb->own_budget_gib, bud, sizeof bud), tb->not_deployable);
        print_row(s, &tb->best, "-", o->budget_gib > 0);
    } else if (tb->own_budget_gib > 0) {
        kvs_printf(s, "kvstudio's best: no kvstudio configuration fits the budget");
    } else {
        kvs_printf(s, "kvstudio's best: not sought (no engine row ran and no --budget-gb)");
    }
}

int kvs_cmd_recommend(kvs_session *s, kvs_args *a)
{
    const char *tpath = kvs_opt_str(a, "trace", NULL), *artdir = kvs_opt_str(a, "artifacts", NULL);
    kvq_recommend_opts o;
    kvq_recommend_opts_default(&o);
    o.engine = kvs_opt_str(a, "engine", "all");
    o.context = kvs_opt_int(a, "context", 0);
    long seq_len = kvs_opt_int(a, "seq-len", 0);
    o.budget_gib = kvs_opt_double(a, "budget-gb", 0);
    o.seed = s->cfg.seed;
    bool json = kvs_opt_flag(a, "json") || s->json;
    if (kvs_args_check_unused(s, a, "recommend") || kvs_args_trace_from(s, a, tpath)) return -1;
    const kvq_trace *t = s->trace;
    if (seq_len > t->n_tokens)
        return kvs_errorf(s, "recommend: --seq-len %ld exceeds the trace's %d tokens", seq_len, t->n_tokens);
    o.seq_len = (int)seq_len;
    if (s->ui && !json)   // the studio: the Deploy view computes and shows it
        return kvs_studio_recommend(s, kvs_opt_given(a, "engine") ? o.engine : NULL,
                                    kvs_opt_given(a, "context") ? o.context : -1,
                                    kvs_opt_given(a, "budget-gb") ? o.budget_gib : -1,
                                    kvs_opt_given(a, "seq-len") ? seq_len : -1, artdir);
    kvq_artifacts *art = NULL;
    if (artdir && kvq_artifacts_load_for_trace(artdir, t, &art))
        return kvs_errorf(s, "recommend: %s", kvq_last_error());
    kvq_recommend_table *tb = calloc(1, sizeof *tb);
    int rc = -1;
    if (!tb) kvs_errorf(s, "recommend: out of memory");
    else if (kvq_recommend_run(t, art, &o, NULL, tb)) kvs_errorf(s, "%s", kvq_last_error());
    else if (!(json ? print_json(s, t, tb) : (print_text(s, t, tb), 0)))
        rc = tb->n_ok ? 0 : kvs_errorf(s, "recommend: no format of engine '%s' ran", o.engine);
    free(tb);
    kvq_artifacts_free(art);
    return rc;
}
