// methods/tq_simd512.c — AVX-512 kernels of the TurboQuant row operations
// (contract and scalar references in tq_common.h / tq_common.c, the AVX2
// kernels they refine in tq_simd.c). Compiled per function for
// KVQ_TARGET_AVX512 (F, BW, VL, DQ, VBMI, BMI2; no global -march); reached only
// through the dispatchers when kvq_simd_avx512() and tq_core_grouped().
// Shapes they do not cover (d % 64 != 0, a dense rotation) go to the AVX2
// kernels, and so do value sums of one query at 1-2 bits (slower at zmm
// width on Zen 4, which runs a zmm operation as two 256-bit halves).
//
// Same layout as the AVX2 kernels: a 64-coordinate set's permuted order is
// entry 8 k + g = coordinate 8 g + k (tq_permute), so one zmm holds code k
// of the set's 8 groups in lanes 0..7 and code k + 1 in lanes 8..15. The
// words of the 8 groups, repeated in both halves, shifted by a per-half
// amount (vpsrlvd) give 16 code indices, and the whole 16-level codebook
// sits in one zmm: one vpermps (vpermilps up to 2 bits) turns them into 16
// levels, where AVX2 needs two vpermps + a blend + a shift for 4 bits.
//
// Results: encode bit-identical to the reference (as AVX2's); scores and
// value sums within float rounding of the references (16 partial sums per
// record, another order than AVX2's 8).
#include <math.h>
#include <string.h>
#include "simd.h"
#include "tq_common.h"
#include "tq_x86.h"

#if KVQ_HAVE_X86
#include <immintrin.h>

#define AVX512 KVQ_TARGET_AVX512
#define INL static inline __attribute__((always_inline)) KVQ_TARGET_AVX512
#define MAXZ (KVQ_MAX_HEAD_DIM / 16)

// ---- codes of one 64-coordinate set ----
// The words of the set's 8 groups (p: its first byte), in lanes 0..7 and
// again in lanes 8..15; reads only bytes of its record (sets: per record).
// 3 bits: one 32-byte load, from the set's start for set 0 and from 8
// bytes before it for the others (both inside the record when sets >= 2),
// then vpermb; the dword's top byte is left as it comes: it only reaches
// index bit 3 after the shifts, which a 3-bit lookup ignores (lv_pad
// repeats the 8 levels).
INL __m512i set_words2(const uint8_t *p, const int st, const int sets, const int bits)
{
    switch (bits) {
    case 1: {
        long long w;
        memcpy(&w, p, 8);
        return _mm512_cvtepu8_epi32(_mm_set1_epi64x(w));
    }
    case 2: return _mm512_cvtepu16_epi32(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)p)));
    case 3: {
        // group g's 3 bytes into dword g (and 8 + g)
        const __m512i idx = _mm512_setr_epi32(0x020100, 0x050403, 0x080706, 0x0b0a09, 0x0e0d0c, 0x11100f,
                                              0x141312, 0x171615, 0x020100, 0x050403, 0x080706, 0x0b0a09,
                                              0x0e0d0c, 0x11100f, 0x141312, 0x171615);
        if (sets < 2) {   // the set is the whole code: load exactly its 24 bytes
            __m256i b = _mm256_maskz_loadu_epi8(0xFFFFFFu, p);
            return _mm512_permutexvar_epi8(idx, _mm512_castsi256_si512(b));
        }
        if (st == 0)
            return _mm512_permutexvar_epi8(idx, _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)p)));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(p - 8));
        return _mm512_permutexvar_epi8(_mm512_add_epi32(idx, _mm512_set1_epi32(0x080808)), _mm512_castsi256_si512(b));
    }
    default: return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)p));
    }
}

// Shift of code pair kp (codes 2 kp and 2 kp + 1) in the two halves.
INL __m512i pair_shift(const int kp, const int bits)
{
    const int a = 2 * kp * bits, b = a + bits;   // constants where the kernels are instantiated
    return _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
}

// 16 levels of the shifted words: the index's low 4 bits (vpermps), or up
// to 4 levels the low 2 bits within each 128-bit lane (vpermilps, cheaper);
// lv_pad repeats the codebook, so the neighbours' bits above the code
// change nothing.
INL __m512 lookup(__m512i idx, __m512 lv, const int bits)
{
    if (bits <= 2) return _mm512_permutevar_ps(lv, idx);
    return _mm512_permutexvar_ps(idx, lv);
}

INL float norm1(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}

// ---- scoring (d % 64 == 0, queries in the permuted order) ----
// q . yhat of one record over set st, added to a (code pairs 0, 2) and b
// (pairs 1, 3) when split, else all to a.
INL void score_set(const float *const *q, const int nq, const uint8_t *r, const int st, const int sets,
                   const int bits, __m512 lv, const __m512i *sh, __m512 *a, __m512 *b, const bool split)
{
    __m512i w = set_words2(r + (size_t)st * 8 * bits, st, sets, bits);
KVQ_UNROLL(4)
    for (int kp = 0; kp < 4; kp++) {
        __m512 l = lookup(_mm512_srlv_epi32(w, sh[kp]), lv, bits);
KVQ_UNROLL(4)
        for (int i = 0; i < nq; i++) {
            __m512 qv = _mm512_loadu_ps(q[i] + st * 64 + kp * 16);
            if (split && (kp & 1)) b[i] = _mm512_fmadd_ps(qv, l, b[i]);
            else a[i] = _mm512_fmadd_ps(qv, l, a[i]);
        }
    }
}

// [8 partial sums of x | 8 of y]
INL __m512 fold_pair(__m512 x, __m512 y)
{
    return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xEE));
}

// 8 records at a time, two per step (each with two accumulators when
// nq <= 2: 4 + independent FMA chains), each pair folded at once to
// [r0 | r1] halves, the four pairs reduced by a transposing tree to the 8
// sums, scaled by the 8 norms together. Records past the last multiple of
// 8 go one by one.
INL void score_rows_t(const tq_core *c, const float *const *q, const int nq, const uint8_t *rec,
                      size_t rec_bytes, size_t n, float *scores, size_t lds, const int bits, const int sets)
{
    const bool split = nq <= 2;
    const size_t cb = tq_core_code_bytes(c);
    const __m512 lv = _mm512_loadu_ps(c->lv_pad);
    __m512i sh[4];
    for (int kp = 0; kp < 4; kp++) sh[kp] = pair_shift(kp, bits);
    const __m512i fin = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 4, 8, 12, 2, 6, 10, 14);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512 hp[4][4];   // [q][pair]
KVQ_UNROLL(4)
        for (int pr = 0; pr < 4; pr++) {
            const uint8_t *r0 = rec + (i + 2 * (size_t)pr) * rec_bytes, *r1 = r0 + rec_bytes;
            __m512 a0[4], a1[4], b0[4], b1[4];
KVQ_UNROLL(4)
            for (int k = 0; k < nq; k++) a0[k] = a1[k] = b0[k] = b1[k] = _mm512_setzero_ps();
KVQ_UNROLL(4)
            for (int st = 0; st < sets; st++) {
                score_set(q, nq, r0, st, sets, bits, lv, sh, a0, b0, split);
                score_set(q, nq, r1, st, sets, bits, lv, sh, a1, b1, split);
            }
KVQ_UNROLL(4)
            for (int k = 0; k < nq; k++)
                hp[k][pr] = split ? fold_pair(_mm512_add_ps(a0[k], b0[k]), _mm512_add_ps(a1[k], b1[k]))
                                  : fold_pair(a0[k], a1[k]);
        }
        const __m256 nv = tq_norms8(rec + i * rec_bytes + cb, rec_bytes);
KVQ_UNROLL(4)
        for (int k = 0; k < nq; k++) {
            // [r0 r1 r2 r3] (4 partials each per 128-bit lane), [r4 .. r7]
            __m512 u0 = _mm512_add_ps(_mm512_shuffle_f32x4(hp[k][0], hp[k][1], 0x88),
                                      _mm512_shuffle_f32x4(hp[k][0], hp[k][1], 0xDD));
            __m512 u1 = _mm512_add_ps(_mm512_shuffle_f32x4(hp[k][2], hp[k][3], 0x88),
                                      _mm512_shuffle_f32x4(hp[k][2], hp[k][3], 0xDD));
            // lane L: [rL rL r(L+4) r(L+4)] halves, then whole sums
            __m512 v = _mm512_add_ps(_mm512_shuffle_ps(u0, u1, 0x44), _mm512_shuffle_ps(u0, u1, 0xEE));
            v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xB1));
            __m256 s = _mm512_castps512_ps256(_mm512_permutexvar_ps(fin, v));
            _mm256_storeu_ps(scores + (size_t)k * lds + i, _mm256_mul_ps(nv, s));
        }
    }
    for (; i < n; i++) {
        const uint8_t *r = rec + i * rec_bytes;
        __m512 a[4], b[4];
KVQ_UNROLL(4)
        for (int k = 0; k < nq; k++) a[k] = b[k] = _mm512_setzero_ps();
KVQ_UNROLL(4)
        for (int st = 0; st < sets; st++) score_set(q, nq, r, st, sets, bits, lv, sh, a, b, split);
        float norm = norm1(r + cb);
KVQ_UNROLL(4)
        for (int k = 0; k < nq; k++) scores[(size_t)k * lds + i] = norm * _mm512_reduce_add_ps(_mm512_add_ps(a[k], b[k]));
    }
}

// sets = d / 64 a constant for d = 64, 128, 256
#define SCORE_S(NQ, B)                                                                    \
    switch (sets) {                                                                       \
    case 1: score_rows_t(c, qp, NQ, rec, rec_bytes, n, scores, lds, B, 1); break;         \
    case 2: score_rows_t(c, qp, NQ, rec, rec_bytes, n, scores, lds, B, 2); break;         \
    case 4: score_rows_t(c, qp, NQ, rec, rec_bytes, n, scores, lds, B, 4); break;         \
    default: score_rows_t(c, qp, NQ, rec, rec_bytes, n, scores, lds, B, sets); break;     \
    }
#define SCORE_B(NQ)                                \
    switch (c->bits) {                             \
    case 1: SCORE_S(NQ, 1) break;                  \
    case 2: SCORE_S(NQ, 2) break;                  \
    case 3: SCORE_S(NQ, 3) break;                  \
    default: SCORE_S(NQ, 4) break;                 \
    }

AVX512 void tq_score_rows_avx512(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                                 size_t rec_bytes, size_t n, float *scores, size_t lds, bool perm)
{
    const int d = c->d, sets = d / 64;
    if (d % 64) {
        tq_score_rows_avx2(c, qr, nq, rec, rec_bytes, n, scores, lds, perm);
        return;
    }
    float qt[4 * KVQ_MAX_HEAD_DIM];
    while (nq > 0) {
        const int k = nq >= 4 ? 4 : nq;
        const float *qp[4];
        for (int i = 0; i < k; i++) {
            if (perm) qp[i] = qr[i];
            else {
                tq_permute(d, qr[i], qt + i * d);
                qp[i] = qt + i * d;
            }
        }
        if (k == 4) { SCORE_B(4) }
        else if (k == 3) { SCORE_B(3) }
        else if (k == 2) { SCORE_B(2) }
        else { SCORE_B(1) }
        qr += k;
        scores += (size_t)k * lds;
        nq -= k;
    }
}

// ---- value accumulation (d % 64 == 0) ----
// Per 64-coordinate set, the nq x 4 accumulators (code pairs) stay in
// registers over the tokens; one query adds even and odd tokens to
// separate accumulators (8 FMA chains). at = (nq, sets, 64) permuted sums,
// added to; wn = (nq, n) weights times norms.
INL void accumulate_t(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n, const float *wn,
                      const int nq, float *at, const int bits, const int sets)
{
    const int d = 64 * sets;
    const __m512 lv = _mm512_loadu_ps(c->lv_pad);
    __m512i sh[4];
    for (int kp = 0; kp < 4; kp++) sh[kp] = pair_shift(kp, bits);
KVQ_UNROLL(4)
    for (int st = 0; st < sets; st++) {
        __m512 a[4][4], b[4];
KVQ_UNROLL(4)
        for (int k = 0; k < nq; k++)
KVQ_UNROLL(4)
            for (int kp = 0; kp < 4; kp++) a[k][kp] = _mm512_loadu_ps(at + (size_t)k * d + st * 64 + kp * 16);
KVQ_UNROLL(4)
        for (int kp = 0; kp < 4; kp++) b[kp] = _mm512_setzero_ps();
        const uint8_t *p = rec + (size_t)st * 8 * bits;
        size_t i = 0;
        if (nq == 1)
            for (; i + 2 <= n; i += 2, p += 2 * rec_bytes) {
                __m512i w0 = set_words2(p, st, sets, bits), w1 = set_words2(p + rec_bytes, st, sets, bits);
                __m512 x0 = _mm512_set1_ps(wn[i]), x1 = _mm512_set1_ps(wn[i + 1]);
KVQ_UNROLL(4)
                for (int kp = 0; kp < 4; kp++) {
                    a[0][kp] = _mm512_fmadd_ps(x0, lookup(_mm512_srlv_epi32(w0, sh[kp]), lv, bits), a[0][kp]);
                    b[kp] = _mm512_fmadd_ps(x1, lookup(_mm512_srlv_epi32(w1, sh[kp]), lv, bits), b[kp]);
                }
            }
        for (; i < n; i++, p += rec_bytes) {
            __m512i w = set_words2(p, st, sets, bits);
            __m512 x[4];
KVQ_UNROLL(4)
            for (int k = 0; k < nq; k++) x[k] = _mm512_set1_ps(wn[(size_t)k * n + i]);
KVQ_UNROLL(4)
            for (int kp = 0; kp < 4; kp++) {
                __m512 l = lookup(_mm512_srlv_epi32(w, sh[kp]), lv, bits);
KVQ_UNROLL(4)
                for (int k = 0; k < nq; k++) a[k][kp] = _mm512_fmadd_ps(x[k], l, a[k][kp]);
            }
        }
        if (nq == 1)
KVQ_UNROLL(4)
            for (int kp = 0; kp < 4; kp++) a[0][kp] = _mm512_add_ps(a[0][kp], b[kp]);
KVQ_UNROLL(4)
        for (int k = 0; k < nq; k++)
KVQ_UNROLL(4)
            for (int kp = 0; kp < 4; kp++) _mm512_storeu_ps(at + (size_t)k * d + st * 64 + kp * 16, a[k][kp]);
    }
}

#define ACC_S(NQ, ACC, B)                                                      \
    switch (sets) {                                                            \
    case 1: accumulate_t(c, r0, rec_bytes, k, wq, NQ, ACC, B, 1); break;       \
    case 2: accumulate_t(c, r0, rec_bytes, k, wq, NQ, ACC, B, 2); break;       \
    case 4: accumulate_t(c, r0, rec_bytes, k, wq, NQ, ACC, B, 4); break;       \
    default: accumulate_t(c, r0, rec_bytes, k, wq, NQ, ACC, B, sets); break;   \
    }
#define ACC_B(NQ, ACC)                          \
    switch (c->bits) {                          \
    case 1: ACC_S(NQ, ACC, 1) break;            \
    case 2: ACC_S(NQ, ACC, 2) break;            \
    case 3: ACC_S(NQ, ACC, 3) break;            \
    default: ACC_S(NQ, ACC, 4) break;           \
    }
#define ACC_NQ(ACC)                                                        \
    if (qn == 4) { ACC_B(4, ACC) }                                         \
    else if (qn == 3) { ACC_B(3, ACC) }                                    \
    else if (qn == 2) { ACC_B(2, ACC) }                                    \
    else { ACC_B(1, ACC) }

#define ACC_CHUNK 64

AVX512 void tq_accumulate_rows_avx512(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                                      const float *w, size_t ldw, int nq, float *acc, bool perm)
{
    const int d = c->d, sets = d / 64;
    // one query at 1-2 bits: AVX2's kernel, whose 8 accumulators of 8
    // lanes take one shift + vpermilps per 8 codes; at zmm width the same
    // work plus the 16-lane word build ran 3-9% slower on Zen 4 (zmm ops
    // at half rate)
    if (d % 64 || (nq == 1 && c->bits <= 2)) {
        tq_accumulate_rows_avx2(c, rec, rec_bytes, n, w, ldw, nq, acc, perm);
        return;
    }
    const size_t cb = tq_core_code_bytes(c);
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
            float norm = norm1(r0 + i * rec_bytes + cb);
            for (int q = 0; q < nq; q++) wn[(size_t)q * k + i] = w[(size_t)q * ldw + i0 + i] * norm;
        }
        for (int q0 = 0; q0 < nq; q0 += 4) {
            const int qn = nq - q0 < 4 ? nq - q0 : 4;
            const float *wq = wn + (size_t)q0 * k;
            float *aq = acc + (size_t)q0 * (size_t)d;
            if (perm) {   // straight into the caller's permuted sums
                ACC_NQ(aq)
                continue;
            }
            memset(at, 0, sizeof(float) * (size_t)qn * (size_t)d);
            ACC_NQ(at)
            float nat[KVQ_MAX_HEAD_DIM];
            for (int q = 0; q < qn; q++) {
                tq_unpermute(d, at + q * d, nat);
                for (int t = 0; t < d; t++) aq[(size_t)q * d + t] += nat[t];
            }
        }
    }
}

// ---- encode (Hadamard rotation, d % 64 == 0) ----
// |x| bit for bit as tq_norm: 16 double partial sums s_l (coordinate j in
// s_{j % 16}, in order), t_l = (s_l + s_l+8) + (s_l+4 + s_l+12), then
// (t0 + t2) + (t1 + t3). A float squared is exact in double, so the FMA
// rounds once, as the reference's add. m = d / 16.
INL float row_norm(const float *x, const int m)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
KVQ_UNROLL(16)
    for (int j = 0; j < m; j++) {
        __m512d p0 = _mm512_cvtps_pd(_mm256_loadu_ps(x + 16 * j));   // converted straight from memory
        __m512d p1 = _mm512_cvtps_pd(_mm256_loadu_ps(x + 16 * j + 8));
        a0 = _mm512_fmadd_pd(p0, p0, a0);   // s0..s7
        a1 = _mm512_fmadd_pd(p1, p1, a1);   // s8..s15
    }
    __m512d u = _mm512_add_pd(a0, a1);                                                  // s_l + s_l+8
    __m256d t = _mm256_add_pd(_mm512_castpd512_pd256(u), _mm512_extractf64x4_pd(u, 1));   // t0..t3
    __m128d v = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));      // t0+t2, t1+t3
    v = _mm_add_sd(v, _mm_unpackhi_pd(v, v));
    return (float)_mm_cvtsd_f64(_mm_sqrt_sd(v, v));
}

// In-register unnormalized Walsh-Hadamard transform (m = d / 16 registers,
// a power of two): the same adds and subtracts as kvq_fwht, stage by stage
// (x * (+-1) + partner in one FMA is a + b / a - b with one rounding).
INL void fwht_regs(__m512 *v, const int m)
{
    const __m512 g1 = _mm512_setr_ps(1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1);
    const __m512 g2 = _mm512_setr_ps(1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1);
    const __m512 g4 = _mm512_setr_ps(1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1);
    const __m512 g8 = _mm512_setr_ps(1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1);
KVQ_UNROLL(16)
    for (int r = 0; r < m; r++) {
        __m512 x = v[r];
        x = _mm512_fmadd_ps(x, g1, _mm512_permute_ps(x, 0xB1));           // h = 1
        x = _mm512_fmadd_ps(x, g2, _mm512_permute_ps(x, 0x4E));           // h = 2
        x = _mm512_fmadd_ps(x, g4, _mm512_shuffle_f32x4(x, x, 0xB1));     // h = 4
        v[r] = _mm512_fmadd_ps(x, g8, _mm512_shuffle_f32x4(x, x, 0x4E));  // h = 8
    }
KVQ_UNROLL(8)
    for (int h = 1; h < m; h <<= 1)   // h = 16, 32, ... coordinates
KVQ_UNROLL(16)
        for (int i = 0; i < m; i += h << 1)
KVQ_UNROLL(16)
            for (int r = i; r < i + h; r++) {
                __m512 a = v[r], b = v[r + h];
                v[r] = _mm512_add_ps(a, b);
                v[r + h] = _mm512_sub_ps(a, b);
            }
}

// Nearest level = the count of bounds below y (kvq_codebook_index's
// answer): a binary search over the ascending bounds, `bits` steps, each
// a compare with the middle bound of the current range [c, c + 2h): the
// first is the same for every lane (first), the others are picked by
// vpermps from tbs[s] = the bounds shifted down by h - 1 (h = 2^s), so
// the lane's c is the index as it is. NaN: every compare false, 0.
INL __m512i level_index(__m512 y, const __m512 *tbs, __m512 first, const int bits)
{
    const int h0 = 1 << (bits - 1);
    __m512i c = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(y, first, _CMP_GT_OQ), _mm512_set1_epi32(h0));
KVQ_UNROLL(4)
    for (int s = bits - 2; s >= 0; s--) {
        __m512 t = _mm512_permutexvar_ps(c, tbs[s]);
        c = _mm512_mask_add_epi32(c, _mm512_cmp_ps_mask(y, t, _CMP_GT_OQ), c, _mm512_set1_epi32(1 << s));
    }
    return c;
}

// Codes of 64 coordinates (4 registers of 16 in order) -> 8 * bits packed
// bytes at out, LSB first: to one byte per code in order (two packs, then
// vpermb undoes their per-lane interleave), then neighbours merged by
// multiply-adds (and for 3 bits a 64-bit shift), the result bytes compacted.
INL void pack64(__m512i c0, __m512i c1, __m512i c2, __m512i c3, uint8_t *out, const int bits)
{
    // byte 16 L + 4 z + e after the packs holds coordinate 16 z + 4 L + e
    static const uint8_t nat_ix[64] = {
        0, 1, 2, 3, 16, 17, 18, 19, 32, 33, 34, 35, 48, 49, 50, 51,
        4, 5, 6, 7, 20, 21, 22, 23, 36, 37, 38, 39, 52, 53, 54, 55,
        8, 9, 10, 11, 24, 25, 26, 27, 40, 41, 42, 43, 56, 57, 58, 59,
        12, 13, 14, 15, 28, 29, 30, 31, 44, 45, 46, 47, 60, 61, 62, 63};
    // bytes 0..2 of qword g at 3 g (3 bits)
    static const uint8_t ix3[64] = {0, 1, 2, 8, 9, 10, 16, 17, 18, 24, 25, 26, 32, 33, 34, 40, 41, 42, 48, 49, 50, 56, 57, 58};
    const __m512i nat = _mm512_loadu_si512(nat_ix);
    __m512i b = _mm512_packus_epi16(_mm512_packus_epi32(c0, c1), _mm512_packus_epi32(c2, c3));
    b = _mm512_permutexvar_epi8(nat, b);
    switch (bits) {
    case 1: {
        uint64_t m = _mm512_test_epi8_mask(b, b);
        memcpy(out, &m, 8);
        break;
    }
    case 2: {
        __m512i h = _mm512_maddubs_epi16(b, _mm512_set1_epi16(1 | 4 << 8));
        h = _mm512_madd_epi16(h, _mm512_set1_epi32(1 | 16 << 16));
        _mm_storeu_si128((__m128i *)(void *)out, _mm512_cvtepi32_epi8(h));
        break;
    }
    case 3: {
        __m512i h = _mm512_maddubs_epi16(b, _mm512_set1_epi16(1 | 8 << 8));   // 2 codes, 6 bits
        h = _mm512_madd_epi16(h, _mm512_set1_epi32(1 | 64 << 16));           // 4 codes, 12 bits
        h = _mm512_or_si512(h, _mm512_srli_epi64(h, 20));                    // 8 codes, 24 bits
        const __m512i ix = _mm512_loadu_si512(ix3);
        // the 24 bytes by a 16- and an 8-byte store
        __m256i o = _mm512_castsi512_si256(_mm512_permutexvar_epi8(ix, h));
        _mm_storeu_si128((__m128i *)(void *)out, _mm256_castsi256_si128(o));
        _mm_storel_epi64((__m128i *)(void *)(out + 16), _mm256_extracti128_si256(o, 1));
        break;
    }
    default: {
        __m512i h = _mm512_maddubs_epi16(b, _mm512_set1_epi16(1 | 16 << 8));
        _mm256_storeu_si256((__m256i *)(void *)out, _mm512_cvtepi16_epi8(h));
        break;
    }
    }
}

// m = d / 16, a constant where the dispatcher knows d (64, 128, 256).
// The steps and roundings of the AVX2 kernel (and so of the reference):
// signs, FWHT, times 1/sqrt(d), times 1/|x|, nearest level.
INL void encode_rows_h(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes, const int bits,
                       const int m)
{
    const int d = 16 * m, nb = (1 << bits) - 1;
    const size_t cb = tq_core_code_bytes(c);
    const float *sg = c->rot.signs;
    // tbs[s][i] = bound i + 2^s - 1 (the search never reads past bound nb - 1)
    __m512 tbs[3];
    for (int st = 0; st < 3; st++) {
        float tb[16];
        for (int k = 0; k < 16; k++) {
            int b = k + (1 << st) - 1;
            tb[k] = c->cb_lo.bounds[b < nb ? b : nb - 1];
        }
        tbs[st] = _mm512_loadu_ps(tb);
    }
    const __m512 first = _mm512_set1_ps(c->cb_lo.bounds[(1 << (bits - 1)) - 1]);
    const __m512 s = _mm512_set1_ps(1.0f / sqrtf((float)d));
    __m512 v[MAXZ];
    // |x| of row i + 1 while row i is rotated and quantized
    float norm_next = n ? row_norm(x, m) : 0.0f;
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * (size_t)d;
        float norm = norm_next, inv = norm > 0.0f ? 1.0f / norm : 0.0f;
        if (i + 1 < n) norm_next = row_norm(xi + d, m);
KVQ_UNROLL(16)
        for (int g = 0; g < m; g++) v[g] = _mm512_mul_ps(_mm512_loadu_ps(xi + 16 * g), _mm512_loadu_ps(sg + 16 * g));
        fwht_regs(v, m);
        const __m512 vi = _mm512_set1_ps(inv);
        uint8_t *r = rec + i * rec_bytes;
        if (bits == 3) {
            // the search's three compare masks are the code's bit planes
            // (bit 2, 1, 0 of 16 codes): pdep interleaves them into the 48
            // packed bits, on the integer units while the vector ones
            // rotate the next row; each 8-byte store's top 2 bytes are
            // overwritten by the next one (the last one's by the norm)
            const uint64_t m0 = 0x249249249249ull;
KVQ_UNROLL(16)
            for (int g = 0; g < m; g++) {
                __m512 y = _mm512_mul_ps(_mm512_mul_ps(v[g], s), vi);
                __mmask16 k2 = _mm512_cmp_ps_mask(y, first, _CMP_GT_OQ);
                __m512i ci = _mm512_maskz_mov_epi32(k2, _mm512_set1_epi32(4));
                __mmask16 k1 = _mm512_cmp_ps_mask(y, _mm512_permutexvar_ps(ci, tbs[1]), _CMP_GT_OQ);
                ci = _mm512_mask_add_epi32(ci, k1, ci, _mm512_set1_epi32(2));
                __mmask16 k0 = _mm512_cmp_ps_mask(y, _mm512_permutexvar_ps(ci, tbs[0]), _CMP_GT_OQ);
                uint64_t w = _pdep_u64(k0, m0) | _pdep_u64(k1, m0 << 1) | _pdep_u64(k2, m0 << 2);
                memcpy(r + 6 * (size_t)g, &w, 8);
            }
            tq_put_f16_fast(r + cb, norm);
            continue;
        }
KVQ_UNROLL(4)
        for (int g = 0; g < m; g += 4) {
            __m512i q[4];
KVQ_UNROLL(4)
            for (int u = 0; u < 4; u++)
                q[u] = level_index(_mm512_mul_ps(_mm512_mul_ps(v[g + u], s), vi), tbs, first, bits);
            pack64(q[0], q[1], q[2], q[3], r + (size_t)g * 2 * bits, bits);
        }
        tq_put_f16_fast(r + cb, norm);
    }
}

#define ENC_B(M)                                                   \
    switch (c->bits) {                                             \
    case 1: encode_rows_h(c, x, n, rec, rec_bytes, 1, M); break;   \
    case 2: encode_rows_h(c, x, n, rec, rec_bytes, 2, M); break;   \
    case 3: encode_rows_h(c, x, n, rec, rec_bytes, 3, M); break;   \
    default: encode_rows_h(c, x, n, rec, rec_bytes, 4, M); break;  \
    }

AVX512 void tq_encode_rows_avx512(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes)
{
    const int m = c->d / 16;
    if (!c->rot.hadamard || c->d % 64) {   // dense rotation or d % 64 != 0: AVX2's kernel
        tq_encode_rows_avx2(c, x, n, rec, rec_bytes);
        return;
    }
    if (m == 8) { ENC_B(8) }
    else if (m == 4) { ENC_B(4) }
    else if (m == 16) { ENC_B(16) }
    else { ENC_B(m) }
}

#else   // no x86: the dispatchers never call these
void tq_encode_rows_avx512(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes)
{ tq_encode_rows_avx2(c, x, n, rec, rec_bytes); }
void tq_score_rows_avx512(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                          size_t rec_bytes, size_t n, float *scores, size_t lds, bool perm)
{ tq_score_rows_avx2(c, qr, nq, rec, rec_bytes, n, scores, lds, perm); }
void tq_accumulate_rows_avx512(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                               const float *w, size_t ldw, int nq, float *acc, bool perm)
{ tq_accumulate_rows_avx2(c, rec, rec_bytes, n, w, ldw, nq, acc, perm); }
#endif
