// cmd_cache.c — benchmark (one config replayed through the caches with every
// observer, readable summary + JSON report) and compare (a grid of methods x
// bits in one table; a failing combination prints its reason and the grid
// goes on).
//
// Config: the session's config with options applied (--method, --bits,
// --value-bits and any other config field). When --method is given without
// --bits, bits are clamped into the method's range; a key method of fp16
// without --value-bits keeps values fp16 (as the model commands do).
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "calib/calib.h"
#include "cmds.h"
#include "label.h"
#include "replay.h"
#include "safetensors.h"

// --trace T (read before the unused-option check), else the first
// positional, else the session's trace.
static int bench_trace(kvs_session *s, kvs_args *a, const char *path) { return kvs_args_trace_from(s, a, path); }

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *layer_array(const double *v, int n)
{
    json_t *a = json_array();
    for (int l = 0; l < n; l++) json_array_append_new(a, num(v[l]));
    return a;
}

static json_t *report_json(const kvq_config *c, const kvq_artifacts *art, const kvq_trace *t, int seq_len, int runs,
                           const kvq_replay_snapshot *sn)
{
    char label[256], id[16];
    kvq_artifacts_id(art, id, sizeof id);
    const kvq_report *r = &sn->report;
    int nl = sn->n_layers;
    json_t *cfg = json_pack("{s:s, s:i, s:i, s:s, s:i, s:i, s:i, s:i, s:i, s:b, s:b, s:I}", "method", c->method,
                            "bits", c->bits, "value_bits", c->value_bits, "value_method",
                            c->value_method[0] ? c->value_method : (c->value_bits == 16 ? "fp16" : "turboquant_mse"),
                            "residual_length", c->residual_length, "sink_tokens", c->sink_tokens, "protect_layers",
                            c->protect_layers, "sliding_window", c->sliding_window, "outlier_bits", c->outlier_bits,
                            "use_hadamard", c->use_hadamard, "use_fused_sdpa", c->use_fused_sdpa, "seed",
                            (json_int_t)c->seed);
    json_object_set_new(cfg, "label", json_string(kvq_config_label(c, id, label, sizeof label)));
    json_object_set_new(cfg, "trace", json_string(t->path));
    json_object_set_new(cfg, "seq_len", json_integer(seq_len));
    json_object_set_new(cfg, "num_runs", json_integer(runs));
    json_object_set_new(cfg, "n_layers", json_integer(t->n_layers));
    json_object_set_new(cfg, "n_heads", json_integer(t->n_heads));
    json_object_set_new(cfg, "n_kv_heads", json_integer(t->n_kv_heads));
    json_object_set_new(cfg, "head_dim", json_integer(t->head_dim));
    json_object_set_new(cfg, "key_bits_per_coord", num(sn->key_bpc));
    json_object_set_new(cfg, "value_bits_per_coord", num(sn->value_bpc));
    if (c->n_bit_allocation) {
        json_t *ba = json_object();
        for (int l = 0; l < c->n_bit_allocation; l++) {
            char k[32];
            snprintf(k, sizeof k, "layer_%d", l);
            json_object_set_new(ba, k, json_integer(c->bit_allocation[l]));
        }
        json_object_set_new(cfg, "bit_allocation", ba);
    }
    const kvq_distortion_report *d = &r->distortion;
    json_t *dist = json_pack("{s:o, s:o, s:o, s:o, s:o, s:i, s:I}", "mean_cosine_similarity",
                             num(d->mean_cosine_similarity), "min_cosine_similarity", num(d->min_cosine_similarity),
                             "mean_ip_error", num(d->mean_ip_error), "mean_relative_mse", num(d->mean_relative_mse),
                             "per_layer_cosine_similarity", layer_array(d->per_layer_cosine_similarity, nl),
                             "worst_layer", d->worst_layer, "total_tokens_measured",
                             (json_int_t)d->total_tokens_measured);
    const kvq_latency_report *lt = &r->latency;
    json_t *lat = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:i, s:I, s:I}", "mean_encode_ms",
                            num(lt->mean_encode_ms), "mean_decode_ms", num(lt->mean_decode_ms), "p99_encode_ms",
                            num(lt->p99_encode_ms), "total_encode_ms", num(lt->total_encode_ms), "total_decode_ms",
                            num(lt->total_decode_ms), "per_layer_encode_ms", layer_array(lt->per_layer_encode_ms, nl),
                            "slowest_layer", lt->slowest_layer, "num_encode_calls", (json_int_t)lt->num_encode_calls,
                            "num_decode_calls", (json_int_t)lt->num_decode_calls);
    const kvq_memory_report *m = &r->memory;
    json_t *mem = json_pack("{s:o, s:o, s:o, s:I, s:o, s:o}", "peak_compressed_mb", num(m->peak_compressed_mb),
                            "peak_fp16_mb", num(m->peak_fp16_mb), "compression_ratio", num(m->compression_ratio),
                            "total_tokens", (json_int_t)m->total_tokens, "bytes_per_token", num(m->bytes_per_token),
                            "per_layer_mb", layer_array(m->per_layer_mb, nl));
    const kvq_key_norm_report *k = &r->key_norm;
    json_t *po = json_array();
    for (int l = 0; l < nl; l++) json_array_append_new(po, json_integer(k->per_layer_outlier_count[l]));
    json_t *kn = json_pack("{s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:I}", "mean_key_norm", num(k->mean_key_norm),
                           "std_key_norm", num(k->std_key_norm), "max_key_norm", num(k->max_key_norm),
                           "outlier_count", (json_int_t)k->outlier_count, "outlier_fraction",
                           num(k->outlier_fraction), "mean_outlier_norm", num(k->mean_outlier_norm),
                           "per_layer_outlier_count", po, "total_keys", (json_int_t)k->total_keys);
    const kvq_attention_report *at = &r->attention;
    json_t *att = json_pack("{s:o, s:o, s:s, s:o, s:i, s:I, s:o, s:o, s:o}", "mean_output_rel_error",
                            num(at->mean_output_rel_error), "mean_kl_divergence", num(at->mean_kl_divergence),
                            "kl_unit", kvq_metrics[KVQ_M_ATTN_KL].unit,
                            "topk_recall", num(at->topk_recall), "topk", at->topk, "num_queries",
                            (json_int_t)at->num_queries, "per_layer_output_rel_error",
                            layer_array(at->per_layer_output_rel_error, nl), "per_layer_kl_divergence",
                            layer_array(at->per_layer_kl_divergence, nl), "per_layer_topk_recall",
                            layer_array(at->per_layer_topk_recall, nl));
    // the attention figures are over a seeded sample when sample_rate < 1 (replay.h)
    json_object_set_new(att, "num_queries_attended", json_integer(sn->attn_queries));
    json_object_set_new(att, "sample_rate", num(sn->attn_rate));
    json_object_set_new(att, "sample_seed", json_integer((json_int_t)c->seed));
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "config", cfg, "distortion", dist, "latency", lat, "memory",
                     mem, "key_norm", kn, "attention", att);
}

static int write_json(kvs_session *s, const char *cmd, const char *path, json_t *root)
{
    char *txt = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
    if (!txt) return kvs_errorf(s, "%s: cannot serialize the report", cmd);
    int rc = 0;
    if (!path) {
        kvs_puts(s, txt);
    } else {
        kvq_atomic_file af;
        kvq_status st = kvq_atomic_open(&af, path);
        if (!st) {
            if (fputs(txt, (FILE *)af.fp) == EOF || fputc('\n', (FILE *)af.fp) == EOF) {
                kvq_atomic_abort(&af);
                st = kvq_error(KVQ_ERR_IO, "%s: write failed: %s", path, strerror(errno));
            } else {
                st = kvq_atomic_commit(&af);
            }
        }
        if (st) rc = kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    }
    free(txt);
    return rc;
}

// The session's run record for one replay.
static void fill_run(kvs_run *run, const kvq_config *c, const kvq_artifacts *art, const kvq_replay_snapshot *sn,
                     double vps)
{
    const kvq_report *r = &sn->report;
    kvs_run_init(run, c, art, "replay");
    run->key_bits = sn->key_bpc;
    run->value_bits = sn->value_bpc;
    run->key_rel_mse = r->distortion.mean_relative_mse;
    run->key_cosine = r->distortion.mean_cosine_similarity;
    run->probe_error = r->distortion.mean_ip_error;
    if (r->attention.num_queries) {
        run->output_error = r->attention.mean_output_rel_error;
        run->attn_kl = r->attention.mean_kl_divergence;
    }
    run->compression = sn->key_bpc + sn->value_bpc > 0 ? 32.0 / (sn->key_bpc + sn->value_bpc) : NAN;
    run->cache_compression = r->memory.compression_ratio;
    run->encode_vps = vps;
    run->n_layers = sn->n_layers;
    for (int l = 0; l < sn->n_layers && l < KVQ_MAX_LAYERS; l++) {
        run->layer_key_rel_mse[l] = NAN;
        run->layer_key_cosine[l] = r->distortion.per_layer_cosine_similarity[l];
    }
}

// Key/value vectors encoded per second over the last run (all layers, heads).
static double encode_vps(const kvq_replay_snapshot *sn, const kvq_trace *t)
{
    const kvq_latency_report *lt = &sn->report.latency;
    double vec = (double)sn->pos * t->n_layers * t->n_kv_heads;
    return lt->total_encode_ms > 0 ? vec / (lt->total_encode_ms / 1e3) : NAN;
}

// One "name value unit" phrase of metric id into slot i of mv[] (engine/metrics.h); n/a for NaN.
#define MV(i, id, v) kvq_metric_fmt_named(KVQ_M_##id, v, mv[i], sizeof mv[i])

static void print_summary(kvs_session *s, const char *cmd, const kvq_config *c, const kvq_artifacts *art, const kvq_trace *t,
                          const kvq_replay_snapshot *sn, int runs, double wall)
{
    const kvq_report *r = &sn->report;
    char label[256], id[16], mv[8][128];
    kvq_artifacts_id(art, id, sizeof id);
    kvs_printf(s, "%-10s %s on %s: %d tokens (prefill %d, decode %d), %d run%s, %.2f s", cmd,
               kvq_config_label(c, id, label, sizeof label), t->path, sn->total, sn->total / 2,
               sn->total - sn->total / 2, runs, runs == 1 ? "" : "s", wall);
    kvs_printf(s, "bits       %s, %s, %s (records)", MV(0, KEY_BITS, sn->key_bpc), MV(1, VALUE_BITS, sn->value_bpc),
               MV(2, COMPRESSION, sn->key_bpc + sn->value_bpc > 0 ? 32.0 / (sn->key_bpc + sn->value_bpc) : NAN));
    const kvq_memory_report *m = &r->memory;
    kvs_printf(s, "memory     %s vs %s: %s, %s (all layers, K+V)", MV(0, CACHE_MB, m->peak_compressed_mb),
               MV(1, FP16_MB, m->peak_fp16_mb), MV(2, CACHE_COMPRESSION, m->compression_ratio),
               MV(3, BYTES_PER_TOKEN, m->bytes_per_token));
    const kvq_distortion_report *d = &r->distortion;
    if (d->total_tokens_measured)
        kvs_printf(s, "distortion %s, %s, %s, %s (worst layer %d; %ld compressed keys measured)",
                   MV(0, KEY_COSINE, d->mean_cosine_similarity), MV(1, KEY_COSINE_MIN, d->min_cosine_similarity),
                   MV(2, KEY_REL_MSE, d->mean_relative_mse), MV(3, PROBE_ERROR, d->mean_ip_error), d->worst_layer,
                   d->total_tokens_measured);
    else
        kvs_printf(s, "distortion %s: no key was compressed (fp16 windows/protected layers hold every token)",
                   MV(0, KEY_COSINE, NAN));
    const kvq_attention_report *at = &r->attention;
    if (at->num_queries && sn->attn_rate < 1)
        kvs_printf(s, "attention  %s, %s, %s (k = %d, %ld of %ld queries: a seeded sample (seed %llu), 1 in "
                   "%.0f queries of each layer and kv head, as the exact reference over every query "
                   "is %lld query-key pairs, above %lld)", MV(0, OUTPUT_ERROR, at->mean_output_rel_error),
                   MV(1, ATTN_KL, at->mean_kl_divergence), MV(2, TOPK_RECALL, at->topk_recall), at->topk,
                   at->num_queries, sn->attn_queries, (unsigned long long)c->seed, 1.0 / sn->attn_rate,
                   sn->attn_pairs_total, (long long)KVQ_REPLAY_ATTN_PAIRS);
    else if (at->num_queries)
        kvs_printf(s, "attention  %s, %s, %s (k = %d, %ld queries)", MV(0, OUTPUT_ERROR, at->mean_output_rel_error),
                   MV(1, ATTN_KL, at->mean_kl_divergence), MV(2, TOPK_RECALL, at->topk_recall), at->topk, at->num_queries);
    else
        kvs_printf(s, "attention  not measured (the trace has no queries)");
    const kvq_latency_report *lt = &r->latency;
    kvs_printf(s, "latency    %s, %s (%ld calls), %s (%ld calls), %s", MV(0, ENCODE_MS, lt->mean_encode_ms),
               MV(1, ENCODE_P99_MS, lt->p99_encode_ms), lt->num_encode_calls, MV(2, ATTEND_MS, lt->mean_decode_ms),
               lt->num_decode_calls, MV(3, ENCODE_VPS, encode_vps(sn, t)));
    const kvq_key_norm_report *k = &r->key_norm;
    kvs_printf(s, "key norms  %s (std %.2f, max %.2f), %s (%ld), mean outlier norm %.2f",
               MV(0, KEY_NORM, k->total_keys ? k->mean_key_norm : NAN), k->std_key_norm, k->max_key_norm,
               MV(1, OUTLIER_FRACTION, k->total_keys ? 100 * k->outlier_fraction : NAN), k->outlier_count,
               k->mean_outlier_norm);
    kvs_printf(s, "layer  %-10s  %-12s  %-12s  %-12s  %-7s  %-9s  %s", kvq_metrics[KVQ_M_KEY_COSINE].name,
               kvq_metrics[KVQ_M_OUTPUT_ERROR].name, kvq_metrics[KVQ_M_ATTN_KL].name,
               kvq_metrics[KVQ_M_TOPK_RECALL].name, "MB", "encode ms", "outliers");
    for (int l = 0; l < sn->n_layers; l++) {
        char c1[32], c2[32], c3[32], c4[32];
        kvs_printf(s, "%5d  %-10s  %-12s  %-12s  %-12s  %-7.3f  %-9.2f  %ld", l,
                   kvq_metric_fmt(KVQ_M_KEY_COSINE, d->per_layer_cosine_similarity[l], c1, sizeof c1),
                   kvq_metric_fmt(KVQ_M_OUTPUT_ERROR, at->per_layer_output_rel_error[l], c2, sizeof c2),
                   kvq_metric_fmt(KVQ_M_ATTN_KL, at->per_layer_kl_divergence[l], c3, sizeof c3),
                   kvq_metric_fmt(KVQ_M_TOPK_RECALL, at->per_layer_topk_recall[l], c4, sizeof c4), m->per_layer_mb[l],
                   lt->per_layer_encode_ms[l], k->per_layer_outlier_count[l]);
    }
}

// benchmark, and `replay` outside the studio (cmd "replay", no options:
// the session's trace and config, as the dashboard would replay them).
static int bench_run(kvs_session *s, kvs_args *a, const char *cmd)
{
    long seq_len = kvs_opt_int(a, "seq-len", 0);
    long runs = kvs_opt_int(a, "num-runs", 1);
    const char *out = kvs_opt_str(a, "output", NULL), *artdir = kvs_opt_str(a, "artifacts", NULL);
    bool json = kvs_opt_flag(a, "json") || s->json;
    const char *tpath = kvs_opt_str(a, "trace", NULL);
    bool method = kvs_opt_given(a, "method"), bits = kvs_opt_given(a, "bits"), vbits = kvs_opt_given(a, "value-bits");
    kvq_config cfg = s->cfg;
    if (kvs_args_apply_config(s, a, &cfg) || kvs_args_check_unused(s, a, cmd)) return -1;
    if (bench_trace(s, a, tpath)) return -1;
    const char *why = method ? kvq_config_fit_bits(&cfg, bits, NULL) : NULL;
    if (!strcmp(cfg.method, "fp16") && !vbits) cfg.value_bits = 16;
    if (!why) why = kvq_config_check(&cfg);
    if (why) return kvs_errorf(s, "%s: %s", cmd, why);
    const kvq_trace *t = s->trace;
    if (seq_len > t->n_tokens)
        return kvs_errorf(s, "%s: --seq-len %ld exceeds the trace's %d tokens", cmd, seq_len, t->n_tokens);
    kvq_artifacts *own = NULL;
    if (artdir && kvq_artifacts_load_for_trace(artdir, t, &own))
        return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    const kvq_artifacts *art = own ? own : s->art;
    kvq_replay_opts o;
    kvq_replay_opts_default(&o);
    o.seq_len = (int)seq_len;
    o.obs.seed = cfg.seed;
    kvq_replay *r = NULL;
    int rc = -1;
    double t0 = kvq_now_s();
    if (kvq_replay_new(t, &cfg, art, &o, &r)) {
        kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
        goto done;
    }
    for (long i = 0; i < runs; i++) {
        if (i) kvq_replay_restart(r, KVQ_OBS_LATENCY);   // latency averages over every run
        if (kvq_replay_run(r, NULL)) {
            kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
            goto done;
        }
    }
    kvq_replay_snapshot sn;
    kvq_replay_snapshot_get(r, &sn);
    double wall = kvq_now_s() - t0;
    json_t *root = report_json(&cfg, art, t, sn.total, (int)runs, &sn);
    if (!root) {
        kvs_errorf(s, "%s: cannot build the JSON report", cmd);
        goto done;
    }
    if (!json) print_summary(s, cmd, &cfg, art, t, &sn, (int)runs, wall);
    rc = 0;
    if (json && write_json(s, cmd, NULL, root)) rc = -1;
    if (out && write_json(s, cmd, out, root)) rc = -1;
    if (out && !rc && !json) kvs_printf(s, "report     %s", out);
    json_decref(root);
    kvs_run run;
    fill_run(&run, &cfg, art, &sn, encode_vps(&sn, t));
    kvs_session_add_run(s, &run);
done:
    kvq_replay_free(r);
    kvq_artifacts_free(own);
    return rc;
}

int kvs_cmd_benchmark(kvs_session *s, kvs_args *a) { return bench_run(s, a, "benchmark"); }

int kvs_replay_batch(kvs_session *s)
{
    kvs_args none = {.cmd = kvs_command_find("replay")};
    return bench_run(s, &none, "replay");
}

// ---- compare ----
// Comma-separated list into items (modifies buf). Returns the count or -1.
static int split_list(char *buf, char **items, int max)
{
    int n = 0;
    for (char *p = strtok(buf, ","); p; p = strtok(NULL, ",")) {
        while (*p == ' ') p++;
        if (!*p) continue;
        if (n == max) return -1;
        items[n++] = p;
    }
    return n;
}

#define CMP_MAX 64

// Progress of the whole grid: a line at most every 10% once it has taken
// over 2 s (as precompute does), with the time left estimated from the
// cells done so far. Text mode only: --json keeps stdout one JSON document.
typedef struct {
    kvs_session *s;
    int cell, n_cells;
    double t0, next;
} grid_progress;

static bool on_grid_progress(double fraction, const char *stage, double eta_s, void *user)
{
    (void)stage, (void)eta_s;
    grid_progress *g = user;
    double done = (g->cell + (fraction < 1 ? fraction : 1)) / g->n_cells, el = kvq_now_s() - g->t0;
    if (done >= g->next && done < 1.0) {
        g->next = done + 0.1;
        if (el > 2.0)
            kvs_printf(g->s, "compare: %3.0f%% (cell %d of %d, about %.0f s left)", 100 * done, g->cell + 1,
                       g->n_cells, done > 0 ? el * (1 - done) / done : 0.0);
    }
    return false;
}

int kvs_cmd_compare(kvs_session *s, kvs_args *a)
{
    long seq_len = kvs_opt_int(a, "seq-len", 0);
    const char *ml = kvs_opt_str(a, "methods", NULL), *bl = kvs_opt_str(a, "bits", "2,3,4");
    const char *out = kvs_opt_str(a, "output", NULL);
    bool json = kvs_opt_flag(a, "json") || s->json;
    const char *tpath = kvs_opt_str(a, "trace", NULL);
    bool vbits = kvs_opt_given(a, "value-bits");
    kvq_config base = s->cfg;
    if (kvs_args_apply_config(s, a, &base) || kvs_args_check_unused(s, a, "compare")) return -1;
    if (bench_trace(s, a, tpath)) return -1;
    const kvq_trace *t = s->trace;
    if (seq_len > t->n_tokens)
        return kvs_errorf(s, "compare: --seq-len %ld exceeds the trace's %d tokens", seq_len, t->n_tokens);
    char mbuf[1024], bbuf[256];
    char *names[CMP_MAX], *bitv[CMP_MAX];
    const char *skipped[CMP_MAX];   // methods of the default list that cannot run: no artifacts
    int nm = 0, ns = 0;
    if (ml) {
        snprintf(mbuf, sizeof mbuf, "%s", ml);
        nm = split_list(mbuf, names, CMP_MAX);
        if (nm <= 0) return kvs_errorf(s, "compare: --methods '%s': expected a comma-separated list of methods", ml);
        for (int i = 0; i < nm; i++) {
            const kvq_method *m;
            if (kvq_method_lookup(names[i], &m)) return kvs_errorf(s, "compare: --methods: %s", kvq_last_error());
        }
    } else {   // every method that runs without calibration, or with the session's artifacts
        for (int i = 0; i < kvq_n_methods && nm < CMP_MAX; i++)
            if (!kvq_methods[i].needs_calibration || s->art) names[nm++] = (char *)kvq_methods[i].name;
            else skipped[ns++] = kvq_methods[i].name;
    }
    snprintf(bbuf, sizeof bbuf, "%s", bl);
    int nb = split_list(bbuf, bitv, CMP_MAX);
    int bits[CMP_MAX];
    if (nb <= 0) return kvs_errorf(s, "compare: --bits '%s': expected a comma-separated list like 2,3,4", bl);
    for (int i = 0; i < nb; i++) {
        char *end;
        errno = 0;
        long b = strtol(bitv[i], &end, 10);
        if (errno || *end || b < 1 || b > 16)
            return kvs_errorf(s, "compare: --bits: '%s' is not a bit width in 1..16", bitv[i]);
        bits[i] = (int)b;
    }
    int n_cells = 0;
    for (int mi = 0; mi < nm; mi++) {
        const kvq_method *m = kvq_method_find(names[mi]);
        n_cells += m->min_bits == m->max_bits ? 1 : nb;
    }
    grid_progress gp = {.s = s, .n_cells = n_cells, .t0 = kvq_now_s(), .next = 0.1};
    kvq_progress prog = {.fn = on_grid_progress, .user = &gp};
    json_t *rows = json_array();
    if (!json) {
        kvs_printf(s, "compare on %s, %d tokens (prefill half, decode the rest)", t->path,
                   seq_len ? (int)seq_len : t->n_tokens);
        kvs_printf(s, "%-16s %4s %10s %10s %17s %10s %12s %12s %17s", "method", "bits", kvq_metrics[KVQ_M_KEY_BITS].name,
                   kvq_metrics[KVQ_M_VALUE_BITS].name, kvq_metrics[KVQ_M_CACHE_COMPRESSION].name,
                   kvq_metrics[KVQ_M_KEY_COSINE].name, kvq_metrics[KVQ_M_OUTPUT_ERROR].name,
                   kvq_metrics[KVQ_M_ATTN_KL].name, kvq_metrics[KVQ_M_ENCODE_VPS].name);
    }
    int n_ok = 0;
    for (int mi = 0; mi < nm; mi++) {
        const kvq_method *m = kvq_method_find(names[mi]);
        // A fixed-width baseline (fp16, q8_0, q4_0, ...) runs once at its width.
        bool fixed = m->min_bits == m->max_bits;
        for (int bi = 0; bi < (fixed ? 1 : nb); bi++) {
            kvq_config c = base;
            snprintf(c.method, sizeof c.method, "%s", m->name);
            c.bits = fixed ? m->min_bits : bits[bi];
            if (!strcmp(c.method, "fp16") && !vbits) c.value_bits = 16;
            const char *why = kvq_config_check(&c);
            kvq_replay *r = NULL;
            kvq_replay_opts o;
            kvq_replay_opts_default(&o);
            o.seq_len = (int)seq_len;
            o.obs.warmup_calls = 0;   // throughput counts every encode
            o.obs.seed = c.seed;
            kvq_status st = why ? kvq_error(KVQ_ERR_ARG, "%s", why) : kvq_replay_new(t, &c, s->art, &o, &r);
            if (!st) st = kvq_replay_run(r, json ? NULL : &prog);
            gp.cell++;
            if (st) {
                if (!json) kvs_printf(s, "%-16s %4d  failed: %s", c.method, c.bits, kvq_last_error());
                json_array_append_new(rows, json_pack("{s:s, s:i, s:s}", "method", c.method, "bits", c.bits,
                                                      "error", kvq_last_error()));
                kvq_replay_free(r);
                continue;
            }
            kvq_replay_snapshot sn;
            kvq_replay_snapshot_get(r, &sn);
            kvq_replay_free(r);
            const kvq_report *rp = &sn.report;
            double vps = encode_vps(&sn, t);
            kvs_run run;
            fill_run(&run, &c, s->art, &sn, vps);
            if (!json) {
                char f[7][32];
                kvs_printf(s, "%-16s %4d %10s %10s %17s %10s %12s %12s %17s", c.method, c.bits,
                           kvq_metric_fmt(KVQ_M_KEY_BITS, run.key_bits, f[0], 32),
                           kvq_metric_fmt(KVQ_M_VALUE_BITS, run.value_bits, f[1], 32),
                           kvq_metric_fmt_unit(KVQ_M_CACHE_COMPRESSION, run.cache_compression, f[2], 32),
                           kvq_metric_fmt(KVQ_M_KEY_COSINE, run.key_cosine, f[3], 32),
                           kvq_metric_fmt(KVQ_M_OUTPUT_ERROR, run.output_error, f[4], 32),
                           kvq_metric_fmt(KVQ_M_ATTN_KL, run.attn_kl, f[5], 32),
                           kvq_metric_fmt(KVQ_M_ENCODE_VPS, vps, f[6], 32));
            }
            json_t *row = json_pack("{s:s, s:s, s:i, s:i}", "label", run.label, "method", c.method, "bits", c.bits,
                                    "value_bits", c.value_bits);
            for (int k = 0; k < kvs_run_n_fields(); k++) {
                double v = kvs_run_field(&run, k);
                if (isfinite(v) || kvs_run_field_metric(k) == KVQ_M_OUTPUT_ERROR)
                    json_object_set_new(row, kvq_metrics[kvs_run_field_metric(k)].json, num(v));
            }
            json_object_set_new(row, kvq_metrics[KVQ_M_TOPK_RECALL].json, num(rp->attention.topk_recall));
            json_array_append_new(rows, row);
            kvs_session_add_run(s, &run);
            n_ok++;
            // A fixed-width method ran once at its own width: say which of
            // the asked widths it stands in for, never drop them silently.
            if (fixed && (nb > 1 || bits[0] != m->min_bits)) {
                if (!json)
                    kvs_printf(s, "%-16s %4s  note: fixed at %d bits; ran once for --bits %s", c.method, "-",
                               m->min_bits, bl);
                json_object_set_new(row, "note", json_sprintf("fixed at %d bits; ran once for --bits %s",
                                                              m->min_bits, bl));
            }
        }
    }
    // The default grid leaves out calibrated methods when the session has no
    // artifacts; each left-out cell is named with the reason, in both forms.
    static const char why_skip[] = "needs calibration artifacts (`load-artifacts DIR` or `calibrate METHOD` first)";
    for (int i = 0; i < ns; i++) {
        if (!json) kvs_printf(s, "%-16s %4s  skipped (bits %s): %s", skipped[i], "-", bl, why_skip);
        for (int bi = 0; bi < nb; bi++)
            json_array_append_new(rows, json_pack("{s:s, s:i, s:s}", "method", skipped[i], "bits", bits[bi],
                                                  "skipped", why_skip));
    }
    int rc = 0;
    json_t *root = json_pack("{s:s, s:i, s:o}", "trace", t->path, "seq_len", seq_len ? (int)seq_len : t->n_tokens,
                             "rows", rows);
    if (json) rc |= write_json(s, "compare", NULL, root);
    if (out) rc |= write_json(s, "compare", out, root);
    json_decref(root);
    if (!n_ok) return kvs_errorf(s, "compare: no combination ran");
    return rc ? -1 : 0;
}
