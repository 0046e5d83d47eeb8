// methods/rabitq.h — RaBitQ record introspection and the paper's error bound,
// for tests and the report (the method itself is a row of the methods table).
//
// Artifact (made by kvq_train_rabitq, calib/train_rabitq.h):
//   "rabitq.centroids.l{layer}.h{kv_head}"  (num_clusters, head_dim) F32
// Record (bytes_per_vector): uint16 cluster | fp16 |o_r - c| | fp16 <o_bar, o> |
// [fp16 |y| when bits > 1] | head_dim x bits code bits (LSB first).
#ifndef KVQ_RABITQ_H
#define KVQ_RABITQ_H
#include <stdint.h>
#include "kvq.h"

typedef struct kvq_rabitq_record {
    int cluster;
    float rnorm;   // |o_r - c|
    float ipo;     // <o_bar, o>: quantized unit vector . true unit residual, in (0, 1]
} kvq_rabitq_record;

// Fields of one record of a rabitq plan (plan from kvq_quantizer_init).
void kvq_rabitq_read_record(const void *plan, const uint8_t *rec, kvq_rabitq_record *out);
// Centroids the plan holds: (num_clusters, head_dim); *k gets num_clusters.
const float *kvq_rabitq_centroids(const void *plan, int *k);
// The paper's bound (Theorem 3.2) on |<o_bar,q>/<o_bar,o> - <o,q>| for a unit
// query q: sqrt((1 - ipo^2) / ipo^2) * eps0 / sqrt(d - 1); it holds with
// probability >= 1 - 2 exp(-c0 eps0^2) over the random rotation (eps0 = 1.9
// in the paper's experiments).
double kvq_rabitq_error_bound(double ipo, int d, double eps0);
#endif
