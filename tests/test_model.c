// test_model.c — the Llama runner against the reference model's published
// losses, the sample traces it produced, and its failure messages.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "model.h"
#include "safetensors.h"
#include "trace.h"

#define REFMODEL "sample_data/refmodel"

// This cmocka has no assert_double_equal.
#define assert_near(a, b, tol)                                                            \
    do {                                                                                  \
        double a_ = (a), b_ = (b);                                                        \
        if (!(fabs(a_ - b_) <= (tol))) fprintf(stderr, "%s = %.6f, expected %.6f\n", #a, a_, b_); \
        assert_true(fabs(a_ - b_) <= (tol));                                              \
    } while (0)

static kvq_model *g_model;

static int setup(void **st)
{
    (void)st;
    if (kvq_model_load(REFMODEL, &g_model)) {
        fprintf(stderr, "load: %s\n", kvq_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    kvq_model_free(g_model);
    return 0;
}

static int32_t *read_bytes(const char *path, int *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static unsigned char buf[1 << 16];
    *n = (int)fread(buf, 1, sizeof buf, f);
    fclose(f);
    int32_t *t = malloc(sizeof(int32_t) * (size_t)*n);
    assert_non_null(t);
    for (int i = 0; i < *n; i++) t[i] = buf[i];
    return t;
}

static double ppl_of(const char *path, int chunk)
{
    int n;
    int32_t *tok = read_bytes(path, &n);
    assert_int_equal(n, 1024);
    kvq_config c;
    kvq_model_cfg_reference(&c);
    kvq_ppl_result r;
    kvq_status s = kvq_model_ppl(g_model, &c, NULL, tok, n, chunk, NULL, &r);
    if (s) fprintf(stderr, "ppl: %s\n", kvq_last_error());
    assert_int_equal(s, KVQ_OK);
    assert_near(r.kl_bits, 0.0, 0.0);
    free(tok);
    return r.bits_per_token;
}

// The README's reference figures, through the fp16 cache.
static void test_ppl_reference_figures(void **st)
{
    (void)st;
    assert_int_equal(g_model->n_params, 19143168);
    double code = ppl_of("sample_data/texts/textwrap-1k.py", 128);
    double prose = ppl_of("sample_data/texts/gpl3-2048-3071.txt", 256);
    printf("bits/byte: textwrap %.5f (ref 1.5130), gpl3 %.5f (ref 1.4902)\n", code, prose);
    assert_near(code, 1.5130, 1e-3);
    assert_near(prose, 1.4902, 1e-3);
}

// Prefill as one chunk and decode one token at a time (sgemv) give the same
// next-token distributions.
static void test_chunk_vs_step(void **st)
{
    (void)st;
    int n;
    int32_t *tok = read_bytes("sample_data/texts/textwrap-1k.py", &n);
    enum { N = 48, V = 256 };
    kvq_config c;
    kvq_model_cfg_reference(&c);
    kvq_runner *a, *b;
    assert_int_equal(kvq_runner_new(g_model, &c, NULL, 64, &a), KVQ_OK);
    assert_int_equal(kvq_runner_new(g_model, &c, NULL, 64, &b), KVQ_OK);
    static float la[N * V], lb[V];
    assert_int_equal(kvq_runner_forward(a, tok, N, true, la), KVQ_OK);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(kvq_runner_forward(b, tok + i, 1, false, lb), KVQ_OK);
        for (int j = 0; j < V; j++) worst = fmax(worst, fabs(la[i * V + j] - lb[j]));
    }
    assert_int_equal(kvq_runner_pos(b), N);
    assert_true(worst < 1e-3);
    // Reset replays identically.
    kvq_runner_reset(b);
    assert_int_equal(kvq_runner_pos(b), 0);
    assert_int_equal(kvq_runner_forward(b, tok, N, false, lb), KVQ_OK);
    for (int j = 0; j < V; j++) assert_true(fabs(la[(N - 1) * V + j] - lb[j]) < 1e-3);
    // Out-of-vocabulary ids are refused with the position.
    int32_t bad = 300;
    assert_int_equal(kvq_runner_forward(b, &bad, 1, false, lb), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "position 48"));
    kvq_runner_free(a);
    kvq_runner_free(b);
    free(tok);
    // The speed probe runs both phases (no timing asserted).
    double ptps = 0, dtps = 0;
    assert_int_equal(kvq_model_speed(g_model, &c, NULL, 130, 2, &ptps, &dtps), KVQ_OK);
    assert_true(ptps > 0 && dtps > 0);
    assert_int_equal(kvq_model_speed(g_model, &c, NULL, 0, 2, &ptps, &dtps), KVQ_ERR_ARG);
}

// A quantized cache moves the loss and has a positive KL; fp16 has none.
static void test_ppl_kl(void **st)
{
    (void)st;
    int n;
    int32_t *tok = read_bytes("sample_data/texts/textwrap-1k.py", &n);
    n = 256;
    kvq_config c;
    kvq_model_cfg_reference(&c);
    strcpy(c.method, "q4_0");
    c.bits = 4;
    c.value_bits = 16;
    kvq_ppl_result r;
    kvq_status s = kvq_model_ppl(g_model, &c, NULL, tok, n, 64, NULL, &r);
    if (s) fprintf(stderr, "ppl q4_0: %s\n", kvq_last_error());
    assert_int_equal(s, KVQ_OK);
    printf("q4_0 keys, 256 bytes: %.4f bits/byte (fp16 %.4f), KL %.5f bits\n", r.bits_per_token,
           r.ref_bits_per_token, r.kl_bits);
    assert_true(r.kl_bits > 1e-6);
    assert_true(r.kl_bits < 0.5);
    assert_true(fabs(r.bits_per_token - r.ref_bits_per_token) > 1e-7);
    free(tok);
}

// Progress comes per layer, not per chunk: a cancel asked in the middle of
// the first chunk stops there (KVQ_ERR_CANCELLED), and capture then writes nothing.
typedef struct { int calls, stop_at; double last, max; bool monotone; } cancel_probe;
static bool probe_fn(double f, const char *stage, double eta_s, void *user)
{
    (void)stage;
    (void)eta_s;
    cancel_probe *cp = user;
    cp->monotone = cp->monotone && f >= cp->last;
    cp->last = f;
    if (f > cp->max) cp->max = f;
    return ++cp->calls >= cp->stop_at;
}

static void test_ppl_cancel(void **st)
{
    (void)st;
    int n;
    int32_t *tok = read_bytes("sample_data/texts/textwrap-1k.py", &n);
    n = 256;
    kvq_config c;
    kvq_model_cfg_reference(&c);
    strcpy(c.method, "q4_0");
    c.bits = 4;
    c.value_bits = 16;
    kvq_ppl_result r;
    cancel_probe all = {.stop_at = 1 << 30, .monotone = true};
    kvq_progress p = {.fn = probe_fn, .user = &all};
    assert_int_equal(kvq_model_ppl(g_model, &c, NULL, tok, n, 128, &p, &r), KVQ_OK);
    // 2 chunks x 2 passes (cache, fp16) x 6 layers of polls, plus one report per chunk
    assert_int_equal(all.calls, 2 * 2 * g_model->cfg.n_layers + 2);
    assert_true(all.monotone);
    assert_true(fabs(all.max - 1.0) < 1e-12);
    assert_true(fabs(r.key_record_bits - 4.5) < 1e-9);   // q4_0: 18 bytes per 32 values
    assert_true(fabs(r.value_record_bits - 16) < 1e-9);
    cancel_probe early = {.stop_at = 3, .monotone = true};
    p.user = &early;
    assert_int_equal(kvq_model_ppl(g_model, &c, NULL, tok, n, 128, &p, &r), KVQ_ERR_CANCELLED);
    assert_int_equal(early.calls, 3);   // stopped at the third layer of the first chunk
    assert_true(early.max < 0.25);
    char path[] = "/tmp/kvq_cancel_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    cancel_probe cap = {.stop_at = 2, .monotone = true};
    p.user = &cap;
    assert_int_equal(kvq_model_capture(g_model, &c, NULL, tok, n, true, "cancel", path, &p, NULL), KVQ_ERR_CANCELLED);
    assert_int_equal(access(path, F_OK), -1);
    free(tok);
}

// Model-based RateQuant sensitivities: positive, deterministic, growing with noise.
static void test_sensitivities(void **st)
{
    (void)st;
    int n;
    int32_t *tok = read_bytes("sample_data/texts/gpl3-2048-3071.txt", &n);
    double a[6], b[6], big[6], sd[6];
    assert_int_equal(kvq_model_sensitivities(g_model, tok, 64, 0.1, 2, 7, NULL, a, sd), KVQ_OK);
    assert_int_equal(kvq_model_sensitivities(g_model, tok, 64, 0.1, 2, 7, NULL, b, NULL), KVQ_OK);
    assert_int_equal(kvq_model_sensitivities(g_model, tok, 64, 0.4, 1, 7, NULL, big, NULL), KVQ_OK);
    printf("sensitivities (KL bits, noise 0.1):");
    for (int l = 0; l < 6; l++) printf(" %.5f", a[l]);
    printf("\n");
    for (int l = 0; l < 6; l++) {
        assert_true(isfinite(a[l]) && a[l] > 0 && a[l] < 1);
        assert_true(sd[l] >= 0);
        assert_near(a[l], b[l], 0);
        assert_true(big[l] > a[l]);
    }
    assert_int_equal(kvq_model_sensitivities(g_model, tok, 1, 0.1, 1, 7, NULL, a, NULL), KVQ_ERR_ARG);
    free(tok);
}

static char g_tmp[64];

static const char *tmpdir(void)
{
    strcpy(g_tmp, "/tmp/kvq_model_XXXXXX");
    assert_non_null(mkdtemp(g_tmp));
    return g_tmp;
}

static void rmtree(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

// The captured trace of the first 256 bytes equals the sample trace (captured
// from this model on this text) within F16 rounding.
static void test_capture_round_trip(void **st)
{
    (void)st;
    int n;
    int32_t *tok = read_bytes("sample_data/texts/textwrap-1k.py", &n);
    enum { N = 256 };
    const char *dir = tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/cap.safetensors", dir);
    kvq_config c;
    kvq_model_cfg_reference(&c);
    double bits;
    kvq_status s = kvq_model_capture(g_model, &c, NULL, tok, N, true, "textwrap-1k.py, first 256 bytes", path, NULL, &bits);
    if (s) fprintf(stderr, "capture: %s\n", kvq_last_error());
    assert_int_equal(s, KVQ_OK);
    kvq_trace *cap, *ref;
    assert_int_equal(kvq_trace_open(path, NULL, &cap), KVQ_OK);
    assert_int_equal(kvq_trace_open("sample_data/traces/code-1k.safetensors", NULL, &ref), KVQ_OK);
    assert_int_equal(cap->n_layers, 6);
    assert_int_equal(cap->n_heads, 4);
    assert_int_equal(cap->n_kv_heads, 2);
    assert_int_equal(cap->head_dim, 128);
    assert_int_equal(cap->n_tokens, N);
    assert_int_equal(cap->n_queries, N);
    assert_true(cap->post_rope);
    assert_near(cap->rope_theta, 10000.0, 0);
    assert_near(cap->bits_per_byte, bits, 1e-5);
    assert_non_null(cap->tokens);
    for (int i = 0; i < N; i++) assert_int_equal(cap->tokens[i], tok[i]);
    float *a = malloc(sizeof(float) * 1024 * 128), *b = malloc(sizeof(float) * 1024 * 128);
    // "Within F16 rounding": the fp16 cache rounds K/V to F16 as the trace
    // does, so later layers drift by about one F16 rounding. Per element
    // 2 F16 ulps of the larger magnitude + 2^-7 absolute; per tensor a
    // relative Frobenius error under the F16 unit roundoff 2^-11; layer 0
    // (before any cache effect) under 1e-4.
    double worst_el = 0, worst_rel[3] = {0, 0, 0}, l0_rel = 0;
    for (int l = 0; l < 6; l++)
        for (int kind = 0; kind < 3; kind++) {
            int heads = kind == 2 ? 4 : 2;
            double num = 0, den = 0;
            for (int h = 0; h < heads; h++) {
                kvq_status (*get)(const kvq_trace *, int, int, float *) =
                    kind == 0 ? kvq_trace_keys : kind == 1 ? kvq_trace_values : kvq_trace_queries;
                assert_int_equal(get(cap, l, h, a), KVQ_OK);
                assert_int_equal(get(ref, l, h, b), KVQ_OK);
                for (int i = 0; i < N * 128; i++) {
                    double big = fmax(fmax(fabs(a[i]), fabs(b[i])), ldexp(1, -14));
                    double ulp = ldexp(1, (int)floor(log2(big)) - 10), d = fabs(a[i] - b[i]);
                    worst_el = fmax(worst_el, d / (2 * ulp + ldexp(1, -7)));
                    num += d * d;
                    den += (double)b[i] * b[i];
                }
            }
            double rel = sqrt(num / den);
            worst_rel[kind] = fmax(worst_rel[kind], rel);
            if (l == 0) l0_rel = fmax(l0_rel, rel);
        }
    printf("capture vs sample trace: worst element error / tolerance %.3f; relative Frobenius error keys %.2e "
           "values %.2e queries %.2e (layer 0: %.2e)\n", worst_el, worst_rel[0], worst_rel[1], worst_rel[2], l0_rel);
    assert_true(worst_el <= 1.0);
    for (int k = 0; k < 3; k++) assert_true(worst_rel[k] < ldexp(1, -11));
    assert_true(l0_rel < 1e-4);
    kvq_trace_free(cap);
    kvq_trace_free(ref);
    free(a);
    free(b);
    free(tok);
    rmtree(dir);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void link_ref(const char *dir, const char *name)
{
    char src[512], dst[256], cwd[256];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(src, sizeof src, "%s/" REFMODEL "/%s", cwd, name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    assert_int_equal(symlink(src, dst), 0);
}

static void test_missing_shard(void **st)
{
    (void)st;
    const char *dir = tmpdir();
    link_ref(dir, "config.json");
    link_ref(dir, "model.safetensors.index.json");
    link_ref(dir, "model-00001-of-00003.safetensors");
    link_ref(dir, "model-00003-of-00003.safetensors");
    kvq_model *m = NULL;
    assert_int_equal(kvq_model_load(dir, &m), KVQ_ERR_IO);
    assert_null(m);
    const char *e = kvq_last_error();
    assert_non_null(strstr(e, "model-00002-of-00003.safetensors"));
    assert_non_null(strstr(e, "missing"));
    rmtree(dir);
    // No weights at all.
    dir = tmpdir();
    link_ref(dir, "config.json");
    assert_int_equal(kvq_model_load(dir, &m), KVQ_ERR_IO);
    assert_non_null(strstr(kvq_last_error(), "model.safetensors"));
    rmtree(dir);
}

// Each unsupported field is named in the message.
static void test_unsupported_config(void **st)
{
    (void)st;
    static const struct { const char *extra, *field; kvq_status want; } cases[] = {
        {"\"hidden_act\": \"gelu\"", "hidden_act", KVQ_ERR_UNSUPPORTED},
        {"\"mlp_bias\": true", "mlp_bias", KVQ_ERR_UNSUPPORTED},
        {"\"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 4.0}", "rope_scaling.rope_type",
         KVQ_ERR_UNSUPPORTED},
        {"\"model_type\": \"gpt2\"", "model_type", KVQ_ERR_UNSUPPORTED},
        {"\"head_dim\": 512", "head_dim", KVQ_ERR_UNSUPPORTED},
        {"\"num_key_value_heads\": 3", "num_key_value_heads", KVQ_ERR_FORMAT},
        {"\"vocab_size\": \"many\"", "vocab_size", KVQ_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = tmpdir();
        char cfg[1024];
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"llama\", \"vocab_size\": 256, \"hidden_size\": 512, \"intermediate_size\": 1536,"
                 " \"num_hidden_layers\": 6, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
                 " \"head_dim\": 128, %s}", cases[i].extra);
        write_file(dir, "config.json", cfg);
        link_ref(dir, "model.safetensors.index.json");
        kvq_model *m = NULL;
        kvq_status s = kvq_model_load(dir, &m);
        if (s != cases[i].want || !strstr(kvq_last_error(), cases[i].field))
            fprintf(stderr, "case %zu: status %d, message: %s\n", i, s, kvq_last_error());
        assert_int_equal(s, cases[i].want);
        assert_non_null(strstr(kvq_last_error(), cases[i].field));
        assert_null(m);
        rmtree(dir);
    }
}

// Extreme but parseable configs (issue 17): every numeric field is range
// checked and named, so nothing reaches the runner that would make it run
// for ever, overflow a size or compute on nonsense; a FIFO as config.json
// is refused at once instead of blocking the open.
static void test_config_ranges(void **st)
{
    (void)st;
    static const struct { const char *body, *msg; kvq_status want; } cases[] = {
        {"\"head_dim\": 128, \"rms_norm_eps\": 1e300", "field 'rms_norm_eps' is not a number in (0, 0.01]", KVQ_ERR_FORMAT},
        {"\"head_dim\": 128, \"rms_norm_eps\": 0", "rms_norm_eps", KVQ_ERR_FORMAT},
        {"\"head_dim\": 128, \"rope_theta\": 1e300", "field 'rope_theta' is not a number in (0, 1e+12]", KVQ_ERR_FORMAT},
        {"\"head_dim\": 128, \"rope_theta\": 0.5", "field 'rope_theta' = 0.5 is out of range", KVQ_ERR_FORMAT},
        {"\"head_dim\": 128, \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1e300}",
         "field 'rope_theta' is not a number", KVQ_ERR_FORMAT},
        {"\"head_dim\": 128, \"max_position_embeddings\": 1073741824", "'max_position_embeddings' is not an integer in 1..16777216",
         KVQ_ERR_FORMAT},
        {"\"head_dim\": 128, \"vocab_size\": 1073741824", "'vocab_size' is not an integer in 1..16777216", KVQ_ERR_FORMAT},
        {"\"head_dim\": 128, \"num_attention_heads\": 65536", "'num_attention_heads' is not an integer in 1..1024",
         KVQ_ERR_FORMAT},
        {"\"head_dim\": 128, \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 1e9}", "'factor' is not a number",
         KVQ_ERR_FORMAT},
        // no head_dim: hidden_size / num_attention_heads must divide and give an even head_dim
        {"\"hidden_size\": 510", "hidden_size 510 is not a multiple of num_attention_heads 4", KVQ_ERR_FORMAT},
        {"\"hidden_size\": 12", "field 'head_dim' = 3 is not supported (expected even", KVQ_ERR_UNSUPPORTED},
        {"\"hidden_size\": 2048", "field 'head_dim' = 512 is not supported", KVQ_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *dir = tmpdir();
        char cfg[1024];
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"llama\", \"vocab_size\": 256, \"hidden_size\": 512, \"intermediate_size\": 1536,"
                 " \"num_hidden_layers\": 6, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, %s}",
                 cases[i].body);   // the later of two equal keys wins
        write_file(dir, "config.json", cfg);
        kvq_model_config c;
        kvq_status s = kvq_model_config_load(dir, &c);
        if (s != cases[i].want || !strstr(kvq_last_error(), cases[i].msg))
            fail_msg("case %zu: status %d, message: %s", i, s, kvq_last_error());
        rmtree(dir);
    }
    const char *dir = tmpdir();
    char p[256];
    snprintf(p, sizeof p, "%s/config.json", dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    kvq_model_config c;
    assert_int_equal(kvq_model_config_load(dir, &c), KVQ_ERR_IO);
    assert_non_null(strstr(kvq_last_error(), "config.json: not a regular file (a fifo)"));
    rmtree(dir);
}

// A finite but huge lm_head (3e38) makes every logit overflow: ppl is an
// error naming the figure, not "inf" bits per byte with success (issue 17).
static void test_ppl_nonfinite(void **st)
{
    (void)st;
    const char *dir = tmpdir();
    write_file(dir, "config.json",
               "{\"model_type\": \"llama\", \"vocab_size\": 256, \"hidden_size\": 16, \"intermediate_size\": 32,"
               " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1}");
    static const struct { const char *name; int64_t r, c; float v; } w[] = {
        {"model.embed_tokens.weight", 256, 16, 0.01f}, {"model.norm.weight", 16, 0, 1},
        {"lm_head.weight", 256, 16, 3e38f}, {"model.layers.0.input_layernorm.weight", 16, 0, 1},
        {"model.layers.0.self_attn.q_proj.weight", 16, 16, 0.01f}, {"model.layers.0.self_attn.k_proj.weight", 8, 16, 0.01f},
        {"model.layers.0.self_attn.v_proj.weight", 8, 16, 0.01f}, {"model.layers.0.self_attn.o_proj.weight", 16, 16, 0.01f},
        {"model.layers.0.post_attention_layernorm.weight", 16, 0, 1},
        {"model.layers.0.mlp.gate_proj.weight", 32, 16, 0.01f}, {"model.layers.0.mlp.up_proj.weight", 32, 16, 0.01f},
        {"model.layers.0.mlp.down_proj.weight", 16, 32, 0.01f},
    };
    enum { NW = sizeof w / sizeof w[0] };
    kvq_st_wtensor wt[NW];
    float *bufs[NW];
    for (int i = 0; i < NW; i++) {
        size_t n = (size_t)w[i].r * (w[i].c ? (size_t)w[i].c : 1);
        bufs[i] = malloc(sizeof(float) * n);
        for (size_t j = 0; j < n; j++) bufs[i][j] = w[i].v * (j % 2 ? 1.0f : 0.5f);
        wt[i] = (kvq_st_wtensor){.name = w[i].name, .dtype = KVQ_DT_F32, .ndim = w[i].c ? 2 : 1,
                                 .shape = {w[i].r, w[i].c}, .data = bufs[i]};
    }
    char p[256];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(kvq_st_write(p, wt, NW, NULL, NULL, 0), KVQ_OK);
    for (int i = 0; i < NW; i++) free(bufs[i]);
    kvq_model *m;
    if (kvq_model_load(dir, &m)) fail_msg("%s", kvq_last_error());
    kvq_config cfg;
    kvq_model_cfg_reference(&cfg);
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    kvq_ppl_result r;
    assert_int_equal(kvq_model_ppl(m, &cfg, NULL, tok, 8, 4, NULL, &r), KVQ_ERR_NUMERIC);
    assert_non_null(strstr(kvq_last_error(), "bits per token is"));
    assert_non_null(strstr(kvq_last_error(), "non-finite logits"));
    kvq_model_free(m);
    rmtree(dir);
}

// Llama-3 rope_scaling: high frequencies untouched, low ones divided by factor.
static void test_llama3_rope(void **st)
{
    (void)st;
    const char *dir = tmpdir();
    write_file(dir, "config.json",
               "{\"vocab_size\": 256, \"hidden_size\": 512, \"intermediate_size\": 1536, \"num_hidden_layers\": 6,"
               " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"rope_theta\": 500000.0, \"rms_norm_eps\": 1e-5,"
               " \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0,"
               " \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}}");
    link_ref(dir, "model.safetensors.index.json");
    link_ref(dir, "model-00001-of-00003.safetensors");
    link_ref(dir, "model-00002-of-00003.safetensors");
    link_ref(dir, "model-00003-of-00003.safetensors");
    kvq_model *m;
    kvq_status s = kvq_model_load(dir, &m);
    if (s) fprintf(stderr, "llama3: %s\n", kvq_last_error());
    assert_int_equal(s, KVQ_OK);
    assert_string_equal(m->cfg.rope_type, "llama3");
    assert_int_equal(m->cfg.head_dim, 128);
    for (int i = 0; i < 64; i++) {
        double base = 1.0 / pow(500000.0, 2.0 * i / 128), w = 2 * M_PI / base;
        if (w < 8192 / 4.0) assert_true(fabs(m->inv_freq[0][i] / base - 1) < 1e-5);
        else if (w > 8192 / 1.0) assert_true(fabs(m->inv_freq[0][i] * 8 / base - 1) < 1e-5);
        else assert_true(m->inv_freq[0][i] < base && m->inv_freq[0][i] > base / 8);
    }
    kvq_model_free(m);
    rmtree(dir);
}

static void test_tokens_files(void **st)
{
    (void)st;
    const char *dir = tmpdir();
    write_file(dir, "t.txt", " 1 2\n 3\t255  \n");
    char p[128];
    snprintf(p, sizeof p, "%s/t.txt", dir);
    int32_t *t;
    int n;
    assert_int_equal(kvq_tokens_load(p, &t, &n), KVQ_OK);
    assert_int_equal(n, 4);
    assert_int_equal(t[0], 1);
    assert_int_equal(t[3], 255);
    free(t);
    write_file(dir, "bad.txt", "1 2 x3");
    snprintf(p, sizeof p, "%s/bad.txt", dir);
    assert_int_equal(kvq_tokens_load(p, &t, &n), KVQ_ERR_FORMAT);
    assert_non_null(strstr(kvq_last_error(), "token 2"));
    // An I32 .npy of 3 tokens, version 1 header padded to 128 bytes.
    unsigned char npy[128 + 12];
    memset(npy, ' ', 128);
    memcpy(npy, "\x93NUMPY\x01\x00\x76\x00", 10);
    const char *hdr = "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }";
    memcpy(npy + 10, hdr, strlen(hdr));
    npy[127] = '\n';
    int32_t vals[3] = {7, 0, 200};
    memcpy(npy + 128, vals, 12);
    snprintf(p, sizeof p, "%s/t.npy", dir);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(npy, 1, sizeof npy, f), sizeof npy);
    fclose(f);
    assert_int_equal(kvq_tokens_load(p, &t, &n), KVQ_OK);
    assert_int_equal(n, 3);
    assert_int_equal(t[0], 7);
    assert_int_equal(t[2], 200);
    free(t);
    rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ppl_reference_figures), cmocka_unit_test(test_chunk_vs_step),
        cmocka_unit_test(test_ppl_kl),                cmocka_unit_test(test_capture_round_trip),
        cmocka_unit_test(test_missing_shard),         cmocka_unit_test(test_unsupported_config),
        cmocka_unit_test(test_llama3_rope),           cmocka_unit_test(test_tokens_files),
        cmocka_unit_test(test_sensitivities),         cmocka_unit_test(test_config_ranges),
        cmocka_unit_test(test_ppl_nonfinite),         cmocka_unit_test(test_ppl_cancel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
