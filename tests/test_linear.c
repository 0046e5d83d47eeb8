// test_linear.c — the tiled matmul on checkpoint-dtype weights (linear.h)
// against its scalar reference, and the model runner with the tiled path
// against the same runner with every matmul scalar.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "f16.h"
#include "linear.h"
#include "model.h"
#include "pool.h"
#include "rng.h"
#include "safetensors.h"
#include "simd.h"

// Random weights of one dtype, stored at byte offset `skew` (unaligned when odd).
static uint8_t *make_weight(kvq_dtype dt, int rows, int cols, int skew, uint64_t seed, kvq_weight *w)
{
    size_t n = (size_t)rows * (size_t)cols, es = (size_t)kvq_dtype_size(dt);
    uint8_t *buf = malloc(n * es + 8);
    assert_non_null(buf);
    kvq_rng g;
    kvq_rng_seed(&g, seed);
    for (size_t i = 0; i < n; i++) {
        float v = (float)kvq_rng_gauss(&g) * 0.1f;
        uint16_t h = dt == KVQ_DT_BF16 ? kvq_f32_to_bf16(v) : kvq_f32_to_f16(v);
        if (dt == KVQ_DT_F32) memcpy(buf + skew + 4 * i, &v, 4);
        else memcpy(buf + skew + 2 * i, &h, 2);
    }
    *w = (kvq_weight){.data = buf + skew, .dtype = dt, .rows = rows, .cols = cols};
    return buf;
}

// Every shape class the tiler has: several full tiles and a partial one,
// one token (sgemv) and many (sgemm), beta 0 (y holds garbage) and 1, a
// y wider than the weight, and a tile smaller than one row (column slices).
static void test_tiled_vs_ref(void **st)
{
    (void)st;
    const struct { kvq_dtype dt; int skew; } kinds[] = {
        {KVQ_DT_BF16, 0}, {KVQ_DT_BF16, 1}, {KVQ_DT_F16, 1}, {KVQ_DT_F32, 0}, {KVQ_DT_F32, 2},
    };
    const struct { int rows, cols, n; size_t tile; } shapes[] = {
        {37, 64, 1, 0}, {37, 64, 5, 0}, {200, 96, 17, 96 * 16}, {70, 50, 3, 50 * 3}, {9, 300, 4, 128}, {9, 300, 1, 128},
    };
    kvq_rng g;
    kvq_rng_seed(&g, 7);
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int b = 0; b < 2; b++) {
                int R = shapes[s].rows, C = shapes[s].cols, n = shapes[s].n;
                size_t ldy = (size_t)R + 3;
                kvq_weight w;
                uint8_t *buf = make_weight(kinds[k].dt, R, C, kinds[k].skew, 100 + k * 10 + s, &w);
                float *x = malloc(sizeof(float) * (size_t)n * C);
                float *y = malloc(sizeof(float) * (size_t)n * ldy), *yr = malloc(sizeof(float) * (size_t)n * ldy);
                double *scale = calloc((size_t)n * R, sizeof(double));
                for (int i = 0; i < n * C; i++) x[i] = (float)kvq_rng_gauss(&g);
                for (size_t i = 0; i < (size_t)n * ldy; i++) y[i] = yr[i] = b ? (float)kvq_rng_gauss(&g) : NAN;
                kvq_linear_plan *p;
                assert_int_equal(kvq_linear_plan_new(shapes[s].tile, &p), KVQ_OK);
                float beta = b ? 1.0f : 0.0f;
                kvq_linear(p, x, n, &w, beta, y, ldy);
                kvq_linear_ref(x, n, &w, beta, yr, ldy);
                // Bound: f32 sums of C products, each |x w|: C * 2^-23 * sum|x w| with room.
                float *row = malloc(sizeof(float) * C);
                for (int r = 0; r < R; r++) {
                    kvq_weight_row_f32(&w, r, row);
                    for (int t = 0; t < n; t++)
                        for (int c = 0; c < C; c++) scale[(size_t)t * R + r] += fabs((double)x[t * C + c] * row[c]);
                }
                for (int t = 0; t < n; t++) {
                    for (int r = 0; r < R; r++) {
                        double got = y[(size_t)t * ldy + r], want = yr[(size_t)t * ldy + r];
                        double tol = 4.0 * C * 1.2e-7 * (scale[(size_t)t * R + r] + (b ? 4.0 : 0.0)) + 1e-30;
                        if (!(fabs(got - want) <= tol))
                            fail_msg("%s skew %d shape %dx%d n %d beta %d: y[%d][%d] %.9g vs %.9g (tol %.3g)",
                                     kvq_dtype_name(kinds[k].dt), kinds[k].skew, R, C, n, b, t, r, got, want, tol);
                    }
                    for (size_t r = (size_t)R; r < ldy; r++)   // past the weight's rows: untouched
                        assert_true(b ? y[(size_t)t * ldy + r] == yr[(size_t)t * ldy + r]
                                      : isnan(y[(size_t)t * ldy + r]));
                }
                kvq_linear_plan_free(p);
                free(row);
                free(scale);
                free(x);
                free(y);
                free(yr);
                free(buf);
            }
}

// A tile big enough to be converted by several pool tasks gives the same
// bits with 1 and 3 threads (tasks are cut by size alone).
static void test_threads_identical(void **st)
{
    (void)st;
    enum { R = 600, C = 512, N = 5 };
    kvq_weight w;
    uint8_t *buf = make_weight(KVQ_DT_BF16, R, C, 1, 42, &w);
    static float x[N * C], y1[N * R], y3[N * R];
    kvq_rng g;
    kvq_rng_seed(&g, 3);
    for (int i = 0; i < N * C; i++) x[i] = (float)kvq_rng_gauss(&g);
    kvq_linear_plan *p;
    assert_int_equal(kvq_linear_plan_new(0, &p), KVQ_OK);
    kvq_threads_set(1);
    kvq_linear(p, x, N, &w, 0.0f, y1, R);
    kvq_threads_set(3);
    kvq_linear(p, x, N, &w, 0.0f, y3, R);
    kvq_threads_set(0);
    kvq_threads_shutdown();
    assert_memory_equal(y1, y3, sizeof y1);
    kvq_linear_plan_free(p);
    free(buf);
}

// Row conversion is exact: every bf16 and f16 pattern's decoding.
static void test_row_exact(void **st)
{
    (void)st;
    enum { N = 65536 };
    uint8_t *buf = malloc(2 * N + 1);
    float *got = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) {
        uint16_t h = (uint16_t)i;
        memcpy(buf + 1 + 2 * i, &h, 2);
    }
    kvq_dtype dts[] = {KVQ_DT_BF16, KVQ_DT_F16};
    for (int d = 0; d < 2; d++) {
        kvq_weight w = {.data = buf + 1, .dtype = dts[d], .rows = 1, .cols = N};
        kvq_weight_row_f32(&w, 0, got);
        for (int i = 0; i < N; i++) {
            float want = d == 0 ? kvq_bf16_to_f32((uint16_t)i) : kvq_f16_to_f32((uint16_t)i);
            uint32_t a, b;
            memcpy(&a, &got[i], 4);
            memcpy(&b, &want, 4);
            if (isnan(want) && isnan(got[i])) continue;   // F16C quiets signalling NaNs (never in a loaded model)
            if (a != b) fail_msg("%s pattern 0x%04x: 0x%08x vs 0x%08x", kvq_dtype_name(dts[d]), i, a, b);
        }
    }
    kvq_weight two = {.data = buf + 1, .dtype = KVQ_DT_BF16, .rows = 4, .cols = 8};
    kvq_weight v = kvq_weight_rows(&two, 2, 2);
    assert_ptr_equal(v.data, buf + 1 + 2 * 8 * 2);
    assert_int_equal(v.rows, 2);
    free(buf);
    free(got);
}

static double max_diff(const float *a, const float *b, size_t n, double *mag)
{
    double worst = 0;
    *mag = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(a[i] - b[i]));
        *mag = fmax(*mag, fabs(b[i]));
    }
    return worst;
}

// Layer 0's post-RoPE q, k, v of a chunk (the tap): only matmuls and RoPE
// are behind them, no cache rounding yet.
typedef struct { float *qkv; size_t n; int nh, nkv, hd; } layer0;

static void tap_layer0(void *user, int layer, int pos0, int n, const float *q, const float *k, const float *v)
{
    (void)pos0;
    layer0 *t = user;
    if (layer != 0 || t->n) return;
    size_t nq = (size_t)n * t->nh * t->hd, nk = (size_t)n * t->nkv * t->hd;   // <= 512 floats a token below
    memcpy(t->qkv, q, sizeof(float) * nq);
    memcpy(t->qkv + nq, k, sizeof(float) * nk);
    memcpy(t->qkv + nq + nk, v, sizeof(float) * nk);
    t->n = nq + 2 * nk;
}

// The whole runner on bf16 checkpoints (tests/data/models): tiled BLAS
// against scalar matmuls on the same chunk (only the matmuls differ), the
// tiled decode path (sgemv on tiles) against the scalar chunk (the cache's
// decode attention differs too: looser), and streaming (pages given back
// after every layer) giving identical logits.
static void test_model_tiled_vs_scalar(void **st)
{
    (void)st;
    static const char *dirs[] = {"tests/data/models/llama", "tests/data/models/phi3", "tests/data/models/qwen2"};
    enum { N = 24 };
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (i * 37 + 11) % 512;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        kvq_model *m;
        if (kvq_model_load(dirs[d], &m)) fail_msg("%s", kvq_last_error());
        assert_false(m->stream_weights);   // small: over half of RAM is what streams
        size_t V = (size_t)m->cfg.vocab_size;
        float *a = malloc(sizeof(float) * N * V), *b = malloc(sizeof(float) * N * V);
        float *c = malloc(sizeof(float) * N * V), *e = malloc(sizeof(float) * N * V);
        kvq_config cfg;
        kvq_model_cfg_reference(&cfg);
        kvq_runner *ra, *rb;
        assert_int_equal(kvq_runner_new(m, &cfg, NULL, N, &ra), KVQ_OK);
        assert_int_equal(kvq_runner_new(m, &cfg, NULL, N, &rb), KVQ_OK);
        kvq_runner_set_reference_matmul(rb, true);
        static float qa[N * 512], qb[N * 512];
        const kvq_model_config *mc = &m->cfg;
        assert_true((mc->n_heads + 2 * mc->n_kv_heads) * mc->head_dim <= 512);
        layer0 ta = {qa, 0, mc->n_heads, mc->n_kv_heads, mc->head_dim}, tb = ta;
        tb.qkv = qb;
        kvq_runner_set_tap(ra, tap_layer0, &ta);
        kvq_runner_set_tap(rb, tap_layer0, &tb);
        assert_int_equal(kvq_runner_forward(ra, tok, N, true, a), KVQ_OK);
        assert_int_equal(kvq_runner_forward(rb, tok, N, true, b), KVQ_OK);
        kvq_runner_set_tap(ra, NULL, NULL);
        assert_int_equal(ta.n, tb.n);
        double qmag, qd = max_diff(qa, qb, ta.n, &qmag);
        kvq_runner_reset(ra);
        for (int i = 0; i < N; i++) assert_int_equal(kvq_runner_forward(ra, tok + i, 1, true, e + i * V), KVQ_OK);
        double mag, chunk = max_diff(a, b, N * V, &mag), step = max_diff(e, b, N * V, &mag);
        printf("%-24s max |diff| to scalar: layer-0 q/k/v %.1e (max %.1f); logits: tiled chunk %.1e, tiled decode "
               "%.1e (max %.1f)\n", dirs[d], qd, qmag, chunk, step, mag);
        assert_true(qd < 1e-5 * qmag);
        assert_true(chunk < 1e-3 * mag && step < 1e-3 * mag);
        m->stream_weights = true;
        kvq_runner_reset(ra);
        assert_int_equal(kvq_runner_forward(ra, tok, N, true, c), KVQ_OK);
        assert_memory_equal(a, c, sizeof(float) * N * V);
        kvq_runner_free(ra);
        kvq_runner_free(rb);
        kvq_model_free(m);
        free(a);
        free(b);
        free(c);
        free(e);
    }
}

// A non-finite weight is refused at load, naming the tensor and element,
// by the vector scan and by the 64-bit word scan (scalar forced), for
// bf16, f16 and f32 checkpoints; the same checkpoint without it loads.
static void write_tiny(const char *dir, kvq_dtype dt, int bad_elem, uint32_t bad_bits)
{
    char p[256];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("{\"model_type\": \"llama\", \"vocab_size\": 64, \"hidden_size\": 16, \"intermediate_size\": 40,"
          " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1}", f);
    fclose(f);
    static const struct { const char *name; int64_t r, c; } w[] = {
        {"model.embed_tokens.weight", 64, 16}, {"model.norm.weight", 16, 0}, {"lm_head.weight", 64, 16},
        {"model.layers.0.input_layernorm.weight", 16, 0}, {"model.layers.0.self_attn.q_proj.weight", 16, 16},
        {"model.layers.0.self_attn.k_proj.weight", 8, 16}, {"model.layers.0.self_attn.v_proj.weight", 8, 16},
        {"model.layers.0.self_attn.o_proj.weight", 16, 16}, {"model.layers.0.post_attention_layernorm.weight", 16, 0},
        {"model.layers.0.mlp.gate_proj.weight", 40, 16}, {"model.layers.0.mlp.up_proj.weight", 40, 16},
        {"model.layers.0.mlp.down_proj.weight", 16, 40},
    };
    enum { NW = sizeof w / sizeof w[0] };
    kvq_st_wtensor wt[NW];
    uint8_t *bufs[NW];
    size_t es = (size_t)kvq_dtype_size(dt);
    for (int i = 0; i < NW; i++) {
        size_t n = (size_t)w[i].r * (w[i].c ? (size_t)w[i].c : 1);
        bufs[i] = malloc(n * es);
        for (size_t j = 0; j < n; j++) {
            float v = w[i].c ? 0.01f * (float)((int)(j % 7) - 3) : 1.0f;
            uint32_t u;
            memcpy(&u, &v, 4);
            uint16_t h = dt == KVQ_DT_BF16 ? kvq_f32_to_bf16(v) : kvq_f32_to_f16(v);
            if (i == 10 && (int)j == bad_elem) u = bad_bits, h = (uint16_t)bad_bits;   // up_proj
            if (es == 4) memcpy(bufs[i] + 4 * j, &u, 4);
            else memcpy(bufs[i] + 2 * j, &h, 2);
        }
        wt[i] = (kvq_st_wtensor){.name = w[i].name, .dtype = dt, .ndim = w[i].c ? 2 : 1,
                                 .shape = {w[i].r, w[i].c}, .data = bufs[i]};
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(kvq_st_write(p, wt, NW, NULL, NULL, 0), KVQ_OK);
    for (int i = 0; i < NW; i++) free(bufs[i]);
}

static void test_nonfinite_weight(void **st)
{
    (void)st;
    char dir[] = "/tmp/test_linear.XXXXXX";
    assert_non_null(mkdtemp(dir));
    const struct { kvq_dtype dt; int elem; uint32_t bits; } cases[] = {
        {KVQ_DT_BF16, 77, 0x7f80}, {KVQ_DT_BF16, 639, 0xffc1}, {KVQ_DT_F16, 300, 0xfc00},
        {KVQ_DT_F32, 5, 0x7fc00000}, {KVQ_DT_F32, 638, 0xff800000}, {KVQ_DT_BF16, -1, 0},
    };
    for (int scalar = 0; scalar < 2; scalar++) {
        kvq_simd_force_scalar(scalar);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            write_tiny(dir, cases[i].dt, cases[i].elem, cases[i].bits);
            kvq_model *m = NULL;
            kvq_status s = kvq_model_load(dir, &m);
            if (cases[i].elem < 0) {
                assert_int_equal(s, KVQ_OK);
                kvq_model_free(m);
                continue;
            }
            char want[128];
            snprintf(want, sizeof want, "tensor 'model.layers.0.mlp.up_proj.weight' has a non-finite value at element %d",
                     cases[i].elem);
            assert_int_equal(s, KVQ_ERR_NONFINITE);
            if (!strstr(kvq_last_error(), want)) fail_msg("%s (scalar %d): %s", kvq_dtype_name(cases[i].dt), scalar,
                                                         kvq_last_error());
        }
    }
    kvq_simd_force_scalar(false);
    char p[300];
    snprintf(p, sizeof p, "%s/config.json", dir);
    remove(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    remove(p);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiled_vs_ref),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_row_exact),
        cmocka_unit_test(test_model_tiled_vs_scalar),
        cmocka_unit_test(test_nonfinite_weight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
