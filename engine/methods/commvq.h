// methods/commvq.h — CommVQ's shapes, the RoPE helper, and the shared
// additive-code kernels used by both the method and its EM training.
//
// Artifact (made by kvq_train_commvq, calib/train_commvq.h):
//   "commvq.codebooks.l{layer}.h{kv_head}"  (R, C, head_dim) F32
// C (a power of two, 2..256) is read from the artifact, R = bits * head_dim /
// log2(C) additive codebooks. Calibration defaults to C = 4: with the ~1k
// tokens per stream of a sample trace, large codebooks memorise the
// calibration keys (C = 256 reaches zero training error and 0.128 relative
// MSE on another trace; C = 4 gives 0.032 at 2 bits). A key is k_hat = sum_r W[r][code_r]; the record is the R
// codes packed at log2(C) bits each: bits * head_dim / 8 bytes, nothing else.
//
// Why 2x2 blocks: view a key as head_dim/2 complex numbers
// z_j = k[j] + i k[j + head_dim/2] (the Hugging Face rotate_half RoPE pairs).
// Codeword w is the block-diagonal operator with blocks
// [[x, y], [-y, x]] = [[w[j], -w[j+h]], [w[j+h], w[j]]] applied to the
// reference e = (1, 0) of every pair. These blocks are complex
// multiplications, so they commute with RoPE's rotation blocks:
// RoPE_t(k_hat) = sum_r M_{r,code_r} RoPE_t(e). A key rotated to any
// position is decoded from the same codes with the codebook rotated once
// (every codeword through RoPE_t), and q . RoPE_t(k_hat) =
// RoPE_t^T(q) . k_hat is one query-side LUT per position.
#ifndef KVQ_COMMVQ_H
#define KVQ_COMMVQ_H
#include <stdint.h>
#include "kvq.h"

// Codebook geometry for head_dim d, bits per coordinate and C codewords per
// codebook; KVQ_ERR_ARG with a message when they do not fit together.
kvq_status kvq_commvq_shape(int d, int bits, int num_centroids, int *R, int *log2c);

// Hugging Face RoPE (rotate_half) of x (d) at position pos, in place:
// pairs (j, j + d/2) rotate by pos * theta^(-2j/d). inverse = rotate by -pos.
void kvq_commvq_rope(float *x, int d, double pos, double theta);

// Additive encode of one vector against W (R, C, d) with wnorm (R, C) = |w|^2:
// greedy residual choice per codebook, then `sweeps` passes that re-pick each
// code given the others and keep only strict improvements (so never worse).
// codes: (R). Scratch on the stack (d <= KVQ_MAX_HEAD_DIM).
void kvq_commvq_encode_one(const float *W, const float *wnorm, int R, int C, int d,
                           const float *x, int sweeps, uint16_t *codes);
#endif
