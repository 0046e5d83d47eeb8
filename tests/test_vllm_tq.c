// test_vllm_tq.c — vLLM's TurboQuant KV presets (vllm:tq_k4/k3 keys,
// vllm:tq_v4/v3 values, vllm:fp8_e4m3 keys for k8v4) against
// tests/data/formats/vllm_tq.txt. Route: the vectors come from
// tools/vllm_tq_vectors.py, a transcription of vLLM's store / dequant
// kernels (file + commit cited there); running vLLM's own Triton kernels on
// the GPU machine was tried and refused (the checkout that travels is over
// the device's 64 MiB limit). Every slot byte must be equal; decoded values
// equal to float tolerance. Plus vLLM's slot sizes (config.py: 196, 134,
// 118, 102 bytes at head_dim 128), the recommend rows, their memory with
// the boundary layers vLLM leaves at the model dtype, scores against the
// decoded keys, and the head_dims the format refuses. And fp8 with
// --calculate-kv-scales (vllm:fp8_e4m3_calc): the per-layer scales bit-equal
// to calc_kv_scales' on the first batch, every code, the trace-side scales.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "test_util.h"
#include "artifacts.h"
#include "deploy.h"
#include "f16.h"
#include "kvq.h"
#include "methods/methods.h"
#include "rng.h"
#include "trace.h"

#define VEC "tests/data/formats/vllm_tq.txt"
#define DMAX 256

// n hex float32 words, then past the next '|'.
static char *read_floats(char *p, float *x, int n)
{
    p = tu_read_hex_floats(p, x, n);
    assert_non_null(p);
    while (*p == ' ') p++;
    if (*p == '|') p++;
    return p;
}

static char *read_bytes(char *p, uint8_t *b, size_t cap, size_t *n)
{
    while (*p == ' ') p++;
    *n = 0;
    while (p[0] && p[1] && p[0] != ' ' && p[0] != '\n' && *n < cap) {
        b[(*n)++] = (uint8_t)(tu_hexval(p[0]) << 4 | tu_hexval(p[1]));
        p += 2;
    }
    while (*p == ' ') p++;
    if (*p == '|') p++;
    return p;
}

typedef struct {
    const char *preset, *row, *key, *value;
    size_t slot128;   // config.py slot_size_aligned at head_dim 128
} preset;

static const preset presets[] = {
    {"turboquant_k8v4", "k8v4", "vllm:fp8_e4m3", "vllm:tq_v4", 196},
    {"turboquant_4bit_nc", "4bit_nc", "vllm:tq_k4", "vllm:tq_v4", 134},
    {"turboquant_k3v4_nc", "k3v4_nc", "vllm:tq_k3", "vllm:tq_v4", 118},
    {"turboquant_3bit_nc", "3bit_nc", "vllm:tq_k3", "vllm:tq_v3", 102},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

static const preset *preset_named(const char *name)
{
    for (int i = 0; i < N_PRESETS; i++)
        if (!strcmp(presets[i].preset, name)) return &presets[i];
    return NULL;
}

static void qinit(kvq_quantizer *q, const char *m, int d, bool is_value)
{
    const kvq_method *mm = kvq_method_find(m);
    assert_non_null(mm);
    kvq_plan_params pp = {.bits = mm->min_bits, .head_dim = d, .is_value = is_value};
    kvq_status s = kvq_quantizer_init(q, m, &pp);
    if (s) fail_msg("%s d=%d: %s", m, d, kvq_last_error());
}

static long n_equal, n_values;   // decoded values bit-equal to the vectors'

static void expect_close(const float *got, const float *want, int d, const char *what, int line)
{
    for (int i = 0; i < d; i++) n_equal += !memcmp(&got[i], &want[i], sizeof got[i]);
    n_values += d;
    float amax = 0;
    for (int i = 0; i < d; i++) amax = fmaxf(amax, fabsf(want[i]));
    for (int i = 0; i < d; i++)
        if (!(fabsf(got[i] - want[i]) <= 1e-6f * amax + 1e-30f))
            fail_msg("line %d %s[%d]: %.9g, vector says %.9g", line, what, i, got[i], want[i]);
}

static void test_vectors(void **st)
{
    (void)st;
    FILE *f = fopen(VEC, "r");
    assert_non_null(f);
    static char buf[1 << 17];
    int line = 0, n_slots = 0, per_preset[N_PRESETS] = {0};
    while (fgets(buf, sizeof buf, f)) {
        line++;
        char name[40];
        int d, idx, off;
        if (sscanf(buf, "tq %39s %d %d |%n", name, &d, &idx, &off) != 3) continue;
        const preset *pr = preset_named(name);
        assert_non_null(pr);
        assert_true(d >= 8 && d <= DMAX);
        float k[DMAX], v[DMAX], kdec[DMAX], vdec[DMAX], kgot[DMAX], vgot[DMAX];
        uint8_t want[2 * DMAX + 16], got[2 * DMAX + 16];
        size_t nb;
        char *p = read_floats(buf + off, k, d);
        p = read_floats(p, v, d);
        p = read_bytes(p, want, sizeof want, &nb);
        p = read_floats(p, kdec, d);
        read_floats(p, vdec, d);
        kvq_quantizer kq, vq;
        qinit(&kq, pr->key, d, false);
        qinit(&vq, pr->value, d, true);
        assert_int_equal(kq.bpv + vq.bpv, nb);   // [key_packed | value_packed], nothing else
        kq.m->encode(kq.plan, k, 1, got);
        vq.m->encode(vq.plan, v, 1, got + kq.bpv);
        for (size_t i = 0; i < nb; i++)
            if (got[i] != want[i])
                fail_msg("line %d %s d=%d vec %d: slot byte %zu is %02x, vLLM writes %02x", line, name, d, idx, i,
                         got[i], want[i]);
        kq.m->decode(kq.plan, want, 1, kgot);
        vq.m->decode(vq.plan, want + kq.bpv, 1, vgot);
        expect_close(kgot, kdec, d, "key", line);
        expect_close(vgot, vdec, d, "value", line);
        kvq_quantizer_free(&kq);
        kvq_quantizer_free(&vq);
        n_slots++;
        per_preset[pr - presets]++;
    }
    fclose(f);
    printf("  %d slots byte-equal; decoded values bit-equal: %ld of %ld\n", n_slots, n_equal, n_values);
    assert_int_equal(n_slots, 4 * (8 + 8 + 3));   // head_dim 64 and 128: 8 each, 256: 3
    for (int i = 0; i < N_PRESETS; i++) assert_int_equal(per_preset[i], 19);
}

// The Lloyd-Max centroids: the transcription's against Max's table for
// N(0, 1) (J. Max, IRE Trans. IT-6, 1960) scaled by 1/sqrt(d): vLLM's
// trapezoid rule lands 1.7e-3 sigma from it (2.5e-3 asked; vLLM's own test
// allows 1e-3 absolute against scipy, 0.011 sigma at d=128). And the
// method's own, through a decode: a record with idx = i at even and n-1 at
// odd coordinates rotates back to a vector whose ratio is c[i] / c[n-1].
static void test_centroids(void **st)
{
    (void)st;
    static const double max3[] = {0.2451, 0.7560, 1.3440, 2.1520};
    static const double max4[] = {0.1284, 0.3881, 0.6568, 0.9424, 1.2562, 1.6180, 2.0690, 2.7326};
    FILE *f = fopen(VEC, "r");
    assert_non_null(f);
    static char buf[1 << 17];
    int n_lines = 0;
    while (fgets(buf, sizeof buf, f)) {
        int d, b, off;
        if (sscanf(buf, "centroids %d %d |%n", &d, &b, &off) != 2) continue;
        int n = 1 << b;
        float c[16];
        read_floats(buf + off, c, n);
        const double *tab = b == 3 ? max3 : max4;
        for (int i = 0; i < n; i++) {
            double want = i < n / 2 ? -tab[n / 2 - 1 - i] : tab[i - n / 2];
            if (fabs(c[i] * sqrt((double)d) - want) > 2.5e-3)
                fail_msg("d=%d b=%d centroid %d: %.5f sigma, Max's table %.4f", d, b, i, c[i] * sqrt((double)d), want);
        }
        kvq_quantizer q;
        qinit(&q, b == 4 ? "vllm:tq_k4" : "vllm:tq_k3", d, false);
        for (int i = 0; i < n - 1; i++) {
            uint8_t idx[DMAX], rec[DMAX];
            for (int j = 0; j < d; j++) idx[j] = (uint8_t)(j % 2 ? n - 1 : i);
            memset(rec, 0, sizeof rec);
            for (int j = 0; j < d; j++) {   // the kernels' packing: bit j*b, little-endian
                unsigned w = (unsigned)idx[j] << ((j * b) % 8);
                rec[j * b / 8] |= (uint8_t)w;
                if (w >> 8) rec[j * b / 8 + 1] |= (uint8_t)(w >> 8);
            }
            rec[q.bpv - 2] = 0x00, rec[q.bpv - 1] = 0x3c;   // fp16 1.0
            float x[DMAX];
            q.m->decode(q.plan, rec, 1, x);
            // r = H x recovers the rotated key; rows 0 (all +) and 1 (+-
            // alternating) of H give r_0 = f c[i] and r_1 = f c[n-1].
            double r0 = 0, r1 = 0;
            for (int j = 0; j < d; j++) r0 += x[j], r1 += j % 2 ? -x[j] : x[j];
            double got = r0 / r1, want = (double)c[i] / c[n - 1];
            if (fabs(got - want) > 1e-5 * fabs(want) + 1e-6)
                fail_msg("d=%d b=%d: c[%d] / c[%d] decodes as %.7f, the vectors' centroids give %.7f", d, b, i, n - 1,
                         got, want);
        }
        kvq_quantizer_free(&q);
        n_lines++;
    }
    fclose(f);
    assert_int_equal(n_lines, 6);
}

static const kvq_deploy_format *row(const char *name)
{
    for (int i = 0; i < kvq_n_deploy_formats; i++)
        if (!strcmp(kvq_deploy_formats[i].engine, "vllm") && !strcmp(kvq_deploy_formats[i].name, name))
            return &kvq_deploy_formats[i];
    return NULL;
}

// vLLM's allocation: slot_size_aligned bytes per token per kv head. At a
// power-of-two head_dim the slot is even, so no padding byte exists.
static void test_slot_sizes(void **st)
{
    (void)st;
    static const int dims[] = {64, 128, 256};
    for (int i = 0; i < N_PRESETS; i++) {
        const kvq_deploy_format *f = row(presets[i].row);
        assert_non_null(f);
        char flag[64];
        snprintf(flag, sizeof flag, "--kv-cache-dtype %s", presets[i].preset);
        assert_string_equal(f->flags, flag);
        assert_string_equal(f->key_method, presets[i].key);
        assert_string_equal(f->value_method, presets[i].value);
        assert_int_equal(f->boundary_layers, 2);
        for (int j = 0; j < 3; j++) {
            int d = dims[j];
            kvq_quantizer kq, vq;
            qinit(&kq, f->key_method, d, false);
            qinit(&vq, f->value_method, d, true);
            // config.py: key = d (fp8) or ceil(d*b/8) + 2; value = ceil(d*b/8) + 4
            int kb = i == 0 ? 8 : i == 1 ? 4 : 3, vb = i == 3 ? 3 : 4;
            size_t kps = kb == 8 ? (size_t)d : (size_t)(d * kb + 7) / 8 + 2, vps = (size_t)(d * vb + 7) / 8 + 4;
            assert_int_equal(kq.bpv, kps);
            assert_int_equal(vq.bpv, vps);
            assert_int_equal((kq.bpv + vq.bpv) % 2, 0);
            if (d == 128) assert_int_equal(kq.bpv + vq.bpv, presets[i].slot128);
            kvq_quantizer_free(&kq);
            kvq_quantizer_free(&vq);
        }
    }
}

// Boundary layers: vLLM keeps layers 0, 1, L-2, L-1 of a dense model at the
// model dtype (2 x head_dim bytes a K and a V record), the rest in TQ slots.
static void test_memory(void **st)
{
    (void)st;
    kvq_config c;
    kvq_deploy_memory m;
    kvq_deploy_config(row("k3v4_nc"), 1, &c);
    assert_int_equal(c.protect_layers, 2);
    assert_int_equal(kvq_deploy_memory_of(&c, NULL, 32, 8, 128, &m), KVQ_OK);
    assert_int_equal(m.key_bpv + m.value_bpv, 118);
    assert_int_equal(m.bytes_per_token, 28 * 8 * 118 + 4 * 8 * 512);
    kvq_deploy_config(row("k8v4"), 1, &c);
    assert_int_equal(kvq_deploy_memory_of(&c, NULL, 6, 2, 128, &m), KVQ_OK);
    assert_int_equal(m.bytes_per_token, 2 * 2 * 196 + 4 * 2 * 512);
    assert_true(fabs(m.key_bpc - 8.0) < 1e-12 && fabs(m.value_bpc - 68 * 8.0 / 128) < 1e-12);
    kvq_deploy_config(row("3bit_nc"), 1, &c);
    assert_int_equal(kvq_deploy_memory_of(&c, NULL, 3, 1, 64, &m), KVQ_OK);
    assert_int_equal(m.bytes_per_token, 3 * 256);   // 3 layers: all protected, as the cache keeps them
    // fp8 rows protect nothing
    kvq_deploy_config(row("fp8"), 1, &c);
    assert_int_equal(c.protect_layers, 0);
}

static void test_score_is_decoded_dot(void **st)
{
    (void)st;
    static const char *ms[] = {"vllm:tq_k4", "vllm:tq_k3", "vllm:tq_v4", "vllm:tq_v3"};
    const int d = 128, n = 16;
    kvq_rng r;
    kvq_rng_seed(&r, 7);
    float x[16 * 128], q[128], dec[16 * 128], sc[16];
    for (int i = 0; i < n * d; i++) x[i] = (float)kvq_rng_gauss(&r) * (i % 37 == 0 ? 8.0f : 1.0f);
    for (int i = 0; i < d; i++) q[i] = (float)kvq_rng_gauss(&r);
    for (int m = 0; m < 4; m++) {
        kvq_quantizer qu;
        qinit(&qu, ms[m], d, m >= 2);
        uint8_t codes[16 * 200];
        void *qs = malloc(qu.qbytes);
        assert_non_null(qs);
        qu.m->encode(qu.plan, x, (size_t)n, codes);
        qu.m->decode(qu.plan, codes, (size_t)n, dec);
        qu.m->prepare_query(qu.plan, q, qs);
        qu.m->score(qu.plan, qs, codes, (size_t)n, sc);
        for (int i = 0; i < n; i++) {
            double dot = 0, mag = 0;
            for (int j = 0; j < d; j++) {
                double t = (double)q[j] * dec[i * d + j];
                dot += t, mag += fabs(t);
            }
            if (fabs(sc[i] - dot) > 1e-5 * mag) fail_msg("%s key %d: score %g, decoded dot %g", ms[m], i, sc[i], dot);
        }
        free(qs);
        kvq_quantizer_free(&qu);
    }
}

// fp8 with --calculate-kv-scales: the scales from the first 16 tokens of
// both heads (calc_kv_scales), then every code, later tokens included (past
// 448 x scale: saturated).
static void test_fp8_calc_vectors(void **st)
{
    (void)st;
    FILE *f = fopen(VEC, "r");
    assert_non_null(f);
    static char buf[1 << 17];
    static float xs[2][64][128];   // [k|v][token * 2 + head][d]
    static uint8_t want[2][64][128];
    int T = 0, H = 0, d = 0, n[2] = {0, 0};
    float sc[2] = {0, 0};
    while (fgets(buf, sizeof buf, f)) {
        int off, t, h;
        char w;
        if (sscanf(buf, "fp8scales %d %d %d |%n", &T, &H, &d, &off) == 3) {
            char *p = read_floats(buf + off, &sc[0], 1);
            read_floats(p, &sc[1], 1);
        } else if (sscanf(buf, "fp8 %c %d %d |%n", &w, &t, &h, &off) == 3) {
            int v = w == 'v', i = n[v]++;
            assert_true(i < 64 && i == t * H + h);
            size_t nb;
            char *p = read_floats(buf + off, xs[v][i], d);
            read_bytes(p, want[v][i], 128, &nb);
            assert_int_equal(nb, (size_t)d);
        }
    }
    fclose(f);
    assert_int_equal(T, 16);
    assert_int_equal(H, 2);
    assert_int_equal(d, 128);
    assert_int_equal(n[0], (T + 4) * H);
    for (int v = 0; v < 2; v++) {
        float got = kvq_vllm_kv_scale(&xs[v][0][0], (size_t)T * (size_t)H * (size_t)d, v);
        assert_memory_equal(&got, &sc[v], sizeof got);   // bit-equal
    }
    kvq_artifacts *a;
    assert_int_equal(kvq_artifacts_new(&a), KVQ_OK);
    int64_t shape[2] = {1, 2};
    assert_int_equal(kvq_artifacts_put(a, "vllm.kv_scales", sc, 2, shape), KVQ_OK);
    for (int v = 0; v < 2; v++) {
        kvq_quantizer q;
        kvq_plan_params pp = {.bits = 8, .head_dim = d, .is_value = v, .art = a};
        assert_int_equal(kvq_quantizer_init(&q, "vllm:fp8_e4m3_calc", &pp), KVQ_OK);
        assert_int_equal(q.bpv, 128);
        int saturated = 0;
        for (int i = 0; i < n[v]; i++) {
            uint8_t got[128];
            float dec[128];
            q.m->encode(q.plan, xs[v][i], 1, got);
            for (int j = 0; j < d; j++)
                if (got[j] != want[v][i][j])
                    fail_msg("fp8 %c row %d [%d]: code %02x, vLLM writes %02x", v ? 'v' : 'k', i, j, got[j],
                             want[v][i][j]);
            q.m->decode(q.plan, got, 1, dec);
            for (int j = 0; j < d; j++) {
                assert_true(dec[j] == kvq_f8e4m3_to_f32(got[j]) * sc[v]);
                saturated += (got[j] & 0x7f) == 0x7e;
            }
        }
        if (!v) assert_true(saturated > 0);   // the later keys do pass 448 x scale
        kvq_quantizer_free(&q);
    }
    // layer 1 has no scale; no artifacts at all: both refuse, naming the tensor
    kvq_quantizer q;
    kvq_plan_params pp = {.bits = 8, .head_dim = d, .layer = 1, .art = a};
    assert_int_equal(kvq_quantizer_init(&q, "vllm:fp8_e4m3_calc", &pp), KVQ_ERR_NEEDS_CALIBRATION);
    pp.art = NULL, pp.layer = 0;
    assert_int_equal(kvq_quantizer_init(&q, "vllm:fp8_e5m2_calc", &pp), KVQ_ERR_NEEDS_CALIBRATION);
    assert_non_null(strstr(kvq_last_error(), "vllm.kv_scales"));
    kvq_artifacts_free(a);
}

// kvq_deploy_artifacts on a trace: each layer's scale over every kv head
// and the first-batch tokens only.
static void test_deploy_artifacts(void **st)
{
    (void)st;
    kvq_trace *t;
    if (kvq_trace_open("tests/data/tr_valid.safetensors", NULL, &t)) fail_msg("%s", kvq_last_error());
    const kvq_deploy_format *f = row("fp8_calc");
    assert_non_null(f);
    assert_string_equal(f->flags, "--kv-cache-dtype fp8 --calculate-kv-scales");
    assert_true(f->calc_scales);
    kvq_artifacts *a = NULL;
    assert_int_equal(kvq_deploy_artifacts(row("fp8"), t, 2, &a), KVQ_OK);
    assert_null(a);   // no scales to compute
    assert_int_equal(kvq_deploy_artifacts(f, t, 2, &a), KVQ_OK);
    assert_non_null(a);
    int ndim;
    int64_t shape[4];
    const float *sc = kvq_artifacts_get(a, "vllm.kv_scales", &ndim, shape);
    assert_non_null(sc);
    assert_int_equal(ndim, 2);
    assert_int_equal(shape[0], t->n_layers);
    assert_int_equal(shape[1], 2);
    float *x = malloc(sizeof(float) * (size_t)t->n_tokens * (size_t)t->head_dim);
    assert_non_null(x);
    for (int l = 0; l < t->n_layers; l++)
        for (int v = 0; v < 2; v++) {
            float amax = 0;
            for (int h = 0; h < t->n_kv_heads; h++) {
                assert_int_equal((v ? kvq_trace_values : kvq_trace_keys)(t, l, h, x), KVQ_OK);
                for (int i = 0; i < 2 * t->head_dim; i++)   // tokens 0 and 1
                    amax = fmaxf(amax, fabsf(kvq_f16_to_f32(kvq_f32_to_f16(x[i]))));
            }
            assert_true(sc[2 * l + v] == amax / (v ? 100.0f : 200.0f));
        }
    free(x);
    kvq_artifacts_free(a);
    kvq_trace_free(t);
}

static void test_rejects(void **st)
{
    (void)st;
    static const int bad[] = {4, 96, 48, 512};
    for (int i = 0; i < 4; i++) {
        kvq_quantizer q;
        kvq_plan_params pp = {.bits = 4, .head_dim = bad[i]};
        kvq_status s = kvq_quantizer_init(&q, "vllm:tq_k4", &pp);
        assert_int_not_equal(s, KVQ_OK);
        if (bad[i] <= KVQ_MAX_HEAD_DIM) assert_non_null(strstr(kvq_last_error(), "power of two"));
    }
    kvq_quantizer q;
    kvq_plan_params pp = {.bits = 3, .head_dim = 128};
    assert_int_not_equal(kvq_quantizer_init(&q, "vllm:tq_k4", &pp), KVQ_OK);   // fixed width
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_centroids),
        cmocka_unit_test(test_slot_sizes),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_score_is_decoded_dot),
        cmocka_unit_test(test_fp8_calc_vectors),
        cmocka_unit_test(test_deploy_artifacts),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
