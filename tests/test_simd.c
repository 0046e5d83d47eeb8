// test_simd.c — every fast path against its scalar reference: the
// turboquant_mse row kernels (encode and decode bit-identical, scores and
// rotated-basis value sums to float rounding), the vectorized exp, fused
// attention over long contexts (several position ranges merged) against the
// reference attention, the same bits at 1 and 2 threads, and the pool.
// On a CPU without AVX2 both sides are the scalar path and the comparisons
// hold trivially (the test says so).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "cache.h"
#include "kvq.h"
#include "f16.h"
#include "methods/ggml_blocks.h"
#include "methods/tq_common.h"
#include "pool.h"
#include "rng.h"
#include "simd.h"
#include "tq_fixture.h"

#define D 128

static double rel(double a, double b, double scale) { return fabs(a - b) / (scale > 1e-30 ? scale : 1e-30); }

static void test_dispatch(void **st)
{
    (void)st;
    printf("  simd: %s (cpu level %d)\n", kvq_simd_name(), kvq_simd_cpu_level());
    kvq_simd_force_scalar(true);
    assert_false(kvq_simd_avx2());
    assert_false(kvq_simd_avx512());
    assert_string_equal(kvq_simd_name(), "scalar");
    kvq_simd_force_scalar(false);
    assert_int_equal(kvq_simd_level(), kvq_simd_cpu_level());
    kvq_simd_set_level(KVQ_SIMD_AVX2);
    assert_false(kvq_simd_avx512());
    assert_true(kvq_simd_avx2() == (kvq_simd_cpu_level() >= KVQ_SIMD_AVX2));
    if (kvq_simd_avx2()) assert_string_equal(kvq_simd_name(), "avx2");
    kvq_simd_set_level(-1);
    assert_true(kvq_simd_avx512() == (kvq_simd_cpu_level() >= KVQ_SIMD_AVX512));
    if (kvq_simd_avx512()) {
        assert_true(kvq_simd_avx2());
        assert_string_equal(kvq_simd_name(), "avx512");
    }
}

// The AVX-512 kernels against the AVX2 ones and the scalar references:
// encode bit-identical to both (Hadamard; dense goes to AVX2's kernel),
// scores and value sums within float rounding of the reference and of
// AVX2, the permuted entry points the same numbers; d 64, 128, 256, bits
// 1..4, nq 1..4 (and 5, 7: two calls of the kernel), n odd.
static void test_tq_avx512(void **st)
{
    (void)st;
    if (kvq_simd_cpu_level() < KVQ_SIMD_AVX512) {
        printf("  AVX-512 kernels not tested: this CPU (or KVQ_SIMD) has no AVX-512 F/BW/VL/DQ/VBMI\n");
        return;
    }
    const size_t n = 203;
    const int dims[3] = {64, 128, 256}, nqs[6] = {1, 2, 3, 4, 5, 7};
    double ws = 0, wa = 0;
    for (int di = 0; di < 3; di++)
        for (int bits = 1; bits <= 4; bits++)
            for (int had = 1; had >= (di == 1 ? 0 : 1); had--) {
                const int d = dims[di];
                kvq_config cfg;
                tq_core c;
                core_for(&c, &cfg, bits, had, d);
                size_t rb = tq_core_code_bytes(&c) + 2;
                float *x = gauss_rows(n, d, 31 + (uint64_t)bits + (uint64_t)d);
                memset(x + 5 * d, 0, sizeof(float) * (size_t)d);   // a zero vector
                uint8_t *e5 = calloc(n, rb), *e2 = calloc(n, rb), *er = calloc(n, rb);
                tq_encode_rows_avx512(&c, x, n, e5, rb);
                tq_encode_rows_avx2(&c, x, n, e2, rb);
                tq_core_encode_rows_ref(&c, x, n, er, rb);
                if (memcmp(e5, er, n * rb)) fail_msg("avx512 encode d %d bits %d had %d differs from the reference", d, bits, had);
                if (memcmp(e5, e2, n * rb)) fail_msg("avx512 encode d %d bits %d had %d differs from avx2", d, bits, had);
                float *q = gauss_rows(7, d, 41), qr[7][KVQ_MAX_HEAD_DIM], qm[7][KVQ_MAX_HEAD_DIM];
                const float *qp[7], *qpm[7];
                for (int k = 0; k < 7; k++) {
                    kvq_rotation_apply(&c.rot, q + k * d, qr[k]);
                    tq_permute(d, qr[k], qm[k]);
                    qp[k] = qr[k];
                    qpm[k] = qm[k];
                }
                float *w = malloc(sizeof(float) * 7 * n);
                kvq_rng r;
                kvq_rng_seed(&r, 9);
                for (size_t i = 0; i < 7 * n; i++) w[i] = (i % 5 == 0) ? 0.0f : (float)exp(-4.0 * kvq_rng_uniform(&r));
                for (int ni = 0; ni < 6; ni++) {
                    const int nq = nqs[ni];
                    float *s5 = malloc(sizeof(float) * 7 * n), *s2 = malloc(sizeof(float) * 7 * n);
                    float *sr = malloc(sizeof(float) * 7 * n), *sp = malloc(sizeof(float) * 7 * n);
                    tq_score_rows_avx512(&c, qp, nq, er, rb, n, s5, n, false);
                    tq_score_rows_avx512(&c, qpm, nq, er, rb, n, sp, n, true);
                    tq_score_rows_avx2(&c, qp, nq, er, rb, n, s2, n, false);
                    tq_core_score_rows_ref(&c, qp, nq, er, rb, n, sr, n);
                    assert_memory_equal(s5, sp, sizeof(float) * (size_t)nq * n);
                    for (int k = 0; k < nq; k++) {
                        double scale = 0;
                        for (int j = 0; j < d; j++) scale += fabs(qr[k][j]);
                        for (size_t i = 0; i < n; i++) {
                            double sc = scale * tq_get_f16(er + i * rb + tq_core_code_bytes(&c));
                            double e = fmax(rel(s5[k * n + i], sr[k * n + i], sc), rel(s5[k * n + i], s2[k * n + i], sc));
                            ws = fmax(ws, e);
                            if (e > 1e-5)
                                fail_msg("avx512 score d %d bits %d nq %d q %d rec %zu: %.9g vs ref %.9g avx2 %.9g", d,
                                         bits, nq, k, i, s5[k * n + i], sr[k * n + i], s2[k * n + i]);
                        }
                    }
                    float *a5 = calloc(7 * (size_t)d, sizeof(float)), *a2 = calloc(7 * (size_t)d, sizeof(float));
                    float *ar = calloc(7 * (size_t)d, sizeof(float)), *ap = calloc(7 * (size_t)d, sizeof(float));
                    for (int t = 0; t < 7 * d; t++) a5[t] = a2[t] = ar[t] = 0.01f * (float)(t % 13);   // added to
                    for (int k = 0; k < 7; k++) tq_permute(d, a5 + k * d, ap + k * d);
                    tq_accumulate_rows_avx512(&c, er, rb, n, w, n, nq, a5, false);
                    tq_accumulate_rows_avx512(&c, er, rb, n, w, n, nq, ap, true);
                    tq_accumulate_rows_avx2(&c, er, rb, n, w, n, nq, a2, false);
                    tq_core_accumulate_rows_ref(&c, er, rb, n, w, n, nq, ar);
                    double mag = 0;
                    for (int t = 0; t < nq * d; t++) mag = fmax(mag, fabs(ar[t]));
                    for (int k = 0; k < nq; k++) {
                        float nat[KVQ_MAX_HEAD_DIM];
                        tq_unpermute(d, ap + k * d, nat);
                        for (int j = 0; j < d; j++) {
                            int t = k * d + j;
                            double e = fmax(fabs(a5[t] - ar[t]), fmax(fabs(a5[t] - a2[t]), fabs(nat[j] - a5[t]))) / mag;
                            wa = fmax(wa, e);
                            if (e > 1e-5)
                                fail_msg("avx512 accumulate d %d bits %d nq %d q %d coord %d: %.9g vs ref %.9g avx2 %.9g "
                                         "permuted %.9g", d, bits, nq, k, j, a5[t], ar[t], a2[t], nat[j]);
                        }
                    }
                    free(s5), free(s2), free(sr), free(sp), free(a5), free(a2), free(ar), free(ap);
                }
                free(x), free(q), free(w), free(e5), free(e2), free(er);
                tq_core_free(&c);
            }
    printf("  avx512 vs avx2 and reference: encode identical, scores max rel diff %.2e, accumulate %.2e\n", ws, wa);
}

// Encode and decode: bit-identical to the references, every width 1..4,
// Hadamard and dense, d 128 and 64, n not a multiple of the chunk.
static void test_tq_encode_decode_exact(void **st)
{
    (void)st;
    const size_t n = 203;
    int dims[2] = {128, 64};
    for (int di = 0; di < 2; di++)
        for (int had = 0; had < 2; had++)
            for (int bits = 1; bits <= 4; bits++) {
                int d = dims[di];
                kvq_config cfg;
                tq_core c;
                core_for(&c, &cfg, bits, had, d);
                assert_true(tq_core_grouped(&c));
                size_t rb = tq_core_code_bytes(&c) + 2;
                float *x = gauss_rows(n, d, 7 + (uint64_t)bits);
                memset(x, 0, sizeof(float) * (size_t)d);   // a zero vector
                uint8_t *a = calloc(n, rb), *b = calloc(n, rb);
                float *ya = malloc(sizeof(float) * n * d), *yb = malloc(sizeof(float) * n * d);
                tq_core_encode_rows(&c, x, n, a, rb);
                tq_core_encode_rows_ref(&c, x, n, b, rb);
                if (memcmp(a, b, n * rb)) fail_msg("encode d %d bits %d had %d differs", d, bits, had);
                tq_core_decode_rows(&c, a, rb, n, ya);
                tq_core_decode_rows_ref(&c, a, rb, n, yb);
                if (memcmp(ya, yb, sizeof(float) * n * d)) fail_msg("decode d %d bits %d had %d differs", d, bits, had);
                // one-vector rotations (query preparation, the attention's final un-rotation)
                for (size_t i = 1; i < 4; i++) {
                    float ra[KVQ_MAX_HEAD_DIM], rr[KVQ_MAX_HEAD_DIM];
                    tq_core_rotate(&c, x + i * d, ra);
                    kvq_rotation_apply(&c.rot, x + i * d, rr);
                    if (memcmp(ra, rr, sizeof(float) * d)) fail_msg("rotate d %d had %d differs", d, had);
                    tq_core_rotate_t(&c, x + i * d, ra);
                    kvq_rotation_apply_t(&c.rot, x + i * d, rr);
                    if (memcmp(ra, rr, sizeof(float) * d)) fail_msg("rotate_t d %d had %d differs", d, had);
                }
                if (kvq_simd_avx2())
                    for (size_t i = 0; i < n; i++) assert_true(tq_norm(x + i * d, d) == tq_norm_avx2(x + i * d, d));
                free(x), free(a), free(b), free(ya), free(yb);
                tq_core_free(&c);
            }
}

// Scores and rotated accumulations: within float rounding of the references,
// and the references equal the LUT path exactly.
static void test_tq_score_accumulate(void **st)
{
    (void)st;
    const size_t n = 300;
    for (int bits = 1; bits <= 4; bits++) {
        kvq_config cfg;
        tq_core c;
        core_for(&c, &cfg, bits, true, D);
        size_t rb = tq_core_code_bytes(&c) + 2;
        float *x = gauss_rows(n, D, 11), *q = gauss_rows(5, D, 12);
        uint8_t *rec = malloc(n * rb);
        tq_core_encode_rows_ref(&c, x, n, rec, rb);
        float qr[5][D];
        const float *qp[5];
        for (int k = 0; k < 5; k++) {
            kvq_rotation_apply(&c.rot, q + k * D, qr[k]);
            qp[k] = qr[k];
        }
        float *sa = malloc(sizeof(float) * 5 * n), *sb = malloc(sizeof(float) * 5 * n);
        float *lut = malloc(sizeof(float) * c.lut_floats);
        tq_core_score_rows(&c, qp, 5, rec, rb, n, sa, n);
        tq_core_score_rows_ref(&c, qp, 5, rec, rb, n, sb, n);
        double worst = 0;
        for (int k = 0; k < 5; k++) {
            tq_core_build_lut(&c, qr[k], lut);
            for (size_t i = 0; i < n; i++) {
                const uint8_t *r = rec + i * rb;
                float lut_s = tq_get_f16(r + tq_core_code_bytes(&c)) * tq_core_lut_dot(&c, lut, r);
                assert_true(lut_s == sb[k * n + i]);   // reference == LUT spec, bit for bit
                double scale = 0;
                for (int j = 0; j < D; j++) scale += fabs(qr[k][j]);
                scale *= tq_get_f16(r + tq_core_code_bytes(&c));
                double e = rel(sa[k * n + i], sb[k * n + i], scale);
                if (e > worst) worst = e;
            }
        }
        if (worst > 1e-5) fail_msg("bits %d: fast scores differ by %.3g", bits, worst);
        // weights with zeros (masked) and a spread of magnitudes
        float *w = malloc(sizeof(float) * 5 * n);
        kvq_rng r;
        kvq_rng_seed(&r, 5);
        for (size_t i = 0; i < 5 * n; i++) w[i] = (i % 7 == 0) ? 0.0f : (float)exp(-4.0 * kvq_rng_uniform(&r));
        float *aa = calloc(5 * D, sizeof(float)), *ab = calloc(5 * D, sizeof(float));
        tq_core_accumulate_rows(&c, rec, rb, n, w, n, 5, aa);
        tq_core_accumulate_rows_ref(&c, rec, rb, n, w, n, 5, ab);
        double werr = 0, mag = 0;
        for (int k = 0; k < 5 * D; k++) {
            werr = fmax(werr, fabs(aa[k] - ab[k]));
            mag = fmax(mag, fabs(ab[k]));
        }
        if (werr > 1e-5 * mag) fail_msg("bits %d: accumulate differs by %.3g of %.3g", bits, werr, mag);
        if (tq_core_permuted(&c)) {   // permuted query / accumulator order: same numbers
            float qpm[5][D], *sp = malloc(sizeof(float) * 5 * n), *ap = calloc(5 * D, sizeof(float));
            const float *qpp[5];
            for (int k = 0; k < 5; k++) {
                tq_permute(D, qr[k], qpm[k]);
                qpp[k] = qpm[k];
            }
            tq_core_score_rows_p(&c, qpp, 5, rec, rb, n, sp, n);
            assert_memory_equal(sp, sa, sizeof(float) * 5 * n);
            tq_core_accumulate_rows_p(&c, rec, rb, n, w, n, 5, ap);
            for (int k = 0; k < 5; k++) {
                float nat[D];
                tq_unpermute(D, ap + k * D, nat);
                for (int j = 0; j < D; j++)
                    assert_true(fabs(nat[j] - aa[k * D + j]) <= 1e-5 * mag);   // chunking differs
            }
            free(sp), free(ap);
        }
        printf("  bits %d: score max rel diff %.2e, accumulate %.2e\n", bits, worst, werr / mag);
        free(x), free(q), free(rec), free(sa), free(sb), free(lut), free(w), free(aa), free(ab);
        tq_core_free(&c);
    }
}


// ggml rows: quantize/dequantize bit-identical to the per-block reference on
// Gaussian blocks, blocks with exact rounding ties (x * id = k + 0.5), equal
// magnitudes of both signs (the first must win), zeros; dots to rounding.
static void test_ggml_rows(void **st)
{
    (void)st;
    const size_t nb = 400;
    float *x = gauss_rows(nb, 32, 31);
    for (int j = 0; j < 32; j++) {
        x[32 * 1 + j] = 0.0f;                                     // all zero
        x[32 * 2 + j] = (j == 5) ? -3.0f : (j == 9) ? 3.0f : 0.1f;  // -max first
        x[32 * 3 + j] = (j == 5) ? 3.0f : (j == 9) ? -3.0f : 0.1f;  // +max first
        x[32 * 4 + j] = 127.0f * (float)(j - 16) / 16.0f + 0.5f;   // q8_0 ties: x*id = k + .5
        x[32 * 5 + j] = (float)(j % 17) - 8.0f + 0.5f;             // q4_0 ties
    }
    x[32 * 4 + 31] = 127.0f;
    uint8_t *ra = malloc(nb * 34), *rb = malloc(nb * 34);
    float *ya = malloc(sizeof(float) * nb * 32), *yb = malloc(sizeof(float) * nb * 32);
    float *q = gauss_rows(nb, 32, 32);
    // q4_0
    kvq_ggml_q4_0_quantize_row(x, ra, nb);
    for (size_t k = 0; k < nb; k++) kvq_ggml_q4_0_quantize(x + 32 * k, rb + 18 * k);
    assert_memory_equal(ra, rb, nb * 18);
    kvq_ggml_q4_0_dequantize_row(ra, ya, nb);
    for (size_t k = 0; k < nb; k++) kvq_ggml_q4_0_dequantize(ra + 18 * k, yb + 32 * k);
    assert_memory_equal(ya, yb, sizeof(float) * nb * 32);
    double worst = 0;
    for (size_t k = 0; k + 4 <= nb; k += 4) {
        float a = kvq_ggml_q4_0_dot_row(ra + 18 * k, q + 32 * k, 4), b = 0, mag = 0;
        for (size_t t = 0; t < 4; t++) b += kvq_ggml_q4_0_dot(ra + 18 * (k + t), q + 32 * (k + t));
        for (size_t t = 0; t < 128; t++) mag += fabsf(q[32 * k + t] * yb[32 * k + t]);
        worst = fmax(worst, rel(a, b, mag));
    }
    printf("  q4_0 row dot max rel diff %.2e\n", worst);
    assert_true(worst < 1e-5);
    // q8_0
    kvq_ggml_q8_0_quantize_row(x, ra, nb);
    for (size_t k = 0; k < nb; k++) kvq_ggml_q8_0_quantize(x + 32 * k, rb + 34 * k);
    assert_memory_equal(ra, rb, nb * 34);
    kvq_ggml_q8_0_dequantize_row(ra, ya, nb);
    for (size_t k = 0; k < nb; k++) kvq_ggml_q8_0_dequantize(ra + 34 * k, yb + 32 * k);
    assert_memory_equal(ya, yb, sizeof(float) * nb * 32);
    worst = 0;
    for (size_t k = 0; k + 4 <= nb; k += 4) {
        float a = kvq_ggml_q8_0_dot_row(ra + 34 * k, q + 32 * k, 4), b = 0, mag = 0;
        for (size_t t = 0; t < 4; t++) b += kvq_ggml_q8_0_dot(ra + 34 * (k + t), q + 32 * (k + t));
        for (size_t t = 0; t < 128; t++) mag += fabsf(q[32 * k + t] * yb[32 * k + t]);
        worst = fmax(worst, rel(a, b, mag));
    }
    printf("  q8_0 row dot max rel diff %.2e\n", worst);
    assert_true(worst < 1e-5);
    free(x), free(ra), free(rb), free(ya), free(yb), free(q);
}

// fp16 rows, dot rows, weighted row sums against their references.
static void test_dense_kernels(void **st)
{
    (void)st;
    const size_t n = 37, d = 136;   // d not a multiple of 32: tails
    float *X = gauss_rows(n, (int)d, 41), *q = gauss_rows(1, (int)d, 42);
    uint16_t *h = malloc(sizeof(uint16_t) * n * d);
    kvq_f32_row_to_f16(X, h, n * d);
    float *a = malloc(sizeof(float) * n * d), *b = malloc(sizeof(float) * n * d);
    kvq_f16_to_f32_fast(h, a, n * d - 3);
    kvq_f16_row_to_f32(h, b, n * d - 3);
    assert_memory_equal(a, b, sizeof(float) * (n * d - 3));
    float sa[37], sb[37], w[37], acca[136] = {0}, accb[136] = {0};
    kvq_dot_rows(q, X, n, d, sa);
    kvq_dot_rows_ref(q, X, n, d, sb);
    for (size_t j = 0; j < n; j++) {
        double mag = 0;
        for (size_t t = 0; t < d; t++) mag += fabs(q[t] * X[j * d + t]);
        assert_true(rel(sa[j], sb[j], mag) < 1e-5);
        w[j] = j % 5 == 0 ? 0.0f : 1.0f / (float)(j + 1);
    }
    kvq_axpy_rows(w, X, n, d, acca);
    kvq_axpy_rows_ref(w, X, n, d, accb);
    for (size_t t = 0; t < d; t++) assert_true(fabs(acca[t] - accb[t]) < 1e-5 * (1 + fabs(accb[t])));
    free(X), free(q), free(h), free(a), free(b);
}

// The online-softmax steps: max exact (NaNs skipped, -inf kept), exp of
// x - m within exp's tolerance and so the double sum, for
// lengths around the 8/16-lane steps.
static void test_softmax_steps(void **st)
{
    (void)st;
    kvq_rng r;
    kvq_rng_seed(&r, 21);
    for (size_t n = 0; n <= 41; n++) {
        float x[48], a[48], b[48];
        for (size_t i = 0; i < n; i++) x[i] = (float)(20.0 * kvq_rng_uniform(&r) - 10.0);
        if (n > 5) x[5] = -INFINITY;                    // a masked position
        if (n > 9) x[9] = NAN;                          // skipped by the max
        float ma = kvq_max_f32(x, n), mb = kvq_max_f32_ref(x, n);
        assert_true(ma == mb || (isinf(ma) && isinf(mb)));
        if (n == 0) assert_true(ma == -INFINITY);
        if (n > 9) x[9] = 1.0f;
        float m = kvq_max_f32_ref(x, n);
        memcpy(a, x, sizeof(float) * n);
        memcpy(b, x, sizeof(float) * n);
        double la = kvq_exp_sub_sum(a, n, m), lb = kvq_exp_sub_sum_ref(b, n, m);
        for (size_t i = 0; i < n; i++) {
            assert_true(fabs((double)a[i] - b[i]) <= 1e-6 * b[i] + 1e-38);
            if (x[i] == -INFINITY) assert_true(a[i] == 0.0f && b[i] == 0.0f);
        }
        assert_true(fabs(la - lb) <= 1e-6 * lb + 1e-30);   // exp's 2e-7, summed
        memcpy(a, x, sizeof(float) * n);
        memcpy(b, x, sizeof(float) * n);
        kvq_scale_f32(a, n, 0.0883883f);
        kvq_scale_f32_ref(b, n, 0.0883883f);
        assert_memory_equal(a, b, sizeof(float) * n);   // bit-identical, -inf included
    }
}

static void test_exp(void **st)
{
    (void)st;
    float x[1000], y[1000];
    for (int i = 0; i < 1000; i++) x[i] = y[i] = -90.0f + 0.178f * (float)i;   // -90 .. 88
    x[3] = y[3] = -INFINITY;
    kvq_exp_inplace(x, 1000);
    kvq_simd_force_scalar(true);
    kvq_exp_inplace(y, 1000);
    kvq_simd_force_scalar(false);
    assert_true(x[3] == 0.0f && y[3] == 0.0f);
    double worst = 0;
    for (int i = 0; i < 1000; i++) {
        if (y[i] < 1e-37f) {   // denormal range: the fast path flushes to 0
            assert_true(x[i] < 1e-37f);
            continue;
        }
        double e = fabs((double)x[i] - y[i]) / y[i];
        if (e > worst) worst = e;
    }
    printf("  exp: max rel diff %.2e\n", worst);
    assert_true(worst < 1e-6);
}

static int g_hits[64];
static void count_task(void *u, int t)
{
    (void)u;
    g_hits[t]++;
}

static void test_pool(void **st)
{
    (void)st;
    memset(g_hits, 0, sizeof g_hits);
    kvq_threads_set(2);
    assert_int_equal(kvq_threads(), 2);
    for (int r = 0; r < 50; r++) kvq_parallel_for(64, count_task, NULL);
    for (int t = 0; t < 64; t++) assert_int_equal(g_hits[t], 50);
    // parallel encode/decode: the same bytes as one call
    kvq_config cfg;
    kvq_config_default(&cfg);
    kvq_plan_params pp = {.bits = 3, .head_dim = D, .cfg = &cfg};
    kvq_quantizer q;
    assert_int_equal(kvq_quantizer_init(&q, "turboquant_mse", &pp), KVQ_OK);
    const size_t n = 1500;
    float *x = gauss_rows(n, D, 51), *ya = malloc(sizeof(float) * n * D), *yb = malloc(sizeof(float) * n * D);
    uint8_t *a = malloc(n * q.bpv), *b = malloc(n * q.bpv);
    kvq_encode_parallel(&q, x, n, a);
    q.m->encode(q.plan, x, n, b);
    assert_memory_equal(a, b, n * q.bpv);
    kvq_decode_parallel(&q, a, n, ya);
    q.m->decode(q.plan, a, n, yb);
    assert_memory_equal(ya, yb, sizeof(float) * n * D);
    kvq_quantizer_free(&q);
    free(x), free(ya), free(yb), free(a), free(b);
    kvq_threads_set(0);
    kvq_threads_shutdown();
}

// Long-context fused attention (several ranges merged, rotated values) vs
// the reference, and bit-identical outputs at 1 and 2 threads, at each
// kernel level the CPU has (AVX-512, AVX2, scalar) vs the reference.
static void test_fused_long(void **st)
{
    (void)st;
    const int kv = 2, nh = 4, n = 9000;
    float *K = gauss_rows((size_t)kv * n, D, 21), *V = gauss_rows((size_t)kv * n, D, 22);
    float *Q = gauss_rows(nh * 2, D, 23);
    const char *vm[2] = {"turboquant_mse", "q4_0"};
    const int levels[3] = {KVQ_SIMD_AVX512, KVQ_SIMD_AVX2, KVQ_SIMD_SCALAR};
    for (int vi = 0; vi < 2; vi++)
        for (int li = 0; li < 3; li++) {
            if (levels[li] > kvq_simd_cpu_level()) continue;   // the CPU has not got it (said by test_dispatch)
            kvq_simd_set_level(levels[li]);
            kvq_config cf, cr;
            kvq_config_default(&cf);
            snprintf(cf.method, sizeof cf.method, "turboquant_mse");
            snprintf(cf.value_method, sizeof cf.value_method, "%s", vm[vi]);
            cf.bits = 3;
            cf.value_bits = vi ? 4 : 2;
            cf.residual_length = 100;
            cf.sink_tokens = 4;
            cf.use_fused_sdpa = true;
            cr = cf;
            cr.use_fused_sdpa = false;
            kvq_cache *a, *b;
            assert_int_equal(kvq_cache_new(&cf, NULL, 1, 4, kv, D, &a), KVQ_OK);
            assert_int_equal(kvq_cache_new(&cr, NULL, 1, 4, kv, D, &b), KVQ_OK);
            assert_int_equal(kvq_cache_append(a, K, V, n), KVQ_OK);
            assert_int_equal(kvq_cache_append(b, K, V, n), KVQ_OK);
            int32_t pos[2] = {n - 1, 5000};
            float o1[4 * 2 * D], o2[4 * 2 * D], orf[4 * 2 * D];
            kvq_threads_set(1);
            assert_int_equal(kvq_cache_attend(a, Q, nh, 2, pos, o1), KVQ_OK);
            kvq_threads_set(2);
            assert_int_equal(kvq_cache_attend(a, Q, nh, 2, pos, o2), KVQ_OK);
            kvq_threads_set(0);
            assert_int_equal(kvq_cache_attend(b, Q, nh, 2, pos, orf), KVQ_OK);
            assert_memory_equal(o1, o2, sizeof o1);
            double worst = worst_row_rel(o1, orf, nh * 2, D);
            printf("  fused %s values, %s kernels, %d tokens: 1 == 2 threads, vs reference %.2e\n", vm[vi],
                   kvq_simd_name(), n, worst);
            assert_true(worst < 1e-4);
            kvq_cache_free(a);
            kvq_cache_free(b);
        }
    kvq_simd_set_level(-1);
    kvq_threads_shutdown();
    free(K), free(V), free(Q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_tq_encode_decode_exact),
        cmocka_unit_test(test_tq_score_accumulate),
        cmocka_unit_test(test_tq_avx512),
        cmocka_unit_test(test_ggml_rows),
        cmocka_unit_test(test_dense_kernels),
        cmocka_unit_test(test_softmax_steps),
        cmocka_unit_test(test_exp),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_fused_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
