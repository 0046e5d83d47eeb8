// test_views.c — in-process render tests of the studio: every view drawn
// into an ncurses screen on /dev/null (newterm + resizeterm), keys fed
// through kvs_ui_key, jobs joined with kvs_job_wait, and the text read back
// with mvinnstr / mvinchnstr.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "commands.h"
#include "replay.h"
#include "tui.h"
#include "ui.h"
#include "test_util.h"
#include "tui_fixture.h"

static int setup(void **state)
{
    static const fixture_opts o = {.tag = "views", .term = "xterm-256color", .locale = "C.UTF-8", .rows = 40, .cols = 120, .color = true, .utf8 = true};
    return fixture_open(state, &o);
}

static void keys(kvs_ui *ui, const char *k)
{
    for (; *k; k++) kvs_ui_key(ui, (unsigned char)*k);
}

// ---- views ----
static void test_explorer(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    assert_shows(ui, "1 Explorer");
    assert_shows(ui, "layers x kv heads");
    assert_shows(ui, "layer 0, kv head 0: keys");
    assert_shows(ui, "d_eff");
    assert_shows(ui, "max |k| per channel");
    assert_shows(ui, "...");   // the grid fills from a background job the tick starts
    kvs_ui_tick(ui);
    kvs_job_wait(ui);
    assert_hides(ui, "...");
    kvs_ui_key(ui, 'j');
    kvs_ui_key(ui, KEY_RIGHT);
    assert_shows(ui, "layer 1, kv head 1: keys");
    kvs_ui_key(ui, 'v');
    assert_shows(ui, "layer 1, kv head 1: values");
    assert_shows(ui, "max |v| per channel");
    kvs_ui_key(ui, 'k');
    kvs_ui_key(ui, 'k');   // clamps at layer 0
    assert_shows(ui, "layer 0, kv head 1: values");
}

// The grid job's cells are the statistics of each head, computed in the
// background: the studio is not busy meanwhile, and a job the user starts
// preempts it (it resumes with the cells it had when the worker is idle).
static bool bg_stopped;
static int bg_spin(kvs_job *j)
{
    while (!kvs_job_progress(-1, NULL, -1, j)) usleep(1000);
    return KVQ_ERR_CANCELLED;
}
static void bg_done(kvs_ui *ui, kvs_job *j)
{
    (void)ui;
    bg_stopped = j->preempted;
}
static int fg_quick(kvs_job *j)
{
    (void)j;
    return KVQ_OK;
}

static void test_explorer_background(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    const kvq_trace *t = f->s.trace;
    kvs_ui_tick(ui);   // starts the keys' grid job
    assert_true(ui->job.running && ui->job.background);
    assert_false(kvs_job_busy(ui));
    assert_int_equal(kvs_ui_key(ui, 'q') & KVS_KEY_QUIT, KVS_KEY_QUIT);   // no question for it
    kvs_job_wait(ui);
    kvs_ui_tick(ui);
    const int H = t->n_kv_heads;
    float *buf = malloc(sizeof(float) * (size_t)t->n_tokens * (size_t)t->head_dim);
    assert_non_null(buf);
    for (int l = 0; l < t->n_layers; l++)
        for (int h = 0; h < H; h++) {
            kvq_head_stats st;
            assert_int_equal(kvq_trace_keys(t, l, h, buf), KVQ_OK);
            assert_int_equal(kvq_head_stats_compute(buf, t->n_tokens, t->head_dim, &st), KVQ_OK);
            // (BLAS threads differ: the job runs dsyrk on one, which sums in another order)
            assert_float_equal(ui->ex.grid_deff[l * H + h], (float)st.d_eff, 1e-4 * st.d_eff);
            assert_float_equal(ui->ex.grid_ratio[l * H + h], (float)st.top_ratio[0], 1e-4 * st.top_ratio[0]);
            assert_true(isnan(ui->ex.grid_deff[t->n_layers * H + l * H + h]));   // values: not until v
            kvq_head_stats_free(&st);
        }
    free(buf);
    kvs_ui_key(ui, 'v');
    kvs_ui_tick(ui);
    assert_true(ui->job.running && ui->job.background);
    kvs_job_wait(ui);
    kvs_ui_tick(ui);
    for (int i = 0; i < t->n_layers * H; i++) assert_false(isnan(ui->ex.grid_deff[t->n_layers * H + i]));
    assert_false(ui->job.running);   // all cells known: nothing more to do
    // preemption: a foreground job stops a background one and starts
    bg_stopped = false;
    assert_int_equal(kvs_job_start_background(ui, "spin", bg_spin, bg_done, NULL), 0);
    assert_int_equal(kvs_job_start_background(ui, "spin", bg_spin, bg_done, NULL), -1);   // one at a time
    assert_int_equal(kvs_job_start(ui, "quick", fg_quick, NULL, NULL), 0);
    assert_true(bg_stopped);
    assert_false(ui->job.background);
    kvs_job_wait(ui);
    // Esc stops the grid (cells stay "-") until r
    kvs_exec_line(&f->s, "load " TRACE);   // a new trace: a fresh grid
    kvs_ui_tick(ui);
    assert_true(ui->job.running && ui->job.background);
    kvs_ui_key(ui, 27);
    kvs_job_wait(ui);
    if (ui->ex.grid_stopped) {   // (the job may have finished before Esc reached it)
        kvs_ui_tick(ui);
        assert_false(ui->job.running);
        assert_shows(ui, "r in the explorer resumes");
        kvs_ui_key(ui, 'r');
        assert_true(ui->job.running);
        kvs_job_wait(ui);
    }
    kvs_ui_tick(ui);
    assert_hides(ui, "...");
}

// A trace opened without its scan is not the session's until the check job
// passed; a NaN is the same error as a plain open gives, and no trace.
static bool cancel_now(double fraction, const char *stage, double eta_s, void *user)
{
    (void)fraction, (void)stage, (void)eta_s, (void)user;
    return true;
}

static void test_open_checks_in_background(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    const char *nan_path = "tests/data/tr_nan_keys.safetensors";
    kvq_trace *t = NULL;
    assert_int_not_equal(kvq_trace_open(nan_path, NULL, &t), KVQ_OK);
    char plain[512];
    snprintf(plain, sizeof plain, "%s", kvq_last_error());
    assert_non_null(strstr(plain, "NaN at head 1, token 3, channel 5"));
    kvq_trace_opts o = {.defer_scan = true};
    assert_int_equal(kvq_trace_open(nan_path, &o, &t), KVQ_OK);   // the header alone is fine
    assert_int_equal(kvq_trace_validate(t, NULL), KVQ_ERR_NONFINITE);
    assert_string_equal(kvq_last_error(), plain);
    kvq_trace_free(t);
    // cancelled between rounds (the sample trace has more tensors than a round), then passes
    assert_int_equal(kvq_trace_open(TRACE, &o, &t), KVQ_OK);
    kvq_progress p = {.fn = cancel_now};
    kvq_progress_begin(&p);
    assert_int_equal(kvq_trace_validate(t, &p), KVQ_ERR_CANCELLED);
    assert_int_equal(kvq_trace_validate(t, NULL), KVQ_OK);
    assert_int_equal(kvq_trace_validate(t, &p), KVQ_OK);   // already scanned
    kvq_trace_free(t);
    // the studio's open: shape on screen, no numbers, then the session's trace
    kvs_exec_line(&f->s, "view explorer");
    assert_int_equal(kvq_trace_open(TRACE, &o, &t), KVQ_OK);
    const kvq_trace *old = f->s.trace;
    assert_int_equal(kvs_explorer_open(ui, t), 0);
    assert_true(kvs_job_busy(ui));
    assert_true(f->s.trace == old);   // not yet
    kvs_job_wait(ui);
    assert_true(f->s.trace == t);
    assert_null(ui->ex.pending);
    assert_shows(ui, "layer 0, kv head 0: keys");
    // a NaN: the error in the explorer, no trace
    assert_int_equal(kvq_trace_open(nan_path, &o, &t), KVQ_OK);
    assert_int_equal(kvs_explorer_open(ui, t), 0);
    kvs_job_wait(ui);
    assert_null(ui->ex.pending);
    assert_non_null(strstr(ui->ex.open_err, "NaN at head 1, token 3, channel 5"));
    // `load PATH` at the prompt opens the same way; a command typed meanwhile waits for the scan
    assert_int_equal(kvs_ui_exec(ui, "load " TRACE), 0);
    assert_non_null(ui->ex.pending);
    assert_shows(ui, "checking every tensor for NaN/Inf");
    assert_int_equal(kvs_ui_exec(ui, "info"), 0);   // waited, then ran on the checked trace
    assert_null(ui->ex.pending);
    assert_non_null(f->s.trace);
    assert_string_equal(f->s.trace->path, TRACE);
    assert_int_not_equal(kvs_ui_exec(ui, "load no/such/file.safetensors"), 0);
    assert_null(ui->ex.pending);
}

// A head_dim 512 trace (issue 17: the explorer overread a 256-entry stack
// array, ASan in widgets.c from explorer.c) draws in every view; a trace
// whose metadata holds escape sequences puts none on the screen.
static void test_wide_and_escaped_traces(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    assert_int_equal(kvs_session_load(&f->s, "tests/data/tr_head_dim_512.safetensors", NULL), 0);
    assert_shows(ui, "layer 0, kv head 0: keys");
    assert_shows(ui, "of 512");   // d_eff of 512
    assert_shows(ui, "max |k| per channel");
    kvs_ui_key(ui, 'v');
    assert_shows(ui, "max |v| per channel");
    for (const char *v = "123456"; *v; v++) {
        kvs_ui_key(ui, (unsigned char)*v);
        grab(ui);
    }
    kvs_ui_key(ui, '1');
    assert_int_equal(kvs_session_load(&f->s, "tests/data/tr_escape_meta.safetensors", NULL), 0);
    for (const char *v = "123456"; *v; v++) {
        kvs_ui_key(ui, (unsigned char)*v);
        assert_null(strchr(grab(ui), '\x1b'));
    }
}

static void test_lab_run_and_compare(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    kvs_ui_key(ui, '2');
    assert_string_equal(f->s.view, "lab");
    assert_shows(ui, "config");
    assert_shows(ui, "turboquant_mse");
    assert_shows(ui, "TurboQuant Alg. 1");   // description from the traits table
    assert_shows(ui, "no runs yet");
    kvs_ui_key(ui, 'r');
    assert_true(kvs_job_busy(ui));
    kvs_job_wait(ui);
    assert_int_equal(f->s.n_runs, 1);
    assert_shows(ui, "run 1: turboquant_mse k3/v2, per layer");
    assert_shows(ui, "turboquant_mse k3/v2");
    assert_true(f->s.runs[0].key_cosine > 0.9 && f->s.runs[0].key_cosine < 1.0);
    // the form: row 1 is bits; Right raises it through `set bits=4`
    kvs_ui_key(ui, KEY_DOWN);
    kvs_ui_key(ui, KEY_RIGHT);
    assert_int_equal(f->s.cfg.bits, 4);
    kvs_ui_key(ui, 'r');
    kvs_job_wait(ui);
    assert_int_equal(f->s.n_runs, 2);
    assert_true(f->s.runs[1].key_cosine > f->s.runs[0].key_cosine);   // 4 bits beat 3
    assert_shows(ui, "turboquant_mse k4/v2");
    kvs_ui_key(ui, 'c');   // mark run 2, select run 1: side by side
    assert_shows(ui, "vs run 2: per layer");
    assert_shows(ui, "key cosine A  key cosine B");
    // the method picker: Enter on the method row, / filters, Enter picks
    kvs_ui_key(ui, KEY_UP);
    kvs_ui_key(ui, '\n');
    assert_shows(ui, "key method");
    assert_shows(ui, "Esc back to the form");   // the footer shows the picker's keys, not the form's
    assert_hides(ui, "Left/Right change value");
    assert_shows(ui, "llamacpp:q8_0");   // on the first page, however many rows the table grows
    keys(ui, "/q4\n");
    assert_shows(ui, "q4_0_hadamard");
    assert_hides(ui, "llamacpp:q8_0");
    kvs_ui_key(ui, KEY_DOWN);   // llamacpp:q4_0 -> llamacpp:q4_1
    kvs_ui_key(ui, KEY_DOWN);   // -> llamacpp:iq4_nl
    kvs_ui_key(ui, '\n');
    assert_string_equal(f->s.cfg.method, "llamacpp:iq4_nl");
    assert_int_equal(f->s.cfg.bits, 4);   // clamped to the method's range
    assert_shows(ui, "method             llamacpp:iq4_nl");
}

static void test_plots_and_export(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    kvs_ui_key(ui, '4');
    assert_shows(ui, "no runs with key cosine yet");
    assert_int_equal(kvs_exec_line(&f->s, "run"), 0);   // in the studio `run` goes to the worker
    kvs_job_wait(ui);
    assert_int_equal(kvs_exec_line(&f->s, "bits 2"), 0);
    assert_int_equal(kvs_exec_line(&f->s, "run"), 0);
    kvs_job_wait(ui);
    assert_int_equal(f->s.n_runs, 2);
    assert_shows(ui, "rate-distortion: key bits vs key cosine");
    assert_shows(ui, "turboquant_mse v2");   // one curve per configuration up to its key bits
    assert_shows(ui, "key bits (bits/coord)");
    kvs_ui_key(ui, 'a');   // the lab's metric, under its own name
    assert_shows(ui, "key bits vs attention error (keys)");
    kvs_ui_key(ui, 'a');   // lab runs have no replay figure: nothing plotted under that name
    assert_shows(ui, "no runs with output error yet");
    kvs_ui_key(ui, 'a');
    kvs_ui_key(ui, 'a');   // back to key cosine
    kvs_ui_key(ui, KEY_RIGHT);
    assert_shows(ui, "compression of every run: fp16 K+V bytes / record bytes held");
    assert_shows(ui, "2 turboquant_mse k2/v2");
    kvs_ui_key(ui, KEY_RIGHT);
    assert_shows(ui, "per-layer key bit allocation: uniform");
    assert_shows(ui, "layer 5");
    kvs_ui_key(ui, KEY_RIGHT);
    assert_shows(ui, "k-means convergence");
    kvs_ui_key(ui, '\n');
    kvs_job_wait(ui);
    assert_shows(ui, "keys of layer 0 head 0, k = 16");
    assert_true(ui->plots.n_inertia >= 2);
    assert_true(ui->plots.inertia[ui->plots.n_inertia - 1] <= ui->plots.inertia[0]);

    char path[160], buf[4096];
    snprintf(path, sizeof path, "%s/runs.json", f->state_dir);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "export json %s", path);
    assert_int_equal(kvs_exec_line(&f->s, cmd), 0);
    FILE *j = fopen(path, "r");
    assert_non_null(j);
    size_t n = fread(buf, 1, sizeof buf - 1, j);
    buf[n] = 0;
    fclose(j);
    assert_non_null(strstr(buf, "\"key_cosine\""));
    assert_non_null(strstr(buf, "turboquant_mse k2/v2"));
    snprintf(path, sizeof path, "%s/runs.csv", f->state_dir);
    snprintf(cmd, sizeof cmd, "export csv %s", path);
    assert_int_equal(kvs_exec_line(&f->s, cmd), 0);
    FILE *c = fopen(path, "r");
    assert_non_null(c);
    int lines = 0;
    while (fgets(buf, sizeof buf, c)) lines++;
    fclose(c);
    assert_int_equal(lines, 3);   // header + 2 runs
    snprintf(path, sizeof path, "%s/plot.svg", f->state_dir);
    snprintf(cmd, sizeof cmd, "export svg %s", path);
    kvs_ui_key(ui, KEY_RIGHT);   // back to rate-distortion
    assert_int_equal(kvs_exec_line(&f->s, cmd), 0);
    FILE *g = fopen(path, "r");
    assert_non_null(g);
    n = fread(buf, 1, sizeof buf - 1, g);
    buf[n] = 0;
    fclose(g);
    assert_non_null(strstr(buf, "<svg"));
    assert_non_null(strstr(buf, "<polyline"));
    assert_int_not_equal(kvs_exec_line(&f->s, "export pdf x.pdf"), 0);
}

static void test_dashboard(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    kvs_ui_key(ui, '3');
    assert_shows(ui, "Space plays the trace");
    kvs_ui_key(ui, '.');   // the first step is the prefill, on the worker
    assert_true(kvs_job_busy(ui));
    assert_shows(ui, "prefilling");
    kvs_job_wait(ui);
    assert_shows(ui, "token 512 / 1024");
    assert_int_equal(kvs_exec_line(&f->s, "step 5"), 0);
    assert_shows(ui, "token 517 / 1024");
    assert_shows(ui, "distortion (keys)");
    assert_shows(ui, "attention vs exact");
    assert_shows(ui, "memory");
    assert_shows(ui, "key norms");
    assert_shows(ui, "latency");
    assert_shows(ui, "paused");
    kvs_ui_key(ui, '+');
    assert_int_equal(ui->dash.speed, 8);
    kvs_ui_key(ui, ' ');
    assert_true(ui->dash.playing);
    kvs_ui_tick(ui);
    assert_true(kvq_replay_pos(ui->dash.replay) > 517);
    assert_shows(ui, "playing");
    kvs_ui_key(ui, ' ');
    assert_false(ui->dash.playing);
}

// Issue 17: every token held in fp16 sinks: the dashboard says n/a, never nan.
static void test_dashboard_all_fp16(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    assert_int_equal(kvs_exec_line(&f->s, "set sink_tokens=1024"), 0);
    kvs_ui_key(ui, '3');
    assert_shows(ui, "sink_tokens=1024");   // the label says what runs
    kvs_ui_key(ui, '.');
    kvs_job_wait(ui);
    assert_int_equal(kvs_exec_line(&f->s, "step 3"), 0);
    assert_shows(ui, "key cosine n/a");
    assert_shows(ui, "no key compressed yet");
    assert_hides(ui, "nan");
    assert_int_equal(kvs_exec_line(&f->s, "set sink_tokens=0"), 0);
}

static void test_generate(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    kvs_ui_key(ui, '3');
    ui->gen.max_tokens = 12;
    ui->gen.temperature = 0.01;   // near-greedy; still deterministic for the seed
    kvs_ui_key(ui, 'g');
    assert_true(ui->gen.running);
    assert_int_not_equal(kvs_dash_play(ui, 1), 0);   // the replay waits while generating
    kvs_job_wait(ui);
    assert_false(ui->gen.running);
    assert_true(ui->gen.have_snap);
    assert_int_equal(ui->gen.text_len, (int)strlen("def fibonacci(n):\n") + 12);
    assert_shows(ui, "generated text");
    assert_shows(ui, "def fibonacci(n):");
    assert_shows(ui, "distortion (keys)");
    assert_shows(ui, "compression");
    kvs_ui_key(ui, '.');   // replay keys bring the replay back
    assert_false(ui->gen.active);
    kvs_job_wait(ui);
    assert_shows(ui, "token 512 / 1024");
}

static void test_calibrate_and_cancel(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    kvs_ui_key(ui, '5');
    assert_shows(ui, "ratequant");
    assert_shows(ui, "spectral");
    assert_shows(ui, "no artifacts yet");
    kvs_ui_key(ui, 'f');   // first 2 layers only
    assert_int_equal(ui->cal.opts[ui->cal.sel].layers, 2);
    kvs_ui_key(ui, '+');   // ratequant's target_bits; vecinfer keeps its own
    assert_true(ui->cal.opts[0].target_bits > ui->cal.opts[1].target_bits);
    kvs_ui_key(ui, '\n');
    assert_true(kvs_job_busy(ui));
    assert_shows(ui, "calibrating ratequant");
    kvs_ui_key(ui, 27);    // Esc cancels at the next progress report
    kvs_job_wait(ui);
    assert_shows(ui, "cancelled");
    assert_null(f->s.art);
    kvs_ui_key(ui, '\n');
    kvs_job_wait(ui);
    assert_non_null(f->s.art);
    assert_shows(ui, "bit allocation per layer");
    assert_shows(ui, "ratequant.bits");
}

// The model view: the shape of the session's model, the grid filled by a
// job (each cell a ppl run), `ppl` as a job on the session's config that Esc
// cancels, and a second identical grid that keeps what was computed.
static void test_model_view(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    snprintf(f->s.model_dir, sizeof f->s.model_dir, "sample_data/refmodel");
    kvs_ui_key(ui, '7');
    assert_shows(ui, "layers    6");
    assert_shows(ui, "params    19.1M (3 files)");
    assert_shows(ui, "tokenizer bytes (vocab 256)");
    char text[128], line[256];
    snprintf(text, sizeof text, "%s/t64.txt", f->state_dir);
    FILE *fp = fopen(text, "w");
    assert_non_null(fp);
    fputs("import re\n\n__all__ = ['TextWrapper', 'wrap', 'fill', 'dedent', 'indent']\n", fp);
    fclose(fp);
    snprintf(line, sizeof line, "grid --methods q8_0,kivi --bits 2 --value-bits 16 --text %s", text);
    assert_int_equal(kvs_ui_exec(ui, line), 0);
    assert_true(kvs_job_busy(ui));
    kvs_job_wait(ui);
    const kvs_grid_cell *q8 = &ui->model.cells[0][0], *kv = &ui->model.cells[1][0];
    assert_int_equal(q8->state, KVS_CELL_DONE);
    assert_int_equal(kv->state, KVS_CELL_DONE);
    assert_true(q8->kl > 0 && q8->kl < kv->kl);   // 8 bits disturb less than 2
    assert_true(fabs(q8->key_bits - 8.5) < 1e-9 && fabs(q8->value_bits - 16) < 1e-9);
    assert_true(fabs(q8->ref_bpb - kv->ref_bpb) < 1e-12);
    assert_shows(ui, "grid done: 2 cells");
    assert_shows(ui, "llamacpp:q8_0");
    assert_shows(ui, "model: bits/byte vs key record bits");
    double bpb = kv->bpb;
    assert_int_equal(kvs_ui_exec(ui, line), 0);   // the same grid: nothing to compute again
    kvs_job_wait(ui);
    assert_int_equal(ui->model.cells[1][0].state, KVS_CELL_DONE);
    assert_true(ui->model.cells[1][0].bpb == bpb);
    // ppl: a job on the session's model and method; Esc cancels it
    snprintf(line, sizeof line, "ppl --text %s", text);
    assert_int_equal(kvs_ui_exec(ui, line), 0);
    assert_true(kvs_job_busy(ui));
    kvs_ui_key(ui, 27);
    kvs_job_wait(ui);
    assert_shows(ui, "ppl cancelled after");
    assert_int_equal(kvs_ui_exec(ui, line), 0);
    kvs_job_wait(ui);
    bool found = false;
    for (int i = 0; i < ui->log_n; i++) found |= strstr(kvs_ui_log_line(ui, i), "KL(fp16 || turboquant_mse k3") != NULL;
    assert_true(found);
}

static void test_help_and_filter(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    kvs_ui_key(ui, '?');
    assert_shows(ui, "Keys everywhere");
    assert_shows(ui, "quit (asks while a job runs)");   // from kvs_global_keys
    assert_shows(ui, "load PATH");                      // from kvs_commands
    assert_shows(ui, "step one token");                 // from the dashboard's key table
    keys(ui, "/export");
    assert_shows(ui, "export json|csv|svg PATH");
    assert_hides(ui, "load PATH");
    kvs_ui_key(ui, 27);
    assert_shows(ui, "load PATH");
    // the metrics glossary comes from the table in engine/metrics.c
    keys(ui, "/mean |o - o^|");
    assert_shows(ui, "Metrics (KL in bits everywhere)");
    assert_shows(ui, "output error");
    assert_hides(ui, "attention error (keys)");
    kvs_ui_key(ui, 27);
    keys(ui, "/attention KL");
    assert_shows(ui, "attention KL (bits)");
    kvs_ui_key(ui, 27);
}

static void test_too_small_and_resize(void **state)
{
    fixture *f = *state;
    resizeterm(20, 60);
    assert_shows(f->ui, "terminal too small (need 80x24)");
    resizeterm(40, 120);
    assert_hides(f->ui, "terminal too small");
    assert_shows(f->ui, "layers x kv heads");
}

static void test_no_color_and_ascii(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    setenv("NO_COLOR", "1", 1);
    kvs_colors_init(ui);
    unsetenv("NO_COLOR");
    assert_int_equal(ui->colors, 0);
    assert_int_equal(kvs_attr(ui, KVS_C_SEL), A_REVERSE);
    ui->utf8 = false;
    grab(ui);
    chtype row[8];
    mvinchnstr(1, 0, row, 4);
    assert_int_equal((int)(row[0] & A_CHARTEXT), '+');
    assert_int_equal((int)(row[1] & A_CHARTEXT), '-');
    // selected grid cell carries the attribute, not a colour
    assert_shows(ui, "layer 0, kv head 0: keys");
}

static void test_widgets(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    erase();
    ui->utf8 = false;
    const float v[] = {NAN, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    kvs_w_sparkline(ui, 0, 0, 10, v, 10, A_NORMAL);
    char row[64];
    mvinnstr(0, 0, row, 10);
    assert_string_equal(row, " .:-=+*#%@");   // NaN blank, then the ASCII ramp
    kvs_w_hbar(ui, 1, 0, 10, 0.5, A_NORMAL);
    mvinnstr(1, 0, row, 10);
    assert_string_equal(row, "#####.....");
    ui->utf8 = true;
    kvs_w_hbar(ui, 2, 0, 4, 0.5, A_NORMAL);
    mvinnstr(2, 0, row, 30);
    assert_int_equal(strncmp(row, "\u2588\u2588  ", 8), 0);   // 2 full blocks, 2 blanks
    static kvs_plot p;
    kvs_plot_init(&p, (kvs_rect){5, 10, 4, 8}, true, 0, 1, 0, 1);
    kvs_plot_line(&p, 0, 0, 1, 1, 0);
    assert_int_equal(p.dw, 16);
    assert_int_equal(p.dh, 16);
    assert_true(p.dots[3][0] & 0x40);    // (0,0) is the bottom-left dot of the bottom-left cell
    assert_true(p.dots[0][7] & 0x08);    // (1,1) is the top-right dot of the top-right cell
    assert_int_equal(p.dots[0][0], 0);   // nothing top-left
    kvs_plot_draw(ui, &p, NULL, NULL);
    mvinnstr(8, 10, row, 30);
    assert_int_equal((unsigned char)row[0], 0xE2);   // U+28xx braille, UTF-8 E2 A0..A3 xx
    assert_true((unsigned char)row[1] >= 0xA0 && (unsigned char)row[1] <= 0xA3);
}

// Numbers that fit or say they cannot; lines and tables that drop, never cut.
static void test_fitting(void **state)
{
    (void)state;
    char b[32];
    static const struct { double v; int w, dec; const char *want; } cases[] = {
        {0.9835, 8, 4, "0.9835"}, {0.9835, 4, 4, "0.98"}, {183000, 7, 3, "183000"}, {183000, 5, 3, "183k"},
        {1.83e5, 4, 3, "183k"}, {12345678, 4, 0, "12M"}, {0.00002, 6, 5, "2e-5"}, {0.00002, 7, 5, "0.00002"},
        {-0.000012, 6, 6, "-1e-5"}, {10.91, 5, 2, "10.91"}, {10.91, 4, 2, "10.9"}, {NAN, 3, 2, "n/a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int len = kvs_fmt_num(cases[i].v, cases[i].w, cases[i].dec, b, sizeof b);
        if (len < 0 || strcmp(b, cases[i].want)) print_message("case %zu: got '%s'\n", i, b);
        assert_string_equal(b, cases[i].want);
        assert_true(len <= cases[i].w);
    }
    assert_int_equal(kvs_fmt_num(123456, 2, 0, b, sizeof b), -1);   // the caller drops it
    assert_int_equal(kvs_fmt_num(0.5, 2, 2, b, sizeof b), -1);      // "0.5" needs 3, "5e-1" 4
    kvs_part p[3];
    kvs_metric_part(&p[0], KVQ_M_KEY_COSINE, 0.98351, 0);
    kvs_metric_part(&p[1], KVQ_M_KEY_COSINE_MIN, 0.9622, 1);
    kvs_metric_part(&p[2], KVQ_M_ATTN_KL, 0.05185, 2);
    char line[256];
    assert_int_equal(kvs_fit_parts(p, 3, 200, "  ", line, sizeof line), 3);
    assert_string_equal(line, "key cosine 0.9835  min key cosine 0.9622  attention KL 0.05185 bits");
    assert_int_equal(kvs_fit_parts(p, 3, 47, "  ", line, sizeof line), 3);   // labels shorten, least important first
    assert_string_equal(line, "key cosine 0.9835  min 0.9622  KL 0.05185 bits");
    assert_int_equal(kvs_fit_parts(p, 3, 22, "  ", line, sizeof line), 2);   // then figures go, never cut
    assert_string_equal(line, "cos 0.9835  min 0.9622");
    assert_int_equal(kvs_fit_parts(p, 3, 5, "  ", line, sizeof line), 0);
    kvs_col c[4] = {{.head = "#", .min_w = 3, .right = true}, {.head = "run", .min_w = 10, .flex = true},
                    {.head = "attention error (keys)", .brief = "attn err", .prio = 1, .min_w = 7},
                    {.head = "output error", .brief = "out err", .prio = 2, .min_w = 7}};
    int w[4];
    const char *h[4];
    assert_int_equal(kvs_table_fit(c, 4, 80, w, h), 4);
    assert_string_equal(h[2], "attention error (keys)");
    assert_int_equal(w[1], 80 - (3 + 1) - (22 + 1) - (12 + 1) - (10 + 1) + 10);   // the flex column takes the rest
    assert_int_equal(kvs_table_fit(c, 4, 40, w, h), 4);
    assert_string_equal(h[2], "attn err");
    assert_int_equal(kvs_table_fit(c, 4, 30, w, h), 3);   // output error goes first
    assert_int_equal(w[3], 0);
    assert_true(w[2] != 0);
}

// ---- the `:` prompt ----
typedef struct {
    char words[64][64];
    int n;
} words;

static void collect(const char *w, void *user)
{
    words *ws = user;
    if (ws->n < 64) snprintf(ws->words[ws->n++], 64, "%s", w);
}

static bool has(const words *ws, const char *w)
{
    for (int i = 0; i < ws->n; i++)
        if (!strcmp(ws->words[i], w)) return true;
    return false;
}

static void test_completion(void **state)
{
    (void)state;
    words w = {0};
    kvs_prompt_complete("me", 0, "me", collect, &w);
    assert_int_equal(w.n, 2);
    assert_true(has(&w, "method") && has(&w, "methods"));
    w.n = 0;
    kvs_prompt_complete("method turbo", 7, "turbo", collect, &w);
    assert_int_equal(w.n, 3);
    assert_true(has(&w, "turboquant_prod"));
    w.n = 0;
    kvs_prompt_complete("set bi", 4, "bi", collect, &w);
    assert_true(has(&w, "bits=") && has(&w, "bit_allocation="));
    w.n = 0;
    kvs_prompt_complete("quantize --value-b", 9, "--value-b", collect, &w);
    assert_true(has(&w, "--value-bits"));
    // options come from each command's table: what the parser accepts
    w.n = 0;
    kvs_prompt_complete("ppl --prom", 4, "--prom", collect, &w);
    assert_int_equal(w.n, 0);
    kvs_prompt_complete("generate --prom", 9, "--prom", collect, &w);
    assert_int_equal(w.n, 1);
    assert_true(has(&w, "--prompt"));
    w.n = 0;
    kvs_prompt_complete("info --me", 5, "--me", collect, &w);
    assert_int_equal(w.n, 0);
    kvs_prompt_complete("quantize --val", 9, "--val", collect, &w);
    assert_true(has(&w, "--values") && has(&w, "--value-bits") && has(&w, "--value-method"));
    w.n = 0;
    kvs_prompt_complete("run method=q4", 4, "method=q4", collect, &w);
    assert_true(has(&w, "method=q4_0") && has(&w, "method=q4_0_hadamard"));
    w.n = 0;
    kvs_prompt_complete("method llamacpp:q5", 7, "llamacpp:q5", collect, &w);
    assert_int_equal(w.n, 2);   // engine:format names complete past the colon
    assert_true(has(&w, "llamacpp:q5_0") && has(&w, "llamacpp:q5_1"));
    w.n = 0;
    kvs_prompt_complete("method iq4", 7, "iq4", collect, &w);
    assert_true(w.n == 1 && has(&w, "iq4_nl"));   // an old name, kept as an alias
    w.n = 0;
    kvs_prompt_complete("calibrate spec", 10, "spec", collect, &w);
    assert_int_equal(w.n, 1);
    assert_true(has(&w, "spectral"));
    w.n = 0;
    kvs_prompt_complete("calibrate ratequant target", 20, "target", collect, &w);
    assert_true(has(&w, "target-bits="));
    w.n = 0;
    kvs_prompt_complete("view pl", 5, "pl", collect, &w);
    assert_int_equal(w.n, 1);
    assert_true(has(&w, "plots"));
    w.n = 0;
    kvs_prompt_complete("load sample_data/traces/co", 5, "sample_data/traces/co", collect, &w);
    assert_int_equal(w.n, 1);
    assert_true(has(&w, "sample_data/traces/code-1k.safetensors"));
}

static void test_prompt_runs_commands(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    kvs_ui_key(ui, ':');
    assert_true(ui->prompt_active);
    keys(ui, "bits 5");
    assert_shows(ui, ":bits 5");
    kvs_ui_key(ui, KEY_LEFT);
    kvs_ui_key(ui, KEY_BACKSPACE);   // readline editing: "bits5"
    kvs_ui_key(ui, ' ');
    kvs_ui_key(ui, '\n');
    assert_false(ui->prompt_active);
    assert_int_equal(f->s.cfg.bits, 5);
    keys(ui, ":view plots\n");
    assert_string_equal(kvs_views[ui->view]->name, "plots");
    keys(ui, ":bits 99\n");            // an error lands in the status line, nothing crashes
    assert_int_equal(f->s.cfg.bits, 5);
    assert_true(ui->status_error);
    kvs_ui_key(ui, ':');
    kvs_ui_key(ui, KEY_UP);            // history: the last line
    kvs_ui_key(ui, KEY_UP);
    assert_shows(ui, ":view plots");
    kvs_ui_key(ui, 27);
    assert_false(ui->prompt_active);
    char path[160];
    snprintf(path, sizeof path, "%s/kvstudio/history", f->state_dir);
    FILE *h = fopen(path, "r");
    assert_non_null(h);
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, h);
    buf[n] = 0;
    fclose(h);
    assert_non_null(strstr(buf, "view plots"));
    keys(ui, ":quit\n");
    assert_true(f->s.quit);
}

static void test_quit_asks_while_a_job_runs(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    assert_int_equal(kvs_ui_key(ui, 'q') & KVS_KEY_QUIT, KVS_KEY_QUIT);
    kvs_ui_key(ui, '5');
    kvs_ui_key(ui, '\n');   // ratequant on the whole trace
    assert_int_equal(kvs_ui_key(ui, 'q') & KVS_KEY_QUIT, 0);
    assert_shows(ui, "quit anyway? y/n");
    assert_int_equal(kvs_ui_key(ui, 'n') & KVS_KEY_QUIT, 0);
    assert_int_equal(kvs_ui_key(ui, KEY_F(10)) & KVS_KEY_QUIT, 0);
    assert_int_equal(kvs_ui_key(ui, 'y') & KVS_KEY_QUIT, KVS_KEY_QUIT);
    kvs_job_cancel(ui);
    kvs_job_wait(ui);
}

// ---- batch ----
static void test_batch_run_and_refusal(void **state)
{
    (void)state;
    kvs_session s;
    kvs_session_init(&s);
    s.out = fixture_quiet_out;
    assert_int_not_equal(kvs_exec_line(&s, "run"), 0);   // no trace yet
    assert_int_equal(kvs_exec_line(&s, "load " TRACE), 0);
    assert_int_equal(kvs_exec_line(&s, "method q8_0"), 0);
    assert_int_equal(kvs_exec_line(&s, "run"), 0);
    assert_int_equal(s.n_runs, 1);
    assert_true(s.runs[0].key_cosine > 0.999);
    assert_true(s.runs[0].key_bits > 8.4 && s.runs[0].key_bits < 8.6);
    assert_int_not_equal(kvs_exec_line(&s, "view plots"), 0);   // studio only
    assert_int_not_equal(kvs_exec_line(&s, "play"), 0);
    // the studio never starts without a terminal
    int saved = dup(0);
    int fd = open("/dev/null", O_RDONLY);
    dup2(fd, 0);
    assert_int_equal(kvs_tui_run(&s, NULL), 2);
    dup2(saved, 0);
    close(fd);
    close(saved);
    kvs_session_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_explorer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explorer_background, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_checks_in_background, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wide_and_escaped_traces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lab_run_and_compare, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plots_and_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dashboard_all_fp16, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dashboard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calibrate_and_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_and_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_small_and_resize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_color_and_ascii, setup, teardown),
        cmocka_unit_test_setup_teardown(test_widgets, setup, teardown),
        cmocka_unit_test(test_fitting),
        cmocka_unit_test(test_completion),
        cmocka_unit_test_setup_teardown(test_prompt_runs_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quit_asks_while_a_job_runs, setup, teardown),
        cmocka_unit_test(test_batch_run_and_refusal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
