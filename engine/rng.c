// rng.c — splitmix64 seeding + xoshiro256** and Gaussian sampling.
// Only integer arithmetic plus IEEE sqrt/log/cos, so a seed gives the same
// stream on every platform that has a correctly behaving libm.
#include <math.h>
#include "rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t kvq_rng_hash(uint64_t x) { return splitmix64(&x); }

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void kvq_rng_seed(kvq_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    // xoshiro's all-zero state is absorbing; splitmix64 cannot give four zeros,
    // but keep the guard so the invariant is visible.
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
    r->has_spare = 0;
    r->spare = 0.0;
}

void kvq_rng_seed2(kvq_rng *r, uint64_t seed, uint64_t stream)
{
    // Hash the stream tag before mixing so streams 0,1,2... of one seed are
    // not neighbouring splitmix64 inputs of each other's seeds.
    uint64_t t = stream ^ 0xD1B54A32D192ED03ull;
    uint64_t h = splitmix64(&t);
    kvq_rng_seed(r, seed ^ h);
}

uint64_t kvq_rng_u64(kvq_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double kvq_rng_uniform(kvq_rng *r)
{
    return (double)(kvq_rng_u64(r) >> 11) * 0x1.0p-53;   // 53 random bits
}

double kvq_rng_gauss(kvq_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    // Box-Muller; u1 in (0, 1] so log never sees 0.
    double u1 = 1.0 - kvq_rng_uniform(r);
    double u2 = kvq_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586476925 * u2;
    r->spare = rad * sin(th);
    r->has_spare = 1;
    return rad * cos(th);
}

void kvq_rng_gauss_fill(kvq_rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)kvq_rng_gauss(r);
}

void kvq_rng_unit_vector(kvq_rng *r, float *x, int d)
{
    double nn;
    do {   // a zero Gaussian vector has probability ~0; retry keeps it exact
        nn = 0.0;
        for (int i = 0; i < d; i++) {
            double g = kvq_rng_gauss(r);
            x[i] = (float)g;
            nn += g * g;
        }
    } while (nn <= 0.0 && d > 0);
    float inv = (float)(1.0 / sqrt(nn));
    for (int i = 0; i < d; i++) x[i] *= inv;
}
