// test_observe.c — observers and the replay loop: the rolling outlier rule,
// distortion on exact and lossy caches and its sampling, key-norm outliers
// against an independent count, latency call counting with warmup, the
// attention metrics on known inputs, reset, and replay of a sample trace
// (fp16 exact; step-wise equals run; cancel and restart).
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
#include "observe.h"
#include "pool.h"
#include "replay.h"
#include "rng.h"
#include "trace.h"

#define D 64
#define KV 2
#define TRACE "sample_data/traces/code-1k.safetensors"

static void synth(uint64_t seed, int n, float *K, float *V)
{
    kvq_rng r;
    kvq_rng_seed(&r, seed);
    kvq_rng_gauss_fill(&r, K, (size_t)KV * n * D);
    kvq_rng_gauss_fill(&r, V, (size_t)KV * n * D);
}

static void test_rolling_rule(void **st)
{
    (void)st;
    float ring[4];
    kvq_rolling r;
    kvq_rolling_init(&r, ring, 4);
    assert_false(kvq_rolling_push(&r, 100.0f, 3.0));   // first: nothing to compare with
    assert_false(kvq_rolling_push(&r, 1.0f, 3.0));
    for (int i = 0; i < 4; i++) kvq_rolling_push(&r, 1.0f, 3.0);   // window now all 1s
    assert_false(kvq_rolling_push(&r, 2.9f, 3.0));
    // window {1, 1, 1, 2.9}: mean 1.475, threshold 4.425
    assert_false(kvq_rolling_push(&r, 4.4f, 3.0));
    kvq_rolling_init(&r, ring, 4);
    for (int i = 0; i < 4; i++) kvq_rolling_push(&r, 1.0f, 3.0);
    assert_true(kvq_rolling_push(&r, 3.01f, 3.0));
}

static kvq_observers *make_obs(unsigned which, double sample_rate, int layers)
{
    kvq_observers_opts o;
    kvq_observers_opts_default(&o);
    o.which = which;
    o.sample_rate = sample_rate;
    kvq_observers *obs;
    assert_int_equal(kvq_observers_new(&o, layers, KV, D, &obs), KVQ_OK);
    return obs;
}

static kvq_cache *make_cache(const char *method, int bits, int value_bits, int layer, int layers)
{
    kvq_config c;
    kvq_config_default(&c);
    snprintf(c.method, sizeof c.method, "%s", method);
    c.bits = bits;
    c.value_bits = value_bits;
    kvq_cache *k;
    assert_int_equal(kvq_cache_new(&c, NULL, layer, layers, KV, D, &k), KVQ_OK);
    return k;
}

static void test_distortion(void **st)
{
    (void)st;
    const int n = 256;
    float *K = malloc(sizeof(float) * KV * n * D), *V = malloc(sizeof(float) * KV * n * D);
    synth(1, n, K, V);
    kvq_observers *obs = make_obs(KVQ_OBS_DISTORTION, 1.0, 2);
    kvq_cache *exact = make_cache("fp16", 16, 16, 0, 2), *lossy = make_cache("turboquant_mse", 2, 2, 1, 2);
    kvq_cache_attach(exact, obs);
    kvq_cache_attach(lossy, obs);
    assert_int_equal(kvq_cache_append(exact, K, V, n), KVQ_OK);
    assert_int_equal(kvq_cache_append(lossy, K, V, n), KVQ_OK);
    kvq_report r;
    kvq_observers_report(obs, &r);
    const kvq_distortion_report *d = &r.distortion;
    printf("  distortion: fp16 cos %.6f, tq_mse 2-bit cos %.4f, min %.4f, rel mse %.4f, ip err %.4f\n",
           d->per_layer_cosine_similarity[0], d->per_layer_cosine_similarity[1], d->min_cosine_similarity,
           d->mean_relative_mse, d->mean_ip_error);
    assert_int_equal(d->total_tokens_measured, 2 * KV * n);
    assert_true(d->per_layer_cosine_similarity[0] > 0.99999);
    assert_true(d->per_layer_cosine_similarity[1] > 0.85 && d->per_layer_cosine_similarity[1] < 0.99);
    assert_int_equal(d->worst_layer, 1);
    assert_true(d->min_cosine_similarity <= d->per_layer_cosine_similarity[1]);
    assert_true(d->mean_relative_mse > 0.01 && d->mean_relative_mse < 0.3);
    assert_true(d->mean_ip_error > 0 && d->mean_ip_error < 0.5);
    // sample_rate 0.25 measures exactly a quarter, spread evenly
    kvq_observers *q = make_obs(KVQ_OBS_DISTORTION, 0.25, 2);
    kvq_cache_reset(lossy);
    kvq_cache_attach(lossy, q);
    assert_int_equal(kvq_cache_append(lossy, K, V, n), KVQ_OK);
    kvq_observers_report(q, &r);
    assert_int_equal(r.distortion.total_tokens_measured, KV * n / 4);
    assert_true(isnan(r.distortion.per_layer_cosine_similarity[0]));
    // reset clears; detached caches report nothing more
    kvq_observers_reset(q, KVQ_OBS_ALL);
    kvq_cache_attach(lossy, NULL);
    kvq_cache_reset(lossy);
    assert_int_equal(kvq_cache_append(lossy, K, V, n), KVQ_OK);
    kvq_observers_report(q, &r);
    assert_int_equal(r.distortion.total_tokens_measured, 0);
    assert_true(isnan(r.distortion.mean_cosine_similarity));
    kvq_cache_free(exact);
    kvq_cache_free(lossy);
    kvq_observers_free(obs);
    kvq_observers_free(q);
    free(K);
    free(V);
}

static void test_key_norm_and_latency(void **st)
{
    (void)st;
    const int n = 300;
    float *K = malloc(sizeof(float) * KV * n * D), *V = malloc(sizeof(float) * KV * n * D);
    synth(2, n, K, V);
    int injected = 0;
    for (int i = 20; i < n; i += 37, injected++)
        for (int h = 0; h < KV; h++)
            for (int t = 0; t < D; t++) K[((size_t)h * n + i) * D + t] *= 5.0f;
    // independent: norms, their mean/max, and the rule over a window of 128
    double sum = 0, mx = 0;
    long expect = 0;
    double *nrm = malloc(sizeof(double) * n);
    for (int h = 0; h < KV; h++) {
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int t = 0; t < D; t++) s += (double)K[((size_t)h * n + i) * D + t] * K[((size_t)h * n + i) * D + t];
            nrm[i] = sqrt(s);
            sum += nrm[i];
            if (nrm[i] > mx) mx = nrm[i];
            double m = 0;
            int lo = i > 128 ? i - 128 : 0;
            for (int j = lo; j < i; j++) m += nrm[j] / (i - lo);
            expect += i > 0 && nrm[i] > 3.0 * m;
        }
    }
    assert_int_equal(expect, KV * injected);
    kvq_observers *obs = make_obs(KVQ_OBS_KEY_NORM | KVQ_OBS_LATENCY, 1.0, 1);
    kvq_cache *c = make_cache("q8_0", 8, 4, 0, 1);
    kvq_cache_attach(c, obs);
    float *k1 = malloc(sizeof(float) * KV * D), *v1 = malloc(sizeof(float) * KV * D);
    float q[2 * KV * D], out[2 * KV * D];
    memset(q, 0, sizeof q);
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < KV; h++) {
            memcpy(k1 + h * D, K + ((size_t)h * n + i) * D, sizeof(float) * D);
            memcpy(v1 + h * D, V + ((size_t)h * n + i) * D, sizeof(float) * D);
        }
        assert_int_equal(kvq_cache_append(c, k1, v1, 1), KVQ_OK);
        if (i < 10) {
            int32_t p = i;
            assert_int_equal(kvq_cache_attend(c, q, 2 * KV, 1, &p, out), KVQ_OK);
        }
    }
    kvq_report r;
    kvq_observers_report(obs, &r);
    const kvq_key_norm_report *kn = &r.key_norm;
    assert_int_equal(kn->outlier_count, expect);
    assert_int_equal(kn->per_layer_outlier_count[0], expect);
    assert_int_equal(kn->total_keys, KV * n);
    assert_true(fabs(kn->mean_key_norm - sum / (KV * n)) < 1e-6 * kn->mean_key_norm);
    assert_true(fabs(kn->max_key_norm - mx) < 1e-9 * mx);
    assert_true(fabs(kn->outlier_fraction - (double)expect / (KV * n)) < 1e-12);
    assert_true(kn->mean_outlier_norm > 3.0 * kn->mean_key_norm / 1.5);
    assert_true(kn->std_key_norm > 0);
    const kvq_latency_report *lt = &r.latency;
    assert_int_equal(lt->num_encode_calls, n - 2);   // warmup_calls = 2
    assert_int_equal(lt->num_decode_calls, 10 - 2);
    assert_true(lt->total_encode_ms > 0 && lt->mean_encode_ms > 0);
    assert_true(lt->p99_encode_ms > 0);
    assert_int_equal(lt->slowest_layer, 0);
    assert_true(fabs(lt->per_layer_encode_ms[0] - lt->total_encode_ms) < 1e-9);
    kvq_cache_free(c);
    kvq_observers_free(obs);
    free(nrm);
    free(k1);
    free(v1);
    free(K);
    free(V);
}

static void test_attention_metrics(void **st)
{
    (void)st;
    kvq_observers *obs = make_obs(KVQ_OBS_ATTENTION, 1.0, 2);
    float o1[D], o2[D], l1[20], l2[20];
    for (int t = 0; t < D; t++) o1[t] = o2[t] = (float)(t % 5) - 2.0f;
    for (int i = 0; i < 20; i++) l1[i] = l2[i] = (float)i * 0.3f;
    kvq_observe_attention(obs, 0, o1, o2, l1, l2, 20);
    kvq_report r;
    kvq_observers_report(obs, &r);
    assert_true(r.attention.mean_output_rel_error == 0);
    assert_true(fabs(r.attention.mean_kl_divergence) < 1e-12);
    assert_true(r.attention.topk_recall == 1.0);
    // Two positions, p = (1/2, 1/2), q = softmax(0, log 3) = (1/4, 3/4):
    // KL = 1/2 ln 2 + 1/2 ln(2/3). Output off by 10%.
    float a[2] = {0, 0}, b[2] = {0, logf(3.0f)};
    for (int t = 0; t < D; t++) o2[t] = 1.1f * o1[t];
    kvq_observe_attention(obs, 1, o1, o2, a, b, 2);
    // Top-8 of 20 where the estimate reverses the order: overlap 0.
    for (int i = 0; i < 20; i++) l2[i] = -l1[i];
    kvq_observe_attention(obs, 0, o1, o1, l1, l2, 20);
    kvq_observers_report(obs, &r);
    double kl = (0.5 * log(2.0) + 0.5 * log(2.0 / 3.0)) / log(2.0);   // bits
    assert_true(fabs(r.attention.per_layer_kl_divergence[1] - kl) < 1e-6);
    assert_true(fabs(r.attention.per_layer_output_rel_error[1] - 0.1) < 1e-6);
    assert_true(r.attention.per_layer_topk_recall[1] == 1.0);
    assert_true(fabs(r.attention.per_layer_topk_recall[0] - 0.5) < 1e-12);
    assert_int_equal(r.attention.num_queries, 3);
    assert_true(fabs(r.attention.topk_recall - 2.0 / 3.0) < 1e-12);
    assert_true(fabs(r.attention.mean_output_rel_error - 0.1 / 3) < 1e-6);
    kvq_observers_reset(obs, KVQ_OBS_ATTENTION);
    kvq_observers_report(obs, &r);
    assert_int_equal(r.attention.num_queries, 0);
    kvq_observers_free(obs);
}

static bool cancel_at_once(double f, const char *stage, double eta, void *user)
{
    (void)f;
    (void)stage;
    (void)eta;
    return ++*(int *)user > 3;
}

static void test_replay(void **st)
{
    (void)st;
    kvq_trace *t;
    assert_int_equal(kvq_trace_open(TRACE, NULL, &t), KVQ_OK);
    kvq_replay_opts o;
    kvq_replay_opts_default(&o);
    o.seq_len = 192;
    kvq_config c;
    kvq_config_default(&c);
    strcpy(c.method, "fp16");
    c.bits = 16;
    c.value_bits = 16;
    kvq_replay *r;
    assert_int_equal(kvq_replay_new(t, &c, NULL, &o, &r), KVQ_OK);
    assert_int_equal(kvq_replay_run(r, NULL), KVQ_OK);
    assert_true(kvq_replay_done(r));
    kvq_replay_snapshot s;
    kvq_replay_snapshot_get(r, &s);
    const kvq_report *rp = &s.report;
    printf("  replay fp16: attn err %.2e, KL %.2e, recall %.3f, compression %.2f\n",
           rp->attention.mean_output_rel_error, rp->attention.mean_kl_divergence, rp->attention.topk_recall,
           rp->memory.compression_ratio);
    assert_int_equal(rp->attention.num_queries, (long)(192 - 96) * t->n_layers * t->n_heads);
    assert_true(rp->attention.mean_output_rel_error < 1e-3);
    assert_true(rp->attention.mean_kl_divergence < 1e-5);
    assert_true(rp->attention.topk_recall > 0.99);
    assert_true(rp->distortion.mean_cosine_similarity > 0.99999);
    assert_int_equal(rp->memory.total_tokens, 192);
    assert_true(s.bytes == kvq_cache_set_bytes(kvq_replay_caches(r)));
    assert_true(fabs(s.key_bpc - 16) < 1e-9);
    kvq_replay_free(r);

    // Lossy: step-wise equals a run (everything but latency), cancel, restart.
    strcpy(c.method, "turboquant_mse");
    c.bits = 3;
    c.value_bits = 2;
    kvq_replay *a, *b;
    assert_int_equal(kvq_replay_new(t, &c, NULL, &o, &a), KVQ_OK);
    assert_int_equal(kvq_replay_new(t, &c, NULL, &o, &b), KVQ_OK);
    assert_int_equal(kvq_replay_run(a, NULL), KVQ_OK);
    while (!kvq_replay_done(b)) assert_int_equal(kvq_replay_step(b, 7), KVQ_OK);
    kvq_replay_snapshot sa, sb;
    kvq_replay_snapshot_get(a, &sa);
    kvq_replay_snapshot_get(b, &sb);
    printf("  replay tq_mse k3/v2: attn err %.4f, KL %.4f, recall %.3f, key cos %.4f, compression %.2f\n",
           sa.report.attention.mean_output_rel_error, sa.report.attention.mean_kl_divergence,
           sa.report.attention.topk_recall, sa.report.distortion.mean_cosine_similarity,
           sa.report.memory.compression_ratio);
    assert_memory_equal(&sa.report.attention, &sb.report.attention, sizeof sa.report.attention);
    assert_memory_equal(&sa.report.distortion, &sb.report.distortion, sizeof sa.report.distortion);
    assert_memory_equal(&sa.report.memory, &sb.report.memory, sizeof sa.report.memory);
    assert_true(sa.report.attention.mean_output_rel_error > 1e-3 && sa.report.attention.mean_output_rel_error < 0.5);
    assert_true(sa.report.attention.topk_recall > 0.3 && sa.report.attention.topk_recall < 1.0);
    int calls = 0;
    kvq_progress p = {.fn = cancel_at_once, .user = &calls};
    kvq_replay_restart(b, 0);
    assert_int_equal(kvq_replay_pos(b), 0);
    assert_int_equal(kvq_replay_run(b, &p), KVQ_ERR_CANCELLED);
    assert_false(kvq_replay_done(b));
    kvq_replay_restart(b, KVQ_OBS_LATENCY);
    assert_int_equal(kvq_replay_run(b, NULL), KVQ_OK);
    kvq_replay_snapshot_get(b, &sb);
    assert_memory_equal(&sa.report.attention, &sb.report.attention, sizeof sa.report.attention);
    kvq_replay_free(a);
    kvq_replay_free(b);

    // A seeded sample of the exact comparison: every query still attended,
    // about attn_pairs / total of the groups compared, the same groups for any
    // step size and thread count, figures near the full ones.
    kvq_replay_opts os = o;
    os.attn_pairs = sa.attn_pairs_total / 4;
    assert_true(sa.attn_rate == 1.0 && sa.attn_pairs_total > 0);
    assert_int_equal(sa.report.attention.num_queries, sa.attn_queries);
    assert_int_equal(kvq_replay_new(t, &c, NULL, &os, &a), KVQ_OK);
    assert_int_equal(kvq_replay_new(t, &c, NULL, &os, &b), KVQ_OK);
    assert_int_equal(kvq_replay_run(a, NULL), KVQ_OK);
    kvq_threads_set(2);
    while (!kvq_replay_done(b)) assert_int_equal(kvq_replay_step(b, 5), KVQ_OK);
    kvq_threads_set(0);
    kvq_replay_snapshot ss, sb2;
    kvq_replay_snapshot_get(a, &ss);
    kvq_replay_snapshot_get(b, &sb2);
    long nq = ss.report.attention.num_queries, all = ss.attn_queries;
    printf("  replay sampled at rate %.3f: %ld of %ld queries, attn err %.4f (all: %.4f), KL %.4f (all: %.4f)\n",
           ss.attn_rate, nq, all, ss.report.attention.mean_output_rel_error,
           sa.report.attention.mean_output_rel_error, ss.report.attention.mean_kl_divergence,
           sa.report.attention.mean_kl_divergence);
    assert_true(fabs(ss.attn_rate - 0.25) < 1e-3);
    assert_int_equal(all, sa.attn_queries);
    assert_int_equal(nq % (t->n_heads / t->n_kv_heads), 0);
    assert_true(nq > all / 8 && nq < all / 2);
    assert_memory_equal(&ss.report.attention, &sb2.report.attention, sizeof ss.report.attention);
    assert_true(fabs(ss.report.attention.mean_output_rel_error / sa.report.attention.mean_output_rel_error - 1) < 0.05);
    assert_true(fabs(ss.report.attention.topk_recall - sa.report.attention.topk_recall) < 0.1);
    assert_memory_equal(&ss.report.distortion, &sa.report.distortion, sizeof ss.report.distortion);
    kvq_replay_free(a);
    kvq_replay_free(b);
    os.attn_pairs = -1;   // every query, however large
    assert_int_equal(kvq_replay_new(t, &c, NULL, &os, &a), KVQ_OK);
    assert_int_equal(kvq_replay_run(a, NULL), KVQ_OK);
    kvq_replay_snapshot_get(a, &ss);
    assert_true(ss.attn_rate == 1.0);
    assert_memory_equal(&ss.report.attention, &sa.report.attention, sizeof ss.report.attention);
    kvq_replay_free(a);
    // bad seq_len
    o.seq_len = t->n_tokens + 1;
    assert_int_equal(kvq_replay_new(t, &c, NULL, &o, &a), KVQ_ERR_ARG);
    assert_non_null(strstr(kvq_last_error(), "seq_len"));
    // the replay streams from its own reference: the caller's handle may go first
    o.seq_len = 160;
    assert_int_equal(kvq_replay_new(t, &c, NULL, &o, &a), KVQ_OK);
    kvq_trace_free(t);
    assert_int_equal(kvq_replay_run(a, NULL), KVQ_OK);
    kvq_replay_snapshot_get(a, &sa);
    assert_int_equal(sa.report.memory.total_tokens, 160);
    kvq_replay_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rolling_rule),
        cmocka_unit_test(test_distortion),
        cmocka_unit_test(test_key_norm_and_latency),
        cmocka_unit_test(test_attention_metrics),
        cmocka_unit_test(test_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
