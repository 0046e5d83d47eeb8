// test_bench.c — the arithmetic of `make bench` (bench/bench_core.c) on a
// fake clock: every fake kernel takes an exact number of ticks per pass (a
// power of two, so all sums are exact), a schedule scales the cost of each
// call like a changing machine load, and the reported times, throughputs and
// ratios are checked for equality. No real time is measured here.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "bench_core.h"

#define TICK (1.0 / 1024)   // seconds

typedef struct fake_world {
    double t;                   // the clock, seconds
    const double *load_of_call; // cost factor of the k-th call (warm-ups count); NULL: 1
    double load;
    int calls;
    char log[64];               // kernel letters in call order
} fake_world;

typedef struct fake_kernel {
    fake_world *w;
    char letter;
    double cost_s;      // per pass at load 1 and 1 thread
    double prepare_s;   // burnt by prepare, which the core must not time
    int threads;        // last handed to prepare
    int passes_in_call;
} fake_kernel;

static double fake_now(void *u) { return ((fake_world *)u)->t; }

static void fake_prepare(void *ctx, int threads)
{
    fake_kernel *k = ctx;
    fake_world *w = k->w;
    w->load = w->load_of_call ? w->load_of_call[w->calls] : 1;
    if (w->calls < (int)sizeof w->log - 1) w->log[w->calls] = k->letter;
    w->calls++;
    k->threads = threads;
    k->passes_in_call = 0;
    w->t += k->prepare_s;
}

static void fake_pass(void *ctx, int i)
{
    fake_kernel *k = ctx;
    assert_int_equal(i, k->passes_in_call);
    k->passes_in_call++;
    k->w->t += k->cost_s * k->w->load / k->threads;
}

static bench_kernel kernel_of(fake_kernel *f, int threads, int passes, double work)
{
    return (bench_kernel){.name = "fake", .prepare = fake_prepare, .pass = fake_pass, .ctx = f,
                          .threads = threads, .passes = passes, .work = work, .unit = "key"};
}

#define assert_exact(x, y)                                                                   \
    do {                                                                                     \
        double x_ = (x), y_ = (y);                                                           \
        if (x_ != y_) fail_msg("%s = %.17g, expected %.17g", #x, x_, y_);                    \
    } while (0)

// The defect of issue 17: the score row timed ONE pass over 65536 keys and
// divided by reps = 4, so it reported 4x the keys/s. Here a pass of 65536
// keys takes exactly 1 tick; with 4 passes per call the core must run 4
// passes, time 4 ticks per call and report 65536 keys per tick, not 4x that.
static void test_passes_are_run_and_divided_once(void **st)
{
    (void)st;
    fake_world w = {0};
    fake_kernel f = {.w = &w, .letter = 'S', .cost_s = TICK, .prepare_s = 0.5};
    bench_kernel k = kernel_of(&f, 1, 4, 65536);
    bench_series s;
    bench_clock clk = {fake_now, &w};
    assert_null(bench_run(&clk, &k, 1, 8, &s));
    assert_int_equal(w.calls, 9);   // one warm-up + 8 rounds
    assert_int_equal(f.passes_in_call, 4);
    assert_int_equal(s.rounds, 8);
    for (int r = 0; r < 8; r++) assert_exact(s.call_s[r], 4 * TICK);   // prepare's 0.5 s not timed
    assert_exact(s.med_ms, TICK * 1e3);
    assert_exact(s.min_ms, TICK * 1e3);
    assert_exact(s.max_ms, TICK * 1e3);
    assert_exact(s.thr, 65536.0 * 1024);   // 67.1 M keys/s; the old bench said 268 M
}

static void test_abba_order(void **st)
{
    (void)st;
    fake_world w = {0};
    fake_kernel a = {.w = &w, .letter = 'A', .cost_s = TICK}, b = {.w = &w, .letter = 'B', .cost_s = TICK},
                c = {.w = &w, .letter = 'C', .cost_s = TICK};
    bench_kernel k[3] = {kernel_of(&a, 1, 1, 0), kernel_of(&b, 1, 1, 0), kernel_of(&c, 1, 1, 0)};
    bench_series s[3];
    bench_clock clk = {fake_now, &w};
    assert_null(bench_run(&clk, k, 2, 4, s));
    assert_string_equal(w.log, "AB" "AB" "BA" "AB" "BA");   // warm-ups, then rounds
    memset(&w, 0, sizeof w);
    assert_null(bench_run(&clk, k, 3, 3, s));
    assert_string_equal(w.log, "ABC" "ABC" "CBA" "ABC");
    assert_int_equal(bench_order(2, 0, 0), 0);
    assert_int_equal(bench_order(2, 1, 0), 1);
}

// The defect of issue 17: "all runs of A, then all of B" let the ratio swing
// with the load. The machine gets 2x slower halfway (a step in the load):
// timed in alternating rounds every round sees one load on both sides, so
// the ratio is exactly 3/4; one after the other it would read 3/8.
static void test_ratio_immune_to_a_load_step(void **st)
{
    (void)st;
    double load[18];
    for (int i = 0; i < 18; i++) load[i] = i < 10 ? 1 : 2;   // 2 warm-ups + rounds 0-3, then 4-7
    fake_world w = {.load_of_call = load};
    fake_kernel a = {.w = &w, .letter = 'A', .cost_s = 3 * TICK}, b = {.w = &w, .letter = 'B', .cost_s = 4 * TICK};
    bench_kernel k[2] = {kernel_of(&a, 1, 1, 0), kernel_of(&b, 1, 1, 0)};
    bench_series s[2];
    bench_clock clk = {fake_now, &w};
    assert_null(bench_run(&clk, k, 2, 8, s));
    assert_int_equal(w.calls, 18);
    bench_ratio r;
    assert_null(bench_ratio_compute(BENCH_RATIO_TIME, &k[0], &s[0], &k[1], &s[1], &r));
    for (int i = 0; i < 8; i++) assert_exact(r.r[i], 0.75);
    assert_exact(r.med, 0.75);
    assert_exact(r.min, 0.75);
    assert_exact(r.max, 0.75);
    // each side's own figures still carry the step: median of 4x3 and 4x6 ticks
    assert_exact(s[0].med_ms, 4.5 * TICK * 1e3);
    assert_exact(s[0].min_ms, 3 * TICK * 1e3);
    assert_exact(s[0].max_ms, 6 * TICK * 1e3);
    // a throughput ratio needs work on both sides
    assert_non_null(bench_ratio_compute(BENCH_RATIO_THROUGHPUT, &k[0], &s[0], &k[1], &s[1], &r));
}

// Per-round ratios under a load that changes every call; the median of an
// even count is the mean of the two middle values.
static void test_ratio_per_round(void **st)
{
    (void)st;
    // warm-ups A B; rounds: A B | B A | A B | B A
    const double load[] = {1, 1, 1, 1, 2, 1, 4, 1, 1, 2};
    fake_world w = {.load_of_call = load};
    fake_kernel a = {.w = &w, .letter = 'A', .cost_s = TICK}, b = {.w = &w, .letter = 'B', .cost_s = 2 * TICK};
    bench_kernel k[2] = {kernel_of(&a, 1, 1, 100), kernel_of(&b, 1, 1, 100)};
    bench_series s[2];
    bench_clock clk = {fake_now, &w};
    assert_null(bench_run(&clk, k, 2, 4, s));
    // A: 1, 1, 4, 2 ticks; B: 2, 4, 2, 2 ticks
    const double ta[] = {1, 1, 4, 2}, tb[] = {2, 4, 2, 2};
    for (int i = 0; i < 4; i++) {
        assert_exact(s[0].call_s[i], ta[i] * TICK);
        assert_exact(s[1].call_s[i], tb[i] * TICK);
    }
    bench_ratio r;
    assert_null(bench_ratio_compute(BENCH_RATIO_TIME, &k[0], &s[0], &k[1], &s[1], &r));
    const double want[] = {0.5, 0.25, 2, 1};
    for (int i = 0; i < 4; i++) assert_exact(r.r[i], want[i]);
    assert_exact(r.med, 0.75);
    assert_exact(r.min, 0.25);
    assert_exact(r.max, 2);
    assert_null(bench_ratio_compute(BENCH_RATIO_THROUGHPUT, &k[0], &s[0], &k[1], &s[1], &r));
    assert_exact(r.med, 1.5);   // of 2, 4, 0.5, 1: not 1 / 0.75
    assert_exact(r.min, 0.5);
    assert_exact(r.max, 4);
    assert_exact(s[0].thr, 100 / (1.5 * TICK));   // median call 1.5 ticks, 1 pass of 100
}

// A speedup of 2 threads over 1 is a throughput ratio: the two sides may
// have been sized to different work (the codec rows size their batch per
// run), and then their times alone say nothing. Here 2 threads halve the cost
// per key while side A does twice the keys: time ratio 1, speedup 2.
static void test_throughput_ratio_with_unequal_work(void **st)
{
    (void)st;
    fake_world w = {0};
    fake_kernel a = {.w = &w, .letter = 'A', .cost_s = 8 * TICK}, b = {.w = &w, .letter = 'B', .cost_s = 4 * TICK};
    bench_kernel k[2] = {kernel_of(&a, 2, 3, 2048), kernel_of(&b, 1, 3, 1024)};
    bench_series s[2];
    bench_clock clk = {fake_now, &w};
    assert_null(bench_run(&clk, k, 2, 6, s));
    assert_int_equal(a.threads, 2);
    assert_int_equal(b.threads, 1);
    bench_ratio r;
    assert_null(bench_ratio_compute(BENCH_RATIO_THROUGHPUT, &k[0], &s[0], &k[1], &s[1], &r));
    assert_exact(r.med, 2);
    assert_exact(r.min, 2);
    assert_exact(r.max, 2);
    assert_null(bench_ratio_compute(BENCH_RATIO_TIME, &k[0], &s[0], &k[1], &s[1], &r));
    assert_exact(r.med, 1);
    assert_exact(s[0].thr, 2048 / (4 * TICK));
    assert_exact(s[1].thr, 1024 / (4 * TICK));
    assert_exact(s[0].med_ms, 4 * TICK * 1e3);
}

static void test_bad_input_runs_nothing(void **st)
{
    (void)st;
    fake_world w = {0};
    fake_kernel f = {.w = &w, .letter = 'A', .cost_s = TICK};
    bench_kernel k[2] = {kernel_of(&f, 1, 1, 1), kernel_of(&f, 1, 1, 1)};
    bench_series s[BENCH_MAX_KERNELS + 1];
    bench_clock clk = {fake_now, &w}, none = {NULL, NULL};
    assert_non_null(bench_run(&clk, k, 1, 0, s));
    assert_non_null(bench_run(&clk, k, 1, BENCH_MAX_ROUNDS + 1, s));
    assert_non_null(bench_run(&clk, k, 0, 4, s));
    assert_non_null(bench_run(&clk, k, BENCH_MAX_KERNELS + 1, 4, s));
    assert_non_null(bench_run(&none, k, 1, 4, s));
    k[1].passes = 0;
    assert_non_null(bench_run(&clk, k, 2, 4, s));
    k[1].passes = 1;
    k[1].work = -1;
    assert_non_null(bench_run(&clk, k, 2, 4, s));
    k[1].work = 1;
    k[1].pass = NULL;
    assert_non_null(bench_run(&clk, k, 2, 4, s));
    assert_int_equal(w.calls, 0);
    assert_null(bench_run(&clk, k, 1, 3, s));
    assert_null(bench_run(&clk, k, 1, 4, s + 1));
    bench_ratio r;
    assert_non_null(bench_ratio_compute(BENCH_RATIO_TIME, &k[0], &s[0], &k[0], &s[1], &r));
}

static void test_median(void **st)
{
    (void)st;
    const double odd[] = {5, 1, 3}, even[] = {4, 1, 3, 2};
    assert_exact(bench_median(odd, 3), 3);
    assert_exact(bench_median(even, 4), 2.5);
    assert_exact(bench_median(odd, 1), 5);
    assert_exact(even[0], 4);   // input left as it was
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passes_are_run_and_divided_once),
        cmocka_unit_test(test_abba_order),
        cmocka_unit_test(test_ratio_immune_to_a_load_step),
        cmocka_unit_test(test_ratio_per_round),
        cmocka_unit_test(test_throughput_ratio_with_unequal_work),
        cmocka_unit_test(test_bad_input_runs_nothing),
        cmocka_unit_test(test_median),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
