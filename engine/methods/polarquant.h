// methods/polarquant.h — PolarQuant's per-level codebook facts, for tests and
// the report (the method itself is a row of the methods table).
//
// bits -> level bits: level 1 (angles on [0, 2pi), one per coordinate pair)
// gets `bits`, levels 2..4 (angles on [0, pi/2]) get max(1, bits - 2):
// bits = 4 is the paper's default 4/2/2/2. With d/16 fp16 radii the real
// rate is bits/2 + (bits-2)(1/4 + 1/8 + 1/16) + 1 bits per coordinate
// (3.875 at bits = 4), reported honestly by bytes_per_vector.
#ifndef KVQ_POLARQUANT_H
#define KVQ_POLARQUANT_H
#include "kvq.h"

#define KVQ_POLAR_LEVELS 4

typedef struct kvq_polar_level {
    int bits;
    double chord_mse;     // E[2 (1 - cos(psi - psi_hat))] under the level's angle density
    double uniform_mse;   // the same for a uniform codebook of equal size (sanity reference)
} kvq_polar_level;

// level 1..KVQ_POLAR_LEVELS of a polarquant plan.
void kvq_polarquant_level(const void *plan, int level, kvq_polar_level *out);
// Relative MSE predicted from the codebooks: each level's angle error moves
// the reconstruction along a direction orthogonal (to first order) to the
// other levels', with weight sum(R^2) = |x|^2 per level, so
// E|x - x_hat|^2 / |x|^2 ~= sum over levels of chord_mse.
double kvq_polarquant_predicted_rel_mse(const void *plan);
#endif
