// bench_core.c — see bench_core.h for the contract and the units.
#include "bench_core.h"
#include <stdlib.h>
#include <string.h>

const char *bench_kernel_check(const bench_kernel *k)
{
    if (!k || !k->pass) return "kernel without a pass function";
    if (k->passes < 1) return "passes per call must be >= 1";
    if (!(k->work >= 0)) return "work per pass must be >= 0";
    return NULL;
}

int bench_order(int nk, int round, int slot)
{
    return round % 2 == 0 ? slot : nk - 1 - slot;
}

static double time_call(const bench_clock *clk, const bench_kernel *k)
{
    if (k->prepare) k->prepare(k->ctx, k->threads);
    double t0 = clk->now_s(clk->u);
    for (int i = 0; i < k->passes; i++) k->pass(k->ctx, i);
    return clk->now_s(clk->u) - t0;
}

const char *bench_run(const bench_clock *clk, const bench_kernel *k, int nk, int rounds, bench_series *out)
{
    if (!clk || !clk->now_s) return "no clock";
    if (nk < 1 || nk > BENCH_MAX_KERNELS) return "kernels per run must be 1..BENCH_MAX_KERNELS";
    if (rounds < 1 || rounds > BENCH_MAX_ROUNDS) return "rounds must be 1..BENCH_MAX_ROUNDS";
    for (int j = 0; j < nk; j++) {
        const char *e = bench_kernel_check(&k[j]);
        if (e) return e;
    }
    for (int j = 0; j < nk; j++) (void)time_call(clk, &k[j]);
    for (int r = 0; r < rounds; r++)
        for (int s = 0; s < nk; s++) {
            int j = bench_order(nk, r, s);
            out[j].call_s[r] = time_call(clk, &k[j]);
        }
    for (int j = 0; j < nk; j++) {
        out[j].rounds = rounds;
        bench_series_stats(&k[j], &out[j]);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(const double *x, int n)
{
    double t[BENCH_MAX_ROUNDS];
    memcpy(t, x, sizeof t[0] * (size_t)n);
    qsort(t, (size_t)n, sizeof t[0], cmp_d);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static void min_max(const double *x, int n, double *lo, double *hi)
{
    *lo = *hi = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < *lo) *lo = x[i];
        if (x[i] > *hi) *hi = x[i];
    }
}

void bench_series_stats(const bench_kernel *k, bench_series *s)
{
    double med = bench_median(s->call_s, s->rounds), lo, hi;
    min_max(s->call_s, s->rounds, &lo, &hi);
    s->med_ms = med / k->passes * 1e3;
    s->min_ms = lo / k->passes * 1e3;
    s->max_ms = hi / k->passes * 1e3;
    s->thr = k->work > 0 && med > 0 ? k->work * k->passes / med : 0;
}

const char *bench_ratio_compute(bench_ratio_kind kind, const bench_kernel *a, const bench_series *sa,
                                const bench_kernel *b, const bench_series *sb, bench_ratio *out)
{
    if (sa->rounds != sb->rounds || sa->rounds < 1) return "the two series have different round counts";
    if (kind == BENCH_RATIO_THROUGHPUT && !(a->work > 0 && b->work > 0))
        return "a throughput ratio needs work on both sides";
    out->kind = kind;
    out->rounds = sa->rounds;
    for (int r = 0; r < sa->rounds; r++) {
        double pa = sa->call_s[r] / a->passes, pb = sb->call_s[r] / b->passes;   // seconds per pass
        out->r[r] = kind == BENCH_RATIO_TIME ? pa / pb : (a->work / pa) / (b->work / pb);
    }
    out->med = bench_median(out->r, out->rounds);
    min_max(out->r, out->rounds, &out->min, &out->max);
    return NULL;
}
