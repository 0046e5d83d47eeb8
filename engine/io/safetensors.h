// safetensors.h — memory-mapped safetensors reader and atomic writer.
// Reader applies every check of the reference implementation: header length
// limit (100,000,000 bytes) and bound, a JSON object starting with '{',
// duplicate names, known dtypes, shapes of non-negative integers, byte size =
// product(shape) x dtype size with overflow checks equal to end - begin,
// offsets contiguous from 0 with no holes or overlap and ending exactly at
// the file's end, __metadata__ a map of string to string.
// Tensor data is not aligned: read it through memcpy (kvq_st_read_f32).
// Every rejection is one line: "<path>: tensor 'x': what was found, what
// was expected". Little-endian hosts only (the format is little-endian).
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
// KVQ_DT_COUNT when the name is not one of the above.
kvq_dtype kvq_dtype_from_name(const char *name);

#define KVQ_ST_MAX_DIMS 8
#define KVQ_ST_MAX_HEADER 100000000u   // the reference reader's limit
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
    void *map; size_t map_len;       // NULL/0 for kvq_st_open_buffer
    const uint8_t *buf; size_t buf_len;   // the bytes parsed (the mapping or caller memory)
    int n_tensors;
    kvq_st_tensor *tensors;          // sorted by data offset
    int n_meta;
    char **meta_keys, **meta_vals;   // __metadata__ (string values)
} kvq_st;

kvq_status kvq_st_open(const char *path, kvq_st **out);
// The same parser and checks on caller memory (fuzzing, embedded files):
// buf must outlive *out; `name` stands in for the path in messages.
kvq_status kvq_st_open_buffer(const char *name, const void *buf, size_t len, kvq_st **out);
void kvq_st_close(kvq_st *st);   // NULL is fine
const kvq_st_tensor *kvq_st_find(const kvq_st *st, const char *name);  // NULL when absent
const char *kvq_st_meta(const kvq_st *st, const char *key);           // NULL when absent
// Convert any float dtype (F32/F16/BF16/F64/F8_E4M3) elements
// [start, start+n) to f32. KVQ_ERR_FORMAT for non-float dtypes,
// KVQ_ERR_ARG when the range is past the tensor.
kvq_status kvq_st_read_f32(const kvq_st_tensor *t, size_t start, size_t n, float *dst);
// Integer dtypes (I8/I16/I32/I64/U8/BOOL) elements [start, start+n) to
// int32; KVQ_ERR_FORMAT for float dtypes or an I64 value outside int32.
kvq_status kvq_st_read_i32(const kvq_st_tensor *t, size_t start, size_t n, int32_t *dst);
// true for F32/F16/BF16/F64/F8_E4M3
int kvq_dtype_is_float(kvq_dtype t);
// Index of the first NaN/Inf among n elements of float dtype dt at p (any
// alignment; byte-swapped when big_endian), or n when all are finite.
// *is_nan says which. Bit tests only, so no conversion cost.
size_t kvq_scan_nonfinite(const void *p, size_t n, kvq_dtype dt, bool big_endian, bool *is_nan);

// ---- writer: build a list, then write atomically (temp, fsync, rename) ----
typedef struct kvq_st_wtensor {
    const char *name;
    kvq_dtype dtype;
    int ndim;
    int64_t shape[KVQ_ST_MAX_DIMS];
    const void *data;   // little-endian, nbytes = prod(shape) * dtype size
} kvq_st_wtensor;
// Tensors are laid out in the order given, contiguous from offset 0; the
// header (with __metadata__ when n_meta > 0) is padded with spaces so the
// data starts at a multiple of 8. Names must be unique and not
// "__metadata__". On any error no file is left behind.
kvq_status kvq_st_write(const char *path, const kvq_st_wtensor *t, int n_tensors,
                        const char *const *meta_keys, const char *const *meta_vals, int n_meta);

// Atomic file helpers shared by every writer (artifacts, reports, exports):
// write to "<path>.tmp.<pid>.<n>" in the same directory (fp is a FILE *),
// then commit: flush, fsync, rename over path, fsync the directory.
typedef struct kvq_atomic_file { void *fp; char tmp[KVQ_PATH_LEN + 32]; char path[KVQ_PATH_LEN]; } kvq_atomic_file;
kvq_status kvq_atomic_open(kvq_atomic_file *af, const char *path);
kvq_status kvq_atomic_commit(kvq_atomic_file *af);   // closes; on error removes the temp
void kvq_atomic_abort(kvq_atomic_file *af);          // closes and removes the temp

// Read-only mapping of a whole file (shared by the safetensors and .npy
// readers). An empty file maps to *map = NULL, *len = 0 (not an error).
kvq_status kvq_file_map(const char *path, void **map, size_t *len);
void kvq_file_unmap(void *map, size_t len);
#endif
