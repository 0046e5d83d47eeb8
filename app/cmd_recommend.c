// cmd_recommend.c — `recommend`: every KV format the chosen engine offers
// (engine/deploy.c), replayed through the caches on the trace exactly as the
// engine stores it, in one table: the flag to set, bits held, memory per
// token and at --context for the trace's model shape, key rel MSE, output
// error, attention KL. Rows within --budget-gb come first, ranked by output
// error (key rel MSE when the trace has no queries); the Pareto front over
// (memory, error) is marked; kvstudio's own best configuration at the same
// budget is shown apart, labelled as not deployable in that engine.
//
// --model DIR also runs that checkpoint over a short text (--text, first
// --text-bytes bytes) with each row's cache, K and V exactly as the engine
// stores them, in lockstep with the fp16 cache (kvq_model_ppl, as `ppl`
// does): bits per byte and the next-token KL against fp16 join each row.
// The model must have the trace's shape (the memory figures are the trace's).
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "calib/calib.h"
#include "cmds.h"
#include "deploy.h"
#include "file.h"
#include "label.h"
#include "model.h"
#include "replay.h"
#include "tok/tok.h"

typedef struct rec_row {
    const char *engine, *format, *flags;
    kvq_config cfg;
    kvq_deploy_memory mem;
    double gib, key_rel_mse, output_error, attn_kl;
    double bits_per_byte, next_token_kl;   // --model: NaN until run
    bool ok, in_budget, front, model_ok;
    char label[160];
    char error[256];
    char model_error[256];
} rec_row;

// --model: the text every row's cache runs through.
#define REC_TEXT "sample_data/texts/textwrap-1k.py"
#define REC_TEXT_BYTES 128   // one prefill chunk: all engines' rows in about 20 s of CPU on the sample model
#define REC_CHUNK 128   // prefill chunk, as `ppl`
typedef struct rec_model {
    kvq_model *m;
    kvq_tok *tk;
    int32_t *tok;
    int n;
    size_t bytes, covered;   // text bytes run; bytes the n - 1 scored predictions cover
    double ref_bits_per_byte;
    const char *dir, *text;
} rec_model;

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

// Run the model with r->cfg's cache (and the fp16 one in lockstep).
static void measure_model(rec_model *rm, rec_row *r)
{
    r->bits_per_byte = r->next_token_kl = NAN;
    if (!rm->m) return;
    if (!r->ok) {
        snprintf(r->model_error, sizeof r->model_error, "not run: the trace replay failed");
        return;
    }
    kvq_ppl_result res;
    if (kvq_model_ppl(rm->m, &r->cfg, NULL, rm->tok, rm->n, REC_CHUNK, NULL, &res)) {
        snprintf(r->model_error, sizeof r->model_error, "%s", kvq_last_error());
        return;
    }
    double scale = (double)(rm->n - 1) / (double)rm->covered;   // bits per token -> per byte
    r->bits_per_byte = res.bits_per_token * scale;
    r->next_token_kl = res.kl_bits;
    // the fp16 reference run's figure (an fp16 row is run alone: its own)
    if (!kvq_model_cfg_is_fp16(&r->cfg) || isnan(rm->ref_bits_per_byte))
        rm->ref_bits_per_byte = res.ref_bits_per_token * scale;
    r->model_ok = true;
}

// --model DIR: load it, check its shape against the trace, tokenize the
// first `bytes` bytes of the text (cut back to a UTF-8 boundary).
static int model_open(kvs_session *s, const kvq_trace *t, const char *dir, const char *text, long bytes,
                      rec_model *rm)
{
    rm->dir = dir, rm->text = text, rm->ref_bits_per_byte = NAN;
    if (kvq_model_load(dir, &rm->m)) return kvs_errorf(s, "recommend: %s", kvq_last_error());
    const kvq_model_config *mc = &rm->m->cfg;
    if (mc->n_layers != t->n_layers || mc->n_kv_heads != t->n_kv_heads || mc->head_dim != t->head_dim)
        return kvs_errorf(s, "recommend: --model %s has %d layers x %d kv heads x head_dim %d, the trace %s %d x %d x "
                          "%d (expected a trace of this model)", dir, mc->n_layers, mc->n_kv_heads, mc->head_dim,
                          t->path, t->n_layers, t->n_kv_heads, t->head_dim);
    char *buf;
    size_t len;
    if (kvq_file_read(text, KVQ_TEXT_MAX_BYTES, &buf, &len))
        return kvs_errorf(s, "recommend: --text: %s", kvq_last_error());
    if (bytes > 0 && len > (size_t)bytes) {
        len = (size_t)bytes;
        while (len > 0 && ((unsigned char)buf[len] & 0xc0) == 0x80) len--;   // not inside a UTF-8 character
    }
    rm->bytes = len;
    int rc = kvs_model_text_tokens(s, "recommend", rm->m, text, buf, len, &rm->tok, &rm->n, &rm->tk);
    free(buf);
    if (rc) return -1;
    rm->covered = kvs_model_scored_bytes(rm->tk, rm->tok, rm->n, len);
    if (rm->n < 2 || !rm->covered)
        return kvs_errorf(s, "recommend: --text %s: %zu bytes give %d tokens (expected at least 2 and a scored byte)",
                          text, len, rm->n);
    return 0;
}

static void model_close(rec_model *rm)
{
    free(rm->tok);
    kvq_tok_free(rm->tk);
    kvq_model_free(rm->m);
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

static json_t *row_json(const rec_row *r, int rank, bool with_model)
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
    if (with_model) {
        json_object_set_new(o, kvq_metrics[KVQ_M_BITS_PER_BYTE].json, num(r->bits_per_byte));
        json_object_set_new(o, kvq_metrics[KVQ_M_NEXT_TOKEN_KL].json, num(r->next_token_kl));
        if (!r->model_ok) json_object_set_new(o, "model_error", json_string(r->model_error));
    }
    return o;
}

static void print_row(kvs_session *s, const rec_row *r, const char *rank, bool budget, bool with_model)
{
    char f[9][32], tail[96] = "", bud[8];
    if (!r->ok) {
        kvs_printf(s, "%4s  %-8s  %-13s  %-30s  failed: %s", rank, r->engine, r->format, r->flags, r->error);
        return;
    }
    snprintf(bud, sizeof bud, with_model ? "%-6s" : "%s", !budget ? "-" : r->in_budget ? "fits" : "over");
    if (with_model && r->model_ok)
        snprintf(tail, sizeof tail, "  %9s  %13s", kvq_metric_fmt(KVQ_M_BITS_PER_BYTE, r->bits_per_byte, f[7], 32),
                 kvq_metric_fmt(KVQ_M_NEXT_TOKEN_KL, r->next_token_kl, f[8], 32));
    else if (with_model)
        snprintf(tail, sizeof tail, "  model failed: %.70s", r->model_error);
    kvs_printf(s, "%4s  %-8s  %-13s  %-30s  %8s  %10s  %18s  %20s  %11s  %12s  %12s  %5s  %s%s", rank, r->engine,
               r->format, r->flags, kvq_metric_fmt(KVQ_M_KEY_BITS, r->mem.key_bpc, f[0], 32),
               kvq_metric_fmt(KVQ_M_VALUE_BITS, r->mem.value_bpc, f[1], 32),
               kvq_metric_fmt(KVQ_M_FORMAT_BYTES_PER_TOKEN, (double)r->mem.bytes_per_token, f[2], 32),
               kvq_metric_fmt(KVQ_M_KV_GIB_AT_CONTEXT, r->gib, f[3], 32),
               kvq_metric_fmt(KVQ_M_KEY_REL_MSE, r->key_rel_mse, f[4], 32),
               kvq_metric_fmt(KVQ_M_OUTPUT_ERROR, r->output_error, f[5], 32),
               kvq_metric_fmt(KVQ_M_ATTN_KL, r->attn_kl, f[6], 32), r->front ? "*" : "-",
               bud, tail);
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
    const char *mdir = kvs_opt_str(a, "model", NULL), *text = kvs_opt_str(a, "text", REC_TEXT);
    long text_bytes = kvs_opt_int(a, "text-bytes", REC_TEXT_BYTES);
    bool json = kvs_opt_flag(a, "json") || s->json;
    if (kvs_args_check_unused(s, a, "recommend") || kvs_args_trace_from(s, a, tpath)) return -1;
    if (!mdir && (kvs_opt_given(a, "text") || kvs_opt_given(a, "text-bytes")))
        return kvs_errorf(s, "recommend: --text and --text-bytes go with --model DIR");
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
    rec_model rm = {0};
    int n = 0, rc = -1;
    if (!rows) {
        kvs_errorf(s, "recommend: out of memory");
        goto done;
    }
    if (mdir && model_open(s, t, mdir, text, text_bytes, &rm)) goto done;
    bool with_model = rm.m != NULL;
    for (int i = 0; i < kvq_n_deploy_formats && n < REC_MAX; i++) {
        const kvq_deploy_format *f = &kvq_deploy_formats[i];
        if (!all && strcmp(f->engine, engine)) continue;
        rec_row *r = &rows[n++];
        r->engine = f->engine, r->format = f->name, r->flags = f->flags;
        kvq_deploy_config(f, seed, &r->cfg);
        if (row_prepare(t, NULL, context, budget, r)) measure(t, NULL, (int)seq_len, r);
        measure_model(&rm, r);
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
    if (have_best) {
        best.format = best.label, best.flags = not_dep;
        measure_model(&rm, &best);
    }

    int n_ok = 0;
    for (int i = 0; i < n; i++) n_ok += rows[i].ok;
    const char *rank_name = kvq_metrics[g_by_output ? KVQ_M_OUTPUT_ERROR : KVQ_M_KEY_REL_MSE].name;
    int replayed = seq_len ? (int)seq_len : t->n_tokens;
    if (json) {
        json_t *ja = json_array();
        int rank = 0;
        for (int i = 0; i < n; i++)
            json_array_append_new(ja, row_json(&rows[i], rows[i].ok ? ++rank : 0, with_model));
        json_t *root = json_pack("{s:s, s:s, s:i, s:i, s:i, s:I, s:o, s:i, s:s, s:o}", "trace", t->path, "engine",
                                 engine, "n_layers", t->n_layers, "n_kv_heads", t->n_kv_heads, "head_dim",
                                 t->head_dim, "context", (json_int_t)context, "budget_gib",
                                 budget > 0 ? json_real(budget) : json_null(), "seq_len", replayed, "rank_by",
                                 kvq_metrics[g_by_output ? KVQ_M_OUTPUT_ERROR : KVQ_M_KEY_REL_MSE].json, "rows", ja);
        if (with_model) {
            json_t *jm = json_pack("{s:s, s:s, s:I, s:i, s:I}", "dir", rm.dir, "text", rm.text, "text_bytes",
                                   (json_int_t)rm.bytes, "n_tokens", rm.n, "scored_bytes", (json_int_t)rm.covered);
            json_object_set_new(jm, "fp16_bits_per_byte", num(rm.ref_bits_per_byte));
            json_object_set_new(jm, "kl_unit", json_string("bits per token, KL(fp16 || format)"));
            json_object_set_new(root, "model", jm);
        }
        json_t *jb = have_best ? row_json(&best, 0, with_model) : json_null();
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
        if (with_model) {
            char fb[32];
            kvs_printf(s, "model %s on %s: first %zu bytes (%d tokens, %zu bytes scored), fp16 cache %s %s; each row's "
                       "cache in lockstep with fp16", rm.dir, rm.text, rm.bytes, rm.n, rm.covered,
                       kvq_metrics[KVQ_M_BITS_PER_BYTE].name,
                       kvq_metric_fmt(KVQ_M_BITS_PER_BYTE, rm.ref_bits_per_byte, fb, sizeof fb));
        }
        char mcols[64] = "";
        if (with_model)
            snprintf(mcols, sizeof mcols, "  %9s  %13s", kvq_metrics[KVQ_M_BITS_PER_BYTE].name,
                     kvq_metrics[KVQ_M_NEXT_TOKEN_KL].name);
        kvs_printf(s, "%4s  %-8s  %-13s  %-30s  %8s  %10s  %18s  %20s  %11s  %12s  %12s  %5s  %s%s", "rank", "engine",
                   "format", "flags", kvq_metrics[KVQ_M_KEY_BITS].name, kvq_metrics[KVQ_M_VALUE_BITS].name,
                   kvq_metrics[KVQ_M_FORMAT_BYTES_PER_TOKEN].name, kvq_metrics[KVQ_M_KV_GIB_AT_CONTEXT].name,
                   kvq_metrics[KVQ_M_KEY_REL_MSE].name, kvq_metrics[KVQ_M_OUTPUT_ERROR].name,
                   kvq_metrics[KVQ_M_ATTN_KL].name, "front", "budget", mcols);
        int rank = 0;
        for (int i = 0; i < n; i++) {
            char rk[16];
            snprintf(rk, sizeof rk, "%d", rows[i].ok ? ++rank : 0);
            print_row(s, &rows[i], rows[i].ok ? rk : "-", budget > 0, with_model);
        }
        kvs_printf(s, "units: bits/coord, bytes/token, GiB at %ld tokens%s; front * = on the Pareto front over "
                   "(%s, %s)",
                   context, with_model ? ", bits/byte, next-token KL in bits/token (KL(fp16 || format))" : "",
                   kvq_metrics[KVQ_M_FORMAT_BYTES_PER_TOKEN].name, rank_name);
        if (have_best) {
            kvs_printf(s, "kvstudio's best within %s GiB (%s):", kvq_metric_fmt(KVQ_M_KV_GIB_AT_CONTEXT, own_budget,
                       bud, sizeof bud), not_dep);
            print_row(s, &best, "-", budget > 0, with_model);
        } else if (own_budget > 0) {
            kvs_printf(s, "kvstudio's best: no kvstudio configuration fits the budget");
        } else {
            kvs_printf(s, "kvstudio's best: not sought (no engine row ran and no --budget-gb)");
        }
    }
    rc = n_ok ? 0 : kvs_errorf(s, "recommend: no format of engine '%s' ran", engine);
done:
    model_close(&rm);
    free(rows);
    kvq_artifacts_free(art);
    return rc;
}
