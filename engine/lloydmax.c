// lloydmax.c — Lloyd-Max quantizers for the Beta (unit-vector coordinate),
// Gaussian and Laplacian densities, and Lloyd iterations on samples.
//
// Numerical scheme: the density is tabulated on a uniform grid over its
// (truncated) support with running integrals P_k = int x^k f (k = 0, 1, 2)
// by Simpson's rule per grid interval. A partial integral up to any x is the
// table value at the grid point below x plus one Simpson step, so each
// Lloyd iteration costs O(levels) density evaluations. Levels start at the
// quantiles of f^(1/3) (the high-rate optimum, Panter-Dite), which puts
// Lloyd's fixed-point iteration close to convergence from the start.
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "lloydmax.h"

#define LM_GRID 16384          // grid intervals over the support
#define LM_MAX_ITERS 200000
#define LM_TOL 1e-8            // level movement, relative to the density's std

typedef struct {
    kvq_density dens;
    double param, expo;        // expo: Beta exponent (d-3)/2
    double lo, hi, h;
    double *p[4];              // running integrals of f, x f, x^2 f, f^(1/3): (LM_GRID+1)
    double *f;                 // f at grid points: (LM_GRID+1)
} lm_table;

static double lm_pdf(const lm_table *t, double x)
{
    switch (t->dens) {
    case KVQ_DENSITY_GAUSS: return exp(-0.5 * (x / t->param) * (x / t->param));
    case KVQ_DENSITY_LAPLACE: return exp(-fabs(x) / t->param);
    case KVQ_DENSITY_BETA:
    default:
        if (x <= -1.0 || x >= 1.0) return t->expo == 0.0 ? 1.0 : 0.0;
        return exp(t->expo * log1p(-x * x));
    }
}

// Simpson over [a, b] of x^k f (k = 0..2), given f(a); with_cbrt also
// integrates f^(1/3) into out[3] (only the table needs it).
static void lm_simpson(const lm_table *t, double a, double fa, double b, double out[4],
                       int with_cbrt)
{
    double m = 0.5 * (a + b), fm = lm_pdf(t, m), fb = lm_pdf(t, b);
    double w = (b - a) / 6.0;
    out[0] = w * (fa + 4.0 * fm + fb);
    out[1] = w * (a * fa + 4.0 * m * fm + b * fb);
    out[2] = w * (a * a * fa + 4.0 * m * m * fm + b * b * fb);
    if (with_cbrt) out[3] = w * (cbrt(fa) + 4.0 * cbrt(fm) + cbrt(fb));
}

static void lm_table_free(lm_table *t)
{
    for (int k = 0; k < 4; k++) free(t->p[k]);
    free(t->f);
}

static kvq_status lm_table_new(lm_table *t, kvq_density dens, double param)
{
    memset(t, 0, sizeof *t);
    t->dens = dens;
    t->param = param;
    switch (dens) {
    case KVQ_DENSITY_GAUSS:   // mass beyond 13 sigma is < 1e-38
        t->lo = -13.0 * param;
        break;
    case KVQ_DENSITY_LAPLACE:   // mass beyond 60 b is e^-60
        t->lo = -60.0 * param;
        break;
    case KVQ_DENSITY_BETA:
    default:
        // (1-x^2)^((d-3)/2) ~ e^{-d x^2/2}: past 40/sqrt(d) it is below e^-800,
        // so large d keeps the grid on the mass instead of all of [-1, 1].
        t->expo = (param - 3.0) / 2.0;
        t->lo = -fmin(1.0, 40.0 / sqrt(param));
        break;
    }
    t->hi = -t->lo;
    t->h = (t->hi - t->lo) / LM_GRID;   // even grid: 0 is a node (Laplace cusp)
    for (int k = 0; k < 4; k++) t->p[k] = malloc((LM_GRID + 1) * sizeof(double));
    t->f = malloc((LM_GRID + 1) * sizeof(double));
    if (!t->p[0] || !t->p[1] || !t->p[2] || !t->p[3] || !t->f) {
        lm_table_free(t);
        return kvq_error(KVQ_ERR_NOMEM, "lloydmax: cannot allocate the density table");
    }
    t->f[0] = lm_pdf(t, t->lo);
    for (int k = 0; k < 4; k++) t->p[k][0] = 0.0;
    for (int i = 0; i < LM_GRID; i++) {
        double a = t->lo + i * t->h, b = t->lo + (i + 1) * t->h, s[4];
        lm_simpson(t, a, t->f[i], b, s, 1);
        t->f[i + 1] = lm_pdf(t, b);
        for (int k = 0; k < 4; k++) t->p[k][i + 1] = t->p[k][i] + s[k];
    }
    return KVQ_OK;
}

// Partial integrals from lo to x of f, x f, x^2 f (out[0..2]).
static void lm_partial(const lm_table *t, double x, double out[3])
{
    if (x <= t->lo) {
        out[0] = out[1] = out[2] = 0.0;
        return;
    }
    if (x >= t->hi) {
        for (int k = 0; k < 3; k++) out[k] = t->p[k][LM_GRID];
        return;
    }
    int i = (int)((x - t->lo) / t->h);
    if (i >= LM_GRID) i = LM_GRID - 1;
    double a = t->lo + i * t->h, s[4];
    lm_simpson(t, a, t->f[i], x, s, 0);
    for (int k = 0; k < 3; k++) out[k] = t->p[k][i] + s[k];
}

// x where the running integral p[k] reaches target (monotone table).
static double lm_quantile(const lm_table *t, int k, double target)
{
    const double *p = t->p[k];
    int lo = 0, hi = LM_GRID;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (p[mid] < target) lo = mid;
        else hi = mid;
    }
    double span = p[hi] - p[lo];
    double frac = span > 0.0 ? (target - p[lo]) / span : 0.5;
    return t->lo + (lo + frac) * t->h;
}

static void cb_set_bounds(kvq_codebook *cb)
{
    for (int j = 0; j + 1 < cb->n; j++) cb->bounds[j] = 0.5f * (cb->levels[j] + cb->levels[j + 1]);
}

// Expected squared error of the codebook c[0..n) (nearest-level cells).
static double lm_mse(const lm_table *t, const double *c, int n)
{
    double prev[3] = {0.0, 0.0, 0.0}, cur[3], mse = 0.0;
    for (int j = 0; j < n; j++) {
        if (j + 1 < n) lm_partial(t, 0.5 * (c[j] + c[j + 1]), cur);
        else for (int k = 0; k < 3; k++) cur[k] = t->p[k][LM_GRID];
        double m0 = cur[0] - prev[0], m1 = cur[1] - prev[1], m2 = cur[2] - prev[2];
        mse += m2 - 2.0 * c[j] * m1 + c[j] * c[j] * m0;
        for (int k = 0; k < 3; k++) prev[k] = cur[k];
    }
    return mse / t->p[0][LM_GRID];
}

static kvq_status lm_check(kvq_density dens, double param, int bits)
{
    if (bits < 1 || bits > 8)
        return kvq_error(KVQ_ERR_ARG, "lloydmax: bits %d out of range (expected 1..8)", bits);
    if (dens == KVQ_DENSITY_BETA && !(param >= 3.0 && param <= 1e6))
        return kvq_error(KVQ_ERR_ARG, "lloydmax: Beta dimension d=%g out of range (expected 3..1e6)",
                         param);
    if (dens != KVQ_DENSITY_BETA && !(param > 0.0 && isfinite(param)))
        return kvq_error(KVQ_ERR_ARG, "lloydmax: scale %g must be positive and finite", param);
    if (dens != KVQ_DENSITY_BETA && dens != KVQ_DENSITY_GAUSS && dens != KVQ_DENSITY_LAPLACE)
        return kvq_error(KVQ_ERR_ARG, "lloydmax: unknown density %d", (int)dens);
    return KVQ_OK;
}

static void cb_store(kvq_codebook *cb, int bits, const double *c, double mse)
{
    cb->bits = bits;
    cb->n = 1 << bits;
    for (int j = 0; j < cb->n; j++) cb->levels[j] = (float)c[j];
    cb_set_bounds(cb);
    cb->mse = mse;
}

// Solved codebooks are memoized (plans for every layer and head ask for the
// same few), so an 8-bit solve is paid once per process. Pure function of
// (dens, param, bits): the memo cannot change any result.
#define LM_MEMO 32
static struct {
    kvq_density dens;
    double param;
    int bits, uniform;
    kvq_codebook cb;
} lm_memo[LM_MEMO];
static int lm_memo_n;
static pthread_mutex_t lm_memo_lock = PTHREAD_MUTEX_INITIALIZER;

static bool lm_memo_get(kvq_density dens, double param, int bits, int uniform, kvq_codebook *cb)
{
    bool hit = false;
    pthread_mutex_lock(&lm_memo_lock);
    for (int i = 0; i < lm_memo_n && i < LM_MEMO && !hit; i++)
        if (lm_memo[i].dens == dens && lm_memo[i].param == param && lm_memo[i].bits == bits &&
            lm_memo[i].uniform == uniform) {
            *cb = lm_memo[i].cb;
            hit = true;
        }
    pthread_mutex_unlock(&lm_memo_lock);
    return hit;
}

static void lm_memo_put(kvq_density dens, double param, int bits, int uniform,
                        const kvq_codebook *cb)
{
    pthread_mutex_lock(&lm_memo_lock);
    int i = lm_memo_n++ % LM_MEMO;   // round robin once full
    lm_memo[i].dens = dens;
    lm_memo[i].param = param;
    lm_memo[i].bits = bits;
    lm_memo[i].uniform = uniform;
    lm_memo[i].cb = *cb;
    pthread_mutex_unlock(&lm_memo_lock);
}

// Lloyd-Max levels c[0..n) of the table's density; returns their MSE.
static double lloyd_levels(const lm_table *t, int n, double *c)
{
    const double z = t->p[0][LM_GRID];
    const double sd = sqrt(t->p[2][LM_GRID] / z);
    double thr[257], part[257][3];
    for (int j = 0; j < n; j++)   // Panter-Dite start: cell centres of f^(1/3) quantiles
        c[j] = lm_quantile(t, 3, t->p[3][LM_GRID] * (j + 0.5) / n);
    thr[0] = t->lo;
    thr[n] = t->hi;
    part[0][0] = part[0][1] = part[0][2] = 0.0;
    for (int k = 0; k < 3; k++) part[n][k] = t->p[k][LM_GRID];

    for (int it = 0; it < LM_MAX_ITERS; it++) {
        for (int j = 1; j < n; j++) {
            thr[j] = 0.5 * (c[j - 1] + c[j]);
            lm_partial(t, thr[j], part[j]);
        }
        double move = 0.0;
        for (int j = 0; j < n; j++) {
            double m0 = part[j + 1][0] - part[j][0], m1 = part[j + 1][1] - part[j][1];
            double nc = m0 > 1e-300 * z ? m1 / m0 : 0.5 * (thr[j] + thr[j + 1]);
            move = fmax(move, fabs(nc - c[j]));
            c[j] = nc;
        }
        // The densities are even: keep the codebook exactly symmetric.
        for (int j = 0; j < n / 2; j++) {
            double v = 0.5 * (c[n - 1 - j] - c[j]);
            c[j] = -v;
            c[n - 1 - j] = v;
        }
        if (move < LM_TOL * sd) break;
    }
    return lm_mse(t, c, n);
}

// Midrise uniform levels of the given step into c; returns their MSE.
static double uniform_mse(const lm_table *t, int n, double step, double *c)
{
    for (int j = 0; j < n; j++) c[j] = ((double)j - 0.5 * (n - 1)) * step;
    return lm_mse(t, c, n);
}

// Best midrise uniform levels c[0..n) of the table's density; returns their MSE.
static double uniform_levels(const lm_table *t, int n, double *c)
{
    const double sd = sqrt(t->p[2][LM_GRID] / t->p[0][LM_GRID]);
    // Golden-section search of the step: the MSE of a midrise uniform
    // quantizer is unimodal in the step for these log-concave densities.
    double a = 1e-3 * sd, b = 8.0 * sd / n * 4.0, g = 0.5 * (sqrt(5.0) - 1.0);
    double x1 = b - g * (b - a), x2 = a + g * (b - a);
    double f1 = uniform_mse(t, n, x1, c), f2 = uniform_mse(t, n, x2, c);
    for (int it = 0; it < 200 && b - a > 1e-10 * sd; it++) {
        if (f1 < f2) {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - g * (b - a);
            f1 = uniform_mse(t, n, x1, c);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + g * (b - a);
            f2 = uniform_mse(t, n, x2, c);
        }
    }
    return uniform_mse(t, n, 0.5 * (a + b), c);
}

static kvq_status solve_memoized(kvq_codebook *cb, kvq_density dens, double param, int bits,
                                 int uniform)
{
    memset(cb, 0, sizeof *cb);
    kvq_status s = lm_check(dens, param, bits);
    if (s) return s;
    if (lm_memo_get(dens, param, bits, uniform, cb)) return KVQ_OK;
    lm_table t;
    s = lm_table_new(&t, dens, param);
    if (s) return s;
    double c[256] = {0};
    double mse = uniform ? uniform_levels(&t, 1 << bits, c) : lloyd_levels(&t, 1 << bits, c);
    cb_store(cb, bits, c, mse);
    lm_table_free(&t);
    lm_memo_put(dens, param, bits, uniform, cb);
    return KVQ_OK;
}

kvq_status kvq_lloydmax_solve(kvq_codebook *cb, kvq_density dens, double param, int bits)
{
    return solve_memoized(cb, dens, param, bits, 0);
}

kvq_status kvq_uniform_solve(kvq_codebook *cb, kvq_density dens, double param, int bits)
{
    return solve_memoized(cb, dens, param, bits, 1);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// First index in sorted v[0..n) with v[i] > x.
static size_t upper_bound(const float *v, size_t n, float x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] > x) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

kvq_status kvq_lloydmax_fit(kvq_codebook *cb, const float *x, size_t n, int bits, int iters)
{
    memset(cb, 0, sizeof *cb);
    if (bits < 1 || bits > 8)
        return kvq_error(KVQ_ERR_ARG, "lloydmax: bits %d out of range (expected 1..8)", bits);
    const int nl = 1 << bits;
    if (n < (size_t)nl)
        return kvq_error(KVQ_ERR_ARG, "lloydmax: %zu samples for %d levels (expected at least %d)",
                         n, nl, nl);
    float *v = malloc(n * sizeof *v);
    double *s1 = malloc((n + 1) * sizeof *s1), *s2 = malloc((n + 1) * sizeof *s2);
    if (!v || !s1 || !s2) {
        free(v);
        free(s1);
        free(s2);
        return kvq_error(KVQ_ERR_NOMEM, "lloydmax: cannot allocate %zu samples", n);
    }
    memcpy(v, x, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_float);
    // Prefix sums make a cell's mean an O(1) lookup once its edges are found.
    s1[0] = s2[0] = 0.0;
    for (size_t i = 0; i < n; i++) {
        s1[i + 1] = s1[i] + v[i];
        s2[i + 1] = s2[i] + (double)v[i] * v[i];
    }
    cb->bits = bits;
    cb->n = nl;
    size_t edge[257];
    for (int j = 0; j < nl; j++) {   // start: means of equal-count cells
        size_t a = n * (size_t)j / nl, b = n * (size_t)(j + 1) / nl;
        cb->levels[j] = (float)((s1[b] - s1[a]) / (double)(b - a));
    }
    if (iters <= 0) iters = 100;
    for (int it = 0; it <= iters; it++) {
        cb_set_bounds(cb);
        edge[0] = 0;
        edge[nl] = n;
        for (int j = 0; j + 1 < nl; j++) edge[j + 1] = upper_bound(v, n, cb->bounds[j]);
        if (it == iters) break;
        int moved = 0;
        for (int j = 0; j < nl; j++) {
            size_t a = edge[j], b = edge[j + 1];
            if (b <= a) continue;   // empty cell keeps its level
            float nc = (float)((s1[b] - s1[a]) / (double)(b - a));
            moved |= nc != cb->levels[j];
            cb->levels[j] = nc;
        }
        for (int j = 1; j < nl; j++)   // float rounding must not unsort levels
            if (cb->levels[j] < cb->levels[j - 1]) cb->levels[j] = cb->levels[j - 1];
        if (!moved) {
            cb_set_bounds(cb);
            for (int j = 0; j + 1 < nl; j++) edge[j + 1] = upper_bound(v, n, cb->bounds[j]);
            break;
        }
    }
    double mse = 0.0;
    for (int j = 0; j < nl; j++) {
        size_t a = edge[j], b = edge[j + 1];
        double c = cb->levels[j];
        mse += (s2[b] - s2[a]) - 2.0 * c * (s1[b] - s1[a]) + c * c * (double)(b - a);
    }
    cb->mse = mse / (double)n;
    free(v);
    free(s1);
    free(s2);
    return KVQ_OK;
}
