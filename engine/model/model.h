// model.h — a small CPU runner for Hugging Face decoder-only checkpoints whose
// attention goes through the quantized KV cache (cache.h), so every method,
// bit allocation, window and observer applies during real inference.
//
// Supported model_type values (one row each of the traits table in model.c):
// llama, mistral (sliding_window), qwen2 (q/k/v bias), qwen3 (per-head q/k
// RMSNorm), gemma2 ((1 + w) RMSNorm, sandwich norms, GeGLU, embedding scale,
// query_pre_attn_scalar, attention and final logit soft-capping, alternating
// sliding-window layers), gemma3_text (the same without soft-capping, q/k
// norm, local and global RoPE), phi3 (fused qkv_proj and gate_up_proj). HF
// layout: config.json plus model.safetensors or the shards named by
// model.safetensors.index.json; F16/BF16/F32 weights (converted to f32 once
// at load). RoPE in the HF rotate_half convention (dims i and i + head_dim/2
// form a pair), types default, linear, llama3, yarn and longrope, read from
// rope_scaling (transformers 4) or rope_parameters (transformers 5, also its
// per-layer-type form). Grouped-query attention, tied or untied lm_head.
// Sliding-window layers get a cache whose sliding_window is the model's
// window, so they hold (and are counted at) that window only.
// No tokenizer here: the caller passes token ids (engine/tok/ encodes text with
// a tokenizer.json; byte-level models: id = byte).
// Matmuls go through cblas_sgemm (chunks) and cblas_sgemv (single tokens).
#ifndef KVQ_MODEL_H
#define KVQ_MODEL_H
#include <stdbool.h>
#include <stdint.h>
#include "kvq.h"
#include "cache.h"

typedef enum { KVQ_NORM_W, KVQ_NORM_1PW } kvq_norm_kind;            // y = xhat * w, or xhat * (1 + w) (Gemma)
typedef enum { KVQ_ACT_SILU, KVQ_ACT_GELU_TANH } kvq_act_kind;       // the MLP gate's activation
typedef enum { KVQ_WIN_NONE, KVQ_WIN_ALL, KVQ_WIN_ALTERNATE, KVQ_WIN_PATTERN } kvq_window_kind;

// What distinguishes one model_type (a row of model.c's static table).
typedef struct kvq_arch {
    const char *model_type;      // config.json "model_type"
    const char *label;           // for messages and trace metadata
    kvq_norm_kind norm;
    bool qkv_bias;               // q/k/v projections carry a bias (Qwen2)
    bool qk_norm;                // RMSNorm over head_dim of q and k before RoPE
    bool sandwich_norm;          // post-attention, pre- and post-feedforward norms (Gemma)
    bool embed_scale;            // embeddings x sqrt(hidden_size)
    bool pre_attn_scalar;        // scores scaled by query_pre_attn_scalar^-1/2
    bool softcaps;               // attn_logit_softcapping, final_logit_softcapping
    bool local_rope;             // sliding layers use their own RoPE (rope_local_base_freq)
    kvq_window_kind window;      // which layers slide when sliding_window is set (layer_types wins)
    int window_period;           // KVQ_WIN_PATTERN: every period-th layer is global
    const char *window_flag;     // a config boolean that must be true for windows (NULL: none)
    const char *act_key;         // config key of the activation
    kvq_act_kind act_default;
    const char *qkv_fused;       // tensor suffix of a fused q/k/v projection, NULL = separate
    const char *gate_up_fused;   // fused gate/up projection (gate rows first), NULL = separate
} kvq_arch;

typedef enum { KVQ_ROPE_DEFAULT, KVQ_ROPE_LINEAR, KVQ_ROPE_LLAMA3, KVQ_ROPE_YARN, KVQ_ROPE_LONGROPE } kvq_rope_type;

// One RoPE: base, type and that type's parameters (HF names).
typedef struct kvq_rope {
    kvq_rope_type type;
    double theta, factor;          // factor: linear, llama3, yarn, longrope
    double low_freq_factor, high_freq_factor;   // llama3
    double beta_fast, beta_slow, mscale, mscale_all_dim;   // yarn
    double attention_factor;       // cos/sin scale (yarn, longrope; 1 otherwise)
    bool truncate;                 // yarn
    int original_max_position;     // llama3, yarn, longrope
    int n_ext;                     // longrope: head_dim / 2 factors each
    double short_factor[KVQ_MAX_HEAD_DIM / 2], long_factor[KVQ_MAX_HEAD_DIM / 2];
} kvq_rope;

typedef struct kvq_model_config {
    const kvq_arch *arch;
    int vocab_size, hidden_size, intermediate_size;
    int n_layers, n_heads, n_kv_heads, head_dim;
    int max_position_embeddings;   // informational; longer inputs are allowed
    double rope_theta, rms_norm_eps;   // rope_theta: the global RoPE's base
    bool tie_word_embeddings;
    bool attention_bias;           // config attention_bias: q, k, v and o biases
    kvq_act_kind act;
    char rope_type[16];            // the global RoPE's type name, as in config.json
    kvq_rope rope[2];              // [0] global, [1] local (sliding layers, when arch->local_rope)
    double query_pre_attn_scalar;  // scores are q.k x this^-1/2 (head_dim unless the arch reads the field)
    double attn_softcap, final_softcap;   // 0 = off
    int sliding_window;            // 0 = none
    int layer_window[KVQ_MAX_LAYERS];     // per layer: tokens attention sees (0 = all)
} kvq_model_config;

// One decoder layer's weights, f32, each (out_features, in_features) row-major
// as stored by HF (y = W x); fused HF tensors are split at load. Optional
// ones are NULL when the architecture has none.
typedef struct kvq_model_layer {
    float *attn_norm;    // (hidden)
    float *wq;           // (n_heads * head_dim, hidden)
    float *wk, *wv;      // (n_kv_heads * head_dim, hidden)
    float *wo;           // (hidden, n_heads * head_dim)
    float *bq, *bk, *bv, *bo;   // biases (n_heads * head_dim), (n_kv_heads * head_dim) x 2, (hidden)
    float *q_norm, *k_norm;     // (head_dim)
    float *post_attn_norm;      // (hidden) sandwich: on the attention output
    float *mlp_norm;     // (hidden) before the MLP
    float *post_mlp_norm;       // (hidden) sandwich: on the MLP output
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
    float *inv_freq[2];         // (head_dim / 2) per RoPE of cfg.rope; [1] NULL without a local one
    float *inv_freq_long[2];    // longrope: frequencies past original_max_position, else NULL
    size_t n_params;
} kvq_model;

// Parse and check config.json only (no weights). Unsupported or missing
// fields fail with KVQ_ERR_UNSUPPORTED / KVQ_ERR_FORMAT naming the field.
kvq_status kvq_model_config_load(const char *dir, kvq_model_config *out);
// Load config and weights from a checkpoint directory. *out owned by the caller.
kvq_status kvq_model_load(const char *dir, kvq_model **out);
void kvq_model_free(kvq_model *m);
// Inverse frequencies (head_dim / 2) of one RoPE, in f32 as transformers forms
// them; long_factors picks longrope's long_factor (else short_factor).
void kvq_rope_inv_freq(const kvq_rope *r, int head_dim, bool long_factors, float *inv);

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

// Asked before each layer of every forward step with the layer index;
// returning true stops the step with KVQ_ERR_CANCELLED, leaving that step
// half-applied to the caches (reset or free the runner after). fn NULL = never.
// This is how long runs are cancelled within a chunk (progress and Esc).
typedef bool (*kvq_runner_poll_fn)(void *user, int layer);
void kvq_runner_set_poll(kvq_runner *r, kvq_runner_poll_fn fn, void *user);

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
    double key_record_bits, value_record_bits;   // bits per coordinate of one key / value record of
                                                 // cfg's caches, mean over layers (KVQ_M_KEY_RECORD_BITS, ..._VALUE_)
} kvq_ppl_result;

// True when cfg stores both keys and values in fp16 (the reference).
bool kvq_model_cfg_is_fp16(const kvq_config *cfg);
// A config for the unquantized reference: fp16 keys and values, no windows,
// the cache's plain (non-fused) attention.
void kvq_model_cfg_reference(kvq_config *c);

// Run tokens through the model with cfg's cache and, unless cfg is the fp16
// reference already, with the fp16 reference cache in lockstep (chunks of
// `chunk` tokens). progress may be NULL; it is asked before every layer of
// every chunk, so cancelling (-> KVQ_ERR_CANCELLED) takes one layer's time.
kvq_status kvq_model_ppl(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art,
                         const int32_t *tokens, int n, int chunk, kvq_progress *progress,
                         kvq_ppl_result *out);
// Same, also filling token_nats (n - 1): -ln p(tok[i+1] | tok[0..i]) under cfg
// (nats, the unit transformers' losses use), for per-token comparisons.
kvq_status kvq_model_ppl_tokens(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art,
                                const int32_t *tokens, int n, int chunk, kvq_progress *progress,
                                double *token_nats, kvq_ppl_result *out);

// Run tokens with cfg's cache and write a kvtrace v1 file atomically (F16
// post-RoPE keys, values and queries at every position, query_positions,
// tokens; metadata with bits_per_byte (or bits_per_token when byte_level is
// false)). source: what text was run (metadata "source"). progress may be
// NULL; asked before every layer (cancel -> KVQ_ERR_CANCELLED, no file written).
kvq_status kvq_model_capture(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art,
                             const int32_t *tokens, int n, bool byte_level, const char *source,
                             const char *out_path, kvq_progress *progress, double *bits_out);

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
