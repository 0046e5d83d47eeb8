// cmd_ui.c — studio actions as commands: view, run, replay/play, pause,
// step, export. `run`, `replay` and `export` also work in batch (scripts,
// stdin); the rest need the studio (views/tui.h) and say why in batch.
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "calib/calib.h"
#include "cmds.h"
#include "quantreport.h"
#include "safetensors.h"
#include "tui.h"

// Attention-output error is measured on this many query rows (keys
// quantized, values exact): enough for a stable figure, cheap on 1k tokens.
#define RUN_ATTN_QUERIES 64

int kvs_run_measure(const kvq_trace *t, const kvq_config *cfg, const kvq_artifacts *art,
                    kvq_progress *p, kvs_run *r)
{
    kvq_quantreport *q = calloc(1, sizeof *q);
    if (!q) return kvq_error(KVQ_ERR_NOMEM, "run: out of memory");
    kvq_status st = kvq_quantreport_run(t, cfg, art, NULL, p, q);
    if (st) {
        free(q);
        return st;
    }
    kvs_run_init(r, cfg, art, "encode");
    r->key_bits = q->keys.bits_per_coord;
    r->value_bits = q->values.bits_per_coord;
    r->key_rel_mse = q->keys.relative_mse;
    r->value_rel_mse = q->values.relative_mse;
    r->key_cosine = q->keys.cosine;
    r->value_cosine = q->values.cosine;
    r->qk_error = q->ip_relative_error;
    double held = q->keys.bytes + q->values.bytes, fp16 = 2 * (q->keys.coords + q->values.coords);
    r->compression = held > 0 ? fp16 / held : NAN;
    r->n_layers = q->n_layers;
    for (int i = 0; i < q->n_layers && i < KVQ_MAX_LAYERS; i++) {
        r->layer_key_rel_mse[i] = q->layers[i].keys.relative_mse;
        r->layer_key_cosine[i] = q->layers[i].keys.cosine;
    }
    free(q);
    if (t->n_queries > 0 && !(p && p->fn && p->fn(1.0, "attention", -1, p->user))) {
        kvq_calib_opts o;
        kvq_calib_opts_default(&o);
        o.n_queries = RUN_ATTN_QUERIES;
        kvq_attn_eval *ev = calloc(1, sizeof *ev);
        if (ev && kvq_calib_eval_keys(t, cfg, art, &o, ev) == KVQ_OK) r->attn_key_error = ev->attn_rel_error;
        free(ev);
        kvq_clear_error();   // a missing attention figure is not a failed run
    }
    return KVQ_OK;
}

void kvs_run_summary(const kvs_run *r, char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n, "%s ", r->label);
    for (int i = 0; i < kvs_run_n_fields() && len < n; i++) {
        double v = kvs_run_field(r, i);
        if (!isfinite(v)) continue;   // what this kind of run does not measure
        char one[64];
        kvq_metric_id id = kvs_run_field_metric(i);
        len += (size_t)snprintf(buf + len, n - len, " %s %s", kvq_metrics[id].name, kvq_metric_fmt_unit(id, v, one, sizeof one));
    }
}

int kvs_cmd_view(kvs_session *s, kvs_args *a)
{
    if (a->npos != 1 || a->nopt) return kvs_errorf(s, "view: expected one NAME (usage: view NAME)");
    return kvs_studio_view(s, a->pos[0]);
}

int kvs_cmd_run(kvs_session *s, kvs_args *a)
{
    if (a->npos || a->nopt) return kvs_errorf(s, "run: takes no arguments (set the config first)");
    if (s->ui) return kvs_studio_run(s);   // worker thread, progress in the status line
    if (!s->trace) return kvs_errorf(s, "run: no trace loaded (load PATH first)");
    kvs_run r;
    if (kvs_run_measure(s->trace, &s->cfg, s->art, NULL, &r)) return kvs_errorf(s, "run: %s", kvq_last_error());
    kvs_session_add_run(s, &r);
    char line[1024];
    kvs_run_summary(&r, line, sizeof line);
    kvs_printf(s, "run %d: %s", s->n_runs, line);
    return 0;
}

int kvs_cmd_replay(kvs_session *s, kvs_args *a)
{
    bool ok = true;
    long speed = 0;
    if (a->npos > 1 || a->nopt) return kvs_errorf(s, "replay: expected at most one SPEED (tokens per tick)");
    if (a->npos == 1) {
        char *end;
        speed = strtol(a->pos[0], &end, 10);
        ok = *end == 0 && speed >= 1 && speed <= 4096;
    }
    if (!ok) return kvs_errorf(s, "replay: SPEED '%s' is not an integer in 1..4096", a->pos[0]);
    if (s->ui) return kvs_studio_play(s, (int)speed);
    // batch: no dashboard to pace, so the replay runs to the end at full speed
    if (!s->trace) return kvs_errorf(s, "replay: no trace loaded (`load TRACE` first)");
    return kvs_replay_batch(s);
}

int kvs_cmd_pause(kvs_session *s, kvs_args *a)
{
    if (a->npos || a->nopt) return kvs_errorf(s, "pause: takes no arguments");
    return kvs_studio_pause(s);
}

int kvs_cmd_step(kvs_session *s, kvs_args *a)
{
    long n = 1;
    if (a->npos > 1 || a->nopt) return kvs_errorf(s, "step: expected at most one N (tokens)");
    if (a->npos == 1) {
        char *end;
        n = strtol(a->pos[0], &end, 10);
        if (*end || n < 1 || n > 1 << 20) return kvs_errorf(s, "step: N '%s' is not a positive integer", a->pos[0]);
    }
    return kvs_studio_step(s, (int)n);
}

// ---- export ----
static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static int export_json(kvs_session *s, FILE *f)
{
    json_t *runs = json_array();
    for (int i = 0; i < s->n_runs; i++) {
        const kvs_run *r = &s->runs[i];
        json_t *o = json_object();
        json_object_set_new(o, "label", json_string(r->label));
        json_object_set_new(o, "method", json_string(r->cfg.method));
        json_object_set_new(o, "bits", json_integer(r->cfg.bits));
        json_object_set_new(o, "value_bits", json_integer(r->cfg.value_bits));
        json_object_set_new(o, "source", json_string(r->source));
        for (int k = 0; k < kvs_run_n_fields(); k++)
            json_object_set_new(o, kvq_metrics[kvs_run_field_metric(k)].json, num(kvs_run_field(r, k)));
        json_t *pl = json_array();
        for (int l = 0; l < r->n_layers; l++)
            json_array_append_new(pl, json_pack("{s:i, s:o, s:o}", "layer", l, kvq_metrics[KVQ_M_KEY_REL_MSE].json,
                                                num(r->layer_key_rel_mse[l]), kvq_metrics[KVQ_M_KEY_COSINE].json,
                                                num(r->layer_key_cosine[l])));
        json_object_set_new(o, "per_layer", pl);
        json_t *cfg = json_object();
        const char *const *names = kvq_config_field_names();
        for (int k = 0; names[k]; k++) {
            char v[1024];
            if (!kvq_config_get(&r->cfg, names[k], v, sizeof v)) json_object_set_new(cfg, names[k], json_string(v));
        }
        json_object_set_new(o, "config", cfg);
        json_array_append_new(runs, o);
    }
    json_t *root = json_pack("{s:s, s:s, s:o}", "kvstudio", KVQ_VERSION, "trace",
                             s->trace ? s->trace->path : "", "runs", runs);
    int rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
    fputc('\n', f);
    json_decref(root);
    return rc;
}

static void csv_num(FILE *f, double v) { isfinite(v) ? fprintf(f, ",%.8g", v) : fputs(",", f); }

// CSV fields: label in quotes (quotes doubled), NaN as an empty cell.
static void csv_str(FILE *f, const char *v)
{
    fputc('"', f);
    for (; *v; v++) {
        if (*v == '"') fputc('"', f);
        fputc(*v, f);
    }
    fputc('"', f);
}

static int export_csv(kvs_session *s, FILE *f)
{
    fputs("run,label,source,method,bits,value_bits", f);
    for (int k = 0; k < kvs_run_n_fields(); k++) fprintf(f, ",%s", kvq_metrics[kvs_run_field_metric(k)].json);
    fputc('\n', f);
    for (int i = 0; i < s->n_runs; i++) {
        const kvs_run *r = &s->runs[i];
        fprintf(f, "%d,", i + 1);
        csv_str(f, r->label);
        fprintf(f, ",%s,%s,%d,%d", r->source, r->cfg.method, r->cfg.bits, r->cfg.value_bits);
        for (int k = 0; k < kvs_run_n_fields(); k++) csv_num(f, kvs_run_field(r, k));
        fputc('\n', f);
    }
    return ferror(f) ? -1 : 0;
}

int kvs_cmd_export(kvs_session *s, kvs_args *a)
{
    bool svg = a->npos >= 1 && !strcmp(a->pos[0], "svg");
    if (a->npos < 2 || a->npos > (svg ? 3 : 2) || a->nopt)
        return kvs_errorf(s, "export: expected KIND PATH (usage: export json|csv PATH, export svg PATH [PLOT])");
    const char *kind = a->pos[0], *path = a->pos[1];
    if (svg) {
        char what[96];
        if (kvs_plot_export_svg(s, path, a->npos == 3 ? a->pos[2] : NULL, what, sizeof what)) return -1;
        kvs_printf(s, "wrote %s to %s%s", what, path,
                   a->npos == 3 ? "" : " (export svg PATH rd|compression|allocation|kmeans picks another)");
        return 0;
    }
    bool json = !strcmp(kind, "json");
    if (!json && strcmp(kind, "csv")) return kvs_errorf(s, "export: unknown kind '%s' (expected json, csv or svg)", kind);
    if (s->n_runs == 0) return kvs_errorf(s, "export: the run history is empty (`run` first)");
    kvq_atomic_file af;
    if (kvq_atomic_open(&af, path)) return kvs_errorf(s, "export: %s", kvq_last_error());
    // runs are appended on the thread running commands, so no lock here (a
    // studio worker may hold s->lock for minutes while it reads the trace)
    int rc = json ? export_json(s, af.fp) : export_csv(s, af.fp);
    int n = s->n_runs;
    if (rc) {
        kvq_atomic_abort(&af);
        return kvs_errorf(s, "export: %s: write failed", path);
    }
    if (kvq_atomic_commit(&af)) return kvs_errorf(s, "export: %s", kvq_last_error());
    kvs_printf(s, "wrote %d run%s to %s", n, n == 1 ? "" : "s", path);
    return 0;
}
