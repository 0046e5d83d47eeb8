// calib/calib.c — calibration options, the calibrators table, kvq_calibrate,
// the artifact/trace match check and the attention measurements shared by
// the calibrators and their tests.
#include <cblas.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pool.h"
#include "calib.h"
#include "calib/kmeans.h"

// ---- options: one field table drives set/get/names and the manifest ----
typedef enum { O_INT, O_DOUBLE, O_BOOL, O_U64 } opt_type;
typedef struct {
    const char *name;
    opt_type type;
    size_t off;
    double lo, hi;
} opt_field;
#define OI(n, lo, hi) {#n, O_INT, offsetof(kvq_calib_opts, n), lo, hi}
#define OD(n, lo, hi) {#n, O_DOUBLE, offsetof(kvq_calib_opts, n), lo, hi}
static const opt_field opt_fields[] = {
    {"seed", O_U64, offsetof(kvq_calib_opts, seed), 0, 0},
    OI(sequence_length, 0, 1 << 24),
    OI(num_samples, 1, 1024),
    OI(layers, 0, KVQ_MAX_LAYERS),
    OI(n_queries, 0, 1 << 24),
    OI(max_iter, 0, 100000),
    OI(max_points_per_centroid, 0, 1 << 24),
    OD(target_bits, 0, 16),
    OD(noise_scale, 0, 100),
    OI(min_bits, 1, 8),
    OI(max_bits, 1, 8),
    OI(sensitivity_tokens, 0, 1 << 24),
    {"per_head", O_BOOL, offsetof(kvq_calib_opts, per_head), 0, 1},
    OI(num_centroids, 0, 65536),   // 0 = the method's default (vecinfer 256, commvq 4)
    OI(num_subspaces, 0, KVQ_MAX_HEAD_DIM),
    OI(signal_bits, 0, 8),
    OI(noise_bits, 0, 8),
    OI(num_clusters, 1, 65536),
};
#define N_OPT ((int)(sizeof opt_fields / sizeof opt_fields[0]))

void kvq_calib_opts_default(kvq_calib_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 42;
    o->num_samples = 4;
    o->n_queries = 128;
    o->max_points_per_centroid = KVQ_KMEANS_MAX_PPC;
    o->target_bits = 2.0;
    o->noise_scale = 0.1;
    o->min_bits = 1;
    o->max_bits = 4;
    o->sensitivity_tokens = 2048;
    o->signal_bits = 4;
    o->noise_bits = 1;
    o->num_clusters = 16;
}

static bool same_key(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a == '-' ? '_' : *a, y = *b == '-' ? '_' : *b;
        if (x != y) return false;
    }
    return *a == *b;
}

kvq_status kvq_calib_opts_set(kvq_calib_opts *o, const char *key, const char *value)
{
    for (int i = 0; i < N_OPT; i++) {
        const opt_field *f = &opt_fields[i];
        if (!same_key(key, f->name)) continue;
        char *p = (char *)o + f->off, *end;
        errno = 0;
        if (f->type == O_BOOL) {
            bool v;
            if (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes")) v = true;
            else if (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no")) v = false;
            else return kvq_error(KVQ_ERR_ARG, "calibration option %s: '%s' is not true/false", f->name, value);
            *(bool *)p = v;
        } else if (f->type == O_U64) {
            unsigned long long v = strtoull(value, &end, 0);
            if (errno || end == value || *end || value[0] == '-')
                return kvq_error(KVQ_ERR_ARG, "calibration option %s: '%s' is not an unsigned integer",
                                 f->name, value);
            *(uint64_t *)p = (uint64_t)v;
        } else if (f->type == O_INT) {
            long v = strtol(value, &end, 10);
            if (errno || end == value || *end || v < f->lo || v > f->hi)
                return kvq_error(KVQ_ERR_ARG, "calibration option %s: '%s' is not an integer in %.0f..%.0f",
                                 f->name, value, f->lo, f->hi);
            *(int *)p = (int)v;
        } else {
            double v = strtod(value, &end);
            if (errno || end == value || *end || !isfinite(v) || v < f->lo || v > f->hi)
                return kvq_error(KVQ_ERR_ARG, "calibration option %s: '%s' is not a number in %g..%g",
                                 f->name, value, f->lo, f->hi);
            *(double *)p = v;
        }
        return KVQ_OK;
    }
    char known[512] = "";
    size_t len = 0;
    for (int i = 0; i < N_OPT && len < sizeof known; i++)
        len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", opt_fields[i].name);
    return kvq_error(KVQ_ERR_ARG, "unknown calibration option '%s' (known: %s)", key, known);
}

const char *const *kvq_calib_opts_names(void)
{
    static const char *names[N_OPT + 1];
    if (!names[0])
        for (int i = 0; i < N_OPT; i++) names[i] = opt_fields[i].name;
    return names;
}

kvq_status kvq_calib_opts_get(const kvq_calib_opts *o, const char *key, char *buf, size_t n)
{
    for (int i = 0; i < N_OPT; i++) {
        const opt_field *f = &opt_fields[i];
        if (!same_key(key, f->name)) continue;
        const char *p = (const char *)o + f->off;
        if (f->type == O_BOOL) snprintf(buf, n, "%s", *(const bool *)p ? "true" : "false");
        else if (f->type == O_U64) snprintf(buf, n, "%" PRIu64, *(const uint64_t *)p);
        else if (f->type == O_INT) snprintf(buf, n, "%d", *(const int *)p);
        else snprintf(buf, n, "%.10g", *(const double *)p);
        return KVQ_OK;
    }
    return kvq_error(KVQ_ERR_ARG, "unknown calibration option '%s'", key);
}

// ---- the calibrators table ----
const kvq_calibrator kvq_calibrators[] = {
    {.name = "ratequant",
     .description = "layer sensitivities, distortion curves, per-layer bit allocation",
     .run = kvq_calib_ratequant},
    {.name = "vecinfer", .description = "smooth factors + product-VQ k-means codebooks",
     .run = kvq_calib_vecinfer},
    {.name = "spectral", .description = "per-head key covariance eigenbasis (LAPACK ssyevd)",
     .run = kvq_calib_spectral},
    {.name = "rabitq", .description = "IVF k-means centroids per layer and kv head",
     .run = kvq_calib_rabitq},
    {.name = "commvq", .description = "RoPE-commutative 2x2 additive codebooks by EM",
     .run = kvq_calib_commvq},
};
const int kvq_n_calibrators = (int)(sizeof kvq_calibrators / sizeof kvq_calibrators[0]);

const kvq_calibrator *kvq_calibrator_find(const char *name)
{
    for (int i = 0; name && i < kvq_n_calibrators; i++)
        if (!strcmp(kvq_calibrators[i].name, name)) return &kvq_calibrators[i];
    return NULL;
}

static kvq_status set_meta_int(kvq_artifacts *a, const char *key, long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    return kvq_artifacts_set_meta(a, key, buf);
}

kvq_status kvq_calibrate(const char *method, const kvq_trace *t, const kvq_calib_opts *o,
                         kvq_progress *p, kvq_artifacts **out)
{
    *out = NULL;
    const kvq_calibrator *c = kvq_calibrator_find(method);
    if (!c) {
        char known[256] = "";
        size_t len = 0;
        for (int i = 0; i < kvq_n_calibrators && len < sizeof known; i++)
            len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "",
                                    kvq_calibrators[i].name);
        return kvq_error(KVQ_ERR_UNKNOWN_METHOD, "no calibration for method '%s' (calibrated methods: %s)",
                         method ? method : "", known);
    }
    kvq_status s = kvq_check_shape(c->name, t->path, t->n_layers, t->n_kv_heads, t->head_dim);
    if (s) return s;
    if (o->layers > t->n_layers)
        return kvq_error(KVQ_ERR_ARG, "calibration: layers %d but the trace has %d", o->layers, t->n_layers);
    kvq_artifacts *a;
    if ((s = kvq_artifacts_new(&a))) return s;
    kvq_progress_begin(p);
    // Calibrators parallelize over the pool themselves; OpenBLAS's own
    // workers on their small sgemms only spin in sched_yield (a third of
    // vecinfer's time and most of commvq's system time on the sample trace).
    const int blas_threads = kvq_blas_threads_set(1);
    s = c->run(t, o, p, a);
    kvq_blas_threads_set(blas_threads);
    int layers = o->layers ? o->layers : t->n_layers;
    int tokens = o->sequence_length && o->sequence_length < t->n_tokens ? o->sequence_length : t->n_tokens;
    if (!s) s = kvq_artifacts_set_meta(a, "method", c->name);
    if (!s) s = kvq_artifacts_set_meta(a, "version", KVQ_VERSION);
    if (!s) s = kvq_artifacts_set_meta(a, "trace.path", t->path);
    if (!s) s = set_meta_int(a, "trace.layers", layers);
    if (!s) s = set_meta_int(a, "trace.kv_heads", t->n_kv_heads);
    if (!s) s = set_meta_int(a, "trace.head_dim", t->head_dim);
    if (!s) s = set_meta_int(a, "trace.tokens", tokens);
    for (int i = 0; !s && i < N_OPT; i++) {
        char key[64], val[64];
        snprintf(key, sizeof key, "option.%s", opt_fields[i].name);
        kvq_calib_opts_get(o, opt_fields[i].name, val, sizeof val);
        s = kvq_artifacts_set_meta(a, key, val);
    }
    // what a calibration hands out must load again: no inf/NaN from a trace
    // whose values overflow float arithmetic, every tensor in its shape/range
    for (int i = 0; !s && i < kvq_artifacts_count(a); i++) {
        int nd;
        int64_t sh[8];
        const char *name = kvq_artifacts_name(a, i);
        const float *x = kvq_artifacts_get(a, name, &nd, sh);
        size_t n = 1;
        for (int d = 0; d < nd; d++) n *= (size_t)sh[d];
        for (size_t j = 0; j < n && !s; j++)
            if (!isfinite(x[j]))
                s = kvq_error(KVQ_ERR_NUMERIC, "%s: calibration gave %s in '%s' (element %zu): the values of %s are "
                              "too large for float arithmetic", c->name, kvq_nonfinite_name(x[j]), name, j, t->path);
    }
    if (!s) {
        char where[KVQ_PATH_LEN + 48];
        snprintf(where, sizeof where, "%s calibration on %s", c->name, t->path);
        s = kvq_artifacts_check(a, where);
    }
    if (s) {
        kvq_artifacts_free(a);
        return s;
    }
    kvq_progress_report(p, 1.0, "done");
    *out = a;
    return KVQ_OK;
}

kvq_status kvq_artifacts_match_trace(const kvq_artifacts *a, const kvq_trace *t)
{
    static const char *const keys[] = {"trace.layers", "trace.kv_heads", "trace.head_dim"};
    static const char *const what[] = {"layers", "kv heads", "head_dim"};
    int have[3] = {t->n_layers, t->n_kv_heads, t->head_dim};
    char diff[256] = "";
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        const char *v = kvq_artifacts_meta(a, keys[i]);
        if (!v)
            return kvq_error(KVQ_ERR_FORMAT, "artifacts: metadata '%s' missing (not made by calibration?)",
                             keys[i]);
        long want = strtol(v, NULL, 10);
        if (want != have[i] && len < sizeof diff)
            len += (size_t)snprintf(diff + len, sizeof diff - len, "%s%s %ld vs %d", len ? ", " : "",
                                    what[i], want, have[i]);
    }
    if (len) {
        const char *m = kvq_artifacts_meta(a, "method");
        return kvq_error(KVQ_ERR_SHAPE, "%s artifacts do not match trace %s: %s (artifacts vs trace)",
                         m ? m : "calibration", t->path, diff);
    }
    return KVQ_OK;
}

static bool sub_fn(double fraction, const char *stage, double eta_s, void *user)
{
    (void)eta_s;
    kvq_subprogress *s = user;
    return kvq_progress_report(s->parent, s->f0 + (s->f1 - s->f0) * fraction, s->stage ? s->stage : stage);
}

kvq_progress *kvq_subprogress_init(kvq_subprogress *s, kvq_progress *parent, double f0, double f1,
                                   const char *stage)
{
    memset(s, 0, sizeof *s);
    if (!parent || !parent->fn) return NULL;
    s->parent = parent;
    s->f0 = f0;
    s->f1 = f1;
    s->stage = stage;
    s->p.fn = sub_fn;
    s->p.user = s;
    return &s->p;
}

kvq_status kvq_artifacts_load_for_trace(const char *dir, const kvq_trace *t, kvq_artifacts **out)
{
    kvq_artifacts *a;
    kvq_status s = kvq_artifacts_load(dir, &a);
    if (s) {
        *out = NULL;
        return s;
    }
    if (t && (s = kvq_artifacts_match_trace(a, t))) {
        kvq_artifacts_free(a);
        *out = NULL;
        return s;
    }
    *out = a;
    return KVQ_OK;
}

// ---- attention measurements ----
kvq_status kvq_calib_attention(const float *q, const int32_t *qpos, int nq, const float *k,
                               const float *v, int n, int d, float *out)
{
    if (nq <= 0 || n <= 0) return KVQ_OK;
    float *s = malloc(sizeof(float) * (size_t)nq * (size_t)n);
    if (!s) return kvq_error(KVQ_ERR_NOMEM, "attention: out of memory (%d x %d scores)", nq, n);
    // s (nq, n) = q k^T / sqrt(d)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, n, d, 1.0f / sqrtf((float)d), q, d, k, d,
                0.0f, s, n);
    for (int i = 0; i < nq; i++) {
        float *r = s + (size_t)i * n;
        int vis = qpos[i] + 1 < n ? qpos[i] + 1 : n;
        float mx = -INFINITY;
        for (int j = 0; j < vis; j++) mx = r[j] > mx ? r[j] : mx;
        double sum = 0;
        for (int j = 0; j < vis; j++) {
            r[j] = expf(r[j] - mx);
            sum += r[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < vis; j++) r[j] *= inv;
        for (int j = vis; j < n; j++) r[j] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, d, n, 1.0f, s, n, v, d, 0.0f, out, d);
    free(s);
    return KVQ_OK;
}

int kvq_calib_query_rows(const kvq_trace *t, const kvq_calib_opts *o, int n_tok, int32_t *idx)
{
    int usable = 0;
    for (int i = 0; i < t->n_queries; i++)
        if (t->query_positions[i] < n_tok) usable++;
    int want = o->n_queries > 0 && o->n_queries < usable ? o->n_queries : usable;
    int got = 0, seen = 0;
    // Evenly spaced over the usable rows: row r is taken when it crosses the
    // next multiple of usable / want (integer arithmetic keeps it exact).
    for (int i = 0; i < t->n_queries && got < want; i++) {
        if (t->query_positions[i] >= n_tok) continue;
        if ((long)seen * want / usable != (long)(seen + 1) * want / usable) idx[got++] = i;
        seen++;
    }
    return got;
}

static double dot_d(const float *a, const float *b, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)a[i] * b[i];
    return s;
}

kvq_status kvq_calib_eval_keys(const kvq_trace *t, const kvq_config *cfg, const kvq_artifacts *art,
                               const kvq_calib_opts *o, kvq_attn_eval *ev)
{
    memset(ev, 0, sizeof *ev);
    kvq_status cs = kvq_check_shape("eval", t->path, t->n_layers, t->n_kv_heads, t->head_dim);
    if (cs) return cs;
    if (!t->n_queries) return kvq_error(KVQ_ERR_ARG, "%s: trace has no queries (attention error needs them)", t->path);
    int L = o->layers ? o->layers : t->n_layers, d = t->head_dim;
    int n = o->sequence_length && o->sequence_length < t->n_tokens ? o->sequence_length : t->n_tokens;
    int group = t->n_heads / t->n_kv_heads;
    size_t nd = (size_t)n * d;
    float *k = malloc(sizeof(float) * nd), *kh = malloc(sizeof(float) * nd);
    float *v = malloc(sizeof(float) * nd), *qall = malloc(sizeof(float) * (size_t)t->n_queries * d);
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)(t->n_queries + 1));
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)(t->n_queries + 1));
    float *q = malloc(sizeof(float) * (size_t)(t->n_queries + 1) * d);
    float *o1 = malloc(sizeof(float) * (size_t)(t->n_queries + 1) * d);
    float *o2 = malloc(sizeof(float) * (size_t)(t->n_queries + 1) * d);
    uint8_t *codes = NULL;
    kvq_status s = KVQ_OK;
    if (!k || !kh || !v || !qall || !rows || !pos || !q || !o1 || !o2) {
        s = kvq_error(KVQ_ERR_NOMEM, "eval: out of memory");
        goto out;
    }
    int nq = kvq_calib_query_rows(t, o, n, rows);
    for (int i = 0; i < nq; i++) pos[i] = t->query_positions[rows[i]];
    double err = 0, ref = 0, mse = 0, cos = 0, bytes = 0, nvec = 0;
    for (int l = 0; l < L && !s; l++) {
        double lerr = 0, lref = 0;
        int bits = cfg->n_bit_allocation > l ? cfg->bit_allocation[l] : cfg->bits;
        for (int h = 0; h < t->n_kv_heads && !s; h++) {
            kvq_plan_params pp = {.bits = bits, .head_dim = d, .layer = l, .kv_head = h, .cfg = cfg,
                                  .art = art};
            kvq_quantizer qz;
            if ((s = kvq_quantizer_init(&qz, cfg->method, &pp))) break;
            size_t ng = n / qz.group * qz.group;   // whole encode groups only
            uint8_t *c2 = realloc(codes, qz.bpv * (ng ? ng : 1));
            if (!c2) {
                kvq_quantizer_free(&qz);
                s = kvq_error(KVQ_ERR_NOMEM, "eval: out of memory");
                break;
            }
            codes = c2;
            if ((s = kvq_trace_keys(t, l, h, k)) || (s = kvq_trace_values(t, l, h, v))) {
                kvq_quantizer_free(&qz);
                break;
            }
            memcpy(kh, k, sizeof(float) * nd);   // a partial group stays exact (as the cache keeps it fp16)
            qz.m->encode(qz.plan, k, ng, codes);
            qz.m->decode(qz.plan, codes, ng, kh);
            bytes += (double)qz.bpv * (double)ng;
            nvec += (double)ng;
            for (size_t i = 0; i < ng; i++) {
                const float *a = k + i * d, *b = kh + i * d;
                double aa = dot_d(a, a, d), bb = dot_d(b, b, d), ab = dot_d(a, b, d), e = aa - 2 * ab + bb;
                mse += aa > 0 ? e / aa : 0;
                cos += aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
            }
            kvq_quantizer_free(&qz);
            for (int g = 0; g < group && !s; g++) {
                if ((s = kvq_trace_queries(t, l, h * group + g, qall))) break;
                for (int i = 0; i < nq; i++) memcpy(q + (size_t)i * d, qall + (size_t)rows[i] * d, sizeof(float) * d);
                if ((s = kvq_calib_attention(q, pos, nq, k, v, n, d, o1))) break;
                if ((s = kvq_calib_attention(q, pos, nq, kh, v, n, d, o2))) break;
                for (size_t i = 0; i < (size_t)nq * d; i++) {
                    double e = (double)o1[i] - o2[i];
                    lerr += e * e;
                    lref += (double)o1[i] * o1[i];
                }
            }
        }
        ev->layer_error[l] = lref > 0 ? lerr / lref : 0;
        err += lerr;
        ref += lref;
    }
    if (!s) {
        ev->n_layers = L;
        ev->attn_rel_error = ref > 0 ? err / ref : 0;
        ev->key_rel_mse = nvec > 0 ? mse / nvec : 0;
        ev->key_cosine = nvec > 0 ? cos / nvec : 0;
        ev->key_bits = nvec > 0 ? bytes * 8 / (nvec * d) : 0;
    }
out:
    free(k); free(kh); free(v); free(qall); free(rows); free(pos); free(q); free(o1); free(o2); free(codes);
    return s;
}
