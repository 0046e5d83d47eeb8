// test_metrics.c — one vocabulary (issue 17): docs/METRICS.md lists exactly
// the metrics table, names/JSON keys are unique, NaN prints as n/a, labels
// tell every configuration apart, fixed-width methods take their width, and
// a version-1 run history (old keys) still loads with each figure under the
// metric it really was.
//
// `build/tests/test_metrics --write` rewrites the table in docs/METRICS.md
// from engine/metrics.c (between the BEGIN/END markers).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "artifacts.h"
#include "label.h"
#include "metrics.h"
#include "session.h"
#include "test_util.h"

#define DOC "docs/METRICS.md"
#define BEGIN "<!-- BEGIN metrics table (generated from engine/metrics.c: build/tests/test_metrics --write) -->"
#define END "<!-- END metrics table -->"

// Markdown cell text: '|' (norms in the formulas) escaped so the table holds.
static const char *cell(const char *in, char *out, size_t n)
{
    size_t k = 0;
    for (; *in && k + 3 < n; in++) {
        if (*in == '|') out[k++] = '\\';
        out[k++] = *in;
    }
    out[k] = 0;
    return out;
}

// One row of the doc's table for metric m.
static void doc_row(const kvq_metric *m, char *buf, size_t n)
{
    char a[128], f[512], o[512];
    snprintf(buf, n, "| %s | `%s` | %s%s%s | %s | %s | %s |\n", cell(m->name, a, sizeof a), m->json,
             m->report[0] ? "`" : "", m->report[0] ? m->report : "-", m->report[0] ? "`" : "",
             m->unit[0] ? m->unit : "-", cell(m->formula, f, sizeof f), cell(m->over, o, sizeof o));
}

static char *doc_table(void)
{
    size_t cap = 1 << 16, len = 0;
    char *t = malloc(cap);
    len += (size_t)snprintf(t + len, cap - len, "| name | JSON key | in nested reports | unit | formula | over |\n"
                                                "|---|---|---|---|---|---|\n");
    for (int i = 0; i < KVQ_M_COUNT; i++) {
        char row[2048];
        doc_row(&kvq_metrics[i], row, sizeof row);
        len += (size_t)snprintf(t + len, cap - len, "%s", row);
    }
    return t;
}

static void test_doc_matches_table(void **st)
{
    (void)st;
    size_t n;
    char *doc = tu_slurp(DOC, &n);
    assert_non_null(doc);
    char *b = strstr(doc, BEGIN), *e = strstr(doc, END);
    assert_non_null(b);
    assert_non_null(e);
    b += strlen(BEGIN) + 1;
    char *want = doc_table();
    size_t wl = strlen(want);
    if ((size_t)(e - b) != wl || memcmp(b, want, wl))
        fail_msg("%s: the metrics table differs from engine/metrics.c (run build/tests/test_metrics --write)", DOC);
    free(want);
    free(doc);
}

static void test_names_and_keys_unique(void **st)
{
    (void)st;
    for (int i = 0; i < KVQ_M_COUNT; i++) {
        const kvq_metric *a = &kvq_metrics[i];
        assert_int_equal(a->id, i);   // designated initializers in enum order
        assert_non_null(a->name);
        assert_non_null(a->formula);
        assert_true(kvq_metric_by_json(a->json) == a);
        for (int j = i + 1; j < KVQ_M_COUNT; j++) {
            assert_string_not_equal(a->name, kvq_metrics[j].name);
            assert_string_not_equal(a->json, kvq_metrics[j].json);
        }
    }
    // the two attention errors are two metrics with two names
    assert_string_not_equal(kvq_metrics[KVQ_M_ATTN_KEY_ERROR].name, kvq_metrics[KVQ_M_OUTPUT_ERROR].name);
    // one KL unit
    assert_string_equal(kvq_metrics[KVQ_M_ATTN_KL].unit, "bits");
    assert_string_equal(kvq_metrics[KVQ_M_NEXT_TOKEN_KL].unit, "bits/token");
}

static void test_nan_prints_na(void **st)
{
    (void)st;
    char b[64];
    assert_string_equal(kvq_metric_fmt(KVQ_M_KEY_COSINE, NAN, b, sizeof b), "n/a");
    assert_string_equal(kvq_metric_fmt_named(KVQ_M_KEY_COSINE, NAN, b, sizeof b), "key cosine n/a");
    assert_string_equal(kvq_metric_fmt(KVQ_M_KEY_COSINE, 0.98374, b, sizeof b), "0.9837");
    assert_string_equal(kvq_metric_fmt_unit(KVQ_M_ATTN_KL, 0.5, b, sizeof b), "0.50000 bits");
    assert_string_equal(kvq_metric_fmt_unit(KVQ_M_COMPRESSION, 3.5, b, sizeof b), "3.50x");
}

// Every config field changed alone gives a label of its own.
static void test_labels_differ(void **st)
{
    (void)st;
    kvq_config base;
    kvq_config_default(&base);
    char lb[256], lx[256];
    kvq_config_label(&base, "", lb, sizeof lb);
    assert_string_equal(lb, "turboquant_mse k3/v2");
    const char *const *names = kvq_config_field_names();
    static const struct { const char *field, *value; } change[] = {
        {"method", "q8_0"}, {"bits", "4"}, {"value_bits", "4"}, {"value_method", "q4_0"}, {"num_residuals", "3"},
        {"use_hadamard", "false"}, {"codebook", "uniform"}, {"smooth_factors", "a.npy"}, {"rotations", "r.npy"},
        {"artifacts", "art/"}, {"bit_allocation", "1,2,3,3,3,3"}, {"outlier_bits", "8"}, {"outlier_channels", "48"},
        {"sketch_dim", "64"}, {"num_clusters", "32"}, {"num_subspaces", "16"}, {"num_centroids", "128"},
        {"use_fused_sdpa", "false"}, {"query_int8", "true"}, {"signal_bits", "5"}, {"noise_bits", "2"}, {"seed", "7"},
        {"residual_length", "32"}, {"sink_tokens", "4"}, {"protect_layers", "1"}, {"sliding_window", "256"},
        {"max_seq_len", "4096"},
    };
    int n_fields = 0;
    for (; names[n_fields]; n_fields++) {
        bool listed = false;
        for (size_t k = 0; k < sizeof change / sizeof change[0]; k++) listed |= !strcmp(change[k].field, names[n_fields]);
        if (!listed) fail_msg("config field %s has no label test", names[n_fields]);
    }
    char seen[64][256];
    int ns = 0;
    snprintf(seen[ns++], 256, "%s", lb);
    for (size_t k = 0; k < sizeof change / sizeof change[0]; k++) {
        kvq_config c = base;
        assert_int_equal(kvq_config_set(&c, change[k].field, change[k].value), KVQ_OK);
        kvq_config_label(&c, "", lx, sizeof lx);
        for (int j = 0; j < ns; j++)
            if (!strcmp(seen[j], lx)) fail_msg("%s=%s: label '%s' shared with another config", change[k].field,
                                               change[k].value, lx);
        snprintf(seen[ns++], 256, "%s", lx);
    }
    // the example: the allocation with its mean width
    kvq_config c = base;
    snprintf(c.method, sizeof c.method, "ratequant");
    kvq_config_set(&c, "bit_allocation", "1,2,3,3,3,3");
    kvq_config_label(&c, "", lx, sizeof lx);
    assert_string_equal(lx, "ratequant k2.5/v2 alloc 1/2/3/3/3/3");
    // artifacts: the id tells two calibrations apart
    kvq_config_label(&c, "0123abcd", lx, sizeof lx);
    assert_non_null(strstr(lx, " art=0123abcd"));
    kvq_config_label(&base, "0123abcd", lx, sizeof lx);   // turboquant_mse reads no artifacts
    assert_string_equal(lx, "turboquant_mse k3/v2");
    // truncation is marked, never silent
    char small[24];
    kvq_config_label(&c, "", small, sizeof small);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_string_equal(small + sizeof small - 4, "...");
}

static void test_fit_bits(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    bool changed;
    snprintf(c.method, sizeof c.method, "fp16");
    assert_null(kvq_config_fit_bits(&c, false, &changed));   // was "bits: 3 out of range for fp16"
    assert_int_equal(c.bits, 16);
    assert_true(changed);
    snprintf(c.method, sizeof c.method, "q4_0");
    c.bits = 3;
    const char *why = kvq_config_fit_bits(&c, true, &changed);
    assert_non_null(why);
    assert_non_null(strstr(why, "q4_0 has a fixed width of 4 bits"));
    c.bits = 4;
    assert_null(kvq_config_fit_bits(&c, true, &changed));
    assert_false(changed);
    snprintf(c.method, sizeof c.method, "turboquant_mse");
    c.bits = 16;
    assert_null(kvq_config_fit_bits(&c, false, &changed));   // clamped into 1..4
    assert_true(c.bits <= 8 && changed);
}

static void test_artifacts_id(void **st)
{
    (void)st;
    kvq_artifacts *a, *b;
    assert_int_equal(kvq_artifacts_new(&a), KVQ_OK);
    assert_int_equal(kvq_artifacts_new(&b), KVQ_OK);
    float x[4] = {1, 2, 3, 4};
    int64_t sh[1] = {4};
    kvq_artifacts_put(a, "m.t", x, 1, sh);
    x[3] = 5;
    kvq_artifacts_put(b, "m.t", x, 1, sh);
    char ia[16], ib[16], in[16];
    kvq_artifacts_id(a, ia, sizeof ia);
    kvq_artifacts_id(b, ib, sizeof ib);
    kvq_artifacts_id(NULL, in, sizeof in);
    assert_int_equal(strlen(ia), 8);
    assert_string_not_equal(ia, ib);
    assert_string_equal(in, "");
    kvq_artifacts_free(a);
    kvq_artifacts_free(b);
}

// A runs.json written before this change: v1 keys, and "attn_rel_error" /
// "ip_rel_error" / "compression" meaning different metrics for lab runs and
// replays (" (cache)" labels).
static const char v1_history[] =
    "{\"format\": \"kvstudio-runs\", \"version\": 1, \"runs\": ["
    "{\"label\": \"turboquant_mse k3/v2\", \"config\": {\"method\": \"turboquant_mse\", \"bits\": \"3\"},"
    " \"key_bits\": 3.125, \"value_bits\": 2.125, \"key_rel_mse\": 0.033, \"value_rel_mse\": 0.115,"
    " \"key_cosine\": 0.9835, \"value_cosine\": 0.941, \"ip_rel_error\": 0.067, \"attn_rel_error\": 0.0217,"
    " \"compression\": 6.1, \"encode_vps\": null, \"layer_key_rel_mse\": [0.03, 0.04],"
    " \"layer_key_cosine\": [0.98, 0.99]},"
    "{\"label\": \"turboquant_mse k3/v2 (cache)\", \"config\": {\"method\": \"turboquant_mse\", \"sink_tokens\": \"4\"},"
    " \"key_bits\": 3.125, \"value_bits\": 2.125, \"key_rel_mse\": 0.033, \"value_rel_mse\": null,"
    " \"key_cosine\": 0.9837, \"value_cosine\": null, \"ip_rel_error\": 0.0128, \"attn_rel_error\": 0.3525,"
    " \"compression\": 2.92, \"encode_vps\": 817101, \"layer_key_rel_mse\": [null], \"layer_key_cosine\": [0.98]}]}";

static void test_history_v1_loads(void **st)
{
    (void)st;
    char dir[128], path[200];
    assert_int_equal(tu_tmpdir_new(dir, sizeof dir, "metrics"), 0);
    snprintf(path, sizeof path, "%s/runs.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(v1_history, f);
    fclose(f);
    kvs_session *s = calloc(1, sizeof *s);
    kvs_session_init(s);
    assert_int_equal(kvs_session_history_open(s, path), 2);
    const kvs_run *lab = &s->runs[0], *rep = &s->runs[1];
    assert_string_equal(lab->source, "encode");
    assert_true(fabs(lab->attn_key_error - 0.0217) < 1e-12);
    assert_true(isnan(lab->output_error));
    assert_true(fabs(lab->qk_error - 0.067) < 1e-12);
    assert_true(fabs(lab->compression - 6.1) < 1e-12);
    assert_int_equal(lab->n_layers, 2);
    assert_string_equal(rep->source, "replay");
    assert_true(fabs(rep->output_error - 0.3525) < 1e-12);   // the replay's figure is an output error
    assert_true(isnan(rep->attn_key_error));
    assert_true(fabs(rep->probe_error - 0.0128) < 1e-12);
    assert_true(fabs(rep->cache_compression - 2.92) < 1e-12);
    assert_true(fabs(rep->compression - 32.0 / 5.25) < 1e-9);
    assert_string_equal(rep->label, "turboquant_mse k3/v2 sink_tokens=4");   // relabelled from its config
    // saved again in version 2 and read back: the same figures under the new keys
    pthread_mutex_lock(&s->lock);
    assert_int_equal(kvs_session_history_save_locked(s), 0);
    pthread_mutex_unlock(&s->lock);
    size_t n;
    char *txt = tu_slurp(path, &n);
    assert_non_null(strstr(txt, "\"version\": 2"));
    assert_non_null(strstr(txt, "\"attention_key_error\""));
    assert_non_null(strstr(txt, "\"output_error\""));
    assert_null(strstr(txt, "\"attn_rel_error\""));
    free(txt);
    kvs_session *s2 = calloc(1, sizeof *s2);
    kvs_session_init(s2);
    assert_int_equal(kvs_session_history_open(s2, path), 2);
    assert_true(fabs(s2->runs[1].output_error - 0.3525) < 1e-12);
    assert_true(fabs(s2->runs[0].attn_key_error - 0.0217) < 1e-12);
    assert_string_equal(s2->runs[1].label, rep->label);
    assert_true(fabs(s2->runs[0].layer_key_cosine[1] - 0.99) < 1e-12);
    kvs_session_free(s2);
    kvs_session_free(s);
    free(s2);
    free(s);
    tu_rm_rf(dir);
}

static int write_doc(void)
{
    size_t n;
    char *doc = tu_slurp(DOC, &n);
    if (!doc) return fprintf(stderr, "%s: cannot read\n", DOC), 1;
    char *b = strstr(doc, BEGIN), *e = strstr(doc, END);
    if (!b || !e) return fprintf(stderr, "%s: markers missing\n", DOC), 1;
    b += strlen(BEGIN) + 1;
    char *t = doc_table();
    FILE *f = fopen(DOC ".tmp", "w");
    if (!f) return 1;
    fwrite(doc, 1, (size_t)(b - doc), f);
    fputs(t, f);
    fputs(e, f);
    fclose(f);
    free(t);
    free(doc);
    return rename(DOC ".tmp", DOC) ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--write")) return write_doc();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc_matches_table), cmocka_unit_test(test_names_and_keys_unique),
        cmocka_unit_test(test_nan_prints_na),     cmocka_unit_test(test_labels_differ),
        cmocka_unit_test(test_fit_bits),          cmocka_unit_test(test_artifacts_id),
        cmocka_unit_test(test_history_v1_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
