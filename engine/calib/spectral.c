// calib/spectral.c — SpectralQuant calibration: per layer and kv head, the
// key mean and covariance, its eigendecomposition (LAPACKE_ssyevd), d_eff.
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "calib.h"

// mean (d) and covariance cov (d, d) of k (n, d); accumulated in double.
static void key_moments(const float *k, int n, int d, double *mean, double *cov)
{   // d <= KVQ_MAX_HEAD_DIM: kvq_calib_spectral checked it
    memset(mean, 0, sizeof(double) * (size_t)d);
    memset(cov, 0, sizeof(double) * (size_t)d * d);
    for (int v = 0; v < n; v++)
        for (int i = 0; i < d; i++) mean[i] += k[(size_t)v * d + i];
    for (int i = 0; i < d; i++) mean[i] /= n;
    double c[KVQ_MAX_HEAD_DIM];
    for (int v = 0; v < n; v++) {
        for (int i = 0; i < d; i++) c[i] = k[(size_t)v * d + i] - mean[i];
        for (int i = 0; i < d; i++) {
            double ci = c[i];
            double *row = cov + (size_t)i * d;
            for (int j = i; j < d; j++) row[j] += ci * c[j];
        }
    }
    for (int i = 0; i < d; i++)
        for (int j = i; j < d; j++) {
            cov[(size_t)i * d + j] /= n > 1 ? n - 1 : 1;
            cov[(size_t)j * d + i] = cov[(size_t)i * d + j];
        }
}

// Eigenvectors as rows by descending eigenvalue, each with its largest
// component positive (a fixed sign, so artifacts do not flip between LAPACK
// builds); negative round-off eigenvalues clamp to 0.
static kvq_status eigen(const double *cov, int d, float *rot, float *eig, int l, int h)
{
    float *a = malloc(sizeof(float) * (size_t)d * d), *w = malloc(sizeof(float) * (size_t)d);
    if (!a || !w) {
        free(a);
        free(w);
        return kvq_error(KVQ_ERR_NOMEM, "spectral: out of memory");
    }
    for (size_t i = 0; i < (size_t)d * d; i++) a[i] = (float)cov[i];
    lapack_int info = LAPACKE_ssyevd(LAPACK_ROW_MAJOR, 'V', 'U', d, a, d, w);
    kvq_status s = KVQ_OK;
    if (info != 0) {
        s = kvq_error(KVQ_ERR_NUMERIC, "spectral: ssyevd failed (info %d) on the key covariance of layer %d head %d",
                      (int)info, l, h);
    } else {
        for (int r = 0; r < d; r++) {
            int c = d - 1 - r;   // ssyevd: ascending eigenvalues, eigenvectors in columns
            int big = 0;
            for (int i = 1; i < d; i++)
                if (fabsf(a[(size_t)i * d + c]) > fabsf(a[(size_t)big * d + c])) big = i;
            float sg = a[(size_t)big * d + c] < 0 ? -1.0f : 1.0f;
            for (int i = 0; i < d; i++) rot[(size_t)r * d + i] = sg * a[(size_t)i * d + c];
            eig[r] = w[c] > 0 ? w[c] : 0.0f;
        }
    }
    free(a);
    free(w);
    return s;
}

kvq_status kvq_calib_spectral(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, kvq_artifacts *out)
{
    int d = t->head_dim, H = t->n_kv_heads, L = o->layers ? o->layers : t->n_layers;
    kvq_status cs = kvq_check_shape("spectral", t->path, L, H, d);   // eig, meanf: KVQ_MAX_HEAD_DIM
    if (cs) return cs;
    int n = o->sequence_length && o->sequence_length < t->n_tokens ? o->sequence_length : t->n_tokens;
    if (n < 2) return kvq_error(KVQ_ERR_ARG, "spectral: need at least 2 tokens (sequence_length %d)", n);
    float *k = malloc(sizeof(float) * (size_t)t->n_tokens * d), *rot = malloc(sizeof(float) * (size_t)d * d);
    double *mean = malloc(sizeof(double) * (size_t)d), *cov = malloc(sizeof(double) * (size_t)d * d);
    float *deff = malloc(sizeof(float) * (size_t)L * H);
    kvq_status s = (!k || !rot || !mean || !cov || !deff) ? kvq_error(KVQ_ERR_NOMEM, "spectral: out of memory") : KVQ_OK;
    for (int l = 0; l < L && !s; l++)
        for (int h = 0; h < H && !s; h++) {
            float eig[KVQ_MAX_HEAD_DIM], meanf[KVQ_MAX_HEAD_DIM];
            if ((s = kvq_trace_keys(t, l, h, k))) break;
            key_moments(k, n, d, mean, cov);
            if ((s = eigen(cov, d, rot, eig, l, h))) break;
            for (int i = 0; i < d; i++) meanf[i] = (float)mean[i];
            deff[l * H + h] = (float)kvq_spectral_d_eff(eig, d);
            char name[96];
            int64_t sdd[2] = {d, d}, sd1 = d;
            snprintf(name, sizeof name, "spectral.rotation.l%d.h%d", l, h);
            if ((s = kvq_artifacts_put(out, name, rot, 2, sdd))) break;
            snprintf(name, sizeof name, "spectral.mean.l%d.h%d", l, h);
            if ((s = kvq_artifacts_put(out, name, meanf, 1, &sd1))) break;
            snprintf(name, sizeof name, "spectral.eigenvalues.l%d.h%d", l, h);
            if ((s = kvq_artifacts_put(out, name, eig, 1, &sd1))) break;
            if (kvq_progress_report(p, (l * H + h + 1) / (double)(L * H), "spectral eigenbases"))
                s = kvq_error(KVQ_ERR_CANCELLED, "spectral calibration cancelled");
        }
    int64_t sh[2] = {L, H};
    if (!s) s = kvq_artifacts_put(out, "spectral.d_eff", deff, 2, sh);
    free(k); free(rot); free(mean); free(cov); free(deff);
    return s;
}
