// calib/rowops.h — the row kernels under the calibrators' inner loops
// (k-means distances and means, CommVQ's M-step), each compiled twice from
// one body: plainly (the reference) and with KVQ_TARGET_AVX2, picked by
// kvq_simd_avx2(). Every operation is element-wise in a fixed order, so
// both compilations give the same bits (no FMA contraction under -std=c11);
// only the vector width differs. tests/test_kmeans.c compares them. The
// k-means argmin kernels (declared in kmeans.h) live in rowops.c too.
#ifndef KVQ_CALIB_ROWOPS_H
#define KVQ_CALIB_ROWOPS_H
#include <stdbool.h>
#include <stddef.h>

// sum_j (a_j - b_j)^2 in double over d coordinates: 16 partial sums (j mod 16),
// the tail into the first, then a fixed tree. a, b: (d).
double kvq_row_sqdist_any(const float *a, const float *b, int d);
double kvq_row_sqdist_ref(const float *a, const float *b, int d);
// Below 16 coordinates every term goes to the first partial sum, so the plain
// sequential sum is the same bits, without the call (vecinfer's d = 2..8
// subspaces make millions of these calls per k-means).
static inline double kvq_row_sqdist(const float *a, const float *b, int d)
{
    if (d >= 16) return kvq_row_sqdist_any(a, b, d);
    double s = 0;
    for (int j = 0; j < d; j++) {
        double t = (double)a[j] - (double)b[j];
        s += t * t;
    }
    return s;
}
// acc (d) += x (d), in double.
void kvq_row_acc_any(double *acc, const float *x, int d);
void kvq_row_acc_ref(double *acc, const float *x, int d);
static inline void kvq_row_acc(double *acc, const float *x, int d)
{
    if (d >= 8) {
        kvq_row_acc_any(acc, x, d);
        return;
    }
    for (int j = 0; j < d; j++) acc[j] += x[j];   // element-wise: the same bits
}
// y (n) = sqrt(x) of x >= 0 (k-means' upper bounds from squared distances):
// four at a time with AVX2, without the errno branch that keeps the plain
// loop scalar; sqrt is correctly rounded, so the same bits.
void kvq_row_sqrt(double *y, const double *x, size_t n);
void kvq_row_sqrt_ref(double *y, const double *x, size_t n);
// y (d) += x (d), in float; y and x do not overlap.
void kvq_row_add(float *y, const float *x, int d);
void kvq_row_add_ref(float *y, const float *x, int d);
#endif
