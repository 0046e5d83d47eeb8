// methods/turboquant_mse.h — what the fused attention of the cache
// (engine/cache/cache_attend.c) needs from turboquant_mse beyond the traits
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
// Value accumulators of one attention: acc (nq, head_dim) in the plan's
// accumulator order, permuted (the AVX2 kernels' order, no transposition per
// block) when kvq_tq_mse_acc_permuted() says so at the start, else natural.
// Pass the same flag to every accumulate and unrotate of those sums;
// elementwise operations (rescaling, weighted merging) do not care.
bool kvq_tq_mse_acc_permuted(const void *plan);
// acc += sum_i w[q * ldw + i] R decode(v_i): value records weighted and
// summed in the ROTATED basis, no per-vector inverse rotation.
void kvq_tq_mse_accumulate(const void *plan, const uint8_t *codes, size_t n, const float *w,
                           size_t ldw, int nq, float *acc, bool permuted);
// out (head_dim) = R^T acc: one query's sums back to the original basis.
void kvq_tq_mse_unrotate(const void *plan, const float *acc, float *out, bool permuted);
#endif
