// methods/spectral.c — SpectralQuant: per-stream eigenbasis, per-dimension
// Lloyd-Max codebooks, bits water-filled over the eigenvalues (spectral.h).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "lloydmax.h"
#include "methods.h"
#include "spectral.h"

typedef struct sp_plan {
    int d;
    size_t bytes;
    float *rot;                           // (d, d) rows = eigenvectors, owned
    float mean[KVQ_MAX_HEAD_DIM];
    float sigma[KVQ_MAX_HEAD_DIM];        // sqrt(eigenvalue)
    uint8_t bits[KVQ_MAX_HEAD_DIM];       // per dimension, 0..8
    kvq_codebook cb[KVQ_SPECTRAL_MAX_BITS + 1];   // unit-Gaussian Lloyd-Max per width
} sp_plan;

double kvq_spectral_d_eff(const float *eig, int d)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < d; i++) {
        double e = eig[i] > 0 ? eig[i] : 0;
        s += e;
        s2 += e * e;
    }
    return s2 > 0 ? s * s / s2 : 0;
}

void kvq_spectral_allocate(const float *eig, int d, double target_bits, int signal_bits, int noise_bits,
                           int *bits)
{
    if (target_bits <= 0) {
        int ns = (int)ceil(kvq_spectral_d_eff(eig, d) - 1e-9);
        for (int i = 0; i < d; i++) bits[i] = i < ns ? signal_bits : noise_bits;
        return;
    }
    long total = lround(target_bits * d), cap = (long)KVQ_SPECTRAL_MAX_BITS * d;
    if (total > cap) total = cap;
    // Each bit divides a dimension's distortion by 4 (high-rate Gaussian), so
    // the next bit goes where eig / 4^b is largest: reverse water-filling.
    double gain[KVQ_MAX_HEAD_DIM];
    for (int i = 0; i < d; i++) {
        bits[i] = 0;
        gain[i] = eig[i] > 0 ? eig[i] : 0;
    }
    for (long k = 0; k < total; k++) {
        int best = -1;
        for (int i = 0; i < d; i++)
            if (bits[i] < KVQ_SPECTRAL_MAX_BITS && (best < 0 || gain[i] > gain[best])) best = i;
        bits[best]++;
        gain[best] /= 4.0;
    }
}

static kvq_status need(const char *name)
{
    return kvq_error(KVQ_ERR_NEEDS_CALIBRATION,
                     "spectral needs calibration (artifact '%s' missing): run `kvstudio precompute --method "
                     "spectral --trace T --output DIR` (or `calibrate spectral`)", name);
}

kvq_status kvq_spectral_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    int d = pp->head_dim;
    char nr[96], nm[96], ne[96];
    snprintf(nr, sizeof nr, "spectral.rotation.l%d.h%d", pp->layer, pp->kv_head);
    snprintf(nm, sizeof nm, "spectral.mean.l%d.h%d", pp->layer, pp->kv_head);
    snprintf(ne, sizeof ne, "spectral.eigenvalues.l%d.h%d", pp->layer, pp->kv_head);
    if (pp->is_value)
        return kvq_error(KVQ_ERR_ARG, "spectral: quantizes keys only (its eigenbases are fitted to keys); "
                         "pick another value_method");
    const float *rot, *mean, *eig;
    int64_t sdd[2] = {d, d}, sd[1] = {d};
    if (!kvq_artifacts_get(pp->art, nr, NULL, NULL)) return need(nr);
    kvq_status s;
    if ((s = kvq_artifacts_require(pp->art, nr, 2, sdd, &rot)) || (s = kvq_artifacts_require(pp->art, nm, 1, sd, &mean)) ||
        (s = kvq_artifacts_require(pp->art, ne, 1, sd, &eig)))
        return s;
    sp_plan *p = calloc(1, sizeof *p);
    if (!p || !(p->rot = malloc(sizeof(float) * (size_t)d * d))) {
        free(p);
        return kvq_error(KVQ_ERR_NOMEM, "spectral: out of memory");
    }
    p->d = d;
    memcpy(p->rot, rot, sizeof(float) * (size_t)d * d);
    memcpy(p->mean, mean, sizeof(float) * (size_t)d);
    int bits[KVQ_MAX_HEAD_DIM];
    kvq_spectral_allocate(eig, d, pp->bits, 0, 0, bits);
    size_t total = 0;
    for (int i = 0; i < d; i++) {
        p->bits[i] = (uint8_t)bits[i];
        p->sigma[i] = eig[i] > 0 ? sqrtf(eig[i]) : 0.0f;
        total += (size_t)bits[i];
        int b = bits[i];
        if (b > 0 && p->cb[b].bits == 0 && (s = kvq_lloydmax_solve(&p->cb[b], KVQ_DENSITY_GAUSS, 1.0, b))) {
            kvq_spectral_plan_free(p);
            return s;
        }
    }
    p->bytes = (total + 7) / 8;
    *plan = p;
    return KVQ_OK;
}

void kvq_spectral_plan_free(void *plan)
{
    sp_plan *p = plan;
    if (p) free(p->rot);
    free(p);
}

size_t kvq_spectral_bytes_per_vector(const void *plan) { return ((const sp_plan *)plan)->bytes; }

// Codes of varying width, LSB first, one continuous bit stream.
static void put_bits(uint8_t *out, size_t *pos, unsigned v, int b)
{
    for (int i = 0; i < b; i++, (*pos)++)
        if (v >> i & 1u) out[*pos >> 3] |= (uint8_t)(1u << (*pos & 7));
}

static unsigned get_bits(const uint8_t *in, size_t *pos, int b)
{
    unsigned v = 0;
    for (int i = 0; i < b; i++, (*pos)++) v |= (unsigned)(in[*pos >> 3] >> (*pos & 7) & 1u) << i;
    return v;
}

void kvq_spectral_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const sp_plan *p = plan;
    int d = p->d;
    float c[KVQ_MAX_HEAD_DIM];
    for (size_t v = 0; v < n; v++) {
        const float *k = x + v * d;
        uint8_t *out = codes + v * p->bytes;
        memset(out, 0, p->bytes);
        for (int j = 0; j < d; j++) c[j] = k[j] - p->mean[j];
        size_t pos = 0;
        for (int i = 0; i < d; i++) {
            int b = p->bits[i];
            if (!b) continue;
            const float *u = p->rot + (size_t)i * d;
            float y = 0;
            for (int j = 0; j < d; j++) y += u[j] * c[j];
            float z = p->sigma[i] > 0 ? y / p->sigma[i] : 0.0f;
            put_bits(out, &pos, (unsigned)kvq_codebook_index(&p->cb[b], z), b);
        }
    }
}

// y (d): the quantized coordinates in the eigenbasis (0 where no bits).
static void decode_coords(const sp_plan *p, const uint8_t *rec, float *y)
{
    size_t pos = 0;
    for (int i = 0; i < p->d; i++) {
        int b = p->bits[i];
        y[i] = b ? p->sigma[i] * p->cb[b].levels[get_bits(rec, &pos, b)] : 0.0f;
    }
}

void kvq_spectral_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const sp_plan *p = plan;
    int d = p->d;
    float y[KVQ_MAX_HEAD_DIM];
    for (size_t v = 0; v < n; v++) {
        decode_coords(p, codes + v * p->bytes, y);
        float *k = x + v * d;
        memcpy(k, p->mean, sizeof(float) * (size_t)d);
        for (int i = 0; i < d; i++) {
            if (y[i] == 0.0f) continue;
            const float *u = p->rot + (size_t)i * d;
            for (int j = 0; j < d; j++) k[j] += y[i] * u[j];
        }
    }
}

// Query state: (d + 1) floats: sigma_i (U q)_i, then q . mean.
size_t kvq_spectral_query_bytes(const void *plan) { return sizeof(float) * (size_t)(((const sp_plan *)plan)->d + 1); }

void kvq_spectral_prepare_query(const void *plan, const float *q, void *qs)
{
    const sp_plan *p = plan;
    int d = p->d;
    float *o = qs;
    double qm = 0;
    for (int i = 0; i < d; i++) {
        const float *u = p->rot + (size_t)i * d;
        float s = 0;
        for (int j = 0; j < d; j++) s += u[j] * q[j];
        o[i] = s * p->sigma[i];
        qm += (double)q[i] * p->mean[i];
    }
    o[d] = (float)qm;
}

void kvq_spectral_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const sp_plan *p = plan;
    const float *o = qs;
    for (size_t v = 0; v < n; v++) {
        const uint8_t *rec = codes + v * p->bytes;
        size_t pos = 0;
        float s = o[p->d];
        for (int i = 0; i < p->d; i++) {
            int b = p->bits[i];
            if (b) s += o[i] * p->cb[b].levels[get_bits(rec, &pos, b)];
        }
        scores[v] = s;
    }
}

size_t kvq_spectral_side_bytes(const void *plan)
{
    const sp_plan *p = plan;
    size_t b = sizeof(float) * ((size_t)p->d * (size_t)p->d + 2 * (size_t)p->d) + (size_t)p->d;   // basis, mean, sigma, bits
    for (int w = 1; w <= KVQ_SPECTRAL_MAX_BITS; w++) b += kvq_codebook_bytes(&p->cb[w]);
    return b;
}
