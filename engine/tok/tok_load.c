// tok_load.c — reading tokenizer.json (+ tokenizer_config.json) into a kvq_tok.
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "file.h"
#include "tok_impl.h"

kvq_status tok_trie_add(tok_trie *tr, const char *s, size_t n, int32_t payload);

// GPT-2's byte stand-ins: printable Latin-1 bytes are themselves, the other
// 68 bytes take code points 256.. in byte order.
static void byte_chars(uint32_t chr[256])
{
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        chr[b] = keep ? (uint32_t)b : next++;
    }
}

bool kvq_tok_present(const char *dir)
{
    char p[KVQ_PATH_LEN + 32];
    struct stat sb;
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

// bos_token / eos_token: a string or {"content": string}.
static int32_t config_token(const kvq_tok *t, json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return tok_vocab_find(&t->vocab, json_string_value(v), json_string_length(v));
}

// The last error with "where: " in front (the message is copied first: the
// error buffer is both source and destination).
static kvq_status prefix_error(kvq_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kvq_status prefix_error(kvq_status st, const char *fmt, ...)
{
    char why[256], where[KVQ_PATH_LEN + 128];
    snprintf(why, sizeof why, "%s", kvq_last_error());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(where, sizeof where, fmt, ap);
    va_end(ap);
    return kvq_error(st, "%s: %s", where, why);
}

static kvq_status load_vocab(kvq_tok *t, json_t *vocab, const char *path)
{
    if (!json_is_object(vocab)) return kvq_error(KVQ_ERR_FORMAT, "%s: model.vocab: expected an object", path);
    for (void *it = json_object_iter(vocab); it; it = json_object_iter_next(vocab, it)) {
        json_t *v = json_object_iter_value(it);
        const char *k = json_object_iter_key(it);
        if (!json_is_integer(v))
            return kvq_error(KVQ_ERR_FORMAT, "%s: model.vocab[\"%s\"]: expected an integer id", path, k);
        if (tok_vocab_set(&t->vocab, k, json_object_iter_key_len(it), (int32_t)json_integer_value(v)))
            return prefix_error(KVQ_ERR_FORMAT, "%s: model.vocab[\"%s\"]", path, k);
    }
    return KVQ_OK;
}

static kvq_status load_merges(kvq_tok *t, json_t *merges, const char *path)
{
    if (!json_is_array(merges)) return kvq_error(KVQ_ERR_FORMAT, "%s: model.merges: expected an array", path);
    tok_buf cat = {0};
    kvq_status st = KVQ_OK;
    size_t skipped = 0;
    for (size_t i = 0; i < json_array_size(merges) && !st; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(m)) {   // "a b": tokenizers.js splits at spaces and keeps the first two parts
            a = json_string_value(m);
            const char *sp = memchr(a, ' ', json_string_length(m));
            if (!sp) {
                st = kvq_error(KVQ_ERR_FORMAT, "%s: model.merges[%zu]: expected \"left right\"", path, i);
                break;
            }
            al = (size_t)(sp - a);
            b = sp + 1;
            const char *end = memchr(b, ' ', json_string_length(m) - al - 1);
            bl = end ? (size_t)(end - b) : json_string_length(m) - al - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0)), al = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1)), bl = json_string_length(json_array_get(m, 1));
        } else {
            st = kvq_error(KVQ_ERR_FORMAT, "%s: model.merges[%zu]: expected a string or a pair of strings", path, i);
            break;
        }
        cat.len = 0;
        if ((st = tok_buf_put(&cat, a, al)) || (st = tok_buf_put(&cat, b, bl))) break;
        int32_t l = tok_vocab_find(&t->vocab, a, al), r = tok_vocab_find(&t->vocab, b, bl);
        int32_t mg = tok_vocab_find(&t->vocab, cat.p, cat.len);
        if (l < 0 || r < 0 || mg < 0) {   // a merge outside the vocabulary could only yield unknown tokens
            skipped++;
            continue;
        }
        st = tok_merges_add(&t->merges, l, r, (uint32_t)i, mg);
    }
    tok_buf_free(&cat);
    if (skipped) kvq_log(KVQ_LOG_WARN, "%s: %zu merges name tokens outside the vocabulary; skipped", path, skipped);
    return st;
}

static kvq_status load_added(kvq_tok *t, json_t *added, const char *path)
{
    if (!added || json_is_null(added)) return KVQ_OK;
    if (!json_is_array(added)) return kvq_error(KVQ_ERR_FORMAT, "%s: added_tokens: expected an array", path);
    size_t n = json_array_size(added);
    if (!(t->added = calloc(n ? n : 1, sizeof *t->added))) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", path);
    kvq_status st = KVQ_OK;
    for (size_t i = 0; i < n && !st; i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id"), *c = json_object_get(a, "content");
        if (!json_is_integer(id) || !json_is_string(c))
            return kvq_error(KVQ_ERR_FORMAT, "%s: added_tokens[%zu]: expected \"id\" (integer) and \"content\" (string)",
                             path, i);
        const char *s = json_string_value(c);
        size_t len = json_string_length(c);
        tok_added *ad = &t->added[t->n_added];
        ad->id = (int32_t)json_integer_value(id);
        ad->special = json_is_true(json_object_get(a, "special"));
        ad->lstrip = json_is_true(json_object_get(a, "lstrip"));
        ad->rstrip = json_is_true(json_object_get(a, "rstrip"));
        json_t *nz = json_object_get(a, "normalized");
        bool normalized = json_is_boolean(nz) ? json_is_true(nz) : !ad->special;
        if (len == 0) continue;
        if (tok_vocab_set(&t->vocab, s, len, ad->id)) return prefix_error(KVQ_ERR_FORMAT, "%s: added_tokens[%zu]", path, i);
        if (normalized && t->n_norm) {   // matched after the normalizer, in its output's spelling
            tok_buf nb = {0};
            st = tok_normalize(t, t->md, s, len, &nb);
            if (!st && nb.len) st = tok_trie_add(&t->norm_trie, nb.p, nb.len, t->n_added);
            tok_buf_free(&nb);
        } else {
            st = tok_trie_add(&t->raw_trie, s, len, t->n_added);
        }
        t->n_added++;
    }
    return st;
}

static kvq_status load_post(kvq_tok *t, json_t *pp, const char *path)
{
    if (!pp || json_is_null(pp)) return KVQ_OK;
    const char *type = json_string_value(json_object_get(pp, "type"));
    if (!type) return kvq_error(KVQ_ERR_FORMAT, "%s: post_processor.type: expected a string", path);
    if (!strcmp(type, "ByteLevel")) return KVQ_OK;   // offsets only
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(pp, "processors");
        if (!json_is_array(a)) return kvq_error(KVQ_ERR_FORMAT, "%s: post_processor.processors: expected an array", path);
        for (size_t i = 0; i < json_array_size(a); i++) {
            kvq_status st = load_post(t, json_array_get(a, i), path);
            if (st) return st;
        }
        return KVQ_OK;
    }
    if (strcmp(type, "TemplateProcessing"))
        return kvq_error(KVQ_ERR_UNSUPPORTED,
                         "%s: post_processor.type \"%s\" is not supported (expected TemplateProcessing, ByteLevel or "
                         "Sequence)", path, type);
    json_t *single = json_object_get(pp, "single");
    if (!json_is_array(single)) return kvq_error(KVQ_ERR_FORMAT, "%s: post_processor.single: expected an array", path);
    t->n_post_pre = t->n_post_post = 0;
    bool after = false;
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *it = json_array_get(single, i), *sp = json_object_get(it, "SpecialToken");
        if (json_object_get(it, "Sequence")) {
            after = true;
            continue;
        }
        json_t *id = json_object_get(sp, "id");
        if (!json_is_string(id))
            return kvq_error(KVQ_ERR_FORMAT, "%s: post_processor.single[%zu]: expected SpecialToken.id or Sequence",
                             path, i);
        int32_t v = tok_vocab_find(&t->vocab, json_string_value(id), json_string_length(id));
        if (v < 0) v = t->unk;
        if (v < 0)
            return kvq_error(KVQ_ERR_FORMAT, "%s: post_processor.single[%zu]: \"%s\" is not in the vocabulary", path, i,
                             json_string_value(id));
        int32_t *dst = after ? t->post_post : t->post_pre;
        int *nd = after ? &t->n_post_post : &t->n_post_pre;
        if (*nd == 8) return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: post_processor.single: more than 8 special tokens", path);
        dst[(*nd)++] = v;
    }
    return KVQ_OK;
}

static kvq_status load_model(kvq_tok *t, json_t *model, const char *path)
{
    kvq_status st;
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model)) return kvq_error(KVQ_ERR_FORMAT, "%s: model: expected an object", path);
    if (type && strcmp(type, "BPE"))
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: model.type \"%s\" is not supported (expected BPE)", path, type);
    if (!type && !json_object_get(model, "merges"))
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: model: no type and no merges (expected a BPE model)", path);
    const char *keys[] = {"end_of_word_suffix", "continuing_subword_suffix"};
    for (int k = 0; k < 2; k++) {
        const char *v = json_string_value(json_object_get(model, keys[k]));
        if (v && *v) return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: model.%s \"%s\" is not supported", path, keys[k], v);
    }
    if ((st = load_vocab(t, json_object_get(model, "vocab"), path))) return st;
    t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    json_t *unk = json_object_get(model, "unk_token");
    t->unk = json_is_string(unk) ? tok_vocab_find(&t->vocab, json_string_value(unk), json_string_length(unk)) : -1;
    return KVQ_OK;
}

static void set_byte_tables(kvq_tok *t)
{
    byte_chars(t->byte_chr);
    memset(t->unicode_byte, 0, sizeof t->unicode_byte);
    for (int b = 0; b < 256; b++) {
        char s[8];
        int l = tok_utf8_put(t->byte_chr[b], s);
        t->byte_id[b] = tok_vocab_find(&t->vocab, s, (size_t)l);
        t->unicode_byte[t->byte_chr[b]] = (uint8_t)b;
        snprintf(s, sizeof s, "<0x%02X>", b);
        t->fallback_id[b] = tok_vocab_find(&t->vocab, s, 6);
    }
}

// A JSON file that must be a regular file (a FIFO would block the load).
// tokenizer.json files reach tens of MB, past kvq_json_load's bound: read
// through the FILE * instead.
static kvq_status json_load_regular(const char *path, size_t flags, json_t **out)
{
    FILE *f;
    kvq_status st = kvq_file_fopen(path, &f, NULL);
    if (st) return st;
    json_error_t je;
    *out = json_loadf(f, flags, &je);
    fclose(f);
    if (!*out) return kvq_error(KVQ_ERR_FORMAT, "%s:%d: %s", path, je.line, je.text);
    return KVQ_OK;
}

kvq_status kvq_tok_load(const char *path, kvq_tok **out)
{
    *out = NULL;
    struct stat sb;
    if (!path || !*path) return kvq_error(KVQ_ERR_ARG, "tokenizer: no path given");
    if (stat(path, &sb)) return kvq_error(KVQ_ERR_IO, "%s: %s", path, strerror(errno));
    kvq_tok *t = calloc(1, sizeof *t);
    if (!t) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", path);
    char dir[KVQ_PATH_LEN];
    if (S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(t->path, sizeof t->path, "%s/tokenizer.json", path);
    } else {
        snprintf(t->path, sizeof t->path, "%s", path);
        snprintf(dir, sizeof dir, "%s", path);
        char *sl = strrchr(dir, '/');
        if (sl) *sl = 0;
        else snprintf(dir, sizeof dir, ".");
    }
    t->unk = t->bos = t->eos = -1;
    kvq_status st = KVQ_OK;
    json_t *root = NULL, *cfg = NULL;
    if ((st = json_load_regular(t->path, JSON_ALLOW_NUL, &root))) goto fail;
    if (!json_is_object(root)) {
        st = kvq_error(KVQ_ERR_FORMAT, "%s: expected a JSON object", t->path);
        goto fail;
    }
    if (!(t->md = pcre2_match_data_create(16, NULL))) {
        st = kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", t->path);
        goto fail;
    }
    char field[KVQ_PATH_LEN + 32];
    snprintf(field, sizeof field, "%s: normalizer", t->path);
    if ((st = tok_parse_normalizer(t, json_object_get(root, "normalizer"), field))) goto fail;
    snprintf(field, sizeof field, "%s: pre_tokenizer", t->path);
    if ((st = tok_parse_pre_tokenizer(t, json_object_get(root, "pre_tokenizer"), field))) goto fail;
    if ((st = load_model(t, json_object_get(root, "model"), t->path))) goto fail;
    if ((st = load_added(t, json_object_get(root, "added_tokens"), t->path))) goto fail;
    json_t *model = json_object_get(root, "model");
    if ((st = load_merges(t, json_object_get(model, "merges"), t->path))) goto fail;
    if ((st = load_post(t, json_object_get(root, "post_processor"), t->path))) goto fail;
    snprintf(field, sizeof field, "%s: decoder", t->path);
    if ((st = tok_parse_decoder(t, json_object_get(root, "decoder"), field))) goto fail;
    set_byte_tables(t);
    int n = t->vocab.n_ids;
    while (n > 0 && !t->vocab.str[n - 1].len) n--;
    t->vocab.n_ids = n;
    if (!(t->is_added = calloc((size_t)(n ? n : 1), 1))) {
        st = kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", t->path);
        goto fail;
    }
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id < n) t->is_added[t->added[i].id] = 1;
    char cpath[KVQ_PATH_LEN + 32];
    snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir);
    if (stat(cpath, &sb) == 0) {
        if ((st = json_load_regular(cpath, JSON_DECODE_INT_AS_REAL, &cfg))) goto fail;
        t->bos = config_token(t, cfg, "bos_token");
        t->eos = config_token(t, cfg, "eos_token");
    }
    if (t->bos < 0 && t->n_post_pre) t->bos = t->post_pre[0];
    json_decref(root);
    json_decref(cfg);
    *out = t;
    return KVQ_OK;
fail:
    json_decref(root);
    json_decref(cfg);
    kvq_tok_free(t);
    return st;
}

void kvq_tok_free(kvq_tok *t)
{
    if (!t) return;
    tok_vocab_free(&t->vocab);
    tok_merges_free(&t->merges);
    free(t->raw_trie.node);
    free(t->norm_trie.node);
    free(t->added);
    free(t->is_added);
    tok_steps_free(t);
    tok_decoder_free(t);
    tok_cache_free(&t->cache);
    pcre2_match_data_free(t->md);
    free(t->sym);
    free(t->heap);
    free(t);
}

int kvq_tok_vocab_size(const kvq_tok *t) { return t->vocab.n_ids; }
int32_t kvq_tok_bos(const kvq_tok *t) { return t->bos; }
int32_t kvq_tok_eos(const kvq_tok *t) { return t->eos; }

const char *kvq_tok_token(const kvq_tok *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->vocab.n_ids || !t->vocab.str[id].len) return NULL;
    if (len) *len = t->vocab.str[id].len;
    return t->vocab.pool.p + t->vocab.str[id].off;
}
