// rotate.h — random rotations: a dense random orthogonal matrix (Householder QR
// of a Gaussian matrix, sign-fixed so it is Haar distributed) and
// the randomized fast Walsh-Hadamard transform (random signs, O(d log d)).
#ifndef KVQ_ROTATE_H
#define KVQ_ROTATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvq.h"

typedef struct kvq_rotation {
    int d;
    bool hadamard;
    float *mat;      // dense: (d, d) row-major, y = mat x; NULL when hadamard
    float *signs;    // hadamard: (d) of +-1; y = H diag(signs) x / sqrt(d)
} kvq_rotation;

// hadamard requires d a power of two (else KVQ_ERR_ARG naming head_dim).
// d up to KVQ_MAX_SKETCH_DIM. The seed fully determines the rotation; pass
// different seeds (kvq_rng_seed2 streams) for unrelated purposes.
kvq_status kvq_rotation_new(kvq_rotation *r, int d, bool hadamard, uint64_t seed);
void kvq_rotation_free(kvq_rotation *r);
// Bytes the rotation holds: d x d floats dense, d sign floats Hadamard.
size_t kvq_rotation_bytes(const kvq_rotation *r);
// y = R x, y^T = x^T R^T; x and y: (d), may not alias
void kvq_rotation_apply(const kvq_rotation *r, const float *x, float *y);
// x = R^T y (inverse)
void kvq_rotation_apply_t(const kvq_rotation *r, const float *y, float *x);
// Batched: X (n, d) -> Y (n, d); x, y may not alias. Bit-identical to
// kvq_rotation_apply row by row, on every CPU (no BLAS: its kernels differ).
void kvq_rotation_apply_batch(const kvq_rotation *r, const float *x, float *y, size_t n);
// Batched inverse: Y (n, d) -> X (n, d), X = Y R (rows x_i = R^T y_i); bit-
// identical to kvq_rotation_apply_t row by row.
void kvq_rotation_apply_t_batch(const kvq_rotation *r, const float *y, float *x, size_t n);
// In-place unnormalized Walsh-Hadamard transform of x (d, power of two).
void kvq_fwht(float *x, int d);
// Dense random orthogonal (d, d) row-major into q (caller buffer), d in
// 1..KVQ_MAX_SKETCH_DIM; the same bits on every CPU for a seed.
kvq_status kvq_random_orthogonal(float *q, int d, uint64_t seed);
#endif
