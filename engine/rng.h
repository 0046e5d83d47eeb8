// rng.h — seeded, platform-independent RNG (splitmix64 seeding + xoshiro256**)
// and Gaussian sampling. Same seed => same stream on every machine.
#ifndef KVQ_RNG_H
#define KVQ_RNG_H
#include <stdint.h>
#include <stddef.h>

typedef struct { uint64_t s[4]; int has_spare; double spare; } kvq_rng;

void kvq_rng_seed(kvq_rng *r, uint64_t seed);
// Derive an independent stream for a sub-purpose (e.g. seed ^ tag), so the
// rotation and the QJL sketch of one plan never share randomness.
void kvq_rng_seed2(kvq_rng *r, uint64_t seed, uint64_t stream);
// One splitmix64 step of x: a stateless 64-bit hash, for seeded choices that
// must not depend on call order (e.g. the replay's sampled groups).
uint64_t kvq_rng_hash(uint64_t x);
uint64_t kvq_rng_u64(kvq_rng *r);
double kvq_rng_uniform(kvq_rng *r);        // [0, 1)
double kvq_rng_gauss(kvq_rng *r);          // N(0, 1)
void kvq_rng_gauss_fill(kvq_rng *r, float *x, size_t n);
// A uniform random unit vector of dimension d.
void kvq_rng_unit_vector(kvq_rng *r, float *x, int d);
#endif
