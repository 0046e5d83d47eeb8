// methods/tq_common.c — the rotation + scalar-codebook core shared by the
// TurboQuant methods (contract in tq_common.h).
#include <math.h>
#include <string.h>
#include "pack.h"
#include "rng.h"
#include "simd.h"
#include "tq_common.h"

uint64_t tq_stream_seed(const kvq_plan_params *p, uint32_t tag)
{
    // One independent stream per (purpose, layer, kv head, keys/values).
    uint64_t stream = ((uint64_t)tag << 32) ^ ((uint64_t)(uint32_t)p->layer << 17) ^
                      ((uint64_t)(uint32_t)p->kv_head << 1) ^ (uint64_t)(p->is_value ? 1 : 0);
    kvq_rng r;
    kvq_rng_seed2(&r, p->cfg ? p->cfg->seed : 0, stream);
    return kvq_rng_u64(&r);
}

kvq_status tq_check_dims(const kvq_plan_params *p, const char *who)
{
    int d = p->head_dim;
    if (d < 8 || d > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_ARG, "%s: head_dim %d out of range (expected 8..%d)", who, d,
                         KVQ_MAX_HEAD_DIM);
    bool had = p->cfg && p->cfg->use_hadamard;
    if (had && (d & (d - 1)))
        return kvq_error(KVQ_ERR_ARG,
                         "%s: use_hadamard needs head_dim a power of two, found %d "
                         "(set use_hadamard=false for a dense rotation)", who, d);
    return KVQ_OK;
}

kvq_status tq_codebook_for(const kvq_plan_params *p, int bits, kvq_codebook *cb, const char *who)
{
    const char *kind = p->cfg && p->cfg->codebook[0] ? p->cfg->codebook : "lloyd_max";
    kvq_status s;
    if (strcmp(kind, "lloyd_max") == 0)
        s = kvq_lloydmax_solve(cb, KVQ_DENSITY_BETA, (double)p->head_dim, bits);
    else if (strcmp(kind, "uniform") == 0)
        s = kvq_uniform_solve(cb, KVQ_DENSITY_BETA, (double)p->head_dim, bits);
    else
        return kvq_error(KVQ_ERR_ARG, "%s: codebook '%s' unknown (expected lloyd_max or uniform)",
                         who, kind);
    return s;
}

kvq_status tq_core_init(tq_core *c, const kvq_plan_params *p, int bits, int n_hi, const char *who)
{
    memset(c, 0, sizeof *c);
    kvq_status s = tq_check_dims(p, who);
    if (s) return s;
    const int d = p->head_dim;
    if (bits < 1 || bits > 8)
        return kvq_error(KVQ_ERR_ARG, "%s: bits per coordinate %d out of range (expected 1..8)",
                         who, bits);
    if (n_hi < 0 || n_hi > d)
        return kvq_error(KVQ_ERR_ARG, "%s: outlier_channels %d out of range (expected 0..%d)", who,
                         n_hi, d);
    if (n_hi > 0 && bits + 1 > 8)
        return kvq_error(KVQ_ERR_ARG,
                         "%s: outlier_channels needs bits+1 <= 8, found bits %d (expected <= 7)",
                         who, bits);
    c->d = d;
    c->bits = bits;
    c->n_hi = n_hi;
    if ((s = tq_codebook_for(p, bits, &c->cb_lo, who))) return s;
    if (n_hi > 0 && (s = tq_codebook_for(p, bits + 1, &c->cb_hi, who))) return s;
    for (int i = 0; i < 16; i++) c->lv_pad[i] = c->cb_lo.levels[i % c->cb_lo.n];
    c->hi_bytes = kvq_pack_bytes((size_t)n_hi, bits + 1);
    c->lo_bytes = kvq_pack_bytes((size_t)(d - n_hi), bits);
    c->lut_floats = ((size_t)n_hi << (bits + 1)) + ((size_t)(d - n_hi) << bits);
    bool had = p->cfg && p->cfg->use_hadamard;
    return kvq_rotation_new(&c->rot, d, had, tq_stream_seed(p, TQ_STREAM_ROT));
}

void tq_core_free(tq_core *c)
{
    kvq_rotation_free(&c->rot);
    memset(c, 0, sizeof *c);
}

void tq_core_quantize(const tq_core *c, const float *y, uint8_t *packed, float *yhat)
{
    uint8_t codes[KVQ_MAX_HEAD_DIM];
    const int d = c->d, nh = c->n_hi;
    for (int j = 0; j < nh; j++) codes[j] = (uint8_t)kvq_codebook_index(&c->cb_hi, y[j]);
    for (int j = nh; j < d; j++) codes[j] = (uint8_t)kvq_codebook_index(&c->cb_lo, y[j]);
    if (nh) kvq_pack(codes, (size_t)nh, c->bits + 1, packed);
    kvq_pack(codes + nh, (size_t)(d - nh), c->bits, packed + c->hi_bytes);
    if (yhat) {
        for (int j = 0; j < nh; j++) yhat[j] = c->cb_hi.levels[codes[j]];
        for (int j = nh; j < d; j++) yhat[j] = c->cb_lo.levels[codes[j]];
    }
}

static void core_unpack(const tq_core *c, const uint8_t *packed, uint8_t *codes)
{
    if (c->n_hi) kvq_unpack(packed, (size_t)c->n_hi, c->bits + 1, codes);
    kvq_unpack(packed + c->hi_bytes, (size_t)(c->d - c->n_hi), c->bits, codes + c->n_hi);
}

void tq_core_dequantize(const tq_core *c, const uint8_t *packed, float *yhat)
{
    uint8_t codes[KVQ_MAX_HEAD_DIM];
    core_unpack(c, packed, codes);
    for (int j = 0; j < c->n_hi; j++) yhat[j] = c->cb_hi.levels[codes[j]];
    for (int j = c->n_hi; j < c->d; j++) yhat[j] = c->cb_lo.levels[codes[j]];
}

void tq_core_build_lut(const tq_core *c, const float *qr, float *lut)
{
    const int nh = c->n_hi, kh = c->cb_hi.n, kl = c->cb_lo.n;
    for (int j = 0; j < nh; j++, lut += kh)
        for (int k = 0; k < kh; k++) lut[k] = qr[j] * c->cb_hi.levels[k];
    for (int j = nh; j < c->d; j++, lut += kl)
        for (int k = 0; k < kl; k++) lut[k] = qr[j] * c->cb_lo.levels[k];
}

// Widths 1, 2, 4, 8 with no mixed channels (the common case): gather straight
// from the packed bytes, no code array. Same sum, same order as the generic path.
static float lut_dot_div8(const float *lut, const uint8_t *packed, int d, int bits)
{
    const int per = 8 / bits, kl = 1 << bits;
    const unsigned mask = (unsigned)kl - 1u;
    float acc = 0.0f;
    for (int j0 = 0; j0 < d; j0 += per) {
        unsigned v = packed[j0 / per];
        for (int k = 0; k < per; k++, lut += kl) acc += lut[(v >> (k * bits)) & mask];
    }
    return acc;
}

float tq_core_lut_dot(const tq_core *c, const float *lut, const uint8_t *packed)
{
    if (c->n_hi == 0 && (c->bits == 1 || c->bits == 2 || c->bits == 4 || c->bits == 8) &&
        c->d % (8 / c->bits) == 0)
        return lut_dot_div8(lut, packed, c->d, c->bits);
    uint8_t codes[KVQ_MAX_HEAD_DIM];
    core_unpack(c, packed, codes);
    const int nh = c->n_hi, kh = c->cb_hi.n, kl = c->cb_lo.n;
    float acc = 0.0f;
    for (int j = 0; j < nh; j++, lut += kh) acc += lut[codes[j]];
    for (int j = nh; j < c->d; j++, lut += kl) acc += lut[codes[j]];
    return acc;
}

// ---- row kernels: scalar references and dispatch (contract in tq_common.h) ----
float tq_norm(const float *x, int d)
{
    double s[16] = {0}, t[4];
    for (int j = 0; j < d; j++) s[j & 15] += (double)x[j] * x[j];
    for (int l = 0; l < 4; l++) t[l] = (s[l] + s[l + 8]) + (s[l + 4] + s[l + 12]);
    return (float)sqrt((t[0] + t[2]) + (t[1] + t[3]));
}

void tq_core_encode_rows_ref(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes)
{
    const int d = c->d;
    const size_t cb = tq_core_code_bytes(c);
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];   // (chunk, d) rotated rows
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t m = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        // Rotation is linear: rotate x and scale by 1/|x| afterwards.
        kvq_rotation_apply_batch(&c->rot, x + i0 * d, y, m);
        for (size_t i = 0; i < m; i++) {
            float *yi = y + i * d;
            float norm = tq_norm(x + (i0 + i) * d, d), inv = norm > 0.0f ? 1.0f / norm : 0.0f;
            for (int j = 0; j < d; j++) yi[j] *= inv;
            uint8_t *r = rec + (i0 + i) * rec_bytes;
            tq_core_quantize(c, yi, r, NULL);
            tq_put_f16(r + cb, norm);
        }
    }
}

void tq_core_decode_rows_ref(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n, float *x)
{
    const int d = c->d;
    const size_t cb = tq_core_code_bytes(c);
    float y[TQ_CHUNK * KVQ_MAX_HEAD_DIM];
    for (size_t i0 = 0; i0 < n; i0 += TQ_CHUNK) {
        size_t m = n - i0 < TQ_CHUNK ? n - i0 : TQ_CHUNK;
        for (size_t i = 0; i < m; i++) {
            const uint8_t *r = rec + (i0 + i) * rec_bytes;
            float norm = tq_get_f16(r + cb);
            tq_core_dequantize(c, r, y + i * d);
            for (int j = 0; j < d; j++) y[i * d + j] *= norm;
        }
        kvq_rotation_apply_t_batch(&c->rot, y, x + i0 * d, m);
    }
}

void tq_core_score_rows_ref(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                            size_t rec_bytes, size_t n, float *scores, size_t lds)
{
    const size_t cb = tq_core_code_bytes(c);
    float yhat[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = rec + i * rec_bytes;
        tq_core_dequantize(c, r, yhat);
        float norm = tq_get_f16(r + cb);
        for (int q = 0; q < nq; q++) {
            float acc = 0.0f;
            for (int j = 0; j < c->d; j++) acc += qr[q][j] * yhat[j];
            scores[(size_t)q * lds + i] = norm * acc;
        }
    }
}

void tq_core_accumulate_rows_ref(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                                 const float *w, size_t ldw, int nq, float *acc)
{
    const size_t cb = tq_core_code_bytes(c);
    const int d = c->d;
    float yhat[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = rec + i * rec_bytes;
        tq_core_dequantize(c, r, yhat);
        float norm = tq_get_f16(r + cb);
        for (int q = 0; q < nq; q++) {
            float wn = w[(size_t)q * ldw + i] * norm;
            if (wn == 0.0f) continue;   // masked positions
            float *a = acc + (size_t)q * d;
            for (int j = 0; j < d; j++) a[j] += wn * yhat[j];
        }
    }
}

void tq_core_encode_rows(const tq_core *c, const float *x, size_t n, uint8_t *rec, size_t rec_bytes)
{
    if (tq_core_grouped(c) && kvq_simd_avx512()) tq_encode_rows_avx512(c, x, n, rec, rec_bytes);
    else if (tq_core_grouped(c) && kvq_simd_avx2()) tq_encode_rows_avx2(c, x, n, rec, rec_bytes);
    else tq_core_encode_rows_ref(c, x, n, rec, rec_bytes);
}

void tq_core_decode_rows(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n, float *x)
{
    if (tq_core_grouped(c) && kvq_simd_avx2()) tq_decode_rows_avx2(c, rec, rec_bytes, n, x);
    else tq_core_decode_rows_ref(c, rec, rec_bytes, n, x);
}

void tq_core_score_rows(const tq_core *c, const float *const *qr, int nq, const uint8_t *rec,
                        size_t rec_bytes, size_t n, float *scores, size_t lds)
{
    if (tq_core_grouped(c) && kvq_simd_avx512()) tq_score_rows_avx512(c, qr, nq, rec, rec_bytes, n, scores, lds, false);
    else if (tq_core_grouped(c) && kvq_simd_avx2()) tq_score_rows_avx2(c, qr, nq, rec, rec_bytes, n, scores, lds, false);
    else tq_core_score_rows_ref(c, qr, nq, rec, rec_bytes, n, scores, lds);
}

void tq_core_accumulate_rows(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                             const float *w, size_t ldw, int nq, float *acc)
{
    if (tq_core_grouped(c) && kvq_simd_avx512()) tq_accumulate_rows_avx512(c, rec, rec_bytes, n, w, ldw, nq, acc, false);
    else if (tq_core_grouped(c) && kvq_simd_avx2()) tq_accumulate_rows_avx2(c, rec, rec_bytes, n, w, ldw, nq, acc, false);
    else tq_core_accumulate_rows_ref(c, rec, rec_bytes, n, w, ldw, nq, acc);
}

static bool fast_rotation(const tq_core *c)
{
    const int m = c->d / 8;
    return c->rot.hadamard && c->d % 8 == 0 && (m & (m - 1)) == 0 && kvq_simd_avx2();
}

void tq_core_rotate(const tq_core *c, const float *x, float *y)
{
    if (fast_rotation(c)) tq_rotate_avx2(c, x, y, false);
    else kvq_rotation_apply(&c->rot, x, y);
}

void tq_core_rotate_t(const tq_core *c, const float *y, float *x)
{
    if (fast_rotation(c)) tq_rotate_avx2(c, y, x, true);
    else kvq_rotation_apply_t(&c->rot, y, x);
}

bool tq_core_permuted(const tq_core *c)
{
    return tq_core_grouped(c) && c->d % 64 == 0 && kvq_simd_avx2();
}

void tq_permute(int d, const float *x, float *xp)
{
    for (int s = 0; s < d; s += 64)
        for (int k = 0; k < 8; k++)
            for (int g = 0; g < 8; g++) xp[s + 8 * k + g] = x[s + 8 * g + k];
}

void tq_unpermute(int d, const float *xp, float *x)
{
    for (int s = 0; s < d; s += 64)
        for (int k = 0; k < 8; k++)
            for (int g = 0; g < 8; g++) x[s + 8 * g + k] = xp[s + 8 * k + g];
}

void tq_core_score_rows_p(const tq_core *c, const float *const *qp, int nq, const uint8_t *rec,
                          size_t rec_bytes, size_t n, float *scores, size_t lds)
{
    if (kvq_simd_avx512()) tq_score_rows_avx512(c, qp, nq, rec, rec_bytes, n, scores, lds, true);
    else tq_score_rows_avx2(c, qp, nq, rec, rec_bytes, n, scores, lds, true);
}

void tq_core_accumulate_rows_p(const tq_core *c, const uint8_t *rec, size_t rec_bytes, size_t n,
                               const float *w, size_t ldw, int nq, float *accp)
{
    if (kvq_simd_avx512()) tq_accumulate_rows_avx512(c, rec, rec_bytes, n, w, ldw, nq, accp, true);
    else tq_accumulate_rows_avx2(c, rec, rec_bytes, n, w, ldw, nq, accp, true);
}
