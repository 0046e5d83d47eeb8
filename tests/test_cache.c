// test_cache.c — the compressed KV cache: fused vs reference attention for
// every method that links, fp16 against attention computed straight from a
// sample trace, byte accounting against a counting allocator, the sliding
// window (flat memory, attention over sinks + last w), compression of
// turboquant_mse 3-bit keys with 2-bit values, outlier tokens, protected
// layers, per-layer bits, reset, and argument errors.
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
#include "cache_impl.h"
#include "observe.h"
#include "rng.h"
#include "trace.h"

#define D 128
#define KV 2
#define NH 4
#define TRACE "sample_data/traces/code-1k.safetensors"

// Keys with uneven channel scales (as real keys have), Gaussian values:
// (KV, n, D) each.
static void synth(uint64_t seed, int n, float *K, float *V)
{
    kvq_rng r;
    kvq_rng_seed(&r, seed);
    for (int h = 0; h < KV; h++)
        for (int i = 0; i < n; i++)
            for (int t = 0; t < D; t++) {
                float sc = t % 16 == 3 ? 6.0f : 1.0f;
                K[((size_t)h * n + i) * D + t] = sc * (float)kvq_rng_gauss(&r);
                V[((size_t)h * n + i) * D + t] = (float)kvq_rng_gauss(&r);
            }
}

// Rows [p0, p0+m) of a (KV, n, D) array as a (KV, m, D) chunk.
static void chunk(const float *X, int n, int p0, int m, float *out)
{
    for (int h = 0; h < KV; h++)
        memcpy(out + (size_t)h * m * D, X + ((size_t)h * n + p0) * D, sizeof(float) * (size_t)m * D);
}

static kvq_status append_range(kvq_cache *c, const float *K, const float *V, int n, int p0, int m)
{
    float *k = malloc(sizeof(float) * KV * (size_t)m * D), *v = malloc(sizeof(float) * KV * (size_t)m * D);
    chunk(K, n, p0, m, k);
    chunk(V, n, p0, m, v);
    kvq_status st = kvq_cache_append(c, k, v, m);
    free(k);
    free(v);
    return st;
}

static double rel_err(const float *a, const float *b, int d)
{
    double e = 0, n = 0;
    for (int t = 0; t < d; t++) {
        e += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
        n += (double)b[t] * b[t];
    }
    return sqrt(e) / (sqrt(n) > 1e-12 ? sqrt(n) : 1e-12);
}

// Exact attention (double) of query q at position p over positions in
// `keep` (NULL = all) of kv head h of (KV, n, D) arrays.
static void direct(const float *q, const float *K, const float *V, int n, int h, int p,
                   const bool *keep, float *out)
{
    double m = -INFINITY, l = 0, acc[D] = {0};
    double *s = malloc(sizeof(double) * (size_t)(p + 1));
    for (int i = 0; i <= p && i < n; i++) {
        const float *k = K + ((size_t)h * n + i) * D;
        double x = 0;
        for (int t = 0; t < D; t++) x += (double)q[t] * k[t];
        s[i] = x / sqrt((double)D);
        if ((!keep || keep[i]) && s[i] > m) m = s[i];
    }
    for (int i = 0; i <= p && i < n; i++) {
        if (keep && !keep[i]) continue;
        double w = exp(s[i] - m);
        l += w;
        for (int t = 0; t < D; t++) acc[t] += w * V[((size_t)h * n + i) * D + t];
    }
    for (int t = 0; t < D; t++) out[t] = (float)(acc[t] / l);
    free(s);
}

static void base_cfg(kvq_config *c, const char *method, int bits)
{
    kvq_config_default(c);
    snprintf(c->method, sizeof c->method, "%s", method);
    c->bits = bits;
}

static int clamp_bits(const kvq_method *m, int b)
{
    return b < m->min_bits ? m->min_bits : b > m->max_bits ? m->max_bits : b;
}

// ---- fused vs reference for every method ----
static int check_fused(const kvq_config *cfg, const float *K, const float *V, const float *Q, int n,
                       double *worst)
{
    kvq_config cf = *cfg, cr = *cfg;
    cf.use_fused_sdpa = true;
    cr.use_fused_sdpa = false;
    kvq_cache *a = NULL, *b = NULL;
    kvq_status st = kvq_cache_new(&cf, NULL, 1, 3, KV, D, &a);
    if (st) return (int)st;
    assert_int_equal(kvq_cache_new(&cr, NULL, 1, 3, KV, D, &b), KVQ_OK);
    float *oa = malloc(sizeof(float) * NH * 3 * D), *ob = malloc(sizeof(float) * NH * 3 * D);
    float *q = malloc(sizeof(float) * NH * 3 * D);
    int pre = n / 2;
    assert_int_equal(append_range(a, K, V, n, 0, pre), KVQ_OK);
    assert_int_equal(append_range(b, K, V, n, 0, pre), KVQ_OK);
    for (int p = pre; p <= n; p++) {
        if (p == pre || p % 23 == 0 || p == n) {
            int32_t pos[3] = {p - 1, p / 2, 5};
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < 3; i++) memcpy(q + ((size_t)h * 3 + i) * D, Q + ((size_t)h * n + pos[i]) * D, sizeof(float) * D);
            assert_int_equal(kvq_cache_attend(a, q, NH, 3, pos, oa), KVQ_OK);
            assert_int_equal(kvq_cache_attend(b, q, NH, 3, pos, ob), KVQ_OK);
            for (int r = 0; r < NH * 3; r++) {
                double e = rel_err(oa + (size_t)r * D, ob + (size_t)r * D, D);
                if (e > *worst) *worst = e;
            }
        }
        if (p < n) {
            assert_int_equal(append_range(a, K, V, n, p, 1), KVQ_OK);
            assert_int_equal(append_range(b, K, V, n, p, 1), KVQ_OK);
        }
    }
    free(oa);
    free(ob);
    free(q);
    kvq_cache_free(a);
    kvq_cache_free(b);
    return 0;
}

static void test_fused_matches_reference(void **st)
{
    (void)st;
    const int n = 160;
    float *K = malloc(sizeof(float) * KV * n * D), *V = malloc(sizeof(float) * KV * n * D);
    float *Q = malloc(sizeof(float) * NH * n * D), *Vq = malloc(sizeof(float) * KV * n * D);
    synth(1, n, K, V);
    kvq_rng r;
    kvq_rng_seed(&r, 7);
    kvq_rng_gauss_fill(&r, Q, (size_t)NH * n * D);
    (void)Vq;
    char skipped[1024] = "";
    int tested = 0;
    for (int i = 0; i < kvq_n_methods; i++) {
        const kvq_method *m = &kvq_methods[i];
        kvq_config c;
        base_cfg(&c, m->name, clamp_bits(m, 3));
        c.value_bits = 4;
        c.residual_length = 16;
        c.sink_tokens = 4;
        double worst = 0;
        int rc = check_fused(&c, K, V, Q, n, &worst);
        if (rc == KVQ_ERR_NOT_IMPLEMENTED || rc == KVQ_ERR_NEEDS_CALIBRATION) {
            size_t len = strlen(skipped);
            snprintf(skipped + len, sizeof skipped - len, " %s(%s)", m->name, kvq_status_str(rc));
            continue;
        }
        if (rc) fail_msg("%s: cache_new failed: %s", m->name, kvq_last_error());
        // The same with no fp16 windows, so everything is scored from codes.
        c.residual_length = 0;
        c.sink_tokens = 0;
        assert_int_equal(check_fused(&c, K, V, Q, n, &worst), 0);
        printf("  fused vs reference %-16s bits %d: max rel diff %.2e\n", m->name, c.bits, worst);
        if (worst > 1e-4) fail_msg("%s: fused and reference attention differ by %.3g (> 1e-4)", m->name, worst);
        tested++;
    }
    printf("  fused vs reference: %d methods tested; skipped:%s\n", tested, skipped[0] ? skipped : " none");
    assert_true(tested >= 1);
    free(K);
    free(V);
    free(Q);
    free(Vq);
}

// ---- fp16 method vs attention straight from the trace ----
static void trace_layer(kvq_trace *t, int l, float **K, float **V, float **Q)
{
    size_t T = (size_t)t->n_tokens;
    *K = malloc(sizeof(float) * KV * T * D);
    *V = malloc(sizeof(float) * KV * T * D);
    *Q = malloc(sizeof(float) * NH * T * D);
    for (int h = 0; h < KV; h++) {
        assert_int_equal(kvq_trace_keys(t, l, h, *K + (size_t)h * T * D), KVQ_OK);
        assert_int_equal(kvq_trace_values(t, l, h, *V + (size_t)h * T * D), KVQ_OK);
    }
    for (int h = 0; h < NH; h++) assert_int_equal(kvq_trace_queries(t, l, h, *Q + (size_t)h * T * D), KVQ_OK);
}

static void test_fp16_equals_trace_attention(void **st)
{
    (void)st;
    kvq_trace *t = NULL;
    assert_int_equal(kvq_trace_open(TRACE, NULL, &t), KVQ_OK);
    assert_int_equal(t->n_kv_heads, KV);
    assert_int_equal(t->n_heads, NH);
    assert_int_equal(t->head_dim, D);
    assert_int_equal(t->n_queries, t->n_tokens);
    int n = t->n_tokens;
    for (int fused = 0; fused < 2; fused++)
        for (int l = 0; l < t->n_layers; l += 5) {
            float *K, *V, *Q;
            trace_layer(t, l, &K, &V, &Q);
            kvq_config c;
            base_cfg(&c, "fp16", 16);
            c.value_bits = 16;
            c.use_fused_sdpa = fused;
            kvq_cache *cache;
            assert_int_equal(kvq_cache_new(&c, NULL, l, t->n_layers, KV, D, &cache), KVQ_OK);
            assert_int_equal(append_range(cache, K, V, n, 0, 512), KVQ_OK);
            double worst = 0;
            float q[NH * D], out[NH * D], ref[D];
            for (int p = 512; p < 512 + 48; p++) {
                int32_t qp = p - 1 - (p % 7) * 50;   // the newest token and some earlier positions
                for (int h = 0; h < NH; h++) memcpy(q + h * D, Q + ((size_t)h * n + qp) * D, sizeof(float) * D);
                assert_int_equal(kvq_cache_attend(cache, q, NH, 1, &qp, out), KVQ_OK);
                for (int h = 0; h < NH; h++) {
                    direct(q + h * D, K, V, n, h / (NH / KV), qp, NULL, ref);
                    double e = rel_err(out + h * D, ref, D);
                    if (e > worst) worst = e;
                }
                assert_int_equal(append_range(cache, K, V, n, p, 1), KVQ_OK);
            }
            printf("  fp16 layer %d fused %d vs direct fp32: max rel err %.2e\n", l, fused, worst);
            assert_true(worst <= 1e-3);
            kvq_cache_free(cache);
            free(K);
            free(V);
            free(Q);
        }
    kvq_trace_free(t);
}

// ---- bytes = what the allocator counted ----
typedef struct counter {
    long long live;
    long n_alloc, n_free;
} counter;

static void *count_alloc(size_t n, void *user)
{
    counter *c = user;
    c->live += (long long)n;
    c->n_alloc++;
    return malloc(n);
}

static void count_free(void *p, size_t n, void *user)
{
    counter *c = user;
    c->live -= (long long)n;
    c->n_free++;
    free(p);
}

static void test_bytes_equal_counting_allocator(void **st)
{
    (void)st;
    const int n = 300;
    float *K = malloc(sizeof(float) * KV * n * D), *V = malloc(sizeof(float) * KV * n * D);
    synth(3, n, K, V);
    const char *methods[] = {"turboquant_mse", "kivi", "q8_0"};
    for (int mi = 0; mi < 3; mi++) {
        counter cnt = {0};
        kvq_allocator al = {count_alloc, count_free, &cnt};
        kvq_config c;
        base_cfg(&c, methods[mi], mi == 2 ? 8 : 2);
        c.residual_length = 24;
        c.sink_tokens = 4;
        c.protect_layers = 1;
        c.outlier_bits = mi == 0 ? 4 : 0;
        kvq_cache_set *s;
        assert_int_equal(kvq_cache_set_new_ex(&c, NULL, 4, KV, D, &al, &s), KVQ_OK);
        kvq_observers_opts oo;
        kvq_observers_opts_default(&oo);
        oo.which = KVQ_OBS_MEMORY;
        kvq_observers *obs;
        assert_int_equal(kvq_observers_new(&oo, 4, KV, D, &obs), KVQ_OK);
        kvq_cache_set_attach(s, obs);
        assert_true(kvq_cache_set_bytes(s) == (size_t)cnt.live);
        for (int p = 0; p < n;) {
            int m = p < 100 ? 100 : 1 + p % 5;
            if (p + m > n) m = n - p;
            for (int l = 0; l < 4; l++) assert_int_equal(append_range(s->layers[l], K, V, n, p, m), KVQ_OK);
            p += m;
            assert_true(kvq_cache_set_bytes(s) == (size_t)cnt.live);
        }
        kvq_report rep;
        kvq_observers_report(obs, &rep);
        // the memory observer reports allocations + the plans' side tables
        double side = 0, sum = 0;
        for (int l = 0; l < 4; l++) side += (double)kvq_cache_side_bytes(s->layers[l]);
        if (mi != 2) assert_true(side > 0);   // rotations and codebooks are held
        for (int l = 0; l < 4; l++) sum += rep.memory.per_layer_mb[l];
        assert_true(fabs(sum * 1048576.0 - (double)cnt.live - side) < 0.5);
        assert_true(fabs(rep.memory.peak_compressed_mb * 1048576.0 - (double)cnt.live - side) < 0.5);
        assert_int_equal(rep.memory.total_tokens, n);
        double f16 = (double)n * KV * D * 2 * 2 * 4;
        assert_true(fabs(rep.memory.compression_ratio - f16 / ((double)cnt.live + side)) < 1e-9);
        kvq_cache_set_free(s);
        kvq_observers_free(obs);
        assert_true(cnt.live == 0);
        assert_int_equal(cnt.n_alloc, cnt.n_free);
    }
    // max_seq_len preallocates: no allocation while appending up to it.
    for (int mi = 0; mi < 3; mi++) {
        counter cnt = {0};
        kvq_allocator al = {count_alloc, count_free, &cnt};
        kvq_config c;
        base_cfg(&c, methods[mi], mi == 2 ? 8 : 2);
        c.residual_length = 24;
        c.sink_tokens = 4;
        c.max_seq_len = n;
        kvq_cache *a;
        assert_int_equal(kvq_cache_new_ex(&c, NULL, 0, 1, KV, D, &al, &a), KVQ_OK);
        long allocs = cnt.n_alloc;
        assert_int_equal(append_range(a, K, V, n, 0, 100), KVQ_OK);
        for (int p = 100; p < n; p++) assert_int_equal(append_range(a, K, V, n, p, 1), KVQ_OK);
        assert_int_equal(cnt.n_alloc, allocs);
        assert_true(kvq_cache_bytes(a) == (size_t)cnt.live);
        kvq_cache_free(a);
        assert_true(cnt.live == 0);
    }
    free(K);
    free(V);
}

// ---- sliding window ----
static void test_sliding_window(void **st)
{
    (void)st;
    const int n = 420, w = 64, sinks = 4;
    float *K = malloc(sizeof(float) * KV * n * D), *V = malloc(sizeof(float) * KV * n * D);
    float *Q = malloc(sizeof(float) * NH * D);
    synth(5, n, K, V);
    kvq_rng r;
    kvq_rng_seed(&r, 9);
    kvq_rng_gauss_fill(&r, Q, NH * D);
    bool *keep = malloc((size_t)n);
    // fp16: outputs equal exact attention over the sinks and the last w tokens.
    kvq_config c;
    base_cfg(&c, "fp16", 16);
    c.value_bits = 16;
    c.sliding_window = w;
    c.sink_tokens = sinks;
    c.residual_length = 8;
    kvq_cache *a;
    assert_int_equal(kvq_cache_new(&c, NULL, 0, 1, KV, D, &a), KVQ_OK);
    size_t flat = 0;
    for (int p = 0; p < n; p++) {
        assert_int_equal(append_range(a, K, V, n, p, 1), KVQ_OK);
        int len = p + 1;
        if (len == 4 * w) flat = kvq_cache_bytes(a);
        if (len > 4 * w) assert_true(kvq_cache_bytes(a) == flat);
        assert_int_equal(kvq_cache_visible(a), len < sinks + w ? len : sinks + w);
        if (len % 37 == 0 || len == n) {
            for (int i = 0; i < n; i++) keep[i] = i < sinks || (i >= len - w && i < len);
            float out[NH * D], ref[D];
            int32_t qp = len - 1;
            assert_int_equal(kvq_cache_attend(a, Q, NH, 1, &qp, out), KVQ_OK);
            for (int h = 0; h < NH; h++) {
                direct(Q + h * D, K, V, n, h / (NH / KV), qp, keep, ref);
                assert_true(rel_err(out + h * D, ref, D) <= 1e-3);
            }
            // logits: the visible positions in order, q . k / sqrt(d)
            float lg[512];
            int32_t lp[512];
            int nl = 0;
            assert_int_equal(kvq_cache_logits(a, Q, 0, NH, qp, lg, lp, &nl), KVQ_OK);
            assert_int_equal(nl, kvq_cache_visible(a));
            for (int i = 0, j = 0; i < n; i++) {
                if (!keep[i]) continue;
                assert_int_equal(lp[j], i);
                double x = 0;
                for (int t = 0; t < D; t++) x += (double)Q[t] * K[(size_t)i * D + t];
                assert_true(fabs(lg[j] - x / sqrt((double)D)) < 1e-2 * (1 + fabs(x)));
                j++;
            }
        }
    }
    printf("  sliding window fp16: %zu bytes flat after %d tokens\n", flat, 4 * w);
    kvq_cache_free(a);
    // kivi keys (groups of 32, evicted whole): the window equals the full
    // cache's own decoded tokens restricted to sinks + last w.
    base_cfg(&c, "kivi", 2);
    c.sliding_window = w;
    c.sink_tokens = sinks;
    c.residual_length = 8;
    kvq_config cfull = c;
    cfull.sliding_window = 0;
    kvq_cache *full;
    assert_int_equal(kvq_cache_new(&c, NULL, 0, 1, KV, D, &a), KVQ_OK);
    assert_int_equal(kvq_cache_new(&cfull, NULL, 0, 1, KV, D, &full), KVQ_OK);
    float *FK = malloc(sizeof(float) * n * D), *FV = malloc(sizeof(float) * n * D);
    int32_t *fpos = malloc(sizeof(int32_t) * n);
    double worst = 0;
    for (int p = 0; p < n; p++) {
        assert_int_equal(append_range(a, K, V, n, p, 1), KVQ_OK);
        assert_int_equal(append_range(full, K, V, n, p, 1), KVQ_OK);
        int len = p + 1;
        if (len == 4 * w) flat = kvq_cache_bytes(a);
        if (len > 4 * w) assert_true(kvq_cache_bytes(a) == flat);
        if (len % 29 != 0 && len != n) continue;
        float out[NH * D], ref[D];
        int32_t qp = len - 1;
        assert_int_equal(kvq_cache_attend(a, Q, NH, 1, &qp, out), KVQ_OK);
        for (int h = 0; h < NH; h++) {
            int nf = 0, m = 0;
            assert_int_equal(kvq_cache_decode(full, h / (NH / KV), FK, FV, fpos, &nf), KVQ_OK);
            assert_int_equal(nf, len);
            for (int i = 0; i < nf; i++)   // keep sinks and the last w, compacted
                if (fpos[i] < sinks || fpos[i] >= len - w) {
                    memmove(FK + (size_t)m * D, FK + (size_t)i * D, sizeof(float) * D);
                    memmove(FV + (size_t)m * D, FV + (size_t)i * D, sizeof(float) * D);
                    fpos[m++] = fpos[i];
                }
            assert_int_equal(m, len < sinks + w ? len : sinks + w);
            kvq_attend_f32(Q + h * D, FK, FV, fpos, m, D, qp, ref);
            double e = rel_err(out + h * D, ref, D);
            if (e > worst) worst = e;
        }
    }
    printf("  sliding window kivi: flat %zu bytes, max rel diff vs full cache %.2e\n", flat, worst);
    assert_true(worst <= 1e-4);
    kvq_cache_free(a);
    kvq_cache_free(full);
    free(FK);
    free(FV);
    free(fpos);
    free(keep);
    free(K);
    free(V);
    free(Q);
}

// ---- compression of turboquant_mse k3 / v2 ----
static void test_compression_tq_mse(void **st)
{
    (void)st;
    const int n = 1024;
    float *K = malloc(sizeof(float) * KV * n * D), *V = malloc(sizeof(float) * KV * n * D);
    synth(11, n, K, V);
    for (int pre = 0; pre < 2; pre++) {
        kvq_config c;
        base_cfg(&c, "turboquant_mse", 3);
        c.value_bits = 2;
        c.max_seq_len = pre ? n : 0;
        kvq_cache *a;
        kvq_status s = kvq_cache_new(&c, NULL, 0, 1, KV, D, &a);
        if (s == KVQ_ERR_NOT_IMPLEMENTED) skip();
        assert_int_equal(s, KVQ_OK);
        assert_int_equal(append_range(a, K, V, n, 0, n / 2), KVQ_OK);
        for (int p = n / 2; p < n; p++) assert_int_equal(append_range(a, K, V, n, p, 1), KVQ_OK);
        size_t held = kvq_cache_bytes(a) + kvq_cache_side_bytes(a);   // records, windows, scratch, side tables
        double fp16 = (double)n * KV * D * 2 * 2, ratio = fp16 / (double)held;
        printf("  turboquant_mse k3/v2, %d tokens, max_seq_len %d: %zu bytes (%zu side), key record %zu B, "
               "value record %zu B, compression %.2fx\n",
               n, c.max_seq_len, held, kvq_cache_side_bytes(a), kvq_cache_key_bpv(a), kvq_cache_value_bpv(a), ratio);
        assert_true(ratio >= 4.5);
        kvq_cache_free(a);
    }
    free(K);
    free(V);
}

// ---- outlier tokens stored at outlier_bits ----
static double key_err(kvq_cache *a, const float *K, int n, const bool *mark, int *count)
{
    float *X = malloc(sizeof(float) * n * D);
    int32_t *pos = malloc(sizeof(int32_t) * n);
    double e = 0;
    *count = 0;
    for (int h = 0; h < KV; h++) {
        int m;
        assert_int_equal(kvq_cache_decode(a, h, X, NULL, pos, &m), KVQ_OK);
        assert_int_equal(m, n);
        for (int i = 0; i < m; i++)
            if (mark[pos[i]]) {
                e += rel_err(X + (size_t)i * D, K + ((size_t)h * n + pos[i]) * D, D);
                (*count)++;
            }
    }
    free(X);
    free(pos);
    return e / (*count ? *count : 1);
}

static void test_outlier_tokens(void **st)
{
    (void)st;
    const int n = 400;
    float *K = malloc(sizeof(float) * KV * n * D), *V = malloc(sizeof(float) * KV * n * D);
    synth(13, n, K, V);
    bool *mark = calloc((size_t)n, 1);
    for (int i = 30; i < n; i += 41) {
        mark[i] = true;
        for (int h = 0; h < KV; h++)
            for (int t = 0; t < D; t++) K[((size_t)h * n + i) * D + t] *= 8.0f;
    }
    // Independent count of the rule: norm > 3 x mean of the previous <= 128 norms.
    int expect = 0;
    for (int h = 0; h < KV; h++)
        for (int i = 0; i < n; i++) {
            double nn = 0, mean = 0;
            for (int t = 0; t < D; t++) nn += (double)K[((size_t)h * n + i) * D + t] * K[((size_t)h * n + i) * D + t];
            int lo = i - 128 < 0 ? 0 : i - 128;
            for (int j = lo; j < i; j++) {
                double m2 = 0;
                for (int t = 0; t < D; t++) m2 += (double)K[((size_t)h * n + j) * D + t] * K[((size_t)h * n + j) * D + t];
                mean += sqrt(m2) / (i - lo);
            }
            expect += i > 0 && sqrt(nn) > 3.0 * mean;
        }
    assert_true(expect >= 2 * 8);
    double err[2];
    for (int ob = 0; ob < 2; ob++) {
        kvq_config c;
        base_cfg(&c, "turboquant_mse", 2);
        c.outlier_bits = ob ? 6 : 0;
        kvq_cache *a;
        assert_int_equal(kvq_cache_new(&c, NULL, 0, 1, KV, D, &a), KVQ_OK);
        assert_int_equal(append_range(a, K, V, n, 0, 200), KVQ_OK);
        for (int p = 200; p < n; p++) assert_int_equal(append_range(a, K, V, n, p, 1), KVQ_OK);
        int cnt;
        err[ob] = key_err(a, K, n, mark, &cnt);
        if (ob) {
            size_t outl = a->hs[0].ok.n + a->hs[1].ok.n;
            assert_int_equal((int)outl, expect);
            // and attention over mixed records: fused == reference
            kvq_config cr = c;
            cr.use_fused_sdpa = false;
            kvq_cache *b;
            assert_int_equal(kvq_cache_new(&cr, NULL, 0, 1, KV, D, &b), KVQ_OK);
            assert_int_equal(append_range(b, K, V, n, 0, n), KVQ_OK);
            float q[NH * D], o1[NH * D], o2[NH * D];
            kvq_rng r;
            kvq_rng_seed(&r, 3);
            kvq_rng_gauss_fill(&r, q, NH * D);
            int32_t qp = n - 1;
            assert_int_equal(kvq_cache_attend(a, q, NH, 1, &qp, o1), KVQ_OK);
            assert_int_equal(kvq_cache_attend(b, q, NH, 1, &qp, o2), KVQ_OK);
            for (int h = 0; h < NH; h++) assert_true(rel_err(o1 + h * D, o2 + h * D, D) <= 1e-4);
            kvq_cache_free(b);
        }
        kvq_cache_free(a);
    }
    printf("  outlier keys rel err: 2-bit %.3f, with outlier_bits 6 %.3f (%d flagged)\n", err[0], err[1], expect);
    assert_true(err[1] < 0.5 * err[0]);
    free(mark);
    free(K);
    free(V);
}

// ---- protected layers, bit_allocation, reset, errors ----
static void test_layers_bits_reset_errors(void **st)
{
    (void)st;
    const int n = 200;
    float *K = malloc(sizeof(float) * KV * n * D), *V = malloc(sizeof(float) * KV * n * D);
    synth(17, n, K, V);
    kvq_config c;
    base_cfg(&c, "turboquant_mse", 3);
    c.protect_layers = 1;
    c.n_bit_allocation = 4;
    int bits[4] = {2, 2, 4, 3};
    memcpy(c.bit_allocation, bits, sizeof bits);
    kvq_cache_set *s;
    assert_int_equal(kvq_cache_set_new(&c, NULL, 4, KV, D, &s), KVQ_OK);
    assert_int_equal((int)kvq_cache_key_bpv(s->layers[0]), 2 * D);   // protected
    assert_int_equal((int)kvq_cache_key_bpv(s->layers[3]), 2 * D);
    assert_int_equal((int)kvq_cache_value_bpv(s->layers[0]), 2 * D);
    assert_true(kvq_cache_key_bpv(s->layers[1]) < kvq_cache_key_bpv(s->layers[2]));
    // A protected layer answers exactly (up to fp16 storage).
    kvq_cache *l0 = s->layers[0];
    assert_int_equal(append_range(l0, K, V, n, 0, n), KVQ_OK);
    float q[NH * D], out[NH * D], out2[NH * D], ref[D];
    kvq_rng r;
    kvq_rng_seed(&r, 21);
    kvq_rng_gauss_fill(&r, q, NH * D);
    int32_t qp = n - 1;
    assert_int_equal(kvq_cache_attend(l0, q, NH, 1, &qp, out), KVQ_OK);
    for (int h = 0; h < NH; h++) {
        direct(q + h * D, K, V, n, h / 2, qp, NULL, ref);
        assert_true(rel_err(out + h * D, ref, D) <= 1e-3);
    }
    // reset keeps capacity and gives the same answers again
    kvq_cache *l1 = s->layers[1];
    assert_int_equal(append_range(l1, K, V, n, 0, n), KVQ_OK);
    assert_int_equal(kvq_cache_attend(l1, q, NH, 1, &qp, out), KVQ_OK);
    size_t bytes = kvq_cache_bytes(l1);
    kvq_cache_reset(l1);
    assert_int_equal(kvq_cache_len(l1), 0);
    assert_int_equal(kvq_cache_visible(l1), 0);
    assert_true(kvq_cache_bytes(l1) == bytes);
    assert_int_equal(append_range(l1, K, V, n, 0, n), KVQ_OK);
    assert_int_equal(kvq_cache_attend(l1, q, NH, 1, &qp, out2), KVQ_OK);
    assert_memory_equal(out, out2, sizeof out);
    // empty cache: zeros
    kvq_cache_reset(l1);
    assert_int_equal(kvq_cache_attend(l1, q, NH, 1, &qp, out), KVQ_OK);
    for (int t = 0; t < NH * D; t++) assert_true(out[t] == 0.0f);
    // errors
    assert_int_equal(kvq_cache_attend(l1, q, 3, 1, &qp, out), KVQ_ERR_SHAPE);
    assert_non_null(strstr(kvq_last_error(), "multiple"));
    kvq_cache_set_free(s);
    kvq_cache *bad = NULL;
    assert_int_equal(kvq_cache_new(&c, NULL, 0, 6, KV, D, &bad), KVQ_ERR_ARG);   // 4 bits for 6 layers
    assert_non_null(strstr(kvq_last_error(), "bit_allocation"));
    base_cfg(&c, "kivi", 2);
    c.outlier_bits = 4;
    assert_int_equal(kvq_cache_new(&c, NULL, 0, 1, KV, D, &bad), KVQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(kvq_last_error(), "outlier_bits"));
    base_cfg(&c, "q8_0", 8);
    assert_int_equal(kvq_cache_new(&c, NULL, 0, 1, KV, KVQ_MAX_HEAD_DIM + 1, &bad), KVQ_ERR_ARG);
    assert_null(bad);
    free(K);
    free(V);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_matches_reference),
        cmocka_unit_test(test_fp16_equals_trace_attention),
        cmocka_unit_test(test_bytes_equal_counting_allocator),
        cmocka_unit_test(test_sliding_window),
        cmocka_unit_test(test_compression_tq_mse),
        cmocka_unit_test(test_outlier_tokens),
        cmocka_unit_test(test_layers_bits_reset_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
