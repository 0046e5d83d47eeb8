// bench_data.h — what the bench binaries (bench.c, ggml_bench.c,
// torch_bench.c) share beyond the timing core: the clock they time with and
// the sample trace tiled to long contexts. Unlike bench_core, this reads
// the engine (kvq_now_s, the trace reader).
#ifndef BENCH_DATA_H
#define BENCH_DATA_H
#include <stddef.h>
#include "bench_core.h"

// kvq_now_s: monotonic seconds
extern const bench_clock bench_wall_clock;

// Every (layer, kv head) stream of a trace as f32, and one query per head.
typedef struct bench_tiled {
    float *keys, *vals;   // (nstreams, ntok, d) each, stream = layer * n_kv_heads + kv head
    float *q;             // (nh, d): the last query of heads 0..nh-1 of layer 0
    int ntok, nstreams, d;
} bench_tiled;

// Reads the trace at path, which must have head_dim d and >= nh query heads
// with queries. NULL on success (t owns three heap arrays, see
// bench_tiled_free), else a message naming the file (t is left empty).
const char *bench_tiled_load(bench_tiled *t, const char *path, int d, int nh);
void bench_tiled_free(bench_tiled *t);

// Token i (any i >= 0) of kv head h at a long context: the trace's streams
// repeat, stream (i / ntok + h) % nstreams, so neighbouring heads and
// consecutive tiles read different data. src is t->keys or t->vals.
static inline const float *bench_tiled_tok(const bench_tiled *t, const float *src, int h, int i)
{
    int s = (i / t->ntok + h) % t->nstreams;
    return src + ((size_t)s * (size_t)t->ntok + (size_t)(i % t->ntok)) * (size_t)t->d;
}
#endif
