// rotate.c — dense Haar-random orthogonal matrices (Householder QR) and the
// randomized fast Walsh-Hadamard transform.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "rng.h"
#include "rotate.h"

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

// Householder QR in double with one fixed operation order. LAPACK's sgeqrf/sorgqr
// would do the job, but OpenBLAS picks its kernels by CPU (OPENBLAS_CORETYPE) and
// each kernel rounds differently: the rotation, and so every code and figure of a
// dense-rotation method, moved with the machine. These loops give the same bits on
// every x86-64 (C11 without -ffast-math: no reassociation, no FMA contraction) and
// agree with LAPACK's Q to float rounding (tests/test_rotate.c checks both).
// a: (d, d) in, destroyed; v: (d, d) scratch; beta, sgn: (d) scratch; out: Q diag(sgn).
static void householder_haar(double *a, double *v, double *beta, double *sgn, double *qd,
                             float *out, int d)
{
    for (int k = 0; k < d; k++) {
        double *vk = v + (size_t)k * d, nn = 0.0, vv = 0.0;
        for (int i = k; i < d; i++) nn += a[(size_t)i * d + k] * a[(size_t)i * d + k];
        // LAPACK's convention: R_kk = -sign(a_kk) |a_k|, v = a_k - R_kk e_k
        const double rkk = a[(size_t)k * d + k] >= 0.0 ? -sqrt(nn) : sqrt(nn);
        for (int i = k; i < d; i++) {
            vk[i] = a[(size_t)i * d + k] - (i == k ? rkk : 0.0);
            vv += vk[i] * vk[i];
        }
        beta[k] = vv > 0.0 ? 2.0 / vv : 0.0;   // H_k = I - beta v v^T
        // Q alone is not Haar (the R diagonal sign convention biases it);
        // Q diag(sign(diag R)) is (Mezzadri 2007).
        sgn[k] = rkk < 0.0 ? -1.0 : 1.0;
        for (int c = k; c < d; c++) {
            double t = 0.0;
            for (int i = k; i < d; i++) t += vk[i] * a[(size_t)i * d + c];
            t *= beta[k];
            for (int i = k; i < d; i++) a[(size_t)i * d + c] -= t * vk[i];
        }
    }
    // Q = H_0 H_1 ... H_{d-1} I, applied right to left
    for (size_t i = 0; i < (size_t)d * d; i++) qd[i] = 0.0;
    for (int i = 0; i < d; i++) qd[(size_t)i * d + i] = 1.0;
    for (int k = d - 1; k >= 0; k--) {
        const double *vk = v + (size_t)k * d;
        for (int c = k; c < d; c++) {   // columns < k of H_{k+1}..I are still e_c
            double t = 0.0;
            for (int i = k; i < d; i++) t += vk[i] * qd[(size_t)i * d + c];
            t *= beta[k];
            for (int i = k; i < d; i++) qd[(size_t)i * d + c] -= t * vk[i];
        }
    }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) out[(size_t)i * d + j] = (float)(qd[(size_t)i * d + j] * sgn[j]);
}

kvq_status kvq_random_orthogonal(float *q, int d, uint64_t seed)
{
    if (d <= 0 || d > KVQ_MAX_SKETCH_DIM)
        return kvq_error(KVQ_ERR_ARG, "rotate: dimension %d out of range (expected 1..%d)", d,
                         KVQ_MAX_SKETCH_DIM);
    const size_t dd = (size_t)d * (size_t)d;
    double *a = malloc(dd * sizeof *a), *v = malloc(dd * sizeof *v), *qd = malloc(dd * sizeof *qd);
    double *beta = malloc(2 * (size_t)d * sizeof *beta);
    kvq_status st = KVQ_OK;
    if (!a || !v || !qd || !beta) {
        st = kvq_error(KVQ_ERR_NOMEM, "rotate: cannot allocate QR workspace for d=%d", d);
    } else {
        kvq_rng rng;
        kvq_rng_seed(&rng, seed);
        kvq_rng_gauss_fill(&rng, q, dd);
        for (size_t i = 0; i < dd; i++) a[i] = q[i];
        householder_haar(a, v, beta, beta + d, qd, q, d);
    }
    free(a);
    free(v);
    free(qd);
    free(beta);
    return st;
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

// Batches use the scalar loops' operation order (sum over j = 0..d-1 from 0.0f),
// not sgemm: OpenBLAS kernels round differently by CPU, and these values decide
// codes. Eight vectors at a time, transposed, so the inner loop runs across vectors
// (vectorizable) while each sum keeps its order: the result is kvq_rotation_apply's
// bit for bit.
#define ROT_BLOCK 8
void kvq_rotation_apply_batch(const kvq_rotation *r, const float *x, float *y, size_t n)
{
    const int d = r->d;
    size_t i0 = 0;
    if (!r->hadamard) {
        float xt[ROT_BLOCK * KVQ_MAX_SKETCH_DIM];   // xt[j][v] = x[i0 + v][j]
        for (; i0 + ROT_BLOCK <= n; i0 += ROT_BLOCK) {
            for (int v = 0; v < ROT_BLOCK; v++)
                for (int j = 0; j < d; j++) xt[j * ROT_BLOCK + v] = x[(i0 + v) * d + j];
            for (int i = 0; i < d; i++) {
                const float *row = r->mat + (size_t)i * d;
                float acc[ROT_BLOCK] = {0};
                for (int j = 0; j < d; j++)
                    for (int v = 0; v < ROT_BLOCK; v++) acc[v] += row[j] * xt[j * ROT_BLOCK + v];
                for (int v = 0; v < ROT_BLOCK; v++) y[(i0 + v) * d + i] = acc[v];
            }
        }
    }
    for (; i0 < n; i0++) kvq_rotation_apply(r, x + i0 * (size_t)d, y + i0 * (size_t)d);
}

void kvq_rotation_apply_t_batch(const kvq_rotation *r, const float *y, float *x, size_t n)
{
    // kvq_rotation_apply_t's inner loop already runs along contiguous rows
    for (size_t i = 0; i < n; i++)
        kvq_rotation_apply_t(r, y + i * (size_t)r->d, x + i * (size_t)r->d);
}

size_t kvq_rotation_bytes(const kvq_rotation *r)
{
    if (!r || r->d <= 0) return 0;
    return sizeof(float) * (r->hadamard ? (size_t)r->d : (size_t)r->d * (size_t)r->d);
}
