// trace_impl.h — loader state behind kvq_trace.impl, shared by trace.c
// (kvtrace and mlx_lm safetensors) and trace_npy.c. Not a public header.
#ifndef KVQ_TRACE_IMPL_H
#define KVQ_TRACE_IMPL_H
#include "npy.h"
#include "trace.h"

typedef struct kvq_trace_impl {
    kvq_st *st;     // kvtrace / mlx: the mapping the tensor refs point into
    const kvq_st_tensor *keys[KVQ_MAX_LAYERS], *values[KVQ_MAX_LAYERS], *queries[KVQ_MAX_LAYERS];
    int dim_off;    // leading batch dim of 1 in mlx caches
    kvq_npy *npk, *npv;   // npy: keys and optional values, [layers, kv_heads, tokens, head_dim]
    int refs;       // owners beyond the first (kvq_trace_ref), changed atomically
    bool scan_pending;   // opened with defer_scan, kvq_trace_validate not yet passed
} kvq_trace_impl;

// Fills t (shape fields, has_values, dtype, source) and t->impl from .npy files.
kvq_status kvq_trace_load_npy(kvq_trace *t, const char *path, const kvq_trace_opts *opts);
// Rows [row0, row0 + n_rows) of one (layer, kv head): out (n_rows, head_dim);
// arguments already checked.
void kvq_trace_npy_read(const kvq_npy *a, int layer, int kv_head, size_t row0, size_t n_rows, float *out);
#endif
