// tok_regex.c — Split/Replace patterns of tokenizer.json through PCRE2.
//
// The patterns are written for Oniguruma (the Rust tokenizers crate); the
// reference, tokenizers.js, rewrites them for JavaScript: \s and \S become
// \p{White_Space} (so U+0085 is a space and U+FEFF is not), (?i:...) folds
// ASCII letters only (so "'ſ" does not match "'s"), \w is
// [\p{Alphabetic}\p{M}\p{Nd}\p{Pc}²³¹¼-¾], \h is a hex digit. The same
// rewrites are made here, into PCRE2 syntax (facts read from
// huggingface/tokenizers.js dist/tokenizers.mjs 0.2.0, rewrite_oniguruma_to_js;
// our own code). Everything else PCRE2 (UTF + UCP) reads as Oniguruma does
// for the patterns in use (Unicode classes, lookahead, {m,n}).
#define _GNU_SOURCE   // memmem
#include <string.h>
#include "tok_impl.h"

#define WS_SET "\\t-\\r\\x20\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
// JavaScript's own \s (used by the ByteLevel pre-tokenizer's built-in
// pattern, which tokenizers.js does not rewrite): no U+0085, adds U+FEFF.
#define JS_WS_SET "\\t-\\r\\x20\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}"
#define WORD_SET "\\p{L}\\p{Nl}\\p{M}\\p{Nd}\\p{Pc}\\x{b2}\\x{b3}\\x{b9}\\x{bc}-\\x{be}"

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static char flip(char c) { return (char)(c ^ 0x20); }

static kvq_status emit(tok_buf *o, const char *s) { return tok_buf_put(o, s, strlen(s)); }

static kvq_status translate(const char *p, size_t n, const char *field, tok_buf *o)
{
    kvq_status st = KVQ_OK;
    bool ci_stack[64];     // per open group: case-insensitive (?i:...)
    int depth = 0, ci = 0;
    bool in_class = false;
    for (size_t i = 0; i < n && !st; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[++i];
            const char *rep = NULL;
            switch (e) {
            case 's': rep = in_class ? WS_SET : "[" WS_SET "]"; break;
            case 'w': rep = in_class ? WORD_SET : "[" WORD_SET "]"; break;
            case 'h': rep = in_class ? "0-9A-Fa-f" : "[0-9A-Fa-f]"; break;
            case 'S': case 'W': case 'H':
                if (in_class)
                    return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: \\%c inside a character class is not supported", field, e);
                rep = e == 'S' ? "[^" WS_SET "]" : e == 'W' ? "[^" WORD_SET "]" : "[^0-9A-Fa-f]";
                break;
            default: break;
            }
            if (rep) {
                st = emit(o, rep);
                continue;
            }
            if (e == 'u' && i + 4 < n) {   // \uHHHH -> \x{HHHH}
                char b[16] = "\\x{";
                memcpy(b + 3, p + i + 1, 4);
                b[7] = '}';
                b[8] = 0;
                st = emit(o, b);
                i += 4;
                continue;
            }
            char b[2] = {'\\', e};
            st = tok_buf_put(o, b, 2);
            if (!st && strchr("pPx", e) && i + 1 < n && p[i + 1] == '{') {   // copy {...} verbatim
                size_t j = i + 1;
                while (j < n && p[j] != '}') j++;
                st = tok_buf_put(o, p + i + 1, j < n ? j - i : n - i - 1);
                i = j;
            }
            continue;
        }
        if (in_class) {
            if (c == ']') in_class = false;
            if (ci && is_alpha(c)) {
                if (i + 2 < n && p[i + 1] == '-' && is_alpha(p[i + 2])) {   // a-f -> a-fA-F
                    char b[6] = {c, '-', p[i + 2], flip(c), '-', flip(p[i + 2])};
                    st = tok_buf_put(o, b, 6);
                    i += 2;
                } else {
                    char b[2] = {c, flip(c)};
                    st = tok_buf_put(o, b, 2);
                }
                continue;
            }
            st = tok_buf_put(o, &c, 1);
            continue;
        }
        if (c == '[') {
            in_class = true;
            st = tok_buf_put(o, &c, 1);
            if (!st && i + 1 < n && p[i + 1] == '^') st = tok_buf_put(o, p + ++i, 1);
            if (!st && i + 1 < n && p[i + 1] == ']') st = tok_buf_put(o, p + ++i, 1);   // literal ] first
            continue;
        }
        if (c == '(') {
            if (depth >= 64) return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: groups nested deeper than 64", field);
            bool is_ci = i + 3 < n && !strncmp(p + i, "(?i:", 4);
            ci_stack[depth++] = is_ci;
            ci += is_ci;
            if (is_ci) {
                st = emit(o, "(?:");
                i += 3;
                continue;
            }
        } else if (c == ')' && depth > 0) {
            ci -= ci_stack[--depth];
        } else if (ci && is_alpha(c)) {
            char b[4] = {'[', c, flip(c), ']'};
            st = tok_buf_put(o, b, 4);
            continue;
        }
        st = tok_buf_put(o, &c, 1);
    }
    return st;
}

static kvq_status compile_raw(const char *pat, size_t len, uint32_t opts, const char *field, pcre2_code **out)
{
    int err;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts | PCRE2_UTF, &err, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return kvq_error(KVQ_ERR_FORMAT, "%s: pattern does not compile at offset %zu: %s", field, (size_t)at,
                         (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   // without JIT it still matches, slower
    *out = re;
    return KVQ_OK;
}

kvq_status tok_regex_compile(const char *pat, size_t len, bool literal, const char *field, pcre2_code **out)
{
    if (literal) return compile_raw(pat, len, PCRE2_LITERAL, field, out);
    tok_buf o = {0};
    kvq_status st = translate(pat, len, field, &o);
    if (!st) st = compile_raw(o.p ? o.p : "", o.len, PCRE2_UCP, field, out);
    tok_buf_free(&o);
    return st;
}

kvq_status tok_regex_builtin(tok_pre_type type, bool individual_digits, pcre2_code **out)
{
    // tokenizers.js: ByteLevel's GPT-2 pattern and Digits' [^\d]+|\d+ are
    // JavaScript regexes, where \d is ASCII and \s is JavaScript's set.
    static const char bytelevel[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" JS_WS_SET
                                    "\\p{L}\\p{N}]+|[" JS_WS_SET "]+(?![^" JS_WS_SET "])|[" JS_WS_SET "]+";
    const char *p = type == TOK_PRE_BYTELEVEL ? bytelevel : individual_digits ? "[^0-9]+|[0-9]" : "[^0-9]+|[0-9]+";
    return compile_raw(p, strlen(p), PCRE2_UCP, "built-in pattern", out);
}

static size_t next_cp(const char *s, size_t len, size_t pos)
{
    pos++;
    while (pos < len && ((unsigned char)s[pos] & 0xc0) == 0x80) pos++;
    return pos;
}

// Next match at or after pos: [*ms, *me); 1 found, 0 none, -1 a PCRE2
// failure (match limit: the error is set). re NULL: literal lit.
static int find(const pcre2_code *re, pcre2_match_data *md, const char *lit, size_t lit_len, const char *s,
                 size_t len, size_t pos, size_t *ms, size_t *me)
{
    if (!re) {
        if (!lit_len || pos + lit_len > len) return 0;
        const char *h = memmem(s + pos, len - pos, lit, lit_len);
        if (!h) return 0;
        *ms = (size_t)(h - s);
        *me = *ms + lit_len;
        return 1;
    }
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof msg);
        kvq_error(KVQ_ERR_NUMERIC, "tokenizer pattern on a piece of %zu bytes: %s", len, (const char *)msg);
        return -1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

kvq_status tok_split_any(const pcre2_code *re, pcre2_match_data *md, const char *lit, size_t lit_len,
                         const tok_buf *buf, size_t off, size_t len, tok_split_mode mode, tok_pieces *out)
{
    kvq_status st;
    const char *s = buf->p + off;
    size_t pos = 0, prev = 0, ms, me;
    int f;
    while (pos <= len && (f = find(re, md, lit, lit_len, s, len, pos, &ms, &me))) {
        if (f < 0) return KVQ_ERR_NUMERIC;
        if (mode != TOK_SPLIT_MATCHES && ms > prev && (st = tok_pieces_add(out, off + prev, ms - prev))) return st;
        if (mode != TOK_SPLIT_REMOVED && me > ms && (st = tok_pieces_add(out, off + ms, me - ms))) return st;
        prev = me;
        pos = me > ms ? me : next_cp(s, len, me);
    }
    if (mode != TOK_SPLIT_MATCHES && prev < len) return tok_pieces_add(out, off + prev, len - prev);
    return KVQ_OK;
}

kvq_status tok_regex_replace(const pcre2_code *re, pcre2_match_data *md, const char *lit, size_t lit_len,
                             const char *s, size_t len, const char *b, size_t blen, tok_buf *out)
{
    kvq_status st;
    size_t pos = 0, prev = 0, ms, me;
    int f;
    while (pos <= len && (f = find(re, md, lit, lit_len, s, len, pos, &ms, &me))) {
        if (f < 0) return KVQ_ERR_NUMERIC;
        if ((st = tok_buf_put(out, s + prev, ms - prev)) || (st = tok_buf_put(out, b, blen))) return st;
        prev = me;
        if (me == ms) {   // empty match: keep the next character, go on after it
            size_t nx = next_cp(s, len, me);
            if (nx > len) nx = len;
            if ((st = tok_buf_put(out, s + me, nx - me))) return st;
            prev = pos = nx;
            if (me >= len) break;
        } else {
            pos = me;
        }
    }
    return tok_buf_put(out, s + prev, len - prev);
}
