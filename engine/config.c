// config.c — kvq_config defaults, validation, and text get/set through one
// field table (also what the studio's forms and completion are built from).
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kvq.h"

typedef enum { F_INT, F_BOOL, F_STR, F_U64, F_BITMAP } field_type;

typedef struct {
    const char *name;
    field_type type;
    size_t off;
    size_t size;       // F_STR buffer size
    long lo, hi;       // F_INT range
    const char *help;
    const int *only;   // F_INT: the allowed values within lo..hi (0-terminated), NULL = all
} field;

#define FI(n, lo, hi, h) {#n, F_INT, offsetof(kvq_config, n), 0, lo, hi, h, NULL}
#define FB(n, h) {#n, F_BOOL, offsetof(kvq_config, n), 0, 0, 1, h, NULL}
#define FS(n, h) {#n, F_STR, offsetof(kvq_config, n), sizeof(((kvq_config *)0)->n), 0, 0, h, NULL}

// Value widths the value codecs are built and documented for (README, the
// lab's value_bits cycle); 16 = fp16. The one list: set, check and help use it.
static const int value_bits_allowed[] = {2, 3, 4, 8, 16, 0};

static const field fields[] = {
    FS(method, "key quantization method"),
    FI(bits, 1, 16, "key bits per coordinate"),
    {"value_bits", F_INT, offsetof(kvq_config, value_bits), 0, 2, 16, "value bits (16 = fp16)", value_bits_allowed},
    FS(value_method, "value method (default turboquant_mse)"),
    FI(num_residuals, 1, 8, "turboquant_rvq passes"),
    FB(use_hadamard, "randomized Hadamard instead of a dense rotation"),
    FS(codebook, "lloyd_max or uniform"),
    FS(smooth_factors, "VecInfer smooth-factor artifact path"),
    FS(rotations, "SpectralQuant rotation artifact path"),
    FS(artifacts, "calibration artifact directory"),
    {"bit_allocation", F_BITMAP, offsetof(kvq_config, bit_allocation), 0, 1, 16,
     "per-layer key bits, e.g. 2,3,3,2 or layer_0:2,layer_1:3", NULL},
    FI(outlier_bits, 0, 16, "bits for outlier tokens (0 = off)"),
    FI(outlier_channels, 0, KVQ_MAX_HEAD_DIM, "channels kept at bits+1 (mixed precision)"),
    FI(sketch_dim, 0, KVQ_MAX_SKETCH_DIM, "QJL sketch size m (0 = head_dim)"),
    FI(num_clusters, 1, 65536, "RaBitQ IVF centroids"),
    FI(num_subspaces, 1, KVQ_MAX_HEAD_DIM, "product-VQ subspaces"),
    FI(num_centroids, 2, 65536, "codebook size"),
    FB(use_fused_sdpa, "score from codes inside the online softmax"),
    FB(query_int8, "turboquant_mse keys (bits <= 4): score from the query rounded to int8 (as ggml's q8_0 query)"),
    FI(signal_bits, 0, 8, "SpectralQuant signal bits"),
    FI(noise_bits, 0, 8, "SpectralQuant noise bits"),
    {"seed", F_U64, offsetof(kvq_config, seed), 0, 0, 0, "random seed", NULL},
    FI(residual_length, 0, 1 << 24, "recent tokens kept in fp16"),
    FI(sink_tokens, 0, 1 << 24, "first tokens kept in fp16"),
    FI(protect_layers, 0, KVQ_MAX_LAYERS, "first/last layers left fp16"),
    FI(sliding_window, 0, 1 << 24, "evict tokens beyond this window (0 = off)"),
    FI(max_seq_len, 0, 1 << 24, "preallocate this many tokens (0 = grow)"),
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

void kvq_config_default(kvq_config *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->method, "turboquant_mse");
    c->bits = 3;
    c->value_bits = 2;
    c->num_residuals = 2;
    c->use_hadamard = true;
    strcpy(c->codebook, "lloyd_max");
    c->num_clusters = 16;
    c->num_subspaces = 8;
    c->num_centroids = 256;
    c->use_fused_sdpa = true;
    c->signal_bits = 4;
    c->noise_bits = 1;
    c->seed = 42;
}

const char *const *kvq_config_field_names(void)
{
    static const char *names[N_FIELDS + 1];
    if (!names[0])
        for (size_t i = 0; i < N_FIELDS; i++) names[i] = fields[i].name;
    return names;
}

static const field *field_find(const char *key)
{
    char norm[64];
    size_t i = 0;
    for (; key[i] && i < sizeof norm - 1; i++) norm[i] = key[i] == '-' ? '_' : key[i];
    norm[i] = 0;
    for (size_t k = 0; k < N_FIELDS; k++)
        if (strcmp(fields[k].name, norm) == 0) return &fields[k];
    return NULL;
}

static bool int_allowed(const field *f, long v)
{
    if (v < f->lo || v > f->hi) return false;
    if (!f->only) return true;
    for (const int *p = f->only; *p; p++)
        if (*p == v) return true;
    return false;
}

// "2, 3, 4, 8 or 16" / "1..16"
static void int_values(const field *f, char *buf, size_t n)
{
    if (!f->only) {
        snprintf(buf, n, "%ld..%ld", f->lo, f->hi);
        return;
    }
    size_t len = 0;
    buf[0] = 0;
    for (const int *p = f->only; *p && len < n; p++)
        len += (size_t)snprintf(buf + len, n - len, "%s%d", p == f->only ? "" : p[1] ? ", " : " or ", *p);
}

static bool parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

static kvq_status set_bitmap(kvq_config *c, const char *value)
{
    int bits[KVQ_MAX_LAYERS], n = 0;
    char buf[4096];
    if (strlen(value) >= sizeof buf)
        return kvq_error(KVQ_ERR_ARG, "bit_allocation: value too long");
    strcpy(buf, value);
    if (!*buf || strcmp(buf, "none") == 0) {
        c->n_bit_allocation = 0;
        return KVQ_OK;
    }
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int layer = n;
        char *colon = strchr(tok, ':');
        if (colon) {
            *colon = 0;
            long l;
            const char *ln = strncmp(tok, "layer_", 6) == 0 ? tok + 6 : tok;
            if (!parse_long(ln, &l) || l < 0 || l >= KVQ_MAX_LAYERS)
                return kvq_error(KVQ_ERR_ARG, "bit_allocation: bad layer name '%s' (expected layer_N)", tok);
            layer = (int)l;
            tok = colon + 1;
        }
        long b;
        if (!parse_long(tok, &b) || b < 1 || b > 16)
            return kvq_error(KVQ_ERR_ARG, "bit_allocation: bad bits '%s' (expected 1..16)", tok);
        if (layer >= KVQ_MAX_LAYERS)
            return kvq_error(KVQ_ERR_ARG, "bit_allocation: more than %d layers", KVQ_MAX_LAYERS);
        if (layer != n)
            return kvq_error(KVQ_ERR_ARG, "bit_allocation: layer_%d out of order (expected layer_%d)", layer, n);
        bits[n++] = (int)b;
    }
    memcpy(c->bit_allocation, bits, sizeof(int) * (size_t)n);
    c->n_bit_allocation = n;
    return KVQ_OK;
}

kvq_status kvq_config_set(kvq_config *c, const char *key, const char *value)
{
    const field *f = field_find(key);
    if (!f) {
        char known[1024] = "";
        size_t len = 0;
        for (size_t i = 0; i < N_FIELDS && len < sizeof known; i++)
            len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", fields[i].name);
        return kvq_error(KVQ_ERR_ARG, "unknown option '%s' (known: %s)", key, known);
    }
    char *p = (char *)c + f->off;
    long v;
    switch (f->type) {
    case F_INT:
        if (!parse_long(value, &v) || !int_allowed(f, v)) {
            char allowed[96];
            int_values(f, allowed, sizeof allowed);
            if (f->only) return kvq_error(KVQ_ERR_ARG, "%s: '%s' is not one of %s", f->name, value, allowed);
            return kvq_error(KVQ_ERR_ARG, "%s: '%s' is not an integer in %s", f->name, value, allowed);
        }
        *(int *)p = (int)v;
        return KVQ_OK;
    case F_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "on") || !strcmp(value, "yes"))
            *(bool *)p = true;
        else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "off") || !strcmp(value, "no"))
            *(bool *)p = false;
        else
            return kvq_error(KVQ_ERR_ARG, "%s: '%s' is not a boolean (expected true/false)", f->name, value);
        return KVQ_OK;
    case F_STR:
        if (strlen(value) >= f->size)
            return kvq_error(KVQ_ERR_ARG, "%s: value longer than %zu characters", f->name, f->size - 1);
        strcpy(p, value);
        return KVQ_OK;
    case F_U64: {
        char *end;
        errno = 0;
        unsigned long long u = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-')
            return kvq_error(KVQ_ERR_ARG, "%s: '%s' is not a non-negative integer", f->name, value);
        *(uint64_t *)p = (uint64_t)u;
        return KVQ_OK;
    }
    case F_BITMAP:
        return set_bitmap(c, value);
    }
    return KVQ_ERR_ARG;
}

kvq_status kvq_config_get(const kvq_config *c, const char *key, char *buf, size_t n)
{
    const field *f = field_find(key);
    if (!f) return kvq_error(KVQ_ERR_ARG, "unknown option '%s'", key);
    const char *p = (const char *)c + f->off;
    switch (f->type) {
    case F_INT: snprintf(buf, n, "%d", *(const int *)p); break;
    case F_BOOL: snprintf(buf, n, "%s", *(const bool *)p ? "true" : "false"); break;
    case F_STR: snprintf(buf, n, "%s", p); break;
    case F_U64: snprintf(buf, n, "%" PRIu64, *(const uint64_t *)p); break;
    case F_BITMAP: {
        size_t len = 0;
        if (n) buf[0] = 0;
        for (int i = 0; i < c->n_bit_allocation && len < n; i++)
            len += (size_t)snprintf(buf + len, n - len, "%s%d", i ? "," : "", c->bit_allocation[i]);
        if (!c->n_bit_allocation) snprintf(buf, n, "none");
        break;
    }
    }
    return KVQ_OK;
}

kvq_status kvq_config_field_describe(const char *key, kvq_config_field_info *out)
{
    const field *f = field_find(key);
    if (!f) return kvq_error(KVQ_ERR_ARG, "unknown option '%s'", key);
    static const kvq_field_kind kinds[] = {[F_INT] = KVQ_FIELD_INT, [F_BOOL] = KVQ_FIELD_BOOL,
                                           [F_STR] = KVQ_FIELD_STR, [F_U64] = KVQ_FIELD_U64,
                                           [F_BITMAP] = KVQ_FIELD_LIST};
    out->kind = kinds[f->type];
    out->help = f->help;
    switch (f->type) {
    case F_INT: int_values(f, out->values, sizeof out->values); break;
    case F_BOOL: snprintf(out->values, sizeof out->values, "true or false"); break;
    case F_STR: snprintf(out->values, sizeof out->values, "text"); break;
    case F_U64: snprintf(out->values, sizeof out->values, "integer >= 0"); break;
    case F_BITMAP: snprintf(out->values, sizeof out->values, "list of %ld..%ld, or none", f->lo, f->hi); break;
    }
    return KVQ_OK;
}

bool kvq_config_fp16_values(const kvq_config *c)
{
    if (c->value_bits != 16) return false;
    const kvq_method *m = c->value_method[0] ? kvq_method_find(c->value_method) : NULL;
    return !m || m->max_bits < 16 || !strcmp(m->name, "fp16");
}

const char *kvq_config_check(const kvq_config *c)
{
    static _Thread_local char msg[512];
    const kvq_method *m = kvq_method_find(c->method);
    if (!m) {
        kvq_method_lookup(c->method, &m);
        snprintf(msg, sizeof msg, "%s", kvq_last_error());
        return msg;
    }
    if (c->bits < m->min_bits || c->bits > m->max_bits) {
        snprintf(msg, sizeof msg, "bits: %d out of range for %s (expected %d..%d)", c->bits, m->name,
                 m->min_bits, m->max_bits);
        return msg;
    }
    const field *vb = field_find("value_bits");
    // An engine format as value method ("engine:format": llamacpp:q5_0 holds 5
    // bits, mlx:affine_g64 takes 2..8) takes the widths of its own row.
    const kvq_method *fvm = c->value_method[0] ? kvq_method_find(c->value_method) : NULL;
    bool fixed_width = fvm && strchr(fvm->name, ':') && c->value_bits >= fvm->min_bits &&
                       c->value_bits <= fvm->max_bits;
    if (!fixed_width && !int_allowed(vb, c->value_bits)) {
        char allowed[96];
        int_values(vb, allowed, sizeof allowed);
        snprintf(msg, sizeof msg, "value_bits: %d is not one of %s", c->value_bits, allowed);
        return msg;
    }
    if (c->value_method[0] && !kvq_method_find(c->value_method)) {
        kvq_method_lookup(c->value_method, &m);
        snprintf(msg, sizeof msg, "value_method: %s", kvq_last_error());
        return msg;
    }
    if (strcmp(c->codebook, "lloyd_max") && strcmp(c->codebook, "uniform")) {
        snprintf(msg, sizeof msg, "codebook: '%s' unknown (expected lloyd_max or uniform)", c->codebook);
        return msg;
    }
    if (c->outlier_bits && (c->outlier_bits < c->bits)) {
        snprintf(msg, sizeof msg, "outlier_bits: %d below bits %d", c->outlier_bits, c->bits);
        return msg;
    }
    if (c->signal_bits < c->noise_bits) {
        snprintf(msg, sizeof msg, "signal_bits: %d below noise_bits %d", c->signal_bits, c->noise_bits);
        return msg;
    }
    // other key methods ignore query_int8 (and the run label leaves it out)
    if (c->query_int8 && !strcmp(m->name, "turboquant_mse")) {
        int top = c->bits;
        for (int i = 0; i < c->n_bit_allocation; i++)
            if (c->bit_allocation[i] > top) top = c->bit_allocation[i];
        if (top > 4 || c->outlier_channels) {
            snprintf(msg, sizeof msg, "query_int8: needs key bits <= 4 and outlier_channels 0 (found bits %d, outlier_channels %d)",
                     top, c->outlier_channels);
            return msg;
        }
    }
    for (int i = 0; i < c->n_bit_allocation; i++)
        if (c->bit_allocation[i] < 1 || c->bit_allocation[i] > 16) {
            snprintf(msg, sizeof msg, "bit_allocation: layer_%d has %d bits (expected 1..16)", i,
                     c->bit_allocation[i]);
            return msg;
        }
    return NULL;
}
