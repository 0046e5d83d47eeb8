// methods/q4_0_hadamard.c — ggml q4_0 after a randomized Hadamard rotation
// (QuaRot-style): y = H diag(s) x / sqrt(d) spreads outlier channels over
// all coordinates, so the per-block max/-8 scale wastes fewer levels.
// Record: q4_0 blocks of the rotated vector (18 * head_dim / 32 bytes, the
// rotation's signs live in the plan). decode rotates back; score rotates the
// query once in prepare_query, since q . x = (R q) . (R x).
// Needs head_dim a power of two (the fast Walsh-Hadamard transform).
#include <stdlib.h>
#include "ggml_blocks.h"
#include "methods.h"
#include "rng.h"
#include "rotate.h"

#define Q4H_STREAM 0x7134685f726f74ULL   // "q4h_rot": independent of other plans' seeds

typedef struct {
    int d, nblk;
    kvq_rotation rot;
} q4h_plan;

kvq_status kvq_q4_0_hadamard_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    const int d = pp->head_dim;
    if (d < KVQ_GGML_QK || d > KVQ_MAX_HEAD_DIM || (d & (d - 1)))
        return kvq_error(KVQ_ERR_ARG,
                         "q4_0_hadamard: head_dim %d is not a power of two in %d..%d "
                         "(the Hadamard transform needs one)",
                         d, KVQ_GGML_QK, KVQ_MAX_HEAD_DIM);
    q4h_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "q4_0_hadamard: out of memory");
    // One rotation per stream: keys and values, layers and heads differ.
    kvq_rng rng;
    uint64_t stream = Q4H_STREAM ^ ((uint64_t)pp->layer << 32) ^ ((uint64_t)pp->kv_head << 8) ^
                      (uint64_t)pp->is_value;
    kvq_rng_seed2(&rng, pp->cfg ? pp->cfg->seed : 0, stream);
    kvq_status s = kvq_rotation_new(&p->rot, d, true, kvq_rng_u64(&rng));
    if (s) {
        free(p);
        return s;
    }
    p->d = d;
    p->nblk = d / KVQ_GGML_QK;
    *plan = p;
    return KVQ_OK;
}

void kvq_q4_0_hadamard_plan_free(void *plan)
{
    q4h_plan *p = plan;
    if (!p) return;
    kvq_rotation_free(&p->rot);
    free(p);
}

size_t kvq_q4_0_hadamard_bytes_per_vector(const void *plan)
{
    return (size_t)KVQ_GGML_Q4_0_BYTES * (size_t)((const q4h_plan *)plan)->nblk;
}

void kvq_q4_0_hadamard_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const q4h_plan *p = plan;
    const size_t bpv = kvq_q4_0_hadamard_bytes_per_vector(plan);
    float y[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        kvq_rotation_apply(&p->rot, x + i * (size_t)p->d, y);
        kvq_ggml_q4_0_quantize_row(y, codes + i * bpv, (size_t)p->nblk);
    }
}

void kvq_q4_0_hadamard_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const q4h_plan *p = plan;
    const size_t bpv = kvq_q4_0_hadamard_bytes_per_vector(plan);
    float y[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        kvq_ggml_q4_0_dequantize_row(codes + i * bpv, y, (size_t)p->nblk);
        kvq_rotation_apply_t(&p->rot, y, x + i * (size_t)p->d);
    }
}

size_t kvq_q4_0_hadamard_query_bytes(const void *plan)
{
    return sizeof(float) * (size_t)((const q4h_plan *)plan)->d;
}

// qs: (head_dim) floats, the rotated query R q.
void kvq_q4_0_hadamard_prepare_query(const void *plan, const float *q, void *qs)
{
    kvq_rotation_apply(&((const q4h_plan *)plan)->rot, q, qs);
}

void kvq_q4_0_hadamard_score(const void *plan, const void *qs, const uint8_t *codes, size_t n,
                             float *scores)
{
    const int nblk = ((const q4h_plan *)plan)->nblk;
    const float *q = qs;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)nblk * KVQ_GGML_Q4_0_BYTES;
        float acc = 0.0f;
        for (int b = 0; b < nblk; b++)
            acc += kvq_ggml_q4_0_dot(c + (size_t)b * KVQ_GGML_Q4_0_BYTES, q + b * KVQ_GGML_QK);
        scores[i] = acc;
    }
}

size_t kvq_q4_0_hadamard_side_bytes(const void *plan)
{
    return kvq_rotation_bytes(&((const q4h_plan *)plan)->rot);
}
