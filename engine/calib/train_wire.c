// calib/train_wire.c — the whole-trace drivers of the RaBitQ and CommVQ
// trainers (train_rabitq.c, train_commvq.c): their own entry points
// (kvq_train_rabitq, kvq_train_commvq) and their rows of the calibrators
// table, with the same options, progress and layer / token subsets as the
// other calibrators.
//   rabitq: num_clusters IVF centroids per stream, k-means max_iter
//           iterations (0 = the trainer's default, 25).
//   commvq: bits = round(target_bits), num_centroids codewords, EM rounds =
//           min(max_iter, KVQ_COMMVQ_MAX_EM) (0 = the trainer's default, 8).
// Stream (l, h) is seeded seed + l * n_kv_heads + h on both paths, so both
// give the same tensors.
#include <math.h>
#include <stdlib.h>
#include "calib.h"
#include "calib/train_commvq.h"
#include "calib/train_rabitq.h"

// opts: the trainer's options; seed and progress are replaced per stream.
typedef kvq_status (*stream_fn)(const float *k, size_t n, int d, int l, int h, const void *opts,
                                uint64_t seed, kvq_progress *p, kvq_artifacts *out);

static kvq_status rabitq_stream(const float *k, size_t n, int d, int l, int h, const void *opts,
                                uint64_t seed, kvq_progress *p, kvq_artifacts *out)
{
    kvq_train_rabitq_opts ro = *(const kvq_train_rabitq_opts *)opts;
    ro.seed = seed;
    ro.progress = p;
    return kvq_train_rabitq_stream(k, n, d, l, h, &ro, out, NULL);
}

static kvq_status commvq_stream(const float *k, size_t n, int d, int l, int h, const void *opts,
                                uint64_t seed, kvq_progress *p, kvq_artifacts *out)
{
    kvq_train_commvq_opts co = *(const kvq_train_commvq_opts *)opts;
    co.seed = seed;
    co.progress = p;
    return kvq_train_commvq_stream(k, n, d, l, h, &co, out, NULL);
}

// The keys of the first n tokens of every kv head of layers 0..L-1, one
// stream at a time, each given its slice of p. stage NULL: the trainer's own
// stage names and cancellation messages pass through (the trainers' entry
// points); else they are replaced by stage and p also hears each stream's end
// (the calibrators table).
static kvq_status each_stream(const kvq_trace *t, int L, int n, uint64_t seed, kvq_progress *p,
                              const char *name, const char *stage, stream_fn fn, const void *opts,
                              kvq_artifacts *out)
{
    int d = t->head_dim, H = t->n_kv_heads;
    float *k = malloc(sizeof(float) * (size_t)t->n_tokens * d);
    if (!k) return kvq_error(KVQ_ERR_NOMEM, "%s calibration: out of memory", name);
    kvq_status s = KVQ_OK;
    for (int l = 0; l < L && !s; l++)
        for (int h = 0; h < H && !s; h++) {
            if ((s = kvq_trace_keys(t, l, h, k))) break;
            double f0 = (l * H + h) / (double)(L * H), f1 = (l * H + h + 1) / (double)(L * H);
            kvq_subprogress sp;
            s = fn(k, (size_t)n, d, l, h, opts, seed + (uint64_t)(l * H + h),
                   kvq_subprogress_init(&sp, p, f0, f1, stage), out);
            if (!stage) continue;
            if (!s && kvq_progress_report(p, f1, stage)) s = KVQ_ERR_CANCELLED;
            if (s == KVQ_ERR_CANCELLED)
                s = kvq_error(KVQ_ERR_CANCELLED, "%s calibration cancelled", stage);
        }
    free(k);
    return s;
}

kvq_status kvq_train_rabitq(const kvq_trace *t, const kvq_train_rabitq_opts *o, kvq_artifacts *art)
{
    kvq_progress_begin(o->progress);
    return each_stream(t, t->n_layers, t->n_tokens, o->seed, o->progress, "rabitq", NULL,
                       rabitq_stream, o, art);
}

kvq_status kvq_train_commvq(const kvq_trace *t, const kvq_train_commvq_opts *o, kvq_artifacts *art)
{
    kvq_progress_begin(o->progress);
    return each_stream(t, t->n_layers, t->n_tokens, o->seed, o->progress, "commvq", NULL,
                       commvq_stream, o, art);
}

static int calib_layers(const kvq_trace *t, const kvq_calib_opts *o)
{
    return o->layers ? o->layers : t->n_layers;
}

static int calib_tokens(const kvq_trace *t, const kvq_calib_opts *o)
{
    return o->sequence_length && o->sequence_length < t->n_tokens ? o->sequence_length : t->n_tokens;
}

kvq_status kvq_calib_rabitq(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p,
                            kvq_artifacts *out)
{
    kvq_status cs = kvq_check_shape("rabitq", t->path, t->n_layers, t->n_kv_heads, t->head_dim);
    if (cs) return cs;
    kvq_train_rabitq_opts ro = {.num_clusters = o->num_clusters, .max_iter = o->max_iter,
                                .max_points_per_centroid = o->max_points_per_centroid > 0 ? o->max_points_per_centroid : -1};
    return each_stream(t, calib_layers(t, o), calib_tokens(t, o), o->seed, p, "rabitq", "rabitq",
                       rabitq_stream, &ro, out);
}

kvq_status kvq_calib_commvq(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p,
                            kvq_artifacts *out)
{
    kvq_status cs = kvq_check_shape("commvq", t->path, t->n_layers, t->n_kv_heads, t->head_dim);
    if (cs) return cs;
    kvq_train_commvq_opts co = {
        .bits = (int)lround(o->target_bits), .num_centroids = o->num_centroids,
        .em_iters = o->max_iter < KVQ_COMMVQ_MAX_EM ? o->max_iter : KVQ_COMMVQ_MAX_EM,
        .max_points_per_centroid = o->max_points_per_centroid > 0 ? o->max_points_per_centroid : -1};
    return each_stream(t, calib_layers(t, o), calib_tokens(t, o), o->seed, p, "commvq", "commvq",
                       commvq_stream, &co, out);
}
