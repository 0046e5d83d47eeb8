// test_polarquant.c — PolarQuant: relative MSE on 10,000 random unit vectors
// equals the figure derived from the per-level codebook distortions and beats
// uniform angle codebooks; near-exact at 8 bits; score equals q . decode;
// honest record sizes; head_dim checks.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "methods/polarquant.h"
#include "rng.h"

static kvq_config cfg;

static kvq_status make(kvq_quantizer *q, int d, int bits, bool hadamard)
{
    kvq_config_default(&cfg);
    cfg.use_hadamard = hadamard;
    kvq_plan_params pp = {.bits = bits, .head_dim = d, .cfg = &cfg};
    return kvq_quantizer_init(q, "polarquant", &pp);
}

static double rel_mse(kvq_quantizer *q, int d, int n, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)n * d), *y = malloc(sizeof(float) * (size_t)n * d);
    uint8_t *codes = malloc(q->bpv * (size_t)n);
    kvq_rng r;
    kvq_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) kvq_rng_unit_vector(&r, x + (size_t)i * d, d);
    q->m->encode(q->plan, x, (size_t)n, codes);
    q->m->decode(q->plan, codes, (size_t)n, y);
    double e = 0;
    for (size_t i = 0; i < (size_t)n * d; i++) e += pow(x[i] - y[i], 2);
    free(x), free(y), free(codes);
    return e / n;   // unit vectors: |x - x_hat|^2 / |x|^2 averaged
}

static void test_mse_matches_codebooks(void **state)
{
    (void)state;
    for (int had = 0; had <= 1; had++)
        for (int bits = 2; bits <= 5; bits++) {
            kvq_quantizer q;
            assert_int_equal(make(&q, 128, bits, had), KVQ_OK);
            double got = rel_mse(&q, 128, 10000, 17);
            double pred = kvq_polarquant_predicted_rel_mse(q.plan), uni = 0;
            for (int l = 1; l <= KVQ_POLAR_LEVELS; l++) {
                kvq_polar_level lv;
                kvq_polarquant_level(q.plan, l, &lv);
                assert_int_equal(lv.bits, l == 1 ? bits : (bits > 3 ? bits - 2 : 1));
                uni += lv.uniform_mse;
                if (l >= 2) assert_true(lv.chord_mse < lv.uniform_mse);   // Lloyd-Max beats uniform
            }
            print_message("polarquant b=%d %s: %.3f bits/coord, rel MSE %.5f, predicted %.5f, "
                          "uniform-angle codebooks would give %.5f\n", bits,
                          had ? "hadamard" : "dense", q.bpv * 8.0 / 128, got, pred, uni);
            assert_true(fabs(got / pred - 1) < 0.05);
            assert_true(got < uni);
            kvq_quantizer_free(&q);
        }
}

static void test_default_bits_and_size(void **state)
{
    (void)state;
    kvq_quantizer q;
    assert_int_equal(make(&q, 128, 4, false), KVQ_OK);
    // 8 fp16 radii + 64 x 4 + 32 x 2 + 16 x 2 + 8 x 2 bits = 16 + 46 bytes
    assert_int_equal(q.bpv, 62);
    double got = rel_mse(&q, 128, 10000, 3);
    assert_true(got < 0.04);   // sanity: 3.875 bits/coord, well under 1-bit-class error
    kvq_quantizer_free(&q);
}

static void test_exact_at_high_bits(void **state)
{
    (void)state;
    int dims[3] = {64, 128, 256};
    for (int i = 0; i < 3; i++) {
        kvq_quantizer q;
        assert_int_equal(make(&q, dims[i], 8, true), KVQ_OK);
        double got = rel_mse(&q, dims[i], 500, 4);
        print_message("polarquant b=8 d=%d: rel MSE %.2e\n", dims[i], got);
        assert_true(got < 5e-4);
        kvq_quantizer_free(&q);
    }
}

static void test_score_equals_decode(void **state)
{
    (void)state;
    enum { N = 200, D = 128 };
    kvq_quantizer q;
    assert_int_equal(make(&q, D, 3, true), KVQ_OK);
    float *x = malloc(sizeof(float) * N * D), *y = malloc(sizeof(float) * N * D), qv[D], sc[N];
    uint8_t *codes = malloc(q.bpv * N + 8);
    memset(codes, 0x33, q.bpv * N + 8);
    kvq_rng r;
    kvq_rng_seed(&r, 8);
    kvq_rng_gauss_fill(&r, x, (size_t)N * D);
    kvq_rng_gauss_fill(&r, qv, D);
    q.m->encode(q.plan, x, N, codes);
    for (int i = 0; i < 8; i++) assert_int_equal(codes[q.bpv * N + i], 0x33);
    q.m->decode(q.plan, codes, N, y);
    void *qs = malloc(q.qbytes);
    q.m->prepare_query(q.plan, qv, qs);
    q.m->score(q.plan, qs, codes, N, sc);
    for (int i = 0; i < N; i++) {
        double ref = 0;
        for (int j = 0; j < D; j++) ref += (double)qv[j] * y[(size_t)i * D + j];
        assert_true(fabs(ref - sc[i]) < 1e-4 * (1 + fabs(ref)) * sqrt(D));
    }
    kvq_quantizer_free(&q);
    free(x), free(y), free(codes), free(qs);
}

static void test_bad_head_dim(void **state)
{
    (void)state;
    kvq_quantizer q;
    assert_int_equal(make(&q, 40, 4, false), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "head_dim 40"));
    assert_int_equal(make(&q, 96, 4, true), KVQ_ERR_ARG);   // Hadamard needs a power of two
    assert_int_equal(make(&q, 96, 4, false), KVQ_OK);      // dense rotation is fine
    kvq_quantizer_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mse_matches_codebooks),
        cmocka_unit_test(test_default_bits_and_size),
        cmocka_unit_test(test_exact_at_high_bits),
        cmocka_unit_test(test_score_equals_decode),
        cmocka_unit_test(test_bad_head_dim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
