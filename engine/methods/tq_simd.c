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

INL void load_levels(const tq_core *c, __m256 *lv0, __m256 *lv1)
{
    float l[16] = {0};
    memcpy(l, c->cb_lo.levels, sizeof(float) * (size_t)c->cb_lo.n);
    *lv0 = _mm256_loadu_ps(l);
    *lv1 = _mm256_loadu_ps(l + 8);
}

INL float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Same partial sums and combination order as tq_norm (bit-identical).
AVX2 float tq_norm_avx2(const float *x, int d)
{
    __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd();
    int j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        // No FMA: the reference rounds the product (exact here) then adds.
        a = _mm256_add_pd(a, _mm256_mul_pd(lo, lo));
        b = _mm256_add_pd(b, _mm256_mul_pd(hi, hi));
    }
    double s[8];
    _mm256_storeu_pd(s, a);
    _mm256_storeu_pd(s + 4, b);
    for (; j < d; j++) s[j & 7] += (double)x[j] * x[j];
    return (float)sqrt(((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7])));
}

// In-register unnormalized Walsh-Hadamard transform of v (m = d / 8
// registers, m a power of two). Every output is the same sequence of adds
// and subtracts as kvq_fwht, so the result is bit-identical.
INL void fwht_regs(__m256 *v, int m)
{
    for (int r = 0; r < m; r++) {
        __m256 x = v[r], s = _mm256_permute_ps(x, 0xB1);   // h = 1
        x = _mm256_blend_ps(_mm256_add_ps(x, s), _mm256_sub_ps(s, x), 0xAA);
        s = _mm256_permute_ps(x, 0x4E);                     // h = 2
        x = _mm256_blend_ps(_mm256_add_ps(x, s), _mm256_sub_ps(s, x), 0xCC);
        s = _mm256_permute2f128_ps(x, x, 0x01);             // h = 4
        v[r] = _mm256_blend_ps(_mm256_add_ps(x, s), _mm256_sub_ps(s, x), 0xF0);
    }
    for (int h = 1; h < m; h <<= 1)                          // h = 8, 16, ... coordinates
        for (int i = 0; i < m; i += h << 1)
            for (int r = i; r < i + h; r++) {
                __m256 a = v[r], b = v[r + h];
                v[r] = _mm256_add_ps(a, b);
                v[r + h] = _mm256_sub_ps(a, b);
            }
}

// Branchless nearest level: the index is the count of bounds below y
// (what kvq_codebook_index's binary search finds), packed into the group word.
INL void quantize_regs(const tq_core *c, const __m256 *y, int m, uint8_t *packed)
{
    const int bits = c->bits, nb = c->cb_lo.n - 1;
    const __m256i shifts = lane_shifts(bits);
    __m256 bd[15];
    for (int k = 0; k < nb; k++) bd[k] = _mm256_set1_ps(c->cb_lo.bounds[k]);
    for (int g = 0; g < m; g++) {
        __m256i cnt = _mm256_setzero_si256();
        for (int k = 0; k < nb; k++)
            cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(_mm256_cmp_ps(y[g], bd[k], _CMP_GT_OQ)));
        __m256i w = _mm256_sllv_epi32(cnt, shifts);
        __m128i o = _mm_or_si128(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        o = _mm_or_si128(o, _mm_shuffle_epi32(o, 0x4E));
        o = _mm_or_si128(o, _mm_shuffle_epi32(o, 0xB1));
        uint32_t word = (uint32_t)_mm_cvtsi128_si32(o);
        memcpy(packed + (size_t)g * (size_t)bits, &word, (size_t)bits);
    }
}

AVX2 void tq_encode_rows_avx2(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes)
{
    const int d = c->d, m = d / 8;
    const size_t cb = tq_core_code_bytes(c);
    const kvq_rotation *rot = &c->rot;
    __m256 v[MAXG];
    if (rot->hadamard) {
        const __m256 s = _mm256_set1_ps(1.0f / sqrtf((float)d));
        for (size_t i = 0; i < n; i++) {
            const float *xi = x + i * (size_t)d;
            float norm = tq_norm_avx2(xi, d), inv = norm > 0.0f ? 1.0f / norm : 0.0f;
            __m256 vi = _mm256_set1_ps(inv);
            for (int g = 0; g < m; g++)
                v[g] = _mm256_mul_ps(_mm256_loadu_ps(xi + 8 * g), _mm256_loadu_ps(rot->signs + 8 * g));
            fwht_regs(v, m);
            for (int g = 0; g < m; g++) v[g] = _mm256_mul_ps(_mm256_mul_ps(v[g], s), vi);
            uint8_t *r = rec + i * rec_bytes;
            quantize_regs(c, v, m, r);
            tq_put_f16(r + cb, norm);
        }
        return;
    }
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t mm = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        kvq_rotation_apply_batch(rot, x + i0 * d, y, mm);   // sgemm, as the reference
        for (size_t i = 0; i < mm; i++) {
            float norm = tq_norm_avx2(x + (i0 + i) * d, d), inv = norm > 0.0f ? 1.0f / norm : 0.0f;
            __m256 vi = _mm256_set1_ps(inv);
            for (int g = 0; g < m; g++) v[g] = _mm256_mul_ps(_mm256_loadu_ps(y + i * d + 8 * g), vi);
            uint8_t *r = rec + (i0 + i) * rec_bytes;
            quantize_regs(c, v, m, r);
            tq_put_f16(r + cb, norm);
        }
    }
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

#define SCORE_CASES(NQ)                                                                        \
    switch (c->bits) {                                                                         \
    case 1: score_rows_k(c, qr, NQ, rec, rec_bytes, n, scores, lds, 1); break;                 \
    case 2: score_rows_k(c, qr, NQ, rec, rec_bytes, n, scores, lds, 2); break;                 \
    case 3: score_rows_k(c, qr, NQ, rec, rec_bytes, n, scores, lds, 3); break;                 \
    default: score_rows_k(c, qr, NQ, rec, rec_bytes, n, scores, lds, 4); break;                \
    }

AVX2 void tq_score_rows_avx2(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                             size_t rec_bytes, size_t n, float *scores, size_t lds)
{
    while (nq > 0) {
        int k = nq >= 4 ? 4 : nq;
        if (k == 4) { SCORE_CASES(4) }
        else if (k == 3) { SCORE_CASES(3) }
        else if (k == 2) { SCORE_CASES(2) }
        else { SCORE_CASES(1) }
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

#define ACC_CASES(NQ, REC, K, WN, ACC)                                  \
    switch (c->bits) {                                                  \
    case 1: accumulate_k(c, REC, rec_bytes, K, WN, NQ, ACC, 1); break;  \
    case 2: accumulate_k(c, REC, rec_bytes, K, WN, NQ, ACC, 2); break;  \
    case 3: accumulate_k(c, REC, rec_bytes, K, WN, NQ, ACC, 3); break;  \
    default: accumulate_k(c, REC, rec_bytes, K, WN, NQ, ACC, 4); break; \
    }

#define ACC_CHUNK 64

AVX2 void tq_accumulate_rows_avx2(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                                  const float *w, size_t ldw, int nq, float *acc)
{
    const size_t cb = tq_core_code_bytes(c);
    float wn[8 * ACC_CHUNK];   // (nq, k) weights times norms
    for (size_t i0 = 0; i0 < n; i0 += ACC_CHUNK) {
        size_t k = n - i0 < ACC_CHUNK ? n - i0 : ACC_CHUNK;
        const uint8_t *r0 = rec + i0 * rec_bytes;
        for (size_t i = 0; i < k; i++) {
            float norm = tq_get_f16(r0 + i * rec_bytes + cb);
            for (int q = 0; q < nq; q++) wn[(size_t)q * k + i] = w[(size_t)q * ldw + i0 + i] * norm;
        }
        for (int q0 = 0; q0 < nq; q0 += 4) {
            int qn = nq - q0 < 4 ? nq - q0 : 4;
            const float *wq = wn + (size_t)q0 * k;
            float *aq = acc + (size_t)q0 * (size_t)c->d;
            if (qn == 4) { ACC_CASES(4, r0, k, wq, aq) }
            else if (qn == 3) { ACC_CASES(3, r0, k, wq, aq) }
            else if (qn == 2) { ACC_CASES(2, r0, k, wq, aq) }
            else { ACC_CASES(1, r0, k, wq, aq) }
        }
    }
}

#else   // no x86: the dispatchers never call these
float tq_norm_avx2(const float *x, int d) { return tq_norm(x, d); }
void tq_encode_rows_avx2(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes)
{ tq_core_encode_rows_ref(c, x, n, rec, rec_bytes); }
void tq_decode_rows_avx2(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n, float *x)
{ tq_core_decode_rows_ref(c, rec, rec_bytes, n, x); }
void tq_score_rows_avx2(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                        size_t rec_bytes, size_t n, float *scores, size_t lds)
{ tq_core_score_rows_ref(c, qr, nq, rec, rec_bytes, n, scores, lds); }
void tq_accumulate_rows_avx2(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                             const float *w, size_t ldw, int nq, float *acc)
{ tq_core_accumulate_rows_ref(c, rec, rec_bytes, n, w, ldw, nq, acc); }
#endif
