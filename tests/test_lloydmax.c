// test_lloydmax.c — Lloyd-Max codebooks against the published distortions
// (Max 1960 / TurboQuant Table: Gaussian; exact unit-vector Beta at d=128),
// the Lloyd conditions, index lookup, and fitting on samples.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "lloydmax.h"
#include "rng.h"

static void expect_rel(double got, double want, double tol)
{
    if (fabs(got / want - 1.0) > tol)
        fail_msg("got %.6f, expected %.6f within %.2f%%", got, want, 100 * tol);
}

static void test_gauss_published(void **st)
{
    (void)st;
    static const double want[] = {0.3634, 0.1175, 0.0345, 0.0095};
    const int d = 128;
    for (int b = 1; b <= 4; b++) {
        kvq_codebook cb;
        assert_int_equal(kvq_lloydmax_solve(&cb, KVQ_DENSITY_GAUSS, 1.0 / sqrt(d), b), KVQ_OK);
        assert_int_equal(cb.n, 1 << b);
        expect_rel(cb.mse * d, want[b - 1], 0.005);
    }
}

static void test_beta_d128(void **st)
{
    (void)st;
    static const double want[] = {0.3609, 0.1160, 0.0340, 0.0093};
    for (int b = 1; b <= 4; b++) {
        kvq_codebook cb;
        assert_int_equal(kvq_lloydmax_solve(&cb, KVQ_DENSITY_BETA, 128, b), KVQ_OK);
        expect_rel(cb.mse * 128, want[b - 1], 0.005);
    }
}

static void test_laplace_published(void **st)
{
    (void)st;
    // unit-variance Laplacian (scale 1/sqrt 2), Max/Adams-Giesler tables
    static const double want[] = {0.5, 0.1762, 0.05448};
    for (int b = 1; b <= 3; b++) {
        kvq_codebook cb;
        assert_int_equal(kvq_lloydmax_solve(&cb, KVQ_DENSITY_LAPLACE, 1.0 / sqrt(2.0), b), KVQ_OK);
        expect_rel(cb.mse, want[b - 1], 0.005);
    }
}

// Monte Carlo: the stated mse matches sampling, levels are sorted and
// symmetric, and kvq_codebook_index picks the nearest level.
static void test_conditions_and_index(void **st)
{
    (void)st;
    kvq_rng r;
    kvq_rng_seed(&r, 3);
    for (int b = 1; b <= 8; b += (b < 4 ? 1 : 4)) {
        kvq_codebook cb;
        assert_int_equal(kvq_lloydmax_solve(&cb, KVQ_DENSITY_GAUSS, 1.0, b), KVQ_OK);
        for (int j = 0; j + 1 < cb.n; j++) {
            assert_true(cb.levels[j] < cb.levels[j + 1]);
            assert_true(fabs(cb.levels[j] + cb.levels[cb.n - 1 - j]) < 1e-5);
        }
        double se = 0;
        const int n = 200000;
        for (int i = 0; i < n; i++) {
            float x = (float)kvq_rng_gauss(&r);
            int k = kvq_codebook_index(&cb, x);
            int best = 0;
            for (int j = 1; j < cb.n; j++)
                if (fabsf(x - cb.levels[j]) < fabsf(x - cb.levels[best])) best = j;
            assert_true(fabsf(x - cb.levels[k]) <= fabsf(x - cb.levels[best]) + 1e-6f);
            se += (x - cb.levels[k]) * (double)(x - cb.levels[k]);
        }
        expect_rel(se / n, cb.mse, b <= 4 ? 0.02 : 0.05);
    }
}

static void test_fit_samples(void **st)
{
    (void)st;
    kvq_rng r;
    kvq_rng_seed(&r, 4);
    const size_t n = 100000;
    float *x = malloc(n * sizeof *x);
    kvq_rng_gauss_fill(&r, x, n);
    for (int b = 1; b <= 3; b++) {
        kvq_codebook fit, ref;
        assert_int_equal(kvq_lloydmax_fit(&fit, x, n, b, 200), KVQ_OK);
        assert_int_equal(kvq_lloydmax_solve(&ref, KVQ_DENSITY_GAUSS, 1.0, b), KVQ_OK);
        expect_rel(fit.mse, ref.mse, 0.03);
        for (int j = 0; j < fit.n; j++) assert_true(fabs(fit.levels[j] - ref.levels[j]) < 0.05);
    }
    free(x);
}

static void test_uniform_gauss(void **st)
{
    (void)st;
    // Max (1960) optimum uniform quantizer, unit Gaussian
    static const double want[] = {0.3634, 0.1188, 0.03744, 0.01154};
    for (int b = 1; b <= 4; b++) {
        kvq_codebook cb;
        assert_int_equal(kvq_uniform_solve(&cb, KVQ_DENSITY_GAUSS, 1.0, b), KVQ_OK);
        expect_rel(cb.mse, want[b - 1], 0.005);
        double step = cb.levels[1] - cb.levels[0];
        for (int j = 0; j + 1 < cb.n; j++) assert_true(fabs(cb.levels[j + 1] - cb.levels[j] - step) < 1e-5);
    }
}

static void test_errors(void **st)
{
    (void)st;
    kvq_codebook cb;
    assert_int_equal(kvq_lloydmax_solve(&cb, KVQ_DENSITY_GAUSS, 1.0, 9), KVQ_ERR_ARG);
    assert_int_equal(kvq_lloydmax_solve(&cb, KVQ_DENSITY_BETA, 2.0, 2), KVQ_ERR_ARG);
    assert_int_equal(kvq_lloydmax_solve(&cb, KVQ_DENSITY_LAPLACE, -1.0, 2), KVQ_ERR_ARG);
    float x[3] = {1, 2, 3};
    assert_int_equal(kvq_lloydmax_fit(&cb, x, 3, 2, 10), KVQ_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gauss_published),
        cmocka_unit_test(test_beta_d128),
        cmocka_unit_test(test_laplace_published),
        cmocka_unit_test(test_conditions_and_index),
        cmocka_unit_test(test_fit_samples),
        cmocka_unit_test(test_uniform_gauss),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
