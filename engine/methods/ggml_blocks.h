// methods/ggml_blocks.h — llama.cpp's KV-cache block formats, one block of
// 32 values at a time, bit-exact with ggml's reference quantizers
// (quantize_row_q8_0_ref, quantize_row_q4_0_ref, quantize_row_iq4_nl_ref in
// ggml-quants.c). A vector of head_dim values is head_dim/32 blocks back to
// back, exactly ggml's row layout, so a record is a ggml row.
//
// Block layouts (bytes, little-endian):
//   q8_0   (34): f16 d, then int8 qs[32];            x_j = d * qs[j]
//   q4_0   (18): f16 d, then qs[16], value j < 16 in the low nibble of qs[j],
//                value 16 + j in its high nibble;      x_j = d * (nibble - 8)
//   iq4_nl (18): f16 d, nibbles as q4_0;             x_j = d * grid[nibble]
//
// The dot kernels take a float query block: they compute sum_j q_j x_j per
// block from the codes (integer codes times float query, one scale multiply
// per block). ggml's vec_dot first rounds the query to q8_0 as well; we do
// not, so the score error we report is the key quantization's alone.
#ifndef KVQ_GGML_BLOCKS_H
#define KVQ_GGML_BLOCKS_H
#include <stdint.h>
#include "kvq.h"

#define KVQ_GGML_QK 32
#define KVQ_GGML_Q8_0_BYTES 34
#define KVQ_GGML_Q4_0_BYTES 18
#define KVQ_GGML_IQ4_NL_BYTES 18

// ggml's kvalues_iq4nl: the non-uniform 16-level grid, ascending.
extern const int8_t kvq_iq4nl_grid[16];

// x: (32) -> blk: (34); d = amax/127, qs = roundf(x/d) (roundf: half away from zero).
void kvq_ggml_q8_0_quantize(const float *x, uint8_t *blk);
void kvq_ggml_q8_0_dequantize(const uint8_t *blk, float *y);   // y: (32)
float kvq_ggml_q8_0_dot(const uint8_t *blk, const float *q);   // q: (32)

// x: (32) -> blk: (18); d = max/-8 with max the signed value of largest |x|,
// nibble = min(15, (int8)(x/d + 8.5)) (truncation, as ggml).
void kvq_ggml_q4_0_quantize(const float *x, uint8_t *blk);
void kvq_ggml_q4_0_dequantize(const uint8_t *blk, float *y);
float kvq_ggml_q4_0_dot(const uint8_t *blk, const float *q);

// x: (32) -> blk: (18). ntry = -1 is quantize_row_iq4_nl_ref (what ggml's
// KV cache uses): first scale -max/127, nearest grid points, then the
// stored scale is the weighted least-squares refit sum w q x / sum w q^2
// with w = x^2. ntry > 0 is quantize_iq4_nl's search (model files: 7), which
// also tries the scales (itry + grid[0])/max for itry in -ntry..ntry and
// re-picks the points with the chosen scale.
void kvq_ggml_iq4_nl_quantize(const float *x, uint8_t *blk, int ntry);
void kvq_ggml_iq4_nl_dequantize(const uint8_t *blk, float *y);
float kvq_ggml_iq4_nl_dot(const uint8_t *blk, const float *q);
// ggml's best_index_int8 on the iq4_nl grid: x picks level i once it reaches
// the midpoint of grid[i-1] and grid[i] (ties go up).
int kvq_ggml_iq4_nl_index(float x);

// ---- rows of nb blocks (a record): AVX2 when kvq_simd_avx2(), else the
// block functions above in order (the scalar reference). Quantize and
// dequantize are bit-identical either way; the dot differs by float
// rounding only (8 partial sums, FMA). Kernels in ggml_simd.c.
void kvq_ggml_q4_0_quantize_row(const float *x, uint8_t *row, size_t nb);
void kvq_ggml_q4_0_dequantize_row(const uint8_t *row, float *y, size_t nb);
float kvq_ggml_q4_0_dot_row(const uint8_t *row, const float *q, size_t nb);
void kvq_ggml_q8_0_quantize_row(const float *x, uint8_t *row, size_t nb);
void kvq_ggml_q8_0_dequantize_row(const uint8_t *row, float *y, size_t nb);
float kvq_ggml_q8_0_dot_row(const uint8_t *row, const float *q, size_t nb);

// ---- the plan of the plain block methods (q8_0, q4_0, iq4_nl): the shape
// only. plan_new checks head_dim (a multiple of 32, at most KVQ_MAX_HEAD_DIM;
// `who` names the method in the message); free it with free().
typedef struct kvq_ggml_plan {
    int d, nblk;   // head_dim, blocks per record
} kvq_ggml_plan;
kvq_status kvq_ggml_plan_new(const kvq_plan_params *pp, const char *who, void **plan);
#endif
