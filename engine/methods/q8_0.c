// methods/q8_0.c — ggml q8_0 (quantize_row_q8_0_ref): blocks of 32 values, f16 scale
// d = amax/127, int8 codes round(x/d): 8.5 bits per value.
// A record is one ggml row: head_dim/32 blocks of 34 bytes (layout and
// formulas in ggml_blocks.h), so bytes_per_vector = 34 * head_dim / 32.
// score: dequantize-dot per block from the codes with a float query (ggml's
// vec_dot also rounds the query to q8_0; see ggml_blocks.h).
#include <stdlib.h>
#include <string.h>
#include "ggml_blocks.h"
#include "methods.h"

kvq_status kvq_q8_0_plan_new(const kvq_plan_params *pp, void **plan)
{
    return kvq_ggml_plan_new(pp, "q8_0", plan);
}

void kvq_q8_0_plan_free(void *plan) { free(plan); }

size_t kvq_q8_0_bytes_per_vector(const void *plan)
{
    return (size_t)KVQ_GGML_Q8_0_BYTES * (size_t)((const kvq_ggml_plan *)plan)->nblk;
}

void kvq_q8_0_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const size_t nb = n * (size_t)((const kvq_ggml_plan *)plan)->nblk;
    // a batch is one long ggml row: blocks back to back
    kvq_ggml_q8_0_quantize_row(x, codes, nb);
}

void kvq_q8_0_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const size_t nb = n * (size_t)((const kvq_ggml_plan *)plan)->nblk;
    kvq_ggml_q8_0_dequantize_row(codes, x, nb);
}

size_t kvq_q8_0_query_bytes(const void *plan)
{
    return sizeof(float) * (size_t)((const kvq_ggml_plan *)plan)->d;
}

void kvq_q8_0_prepare_query(const void *plan, const float *q, void *qs)
{
    memcpy(qs, q, kvq_q8_0_query_bytes(plan));
}

void kvq_q8_0_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const int nblk = ((const kvq_ggml_plan *)plan)->nblk;
    const float *q = qs;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)nblk * KVQ_GGML_Q8_0_BYTES;
        scores[i] = kvq_ggml_q8_0_dot_row(c, q, (size_t)nblk);
    }
}
