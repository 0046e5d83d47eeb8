// tok_encode.c — added-token tries and the encode pipeline (sections, normalizer,
// pre-tokenizer, BPE, fuse_unk, template), in tokenizers.js's order
// (src/core/Tokenizer.ts encode_text, 0.2.0).
#include <stdlib.h>
#include <string.h>
#include "tok_impl.h"

kvq_status tok_trie_add(tok_trie *tr, const char *s, size_t n, int32_t payload);

static kvq_status trie_node(tok_trie *tr, uint8_t c, int32_t *out)
{
    if (tr->n == tr->cap) {
        int cap = tr->cap ? tr->cap * 2 : 256;
        tok_trie_node *v = realloc(tr->node, sizeof *v * (size_t)cap);
        if (!v) return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (added tokens)");
        tr->node = v;
        tr->cap = cap;
    }
    tr->node[tr->n] = (tok_trie_node){.child = -1, .sibling = -1, .id = -1, .c = c};
    *out = tr->n++;
    return KVQ_OK;
}

kvq_status tok_trie_add(tok_trie *tr, const char *s, size_t n, int32_t payload)
{
    kvq_status st;
    int32_t cur;
    if (!tr->n && (st = trie_node(tr, 0, &cur))) return st;
    cur = 0;
    tr->first[(uint8_t)s[0] >> 3] |= (uint8_t)(1u << ((uint8_t)s[0] & 7));
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        int32_t k = tr->node[cur].child;
        while (k >= 0 && tr->node[k].c != c) k = tr->node[k].sibling;
        if (k < 0) {
            if ((st = trie_node(tr, c, &k))) return st;
            tr->node[k].sibling = tr->node[cur].child;
            tr->node[cur].child = k;
        }
        cur = k;
    }
    if (tr->node[cur].id < 0) tr->node[cur].id = payload;   // first listed wins on duplicates
    return KVQ_OK;
}

// Longest added token starting at s: its length, payload in *payload; 0 when none.
static size_t trie_match(const tok_trie *tr, const char *s, size_t n, int32_t *payload)
{
    if (!tr->n || !(tr->first[(uint8_t)s[0] >> 3] & (1u << ((uint8_t)s[0] & 7)))) return 0;
    size_t best = 0;
    int32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t k = tr->node[cur].child;
        while (k >= 0 && tr->node[k].c != (uint8_t)s[i]) k = tr->node[k].sibling;
        if (k < 0) break;
        cur = k;
        if (tr->node[cur].id >= 0) {
            best = i + 1;
            *payload = tr->node[cur].id;
        }
    }
    return best;
}

typedef struct { size_t off, len; int32_t added; } tok_section;   // added: payload, -1 for text
typedef struct { tok_section *v; int n, cap; } tok_sections;

static kvq_status sections_add(tok_sections *s, size_t off, size_t len, int32_t added)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        tok_section *v = realloc(s->v, sizeof *v * (size_t)cap);
        if (!v) return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (sections)");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (tok_section){off, len, added};
    return KVQ_OK;
}

// JavaScript's trim set (WhiteSpace and LineTerminator) at s (length n): bytes of one such character, or 0.
static int js_space(const unsigned char *s, size_t n)
{
    if (*s == ' ' || (*s >= 9 && *s <= 13)) return 1;
    if (n >= 2 && s[0] == 0xc2 && s[1] == 0xa0) return 2;
    if (n < 3) return 0;
    uint32_t cp = tok_utf8_get(s, 3);
    if (s[0] < 0xe0 || s[0] > 0xef) return 0;
    return cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
                   cp == 0x205f || cp == 0x3000 || cp == 0xfeff ? 3 : 0;
}

static void trim_end(const char *b, tok_section *s)
{
    while (s->len) {   // step back to the start of the last character
        size_t k = s->len - 1;
        while (k > 0 && ((unsigned char)b[s->off + k] & 0xc0) == 0x80) k--;
        if (js_space((const unsigned char *)b + s->off + k, s->len - k) != (int)(s->len - k)) break;
        s->len = k;
    }
}

static void trim_start(const char *b, tok_section *s)
{
    int l;
    while (s->len && (l = js_space((const unsigned char *)b + s->off, s->len)) > 0) s->off += (size_t)l, s->len -= (size_t)l;
}

// Cut text into sections of plain text and added tokens (longest match, left
// to right), then apply the tokens' lstrip/rstrip to their neighbours.
static kvq_status split_added(const kvq_tok *t, const tok_trie *tr, const char *b, size_t off, size_t len,
                              tok_sections *out)
{
    kvq_status st;
    out->n = 0;
    size_t start = off, i = off, end = off + len;
    while (i < end) {
        int32_t pl;
        size_t m = trie_match(tr, b + i, end - i, &pl);
        if (!m) {
            i++;
            continue;
        }
        if (i > start && (st = sections_add(out, start, i - start, -1))) return st;
        if ((st = sections_add(out, i, m, pl))) return st;
        i += m;
        start = i;
    }
    if (start < end && (st = sections_add(out, start, end - start, -1))) return st;
    for (int k = 0; k < out->n; k++) {
        if (out->v[k].added < 0) continue;
        const tok_added *a = &t->added[out->v[k].added];
        if (a->lstrip && k > 0 && out->v[k - 1].added < 0) trim_end(b, &out->v[k - 1]);
        if (a->rstrip && k + 1 < out->n && out->v[k + 1].added < 0) trim_start(b, &out->v[k + 1]);
    }
    return KVQ_OK;
}

typedef struct {
    int32_t *ids;
    int n, cap;
    tok_buf norm, work;
    tok_pieces pieces, scratch;
    tok_sections sub;
} tok_state;

static kvq_status push(tok_state *w, int32_t id)
{
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 256;
        int32_t *p = realloc(w->ids, sizeof *p * (size_t)cap);
        if (!p) return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (%d ids)", cap);
        w->ids = p;
        w->cap = cap;
    }
    w->ids[w->n++] = id;
    return KVQ_OK;
}

// One subsection of normalized text: pre-tokenize, BPE each piece, fuse unknowns.
static kvq_status encode_plain(kvq_tok *t, tok_state *w, const char *s, size_t len, int section)
{
    kvq_status st;
    w->work.len = 0;
    if ((st = tok_buf_put(&w->work, s, len))) return st;
    if ((st = tok_pre_tokenize(t, t->md, &w->work, 0, len, section, &w->pieces, &w->scratch))) return st;
    int n0 = w->n;
    for (int i = 0; i < w->pieces.n; i++)
        if ((st = tok_bpe_piece(t, w->work.p + w->pieces.v[i].off, w->pieces.v[i].len, &w->ids, &w->n, &w->cap)))
            return st;
    if (t->fuse_unk && t->unk >= 0) {   // runs of unknowns become one
        int o = n0;
        for (int i = n0; i < w->n; i++)
            if (!(w->ids[i] == t->unk && o > n0 && w->ids[o - 1] == t->unk)) w->ids[o++] = w->ids[i];
        w->n = o;
    }
    return KVQ_OK;
}

kvq_status kvq_tok_encode(kvq_tok *t, const char *text, size_t len, bool add_special, int32_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    if (len > (1u << 30)) return kvq_error(KVQ_ERR_ARG, "tokenizer: text of %zu bytes (max 2^30)", len);
    tok_state w = {0};
    tok_buf src = {0};
    tok_sections sec = {0};
    kvq_status st;
    if ((st = tok_utf8_sanitize(text ? text : "", len, &src))) goto out;
    if (add_special)
        for (int i = 0; i < t->n_post_pre; i++)
            if ((st = push(&w, t->post_pre[i]))) goto out;
    if ((st = split_added(t, &t->raw_trie, src.p, 0, src.len, &sec))) goto out;
    for (int k = 0; k < sec.n; k++) {
        tok_section *s = &sec.v[k];
        if (s->added >= 0) {
            if ((st = push(&w, t->added[s->added].id))) goto out;
            continue;
        }
        if (!s->len) continue;
        w.norm.len = 0;
        if ((st = tok_normalize(t, t->md, src.p + s->off, s->len, &w.norm))) goto out;
        if (!w.norm.len) continue;
        if ((st = split_added(t, &t->norm_trie, w.norm.p, 0, w.norm.len, &w.sub))) goto out;
        for (int j = 0; j < w.sub.n; j++) {
            tok_section *u = &w.sub.v[j];
            if (u->added >= 0) st = push(&w, t->added[u->added].id);
            else if (u->len) st = encode_plain(t, &w, w.norm.p + u->off, u->len, k);
            if (st) goto out;
        }
    }
    if (add_special)
        for (int i = 0; i < t->n_post_post; i++)
            if ((st = push(&w, t->post_post[i]))) goto out;
    *ids = w.ids;
    *n = w.n;
    w.ids = NULL;
out:
    free(w.ids);
    tok_buf_free(&w.norm);
    tok_buf_free(&w.work);
    free(w.pieces.v);
    free(w.scratch.v);
    free(w.sub.v);
    free(sec.v);
    tok_buf_free(&src);
    return st;
}
