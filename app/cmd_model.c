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
#include "label.h"
#include "metrics.h"
#include "model.h"
#include "observe.h"
#include "rng.h"
#include "safetensors.h"
#include "tok/tok.h"

#define CMD_CHUNK 128   // prefill chunk: the cache sees the text as a real prompt would arrive

// The header line that says where each key field of the cache config came
// from, printed every time: "cache from --value-bits 4; session config:
// method turboquant_mse, bits 3, value_method turboquant_mse".
static void cfg_origin(kvs_args *a, const kvq_config *c, bool reference, char *buf, size_t n)
{
    if (reference) {
        snprintf(buf, n, "no cache option given: the fp16 reference cache (method fp16, bits 16, value_bits 16)");
        return;
    }
    static const char *const opt[] = {"method", "bits", "value-bits", "value-method"};
    char given[256] = "", dflt[256] = "";
    for (int i = 0; i < 4; i++) {
        char v[KVQ_NAME_LEN + 8];
        kvq_config_get(c, opt[i], v, sizeof v);
        if (i == 3 && !v[0]) snprintf(v, sizeof v, "%s", c->value_bits == 16 ? "fp16" : "turboquant_mse");
        char *dst = kvs_opt_given(a, opt[i]) ? given : dflt;
        size_t len = strlen(dst);
        snprintf(dst + len, 256 - len, "%s%s %s", len ? ", " : "", opt[i], v);
    }
    snprintf(buf, n, "given: %s; from the session config: %s", given[0] ? given : "none", dflt[0] ? dflt : "none");
}

static int model_config(kvs_session *s, kvs_args *a, const char *cmd, kvq_config *cfg, bool *reference)
{
    bool vbits = kvs_opt_given(a, "value-bits");
    int used_before = 0, used_after = 0;
    for (int i = 0; i < a->nopt; i++) used_before += a->used[i];
    *cfg = s->cfg;
    if (kvs_args_apply_config(s, a, cfg)) return -1;
    for (int i = 0; i < a->nopt; i++) used_after += a->used[i];
    *reference = used_after == used_before;
    if (*reference) kvq_model_cfg_reference(cfg);   // no cache option: the reference
    const char *why = *reference ? NULL : kvq_config_fit_bits(cfg, kvs_opt_given(a, "bits"), NULL);
    if (!strcmp(cfg->method, "fp16") && !vbits) {
        cfg->value_bits = 16;
        cfg->value_method[0] = 0;
    }
    if (!why) why = kvq_config_check(cfg);
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

static void cfg_label(const kvq_config *c, const kvq_artifacts *art, char *buf, size_t n)
{
    char id[16];
    kvq_artifacts_id(art, id, sizeof id);
    kvq_config_label(c, id, buf, n);
}

static int load_model(kvs_session *s, const char *dir, const char *cmd, kvq_model **m)
{
    if (!dir) return kvs_errorf(s, "%s: --model DIR is required (a Hugging Face Llama checkpoint directory)", cmd);
    if (kvq_model_load(dir, m)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    return 0;
}

static bool byte_level(const kvq_model *m) { return m->cfg.vocab_size == 256; }

// The model directory's tokenizer.json, when it has one; *tk NULL otherwise.
static int model_tokenizer(kvs_session *s, const char *cmd, const kvq_model *m, kvq_tok **tk)
{
    *tk = NULL;
    if (!kvq_tok_present(m->dir)) return 0;
    if (kvq_tok_load(m->dir, tk)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    return 0;
}

// Ids of text under tk (BOS per its post-processor), checked against the model's vocabulary.
static int encode_checked(kvs_session *s, const char *cmd, const kvq_model *m, kvq_tok *tk, const char *what,
                          const char *text, size_t len, int32_t **tok, int *n)
{
    if (kvq_tok_encode(tk, text, len, true, tok, n)) return kvs_errorf(s, "%s: %s: %s", cmd, what, kvq_last_error());
    for (int i = 0; i < *n; i++)
        if ((*tok)[i] >= m->cfg.vocab_size) {
            int bad = (*tok)[i];
            free(*tok);
            *tok = NULL;
            return kvs_errorf(s, "%s: %s/tokenizer.json gives token %d, outside the model's vocabulary 0..%d", cmd,
                              m->dir, bad, m->cfg.vocab_size - 1);
        }
    return 0;
}

// Bytes of text the scored predictions cover (for bits per byte): all of
// it when the first token is the BOS, else all but the first token's text.
static size_t scored_bytes(const kvq_tok *tk, const int32_t *tok, int n, size_t text_len)
{
    if (!tk) return n > 0 ? (size_t)n - 1 : 0;   // byte-level: token = byte
    if (n < 1 || tok[0] == kvq_tok_bos(tk)) return text_len;
    size_t first = kvq_tok_piece(tk, tok[0], true, NULL, 0);
    return first < text_len ? text_len - first : 0;
}

int kvs_model_text_tokens(kvs_session *s, const char *cmd, const struct kvq_model *m, const char *what,
                          const char *text, size_t len, int32_t **tok, int *n, struct kvq_tok **tk)
{
    *tok = NULL;
    *n = 0;
    if (model_tokenizer(s, cmd, m, tk)) return -1;
    if (!*tk && !byte_level(m))
        return kvs_errorf(s, "%s: %s has vocab_size %d and no tokenizer.json: give token ids with --tokens FILE", cmd,
                          m->name, m->cfg.vocab_size);
    if (*tk) return encode_checked(s, cmd, m, *tk, what, text, len, tok, n);
    *tok = malloc(sizeof(int32_t) * (len ? len : 1));
    if (!*tok) return kvs_errorf(s, "%s: %s: out of memory", cmd, what);
    for (size_t i = 0; i < len; i++) (*tok)[i] = (unsigned char)text[i];
    *n = (int)len;
    return 0;
}

size_t kvs_model_scored_bytes(const struct kvq_tok *tk, const int32_t *tok, int n, size_t text_len)
{
    return scored_bytes(tk, tok, n, text_len);
}

// Token ids of a text file (kvs_model_text_tokens); *nbytes: the file's size.
static int text_tokens(kvs_session *s, const char *cmd, const kvq_model *m, const char *path, int32_t **tok,
                       int *n, kvq_tok **tk, size_t *nbytes)
{
    char *buf;
    size_t len;
    if (kvq_file_read(path, KVQ_TEXT_MAX_BYTES, &buf, &len)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    *nbytes = len;
    int rc = kvs_model_text_tokens(s, cmd, m, path, buf, len, tok, n, tk);
    free(buf);
    return rc;
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
    bool json = kvs_opt_flag(a, "json") || s->json, per_token = kvs_opt_flag(a, "per-token");
    const char *text = kvs_opt_str(a, "text", NULL), *tokf = kvs_opt_str(a, "tokens", NULL);
    const char *output = kvs_opt_str(a, "output", NULL), *dir = kvs_opt_str(a, "model", NULL);
    const char *artdir = kvs_opt_str(a, "artifacts", NULL);
    kvq_config cfg;
    kvq_model *m = NULL;
    kvq_artifacts *own = NULL;
    const kvq_artifacts *art;
    bool reference;
    if (model_config(s, a, "ppl", &cfg, &reference) || kvs_args_check_unused(s, a, "ppl")) return -1;
    if (!!text == !!tokf) return kvs_errorf(s, "ppl: give one of --text FILE or --tokens FILE");
    if (load_art(s, artdir, "ppl", &own, &art)) return -1;
    if (load_model(s, dir, "ppl", &m)) {
        kvq_artifacts_free(own);
        return -1;
    }
    int32_t *tok = NULL;
    double *nats = NULL;
    int n = 0, rc = -1;
    kvq_tok *tk = NULL;
    size_t nbytes = 0;
    if (text ? text_tokens(s, "ppl", m, text, &tok, &n, &tk, &nbytes) : file_tokens(s, "ppl", m, tokf, &tok, &n))
        goto out;
    bool per_byte = text != NULL && !tk;   // byte-level: a token is a byte
    // With a tokenizer: bits per byte = the predictions' bits over the bytes they cover.
    size_t covered = tk ? scored_bytes(tk, tok, n, nbytes) : 0;
    if (n < 2) {
        kvs_errorf(s, "ppl: %s holds %d tokens (expected at least 2)", text ? text : tokf, n);
        goto out;
    }
    if (per_token && !json && !output) {
        kvs_errorf(s, "ppl: --per-token goes with --json or --output (it adds token_nll_nats to the JSON)");
        goto out;
    }
    kvq_ppl_result r;
    nats = per_token ? malloc(sizeof(double) * (size_t)(n - 1)) : NULL;
    if (per_token && !nats) {
        kvs_errorf(s, "ppl: out of memory for %d per-token losses", n - 1);
        goto out;
    }
    if (kvq_model_ppl_tokens(m, &cfg, art, tok, n, CMD_CHUNK, NULL, nats, &r)) {
        kvs_errorf(s, "ppl: %s", kvq_last_error());
        goto out;
    }
    char label[256], origin[600];
    cfg_label(&cfg, art, label, sizeof label);
    cfg_origin(a, &cfg, reference, origin, sizeof origin);
    const kvq_metric *loss = &kvq_metrics[per_byte ? KVQ_M_BITS_PER_BYTE : KVQ_M_BITS_PER_TOKEN];
    const kvq_metric *kl = &kvq_metrics[KVQ_M_NEXT_TOKEN_KL];
    const char *unit = loss->report;
    if (json || output) {
        json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s, s:i, s:i}", "model", m->dir, text ? "text" : "tokens_file",
                              text ? text : tokf, "n_tokens", n, "cache", label, "method", cfg.method, "bits",
                              cfg.bits, "value_bits", cfg.value_bits);
        json_object_set_new(o, unit, json_real(r.bits_per_token));
        json_object_set_new(o, per_byte ? "fp16_bits_per_byte" : "fp16_bits_per_token", json_real(r.ref_bits_per_token));
        json_object_set_new(o, "cache_origin", json_string(origin));
        json_object_set_new(o, kl->report, json_real(r.kl_bits));
        if (tk) {
            json_object_set_new(o, kvq_metrics[KVQ_M_PERPLEXITY].report, json_real(exp2(r.bits_per_token)));
            json_object_set_new(o, kvq_metrics[KVQ_M_BITS_PER_BYTE].report,
                                json_real(covered ? r.bits_per_token * (n - 1) / covered : 0));
        }
        json_object_set_new(o, "kl_unit", json_string("bits per token, KL(fp16 || cache)"));
        json_object_set_new(o, "prefill_tokens_per_s", json_real(r.prefill_s > 0 ? n / r.prefill_s : 0));
        json_object_set_new(o, "model_type", json_string(m->cfg.arch->model_type));
        if (nats) {   // -ln p(tok[i+1] | tok[0..i]) under this cache, i = 0..n-2
            json_t *arr = json_array();
            for (int i = 0; i < n - 1; i++) json_array_append_new(arr, json_real(nats[i]));
            json_object_set_new(o, "token_nll_nats", arr);
        }
        int w = 0;
        if (output) w = write_json(s, "ppl", o, output);
        if (!w && json) w = write_json(s, "ppl", o, NULL);
        json_decref(o);
        if (w) goto out;
    }
    if (!json) {
        kvs_printf(s, "model      %s (%d layers, %d heads, %d kv heads, head_dim %d, %.1fM params)", m->dir,
                   m->cfg.n_layers, m->cfg.n_heads, m->cfg.n_kv_heads, m->cfg.head_dim, m->n_params / 1e6);
        kvs_printf(s, "input      %s (%d %s)", text ? text : tokf, n, per_byte ? "bytes" : "tokens");
        kvs_printf(s, "cache      %s", label);
        kvs_printf(s, "config     %s", origin);
        char f[3][32];
        if (kvq_model_cfg_is_fp16(&cfg)) {
            kvs_printf(s, "%-10s %s", loss->name, kvq_metric_fmt(loss->id, r.bits_per_token, f[0], 32));
        } else {
            kvs_printf(s, "%-10s %s (fp16 %s, %+.4f)", loss->name, kvq_metric_fmt(loss->id, r.bits_per_token, f[0], 32),
                       kvq_metric_fmt(loss->id, r.ref_bits_per_token, f[1], 32), r.bits_per_token - r.ref_bits_per_token);
            kvs_printf(s, "%s %s, KL(fp16 || %s)", kl->name, kvq_metric_fmt_unit(kl->id, r.kl_bits, f[2], 32), label);
        }
        if (tk) {
            kvs_printf(s, "%-10s %s", kvq_metrics[KVQ_M_PERPLEXITY].name,
                       kvq_metric_fmt(KVQ_M_PERPLEXITY, exp2(r.bits_per_token), f[0], 32));
            kvs_printf(s, "%-10s %s (%zu bytes covered, tokenizer.json)", kvq_metrics[KVQ_M_BITS_PER_BYTE].name,
                       kvq_metric_fmt(KVQ_M_BITS_PER_BYTE, covered ? r.bits_per_token * (n - 1) / covered : 0.0, f[1], 32),
                       covered);
        }
        kvs_printf(s, "%-10s %.0f tokens/s (chunks of %d)", kvq_metrics[KVQ_M_TOKENS_PER_S].name,
                   r.prefill_s > 0 ? n / r.prefill_s : 0.0, CMD_CHUNK);
        if (output) kvs_printf(s, "wrote      %s", output);
    }
    rc = 0;
out:
    free(tok);
    kvq_tok_free(tk);
    free(nats);
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

// tk: text of the token through the tokenizer's decoder (first: the first
// token printed, for the decoder's leading-space strip); else bytes or ids.
static void stream_token(kvs_session *s, stream_buf *sb, bool bytes, const kvq_tok *tk, bool first, int tok)
{
    char piece[256];
    int np = tk ? (int)kvq_tok_piece(tk, tok, first, piece, sizeof piece)
                : bytes ? (piece[0] = (char)tok, 1) : snprintf(piece, sizeof piece, "%d ", tok);
    if (np > (int)sizeof piece) np = (int)sizeof piece;
    if (!s->interactive) {
        fwrite(piece, 1, (size_t)np, stdout);
        fflush(stdout);
        return;
    }
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

#define MV(i, id, v) kvq_metric_fmt_named(KVQ_M_##id, v, mv[i], sizeof mv[i])

static void print_reports(kvs_session *s, const kvq_report *r)
{
    char mv[8][128];
    if ((r->which & KVQ_OBS_DISTORTION) && r->distortion.total_tokens_measured > 0) {
        const kvq_distortion_report *d = &r->distortion;
        kvs_printf(s, "distortion  %s, %s, %s, %s (worst layer %d; %ld compressed keys measured)",
                   MV(0, KEY_COSINE, d->mean_cosine_similarity), MV(1, KEY_COSINE_MIN, d->min_cosine_similarity),
                   MV(2, KEY_REL_MSE, d->mean_relative_mse), MV(3, PROBE_ERROR, d->mean_ip_error), d->worst_layer,
                   d->total_tokens_measured);
    }
    if (r->which & KVQ_OBS_LATENCY) {
        const kvq_latency_report *l = &r->latency;
        kvs_printf(s, "latency     %s, %s, %s, slowest layer %d", MV(0, ENCODE_MS, l->mean_encode_ms),
                   MV(1, ENCODE_P99_MS, l->p99_encode_ms), MV(2, ATTEND_MS, l->mean_decode_ms), l->slowest_layer);
    }
    if (r->which & KVQ_OBS_MEMORY) {
        const kvq_memory_report *mr = &r->memory;
        kvs_printf(s, "memory      %s vs %s: %s, %s, %ld tokens", MV(0, CACHE_MB, mr->peak_compressed_mb),
                   MV(1, FP16_MB, mr->peak_fp16_mb), MV(2, CACHE_COMPRESSION, mr->compression_ratio),
                   MV(3, BYTES_PER_TOKEN, mr->bytes_per_token), mr->total_tokens);
    }
    if (r->which & KVQ_OBS_KEY_NORM) {
        const kvq_key_norm_report *k = &r->key_norm;
        kvs_printf(s, "key norms   %s (std %.3f, max %.3f), %s (%ld of %ld)",
                   MV(0, KEY_NORM, k->total_keys ? k->mean_key_norm : NAN), k->std_key_norm, k->max_key_norm,
                   MV(1, OUTLIER_FRACTION, k->total_keys ? 100 * k->outlier_fraction : NAN), k->outlier_count,
                   k->total_keys);
    }
    if ((r->which & KVQ_OBS_ATTENTION) && r->attention.num_queries > 0) {
        const kvq_attention_report *at = &r->attention;
        kvs_printf(s, "attention   %s, %s, %s (k = %d, %ld queries)", MV(0, OUTPUT_ERROR, at->mean_output_rel_error),
                   MV(1, ATTN_KL, at->mean_kl_divergence), MV(2, TOPK_RECALL, at->topk_recall), at->topk, at->num_queries);
    }
}

int kvs_cmd_generate(kvs_session *s, kvs_args *a)
{
    const char *prompt = kvs_opt_str(a, "prompt", NULL), *tokf = kvs_opt_str(a, "tokens", NULL);
    const char *dir = kvs_opt_str(a, "model", NULL), *artdir = kvs_opt_str(a, "artifacts", NULL);
    long max_tokens = kvs_opt_int(a, "max-tokens", 64);
    double temp = kvs_opt_double(a, "temperature", 0.0);
    long seed = kvs_opt_int(a, "seed", 0);
    bool seeded = kvs_opt_given(a, "seed");
    kvq_config cfg;
    bool reference;
    if (model_config(s, a, "generate", &cfg, &reference) || kvs_args_check_unused(s, a, "generate")) return -1;
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
    kvq_tok *tk = NULL;
    kvq_runner *r = NULL;
    kvq_observers *obs = NULL;
    float *logits = malloc(sizeof(float) * (size_t)V);
    double *probs = malloc(sizeof(double) * (size_t)V);
    if (!logits || !probs) {
        kvs_errorf(s, "generate: out of memory");
        goto out;
    }
    if (model_tokenizer(s, "generate", m, &tk)) goto out;
    if (tk && prompt) {
        if (encode_checked(s, "generate", m, tk, "--prompt", prompt, strlen(prompt), &tok, &n)) goto out;
    } else if (prompt) {
        if (!byte_level(m)) {
            kvs_errorf(s, "generate: %s is not byte-level (vocab_size %d) and has no tokenizer.json: give prompt "
                          "token ids with --tokens FILE", m->name, V);
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
    char label[256], origin[600];
    cfg_label(&cfg, art, label, sizeof label);
    cfg_origin(a, &cfg, reference, origin, sizeof origin);
    kvs_printf(s, "cache       %s", label);   // the header, before the text streams
    kvs_printf(s, "config      %s", origin);
    stream_buf sb = {.len = 0};
    bool bytes = byte_level(m);
    int shown = 0;   // the BOS is not printed
    for (int i = 0; i < n; i++)
        if (!tk || tok[i] != kvq_tok_bos(tk)) stream_token(s, &sb, bytes, tk, shown++ == 0, tok[i]);
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
        if (tk && next == kvq_tok_eos(tk)) {   // the model ended its text
            made++;
            break;
        }
        stream_token(s, &sb, bytes, tk, shown++ == 0, next);
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
    kvs_printf(s, "speed       prefill %d tokens at %.0f tokens/s, decode %ld tokens at %.1f tokens/s", n,
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
    kvq_tok_free(tk);
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
    bool reference;
    if (model_config(s, a, "capture", &cfg, &reference) || kvs_args_check_unused(s, a, "capture")) return -1;
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
    kvq_tok *tk = NULL;
    size_t nbytes = 0;
    if (text ? text_tokens(s, "capture", m, text, &tok, &n, &tk, &nbytes)
             : file_tokens(s, "capture", m, tokf, &tok, &n))
        goto out;
    bool per_byte = text != NULL && !tk;   // byte-level: a token is a byte
    if (limit && limit < n) n = (int)limit;
    if (n < 2) {
        kvs_errorf(s, "capture: %d tokens (expected at least 2)", n);
        goto out;
    }
    const char *src = text ? text : tokf;
    const char *base = strrchr(src, '/');
    char source[400];
    snprintf(source, sizeof source, "%s, first %d %s", base ? base + 1 : src, n, per_byte ? "bytes" : "tokens");
    double bits = 0;
    double t0 = kvq_now_s();
    if (kvq_model_capture(m, &cfg, art, tok, n, per_byte, source, outp, &bits)) {
        kvs_errorf(s, "capture: %s", kvq_last_error());
        goto out;
    }
    char label[256];
    cfg_label(&cfg, art, label, sizeof label);
    kvs_printf(s, "wrote %s: %d layers, %d heads, %d kv heads, head_dim %d, %d tokens, F16 (cache %s, %.1f s)", outp,
               m->cfg.n_layers, m->cfg.n_heads, m->cfg.n_kv_heads, m->cfg.head_dim, n, label, kvq_now_s() - t0);
    kvs_printf(s, "loss  %.4f %s", bits, per_byte ? "bits/byte" : "bits/token");
    rc = 0;
out:
    free(tok);
    kvq_tok_free(tk);
    kvq_model_free(m);
    kvq_artifacts_free(own);
    return rc;
}
