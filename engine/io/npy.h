// npy.h — memory-mapped NumPy .npy arrays (format versions 1.0, 2.0, 3.0).
// Float data only: '<f2' '<f4' '<f8' and the big-endian '>f2' '>f4' '>f8'
// ('=' and '|' read as little-endian); C or Fortran order. With as_bf16,
// any 2-byte dtype ('<V2', '|V2', '<u2', '<i2', '<f2', '>u2', ...) is
// reinterpreted as bfloat16, since NumPy has no bf16 and tools save it as
// opaque 2-byte data. The header dict is parsed as the Python literal it is
// ({'descr': ..., 'fortran_order': ..., 'shape': (...)}, exactly those keys);
// the data must be exactly prod(shape) x itemsize bytes.
// Rejections name the file, the field, what was found and what was expected.
#ifndef KVQ_NPY_H
#define KVQ_NPY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvq.h"
#include "safetensors.h"

#define KVQ_NPY_MAX_DIMS 8

typedef struct kvq_npy {
    char path[KVQ_PATH_LEN];
    void *map; size_t map_len;     // NULL/0 for kvq_npy_parse on caller memory
    int version;                   // major version: 1, 2 or 3
    char descr[16];                // as written in the header, e.g. "<f2"
    kvq_dtype dtype;               // F16, F32, F64 or BF16 (after the override)
    int esize;                     // bytes per element
    bool big_endian, fortran_order;
    int ndim;
    int64_t shape[KVQ_NPY_MAX_DIMS];
    size_t nelem;
    const uint8_t *data;           // unaligned; storage order
    size_t nbytes;
} kvq_npy;

kvq_status kvq_npy_open(const char *path, bool as_bf16, kvq_npy **out);
void kvq_npy_close(kvq_npy *a);   // NULL is fine
// Validate a whole .npy image in memory (buf, len) and describe it in *out
// (out->data points into buf). `name` is used in messages.
kvq_status kvq_npy_parse(const char *name, const void *buf, size_t len, bool as_bf16, kvq_npy *out);

// Storage position of a logical index idx[ndim] (C or Fortran order).
size_t kvq_npy_offset(const kvq_npy *a, const int64_t *idx);
// Element at storage position i as f32 (i < nelem; not checked).
float kvq_npy_at(const kvq_npy *a, size_t i);

// Write a C-order '<f4' array with a version 1.0 header, atomically.
kvq_status kvq_npy_write_f32(const char *path, int ndim, const int64_t *shape, const float *data);
#endif
