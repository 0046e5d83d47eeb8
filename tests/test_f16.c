// test_f16.c — half / bfloat16 / F8_E4M3 conversions against independent
// references: decoding against ldexp formulas, encoding against a brute
// nearest-even search over the decoded neighbours (and the compiler's
// _Float16 where available), round trips over every bit pattern.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "f16.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Reference decode of a (1, E, M) minifloat with IEEE-style subnormals.
static double ref_decode(uint32_t v, int ebits, int mbits, int bias)
{
    int sign = (v >> (ebits + mbits)) & 1;
    uint32_t e = (v >> mbits) & ((1u << ebits) - 1), m = v & ((1u << mbits) - 1);
    double mag = e == 0 ? ldexp((double)m, 1 - bias - mbits)
                        : ldexp(1.0 + ldexp((double)m, -mbits), (int)e - bias);
    return sign ? -mag : mag;
}

static void test_f16_decode_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kvq_f16_to_f32((uint16_t)h);
        uint32_t e = (h >> 10) & 31, m = h & 0x3ff;
        if (e == 31) {
            if (m) {
                assert_true(isnan(f));
                assert_int_equal(bits(f) >> 31, h >> 15);
            } else {
                assert_true(isinf(f));
                assert_int_equal(signbit(f) != 0, (h >> 15) != 0);
            }
            continue;
        }
        assert_true((double)f == ref_decode(h, 5, 10, 15));
        assert_int_equal(signbit(f) != 0, (h >> 15) != 0);   // -0 stays -0
#ifdef __FLT16_MAX__
        _Float16 r;
        uint16_t hh = (uint16_t)h;
        memcpy(&r, &hh, 2);
        assert_true(f == (float)r);
#endif
    }
}

static void test_f16_round_trip_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++)
        assert_int_equal(kvq_f32_to_f16(kvq_f16_to_f32((uint16_t)h)), h);   // NaN payloads too
}

// Nearest-even reference for a finite f32: pick among all finite codes of
// the same sign the closest decoded value (ties: even code), else Inf when
// |x| >= max + half an ulp (the IEEE overflow rule).
static uint16_t ref_encode_f16(float x)
{
    uint16_t s = signbit(x) ? 0x8000 : 0;
    double ax = fabs((double)x);
    if (ax >= 65520.0) return s | 0x7c00;
    // binary search on the monotone positive codes 0..0x7bff
    uint32_t lo = 0, hi = 0x7bff;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (ref_decode(mid, 5, 10, 15) <= ax) lo = mid; else hi = mid;
    }
    double dl = ax - ref_decode(lo, 5, 10, 15), dh = ref_decode(hi, 5, 10, 15) - ax;
    uint32_t r = dl < dh ? lo : dh < dl ? hi : ((lo & 1) ? hi : lo);
    if (dl == 0) r = lo;
    return (uint16_t)(s | r);
}

static void check_f16_encode(float x)
{
    uint16_t got = kvq_f32_to_f16(x);
    if (isnan(x)) {
        assert_int_equal(got & 0x7c00, 0x7c00);
        assert_int_not_equal(got & 0x3ff, 0);
        return;
    }
    uint16_t want = ref_encode_f16(x);
    if (got != want) fail_msg("f32 %a (0x%08x): got 0x%04x, want 0x%04x", (double)x, bits(x), got, want);
#ifdef __FLT16_MAX__
    _Float16 r = (_Float16)x;
    uint16_t rb;
    memcpy(&rb, &r, 2);
    assert_int_equal(got, rb);
#endif
}

static void test_f16_encode_rne(void **state)
{
    (void)state;
    // a sweep over the whole f32 space
    for (uint64_t u = 0; u < 0x100000000ull; u += 65521) check_f16_encode(from_bits((uint32_t)u));
    // every midpoint between neighbouring halves and one f32 ulp either side:
    // exactly where round-to-nearest-even decides
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double a = ref_decode(h, 5, 10, 15), b = h + 1 < 0x7c00 ? ref_decode(h + 1, 5, 10, 15) : 65536.0;
        float mid = (float)((a + b) / 2);   // exact in f32
        for (int sgn = 0; sgn < 2; sgn++) {
            float m = sgn ? -mid : mid;
            check_f16_encode(m);
            check_f16_encode(nextafterf(m, 0.0f));
            check_f16_encode(nextafterf(m, sgn ? -INFINITY : INFINITY));
        }
    }
}

static void test_f16_edges(void **state)
{
    (void)state;
    assert_int_equal(kvq_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(kvq_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(kvq_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(kvq_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(kvq_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(kvq_f32_to_f16(65520.0f), 0x7c00);   // tie rounds to even = Inf
    assert_int_equal(kvq_f32_to_f16(-1e9f), 0xfc00);
    assert_int_equal(kvq_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(kvq_f32_to_f16(ldexpf(1, -24)), 0x0001);   // smallest subnormal
    assert_int_equal(kvq_f32_to_f16(ldexpf(1, -25)), 0x0000);   // tie -> even (0)
    assert_int_equal(kvq_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
    assert_int_equal(kvq_f32_to_f16(ldexpf(3, -25)), 0x0002);   // 1.5 ulp tie -> even (2)
    assert_int_equal(kvq_f32_to_f16(ldexpf(1, -14)), 0x0400);   // smallest normal
    assert_int_equal(kvq_f32_to_f16(ldexpf(1023, -24) + ldexpf(1, -25)), 0x0400);   // subnormal carries into normal
    assert_int_equal(kvq_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3c00);   // tie -> even
    assert_int_equal(kvq_f32_to_f16(1.0f + ldexpf(3, -11)), 0x3c02);
    uint16_t n = kvq_f32_to_f16(from_bits(0x7f800001u));   // payload below half's precision
    assert_int_equal(n & 0x7c00, 0x7c00);
    assert_int_not_equal(n & 0x3ff, 0);
    assert_int_equal(kvq_f32_to_f16(from_bits(0xffc00000u)), 0xfe00);   // sign of NaN kept
    assert_true(isnan(kvq_f16_to_f32(0x7e00)));
    assert_true(kvq_f16_to_f32(0x0001) == ldexpf(1, -24));
    assert_true(kvq_f16_to_f32(0xfbff) == -65504.0f);
}

static void test_bf16_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kvq_bf16_to_f32((uint16_t)h);
        uint32_t e = (h >> 7) & 0xff, m = h & 0x7f;
        if (e == 255) {
            assert_true(m ? isnan(f) : isinf(f));
        } else {
            assert_true((double)f == ref_decode(h, 8, 7, 127));
        }
        assert_int_equal(kvq_f32_to_bf16(f), h);   // round trip, NaN payloads too
    }
}

static void check_bf16_encode(float x)
{
    uint16_t got = kvq_f32_to_bf16(x);
    if (isnan(x)) {
        assert_true(isnan(kvq_bf16_to_f32(got)));
        assert_int_equal(got >> 15, bits(x) >> 31);
        return;
    }
    // neighbours by truncation; the code after the largest finite one (Inf)
    // counts as 2^128 for rounding, which is IEEE's overflow rule
    uint32_t u = bits(x);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    double ax = fabs((double)x), vl = fabs((double)kvq_bf16_to_f32(lo));
    double vh = (hi & 0x7fff) == 0x7f80 ? ldexp(1.0, 128) : fabs((double)kvq_bf16_to_f32(hi));
    double dl = ax - vl, dh = vh - ax;
    uint16_t want = dl < dh ? lo : dh < dl ? hi : ((lo & 1) ? hi : lo);
    if (dl == 0) want = lo;
    if (got != want) fail_msg("bf16 of %a (0x%08x): got 0x%04x, want 0x%04x", (double)x, u, got, want);
}

static void test_bf16_encode_rne(void **state)
{
    (void)state;
    for (uint64_t u = 0; u < 0x100000000ull; u += 65519) check_bf16_encode(from_bits((uint32_t)u));
    for (uint32_t h = 0; h < 0x7f80; h += 3) {   // midpoints and their neighbours
        uint32_t mid = ((uint32_t)h << 16) | 0x8000;
        for (int d = -1; d <= 1; d++) {
            check_bf16_encode(from_bits(mid + (uint32_t)d));
            check_bf16_encode(from_bits((mid + (uint32_t)d) | 0x80000000u));
        }
    }
    assert_int_equal(kvq_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(kvq_f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);   // tie -> even
    assert_int_equal(kvq_f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);
    assert_int_equal(kvq_f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80);   // FLT_MAX -> Inf
    assert_int_equal(kvq_f32_to_bf16(from_bits(0x00000001u)), 0x0000);   // denormals
    assert_int_equal(kvq_f32_to_bf16(from_bits(0x00008001u)), 0x0001);
    assert_int_equal(kvq_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(kvq_f32_to_bf16(from_bits(0x7f800001u)) & 0x7f, 0x40);   // stays NaN
}

static void test_f8e4m3(void **state)
{
    (void)state;
    for (uint32_t v = 0; v < 256; v++) {
        float f = kvq_f8e4m3_to_f32((uint8_t)v);
        if ((v & 0x7f) == 0x7f) {
            assert_true(isnan(f));
            assert_int_equal(kvq_f32_to_f8e4m3(f), v);
            continue;
        }
        assert_true((double)f == ref_decode(v, 4, 3, 7));
        assert_int_equal(kvq_f32_to_f8e4m3(f), v);
        // nearest-even at the midpoint to the next code, with the neighbours
        uint32_t nx = (v & 0x7f) + 1;
        if ((nx & 0x7f) == 0x7f) continue;
        float up = kvq_f8e4m3_to_f32((uint8_t)((v & 0x80) | nx));
        float mid = (f + up) / 2;   // exact in f32
        uint8_t even = (v & 1) ? (uint8_t)((v & 0x80) | nx) : (uint8_t)v;
        assert_int_equal(kvq_f32_to_f8e4m3(mid), even);
        assert_int_equal(kvq_f32_to_f8e4m3(nextafterf(mid, 0)), v);
        assert_int_equal(kvq_f32_to_f8e4m3(nextafterf(mid, signbit(f) ? -INFINITY : INFINITY)),
                         (v & 0x80) | nx);
    }
    assert_true(kvq_f8e4m3_to_f32(0x7e) == 448.0f);
    assert_true(kvq_f8e4m3_to_f32(0x01) == ldexpf(1, -9));
    assert_int_equal(kvq_f32_to_f8e4m3(464.0f), 0x7e);   // tie -> even (448)
    assert_int_equal(kvq_f32_to_f8e4m3(465.0f), 0x7f);   // would round to 480: NaN
    assert_int_equal(kvq_f32_to_f8e4m3(-INFINITY), 0xff);
    assert_int_equal(kvq_f32_to_f8e4m3(ldexpf(1, -10)), 0x00);
    assert_int_equal(kvq_f32_to_f8e4m3(-ldexpf(3, -11)), 0x81);
}

static void test_rows_unaligned(void **state)
{
    (void)state;
    float src[37], back[37];
    uint16_t h[37], b[37];
    for (int i = 0; i < 37; i++) src[i] = (float)(i - 18) * 0.37f;
    kvq_f32_row_to_f16(src, h, 37);
    kvq_f32_row_to_bf16(src, b, 37);
    uint8_t buf[1 + 2 * 37];
    memcpy(buf + 1, h, sizeof h);   // odd address
    kvq_f16_row_to_f32(buf + 1, back, 37);
    for (int i = 0; i < 37; i++) {
        assert_int_equal(h[i], kvq_f32_to_f16(src[i]));
        assert_true(back[i] == kvq_f16_to_f32(h[i]));
        assert_true(fabsf(back[i] - src[i]) <= fabsf(src[i]) * 1e-3f);
    }
    memcpy(buf + 1, b, sizeof b);
    kvq_bf16_row_to_f32(buf + 1, back, 37);
    for (int i = 0; i < 37; i++) assert_true(back[i] == kvq_bf16_to_f32(b[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_decode_all),
        cmocka_unit_test(test_f16_round_trip_all),
        cmocka_unit_test(test_f16_encode_rne),
        cmocka_unit_test(test_f16_edges),
        cmocka_unit_test(test_bf16_all),
        cmocka_unit_test(test_bf16_encode_rne),
        cmocka_unit_test(test_f8e4m3),
        cmocka_unit_test(test_rows_unaligned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
