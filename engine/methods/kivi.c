// methods/kivi.c — KIVI (arXiv 2402.02750): asymmetric min/scale integer
// quantization, keys per channel and values per token.
//
// Keys have outlier channels with a stable magnitude over tokens, so each
// channel gets its own (min, scale) over a group of KIVI_GROUP tokens; the
// group is the unit of encode/decode/score (group_vectors = 32, n is then a
// multiple of 32; any tail beyond the last full group is left untouched).
// Values are mixed per token by attention, so each token gets a (min, scale)
// per group of KIVI_GROUP channels.
//
// code = clamp(round((x - min) / scale), 0, 2^b - 1), scale = (max - min) /
// (2^b - 1); min and scale are stored as f16 and the codes are computed
// against the stored (rounded) values, so decode = min + scale * code exactly
// reproduces what encode assumed.
//
// Layouts (b = bits, row = ceil(head_dim * b / 8) packed codes, LSB first):
//   keys, one group of 32 tokens: f16 scale[d] | f16 min[d] | 32 x row
//     -> bytes_per_vector = d/8 + row (the side data is shared by 32 tokens)
//   values, one token: (f16 scale, f16 min) x d/32 | row
//     -> bytes_per_vector = d/8 + row
// So KIVI-2 holds 3 bits per coordinate at d = 128 once scales are counted.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "methods.h"
#include "pack.h"

#define KIVI_GROUP 32

typedef struct {
    int d, bits, qmax;
    bool per_token; // values
    size_t row;     // packed code bytes per vector
    size_t bpv;
} kivi_plan;

kvq_status kvq_kivi_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    const int d = pp->head_dim;
    if (d < KIVI_GROUP || d > KVQ_MAX_HEAD_DIM || d % KIVI_GROUP)
        return kvq_error(KVQ_ERR_ARG, "kivi: head_dim %d is not a multiple of %d in %d..%d", d,
                         KIVI_GROUP, KIVI_GROUP, KVQ_MAX_HEAD_DIM);
    if (pp->bits < 2 || pp->bits > 8)
        return kvq_error(KVQ_ERR_ARG, "kivi: bits %d out of range (expected 2..8)", pp->bits);
    kivi_plan *p = malloc(sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "kivi: out of memory");
    p->d = d;
    p->bits = pp->bits;
    p->qmax = (1 << pp->bits) - 1;
    p->per_token = pp->is_value;
    p->row = kvq_pack_bytes((size_t)d, pp->bits);
    p->bpv = (size_t)d / 8 + p->row;
    *plan = p;
    return KVQ_OK;
}

void kvq_kivi_plan_free(void *plan) { free(plan); }

size_t kvq_kivi_bytes_per_vector(const void *plan) { return ((const kivi_plan *)plan)->bpv; }

size_t kvq_kivi_group_vectors(const void *plan)
{
    return ((const kivi_plan *)plan)->per_token ? 1 : KIVI_GROUP;
}

// Stores (scale, min) of the range [mn, mx] at sm (4 bytes) and returns the
// stored values, which the codes must be computed against.
static void range_store(float mn, float mx, int qmax, uint8_t *sm, float *scale, float *min)
{
    kvq_f16_store(sm, (mx - mn) / (float)qmax);
    kvq_f16_store(sm + 2, mn);
    *scale = kvq_f16_load(sm);
    *min = kvq_f16_load(sm + 2);
}

static uint8_t code_of(float x, float scale, float min, int qmax)
{
    if (!(scale > 0.0f)) return 0;
    float c = roundf((x - min) / scale);
    return (uint8_t)(c < 0.0f ? 0 : c > (float)qmax ? qmax : c);
}

// ---- keys: per channel over groups of 32 tokens ----
static void keys_encode_group(const kivi_plan *p, const float *x, uint8_t *g)
{
    const int d = p->d;
    uint8_t *sc = g, *mn = g + 2 * (size_t)d, *rows = g + 4 * (size_t)d;
    float scale[KVQ_MAX_HEAD_DIM], min[KVQ_MAX_HEAD_DIM];
    for (int c = 0; c < d; c++) {
        float lo = x[c], hi = x[c];
        for (int t = 1; t < KIVI_GROUP; t++) {
            const float v = x[(size_t)t * d + c];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        uint8_t sm[4];
        range_store(lo, hi, p->qmax, sm, &scale[c], &min[c]);
        memcpy(sc + 2 * c, sm, 2);
        memcpy(mn + 2 * c, sm + 2, 2);
    }
    uint8_t codes[KVQ_MAX_HEAD_DIM];
    for (int t = 0; t < KIVI_GROUP; t++) {
        const float *xt = x + (size_t)t * d;
        for (int c = 0; c < d; c++) codes[c] = code_of(xt[c], scale[c], min[c], p->qmax);
        kvq_pack(codes, (size_t)d, p->bits, rows + (size_t)t * p->row);
    }
}

static void keys_decode_group(const kivi_plan *p, const uint8_t *g, float *x)
{
    const int d = p->d;
    const uint8_t *rows = g + 4 * (size_t)d;
    float scale[KVQ_MAX_HEAD_DIM], min[KVQ_MAX_HEAD_DIM];
    for (int c = 0; c < d; c++) {
        scale[c] = kvq_f16_load(g + 2 * c);
        min[c] = kvq_f16_load(g + 2 * (size_t)d + 2 * c);
    }
    uint8_t codes[KVQ_MAX_HEAD_DIM];
    for (int t = 0; t < KIVI_GROUP; t++) {
        kvq_unpack(rows + (size_t)t * p->row, (size_t)d, p->bits, codes);
        for (int c = 0; c < d; c++) x[(size_t)t * d + c] = min[c] + scale[c] * (float)codes[c];
    }
}

// q . k_t = sum_c q_c min_c + sum_c (q_c scale_c) code_tc: the first term
// and the scaled query are made once per group.
static void keys_score_group(const kivi_plan *p, const float *q, const uint8_t *g, float *s)
{
    const int d = p->d;
    const uint8_t *rows = g + 4 * (size_t)d;
    float qs[KVQ_MAX_HEAD_DIM], qm = 0.0f;
    for (int c = 0; c < d; c++) {
        qs[c] = q[c] * kvq_f16_load(g + 2 * c);
        qm += q[c] * kvq_f16_load(g + 2 * (size_t)d + 2 * c);
    }
    uint8_t codes[KVQ_MAX_HEAD_DIM];
    for (int t = 0; t < KIVI_GROUP; t++) {
        kvq_unpack(rows + (size_t)t * p->row, (size_t)d, p->bits, codes);
        float acc = 0.0f;
        for (int c = 0; c < d; c++) acc += qs[c] * (float)codes[c];
        s[t] = qm + acc;
    }
}

// ---- values: per token over groups of 32 channels ----
static void values_encode_one(const kivi_plan *p, const float *x, uint8_t *r)
{
    uint8_t codes[KVQ_MAX_HEAD_DIM];
    for (int g = 0; g < p->d / KIVI_GROUP; g++) {
        const float *xg = x + g * KIVI_GROUP;
        float lo = xg[0], hi = xg[0];
        for (int c = 1; c < KIVI_GROUP; c++) {
            lo = xg[c] < lo ? xg[c] : lo;
            hi = xg[c] > hi ? xg[c] : hi;
        }
        float scale, min;
        range_store(lo, hi, p->qmax, r + 4 * g, &scale, &min);
        for (int c = 0; c < KIVI_GROUP; c++)
            codes[g * KIVI_GROUP + c] = code_of(xg[c], scale, min, p->qmax);
    }
    kvq_pack(codes, (size_t)p->d, p->bits, r + (size_t)p->d / 8);
}

static void values_decode_one(const kivi_plan *p, const uint8_t *r, float *x)
{
    uint8_t codes[KVQ_MAX_HEAD_DIM];
    kvq_unpack(r + (size_t)p->d / 8, (size_t)p->d, p->bits, codes);
    for (int g = 0; g < p->d / KIVI_GROUP; g++) {
        const float scale = kvq_f16_load(r + 4 * g), min = kvq_f16_load(r + 4 * g + 2);
        for (int c = g * KIVI_GROUP; c < (g + 1) * KIVI_GROUP; c++)
            x[c] = min + scale * (float)codes[c];
    }
}

void kvq_kivi_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const kivi_plan *p = plan;
    if (p->per_token) {
        for (size_t i = 0; i < n; i++)
            values_encode_one(p, x + i * (size_t)p->d, codes + i * p->bpv);
        return;
    }
    for (size_t g = 0; g < n / KIVI_GROUP; g++)
        keys_encode_group(p, x + g * KIVI_GROUP * (size_t)p->d, codes + g * KIVI_GROUP * p->bpv);
}

void kvq_kivi_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const kivi_plan *p = plan;
    if (p->per_token) {
        for (size_t i = 0; i < n; i++)
            values_decode_one(p, codes + i * p->bpv, x + i * (size_t)p->d);
        return;
    }
    for (size_t g = 0; g < n / KIVI_GROUP; g++)
        keys_decode_group(p, codes + g * KIVI_GROUP * p->bpv, x + g * KIVI_GROUP * (size_t)p->d);
}

// qstate: the query (d floats), then for values its sums over each channel
// group (d/32 floats), which multiply the per-token minima.
size_t kvq_kivi_query_bytes(const void *plan)
{
    const int d = ((const kivi_plan *)plan)->d;
    return sizeof(float) * (size_t)(d + d / KIVI_GROUP);
}

void kvq_kivi_prepare_query(const void *plan, const float *q, void *qs)
{
    const int d = ((const kivi_plan *)plan)->d;
    float *st = qs;
    memcpy(st, q, sizeof(float) * (size_t)d);
    for (int g = 0; g < d / KIVI_GROUP; g++) {
        float sum = 0.0f;
        for (int c = g * KIVI_GROUP; c < (g + 1) * KIVI_GROUP; c++) sum += q[c];
        st[d + g] = sum;
    }
}

void kvq_kivi_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const kivi_plan *p = plan;
    const float *q = qs;
    if (!p->per_token) {
        for (size_t g = 0; g < n / KIVI_GROUP; g++)
            keys_score_group(p, q, codes + g * KIVI_GROUP * p->bpv, scores + g * KIVI_GROUP);
        return;
    }
    uint8_t c8[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = codes + i * p->bpv;
        kvq_unpack(r + (size_t)p->d / 8, (size_t)p->d, p->bits, c8);
        float acc = 0.0f;
        for (int g = 0; g < p->d / KIVI_GROUP; g++) {
            float dot = 0.0f;
            for (int c = g * KIVI_GROUP; c < (g + 1) * KIVI_GROUP; c++) dot += q[c] * (float)c8[c];
            acc += kvq_f16_load(r + 4 * g) * dot + kvq_f16_load(r + 4 * g + 2) * q[p->d + g];
        }
        scores[i] = acc;
    }
}
