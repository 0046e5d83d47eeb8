// fuzz_safetensors.c — the safetensors reader on arbitrary bytes (in memory,
// kvq_st_open_buffer), then every accessor on whatever it accepted: an
// accepted file must be safe to read end to end.
#include "fuzz_util.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvq_st *st = NULL;
    if (kvq_st_open_buffer("fuzz.safetensors", data, size, &st) != KVQ_OK) return 0;
    (void)kvq_st_meta(st, "format");
    for (int i = 0; i < st->n_meta; i++)
        if (kvq_st_meta(st, st->meta_keys[i]) == NULL) abort();   // every listed key is found
    for (int i = 0; i < st->n_tensors; i++) {
        const kvq_st_tensor *t = &st->tensors[i];
        if (kvq_st_find(st, t->name) != t) abort();
        if (t->nbytes != t->nelem * (size_t)kvq_dtype_size(t->dtype)) abort();
        if (t->nbytes && (t->data < st->buf || t->data + t->nbytes > st->buf + st->buf_len)) abort();
        float f[64];
        int32_t v[64];
        size_t n = t->nelem < 64 ? t->nelem : 64;
        if (kvq_dtype_is_float(t->dtype)) {
            bool is_nan;
            (void)kvq_scan_nonfinite(t->data, t->nelem, t->dtype, false, &is_nan);
            (void)kvq_scan_nonfinite(t->data, t->nelem, t->dtype, true, &is_nan);
            if (kvq_st_read_f32(t, 0, n, f) != KVQ_OK) abort();
            if (kvq_st_read_f32(t, t->nelem - n, n, f) != KVQ_OK) abort();
            if (kvq_st_read_f32(t, t->nelem, 1, f) == KVQ_OK) abort();   // past the end
        } else {
            (void)kvq_st_read_i32(t, 0, n, v);
            (void)kvq_st_read_i32(t, t->nelem - n, n, v);
        }
    }
    kvq_st_close(st);
    return 0;
}
