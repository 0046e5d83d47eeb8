// cmd_model.c — commands that run a model through the quantized cache:
// ppl (loss and KL against the fp16 cache), generate (streamed text with
// observers), capture (kvtrace file).
//
// Cache config: without any cache option the fp16 cache (the reference);
// with any (--method, --bits, --value-bits, --residual-length, ...) the
// session's config with those applied. A key method of fp16 without
// --value-bits keeps values fp16 too, so `--method fp16 --bits 16` is the
// unquantized run. capture with a quantized cache records the model's exact
// keys and queries of each layer, with earlier layers attending through it.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "file.h"
#include "cmds.h"
#include "model.h"
#include "observe.h"
#include "rng.h"
#include "safetensors.h"

#define CMD_CHUNK 128   // prefill chunk: the cache sees the text as a real prompt would arrive

static int model_config(kvs_session *s, kvs_args *a, const char *cmd, kvq_config *cfg)
{
    bool vbits = kvs_opt_given(a, "value-bits");
    int used_before = 0, used_after = 0;
    for (int i = 0; i < a->nopt; i++) used_before += a->used[i];
    *cfg = s->cfg;
    if (kvs_args_apply_config(s, a, cfg)) return -1;
    for (int i = 0; i < a->nopt; i++) used_after += a->used[i];
    if (used_after == used_before) kvq_model_cfg_reference(cfg);   // no cache option: the reference
    if (!strcmp(cfg->method, "fp16") && !vbits) {
        cfg->value_bits = 16;
        cfg->value_method[0] = 0;
    }
    const char *why = kvq_config_check(cfg);
    if (why) return kvs_errorf(s, "%s: %s", cmd, why);
    return 0;
}

// --artifacts DIR (calibrated methods) or the session's artifacts.
static int load_art(kvs_session *s, const char *dir, const char *cmd, kvq_artifacts **own, const kvq_artifacts **art)
{
    *own = NULL;
    *art = s->art;
    if (!dir) return 0;
    if (kvq_artifacts_load(dir, own)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    *art = *own;
    return 0;
}

static void cfg_label(const kvq_config *c, char *buf, size_t n)
{
    if (kvq_model_cfg_is_fp16(c)) snprintf(buf, n, "fp16");
    else snprintf(buf, n, "%s k%d/v%d", c->method, c->bits, c->value_bits);
}

static int load_model(kvs_session *s, const char *dir, const char *cmd, kvq_model **m)
{
    if (!dir) return kvs_errorf(s, "%s: --model DIR is required (a Hugging Face Llama checkpoint directory)", cmd);
    if (kvq_model_load(dir, m)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    return 0;
}

static bool byte_level(const kvq_model *m) { return m->cfg.vocab_size == 256; }

// Raw bytes of a text file as token ids (byte-level models only).
static int text_tokens(kvs_session *s, const char *cmd, const kvq_model *m, const char *path, int32_t **tok,
                       int *n)
{
    if (!byte_level(m))
        return kvs_errorf(s, "%s: %s has vocab_size %d, not a byte-level model: give token ids with --tokens FILE "
                             "(no BPE tokenizer yet)", cmd, m->name, m->cfg.vocab_size);
    char *buf;
    size_t len;
    if (kvq_file_read(path, KVQ_TEXT_MAX_BYTES, &buf, &len)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    *tok = malloc(sizeof(int32_t) * (len ? len : 1));
    if (!*tok) {
        free(buf);
        return kvs_errorf(s, "%s: %s: out of memory", cmd, path);
    }
    for (size_t i = 0; i < len; i++) (*tok)[i] = (unsigned char)buf[i];
    free(buf);
    *n = (int)len;
    return 0;
}

static int file_tokens(kvs_session *s, const char *cmd, const kvq_model *m, const char *path, int32_t **tok, int *n)
{
    if (kvq_tokens_load(path, tok, n)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    for (int i = 0; i < *n; i++)
        if ((*tok)[i] >= m->cfg.vocab_size) {
            int bad = (*tok)[i];
            free(*tok);
            *tok = NULL;
            return kvs_errorf(s, "%s: %s: token %d at index %d is outside the vocabulary 0..%d", cmd, path, bad, i,
                              m->cfg.vocab_size - 1);
        }
    return 0;
}

static int write_json(kvs_session *s, const char *cmd, json_t *o, const char *path)
{
    char *txt = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
    if (!txt) return kvs_errorf(s, "%s: out of memory", cmd);
    int rc = 0;
    if (!path) {
        kvs_puts(s, txt);
    } else {
        kvq_atomic_file af;
        if (kvq_atomic_open(&af, path)) {
            rc = kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
        } else {
            fputs(txt, af.fp);
            fputc('\n', af.fp);
            if (kvq_atomic_commit(&af)) rc = kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
        }
    }
    free(txt);
    return rc;
}

// ---- ppl ----
int kvs_cmd_ppl(kvs_session *s, kvs_args *a)
{
    bool json = kvs_opt_flag(a, "json") || s->json;
    const char *text = kvs_opt_str(a, "text", NULL), *tokf = kvs_opt_str(a, "tokens", NULL);
    const char *output = kvs_opt_str(a, "output", NULL), *dir = kvs_opt_str(a, "model", NULL);
    const char *artdir = kvs_opt_str(a, "artifacts", NULL);
    kvq_config cfg;
    kvq_model *m = NULL;
    kvq_artifacts *own = NULL;
    const kvq_artifacts *art;
    if (model_config(s, a, "ppl", &cfg) || kvs_args_check_unused(s, a, "ppl")) return -1;
    if (!!text == !!tokf) return kvs_errorf(s, "ppl: give one of --text FILE or --tokens FILE");
    if (load_art(s, artdir, "ppl", &own, &art)) return -1;
    if (load_model(s, dir, "ppl", &m)) {
        kvq_artifacts_free(own);
        return -1;
    }
    int32_t *tok = NULL;
    int n = 0, rc = -1;
    bool per_byte = text != NULL;
    if (text ? text_tokens(s, "ppl", m, text, &tok, &n) : file_tokens(s, "ppl", m, tokf, &tok, &n)) goto out;
    if (n < 2) {
        kvs_errorf(s, "ppl: %s holds %d tokens (expected at least 2)", text ? text : tokf, n);
        goto out;
    }
    kvq_ppl_result r;
    if (kvq_model_ppl(m, &cfg, art, tok, n, CMD_CHUNK, NULL, &r)) {
        kvs_errorf(s, "ppl: %s", kvq_last_error());
        goto out;
    }
    char label[96];
    cfg_label(&cfg, label, sizeof label);
    const char *unit = per_byte ? "bits_per_byte" : "bits_per_token";
    if (json || output) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s, s:i, s:i}", "model", m->dir, per_byte ? "text" : "tokens_file",
                              per_byte ? text : tokf, "n_tokens", n, "cache", label, "method", cfg.method, "bits",
                              cfg.bits, "value_bits", cfg.value_bits);
        json_object_set_new(o, unit, json_real(r.bits_per_token));
        json_object_set_new(o, per_byte ? "fp16_bits_per_byte" : "fp16_bits_per_token", json_real(r.ref_bits_per_token));
        json_object_set_new(o, "kl_divergence", json_real(r.kl_bits));
        json_object_set_new(o, "kl_unit", json_string("bits per token, KL(fp16 || cache)"));
        json_object_set_new(o, "prefill_tokens_per_s", json_real(r.prefill_s > 0 ? n / r.prefill_s : 0));
        int w = 0;
        if (output) w = write_json(s, "ppl", o, output);
        if (!w && json) w = write_json(s, "ppl", o, NULL);
        json_decref(o);
        if (w) goto out;
    }
    if (!json) {
        const char *u = per_byte ? "bits/byte " : "bits/token";
        kvs_printf(s, "model      %s (%d layers, %d heads, %d kv heads, head_dim %d, %.1fM params)", m->dir,
                   m->cfg.n_layers, m->cfg.n_heads, m->cfg.n_kv_heads, m->cfg.head_dim, m->n_params / 1e6);
        kvs_printf(s, "input      %s (%d %s)", per_byte ? text : tokf, n, per_byte ? "bytes" : "tokens");
        kvs_printf(s, "cache      %s", label);
        if (kvq_model_cfg_is_fp16(&cfg)) {
            kvs_printf(s, "%s %.4f", u, r.bits_per_token);
        } else {
            kvs_printf(s, "%s %.4f (fp16 %.4f, %+.4f)", u, r.bits_per_token, r.ref_bits_per_token,
                       r.bits_per_token - r.ref_bits_per_token);
            kvs_printf(s, "KL         %.5f bits/token, KL(fp16 || %s)", r.kl_bits, label);
        }
        kvs_printf(s, "speed      %.0f tokens/s (chunks of %d)", r.prefill_s > 0 ? n / r.prefill_s : 0.0, CMD_CHUNK);
        if (output) kvs_printf(s, "wrote      %s", output);
    }
    rc = 0;
out:
    free(tok);
    kvq_model_free(m);
    kvq_artifacts_free(own);
    return rc;
}

// ---- generate ----
// Sample from softmax(logits / T); T <= 0 is greedy.
static int sample_token(const float *logits, int V, double temp, kvq_rng *rng, double *probs)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temp <= 0) return best;
    double z = 0;
    for (int i = 0; i < V; i++) z += probs[i] = exp(((double)logits[i] - logits[best]) / temp);
    double u = kvq_rng_uniform(rng) * z;
    for (int i = 0; i < V; i++) {
        u -= probs[i];
        if (u < 0) return i;
    }
    return best;
}

// Stream one token: bytes go straight to stdout in batch mode (flushed per
// token); in the studio whole lines go through the session output.
typedef struct {
    char line[1024];
    size_t len;
} stream_buf;

static void stream_token(kvs_session *s, stream_buf *sb, bool bytes, int tok)
{
    if (!s->interactive) {
        if (bytes) fputc(tok, stdout);
        else fprintf(stdout, "%d ", tok);
        fflush(stdout);
        return;
    }
    char piece[16];
    int np = bytes ? (piece[0] = (char)tok, 1) : snprintf(piece, sizeof piece, "%d ", tok);
    for (int i = 0; i < np; i++) {
        if (piece[i] == '\n' || sb->len == sizeof sb->line - 1) {
            sb->line[sb->len] = 0;
            kvs_printf(s, "%s", sb->line);
            sb->len = 0;
            if (piece[i] == '\n') continue;
        }
        sb->line[sb->len++] = piece[i];
    }
}

static void stream_end(kvs_session *s, stream_buf *sb)
{
    if (!s->interactive) {
        fputc('\n', stdout);
        fflush(stdout);
    } else if (sb->len) {
        sb->line[sb->len] = 0;
        kvs_printf(s, "%s", sb->line);
    }
}

static void print_reports(kvs_session *s, const kvq_report *r)
{
    if ((r->which & KVQ_OBS_DISTORTION) && r->distortion.total_tokens_measured > 0) {
        const kvq_distortion_report *d = &r->distortion;
        kvs_printf(s, "distortion  keys cosine mean %.4f min %.4f, rel MSE %.4f, |ip err| %.4f, worst layer %d (%ld keys)",
                   d->mean_cosine_similarity, d->min_cosine_similarity, d->mean_relative_mse, d->mean_ip_error,
                   d->worst_layer, d->total_tokens_measured);
    }
    if (r->which & KVQ_OBS_LATENCY) {
        const kvq_latency_report *l = &r->latency;
        kvs_printf(s, "latency     encode mean %.3f ms (p99 %.3f), attend mean %.3f ms, slowest layer %d",
                   l->mean_encode_ms, l->p99_encode_ms, l->mean_decode_ms, l->slowest_layer);
    }
    if (r->which & KVQ_OBS_MEMORY) {
        const kvq_memory_report *mr = &r->memory;
        kvs_printf(s, "memory      peak %.3f MB vs fp16 %.3f MB (%.2fx), %.0f bytes/token, %ld tokens",
                   mr->peak_compressed_mb, mr->peak_fp16_mb, mr->compression_ratio, mr->bytes_per_token,
                   mr->total_tokens);
    }
    if (r->which & KVQ_OBS_KEY_NORM) {
        const kvq_key_norm_report *k = &r->key_norm;
        kvs_printf(s, "key norms   mean %.3f std %.3f max %.3f, outliers %ld of %ld (%.2f%%)", k->mean_key_norm,
                   k->std_key_norm, k->max_key_norm, k->outlier_count, k->total_keys, 100 * k->outlier_fraction);
    }
    if ((r->which & KVQ_OBS_ATTENTION) && r->attention.num_queries > 0) {
        const kvq_attention_report *at = &r->attention;
        kvs_printf(s, "attention   output rel err %.4f, KL %.5f nats, top-%d recall %.3f (%ld queries)",
                   at->mean_output_rel_error, at->mean_kl_divergence, at->topk, at->topk_recall, at->num_queries);
    }
}

int kvs_cmd_generate(kvs_session *s, kvs_args *a)
{
    const char *prompt = kvs_opt_str(a, "prompt", NULL), *tokf = kvs_opt_str(a, "tokens", NULL);
    const char *dir = kvs_opt_str(a, "model", NULL), *artdir = kvs_opt_str(a, "artifacts", NULL);
    bool ok = true;
    long max_tokens = kvs_opt_int(s, a, "max-tokens", 64, 1, 1 << 20, &ok);
    double temp = kvs_opt_double(s, a, "temperature", 0.0, &ok);
    long seed = kvs_opt_int(s, a, "seed", 0, 0, 0x7fffffffL, &ok);
    bool seeded = kvs_opt_given(a, "seed");
    if (!ok) return -1;
    kvq_config cfg;
    if (model_config(s, a, "generate", &cfg) || kvs_args_check_unused(s, a, "generate")) return -1;
    if (!!prompt == !!tokf) return kvs_errorf(s, "generate: give one of --prompt TEXT or --tokens FILE");
    if (temp < 0) return kvs_errorf(s, "generate: --temperature %g is negative (expected >= 0; 0 = greedy)", temp);
    kvq_model *m = NULL;
    kvq_artifacts *own = NULL;
    const kvq_artifacts *art;
    if (load_art(s, artdir, "generate", &own, &art)) return -1;
    if (load_model(s, dir, "generate", &m)) {
        kvq_artifacts_free(own);
        return -1;
    }
    int V = m->cfg.vocab_size, rc = -1, n = 0;
    int32_t *tok = NULL;
    kvq_runner *r = NULL;
    kvq_observers *obs = NULL;
    float *logits = malloc(sizeof(float) * (size_t)V);
    double *probs = malloc(sizeof(double) * (size_t)V);
    if (!logits || !probs) {
        kvs_errorf(s, "generate: out of memory");
        goto out;
    }
    if (prompt) {
        if (!byte_level(m)) {
            kvs_errorf(s, "generate: %s is not byte-level (vocab_size %d): give prompt token ids with --tokens FILE",
                       m->name, V);
            goto out;
        }
        n = (int)strlen(prompt);
        tok = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
        if (!tok) {
            kvs_errorf(s, "generate: out of memory");
            goto out;
        }
        for (int i = 0; i < n; i++) tok[i] = (unsigned char)prompt[i];
    } else if (file_tokens(s, "generate", m, tokf, &tok, &n)) {
        goto out;
    }
    if (n < 1) {
        kvs_errorf(s, "generate: empty prompt");
        goto out;
    }
    if (kvq_runner_new(m, &cfg, art, CMD_CHUNK, &r)) {
        kvs_errorf(s, "generate: %s", kvq_last_error());
        goto out;
    }
    kvq_observers_opts oo;
    kvq_observers_opts_default(&oo);
    oo.which = KVQ_OBS_ALL;
    oo.seed = cfg.seed;
    if (kvq_observers_new(&oo, m->cfg.n_layers, m->cfg.n_kv_heads, m->cfg.head_dim, &obs)) {
        kvs_errorf(s, "generate: %s", kvq_last_error());
        goto out;
    }
    if (kvq_runner_observe(r, obs)) {
        kvs_errorf(s, "generate: %s", kvq_last_error());
        goto out;
    }
    kvq_rng rng;
    kvq_rng_seed(&rng, seeded ? (uint64_t)seed : cfg.seed);
    char label[96];
    cfg_label(&cfg, label, sizeof label);
    stream_buf sb = {.len = 0};
    bool bytes = byte_level(m);
    for (int i = 0; i < n; i++) stream_token(s, &sb, bytes, tok[i]);
    double t0 = kvq_now_s();
    if (kvq_runner_forward(r, tok, n, false, logits)) {
        stream_end(s, &sb);
        kvs_errorf(s, "generate: %s", kvq_last_error());
        goto out;
    }
    double t_prefill = kvq_now_s() - t0;
    t0 = kvq_now_s();
    long made = 0;
    for (; made < max_tokens; made++) {
        int32_t next = sample_token(logits, V, temp, &rng, probs);
        stream_token(s, &sb, bytes, next);
        if (made + 1 == max_tokens) {
            made++;
            break;
        }
        if (kvq_runner_forward(r, &next, 1, false, logits)) {
            stream_end(s, &sb);
            kvs_errorf(s, "generate: %s", kvq_last_error());
            goto out;
        }
    }
    double t_decode = kvq_now_s() - t0;
    stream_end(s, &sb);
    kvs_printf(s, "%s", "");
    kvs_printf(s, "cache       %s; prefill %d tokens at %.0f tok/s, decode %ld tokens at %.1f tok/s", label, n,
               t_prefill > 0 ? n / t_prefill : 0.0, made, (made > 1 && t_decode > 0) ? (made - 1) / t_decode : 0.0);
    kvq_report rep;
    kvq_observers_report(obs, &rep);
    print_reports(s, &rep);
    rc = 0;
out:
    kvq_runner_free(r);
    kvq_observers_free(obs);
    kvq_model_free(m);
    kvq_artifacts_free(own);
    free(tok);
    free(logits);
    free(probs);
    return rc;
}

// ---- capture ----
int kvs_cmd_capture(kvs_session *s, kvs_args *a)
{
    const char *text = kvs_opt_str(a, "text", NULL), *outp = kvs_opt_str(a, "out", NULL);
    const char *tokarg = kvs_opt_str(a, "tokens", NULL), *dir = kvs_opt_str(a, "model", NULL);
    const char *artdir = kvs_opt_str(a, "artifacts", NULL);
    kvq_config cfg;
    if (model_config(s, a, "capture", &cfg) || kvs_args_check_unused(s, a, "capture")) return -1;
    if (!outp) return kvs_errorf(s, "capture: --out TRACE.safetensors is required");
    // --tokens N limits the text; --tokens FILE gives token ids (non-byte-level models).
    long limit = 0;
    const char *tokf = NULL;
    if (tokarg) {
        char *end;
        errno = 0;
        limit = strtol(tokarg, &end, 10);
        if (errno || end == tokarg || *end) limit = 0, tokf = tokarg;
        else if (limit < 2) return kvs_errorf(s, "capture: --tokens %s (expected a count >= 2 or a token file)", tokarg);
    }
    if (!text && !tokf) return kvs_errorf(s, "capture: give --text FILE (or --tokens FILE of token ids)");
    if (text && tokf) return kvs_errorf(s, "capture: give --text FILE or --tokens FILE, not both");
    kvq_model *m = NULL;
    kvq_artifacts *own = NULL;
    const kvq_artifacts *art;
    if (load_art(s, artdir, "capture", &own, &art)) return -1;
    if (load_model(s, dir, "capture", &m)) {
        kvq_artifacts_free(own);
        return -1;
    }
    int32_t *tok = NULL;
    int n = 0, rc = -1;
    if (text ? text_tokens(s, "capture", m, text, &tok, &n) : file_tokens(s, "capture", m, tokf, &tok, &n)) goto out;
    if (limit && limit < n) n = (int)limit;
    if (n < 2) {
        kvs_errorf(s, "capture: %d tokens (expected at least 2)", n);
        goto out;
    }
    const char *src = text ? text : tokf;
    const char *base = strrchr(src, '/');
    char source[400];
    snprintf(source, sizeof source, "%s, first %d %s", base ? base + 1 : src, n, text ? "bytes" : "tokens");
    double bits = 0;
    double t0 = kvq_now_s();
    if (kvq_model_capture(m, &cfg, art, tok, n, text != NULL, source, outp, &bits)) {
        kvs_errorf(s, "capture: %s", kvq_last_error());
        goto out;
    }
    char label[96];
    cfg_label(&cfg, label, sizeof label);
    kvs_printf(s, "wrote %s: %d layers, %d heads, %d kv heads, head_dim %d, %d tokens, F16 (cache %s, %.1f s)", outp,
               m->cfg.n_layers, m->cfg.n_heads, m->cfg.n_kv_heads, m->cfg.head_dim, n, label, kvq_now_s() - t0);
    kvs_printf(s, "loss  %.4f %s", bits, text ? "bits/byte" : "bits/token");
    rc = 0;
out:
    free(tok);
    kvq_model_free(m);
    kvq_artifacts_free(own);
    return rc;
}
