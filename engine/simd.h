// simd.h — runtime CPU dispatch for the engine's fast paths.
//
// No global -march flag: CI machines differ. Fast kernels are compiled per
// function with KVQ_TARGET_AVX2 (__attribute__((target("avx2,fma"))))
// and chosen at run time when kvq_simd_avx2() is true. Every fast kernel has
// its plain scalar reference beside it (the spec), and tests/test_simd.c
// checks each against it.
//
// kvq_simd_avx2(): the CPU has AVX2 + FMA + F16C, and neither the env var
// KVQ_SIMD=0 nor kvq_simd_force_scalar(true) turned the fast paths off.
//
// A third level, AVX-512 (KVQ_TARGET_AVX512: F, BW, VL, DQ and VBMI, + BMI2, e.g.
// Zen 4, Ice Lake and later), serves the turboquant_mse row kernels
// (methods/tq_simd512.c); every other kernel stays at AVX2 there.
// kvq_simd_avx512() implies kvq_simd_avx2(). KVQ_SIMD=avx2 caps the level
// at AVX2 (KVQ_SIMD=0 or scalar: scalar); kvq_simd_set_level caps it
// programmatically (tests compare the three levels).
#ifndef KVQ_SIMD_H
#define KVQ_SIMD_H
#include <stdbool.h>
#include <stddef.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define KVQ_HAVE_X86 1
#define KVQ_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define KVQ_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx2,fma,f16c,bmi2")))
// + VNNI (vpdpbusd): the int8-query scoring of turboquant_mse keys (methods/tq_i8.c)
#define KVQ_TARGET_AVX512VNNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi,avx512vnni,avx2,fma,f16c,bmi2")))
#else
#define KVQ_HAVE_X86 0
#define KVQ_TARGET_AVX2
#define KVQ_TARGET_AVX512
#define KVQ_TARGET_AVX512VNNI
#endif

// KVQ_UNROLL(n) before a loop: gcc's full unroll of the fast kernels (their
// accumulators then stay in registers). clang honours the same pragma but
// reports a loop it cannot unroll as a warning (an error under the fuzz
// build's -Werror at -O1), so it is left to clang's own unroller there.
#if defined(__GNUC__) && !defined(__clang__)
#define KVQ_PRAGMA_(x) _Pragma(#x)
#define KVQ_UNROLL(n) KVQ_PRAGMA_(GCC unroll n)
#else
#define KVQ_UNROLL(n)
#endif

// Dispatch levels, in increasing order.
enum { KVQ_SIMD_SCALAR = 0, KVQ_SIMD_AVX2 = 1, KVQ_SIMD_AVX512 = 2 };
bool kvq_simd_avx2(void);
bool kvq_simd_avx512(void);
// kvq_simd_avx512() and the CPU has AVX512-VNNI (Zen 4, Ice Lake and later).
bool kvq_simd_vnni(void);
// The level the dispatchers pick right now: the CPU's (capped by KVQ_SIMD)
// or lower when capped by kvq_simd_set_level / kvq_simd_force_scalar.
int kvq_simd_level(void);
// What the CPU (and KVQ_SIMD) allow, whatever the programmatic cap.
int kvq_simd_cpu_level(void);
// Tests and benchmarks: cap the level at `max` (KVQ_SIMD_*); -1 removes the
// cap. A cap above what the CPU has changes nothing.
void kvq_simd_set_level(int max);
// true: kvq_simd_set_level(KVQ_SIMD_SCALAR); false: kvq_simd_set_level(-1).
void kvq_simd_force_scalar(bool on);
// "avx512", "avx2" or "scalar": what the dispatchers pick right now.
const char *kvq_simd_name(void);

// out[i] = exp(x[i]) for n floats; -INFINITY -> 0. The AVX2 path is a
// Cody-Waite range reduction + degree-6 polynomial (max rel error ~2e-7 for
// x in [-87, 88]); the scalar path is expf. Used by the online softmax.
void kvq_exp_inplace(float *x, size_t n);

// ---- online-softmax steps (scalar _ref beside) ----
// max of x[0..n) ignoring NaNs; -INFINITY when n == 0 or all are NaN/-inf.
// Exact either way.
float kvq_max_f32(const float *x, size_t n);
float kvq_max_f32_ref(const float *x, size_t n);
// x[i] = exp(x[i] - m) (exp as kvq_exp_inplace; -inf -> 0) and the return
// value sum_i x[i] in double. The AVX2 path sums in 4 double lanes (the
// reference in index order): they agree to double rounding.
double kvq_exp_sub_sum(float *x, size_t n, float m);
double kvq_exp_sub_sum_ref(float *x, size_t n, float m);
// x[i] *= s (the attention scale of a block's scores); one rounding per
// element either way, so the paths are bit-identical.
void kvq_scale_f32(float *x, size_t n, float s);
void kvq_scale_f32_ref(float *x, size_t n, float s);

// ---- small dense kernels of the attention paths (scalar _ref beside) ----
// f16 (unaligned little-endian) -> f32, n values; exact either way.
void kvq_f16_to_f32_fast(const void *src, float *dst, size_t n);
// out[j] = q . X_j for rows X: (n, d); the reference sums in coordinate order.
void kvq_dot_rows(const float *q, const float *X, size_t n, size_t d, float *out);
void kvq_dot_rows_ref(const float *q, const float *X, size_t n, size_t d, float *out);
// acc (d) += sum_j w[j] X_j over rows X: (n, d); zero weights are skipped.
void kvq_axpy_rows(const float *w, const float *X, size_t n, size_t d, float *acc);
void kvq_axpy_rows_ref(const float *w, const float *X, size_t n, size_t d, float *acc);
#endif
