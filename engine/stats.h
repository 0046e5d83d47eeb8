// stats.h — per (layer, kv head) statistics of a stream of vectors: norms,
// per-channel max |x| with outlier channels, covariance eigenvalues and the
// effective dimension d_eff = (sum l)^2 / sum l^2. Used by `info` and the
// trace explorer.
#ifndef KVQ_STATS_H
#define KVQ_STATS_H
#include "kvq.h"

#define KVQ_STATS_TOP 5
typedef struct kvq_head_stats {
    int n, d;
    double mean_norm, std_norm, max_norm;
    float *norms;            // (n) per-vector L2 norm, owned
    float *chan_max;         // (d) max |x| per channel, owned
    double chan_median;      // median of chan_max
    int top_chan[KVQ_STATS_TOP];      // channels with the largest chan_max
    double top_ratio[KVQ_STATS_TOP];  // chan_max / chan_median for those
    float *eig;              // (d) covariance eigenvalues, descending, owned
    double d_eff;
} kvq_head_stats;

// x: (n, d) row-major. Allocates the owned arrays; free with kvq_head_stats_free.
// The covariance is one cblas_dsyrk per 1024 rows: callers running heads on
// the pool (`info`) set OpenBLAS to one thread, whose own workers would spin.
kvq_status kvq_head_stats_compute(const float *x, int n, int d, kvq_head_stats *st);
void kvq_head_stats_free(kvq_head_stats *st);
#endif
