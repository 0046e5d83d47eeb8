// test_arch.c — the architectures of the traits table against transformers:
// the tiny checkpoints of tests/data/models (make_refs.py) at every chunking
// (token-by-token decode included), per-layer sliding-window caches and their
// memory, window patterns, RoPE frequencies and config errors.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "model.h"
#include "safetensors.h"

#define MODELS "tests/data/models"

static json_t *g_refs;   // refs.json "models"
static int32_t *g_tok;
static int g_n;

static int setup(void **st)
{
    (void)st;
    json_error_t je;
    json_t *root = json_load_file(MODELS "/refs.json", 0, &je);
    if (!root) {
        fprintf(stderr, "refs.json:%d: %s\n", je.line, je.text);
        return -1;
    }
    g_refs = json_incref(json_object_get(root, "models"));
    json_decref(root);
    if (kvq_tokens_load(MODELS "/tokens.txt", &g_tok, &g_n)) {
        fprintf(stderr, "tokens: %s\n", kvq_last_error());
        return -1;
    }
    return g_refs ? 0 : -1;
}

static int teardown(void **st)
{
    (void)st;
    json_decref(g_refs);
    free(g_tok);
    return 0;
}

static kvq_model *load(const char *name)
{
    char dir[256];
    snprintf(dir, sizeof dir, MODELS "/%s", name);
    kvq_model *m = NULL;
    if (kvq_model_load(dir, &m)) fprintf(stderr, "%s: %s\n", dir, kvq_last_error());
    assert_non_null(m);
    return m;
}

// ppl with the fp16 cache in chunks of `chunk` against transformers' NLL.
static void check_chunk(const char *name, int chunk)
{
    kvq_model *m = load(name);
    json_t *nll = json_object_get(json_object_get(g_refs, name), "nll");
    assert_int_equal((int)json_array_size(nll), g_n - 1);
    kvq_config c;
    kvq_model_cfg_reference(&c);
    double *nats = malloc(sizeof(double) * (size_t)g_n);
    assert_non_null(nats);
    kvq_ppl_result r;
    assert_int_equal(kvq_model_ppl_tokens(m, &c, NULL, g_tok, g_n, chunk, NULL, nats, &r), KVQ_OK);
    double sum = 0, worst = 0;
    for (int i = 0; i < g_n - 1; i++) {
        double ref = json_real_value(json_array_get(nll, (size_t)i));
        sum += ref;
        worst = fmax(worst, fabs(nats[i] - ref));
    }
    double dbits = r.bits_per_token - sum / (g_n - 1) / M_LN2;
    printf("  %-14s chunk %2d: mean %+.5f bits/token, worst token %.4f nats\n", name, chunk, dbits, worst);
    assert_true(fabs(dbits) <= 0.005);
    assert_true(worst <= 0.02);
    free(nats);
    kvq_model_free(m);
}

// Sliding layers are attended token by token once a chunk reaches past the
// window: chunks below, at and past the window, and decode steps, agree.
static void test_chunkings(void **st)
{
    (void)st;
    static const char *names[] = {"mistral", "gemma2", "gemma3", "phi3-longrope", "qwen3"};
    static const int chunks[] = {1, 5, 16, 33, 128};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        for (size_t j = 0; j < sizeof chunks / sizeof chunks[0]; j++) check_chunk(names[i], chunks[j]);
}

// A sliding layer's cache holds its window only, and its bytes say so.
static void test_window_memory(void **st)
{
    (void)st;
    kvq_model *m = load("gemma2");
    assert_int_equal(m->cfg.layer_window[0], 16);
    assert_int_equal(m->cfg.layer_window[1], 0);
    kvq_config c;
    kvq_model_cfg_reference(&c);
    c.max_seq_len = 0;
    kvq_runner *r;
    assert_int_equal(kvq_runner_new(m, &c, NULL, 128, &r), KVQ_OK);
    assert_int_equal(kvq_runner_forward(r, g_tok, g_n, false, NULL), KVQ_OK);
    kvq_cache_set *cs = kvq_runner_caches(r);
    assert_int_equal(kvq_cache_len(cs->layers[0]), g_n);
    assert_int_equal(kvq_cache_visible(cs->layers[0]), 16);
    assert_int_equal(kvq_cache_visible(cs->layers[1]), g_n);
    size_t b0 = kvq_cache_bytes(cs->layers[0]), b1 = kvq_cache_bytes(cs->layers[1]);
    printf("  gemma2 after %d tokens: sliding layer %zu bytes, global layer %zu bytes\n", g_n, b0, b1);
    assert_true(b0 < b1);
    // A config window smaller than the model's wins; a larger one does not widen it.
    kvq_runner_free(r);
    c.sliding_window = 8;
    assert_int_equal(kvq_runner_new(m, &c, NULL, 128, &r), KVQ_OK);
    assert_int_equal(kvq_runner_forward(r, g_tok, g_n, false, NULL), KVQ_OK);
    cs = kvq_runner_caches(r);
    assert_int_equal(kvq_cache_visible(cs->layers[0]), 8);
    assert_int_equal(kvq_cache_visible(cs->layers[1]), 8);
    kvq_runner_free(r);
    c.sliding_window = 40;
    assert_int_equal(kvq_runner_new(m, &c, NULL, 128, &r), KVQ_OK);
    assert_int_equal(kvq_runner_forward(r, g_tok, g_n, false, NULL), KVQ_OK);
    cs = kvq_runner_caches(r);
    assert_int_equal(kvq_cache_visible(cs->layers[0]), 16);
    assert_int_equal(kvq_cache_visible(cs->layers[1]), 40);
    kvq_runner_free(r);
    kvq_model_free(m);
}

static const char *cfg_dir(const char *json)
{
    static char dir[64];
    strcpy(dir, "/tmp/kvq_arch_XXXXXX");
    assert_non_null(mkdtemp(dir));
    char p[128];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    return dir;
}

static void rm_dir(const char *dir)
{
    char p[128];
    snprintf(p, sizeof p, "%s/config.json", dir);
    remove(p);
    remove(dir);
}

#define BASE "\"vocab_size\": 64, \"hidden_size\": 64, \"intermediate_size\": 128, \"num_attention_heads\": 2, "

// Which layers slide, from layer_types or the architecture's pattern.
static void test_window_patterns(void **st)
{
    (void)st;
    static const struct { const char *json; int n; int want[8]; } cases[] = {
        {"{\"model_type\": \"gemma3_text\", " BASE "\"num_hidden_layers\": 7, \"sliding_window\": 4}", 7,
         {4, 4, 4, 4, 4, 0, 4}},
        {"{\"model_type\": \"gemma3_text\", " BASE "\"num_hidden_layers\": 4, \"sliding_window\": 4,"
         " \"sliding_window_pattern\": 2}", 4, {4, 0, 4, 0}},
        {"{\"model_type\": \"gemma2\", " BASE "\"num_hidden_layers\": 4, \"sliding_window\": 8}", 4, {8, 0, 8, 0}},
        {"{\"model_type\": \"mistral\", " BASE "\"num_hidden_layers\": 3, \"sliding_window\": 5}", 3, {5, 5, 5}},
        {"{\"model_type\": \"mistral\", " BASE "\"num_hidden_layers\": 3, \"sliding_window\": null}", 3, {0, 0, 0}},
        {"{\"model_type\": \"qwen2\", " BASE "\"num_hidden_layers\": 2, \"sliding_window\": 5,"
         " \"use_sliding_window\": false}", 2, {0, 0}},
        {"{\"model_type\": \"qwen2\", " BASE "\"num_hidden_layers\": 3, \"sliding_window\": 5,"
         " \"use_sliding_window\": true, \"layer_types\": [\"full_attention\", \"sliding_attention\","
         " \"sliding_attention\"]}", 3, {0, 5, 5}},
        {"{\"model_type\": \"llama\", " BASE "\"num_hidden_layers\": 2, \"sliding_window\": 5}", 2, {0, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = cfg_dir(cases[i].json);
        kvq_model_config c;
        kvq_status s = kvq_model_config_load(dir, &c);
        if (s) fprintf(stderr, "case %zu: %s\n", i, kvq_last_error());
        assert_int_equal(s, KVQ_OK);
        for (int l = 0; l < cases[i].n; l++) {
            if (c.layer_window[l] != cases[i].want[l]) fprintf(stderr, "case %zu layer %d\n", i, l);
            assert_int_equal(c.layer_window[l], cases[i].want[l]);
        }
        rm_dir(dir);
    }
}

// inv_freq of transformers 5.17 (make_refs.py's checkpoints, the rotary
// modules' buffers): yarn (factor 4, original 32, theta 1e4, head_dim 64) and
// Gemma3's global linear (factor 2, theta 1e6).
static const double HF_YARN[32] = {
    1.0, 0.656157434, 0.42175597, 0.263560325, 0.158113882, 0.088926509, 0.0444569848, 0.0333380364,
    0.0250000004, 0.0187473539, 0.0140585322, 0.0105424123, 0.00790569466, 0.00592843397, 0.00444569858,
    0.00333380373, 0.00249999994, 0.00187473558, 0.00140585331, 0.00105424121, 0.000790569466, 0.000592843455,
    0.000444569858, 0.000333380362, 0.000250000012, 0.000187473546, 0.000140585325, 0.000105424122,
    7.90569466e-05, 5.92843462e-05, 4.44569851e-05, 3.33380376e-05};
static const double HF_GEMMA3_GLOBAL[4] = {0.5, 0.324690819, 0.210848257, 0.136920989};

static void test_rope_frequencies(void **st)
{
    (void)st;
    kvq_model *m = load("llama-yarn");
    assert_int_equal(m->cfg.rope[0].type, KVQ_ROPE_YARN);
    for (int i = 0; i < 32; i++) assert_true(fabs(m->inv_freq[0][i] / HF_YARN[i] - 1) < 1e-6);
    assert_true(fabs(m->cfg.rope[0].attention_factor - 1.138629436111989) < 1e-12);   // 0.1 ln 4 + 1
    kvq_model_free(m);
    m = load("gemma3");
    assert_non_null(m->inv_freq[1]);
    for (int i = 0; i < 4; i++) assert_true(fabs(m->inv_freq[0][i] / HF_GEMMA3_GLOBAL[i] - 1) < 1e-6);
    assert_true(fabs(m->inv_freq[1][1] - 0.749894202) < 1e-8);   // local: theta 1e4, default
    kvq_model_free(m);
    m = load("phi3-longrope");   // top-level original_max_position_embeddings 4096 wins (HF): factor 512/4096 <= 1
    assert_int_equal(m->cfg.rope[0].original_max_position, 4096);
    assert_true(m->cfg.rope[0].attention_factor == 1.0);
    assert_true(fabs(m->inv_freq[0][0] - 0.651498675) < 1e-8);   // 1 / short_factor[0]
    assert_non_null(m->inv_freq_long[0]);
    assert_true(fabs(m->inv_freq_long[0][0] * m->cfg.rope[0].long_factor[0] - 1) < 1e-6);
    kvq_model_free(m);
}

// Each unsupported or malformed architecture field is named in the message.
static void test_bad_configs(void **st)
{
    (void)st;
    static const struct { const char *json, *field; kvq_status want; } cases[] = {
        {"{\"model_type\": \"gemma2\", " BASE "\"num_hidden_layers\": 2, \"sliding_window\": 4,"
         " \"layer_types\": [\"sliding_attention\", \"chunked_attention\"]}", "layer_types[1]", KVQ_ERR_UNSUPPORTED},
        {"{\"model_type\": \"mistral\", " BASE "\"num_hidden_layers\": 2, \"sliding_window\": 4,"
         " \"layer_types\": [\"sliding_attention\"]}", "layer_types", KVQ_ERR_FORMAT},
        {"{\"model_type\": \"phi3\", " BASE "\"num_hidden_layers\": 2, \"rope_parameters\": {\"rope_type\": \"longrope\","
         " \"short_factor\": [1, 1], \"long_factor\": [1, 1]}}", "short_factor", KVQ_ERR_FORMAT},
        {"{\"model_type\": \"phi3\", " BASE "\"num_hidden_layers\": 2, \"partial_rotary_factor\": 0.5}",
         "partial_rotary_factor", KVQ_ERR_UNSUPPORTED},
        {"{\"model_type\": \"gemma2\", " BASE "\"num_hidden_layers\": 2, \"hidden_activation\": \"relu\"}",
         "hidden_activation", KVQ_ERR_UNSUPPORTED},
        {"{\"model_type\": \"gemma2\", " BASE "\"num_hidden_layers\": 2, \"attn_logit_softcapping\": -1}",
         "attn_logit_softcapping", KVQ_ERR_FORMAT},
        {"{\"model_type\": \"llama\", " BASE "\"num_hidden_layers\": 2, \"rope_parameters\": {\"rope_type\": \"yarn\"}}",
         "factor", KVQ_ERR_FORMAT},
        {"{\"model_type\": \"gemma3_text\", " BASE "\"num_hidden_layers\": 2, \"rope_parameters\": {"
         "\"full_attention\": {\"rope_type\": \"ntk\"}}}", "rope_parameters.full_attention", KVQ_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = cfg_dir(cases[i].json);
        kvq_model_config c;
        kvq_status s = kvq_model_config_load(dir, &c);
        if (s != cases[i].want || !strstr(kvq_last_error(), cases[i].field))
            fprintf(stderr, "case %zu: status %d, message: %s\n", i, s, kvq_last_error());
        assert_int_equal(s, cases[i].want);
        assert_non_null(strstr(kvq_last_error(), cases[i].field));
        rm_dir(dir);
    }
}

// kvstudio capture against tools/capture_kv.py (transformers 5.17, fp32 CPU,
// hf_traces/): every layer's keys, values and (scaled) queries within F16
// rounding, the same model_type, layer_windows and soft-cap metadata.
static void test_capture_vs_transformers(void **st)
{
    (void)st;
    static const char *names[] = {"gemma2", "gemma3", "mistral", "phi3"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        kvq_model *m = load(names[i]);
        kvq_config c;
        kvq_model_cfg_reference(&c);
        char ours[64] = "/tmp/kvq_arch_cap_XXXXXX", hf[128];
        int fd = mkstemp(ours);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(kvq_model_capture(m, &c, NULL, g_tok, g_n, false, "tokens.txt", ours, NULL, NULL), KVQ_OK);
        snprintf(hf, sizeof hf, MODELS "/hf_traces/%s.safetensors", names[i]);
        kvq_st *a = NULL, *b = NULL;
        assert_int_equal(kvq_st_open(hf, &a), KVQ_OK);
        assert_int_equal(kvq_st_open(ours, &b), KVQ_OK);
        static const char *meta[] = {"model_type", "layer_windows", "attn_logit_softcapping"};
        for (int k = 0; k < 3; k++) {
            const char *x = kvq_st_meta(a, meta[k]), *y = kvq_st_meta(b, meta[k]);
            if (!x || !y) assert_true(!x && !y);
            else assert_string_equal(x, y);
        }
        double worst = 0, worst_rel = 0;
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int k = 0; k < 3; k++) {
                static const char *kinds[] = {"keys", "values", "queries"};
                char name[48];
                snprintf(name, sizeof name, "layers.%d.%s", l, kinds[k]);
                const kvq_st_tensor *ta = kvq_st_find(a, name), *tb = kvq_st_find(b, name);
                assert_non_null(ta);
                assert_non_null(tb);
                assert_int_equal(ta->nelem, tb->nelem);
                float *x = malloc(sizeof(float) * ta->nelem), *y = malloc(sizeof(float) * tb->nelem);
                assert_non_null(x);
                assert_non_null(y);
                assert_int_equal(kvq_st_read_f32(ta, 0, ta->nelem, x), KVQ_OK);
                assert_int_equal(kvq_st_read_f32(tb, 0, tb->nelem, y), KVQ_OK);
                double d2 = 0, n2 = 0;
                for (size_t j = 0; j < ta->nelem; j++) {
                    double d = fabs((double)x[j] - y[j]);
                    // compare_traces.py's "equal within F16 rounding": 2 ulps + 2^-7
                    double tol = 2 * ldexp(1.0, (int)floor(log2(fmax(fmax(fabs(x[j]), fabs(y[j])), 6.1e-5))) - 10) + 0.0078125;
                    if (d > tol) fprintf(stderr, "%s %s[%zu]: %g vs %g\n", names[i], name, j, x[j], y[j]);
                    assert_true(d <= tol);
                    worst = fmax(worst, d);
                    d2 += d * d;
                    n2 += (double)x[j] * x[j];
                }
                worst_rel = fmax(worst_rel, sqrt(d2 / n2));
                free(x);
                free(y);
            }
        printf("  %-8s capture vs transformers: max |diff| %.4g, worst relative Frobenius %.2g\n", names[i], worst,
               worst_rel);
        assert_true(worst_rel < 1e-3);
        kvq_st_close(a);
        kvq_st_close(b);
        remove(ours);
        kvq_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunkings),        cmocka_unit_test(test_window_memory),
        cmocka_unit_test(test_window_patterns),  cmocka_unit_test(test_rope_frequencies),
        cmocka_unit_test(test_bad_configs),      cmocka_unit_test(test_capture_vs_transformers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
