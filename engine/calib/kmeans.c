// calib/kmeans.c — k-means++ seeding + Lloyd iterations; see kmeans.h.
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "calib/kmeans.h"
#include "rng.h"

#define KM_CHUNK 1024   // rows per sgemm block: bounds the (chunk, k) scratch

// Four partial sums break the add-latency chain (the loop ran at one
// coordinate per 4 cycles on commvq's d = 128); the order is fixed, so the
// result is still the same on every run.
static double sqdist_exact(const float *a, const float *b, int d)
{
    double s[4] = {0, 0, 0, 0};
    int j = 0;
    for (; j + 4 <= d; j += 4)
        for (int u = 0; u < 4; u++) {
            double t = (double)a[j + u] - (double)b[j + u];
            s[u] += t * t;
        }
    for (; j < d; j++) {
        double t = (double)a[j] - (double)b[j];
        s[0] += t * t;
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

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

// Assignment over chunks; scratch: (KM_CHUNK, k). The argmin runs on
// cnorm - 2 x.c straight from the sgemm block (|x|^2 is the same for every
// centroid of a row, so it is added to the winner only): one pass over the
// (m, k) block instead of two.
static void assign_chunks(const float *x, const float *xnorm, size_t n, const float *c,
                          const float *cnorm, int k, int d, float *scratch, int32_t *assign,
                          float *best)
{
    for (size_t i0 = 0; i0 < n; i0 += KM_CHUNK) {
        size_t m = n - i0 < KM_CHUNK ? n - i0 : KM_CHUNK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, k, d, -2.0f,
                    x + i0 * (size_t)d, d, c, d, 0.0f, scratch, k);
        for (size_t i = 0; i < m; i++) {
            const float *row = scratch + i * (size_t)k;
            int bj = 0;
            float bv = row[0] + cnorm[0];
            for (int j = 1; j < k; j++) {
                float v = row[j] + cnorm[j];
                if (v < bv) bv = v, bj = j;
            }
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
    float *sc = malloc(sizeof(float) * KM_CHUNK * (size_t)k);
    if (!xn || !cn || !sc) {
        free(xn), free(cn), free(sc);
        return kvq_error(KVQ_ERR_NOMEM, "kmeans_assign: out of memory (n=%zu, k=%d)", n, k);
    }
    row_norms(x, n, d, xn);
    row_norms(c, (size_t)k, d, cn);
    assign_chunks(x, xn, n, c, cn, k, d, sc, assign, best);
    free(xn), free(cn), free(sc);
    return KVQ_OK;
}

// k-means++: first centroid uniform, each next one drawn with probability
// proportional to the squared distance to the nearest centroid so far.
static void seed_plusplus(const float *x, size_t n, int d, int k, kvq_rng *rng, float *c,
                          double *mind2)
{
    size_t first = (size_t)(kvq_rng_uniform(rng) * (double)n);
    if (first >= n) first = n - 1;
    memcpy(c, x + first * (size_t)d, sizeof(float) * (size_t)d);
    for (size_t i = 0; i < n; i++) mind2[i] = sqdist_exact(x + i * (size_t)d, c, d);
    for (int j = 1; j < k; j++) {
        double total = 0;
        for (size_t i = 0; i < n; i++) total += mind2[i];
        size_t pick = 0;
        if (total > 0) {
            double u = kvq_rng_uniform(rng) * total, acc = 0;
            pick = n - 1;
            for (size_t i = 0; i < n; i++) {
                acc += mind2[i];
                if (acc > u && mind2[i] > 0) {
                    pick = i;
                    break;
                }
            }
        } else {
            // every point coincides with a centroid already: any point will do
            pick = (size_t)(kvq_rng_uniform(rng) * (double)n);
            if (pick >= n) pick = n - 1;
        }
        float *cj = c + (size_t)j * d;
        memcpy(cj, x + pick * (size_t)d, sizeof(float) * (size_t)d);
        for (size_t i = 0; i < n; i++) {
            double t = sqdist_exact(x + i * (size_t)d, cj, d);
            if (t < mind2[i]) mind2[i] = t;
        }
    }
}

void kvq_kmeans_result_free(kvq_kmeans_result *r)
{
    if (!r) return;
    free(r->centroids);
    free(r->assign);
    free(r->inertia);
    memset(r, 0, sizeof *r);
}

kvq_status kvq_kmeans(const float *x, size_t n, int d, const kvq_kmeans_opts *o,
                      kvq_kmeans_result *r)
{
    memset(r, 0, sizeof *r);
    if (d < 1) return kvq_error(KVQ_ERR_ARG, "kmeans: d=%d (expected >= 1)", d);
    if (o->k < 1 || (size_t)o->k > n)
        return kvq_error(KVQ_ERR_ARG, "kmeans: k=%d with %zu points (expected 1..n)", o->k, n);
    if (o->max_iter < 1)
        return kvq_error(KVQ_ERR_ARG, "kmeans: max_iter=%d (expected >= 1)", o->max_iter);
    for (size_t i = 0; i < n * (size_t)d; i++)
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
        // A partial Fisher-Yates shuffle draws the training rows; they are then
        // taken in input order so the sample is a plain subset of x.
        size_t ns = (size_t)k * ppc;
        uint32_t *idx = malloc(sizeof(uint32_t) * n);
        xs = malloc(sizeof(float) * ns * (size_t)d);
        if (!idx || !xs || n > UINT32_MAX) {
            free(idx), free(xs);
            return kvq_error(KVQ_ERR_NOMEM, "kmeans: out of memory (sample of %zu from %zu rows)", ns, n);
        }
        for (size_t i = 0; i < n; i++) idx[i] = (uint32_t)i;
        for (size_t i = 0; i < ns; i++) {
            size_t j = i + (size_t)(kvq_rng_uniform(&rng) * (double)(n - i));
            if (j >= n) j = n - 1;
            uint32_t t = idx[i];
            idx[i] = idx[j], idx[j] = t;
        }
        qsort(idx, ns, sizeof *idx, cmp_u32);
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
    float *sc = malloc(sizeof(float) * KM_CHUNK * (size_t)k);
    int32_t *prev = malloc(sizeof(int32_t) * n), *count = malloc(sizeof(int32_t) * (size_t)k);
    double *dist = malloc(sizeof(double) * n), *sum = malloc(sizeof(double) * (size_t)k * d);
    kvq_status st = KVQ_OK;
    if (!r->centroids || !r->assign || !r->inertia || !xn || !cn || !sc || !prev || !count ||
        !dist || !sum) {
        st = kvq_error(KVQ_ERR_NOMEM, "kmeans: out of memory (n=%zu, k=%d, d=%d)", n, k, d);
        goto done;
    }
    seed_plusplus(x, n, d, k, &rng, r->centroids, dist);
    row_norms(x, n, d, xn);
    kvq_progress_begin(o->progress);

    for (int it = 0; it < o->max_iter; it++) {
        row_norms(r->centroids, (size_t)k, d, cn);
        assign_chunks(x, xn, n, r->centroids, cn, k, d, sc, r->assign, NULL);
        // sgemm rounding may pick a centroid that is not really nearer than the
        // previous one; keeping the previous one then makes inertia provably
        // non-increasing.
        int changed = 0;
        for (size_t i = 0; i < n; i++) {
            const float *xi = x + i * (size_t)d;
            dist[i] = sqdist_exact(xi, r->centroids + (size_t)r->assign[i] * d, d);
            if (it > 0 && r->assign[i] != prev[i]) {
                double dp = sqdist_exact(xi, r->centroids + (size_t)prev[i] * d, d);
                if (dp <= dist[i]) {
                    r->assign[i] = prev[i];
                    dist[i] = dp;
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
            memcpy(r->centroids + (size_t)j * d, x + far * (size_t)d, sizeof(float) * (size_t)d);
            r->n_reseeded++;
            changed++;
        }
        double inertia = 0;
        for (size_t i = 0; i < n; i++) inertia += dist[i];
        r->inertia[it] = inertia;
        r->n_iter = it + 1;
        memcpy(prev, r->assign, sizeof(int32_t) * n);

        // update: means in double, so the float centroids are the rounded means
        memset(sum, 0, sizeof(double) * (size_t)k * d);
        for (size_t i = 0; i < n; i++) {
            double *s = sum + (size_t)r->assign[i] * d;
            const float *xi = x + i * (size_t)d;
            int t = 0;
            // fixed-width inner loop: GCC's -O2 vectorizer takes it (element-wise, same sums)
            for (; t + 4 <= d; t += 4)
                for (int u = 0; u < 4; u++) s[t + u] += xi[t + u];
            for (; t < d; t++) s[t] += xi[t];
        }
        for (int j = 0; j < k; j++)
            if (count[j])
                for (int t = 0; t < d; t++)
                    r->centroids[(size_t)j * d + t] = (float)(sum[(size_t)j * d + t] / count[j]);

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
    if (!st && xs) st = kvq_kmeans_assign(x_all, n_all, r->centroids, k, d, r->assign, NULL);
done:
    free(xn), free(cn), free(sc), free(prev), free(count), free(dist), free(sum), free(xs);
    if (st) kvq_kmeans_result_free(r);
    return st;
}
