// methods/methods.h — entry points of every method file. One file per method
// under engine/methods/, one row per method in engine/methods.c.
#ifndef KVQ_METHODS_H
#define KVQ_METHODS_H
#include "kvq.h"

#define KVQ_METHOD_DECLARE(p)                                                          \
    kvq_status kvq_##p##_plan_new(const kvq_plan_params *pp, void **plan);              \
    void kvq_##p##_plan_free(void *plan);                                               \
    size_t kvq_##p##_bytes_per_vector(const void *plan);                                \
    void kvq_##p##_encode(const void *plan, const float *x, size_t n, uint8_t *codes);  \
    void kvq_##p##_decode(const void *plan, const uint8_t *codes, size_t n, float *x);  \
    size_t kvq_##p##_query_bytes(const void *plan);                                     \
    void kvq_##p##_prepare_query(const void *plan, const float *q, void *qs);           \
    void kvq_##p##_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, \
                         float *scores);

// Designated initializers for the function fields of a table row.
#define KVQ_METHOD_FNS(p)                                                  \
    .plan_new = kvq_##p##_plan_new, .plan_free = kvq_##p##_plan_free,      \
    .bytes_per_vector = kvq_##p##_bytes_per_vector,                        \
    .encode = kvq_##p##_encode, .decode = kvq_##p##_decode,                \
    .query_bytes = kvq_##p##_query_bytes,                                  \
    .prepare_query = kvq_##p##_prepare_query, .score = kvq_##p##_score

// Placeholder bodies for a method whose file is not written yet: plan_new
// fails with KVQ_ERR_NOT_IMPLEMENTED, so nothing else is ever called.
#define KVQ_METHOD_STUB(p, label)                                                      \
    kvq_status kvq_##p##_plan_new(const kvq_plan_params *pp, void **plan)               \
    { (void)pp; *plan = NULL;                                                           \
      return kvq_error(KVQ_ERR_NOT_IMPLEMENTED, "method '%s' is not implemented yet", label); } \
    void kvq_##p##_plan_free(void *plan) { (void)plan; }                               \
    size_t kvq_##p##_bytes_per_vector(const void *plan) { (void)plan; return 0; }      \
    void kvq_##p##_encode(const void *plan, const float *x, size_t n, uint8_t *c)      \
    { (void)plan; (void)x; (void)n; (void)c; }                                          \
    void kvq_##p##_decode(const void *plan, const uint8_t *c, size_t n, float *x)      \
    { (void)plan; (void)x; (void)n; (void)c; }                                          \
    size_t kvq_##p##_query_bytes(const void *plan) { (void)plan; return 0; }           \
    void kvq_##p##_prepare_query(const void *plan, const float *q, void *qs)           \
    { (void)plan; (void)q; (void)qs; }                                                  \
    void kvq_##p##_score(const void *plan, const void *qs, const uint8_t *c, size_t n, \
                         float *s) { (void)plan; (void)qs; (void)c; (void)n; (void)s; }

KVQ_METHOD_DECLARE(fp16)
KVQ_METHOD_DECLARE(q8_0)
KVQ_METHOD_DECLARE(q4_0)
KVQ_METHOD_DECLARE(iq4_nl)
KVQ_METHOD_DECLARE(q4_1)
KVQ_METHOD_DECLARE(q5_0)
KVQ_METHOD_DECLARE(q5_1)
KVQ_METHOD_DECLARE(ggml_f32)
KVQ_METHOD_DECLARE(ggml_f16)
KVQ_METHOD_DECLARE(ggml_bf16)
KVQ_METHOD_DECLARE(vllm_fp8_e4m3)
KVQ_METHOD_DECLARE(vllm_fp8_e5m2)
KVQ_METHOD_DECLARE(vllm_tq_k4)
KVQ_METHOD_DECLARE(vllm_tq_k3)
KVQ_METHOD_DECLARE(vllm_tq_v4)
KVQ_METHOD_DECLARE(vllm_tq_v3)
KVQ_METHOD_DECLARE(vllm_fp8_e4m3_calc)
KVQ_METHOD_DECLARE(vllm_fp8_e5m2_calc)
// vLLM's calc_kv_scales on one layer's first batch x (n values, all kv
// heads): max |fp16(x)| / 200 for keys, / 100 for values (fp32).
float kvq_vllm_kv_scale(const float *x, size_t n, bool is_value);
KVQ_METHOD_DECLARE(mlx_affine_g32)
KVQ_METHOD_DECLARE(mlx_affine_g64)
KVQ_METHOD_DECLARE(mlx_affine_g128)
KVQ_METHOD_DECLARE(tomturbo_turbo2)
KVQ_METHOD_DECLARE(tomturbo_turbo3)
KVQ_METHOD_DECLARE(tomturbo_turbo4)
KVQ_METHOD_DECLARE(hf_quanto_qint2)
KVQ_METHOD_DECLARE(hf_quanto_qint4)
size_t kvq_hf_quanto_qint2_side_bytes(const void *plan);
size_t kvq_hf_quanto_qint4_side_bytes(const void *plan);
KVQ_METHOD_DECLARE(hf_hqq)
size_t kvq_hf_hqq_side_bytes(const void *plan);
KVQ_METHOD_DECLARE(q4_0_hadamard)
KVQ_METHOD_DECLARE(kivi)
size_t kvq_kivi_group_vectors(const void *plan);   // 32 for keys, 1 for values
KVQ_METHOD_DECLARE(tq_mse)
KVQ_METHOD_DECLARE(tq_prod)
KVQ_METHOD_DECLARE(tq_rvq)
KVQ_METHOD_DECLARE(qjl)
KVQ_METHOD_DECLARE(polarquant)
KVQ_METHOD_DECLARE(rabitq)
KVQ_METHOD_DECLARE(commvq)
KVQ_METHOD_DECLARE(vecinfer)
KVQ_METHOD_DECLARE(spectral)
KVQ_METHOD_DECLARE(ratequant)
// Side-table bytes (see kvq_method.side_bytes) of the methods that hold some.
size_t kvq_q4_0_hadamard_side_bytes(const void *plan);
size_t kvq_tq_mse_side_bytes(const void *plan);
size_t kvq_tq_prod_side_bytes(const void *plan);
size_t kvq_tq_rvq_side_bytes(const void *plan);
size_t kvq_qjl_side_bytes(const void *plan);
size_t kvq_polarquant_side_bytes(const void *plan);
size_t kvq_rabitq_side_bytes(const void *plan);
size_t kvq_commvq_side_bytes(const void *plan);
size_t kvq_vecinfer_side_bytes(const void *plan);
size_t kvq_spectral_side_bytes(const void *plan);
size_t kvq_ratequant_side_bytes(const void *plan);
#endif
