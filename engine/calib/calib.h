// calib/calib.h — calibration from KV traces: RateQuant (per-layer bit
// allocation), VecInfer (smooth factors + product-VQ codebooks),
// SpectralQuant (per-head eigen rotations), plus the RaBitQ / CommVQ
// trainers, behind one table of calibrators that the studio's calibration
// view and `kvstudio precompute` both use.
//
// Every calibrator reads a kvq_trace, takes kvq_calib_opts and an optional
// kvq_progress (fraction, stage, ETA; cancellable between chunks) and fills a
// kvq_artifacts. On cancellation it returns KVQ_ERR_CANCELLED; callers go
// through kvq_calibrate(), which hands artifacts out only on success, so a
// cancelled run produces nothing. Calibration allocates (it is not a kernel)
// and is deterministic for a given seed.
//
// Artifact tensors (all F32; L = layers calibrated, H = kv heads, d = head_dim):
//   ratequant.bits          (L) or (L, H) with per_head: integer bits per unit
//   ratequant.target_bits   (1)  the mean the allocation was made for
//   ratequant.sensitivity   (L, 4) or (L, H, 4): mean, std (keys perturbed),
//                           mean (values perturbed), gain = key mean / relative
//                           key noise energy (the allocation's weight); with
//                           opts.model: KL bits/token, its std, 0, gain
//                           (metadata sensitivity_source = model | trace)
//   ratequant.curve         (L, 3) or (L, H, 3): alpha, beta, fit error of
//                           D(r) = alpha exp(-beta r)
//   ratequant.rates         (R)  and ratequant.distortion (L[, H], R): measured D
//   vecinfer.smooth         (L, d)          lambda = sqrt(max |K|) per channel
//   vecinfer.codebook       (L, M, C, d/M)  product-VQ centroids in the
//                                           smoothed Hadamard domain
//   spectral.rotation.l{l}.h{h}    (d, d)   row i = i-th eigenvector (descending)
//   spectral.mean.l{l}.h{h}        (d)      key mean removed before rotating
//   spectral.eigenvalues.l{l}.h{h} (d)      descending
//   spectral.d_eff                 (L, H)   (sum l)^2 / sum l^2
//   rabitq.centroids.l{l}.h{h}     (num_clusters, d)   calib/train_rabitq.h
//   commvq.codebooks.l{l}.h{h}     (R, C, d)           calib/train_commvq.h
// Metadata: method, version, trace.path, trace.layers, trace.kv_heads,
// trace.head_dim, trace.tokens, option.<name> for every option.
#ifndef KVQ_CALIB_H
#define KVQ_CALIB_H
#include <stdbool.h>
#include <stdint.h>
#include "artifacts.h"
#include "kvq.h"
#include "trace.h"
#include "methods/spectral.h"
#include "methods/vecinfer.h"

#define KVQ_RQ_MAX_RATES 16

typedef struct kvq_calib_opts {
    uint64_t seed;          // every random draw derives from it (default 42)
    int sequence_length;    // use the first L tokens of the trace (0 = all)
    int num_samples;        // ratequant: noise draws per layer (default 4)
    int layers;             // calibrate only the first N layers (0 = all; for tests)
    int n_queries;          // queries used for attention measurements (default 128,
                            // evenly spaced over the usable positions; 0 = all)
    int max_iter;           // k-means / EM iterations; 0 = each method's default
                            // (vecinfer 25, rabitq 25, commvq 8 EM rounds)
    int max_points_per_centroid; // vecinfer / rabitq / commvq k-means train on at most
                            // k x this many rows, drawn with the seed (default 256,
                            // FAISS's; 0 = every row); calib/kmeans.h
    double target_bits;     // ratequant: mean key bits (default 2); vecinfer: bits per
                            // coordinate of the codebook (default 2); spectral: summary
                            // allocation rate (0 = signal/noise split); rabitq/commvq: bits
    // ratequant
    double noise_scale;     // perturbation std = noise_scale x key (value) std (0.1)
    int min_bits, max_bits; // allocation range (1, 4)
    int sensitivity_tokens; // ratequant: measure sensitivities and distortion curves on this
                            // many tokens (default 2048; 0 = all): the first 4 (attention
                            // sinks) and a window at an offset drawn with the seed; the
                            // queries inside the window attend over the sample's keys before
                            // them. Metadata sensitivity.tokens records the count used
    bool per_head;          // allocate per (layer, kv head) instead of per layer
    // vecinfer
    int num_centroids;      // 0 = method default (vecinfer 256 per subspace, commvq 4)
    int num_subspaces;      // 0 = derived from target_bits: bits x d / log2(C)
    // spectral
    int signal_bits, noise_bits;   // (4, 1)
    // rabitq / commvq
    int num_clusters;       // RaBitQ IVF centroids (16)
    // ratequant: a Llama checkpoint directory (model.h). When set, the
    // sensitivities come from the model (KL of its next-token distributions
    // under per-layer key noise, on the trace's `tokens`) instead of the
    // trace's attention outputs; "" = from the trace. Not in the option table
    // (a path, not a number): callers set it directly; the ratequant
    // calibrator records it as metadata option.model and sensitivity_source.
    char model[KVQ_PATH_LEN];
} kvq_calib_opts;

void kvq_calib_opts_default(kvq_calib_opts *o);
// Set one option from text ("noise_scale", "0.2"; dashes = underscores).
// KVQ_ERR_ARG naming the option and the expected form.
kvq_status kvq_calib_opts_set(kvq_calib_opts *o, const char *key, const char *value);
// NULL-terminated option names (help, completion, manifest).
const char *const *kvq_calib_opts_names(void);
kvq_status kvq_calib_opts_get(const kvq_calib_opts *o, const char *key, char *buf, size_t n);

typedef kvq_status (*kvq_calib_fn)(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p,
                                   kvq_artifacts *out);
typedef struct kvq_calibrator {
    const char *name;          // the method it calibrates ("vecinfer")
    const char *description;
    kvq_calib_fn run;
} kvq_calibrator;
extern const kvq_calibrator kvq_calibrators[];
extern const int kvq_n_calibrators;
const kvq_calibrator *kvq_calibrator_find(const char *name);   // NULL when unknown

// Run a calibrator on t and return fresh artifacts with the metadata filled
// (method, version, trace shape, options). *out is NULL on any failure,
// KVQ_ERR_CANCELLED included. KVQ_ERR_UNKNOWN_METHOD lists the calibrators.
kvq_status kvq_calibrate(const char *method, const kvq_trace *t, const kvq_calib_opts *o,
                         kvq_progress *p, kvq_artifacts **out);

// KVQ_OK when artifacts were calibrated on a trace of t's shape (layers,
// kv heads, head_dim), else KVQ_ERR_SHAPE naming what differs. Artifacts
// calibrated on fewer layers (opts.layers) mismatch on purpose.
kvq_status kvq_artifacts_match_trace(const kvq_artifacts *a, const kvq_trace *t);
// kvq_artifacts_load + kvq_artifacts_match_trace (t may be NULL: no check);
// *out is NULL on any failure. For `--artifacts DIR` options.
kvq_status kvq_artifacts_load_for_trace(const char *dir, const kvq_trace *t, kvq_artifacts **out);

// A child progress that maps its [0,1] onto [f0,f1] of parent (stage
// replaced by `stage` when non-NULL) and forwards cancellation; for handing
// to sub-steps that call kvq_progress_begin themselves (k-means). Returns
// NULL when parent reports nowhere.
typedef struct kvq_subprogress {
    kvq_progress p;
    kvq_progress *parent;
    double f0, f1;
    const char *stage;
} kvq_subprogress;
kvq_progress *kvq_subprogress_init(kvq_subprogress *s, kvq_progress *parent, double f0, double f1,
                                   const char *stage);

// ---- shared measurement helpers ----
// Causal softmax attention of one head: q (nq, d) at positions qpos (keys
// 0..qpos[i] are visible, qpos[i] < n), k and v (n, d); out (nq, d).
// Scores scaled by 1/sqrt(d). Uses sgemm; allocates a (nq, n) block.
kvq_status kvq_calib_attention(const float *q, const int32_t *qpos, int nq, const float *k,
                               const float *v, int n, int d, float *out);
// The query rows used for measurements: up to o->n_queries rows, evenly
// spaced among those whose position is < n_tok. idx/pos: (t->n_queries).
int kvq_calib_query_rows(const kvq_trace *t, const kvq_calib_opts *o, int n_tok, int32_t *idx);

// Attention-output error of a key configuration on a trace: every (layer,
// kv head) of the first o->layers layers, keys encoded and decoded by
// cfg->method at cfg->bits (cfg->bit_allocation per layer when set), values
// exact, on the queries chosen by kvq_calib_query_rows. Error =
// sum |o - o_hat|^2 / sum |o|^2. per_layer (optional): (layers). Key cosine
// (mean over vectors) and bits per coordinate held are returned when non-NULL.
typedef struct kvq_attn_eval {
    double attn_rel_error;
    double key_rel_mse, key_cosine;
    double key_bits;          // bytes held x 8 / coordinates, over all layers
    double layer_error[KVQ_MAX_LAYERS];
    int n_layers;
} kvq_attn_eval;
kvq_status kvq_calib_eval_keys(const kvq_trace *t, const kvq_config *cfg, const kvq_artifacts *art,
                               const kvq_calib_opts *o, kvq_attn_eval *ev);

// ---- RateQuant ----
typedef struct kvq_rq_sensitivity {
    double mean, std;        // relative attention-output change, keys perturbed
    double value_mean;       // same with values perturbed (reported)
    char name[48];           // "layer_3" or "layer_3.head_1"
} kvq_rq_sensitivity;
typedef struct kvq_rq_curve {
    double alpha, beta, fit_error;   // D(r) = alpha exp(-beta r); fit error = RMS of log residuals
    int n_rates;
    double rate[KVQ_RQ_MAX_RATES], dist[KVQ_RQ_MAX_RATES];   // measured points
} kvq_rq_curve;
// out: (units) with units = layers, or layers x kv_heads when o->per_head.
// With o->model set, the model-based sensitivities below (loads the model).
kvq_status kvq_ratequant_sensitivities(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p,
                                       kvq_rq_sensitivity *out);
// Sensitivities from a loaded model m (borrowed): per layer of the first
// o->layers, mean/std over o->num_samples draws of the KL (bits per token) of
// m's next-token distributions when that layer's post-RoPE keys get noise of
// noise_scale x their std (kvq_model_sensitivities), run on the trace's
// `tokens` (the first o->sequence_length). value_mean is 0 (keys only).
// gain (optional, (layers)): KL per unit of relative key noise energy,
// noise_scale^2 x var / mean square of the layer's trace keys, the weight
// the allocation uses. Errors: KVQ_ERR_SHAPE when m's layers, kv heads or
// head_dim differ from t's; KVQ_ERR_FORMAT when t has no `tokens` tensor;
// KVQ_ERR_UNSUPPORTED with o->per_head (the model's noise is per layer).
struct kvq_model;
kvq_status kvq_ratequant_model_sensitivities(const kvq_trace *t, const struct kvq_model *m,
                                             const kvq_calib_opts *o, kvq_progress *p, kvq_rq_sensitivity *out,
                                             double *gain);
// Key relative MSE of turboquant_mse at each rate (fractional rates through
// outlier_channels = frac x head_dim channels at floor(r)+1 bits), then the
// least-squares fit of log D = log alpha - beta r. out: (units).
kvq_status kvq_ratequant_fit_curves(const kvq_trace *t, const kvq_calib_opts *o, const double *rates,
                                    int n_rates, kvq_progress *p, kvq_rq_curve *out);
// Discrete reverse water-filling: minimize sum_i w_i alpha_i exp(-beta_i b_i)
// over integers b_i in [min_bits, max_bits] with sum b_i = round(target x n)
// (clamped to what the range allows). Greedy on marginal gains, optimal for
// these convex curves; ties go to the lower index. bits: (n).
kvq_status kvq_ratequant_allocate(const double *w, const kvq_rq_curve *curves, int n, double target_bits,
                                  int min_bits, int max_bits, int *bits);

// ---- VecInfer ----
// lambda (d) = sqrt(max over kv heads and tokens of |K_i|) for one layer.
kvq_status kvq_vecinfer_smooth_factors(const kvq_trace *t, int layer, int n_tok, float *lambda);
// (the dual transform lives with the method: methods/vecinfer.h)

// ---- SpectralQuant ---- (allocation and d_eff: methods/spectral.h)

// The calibrators (rows of kvq_calibrators).
kvq_status kvq_calib_ratequant(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p,
                               kvq_artifacts *out);
kvq_status kvq_calib_vecinfer(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p,
                              kvq_artifacts *out);
kvq_status kvq_calib_spectral(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p,
                              kvq_artifacts *out);
// Adapters over the RaBitQ / CommVQ trainers (calib/train_rabitq.c,
// train_commvq.c) in calib/train_wire.c.
kvq_status kvq_calib_rabitq(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p,
                            kvq_artifacts *out);
kvq_status kvq_calib_commvq(const kvq_trace *t, const kvq_calib_opts *o, kvq_progress *p,
                            kvq_artifacts *out);
#endif
