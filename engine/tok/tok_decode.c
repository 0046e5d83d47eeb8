// tok_decode.c — ids back to text through tokenizer.json's decoder chain
// (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence), one
// token at a time so that generate can stream. Added tokens are printed as
// their content, as tokenizers.js's decoders pass them through.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tok_impl.h"

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n), d[n] = 0;
    return d;
}

kvq_status tok_parse_decoder(kvq_tok *t, json_t *j, const char *field)
{
    if (!j || json_is_null(j)) return KVQ_OK;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return kvq_error(KVQ_ERR_FORMAT, "%s.type: expected a string", field);
    if (!strcmp(type, "Sequence")) return tok_parse_sequence(t, j, field, "decoders", tok_parse_decoder);
    static const char *const names[] = {[TOK_DEC_BYTELEVEL] = "ByteLevel", [TOK_DEC_REPLACE] = "Replace",
                                        [TOK_DEC_BYTEFALLBACK] = "ByteFallback", [TOK_DEC_FUSE] = "Fuse",
                                        [TOK_DEC_STRIP] = "Strip", [TOK_DEC_METASPACE] = "Metaspace"};
    int k = 0;
    while (k <= TOK_DEC_METASPACE && strcmp(type, names[k])) k++;
    if (k > TOK_DEC_METASPACE)
        return kvq_error(KVQ_ERR_UNSUPPORTED,
                         "%s.type \"%s\" is not supported (expected ByteLevel, Replace, ByteFallback, Fuse, Strip, "
                         "Metaspace or Sequence)", field, type);
    if (t->n_dec == TOK_MAX_STEPS) return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: more than %d decoders", field, TOK_MAX_STEPS);
    tok_dec *d = &t->dec[t->n_dec++];
    memset(d, 0, sizeof *d);
    d->type = (tok_dec_type)k;
    json_t *v;
    if (k == TOK_DEC_REPLACE) {
        json_t *p = json_object_get(json_object_get(j, "pattern"), "String");
        v = json_object_get(j, "content");
        if (!json_is_string(p) || !json_is_string(v))
            return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: expected pattern.String and content strings", field);
        d->a = dup_n(json_string_value(p), d->alen = json_string_length(p));
        d->b = dup_n(json_string_value(v), d->blen = json_string_length(v));
    } else if (k == TOK_DEC_STRIP) {
        v = json_object_get(j, "content");
        d->a = dup_n(json_is_string(v) ? json_string_value(v) : " ", d->alen = json_is_string(v) ? json_string_length(v) : 1);
        d->start = (int)json_integer_value(json_object_get(j, "start"));
        d->stop = (int)json_integer_value(json_object_get(j, "stop"));
    } else if (k == TOK_DEC_METASPACE) {
        v = json_object_get(j, "replacement");
        d->a = dup_n(json_is_string(v) ? json_string_value(v) : "\xe2\x96\x81",
                     d->alen = json_is_string(v) ? json_string_length(v) : 3);
        const char *sch = json_string_value(json_object_get(j, "prepend_scheme"));
        d->start = !sch || strcmp(sch, "never");   // strip the first leading space
    }
    if ((d->type == TOK_DEC_REPLACE && (!d->a || !d->b)) || ((d->type == TOK_DEC_STRIP || d->type == TOK_DEC_METASPACE) && !d->a))
        return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", field);
    return KVQ_OK;
}

void tok_decoder_free(kvq_tok *t)
{
    for (int k = 0; k < t->n_dec; k++) free(t->dec[k].a), free(t->dec[k].b);
    t->n_dec = 0;
}

static kvq_status step(const kvq_tok *t, const tok_dec *d, bool first, bool fused, const tok_buf *in, tok_buf *out)
{
    kvq_status st = KVQ_OK;
    const char *s = in->p ? in->p : "";
    size_t n = in->len;
    switch (d->type) {
    case TOK_DEC_BYTELEVEL:
        for (size_t i = 0; i < n && !st;) {
            size_t bad;
            int l = tok_utf8_len((const unsigned char *)s + i, n - i, &bad);
            uint32_t cp = l ? tok_utf8_get((const unsigned char *)s + i, l) : 0xfffd;
            i += l ? (size_t)l : bad;
            if (cp < sizeof t->unicode_byte && (cp == t->byte_chr[t->unicode_byte[cp]]))
                st = tok_buf_put(out, &t->unicode_byte[cp], 1);
        }
        return st;
    case TOK_DEC_REPLACE:
        return tok_regex_replace(NULL, NULL, d->a, d->alen, s, n, d->b, d->blen, out);
    case TOK_DEC_BYTEFALLBACK:
        if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
            char hex[3] = {s[3], s[4], 0}, *e;
            long b = strtol(hex, &e, 16);
            if (!*e) {
                unsigned char c = (unsigned char)b;
                return tok_buf_put(out, &c, 1);
            }
        }
        return tok_buf_put(out, s, n);
    case TOK_DEC_STRIP:
    case TOK_DEC_METASPACE: {
        tok_buf tmp = {0};
        if (d->type == TOK_DEC_METASPACE) {
            if ((st = tok_regex_replace(NULL, NULL, d->a, d->alen, s, n, " ", 1, &tmp))) return st;
            s = tmp.p, n = tmp.len;
        }
        const char *c = d->type == TOK_DEC_STRIP ? d->a : " ";
        size_t cl = d->type == TOK_DEC_STRIP ? d->alen : 1;
        // After a Fuse the chain sees one string: strip only at the start of the text.
        if (first || !fused)
            for (int i = 0; i < d->start && n >= cl && !memcmp(s, c, cl); i++) s += cl, n -= cl;
        if (d->type == TOK_DEC_STRIP && !fused)
            for (int i = 0; i < d->stop && n >= cl && !memcmp(s + n - cl, c, cl); i++) n -= cl;
        st = tok_buf_put(out, s, n);
        tok_buf_free(&tmp);
        return st;
    }
    case TOK_DEC_FUSE:
        return tok_buf_put(out, s, n);
    }
    return KVQ_OK;
}

static kvq_status piece(const kvq_tok *t, int32_t id, bool first, tok_buf *out)
{
    size_t len;
    const char *s = kvq_tok_token(t, id, &len);
    if (!s) return kvq_error(KVQ_ERR_ARG, "decode: id %d is outside the vocabulary (0..%d)", id, t->vocab.n_ids - 1);
    if (t->n_dec == 0 || t->is_added[id]) return tok_buf_put(out, s, len);
    tok_buf a = {0}, b = {0};
    kvq_status st = tok_buf_put(&a, s, len);
    bool fused = false;
    for (int k = 0; k < t->n_dec && !st; k++) {
        b.len = 0;
        st = step(t, &t->dec[k], first, fused, &a, &b);
        fused |= t->dec[k].type == TOK_DEC_FUSE;
        tok_buf sw = a;
        a = b;
        b = sw;
    }
    if (!st) st = tok_buf_put(out, a.p, a.len);
    tok_buf_free(&a);
    tok_buf_free(&b);
    return st;
}

size_t kvq_tok_piece(const kvq_tok *t, int32_t id, bool first, char *buf, size_t cap)
{
    tok_buf o = {0};
    if (piece(t, id, first, &o)) {
        tok_buf_free(&o);
        return 0;
    }
    size_t n = o.len;
    if (cap) {
        size_t c = n < cap ? n : cap;
        memcpy(buf, o.p ? o.p : "", c);
    }
    tok_buf_free(&o);
    return n;
}

kvq_status kvq_tok_decode(const kvq_tok *t, const int32_t *ids, int n, char **text, size_t *len)
{
    tok_buf o = {0};
    kvq_status st = tok_buf_put(&o, "", 0);
    for (int i = 0; i < n && !st; i++) st = piece(t, ids[i], i == 0, &o);
    if (st) {
        tok_buf_free(&o);
        *text = NULL;
        *len = 0;
        return st;
    }
    *text = o.p;
    *len = o.len;
    return KVQ_OK;
}
