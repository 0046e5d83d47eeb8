// safetensors.c — mmap reader with the reference reader's checks, the
// shared read-only file mapping and the non-finite scan. The writer and the
// atomic-file helpers are in safetensors_write.c.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "f16.h"
#include "file.h"
#include "safetensors.h"
#include "simd.h"

static const struct { const char *name; int size; } dtypes[KVQ_DT_COUNT] = {
    [KVQ_DT_F32] = {"F32", 4},  [KVQ_DT_F16] = {"F16", 2}, [KVQ_DT_BF16] = {"BF16", 2},
    [KVQ_DT_F64] = {"F64", 8},  [KVQ_DT_F8_E4M3] = {"F8_E4M3", 1},
    [KVQ_DT_I32] = {"I32", 4},  [KVQ_DT_I64] = {"I64", 8}, [KVQ_DT_I16] = {"I16", 2},
    [KVQ_DT_I8] = {"I8", 1},    [KVQ_DT_U8] = {"U8", 1},   [KVQ_DT_BOOL] = {"BOOL", 1},
};
#define DTYPE_LIST "F64, F32, F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, BOOL"

const char *kvq_dtype_name(kvq_dtype t) { return t >= 0 && t < KVQ_DT_COUNT ? dtypes[t].name : "?"; }
int kvq_dtype_size(kvq_dtype t) { return t >= 0 && t < KVQ_DT_COUNT ? dtypes[t].size : 0; }

kvq_dtype kvq_dtype_from_name(const char *name)
{
    for (int i = 0; i < KVQ_DT_COUNT; i++)
        if (strcmp(dtypes[i].name, name) == 0) return (kvq_dtype)i;
    return KVQ_DT_COUNT;
}

int kvq_dtype_is_float(kvq_dtype t)
{
    return t == KVQ_DT_F32 || t == KVQ_DT_F16 || t == KVQ_DT_BF16 || t == KVQ_DT_F64 ||
           t == KVQ_DT_F8_E4M3;
}

// ---- mapping ----
kvq_status kvq_file_map(const char *path, void **map, size_t *len)
{
    *map = NULL;
    *len = 0;
    int fd;
    size_t size;
    kvq_status s = kvq_file_open_regular(path, &fd, &size);
    if (s) return s;
    if (size > 0) {
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return kvq_error(KVQ_ERR_IO, "%s: cannot map %zu bytes: %s", path, size, strerror(e));
        }
        *map = m;
        *len = size;
    }
    close(fd);
    return KVQ_OK;
}

void kvq_file_unmap(void *map, size_t len)
{
    if (map && len) munmap(map, len);
}

// ---- reader ----
static const char *json_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static void fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

// Shared by reader and writer: product(shape) x size with overflow checks.
static int byte_size(int ndim, const int64_t *shape, int esize, size_t *nelem, size_t *nbytes)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        uint64_t s = (uint64_t)shape[d];
        if (s && n > SIZE_MAX / s) return -1;
        n *= (size_t)s;
    }
    if (n > SIZE_MAX / (size_t)esize) return -1;
    *nelem = n;
    *nbytes = n * (size_t)esize;
    return 0;
}

typedef struct { uint64_t begin, end; } span;

static kvq_status parse_tensor(const char *path, const char *name, json_t *e, kvq_st_tensor *t, span *sp)
{
    if (!json_is_object(e))
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' is %s, expected an object with dtype, shape, data_offsets",
                         path, name, json_kind(e));
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
           *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd))
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': dtype is %s, expected a string (one of " DTYPE_LIST ")",
                         path, name, jd ? json_kind(jd) : "missing");
    t->dtype = kvq_dtype_from_name(json_string_value(jd));
    if (t->dtype == KVQ_DT_COUNT)
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': dtype '%s' is unknown, expected one of " DTYPE_LIST,
                         path, name, json_string_value(jd));
    if (!json_is_array(js))
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': shape is %s, expected an array of non-negative integers",
                         path, name, js ? json_kind(js) : "missing");
    if (json_array_size(js) > KVQ_ST_MAX_DIMS)
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': shape has %zu dims, at most %d supported",
                         path, name, json_array_size(js), KVQ_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    for (int d = 0; d < t->ndim; d++) {
        json_t *v = json_array_get(js, (size_t)d);
        if (json_is_integer(v) && json_integer_value(v) < 0)
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': shape[%d] is %lld, expected a non-negative integer",
                             path, name, d, (long long)json_integer_value(v));
        if (!json_is_integer(v))
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': shape[%d] is %s, expected a non-negative integer",
                             path, name, d, json_kind(v));
        t->shape[d] = json_integer_value(v);
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)) || json_integer_value(json_array_get(jo, 0)) < 0 ||
        json_integer_value(json_array_get(jo, 1)) < 0)
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': data_offsets is %s, expected [begin, end] (non-negative integers)",
                         path, name, jo ? (json_is_array(jo) ? "a malformed array" : json_kind(jo)) : "missing");
    sp->begin = (uint64_t)json_integer_value(json_array_get(jo, 0));
    sp->end = (uint64_t)json_integer_value(json_array_get(jo, 1));
    if (sp->begin > sp->end)
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] has begin > end",
                         path, name, (unsigned long long)sp->begin, (unsigned long long)sp->end);
    char sh[160];
    fmt_shape(sh, sizeof sh, t->ndim, t->shape);
    if (byte_size(t->ndim, t->shape, kvq_dtype_size(t->dtype), &t->nelem, &t->nbytes) != 0)
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': shape %s of %s overflows the byte size",
                         path, name, sh, kvq_dtype_name(t->dtype));
    if ((uint64_t)t->nbytes != sp->end - sp->begin)
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': shape %s %s needs %zu bytes, data_offsets span %llu",
                         path, name, sh, kvq_dtype_name(t->dtype), t->nbytes,
                         (unsigned long long)(sp->end - sp->begin));
    return KVQ_OK;
}

static kvq_status parse_metadata(kvq_st *st, json_t *m)
{
    if (!json_is_object(m))
        return kvq_error(KVQ_ERR_FORMAT, "%s: __metadata__ is %s, expected an object of string values",
                         st->path, json_kind(m));
    size_t n = json_object_size(m);
    st->meta_keys = calloc(n ? n : 1, sizeof *st->meta_keys);
    st->meta_vals = calloc(n ? n : 1, sizeof *st->meta_vals);
    if (!st->meta_keys || !st->meta_vals) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", st->path);
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v))
            return kvq_error(KVQ_ERR_FORMAT, "%s: __metadata__ '%s' is %s, expected a string",
                             st->path, k, json_kind(v));
        st->meta_keys[st->n_meta] = strdup(k);
        st->meta_vals[st->n_meta] = strdup(json_string_value(v));
        if (!st->meta_keys[st->n_meta] || !st->meta_vals[st->n_meta])
            return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", st->path);
        st->n_meta++;
    }
    return KVQ_OK;
}

typedef struct { span sp; int idx; } order_item;

static int cmp_order(const void *a, const void *b)
{
    const order_item *x = a, *y = b;
    if (x->sp.begin != y->sp.begin) return x->sp.begin < y->sp.begin ? -1 : 1;
    if (x->sp.end != y->sp.end) return x->sp.end < y->sp.end ? -1 : 1;
    return x->idx - y->idx;
}

// Header parsed; check the layout and point each tensor into the mapping.
static kvq_status check_layout(kvq_st *st, kvq_st_tensor *tmp, order_item *ord, int n,
                               const uint8_t *data, size_t data_len)
{
    qsort(ord, (size_t)n, sizeof *ord, cmp_order);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const span *s = &ord[i].sp;
        const char *name = tmp[ord[i].idx].name;
        if (s->begin < at)
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] overlap tensor '%s' [%llu,%llu]",
                             st->path, name, (unsigned long long)s->begin, (unsigned long long)s->end,
                             tmp[ord[i - 1].idx].name, (unsigned long long)ord[i - 1].sp.begin,
                             (unsigned long long)ord[i - 1].sp.end);
        if (s->begin > at) {
            if (i == 0)
                return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] leave a hole of %llu bytes at the start of the data, expected the first tensor at 0",
                                 st->path, name, (unsigned long long)s->begin, (unsigned long long)s->end,
                                 (unsigned long long)s->begin);
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] leave a hole of %llu bytes after tensor '%s' (ends at %llu), expected contiguous data",
                             st->path, name, (unsigned long long)s->begin, (unsigned long long)s->end,
                             (unsigned long long)(s->begin - at), tmp[ord[i - 1].idx].name, (unsigned long long)at);
        }
        if (s->end > data_len)
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu,%llu] run past the end of the file (%zu bytes of data after the header)",
                             st->path, name, (unsigned long long)s->begin, (unsigned long long)s->end, data_len);
        at = s->end;
    }
    if (at != data_len)
        return kvq_error(KVQ_ERR_FORMAT, "%s: tensor data ends at %llu but the file holds %zu bytes after the header (%llu trailing bytes), expected the last tensor to end at the file's end",
                         st->path, (unsigned long long)at, data_len, (unsigned long long)(data_len - at));
    for (int i = 0; i < n; i++) {
        st->tensors[i] = tmp[ord[i].idx];
        st->tensors[i].data = data + ord[i].sp.begin;
        tmp[ord[i].idx].name = NULL;   // ownership moved
    }
    st->n_tensors = n;
    return KVQ_OK;
}

static kvq_status parse_header(kvq_st *st, const uint8_t *hdr, size_t hlen, const uint8_t *data, size_t data_len)
{
    if (hlen == 0 || hdr[0] != '{')
        return kvq_error(KVQ_ERR_FORMAT, "%s: header starts with %s0x%02x, expected a JSON object ('{')", st->path,
                         hlen ? "byte " : "nothing (length 0) ", hlen ? hdr[0] : 0);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)hdr, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return kvq_error(KVQ_ERR_FORMAT, "%s: header JSON: %s (line %d, column %d)", st->path, jerr.text,
                         jerr.line, jerr.column);
    kvq_status s = KVQ_OK;
    size_t cap = json_object_size(root);
    kvq_st_tensor *tmp = calloc(cap ? cap : 1, sizeof *tmp);
    order_item *ord = calloc(cap ? cap : 1, sizeof *ord);
    st->tensors = calloc(cap ? cap : 1, sizeof *st->tensors);
    int n = 0;
    if (!tmp || !ord || !st->tensors) {
        s = kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", st->path);
        goto done;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0) {
            if ((s = parse_metadata(st, v)) != KVQ_OK) goto done;
            continue;
        }
        if ((s = parse_tensor(st->path, k, v, &tmp[n], &ord[n].sp)) != KVQ_OK) goto done;
        if (!(tmp[n].name = strdup(k))) {
            s = kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", st->path);
            goto done;
        }
        ord[n].idx = n;
        n++;
    }
    s = check_layout(st, tmp, ord, n, data, data_len);
done:
    for (int i = 0; tmp && i < n; i++) free(tmp[i].name);
    free(tmp);
    free(ord);
    json_decref(root);
    return s;
}

static kvq_status parse_buffer(kvq_st *st, const uint8_t *b, size_t len)
{
    const char *path = st->path;
    st->buf = b;
    st->buf_len = len;
    if (len < 8)
        return kvq_error(KVQ_ERR_FORMAT, "%s: file is %zu bytes, expected at least 8 (the header length)", path, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    if (n > KVQ_ST_MAX_HEADER)
        return kvq_error(KVQ_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u bytes", path,
                         (unsigned long long)n, KVQ_ST_MAX_HEADER);
    if (n > len - 8)
        return kvq_error(KVQ_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes after the 8-byte length)",
                         path, (unsigned long long)n, len - 8);
    return parse_header(st, b + 8, (size_t)n, b + 8 + n, len - 8 - (size_t)n);
}

static kvq_status open_common(const char *name, const void *buf, size_t len, bool map, kvq_st **out)
{
    *out = NULL;
    kvq_st *st = calloc(1, sizeof *st);
    if (!st) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", name);
    snprintf(st->path, sizeof st->path, "%s", name);
    kvq_status s = KVQ_OK;
    if (map) {
        s = kvq_file_map(name, &st->map, &st->map_len);
        buf = st->map;
        len = st->map_len;
    }
    if (s == KVQ_OK) s = parse_buffer(st, buf, len);
    if (s != KVQ_OK) {
        kvq_st_close(st);
        return s;
    }
    *out = st;
    return KVQ_OK;
}

kvq_status kvq_st_open(const char *path, kvq_st **out) { return open_common(path, NULL, 0, true, out); }

kvq_status kvq_st_open_buffer(const char *name, const void *buf, size_t len, kvq_st **out)
{
    return open_common(name, buf, len, false, out);
}

void kvq_st_close(kvq_st *st)
{
    if (!st) return;
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->meta_keys);
    free(st->meta_vals);
    kvq_file_unmap(st->map, st->map_len);
    free(st);
}

const kvq_st_tensor *kvq_st_find(const kvq_st *st, const char *name)
{
    for (int i = 0; st && i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *kvq_st_meta(const kvq_st *st, const char *key)
{
    for (int i = 0; st && i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_vals[i];
    return NULL;
}

static kvq_status check_range(const kvq_st_tensor *t, size_t start, size_t n)
{
    if (start > t->nelem || n > t->nelem - start)
        return kvq_error(KVQ_ERR_ARG, "tensor '%s': elements [%zu,+%zu) past its %zu elements", t->name, start, n,
                         t->nelem);
    return KVQ_OK;
}

kvq_status kvq_st_read_f32(const kvq_st_tensor *t, size_t start, size_t n, float *dst)
{
    kvq_status s = check_range(t, start, n);
    if (s != KVQ_OK) return s;
    const uint8_t *p = t->data + start * (size_t)kvq_dtype_size(t->dtype);
    switch (t->dtype) {
    case KVQ_DT_F32: memcpy(dst, p, n * sizeof *dst); break;
    case KVQ_DT_F16: kvq_f16_to_f32_fast(p, dst, n); break;   // F16C when the CPU has it (exact)
    case KVQ_DT_BF16: kvq_bf16_row_to_f32(p, dst, n); break;
    case KVQ_DT_F8_E4M3:
        for (size_t i = 0; i < n; i++) dst[i] = kvq_f8e4m3_to_f32(p[i]);
        break;
    case KVQ_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    default:
        return kvq_error(KVQ_ERR_FORMAT, "tensor '%s' is %s, expected a float dtype (F32, F16, BF16, F64, F8_E4M3)",
                         t->name, kvq_dtype_name(t->dtype));
    }
    return KVQ_OK;
}

kvq_status kvq_st_read_i32(const kvq_st_tensor *t, size_t start, size_t n, int32_t *dst)
{
    kvq_status s = check_range(t, start, n);
    if (s != KVQ_OK) return s;
    int es = kvq_dtype_size(t->dtype);
    const uint8_t *p = t->data + start * (size_t)es;
    for (size_t i = 0; i < n; i++, p += es) {
        switch (t->dtype) {
        case KVQ_DT_I32: memcpy(&dst[i], p, 4); break;
        case KVQ_DT_I16: { int16_t v; memcpy(&v, p, 2); dst[i] = v; } break;
        case KVQ_DT_I8: dst[i] = (int8_t)p[0]; break;
        case KVQ_DT_U8: case KVQ_DT_BOOL: dst[i] = p[0]; break;
        case KVQ_DT_I64: {
            int64_t v;
            memcpy(&v, p, 8);
            if (v < INT32_MIN || v > INT32_MAX)
                return kvq_error(KVQ_ERR_FORMAT, "tensor '%s': element %zu is %lld, outside the int32 range",
                                 t->name, start + i, (long long)v);
            dst[i] = (int32_t)v;
        } break;
        default:
            return kvq_error(KVQ_ERR_FORMAT, "tensor '%s' is %s, expected an integer dtype", t->name,
                             kvq_dtype_name(t->dtype));
        }
    }
    return KVQ_OK;
}

size_t kvq_scan_nonfinite(const void *p, size_t n, kvq_dtype dt, bool big_endian, bool *is_nan)
{
    const uint8_t *b = p;
    int es = kvq_dtype_size(dt);
    if (!big_endian && (dt == KVQ_DT_F16 || dt == KVQ_DT_BF16)) {   // the common case, kept tight
        uint16_t em = dt == KVQ_DT_F16 ? 0x7c00 : 0x7f80;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, b + 2 * i, 2);
            if ((h & em) == em) {
                *is_nan = (h & ~em & 0x7fff) != 0;
                return i;
            }
        }
        return n;
    }
    for (size_t i = 0; i < n; i++, b += es) {
        uint8_t v[8];
        for (int k = 0; k < es; k++) v[k] = big_endian ? b[es - 1 - k] : b[k];
        uint64_t u = 0;
        for (int k = es - 1; k >= 0; k--) u = (u << 8) | v[k];
        uint64_t em, mm;
        switch (dt) {
        case KVQ_DT_F16: em = 0x7c00; mm = 0x3ff; break;
        case KVQ_DT_BF16: em = 0x7f80; mm = 0x7f; break;
        case KVQ_DT_F32: em = 0x7f800000u; mm = 0x7fffff; break;
        case KVQ_DT_F64: em = 0x7ff0000000000000ull; mm = 0xfffffffffffffull; break;
        case KVQ_DT_F8_E4M3:
            if ((u & 0x7f) == 0x7f) {
                *is_nan = true;
                return i;
            }
            continue;
        default: return n;
        }
        if ((u & em) == em) {
            *is_nan = (u & mm) != 0;
            return i;
        }
    }
    return n;
}
