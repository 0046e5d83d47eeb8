// simd.c — CPU feature detection, the scalar switch, vectorized exp.
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "simd.h"
#if KVQ_HAVE_X86
#include <cpuid.h>
#include <immintrin.h>
#endif

static atomic_int g_cap = -1;   // programmatic cap, -1 none
static atomic_int g_cpu = -1;   // -1 unknown, else the CPU's level capped by KVQ_SIMD

int kvq_simd_cpu_level(void)
{
    int c = atomic_load_explicit(&g_cpu, memory_order_relaxed);
    if (c < 0) {
        c = KVQ_SIMD_SCALAR;
#if KVQ_HAVE_X86
        __builtin_cpu_init();
        // F16C through cpuid: clang-14's __builtin_cpu_supports does not know it.
        unsigned a, b, cx, dx;
        bool f16c = __get_cpuid(1, &a, &b, &cx, &dx) && (cx & (1u << 29));
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) {
            c = KVQ_SIMD_AVX2;
            // __builtin_cpu_supports checks that the OS saves the zmm state
            // too (valgrind's CPUID hides AVX-512: it runs the AVX2 path)
            if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("bmi2"))
                c = KVQ_SIMD_AVX512;
        }
#endif
        const char *e = getenv("KVQ_SIMD");
        if (e && (e[0] == '0' || strcmp(e, "scalar") == 0)) c = KVQ_SIMD_SCALAR;
        else if (e && strcmp(e, "avx2") == 0 && c > KVQ_SIMD_AVX2) c = KVQ_SIMD_AVX2;
        atomic_store(&g_cpu, c);
    }
    return c;
}

int kvq_simd_level(void)
{
    int c = kvq_simd_cpu_level(), cap = atomic_load_explicit(&g_cap, memory_order_relaxed);
    return cap >= 0 && cap < c ? cap : c;
}

bool kvq_simd_avx2(void) { return kvq_simd_level() >= KVQ_SIMD_AVX2; }
bool kvq_simd_avx512(void) { return kvq_simd_level() >= KVQ_SIMD_AVX512; }

bool kvq_simd_vnni(void)
{
    static atomic_int has = -1;
    int h = atomic_load_explicit(&has, memory_order_relaxed);
    if (h < 0) {
#if KVQ_HAVE_X86
        __builtin_cpu_init();
        h = __builtin_cpu_supports("avx512vnni") ? 1 : 0;
#else
        h = 0;
#endif
        atomic_store(&has, h);
    }
    return h && kvq_simd_avx512();
}

void kvq_simd_set_level(int max) { atomic_store(&g_cap, max < 0 ? -1 : max); }
void kvq_simd_force_scalar(bool on) { kvq_simd_set_level(on ? KVQ_SIMD_SCALAR : -1); }

const char *kvq_simd_name(void)
{
    static const char *const names[] = {"scalar", "avx2", "avx512"};
    return names[kvq_simd_level()];
}

#if KVQ_HAVE_X86
// exp(x) = 2^k exp(r), r = x - k ln2 in [-ln2/2, ln2/2] (ln2 split in two
// for exactness), exp(r) by its Taylor polynomial to r^6 (Horner, FMA).
KVQ_TARGET_AVX2 static inline __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.3f);
    __m256 dead = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);   // -inf and tiny -> 0
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(dead, y);
}

KVQ_TARGET_AVX2 static void exp_avx2(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] = expf(x[i]);
}
#endif

void kvq_exp_inplace(float *x, size_t n)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        exp_avx2(x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) x[i] = expf(x[i]);
}

// ---- online-softmax steps ----
float kvq_max_f32_ref(const float *x, size_t n)
{
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (x[i] > m) m = x[i];
    return m;
}

double kvq_exp_sub_sum_ref(float *x, size_t n, float m)
{
    double l = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        l += x[i];
    }
    return l;
}

void kvq_scale_f32_ref(float *x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

#if KVQ_HAVE_X86
KVQ_TARGET_AVX2 static void scale_avx2(float *x, size_t n, float s)
{
    const __m256 sv = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), sv));
    for (; i < n; i++) x[i] *= s;
}

KVQ_TARGET_AVX2 static float max_avx2(const float *x, size_t n)
{
    __m256 a = _mm256_set1_ps(-INFINITY), b = a;
    size_t i = 0;
    // vmaxps returns its second operand when either is NaN: the running
    // max goes second, so a NaN in x is skipped as in the reference
    for (; i + 16 <= n; i += 16) {
        a = _mm256_max_ps(_mm256_loadu_ps(x + i), a);
        b = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), b);
    }
    for (; i + 8 <= n; i += 8) a = _mm256_max_ps(_mm256_loadu_ps(x + i), a);
    a = _mm256_max_ps(a, b);
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    float m = _mm_cvtss_f32(s);
    for (; i < n; i++)
        if (x[i] > m) m = x[i];
    return m;
}

// exp8 as kvq_exp_inplace's, of x - m (one rounding, as the reference's
// subtraction), summed in 8 double lanes
KVQ_TARGET_AVX2 static double exp_sub_sum_avx2(float *x, size_t n, float m)
{
    const __m256 mv = _mm256_set1_ps(m);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    double l = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) {
        x[i] = expf(x[i] - m);
        l += x[i];
    }
    return l;
}
#endif

float kvq_max_f32(const float *x, size_t n)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) return max_avx2(x, n);
#endif
    return kvq_max_f32_ref(x, n);
}

void kvq_scale_f32(float *x, size_t n, float s)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        scale_avx2(x, n, s);
        return;
    }
#endif
    kvq_scale_f32_ref(x, n, s);
}

double kvq_exp_sub_sum(float *x, size_t n, float m)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) return exp_sub_sum_avx2(x, n, m);
#endif
    return kvq_exp_sub_sum_ref(x, n, m);
}

// ---- dense kernels ----
void kvq_dot_rows_ref(const float *q, const float *X, size_t n, size_t d, float *out)
{
    for (size_t j = 0; j < n; j++) {
        const float *x = X + j * d;
        float s = 0;
        for (size_t t = 0; t < d; t++) s += q[t] * x[t];
        out[j] = s;
    }
}

void kvq_axpy_rows_ref(const float *w, const float *X, size_t n, size_t d, float *acc)
{
    for (size_t j = 0; j < n; j++) {
        if (w[j] == 0.0f) continue;
        const float *x = X + j * d;
        for (size_t t = 0; t < d; t++) acc[t] += w[j] * x[t];
    }
}

#if KVQ_HAVE_X86
KVQ_TARGET_AVX2 static void f16_avx2(const uint8_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i))));
    if (i < n) kvq_f16_row_to_f32(src + 2 * i, dst + i, n - i);
}

static inline __attribute__((always_inline)) KVQ_TARGET_AVX2 float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

KVQ_TARGET_AVX2 static void dot_avx2(const float *q, const float *X, size_t n, size_t d, float *out)
{
    for (size_t j = 0; j < n; j++) {
        const float *x = X + j * d;
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
        size_t t = 0;
        for (; t + 16 <= d; t += 16) {
            a = _mm256_fmadd_ps(_mm256_loadu_ps(q + t), _mm256_loadu_ps(x + t), a);
            b = _mm256_fmadd_ps(_mm256_loadu_ps(q + t + 8), _mm256_loadu_ps(x + t + 8), b);
        }
        float s = hsum8(_mm256_add_ps(a, b));
        for (; t < d; t++) s += q[t] * x[t];
        out[j] = s;
    }
}

KVQ_TARGET_AVX2 static void axpy_avx2(const float *w, const float *X, size_t n, size_t d, float *acc)
{
    size_t t = 0;
    for (; t + 32 <= d; t += 32) {   // 4 accumulators held across all rows
        __m256 a0 = _mm256_loadu_ps(acc + t), a1 = _mm256_loadu_ps(acc + t + 8);
        __m256 a2 = _mm256_loadu_ps(acc + t + 16), a3 = _mm256_loadu_ps(acc + t + 24);
        for (size_t j = 0; j < n; j++) {
            if (w[j] == 0.0f) continue;
            __m256 wj = _mm256_set1_ps(w[j]);
            const float *x = X + j * d + t;
            a0 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(x), a0);
            a1 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(x + 8), a1);
            a2 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(x + 16), a2);
            a3 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(x + 24), a3);
        }
        _mm256_storeu_ps(acc + t, a0);
        _mm256_storeu_ps(acc + t + 8, a1);
        _mm256_storeu_ps(acc + t + 16, a2);
        _mm256_storeu_ps(acc + t + 24, a3);
    }
    for (size_t j = 0; j < n && t < d; j++) {
        if (w[j] == 0.0f) continue;
        for (size_t u = t; u < d; u++) acc[u] += w[j] * X[j * d + u];
    }
}
#endif

void kvq_f16_to_f32_fast(const void *src, float *dst, size_t n)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        f16_avx2(src, dst, n);
        return;
    }
#endif
    kvq_f16_row_to_f32(src, dst, n);
}

void kvq_dot_rows(const float *q, const float *X, size_t n, size_t d, float *out)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        dot_avx2(q, X, n, d, out);
        return;
    }
#endif
    kvq_dot_rows_ref(q, X, n, d, out);
}

void kvq_axpy_rows(const float *w, const float *X, size_t n, size_t d, float *acc)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        axpy_avx2(w, X, n, d, acc);
        return;
    }
#endif
    kvq_axpy_rows_ref(w, X, n, d, acc);
}
