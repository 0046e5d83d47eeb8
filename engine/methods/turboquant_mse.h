// methods/turboquant_mse.h — what the fused attention of the cache
// (engine/cache_attend.c) needs from turboquant_mse beyond the traits
// table: scoring several queries per pass over the codes, and value
// accumulation in the rotated basis. Plans are the table's plan_new plans.
#ifndef KVQ_TURBOQUANT_MSE_H
#define KVQ_TURBOQUANT_MSE_H
#include <stdbool.h>
#include "kvq.h"

// True when m is the turboquant_mse row (its plans take the calls below).
bool kvq_tq_mse_is(const kvq_method *m);
// scores[q * lds + i] ~= q . k_i for q < nq (<= 8) query states made by
// prepare_query, n records. Equals score() per query on the scalar path;
// the AVX2 path decodes each record once for all nq queries.
void kvq_tq_mse_score_multi(const void *plan, const void *const *qs, int nq, const uint8_t *codes,
                            size_t n, float *scores, size_t lds);
// acc (nq, head_dim) += sum_i w[q * ldw + i] R decode(v_i): value records
// weighted and summed in the ROTATED basis, no per-vector inverse rotation.
void kvq_tq_mse_accumulate(const void *plan, const uint8_t *codes, size_t n, const float *w,
                           size_t ldw, int nq, float *acc);
// out (head_dim) = R^T acc: an accumulator back to the original basis.
void kvq_tq_mse_unrotate(const void *plan, const float *acc, float *out);
#endif
