// tok_util.c — byte buffers, piece lists, the vocabulary hash, UTF-8 checks.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tok_impl.h"

kvq_status tok_buf_put(tok_buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        // s may point into b itself (a piece copied to the end): re-derive it after realloc
        bool inside = b->p && (const char *)s >= b->p && (const char *)s < b->p + b->cap;
        size_t at = inside ? (size_t)((const char *)s - b->p) : 0;
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", cap);
        b->p = p;
        b->cap = cap;
        if (inside) s = p + at;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return KVQ_OK;
}

void tok_buf_free(tok_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

kvq_status tok_pieces_add(tok_pieces *p, size_t off, size_t len)
{
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        tok_span *v = realloc(p->v, sizeof *v * (size_t)cap);
        if (!v) return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (%d pieces)", cap);
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (tok_span){(uint32_t)off, (uint32_t)len};
    return KVQ_OK;
}

// FNV-1a, then a final mix so that the low bits used as slot index spread.
uint64_t tok_hash(const void *s, size_t n)
{
    const unsigned char *p = s;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

int32_t tok_vocab_find(const tok_vocab *v, const char *s, size_t n)
{
    if (!v->slot) return -1;
    for (uint32_t i = (uint32_t)tok_hash(s, n) & v->mask;; i = (i + 1) & v->mask) {
        int32_t id = v->slot[i];
        if (id < 0) return -1;
        const tok_span *t = &v->str[id];
        if (t->len == n && !memcmp(v->pool.p + t->off, s, n)) return id;
    }
}

static kvq_status vocab_grow(tok_vocab *v)
{
    uint32_t cap = v->slot ? (v->mask + 1) * 2 : 1u << 16;
    int32_t *slot = malloc(sizeof *slot * cap);
    if (!slot) return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (vocabulary hash)");
    memset(slot, 0xff, sizeof *slot * cap);
    uint32_t mask = cap - 1;
    if (v->slot)
        for (uint32_t i = 0; i <= v->mask; i++) {
            int32_t id = v->slot[i];
            if (id < 0) continue;
            uint32_t j = (uint32_t)tok_hash(v->pool.p + v->str[id].off, v->str[id].len) & mask;
            while (slot[j] >= 0) j = (j + 1) & mask;
            slot[j] = id;
        }
    free(v->slot);
    v->slot = slot;
    v->mask = mask;
    return KVQ_OK;
}

kvq_status tok_vocab_set(tok_vocab *v, const char *s, size_t n, int32_t id)
{
    kvq_status st;
    if (id < 0 || id >= (1 << 26)) return kvq_error(KVQ_ERR_FORMAT, "token id %d out of range (0..2^26)", id);
    if (n == 0) return kvq_error(KVQ_ERR_FORMAT, "empty token string for id %d", id);
    if (id >= v->n_ids) {
        int cap = v->n_ids ? v->n_ids : 1024;
        while (cap <= id) cap *= 2;
        tok_span *str = realloc(v->str, sizeof *str * (size_t)cap);
        if (!str) return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (vocabulary)");
        memset(str + v->n_ids, 0, sizeof *str * (size_t)(cap - v->n_ids));
        v->str = str;
        v->n_ids = cap;   // trimmed to the largest id + 1 by the loader
    }
    int32_t old = tok_vocab_find(v, s, n);
    if (old == id) return KVQ_OK;
    if (v->str[id].len)
        return kvq_error(KVQ_ERR_FORMAT, "id %d is given to two different tokens", id);
    if (old >= 0) {   // the string moves to id (tokenizers.js: Map.set); old keeps its text for decode
        for (uint32_t i = (uint32_t)tok_hash(s, n) & v->mask;; i = (i + 1) & v->mask)
            if (v->slot[i] == old) {
                v->slot[i] = id;
                break;
            }
        v->str[id] = v->str[old];
        return KVQ_OK;
    }
    if (!v->slot || (v->used + 1) * 2 > v->mask + 1)
        if ((st = vocab_grow(v))) return st;
    size_t off = v->pool.len;
    if ((st = tok_buf_put(&v->pool, s, n))) return st;
    v->str[id] = (tok_span){(uint32_t)off, (uint32_t)n};
    uint32_t j = (uint32_t)tok_hash(s, n) & v->mask;
    while (v->slot[j] >= 0) j = (j + 1) & v->mask;
    v->slot[j] = id;
    v->used++;
    return KVQ_OK;
}

void tok_vocab_free(tok_vocab *v)
{
    tok_buf_free(&v->pool);
    free(v->str);
    free(v->slot);
    memset(v, 0, sizeof *v);
}

int tok_utf8_len(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned c = s[0];
    int need;
    unsigned lo = 0x80, hi = 0xbf;
    *bad = 1;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else return 0;
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n) return 0;
        unsigned d = s[k];
        if (d < lo || d > hi) return 0;
        lo = 0x80, hi = 0xbf;
        *bad = (size_t)k + 1;
    }
    return need + 1;
}

kvq_status tok_utf8_sanitize(const char *s, size_t n, tok_buf *out)
{
    kvq_status st;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t bad;
        int l = tok_utf8_len(u + i, n - i, &bad);
        if (l) {
            i += (size_t)l;
            continue;
        }
        if ((st = tok_buf_put(out, s + run, i - run)) || (st = tok_buf_put(out, "\xef\xbf\xbd", 3))) return st;
        i += bad < n - i ? bad : n - i;
        run = i;
    }
    return tok_buf_put(out, s + run, n - run);
}

int tok_utf8_put(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 63));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63));
    o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

uint32_t tok_utf8_get(const unsigned char *s, int len)
{
    if (len == 1) return s[0];
    uint32_t cp = s[0] & (0x7f >> len);
    for (int i = 1; i < len; i++) cp = cp << 6 | (s[i] & 63);
    return cp;
}

kvq_status tok_parse_sequence(kvq_tok *t, json_t *j, const char *field, const char *key, tok_step_parse_fn parse)
{
    json_t *a = json_object_get(j, key);
    if (!json_is_array(a)) return kvq_error(KVQ_ERR_FORMAT, "%s.%s: expected an array", field, key);
    for (size_t i = 0; i < json_array_size(a); i++) {
        char f[256];
        snprintf(f, sizeof f, "%s.%s[%zu]", field, key, i);
        kvq_status st = parse(t, json_array_get(a, i), f);
        if (st) return st;
    }
    return KVQ_OK;
}
