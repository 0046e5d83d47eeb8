// methods/fp16.c — the uncompressed baseline: each coordinate stored as IEEE
// half (round to nearest even). Record: head_dim x f16, little-endian.
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "methods.h"

typedef struct {
    int d;
} fp16_plan;

kvq_status kvq_fp16_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    if (pp->head_dim <= 0 || pp->head_dim > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_ARG, "fp16: head_dim %d out of range (expected 1..%d)",
                         pp->head_dim, KVQ_MAX_HEAD_DIM);
    fp16_plan *p = malloc(sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "fp16: out of memory");
    p->d = pp->head_dim;
    *plan = p;
    return KVQ_OK;
}

void kvq_fp16_plan_free(void *plan) { free(plan); }

size_t kvq_fp16_bytes_per_vector(const void *plan)
{
    return 2 * (size_t)((const fp16_plan *)plan)->d;
}

void kvq_fp16_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const size_t nv = n * (size_t)((const fp16_plan *)plan)->d;
    for (size_t i = 0; i < nv; i++) {
        uint16_t h = kvq_f32_to_f16(x[i]);
        codes[2 * i] = (uint8_t)(h & 0xff);
        codes[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

void kvq_fp16_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    kvq_f16_row_to_f32(codes, x, n * (size_t)((const fp16_plan *)plan)->d);
}

size_t kvq_fp16_query_bytes(const void *plan)
{
    return sizeof(float) * (size_t)((const fp16_plan *)plan)->d;
}

void kvq_fp16_prepare_query(const void *plan, const float *q, void *qs)
{
    memcpy(qs, q, kvq_fp16_query_bytes(plan));
}

void kvq_fp16_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const int d = ((const fp16_plan *)plan)->d;
    const float *q = qs;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * 2 * (size_t)d;
        float acc = 0.0f;
        for (int j = 0; j < d; j++)
            acc += kvq_f16_to_f32((uint16_t)(c[2 * j] | (c[2 * j + 1] << 8))) * q[j];
        scores[i] = acc;
    }
}
