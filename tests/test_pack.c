// test_pack.c — bit packing round trips at every width and odd lengths, and
// the documented LSB-first layout.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "pack.h"
#include "rng.h"

static void test_round_trip_all_widths(void **st)
{
    (void)st;
    static const size_t lens[] = {0, 1, 2, 3, 5, 7, 8, 9, 13, 31, 33, 127, 128, 129, 255, 1001};
    uint8_t codes[1001], back[1001], buf[1001 + 8];
    kvq_rng r;
    kvq_rng_seed(&r, 7);
    for (int b = 1; b <= 8; b++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li];
            for (size_t i = 0; i < n; i++) codes[i] = (uint8_t)(kvq_rng_u64(&r) & ((1u << b) - 1));
            size_t nb = kvq_pack_bytes(n, b);
            assert_int_equal(nb, (n * (size_t)b + 7) / 8);
            memset(buf, 0xAB, sizeof buf);
            kvq_pack(codes, n, b, buf);
            for (size_t i = nb; i < sizeof buf; i++) assert_int_equal(buf[i], 0xAB);  // no overrun
            if (n * (size_t)b % 8)   // padding bits of the tail byte are zero
                assert_int_equal(buf[nb - 1] >> (n * (size_t)b % 8), 0);
            memset(back, 0xFF, sizeof back);
            kvq_unpack(buf, n, b, back);
            assert_memory_equal(codes, back, n);
        }
}

static void test_layout_lsb_first(void **st)
{
    (void)st;
    uint8_t out[4] = {0};
    const uint8_t c3[] = {5, 3, 6};   // 101 | 011 | 110 -> bits 0..8 LSB first
    kvq_pack(c3, 3, 3, out);
    assert_int_equal(out[0], 5 | (3 << 3) | ((6 & 3) << 6));
    assert_int_equal(out[1], 6 >> 2);
    const uint8_t c1[] = {1, 0, 0, 1, 1, 0, 0, 0, 1};
    kvq_pack(c1, 9, 1, out);
    assert_int_equal(out[0], 0x19);
    assert_int_equal(out[1], 0x01);
    const uint8_t c4[] = {0xA, 0x3};
    kvq_pack(c4, 2, 4, out);
    assert_int_equal(out[0], 0x3A);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all_widths),
        cmocka_unit_test(test_layout_lsb_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
