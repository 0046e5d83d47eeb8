// methods/ratequant.c — RateQuant: turboquant_mse under a calibrated per-layer
// (or per-head) bit allocation.
//
// Artifacts (calib/ratequant.c): ratequant.bits (L) or (L, H),
// ratequant.target_bits (1), ratequant.sensitivity (L[, H], 4) and
// ratequant.curve (L[, H], 3). Which bits a stream gets:
//   - round(target_bits) == the method's bits: the stored allocation;
//   - otherwise the allocation is redone for target = bits from the stored
//     curves and sensitivities (the same greedy reverse water-filling), so
//     one calibration serves a whole bits sweep.
// Key records are turboquant_mse records at the stream's bits (its
// outlier_channels setting applies); values get plain turboquant_mse at bits.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "calib/calib.h"
#include "methods.h"

typedef struct rq_plan {
    const kvq_method *inner;
    void *inner_plan;
    int bits;
} rq_plan;

static kvq_status needs(void)
{
    return kvq_error(KVQ_ERR_NEEDS_CALIBRATION,
                     "ratequant needs calibration (per-layer bit allocation): run `kvstudio precompute --method "
                     "ratequant --trace T --output DIR [--target-bits B]` (or `calibrate ratequant`)");
}

// Bits of stream (layer, head) at target `bits` from the artifacts.
static kvq_status stream_bits(const kvq_plan_params *pp, int *out)
{
    // Loaded artifacts passed kvq_artifacts_check; these shape checks cover
    // artifacts built in memory, so no array here is read past its end.
    int nd = 0, ntg = 0;
    int64_t sh[8], shg[8];
    const float *alloc = kvq_artifacts_get(pp->art, "ratequant.bits", &nd, sh);
    const float *tgt = kvq_artifacts_get(pp->art, "ratequant.target_bits", &ntg, shg);
    if (!alloc || !tgt) return needs();
    if (ntg != 1 || shg[0] != 1 || !(tgt[0] >= 0 && tgt[0] <= 16))
        return kvq_error(KVQ_ERR_SHAPE, "ratequant: artifact 'ratequant.target_bits' is not one number in 0..16");
    if ((nd != 1 && nd != 2) || sh[0] < 1 || sh[0] > KVQ_MAX_LAYERS || (nd == 2 && (sh[1] < 1 || sh[1] > 65536)))
        return kvq_error(KVQ_ERR_SHAPE, "ratequant: artifact 'ratequant.bits' is not (layers) or (layers, kv heads)");
    bool per_head = nd == 2;
    int L = (int)sh[0], H = per_head ? (int)sh[1] : 1;
    if (pp->layer >= L || (per_head && pp->kv_head >= H))
        return kvq_error(KVQ_ERR_SHAPE, "ratequant: artifacts allocate %d layers x %d heads, asked for layer %d head %d",
                         L, H, pp->layer, pp->kv_head);
    int unit = pp->layer * H + (per_head ? pp->kv_head : 0);
    if (lround(tgt[0]) == pp->bits) {
        float b = alloc[unit];
        if (!(b >= 1 && b <= 8))
            return kvq_error(KVQ_ERR_FORMAT, "ratequant: artifact 'ratequant.bits' gives %g bits to layer %d "
                             "(expected 1..8)", (double)b, pp->layer);
        *out = (int)lroundf(b);
        return KVQ_OK;
    }
    // (L[, H], 3) and (L[, H], 4): the same leading dims as the allocation
    int64_t shc[3] = {sh[0], per_head ? sh[1] : 3, 3}, shs[3] = {sh[0], per_head ? sh[1] : 4, 4};
    const float *curve = NULL, *sens = NULL;
    int n = L * H;
    if (!kvq_artifacts_get(pp->art, "ratequant.curve", NULL, NULL) ||
        !kvq_artifacts_get(pp->art, "ratequant.sensitivity", NULL, NULL))
        return kvq_error(KVQ_ERR_NEEDS_CALIBRATION, "ratequant: artifacts lack curves to re-allocate for %d bits "
                         "(calibrated for %g); recalibrate with --target-bits %d", pp->bits, (double)tgt[0], pp->bits);
    kvq_status cs;
    if ((cs = kvq_artifacts_require(pp->art, "ratequant.curve", nd + 1, shc, &curve)) ||
        (cs = kvq_artifacts_require(pp->art, "ratequant.sensitivity", nd + 1, shs, &sens)))
        return cs;
    double *w = malloc(sizeof(double) * (size_t)n);
    kvq_rq_curve *c = calloc((size_t)n, sizeof *c);
    int *b = malloc(sizeof(int) * (size_t)n);
    kvq_status s = KVQ_OK;
    if (!w || !c || !b) s = kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    for (int i = 0; !s && i < n; i++) {
        w[i] = sens[i * 4 + 3];   // gain: error per unit of relative key MSE
        c[i].alpha = curve[i * 3];
        c[i].beta = curve[i * 3 + 1];
    }
    if (!s) s = kvq_ratequant_allocate(w, c, n, pp->bits, 1, 8, b);
    if (!s) *out = b[unit];
    free(w);
    free(c);
    free(b);
    return s;
}

kvq_status kvq_ratequant_plan_new(const kvq_plan_params *pp, void **plan)
{
    *plan = NULL;
    int bits = pp->bits;
    kvq_status s;
    if (!pp->is_value && (s = stream_bits(pp, &bits))) return s;
    rq_plan *p = calloc(1, sizeof *p);
    if (!p) return kvq_error(KVQ_ERR_NOMEM, "ratequant: out of memory");
    p->inner = kvq_method_find("turboquant_mse");
    p->bits = bits;
    kvq_plan_params ip = *pp;
    ip.bits = bits;
    if ((s = p->inner->plan_new(&ip, &p->inner_plan))) {
        free(p);
        return s;
    }
    *plan = p;
    return KVQ_OK;
}

void kvq_ratequant_plan_free(void *plan)
{
    rq_plan *p = plan;
    if (p && p->inner_plan) p->inner->plan_free(p->inner_plan);
    free(p);
}

size_t kvq_ratequant_bytes_per_vector(const void *plan)
{
    const rq_plan *p = plan;
    return p->inner->bytes_per_vector(p->inner_plan);
}

void kvq_ratequant_encode(const void *plan, const float *x, size_t n, uint8_t *codes)
{
    const rq_plan *p = plan;
    p->inner->encode(p->inner_plan, x, n, codes);
}

void kvq_ratequant_decode(const void *plan, const uint8_t *codes, size_t n, float *x)
{
    const rq_plan *p = plan;
    p->inner->decode(p->inner_plan, codes, n, x);
}

size_t kvq_ratequant_query_bytes(const void *plan)
{
    const rq_plan *p = plan;
    return p->inner->query_bytes(p->inner_plan);
}

void kvq_ratequant_prepare_query(const void *plan, const float *q, void *qs)
{
    const rq_plan *p = plan;
    p->inner->prepare_query(p->inner_plan, q, qs);
}

void kvq_ratequant_score(const void *plan, const void *qs, const uint8_t *codes, size_t n, float *scores)
{
    const rq_plan *p = plan;
    p->inner->score(p->inner_plan, qs, codes, n, scores);
}

size_t kvq_ratequant_side_bytes(const void *plan)
{
    const rq_plan *p = plan;
    return p->inner->side_bytes ? p->inner->side_bytes(p->inner_plan) : 0;
}
