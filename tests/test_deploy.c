// test_deploy.c — `recommend`'s arithmetic (engine/deploy.c): memory per
// token against hand computations from the ggml block sizes, GiB at a
// context, the Pareto marking (dominance, ties, NaN), every table row
// mapping onto methods that exist, and engine formats as value methods
// (q5_0: 5 bits, mlx affine: 2..8) passing the config check at their widths.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "deploy.h"

static const kvq_deploy_format *find(const char *engine, const char *name)
{
    for (int i = 0; i < kvq_n_deploy_formats; i++)
        if (!strcmp(kvq_deploy_formats[i].engine, engine) && !strcmp(kvq_deploy_formats[i].name, name))
            return &kvq_deploy_formats[i];
    return NULL;
}

static kvq_deploy_memory mem_of(const char *engine, const char *name, int layers, int heads, int d)
{
    const kvq_deploy_format *f = find(engine, name);
    assert_non_null(f);
    kvq_config c;
    kvq_deploy_config(f, 42, &c);
    assert_null(kvq_config_check(&c));
    kvq_deploy_memory m;
    assert_int_equal(kvq_deploy_memory_of(&c, NULL, layers, heads, d, &m), KVQ_OK);
    return m;
}

static void test_memory_by_hand(void **st)
{
    (void)st;
    // q8_0: 32 values = 2-byte f16 scale + 32 int8 = 34 bytes; q4_0: 2 + 16 = 18.
    // head_dim 128 = 4 blocks: K 136, V 72 bytes; x 2 kv heads x 6 layers.
    kvq_deploy_memory m = mem_of("llamacpp", "q8_0/q4_0", 6, 2, 128);
    assert_int_equal(m.key_bpv, 136);
    assert_int_equal(m.value_bpv, 72);
    assert_int_equal(m.bytes_per_token, (136 + 72) * 2 * 6);
    assert_true(fabs(m.key_bpc - 8.5) < 1e-12 && fabs(m.value_bpc - 4.5) < 1e-12);
    assert_int_equal(m.side_bytes, 0);
    // Llama-3-8B shape: 32 layers x 8 kv heads x 128, f16: 2 x 128 x 2 x 8 x 32
    // = 131072 bytes a token; 8192 tokens = exactly 1 GiB.
    m = mem_of("llamacpp", "f16/f16", 32, 8, 128);
    assert_int_equal(m.bytes_per_token, 131072);
    assert_true(fabs(kvq_deploy_gib_at(&m, 8192) - 1.0) < 1e-12);
    m = mem_of("llamacpp", "f32/f32", 32, 8, 128);
    assert_int_equal(m.bytes_per_token, 262144);
    // q5_1: 2 + 2 + 4 (high bits) + 16 = 24 bytes a block; q5_0: 22.
    m = mem_of("llamacpp", "q5_1/q5_0", 1, 1, 64);
    assert_int_equal(m.key_bpv, 48);
    assert_int_equal(m.value_bpv, 44);
    // vLLM fp8: one byte a value; auto = fp16 values, 2 bytes.
    m = mem_of("vllm", "fp8", 2, 4, 128);
    assert_int_equal(m.bytes_per_token, 2 * 128 * 4 * 2);
    m = mem_of("vllm", "auto", 2, 4, 128);
    assert_int_equal(m.bytes_per_token, 2 * 2 * 128 * 4 * 2);
    // mlx_lm kv_bits 4, group 64: 64 code bytes + 2 groups x (fp16 scale + bias).
    m = mem_of("mlx", "g64_b4", 6, 2, 128);
    assert_int_equal(m.key_bpv, 72);
    assert_int_equal(m.bytes_per_token, 1728);
    m = mem_of("mlx", "g64_b3", 1, 1, 128);   // 3 bits: 48 code bytes + 8
    assert_int_equal(m.value_bpv, 56);
}

static void test_every_row_runs_config(void **st)
{
    (void)st;
    for (int i = 0; i < kvq_n_deploy_formats; i++) {
        const kvq_deploy_format *f = &kvq_deploy_formats[i];
        assert_non_null(kvq_method_find(f->key_method));
        assert_non_null(kvq_method_find(f->value_method));
        kvq_config c;
        kvq_deploy_config(f, 1, &c);
        const char *why = kvq_config_check(&c);
        if (why) fail_msg("%s %s: %s", f->engine, f->name, why);
        // A quantized V cache needs flash attention in llama.cpp.
        const kvq_method *vm = kvq_method_find(f->value_method);
        if (!strcmp(f->engine, "llamacpp"))
            assert_int_equal(strstr(f->flags, "-fa on") != NULL, vm->max_bits < 16);
    }
}

static void test_fixed_width_value_bits(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    strcpy(c.value_method, "llamacpp:q5_0");
    c.value_bits = 5;
    assert_null(kvq_config_check(&c));
    c.value_bits = 6;   // neither the method's width nor a listed one
    assert_non_null(kvq_config_check(&c));
    strcpy(c.value_method, "mlx:affine_g64");
    c.value_bits = 6;   // an engine format takes its own range (2..8)
    assert_null(kvq_config_check(&c));
    strcpy(c.value_method, "turboquant_mse");
    c.value_bits = 5;   // kvstudio's own methods keep the listed widths
    assert_non_null(kvq_config_check(&c));
}

static void test_pareto(void **st)
{
    (void)st;
    //               a    b    c    d    e (tie with b)  f (NaN)
    double mem[] = {1.0, 2.0, 3.0, 2.5, 2.0, 0.5};
    double err[] = {0.5, 0.2, 0.1, 0.3, 0.2, NAN};
    bool front[6];
    kvq_deploy_pareto(mem, err, 6, front);
    assert_true(front[0]);    // least memory with a figure
    assert_true(front[1]);
    assert_true(front[2]);    // least error
    assert_false(front[3]);   // b holds less and errs less
    assert_true(front[4]);    // equal to b: neither dominates
    assert_false(front[5]);   // NaN is never on the front, and does not push a off it
    kvq_deploy_pareto(mem, err, 0, front);   // empty is fine
    double m2[] = {1.0, 1.0}, e2[] = {0.2, 0.1};
    kvq_deploy_pareto(m2, e2, 2, front);
    assert_false(front[0]);   // same memory, more error
    assert_true(front[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_by_hand),
        cmocka_unit_test(test_every_row_runs_config),
        cmocka_unit_test(test_fixed_width_value_bits),
        cmocka_unit_test(test_pareto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
