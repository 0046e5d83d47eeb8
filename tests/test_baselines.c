// test_baselines.c — fp16, ggml q8_0 / q4_0 / iq4_nl, q4_0_hadamard, kivi.
// The ggml codes are checked byte for byte against a transcription of
// ggml-quants.c's reference quantizers written here, independent of the
// engine's block code; then round trips, score = q . decode, honest bytes
// (bytes_per_vector = the record layout, and encode writes exactly that),
// KIVI's groups and error bounds, and the shape errors.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "f16.h"
#include "kvq.h"
#include "methods/ggml_blocks.h"
#include "rng.h"

// ---- independent transcription of ggml's reference quantizers ----
static uint16_t ref_f16(float f)
{
#ifdef __FLT16_MAX__
    _Float16 h = (_Float16)f; // the compiler's round-to-nearest-even conversion
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
#else
    return kvq_f32_to_f16(f);
#endif
}

// block_q8_0 { ggml_half d; int8_t qs[32]; }, as ggml-cpu's x86 from_float
// (arch/x86/quants.c quantize_row_q8_0, the KV-cache write path): the
// multiplier is 127/amax and the rounding ties to even (lrintf here).
static void ref_q8_0(const float *x, uint8_t *y)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        float a = fabsf(x[j]);
        amax = amax > a ? amax : a;
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    uint16_t h = ref_f16(d);
    memcpy(y, &h, 2); // little-endian host, as ggml's struct
    for (int j = 0; j < 32; j++) {
        long r = lrintf(x[j] * id);
        int8_t q = (int8_t)(r > 127 ? 127 : r < -128 ? -128 : r);
        memcpy(y + 2 + j, &q, 1);
    }
}

// block_q4_0 { ggml_half d; uint8_t qs[16]; }
static void ref_q4_0(const float *x, uint8_t *y)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -8;
    const float id = d ? 1.0f / d : 0.0f;
    uint16_t h = ref_f16(d);
    memcpy(y, &h, 2);
    for (int j = 0; j < 16; j++) {
        const float x0 = x[j] * id, x1 = x[16 + j] * id;
        int8_t a = (int8_t)(x0 + 8.5f), b = (int8_t)(x1 + 8.5f);
        uint8_t xi0 = (uint8_t)(a < 15 ? a : 15), xi1 = (uint8_t)(b < 15 ? b : 15);
        y[2 + j] = (uint8_t)(xi0 | (xi1 << 4));
    }
}

static const int8_t kvalues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                   1,    13,   25,  38,  53,  69,  89,  113};

static int ref_best_index(float x)
{
    const float x2 = x + x;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1) {
        int j = idx + step;
        idx = (x2 >= (float)(kvalues[j - 1] + kvalues[j])) ? j : idx;
    }
    return idx;
}

// quantize_row_iq4_nl_impl(32, 32, 16, x, ..., NULL weights, ntry) for one block.
static void ref_iq4_nl(const float *x, uint8_t *y, int ntry)
{
    uint8_t L[32];
    float weight[32];
    memset(y, 0, 18);
    for (int j = 0; j < 32; j++) weight[j] = x[j] * x[j];
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    float scale;
    if (amax < 1e-15f) {
        scale = 0;
        memset(L, 0, 32);
    } else {
        float d = ntry > 0 ? -max / kvalues[0] : max / kvalues[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            float al = id * x[j];
            int l = ref_best_index(al);
            L[j] = (uint8_t)l;
            float q = kvalues[l];
            float w = weight[j];
            sumqx += w * q * x[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; ++itry) {
            id = (itry + kvalues[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                float al = id * x[j];
                int l = ref_best_index(al);
                float q = kvalues[l];
                float w = weight[j];
                sumqx += w * q * x[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scale = d;
    }
    uint16_t h = ref_f16(scale);
    memcpy(y, &h, 2);
    if (ntry > 0) {
        float id = scale ? 1 / scale : 0;
        for (int j = 0; j < 32; j++) L[j] = (uint8_t)ref_best_index(id * x[j]);
    }
    for (int j = 0; j < 16; j++) y[2 + j] = (uint8_t)(L[j] | (L[16 + j] << 4));
}

// ---- fixtures ----
// Gaussian rows with a few heavy channels (like real keys), plus edge cases:
// an all-zero block, a block whose largest |x| is negative, exact ties at
// half steps, and a block with two values of equal magnitude and opposite sign.
static float *make_input(size_t n, int d, uint64_t seed, bool edges)
{
    float *x = malloc(sizeof(float) * n * (size_t)d);
    kvq_rng r;
    kvq_rng_seed(&r, seed);
    kvq_rng_gauss_fill(&r, x, n * (size_t)d);
    for (size_t i = 0; i < n; i++) {
        x[i * d + 3] *= 12.0f;
        x[i * d + (size_t)d / 2 + 7] *= -9.0f;
    }
    if (edges && n >= 4 && d >= 64) {
        memset(x, 0, sizeof(float) * 32);                             // zero block
        for (int j = 32; j < 64; j++) x[j] = 0.25f * (float)(j - 40); // max |x| = -2 at j = 32
        for (int j = 0; j < 32; j++) x[(size_t)d + j] = (float)(j - 16) * 0.5f; // halves
        for (int j = 0; j < 32; j++) x[2 * (size_t)d + j] = 0.1f * (float)j;
        x[2 * (size_t)d + 5] = -3.1f;
        x[2 * (size_t)d + 6] = 3.1f; // equal magnitudes: the first wins
        // q8_0 with d = 1 exactly: x.5 values are roundf ties (away from zero)
        for (int j = 0; j < 32; j++) x[3 * (size_t)d + j] = (float)(j - 16) + 0.5f;
        x[3 * (size_t)d] = 127.0f;
    }
    return x;
}

typedef void (*ref_fn)(const float *x, uint8_t *y);
static void ref_iq4_nl_kv(const float *x, uint8_t *y) { ref_iq4_nl(x, y, -1); }

static void check_codes_equal_reference(const char *method, ref_fn ref, size_t blk_bytes)
{
    const int d = 128;
    const size_t n = 64, nblk = (size_t)d / 32;
    float *x = make_input(n, d, 7, true);
    kvq_config cfg;
    kvq_config_default(&cfg);
    kvq_plan_params pp = {.bits = strcmp(method, "q8_0") ? 4 : 8, .head_dim = d, .cfg = &cfg};
    kvq_quantizer q;
    assert_int_equal(kvq_quantizer_init(&q, method, &pp), KVQ_OK);
    assert_int_equal(q.bpv, blk_bytes * nblk);
    uint8_t *got = malloc(n * q.bpv), *want = malloc(n * q.bpv);
    q.m->encode(q.plan, x, n, got);
    for (size_t b = 0; b < n * nblk; b++) ref(x + b * 32, want + b * blk_bytes);
    for (size_t i = 0; i < n * q.bpv; i++)
        if (got[i] != want[i])
            fail_msg("%s: byte %zu (block %zu) is %u, ggml gives %u", method, i, i / blk_bytes,
                     got[i], want[i]);
    kvq_quantizer_free(&q);
    free(got);
    free(want);
    free(x);
}

static void test_q8_0_codes(void **st)
{
    (void)st;
    check_codes_equal_reference("q8_0", ref_q8_0, 34);
    // A hand-worked block: x_j = j - 16, amax 16, d = 16/127, q_j = round((j-16)*127/16).
    float x[32];
    uint8_t blk[34];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    kvq_ggml_q8_0_quantize(x, blk);
    assert_int_equal((int8_t)blk[2 + 0], -127);
    assert_int_equal((int8_t)blk[2 + 17], 8);   // 127/16 = 7.94 -> 8
    assert_int_equal((int8_t)blk[2 + 18], 16);  // 15.875 -> 16
    assert_int_equal((int8_t)blk[2 + 31], 119); // 15*7.9375 = 119.06
    assert_int_equal(blk[0] | (blk[1] << 8), kvq_f32_to_f16(16.0f / 127.0f));
    // amax 127 makes the multiplier 1: halves are ties, and ggml's x86 kernel
    // rounds them to even (0.5 -> 0, 1.5 -> 2, -2.5 -> -2), unlike roundf.
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) + 0.5f;
    x[0] = 127.0f;
    uint8_t row[34];
    kvq_ggml_q8_0_quantize(x, blk);
    kvq_ggml_q8_0_quantize_row(x, row, 1);   // the AVX2 kernel where there is one
    for (const uint8_t *b = blk; b; b = b == blk ? row : NULL) {
        assert_int_equal((int8_t)b[2 + 16], 0);   // 0.5
        assert_int_equal((int8_t)b[2 + 17], 2);   // 1.5
        assert_int_equal((int8_t)b[2 + 13], -2);  // -2.5
        assert_int_equal((int8_t)b[2 + 0], 127);
    }
}

static void test_q4_0_codes(void **st)
{
    (void)st;
    check_codes_equal_reference("q4_0", ref_q4_0, 18);
    // Hand-worked: max = +4 at j = 31 -> d = -0.5; -3.99/-0.5 + 8.5 = 16.48 -> 16 -> 15.
    float x[32] = {0};
    x[31] = 4.0f;
    x[0] = -3.99f;
    x[1] = 1.0f; // 1/-0.5 + 8.5 = 6.5 -> 6
    uint8_t blk[18];
    kvq_ggml_q4_0_quantize(x, blk);
    assert_int_equal(blk[0] | (blk[1] << 8), kvq_f32_to_f16(-0.5f));
    assert_int_equal(blk[2] & 0xf, 15);
    assert_int_equal(blk[3] & 0xf, 6);
    assert_int_equal(blk[2 + 15] >> 4, 0); // the max itself -> -8 -> nibble 0
    assert_int_equal(blk[4] & 0xf, 8);     // zero -> 8
}

static void test_iq4_nl_codes(void **st)
{
    (void)st;
    check_codes_equal_reference("iq4_nl", ref_iq4_nl_kv, 18);
    // quantize_iq4_nl's search (ntry = 7) through the block API, same transcription.
    float *x = make_input(16, 128, 11, true);
    for (int b = 0; b < 16 * 4; b++) {
        uint8_t got[18], want[18];
        kvq_ggml_iq4_nl_quantize(x + b * 32, got, 7);
        ref_iq4_nl(x + b * 32, want, 7);
        assert_memory_equal(got, want, 18);
    }
    free(x);
    // Grid midpoints: (-10 + 1)/2 = -4.5 goes up to 1 (index 8), just below stays at -10.
    assert_int_equal(kvq_ggml_iq4_nl_index(-4.5f), 8);
    assert_int_equal(kvq_ggml_iq4_nl_index(-4.5001f), 7);
    assert_int_equal(kvq_ggml_iq4_nl_index(-1000.0f), 0);
    assert_int_equal(kvq_ggml_iq4_nl_index(1000.0f), 15);
}

// ---- method-level properties ----
static double rel_mse(const float *x, const float *y, size_t n, int d)
{
    double acc = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) {
        double e = 0, nx = 0;
        for (int j = 0; j < d; j++) {
            double t = (double)x[i * d + j] - y[i * d + j];
            e += t * t;
            nx += (double)x[i * d + j] * x[i * d + j];
        }
        if (nx > 0) acc += e / nx, cnt++;
    }
    return acc / (double)cnt;
}

typedef struct {
    const char *method;
    int bits;
    bool is_value;
    size_t bpv_128;     // expected bytes per vector at d = 128
    double max_rel_mse; // on the Gaussian-with-outliers input (measured x ~1.3)
} method_case;

static const method_case cases[] = {
    {"fp16", 16, false, 256, 1e-6},
    {"q8_0", 8, false, 136, 1.5e-4},
    {"q4_0", 4, false, 72, 0.03},
    {"iq4_nl", 4, false, 72, 0.018},
    {"q4_0_hadamard", 4, false, 72, 0.009},
    {"kivi", 2, false, 48, 0.35}, // keys: 16 B of per-channel scales/32 tokens + 32 B codes
    {"kivi", 2, true, 48, 0.38},  // values: 4 x (scale, min) + 32 B codes
    {"kivi", 4, false, 80, 0.015},
    {"kivi", 3, true, 64, 0.065},
};

// Round trip, score = q . decode, exact buffer use, for d = 64, 128, 256.
static void test_methods_roundtrip_score_bytes(void **st)
{
    (void)st;
    kvq_config cfg;
    kvq_config_default(&cfg);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const method_case *mc = &cases[ci];
        for (int d = 64; d <= 256; d *= 2) {
            const size_t n = 96;
            float *x = make_input(n, d, 100 + ci, false);
            kvq_plan_params pp = {.bits = mc->bits,
                                  .head_dim = d,
                                  .layer = 1,
                                  .kv_head = 0,
                                  .is_value = mc->is_value,
                                  .cfg = &cfg};
            kvq_quantizer q;
            if (kvq_quantizer_init(&q, mc->method, &pp))
                fail_msg("%s d=%d: %s", mc->method, d, kvq_last_error());
            if (d == 128) assert_int_equal(q.bpv, mc->bpv_128);
            assert_int_equal(q.group, strcmp(mc->method, "kivi") || mc->is_value ? 1 : 32);
            // The buffer is exactly n * bpv; a canary after it must survive.
            uint8_t *codes = malloc(n * q.bpv + 64);
            memset(codes, 0xA5, n * q.bpv + 64);
            q.m->encode(q.plan, x, n, codes);
            for (int k = 0; k < 64; k++) assert_int_equal(codes[n * q.bpv + k], 0xA5);
            float *y = malloc(sizeof(float) * n * (size_t)d);
            q.m->decode(q.plan, codes, n, y);
            double e = rel_mse(x, y, n, d);
            if (getenv("KVQ_TEST_VERBOSE"))
                print_message("%s b=%d v=%d d=%d rel_mse %.5f\n", mc->method, mc->bits,
                              mc->is_value, d, e);
            if (!(e <= mc->max_rel_mse))
                fail_msg("%s b=%d d=%d: relative MSE %.5f > %.5f", mc->method, mc->bits, d, e,
                         mc->max_rel_mse);
            // score from codes against q . decode
            float *qv = malloc(sizeof(float) * (size_t)d), *s = malloc(sizeof(float) * n);
            void *qs = malloc(q.qbytes);
            kvq_rng r;
            kvq_rng_seed(&r, 5);
            kvq_rng_gauss_fill(&r, qv, (size_t)d);
            q.m->prepare_query(q.plan, qv, qs);
            q.m->score(q.plan, qs, codes, n, s);
            for (size_t i = 0; i < n; i++) {
                double ref = 0, mag = 0;
                for (int j = 0; j < d; j++) {
                    ref += (double)qv[j] * y[i * d + j];
                    mag += fabs((double)qv[j] * y[i * d + j]);
                }
                if (fabs(s[i] - ref) > 1e-5 * mag + 1e-6)
                    fail_msg("%s d=%d key %zu: score %.7g, q . decode %.7g", mc->method, d, i, s[i],
                             ref);
            }
            free(qs);
            free(qv);
            free(s);
            free(y);
            free(codes);
            free(x);
            kvq_quantizer_free(&q);
        }
    }
}

static void test_bytes_per_vector_layout(void **st)
{
    (void)st;
    kvq_config cfg;
    kvq_config_default(&cfg);
    for (int d = 64; d <= 256; d *= 2) {
        struct {
            const char *m;
            int bits;
            bool val;
            size_t want;
        } t[] = {
            {"fp16", 16, false, 2 * (size_t)d},
            {"q8_0", 8, false, 34 * (size_t)d / 32},
            {"q4_0", 4, false, 18 * (size_t)d / 32},
            {"iq4_nl", 4, false, 18 * (size_t)d / 32},
            {"q4_0_hadamard", 4, false, 18 * (size_t)d / 32},
            // kivi: codes d*b/8 + (f16 scale + f16 min) per channel per 32 tokens (keys)
            // or per 32 channels per token (values): 4 bytes / 32 coordinates = d/8
            {"kivi", 2, false, (size_t)d * 2 / 8 + (size_t)d / 8},
            {"kivi", 3, true, (size_t)d * 3 / 8 + (size_t)d / 8},
            {"kivi", 8, false, (size_t)d + (size_t)d / 8},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            kvq_plan_params pp = {
                .bits = t[i].bits, .head_dim = d, .is_value = t[i].val, .cfg = &cfg};
            kvq_quantizer q;
            assert_int_equal(kvq_quantizer_init(&q, t[i].m, &pp), KVQ_OK);
            if (q.bpv != t[i].want)
                fail_msg("%s d=%d: bpv %zu, want %zu", t[i].m, d, q.bpv, t[i].want);
            kvq_quantizer_free(&q);
        }
    }
}

// KIVI keys: every channel of every 32-token group is within half a step of
// its own range; an outlier channel does not widen its neighbours' steps.
static void test_kivi_groups(void **st)
{
    (void)st;
    const int d = 128, n = 64;
    float *x = make_input((size_t)n, d, 3, true);
    for (int t = 0; t < n; t++) x[t * d + 10] = 500.0f + (float)t; // a huge, smooth channel
    kvq_config cfg;
    kvq_config_default(&cfg);
    for (int is_value = 0; is_value <= 1; is_value++) {
        kvq_plan_params pp = {.bits = 2, .head_dim = d, .is_value = is_value, .cfg = &cfg};
        kvq_quantizer q;
        assert_int_equal(kvq_quantizer_init(&q, "kivi", &pp), KVQ_OK);
        uint8_t *codes = malloc((size_t)n * q.bpv);
        float *y = malloc(sizeof(float) * (size_t)n * d);
        q.m->encode(q.plan, x, (size_t)n, codes);
        q.m->decode(q.plan, codes, (size_t)n, y);
        for (int t = 0; t < n; t++)
            for (int c = 0; c < d; c++) {
                float lo = INFINITY, hi = -INFINITY;
                if (!is_value) { // range of channel c over the token group
                    for (int u = t / 32 * 32; u < t / 32 * 32 + 32; u++) {
                        lo = fminf(lo, x[u * d + c]);
                        hi = fmaxf(hi, x[u * d + c]);
                    }
                } else { // range of the token's 32-channel group
                    for (int k = c / 32 * 32; k < c / 32 * 32 + 32; k++) {
                        lo = fminf(lo, x[t * d + k]);
                        hi = fmaxf(hi, x[t * d + k]);
                    }
                }
                // half a step, plus f16 rounding of the stored min and scale
                double tol = 0.5 * (hi - lo) / 3.0 * 1.003 + 2e-3 * fmax(fabs(lo), fabs(hi)) + 1e-6;
                if (fabs(y[t * d + c] - x[t * d + c]) > tol)
                    fail_msg("kivi %s t=%d c=%d: |err| %.5f > %.5f", is_value ? "values" : "keys",
                             t, c, fabs(y[t * d + c] - x[t * d + c]), tol);
            }
        // per-channel keys keep the outlier channel exact to within its own range
        if (!is_value)
            assert_true(fabsf(y[5 * d + 10] - x[5 * d + 10]) < 0.5f * 31.0f / 3.0f + 1.0f);
        free(codes);
        free(y);
        kvq_quantizer_free(&q);
    }
    free(x);
}

static void test_hadamard_helps_outliers(void **st)
{
    (void)st;
    const int d = 128;
    const size_t n = 256;
    float *x = make_input(n, d, 9, false);
    kvq_config cfg;
    kvq_config_default(&cfg);
    double e[2];
    const char *m[2] = {"q4_0", "q4_0_hadamard"};
    for (int k = 0; k < 2; k++) {
        kvq_plan_params pp = {.bits = 4, .head_dim = d, .cfg = &cfg};
        kvq_quantizer q;
        assert_int_equal(kvq_quantizer_init(&q, m[k], &pp), KVQ_OK);
        uint8_t *codes = malloc(n * q.bpv);
        float *y = malloc(sizeof(float) * n * d);
        q.m->encode(q.plan, x, n, codes);
        q.m->decode(q.plan, codes, n, y);
        e[k] = rel_mse(x, y, n, d);
        free(codes);
        free(y);
        kvq_quantizer_free(&q);
    }
    if (!(e[1] < 0.7 * e[0])) fail_msg("q4_0 %.5f, q4_0_hadamard %.5f", e[0], e[1]);
    free(x);
}

static void test_fp16_exact(void **st)
{
    (void)st;
    const int d = 64;
    float x[64], y[64];
    uint8_t c[128];
    for (int j = 0; j < d; j++) x[j] = kvq_f16_to_f32((uint16_t)(0x3c00 + 37 * j)); // representable
    kvq_config cfg;
    kvq_config_default(&cfg);
    kvq_plan_params pp = {.bits = 16, .head_dim = d, .cfg = &cfg};
    kvq_quantizer q;
    assert_int_equal(kvq_quantizer_init(&q, "fp16", &pp), KVQ_OK);
    q.m->encode(q.plan, x, 1, c);
    q.m->decode(q.plan, c, 1, y);
    assert_memory_equal(x, y, sizeof x);
    kvq_quantizer_free(&q);
}

static void test_shape_errors(void **st)
{
    (void)st;
    kvq_config cfg;
    kvq_config_default(&cfg);
    struct {
        const char *m;
        int bits, d;
        const char *needle;
    } t[] = {{"q8_0", 8, 48, "head_dim 48"},   {"q4_0", 4, 100, "head_dim 100"},
             {"iq4_nl", 4, 16, "head_dim 16"}, {"q4_0_hadamard", 4, 96, "power of two"},
             {"kivi", 2, 80, "head_dim 80"},   {"kivi", 1, 128, "bits 1"},
             {"q4_0", 3, 128, "bits 3"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        kvq_plan_params pp = {.bits = t[i].bits, .head_dim = t[i].d, .cfg = &cfg};
        kvq_quantizer q;
        kvq_status s = kvq_quantizer_init(&q, t[i].m, &pp);
        assert_int_equal(s, KVQ_ERR_ARG);
        if (!strstr(kvq_last_error(), t[i].needle))
            fail_msg("%s: message '%s' lacks '%s'", t[i].m, kvq_last_error(), t[i].needle);
        assert_null(strchr(kvq_last_error(), '\n'));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0_codes),
        cmocka_unit_test(test_q4_0_codes),
        cmocka_unit_test(test_iq4_nl_codes),
        cmocka_unit_test(test_methods_roundtrip_score_bytes),
        cmocka_unit_test(test_bytes_per_vector_layout),
        cmocka_unit_test(test_kivi_groups),
        cmocka_unit_test(test_hadamard_helps_outliers),
        cmocka_unit_test(test_fp16_exact),
        cmocka_unit_test(test_shape_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
