// model.h — a small CPU runner for Hugging Face Llama checkpoints whose
// attention goes through the quantized KV cache (cache.h), so every method,
// bit allocation, window and observer applies during real inference.
//
// Supported: LlamaForCausalLM in the HF layout (config.json plus
// model.safetensors or the shards named by model.safetensors.index.json),
// F16/BF16/F32 weights (converted to f32 once at load), RMSNorm, RoPE in the
// HF rotate_half convention (dims i and i + head_dim/2 form a pair) with
// rope_theta and optional rope_scaling of type "llama3" or "linear",
// grouped-query attention, SwiGLU MLP, final norm, tied or untied lm_head.
// No tokenizer: the caller passes token ids (byte-level models: id = byte).
// Matmuls go through cblas_sgemm (chunks) and cblas_sgemv (single tokens).
#ifndef KVQ_MODEL_H
#define KVQ_MODEL_H
#include <stdbool.h>
#include <stdint.h>
#include "kvq.h"
#include "cache.h"

typedef struct kvq_model_config {
    int vocab_size, hidden_size, intermediate_size;
    int n_layers, n_heads, n_kv_heads, head_dim;
    int max_position_embeddings;   // informational; longer inputs are allowed
    double rope_theta, rms_norm_eps;
    bool tie_word_embeddings;
    char rope_type[16];            // "default", "llama3" or "linear"
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_position;
} kvq_model_config;

// One decoder layer's weights, f32, each (out_features, in_features) row-major
// as stored by HF (y = W x).
typedef struct kvq_model_layer {
    float *attn_norm;    // (hidden)
    float *wq;           // (n_heads * head_dim, hidden)
    float *wk, *wv;      // (n_kv_heads * head_dim, hidden)
    float *wo;           // (hidden, n_heads * head_dim)
    float *mlp_norm;     // (hidden)
    float *w_gate, *w_up;  // (intermediate, hidden)
    float *w_down;       // (hidden, intermediate)
} kvq_model_layer;

typedef struct kvq_model {
    char dir[KVQ_PATH_LEN];
    char name[256];             // last path component of dir
    kvq_model_config cfg;
    float *embed;               // (vocab, hidden)
    float *lm_head;             // (vocab, hidden); == embed when tied
    float *final_norm;          // (hidden)
    kvq_model_layer *layers;    // (n_layers)
    float *inv_freq;            // (head_dim / 2), after rope_scaling
    size_t n_params;
} kvq_model;

// Parse and check config.json only (no weights). Unsupported or missing
// fields fail with KVQ_ERR_UNSUPPORTED / KVQ_ERR_FORMAT naming the field.
kvq_status kvq_model_config_load(const char *dir, kvq_model_config *out);
// Load config and weights from a checkpoint directory. *out owned by the caller.
kvq_status kvq_model_load(const char *dir, kvq_model **out);
void kvq_model_free(kvq_model *m);

// ---- running (model_run.c) ----
// Called after RoPE for every layer and chunk: q (n_heads, n, head_dim),
// k and v (n_kv_heads, n, head_dim), for absolute positions pos0..pos0+n-1.
// Pointers are valid during the call only; k includes key noise when set.
typedef void (*kvq_model_tap_fn)(void *user, int layer, int pos0, int n, const float *q,
                                 const float *k, const float *v);

// One sequence being run: the model (borrowed), its caches and scratch.
typedef struct kvq_runner kvq_runner;

// cfg: cache configuration (method, bits, windows...), copied; art may be NULL
// and must outlive the runner. max_chunk: most tokens per internal forward
// step (scratch is sized by it); longer inputs are cut into chunks.
kvq_status kvq_runner_new(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art,
                          int max_chunk, kvq_runner **out);
void kvq_runner_free(kvq_runner *r);
void kvq_runner_reset(kvq_runner *r);            // back to position 0, caches emptied
int kvq_runner_pos(const kvq_runner *r);         // tokens consumed so far
kvq_cache_set *kvq_runner_caches(kvq_runner *r); // for memory and observer reports
void kvq_runner_set_tap(kvq_runner *r, kvq_model_tap_fn fn, void *user);
// Attach observers (observe.h) to every layer's cache; NULL detaches. With
// KVQ_OBS_ATTENTION the runner also keeps exact f32 keys/values and feeds the
// attention observer for every single-token (decode) step, as the replay loop
// does. Attach at position 0 (KVQ_ERR_ARG otherwise); obs must outlive it.
kvq_status kvq_runner_observe(kvq_runner *r, kvq_observers *obs);

// Add N(0, sigma^2) noise to the post-RoPE keys of one layer before they
// enter the cache (RateQuant sensitivities); layer -1 turns it off. The draw
// stream restarts from seed here.
void kvq_runner_set_key_noise(kvq_runner *r, int layer, double sigma, uint64_t seed);

// Feed n tokens at the current position (ids checked against vocab_size).
// logits: (n, vocab) when all_logits, else (vocab) for the last token only;
// may be NULL. A single token takes the sgemv path (decode).
kvq_status kvq_runner_forward(kvq_runner *r, const int32_t *tokens, int n, bool all_logits,
                              float *logits);

// log2 of softmax(logits)[target], computed stably; logits (vocab).
double kvq_logits_log2_prob(const float *logits, int vocab, int target);
// KL(p || q) in bits of the softmax distributions of two logit rows (vocab).
double kvq_logits_kl_bits(const float *logits_p, const float *logits_q, int vocab);

// ---- evaluation (model_eval.c) ----
typedef struct kvq_ppl_result {
    int n_tokens;           // tokens run; n_tokens - 1 predictions scored
    double bits_per_token;  // mean -log2 p(tok[i+1] | tok[0..i]), i = 0..n-2, under cfg
    double ref_bits_per_token;  // same with the fp16 reference cache (== bits_per_token when cfg is fp16)
    double kl_bits;         // mean KL(ref || cfg) of next-token distributions, same positions; 0 for fp16
    double prefill_s;       // wall time of the cfg run
} kvq_ppl_result;

// True when cfg stores both keys and values in fp16 (the reference).
bool kvq_model_cfg_is_fp16(const kvq_config *cfg);
// A config for the unquantized reference: fp16 keys and values, no windows,
// the cache's plain (non-fused) attention.
void kvq_model_cfg_reference(kvq_config *c);

// Run tokens through the model with cfg's cache and, unless cfg is the fp16
// reference already, with the fp16 reference cache in lockstep (chunks of
// `chunk` tokens). progress may be NULL; cancellation -> KVQ_ERR_CANCELLED.
kvq_status kvq_model_ppl(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art,
                         const int32_t *tokens, int n, int chunk, kvq_progress *progress,
                         kvq_ppl_result *out);

// Run tokens with cfg's cache and write a kvtrace v1 file atomically (F16
// post-RoPE keys, values and queries at every position, query_positions,
// tokens; metadata with bits_per_byte (or bits_per_token when byte_level is
// false)). source: what text was run (metadata "source").
kvq_status kvq_model_capture(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art,
                             const int32_t *tokens, int n, bool byte_level, const char *source,
                             const char *out_path, double *bits_out);

// RateQuant sensitivities from the model itself: for each layer, noise of std
// noise_scale x (that layer's post-RoPE key std over the text) is added to
// its keys (fp16 cache elsewhere), and the mean KL(clean || noisy) of the
// next-token distributions (bits per token, positions 0..n-2) is averaged
// over num_samples draws. mean, std: (n_layers); std may be NULL. Holds the
// clean logits (n x vocab floats).
kvq_status kvq_model_sensitivities(const kvq_model *m, const int32_t *tokens, int n, double noise_scale,
                                   int num_samples, uint64_t seed, kvq_progress *progress, double *mean,
                                   double *std);

// Speed of the runner with cfg's cache: prefill n_prefill tokens (chunks of
// 128, token ids i % vocab: content does not matter for timing), then
// n_decode single-token steps (greedy). Tokens per second of each phase.
kvq_status kvq_model_speed(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art, int n_prefill,
                           int n_decode, double *prefill_tps, double *decode_tps);

// Token files for models without a built-in tokenizer: an I32 (or I64) .npy
// vector, or whitespace-separated decimal integers. *tokens malloc'd.
kvq_status kvq_tokens_load(const char *path, int32_t **tokens, int *n);
#endif
