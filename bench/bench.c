// bench/bench.c — `make bench`: encode/decode throughput of every method,
// scoring from codes, one decode step of attention over compressed caches
// against fp32 attention on an uncompressed cache (cblas), calibration wall
// time and the model runner, at 1 and 2 threads. Prints a table and writes
// bench/results.json atomically (temp file + rename). Never part of
// `make test`.
//
// Timing, statistics and units live in bench_core.h (tested on a fake clock
// by tests/test_bench.c): after one warm-up call, every row is BENCH_ROUNDS
// timed calls of `passes` passes each (model rows: MODEL_ROUNDS). A ratio
// times its two sides in alternating rounds (A B, B A, A B, ...) and quotes
// the median of the per-round ratios with their min and max, so a load that
// changes over the run (other jobs on a shared machine) hits both sides
// alike. Data are the sample trace's keys/values/queries (head_dim 128),
// tiled to the longer contexts. Environment: BENCH_QUICK=1 skips
// calibration, the model and the slow methods' long contexts (for a smoke
// run); BENCH_ONLY=codec,score,attend,calib,model picks sections.
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include "bench_core.h"
#include "bench_data.h"
#include "cache.h"
#include "calib/calib.h"
#include "kvq.h"
#include "model.h"
#include "pool.h"
#include "simd.h"
#include "trace.h"

#define BENCH_ROUNDS 8   // even: A first in half the rounds, B first in the other half
#define MODEL_ROUNDS 5
#define D 128
#define KVH 2
#define NH 4
#define TRACE_PATH "sample_data/traces/code-1k.safetensors"
#define MODEL_DIR "sample_data/refmodel"
#define TEXT_PATH "sample_data/texts/gpl3-2048-3071.txt"
#define RESULTS "bench/results.json"

typedef struct row {
    char name[80];
    int threads, passes;
    double work;            // units per pass (0: no throughput)
    const char *unit;
    bench_series s;         // raw seconds per call, ms per pass, throughput
    char best_of[80];       // the fp32 baseline rows: which formulation it is
} row;

// A against B from one bench_run: both sides' raw times and the per-round ratios.
typedef struct ratio {
    char key[64];
    const char *what;
    char a[80], b[80];
    bench_kernel ka, kb;    // threads, passes, work of each side (names above)
    bench_series sa, sb;
    bench_ratio r;
} ratio;

static row g_rows[1024];
static int g_nrows;
static ratio g_ratios[192];
static int g_nratios;
static bool g_quick;

#define g_clock bench_wall_clock

static void die(const char *what)
{
    fprintf(stderr, "bench: %s: %s\n", what, kvq_last_error());
    exit(1);
}

static void die_bench(const char *what, const char *msg)
{
    fprintf(stderr, "bench: %s: %s\n", what, msg);
    exit(1);
}

static void print_row(const row *w)
{
    printf("%-44s %2d thr  median %10.4f ms  [%9.4f, %9.4f]", w->name, w->threads, w->s.med_ms, w->s.min_ms,
           w->s.max_ms);
    if (w->s.thr >= 1e6) printf("  %10.3f M %s/s", w->s.thr / 1e6, w->unit);
    else if (w->s.thr > 0) printf("  %10.1f %s/s", w->s.thr, w->unit);
    printf("\n");
    fflush(stdout);
}

static row *add_row(const bench_kernel *k, const bench_series *s)
{
    if (g_nrows == (int)(sizeof g_rows / sizeof g_rows[0])) die_bench(k->name, "too many rows");
    row *w = &g_rows[g_nrows++];
    snprintf(w->name, sizeof w->name, "%s", k->name);
    w->threads = k->threads;
    w->passes = k->passes;
    w->work = k->work;
    w->unit = k->unit ? k->unit : "";
    w->s = *s;
    w->best_of[0] = 0;
    print_row(w);
    return w;
}

// A row of its own: kernel k alone, `rounds` timed calls after a warm-up.
static row *measure(bench_kernel k, int rounds)
{
    bench_series s;
    const char *e = bench_run(&g_clock, &k, 1, rounds, &s);
    if (e) die_bench(k.name, e);
    return add_row(&k, &s);
}

// a against b in alternating rounds; with add_a, a's series is also a's row.
static void compare(const char *key, const char *what, bench_ratio_kind kind, const bench_kernel *a,
                    const bench_kernel *b, bool add_a)
{
    if (g_nratios == (int)(sizeof g_ratios / sizeof g_ratios[0])) die_bench(key, "too many ratios");
    bench_kernel k[2] = {*a, *b};
    bench_series s[2];
    const char *e = bench_run(&g_clock, k, 2, BENCH_ROUNDS, s);
    ratio *q = &g_ratios[g_nratios];
    if (!e) e = bench_ratio_compute(kind, a, &s[0], b, &s[1], &q->r);
    if (e) die_bench(key, e);
    g_nratios++;
    snprintf(q->key, sizeof q->key, "%s", key);
    q->what = what;
    snprintf(q->a, sizeof q->a, "%s", a->name);
    snprintf(q->b, sizeof q->b, "%s", b->name);
    q->ka = *a;
    q->kb = *b;
    q->ka.name = q->a;
    q->kb.name = q->b;
    q->sa = s[0];
    q->sb = s[1];
    if (add_a) add_row(a, &s[0]);
    printf("  ratio %-36s median %8.3f  [%7.3f, %7.3f]  %s\n", key, q->r.med, q->r.min, q->r.max, what);
    fflush(stdout);
}

static void set_threads(int n)
{
    kvq_threads_set(n);
    openblas_set_num_threads(1);   // parallelism is ours: over heads and blocks
}

// prepare hook of every engine kernel: the thread count is part of the row
static void prep_threads(void *ctx, int threads)
{
    (void)ctx;
    set_threads(threads);
}

// ---- data: the sample trace, tiled ----

static bench_tiled g_tr;   // keys, vals (L*KVH, ntok, D); q (NH, D)

static void load_trace(void)
{
    const char *e = bench_tiled_load(&g_tr, TRACE_PATH, D, NH);
    if (e) die_bench("trace", e);
}

static const float *tok(const float *src, int h, int i) { return bench_tiled_tok(&g_tr, src, h, i); }

// ---- encode / decode / score ----
#define CODEC_N 12288
#define CODEC_BLOCK 512
#define CODEC_CALL_S 0.02   // fast codecs repeat their pass so a call is not lost in scheduler noise

typedef struct codec_ctx {
    kvq_quantizer q;
    const float *x;
    float *y;
    uint8_t *codes;
    size_t n;
    int enc_passes, dec_passes;   // per timed call: a call of >= CODEC_CALL_S
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
// One pass each: c->n vectors encoded / decoded, c->n keys scored.
static void pass_enc(void *u, int i)
{
    (void)i;
    codec_ctx *c = u;
    kvq_encode_parallel(&c->q, c->x, c->n, c->codes);
}

static void pass_dec(void *u, int i)
{
    (void)i;
    codec_ctx *c = u;
    kvq_decode_parallel(&c->q, c->codes, c->n, c->y);
}

static void pass_score(void *u, int i)
{
    (void)i;
    codec_ctx *c = u;
    kvq_parallel_for(nblocks(c->n, 4096), score_task, c);
}

// work per pass is c->n: the vectors (or keys) that one pass goes through
static bench_kernel codec_kernel(const char *name, void (*pass)(void *, int), codec_ctx *c, int threads,
                                 int passes, const char *unit)
{
    return (bench_kernel){.name = name, .prepare = prep_threads, .pass = pass, .ctx = c, .threads = threads,
                          .passes = passes, .work = (double)c->n, .unit = unit};
}

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

static int passes_for(double pass_s)
{
    double p = ceil(CODEC_CALL_S / (pass_s > 1e-9 ? pass_s : 1e-9));
    return p < 1 ? 1 : p > 256 ? 256 : (int)p;
}

// The quantizer, codes of c->n vectors, and c->n cut down for slow encoders
// (a pass of ~40 ms, at least one block) so the whole bench stays within
// minutes; fast ones get several passes per call instead. The codes are
// filled (decode rows read them). The sizing times only pick n and passes:
// every figure comes from the rounds.
static bool codec_open(codec_ctx *c, const char *method, int bits)
{
    kvq_config cfg;
    if (!codec_init(c, method, bits, &cfg)) return false;
    size_t n = c->n;
    c->codes = malloc(c->q.bpv * n);
    double t0 = kvq_now_s();
    c->q.m->encode(c->q.plan, c->x, CODEC_BLOCK, c->codes);
    double per = (kvq_now_s() - t0) / CODEC_BLOCK;
    c->n = per * (double)n > 0.04 ? (size_t)(0.04 / per) / CODEC_BLOCK * CODEC_BLOCK : n;
    if (c->n < CODEC_BLOCK) c->n = CODEC_BLOCK;
    t0 = kvq_now_s();
    kvq_encode_parallel(&c->q, c->x, c->n, c->codes);
    double t1 = kvq_now_s();
    kvq_decode_parallel(&c->q, c->codes, c->n, c->y);
    c->enc_passes = passes_for(t1 - t0);
    c->dec_passes = passes_for(kvq_now_s() - t1);
    return true;
}

static void codec_close(codec_ctx *c)
{
    free(c->codes);
    kvq_quantizer_free(&c->q);
}

static void bench_codecs(void)
{
    size_t n = CODEC_N < (size_t)g_tr.ntok * g_tr.nstreams ? CODEC_N : (size_t)g_tr.ntok * g_tr.nstreams;
    float *y = malloc(sizeof(float) * n * D);
    char ne[80], nd[80];
    for (int mi = 0; mi < kvq_n_methods; mi++) {
        const kvq_method *m = &kvq_methods[mi];
        for (int bits = 2; bits <= 16; bits++) {
            bool base = m->min_bits == m->max_bits;
            if (base ? bits != m->min_bits : (bits > 4 || bits < m->min_bits || bits > m->max_bits)) continue;
            codec_ctx c = {.x = g_tr.keys, .y = y, .n = n};
            if (!codec_open(&c, m->name, bits)) {
                printf("%-44s skipped: %s\n", m->name, kvq_last_error());
                break;
            }
            snprintf(ne, sizeof ne, "encode %s %d-bit", m->name, bits);
            snprintf(nd, sizeof nd, "decode %s %d-bit", m->name, bits);
            for (int th = 2; th >= 1; th--) {
                measure(codec_kernel(ne, pass_enc, &c, th, c.enc_passes, "vec"), BENCH_ROUNDS);
                measure(codec_kernel(nd, pass_dec, &c, th, c.dec_passes, "vec"), BENCH_ROUNDS);
            }
            codec_close(&c);
        }
    }
    // the ratios: turboquant_mse 3-bit against q4_0, and 2 threads against 1
    codec_ctx t = {.x = g_tr.keys, .y = y, .n = n}, q = {.x = g_tr.keys, .y = y, .n = n};
    if (!codec_open(&t, "turboquant_mse", 3)) die("turboquant_mse");
    if (!codec_open(&q, "q4_0", 4)) die("q4_0");
    const char *te = "encode turboquant_mse 3-bit", *qe = "encode q4_0 4-bit";
    const char *td = "decode turboquant_mse 3-bit", *qd = "decode q4_0 4-bit";
    bench_kernel te1 = codec_kernel(te, pass_enc, &t, 1, t.enc_passes, "vec");
    bench_kernel qe1 = codec_kernel(qe, pass_enc, &q, 1, q.enc_passes, "vec");
    bench_kernel td1 = codec_kernel(td, pass_dec, &t, 1, t.dec_passes, "vec");
    bench_kernel qd1 = codec_kernel(qd, pass_dec, &q, 1, q.dec_passes, "vec");
    bench_kernel te2 = codec_kernel(te, pass_enc, &t, 2, t.enc_passes, "vec");
    bench_kernel qe2 = codec_kernel(qe, pass_enc, &q, 2, q.enc_passes, "vec");
    compare("encode_tq_mse3_vs_q4_0", "encode throughput, 1 thread (>1 = faster)", BENCH_RATIO_THROUGHPUT, &te1,
            &qe1, false);
    compare("decode_tq_mse3_vs_q4_0", "decode throughput, 1 thread", BENCH_RATIO_THROUGHPUT, &td1, &qd1, false);
    compare("threads2_vs_1_encode_tq_mse3", "speedup: encode throughput at 2 threads / 1 thread",
            BENCH_RATIO_THROUGHPUT, &te2, &te1, false);
    compare("threads2_vs_1_encode_q4_0", "speedup: encode throughput at 2 threads / 1 thread",
            BENCH_RATIO_THROUGHPUT, &qe2, &qe1, false);
    codec_close(&t);
    codec_close(&q);
    free(y);
}

// Scoring one query from codes: q4_0 (our float-query dot) vs turboquant_mse.
// A pass scores SCORE_N keys; SCORE_PASSES passes make a call long enough to time.
#define SCORE_N 65536
#define SCORE_PASSES 16
static void bench_scores(void)
{
    enum { NS = 5 };
    const char *ms[NS] = {"q4_0", "q8_0", "turboquant_mse", "turboquant_mse", "turboquant_mse"};
    const int bs[NS] = {4, 8, 3, 2, 4};
    char names[NS][80];
    float *x = malloc(sizeof(float) * SCORE_N * D);
    for (int i = 0; i < SCORE_N; i++) memcpy(x + (size_t)i * D, tok(g_tr.keys, 0, i), sizeof(float) * D);
    codec_ctx c[NS];
    for (int k = 0; k < NS; k++) {
        c[k] = (codec_ctx){.x = x, .n = SCORE_N};
        kvq_config cfg;
        if (!codec_init(&c[k], ms[k], bs[k], &cfg)) die(ms[k]);
        c[k].codes = malloc(c[k].q.bpv * SCORE_N);
        c[k].scores = malloc(sizeof(float) * SCORE_N);
        c[k].qs = malloc(c[k].q.qbytes + 64);
        c[k].q.m->encode(c[k].q.plan, x, SCORE_N, c[k].codes);
        c[k].q.m->prepare_query(c[k].q.plan, g_tr.q, c[k].qs);
        snprintf(names[k], sizeof names[k], "score %s %d-bit", ms[k], bs[k]);
    }
    for (int th = 2; th >= 1; th--)
        for (int k = 0; k < NS; k++)
            measure(codec_kernel(names[k], pass_score, &c[k], th, SCORE_PASSES, "key"), BENCH_ROUNDS);
    bench_kernel t1 = codec_kernel(names[2], pass_score, &c[2], 1, SCORE_PASSES, "key");
    bench_kernel q1 = codec_kernel(names[0], pass_score, &c[0], 1, SCORE_PASSES, "key");
    compare("score_tq_mse3_vs_q4_0", "keys/s scored from codes, 1 thread (>1 = faster)", BENCH_RATIO_THROUGHPUT,
            &t1, &q1, false);
    for (int k = 0; k < NS; k++) {
        free(c[k].codes);
        free(c[k].scores);
        free(c[k].qs);
        kvq_quantizer_free(&c[k].q);
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
                g_tr.q + (size_t)h * per * D, D, 0.0f, S, per);
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
            kvq_dot_rows(g_tr.q + ((size_t)h * per + j) * D, K + (size_t)p0 * D, (size_t)k, D, w);
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
    int n;
    float out[NH * D];
} att_ctx;

// A pass of every attention kernel is one decode step over a->n positions.
static void pass_f32(void *u, int i)
{
    (void)i;
    att_ctx *a = u;
    kvq_parallel_for(KVH, f32_task, a->f);
}

// The same with one cblas_sgemv per query head (K q, then V^T w).
static void f32v_task(void *u, int hq)
{
    f32_ctx *c = u;
    const int n = c->n, h = hq / (NH / KVH);
    const float *K = c->K + (size_t)h * n * D, *V = c->V + (size_t)h * n * D;
    float *S = c->S + (size_t)hq * n;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, D, 1.0f / sqrtf((float)D), K, D, g_tr.q + (size_t)hq * D, 1,
                0.0f, S, 1);
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = S[i] > mx ? S[i] : mx;
    for (int i = 0; i < n; i++) S[i] -= mx;
    kvq_exp_inplace(S, (size_t)n);
    double l = 0;
    for (int i = 0; i < n; i++) l += S[i];
    cblas_sgemv(CblasRowMajor, CblasTrans, n, D, (float)(1.0 / l), V, D, S, 1, 0.0f, c->out + (size_t)hq * D, 1);
}

static void pass_f32v(void *u, int i)
{
    (void)i;
    att_ctx *a = u;
    kvq_parallel_for(NH, f32v_task, a->f);
}

static void pass_f32k(void *u, int i)
{
    (void)i;
    att_ctx *a = u;
    kvq_parallel_for(KVH, f32k_task, a->f);
}

static void pass_cache(void *u, int i)
{
    (void)i;
    att_ctx *a = u;
    int32_t pos = a->n - 1;
    if (kvq_cache_attend(a->cache, g_tr.q, NH, 1, &pos, a->out)) die("attend");
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
                memcpy(k + ((size_t)h * m + i) * D, tok(g_tr.keys, h, p0 + i), sizeof(float) * D);
                memcpy(v + ((size_t)h * m + i) * D, tok(g_tr.vals, h, p0 + i), sizeof(float) * D);
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

// passes = 65536 / n decode steps per call, so a call lasts long enough to time
static bench_kernel att_kernel(const char *name, void (*pass)(void *, int), att_ctx *a, int threads)
{
    return (bench_kernel){.name = name, .prepare = prep_threads, .pass = pass, .ctx = a, .threads = threads,
                          .passes = 65536 / a->n, .work = 0, .unit = ""};
}

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
        f32_ctx f = {.n = n};
        f.K = malloc(sizeof(float) * KVH * (size_t)n * D);
        f.V = malloc(sizeof(float) * KVH * (size_t)n * D);
        f.S = malloc(sizeof(float) * KVH * (size_t)n * NH);
        for (int h = 0; h < KVH; h++)
            for (int i = 0; i < n; i++) {
                memcpy(f.K + ((size_t)h * n + i) * D, tok(g_tr.keys, h, i), sizeof(float) * D);
                memcpy(f.V + ((size_t)h * n + i) * D, tok(g_tr.vals, h, i), sizeof(float) * D);
            }
        att_ctx a = {.f = &f, .n = n};
        char name[80], key[64];
        // The baseline of every ratio at this length and thread count: the
        // fp32 formulation with the lowest median of three timed alternately.
        char fname[3][3][80];   // [threads][formulation]
        bench_kernel best[3];
        for (int th = 2; th >= 1; th--) {
            snprintf(fname[th][0], 80, "attend %dk fp32 sgemm", n / 1024);
            snprintf(fname[th][1], 80, "attend %dk fp32 sgemv", n / 1024);
            snprintf(fname[th][2], 80, "attend %dk fp32 engine kernels", n / 1024);
            bench_kernel k[3] = {att_kernel(fname[th][0], pass_f32, &a, th),
                                 att_kernel(fname[th][1], pass_f32v, &a, th),
                                 att_kernel(fname[th][2], pass_f32k, &a, th)};
            bench_series s[3];
            const char *e = bench_run(&g_clock, k, 3, BENCH_ROUNDS, s);
            if (e) die_bench(fname[th][0], e);
            int j = 0;
            for (int i = 0; i < 3; i++) {
                add_row(&k[i], &s[i]);
                if (s[i].med_ms < s[j].med_ms) j = i;
            }
            best[th] = k[j];
            snprintf(name, sizeof name, "attend %dk fp32 (best of the three)", n / 1024);
            bench_kernel bk = k[j];
            bk.name = name;
            row *w = add_row(&bk, &s[j]);
            snprintf(w->best_of, sizeof w->best_of, "%s", k[j].name);
        }
        if (n == 65536)
            compare("threads2_vs_1_attend_64k_fp32", "speedup: fp32 time at 1 thread / 2 threads (best of each)",
                    BENCH_RATIO_TIME, &best[1], &best[2], false);
        for (int s = 0; s < nspec; s++) {
            if (n > specs[s].max_ctx || (g_quick && s > 4 && n > 4096)) continue;
            a.cache = make_cache(&specs[s], n);
            if (!a.cache) {
                if (ci == 0) printf("attend %-36s skipped: %s\n", specs[s].label, kvq_last_error());
                continue;
            }
            snprintf(name, sizeof name, "attend %dk %s", n / 1024, specs[s].label);
            for (int th = 2; th >= 1; th--) {
                snprintf(key, sizeof key, "attend_%dk_%s_vs_fp32%s", n / 1024, specs[s].label,
                         th == 2 ? "_threads2" : "");
                bench_kernel k = att_kernel(name, pass_cache, &a, th);
                compare(key, th == 2 ? "time ratio to fp32, 2 threads (<1 = faster)"
                                     : "time ratio to fp32, 1 thread (<1 = faster)",
                        BENCH_RATIO_TIME, &k, &best[th], true);
            }
            if (n == 65536 && strcmp(specs[s].label, "tq_mse3") == 0) {
                bench_kernel k1 = att_kernel(name, pass_cache, &a, 1), k2 = att_kernel(name, pass_cache, &a, 2);
                compare("threads2_vs_1_attend_64k", "speedup: tq_mse3 fused time at 1 thread / 2 threads",
                        BENCH_RATIO_TIME, &k1, &k2, false);
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
    char rname[80];
    for (int i = 0; i < kvq_n_calibrators; i++) {
        const char *name = kvq_calibrators[i].name;
        kvq_calib_opts o;
        kvq_calib_opts_default(&o);
        kvq_artifacts *art = NULL;
        double t0 = kvq_now_s();
        kvq_status st = kvq_calibrate(name, t, &o, NULL, &art);
        double sec = kvq_now_s() - t0;
        if (st) {
            printf("calibrate %-34s failed: %s\n", name, kvq_last_error());
            continue;
        }
        // Calibration runs once (seconds each, no warm-up): one round, min = median = max.
        snprintf(rname, sizeof rname, "calibrate %s (sample trace)", name);
        bench_kernel k = {.name = rname, .threads = 1, .passes = 1, .work = 0, .unit = ""};
        bench_series s = {.rounds = 1, .call_s = {sec}};
        bench_series_stats(&k, &s);
        add_row(&k, &s);
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

static void prep_model(void *u, int threads)
{
    (void)u;
    set_threads(threads);
    openblas_set_num_threads(threads);
}

// one pass: reset, then n_prefill tokens at once
static void pass_prefill(void *u, int i)
{
    (void)i;
    model_ctx *m = u;
    kvq_runner_reset(m->r);
    if (kvq_runner_forward(m->r, m->tok, m->n_prefill, false, NULL)) die("prefill");
}

// untimed: reset and a prefill of 64 tokens; then pass i decodes token 64 + i
static void prep_decode(void *u, int threads)
{
    prep_model(u, threads);
    model_ctx *m = u;
    kvq_runner_reset(m->r);
    if (kvq_runner_forward(m->r, m->tok, 64, false, NULL)) die("prefill");
}

static void pass_decode(void *u, int i)
{
    model_ctx *m = u;
    if (kvq_runner_forward(m->r, m->tok + 64 + i, 1, false, NULL)) die("decode");
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
        char np[80], nd[80];
        snprintf(np, sizeof np, "model prefill %d tok, %s cache", m.n_prefill, cfgs[k]);
        snprintf(nd, sizeof nd, "model decode %d tok after 64, %s cache", m.n_decode, cfgs[k]);
        for (int th = 2; th >= 1; th--) {
            measure((bench_kernel){.name = np, .prepare = prep_model, .pass = pass_prefill, .ctx = &m,
                                   .threads = th, .passes = 1, .work = m.n_prefill, .unit = "tok"},
                    MODEL_ROUNDS);
            measure((bench_kernel){.name = nd, .prepare = prep_decode, .pass = pass_decode, .ctx = &m,
                                   .threads = th, .passes = m.n_decode, .work = 1, .unit = "tok"},
                    MODEL_ROUNDS);
        }
        kvq_runner_free(m.r);
    }
    free(m.tok);
    kvq_model_free(mod);
}

#endif

// ---- results ----
static double g_load_start[3] = {-1, -1, -1};
static char g_start_utc[32];

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *call_ms(const bench_series *s)
{
    json_t *a = json_array();
    for (int i = 0; i < s->rounds; i++) json_array_append_new(a, json_real(s->call_s[i] * 1e3));
    return a;
}

static json_t *load_json(const double l[3])
{
    json_t *a = json_array();
    for (int i = 0; i < 3; i++) json_array_append_new(a, num(l[i]));
    return a;
}

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && c) {
            c += strspn(c + 1, " \t") + 1;
            c[strcspn(c, "\n")] = 0;
            snprintf(buf, n, "%s", c);
            break;
        }
    }
    fclose(f);
}

static json_t *machine_json(void)
{
    json_t *m = json_object();
    char cpu[160];
    cpu_model(cpu, sizeof cpu);
    json_object_set_new(m, "cpu", json_string(cpu));
    json_object_set_new(m, "online_cpus", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    struct utsname u;
    if (uname(&u) == 0) {
        char os[200];
        snprintf(os, sizeof os, "%s %s %s", u.sysname, u.release, u.machine);
        json_object_set_new(m, "os", json_string(os));
    }
#if defined(__clang__)
    json_object_set_new(m, "compiler", json_string("clang " __clang_version__));
#elif defined(__GNUC__)
    json_object_set_new(m, "compiler", json_string("gcc " __VERSION__));
#endif
    json_object_set_new(m, "simd", json_string(kvq_simd_name()));
    json_object_set_new(m, "started_utc", json_string(g_start_utc));
    double l[3] = {-1, -1, -1};
    if (getloadavg(l, 3) != 3) l[0] = l[1] = l[2] = NAN;
    json_object_set_new(m, "loadavg_start", load_json(g_load_start));
    json_object_set_new(m, "loadavg_end", load_json(l));
    return m;
}

static void write_results(void)
{
    json_t *root = json_object(), *rows = json_array(), *r = json_object();
    for (int i = 0; i < g_nrows; i++) {
        const row *w = &g_rows[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(w->name));
        json_object_set_new(o, "threads", json_integer(w->threads));
        json_object_set_new(o, "passes", json_integer(w->passes));
        json_object_set_new(o, "median_ms", num(w->s.med_ms));
        json_object_set_new(o, "min_ms", num(w->s.min_ms));
        json_object_set_new(o, "max_ms", num(w->s.max_ms));
        json_object_set_new(o, "call_ms", call_ms(&w->s));
        if (w->s.thr > 0) {
            json_object_set_new(o, "work_per_pass", json_real(w->work));
            json_object_set_new(o, "throughput", json_real(w->s.thr));
            json_object_set_new(o, "throughput_unit", json_string(w->unit));
        }
        if (w->best_of[0]) json_object_set_new(o, "best_of", json_string(w->best_of));
        json_array_append_new(rows, o);
    }
    for (int i = 0; i < g_nratios; i++) {
        const ratio *q = &g_ratios[i];
        json_t *o = json_object(), *pr = json_array();
        json_object_set_new(o, "what", json_string(q->what));
        json_object_set_new(o, "kind", json_string(q->r.kind == BENCH_RATIO_TIME ? "time" : "throughput"));
        json_object_set_new(o, "median", num(q->r.med));
        json_object_set_new(o, "min", num(q->r.min));
        json_object_set_new(o, "max", num(q->r.max));
        for (int k = 0; k < q->r.rounds; k++) json_array_append_new(pr, num(q->r.r[k]));
        json_object_set_new(o, "per_round", pr);
        const bench_kernel *ks[2] = {&q->ka, &q->kb};
        const bench_series *ss[2] = {&q->sa, &q->sb};
        const char *side[2] = {"a", "b"};
        for (int k = 0; k < 2; k++) {
            json_t *x = json_object();
            json_object_set_new(x, "name", json_string(ks[k]->name));
            json_object_set_new(x, "threads", json_integer(ks[k]->threads));
            json_object_set_new(x, "passes", json_integer(ks[k]->passes));
            if (ks[k]->work > 0) json_object_set_new(x, "work_per_pass", json_real(ks[k]->work));
            json_object_set_new(x, "call_ms", call_ms(ss[k]));
            json_object_set_new(o, side[k], x);
        }
        json_object_set_new(r, q->key, o);
    }
    json_object_set_new(root, "format", json_integer(2));
    json_object_set_new(root, "machine", machine_json());
    json_object_set_new(root, "head_dim", json_integer(D));
    json_object_set_new(root, "rounds", json_integer(BENCH_ROUNDS));
    json_object_set_new(root, "model_rounds", json_integer(MODEL_ROUNDS));
    json_object_set_new(root, "rows", rows);
    json_object_set_new(root, "ratios", r);
    const char *tmp = RESULTS ".tmp";
    if (json_dump_file(root, tmp, JSON_INDENT(1)) != 0 || rename(tmp, RESULTS) != 0) {
        fprintf(stderr, "bench: cannot write %s\n", RESULTS);
        remove(tmp);
        exit(1);
    }
    json_decref(root);
    printf("wrote %s (%d rows, %d ratios)\n", RESULTS, g_nrows, g_nratios);
}

int main(void)
{
    const char *qe = getenv("BENCH_QUICK");
    g_quick = qe && qe[0] == '1';
    const char *only = getenv("BENCH_ONLY");   // substring of the sections to run
    double t0 = kvq_now_s();
    time_t now = time(NULL);
    strftime(g_start_utc, sizeof g_start_utc, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (getloadavg(g_load_start, 3) != 3) g_load_start[0] = g_load_start[1] = g_load_start[2] = NAN;
    printf("kvstudio bench: head_dim %d, %d alternating rounds after a warm-up, simd %s, load average %.2f\n", D,
           BENCH_ROUNDS, kvq_simd_name(), g_load_start[0]);
    load_trace();
#ifndef BENCH_LITE
    if (!g_quick && (!only || strstr(only, "calib"))) bench_calibration();
#endif
    if (!only || strstr(only, "codec")) bench_codecs();
    if (!only || strstr(only, "score")) bench_scores();
    if (!only || strstr(only, "attend")) bench_attention();
#ifndef BENCH_LITE
    if (!g_quick && (!only || strstr(only, "model"))) bench_model();
#endif
    write_results();
    printf("total %.1f s\n", kvq_now_s() - t0);
    for (int i = 0; i < g_narts; i++) kvq_artifacts_free(g_arts[i]);
    bench_tiled_free(&g_tr);
    kvq_threads_shutdown();
    return 0;
}
