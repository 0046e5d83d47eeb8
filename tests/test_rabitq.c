// test_rabitq.c — RaBitQ: 1-bit estimator errors inside the paper's bound
// (eps0 = 1.9) for >= 99% of pairs, unbiased; extended codes (bits > 1)
// tighten <o_bar, o> and the error; missing centroids name the calibration;
// record sizes; training on a sample trace is deterministic.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "artifacts.h"
#include "calib/train_rabitq.h"
#include "methods/rabitq.h"
#include "rng.h"
#include "trace.h"
#include "test_util.h"

enum { D = 128, NK = 1000, NQ = 100, NC = 8 };

static kvq_config cfg;

// Clustered keys: NC centres of norm ~3 plus unit-scale Gaussian spread.
static float *clustered_keys(uint64_t seed)
{
    float *k = malloc(sizeof(float) * NK * D), cen[NC][D];
    kvq_rng r;
    kvq_rng_seed(&r, seed);
    for (int c = 0; c < NC; c++) {
        kvq_rng_unit_vector(&r, cen[c], D);
        for (int j = 0; j < D; j++) cen[c][j] *= 3;
    }
    for (int i = 0; i < NK; i++)
        for (int j = 0; j < D; j++)
            k[(size_t)i * D + j] = cen[i % NC][j] + (float)kvq_rng_gauss(&r) / sqrtf(D);
    return k;
}

static kvq_artifacts *train(const float *k)
{
    kvq_artifacts *a;
    assert_int_equal(kvq_artifacts_new(&a), KVQ_OK);
    kvq_train_rabitq_opts o = {.num_clusters = NC, .seed = 1};
    double inertia;
    assert_int_equal(kvq_train_rabitq_stream(k, NK, D, 0, 0, &o, a, &inertia), KVQ_OK);
    assert_true(inertia > 0);
    return a;
}

static void make(kvq_quantizer *q, int bits, bool hadamard, const kvq_artifacts *a)
{
    kvq_config_default(&cfg);
    cfg.num_clusters = NC;
    cfg.use_hadamard = hadamard;
    kvq_plan_params pp = {.bits = bits, .head_dim = D, .cfg = &cfg, .art = a};
    if (kvq_quantizer_init(q, "rabitq", &pp)) fail_msg("%s", kvq_last_error());
}

typedef struct { double frac_in, frac_in_26, predicted, mean_err, sem, mean_abs, mean_bound, mean_ipo; } bound_stats;

// Errors of the unit-residual estimator <o_bar,q>/<o_bar,o> vs <o,q>, unit q.
static bound_stats measure(int bits, bool hadamard)
{
    float *k = clustered_keys(5);
    kvq_artifacts *a = train(k);
    kvq_quantizer q;
    make(&q, bits, hadamard, a);
    uint8_t *codes = malloc(q.bpv * NK);
    q.m->encode(q.plan, k, NK, codes);
    int nc;
    const float *cent = kvq_rabitq_centroids(q.plan, &nc);
    assert_int_equal(nc, NC);
    float *qv = malloc(sizeof(float) * NQ * D), *sc = malloc(sizeof(float) * NK);
    void *qs = malloc(q.qbytes);
    kvq_rng r;
    kvq_rng_seed(&r, 99);
    for (int t = 0; t < NQ; t++) kvq_rng_unit_vector(&r, qv + (size_t)t * D, D);
    bound_stats bs = {0};
    double s = 0, s2 = 0;
    long inside = 0, inside26 = 0, total = 0;
    double pred = 0;
    for (int t = 0; t < NQ; t++) {
        const float *qt = qv + (size_t)t * D;
        q.m->prepare_query(q.plan, qt, qs);
        q.m->score(q.plan, qs, codes, NK, sc);
        for (int i = 0; i < NK; i++) {
            kvq_rabitq_record f;
            kvq_rabitq_read_record(q.plan, codes + (size_t)i * q.bpv, &f);
            const float *c = cent + (size_t)f.cluster * D, *ki = k + (size_t)i * D;
            float o[D];
            double nn = 0;
            for (int j = 0; j < D; j++) o[j] = ki[j] - c[j], nn += (double)o[j] * o[j];
            for (int j = 0; j < D; j++) o[j] /= (float)sqrt(nn);
            const float *qsf = qs;
            double est = (sc[i] - qsf[D + 1 + f.cluster]) / f.rnorm;   // score = <c,q> + |r| est
            double err = est - tu_dot(o, qt, D);
            double bound = kvq_rabitq_error_bound(f.ipo, D, 1.9);
            inside += fabs(err) <= bound;
            inside26 += fabs(err) <= kvq_rabitq_error_bound(f.ipo, D, 2.6);
            // err = (sqrt(1-ipo^2)/ipo) <e1, q>, e1 uniform on the unit sphere
            // of o's complement: <e1,q> ~ |q_perp| N(0, 1/(d-1)), so the bound
            // holds with probability erf(eps0 / (sqrt 2 |q_perp|)).
            double oq = tu_dot(o, qt, D), qperp = sqrt(fmax(1e-12, 1 - oq * oq));
            pred += erf(1.9 / (sqrt(2.0) * qperp));
            total++;
            s += err, s2 += err * err;
            bs.mean_abs += fabs(err);
            bs.mean_bound += bound;
            if (t == 0) bs.mean_ipo += f.ipo / NK;
        }
    }
    bs.frac_in = (double)inside / total;
    bs.frac_in_26 = (double)inside26 / total;
    bs.predicted = pred / total;
    bs.mean_err = s / total;
    bs.sem = sqrt((s2 / total - bs.mean_err * bs.mean_err) / total);
    bs.mean_abs /= total;
    bs.mean_bound /= total;
    print_message("rabitq %d-bit %s: inside bound (eps0 1.9) %.2f%% (theory %.2f%%), "
                  "eps0 2.6: %.2f%%; mean |err| %.4f vs mean bound %.4f, "
                  "mean err %.1e (3 SE %.1e), mean <o_bar,o> %.4f\n",
                  bits, hadamard ? "hadamard" : "dense", 100 * bs.frac_in, 100 * bs.predicted,
                  100 * bs.frac_in_26, bs.mean_abs,
                  bs.mean_bound, bs.mean_err, 3 * bs.sem, bs.mean_ipo);
    kvq_quantizer_free(&q);
    kvq_artifacts_free(a);
    free(k), free(codes), free(qv), free(sc), free(qs);
    return bs;
}

static void test_one_bit_bound(void **state)
{
    (void)state;
    // The issue asks for >= 99% of pairs inside the eps0 = 1.9 bound. For
    // random queries that is unreachable by any correct implementation: the
    // normalised error is ~N(0, |q_perp|^2), so eps0 = 1.9 covers ~94.3% of
    // pairs (two-sided Gaussian at 1.9 sigma); 99% needs eps0 ~ 2.6. We assert
    // the observed fraction matches the theory and that eps0 = 2.6 covers 99%.
    bound_stats b = measure(1, false);
    assert_true(fabs(b.frac_in - b.predicted) < 0.01);
    assert_true(b.frac_in_26 >= 0.99);
    assert_true(fabs(b.mean_err) < 3 * b.sem);          // unbiased
    assert_true(fabs(b.mean_ipo - 0.798) < 0.02);      // E<o_bar,o> ~ sqrt(2/pi)
    bound_stats h = measure(1, true);                   // randomized Hadamard
    assert_true(fabs(h.frac_in - h.predicted) < 0.015);
}

static void test_extended_bits(void **state)
{
    (void)state;
    double prev_abs = INFINITY, prev_ipo = 0;
    for (int b = 1; b <= 4; b++) {
        bound_stats s = measure(b, false);
        assert_true(s.mean_abs < prev_abs);
        assert_true(s.mean_ipo > prev_ipo);
        assert_true(fabs(s.mean_err) < 3 * s.sem + 1e-4);
        prev_abs = s.mean_abs, prev_ipo = s.mean_ipo;
    }
    assert_true(prev_ipo > 0.99);   // 4-bit extended codes: cosine ~0.995
}

static void test_decode_and_sizes(void **state)
{
    (void)state;
    float *k = clustered_keys(6), *dec = malloc(sizeof(float) * NK * D);
    kvq_artifacts *a = train(k);
    double prev = INFINITY;
    for (int b = 1; b <= 8; b++) {
        kvq_quantizer q;
        make(&q, b, true, a);
        assert_int_equal(q.bpv, 6 + (b > 1 ? 2 : 0) + (size_t)(D * b + 7) / 8);
        uint8_t *codes = malloc(q.bpv * NK + 8);
        memset(codes, 0x5A, q.bpv * NK + 8);
        q.m->encode(q.plan, k, NK, codes);
        for (int i = 0; i < 8; i++) assert_int_equal(codes[q.bpv * NK + i], 0x5A);
        q.m->decode(q.plan, codes, NK, dec);
        double e = 0;
        for (int i = 0; i < NK; i++) {
            double ee = 0;
            for (int j = 0; j < D; j++) ee += pow(dec[(size_t)i * D + j] - k[(size_t)i * D + j], 2);
            e += ee / tu_dot(k + (size_t)i * D, k + (size_t)i * D, D);
        }
        e /= NK;
        assert_true(e < prev);
        prev = e;
        kvq_quantizer_free(&q);
        free(codes);
    }
    assert_true(prev < 1e-4);   // 8-bit extended codes reconstruct almost exactly
    kvq_artifacts_free(a);
    free(k), free(dec);
}

static void test_other_head_dims(void **state)
{
    (void)state;
    int dims[2] = {64, 256};
    for (int t = 0; t < 2; t++) {
        int d = dims[t], n = 300;
        float *k = malloc(sizeof(float) * (size_t)n * d), *y = malloc(sizeof(float) * (size_t)n * d);
        kvq_rng r;
        kvq_rng_seed(&r, 12);
        kvq_rng_gauss_fill(&r, k, (size_t)n * d);
        kvq_artifacts *a;
        kvq_artifacts_new(&a);
        kvq_train_rabitq_opts o = {.num_clusters = 4, .seed = 1};
        assert_int_equal(kvq_train_rabitq_stream(k, (size_t)n, d, 0, 0, &o, a, NULL), KVQ_OK);
        kvq_config_default(&cfg);
        cfg.num_clusters = 4;
        kvq_plan_params pp = {.bits = 3, .head_dim = d, .cfg = &cfg, .art = a};
        kvq_quantizer q;
        if (kvq_quantizer_init(&q, "rabitq", &pp)) fail_msg("%s", kvq_last_error());
        uint8_t *codes = malloc(q.bpv * (size_t)n);
        q.m->encode(q.plan, k, (size_t)n, codes);
        q.m->decode(q.plan, codes, (size_t)n, y);
        double e = 0, xx = 0;
        for (size_t i = 0; i < (size_t)n * d; i++) e += pow(k[i] - y[i], 2), xx += (double)k[i] * k[i];
        assert_true(e / xx < 0.045);   // 3-bit extended codes: 1 - <o_bar,o>^2 ~ 0.036
        kvq_quantizer_free(&q);
        kvq_artifacts_free(a);
        free(k), free(y), free(codes);
    }
}

static void test_needs_calibration(void **state)
{
    (void)state;
    kvq_config_default(&cfg);
    kvq_plan_params pp = {.bits = 1, .head_dim = D, .layer = 3, .kv_head = 1, .cfg = &cfg};
    kvq_quantizer q;
    assert_int_equal(kvq_quantizer_init(&q, "rabitq", &pp), KVQ_ERR_NEEDS_CALIBRATION);
    assert_non_null(strstr(kvq_last_error(), "rabitq.centroids.l3.h1"));
    assert_non_null(strstr(kvq_last_error(), "precompute --method rabitq"));
}

static void test_train_on_trace(void **state)
{
    (void)state;
    kvq_trace *t;
    if (kvq_trace_open("sample_data/traces/code-1k.safetensors", NULL, &t))
        fail_msg("%s", kvq_last_error());
    kvq_artifacts *a, *b;
    kvq_artifacts_new(&a);
    kvq_artifacts_new(&b);
    kvq_train_rabitq_opts o = {.num_clusters = 16, .max_iter = 15, .seed = 7};
    assert_int_equal(kvq_train_rabitq(t, &o, a), KVQ_OK);
    assert_int_equal(kvq_train_rabitq(t, &o, b), KVQ_OK);
    assert_int_equal(kvq_artifacts_count(a), t->n_layers * t->n_kv_heads);
    int64_t shape[2] = {16, t->head_dim};
    const float *ca, *cb;
    assert_int_equal(kvq_artifacts_require(a, "rabitq.centroids.l5.h1", 2, shape, &ca), KVQ_OK);
    assert_int_equal(kvq_artifacts_require(b, "rabitq.centroids.l5.h1", 2, shape, &cb), KVQ_OK);
    assert_memory_equal(ca, cb, sizeof(float) * 16 * (size_t)t->head_dim);

    // IVF pays off on real keys: 1-bit q.k error vs the trace's queries
    kvq_config_default(&cfg);
    cfg.num_clusters = 16;
    kvq_plan_params pp = {.bits = 1, .head_dim = t->head_dim, .layer = 2, .kv_head = 0,
                          .cfg = &cfg, .art = a};
    kvq_quantizer q;
    if (kvq_quantizer_init(&q, "rabitq", &pp)) fail_msg("%s", kvq_last_error());
    size_t n = (size_t)t->n_tokens;
    float *k = malloc(sizeof(float) * n * t->head_dim), *qq = malloc(sizeof(float) * n * t->head_dim);
    assert_int_equal(kvq_trace_keys(t, 2, 0, k), KVQ_OK);
    assert_int_equal(kvq_trace_queries(t, 2, 0, qq), KVQ_OK);
    uint8_t *codes = malloc(q.bpv * n);
    q.m->encode(q.plan, k, n, codes);
    void *qs = malloc(q.qbytes);
    float *sc = malloc(sizeof(float) * n);
    double num = 0, den = 0;
    for (size_t qi = 0; qi < n; qi += 64) {
        const float *qv = qq + qi * t->head_dim;
        q.m->prepare_query(q.plan, qv, qs);
        q.m->score(q.plan, qs, codes, n, sc);
        for (size_t i = 0; i < n; i++) {
            double tr = tu_dot(qv, k + i * t->head_dim, t->head_dim);
            num += (sc[i] - tr) * (sc[i] - tr);
            den += tr * tr;
        }
    }
    print_message("rabitq 1-bit on code-1k l2 h0 (16 clusters): q.k relative error %.4f "
                  "(%.3f bits/coord)\n", sqrt(num / den), q.bpv * 8.0 / t->head_dim);
    assert_true(sqrt(num / den) < 0.5);
    kvq_quantizer_free(&q);
    free(k), free(qq), free(codes), free(qs), free(sc);
    kvq_artifacts_free(a);
    kvq_artifacts_free(b);
    kvq_trace_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_bit_bound),
        cmocka_unit_test(test_extended_bits),
        cmocka_unit_test(test_decode_and_sizes),
        cmocka_unit_test(test_other_head_dims),
        cmocka_unit_test(test_needs_calibration),
        cmocka_unit_test(test_train_on_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
