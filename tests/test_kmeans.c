// test_kmeans.c — shared k-means: recovers separated blobs, inertia never
// increases, same seed same result, sgemm distances equal a scalar reference,
// empty clusters are re-seeded, bad arguments and cancellation; the BLAS
// path against the scalar reference k-means, the AVX2 argmin against its
// scalar loop; the neighbour-list k-means and its strided kernel.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "calib/kmeans.h"
#include "calib/rowops.h"
#include "rng.h"
#include "simd.h"

static float *gauss_data(size_t n, int d, uint64_t seed)
{
    float *x = malloc(sizeof(float) * n * (size_t)d);
    kvq_rng r;
    kvq_rng_seed(&r, seed);
    kvq_rng_gauss_fill(&r, x, n * (size_t)d);
    return x;
}

static void test_blobs(void **state)
{
    (void)state;
    enum { K = 6, PER = 150, D = 8 };
    float centers[K][D];
    kvq_rng r;
    kvq_rng_seed(&r, 11);
    for (int k = 0; k < K; k++)
        for (int j = 0; j < D; j++) centers[k][j] = (float)(30.0 * (kvq_rng_uniform(&r) - 0.5));
    // well separated: pairwise center distances checked below are >> blob sigma 0.5
    float *x = malloc(sizeof(float) * K * PER * D);
    for (int k = 0; k < K; k++)
        for (int i = 0; i < PER; i++)
            for (int j = 0; j < D; j++)
                x[((size_t)k * PER + i) * D + j] = centers[k][j] + 0.5f * (float)kvq_rng_gauss(&r);
    for (int a = 0; a < K; a++)
        for (int b = a + 1; b < K; b++) {
            double s = 0;
            for (int j = 0; j < D; j++) s += pow(centers[a][j] - centers[b][j], 2);
            assert_true(sqrt(s) > 8.0);
        }
    kvq_kmeans_opts o = {.k = K, .max_iter = 50, .seed = 3};
    kvq_kmeans_result res;
    assert_int_equal(kvq_kmeans(x, K * PER, D, &o, &res), KVQ_OK);
    // every blob in exactly one cluster, each cluster one blob
    int map[K];
    for (int k = 0; k < K; k++) {
        map[k] = res.assign[(size_t)k * PER];
        for (int i = 0; i < PER; i++) assert_int_equal(res.assign[(size_t)k * PER + i], map[k]);
        for (int k2 = 0; k2 < k; k2++) assert_int_not_equal(map[k], map[k2]);
        double e = 0;
        for (int j = 0; j < D; j++) e += pow(res.centroids[map[k] * D + j] - centers[k][j], 2);
        assert_true(sqrt(e) < 0.3);   // mean of 150 points, sigma 0.5 per axis
    }
    kvq_kmeans_result_free(&res);
    free(x);
}

static void test_inertia_monotone(void **state)
{
    (void)state;
    size_t n = 3000;
    int d = 16;
    float *x = gauss_data(n, d, 7);
    kvq_kmeans_opts o = {.k = 40, .max_iter = 60, .tol = 0, .seed = 9};
    kvq_kmeans_result r;
    assert_int_equal(kvq_kmeans(x, n, d, &o, &r), KVQ_OK);
    assert_true(r.n_iter >= 5);
    for (int i = 1; i < r.n_iter; i++) assert_true(r.inertia[i] <= r.inertia[i - 1] * (1 + 1e-12));
    assert_true(r.inertia[r.n_iter - 1] < r.inertia[0]);
    // the reported inertia is the true one for the returned assignment... up to
    // the final update (which only lowers it)
    double tot = 0;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            tot += pow(x[i * d + j] - r.centroids[(size_t)r.assign[i] * d + j], 2);
    assert_true(tot <= r.inertia[r.n_iter - 1] * (1 + 1e-6));
    kvq_kmeans_result_free(&r);
    free(x);
}

// Above k * max_points_per_centroid rows Lloyd runs on a seeded sample (FAISS's
// rule), every row is still assigned, and the fit stays close to the full one.
static void test_sampled_points_per_centroid(void **state)
{
    (void)state;
    size_t n = 20000;
    int d = 8, k = 16;
    float *x = gauss_data(n, d, 11);
    kvq_kmeans_opts o = {.k = k, .max_iter = 25, .seed = 4, .max_points_per_centroid = 64};
    kvq_kmeans_result a, b, full;
    assert_int_equal(kvq_kmeans(x, n, d, &o, &a), KVQ_OK);
    assert_int_equal(a.n_train, (size_t)k * 64);
    assert_int_equal(kvq_kmeans(x, n, d, &o, &b), KVQ_OK);
    assert_memory_equal(a.centroids, b.centroids, sizeof(float) * (size_t)k * d);
    assert_memory_equal(a.assign, b.assign, sizeof(int32_t) * n);
    o.max_points_per_centroid = -1;
    assert_int_equal(kvq_kmeans(x, n, d, &o, &full), KVQ_OK);
    assert_int_equal(full.n_train, n);
    // every row's assignment is its nearest final centroid; the sampled fit's
    // inertia on all rows is within 5% of the full fit's
    double ia = 0, ifull = 0;
    for (size_t i = 0; i < n; i++) {
        double best = INFINITY;
        int bj = -1;
        for (int j = 0; j < k; j++) {
            double t = 0;
            for (int c = 0; c < d; c++) t += pow(x[i * d + c] - a.centroids[(size_t)j * d + c], 2);
            if (t < best) best = t, bj = j;
        }
        double ta = 0, tf = 0;
        for (int c = 0; c < d; c++) {
            ta += pow(x[i * d + c] - a.centroids[(size_t)a.assign[i] * d + c], 2);
            tf += pow(x[i * d + c] - full.centroids[(size_t)full.assign[i] * d + c], 2);
        }
        assert_true(a.assign[i] == bj || ta <= best * (1 + 1e-5));
        ia += ta, ifull += tf;
    }
    print_message("figure: k-means 20000 x 8, k 16: inertia sampled (64/centroid) %.1f vs all rows %.1f\n", ia, ifull);
    assert_true(ia < ifull * 1.05);
    kvq_kmeans_result_free(&a), kvq_kmeans_result_free(&b), kvq_kmeans_result_free(&full);
    free(x);
}

static void test_deterministic(void **state)
{
    (void)state;
    size_t n = 1000;
    int d = 12;
    float *x = gauss_data(n, d, 8);
    kvq_kmeans_opts o = {.k = 17, .max_iter = 30, .seed = 5};
    kvq_kmeans_result a, b, c;
    assert_int_equal(kvq_kmeans(x, n, d, &o, &a), KVQ_OK);
    assert_int_equal(kvq_kmeans(x, n, d, &o, &b), KVQ_OK);
    assert_int_equal(a.n_iter, b.n_iter);
    assert_memory_equal(a.centroids, b.centroids, sizeof(float) * 17 * (size_t)d);
    assert_memory_equal(a.assign, b.assign, sizeof(int32_t) * n);
    o.seed = 6;
    assert_int_equal(kvq_kmeans(x, n, d, &o, &c), KVQ_OK);
    assert_true(memcmp(a.centroids, c.centroids, sizeof(float) * 17 * (size_t)d) != 0);
    kvq_kmeans_result_free(&a);
    kvq_kmeans_result_free(&b);
    kvq_kmeans_result_free(&c);
    free(x);
}

static void test_sqdist_matches_scalar(void **state)
{
    (void)state;
    size_t n = 37;
    int k = 11, d = 19;
    float *x = gauss_data(n, d, 1), *c = gauss_data((size_t)k, d, 2);
    float xn[37], cn[11], dist[37 * 11];
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
        xn[i] = (float)s;
    }
    for (int i = 0; i < k; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)c[i * d + j] * c[i * d + j];
        cn[i] = (float)s;
    }
    kvq_kmeans_sqdist(x, xn, n, c, cn, k, d, dist);
    int32_t asg[37];
    float best[37];
    assert_int_equal(kvq_kmeans_assign(x, n, c, k, d, asg, best), KVQ_OK);
    for (size_t i = 0; i < n; i++) {
        int bj = 0;
        double bd = INFINITY;
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (int t = 0; t < d; t++) s += pow((double)x[i * d + t] - c[j * d + t], 2);
            assert_true(fabs(dist[i * k + j] - s) <= 1e-4 * (1 + s));
            if (s < bd) bd = s, bj = j;
        }
        assert_int_equal(asg[i], bj);
        assert_true(fabs(best[i] - bd) <= 1e-4 * (1 + bd));
    }
    free(x);
    free(c);
}

static void test_empty_clusters_reseeded(void **state)
{
    (void)state;
    // 5 distinct points, each 4 times, k = 8: k-means++ covers the 5 points,
    // then can only pick duplicates, whose clusters come out empty (ties go to
    // the lower index) and must be re-seeded from clusters of size > 1.
    enum { P = 5, REP = 4, K = 8, D = 3 };
    float x[P * REP * D];
    kvq_rng r;
    kvq_rng_seed(&r, 4);
    for (int i = 0; i < P; i++)
        for (int j = 0; j < D; j++) {
            float v = (float)kvq_rng_gauss(&r);
            for (int t = 0; t < REP; t++) x[(t * P + i) * D + j] = v;
        }
    kvq_kmeans_opts o = {.k = K, .max_iter = 20, .seed = 1};
    kvq_kmeans_result res;
    assert_int_equal(kvq_kmeans(x, P * REP, D, &o, &res), KVQ_OK);
    assert_true(res.n_reseeded >= K - P);
    int count[K] = {0};
    for (int i = 0; i < P * REP; i++) count[res.assign[i]]++;
    for (int k = 0; k < K; k++) assert_true(count[k] >= 1);
    assert_true(res.inertia[res.n_iter - 1] < 1e-10);
    kvq_kmeans_result_free(&res);

    // k = n with all points identical: nothing to split, still a clean result
    float same[8 * 2] = {0};
    o.k = 8;
    assert_int_equal(kvq_kmeans(same, 8, 2, &o, &res), KVQ_OK);
    assert_true(res.inertia[res.n_iter - 1] == 0);
    kvq_kmeans_result_free(&res);
}

static bool cancel_at_3(double f, const char *stage, double eta, void *user)
{
    (void)eta;
    assert_string_equal(stage, "kmeans");
    int *calls = user;
    ++*calls;
    return f > 0 && *calls >= 3;
}

static void test_args_and_cancel(void **state)
{
    (void)state;
    float *x = gauss_data(100, 4, 3);
    kvq_kmeans_opts o = {.k = 101, .max_iter = 10, .seed = 1};
    kvq_kmeans_result r;
    assert_int_equal(kvq_kmeans(x, 100, 4, &o, &r), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "k=101"));
    o.k = 5;
    o.max_iter = 0;
    assert_int_equal(kvq_kmeans(x, 100, 4, &o, &r), KVQ_ERR_ARG);
    o.max_iter = 50;
    x[17] = NAN;
    assert_int_equal(kvq_kmeans(x, 100, 4, &o, &r), KVQ_ERR_NONFINITE);
    x[17] = 0;
    int calls = 0;
    kvq_progress p = {.fn = cancel_at_3, .user = &calls};
    o.progress = &p;
    assert_int_equal(kvq_kmeans(x, 100, 4, &o, &r), KVQ_ERR_CANCELLED);
    assert_null(r.centroids);
    assert_int_equal(calls, 3);
    free(x);
}


// The sgemm path against the scalar spec: same seed and data, so the same
// seeding; the assignment steps differ only by rounding, which on separated
// blobs (and on overlapping data of this size) moves no point.
static void test_matches_reference(void **state)
{
    (void)state;
    const int K = 24, PER = 40, D = 16;
    size_t n = (size_t)K * PER;
    float *x = gauss_data(n, D, 11);
    for (int k = 0; k < K; k++)   // K blobs, centres 6 apart on coordinate k % D, spread 1
        for (int i = 0; i < PER; i++) x[((size_t)k * PER + i) * D + k % D] += 6.0f * (1 + k / D);
    for (int ppc = -1; ppc <= 16; ppc += 17) {   // every row, then a 16 per centroid sample
        kvq_kmeans_opts o = {.k = K, .max_iter = 30, .seed = 5, .max_points_per_centroid = ppc};
        kvq_kmeans_result a, b;
        assert_int_equal(kvq_kmeans(x, n, D, &o, &a), KVQ_OK);
        assert_int_equal(kvq_kmeans_reference(x, n, D, &o, &b), KVQ_OK);
        assert_int_equal(a.n_train, b.n_train);
        assert_memory_equal(a.assign, b.assign, sizeof(int32_t) * n);
        double ia = a.inertia[a.n_iter - 1], ib = b.inertia[b.n_iter - 1];
        print_message("figure: k-means %zu x %d, k %d, ppc %d: inertia BLAS %.4f vs scalar reference %.4f "
                      "(%d / %d iterations)\n", n, D, K, ppc, ia, ib, a.n_iter, b.n_iter);
        assert_true(fabs(ia - ib) <= 1e-5 * ib);
        kvq_kmeans_result_free(&a);
        kvq_kmeans_result_free(&b);
    }
    // overlapping data (no blob structure): objectives still agree closely
    float *g = gauss_data(600, 4, 12);
    kvq_kmeans_opts o = {.k = 32, .max_iter = 20, .seed = 9};
    kvq_kmeans_result a, b;
    assert_int_equal(kvq_kmeans(g, 600, 4, &o, &a), KVQ_OK);
    assert_int_equal(kvq_kmeans_reference(g, 600, 4, &o, &b), KVQ_OK);
    double ia = a.inertia[a.n_iter - 1], ib = b.inertia[b.n_iter - 1];
    assert_true(fabs(ia - ib) <= 1e-3 * ib);
    kvq_kmeans_result_free(&a);
    kvq_kmeans_result_free(&b);
    free(g);
    free(x);
}

// The AVX2 argmin picks the scalar loop's index on random rows, on rows full
// of ties (the lowest index must win) and on lengths that leave a tail.
static void test_argmin_matches_scalar(void **state)
{
    (void)state;
    kvq_rng r;
    kvq_rng_seed(&r, 3);
    float row[300], cn[300];
    for (int trial = 0; trial < 400; trial++) {
        int k = 1 + (int)(kvq_rng_uniform(&r) * 299);
        int levels = trial % 2 ? 3 : 1 << 20;   // odd trials: values from {0, 1, 2}, many ties
        for (int j = 0; j < k; j++) {
            row[j] = (float)(int)(kvq_rng_uniform(&r) * levels);
            cn[j] = trial % 4 == 1 ? 0.0f : (float)(int)(kvq_rng_uniform(&r) * levels);
        }
        float bf, bs;
        kvq_simd_force_scalar(false);
        int f = kvq_kmeans_argmin(row, cn, k, &bf);
        kvq_simd_force_scalar(true);
        int sc = kvq_kmeans_argmin(row, cn, k, &bs);
        kvq_simd_force_scalar(false);
        int want = 0;
        for (int j = 1; j < k; j++)
            if (row[j] + cn[j] < row[want] + cn[want]) want = j;
        assert_int_equal(sc, want);
        assert_int_equal(f, want);
        assert_true(bf == bs);
    }
}

// The small-d scores (d <= KVQ_KMEANS_SMALL_D) and the fused argmin2 over
// them: AVX2 equals the scalar reference, on random points and on points and
// centroids from a small integer grid (many ties: the lowest index must win,
// and the second value equals the best on a tie), k with and without a tail.
static void test_small_d_scores_match_scalar(void **state)
{
    (void)state;
    kvq_rng r;
    kvq_rng_seed(&r, 11);
    enum { M = 5, KMAX = 300 };
    float x[M * KVQ_KMEANS_SMALL_D], ct[KVQ_KMEANS_SMALL_D * KMAX], cn[KMAX], fa[M * KMAX], fb[M * KMAX];
    for (int trial = 0; trial < 300; trial++) {
        int d = 1 + trial % KVQ_KMEANS_SMALL_D, k = trial % 3 == 0 ? 256 : 1 + (int)(kvq_rng_uniform(&r) * (KMAX - 1));
        bool grid = trial % 2;
        for (int i = 0; i < M * d; i++) x[i] = grid ? (float)(int)(kvq_rng_uniform(&r) * 3) : (float)kvq_rng_gauss(&r);
        for (int i = 0; i < d * k; i++) ct[i] = grid ? (float)(int)(kvq_rng_uniform(&r) * 3) : (float)kvq_rng_gauss(&r);
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (int t = 0; t < d; t++) s += (double)ct[t * k + j] * ct[t * k + j];
            cn[j] = (float)s;
        }
        kvq_simd_force_scalar(false);
        kvq_kmeans_scores_small(x, M, d, ct, k, fa);
        kvq_kmeans_scores_small_ref(x, M, d, ct, k, fb);
        for (int i = 0; i < M * k; i++) assert_true(fa[i] == fb[i]);
        for (int i = 0; i < M; i++) {
            float b1, s1, b2, s2, b3, s3;
            kvq_simd_force_scalar(false);
            int j1 = kvq_kmeans_argmin2_small(x + i * d, d, ct, cn, k, &b1, &s1);
            kvq_simd_force_scalar(true);
            int j2 = kvq_kmeans_argmin2_small(x + i * d, d, ct, cn, k, &b2, &s2);
            int j3 = kvq_kmeans_argmin2(fb + i * k, cn, k, &b3, &s3);   // the unfused spec
            kvq_simd_force_scalar(false);
            assert_int_equal(j1, j3);
            assert_int_equal(j2, j3);
            assert_true(b1 == b3 && b2 == b3);
            assert_true((s1 == s3 || (isinf(s1) && isinf(s3))) && (s2 == s3 || (isinf(s2) && isinf(s3))));
        }
    }
}

// The neighbour-list scan (kmeans.c, k 64..256, d <= 8): the strided kernel
// against its scalar loop and against the compact kernel on a copy of the
// same columns, with and without a padded (+inf norm) tail.
static void test_strided_argmin2_matches_scalar(void **state)
{
    (void)state;
    kvq_rng r;
    kvq_rng_seed(&r, 31);
    enum { LD = 272 };
    float x[KVQ_KMEANS_SMALL_D], ct[KVQ_KMEANS_SMALL_D * LD], cc[KVQ_KMEANS_SMALL_D * LD], cn[LD];
    for (int trial = 0; trial < 400; trial++) {
        int d = 1 + trial % KVQ_KMEANS_SMALL_D, k = 16 * (1 + (int)(kvq_rng_uniform(&r) * 16));
        bool grid = trial % 2;
        for (int t = 0; t < d; t++) x[t] = grid ? (float)(int)(kvq_rng_uniform(&r) * 3) : (float)kvq_rng_gauss(&r);
        for (int i = 0; i < d * LD; i++) ct[i] = grid ? (float)(int)(kvq_rng_uniform(&r) * 3) : (float)kvq_rng_gauss(&r);
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (int t = 0; t < d; t++) s += (double)ct[t * LD + j] * ct[t * LD + j], cc[t * k + j] = ct[t * LD + j];
            cn[j] = (trial % 5 == 0 && j >= k - 7) ? INFINITY : (float)s;
        }
        float b1, s1, b2, s2, b3, s3;
        kvq_simd_force_scalar(false);
        int j1 = kvq_kmeans_argmin2_small_ld(x, d, ct, LD, cn, k, &b1, &s1);
        int j2 = kvq_kmeans_argmin2_small_ld_ref(x, d, ct, LD, cn, k, &b2, &s2);
        int j3 = kvq_kmeans_argmin2_small(x, d, cc, cn, k, &b3, &s3);
        assert_int_equal(j1, j2);
        assert_int_equal(j1, j3);
        assert_true(b1 == b2 && b1 == b3 && s1 == s2 && s1 == s3);
    }
    double q[67], y1[67], y2[67];
    for (int i = 0; i < 67; i++) q[i] = fabs(kvq_rng_gauss(&r)) * (i + 1);
    for (size_t n = 0; n <= 67; n += 11) {
        kvq_row_sqrt(y1, q, n);
        kvq_row_sqrt_ref(y2, q, n);
        assert_memory_equal(y1, y2, sizeof(double) * n);
    }
}

// k-means through the neighbour lists (k = 64 and 256, d = 4 and 2, the
// vecinfer shapes): the AVX2 and scalar kernels give the same bits, and the
// objective matches the scalar reference k-means.
static void test_lists_match_reference(void **state)
{
    (void)state;
    const int ks[2] = {64, 256}, ds[2] = {4, 2};
    for (int c = 0; c < 2; c++) {
        size_t n = 6000;
        int k = ks[c], d = ds[c];
        float *x = gauss_data(n, d, 40 + (uint64_t)c);
        for (size_t i = 0; i < n; i++) x[i * d] *= 3.0f;   // uneven spread, as smoothed keys
        kvq_kmeans_opts o = {.k = k, .max_iter = 25, .seed = 3, .max_points_per_centroid = -1};
        kvq_kmeans_result a, b, ref;
        kvq_simd_force_scalar(false);
        assert_int_equal(kvq_kmeans(x, n, d, &o, &a), KVQ_OK);
        kvq_simd_force_scalar(true);
        assert_int_equal(kvq_kmeans(x, n, d, &o, &b), KVQ_OK);
        kvq_simd_force_scalar(false);
        assert_int_equal(kvq_kmeans_reference(x, n, d, &o, &ref), KVQ_OK);
        assert_int_equal(a.n_iter, b.n_iter);
        assert_memory_equal(a.centroids, b.centroids, sizeof(float) * (size_t)k * d);
        assert_memory_equal(a.assign, b.assign, sizeof(int32_t) * n);
        double ia = a.inertia[a.n_iter - 1], ir = ref.inertia[ref.n_iter - 1];
        print_message("figure: k-means %zu x %d, k %d (neighbour lists): inertia %.4f vs scalar reference %.4f "
                      "(%d / %d iterations)\n", n, d, k, ia, ir, a.n_iter, ref.n_iter);
        assert_true(fabs(ia - ir) <= 1e-3 * ir);
        for (int it = 1; it < a.n_iter; it++) assert_true(a.inertia[it] <= a.inertia[it - 1]);
        kvq_kmeans_result_free(&a), kvq_kmeans_result_free(&b), kvq_kmeans_result_free(&ref);
        free(x);
    }
}

// calib/rowops.h: the AVX2 compilation gives the reference's bits.
static void test_rowops_match_reference(void **state)
{
    (void)state;
    float *a = gauss_data(300, 1, 21), *b = gauss_data(300, 1, 22);
    double acc1[300], acc2[300];
    float y1[300], y2[300];
    for (int d = 1; d <= 300; d += 7) {
        assert_true(kvq_row_sqdist(a, b, d) == kvq_row_sqdist_ref(a, b, d));
        for (int j = 0; j < d; j++) acc1[j] = acc2[j] = b[j] * 3.0, y1[j] = y2[j] = b[j];
        kvq_row_acc(acc1, a, d);
        kvq_row_acc_ref(acc2, a, d);
        kvq_row_add(y1, a, d);
        kvq_row_add_ref(y2, a, d);
        assert_memory_equal(acc1, acc2, sizeof(double) * (size_t)d);
        assert_memory_equal(y1, y2, sizeof(float) * (size_t)d);
    }
    double s = 0;
    for (int j = 0; j < 300; j++) s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    assert_true(fabs(kvq_row_sqdist(a, b, 300) - s) <= 1e-12 * s);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blobs),
        cmocka_unit_test(test_inertia_monotone),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_sampled_points_per_centroid),
        cmocka_unit_test(test_sqdist_matches_scalar),
        cmocka_unit_test(test_empty_clusters_reseeded),
        cmocka_unit_test(test_args_and_cancel),
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_argmin_matches_scalar),
        cmocka_unit_test(test_small_d_scores_match_scalar),
        cmocka_unit_test(test_rowops_match_reference),
        cmocka_unit_test(test_strided_argmin2_matches_scalar),
        cmocka_unit_test(test_lists_match_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
