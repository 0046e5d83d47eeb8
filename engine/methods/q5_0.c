// methods/q5_0.c — ggml q5_0 (`llamacpp:q5_0`): blocks of 32, f16 scale
// d = max/-16 (max: the signed value of the largest |x|), 5-bit codes, the
// fifth bits gathered in a 32-bit word: 5.5 bits per value.
// Arithmetic as quantize_row_q5_0_ref / dequantize_row_q5_0 in
// ggml/src/ggml-quants.c at llama.cpp 80fb11ac (ggml-cpu's from_float for
// Q5_0 calls the reference).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "ggml_blocks.h"
#include "methods.h"

void kvq_ggml_q5_0_quantize(const float *x, uint8_t *blk)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < KVQ_GGML_QK; j++)
        if (amax < fabsf(x[j])) { // strict: the first of equal magnitudes wins, as ggml
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    kvq_f16_store(blk, d);
    uint32_t qh = 0;
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        int lo = kvq_ggml_trunc_i8(x[j] * id + 16.5f), hi = kvq_ggml_trunc_i8(x[j + 16] * id + 16.5f);
        lo = lo < 31 ? lo : 31;
        hi = hi < 31 ? hi : 31;
        blk[6 + j] = (uint8_t)((lo & 0x0f) | ((hi & 0x0f) << 4));
        qh |= (uint32_t)((lo >> 4) & 1) << j;
        qh |= (uint32_t)((hi >> 4) & 1) << (j + 16);
    }
    for (int k = 0; k < 4; k++) blk[2 + k] = (uint8_t)(qh >> (8 * k));
}

static uint32_t load_qh(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void kvq_ggml_q5_0_dequantize(const uint8_t *blk, float *y)
{
    const float d = kvq_f16_load(blk);
    const uint32_t qh = load_qh(blk + 2);
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        const int c0 = (blk[6 + j] & 0x0f) | (int)((qh >> j) & 1) << 4;
        const int c1 = (blk[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = (float)(c0 - 16) * d;
        y[j + 16] = (float)(c1 - 16) * d;
    }
}

float kvq_ggml_q5_0_dot(const uint8_t *blk, const float *q)
{
    const uint32_t qh = load_qh(blk + 2);
    float acc = 0.0f;
    for (int j = 0; j < KVQ_GGML_QK / 2; j++) {
        const int c0 = (blk[6 + j] & 0x0f) | (int)((qh >> j) & 1) << 4;
        const int c1 = (blk[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        acc += (float)(c0 - 16) * q[j] + (float)(c1 - 16) * q[j + 16];
    }
    return acc * kvq_f16_load(blk);
}

KVQ_GGML_BLOCK_METHOD(q5_0, KVQ_GGML_Q5_0_BYTES)
