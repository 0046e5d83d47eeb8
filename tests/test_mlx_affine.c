// test_mlx_affine.c — mlx:affine_g32/g64/g128 (mlx_lm's quantized KV cache)
// against the vectors tools/mlx_affine_vectors.py transcribed from mlx's
// quantize (tests/data/formats/mlx_affine.txt): every record byte equal, the
// decode equal to fp16(scale) x q + fp16(bias), the record size, the edge
// cases (a constant group, zeros) exact, and the widths mlx refuses.
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
#include "f16.h"
#include "kvq.h"

#define VEC "tests/data/formats/mlx_affine.txt"
#define D 128

static void test_vectors(void **st)
{
    (void)st;
    FILE *f = fopen(VEC, "r");
    assert_non_null(f);
    static char line[1 << 16];
    int n = 0, n_const = 0;
    while (fgets(line, sizeof line, f)) {
        int g, bits, off;
        assert_int_equal(sscanf(line, "%d %d |%n", &g, &bits, &off), 2);
        float x[D];
        char *p = line + off;
        for (int i = 0; i < D; i++) {
            unsigned u;
            int k;
            assert_int_equal(sscanf(p, " %8x%n", &u, &k), 1);
            p += k;
            memcpy(&x[i], &u, 4);
        }
        while (*p == ' ' || *p == '|') p++;
        uint8_t want[D + 64], got[D + 64];
        size_t nb = 0;
        while (p[0] && p[1] && p[0] != '\n') {
            want[nb++] = (uint8_t)(tu_hexval(p[0]) << 4 | tu_hexval(p[1]));
            p += 2;
        }
        char name[32];
        snprintf(name, sizeof name, "mlx:affine_g%d", g);
        kvq_config c;
        kvq_config_default(&c);
        kvq_plan_params pp = {.bits = bits, .head_dim = D, .cfg = &c};
        kvq_quantizer q;
        assert_int_equal(kvq_quantizer_init(&q, name, &pp), KVQ_OK);
        assert_int_equal(q.bpv, (size_t)(D * bits / 8 + 4 * (D / g)));
        assert_int_equal(q.bpv, nb);
        memset(got, 0xa5, sizeof got);
        q.m->encode(q.plan, x, 1, got);
        if (memcmp(got, want, nb)) {
            size_t i = 0;
            while (got[i] == want[i]) i++;
            fail_msg("%s bits %d vector %d: byte %zu is %02x, mlx %02x", name, bits, n, i, got[i], want[i]);
        }
        // decode: fp16 scale x code + fp16 bias, codes LSB first
        float y[D];
        q.m->decode(q.plan, got, 1, y);
        size_t cb = (size_t)D * bits / 8;
        for (int i = 0; i < D; i++) {
            int gi = i / g;
            unsigned code = 0;
            for (int k = 0; k < bits; k++) {
                size_t pos = (size_t)i * bits + k;
                code |= (unsigned)(got[pos >> 3] >> (pos & 7) & 1) << k;
            }
            float s = kvq_f16_load(got + cb + 2 * gi), b = kvq_f16_load(got + cb + 2 * (D / g + gi));
            assert_true(y[i] == s * (float)code + b);
        }
        bool constant = true;
        for (int i = 1; i < D; i++) constant &= x[i] == x[0];
        if (constant) {   // max == min: the edge is exact, so the group decodes exactly
            for (int i = 0; i < D; i++) assert_true(y[i] == x[0]);
            n_const++;
        }
        kvq_quantizer_free(&q);
        n++;
    }
    fclose(f);
    assert_int_equal(n, 3 * 6 * 7);
    assert_int_equal(n_const, 3 * 6 * 2);
}

static void test_refused(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    kvq_quantizer q;
    kvq_plan_params pp = {.bits = 7, .head_dim = D, .cfg = &c};
    assert_int_not_equal(kvq_quantizer_init(&q, "mlx:affine_g64", &pp), KVQ_OK);
    assert_non_null(strstr(kvq_last_error(), "bits 7"));
    pp.bits = 4;
    pp.head_dim = 96;   // not a multiple of 64
    assert_int_not_equal(kvq_quantizer_init(&q, "mlx:affine_g64", &pp), KVQ_OK);
    assert_non_null(strstr(kvq_last_error(), "multiple of the group size 64"));
    pp.head_dim = 96;
    assert_int_equal(kvq_quantizer_init(&q, "mlx:affine_g32", &pp), KVQ_OK);
    kvq_quantizer_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
