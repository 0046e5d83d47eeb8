// test_core.c — status table, errors, config defaults/check/set/get, methods table.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "kvq.h"
#include "pool.h"

static void test_status_strings(void **st)
{
    (void)st;
    for (int i = 0; i < KVQ_STATUS_COUNT; i++) assert_non_null(kvq_status_str((kvq_status)i));
    assert_string_equal(kvq_status_str(KVQ_OK), "ok");
    assert_string_equal(kvq_status_str((kvq_status)999), "unknown status");
    assert_int_equal(kvq_error(KVQ_ERR_FORMAT, "x.bin: bad %d", 7), KVQ_ERR_FORMAT);
    assert_string_equal(kvq_last_error(), "x.bin: bad 7");
}

static void test_config_defaults_valid(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    assert_null(kvq_config_check(&c));
    assert_string_equal(c.method, "turboquant_mse");
    assert_int_equal(c.bits, 3);
}

static void test_config_set_get(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    char buf[256];
    assert_int_equal(kvq_config_set(&c, "value-bits", "4"), KVQ_OK);
    assert_int_equal(c.value_bits, 4);
    assert_int_equal(kvq_config_set(&c, "use_hadamard", "false"), KVQ_OK);
    assert_false(c.use_hadamard);
    assert_int_equal(kvq_config_set(&c, "seed", "123456789012"), KVQ_OK);
    kvq_config_get(&c, "seed", buf, sizeof buf);
    assert_string_equal(buf, "123456789012");
    assert_int_equal(kvq_config_set(&c, "bit_allocation", "layer_0:2,layer_1:3,layer_2:4"), KVQ_OK);
    assert_int_equal(c.n_bit_allocation, 3);
    assert_int_equal(c.bit_allocation[1], 3);
    kvq_config_get(&c, "bit_allocation", buf, sizeof buf);
    assert_string_equal(buf, "2,3,4");
    assert_int_equal(kvq_config_set(&c, "bit_allocation", "2,3"), KVQ_OK);
    assert_int_equal(c.n_bit_allocation, 2);
    assert_null(kvq_config_check(&c));
}

static void test_config_bad_values(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    assert_int_equal(kvq_config_set(&c, "bits", "17"), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "bits"));
    assert_int_equal(kvq_config_set(&c, "bits", "3x"), KVQ_ERR_ARG);
    assert_int_equal(kvq_config_set(&c, "use_hadamard", "maybe"), KVQ_ERR_ARG);
    assert_int_equal(kvq_config_set(&c, "nonsense", "1"), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "unknown option 'nonsense'"));
    assert_int_equal(kvq_config_set(&c, "bit_allocation", "layer_1:2"), KVQ_ERR_ARG);
    assert_int_equal(kvq_config_set(&c, "bit_allocation", "2,0"), KVQ_ERR_ARG);
    assert_int_equal(kvq_config_set(&c, "seed", "-1"), KVQ_ERR_ARG);
    assert_int_equal(c.bits, 3);   // failed sets change nothing
    // bits 0 and 17 and unknown methods fail the check with the field named
    c.bits = 0;
    assert_non_null(strstr(kvq_config_check(&c), "bits"));
    c.bits = 17;
    assert_non_null(strstr(kvq_config_check(&c), "bits"));
    c.bits = 3;
    strcpy(c.method, "zipquant");
    const char *why = kvq_config_check(&c);
    assert_non_null(why);
    assert_non_null(strstr(why, "unknown method 'zipquant'"));
    assert_non_null(strstr(why, "turboquant_mse"));
}

static void test_methods_table(void **st)
{
    (void)st;
    assert_true(kvq_n_methods >= 16);
    for (int i = 0; i < kvq_n_methods; i++) {
        const kvq_method *m = &kvq_methods[i];
        assert_non_null(m->name);
        assert_non_null(m->plan_new);
        assert_non_null(m->encode);
        assert_non_null(m->score);
        assert_true(m->min_bits <= m->max_bits);
        assert_ptr_equal(kvq_method_find(m->name), m);
        for (int j = 0; j < i; j++) assert_string_not_equal(m->name, kvq_methods[j].name);
    }
    const kvq_method *m;
    assert_int_equal(kvq_method_lookup("nope", &m), KVQ_ERR_UNKNOWN_METHOD);
    assert_null(m);
    assert_non_null(strstr(kvq_last_error(), "known: fp16"));
}

static void test_quantizer_bits_range(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    kvq_quantizer q;
    kvq_plan_params p = {.bits = 9, .head_dim = 128, .cfg = &c};
    assert_int_equal(kvq_quantizer_init(&q, "turboquant_mse", &p), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "bits 9 out of range"));
    p.bits = 3;
    p.head_dim = 1024;
    assert_int_equal(kvq_quantizer_init(&q, "turboquant_mse", &p), KVQ_ERR_ARG);
    assert_int_equal(kvq_quantizer_init(&q, "nope", &p), KVQ_ERR_UNKNOWN_METHOD);
}

// Side tables are counted: a dense rotation holds d x d floats, Hadamard d signs.
static void test_side_bytes(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    kvq_quantizer q;
    kvq_plan_params p = {.bits = 3, .head_dim = 128, .cfg = &c};
    const size_t cb3 = sizeof(float) * (2 * 8 - 1);   // 8 levels + 7 thresholds
    c.use_hadamard = false;
    assert_int_equal(kvq_quantizer_init(&q, "turboquant_mse", &p), KVQ_OK);
    assert_int_equal(q.side, sizeof(float) * 128 * 128 + cb3);
    kvq_quantizer_free(&q);
    c.use_hadamard = true;
    assert_int_equal(kvq_quantizer_init(&q, "turboquant_mse", &p), KVQ_OK);
    assert_int_equal(q.side, sizeof(float) * 128 + cb3);
    kvq_quantizer_free(&q);
    p.bits = 8;
    assert_int_equal(kvq_quantizer_init(&q, "q8_0", &p), KVQ_OK);
    assert_int_equal(q.side, 0);
    kvq_quantizer_free(&q);
    p.bits = 1;
    assert_int_equal(kvq_quantizer_init(&q, "qjl", &p), KVQ_OK);
    assert_int_equal(q.side, sizeof(float) * 128 * 128);   // the sketch matrix
    kvq_quantizer_free(&q);
}

static bool cancel_at_half(double f, const char *stage, double eta, void *user)
{
    (void)stage;
    (void)eta;
    (*(int *)user)++;
    return f >= 0.5;
}

static void test_progress(void **st)
{
    (void)st;
    int calls = 0;
    kvq_progress p = {.fn = cancel_at_half, .user = &calls};
    kvq_progress_begin(&p);
    assert_false(kvq_progress_report(&p, 0.25, "a"));
    assert_true(kvq_progress_report(&p, 0.5, "b"));
    assert_int_equal(calls, 2);
    assert_false(kvq_progress_report(NULL, 0.5, "c"));
}

// The pool runs every task exactly once whatever the thread count, across
// back-to-back jobs (workers polling between them), a job of one task,
// and a shutdown followed by a restart.
static int pool_hits[64];
static void pool_task(void *u, int t)
{
    (void)u;
    __atomic_fetch_add(&pool_hits[t], 1, __ATOMIC_RELAXED);
}

static void test_pool_every_task_once(void **st)
{
    (void)st;
    for (int r = 0; r < 600; r++) {
        kvq_threads_set(1 + r % 3);
        int n = 1 + r % 40;
        memset(pool_hits, 0, sizeof pool_hits);
        kvq_parallel_for(n, pool_task, NULL);
        for (int t = 0; t < 64; t++) assert_int_equal(pool_hits[t], t < n ? 1 : 0);
        if (r % 200 == 199) kvq_threads_shutdown();
    }
    kvq_threads_set(0);
    kvq_threads_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_strings),    cmocka_unit_test(test_config_defaults_valid),
        cmocka_unit_test(test_config_set_get),    cmocka_unit_test(test_config_bad_values),
        cmocka_unit_test(test_methods_table),     cmocka_unit_test(test_quantizer_bits_range),
        cmocka_unit_test(test_progress),          cmocka_unit_test(test_side_bytes),
        cmocka_unit_test(test_pool_every_task_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
