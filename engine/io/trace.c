// trace.c — kvq_trace_open dispatch, kvtrace v1 and mlx_lm prompt caches
// (both safetensors), and the f32 reads. Layout checks follow
// TRACE_FORMAT.md; every tensor is scanned for NaN/Inf on open, or by
// kvq_trace_validate when the open deferred it (the studio).
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "file.h"
#include "pool.h"
#include "trace_impl.h"

// "layers.12.keys" -> 12, 0 (keys) / 1 (values) / 2 (queries).
// mlx: "12.0" -> 12, 0 (keys) / 1 (values). Returns 1 when it matches,
// 0 when the name is not of this family, -1 when the layer index is
// malformed or too large.
static int parse_name(const char *name, const char *prefix, const char *const *suf, int nsuf, int *layer, int *which)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return 0;
    const char *p = name + pl, *q = p;
    while (*q >= '0' && *q <= '9') q++;
    if (q == p || *q != '.') return pl ? -1 : 0;
    for (int i = 0; i < nsuf; i++) {
        if (strcmp(q + 1, suf[i]) != 0) continue;
        if ((q - p > 1 && *p == '0') || q - p > 4) return -1;   // "03" would alias "3"
        *layer = atoi(p);
        *which = i;
        return *layer < KVQ_MAX_LAYERS ? 1 : -1;
    }
    return pl ? -1 : 0;
}

static const char *const kv_suffix[3] = {"keys", "values", "queries"};
static const char *const mlx_suffix[2] = {"0", "1"};

static void fmt_shape(char *buf, size_t n, const kvq_st_tensor *x)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < x->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)x->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// Check x's last three dims against want[] (-1: take them from x, which
// must then be 1..INT_MAX). dn names the dims for messages; ref is the
// tensor the expectation came from.
static kvq_status check_dims(const kvq_trace *t, const kvq_st_tensor *x, int off, const char *const dn[3],
                             int64_t want[3], const kvq_st_tensor *ref)
{
    char sh[160];
    fmt_shape(sh, sizeof sh, x);
    if (!kvq_dtype_is_float(x->dtype))
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' is %s, expected F16, BF16 or F32", t->path, x->name,
                         kvq_dtype_name(x->dtype));
    if (x->ndim != 3 + off)
        return kvq_error(KVQ_ERR_SHAPE, "%s: tensor '%s': shape %s has %d dims, expected %s[%s, %s, %s]", t->path,
                         x->name, sh, x->ndim, off ? "[1] + " : "", dn[0], dn[1], dn[2]);
    if (off && x->shape[0] != 1)
        return kvq_error(KVQ_ERR_SHAPE, "%s: tensor '%s': shape %s has batch %lld, expected 1", t->path, x->name, sh,
                         (long long)x->shape[0]);
    for (int d = 0; d < 3; d++) {
        int64_t v = x->shape[off + d];
        if (want[d] < 0) {
            if (v < 1 || v > 0x7fffffff)
                return kvq_error(KVQ_ERR_SHAPE, "%s: tensor '%s': %s is %lld, expected at least 1", t->path, x->name,
                                 dn[d], (long long)v);
            want[d] = v;
        } else if (v != want[d]) {
            return kvq_error(KVQ_ERR_SHAPE, "%s: tensor '%s': %s %lld, expected %lld (as in tensor '%s')", t->path,
                             x->name, dn[d], (long long)v, (long long)want[d], ref->name);
        }
    }
    return KVQ_OK;
}

// Every layer 0..n-1 has keys; values and queries are all-or-none; shapes
// agree across layers. Fills the shape fields of t.
static kvq_status check_layers(kvq_trace *t, kvq_trace_impl *im, int n_layers, const char *const fmt[3])
{
    char nm[64];
    if (n_layers == 0) {
        snprintf(nm, sizeof nm, fmt[0], 0);
        return kvq_error(KVQ_ERR_FORMAT, "%s: no tensor '%s', expected keys for layers 0..n-1", t->path, nm);
    }
    const kvq_st_tensor **arr[3] = {im->keys, im->values, im->queries};
    for (int w = 0; w < 3; w++) {
        int present = 0;
        for (int l = 0; l < n_layers; l++) present += arr[w][l] != NULL;
        if (w > 0 && present == 0) continue;
        for (int l = 0; l < n_layers; l++) {
            if (arr[w][l]) continue;
            snprintf(nm, sizeof nm, fmt[w], l);
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' is missing: layers run 0..%d and %s, expected no gaps",
                             t->path, nm, n_layers - 1,
                             w == 0 ? "every layer needs keys" : "other layers have them");
        }
    }
    static const char *const kdn[3] = {"n_kv_heads", "n_tokens", "head_dim"};
    static const char *const qdn[3] = {"n_heads", "n_queries", "head_dim"};
    int64_t kw[3] = {-1, -1, -1}, qw[3] = {-1, -1, -1};
    kvq_status s = KVQ_OK;
    for (int l = 0; l < n_layers && s == KVQ_OK; l++) {
        s = check_dims(t, im->keys[l], im->dim_off, kdn, kw, im->keys[0]);
        if (s == KVQ_OK && im->values[l]) s = check_dims(t, im->values[l], im->dim_off, kdn, kw, im->keys[0]);
        if (s == KVQ_OK && im->queries[l]) {
            qw[2] = kw[2];   // queries share head_dim with the keys
            s = check_dims(t, im->queries[l], im->dim_off, qdn, qw, l ? im->queries[0] : im->keys[0]);
        }
    }
    if (s != KVQ_OK) return s;
    t->n_layers = n_layers;
    t->n_kv_heads = (int)kw[0];
    t->n_tokens = (int)kw[1];
    t->head_dim = (int)kw[2];
    t->has_values = im->values[0] != NULL;
    t->dtype = im->keys[0]->dtype;
    t->n_queries = im->queries[0] ? (int)qw[1] : 0;
    t->n_heads = im->queries[0] ? (int)qw[0] : t->n_kv_heads;
    if (t->n_heads % t->n_kv_heads != 0)
        return kvq_error(KVQ_ERR_SHAPE, "%s: tensor '%s': n_heads %d is not a multiple of n_kv_heads %d", t->path,
                         im->queries[0]->name, t->n_heads, t->n_kv_heads);
    return KVQ_OK;
}

// Non-finite scan of every tensor on open, one tensor per task on the pool
// (the scan reads the whole file: 4 GB at real sizes). The first bad tensor
// in layer order is reported, whatever the thread count.
typedef struct {
    const kvq_st_tensor *x[3 * KVQ_MAX_LAYERS];
    size_t bad[3 * KVQ_MAX_LAYERS];   // index of the first NaN/Inf, nelem when none
    bool is_nan[3 * KVQ_MAX_LAYERS];
    bool query_rows[3 * KVQ_MAX_LAYERS];   // rows are queries (for the message)
    int base;                              // task t scans x[base + t]
} scan_job;

static void scan_task(void *ctx, int i)
{
    scan_job *j = ctx;
    i += j->base;
    j->bad[i] = kvq_scan_nonfinite(j->x[i]->data, j->x[i]->nelem, j->x[i]->dtype, false, &j->is_nan[i]);
}

// With progress (kvq_trace_validate), tensors are scanned SCAN_ROUND at a
// time (a count fixed by the file, not the thread count), with a report and
// a cancel check after each round; without (open), all in one round.
#define SCAN_ROUND 8

static kvq_status scan_all(const kvq_trace *t, const kvq_trace_impl *im, kvq_progress *p)
{
    scan_job *j = calloc(1, sizeof *j);
    if (!j) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", t->path);
    int n = 0;
    size_t total = 0, done = 0;
    for (int l = 0; l < t->n_layers; l++) {
        j->x[n++] = im->keys[l];
        if (im->values[l]) j->x[n++] = im->values[l];
        if (im->queries[l]) j->query_rows[n] = true, j->x[n++] = im->queries[l];
    }
    for (int i = 0; i < n; i++) total += j->x[i]->nelem;
    kvq_status s = KVQ_OK;
    const int round = p ? SCAN_ROUND : n;
    for (int i0 = 0; i0 < n && s == KVQ_OK; i0 += round) {
        const int m = n - i0 < round ? n - i0 : round;
        j->base = i0;
        kvq_parallel_for(m, scan_task, j);
        for (int i = i0; i < i0 + m && s == KVQ_OK; i++) {
            const kvq_st_tensor *x = j->x[i];
            done += x->nelem;
            if (j->bad[i] == x->nelem) continue;
            const size_t k = j->bad[i], off = (size_t)im->dim_off;
            const size_t D = (size_t)x->shape[off + 2], R = (size_t)x->shape[off + 1];
            s = kvq_error(KVQ_ERR_NONFINITE, "%s: %s: %s at head %zu, %s %zu, channel %zu", t->path, x->name,
                          j->is_nan[i] ? "NaN" : "Inf", k / (R * D), j->query_rows[i] ? "query" : "token",
                          (k / D) % R, k % D);
        }
        if (s == KVQ_OK && p && i0 + m < n && kvq_progress_report(p, (double)done / (double)total, "NaN/Inf scan"))
            s = kvq_error(KVQ_ERR_CANCELLED, "%s: scan cancelled", t->path);
    }
    free(j);
    return s;
}

kvq_status kvq_trace_validate(const kvq_trace *t, kvq_progress *p)
{
    if (!t || !t->impl) return kvq_error(KVQ_ERR_ARG, "trace validate: NULL trace");
    kvq_trace_impl *im = t->impl;
    if (!im->scan_pending) return KVQ_OK;
    kvq_status s = scan_all(t, im, p);
    if (s == KVQ_OK) im->scan_pending = false;
    return s;
}

// ---- kvtrace metadata ----
static kvq_status meta_int(const kvq_trace *t, const char *key, int found)
{
    const char *v = kvq_st_meta(((kvq_trace_impl *)t->impl)->st, key);
    if (!v) return KVQ_OK;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end)
        return kvq_error(KVQ_ERR_FORMAT, "%s: __metadata__ %s is '%s', expected an integer", t->path, key, v);
    if (x != found)
        return kvq_error(KVQ_ERR_SHAPE, "%s: __metadata__ %s is %ld but the tensors give %d", t->path, key, x, found);
    return KVQ_OK;
}

static kvq_status read_meta(kvq_trace *t, const kvq_st *st)
{
    const char *v;
    if ((v = kvq_st_meta(st, "version")) && strcmp(v, "1") != 0)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: __metadata__ version is '%s', expected '1'", t->path, v);
    kvq_status s = meta_int(t, "layers", t->n_layers);
    if (s == KVQ_OK && t->n_queries) s = meta_int(t, "n_heads", t->n_heads);
    if (s == KVQ_OK) s = meta_int(t, "n_kv_heads", t->n_kv_heads);
    if (s == KVQ_OK) s = meta_int(t, "head_dim", t->head_dim);
    if (s != KVQ_OK) return s;
    if (!t->n_queries && (v = kvq_st_meta(st, "n_heads"))) {   // no queries: the model's head count
        long nh = strtol(v, NULL, 10);
        if (nh > 0 && nh <= 0x7fffffff && nh % t->n_kv_heads == 0) t->n_heads = (int)nh;
    }
    snprintf(t->model, sizeof t->model, "%s", (v = kvq_st_meta(st, "model")) ? v : "");
    snprintf(t->source, sizeof t->source, "%s", (v = kvq_st_meta(st, "source")) ? v : "");
    kvq_text_sanitize(t->model, false);   // free text from the file: shown by info and the studio
    kvq_text_sanitize(t->source, false);
    if ((v = kvq_st_meta(st, "rope_theta"))) {
        char *end;
        t->rope_theta = strtod(v, &end);
        if (end == v || *end || !(t->rope_theta >= 0))
            return kvq_error(KVQ_ERR_FORMAT, "%s: __metadata__ rope_theta is '%s', expected a number", t->path, v);
    }
    t->post_rope = true;   // the format stores keys as cached, after RoPE
    if ((v = kvq_st_meta(st, "post_rope"))) {
        if (strcmp(v, "true") && strcmp(v, "false"))
            return kvq_error(KVQ_ERR_FORMAT, "%s: __metadata__ post_rope is '%s', expected 'true' or 'false'", t->path, v);
        t->post_rope = strcmp(v, "true") == 0;
    }
    if ((v = kvq_st_meta(st, "bits_per_byte"))) {
        char *end;
        double b = strtod(v, &end);
        if (end == v || *end)
            return kvq_error(KVQ_ERR_FORMAT, "%s: __metadata__ bits_per_byte is '%s', expected a number", t->path, v);
        t->bits_per_byte = b;
    }
    return KVQ_OK;
}

static kvq_status read_index_tensor(const kvq_trace *t, const kvq_st_tensor *x, int64_t n, int32_t **out,
                                    int32_t hi, const char *what)
{
    char sh[160];
    fmt_shape(sh, sizeof sh, x);
    if (x->dtype != KVQ_DT_I32 || x->ndim != 1 || x->shape[0] != n)
        return kvq_error(KVQ_ERR_SHAPE, "%s: tensor '%s' is %s %s, expected I32 [%lld] (%s)", t->path, x->name,
                         kvq_dtype_name(x->dtype), sh, (long long)n, what);
    *out = malloc((size_t)n * sizeof **out);
    if (!*out) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", t->path);
    kvq_st_read_i32(x, 0, (size_t)n, *out);
    for (int64_t i = 0; i < n; i++)
        if ((*out)[i] < 0 || (hi >= 0 && (*out)[i] >= hi))
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': element %lld is %d, expected 0..%d", t->path, x->name,
                             (long long)i, (*out)[i], hi >= 0 ? hi - 1 : 0x7fffffff);
    return KVQ_OK;
}

static kvq_status load_kvtrace(kvq_trace *t, kvq_trace_impl *im)
{
    const kvq_st *st = im->st;
    int n_layers = 0;
    const kvq_st_tensor *qpos = NULL, *toks = NULL;
    for (int i = 0; i < st->n_tensors; i++) {
        const kvq_st_tensor *x = &st->tensors[i];
        int l, w, r = parse_name(x->name, "layers.", kv_suffix, 3, &l, &w);
        if (r < 0)
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': expected layers.{L}.keys|values|queries with L in 0..%d",
                             t->path, x->name, KVQ_MAX_LAYERS - 1);
        if (r == 0) {
            if (strcmp(x->name, "query_positions") == 0) qpos = x;
            else if (strcmp(x->name, "tokens") == 0) toks = x;
            else kvq_log(KVQ_LOG_WARN, "%s: ignoring tensor '%s' (not part of kvtrace v1)", t->path, x->name);
            continue;
        }
        const kvq_st_tensor **slot = w == 0 ? &im->keys[l] : w == 1 ? &im->values[l] : &im->queries[l];
        *slot = x;
        if (l + 1 > n_layers) n_layers = l + 1;
    }
    static const char *const fmt[3] = {"layers.%d.keys", "layers.%d.values", "layers.%d.queries"};
    kvq_status s = check_layers(t, im, n_layers, fmt);
    if (s == KVQ_OK) s = read_meta(t, st);
    if (s == KVQ_OK && qpos && !t->n_queries)
        s = kvq_error(KVQ_ERR_FORMAT, "%s: tensor 'query_positions' present but the trace has no queries", t->path);
    if (s == KVQ_OK && qpos)
        s = read_index_tensor(t, qpos, t->n_queries, &t->query_positions, t->n_tokens, "one position per query row");
    if (s == KVQ_OK && !qpos && t->n_queries) {
        if (t->n_queries != t->n_tokens)
            return kvq_error(KVQ_ERR_SHAPE, "%s: no tensor 'query_positions' and n_queries %d != n_tokens %d, expected I32 [%d] positions",
                             t->path, t->n_queries, t->n_tokens, t->n_queries);
        if (!(t->query_positions = malloc((size_t)t->n_queries * sizeof *t->query_positions)))
            return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", t->path);
        for (int i = 0; i < t->n_queries; i++) t->query_positions[i] = i;
    }
    if (s == KVQ_OK && toks) s = read_index_tensor(t, toks, t->n_tokens, &t->tokens, -1, "token ids");
    return s;
}

// ---- mlx_lm prompt cache: tensors "{L}.0" (keys) and "{L}.1" (values) ----
static int looks_mlx(const kvq_st *st, int *quantized)
{
    int l, w, all = st->n_tensors > 0;
    *quantized = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const char *nm = st->tensors[i].name;
        if (parse_name(nm, "", mlx_suffix, 2, &l, &w) == 1) continue;
        all = 0;
        int a, b, c, k = 0;
        if (sscanf(nm, "%d.%d.%d%n", &a, &b, &c, &k) == 3 && nm[k] == 0) *quantized = 1;
    }
    return all;
}

static kvq_status load_mlx(kvq_trace *t, kvq_trace_impl *im)
{
    const kvq_st *st = im->st;
    int n_layers = 0;
    im->dim_off = 1;
    for (int i = 0; i < st->n_tensors; i++) {
        int l, w;
        if (parse_name(st->tensors[i].name, "", mlx_suffix, 2, &l, &w) != 1)
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': expected {layer}.0 / {layer}.1 with layer < %d", t->path,
                             st->tensors[i].name, KVQ_MAX_LAYERS);
        *(w == 0 ? &im->keys[l] : &im->values[l]) = &st->tensors[i];
        if (l + 1 > n_layers) n_layers = l + 1;
    }
    static const char *const fmt[3] = {"%d.0", "%d.1", "%d.q"};
    kvq_status s = check_layers(t, im, n_layers, fmt);
    if (s == KVQ_OK && !t->has_values)
        s = kvq_error(KVQ_ERR_FORMAT, "%s: tensor '0.1' (values) is missing, expected {layer}.1 for every layer", t->path);
    if (s != KVQ_OK) return s;
    t->post_rope = true;   // mlx_lm caches hold keys after RoPE
    snprintf(t->source, sizeof t->source, "mlx_lm prompt cache");
    const char *cls = kvq_st_meta(st, "2.0");   // save_prompt_cache stores cache classes under "2.{L}"
    if (cls && strcmp(cls, "KVCache") != 0)
        kvq_log(KVQ_LOG_WARN, "%s: cache class %s: token order may differ from positions", t->path, cls);
    return KVQ_OK;
}

static int is_npy(const char *path)
{
    size_t n = strlen(path);
    if (n >= 4 && strcmp(path + n - 4, ".npy") == 0) return 1;
    FILE *f = NULL;
    char magic[6] = {0};
    if (kvq_file_fopen(path, &f, NULL) == KVQ_OK) {
        if (fread(magic, 1, 6, f) != 6) magic[0] = 0;
        fclose(f);
    }
    return memcmp(magic, "\x93NUMPY", 6) == 0;
}

// Before parsing: a file that is neither .npy nor .safetensors by name and
// has no safetensors JSON header ('{' after the 8-byte length) is not a
// trace, and saying so beats a "header length" from its first 8 bytes of
// text. Files named .safetensors go to the parser for its exact message.
static kvq_status sniff_trace(const char *path)
{
    size_t n = strlen(path);
    if (n >= 12 && strcmp(path + n - 12, ".safetensors") == 0) return KVQ_OK;
    struct stat sb;
    if (stat(path, &sb)) return KVQ_OK;   // the parser reports why it cannot be opened
    if (S_ISDIR(sb.st_mode))
        return kvq_error(KVQ_ERR_FORMAT, "%s: is a directory, not a safetensors, npy or mlx_lm cache file", path);
    FILE *f;
    kvq_status st = kvq_file_fopen(path, &f, NULL);   // a FIFO or device: refused, never read
    if (st) return st;
    unsigned char head[9];
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    if (got == sizeof head && head[8] == '{') return KVQ_OK;
    return kvq_error(KVQ_ERR_FORMAT, "%s: not a safetensors, npy or mlx_lm cache file", path);
}

kvq_status kvq_trace_open(const char *path, const kvq_trace_opts *opts, kvq_trace **out)
{
    *out = NULL;
    if (!path) return kvq_error(KVQ_ERR_ARG, "trace: no path");
    kvq_trace *t = calloc(1, sizeof *t);
    kvq_trace_impl *im = calloc(1, sizeof *im);
    if (!t || !im) {
        free(t);
        free(im);
        return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", path);
    }
    t->impl = im;
    snprintf(t->path, sizeof t->path, "%s", path);
    t->bits_per_byte = NAN;
    kvq_status s;
    if (is_npy(path)) {
        t->kind = KVQ_TRACE_NPY;
        s = kvq_trace_load_npy(t, path, opts);
    } else if ((s = sniff_trace(path)) == KVQ_OK && (s = kvq_st_open(path, &im->st)) == KVQ_OK) {
        const char *fmt = kvq_st_meta(im->st, "format");
        int quantized;
        if (fmt && strcmp(fmt, "kvtrace") == 0) {
            t->kind = KVQ_TRACE_KVTRACE;
            s = load_kvtrace(t, im);
        } else if (looks_mlx(im->st, &quantized)) {
            t->kind = KVQ_TRACE_MLX;
            s = load_mlx(t, im);
        } else if (quantized) {
            s = kvq_error(KVQ_ERR_UNSUPPORTED, "%s: quantized mlx_lm prompt cache (tensors '{layer}.{0,1}.{i}'), expected an unquantized KVCache",
                          path);
        } else {
            s = kvq_error(KVQ_ERR_FORMAT, "%s: __metadata__ format is %s%s%s, expected 'kvtrace' (or an mlx_lm prompt cache with tensors '{layer}.0' / '{layer}.1')",
                          path, fmt ? "'" : "", fmt ? fmt : "missing", fmt ? "'" : "");
        }
        if (s == KVQ_OK && opts && opts->defer_scan) im->scan_pending = true;
        else if (s == KVQ_OK) s = scan_all(t, im, NULL);
    }
    if (s != KVQ_OK) {
        kvq_trace_free(t);
        return s;
    }
    *out = t;
    return KVQ_OK;
}

kvq_trace *kvq_trace_ref(const kvq_trace *t)
{
    if (t && t->impl) __atomic_fetch_add(&((kvq_trace_impl *)t->impl)->refs, 1, __ATOMIC_RELAXED);
    return (kvq_trace *)t;
}

void kvq_trace_free(kvq_trace *t)
{
    if (!t) return;
    kvq_trace_impl *im = t->impl;
    if (im && __atomic_fetch_sub(&im->refs, 1, __ATOMIC_ACQ_REL) > 0) return;   // another owner remains
    if (im) {
        kvq_st_close(im->st);
        kvq_npy_close(im->npk);
        kvq_npy_close(im->npv);
        free(im);
    }
    free(t->query_positions);
    free(t->tokens);
    free(t);
}

kvq_status kvq_trace_rows(const kvq_trace *t, kvq_stream which, int layer, int head, int row0, int n_rows,
                          float *out)
{
    static const char *const what[3] = {"keys", "values", "queries"};
    if (!t || !out || which < KVQ_STREAM_KEYS || which > KVQ_STREAM_QUERIES)
        return kvq_error(KVQ_ERR_ARG, "trace rows: NULL argument or unknown stream");
    int nh = which == KVQ_STREAM_QUERIES ? t->n_heads : t->n_kv_heads;
    int rows = which == KVQ_STREAM_QUERIES ? t->n_queries : t->n_tokens;
    if (layer < 0 || layer >= t->n_layers || head < 0 || head >= nh)
        return kvq_error(KVQ_ERR_ARG, "%s: %s of layer %d head %d: expected layer 0..%d, head 0..%d", t->path,
                         what[which], layer, head, t->n_layers - 1, nh - 1);
    if ((which == KVQ_STREAM_VALUES && !t->has_values) || (which == KVQ_STREAM_QUERIES && !t->n_queries))
        return kvq_error(KVQ_ERR_ARG, "%s: the trace has no %s", t->path, what[which]);
    if (row0 < 0 || n_rows < 0 || row0 > rows - n_rows)
        return kvq_error(KVQ_ERR_ARG, "%s: %s rows %d..%d of layer %d: expected within 0..%d", t->path, what[which],
                         row0, row0 + n_rows, layer, rows);
    const kvq_trace_impl *im = t->impl;
    if (t->kind == KVQ_TRACE_NPY) {
        kvq_trace_npy_read(which ? im->npv : im->npk, layer, head, (size_t)row0, (size_t)n_rows, out);
        return KVQ_OK;
    }
    const kvq_st_tensor *x = which == KVQ_STREAM_KEYS ? im->keys[layer]
                             : which == KVQ_STREAM_VALUES ? im->values[layer] : im->queries[layer];
    size_t d = (size_t)t->head_dim;
    return kvq_st_read_f32(x, ((size_t)head * (size_t)rows + (size_t)row0) * d, (size_t)n_rows * d, out);
}

kvq_status kvq_trace_keys(const kvq_trace *t, int layer, int kv_head, float *out)
{
    return kvq_trace_rows(t, KVQ_STREAM_KEYS, layer, kv_head, 0, t ? t->n_tokens : 0, out);
}

kvq_status kvq_trace_values(const kvq_trace *t, int layer, int kv_head, float *out)
{
    return kvq_trace_rows(t, KVQ_STREAM_VALUES, layer, kv_head, 0, t ? t->n_tokens : 0, out);
}

kvq_status kvq_trace_queries(const kvq_trace *t, int layer, int head, float *out)
{
    return kvq_trace_rows(t, KVQ_STREAM_QUERIES, layer, head, 0, t ? t->n_queries : 0, out);
}
