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
#include <stdio.h>
#include "calib.h"
#include "pool.h"
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

// One stream per task, a batch of kvq_threads() streams at a time on the
// pool. Each task reads its own keys and trains into its own artifacts (the
// trainer's progress is not forwarded: callbacks stay on the caller's
// thread); after a batch its tensors move to out in stream order and p hears
// the batch's end, between batches it may cancel. Streams are seeded by index,
// so the artifacts do not depend on the thread count.
typedef struct {
    const kvq_trace *t;
    int n, H, base;
    uint64_t seed;
    stream_fn fn;
    const void *opts;
    float *k;                // (batch, n_tokens, d)
    kvq_artifacts **art;     // (batch)
    kvq_status *st;
    char (*err)[200];        // kvq_last_error is per thread
} stream_job;

static void stream_task(void *ctx, int i)
{
    stream_job *j = ctx;
    int u = j->base + i, l = u / j->H, h = u % j->H, d = j->t->head_dim;
    float *k = j->k + (size_t)i * j->t->n_tokens * d;
    kvq_status s = kvq_trace_keys(j->t, l, h, k);
    if (!s) s = j->fn(k, (size_t)j->n, d, l, h, j->opts, j->seed + (uint64_t)u, NULL, j->art[i]);
    j->st[i] = s;
    if (s) snprintf(j->err[i], sizeof j->err[i], "%s", kvq_last_error());
}

// The keys of the first n tokens of every kv head of layers 0..L-1; stage:
// the progress stage and the name in the cancellation message.
static kvq_status each_stream(const kvq_trace *t, int L, int n, uint64_t seed, kvq_progress *p,
                              const char *stage, stream_fn fn, const void *opts, kvq_artifacts *out)
{
    int d = t->head_dim, H = t->n_kv_heads, U = L * H, B = kvq_threads() < U ? kvq_threads() : U;
    stream_job j = {.t = t, .n = n, .H = H, .seed = seed, .fn = fn, .opts = opts};
    j.k = malloc(sizeof(float) * (size_t)B * t->n_tokens * d);
    j.art = calloc((size_t)B, sizeof *j.art);
    j.st = malloc(sizeof(kvq_status) * (size_t)B);
    j.err = malloc(sizeof *j.err * (size_t)B);
    kvq_status s = (!j.k || !j.art || !j.st || !j.err) ? kvq_error(KVQ_ERR_NOMEM, "%s calibration: out of memory", stage)
                                                       : KVQ_OK;
    for (int b0 = 0; b0 < U && !s; b0 += B) {
        int nb = U - b0 < B ? U - b0 : B;
        for (int i = 0; i < nb && !s; i++) s = kvq_artifacts_new(&j.art[i]);
        if (s) break;
        j.base = b0;
        kvq_parallel_for(nb, stream_task, &j);
        for (int i = 0; i < nb && !s; i++) {
            if (j.st[i]) {
                s = kvq_error(j.st[i], "%s", j.err[i]);
                break;
            }
            for (int a = 0; a < kvq_artifacts_count(j.art[i]) && !s; a++) {
                const char *name = kvq_artifacts_name(j.art[i], a);
                int nd;
                int64_t sh[8];
                const float *x = kvq_artifacts_get(j.art[i], name, &nd, sh);
                s = kvq_artifacts_put(out, name, x, nd, sh);
            }
        }
        for (int i = 0; i < nb; i++) {
            kvq_artifacts_free(j.art[i]);
            j.art[i] = NULL;
        }
        if (!s && kvq_progress_report(p, (b0 + nb) / (double)U, stage)) s = KVQ_ERR_CANCELLED;
        if (s == KVQ_ERR_CANCELLED) s = kvq_error(KVQ_ERR_CANCELLED, "%s calibration cancelled", stage);
    }
    free(j.k), free(j.art), free(j.st), free(j.err);
    return s;
}

kvq_status kvq_train_rabitq(const kvq_trace *t, const kvq_train_rabitq_opts *o, kvq_artifacts *art)
{
    kvq_progress_begin(o->progress);
    return each_stream(t, t->n_layers, t->n_tokens, o->seed, o->progress, "rabitq", rabitq_stream, o, art);
}

kvq_status kvq_train_commvq(const kvq_trace *t, const kvq_train_commvq_opts *o, kvq_artifacts *art)
{
    kvq_progress_begin(o->progress);
    return each_stream(t, t->n_layers, t->n_tokens, o->seed, o->progress, "commvq", commvq_stream, o, art);
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
    return each_stream(t, calib_layers(t, o), calib_tokens(t, o), o->seed, p, "rabitq", rabitq_stream, &ro, out);
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
    return each_stream(t, calib_layers(t, o), calib_tokens(t, o), o->seed, p, "commvq", commvq_stream, &co, out);
}
