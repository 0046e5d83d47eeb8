// methods/tq_common.h — what the three TurboQuant methods share: the
// rotation + per-coordinate scalar codebook core, seeds, and record helpers.
// Private to engine/methods/tq_*.c and turboquant_*.c.
//
// The core quantizes a vector already rotated into the random basis,
// coordinate by coordinate, with a scalar codebook:
//   y = R x / |x|  (d), each y_j -> code_j = nearest level of its codebook.
// Mixed channels (cfg->outlier_channels = c > 0): the FIRST c rotated
// coordinates use bits+1, the other d - c use bits. After a random rotation
// every coordinate has the same law, so which c get the extra bit does not
// matter; taking the first c is the fixed, documented rule. Rate:
// (c (bits+1) + (d - c) bits) / d code bits, e.g. d=128, c=32, bits=2 (the
// paper's 32 outlier channels at 3 bits + 96 at 2): 2.25, plus the norm.
// Packed codes: the c high-width codes (kvq_pack, LSB first), then the d - c
// low-width codes, each segment starting on a byte boundary.
#ifndef KVQ_TQ_COMMON_H
#define KVQ_TQ_COMMON_H
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include "f16.h"
#include "lloydmax.h"
#include "methods.h"
#include "rotate.h"

// kvq_rng_seed2 stream tags: the rotation and the QJL sketch of one plan
// never share randomness.
enum { TQ_STREAM_ROT = 0x524f54, TQ_STREAM_QJL = 0x514a4c, TQ_STREAM_RVQ = 0x525651 };

// Rows per chunk when encode/decode batch the rotation and the sketch.
// Kernels keep their scratch on the stack: at most TQ_CHUNK x
// (KVQ_MAX_HEAD_DIM + KVQ_MAX_SKETCH_DIM) floats + small arrays, ~84 KB
// (turboquant_prod encode/decode), so any thread with a >= 256 KB stack
// can run them.
#define TQ_CHUNK 16

typedef struct tq_core {
    int d;
    int bits;           // low width (the d - n_hi coordinates)
    int n_hi;           // coordinates at bits + 1 (0 = no mixing)
    kvq_rotation rot;
    kvq_codebook cb_lo, cb_hi;   // cb_hi only when n_hi > 0
    size_t hi_bytes, lo_bytes;   // packed segment sizes
    size_t lut_floats;           // n_hi 2^(bits+1) + (d - n_hi) 2^bits
    float lv_pad[16];            // cb_lo levels repeated to 16 entries (lv_pad[i] = level i % 2^bits),
                                 // the AVX2 kernels' in-register codebook
} tq_core;

// Seed for one purpose of one stream (layer, kv head, keys/values).
uint64_t tq_stream_seed(const kvq_plan_params *p, uint32_t tag);
// Common checks on head_dim and the rotation choice; `who` names the method.
kvq_status tq_check_dims(const kvq_plan_params *p, const char *who);
// The codebook of the rotated coordinates: Lloyd-Max (or the best uniform
// one when cfg->codebook is "uniform") for the exact Beta law of one
// coordinate of a random unit vector in dimension d.
kvq_status tq_codebook_for(const kvq_plan_params *p, int bits, kvq_codebook *cb, const char *who);
// bits 1..8 (n_hi > 0 needs bits <= 7); rotation seeded by tq_stream_seed(ROT).
kvq_status tq_core_init(tq_core *c, const kvq_plan_params *p, int bits, int n_hi,
                        const char *who);
void tq_core_free(tq_core *c);
static inline size_t tq_core_code_bytes(const tq_core *c) { return c->hi_bytes + c->lo_bytes; }
// y (d), rotated unit-scale coordinates -> packed (code_bytes); yhat (d)
// gets the reconstruction levels (may be NULL).
void tq_core_quantize(const tq_core *c, const float *y, uint8_t *packed, float *yhat);
// packed -> yhat (d) in the rotated basis.
void tq_core_dequantize(const tq_core *c, const uint8_t *packed, float *yhat);
// lut (lut_floats): lut[j][k] = qr_j * level_k, qr = R q (d).
void tq_core_build_lut(const tq_core *c, const float *qr, float *lut);
// sum_j lut[j][code_j] = qr . yhat, straight from the packed codes.
float tq_core_lut_dot(const tq_core *c, const float *lut, const uint8_t *packed);

// ---- row kernels of the turboquant_mse record [packed codes][fp16 |x|] ----
// Each dispatches to an AVX-512 kernel (tq_simd512.c) when kvq_simd_avx512(),
// else an AVX2 kernel (tq_simd.c) when kvq_simd_avx2(), and the core is
// "grouped"; else it runs its scalar reference (the _ref function, the
// spec; tests/test_simd.c compares the two). Encode and decode are
// bit-identical to their references; scores and accumulations agree to
// float rounding (FMA, 8 partial sums).
//
// Grouped: no mixed channels, bits 1..4, d % 8 == 0. Then coordinates
// 8g..8g+7 are exactly the `bits` bytes at offset g * bits of the packed
// codes (LSB first), so 8 codes are one little-endian word.
static inline bool tq_core_grouped(const tq_core *c)
{
    return c->n_hi == 0 && c->bits <= 4 && c->d % 8 == 0;
}
// |x| computed one fixed way: 16 double partial sums s (coordinate j into
// s[j % 16]), t_l = (s_l + s_l+8) + (s_l+4 + s_l+12), |x|^2 = (t0 + t2) +
// (t1 + t3): the AVX2 path's 4 independent chains, reproduced exactly.
float tq_norm(const float *x, int d);
// x: (n, d) -> rec: (n, rec_bytes), codes then the fp16 norm at code bytes.
void tq_core_encode_rows(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes);
void tq_core_encode_rows_ref(const tq_core *c, const float *x, size_t n, uint8_t *rec,
                             size_t rec_bytes);
// rec: (n, rec_bytes) -> x: (n, d), back in the original basis.
void tq_core_decode_rows(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n, float *x);
void tq_core_decode_rows_ref(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                             float *x);
// scores[q * lds + i] = |k_i| (qr[q] . yhat_i) for q < nq <= 8, i < n;
// qr[q]: (d) a rotated query R q. The reference sums in coordinate order,
// the same products as the LUT, so it equals tq_core_lut_dot exactly.
void tq_core_score_rows(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                        size_t rec_bytes, size_t n, float *scores, size_t lds);
void tq_core_score_rows_ref(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                            size_t rec_bytes, size_t n, float *scores, size_t lds);
// acc[q * d + j] += sum_i w[q * ldw + i] |v_i| yhat_i[j], q < nq <= 8: the
// softmax-weighted sum of values kept in the ROTATED basis (one inverse
// rotation per query at the very end instead of one per value vector).
void tq_core_accumulate_rows(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                             const float *w, size_t ldw, int nq, float *acc);
void tq_core_accumulate_rows_ref(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                                 const float *w, size_t ldw, int nq, float *acc);

// The AVX2 kernels' coordinate order when d % 64 == 0 ("permuted"): entry
// 64 s + 8 k + g holds coordinate 64 s + 8 g + k, so 8 lanes = code k of
// 8 groups. Queries prepared once in that order and accumulators kept in it
// for a whole attention spare a transposition per block of tokens.
// tq_core_permuted: the fast kernels run and use it (grouped, AVX2, d % 64);
// the AVX-512 kernels use the same order (a zmm = codes k, k + 1 of 8 groups).
bool tq_core_permuted(const tq_core *c);
void tq_permute(int d, const float *x, float *xp);     // natural -> permuted (d % 64 == 0)
void tq_unpermute(int d, const float *xp, float *x);   // permuted -> natural
// The same as tq_core_score_rows / tq_core_accumulate_rows with qp and acc
// in the permuted order; only when tq_core_permuted(c).
void tq_core_score_rows_p(const tq_core *c, const float *const *qp, int nq, const uint8_t *rec,
                          size_t rec_bytes, size_t n, float *scores, size_t lds);
void tq_core_accumulate_rows_p(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                               const float *w, size_t ldw, int nq, float *accp);

// AVX2 kernels (tq_simd.c); only called when kvq_simd_avx2() && tq_core_grouped().
// perm: q / acc are in the permuted order (requires d % 64 == 0).
void tq_encode_rows_avx2(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes);
void tq_decode_rows_avx2(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n, float *x);
void tq_score_rows_avx2(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                        size_t rec_bytes, size_t n, float *scores, size_t lds, bool perm);
void tq_accumulate_rows_avx2(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                             const float *w, size_t ldw, int nq, float *acc, bool perm);
float tq_norm_avx2(const float *x, int d);
// AVX-512 kernels (tq_simd512.c); only called when kvq_simd_avx512() &&
// tq_core_grouped(). Same contract and permuted order as the AVX2 ones;
// shapes they do not cover (d % 64 != 0; encode: a dense rotation) run the
// AVX2 kernel.
void tq_encode_rows_avx512(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes);
void tq_score_rows_avx512(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                          size_t rec_bytes, size_t n, float *scores, size_t lds, bool perm);
void tq_accumulate_rows_avx512(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                               const float *w, size_t ldw, int nq, float *acc, bool perm);
// Hadamard rotations with d / 8 a power of two (tq_core_fast_rotation).
void tq_rotate_avx2(const tq_core *c, const float *x, float *y, bool transpose);

// y = R x / x = R^T y of one vector, bit-identical to kvq_rotation_apply /
// kvq_rotation_apply_t; in registers (tq_rotate_avx2) for a Hadamard
// rotation whose d / 8 is a power of two, when kvq_simd_avx2().
void tq_core_rotate(const tq_core *c, const float *x, float *y);
void tq_core_rotate_t(const tq_core *c, const float *y, float *x);

// ---- int8-query scoring (tq_i8.c): config query_int8, turboquant_mse keys ----
// score(k) = |k| (s_q s_L) sum_j q8_j L8[code_j], the sum exact in int32:
// q8 = round(R q / s_q), s_q = max_j |(R q)_j| / 127 (one scale per query,
// as ggml's q8_0 query); L8 = round(level / s_L), s_L = max |level| / 127.
// Needs bits <= 4 and no mixed channels (n_hi == 0).
typedef struct tq_i8_levels {
    float scale;       // s_L
    int8_t lv[16];     // L8 of the codebook's levels
    uint8_t lut[64];   // lv[i % levels] + 128: the VNNI kernel's byte table
    uint8_t gidx[64];  // the kernel's code spread: byte 8 g + t <- set byte g bits + t
    uint8_t shift[64]; // and its cut: byte 8 g + t from bit t bits of qword g
} tq_i8_levels;
typedef struct tq_q8 {
    float cq;                     // s_q s_L (NaN for a query with a NaN or Inf)
    int32_t sum;                  // sum_j q8_j
    int8_t q[KVQ_MAX_HEAD_DIM];   // (d) natural rotated order
} tq_q8;
kvq_status tq_i8_levels_init(const tq_core *c, tq_i8_levels *l, const char *who);
// qr (d): a rotated query R q, natural order.
void tq_i8_quantize_query(const tq_core *c, const tq_i8_levels *l, const float *qr, tq_q8 *q);
// scores[k * lds + i] for k < nq queries, i < n records. AVX512-VNNI kernel
// when kvq_simd_vnni() and d is 64, 128 or 256, else the reference; the two
// are bit-identical (the same int32 sums, then the same two products).
void tq_i8_score_rows(const tq_core *c, const tq_i8_levels *l, const tq_q8 *const *q, int nq,
                      const uint8_t *rec, size_t rec_bytes, size_t n, float *scores, size_t lds);
void tq_i8_score_rows_ref(const tq_core *c, const tq_i8_levels *l, const tq_q8 *const *q, int nq,
                          const uint8_t *rec, size_t rec_bytes, size_t n, float *scores, size_t lds);

// Norms are stored as IEEE fp16 (2 bytes, unaligned, little-endian).
static inline void tq_put_f16(uint8_t *dst, float v)
{
    uint16_t h = kvq_f32_to_f16(v > 65504.0f ? 65504.0f : v);
    dst[0] = (uint8_t)h;
    dst[1] = (uint8_t)(h >> 8);
}
static inline float tq_get_f16(const uint8_t *src)
{
    return kvq_f16_to_f32((uint16_t)(src[0] | (src[1] << 8)));
}
#endif
