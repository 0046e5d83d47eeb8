// methods/tq_x86.h — the F16C helpers that the AVX2 and the AVX-512
// TurboQuant kernels (tq_simd.c, tq_simd512.c) share. They carry the AVX2
// target, a subset of KVQ_TARGET_AVX512's, so they inline into either.
#ifndef KVQ_TQ_X86_H
#define KVQ_TQ_X86_H
#include "simd.h"
#if KVQ_HAVE_X86
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include "tq_common.h"

static inline short tq_rd16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return (short)h;
}

// The fp16 norms of 8 records (at p, p + stride, ...) as 8 floats. Built
// with one set (no lane-indexed insert: its selector must be a constant,
// which unrolled loops only give at -O2).
static inline __attribute__((always_inline)) KVQ_TARGET_AVX2 __m256 tq_norms8(const uint8_t *p, size_t stride)
{
    return _mm256_cvtph_ps(_mm_setr_epi16(tq_rd16(p), tq_rd16(p + stride), tq_rd16(p + 2 * stride),
                                          tq_rd16(p + 3 * stride), tq_rd16(p + 4 * stride), tq_rd16(p + 5 * stride),
                                          tq_rd16(p + 6 * stride), tq_rd16(p + 7 * stride)));
}

// tq_put_f16 by F16C: round to nearest even, as kvq_f32_to_f16 for every
// non-NaN value (the clamp to 65504 first, as tq_put_f16); NaN goes the
// scalar way (the payload rules differ).
static inline __attribute__((always_inline)) KVQ_TARGET_AVX2 void tq_put_f16_fast(uint8_t *dst, float v)
{
    if (v != v) {
        tq_put_f16(dst, v);
        return;
    }
    __m128i h = _mm_cvtps_ph(_mm_set_ss(v > 65504.0f ? 65504.0f : v), _MM_FROUND_TO_NEAREST_INT);
    uint16_t u = (uint16_t)_mm_extract_epi16(h, 0);
    memcpy(dst, &u, 2);
}
#endif
#endif
