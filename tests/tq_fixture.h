// tq_fixture.h — the turboquant_mse fixtures of test_simd.c and
// test_tq_i8.c: seeded Gaussian rows (every 16th coordinate 5x, an outlier
// channel), a tq_core made from a default config, and the worst relative
// L2 distance of output rows. static inline: each test file is its own
// binary and uses only some of these. Include after cmocka.h (fail_msg).
#ifndef KVQ_TQ_FIXTURE_H
#define KVQ_TQ_FIXTURE_H
#include <math.h>
#include <stdlib.h>
#include "kvq.h"
#include "methods/tq_common.h"
#include "rng.h"

// (n, d), row-major; the caller frees it
static inline float *gauss_rows(size_t n, int d, uint64_t seed)
{
    float *x = malloc(sizeof(float) * n * (size_t)d);
    kvq_rng r;
    kvq_rng_seed(&r, seed);
    for (size_t i = 0; i < n * (size_t)d; i++) x[i] = (float)kvq_rng_gauss(&r) * ((i % 16 == 3) ? 5.0f : 1.0f);
    return x;
}

// cfg keeps the plan parameters' config alive beside c; fails the test on error
static inline void core_for(tq_core *c, kvq_config *cfg, int bits, bool had, int d)
{
    kvq_config_default(cfg);
    cfg->use_hadamard = had;
    kvq_plan_params pp = {.bits = bits, .head_dim = d, .cfg = cfg};
    if (tq_core_init(c, &pp, bits, 0, "test")) fail_msg("tq_core_init: %s", kvq_last_error());
}

// max over rows of |out_r - ref_r| / |ref_r|; out, ref: (rows, d)
static inline double worst_row_rel(const float *out, const float *ref, int rows, int d)
{
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double e = 0, nn = 0;
        for (int t = 0; t < d; t++) {
            double x = (double)out[r * d + t] - ref[r * d + t];
            e += x * x;
            nn += (double)ref[r * d + t] * ref[r * d + t];
        }
        worst = fmax(worst, sqrt(e / nn));
    }
    return worst;
}
#endif
