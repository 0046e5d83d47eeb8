// calib/train_commvq.h — CommVQ codebooks by EM on calibration keys.
//
// Per (layer, kv head) stream: R additive codebooks of C codewords
// (R, C from kvq_commvq_shape: C = num_centroids, R = bits * d / log2 C),
// initialised by residual k-means (codebook r = k-means of what codebooks
// 0..r-1 leave), then em_iters EM rounds: M-step = each codebook in turn set
// to the exact least-squares update given the codes and the other codebooks
// (the mean of its target residuals), E-step = each code re-picked given the
// others, switching only on a strict improvement. Both steps never increase
// the squared error, so the recorded error is non-increasing.
// Output tensor: "commvq.codebooks.l{layer}.h{kv_head}" (R, C, head_dim) F32.
#ifndef KVQ_TRAIN_COMMVQ_H
#define KVQ_TRAIN_COMMVQ_H
#include <stddef.h>
#include <stdint.h>
#include "kvq.h"
#include "trace.h"

#define KVQ_COMMVQ_MAX_EM 64
#define KVQ_COMMVQ_DEFAULT_CENTROIDS 4   // why: methods/commvq.h

typedef struct kvq_train_commvq_opts {
    int bits;                // key bits per coordinate (1..4)
    int num_centroids;       // C, power of two 2..256 (0 = KVQ_COMMVQ_DEFAULT_CENTROIDS)
    int em_iters;            // EM rounds after the k-means init (0 = 8, max KVQ_COMMVQ_MAX_EM)
    int kmeans_iter;         // k-means iterations per codebook at init (0 = 15)
    int max_points_per_centroid; // k-means sample at init (calib/kmeans.h: 0 = 256, < 0 = every row)
    uint64_t seed;
    kvq_progress *progress;  // optional; stages "commvq init", "commvq EM"
} kvq_train_commvq_opts;

typedef struct kvq_commvq_train_log {
    int n;                              // entries filled: 1 + EM rounds run
    double err[KVQ_COMMVQ_MAX_EM + 1];  // sum |k - k_hat|^2 / sum |k|^2: [0] after the
                                        // k-means init, [i] after EM round i
} kvq_commvq_train_log;

// One stream: keys (n, d) row-major (n >= num_centroids). log may be NULL.
kvq_status kvq_train_commvq_stream(const float *keys, size_t n, int d, int layer, int kv_head,
                                   const kvq_train_commvq_opts *o, kvq_artifacts *art,
                                   kvq_commvq_train_log *log);
// Every layer and kv head of a trace (train_wire.c); stream (l, h) seeded seed + l * n_kv_heads + h.
kvq_status kvq_train_commvq(const kvq_trace *t, const kvq_train_commvq_opts *o,
                            kvq_artifacts *art);
#endif
