// calib/train_rabitq.c — IVF centroids for RaBitQ; see train_rabitq.h.
#include <stdio.h>
#include <stdlib.h>
#include "artifacts.h"
#include "calib/kmeans.h"
#include "calib/train_rabitq.h"

kvq_status kvq_train_rabitq_stream(const float *keys, size_t n, int d, int layer, int kv_head,
                                   const kvq_train_rabitq_opts *o, kvq_artifacts *art,
                                   double *inertia)
{
    if ((size_t)o->num_clusters > n || o->num_clusters < 1)
        return kvq_error(KVQ_ERR_ARG, "rabitq calibration: num_clusters %d with %zu tokens "
                         "(expected 1..tokens)", o->num_clusters, n);
    kvq_kmeans_opts ko = {.k = o->num_clusters, .max_iter = o->max_iter > 0 ? o->max_iter : 25,
                          .tol = 1e-6, .seed = o->seed, .progress = o->progress};
    kvq_kmeans_result r;
    kvq_status s = kvq_kmeans(keys, n, d, &ko, &r);
    if (s) return s;
    char name[96];
    snprintf(name, sizeof name, "rabitq.centroids.l%d.h%d", layer, kv_head);
    int64_t shape[2] = {o->num_clusters, d};
    s = kvq_artifacts_put(art, name, r.centroids, 2, shape);
    if (!s && inertia) *inertia = r.inertia[r.n_iter - 1];
    kvq_kmeans_result_free(&r);
    return s;
}

// Maps one stream's progress fraction into its slice of the whole run.
typedef struct { kvq_progress *parent; double lo, hi; } sub_progress;

static bool sub_report(double f, const char *stage, double eta, void *user)
{
    (void)eta;
    sub_progress *s = user;
    return kvq_progress_report(s->parent, s->lo + f * (s->hi - s->lo), stage);
}

kvq_status kvq_train_rabitq(const kvq_trace *t, const kvq_train_rabitq_opts *o,
                            kvq_artifacts *art)
{
    size_t n = (size_t)t->n_tokens;
    float *keys = malloc(sizeof(float) * n * (size_t)t->head_dim);
    if (!keys) return kvq_error(KVQ_ERR_NOMEM, "rabitq calibration: out of memory");
    int total = t->n_layers * t->n_kv_heads;
    kvq_status s = KVQ_OK;
    kvq_progress_begin(o->progress);
    for (int l = 0; l < t->n_layers && !s; l++)
        for (int h = 0; h < t->n_kv_heads && !s; h++) {
            int idx = l * t->n_kv_heads + h;
            s = kvq_trace_keys(t, l, h, keys);
            if (s) break;
            sub_progress sp = {o->progress, (double)idx / total, (double)(idx + 1) / total};
            kvq_progress prog = {.fn = sub_report, .user = &sp};
            kvq_train_rabitq_opts so = *o;
            so.seed = o->seed + (uint64_t)idx;
            so.progress = o->progress ? &prog : NULL;
            s = kvq_train_rabitq_stream(keys, n, t->head_dim, l, h, &so, art, NULL);
        }
    free(keys);
    return s;
}
