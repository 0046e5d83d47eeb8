// methods/vecinfer.h — VecInfer's dual transform, shared by the method and its
// calibration (calib/vecinfer.c).
//
// Keys are smoothed per channel and rotated, queries get the inverse
// smoothing, so inner products are unchanged:
//   k' = H (k / lambda),  q' = H (q * lambda),  q' . k' = q . k
// with H the orthonormal Walsh-Hadamard matrix (d a power of two) and lambda
// the calibrated smooth factors. Product VQ then quantizes k' with M
// codebooks of C centroids over consecutive d/M-dimensional subspaces.
//
// Artifacts (calib/calib.h): vecinfer.smooth (L, d), vecinfer.codebook
// (L, M, C, d/M). Record: M codes of log2(C) bits, packed LSB first
// (kvq_pack): M log2(C) / 8 bytes, nothing else. The method's `bits` must
// equal M log2(C) / d: 8 bits per code (C = 256) on d = 128 gives
// M = 16 x bits subspaces (bits 2 = 32 subspaces of dimension 4).
#ifndef KVQ_VECINFER_H
#define KVQ_VECINFER_H
#include "kvq.h"

// x, out: (d); may not alias. d a power of two <= KVQ_MAX_HEAD_DIM.
void kvq_vecinfer_transform_key(const float *lambda, const float *k, float *out, int d);
void kvq_vecinfer_transform_query(const float *lambda, const float *q, float *out, int d);
// Inverse of the key transform: k = lambda * H k'.
void kvq_vecinfer_untransform_key(const float *lambda, const float *kt, float *out, int d);
// Subspaces for a bit rate: bits x d / log2(C); 0 when it does not divide d
// into whole subspaces.
int kvq_vecinfer_subspaces(int bits, int d, int num_centroids);
#endif
