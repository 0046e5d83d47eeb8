// rotate.c — dense Haar-random orthogonal matrices (LAPACKE QR) and the
// randomized fast Walsh-Hadamard transform.
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "rng.h"
#include "rotate.h"

// Below this many rows a plain loop beats the sgemm call overhead.
#define ROT_SGEMM_MIN_ROWS 8

static bool is_pow2(int d) { return d > 0 && (d & (d - 1)) == 0; }

void kvq_fwht(float *x, int d)
{
    for (int h = 1; h < d; h <<= 1)
        for (int i = 0; i < d; i += h << 1)
            for (int j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
}

kvq_status kvq_random_orthogonal(float *q, int d, uint64_t seed)
{
    if (d <= 0 || d > 1 << 14)
        return kvq_error(KVQ_ERR_ARG, "rotate: dimension %d out of range (expected 1..16384)", d);
    float *tau = malloc((size_t)d * sizeof *tau);
    float *sgn = malloc((size_t)d * sizeof *sgn);
    if (!tau || !sgn) {
        free(tau);
        free(sgn);
        return kvq_error(KVQ_ERR_NOMEM, "rotate: cannot allocate QR workspace for d=%d", d);
    }
    kvq_rng rng;
    kvq_rng_seed(&rng, seed);
    kvq_rng_gauss_fill(&rng, q, (size_t)d * (size_t)d);
    lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, d, d, q, d, tau);
    if (info == 0) {
        // Q alone is not Haar (LAPACK's R diagonal sign convention biases it);
        // Q diag(sign(diag R)) is (Mezzadri 2007).
        for (int i = 0; i < d; i++) sgn[i] = q[(size_t)i * d + i] < 0.0f ? -1.0f : 1.0f;
        info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, d, d, d, q, d, tau);
    }
    free(tau);
    if (info != 0) {
        free(sgn);
        return kvq_error(KVQ_ERR_NUMERIC, "rotate: LAPACKE QR of a %dx%d Gaussian failed (info %d)",
                         d, d, (int)info);
    }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) q[(size_t)i * d + j] *= sgn[j];
    free(sgn);
    return KVQ_OK;
}

kvq_status kvq_rotation_new(kvq_rotation *r, int d, bool hadamard, uint64_t seed)
{
    memset(r, 0, sizeof *r);
    if (d <= 0 || d > KVQ_MAX_SKETCH_DIM)
        return kvq_error(KVQ_ERR_ARG, "rotate: head_dim %d out of range (expected 1..%d)", d,
                         KVQ_MAX_SKETCH_DIM);
    if (hadamard && !is_pow2(d))
        return kvq_error(KVQ_ERR_ARG,
                         "rotate: use_hadamard needs head_dim a power of two, found %d "
                         "(use a dense rotation: use_hadamard=false)", d);
    r->d = d;
    r->hadamard = hadamard;
    if (hadamard) {
        r->signs = malloc((size_t)d * sizeof *r->signs);
        if (!r->signs) return kvq_error(KVQ_ERR_NOMEM, "rotate: cannot allocate %d signs", d);
        kvq_rng rng;
        kvq_rng_seed(&rng, seed);
        for (int i = 0; i < d; i++) r->signs[i] = (kvq_rng_u64(&rng) >> 63) ? -1.0f : 1.0f;
        return KVQ_OK;
    }
    r->mat = malloc((size_t)d * (size_t)d * sizeof *r->mat);
    if (!r->mat) return kvq_error(KVQ_ERR_NOMEM, "rotate: cannot allocate a %dx%d matrix", d, d);
    kvq_status s = kvq_random_orthogonal(r->mat, d, seed);
    if (s) kvq_rotation_free(r);
    return s;
}

void kvq_rotation_free(kvq_rotation *r)
{
    free(r->mat);
    free(r->signs);
    memset(r, 0, sizeof *r);
}

void kvq_rotation_apply(const kvq_rotation *r, const float *x, float *y)
{
    const int d = r->d;
    if (r->hadamard) {
        const float s = 1.0f / sqrtf((float)d);
        for (int i = 0; i < d; i++) y[i] = x[i] * r->signs[i];
        kvq_fwht(y, d);
        for (int i = 0; i < d; i++) y[i] *= s;
        return;
    }
    for (int i = 0; i < d; i++) {
        const float *row = r->mat + (size_t)i * d;
        float acc = 0.0f;
        for (int j = 0; j < d; j++) acc += row[j] * x[j];
        y[i] = acc;
    }
}

void kvq_rotation_apply_t(const kvq_rotation *r, const float *y, float *x)
{
    const int d = r->d;
    if (r->hadamard) {
        // H is symmetric and H H = d I, so (H D / sqrt d)^T = D H / sqrt d.
        const float s = 1.0f / sqrtf((float)d);
        memcpy(x, y, (size_t)d * sizeof *x);
        kvq_fwht(x, d);
        for (int i = 0; i < d; i++) x[i] *= s * r->signs[i];
        return;
    }
    for (int j = 0; j < d; j++) x[j] = 0.0f;
    for (int i = 0; i < d; i++) {
        const float *row = r->mat + (size_t)i * d;
        const float yi = y[i];
        for (int j = 0; j < d; j++) x[j] += row[j] * yi;
    }
}

void kvq_rotation_apply_batch(const kvq_rotation *r, const float *x, float *y, size_t n)
{
    const int d = r->d;
    if (r->hadamard || n < ROT_SGEMM_MIN_ROWS) {
        for (size_t i = 0; i < n; i++)
            kvq_rotation_apply(r, x + i * (size_t)d, y + i * (size_t)d);
        return;
    }
    // Y (n, d) = X (n, d) R^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, d, d, 1.0f, x, d, r->mat, d,
                0.0f, y, d);
}

void kvq_rotation_apply_t_batch(const kvq_rotation *r, const float *y, float *x, size_t n)
{
    const int d = r->d;
    if (r->hadamard || n < ROT_SGEMM_MIN_ROWS) {
        for (size_t i = 0; i < n; i++)
            kvq_rotation_apply_t(r, y + i * (size_t)d, x + i * (size_t)d);
        return;
    }
    // X (n, d) = Y (n, d) R
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, d, d, 1.0f, y, d, r->mat, d,
                0.0f, x, d);
}

size_t kvq_rotation_bytes(const kvq_rotation *r)
{
    if (!r || r->d <= 0) return 0;
    return sizeof(float) * (r->hadamard ? (size_t)r->d : (size_t)r->d * (size_t)r->d);
}
