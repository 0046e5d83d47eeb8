// tok_steps.c — normalizers and pre-tokenizers of tokenizer.json: one row
// per type in a traits table (parse from JSON, run on text). A Sequence is
// flattened into the tokenizer's step list at parse time.
//
// Semantics follow tokenizers.js 0.2.0 (src/core/normalizer/*.ts,
// src/core/preTokenizer/*.ts), e.g. Metaspace does not split on the
// replacement, Split treats every behavior except Removed as Isolated.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>
#include "tok_impl.h"

static char *dup_str(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

// A string member of o; NULL when absent or not a string.
static const char *get_str(json_t *o, const char *key, size_t *len)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return NULL;
    if (len) *len = json_string_length(v);
    return json_string_value(v);
}

static bool get_bool(json_t *o, const char *key, bool def)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

// pattern: {"String": s} or {"Regex": r}. Literal strings leave *re NULL and
// return the string in *lit (malloc'd).
static kvq_status parse_pattern(json_t *o, const char *field, pcre2_code **re, char **lit, size_t *lit_len)
{
    json_t *p = json_object_get(o, "pattern");
    size_t n;
    const char *s;
    *re = NULL;
    *lit = NULL;
    if ((s = get_str(p, "String", &n))) {
        if (!(*lit = dup_str(s, n))) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", field);
        *lit_len = n;
        return KVQ_OK;
    }
    if ((s = get_str(p, "Regex", &n))) return tok_regex_compile(s, n, false, field, re);
    return kvq_error(KVQ_ERR_FORMAT, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", field);
}

// ---- normalizers ----
static kvq_status norm_parse_nfc(json_t *j, const char *field, tok_norm *n)
{
    (void)j, (void)field, (void)n;
    return KVQ_OK;
}

static kvq_status norm_parse_replace(json_t *j, const char *field, tok_norm *n)
{
    kvq_status st = parse_pattern(j, field, &n->re, &n->a, &n->alen);
    if (st) return st;
    const char *c = get_str(j, "content", &n->blen);
    if (!c) return kvq_error(KVQ_ERR_FORMAT, "%s.content: expected a string", field);
    if (!(n->b = dup_str(c, n->blen))) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", field);
    return KVQ_OK;
}

static kvq_status norm_parse_prepend(json_t *j, const char *field, tok_norm *n)
{
    const char *c = get_str(j, "prepend", &n->alen);
    if (!c) return kvq_error(KVQ_ERR_FORMAT, "%s.prepend: expected a string", field);
    if (!(n->a = dup_str(c, n->alen))) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", field);
    return KVQ_OK;
}

static kvq_status norm_run_nfc(const tok_norm *n, pcre2_match_data *md, const char *s, size_t len, tok_buf *out)
{
    (void)n, (void)md;
    size_t i = 0;
    while (i < len && !((unsigned char)s[i] & 0x80)) i++;
    if (i == len) return tok_buf_put(out, s, len);   // ASCII is its own NFC
    utf8proc_uint8_t *d = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &d,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0) return kvq_error(KVQ_ERR_FORMAT, "NFC: %s", utf8proc_errmsg(m));
    kvq_status st = tok_buf_put(out, d, (size_t)m);
    free(d);
    return st;
}

static kvq_status norm_run_replace(const tok_norm *n, pcre2_match_data *md, const char *s, size_t len, tok_buf *out)
{
    return tok_regex_replace(n->re, md, n->a, n->alen, s, len, n->b, n->blen, out);
}

static kvq_status norm_run_prepend(const tok_norm *n, pcre2_match_data *md, const char *s, size_t len, tok_buf *out)
{
    (void)md;
    kvq_status st = tok_buf_put(out, n->a, n->alen);
    return st ? st : tok_buf_put(out, s, len);
}

typedef struct {
    const char *name;
    kvq_status (*parse)(json_t *j, const char *field, tok_norm *n);
    kvq_status (*run)(const tok_norm *n, pcre2_match_data *md, const char *s, size_t len, tok_buf *out);
} tok_norm_traits;

static const tok_norm_traits norm_traits[TOK_NORM_COUNT] = {
    [TOK_NORM_NFC] = {.name = "NFC", .parse = norm_parse_nfc, .run = norm_run_nfc},
    [TOK_NORM_REPLACE] = {.name = "Replace", .parse = norm_parse_replace, .run = norm_run_replace},
    [TOK_NORM_PREPEND] = {.name = "Prepend", .parse = norm_parse_prepend, .run = norm_run_prepend},
};

kvq_status tok_parse_normalizer(kvq_tok *t, json_t *j, const char *field)
{
    if (json_is_null(j) || !j) return KVQ_OK;
    const char *type = get_str(j, "type", NULL);
    if (!type) return kvq_error(KVQ_ERR_FORMAT, "%s.type: expected a string", field);
    if (!strcmp(type, "Sequence")) return tok_parse_sequence(t, j, field, "normalizers", tok_parse_normalizer);
    for (int k = 0; k < TOK_NORM_COUNT; k++) {
        if (strcmp(type, norm_traits[k].name)) continue;
        if (t->n_norm == TOK_MAX_STEPS) return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: more than %d normalizers", field, TOK_MAX_STEPS);
        tok_norm *n = &t->norm[t->n_norm++];
        memset(n, 0, sizeof *n);
        n->type = (tok_norm_type)k;
        return norm_traits[k].parse(j, field, n);
    }
    return kvq_error(KVQ_ERR_UNSUPPORTED, "%s.type \"%s\" is not supported (expected NFC, Replace, Prepend or Sequence)",
                     field, type);
}

kvq_status tok_normalize(const kvq_tok *t, pcre2_match_data *md, const char *s, size_t len, tok_buf *out)
{
    if (t->n_norm == 0) return tok_buf_put(out, s, len);
    tok_buf tmp[2] = {{0}, {0}};
    kvq_status st = KVQ_OK;
    const char *src = s;
    size_t sl = len;
    for (int k = 0; k < t->n_norm && !st; k++) {   // ping-pong between tmp[0] and tmp[1], the last into out
        tok_buf *dst = k == t->n_norm - 1 ? out : &tmp[k & 1];
        if (dst != out) dst->len = 0;
        st = norm_traits[t->norm[k].type].run(&t->norm[k], md, src ? src : "", sl, dst);
        src = dst->p;
        sl = dst->len;
    }
    tok_buf_free(&tmp[0]);
    tok_buf_free(&tmp[1]);
    return st;
}

// ---- pre-tokenizers ----
static kvq_status pre_parse_split(json_t *j, const char *field, tok_pre *p)
{
    kvq_status st = parse_pattern(j, field, &p->re, &p->rep, &p->rep_len);
    if (st) return st;
    const char *beh = get_str(j, "behavior", NULL);
    p->mode = TOK_SPLIT_ISOLATED;
    if (get_bool(j, "invert", false)) p->mode = TOK_SPLIT_MATCHES;
    // JavaScript's String.split keeps a String pattern's separators (it is
    // compiled as a capture group), so only a Regex is removed.
    else if (beh && !strcasecmp(beh, "removed") && p->re) p->mode = TOK_SPLIT_REMOVED;
    return KVQ_OK;
}

static kvq_status pre_parse_bytelevel(json_t *j, const char *field, tok_pre *p)
{
    (void)field;
    p->add_prefix_space = get_bool(j, "add_prefix_space", false);
    if (get_bool(j, "use_regex", true)) return tok_regex_builtin(TOK_PRE_BYTELEVEL, false, &p->re);
    return KVQ_OK;
}

static kvq_status pre_parse_metaspace(json_t *j, const char *field, tok_pre *p)
{
    size_t n = 0;
    const char *r = get_str(j, "replacement", &n);
    if (!r) r = "\xe2\x96\x81", n = 3;   // U+2581
    if (!(p->rep = dup_str(r, n))) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", field);
    p->rep_len = n;
    const char *sch = get_str(j, "prepend_scheme", NULL);
    p->prepend = !sch || !strcmp(sch, "always") ? 1 : !strcmp(sch, "first") ? 2 : 0;
    return KVQ_OK;
}

static kvq_status pre_parse_digits(json_t *j, const char *field, tok_pre *p)
{
    (void)field;
    return tok_regex_builtin(TOK_PRE_DIGITS, get_bool(j, "individual_digits", false), &p->re);
}

static kvq_status pre_run_split(const tok_pre *p, pcre2_match_data *md, tok_buf *buf, tok_span s, int section,
                                tok_pieces *out)
{
    (void)section;
    return tok_split_any(p->re, md, p->rep, p->rep_len, buf, s.off, s.len, p->mode, out);
}

static kvq_status pre_run_bytelevel(const tok_pre *p, pcre2_match_data *md, tok_buf *buf, tok_span s, int section,
                                    tok_pieces *out)
{
    (void)section;
    kvq_status st;
    if (p->add_prefix_space && (s.len == 0 || buf->p[s.off] != ' ')) {
        size_t off = buf->len;
        if ((st = tok_buf_put(buf, " ", 1)) || (st = tok_buf_put(buf, buf->p + s.off, s.len))) return st;
        s = (tok_span){(uint32_t)off, s.len + 1};
    }
    if (!p->re) return tok_pieces_add(out, s.off, s.len);
    return tok_split_any(p->re, md, NULL, 0, buf, s.off, s.len, TOK_SPLIT_MATCHES, out);
}

static kvq_status pre_run_metaspace(const tok_pre *p, pcre2_match_data *md, tok_buf *buf, tok_span s, int section,
                                    tok_pieces *out)
{
    (void)md;
    kvq_status st;
    tok_buf t = {0};
    if ((st = tok_regex_replace(NULL, NULL, " ", 1, buf->p + s.off, s.len, p->rep, p->rep_len, &t))) goto out;
    bool starts = t.len >= p->rep_len && !memcmp(t.p, p->rep, p->rep_len);
    size_t off = buf->len;
    if (!starts && (p->prepend == 1 || (p->prepend == 2 && section == 0)) &&
        (st = tok_buf_put(buf, p->rep, p->rep_len)))
        goto out;
    if ((st = tok_buf_put(buf, t.p, t.len))) goto out;
    st = tok_pieces_add(out, off, buf->len - off);
out:
    tok_buf_free(&t);
    return st;
}

static kvq_status pre_run_digits(const tok_pre *p, pcre2_match_data *md, tok_buf *buf, tok_span s, int section,
                                 tok_pieces *out)
{
    (void)section;
    return tok_split_any(p->re, md, NULL, 0, buf, s.off, s.len, TOK_SPLIT_MATCHES, out);
}

typedef struct {
    const char *name;
    kvq_status (*parse)(json_t *j, const char *field, tok_pre *p);
    // One piece s of buf in, pieces out (may append new text to buf).
    kvq_status (*run)(const tok_pre *p, pcre2_match_data *md, tok_buf *buf, tok_span s, int section, tok_pieces *out);
} tok_pre_traits;

static const tok_pre_traits pre_traits[TOK_PRE_COUNT] = {
    [TOK_PRE_SPLIT] = {.name = "Split", .parse = pre_parse_split, .run = pre_run_split},
    [TOK_PRE_BYTELEVEL] = {.name = "ByteLevel", .parse = pre_parse_bytelevel, .run = pre_run_bytelevel},
    [TOK_PRE_METASPACE] = {.name = "Metaspace", .parse = pre_parse_metaspace, .run = pre_run_metaspace},
    [TOK_PRE_DIGITS] = {.name = "Digits", .parse = pre_parse_digits, .run = pre_run_digits},
};

kvq_status tok_parse_pre_tokenizer(kvq_tok *t, json_t *j, const char *field)
{
    if (json_is_null(j) || !j) return KVQ_OK;
    const char *type = get_str(j, "type", NULL);
    if (!type) return kvq_error(KVQ_ERR_FORMAT, "%s.type: expected a string", field);
    if (!strcmp(type, "Sequence")) return tok_parse_sequence(t, j, field, "pretokenizers", tok_parse_pre_tokenizer);
    for (int k = 0; k < TOK_PRE_COUNT; k++) {
        if (strcmp(type, pre_traits[k].name)) continue;
        if (t->n_pre == TOK_MAX_STEPS)
            return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizers", field, TOK_MAX_STEPS);
        // The model reads ByteLevel's output as raw bytes, so nothing may come after it.
        if (t->byte_level)
            return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: a pre-tokenizer after ByteLevel is not supported", field);
        tok_pre *p = &t->pre[t->n_pre++];
        memset(p, 0, sizeof *p);
        p->type = (tok_pre_type)k;
        if (k == TOK_PRE_BYTELEVEL) t->byte_level = true;
        return pre_traits[k].parse(j, field, p);
    }
    return kvq_error(KVQ_ERR_UNSUPPORTED,
                     "%s.type \"%s\" is not supported (expected Split, ByteLevel, Metaspace, Digits or Sequence)", field,
                     type);
}

kvq_status tok_pre_tokenize(const kvq_tok *t, pcre2_match_data *md, tok_buf *buf, size_t off, size_t len, int section,
                            tok_pieces *out, tok_pieces *scratch)
{
    kvq_status st;
    out->n = 0;
    if ((st = tok_pieces_add(out, off, len))) return st;
    for (int k = 0; k < t->n_pre; k++) {
        tok_pieces in = *out;
        *out = *scratch;
        out->n = 0;
        for (int i = 0; i < in.n; i++)
            if ((st = pre_traits[t->pre[k].type].run(&t->pre[k], md, buf, in.v[i], section, out))) {
                *scratch = in;
                return st;
            }
        *scratch = in;
    }
    return KVQ_OK;
}

void tok_steps_free(kvq_tok *t)
{
    for (int k = 0; k < t->n_norm; k++) {
        free(t->norm[k].a);
        free(t->norm[k].b);
        pcre2_code_free(t->norm[k].re);
    }
    for (int k = 0; k < t->n_pre; k++) {
        free(t->pre[k].rep);
        pcre2_code_free(t->pre[k].re);
    }
    t->n_norm = t->n_pre = 0;
}
