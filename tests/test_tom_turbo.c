// test_tom_turbo.c — tomturbo:turbo2/3/4 (TheTom/llama-cpp-turboquant's KV
// cache types) against tests/data/formats/tom_turbo.txt, which
// tools/tom_turbo_vectors.sh wrote by running the fork's own ggml CPU path:
// every record byte, every decoded float (after the graph's inverse WHT) and
// the score (rotated query . vec_dot) bit-equal; the record size against the
// fork's block structs; heads padded to 128; the corrected norm (a decoded
// block keeps the input's L2 norm); and the widths the rows refuse. The
// q8_0 lines are the fork's q8_0 (the K type of its -ctk q8_0 -ctv turboN
// rows), held to llamacpp:q8_0: bytes and decode (its vec_dot rounds the
// query to q8_0 first, so no score is recorded for it).
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
#include "kvq.h"

#define VEC "tests/data/formats/tom_turbo.txt"
#define MAXD 256

// n floats as 8-digit hex words from *p, then past the next '|' and spaces.
static void read_f32(char **p, float *x, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned u;
        int k;
        assert_int_equal(sscanf(*p, " %8x%n", &u, &k), 1);
        *p += k;
        memcpy(&x[i], &u, 4);
    }
    while (**p == ' ' || **p == '|') (*p)++;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// sizeof(block_turboN_0) at the fork's commit (ggml-common.h static_asserts)
static size_t block_bytes(const char *type)
{
    return !strcmp(type, "turbo2") ? 2 + 128 / 4 : !strcmp(type, "turbo3") ? 2 + 128 / 4 + 128 / 8 : 68;
}

static void test_vectors(void **st)
{
    (void)st;
    FILE *f = fopen(VEC, "r");
    assert_non_null(f);
    static char line[1 << 16];
    int n = 0, n_padded = 0, per_type[4] = {0};
    bool have_commit = false;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') {
            have_commit |= strstr(line, "# fork TheTom/llama-cpp-turboquant commit ") == line;
            continue;
        }
        char type[16], name[32];
        int d, off;
        assert_int_equal(sscanf(line, "%15s %d |%n", type, &d, &off), 2);
        assert_true(d >= 1 && d <= MAXD);
        char *p = line + off;
        float x[MAXD], want_y[MAXD], q[MAXD], y[MAXD], want_s, s;
        read_f32(&p, x, d);
        uint8_t want[8 * 34], got[8 * 34];
        size_t nb = 0;
        while (p[0] != ' ' && p[0] != '|' && nb < sizeof want) {
            want[nb++] = (uint8_t)(tu_hexval(p[0]) << 4 | tu_hexval(p[1]));
            p += 2;
        }
        while (*p == ' ' || *p == '|') p++;
        read_f32(&p, want_y, d);
        const bool q8 = !strcmp(type, "q8_0");
        if (!q8) {
            read_f32(&p, q, d);
            read_f32(&p, &want_s, 1);
        }

        snprintf(name, sizeof name, q8 ? "llamacpp:%s" : "tomturbo:%s", type);
        kvq_config c;
        kvq_config_default(&c);
        kvq_plan_params pp = {.bits = q8 ? 8 : type[5] - '0', .head_dim = d, .cfg = &c};
        kvq_quantizer qz;
        if (kvq_quantizer_init(&qz, name, &pp)) fail_msg("%s d %d: %s", name, d, kvq_last_error());
        const size_t nblk = (size_t)(d + 127) / 128;
        assert_int_equal(qz.bpv, q8 ? (size_t)d / 32 * 34 : nblk * block_bytes(type));
        assert_int_equal(qz.bpv, nb);
        assert_int_equal(qz.side, 0);
        memset(got, 0xa5, sizeof got);
        qz.m->encode(qz.plan, x, 1, got);
        if (memcmp(got, want, nb)) {
            size_t i = 0;
            while (got[i] == want[i]) i++;
            fail_msg("%s d %d vector %d: byte %zu is %02x, the fork's %02x", name, d, n, i, got[i], want[i]);
        }
        qz.m->decode(qz.plan, want, 1, y);
        for (int i = 0; i < d; i++)
            if (bits_of(y[i]) != bits_of(want_y[i]))
                fail_msg("%s d %d vector %d: decoded[%d] %a, the fork's %a", name, d, n, i, (double)y[i],
                         (double)want_y[i]);
        if (q8) {
            per_type[3]++;
            kvq_quantizer_free(&qz);
            n++;
            continue;
        }
        float qs[2 * 128];
        assert_true(qz.qbytes <= sizeof qs);
        qz.m->prepare_query(qz.plan, q, qs);
        qz.m->score(qz.plan, qs, want, 1, &s);
        if (bits_of(s) != bits_of(want_s))
            fail_msg("%s d %d vector %d: score %a, the fork's %a", name, d, n, (double)s, (double)want_s);
        // the corrected norm: a block of 128 decodes to the input's L2 norm
        // (the f16 norm's rounding, 2^-11, and the f32 sums aside)
        if (d == 128) {
            double nx = 0, ny = 0;
            for (int i = 0; i < d; i++) nx += (double)x[i] * x[i], ny += (double)y[i] * y[i];
            if (nx > 1e-20) assert_true(fabs(sqrt(ny) / sqrt(nx) - 1) < 1e-3);
        }
        n_padded += d % 128 != 0;
        per_type[type[5] - '2']++;
        kvq_quantizer_free(&qz);
        n++;
    }
    fclose(f);
    assert_true(have_commit);
    assert_int_equal(per_type[0], per_type[1]);
    assert_int_equal(per_type[1], per_type[2]);
    assert_int_equal(per_type[2], per_type[3]);
    assert_int_equal(n, 4 * 26);
    assert_int_equal(n_padded, 3 * 4);
}

static void test_shapes(void **st)
{
    (void)st;
    kvq_config c;
    kvq_config_default(&c);
    kvq_quantizer q;
    static const struct { const char *m; int bits; size_t blk; } rows[] = {
        {"tomturbo:turbo2", 2, 34}, {"tomturbo:turbo3", 3, 50}, {"tomturbo:turbo4", 4, 68}};
    for (int r = 0; r < 3; r++) {
        static const int dims[] = {1, 64, 128, 129, 256};
        static const size_t nblk[] = {1, 1, 1, 2, 2};
        for (int k = 0; k < 5; k++) {
            kvq_plan_params pp = {.bits = rows[r].bits, .head_dim = dims[k], .cfg = &c};
            assert_int_equal(kvq_quantizer_init(&q, rows[r].m, &pp), KVQ_OK);
            assert_int_equal(q.bpv, nblk[k] * rows[r].blk);
            kvq_quantizer_free(&q);
        }
        kvq_plan_params pp = {.bits = rows[r].bits + 1, .head_dim = 128, .cfg = &c};
        assert_int_not_equal(kvq_quantizer_init(&q, rows[r].m, &pp), KVQ_OK);   // a fixed width
        assert_non_null(strstr(kvq_last_error(), "out of range"));
        pp.bits = rows[r].bits;
        pp.head_dim = 300;
        assert_int_not_equal(kvq_quantizer_init(&q, rows[r].m, &pp), KVQ_OK);
        assert_non_null(strstr(kvq_last_error(), "head_dim 300"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
