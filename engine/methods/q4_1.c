// methods/q4_1.c — ggml q4_1 (`llamacpp:q4_1`): blocks of 32, f16 scale d =
// (max - min)/15 and f16 offset m = min, 4-bit codes: 5 bits per value.
// Arithmetic as quantize_row_q4_1_ref / dequantize_row_q4_1 in
// ggml/src/ggml-quants.c at llama.cpp 80fb11ac (ggml-cpu's from_float for
// Q4_1 calls the reference): the codes use the f32 d and min, the block
// stores them rounded to f16, and decoding uses the stored halves.
// Written in that order with no FMA contraction (-std=c11), so bit-exact.
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "ggml_blocks.h"
#include "methods.h"

void kvq_ggml_q4_1_quantize(const float *x, uint8_t *blk)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < KVQ_GGML_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    kvq_f16_store(blk, d);
    kvq_f16_store(blk + 2, min);
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        const float x0 = (x[j] - min) * id, x1 = (x[j + 16] - min) * id;
        int lo = kvq_ggml_trunc_i8(x0 + 0.5f), hi = kvq_ggml_trunc_i8(x1 + 0.5f);
        lo = lo < 15 ? lo : 15;
        hi = hi < 15 ? hi : 15;
        blk[4 + j] = (uint8_t)(lo | (hi << 4));
    }
}

void kvq_ggml_q4_1_dequantize(const uint8_t *blk, float *y)
{
    const float d = kvq_f16_load(blk), m = kvq_f16_load(blk + 2);
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        y[j] = (float)(blk[4 + j] & 0x0f) * d + m;
        y[j + 16] = (float)(blk[4 + j] >> 4) * d + m;
    }
}

// sum_j (d c_j + m) q_j = d sum c_j q_j + m sum q_j
float kvq_ggml_q4_1_dot(const uint8_t *blk, const float *q)
{
    float acc = 0.0f, qsum = 0.0f;
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        acc += (float)(blk[4 + j] & 0x0f) * q[j] + (float)(blk[4 + j] >> 4) * q[j + 16];
        qsum += q[j] + q[j + 16];
    }
    return acc * kvq_f16_load(blk) + qsum * kvq_f16_load(blk + 2);
}

KVQ_GGML_BLOCK_METHOD(q4_1, KVQ_GGML_Q4_1_BYTES)
