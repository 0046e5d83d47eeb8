// test_regress.c — replays every saved fuzz input through the same harness
// code the libFuzzer targets run (fuzz/fuzz_*.c, included here with their
// entry points renamed): crashing inputs kept under
// tests/data/regress/<target>/, the committed seeds fuzz/corpus/<target>/,
// and the malformed files of tests/data/ for the file readers. A harness
// aborts when a loader breaks its contract (accepts a file it then cannot
// read back, returns an object on failure, ...), and ASan/UBSan in
// `make asan` turn memory errors into failures. Run from the repository root.
#define LLVMFuzzerTestOneInput fuzz_one_safetensors
#include "../fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_npy
#include "../fuzz/fuzz_npy.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_trace
#include "../fuzz/fuzz_trace.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_artifacts
#include "../fuzz/fuzz_artifacts.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_model_config
#include "../fuzz/fuzz_model_config.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_commands
#include "../fuzz/fuzz_commands.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_tokens
#include "../fuzz/fuzz_tokens.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_one_tokenizer
#include "../fuzz/fuzz_tokenizer.c"
#undef LLVMFuzzerTestOneInput

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

typedef int (*harness_fn)(const uint8_t *, size_t);

// Feed every regular file of dir whose name ends with suffix ("" = all);
// returns how many were fed (0 when the directory is absent).
static int replay_dir(const char *dir, const char *suffix, harness_fn fn)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t ln = strlen(e->d_name), ls = strlen(suffix);
        if (e->d_name[0] == '.' || ln < ls || strcmp(e->d_name + ln - ls, suffix)) continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *buf = malloc(sz > 0 ? (size_t)sz : 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)sz, f), (size_t)sz);
        fclose(f);
        print_message("replay %s\n", p);
        assert_int_equal(fn(buf, (size_t)sz), 0);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

static void test_safetensors(void **state)
{
    (void)state;
    replay_dir("tests/data/regress/fuzz_safetensors", "", fuzz_one_safetensors);
    assert_true(replay_dir("tests/data", ".safetensors", fuzz_one_safetensors) >= 20);
}

static void test_npy(void **state)
{
    (void)state;
    replay_dir("tests/data/regress/fuzz_npy", "", fuzz_one_npy);
    assert_true(replay_dir("tests/data", ".npy", fuzz_one_npy) >= 10);
}

static void test_trace(void **state)
{
    (void)state;
    replay_dir("tests/data/regress/fuzz_trace", "", fuzz_one_trace);
    assert_true(replay_dir("tests/data", ".safetensors", fuzz_one_trace) >= 20);
    assert_true(replay_dir("tests/data", ".npy", fuzz_one_trace) >= 10);
}

static void test_artifacts(void **state)
{
    (void)state;
    replay_dir("tests/data/regress/fuzz_artifacts", "", fuzz_one_artifacts);
    assert_true(replay_dir("fuzz/corpus/fuzz_artifacts", "", fuzz_one_artifacts) >= 1);
}

static void test_model_config(void **state)
{
    (void)state;
    replay_dir("tests/data/regress/fuzz_model_config", "", fuzz_one_model_config);
    assert_true(replay_dir("fuzz/corpus/fuzz_model_config", "", fuzz_one_model_config) >= 1);
}

static void test_commands(void **state)
{
    (void)state;
    replay_dir("tests/data/regress/fuzz_commands", "", fuzz_one_commands);
    assert_true(replay_dir("fuzz/corpus/fuzz_commands", "", fuzz_one_commands) >= 1);
}

static void test_tokens(void **state)
{
    (void)state;
    replay_dir("tests/data/regress/fuzz_tokens", "", fuzz_one_tokens);
    assert_true(replay_dir("fuzz/corpus/fuzz_tokens", "", fuzz_one_tokens) >= 3);
}

static void test_tokenizer(void **state)
{
    (void)state;
    replay_dir("tests/data/regress/fuzz_tokenizer", "", fuzz_one_tokenizer);
    assert_true(replay_dir("fuzz/corpus/fuzz_tokenizer", "", fuzz_one_tokenizer) >= 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors), cmocka_unit_test(test_npy),
        cmocka_unit_test(test_trace),       cmocka_unit_test(test_artifacts),
        cmocka_unit_test(test_model_config), cmocka_unit_test(test_commands),
        cmocka_unit_test(test_tokens),      cmocka_unit_test(test_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
