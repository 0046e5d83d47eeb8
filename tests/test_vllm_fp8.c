// test_vllm_fp8.c — vllm:fp8_e4m3 / vllm:fp8_e5m2 (vLLM's fp8 KV cache) and
// the saturating conversions under them (f16.h, CUDA's __NV_SATFINITE rules):
// encoding against a brute-force nearest-even search over the decoded codes
// (every midpoint between neighbours and a ulp either side, plus random
// floats over the whole exponent range), saturation, NaN, signed zero, the
// E5M2 = high-byte-of-a-half identity, and the method's slot bytes.
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
#include "rng.h"

typedef struct {
    const char *name;
    uint8_t (*enc)(float);
    float (*dec)(uint8_t);
    uint8_t maxc;   // largest finite code
} fp8_fmt;

static const fp8_fmt fmts[] = {
    {"e4m3", kvq_f32_to_f8e4m3_sat, kvq_f8e4m3_to_f32, 0x7e},
    {"e5m2", kvq_f32_to_f8e5m2_sat, kvq_f8e5m2_to_f32, 0x7b},
};

// Nearest finite code of f's sign, ties to the even code, saturating.
static uint8_t brute(const fp8_fmt *F, float f)
{
    const uint8_t sign = signbit(f) ? 0x80 : 0;
    const double a = fabs((double)f);
    if (a >= F->dec(F->maxc)) return sign | F->maxc;
    uint8_t best = 0;
    double be = INFINITY;
    for (int c = 0; c <= F->maxc; c++) {
        const double e = fabs(a - F->dec((uint8_t)c));
        if (e < be || (e == be && !(c & 1))) be = e, best = (uint8_t)c;
    }
    return sign | best;
}

static float next_up(float f) { return nextafterf(f, INFINITY); }
static float next_down(float f) { return nextafterf(f, -INFINITY); }

static void test_nearest_even_everywhere(void **st)
{
    (void)st;
    for (int k = 0; k < 2; k++) {
        const fp8_fmt *F = &fmts[k];
        for (int c = 0; c < F->maxc; c++) {   // midpoints of neighbours, both signs
            const float lo = F->dec((uint8_t)c), hi = F->dec((uint8_t)(c + 1));
            const float mid = (float)(((double)lo + hi) / 2);   // exact: one more bit
            const float probe[] = {lo, hi, mid, next_up(mid), next_down(mid)};
            for (int p = 0; p < 5; p++)
                for (int s = 0; s < 2; s++) {
                    const float f = s ? -probe[p] : probe[p];
                    if (F->enc(f) != brute(F, f))
                        fail_msg("%s: %a -> 0x%02x, nearest even 0x%02x", F->name, f, F->enc(f), brute(F, f));
                }
        }
        kvq_rng r;
        kvq_rng_seed(&r, 8 + (uint64_t)k);
        for (int i = 0; i < 200000; i++) {   // random bit patterns over all exponents
            uint32_t u = (uint32_t)kvq_rng_u64(&r);
            float f;
            memcpy(&f, &u, 4);
            if (isnan(f)) continue;
            if (F->enc(f) != brute(F, f))
                fail_msg("%s: %a -> 0x%02x, nearest even 0x%02x", F->name, f, F->enc(f), brute(F, f));
        }
    }
}

static void test_known_values(void **st)
{
    (void)st;
    // E4M3FN: max 448 = 0x7e; past it, Inf included, saturates (CUDA SATFINITE)
    assert_int_equal(kvq_f32_to_f8e4m3_sat(448.0f), 0x7e);
    assert_int_equal(kvq_f32_to_f8e4m3_sat(1e9f), 0x7e);
    assert_int_equal(kvq_f32_to_f8e4m3_sat(-INFINITY), 0xfe);
    assert_int_equal(kvq_f32_to_f8e4m3(1e9f), 0x7f);   // the non-saturating one gives NaN
    assert_int_equal(kvq_f32_to_f8e4m3_sat(NAN), 0x7f);
    assert_int_equal(kvq_f32_to_f8e4m3_sat(1.0f), 0x38);
    assert_int_equal(kvq_f32_to_f8e4m3_sat(0x1p-9f), 0x01);   // smallest subnormal
    assert_int_equal(kvq_f32_to_f8e4m3_sat(0x1p-10f), 0x00);  // half of it: tie to even (0)
    assert_int_equal(kvq_f32_to_f8e4m3_sat(-0x1p-11f), 0x80); // signed zero
    // E5M2: max 57344 = 0x7b, Inf 0x7c is never written
    assert_int_equal(kvq_f32_to_f8e5m2_sat(57344.0f), 0x7b);
    assert_int_equal(kvq_f32_to_f8e5m2_sat(INFINITY), 0x7b);
    assert_int_equal(kvq_f32_to_f8e5m2_sat(1.0f), 0x3c);
    assert_int_equal(kvq_f32_to_f8e5m2_sat(1.25f), 0x3d);
    assert_int_equal(kvq_f32_to_f8e5m2_sat(1.125f), 0x3c);  // tie to even
    assert_int_equal(kvq_f32_to_f8e5m2_sat(1.375f), 0x3e);  // tie to even
    assert_int_equal(kvq_f32_to_f8e5m2_sat(NAN), 0x7f);   // every NaN, either sign: 0x7f
    assert_int_equal(kvq_f32_to_f8e5m2_sat(-NAN), 0x7f);
    assert_int_equal(kvq_f32_to_f8e4m3_sat(-NAN), 0x7f);
    assert_true(isinf(kvq_f8e5m2_to_f32(0x7c)) && isnan(kvq_f8e5m2_to_f32(0x7d)));
    for (int c = 0; c < 256; c++)   // an E5M2 code is the high byte of the half
        if (!isnan(kvq_f8e5m2_to_f32((uint8_t)c)))
            assert_true(kvq_f8e5m2_to_f32((uint8_t)c) == kvq_f16_to_f32((uint16_t)(c << 8)));
}

// The methods: head_dim bytes a vector, codes = the conversion, decode =
// the code's value, score = q . decode.
static void test_methods(void **st)
{
    (void)st;
    const char *names[] = {"vllm:fp8_e4m3", "vllm:fp8_e5m2"};
    kvq_config cfg;
    kvq_config_default(&cfg);
    for (int k = 0; k < 2; k++) {
        kvq_plan_params pp = {.bits = 8, .head_dim = 96, .cfg = &cfg};
        kvq_quantizer q;
        assert_int_equal(kvq_quantizer_init(&q, names[k], &pp), KVQ_OK);
        assert_int_equal(q.bpv, 96);
        const size_t n = 8;
        float x[8 * 96], y[8 * 96], qv[96], s[8];
        uint8_t c[8 * 96 + 16];
        kvq_rng r;
        kvq_rng_seed(&r, 3);
        kvq_rng_gauss_fill(&r, x, n * 96);
        x[5] = 1e6f;   // saturates
        memset(c, 0xa5, sizeof c);
        q.m->encode(q.plan, x, n, c);
        for (int i = 0; i < 16; i++) assert_int_equal(c[n * 96 + i], 0xa5);
        q.m->decode(q.plan, c, n, y);
        for (size_t i = 0; i < n * 96; i++) {
            assert_int_equal(c[i], fmts[k].enc(x[i]));
            assert_true(y[i] == fmts[k].dec(c[i]));
        }
        assert_true(y[5] == (k ? 57344.0f : 448.0f));
        kvq_rng_gauss_fill(&r, qv, 96);
        void *qs = malloc(q.qbytes);
        q.m->prepare_query(q.plan, qv, qs);
        q.m->score(q.plan, qs, c, n, s);
        for (size_t i = 0; i < n; i++) {
            double ref = 0, mag = 0;
            for (int j = 0; j < 96; j++) ref += (double)qv[j] * y[i * 96 + j], mag += fabs((double)qv[j] * y[i * 96 + j]);
            assert_true(fabs(s[i] - ref) <= 1e-5 * mag + 1e-6);
        }
        free(qs);
        kvq_quantizer_free(&q);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nearest_even_everywhere),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_methods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
