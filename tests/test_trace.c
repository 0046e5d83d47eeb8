// test_trace.c — kvq_trace over kvtrace, .npy and mlx_lm inputs: the
// malformed corpus (status + message), the sample traces against a direct
// decode of their bytes, F32/BF16 kvtraces written with kvq_st_write, npy
// in every header version / dtype / byte order / memory order, mlx caches.
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
#include <jansson.h>
#include "f16.h"
#include "npy.h"
#include "pool.h"
#include "trace.h"
#include "calib/calib.h"
#include "methods/methods.h"
#include "test_util.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    return tu_tmpdir_new(tmpdir, sizeof tmpdir, "trace");
}

static int teardown(void **state)
{
    (void)state;
    return tu_rm_rf(tmpdir);
}

// The corpus generator's values: ((7l + 3h + 5t + d + salt) mod 17 - 8) / 8.
static float corpus_val(int l, int h, int t, int d, int salt)
{
    return (float)((l * 7 + h * 3 + t * 5 + d + salt) % 17 - 8) / 8.0f;
}

// IEEE half by formula, independent of engine/f16.c.
static float half_formula(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1.0 + m / 1024.0, e - 15);
    return (float)((h >> 15) ? -v : v);
}

static void expect_reject(const char *path, const kvq_trace_opts *o, kvq_status want, const char *substr)
{
    kvq_trace *t = (kvq_trace *)1;
    kvq_status s = kvq_trace_open(path, o, &t);
    const char *msg = kvq_last_error();
    if (s != want || !strstr(msg, substr) || strchr(msg, '\n'))
        fail_msg("%s: status %s, message '%s'; expected %s with '%s'", path, kvq_status_str(s), msg,
                 kvq_status_str(want), substr);
    assert_null(t);
}

static const struct { const char *file; kvq_status st; const char *substr; } corpus[] = {
    {"tr_missing_layer.safetensors", KVQ_ERR_FORMAT, "tensor 'layers.1.keys' is missing: layers run 0..2"},
    {"tr_head_dim_mismatch.safetensors", KVQ_ERR_SHAPE,
     "tensor 'layers.1.keys': head_dim 16, expected 8 (as in tensor 'layers.0.keys')"},
    {"tr_kv_heads_mismatch.safetensors", KVQ_ERR_SHAPE, "tensor 'layers.1.keys': n_kv_heads 3, expected 2"},
    {"tr_nan_keys.safetensors", KVQ_ERR_NONFINITE, "tr_nan_keys.safetensors: layers.1.keys: NaN at head 1, token 3, channel 5"},
    {"tr_inf_values.safetensors", KVQ_ERR_NONFINITE, "layers.0.values: Inf at head 0, token 2, channel 7"},
    {"tr_not_kvtrace.safetensors", KVQ_ERR_FORMAT, "__metadata__ format is 'pt', expected 'kvtrace'"},
    {"tr_bad_gqa.safetensors", KVQ_ERR_SHAPE, "n_heads 3 is not a multiple of n_kv_heads 2"},
    {"tr_query_pos_range.safetensors", KVQ_ERR_FORMAT, "tensor 'query_positions': element 2 is 4, expected 0..3"},
    {"tr_meta_mismatch.safetensors", KVQ_ERR_SHAPE, "__metadata__ layers is 3 but the tensors give 2"},
    {"tr_values_gap.safetensors", KVQ_ERR_FORMAT, "tensor 'layers.1.values' is missing"},
    {"mlx_quantized.safetensors", KVQ_ERR_UNSUPPORTED, "quantized mlx_lm prompt cache"},
    {"st_truncated.safetensors", KVQ_ERR_FORMAT, "run past the end of the file"},
    {"st_duplicate.safetensors", KVQ_ERR_FORMAT, "duplicate object key"},
    {"npy_bad_magic.npy", KVQ_ERR_FORMAT, "npy_bad_magic.npy: bad magic (not a .npy file)"},
    {"npy_truncated.npy", KVQ_ERR_FORMAT, "truncated: shape needs 512 bytes of data, the file has 412"},
    {"npy_wrong_ndim.npy", KVQ_ERR_SHAPE, "shape [2,4,8] has 3 dims, expected 4: [layers, kv_heads, tokens, head_dim]"},
    {"npy_bad_header.npy", KVQ_ERR_FORMAT, "header lacks 'shape'"},
    {"npy_object.npy", KVQ_ERR_FORMAT, "descr '|O' is not supported"},
    {"npy_header_past_end.npy", KVQ_ERR_FORMAT, "header length 5000 runs past the end of the file"},
    {"npy_nan.npy", KVQ_ERR_NONFINITE, "npy_nan.npy: NaN at layer 1, head 0, token 2, channel 3"},
    {"npy_version4.npy", KVQ_ERR_UNSUPPORTED, "format version 4.0, expected 1.0, 2.0 or 3.0"},
};

static void test_corpus_rejects(void **state)
{
    (void)state;
    char path[300];
    for (size_t i = 0; i < sizeof corpus / sizeof *corpus; i++) {
        snprintf(path, sizeof path, "tests/data/%s", corpus[i].file);
        expect_reject(path, NULL, corpus[i].st, corpus[i].substr);
    }
    kvq_trace_opts o = {.values_path = "tests/data/npy_values_mismatch.npy"};
    expect_reject("tests/data/npy_keys.npy", &o, KVQ_ERR_SHAPE,
                  "npy_values_mismatch.npy: values shape [2,2,5,8] differs from the keys' shape [2,2,4,8]");
    o.values_path = "tests/data/npy_nan.npy";
    expect_reject("tests/data/npy_keys.npy", &o, KVQ_ERR_NONFINITE, "npy_nan.npy: NaN at layer 1");
    // every safetensors-level corpus file is rejected through the trace API too
    DIR *d = opendir("tests/data");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "st_", 3) != 0) continue;
        snprintf(path, sizeof path, "tests/data/%s", e->d_name);
        kvq_trace *t;
        assert_int_not_equal(kvq_trace_open(path, NULL, &t), KVQ_OK);
        assert_non_null(strstr(kvq_last_error(), path));
        n++;
    }
    if (d) closedir(d);
    assert_true(n >= 16);
}

// Free-text metadata holding escape sequences (issue 17) reaches the trace
// struct with every control byte, C1 control and newline replaced; a
// head_dim above KVQ_MAX_HEAD_DIM loads (info works on it) but every
// calibrator and method refuses it by name before touching its scratch.
static void test_escape_metadata_and_wide_heads(void **state)
{
    (void)state;
    kvq_trace *t;
    assert_int_equal(kvq_trace_open("tests/data/tr_escape_meta.safetensors", NULL, &t), KVQ_OK);
    assert_string_equal(t->model, "?]0;owned??[2Jmodel");
    assert_string_equal(t->source, "??31mred?[0m?second line");
    kvq_trace_free(t);
    char s[] = "ok \xe2\x94\x80 \xc2\x9b \xff \x1b[1m \xed\xa0\x80 \x7f\t\n";
    assert_int_equal(kvq_text_sanitize(s, true), 7);
    assert_string_equal(s, "ok \xe2\x94\x80 ?? ? ?[1m ??? ?\t\n");
    static const char *const wide[] = {"tests/data/tr_head_dim_300.safetensors", "tests/data/tr_head_dim_512.safetensors"};
    for (int w = 0; w < 2; w++) {
        assert_int_equal(kvq_trace_open(wide[w], NULL, &t), KVQ_OK);
        kvq_calib_opts o;
        kvq_calib_opts_default(&o);
        o.num_clusters = 2;
        o.num_centroids = 2;
        for (int c = 0; c < kvq_n_calibrators; c++) {
            kvq_artifacts *a = (kvq_artifacts *)1;
            kvq_status st = kvq_calibrate(kvq_calibrators[c].name, t, &o, NULL, &a);
            if (st != KVQ_ERR_UNSUPPORTED || !strstr(kvq_last_error(), "supported 1..256"))
                fail_msg("%s on %s: status %d, '%s'", kvq_calibrators[c].name, wide[w], st, kvq_last_error());
            assert_null(a);
            // the calibrator called directly checks too
            kvq_artifacts_new(&a);
            assert_int_equal(kvq_calibrators[c].run(t, &o, NULL, a), KVQ_ERR_UNSUPPORTED);
            kvq_artifacts_free(a);
        }
        kvq_config cfg;
        kvq_config_default(&cfg);
        for (int m = 0; m < kvq_n_methods; m++) {
            kvq_plan_params pp = {.bits = kvq_methods[m].min_bits, .head_dim = t->head_dim, .cfg = &cfg};
            kvq_quantizer q;
            assert_int_not_equal(kvq_quantizer_init(&q, kvq_methods[m].name, &pp), KVQ_OK);
        }
        kvq_trace_free(t);
    }
}

static void test_valid_corpus_trace(void **state)
{
    (void)state;
    kvq_trace *t;
    if (kvq_trace_open("tests/data/tr_valid.safetensors", NULL, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
    assert_int_equal(t->kind, KVQ_TRACE_KVTRACE);
    assert_int_equal(t->n_layers, 2);
    assert_int_equal(t->n_heads, 4);
    assert_int_equal(t->n_kv_heads, 2);
    assert_int_equal(t->n_tokens, 4);
    assert_int_equal(t->head_dim, 8);
    assert_int_equal(t->n_queries, 4);
    assert_true(t->has_values);
    assert_int_equal(t->dtype, KVQ_DT_F16);
    assert_string_equal(t->model, "corpus");
    assert_true(t->rope_theta == 10000.0 && t->post_rope && isnan(t->bits_per_byte));
    assert_non_null(t->tokens);
    assert_int_equal(t->tokens[3], 68);
    for (int i = 0; i < 4; i++) assert_int_equal(t->query_positions[i], i);
    float x[32];
    for (int l = 0; l < 2; l++)
        for (int h = 0; h < 4; h++)
            for (int w = 0; w < 3; w++) {
                if (w < 2 && h >= 2) continue;
                kvq_status s = w == 0 ? kvq_trace_keys(t, l, h, x) : w == 1 ? kvq_trace_values(t, l, h, x)
                                                                          : kvq_trace_queries(t, l, h, x);
                assert_int_equal(s, KVQ_OK);
                for (int k = 0; k < 4; k++)
                    for (int d = 0; d < 8; d++) assert_true(x[k * 8 + d] == corpus_val(l, h, k, d, w));
            }
    assert_int_equal(kvq_trace_keys(t, 2, 0, x), KVQ_ERR_ARG);
    assert_int_equal(kvq_trace_keys(t, 0, 2, x), KVQ_ERR_ARG);
    assert_int_equal(kvq_trace_keys(t, -1, 0, x), KVQ_ERR_ARG);
    assert_int_equal(kvq_trace_queries(t, 0, 4, x), KVQ_ERR_ARG);
    assert_int_equal(kvq_trace_keys(t, 0, 0, NULL), KVQ_ERR_ARG);
    kvq_trace_free(t);
}

// data_offsets[0] of a tensor, from our own parse of the header.
static long tensor_offset(const uint8_t *b, const char *name, size_t *hdr_end)
{
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    *hdr_end = 8 + (size_t)n;
    json_t *root = json_loadb((const char *)b + 8, (size_t)n, 0, NULL);
    assert_non_null(root);
    long off = (long)json_integer_value(json_array_get(json_object_get(json_object_get(root, name), "data_offsets"), 0));
    json_decref(root);
    return off;
}

static void test_sample_traces(void **state)
{
    (void)state;
    static const char *const files[] = {"sample_data/traces/code-1k.safetensors", "sample_data/traces/prose-1k.safetensors"};
    float *x = malloc(1024 * 128 * sizeof *x);
    for (int f = 0; f < 2; f++) {
        kvq_trace *t;
        if (kvq_trace_open(files[f], NULL, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
        assert_int_equal(t->kind, KVQ_TRACE_KVTRACE);
        assert_int_equal(t->n_layers, 6);
        assert_int_equal(t->n_heads, 4);
        assert_int_equal(t->n_kv_heads, 2);
        assert_int_equal(t->n_tokens, 1024);
        assert_int_equal(t->head_dim, 128);
        assert_int_equal(t->n_queries, 1024);
        assert_true(t->has_values);
        assert_int_equal(t->dtype, KVQ_DT_F16);
        assert_true(t->rope_theta == 10000.0 && t->post_rope);
        assert_true(strlen(t->model) > 0 && strlen(t->source) > 0);
        assert_int_equal(t->query_positions[1023], 1023);
        if (f == 0) assert_true(fabs(t->bits_per_byte - 1.513) < 1e-9);

        // direct decode of the file's bytes for layer 0 head 0 and layer 5 head 1
        FILE *fp = fopen(files[f], "rb");
        assert_non_null(fp);
        fseek(fp, 0, SEEK_END);
        size_t len = (size_t)ftell(fp);
        fseek(fp, 0, SEEK_SET);
        uint8_t *b = malloc(len);
        assert_int_equal(fread(b, 1, len, fp), len);
        fclose(fp);
        static const struct { const char *name; int layer, head, q; } probe[] = {
            {"layers.0.keys", 0, 0, 0}, {"layers.5.keys", 5, 1, 0}, {"layers.3.values", 3, 1, 1}, {"layers.2.queries", 2, 3, 2}};
        for (int p = 0; p < 4; p++) {
            size_t hend;
            long off = tensor_offset(b, probe[p].name, &hend);
            kvq_status s = probe[p].q == 0 ? kvq_trace_keys(t, probe[p].layer, probe[p].head, x)
                         : probe[p].q == 1 ? kvq_trace_values(t, probe[p].layer, probe[p].head, x)
                                           : kvq_trace_queries(t, probe[p].layer, probe[p].head, x);
            assert_int_equal(s, KVQ_OK);
            for (int tok = 0; tok < 1024; tok += 511)
                for (int d = 0; d < 128; d++) {
                    size_t at = hend + (size_t)off + 2 * (((size_t)probe[p].head * 1024 + (size_t)tok) * 128 + (size_t)d);
                    uint16_t h = (uint16_t)(b[at] | b[at + 1] << 8);
                    assert_true(x[tok * 128 + d] == half_formula(h));
                }
        }
        // layer 0 head 0 token 0 is not all zeros (the probe means something)
        assert_int_equal(kvq_trace_keys(t, 0, 0, x), KVQ_OK);
        double s2 = 0;
        for (int d = 0; d < 128; d++) s2 += (double)x[d] * x[d];
        assert_true(s2 > 0);
        free(b);
        kvq_trace_free(t);
    }
    free(x);
}

// Deterministic pseudo-random values in [-4, 4).
static float lcg_val(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) * 0x1p-53 * 8.0 - 4.0);
}

static void write_kvtrace(const char *path, kvq_dtype dt, int L, int H, int KV, int T, int NQ, int D,
                          const float *k, const float *v, const float *q, const int32_t *qpos)
{
    int esz = kvq_dtype_size(dt);
    size_t kn = (size_t)KV * T * D, qn = (size_t)H * NQ * D;
    uint8_t *buf = malloc((size_t)L * (2 * kn + qn) * (size_t)esz);
    kvq_st_wtensor w[3 * 8 + 1];
    char names[3 * 8][32];
    int n = 0;
    uint8_t *at = buf;
    for (int l = 0; l < L; l++)
        for (int s = 0; s < 3; s++) {
            const float *src = (s == 0 ? k : s == 1 ? v : q) + (size_t)l * (s == 2 ? qn : kn);
            size_t cnt = s == 2 ? qn : kn;
            for (size_t i = 0; i < cnt; i++) {
                if (dt == KVQ_DT_F32) memcpy(at + 4 * i, &src[i], 4);
                else {
                    uint16_t b = kvq_f32_to_bf16(src[i]);
                    memcpy(at + 2 * i, &b, 2);
                }
            }
            snprintf(names[n], sizeof names[n], "layers.%d.%s", l, s == 0 ? "keys" : s == 1 ? "values" : "queries");
            w[n] = (kvq_st_wtensor){names[n], dt, 3, {s == 2 ? H : KV, s == 2 ? NQ : T, D}, at};
            at += cnt * (size_t)esz;
            n++;
        }
    w[n++] = (kvq_st_wtensor){"query_positions", KVQ_DT_I32, 1, {NQ}, qpos};
    char ls[16], hs[16], kvs[16], ds[16];
    snprintf(ls, sizeof ls, "%d", L);
    snprintf(hs, sizeof hs, "%d", H);
    snprintf(kvs, sizeof kvs, "%d", KV);
    snprintf(ds, sizeof ds, "%d", D);
    const char *mk[] = {"format", "version", "layers", "n_heads", "n_kv_heads", "head_dim", "rope_theta", "post_rope", "model", "bits_per_byte"};
    const char *mv[] = {"kvtrace", "1", ls, hs, kvs, ds, "500000", "false", "synthetic", "0.75"};
    if (kvq_st_write(path, w, n, mk, mv, 10) != KVQ_OK) fail_msg("%s", kvq_last_error());
    free(buf);
}

static void test_kvtrace_written_round_trip(void **state)
{
    (void)state;
    enum { L = 3, H = 6, KV = 2, T = 37, NQ = 5, D = 24 };
    size_t kn = (size_t)L * KV * T * D, qn = (size_t)L * H * NQ * D;
    float *k = malloc(kn * 4), *v = malloc(kn * 4), *q = malloc(qn * 4), x[T * D];
    uint64_t seed = 42;
    for (size_t i = 0; i < kn; i++) k[i] = lcg_val(&seed), v[i] = lcg_val(&seed);
    for (size_t i = 0; i < qn; i++) q[i] = lcg_val(&seed);
    int32_t qpos[NQ] = {36, 0, 5, 17, 36};
    for (int pass = 0; pass < 2; pass++) {
        kvq_dtype dt = pass ? KVQ_DT_BF16 : KVQ_DT_F32;
        char path[128];
        snprintf(path, sizeof path, "%s/synth_%s.safetensors", tmpdir, kvq_dtype_name(dt));
        write_kvtrace(path, dt, L, H, KV, T, NQ, D, k, v, q, qpos);
        kvq_trace *t;
        if (kvq_trace_open(path, NULL, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
        assert_int_equal(t->dtype, dt);
        assert_int_equal(t->n_layers, L);
        assert_int_equal(t->n_heads, H);
        assert_int_equal(t->n_kv_heads, KV);
        assert_int_equal(t->n_tokens, T);
        assert_int_equal(t->n_queries, NQ);
        assert_int_equal(t->head_dim, D);
        assert_true(t->rope_theta == 500000.0 && !t->post_rope && t->bits_per_byte == 0.75);
        assert_null(t->tokens);
        assert_memory_equal(t->query_positions, qpos, sizeof qpos);
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++)
                for (int s = 0; s < 3; s++) {
                    if (s < 2 && h >= KV) continue;
                    const float *src = s == 0 ? k : s == 1 ? v : q;
                    size_t rows = s == 2 ? NQ : T, base = ((size_t)l * (s == 2 ? H : KV) + (size_t)h) * rows * D;
                    assert_int_equal(s == 0 ? kvq_trace_keys(t, l, h, x) : s == 1 ? kvq_trace_values(t, l, h, x)
                                                                         : kvq_trace_queries(t, l, h, x), KVQ_OK);
                    for (size_t i = 0; i < rows * D; i++) {
                        float want = pass ? kvq_bf16_to_f32(kvq_f32_to_bf16(src[base + i])) : src[base + i];
                        if (x[i] != want) fail_msg("%s layer %d head %d stream %d elem %zu: %g != %g", path, l, h, s, i, (double)x[i], (double)want);
                        assert_true(fabsf(x[i] - src[base + i]) <= fabsf(src[base + i]) * 0x1p-8f);
                    }
                }
        kvq_trace_free(t);
    }
    free(k);
    free(v);
    free(q);
}

// ---- npy: our own writer, independent of engine/io/npy.c ----
static void write_npy(const char *path, int version, const char *descr, int fortran, const int64_t shape[4],
                      const float *vals /* logical C order */, int as_bf16)
{
    char dict[200];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': (%lld, %lld, %lld, %lld), }",
                     descr, fortran ? "True" : "False", (long long)shape[0], (long long)shape[1],
                     (long long)shape[2], (long long)shape[3]);
    int pre = version == 1 ? 10 : 12, hlen = k + 1;
    hlen += (64 - (pre + hlen) % 64) % 64;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t p[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (uint8_t)version, 0,
                     (uint8_t)hlen, (uint8_t)(hlen >> 8), 0, 0};
    fwrite(p, 1, (size_t)pre, f);
    fwrite(dict, 1, (size_t)k, f);
    for (int i = k; i < hlen - 1; i++) fputc(' ', f);
    fputc('\n', f);
    int esz = descr[2] - '0', be = descr[0] == '>';
    size_t n = (size_t)(shape[0] * shape[1] * shape[2] * shape[3]);
    for (size_t s = 0; s < n; s++) {
        // storage position s -> logical index
        size_t r = s, idx[4];
        if (fortran) for (int d = 0; d < 4; d++) idx[d] = r % (size_t)shape[d], r /= (size_t)shape[d];
        else for (int d = 3; d >= 0; d--) idx[d] = r % (size_t)shape[d], r /= (size_t)shape[d];
        float x = vals[((idx[0] * (size_t)shape[1] + idx[1]) * (size_t)shape[2] + idx[2]) * (size_t)shape[3] + idx[3]];
        uint8_t b[8];
        if (esz == 2) {
            uint16_t h = as_bf16 ? kvq_f32_to_bf16(x) : kvq_f32_to_f16(x);
            memcpy(b, &h, 2);
        } else if (esz == 4) {
            memcpy(b, &x, 4);
        } else {
            double dd = x;
            memcpy(b, &dd, 8);
        }
        for (int i = 0; i < esz; i++) fputc(b[be ? esz - 1 - i : i], f);
    }
    fclose(f);
}

static void check_npy_trace(const kvq_trace *t, const int64_t shape[4], const float *keys, const float *vals)
{
    float x[64];
    assert_int_equal(t->kind, KVQ_TRACE_NPY);
    assert_int_equal(t->n_layers, shape[0]);
    assert_int_equal(t->n_kv_heads, shape[1]);
    assert_int_equal(t->n_heads, shape[1]);
    assert_int_equal(t->n_tokens, shape[2]);
    assert_int_equal(t->head_dim, shape[3]);
    assert_int_equal(t->n_queries, 0);
    assert_int_equal(kvq_trace_queries(t, 0, 0, x), KVQ_ERR_ARG);
    for (int l = 0; l < shape[0]; l++)
        for (int h = 0; h < shape[1]; h++)
            for (int s = 0; s < 2; s++) {
                const float *src = s ? vals : keys;
                if (!src) {
                    assert_int_equal(kvq_trace_values(t, l, h, x), KVQ_ERR_ARG);
                    continue;
                }
                assert_int_equal(s ? kvq_trace_values(t, l, h, x) : kvq_trace_keys(t, l, h, x), KVQ_OK);
                size_t n = (size_t)(shape[2] * shape[3]), base = ((size_t)l * (size_t)shape[1] + (size_t)h) * n;
                for (size_t i = 0; i < n; i++)
                    if (x[i] != src[base + i]) fail_msg("%s: layer %d head %d elem %zu: %g != %g", t->path, l, h, i, (double)x[i], (double)src[base + i]);
                // a row range is the same slice of the stream, in either memory order
                kvq_stream w = s ? KVQ_STREAM_VALUES : KVQ_STREAM_KEYS;
                int T = (int)shape[2], D = (int)shape[3];
                assert_int_equal(kvq_trace_rows(t, w, l, h, 1, T - 2, x), KVQ_OK);
                for (int i = 0; i < (T - 2) * D; i++) assert_true(x[i] == src[base + (size_t)D + (size_t)i]);
                assert_int_equal(kvq_trace_rows(t, w, l, h, T - 1, 2, x), KVQ_ERR_ARG);
                assert_int_equal(kvq_trace_rows(t, w, l, h, -1, 1, x), KVQ_ERR_ARG);
            }
}

static void test_npy_round_trip(void **state)
{
    (void)state;
    const int64_t shape[4] = {3, 2, 5, 6};   // distinct dims catch transposition mistakes
    float keys[180], vals[180];
    for (int i = 0; i < 180; i++) {   // exact in f16 and bf16
        keys[i] = (float)((i * 37) % 61 - 30) / 16.0f;
        vals[i] = (float)((i * 11) % 29 - 14) / 4.0f;
    }
    static const char *const descrs[] = {"<f2", "<f4", "<f8", ">f2", ">f4", ">f8"};
    char kp[128], vp[128];
    int count = 0;
    for (int version = 1; version <= 3; version++)
        for (int di = 0; di < 6; di++)
            for (int fortran = 0; fortran < 2; fortran++) {
                snprintf(kp, sizeof kp, "%s/k_v%d_%d_%d.npy", tmpdir, version, di, fortran);
                snprintf(vp, sizeof vp, "%s/v_v%d_%d_%d.npy", tmpdir, version, di, fortran);
                write_npy(kp, version, descrs[di], fortran, shape, keys, 0);
                write_npy(vp, version, descrs[(di + 1) % 6], !fortran, shape, vals, 0);
                kvq_trace_opts o = {.values_path = vp};
                kvq_trace *t;
                if (kvq_trace_open(kp, &o, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
                assert_int_equal(t->dtype, descrs[di][2] == '2' ? KVQ_DT_F16 : descrs[di][2] == '4' ? KVQ_DT_F32 : KVQ_DT_F64);
                check_npy_trace(t, shape, keys, vals);
                kvq_trace_free(t);
                if (kvq_trace_open(kp, NULL, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
                assert_false(t->has_values);
                check_npy_trace(t, shape, keys, NULL);
                kvq_trace_free(t);
                count++;
            }
    assert_int_equal(count, 36);

    // bf16 stored as opaque 2-byte data: needs the override
    static const char *const opaque[] = {"<V2", "|V2", "<u2", "<i2", ">u2"};
    for (int i = 0; i < 5; i++) {
        snprintf(kp, sizeof kp, "%s/bf16_%d.npy", tmpdir, i);
        write_npy(kp, 1, opaque[i], i % 2, shape, keys, 1);
        kvq_trace *t;
        kvq_trace_opts o = {.npy_dtype_bf16 = true};
        if (kvq_trace_open(kp, &o, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
        assert_int_equal(t->dtype, KVQ_DT_BF16);
        check_npy_trace(t, shape, keys, NULL);
        kvq_trace_free(t);
        expect_reject(kp, NULL, KVQ_ERR_FORMAT, "(use --dtype bf16 if it holds bfloat16)");
    }
    kvq_trace_opts o = {.npy_dtype_bf16 = true};
    expect_reject("tests/data/npy_keys.npy", &o, KVQ_ERR_FORMAT, "descr '<f4' has 4-byte elements, --dtype bf16 expects 2-byte data");

    // the engine's own writer reads back
    snprintf(kp, sizeof kp, "%s/engine_written.npy", tmpdir);
    assert_int_equal(kvq_npy_write_f32(kp, 4, shape, keys), KVQ_OK);
    kvq_trace *t;
    if (kvq_trace_open(kp, NULL, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
    check_npy_trace(t, shape, keys, NULL);
    kvq_trace_free(t);

    // the corpus pair written by Python
    o = (kvq_trace_opts){.values_path = "tests/data/npy_values.npy"};
    if (kvq_trace_open("tests/data/npy_keys.npy", &o, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
    float x[32];
    assert_int_equal(kvq_trace_values(t, 1, 1, x), KVQ_OK);
    for (int k = 0; k < 4; k++)
        for (int d = 0; d < 8; d++) assert_true(x[k * 8 + d] == corpus_val(1, 1, k, d, 1));
    kvq_trace_free(t);
}

// Every prefix of a valid .npy is rejected without a crash.
static void test_npy_truncations(void **state)
{
    (void)state;
    FILE *f = fopen("tests/data/npy_keys.npy", "rb");
    assert_non_null(f);
    uint8_t b[1024];
    size_t len = fread(b, 1, sizeof b, f);
    fclose(f);
    kvq_npy a;
    for (size_t n = 0; n < len; n++) assert_int_not_equal(kvq_npy_parse("cut.npy", b, n, false, &a), KVQ_OK);
    assert_int_equal(kvq_npy_parse("whole.npy", b, len, false, &a), KVQ_OK);
    assert_int_equal(a.version, 1);
    assert_string_equal(a.descr, "<f4");
}

static void test_mlx_cache(void **state)
{
    (void)state;
    kvq_trace *t;
    if (kvq_trace_open("tests/data/mlx_cache.safetensors", NULL, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
    assert_int_equal(t->kind, KVQ_TRACE_MLX);
    assert_int_equal(t->n_layers, 2);
    assert_int_equal(t->n_kv_heads, 2);
    assert_int_equal(t->n_heads, 2);
    assert_int_equal(t->n_tokens, 4);
    assert_int_equal(t->head_dim, 8);
    assert_int_equal(t->n_queries, 0);
    assert_true(t->has_values);
    float x[32];
    for (int l = 0; l < 2; l++)
        for (int h = 0; h < 2; h++) {
            assert_int_equal(kvq_trace_keys(t, l, h, x), KVQ_OK);
            for (int i = 0; i < 32; i++) assert_true(x[i] == corpus_val(l, h, i / 8, i % 8, 0));
            assert_int_equal(kvq_trace_values(t, l, h, x), KVQ_OK);
            for (int i = 0; i < 32; i++) assert_true(x[i] == corpus_val(l, h, i / 8, i % 8, 1));
        }
    kvq_trace_free(t);

    // a BF16 cache of 3 layers written here; then one with batch 2
    uint16_t kb[3][2][1 * 3 * 7 * 4];
    for (int l = 0; l < 3; l++)
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < 84; i++) kb[l][s][i] = kvq_f32_to_bf16((float)(l * 100 + s * 50 + i) / 8.0f);
    kvq_st_wtensor w[6];
    static const char *const names[6] = {"2.1", "0.0", "1.1", "0.1", "2.0", "1.0"};   // any order
    for (int i = 0; i < 6; i++) {
        int l = names[i][0] - '0', s = names[i][2] - '0';
        w[i] = (kvq_st_wtensor){names[i], KVQ_DT_BF16, 4, {1, 3, 7, 4}, kb[l][s]};
    }
    const char *mk[] = {"format"}, *mv[] = {"mlx"};
    char path[128];
    snprintf(path, sizeof path, "%s/mlx3.safetensors", tmpdir);
    assert_int_equal(kvq_st_write(path, w, 6, mk, mv, 1), KVQ_OK);
    if (kvq_trace_open(path, NULL, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
    assert_int_equal(t->kind, KVQ_TRACE_MLX);
    assert_int_equal(t->n_layers, 3);
    assert_int_equal(t->n_kv_heads, 3);
    assert_int_equal(t->dtype, KVQ_DT_BF16);
    assert_int_equal(kvq_trace_values(t, 2, 1, x), KVQ_OK);
    for (int i = 0; i < 28; i++) assert_true(x[i] == kvq_bf16_to_f32(kb[2][1][28 + i]));
    kvq_trace_free(t);
    for (int i = 0; i < 6; i++) w[i].shape[0] = 1 + (i == 4);
    assert_int_equal(kvq_st_write(path, w, 6, mk, mv, 1), KVQ_OK);
    expect_reject(path, NULL, KVQ_ERR_SHAPE, "tensor '2.0': shape [2,3,7,4] has batch 2, expected 1");
    assert_int_equal(kvq_st_write(path, w + 1, 1, mk, mv, 1), KVQ_OK);   // keys only
    expect_reject(path, NULL, KVQ_ERR_FORMAT, "tensor '0.1' (values) is missing");
}

// Rules of TRACE_FORMAT.md that the corpus does not cover, on tiny traces
// written here: version, layer-name spelling, query positions, dtypes.
static void test_kvtrace_rules(void **state)
{
    (void)state;
    uint16_t k[2 * 3 * 4] = {0}, q[4 * 2 * 4] = {0};
    int32_t ipos[2] = {0, 2}, itok[3] = {1, 2, 3};
    char path[128];
    snprintf(path, sizeof path, "%s/rules.safetensors", tmpdir);
    const char *mk[] = {"format", "version"}, *mv[] = {"kvtrace", "1"};
    kvq_st_wtensor base[] = {
        {"layers.0.keys", KVQ_DT_F16, 3, {2, 3, 4}, k},
        {"layers.0.queries", KVQ_DT_F16, 3, {4, 2, 4}, q},
        {"query_positions", KVQ_DT_I32, 1, {2}, ipos},
        {"tokens", KVQ_DT_I32, 1, {3}, itok},
    };
    kvq_trace *t;
    assert_int_equal(kvq_st_write(path, base, 4, mk, mv, 2), KVQ_OK);
    if (kvq_trace_open(path, NULL, &t) != KVQ_OK) fail_msg("%s", kvq_last_error());
    assert_false(t->has_values);   // values are optional (all-or-none)
    assert_int_equal(t->n_queries, 2);
    assert_int_equal(t->query_positions[1], 2);
    float x[12];
    assert_int_equal(kvq_trace_values(t, 0, 0, x), KVQ_ERR_ARG);
    kvq_trace_free(t);

    assert_int_equal(kvq_st_write(path, base, 2, mk, mv, 2), KVQ_OK);   // no query_positions, 2 queries != 3 tokens
    expect_reject(path, NULL, KVQ_ERR_SHAPE, "no tensor 'query_positions' and n_queries 2 != n_tokens 3");
    const char *v2[] = {"kvtrace", "2"};
    assert_int_equal(kvq_st_write(path, base, 4, mk, v2, 2), KVQ_OK);
    expect_reject(path, NULL, KVQ_ERR_UNSUPPORTED, "__metadata__ version is '2', expected '1'");
    assert_int_equal(kvq_st_write(path, base, 4, mk, mv, 1), KVQ_OK);   // format only: fine
    assert_int_equal(kvq_trace_open(path, NULL, &t), KVQ_OK);
    kvq_trace_free(t);
    assert_int_equal(kvq_st_write(path, base, 4, NULL, NULL, 0), KVQ_OK);
    expect_reject(path, NULL, KVQ_ERR_FORMAT, "__metadata__ format is missing, expected 'kvtrace'");

    kvq_st_wtensor odd[4];
    memcpy(odd, base, sizeof odd);
    odd[0].name = "layers.00.keys";
    assert_int_equal(kvq_st_write(path, odd, 4, mk, mv, 2), KVQ_OK);
    expect_reject(path, NULL, KVQ_ERR_FORMAT, "tensor 'layers.00.keys': expected layers.{L}.keys|values|queries");
    memcpy(odd, base, sizeof odd);
    odd[0] = (kvq_st_wtensor){"layers.0.keys", KVQ_DT_I16, 3, {2, 3, 4}, k};
    assert_int_equal(kvq_st_write(path, odd, 4, mk, mv, 2), KVQ_OK);
    expect_reject(path, NULL, KVQ_ERR_FORMAT, "tensor 'layers.0.keys' is I16, expected F16, BF16 or F32");
    memcpy(odd, base, sizeof odd);
    odd[1].shape[2] = 2;   // queries head_dim 2 vs keys 4
    odd[1].shape[0] = 8;
    assert_int_equal(kvq_st_write(path, odd, 4, mk, mv, 2), KVQ_OK);
    expect_reject(path, NULL, KVQ_ERR_SHAPE, "tensor 'layers.0.queries': head_dim 2, expected 4 (as in tensor 'layers.0.keys')");
    memcpy(odd, base, sizeof odd);
    odd[3].shape[0] = 2;   // tokens must be [n_tokens]
    assert_int_equal(kvq_st_write(path, odd, 4, mk, mv, 2), KVQ_OK);
    expect_reject(path, NULL, KVQ_ERR_SHAPE, "tensor 'tokens' is I32 [2], expected I32 [3]");
    const char *mk3[] = {"format", "head_dim"}, *mv3[] = {"kvtrace", "four"};
    assert_int_equal(kvq_st_write(path, base, 4, mk3, mv3, 2), KVQ_OK);
    expect_reject(path, NULL, KVQ_ERR_FORMAT, "__metadata__ head_dim is 'four', expected an integer");
}

// The open-time scan runs one tensor per task: with several bad tensors the
// first in layer order (keys, values, queries) is named on any thread count.
static void test_nonfinite_first_in_order(void **state)
{
    (void)state;
    enum { L = 3, KV = 2, T = 5, D = 4, H = 2, NQ = 2 };
    float k[L * KV * T * D], v[L * KV * T * D], q[L * H * NQ * D];
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) k[i] = v[i] = 0.25f;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) q[i] = 0.5f;
    k[2 * KV * T * D + 7] = NAN;                  // layer 2 keys
    v[1 * KV * T * D + 1 * T * D + 3 * D + 2] = INFINITY;   // layer 1 values, head 1, token 3, channel 2
    q[2 * H * NQ * D + 1] = NAN;                  // layer 2 queries
    int32_t qpos[NQ] = {1, 4};
    char path[128];
    snprintf(path, sizeof path, "%s/nonfinite_order.safetensors", tmpdir);
    write_kvtrace(path, KVQ_DT_F32, L, H, KV, T, NQ, D, k, v, q, qpos);
    for (int th = 1; th <= 2; th++) {
        kvq_threads_set(th);
        expect_reject(path, NULL, KVQ_ERR_NONFINITE, "layers.1.values: Inf at head 1, token 3, channel 2");
    }
    kvq_threads_set(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_rejects),
        cmocka_unit_test(test_valid_corpus_trace),
        cmocka_unit_test(test_escape_metadata_and_wide_heads),
        cmocka_unit_test(test_sample_traces),
        cmocka_unit_test(test_kvtrace_written_round_trip),
        cmocka_unit_test(test_npy_round_trip),
        cmocka_unit_test(test_npy_truncations),
        cmocka_unit_test(test_mlx_cache),
        cmocka_unit_test(test_kvtrace_rules),
        cmocka_unit_test(test_nonfinite_first_in_order),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
