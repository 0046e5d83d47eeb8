// fuzz_npy.c — the .npy header parser on arbitrary bytes (kvq_npy_parse on
// memory), both with and without the bf16 override; whatever it accepts must
// index safely at its first and last elements in both orders.
#include "fuzz_util.h"
#include "npy.h"

static volatile float sink;   // keeps the reads

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int bf = 0; bf < 2; bf++) {
        kvq_npy a;
        if (kvq_npy_parse("fuzz.npy", data, size, bf, &a) != KVQ_OK) continue;
        if (a.ndim < 0 || a.ndim > KVQ_NPY_MAX_DIMS) abort();
        if (a.nbytes != a.nelem * (size_t)a.esize) abort();
        if (a.nbytes && (a.data < data || a.data + a.nbytes > data + size)) abort();
        if (a.nelem == 0) continue;
        int64_t first[KVQ_NPY_MAX_DIMS] = {0}, last[KVQ_NPY_MAX_DIMS];
        for (int d = 0; d < a.ndim; d++) last[d] = a.shape[d] - 1;
        size_t i0 = kvq_npy_offset(&a, first), i1 = kvq_npy_offset(&a, last);
        if (i0 >= a.nelem || i1 >= a.nelem) abort();
        sink += kvq_npy_at(&a, i0) + kvq_npy_at(&a, i1);
    }
    return 0;
}
