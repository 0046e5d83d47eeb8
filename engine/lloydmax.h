// lloydmax.h — Lloyd-Max scalar quantizers for a known density.
// Densities: the exact marginal of one coordinate of a uniform random unit
// vector in dimension d (Beta: f(x) ∝ (1-x^2)^((d-3)/2) on [-1,1]), the
// Gaussian N(0, sigma^2) and the Laplacian with scale b.
#ifndef KVQ_LLOYDMAX_H
#define KVQ_LLOYDMAX_H
#include <stddef.h>
#include "kvq.h"

typedef enum { KVQ_DENSITY_BETA, KVQ_DENSITY_GAUSS, KVQ_DENSITY_LAPLACE } kvq_density;

typedef struct kvq_codebook {
    int bits;
    int n;                 // 2^bits levels
    float levels[256];     // ascending reconstruction points
    float bounds[255];     // decision thresholds, midpoints of levels
    double mse;            // expected squared error per coordinate under the density
} kvq_codebook;

// param: d for BETA (d >= 3), sigma for GAUSS, scale b for LAPLACE
// (density e^{-|x|/b} / 2b, variance 2 b^2). bits 1..8. Converges to the
// Lloyd fixed point (levels within 1e-8 std); cb->mse is the exact expected
// error under the density. Results are memoized per process (thread-safe),
// so many plans asking for one codebook pay the solve once.
kvq_status kvq_lloydmax_solve(kvq_codebook *cb, kvq_density dens, double param, int bits);
// The best uniform (midrise, 2^bits levels symmetric about 0) quantizer for
// the density: the step minimizing the expected error (config codebook
// "uniform"). Same param and bits conventions.
kvq_status kvq_uniform_solve(kvq_codebook *cb, kvq_density dens, double param, int bits);
// Nearest level index (branchless binary search over bounds).
static inline int kvq_codebook_index(const kvq_codebook *cb, float x)
{
    int idx = 0;
    for (int step = cb->n >> 1; step > 0; step >>= 1)
        idx += (x > cb->bounds[idx + step - 1]) ? step : 0;
    return idx;
}
// Lloyd iterations on empirical samples (for fitted residual codebooks):
// start at the means of equal-count cells, at most iters rounds (<= 0: 100),
// stop early at a fixed point. x: (n), n >= 2^bits; x is not modified
// (a sorted copy is made: allocates, plan time only). cb->mse = empirical.
// Bytes a codebook needs at run time: its levels and thresholds as floats.
static inline size_t kvq_codebook_bytes(const kvq_codebook *cb)
{
    return cb->n > 0 ? sizeof(float) * (size_t)(2 * cb->n - 1) : 0;
}
kvq_status kvq_lloydmax_fit(kvq_codebook *cb, const float *x, size_t n, int bits, int iters);
#endif
