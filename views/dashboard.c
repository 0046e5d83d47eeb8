// dashboard.c — view 3: the trace replayed through the caches (engine/
// replay.h) with every observer attached, as live panels. The prefill (the
// long part) runs on the worker thread; decode steps are cheap and run on
// the UI thread within a time budget per tick, so the UI keeps >= 10 frames
// a second at any speed. Space plays/pauses, `.` steps, +/- change speed.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "label.h"
#include "replay.h"
#include "tui.h"
#include "ui.h"

#define TICK_BUDGET_S 0.05   // decode work per UI tick
#define MAX_SPEED 256

static kvq_replay_snapshot *snap(kvs_ui *ui) { return ui->dash.snap; }

void kvs_dash_free(kvs_ui *ui)
{
    kvs_dash_state *d = &ui->dash;
    if (d->prefilling) return;   // the worker owns it; the job's done frees it
    kvq_replay_free(d->replay);
    free(d->snap);
    d->replay = d->snap = NULL;
    d->playing = false;
    d->n_hist = 0;
}

static void push(float *h, int n, float v)
{
    if (n == KVS_DASH_HIST) memmove(h, h + 1, sizeof(float) * (KVS_DASH_HIST - 1));
    h[n == KVS_DASH_HIST ? n - 1 : n] = v;
}

static void take_snapshot(kvs_ui *ui)
{
    kvs_dash_state *d = &ui->dash;
    kvq_replay_snapshot *sn = snap(ui);
    kvq_replay_snapshot_get(d->replay, sn);
    const kvq_report *r = &sn->report;
    push(d->hist_cos, d->n_hist, (float)r->distortion.mean_cosine_similarity);
    push(d->hist_attn, d->n_hist, (float)r->attention.mean_output_rel_error);
    push(d->hist_mem, d->n_hist, (float)(sn->bytes / 1048576.0));
    push(d->hist_out, d->n_hist, (float)r->key_norm.outlier_count);
    if (d->n_hist < KVS_DASH_HIST) d->n_hist++;
}

// ---- the prefill job ----
static int prefill_run(kvs_job *j)
{
    kvs_ui *ui = j->arg;
    kvs_job_progress(0, "prefill", -1, j);
    kvq_status st = kvq_replay_step(ui->dash.replay, 1);   // the first step is the whole prefill
    kvs_job_progress(1, "prefill", 0, j);
    return st;
}

static void prefill_done(kvs_ui *ui, kvs_job *j)
{
    kvs_dash_state *d = &ui->dash;
    d->prefilling = false;
    j->arg = NULL;
    if (j->status) {
        snprintf(d->err, sizeof d->err, "replay: %.240s", j->msg);
        kvs_ui_set_status(ui, true, "%s", d->err);
        kvs_dash_free(ui);
        return;
    }
    take_snapshot(ui);
    d->playing = d->play_after_prefill;
    kvs_ui_set_status(ui, false, "prefill done (%d tokens); %s", kvq_replay_pos(d->replay),
                      d->playing ? "decoding token by token" : "paused (Space plays, . steps)");
}

static int ensure_replay(kvs_ui *ui, bool play)
{
    kvs_dash_state *d = &ui->dash;
    if (d->prefilling) {
        d->play_after_prefill = play;
        return 0;
    }
    if (d->replay) return 0;
    if (!ui->s->trace) {
        kvs_ui_set_status(ui, true, "replay: no trace loaded (:load PATH)");
        return -1;
    }
    if (kvs_job_busy(ui)) {
        kvs_ui_set_status(ui, true, "replay: busy with %s (Esc cancels it)", ui->job.name);
        return -1;
    }
    d->err[0] = 0;
    d->snap = calloc(1, sizeof(kvq_replay_snapshot));
    kvq_replay_opts o;
    kvq_replay_opts_default(&o);
    kvq_replay *r = NULL;
    if (!d->snap || kvq_replay_new(ui->s->trace, &ui->s->cfg, ui->s->art, &o, &r)) {
        snprintf(d->err, sizeof d->err, "replay: %s", d->snap ? kvq_last_error() : "out of memory");
        kvs_ui_set_status(ui, true, "%s", d->err);
        free(d->snap);
        d->snap = NULL;
        return -1;
    }
    d->replay = r;
    d->cfg = ui->s->cfg;
    d->trace = ui->s->trace;
    d->art = ui->s->art;
    d->n_hist = 0;
    d->prefilling = true;
    d->play_after_prefill = play;
    if (kvs_job_start(ui, "replay prefill", prefill_run, prefill_done, ui)) {
        d->prefilling = false;
        kvs_dash_free(ui);
        return -1;
    }
    return 0;
}

int kvs_dash_play(kvs_ui *ui, int toggle_or_on)
{
    kvs_dash_state *d = &ui->dash;
    if (ui->gen.running) {
        kvs_ui_set_status(ui, true, "play: the model is generating (Esc stops it)");
        return -1;
    }
    ui->gen.active = false;
    if (toggle_or_on == 0 && d->playing) return kvs_dash_pause(ui);
    if (d->replay && !d->prefilling && kvq_replay_done(d->replay)) {   // play again from the start
        kvq_replay_restart(d->replay, 0);
        d->n_hist = 0;
        d->prefilling = true;
        d->play_after_prefill = true;
        if (kvs_job_start(ui, "replay prefill", prefill_run, prefill_done, ui)) d->prefilling = false;
        return 0;
    }
    if (ensure_replay(ui, true)) return -1;
    if (!d->prefilling) d->playing = true;
    return 0;
}

int kvs_dash_pause(kvs_ui *ui)
{
    ui->dash.playing = false;
    ui->dash.play_after_prefill = false;
    return 0;
}

int kvs_dash_step(kvs_ui *ui, int n)
{
    kvs_dash_state *d = &ui->dash;
    if (ui->gen.running) {
        kvs_ui_set_status(ui, true, "step: the model is generating (Esc stops it)");
        return -1;
    }
    ui->gen.active = false;
    d->playing = false;
    if (!d->replay) return ensure_replay(ui, false);   // the first step is the prefill
    if (d->prefilling) return 0;
    if (kvq_replay_step(d->replay, n)) {
        kvs_ui_set_status(ui, true, "replay: %s", kvq_last_error());
        return -1;
    }
    take_snapshot(ui);
    return 0;
}

void kvs_dash_tick(kvs_ui *ui)
{
    kvs_dash_state *d = &ui->dash;
    // a new trace or new artifacts (the replay's plans point into them) end the replay
    if (d->replay && !d->prefilling && (ui->s->trace != d->trace || ui->s->art != d->art)) {
        kvs_dash_free(ui);
        kvs_ui_set_status(ui, false, "replay reset: the trace or the artifacts changed");
    }
    if (!d->playing || !d->replay || d->prefilling) return;
    double t0 = kvq_now_s();
    int stepped = 0;
    while (stepped < d->speed && !kvq_replay_done(d->replay) && kvq_now_s() - t0 < TICK_BUDGET_S) {
        if (kvq_replay_step(d->replay, 1)) {
            kvs_ui_set_status(ui, true, "replay: %s", kvq_last_error());
            d->playing = false;
            return;
        }
        stepped++;
    }
    if (stepped) take_snapshot(ui);
    if (kvq_replay_done(d->replay)) {
        d->playing = false;
        const kvq_replay_snapshot *sn = snap(ui);
        char fa[96], fb[96], c[96];
        kvs_ui_set_status(ui, false, "replay done: %d tokens, %s, %s, %s", sn->pos,
                          kvq_metric_fmt_named(KVQ_M_CACHE_COMPRESSION, sn->report.memory.compression_ratio, fa, sizeof fa),
                          kvq_metric_fmt_named(KVQ_M_KEY_COSINE, sn->report.distortion.mean_cosine_similarity, fb, sizeof fb),
                          kvq_metric_fmt_named(KVQ_M_OUTPUT_ERROR, sn->report.attention.num_queries ?
                                               sn->report.attention.mean_output_rel_error : NAN, c, sizeof c));
    }
}

// ---- panels ----
// Histories behind the sparklines: the replay's, or none while generating.
static const kvs_dash_state *hist;
static const kvs_dash_state no_hist;

// One line of figures that fits the panel (labels shorten, then figures go).
static void fig_line(kvs_ui *ui, kvs_rect in, int y, attr_t a, kvs_part *p, int n)
{
    if (y < in.y + in.h) kvs_w_parts(ui, y, in.x + 1, in.w - 2, a, p, n, "  ");
}

static kvs_part text_part(int prio, const char *full, const char *brief)
{
    kvs_part p = {.prio = prio};
    snprintf(p.text, sizeof p.text, "%s", full);
    snprintf(p.brief, sizeof p.brief, "%s", brief ? brief : "");
    return p;
}

// Per-layer bars under a heading that names the metric and its unit; the
// values are bare numbers that fit 8 cells. Layers that do not fit are
// counted on the last row ("+2 layers: L4-L5").
static void layer_bars(kvs_ui *ui, kvs_rect r, int y, const char *head, const char *brief, const double *v, int n,
                       double vmax, kvs_color c, int dec)
{
    if (y >= r.y + r.h) return;
    kvs_part h = text_part(0, head, brief);
    kvs_w_parts(ui, y++, r.x + 1, r.w - 2, kvs_attr(ui, KVS_C_TITLE), &h, 1, "");
    int rows = r.y + r.h - y, shown = n <= rows ? n : rows - 1;
    for (int l = 0; l < shown; l++, y++) {
        double x = v[l];
        kvs_w_text(ui, y, r.x + 1, 4, kvs_attr(ui, KVS_C_DIM), "L%-3d", l);
        if (!isfinite(x)) {
            kvs_w_text(ui, y, r.x + 5, 6, kvs_attr(ui, KVS_C_DIM), " n/a");   // not measured: never nan
            continue;
        }
        char b[16];
        kvs_w_hbar(ui, y, r.x + 5, r.w - 15, vmax > 0 ? x / vmax : 0, kvs_attr(ui, c));
        if (kvs_fmt_num(x, 8, dec, b, sizeof b) > 0) kvs_w_text(ui, y, r.x + r.w - 9, 8, A_NORMAL, "%8s", b);
    }
    if (shown < n && shown >= 0) {
        char t[96], br[64];
        snprintf(t, sizeof t, "+%d layers: L%d-L%d (taller window)", n - shown, shown, n - 1);
        snprintf(br, sizeof br, "+%d layers: L%d-L%d", n - shown, shown, n - 1);
        kvs_part m = text_part(0, t, br);
        kvs_w_parts(ui, y, r.x + 1, r.w - 2, kvs_attr(ui, KVS_C_ACCENT), &m, 1, "");
    }
}

static double vmax_of(const double *v, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i]) && v[i] > m) m = v[i];
    return m;
}

// Rows of a panel: figures (3), the sparkline, the per-layer bars. When the
// panel is short the third (dim) figure row goes first, for one more bar.
static int spark_row(kvs_rect in, int n_layers) { return in.h >= 6 + n_layers ? 3 : 2; }

static void panel_distortion(kvs_ui *ui, kvs_rect b, const kvq_replay_snapshot *sn)
{
    kvs_w_box(ui, b, "distortion (keys)");
    kvs_rect in = kvs_w_inner(b);
    const kvq_distortion_report *r = &sn->report.distortion;
    int sp = spark_row(in, r->n_layers);
    kvs_part p[2];
    kvs_metric_part(&p[0], KVQ_M_KEY_COSINE, r->mean_cosine_similarity, 0);
    kvs_metric_part(&p[1], KVQ_M_KEY_COSINE_MIN, r->min_cosine_similarity, 1);
    fig_line(ui, in, in.y, A_NORMAL, p, 2);
    kvs_metric_part(&p[0], KVQ_M_PROBE_ERROR, r->mean_ip_error, 0);
    kvs_metric_part(&p[1], KVQ_M_KEY_REL_MSE, r->mean_relative_mse, 1);
    fig_line(ui, in, in.y + 1, A_NORMAL, p, 2);
    if (sp == 3) {
        char t[96];
        if (r->total_tokens_measured) snprintf(t, sizeof t, "worst layer %d; %ld compressed keys", r->worst_layer, r->total_tokens_measured);
        else snprintf(t, sizeof t, "no key compressed yet (all fp16)");
        p[0] = text_part(0, t, r->total_tokens_measured ? "" : "all fp16 so far");
        if (r->total_tokens_measured) snprintf(p[0].brief, sizeof p[0].brief, "worst L%d; %ld keys", r->worst_layer, r->total_tokens_measured);
        fig_line(ui, in, in.y + 2, kvs_attr(ui, KVS_C_DIM), p, 1);
    }
    kvs_w_sparkline(ui, in.y + sp, in.x + 1, in.w - 2, hist->hist_cos, hist->n_hist, kvs_attr(ui, KVS_C_S1));
    // per-layer: 1 - cos (longer = worse)
    double e[KVQ_MAX_LAYERS];
    for (int l = 0; l < r->n_layers; l++) e[l] = 1 - r->per_layer_cosine_similarity[l];
    char head[96];
    snprintf(head, sizeof head, "per layer: 1 - %s", kvq_metrics[KVQ_M_KEY_COSINE].name);
    layer_bars(ui, in, in.y + sp + 1, head, "1 - cos per layer", e, r->n_layers, vmax_of(e, r->n_layers), KVS_C_S1, 5);
}

static void panel_attention(kvs_ui *ui, kvs_rect b, const kvq_replay_snapshot *sn)
{
    kvs_w_box(ui, b, "attention vs exact");
    kvs_rect in = kvs_w_inner(b);
    const kvq_attention_report *r = &sn->report.attention;
    if (!(sn->report.which & KVQ_OBS_ATTENTION)) {
        kvs_w_text(ui, in.y, in.x + 1, in.w - 1, kvs_attr(ui, KVS_C_DIM), "the trace has no queries");
        return;
    }
    if (r->num_queries == 0) {
        kvs_w_text(ui, in.y, in.x + 1, in.w - 1, kvs_attr(ui, KVS_C_DIM), "measured from the first decode step");
        return;
    }
    int sp = spark_row(in, r->n_layers);
    kvs_part p[2];
    char t[64];
    kvs_metric_part(&p[0], KVQ_M_OUTPUT_ERROR, r->mean_output_rel_error, 0);
    snprintf(t, sizeof t, "%ld queries", r->num_queries);
    p[1] = text_part(2, t, NULL);
    fig_line(ui, in, in.y, A_NORMAL, p, 2);
    kvs_metric_part(&p[0], KVQ_M_ATTN_KL, r->mean_kl_divergence, 0);
    fig_line(ui, in, in.y + 1, A_NORMAL, p, 1);
    if (sp == 3) {
        kvs_metric_part(&p[0], KVQ_M_TOPK_RECALL, r->topk_recall, 0);
        snprintf(p[0].text + strlen(p[0].text), sizeof p[0].text - strlen(p[0].text), " (k = %d)", r->topk);
        fig_line(ui, in, in.y + 2, kvs_attr(ui, KVS_C_DIM), p, 1);
    }
    kvs_w_sparkline(ui, in.y + sp, in.x + 1, in.w - 2, hist->hist_attn, hist->n_hist, kvs_attr(ui, KVS_C_S2));
    char head[96];
    snprintf(head, sizeof head, "per layer: %s", kvq_metrics[KVQ_M_OUTPUT_ERROR].name);
    layer_bars(ui, in, in.y + sp + 1, head, "out err per layer", r->per_layer_output_rel_error, r->n_layers,
               vmax_of(r->per_layer_output_rel_error, r->n_layers), KVS_C_S2, 5);
}

static void panel_memory(kvs_ui *ui, kvs_rect b, const kvq_replay_snapshot *sn)
{
    kvs_w_box(ui, b, "memory");
    kvs_rect in = kvs_w_inner(b);
    const kvq_memory_report *r = &sn->report.memory;
    int sp = spark_row(in, r->n_layers);
    kvs_part p[3];
    kvs_metric_part(&p[0], KVQ_M_CACHE_MB, r->peak_compressed_mb, 0);
    char fp[48], t0[128], b0[96];
    kvq_metric_fmt_unit(KVQ_M_FP16_MB, r->peak_fp16_mb, fp, sizeof fp);
    snprintf(t0, sizeof t0, "vs %s %s", kvq_metrics[KVQ_M_FP16_MB].name, fp);
    snprintf(b0, sizeof b0, "vs fp16 %s", fp);
    p[1] = text_part(1, t0, b0);
    fig_line(ui, in, in.y, A_NORMAL, p, 2);
    kvs_metric_part(&p[0], KVQ_M_CACHE_COMPRESSION, r->compression_ratio, 0);
    fig_line(ui, in, in.y + 1, kvs_attr(ui, KVS_C_GOOD) | A_BOLD, p, 1);
    if (sp == 3) {
        char kb[32], vb[32], t[128], br[96];
        kvq_metric_fmt(KVQ_M_BYTES_PER_TOKEN, r->bytes_per_token, kb, sizeof kb);
        snprintf(t, sizeof t, "%s %s", kb, kvq_metrics[KVQ_M_BYTES_PER_TOKEN].unit);
        snprintf(br, sizeof br, "%s B/tok", kb);
        p[0] = text_part(1, t, br);
        snprintf(t, sizeof t, "%s %s", kvq_metrics[KVQ_M_KEY_BITS].name, kvq_metric_fmt(KVQ_M_KEY_BITS, sn->key_bpc, kb, sizeof kb));
        snprintf(br, sizeof br, "k %s", kb);
        p[1] = text_part(0, t, br);
        snprintf(t, sizeof t, "%s %s", kvq_metrics[KVQ_M_VALUE_BITS].name, kvq_metric_fmt(KVQ_M_VALUE_BITS, sn->value_bpc, vb, sizeof vb));
        snprintf(br, sizeof br, "v %s", vb);
        p[2] = text_part(0, t, br);
        fig_line(ui, in, in.y + 2, kvs_attr(ui, KVS_C_DIM), p, 3);
    }
    kvs_w_sparkline(ui, in.y + sp, in.x + 1, in.w - 2, hist->hist_mem, hist->n_hist, kvs_attr(ui, KVS_C_S3));
    char head[96];
    snprintf(head, sizeof head, "per layer: %s (%s)", kvq_metrics[KVQ_M_CACHE_MB].name, kvq_metrics[KVQ_M_CACHE_MB].unit);
    layer_bars(ui, in, in.y + sp + 1, head, "cache MB per layer", r->per_layer_mb, r->n_layers,
               vmax_of(r->per_layer_mb, r->n_layers), KVS_C_S3, 3);
}

static void panel_keynorm(kvs_ui *ui, kvs_rect b, const kvq_replay_snapshot *sn)
{
    kvs_w_box(ui, b, "key norms");
    kvs_rect in = kvs_w_inner(b);
    const kvq_key_norm_report *r = &sn->report.key_norm;
    int sp = spark_row(in, r->n_layers);
    kvs_part p[3];
    char t[64];
    kvs_metric_part(&p[0], KVQ_M_KEY_NORM, r->total_keys ? r->mean_key_norm : NAN, 0);
    snprintf(t, sizeof t, "std %.3f", r->std_key_norm);
    p[1] = text_part(2, t, NULL);
    snprintf(t, sizeof t, "max %.3f", r->max_key_norm);
    p[2] = text_part(1, t, NULL);
    fig_line(ui, in, in.y, A_NORMAL, p, 3);
    kvs_metric_part(&p[0], KVQ_M_OUTLIER_FRACTION, r->total_keys ? 100 * r->outlier_fraction : NAN, 0);
    snprintf(t, sizeof t, " (%ld)", r->outlier_count);
    strncat(p[0].text, t, sizeof p[0].text - strlen(p[0].text) - 1);
    strncat(p[0].brief, t, sizeof p[0].brief - strlen(p[0].brief) - 1);
    snprintf(t, sizeof t, "mean outlier norm %.3f", r->mean_outlier_norm);
    p[1] = text_part(1, t, NULL);
    snprintf(p[1].brief, sizeof p[1].brief, "outlier |k| %.3f", r->mean_outlier_norm);
    fig_line(ui, in, in.y + 1, r->outlier_count ? kvs_attr(ui, KVS_C_WARN) : A_NORMAL, p, 2);
    if (sp == 3) {
        snprintf(t, sizeof t, "%ld keys seen", r->total_keys);
        p[0] = text_part(0, t, NULL);
        fig_line(ui, in, in.y + 2, kvs_attr(ui, KVS_C_DIM), p, 1);
    }
    kvs_w_sparkline(ui, in.y + sp, in.x + 1, in.w - 2, hist->hist_out, hist->n_hist, kvs_attr(ui, KVS_C_S4));
    double c[KVQ_MAX_LAYERS];
    for (int l = 0; l < r->n_layers; l++) c[l] = (double)r->per_layer_outlier_count[l];
    char head[96];
    snprintf(head, sizeof head, "per layer: %s (count)", kvq_metrics[KVQ_M_OUTLIER_FRACTION].name);
    layer_bars(ui, in, in.y + sp + 1, head, "outliers per layer", c, r->n_layers, vmax_of(c, r->n_layers), KVS_C_S4, 0);
}

static void panel_latency(kvs_ui *ui, kvs_rect b, const kvq_replay_snapshot *sn)
{
    kvs_w_box(ui, b, "latency");
    kvs_rect in = kvs_w_inner(b);
    const kvq_latency_report *r = &sn->report.latency;
    int sp = spark_row(in, r->n_layers);
    kvs_part p[2];
    kvs_metric_part(&p[0], KVQ_M_ENCODE_MS, r->mean_encode_ms, 0);
    kvs_metric_part(&p[1], KVQ_M_ENCODE_P99_MS, r->p99_encode_ms, 1);
    fig_line(ui, in, in.y, A_NORMAL, p, 2);
    kvs_metric_part(&p[0], KVQ_M_ATTEND_MS, r->mean_decode_ms, 0);
    fig_line(ui, in, in.y + 1, A_NORMAL, p, 1);
    if (sp == 3) {
        char t[128], br[96];
        snprintf(t, sizeof t, "%ld encodes, %ld attends; slowest L%d", r->num_encode_calls, r->num_decode_calls,
                 r->slowest_layer);
        snprintf(br, sizeof br, "slowest L%d", r->slowest_layer);
        p[0] = text_part(0, t, br);
        fig_line(ui, in, in.y + 2, kvs_attr(ui, KVS_C_DIM), p, 1);
    }
    char head[96];
    snprintf(head, sizeof head, "per layer: %s (%s)", kvq_metrics[KVQ_M_ENCODE_MS].name, kvq_metrics[KVQ_M_ENCODE_MS].unit);
    layer_bars(ui, in, in.y + sp + 1, head, "encode ms per layer", r->per_layer_encode_ms, r->n_layers,
               vmax_of(r->per_layer_encode_ms, r->n_layers), KVS_C_S5, 2);
}

static void panel_replay(kvs_ui *ui, kvs_rect b, const kvq_replay_snapshot *sn)
{
    kvs_dash_state *d = &ui->dash;
    kvs_w_box(ui, b, "replay");
    kvs_rect in = kvs_w_inner(b);
    char label[256], id[16];
    kvq_artifacts_id(ui->s->art, id, sizeof id);
    kvq_config_label(&d->cfg, id, label, (size_t)(in.w > 8 ? in.w : 8) < sizeof label ? (size_t)(in.w > 8 ? in.w : 8) : sizeof label);
    kvs_w_text(ui, in.y, in.x + 1, in.w - 1, kvs_attr(ui, KVS_C_ACCENT) | A_BOLD, "%s", label);
    const char *state = d->prefilling ? "prefilling..." : d->playing ? "playing" :
                        sn && sn->total && sn->pos >= sn->total ? "done" : "paused";
    kvs_part p[2];
    char t[64];
    p[0] = text_part(0, state, NULL);
    snprintf(t, sizeof t, "speed %d tok/tick", d->speed);
    p[1] = text_part(1, t, NULL);
    snprintf(p[1].brief, sizeof p[1].brief, "x%d", d->speed);
    kvs_w_parts(ui, in.y + 1, in.x + 1, in.w - 2, A_BOLD, p, 2, "  ");
    int pos = sn ? sn->pos : 0, total = sn ? sn->total : 0;
    kvs_w_text(ui, in.y + 2, in.x + 1, in.w - 1, A_NORMAL, "token %d / %d", pos, total);
    kvs_w_hbar(ui, in.y + 3, in.x + 1, in.w - 2, total ? (double)pos / total : 0, kvs_attr(ui, KVS_C_GOOD));
    if (memcmp(&d->cfg, &ui->s->cfg, sizeof d->cfg)) {
        p[0] = text_part(0, "config changed: R restarts with it", "config changed: R");
        kvs_w_parts(ui, in.y + 5, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_WARN), p, 1, "");
    }
    p[0] = text_part(0, "prefill: first half in one chunk,", "prefill: first half at once,");
    p[1] = text_part(0, "then one token per step with its query", "then token by token");
    kvs_w_parts(ui, in.y + 6, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM), &p[0], 1, "");
    kvs_w_parts(ui, in.y + 7, in.x + 1, in.w - 2, kvs_attr(ui, KVS_C_DIM), &p[1], 1, "");
}

// The generated text, newest at the bottom; bytes outside printable ASCII as '.'.
static void panel_text(kvs_ui *ui, kvs_rect b, const char *text, int len)
{
    kvs_w_box(ui, b, ui->gen.running ? "generating (Esc stops)" : "generated text");
    kvs_rect in = kvs_w_inner(b);
    if (in.w < 4 || in.h < 1) return;
    // wrap forward at the panel width, keep the last in.h lines in a ring
    enum { MAXL = 64 };
    static char lines[MAXL][256];
    int h = in.h < MAXL ? in.h : MAXL, w = in.w - 2 < 255 ? in.w - 2 : 255;
    int nl = 0, k = 0;
    lines[0][0] = 0;
    for (int i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)text[i] : 0;
        bool brk = i == len || c == '\n' || k == w;
        if (brk) {
            lines[nl % h][k] = 0;
            if (i == len) break;
            nl++;
            k = 0;
            if (c == '\n') continue;
        }
        lines[nl % h][k++] = c >= 32 && c < 127 ? (char)c : c == '\t' ? ' ' : '.';
    }
    int total = nl + 1, first = total > h ? total - h : 0;
    for (int i = first; i < total; i++)
        kvs_w_text(ui, in.y + i - first, in.x + 1, in.w - 2, A_NORMAL, "%s", lines[i % h]);
}

static void dash_draw(kvs_ui *ui, kvs_rect r)
{
    kvs_dash_state *d = &ui->dash;
    hist = ui->gen.active ? &no_hist : d;
    if (ui->gen.active && ui->gen.snap) {   // generation mode: draw the worker's last copy
        static kvq_replay_snapshot gs;
        static char text[KVS_GEN_TEXT];
        pthread_mutex_lock(&ui->job.mu);
        bool have = ui->gen.have_snap;
        if (have) gs = *(kvq_replay_snapshot *)ui->gen.snap;
        int len = ui->gen.text_len;
        memcpy(text, ui->gen.text, (size_t)len + 1);
        pthread_mutex_unlock(&ui->job.mu);
        int cw = r.w / 3, rh = r.h / 2;
        if (!have) {
            kvs_w_box(ui, (kvs_rect){r.y, r.x, rh, 2 * cw}, "generation");
            kvs_w_text(ui, r.y + 2, r.x + 2, 2 * cw - 4, A_BOLD, "loading the model and running the prompt...");
        } else {
            panel_distortion(ui, (kvs_rect){r.y, r.x, rh, cw}, &gs);
            panel_attention(ui, (kvs_rect){r.y, r.x + cw, rh, cw}, &gs);
            panel_keynorm(ui, (kvs_rect){r.y + rh, r.x, r.h - rh, cw}, &gs);
            panel_latency(ui, (kvs_rect){r.y + rh, r.x + cw, r.h - rh, cw}, &gs);
        }
        if (have) panel_memory(ui, (kvs_rect){r.y, r.x + 2 * cw, rh, r.w - 2 * cw}, &gs);
        panel_text(ui, (kvs_rect){have ? r.y + rh : r.y, r.x + 2 * cw, have ? r.h - rh : r.h, r.w - 2 * cw}, text, len);
        return;
    }
    const kvq_replay_snapshot *sn = d->replay && !d->prefilling ? snap(ui) : NULL;
    if (!sn || !sn->total) {
        kvs_w_box(ui, r, "dashboard");
        kvs_rect in = kvs_w_inner(r);
        if (d->prefilling)
            kvs_w_text(ui, in.y + 1, in.x + 2, in.w - 4, A_BOLD, "prefilling the caches on the worker thread...");
        else {
            char label[256], id[16];
            kvq_artifacts_id(ui->s->art, id, sizeof id);
            kvs_w_text(ui, in.y + 1, in.x + 2, in.w - 4, A_BOLD,
                       "Space plays the trace through the caches of the current config (%s); . steps",
                       kvq_config_label(&ui->s->cfg, id, label, sizeof label));
        }
        kvs_w_text(ui, in.y + 3, in.x + 2, in.w - 4, kvs_attr(ui, KVS_C_DIM),
                   "observers: distortion, latency, memory, key norms, attention against exact fp32");
        kvs_w_text(ui, in.y + 4, in.x + 2, in.w - 4, kvs_attr(ui, KVS_C_DIM),
                   "g: generate text with the model (%s) through the same caches instead",
                   ui->gen.model_dir[0] ? ui->gen.model_dir : "sample_data/refmodel");
        if (d->err[0]) kvs_w_text(ui, in.y + 5, in.x + 2, in.w - 4, kvs_attr(ui, KVS_C_BAD), "%s", d->err);
        return;
    }
    int cw = r.w / 3, rh = r.h / 2;
    panel_distortion(ui, (kvs_rect){r.y, r.x, rh, cw}, sn);
    panel_attention(ui, (kvs_rect){r.y, r.x + cw, rh, cw}, sn);
    panel_memory(ui, (kvs_rect){r.y, r.x + 2 * cw, rh, r.w - 2 * cw}, sn);
    panel_keynorm(ui, (kvs_rect){r.y + rh, r.x, r.h - rh, cw}, sn);
    panel_latency(ui, (kvs_rect){r.y + rh, r.x + cw, r.h - rh, cw}, sn);
    panel_replay(ui, (kvs_rect){r.y + rh, r.x + 2 * cw, r.h - rh, r.w - 2 * cw}, sn);
}

// ---- keys ----
static int k_play(kvs_ui *ui, int key)
{
    (void)key;
    kvs_dash_play(ui, 0);
    return KVS_KEY_REDRAW;
}
static int k_step(kvs_ui *ui, int key)
{
    (void)key;
    kvs_dash_step(ui, 1);
    return KVS_KEY_REDRAW;
}
static int k_speed(kvs_ui *ui, int key)
{
    int *s = &ui->dash.speed;
    *s = key == '-' ? (*s > 1 ? *s / 2 : 1) : (*s < MAX_SPEED ? *s * 2 : MAX_SPEED);
    kvs_ui_set_status(ui, false, "replay speed %d tokens per tick", *s);
    return KVS_KEY_REDRAW;
}
static int k_restart(kvs_ui *ui, int key)
{
    (void)key;
    if (ui->dash.prefilling) return KVS_KEY_HANDLED;
    kvs_dash_free(ui);   // rebuilt from the current config
    kvs_dash_play(ui, 1);
    return KVS_KEY_REDRAW;
}

static int k_generate(kvs_ui *ui, int key)
{
    (void)key;
    kvs_gen_start(ui);
    return KVS_KEY_REDRAW;
}

static const kvs_keybind dash_keys[] = {
    {' ', 0, "Space", "play / pause", k_play},
    {'.', 0, ".", "step one token", k_step},
    {'+', '=', "+/-", "speed x2 / /2", k_speed},
    {'-', 0, NULL, NULL, k_speed},
    {'R', 0, "R", "restart with the current config", k_restart},
    {'g', 0, "g", "generate text with the model instead", k_generate},
    {0, 0, NULL, NULL, NULL},
};

const kvs_view kvs_view_dashboard = {
    .name = "dashboard", .title = "Dashboard", .draw = dash_draw, .keys = dash_keys,
};
