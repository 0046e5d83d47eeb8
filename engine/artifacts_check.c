// artifacts_check.c — the shape and value range of every calibration tensor
// (calib/calib.h lists them), checked once when artifacts are loaded so a
// plan never indexes past a crafted tensor or computes on values its math
// cannot take. Tensors named after a calibrated method are checked whatever
// the manifest's own method says (plans look tensors up by name only);
// other names are kept unchecked.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "artifacts_impl.h"

// Largest |value| of a data-bearing tensor (centroids, codebooks, means,
// smooth factors, sensitivities): far above any key (fp16 keys stay below
// 65504), small enough that squares summed over head_dim and tokens stay
// finite in float.
#define ART_MAX_ABS 1e9
#define ART_MAX_RATES 16

typedef struct {
    const char *where;    // the file named in messages
    int L, H, d;          // trace.layers, trace.kv_heads, trace.head_dim (0 = absent)
    int rq_lead;          // ratequant leading dims: 1 = (L), 2 = (L, H), 0 = not seen yet
} ck_ctx;

static void shape_str(char *buf, size_t n, const kvq_art_tensor *t)
{
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && len < n; d++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    if (len < n) snprintf(buf + len, n - len, "]");
}

static kvq_status bad_shape(const ck_ctx *c, const kvq_art_tensor *t, const char *want)
{
    char got[128];
    shape_str(got, sizeof got, t);
    return kvq_error(KVQ_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", c->where, t->name, got, want);
}

// Every element in [lo, hi]; integral when asked.
static kvq_status range(const ck_ctx *c, const kvq_art_tensor *t, size_t from, size_t step, double lo, double hi,
                        bool integral, const char *what)
{
    for (size_t i = from; i < t->nelem; i += step) {
        double v = t->data[i];
        if (v < lo || v > hi || (integral && v != floor(v)))
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': %s %g at element %zu (expected %s%g..%g)", c->where,
                             t->name, what, v, i, integral ? "an integer in " : "", lo, hi);
    }
    return KVQ_OK;
}

static bool dims(const kvq_art_tensor *t, int nd, const int64_t *want)
{
    if (t->ndim != nd) return false;
    for (int d = 0; d < nd; d++)
        if (t->shape[d] != want[d]) return false;
    return true;
}

// "<prefix>l<L>.h<H>" with L < c->L and H < c->H.
static bool stream_name(const ck_ctx *c, const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n)) return false;
    int l, h, end = 0;
    if (sscanf(name + n, "l%d.h%d%n", &l, &h, &end) != 2 || name[n + end]) return false;
    char canon[96];   // no leading zeros or signs: the name a calibrator writes
    snprintf(canon, sizeof canon, "l%d.h%d", l, h);
    return !strcmp(canon, name + n) && l >= 0 && l < c->L && h >= 0 && h < c->H;
}

// ratequant: (L) or (L, H) leading dims, the same for every tensor.
static kvq_status rq_lead(ck_ctx *c, const kvq_art_tensor *t, int tail, int64_t tail_len)
{
    char want[96];
    int lead = t->ndim - (tail ? 1 : 0);
    bool ok = (lead == 1 || lead == 2) && (!c->rq_lead || c->rq_lead == lead) && t->shape[0] == c->L &&
              (lead == 1 || t->shape[1] == c->H) && (!tail || !tail_len || t->shape[t->ndim - 1] == tail_len);
    if (!ok) {
        const char *tl = tail ? (tail_len ? "" : ", R") : "";
        char tn[24] = "";
        if (tail && tail_len) snprintf(tn, sizeof tn, ", %lld", (long long)tail_len);
        if (c->rq_lead == 2 || (!c->rq_lead && lead == 2))
            snprintf(want, sizeof want, "[%d,%d%s%s] (layers, kv heads%s)", c->L, c->H, tn, tl, tail ? ", ..." : "");
        else
            snprintf(want, sizeof want, "[%d%s%s] (layers%s)", c->L, tn, tl, tail ? ", ..." : "");
        return bad_shape(c, t, want);
    }
    c->rq_lead = lead;
    return KVQ_OK;
}

static kvq_status check_ratequant(ck_ctx *c, const kvq_art_tensor *t)
{
    const char *n = t->name + strlen("ratequant.");
    kvq_status s;
    if (!strcmp(n, "target_bits")) {
        int64_t one = 1;
        if (!dims(t, 1, &one)) return bad_shape(c, t, "[1]");
        return range(c, t, 0, 1, 0, 16, false, "target");
    }
    if (!strcmp(n, "rates")) {
        if (t->ndim != 1 || t->shape[0] < 1 || t->shape[0] > ART_MAX_RATES) return bad_shape(c, t, "[R] with R in 1..16");
        return range(c, t, 0, 1, 0, 16, false, "rate");
    }
    if (!strcmp(n, "bits")) {
        if ((s = rq_lead(c, t, 0, 0))) return s;
        return range(c, t, 0, 1, 1, 8, true, "bits");
    }
    if (!strcmp(n, "sensitivity")) {
        if ((s = rq_lead(c, t, 1, 4))) return s;
        return range(c, t, 0, 1, -ART_MAX_ABS, ART_MAX_ABS, false, "value");
    }
    if (!strcmp(n, "curve")) {
        // alpha exp(-beta r) over r in 0..8 must stay finite and positive
        if ((s = rq_lead(c, t, 1, 3)) || (s = range(c, t, 0, 3, 0, ART_MAX_ABS, false, "alpha")) ||
            (s = range(c, t, 1, 3, -10, 10, false, "beta")))
            return s;
        return range(c, t, 2, 3, 0, ART_MAX_ABS, false, "fit error");
    }
    if (!strcmp(n, "distortion")) {
        if ((s = rq_lead(c, t, 1, 0))) return s;
        if (t->shape[t->ndim - 1] < 1 || t->shape[t->ndim - 1] > ART_MAX_RATES)
            return bad_shape(c, t, "(layers[, kv heads], R) with R in 1..16");
        return range(c, t, 0, 1, 0, ART_MAX_ABS, false, "distortion");
    }
    return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' is not a ratequant artifact (expected bits, target_bits, "
                     "sensitivity, curve, rates, distortion)", c->where, t->name);
}

static kvq_status check_vecinfer(ck_ctx *c, const kvq_art_tensor *t)
{
    char want[96];
    if (!strcmp(t->name, "vecinfer.smooth")) {
        int64_t sh[2] = {c->L, c->d};
        snprintf(want, sizeof want, "[%d,%d] (layers, head_dim)", c->L, c->d);
        if (!dims(t, 2, sh)) return bad_shape(c, t, want);
        return range(c, t, 0, 1, 0, ART_MAX_ABS, false, "smooth factor");
    }
    if (!strcmp(t->name, "vecinfer.codebook")) {
        snprintf(want, sizeof want, "[%d,M,C,%d/M] (layers, subspaces, centroids 2..256, head_dim/M)", c->L, c->d);
        const int64_t *s = t->shape;
        if (t->ndim != 4 || s[0] != c->L || s[1] < 1 || s[1] > c->d || s[3] < 1 || s[1] * s[3] != c->d || s[2] < 2 ||
            s[2] > 256 || (s[2] & (s[2] - 1)))
            return bad_shape(c, t, want);
        return range(c, t, 0, 1, -ART_MAX_ABS, ART_MAX_ABS, false, "centroid coordinate");
    }
    return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' is not a vecinfer artifact (expected smooth, codebook)",
                     c->where, t->name);
}

static kvq_status check_spectral(ck_ctx *c, const kvq_art_tensor *t)
{
    char want[96];
    int64_t dd[2] = {c->d, c->d}, d1 = c->d, lh[2] = {c->L, c->H};
    if (!strcmp(t->name, "spectral.d_eff")) {
        snprintf(want, sizeof want, "[%d,%d] (layers, kv heads)", c->L, c->H);
        if (!dims(t, 2, lh)) return bad_shape(c, t, want);
        return range(c, t, 0, 1, 0, c->d, false, "d_eff");
    }
    if (stream_name(c, t->name, "spectral.rotation.")) {
        snprintf(want, sizeof want, "[%d,%d] (head_dim, head_dim)", c->d, c->d);
        if (!dims(t, 2, dd)) return bad_shape(c, t, want);
        return range(c, t, 0, 1, -1.001, 1.001, false, "eigenvector component");   // unit rows
    }
    snprintf(want, sizeof want, "[%d] (head_dim)", c->d);
    if (stream_name(c, t->name, "spectral.mean.")) {
        if (!dims(t, 1, &d1)) return bad_shape(c, t, want);
        return range(c, t, 0, 1, -ART_MAX_ABS, ART_MAX_ABS, false, "mean");
    }
    if (stream_name(c, t->name, "spectral.eigenvalues.")) {
        if (!dims(t, 1, &d1)) return bad_shape(c, t, want);
        return range(c, t, 0, 1, 0, ART_MAX_ABS * ART_MAX_ABS, false, "eigenvalue");   // variances
    }
    return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' is not a spectral artifact for layers 0..%d, kv heads 0..%d "
                     "(expected rotation/mean/eigenvalues.l<L>.h<H>, d_eff)", c->where, t->name, c->L - 1, c->H - 1);
}

static kvq_status check_rabitq(ck_ctx *c, const kvq_art_tensor *t)
{
    if (!stream_name(c, t->name, "rabitq.centroids."))
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' is not a rabitq artifact for layers 0..%d, kv heads 0..%d "
                         "(expected rabitq.centroids.l<L>.h<H>)", c->where, t->name, c->L - 1, c->H - 1);
    char want[96];
    snprintf(want, sizeof want, "[K,%d] (clusters 1..65536, head_dim)", c->d);
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[0] > 65536 || t->shape[1] != c->d) return bad_shape(c, t, want);
    return range(c, t, 0, 1, -ART_MAX_ABS, ART_MAX_ABS, false, "centroid coordinate");
}

static kvq_status check_commvq(ck_ctx *c, const kvq_art_tensor *t)
{
    if (!stream_name(c, t->name, "commvq.codebooks."))
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' is not a commvq artifact for layers 0..%d, kv heads 0..%d "
                         "(expected commvq.codebooks.l<L>.h<H>)", c->where, t->name, c->L - 1, c->H - 1);
    char want[96];
    // R = bits x head_dim / log2(C): at most 8 x head_dim (8 bits, C = 2)
    snprintf(want, sizeof want, "[R,C,%d] (codebooks 1..%d, centroids 2..256, head_dim)", c->d, 8 * c->d);
    if (t->ndim != 3 || t->shape[0] < 1 || t->shape[0] > 8 * c->d || t->shape[1] < 2 || t->shape[1] > 256 ||
        t->shape[2] != c->d)
        return bad_shape(c, t, want);
    return range(c, t, 0, 1, -ART_MAX_ABS, ART_MAX_ABS, false, "codeword coordinate");
}

static const struct {
    const char *prefix;
    kvq_status (*check)(ck_ctx *c, const kvq_art_tensor *t);
} checkers[] = {
    {.prefix = "ratequant.", .check = check_ratequant}, {.prefix = "vecinfer.", .check = check_vecinfer},
    {.prefix = "spectral.", .check = check_spectral},   {.prefix = "rabitq.", .check = check_rabitq},
    {.prefix = "commvq.", .check = check_commvq},
};

static kvq_status meta_dim(const kvq_artifacts *a, const char *where, const char *key, int hi, int *out)
{
    const char *v = kvq_artifacts_meta(a, key);
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || x < 1 || x > hi)
        return kvq_error(KVQ_ERR_FORMAT, "%s: metadata '%s' is %s%s%s, expected an integer in 1..%d (the shape the "
                         "tensors were calibrated for)", where, key, v ? "'" : "", v ? v : "missing", v ? "'" : "", hi);
    *out = (int)x;
    return KVQ_OK;
}

kvq_status kvq_artifacts_check(const kvq_artifacts *a, const char *where)
{
    if (!a) return KVQ_OK;
    ck_ctx c = {.where = where ? where : "artifacts"};
    bool have_shape = false;
    for (int i = 0; i < a->n; i++) {
        const kvq_art_tensor *t = &a->t[i];
        for (size_t k = 0; k < sizeof checkers / sizeof checkers[0]; k++) {
            if (strncmp(t->name, checkers[k].prefix, strlen(checkers[k].prefix))) continue;
            kvq_status s;
            if (!have_shape) {   // only calibration tensors need the trace shape
                if ((s = meta_dim(a, c.where, "trace.layers", KVQ_MAX_LAYERS, &c.L)) ||
                    (s = meta_dim(a, c.where, "trace.kv_heads", 1 << 16, &c.H)) ||
                    (s = meta_dim(a, c.where, "trace.head_dim", KVQ_MAX_HEAD_DIM, &c.d)))
                    return s;
                have_shape = true;
            }
            if ((s = checkers[k].check(&c, t))) return s;
            break;
        }
    }
    return KVQ_OK;
}
