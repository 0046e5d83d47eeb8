// calib/train_rabitq.c — IVF centroids for RaBitQ; see train_rabitq.h.
#include <stdio.h>
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
                          .tol = 1e-6, .seed = o->seed, .progress = o->progress,
                          .max_points_per_centroid = o->max_points_per_centroid};
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
