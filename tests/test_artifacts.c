// test_artifacts.c — artifacts on disk: round trip of tensors and metadata,
// byte-identical saves, atomic replacement (a failed save leaves the old
// artifacts intact and no temp directory), refusal to replace a directory
// holding other files, load errors that name what differs, and the
// artifacts/trace match check.
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include "artifacts.h"
#include "calib/calib.h"
#include "test_util.h"

#define CODE "sample_data/traces/code-1k.safetensors"

static char root[256];

static int setup(void **st)
{
    (void)st;
    return tu_tmpdir_new(root, sizeof root, "artifacts");
}

static int teardown(void **st)
{
    (void)st;
    return tu_rm_rf(root);
}

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", root, name); }

static kvq_artifacts *sample(float base)
{
    kvq_artifacts *a;
    assert_int_equal(kvq_artifacts_new(&a), KVQ_OK);
    float x[24];
    for (int i = 0; i < 24; i++) x[i] = base + (float)i * 0.5f;
    int64_t s1[1] = {24}, s3[3] = {2, 3, 4}, s0[1] = {0};
    assert_int_equal(kvq_artifacts_put(a, "test.vec", x, 1, s1), KVQ_OK);
    assert_int_equal(kvq_artifacts_put(a, "test.cube.l0.h1", x, 3, s3), KVQ_OK);
    assert_int_equal(kvq_artifacts_put(a, "test.empty", x, 1, s0), KVQ_OK);
    kvq_artifacts_set_meta(a, "method", "spectral");
    kvq_artifacts_set_meta(a, "version", KVQ_VERSION);
    kvq_artifacts_set_meta(a, "trace.layers", "6");
    kvq_artifacts_set_meta(a, "trace.kv_heads", "2");
    kvq_artifacts_set_meta(a, "trace.head_dim", "128");
    kvq_artifacts_set_meta(a, "trace.path", CODE);
    kvq_artifacts_set_meta(a, "option.seed", "42");
    kvq_artifacts_set_meta(a, "note", "free-form");
    return a;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

// Entries of root whose name contains `part`.
static int count_entries(const char *part)
{
    DIR *d = opendir(root);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (strstr(e->d_name, part)) n++;
    closedir(d);
    return n;
}

static void test_round_trip(void **st)
{
    (void)st;
    char dir[320];
    path_in(dir, sizeof dir, "rt");
    kvq_artifacts *a = sample(1.0f), *b;
    assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
    assert_int_equal(kvq_artifacts_load(dir, &b), KVQ_OK);
    assert_int_equal(kvq_artifacts_count(b), 3);
    for (int i = 0; i < 3; i++) assert_string_equal(kvq_artifacts_name(a, i), kvq_artifacts_name(b, i));
    int nd;
    int64_t sh[8];
    const float *x = kvq_artifacts_get(b, "test.cube.l0.h1", &nd, sh);
    assert_true(x && nd == 3 && sh[0] == 2 && sh[1] == 3 && sh[2] == 4);
    assert_memory_equal(x, kvq_artifacts_get(a, "test.cube.l0.h1", NULL, NULL), 24 * sizeof(float));
    assert_non_null(kvq_artifacts_get(b, "test.empty", &nd, sh));
    assert_true(nd == 1 && sh[0] == 0);
    static const char *const keys[] = {"method", "version", "trace.layers", "trace.path", "option.seed", "note"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_string_equal(kvq_artifacts_meta(a, keys[i]), kvq_artifacts_meta(b, keys[i]));
    // saving what was loaded gives the same bytes (and two saves are identical)
    char dir2[320], p1[400], p2[400];
    path_in(dir2, sizeof dir2, "rt2");
    assert_int_equal(kvq_artifacts_save(b, dir2), KVQ_OK);
    static const char *const files[] = {"artifacts.safetensors", "manifest.json"};
    for (int f = 0; f < 2; f++) {
        size_t l1, l2;
        snprintf(p1, sizeof p1, "%s/%s", dir, files[f]);
        snprintf(p2, sizeof p2, "%s/%s", dir2, files[f]);
        char *c1 = tu_slurp(p1, &l1), *c2 = tu_slurp(p2, &l2);
        assert_true(c1 && c2 && l1 == l2 && memcmp(c1, c2, l1) == 0);
        free(c1);
        free(c2);
    }
    assert_int_equal(count_entries(".tmp."), 0);
    kvq_artifacts_free(a);
    kvq_artifacts_free(b);
}

static void test_replace_and_failed_save(void **st)
{
    (void)st;
    char dir[320];
    path_in(dir, sizeof dir, "rep");
    kvq_artifacts *a = sample(1.0f), *b = sample(100.0f), *got;
    assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
    assert_int_equal(kvq_artifacts_save(b, dir), KVQ_OK);   // replaces
    assert_int_equal(kvq_artifacts_load(dir, &got), KVQ_OK);
    assert_true(kvq_artifacts_get(got, "test.vec", NULL, NULL)[0] == 100.0f);
    kvq_artifacts_free(got);
    // a save that fails half-way (the tensor writer rejects the name) leaves
    // the previous artifacts loadable and no temp directory behind
    int64_t one = 1;
    float z = 0;
    assert_int_equal(kvq_artifacts_put(a, "__metadata__", &z, 1, &one), KVQ_OK);
    assert_int_not_equal(kvq_artifacts_save(a, dir), KVQ_OK);
    assert_int_equal(kvq_artifacts_load(dir, &got), KVQ_OK);
    assert_true(kvq_artifacts_get(got, "test.vec", NULL, NULL)[0] == 100.0f);
    assert_int_equal(count_entries(".tmp."), 0);
    assert_int_equal(count_entries(".old."), 0);
    kvq_artifacts_free(got);
    // never replace a directory that holds anything else
    char other[320], keep[400];
    path_in(other, sizeof other, "user_dir");
    mkdir(other, 0777);
    snprintf(keep, sizeof keep, "%s/notes.txt", other);
    spit(keep, "mine");
    assert_int_equal(kvq_artifacts_save(b, other), KVQ_ERR_IO);
    assert_non_null(strstr(kvq_last_error(), "notes.txt"));
    assert_int_equal(access(keep, F_OK), 0);
    // a path that is a file
    assert_int_equal(kvq_artifacts_save(b, keep), KVQ_ERR_IO);
    assert_non_null(strstr(kvq_last_error(), "not a directory"));
    assert_int_equal(kvq_artifacts_save(NULL, dir), KVQ_ERR_ARG);
    kvq_artifacts_free(a);
    kvq_artifacts_free(b);
}

// --output L with L a symbolic link to an artifacts directory (issue 17):
// the save goes through the link (the target's files are replaced, the link
// stays a link), nothing is left beside the link, and a failed save leaves
// the target's old files as they were. A dangling link is refused.
static void test_save_through_symlink(void **st)
{
    (void)st;
    char real[320], link[320], p[400];
    path_in(real, sizeof real, "linked_real");
    path_in(link, sizeof link, "linked");
    kvq_artifacts *a = sample(1.0f), *b = sample(100.0f), *got = NULL;
    assert_int_equal(kvq_artifacts_save(a, real), KVQ_OK);
    assert_int_equal(symlink(real, link), 0);
    assert_int_equal(kvq_artifacts_save(b, link), KVQ_OK);
    struct stat ls;
    assert_int_equal(lstat(link, &ls), 0);
    assert_true(S_ISLNK(ls.st_mode));   // still a link
    assert_int_equal(kvq_artifacts_load(real, &got), KVQ_OK);
    assert_true(kvq_artifacts_get(got, "test.vec", NULL, NULL)[0] == 100.0f);
    kvq_artifacts_free(got);
    assert_int_equal(count_entries(".tmp."), 0);
    assert_int_equal(count_entries(".old."), 0);
    // a failed save through the link: the target keeps its files
    int64_t one = 1;
    float z = 0;
    kvq_artifacts_put(a, "__metadata__", &z, 1, &one);
    assert_int_not_equal(kvq_artifacts_save(a, link), KVQ_OK);
    snprintf(p, sizeof p, "%s/artifacts.safetensors", real);
    assert_int_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/manifest.json", real);
    assert_int_equal(access(p, F_OK), 0);
    assert_int_equal(kvq_artifacts_load(link, &got), KVQ_OK);
    assert_true(kvq_artifacts_get(got, "test.vec", NULL, NULL)[0] == 100.0f);
    kvq_artifacts_free(got);
    assert_int_equal(count_entries(".tmp."), 0);
    // a link to nothing
    char dangling[320];
    path_in(dangling, sizeof dangling, "dangling");
    snprintf(p, sizeof p, "%s/nowhere/deeper", root);
    assert_int_equal(symlink(p, dangling), 0);
    assert_int_equal(kvq_artifacts_save(b, dangling), KVQ_ERR_IO);
    assert_non_null(strstr(kvq_last_error(), "symbolic link"));
    assert_int_equal(lstat(dangling, &ls), 0);
    assert_true(S_ISLNK(ls.st_mode));
    kvq_artifacts_free(a);
    kvq_artifacts_free(b);
}

// Replace the first occurrence of `from` in dir's manifest by `to`.
static void edit_manifest(const char *dir, const char *from, const char *to)
{
    char p[400];
    size_t n;
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    char *t = tu_slurp(p, &n), *at = strstr(t, from);
    assert_non_null(at);
    char *out = malloc(n + strlen(to) + 1);
    size_t pre = (size_t)(at - t);
    memcpy(out, t, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
    spit(p, out);
    free(t);
    free(out);
}

static void test_load_errors(void **st)
{
    (void)st;
    char dir[320], p[400];
    kvq_artifacts *a = sample(1.0f), *got = (kvq_artifacts *)1;
    path_in(dir, sizeof dir, "missing");
    assert_int_equal(kvq_artifacts_load(dir, &got), KVQ_ERR_IO);
    assert_null(got);
    assert_non_null(strstr(kvq_last_error(), "precompute"));
    struct { const char *from, *to; kvq_status want; const char *msg; } cases[] = {
        {"\"test.cube.l0.h1\"", "\"test.cube.l9.h9\"", KVQ_ERR_FORMAT, "test.cube.l9.h9"},
        {"        3,\n", "        5,\n", KVQ_ERR_SHAPE, "shape [2,5,4] in the manifest but [2,3,4]"},
        {"kvstudio-artifacts", "something-else", KVQ_ERR_FORMAT, "something-else"},
        {"{", "[", KVQ_ERR_FORMAT, "manifest.json"},
        {"\"method\": \"spectral\"", "\"method\": 7", KVQ_ERR_FORMAT, "'method'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu", i);
        path_in(dir, sizeof dir, name);
        assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
        edit_manifest(dir, cases[i].from, cases[i].to);
        got = (kvq_artifacts *)1;
        kvq_status s = kvq_artifacts_load(dir, &got);
        if (s != cases[i].want || !strstr(kvq_last_error(), cases[i].msg))
            fail_msg("case %zu: status %d, message '%s'", i, s, kvq_last_error());
        assert_null(got);
    }
    // a tensor file that does not match the manifest's count
    path_in(dir, sizeof dir, "short");
    assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
    kvq_artifacts *b = sample(1.0f);
    int64_t one = 1;
    float z = 3;
    kvq_artifacts_put(b, "extra", &z, 1, &one);
    char dir2[320];
    path_in(dir2, sizeof dir2, "short2");
    assert_int_equal(kvq_artifacts_save(b, dir2), KVQ_OK);
    char from[400], to[400];
    snprintf(from, sizeof from, "%s/artifacts.safetensors", dir2);
    snprintf(to, sizeof to, "%s/artifacts.safetensors", dir);
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(kvq_artifacts_load(dir, &got), KVQ_ERR_FORMAT);
    assert_non_null(strstr(kvq_last_error(), "lists 3 tensors"));
    // a truncated tensor file
    path_in(dir, sizeof dir, "trunc");
    assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
    snprintf(p, sizeof p, "%s/artifacts.safetensors", dir);
    assert_int_equal(truncate(p, 40), 0);
    assert_int_not_equal(kvq_artifacts_load(dir, &got), KVQ_OK);
    kvq_artifacts_free(a);
    kvq_artifacts_free(b);
}

// A NaN in a saved codebook is refused on load, naming the tensor.
static void test_nonfinite_refused(void **st)
{
    (void)st;
    char dir[320];
    path_in(dir, sizeof dir, "nan");
    kvq_artifacts *a = sample(1.0f), *b = NULL;
    const float bad[3] = {1.0f, NAN, 2.0f};
    const int64_t sh[1] = {3};
    assert_int_equal(kvq_artifacts_put(a, "test.poisoned", bad, 1, sh), KVQ_OK);
    assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
    assert_int_equal(kvq_artifacts_load(dir, &b), KVQ_ERR_NONFINITE);
    assert_null(b);
    assert_non_null(strstr(kvq_last_error(), "test.poisoned"));
    assert_non_null(strstr(kvq_last_error(), "NaN at element 1"));
    kvq_artifacts_free(a);
}

static void test_match_trace_and_plan(void **st)
{
    (void)st;
    kvq_trace *t;
    assert_int_equal(kvq_trace_open(CODE, NULL, &t), KVQ_OK);
    kvq_calib_opts o;
    kvq_calib_opts_default(&o);
    kvq_artifacts *a, *b;
    assert_int_equal(kvq_calibrate("spectral", t, &o, NULL, &a), KVQ_OK);
    assert_int_equal(kvq_artifacts_match_trace(a, t), KVQ_OK);
    char dir[320];
    path_in(dir, sizeof dir, "spectral");
    assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
    assert_int_equal(kvq_artifacts_load(dir, &b), KVQ_OK);
    assert_int_equal(kvq_artifacts_match_trace(b, t), KVQ_OK);
    // plans built from loaded artifacts encode exactly as from the originals
    kvq_config c;
    kvq_config_default(&c);
    kvq_plan_params pa = {.bits = 2, .head_dim = 128, .layer = 5, .kv_head = 1, .cfg = &c, .art = a}, pb = pa;
    pb.art = b;
    kvq_quantizer qa, qb;
    assert_int_equal(kvq_quantizer_init(&qa, "spectral", &pa), KVQ_OK);
    assert_int_equal(kvq_quantizer_init(&qb, "spectral", &pb), KVQ_OK);
    float *k = malloc(sizeof(float) * 1024 * 128);
    uint8_t *ca = malloc(qa.bpv * 1024), *cb = malloc(qb.bpv * 1024);
    assert_int_equal(kvq_trace_keys(t, 5, 1, k), KVQ_OK);
    qa.m->encode(qa.plan, k, 1024, ca);
    qb.m->encode(qb.plan, k, 1024, cb);
    assert_int_equal(qa.bpv, qb.bpv);
    assert_memory_equal(ca, cb, qa.bpv * 1024);
    free(k); free(ca); free(cb);
    kvq_quantizer_free(&qa);
    kvq_quantizer_free(&qb);
    // what differs is named
    kvq_artifacts_set_meta(b, "trace.layers", "4");
    kvq_artifacts_set_meta(b, "trace.head_dim", "64");
    assert_int_equal(kvq_artifacts_match_trace(b, t), KVQ_ERR_SHAPE);
    assert_non_null(strstr(kvq_last_error(), "layers 4 vs 6"));
    assert_non_null(strstr(kvq_last_error(), "head_dim 64 vs 128"));
    assert_null(strstr(kvq_last_error(), "kv heads"));
    char dir2[320];
    path_in(dir2, sizeof dir2, "spectral_4layers");
    assert_int_equal(kvq_artifacts_save(b, dir2), KVQ_OK);
    kvq_artifacts *l = (kvq_artifacts *)1;
    assert_int_equal(kvq_artifacts_load_for_trace(dir2, t, &l), KVQ_ERR_SHAPE);
    assert_null(l);
    // tensors of head_dim 128 under metadata that says 64 do not even load:
    // the shape check of kvq_artifacts_load runs with or without a trace
    assert_int_equal(kvq_artifacts_load_for_trace(dir2, NULL, &l), KVQ_ERR_SHAPE);
    assert_null(l);
    assert_non_null(strstr(kvq_last_error(), "expected [64,64] (head_dim, head_dim)"));
    assert_int_equal(kvq_artifacts_load_for_trace(dir, t, &l), KVQ_OK);
    kvq_artifacts_free(l);
    kvq_artifacts *e;
    kvq_artifacts_new(&e);
    assert_int_equal(kvq_artifacts_match_trace(e, t), KVQ_ERR_FORMAT);
    kvq_artifacts_free(e);
    kvq_artifacts_free(a);
    kvq_artifacts_free(b);
    kvq_trace_free(t);
}

// Crafted calibration tensors (issue 17): each one shorter, longer or
// further out of range than its method's plan can take is refused on load,
// naming the tensor and the expected shape or range; well-formed ones load.
// Metadata: 2 layers, 2 kv heads, head_dim 8.
static kvq_artifacts *crafted_base(void)
{
    kvq_artifacts *a;
    assert_int_equal(kvq_artifacts_new(&a), KVQ_OK);
    kvq_artifacts_set_meta(a, "method", "ratequant");
    kvq_artifacts_set_meta(a, "version", KVQ_VERSION);
    kvq_artifacts_set_meta(a, "trace.layers", "2");
    kvq_artifacts_set_meta(a, "trace.kv_heads", "2");
    kvq_artifacts_set_meta(a, "trace.head_dim", "8");
    return a;
}

static void test_crafted_tensors(void **st)
{
    (void)st;
    static const struct {
        const char *name;
        int nd;
        int64_t sh[4];
        float fill;
        kvq_status want;
        const char *msg;
    } cases[] = {
        {"ratequant.sensitivity", 2, {1, 4}, 0.5f, KVQ_ERR_SHAPE, "'ratequant.sensitivity' has shape [1,4], expected [2, 4]"},
        {"ratequant.curve", 2, {1, 3}, 0.5f, KVQ_ERR_SHAPE, "'ratequant.curve' has shape [1,3]"},
        {"ratequant.curve", 2, {2, 2}, 0.5f, KVQ_ERR_SHAPE, "'ratequant.curve' has shape [2,2]"},
        {"ratequant.target_bits", 1, {0}, 0, KVQ_ERR_SHAPE, "'ratequant.target_bits' has shape [0], expected [1]"},
        {"ratequant.bits", 1, {3}, 2, KVQ_ERR_SHAPE, "'ratequant.bits' has shape [3]"},
        {"ratequant.bits", 1, {2}, 100, KVQ_ERR_FORMAT, "bits 100 at element 0"},
        {"ratequant.bits", 1, {2}, 2.5f, KVQ_ERR_FORMAT, "expected an integer in 1..8"},
        {"ratequant.curve", 2, {2, 3}, 1e6f, KVQ_ERR_FORMAT, "beta 1e+06"},
        {"ratequant.sensitivity", 2, {2, 4}, 1e30f, KVQ_ERR_FORMAT, "value 1e+30"},
        {"ratequant.rates", 1, {40}, 1, KVQ_ERR_SHAPE, "with R in 1..16"},
        {"ratequant.frob", 1, {1}, 1, KVQ_ERR_FORMAT, "not a ratequant artifact"},
        {"vecinfer.smooth", 2, {2, 4}, 1, KVQ_ERR_SHAPE, "expected [2,8] (layers, head_dim)"},
        {"vecinfer.codebook", 4, {2, 3, 4, 2}, 1, KVQ_ERR_SHAPE, "'vecinfer.codebook' has shape [2,3,4,2]"},
        {"vecinfer.codebook", 4, {2, 4, 3, 2}, 1, KVQ_ERR_SHAPE, "centroids 2..256"},
        {"vecinfer.codebook", 4, {1, 4, 4, 2}, 1, KVQ_ERR_SHAPE, "'vecinfer.codebook' has shape [1,4,4,2]"},
        {"spectral.rotation.l0.h0", 2, {8, 4}, 0.1f, KVQ_ERR_SHAPE, "expected [8,8]"},
        {"spectral.rotation.l0.h0", 2, {8, 8}, 2, KVQ_ERR_FORMAT, "eigenvector component 2"},
        {"spectral.rotation.l2.h0", 2, {8, 8}, 0.1f, KVQ_ERR_FORMAT, "for layers 0..1, kv heads 0..1"},
        {"spectral.mean.l0.h01", 1, {8}, 0.1f, KVQ_ERR_FORMAT, "not a spectral artifact"},
        {"spectral.eigenvalues.l1.h1", 1, {8}, -1, KVQ_ERR_FORMAT, "eigenvalue -1"},
        {"spectral.d_eff", 2, {2, 1}, 1, KVQ_ERR_SHAPE, "expected [2,2] (layers, kv heads)"},
        {"rabitq.centroids.l0.h0", 2, {2, 4}, 1, KVQ_ERR_SHAPE, "expected [K,8]"},
        {"rabitq.centroids.l0.h0", 2, {0, 8}, 1, KVQ_ERR_SHAPE, "clusters 1..65536"},
        {"rabitq.centroids.l1.h1", 2, {2, 8}, 3e30f, KVQ_ERR_FORMAT, "centroid coordinate 3e+30"},
        {"commvq.codebooks.l0.h0", 3, {1, 1, 8}, 1, KVQ_ERR_SHAPE, "centroids 2..256"},
        {"commvq.codebooks.l0.h0", 3, {1, 4, 9}, 1, KVQ_ERR_SHAPE, "expected [R,C,8]"},
    };
    float *x = malloc(sizeof(float) * 4096);
    char dir[320];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kvq_artifacts *a = crafted_base(), *got = (kvq_artifacts *)1;
        for (int j = 0; j < 4096; j++) x[j] = cases[i].fill;
        assert_int_equal(kvq_artifacts_put(a, cases[i].name, x, cases[i].nd, cases[i].sh), KVQ_OK);
        snprintf(dir, sizeof dir, "%s/crafted%zu", root, i);
        assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
        kvq_status s = kvq_artifacts_load(dir, &got);
        if (s != cases[i].want || !strstr(kvq_last_error(), cases[i].msg))
            fail_msg("case %zu (%s): status %d, message '%s'", i, cases[i].name, s, kvq_last_error());
        assert_null(got);
        assert_non_null(strstr(kvq_last_error(), "artifacts.safetensors"));   // names the file
        kvq_artifacts_free(a);
    }
    // the trace shape a calibration tensor is checked against must be there and in range
    static const struct { const char *key, *val, *msg; } metas[] = {
        {"trace.head_dim", "512", "'trace.head_dim' is '512', expected an integer in 1..256"},
        {"trace.layers", "-3", "'trace.layers' is '-3'"},
        {"trace.kv_heads", "0", "'trace.kv_heads' is '0'"},
    };
    for (size_t i = 0; i < sizeof metas / sizeof metas[0]; i++) {
        kvq_artifacts *a = crafted_base(), *got = NULL;
        int64_t sh[2] = {2, 8};
        for (int j = 0; j < 16; j++) x[j] = 0.25f;
        kvq_artifacts_put(a, "rabitq.centroids.l0.h0", x, 2, sh);
        kvq_artifacts_set_meta(a, metas[i].key, metas[i].val);
        snprintf(dir, sizeof dir, "%s/meta%zu", root, i);
        assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
        assert_int_equal(kvq_artifacts_load(dir, &got), KVQ_ERR_FORMAT);
        if (!strstr(kvq_last_error(), metas[i].msg)) fail_msg("meta %zu: '%s'", i, kvq_last_error());
        kvq_artifacts_free(a);
    }
    // a well-formed set of every method's tensors loads
    kvq_artifacts *a = crafted_base(), *got = NULL;
    for (int j = 0; j < 4096; j++) x[j] = 0.25f;
    const struct { const char *name; int nd; int64_t sh[4]; } ok[] = {
        {"ratequant.sensitivity", 3, {2, 2, 4}}, {"ratequant.curve", 3, {2, 2, 3}},
        {"ratequant.distortion", 3, {2, 2, 5}}, {"ratequant.rates", 1, {5}}, {"vecinfer.smooth", 2, {2, 8}},
        {"vecinfer.codebook", 4, {2, 4, 4, 2}}, {"spectral.rotation.l1.h1", 2, {8, 8}},
        {"spectral.eigenvalues.l1.h1", 1, {8}}, {"spectral.d_eff", 2, {2, 2}}, {"rabitq.centroids.l1.h0", 2, {3, 8}},
        {"commvq.codebooks.l0.h1", 3, {2, 4, 8}}, {"other.anything", 1, {7}},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) kvq_artifacts_put(a, ok[i].name, x, ok[i].nd, ok[i].sh);
    for (int j = 0; j < 4; j++) x[j] = 2;
    int64_t one = 1, lh[2] = {2, 2};
    kvq_artifacts_put(a, "ratequant.bits", x, 2, lh);
    kvq_artifacts_put(a, "ratequant.target_bits", x, 1, &one);
    snprintf(dir, sizeof dir, "%s/crafted_ok", root);
    assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
    if (kvq_artifacts_load(dir, &got) != KVQ_OK) fail_msg("well-formed: %s", kvq_last_error());
    kvq_artifacts_free(got);
    kvq_artifacts_free(a);
    free(x);
}

// What every calibrator makes on the sample trace (head_dim 128) passes the
// load-time check: the schema is the calibrators' own (per_head ratequant
// and commvq's many codebooks included).
static void test_calibrated_artifacts_load(void **st)
{
    (void)st;
    kvq_trace *t;
    assert_int_equal(kvq_trace_open(CODE, NULL, &t), KVQ_OK);
    for (int c = 0; c < kvq_n_calibrators; c++)
        for (int per_head = 0; per_head < 2; per_head++) {
            if (per_head && strcmp(kvq_calibrators[c].name, "ratequant")) continue;
            kvq_calib_opts o;
            kvq_calib_opts_default(&o);
            o.layers = 2;
            o.sequence_length = 256;
            o.max_iter = 2;
            o.num_samples = 1;
            o.n_queries = 16;
            o.per_head = per_head;
            kvq_artifacts *a, *b = NULL;
            if (kvq_calibrate(kvq_calibrators[c].name, t, &o, NULL, &a))
                fail_msg("%s: %s", kvq_calibrators[c].name, kvq_last_error());
            char dir[320];
            snprintf(dir, sizeof dir, "%s/cal_%s_%d", root, kvq_calibrators[c].name, per_head);
            assert_int_equal(kvq_artifacts_save(a, dir), KVQ_OK);
            if (kvq_artifacts_load(dir, &b)) fail_msg("%s: %s", kvq_calibrators[c].name, kvq_last_error());
            assert_int_equal(kvq_artifacts_count(b), kvq_artifacts_count(a));
            kvq_artifacts_free(a);
            kvq_artifacts_free(b);
        }
    kvq_trace_free(t);
}

// The ratequant plan on artifacts built in memory (never loaded, so never
// checked): short or empty tensors are shape errors, not overreads (ASan).
static void test_ratequant_plan_short_tensors(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = 2;
    int64_t L2[1] = {2}, zero[1] = {0}, one[1] = {1}, c13[2] = {1, 3}, s14[2] = {1, 4}, c23[2] = {2, 3}, s24[2] = {2, 4};
    kvq_plan_params pp = {.bits = 3, .head_dim = 8, .layer = 1, .kv_head = 0, .cfg = &c};
    kvq_quantizer q;
    // an empty target
    kvq_artifacts *a = crafted_base();
    kvq_artifacts_put(a, "ratequant.bits", x, 1, L2);
    kvq_artifacts_put(a, "ratequant.target_bits", x, 1, zero);
    pp.art = a;
    assert_int_equal(kvq_quantizer_init(&q, "ratequant", &pp), KVQ_ERR_SHAPE);
    assert_non_null(strstr(kvq_last_error(), "target_bits"));
    // curves and sensitivities shorter than the layers (re-allocation for 3 bits)
    kvq_artifacts_put(a, "ratequant.target_bits", x, 1, one);
    kvq_artifacts_put(a, "ratequant.curve", x, 2, c13);
    kvq_artifacts_put(a, "ratequant.sensitivity", x, 2, s24);
    assert_int_equal(kvq_quantizer_init(&q, "ratequant", &pp), KVQ_ERR_SHAPE);
    assert_non_null(strstr(kvq_last_error(), "'ratequant.curve' has shape [1,3], expected [2,3]"));
    kvq_artifacts_put(a, "ratequant.curve", x, 2, c23);
    kvq_artifacts_put(a, "ratequant.sensitivity", x, 2, s14);
    assert_int_equal(kvq_quantizer_init(&q, "ratequant", &pp), KVQ_ERR_SHAPE);
    assert_non_null(strstr(kvq_last_error(), "'ratequant.sensitivity' has shape [1,4], expected [2,4]"));
    // a stored allocation outside 1..8 at the calibrated target
    x[1] = 100;
    kvq_artifacts_put(a, "ratequant.bits", x, 1, L2);
    pp.bits = 2;
    assert_int_equal(kvq_quantizer_init(&q, "ratequant", &pp), KVQ_ERR_FORMAT);
    assert_non_null(strstr(kvq_last_error(), "gives 100 bits to layer 1"));
    kvq_artifacts_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_replace_and_failed_save),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_match_trace_and_plan),
        cmocka_unit_test(test_nonfinite_refused),
        cmocka_unit_test(test_crafted_tensors),
        cmocka_unit_test(test_save_through_symlink),
        cmocka_unit_test(test_calibrated_artifacts_load),
        cmocka_unit_test(test_ratequant_plan_short_tensors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
