// methods/ggml_blocks.h — llama.cpp's KV-cache block formats, one block of
// 32 values at a time, bit-exact with what ggml's CPU backend writes into a
// KV cache: ggml_get_type_traits_cpu(type)->from_float, which GGML_OP_SET_ROWS
// and GGML_OP_CPY call per row. For q4_0, q4_1, q5_0, q5_1 and iq4_nl that is
// the reference quantizer of ggml-quants.c (quantize_row_*_ref); for q8_0 on
// x86 it is the AVX kernel of ggml-cpu/arch/x86/quants.c (see below). Read
// at llama.cpp 80fb11ac (the release node-llama-cpp 3.21.1 bundles, ggml
// 0.23.0); `make peers` checks every format against that build byte for byte.
// A vector of head_dim values is head_dim/32 blocks back to back, exactly
// ggml's row layout, so a record is a ggml row.
//
// Block layouts (bytes, little-endian):
//   q8_0   (34): f16 d, then int8 qs[32];            x_j = d * qs[j]
//   q4_0   (18): f16 d, then qs[16], value j < 16 in the low nibble of qs[j],
//                value 16 + j in its high nibble;      x_j = d * (nibble - 8)
//   q4_1   (20): f16 d, f16 m, nibbles as q4_0;      x_j = d * nibble + m
//   q5_0   (22): f16 d, u32 qh, nibbles as q4_0; bit j of qh is bit 4 of
//                value j's 5-bit code;               x_j = d * (code - 16)
//   q5_1   (24): f16 d, f16 m, u32 qh, nibbles;      x_j = d * code + m
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
#define KVQ_GGML_Q4_1_BYTES 20
#define KVQ_GGML_Q5_0_BYTES 22
#define KVQ_GGML_Q5_1_BYTES 24

// ggml's `(int8_t)(float)` casts as x86 executes them: cvttss2si, whose
// result for NaN or out-of-int32 values (a block whose 1/d overflowed) is
// INT_MIN, then the low byte. Defined here, where C leaves it undefined.
static inline int kvq_ggml_trunc_i8(float v)
{
    return !(v > -2147483648.0f && v < 2147483648.0f) ? 0 : (int8_t)(uint8_t)(uint32_t)(int32_t)v;
}

// ggml's kvalues_iq4nl: the non-uniform 16-level grid, ascending.
extern const int8_t kvq_iq4nl_grid[16];

// x: (32) -> blk: (34); d = amax/127 stored as f16, qs = x * (127/amax)
// rounded to nearest, ties to even: ggml's x86 CPU from_float (AVX/AVX2
// quantize_row_q8_0). ggml's reference (quantize_row_q8_0_ref, used by
// builds without AVX) multiplies by 1/d and rounds ties away from zero, so
// it can differ there by one code on a tie or a one-ulp product.
void kvq_ggml_q8_0_quantize(const float *x, uint8_t *blk);
void kvq_ggml_q8_0_dequantize(const uint8_t *blk, float *y);   // y: (32)
float kvq_ggml_q8_0_dot(const uint8_t *blk, const float *q);   // q: (32)

// x: (32) -> blk: (18); d = max/-8 with max the signed value of largest |x|,
// nibble = min(15, (int8)(x/d + 8.5)) (truncation, as ggml).
void kvq_ggml_q4_0_quantize(const float *x, uint8_t *blk);
void kvq_ggml_q4_0_dequantize(const uint8_t *blk, float *y);
float kvq_ggml_q4_0_dot(const uint8_t *blk, const float *q);

// x: (32) -> blk: (20); min and max of the block, d = (max - min)/15,
// nibble = min(15, trunc((x - min) * (1/d) + 0.5)); m = min as f16.
void kvq_ggml_q4_1_quantize(const float *x, uint8_t *blk);
void kvq_ggml_q4_1_dequantize(const uint8_t *blk, float *y);
float kvq_ggml_q4_1_dot(const uint8_t *blk, const float *q);

// x: (32) -> blk: (22); d = max/-16 (max as for q4_0),
// code = min(31, trunc(x * (1/d) + 16.5)).
void kvq_ggml_q5_0_quantize(const float *x, uint8_t *blk);
void kvq_ggml_q5_0_dequantize(const uint8_t *blk, float *y);
float kvq_ggml_q5_0_dot(const uint8_t *blk, const float *q);

// x: (32) -> blk: (24); d = (max - min)/31, code = trunc((x - min) * (1/d)
// + 0.5) with no clamp (ggml keeps its low 5 bits).
void kvq_ggml_q5_1_quantize(const float *x, uint8_t *blk);
void kvq_ggml_q5_1_dequantize(const uint8_t *blk, float *y);
float kvq_ggml_q5_1_dot(const uint8_t *blk, const float *q);

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

// The method entry points (methods.h) of a plain block format p whose block
// functions are kvq_ggml_<p>_quantize/_dequantize/_dot and whose block is
// `bytes` long: a record is head_dim/32 blocks; the query stays float.
#define KVQ_GGML_BLOCK_METHOD(p, bytes)                                                       \
    kvq_status kvq_##p##_plan_new(const kvq_plan_params *pp, void **plan)                     \
    { return kvq_ggml_plan_new(pp, "llamacpp:" #p, plan); }                                   \
    void kvq_##p##_plan_free(void *plan) { free(plan); }                                      \
    size_t kvq_##p##_bytes_per_vector(const void *plan)                                       \
    { return (size_t)(bytes) * (size_t)((const kvq_ggml_plan *)plan)->nblk; }                 \
    void kvq_##p##_encode(const void *plan, const float *x, size_t n, uint8_t *codes)         \
    {                                                                                         \
        const size_t nb = n * (size_t)((const kvq_ggml_plan *)plan)->nblk;                    \
        for (size_t b = 0; b < nb; b++)                                                       \
            kvq_ggml_##p##_quantize(x + b * KVQ_GGML_QK, codes + b * (bytes));                \
    }                                                                                         \
    void kvq_##p##_decode(const void *plan, const uint8_t *codes, size_t n, float *x)         \
    {                                                                                         \
        const size_t nb = n * (size_t)((const kvq_ggml_plan *)plan)->nblk;                    \
        for (size_t b = 0; b < nb; b++)                                                       \
            kvq_ggml_##p##_dequantize(codes + b * (bytes), x + b * KVQ_GGML_QK);              \
    }                                                                                         \
    size_t kvq_##p##_query_bytes(const void *plan)                                            \
    { return sizeof(float) * (size_t)((const kvq_ggml_plan *)plan)->d; }                      \
    void kvq_##p##_prepare_query(const void *plan, const float *q, void *qs)                  \
    { memcpy(qs, q, kvq_##p##_query_bytes(plan)); }                                           \
    void kvq_##p##_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,    \
                         float *scores)                                                       \
    {                                                                                         \
        const int nblk = ((const kvq_ggml_plan *)plan)->nblk;                                 \
        const float *q = qs;                                                                  \
        for (size_t i = 0; i < n; i++) {                                                      \
            const uint8_t *c = codes + i * (size_t)nblk * (bytes);                            \
            float acc = 0.0f;                                                                 \
            for (int b = 0; b < nblk; b++)                                                    \
                acc += kvq_ggml_##p##_dot(c + (size_t)b * (bytes), q + b * KVQ_GGML_QK);      \
            scores[i] = acc;                                                                  \
        }                                                                                     \
    }
#endif
