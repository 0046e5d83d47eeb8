// methods/tq_i8.c — int8-query scoring of turboquant_mse keys (config
// query_int8; contract in tq_common.h). The rotated query is rounded to
// int8 with one scale per query (max |q_j| / 127), the way ggml rounds an
// attention query to q8_0 before its quantized-K dot products
// (ggml-cpu/ops.cpp ggml_compute_forward_flash_attn_ext_f16_one_chunk,
// vec_dot_type of the K type, llama.cpp 80fb11ac), and the codebook's
// levels are rounded to int8 with one scale per plan; the dot product of
// the two is then an exact int32 sum, so the scalar reference below (the
// spec) and the AVX512-VNNI kernel give the same integers and therefore
// the same float scores bit for bit.
//
// Why: a 3-bit key's 64-code set turns into 64 int8 levels with two byte
// permutes and one vpmultishiftqb and meets each query head in one
// vpdpbusd, where the float kernels pay a shift, a permute and an FMA per
// query head for every 16 codes.
#include <math.h>
#include <string.h>
#include "pack.h"
#include "simd.h"
#include "tq_common.h"
#include "tq_x86.h"

kvq_status tq_i8_levels_init(const tq_core *c, tq_i8_levels *l, const char *who)
{
    memset(l, 0, sizeof *l);
    if (c->n_hi || c->bits > 4)
        return kvq_error(KVQ_ERR_ARG, "%s: query_int8 needs bits <= 4 and outlier_channels 0 (found bits %d, %d outlier channels)",
                         who, c->bits, c->n_hi);
    const int n = c->cb_lo.n;
    float amax = 0.0f;
    for (int k = 0; k < n; k++) amax = fmaxf(amax, fabsf(c->cb_lo.levels[k]));
    l->scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    for (int k = 0; k < n; k++) {
        long v = lrintf(c->cb_lo.levels[k] / l->scale);
        l->lv[k] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    // the kernel's byte table: 64 entries (vpermb reads 6 index bits), the
    // levels repeated so the next codes' bits above a code change nothing,
    // offset by 128 to be vpdpbusd's unsigned operand
    for (int i = 0; i < 64; i++) {
        l->lut[i] = (uint8_t)(l->lv[i % n] + 128);
        l->gidx[i] = (uint8_t)((i / 8) * c->bits + i % 8);
        l->shift[i] = (uint8_t)((i % 8) * c->bits);
    }
    return KVQ_OK;
}

void tq_i8_quantize_query(const tq_core *c, const tq_i8_levels *l, const float *qr, tq_q8 *q)
{
    const int d = c->d;
    float amax = 0.0f;
    bool finite = true;
    for (int j = 0; j < d; j++) {
        if (!isfinite(qr[j])) finite = false;
        else amax = fmaxf(amax, fabsf(qr[j]));
    }
    float s = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < d; j++) {
        long v = finite ? lrintf(qr[j] * id) : 0;
        q->q[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        sum += q->q[j];
    }
    q->sum = sum;
    // a NaN or infinite query scores NaN (the float kernels: NaN or +-Inf)
    q->cq = finite ? s * l->scale : NAN;
}

void tq_i8_score_rows_ref(const tq_core *c, const tq_i8_levels *l, const tq_q8 *const *q, int nq,
                          const uint8_t *rec, size_t rec_bytes, size_t n, float *scores, size_t lds)
{
    const size_t cb = tq_core_code_bytes(c);
    uint8_t codes[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = rec + i * rec_bytes;
        kvq_unpack(r, (size_t)c->d, c->bits, codes);
        float norm = tq_get_f16(r + cb);
        for (int k = 0; k < nq; k++) {
            int32_t acc = 0;
            for (int j = 0; j < c->d; j++) acc += (int32_t)q[k]->q[j] * l->lv[codes[j]];
            scores[(size_t)k * lds + i] = (float)acc * q[k]->cq * norm;
        }
    }
}

#if KVQ_HAVE_X86
#include <immintrin.h>

#define VNNI KVQ_TARGET_AVX512VNNI
#define INL static inline __attribute__((always_inline)) VNNI

// The 64 codes of one 64-coordinate set (p: its first byte; 8 bits bytes)
// as 64 bytes in coordinate order, each code in its byte's low bits with
// the following codes' bits above it: qword g gets the set's bytes
// g bits .. g bits + 7 (vpermb of a masked load, which never reads past the
// set), and vpmultishiftqb takes byte t of qword g from bit t bits of it.
INL __m512i set_codes(const uint8_t *p, const int bits, __m512i gidx, __m512i shifts)
{
    const __mmask64 m = (1ull << (8 * bits)) - 1;
    __m512i g = _mm512_permutexvar_epi8(gidx, _mm512_maskz_loadu_epi8(m, p));
    return _mm512_multishift_epi64_epi8(shifts, g);
}

// Lane sums of 2, 4, 8 accumulators, 128-bit lane by lane: fold1(a, b) =
// [a0+a2, b0+b2, a1+a3, b1+b3] per lane, fold2 of two of those = the lane
// sums of 4 records, fold4 of two of those = [r0-3 (lanes 0+1), r0-3
// (2+3), r4-7 (0+1), r4-7 (2+3)], last8 the 8 record sums in order.
INL __m512i fold1(__m512i a, __m512i b)
{
    return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}
INL __m512i fold2(__m512i a, __m512i b)
{
    return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}
INL __m512i fold4(__m512i a, __m512i b)
{
    return _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, 0x88), _mm512_shuffle_i32x4(a, b, 0xDD));
}
INL __m256i last8(__m512i w)
{
    return _mm512_castsi512_si256(_mm512_add_epi32(_mm512_shuffle_i32x4(w, w, 0x08), _mm512_shuffle_i32x4(w, w, 0x0D)));
}

// The int32 dots of one record with nq queries: acc[k] (16 partial sums).
INL void record_dots(const uint8_t *r, const int nq, const int bits, const int sets, const __m512i *qv,
                     __m512i lut, __m512i gidx, __m512i shifts, __m512i *acc)
{
KVQ_UNROLL(4)
    for (int k = 0; k < nq; k++) acc[k] = _mm512_setzero_si512();
KVQ_UNROLL(4)
    for (int st = 0; st < sets; st++) {
        __m512i lev = _mm512_permutexvar_epi8(set_codes(r + (size_t)st * 8 * bits, bits, gidx, shifts), lut);
KVQ_UNROLL(4)
        for (int k = 0; k < nq; k++) acc[k] = _mm512_dpbusd_epi32(acc[k], lev, qv[k * sets + st]);
    }
}

INL void score_rows_t(const tq_core *c, const tq_i8_levels *l, const tq_q8 *const *q, const int nq,
                      const uint8_t *rec, size_t rec_bytes, size_t n, float *scores, size_t lds, const int bits,
                      const int sets)
{
    const size_t cb = tq_core_code_bytes(c);
    const __m512i lut = _mm512_loadu_si512(l->lut);
    const __m512i gidx = _mm512_loadu_si512(l->gidx), shifts = _mm512_loadu_si512(l->shift);
    __m512i qv[4 * (KVQ_MAX_HEAD_DIM / 64)];
    __m256i off[4];
    __m256 cq[4];
    for (int k = 0; k < nq; k++) {
        for (int st = 0; st < sets; st++) qv[k * sets + st] = _mm512_loadu_si512(q[k]->q + 64 * st);
        off[k] = _mm256_set1_epi32(128 * q[k]->sum);   // the +128 of the unsigned levels
        cq[k] = _mm256_set1_ps(q[k]->cq);
    }
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint8_t *r = rec + i * rec_bytes;
        __m512i u[2][4];
KVQ_UNROLL(2)
        for (int h = 0; h < 2; h++) {
            __m512i t[2][4];
KVQ_UNROLL(2)
            for (int pr = 0; pr < 2; pr++) {
                __m512i a[4], b[4];
                const uint8_t *r0 = r + (size_t)(4 * h + 2 * pr) * rec_bytes;
                record_dots(r0, nq, bits, sets, qv, lut, gidx, shifts, a);
                record_dots(r0 + rec_bytes, nq, bits, sets, qv, lut, gidx, shifts, b);
KVQ_UNROLL(4)
                for (int k = 0; k < nq; k++) t[pr][k] = fold1(a[k], b[k]);
            }
KVQ_UNROLL(4)
            for (int k = 0; k < nq; k++) u[h][k] = fold2(t[0][k], t[1][k]);
        }
        const __m256 nv = tq_norms8(r + cb, rec_bytes);
KVQ_UNROLL(4)
        for (int k = 0; k < nq; k++) {
            __m256i s = _mm256_sub_epi32(last8(fold4(u[0][k], u[1][k])), off[k]);
            _mm256_storeu_ps(scores + (size_t)k * lds + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s), cq[k]), nv));
        }
    }
    for (; i < n; i++) {
        const uint8_t *r = rec + i * rec_bytes;
        __m512i a[4];
        record_dots(r, nq, bits, sets, qv, lut, gidx, shifts, a);
        float norm = tq_get_f16(r + cb);
        for (int k = 0; k < nq; k++) {
            int32_t s = _mm512_reduce_add_epi32(a[k]) - 128 * q[k]->sum;
            scores[(size_t)k * lds + i] = (float)s * q[k]->cq * norm;
        }
    }
}

#define I8_S(NQ, B)                                                                        \
    switch (sets) {                                                                        \
    case 1: score_rows_t(c, l, q, NQ, rec, rec_bytes, n, scores, lds, B, 1); break;        \
    case 2: score_rows_t(c, l, q, NQ, rec, rec_bytes, n, scores, lds, B, 2); break;        \
    default: score_rows_t(c, l, q, NQ, rec, rec_bytes, n, scores, lds, B, 4); break;       \
    }
#define I8_B(NQ)                       \
    switch (c->bits) {                 \
    case 1: I8_S(NQ, 1) break;         \
    case 2: I8_S(NQ, 2) break;         \
    case 3: I8_S(NQ, 3) break;         \
    default: I8_S(NQ, 4) break;        \
    }

// d in {64, 128, 256}, bits 1..4, nq 1..4 (the dispatcher's cut)
VNNI static void score_rows_vnni(const tq_core *c, const tq_i8_levels *l, const tq_q8 *const *q, int nq,
                                 const uint8_t *rec, size_t rec_bytes, size_t n, float *scores, size_t lds)
{
    const int sets = c->d / 64;
    if (nq == 4) { I8_B(4) }
    else if (nq == 3) { I8_B(3) }
    else if (nq == 2) { I8_B(2) }
    else { I8_B(1) }
}
#endif

void tq_i8_score_rows(const tq_core *c, const tq_i8_levels *l, const tq_q8 *const *q, int nq,
                      const uint8_t *rec, size_t rec_bytes, size_t n, float *scores, size_t lds)
{
#if KVQ_HAVE_X86
    const int d = c->d;
    if (kvq_simd_vnni() && (d == 64 || d == 128 || d == 256) && c->bits <= 4 && !c->n_hi) {
        for (int q0 = 0; q0 < nq; q0 += 4)
            score_rows_vnni(c, l, q + q0, nq - q0 < 4 ? nq - q0 : 4, rec, rec_bytes, n, scores + (size_t)q0 * lds,
                            lds);
        return;
    }
#endif
    tq_i8_score_rows_ref(c, l, q, nq, rec, rec_bytes, n, scores, lds);
}
