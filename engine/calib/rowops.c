// calib/rowops.c — one body per kernel, two compilations (rowops.h), and the
// k-means argmin kernels (kvq_kmeans_argmin / argmin2, kmeans.h): AVX2
// intrinsics beside their scalar loops.
#include <math.h>
#include <stdint.h>
#include "calib/kmeans.h"
#include "calib/rowops.h"
#include "simd.h"
#if KVQ_HAVE_X86
#include <immintrin.h>
#endif

#define SQDIST_BODY                                                                  \
    double s[16] = {0};                                                              \
    int j = 0;                                                                       \
    for (; j + 16 <= d; j += 16)                                                     \
        for (int u = 0; u < 16; u++) {                                               \
            double t = (double)a[j + u] - (double)b[j + u];                          \
            s[u] += t * t;                                                           \
        }                                                                            \
    for (; j < d; j++) {                                                             \
        double t = (double)a[j] - (double)b[j];                                      \
        s[0] += t * t;                                                               \
    }                                                                                \
    for (int u = 0; u < 8; u++) s[u] += s[u + 8];                                    \
    for (int u = 0; u < 4; u++) s[u] += s[u + 4];                                    \
    return (s[0] + s[1]) + (s[2] + s[3]);

#define ACC_BODY                                                                     \
    int j = 0;                                                                       \
    for (; j + 8 <= d; j += 8)                                                       \
        for (int u = 0; u < 8; u++) acc[j + u] += x[j + u];                          \
    for (; j < d; j++) acc[j] += x[j];

#define ADD_BODY                                                                     \
    int j = 0;                                                                       \
    for (; j + 16 <= d; j += 16)                                                     \
        for (int u = 0; u < 16; u++) y[j + u] += x[j + u];                           \
    for (; j < d; j++) y[j] += x[j];

double kvq_row_sqdist_ref(const float *a, const float *b, int d) { SQDIST_BODY }
void kvq_row_acc_ref(double *acc, const float *x, int d) { ACC_BODY }
void kvq_row_add_ref(float *restrict y, const float *restrict x, int d) { ADD_BODY }

#if KVQ_HAVE_X86
// SQDIST_BODY with its 16 partial sums held in four registers: compiled from
// the macro they lived in a stack array, each step a store and a reload
// (commvq's k-means, d = 128, spent a third of its time here). The same
// products, partial sums, tail and tree, so the same bits.
static KVQ_TARGET_AVX2 double sqdist_avx2(const float *a, const float *b, int d)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
    int j = 0;
    for (; j + 16 <= d; j += 16) {
        __m256 va = _mm256_loadu_ps(a + j), vb = _mm256_loadu_ps(b + j);
        __m256 wa = _mm256_loadu_ps(a + j + 8), wb = _mm256_loadu_ps(b + j + 8);
        __m256d t0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(va)), _mm256_cvtps_pd(_mm256_castps256_ps128(vb)));
        __m256d t1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(va, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(vb, 1)));
        __m256d t2 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(wa)), _mm256_cvtps_pd(_mm256_castps256_ps128(wb)));
        __m256d t3 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(wa, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(wb, 1)));
        s0 = _mm256_add_pd(s0, _mm256_mul_pd(t0, t0));
        s1 = _mm256_add_pd(s1, _mm256_mul_pd(t1, t1));
        s2 = _mm256_add_pd(s2, _mm256_mul_pd(t2, t2));
        s3 = _mm256_add_pd(s3, _mm256_mul_pd(t3, t3));
    }
    double s[16];
    _mm256_storeu_pd(s, s0), _mm256_storeu_pd(s + 4, s1), _mm256_storeu_pd(s + 8, s2), _mm256_storeu_pd(s + 12, s3);
    for (; j < d; j++) {
        double t = (double)a[j] - (double)b[j];
        s[0] += t * t;
    }
    for (int u = 0; u < 8; u++) s[u] += s[u + 8];
    for (int u = 0; u < 4; u++) s[u] += s[u + 4];
    return (s[0] + s[1]) + (s[2] + s[3]);
}
static KVQ_TARGET_AVX2 void acc_avx2(double *acc, const float *x, int d) { ACC_BODY }
static KVQ_TARGET_AVX2 void add_avx2(float *restrict y, const float *restrict x, int d) { ADD_BODY }
#endif

double kvq_row_sqdist_any(const float *a, const float *b, int d)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) return sqdist_avx2(a, b, d);
#endif
    return kvq_row_sqdist_ref(a, b, d);
}

void kvq_row_acc_any(double *acc, const float *x, int d)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        acc_avx2(acc, x, d);
        return;
    }
#endif
    kvq_row_acc_ref(acc, x, d);
}

void kvq_row_add(float *y, const float *x, int d)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        add_avx2(y, x, d);
        return;
    }
#endif
    kvq_row_add_ref(y, x, d);
}

void kvq_row_sqrt_ref(double *y, const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = sqrt(x[i]);
}

#if KVQ_HAVE_X86
static KVQ_TARGET_AVX2 void sqrt_avx2(double *y, const double *x, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(y + i, _mm256_sqrt_pd(_mm256_loadu_pd(x + i)));
    for (; i < n; i++) y[i] = sqrt(x[i]);
}
#endif

void kvq_row_sqrt(double *y, const double *x, size_t n)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        sqrt_avx2(y, x, n);
        return;
    }
#endif
    kvq_row_sqrt_ref(y, x, n);
}

// ---- k-means scores for small d (kmeans.h) ----
// out[i][j] = sum_t (-2 x_it) c_jt, the sum in t order starting from the
// first product, each product and sum rounded (no FMA): the AVX2 path
// computes the same float operations eight centroids at a time.
static float score_small_one(const float *x, int d, const float *ct, int ld, int j)
{
    float s = (-2.0f * x[0]) * ct[j];
    for (int t = 1; t < d; t++) s = s + (-2.0f * x[t]) * ct[(size_t)t * ld + j];
    return s;
}

static void scores_small_ref(const float *x, size_t m, int d, const float *ct, int k, float *out)
{
    for (size_t i = 0; i < m; i++)
        for (int j = 0; j < k; j++) out[i * (size_t)k + j] = score_small_one(x + i * (size_t)d, d, ct, k, j);
}

#if KVQ_HAVE_X86
static KVQ_TARGET_AVX2 void scores_small_avx2(const float *x, size_t m, int d, const float *ct, int k, float *out)
{
    for (size_t i = 0; i < m; i++) {
        const float *xi = x + i * (size_t)d;
        float *o = out + i * (size_t)k;
        __m256 a[KVQ_KMEANS_SMALL_D];
        for (int t = 0; t < d; t++) a[t] = _mm256_set1_ps(-2.0f * xi[t]);
        int j = 0;
        for (; j + 16 <= k; j += 16) {   // two independent chains
            __m256 s0 = _mm256_mul_ps(a[0], _mm256_loadu_ps(ct + j));
            __m256 s1 = _mm256_mul_ps(a[0], _mm256_loadu_ps(ct + j + 8));
            for (int t = 1; t < d; t++) {
                const float *c = ct + (size_t)t * k + j;
                s0 = _mm256_add_ps(s0, _mm256_mul_ps(a[t], _mm256_loadu_ps(c)));
                s1 = _mm256_add_ps(s1, _mm256_mul_ps(a[t], _mm256_loadu_ps(c + 8)));
            }
            _mm256_storeu_ps(o + j, s0);
            _mm256_storeu_ps(o + j + 8, s1);
        }
        for (; j < k; j++) o[j] = score_small_one(xi, d, ct, k, j);
    }
}
#endif

void kvq_kmeans_scores_small(const float *x, size_t m, int d, const float *ct, int k, float *out)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2() && d <= KVQ_KMEANS_SMALL_D) {
        scores_small_avx2(x, m, d, ct, k, out);
        return;
    }
#endif
    scores_small_ref(x, m, d, ct, k, out);
}

void kvq_kmeans_scores_small_ref(const float *x, size_t m, int d, const float *ct, int k, float *out)
{
    scores_small_ref(x, m, d, ct, k, out);
}

// ---- k-means argmin (kmeans.h) ----
// argmin over j of row[j] + cnorm[j], ties to the lower index: the scalar
// spec of argmin_avx2 (tests/test_kmeans.c checks them against each other).
static int argmin_ref(const float *row, const float *cnorm, int k, float *best)
{
    int bj = 0;
    float bv = row[0] + cnorm[0];
    for (int j = 1; j < k; j++) {
        float v = row[j] + cnorm[j];
        if (v < bv) bv = v, bj = j;
    }
    *best = bv;
    return bj;
}

#if KVQ_HAVE_X86
// Four sets of eight lanes, each lane keeping its first minimum (strict <);
// the lowest index among the lanes holding the overall minimum is then the
// first minimum of the row, so the pick equals argmin_ref's (same float sums).
// Four independent compare/blend chains instead of one: the chain's latency,
// not the loads, bounded a single set. The scalar loop was two thirds of
// vecinfer's time at k = 256.
static inline KVQ_TARGET_AVX2 void km_merge(__m256 *v, __m256i *b, __m256 v2, __m256i b2)
{
    __m256 lt = _mm256_cmp_ps(v2, *v, _CMP_LT_OQ), eq = _mm256_cmp_ps(v2, *v, _CMP_EQ_OQ);
    __m256 take = _mm256_or_ps(lt, _mm256_and_ps(eq, _mm256_castsi256_ps(_mm256_cmpgt_epi32(*b, b2))));
    *v = _mm256_blendv_ps(*v, v2, take);
    *b = _mm256_blendv_epi8(*b, b2, _mm256_castps_si256(take));
}

static KVQ_TARGET_AVX2 int argmin_avx2(const float *row, const float *cnorm, int k, float *best)
{
    if (k < 32) return argmin_ref(row, cnorm, k, best);
    const __m256i step = _mm256_set1_epi32(32), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i i0 = lane, i1 = _mm256_add_epi32(lane, _mm256_set1_epi32(8));
    __m256i i2 = _mm256_add_epi32(lane, _mm256_set1_epi32(16)), i3 = _mm256_add_epi32(lane, _mm256_set1_epi32(24));
    __m256i b0 = i0, b1 = i1, b2 = i2, b3 = i3;
    __m256 v0 = _mm256_add_ps(_mm256_loadu_ps(row), _mm256_loadu_ps(cnorm));
    __m256 v1 = _mm256_add_ps(_mm256_loadu_ps(row + 8), _mm256_loadu_ps(cnorm + 8));
    __m256 v2 = _mm256_add_ps(_mm256_loadu_ps(row + 16), _mm256_loadu_ps(cnorm + 16));
    __m256 v3 = _mm256_add_ps(_mm256_loadu_ps(row + 24), _mm256_loadu_ps(cnorm + 24));
#define KM_LANE(V, B, I, OFF)                                                                      \
    do {                                                                                           \
        I = _mm256_add_epi32(I, step);                                                             \
        __m256 v = _mm256_add_ps(_mm256_loadu_ps(row + j + OFF), _mm256_loadu_ps(cnorm + j + OFF)); \
        __m256 lt = _mm256_cmp_ps(v, V, _CMP_LT_OQ);                                               \
        V = _mm256_blendv_ps(V, v, lt);                                                            \
        B = _mm256_blendv_epi8(B, I, _mm256_castps_si256(lt));                                     \
    } while (0)
    int j = 32;
    for (; j + 32 <= k; j += 32) {
        KM_LANE(v0, b0, i0, 0);
        KM_LANE(v1, b1, i1, 8);
        KM_LANE(v2, b2, i2, 16);
        KM_LANE(v3, b3, i3, 24);
    }
#undef KM_LANE
    // branch-free merge down to lane 0: the smaller value, on a tie the lower index
    km_merge(&v0, &b0, v1, b1);
    km_merge(&v2, &b2, v3, b3);
    km_merge(&v0, &b0, v2, b2);
    km_merge(&v0, &b0, _mm256_permute2f128_ps(v0, v0, 1), _mm256_permute2x128_si256(b0, b0, 1));
    km_merge(&v0, &b0, _mm256_permute_ps(v0, _MM_SHUFFLE(1, 0, 3, 2)), _mm256_shuffle_epi32(b0, _MM_SHUFFLE(1, 0, 3, 2)));
    km_merge(&v0, &b0, _mm256_permute_ps(v0, _MM_SHUFFLE(2, 3, 0, 1)), _mm256_shuffle_epi32(b0, _MM_SHUFFLE(2, 3, 0, 1)));
    float b = _mm256_cvtss_f32(v0);
    int bj = _mm256_cvtsi256_si32(b0);
    for (; j < k; j++) {   // the tail's indices are above every lane's
        float v = row[j] + cnorm[j];
        if (v < b) b = v, bj = j;
    }
    *best = b;
    return bj;
}
#endif

// argmin_ref plus the second smallest value (*second; +inf when k = 1).
static int argmin2_ref(const float *row, const float *cnorm, int k, float *best, float *second)
{
    int bj = 0;
    float bv = row[0] + cnorm[0], sv = INFINITY;
    for (int j = 1; j < k; j++) {
        float v = row[j] + cnorm[j];
        if (v < bv) sv = bv, bv = v, bj = j;
        else if (v < sv) sv = v;
    }
    *best = bv;
    *second = sv;
    return bj;
}

#if KVQ_HAVE_X86
// argmin_avx2 with each lane's second smallest value carried along; merging
// two lanes keeps the better (value, index) and the smallest of what is left.
static inline KVQ_TARGET_AVX2 void km_merge2(__m256 *v, __m256i *b, __m256 *s, __m256 v2, __m256i b2, __m256 s2)
{
    __m256 lt = _mm256_cmp_ps(v2, *v, _CMP_LT_OQ), eq = _mm256_cmp_ps(v2, *v, _CMP_EQ_OQ);
    __m256 take = _mm256_or_ps(lt, _mm256_and_ps(eq, _mm256_castsi256_ps(_mm256_cmpgt_epi32(*b, b2))));
    *s = _mm256_min_ps(_mm256_min_ps(*s, s2), _mm256_max_ps(*v, v2));
    *v = _mm256_blendv_ps(*v, v2, take);
    *b = _mm256_blendv_epi8(*b, b2, _mm256_castps_si256(take));
}

// One block of eight candidates v with indices i into a lane set (best V at
// B, second best S): argmin2's inner step.
static inline __attribute__((always_inline)) KVQ_TARGET_AVX2 void km_lane2(__m256 v, __m256i i, __m256 *V,
                                                                           __m256i *B, __m256 *S)
{
    __m256 lt = _mm256_cmp_ps(v, *V, _CMP_LT_OQ);
    *S = _mm256_blendv_ps(_mm256_min_ps(*S, v), *V, lt);
    *V = _mm256_blendv_ps(*V, v, lt);
    *B = _mm256_blendv_epi8(*B, i, _mm256_castps_si256(lt));
}

// The two lane sets merged down to one best (returned index, *best) and
// *second, ties to the lower index.
static inline __attribute__((always_inline)) KVQ_TARGET_AVX2 int km_reduce2(__m256 v0, __m256i b0, __m256 s0,
                                                                            __m256 v1, __m256i b1, __m256 s1,
                                                                            float *best, float *second)
{
    km_merge2(&v0, &b0, &s0, v1, b1, s1);
    km_merge2(&v0, &b0, &s0, _mm256_permute2f128_ps(v0, v0, 1), _mm256_permute2x128_si256(b0, b0, 1),
              _mm256_permute2f128_ps(s0, s0, 1));
    km_merge2(&v0, &b0, &s0, _mm256_permute_ps(v0, _MM_SHUFFLE(1, 0, 3, 2)),
              _mm256_shuffle_epi32(b0, _MM_SHUFFLE(1, 0, 3, 2)), _mm256_permute_ps(s0, _MM_SHUFFLE(1, 0, 3, 2)));
    km_merge2(&v0, &b0, &s0, _mm256_permute_ps(v0, _MM_SHUFFLE(2, 3, 0, 1)),
              _mm256_shuffle_epi32(b0, _MM_SHUFFLE(2, 3, 0, 1)), _mm256_permute_ps(s0, _MM_SHUFFLE(2, 3, 0, 1)));
    *best = _mm256_cvtss_f32(v0);
    *second = _mm256_cvtss_f32(s0);
    return _mm256_cvtsi256_si32(b0);
}

static KVQ_TARGET_AVX2 int argmin2_avx2(const float *row, const float *cnorm, int k, float *best, float *second)
{
    if (k < 16) return argmin2_ref(row, cnorm, k, best, second);
    const __m256i step = _mm256_set1_epi32(16), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 inf = _mm256_set1_ps(INFINITY);
    __m256i i0 = lane, i1 = _mm256_add_epi32(lane, _mm256_set1_epi32(8)), b0 = i0, b1 = i1;
    __m256 v0 = _mm256_add_ps(_mm256_loadu_ps(row), _mm256_loadu_ps(cnorm));
    __m256 v1 = _mm256_add_ps(_mm256_loadu_ps(row + 8), _mm256_loadu_ps(cnorm + 8)), s0 = inf, s1 = inf;
    int j = 16;
    for (; j + 16 <= k; j += 16) {
        i0 = _mm256_add_epi32(i0, step);
        i1 = _mm256_add_epi32(i1, step);
        km_lane2(_mm256_add_ps(_mm256_loadu_ps(row + j), _mm256_loadu_ps(cnorm + j)), i0, &v0, &b0, &s0);
        km_lane2(_mm256_add_ps(_mm256_loadu_ps(row + j + 8), _mm256_loadu_ps(cnorm + j + 8)), i1, &v1, &b1, &s1);
    }
    float b, sv;
    int bj = km_reduce2(v0, b0, s0, v1, b1, s1, &b, &sv);
    for (; j < k; j++) {
        float v = row[j] + cnorm[j];
        if (v < b) sv = b, b = v, bj = j;
        else if (v < sv) sv = v;
    }
    *best = b;
    *second = sv;
    return bj;
}
#endif

// argmin2 over scores_small + cnorm of one row, without the scores row:
// the centroid scores of argmin2_ref's loop computed in place by
// score_small_one (so the same values and picks).

static int argmin2_small_ref(const float *x, int d, const float *ct, int ld, const float *cnorm, int k, float *best,
                             float *second)
{
    int bj = 0;
    float bv = score_small_one(x, d, ct, ld, 0) + cnorm[0], sv = INFINITY;
    for (int j = 1; j < k; j++) {
        float v = score_small_one(x, d, ct, ld, j) + cnorm[j];
        if (v < bv) sv = bv, bv = v, bj = j;
        else if (v < sv) sv = v;
    }
    *best = bv;
    *second = sv;
    return bj;
}

#if KVQ_HAVE_X86
// argmin2_avx2's two lane sets, each block of eight values scored from x and
// the transposed centroids in registers (no (k) row written and read back).
static inline __attribute__((always_inline)) KVQ_TARGET_AVX2 int
argmin2_small_body(const float *x, int d, const float *ct, int ld, const float *cnorm, int k, float *best,
                   float *second)
{
    __m256 a[KVQ_KMEANS_SMALL_D];
    for (int t = 0; t < KVQ_KMEANS_SMALL_D; t++) a[t] = _mm256_set1_ps(t < d ? -2.0f * x[t] : 0.0f);
#define KM_SCORE(J)                                                                                \
    ({                                                                                             \
        __m256 s_ = _mm256_mul_ps(a[0], _mm256_loadu_ps(ct + (J)));                                \
        for (int t = 1; t < d; t++)                                                                \
            s_ = _mm256_add_ps(s_, _mm256_mul_ps(a[t], _mm256_loadu_ps(ct + (size_t)t * ld + (J)))); \
        _mm256_add_ps(s_, _mm256_loadu_ps(cnorm + (J)));                                            \
    })
    const __m256i step = _mm256_set1_epi32(16), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 inf = _mm256_set1_ps(INFINITY);
    __m256i i0 = lane, i1 = _mm256_add_epi32(lane, _mm256_set1_epi32(8)), b0 = i0, b1 = i1;
    __m256 v0 = KM_SCORE(0), v1 = KM_SCORE(8), s0 = inf, s1 = inf;
    int j = 16;
    for (; j + 16 <= k; j += 16) {
        i0 = _mm256_add_epi32(i0, step);
        i1 = _mm256_add_epi32(i1, step);
        km_lane2(KM_SCORE(j), i0, &v0, &b0, &s0);
        km_lane2(KM_SCORE(j + 8), i1, &v1, &b1, &s1);
    }
#undef KM_SCORE
    float b, sv;
    int bj = km_reduce2(v0, b0, s0, v1, b1, s1, &b, &sv);
    for (; j < k; j++) {   // the tail's indices are above every lane's
        float v = score_small_one(x, d, ct, ld, j) + cnorm[j];
        if (v < b) sv = b, b = v, bj = j;
        else if (v < sv) sv = v;
    }
    *best = b;
    *second = sv;
    return bj;
}

// d = 2 and 4 (vecinfer's subspaces at 3-4 and 2 bits) with the loop over
// coordinates unrolled at compile time.
static KVQ_TARGET_AVX2 int argmin2_small_avx2(const float *x, int d, const float *ct, int ld, const float *cnorm,
                                              int k, float *best, float *second)
{
    if (k < 16 || d > KVQ_KMEANS_SMALL_D) return argmin2_small_ref(x, d, ct, ld, cnorm, k, best, second);
    if (d == 4) return argmin2_small_body(x, 4, ct, ld, cnorm, k, best, second);
    if (d == 2) return argmin2_small_body(x, 2, ct, ld, cnorm, k, best, second);
    return argmin2_small_body(x, d, ct, ld, cnorm, k, best, second);
}
#endif

int kvq_kmeans_argmin2_small_ld(const float *x, int d, const float *ct, int ld, const float *cnorm, int k,
                                float *best, float *second)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) return argmin2_small_avx2(x, d, ct, ld, cnorm, k, best, second);
#endif
    return argmin2_small_ref(x, d, ct, ld, cnorm, k, best, second);
}

int kvq_kmeans_argmin2_small_ld_ref(const float *x, int d, const float *ct, int ld, const float *cnorm, int k,
                                    float *best, float *second)
{
    return argmin2_small_ref(x, d, ct, ld, cnorm, k, best, second);
}

int kvq_kmeans_argmin2_small(const float *x, int d, const float *ct, const float *cnorm, int k, float *best,
                             float *second)
{
    return kvq_kmeans_argmin2_small_ld(x, d, ct, k, cnorm, k, best, second);
}

int kvq_kmeans_argmin2(const float *row, const float *cnorm, int k, float *best, float *second)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) return argmin2_avx2(row, cnorm, k, best, second);
#endif
    return argmin2_ref(row, cnorm, k, best, second);
}

int kvq_kmeans_argmin(const float *row, const float *cnorm, int k, float *best)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) return argmin_avx2(row, cnorm, k, best);
#endif
    return argmin_ref(row, cnorm, k, best);
}

