// gen.c — text generation through the quantized caches on the worker
// thread, for the dashboard: the model (engine/model.h) runs the prompt,
// then samples token by token with every observer attached; after each
// token the worker copies the observers' report and the text under the job
// mutex, and the dashboard draws that copy.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "model.h"
#include "tok/tok.h"
#include "replay.h"
#include "rng.h"
#include "ui.h"

#define DEFAULT_MODEL "sample_data/refmodel"
#define DEFAULT_PROMPT "def fibonacci(n):\n"
#define MAX_CHUNK 256

typedef struct {
    kvs_ui *ui;
    char dir[KVQ_PATH_LEN];
    char prompt[256];
    int max_tokens;
    double temperature;
    kvq_config cfg;
} gen_job;

// Worker side: append bytes to the shared text (caller holds job.mu).
static void text_append(kvs_gen_state *g, const char *b, int n)
{
    if (n >= KVS_GEN_TEXT) {
        b += n - (KVS_GEN_TEXT - 1);
        n = KVS_GEN_TEXT - 1;
    }
    if (g->text_len + n >= KVS_GEN_TEXT) {   // drop the oldest bytes
        int drop = g->text_len + n - (KVS_GEN_TEXT - 1);
        memmove(g->text, g->text + drop, (size_t)(g->text_len - drop));
        g->text_len -= drop;
    }
    memcpy(g->text + g->text_len, b, (size_t)n);
    g->text_len += n;
    g->text[g->text_len] = 0;
}

static int sample(const float *logits, int vocab, double temp, kvq_rng *rng)
{
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i;
    if (temp <= 0) return best;
    double sum = 0, u;
    for (int i = 0; i < vocab; i++) sum += exp((logits[i] - logits[best]) / temp);
    u = kvq_rng_uniform(rng) * sum;
    for (int i = 0; i < vocab; i++) {
        u -= exp((logits[i] - logits[best]) / temp);
        if (u <= 0) return i;
    }
    return best;
}

static void publish(kvs_job *j, kvq_runner *r, kvq_observers *obs, const kvq_model *m, int total)
{
    kvs_gen_state *g = &((gen_job *)j->arg)->ui->gen;
    kvq_replay_snapshot *sn = g->snap;
    kvq_cache_set *cs = kvq_runner_caches(r);
    const kvq_model_config *c = &m->cfg;
    pthread_mutex_lock(&j->mu);
    sn->pos = kvq_runner_pos(r);
    sn->total = total;
    sn->n_layers = c->n_layers;
    sn->bytes = cs ? kvq_cache_set_bytes(cs) : 0;
    sn->fp16_bytes = (size_t)sn->pos * (size_t)c->n_layers * (size_t)c->n_kv_heads * (size_t)c->head_dim * 4;
    if (cs && cs->n_layers > 0) {
        sn->key_bpc = 8.0 * (double)kvq_cache_key_bpv(cs->layers[0]) / c->head_dim;
        sn->value_bpc = 8.0 * (double)kvq_cache_value_bpv(cs->layers[0]) / c->head_dim;
    }
    kvq_observers_report(obs, &sn->report);
    g->have_snap = true;
    pthread_mutex_unlock(&j->mu);
}

static int gen_run(kvs_job *j)
{
    gen_job *a = j->arg;
    kvs_gen_state *g = &a->ui->gen;
    kvq_model *m = NULL;
    kvq_runner *r = NULL;
    kvq_observers *obs = NULL;
    float *logits = NULL;
    int32_t bytes[256], *toks = bytes, *enc = NULL;
    kvq_tok *tk = NULL;   // the model directory's tokenizer.json, when it has one
    kvs_job_progress(0, "loading model", -1, j);
    pthread_mutex_lock(&j->s->lock);   // the artifacts stay put while the caches use them
    kvq_status st = kvq_model_load(a->dir, &m);
    if (!st) st = kvq_runner_new(m, &a->cfg, j->s->art, MAX_CHUNK, &r);
    if (!st) {
        kvq_observers_opts oo;
        kvq_observers_opts_default(&oo);
        oo.which = KVQ_OBS_ALL;
        st = kvq_observers_new(&oo, m->cfg.n_layers, m->cfg.n_kv_heads, m->cfg.head_dim, &obs);
    }
    if (!st) st = kvq_runner_observe(r, obs);
    if (!st && !(logits = malloc(sizeof(float) * (size_t)m->cfg.vocab_size)))
        st = kvq_error(KVQ_ERR_NOMEM, "generate: out of memory");
    int n = 0;
    if (!st && kvq_tok_present(a->dir) && !(st = kvq_tok_load(a->dir, &tk))) {
        st = kvq_tok_encode(tk, a->prompt, strlen(a->prompt), true, &enc, &n);
        for (int i = 0; !st && i < n; i++)
            if (enc[i] >= m->cfg.vocab_size)
                st = kvq_error(KVQ_ERR_FORMAT, "%s/tokenizer.json gives token %d, outside the model's vocabulary",
                               a->dir, enc[i]);
        toks = enc;
    } else {
        for (const unsigned char *p = (const unsigned char *)a->prompt; *p && n < 256; p++)
            toks[n++] = *p < m->cfg.vocab_size ? *p : 0;   // byte-level tokens
    }
    if (!st && n == 0) st = kvq_error(KVQ_ERR_ARG, "generate: empty prompt");
    if (!st) {
        pthread_mutex_lock(&j->mu);
        text_append(g, a->prompt, (int)strlen(a->prompt));
        pthread_mutex_unlock(&j->mu);
        kvs_job_progress(0, "prompt", -1, j);
        st = kvq_runner_forward(r, toks, n, false, logits);
    }
    kvq_rng rng;
    kvq_rng_seed(&rng, a->cfg.seed);
    for (int i = 0; !st && i < a->max_tokens; i++) {
        int32_t t = sample(logits, m->cfg.vocab_size, a->temperature, &rng);
        char b[256];
        int nb = tk ? (int)kvq_tok_piece(tk, t, false, b, sizeof b) : (b[0] = (char)(t < 256 ? t : '?'), 1);
        pthread_mutex_lock(&j->mu);
        text_append(g, b, nb < (int)sizeof b ? nb : (int)sizeof b);
        pthread_mutex_unlock(&j->mu);
        st = kvq_runner_forward(r, &t, 1, false, logits);
        if (!st) publish(j, r, obs, m, n + a->max_tokens);
        if (!st && kvs_job_progress((double)(i + 1) / a->max_tokens, "generating", -1, j))
            st = kvq_error(KVQ_ERR_CANCELLED, "generation cancelled");
    }
    pthread_mutex_unlock(&j->s->lock);
    free(logits);
    free(enc);
    kvq_tok_free(tk);
    kvq_runner_free(r);
    kvq_observers_free(obs);
    kvq_model_free(m);
    return st;
}

static void gen_done(kvs_ui *ui, kvs_job *j)
{
    gen_job *a = j->arg;
    ui->gen.running = false;
    if (j->status == KVQ_ERR_CANCELLED) kvs_ui_set_status(ui, false, "generation stopped");
    else if (j->status) kvs_ui_set_status(ui, true, "generate: %s", j->msg);
    else kvs_ui_set_status(ui, false, "generated %d tokens from %s (%.1f s)", a->max_tokens, a->dir,
                           j->t_end - j->t_start);
    free(a);
    j->arg = NULL;
}

int kvs_gen_start(kvs_ui *ui)
{
    kvs_gen_state *g = &ui->gen;
    const char *dir = g->model_dir[0] ? g->model_dir : ui->s->model_dir[0] ? ui->s->model_dir : DEFAULT_MODEL;
    struct stat sb;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
        kvs_ui_set_status(ui, true, "generate: no model directory '%s' (start the studio on a model dir)", dir);
        return -1;
    }
    if (!g->snap && !(g->snap = calloc(1, sizeof(kvq_replay_snapshot)))) return -1;
    gen_job *a = calloc(1, sizeof *a);
    if (!a) return -1;
    a->ui = ui;
    snprintf(a->dir, sizeof a->dir, "%s", dir);
    snprintf(a->prompt, sizeof a->prompt, "%s", g->prompt[0] ? g->prompt : DEFAULT_PROMPT);
    a->max_tokens = g->max_tokens > 0 ? g->max_tokens : 256;
    a->temperature = g->temperature > 0 ? g->temperature : 0.7;
    a->cfg = ui->s->cfg;
    if (kvs_job_busy(ui)) {
        free(a);
        kvs_ui_set_status(ui, true, "generate: busy with %s (Esc cancels it)", ui->job.name);
        return -1;
    }
    g->text_len = 0;
    g->text[0] = 0;
    g->have_snap = false;
    memset(g->snap, 0, sizeof(kvq_replay_snapshot));
    if (kvs_job_start(ui, "generate", gen_run, gen_done, a)) {
        free(a);
        return -1;
    }
    g->active = g->running = true;
    ui->dash.playing = false;
    return 0;
}

void kvs_gen_free(kvs_ui *ui)
{
    free(ui->gen.snap);
    ui->gen.snap = NULL;
    ui->gen.have_snap = false;
}
