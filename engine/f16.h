// f16.h — IEEE half, bfloat16 and F8_E4M3 <-> f32, scalar reference.
// Exact: decoding is lossless; encoding rounds to nearest, ties to even.
// Subnormals, signed zeros, Inf and NaN are preserved (a NaN keeps its sign
// and as much payload as fits; a payload that would vanish becomes quiet).
#ifndef KVQ_F16_H
#define KVQ_F16_H
#include <stddef.h>
#include <stdint.h>

float kvq_f16_to_f32(uint16_t h);
uint16_t kvq_f32_to_f16(float f);       // |f| >= 65520 -> Inf
float kvq_bf16_to_f32(uint16_t h);
uint16_t kvq_f32_to_bf16(float f);
// OCP E4M3FN: bias 7, max 448, no Inf, 0x7f/0xff = NaN.
float kvq_f8e4m3_to_f32(uint8_t v);
// Values that round past 448 (|f| > 464) and +-Inf become NaN, as in
// PyTorch and ml_dtypes: E4M3FN has no Inf to saturate to.
uint8_t kvq_f32_to_f8e4m3(float f);
// As CUDA's __nv_cvt_float_to_fp8(f, __NV_SATFINITE, __NV_E4M3 / __NV_E5M2),
// which vLLM's fp8 KV cache writes (csrc/quantization/fp8/nvidia/
// quant_utils.cuh): round to nearest even, anything past the largest finite
// value (448 / 57344), Inf included, saturates to it; every NaN -> 0x7f.
// Checked on an H200 (sm_90) over all 2^32 floats: tests/peers/fp8_peer.cu.
uint8_t kvq_f32_to_f8e4m3_sat(float f);
uint8_t kvq_f32_to_f8e5m2_sat(float f);
// OCP E5M2: bias 15, IEEE-like (Inf 0x7c, NaN above); exactly the high byte of a half.
float kvq_f8e5m2_to_f32(uint8_t v);

// Bulk, on unaligned little-endian bytes (src may be any alignment).
void kvq_f16_row_to_f32(const void *src, float *dst, size_t n);
void kvq_bf16_row_to_f32(const void *src, float *dst, size_t n);
void kvq_f32_row_to_f16(const float *src, uint16_t *dst, size_t n);
void kvq_f32_row_to_bf16(const float *src, uint16_t *dst, size_t n);

// One half at an unaligned little-endian address (norms and scales inside
// quantized records).
static inline void kvq_f16_store(uint8_t *dst, float v)
{
    uint16_t h = kvq_f32_to_f16(v);
    dst[0] = (uint8_t)(h & 0xff);
    dst[1] = (uint8_t)(h >> 8);
}
static inline float kvq_f16_load(const uint8_t *src)
{
    return kvq_f16_to_f32((uint16_t)(src[0] | (src[1] << 8)));
}
#endif
