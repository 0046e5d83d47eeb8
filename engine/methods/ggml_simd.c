// methods/ggml_simd.c — AVX2 row kernels of the ggml q4_0 / q8_0 blocks
// (contract in ggml_blocks.h), with the per-block scalar functions of
// ggml_blocks.c as their reference. Bit-exactness of the quantizers: the
// same float operations in the same order (x * id, then + 8.5 or rounding
// to nearest even),
// no FMA contraction, the same first-of-equal-magnitudes rule.
#include <math.h>
#include <string.h>
#include "f16.h"
#include "ggml_blocks.h"
#include "simd.h"
#if KVQ_HAVE_X86
#include <immintrin.h>

#define INL static inline __attribute__((always_inline)) KVQ_TARGET_AVX2

INL float blk_d(const uint8_t *b)
{
    uint16_t h;
    memcpy(&h, b, 2);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

INL float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 16 signed bytes -> two vectors of 8 floats
INL void bytes_to_f(__m128i b, __m256 *lo, __m256 *hi)
{
    *lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    *hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
}

// q4_0 nibbles of one block minus 8: values 0..15 and 16..31 as int8
INL void q4_bytes(const uint8_t *blk, __m128i *v0, __m128i *v1)
{
    const __m128i m = _mm_set1_epi8(0x0f), e = _mm_set1_epi8(8);
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));
    *v0 = _mm_sub_epi8(_mm_and_si128(b, m), e);
    *v1 = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), m), e);
}

// The 32 values of one q4_0 (q4) or q8_0 block as four vectors of 8 floats,
// before the scale; q4 is a constant after inlining, so no branch remains.
INL void block_floats(const uint8_t *blk, bool q4, __m256 f[4])
{
    __m128i v0, v1;
    if (q4) {
        q4_bytes(blk, &v0, &v1);
    } else {
        v0 = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));
        v1 = _mm_loadu_si128((const __m128i *)(const void *)(blk + 18));
    }
    bytes_to_f(v0, &f[0], &f[1]);
    bytes_to_f(v1, &f[2], &f[3]);
}

INL float dot_blocks(const uint8_t *row, const float *q, size_t nb, bool q4)
{
    const size_t bytes = q4 ? KVQ_GGML_Q4_0_BYTES : KVQ_GGML_Q8_0_BYTES;
    __m256 acc = _mm256_setzero_ps();
    for (size_t k = 0; k < nb; k++, row += bytes, q += KVQ_GGML_QK) {
        __m256 f[4];
        block_floats(row, q4, f);
        __m256 s = _mm256_mul_ps(f[0], _mm256_loadu_ps(q));
        s = _mm256_fmadd_ps(f[1], _mm256_loadu_ps(q + 8), s);
        s = _mm256_fmadd_ps(f[2], _mm256_loadu_ps(q + 16), s);
        s = _mm256_fmadd_ps(f[3], _mm256_loadu_ps(q + 24), s);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(blk_d(row)), s, acc);
    }
    return hsum8(acc);
}

INL void dequantize_blocks(const uint8_t *row, float *y, size_t nb, bool q4)
{
    const size_t bytes = q4 ? KVQ_GGML_Q4_0_BYTES : KVQ_GGML_Q8_0_BYTES;
    for (size_t k = 0; k < nb; k++, row += bytes, y += KVQ_GGML_QK) {
        __m256 f[4], d = _mm256_set1_ps(blk_d(row));
        block_floats(row, q4, f);
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(y + 8 * j, _mm256_mul_ps(f[j], d));
    }
}

KVQ_TARGET_AVX2 static float q4_0_dot_avx2(const uint8_t *row, const float *q, size_t nb)
{
    return dot_blocks(row, q, nb, true);
}

KVQ_TARGET_AVX2 static void q4_0_dequantize_avx2(const uint8_t *row, float *y, size_t nb)
{
    dequantize_blocks(row, y, nb, true);
}

KVQ_TARGET_AVX2 static float q8_0_dot_avx2(const uint8_t *row, const float *q, size_t nb)
{
    return dot_blocks(row, q, nb, false);
}

KVQ_TARGET_AVX2 static void q8_0_dequantize_avx2(const uint8_t *row, float *y, size_t nb)
{
    dequantize_blocks(row, y, nb, false);
}

// Largest |x| of a block and the signed value of its first occurrence; false
// when the block holds a NaN (then the scalar reference decides).
INL bool block_absmax(const float *x, float *amax, float *max)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4], a[4];
    __m256 nan = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        a[k] = _mm256_andnot_ps(sign, v[k]);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v[k], v[k], _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan)) return false;
    __m256 m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    *amax = _mm_cvtss_f32(h);
    __m256 am = _mm256_set1_ps(*amax);
    uint32_t hit = 0;
    for (int k = 0; k < 4; k++)
        hit |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(a[k], am, _CMP_EQ_OQ)) << (8 * k);
    *max = *amax > 0.0f ? x[__builtin_ctz(hit)] : 0.0f;
    return true;
}

KVQ_TARGET_AVX2 static void q4_0_quantize_avx2(const float *x, uint8_t *row, size_t nb)
{
    for (size_t k = 0; k < nb; k++, x += KVQ_GGML_QK, row += KVQ_GGML_Q4_0_BYTES) {
        float amax, max;
        if (!block_absmax(x, &amax, &max)) {
            kvq_ggml_q4_0_quantize(x, row);
            continue;
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        kvq_f16_store(row, d);
        const __m256 vid = _mm256_set1_ps(id), h = _mm256_set1_ps(8.5f);
        const __m256i fifteen = _mm256_set1_epi32(15);
        int32_t c[32];
        for (int j = 0; j < 4; j++) {
            __m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), vid), h);
            __m256i q = _mm256_min_epi32(_mm256_cvttps_epi32(t), fifteen);
            _mm256_storeu_si256((__m256i *)(void *)(c + 8 * j), q);
        }
        // unsigned: a block whose 1/d overflows gives INT_MIN codes (low byte 0)
        for (int j = 0; j < 16; j++) row[2 + j] = (uint8_t)((uint32_t)c[j] | ((uint32_t)c[j + 16] << 4));
    }
}

KVQ_TARGET_AVX2 static void q8_0_quantize_avx2(const float *x, uint8_t *row, size_t nb)
{
    for (size_t k = 0; k < nb; k++, x += KVQ_GGML_QK, row += KVQ_GGML_Q8_0_BYTES) {
        float amax, max;
        if (!block_absmax(x, &amax, &max)) {
            kvq_ggml_q8_0_quantize(x, row);
            continue;
        }
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        kvq_f16_store(row, d);
        const __m256 vid = _mm256_set1_ps(id);
        int32_t c[32];
        for (int j = 0; j < 4; j++) {
            // ties to even, as ggml's own x86 kernel (and nearbyintf)
            __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), vid);
            t = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            // out of int32 range or NaN -> INT_MIN, then ggml's saturating packs
            __m256i v = _mm256_cvttps_epi32(t);
            v = _mm256_max_epi32(_mm256_min_epi32(v, _mm256_set1_epi32(127)), _mm256_set1_epi32(-128));
            _mm256_storeu_si256((__m256i *)(void *)(c + 8 * j), v);
        }
        for (int j = 0; j < 32; j++) row[2 + j] = (uint8_t)(int8_t)c[j];
    }
}
#endif

void kvq_ggml_q4_0_quantize_row(const float *x, uint8_t *row, size_t nb)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        q4_0_quantize_avx2(x, row, nb);
        return;
    }
#endif
    for (size_t k = 0; k < nb; k++) kvq_ggml_q4_0_quantize(x + k * KVQ_GGML_QK, row + k * KVQ_GGML_Q4_0_BYTES);
}

void kvq_ggml_q4_0_dequantize_row(const uint8_t *row, float *y, size_t nb)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        q4_0_dequantize_avx2(row, y, nb);
        return;
    }
#endif
    for (size_t k = 0; k < nb; k++) kvq_ggml_q4_0_dequantize(row + k * KVQ_GGML_Q4_0_BYTES, y + k * KVQ_GGML_QK);
}

float kvq_ggml_q4_0_dot_row(const uint8_t *row, const float *q, size_t nb)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) return q4_0_dot_avx2(row, q, nb);
#endif
    float acc = 0.0f;
    for (size_t k = 0; k < nb; k++) acc += kvq_ggml_q4_0_dot(row + k * KVQ_GGML_Q4_0_BYTES, q + k * KVQ_GGML_QK);
    return acc;
}

void kvq_ggml_q8_0_quantize_row(const float *x, uint8_t *row, size_t nb)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        q8_0_quantize_avx2(x, row, nb);
        return;
    }
#endif
    for (size_t k = 0; k < nb; k++) kvq_ggml_q8_0_quantize(x + k * KVQ_GGML_QK, row + k * KVQ_GGML_Q8_0_BYTES);
}

void kvq_ggml_q8_0_dequantize_row(const uint8_t *row, float *y, size_t nb)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        q8_0_dequantize_avx2(row, y, nb);
        return;
    }
#endif
    for (size_t k = 0; k < nb; k++) kvq_ggml_q8_0_dequantize(row + k * KVQ_GGML_Q8_0_BYTES, y + k * KVQ_GGML_QK);
}

float kvq_ggml_q8_0_dot_row(const uint8_t *row, const float *q, size_t nb)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) return q8_0_dot_avx2(row, q, nb);
#endif
    float acc = 0.0f;
    for (size_t k = 0; k < nb; k++) acc += kvq_ggml_q8_0_dot(row + k * KVQ_GGML_Q8_0_BYTES, q + k * KVQ_GGML_QK);
    return acc;
}
