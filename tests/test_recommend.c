// test_recommend.c — the recommend table (engine/recommend.c) that the CLI
// and the studio's Deploy view both print: ranking order, ranks, the Pareto
// flags against kvq_deploy_pareto, the budget fit, kvstudio's best within the
// budget, the engine filter, progress that ends at 1, cancel, bad options.
// Figures against hand computations are in tests/e2e/recommend.sh (CLI).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "recommend.h"

#define TRACE "sample_data/traces/code-1k.safetensors"

static kvq_trace *open_trace(void)
{
    kvq_trace *t = NULL;
    assert_int_equal(kvq_trace_open(TRACE, NULL, &t), KVQ_OK);
    return t;
}

typedef struct {
    double last;
    int calls;
    bool monotonic;
    int cancel_after;   // 0 = never
} prog;

static bool on_progress(double f, const char *stage, double eta, void *user)
{
    (void)stage, (void)eta;
    prog *p = user;
    if (f + 1e-12 < p->last) p->monotonic = false;
    p->last = f;
    return p->cancel_after && ++p->calls >= p->cancel_after;
}

static void test_vllm_table(void **st)
{
    (void)st;
    kvq_trace *t = open_trace();
    kvq_recommend_opts o;
    kvq_recommend_opts_default(&o);
    o.engine = "vllm", o.context = 8192, o.budget_gib = 0.03, o.seq_len = 16;
    kvq_recommend_table *tb = calloc(1, sizeof *tb);
    prog pg = {.monotonic = true};
    kvq_progress p = {.fn = on_progress, .user = &pg};
    kvq_progress_begin(&p);
    assert_int_equal(kvq_recommend_run(t, NULL, &o, &p, tb), KVQ_OK);
    assert_true(pg.monotonic);
    assert_true(pg.last == 1.0);
    int n_vllm = 0;
    for (int i = 0; i < kvq_n_deploy_formats; i++) n_vllm += !strcmp(kvq_deploy_formats[i].engine, "vllm");
    assert_int_equal(tb->n, n_vllm);
    assert_int_equal(tb->n_ok, n_vllm);
    assert_int_equal(tb->replayed, 16);
    assert_int_equal(tb->opts.context, 8192);
    assert_true(tb->by_output);   // the sample trace has queries
    assert_int_equal(kvq_recommend_rank_metric(tb), KVQ_M_OUTPUT_ERROR);
    double mem[KVQ_REC_MAX_ROWS], err[KVQ_REC_MAX_ROWS];
    bool front[KVQ_REC_MAX_ROWS], seen_auto = false;
    for (int i = 0; i < tb->n; i++) {
        const kvq_recommend_row *r = &tb->rows[i];
        assert_string_equal(r->engine, "vllm");
        assert_int_equal(r->rank, i + 1);
        // fp16 (auto): 2 x 128 bytes x 2 (K, V) x 2 heads x 6 layers; fp8 half that
        if (!strcmp(r->format, "auto")) {
            assert_true(r->v[KVQ_REC_BYTES_PER_TOKEN] == 6144);
            assert_false(r->in_budget);   // 0.0469 GiB > 0.03
            seen_auto = true;
        }
        if (!strcmp(r->format, "fp8")) assert_true(r->v[KVQ_REC_BYTES_PER_TOKEN] == 3072);
        assert_true(fabs(r->v[KVQ_REC_GIB] - r->v[KVQ_REC_BYTES_PER_TOKEN] * 8192 / 1073741824.0) < 1e-12);
        assert_int_equal(r->in_budget, r->v[KVQ_REC_GIB] <= 0.03);
        assert_true(isfinite(r->v[KVQ_REC_OUTPUT_ERROR]) && isfinite(r->v[KVQ_REC_ATTN_KL]));
        mem[i] = r->v[KVQ_REC_BYTES_PER_TOKEN], err[i] = r->v[KVQ_REC_OUTPUT_ERROR];
        if (i) {   // fitting rows first, then by output error
            const kvq_recommend_row *q = &tb->rows[i - 1];
            assert_true(q->in_budget >= r->in_budget);
            if (q->in_budget == r->in_budget) assert_true(q->v[KVQ_REC_OUTPUT_ERROR] <= r->v[KVQ_REC_OUTPUT_ERROR]);
        }
    }
    assert_true(seen_auto);
    kvq_deploy_pareto(mem, err, tb->n, front);
    for (int i = 0; i < tb->n; i++) assert_int_equal(tb->rows[i].front, front[i]);
    // kvstudio's own best: within the same budget, not deployable in vllm
    assert_true(tb->have_best);
    assert_true(tb->own_budget_gib == 0.03);
    assert_true(tb->best.ok && tb->best.in_budget && tb->best.v[KVQ_REC_GIB] <= 0.03);
    assert_string_equal(tb->best.engine, "kvstudio");
    assert_string_equal(tb->best.flags, "not deployable in vllm");
    assert_string_equal(tb->best.format, tb->best.label);
    assert_int_equal(tb->best.rank, 0);
    free(tb);
    kvq_trace_free(t);
}

static void test_all_engines_and_filter(void **st)
{
    (void)st;
    kvq_trace *t = open_trace();
    kvq_recommend_opts o;
    kvq_recommend_opts_default(&o);
    o.seq_len = 8;
    o.budget_gib = 1e-6;   // nothing fits: no own candidate is measured
    kvq_recommend_table *tb = calloc(1, sizeof *tb);
    assert_int_equal(kvq_recommend_run(t, NULL, &o, NULL, tb), KVQ_OK);
    assert_int_equal(tb->n, kvq_n_deploy_formats);
    bool seen_lc = false, seen_vl = false, seen_mx = false;
    for (int i = 0; i < tb->n; i++) {
        seen_lc |= !strcmp(tb->rows[i].engine, "llamacpp");
        seen_vl |= !strcmp(tb->rows[i].engine, "vllm");
        seen_mx |= !strcmp(tb->rows[i].engine, "mlx");
        assert_false(tb->rows[i].in_budget);
    }
    assert_true(seen_lc && seen_vl && seen_mx);
    assert_false(tb->have_best);
    assert_true(tb->own_budget_gib == 1e-6);
    assert_non_null(strstr(tb->not_deployable, "llamacpp, vllm"));
    assert_int_equal(tb->replayed, 8);

    o.engine = "no-such-engine";   // an empty table, not an error: callers check n_ok
    assert_int_equal(kvq_recommend_run(t, NULL, &o, NULL, tb), KVQ_OK);
    assert_int_equal(tb->n, 0);
    assert_int_equal(tb->n_ok, 0);
    free(tb);
    kvq_trace_free(t);
}

static void test_cancel_and_bad_options(void **st)
{
    (void)st;
    kvq_trace *t = open_trace();
    kvq_recommend_opts o;
    kvq_recommend_opts_default(&o);
    o.seq_len = 16;
    kvq_recommend_table *tb = calloc(1, sizeof *tb);
    prog pg = {.monotonic = true, .cancel_after = 3};
    kvq_progress p = {.fn = on_progress, .user = &pg};
    kvq_progress_begin(&p);
    assert_int_equal(kvq_recommend_run(t, NULL, &o, &p, tb), KVQ_ERR_CANCELLED);
    assert_true(pg.last < 1);
    o.seq_len = t->n_tokens + 1;
    assert_int_equal(kvq_recommend_run(t, NULL, &o, NULL, tb), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "seq_len"));
    o.seq_len = 0, o.context = -5;
    assert_int_equal(kvq_recommend_run(t, NULL, &o, NULL, tb), KVQ_ERR_ARG);
    free(tb);
    kvq_trace_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vllm_table),
        cmocka_unit_test(test_all_engines_and_filter),
        cmocka_unit_test(test_cancel_and_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
