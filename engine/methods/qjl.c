// methods/qjl.c — QJL (arXiv 2406.03482): a 1-bit quantized Johnson-
// Lindenstrauss sketch of the key plus its norm, with outlier channels kept
// apart in full precision.
//
// Estimator: q . k ~= sum_j q[o_j] k[o_j] + sqrt(pi/2)/m |r| <S q, sign(S r)>,
// r = k with its outlier channels zeroed, S (m, d) i.i.d. N(0, 1). For one row
// s of S, E[<s,q> sign(<s,r>)] = sqrt(2/pi) <q, r>/|r|, so the sketch term is
// unbiased for q . r and the outlier term is exact: the sum is unbiased.
//
// Outliers. The official code picks, per group of tokens, the channels with the
// largest norms over the group and sketches them separately. Records here are
// fixed-size and per vector, so each vector keeps its own top-o channels by
// |k_i| (o = cfg->outlier_channels, or QJL_DEFAULT_OUTLIERS when that is 0),
// stored as (uint8 index, fp16 value) pairs; they are removed before
// sketching and added back exactly in score and decode. This catches the same
// heavy channels (they are heavy in most tokens) without a group-level side
// table, at the cost of 3 bytes per outlier per vector.
//
// Record (bytes_per_vector): fp16 |r| | o x uint8 index | o x fp16 value |
// ceil(m/8) sign bytes (bit i = sign(S r)_i >= 0, LSB first).
// bits is always 1 (the sketch width m sets the rate).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "methods.h"
#include "pack.h"
#include "rng.h"

#define QJL_DEFAULT_OUTLIERS 4
#define QJL_STREAM 0x716a6c534b4554ULL   // "qjlSKET": S independent of other plans' randomness

typedef struct {
    int d, m, o;
    float *S;        // (m, d) row-major, N(0, 1)
    size_t off_idx, off_val, off_sign, bpv;
} qjl_plan;

kvq_status kvq_qjl_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    const kvq_config *cfg = pp->cfg;
    int d = pp->head_dim;
    int m = cfg && cfg->sketch_dim > 0 ? cfg->sketch_dim : d;
    int o = cfg && cfg->outlier_channels > 0 ? cfg->outlier_channels : QJL_DEFAULT_OUTLIERS;
    if (m > KVQ_MAX_SKETCH_DIM)
        return kvq_error(KVQ_ERR_ARG, "qjl: sketch_dim %d too large (expected 1..%d)", m,
                         KVQ_MAX_SKETCH_DIM);
    if (d < 2 || d > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_ARG, "qjl: head_dim %d out of range (expected 2..%d)", d,
                         KVQ_MAX_HEAD_DIM);
    if (o > d / 2)
        return kvq_error(KVQ_ERR_ARG, "qjl: outlier_channels %d too many for head_dim %d "
                         "(expected at most %d)", o, d, d / 2);
    qjl_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "qjl: out of memory");
    p->S = malloc(sizeof(float) * (size_t)m * d);
    if (!p->S) {
        free(p);
        return kvq_error(KVQ_ERR_NOMEM, "qjl: out of memory for a %dx%d sketch", m, d);
    }
    p->d = d, p->m = m, p->o = o;
    kvq_rng rng;
    kvq_rng_seed2(&rng, cfg ? cfg->seed : 0, QJL_STREAM);
    kvq_rng_gauss_fill(&rng, p->S, (size_t)m * d);
    p->off_idx = 2;
    p->off_val = p->off_idx + (size_t)o;
    p->off_sign = p->off_val + 2 * (size_t)o;
    p->bpv = p->off_sign + kvq_pack_bytes((size_t)m, 1);
    *plan = p;
    return KVQ_OK;
}

void kvq_qjl_plan_free(void *plan)
{
    qjl_plan *p = plan;
    if (!p) return;
    free(p->S);
    free(p);
}

size_t kvq_qjl_bytes_per_vector(const void *plan) { return ((const qjl_plan *)plan)->bpv; }

// Indices of the o largest |x_i| (ties to the lower index), by selection: o is small.
static void top_abs(const float *x, int d, int o, int *idx)
{
    bool taken[KVQ_MAX_HEAD_DIM] = {0};
    for (int j = 0; j < o; j++) {
        int best = -1;
        for (int i = 0; i < d; i++)
            if (!taken[i] && (best < 0 || fabsf(x[i]) > fabsf(x[best]))) best = i;
        taken[best] = true;
        idx[j] = best;
    }
}

void kvq_qjl_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const qjl_plan *p = plan;
    const int d = p->d, m = p->m, o = p->o;
    float r[KVQ_MAX_HEAD_DIM];
    int idx[KVQ_MAX_HEAD_DIM];
    for (size_t t = 0; t < n; t++) {
        const float *k = x + t * (size_t)d;
        uint8_t *rec = codes + t * p->bpv;
        memcpy(r, k, sizeof(float) * (size_t)d);
        top_abs(k, d, o, idx);
        for (int j = 0; j < o; j++) {
            rec[p->off_idx + (size_t)j] = (uint8_t)idx[j];
            kvq_f16_store(rec + p->off_val + 2 * (size_t)j, k[idx[j]]);
            r[idx[j]] = 0;
        }
        double nn = 0;
        for (int i = 0; i < d; i++) nn += (double)r[i] * r[i];
        kvq_f16_store(rec, (float)sqrt(nn));
        uint8_t *sg = rec + p->off_sign;
        memset(sg, 0, kvq_pack_bytes((size_t)m, 1));
        for (int i = 0; i < m; i++) {
            const float *s = p->S + (size_t)i * d;
            float acc = 0;
            for (int j = 0; j < d; j++) acc += s[j] * r[j];
            if (acc >= 0) sg[i >> 3] |= (uint8_t)(1u << (i & 7));
        }
    }
}

void kvq_qjl_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    // The unbiased reconstruction sqrt(pi/2)/m |r| S^T sign(S r) + outliers:
    // its inner product with any q is exactly the score estimator.
    const qjl_plan *p = plan;
    const int d = p->d, m = p->m, o = p->o;
    for (size_t t = 0; t < n; t++) {
        const uint8_t *rec = codes + t * p->bpv;
        float *k = x + t * (size_t)d;
        const uint8_t *sg = rec + p->off_sign;
        float scale = (float)(sqrt(M_PI / 2) / m) * kvq_f16_load(rec);
        memset(k, 0, sizeof(float) * (size_t)d);
        for (int i = 0; i < m; i++) {
            const float *s = p->S + (size_t)i * d;
            float sign = (sg[i >> 3] >> (i & 7)) & 1 ? scale : -scale;
            for (int j = 0; j < d; j++) k[j] += sign * s[j];
        }
        for (int j = 0; j < o; j++)
            k[rec[p->off_idx + (size_t)j]] += kvq_f16_load(rec + p->off_val + 2 * (size_t)j);
    }
}

// qstate: (m) S q | 1 float sum_i (S q)_i | (d) q
size_t kvq_qjl_query_bytes(const void *plan)
{
    const qjl_plan *p = plan;
    return sizeof(float) * ((size_t)p->m + 1 + (size_t)p->d);
}

void kvq_qjl_prepare_query(const void *plan, const float *q, void *qs)
{
    const qjl_plan *p = plan;
    float *sq = qs;
    double tot = 0;
    for (int i = 0; i < p->m; i++) {
        const float *s = p->S + (size_t)i * p->d;
        float acc = 0;
        for (int j = 0; j < p->d; j++) acc += s[j] * q[j];
        sq[i] = acc;
        tot += acc;
    }
    sq[p->m] = (float)tot;
    memcpy(sq + p->m + 1, q, sizeof(float) * (size_t)p->d);
}

void kvq_qjl_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                   float *scores)
{
    const qjl_plan *p = plan;
    const float *sq = qs, *q = sq + p->m + 1;
    const float c = (float)(sqrt(M_PI / 2) / p->m);
    for (size_t t = 0; t < n; t++) {
        const uint8_t *rec = codes + t * p->bpv;
        const uint8_t *sg = rec + p->off_sign;
        // <S q, sign> = 2 * (sum over set bits) - sum of all
        float pos = 0;
        for (int i = 0; i < p->m; i++)
            if ((sg[i >> 3] >> (i & 7)) & 1) pos += sq[i];
        float s = c * kvq_f16_load(rec) * (2 * pos - sq[p->m]);
        for (int j = 0; j < p->o; j++)
            s += q[rec[p->off_idx + (size_t)j]] * kvq_f16_load(rec + p->off_val + 2 * (size_t)j);
        scores[t] = s;
    }
}

size_t kvq_qjl_side_bytes(const void *plan)
{
    const qjl_plan *p = plan;
    return sizeof(float) * (size_t)p->m * (size_t)p->d;   // the sketch matrix S
}
