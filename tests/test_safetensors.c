// test_safetensors.c — the reader against the malformed corpus in
// tests/data/, every truncation and seeded byte mutations of a valid file,
// the sample files, the writer's round trip and the atomic-file helpers.
// Run from the repository root.
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "f16.h"
#include "safetensors.h"
#include "test_util.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    return tu_tmpdir_new(tmpdir, sizeof tmpdir, "st");
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(tmpdir);
}

static int count_tmp_files(void)
{
    int n = 0;
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d))) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void expect_reject(const char *path, kvq_status want, const char *substr)
{
    kvq_st *st = (kvq_st *)1;
    kvq_status s = kvq_st_open(path, &st);
    const char *msg = kvq_last_error();
    if (s != want || !strstr(msg, substr) || !strstr(msg, path) || strchr(msg, '\n'))
        fail_msg("%s: status %s, message '%s'; expected %s with '%s'", path, kvq_status_str(s), msg,
                 kvq_status_str(want), substr);
    assert_null(st);
}

static const struct { const char *file, *substr; } corpus[] = {
    {"st_too_small.safetensors", "file is 3 bytes, expected at least 8"},
    {"st_header_too_large.safetensors", "header length 200000000 exceeds the limit of 100000000"},
    {"st_header_past_end.safetensors", "header length 1000 runs past the end of the file (8 bytes"},
    {"st_truncated.safetensors", "run past the end of the file"},
    {"st_bad_json.safetensors", "header JSON: "},
    {"st_not_object.safetensors", "header starts with byte 0x5b, expected a JSON object"},
    {"st_unknown_dtype.safetensors", "tensor 'a': dtype 'F12' is unknown, expected one of F64"},
    {"st_shape_mismatch.safetensors", "tensor 'a': shape [2,4,8] F16 needs 128 bytes, data_offsets span 100"},
    {"st_overlap.safetensors", "tensor 'b': data_offsets [32,96] overlap tensor 'a' [0,64]"},
    {"st_hole.safetensors", "tensor 'b': data_offsets [72,136] leave a hole of 8 bytes after tensor 'a'"},
    {"st_trailing.safetensors", "(16 trailing bytes), expected the last tensor to end at the file's end"},
    {"st_duplicate.safetensors", "duplicate object key"},
    {"st_negative_shape.safetensors", "tensor 'a': shape[0] is -1, expected a non-negative integer"},
    {"st_bad_offsets.safetensors", "tensor 'a': data_offsets [64,0] has begin > end"},
    {"st_overflow.safetensors", "tensor 'a': shape [4294967296,4294967296,16] of F16 overflows"},
    {"st_bad_metadata.safetensors", "__metadata__ 'format' is an integer, expected a string"},
};

static void test_corpus_rejects(void **state)
{
    (void)state;
    char path[256];
    for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++) {
        snprintf(path, sizeof path, "tests/data/%s", corpus[i].file);
        expect_reject(path, KVQ_ERR_FORMAT, corpus[i].substr);
    }
    expect_reject("tests/data/no_such_file.safetensors", KVQ_ERR_IO, "cannot open");
    expect_reject("tests/data", KVQ_ERR_IO, "not a regular file");
}

static void test_valid_corpus_file(void **state)
{
    (void)state;
    kvq_st *st;
    assert_int_equal(kvq_st_open("tests/data/tr_valid.safetensors", &st), KVQ_OK);
    assert_int_equal(st->n_tensors, 2 * 3 + 1);
    assert_string_equal(kvq_st_meta(st, "format"), "kvtrace");
    assert_null(kvq_st_meta(st, "nope"));
    const kvq_st_tensor *k = kvq_st_find(st, "layers.1.keys");
    assert_non_null(k);
    assert_null(kvq_st_find(st, "layers.2.keys"));
    assert_int_equal(k->dtype, KVQ_DT_F16);
    assert_int_equal(k->ndim, 3);
    assert_int_equal(k->nelem, 2 * 4 * 8);
    float x[64];
    assert_int_equal(kvq_st_read_f32(k, 0, 64, x), KVQ_OK);
    for (int h = 0; h < 2; h++)   // the generator's formula: ((7l+3h+5t+d) mod 17 - 8)/8
        for (int t = 0; t < 4; t++)
            for (int d = 0; d < 8; d++)
                assert_true(x[(h * 4 + t) * 8 + d] == (float)((7 + 3 * h + 5 * t + d) % 17 - 8) / 8.0f);
    assert_int_equal(kvq_st_read_f32(k, 60, 5, x), KVQ_ERR_ARG);
    assert_int_equal(kvq_st_read_f32(k, SIZE_MAX, 2, x), KVQ_ERR_ARG);
    const kvq_st_tensor *tok = kvq_st_find(st, "tokens");
    int32_t ids[4];
    assert_int_equal(kvq_st_read_f32(tok, 0, 4, x), KVQ_ERR_FORMAT);
    assert_int_equal(kvq_st_read_i32(tok, 0, 4, ids), KVQ_OK);
    assert_int_equal(ids[3], 68);
    assert_int_equal(kvq_st_read_i32(k, 0, 4, ids), KVQ_ERR_FORMAT);
    kvq_st_close(st);
}

// Every proper prefix of a valid file must be rejected cleanly. Parsed from
// exact-size heap copies so ASan sees any read past the end; the file path
// (mmap) is covered for a sample of lengths.
static void test_every_truncation(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = tu_slurp("tests/data/tr_valid.safetensors", &len);
    assert_non_null(b);
    char path[128];
    snprintf(path, sizeof path, "%s/cut.safetensors", tmpdir);
    for (size_t n = 0; n <= len; n++) {
        uint8_t *c = malloc(n ? n : 1);
        memcpy(c, b, n);
        kvq_st *st;
        kvq_status s = kvq_st_open_buffer("cut", c, n, &st);
        if (n == len) {
            assert_int_equal(s, KVQ_OK);
            assert_int_equal(st->n_tensors, 7);
            kvq_st_close(st);
        } else if (s != KVQ_ERR_FORMAT) {
            fail_msg("prefix of %zu bytes: status %s (%s)", n, kvq_status_str(s), kvq_last_error());
        }
        free(c);
        if (n % 97 == 0 || n == len) {
            spit(path, b, n);
            s = kvq_st_open(path, &st);
            assert_int_equal(s, n == len ? KVQ_OK : KVQ_ERR_FORMAT);
            kvq_st_close(st);
        }
    }
    free(b);
}

// Seeded random byte edits in the length and header: the reader either
// rejects with a message or accepts a self-consistent layout.
static void test_mutations(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = tu_slurp("tests/data/tr_valid.safetensors", &len);
    assert_non_null(b);
    size_t hend = 8;
    for (int i = 0; i < 8; i++) hend += (size_t)b[i] << (8 * i);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int accepted = 0;
    for (int it = 0; it < 5000; it++) {
        uint8_t *m = malloc(len);
        memcpy(m, b, len);
        int edits = 1 + it % 3;
        for (int e = 0; e < edits; e++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % hend;
            static const char pool[] = "0123456789[],:{}\"-. eE";
            m[at] = (rng >> 20) & 1 ? (uint8_t)pool[(rng >> 24) % (sizeof pool - 1)] : (uint8_t)(rng >> 40);
        }
        kvq_st *st;
        kvq_status s = kvq_st_open_buffer("mutant", m, len, &st);
        if (s == KVQ_OK) {
            accepted++;
            for (int i = 0; i < st->n_tensors; i++) {
                assert_true(st->tensors[i].data >= m && st->tensors[i].data + st->tensors[i].nbytes <= m + len);
                float x[4];
                if (kvq_dtype_is_float(st->tensors[i].dtype) && st->tensors[i].nelem)
                    kvq_st_read_f32(&st->tensors[i], st->tensors[i].nelem - 1, 1, x);
            }
            kvq_st_close(st);
        } else {
            assert_int_equal(s, KVQ_ERR_FORMAT);
            assert_non_null(strstr(kvq_last_error(), "mutant: "));
        }
        free(m);
    }
    assert_true(accepted < 5000);
    free(b);
}

static void test_sample_files(void **state)
{
    (void)state;
    static const char *const files[] = {
        "sample_data/traces/code-1k.safetensors", "sample_data/traces/prose-1k.safetensors",
        "sample_data/refmodel/model-00001-of-00003.safetensors",
        "sample_data/refmodel/model-00002-of-00003.safetensors",
        "sample_data/refmodel/model-00003-of-00003.safetensors",
    };
    for (int i = 0; i < 5; i++) {
        kvq_st *st;
        if (kvq_st_open(files[i], &st) != KVQ_OK) fail_msg("%s", kvq_last_error());
        assert_true(st->n_tensors > 0);
        if (i < 2) {
            assert_string_equal(kvq_st_meta(st, "format"), "kvtrace");
            const kvq_st_tensor *k = kvq_st_find(st, "layers.5.queries");
            assert_non_null(k);
            assert_int_equal(k->shape[0], 4);
            assert_int_equal(k->shape[1], 1024);
            assert_int_equal(k->shape[2], 128);
        }
        kvq_st_close(st);
    }
}

static void test_write_round_trip(void **state)
{
    (void)state;
    float f32[24];
    uint16_t f16[24], bf16[24];
    double f64[3] = {1.5, -2.25, 1e300};
    uint8_t f8[5] = {0x00, 0x38, 0xb8, 0x7e, 0x01}, u8[3] = {1, 2, 255};
    int32_t i32[4] = {-1, 0, 7, 1 << 30};
    int64_t i64[2] = {-5, 123456};
    for (int i = 0; i < 24; i++) {
        f32[i] = (float)i * 0.1f - 1.0f;
        f16[i] = kvq_f32_to_f16(f32[i]);
        bf16[i] = kvq_f32_to_bf16(f32[i]);
    }
    kvq_st_wtensor t[] = {
        {"a.f32", KVQ_DT_F32, 3, {2, 3, 4}, f32},
        {"b.f16", KVQ_DT_F16, 2, {4, 6}, f16},
        {"c.bf16", KVQ_DT_BF16, 1, {24}, bf16},
        {"d.f64", KVQ_DT_F64, 1, {3}, f64},
        {"e.f8", KVQ_DT_F8_E4M3, 1, {5}, f8},
        {"f.i32", KVQ_DT_I32, 2, {2, 2}, i32},
        {"g.i64", KVQ_DT_I64, 1, {2}, i64},
        {"h.u8", KVQ_DT_U8, 1, {3}, u8},   // 3 bytes: later data is unaligned
        {"i.empty", KVQ_DT_F32, 2, {0, 5}, NULL},
        {"j.scalar", KVQ_DT_F32, 0, {0}, &f32[7]},
        {"k.after", KVQ_DT_F32, 1, {2}, f32},
    };
    const int n = (int)(sizeof t / sizeof *t);
    const char *mk[] = {"format", "note"}, *mv[] = {"kvtrace", "caf\xc3\xa9 \"quoted\""};
    char path[128];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
    assert_int_equal(kvq_st_write(path, t, n, mk, mv, 2), KVQ_OK);
    assert_int_equal(count_tmp_files(), 0);
    size_t len;
    uint8_t *raw = tu_slurp(path, &len);
    assert_non_null(raw);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
    assert_int_equal((8 + hl) % 8, 0);   // data starts 8-aligned
    assert_int_equal(raw[8 + hl - 1] == ' ' || raw[8 + hl - 1] == '}', 1);
    free(raw);

    kvq_st *st;
    if (kvq_st_open(path, &st) != KVQ_OK) fail_msg("%s", kvq_last_error());
    assert_int_equal(st->n_tensors, n);
    assert_string_equal(kvq_st_meta(st, "note"), mv[1]);
    for (int i = 0; i < n; i++) {
        const kvq_st_tensor *r = kvq_st_find(st, t[i].name);
        assert_non_null(r);
        assert_int_equal(r->dtype, t[i].dtype);
        assert_int_equal(r->ndim, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++) assert_int_equal(r->shape[d], t[i].shape[d]);
        if (r->nbytes) assert_memory_equal(r->data, t[i].data, r->nbytes);
    }
    float x[24];
    assert_int_equal(kvq_st_read_f32(kvq_st_find(st, "c.bf16"), 0, 24, x), KVQ_OK);
    for (int i = 0; i < 24; i++) assert_true(x[i] == kvq_bf16_to_f32(bf16[i]));
    assert_int_equal(kvq_st_read_f32(kvq_st_find(st, "e.f8"), 0, 5, x), KVQ_OK);
    assert_true(x[0] == 0.0f && x[1] == 1.0f && x[2] == -1.0f && x[3] == 448.0f && x[4] == ldexpf(1, -9));
    assert_int_equal(kvq_st_read_f32(kvq_st_find(st, "d.f64"), 0, 3, x), KVQ_OK);
    assert_true(x[1] == -2.25f && isinf(x[2]));
    int32_t iv[2];
    assert_int_equal(kvq_st_read_i32(kvq_st_find(st, "g.i64"), 0, 2, iv), KVQ_OK);
    assert_int_equal(iv[1], 123456);
    kvq_st_close(st);

    // overwrite in place with no tensors and no metadata: still a valid file
    assert_int_equal(kvq_st_write(path, NULL, 0, NULL, NULL, 0), KVQ_OK);
    assert_int_equal(kvq_st_open(path, &st), KVQ_OK);
    assert_int_equal(st->n_tensors, 0);
    kvq_st_close(st);
}

static void test_write_rejects(void **state)
{
    (void)state;
    float v[4] = {0};
    char path[128];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    kvq_st_wtensor dup[2] = {{"x", KVQ_DT_F32, 1, {4}, v}, {"x", KVQ_DT_F32, 1, {4}, v}};
    assert_int_equal(kvq_st_write(path, dup, 2, NULL, NULL, 0), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "tensor 'x' given twice"));
    kvq_st_wtensor meta[1] = {{"__metadata__", KVQ_DT_F32, 1, {4}, v}};
    assert_int_equal(kvq_st_write(path, meta, 1, NULL, NULL, 0), KVQ_ERR_ARG);
    kvq_st_wtensor nul[1] = {{"y", KVQ_DT_F32, 1, {4}, NULL}};
    assert_int_equal(kvq_st_write(path, nul, 1, NULL, NULL, 0), KVQ_ERR_ARG);
    kvq_st_wtensor neg[1] = {{"y", KVQ_DT_F32, 1, {-4}, v}};
    assert_int_equal(kvq_st_write(path, neg, 1, NULL, NULL, 0), KVQ_ERR_ARG);
    assert_int_equal(access(path, F_OK), -1);   // nothing written
    assert_int_equal(kvq_st_write("/nonexistent-dir/x.safetensors", dup, 1, NULL, NULL, 0), KVQ_ERR_IO);
    assert_int_equal(count_tmp_files(), 0);
}

static void test_atomic_helpers(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/atomic.txt", tmpdir);
    kvq_atomic_file af;
    assert_int_equal(kvq_atomic_open(&af, path), KVQ_OK);
    fputs("first", af.fp);
    kvq_atomic_abort(&af);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_tmp_files(), 0);
    assert_int_equal(kvq_atomic_open(&af, path), KVQ_OK);
    fputs("second", af.fp);
    assert_int_equal(access(path, F_OK), -1);   // invisible until commit
    assert_int_equal(kvq_atomic_commit(&af), KVQ_OK);
    size_t n;
    char *b = (char *)tu_slurp(path, &n);
    assert_int_equal(n, 6);
    assert_memory_equal(b, "second", 6);
    free(b);
    assert_int_equal(kvq_atomic_open(&af, path), KVQ_OK);   // replace
    fputs("3", af.fp);
    assert_int_equal(kvq_atomic_commit(&af), KVQ_OK);
    b = (char *)tu_slurp(path, &n);
    assert_int_equal(n, 1);
    free(b);
    assert_int_equal(count_tmp_files(), 0);
    assert_int_equal(kvq_atomic_open(&af, "/nonexistent-dir/f"), KVQ_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_rejects),
        cmocka_unit_test(test_valid_corpus_file),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_sample_files),
        cmocka_unit_test(test_write_round_trip),
        cmocka_unit_test(test_write_rejects),
        cmocka_unit_test(test_atomic_helpers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
