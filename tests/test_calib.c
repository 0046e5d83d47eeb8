// test_calib.c — calibration: the RateQuant allocator against brute force and
// its attention error against uniform bits, VecInfer's exact dual transform
// and its attention error against turboquant_mse at 2 bits, SpectralQuant's
// eigenbases and its key cosine against turboquant_mse, progress,
// cancellation, determinism and the RaBitQ / CommVQ rows.
//
// Speed (2 cores, -O2): VecInfer trains on the first 2 layers with 8 k-means
// iterations (the default is 100); CommVQ on 1 layer, 512 tokens, 1 EM
// round. RateQuant and SpectralQuant run on the whole sample traces.
// The figures each check compares are printed (grep "figure:").
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "calib/calib.h"
#include "model.h"
#include "pool.h"
#include "rng.h"

#define CODE "sample_data/traces/code-1k.safetensors"
#define PROSE "sample_data/traces/prose-1k.safetensors"

static kvq_trace *open_trace(const char *path)
{
    kvq_trace *t = NULL;
    kvq_status s = kvq_trace_open(path, NULL, &t);
    if (s) fail_msg("%s: %s", path, kvq_last_error());
    return t;
}

static kvq_artifacts *calibrate(const char *m, const kvq_trace *t, const kvq_calib_opts *o)
{
    kvq_artifacts *a = NULL;
    kvq_status s = kvq_calibrate(m, t, o, NULL, &a);
    if (s) fail_msg("calibrate %s: %s", m, kvq_last_error());
    return a;
}

static kvq_attn_eval eval(const kvq_trace *t, const char *method, int bits, const kvq_artifacts *a,
                          const kvq_calib_opts *o)
{
    kvq_config c;
    kvq_config_default(&c);
    strcpy(c.method, method);
    c.bits = bits;
    kvq_attn_eval e;
    kvq_status s = kvq_calib_eval_keys(t, &c, a, o, &e);
    if (s) fail_msg("eval %s %d: %s", method, bits, kvq_last_error());
    return e;
}

// ---- options ----
static void test_opts(void **st)
{
    (void)st;
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    assert_int_equal(o.seed, 42);
    assert_true(fabs(o.noise_scale - 0.1) < 1e-12 && o.min_bits == 1 && o.max_bits == 4);
    assert_int_equal(kvq_calib_opts_set(&o, "noise-scale", "0.25"), KVQ_OK);
    assert_int_equal(kvq_calib_opts_set(&o, "per_head", "true"), KVQ_OK);
    assert_int_equal(kvq_calib_opts_set(&o, "seed", "123456789012"), KVQ_OK);
    assert_true(o.per_head && o.seed == 123456789012ull && o.noise_scale == 0.25);
    char buf[64];
    assert_int_equal(kvq_calib_opts_get(&o, "noise_scale", buf, sizeof buf), KVQ_OK);
    assert_string_equal(buf, "0.25");
    assert_int_equal(kvq_calib_opts_set(&o, "min_bits", "9"), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "min_bits"));
    assert_int_equal(kvq_calib_opts_set(&o, "bogus", "1"), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "known:"));
    const char *const *names = kvq_calib_opts_names();
    int n = 0;
    while (names[n]) n++;
    assert_true(n >= 10);
}

// ---- RateQuant allocator vs brute force ----
static double objective(const double *w, const kvq_rq_curve *c, const int *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += w[i] * c[i].alpha * exp(-c[i].beta * b[i]);
    return s;
}

// Best objective over every allocation in [lo, hi]^n with sum == total.
static double brute(const double *w, const kvq_rq_curve *c, int n, int lo, int hi, int total)
{
    int b[8];
    for (int i = 0; i < n; i++) b[i] = lo;
    double best = INFINITY;
    for (;;) {
        int sum = 0;
        for (int i = 0; i < n; i++) sum += b[i];
        if (sum == total) {
            double v = objective(w, c, b, n);
            if (v < best) best = v;
        }
        int i = 0;
        while (i < n && b[i] == hi) b[i++] = lo;
        if (i == n) break;
        b[i]++;
    }
    return best;
}

static void test_allocator_brute_force(void **st)
{
    (void)st;
    kvq_rng r;
    kvq_rng_seed(&r, 11);
    static const double targets[] = {1.0, 1.5, 2.0, 2.25, 2.5, 3.0, 3.75, 4.0};
    int cases = 0;
    for (int trial = 0; trial < 60; trial++) {
        int n = 2 + trial % 5, lo = 1 + trial % 2, hi = lo + 2 + trial % 3;
        double w[8];
        kvq_rq_curve c[8];
        memset(c, 0, sizeof c);
        for (int i = 0; i < n; i++) {
            w[i] = 0.01 + kvq_rng_uniform(&r) * 2;
            c[i].alpha = 0.1 + kvq_rng_uniform(&r) * 3;
            c[i].beta = 0.3 + kvq_rng_uniform(&r) * 1.5;
        }
        for (size_t k = 0; k < sizeof targets / sizeof targets[0]; k++) {
            double tgt = targets[k];
            int b[8];
            assert_int_equal(kvq_ratequant_allocate(w, c, n, tgt, lo, hi, b), KVQ_OK);
            long total = lround(tgt * n);
            if (total < (long)lo * n) total = (long)lo * n;
            if (total > (long)hi * n) total = (long)hi * n;
            int sum = 0;
            for (int i = 0; i < n; i++) {
                assert_in_range(b[i], lo, hi);
                sum += b[i];
            }
            assert_int_equal(sum, total);
            if (tgt * n == floor(tgt * n) && tgt >= lo && tgt <= hi)   // reachable: the mean is exact
                assert_true(fabs((double)sum / n - tgt) < 1e-12);
            double got = objective(w, c, b, n), best = brute(w, c, n, lo, hi, (int)total);
            assert_true(got <= best * (1 + 1e-12));
            cases++;
        }
    }
    assert_int_equal(cases, 60 * 8);
    // more sensitive units get more bits (same curves)
    double w2[3] = {1, 10, 100};
    kvq_rq_curve c2[3] = {{.alpha = 1, .beta = 1.3}, {.alpha = 1, .beta = 1.3}, {.alpha = 1, .beta = 1.3}};
    int b2[3];
    assert_int_equal(kvq_ratequant_allocate(w2, c2, 3, 2.0, 1, 4, b2), KVQ_OK);
    assert_true(b2[0] <= b2[1] && b2[1] <= b2[2] && b2[0] < b2[2]);
    assert_int_equal(kvq_ratequant_allocate(w2, c2, 0, 2.0, 1, 4, b2), KVQ_ERR_ARG);
}

// ---- RateQuant on the sample traces ----
// steps: also check the sensitivity and curve entry points on their own.
static void ratequant_check(const char *path, bool steps)
{
    kvq_trace *t = open_trace(path);
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    o.num_samples = 2;
    kvq_rq_sensitivity sens[KVQ_MAX_LAYERS];
    if (steps) {
        assert_int_equal(kvq_ratequant_sensitivities(t, &o, NULL, sens), KVQ_OK);
        for (int l = 0; l < t->n_layers; l++) {
            char want[32];
            snprintf(want, sizeof want, "layer_%d", l);
            assert_string_equal(sens[l].name, want);
            assert_true(sens[l].mean > 0 && sens[l].std >= 0 && sens[l].value_mean > 0);
        }
        static const double rates[] = {1, 1.5, 2, 3, 4};
        kvq_rq_curve cv[KVQ_MAX_LAYERS];
        assert_int_equal(kvq_ratequant_fit_curves(t, &o, rates, 5, NULL, cv), KVQ_OK);
        for (int l = 0; l < t->n_layers; l++) {
            assert_true(cv[l].beta > 0.8 && cv[l].beta < 2.0);   // ~ ln 4 per bit
            assert_true(cv[l].fit_error < 0.3);
            for (int i = 1; i < 5; i++) assert_true(cv[l].dist[i] < cv[l].dist[i - 1]);
        }
    }
    o.num_samples = 4;
    kvq_artifacts *a = calibrate("ratequant", t, &o);
    int nd;
    int64_t sh[8];
    const float *bits = kvq_artifacts_get(a, "ratequant.bits", &nd, sh);
    assert_non_null(bits);
    assert_int_equal(nd, 1);
    assert_int_equal(sh[0], t->n_layers);
    double sum = 0;
    for (int l = 0; l < t->n_layers; l++) sum += bits[l];
    assert_true(fabs(sum / t->n_layers - 2.0) < 1e-9);
    kvq_attn_eval alloc = eval(t, "ratequant", 2, a, &o), uni = eval(t, "turboquant_mse", 2, NULL, &o);
    print_message("figure: %s ratequant mean 2 bits: attention error %.5f (bits/coord held %.3f) vs uniform "
                  "turboquant_mse 2 bits %.5f (%.3f)\n", path, alloc.attn_rel_error, alloc.key_bits,
                  uni.attn_rel_error, uni.key_bits);
    assert_true(fabs(alloc.key_bits - uni.key_bits) < 1e-9);   // same mean bits
    assert_true(alloc.attn_rel_error < uni.attn_rel_error);
    // a bits sweep from the same calibration: 3 bits re-allocated from the curves
    kvq_attn_eval a3 = eval(t, "ratequant", 3, a, &o), u3 = eval(t, "turboquant_mse", 3, NULL, &o);
    print_message("figure: %s ratequant mean 3 bits: %.5f vs uniform %.5f\n", path, a3.attn_rel_error,
                  u3.attn_rel_error);
    assert_true(fabs(a3.key_bits - u3.key_bits) < 1e-9);
    assert_true(a3.attn_rel_error < u3.attn_rel_error);
    kvq_artifacts_free(a);
    kvq_trace_free(t);
}

static void test_ratequant_code(void **st) { (void)st; ratequant_check(CODE, true); }
static void test_ratequant_prose(void **st) { (void)st; ratequant_check(PROSE, false); }

static void test_ratequant_per_head(void **st)
{
    (void)st;
    kvq_trace *t = open_trace(CODE);
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    o.per_head = true;
    o.num_samples = 2;
    o.target_bits = 2.5;
    kvq_artifacts *a = calibrate("ratequant", t, &o);
    int nd;
    int64_t sh[8];
    const float *bits = kvq_artifacts_get(a, "ratequant.bits", &nd, sh);
    assert_int_equal(nd, 2);
    assert_true(sh[0] == t->n_layers && sh[1] == t->n_kv_heads);
    double sum = 0;
    for (int i = 0; i < t->n_layers * t->n_kv_heads; i++) sum += bits[i];
    assert_true(fabs(sum / (t->n_layers * t->n_kv_heads) - 2.5) < 1e-9);
    kvq_config c;
    kvq_config_default(&c);
    strcpy(c.method, "ratequant");
    kvq_plan_params pp = {.bits = 3 /* round(2.5) */, .head_dim = t->head_dim, .layer = 1, .kv_head = 1, .cfg = &c, .art = a};
    kvq_quantizer q;
    assert_int_equal(kvq_quantizer_init(&q, "ratequant", &pp), KVQ_OK);
    kvq_quantizer_free(&q);
    kvq_artifacts_free(a);
    kvq_trace_free(t);
}

// ---- VecInfer ----
static void test_vecinfer_transform_exact(void **st)
{
    (void)st;
    kvq_rng r;
    kvq_rng_seed(&r, 5);
    for (int d = 64; d <= 256; d *= 2)
        for (int trial = 0; trial < 50; trial++) {
            float lam[256], q[256], k[256], qt[256], kt[256], back[256];
            for (int i = 0; i < d; i++) {
                lam[i] = (float)(0.2 + 4 * kvq_rng_uniform(&r));
                q[i] = (float)kvq_rng_gauss(&r);
                k[i] = (float)(kvq_rng_gauss(&r) * (i % 17 == 0 ? 20 : 1));   // outlier channels
            }
            kvq_vecinfer_transform_key(lam, k, kt, d);
            kvq_vecinfer_transform_query(lam, q, qt, d);
            double a = 0, b = 0, nq = 0, nk = 0;
            for (int i = 0; i < d; i++) {
                a += (double)q[i] * k[i];
                b += (double)qt[i] * kt[i];
                nq += (double)q[i] * q[i];
                nk += (double)k[i] * k[i];
            }
            assert_true(fabs(a - b) <= 1e-5 * sqrt(nq * nk));
            kvq_vecinfer_untransform_key(lam, kt, back, d);
            for (int i = 0; i < d; i++) assert_true(fabsf(back[i] - k[i]) <= 1e-4f * (1 + fabsf(k[i])));
        }
    assert_int_equal(kvq_vecinfer_subspaces(2, 128, 256), 32);
    assert_int_equal(kvq_vecinfer_subspaces(1, 128, 256), 16);
    assert_int_equal(kvq_vecinfer_subspaces(4, 128, 256), 64);
    assert_int_equal(kvq_vecinfer_subspaces(3, 128, 256), 0);   // 48 subspaces do not divide 128
}

static void test_vecinfer_needs_calibration(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    kvq_plan_params pp = {.bits = 2, .head_dim = 128, .cfg = &c};
    kvq_quantizer q;
    assert_int_equal(kvq_quantizer_init(&q, "vecinfer", &pp), KVQ_ERR_NEEDS_CALIBRATION);
    assert_non_null(strstr(kvq_last_error(), "precompute --method vecinfer"));
    assert_int_equal(kvq_quantizer_init(&q, "spectral", &pp), KVQ_ERR_NEEDS_CALIBRATION);
    assert_non_null(strstr(kvq_last_error(), "precompute --method spectral"));
    assert_int_equal(kvq_quantizer_init(&q, "ratequant", &pp), KVQ_ERR_NEEDS_CALIBRATION);
    assert_non_null(strstr(kvq_last_error(), "precompute --method ratequant"));
    pp.head_dim = 96;
    assert_int_equal(kvq_quantizer_init(&q, "vecinfer", &pp), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "power of two"));
}

// score(q, codes) must equal q . decode(codes) (the LUT is exact).
static void check_score_matches_decode(const kvq_trace *t, const char *method, int bits, const kvq_artifacts *a,
                                       int layer)
{
    kvq_config c;
    kvq_config_default(&c);
    strcpy(c.method, method);
    int d = t->head_dim, n = 64;
    kvq_plan_params pp = {.bits = bits, .head_dim = d, .layer = layer, .kv_head = 1, .cfg = &c, .art = a};
    kvq_quantizer q;
    if (kvq_quantizer_init(&q, method, &pp)) fail_msg("%s: %s", method, kvq_last_error());
    assert_int_equal(q.bpv, (size_t)(bits * d / 8));   // records hold exactly bits x d
    float *k = malloc(sizeof(float) * (size_t)t->n_tokens * d), *qv = malloc(sizeof(float) * (size_t)t->n_queries * d);
    float *dec = malloc(sizeof(float) * (size_t)n * d), sc[64];
    uint8_t *codes = malloc(q.bpv * (size_t)n);
    void *qs = malloc(q.qbytes);
    assert_int_equal(kvq_trace_keys(t, layer, 1, k), KVQ_OK);
    assert_int_equal(kvq_trace_queries(t, layer, 2, qv), KVQ_OK);
    q.m->encode(q.plan, k + (size_t)500 * d, (size_t)n, codes);
    q.m->decode(q.plan, codes, (size_t)n, dec);
    q.m->prepare_query(q.plan, qv + (size_t)700 * d, qs);
    q.m->score(q.plan, qs, codes, (size_t)n, sc);
    for (int i = 0; i < n; i++) {
        double ref = 0, nq = 0, nk = 0;
        for (int j = 0; j < d; j++) {
            ref += (double)qv[(size_t)700 * d + j] * dec[(size_t)i * d + j];
            nq += (double)qv[(size_t)700 * d + j] * qv[(size_t)700 * d + j];
            nk += (double)dec[(size_t)i * d + j] * dec[(size_t)i * d + j];
        }
        assert_true(fabs(sc[i] - ref) <= 1e-4 * sqrt(nq * nk) + 1e-4);
    }
    free(k); free(qv); free(dec); free(codes); free(qs);
    kvq_quantizer_free(&q);
}

// The subspace k-means run as pool tasks: 1 and 3 threads give the same bytes.
static void test_vecinfer_threads_same_artifacts(void **st)
{
    (void)st;
    kvq_trace *t = open_trace(CODE);
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    o.layers = 1;
    o.max_iter = 4;
    kvq_threads_set(1);
    kvq_artifacts *a = calibrate("vecinfer", t, &o);
    kvq_threads_set(3);
    kvq_artifacts *b = calibrate("vecinfer", t, &o);
    kvq_threads_set(0);
    int nd;
    int64_t sh[8];
    const float *ca = kvq_artifacts_get(a, "vecinfer.codebook", &nd, sh), *cb = kvq_artifacts_get(b, "vecinfer.codebook", NULL, NULL);
    assert_non_null(ca);
    assert_non_null(cb);
    assert_memory_equal(ca, cb, sizeof(float) * (size_t)(sh[0] * sh[1] * sh[2] * sh[3]));
    kvq_artifacts_free(a);
    kvq_artifacts_free(b);
    kvq_trace_free(t);
}

static void test_vecinfer_calibrated(void **st)
{
    (void)st;
    kvq_trace *t = open_trace(CODE), *t2 = open_trace(PROSE);
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    o.layers = 2;
    o.max_iter = 8;
    kvq_artifacts *a = calibrate("vecinfer", t, &o);
    int nd;
    int64_t sh[8];
    assert_non_null(kvq_artifacts_get(a, "vecinfer.codebook", &nd, sh));
    assert_int_equal(nd, 4);
    assert_true(sh[0] == 2 && sh[1] == 32 && sh[2] == 256 && sh[3] == 4);   // 2 bits on d = 128
    const float *lam = kvq_artifacts_get(a, "vecinfer.smooth", &nd, sh);
    assert_true(nd == 2 && sh[0] == 2 && sh[1] == t->head_dim);
    // lambda = sqrt(max |K|) per channel over both kv heads
    float *k = malloc(sizeof(float) * (size_t)t->n_tokens * t->head_dim);
    float mx[KVQ_MAX_HEAD_DIM] = {0};
    for (int h = 0; h < t->n_kv_heads; h++) {
        assert_int_equal(kvq_trace_keys(t, 1, h, k), KVQ_OK);
        for (int v = 0; v < t->n_tokens; v++)
            for (int i = 0; i < t->head_dim; i++) mx[i] = fmaxf(mx[i], fabsf(k[(size_t)v * t->head_dim + i]));
    }
    for (int i = 0; i < t->head_dim; i++) assert_true(fabsf(lam[t->head_dim + i] - sqrtf(mx[i])) < 1e-5f);
    free(k);
    check_score_matches_decode(t, "vecinfer", 2, a, 1);
    kvq_config c;
    kvq_config_default(&c);
    kvq_plan_params pp = {.bits = 3, .head_dim = t->head_dim, .cfg = &c, .art = a};
    kvq_quantizer q;
    assert_int_equal(kvq_quantizer_init(&q, "vecinfer", &pp), KVQ_ERR_NEEDS_CALIBRATION);
    assert_non_null(strstr(kvq_last_error(), "--target-bits 3"));
    pp.bits = 2;
    pp.layer = 2;   // not calibrated (layers = 2)
    assert_int_equal(kvq_quantizer_init(&q, "vecinfer", &pp), KVQ_ERR_NEEDS_CALIBRATION);
    kvq_attn_eval vi = eval(t, "vecinfer", 2, a, &o), tq = eval(t, "turboquant_mse", 2, NULL, &o);
    print_message("figure: code (calibrated on code, layers 0-1): vecinfer 2 bits attention error %.5f (%.3f "
                  "bits/coord) vs turboquant_mse 2 bits %.5f (%.3f)\n", vi.attn_rel_error, vi.key_bits,
                  tq.attn_rel_error, tq.key_bits);
    assert_true(vi.attn_rel_error < tq.attn_rel_error);
    kvq_attn_eval vi2 = eval(t2, "vecinfer", 2, a, &o), tq2 = eval(t2, "turboquant_mse", 2, NULL, &o);
    // Reported, not asserted: codebooks trained on 2 layers x 1024 tokens of code
    // with 8 iterations do not always carry over to prose (the paper's setting,
    // checked above, calibrates on the data it serves).
    print_message("figure: prose (calibrated on code, layers 0-1): vecinfer %.5f vs turboquant_mse %.5f\n",
                  vi2.attn_rel_error, tq2.attn_rel_error);
    assert_true(vi2.attn_rel_error < 2 * tq2.attn_rel_error);
    kvq_artifacts_free(a);
    kvq_trace_free(t);
    kvq_trace_free(t2);
}

// ---- SpectralQuant ----
static void test_spectral_allocate(void **st)
{
    (void)st;
    float eig[128];
    for (int i = 0; i < 128; i++) eig[i] = (float)(100.0 * exp(-0.1 * i));
    int b[128];
    for (int tb = 1; tb <= 4; tb++) {
        kvq_spectral_allocate(eig, 128, tb, 0, 0, b);
        int sum = 0;
        for (int i = 0; i < 128; i++) {
            sum += b[i];
            if (i) assert_true(b[i] <= b[i - 1]);   // descending spectrum => non-increasing bits
            assert_in_range(b[i], 0, KVQ_SPECTRAL_MAX_BITS);
        }
        assert_int_equal(sum, tb * 128);
        // greedy optimality: no bit moves from dim j to dim i lower eig/4^b
        double worst_given = INFINITY, best_left = 0;
        for (int i = 0; i < 128; i++) {
            if (b[i] > 0) worst_given = fmin(worst_given, eig[i] / pow(4, b[i] - 1));
            if (b[i] < KVQ_SPECTRAL_MAX_BITS) best_left = fmax(best_left, eig[i] / pow(4, b[i]));
        }
        assert_true(best_left <= worst_given * (1 + 1e-6));
    }
    double de = kvq_spectral_d_eff(eig, 128);
    kvq_spectral_allocate(eig, 128, 0, 4, 1, b);
    int ns = 0;
    for (int i = 0; i < 128; i++) ns += b[i] == 4;
    assert_int_equal(ns, (int)ceil(de));
    for (int i = ns; i < 128; i++) assert_int_equal(b[i], 1);
    float flat[16];
    for (int i = 0; i < 16; i++) flat[i] = 2.0f;
    assert_true(fabs(kvq_spectral_d_eff(flat, 16) - 16) < 1e-9);
}

// max_bits: compare at 2..max_bits (and 1 bit when max_bits == 3).
static void spectral_check(kvq_trace *t, kvq_trace *other, int max_bits)
{
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    kvq_artifacts *a = calibrate("spectral", t, &o);
    int d = t->head_dim;
    for (int l = 0; l < t->n_layers; l++)
        for (int h = 0; h < t->n_kv_heads; h++) {
            char name[64];
            int nd;
            int64_t sh[8];
            snprintf(name, sizeof name, "spectral.rotation.l%d.h%d", l, h);
            const float *u = kvq_artifacts_get(a, name, &nd, sh);
            assert_non_null(u);
            assert_true(nd == 2 && sh[0] == d && sh[1] == d);
            for (int i = 0; i < d; i += 7)   // orthonormal rows (sampled pairs)
                for (int j = 0; j < d; j += 5) {
                    double s = 0;
                    for (int x = 0; x < d; x++) s += (double)u[(size_t)i * d + x] * u[(size_t)j * d + x];
                    assert_true(fabs(s - (i == j)) < 1e-4);
                }
            snprintf(name, sizeof name, "spectral.eigenvalues.l%d.h%d", l, h);
            const float *e = kvq_artifacts_get(a, name, NULL, NULL);
            for (int i = 1; i < d; i++) assert_true(e[i] <= e[i - 1] && e[i] >= 0);
            const float *de = kvq_artifacts_get(a, "spectral.d_eff", NULL, NULL);
            assert_true(fabs(de[l * t->n_kv_heads + h] - kvq_spectral_d_eff(e, d)) < 1e-3);
        }
    check_score_matches_decode(t, "spectral", 2, a, 3);
    for (int b = max_bits == 3 ? 1 : 2; b <= max_bits; b++) {
        kvq_attn_eval sp = eval(t, "spectral", b, a, &o), tq = eval(t, "turboquant_mse", b, NULL, &o);
        print_message("figure: %s spectral %d bits: key cosine %.4f (%.3f bits/coord, attention error %.5f) vs "
                      "turboquant_mse %.4f (%.3f, %.5f)\n", t->path, b, sp.key_cosine, sp.key_bits,
                      sp.attn_rel_error, tq.key_cosine, tq.key_bits, tq.attn_rel_error);
        assert_true(sp.key_bits <= tq.key_bits);
        assert_true(sp.key_cosine > tq.key_cosine);
    }
    kvq_attn_eval sp = eval(other, "spectral", 2, a, &o), tq = eval(other, "turboquant_mse", 2, NULL, &o);
    print_message("figure: %s with eigenbases from %s, 2 bits: key cosine %.4f vs turboquant_mse %.4f\n",
                  other->path, t->path, sp.key_cosine, tq.key_cosine);
    assert_true(sp.key_cosine > tq.key_cosine);
    kvq_artifacts_free(a);
}

static void test_spectral_code(void **st)
{
    (void)st;
    kvq_trace *t = open_trace(CODE), *t2 = open_trace(PROSE);
    spectral_check(t, t2, 3);
    spectral_check(t2, t, 2);
    kvq_trace_free(t);
    kvq_trace_free(t2);
}

// ---- progress, cancellation, determinism ----
typedef struct {
    int calls, cancel_at;
    double last;
    bool monotone, saw_done;
} prog_state;

static bool prog_fn(double f, const char *stage, double eta, void *user)
{
    prog_state *p = user;
    (void)eta;
    p->calls++;
    if (f < p->last - 1e-12) p->monotone = false;
    p->last = f;
    if (!strcmp(stage, "done") && f == 1.0) p->saw_done = true;
    return p->cancel_at > 0 && p->calls >= p->cancel_at;
}

static void test_progress_and_cancel(void **st)
{
    (void)st;
    kvq_trace *t = open_trace(CODE);
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    o.num_samples = 1;
    o.layers = 2;
    o.max_iter = 2;
    o.sequence_length = 512;
    static const char *const methods[] = {"ratequant", "spectral", "vecinfer", "rabitq"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        prog_state ps = {.monotone = true};
        kvq_progress p = {.fn = prog_fn, .user = &ps};
        kvq_artifacts *a = (kvq_artifacts *)1;
        assert_int_equal(kvq_calibrate(methods[i], t, &o, &p, &a), KVQ_OK);
        assert_true(ps.monotone && ps.saw_done && ps.calls >= 2);
        kvq_artifacts_free(a);
        prog_state pc = {.monotone = true, .cancel_at = 1};
        kvq_progress pcan = {.fn = prog_fn, .user = &pc};
        a = (kvq_artifacts *)1;
        assert_int_equal(kvq_calibrate(methods[i], t, &o, &pcan, &a), KVQ_ERR_CANCELLED);
        assert_null(a);   // nothing produced
        assert_non_null(strstr(kvq_last_error(), "cancelled"));
    }
    kvq_artifacts *a;
    assert_int_equal(kvq_calibrate("turboquant_mse", t, &o, NULL, &a), KVQ_ERR_UNKNOWN_METHOD);
    assert_non_null(strstr(kvq_last_error(), "vecinfer"));
    o.layers = 99;
    assert_int_equal(kvq_calibrate("spectral", t, &o, NULL, &a), KVQ_ERR_ARG);
    kvq_trace_free(t);
}

static bool same_artifacts(const kvq_artifacts *a, const kvq_artifacts *b)
{
    if (kvq_artifacts_count(a) != kvq_artifacts_count(b)) return false;
    for (int i = 0; i < kvq_artifacts_count(a); i++) {
        int na, nb;
        int64_t sa[8], sb[8];
        const char *name = kvq_artifacts_name(a, i);
        const float *x = kvq_artifacts_get(a, name, &na, sa), *y = kvq_artifacts_get(b, name, &nb, sb);
        if (!y || na != nb || memcmp(sa, sb, sizeof(int64_t) * (size_t)na)) return false;
        size_t n = 1;
        for (int d = 0; d < na; d++) n *= (size_t)sa[d];
        if (memcmp(x, y, n * sizeof(float))) return false;
    }
    return true;
}

// sensitivity_tokens: a seeded token sample, recorded in the metadata; 1 and
// 2 threads (units run on the pool) give the same bytes for every calibrator
// that streams; on a quarter of the tokens the sensitivities stay near the
// full ones (same ranking of the extreme layers).
static void test_token_sample_and_threads(void **st)
{
    (void)st;
    kvq_trace *t = open_trace(CODE);
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    o.layers = 4;
    o.num_samples = 1;
    o.max_iter = 2;
    kvq_artifacts *full = calibrate("ratequant", t, &o);
    assert_string_equal(kvq_artifacts_meta(full, "sensitivity.tokens"), "1024");   // default 2048 > 1024
    o.sensitivity_tokens = 256;
    kvq_threads_set(1);
    kvq_artifacts *a = calibrate("ratequant", t, &o);
    kvq_threads_set(2);
    kvq_artifacts *b = calibrate("ratequant", t, &o);
    assert_true(same_artifacts(a, b));
    assert_string_equal(kvq_artifacts_meta(a, "sensitivity.tokens"), "256");
    assert_string_equal(kvq_artifacts_meta(a, "option.sensitivity_tokens"), "256");
    const float *sf = kvq_artifacts_get(full, "ratequant.sensitivity", NULL, NULL);
    const float *ss = kvq_artifacts_get(a, "ratequant.sensitivity", NULL, NULL);
    int lo_f = 0, lo_s = 0;
    for (int l = 0; l < 4; l++) {
        print_message("figure: layer %d key sensitivity on 256 sampled tokens %.5f vs all 1024 %.5f\n", l, ss[l * 4],
                      sf[l * 4]);
        assert_true(ss[l * 4] > 0.3 * sf[l * 4] && ss[l * 4] < 3 * sf[l * 4]);
        if (sf[l * 4] < sf[lo_f * 4]) lo_f = l;
        if (ss[l * 4] < ss[lo_s * 4]) lo_s = l;
    }
    assert_int_equal(lo_s, lo_f);
    o.seed = 43;   // another seed draws another sample
    kvq_artifacts *c = calibrate("ratequant", t, &o);
    assert_false(same_artifacts(a, c));
    kvq_artifacts_free(full), kvq_artifacts_free(a), kvq_artifacts_free(b), kvq_artifacts_free(c);
    // the other streaming calibrators: thread count does not change the bytes
    static const char *const methods[] = {"spectral", "rabitq", "commvq"};
    o.layers = 2;
    o.sequence_length = 256;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        kvq_threads_set(1);
        kvq_artifacts *x = calibrate(methods[i], t, &o);
        kvq_threads_set(2);
        kvq_artifacts *y = calibrate(methods[i], t, &o);
        assert_true(same_artifacts(x, y));
        kvq_artifacts_free(x), kvq_artifacts_free(y);
    }
    kvq_threads_set(0);
    kvq_trace_free(t);
}

static void test_deterministic(void **st)
{
    (void)st;
    kvq_trace *t = open_trace(CODE);
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    o.layers = 1;
    o.max_iter = 3;
    o.num_samples = 2;
    o.sequence_length = 512;
    static const char *const methods[] = {"ratequant", "spectral", "vecinfer", "rabitq"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        kvq_artifacts *a = calibrate(methods[i], t, &o), *b = calibrate(methods[i], t, &o);
        assert_true(same_artifacts(a, b));
        assert_string_equal(kvq_artifacts_meta(a, "method"), methods[i]);
        assert_string_equal(kvq_artifacts_meta(a, "trace.layers"), "1");
        assert_string_equal(kvq_artifacts_meta(a, "option.max_iter"), "3");
        if (!strcmp(methods[i], "vecinfer")) {   // the seed matters where there is randomness
            kvq_calib_opts o2 = o;
            o2.seed = 43;
            kvq_artifacts *c = calibrate(methods[i], t, &o2);
            assert_false(same_artifacts(a, c));
            kvq_artifacts_free(c);
        }
        kvq_artifacts_free(a);
        kvq_artifacts_free(b);
    }
    kvq_trace_free(t);
}

static void test_commvq_row(void **st)
{
    (void)st;
    kvq_trace *t = open_trace(CODE);
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    o.layers = 1;
    o.sequence_length = 512;
    o.max_iter = 1;
    o.target_bits = 1;
    kvq_artifacts *a = calibrate("commvq", t, &o);
    int nd;
    int64_t sh[8];
    assert_non_null(kvq_artifacts_get(a, "commvq.codebooks.l0.h1", &nd, sh));
    // default codebook size for commvq is 4 (not vecinfer's 256): R = bits * d / log2(4)
    assert_true(nd == 3 && sh[0] == 64 && sh[1] == 4 && sh[2] == t->head_dim);
    kvq_artifacts_free(a);
    kvq_trace_free(t);
}

// ---- RateQuant sensitivities from the model (sample_data/refmodel made the
// sample traces); 64 tokens, 1 draw per layer to stay fast ----
#define REFMODEL "sample_data/refmodel"

static void test_ratequant_model(void **st)
{
    (void)st;
    kvq_trace *t = open_trace(CODE);
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    o.num_samples = 1;
    o.sequence_length = 64;
    o.target_bits = 2.5;
    snprintf(o.model, sizeof o.model, "%s", REFMODEL);
    kvq_artifacts *a = calibrate("ratequant", t, &o);
    int nd;
    int64_t sh[8];
    const float *bits = kvq_artifacts_get(a, "ratequant.bits", &nd, sh);
    const float *sens = kvq_artifacts_get(a, "ratequant.sensitivity", NULL, NULL);
    assert_true(bits && sens && nd == 1 && sh[0] == t->n_layers);
    double sum = 0;
    for (int l = 0; l < t->n_layers; l++) {
        print_message("figure: model sensitivity layer_%d: %.3g bits/token KL, gain %.3g, %g bits\n", l, sens[l * 4],
                      sens[l * 4 + 3], bits[l]);
        assert_true(sens[l * 4] > 0 && isfinite(sens[l * 4]) && sens[l * 4 + 3] > 0);
        assert_true(sens[l * 4 + 1] == 0 && sens[l * 4 + 2] == 0);   // 1 draw; keys only
        sum += bits[l];
    }
    assert_true(fabs(sum / t->n_layers - 2.5) < 1e-9);
    assert_string_equal(kvq_artifacts_meta(a, "sensitivity_source"), "model");
    assert_string_equal(kvq_artifacts_meta(a, "option.model"), REFMODEL);
    // the entry point on a loaded model gives the calibrator's numbers
    kvq_model *m;
    assert_int_equal(kvq_model_load(REFMODEL, &m), KVQ_OK);
    kvq_rq_sensitivity rs[KVQ_MAX_LAYERS];
    double gain[KVQ_MAX_LAYERS];
    // (the entry point runs OpenBLAS on one thread itself, as the calibrator does:
    // its thread split changes last bits of these near-zero KLs on some cores)
    assert_int_equal(kvq_ratequant_model_sensitivities(t, m, &o, NULL, rs, gain), KVQ_OK);
    for (int l = 0; l < t->n_layers; l++) {
        assert_true(fabs(rs[l].mean - sens[l * 4]) <= 1e-6 * fabs(rs[l].mean));
        assert_true(fabs(gain[l] - sens[l * 4 + 3]) <= 1e-6 * gain[l]);
        // noise energy relative to the keys is close to noise_scale^2
        assert_true(gain[l] > rs[l].mean / 0.011 && gain[l] < rs[l].mean / 0.005);
    }
    kvq_artifacts_free(a);
    // errors: per_head, no tokens, cancellation, a trace of another shape
    o.per_head = true;
    assert_int_equal(kvq_ratequant_model_sensitivities(t, m, &o, NULL, rs, gain), KVQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(kvq_last_error(), "per_head"));
    o.per_head = false;
    int32_t *tok = t->tokens;
    t->tokens = NULL;
    assert_int_equal(kvq_calibrate("ratequant", t, &o, NULL, &a), KVQ_ERR_FORMAT);
    assert_non_null(strstr(kvq_last_error(), "no 'tokens' tensor"));
    t->tokens = tok;
    prog_state pc = {.monotone = true, .cancel_at = 2};   // 1 = loading, 2 = the first noisy run
    kvq_progress pcan = {.fn = prog_fn, .user = &pc};
    assert_int_equal(kvq_calibrate("ratequant", t, &o, &pcan, &a), KVQ_ERR_CANCELLED);
    assert_null(a);
    kvq_trace *small = open_trace("tests/data/tr_valid.safetensors");
    assert_int_equal(kvq_calibrate("ratequant", small, &o, NULL, &a), KVQ_ERR_SHAPE);
    print_message("shape mismatch: %s\n", kvq_last_error());
    assert_non_null(strstr(kvq_last_error(), "layers 6 vs 2, head_dim 128 vs 8 (model vs trace)"));
    assert_int_equal(kvq_ratequant_model_sensitivities(small, m, &o, NULL, rs, gain), KVQ_ERR_SHAPE);
    // without a model the source is the trace
    o.model[0] = 0;
    o.layers = 1;
    a = calibrate("ratequant", t, &o);
    assert_string_equal(kvq_artifacts_meta(a, "sensitivity_source"), "trace");
    assert_null(kvq_artifacts_meta(a, "option.model"));
    kvq_artifacts_free(a);
    kvq_trace_free(small);
    kvq_model_free(m);
    kvq_trace_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opts),
        cmocka_unit_test(test_allocator_brute_force),
        cmocka_unit_test(test_ratequant_code),
        cmocka_unit_test(test_ratequant_prose),
        cmocka_unit_test(test_ratequant_per_head),
        cmocka_unit_test(test_ratequant_model),
        cmocka_unit_test(test_vecinfer_transform_exact),
        cmocka_unit_test(test_vecinfer_needs_calibration),
        cmocka_unit_test(test_vecinfer_calibrated),
        cmocka_unit_test(test_vecinfer_threads_same_artifacts),
        cmocka_unit_test(test_spectral_allocate),
        cmocka_unit_test(test_spectral_code),
        cmocka_unit_test(test_progress_and_cancel),
        cmocka_unit_test(test_token_sample_and_threads),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_commvq_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
