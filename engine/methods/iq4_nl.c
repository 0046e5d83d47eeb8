// methods/iq4_nl.c — ggml iq4_nl (quantize_row_iq4_nl_ref, ntry = -1): blocks of 32, f16
// scale times the non-uniform grid kvq_iq4nl_grid: 4.5 bits per value.
// A record is one ggml row: head_dim/32 blocks of 18 bytes (layout and
// formulas in ggml_blocks.h), so bytes_per_vector = 18 * head_dim / 32.
// score: dequantize-dot per block from the codes with a float query (ggml's
// vec_dot also rounds the query to q8_0; see ggml_blocks.h).
#include <stdlib.h>
#include <string.h>
#include "ggml_blocks.h"
#include "methods.h"

kvq_status kvq_iq4_nl_plan_new(const kvq_plan_params *pp, void **plan)
{
    return kvq_ggml_plan_new(pp, "iq4_nl", plan);
}

void kvq_iq4_nl_plan_free(void *plan) { free(plan); }

size_t kvq_iq4_nl_bytes_per_vector(const void *plan)
{
    return (size_t)KVQ_GGML_IQ4_NL_BYTES * (size_t)((const kvq_ggml_plan *)plan)->nblk;
}

void kvq_iq4_nl_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const size_t nb = n * (size_t)((const kvq_ggml_plan *)plan)->nblk;
    for (size_t b = 0; b < nb; b++)
        kvq_ggml_iq4_nl_quantize(x + b * KVQ_GGML_QK, codes + b * KVQ_GGML_IQ4_NL_BYTES, -1);
}

void kvq_iq4_nl_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const size_t nb = n * (size_t)((const kvq_ggml_plan *)plan)->nblk;
    for (size_t b = 0; b < nb; b++)
        kvq_ggml_iq4_nl_dequantize(codes + b * KVQ_GGML_IQ4_NL_BYTES, x + b * KVQ_GGML_QK);
}

size_t kvq_iq4_nl_query_bytes(const void *plan)
{
    return sizeof(float) * (size_t)((const kvq_ggml_plan *)plan)->d;
}

void kvq_iq4_nl_prepare_query(const void *plan, const float *q, void *qs)
{
    memcpy(qs, q, kvq_iq4_nl_query_bytes(plan));
}

void kvq_iq4_nl_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                      float *scores)
{
    const int nblk = ((const kvq_ggml_plan *)plan)->nblk;
    const float *q = qs;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)nblk * KVQ_GGML_IQ4_NL_BYTES;
        float acc = 0.0f;
        for (int b = 0; b < nblk; b++)
            acc += kvq_ggml_iq4_nl_dot(c + (size_t)b * KVQ_GGML_IQ4_NL_BYTES, q + b * KVQ_GGML_QK);
        scores[i] = acc;
    }
}
