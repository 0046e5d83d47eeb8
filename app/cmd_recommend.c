// cmd_recommend.c — `recommend`: prints the table of engine/recommend.c
// (every KV format the chosen engine offers, replayed on the trace exactly
// as the engine stores it: the flag to set, bits held, memory per token and
// at --context, key rel MSE, output error, attention KL; rows within
// --budget-gb first, ranked, the Pareto front marked; kvstudio's own best at
// the same budget apart, labelled as not deployable) as text or JSON. The
// studio's Deploy view (views/deploy.c) shows the same table.
//
// --model DIR also runs that checkpoint over a short text (--text, its first
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
#include "model.h"
#include "recommend.h"
#include "tok/tok.h"
#include "tui.h"

// --model: the text every row's cache runs through, and each row's figures.
#define REC_TEXT "sample_data/texts/textwrap-1k.py"
#define REC_TEXT_BYTES 128   // one prefill chunk: all engines' rows in about 15 s of CPU on the sample model
typedef struct rec_fig {
    double bits_per_byte, next_token_kl;
    bool ok;
    char error[256];
} rec_fig;
typedef struct rec_model {
    kvq_model *m;
    kvq_tok *tk;
    int32_t *tok;
    int n;
    size_t bytes, covered;   // text bytes the n tokens span; bytes their n - 1 predictions cover
    double ref_bits_per_byte;
    const char *dir, *text;
    rec_fig rows[KVQ_REC_MAX_ROWS], best;   // by table row
} rec_model;

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *row_json(const kvq_recommend_row *r, const rec_fig *fig)
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
    if (fig) {
        json_object_set_new(o, kvq_metrics[KVQ_M_BITS_PER_BYTE].json, num(fig->bits_per_byte));
        json_object_set_new(o, kvq_metrics[KVQ_M_NEXT_TOKEN_KL].json, num(fig->next_token_kl));
        if (!fig->ok) json_object_set_new(o, "model_error", json_string(fig->error));
    }
    return o;
}

static void print_row(kvs_session *s, const kvq_recommend_row *r, const char *rank, bool budget,
                      const rec_fig *fig)
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
    const char *bud = !budget ? "-" : r->in_budget ? "fits" : "over";
    if (!fig) {
        kvs_printf(s, "%s  %5s  %s", line, r->front ? "*" : "-", bud);
        return;
    }
    char f2[32];
    if (fig->ok)
        kvs_printf(s, "%s  %5s  %-6s  %9s  %13s", line, r->front ? "*" : "-", bud,
                   kvq_metric_fmt(KVQ_M_BITS_PER_BYTE, fig->bits_per_byte, f, sizeof f),
                   kvq_metric_fmt(KVQ_M_NEXT_TOKEN_KL, fig->next_token_kl, f2, sizeof f2));
    else
        kvs_printf(s, "%s  %5s  %-6s  model failed: %s", line, r->front ? "*" : "-", bud, fig->error);
}

static int print_json(kvs_session *s, const kvq_trace *t, const kvq_recommend_table *tb, const rec_model *rm)
{
    json_t *ja = json_array();
    for (int i = 0; i < tb->n; i++) json_array_append_new(ja, row_json(&tb->rows[i], rm->m ? &rm->rows[i] : NULL));
    const kvq_recommend_opts *o = &tb->opts;
    json_t *root = json_pack("{s:s, s:s, s:i, s:i, s:i, s:I, s:o, s:i, s:s, s:o}", "trace", t->path, "engine",
                             o->engine, "n_layers", tb->n_layers, "n_kv_heads", tb->n_kv_heads, "head_dim",
                             tb->head_dim, "context", (json_int_t)o->context, "budget_gib",
                             o->budget_gib > 0 ? json_real(o->budget_gib) : json_null(), "seq_len", tb->replayed,
                             "rank_by", kvq_metrics[kvq_recommend_rank_metric(tb)].json, "rows", ja);
    if (rm->m) {
        json_t *jm = json_pack("{s:s, s:s, s:I, s:i, s:I}", "dir", rm->dir, "text", rm->text, "text_bytes",
                               (json_int_t)rm->bytes, "n_tokens", rm->n, "scored_bytes", (json_int_t)rm->covered);
        json_object_set_new(jm, "fp16_bits_per_byte", num(rm->ref_bits_per_byte));
        json_object_set_new(jm, "kl_unit", json_string("bits per token, KL(fp16 || format)"));
        json_object_set_new(root, "model", jm);
    }
    json_t *jb = tb->have_best ? row_json(&tb->best, rm->m ? &rm->best : NULL) : json_null();
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

static void print_text(kvs_session *s, const kvq_trace *t, const kvq_recommend_table *tb, const rec_model *rm)
{
    const kvq_recommend_opts *o = &tb->opts;
    char bud[64] = "none", hdr[1024];
    if (o->budget_gib > 0) snprintf(bud, sizeof bud, "%g GiB", o->budget_gib);
    const char *rank_name = kvq_metrics[kvq_recommend_rank_metric(tb)].name;
    kvs_printf(s, "recommend on %s: %d layers x %d kv heads x head_dim %d, context %ld tokens, budget %s", t->path,
               tb->n_layers, tb->n_kv_heads, tb->head_dim, o->context, bud);
    kvs_printf(s, "%d tokens replayed (prefill %d, decode %d); ranked by %s, rows within the budget first",
               tb->replayed, tb->replayed / 2, tb->replayed - tb->replayed / 2, rank_name);
    if (rm->m) {
        char fb[32];
        kvs_printf(s, "model %s on %s: first %zu bytes (%d tokens, %zu bytes scored), fp16 cache %s %s; each row's "
                   "cache in lockstep with fp16", rm->dir, rm->text, rm->bytes, rm->n, rm->covered,
                   kvq_metrics[KVQ_M_BITS_PER_BYTE].name,
                   kvq_metric_fmt(KVQ_M_BITS_PER_BYTE, rm->ref_bits_per_byte, fb, sizeof fb));
    }
    int n = snprintf(hdr, sizeof hdr, "%4s  %-8s  %-13s  %-46s", "rank", "engine", "format", "flags");
    for (int c = 0; c < KVQ_REC_N_COLS && n < (int)sizeof hdr; c++)
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "  %s", kvq_metrics[kvq_recommend_cols[c].metric].name);
    if (rm->m)
        kvs_printf(s, "%s  %5s  %s  %9s  %13s", hdr, "front", "budget", kvq_metrics[KVQ_M_BITS_PER_BYTE].name,
                   kvq_metrics[KVQ_M_NEXT_TOKEN_KL].name);
    else
        kvs_printf(s, "%s  %5s  %s", hdr, "front", "budget");
    for (int i = 0; i < tb->n; i++) {
        char rk[16];
        snprintf(rk, sizeof rk, "%d", tb->rows[i].rank);
        print_row(s, &tb->rows[i], tb->rows[i].ok ? rk : "-", o->budget_gib > 0, rm->m ? &rm->rows[i] : NULL);
    }
    kvs_printf(s, "units: bits/coord, bytes/token, GiB at %ld tokens%s; front * = on the Pareto front over (%s, %s)",
               o->context, rm->m ? ", bits/byte, next-token KL in bits/token (KL(fp16 || format))" : "",
               kvq_metrics[KVQ_M_FORMAT_BYTES_PER_TOKEN].name, rank_name);
    if (tb->have_best) {
        kvs_printf(s, "kvstudio's best within %s GiB (%s):",
                   kvq_metric_fmt(KVQ_M_KV_GIB_AT_CONTEXT, tb->own_budget_gib, bud, sizeof bud), tb->not_deployable);
        print_row(s, &tb->best, "-", o->budget_gib > 0, rm->m ? &rm->best : NULL);
    } else if (tb->own_budget_gib > 0) {
        kvs_printf(s, "kvstudio's best: no kvstudio configuration fits the budget");
    } else {
        kvs_printf(s, "kvstudio's best: not sought (no engine row ran and no --budget-gb)");
    }
}

// Run the model with r's cache (and the fp16 one in lockstep) into *fig.
// A --calculate-kv-scales row uses the scales of the trace's prefill, as
// its replay does (kvq_deploy_artifacts): the trace is of this model.
static void measure_model(rec_model *rm, const kvq_trace *t, const kvq_recommend_table *tb,
                          const kvq_recommend_row *r, rec_fig *fig)
{
    fig->bits_per_byte = fig->next_token_kl = NAN;
    if (!r->ok) {
        snprintf(fig->error, sizeof fig->error, "not run: the trace replay failed");
        return;
    }
    kvq_artifacts *fa = NULL;
    for (int i = 0; i < kvq_n_deploy_formats; i++) {
        const kvq_deploy_format *f = &kvq_deploy_formats[i];
        if (!strcmp(f->engine, r->engine) && !strcmp(f->name, r->format) &&
            kvq_deploy_artifacts(f, t, tb->replayed / 2, &fa)) {
            snprintf(fig->error, sizeof fig->error, "%s", kvq_last_error());
            return;
        }
    }
    kvq_ppl_result res;
    kvq_status st = kvq_model_ppl(rm->m, &r->cfg, fa, rm->tok, rm->n, KVS_MODEL_CHUNK, NULL, &res);
    kvq_artifacts_free(fa);
    if (st) {
        snprintf(fig->error, sizeof fig->error, "%s", kvq_last_error());
        return;
    }
    double scale = (double)(rm->n - 1) / (double)rm->covered;   // bits per token -> per byte
    fig->bits_per_byte = res.bits_per_token * scale;
    fig->next_token_kl = res.kl_bits;
    // the fp16 reference run's figure (an fp16 row runs alone: its own)
    if (!kvq_model_cfg_is_fp16(&r->cfg) || isnan(rm->ref_bits_per_byte))
        rm->ref_bits_per_byte = res.ref_bits_per_token * scale;
    fig->ok = true;
}

// --model DIR: load it, check its shape against the trace, keep the tokens
// of the text's first `bytes` bytes (whole tokens; byte-level: bytes).
static int model_open(kvs_session *s, const kvq_trace *t, const char *dir, const char *text, long bytes,
                      rec_model *rm)
{
    rm->dir = dir, rm->text = text, rm->ref_bits_per_byte = NAN;
    if (kvs_model_load(s, dir, "recommend", &rm->m)) return -1;
    const kvq_model_config *mc = &rm->m->cfg;
    if (mc->n_layers != t->n_layers || mc->n_kv_heads != t->n_kv_heads || mc->head_dim != t->head_dim)
        return kvs_errorf(s, "recommend: --model %s has %d layers x %d kv heads x head_dim %d, the trace %s %d x %d x "
                          "%d (expected a trace of this model)", dir, mc->n_layers, mc->n_kv_heads, mc->head_dim,
                          t->path, t->n_layers, t->n_kv_heads, t->head_dim);
    size_t len = 0;
    if (kvs_model_text_tokens(s, "recommend", rm->m, text, &rm->tok, &rm->n, &rm->tk, &len)) return -1;
    if (!rm->tk) {   // byte-level: a token is a byte
        if (bytes > 0 && (size_t)rm->n > (size_t)bytes) rm->n = (int)bytes;
        rm->bytes = (size_t)rm->n;
        rm->covered = rm->n > 0 ? (size_t)rm->n - 1 : 0;
    } else {         // whole tokens while their pieces fit in `bytes`; the first one scored after a BOS
        bool bos = rm->n > 0 && rm->tok[0] == kvq_tok_bos(rm->tk);
        size_t span = 0, scored = 0;
        int k = 0;
        for (; k < rm->n; k++) {
            size_t p = k == 0 && bos ? 0 : kvq_tok_piece(rm->tk, rm->tok[k], k == (bos ? 1 : 0), NULL, 0);
            if (bytes > 0 && k > 1 && span + p > (size_t)bytes) break;
            span += p;
            if (k > 0) scored += p;
        }
        rm->n = k;
        rm->bytes = span;
        rm->covered = scored;
    }
    if (rm->n < 2 || !rm->covered)
        return kvs_errorf(s, "recommend: --text %s: %zu bytes give %d tokens (expected at least 2 and a scored byte)",
                          text, rm->bytes, rm->n);
    return 0;
}

static void model_close(rec_model *rm)
{
    free(rm->tok);
    kvq_tok_free(rm->tk);
    kvq_model_free(rm->m);
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
    const char *mdir = kvs_opt_str(a, "model", NULL), *text = kvs_opt_str(a, "text", REC_TEXT);
    long text_bytes = kvs_opt_int(a, "text-bytes", REC_TEXT_BYTES);
    bool json = kvs_opt_flag(a, "json") || s->json;
    if (kvs_args_check_unused(s, a, "recommend") || kvs_args_trace_from(s, a, tpath)) return -1;
    if (!mdir && (kvs_opt_given(a, "text") || kvs_opt_given(a, "text-bytes")))
        return kvs_errorf(s, "recommend: --text and --text-bytes go with --model DIR");
    const kvq_trace *t = s->trace;
    if (seq_len > t->n_tokens)
        return kvs_errorf(s, "recommend: --seq-len %ld exceeds the trace's %d tokens", seq_len, t->n_tokens);
    o.seq_len = (int)seq_len;
    if (s->ui && !json && !mdir)   // the studio: the Deploy view computes and shows it
        return kvs_studio_recommend(s, kvs_opt_given(a, "engine") ? o.engine : NULL,
                                    kvs_opt_given(a, "context") ? o.context : -1,
                                    kvs_opt_given(a, "budget-gb") ? o.budget_gib : -1,
                                    kvs_opt_given(a, "seq-len") ? seq_len : -1, artdir);
    kvq_artifacts *art = NULL;
    if (artdir && kvq_artifacts_load_for_trace(artdir, t, &art))
        return kvs_errorf(s, "recommend: %s", kvq_last_error());
    kvq_recommend_table *tb = calloc(1, sizeof *tb);
    rec_model *rm = calloc(1, sizeof *rm);
    int rc = -1;
    if (!tb || !rm) kvs_errorf(s, "recommend: out of memory");
    else if (mdir && model_open(s, t, mdir, text, text_bytes, rm)) (void)0;
    else if (kvq_recommend_run(t, art, &o, NULL, tb)) kvs_errorf(s, "%s", kvq_last_error());
    else {
        if (rm->m) {
            for (int i = 0; i < tb->n; i++) measure_model(rm, t, tb, &tb->rows[i], &rm->rows[i]);
            if (tb->have_best) measure_model(rm, t, tb, &tb->best, &rm->best);
        }
        if (!(json ? print_json(s, t, tb, rm) : (print_text(s, t, tb, rm), 0)))
            rc = tb->n_ok ? 0 : kvs_errorf(s, "recommend: no format of engine '%s' ran", o.engine);
    }
    if (rm) model_close(rm);
    free(rm);
    free(tb);
    kvq_artifacts_free(art);
    return rc;
}
