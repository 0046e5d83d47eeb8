// cmd_quant.c — `quantize [TRACE] --method M --bits B [--value-bits V]
// [config options] [--tokens N] [--layers 0,2-4] [--queries Q] [--pairs P] [--json]`:
// the quantize report (engine/quantreport.h) as a table or JSON, recorded in
// the session's run history.
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "pool.h"
#include "artifacts.h"
#include "calib/calib.h"
#include "cmds.h"
#include "label.h"
#include "progress.h"
#include "quantreport.h"

// "0,2-4" -> mask over n layers. -1 (message printed) when malformed.
static int parse_layers(kvs_session *s, const char *spec, int n, bool *mask)
{
    memset(mask, 0, sizeof(bool) * (size_t)n);
    const char *p = spec;
    while (*p) {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p) break;
        if (*end == '-') {
            const char *q = end + 1;
            hi = strtol(q, &end, 10);
            if (end == q) break;
        }
        if (lo < 0 || hi >= n || lo > hi)
            return kvs_errorf(s, "quantize: --layers '%s': range %ld-%ld outside 0..%d", spec, lo,
                              hi, n - 1);
        for (long l = lo; l <= hi; l++) mask[l] = true;
        if (*end == 0) return 0;
        if (*end != ',') break;
        p = end + 1;
    }
    return kvs_errorf(s, "quantize: --layers '%s' is not a list like 0,2-4", spec);
}

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *stream_json(const kvq_quantreport_stream *st)
{
    json_t *o = json_object();
    json_object_set_new(o, "bits_per_coord", jnum(st->bits_per_coord));
    json_object_set_new(o, "side_bytes", jnum(st->side_bytes));
    json_object_set_new(o, "bits_per_coord_with_side", jnum(st->bits_per_coord_with_side));
    json_object_set_new(o, "relative_mse", jnum(st->relative_mse));
    json_object_set_new(o, "cosine", jnum(st->cosine));
    return o;
}

static json_t *report_json(const kvq_trace *t, const kvq_config *cfg, const kvq_artifacts *art,
                           const kvq_quantreport *r)
{
    json_t *o = json_object();
    char label[256], id[16];
    kvq_artifacts_id(art, id, sizeof id);
    json_object_set_new(o, "label", json_string(kvq_config_label(cfg, id, label, sizeof label)));
    json_object_set_new(o, "trace", json_string(t->path));
    json_object_set_new(o, "method", json_string(r->method));
    json_object_set_new(o, "bits", json_integer(r->bits));
    json_object_set_new(o, "value_method", json_string(r->value_method));
    json_object_set_new(o, "value_bits", json_integer(r->value_bits));
    json_object_set_new(o, "tokens", json_integer(r->n_tokens));
    json_object_set_new(o, "keys", stream_json(&r->keys));
    json_object_set_new(o, "values", stream_json(&r->values));
    json_object_set_new(o, "ip_relative_error", jnum(r->ip_relative_error));
    json_object_set_new(o, "ip_pairs", json_integer(r->n_pairs));
    json_object_set_new(o, "ip_pairs_sampled", json_boolean(r->pairs_sampled));
    json_t *pl = json_array();
    for (int i = 0; i < r->n_layers; i++) {
        const kvq_quantreport_layer *ly = &r->layers[i];
        json_t *e = json_object();
        json_object_set_new(e, "layer", json_integer(ly->layer));
        json_object_set_new(e, "key_bits", json_integer(ly->key_bits));
        json_object_set_new(e, "keys", stream_json(&ly->keys));
        json_object_set_new(e, "values", stream_json(&ly->values));
        json_object_set_new(e, "ip_relative_error", jnum(ly->ip_relative_error));
        json_array_append_new(pl, e);
    }
    json_object_set_new(o, "per_layer", pl);
    return o;
}

// One row of the table: every figure through its metric's format ("n/a" for NaN).
static void report_row(kvs_session *s, const char *name, int kbits, const kvq_quantreport_stream *k,
                       const kvq_quantreport_stream *v, double ip)
{
    char kb[16] = "", c[7][32];
    if (kbits > 0) snprintf(kb, sizeof kb, "%d", kbits);
    kvs_printf(s, "%5s %5s  %10s %12s %11s  %10s %13s %12s  %10s", name, kb,
               kvq_metric_fmt(KVQ_M_KEY_BITS, k->bits_per_coord, c[0], 32),
               kvq_metric_fmt(KVQ_M_KEY_REL_MSE, k->relative_mse, c[1], 32),
               kvq_metric_fmt(KVQ_M_KEY_COSINE, k->cosine, c[2], 32),
               kvq_metric_fmt(KVQ_M_VALUE_BITS, v->bits_per_coord, c[3], 32),
               kvq_metric_fmt(KVQ_M_VALUE_REL_MSE, v->relative_mse, c[4], 32),
               kvq_metric_fmt(KVQ_M_VALUE_COSINE, v->cosine, c[5], 32), kvq_metric_fmt(KVQ_M_QK_ERROR, ip, c[6], 32));
}

static void report_text(kvs_session *s, const kvq_trace *t, const kvq_config *cfg, const kvq_artifacts *art,
                        const kvq_quantreport *r)
{
    char vdesc[KVQ_NAME_LEN + 32], label[256], id[16];
    if (!strcmp(r->value_method, "fp16"))
        snprintf(vdesc, sizeof vdesc, "fp16");
    else
        snprintf(vdesc, sizeof vdesc, "%s at %d bits", r->value_method, r->value_bits);
    kvs_printf(s, "quantize %s: keys %s at %d bits, values %s", t->path, r->method, r->bits, vdesc);
    kvq_artifacts_id(art, id, sizeof id);
    kvs_printf(s, "config   %s", kvq_config_label(cfg, id, label, sizeof label));
    kvs_printf(
        s, "%d layers x %d kv heads, %d tokens, head_dim %d; %s over %ld %s(query, key) pairs%s",
        r->n_layers, r->n_kv_heads, r->n_tokens, r->head_dim, kvq_metrics[KVQ_M_QK_ERROR].name, r->n_pairs,
        r->pairs_sampled ? "sampled " : "",
        r->pairs_sampled ? " (seeded, uniform over the causal pairs; --pairs 0 for all)" : "");
    kvs_printf(s, "%s", "");
    kvs_printf(s, "%5s %5s  %10s %12s %11s  %10s %13s %12s  %10s", "layer", "kbits", kvq_metrics[KVQ_M_KEY_BITS].name,
               kvq_metrics[KVQ_M_KEY_REL_MSE].name, kvq_metrics[KVQ_M_KEY_COSINE].name,
               kvq_metrics[KVQ_M_VALUE_BITS].name, kvq_metrics[KVQ_M_VALUE_REL_MSE].name,
               kvq_metrics[KVQ_M_VALUE_COSINE].name, kvq_metrics[KVQ_M_QK_ERROR].name);
    for (int i = 0; i < r->n_layers; i++) {
        const kvq_quantreport_layer *ly = &r->layers[i];
        char name[16];
        snprintf(name, sizeof name, "%d", ly->layer);
        report_row(s, name, ly->key_bits, &ly->keys, &ly->values, ly->ip_relative_error);
    }
    report_row(s, "all", 0, &r->keys, &r->values, r->ip_relative_error);
    char ks[32], vs[32];
    kvs_printf(s, "side tables (rotations, codebooks, centroids): keys %.0f bytes, values %.0f bytes; "
                  "%s %s, %s %s at %d tokens",
               r->keys.side_bytes, r->values.side_bytes, kvq_metrics[KVQ_M_KEY_BITS_SIDE].name,
               kvq_metric_fmt(KVQ_M_KEY_BITS_SIDE, r->keys.bits_per_coord_with_side, ks, sizeof ks),
               kvq_metrics[KVQ_M_VALUE_BITS_SIDE].name,
               kvq_metric_fmt(KVQ_M_VALUE_BITS_SIDE, r->values.bits_per_coord_with_side, vs, sizeof vs), r->n_tokens);
    const kvq_metric *b = &kvq_metrics[KVQ_M_KEY_BITS], *m = &kvq_metrics[KVQ_M_KEY_REL_MSE],
                     *q = &kvq_metrics[KVQ_M_QK_ERROR];
    kvs_printf(s, "(%s in %s = %s; %s = %s; %s = %s)", b->name, b->unit, b->formula, m->name, m->formula, q->name,
               q->formula);
}

static void record_run(kvs_session *s, const kvq_config *cfg, const kvq_artifacts *art, const kvq_quantreport *q,
                       int n_layers)
{
    kvs_run r;
    kvs_run_init(&r, cfg, art, "encode");
    r.key_bits = q->keys.bits_per_coord;
    r.value_bits = q->values.bits_per_coord;
    r.key_rel_mse = q->keys.relative_mse;
    r.value_rel_mse = q->values.relative_mse;
    r.key_cosine = q->keys.cosine;
    r.value_cosine = q->values.cosine;
    r.qk_error = q->ip_relative_error;
    const double held = q->keys.bytes + q->values.bytes;
    r.compression = held > 0 ? 2.0 * (q->keys.coords + q->values.coords) / held : NAN;
    // per-layer arrays are indexed by trace layer; layers left out are NAN
    r.n_layers = n_layers < KVQ_MAX_LAYERS ? n_layers : KVQ_MAX_LAYERS;
    for (int l = 0; l < r.n_layers; l++) r.layer_key_rel_mse[l] = r.layer_key_cosine[l] = NAN;
    for (int i = 0; i < q->n_layers; i++) {
        r.layer_key_rel_mse[q->layers[i].layer] = q->layers[i].keys.relative_mse;
        r.layer_key_cosine[q->layers[i].layer] = q->layers[i].keys.cosine;
    }
    kvs_session_add_run(s, &r);
}

int kvs_cmd_quantize(kvs_session *s, kvs_args *a)
{
    const bool json = kvs_opt_flag(a, "json") || s->json;
    kvq_quantreport_opts o;
    kvq_quantreport_opts_default(&o);
    o.max_tokens = (int)kvs_opt_int(a, "tokens", 0);
    o.queries_per_head = (int)kvs_opt_int(a, "queries", o.queries_per_head);
    o.max_pairs = kvs_opt_int(a, "pairs", o.max_pairs);
    const char *layers = kvs_opt_str(a, "layers", NULL);
    const bool bits_given = kvs_opt_given(a, "bits");
    kvq_config cfg = s->cfg;
    if (kvs_args_apply_config(s, a, &cfg) || kvs_args_check_unused(s, a, "quantize")) return -1;
    if (a->npos > 1) return kvs_errorf(s, "quantize: expected at most one TRACE, got %d", a->npos);
    const kvq_method *m;
    if (kvq_method_lookup(cfg.method, &m)) return kvs_errorf(s, "quantize: %s", kvq_last_error());
    const char *why = kvq_config_fit_bits(&cfg, bits_given, NULL);   // as `method NAME` does
    if (!why) why = kvq_config_check(&cfg);
    if (why) return kvs_errorf(s, "quantize: %s", why);
    if (kvs_args_trace(s, a)) return -1;
    const kvq_trace *t = s->trace;
    bool mask[KVQ_MAX_LAYERS];
    if (layers) {
        if (parse_layers(s, layers, t->n_layers, mask)) return -1;
        o.layer_mask = mask;
    }

    kvq_artifacts *own = NULL;
    const kvq_artifacts *art = s->art;
    if (cfg.artifacts[0] && strcmp(cfg.artifacts, s->art_dir)) {   // an explicit directory wins
        if (kvq_artifacts_load_for_trace(cfg.artifacts, t, &own))
            return kvs_errorf(s, "quantize: %s", kvq_last_error());
        art = own;
    }
    kvq_quantreport *r = calloc(1, sizeof *r);
    if (!r) {
        kvq_artifacts_free(own);
        return kvs_errorf(s, "quantize: out of memory");
    }
    kvs_tty_progress tp;
    kvq_progress *prog = kvs_tty_progress_begin(&tp, s, "quantize");
    // Parallelism is ours (kv heads on the pool); OpenBLAS's workers would
    // spin in sched_yield beside it on every small rotation sgemm.
    const int blas_threads = kvq_blas_threads_set(1);
    kvq_status st = kvq_quantreport_run(t, &cfg, art, &o, prog, r);
    kvq_blas_threads_set(blas_threads);
    kvs_tty_progress_end(&tp);
    if (st) {
        kvq_artifacts_free(own);
        free(r);
        return kvs_errorf(s, "quantize: %s", kvq_last_error());
    }
    if (json) {
        json_t *root = report_json(t, &cfg, art, r);
        char *txt = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        if (txt) kvs_puts(s, txt);
        free(txt);
        json_decref(root);
    } else {
        report_text(s, t, &cfg, art, r);
    }
    record_run(s, &cfg, art, r, t->n_layers);
    kvq_artifacts_free(own);
    free(r);
    return 0;
}
