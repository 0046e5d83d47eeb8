// model_run.c — the decoder forward pass over the quantized KV cache.
// One chunk of n tokens: embeddings (x sqrt(hidden) for Gemma) -> per layer
// (RMSNorm, q/k/v projections (+ bias), per-head q/k norm, RoPE (the layer's
// global or local one), cache append + attend, o_proj, [post-attention norm],
// residual, RMSNorm, gated MLP (SiLU or tanh-GELU), [post-MLP norm],
// residual) -> final norm -> lm_head [-> soft-cap]. Tokens are rows of the
// activations, so a chunk is a handful of sgemm calls; a single token uses sgemv.
// Sliding-window layers: the layer's cache keeps the window only (eviction
// at append), so a chunk that reaches past the window is attended token by
// token (each query then sees exactly its window, as HF's mask gives).
// Attention soft-capping (Gemma2) is a non-linearity the cache's softmax does
// not have: those layers decode the cache's (quantized) keys and values and
// attend here.
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"
#include "observe.h"
#include "rng.h"

struct kvq_runner {
    const kvq_model *m;
    kvq_config cfg;
    kvq_cache_set *caches;
    int pos, max_chunk;
    kvq_model_tap_fn tap;
    void *tap_user;
    kvq_runner_poll_fn poll;   // asked before every layer: true = stop (cancel)
    void *poll_user;
    // scratch, sized for max_chunk tokens (C)
    float *x;            // (C, hidden) residual stream
    float *xn;           // (C, hidden) normed
    float *q;            // (C, n_heads * head_dim)
    float *k, *v;        // (C, n_kv_heads * head_dim)
    float *qh;           // (n_heads, C, head_dim), the cache's layout
    float *kh, *vh;      // (n_kv_heads, C, head_dim)
    float *att;          // (n_heads, C, head_dim)
    float *attc;         // (C, n_heads * head_dim)
    float *gate, *up;    // (C, intermediate)
    float *cos[2], *sin[2];   // (C, head_dim / 2) per RoPE (global, local)
    int32_t *posv;       // (C)
    float *q1, *k1, *v1, *o1; // one token: (n_heads, 1, head_dim), (n_kv_heads, 1, head_dim) x 2, like q1
    int win[KVQ_MAX_LAYERS];  // per layer: the window its cache keeps (0 = all)
    float q_scale;            // sqrt(head_dim / query_pre_attn_scalar): the cache scales by head_dim^-1/2
    // soft-capped attention: decoded keys/values of one kv head, grown on demand
    float *dk, *dv, *dsc;
    int32_t *dpos;
    int d_cap;
    // attention observer: exact history and per-query scratch, grown on demand
    kvq_observers *obs;
    float **kx, **vx;    // (n_layers * n_kv_heads) of (kv_cap, head_dim)
    int kv_cap;
    float *oex, *lex, *lhat;   // (head_dim), (kv_cap), (kv_cap)
    int32_t *lpos, *ident;     // (kv_cap)
    int noise_layer;           // -1 = off
    float noise_sigma;
    kvq_rng noise_rng;
};

// One cache per layer; a sliding layer's cache keeps only its window (the
// model's, or the config's sliding_window when that is smaller), so memory
// figures count what such a layer really holds.
static kvq_status caches_new(kvq_runner *r, const kvq_model_config *c, const kvq_config *cfg,
                             const kvq_artifacts *art)
{
    kvq_cache_set *set = calloc(1, sizeof *set);
    if (set) set->layers = calloc((size_t)c->n_layers, sizeof *set->layers);
    if (!set || !set->layers) {
        free(set);
        return kvq_error(KVQ_ERR_NOMEM, "runner: out of memory");
    }
    set->n_layers = c->n_layers;
    for (int l = 0; l < c->n_layers; l++) {
        kvq_config lc = *cfg;
        int w = c->layer_window[l];
        if (w > 0 && (lc.sliding_window == 0 || w < lc.sliding_window)) lc.sliding_window = w;
        r->win[l] = lc.sliding_window;
        kvq_status s = kvq_cache_new(&lc, art, l, c->n_layers, c->n_kv_heads, c->head_dim, &set->layers[l]);
        if (s) {
            kvq_cache_set_free(set);
            return s;
        }
    }
    r->caches = set;
    return KVQ_OK;
}

kvq_status kvq_runner_new(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art, int max_chunk,
                          kvq_runner **out)
{
    *out = NULL;
    if (max_chunk < 1) return kvq_error(KVQ_ERR_ARG, "runner: max_chunk %d (expected >= 1)", max_chunk);
    const char *why = kvq_config_check(cfg);
    if (why) return kvq_error(KVQ_ERR_ARG, "%s", why);
    const kvq_model_config *c = &m->cfg;
    kvq_runner *r = calloc(1, sizeof *r);
    if (!r) return kvq_error(KVQ_ERR_NOMEM, "runner: out of memory");
    r->m = m;
    r->cfg = *cfg;
    r->max_chunk = max_chunk;
    r->noise_layer = -1;
    r->q_scale = (float)sqrt(c->head_dim / c->query_pre_attn_scalar);
    kvq_status s = caches_new(r, c, cfg, art);
    if (s) {
        free(r);
        return s;
    }
    size_t C = (size_t)max_chunk, H = (size_t)c->hidden_size;
    size_t qd = (size_t)c->n_heads * (size_t)c->head_dim, kd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    size_t im = (size_t)c->intermediate_size, half = (size_t)c->head_dim / 2;
    struct { float **p; size_t n; } bufs[] = {
        {&r->x, C * H}, {&r->xn, C * H}, {&r->q, C * qd}, {&r->k, C * kd}, {&r->v, C * kd},
        {&r->qh, C * qd}, {&r->kh, C * kd}, {&r->vh, C * kd}, {&r->att, C * qd}, {&r->attc, C * qd},
        {&r->gate, C * im}, {&r->up, C * im}, {&r->cos[0], C * half}, {&r->sin[0], C * half},
        {&r->cos[1], C * half}, {&r->sin[1], C * half}, {&r->q1, qd}, {&r->k1, kd}, {&r->v1, kd}, {&r->o1, qd},
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) ok &= (*bufs[i].p = malloc(sizeof(float) * bufs[i].n)) != NULL;
    ok &= (r->posv = malloc(sizeof(int32_t) * C)) != NULL;
    if (!ok) {
        kvq_runner_free(r);
        return kvq_error(KVQ_ERR_NOMEM, "runner: out of memory for %d-token chunks", max_chunk);
    }
    *out = r;
    return KVQ_OK;
}

static void exact_free(kvq_runner *r);

void kvq_runner_free(kvq_runner *r)
{
    if (!r) return;
    kvq_cache_set_free(r->caches);
    float *all[] = {r->x,      r->xn,     r->q,      r->k,      r->v,  r->qh, r->kh, r->vh, r->att, r->attc,
                    r->gate,   r->up,     r->cos[0], r->sin[0], r->cos[1], r->sin[1], r->q1, r->k1, r->v1, r->o1,
                    r->dk,     r->dv,     r->dsc};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    free(r->posv);
    free(r->dpos);
    exact_free(r);
    free(r);
}

static void exact_free(kvq_runner *r)
{
    int n = r->m->cfg.n_layers * r->m->cfg.n_kv_heads;
    for (int i = 0; r->kx && i < n; i++) free(r->kx[i]);
    for (int i = 0; r->vx && i < n; i++) free(r->vx[i]);
    free(r->kx);
    free(r->vx);
    free(r->oex);
    free(r->lex);
    free(r->lhat);
    free(r->lpos);
    free(r->ident);
    r->kx = r->vx = NULL;
    r->oex = r->lex = r->lhat = NULL;
    r->lpos = r->ident = NULL;
    r->kv_cap = 0;
}

kvq_status kvq_runner_observe(kvq_runner *r, kvq_observers *obs)
{
    if (obs && r->pos) return kvq_error(KVQ_ERR_ARG, "runner: observers attached at position %d (expected 0)", r->pos);
    kvq_cache_set_attach(r->caches, obs);
    exact_free(r);
    r->obs = obs;
    if (!obs || !(kvq_observers_which(obs) & KVQ_OBS_ATTENTION)) return KVQ_OK;
    int n = r->m->cfg.n_layers * r->m->cfg.n_kv_heads;
    r->kx = calloc((size_t)n, sizeof *r->kx);
    r->vx = calloc((size_t)n, sizeof *r->vx);
    r->oex = malloc(sizeof(float) * (size_t)r->m->cfg.head_dim);
    if (!r->kx || !r->vx || !r->oex) {
        exact_free(r);
        r->obs = NULL;
        return kvq_error(KVQ_ERR_NOMEM, "runner: out of memory for the attention observer");
    }
    return KVQ_OK;
}

static kvq_status exact_grow(kvq_runner *r, int need)
{
    if (need <= r->kv_cap) return KVQ_OK;
    if (need > (1 << 28))   // the doubling below stays inside int
        return kvq_error(KVQ_ERR_ARG, "runner: %d positions (expected at most %d)", need, 1 << 28);
    int cap = r->kv_cap ? r->kv_cap : 256;
    while (cap < need) cap *= 2;
    size_t hd = (size_t)r->m->cfg.head_dim;
    int n = r->m->cfg.n_layers * r->m->cfg.n_kv_heads;
    for (int i = 0; i < n; i++) {
        float *k = realloc(r->kx[i], sizeof(float) * cap * hd);
        if (k) r->kx[i] = k;
        float *v = realloc(r->vx[i], sizeof(float) * cap * hd);
        if (v) r->vx[i] = v;
        if (!k || !v) return kvq_error(KVQ_ERR_NOMEM, "runner: out of memory for %d exact positions", cap);
    }
    float **fs[] = {&r->lex, &r->lhat};
    for (int i = 0; i < 2; i++) {
        float *p = realloc(*fs[i], sizeof(float) * cap);
        if (!p) return kvq_error(KVQ_ERR_NOMEM, "runner: out of memory for %d exact positions", cap);
        *fs[i] = p;
    }
    int32_t **is[] = {&r->lpos, &r->ident};
    for (int i = 0; i < 2; i++) {
        int32_t *p = realloc(*is[i], sizeof(int32_t) * cap);
        if (!p) return kvq_error(KVQ_ERR_NOMEM, "runner: out of memory for %d exact positions", cap);
        *is[i] = p;
    }
    for (int i = 0; i < cap; i++) r->ident[i] = i;
    r->kv_cap = cap;
    return KVQ_OK;
}

// Keep the exact keys/values of this chunk: kh, vh (n_kv, n, hd).
static kvq_status exact_store(kvq_runner *r, int l, int n)
{
    kvq_status s = exact_grow(r, r->pos + n);
    if (s) return s;
    int nkv = r->m->cfg.n_kv_heads;
    size_t hd = (size_t)r->m->cfg.head_dim;
    for (int h = 0; h < nkv; h++) {
        memcpy(r->kx[l * nkv + h] + (size_t)r->pos * hd, r->kh + (size_t)h * n * hd, sizeof(float) * n * hd);
        memcpy(r->vx[l * nkv + h] + (size_t)r->pos * hd, r->vh + (size_t)h * n * hd, sizeof(float) * n * hd);
    }
    return KVQ_OK;
}

// One decode query per head against exact fp32 attention over the history.
static kvq_status exact_observe(kvq_runner *r, int l)
{
    const kvq_model_config *c = &r->m->cfg;
    int nh = c->n_heads, per = nh / c->n_kv_heads, hd = c->head_dim, p = r->pos;
    float scale = 1.0f / sqrtf((float)hd);
    kvq_cache *kc = r->caches->layers[l];
    for (int h = 0; h < nh; h++) {
        const float *q = r->qh + (size_t)h * hd;
        const float *K = r->kx[l * c->n_kv_heads + h / per], *V = r->vx[l * c->n_kv_heads + h / per];
        int w = r->win[l], first = w && p + 1 > w ? p + 1 - w : 0;   // a sliding layer's exact history: its window
        kvq_attend_f32(q, K + (size_t)first * hd, V + (size_t)first * hd, r->ident + first, p + 1 - first, hd, p,
                       r->oex);
        int n = 0;
        kvq_status s = kvq_cache_logits(kc, q, h, nh, p, r->lhat, r->lpos, &n);
        if (s) return s;
        for (int i = 0; i < n; i++) {
            const float *k = K + (size_t)r->lpos[i] * hd;
            double d = 0;
            for (int t = 0; t < hd; t++) d += (double)q[t] * k[t];
            r->lex[i] = (float)d * scale;
        }
        kvq_observe_attention(r->obs, l, r->oex, r->att + (size_t)h * hd, r->lex, r->lhat, n);
    }
    return KVQ_OK;
}

void kvq_runner_reset(kvq_runner *r)
{
    for (int l = 0; l < r->caches->n_layers; l++) kvq_cache_reset(r->caches->layers[l]);
    r->pos = 0;
}

int kvq_runner_pos(const kvq_runner *r) { return r->pos; }
kvq_cache_set *kvq_runner_caches(kvq_runner *r) { return r->caches; }

void kvq_runner_set_tap(kvq_runner *r, kvq_model_tap_fn fn, void *user)
{
    r->tap = fn;
    r->tap_user = user;
}

void kvq_runner_set_poll(kvq_runner *r, kvq_runner_poll_fn fn, void *user)
{
    r->poll = fn;
    r->poll_user = user;
}

void kvq_runner_set_key_noise(kvq_runner *r, int layer, double sigma, uint64_t seed)
{
    r->noise_layer = layer;
    r->noise_sigma = (float)sigma;
    kvq_rng_seed2(&r->noise_rng, seed, 0x6b65796e6f697365ull);   // "keynoise"
}

// ---- kernels ----
// y (n, out) = x (n, in) . W^T with W (out, in); beta 1 accumulates (residual).
static void linear(const float *x, const float *w, int n, int in, int outd, float beta, float *y)
{
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, outd, in, 1.0f, w, in, x, 1, beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, outd, in, 1.0f, x, in, w, in, beta, y, outd);
}

// HF LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * w, per row.
static void rms_norm(const float *x, const float *w, int n, int d, double eps, float *y)
{
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * d;
        float *yr = y + (size_t)t * d;
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / d + eps));
        for (int i = 0; i < d; i++) yr[i] = w[i] * (xr[i] * inv);
    }
}

// Angles as HF forms them: f32 position x f32 inv_freq, then cos/sin, both
// scaled by the RoPE's attention factor (yarn, longrope). Longrope uses its
// long factors from original_max_position on (HF switches the whole forward
// once the sequence is longer; per position keeps cached keys unchanged).
static void rope_tables(kvq_runner *r, int which, int pos0, int n)
{
    const kvq_model *m = r->m;
    const kvq_rope *rp = &m->cfg.rope[which];
    int half = m->cfg.head_dim / 2;
    float af = (float)rp->attention_factor;
    for (int t = 0; t < n; t++) {
        int p = pos0 + t;
        const float *inv = m->inv_freq_long[which] && p >= rp->original_max_position ? m->inv_freq_long[which]
                                                                                      : m->inv_freq[which];
        for (int i = 0; i < half; i++) {
            float a = (float)p * inv[i];
            float c = (float)cos((double)a), sn = (float)sin((double)a);
            r->cos[which][(size_t)t * half + i] = af == 1.0f ? c : c * af;
            r->sin[which][(size_t)t * half + i] = af == 1.0f ? sn : sn * af;
        }
    }
}

// rotate_half: dims i and i + half form a pair. src (n, heads * hd) token-major
// -> dst (heads, n, hd) head-major, rotated with table `which`, times scale.
static void rope_to_heads(const kvq_runner *r, int which, const float *src, int n, int heads, float scale,
                          float *dst)
{
    int hd = r->m->cfg.head_dim, half = hd / 2;
    for (int h = 0; h < heads; h++)
        for (int t = 0; t < n; t++) {
            const float *x = src + ((size_t)t * heads + h) * hd;
            float *y = dst + ((size_t)h * n + t) * hd;
            const float *c = r->cos[which] + (size_t)t * half, *s = r->sin[which] + (size_t)t * half;
            for (int i = 0; i < half; i++) {
                y[i] = x[i] * c[i] - x[i + half] * s[i];
                y[i + half] = x[i + half] * c[i] + x[i] * s[i];
            }
            if (scale != 1.0f)
                for (int i = 0; i < hd; i++) y[i] *= scale;
        }
}

// (n, heads * hd) <-> (heads, n, hd)
static void to_heads(const float *src, int n, int heads, int hd, float *dst)
{
    for (int h = 0; h < heads; h++)
        for (int t = 0; t < n; t++)
            memcpy(dst + ((size_t)h * n + t) * hd, src + ((size_t)t * heads + h) * hd, sizeof(float) * hd);
}

static void from_heads(const float *src, int n, int heads, int hd, float *dst)
{
    for (int h = 0; h < heads; h++)
        for (int t = 0; t < n; t++)
            memcpy(dst + ((size_t)t * heads + h) * hd, src + ((size_t)h * n + t) * hd, sizeof(float) * hd);
}

static void add_bias(float *y, const float *b, int n, int d)
{
    for (int t = 0; t < n; t++)
        for (int i = 0; i < d; i++) y[(size_t)t * d + i] += b[i];
}

// HF gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
static float gelu_tanh(float x)
{
    double u = 0.7978845608028654 * ((double)x + 0.044715 * (double)x * x * x);
    return (float)(0.5 * x * (1.0 + tanh(u)));
}

static kvq_status decoded_grow(kvq_runner *r, int need)
{
    if (need <= r->d_cap) return KVQ_OK;
    int cap = r->d_cap ? r->d_cap : 256;
    while (cap < need) cap *= 2;
    size_t hd = (size_t)r->m->cfg.head_dim;
    float **fs[] = {&r->dk, &r->dv, &r->dsc};
    size_t per[] = {hd, hd, 1};
    for (int i = 0; i < 3; i++) {
        float *p = realloc(*fs[i], sizeof(float) * cap * per[i]);
        if (!p) return kvq_error(KVQ_ERR_NOMEM, "runner: out of memory for %d decoded positions", cap);
        *fs[i] = p;
    }
    int32_t *p = realloc(r->dpos, sizeof(int32_t) * cap);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "runner: out of memory for %d decoded positions", cap);
    r->dpos = p;
    r->d_cap = cap;
    return KVQ_OK;
}

// Soft-capped attention over what the cache holds (decoded keys and values):
// score = cap tanh((q.k / sqrt(head_dim)) / cap), q pre-scaled; causal and
// window masks by position. q, out: (n_heads, nq, hd); pos: (nq).
static kvq_status attend_softcap(kvq_runner *r, int l, const float *q, int nq, const int32_t *pos, float *out)
{
    const kvq_model_config *c = &r->m->cfg;
    int nh = c->n_heads, nkv = c->n_kv_heads, per = nh / nkv, hd = c->head_dim, w = r->win[l];
    kvq_cache *kc = r->caches->layers[l];
    kvq_status s = decoded_grow(r, kvq_cache_visible(kc));
    if (s) return s;
    double cap = c->attn_softcap, isq = 1.0 / sqrt((double)hd);
    for (int g = 0; g < nkv; g++) {
        int nv = 0;
        if ((s = kvq_cache_decode(kc, g, r->dk, r->dv, r->dpos, &nv))) return s;
        for (int h = g * per; h < (g + 1) * per; h++)
            for (int i = 0; i < nq; i++) {
                const float *qv = q + ((size_t)h * nq + i) * hd;
                float *o = out + ((size_t)h * nq + i) * hd;
                int32_t p = pos[i];
                double mx = -INFINITY;
                for (int j = 0; j < nv; j++) {
                    int32_t kp = r->dpos[j];
                    if (kp > p || (w && kp <= p - w)) {
                        r->dsc[j] = -INFINITY;
                        continue;
                    }
                    double d = 0;
                    for (int t = 0; t < hd; t++) d += (double)qv[t] * r->dk[(size_t)j * hd + t];
                    double sc = cap * tanh(d * isq / cap);
                    r->dsc[j] = (float)sc;
                    mx = sc > mx ? sc : mx;
                }
                double acc[KVQ_MAX_HEAD_DIM] = {0}, z = 0;
                for (int j = 0; j < nv; j++) {
                    if (r->dsc[j] == -INFINITY) continue;
                    double e = exp(r->dsc[j] - mx);
                    z += e;
                    for (int t = 0; t < hd; t++) acc[t] += e * r->dv[(size_t)j * hd + t];
                }
                for (int t = 0; t < hd; t++) o[t] = z > 0 ? (float)(acc[t] / z) : 0.0f;
            }
    }
    return KVQ_OK;
}

// Append tokens [t0, t0 + nt) of the chunk (heads layout, chunk of n) to layer
// l's cache and attend their queries; results into r->att (n_heads, n, hd).
static kvq_status attend_tokens(kvq_runner *r, int l, int n, int t0, int nt)
{
    const kvq_model_config *c = &r->m->cfg;
    int nh = c->n_heads, nkv = c->n_kv_heads;
    size_t hd = (size_t)c->head_dim;
    kvq_cache *kc = r->caches->layers[l];
    const float *q = r->qh, *k = r->kh, *v = r->vh;
    float *o = r->att;
    if (nt != n) {   // one token: gather its rows (nt == 1 here)
        for (int h = 0; h < nkv; h++) {
            memcpy(r->k1 + h * hd, r->kh + ((size_t)h * n + t0) * hd, sizeof(float) * hd);
            memcpy(r->v1 + h * hd, r->vh + ((size_t)h * n + t0) * hd, sizeof(float) * hd);
        }
        for (int h = 0; h < nh; h++) memcpy(r->q1 + h * hd, r->qh + ((size_t)h * n + t0) * hd, sizeof(float) * hd);
        q = r->q1, k = r->k1, v = r->v1, o = r->o1;
    }
    kvq_status s = kvq_cache_append(kc, k, v, nt);
    if (!s) s = c->attn_softcap > 0 ? attend_softcap(r, l, q, nt, r->posv + t0, o)
                                    : kvq_cache_attend(kc, q, nh, nt, r->posv + t0, o);
    if (s || nt == n) return s;
    for (int h = 0; h < nh; h++) memcpy(r->att + ((size_t)h * n + t0) * hd, r->o1 + h * hd, sizeof(float) * hd);
    return KVQ_OK;
}

static kvq_status forward_chunk(kvq_runner *r, const int32_t *tok, int n, bool all_logits, float *logits)
{
    const kvq_model *m = r->m;
    const kvq_model_config *c = &m->cfg;
    const kvq_arch *a = c->arch;
    int H = c->hidden_size, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, im = c->intermediate_size;
    int qd = nh * hd, kd = nkv * hd;
    float escale = a->embed_scale ? (float)sqrt((double)H) : 1.0f;   // HF: a tensor of the compute dtype
    for (int t = 0; t < n; t++) {
        float *xr = r->x + (size_t)t * H;
        memcpy(xr, m->embed + (size_t)tok[t] * H, sizeof(float) * H);
        if (a->embed_scale)
            for (int i = 0; i < H; i++) xr[i] *= escale;
        r->posv[t] = r->pos + t;
    }
    rope_tables(r, 0, r->pos, n);
    if (a->local_rope) rope_tables(r, 1, r->pos, n);
    for (int l = 0; l < c->n_layers; l++) {
        // per layer, not per chunk: one chunk of a large model runs for seconds
        if (r->poll && r->poll(r->poll_user, l))
            return kvq_error(KVQ_ERR_CANCELLED, "cancelled at layer %d of %d, position %d", l, c->n_layers, r->pos);
        const kvq_model_layer *L = &m->layers[l];
        int ri = a->local_rope && c->layer_window[l] ? 1 : 0;
        rms_norm(r->x, L->attn_norm, n, H, c->rms_norm_eps, r->xn);
        linear(r->xn, L->wq, n, H, qd, 0.0f, r->q);
        linear(r->xn, L->wk, n, H, kd, 0.0f, r->k);
        linear(r->xn, L->wv, n, H, kd, 0.0f, r->v);
        if (L->bq) {
            add_bias(r->q, L->bq, n, qd);
            add_bias(r->k, L->bk, n, kd);
            add_bias(r->v, L->bv, n, kd);
        }
        if (L->q_norm) {   // each head's slice of a token row is one norm row
            rms_norm(r->q, L->q_norm, n * nh, hd, c->rms_norm_eps, r->q);
            rms_norm(r->k, L->k_norm, n * nkv, hd, c->rms_norm_eps, r->k);
        }
        rope_to_heads(r, ri, r->q, n, nh, r->q_scale, r->qh);
        rope_to_heads(r, ri, r->k, n, nkv, 1.0f, r->kh);
        to_heads(r->v, n, nkv, hd, r->vh);
        if (l == r->noise_layer)
            for (size_t i = 0; i < (size_t)nkv * n * hd; i++)
                r->kh[i] += r->noise_sigma * (float)kvq_rng_gauss(&r->noise_rng);
        if (r->tap) r->tap(r->tap_user, l, r->pos, n, r->qh, r->kh, r->vh);
        bool exact = r->kx != NULL;
        kvq_status s = exact ? exact_store(r, l, n) : KVQ_OK;
        int w = r->win[l];
        if (!s && (!w || r->pos + n <= w)) s = attend_tokens(r, l, n, 0, n);   // nothing leaves the window yet
        for (int t = 0; !s && w && r->pos + n > w && t < n; t++) s = attend_tokens(r, l, n, t, 1);
        if (!s && exact && n == 1) s = exact_observe(r, l);
        if (s) return s;
        from_heads(r->att, n, nh, hd, r->attc);
        if (L->post_attn_norm) {
            linear(r->attc, L->wo, n, qd, H, 0.0f, r->xn);
            if (L->bo) add_bias(r->xn, L->bo, n, H);
            rms_norm(r->xn, L->post_attn_norm, n, H, c->rms_norm_eps, r->xn);
            for (size_t i = 0; i < (size_t)n * H; i++) r->x[i] += r->xn[i];
        } else {
            linear(r->attc, L->wo, n, qd, H, 1.0f, r->x);
            if (L->bo) add_bias(r->x, L->bo, n, H);
        }
        rms_norm(r->x, L->mlp_norm, n, H, c->rms_norm_eps, r->xn);
        linear(r->xn, L->w_gate, n, H, im, 0.0f, r->gate);
        linear(r->xn, L->w_up, n, H, im, 0.0f, r->up);
        for (size_t i = 0; i < (size_t)n * im; i++) {
            float g = r->gate[i];
            g = c->act == KVQ_ACT_GELU_TANH ? gelu_tanh(g) : g / (1.0f + expf(-g));
            r->gate[i] = g * r->up[i];
        }
        if (L->post_mlp_norm) {
            linear(r->gate, L->w_down, n, im, H, 0.0f, r->xn);
            rms_norm(r->xn, L->post_mlp_norm, n, H, c->rms_norm_eps, r->xn);
            for (size_t i = 0; i < (size_t)n * H; i++) r->x[i] += r->xn[i];
        } else {
            linear(r->gate, L->w_down, n, im, H, 1.0f, r->x);
        }
    }
    r->pos += n;
    if (!logits) return KVQ_OK;
    int rows = all_logits ? n : 1;
    rms_norm(r->x + (size_t)(n - rows) * H, m->final_norm, rows, H, c->rms_norm_eps, r->xn);
    linear(r->xn, m->lm_head, rows, H, c->vocab_size, 0.0f, logits);
    if (c->final_softcap > 0) {
        float cap = (float)c->final_softcap;
        for (size_t i = 0; i < (size_t)rows * c->vocab_size; i++) logits[i] = tanhf(logits[i] / cap) * cap;
    }
    return KVQ_OK;
}

kvq_status kvq_runner_forward(kvq_runner *r, const int32_t *tokens, int n, bool all_logits, float *logits)
{
    if (n < 1) return kvq_error(KVQ_ERR_ARG, "runner: %d tokens (expected >= 1)", n);
    int V = r->m->cfg.vocab_size;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return kvq_error(KVQ_ERR_ARG, "runner: token %d at position %d is outside the vocabulary 0..%d", tokens[i],
                             r->pos + i, V - 1);
    for (int done = 0; done < n;) {
        int step = n - done < r->max_chunk ? n - done : r->max_chunk;
        bool last = done + step == n;
        float *dst = !logits ? NULL : all_logits ? logits + (size_t)done * V : last ? logits : NULL;
        kvq_status s = forward_chunk(r, tokens + done, step, all_logits, dst);
        if (s) return s;
        done += step;
    }
    return KVQ_OK;
}

// ---- distributions ----
static double log_sum_exp(const float *l, int V, float *max_out)
{
    float mx = l[0];
    for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)l[i] - mx);
    *max_out = mx;
    return log(s);
}

double kvq_logits_log2_prob(const float *logits, int vocab, int target)
{
    float mx;
    double lse = log_sum_exp(logits, vocab, &mx);
    return ((double)logits[target] - mx - lse) / M_LN2;
}

double kvq_logits_kl_bits(const float *lp, const float *lq, int vocab)
{
    float mp, mq;
    double zp = log_sum_exp(lp, vocab, &mp), zq = log_sum_exp(lq, vocab, &mq);
    double kl = 0;
    for (int i = 0; i < vocab; i++) {
        double a = (double)lp[i] - mp - zp, b = (double)lq[i] - mq - zq;
        kl += exp(a) * (a - b);
    }
    return kl > 0 ? kl / M_LN2 : 0.0;   // rounding can leave a tiny negative
}
