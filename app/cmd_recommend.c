// cmd_recommend.c — `recommend`: every KV format the chosen engine offers
// (engine/deploy.c), replayed through the caches on the trace exactly as the
// engine stores it, in one table: the flag to set, bits held, memory per
// token and at --context for the trace's model shape, key rel MSE, output
// error, attention KL. Rows within --budget-gb come first, ranked by output
// error (key rel MSE when the trace has no queries); the Pareto front over
// (memory, error) is marked; kvstudio's own best configuration at the same
// budget is shown apart, labelled as not deployable in that engine.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "calib/calib.h"
#include "cmds.h"
#include "deploy.h"
#include "label.h"
#include "replay.h"

typedef struct rec_row {
    const char *engine, *format, *flags;
    kvq_config cfg;
    kvq_deploy_memory mem;
    double gib, key_rel_mse, output_error, attn_kl;
    bool ok, in_budget, front;
    char label[160];
    char error[256];
} rec_row;

// kvstudio's own candidates (no calibration): keys x values of turboquant_mse.
static const int own_bits[] = {2, 3, 4, 8};
#define N_OWN_BITS ((int)(sizeof own_bits / sizeof own_bits[0]))
#define REC_MAX 64

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

// Replay r->cfg through the caches; fills the errors or r->error.
static void measure(const kvq_trace *t, const kvq_artifacts *art, int seq_len, rec_row *r)
{
    kvq_replay_opts o;
    kvq_replay_opts_default(&o);
    o.seq_len = seq_len;
    o.obs.seed = r->cfg.seed;
    kvq_replay *rp = NULL;
    const char *why = kvq_config_check(&r->cfg);
    kvq_status st = why ? kvq_error(KVQ_ERR_ARG, "%s", why) : kvq_replay_new(t, &r->cfg, art, &o, &rp);
    if (!st) st = kvq_replay_run(rp, NULL);
    if (st) {
        snprintf(r->error, sizeof r->error, "%s", kvq_last_error());
        kvq_replay_free(rp);
        return;
    }
    kvq_replay_snapshot sn;
    kvq_replay_snapshot_get(rp, &sn);
    kvq_replay_free(rp);
    r->key_rel_mse = sn.report.distortion.total_tokens_measured ? sn.report.distortion.mean_relative_mse : NAN;
    r->output_error = sn.report.attention.num_queries ? sn.report.attention.mean_output_rel_error : NAN;
    r->attn_kl = sn.report.attention.num_queries ? sn.report.attention.mean_kl_divergence : NAN;
    r->ok = true;
}

static double rank_err(const rec_row *r, bool by_output) { return by_output ? r->output_error : r->key_rel_mse; }

static bool g_by_output;   // qsort has no user pointer; set just before the sort
static int row_cmp(const void *pa, const void *pb)
{
    const rec_row *a = pa, *b = pb;
    if (a->ok != b->ok) return a->ok ? -1 : 1;
    if (a->in_budget != b->in_budget) return a->in_budget ? -1 : 1;
    double ea = rank_err(a, g_by_output), eb = rank_err(b, g_by_output);
    if (isnan(ea) != isnan(eb)) return isnan(ea) ? 1 : -1;
    if (ea != eb) return ea < eb ? -1 : 1;
    return a->mem.bytes_per_token < b->mem.bytes_per_token ? -1 : a->mem.bytes_per_token > b->mem.bytes_per_token;
}

static json_t *row_json(const rec_row *r, int rank)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "engine", r->engine, "format", r->format, "flags", r->flags,
                          "key_method", r->cfg.method, "value_method",
                          r->cfg.value_method[0] ? r->cfg.value_method : "turboquant_mse");
    if (rank) json_object_set_new(o, "rank", json_integer(rank));
    json_object_set_new(o, "label", json_string(r->label));
    json_object_set_new(o, kvq_metrics[KVQ_M_KEY_BITS].json, num(r->mem.key_bpc));
    json_object_set_new(o, kvq_metrics[KVQ_M_VALUE_BITS].json, num(r->mem.value_bpc));
    json_object_set_new(o, kvq_metrics[KVQ_M_FORMAT_BYTES_PER_TOKEN].json, json_integer((json_int_t)r->mem.bytes_per_token));
    json_object_set_new(o, kvq_metrics[KVQ_M_KV_GIB_AT_CONTEXT].json, num(r->gib));
    if (!r->ok) {
        json_object_set_new(o, "error", json_string(r->error));
        return o;
    }
    json_object_set_new(o, kvq_metrics[KVQ_M_KEY_REL_MSE].json, num(r->key_rel_mse));
    json_object_set_new(o, kvq_metrics[KVQ_M_OUTPUT_ERROR].json, num(r->output_error));
    json_object_set_new(o, kvq_metrics[KVQ_M_ATTN_KL].json, num(r->attn_kl));
    json_object_set_new(o, "within_budget", json_boolean(r->in_budget));
    json_object_set_new(o, "pareto_front", json_boolean(r->front));
    return o;
}

static void print_row(kvs_session *s, const rec_row *r, const char *rank, bool budget)
{
    char f[7][32];
    if (!r->ok) {
        kvs_printf(s, "%4s  %-8s  %-13s  %-30s  failed: %s", rank, r->engine, r->format, r->flags, r->error);
        return;
    }
    kvs_printf(s, "%4s  %-8s  %-13s  %-30s  %8s  %10s  %18s  %20s  %11s  %12s  %12s  %5s  %s", rank, r->engine,
               r->format, r->flags, kvq_metric_fmt(KVQ_M_KEY_BITS, r->mem.key_bpc, f[0], 32),
               kvq_metric_fmt(KVQ_M_VALUE_BITS, r->mem.value_bpc, f[1], 32),
               kvq_metric_fmt(KVQ_M_FORMAT_BYTES_PER_TOKEN, (double)r->mem.bytes_per_token, f[2], 32),
               kvq_metric_fmt(KVQ_M_KV_GIB_AT_CONTEXT, r->gib, f[3], 32),
               kvq_metric_fmt(KVQ_M_KEY_REL_MSE, r->key_rel_mse, f[4], 32),
               kvq_metric_fmt(KVQ_M_OUTPUT_ERROR, r->output_error, f[5], 32),
               kvq_metric_fmt(KVQ_M_ATTN_KL, r->attn_kl, f[6], 32), r->front ? "*" : "-",
               !budget ? "-" : r->in_budget ? "fits" : "over");
}

// Fill memory, label and budget fit of a row whose cfg is set; false (and
// r->error) when the format cannot hold this shape (mlx groups of 128 on
// head_dim 64).
static bool row_prepare(const kvq_trace *t, const kvq_artifacts *art, long context, double budget, rec_row *r)
{
    char id[16];
    kvq_artifacts_id(art, id, sizeof id);
    kvq_config_label(&r->cfg, id, r->label, sizeof r->label);
    r->key_rel_mse = r->output_error = r->attn_kl = NAN;
    if (kvq_deploy_memory_of(&r->cfg, art, t->n_layers, t->n_kv_heads, t->head_dim, &r->mem)) {
        snprintf(r->error, sizeof r->error, "%s", kvq_last_error());
        return false;
    }
    r->gib = kvq_deploy_gib_at(&r->mem, context);
    r->in_budget = budget <= 0 || r->gib <= budget;
    return true;
}

int kvs_cmd_recommend(kvs_session *s, kvs_args *a)
{
    const char *tpath = kvs_opt_str(a, "trace", NULL), *engine = kvs_opt_str(a, "engine", "all");
    const char *artdir = kvs_opt_str(a, "artifacts", NULL);
    long context = kvs_opt_int(a, "context", 0), seq_len = kvs_opt_int(a, "seq-len", 0);
    double budget = kvs_opt_double(a, "budget-gb", 0);
    bool json = kvs_opt_flag(a, "json") || s->json;
    if (kvs_args_check_unused(s, a, "recommend") || kvs_args_trace_from(s, a, tpath)) return -1;
    const kvq_trace *t = s->trace;
    if (seq_len > t->n_tokens)
        return kvs_errorf(s, "recommend: --seq-len %ld exceeds the trace's %d tokens", seq_len, t->n_tokens);
    if (!context) context = t->n_tokens;
    kvq_artifacts *art = NULL;
    if (artdir && kvq_artifacts_load_for_trace(artdir, t, &art))
        return kvs_errorf(s, "recommend: %s", kvq_last_error());
    bool all = !strcmp(engine, "all");
    uint64_t seed = s->cfg.seed;
    rec_row *rows = calloc(REC_MAX, sizeof *rows);
    int n = 0, rc = -1;
    if (!rows) {
        kvs_errorf(s, "recommend: out of memory");
        goto done;
    }
    for (int i = 0; i < kvq_n_deploy_formats && n < REC_MAX; i++) {
        const kvq_deploy_format *f = &kvq_deploy_formats[i];
        if (!all && strcmp(f->engine, engine)) continue;
        rec_row *r = &rows[n++];
        r->engine = f->engine, r->format = f->name, r->flags = f->flags;
        kvq_deploy_config(f, seed, &r->cfg);
        if (row_prepare(t, NULL, context, budget, r)) measure(t, NULL, (int)seq_len, r);
    }
    g_by_output = t->n_queries > 0;
    double mem[REC_MAX], err[REC_MAX];
    bool front[REC_MAX];
    for (int i = 0; i < n; i++) {
        mem[i] = rows[i].ok ? (double)rows[i].mem.bytes_per_token : NAN;
        err[i] = rows[i].ok ? rank_err(&rows[i], g_by_output) : NAN;
    }
    kvq_deploy_pareto(mem, err, n, front);
    for (int i = 0; i < n; i++) rows[i].front = front[i];
    qsort(rows, (size_t)n, sizeof *rows, row_cmp);

    // kvstudio's best at the same budget: --budget-gb, else the memory of the
    // top-ranked engine row. Calibrated candidates come from --artifacts.
    double own_budget = budget > 0 ? budget : n && rows[0].ok ? rows[0].gib : 0;
    rec_row best = {0}, cand;
    bool have_best = false;
    const char *art_method = art ? kvq_artifacts_meta(art, "method") : NULL;
    const kvq_method *am = art_method ? kvq_method_find(art_method) : NULL;
    for (int m = 0; m < (am ? 2 : 1); m++)
        for (int kb = 0; kb < N_OWN_BITS; kb++)
            for (int vb = 0; vb < N_OWN_BITS; vb++) {
                memset(&cand, 0, sizeof cand);
                kvq_config_default(&cand.cfg);
                cand.cfg.seed = seed;
                if (m) snprintf(cand.cfg.method, sizeof cand.cfg.method, "%s", am->name);
                cand.cfg.bits = own_bits[kb];
                cand.cfg.value_bits = own_bits[vb];
                if (kvq_config_fit_bits(&cand.cfg, false, NULL) || kvq_config_check(&cand.cfg)) continue;
                cand.engine = "kvstudio", cand.format = "", cand.flags = "";
                if (!row_prepare(t, art, context, own_budget, &cand) || !cand.in_budget || own_budget <= 0) continue;
                measure(t, art, (int)seq_len, &cand);
                if (!cand.ok) continue;
                double e = rank_err(&cand, g_by_output), eb = rank_err(&best, g_by_output);
                if (!have_best || (isfinite(e) && (!isfinite(eb) || e < eb))) best = cand, have_best = true;
            }
    char not_dep[64];
    snprintf(not_dep, sizeof not_dep, "not deployable in %s", all ? "llamacpp, vllm, mlx or transformers" : engine);
    if (have_best) best.format = best.label, best.flags = not_dep;

    int n_ok = 0;
    for (int i = 0; i < n; i++) n_ok += rows[i].ok;
    const char *rank_name = kvq_metrics[g_by_output ? KVQ_M_OUTPUT_ERROR : KVQ_M_KEY_REL_MSE].name;
    int replayed = seq_len ? (int)seq_len : t->n_tokens;
    if (json) {
        json_t *ja = json_array();
        int rank = 0;
        for (int i = 0; i < n; i++) json_array_append_new(ja, row_json(&rows[i], rows[i].ok ? ++rank : 0));
        json_t *root = json_pack("{s:s, s:s, s:i, s:i, s:i, s:I, s:o, s:i, s:s, s:o}", "trace", t->path, "engine",
                                 engine, "n_layers", t->n_layers, "n_kv_heads", t->n_kv_heads, "head_dim",
                                 t->head_dim, "context", (json_int_t)context, "budget_gib",
                                 budget > 0 ? json_real(budget) : json_null(), "seq_len", replayed, "rank_by",
                                 kvq_metrics[g_by_output ? KVQ_M_OUTPUT_ERROR : KVQ_M_KEY_REL_MSE].json, "rows", ja);
        json_t *jb = have_best ? row_json(&best, 0) : json_null();
        if (have_best) {
            json_object_set_new(jb, "deployable", json_false());
            json_object_set_new(jb, "budget_gib", json_real(own_budget));
        }
        json_object_set_new(root, "kvstudio_best", jb);
        char *txt = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
        json_decref(root);
        if (!txt) {
            kvs_errorf(s, "recommend: cannot serialize the table");
            goto done;
        }
        kvs_puts(s, txt);
        free(txt);
    } else {
        char bud[64] = "none";
        if (budget > 0) snprintf(bud, sizeof bud, "%g GiB", budget);
        kvs_printf(s, "recommend on %s: %d layers x %d kv heads x head_dim %d, context %ld tokens, budget %s",
                   t->path, t->n_layers, t->n_kv_heads, t->head_dim, context, bud);
        kvs_printf(s, "%d tokens replayed (prefill %d, decode %d); ranked by %s, rows within the budget first",
                   replayed, replayed / 2, replayed - replayed / 2, rank_name);
        kvs_printf(s, "%4s  %-8s  %-13s  %-30s  %8s  %10s  %18s  %20s  %11s  %12s  %12s  %5s  %s", "rank", "engine",
                   "format", "flags", kvq_metrics[KVQ_M_KEY_BITS].name, kvq_metrics[KVQ_M_VALUE_BITS].name,
                   kvq_metrics[KVQ_M_FORMAT_BYTES_PER_TOKEN].name, kvq_metrics[KVQ_M_KV_GIB_AT_CONTEXT].name,
                   kvq_metrics[KVQ_M_KEY_REL_MSE].name, kvq_metrics[KVQ_M_OUTPUT_ERROR].name,
                   kvq_metrics[KVQ_M_ATTN_KL].name, "front", "budget");
        int rank = 0;
        for (int i = 0; i < n; i++) {
            char rk[16];
            snprintf(rk, sizeof rk, "%d", rows[i].ok ? ++rank : 0);
            print_row(s, &rows[i], rows[i].ok ? rk : "-", budget > 0);
        }
        kvs_printf(s, "units: bits/coord, bytes/token, GiB at %ld tokens; front * = on the Pareto front over (%s, %s)",
                   context, kvq_metrics[KVQ_M_FORMAT_BYTES_PER_TOKEN].name, rank_name);
        if (have_best) {
            kvs_printf(s, "kvstudio's best within %s GiB (%s):", kvq_metric_fmt(KVQ_M_KV_GIB_AT_CONTEXT, own_budget,
                       bud, sizeof bud), not_dep);
            print_row(s, &best, "-", budget > 0);
        } else if (own_budget > 0) {
            kvs_printf(s, "kvstudio's best: no kvstudio configuration fits the budget");
        } else {
            kvs_printf(s, "kvstudio's best: not sought (no engine row ran and no --budget-gb)");
        }
    }
    rc = n_ok ? 0 : kvs_errorf(s, "recommend: no format of engine '%s' ran", engine);
done:
    free(rows);
    kvq_artifacts_free(art);
    return rc;
}
