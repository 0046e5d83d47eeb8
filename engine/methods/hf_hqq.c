// methods/hf_hqq.c — transformers' QuantizedCache with the HQQ backend
// (backend "hqq", nbits 1, 2, 3, 4 or 8, axis_key = axis_value = 1,
// q_group_size 64): hqq's Quantizer.quantize with its proximal optimizer,
// scale and zero per group of 64 coordinates of one head's vector.
//
// transformers src/transformers/cache_utils.py (huggingface/transformers
// 004999d9): HQQQuantizedLayer._quantize = Quantizer.quantize(t, axis,
// nbits, group_size, compute_dtype = the cache dtype), meta then cast to that
// dtype (fp16). hqq (mobiusml/hqq e0b1d00e) core/quantize.py quantize: W =
// t.float(), axis 1 -> W.reshape(-1, 64); denom = max - min; scale = (2^nbits
// - 1) / denom (torch: denom.reciprocal() * max_v), 1 where |denom| <= 1e-4,
// at most 2e4; zero = -min x scale; then optimize_weights_proximal =
// core/optimize.py optimize_weights_proximal_legacy (lines 201-256), which
// on CUDA runs in fp16: lp_norm 0.7, beta 10, up to 20 steps of
//   W_q = clamp(round(W x scale + zero)), W_r = (W_q - zero) / scale,
//   W_e = shrink_lp(W - W_r), zero = mean(W_q - (W - W_e) x scale),
// stopping (keeping that step's zero) when the tensor's mean |W - W_r| does
// not fall; scale itself is never changed. Final codes round(W x scale +
// zero) in fp32; meta scale = 1 / scale; decode (W_q - zero) x scale, fp16.
//
// torch CUDA semantics (each fp16 op in float32, one rounding; a Python
// scalar divisor as a reciprocal multiply; pow's exponent -0.3 cast to fp16
// first, ATen PowKernel.cu; mean summed in float32, here in sequence). The
// early stop looks at the mean error of the whole tensor handed to
// quantize; kvstudio hands it one vector, so on a [B, H, T, D] tensor the
// library may stop one step sooner or later than a vector alone would.
//
// Record: codes, then head_dim / 64 fp16 scales (meta "scale", the inverse
// used by dequantize), then as many fp16 zeros. Codes in hqq's bit order
// (core/bitpack.py): 8 bits one a byte; 4, 2, 1 bits with the first code in
// the top bits of a byte; 3 bits ten codes a little-endian uint32 at shifts
// 27, 24, ..., 0 (3bit_32: 3.2 bits a value held), ceil(head_dim / 10)
// words. hqq packs the (G, 64) code matrix of the whole tensor with row r
// beside rows r + G/k (the same bytes, another order; test_hf_cache.c
// rebuilds it). 3-bit: 52 bytes for 128 values where hqq's tensor holds 51.2.
//
// Not modelled: transformers' default axis 0, which hqq groups as
// W.reshape(64, -1) columns, values numel/64 apart across the whole tensor
// (not one vector), and re-quantization at each flush. The fp16 residual
// (up to 127 tokens) is counted by side_bytes as in hf_quanto.c.
// tools/hf_cache_vectors.py writes the vectors.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "hf_round.h"
#include "methods.h"

#define HG 64
#define RESIDUAL 127
#define ITERS 20

typedef struct {
    int d, bits;
    float shrink_p;   // lp_norm - 1 as an fp16 exponent
} hqq_plan;

static float h(float x) { return hf_f16_round(x); }

kvq_status kvq_hf_hqq_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    int b = pp->bits;
    if (b != 1 && b != 2 && b != 3 && b != 4 && b != 8)
        return kvq_error(KVQ_ERR_ARG, "transformers:hqq_g64: bits %d not offered by transformers' HQQ cache "
                                      "(expected 1, 2, 3, 4 or 8)", b);
    if (pp->head_dim % HG)
        return kvq_error(KVQ_ERR_ARG, "transformers:hqq_g64: head_dim %d is not a multiple of the group size %d",
                         pp->head_dim, HG);
    hqq_plan *p = malloc(sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "transformers:hqq_g64: out of memory");
    *p = (hqq_plan){.d = pp->head_dim, .bits = b, .shrink_p = h((float)(0.7 - 1.0))};
    *plan = p;
    return KVQ_OK;
}

void kvq_hf_hqq_plan_free(void *plan) { free(plan); }

static size_t code_bytes(const hqq_plan *p)
{
    return p->bits == 3 ? 4 * (size_t)((p->d + 9) / 10) : (size_t)p->d * (size_t)p->bits / 8;
}

size_t kvq_hf_hqq_bytes_per_vector(const void *plan)
{
    const hqq_plan *p = plan;
    return code_bytes(p) + 4 * (size_t)(p->d / HG);
}

size_t kvq_hf_hqq_side_bytes(const void *plan)
{
    const hqq_plan *p = plan;
    return RESIDUAL * (2 * (size_t)p->d - kvq_hf_hqq_bytes_per_vector(p));
}

static void put_code(const hqq_plan *p, uint8_t *rec, int i, unsigned q)
{
    if (p->bits == 3) {
        int w = i / 10, sh = 27 - 3 * (i % 10);
        uint32_t v = q << sh;
        for (int k = 0; k < 4; k++) rec[4 * w + k] |= (uint8_t)(v >> (8 * k));
        return;
    }
    int per = 8 / p->bits;
    rec[i / per] |= (uint8_t)(q << (8 - p->bits * (i % per + 1)));
}

static unsigned get_code(const hqq_plan *p, const uint8_t *rec, int i)
{
    unsigned mask = (1u << p->bits) - 1;
    if (p->bits == 3) {
        int w = i / 10;
        uint32_t v = (uint32_t)rec[4 * w] | (uint32_t)rec[4 * w + 1] << 8 | (uint32_t)rec[4 * w + 2] << 16 |
                     (uint32_t)rec[4 * w + 3] << 24;
        return v >> (27 - 3 * (i % 10)) & mask;
    }
    int per = 8 / p->bits;
    return (unsigned)rec[i / per] >> (8 - p->bits * (i % per + 1)) & mask;
}

static float clampq(float q, float max_v) { return fminf(fmaxf(q, 0.0f), max_v); }

static float sign(float x) { return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f; }

// One vector: scale (fp16, the optimizer's) and zero per group.
static void optimize(const hqq_plan *p, const float *w, float *s, float *z)
{
    const int ng = p->d / HG;
    const float max_v = (float)((1 << p->bits) - 1);
    for (int g = 0; g < ng; g++) {
        const float *W = w + g * HG;
        float lo = INFINITY, hi = -INFINITY;
        for (int j = 0; j < HG; j++) lo = fminf(lo, W[j]), hi = fmaxf(hi, W[j]);
        float denom = hi - lo, sc = (1.0f / denom) * max_v;
        if (fabsf(denom) <= 1e-4f) sc = 1.0f;
        sc = fminf(sc, 2e4f);
        s[g] = h(sc);
        z[g] = h(-lo * sc);
    }
    float best = INFINITY, zn[KVQ_MAX_HEAD_DIM / HG];
    for (int it = 0; it < ITERS; it++) {
        float err_sum = 0.0f;
        for (int g = 0; g < ng; g++) {
            const float *W = w + g * HG;
            float acc = 0.0f;
            for (int j = 0; j < HG; j++) {
                float wq = clampq(rintf(h(h(W[j] * s[g]) + z[g])), max_v);
                float wr = h(h(wq - z[g]) / s[g]);
                float x = h(W[j] - wr), a = fabsf(x);
                float u = h(a - h(0.1f * h(powf(a, p->shrink_p))));
                float we = h(fmaxf(u, 0.0f) * sign(x));
                acc += h(wq - h(h(W[j] - we) * s[g]));
                err_sum += a;
            }
            zn[g] = h(acc * (1.0f / HG));
        }
        float err = h(err_sum * (1.0f / (float)p->d));
        memcpy(z, zn, sizeof(float) * (size_t)ng);
        if (err < best) best = err;
        else break;
    }
}

void kvq_hf_hqq_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const hqq_plan *p = plan;
    const size_t bpv = kvq_hf_hqq_bytes_per_vector(p), cb = code_bytes(p);
    const int ng = p->d / HG;
    const float max_v = (float)((1 << p->bits) - 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t *rec = codes + i * bpv;
        memset(rec, 0, bpv);
        float w[KVQ_MAX_HEAD_DIM], s[KVQ_MAX_HEAD_DIM / HG], z[KVQ_MAX_HEAD_DIM / HG];
        for (int j = 0; j < p->d; j++) w[j] = h(x[i * (size_t)p->d + (size_t)j]);   // the cache is fp16
        optimize(p, w, s, z);
        for (int g = 0; g < ng; g++) {
            for (int j = 0; j < HG; j++)
                put_code(p, rec, g * HG + j, (unsigned)clampq(rintf(w[g * HG + j] * s[g] + z[g]), max_v));
            kvq_f16_store(rec + cb + 2 * (size_t)g, 1.0f / s[g]);
            kvq_f16_store(rec + cb + 2 * (size_t)(ng + g), z[g]);
        }
    }
}

void kvq_hf_hqq_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const hqq_plan *p = plan;
    const size_t bpv = kvq_hf_hqq_bytes_per_vector(p), cb = code_bytes(p);
    const int ng = p->d / HG;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = codes + i * bpv;
        for (int g = 0; g < ng; g++) {
            float s = kvq_f16_load(rec + cb + 2 * (size_t)g), z = kvq_f16_load(rec + cb + 2 * (size_t)(ng + g));
            float *xg = x + i * (size_t)p->d + (size_t)(g * HG);
            if (1 << p->bits > HG) {   // 8 bits: more codes than values in a group, no table
                for (int j = 0; j < HG; j++) xg[j] = h(h((float)get_code(p, rec, g * HG + j) - z) * s);
                continue;
            }
            float lut[HG];   // (q - zero) x scale for the codes this width has, fp16 as hqq rounds them
            for (int q = 0; q < 1 << p->bits; q++) lut[q] = h(h((float)q - z) * s);
            for (int j = 0; j < HG; j++) xg[j] = lut[get_code(p, rec, g * HG + j)];
        }
    }
}

size_t kvq_hf_hqq_query_bytes(const void *plan) { return sizeof(float) * (size_t)((const hqq_plan *)plan)->d; }

void kvq_hf_hqq_prepare_query(const void *plan, const float *q, void *qs)
{
    memcpy(qs, q, kvq_hf_hqq_query_bytes(plan));
}

void kvq_hf_hqq_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const hqq_plan *p = plan;
    const float *q = qs;
    float k[KVQ_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        kvq_hf_hqq_decode(p, codes + i * kvq_hf_hqq_bytes_per_vector(p), 1, k);
        float acc = 0.0f;
        for (int j = 0; j < p->d; j++) acc += k[j] * q[j];
        scores[i] = acc;
    }
}
