// methods/tom_turbo.c — the KV cache types turbo2, turbo3 and turbo4 of the
// TurboQuant fork of llama.cpp (github.com/TheTom/llama-cpp-turboquant,
// branch feature/turboquant-kv-cache, read at 69d8e4be47243e83b3d0d71e932bc7aa61c644dc),
// `-ctk turboN -ctv turboN`, byte for byte as its CPU backend writes them.
//
// What the fork does (file:line at that commit):
// - src/llama-kv-cache.cpp:329-356, 1459-1467, 1514-1521: a head whose
//   head_dim is not a multiple of 128 is zero-padded (ggml_pad, zeros at the
//   end) to the next multiple of 128, and SET_ROWS gets WHT group 128 in
//   op_params (:1494-1498, :1545-1549), which ggml-cpu/ops.cpp:4951-4956
//   hands the quantizer (the CPU from_float, ggml-cpu.c:420-437).
// - ggml/src/ggml-turbo-quant.c quantize_row_turbo{3,2,4}_0_ref (:272-334,
//   :369-425, :457-566, TURBO4_USE_4BIT = 1 by ggml-common.h:301-303): per
//   group of 128, norm = sqrtf(sum x^2) (in order, f32), x *= 1/norm (0
//   when norm <= 1e-10), forward WHT (turbo_cpu_fwht :216-238: signs s1,
//   unnormalized butterfly, then x *= 0.08838834764831845f * s2; signs at
//   :200-212), nearest centroid by the fork's literal midpoints (:158-191),
//   and the stored norm is norm / ||chosen centroids|| (f16), so a block
//   decodes to the input's L2 norm up to the f16 rounding.
// - dequantize_row_turbo{3,2,4}_0 (:336-349, :427-437, :568-594) returns
//   centroid * norm in the rotated domain; the graph rotates Q forward
//   (llama-graph.cpp:2254-2265) and un-rotates the attention output
//   (:1983-1993) with GGML_OP_TURBO_WHT (ggml-cpu/ops.cpp:10652-10733,
//   InnerQ scale all ones, llama-kv-cache.cpp:443-447). decode here is that
//   inverse applied to the dequantized block (s2, butterfly, x *
//   (1/sqrtf(128)) * s1), then the padding dropped; score is the CPU path
//   (ggml-cpu.c:3379-3399): the forward-rotated query dotted, in order,
//   with centroid * norm.
//
// Block layouts (ggml-common.h:280-345), 128 values each, little-endian:
//   turbo2 (34 bytes, 2.125 bits): f16 norm, qs[32]: value j's 2-bit index
//          at bits 2(j%4) of qs[j/4]; centroids {+-0.039994, +-0.133462}.
//   turbo3 (50 bytes, 3.125 bits): f16 norm, qs[32] (low 2 bits of the
//          3-bit index, as turbo2), signs[16] (bit 2 of value j at bit j%8
//          of signs[j/8]); 8 centroids ("Lloyd-Max for N(0, 1/128)").
//   turbo4 (68 bytes, 4.25 bits): f16 norm, f16 rnorm (written 0: the
//          4-bit mode has no QJL residual), qs[64]: value j's nibble at bits
//          4(j%2) of qs[j/2]; 16 centroids.
// A record is ceil(head_dim / 128) blocks back to back: the padded head's
// ggml row. The signs are constants of the format: no side tables.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "methods.h"

#define TT_QK 128

typedef struct {
    const char *name;
    int idx_bits;             // bits of one index
    size_t block_bytes;
    size_t qs_off, hi_off;    // low-bits plane; plane of bit 2 (0 = none)
    int qs_bits;              // bits per value in the qs plane
    bool zero_tiny;           // norm <= 1e-10: zeros (turbo4) or x * 0 (turbo2/3)
    const float *centroid;    // 2^idx_bits, ascending
    const float *mid;         // 2^idx_bits - 1 thresholds, value < mid[i] -> i
} tt_format;

// ggml-turbo-quant.c:35, :38-41, :489-494 (the same table again at :578-583).
static const float tt_c2[4] = {-0.133462f, -0.039994f, 0.039994f, 0.133462f};
static const float tt_c3[8] = {-0.190685f, -0.117832f, -0.065717f, -0.021460f,
                               0.021460f,  0.065717f,  0.117832f,  0.190685f};
static const float tt_c4[16] = {-0.173926f, -0.117195f, -0.089527f, -0.068756f, -0.051262f, -0.035597f,
                                -0.020989f, -0.006938f, 0.006938f,  0.020989f,  0.035597f,  0.051262f,
                                0.068756f,  0.089527f,  0.117195f,  0.173926f};
// nearest_centroid_{2,3,4}bit (:158-191): the fork's own rounded midpoints.
static const float tt_m2[3] = {-0.086728f, 0.0f, 0.086728f};
static const float tt_m3[7] = {-0.154259f, -0.091775f, -0.043589f, 0.0f, 0.043589f, 0.091775f, 0.154259f};
static const float tt_m4[15] = {-0.145560f, -0.103361f, -0.079142f, -0.060009f, -0.043430f,
                                -0.028293f, -0.013963f, 0.0f,       0.013963f,  0.028293f,
                                0.043430f,  0.060009f,  0.079142f,  0.103361f,  0.145560f};

static const tt_format tt_formats[] = {
    {.name = "tomturbo:turbo2", .idx_bits = 2, .block_bytes = 34, .qs_off = 2, .hi_off = 0, .qs_bits = 2,
     .zero_tiny = false, .centroid = tt_c2, .mid = tt_m2},
    {.name = "tomturbo:turbo3", .idx_bits = 3, .block_bytes = 50, .qs_off = 2, .hi_off = 34, .qs_bits = 2,
     .zero_tiny = false, .centroid = tt_c3, .mid = tt_m3},
    {.name = "tomturbo:turbo4", .idx_bits = 4, .block_bytes = 68, .qs_off = 4, .hi_off = 0, .qs_bits = 4,
     .zero_tiny = true, .centroid = tt_c4, .mid = tt_m4},
};

// turbo_cpu_s1 / turbo_cpu_s2 (ggml-turbo-quant.c:200-212, the same as
// ops.cpp:10649-10650), bit i = 1 where the sign is -1.
static const uint64_t tt_s1_neg[2] = {0x42f85949e46a0359ULL, 0x49f250a9a4c63bbbULL};
static const uint64_t tt_s2_neg[2] = {0x3f628fdc16acee90ULL, 0xbea56562b7a5357aULL};

static inline float tt_sign(const uint64_t *neg, int i, float v)
{
    return (neg[i >> 6] >> (i & 63) & 1) ? -v : v;
}

// The unnormalized butterfly both directions share (h = 1, 2, ..., 64).
static void tt_butterfly(float *x)
{
    for (int h = 1; h < TT_QK; h *= 2)
        for (int i = 0; i < TT_QK; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}

// The WHT of both the quantizer (turbo_cpu_fwht, forward) and the graph
// (GGML_OP_TURBO_WHT on the CPU, ops.cpp:10652-10733, group 128, InnerQ
// scale all ones): forward signs s1, butterfly, then x * c * s2; inverse s2
// first and s1 last. The quantizer's literal c = 0.08838834764831845f and
// the op's 1.0f / sqrtf(128) are the same float (0x3db504f3), and sign flips
// are exact, so one function serves both.
static void tt_wht(float *x, int inverse)
{
    const float c = 1.0f / sqrtf((float)TT_QK);
    const uint64_t *first = inverse ? tt_s2_neg : tt_s1_neg, *second = inverse ? tt_s1_neg : tt_s2_neg;
    for (int i = 0; i < TT_QK; i++) x[i] = tt_sign(first, i, x[i]);
    tt_butterfly(x);
    for (int i = 0; i < TT_QK; i++) x[i] = tt_sign(second, i, x[i] * c);
}

typedef struct {
    int d, nblk;
    const tt_format *f;
} tt_plan;

static kvq_status tt_plan_new(const kvq_plan_params *pp, const tt_format *f, void **plan)
{
    *plan = NULL;
    if (pp->head_dim <= 0 || pp->head_dim > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_ARG, "%s: head_dim %d out of range (expected 1..%d)", f->name, pp->head_dim,
                         KVQ_MAX_HEAD_DIM);
    tt_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", f->name);
    p->d = pp->head_dim;
    p->nblk = (pp->head_dim + TT_QK - 1) / TT_QK;
    p->f = f;
    *plan = p;
    return KVQ_OK;
}

static size_t tt_bpv(const void *plan)
{
    const tt_plan *p = plan;
    return p->f->block_bytes * (size_t)p->nblk;
}

static int tt_index(const tt_format *f, float v)
{
    const int n = (1 << f->idx_bits) - 1;
    for (int i = 0; i < n; i++)
        if (v < f->mid[i]) return i;
    return n;
}

static int tt_get(const tt_format *f, const uint8_t *blk, int j)
{
    const int qb = f->qs_bits, pos = j * qb;
    int idx = blk[f->qs_off + (size_t)(pos >> 3)] >> (pos & 7) & ((1 << qb) - 1);
    if (f->hi_off) idx |= (blk[f->hi_off + (size_t)(j >> 3)] >> (j & 7) & 1) << qb;
    return idx;
}

// x: (128) values of one padded group -> blk: (block_bytes).
static void tt_quantize_block(const tt_format *f, const float *x, uint8_t *blk)
{
    float buf[TT_QK], norm_sq = 0.0f;
    for (int j = 0; j < TT_QK; j++) norm_sq += x[j] * x[j];
    const float norm = sqrtf(norm_sq);
    if (f->zero_tiny && !(norm > 1e-10f)) {
        memset(buf, 0, sizeof buf);
    } else {
        const float inv = norm > 1e-10f ? 1.0f / norm : 0.0f;
        for (int j = 0; j < TT_QK; j++) buf[j] = x[j] * inv;
    }
    tt_wht(buf, 0);
    memset(blk, 0, f->block_bytes);
    float recon_sq = 0.0f;
    for (int j = 0; j < TT_QK; j++) {
        const int idx = tt_index(f, buf[j]), qb = f->qs_bits, pos = j * qb;
        blk[f->qs_off + (size_t)(pos >> 3)] |= (uint8_t)((idx & ((1 << qb) - 1)) << (pos & 7));
        if (f->hi_off && (idx >> qb & 1)) blk[f->hi_off + (size_t)(j >> 3)] |= (uint8_t)(1u << (j & 7));
        recon_sq += f->centroid[idx] * f->centroid[idx];
    }
    const float recon = sqrtf(recon_sq);
    kvq_f16_store(blk, recon > 1e-10f ? norm / recon : norm);   // turbo4's rnorm stays 0
}

// blk -> y: (128) centroid * norm, still rotated (the fork's to_float).
static void tt_dequantize_block(const tt_format *f, const uint8_t *blk, float *y)
{
    const float norm = kvq_f16_load(blk);
    for (int j = 0; j < TT_QK; j++) y[j] = f->centroid[tt_get(f, blk, j)] * norm;
}

static void tt_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const tt_plan *p = plan;
    const size_t bpv = tt_bpv(plan);
    float g[TT_QK];
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < p->nblk; b++) {
            const int lo = b * TT_QK, len = p->d - lo < TT_QK ? p->d - lo : TT_QK;
            memcpy(g, x + i * (size_t)p->d + lo, sizeof(float) * (size_t)len);
            memset(g + len, 0, sizeof(float) * (size_t)(TT_QK - len));   // ggml_pad's zeros
            tt_quantize_block(p->f, g, codes + i * bpv + (size_t)b * p->f->block_bytes);
        }
}

static void tt_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const tt_plan *p = plan;
    const size_t bpv = tt_bpv(plan);
    float g[TT_QK];
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < p->nblk; b++) {
            const int lo = b * TT_QK, len = p->d - lo < TT_QK ? p->d - lo : TT_QK;
            tt_dequantize_block(p->f, codes + i * bpv + (size_t)b * p->f->block_bytes, g);
            tt_wht(g, 1);
            memcpy(x + i * (size_t)p->d + lo, g, sizeof(float) * (size_t)len);
        }
}

static size_t tt_query_bytes(const void *plan)
{
    return sizeof(float) * TT_QK * (size_t)((const tt_plan *)plan)->nblk;
}

// qs: (nblk x 128) floats, the zero-padded query rotated as the graph does.
static void tt_prepare_query(const void *plan, const float *q, void *qs)
{
    const tt_plan *p = plan;
    float *r = qs;
    for (int b = 0; b < p->nblk; b++) {
        const int lo = b * TT_QK, len = p->d - lo < TT_QK ? p->d - lo : TT_QK;
        memcpy(r + lo, q + lo, sizeof(float) * (size_t)len);
        memset(r + lo + len, 0, sizeof(float) * (size_t)(TT_QK - len));
        tt_wht(r + lo, 0);
    }
}

static void tt_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const tt_plan *p = plan;
    const size_t bpv = tt_bpv(plan);
    const float *r = qs;
    float g[TT_QK];
    for (size_t i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int b = 0; b < p->nblk; b++) {
            tt_dequantize_block(p->f, codes + i * bpv + (size_t)b * p->f->block_bytes, g);
            for (int j = 0; j < TT_QK; j++) acc += g[j] * r[b * TT_QK + j];
        }
        scores[i] = acc;
    }
}

#define TT_METHOD(p, k)                                                                                    \
    kvq_status kvq_##p##_plan_new(const kvq_plan_params *pp, void **plan)                                  \
    { return tt_plan_new(pp, &tt_formats[k], plan); }                                                      \
    void kvq_##p##_plan_free(void *plan) { free(plan); }                                                   \
    size_t kvq_##p##_bytes_per_vector(const void *plan) { return tt_bpv(plan); }                           \
    void kvq_##p##_encode(const void *plan, const float *x, size_t n, uint8_t *codes)                      \
    { tt_encode(plan, x, n, codes); }                                                                      \
    void kvq_##p##_decode(const void *plan, const uint8_t *codes, size_t n, float *x)                      \
    { tt_decode(plan, codes, n, x); }                                                                      \
    size_t kvq_##p##_query_bytes(const void *plan) { return tt_query_bytes(plan); }                        \
    void kvq_##p##_prepare_query(const void *plan, const float *q, void *qs) { tt_prepare_query(plan, q, qs); } \
    void kvq_##p##_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores) \
    { tt_score(plan, qs, codes, n, scores); }

TT_METHOD(tomturbo_turbo2, 0)
TT_METHOD(tomturbo_turbo3, 1)
TT_METHOD(tomturbo_turbo4, 2)
