// test_qjl.c — QJL: the inner-product estimator is unbiased (over random
// vectors and over the sketch's randomness), its variance matches
// (pi/2 |r|^2 |q|^2 - <q,r>^2)/m, decode agrees with score, records are
// exactly the documented size, and outlier channels are kept exactly.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "kvq.h"
#include "rng.h"
#include "test_util.h"

static kvq_config cfg;

static void make(kvq_quantizer *q, int d, int m, int outliers, uint64_t seed)
{
    kvq_config_default(&cfg);
    cfg.sketch_dim = m;
    cfg.outlier_channels = outliers;
    cfg.seed = seed;
    kvq_plan_params pp = {.bits = 1, .head_dim = d, .cfg = &cfg};
    kvq_status s = kvq_quantizer_init(q, "qjl", &pp);
    if (s) fail_msg("%s", kvq_last_error());
}

static void test_unbiased_random_vectors(void **state)
{
    (void)state;
    enum { N = 10000, D = 128 };
    kvq_quantizer q;
    make(&q, D, 0, 0, 42);
    assert_int_equal(q.bpv, 2 + 3 * 4 + D / 8);   // fp16 norm, 4 outliers, m = d sign bits
    float *k = malloc(sizeof(float) * N * D), *qq = malloc(sizeof(float) * N * D);
    uint8_t *codes = malloc(q.bpv * N);
    void *qs = malloc(q.qbytes);
    kvq_rng r;
    kvq_rng_seed(&r, 1);
    for (int i = 0; i < N; i++) kvq_rng_unit_vector(&r, k + (size_t)i * D, D);
    for (int i = 0; i < N; i++) kvq_rng_unit_vector(&r, qq + (size_t)i * D, D);
    q.m->encode(q.plan, k, N, codes);
    double se = 0, se2 = 0, pred_var = 0;
    for (int i = 0; i < N; i++) {
        const float *ki = k + (size_t)i * D, *qi = qq + (size_t)i * D;
        q.m->prepare_query(q.plan, qi, qs);
        float est;
        q.m->score(q.plan, qs, codes + (size_t)i * q.bpv, 1, &est);
        double e = est - tu_dot(qi, ki, D);
        se += e, se2 += e * e;
        // residual r = k without its 4 largest |k_i| (what the sketch carries)
        float rr[D];
        memcpy(rr, ki, sizeof rr);
        for (int t = 0; t < 4; t++) {
            int b = 0;
            for (int j = 1; j < D; j++)
                if (fabsf(rr[j]) > fabsf(rr[b])) b = j;
            rr[b] = 0;
        }
        double qr = tu_dot(qi, rr, D);
        pred_var += (M_PI / 2 * tu_dot(rr, rr, D) - qr * qr) / D;
    }
    double mean = se / N, var = se2 / N - mean * mean, sem = sqrt(var / N);
    pred_var /= N;
    print_message("qjl d=128 m=128: mean error %.2e (3 SE = %.2e), variance %.5f, predicted %.5f\n",
                  mean, 3 * sem, var, pred_var);
    assert_true(fabs(mean) < 3 * sem);
    assert_true(fabs(var / pred_var - 1) < 0.05);
    kvq_quantizer_free(&q);
    free(k), free(qq), free(codes), free(qs);
}

static void test_unbiased_over_sketches(void **state)
{
    (void)state;
    // one fixed pair, many independent sketches: E_S[estimate] = q . k
    enum { D = 64, SEEDS = 1500 };
    float k[D], qv[D];
    kvq_rng r;
    kvq_rng_seed(&r, 77);
    kvq_rng_unit_vector(&r, k, D);
    kvq_rng_unit_vector(&r, qv, D);
    for (int i = 0; i < D; i++) qv[i] = 0.6f * k[i] + 0.8f * qv[i];   // correlated pair
    double truth = tu_dot(qv, k, D), s = 0, s2 = 0;
    for (int t = 0; t < SEEDS; t++) {
        kvq_quantizer q;
        make(&q, D, 32, 0, 1000 + (uint64_t)t);
        uint8_t codes[256];
        float qs[256], est;
        assert_true(q.qbytes <= sizeof qs);
        q.m->encode(q.plan, k, 1, codes);
        q.m->prepare_query(q.plan, qv, qs);
        q.m->score(q.plan, qs, codes, 1, &est);
        s += est - truth, s2 += (est - truth) * (est - truth);
        kvq_quantizer_free(&q);
    }
    double mean = s / SEEDS, sem = sqrt((s2 / SEEDS - mean * mean) / SEEDS);
    print_message("qjl over %d sketches: true %.4f, mean error %.2e (3 SE = %.2e)\n", SEEDS, truth,
                  mean, 3 * sem);
    assert_true(fabs(mean) < 3 * sem);
}

static void test_decode_matches_score_and_layout(void **state)
{
    (void)state;
    enum { N = 50, D = 128, M = 200 };
    kvq_quantizer q;
    make(&q, D, M, 3, 5);
    assert_int_equal(q.bpv, 2 + 3 * 3 + (M + 7) / 8);
    float *k = malloc(sizeof(float) * N * D), *dec = malloc(sizeof(float) * N * D), qv[D];
    uint8_t *codes = malloc(q.bpv * N + 16);
    memset(codes, 0xA5, q.bpv * N + 16);
    kvq_rng r;
    kvq_rng_seed(&r, 2);
    kvq_rng_gauss_fill(&r, k, (size_t)N * D);
    kvq_rng_gauss_fill(&r, qv, D);
    q.m->encode(q.plan, k, N, codes);
    for (int i = 0; i < 16; i++) assert_int_equal(codes[q.bpv * N + i], 0xA5);   // stays in bounds
    q.m->decode(q.plan, codes, N, dec);
    void *qs = malloc(q.qbytes);
    float sc[N];
    q.m->prepare_query(q.plan, qv, qs);
    q.m->score(q.plan, qs, codes, N, sc);
    for (int i = 0; i < N; i++) {
        double viadec = tu_dot(qv, dec + (size_t)i * D, D);
        assert_true(fabs(viadec - sc[i]) < 1e-3 * (1 + fabs(viadec)));
    }
    kvq_quantizer_free(&q);
    free(k), free(dec), free(codes), free(qs);
}

static void test_other_head_dims(void **state)
{
    (void)state;
    int dims[2] = {64, 256};
    for (int t = 0; t < 2; t++) {
        int d = dims[t], n = 2000;
        kvq_quantizer q;
        make(&q, d, 0, 0, 8);
        float *k = malloc(sizeof(float) * (size_t)n * d), *qv = malloc(sizeof(float) * (size_t)d);
        uint8_t *codes = malloc(q.bpv * (size_t)n);
        void *qs = malloc(q.qbytes);
        float *sc = malloc(sizeof(float) * (size_t)n);
        kvq_rng r;
        kvq_rng_seed(&r, 21);
        for (int i = 0; i < n; i++) kvq_rng_unit_vector(&r, k + (size_t)i * d, d);
        kvq_rng_unit_vector(&r, qv, d);
        q.m->encode(q.plan, k, (size_t)n, codes);
        q.m->prepare_query(q.plan, qv, qs);
        q.m->score(q.plan, qs, codes, (size_t)n, sc);
        double s = 0, s2 = 0;
        for (int i = 0; i < n; i++) {
            double e = sc[i] - tu_dot(qv, k + (size_t)i * d, d);
            s += e, s2 += e * e;
        }
        double mean = s / n, var = s2 / n - mean * mean;
        assert_true(fabs(mean) < 3 * sqrt(var / n));
        assert_true(var < 1.2 * (M_PI / 2) / d);   // (pi/2 |r|^2 - <q,r>^2)/m, m = d
        kvq_quantizer_free(&q);
        free(k), free(qv), free(codes), free(qs), free(sc);
    }
}

static void test_outliers_kept_exactly(void **state)
{
    (void)state;
    // keys with 4 heavy channels: keeping 4 outliers leaves the sketch only
    // the light residual, so the error drops far below keeping 1.
    enum { N = 2000, D = 128 };
    float *k = malloc(sizeof(float) * N * D), *qv = malloc(sizeof(float) * N * D);
    kvq_rng r;
    kvq_rng_seed(&r, 9);
    kvq_rng_gauss_fill(&r, k, (size_t)N * D);
    kvq_rng_gauss_fill(&r, qv, (size_t)N * D);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < 4; c++) k[(size_t)i * D + 10 + 29 * c] = (c & 1 ? -40.0f : 40.0f);
    double mse[2];
    int outs[2] = {1, 4};
    for (int v = 0; v < 2; v++) {
        kvq_quantizer q;
        make(&q, D, 0, outs[v], 3);
        uint8_t *codes = malloc(q.bpv * N);
        void *qs = malloc(q.qbytes);
        q.m->encode(q.plan, k, N, codes);
        double e2 = 0;
        for (int i = 0; i < N; i++) {
            float est;
            q.m->prepare_query(q.plan, qv + (size_t)i * D, qs);
            q.m->score(q.plan, qs, codes + (size_t)i * q.bpv, 1, &est);
            double e = est - tu_dot(qv + (size_t)i * D, k + (size_t)i * D, D);
            e2 += e * e;
        }
        mse[v] = e2 / N;
        kvq_quantizer_free(&q);
        free(codes), free(qs);
    }
    print_message("qjl heavy-channel keys: ip MSE %.2f with 1 outlier, %.2f with 4\n", mse[0], mse[1]);
    assert_true(mse[1] < 0.2 * mse[0]);
    free(k), free(qv);
}

static void test_bad_args(void **state)
{
    (void)state;
    kvq_config_default(&cfg);
    cfg.outlier_channels = 100;
    kvq_plan_params pp = {.bits = 1, .head_dim = 128, .cfg = &cfg};
    kvq_quantizer q;
    assert_int_equal(kvq_quantizer_init(&q, "qjl", &pp), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "outlier_channels"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unbiased_random_vectors),
        cmocka_unit_test(test_unbiased_over_sketches),
        cmocka_unit_test(test_decode_matches_score_and_layout),
        cmocka_unit_test(test_other_head_dims),
        cmocka_unit_test(test_outliers_kept_exactly),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
