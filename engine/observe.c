// observe.c — the observers: running sums per layer, folded into report
// structs on demand. Hooks are cheap no-ops when o is NULL or the observer
// was not created.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cache.h"
#include "observe.h"
#include "rng.h"
#include "simd.h"

#define L KVQ_MAX_LAYERS

struct kvq_observers {
    kvq_observers_opts opt;
    int n_layers, n_kv_heads, d;
    // distortion
    float *probe;           // (d) unit
    float *scratch;         // (KVQ_CACHE_BLOCK_MAX, d)
    unsigned long long sample_ctr;
    double d_cos[L], d_rmse[L], d_ip[L], d_min_cos;
    long d_n[L];
    // latency
    long e_calls[L], dcd_calls[L], e_n[L], dcd_n[L];
    double e_ms[L], dcd_ms[L];
    double *e_samples;
    size_t e_ns, e_cap;
    // memory
    size_t m_bytes[L], m_f16[L];
    int m_tokens[L];
    double m_peak, m_peak_f16;
    // key_norm
    kvq_rolling *roll;      // (n_layers * n_kv_heads)
    float *rings;
    double k_sum, k_sumsq, k_max, k_out_sum;
    long k_n, k_out, k_out_layer[L];
    // attention
    double a_err[L], a_kl[L], a_rec[L];
    long a_n[L];
};

void kvq_observers_opts_default(kvq_observers_opts *o)
{
    memset(o, 0, sizeof *o);
    o->which = KVQ_OBS_ALL;
    o->sample_rate = 1.0;
    o->warmup_calls = 2;
    o->outlier_threshold = KVQ_OUTLIER_THRESHOLD;
    o->window_size = KVQ_OUTLIER_WINDOW;
    o->topk = 8;
    o->seed = 42;
}

void kvq_rolling_init(kvq_rolling *r, float *ring, int window)
{
    r->ring = ring;
    r->window = window;
    r->count = r->idx = 0;
    r->sum = 0;
}

bool kvq_rolling_push(kvq_rolling *r, float x, double threshold)
{
    bool flag = r->count > 0 && (double)x > threshold * (r->sum / r->count);
    if (r->count == r->window) r->sum -= r->ring[r->idx];
    else r->count++;
    r->ring[r->idx] = x;
    r->sum += x;
    if (++r->idx == r->window) {   // resum once per lap so rounding cannot drift
        r->idx = 0;
        double s = 0;
        for (int i = 0; i < r->count; i++) s += r->ring[i];
        r->sum = s;
    }
    return flag;
}

kvq_status kvq_observers_new(const kvq_observers_opts *opts, int n_layers, int n_kv_heads, int head_dim,
                             kvq_observers **out)
{
    *out = NULL;
    kvq_observers_opts o;
    if (opts) o = *opts;
    else kvq_observers_opts_default(&o);
    if (n_layers < 1 || n_layers > L || n_kv_heads < 1 || head_dim < 1 || head_dim > KVQ_MAX_HEAD_DIM)
        return kvq_error(KVQ_ERR_ARG, "observers: %d layers, %d kv heads, head_dim %d out of range",
                         n_layers, n_kv_heads, head_dim);
    if (!(o.sample_rate > 0 && o.sample_rate <= 1) || o.warmup_calls < 0 || o.window_size < 1 ||
        o.topk < 1 || o.topk > 64 || !(o.outlier_threshold > 0))
        return kvq_error(KVQ_ERR_ARG, "observers: sample_rate %g (0,1], warmup_calls %d >= 0, "
                         "window_size %d >= 1, topk %d in 1..64, outlier_threshold %g > 0",
                         o.sample_rate, o.warmup_calls, o.window_size, o.topk, o.outlier_threshold);
    kvq_observers *b = calloc(1, sizeof *b);
    if (!b) return kvq_error(KVQ_ERR_NOMEM, "observers: out of memory");
    b->opt = o;
    b->n_layers = n_layers;
    b->n_kv_heads = n_kv_heads;
    b->d = head_dim;
    size_t nstreams = (size_t)n_layers * (size_t)n_kv_heads;
    bool ok = true;
    if (o.which & KVQ_OBS_DISTORTION) {
        b->probe = malloc(sizeof(float) * (size_t)head_dim);
        b->scratch = malloc(sizeof(float) * KVQ_CACHE_BLOCK_MAX * (size_t)head_dim);
        ok = b->probe && b->scratch;
        if (ok) {
            kvq_rng r;
            kvq_rng_seed2(&r, o.seed, 0x6f627365ull);
            kvq_rng_unit_vector(&r, b->probe, head_dim);
        }
    }
    if (ok && (o.which & KVQ_OBS_KEY_NORM)) {
        b->roll = calloc(nstreams, sizeof *b->roll);
        b->rings = malloc(sizeof(float) * nstreams * (size_t)o.window_size);
        ok = b->roll && b->rings;
    }
    if (!ok) {
        kvq_observers_free(b);
        return kvq_error(KVQ_ERR_NOMEM, "observers: out of memory");
    }
    kvq_observers_reset(b, KVQ_OBS_ALL);
    *out = b;
    return KVQ_OK;
}

void kvq_observers_free(kvq_observers *o)
{
    if (!o) return;
    free(o->probe);
    free(o->scratch);
    free(o->e_samples);
    free(o->roll);
    free(o->rings);
    free(o);
}

unsigned kvq_observers_which(const kvq_observers *o) { return o ? o->opt.which : 0; }

void kvq_observers_reset(kvq_observers *o, unsigned which)
{
    if (!o) return;
    if (which & KVQ_OBS_DISTORTION) {
        o->sample_ctr = 0;
        memset(o->d_cos, 0, sizeof o->d_cos);
        memset(o->d_rmse, 0, sizeof o->d_rmse);
        memset(o->d_ip, 0, sizeof o->d_ip);
        memset(o->d_n, 0, sizeof o->d_n);
        o->d_min_cos = INFINITY;
    }
    if (which & KVQ_OBS_LATENCY) {
        memset(o->e_calls, 0, sizeof o->e_calls);
        memset(o->dcd_calls, 0, sizeof o->dcd_calls);
        memset(o->e_n, 0, sizeof o->e_n);
        memset(o->dcd_n, 0, sizeof o->dcd_n);
        memset(o->e_ms, 0, sizeof o->e_ms);
        memset(o->dcd_ms, 0, sizeof o->dcd_ms);
        o->e_ns = 0;
    }
    if (which & KVQ_OBS_MEMORY) {
        memset(o->m_bytes, 0, sizeof o->m_bytes);
        memset(o->m_f16, 0, sizeof o->m_f16);
        memset(o->m_tokens, 0, sizeof o->m_tokens);
        o->m_peak = o->m_peak_f16 = 0;
    }
    if ((which & KVQ_OBS_KEY_NORM) && o->roll) {
        size_t ns = (size_t)o->n_layers * (size_t)o->n_kv_heads;
        for (size_t i = 0; i < ns; i++)
            kvq_rolling_init(&o->roll[i], o->rings + i * (size_t)o->opt.window_size, o->opt.window_size);
        o->k_sum = o->k_sumsq = o->k_max = o->k_out_sum = 0;
        o->k_n = o->k_out = 0;
        memset(o->k_out_layer, 0, sizeof o->k_out_layer);
    }
    if (which & KVQ_OBS_ATTENTION) {
        memset(o->a_err, 0, sizeof o->a_err);
        memset(o->a_kl, 0, sizeof o->a_kl);
        memset(o->a_rec, 0, sizeof o->a_rec);
        memset(o->a_n, 0, sizeof o->a_n);
    }
}

static bool has(const kvq_observers *o, unsigned w) { return o && (o->opt.which & w); }
static bool layer_ok(const kvq_observers *o, int layer) { return layer >= 0 && layer < o->n_layers; }

// ---- key norms ----
void kvq_observe_keys(kvq_observers *o, int layer, int kv_head, const float *keys, int n)
{
    if (!has(o, KVQ_OBS_KEY_NORM) || !layer_ok(o, layer) || kv_head < 0 || kv_head >= o->n_kv_heads)
        return;
    kvq_rolling *r = &o->roll[(size_t)layer * (size_t)o->n_kv_heads + (size_t)kv_head];
    for (int i = 0; i < n; i++) {
        const float *k = keys + (size_t)i * (size_t)o->d;
        double s = 0;
        for (int t = 0; t < o->d; t++) s += (double)k[t] * k[t];
        double nn = sqrt(s);
        o->k_sum += nn;
        o->k_sumsq += nn * nn;
        if (nn > o->k_max) o->k_max = nn;
        o->k_n++;
        if (kvq_rolling_push(r, (float)nn, o->opt.outlier_threshold)) {
            o->k_out++;
            o->k_out_layer[layer]++;
            o->k_out_sum += nn;
        }
    }
}

// ---- distortion ----
bool kvq_observe_wants_distortion(const kvq_observers *o) { return has(o, KVQ_OBS_DISTORTION); }
const float *kvq_observe_probe(const kvq_observers *o) { return o->probe; }
float *kvq_observe_scratch(kvq_observers *o) { return o->scratch; }

void kvq_observe_encoded(kvq_observers *o, int layer, const float *x, const float *x_hat,
                         const float *est, int n)
{
    if (!has(o, KVQ_OBS_DISTORTION) || !layer_ok(o, layer)) return;
    double r = o->opt.sample_rate;
    for (int i = 0; i < n; i++) {
        // Evenly spread deterministic sampling: token i is measured when the
        // running count r * ctr crosses an integer.
        unsigned long long c = o->sample_ctr++;
        if (floor((double)(c + 1) * r) == floor((double)c * r)) continue;
        const float *a = x + (size_t)i * (size_t)o->d, *b = x_hat + (size_t)i * (size_t)o->d;
        double ab = 0, aa = 0, bb = 0, ee = 0, ip = 0;
        for (int t = 0; t < o->d; t++) {
            ab += (double)a[t] * b[t];
            aa += (double)a[t] * a[t];
            bb += (double)b[t] * b[t];
            ee += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
            ip += (double)o->probe[t] * a[t];
        }
        double cosv = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
        o->d_cos[layer] += cosv;
        o->d_rmse[layer] += aa > 0 ? ee / aa : 0;
        o->d_ip[layer] += aa > 0 ? fabs(ip - (double)est[i]) / sqrt(aa) : 0;
        o->d_n[layer]++;
        if (cosv < o->d_min_cos) o->d_min_cos = cosv;
    }
}

// ---- latency ----
bool kvq_observe_wants_latency(const kvq_observers *o) { return has(o, KVQ_OBS_LATENCY); }

void kvq_observe_encode_time(kvq_observers *o, int layer, double seconds)
{
    if (!has(o, KVQ_OBS_LATENCY) || !layer_ok(o, layer)) return;
    if (o->e_calls[layer]++ < o->opt.warmup_calls) return;
    double ms = seconds * 1e3;
    o->e_ms[layer] += ms;
    o->e_n[layer]++;
    if (o->e_ns == o->e_cap) {
        size_t cap = o->e_cap ? 2 * o->e_cap : 1024;
        double *p = realloc(o->e_samples, cap * sizeof *p);
        if (!p) return;   // p99 then covers the samples kept so far
        o->e_samples = p;
        o->e_cap = cap;
    }
    o->e_samples[o->e_ns++] = ms;
}

void kvq_observe_decode_time(kvq_observers *o, int layer, double seconds)
{
    if (!has(o, KVQ_OBS_LATENCY) || !layer_ok(o, layer)) return;
    if (o->dcd_calls[layer]++ < o->opt.warmup_calls) return;
    o->dcd_ms[layer] += seconds * 1e3;
    o->dcd_n[layer]++;
}

// ---- memory ----
void kvq_observe_memory(kvq_observers *o, int layer, size_t bytes, size_t fp16_bytes, int tokens)
{
    if (!has(o, KVQ_OBS_MEMORY) || !layer_ok(o, layer)) return;
    o->m_bytes[layer] = bytes;
    o->m_f16[layer] = fp16_bytes;
    o->m_tokens[layer] = tokens;
    double tb = 0, tf = 0;
    for (int l = 0; l < o->n_layers; l++) {
        tb += (double)o->m_bytes[l];
        tf += (double)o->m_f16[l];
    }
    if (tb > o->m_peak) o->m_peak = tb;
    if (tf > o->m_peak_f16) o->m_peak_f16 = tf;
}

// ---- attention ----
// Indices of the k largest of x[0..n) into idx (k <= 64), unordered.
static void top_k(const float *x, int n, int k, int *idx)
{
    int m = 0, w = -1;   // w: the slot of the smallest kept, found again only after a replacement
    for (int i = 0; i < n; i++) {
        if (m < k) {
            idx[m++] = i;
            continue;
        }
        if (w < 0) {
            w = 0;
            for (int j = 1; j < k; j++)
                if (x[idx[j]] < x[idx[w]]) w = j;
        }
        if (x[i] > x[idx[w]]) {
            idx[w] = i;
            w = -1;
        }
    }
}

#define KL_CHUNK 512   // positions per exp batch (stack floats)

// KL(p || q) in nats of the softmaxes of logits x (p) and y (q) over n
// positions. With e_i = exp(x_i - max x), S_p = sum e_i, and lse the
// log-sum-exp: KL = sum p_i ((x_i - lse_p) - (y_i - lse_q))
//                 = (sum e_i (x_i - y_i)) / S_p - lse_p + lse_q,
// so each position costs two float exps (kvq_exp_inplace, rel error ~2e-7)
// and double sums; three libm double exps per position were a sixth of a
// benchmark.
static double kl_logits(const float *x, const float *y, int n)
{
    const float mx = kvq_max_f32(x, (size_t)n), my = kvq_max_f32(y, (size_t)n);
    float ex[KL_CHUNK], ey[KL_CHUNK];
    double sp = 0, sq = 0, a = 0;
    for (int i0 = 0; i0 < n; i0 += KL_CHUNK) {
        int m = n - i0 < KL_CHUNK ? n - i0 : KL_CHUNK;
        for (int i = 0; i < m; i++) {
            ex[i] = x[i0 + i] - mx;
            ey[i] = y[i0 + i] - my;
        }
        kvq_exp_inplace(ex, (size_t)m);
        kvq_exp_inplace(ey, (size_t)m);
        for (int i = 0; i < m; i++) {
            sp += ex[i];
            sq += ey[i];
            a += (double)ex[i] * ((double)x[i0 + i] - y[i0 + i]);
        }
    }
    double lse_p = mx + log(sp), lse_q = my + log(sq);
    return a / sp - lse_p + lse_q;
}

void kvq_observe_attention(kvq_observers *o, int layer, const float *out_exact, const float *out_hat,
                           const float *logit_exact, const float *logit_hat, int n)
{
    if (!has(o, KVQ_OBS_ATTENTION) || !layer_ok(o, layer) || n <= 0) return;
    double ee = 0, oo = 0;
    for (int t = 0; t < o->d; t++) {
        double e = (double)out_exact[t] - out_hat[t];
        ee += e * e;
        oo += (double)out_exact[t] * out_exact[t];
    }
    double kl = kl_logits(logit_exact, logit_hat, n);
    int k = o->opt.topk < n ? o->opt.topk : n, ia[64], ib[64], hit = 0;
    top_k(logit_exact, n, k, ia);
    top_k(logit_hat, n, k, ib);
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) hit += ia[i] == ib[j];
    o->a_err[layer] += oo > 0 ? sqrt(ee / oo) : sqrt(ee);
    o->a_kl[layer] += kl > 0 ? kl / M_LN2 : 0;   // bits (the one KL unit); rounding can make a zero KL slightly negative
    o->a_rec[layer] += (double)hit / k;
    o->a_n[layer]++;
}

// ---- reports ----
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report_latency(const kvq_observers *o, kvq_latency_report *r)
{
    double te = 0, td = 0, worst = -1;
    long ne = 0, nd = 0;
    r->slowest_layer = -1;
    for (int l = 0; l < o->n_layers; l++) {
        te += o->e_ms[l];
        td += o->dcd_ms[l];
        ne += o->e_n[l];
        nd += o->dcd_n[l];
        r->per_layer_encode_ms[l] = o->e_ms[l];
        if (o->e_n[l] && o->e_ms[l] > worst) worst = o->e_ms[l], r->slowest_layer = l;
    }
    r->total_encode_ms = te;
    r->total_decode_ms = td;
    r->num_encode_calls = ne;
    r->num_decode_calls = nd;
    r->mean_encode_ms = ne ? te / (double)ne : 0;
    r->mean_decode_ms = nd ? td / (double)nd : 0;
    r->p99_encode_ms = 0;
    double *tmp = o->e_ns ? malloc(o->e_ns * sizeof *tmp) : NULL;
    if (tmp) {
        memcpy(tmp, o->e_samples, o->e_ns * sizeof *tmp);
        qsort(tmp, o->e_ns, sizeof *tmp, cmp_double);
        size_t i = (size_t)ceil(0.99 * (double)o->e_ns);
        r->p99_encode_ms = tmp[i ? i - 1 : 0];
        free(tmp);
    }
}

void kvq_observers_report(const kvq_observers *o, kvq_report *r)
{
    memset(r, 0, sizeof *r);
    if (!o) return;
    int nl = o->n_layers;
    r->which = o->opt.which;
    kvq_distortion_report *dr = &r->distortion;
    dr->n_layers = nl;
    dr->worst_layer = -1;
    double cs = 0, rs = 0, is = 0, worst = INFINITY;
    long n = 0;
    for (int l = 0; l < nl; l++) {
        cs += o->d_cos[l];
        rs += o->d_rmse[l];
        is += o->d_ip[l];
        n += o->d_n[l];
        dr->per_layer_cosine_similarity[l] = o->d_n[l] ? o->d_cos[l] / (double)o->d_n[l] : NAN;
        if (o->d_n[l] && dr->per_layer_cosine_similarity[l] < worst)
            worst = dr->per_layer_cosine_similarity[l], dr->worst_layer = l;
    }
    dr->total_tokens_measured = n;
    dr->mean_cosine_similarity = n ? cs / (double)n : NAN;
    dr->min_cosine_similarity = n ? o->d_min_cos : NAN;
    dr->mean_ip_error = n ? is / (double)n : NAN;
    dr->mean_relative_mse = n ? rs / (double)n : NAN;

    r->latency.n_layers = nl;
    report_latency(o, &r->latency);

    kvq_memory_report *mr = &r->memory;
    mr->n_layers = nl;
    mr->peak_compressed_mb = o->m_peak / 1048576.0;
    mr->peak_fp16_mb = o->m_peak_f16 / 1048576.0;
    mr->compression_ratio = o->m_peak > 0 ? o->m_peak_f16 / o->m_peak : NAN;
    double tb = 0;
    for (int l = 0; l < nl; l++) {
        mr->per_layer_mb[l] = (double)o->m_bytes[l] / 1048576.0;
        tb += (double)o->m_bytes[l];
        if (o->m_tokens[l] > mr->total_tokens) mr->total_tokens = o->m_tokens[l];
    }
    mr->bytes_per_token = mr->total_tokens ? tb / (double)mr->total_tokens : NAN;

    kvq_key_norm_report *kr = &r->key_norm;
    kr->n_layers = nl;
    kr->total_keys = o->k_n;
    kr->outlier_count = o->k_out;
    if (o->k_n) {
        double mean = o->k_sum / (double)o->k_n, var = o->k_sumsq / (double)o->k_n - mean * mean;
        kr->mean_key_norm = mean;
        kr->std_key_norm = var > 0 ? sqrt(var) : 0;
        kr->max_key_norm = o->k_max;
        kr->outlier_fraction = (double)o->k_out / (double)o->k_n;
    }
    kr->mean_outlier_norm = o->k_out ? o->k_out_sum / (double)o->k_out : 0;
    for (int l = 0; l < nl; l++) kr->per_layer_outlier_count[l] = o->k_out_layer[l];

    kvq_attention_report *ar = &r->attention;
    ar->n_layers = nl;
    ar->topk = o->opt.topk;
    double ae = 0, ak = 0, ac = 0;
    long an = 0;
    for (int l = 0; l < nl; l++) {
        long m = o->a_n[l];
        ar->per_layer_output_rel_error[l] = m ? o->a_err[l] / (double)m : NAN;
        ar->per_layer_kl_divergence[l] = m ? o->a_kl[l] / (double)m : NAN;
        ar->per_layer_topk_recall[l] = m ? o->a_rec[l] / (double)m : NAN;
        ae += o->a_err[l];
        ak += o->a_kl[l];
        ac += o->a_rec[l];
        an += m;
    }
    ar->num_queries = an;
    ar->mean_output_rel_error = an ? ae / (double)an : NAN;
    ar->mean_kl_divergence = an ? ak / (double)an : NAN;
    ar->topk_recall = an ? ac / (double)an : NAN;
}
