// linear.h — y = x W^T with W left in its checkpoint dtype (BF16, F16 or
// F32), usually a view into the safetensors mapping, so a checkpoint's
// weights are never copied whole to f32 (an 8B bf16 model is 16 GB mapped,
// it would be 32 GB as f32).
//
// The fast path converts a tile of W's rows to f32 in the plan's scratch and
// hands it to cblas_sgemm (n tokens) or cblas_sgemv (one token): each tile
// is converted once per call, whatever n is, so a prefill chunk of n tokens
// converts every weight once. F32 weights at a 4-byte aligned address skip
// the tile (BLAS reads them in place). The scalar reference converts element
// by element and sums in double; tests/test_linear.c checks one against the
// other.
#ifndef KVQ_LINEAR_H
#define KVQ_LINEAR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kvq.h"
#include "safetensors.h"

// A (rows, cols) row-major matrix of F32, F16 or BF16 little-endian elements
// at any alignment. Borrowed: the bytes belong to a mapping or the caller.
// mapped: the bytes are a read-only file mapping, so their pages may be
// given back (kvq_weight_release) and fault in again from the file.
typedef struct kvq_weight {
    const uint8_t *data;
    kvq_dtype dtype;
    int64_t rows, cols;
    bool mapped;
} kvq_weight;

// Scratch for the tiled path. tile_floats: f32 elements of one tile (0: the
// default, 1M = 4 MiB: measured on a 4096 x 14336 bf16 weight, fewer rows
// per tile re-pack the activations in BLAS too often); a tile holds
// tile_floats / cols rows (a multiple of 16 above 16; a row longer than
// the tile is done in column slices).
typedef struct kvq_linear_plan kvq_linear_plan;
kvq_status kvq_linear_plan_new(size_t tile_floats, kvq_linear_plan **out);
void kvq_linear_plan_free(kvq_linear_plan *p);   // NULL is fine

// y (n, w->rows) = beta y + x (n, w->cols) . W^T, all row-major, y's rows
// ldy floats apart (ldy >= w->rows). beta 1 accumulates (the residual).
// Never allocates; BLAS threads as openblas_set_num_threads says.
void kvq_linear(kvq_linear_plan *p, const float *x, int n, const kvq_weight *w, float beta, float *y, size_t ldy);
// The same by definition: each product in double, summed in column order.
void kvq_linear_ref(const float *x, int n, const kvq_weight *w, float beta, float *y, size_t ldy);

// Row r of W as f32 (cols floats): embedding lookups.
void kvq_weight_row_f32(const kvq_weight *w, int64_t r, float *dst);
// Rows [r0, r0 + nr) of W as one (nr, cols) view.
kvq_weight kvq_weight_rows(const kvq_weight *w, int64_t r0, int64_t nr);
size_t kvq_weight_bytes(const kvq_weight *w);
// Mapped weights only (no-op otherwise): drop W's pages from this process
// (MADV_DONTNEED; the page cache keeps them, a later read faults them back
// in), or ask the kernel to read them ahead (MADV_WILLNEED). The range is
// widened to whole pages: a neighbour's pages dropped with it just fault in.
void kvq_weight_release(const kvq_weight *w);
void kvq_weight_prefetch(const kvq_weight *w);
#endif
