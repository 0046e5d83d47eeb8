// fuzz_trace.c — kvq_trace_open on arbitrary bytes written to a temp file
// (the loader only takes paths): kvtrace and mlx_lm prompt caches when the
// input is not a .npy image, else .npy keys (alone, then with the same file
// as values, then reinterpreted as bf16). Every stream of an accepted trace
// is then read back, so the open-time validation must cover all reads.
#include "fuzz_util.h"
#include "trace.h"

static void read_all(const kvq_trace *t)
{
    if (t->n_layers < 1 || t->n_kv_heads < 1 || t->head_dim < 1 || t->n_tokens < 1) abort();
    size_t rows = (size_t)(t->n_tokens > t->n_queries ? t->n_tokens : t->n_queries);
    float *buf = malloc(rows * (size_t)t->head_dim * sizeof(float));
    if (!buf) abort();
    for (int l = 0; l < t->n_layers; l++) {
        for (int h = 0; h < t->n_kv_heads; h++) {
            if (kvq_trace_keys(t, l, h, buf) != KVQ_OK) abort();
            if ((kvq_trace_values(t, l, h, buf) == KVQ_OK) != t->has_values) abort();
        }
        for (int h = 0; h < t->n_heads; h++)
            if ((kvq_trace_queries(t, l, h, buf) == KVQ_OK) != (t->n_queries > 0)) abort();
        if (kvq_trace_keys(t, l, t->n_kv_heads, buf) == KVQ_OK) abort();   // out of range
    }
    if (kvq_trace_keys(t, t->n_layers, 0, buf) == KVQ_OK) abort();
    for (int i = 0; i < t->n_queries; i++)
        if (t->query_positions[i] < 0 || t->query_positions[i] >= t->n_tokens) abort();
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool npy = size >= 6 && memcmp(data, "\x93NUMPY", 6) == 0;
    char path[300];
    snprintf(path, sizeof path, "%s/t.%s", fuzz_tmpdir(), npy ? "npy" : "safetensors");
    fuzz_write(path, data, size);
    kvq_trace_opts opts[3] = {{0}, {.values_path = path}, {.npy_dtype_bf16 = true}};
    for (int i = 0; i < (npy ? 3 : 1); i++) {
        kvq_trace *t = NULL;
        if (kvq_trace_open(path, &opts[i], &t) == KVQ_OK) {
            read_all(t);
            kvq_trace_free(t);
        } else if (t) {
            abort();   // *out is NULL on failure
        }
    }
    unlink(path);
    return 0;
}
