// bench_core.h — the timing and statistics core of `make bench` (bench.c):
// kernels timed in alternating rounds, per-round ratios with their median,
// min and max, and throughput. No engine code: the clock is injected, so
// tests/test_bench.c drives the whole arithmetic with a fake clock whose
// kernels take an exact, known time.
//
// Units, fixed here and nowhere else:
//   clock             seconds (monotonic)
//   call_s[]          seconds per timed call, one per round, raw
//   med/min/max_ms    milliseconds per pass (call seconds / passes * 1e3)
//   thr               work units per second = work * passes / median call seconds
//   time ratio        (a's seconds per pass) / (b's), per round: < 1 = a faster
//   throughput ratio  (a's work per second) / (b's), per round: > 1 = a faster
// A median of an even count is the mean of the two middle values.
#ifndef BENCH_CORE_H
#define BENCH_CORE_H

#define BENCH_MAX_ROUNDS 32
#define BENCH_MAX_KERNELS 5

typedef struct bench_clock {
    double (*now_s)(void *u);   // monotonic seconds
    void *u;
} bench_clock;

// One timed call: prepare(ctx, threads) untimed, then pass(ctx, i) for
// i = 0 .. passes-1 timed as a whole. The core makes the calls itself, so the
// passes it divides by are the passes that ran. The kernel's memory belongs
// to the caller; the core never allocates.
typedef struct bench_kernel {
    const char *name;
    void (*prepare)(void *ctx, int threads);   // may be NULL: thread count, set-up not to time
    void (*pass)(void *ctx, int i);
    void *ctx;
    int threads;        // handed to prepare; recorded with the row
    int passes;         // passes per timed call, >= 1
    double work;        // work units in one pass (vectors, keys, tokens); 0: no throughput
    const char *unit;   // of the work: "vec", "key", "tok"; "" without work
} bench_kernel;

typedef struct bench_series {
    int rounds;
    double call_s[BENCH_MAX_ROUNDS];   // raw, in round order
    double med_ms, min_ms, max_ms;     // per pass
    double thr;                        // 0 when work is 0
} bench_series;

typedef enum bench_ratio_kind { BENCH_RATIO_TIME, BENCH_RATIO_THROUGHPUT } bench_ratio_kind;

typedef struct bench_ratio {
    bench_ratio_kind kind;
    int rounds;
    double r[BENCH_MAX_ROUNDS];   // per round, in round order
    double med, min, max;
} bench_ratio;

// NULL when the kernel can be timed, else what is wrong with it.
const char *bench_kernel_check(const bench_kernel *k);

// Which kernel (0 .. nk-1) takes slot `slot` of round `round`: forward on
// even rounds, backward on odd ones, so two kernels run A B B A A B ... and
// a load that drifts over the run hits both sides alike.
int bench_order(int nk, int round, int slot);

// One untimed warm-up call of each kernel, then `rounds` rounds in which
// every kernel is called once (bench_order). out[j] gets kernel j's series
// with its statistics. NULL, or a message when a kernel or the counts are
// bad (nothing runs then).
const char *bench_run(const bench_clock *clk, const bench_kernel *k, int nk, int rounds, bench_series *out);

// Fills med/min/max_ms and thr of s from s->rounds raw call times.
void bench_series_stats(const bench_kernel *k, bench_series *s);

// Median of x[0..n-1] (n >= 1, at most BENCH_MAX_ROUNDS); x is not changed.
double bench_median(const double *x, int n);

// Per-round ratio of a over b, both series from the same bench_run; NULL or
// a message (round counts differ, throughput ratio without work).
const char *bench_ratio_compute(bench_ratio_kind kind, const bench_kernel *a, const bench_series *sa,
                                const bench_kernel *b, const bench_series *sb, bench_ratio *out);

#endif
