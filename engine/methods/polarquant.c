// methods/polarquant.c — PolarQuant (arXiv 2502.02617): random
// preconditioning, then a recursive polar transform of L = 4 levels.
//
// After the rotation y = R x (dense or randomized Hadamard, cfg->use_hadamard):
//   level 1: pairs (y[2j], y[2j+1]) -> radius r1[j] and angle psi in [0, 2pi)
//   level l >= 2: pairs (r_{l-1}[2j], r_{l-1}[2j+1]) -> r_l[j], psi in [0, pi/2]
// leaving d/16 radii, stored fp16. For Gaussian-like y (which the rotation
// makes of any vector, exactly so for uniform directions) level-1 angles are
// uniform and level-l angles have density proportional to
// sin^(2^(l-1) - 1)(2 psi), independent of the radii. Each level gets a
// Lloyd-Max codebook for its density, solved numerically at plan time
// (level 1: the uniform grid, optimal for a uniform circular density).
// Decode runs from the top radii down; score uses a per-query table of
// q'[2j] cos(theta_c) + q'[2j+1] sin(theta_c) for the level-1 angles (q' = R q),
// so a key costs the radius tree (d/2 products) plus d/2 lookups.
// Record: (d/16) fp16 radii | level-1 codes | level-2 | level-3 | level-4,
// each level packed at its bits (pack.h). Bit mapping in polarquant.h.
#include <math.h>
#include <stdlib.h>
#include "f16.h"
#include "methods.h"
#include "pack.h"
#include "polarquant.h"
#include "rotate.h"

#define PQ_L KVQ_POLAR_LEVELS
#define PQ_GRID 16384
#define PQ_LLOYD_ITERS 400
#define PQ_ROT_TAG 0x706f6c6172ULL   // "polar": rotation seed = cfg->seed ^ tag

typedef struct {
    int d, bits[PQ_L + 1], n[PQ_L + 1];   // [1..4]
    float *cosv[PQ_L + 1], *sinv[PQ_L + 1];
    float bounds[PQ_L + 1][64];          // levels >= 2: decision thresholds (n - 1)
    kvq_polar_level info[PQ_L + 1];
    kvq_rotation rot;
    size_t off[PQ_L + 2], bpv;          // off[l] = level-l codes; off[PQ_L + 1] = end
} pq_plan;

// Lloyd-Max for density ∝ sin^p(2 psi) on [0, pi/2], discretised on a grid.
// Fills levels (n), thresholds (n - 1) and the chord distortions.
static void solve_angle_codebook(int p, int n, float *lev, float *thr, double *chord,
                                 double *chord_uniform)
{
    static _Thread_local double w[PQ_GRID];
    const double h = M_PI / 2 / PQ_GRID;
    double tot = 0;
    for (int i = 0; i < PQ_GRID; i++) tot += (w[i] = pow(sin(2 * ((i + 0.5) * h)), p));
    for (int i = 0; i < PQ_GRID; i++) w[i] /= tot;
    double L[64], T[64];
    // start from quantiles of the density
    double acc = 0;
    int k = 0;
    for (int i = 0; i < PQ_GRID && k < n; i++) {
        acc += w[i];
        while (k < n && acc >= (k + 0.5) / n) L[k++] = (i + 0.5) * h;
    }
    while (k < n) L[k] = L[k - 1], k++;
    for (int it = 0; it < PQ_LLOYD_ITERS; it++) {
        for (int c = 0; c < n - 1; c++) T[c] = 0.5 * (L[c] + L[c + 1]);
        double sw[64] = {0}, sx[64] = {0};
        int c = 0;
        for (int i = 0; i < PQ_GRID; i++) {
            double x = (i + 0.5) * h;
            while (c < n - 1 && x > T[c]) c++;
            sw[c] += w[i];
            sx[c] += w[i] * x;
        }
        for (c = 0; c < n; c++)
            if (sw[c] > 0) L[c] = sx[c] / sw[c];
    }
    for (int c = 0; c < n - 1; c++) T[c] = 0.5 * (L[c] + L[c + 1]);
    double ch = 0, chu = 0;
    int c = 0;
    for (int i = 0; i < PQ_GRID; i++) {
        double x = (i + 0.5) * h;
        while (c < n - 1 && x > T[c]) c++;
        ch += w[i] * 2 * (1 - cos(x - L[c]));
        int cu = (int)(x / (M_PI / 2) * n);
        if (cu >= n) cu = n - 1;
        chu += w[i] * 2 * (1 - cos(x - (cu + 0.5) * (M_PI / 2) / n));
    }
    for (c = 0; c < n; c++) lev[c] = (float)L[c];
    for (c = 0; c < n - 1; c++) thr[c] = (float)T[c];
    *chord = ch;
    *chord_uniform = chu;
}

void kvq_polarquant_plan_free(void *plan)
{
    pq_plan *p = plan;
    if (!p) return;
    for (int l = 1; l <= PQ_L; l++) free(p->cosv[l]), free(p->sinv[l]);
    kvq_rotation_free(&p->rot);
    free(p);
}

kvq_status kvq_polarquant_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    const kvq_config *cfg = pp->cfg;
    int d = pp->head_dim, b = pp->bits;
    if (d % 16 || d < 16)
        return kvq_error(KVQ_ERR_ARG, "polarquant: head_dim %d (expected a multiple of 16: "
                         "4 polar levels leave one radius per 16 coordinates)", d);
    if (b < 2 || b > 8) return kvq_error(KVQ_ERR_ARG, "polarquant: bits %d (expected 2..8)", b);
    pq_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "polarquant: out of memory");
    kvq_status s = kvq_rotation_new(&p->rot, d, cfg ? cfg->use_hadamard : false,
                                    (cfg ? cfg->seed : 0) ^ PQ_ROT_TAG);
    if (s) {
        free(p);
        return s;
    }
    p->d = d;
    size_t off = (size_t)(d / 16) * 2;
    for (int l = 1; l <= PQ_L; l++) {
        int bl = l == 1 ? b : (b - 2 > 1 ? b - 2 : 1);
        int n = 1 << bl;
        p->bits[l] = bl, p->n[l] = n;
        p->cosv[l] = malloc(sizeof(float) * (size_t)n);
        p->sinv[l] = malloc(sizeof(float) * (size_t)n);
        if (!p->cosv[l] || !p->sinv[l]) {
            kvq_polarquant_plan_free(p);
            return kvq_error(KVQ_ERR_NOMEM, "polarquant: out of memory");
        }
        float lev[256];
        kvq_polar_level *in = &p->info[l];
        in->bits = bl;
        if (l == 1) {
            for (int c = 0; c < n; c++) lev[c] = (float)((c + 0.5) * 2 * M_PI / n);
            double half = M_PI / n;   // error uniform on [-half, half]
            in->chord_mse = in->uniform_mse = 2 * (1 - sin(half) / half);
        } else {
            solve_angle_codebook((1 << (l - 1)) - 1, n, lev, p->bounds[l], &in->chord_mse,
                                 &in->uniform_mse);
        }
        for (int c = 0; c < n; c++) p->cosv[l][c] = cosf(lev[c]), p->sinv[l][c] = sinf(lev[c]);
        p->off[l] = off;
        off += kvq_pack_bytes((size_t)(d >> l), bl);
    }
    p->off[PQ_L + 1] = p->bpv = off;
    *plan = p;
    return KVQ_OK;
}

size_t kvq_polarquant_bytes_per_vector(const void *plan) { return ((const pq_plan *)plan)->bpv; }

void kvq_polarquant_level(const void *plan, int level, kvq_polar_level *out)
{
    const pq_plan *p = plan;
    *out = p->info[level >= 1 && level <= PQ_L ? level : 1];
}

double kvq_polarquant_predicted_rel_mse(const void *plan)
{
    const pq_plan *p = plan;
    double s = 0;
    for (int l = 1; l <= PQ_L; l++) s += p->info[l].chord_mse;
    return s;
}

static int angle_index(const pq_plan *p, int l, float psi)
{
    int n = p->n[l];
    if (l == 1) {
        int c = (int)(psi * (float)(n / (2 * M_PI)));
        return c < 0 ? 0 : c >= n ? n - 1 : c;
    }
    int idx = 0;   // branchless-style binary search over the n - 1 thresholds
    for (int step = n >> 1; step > 0; step >>= 1)
        idx += psi > p->bounds[l][idx + step - 1] ? step : 0;
    return idx;
}

void kvq_polarquant_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const pq_plan *p = plan;
    const int d = p->d;
    float y[KVQ_MAX_HEAD_DIM], r[KVQ_MAX_HEAD_DIM / 2];
    uint8_t c[KVQ_MAX_HEAD_DIM / 2];
    for (size_t t = 0; t < n; t++) {
        uint8_t *rec = codes + t * p->bpv;
        kvq_rotation_apply(&p->rot, x + t * (size_t)d, y);
        const float *src = y;   // level input: coordinates, then radii
        for (int l = 1; l <= PQ_L; l++) {
            int m = d >> l;
            for (int j = 0; j < m; j++) {
                float a = src[2 * j], b = src[2 * j + 1];
                float psi = atan2f(b, a);   // level >= 2: a, b >= 0 so psi in [0, pi/2]
                if (psi < 0) psi += (float)(2 * M_PI);
                c[j] = (uint8_t)angle_index(p, l, psi);
                r[j] = sqrtf(a * a + b * b);   // in place: r[j] reads src[2j..] first
            }
            kvq_pack(c, (size_t)m, p->bits[l], rec + p->off[l]);
            src = r;
        }
        for (int j = 0; j < d / 16; j++) kvq_f16_store(rec + 2 * j, r[j]);
    }
}

// Radii of level 1 into r (d/2) from the top radii and the angle codes of levels 4..2.
static void level1_radii(const pq_plan *p, const uint8_t *rec, float *r)
{
    const int d = p->d;
    uint8_t c[KVQ_MAX_HEAD_DIM / 2];
    for (int j = 0; j < d / 16; j++) r[j] = kvq_f16_load(rec + 2 * j);
    for (int l = PQ_L; l >= 2; l--) {
        int m = d >> l;
        kvq_unpack(rec + p->off[l], (size_t)m, p->bits[l], c);
        for (int j = m - 1; j >= 0; j--) {   // backwards: children overwrite parents in place
            float R = r[j];
            r[2 * j] = R * p->cosv[l][c[j]];
            r[2 * j + 1] = R * p->sinv[l][c[j]];
        }
    }
}

void kvq_polarquant_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const pq_plan *p = plan;
    const int d = p->d;
    float r[KVQ_MAX_HEAD_DIM / 2], y[KVQ_MAX_HEAD_DIM];
    uint8_t c[KVQ_MAX_HEAD_DIM / 2];
    for (size_t t = 0; t < n; t++) {
        const uint8_t *rec = codes + t * p->bpv;
        level1_radii(p, rec, r);
        kvq_unpack(rec + p->off[1], (size_t)(d / 2), p->bits[1], c);
        for (int j = 0; j < d / 2; j++) {
            y[2 * j] = r[j] * p->cosv[1][c[j]];
            y[2 * j + 1] = r[j] * p->sinv[1][c[j]];
        }
        kvq_rotation_apply_t(&p->rot, y, x + t * (size_t)d);
    }
}

// qstate: (d/2, 2^bits1) table of q'[2j] cos(theta_c) + q'[2j+1] sin(theta_c)
size_t kvq_polarquant_query_bytes(const void *plan)
{
    const pq_plan *p = plan;
    return sizeof(float) * (size_t)(p->d / 2) * (size_t)p->n[1];
}

void kvq_polarquant_prepare_query(const void *plan, const float *q, void *qs)
{
    const pq_plan *p = plan;
    float y[KVQ_MAX_HEAD_DIM], *lut = qs;
    const int n1 = p->n[1];
    kvq_rotation_apply(&p->rot, q, y);
    for (int j = 0; j < p->d / 2; j++)
        for (int c = 0; c < n1; c++)
            lut[j * n1 + c] = y[2 * j] * p->cosv[1][c] + y[2 * j + 1] * p->sinv[1][c];
}

void kvq_polarquant_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                          float *scores)
{
    const pq_plan *p = plan;
    const float *lut = qs;
    const int n1 = p->n[1], m = p->d / 2;
    float r[KVQ_MAX_HEAD_DIM / 2];
    uint8_t c[KVQ_MAX_HEAD_DIM / 2];
    for (size_t t = 0; t < n; t++) {
        const uint8_t *rec = codes + t * p->bpv;
        level1_radii(p, rec, r);
        kvq_unpack(rec + p->off[1], (size_t)m, p->bits[1], c);
        float s = 0;
        for (int j = 0; j < m; j++) s += r[j] * lut[j * n1 + c[j]];
        scores[t] = s;
    }
}

size_t kvq_polarquant_side_bytes(const void *plan)
{
    const pq_plan *p = plan;
    size_t b = kvq_rotation_bytes(&p->rot);
    for (int l = 1; l <= PQ_L; l++)   // cos/sin tables and thresholds per level
        b += sizeof(float) * (3 * (size_t)p->n[l] - 1);
    return b;
}
