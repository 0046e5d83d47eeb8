// lloydmax.h — Lloyd-Max scalar quantizers for a known density.
// Densities: the exact marginal of one coordinate of a uniform random unit
// vector in dimension d (Beta: f(x) ∝ (1-x^2)^((d-3)/2) on [-1,1]), the
// Gaussian N(0, sigma^2) and the Laplacian with scale b.
#ifndef KVQ_LLOYDMAX_H
#define KVQ_LLOYDMAX_H
#include "kvq.h"

typedef enum { KVQ_DENSITY_BETA, KVQ_DENSITY_GAUSS, KVQ_DENSITY_LAPLACE } kvq_density;

typedef struct kvq_codebook {
    int bits;
    int n;                 // 2^bits levels
    float levels[256];     // ascending reconstruction points
    float bounds[255];     // decision thresholds, midpoints of levels
    double mse;            // expected squared error per coordinate under the density
} kvq_codebook;

// param: d for BETA, sigma for GAUSS, scale b for LAPLACE. bits 1..8.
kvq_status kvq_lloydmax_solve(kvq_codebook *cb, kvq_density dens, double param, int bits);
// Nearest level index (branchless binary search over bounds).
static inline int kvq_codebook_index(const kvq_codebook *cb, float x)
{
    int idx = 0;
    for (int step = cb->n >> 1; step > 0; step >>= 1)
        idx += (x > cb->bounds[idx + step - 1]) ? step : 0;
    return idx;
}
// Lloyd iterations on empirical samples (for fitted residual codebooks).
kvq_status kvq_lloydmax_fit(kvq_codebook *cb, const float *x, size_t n, int bits, int iters);
#endif
