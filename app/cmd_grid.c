// cmd_grid.c — `grid`: the ppl of the session's model through methods x key
// bits at one value width, each cell bits/byte and KL against the fp16 cache
// (kvq_model_ppl). The studio's model view runs it on the worker thread and
// fills its table cell by cell (kvs_grid_run's callback); batch prints a row
// per cell. Calibrated methods use the session's set for that method.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cmds.h"
#include "label.h"
#include "model.h"
#include "progress.h"
#include "tok/tok.h"
#include "tui.h"


typedef struct {
    kvq_progress *p;
    int cell, n_cells;   // the cell running, of all
    char stage[64];
} grid_progress;

static bool grid_progress_fn(double f, const char *stage, double eta_s, void *user)
{
    (void)stage;
    (void)eta_s;
    grid_progress *gp = user;
    return kvq_progress_report(gp->p, (gp->cell + (f > 0 ? f : 0)) / gp->n_cells, gp->stage);
}

static const char *grid_cfg(kvs_session *s, const kvs_grid_spec *g, const kvq_config *base, int mi, int bi,
                            kvq_config *c, const kvq_artifacts **art)
{
    const kvq_method *me = kvq_method_find(g->methods[mi]);
    *c = *base;
    if (!me) return "unknown method";
    bool fixed = me->min_bits == me->max_bits;
    snprintf(c->method, sizeof c->method, "%s", me->name);
    c->bits = fixed ? me->min_bits : g->bits[bi];
    c->value_bits = g->value_bits;
    if (g->value_bits == 16) c->value_method[0] = 0;
    const char *why = kvq_config_fit_bits(c, !fixed, NULL);
    if (!why) why = kvq_config_check(c);
    kvs_art_slot *slot = kvs_session_find_art(s, c->method);   // only the method's own set
    *art = slot ? slot->art : kvs_model_session_art(s, c);
    if (!why && me->needs_calibration && !slot) why = "needs calibration (5 Calibrate, or load-artifacts)";
    return why;
}

int kvs_grid_run(kvs_session *s, const kvs_grid_spec *g, const kvq_config *base, kvq_progress *p,
                 kvs_grid_cell_fn cell, void *user)
{
    kvq_model *m = NULL;
    pthread_mutex_lock(&s->lock);   // the artifact sets stay put while the caches use them
    if (kvs_model_load(s, g->model_dir, "grid", &m)) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    int32_t *tok = NULL;
    int n = 0, rc = -1;
    kvq_tok *tk = NULL;
    size_t nbytes = 0;
    if (kvs_model_text_tokens(s, "grid", m, g->text, &tok, &n, &tk, &nbytes)) goto out;
    if (n < 2) {
        kvs_errorf(s, "grid: %s holds %d tokens (expected at least 2)", g->text, n);
        goto out;
    }
    size_t covered = tk ? kvs_model_scored_bytes(tk, tok, n, nbytes) : (size_t)n - 1;
    grid_progress gp = {.p = p};
    for (int mi = 0; mi < g->n_methods; mi++) {
        const kvq_method *me = kvq_method_find(g->methods[mi]);
        gp.n_cells += me && me->min_bits == me->max_bits ? 1 : g->n_bits;
    }
    kvq_progress sub = {.fn = grid_progress_fn, .user = &gp};
    kvq_progress_begin(p);
    rc = 0;
    for (int mi = 0; mi < g->n_methods && rc == 0; mi++) {
        const kvq_method *me = kvq_method_find(g->methods[mi]);
        int nb = me && me->min_bits == me->max_bits ? 1 : g->n_bits;
        for (int bi = 0; bi < nb && rc == 0; bi++, gp.cell++) {
            if (g->keep[mi][bi]) continue;
            kvs_grid_cell c = {.state = KVS_CELL_RUNNING, .bpb = NAN, .ref_bpb = NAN, .kl = NAN, .key_bits = NAN,
                               .value_bits = NAN};
            kvq_config cfg;
            const kvq_artifacts *art = NULL;
            const char *why = grid_cfg(s, g, base, mi, bi, &cfg, &art);
            kvs_model_cfg_label(&cfg, art, c.label, sizeof c.label);
            if (why) {
                c.state = KVS_CELL_FAILED;
                snprintf(c.err, sizeof c.err, "%s", why);
                cell(user, mi, bi, &c);
                continue;
            }
            cell(user, mi, bi, &c);
            snprintf(gp.stage, sizeof gp.stage, "%s k%d/v%d", cfg.method, cfg.bits, cfg.value_bits);
            kvq_ppl_result r;
            kvq_status st = kvq_model_ppl(m, &cfg, art, tok, n, KVS_MODEL_CHUNK, &sub, &r);
            if (st == KVQ_ERR_CANCELLED) {
                c.state = KVS_CELL_CANCELLED;
                rc = KVQ_ERR_CANCELLED;
            } else if (st) {
                c.state = KVS_CELL_FAILED;
                snprintf(c.err, sizeof c.err, "%s", kvq_last_error());
            } else {
                // bits per byte: the predictions' bits over the bytes they cover (byte-level: one each)
                double scale = covered ? (double)(n - 1) / covered : NAN;
                c.state = KVS_CELL_DONE;
                c.bpb = r.bits_per_token * scale;
                c.ref_bpb = r.ref_bits_per_token * scale;
                c.kl = r.kl_bits;
                c.key_bits = r.key_record_bits;
                c.value_bits = r.value_record_bits;
            }
            cell(user, mi, bi, &c);
        }
    }
out:
    free(tok);
    kvq_tok_free(tk);
    kvq_model_free(m);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

// Batch: one line per cell as it ends.
static void grid_print(void *user, int mi, int bi, const kvs_grid_cell *c)
{
    (void)mi;
    (void)bi;
    kvs_session *s = user;
    char f[4][32];
    if (c->state == KVS_CELL_FAILED) kvs_printf(s, "%-36s failed: %s", c->label, c->err);
    else if (c->state == KVS_CELL_DONE)
        kvs_printf(s, "%-36s %10s %10s %14s %16s", c->label, kvq_metric_fmt(KVQ_M_BITS_PER_BYTE, c->bpb, f[0], 32),
                   kvq_metric_fmt(KVQ_M_BITS_PER_BYTE, c->ref_bpb, f[1], 32),
                   kvq_metric_fmt(KVQ_M_NEXT_TOKEN_KL, c->kl, f[2], 32),
                   kvq_metric_fmt(KVQ_M_KEY_RECORD_BITS, c->key_bits, f[3], 32));
}

// A comma-separated list of at most max items into words (buf is cut up).
static int grid_list(char *buf, char **items, int max)
{
    int n = 0;
    for (char *save, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save))
        if (*w) {
            if (n == max) return -1;
            items[n++] = w;
        }
    return n;
}

int kvs_cmd_grid(kvs_session *s, kvs_args *a)
{
    kvs_grid_spec g = {.value_bits = s->cfg.value_bits};
    char mbuf[512], bbuf[128], *items[KVS_GRID_MAX_METHODS + 1];
    snprintf(mbuf, sizeof mbuf, "%s", kvs_opt_str(a, "methods", s->cfg.method));
    snprintf(bbuf, sizeof bbuf, "%s", kvs_opt_str(a, "bits", "2,3,4"));
    snprintf(g.text, sizeof g.text, "%s", kvs_opt_str(a, "text", KVS_GRID_TEXT));
    kvs_model_dir(s, a, g.model_dir, sizeof g.model_dir);
    g.value_bits = (int)kvs_opt_int(a, "value-bits", s->cfg.value_bits);
    if (kvs_args_check_unused(s, a, "grid")) return -1;
    if (!g.model_dir[0]) return kvs_model_load(s, NULL, "grid", NULL);   // says --model is required
    g.n_methods = grid_list(mbuf, items, KVS_GRID_MAX_METHODS);
    if (g.n_methods < 1)
        return kvs_errorf(s, "grid: --methods: expected 1 to %d comma-separated methods", KVS_GRID_MAX_METHODS);
    for (int i = 0; i < g.n_methods; i++) {
        const kvq_method *me;
        if (kvq_method_lookup(items[i], &me)) return kvs_errorf(s, "grid: --methods: %s", kvq_last_error());
        snprintf(g.methods[i], sizeof g.methods[i], "%s", me->name);
    }
    g.n_bits = grid_list(bbuf, items, KVS_GRID_MAX_BITS);   // the parser checked each is in 1..16
    if (g.n_bits < 1) return kvs_errorf(s, "grid: --bits: expected 1 to %d comma-separated widths", KVS_GRID_MAX_BITS);
    for (int i = 0; i < g.n_bits; i++) g.bits[i] = atoi(items[i]);
    if (g.value_bits != 2 && g.value_bits != 3 && g.value_bits != 4 && g.value_bits != 8 && g.value_bits != 16)
        return kvs_errorf(s, "grid: --value-bits %d (expected 2, 3, 4, 8 or 16)", g.value_bits);
    if (s->ui) return kvs_studio_grid(s, &g);
    kvs_printf(s, "grid on %s, text %s, value bits %d", g.model_dir, g.text, g.value_bits);
    kvs_printf(s, "%-36s %10s %10s %14s %16s", "cache", kvq_metrics[KVQ_M_BITS_PER_BYTE].name, "fp16",
               kvq_metrics[KVQ_M_NEXT_TOKEN_KL].name, kvq_metrics[KVQ_M_KEY_RECORD_BITS].name);
    kvs_tty_progress tp;
    int rc = kvs_grid_run(s, &g, &s->cfg, kvs_tty_progress_begin(&tp, s, "grid"), grid_print, s);
    kvs_tty_progress_end(&tp);
    return rc ? -1 : 0;
}
