// methods/q5_1.c — ggml q5_1 (`llamacpp:q5_1`): blocks of 32, f16 scale
// d = (max - min)/31 and f16 offset m = min, 5-bit codes with the fifth bits
// in a 32-bit word: 6 bits per value.
// Arithmetic as quantize_row_q5_1_ref / dequantize_row_q5_1 in
// ggml/src/ggml-quants.c at llama.cpp 80fb11ac (ggml-cpu's from_float for
// Q5_1 calls the reference). Unlike q4_1 ggml does not clamp the code; the
// truncation keeps it in 0..31 for finite blocks, and we keep its low 5 bits
// as ggml does should it ever reach 32.
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "ggml_blocks.h"
#include "methods.h"

void kvq_ggml_q5_1_quantize(const float *x, uint8_t *blk)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < KVQ_GGML_QK; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    kvq_f16_store(blk, d);
    kvq_f16_store(blk + 2, min);
    uint32_t qh = 0;
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        const float x0 = (x[j] - min) * id, x1 = (x[j + 16] - min) * id;
        const unsigned lo = (uint8_t)kvq_ggml_trunc_i8(x0 + 0.5f), hi = (uint8_t)kvq_ggml_trunc_i8(x1 + 0.5f);
        blk[8 + j] = (uint8_t)((lo & 0x0f) | ((hi & 0x0f) << 4));
        qh |= ((lo >> 4) & 1u) << j;
        qh |= ((hi >> 4) & 1u) << (j + 16);
    }
    for (int k = 0; k < 4; k++) blk[4 + k] = (uint8_t)(qh >> (8 * k));
}

static uint32_t load_qh(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void kvq_ggml_q5_1_dequantize(const uint8_t *blk, float *y)
{
    const float d = kvq_f16_load(blk), m = kvq_f16_load(blk + 2);
    const uint32_t qh = load_qh(blk + 4);
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        const int c0 = (blk[8 + j] & 0x0f) | (int)((qh >> j) & 1) << 4;
        const int c1 = (blk[8 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = (float)c0 * d + m;
        y[j + 16] = (float)c1 * d + m;
    }
}

float kvq_ggml_q5_1_dot(const uint8_t *blk, const float *q)
{
    const uint32_t qh = load_qh(blk + 4);
    float acc = 0.0f, qsum = 0.0f;
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        const int c0 = (blk[8 + j] & 0x0f) | (int)((qh >> j) & 1) << 4;
        const int c1 = (blk[8 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        acc += (float)c0 * q[j] + (float)c1 * q[j + 16];
        qsum += q[j] + q[j + 16];
    }
    return acc * kvq_f16_load(blk) + qsum * kvq_f16_load(blk + 2);
}

KVQ_GGML_BLOCK_METHOD(q5_1, KVQ_GGML_Q5_1_BYTES)
