// test_hf_cache.c — transformers:quanto_qint{2,4}_g64 and transformers:hqq_g64
// (transformers' QuantizedCache) against the vectors tools/hf_cache_vectors.py
// transcribed from optimum-quanto and hqq (tests/data/formats/hf_cache.txt):
// every record byte equal (codes, fp16 scales, shifts/zeros), the decode
// equal to the transcription's fp16 values, the libraries' own packed code
// tensors rebuilt from records, the residual window in side_bytes, refusals.
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
#include "methods/hf_round.h"

#define VEC "tests/data/formats/hf_cache.txt"
#define D 128
#define TMAX 5

static char *read_floats(char *p, float *x, int n)
{
    p = tu_read_hex_floats(p, x, n);
    assert_non_null(p);
    return p;
}

static char *read_hex(char *p, uint8_t *b, size_t cap, size_t *nb)
{
    while (*p == ' ' || *p == '|') p++;
    *nb = 0;
    while (p[0] && p[1] && p[0] != ' ' && p[0] != '\n') {
        assert_true(*nb < cap);
        b[(*nb)++] = (uint8_t)(tu_hexval(p[0]) << 4 | tu_hexval(p[1]));
        p += 2;
    }
    return p;
}

static void init(kvq_quantizer *q, const char *backend, int bits)
{
    char name[48];
    if (!strcmp(backend, "quanto")) snprintf(name, sizeof name, "transformers:quanto_qint%d_g64", bits);
    else snprintf(name, sizeof name, "transformers:hqq_g64");
    kvq_config c;
    kvq_config_default(&c);
    kvq_plan_params pp = {.bits = bits, .head_dim = D, .cfg = &c};
    if (kvq_quantizer_init(q, name, &pp)) fail_msg("%s bits %d: %s", name, bits, kvq_last_error());
}

// Code i of a record, read back in the record's own order (see the method files).
static unsigned rec_code(const char *backend, int bits, const uint8_t *rec, int i)
{
    unsigned mask = (1u << bits) - 1;
    if (!strcmp(backend, "quanto")) {
        size_t pos = (size_t)i * bits;
        return (unsigned)rec[pos >> 3] >> (pos & 7) & mask;   // 2 or 4 bits never straddle a byte
    }
    if (bits == 3) {
        int w = i / 10;
        uint32_t v = (uint32_t)rec[4 * w] | (uint32_t)rec[4 * w + 1] << 8 | (uint32_t)rec[4 * w + 2] << 16 |
                     (uint32_t)rec[4 * w + 3] << 24;
        return v >> (27 - 3 * (i % 10)) & mask;
    }
    int per = 8 / bits;
    return (unsigned)rec[i / per] >> (8 - bits * (i % per + 1)) & mask;
}

static void test_vectors(void **st)
{
    (void)st;
    FILE *f = fopen(VEC, "r");
    assert_non_null(f);
    static char line[1 << 17];
    int n_vec = 0, n_tensor = 0, n_exact = 0;
    while (fgets(line, sizeof line, f)) {
        char backend[16];
        int bits, off, T = 1;
        bool tensor = !strncmp(line, "tensor ", 7);
        if (tensor) assert_int_equal(sscanf(line, "tensor %15s %d %d |%n", backend, &bits, &T, &off), 3);
        else assert_int_equal(sscanf(line, "%15s %d |%n", backend, &bits, &off), 2);
        assert_true(T >= 1 && T <= TMAX);
        static float x[TMAX * D], y[D];
        char *p = read_floats(line + off, x, T * D);
        kvq_quantizer q;
        init(&q, backend, bits);
        static uint8_t got[TMAX * 256], want[TMAX * 512];
        size_t nb;
        memset(got, 0xa5, sizeof got);
        q.m->encode(q.plan, x, (size_t)T, got);
        p = read_hex(p, want, sizeof want, &nb);
        if (!tensor) {
            assert_int_equal(q.bpv, nb);
            if (memcmp(got, want, nb)) {
                size_t i = 0;
                while (got[i] == want[i]) i++;
                fail_msg("%s %d bits vector %d: record byte %zu is %02x, transcription %02x", backend, bits, n_vec, i,
                         got[i], want[i]);
            }
            uint8_t dec[2 * D];
            p = read_hex(p, dec, sizeof dec, &nb);
            assert_int_equal(nb, 2 * D);
            q.m->decode(q.plan, got, 1, y);
            for (int i = 0; i < D; i++) {
                float w = kvq_f16_load(dec + 2 * i);
                if (y[i] != w && fabsf(y[i] - w) > 1e-6f * fmaxf(1.0f, fabsf(w)))
                    fail_msg("%s %d bits vector %d: decoded[%d] %g, transcription %g", backend, bits, n_vec, i, y[i], w);
                n_exact += y[i] == w;
            }
            n_vec++;
        } else {
            // the library's packed (G, 64) code tensor, G = T x head_dim / 64 rows
            int G = T * D / 64;
            static uint8_t rows[TMAX * 2][64], packed[TMAX * 512];
            for (int t = 0; t < T; t++)
                for (int i = 0; i < D; i++)
                    rows[(t * D + i) / 64][i % 64] = (uint8_t)rec_code(backend, bits, got + t * q.bpv, i);
            size_t np = 0;
            memset(packed, 0, sizeof packed);
            if (!strcmp(backend, "quanto")) {   // optimum-quanto tensor/packed.py pack_weights
                int per = 8 / bits, R = (G + per - 1) / per;
                for (int i = 0; i < per; i++)
                    for (int r = 0; r < R && i * R + r < G; r++)
                        for (int c = 0; c < 64; c++)
                            packed[r * 64 + c] |= (uint8_t)(rows[i * R + r][c] << (bits * i));
                np = (size_t)R * 64;
            } else if (bits == 3) {              // hqq core/bitpack.py pack_3bit_32, rows padded to 10s
                int step = (G + 9) / 10;
                for (int r = 0; r < step; r++)
                    for (int c = 0; c < 64; c++) {
                        uint32_t v = 0;
                        for (int k = 0; k < 10; k++)
                            if (k * step + r < G) v |= (uint32_t)rows[k * step + r][c] << (27 - 3 * k);
                        for (int b = 0; b < 4; b++) packed[np++] = (uint8_t)(v >> (8 * b));
                    }
            } else {                             // pack_{8,4,2,1}bit_u8: row k x step + r at the k-th top bits
                int per = 8 / bits, step = G / per;
                for (int r = 0; r < step; r++)
                    for (int c = 0; c < 64; c++) {
                        unsigned v = 0;
                        for (int k = 0; k < per; k++) v |= (unsigned)rows[k * step + r][c] << (8 - bits * (k + 1));
                        packed[np++] = (uint8_t)v;
                    }
            }
            assert_int_equal(np, nb);
            if (memcmp(packed, want, nb)) fail_msg("tensor %s %d bits x %d: packed codes differ", backend, bits, T);
            n_tensor++;
        }
        kvq_quantizer_free(&q);
    }
    fclose(f);
    assert_int_equal(n_vec, 7 * 8);
    assert_int_equal(n_tensor, 7);
    assert_true(n_exact == n_vec * D);   // fp16 decode: the same roundings, so equal
}

// Bytes held: codes + fp16 scale and shift/zero per 64; the residual window
// of 127 fp16 tokens beyond its records as side bytes.
static void test_bytes(void **st)
{
    (void)st;
    static const struct { const char *b; int bits; size_t bpv; } want[] = {
        {"quanto", 2, 32 + 8}, {"quanto", 4, 64 + 8}, {"hqq", 1, 16 + 8}, {"hqq", 2, 32 + 8},
        {"hqq", 3, 52 + 8},   {"hqq", 4, 64 + 8},    {"hqq", 8, 128 + 8},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        kvq_quantizer q;
        init(&q, want[i].b, want[i].bits);
        assert_int_equal(q.bpv, want[i].bpv);
        assert_int_equal(q.side, 127 * (2 * D - want[i].bpv));
        kvq_quantizer_free(&q);
    }
}

// The fast fp16 rounding the two methods use, against f16.c's exact one on
// every 4099th float bit pattern (both signs, all exponents) and the edges.
static void test_round(void **st)
{
    (void)st;
    static const uint32_t edge[] = {0x38800000u, 0x387fffffu, 0x477fefffu, 0x477ff000u, 0x477fe000u, 0x33000001u,
                                    0x3f801000u, 0x3f803000u, 0x7f800000u, 0x7fc00000u, 0u, 0x80000000u};
    for (uint64_t v = 0; v < (1ull << 32) + 12 * 4099; v += 4099) {
        uint32_t u = v < (1ull << 32) ? (uint32_t)v : edge[(v - (1ull << 32)) / 4099];
        float x, a, b;
        memcpy(&x, &u, 4);
        a = hf_f16_round(x);
        b = kvq_f16_to_f32(kvq_f32_to_f16(x));
        if (memcmp(&a, &b, 4) && !(isnan(a) && isnan(b))) fail_msg("%08x: fast %a, exact %a", u, (double)a, (double)b);
    }
}

static void test_refused(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    kvq_quantizer q;
    kvq_plan_params pp = {.bits = 5, .head_dim = D, .cfg = &c};
    assert_int_not_equal(kvq_quantizer_init(&q, "transformers:hqq_g64", &pp), KVQ_OK);
    assert_non_null(strstr(kvq_last_error(), "bits 5"));
    pp.bits = 4;
    pp.head_dim = 96;
    assert_int_not_equal(kvq_quantizer_init(&q, "transformers:hqq_g64", &pp), KVQ_OK);
    assert_non_null(strstr(kvq_last_error(), "multiple of the group size 64"));
    assert_int_not_equal(kvq_quantizer_init(&q, "transformers:quanto_qint4_g64", &pp), KVQ_OK);
    assert_non_null(strstr(kvq_last_error(), "multiple of the group size 64"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_round),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
