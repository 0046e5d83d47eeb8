// f16.c — half, bfloat16 and F8_E4M3 conversions on bit patterns.
// Integer arithmetic only, so the result does not depend on the FPU's
// rounding mode or on flush-to-zero settings.
#include <string.h>
#include "f16.h"

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// Round the integer m right by `shift` bits, to nearest, ties to even.
static uint32_t shift_rne(uint32_t m, int shift)
{
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return r;
}

float kvq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0) return bits_f32(sign);
        // subnormal m * 2^-24: normalise so the leading 1 becomes implicit
        e = 113;
        while (!(m & 0x400)) {
            m <<= 1;
            e--;
        }
        return bits_f32(sign | (e << 23) | ((m & 0x3ff) << 13));
    }
    return bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t kvq_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) {
        if (a == 0x7f800000u) return sign | 0x7c00;
        uint32_t m = (a >> 13) & 0x3ff;
        return (uint16_t)(sign | 0x7c00 | (m ? m : 0x200));   // keep it a NaN
    }
    if (a >= 0x477ff000u) return sign | 0x7c00;   // >= 65520 rounds past 65504
    if (a < 0x38800000u) {                         // below 2^-14: subnormal half
        if (a <= 0x33000000u) return sign;         // <= 2^-25 (the tie goes to 0)
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        return (uint16_t)(sign | shift_rne(m, (int)(126 - e)));
    }
    // rebias the exponent (127 -> 15), then round the 13 dropped bits; a
    // carry out of the mantissa correctly bumps the exponent
    return (uint16_t)(sign | shift_rne(a - (112u << 23), 13));
}

float kvq_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t kvq_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        uint16_t r = (uint16_t)(x >> 16);
        return (r & 0x7f) ? r : (uint16_t)(r | 0x40);
    }
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

float kvq_f8e4m3_to_f32(uint8_t v)
{
    uint32_t sign = (uint32_t)(v & 0x80) << 24;
    uint32_t e = (v >> 3) & 0xf, m = v & 7;
    if ((v & 0x7f) == 0x7f) return bits_f32(sign | 0x7fc00000u);
    if (e == 0) {
        if (m == 0) return bits_f32(sign);
        e = 121;   // subnormal m * 2^-9
        while (!(m & 8)) {
            m <<= 1;
            e--;
        }
        return bits_f32(sign | (e << 23) | ((m & 7) << 20));
    }
    return bits_f32(sign | ((e + 120) << 23) | (m << 20));
}

uint8_t kvq_f32_to_f8e4m3(float f)
{
    uint32_t x = f32_bits(f);
    uint8_t sign = (uint8_t)((x >> 24) & 0x80);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x43e80000u) return sign | 0x7f;   // > 464 (and Inf, NaN): NaN
    if (a < 0x3c800000u) {                     // below 2^-6: subnormal
        if (a <= 0x3a800000u) return sign;     // <= 2^-10 (the tie goes to 0)
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        return (uint8_t)(sign | shift_rne(m, (int)(141 - e)));
    }
    return (uint8_t)(sign | shift_rne(a - (120u << 23), 20));
}

// f32 -> 1-E-M minifloat (E + M = 7, bias b), nearest even, saturating at
// the largest finite code maxc; any NaN -> nan.
static uint8_t f8_sat(float f, int mbits, int bias, uint32_t maxc, uint8_t nan)
{
    const uint32_t x = f32_bits(f), a = x & 0x7fffffffu;
    const uint8_t sign = (uint8_t)((x >> 24) & 0x80);
    if (a > 0x7f800000u) return nan;   // one NaN code, sign dropped (what the GPU writes)
    const int e = (int)(a >> 23);   // biased f32 exponent
    uint32_t r;
    if (e >= 128 - bias) {          // a normal of the target (or past it): rebias, round
        r = a >= 0x7f800000u ? maxc : shift_rne(a - ((uint32_t)(127 - bias) << 23), 23 - mbits);
    } else {                        // subnormal: |f| / 2^(1 - bias - mbits), rounded
        const int s = 151 - bias - mbits - e;
        if (e == 0 || s > 31) return sign;
        r = shift_rne((a & 0x7fffff) | 0x800000, s);
    }
    return (uint8_t)(sign | (r > maxc ? maxc : r));
}

uint8_t kvq_f32_to_f8e4m3_sat(float f) { return f8_sat(f, 3, 7, 0x7e, 0x7f); }
uint8_t kvq_f32_to_f8e5m2_sat(float f) { return f8_sat(f, 2, 15, 0x7b, 0x7f); }
float kvq_f8e5m2_to_f32(uint8_t v) { return kvq_f16_to_f32((uint16_t)(v << 8)); }

void kvq_f16_row_to_f32(const void *src, float *dst, size_t n)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = kvq_f16_to_f32(h);
    }
}

void kvq_bf16_row_to_f32(const void *src, float *dst, size_t n)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = kvq_bf16_to_f32(h);
    }
}

void kvq_f32_row_to_f16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = kvq_f32_to_f16(src[i]);
}

void kvq_f32_row_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = kvq_f32_to_bf16(src[i]);
}
