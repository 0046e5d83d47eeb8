// calib/kmeans.c — k-means++ seeding + Lloyd iterations; see kmeans.h.
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "calib/kmeans.h"
#include "calib/rowops.h"
#include "rng.h"

// Rows per sgemm tile: the (tile, k) block (256 KB at k = 256) stays in L2
// for the argmin that reads it back, and no scratch grows with n.
#define KM_TILE 256

// Exact squared distances: double, 16 fixed partial sums (calib/rowops.h).
#define sqdist_exact kvq_row_sqdist

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void row_norms(const float *x, size_t n, int d, float *out)
{
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
        out[i] = (float)s;
    }
}

void kvq_kmeans_sqdist(const float *x, const float *xnorm, size_t n, const float *c,
                       const float *cnorm, int k, int d, float *dist)
{
    // dist = -2 x c^T, then add the norms: one sgemm instead of n*k dot loops.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, k, d, -2.0f, x, d, c, d, 0.0f,
                dist, k);
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            float v = dist[i * (size_t)k + j] + xnorm[i] + cnorm[j];
            dist[i * (size_t)k + j] = v > 0 ? v : 0;
        }
}

// ct (d, k) = c (k, d) transposed, for kvq_kmeans_scores_small.
static void transpose_centroids(const float *c, int k, int d, float *ct)
{
    for (int j = 0; j < k; j++)
        for (int t = 0; t < d; t++) ct[(size_t)t * k + j] = c[(size_t)j * d + t];
}

// sc (m, k) = -2 x c^T for a tile of rows: the small-d kernel (ct: the
// centroids transposed) up to KVQ_KMEANS_SMALL_D dimensions, else one sgemm.
static void tile_scores(const float *x, size_t m, const float *c, const float *ct, int k, int d, float *sc)
{
    if (d <= KVQ_KMEANS_SMALL_D)
        kvq_kmeans_scores_small(x, m, d, ct, k, sc);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, k, d, -2.0f, x, d, c, d, 0.0f, sc, k);
}

// Assignment over tiles of KM_TILE rows; scratch: (KM_TILE, k). The argmin
// runs on cnorm - 2 x.c straight from the sgemm block (|x|^2 is the same for
// every centroid of a row, so it is added to the winner only): one pass over
// the block instead of two, while it is still in cache.
static void assign_chunks(const float *x, const float *xnorm, size_t n, const float *c, const float *ct,
                          const float *cnorm, int k, int d, float *scratch, int32_t *assign,
                          float *best)
{
    for (size_t i0 = 0; i0 < n; i0 += KM_TILE) {
        size_t m = n - i0 < KM_TILE ? n - i0 : KM_TILE;
        tile_scores(x + i0 * (size_t)d, m, c, ct, k, d, scratch);
        for (size_t i = 0; i < m; i++) {
            const float *row = scratch + i * (size_t)k;
            float bv;
            int bj = kvq_kmeans_argmin(row, cnorm, k, &bv);
            assign[i0 + i] = bj;
            if (best) {
                float v = bv + xnorm[i0 + i];
                best[i0 + i] = v > 0 ? v : 0;
            }
        }
    }
}

kvq_status kvq_kmeans_assign(const float *x, size_t n, const float *c, int k, int d,
                             int32_t *assign, float *best)
{
    if (k < 1 || d < 1) return kvq_error(KVQ_ERR_ARG, "kmeans_assign: k=%d d=%d (expected >= 1)", k, d);
    float *xn = malloc(sizeof(float) * (n ? n : 1));
    float *cn = malloc(sizeof(float) * (size_t)k);
    float *sc = malloc(sizeof(float) * KM_TILE * (size_t)k), *ct = malloc(sizeof(float) * (size_t)k * d);
    if (!xn || !cn || !sc || !ct) {
        free(xn), free(cn), free(sc), free(ct);
        return kvq_error(KVQ_ERR_NOMEM, "kmeans_assign: out of memory (n=%zu, k=%d)", n, k);
    }
    if (best) row_norms(x, n, d, xn);   // read only for best
    row_norms(c, (size_t)k, d, cn);
    transpose_centroids(c, k, d, ct);
    assign_chunks(x, xn, n, c, ct, cn, k, d, sc, assign, best);
    free(xn), free(cn), free(sc), free(ct);
    return KVQ_OK;
}

// ns of the n rows (ns <= n), drawn with rng by a partial Fisher-Yates
// shuffle, in increasing order: idx (n) scratch, the first ns entries out.
static void sample_rows(size_t n, size_t ns, kvq_rng *rng, uint32_t *idx)
{
    for (size_t i = 0; i < n; i++) idx[i] = (uint32_t)i;
    for (size_t i = 0; i < ns; i++) {
        size_t j = i + (size_t)(kvq_rng_uniform(rng) * (double)(n - i));
        if (j >= n) j = n - 1;
        uint32_t t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
    qsort(idx, ns, sizeof *idx, cmp_u32);
}

// k-means++: first centroid uniform, each next one drawn with probability
// proportional to the squared distance to the nearest centroid so far. The
// running total is summed in the same pass that lowers mind2 and kept per
// row (cum: the prefix sums, in the order a pass over mind2 would add them),
// so the draw is a binary search for the first prefix above u instead of a
// second pass; a prefix that rises past u comes from a row with mind2 > 0,
// so the pick is the linear scan's.
static inline __attribute__((always_inline)) void seed_plusplus_d(const float *x, size_t n, int d, int k,
                                                                  kvq_rng *rng, float *c, double *mind2,
                                                                  double *cum)
{
    size_t first = (size_t)(kvq_rng_uniform(rng) * (double)n);
    if (first >= n) first = n - 1;
    memcpy(c, x + first * (size_t)d, sizeof(float) * (size_t)d);
    double total = 0;
    for (size_t i = 0; i < n; i++) total += mind2[i] = sqdist_exact(x + i * (size_t)d, c, d), cum[i] = total;
    for (int j = 1; j < k; j++) {
        size_t pick = 0;
        if (total > 0) {
            double u = kvq_rng_uniform(rng) * total;
            size_t lo = 0, hi = n - 1;   // first i with cum[i] > u, n - 1 if none
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (cum[mid] > u) hi = mid;
                else lo = mid + 1;
            }
            pick = lo;
        } else {
            // every point coincides with a centroid already: any point will do
            pick = (size_t)(kvq_rng_uniform(rng) * (double)n);
            if (pick >= n) pick = n - 1;
        }
        float *cj = c + (size_t)j * d;
        memcpy(cj, x + pick * (size_t)d, sizeof(float) * (size_t)d);
        total = 0;
        for (size_t i = 0; i < n; i++) {
            double t = sqdist_exact(x + i * (size_t)d, cj, d);
            if (t < mind2[i]) mind2[i] = t;
            total += mind2[i];
            cum[i] = total;
        }
    }
}

static void seed_plusplus(const float *x, size_t n, int d, int k, kvq_rng *rng, float *c, double *mind2, double *cum)
{
    if (d == 4) seed_plusplus_d(x, n, 4, k, rng, c, mind2, cum);
    else if (d == 2) seed_plusplus_d(x, n, 2, k, rng, c, mind2, cum);
    else seed_plusplus_d(x, n, d, k, rng, c, mind2, cum);
}

// k-means++ costs k passes over its rows; above KVQ_KMEANS_SEED_PPC rows per
// centroid (and KVQ_KMEANS_SEED_MIN rows) it draws from a seeded subset of
// that many (with 65536 rows and k = 256 the full pass took as long as the
// Lloyd iterations). mind2: (n).
static kvq_status seed_centroids(const float *x, size_t n, int d, int k, kvq_rng *rng, float *c,
                                 double *mind2)
{
    size_t ns = (size_t)k * KVQ_KMEANS_SEED_PPC;
    if (ns < KVQ_KMEANS_SEED_MIN) ns = KVQ_KMEANS_SEED_MIN;
    double *cum = malloc(sizeof(double) * (n < ns ? n : ns));
    if (!cum) return kvq_error(KVQ_ERR_NOMEM, "kmeans: out of memory (seeding from %zu rows)", n < ns ? n : ns);
    if (n <= ns) {
        seed_plusplus(x, n, d, k, rng, c, mind2, cum);
        free(cum);
        return KVQ_OK;
    }
    uint32_t *idx = malloc(sizeof(uint32_t) * n);
    float *xs = malloc(sizeof(float) * ns * (size_t)d);
    if (!idx || !xs) {
        free(idx), free(xs), free(cum);
        return kvq_error(KVQ_ERR_NOMEM, "kmeans: out of memory (seeding from %zu rows)", ns);
    }
    sample_rows(n, ns, rng, idx);
    for (size_t i = 0; i < ns; i++)
        memcpy(xs + i * (size_t)d, x + (size_t)idx[i] * d, sizeof(float) * (size_t)d);
    seed_plusplus(xs, ns, d, k, rng, c, mind2, cum);
    free(idx), free(xs), free(cum);
    return KVQ_OK;
}

void kvq_kmeans_result_free(kvq_kmeans_result *r)
{
    if (!r) return;
    free(r->centroids);
    free(r->assign);
    free(r->inertia);
    memset(r, 0, sizeof *r);
}

// ---- Hamerly's bounds ----
// G. Hamerly, "Making k-means even faster" (SDM 2010): per row an upper bound
// ub on the distance to its centroid and a lower bound lb on the distance to
// every other one; per centroid half the distance to its nearest other one.
// A row with ub <= max(lb, half[a]) cannot change centroid, so only the other
// rows go through the sgemm tiles (on 65536 vecinfer keys, k = 256, d = 4:
// half of the row scans of 25 iterations). Bounds move as the centroids move.
// The sgemm's rounding is covered by a margin (a bound on the float dot
// product's error), so a skipped row is one the full scan would keep too, up
// to near-ties inside that margin.
#define KM_BOUNDS_MIN_K 16
#define KM_BOUNDS_MAX_K 1024   // the (k, k) centroid distances stay small
// Neighbour lists on top, for d <= KVQ_KMEANS_SMALL_D and k in
// KM_BALL_MIN_K..KM_BALL_MAX_K: a centroid closer to x than its own centroid
// a (distance ub) lies within 2 ub of a, so a row Hamerly's test cannot settle
// and with 2 ub <= T[a] scans only the centroids within T[a] of a, and every
// other one is at least T[a] - ub away (its lower bound). T[a] is
// KM_BALL_RADIUS times the mean ub of a's rows (2 to 4.5 tried; 2.5 was the
// fastest): on vecinfer's 65536 keys (S1), k = 256, d = 4, 85% of the rows
// the bounds leave take a list, 36 centroids long on average; the others
// scan all k. The picks are the full scan's (S1's codebooks are bit-identical).
// (Yinyang's group bounds, tried first, left a quarter of the groups to scan
// but their per-row bookkeeping cost more than the 16-wide scan it saved.)
#define KM_BALL_MIN_K 64
#define KM_BALL_MAX_K 256   // the (k, k, d) lists stay in L2/L3
#define KM_BALL_RADIUS 2.5
typedef struct {
    double *ub, *lb, *half, *drift;   // (n), (n), (k), (k)
    float *cold, *cc, *xt, *xtn;      // (k, d) centroids the bounds refer to, (k, k), (KM_TILE, d), (KM_TILE)
    uint32_t *rows;                   // (KM_TILE) rows gathered into xt
    int kp;                           // list stride: k rounded up to 16 (0: no lists)
    float *nct, *ncn;                 // (k, d, kp) each centroid's list transposed, (k, kp) its norms (+inf pad)
    int32_t *nidx, *nlen;             // (k, kp) the centroids listed, (k) list lengths padded to 16
    double *T, *tsum;                 // (k) list radius, (k) scratch
} km_bounds;

static double sgemm_margin(int d, double xn, double cn)
{
    return 1.2e-7 * (d + 4) * (xn + cn);
}

static void bounds_scan(km_bounds *b, size_t m, const float *c, const float *ct, const float *cn, double cnmax,
                        int k, int d, float *sc, int32_t *assign)
{
    bool small = d <= KVQ_KMEANS_SMALL_D;
    if (!small) tile_scores(b->xt, m, c, ct, k, d, sc);
    for (size_t i = 0; i < m; i++) {
        float bv, sv;
        size_t r = b->rows[i];
        assign[r] = small ? kvq_kmeans_argmin2_small(b->xt + i * (size_t)d, d, ct, cn, k, &bv, &sv)
                          : kvq_kmeans_argmin2(sc + i * (size_t)k, cn, k, &bv, &sv);
        double s2 = (double)sv + b->xtn[i] - sgemm_margin(d, b->xtn[i], cnmax);
        b->lb[r] = s2 > 0 ? sqrt(s2) : 0;
    }
}

// The lists for this iteration: T[a] from the mean ub of a's rows, every
// centroid whose (sgemm) squared distance to a is within T[a]^2 plus the
// rounding margin, in index order (so ties still go to the lower index),
// padded to 16 with +inf norms that never win.
static void ball_lists(km_bounds *b, const float *c, const float *cn, double cnmax, int k, int d, size_t n,
                       const int32_t *prev)
{
    const int kp = b->kp;
    memset(b->tsum, 0, sizeof(double) * (size_t)k);
    int32_t *cnt = b->nlen;   // counts first, lengths after
    memset(cnt, 0, sizeof(int32_t) * (size_t)k);
    for (size_t i = 0; i < n; i++) b->tsum[prev[i]] += b->ub[i], cnt[prev[i]]++;
    double mg = sgemm_margin(d, cnmax, cnmax);
    for (int a = 0; a < k; a++) {
        b->T[a] = cnt[a] ? KM_BALL_RADIUS * b->tsum[a] / cnt[a] : 0;
        double t2 = b->T[a] * b->T[a] + mg;
        const float *cc = b->cc + (size_t)a * k;
        float *nct = b->nct + (size_t)a * d * kp, *ncn = b->ncn + (size_t)a * kp;
        int32_t *idx = b->nidx + (size_t)a * kp;
        int L = 0;
        for (int j = 0; j < k; j++) {
            if (j != a && cc[j] > t2) continue;
            for (int t = 0; t < d; t++) nct[(size_t)t * kp + L] = c[(size_t)j * d + t];
            ncn[L] = cn[j], idx[L++] = j;
        }
        for (; L % 16; L++) {
            for (int t = 0; t < d; t++) nct[(size_t)t * kp + L] = 0;
            ncn[L] = INFINITY, idx[L] = a;
        }
        b->nlen[a] = L;
    }
}

// The assignment step: all = scan every row (first iteration), else rows the
// bounds cannot settle; the others keep prev.
static inline __attribute__((always_inline)) void
assign_bounds_d(km_bounds *b, const float *x, const float *xn, size_t n, const float *c, const float *ct, const float *cn,
                int k, int d, float *sc, const int32_t *prev, int32_t *assign, bool all)
{
    double cnmax = 0;
    for (int j = 0; j < k; j++) cnmax = cn[j] > cnmax ? cn[j] : cnmax;
    if (!all) {
        kvq_kmeans_sqdist(c, cn, (size_t)k, c, cn, k, d, b->cc);
        for (int j = 0; j < k; j++) {
            double m = INFINITY;
            for (int j2 = 0; j2 < k; j2++)
                if (j2 != j && b->cc[(size_t)j * k + j2] < m) m = b->cc[(size_t)j * k + j2];
            m -= sgemm_margin(d, cnmax, cnmax);
            b->half[j] = m > 0 ? 0.5 * sqrt(m) : 0;
        }
        if (b->kp) ball_lists(b, c, cn, cnmax, k, d, n, prev);
    }
    size_t mt = 0;
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * (size_t)d;
        if (!all) {
            int a = prev[i];
            double z = b->lb[i] > b->half[a] ? b->lb[i] : b->half[a];
            assign[i] = a;
            if (b->ub[i] <= z) continue;
            b->ub[i] = sqrt(sqdist_exact(xi, c + (size_t)a * d, d));
            if (b->ub[i] <= z) continue;
            if (b->kp && 2 * b->ub[i] <= b->T[a]) {
                float bv, sv;
                const int kp = b->kp;
                int bl = kvq_kmeans_argmin2_small_ld(xi, d, b->nct + (size_t)a * d * kp, kp,
                                                     b->ncn + (size_t)a * kp, b->nlen[a], &bv, &sv);
                assign[i] = b->nidx[(size_t)a * kp + bl];
                double s2 = (double)sv + xn[i] - sgemm_margin(d, xn[i], cnmax), rest = b->T[a] - b->ub[i];
                double l2 = s2 > 0 ? sqrt(s2) : 0;
                b->lb[i] = l2 < rest ? l2 : rest;
                continue;
            }
        }
        memcpy(b->xt + mt * d, xi, sizeof(float) * (size_t)d);
        b->xtn[mt] = xn[i];
        b->rows[mt++] = (uint32_t)i;
        if (mt == KM_TILE) bounds_scan(b, mt, c, ct, cn, cnmax, k, d, sc, assign), mt = 0;
    }
    if (mt) bounds_scan(b, mt, c, ct, cn, cnmax, k, d, sc, assign);
}

// assign_bounds_d with vecinfer's d = 4 and 2 made constants, so that the
// exact distances and row copies in its loop unroll (d = 4 took a fifth of
// the bookkeeping in the loop over d).
static void assign_bounds(km_bounds *b, const float *x, const float *xn, size_t n, const float *c,
                          const float *ct, const float *cn, int k, int d, float *sc, const int32_t *prev, int32_t *assign, bool all)
{
    if (d == 4) assign_bounds_d(b, x, xn, n, c, ct, cn, k, 4, sc, prev, assign, all);
    else if (d == 2) assign_bounds_d(b, x, xn, n, c, ct, cn, k, 2, sc, prev, assign, all);
    else assign_bounds_d(b, x, xn, n, c, ct, cn, k, d, sc, prev, assign, all);
}

// dist[i] = exact squared distance of row i to its centroid, and the update
// step's per-centroid sums (sum zeroed here): the two row passes of a Lloyd
// iteration outside the assignment, with the same d = 4 / 2 constants.
static inline __attribute__((always_inline)) void lloyd_dists_d(const float *x, size_t n, int d, const float *c,
                                                                const int32_t *assign, double *dist)
{
    for (size_t i = 0; i < n; i++) dist[i] = sqdist_exact(x + i * (size_t)d, c + (size_t)assign[i] * d, d);
}

static void lloyd_dists(const float *x, size_t n, int d, const float *c, const int32_t *assign, double *dist)
{
    if (d == 4) lloyd_dists_d(x, n, 4, c, assign, dist);
    else if (d == 2) lloyd_dists_d(x, n, 2, c, assign, dist);
    else lloyd_dists_d(x, n, d, c, assign, dist);
}

static inline __attribute__((always_inline)) void lloyd_sums_d(const float *x, size_t n, int d, int k,
                                                               const int32_t *assign, double *sum)
{
    memset(sum, 0, sizeof(double) * (size_t)k * d);
    for (size_t i = 0; i < n; i++) kvq_row_acc(sum + (size_t)assign[i] * d, x + i * (size_t)d, d);
}

static void lloyd_sums(const float *x, size_t n, int d, int k, const int32_t *assign, double *sum)
{
    if (d == 4) lloyd_sums_d(x, n, 4, k, assign, sum);
    else if (d == 2) lloyd_sums_d(x, n, 2, k, assign, sum);
    else lloyd_sums_d(x, n, d, k, assign, sum);
}

// After the update step: ub grows by its centroid's move, lb shrinks by the
// largest move of any other centroid.
static void bounds_move(km_bounds *b, const float *c, int k, int d, size_t n, const int32_t *assign)
{
    double m1 = 0, m2 = 0;
    int j1 = -1;
    for (int j = 0; j < k; j++) {
        double t = sqrt(sqdist_exact(c + (size_t)j * d, b->cold + (size_t)j * d, d));
        b->drift[j] = t;
        if (t > m1) m2 = m1, m1 = t, j1 = j;
        else if (t > m2) m2 = t;
    }
    for (size_t i = 0; i < n; i++) {
        b->ub[i] += b->drift[assign[i]];
        double dl = assign[i] == j1 ? m2 : m1;
        b->lb[i] = b->lb[i] > dl ? b->lb[i] - dl : 0;
    }
}

static void bounds_free(km_bounds *b)
{
    free(b->ub), free(b->lb), free(b->half), free(b->drift), free(b->cold), free(b->cc), free(b->xt), free(b->xtn);
    free(b->rows), free(b->nct), free(b->ncn), free(b->nidx), free(b->nlen), free(b->T), free(b->tsum);
}

// The reference assignment: every distance exact (double, coordinate order),
// first minimum. What assign_chunks computes through sgemm, up to rounding.
static void assign_scalar(const float *x, size_t n, const float *c, int k, int d, int32_t *assign)
{
    for (size_t i = 0; i < n; i++) {
        int bj = 0;
        double bv = sqdist_exact(x + i * (size_t)d, c, d);
        for (int j = 1; j < k; j++) {
            double v = sqdist_exact(x + i * (size_t)d, c + (size_t)j * d, d);
            if (v < bv) bv = v, bj = j;
        }
        assign[i] = bj;
    }
}

// Index of the first NaN or Inf of x (m), or m: blocks of 256 tested
// without a branch per value (the exponent bits all ones), which the
// compiler vectorizes; isfinite's early exit kept the plain loop scalar
// (commvq calls k-means 128 times per stream on the same 1024 x 128 floats).
static size_t first_nonfinite(const float *x, size_t m)
{
    size_t i = 0;
    for (; i + 256 <= m; i += 256) {
        uint32_t bad = 0;
        for (int j = 0; j < 256; j++) {
            uint32_t u;
            memcpy(&u, x + i + j, sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad) return i;
    }
    return i;   // the caller's isfinite loop takes it from here
}

// reference: assignments through assign_scalar (kvq_kmeans_reference).
static kvq_status kmeans_run(const float *x, size_t n, int d, const kvq_kmeans_opts *o,
                             kvq_kmeans_result *r, bool reference)
{
    memset(r, 0, sizeof *r);
    if (d < 1) return kvq_error(KVQ_ERR_ARG, "kmeans: d=%d (expected >= 1)", d);
    if (o->k < 1 || (size_t)o->k > n)
        return kvq_error(KVQ_ERR_ARG, "kmeans: k=%d with %zu points (expected 1..n)", o->k, n);
    if (o->max_iter < 1)
        return kvq_error(KVQ_ERR_ARG, "kmeans: max_iter=%d (expected >= 1)", o->max_iter);
    size_t bad = first_nonfinite(x, n * (size_t)d);
    for (size_t i = bad; i < n * (size_t)d; i++)
        if (!isfinite(x[i]))
            return kvq_error(KVQ_ERR_NONFINITE, "kmeans: input row %zu column %d is %g",
                             i / (size_t)d, (int)(i % (size_t)d), (double)x[i]);
    const int k = o->k;
    const size_t n_all = n;
    const float *x_all = x;
    float *xs = NULL;
    size_t ppc = o->max_points_per_centroid == 0 ? KVQ_KMEANS_MAX_PPC
                 : o->max_points_per_centroid < 0 ? 0 : (size_t)o->max_points_per_centroid;
    kvq_rng rng;
    kvq_rng_seed2(&rng, o->seed, 0x6b6d65616e73ULL);   // "kmeans"
    if (ppc && n > (size_t)k * ppc) {
        // The training rows are a seeded subset, taken in input order.
        size_t ns = (size_t)k * ppc;
        uint32_t *idx = malloc(sizeof(uint32_t) * n);
        xs = malloc(sizeof(float) * ns * (size_t)d);
        if (!idx || !xs || n > UINT32_MAX) {
            free(idx), free(xs);
            return kvq_error(KVQ_ERR_NOMEM, "kmeans: out of memory (sample of %zu from %zu rows)", ns, n);
        }
        sample_rows(n, ns, &rng, idx);
        for (size_t i = 0; i < ns; i++)
            memcpy(xs + i * (size_t)d, x + (size_t)idx[i] * d, sizeof(float) * (size_t)d);
        free(idx);
        x = xs;
        n = ns;
    }
    r->n_train = n;
    r->k = k;
    r->d = d;
    r->centroids = malloc(sizeof(float) * (size_t)k * d);
    r->assign = malloc(sizeof(int32_t) * n_all);
    r->inertia = calloc((size_t)o->max_iter, sizeof(double));
    float *xn = malloc(sizeof(float) * n), *cn = malloc(sizeof(float) * (size_t)k);
    float *sc = malloc(sizeof(float) * KM_TILE * (size_t)k), *ct = malloc(sizeof(float) * (size_t)k * d);
    int32_t *prev = malloc(sizeof(int32_t) * n), *count = malloc(sizeof(int32_t) * (size_t)k);
    double *dist = malloc(sizeof(double) * n), *sum = malloc(sizeof(double) * (size_t)k * d);
    kvq_status st = KVQ_OK;
    km_bounds kb = {0};
    if (!r->centroids || !r->assign || !r->inertia || !xn || !cn || !sc || !ct || !prev || !count ||
        !dist || !sum) {
        st = kvq_error(KVQ_ERR_NOMEM, "kmeans: out of memory (n=%zu, k=%d, d=%d)", n, k, d);
        goto done;
    }
    const bool bounded = !reference && k >= KM_BOUNDS_MIN_K && k <= KM_BOUNDS_MAX_K;
    if (bounded) {
        kb.ub = malloc(sizeof(double) * n), kb.lb = malloc(sizeof(double) * n);
        kb.half = malloc(sizeof(double) * (size_t)k), kb.drift = malloc(sizeof(double) * (size_t)k);
        kb.cold = malloc(sizeof(float) * (size_t)k * d), kb.cc = malloc(sizeof(float) * (size_t)k * k);
        kb.xt = malloc(sizeof(float) * KM_TILE * (size_t)d), kb.xtn = malloc(sizeof(float) * KM_TILE);
        kb.rows = malloc(sizeof(uint32_t) * KM_TILE);
        if (d <= KVQ_KMEANS_SMALL_D && k >= KM_BALL_MIN_K && k <= KM_BALL_MAX_K) {
            kb.kp = (k + 15) / 16 * 16;
            kb.nct = malloc(sizeof(float) * (size_t)k * d * kb.kp), kb.ncn = malloc(sizeof(float) * (size_t)k * kb.kp);
            kb.nidx = malloc(sizeof(int32_t) * (size_t)k * kb.kp), kb.nlen = malloc(sizeof(int32_t) * (size_t)k);
            kb.T = malloc(sizeof(double) * (size_t)k), kb.tsum = malloc(sizeof(double) * (size_t)k);
        }
        if (!kb.ub || !kb.lb || !kb.half || !kb.drift || !kb.cold || !kb.cc || !kb.xt || !kb.xtn || !kb.rows ||
            (kb.kp && (!kb.nct || !kb.ncn || !kb.nidx || !kb.nlen || !kb.T || !kb.tsum))) {
            st = kvq_error(KVQ_ERR_NOMEM, "kmeans: out of memory (bounds for n=%zu, k=%d)", n, k);
            goto done;
        }
    }
    if ((st = seed_centroids(x, n, d, k, &rng, r->centroids, dist))) goto done;
    if (bounded) row_norms(x, n, d, xn);   // only the bounds read |x|^2 (assign_chunks adds it to best only)
    kvq_progress_begin(o->progress);

    for (int it = 0; it < o->max_iter; it++) {
        row_norms(r->centroids, (size_t)k, d, cn);
        transpose_centroids(r->centroids, k, d, ct);
        if (reference) {
            assign_scalar(x, n, r->centroids, k, d, r->assign);
        } else if (bounded) {
            memcpy(kb.cold, r->centroids, sizeof(float) * (size_t)k * d);
            assign_bounds(&kb, x, xn, n, r->centroids, ct, cn, k, d, sc, prev, r->assign, it == 0);
        } else {
            assign_chunks(x, xn, n, r->centroids, ct, cn, k, d, sc, r->assign, NULL);
        }
        // sgemm rounding may pick a centroid that is not really nearer than the
        // previous one; keeping the previous one then makes inertia provably
        // non-increasing.
        int changed = 0;
        lloyd_dists(x, n, d, r->centroids, r->assign, dist);
        for (size_t i = 0; it > 0 && i < n; i++) {
            const float *xi = x + i * (size_t)d;
            if (r->assign[i] != prev[i]) {
                double dp = sqdist_exact(xi, r->centroids + (size_t)prev[i] * d, d);
                if (dp <= dist[i]) {
                    r->assign[i] = prev[i];
                    dist[i] = dp;
                    if (bounded) kb.lb[i] = 0;   // the scan's second best was about another centroid
                } else {
                    changed++;
                }
            }
        }
        // Re-seed empty clusters with the point farthest from its centroid
        // (taken from a cluster of size > 1), which only lowers inertia.
        memset(count, 0, sizeof(int32_t) * (size_t)k);
        for (size_t i = 0; i < n; i++) count[r->assign[i]]++;
        for (int j = 0; j < k; j++) {
            if (count[j]) continue;
            size_t far = n;
            for (size_t i = 0; i < n; i++)
                if (count[r->assign[i]] > 1 && (far == n || dist[i] > dist[far])) far = i;
            if (far == n) break;   // fewer distinct points than k: nothing to split
            count[r->assign[far]]--;
            r->assign[far] = j;
            count[j] = 1;
            dist[far] = 0;
            if (bounded) kb.lb[far] = 0;
            memcpy(r->centroids + (size_t)j * d, x + far * (size_t)d, sizeof(float) * (size_t)d);
            r->n_reseeded++;
            changed++;
        }
        double inertia = 0;
        for (size_t i = 0; i < n; i++) inertia += dist[i];
        r->inertia[it] = inertia;
        r->n_iter = it + 1;
        if (bounded) kvq_row_sqrt(kb.ub, dist, n);
        memcpy(prev, r->assign, sizeof(int32_t) * n);

        // update: means in double, so the float centroids are the rounded means
        lloyd_sums(x, n, d, k, r->assign, sum);
        for (int j = 0; j < k; j++)
            if (count[j])
                for (int t = 0; t < d; t++)
                    r->centroids[(size_t)j * d + t] = (float)(sum[(size_t)j * d + t] / count[j]);
        if (bounded) bounds_move(&kb, r->centroids, k, d, n, r->assign);

        if (kvq_progress_report(o->progress, (double)(it + 1) / o->max_iter, "kmeans")) {
            st = kvq_error(KVQ_ERR_CANCELLED, "kmeans: cancelled at iteration %d", it + 1);
            goto done;
        }
        if (it > 0 && changed == 0) break;
        if (it > 0 && o->tol > 0) {
            double before = r->inertia[it - 1];
            if (before <= 0 || (before - inertia) / before < o->tol) break;
        }
    }
    // assign is the assignment the final centroids are the means of; with a
    // sample it is recomputed for every input row against those centroids.
    if (!st && xs && reference) assign_scalar(x_all, n_all, r->centroids, k, d, r->assign);
    else if (!st && xs) st = kvq_kmeans_assign(x_all, n_all, r->centroids, k, d, r->assign, NULL);
done:
    free(xn), free(cn), free(sc), free(ct), free(prev), free(count), free(dist), free(sum), free(xs);
    bounds_free(&kb);
    if (st) kvq_kmeans_result_free(r);
    return st;
}

kvq_status kvq_kmeans(const float *x, size_t n, int d, const kvq_kmeans_opts *o,
                      kvq_kmeans_result *r)
{
    return kmeans_run(x, n, d, o, r, false);
}

kvq_status kvq_kmeans_reference(const float *x, size_t n, int d, const kvq_kmeans_opts *o,
                                kvq_kmeans_result *r)
{
    return kmeans_run(x, n, d, o, r, true);
}
