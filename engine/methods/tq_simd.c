// methods/tq_simd.c — AVX2 kernels of the TurboQuant row operations
// (contract and scalar references in tq_common.h / tq_common.c). Compiled
// per function for avx2+fma (no global -march); reached only through the
// dispatchers when kvq_simd_avx2() and tq_core_grouped().
//
// The trick that makes codes cheap: a grouped core keeps 8 codes of b bits
// in b bytes, so one 32-bit load + a variable shift (vpsrlvd) spreads them
// over 8 lanes, and the codebook (2^b <= 8 levels, or 16 in two halves)
// sits in one register, so vpermps turns 8 codes into 8 levels at once.
#include <math.h>
#include <string.h>
#include "simd.h"
#include "tq_common.h"
#include "tq_x86.h"

#if KVQ_HAVE_X86
#include <immintrin.h>

#define AVX2 KVQ_TARGET_AVX2
#define INL static inline __attribute__((always_inline)) KVQ_TARGET_AVX2
#define MAXG (KVQ_MAX_HEAD_DIM / 8)

// The 8 codes of group g: `bits` bytes, little-endian, into one word
// (never reads past them: the last group may end the buffer).
INL uint32_t group_word(const uint8_t *p, int bits)
{
    switch (bits) {
    case 1: return p[0];
    case 2: return (uint32_t)p[0] | (uint32_t)p[1] << 8;
    case 3: return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
    default: {
        uint32_t w;
        memcpy(&w, p, 4);
        return w;
    }
    }
}

INL __m256i lane_shifts(int bits)
{
    return _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(bits));
}

// 8 codes -> 8 lane indices
INL __m256i group_codes(const uint8_t *p, int bits, __m256i shifts, __m256i mask)
{
    __m256i w = _mm256_set1_epi32((int)group_word(p, bits));
    return _mm256_and_si256(_mm256_srlv_epi32(w, shifts), mask);
}

// Levels of the codes: lv0 = levels 0..7, lv1 = levels 8..15 (bits 4 only).
INL __m256 group_levels(__m256i idx, __m256 lv0, __m256 lv1, int bits)
{
    __m256 a = _mm256_permutevar8x32_ps(lv0, idx);
    if (bits < 4) return a;
    __m256 b = _mm256_permutevar8x32_ps(lv1, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

// The codebook in registers. Below 8 levels it is repeated to fill 8 lanes,
// so an index whose bits above `bits` hold a neighbour's code still picks
// the right level (vpermps reads 3 index bits): no mask needed.
INL void load_levels(const tq_core *c, __m256 *lv0, __m256 *lv1)
{
    *lv0 = _mm256_loadu_ps(c->lv_pad);
    *lv1 = _mm256_loadu_ps(c->lv_pad + 8);
}

INL float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Same partial sums and combination order as tq_norm (bit-identical):
// four independent chains of 4 lanes, so the adds are not latency-bound.
AVX2 float tq_norm_avx2(const float *x, int d)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int j = 0;
    for (; j + 16 <= d; j += 16) {
        __m256 u = _mm256_loadu_ps(x + j), v = _mm256_loadu_ps(x + j + 8);
        __m256d p0 = _mm256_cvtps_pd(_mm256_castps256_ps128(u));
        __m256d p1 = _mm256_cvtps_pd(_mm256_extractf128_ps(u, 1));
        __m256d p2 = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        __m256d p3 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        // No FMA: the reference rounds the product (exact here) then adds.
        a0 = _mm256_add_pd(a0, _mm256_mul_pd(p0, p0));
        a1 = _mm256_add_pd(a1, _mm256_mul_pd(p1, p1));
        a2 = _mm256_add_pd(a2, _mm256_mul_pd(p2, p2));
        a3 = _mm256_add_pd(a3, _mm256_mul_pd(p3, p3));
    }
    double s[16];
    _mm256_storeu_pd(s, a0);
    _mm256_storeu_pd(s + 4, a1);
    _mm256_storeu_pd(s + 8, a2);
    _mm256_storeu_pd(s + 12, a3);
    for (; j < d; j++) s[j & 15] += (double)x[j] * x[j];
    double t[4];
    for (int l = 0; l < 4; l++) t[l] = (s[l] + s[l + 8]) + (s[l + 4] + s[l + 12]);
    return (float)sqrt((t[0] + t[2]) + (t[1] + t[3]));
}

// In-register unnormalized Walsh-Hadamard transform of v (m = d / 8
// registers, m a power of two). Every output is the same sequence of adds
// and subtracts as kvq_fwht, so the result is bit-identical.
INL void fwht_regs(__m256 *v, const int m)
{
    // Within a register: s = the partner lanes, and x * (+-1) + s in one
    // FMA is a + b / a - b with a single rounding, exactly the add / sub of
    // the reference (the product by +-1 is exact).
    const __m256 g1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
    const __m256 g2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
    const __m256 g4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
KVQ_UNROLL(32)
    for (int r = 0; r < m; r++) {
        __m256 x = v[r];
        x = _mm256_fmadd_ps(x, g1, _mm256_permute_ps(x, 0xB1));               // h = 1
        x = _mm256_fmadd_ps(x, g2, _mm256_permute_ps(x, 0x4E));               // h = 2
        v[r] = _mm256_fmadd_ps(x, g4, _mm256_permute2f128_ps(x, x, 0x01));    // h = 4
    }
KVQ_UNROLL(8)
    for (int h = 1; h < m; h <<= 1)                          // h = 8, 16, ... coordinates
KVQ_UNROLL(32)
        for (int i = 0; i < m; i += h << 1)
KVQ_UNROLL(32)
            for (int r = i; r < i + h; r++) {
                __m256 a = v[r], b = v[r + h];
                v[r] = _mm256_add_ps(a, b);
                v[r + h] = _mm256_sub_ps(a, b);
            }
}

// |x| of one row of d = 8 m floats, bit for bit as tq_norm / tq_norm_avx2
// (the same 16 double partial sums, combined in the same order). A float
// squared is exact in double, so the FMA's single rounding is the
// reference's rounding of the add.
INL float row_norm(const float *x, const int m)
{
    if (m % 2) return tq_norm_avx2(x, 8 * m);
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
KVQ_UNROLL(16)
    for (int j = 0; j < m; j += 2) {
        __m256 u = _mm256_loadu_ps(x + 8 * j), w = _mm256_loadu_ps(x + 8 * j + 8);
        __m256d p0 = _mm256_cvtps_pd(_mm256_castps256_ps128(u));
        __m256d p1 = _mm256_cvtps_pd(_mm256_extractf128_ps(u, 1));
        __m256d p2 = _mm256_cvtps_pd(_mm256_castps256_ps128(w));
        __m256d p3 = _mm256_cvtps_pd(_mm256_extractf128_ps(w, 1));
        a0 = _mm256_fmadd_pd(p0, p0, a0);
        a1 = _mm256_fmadd_pd(p1, p1, a1);
        a2 = _mm256_fmadd_pd(p2, p2, a2);
        a3 = _mm256_fmadd_pd(p3, p3, a3);
    }
    __m256d t = _mm256_add_pd(_mm256_add_pd(a0, a2), _mm256_add_pd(a1, a3));
    __m128d v = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
    v = _mm_add_sd(v, _mm_unpackhi_pd(v, v));
    return (float)_mm_cvtsd_f64(_mm_sqrt_sd(v, v));
}

// Nearest level of 8 (3 bits) or 16 (4 bits) by a branchless binary search:
// each step compares y with the middle bound of the current range, picked
// by vpermps from the bound table. The bounds ascend, so "y > b_k" is true
// exactly for k below the count of bounds under y, and the search lands on
// that count (level_count's answer; NaN: every compare false, 0 too).
// lo = bounds 0..7 (3 bits: 7 bounds, last repeated), hi = bounds 8..14.
INL __m256i level_bsearch(__m256 y, __m256 lo, __m256 hi, const int bits)
{
    const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2), four = _mm256_set1_epi32(4);
    if (bits == 3) {
        // step 2's bound, b1 or b5, by a blend on step 1's mask
        __m256 m4 = _mm256_cmp_ps(y, _mm256_permutevar8x32_ps(lo, _mm256_set1_epi32(3)), _CMP_GT_OQ);
        __m256i c = _mm256_and_si256(_mm256_castps_si256(m4), four);
        __m256 t = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, one), _mm256_permutevar8x32_ps(lo, _mm256_set1_epi32(5)), m4);
        c = _mm256_add_epi32(c, _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(y, t, _CMP_GT_OQ)), two));
        t = _mm256_permutevar8x32_ps(lo, c);
        return _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(y, t, _CMP_GT_OQ)));
    }
    // 4 bits: the first step picks the table half, then 3 steps inside it
    __m256 m8 = _mm256_cmp_ps(y, _mm256_permutevar8x32_ps(lo, _mm256_set1_epi32(7)), _CMP_GT_OQ);
    __m256 t = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, _mm256_set1_epi32(3)),
                                _mm256_permutevar8x32_ps(hi, _mm256_set1_epi32(3)), m8);
    __m256i c = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(y, t, _CMP_GT_OQ)), four);
    t = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, _mm256_add_epi32(c, one)),
                         _mm256_permutevar8x32_ps(hi, _mm256_add_epi32(c, one)), m8);
    c = _mm256_add_epi32(c, _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(y, t, _CMP_GT_OQ)), two));
    t = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, c), _mm256_permutevar8x32_ps(hi, c), m8);
    c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(y, t, _CMP_GT_OQ)));
    return _mm256_add_epi32(c, _mm256_and_si256(_mm256_castps_si256(m8), _mm256_set1_epi32(8)));
}

// Branchless nearest level: the index is the count of bounds below y
// (what kvq_codebook_index's binary search finds).
INL __m256i level_count(__m256 y, const __m256 *bd, int nb)
{
    __m256i cnt = _mm256_setzero_si256();
KVQ_UNROLL(16)
    for (int k = 0; k < nb; k++)
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(y, bd[k], _CMP_GT_OQ)));
    return cnt;
}

// Codes of 4 groups -> 4 * bits packed bytes. The shifted codes of a group
// do not overlap, so OR = ADD and two rounds of hadd + a lane fold give the
// 4 group words; a byte shuffle drops their empty top bytes.
INL void pack4(__m256i c0, __m256i c1, __m256i c2, __m256i c3, __m256i shifts, uint8_t *out, const int bits)
{
    __m256i h01 = _mm256_hadd_epi32(_mm256_sllv_epi32(c0, shifts), _mm256_sllv_epi32(c1, shifts));
    __m256i h23 = _mm256_hadd_epi32(_mm256_sllv_epi32(c2, shifts), _mm256_sllv_epi32(c3, shifts));
    __m256i h = _mm256_hadd_epi32(h01, h23);   // [g0 g1 g2 g3 | g0 g1 g2 g3] halves
    __m128i w = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    switch (bits) {
    case 1: {
        w = _mm_shuffle_epi8(w, _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
        uint32_t v = (uint32_t)_mm_cvtsi128_si32(w);
        memcpy(out, &v, 4);
        break;
    }
    case 2:
        w = _mm_shuffle_epi8(w, _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1));
        _mm_storel_epi64((__m128i *)(void *)out, w);
        break;
    case 3: {
        w = _mm_shuffle_epi8(w, _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1));
        _mm_storel_epi64((__m128i *)(void *)out, w);
        uint32_t v = (uint32_t)_mm_extract_epi32(w, 2);
        memcpy(out + 8, &v, 4);
        break;
    }
    default: _mm_storeu_si128((__m128i *)(void *)out, w); break;
    }
}

// y: m = d/8 registers of rotated unit-scale coordinates -> packed codes.
// The bounds of a codebook in registers, made once per batch of rows:
// broadcast (level_count, 1-2 bits) or as level_bsearch's table (3-4 bits:
// bounds 0..15, padded with the last one).
typedef struct qbounds {
    __m256 bd[15];
    __m256 tlo, thi;
} qbounds;

INL void qbounds_load(const tq_core *c, qbounds *b, const int bits)
{
    const int nb = (1 << bits) - 1;
    float tb[16];
    for (int k = 0; k < 16; k++) tb[k] = c->cb_lo.bounds[k < nb ? k : nb - 1];
    b->tlo = _mm256_loadu_ps(tb);
    b->thi = _mm256_loadu_ps(tb + 8);
    for (int k = 0; k < 15; k++) b->bd[k] = _mm256_set1_ps(tb[k]);
}

INL void quantize_regs(const qbounds *qb, const __m256 *y, const int m, uint8_t *packed, const int bits)
{
    const int nb = (1 << bits) - 1;
    const __m256i shifts = lane_shifts(bits);
    const __m256 *bd = qb->bd, tlo = qb->tlo, thi = qb->thi;
#define LEVEL(yv) (bits >= 3 ? level_bsearch(yv, tlo, thi, bits) : level_count(yv, bd, nb))
    int g = 0;
KVQ_UNROLL(8)
    for (; g + 4 <= m; g += 4)
        pack4(LEVEL(y[g]), LEVEL(y[g + 1]), LEVEL(y[g + 2]), LEVEL(y[g + 3]), shifts, packed + (size_t)g * bits, bits);
    for (; g < m; g++) {   // d % 32 != 0: one group at a time
        __m256i w = _mm256_sllv_epi32(LEVEL(y[g]), shifts);
        __m128i o = _mm_or_si128(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        o = _mm_or_si128(o, _mm_shuffle_epi32(o, 0x4E));
        o = _mm_or_si128(o, _mm_shuffle_epi32(o, 0xB1));
        uint32_t word = (uint32_t)_mm_cvtsi128_si32(o);
        for (int b = 0; b < bits; b++) packed[(size_t)g * bits + b] = (uint8_t)(word >> (8 * b));
    }
#undef LEVEL
}

// m = d / 8, a constant where the dispatcher knows d (64, 128, 256), so
// the FWHT and the quantizer unroll and v[] lives in registers.
INL void encode_rows_k(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes, const int bits,
                       const int m)
{
    const int d = 8 * m;
    const size_t cb = tq_core_code_bytes(c);
    const kvq_rotation *rot = &c->rot;
    __m256 v[MAXG];
    qbounds qb;
    qbounds_load(c, &qb, bits);
    if (rot->hadamard) {
        const __m256 s = _mm256_set1_ps(1.0f / sqrtf((float)d));
        // |x| of row i + 1 is computed while row i is rotated and quantized:
        // the norm, sqrt and division leave the critical path of a row
        float norm_next = n ? row_norm(x, m) : 0.0f;
        for (size_t i = 0; i < n; i++) {
            const float *xi = x + i * (size_t)d;
            float norm = norm_next, inv = norm > 0.0f ? 1.0f / norm : 0.0f;
            if (i + 1 < n) norm_next = row_norm(xi + d, m);
KVQ_UNROLL(32)
            for (int g = 0; g < m; g++)
                v[g] = _mm256_mul_ps(_mm256_loadu_ps(xi + 8 * g), _mm256_loadu_ps(rot->signs + 8 * g));
            __m256 vi = _mm256_set1_ps(inv);
            fwht_regs(v, m);
KVQ_UNROLL(32)
            for (int g = 0; g < m; g++) v[g] = _mm256_mul_ps(_mm256_mul_ps(v[g], s), vi);
            uint8_t *r = rec + i * rec_bytes;
            quantize_regs(&qb, v, m, r, bits);
            tq_put_f16_fast(r + cb, norm);
        }
        return;
    }
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t mm = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        kvq_rotation_apply_batch(rot, x + i0 * d, y, mm);   // fixed order, as the reference
        for (size_t i = 0; i < mm; i++) {
            float norm = tq_norm_avx2(x + (i0 + i) * d, d), inv = norm > 0.0f ? 1.0f / norm : 0.0f;
            __m256 vi = _mm256_set1_ps(inv);
            for (int g = 0; g < m; g++) v[g] = _mm256_mul_ps(_mm256_loadu_ps(y + i * d + 8 * g), vi);
            uint8_t *r = rec + (i0 + i) * rec_bytes;
            quantize_regs(&qb, v, m, r, bits);
            tq_put_f16_fast(r + cb, norm);
        }
    }
}

#define ENC_B(M)                                                   \
    switch (c->bits) {                                             \
    case 1: encode_rows_k(c, x, n, rec, rec_bytes, 1, M); break;   \
    case 2: encode_rows_k(c, x, n, rec, rec_bytes, 2, M); break;   \
    case 3: encode_rows_k(c, x, n, rec, rec_bytes, 3, M); break;   \
    default: encode_rows_k(c, x, n, rec, rec_bytes, 4, M); break;  \
    }

AVX2 void tq_encode_rows_avx2(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes)
{
    const int m = c->d / 8;
    if (m == 16) { ENC_B(16) }
    else if (m == 8) { ENC_B(8) }
    else if (m == 32) { ENC_B(32) }
    else { ENC_B(m) }
}

// R x (forward) or R^T x (transpose) of one vector for a Hadamard
// rotation, bit-identical to kvq_rotation_apply / _apply_t: the signs, the
// FWHT in registers, the 1/sqrt(d) scale (transpose: scale times sign, the
// product first, as the reference).
INL void rotate_k(const tq_core *c, const float *x, float *y, bool transpose, const int m)
{
    const kvq_rotation *rot = &c->rot;
    const float sc = 1.0f / sqrtf((float)(8 * m));
    __m256 v[MAXG];
KVQ_UNROLL(32)
    for (int g = 0; g < m; g++) {
        v[g] = _mm256_loadu_ps(x + 8 * g);
        if (!transpose) v[g] = _mm256_mul_ps(v[g], _mm256_loadu_ps(rot->signs + 8 * g));
    }
    fwht_regs(v, m);
KVQ_UNROLL(32)
    for (int g = 0; g < m; g++) {
        __m256 f = transpose ? _mm256_mul_ps(_mm256_set1_ps(sc), _mm256_loadu_ps(rot->signs + 8 * g))
                             : _mm256_set1_ps(sc);
        _mm256_storeu_ps(y + 8 * g, _mm256_mul_ps(v[g], f));
    }
}

AVX2 void tq_rotate_avx2(const tq_core *c, const float *x, float *y, bool transpose)
{
    const int m = c->d / 8;
    if (m == 16) rotate_k(c, x, y, transpose, 16);
    else if (m == 8) rotate_k(c, x, y, transpose, 8);
    else if (m == 32) rotate_k(c, x, y, transpose, 32);
    else rotate_k(c, x, y, transpose, m);
}

AVX2 void tq_decode_rows_avx2(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n, float *x)
{
    const int d = c->d, m = d / 8, bits = c->bits;
    const size_t cb = tq_core_code_bytes(c);
    const kvq_rotation *rot = &c->rot;
    const __m256i shifts = lane_shifts(bits), mask = _mm256_set1_epi32((1 << bits) - 1);
    __m256 lv0, lv1, v[MAXG];
    load_levels(c, &lv0, &lv1);
    if (rot->hadamard) {
        const float s = 1.0f / sqrtf((float)d);
        for (size_t i = 0; i < n; i++) {
            const uint8_t *r = rec + i * rec_bytes;
            __m256 nv = _mm256_set1_ps(tq_get_f16(r + cb));
            for (int g = 0; g < m; g++)
                v[g] = _mm256_mul_ps(group_levels(group_codes(r + g * bits, bits, shifts, mask), lv0, lv1, bits), nv);
            fwht_regs(v, m);
            float *xi = x + i * (size_t)d;
            for (int g = 0; g < m; g++) {
                // s * sign first, as kvq_rotation_apply_t
                __m256 ss = _mm256_mul_ps(_mm256_set1_ps(s), _mm256_loadu_ps(rot->signs + 8 * g));
                _mm256_storeu_ps(xi + 8 * g, _mm256_mul_ps(v[g], ss));
            }
        }
        return;
    }
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t mm = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        for (size_t i = 0; i < mm; i++) {
            const uint8_t *r = rec + (i0 + i) * rec_bytes;
            __m256 nv = _mm256_set1_ps(tq_get_f16(r + cb));
            for (int g = 0; g < m; g++)
                _mm256_storeu_ps(y + i * d + 8 * g,
                                 _mm256_mul_ps(group_levels(group_codes(r + g * bits, bits, shifts, mask),
                                                            lv0, lv1, bits), nv));
        }
        kvq_rotation_apply_t_batch(rot, y, x + i0 * d, mm);
    }
}

// One query count and width at a time so the compiler keeps nq
// accumulators in registers and unrolls the code extraction.
INL void score_rows_k(const tq_core *c, const float *const *qr, const int nq, const uint8_t *rec,
                      size_t rec_bytes, size_t n, float *scores, size_t lds, const int bits)
{
    const int m = c->d / 8;
    const size_t cb = tq_core_code_bytes(c);
    const __m256i shifts = lane_shifts(bits), mask = _mm256_set1_epi32((1 << bits) - 1);
    __m256 lv0, lv1;
    load_levels(c, &lv0, &lv1);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = rec + i * rec_bytes;
        __m256 acc[8];
        for (int q = 0; q < nq; q++) acc[q] = _mm256_setzero_ps();
        for (int g = 0; g < m; g++) {
            __m256 lv = group_levels(group_codes(r + g * bits, bits, shifts, mask), lv0, lv1, bits);
            for (int q = 0; q < nq; q++) acc[q] = _mm256_fmadd_ps(_mm256_loadu_ps(qr[q] + 8 * g), lv, acc[q]);
        }
        float norm = tq_get_f16(r + cb);
        for (int q = 0; q < nq; q++) scores[(size_t)q * lds + i] = norm * hsum(acc[q]);
    }
}

// The words of 8 consecutive groups (codes of coordinates 64s..64s+63),
// one per lane; p points at the first group's bytes. Reads exactly the
// 8 * bits bytes of those groups.
INL __m256i set_words(const uint8_t *p, const int bits)
{
    switch (bits) {
    case 1: return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
    case 2: return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    case 3: {
        __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(p + 8));
        const __m256i sh = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,
                                            4, 5, 6, -1, 7, 8, 9, -1, 10, 11, 12, -1, 13, 14, 15, -1);
        return _mm256_shuffle_epi8(_mm256_set_m128i(hi, lo), sh);
    }
    default: return _mm256_loadu_si256((const __m256i *)(const void *)p);
    }
}

// Levels of code k (0..7) of the 8 group words in w: vpermps reads only
// the low 3 bits of each shifted word; 4 bits take the 4th bit as the blend
// mask (shifted into the sign bit).
INL __m256 levels_at(__m256i w, const int k, const int bits, __m256 lv0, __m256 lv1)
{
    __m256i sh = _mm256_srli_epi32(w, k * bits);
    // up to 4 levels: both 128-bit halves of lv0 hold them (period <= 4), and
    // the in-lane vpermilps, which reads 2 index bits, is the cheaper shuffle
    if (bits <= 2) return _mm256_permutevar_ps(lv0, sh);
    __m256 a = _mm256_permutevar8x32_ps(lv0, sh);
    if (bits < 4) return a;
    __m256 b = _mm256_permutevar8x32_ps(lv1, sh);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(w, 28 - 4 * k)));
}

// Transposed scoring (d % 64 == 0): lane g of a vector holds coordinate
// 8g + k of a 64-coordinate set, so one load + shuffle yields the words of
// 8 groups and each k costs a shift, a vpermps and the FMAs; the query is
// transposed to match (qt: (sets, 8, 8) per query).
//
// q . yhat of one record and one 64-coordinate set st, added to acc[q].
INL void score_set(const float *qt, const int nq, const int d, const uint8_t *r, int st, const int bits,
                   __m256 lv0, __m256 lv1, __m256 *acc)
{
    __m256i w = set_words(r + (size_t)st * 8 * bits, bits);
KVQ_UNROLL(8)
    for (int k = 0; k < 8; k++) {
        __m256 lv = levels_at(w, k, bits, lv0, lv1);
KVQ_UNROLL(4)
        for (int q = 0; q < nq; q++)
            acc[q] = _mm256_fmadd_ps(_mm256_loadu_ps(qt + (size_t)q * d + st * 64 + k * 8), lv, acc[q]);
    }
}

// 8 records at a time: two records per step, each with separate
// accumulators for even and odd sets when nq <= 2 (8 independent FMA chains
// hide the FMA latency), the 8 per-record vectors of a query reduced by a
// transposing hadd tree (no horizontal sum per record) and scaled by the 8
// norms at once. Records past the last multiple of 8 go one by one.
INL void score_rows_t(const tq_core *c, const float *qt, const int nq, const uint8_t *rec,
                      size_t rec_bytes, size_t n, float *scores, size_t lds, const int bits)
{
    const int sets = c->d / 64, d = c->d;
    const bool split = nq <= 2;
    const size_t cb = tq_core_code_bytes(c);
    __m256 lv0, lv1;
    load_levels(c, &lv0, &lv1);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 hp[4][4];   // [q][pair]: hadd of the pair's two accumulators
KVQ_UNROLL(4)
        for (int pr = 0; pr < 4; pr++) {
            const uint8_t *r0 = rec + (i + 2 * (size_t)pr) * rec_bytes, *r1 = r0 + rec_bytes;
            __m256 a0[4], a1[4], b0[4], b1[4];
KVQ_UNROLL(4)
            for (int q = 0; q < nq; q++) a0[q] = a1[q] = b0[q] = b1[q] = _mm256_setzero_ps();
            int st = 0;
            if (split)
                for (; st + 2 <= sets; st += 2) {
                    score_set(qt, nq, d, r0, st, bits, lv0, lv1, a0);
                    score_set(qt, nq, d, r1, st, bits, lv0, lv1, a1);
                    score_set(qt, nq, d, r0, st + 1, bits, lv0, lv1, b0);
                    score_set(qt, nq, d, r1, st + 1, bits, lv0, lv1, b1);
                }
            for (; st < sets; st++) {
                score_set(qt, nq, d, r0, st, bits, lv0, lv1, a0);
                score_set(qt, nq, d, r1, st, bits, lv0, lv1, a1);
            }
KVQ_UNROLL(4)
            for (int q = 0; q < nq; q++)
                hp[q][pr] = split ? _mm256_hadd_ps(_mm256_add_ps(a0[q], b0[q]), _mm256_add_ps(a1[q], b1[q]))
                                  : _mm256_hadd_ps(a0[q], a1[q]);
        }
        const __m256 nv = tq_norms8(rec + i * rec_bytes + cb, rec_bytes);
KVQ_UNROLL(4)
        for (int q = 0; q < nq; q++) {
            // [r0 r1 r2 r3 | r0 r1 r2 r3] low / high half sums, then r4..r7
            __m256 h0 = _mm256_hadd_ps(hp[q][0], hp[q][1]), h1 = _mm256_hadd_ps(hp[q][2], hp[q][3]);
            __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
            _mm256_storeu_ps(scores + (size_t)q * lds + i, _mm256_mul_ps(nv, sum));
        }
    }
    for (; i < n; i++) {
        const uint8_t *r = rec + i * rec_bytes;
        __m256 acc[4];
KVQ_UNROLL(4)
        for (int q = 0; q < nq; q++) acc[q] = _mm256_setzero_ps();
        for (int st = 0; st < sets; st++) score_set(qt, nq, d, r, st, bits, lv0, lv1, acc);
        uint16_t h;
        memcpy(&h, r + cb, 2);
        float norm = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
KVQ_UNROLL(4)
        for (int q = 0; q < nq; q++) scores[(size_t)q * lds + i] = norm * hsum(acc[q]);
    }
}

#define SCORE_B(K, Q, NQ)                                                          \
    switch (c->bits) {                                                             \
    case 1: K(c, Q, NQ, rec, rec_bytes, n, scores, lds, 1); break;                 \
    case 2: K(c, Q, NQ, rec, rec_bytes, n, scores, lds, 2); break;                 \
    case 3: K(c, Q, NQ, rec, rec_bytes, n, scores, lds, 3); break;                 \
    default: K(c, Q, NQ, rec, rec_bytes, n, scores, lds, 4); break;                \
    }
#define SCORE_NQ(K, Q)                                                             \
    if (k == 4) { SCORE_B(K, Q, 4) }                                               \
    else if (k == 3) { SCORE_B(K, Q, 3) }                                          \
    else if (k == 2) { SCORE_B(K, Q, 2) }                                          \
    else { SCORE_B(K, Q, 1) }

AVX2 void tq_score_rows_avx2(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                             size_t rec_bytes, size_t n, float *scores, size_t lds, bool perm)
{
    const int d = c->d;
    float qt[4 * KVQ_MAX_HEAD_DIM];
    while (nq > 0) {
        int k = nq >= 4 ? 4 : nq;
        if (d % 64 == 0) {
            for (int q = 0; q < k; q++)   // the kernel reads the 4 queries back to back
                if (perm) memcpy(qt + q * d, qr[q], sizeof(float) * (size_t)d);
                else tq_permute(d, qr[q], qt + q * d);
            SCORE_NQ(score_rows_t, qt)
        } else {
            SCORE_NQ(score_rows_k, qr)
        }
        qr += k;
        scores += (size_t)k * lds;
        nq -= k;
    }
}

// Groups outermost: the nq accumulators of 8 coordinates stay in registers
// while every token of the block adds its weighted levels.
INL void accumulate_k(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                      const float *wn, int nq, float *acc, const int bits)
{
    const int d = c->d, m = d / 8;
    const __m256i shifts = lane_shifts(bits), mask = _mm256_set1_epi32((1 << bits) - 1);
    __m256 lv0, lv1;
    load_levels(c, &lv0, &lv1);
    for (int g = 0; g < m; g++) {
        __m256 a[8];
        for (int q = 0; q < nq; q++) a[q] = _mm256_loadu_ps(acc + (size_t)q * d + 8 * g);
        const uint8_t *p = rec + (size_t)g * (size_t)bits;
        for (size_t i = 0; i < n; i++, p += rec_bytes) {
            __m256 lv = group_levels(group_codes(p, bits, shifts, mask), lv0, lv1, bits);
            for (int q = 0; q < nq; q++)
                a[q] = _mm256_fmadd_ps(_mm256_broadcast_ss(wn + (size_t)q * n + i), lv, a[q]);
        }
        for (int q = 0; q < nq; q++) _mm256_storeu_ps(acc + (size_t)q * d + 8 * g, a[q]);
    }
}

// Transposed accumulation (d % 64 == 0): per 64-coordinate set and slice
// of KC code positions k, the nq x KC accumulators stay in registers over
// the tokens (KC = 8 / 4 / 2 for nq = 1 / 2 / 3-4: at most 8 accumulators,
// none spilled); at = (nq, sets, 8, 8) permuted sums, added to.
INL void accumulate_t(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                      const float *wn, const int nq, float *at, const int bits)
{
    const int sets = c->d / 64, d = c->d;
    const int KC = nq == 1 ? 8 : nq == 2 ? 4 : 2;
    __m256 lv0, lv1;
    load_levels(c, &lv0, &lv1);
    for (int st = 0; st < sets; st++)
        for (int k0 = 0; k0 < 8; k0 += KC) {
            __m256 a[4][8];
KVQ_UNROLL(4)
            for (int q = 0; q < nq; q++)
KVQ_UNROLL(8)
                for (int k = 0; k < KC; k++)
                    a[q][k] = _mm256_loadu_ps(at + (size_t)q * d + st * 64 + (k0 + k) * 8);
            const uint8_t *p = rec + (size_t)st * 8 * bits;
KVQ_UNROLL(2)
            for (size_t i = 0; i < n; i++, p += rec_bytes) {
                __m256i w = set_words(p, bits);
                if (k0) w = _mm256_srli_epi32(w, k0 * bits);   // slice k0.. at the bottom
                __m256 wq[4];
KVQ_UNROLL(4)
                for (int q = 0; q < nq; q++) wq[q] = _mm256_broadcast_ss(wn + (size_t)q * n + i);
KVQ_UNROLL(8)
                for (int k = 0; k < KC; k++) {
                    __m256 lv = levels_at(w, k, bits, lv0, lv1);
KVQ_UNROLL(4)
                    for (int q = 0; q < nq; q++) a[q][k] = _mm256_fmadd_ps(wq[q], lv, a[q][k]);
                }
            }
KVQ_UNROLL(4)
            for (int q = 0; q < nq; q++)
KVQ_UNROLL(8)
                for (int k = 0; k < KC; k++)
                    _mm256_storeu_ps(at + (size_t)q * d + st * 64 + (k0 + k) * 8, a[q][k]);
        }
}

#define ACC_B(K, NQ, REC, KN, WN, ACC)                                  \
    switch (c->bits) {                                                  \
    case 1: K(c, REC, rec_bytes, KN, WN, NQ, ACC, 1); break;            \
    case 2: K(c, REC, rec_bytes, KN, WN, NQ, ACC, 2); break;            \
    case 3: K(c, REC, rec_bytes, KN, WN, NQ, ACC, 3); break;            \
    default: K(c, REC, rec_bytes, KN, WN, NQ, ACC, 4); break;           \
    }
#define ACC_NQ(K, REC, KN, WN, ACC)                                     \
    if (qn == 4) { ACC_B(K, 4, REC, KN, WN, ACC) }                      \
    else if (qn == 3) { ACC_B(K, 3, REC, KN, WN, ACC) }                 \
    else if (qn == 2) { ACC_B(K, 2, REC, KN, WN, ACC) }                 \
    else { ACC_B(K, 1, REC, KN, WN, ACC) }

#define ACC_CHUNK 64

AVX2 void tq_accumulate_rows_avx2(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                                  const float *w, size_t ldw, int nq, float *acc, bool perm)
{
    const size_t cb = tq_core_code_bytes(c);
    const int d = c->d;
    const bool tr = d % 64 == 0;
    float wn[8 * ACC_CHUNK];   // (nq, k) weights times norms
    float at[4 * KVQ_MAX_HEAD_DIM];
    for (size_t i0 = 0; i0 < n; i0 += ACC_CHUNK) {
        size_t k = n - i0 < ACC_CHUNK ? n - i0 : ACC_CHUNK;
        const uint8_t *r0 = rec + i0 * rec_bytes;
        size_t i = 0;
        for (; i + 8 <= k; i += 8) {   // 8 norms converted at once
            __m256 nv = tq_norms8(r0 + i * rec_bytes + cb, rec_bytes);
            for (int q = 0; q < nq; q++)
                _mm256_storeu_ps(wn + (size_t)q * k + i, _mm256_mul_ps(_mm256_loadu_ps(w + (size_t)q * ldw + i0 + i), nv));
        }
        for (; i < k; i++) {
            uint16_t h;
            memcpy(&h, r0 + i * rec_bytes + cb, 2);
            float norm = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
            for (int q = 0; q < nq; q++) wn[(size_t)q * k + i] = w[(size_t)q * ldw + i0 + i] * norm;
        }
        for (int q0 = 0; q0 < nq; q0 += 4) {
            int qn = nq - q0 < 4 ? nq - q0 : 4;
            const float *wq = wn + (size_t)q0 * k;
            float *aq = acc + (size_t)q0 * (size_t)d;
            if (!tr) {
                ACC_NQ(accumulate_k, r0, k, wq, aq)
                continue;
            }
            if (perm) {   // accumulate straight into the caller's permuted sums
                ACC_NQ(accumulate_t, r0, k, wq, aq)
                continue;
            }
            memset(at, 0, sizeof(float) * (size_t)qn * (size_t)d);
            ACC_NQ(accumulate_t, r0, k, wq, at)
            float nat[KVQ_MAX_HEAD_DIM];
            for (int q = 0; q < qn; q++) {
                tq_unpermute(d, at + q * d, nat);
                for (int t = 0; t < d; t++) aq[(size_t)q * d + t] += nat[t];
            }
        }
    }
}

#else   // no x86: the dispatchers never call these
void tq_rotate_avx2(const tq_core *c, const float *x, float *y, bool transpose)
{
    if (transpose) kvq_rotation_apply_t(&c->rot, x, y);
    else kvq_rotation_apply(&c->rot, x, y);
}
float tq_norm_avx2(const float *x, int d) { return tq_norm(x, d); }
void tq_encode_rows_avx2(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes)
{ tq_core_encode_rows_ref(c, x, n, rec, rec_bytes); }
void tq_decode_rows_avx2(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n, float *x)
{ tq_core_decode_rows_ref(c, rec, rec_bytes, n, x); }
void tq_score_rows_avx2(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                        size_t rec_bytes, size_t n, float *scores, size_t lds, bool perm)
{ (void)perm; tq_core_score_rows_ref(c, qr, nq, rec, rec_bytes, n, scores, lds); }
void tq_accumulate_rows_avx2(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                             const float *w, size_t ldw, int nq, float *acc, bool perm)
{ (void)perm; tq_core_accumulate_rows_ref(c, rec, rec_bytes, n, w, ldw, nq, acc); }
#endif
