// model_eval.c — what the model runner is for: loss and KL of a quantized
// cache against the fp16 reference (ppl), kvtrace capture, token files.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "file.h"
#include "model.h"
#include "safetensors.h"

bool kvq_model_cfg_is_fp16(const kvq_config *c)
{
    bool vals16 = c->value_bits == 16 && (!c->value_method[0] || !strcmp(c->value_method, "fp16"));
    return !strcmp(c->method, "fp16") && vals16 && c->sliding_window == 0;
}

void kvq_model_cfg_reference(kvq_config *c)
{
    kvq_config_default(c);
    strcpy(c->method, "fp16");
    c->bits = 16;
    c->value_bits = 16;
    c->use_fused_sdpa = false;   // the cache's plain decode-then-attend path is its reference
}

// Progress inside a chunk: the runners poll before every layer, and this
// turns (chunk, pass, layer) into the fraction of the whole run.
typedef struct {
    kvq_progress *p;
    const char *stage;
    double f0, span;   // fraction where this forward step starts, and its share
    int n_layers;
} layer_progress;

static bool layer_poll(void *user, int layer)
{
    layer_progress *lp = user;
    return kvq_progress_report(lp->p, lp->f0 + lp->span * layer / lp->n_layers, lp->stage);
}

// Mean over layers of the bits per coordinate one key (value) record holds.
static void record_bits(kvq_runner *r, int head_dim, double *key_bits, double *value_bits)
{
    kvq_cache_set *cs = kvq_runner_caches(r);
    double kb = 0, vb = 0;
    for (int l = 0; cs && l < cs->n_layers; l++) {
        kb += 8.0 * (double)kvq_cache_key_bpv(cs->layers[l]) / head_dim;
        vb += 8.0 * (double)kvq_cache_value_bpv(cs->layers[l]) / head_dim;
    }
    *key_bits = cs && cs->n_layers ? kb / cs->n_layers : NAN;
    *value_bits = cs && cs->n_layers ? vb / cs->n_layers : NAN;
}

kvq_status kvq_model_ppl(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art, const int32_t *tokens,
                         int n, int chunk, kvq_progress *progress, kvq_ppl_result *out)
{
    return kvq_model_ppl_tokens(m, cfg, art, tokens, n, chunk, progress, NULL, out);
}

kvq_status kvq_model_ppl_tokens(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art,
                                const int32_t *tokens, int n, int chunk, kvq_progress *progress, double *token_nats,
                                kvq_ppl_result *out)
{
    memset(out, 0, sizeof *out);
    if (n < 2) return kvq_error(KVQ_ERR_ARG, "ppl: %d tokens (expected at least 2)", n);
    if (chunk < 1) return kvq_error(KVQ_ERR_ARG, "ppl: chunk %d (expected >= 1)", chunk);
    if (chunk > n) chunk = n;
    bool with_ref = !kvq_model_cfg_is_fp16(cfg);
    int V = m->cfg.vocab_size;
    kvq_config refcfg;
    kvq_model_cfg_reference(&refcfg);
    kvq_runner *rq = NULL, *rr = NULL;
    float *lq = malloc(sizeof(float) * (size_t)chunk * V);
    float *lr = with_ref ? malloc(sizeof(float) * (size_t)chunk * V) : NULL;
    kvq_status s = KVQ_OK;
    if (!lq || (with_ref && !lr)) {
        s = kvq_error(KVQ_ERR_NOMEM, "ppl: out of memory for logits");
        goto out;
    }
    if ((s = kvq_runner_new(m, cfg, art, chunk, &rq))) goto out;
    if (with_ref && (s = kvq_runner_new(m, &refcfg, NULL, chunk, &rr))) goto out;
    double nll = 0, nll_ref = 0, kl = 0, t_run = 0;
    kvq_progress_begin(progress);
    layer_progress lp = {.p = progress, .stage = "ppl", .n_layers = m->cfg.n_layers};
    if (progress) {
        kvq_runner_set_poll(rq, layer_poll, &lp);
        if (rr) kvq_runner_set_poll(rr, layer_poll, &lp);
    }
    int passes = with_ref ? 2 : 1;
    for (int p0 = 0; p0 < n; p0 += chunk) {
        int step = n - p0 < chunk ? n - p0 : chunk;
        double t0 = kvq_now_s();
        lp.span = (double)step / n / passes;
        lp.f0 = (double)p0 / n;
        s = kvq_runner_forward(rq, tokens + p0, step, true, lq);
        t_run += kvq_now_s() - t0;
        lp.f0 += lp.span;
        if (!s && with_ref) s = kvq_runner_forward(rr, tokens + p0, step, true, lr);
        if (s == KVQ_ERR_CANCELLED) s = kvq_error(KVQ_ERR_CANCELLED, "ppl: cancelled at token %d of %d", p0, n);
        if (s) goto out;
        for (int t = 0; t < step && p0 + t < n - 1; t++) {
            int target = tokens[p0 + t + 1];
            const float *a = lq + (size_t)t * V;
            double lp2 = kvq_logits_log2_prob(a, V, target);
            nll -= lp2;
            if (token_nats) token_nats[p0 + t] = -lp2 * M_LN2;
            if (with_ref) {
                const float *b = lr + (size_t)t * V;
                nll_ref -= kvq_logits_log2_prob(b, V, target);
                kl += kvq_logits_kl_bits(b, a, V);
            }
        }
        if (kvq_progress_report(progress, (double)(p0 + step) / n, "ppl")) {
            s = kvq_error(KVQ_ERR_CANCELLED, "ppl: cancelled at token %d of %d", p0 + step, n);
            goto out;
        }
    }
    out->n_tokens = n;
    out->bits_per_token = nll / (n - 1);
    out->ref_bits_per_token = with_ref ? nll_ref / (n - 1) : out->bits_per_token;
    out->kl_bits = with_ref ? kl / (n - 1) : 0.0;
    out->prefill_s = t_run;
    record_bits(rq, m->cfg.head_dim, &out->key_record_bits, &out->value_record_bits);
    if (!isfinite(out->bits_per_token) || !isfinite(out->ref_bits_per_token) || !isfinite(out->kl_bits)) {
        const char *what = !isfinite(out->ref_bits_per_token) ? "the fp16 reference's bits per token"
                           : !isfinite(out->bits_per_token)  ? "bits per token"
                                                              : "the KL divergence";
        double v = !isfinite(out->ref_bits_per_token) ? out->ref_bits_per_token
                   : !isfinite(out->bits_per_token)  ? out->bits_per_token
                                                      : out->kl_bits;
        s = kvq_error(KVQ_ERR_NUMERIC, "ppl: %s is %s: %s", what, kvq_nonfinite_name(v),
                      !isfinite(out->ref_bits_per_token)
                          ? "the model's weights or config give non-finite logits"
                          : "the quantized cache gives non-finite logits (artifacts or values too large?)");
        memset(out, 0, sizeof *out);
    }
out:
    kvq_runner_free(rq);
    kvq_runner_free(rr);
    free(lq);
    free(lr);
    return s;
}

// ---- RateQuant sensitivities ----
typedef struct {
    size_t per_layer;   // key elements of one chunk token: n_kv_heads x head_dim
    double sum[KVQ_MAX_LAYERS], sum2[KVQ_MAX_LAYERS], count[KVQ_MAX_LAYERS];
} key_moments;

static void moments_tap(void *user, int layer, int pos0, int n, const float *q, const float *k, const float *v)
{
    (void)pos0;
    (void)q;
    (void)v;
    key_moments *km = user;
    size_t len = (size_t)n * km->per_layer;
    for (size_t i = 0; i < len; i++) {
        km->sum[layer] += k[i];
        km->sum2[layer] += (double)k[i] * k[i];
    }
    km->count[layer] += (double)len;
}

kvq_status kvq_model_sensitivities(const kvq_model *m, const int32_t *tokens, int n, double noise_scale,
                                   int num_samples, uint64_t seed, kvq_progress *progress, double *mean,
                                   double *std)
{
    int L = m->cfg.n_layers, V = m->cfg.vocab_size, chunk = 128;
    if (n < 2) return kvq_error(KVQ_ERR_ARG, "sensitivities: %d tokens (expected at least 2)", n);
    if (num_samples < 1 || !(noise_scale > 0))
        return kvq_error(KVQ_ERR_ARG, "sensitivities: num_samples %d, noise_scale %g (expected >= 1 and > 0)",
                         num_samples, noise_scale);
    if ((size_t)n * V > ((size_t)1 << 28))
        return kvq_error(KVQ_ERR_ARG, "sensitivities: %d tokens x vocab %d logits is too many (max 2^28)", n, V);
    float *clean = malloc(sizeof(float) * (size_t)n * V), *noisy = malloc(sizeof(float) * (size_t)chunk * V);
    key_moments *km = calloc(1, sizeof *km);
    kvq_runner *r = NULL;
    kvq_status s = KVQ_OK;
    if (!clean || !noisy || !km) {
        s = kvq_error(KVQ_ERR_NOMEM, "sensitivities: out of memory for %d x %d logits", n, V);
        goto out;
    }
    kvq_config ref;
    kvq_model_cfg_reference(&ref);
    if ((s = kvq_runner_new(m, &ref, NULL, chunk, &r))) goto out;
    km->per_layer = (size_t)m->cfg.n_kv_heads * m->cfg.head_dim;
    kvq_runner_set_tap(r, moments_tap, km);
    if ((s = kvq_runner_forward(r, tokens, n, true, clean))) goto out;
    kvq_runner_set_tap(r, NULL, NULL);
    kvq_progress_begin(progress);
    for (int l = 0; l < L; l++) {
        double mu = km->sum[l] / km->count[l];
        double sigma = noise_scale * sqrt(fmax(km->sum2[l] / km->count[l] - mu * mu, 0.0));
        double acc = 0, acc2 = 0;
        for (int smp = 0; smp < num_samples; smp++) {
            kvq_runner_reset(r);
            kvq_runner_set_key_noise(r, l, sigma, seed + 1000003ull * (uint64_t)(l * num_samples + smp));
            double kl = 0;
            for (int p0 = 0; p0 < n; p0 += chunk) {
                int step = n - p0 < chunk ? n - p0 : chunk;
                if ((s = kvq_runner_forward(r, tokens + p0, step, true, noisy))) goto out;
                for (int t = 0; t < step && p0 + t < n - 1; t++)
                    kl += kvq_logits_kl_bits(clean + (size_t)(p0 + t) * V, noisy + (size_t)t * V, V);
            }
            kl /= n - 1;
            acc += kl;
            acc2 += kl * kl;
            if (kvq_progress_report(progress, (double)(l * num_samples + smp + 1) / (L * num_samples),
                                    "sensitivities")) {
                s = kvq_error(KVQ_ERR_CANCELLED, "sensitivities: cancelled at layer %d", l);
                goto out;
            }
        }
        mean[l] = acc / num_samples;
        if (std)
            std[l] = num_samples > 1
                         ? sqrt(fmax(acc2 - acc * acc / num_samples, 0.0) / (num_samples - 1)) : 0.0;
    }
out:
    kvq_runner_free(r);
    free(clean);
    free(noisy);
    free(km);
    return s;
}

// ---- speed ----
kvq_status kvq_model_speed(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art, int n_prefill,
                           int n_decode, double *prefill_tps, double *decode_tps)
{
    if (n_prefill < 1 || n_decode < 1)
        return kvq_error(KVQ_ERR_ARG, "speed: %d prefill, %d decode tokens (expected >= 1 each)", n_prefill, n_decode);
    int V = m->cfg.vocab_size;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n_prefill);
    float *logits = malloc(sizeof(float) * (size_t)V);
    kvq_runner *r = NULL;
    kvq_status s = KVQ_OK;
    if (!tok || !logits) {
        s = kvq_error(KVQ_ERR_NOMEM, "speed: out of memory");
        goto out;
    }
    for (int i = 0; i < n_prefill; i++) tok[i] = i % V;
    if ((s = kvq_runner_new(m, cfg, art, 128, &r))) goto out;
    double t0 = kvq_now_s();
    if ((s = kvq_runner_forward(r, tok, n_prefill, false, logits))) goto out;
    double t1 = kvq_now_s();
    for (int i = 0; i < n_decode; i++) {
        int32_t next = 0;
        for (int j = 1; j < V; j++)
            if (logits[j] > logits[next]) next = j;
        if ((s = kvq_runner_forward(r, &next, 1, false, logits))) goto out;
    }
    double t2 = kvq_now_s();
    *prefill_tps = n_prefill / fmax(t1 - t0, 1e-9);
    *decode_tps = n_decode / fmax(t2 - t1, 1e-9);
out:
    kvq_runner_free(r);
    free(tok);
    free(logits);
    return s;
}

// ---- capture ----
typedef struct {
    int n_tokens, hd, nh, nkv;
    uint16_t **q, **k, **v;   // per layer: (heads, n_tokens, hd) F16
} capture_buf;

static void capture_tap(void *user, int layer, int pos0, int n, const float *q, const float *k, const float *v)
{
    capture_buf *cb = user;
    size_t hd = (size_t)cb->hd, N = (size_t)cb->n_tokens;
    for (int h = 0; h < cb->nh; h++)
        kvq_f32_row_to_f16(q + (size_t)h * n * hd, cb->q[layer] + ((size_t)h * N + pos0) * hd, (size_t)n * hd);
    for (int h = 0; h < cb->nkv; h++) {
        kvq_f32_row_to_f16(k + (size_t)h * n * hd, cb->k[layer] + ((size_t)h * N + pos0) * hd, (size_t)n * hd);
        kvq_f32_row_to_f16(v + (size_t)h * n * hd, cb->v[layer] + ((size_t)h * N + pos0) * hd, (size_t)n * hd);
    }
}

// safetensors metadata values are strings; rope_theta keeps a decimal point
// as Python writes floats ("10000.0").
static void fmt_double(char *buf, size_t n, double x)
{
    if (x == floor(x) && fabs(x) < 1e15) snprintf(buf, n, "%.1f", x);
    else snprintf(buf, n, "%.17g", x);
}

static kvq_status capture_write(const kvq_model *m, const capture_buf *cb, const int32_t *tokens, bool byte_level,
                                double bits, const char *source, const char *path)
{
    const kvq_model_config *c = &m->cfg;
    int L = c->n_layers, N = cb->n_tokens;
    int nt = 3 * L + 2;
    kvq_st_wtensor *wt = calloc((size_t)nt, sizeof *wt);
    char (*names)[32] = calloc((size_t)nt, sizeof *names);
    int32_t *qpos = malloc(sizeof(int32_t) * (size_t)N);
    kvq_status s = KVQ_OK;
    if (!wt || !names || !qpos) {
        s = kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    for (int i = 0; i < N; i++) qpos[i] = i;
    int i = 0;
    for (int l = 0; l < L; l++) {
        const char *kinds[3] = {"keys", "values", "queries"};
        uint16_t *data[3] = {cb->k[l], cb->v[l], cb->q[l]};
        int heads[3] = {c->n_kv_heads, c->n_kv_heads, c->n_heads};
        for (int j = 0; j < 3; j++, i++) {
            snprintf(names[i], sizeof names[i], "layers.%d.%s", l, kinds[j]);
            wt[i] = (kvq_st_wtensor){.name = names[i], .dtype = KVQ_DT_F16, .ndim = 3,
                                     .shape = {heads[j], N, c->head_dim}, .data = data[j]};
        }
    }
    wt[i++] = (kvq_st_wtensor){.name = "query_positions", .dtype = KVQ_DT_I32, .ndim = 1, .shape = {N}, .data = qpos};
    wt[i++] = (kvq_st_wtensor){.name = "tokens", .dtype = KVQ_DT_I32, .ndim = 1, .shape = {N}, .data = tokens};
    char model[512], layers[16], nh[16], nkv[16], hd[16], theta[40], loss[40], softcap[40];
    char windows[KVQ_MAX_LAYERS * 12] = "";
    snprintf(model, sizeof model, "%s (%s, %d layers, %d heads, %d kv heads, head_dim %d)", m->name, c->arch->label, L,
             c->n_heads, c->n_kv_heads, c->head_dim);
    snprintf(layers, sizeof layers, "%d", L);
    snprintf(nh, sizeof nh, "%d", c->n_heads);
    snprintf(nkv, sizeof nkv, "%d", c->n_kv_heads);
    snprintf(hd, sizeof hd, "%d", c->head_dim);
    fmt_double(theta, sizeof theta, c->rope_theta);
    snprintf(loss, sizeof loss, "%.6f", bits);
    fmt_double(softcap, sizeof softcap, c->attn_softcap);
    size_t wl = 0;
    for (int l = 0; l < L; l++)
        wl += (size_t)snprintf(windows + wl, sizeof windows - wl, "%s%d", l ? "," : "", c->layer_window[l]);
    // Queries are scaled so that q.k / sqrt(head_dim) is the model's score
    // (query_pre_attn_scalar); soft-capping, when set, is applied on top.
    const char *keys[] = {"format", "version", "model", "layers", "n_heads", "n_kv_heads", "head_dim",
                          "rope_theta", "post_rope", "source", byte_level ? "bits_per_byte" : "bits_per_token",
                          "model_type", "layer_windows", "attn_logit_softcapping"};
    const char *vals[] = {"kvtrace", "1", model, layers, nh, nkv, hd, theta, "true", source ? source : "", loss,
                          c->arch->model_type, windows, softcap};
    int nmeta = (int)(sizeof keys / sizeof keys[0]) - (c->attn_softcap > 0 ? 0 : 1);
    s = kvq_st_write(path, wt, i, keys, vals, nmeta);
out:
    free(wt);
    free(names);
    free(qpos);
    return s;
}

kvq_status kvq_model_capture(const kvq_model *m, const kvq_config *cfg, const kvq_artifacts *art,
                             const int32_t *tokens, int n, bool byte_level, const char *source, const char *out_path,
                             kvq_progress *progress, double *bits_out)
{
    if (n < 2) return kvq_error(KVQ_ERR_ARG, "capture: %d tokens (expected at least 2)", n);
    const kvq_model_config *c = &m->cfg;
    int L = c->n_layers, V = c->vocab_size, chunk = n < 128 ? n : 128;
    capture_buf cb = {.n_tokens = n, .hd = c->head_dim, .nh = c->n_heads, .nkv = c->n_kv_heads};
    cb.q = calloc((size_t)L, sizeof *cb.q);
    cb.k = calloc((size_t)L, sizeof *cb.k);
    cb.v = calloc((size_t)L, sizeof *cb.v);
    float *logits = malloc(sizeof(float) * (size_t)chunk * V);
    kvq_runner *r = NULL;
    kvq_status s = KVQ_OK;
    bool ok = cb.q && cb.k && cb.v && logits;
    size_t per_q = (size_t)c->n_heads * n * c->head_dim, per_kv = (size_t)c->n_kv_heads * n * c->head_dim;
    for (int l = 0; ok && l < L; l++) {
        cb.q[l] = malloc(sizeof(uint16_t) * per_q);
        cb.k[l] = malloc(sizeof(uint16_t) * per_kv);
        cb.v[l] = malloc(sizeof(uint16_t) * per_kv);
        ok = cb.q[l] && cb.k[l] && cb.v[l];
    }
    if (!ok) {
        s = kvq_error(KVQ_ERR_NOMEM, "capture: out of memory for %d tokens", n);
        goto out;
    }
    if ((s = kvq_runner_new(m, cfg, art, chunk, &r))) goto out;
    kvq_runner_set_tap(r, capture_tap, &cb);
    kvq_progress_begin(progress);
    layer_progress lp = {.p = progress, .stage = "capture", .n_layers = L};
    if (progress) kvq_runner_set_poll(r, layer_poll, &lp);
    double nll = 0;
    for (int p0 = 0; p0 < n; p0 += chunk) {
        int step = n - p0 < chunk ? n - p0 : chunk;
        lp.f0 = (double)p0 / n;
        lp.span = (double)step / n;
        s = kvq_runner_forward(r, tokens + p0, step, true, logits);
        if (s == KVQ_ERR_CANCELLED) s = kvq_error(KVQ_ERR_CANCELLED, "capture: cancelled at token %d of %d", p0, n);
        if (s) goto out;
        for (int t = 0; t < step && p0 + t < n - 1; t++)
            nll -= kvq_logits_log2_prob(logits + (size_t)t * V, V, tokens[p0 + t + 1]);
    }
    double bits = nll / (n - 1);
    if (bits_out) *bits_out = bits;
    s = capture_write(m, &cb, tokens, byte_level, bits, source, out_path);
out:
    kvq_runner_free(r);
    for (int l = 0; l < L; l++) {
        if (cb.q) free(cb.q[l]);
        if (cb.k) free(cb.k[l]);
        if (cb.v) free(cb.v[l]);
    }
    free(cb.q);
    free(cb.k);
    free(cb.v);
    free(logits);
    return s;
}

// ---- token files ----
static kvq_status tokens_npy(const char *path, const char *b, size_t len, int32_t **tokens, int *n)
{
    if (len < 10 || b[6] < 1 || b[6] > 3 || (b[6] > 1 && len < 12))
        return kvq_error(KVQ_ERR_FORMAT, "%s: bad .npy header (expected version 1..3)", path);
    const unsigned char *u = (const unsigned char *)b;
    size_t hl, off;
    if (b[6] == 1) hl = u[8] | (size_t)u[9] << 8, off = 10;
    else hl = u[8] | (size_t)u[9] << 8 | (size_t)u[10] << 16 | (size_t)u[11] << 24, off = 12;
    if (off + hl > len) return kvq_error(KVQ_ERR_FORMAT, "%s: .npy header length %zu past the file end", path, hl);
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "%.*s", (int)(hl < sizeof hdr - 1 ? hl : sizeof hdr - 1), b + off);
    int isz = strstr(hdr, "'<i4'") ? 4 : strstr(hdr, "'<i8'") ? 8 : 0;
    if (!isz) return kvq_error(KVQ_ERR_FORMAT, "%s: .npy dtype is not <i4 or <i8 (header: %s)", path, hdr);
    if (strstr(hdr, "'fortran_order': True"))
        return kvq_error(KVQ_ERR_FORMAT, "%s: .npy is Fortran-ordered (expected C order)", path);
    const char *sh = strstr(hdr, "'shape':");
    const char *lp = sh ? strchr(sh, '(') : NULL;
    if (!lp) return kvq_error(KVQ_ERR_FORMAT, "%s: .npy header has no shape", path);
    long dims[4];
    int nd = 0;
    for (const char *p = lp + 1; *p && *p != ')';) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        long d = strtol(p, &end, 10);
        if (end == p || nd == 4) return kvq_error(KVQ_ERR_FORMAT, "%s: .npy shape unreadable: %s", path, hdr);
        dims[nd++] = d;
        p = end;
    }
    long count = nd == 1 ? dims[0] : (nd == 2 && dims[0] == 1) ? dims[1] : -1;
    if (count < 0) return kvq_error(KVQ_ERR_SHAPE, "%s: .npy shape is not (n,) or (1, n)", path);
    if (count > (1L << 30) || off + hl + (size_t)count * isz > len)
        return kvq_error(KVQ_ERR_FORMAT, "%s: .npy holds fewer bytes than its shape says", path);
    int32_t *t = malloc(sizeof(int32_t) * (size_t)(count ? count : 1));
    if (!t) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", path);
    const unsigned char *d = u + off + hl;
    for (long i = 0; i < count; i++) {
        int64_t v = 0;
        if (isz == 4) {
            int32_t x;
            memcpy(&x, d + 4 * i, 4);
            v = x;
        } else {
            memcpy(&v, d + 8 * i, 8);
        }
        if (v < 0 || v > INT32_MAX) {
            free(t);
            return kvq_error(KVQ_ERR_FORMAT, "%s: token %lld at index %ld is negative or too large", path,
                             (long long)v, i);
        }
        t[i] = (int32_t)v;
    }
    *tokens = t;
    *n = (int)count;
    return KVQ_OK;
}

kvq_status kvq_tokens_load(const char *path, int32_t **tokens, int *n)
{
    *tokens = NULL;
    *n = 0;
    char *b = NULL;
    size_t len = 0;
    kvq_status s = kvq_file_read(path, KVQ_TEXT_MAX_BYTES, &b, &len);
    if (s) return s;
    if (len >= 6 && !memcmp(b, "\x93NUMPY", 6)) {
        s = tokens_npy(path, b, len, tokens, n);
        free(b);
        return s;
    }
    size_t cap = 1024;
    int count = 0;
    int32_t *t = malloc(sizeof(int32_t) * cap);
    char *p = b;
    while (t) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && !isspace((unsigned char)*end))) {
            s = kvq_error(KVQ_ERR_FORMAT, "%s: token %d ('%.12s') is not a non-negative integer", path, count, p);
            break;
        }
        if ((size_t)count == cap) {
            int32_t *nt = realloc(t, sizeof(int32_t) * cap * 2);
            if (!nt) {
                free(t);
                t = NULL;
                break;
            }
            t = nt;
            cap *= 2;
        }
        t[count++] = (int32_t)v;
        p = end;
    }
    free(b);
    if (!t) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", path);
    if (s) {
        free(t);
        return s;
    }
    *tokens = t;
    *n = count;
    return KVQ_OK;
}
