// simd.c — CPU feature detection, the scalar switch, vectorized exp.
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "simd.h"
#if KVQ_HAVE_X86
#include <immintrin.h>
#endif

static atomic_int g_force_scalar;
static atomic_int g_cpu = -1;   // -1 unknown, 0 no, 1 yes

bool kvq_simd_avx2(void)
{
    if (atomic_load_explicit(&g_force_scalar, memory_order_relaxed)) return false;
    int c = atomic_load_explicit(&g_cpu, memory_order_relaxed);
    if (c < 0) {
        c = 0;
#if KVQ_HAVE_X86
        __builtin_cpu_init();
        c = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
#endif
        const char *e = getenv("KVQ_SIMD");
        if (e && e[0] == '0') c = 0;
        atomic_store(&g_cpu, c);
    }
    return c == 1;
}

void kvq_simd_force_scalar(bool on) { atomic_store(&g_force_scalar, on ? 1 : 0); }

const char *kvq_simd_name(void) { return kvq_simd_avx2() ? "avx2" : "scalar"; }

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
