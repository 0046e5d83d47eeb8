// test_rotate.c — dense Haar rotations and the randomized FWHT: orthogonality,
// inverse, norm preservation, dense-Hadamard agreement, batch = scalar,
// and the power-of-two error.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <lapacke.h>
#include "rng.h"
#include "rotate.h"

// max |R R^T - I| over entries, R applied through the public API column by column
static double orth_err(const kvq_rotation *r)
{
    int d = r->d;
    float *cols = malloc((size_t)d * d * sizeof *cols);   // column j = R e_j
    float e[1024];
    for (int j = 0; j < d; j++) {
        memset(e, 0, sizeof(float) * (size_t)d);
        e[j] = 1.0f;
        kvq_rotation_apply(r, e, cols + (size_t)j * d);
    }
    double worst = 0;
    for (int a = 0; a < d; a++)
        for (int b = 0; b < d; b++) {
            double s = 0;
            for (int i = 0; i < d; i++) s += (double)cols[(size_t)a * d + i] * cols[(size_t)b * d + i];
            worst = fmax(worst, fabs(s - (a == b)));
        }
    free(cols);
    return worst;
}

static void check_rotation(int d, bool had)
{
    kvq_rotation r;
    assert_int_equal(kvq_rotation_new(&r, d, had, 1234 + (uint64_t)d), KVQ_OK);
    assert_true(orth_err(&r) < (had ? 1e-6 : 2e-5));
    kvq_rng g;
    kvq_rng_seed(&g, 5);
    float x[256], y[256], z[256];
    for (int t = 0; t < 20; t++) {
        kvq_rng_gauss_fill(&g, x, (size_t)d);
        kvq_rotation_apply(&r, x, y);
        kvq_rotation_apply_t(&r, y, z);
        double nx = 0, ny = 0, err = 0;
        for (int i = 0; i < d; i++) {
            nx += (double)x[i] * x[i];
            ny += (double)y[i] * y[i];
            err = fmax(err, fabs(z[i] - x[i]));
        }
        assert_true(fabs(ny / nx - 1.0) < 1e-5);
        assert_true(err < 1e-4);
    }
    // batch (blocks of 8 plus a tail) equals the scalar loop bit for bit: these
    // values decide codes, which must not depend on the machine's BLAS kernel
    // (an sgemm batch differed in the last bits, and codes with it)
    const size_t n = 37;
    float *xb = malloc(n * (size_t)d * sizeof *xb), *yb = malloc(n * (size_t)d * sizeof *yb);
    float *zb = malloc(n * (size_t)d * sizeof *zb);
    kvq_rng_gauss_fill(&g, xb, n * (size_t)d);
    kvq_rotation_apply_batch(&r, xb, yb, n);
    kvq_rotation_apply_t_batch(&r, yb, zb, n);
    for (size_t i = 0; i < n; i++) {
        kvq_rotation_apply(&r, xb + i * d, y);
        assert_memory_equal(y, yb + i * d, (size_t)d * sizeof *y);
        kvq_rotation_apply_t(&r, y, z);
        assert_memory_equal(z, zb + i * d, (size_t)d * sizeof *z);
        for (int j = 0; j < d; j++) assert_true(fabs(zb[i * d + j] - xb[i * d + j]) < 1e-4);
    }
    free(xb);
    free(yb);
    free(zb);
    kvq_rotation_free(&r);
}

static void test_dense(void **st)
{
    (void)st;
    check_rotation(64, false);
    check_rotation(128, false);
    check_rotation(96, false);   // dense works for any d
}

static void test_hadamard(void **st)
{
    (void)st;
    check_rotation(64, true);
    check_rotation(128, true);
    check_rotation(256, true);
}

static void test_fwht_matches_dense_hadamard(void **st)
{
    (void)st;
    const int d = 64;
    kvq_rng g;
    kvq_rng_seed(&g, 11);
    float x[64], y[64];
    kvq_rng_gauss_fill(&g, x, d);
    memcpy(y, x, sizeof x);
    kvq_fwht(y, d);
    for (int i = 0; i < d; i++) {   // Sylvester order: H_ij = (-1)^popcount(i & j)
        double s = 0;
        for (int j = 0; j < d; j++) s += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * x[j];
        assert_true(fabs(s - y[i]) < 1e-4);
    }
    // randomized: y = H diag(signs) x / sqrt(d)
    kvq_rotation r;
    assert_int_equal(kvq_rotation_new(&r, d, true, 3), KVQ_OK);
    int neg = 0;
    for (int i = 0; i < d; i++) {
        assert_true(r.signs[i] == 1.0f || r.signs[i] == -1.0f);
        neg += r.signs[i] < 0;
    }
    assert_true(neg > 10 && neg < 54);   // signs are random, not all equal
    kvq_rotation_apply(&r, x, y);
    for (int i = 0; i < d; i++) {
        double s = 0;
        for (int j = 0; j < d; j++)
            s += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * r.signs[j] * x[j];
        assert_true(fabs(s / 8.0 - y[i]) < 1e-5);
    }
    kvq_rotation_free(&r);
}

static void test_haar_sign_fix(void **st)
{
    (void)st;
    // Over many seeds, the mean of each entry of a Haar matrix is 0. Without
    // the diag(sign R) fix, LAPACK's convention biases the diagonal.
    const int d = 8, trials = 2000;
    double diag = 0;
    float q[64];
    for (int t = 0; t < trials; t++) {
        assert_int_equal(kvq_random_orthogonal(q, d, (uint64_t)t), KVQ_OK);
        for (int i = 0; i < d; i++) diag += q[i * d + i];
    }
    // each entry has variance 1/d; mean of trials*d entries has sd 1/sqrt(trials*d*d)
    assert_true(fabs(diag / (trials * d)) < 4.0 / sqrt((double)trials * d * d));
}

// The engine's Householder QR is its own (fixed order, so the same bits under every
// OpenBLAS kernel); LAPACK's sgeqrf/sorgqr, sign-fixed the same way, is the reference.
static void test_qr_matches_lapack(void **st)
{
    (void)st;
    const int ds[] = {8, 96, 128};
    for (size_t t = 0; t < sizeof ds / sizeof *ds; t++) {
        const int d = ds[t];
        float *q = malloc((size_t)d * d * sizeof *q), *ref = malloc((size_t)d * d * sizeof *ref);
        float tau[128];
        assert_int_equal(kvq_random_orthogonal(q, d, 99 + (uint64_t)d), KVQ_OK);
        kvq_rng g;
        kvq_rng_seed(&g, 99 + (uint64_t)d);
        kvq_rng_gauss_fill(&g, ref, (size_t)d * d);
        assert_int_equal(LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, d, d, ref, d, tau), 0);
        float sgn[128];
        for (int i = 0; i < d; i++) sgn[i] = ref[(size_t)i * d + i] < 0.0f ? -1.0f : 1.0f;
        assert_int_equal(LAPACKE_sorgqr(LAPACK_ROW_MAJOR, d, d, d, ref, d, tau), 0);
        double worst = 0;
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
                worst = fmax(worst, fabs(q[(size_t)i * d + j] - ref[(size_t)i * d + j] * sgn[j]));
        assert_true(worst < 2e-5);
        free(q);
        free(ref);
    }
    assert_int_equal(kvq_random_orthogonal(NULL, KVQ_MAX_SKETCH_DIM + 1, 1), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "1025"));
}

static void test_errors_and_determinism(void **st)
{
    (void)st;
    kvq_rotation r;
    assert_int_equal(kvq_rotation_new(&r, 96, true, 1), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "power of two"));
    assert_non_null(strstr(kvq_last_error(), "96"));
    kvq_rotation a, b;
    assert_int_equal(kvq_rotation_new(&a, 32, false, 77), KVQ_OK);
    assert_int_equal(kvq_rotation_new(&b, 32, false, 77), KVQ_OK);
    assert_memory_equal(a.mat, b.mat, 32 * 32 * sizeof(float));
    kvq_rotation_free(&a);
    kvq_rotation_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dense),
        cmocka_unit_test(test_hadamard),
        cmocka_unit_test(test_fwht_matches_dense_hadamard),
        cmocka_unit_test(test_haar_sign_fix),
        cmocka_unit_test(test_qr_matches_lapack),
        cmocka_unit_test(test_errors_and_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
