// methods/vllm_turboquant.c — vLLM's TurboQuant KV cache (--kv-cache-dtype
// turboquant_*), one record per key and per value of a token's slot, byte
// for byte as vLLM writes them:
//   vllm:tq_k4 / vllm:tq_k3  keys: ceil(d*b/8) bytes of Lloyd-Max indices of
//                            the Hadamard-rotated unit key + fp16 ||k||;
//                            read back with norm correction (the presets
//                            that use MSE keys all set norm_correction)
//   vllm:tq_v4 / vllm:tq_v3  values: ceil(d*b/8) bytes of uniform codes +
//                            fp16 scale + fp16 min
// turboquant_k8v4's keys are vllm:fp8_e4m3 (a plain saturating E4M3 cast,
// no scale), so that preset is vllm:fp8_e4m3 + vllm:tq_v4. A slot is
// [key record | value record]; at a power-of-two head_dim its size is even,
// so vLLM's round-up to even (slot_size_aligned) adds nothing.
//
// Read in vllm-project/vllm:
//   model_executor/layers/quantization/turboquant/config.py @ 1471680b
//     (TQ_PRESETS, key_packed_size = ceil(d*b/8) + 2, value_packed_size =
//     ceil(d*b/8) + 4, slot_size_aligned)
//   .../turboquant/centroids.py @ 06d0369d (solve_lloyd_max: N(0, 1/d),
//     trapezoid rule n=200 on [-10.5, 10.5] sigma edges, 200 iterations,
//     tol 1e-10; centroids rounded to float32)
//   v1/attention/backends/turboquant_attn.py @ 0135d081 (_build_hadamard:
//     Sylvester H / sqrt(d), the same for every layer and head, no signs;
//     midpoints = (c[:-1] + c[1:]) / 2 in float32)
//   v1/attention/ops/triton_turboquant_store.py @ 0135d081
//     (triton_turboquant_store: norms = ||k||, y = (k / (norms + 1e-8)) @ H;
//     _tq_fused_store_mse: binary-search bucketize over the midpoints, 4-bit
//     pairs low nibble first, 3-bit groups of 8 in 3 little-endian bytes,
//     fp16 norm after the indices; _store_quantized_value: scale = (max -
//     min) / (2^b - 1) clamped to >= 1e-8, q = trunc((v - min) / scale +
//     0.5) clamped, fp16 scale then fp16 min after the codes)
//   v1/attention/ops/triton_turboquant_decode.py @ 055e47c2
//     (_tq_full_dequant_kv: c = centroids[idx], c /= sqrt(|c|^2 + 1e-16),
//     k_rot = fp16 norm x c; v = q x scale + min with fp16 scale and min)
// Arithmetic: fp32 as the kernels do it, except that ||k|| and the
// rotation sum in double and round once (the GPU reduces in fp32 in an
// order of its own), and divisions are IEEE (Triton's fp32 divide may be
// the 2-ulp div.full): both move a code only for inputs within an ulp or
// two of a bucket edge. The input floats are taken as the model-dtype K/V
// vLLM receives (fp16/bf16 values replay exactly).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "methods.h"

typedef struct {
    int d, bits, n;          // head_dim, bits, 2^bits levels
    bool key;                // Lloyd-Max key record vs uniform value record
    size_t code_bytes;       // ceil(d * bits / 8)
    float hval;              // 1 / sqrt(d) as torch builds it in fp32
    float centroids[16];     // solve_lloyd_max(d, bits), float32, sorted
    float midpoints[15];
} vtq_plan;

// centroids.py's _gaussian_pdf and _trapz, operation for operation (Python
// floats are doubles; the same libm exp).
static double vtq_pdf(double x, double sigma2)
{
    return (1.0 / sqrt(2 * M_PI * sigma2)) * exp(-x * x / (2 * sigma2));
}

static double vtq_trapz(bool moment, double a, double b, double sigma2)
{
    const int n = 200;
    double h = (b - a) / n;
    double fa = vtq_pdf(a, sigma2), fb = vtq_pdf(b, sigma2);
    if (moment) fa *= a, fb *= b;
    double r = 0.5 * (fa + fb);
    for (int i = 1; i < n; i++) {
        double x = a + i * h;
        r += moment ? x * vtq_pdf(x, sigma2) : vtq_pdf(x, sigma2);
    }
    return r * h;
}

// solve_lloyd_max(d, bits): a converged step is not taken (the loop breaks
// before assigning), so the result is the previous iterate, as there.
static void vtq_lloyd_max(int d, int bits, float *out)
{
    int nl = 1 << bits;
    double sigma2 = 1.0 / d, sigma = sqrt(sigma2);
    double lo = -3.5 * sigma, hi = 3.5 * sigma;
    double c[16], nc[16], edges[17];
    for (int i = 0; i < nl; i++) c[i] = lo + (hi - lo) * (i + 0.5) / nl;
    for (int it = 0; it < 200; it++) {
        edges[0] = lo * 3;
        edges[nl] = hi * 3;
        for (int i = 0; i < nl - 1; i++) edges[i + 1] = (c[i] + c[i + 1]) / 2.0;
        double dmax = 0;
        for (int i = 0; i < nl; i++) {
            double num = vtq_trapz(true, edges[i], edges[i + 1], sigma2);
            double den = vtq_trapz(false, edges[i], edges[i + 1], sigma2);
            nc[i] = den > 1e-15 ? num / den : c[i];
            double e = fabs(nc[i] - c[i]);
            if (e > dmax) dmax = e;
        }
        if (dmax < 1e-10) break;
        memcpy(c, nc, sizeof(double) * (size_t)nl);
    }
    for (int i = 0; i < nl; i++) out[i] = (float)c[i];
}

static kvq_status vtq_plan_new(const kvq_plan_params *pp, int bits, bool key, const char *who, void **plan)
{
    *plan = NULL;
    int d = pp->head_dim;
    // Sylvester Hadamard needs a power of two; 3-bit packing groups of 8.
    if (d < 8 || d > KVQ_MAX_HEAD_DIM || (d & (d - 1)))
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: head_dim %d unsupported (expected a power of two, 8..%d)", who,
                         d, KVQ_MAX_HEAD_DIM);
    vtq_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", who);
    p->d = d, p->bits = bits, p->n = 1 << bits, p->key = key;
    p->code_bytes = ((size_t)d * (size_t)bits + 7) / 8;
    p->hval = 1.0f / (float)sqrt((double)d);
    if (key) {
        vtq_lloyd_max(d, bits, p->centroids);
        for (int i = 0; i < p->n - 1; i++) p->midpoints[i] = (p->centroids[i] + p->centroids[i + 1]) / 2.0f;
    }
    *plan = p;
    return KVQ_OK;
}

static size_t vtq_bpv(const void *plan)
{
    const vtq_plan *p = plan;
    return p->code_bytes + (p->key ? 2 : 4);
}

// Unnormalized Walsh-Hadamard in natural (Sylvester) order, in double.
static void vtq_fwht(double *x, int d)
{
    for (int h = 1; h < d; h <<= 1)
        for (int i = 0; i < d; i += h << 1)
            for (int j = i; j < i + h; j++) {
                double a = x[j], b = x[j + h];
                x[j] = a + b, x[j + h] = a - b;
            }
}

static void vtq_pack(const vtq_plan *p, const uint8_t *idx, uint8_t *out)
{
    if (p->bits == 4) {
        for (int j = 0; j < p->d / 2; j++) out[j] = (uint8_t)(idx[2 * j] | idx[2 * j + 1] << 4);
        return;
    }
    for (int g = 0; g < p->d / 8; g++) {
        uint32_t w = 0;
        for (int i = 0; i < 8; i++) w |= (uint32_t)idx[8 * g + i] << (3 * i);
        out[3 * g] = (uint8_t)w, out[3 * g + 1] = (uint8_t)(w >> 8), out[3 * g + 2] = (uint8_t)(w >> 16);
    }
}

// The decode kernels' gather: bits at d*b, little-endian across two bytes.
static void vtq_unpack(const vtq_plan *p, const uint8_t *in, uint8_t *idx)
{
    for (int j = 0; j < p->d; j++) {
        int bit = j * p->bits, byte = bit / 8;
        unsigned w = in[byte] | ((size_t)byte + 1 < p->code_bytes ? (unsigned)in[byte + 1] << 8 : 0u);
        idx[j] = (uint8_t)((w >> (bit % 8)) & (unsigned)(p->n - 1));
    }
}

static void vtq_key_encode(const vtq_plan *p, const float *k, uint8_t *rec)
{
    int d = p->d;
    double ss = 0, y[KVQ_MAX_HEAD_DIM];
    for (int i = 0; i < d; i++) ss += (double)k[i] * k[i];
    float norm = (float)sqrt(ss), den = norm + 1e-8f;
    for (int i = 0; i < d; i++) y[i] = (double)(k[i] / den);
    vtq_fwht(y, d);
    uint8_t idx[KVQ_MAX_HEAD_DIM];
    for (int j = 0; j < d; j++) {
        float yj = (float)(y[j] * p->hval);
        int lo = 0, hi = p->n - 1;   // _tq_fused_store_mse's search: NaN -> 0
        for (int it = 0; it < p->bits; it++) {
            int mid = (lo + hi) >> 1, safe = mid < p->n - 2 ? mid : p->n - 2;
            if (yj >= p->midpoints[safe]) lo = mid + 1;
            else hi = mid;
        }
        idx[j] = (uint8_t)(lo < p->n - 1 ? lo : p->n - 1);
    }
    vtq_pack(p, idx, rec);
    kvq_f16_store(rec + p->code_bytes, norm);
}

// The rotated-domain key the kernels use is k_rot = fp16 norm x (c / |c|):
// unpacks idx, returns 1 / |c| and the norm.
static float vtq_key_inv(const vtq_plan *p, const uint8_t *rec, uint8_t *idx, float *norm)
{
    vtq_unpack(p, rec, idx);
    float css = 0.0f;
    for (int j = 0; j < p->d; j++) css += p->centroids[idx[j]] * p->centroids[idx[j]];
    *norm = kvq_f16_load(rec + p->code_bytes);
    return 1.0f / sqrtf(css + 1e-16f);
}

static void vtq_key_decode(const vtq_plan *p, const uint8_t *rec, float *x)
{
    uint8_t idx[KVQ_MAX_HEAD_DIM];
    float norm, inv = vtq_key_inv(p, rec, idx, &norm);
    double r[KVQ_MAX_HEAD_DIM];
    for (int j = 0; j < p->d; j++) r[j] = (double)(norm * (p->centroids[idx[j]] * inv));
    vtq_fwht(r, p->d);   // x = k_rot @ H (H symmetric and its own inverse)
    for (int i = 0; i < p->d; i++) x[i] = (float)(r[i] * p->hval);
}

static void vtq_value_encode(const vtq_plan *p, const float *v, uint8_t *rec)
{
    int d = p->d, qmax = p->n - 1;
    float mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < d; i++) {
        if (v[i] < mn) mn = v[i];
        if (v[i] > mx) mx = v[i];
    }
    float scale = (mx - mn) / (float)qmax;
    if (!(scale > 1e-8f)) scale = 1e-8f;
    uint8_t q[KVQ_MAX_HEAD_DIM];
    for (int i = 0; i < d; i++) {
        float t = (v[i] - mn) / scale + 0.5f;   // .to(int32) truncates, then clamp
        q[i] = !(t >= 1.0f) ? 0 : t >= (float)qmax ? (uint8_t)qmax : (uint8_t)(int)t;
    }
    vtq_pack(p, q, rec);
    kvq_f16_store(rec + p->code_bytes, scale);
    kvq_f16_store(rec + p->code_bytes + 2, mn);
}

static void vtq_value_decode(const vtq_plan *p, const uint8_t *rec, float *x)
{
    uint8_t q[KVQ_MAX_HEAD_DIM];
    vtq_unpack(p, rec, q);
    float scale = kvq_f16_load(rec + p->code_bytes), mn = kvq_f16_load(rec + p->code_bytes + 2);
    for (int i = 0; i < p->d; i++) x[i] = fmaf((float)q[i], scale, mn);   // the kernels' fused q*s+z
}

static void vtq_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const vtq_plan *p = plan;
    size_t b = vtq_bpv(p);
    for (size_t i = 0; i < n; i++)
        (p->key ? vtq_key_encode : vtq_value_encode)(p, x + i * (size_t)p->d, codes + i * b);
}

static void vtq_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const vtq_plan *p = plan;
    size_t b = vtq_bpv(p);
    for (size_t i = 0; i < n; i++)
        (p->key ? vtq_key_decode : vtq_value_decode)(p, codes + i * b, x + i * (size_t)p->d);
}

static size_t vtq_query_bytes(const void *plan) { return sizeof(float) * (size_t)((const vtq_plan *)plan)->d; }

// Keys: the decode kernel's q_rot = q @ H; values: q itself.
static void vtq_prepare_query(const void *plan, const float *q, void *qs)
{
    const vtq_plan *p = plan;
    float *out = qs;
    if (!p->key) {
        memcpy(out, q, vtq_query_bytes(p));
        return;
    }
    double r[KVQ_MAX_HEAD_DIM];
    for (int i = 0; i < p->d; i++) r[i] = q[i];
    vtq_fwht(r, p->d);
    for (int i = 0; i < p->d; i++) out[i] = (float)(r[i] * p->hval);
}

static void vtq_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const vtq_plan *p = plan;
    const float *q = qs;
    size_t b = vtq_bpv(p);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = codes + i * b;
        float acc = 0.0f;
        if (p->key) {   // norm x <q_rot, c / |c|>, as _tq_decode_stage1 scores
            uint8_t idx[KVQ_MAX_HEAD_DIM];
            float norm, inv = vtq_key_inv(p, rec, idx, &norm);
            for (int j = 0; j < p->d; j++) acc += q[j] * (p->centroids[idx[j]] * inv);
            acc *= norm;
        } else {
            float v[KVQ_MAX_HEAD_DIM];
            vtq_value_decode(p, rec, v);
            for (int j = 0; j < p->d; j++) acc += q[j] * v[j];
        }
        scores[i] = acc;
    }
}

#define VTQ_METHOD(p, who, b, is_key)                                                                   \
    kvq_status kvq_##p##_plan_new(const kvq_plan_params *pp, void **plan)                              \
    { return vtq_plan_new(pp, b, is_key, who, plan); }                                                 \
    void kvq_##p##_plan_free(void *plan) { free(plan); }                                               \
    size_t kvq_##p##_bytes_per_vector(const void *plan) { return vtq_bpv(plan); }                      \
    void kvq_##p##_encode(const void *plan, const float *x, size_t n, uint8_t *codes)                  \
    { vtq_encode(plan, x, n, codes); }                                                                 \
    void kvq_##p##_decode(const void *plan, const uint8_t *codes, size_t n, float *x)                  \
    { vtq_decode(plan, codes, n, x); }                                                                 \
    size_t kvq_##p##_query_bytes(const void *plan) { return vtq_query_bytes(plan); }                   \
    void kvq_##p##_prepare_query(const void *plan, const float *q, void *qs)                           \
    { vtq_prepare_query(plan, q, qs); }                                                                \
    void kvq_##p##_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *s)   \
    { vtq_score(plan, qs, codes, n, s); }

VTQ_METHOD(vllm_tq_k4, "vllm:tq_k4", 4, true)
VTQ_METHOD(vllm_tq_k3, "vllm:tq_k3", 3, true)
VTQ_METHOD(vllm_tq_v4, "vllm:tq_v4", 4, false)
VTQ_METHOD(vllm_tq_v3, "vllm:tq_v3", 3, false)
