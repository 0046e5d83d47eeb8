// test_commvq.c — CommVQ: EM on sample-trace keys lowers the reconstruction
// error every round; training is deterministic; the method's scalar encode
// reaches the training error; score = q . decode; scores commute with RoPE
// (numerically, at several positions); record size and error messages.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "artifacts.h"
#include "calib/train_commvq.h"
#include "methods/commvq.h"
#include "trace.h"
#include "test_util.h"

static kvq_config cfg;
static float *keys, *queries, *heldout;   // code-1k l1 h0 keys/queries, prose-1k l1 h0 keys
static int D, N;
static kvq_artifacts *art;
static kvq_commvq_train_log tlog;

static int setup(void **state)
{
    (void)state;
    kvq_trace *t;
    if (kvq_trace_open("sample_data/traces/code-1k.safetensors", NULL, &t)) {
        fprintf(stderr, "%s\n", kvq_last_error());
        return -1;
    }
    D = t->head_dim, N = t->n_tokens;
    keys = malloc(sizeof(float) * (size_t)N * D);
    queries = malloc(sizeof(float) * (size_t)N * D);
    if (kvq_trace_keys(t, 1, 0, keys) || kvq_trace_queries(t, 1, 0, queries)) return -1;
    kvq_trace_free(t);
    if (kvq_trace_open("sample_data/traces/prose-1k.safetensors", NULL, &t)) return -1;
    heldout = malloc(sizeof(float) * (size_t)N * D);
    if (t->n_tokens != N || t->head_dim != D || kvq_trace_keys(t, 1, 0, heldout)) return -1;
    kvq_trace_free(t);
    kvq_artifacts_new(&art);
    kvq_train_commvq_opts o = {.bits = 1, .em_iters = 6, .seed = 3};   // C = 4 (default)
    if (kvq_train_commvq_stream(keys, (size_t)N, D, 1, 0, &o, art, &tlog)) {
        fprintf(stderr, "%s\n", kvq_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(keys), free(queries), free(heldout);
    kvq_artifacts_free(art);
    return 0;
}

static kvq_status make(kvq_quantizer *q, int bits, const kvq_artifacts *a)
{
    kvq_config_default(&cfg);
    kvq_plan_params pp = {.bits = bits, .head_dim = D, .layer = 1, .kv_head = 0, .cfg = &cfg,
                          .art = a};
    return kvq_quantizer_init(q, "commvq", &pp);
}

static void test_em_decreases_error(void **state)
{
    (void)state;
    assert_int_equal(tlog.n, 7);
    for (int i = 0; i < tlog.n; i++) print_message("commvq EM round %d: error %.5f\n", i, tlog.err[i]);
    for (int i = 1; i < tlog.n; i++) assert_true(tlog.err[i] <= tlog.err[i - 1]);
    assert_true(tlog.err[tlog.n - 1] < 0.95 * tlog.err[0]);
    // same seed, same codebooks
    kvq_artifacts *b;
    kvq_artifacts_new(&b);
    kvq_train_commvq_opts o = {.bits = 1, .num_centroids = 4, .em_iters = 6, .seed = 3};
    assert_int_equal(kvq_train_commvq_stream(keys, (size_t)N, D, 1, 0, &o, b, NULL), KVQ_OK);
    int64_t shape[3] = {64, 4, D};
    const float *wa, *wb;
    assert_int_equal(kvq_artifacts_require(art, "commvq.codebooks.l1.h0", 3, shape, &wa), KVQ_OK);
    assert_int_equal(kvq_artifacts_require(b, "commvq.codebooks.l1.h0", 3, shape, &wb), KVQ_OK);
    assert_memory_equal(wa, wb, sizeof(float) * 64 * 4 * (size_t)D);
    kvq_artifacts_free(b);
}

static void test_encode_decode_score(void **state)
{
    (void)state;
    kvq_quantizer q;
    if (make(&q, 1, art)) fail_msg("%s", kvq_last_error());
    assert_int_equal(q.bpv, (size_t)D / 8);   // 64 codes x 2 bits: exactly 1 bit/coord
    uint8_t *codes = malloc(q.bpv * (size_t)N + 8);
    float *dec = malloc(sizeof(float) * (size_t)N * D);
    memset(codes, 0x77, q.bpv * (size_t)N + 8);
    q.m->encode(q.plan, keys, (size_t)N, codes);
    for (int i = 0; i < 8; i++) assert_int_equal(codes[q.bpv * (size_t)N + i], 0x77);
    q.m->decode(q.plan, codes, (size_t)N, dec);
    double e = 0, xx = 0, rel = 0;
    for (int i = 0; i < N; i++) {
        double ei = 0, xi = tu_dot(keys + (size_t)i * D, keys + (size_t)i * D, D);
        for (int j = 0; j < D; j++) ei += pow(dec[(size_t)i * D + j] - keys[(size_t)i * D + j], 2);
        e += ei, xx += xi, rel += ei / xi;
    }
    print_message("commvq 1 bit on code-1k l1 h0: error %.5f (training %.5f), relative MSE %.5f\n",
                  e / xx, tlog.err[tlog.n - 1], rel / N);
    // greedy + 1 sweep from scratch vs EM codes refined over rounds: close
    assert_true(e / xx < 1.15 * tlog.err[tlog.n - 1]);
    // held out: another trace's keys, same layer and head
    q.m->encode(q.plan, heldout, (size_t)N, codes);
    q.m->decode(q.plan, codes, (size_t)N, dec);
    double hrel = 0;
    for (int i = 0; i < N; i++) {
        double ei = 0, xi = tu_dot(heldout + (size_t)i * D, heldout + (size_t)i * D, D);
        for (int j = 0; j < D; j++) ei += pow(dec[(size_t)i * D + j] - heldout[(size_t)i * D + j], 2);
        hrel += ei / xi;
    }
    print_message("commvq 1 bit, trained on code-1k, on prose-1k l1 h0: relative MSE %.5f\n", hrel / N);
    assert_true(hrel / N < 0.12);
    q.m->encode(q.plan, keys, (size_t)N, codes);
    q.m->decode(q.plan, codes, (size_t)N, dec);
    void *qs = malloc(q.qbytes);
    float *sc = malloc(sizeof(float) * (size_t)N);
    q.m->prepare_query(q.plan, queries + 100 * (size_t)D, qs);
    q.m->score(q.plan, qs, codes, (size_t)N, sc);
    for (int i = 0; i < N; i++) {
        double ref = tu_dot(queries + 100 * (size_t)D, dec + (size_t)i * D, D);
        assert_true(fabs(ref - sc[i]) < 1e-3 * (1 + fabs(ref)));
    }
    kvq_quantizer_free(&q);
    free(codes), free(dec), free(qs), free(sc);
}

static void test_rope_commutes(void **state)
{
    (void)state;
    kvq_quantizer q, qr;
    if (make(&q, 1, art)) fail_msg("%s", kvq_last_error());
    enum { M = 64 };
    uint8_t *codes = malloc(q.bpv * M);
    q.m->encode(q.plan, keys, M, codes);
    float *dec = malloc(sizeof(float) * M * D), *decr = malloc(sizeof(float) * M * D);
    q.m->decode(q.plan, codes, M, dec);
    void *qs = malloc(q.qbytes);
    float sc[M], qv[256], rk[256];
    int64_t shape[3] = {64, 4, D};
    const float *W;
    assert_int_equal(kvq_artifacts_require(art, "commvq.codebooks.l1.h0", 3, shape, &W), KVQ_OK);
    float *Wr = malloc(sizeof(float) * 64 * 4 * (size_t)D);
    double pos[3] = {1, 37, 900};
    for (int p = 0; p < 3; p++) {
        // (a) score of the inversely rotated query from the stored codes equals
        //     q . RoPE_t(k_hat): the position never touches the codes
        memcpy(qv, queries + 5 * (size_t)D, sizeof(float) * (size_t)D);
        kvq_commvq_rope(qv, D, -pos[p], 10000.0);
        q.m->prepare_query(q.plan, qv, qs);
        q.m->score(q.plan, qs, codes, M, sc);
        for (int i = 0; i < M; i++) {
            memcpy(rk, dec + (size_t)i * D, sizeof(float) * (size_t)D);
            kvq_commvq_rope(rk, D, pos[p], 10000.0);
            double ref = tu_dot(queries + 5 * (size_t)D, rk, D);
            assert_true(fabs(ref - sc[i]) < 2e-3 * (1 + fabs(ref)));
        }
        // (b) the 2x2 blocks commute with RoPE: decoding the same codes with
        //     every codeword rotated gives the rotated key
        memcpy(Wr, W, sizeof(float) * 64 * 4 * (size_t)D);
        for (int c = 0; c < 64 * 4; c++) kvq_commvq_rope(Wr + (size_t)c * D, D, pos[p], 10000.0);
        kvq_artifacts *ar;
        kvq_artifacts_new(&ar);
        assert_int_equal(kvq_artifacts_put(ar, "commvq.codebooks.l1.h0", Wr, 3, shape), KVQ_OK);
        if (make(&qr, 1, ar)) fail_msg("%s", kvq_last_error());
        qr.m->decode(qr.plan, codes, M, decr);
        for (int i = 0; i < M; i++) {
            memcpy(rk, dec + (size_t)i * D, sizeof(float) * (size_t)D);
            kvq_commvq_rope(rk, D, pos[p], 10000.0);
            for (int j = 0; j < D; j++)
                assert_true(fabs(rk[j] - decr[(size_t)i * D + j]) < 1e-4 * (1 + fabs(rk[j])));
        }
        kvq_quantizer_free(&qr);
        kvq_artifacts_free(ar);
    }
    kvq_quantizer_free(&q);
    free(codes), free(dec), free(decr), free(qs), free(Wr);
}

static void test_errors(void **state)
{
    (void)state;
    kvq_quantizer q;
    assert_int_equal(make(&q, 2, NULL), KVQ_ERR_NEEDS_CALIBRATION);
    assert_non_null(strstr(kvq_last_error(), "commvq.codebooks.l1.h0"));
    assert_non_null(strstr(kvq_last_error(), "precompute --method commvq"));
    assert_int_equal(make(&q, 2, art), KVQ_ERR_SHAPE);   // trained for 1 bit: R = 16, not 32
    int R, lc;
    assert_int_equal(kvq_commvq_shape(128, 1, 128, &R, &lc), KVQ_ERR_ARG);   // 128 % 7
    assert_non_null(strstr(kvq_last_error(), "log2(num_centroids)"));
    assert_int_equal(kvq_commvq_shape(128, 3, 100, &R, &lc), KVQ_ERR_ARG);
    assert_int_equal(kvq_commvq_shape(128, 3, 16, &R, &lc), KVQ_OK);
    assert_int_equal(R, 96);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_em_decreases_error),
        cmocka_unit_test(test_encode_decode_score),
        cmocka_unit_test(test_rope_commutes),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
