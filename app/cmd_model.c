// cmd_model.c — commands that run a model through the quantized cache:
// ppl (loss and KL against the fp16 cache), generate (streamed text with
// observers), capture (kvtrace file).
//
// Cache config: in batch without any cache option the fp16 cache (the
// reference); with any (--method, --bits, --value-bits, --residual-length,
// ...), and always in the studio, the session's config with those applied.
// A key method of fp16 without --value-bits keeps values fp16 too, so `--method fp16 --bits 16` is the
// unquantized run. capture with a quantized cache records the model's exact
// keys and queries of each layer, with earlier layers attending through it.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
#include "progress.h"
#include "tui.h"


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
    *reference = used_after == used_before && !s->ui;   // the studio runs what it shows: the session's
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

// The session's calibration for cfg's key method, else for its value
// method, else the set in use (s->art). The caller holds s->lock.
const kvq_artifacts *kvs_model_session_art(kvs_session *s, const kvq_config *c)
{
    kvs_art_slot *a = kvs_session_find_art(s, c->method);
    if (!a && c->value_method[0]) a = kvs_session_find_art(s, c->value_method);
    return a ? a->art : s->art;
}

void kvs_model_cfg_label(const kvq_config *c, const kvq_artifacts *art, char *buf, size_t n)
{
    char id[16];
    kvq_artifacts_id(art, id, sizeof id);
    kvq_config_label(c, id, buf, n);
}

int kvs_model_load(kvs_session *s, const char *dir, const char *cmd, kvq_model **m)
{
    if (!dir || !*dir)
        return kvs_errorf(s, "%s: --model DIR is required (a Hugging Face checkpoint directory; the studio opened "
                             "on one, `kvstudio MODEL_DIR`, uses it)", cmd);
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
size_t kvs_model_scored_bytes(const kvq_tok *tk, const int32_t *tok, int n, size_t text_len)
{
    if (!tk) return n > 0 ? (size_t)n - 1 : 0;   // byte-level: token = byte
    if (n < 1 || tok[0] == kvq_tok_bos(tk)) return text_len;
    size_t first = kvq_tok_piece(tk, tok[0], true, NULL, 0);
    return first < text_len ? text_len - first : 0;
}

// Token ids of a text file: through the model directory's tokenizer.json
// when it has one (tk set, owned by the caller), else its raw bytes
// (byte-level models only). *nbytes: the file's size.
int kvs_model_text_tokens(kvs_session *s, const char *cmd, const kvq_model *m, const char *path, int32_t **tok,
                          int *n, kvq_tok **tk, size_t *nbytes)
{
    if (model_tokenizer(s, cmd, m, tk)) return -1;
    if (!*tk && !byte_level(m))
        return kvs_errorf(s, "%s: %s has vocab_size %d and no tokenizer.json: give token ids with --tokens FILE", cmd,
                          m->name, m->cfg.vocab_size);
    char *buf;
    size_t len;
    if (kvq_file_read(path, KVQ_TEXT_MAX_BYTES, &buf, &len)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    *nbytes = len;
    if (*tk) {
        int rc = encode_checked(s, cmd, m, *tk, path, (const char *)buf, len, tok, n);
        free(buf);
        return rc;
    }
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
// A model command's arguments, copied out of kvs_args: the run may happen
// later on the studio's worker thread, after the command line is gone.
typedef struct {
    char dir[KVQ_PATH_LEN], artdir[KVQ_PATH_LEN], text[KVQ_PATH_LEN], tokf[KVQ_PATH_LEN];
    kvq_config cfg;
    char origin[600];   // cfg_origin's line
} model_args;

static void copy_opt(kvs_args *a, const char *key, char *dst, size_t n)
{
    const char *v = kvs_opt_str(a, key, NULL);
    snprintf(dst, n, "%s", v ? v : "");
}

// --model, else the model the studio was opened on; a studio without one
// adopts the first model directory given (the model view then shows it).
void kvs_model_dir(kvs_session *s, kvs_args *a, char *dir, size_t n)
{
    copy_opt(a, "model", dir, n);
    if (!dir[0]) snprintf(dir, n, "%s", s->model_dir);
    char cfg[KVQ_PATH_LEN + 16];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    if (s->ui && !s->model_dir[0] && dir[0] && kvq_file_exists(cfg))
        snprintf(s->model_dir, sizeof s->model_dir, "%s", dir);
}

// Runs fn on the task: in the studio as a worker job (progress bar, Esc),
// in batch right here with the terminal progress line. Takes task.
static int model_run(kvs_session *s, const char *cmd, kvs_model_fn fn, void *task, const char *open_trace)
{
    if (s->ui) return kvs_studio_model_job(s, cmd, fn, task, open_trace);
    kvs_tty_progress tp;
    int rc = fn(s, task, kvs_tty_progress_begin(&tp, s, cmd));
    kvs_tty_progress_end(&tp);
    free(task);
    return rc ? -1 : 0;
}

// The session's artifacts stay put under s->lock while a run uses them;
// --artifacts DIR loads its own set instead.
static int art_begin(kvs_session *s, const model_args *ma, const char *cmd, kvq_artifacts **own,
                     const kvq_artifacts **art)
{
    pthread_mutex_lock(&s->lock);
    *own = NULL;
    *art = kvs_model_session_art(s, &ma->cfg);
    if (!ma->artdir[0]) return 0;
    if (!kvq_artifacts_load(ma->artdir, own)) {
        *art = *own;
        return 0;
    }
    kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    pthread_mutex_unlock(&s->lock);
    return -1;
}

static void art_end(kvs_session *s, kvq_artifacts *own)
{
    kvq_artifacts_free(own);
    pthread_mutex_unlock(&s->lock);
}

// The engine's message for a failed run; a cancelled one prints nothing (the studio says so).
static int run_failed(kvs_session *s, const char *cmd, kvq_status st)
{
    if (st == KVQ_ERR_CANCELLED) return KVQ_ERR_CANCELLED;
    kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    return -1;
}

typedef struct {
    model_args m;
    char output[KVQ_PATH_LEN];
    bool json, per_token;
} ppl_task;

static int ppl_run(kvs_session *s, void *task, kvq_progress *p)
{
    ppl_task *t = task;
    const char *text = t->m.text[0] ? t->m.text : NULL, *tokf = t->m.tokf[0] ? t->m.tokf : NULL;
    const char *output = t->output[0] ? t->output : NULL;
    bool json = t->json;
    const kvq_config cfg = t->m.cfg;
    kvq_model *m = NULL;
    kvq_artifacts *own = NULL;
    const kvq_artifacts *art;
    if (art_begin(s, &t->m, "ppl", &own, &art)) return -1;
    if (kvs_model_load(s, t->m.dir, "ppl", &m)) {
        art_end(s, own);
        return -1;
    }
    int32_t *tok = NULL;
    double *nats = NULL;
    int n = 0, rc = -1;
    kvq_tok *tk = NULL;
    size_t nbytes = 0;
    if (text ? kvs_model_text_tokens(s, "ppl", m, text, &tok, &n, &tk, &nbytes)
             : file_tokens(s, "ppl", m, tokf, &tok, &n))
        goto out;
    bool per_byte = text != NULL && !tk;   // byte-level: a token is a byte
    // With a tokenizer: bits per byte = the predictions' bits over the bytes they cover.
    size_t covered = tk ? kvs_model_scored_bytes(tk, tok, n, nbytes) : 0;
    if (n < 2) {
        kvs_errorf(s, "ppl: %s holds %d tokens (expected at least 2)", text ? text : tokf, n);
        goto out;
    }
    kvq_ppl_result r;
    nats = t->per_token ? malloc(sizeof(double) * (size_t)(n - 1)) : NULL;
    if (t->per_token && !nats) {
        kvs_errorf(s, "ppl: out of memory for %d per-token losses", n - 1);
        goto out;
    }
    kvq_status st = kvq_model_ppl_tokens(m, &cfg, art, tok, n, KVS_MODEL_CHUNK, p, nats, &r);
    if (st) {
        rc = run_failed(s, "ppl", st);
        goto out;
    }
    char label[256];
    kvs_model_cfg_label(&cfg, art, label, sizeof label);
    const char *origin = t->m.origin;
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
        json_object_set_new(o, kvq_metrics[KVQ_M_KEY_RECORD_BITS].json, json_real(r.key_record_bits));
        json_object_set_new(o, kvq_metrics[KVQ_M_VALUE_RECORD_BITS].json, json_real(r.value_record_bits));
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
                   r.prefill_s > 0 ? n / r.prefill_s : 0.0, KVS_MODEL_CHUNK);
        if (output) kvs_printf(s, "wrote      %s", output);
    }
    rc = 0;
out:
    free(tok);
    kvq_tok_free(tk);
    free(nats);
    kvq_model_free(m);
    art_end(s, own);
    return rc;
}

int kvs_cmd_ppl(kvs_session *s, kvs_args *a)
{
    ppl_task *t = calloc(1, sizeof *t);
    if (!t) return kvs_errorf(s, "ppl: out of memory");
    bool reference;
    t->json = kvs_opt_flag(a, "json") || s->json;
    t->per_token = kvs_opt_flag(a, "per-token");
    copy_opt(a, "text", t->m.text, sizeof t->m.text);
    copy_opt(a, "tokens", t->m.tokf, sizeof t->m.tokf);
    copy_opt(a, "output", t->output, sizeof t->output);
    copy_opt(a, "artifacts", t->m.artdir, sizeof t->m.artdir);
    kvs_model_dir(s, a, t->m.dir, sizeof t->m.dir);
    int bad = model_config(s, a, "ppl", &t->m.cfg, &reference) || kvs_args_check_unused(s, a, "ppl");
    if (!bad && !t->m.text[0] == !t->m.tokf[0]) bad = kvs_errorf(s, "ppl: give one of --text FILE or --tokens FILE");
    if (!bad && t->per_token && !t->json && !t->output[0])
        bad = kvs_errorf(s, "ppl: --per-token goes with --json or --output (it adds token_nll_nats to the JSON)");
    if (!bad && !t->m.dir[0]) bad = kvs_model_load(s, NULL, "ppl", NULL);   // says --model is required
    if (bad) {
        free(t);
        return -1;
    }
    cfg_origin(a, &t->m.cfg, reference, t->m.origin, sizeof t->m.origin);
    return model_run(s, "ppl", ppl_run, t, NULL);
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

typedef struct {
    model_args m;
    bool has_prompt, seeded;
    long max_tokens, seed;
    double temp;
    char prompt[];   // --prompt, any length ("" with --tokens)
} gen_task;

// The prompt's prefill asks before every layer (runner poll); decoding asks per token.
static bool prefill_poll(void *user, int layer)
{
    (void)layer;
    return kvq_progress_report(user, 0, "prompt");
}

static int generate_run(kvs_session *s, void *task, kvq_progress *p)
{
    gen_task *gt = task;
    const char *prompt = gt->has_prompt ? gt->prompt : NULL, *tokf = gt->m.tokf[0] ? gt->m.tokf : NULL;
    long max_tokens = gt->max_tokens, seed = gt->seed;
    double temp = gt->temp;
    bool seeded = gt->seeded;
    const kvq_config cfg = gt->m.cfg;
    kvq_model *m = NULL;
    kvq_artifacts *own = NULL;
    const kvq_artifacts *art;
    if (art_begin(s, &gt->m, "generate", &own, &art)) return -1;
    if (kvs_model_load(s, gt->m.dir, "generate", &m)) {
        art_end(s, own);
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
    if (kvq_runner_new(m, &cfg, art, KVS_MODEL_CHUNK, &r)) {
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
    char label[256];
    kvs_model_cfg_label(&cfg, art, label, sizeof label);
    kvs_printf(s, "cache       %s", label);   // the header, before the text streams
    kvs_printf(s, "config      %s", gt->m.origin);
    stream_buf sb = {.len = 0};
    bool bytes = byte_level(m);
    int shown = 0;   // the BOS is not printed
    for (int i = 0; i < n; i++)
        if (!tk || tok[i] != kvq_tok_bos(tk)) stream_token(s, &sb, bytes, tk, shown++ == 0, tok[i]);
    double t0 = kvq_now_s();
    kvq_progress_begin(p);
    if (p) kvq_runner_set_poll(r, prefill_poll, p);
    kvq_status st = kvq_runner_forward(r, tok, n, false, logits);
    kvq_runner_set_poll(r, NULL, NULL);
    if (st) {
        stream_end(s, &sb);
        rc = run_failed(s, "generate", st);
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
        if (kvq_progress_report(p, (double)(made + 1) / max_tokens, "decode")) {
            stream_end(s, &sb);
            kvs_printf(s, "generate: stopped after %ld of %ld tokens", made + 1, max_tokens);
            rc = KVQ_ERR_CANCELLED;
            goto out;
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
    art_end(s, own);
    free(tok);
    kvq_tok_free(tk);
    free(logits);
    free(probs);
    return rc;
}

int kvs_cmd_generate(kvs_session *s, kvs_args *a)
{
    const char *prompt = kvs_opt_str(a, "prompt", NULL);
    gen_task *t = calloc(1, sizeof *t + (prompt ? strlen(prompt) : 0) + 1);
    if (!t) return kvs_errorf(s, "generate: out of memory");
    t->has_prompt = prompt != NULL;
    if (prompt) memcpy(t->prompt, prompt, strlen(prompt) + 1);
    copy_opt(a, "tokens", t->m.tokf, sizeof t->m.tokf);
    copy_opt(a, "artifacts", t->m.artdir, sizeof t->m.artdir);
    kvs_model_dir(s, a, t->m.dir, sizeof t->m.dir);
    t->max_tokens = kvs_opt_int(a, "max-tokens", 64);
    t->temp = kvs_opt_double(a, "temperature", 0.0);
    t->seed = kvs_opt_int(a, "seed", 0);
    t->seeded = kvs_opt_given(a, "seed");
    bool reference;
    int bad = model_config(s, a, "generate", &t->m.cfg, &reference) || kvs_args_check_unused(s, a, "generate");
    if (!bad && t->has_prompt == !!t->m.tokf[0])
        bad = kvs_errorf(s, "generate: give one of --prompt TEXT or --tokens FILE");
    if (!bad && t->temp < 0)
        bad = kvs_errorf(s, "generate: --temperature %g is negative (expected >= 0; 0 = greedy)", t->temp);
    if (!bad && !t->m.dir[0]) bad = kvs_model_load(s, NULL, "generate", NULL);   // says --model is required
    if (bad) {
        free(t);
        return -1;
    }
    cfg_origin(a, &t->m.cfg, reference, t->m.origin, sizeof t->m.origin);
    return model_run(s, "generate", generate_run, t, NULL);
}

// ---- capture ----
typedef struct {
    model_args m;
    char out[KVQ_PATH_LEN];
    long limit;   // --tokens N: the first N tokens of the text (0 = all)
} capture_task;

static int capture_run(kvs_session *s, void *task, kvq_progress *p)
{
    capture_task *ct = task;
    const char *text = ct->m.text[0] ? ct->m.text : NULL, *tokf = ct->m.tokf[0] ? ct->m.tokf : NULL;
    const kvq_config cfg = ct->m.cfg;
    kvq_model *m = NULL;
    kvq_artifacts *own = NULL;
    const kvq_artifacts *art;
    if (art_begin(s, &ct->m, "capture", &own, &art)) return -1;
    if (kvs_model_load(s, ct->m.dir, "capture", &m)) {
        art_end(s, own);
        return -1;
    }
    int32_t *tok = NULL;
    int n = 0, rc = -1;
    kvq_tok *tk = NULL;
    size_t nbytes = 0;
    if (text ? kvs_model_text_tokens(s, "capture", m, text, &tok, &n, &tk, &nbytes)
             : file_tokens(s, "capture", m, tokf, &tok, &n))
        goto out;
    bool per_byte = text != NULL && !tk;   // byte-level: a token is a byte
    if (ct->limit && ct->limit < n) n = (int)ct->limit;
    if (n < 2) {
        kvs_errorf(s, "capture: %d tokens (expected at least 2)", n);
        goto out;
    }
    const char *src = text ? text : tokf;
    const char *base = strrchr(src, '/');
    char source[KVQ_PATH_LEN + 48];
    snprintf(source, sizeof source, "%s, first %d %s", base ? base + 1 : src, n, per_byte ? "bytes" : "tokens");
    double bits = 0;
    double t0 = kvq_now_s();
    kvq_status st = kvq_model_capture(m, &cfg, art, tok, n, per_byte, source, ct->out, p, &bits);
    if (st) {
        rc = run_failed(s, "capture", st);
        goto out;
    }
    char label[256];
    kvs_model_cfg_label(&cfg, art, label, sizeof label);
    kvs_printf(s, "wrote %s: %d layers, %d heads, %d kv heads, head_dim %d, %d tokens, F16 (cache %s, %.1f s)", ct->out,
               m->cfg.n_layers, m->cfg.n_heads, m->cfg.n_kv_heads, m->cfg.head_dim, n, label, kvq_now_s() - t0);
    kvs_printf(s, "loss  %.4f %s", bits, per_byte ? "bits/byte" : "bits/token");
    rc = 0;
out:
    free(tok);
    kvq_tok_free(tk);
    kvq_model_free(m);
    art_end(s, own);
    return rc;
}

// The studio's default --out: capture-MODEL-TIME.safetensors in the state
// directory (else the current one), so `c` in the model view needs no name.
static void capture_default_out(const char *dir, char *out, size_t n)
{
    const char *name = strrchr(dir, '/');
    name = name && name[1] ? name + 1 : dir;
    char file[256];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    snprintf(file, sizeof file, "capture-%.80s-%04d%02d%02d-%02d%02d%02d.safetensors", name, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (!kvs_state_path(file, out, n)) snprintf(out, n, "%s", file);
}

int kvs_cmd_capture(kvs_session *s, kvs_args *a)
{
    capture_task *t = calloc(1, sizeof *t);
    if (!t) return kvs_errorf(s, "capture: out of memory");
    copy_opt(a, "text", t->m.text, sizeof t->m.text);
    copy_opt(a, "out", t->out, sizeof t->out);
    copy_opt(a, "artifacts", t->m.artdir, sizeof t->m.artdir);
    kvs_model_dir(s, a, t->m.dir, sizeof t->m.dir);
    const char *tokarg = kvs_opt_str(a, "tokens", NULL);
    bool reference;
    int bad = model_config(s, a, "capture", &t->m.cfg, &reference) || kvs_args_check_unused(s, a, "capture");
    if (!bad && !t->out[0] && s->ui) capture_default_out(t->m.dir, t->out, sizeof t->out);
    if (!bad && !t->out[0]) bad = kvs_errorf(s, "capture: --out TRACE.safetensors is required");
    // --tokens N limits the text; --tokens FILE gives token ids (non-byte-level models).
    if (!bad && tokarg) {
        char *end;
        errno = 0;
        t->limit = strtol(tokarg, &end, 10);
        if (errno || end == tokarg || *end) t->limit = 0, snprintf(t->m.tokf, sizeof t->m.tokf, "%s", tokarg);
        else if (t->limit < 2)
            bad = kvs_errorf(s, "capture: --tokens %s (expected a count >= 2 or a token file)", tokarg);
    }
    if (!bad && !t->m.text[0] && !t->m.tokf[0])
        bad = kvs_errorf(s, "capture: give --text FILE (or --tokens FILE of token ids)");
    if (!bad && t->m.text[0] && t->m.tokf[0])
        bad = kvs_errorf(s, "capture: give --text FILE or --tokens FILE, not both");
    if (!bad && !t->m.dir[0]) bad = kvs_model_load(s, NULL, "capture", NULL);   // says --model is required
    if (bad) {
        free(t);
        return -1;
    }
    char out[KVQ_PATH_LEN];
    snprintf(out, sizeof out, "%s", t->out);
    return model_run(s, "capture", capture_run, t, out);   // the studio opens the trace it wrote
}
