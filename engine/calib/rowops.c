// calib/rowops.c — one body per kernel, two compilations; see rowops.h.
#include "calib/rowops.h"
#include "simd.h"

#define SQDIST_BODY                                                                  \
    double s[16] = {0};                                                              \
    int j = 0;                                                                       \
    for (; j + 16 <= d; j += 16)                                                     \
        for (int u = 0; u < 16; u++) {                                               \
            double t = (double)a[j + u] - (double)b[j + u];                          \
            s[u] += t * t;                                                           \
        }                                                                            \
    for (; j < d; j++) {                                                             \
        double t = (double)a[j] - (double)b[j];                                      \
        s[0] += t * t;                                                               \
    }                                                                                \
    for (int u = 0; u < 8; u++) s[u] += s[u + 8];                                    \
    for (int u = 0; u < 4; u++) s[u] += s[u + 4];                                    \
    return (s[0] + s[1]) + (s[2] + s[3]);

#define ACC_BODY                                                                     \
    int j = 0;                                                                       \
    for (; j + 8 <= d; j += 8)                                                       \
        for (int u = 0; u < 8; u++) acc[j + u] += x[j + u];                          \
    for (; j < d; j++) acc[j] += x[j];

#define ADD_BODY                                                                     \
    int j = 0;                                                                       \
    for (; j + 16 <= d; j += 16)                                                     \
        for (int u = 0; u < 16; u++) y[j + u] += x[j + u];                           \
    for (; j < d; j++) y[j] += x[j];

double kvq_row_sqdist_ref(const float *a, const float *b, int d) { SQDIST_BODY }
void kvq_row_acc_ref(double *acc, const float *x, int d) { ACC_BODY }
void kvq_row_add_ref(float *restrict y, const float *restrict x, int d) { ADD_BODY }

#if KVQ_HAVE_X86
static KVQ_TARGET_AVX2 double sqdist_avx2(const float *a, const float *b, int d) { SQDIST_BODY }
static KVQ_TARGET_AVX2 void acc_avx2(double *acc, const float *x, int d) { ACC_BODY }
static KVQ_TARGET_AVX2 void add_avx2(float *restrict y, const float *restrict x, int d) { ADD_BODY }
#endif

double kvq_row_sqdist_any(const float *a, const float *b, int d)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) return sqdist_avx2(a, b, d);
#endif
    return kvq_row_sqdist_ref(a, b, d);
}

void kvq_row_acc_any(double *acc, const float *x, int d)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        acc_avx2(acc, x, d);
        return;
    }
#endif
    kvq_row_acc_ref(acc, x, d);
}

void kvq_row_add(float *y, const float *x, int d)
{
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        add_avx2(y, x, d);
        return;
    }
#endif
    kvq_row_add_ref(y, x, d);
}
