// calib/rowops.h — the row kernels under the calibrators' inner loops
// (k-means distances and means, CommVQ's M-step), each compiled twice from
// one body: plainly (the reference) and with KVQ_TARGET_AVX2, picked by
// kvq_simd_avx2(). Every operation is element-wise in a fixed order, so
// both compilations give the same bits (no FMA contraction under -std=c11);
// only the vector width differs. tests/test_kmeans.c compares them.
#ifndef KVQ_CALIB_ROWOPS_H
#define KVQ_CALIB_ROWOPS_H
#include <stdbool.h>

// sum_j (a_j - b_j)^2 in double over d coordinates: 16 partial sums (j mod 16),
// the tail into the first, then a fixed tree. a, b: (d).
double kvq_row_sqdist(const float *a, const float *b, int d);
double kvq_row_sqdist_ref(const float *a, const float *b, int d);
// acc (d) += x (d), in double.
void kvq_row_acc(double *acc, const float *x, int d);
void kvq_row_acc_ref(double *acc, const float *x, int d);
// y (d) += x (d), in float; y and x do not overlap.
void kvq_row_add(float *y, const float *x, int d);
void kvq_row_add_ref(float *y, const float *x, int d);
#endif
