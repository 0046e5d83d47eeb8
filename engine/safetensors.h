// safetensors.h — memory-mapped safetensors reader and atomic writer.
// Reader applies every check of the reference implementation: header length
// limit (100 MB) and bound, JSON object, known dtypes, shapes, byte size =
// product(shape) x dtype size with overflow checks, offsets contiguous from 0
// with no holes or overlap and ending at the file's end, duplicate names.
// Tensor data is not aligned: read it through memcpy (kvq_st_read_f32).
#ifndef KVQ_SAFETENSORS_H
#define KVQ_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "kvq.h"

typedef enum {
    KVQ_DT_F32, KVQ_DT_F16, KVQ_DT_BF16, KVQ_DT_F64, KVQ_DT_F8_E4M3,
    KVQ_DT_I32, KVQ_DT_I64, KVQ_DT_I16, KVQ_DT_I8, KVQ_DT_U8, KVQ_DT_BOOL,
    KVQ_DT_COUNT
} kvq_dtype;
const char *kvq_dtype_name(kvq_dtype t);     // "F16"
int kvq_dtype_size(kvq_dtype t);              // bytes per element

#define KVQ_ST_MAX_DIMS 8
typedef struct kvq_st_tensor {
    char *name;
    kvq_dtype dtype;
    int ndim;
    int64_t shape[KVQ_ST_MAX_DIMS];
    size_t nelem;
    const uint8_t *data;   // into the mapping, unaligned
    size_t nbytes;
} kvq_st_tensor;

typedef struct kvq_st {
    char path[KVQ_PATH_LEN];
    void *map; size_t map_len;
    int n_tensors;
    kvq_st_tensor *tensors;
    int n_meta;
    char **meta_keys, **meta_vals;   // __metadata__ (string values)
} kvq_st;

kvq_status kvq_st_open(const char *path, kvq_st **out);
void kvq_st_close(kvq_st *st);
const kvq_st_tensor *kvq_st_find(const kvq_st *st, const char *name);  // NULL when absent
const char *kvq_st_meta(const kvq_st *st, const char *key);           // NULL when absent
// Convert any float dtype (F32/F16/BF16/F64/F8_E4M3) elements
// [start, start+n) to f32. KVQ_ERR_FORMAT for non-float dtypes.
kvq_status kvq_st_read_f32(const kvq_st_tensor *t, size_t start, size_t n, float *dst);

// ---- writer: build a list, then write atomically (temp, fsync, rename) ----
typedef struct kvq_st_wtensor {
    const char *name;
    kvq_dtype dtype;
    int ndim;
    int64_t shape[KVQ_ST_MAX_DIMS];
    const void *data;   // little-endian, nbytes = prod(shape) * dtype size
} kvq_st_wtensor;
kvq_status kvq_st_write(const char *path, const kvq_st_wtensor *t, int n_tensors,
                        const char *const *meta_keys, const char *const *meta_vals, int n_meta);

// Atomic file helpers shared by every writer (artifacts, reports, exports):
// write to "<path>.tmp.<pid>", fsync, rename over path, fsync the directory.
typedef struct kvq_atomic_file { void *fp; char tmp[KVQ_PATH_LEN + 32]; char path[KVQ_PATH_LEN]; } kvq_atomic_file;
kvq_status kvq_atomic_open(kvq_atomic_file *af, const char *path);
kvq_status kvq_atomic_commit(kvq_atomic_file *af);   // closes; on error removes the temp
void kvq_atomic_abort(kvq_atomic_file *af);
#endif
