// test_quantreport.c — the quantize report on the sample trace: honest bits
// per coordinate (8.5 for q8_0, 3 for kivi-2 keys, the fp16 tail of a
// partial group counted at 16), metrics recomputed independently from
// decode (relative MSE, cosine, and the q . k error over all causal pairs),
// the pair count of the query sampling, the seeded sample of pairs above
// max_pairs, layer masks, value methods, errors and cancellation.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "kvq.h"
#include "pool.h"
#include "quantreport.h"
#include "trace.h"

#define TRACE_PATH "sample_data/traces/code-1k.safetensors"

static int setup(void **state)
{
    kvq_trace *t = NULL;
    if (kvq_trace_open(TRACE_PATH, NULL, &t)) {
        print_error("%s\n", kvq_last_error());
        return -1;
    }
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    kvq_trace_free(*state);
    return 0;
}

static void cfg_for(kvq_config *c, const char *method, int bits, int value_bits)
{
    kvq_config_default(c);
    assert_int_equal(kvq_config_set(c, "method", method), KVQ_OK);
    c->bits = bits;
    c->value_bits = value_bits;
}

static kvq_quantreport *run(const kvq_trace *t, const kvq_config *c, const kvq_quantreport_opts *o)
{
    kvq_quantreport *r = calloc(1, sizeof *r);
    if (kvq_quantreport_run(t, c, NULL, o, NULL, r)) fail_msg("%s", kvq_last_error());
    return r;
}

static void test_bits_held(void **state)
{
    const kvq_trace *t = *state;
    kvq_config c;
    cfg_for(&c, "q8_0", 8, 16);
    kvq_quantreport *r = run(t, &c, NULL);
    assert_int_equal(r->n_layers, t->n_layers);
    assert_true(fabs(r->keys.bits_per_coord - 8.5) < 1e-12);
    assert_true(fabs(r->values.bits_per_coord - 16.0) < 1e-12);
    assert_int_equal(r->keys.n_vectors, (long)t->n_layers * t->n_kv_heads * t->n_tokens);
    assert_string_equal(r->value_method, "fp16");
    assert_true(r->keys.relative_mse < 2e-4 && r->keys.cosine > 0.9999);
    assert_true(r->values.relative_mse < 1e-6);
    assert_true(r->ip_relative_error > 0 && r->ip_relative_error < 0.01);
    for (int l = 0; l < r->n_layers; l++) {
        assert_int_equal(r->layers[l].layer, l);
        assert_true(fabs(r->layers[l].keys.bits_per_coord - 8.5) < 1e-12);
    }
    free(r);

    // kivi-2 keys: 2-bit codes + f16 (scale, min) per channel per 32 tokens = 3 bits.
    // 1000 tokens: 992 in 31 groups, a tail of 8 held in fp16.
    cfg_for(&c, "kivi", 2, 4);
    strcpy(c.value_method, "q4_0");
    kvq_quantreport_opts o;
    kvq_quantreport_opts_default(&o);
    r = run(t, &c, &o);
    assert_true(fabs(r->keys.bits_per_coord - 3.0) < 1e-12);
    assert_true(fabs(r->values.bits_per_coord - 4.5) < 1e-12);
    free(r);
    o.max_tokens = 1000;
    r = run(t, &c, &o);
    const double want = (992.0 * 48 + 8.0 * 256) * 8 / (1000.0 * 128);
    if (fabs(r->keys.bits_per_coord - want) > 1e-12)
        fail_msg("kivi keys with a tail: %.6f bits, want %.6f", r->keys.bits_per_coord, want);
    assert_int_equal(r->n_tokens, 1000);
    free(r);
}

// Layer 0 recomputed from decode: relative MSE, cosine, and the q . k error
// over every causal pair (queries_per_head = 0) of the first 160 tokens.
static void test_metrics_independent(void **state)
{
    const kvq_trace *t = *state;
    const int n = 160, d = t->head_dim, per_kv = t->n_heads / t->n_kv_heads;
    const char *methods[] = {"q4_0", "kivi"};
    const int bits[] = {4, 2};
    for (int mi = 0; mi < 2; mi++) {
        kvq_config c;
        cfg_for(&c, methods[mi], bits[mi], 16);
        bool mask[KVQ_MAX_LAYERS] = {true};
        kvq_quantreport_opts o;
        kvq_quantreport_opts_default(&o);
        o.max_tokens = n;
        o.queries_per_head = 0;
        o.layer_mask = mask;
        kvq_quantreport *r = run(t, &c, &o);
        assert_int_equal(r->n_layers, 1);

        float *x = malloc(sizeof(float) * (size_t)t->n_tokens * d);
        float *y = malloc(sizeof(float) * (size_t)t->n_tokens * d);
        float *qr = malloc(sizeof(float) * (size_t)t->n_queries * d);
        double rel = 0, cos = 0, e2 = 0, s2 = 0;
        long nv = 0, np = 0;
        for (int h = 0; h < t->n_kv_heads; h++) {
            kvq_plan_params pp = {.bits = bits[mi], .head_dim = d, .layer = 0, .kv_head = h,
                                  .cfg = &c};
            kvq_quantizer q;
            assert_int_equal(kvq_quantizer_init(&q, methods[mi], &pp), KVQ_OK);
            assert_int_equal(kvq_trace_keys(t, 0, h, x), KVQ_OK);
            uint8_t *codes = malloc((size_t)n * q.bpv);
            q.m->encode(q.plan, x, (size_t)n, codes);   // 160 = 5 groups of 32
            q.m->decode(q.plan, codes, (size_t)n, y);
            for (int i = 0; i < n; i++) {
                double xx = 0, yy = 0, xy = 0, ee = 0;
                for (int j = 0; j < d; j++) {
                    double a = x[i * d + j], b = y[i * d + j];
                    xx += a * a, yy += b * b, xy += a * b, ee += (a - b) * (a - b);
                }
                rel += ee / xx, cos += xy / sqrt(xx * yy), nv++;
            }
            for (int qh = h * per_kv; qh < (h + 1) * per_kv; qh++) {
                assert_int_equal(kvq_trace_queries(t, 0, qh, qr), KVQ_OK);
                for (int i = 0; i < t->n_queries; i++) {
                    int p = t->query_positions[i];
                    if (p >= n) continue;
                    for (int k = 0; k <= p; k++) {
                        double s = 0, sh = 0;
                        for (int j = 0; j < d; j++) {
                            s += (double)qr[i * d + j] * x[k * d + j];
                            sh += (double)qr[i * d + j] * y[k * d + j];
                        }
                        e2 += (sh - s) * (sh - s), s2 += s * s, np++;
                    }
                }
            }
            free(codes);
            kvq_quantizer_free(&q);
        }
        const double ip = sqrt(e2 / s2);
        assert_int_equal(r->n_pairs, np);
        assert_true(fabs(r->keys.relative_mse - rel / nv) < 1e-9);
        assert_true(fabs(r->keys.cosine - cos / nv) < 1e-9);
        // score() vs q . decode differ by float rounding only
        if (fabs(r->ip_relative_error - ip) > 1e-3 * ip)
            fail_msg("%s: ip error %.6f, from decode %.6f", methods[mi], r->ip_relative_error, ip);
        assert_true(fabs(r->layers[0].ip_relative_error - r->ip_relative_error) < 1e-12);
        free(x), free(y), free(qr), free(r);
    }
}

// The default sampling: 64 evenly spaced query rows per query head, each
// against its causal prefix; the count is checked from the positions.
static void test_query_sampling(void **state)
{
    const kvq_trace *t = *state;
    kvq_config c;
    cfg_for(&c, "fp16", 16, 16);
    kvq_quantreport *r = run(t, &c, NULL);
    long want = 0;
    const int nq = t->n_queries, k = 64;
    for (int i = 0; i < k; i++) want += t->query_positions[((2L * i + 1) * nq) / (2L * k)] + 1;
    want *= (long)t->n_heads * t->n_layers;
    assert_int_equal(r->n_pairs, want);
    assert_true(r->ip_relative_error < 1e-3);   // fp16 keys: only rounding
    assert_true(r->keys.relative_mse < 1e-6);
    free(r);
}

// Above max_pairs the q . k error comes from a seeded sample of about
// max_pairs pairs: flagged, close to the exact figure, the same on every run
// and thread count; grouped methods (kivi) sample whole groups. Below it the
// figure is exact (the sample trace at the default options).
static void test_pair_sample(void **state)
{
    const kvq_trace *t = *state;
    const char *methods[] = {"turboquant_mse", "kivi"};
    const int bits[] = {3, 2};
    for (int mi = 0; mi < 2; mi++) {
        kvq_config c;
        cfg_for(&c, methods[mi], bits[mi], 16);
        bool mask[KVQ_MAX_LAYERS] = {false, true};
        kvq_quantreport_opts o;
        kvq_quantreport_opts_default(&o);
        assert_int_equal(o.max_pairs, KVQ_QR_MAX_PAIRS);
        o.max_tokens = 512;
        o.queries_per_head = 0;
        o.layer_mask = mask;
        kvq_quantreport *ex = run(t, &c, &o);   // 4 heads x 131,328 pairs < 2^20: exact
        assert_false(ex->pairs_sampled);
        assert_int_equal(ex->n_pairs, 4L * 512 * 513 / 2);
        o.max_pairs = 40000;
        kvq_threads_set(1);
        kvq_quantreport *s1 = run(t, &c, &o);
        kvq_threads_set(2);
        kvq_quantreport *s2 = run(t, &c, &o);
        kvq_threads_set(0);
        assert_true(s1->pairs_sampled);
        if (labs(s1->n_pairs - 40000) > 2000) fail_msg("%s: %ld sampled pairs, want about 40000", methods[mi], s1->n_pairs);
        const double rel = fabs(s1->ip_relative_error - ex->ip_relative_error) / ex->ip_relative_error;
        if (rel > 0.05)
            fail_msg("%s: sampled q.k error %.5f, exact %.5f", methods[mi], s1->ip_relative_error,
                     ex->ip_relative_error);
        assert_int_equal(s1->n_pairs, s2->n_pairs);
        assert_memory_equal(&s1->ip_relative_error, &s2->ip_relative_error, sizeof(double));
        assert_memory_equal(&s1->keys, &s2->keys, sizeof s1->keys);
        // the streams' figures do not depend on the sampling
        assert_memory_equal(&s1->keys.relative_mse, &ex->keys.relative_mse, sizeof(double));
        free(ex), free(s1), free(s2);
    }
    kvq_config c;
    cfg_for(&c, "q4_0", 4, 4);
    kvq_quantreport *r = run(t, &c, NULL);
    assert_false(r->pairs_sampled);
    free(r);
}

static void test_value_method_default(void **state)
{
    const kvq_trace *t = *state;
    kvq_config c;
    cfg_for(&c, "q4_0", 4, 4);
    c.value_method[0] = 0;
    kvq_quantreport *r = calloc(1, sizeof *r);
    kvq_status s = kvq_quantreport_run(t, &c, NULL, NULL, NULL, r);
    assert_int_equal(s, KVQ_OK);
    assert_string_equal(r->value_method, "turboquant_mse");
    assert_true(r->values.bits_per_coord > 4.0 && r->values.bits_per_coord < 4.6);
    assert_true(r->values.relative_mse < 0.02);
    free(r);
}

static void test_errors_leave_output(void **state)
{
    const kvq_trace *t = *state;
    kvq_quantreport *r = calloc(1, sizeof *r);
    memset(r, 0x5a, sizeof *r);
    kvq_config c;
    cfg_for(&c, "q8_0", 8, 16);
    strcpy(c.method, "nope");
    assert_int_equal(kvq_quantreport_run(t, &c, NULL, NULL, NULL, r), KVQ_ERR_UNKNOWN_METHOD);
    assert_non_null(strstr(kvq_last_error(), "unknown method 'nope'"));
    cfg_for(&c, "q4_0", 3, 16);
    assert_int_equal(kvq_quantreport_run(t, &c, NULL, NULL, NULL, r), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "bits"));
    cfg_for(&c, "q8_0", 8, 16);
    strcpy(c.value_method, "bogus");
    assert_int_equal(kvq_quantreport_run(t, &c, NULL, NULL, NULL, r), KVQ_ERR_UNKNOWN_METHOD);
    assert_non_null(strstr(kvq_last_error(), "value_method"));
    cfg_for(&c, "spectral", 3, 16);   // needs calibration artifacts
    assert_int_not_equal(kvq_quantreport_run(t, &c, NULL, NULL, NULL, r), KVQ_OK);
    assert_null(strchr(kvq_last_error(), '\n'));
    const unsigned char *p = (const unsigned char *)r;
    for (size_t i = 0; i < sizeof *r; i++) assert_int_equal(p[i], 0x5a);
    free(r);
}

typedef struct {
    int calls;
    double last;
    int cancel_at;
} prog_state;

static bool on_progress(double f, const char *stage, double eta, void *user)
{
    (void)eta;
    prog_state *ps = user;
    assert_true(f > ps->last && f <= 1.0);
    assert_non_null(strstr(stage, "layer"));
    ps->last = f;
    return ++ps->calls == ps->cancel_at;
}

static void test_progress_cancel(void **state)
{
    const kvq_trace *t = *state;
    kvq_config c;
    cfg_for(&c, "q4_0", 4, 16);
    kvq_quantreport_opts o;
    kvq_quantreport_opts_default(&o);
    o.max_tokens = 256;
    prog_state ps = {0, 0.0, 0};
    kvq_progress p = {.fn = on_progress, .user = &ps};
    kvq_quantreport *r = calloc(1, sizeof *r);
    assert_int_equal(kvq_quantreport_run(t, &c, NULL, &o, &p, r), KVQ_OK);
    assert_int_equal(ps.calls, t->n_layers);
    assert_true(fabs(ps.last - 1.0) < 1e-12);
    memset(r, 0x33, sizeof *r);
    ps = (prog_state){0, 0.0, 2};
    assert_int_equal(kvq_quantreport_run(t, &c, NULL, &o, &p, r), KVQ_ERR_CANCELLED);
    assert_int_equal(ps.calls, 2);
    assert_int_equal(((unsigned char *)r)[0], 0x33);
    assert_int_equal(r->n_layers, 0x33333333);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bits_held),          cmocka_unit_test(test_metrics_independent),
        cmocka_unit_test(test_query_sampling),     cmocka_unit_test(test_value_method_default),
        cmocka_unit_test(test_errors_leave_output), cmocka_unit_test(test_progress_cancel),
        cmocka_unit_test(test_pair_sample),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
