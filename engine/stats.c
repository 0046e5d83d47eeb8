// stats.c — norms, outlier channels and covariance spectrum of one head.
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "stats.h"

#define STATS_CHUNK 1024   // rows centered per dsyrk call: 1 MB of doubles at d = 128

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void kvq_head_stats_free(kvq_head_stats *st)
{
    free(st->norms);
    free(st->chan_max);
    free(st->eig);
    memset(st, 0, sizeof *st);
}

kvq_status kvq_head_stats_compute(const float *x, int n, int d, kvq_head_stats *st)
{
    memset(st, 0, sizeof *st);
    if (n <= 0 || d <= 0) return kvq_error(KVQ_ERR_ARG, "stats: empty input (%d x %d)", n, d);
    st->n = n;
    st->d = d;
    st->norms = malloc(sizeof(float) * (size_t)n);
    st->chan_max = calloc((size_t)d, sizeof(float));
    st->eig = malloc(sizeof(float) * (size_t)d);
    double *mean = calloc((size_t)d, sizeof(double));
    const int chunk = n < STATS_CHUNK ? n : STATS_CHUNK;
    double *xc = malloc(sizeof(double) * (size_t)chunk * (size_t)d);
    double *cov = malloc(sizeof(double) * (size_t)d * (size_t)d);
    float *covf = malloc(sizeof(float) * (size_t)d * (size_t)d);
    float *sorted = malloc(sizeof(float) * (size_t)d);
    kvq_status s = KVQ_OK;
    if (!st->norms || !st->chan_max || !st->eig || !mean || !xc || !cov || !covf || !sorted) {
        s = kvq_error(KVQ_ERR_NOMEM, "stats: out of memory");
        goto out;
    }
    double sum = 0, sum2 = 0;
    // Rows four at a time: each row's |x|^2 still sums in channel order (same
    // bits as one row at a time), but four dependency chains are in flight
    // instead of one.
    for (int i0 = 0; i0 < n; i0 += 4) {
        const int m = n - i0 < 4 ? n - i0 : 4;
        double nn[4] = {0, 0, 0, 0};
        const float *restrict r0 = x + (size_t)i0 * d;
        if (m == 4) {
            double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (int j = 0; j < d; j++) {
                const double v0 = r0[j], v1 = r0[d + j], v2 = r0[2 * d + j], v3 = r0[3 * d + j];
                a0 += v0 * v0, a1 += v1 * v1, a2 += v2 * v2, a3 += v3 * v3;
            }
            nn[0] = a0, nn[1] = a1, nn[2] = a2, nn[3] = a3;
        } else {
            for (int k = 0; k < m; k++)
                for (int j = 0; j < d; j++) nn[k] += (double)r0[k * d + j] * r0[k * d + j];
        }
        for (int k = 0; k < m; k++) {
            const float *restrict r = r0 + (size_t)k * d;
            double *restrict mu = mean;
            float *restrict cm = st->chan_max;
            for (int j = 0; j < d; j++) {
                mu[j] += r[j];
                const float a = fabsf(r[j]);
                cm[j] = a > cm[j] ? a : cm[j];
            }
            const int i = i0 + k;
            st->norms[i] = (float)sqrt(nn[k]);
            sum += st->norms[i];
            sum2 += nn[k];
            if (st->norms[i] > st->max_norm) st->max_norm = st->norms[i];
        }
    }
    st->mean_norm = sum / n;
    double var = sum2 / n - st->mean_norm * st->mean_norm;
    st->std_norm = var > 0 ? sqrt(var) : 0;
    for (int j = 0; j < d; j++) mean[j] /= n;
    // Covariance of the centered rows by dsyrk over row chunks: a scalar loop
    // (n x d^2 / 2 FMAs per head) took most of `info` on real-size traces.
    // Double, as the loop was, so the eigenvalues keep their digits.
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int m = n - i0 < chunk ? n - i0 : chunk;
        for (size_t i = 0; i < (size_t)m; i++) {
            const float *restrict r = x + ((size_t)i0 + i) * d;
            double *restrict c = xc + i * (size_t)d;
            const double *restrict mu = mean;
            for (int j = 0; j < d; j++) c[j] = (double)r[j] - mu[j];
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, m, 1.0, xc, d, i0 ? 1.0 : 0.0, cov, d);
    }
    for (int a = 0; a < d; a++)
        for (int b = a; b < d; b++) {
            float v = (float)(cov[(size_t)a * d + b] / (n > 1 ? n - 1 : 1));
            covf[(size_t)a * d + b] = covf[(size_t)b * d + a] = v;
        }
    for (size_t i = 0; i < (size_t)d * d; i++)
        if (!isfinite(covf[i])) {
            s = kvq_error(KVQ_ERR_NUMERIC, "stats: the covariance is %s in float (values too large for float "
                          "arithmetic)", kvq_nonfinite_name(covf[i]));
            goto out;
        }
    lapack_int info = LAPACKE_ssyevd(LAPACK_ROW_MAJOR, 'N', 'U', d, covf, d, st->eig);
    if (info != 0) {
        s = kvq_error(KVQ_ERR_NUMERIC, "stats: eigendecomposition failed (ssyevd info %d)", (int)info);
        goto out;
    }
    // ssyevd gives ascending order; report descending, clamp tiny negatives
    for (int i = 0; i < d / 2; i++) {
        float t = st->eig[i];
        st->eig[i] = st->eig[d - 1 - i];
        st->eig[d - 1 - i] = t;
    }
    double se = 0, se2 = 0;
    for (int i = 0; i < d; i++) {
        if (st->eig[i] < 0) st->eig[i] = 0;
        se += st->eig[i];
        se2 += (double)st->eig[i] * st->eig[i];
    }
    st->d_eff = se2 > 0 ? se * se / se2 : 0;
    memcpy(sorted, st->chan_max, sizeof(float) * (size_t)d);
    qsort(sorted, (size_t)d, sizeof(float), cmp_float);
    st->chan_median = d % 2 ? sorted[d / 2] : 0.5 * (sorted[d / 2 - 1] + sorted[d / 2]);
    for (int k = 0; k < KVQ_STATS_TOP; k++) st->top_chan[k] = -1;
    for (int k = 0; k < KVQ_STATS_TOP && k < d; k++) {
        int best = -1;
        for (int j = 0; j < d; j++) {
            bool taken = false;
            for (int t = 0; t < k; t++) taken |= st->top_chan[t] == j;
            if (!taken && (best < 0 || st->chan_max[j] > st->chan_max[best])) best = j;
        }
        st->top_chan[k] = best;
        st->top_ratio[k] = st->chan_median > 0 ? st->chan_max[best] / st->chan_median : 0;
    }
out:
    free(mean);
    free(xc);
    free(cov);
    free(covf);
    free(sorted);
    if (s) kvq_head_stats_free(st);
    return s;
}
