// recommend.c — the recommend table (see recommend.h): one replay per engine
// format, the budget fit, the ranking and the Pareto marking, then
// kvstudio's own candidates (turboquant_mse keys x values at 2/3/4/8 bits,
// plus the artifacts' method) within the same budget.
#include "recommend.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "artifacts.h"
#include "label.h"
#include "replay.h"

const kvq_recommend_col kvq_recommend_cols[KVQ_REC_N_COLS] = {
    [KVQ_REC_KEY_BITS] = {.metric = KVQ_M_KEY_BITS},
    [KVQ_REC_VALUE_BITS] = {.metric = KVQ_M_VALUE_BITS},
    [KVQ_REC_BYTES_PER_TOKEN] = {.metric = KVQ_M_FORMAT_BYTES_PER_TOKEN, .integer = true},
    [KVQ_REC_GIB] = {.metric = KVQ_M_KV_GIB_AT_CONTEXT},
    [KVQ_REC_KEY_REL_MSE] = {.metric = KVQ_M_KEY_REL_MSE, .measured = true},
    [KVQ_REC_OUTPUT_ERROR] = {.metric = KVQ_M_OUTPUT_ERROR, .measured = true},
    [KVQ_REC_ATTN_KL] = {.metric = KVQ_M_ATTN_KL, .measured = true},
};

static const int own_bits[] = {2, 3, 4, 8};
#define N_OWN_BITS ((int)(sizeof own_bits / sizeof own_bits[0]))

void kvq_recommend_opts_default(kvq_recommend_opts *o)
{
    memset(o, 0, sizeof *o);
    o->engine = "all";
    o->seed = 42;
}

kvq_metric_id kvq_recommend_rank_metric(const kvq_recommend_table *t)
{
    return t->by_output ? KVQ_M_OUTPUT_ERROR : KVQ_M_KEY_REL_MSE;
}

double kvq_recommend_rank_err(const kvq_recommend_table *t, const kvq_recommend_row *r)
{
    return r->v[t->by_output ? KVQ_REC_OUTPUT_ERROR : KVQ_REC_KEY_REL_MSE];
}

// One replay's share of the whole table's progress: the replay reports
// 0..1, the caller sees base + span x that; cancel passes straight through.
typedef struct {
    kvq_progress *parent;
    double base, span;
    char stage[64];
} sub_progress;

static bool sub_report(double fraction, const char *stage, double eta_s, void *user)
{
    (void)stage, (void)eta_s;
    sub_progress *s = user;
    return kvq_progress_report(s->parent, s->base + s->span * (fraction < 0 ? 0 : fraction), s->stage);
}

// Replay r->cfg through the caches; fills the measured columns or r->error.
// Returns KVQ_ERR_CANCELLED only when asked to stop.
static kvq_status measure(const kvq_trace *t, const kvq_artifacts *art, int seq_len, sub_progress *sp,
                          kvq_recommend_row *r)
{
    kvq_replay_opts o;
    kvq_replay_opts_default(&o);
    o.seq_len = seq_len;
    o.obs.seed = r->cfg.seed;
    kvq_replay *rp = NULL;
    kvq_progress p = {.fn = sub_report, .user = sp};
    kvq_progress_begin(&p);
    const char *why = kvq_config_check(&r->cfg);
    kvq_status st = why ? kvq_error(KVQ_ERR_ARG, "%s", why) : kvq_replay_new(t, &r->cfg, art, &o, &rp);
    if (!st) st = kvq_replay_run(rp, sp->parent ? &p : NULL);
    if (st) {
        snprintf(r->error, sizeof r->error, "%s", kvq_last_error());
        kvq_replay_free(rp);
        return st == KVQ_ERR_CANCELLED ? st : KVQ_OK;
    }
    kvq_replay_snapshot sn;
    kvq_replay_snapshot_get(rp, &sn);
    kvq_replay_free(rp);
    bool q = sn.report.attention.num_queries > 0;
    r->v[KVQ_REC_KEY_REL_MSE] = sn.report.distortion.total_tokens_measured ? sn.report.distortion.mean_relative_mse
                                                                          : NAN;
    r->v[KVQ_REC_OUTPUT_ERROR] = q ? sn.report.attention.mean_output_rel_error : NAN;
    r->v[KVQ_REC_ATTN_KL] = q ? sn.report.attention.mean_kl_divergence : NAN;
    r->ok = true;
    return KVQ_OK;
}

// Memory columns, label and budget fit of a row whose cfg is set; false
// (and r->error) when the format cannot hold this shape (mlx groups of 128
// on head_dim 64).
static bool row_prepare(const kvq_trace *t, const kvq_artifacts *art, long context, double budget,
                        kvq_recommend_row *r)
{
    char id[16];
    kvq_artifacts_id(art, id, sizeof id);
    kvq_config_label(&r->cfg, id, r->label, sizeof r->label);
    for (int c = 0; c < KVQ_REC_N_COLS; c++) r->v[c] = NAN;
    if (kvq_deploy_memory_of(&r->cfg, art, t->n_layers, t->n_kv_heads, t->head_dim, &r->mem)) {
        snprintf(r->error, sizeof r->error, "%s", kvq_last_error());
        return false;
    }
    r->v[KVQ_REC_KEY_BITS] = r->mem.key_bpc;
    r->v[KVQ_REC_VALUE_BITS] = r->mem.value_bpc;
    r->v[KVQ_REC_BYTES_PER_TOKEN] = (double)r->mem.bytes_per_token;
    r->v[KVQ_REC_GIB] = kvq_deploy_gib_at(&r->mem, context);
    r->in_budget = budget <= 0 || r->v[KVQ_REC_GIB] <= budget;
    return true;
}

// Table order: replayed rows first, then those within the budget, then by
// the ranking error (NaN last), then by bytes per token.
static bool row_before(const kvq_recommend_table *t, const kvq_recommend_row *a, const kvq_recommend_row *b)
{
    if (a->ok != b->ok) return a->ok;
    if (a->in_budget != b->in_budget) return a->in_budget;
    double ea = kvq_recommend_rank_err(t, a), eb = kvq_recommend_rank_err(t, b);
    if (isnan(ea) != isnan(eb)) return !isnan(ea);
    if (ea != eb) return ea < eb;
    return a->mem.bytes_per_token < b->mem.bytes_per_token;
}

// Stable insertion sort (no qsort: its comparator has no context pointer,
// and the table is sorted on worker threads too).
static void rows_sort(kvq_recommend_table *t)
{
    for (int i = 1; i < t->n; i++) {
        kvq_recommend_row x = t->rows[i];
        int j = i;
        for (; j > 0 && row_before(t, &x, &t->rows[j - 1]); j--) t->rows[j] = t->rows[j - 1];
        t->rows[j] = x;
    }
}

static void mark_front(kvq_recommend_table *t)
{
    double mem[KVQ_REC_MAX_ROWS], err[KVQ_REC_MAX_ROWS];
    bool front[KVQ_REC_MAX_ROWS];
    for (int i = 0; i < t->n; i++) {
        mem[i] = t->rows[i].ok ? t->rows[i].v[KVQ_REC_BYTES_PER_TOKEN] : NAN;
        err[i] = t->rows[i].ok ? kvq_recommend_rank_err(t, &t->rows[i]) : NAN;
    }
    kvq_deploy_pareto(mem, err, t->n, front);
    for (int i = 0; i < t->n; i++) t->rows[i].front = front[i];
}

kvq_status kvq_recommend_run(const kvq_trace *t, const kvq_artifacts *art, const kvq_recommend_opts *o,
                             kvq_progress *p, kvq_recommend_table *out)
{
    memset(out, 0, sizeof *out);
    out->opts = *o;
    if (!o->engine) out->opts.engine = "all";
    if (o->seq_len < 0 || o->seq_len > t->n_tokens)
        return kvq_error(KVQ_ERR_ARG, "recommend: seq_len %d: expected 0..%d (the trace's tokens)", o->seq_len,
                         t->n_tokens);
    if (o->context < 0) return kvq_error(KVQ_ERR_ARG, "recommend: context %ld: expected >= 0", o->context);
    const char *engine = out->opts.engine;
    long context = o->context ? o->context : t->n_tokens;
    double budget = o->budget_gib;
    out->opts.context = context;
    out->n_layers = t->n_layers, out->n_kv_heads = t->n_kv_heads, out->head_dim = t->head_dim;
    out->replayed = o->seq_len ? o->seq_len : t->n_tokens;
    out->by_output = t->n_queries > 0;
    bool all = !strcmp(engine, "all");
    const char *art_method = art ? kvq_artifacts_meta(art, "method") : NULL;
    const kvq_method *am = art_method ? kvq_method_find(art_method) : NULL;
    int n_own = (am ? 2 : 1) * N_OWN_BITS * N_OWN_BITS, n_fmt = 0;
    for (int i = 0; i < kvq_n_deploy_formats; i++) n_fmt += all || !strcmp(kvq_deploy_formats[i].engine, engine);
    double total = n_fmt + n_own > 0 ? n_fmt + n_own : 1;   // progress: one unit a replay
    int done = 0;
    sub_progress sp = {.parent = p, .span = 1 / total};

    for (int i = 0; i < kvq_n_deploy_formats && out->n < KVQ_REC_MAX_ROWS; i++) {
        const kvq_deploy_format *f = &kvq_deploy_formats[i];
        if (!all && strcmp(f->engine, engine)) continue;
        kvq_recommend_row *r = &out->rows[out->n++];
        r->engine = f->engine, r->format = f->name, r->flags = f->flags;
        kvq_deploy_config(f, o->seed, &r->cfg);
        sp.base = done++ / total;
        snprintf(sp.stage, sizeof sp.stage, "%s %s", f->engine, f->name);
        if (kvq_progress_report(p, sp.base, sp.stage)) return kvq_error(KVQ_ERR_CANCELLED, "recommend: cancelled");
        // --calculate-kv-scales rows: scales from the replay's prefill, as vLLM's first forward
        kvq_artifacts *fa = NULL;
        kvq_status st = KVQ_OK;
        if (kvq_deploy_artifacts(f, t, out->replayed / 2, &fa))
            snprintf(r->error, sizeof r->error, "%s", kvq_last_error());
        else if (row_prepare(t, fa, context, budget, r))
            st = measure(t, fa, o->seq_len, &sp, r);
        kvq_artifacts_free(fa);
        if (st) return kvq_error(KVQ_ERR_CANCELLED, "recommend: cancelled");
    }
    mark_front(out);
    rows_sort(out);
    for (int i = 0, rank = 0; i < out->n; i++) {
        out->rows[i].rank = out->rows[i].ok ? ++rank : 0;
        out->n_ok += out->rows[i].ok;
    }

    // kvstudio's best at the same budget: the budget, else the memory of
    // the top-ranked engine row. Calibrated candidates come from art.
    double own_budget = budget > 0 ? budget : out->n && out->rows[0].ok ? out->rows[0].v[KVQ_REC_GIB] : 0;
    out->own_budget_gib = own_budget;
    kvq_recommend_row cand;
    for (int m = 0; m < (am ? 2 : 1); m++)
        for (int kb = 0; kb < N_OWN_BITS; kb++)
            for (int vb = 0; vb < N_OWN_BITS; vb++) {
                sp.base = done++ / total;
                memset(&cand, 0, sizeof cand);
                kvq_config_default(&cand.cfg);
                cand.cfg.seed = o->seed;
                if (m) snprintf(cand.cfg.method, sizeof cand.cfg.method, "%s", am->name);
                cand.cfg.bits = own_bits[kb];
                cand.cfg.value_bits = own_bits[vb];
                if (kvq_config_fit_bits(&cand.cfg, false, NULL) || kvq_config_check(&cand.cfg)) continue;
                cand.engine = "kvstudio", cand.format = "", cand.flags = "";
                if (!row_prepare(t, art, context, own_budget, &cand) || !cand.in_budget || own_budget <= 0) continue;
                snprintf(sp.stage, sizeof sp.stage, "kvstudio %.50s", cand.label);
                if (kvq_progress_report(p, sp.base, sp.stage) || measure(t, art, o->seq_len, &sp, &cand))
                    return kvq_error(KVQ_ERR_CANCELLED, "recommend: cancelled");
                if (!cand.ok) continue;
                double e = kvq_recommend_rank_err(out, &cand), eb = kvq_recommend_rank_err(out, &out->best);
                if (!out->have_best || (isfinite(e) && (!isfinite(eb) || e < eb))) out->best = cand, out->have_best = true;
            }
    char engines[64] = "";
    if (all) {   // every engine of the deploy table, in table order: "llamacpp, vllm or mlx"
        const char *seen[16];
        int ns = 0;
        for (int i = 0; i < kvq_n_deploy_formats && ns < 16; i++) {
            bool dup = false;
            for (int k = 0; k < ns; k++) dup |= !strcmp(seen[k], kvq_deploy_formats[i].engine);
            if (!dup) seen[ns++] = kvq_deploy_formats[i].engine;
        }
        for (int k = 0; k < ns; k++)
            snprintf(engines + strlen(engines), sizeof engines - strlen(engines), "%s%s",
                     k == 0 ? "" : k == ns - 1 ? " or " : ", ", seen[k]);
    }
    snprintf(out->not_deployable, sizeof out->not_deployable, "not deployable in %s", all ? engines : engine);
    if (out->have_best) out->best.format = out->best.label, out->best.flags = out->not_deployable;
    kvq_progress_report(p, 1, "done");
    return KVQ_OK;
}
