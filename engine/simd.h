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
#ifndef KVQ_SIMD_H
#define KVQ_SIMD_H
#include <stdbool.h>
#include <stddef.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define KVQ_HAVE_X86 1
#define KVQ_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define KVQ_HAVE_X86 0
#define KVQ_TARGET_AVX2
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

bool kvq_simd_avx2(void);
// Tests and benchmarks: true forces every dispatcher to its scalar reference.
void kvq_simd_force_scalar(bool on);
// "avx2" or "scalar": what the dispatchers pick right now.
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
