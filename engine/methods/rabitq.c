// methods/rabitq.c — RaBitQ (Gao & Long, SIGMOD 2024) and its extended
// multi-bit form (Gao et al., "Practical and asymptotically optimal
// quantization of high-dimensional vectors", SIGMOD 2025), for inner products.
//
// A key o_r of stream (layer, kv_head) is stored relative to its nearest IVF
// centroid c (trained, artifact "rabitq.centroids.l{L}.h{H}"):
//   o = (o_r - c) / |o_r - c|          unit residual
//   o' = P o                           P random orthogonal (or randomized Hadamard)
//   y = code vector on the symmetric grid {+-1/2, +-3/2, ..., +-(2^B-1)/2}^d
//       (B = 1: y = sign(o')/2), chosen to maximise the cosine <y, o'>/|y|
//   o_bar = P^T y / |y|, and <o_bar, o> = <y, o'>/|y| is stored.
// Inner products (the paper estimates distances; attention needs q . k):
//   q . o_r = q . c + |o_r - c| <o, q>, and RaBitQ's unbiased estimator of
//   <o, q> is <o_bar, q>/<o_bar, o> = <y, P q> / (|y| <o_bar, o>), linear in q,
//   so q needs no normalisation; its error bound scales with |q|.
// So score = <c, q> + |o_r - c| <y, P q> / (|y| <o_bar, o>): a table of <c, q>
// per query plus one d-term dot with the rotated query per key. The paper
// also quantizes P q to 4 bits for bitwise kernels; we keep it in float
// (no extra error, same estimator).
// Extended codes (B > 1): y = t|o'| rounded onto the grid for the scale t that
// maximises the cosine, found exactly by sweeping the d (2^(B-1) - 1) scales
// where one coordinate's rounding changes (a heap of next crossings).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "f16.h"
#include "methods.h"
#include "pack.h"
#include "rabitq.h"
#include "rotate.h"

#define RABITQ_ROT_TAG 0x7261626974715fULL   // "rabitq_": rotation seed = cfg->seed ^ tag

typedef struct {
    int d, B, C;
    float *cent;        // (C, d) copy of the artifact
    kvq_rotation rot;
    size_t off_codes, bpv;
} rabitq_plan;

kvq_status kvq_rabitq_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    const kvq_config *cfg = pp->cfg;
    int d = pp->head_dim, B = pp->bits;
    int C = cfg ? cfg->num_clusters : 0;
    if (B < 1 || B > 8) return kvq_error(KVQ_ERR_ARG, "rabitq: bits %d (expected 1..8)", B);
    if (C < 1 || C > 65536)
        return kvq_error(KVQ_ERR_ARG, "rabitq: num_clusters %d (expected 1..65536)", C);
    char name[96];
    snprintf(name, sizeof name, "rabitq.centroids.l%d.h%d", pp->layer, pp->kv_head);
    const float *cent;
    int64_t shape[2] = {C, d};
    kvq_status s = kvq_artifacts_require(pp->art, name, 2, shape, &cent);
    if (s == KVQ_ERR_NEEDS_CALIBRATION)
        return kvq_error(s, "rabitq: IVF centroids '%s' missing: run `kvstudio precompute "
                         "--method rabitq --trace TRACE --output DIR` and pass --artifacts DIR", name);
    if (s) return s;
    rabitq_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "rabitq: out of memory");
    p->cent = malloc(sizeof(float) * (size_t)C * d);
    if (!p->cent) {
        free(p);
        return kvq_error(KVQ_ERR_NOMEM, "rabitq: out of memory for %d centroids", C);
    }
    memcpy(p->cent, cent, sizeof(float) * (size_t)C * d);
    s = kvq_rotation_new(&p->rot, d, cfg->use_hadamard, cfg->seed ^ RABITQ_ROT_TAG);
    if (s) {
        free(p->cent);
        free(p);
        return s;
    }
    p->d = d, p->B = B, p->C = C;
    p->off_codes = 6 + (B > 1 ? 2 : 0);
    p->bpv = p->off_codes + kvq_pack_bytes((size_t)d, B);
    *plan = p;
    return KVQ_OK;
}

void kvq_rabitq_plan_free(void *plan)
{
    rabitq_plan *p = plan;
    if (!p) return;
    kvq_rotation_free(&p->rot);
    free(p->cent);
    free(p);
}

size_t kvq_rabitq_bytes_per_vector(const void *plan) { return ((const rabitq_plan *)plan)->bpv; }

// ---- extended code search: min-heap of each coordinate's next crossing ----
typedef struct { float t; int i; } crossing;

static void heap_sift_down(crossing *h, int n, int at)
{
    for (;;) {
        int l = 2 * at + 1, r = l + 1, m = at;
        if (l < n && (h[l].t < h[m].t || (h[l].t == h[m].t && h[l].i < h[m].i))) m = l;
        if (r < n && (h[r].t < h[m].t || (h[r].t == h[m].t && h[r].i < h[m].i))) m = r;
        if (m == at) return;
        crossing tmp = h[at];
        h[at] = h[m];
        h[m] = tmp;
        at = m;
    }
}

// Sweep the scale t upward from 0; k_i = min(floor(t a_i), kmax) changes one
// coordinate at a time. Runs `stop` crossings (or all when stop < 0) and
// returns the crossing count after which the cosine was best.
static long sweep(const float *a, int d, int kmax, long stop, uint8_t *k)
{
    crossing h[KVQ_MAX_HEAD_DIM];
    int n = 0;
    double s1 = 0, s2 = 0.25 * d;
    for (int i = 0; i < d; i++) {
        k[i] = 0;
        s1 += 0.5 * a[i];
        if (a[i] > 0 && kmax > 0) h[n++] = (crossing){1.0f / a[i], i};
    }
    for (int i = n / 2 - 1; i >= 0; i--) heap_sift_down(h, n, i);
    double best = s1 / sqrt(s2);
    long best_step = 0, step = 0;
    while (n > 0 && step != stop) {
        int i = h[0].i;
        k[i]++;
        s1 += a[i];
        s2 += 2.0 * k[i];
        step++;
        double cosv = s1 / sqrt(s2);
        if (cosv > best) best = cosv, best_step = step;
        if (k[i] < kmax) h[0].t = (float)(k[i] + 1) / a[i];
        else h[0] = h[--n];
        heap_sift_down(h, n, 0);
    }
    return best_step;
}

void kvq_rabitq_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const rabitq_plan *p = plan;
    const int d = p->d, B = p->B, half = 1 << (B - 1);
    float r[KVQ_MAX_HEAD_DIM], o[KVQ_MAX_HEAD_DIM], a[KVQ_MAX_HEAD_DIM];
    uint8_t k[KVQ_MAX_HEAD_DIM], u[KVQ_MAX_HEAD_DIM];
    for (size_t t = 0; t < n; t++) {
        const float *v = x + t * (size_t)d;
        uint8_t *rec = codes + t * p->bpv;
        // nearest centroid, scalar: C is small and this is the reference path
        int best = 0;
        double bd = INFINITY;
        for (int c = 0; c < p->C; c++) {
            const float *cc = p->cent + (size_t)c * d;
            double s = 0;
            for (int j = 0; j < d; j++) {
                double df = (double)v[j] - cc[j];
                s += df * df;
            }
            if (s < bd) bd = s, best = c;
        }
        const float *cc = p->cent + (size_t)best * d;
        double nn = 0;
        for (int j = 0; j < d; j++) {
            r[j] = v[j] - cc[j];
            nn += (double)r[j] * r[j];
        }
        float rnorm = (float)sqrt(nn);
        if (rnorm > 0)
            for (int j = 0; j < d; j++) r[j] /= rnorm;
        else
            r[0] = 1;   // o_r == c: any unit o; its term is multiplied by 0
        kvq_rotation_apply(&p->rot, r, o);
        for (int j = 0; j < d; j++) a[j] = fabsf(o[j]);
        if (B > 1) sweep(a, d, half - 1, sweep(a, d, half - 1, -1, k), k);
        else memset(k, 0, (size_t)d);
        double s1 = 0, s2 = 0;
        for (int j = 0; j < d; j++) {
            double y = k[j] + 0.5;
            s1 += y * a[j];
            s2 += y * y;
            u[j] = (uint8_t)(o[j] >= 0 ? half + k[j] : half - 1 - k[j]);
        }
        double ynorm = sqrt(s2);
        uint16_t cl = (uint16_t)best;
        memcpy(rec, &cl, 2);
        kvq_f16_store(rec + 2, rnorm);
        kvq_f16_store(rec + 4, (float)(s1 / ynorm));
        if (B > 1) kvq_f16_store(rec + 6, (float)ynorm);
        kvq_pack(u, (size_t)d, B, rec + p->off_codes);
    }
}

void kvq_rabitq_read_record(const void *plan, const uint8_t *rec, kvq_rabitq_record *out)
{
    uint16_t cl;
    memcpy(&cl, rec, 2);
    out->cluster = cl;
    out->rnorm = kvq_f16_load(rec + 2);
    out->ipo = kvq_f16_load(rec + 4);
    (void)plan;
}

const float *kvq_rabitq_centroids(const void *plan, int *k)
{
    const rabitq_plan *p = plan;
    if (k) *k = p->C;
    return p->cent;
}

double kvq_rabitq_error_bound(double ipo, int d, double eps0)
{
    return sqrt((1.0 - ipo * ipo) / (ipo * ipo)) * eps0 / sqrt((double)d - 1.0);
}

static float code_norm(const rabitq_plan *p, const uint8_t *rec)
{
    return p->B > 1 ? kvq_f16_load(rec + 6) : 0.5f * sqrtf((float)p->d);
}

void kvq_rabitq_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    // Minimum-MSE point on the line of o_bar: c + |r| <o_bar, o> o_bar. (The
    // score's implied key |r| o_bar / <o_bar, o> is unbiased but longer.)
    const rabitq_plan *p = plan;
    const int d = p->d;
    const float mid = 0.5f * (float)((1 << p->B) - 1);
    uint8_t u[KVQ_MAX_HEAD_DIM];
    float y[KVQ_MAX_HEAD_DIM], ob[KVQ_MAX_HEAD_DIM];
    for (size_t t = 0; t < n; t++) {
        const uint8_t *rec = codes + t * p->bpv;
        kvq_rabitq_record f;
        kvq_rabitq_read_record(p, rec, &f);
        float scale = f.rnorm * f.ipo / code_norm(p, rec);
        kvq_unpack(rec + p->off_codes, (size_t)d, p->B, u);
        for (int j = 0; j < d; j++) y[j] = (float)u[j] - mid;
        kvq_rotation_apply_t(&p->rot, y, ob);
        const float *cc = p->cent + (size_t)(f.cluster < p->C ? f.cluster : 0) * d;
        float *out = x + t * (size_t)d;
        for (int j = 0; j < d; j++) out[j] = cc[j] + scale * ob[j];
    }
}

// qstate: (d) P q | 1 float sum_j (P q)_j | (C) <c_j, q>
size_t kvq_rabitq_query_bytes(const void *plan)
{
    const rabitq_plan *p = plan;
    return sizeof(float) * ((size_t)p->d + 1 + (size_t)p->C);
}

void kvq_rabitq_prepare_query(const void *plan, const float *q, void *qs)
{
    const rabitq_plan *p = plan;
    float *pq = qs, *cq = pq + p->d + 1;
    kvq_rotation_apply(&p->rot, q, pq);
    double s = 0;
    for (int j = 0; j < p->d; j++) s += pq[j];
    pq[p->d] = (float)s;
    for (int c = 0; c < p->C; c++) {
        const float *cc = p->cent + (size_t)c * p->d;
        double acc = 0;
        for (int j = 0; j < p->d; j++) acc += (double)cc[j] * q[j];
        cq[c] = (float)acc;
    }
}

void kvq_rabitq_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                      float *scores)
{
    const rabitq_plan *p = plan;
    const int d = p->d;
    const float *pq = qs, *cq = pq + d + 1;
    const float mid = 0.5f * (float)((1 << p->B) - 1);
    uint8_t u[KVQ_MAX_HEAD_DIM];
    for (size_t t = 0; t < n; t++) {
        const uint8_t *rec = codes + t * p->bpv;
        kvq_rabitq_record f;
        kvq_rabitq_read_record(p, rec, &f);
        const uint8_t *cb = rec + p->off_codes;
        float dot = 0;   // <u, P q>, then <y, P q> = <u, P q> - mid * sum(P q)
        if (p->B == 1) {
            for (int j = 0; j < d; j++)
                if ((cb[j >> 3] >> (j & 7)) & 1) dot += pq[j];
        } else {
            kvq_unpack(cb, (size_t)d, p->B, u);
            for (int j = 0; j < d; j++) dot += (float)u[j] * pq[j];
        }
        dot -= mid * pq[d];
        float est = f.ipo > 0 ? dot / (code_norm(p, rec) * f.ipo) : 0;
        scores[t] = cq[f.cluster < p->C ? f.cluster : 0] + f.rnorm * est;
    }
}

size_t kvq_rabitq_side_bytes(const void *plan)
{
    const rabitq_plan *p = plan;
    return sizeof(float) * (size_t)p->C * (size_t)p->d + kvq_rotation_bytes(&p->rot);
}
