// calib/spectral.c — SpectralQuant calibration: per layer and kv head, the
// key mean and covariance (dsyrk), its eigendecomposition (LAPACKE_ssyevd),
// d_eff; streams in batches on the pool.
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "calib.h"
#include "pool.h"

// mean (d) and covariance cov (d, d) of k (n, d), in double: the mean in
// coordinate order, then the centred rows (xc: (n, d) scratch) through one
// dsyrk (the scalar triangle loop took 9 s of CPU on a 32-layer, 8-kv-head,
// 8192-token trace).
static void key_moments(const float *k, int n, int d, double *mean, double *cov, double *xc)
{
    memset(mean, 0, sizeof(double) * (size_t)d);
    for (int v = 0; v < n; v++)
        for (int i = 0; i < d; i++) mean[i] += k[(size_t)v * d + i];
    for (int i = 0; i < d; i++) mean[i] /= n;
    for (int v = 0; v < n; v++)
        for (int i = 0; i < d; i++) xc[(size_t)v * d + i] = k[(size_t)v * d + i] - mean[i];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, n, 1.0 / (n > 1 ? n - 1 : 1), xc, d, 0.0, cov, d);
    for (int i = 0; i < d; i++)
        for (int j = i + 1; j < d; j++) cov[(size_t)j * d + i] = cov[(size_t)i * d + j];
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

// One (layer, kv head) per task, a batch of kvq_threads() at a time on the
// pool; each task has its own buffers and writes its own slot, the caller
// puts the artifacts in stream order, so they do not depend on the threads.
typedef struct {
    const kvq_trace *t;
    int n, d, H, base;     // tokens used, head_dim, kv heads, first stream of the batch
    float *k;              // (batch, n_tokens, d) keys
    double *xc, *mean, *cov;   // (batch, n, d), (batch, d), (batch, d, d)
    float *rot, *eig;      // (batch, d, d), (batch, d) outputs
    kvq_status *st;        // (batch)
    char (*err)[200];      // (batch): kvq_last_error is per thread
} sp_job;

static void sp_task(void *ctx, int i)
{
    const sp_job *j = ctx;
    int u = j->base + i, l = u / j->H, h = u % j->H, d = j->d;
    float *k = j->k + (size_t)i * j->t->n_tokens * d;
    double *mean = j->mean + (size_t)i * d, *cov = j->cov + (size_t)i * d * d;
    kvq_status s = kvq_trace_keys(j->t, l, h, k);
    if (!s) {
        key_moments(k, j->n, d, mean, cov, j->xc + (size_t)i * j->n * d);
        s = eigen(cov, d, j->rot + (size_t)i * d * d, j->eig + (size_t)i * d, l, h);
    }
    j->st[i] = s;
    if (s) snprintf(j->err[i], sizeof j->err[i], "%s", kvq_last_error());
}

kvq_status kvq_calib_spectral(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, kvq_artifacts *out)
{
    int d = t->head_dim, H = t->n_kv_heads, L = o->layers ? o->layers : t->n_layers;
    kvq_status cs = kvq_check_shape("spectral", t->path, L, H, d);   // meanf: KVQ_MAX_HEAD_DIM
    if (cs) return cs;
    int n = o->sequence_length && o->sequence_length < t->n_tokens ? o->sequence_length : t->n_tokens;
    if (n < 2) return kvq_error(KVQ_ERR_ARG, "spectral: need at least 2 tokens (sequence_length %d)", n);
    int B = kvq_threads(), U = L * H;
    if (B > U) B = U;
    sp_job j = {.t = t, .n = n, .d = d, .H = H};
    j.k = malloc(sizeof(float) * (size_t)B * t->n_tokens * d);
    j.xc = malloc(sizeof(double) * (size_t)B * n * d);
    j.mean = malloc(sizeof(double) * (size_t)B * d);
    j.cov = malloc(sizeof(double) * (size_t)B * d * d);
    j.rot = malloc(sizeof(float) * (size_t)B * d * d);
    j.eig = malloc(sizeof(float) * (size_t)B * d);
    j.st = malloc(sizeof(kvq_status) * (size_t)B);
    j.err = malloc(sizeof *j.err * (size_t)B);
    float *deff = malloc(sizeof(float) * (size_t)U);
    kvq_status s = (!j.k || !j.xc || !j.mean || !j.cov || !j.rot || !j.eig || !j.st || !j.err || !deff)
                       ? kvq_error(KVQ_ERR_NOMEM, "spectral: out of memory") : KVQ_OK;
    for (int b0 = 0; b0 < U && !s; b0 += B) {
        int nb = U - b0 < B ? U - b0 : B;
        j.base = b0;
        kvq_parallel_for(nb, sp_task, &j);
        for (int i = 0; i < nb && !s; i++) {
            int u = b0 + i, l = u / H, h = u % H;
            if (j.st[i]) {
                s = kvq_error(j.st[i], "%s", j.err[i]);
                break;
            }
            float meanf[KVQ_MAX_HEAD_DIM], *eig = j.eig + (size_t)i * d;
            for (int c = 0; c < d; c++) meanf[c] = (float)j.mean[(size_t)i * d + c];
            deff[u] = (float)kvq_spectral_d_eff(eig, d);
            char name[96];
            int64_t sdd[2] = {d, d}, sd1 = d;
            snprintf(name, sizeof name, "spectral.rotation.l%d.h%d", l, h);
            if ((s = kvq_artifacts_put(out, name, j.rot + (size_t)i * d * d, 2, sdd))) break;
            snprintf(name, sizeof name, "spectral.mean.l%d.h%d", l, h);
            if ((s = kvq_artifacts_put(out, name, meanf, 1, &sd1))) break;
            snprintf(name, sizeof name, "spectral.eigenvalues.l%d.h%d", l, h);
            if ((s = kvq_artifacts_put(out, name, eig, 1, &sd1))) break;
        }
        if (!s && kvq_progress_report(p, (b0 + nb) / (double)U, "spectral eigenbases"))
            s = kvq_error(KVQ_ERR_CANCELLED, "spectral calibration cancelled");
    }
    int64_t sh[2] = {L, H};
    if (!s) s = kvq_artifacts_put(out, "spectral.d_eff", deff, 2, sh);
    free(j.k); free(j.xc); free(j.mean); free(j.cov); free(j.rot); free(j.eig); free(j.st); free(j.err); free(deff);
    return s;
}
