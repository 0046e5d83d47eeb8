// model.c — the model view: the session's model (the directory the studio
// was opened on) as a first-class citizen. Its shape from config.json and
// the safetensors headers; a ppl / KL grid over methods x key bits at one
// value width (each cell one ppl run against the fp16 cache, filled in as
// the worker computes it, Esc cancels); bits/byte against the key record
// bits of the cache, beside the trace-level rate-distortion plot; and "capture a
// trace from this model", which opens the captured trace in the session.
// Every action goes through the command language (`grid`, `capture`,
// `method`...), so keys, the prompt and scripts do the same thing.
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "label.h"
#include "model.h"
#include "safetensors.h"
#include "tok/tok.h"
#include "ui.h"


// ---- the model's shape ----
// Parameters as the checkpoint stores them: the elements of every tensor
// in the directory's safetensors files (headers only; nothing is loaded).
static double count_params(const char *dir, int *n_files)
{
    DIR *d = opendir(dir);
    double total = 0;
    *n_files = 0;
    if (!d) return NAN;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors")) continue;
        char path[KVQ_PATH_LEN + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        kvq_st *st;
        if (kvq_st_open(path, &st)) continue;
        for (int i = 0; i < st->n_tensors; i++) total += (double)st->tensors[i].nelem;
        kvq_st_close(st);
        ++*n_files;
    }
    closedir(d);
    kvq_clear_error();
    return total;
}

static void info_line(kvs_model_state *ms, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void info_line(kvs_model_state *ms, const char *key, const char *fmt, ...)
{
    if (ms->n_info >= KVS_MODEL_INFO) return;
    char v[112];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    snprintf(ms->info[ms->n_info++], sizeof ms->info[0], "%-9s %s", key, v);
}

static void read_info(kvs_ui *ui)
{
    kvs_model_state *ms = &ui->model;
    const char *dir = ui->s->model_dir;
    if (!strcmp(ms->info_dir, dir)) return;
    snprintf(ms->info_dir, sizeof ms->info_dir, "%s", dir);
    ms->n_info = 0;
    ms->info_err[0] = 0;
    if (!dir[0]) return;
    kvq_model_config *c = calloc(1, sizeof *c);   // RoPE tables: large for the stack
    if (!c) return;
    if (kvq_model_config_load(dir, c)) {
        snprintf(ms->info_err, sizeof ms->info_err, "%s", kvq_last_error());
        free(c);
        return;
    }
    const char *name = strrchr(dir, '/');
    info_line(ms, "model", "%s", name && name[1] ? name + 1 : dir);
    info_line(ms, "arch", "%s (%s)", c->arch->model_type, c->arch->label);
    info_line(ms, "layers", "%d", c->n_layers);
    info_line(ms, "heads", "%d query, %d kv", c->n_heads, c->n_kv_heads);
    info_line(ms, "head_dim", "%d", c->head_dim);
    info_line(ms, "hidden", "%d, MLP %d", c->hidden_size, c->intermediate_size);
    int nf;
    double np = count_params(dir, &nf);
    if (isfinite(np) && nf) info_line(ms, "params", "%.1fM (%d file%s)", np / 1e6, nf, nf == 1 ? "" : "s");
    else info_line(ms, "params", "n/a (no safetensors file readable)");
    if (kvq_tok_present(dir)) {
        kvq_tok *tk;
        if (kvq_tok_load(dir, &tk)) info_line(ms, "tokenizer", "tokenizer.json unreadable: %.60s", kvq_last_error());
        else info_line(ms, "tokenizer", "tokenizer.json, %d ids (vocab %d)", kvq_tok_vocab_size(tk), c->vocab_size);
        if (tk) kvq_tok_free(tk);
    } else if (c->vocab_size == 256) {
        info_line(ms, "tokenizer", "bytes (vocab 256)");
    } else {
        info_line(ms, "tokenizer", "none: vocab %d, give token ids (--tokens)", c->vocab_size);
    }
    info_line(ms, "rope", "theta %g, %s", c->rope_theta, c->rope_type[0] ? c->rope_type : "default");
    if (c->sliding_window) info_line(ms, "window", "%d tokens (sliding layers)", c->sliding_window);
    info_line(ms, "context", "%d positions", c->max_position_embeddings);
    kvq_clear_error();
    free(c);
}

// ---- the grid job ----
typedef struct {
    kvs_ui *ui;
    kvs_grid_spec g;
    kvq_config base;
} grid_job;

static void on_cell(void *user, int mi, int bi, const kvs_grid_cell *c)
{
    kvs_job *j = user;
    kvs_ui *ui = ((grid_job *)j->arg)->ui;
    pthread_mutex_lock(&j->mu);
    ui->model.cells[mi][bi] = *c;
    pthread_mutex_unlock(&j->mu);
}

static int grid_job_run(kvs_job *j)
{
    grid_job *gj = j->arg;
    kvq_progress p = {.fn = kvs_job_progress, .user = j};
    kvq_progress_begin(&p);
    int rc = kvs_grid_run(j->s, &gj->g, &gj->base, &p, on_cell, j);
    return rc == KVQ_ERR_CANCELLED ? KVQ_ERR_CANCELLED : rc ? KVQ_ERR_ARG : KVQ_OK;
}

static void grid_job_done(kvs_ui *ui, kvs_job *j)
{
    kvs_model_state *ms = &ui->model;
    int done = 0;
    for (int m = 0; m < KVS_GRID_MAX_METHODS; m++)
        for (int b = 0; b < KVS_GRID_MAX_BITS; b++) done += ms->cells[m][b].state == KVS_CELL_DONE;
    if (j->status == KVQ_ERR_CANCELLED)
        kvs_ui_set_status(ui, false, "grid cancelled after %.1f s: %d cell%s kept", j->t_end - j->t_start, done,
                          done == 1 ? "" : "s");
    else if (!j->status)
        kvs_ui_set_status(ui, false, "grid done: %d cell%s in %.1f s", done, done == 1 ? "" : "s",
                          j->t_end - j->t_start);
    free(j->arg);
    j->arg = NULL;
}

// Configs that differ only where every cell sets its own (method and widths).
static bool same_base(const kvq_config *a, const kvq_config *b)
{
    kvq_config x = *a, y = *b;
    char la[512], lb[512];
    x.bits = y.bits = x.value_bits = y.value_bits = 0;
    strcpy(x.method, "fp16"), strcpy(y.method, "fp16");
    x.value_method[0] = y.value_method[0] = 0;
    kvq_config_label(&x, "", la, sizeof la);
    kvq_config_label(&y, "", lb, sizeof lb);
    return !strcmp(la, lb);
}

static bool same_grid(const kvs_grid_spec *a, const kvs_grid_spec *b)
{
    if (a->n_methods != b->n_methods || a->n_bits != b->n_bits || a->value_bits != b->value_bits ||
        strcmp(a->text, b->text) || strcmp(a->model_dir, b->model_dir))
        return false;
    for (int m = 0; m < a->n_methods; m++)
        if (strcmp(a->methods[m], b->methods[m])) return false;
    for (int i = 0; i < a->n_bits; i++)
        if (a->bits[i] != b->bits[i]) return false;
    return true;
}

int kvs_studio_grid(kvs_session *s, const kvs_grid_spec *g)
{
    kvs_ui *ui = s->ui;
    if (!ui) return kvs_errorf(s, "grid: only available in the studio");
    if (kvs_job_busy(ui)) return kvs_errorf(s, "grid: busy with %s (Esc cancels it)", ui->job.name);
    grid_job *gj = calloc(1, sizeof *gj);
    if (!gj) return kvs_errorf(s, "grid: out of memory");
    gj->ui = ui;
    gj->g = *g;
    gj->base = s->cfg;
    kvs_model_state *ms = &ui->model;
    // the same grid on the same config again: what is computed stays (a
    // cancelled grid resumes), the rest is computed
    bool same = ms->have_grid && same_base(&s->cfg, &ms->base) && same_grid(&ms->grid, g);
    for (int m = 0; m < KVS_GRID_MAX_METHODS; m++)
        for (int b = 0; b < KVS_GRID_MAX_BITS; b++) {
            gj->g.keep[m][b] = same && ms->cells[m][b].state == KVS_CELL_DONE;
            if (!gj->g.keep[m][b]) ms->cells[m][b] = (kvs_grid_cell){.state = KVS_CELL_EMPTY};
        }
    ms->grid = gj->g;
    ms->base = s->cfg;
    ms->have_grid = true;
    if (ms->cur_m >= g->n_methods) ms->cur_m = 0;
    if (ms->cur_b >= g->n_bits) ms->cur_b = 0;
    kvs_ui_switch(ui, "model");
    if (kvs_job_start(ui, "ppl grid", grid_job_run, grid_job_done, gj)) {
        free(gj);
        return -1;
    }
    return 0;
}

// ---- drawing ----
static bool fixed_width(const char *method)
{
    const kvq_method *m = kvq_method_find(method);
    return m && m->min_bits == m->max_bits;
}

static void draw_info(kvs_ui *ui, kvs_rect r)
{
    kvs_model_state *ms = &ui->model;
    kvs_w_box(ui, r, "model");
    kvs_rect in = kvs_w_inner(r);
    if (!ui->s->model_dir[0]) {
        kvs_w_text(ui, in.y, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM), "no model in this session:");
        kvs_w_text(ui, in.y + 1, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM), "kvstudio MODEL_DIR opens one");
        kvs_w_text(ui, in.y + 2, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM), "(e.g. sample_data/refmodel)");
        return;
    }
    if (ms->info_err[0]) {
        kvs_w_text(ui, in.y, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_BAD), "%s", ms->info_err);
        return;
    }
    for (int i = 0; i < ms->n_info && i < in.h; i++)
        kvs_w_text(ui, in.y + i, in.x + 1, in.w - 2, i ? A_NORMAL : kvs_attr(ui, KVS_C_TITLE), "%s", ms->info[i]);
}

#define CELL_W 11
#define METHOD_W 18

static void draw_grid(kvs_ui *ui, kvs_rect r, kvs_grid_cell (*cells)[KVS_GRID_MAX_BITS])
{
    kvs_model_state *ms = &ui->model;
    const kvs_grid_spec *g = &ms->grid;
    char title[256];
    const char *tb = strrchr(g->text, '/');
    double ref = NAN;
    for (int m = 0; m < g->n_methods; m++)
        for (int b = 0; b < g->n_bits; b++)
            if (cells[m][b].state == KVS_CELL_DONE) ref = cells[m][b].ref_bpb;
    char rf[48] = ", fp16 ";
    if (isfinite(ref)) kvq_metric_fmt_unit(KVQ_M_BITS_PER_BYTE, ref, rf + 7, sizeof rf - 7);
    else rf[0] = 0;
    snprintf(title, sizeof title, "%s (top) and %s vs fp16: %.80s, values v%d%s", kvq_metrics[KVQ_M_BITS_PER_BYTE].name,
             kvq_metrics[KVQ_M_NEXT_TOKEN_KL].name, tb ? tb + 1 : g->text, g->value_bits, rf);
    kvs_w_box(ui, r, ms->have_grid ? title : "ppl / KL vs fp16");
    kvs_rect in = kvs_w_inner(r);
    if (!ms->have_grid) {
        const char *lines[] = {
            "Enter: bits/byte and next-token KL against the fp16 cache for the",
            "config's method at key bits 2, 3, 4 (values: the config's width),",
            "one ppl run of the model per cell, on " KVS_GRID_TEXT ".",
            "m adds the config's method as a row, v cycles the value bits,",
            "`grid --methods a,b --bits 2,4 --text FILE` chooses freely.",
        };
        for (int i = 0; i < 5 && i < in.h; i++)
            kvs_w_text(ui, in.y + i, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM), "%s", lines[i]);
        return;
    }
    attr_t dim = kvs_attr(ui, KVS_C_DIM);
    kvs_w_text(ui, in.y, in.x + 1, METHOD_W, kvs_attr(ui, KVS_C_TITLE), "%-*s", METHOD_W, "method \\ key bits");
    for (int b = 0; b < g->n_bits; b++)
        kvs_w_text(ui, in.y, in.x + 1 + METHOD_W + b * CELL_W, CELL_W, kvs_attr(ui, KVS_C_TITLE), "%*s k%-2d",
                   CELL_W - 4, "", g->bits[b]);
    int y = in.y + 1;
    for (int m = 0; m < g->n_methods && y + 1 < in.y + in.h; m++, y += 2) {
        bool fixed = fixed_width(g->methods[m]);
        kvs_w_text(ui, y, in.x + 1, METHOD_W, A_NORMAL, "%-*.*s", METHOD_W, METHOD_W - 1, g->methods[m]);
        kvs_w_text(ui, y + 1, in.x + 1, METHOD_W, dim, "  %-*s", METHOD_W - 2,
                   fixed ? "(fixed width)" : kvq_metrics[KVQ_M_NEXT_TOKEN_KL].name);
        for (int b = 0; b < g->n_bits; b++) {
            const kvs_grid_cell *c = &cells[m][b];
            int x = in.x + 1 + METHOD_W + b * CELL_W;
            bool cur = m == ms->cur_m && b == ms->cur_b;
            attr_t a = cur ? kvs_attr(ui, KVS_C_SEL) : A_NORMAL;
            char l1[32] = "", l2[32] = "";
            if (fixed && b > 0) {
                snprintf(l1, sizeof l1, "-");
            } else if (c->state == KVS_CELL_DONE) {
                kvq_metric_fmt(KVQ_M_BITS_PER_BYTE, c->bpb, l1, sizeof l1);
                kvq_metric_fmt(KVQ_M_NEXT_TOKEN_KL, c->kl, l2, sizeof l2);
            } else {
                static const char *const word[] = {[KVS_CELL_EMPTY] = ".", [KVS_CELL_RUNNING] = "running",
                                                   [KVS_CELL_FAILED] = "failed", [KVS_CELL_CANCELLED] = "cancelled"};
                snprintf(l1, sizeof l1, "%s", word[c->state]);
                if (c->state == KVS_CELL_RUNNING || c->state == KVS_CELL_FAILED)
                    a = cur ? a : kvs_attr(ui, c->state == KVS_CELL_FAILED ? KVS_C_BAD : KVS_C_WARN);
            }
            kvs_w_text(ui, y, x, CELL_W, a, "%*s ", CELL_W - 1, l1);
            kvs_w_text(ui, y + 1, x, CELL_W, cur ? a : dim, "%*s ", CELL_W - 1, l2);
        }
    }
    // the cursor cell in full: its config, what the cache holds, or why it failed
    const kvs_grid_cell *c = &cells[ms->cur_m][ms->cur_b];
    int yb = in.y + in.h - 1;
    if (yb <= y) return;
    char kb[64], vb[64];
    if (c->state == KVS_CELL_DONE)
        kvs_w_text(ui, yb, in.x + 1, in.w - 2, A_NORMAL, "%s: %s, %s  (s: use it)", c->label,
                   kvq_metric_fmt_named(KVQ_M_KEY_RECORD_BITS, c->key_bits, kb, sizeof kb),
                   kvq_metric_fmt_named(KVQ_M_VALUE_RECORD_BITS, c->value_bits, vb, sizeof vb));
    else if (c->state == KVS_CELL_FAILED)
        kvs_w_text(ui, yb, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_BAD), "%s: %s", c->label, c->err);
}

// bits/byte against the key bits the cache holds: one curve per method.
static void draw_model_plot(kvs_ui *ui, kvs_rect r, kvs_grid_cell (*cells)[KVS_GRID_MAX_BITS])
{
    const kvs_grid_spec *g = &ui->model.grid;
    const kvq_metric *xm = &kvq_metrics[KVQ_M_KEY_RECORD_BITS], *ym = &kvq_metrics[KVQ_M_BITS_PER_BYTE];
    char title[160];
    snprintf(title, sizeof title, "model: %s vs %s, one curve per method%s", ym->name, xm->name,
             ui->model.have_grid ? (g->value_bits == 16 ? ", fp16 values" : ", quantized values") : "");
    kvs_w_box(ui, r, title);
    kvs_rect in = kvs_w_inner(r);
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY, ref = NAN;
    int n = 0;
    for (int m = 0; ui->model.have_grid && m < g->n_methods; m++)
        for (int b = 0; b < g->n_bits; b++) {
            const kvs_grid_cell *c = &cells[m][b];
            if (c->state != KVS_CELL_DONE || !isfinite(c->key_bits) || !isfinite(c->bpb)) continue;
            x0 = fmin(x0, c->key_bits), x1 = fmax(x1, c->key_bits);
            y0 = fmin(y0, fmin(c->bpb, c->ref_bpb)), y1 = fmax(y1, fmax(c->bpb, c->ref_bpb));
            ref = c->ref_bpb;
            n++;
        }
    if (!n || in.h < 5 || in.w < 30) {
        kvs_w_text(ui, in.y + 1, in.x + 2, in.w - 4, kvs_attr(ui, KVS_C_DIM), "%s",
                   "no grid cells yet: Enter computes the grid above");
        return;
    }
    double px = (x1 - x0) * 0.05, py = (y1 - y0) * 0.08;
    if (!(px > 0)) px = 0.5;
    if (!(py > 0)) py = fabs(y0) * 0.01 + 1e-3;
    int legend_w = in.w > 70 ? 24 : 0;
    static kvs_plot p;   // large dot buffers: keep off the stack
    kvs_plot_init(&p, (kvs_rect){in.y + 1, in.x + 9, in.h - 3, in.w - 9 - legend_w - 1}, ui->utf8, x0 - px, x1 + px,
                  y0 - py, y1 + py);
    for (int m = 0; m < g->n_methods; m++) {
        double px_[KVS_GRID_MAX_BITS], py_[KVS_GRID_MAX_BITS];
        int k = 0;
        for (int b = 0; b < g->n_bits; b++) {   // --bits may come in any order: the curve goes by held bits
            const kvs_grid_cell *c = &cells[m][b];
            if (c->state != KVS_CELL_DONE || !isfinite(c->key_bits)) continue;
            int i = k++;
            for (; i > 0 && px_[i - 1] > c->key_bits; i--) px_[i] = px_[i - 1], py_[i] = py_[i - 1];
            px_[i] = c->key_bits, py_[i] = c->bpb;
        }
        for (int i = 0; i < k; i++) {
            kvs_plot_point(&p, px_[i], py_[i], m);
            if (i) kvs_plot_line(&p, px_[i - 1], py_[i - 1], px_[i], py_[i], m);
        }
    }
    int rs = g->n_methods;   // the fp16 reference: a level line in the next series colour
    if (isfinite(ref)) kvs_plot_line(&p, x0 - px, ref, x1 + px, ref, rs);
    char xl[64], yl[64];
    snprintf(xl, sizeof xl, "%s (%s)", xm->name, xm->unit);
    snprintf(yl, sizeof yl, "%s", ym->name);
    kvs_plot_draw(ui, &p, xl, yl);
    for (int m = 0; legend_w && m < g->n_methods && m < in.h - 1; m++)
        kvs_w_text(ui, in.y + 1 + m, in.x + in.w - legend_w, legend_w,
                   kvs_attr(ui, (kvs_color)(KVS_C_S1 + m % KVS_N_SERIES)), "%s %.19s",
                   ui->utf8 ? "\xe2\x94\x81\xe2\x94\x81" : "--", g->methods[m]);
    char rf[32];
    if (legend_w && isfinite(ref) && rs < in.h - 1)
        kvs_w_text(ui, in.y + 1 + rs, in.x + in.w - legend_w, legend_w,
                   kvs_attr(ui, (kvs_color)(KVS_C_S1 + rs % KVS_N_SERIES)), "%s fp16 %s",
                   ui->utf8 ? "\xe2\x94\x81\xe2\x94\x81" : "--", kvq_metric_fmt(KVQ_M_BITS_PER_BYTE, ref, rf, sizeof rf));
}

static void model_draw(kvs_ui *ui, kvs_rect r)
{
    read_info(ui);
    kvs_model_state *ms = &ui->model;
    // the worker writes cells under job.mu: draw from a copy
    static kvs_grid_cell cells[KVS_GRID_MAX_METHODS][KVS_GRID_MAX_BITS];
    pthread_mutex_lock(&ui->job.mu);
    memcpy(cells, ms->cells, sizeof cells);
    pthread_mutex_unlock(&ui->job.mu);
    int iw = r.w >= 120 ? 46 : 34;
    int rows = ms->have_grid ? 3 + 2 * ms->grid.n_methods + 1 : 8;
    int th = rows > 13 ? rows : 13;
    if (th > r.h / 2 + 2) th = r.h / 2 + 2;
    draw_info(ui, (kvs_rect){r.y, r.x, th, iw});
    draw_grid(ui, (kvs_rect){r.y, r.x + iw, th, r.w - iw}, cells);
    int ph = r.h - th, half = r.w / 2;
    if (ph < 6) return;
    kvs_plots_draw_rd(ui, (kvs_rect){r.y + th, r.x, ph, half});
    draw_model_plot(ui, (kvs_rect){r.y + th, r.x + half, ph, r.w - half}, cells);
}

// ---- keys: each one a command line ----
static void exec_grid(kvs_ui *ui, const kvs_grid_spec *g)
{
    char line[1024 + KVQ_PATH_LEN], *p = line;
    size_t n = sizeof line;
    int w = snprintf(p, n, "grid --methods ");
    for (int m = 0; m < g->n_methods; m++) w += snprintf(p + w, n - w, "%s%s", m ? "," : "", g->methods[m]);
    w += snprintf(p + w, n - w, " --bits ");
    for (int b = 0; b < g->n_bits; b++) w += snprintf(p + w, n - w, "%s%d", b ? "," : "", g->bits[b]);
    snprintf(p + w, n - w, " --value-bits %d --text '%s'", g->value_bits, g->text);
    kvs_ui_exec(ui, line);
}

// The grid asked for last, or the default one around the session's config.
static kvs_grid_spec current_spec(kvs_ui *ui)
{
    kvs_model_state *ms = &ui->model;
    if (ms->have_grid) return ms->grid;
    kvs_grid_spec g = {.n_bits = 3, .bits = {2, 3, 4}, .value_bits = ui->s->cfg.value_bits, .n_methods = 1};
    const char *m = strcmp(ui->s->cfg.method, "fp16") ? ui->s->cfg.method : "turboquant_mse";
    snprintf(g.methods[0], sizeof g.methods[0], "%s", m);
    snprintf(g.text, sizeof g.text, "%s", KVS_GRID_TEXT);
    return g;
}

static int k_run(kvs_ui *ui, int key)
{
    (void)key;
    kvs_grid_spec g = current_spec(ui);
    exec_grid(ui, &g);
    return KVS_KEY_REDRAW;
}

// A new grid spec; rows that stay keep their cells (Enter then computes the
// rest). from[m]: the old row of new row m, -1 for a new one.
static bool respec(kvs_ui *ui, const kvs_grid_spec *g, const int *from)
{
    kvs_model_state *ms = &ui->model;
    if (kvs_job_busy(ui)) {
        kvs_ui_set_status(ui, true, "grid: busy with %s (Esc cancels it)", ui->job.name);
        return false;
    }
    static kvs_grid_cell old[KVS_GRID_MAX_METHODS][KVS_GRID_MAX_BITS];
    memcpy(old, ms->cells, sizeof old);
    memset(ms->cells, 0, sizeof ms->cells);
    for (int m = 0; from && m < g->n_methods; m++)
        if (from[m] >= 0 && ms->have_grid) memcpy(ms->cells[m], old[from[m]], sizeof ms->cells[m]);
    if (!ms->have_grid) ms->base = ui->s->cfg;
    ms->grid = *g;
    ms->have_grid = true;
    return true;
}

static int k_value_bits(kvs_ui *ui, int key)
{
    (void)key;
    static const int widths[] = {16, 8, 4, 3, 2};
    kvs_grid_spec g = current_spec(ui);
    int i = 0;
    while (i < 5 && widths[i] != g.value_bits) i++;
    g.value_bits = widths[(i + 1) % 5];
    if (!respec(ui, &g, NULL)) return KVS_KEY_REDRAW;   // every cell changes
    kvs_ui_set_status(ui, false, "grid values v%d: Enter computes it", g.value_bits);
    return KVS_KEY_REDRAW;
}

static int k_add_method(kvs_ui *ui, int key)
{
    (void)key;
    kvs_grid_spec g = current_spec(ui);
    const char *m = ui->s->cfg.method;
    for (int i = 0; i < g.n_methods; i++)
        if (!strcmp(g.methods[i], m)) {
            kvs_ui_set_status(ui, false, "grid: %s is a row already (choose another method in the lab, 2)", m);
            return KVS_KEY_REDRAW;
        }
    if (g.n_methods == KVS_GRID_MAX_METHODS) {
        kvs_ui_set_status(ui, true, "grid: %d rows at most (d deletes the cursor's)", KVS_GRID_MAX_METHODS);
        return KVS_KEY_REDRAW;
    }
    int from[KVS_GRID_MAX_METHODS];
    for (int i = 0; i < g.n_methods; i++) from[i] = i;
    from[g.n_methods] = -1;
    snprintf(g.methods[g.n_methods++], sizeof g.methods[0], "%s", m);
    if (respec(ui, &g, from)) kvs_ui_set_status(ui, false, "grid: row %s added; Enter computes its cells", m);
    return KVS_KEY_REDRAW;
}

static int k_delete(kvs_ui *ui, int key)
{
    (void)key;
    kvs_grid_spec g = current_spec(ui);
    if (g.n_methods < 2) return KVS_KEY_HANDLED;
    int c = ui->model.cur_m, from[KVS_GRID_MAX_METHODS];
    for (int i = 0; i < g.n_methods - 1; i++) from[i] = i < c ? i : i + 1;
    memmove(g.methods[c], g.methods[c + 1], sizeof g.methods[0] * (size_t)(g.n_methods - c - 1));
    g.n_methods--;
    if (!respec(ui, &g, from)) return KVS_KEY_REDRAW;
    if (ui->model.cur_m >= g.n_methods) ui->model.cur_m = g.n_methods - 1;
    return KVS_KEY_REDRAW;
}

static int k_move(kvs_ui *ui, int key)
{
    kvs_model_state *ms = &ui->model;
    if (!ms->have_grid) return KVS_KEY_HANDLED;
    if (key == KEY_UP || key == 'k') ms->cur_m = ms->cur_m > 0 ? ms->cur_m - 1 : 0;
    if (key == KEY_DOWN || key == 'j') ms->cur_m = ms->cur_m + 1 < ms->grid.n_methods ? ms->cur_m + 1 : ms->cur_m;
    if (key == KEY_LEFT || key == 'h') ms->cur_b = ms->cur_b > 0 ? ms->cur_b - 1 : 0;
    if (key == KEY_RIGHT || key == 'l') ms->cur_b = ms->cur_b + 1 < ms->grid.n_bits ? ms->cur_b + 1 : ms->cur_b;
    return KVS_KEY_REDRAW;
}

// The cursor cell's config becomes the session's (lab, dashboard, `ppl`).
static int k_use(kvs_ui *ui, int key)
{
    (void)key;
    kvs_model_state *ms = &ui->model;
    if (!ms->have_grid) return KVS_KEY_HANDLED;
    const kvs_grid_spec *g = &ms->grid;
    char line[128];
    snprintf(line, sizeof line, "method %s", g->methods[ms->cur_m]);
    if (kvs_ui_exec(ui, line)) return KVS_KEY_REDRAW;
    if (!fixed_width(g->methods[ms->cur_m])) {
        snprintf(line, sizeof line, "bits %d", g->bits[ms->cur_b]);
        if (kvs_ui_exec(ui, line)) return KVS_KEY_REDRAW;
    }
    snprintf(line, sizeof line, "value-bits %d", g->value_bits);
    kvs_ui_exec(ui, line);
    return KVS_KEY_REDRAW;
}

// Capture a kvtrace from the model on the grid's text, with the session's
// cache; the studio opens it when the capture is done.
static int k_capture(kvs_ui *ui, int key)
{
    (void)key;
    if (!ui->s->model_dir[0]) {
        kvs_ui_set_status(ui, true, "capture: no model in this session (kvstudio MODEL_DIR opens one)");
        return KVS_KEY_REDRAW;
    }
    kvs_grid_spec g = current_spec(ui);
    char line[KVQ_PATH_LEN + 32];
    snprintf(line, sizeof line, "capture --text '%s'", g.text);   // --out: the state directory
    kvs_ui_exec(ui, line);
    return KVS_KEY_REDRAW;
}

static const kvs_keybind model_keys[] = {
    {'\n', KEY_ENTER, "Enter", "compute the ppl/KL grid", k_run},
    {'c', 0, "c", "capture a trace from this model (then open it)", k_capture},
    {'v', 0, "v", "value bits of the grid", k_value_bits},
    {'m', 0, "m", "add the config's method as a row", k_add_method},
    {'d', 0, "d", "delete the cursor's row", k_delete},
    {'s', 0, "s", "use the cursor cell's config", k_use},
    {KEY_UP, 'k', "arrows", "move in the grid", k_move},
    {KEY_DOWN, 'j', NULL, NULL, k_move},
    {KEY_LEFT, 'h', NULL, NULL, k_move},
    {KEY_RIGHT, 'l', NULL, NULL, k_move},
    {0, 0, NULL, NULL, NULL},
};

const kvs_view kvs_view_model = {
    .name = "model", .title = "Model", .draw = model_draw, .keys = model_keys,
};
