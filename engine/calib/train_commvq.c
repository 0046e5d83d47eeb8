// calib/train_commvq.c — residual k-means init + EM for CommVQ's additive
// codebooks; see train_commvq.h. Batched through sgemm (the method's scalar
// encode in methods/commvq.c is the reference the tests compare against).
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "calib/kmeans.h"
#include "calib/rowops.h"
#include "calib/train_commvq.h"
#include "methods/commvq.h"

typedef struct {
    size_t n;
    int d, R, C;
    float *W;        // (R, C, d)
    float *wn;       // (R, C)
    uint16_t *code;  // (n, R)
    float *res;      // (n, d) keys minus reconstruction
    float *G;        // (n, C) scratch
    float *T;        // (C, C) scratch: codeword dot products
    float *TA;       // (RC, RC) all codewords' dot products (table E-step), or NULL
    float *GA;       // (EM_TILE, RC) res . W^T of a tile of rows (table E-step)
    float *delta;    // (C, d) scratch: old minus new codewords
    double *acc;     // (C, d) scratch
    int *cnt;        // (C)
} em_state;

static void add_codeword(em_state *s, int r, float sign)
{
    for (size_t i = 0; i < s->n; i++) {
        const float *w = s->W + ((size_t)r * s->C + s->code[i * s->R + r]) * s->d;
        float *e = s->res + i * (size_t)s->d;
        for (int j = 0; j < s->d; j++) e[j] += sign * w[j];
    }
}

static void norms_of(em_state *s, int r)
{
    for (int c = 0; c < s->C; c++) {
        const float *w = s->W + ((size_t)r * s->C + c) * s->d;
        double nn = 0;
        for (int j = 0; j < s->d; j++) nn += (double)w[j] * w[j];
        s->wn[r * s->C + c] = (float)nn;
    }
}

// 2 (e + wc).w - |w|^2 in double: the gain of codeword w for target e + wc.
static double exact_gain(const float *e, const float *wc, const float *w, int d)
{
    double dot = 0, nn = 0;
    for (int j = 0; j < d; j++) dot += ((double)e[j] + wc[j]) * w[j], nn += (double)w[j] * w[j];
    return 2 * dot - nn;
}

// M-step for codebook r: least squares given everything else = mean target.
// The target of row i is res_i + w[code_i], so a cluster's mean target is
// w_old + mean(res): one read pass, then res_i += w_old - w_new (one write
// pass) instead of adding the codeword back and taking it out again.
static void m_step(em_state *s, int r)
{
    memset(s->acc, 0, sizeof(double) * (size_t)s->C * s->d);
    memset(s->cnt, 0, sizeof(int) * (size_t)s->C);
    for (size_t i = 0; i < s->n; i++) {
        int c = s->code[i * s->R + r];
        const float *e = s->res + i * (size_t)s->d;
        kvq_row_acc(s->acc + (size_t)c * s->d, e, s->d);
        s->cnt[c]++;
    }
    float *Wr = s->W + (size_t)r * s->C * s->d;
    for (int c = 0; c < s->C; c++) {
        float *w = Wr + (size_t)c * s->d, *dl = s->delta + (size_t)c * s->d;
        for (int j = 0; j < s->d; j++) {
            float nw = s->cnt[c] ? (float)(w[j] + s->acc[(size_t)c * s->d + j] / s->cnt[c]) : w[j];
            dl[j] = w[j] - nw;
            w[j] = nw;
        }
    }
    norms_of(s, r);
    for (size_t i = 0; i < s->n; i++) {
        kvq_row_add(s->res + i * (size_t)s->d, s->delta + (size_t)s->code[i * s->R + r] * s->d, s->d);
    }
}

// E-step for codebook r: re-pick every code given the other codebooks.
// With target t_i = res_i + w_cur, the gain of codeword c is
// 2 res_i.w_c + 2 w_cur.w_c - |w_c|^2: one sgemm on res plus a (C, C) table
// of codeword dot products, so res is only touched where a code changes.
static void e_step(em_state *s, int r)
{
    const int C = s->C, d = s->d;
    const float *Wr = s->W + (size_t)r * C * d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->n, C, d, 1.0f, s->res, d, Wr, d,
                0.0f, s->G, C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, C, d, 1.0f, Wr, d, Wr, d, 0.0f, s->T, C);
    const float *wn = s->wn + r * C;
    for (size_t i = 0; i < s->n; i++) {
        const float *g = s->G + i * (size_t)C;
        int cur = s->code[i * s->R + r];
        const float *tc = s->T + (size_t)cur * C;
        int best = 0;
        float bv = 2 * (g[0] + tc[0]) - wn[0];
        for (int c = 1; c < C; c++) {
            float v = 2 * (g[c] + tc[c]) - wn[c];
            if (v > bv) bv = v, best = c;
        }
        if (best == cur) continue;
        float *e = s->res + i * (size_t)d;
        const float *wc = Wr + (size_t)cur * d, *wb = Wr + (size_t)best * d;
        // sgemm rounding may rank near-ties wrongly: switch only when the exact
        // gain is strictly higher, so the error can never go up.
        if (exact_gain(e, wc, wb, d) > exact_gain(e, wc, wc, d)) {
            s->code[i * s->R + r] = (uint16_t)best;
            for (int j = 0; j < d; j++) e[j] += wc[j] - wb[j];
        }
    }
}

// The E-steps of all R codebooks with one sgemm per tile of rows instead of
// one per codebook. Given the codebooks, rows are independent, so each row
// runs codebook 0..R-1 in turn, exactly the per-codebook order: its gains
// G = res . W^T come from the tile's sgemm, and a switch cur -> best, which
// moves res by w_cur - w_best, moves G by the codeword dot-product rows
// TA[cur] - TA[best] (RC floats) instead of re-multiplying. The same strict
// exact-gain test guards every switch, so the error still never rises.
// R x C <= EM_TABLE_MAX keeps TA (RC^2 floats) small; above it e_step per codebook.
#define EM_TILE 256
#define EM_TABLE_MAX 1024
static void e_steps_table(em_state *s)
{
    const int R = s->R, C = s->C, d = s->d, RC = R * C;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, RC, RC, d, 1.0f, s->W, d, s->W, d, 0.0f, s->TA, RC);
    for (size_t i0 = 0; i0 < s->n; i0 += EM_TILE) {
        size_t m = s->n - i0 < EM_TILE ? s->n - i0 : EM_TILE;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, RC, d, 1.0f, s->res + i0 * d, d, s->W, d,
                    0.0f, s->GA, RC);
        for (size_t i = i0; i < i0 + m; i++) {
            float *g = s->GA + (i - i0) * (size_t)RC, *e = s->res + i * (size_t)d;
            for (int r = 0; r < R; r++) {
                int cur = s->code[i * R + r], best = 0;
                const float *gr = g + r * C, *tc = s->TA + (size_t)(r * C + cur) * RC + r * C, *wn = s->wn + r * C;
                float bv = 2 * (gr[0] + tc[0]) - wn[0];
                for (int c = 1; c < C; c++) {
                    float v = 2 * (gr[c] + tc[c]) - wn[c];
                    if (v > bv) bv = v, best = c;
                }
                if (best == cur) continue;
                const float *Wr = s->W + (size_t)r * C * d, *wc = Wr + (size_t)cur * d, *wb = Wr + (size_t)best * d;
                if (!(exact_gain(e, wc, wb, d) > exact_gain(e, wc, wc, d))) continue;
                s->code[i * R + r] = (uint16_t)best;
                for (int j = 0; j < d; j++) e[j] += wc[j] - wb[j];
                const float *ta = s->TA + (size_t)(r * C + cur) * RC, *tb = s->TA + (size_t)(r * C + best) * RC;
                for (int q = (r + 1) * C; q < RC; q++) g[q] += ta[q] - tb[q];
            }
        }
    }
}

static double rel_err(const em_state *s, double xx)
{
    double e = 0;
    for (size_t i = 0; i < s->n * (size_t)s->d; i++) e += (double)s->res[i] * s->res[i];
    return xx > 0 ? e / xx : 0;
}

kvq_status kvq_train_commvq_stream(const float *keys, size_t n, int d, int layer, int kv_head,
                                   const kvq_train_commvq_opts *o, kvq_artifacts *art,
                                   kvq_commvq_train_log *log)
{
    int R, lc;
    int nc = o->num_centroids > 0 ? o->num_centroids : KVQ_COMMVQ_DEFAULT_CENTROIDS;
    kvq_status st = kvq_commvq_shape(d, o->bits, nc, &R, &lc);
    if (st) return st;
    int C = 1 << lc;
    if (n < (size_t)C)
        return kvq_error(KVQ_ERR_ARG, "commvq calibration: %zu tokens for %d codewords "
                         "(expected at least num_centroids tokens)", n, C);
    int em = o->em_iters > 0 ? o->em_iters : 8;
    if (em > KVQ_COMMVQ_MAX_EM) em = KVQ_COMMVQ_MAX_EM;
    em_state s = {.n = n, .d = d, .R = R, .C = C};
    s.W = malloc(sizeof(float) * (size_t)R * C * d);
    s.wn = malloc(sizeof(float) * (size_t)R * C);
    s.code = malloc(sizeof(uint16_t) * n * (size_t)R);
    s.res = malloc(sizeof(float) * n * (size_t)d);
    s.G = malloc(sizeof(float) * n * (size_t)C);
    s.acc = malloc(sizeof(double) * (size_t)C * d);
    s.T = malloc(sizeof(float) * (size_t)C * C);
    s.delta = malloc(sizeof(float) * (size_t)C * d);
    const bool table = (size_t)R * C <= EM_TABLE_MAX;
    if (table) {
        s.TA = malloc(sizeof(float) * (size_t)R * C * R * C);
        s.GA = malloc(sizeof(float) * EM_TILE * (size_t)R * C);
    }
    s.cnt = malloc(sizeof(int) * (size_t)C);
    if (!s.W || !s.wn || !s.code || !s.res || !s.G || !s.acc || !s.cnt || !s.T || !s.delta ||
        (table && (!s.TA || !s.GA))) {
        st = kvq_error(KVQ_ERR_NOMEM, "commvq calibration: out of memory (n=%zu, R=%d, C=%d)", n,
                       R, C);
        goto done;
    }
    memcpy(s.res, keys, sizeof(float) * n * (size_t)d);
    double xx = 0;
    for (size_t i = 0; i < n * (size_t)d; i++) xx += (double)keys[i] * keys[i];
    kvq_progress_begin(o->progress);
    const double total = R + (double)em;

    // init: residual k-means, codebook r fitted to what 0..r-1 leave
    for (int r = 0; r < R; r++) {
        kvq_kmeans_opts ko = {.k = C, .max_iter = o->kmeans_iter > 0 ? o->kmeans_iter : 15,
                              .tol = 1e-5, .seed = o->seed * 1000003u + (uint64_t)r,
                              .max_points_per_centroid = o->max_points_per_centroid};
        kvq_kmeans_result km;
        st = kvq_kmeans(s.res, n, d, &ko, &km);
        if (st) goto done;
        memcpy(s.W + (size_t)r * C * d, km.centroids, sizeof(float) * (size_t)C * d);
        for (size_t i = 0; i < n; i++) s.code[i * R + r] = (uint16_t)km.assign[i];
        kvq_kmeans_result_free(&km);
        norms_of(&s, r);
        add_codeword(&s, r, -1.0f);
        if (kvq_progress_report(o->progress, (r + 1) / total, "commvq init")) {
            st = kvq_error(KVQ_ERR_CANCELLED, "commvq calibration: cancelled");
            goto done;
        }
    }
    if (log) {
        memset(log, 0, sizeof *log);
        log->err[0] = rel_err(&s, xx);
        log->n = 1;
    }
    for (int it = 0; it < em; it++) {
        for (int r = 0; r < R; r++) m_step(&s, r);
        if (table) e_steps_table(&s);
        else
            for (int r = 0; r < R; r++) e_step(&s, r);
        if (log) log->err[log->n++] = rel_err(&s, xx);
        if (kvq_progress_report(o->progress, (R + it + 1) / total, "commvq EM")) {
            st = kvq_error(KVQ_ERR_CANCELLED, "commvq calibration: cancelled");
            goto done;
        }
    }
    // A final M-step: codebooks are the least-squares fit to the final codes.
    for (int r = 0; r < R; r++) m_step(&s, r);
    char name[96];
    snprintf(name, sizeof name, "commvq.codebooks.l%d.h%d", layer, kv_head);
    int64_t shape[3] = {R, C, d};
    st = kvq_artifacts_put(art, name, s.W, 3, shape);
done:
    free(s.W), free(s.wn), free(s.code), free(s.res), free(s.G), free(s.acc), free(s.cnt), free(s.T), free(s.delta);
    free(s.TA), free(s.GA);
    return st;
}
