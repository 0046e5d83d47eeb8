// tok_impl.h — internals of engine/tok/ shared by its files: byte buffers,
// the vocabulary hash, merge ranks, added-token tries, the normalizer and
// pre-tokenizer step tables, the word cache.
#ifndef KVQ_TOK_IMPL_H
#define KVQ_TOK_IMPL_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include "tok.h"

typedef struct { uint32_t off, len; } tok_span;

// Growable byte buffer; offsets into it stay valid across growth.
typedef struct { char *p; size_t len, cap; } tok_buf;
kvq_status tok_buf_put(tok_buf *b, const void *s, size_t n);
void tok_buf_free(tok_buf *b);

// Pieces of a text as byte ranges of one tok_buf.
typedef struct { tok_span *v; int n, cap; } tok_pieces;
kvq_status tok_pieces_add(tok_pieces *p, size_t off, size_t len);

// ---- vocabulary: id -> string, string -> id (open addressing) ----
typedef struct {
    tok_buf pool;        // every token string, back to back
    tok_span *str;       // per id; len 0 = no token with this id
    int n_ids;           // largest id + 1
    int32_t *slot;       // hash slots holding ids, -1 empty
    uint32_t mask, used;
} tok_vocab;
uint64_t tok_hash(const void *s, size_t n);
int32_t tok_vocab_find(const tok_vocab *v, const char *s, size_t n);   // -1 when absent
// Set s -> id (an existing string is remapped to id, as tokenizers.js's Map.set).
kvq_status tok_vocab_set(tok_vocab *v, const char *s, size_t n, int32_t id);
void tok_vocab_free(tok_vocab *v);

// ---- merges: (left id, right id) -> rank and merged id ----
typedef struct {
    uint64_t *key;       // left << 32 | right; UINT64_MAX empty
    uint32_t *rank;
    int32_t *merged;
    uint32_t mask;
    int n;
} tok_merges;

// ---- added tokens: byte trie, longest match at each position ----
typedef struct { int32_t child, sibling, id; uint8_t c; } tok_trie_node;
typedef struct {
    tok_trie_node *node;   // node 0 is the root
    int n, cap;
    uint8_t first[32];     // bitmap of first bytes, to skip positions fast
} tok_trie;
typedef struct { int32_t id; bool lstrip, rstrip, special; } tok_added;

// ---- normalizers and pre-tokenizers: one row per type in a traits table ----
typedef enum { TOK_NORM_NFC, TOK_NORM_REPLACE, TOK_NORM_PREPEND, TOK_NORM_COUNT } tok_norm_type;
typedef struct {
    tok_norm_type type;
    char *a, *b;          // Replace: pattern string -> content; Prepend: a = prefix
    size_t alen, blen;
    pcre2_code *re;       // Replace with a Regex pattern
} tok_norm;

typedef enum { TOK_PRE_SPLIT, TOK_PRE_BYTELEVEL, TOK_PRE_METASPACE, TOK_PRE_DIGITS, TOK_PRE_COUNT } tok_pre_type;
typedef enum { TOK_SPLIT_ISOLATED, TOK_SPLIT_MATCHES, TOK_SPLIT_REMOVED } tok_split_mode;
typedef struct {
    tok_pre_type type;
    pcre2_code *re;        // Split, ByteLevel with use_regex, Digits
    tok_split_mode mode;
    bool add_prefix_space; // ByteLevel
    char *rep;             // Metaspace replacement, or Split literal pattern (re NULL)
    size_t rep_len;
    int prepend;           // Metaspace: 0 never, 1 always, 2 first section
} tok_pre;

// ---- decoder steps ----
typedef enum { TOK_DEC_BYTELEVEL, TOK_DEC_REPLACE, TOK_DEC_BYTEFALLBACK, TOK_DEC_FUSE, TOK_DEC_STRIP,
               TOK_DEC_METASPACE } tok_dec_type;
typedef struct {
    tok_dec_type type;
    char *a, *b;           // Replace a -> b; Strip a = content; Metaspace a = replacement
    size_t alen, blen;
    int start, stop;       // Strip
} tok_dec;

// ---- word cache: piece bytes -> ids (cleared when full) ----
typedef struct { uint64_t h; uint32_t key_off, key_len, ids_off, n_ids; } tok_cache_entry;
typedef struct {
    tok_cache_entry *e;   // mask + 1 entries; key_len == UINT32_MAX empty
    uint32_t mask, used;
    tok_buf keys, ids;
} tok_cache;

// BPE scratch: symbols of one piece in a linked list, candidate merges in a heap.
typedef struct { int32_t id; int32_t prev, next; uint32_t off, len; } tok_sym;
typedef struct { uint32_t rank; int32_t left, right; uint32_t size; } tok_cand;

#define TOK_MAX_STEPS 16
struct kvq_tok {
    char path[KVQ_PATH_LEN];
    tok_vocab vocab;
    tok_merges merges;
    bool byte_fallback, fuse_unk, ignore_merges, byte_level;
    int32_t unk;               // -1 none
    int32_t byte_id[256];      // byte-level: initial symbol of each byte
    int32_t fallback_id[256];  // byte_fallback: "<0xXX>" ids (-1 missing)
    uint8_t unicode_byte[324]; // byte-level decode: code point (< 324) -> byte
    tok_trie raw_trie, norm_trie;
    tok_added *added; int n_added;   // indexed by the trie's payload
    uint8_t *is_added;               // per id: 1 for an added token (decode prints it verbatim)
    tok_norm norm[TOK_MAX_STEPS]; int n_norm;
    tok_pre pre[TOK_MAX_STEPS]; int n_pre;
    tok_dec dec[TOK_MAX_STEPS]; int n_dec;
    int32_t post_pre[8]; int n_post_pre;     // TemplateProcessing ids before the sequence
    int32_t post_post[8]; int n_post_post;   // and after it
    int32_t bos, eos;
    pcre2_match_data *md;
    tok_cache cache;
    tok_sym *sym; int sym_cap;
    tok_cand *heap; int heap_cap;
    uint32_t byte_chr[256];    // byte-level: byte -> code point of its stand-in character
};

// tok_regex.c
// Compile a tokenizer.json (Oniguruma) pattern with PCRE2 (UTF, UCP), after
// the rewrites tokenizers.js makes: \s is White_Space, (?i:...) folds ASCII
// only. field names the JSON field for errors.
kvq_status tok_regex_compile(const char *pat, size_t len, bool literal, const char *field, pcre2_code **out);
// Split buf[off, off+len) by re (or, re NULL, by the literal lit) into out
// (offsets into the same buffer). Empty matches advance one code point.
kvq_status tok_split_any(const pcre2_code *re, pcre2_match_data *md, const char *lit, size_t lit_len,
                         const tok_buf *buf, size_t off, size_t len, tok_split_mode mode, tok_pieces *out);
// Replace every match of re (or literal lit) in s by b, appending to out.
kvq_status tok_regex_replace(const pcre2_code *re, pcre2_match_data *md, const char *lit, size_t lit_len,
                             const char *s, size_t len, const char *b, size_t blen, tok_buf *out);
kvq_status tok_regex_builtin(tok_pre_type type, bool individual_digits, pcre2_code **out);

// tok_steps.c: parse and run normalizers and pre-tokenizers (traits tables)
// A "Sequence" step: parses each element of j[key] with parse, naming it
// FIELD.KEY[i] in errors; one recursion shape for normalizers,
// pre-tokenizers and decoders.
typedef kvq_status (*tok_step_parse_fn)(kvq_tok *t, json_t *j, const char *field);
kvq_status tok_parse_sequence(kvq_tok *t, json_t *j, const char *field, const char *key, tok_step_parse_fn parse);
kvq_status tok_parse_normalizer(kvq_tok *t, json_t *j, const char *field);
kvq_status tok_parse_pre_tokenizer(kvq_tok *t, json_t *j, const char *field);
kvq_status tok_normalize(const kvq_tok *t, pcre2_match_data *md, const char *s, size_t len, tok_buf *out);
// Pre-tokenize the text in buf[off, off+len) into pieces (may append to buf).
kvq_status tok_pre_tokenize(const kvq_tok *t, pcre2_match_data *md, tok_buf *buf, size_t off, size_t len,
                            int section, tok_pieces *out, tok_pieces *scratch);
void tok_steps_free(kvq_tok *t);

// tok_bpe.c
kvq_status tok_merges_add(tok_merges *m, int32_t left, int32_t right, uint32_t rank, int32_t merged);
void tok_merges_free(tok_merges *m);
// BPE of one piece; appends ids to out (fuse_unk is the caller's).
kvq_status tok_bpe_piece(kvq_tok *t, const char *s, size_t len, int32_t **out, int *n, int *cap);
void tok_cache_free(tok_cache *c);

// tok_decode.c
kvq_status tok_parse_decoder(kvq_tok *t, json_t *j, const char *field);
void tok_decoder_free(kvq_tok *t);

// UTF-8 helpers (tok_util.c)
// Length of the UTF-8 sequence at s (1..4), or 0 when invalid (WHATWG maximal
// subpart rules: *bad gets the bytes to replace by one U+FFFD).
int tok_utf8_len(const unsigned char *s, size_t n, size_t *bad);
// Copy s with invalid sequences replaced by U+FFFD.
kvq_status tok_utf8_sanitize(const char *s, size_t n, tok_buf *out);
int tok_utf8_put(uint32_t cp, char *out);
uint32_t tok_utf8_get(const unsigned char *s, int len);
#endif
