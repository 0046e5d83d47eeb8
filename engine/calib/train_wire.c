// calib/train_wire.c — the RaBitQ and CommVQ trainers (train_rabitq.c,
// train_commvq.c) as rows of the calibrators table: same options, progress
// and layer / token subsets as the other calibrators.
//   rabitq: num_clusters IVF centroids per stream, k-means max_iter
//           iterations (0 = the trainer's default, 25).
//   commvq: bits = round(target_bits), num_centroids codewords, EM rounds =
//           min(max_iter, KVQ_COMMVQ_MAX_EM) (0 = the trainer's default, 8).
// Stream (l, h) is seeded seed + l * n_kv_heads + h, as the trainers' own
// whole-trace entry points do, so both paths give the same tensors.
#include <math.h>
#include <stdlib.h>
#include "calib.h"
#include "calib/train_commvq.h"
#include "calib/train_rabitq.h"

typedef kvq_status (*stream_fn)(const float *k, size_t n, int d, int l, int h, const kvq_calib_opts *o,
                                uint64_t seed, kvq_progress *p, kvq_artifacts *out);

static kvq_status rabitq_stream(const float *k, size_t n, int d, int l, int h, const kvq_calib_opts *o,
                                uint64_t seed, kvq_progress *p, kvq_artifacts *out)
{
    kvq_train_rabitq_opts ro = {.num_clusters = o->num_clusters, .max_iter = o->max_iter, .seed = seed,
                                .progress = p};
    return kvq_train_rabitq_stream(k, n, d, l, h, &ro, out, NULL);
}

static kvq_status commvq_stream(const float *k, size_t n, int d, int l, int h, const kvq_calib_opts *o,
                                uint64_t seed, kvq_progress *p, kvq_artifacts *out)
{
    kvq_train_commvq_opts co = {.bits = (int)lround(o->target_bits), .num_centroids = o->num_centroids,
                                .em_iters = o->max_iter < KVQ_COMMVQ_MAX_EM ? o->max_iter : KVQ_COMMVQ_MAX_EM,
                                .seed = seed, .progress = p};
    return kvq_train_commvq_stream(k, n, d, l, h, &co, out, NULL);
}

static kvq_status each_stream(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, kvq_artifacts *out,
                              stream_fn fn, const char *stage)
{
    int d = t->head_dim, H = t->n_kv_heads, L = o->layers ? o->layers : t->n_layers;
    int n = o->sequence_length && o->sequence_length < t->n_tokens ? o->sequence_length : t->n_tokens;
    float *k = malloc(sizeof(float) * (size_t)t->n_tokens * d);
    if (!k) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", stage);
    kvq_status s = KVQ_OK;
    for (int l = 0; l < L && !s; l++)
        for (int h = 0; h < H && !s; h++) {
            if ((s = kvq_trace_keys(t, l, h, k))) break;
            double f0 = (l * H + h) / (double)(L * H), f1 = (l * H + h + 1) / (double)(L * H);
            kvq_subprogress sp;
            s = fn(k, (size_t)n, d, l, h, o, o->seed + (uint64_t)(l * H + h), kvq_subprogress_init(&sp, p, f0, f1, stage),
                   out);
            if (!s && kvq_progress_report(p, f1, stage)) s = KVQ_ERR_CANCELLED;
            if (s == KVQ_ERR_CANCELLED) s = kvq_error(KVQ_ERR_CANCELLED, "%s calibration cancelled", stage);
        }
    free(k);
    return s;
}

kvq_status kvq_calib_rabitq(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, kvq_artifacts *out)
{
    return each_stream(t, o, p, out, rabitq_stream, "rabitq");
}

kvq_status kvq_calib_commvq(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p, kvq_artifacts *out)
{
    return each_stream(t, o, p, out, commvq_stream, "commvq");
}
