// trace_npy.c — KV traces from NumPy: keys.npy [layers, kv_heads, tokens,
// head_dim] plus an optional values.npy of the same shape. No queries.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trace_impl.h"

static void fmt_shape(char *buf, size_t n, const kvq_npy *a)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < a->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)a->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static kvq_status check_shape(const kvq_npy *a)
{
    char sh[160];
    fmt_shape(sh, sizeof sh, a);
    if (a->ndim != 4)
        return kvq_error(KVQ_ERR_SHAPE, "%s: shape %s has %d dims, expected 4: [layers, kv_heads, tokens, head_dim]",
                         a->path, sh, a->ndim);
    static const char *const dn[4] = {"layers", "kv_heads", "tokens", "head_dim"};
    for (int d = 0; d < 4; d++)
        if (a->shape[d] <= 0 || a->shape[d] > (d == 0 ? KVQ_MAX_LAYERS : 0x7fffffff))
            return kvq_error(KVQ_ERR_SHAPE, "%s: shape %s: %s is %lld, expected 1..%d", a->path, sh, dn[d],
                             (long long)a->shape[d], d == 0 ? KVQ_MAX_LAYERS : 0x7fffffff);
    return KVQ_OK;
}

// Logical (layer, head, token, channel) of storage position i.
static void unravel(const kvq_npy *a, size_t i, int64_t idx[4])
{
    if (a->fortran_order) {
        for (int d = 0; d < 4; d++) {
            idx[d] = (int64_t)(i % (size_t)a->shape[d]);
            i /= (size_t)a->shape[d];
        }
    } else {
        for (int d = 3; d >= 0; d--) {
            idx[d] = (int64_t)(i % (size_t)a->shape[d]);
            i /= (size_t)a->shape[d];
        }
    }
}

static kvq_status check_finite(const kvq_npy *a)
{
    bool is_nan = false;
    size_t i = kvq_scan_nonfinite(a->data, a->nelem, a->dtype, a->big_endian, &is_nan);
    if (i == a->nelem) return KVQ_OK;
    int64_t idx[4];
    unravel(a, i, idx);
    return kvq_error(KVQ_ERR_NONFINITE, "%s: %s at layer %lld, head %lld, token %lld, channel %lld", a->path,
                     is_nan ? "NaN" : "Inf", (long long)idx[0], (long long)idx[1], (long long)idx[2], (long long)idx[3]);
}

kvq_status kvq_trace_load_npy(kvq_trace *t, const char *path, const kvq_trace_opts *opts)
{
    kvq_trace_impl *im = t->impl;
    bool bf16 = opts && opts->npy_dtype_bf16;
    kvq_status s = kvq_npy_open(path, bf16, &im->npk);
    if (s == KVQ_OK) s = check_shape(im->npk);
    if (s == KVQ_OK) s = check_finite(im->npk);
    if (s == KVQ_OK && opts && opts->values_path && opts->values_path[0]) {
        s = kvq_npy_open(opts->values_path, bf16, &im->npv);
        if (s == KVQ_OK) {
            char a[160], b[160];
            fmt_shape(a, sizeof a, im->npv);
            fmt_shape(b, sizeof b, im->npk);
            if (strcmp(a, b) != 0)
                s = kvq_error(KVQ_ERR_SHAPE, "%s: values shape %s differs from the keys' shape %s (%s)",
                              opts->values_path, a, b, path);
        }
        if (s == KVQ_OK) s = check_finite(im->npv);
    }
    if (s != KVQ_OK) return s;
    const kvq_npy *k = im->npk;
    t->n_layers = (int)k->shape[0];
    t->n_kv_heads = t->n_heads = (int)k->shape[1];
    t->n_tokens = (int)k->shape[2];
    t->head_dim = (int)k->shape[3];
    t->n_queries = 0;
    t->has_values = im->npv != NULL;
    t->dtype = k->dtype;
    snprintf(t->source, sizeof t->source, "npy %s%s%s", k->descr, bf16 ? " as bf16" : "",
             k->fortran_order ? ", fortran order" : "");
    return KVQ_OK;
}

void kvq_trace_npy_read(const kvq_npy *a, int layer, int kv_head, size_t row0, size_t n_rows, float *out)
{
    size_t T = (size_t)a->shape[2], D = (size_t)a->shape[3];
    int64_t idx[4] = {layer, kv_head, (int64_t)row0, 0};
    size_t base = kvq_npy_offset(a, idx);
    if (!a->fortran_order) {
        for (size_t i = 0; i < n_rows * D; i++) out[i] = kvq_npy_at(a, base + i);
        return;
    }
    // Fortran order: the token stride is layers*kv_heads, the channel stride that times tokens
    size_t st = (size_t)a->shape[0] * (size_t)a->shape[1], sd = st * T;
    for (size_t tk = 0; tk < n_rows; tk++)
        for (size_t d = 0; d < D; d++) out[tk * D + d] = kvq_npy_at(a, base + tk * st + d * sd);
}
