// bench/bench.c — `make bench`: encode/decode throughput of every method,
// scoring from codes, one decode step of attention over compressed caches
// against fp32 attention on an uncompressed cache (cblas), calibration wall
// time and the model runner, at 1 and 2 threads. Prints a table and writes
// bench/results.json atomically (temp file + rename). Never part of
// `make test`.
//
// Every figure is the median of BENCH_RUNS runs after one warm-up run; small
// workloads repeat inside a run so one run lasts long enough to time. Data
// are the sample trace's keys/values/queries (head_dim 128), tiled to the
// longer contexts. Environment: BENCH_QUICK=1 skips calibration, the model
// and the slow methods' long contexts (for a smoke run).
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cache.h"
#include "calib/calib.h"
#include "kvq.h"
#include "model.h"
#include "pool.h"
#include "simd.h"
#include "trace.h"

#define BENCH_RUNS 7
#define D 128
#define KVH 2
#define NH 4
#define TRACE_PATH "sample_data/traces/code-1k.safetensors"
#define MODEL_DIR "sample_data/refmodel"
#define TEXT_PATH "sample_data/texts/gpl3-2048-3071.txt"
#define RESULTS "bench/results.json"

typedef struct row {
    char name[80];
    double med, min, max;   // ms per operation
    int threads;
    double thr;             // items per second (< 0: none)
    const char *unit;
} row;

static row g_rows[1024];
static int g_nrows;
static bool g_quick;

typedef void (*bench_fn)(void *ctx);

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// One warm-up call, then runs timed calls of fn, each doing `reps`
// operations; times are per operation. items: per operation (throughput).
// A run may time only part of itself (set g_inner_s, seconds): the model's
// decode steps without the prefill that sets them up.
static double g_inner_s = -1;

static row *measure_runs(const char *name, bench_fn fn, void *ctx, int reps, double items, const char *unit,
                         int runs)
{
    double t[BENCH_RUNS];
    fn(ctx);
    for (int r = 0; r < runs; r++) {
        g_inner_s = -1;
        double t0 = kvq_now_s();
        fn(ctx);
        double dt = g_inner_s >= 0 ? g_inner_s : kvq_now_s() - t0;
        t[r] = dt * 1e3 / reps;
    }
    qsort(t, (size_t)runs, sizeof t[0], cmp_d);
    row *w = &g_rows[g_nrows++];
    snprintf(w->name, sizeof w->name, "%s", name);
    w->med = t[runs / 2];
    w->min = t[0];
    w->max = t[runs - 1];
    w->threads = kvq_threads();
    w->thr = items > 0 ? items / (w->med * 1e-3) : -1;
    w->unit = unit;
    printf("%-44s %2d thr  median %10.4f ms  [%9.4f, %9.4f]", w->name, w->threads, w->med, w->min, w->max);
    if (w->thr >= 1e6) printf("  %10.3f M %s/s", w->thr / 1e6, unit);
    else if (w->thr > 0) printf("  %10.1f %s/s", w->thr, unit);
    printf("\n");
    fflush(stdout);
    return w;
}

static row *measure(const char *name, bench_fn fn, void *ctx, int reps, double items, const char *unit)
{
    return measure_runs(name, fn, ctx, reps, items, unit, BENCH_RUNS);
}

static const row *find_row(const char *name, int threads)
{
    for (int i = 0; i < g_nrows; i++)
        if (g_rows[i].threads == threads && strcmp(g_rows[i].name, name) == 0) return &g_rows[i];
    return NULL;
}

static void set_threads(int n)
{
    kvq_threads_set(n);
    openblas_set_num_threads(1);   // parallelism is ours: over heads and blocks
}

static void die(const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, kvq_last_error());
    exit(1);
}

// ---- data: the sample trace, tiled ----
static float *g_keys, *g_vals, *g_q;   // (L*KVH, 1024, D) each; g_q (NH, D)
static int g_ntok, g_nstreams;

static void load_trace(void)
{
    kvq_trace *t = NULL;
    if (kvq_trace_open(TRACE_PATH, NULL, &t)) die(TRACE_PATH);
    g_ntok = t->n_tokens;
    g_nstreams = t->n_layers * t->n_kv_heads;
    size_t per = (size_t)g_ntok * D;
    g_keys = malloc(sizeof(float) * per * (size_t)g_nstreams);
    g_vals = malloc(sizeof(float) * per * (size_t)g_nstreams);
    for (int l = 0; l < t->n_layers; l++)
        for (int h = 0; h < t->n_kv_heads; h++) {
            size_t s = (size_t)(l * t->n_kv_heads + h) * per;
            if (kvq_trace_keys(t, l, h, g_keys + s) || kvq_trace_values(t, l, h, g_vals + s)) die("trace");
        }
    float *q = malloc(sizeof(float) * (size_t)t->n_queries * D);
    g_q = malloc(sizeof(float) * NH * D);
    for (int h = 0; h < NH; h++) {
        if (kvq_trace_queries(t, 0, h, q)) die("trace queries");
        memcpy(g_q + (size_t)h * D, q + (size_t)(t->n_queries - 1) * D, sizeof(float) * D);
    }
    free(q);
    kvq_trace_free(t);
}

// Token i of kv head h at a long context: trace stream (i / ntok + h) % streams.
static const float *tok(const float *src, int h, int i)
{
    int s = (i / g_ntok + h) % g_nstreams;
    return src + ((size_t)s * g_ntok + (size_t)(i % g_ntok)) * D;
}

// ---- encode / decode / score ----
#define CODEC_N 12288
#define CODEC_BLOCK 512

typedef struct codec_ctx {
    kvq_quantizer q;
    const float *x;
    float *y;
    uint8_t *codes;
    size_t n;
    float *scores;
    uint8_t *qs;
} codec_ctx;

static void score_task(void *u, int t)
{
    codec_ctx *c = u;
    size_t blk = 4096, i0 = (size_t)t * blk, k = c->n - i0 < blk ? c->n - i0 : blk;
    c->q.m->score(c->q.plan, c->qs, c->codes + i0 * c->q.bpv, k, c->scores + i0);
}
static int nblocks(size_t n, size_t b) { return (int)((n + b - 1) / b); }
static void run_enc(void *u) { codec_ctx *c = u; kvq_encode_parallel(&c->q, c->x, c->n, c->codes); }
static void run_dec(void *u) { codec_ctx *c = u; kvq_decode_parallel(&c->q, c->codes, c->n, c->y); }
static void run_score(void *u) { codec_ctx *c = u; kvq_parallel_for(nblocks(c->n, 4096), score_task, c); }

// Artifacts from the calibration section, by calibrator (= method) name.
static kvq_artifacts *g_arts[16];
static const char *g_art_names[16];
static int g_narts;

static const kvq_artifacts *art_for(const char *method)
{
    for (int i = 0; i < g_narts; i++)
        if (strcmp(g_art_names[i], method) == 0) return g_arts[i];
    return NULL;
}

static bool codec_init(codec_ctx *c, const char *method, int bits, kvq_config *cfg)
{
    kvq_config_default(cfg);
    kvq_plan_params pp = {.bits = bits, .head_dim = D, .cfg = cfg, .art = art_for(method)};
    return kvq_quantizer_init(&c->q, method, &pp) == KVQ_OK;
}

static void bench_codecs(int threads)
{
    set_threads(threads);
    size_t n = CODEC_N < (size_t)g_ntok * g_nstreams ? CODEC_N : (size_t)g_ntok * g_nstreams;
    float *y = malloc(sizeof(float) * n * D);
    for (int mi = 0; mi < kvq_n_methods; mi++) {
        const kvq_method *m = &kvq_methods[mi];
        for (int bits = 2; bits <= 16; bits++) {
            bool base = m->min_bits == m->max_bits;
            if (base ? bits != m->min_bits : (bits > 4 || bits < m->min_bits || bits > m->max_bits)) continue;
            codec_ctx c = {.x = g_keys, .y = y, .n = n};
            kvq_config cfg;
            if (!codec_init(&c, m->name, bits, &cfg)) {
                printf("%-44s skipped: %s\n", m->name, kvq_last_error());
                break;
            }
            c.codes = malloc(c.q.bpv * n);
            // Slow encoders get fewer vectors (a run of ~40 ms at least one
            // block), so the whole bench stays within minutes.
            double t0 = kvq_now_s();
            c.q.m->encode(c.q.plan, g_keys, CODEC_BLOCK, c.codes);
            double per = (kvq_now_s() - t0) / CODEC_BLOCK;
            c.n = per * (double)n > 0.04 ? (size_t)(0.04 / per) / CODEC_BLOCK * CODEC_BLOCK : n;
            if (c.n < CODEC_BLOCK) c.n = CODEC_BLOCK;
            char name[80];
            snprintf(name, sizeof name, "encode %s %d-bit", m->name, bits);
            measure(name, run_enc, &c, 1, (double)c.n, "vec");
            snprintf(name, sizeof name, "decode %s %d-bit", m->name, bits);
            measure(name, run_dec, &c, 1, (double)c.n, "vec");
            free(c.codes);
            kvq_quantizer_free(&c.q);
        }
    }
    free(y);
}

// Scoring one query from codes: q4_0 (our float-query dot) vs turboquant_mse.
#define SCORE_N 65536
static void bench_scores(int threads)
{
    set_threads(threads);
    const char *ms[] = {"q4_0", "q8_0", "turboquant_mse", "turboquant_mse", "turboquant_mse"};
    int bs[] = {4, 8, 3, 2, 4};
    float *x = malloc(sizeof(float) * SCORE_N * D);
    for (int i = 0; i < SCORE_N; i++) memcpy(x + (size_t)i * D, tok(g_keys, 0, i), sizeof(float) * D);
    for (int k = 0; k < 5; k++) {
        codec_ctx c = {.x = x, .n = SCORE_N};
        kvq_config cfg;
        if (!codec_init(&c, ms[k], bs[k], &cfg)) die(ms[k]);
        c.codes = malloc(c.q.bpv * SCORE_N);
        c.scores = malloc(sizeof(float) * SCORE_N);
        c.qs = malloc(c.q.qbytes + 64);
        c.q.m->encode(c.q.plan, x, SCORE_N, c.codes);
        c.q.m->prepare_query(c.q.plan, g_q, c.qs);
        char name[80];
        snprintf(name, sizeof name, "score %s %d-bit", ms[k], bs[k]);
        measure(name, run_score, &c, 4, (double)SCORE_N, "key");
        free(c.codes);
        free(c.scores);
        free(c.qs);
        kvq_quantizer_free(&c.q);
    }
    free(x);
}

// ---- attention, one decode step: NH query heads over KVH kv heads ----
typedef struct f32_ctx {
    float *K, *V;   // (KVH, n, D)
    int n;
    float *S;       // (KVH, n, 2) scores
    float out[NH * D];
} f32_ctx;

// Per kv head: S = K Q^T (sgemm, both query heads at once), softmax
// (the engine's vectorized exp, as the fused path), out = S^T V.
static void f32_task(void *u, int h)
{
    f32_ctx *c = u;
    const int per = NH / KVH, n = c->n;
    const float *K = c->K + (size_t)h * n * D, *V = c->V + (size_t)h * n * D;
    float *S = c->S + (size_t)h * n * per;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, per, D, 1.0f / sqrtf((float)D), K, D,
                g_q + (size_t)h * per * D, D, 0.0f, S, per);
    // column-wise softmax over a (n, per) block: transpose-free, two passes
    float mx[NH];
    for (int j = 0; j < per; j++) mx[j] = -INFINITY;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < per; j++)
            if (S[(size_t)i * per + j] > mx[j]) mx[j] = S[(size_t)i * per + j];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < per; j++) S[(size_t)i * per + j] -= mx[j];
    kvq_exp_inplace(S, (size_t)n * per);
    double l[NH] = {0};
    for (int i = 0; i < n; i++)
        for (int j = 0; j < per; j++) l[j] += S[(size_t)i * per + j];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, per, D, n, 1.0f, S, per, V, D, 0.0f,
                c->out + (size_t)h * per * D, D);
    for (int j = 0; j < per; j++)
        for (int t = 0; t < D; t++) c->out[((size_t)h * per + j) * D + t] *= (float)(1.0 / l[j]);
}

// The same once more with the engine's own AVX2 kernels (the fused path's
// online softmax, minus any decoding): per kv head, blocks of 64 tokens,
// both query heads per block.
static void f32k_task(void *u, int h)
{
    f32_ctx *c = u;
    enum { B = 64 };
    const int per = NH / KVH, n = c->n;
    const float *K = c->K + (size_t)h * n * D, *V = c->V + (size_t)h * n * D;
    const float scale = 1.0f / sqrtf((float)D);
    float m[NH], acc[NH][D], w[B];
    double l[NH];
    for (int j = 0; j < per; j++) {
        m[j] = -INFINITY;
        l[j] = 0;
        memset(acc[j], 0, sizeof acc[j]);
    }
    for (int p0 = 0; p0 < n; p0 += B) {
        int k = n - p0 < B ? n - p0 : B;
        for (int j = 0; j < per; j++) {
            kvq_dot_rows(g_q + ((size_t)h * per + j) * D, K + (size_t)p0 * D, (size_t)k, D, w);
            float bm = -INFINITY;
            for (int i = 0; i < k; i++) {
                w[i] *= scale;
                bm = w[i] > bm ? w[i] : bm;
            }
            if (bm > m[j]) {
                float corr = expf(m[j] - bm);
                l[j] *= corr;
                for (int t = 0; t < D; t++) acc[j][t] *= corr;
                m[j] = bm;
            }
            for (int i = 0; i < k; i++) w[i] -= m[j];
            kvq_exp_inplace(w, (size_t)k);
            for (int i = 0; i < k; i++) l[j] += w[i];
            kvq_axpy_rows(w, V + (size_t)p0 * D, (size_t)k, D, acc[j]);
        }
    }
    for (int j = 0; j < per; j++)
        for (int t = 0; t < D; t++) c->out[((size_t)h * per + j) * D + t] = acc[j][t] * (float)(1.0 / l[j]);
}

typedef struct att_ctx {
    f32_ctx *f;
    kvq_cache *cache;
    int n, reps;
    float out[NH * D];
} att_ctx;

static void run_f32(void *u)
{
    att_ctx *a = u;
    for (int r = 0; r < a->reps; r++) kvq_parallel_for(KVH, f32_task, a->f);
}

// The same with one cblas_sgemv per query head (K q, then V^T w).
static void f32v_task(void *u, int hq)
{
    f32_ctx *c = u;
    const int n = c->n, h = hq / (NH / KVH);
    const float *K = c->K + (size_t)h * n * D, *V = c->V + (size_t)h * n * D;
    float *S = c->S + (size_t)hq * n;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, D, 1.0f / sqrtf((float)D), K, D, g_q + (size_t)hq * D, 1,
                0.0f, S, 1);
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = S[i] > mx ? S[i] : mx;
    for (int i = 0; i < n; i++) S[i] -= mx;
    kvq_exp_inplace(S, (size_t)n);
    double l = 0;
    for (int i = 0; i < n; i++) l += S[i];
    cblas_sgemv(CblasRowMajor, CblasTrans, n, D, (float)(1.0 / l), V, D, S, 1, 0.0f, c->out + (size_t)hq * D, 1);
}

static void run_f32v(void *u)
{
    att_ctx *a = u;
    for (int r = 0; r < a->reps; r++) kvq_parallel_for(NH, f32v_task, a->f);
}

static void run_f32k(void *u)
{
    att_ctx *a = u;
    for (int r = 0; r < a->reps; r++) kvq_parallel_for(KVH, f32k_task, a->f);
}

static void run_cache(void *u)
{
    att_ctx *a = u;
    int32_t pos = a->n - 1;
    for (int r = 0; r < a->reps; r++)
        if (kvq_cache_attend(a->cache, g_q, NH, 1, &pos, a->out)) die("attend");
}

typedef struct cache_spec {
    const char *label, *method, *vmethod;
    int bits, vbits;
    int max_ctx;   // longest context benchmarked
} cache_spec;

static kvq_cache *make_cache(const cache_spec *s, int n)
{
    kvq_config cfg;
    kvq_config_default(&cfg);
    snprintf(cfg.method, sizeof cfg.method, "%s", s->method);
    snprintf(cfg.value_method, sizeof cfg.value_method, "%s", s->vmethod);
    cfg.bits = s->bits;
    cfg.value_bits = s->vbits;
    cfg.residual_length = 0;
    cfg.sink_tokens = 0;
    cfg.use_fused_sdpa = true;
    cfg.max_seq_len = n;
    if (kvq_config_check(&cfg)) return NULL;
    kvq_cache *c = NULL;
    if (kvq_cache_new(&cfg, art_for(s->method), 1, 6, KVH, D, &c)) return NULL;
    const int chunk = 1024;
    float *k = malloc(sizeof(float) * KVH * chunk * D), *v = malloc(sizeof(float) * KVH * chunk * D);
    for (int p0 = 0; p0 < n; p0 += chunk) {
        int m = n - p0 < chunk ? n - p0 : chunk;
        for (int h = 0; h < KVH; h++)
            for (int i = 0; i < m; i++) {
                memcpy(k + ((size_t)h * m + i) * D, tok(g_keys, h, p0 + i), sizeof(float) * D);
                memcpy(v + ((size_t)h * m + i) * D, tok(g_vals, h, p0 + i), sizeof(float) * D);
            }
        if (kvq_cache_append(c, k, v, m)) {
            kvq_cache_free(c);
            c = NULL;
            break;
        }
    }
    free(k);
    free(v);
    return c;
}

static const int g_ctx[] = {1024, 4096, 16384, 65536};

static void bench_attention(void)
{
    static const cache_spec specs[] = {
        {"fp16", "fp16", "fp16", 16, 16, 65536},
        {"q8_0", "q8_0", "q8_0", 8, 8, 65536},
        {"q4_0", "q4_0", "q4_0", 4, 4, 65536},
        {"tq_mse3", "turboquant_mse", "turboquant_mse", 3, 2, 65536},
        {"tq_mse4", "turboquant_mse", "turboquant_mse", 4, 4, 65536},
        {"iq4_nl", "iq4_nl", "turboquant_mse", 4, 2, 16384},
        {"q4_0_hadamard", "q4_0_hadamard", "turboquant_mse", 4, 2, 16384},
        {"kivi", "kivi", "turboquant_mse", 3, 2, 16384},
        {"turboquant_prod", "turboquant_prod", "turboquant_mse", 3, 2, 16384},
        {"turboquant_rvq", "turboquant_rvq", "turboquant_mse", 3, 2, 16384},
        {"qjl", "qjl", "turboquant_mse", 1, 2, 16384},
        {"polarquant", "polarquant", "turboquant_mse", 3, 2, 16384},
        {"rabitq", "rabitq", "turboquant_mse", 1, 2, 16384},
        {"commvq", "commvq", "turboquant_mse", 2, 2, 16384},
        {"vecinfer", "vecinfer", "turboquant_mse", 2, 2, 16384},
        {"spectral", "spectral", "turboquant_mse", 3, 2, 16384},
        {"ratequant", "ratequant", "turboquant_mse", 3, 2, 16384},
    };
    const int nspec = (int)(sizeof specs / sizeof specs[0]);
    for (int ci = 0; ci < 4; ci++) {
        int n = g_ctx[ci];
        int reps = 65536 / n;
        f32_ctx f = {.n = n};
        f.K = malloc(sizeof(float) * KVH * (size_t)n * D);
        f.V = malloc(sizeof(float) * KVH * (size_t)n * D);
        f.S = malloc(sizeof(float) * KVH * (size_t)n * NH);
        for (int h = 0; h < KVH; h++)
            for (int i = 0; i < n; i++) {
                memcpy(f.K + ((size_t)h * n + i) * D, tok(g_keys, h, i), sizeof(float) * D);
                memcpy(f.V + ((size_t)h * n + i) * D, tok(g_vals, h, i), sizeof(float) * D);
            }
        att_ctx a = {.f = &f, .n = n, .reps = reps};
        char name[80];
        for (int th = 2; th >= 1; th--) {
            set_threads(th);
            snprintf(name, sizeof name, "attend %dk fp32 sgemm", n / 1024);
            row *x = measure(name, run_f32, &a, reps, 0, "");
            snprintf(name, sizeof name, "attend %dk fp32 sgemv", n / 1024);
            row *y = measure(name, run_f32v, &a, reps, 0, "");
            snprintf(name, sizeof name, "attend %dk fp32 engine kernels", n / 1024);
            row *z = measure(name, run_f32k, &a, reps, 0, "");
            // the baseline: the fastest fp32 formulation of this run
            row *w = &g_rows[g_nrows++];
            *w = x->med <= y->med ? *x : *y;
            if (z->med < w->med) *w = *z;
            snprintf(w->name, sizeof w->name, "attend %dk fp32 (best of the three)", n / 1024);
        }
        for (int s = 0; s < nspec; s++) {
            if (n > specs[s].max_ctx || (g_quick && s > 4 && n > 4096)) continue;
            a.cache = make_cache(&specs[s], n);
            if (!a.cache) {
                if (ci == 0) printf("attend %-36s skipped: %s\n", specs[s].label, kvq_last_error());
                continue;
            }
            for (int th = 2; th >= 1; th--) {
                set_threads(th);
                snprintf(name, sizeof name, "attend %dk %s", n / 1024, specs[s].label);
                measure(name, run_cache, &a, reps, 0, "");
            }
            kvq_cache_free(a.cache);
        }
        free(f.K);
        free(f.V);
        free(f.S);
    }
}

#ifndef BENCH_LITE   // BENCH_LITE: no calibration/model rows (a smaller static build)
// ---- calibration ----
static void bench_calibration(void)
{
    kvq_trace *t = NULL;
    if (kvq_trace_open(TRACE_PATH, NULL, &t)) die(TRACE_PATH);
    set_threads(1);
    openblas_set_num_threads(1);
    for (int i = 0; i < kvq_n_calibrators; i++) {
        const char *name = kvq_calibrators[i].name;
        kvq_calib_opts o;
        kvq_calib_opts_default(&o);
        kvq_artifacts *art = NULL;
        double t0 = kvq_now_s();
        kvq_status st = kvq_calibrate(name, t, &o, NULL, &art);
        double ms = (kvq_now_s() - t0) * 1e3;
        if (st) {
            printf("calibrate %-34s failed: %s\n", name, kvq_last_error());
            continue;
        }
        // Calibration runs once (seconds each): min = median = max.
        row *w = &g_rows[g_nrows++];
        snprintf(w->name, sizeof w->name, "calibrate %s (sample trace)", name);
        w->med = w->min = w->max = ms;
        w->threads = 1;
        w->thr = -1;
        w->unit = "";
        printf("%-44s %2d thr  once   %10.1f ms\n", w->name, 1, ms);
        if (g_narts < 16) {
            g_art_names[g_narts] = name;
            g_arts[g_narts++] = art;
        }
        else kvq_artifacts_free(art);
    }
    kvq_trace_free(t);
}

// ---- model runner ----
typedef struct model_ctx {
    kvq_runner *r;
    int32_t *tok;
    int n_prefill, n_decode;
} model_ctx;

static void run_prefill(void *u)
{
    model_ctx *m = u;
    kvq_runner_reset(m->r);
    if (kvq_runner_forward(m->r, m->tok, m->n_prefill, false, NULL)) die("prefill");
}

static void run_decode(void *u)
{
    model_ctx *m = u;
    kvq_runner_reset(m->r);
    if (kvq_runner_forward(m->r, m->tok, 64, false, NULL)) die("prefill");
    double t0 = kvq_now_s();
    for (int i = 0; i < m->n_decode; i++)
        if (kvq_runner_forward(m->r, m->tok + 64 + i, 1, false, NULL)) die("decode");
    g_inner_s = kvq_now_s() - t0;
}

static void bench_model(void)
{
    kvq_model *mod = NULL;
    if (kvq_model_load(MODEL_DIR, &mod)) {
        printf("model: skipped: %s\n", kvq_last_error());
        return;
    }
    FILE *f = fopen(TEXT_PATH, "rb");
    if (!f) die(TEXT_PATH);
    model_ctx m = {.n_prefill = 256, .n_decode = 32};
    m.tok = malloc(sizeof(int32_t) * 1024);
    int n = 0, ch;
    while (n < 1024 && (ch = fgetc(f)) != EOF) m.tok[n++] = ch;
    fclose(f);
    const char *cfgs[] = {"fp16", "turboquant_mse"};
    for (int k = 0; k < 2; k++) {
        kvq_config cfg;
        kvq_config_default(&cfg);
        snprintf(cfg.method, sizeof cfg.method, "%s", cfgs[k]);
        snprintf(cfg.value_method, sizeof cfg.value_method, "%s", cfgs[k]);
        cfg.bits = k == 0 ? 16 : 3;
        cfg.value_bits = k == 0 ? 16 : 2;
        cfg.use_fused_sdpa = true;
        if (kvq_runner_new(mod, &cfg, NULL, 256, &m.r)) die("runner");
        char name[80];
        for (int th = 2; th >= 1; th--) {
            set_threads(th);
            openblas_set_num_threads(th);
            snprintf(name, sizeof name, "model prefill %d tok, %s cache", m.n_prefill, cfgs[k]);
            measure_runs(name, run_prefill, &m, 1, m.n_prefill, "tok", 5);
            snprintf(name, sizeof name, "model decode %d tok after 64, %s cache", m.n_decode, cfgs[k]);
            measure_runs(name, run_decode, &m, m.n_decode, 1, "tok", 5);
        }
        kvq_runner_free(m.r);
    }
    free(m.tok);
    kvq_model_free(mod);
}

#endif

// ---- results ----
static double ratio_thr(const char *a, const char *b, int th)
{
    const row *x = find_row(a, th), *y = find_row(b, th);
    return x && y && x->thr > 0 && y->thr > 0 ? x->thr / y->thr : NAN;
}
static double ratio_time(const char *a, int ta, const char *b, int tb)
{
    const row *x = find_row(a, ta), *y = find_row(b, tb);
    return x && y && y->med > 0 ? x->med / y->med : NAN;
}

static void put_ratio(json_t *r, const char *key, double v, const char *what)
{
    json_object_set_new(r, key, isnan(v) ? json_null() : json_real(v));
    printf("  %-36s %8.3f   %s\n", key, v, what);
}

static void write_results(void)
{
    json_t *root = json_object(), *rows = json_array(), *r = json_object();
    for (int i = 0; i < g_nrows; i++) {
        const row *w = &g_rows[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(w->name));
        json_object_set_new(o, "median_ms", json_real(w->med));
        json_object_set_new(o, "min_ms", json_real(w->min));
        json_object_set_new(o, "max_ms", json_real(w->max));
        json_object_set_new(o, "threads", json_integer(w->threads));
        if (w->thr > 0) {
            json_object_set_new(o, "throughput", json_real(w->thr));
            json_object_set_new(o, "throughput_unit", json_string(w->unit));
        }
        json_array_append_new(rows, o);
    }
    printf("\nratios (same run)\n");
    put_ratio(r, "encode_tq_mse3_vs_q4_0", ratio_thr("encode turboquant_mse 3-bit", "encode q4_0 4-bit", 1),
              "encode throughput, 1 thread (>1 = faster)");
    put_ratio(r, "decode_tq_mse3_vs_q4_0", ratio_thr("decode turboquant_mse 3-bit", "decode q4_0 4-bit", 1),
              "decode throughput, 1 thread");
    put_ratio(r, "score_tq_mse3_vs_q4_0", ratio_thr("score turboquant_mse 3-bit", "score q4_0 4-bit", 1),
              "keys/s scored from codes, 1 thread (>1 = faster)");
    char a[80], b[80];
    for (int ci = 0; ci < 4; ci++) {
        int k = g_ctx[ci] / 1024;
        snprintf(b, sizeof b, "attend %dk fp32 (best of the three)", k);
        const char *labels[] = {"tq_mse3", "fp16", "q8_0", "q4_0"};
        for (int li = 0; li < 4; li++) {
            snprintf(a, sizeof a, "attend %dk %s", k, labels[li]);
            char key[80];
            snprintf(key, sizeof key, "attend_%dk_%s_vs_fp32", k, li == 0 ? "tq_mse3" : labels[li]);
            put_ratio(r, key, ratio_time(a, 1, b, 1), "time ratio, 1 thread (<1 = faster)");
            snprintf(key, sizeof key, "attend_%dk_%s_vs_fp32_threads2", k, li == 0 ? "tq_mse3" : labels[li]);
            put_ratio(r, key, ratio_time(a, 2, b, 2), "time ratio, 2 threads");
        }
    }
    put_ratio(r, "threads2_vs_1_attend_64k", ratio_time("attend 64k tq_mse3", 1, "attend 64k tq_mse3", 2),
              "speedup of 2 threads (tq_mse3 fused)");
    put_ratio(r, "threads2_vs_1_attend_64k_fp32", ratio_time("attend 64k fp32 (best of the three)", 1,
                                                             "attend 64k fp32 (best of the three)", 2),
              "speedup of 2 threads (fp32)");
    put_ratio(r, "threads2_vs_1_encode_tq_mse3",
              ratio_time("encode turboquant_mse 3-bit", 1, "encode turboquant_mse 3-bit", 2), "speedup");
    put_ratio(r, "threads2_vs_1_encode_q4_0", ratio_time("encode q4_0 4-bit", 1, "encode q4_0 4-bit", 2), "speedup");
    json_object_set_new(root, "machine", json_string("see docs/PERFORMANCE.md"));
    json_object_set_new(root, "simd", json_string(kvq_simd_name()));
    json_object_set_new(root, "head_dim", json_integer(D));
    json_object_set_new(root, "runs", json_integer(BENCH_RUNS));
    json_object_set_new(root, "rows", rows);
    json_object_set_new(root, "ratios", r);
    const char *tmp = RESULTS ".tmp";
    if (json_dump_file(root, tmp, JSON_INDENT(1)) != 0 || rename(tmp, RESULTS) != 0) {
        fprintf(stderr, "bench: cannot write %s\n", RESULTS);
        remove(tmp);
        exit(1);
    }
    json_decref(root);
    printf("wrote %s (%d rows)\n", RESULTS, g_nrows);
}

int main(void)
{
    const char *qe = getenv("BENCH_QUICK");
    g_quick = qe && qe[0] == '1';
    const char *only = getenv("BENCH_ONLY");   // substring of the sections to run
    double t0 = kvq_now_s();
    printf("kvstudio bench: head_dim %d, %d runs (median) after a warm-up, simd %s\n", D, BENCH_RUNS,
           kvq_simd_name());
    load_trace();
#ifndef BENCH_LITE
    if (!g_quick && (!only || strstr(only, "calib"))) bench_calibration();
#endif
    for (int th = 2; th >= 1; th--)
        if (!only || strstr(only, "codec")) bench_codecs(th);
    for (int th = 2; th >= 1; th--)
        if (!only || strstr(only, "score")) bench_scores(th);
    if (!only || strstr(only, "attend")) bench_attention();
#ifndef BENCH_LITE
    if (!g_quick && (!only || strstr(only, "model"))) bench_model();
#endif
    write_results();
    printf("total %.1f s\n", kvq_now_s() - t0);
    for (int i = 0; i < g_narts; i++) kvq_artifacts_free(g_arts[i]);
    free(g_keys);
    free(g_vals);
    free(g_q);
    kvq_threads_shutdown();
    return 0;
}
