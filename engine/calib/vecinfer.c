// calib/vecinfer.c — VecInfer calibration: smooth factors per layer and
// channel, then one product-VQ codebook per layer trained by k-means
// (calib/kmeans.h: k-means++ seeding, sgemm distances, empty clusters
// re-seeded) on the smoothed, Hadamard-rotated keys of all its kv heads.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "calib.h"
#include "calib/kmeans.h"

enum { VI_STREAM_KMEANS = 0x5649 };

kvq_status kvq_vecinfer_smooth_factors(const kvq_trace *t, int layer, int n_tok, float *lambda)
{
    int d = t->head_dim;
    float *k = malloc(sizeof(float) * (size_t)t->n_tokens * d);
    if (!k) return kvq_error(KVQ_ERR_NOMEM, "vecinfer: out of memory");
    for (int i = 0; i < d; i++) lambda[i] = 0;
    kvq_status s = KVQ_OK;
    for (int h = 0; h < t->n_kv_heads && !s; h++) {
        if ((s = kvq_trace_keys(t, layer, h, k))) break;
        for (int v = 0; v < n_tok; v++)
            for (int i = 0; i < d; i++) {
                float a = fabsf(k[(size_t)v * d + i]);
                if (a > lambda[i]) lambda[i] = a;
            }
    }
    // sqrt(max|K|) splits the outlier scale between keys and queries; a dead
    // channel (max 0) is left unscaled.
    for (int i = 0; i < d; i++) lambda[i] = lambda[i] > 0 ? sqrtf(lambda[i]) : 1.0f;
    free(k);
    return s;
}

static int log2_exact(int c)
{
    int l = 0;
    while ((1 << l) < c) l++;
    return (1 << l) == c ? l : -1;
}

kvq_status kvq_calib_vecinfer(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, kvq_artifacts *out)
{
    kvq_status cs = kvq_check_shape("vecinfer", t->path, t->n_layers, t->n_kv_heads, t->head_dim);
    if (cs) return cs;
    int d = t->head_dim, H = t->n_kv_heads, C = o->num_centroids ? o->num_centroids : 256, lc = log2_exact(C);
    // Without an explicit size, take the largest codebook (<= 256) whose subspace count
    // divides head_dim at this rate: 3 bits on d = 128 gives 64 subspaces x 64 centroids.
    if (!o->num_centroids && !o->num_subspaces)
        for (int c = 256; c >= 2; c /= 2)
            if (kvq_vecinfer_subspaces((int)lround(o->target_bits), d, c) &&
                fabs(o->target_bits - lround(o->target_bits)) < 1e-9) {
                C = c;
                lc = log2_exact(C);
                break;
            }
    int L = o->layers ? o->layers : t->n_layers;
    int n = o->sequence_length && o->sequence_length < t->n_tokens ? o->sequence_length : t->n_tokens;
    if (d < 2 || (d & (d - 1)))
        return kvq_error(KVQ_ERR_ARG, "vecinfer: head_dim %d is not a power of two (Hadamard needs one)", d);
    if (lc < 1 || lc > 8)
        return kvq_error(KVQ_ERR_ARG, "vecinfer: num_centroids %d is not a power of two in 2..256", C);
    int M = o->num_subspaces;
    if (M <= 0) {
        double m = o->target_bits * d / lc;
        M = (int)lround(m);
        if (fabs(m - M) > 1e-9 || M <= 0)
            return kvq_error(KVQ_ERR_ARG, "vecinfer: target_bits %g x head_dim %d is not a whole number of %d-bit "
                             "codes; pick target_bits so that bits x %d / %d is an integer", o->target_bits, d, lc,
                             d, lc);
    }
    if ((M > d || d % M) && o->num_subspaces)
        return kvq_error(KVQ_ERR_ARG, "vecinfer: num_subspaces %d does not divide head_dim %d: set num_subspaces to a "
                         "divisor of %d", M, d, d);
    if (M > d || d % M)
        return kvq_error(KVQ_ERR_ARG, "vecinfer: target_bits %g gives %d subspaces (target_bits x head_dim %d / %d bits "
                         "per code), which do not divide head_dim %d: set target_bits to a whole number of bits "
                         "or num_subspaces to a divisor of %d", o->target_bits, M, d, lc, d, d);
    size_t N = (size_t)H * n;
    if ((size_t)C > N)
        return kvq_error(KVQ_ERR_ARG, "vecinfer: %d centroids but only %zu training keys per layer "
                         "(raise sequence_length or lower num_centroids)", C, N);
    int sd = d / M;
    float *lam = malloc(sizeof(float) * (size_t)L * d);
    float *cb = malloc(sizeof(float) * (size_t)L * M * C * sd);
    float *kt = malloc(sizeof(float) * N * d);          // (H n, d) transformed keys of one layer
    float *sub = malloc(sizeof(float) * N * sd);        // one subspace, contiguous
    float *k = malloc(sizeof(float) * (size_t)t->n_tokens * d);
    kvq_status s = (!lam || !cb || !kt || !sub || !k) ? kvq_error(KVQ_ERR_NOMEM, "vecinfer: out of memory") : KVQ_OK;
    for (int l = 0; l < L && !s; l++) {
        float *la = lam + (size_t)l * d;
        if ((s = kvq_vecinfer_smooth_factors(t, l, n, la))) break;
        for (int h = 0; h < H && !s; h++) {
            if ((s = kvq_trace_keys(t, l, h, k))) break;
            for (int v = 0; v < n; v++)
                kvq_vecinfer_transform_key(la, k + (size_t)v * d, kt + ((size_t)h * n + v) * d, d);
        }
        for (int m = 0; m < M && !s; m++) {
            for (size_t v = 0; v < N; v++) memcpy(sub + v * sd, kt + v * d + (size_t)m * sd, sizeof(float) * sd);
            kvq_subprogress sp;
            double f0 = (l * M + m) / (double)(L * M), f1 = (l * M + m + 1) / (double)(L * M);
            kvq_kmeans_opts ko = {.k = C, .max_iter = o->max_iter > 0 ? o->max_iter : 100, .tol = 0,
                                  .seed = o->seed ^ ((uint64_t)VI_STREAM_KMEANS << 32 | (uint64_t)l << 16 | (uint64_t)m),
                                  .progress = kvq_subprogress_init(&sp, p, f0, f1, "vecinfer codebooks")};
            kvq_kmeans_result r;
            if ((s = kvq_kmeans(sub, N, sd, &ko, &r))) break;
            memcpy(cb + (((size_t)l * M + m) * C) * sd, r.centroids, sizeof(float) * (size_t)C * sd);
            kvq_kmeans_result_free(&r);
            if (kvq_progress_report(p, f1, "vecinfer codebooks"))
                s = kvq_error(KVQ_ERR_CANCELLED, "vecinfer calibration cancelled");
        }
    }
    if (s == KVQ_ERR_CANCELLED) kvq_error(KVQ_ERR_CANCELLED, "vecinfer calibration cancelled");
    int64_t s_sm[2] = {L, d}, s_cb[4] = {L, M, C, sd};
    if (!s) s = kvq_artifacts_put(out, "vecinfer.smooth", lam, 2, s_sm);
    if (!s) s = kvq_artifacts_put(out, "vecinfer.codebook", cb, 4, s_cb);
    free(lam); free(cb); free(kt); free(sub); free(k);
    return s;
}
