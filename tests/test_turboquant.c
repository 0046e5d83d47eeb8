// test_turboquant.c — TurboQuant MSE / prod / RVQ against the paper's numbers
// (10,000 seeded uniform random unit vectors, d = 128), the scalar spec
// score = q . decode, record sizes, and errors.
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

#define NVEC 10000

typedef struct {
    const char *method;
    int bits, d;
    bool hadamard;
    int outlier_channels, sketch_dim, num_residuals;
    uint64_t seed;
} qspec;

static kvq_config cfg_for(const qspec *s)
{
    kvq_config c;
    kvq_config_default(&c);
    c.use_hadamard = s->hadamard;
    c.outlier_channels = s->outlier_channels;
    c.sketch_dim = s->sketch_dim;
    if (s->num_residuals) c.num_residuals = s->num_residuals;
    c.seed = s->seed ? s->seed : 42;
    return c;
}

static kvq_status make_q(kvq_quantizer *q, const qspec *s, kvq_config *c)
{
    *c = cfg_for(s);
    kvq_plan_params pp = {.bits = s->bits, .head_dim = s->d, .cfg = c};
    return kvq_quantizer_init(q, s->method, &pp);
}

static void must_make(kvq_quantizer *q, const qspec *s, kvq_config *c)
{
    kvq_status st = make_q(q, s, c);
    if (st) fail_msg("%s bits %d d %d: %s", s->method, s->bits, s->d, kvq_last_error());
}

static float *unit_vectors(size_t n, int d, uint64_t seed)
{
    float *x = malloc(n * (size_t)d * sizeof *x);
    kvq_rng r;
    kvq_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) kvq_rng_unit_vector(&r, x + i * d, d);
    return x;
}

// mean over vectors of |x - x_hat|^2 / |x|^2
static double rel_mse(const kvq_quantizer *q, const float *x, size_t n)
{
    const int d = q->head_dim;
    uint8_t *codes = malloc(n * q->bpv);
    float *xh = malloc(n * (size_t)d * sizeof *xh);
    q->m->encode(q->plan, x, n, codes);
    q->m->decode(q->plan, codes, n, xh);
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        double e = 0, nn = 0;
        for (int j = 0; j < d; j++) {
            double t = (double)x[i * d + j] - xh[i * d + j];
            e += t * t;
            nn += (double)x[i * d + j] * x[i * d + j];
        }
        acc += e / nn;
    }
    free(codes);
    free(xh);
    return acc / (double)n;
}

static void expect_rel(const char *what, double got, double want, double tol)
{
    if (fabs(got / want - 1.0) > tol)
        fail_msg("%s: got %.5f, expected %.5f within %.0f%%", what, got, want, 100 * tol);
}

static const double paper_mse[] = {0.3634, 0.1175, 0.0345, 0.0095};

static void test_mse_paper_numbers(void **st)
{
    (void)st;
    float *x = unit_vectors(NVEC, 128, 2024);
    for (int had = 0; had <= 1; had++)
        for (int b = 1; b <= 4; b++) {
            qspec s = {.method = "turboquant_mse", .bits = b, .d = 128, .hadamard = had};
            kvq_quantizer q;
            kvq_config c;
            must_make(&q, &s, &c);
            double m = rel_mse(&q, x, NVEC);
            char what[64];
            snprintf(what, sizeof what, "turboquant_mse b=%d %s", b, had ? "hadamard" : "dense");
            print_message("%s: relative MSE %.5f (paper %.4f), %.3f bits/coord\n", what, m,
                          paper_mse[b - 1], q.bpv * 8.0 / 128);
            expect_rel(what, m, paper_mse[b - 1], 0.03);
            kvq_quantizer_free(&q);
        }
    free(x);
}

static void test_mse_mixed_channels(void **st)
{
    (void)st;
    // 32 channels at 3 bits + 96 at 2 bits: the distortion is the channel-weighted mix
    float *x = unit_vectors(NVEC, 128, 77);
    qspec s = {.method = "turboquant_mse", .bits = 2, .d = 128, .hadamard = true,
               .outlier_channels = 32};
    kvq_quantizer q;
    kvq_config c;
    must_make(&q, &s, &c);
    assert_int_equal(q.bpv, 32 * 3 / 8 + 96 * 2 / 8 + 2);
    double want = (32 * paper_mse[2] + 96 * paper_mse[1]) / 128;
    double got = rel_mse(&q, x, NVEC);
    print_message("mixed 32x3 + 96x2: relative MSE %.5f (expected %.5f), %.3f bits/coord\n", got,
                  want, q.bpv * 8.0 / 128);
    expect_rel("mixed 32x3 + 96x2", got, want, 0.03);
    kvq_quantizer_free(&q);
    free(x);
}

// turboquant_prod: unbiased, and error variance = (pi/2d) D_mse(b-1) |y|^2.
static void check_prod(bool had)
{
    const int d = 128;
    float *x = unit_vectors(NVEC, d, 99), *y = unit_vectors(NVEC, d, 100);
    static const double dmse[] = {1.0, 0.3634, 0.1175, 0.0345};   // D_mse(b - 1)
    for (int b = 1; b <= 4; b++) {
        qspec s = {.method = "turboquant_prod", .bits = b, .d = d, .hadamard = had};
        kvq_quantizer q;
        kvq_config c;
        must_make(&q, &s, &c);
        uint8_t *codes = malloc(NVEC * q.bpv);
        void *qs = malloc(q.qbytes);
        q.m->encode(q.plan, x, NVEC, codes);
        double se = 0, se2 = 0;
        for (size_t i = 0; i < NVEC; i++) {
            float sc;
            q.m->prepare_query(q.plan, y + i * d, qs);
            q.m->score(q.plan, qs, codes + i * q.bpv, 1, &sc);
            double ip = 0;
            for (int j = 0; j < d; j++) ip += (double)x[i * d + j] * y[i * d + j];
            double e = sc - ip;
            se += e;
            se2 += e * e;
        }
        double mean = se / NVEC, var = se2 / NVEC - mean * mean;
        double sem = sqrt(var / NVEC), want = M_PI / (2.0 * d) * dmse[b - 1];
        if (fabs(mean) > 3 * sem)
            fail_msg("turboquant_prod b=%d: mean error %.3g beyond 3 SE (%.3g)", b, mean, sem);
        char what[64];
        snprintf(what, sizeof what, "turboquant_prod b=%d variance*d", b);
        print_message("turboquant_prod b=%d %s: mean err %.2e (SE %.2e), var*d %.4f (paper %.4f)\n",
                      b, had ? "hadamard" : "dense", mean, sem, var * d, want * d);
        expect_rel(what, var * d, want * d, 0.15);
        free(codes);
        free(qs);
        kvq_quantizer_free(&q);
    }
    free(x);
    free(y);
}

static void test_prod_unbiased_hadamard(void **st)
{
    (void)st;
    check_prod(true);
}

static void test_prod_unbiased_dense(void **st)
{
    (void)st;
    check_prod(false);
}

// The scalar spec: score(q, codes) equals q . decode(codes).
static void check_score_decode(const qspec *s)
{
    kvq_quantizer q;
    kvq_config c;
    must_make(&q, s, &c);
    const int d = s->d;
    const size_t n = 37;   // not a multiple of the chunk size
    kvq_rng r;
    kvq_rng_seed(&r, 5);
    float *x = malloc(n * d * sizeof *x), *xh = malloc(n * d * sizeof *xh);
    float qv[256], sc[37];
    for (size_t i = 0; i < n; i++) {   // varied norms, including a zero vector
        kvq_rng_gauss_fill(&r, x + i * d, (size_t)d);
        float scale = i == 3 ? 0.0f : (float)(0.1 + 20.0 * kvq_rng_uniform(&r));
        for (int j = 0; j < d; j++) x[i * d + j] *= scale;
    }
    kvq_rng_gauss_fill(&r, qv, (size_t)d);
    uint8_t *codes = malloc(n * q.bpv);
    void *qs = malloc(q.qbytes);
    q.m->encode(q.plan, x, n, codes);
    q.m->decode(q.plan, codes, n, xh);
    q.m->prepare_query(q.plan, qv, qs);
    q.m->score(q.plan, qs, codes, n, sc);
    double qn = 0;
    for (int j = 0; j < d; j++) qn += (double)qv[j] * qv[j];
    for (size_t i = 0; i < n; i++) {
        double dot = 0, xn = 0;
        for (int j = 0; j < d; j++) {
            dot += (double)qv[j] * xh[i * d + j];
            xn += (double)xh[i * d + j] * xh[i * d + j];
            assert_true(isfinite(xh[i * d + j]));
        }
        double tol = 2e-5 * sqrt(qn * xn) * sqrt((double)d) + 1e-6;
        if (fabs(sc[i] - dot) > tol)
            fail_msg("%s b=%d d=%d had=%d vec %zu: score %.6g vs q.decode %.6g", s->method,
                     s->bits, d, s->hadamard, i, sc[i], dot);
    }
    for (int j = 0; j < d; j++) assert_true(xh[3 * d + j] == 0.0f);   // zero stays zero
    free(x);
    free(xh);
    free(codes);
    free(qs);
    kvq_quantizer_free(&q);
}

static const char *const methods[] = {"turboquant_mse", "turboquant_prod", "turboquant_rvq"};

static void test_score_equals_q_dot_decode(void **st)
{
    (void)st;
    static const int dims[] = {64, 128, 256};
    for (int mi = 0; mi < 3; mi++)
        for (int di = 0; di < 3; di++)
            for (int b = 1; b <= 4; b++)
                for (int had = 0; had <= 1; had++) {
                    qspec s = {.method = methods[mi], .bits = b, .d = dims[di], .hadamard = had};
                    check_score_decode(&s);
                }
    // mixed channels, sketch_dim != head_dim, 3 residual passes, non power of two (dense)
    qspec extra[] = {
        {.method = "turboquant_mse", .bits = 3, .d = 128, .hadamard = true, .outlier_channels = 32},
        {.method = "turboquant_prod", .bits = 3, .d = 128, .hadamard = true, .outlier_channels = 20},
        {.method = "turboquant_prod", .bits = 2, .d = 128, .hadamard = true, .sketch_dim = 200},
        {.method = "turboquant_prod", .bits = 1, .d = 64, .hadamard = false, .sketch_dim = 37},
        {.method = "turboquant_rvq", .bits = 2, .d = 128, .hadamard = true, .num_residuals = 3},
        {.method = "turboquant_mse", .bits = 8, .d = 96, .hadamard = false},
        {.method = "turboquant_prod", .bits = 3, .d = 96, .hadamard = false},
        {.method = "turboquant_rvq", .bits = 1, .d = 96, .hadamard = false},
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) check_score_decode(&extra[i]);
}

static size_t pb(size_t n, int b) { return (n * (size_t)b + 7) / 8; }

static void test_bytes_per_vector(void **st)
{
    (void)st;
    struct {
        qspec s;
        size_t want;
    } rows[] = {
        {{.method = "turboquant_mse", .bits = 3, .d = 128, .hadamard = true}, 48 + 2},
        {{.method = "turboquant_mse", .bits = 1, .d = 64}, 8 + 2},
        {{.method = "turboquant_mse", .bits = 3, .d = 128, .hadamard = true, .outlier_channels = 5},
         pb(5, 4) + pb(123, 3) + 2},
        {{.method = "turboquant_prod", .bits = 1, .d = 128, .hadamard = true}, 16 + 2},
        {{.method = "turboquant_prod", .bits = 3, .d = 128, .hadamard = true}, 32 + 2 + 16 + 2},
        {{.method = "turboquant_prod", .bits = 4, .d = 256, .hadamard = true, .sketch_dim = 100},
         96 + 2 + 13 + 2},
        {{.method = "turboquant_rvq", .bits = 2, .d = 128, .hadamard = true, .num_residuals = 2},
         64 + 2},
        {{.method = "turboquant_rvq", .bits = 3, .d = 64, .hadamard = true, .num_residuals = 3},
         3 * 24 + 2},
    };
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        kvq_quantizer q;
        kvq_config c;
        must_make(&q, &rows[k].s, &c);
        assert_int_equal(q.bpv, rows[k].want);
        // The buffers use exactly bpv bytes per record: encoding writes n * bpv
        // bytes and no more, and record i depends only on vector i.
        const int d = q.head_dim;
        const size_t n = 21;
        float *x = unit_vectors(n, d, 1 + k);
        uint8_t *batch = malloc(n * q.bpv + 64), *one = malloc(q.bpv + 64);
        memset(batch, 0xA5, n * q.bpv + 64);
        q.m->encode(q.plan, x, n, batch);
        for (size_t i = 0; i < 64; i++) assert_int_equal(batch[n * q.bpv + i], 0xA5);
        for (size_t i = 0; i < n; i++) {
            memset(one, 0x5A, q.bpv + 64);
            q.m->encode(q.plan, x + i * d, 1, one);
            assert_memory_equal(one, batch + i * q.bpv, q.bpv);
            for (size_t t = 0; t < 64; t++) assert_int_equal(one[q.bpv + t], 0x5A);
        }
        free(x);
        free(batch);
        free(one);
        kvq_quantizer_free(&q);
    }
}

static void test_errors(void **st)
{
    (void)st;
    for (int mi = 0; mi < 3; mi++) {
        qspec s = {.method = methods[mi], .bits = 2, .d = 96, .hadamard = true};
        kvq_quantizer q;
        kvq_config c;
        assert_int_equal(make_q(&q, &s, &c), KVQ_ERR_ARG);
        const char *msg = kvq_last_error();
        assert_non_null(strstr(msg, methods[mi]));
        assert_non_null(strstr(msg, "power of two"));
        assert_non_null(strstr(msg, "96"));
    }
    kvq_quantizer q;
    kvq_config c;
    qspec mixed8 = {.method = "turboquant_mse", .bits = 8, .d = 128, .hadamard = true,
                    .outlier_channels = 8};
    assert_int_equal(make_q(&q, &mixed8, &c), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "outlier_channels"));
    qspec rvqmix = {.method = "turboquant_rvq", .bits = 2, .d = 128, .hadamard = true,
                    .outlier_channels = 8};
    assert_int_not_equal(make_q(&q, &rvqmix, &c), KVQ_OK);
    qspec badcb = {.method = "turboquant_mse", .bits = 2, .d = 128, .hadamard = true};
    c = cfg_for(&badcb);
    strcpy(c.codebook, "kmeans");
    kvq_plan_params pp = {.bits = 2, .head_dim = 128, .cfg = &c};
    assert_int_equal(kvq_quantizer_init(&q, "turboquant_mse", &pp), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "kmeans"));
}

static void test_seeds(void **st)
{
    (void)st;
    float *x = unit_vectors(8, 128, 3);
    uint8_t a[8 * 128], b[8 * 128], c2[8 * 128];
    for (int mi = 0; mi < 3; mi++) {
        qspec s = {.method = methods[mi], .bits = 2, .d = 128, .hadamard = true, .seed = 7};
        kvq_quantizer q1, q2, q3;
        kvq_config c1, cc2, c3;
        must_make(&q1, &s, &c1);
        must_make(&q2, &s, &cc2);
        s.seed = 8;
        must_make(&q3, &s, &c3);
        assert_true(q1.bpv <= 128);
        q1.m->encode(q1.plan, x, 8, a);
        q2.m->encode(q2.plan, x, 8, b);
        q3.m->encode(q3.plan, x, 8, c2);
        assert_memory_equal(a, b, 8 * q1.bpv);
        assert_memory_not_equal(a, c2, 8 * q1.bpv);
        kvq_quantizer_free(&q1);
        kvq_quantizer_free(&q2);
        kvq_quantizer_free(&q3);
    }
    free(x);
}

static void test_rvq_passes(void **st)
{
    (void)st;
    // One pass is Lloyd-Max on the Gaussian law: the paper's numbers again.
    // More passes strictly reduce the error.
    float *x = unit_vectors(NVEC, 128, 555);
    for (int b = 1; b <= 3; b++) {
        double prev = 1.0;
        for (int p = 1; p <= 3; p++) {
            qspec s = {.method = "turboquant_rvq", .bits = b, .d = 128, .hadamard = true,
                       .num_residuals = p};
            kvq_quantizer q;
            kvq_config c;
            must_make(&q, &s, &c);
            double m = rel_mse(&q, x, NVEC);
            print_message("turboquant_rvq bits/pass %d passes %d: relative MSE %.5f, %.3f bits/coord\n",
                          b, p, m, q.bpv * 8.0 / 128);
            if (p == 1) expect_rel("rvq one pass", m, paper_mse[b - 1], 0.03);
            assert_true(m < 0.9 * prev);
            prev = m;
            kvq_quantizer_free(&q);
        }
    }
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mse_paper_numbers),
        cmocka_unit_test(test_mse_mixed_channels),
        cmocka_unit_test(test_prod_unbiased_hadamard),
        cmocka_unit_test(test_prod_unbiased_dense),
        cmocka_unit_test(test_score_equals_q_dot_decode),
        cmocka_unit_test(test_bytes_per_vector),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_seeds),
        cmocka_unit_test(test_rvq_passes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
