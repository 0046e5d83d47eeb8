// npy.c — .npy header parser (a tiny Python-literal reader), element
// access with byte order and memory order, and a '<f4' writer.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "f16.h"
#include "npy.h"

typedef struct {
    const char *start, *p, *end;
} lit;

static void skip_ws(lit *l)
{
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r')) l->p++;
}

static int accept(lit *l, char c)
{
    skip_ws(l);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return 1;
    }
    return 0;
}

// 'text' or "text" (no escapes: numpy never writes any in these fields)
static int parse_str(lit *l, char *buf, size_t n)
{
    skip_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return -1;
    char q = *l->p++;
    size_t k = 0;
    while (l->p < l->end && *l->p != q) {
        if (*l->p == '\\' || k + 1 >= n) return -1;
        buf[k++] = *l->p++;
    }
    if (l->p >= l->end) return -1;
    l->p++;
    buf[k] = 0;
    return 0;
}

static int parse_word(lit *l, const char *w)
{
    skip_ws(l);
    size_t n = strlen(w);
    if ((size_t)(l->end - l->p) >= n && memcmp(l->p, w, n) == 0) {
        l->p += n;
        return 1;
    }
    return 0;
}

// (d0, d1, ...) with an optional trailing comma; Python 2 'L' suffixes ok.
static int parse_shape(lit *l, kvq_npy *a)
{
    if (!accept(l, '(')) return -1;
    a->ndim = 0;
    while (!accept(l, ')')) {
        skip_ws(l);
        if (l->p >= l->end || *l->p < '0' || *l->p > '9' || a->ndim >= KVQ_NPY_MAX_DIMS) return -1;
        int64_t v = 0;
        while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return -1;
            v = v * 10 + (*l->p++ - '0');
        }
        if (l->p < l->end && *l->p == 'L') l->p++;
        a->shape[a->ndim++] = v;
        if (!accept(l, ',')) {
            if (!accept(l, ')')) return -1;
            break;
        }
    }
    return 0;
}

static kvq_status set_dtype(const char *name, kvq_npy *a, bool as_bf16)
{
    const char *d = a->descr;
    char order = d[0], kind = d[1];
    int size = atoi(d + 2);
    int known = strchr("<>|=", order) && order && kind && strchr("fuiV", kind) && size > 0 &&
                strspn(d + 2, "0123456789") == strlen(d + 2);
    a->big_endian = order == '>';
    if (known && as_bf16) {
        if (size != 2)
            return kvq_error(KVQ_ERR_FORMAT, "%s: descr '%s' has %d-byte elements, --dtype bf16 expects 2-byte data",
                             name, d, size);
        a->dtype = KVQ_DT_BF16;
    } else if (known && kind == 'f' && (size == 2 || size == 4 || size == 8)) {
        a->dtype = size == 2 ? KVQ_DT_F16 : size == 4 ? KVQ_DT_F32 : KVQ_DT_F64;
    } else if (known && size == 2) {
        return kvq_error(KVQ_ERR_FORMAT, "%s: descr '%s' is not a float type, expected <f2, <f4 or <f8 (use --dtype bf16 if it holds bfloat16)",
                         name, d);
    } else {
        return kvq_error(KVQ_ERR_FORMAT, "%s: descr '%s' is not supported, expected <f2, <f4, <f8 (or big-endian >f2, >f4, >f8)",
                         name, d);
    }
    a->esize = size;
    return KVQ_OK;
}

static kvq_status parse_dict(const char *name, lit *l, kvq_npy *a, bool as_bf16)
{
    int have_d = 0, have_f = 0, have_s = 0;
    if (!accept(l, '{'))
        return kvq_error(KVQ_ERR_FORMAT, "%s: header is not a Python dict, expected {'descr': ..., 'fortran_order': ..., 'shape': (...)}", name);
    while (!accept(l, '}')) {
        char key[32];
        if (parse_str(l, key, sizeof key) != 0 || !accept(l, ':'))
            return kvq_error(KVQ_ERR_FORMAT, "%s: header dict: malformed key at header byte %td, expected a quoted name and ':'",
                             name, l->p - l->start);
        if (strcmp(key, "descr") == 0 && !have_d) {
            if (parse_str(l, a->descr, sizeof a->descr) != 0)
                return kvq_error(KVQ_ERR_FORMAT, "%s: header 'descr' is not a simple dtype string, expected e.g. '<f4' (structured dtypes are not supported)", name);
            have_d = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_f) {
            if (parse_word(l, "True")) a->fortran_order = true;
            else if (parse_word(l, "False")) a->fortran_order = false;
            else return kvq_error(KVQ_ERR_FORMAT, "%s: header 'fortran_order' is not True or False", name);
            have_f = 1;
        } else if (strcmp(key, "shape") == 0 && !have_s) {
            if (parse_shape(l, a) != 0)
                return kvq_error(KVQ_ERR_FORMAT, "%s: header 'shape' is not a tuple of at most %d non-negative integers",
                                 name, KVQ_NPY_MAX_DIMS);
            have_s = 1;
        } else {
            return kvq_error(KVQ_ERR_FORMAT, "%s: header key '%s' is unknown or repeated, expected exactly 'descr', 'fortran_order', 'shape'",
                             name, key);
        }
        if (!accept(l, ',')) {
            if (!accept(l, '}')) return kvq_error(KVQ_ERR_FORMAT, "%s: header dict: expected ',' or '}'", name);
            break;
        }
    }
    skip_ws(l);
    if (l->p != l->end) return kvq_error(KVQ_ERR_FORMAT, "%s: header has text after the dict", name);
    if (!have_d || !have_f || !have_s)
        return kvq_error(KVQ_ERR_FORMAT, "%s: header lacks '%s', expected 'descr', 'fortran_order' and 'shape'", name,
                         !have_d ? "descr" : !have_f ? "fortran_order" : "shape");
    return set_dtype(name, a, as_bf16);
}

kvq_status kvq_npy_parse(const char *name, const void *buf, size_t len, bool as_bf16, kvq_npy *a)
{
    const uint8_t *b = buf;
    memset(a, 0, sizeof *a);
    snprintf(a->path, sizeof a->path, "%s", name);
    if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return kvq_error(KVQ_ERR_FORMAT, "%s: bad magic (not a .npy file), expected the bytes \\x93NUMPY", name);
    a->version = b[6];
    if (a->version < 1 || a->version > 3)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: .npy format version %d.%d, expected 1.0, 2.0 or 3.0", name, b[6], b[7]);
    size_t pre = a->version == 1 ? 10 : 12, hlen;
    if (len < pre) return kvq_error(KVQ_ERR_FORMAT, "%s: truncated in the header length (%zu bytes)", name, len);
    hlen = a->version == 1 ? (size_t)b[8] | (size_t)b[9] << 8
                           : (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    if (hlen > len - pre)
        return kvq_error(KVQ_ERR_FORMAT, "%s: header length %zu runs past the end of the file (%zu bytes after the prefix)",
                         name, hlen, len - pre);
    lit l = {(const char *)b + pre, (const char *)b + pre, (const char *)b + pre + hlen};
    kvq_status s = parse_dict(name, &l, a, as_bf16);
    if (s != KVQ_OK) return s;
    size_t n = 1;
    for (int d = 0; d < a->ndim; d++) {
        uint64_t v = (uint64_t)a->shape[d];
        if (v && n > SIZE_MAX / v) return kvq_error(KVQ_ERR_FORMAT, "%s: shape overflows the element count", name);
        n *= (size_t)v;
    }
    if (n > SIZE_MAX / (size_t)a->esize) return kvq_error(KVQ_ERR_FORMAT, "%s: shape overflows the byte size", name);
    a->nelem = n;
    a->nbytes = n * (size_t)a->esize;
    size_t have = len - pre - hlen;
    if (have != a->nbytes)
        return kvq_error(KVQ_ERR_FORMAT, "%s: %s: shape needs %zu bytes of data, the file has %zu after the header",
                         name, have < a->nbytes ? "truncated" : "trailing bytes", a->nbytes, have);
    a->data = b + pre + hlen;
    return KVQ_OK;
}

kvq_status kvq_npy_open(const char *path, bool as_bf16, kvq_npy **out)
{
    *out = NULL;
    kvq_npy *a = calloc(1, sizeof *a);
    if (!a) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", path);
    void *map;
    size_t len;
    kvq_status s = kvq_file_map(path, &map, &len);
    if (s == KVQ_OK) s = kvq_npy_parse(path, map, len, as_bf16, a);
    if (s != KVQ_OK) {
        kvq_file_unmap(map, len);
        free(a);
        return s;
    }
    a->map = map;
    a->map_len = len;
    *out = a;
    return KVQ_OK;
}

void kvq_npy_close(kvq_npy *a)
{
    if (!a) return;
    kvq_file_unmap(a->map, a->map_len);
    free(a);
}

size_t kvq_npy_offset(const kvq_npy *a, const int64_t *idx)
{
    size_t off = 0;
    if (a->fortran_order)
        for (int d = a->ndim - 1; d >= 0; d--) off = off * (size_t)a->shape[d] + (size_t)idx[d];
    else
        for (int d = 0; d < a->ndim; d++) off = off * (size_t)a->shape[d] + (size_t)idx[d];
    return off;
}

float kvq_npy_at(const kvq_npy *a, size_t i)
{
    uint8_t b[8];
    const uint8_t *p = a->data + i * (size_t)a->esize;
    for (int k = 0; k < a->esize; k++) b[k] = a->big_endian ? p[a->esize - 1 - k] : p[k];
    switch (a->dtype) {
    case KVQ_DT_F16: { uint16_t h; memcpy(&h, b, 2); return kvq_f16_to_f32(h); }
    case KVQ_DT_BF16: { uint16_t h; memcpy(&h, b, 2); return kvq_bf16_to_f32(h); }
    case KVQ_DT_F32: { float f; memcpy(&f, b, 4); return f; }
    default: { double d; memcpy(&d, b, 8); return (float)d; }
    }
}

kvq_status kvq_npy_write_f32(const char *path, int ndim, const int64_t *shape, const float *data)
{
    if (ndim < 0 || ndim > KVQ_NPY_MAX_DIMS) return kvq_error(KVQ_ERR_ARG, "%s: %d dims, at most %d", path, ndim, KVQ_NPY_MAX_DIMS);
    char dict[256];
    size_t k = (size_t)snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return kvq_error(KVQ_ERR_ARG, "%s: shape[%d] is negative", path, d);
        n *= (size_t)shape[d];
        k += (size_t)snprintf(dict + k, sizeof dict - k, ndim == 1 ? "%lld," : d ? ", %lld" : "%lld", (long long)shape[d]);
    }
    k += (size_t)snprintf(dict + k, sizeof dict - k, "), }");
    // pad with spaces and a final newline so the data starts at a multiple of 64
    size_t total = (10 + k + 1 + 63) / 64 * 64, hlen = total - 10;
    kvq_atomic_file af;
    kvq_status s = kvq_atomic_open(&af, path);
    if (s != KVQ_OK) return s;
    FILE *fp = af.fp;
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 0xff), (uint8_t)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, fp) == 10 && fwrite(dict, 1, k, fp) == k;
    for (size_t i = k; ok && i + 1 < hlen; i++) ok = fputc(' ', fp) != EOF;
    ok = ok && fputc('\n', fp) != EOF && (n == 0 || fwrite(data, sizeof *data, n, fp) == n);
    if (!ok) {
        kvq_atomic_abort(&af);
        return kvq_error(KVQ_ERR_IO, "%s: write failed", path);
    }
    return kvq_atomic_commit(&af);
}
