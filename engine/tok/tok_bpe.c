// tok_bpe.c — the BPE model: merge ranks in a hash keyed by the id pair,
// a linked list of symbols with a binary heap of candidate merges (lowest
// rank first, leftmost on ties: O(n log n) in the piece length), byte
// fallback, and a cache of pieces already seen.
//
// Tie order and unknown-symbol handling follow tokenizers.js 0.2.0
// (src/core/tokenizerModelImplementations/BPE.ts: score = rank + position
// fraction, "<0xXX>" byte tokens, unk_token only when set).
#include <stdlib.h>
#include <string.h>
#include "tok_impl.h"

#define EMPTY_KEY UINT64_MAX
#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_PIECE 256   // longer pieces are not cached (as tokenizers.js)

static kvq_status merges_grow(tok_merges *m)
{
    uint32_t cap = m->key ? (m->mask + 1) * 2 : 1u << 16;
    uint64_t *key = malloc(sizeof *key * cap);
    uint32_t *rank = malloc(sizeof *rank * cap);
    int32_t *merged = malloc(sizeof *merged * cap);
    if (!key || !rank || !merged) {
        free(key), free(rank), free(merged);
        return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (merges)");
    }
    memset(key, 0xff, sizeof *key * cap);
    uint32_t mask = cap - 1;
    if (m->key)
        for (uint32_t i = 0; i <= m->mask; i++) {
            if (m->key[i] == EMPTY_KEY) continue;
            uint32_t j = (uint32_t)tok_hash(&m->key[i], 8) & mask;
            while (key[j] != EMPTY_KEY) j = (j + 1) & mask;
            key[j] = m->key[i], rank[j] = m->rank[i], merged[j] = m->merged[i];
        }
    free(m->key), free(m->rank), free(m->merged);
    m->key = key, m->rank = rank, m->merged = merged, m->mask = mask;
    return KVQ_OK;
}

static inline uint32_t merges_slot(const tok_merges *m, uint64_t k)
{
    uint32_t i = (uint32_t)tok_hash(&k, 8) & m->mask;
    while (m->key[i] != EMPTY_KEY && m->key[i] != k) i = (i + 1) & m->mask;
    return i;
}

kvq_status tok_merges_add(tok_merges *m, int32_t left, int32_t right, uint32_t rank, int32_t merged)
{
    kvq_status st;
    if ((!m->key || (uint32_t)(m->n + 1) * 2 > m->mask + 1) && (st = merges_grow(m))) return st;
    uint64_t k = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t i = merges_slot(m, k);
    if (m->key[i] == EMPTY_KEY) m->n++;
    // A repeated pair keeps the later rank, as a JavaScript Map built from the list does.
    m->key[i] = k, m->rank[i] = rank, m->merged[i] = merged;
    return KVQ_OK;
}

void tok_merges_free(tok_merges *m)
{
    free(m->key), free(m->rank), free(m->merged);
    memset(m, 0, sizeof *m);
}

void tok_cache_free(tok_cache *c)
{
    free(c->e);
    tok_buf_free(&c->keys);
    tok_buf_free(&c->ids);
    memset(c, 0, sizeof *c);
}

static void cache_clear(tok_cache *c)
{
    for (uint32_t i = 0; i <= c->mask; i++) c->e[i].key_len = UINT32_MAX;
    c->used = 0;
    c->keys.len = c->ids.len = 0;
}

static kvq_status push_id(int32_t id, int32_t **out, int *n, int *cap)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 256;
        int32_t *p = realloc(*out, sizeof *p * (size_t)nc);
        if (!p) return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (%d ids)", nc);
        *out = p;
        *cap = nc;
    }
    (*out)[(*n)++] = id;
    return KVQ_OK;
}

static bool cand_less(const tok_cand *a, const tok_cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static void heap_push(tok_cand *h, int *n, tok_cand c)
{
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static tok_cand heap_pop(tok_cand *h, int *n)
{
    tok_cand top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void try_pair(const kvq_tok *t, const tok_sym *sym, int l, tok_cand *heap, int *nh)
{
    int r = sym[l].next;
    if (r < 0 || sym[l].id < 0 || sym[r].id < 0 || !t->merges.n) return;   // no merges: no table either
    uint64_t k = (uint64_t)(uint32_t)sym[l].id << 32 | (uint32_t)sym[r].id;
    uint32_t i = merges_slot(&t->merges, k);
    if (t->merges.key[i] == EMPTY_KEY) return;
    heap_push(heap, nh, (tok_cand){t->merges.rank[i], l, r, sym[l].len + sym[r].len});
}

// The piece as the vocabulary spells it (byte-level: each byte's stand-in).
static kvq_status spelled(const kvq_tok *t, const char *s, size_t len, tok_buf *o)
{
    if (!t->byte_level) return tok_buf_put(o, s, len);
    kvq_status st;
    for (size_t i = 0; i < len; i++) {
        char b[4];
        int l = tok_utf8_put(t->byte_chr[(unsigned char)s[i]], b);
        if ((st = tok_buf_put(o, b, (size_t)l))) return st;
    }
    return KVQ_OK;
}

static kvq_status bpe_run(kvq_tok *t, const char *s, size_t len, int32_t **out, int *n, int *cap)
{
    kvq_status st;
    if ((size_t)t->sym_cap < len) {   // at most one symbol per byte
        int nc = (int)len + 64;
        tok_sym *sy = realloc(t->sym, sizeof *sy * (size_t)nc);
        tok_cand *hp = sy ? realloc(t->heap, sizeof *hp * (size_t)nc * 3) : NULL;
        if (sy) t->sym = sy;
        if (hp) t->heap = hp;
        if (!sy || !hp) return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (piece of %zu bytes)", len);
        t->sym_cap = nc;
        t->heap_cap = nc * 3;
    }
    tok_sym *sym = t->sym;
    int ns = 0;
    for (size_t i = 0; i < len;) {
        size_t l = 1, bad;
        int32_t id;
        if (t->byte_level) {
            id = t->byte_id[(unsigned char)s[i]];
        } else {
            int u = tok_utf8_len((const unsigned char *)s + i, len - i, &bad);
            l = u ? (size_t)u : bad;   // text is sanitized: u is never 0 here
            id = tok_vocab_find(&t->vocab, s + i, l);
        }
        sym[ns] = (tok_sym){id, ns - 1, -1, (uint32_t)i, (uint32_t)l};
        if (ns) sym[ns - 1].next = ns;
        ns++;
        i += l;
    }
    // ns - 1 first candidates, at most two more per merge (ns - 1 merges): the heap holds < 3 len.
    int nh = 0;
    for (int i = 0; i + 1 < ns; i++) try_pair(t, sym, i, t->heap, &nh);
    while (nh) {
        tok_cand c = heap_pop(t->heap, &nh);
        tok_sym *L = &sym[c.left], *R = &sym[c.right];
        if (!L->len || !R->len || L->next != c.right || L->len + R->len != c.size) continue;   // stale
        uint64_t k = (uint64_t)(uint32_t)L->id << 32 | (uint32_t)R->id;
        L->id = t->merges.merged[merges_slot(&t->merges, k)];
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) sym[R->next].prev = c.left;
        if (L->prev >= 0) try_pair(t, sym, L->prev, t->heap, &nh);
        try_pair(t, sym, c.left, t->heap, &nh);
    }
    for (int i = 0; i >= 0 && i < ns; i = sym[i].next) {
        if (sym[i].id >= 0) {
            if ((st = push_id(sym[i].id, out, n, cap))) return st;
            continue;
        }
        bool all = t->byte_fallback;
        for (uint32_t b = 0; all && b < sym[i].len; b++) all = t->fallback_id[(unsigned char)s[sym[i].off + b]] >= 0;
        if (all) {
            for (uint32_t b = 0; b < sym[i].len; b++)
                if ((st = push_id(t->fallback_id[(unsigned char)s[sym[i].off + b]], out, n, cap))) return st;
        } else if (t->unk >= 0 && (st = push_id(t->unk, out, n, cap))) {
            return st;
        }
    }
    return KVQ_OK;
}

kvq_status tok_bpe_piece(kvq_tok *t, const char *s, size_t len, int32_t **out, int *n, int *cap)
{
    kvq_status st;
    if (len == 0) return KVQ_OK;
    tok_cache *c = &t->cache;
    uint64_t h = 0;
    uint32_t slot = 0;
    bool cacheable = len < CACHE_MAX_PIECE;
    if (cacheable) {
        if (!c->e) {
            if (!(c->e = malloc(sizeof *c->e * CACHE_SLOTS)))
                return kvq_error(KVQ_ERR_NOMEM, "tokenizer: out of memory (cache)");
            c->mask = CACHE_SLOTS - 1;
            cache_clear(c);
        }
        h = tok_hash(s, len);
        for (slot = (uint32_t)h & c->mask; c->e[slot].key_len != UINT32_MAX; slot = (slot + 1) & c->mask) {
            tok_cache_entry *e = &c->e[slot];
            if (e->h == h && e->key_len == len && !memcmp(c->keys.p + e->key_off, s, len)) {
                if (!e->n_ids) return KVQ_OK;   // ids.p stays NULL while every piece cached so far had none
                const int32_t *ids = (const int32_t *)(void *)(c->ids.p + e->ids_off);
                for (uint32_t i = 0; i < e->n_ids; i++)
                    if ((st = push_id(ids[i], out, n, cap))) return st;
                return KVQ_OK;
            }
        }
    }
    int n0 = *n;
    bool done = false;
    if (t->ignore_merges) {   // a piece that is a whole token skips the merges
        tok_buf sp = {0};
        if ((st = spelled(t, s, len, &sp))) return st;
        int32_t id = tok_vocab_find(&t->vocab, sp.p, sp.len);
        tok_buf_free(&sp);
        if (id >= 0) {
            if ((st = push_id(id, out, n, cap))) return st;
            done = true;
        }
    }
    if (!done && (st = bpe_run(t, s, len, out, n, cap))) return st;
    if (!cacheable) return KVQ_OK;
    if (c->used * 2 >= CACHE_SLOTS) {
        cache_clear(c);
        for (slot = (uint32_t)h & c->mask; c->e[slot].key_len != UINT32_MAX; slot = (slot + 1) & c->mask) {}
    }
    while (c->ids.len % sizeof(int32_t)) tok_buf_put(&c->ids, "", 1);   // keep id arrays aligned
    tok_cache_entry e = {h, (uint32_t)c->keys.len, (uint32_t)len, (uint32_t)c->ids.len, (uint32_t)(*n - n0)};
    // a piece may yield no ids (empty spelling), and *out is NULL until the first id
    if ((st = tok_buf_put(&c->keys, s, len)) ||
        (*n > n0 && (st = tok_buf_put(&c->ids, *out + n0, sizeof(int32_t) * (size_t)(*n - n0)))))
        return st;
    c->e[slot] = e;
    c->used++;
    return KVQ_OK;
}
