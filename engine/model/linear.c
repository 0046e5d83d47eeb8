// linear.c — tiled matmul against weights kept in their checkpoint dtype.
// Why tiles and not per-token conversion: a prefill chunk of n tokens would
// otherwise convert every weight n times; a tile of rows is converted once,
// then BLAS multiplies all n tokens against it while it sits in cache.
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "f16.h"
#include "linear.h"
#include "pool.h"
#include "simd.h"
#if KVQ_HAVE_X86
#include <immintrin.h>
#endif

#define TILE_FLOATS_DEFAULT (1024u * 1024u)

struct kvq_linear_plan {
    size_t cap;     // floats in tile
    float *tile;    // (rows of one tile, cols)
};

kvq_status kvq_linear_plan_new(size_t tile_floats, kvq_linear_plan **out)
{
    *out = NULL;
    kvq_linear_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "linear: out of memory for the plan");
    p->cap = tile_floats ? tile_floats : TILE_FLOATS_DEFAULT;
    p->tile = malloc(sizeof(float) * p->cap);
    if (!p->tile) {
        free(p);
        return kvq_error(KVQ_ERR_NOMEM, "linear: out of memory for a %zu-float tile", tile_floats);
    }
    *out = p;
    return KVQ_OK;
}

void kvq_linear_plan_free(kvq_linear_plan *p)
{
    if (!p) return;
    free(p->tile);
    free(p);
}

// ---- conversion ----
#if KVQ_HAVE_X86
// bf16 is the high half of an f32: widen and shift, 8 at a time.
KVQ_TARGET_AVX2 static void bf16_avx2(const uint8_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i));
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
    }
    if (i < n) kvq_bf16_row_to_f32(src + 2 * i, dst + i, n - i);
}
#endif

static void convert(const kvq_weight *w, const uint8_t *src, float *dst, size_t n)
{
    switch (w->dtype) {
    case KVQ_DT_BF16:
#if KVQ_HAVE_X86
        if (kvq_simd_avx2()) {
            bf16_avx2(src, dst, n);
            return;
        }
#endif
        kvq_bf16_row_to_f32(src, dst, n);
        return;
    case KVQ_DT_F16: kvq_f16_to_f32_fast(src, dst, n); return;
    default: memcpy(dst, src, sizeof(float) * n); return;   // F32 (the loader admits no other dtype)
    }
}

// A tile's conversion split over the engine's pool (pool.h): BLAS threads
// only the products, so with one converting thread the conversion would be
// the serial part of every tile. Tasks cut by size alone: same result.
typedef struct { const kvq_weight *w; const uint8_t *src; float *dst; size_t n, per; } convert_job;

static void convert_task(void *ctx, int t)
{
    const convert_job *j = ctx;
    size_t a = (size_t)t * j->per, e = a + j->per < j->n ? a + j->per : j->n;
    convert(j->w, j->src + a * (size_t)kvq_dtype_size(j->w->dtype), j->dst + a, e - a);
}

#define CONVERT_TASK (128u * 1024u)   // floats per task: small tiles are not worth a hand-off
static void convert_tile(const kvq_weight *w, const uint8_t *src, float *dst, size_t n)
{
    int tasks = (int)((n + CONVERT_TASK - 1) / CONVERT_TASK);
    if (tasks < 2 || kvq_threads() < 2) {
        convert(w, src, dst, n);
        return;
    }
    convert_job j = {w, src, dst, n, CONVERT_TASK};
    kvq_parallel_for(tasks, convert_task, &j);
}

size_t kvq_weight_bytes(const kvq_weight *w)
{
    return (size_t)w->rows * (size_t)w->cols * (size_t)kvq_dtype_size(w->dtype);
}

void kvq_weight_row_f32(const kvq_weight *w, int64_t r, float *dst)
{
    size_t es = (size_t)kvq_dtype_size(w->dtype);
    convert(w, w->data + (size_t)r * (size_t)w->cols * es, dst, (size_t)w->cols);
}

kvq_weight kvq_weight_rows(const kvq_weight *w, int64_t r0, int64_t nr)
{
    kvq_weight v = *w;
    v.data = w->data + (size_t)r0 * (size_t)w->cols * (size_t)kvq_dtype_size(w->dtype);
    v.rows = nr;
    return v;
}

// ---- products ----
void kvq_linear(kvq_linear_plan *p, const float *x, int n, const kvq_weight *w, float beta, float *y, size_t ldy)
{
    int in = (int)w->cols, outd = (int)w->rows;
    if (w->dtype == KVQ_DT_F32 && ((uintptr_t)w->data & 3) == 0) {   // in place
        const float *wf = (const float *)(const void *)w->data;
        if (n == 1) cblas_sgemv(CblasRowMajor, CblasNoTrans, outd, in, 1.0f, wf, in, x, 1, beta, y, 1);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, outd, in, 1.0f, x, in, wf, in, beta, y, (int)ldy);
        return;
    }
    // Rows per tile: as many as fit, a multiple of 16 when more than 16 fit
    // (whole register blocks for the BLAS kernel). When not even one row
    // fits, each row is done in column slices of the tile.
    size_t tr = p->cap / (size_t)in;
    if (tr > 16) tr -= tr % 16;
    if (tr == 0) {
        size_t es = (size_t)kvq_dtype_size(w->dtype);
        for (int r = 0; r < outd; r++) {   // one row: columns in slices of the tile, accumulated
            for (int t = 0; t < n; t++) {
                float *yr = y + (size_t)t * ldy + r;
                float acc = beta == 0.0f ? 0.0f : beta * *yr;
                for (size_t c0 = 0; c0 < (size_t)in; c0 += p->cap) {
                    size_t nc = (size_t)in - c0 < p->cap ? (size_t)in - c0 : p->cap;
                    convert(w, w->data + ((size_t)r * (size_t)in + c0) * es, p->tile, nc);
                    acc += cblas_sdot((int)nc, x + (size_t)t * in + c0, 1, p->tile, 1);
                }
                *yr = acc;
            }
        }
        return;
    }
    size_t row_bytes = (size_t)in * (size_t)kvq_dtype_size(w->dtype);
    for (size_t r0 = 0; r0 < (size_t)outd; r0 += tr) {
        size_t nr = (size_t)outd - r0 < tr ? (size_t)outd - r0 : tr;
        convert_tile(w, w->data + r0 * row_bytes, p->tile, nr * (size_t)in);
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)nr, in, 1.0f, p->tile, in, x, 1, beta, y + r0, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)nr, in, 1.0f, x, in, p->tile, in, beta,
                        y + r0, (int)ldy);
    }
}

static double elem(const kvq_weight *w, size_t i)
{
    const uint8_t *b = w->data + i * (size_t)kvq_dtype_size(w->dtype);
    uint16_t h;
    float f;
    switch (w->dtype) {
    case KVQ_DT_BF16: memcpy(&h, b, 2); return kvq_bf16_to_f32(h);
    case KVQ_DT_F16: memcpy(&h, b, 2); return kvq_f16_to_f32(h);
    default: memcpy(&f, b, 4); return f;
    }
}

void kvq_linear_ref(const float *x, int n, const kvq_weight *w, float beta, float *y, size_t ldy)
{
    size_t in = (size_t)w->cols;
    for (int t = 0; t < n; t++)
        for (size_t r = 0; r < (size_t)w->rows; r++) {
            double acc = 0;
            for (size_t c = 0; c < in; c++) acc += (double)x[(size_t)t * in + c] * elem(w, r * in + c);
            float *yr = y + (size_t)t * ldy + r;
            *yr = beta == 0.0f ? (float)acc : (float)(beta * (double)*yr + acc);
        }
}

// ---- pages ----
static void advise(const kvq_weight *w, int advice)
{
    if (!w->mapped || !w->data) return;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)w->data & ~(uintptr_t)(page - 1);
    uintptr_t e = ((uintptr_t)w->data + kvq_weight_bytes(w) + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    if (e > a) (void)madvise((void *)a, e - a, advice);   // advice only: failure changes nothing but memory
}

void kvq_weight_release(const kvq_weight *w) { advise(w, MADV_DONTNEED); }
void kvq_weight_prefetch(const kvq_weight *w) { advise(w, MADV_WILLNEED); }
