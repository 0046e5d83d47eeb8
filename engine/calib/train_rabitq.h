// calib/train_rabitq.h — RaBitQ IVF centroids: k-means (calib/kmeans.h) on the
// keys of each (layer, kv head) stream.
//
// Produces, per stream, the tensor
//   "rabitq.centroids.l{layer}.h{kv_head}"  (num_clusters, head_dim) F32
// which kvq_rabitq_plan_new requires (methods/rabitq.h).
#ifndef KVQ_TRAIN_RABITQ_H
#define KVQ_TRAIN_RABITQ_H
#include <stddef.h>
#include <stdint.h>
#include "kvq.h"
#include "trace.h"

typedef struct kvq_train_rabitq_opts {
    int num_clusters;        // IVF centroids per stream (cfg->num_clusters)
    int max_iter;            // k-means iterations (0 = 25)
    int max_points_per_centroid; // k-means sample (calib/kmeans.h: 0 = 256, < 0 = every row)
    uint64_t seed;
    kvq_progress *progress;  // optional; stage "rabitq kmeans"
} kvq_train_rabitq_opts;

// One stream: keys (n, d) row-major. Puts the centroid tensor into art;
// *inertia (optional) gets the final k-means inertia.
kvq_status kvq_train_rabitq_stream(const float *keys, size_t n, int d, int layer, int kv_head,
                                   const kvq_train_rabitq_opts *o, kvq_artifacts *art,
                                   double *inertia);
// Every layer and kv head of a trace (keys of all tokens; train_wire.c). Stream (l, h) is
// seeded with seed + l * n_kv_heads + h so streams differ but runs repeat.
kvq_status kvq_train_rabitq(const kvq_trace *t, const kvq_train_rabitq_opts *o,
                            kvq_artifacts *art);
#endif
