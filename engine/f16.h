// f16.h — IEEE half, bfloat16 and F8_E4M3 <-> f32, scalar reference.
// Exact round-to-nearest-even; subnormals, Inf and NaN preserved.
#ifndef KVQ_F16_H
#define KVQ_F16_H
#include <stddef.h>
#include <stdint.h>

float kvq_f16_to_f32(uint16_t h);
uint16_t kvq_f32_to_f16(float f);
float kvq_bf16_to_f32(uint16_t h);
uint16_t kvq_f32_to_bf16(float f);
float kvq_f8e4m3_to_f32(uint8_t v);   // OCP E4M3FN: no Inf, 0x7f/0xff = NaN

// Bulk, on unaligned little-endian bytes (src may be any alignment).
void kvq_f16_row_to_f32(const void *src, float *dst, size_t n);
void kvq_bf16_row_to_f32(const void *src, float *dst, size_t n);
void kvq_f32_row_to_f16(const float *src, uint16_t *dst, size_t n);
#endif
