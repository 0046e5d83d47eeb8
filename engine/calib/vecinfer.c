// calib/vecinfer.c — VecInfer calibration: smooth factors per layer and
// channel, then one product-VQ codebook per layer trained by k-means
// (calib/kmeans.h: k-means++ seeding, sgemm distances, empty clusters
// re-seeded) on the smoothed, Hadamard-rotated keys of all its kv heads.
// One layer at a time is held (its keys, laid out subspace-major); its M
// subspace k-means run as tasks on the pool, each writing its own codebook
// from its own seed, so the artifact does not depend on the thread count.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "calib.h"
#include "calib/kmeans.h"
#include "pool.h"

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

// Lloyd stops once an iteration lowers inertia by less than this fraction:
// at 1e-4 the codebooks' attention error on the sample traces is within 0.5%
// of running 100 iterations, at a fraction of the time.
#define VI_KMEANS_TOL 1e-4
// Iterations without max_iter. FAISS's niter default is 25 (Clustering.h at
// facebookresearch/faiss@f4f7b9b5368b); 15 here, where the sample traces stop
// on the tolerance anyway (their README figures move by at most 0.4%), and
// on 65536 keys per layer (S1 of make scale-check, layer 0) the key rel MSE
// is 0.07591 against 0.07537 at 25 and 0.07502 at 40 (turboquant_mse at the
// same 2 bits: 0.1002), for 40% less time: the 1024 k-means runs of an 8K-token
// Llama-3-8B-shaped trace are most of vecinfer's time.
#define VI_KMEANS_ITER 15

typedef struct {
    const float *sub;   // (M, N, sd) the layer's keys, one subspace after another
    float *cb;          // (M, C, sd) this layer's codebooks
    size_t N;
    int C, sd, max_iter, ppc;
    uint64_t seed;      // the layer's base seed; subspace m adds m
    kvq_status *st;     // (M) per task
    char (*err)[160];   // (M) the task's error text: kvq_last_error is per thread
} vi_layer_job;

static void vi_subspace_task(void *ctx, int m)
{
    const vi_layer_job *j = ctx;
    kvq_kmeans_opts ko = {.k = j->C, .max_iter = j->max_iter, .tol = VI_KMEANS_TOL,
                          .seed = j->seed ^ (uint64_t)m, .max_points_per_centroid = j->ppc};
    kvq_kmeans_result r;
    j->st[m] = kvq_kmeans(j->sub + (size_t)m * j->N * j->sd, j->N, j->sd, &ko, &r);
    if (j->st[m]) {
        snprintf(j->err[m], sizeof j->err[m], "%s", kvq_last_error());
        return;
    }
    memcpy(j->cb + (size_t)m * j->C * j->sd, r.centroids, sizeof(float) * (size_t)j->C * j->sd);
    kvq_kmeans_result_free(&r);
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
    float *sub = malloc(sizeof(float) * N * d);          // (M, N, sd): one layer, subspace-major
    float *kt = malloc(sizeof(float) * (size_t)d);      // one transformed key
    float *k = malloc(sizeof(float) * (size_t)t->n_tokens * d);
    kvq_status *sts = malloc(sizeof(kvq_status) * (size_t)M);
    char (*errs)[160] = malloc(sizeof *errs * (size_t)M);
    kvq_status s = (!lam || !cb || !kt || !sub || !k || !sts || !errs) ? kvq_error(KVQ_ERR_NOMEM, "vecinfer: out of memory")
                                                             : KVQ_OK;
    for (int l = 0; l < L && !s; l++) {
        float *la = lam + (size_t)l * d;
        if ((s = kvq_vecinfer_smooth_factors(t, l, n, la))) break;
        for (int h = 0; h < H && !s; h++) {
            if ((s = kvq_trace_keys(t, l, h, k))) break;
            for (int v = 0; v < n; v++) {
                kvq_vecinfer_transform_key(la, k + (size_t)v * d, kt, d);
                size_t row = (size_t)h * n + v;
                for (int m = 0; m < M; m++)
                    memcpy(sub + ((size_t)m * N + row) * sd, kt + (size_t)m * sd, sizeof(float) * sd);
            }
        }
        if (s) break;
        vi_layer_job job = {.sub = sub, .cb = cb + (size_t)l * M * C * sd, .N = N, .C = C, .sd = sd,
                            .max_iter = o->max_iter > 0 ? o->max_iter : VI_KMEANS_ITER,
                            .ppc = o->max_points_per_centroid > 0 ? o->max_points_per_centroid : -1,
                            .seed = o->seed ^ ((uint64_t)VI_STREAM_KMEANS << 32 | (uint64_t)l << 16), .st = sts, .err = errs};
        kvq_parallel_for(M, vi_subspace_task, &job);
        for (int m = 0; m < M && !s; m++)
            if (sts[m]) s = kvq_error(sts[m], "vecinfer: layer %d subspace %d: %s", l, m, errs[m]);
        if (!s && kvq_progress_report(p, (l + 1) / (double)L, "vecinfer codebooks"))
            s = kvq_error(KVQ_ERR_CANCELLED, "vecinfer calibration cancelled");
    }
    if (s == KVQ_ERR_CANCELLED) kvq_error(KVQ_ERR_CANCELLED, "vecinfer calibration cancelled");
    int64_t s_sm[2] = {L, d}, s_cb[4] = {L, M, C, sd};
    if (!s) s = kvq_artifacts_put(out, "vecinfer.smooth", lam, 2, s_sm);
    if (!s) s = kvq_artifacts_put(out, "vecinfer.codebook", cb, 4, s_cb);
    free(lam); free(cb); free(kt); free(sub); free(k); free(sts); free(errs);
    return s;
}
