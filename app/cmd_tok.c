// cmd_tok.c — `tokenize`: token ids of a text under a Hugging Face
// tokenizer.json (engine/tok/), for checking against other tokenizers and
// for feeding `ppl --tokens`.
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cmds.h"
#include "file.h"
#include "tok/tok.h"


// Whole file into memory (*len bytes, NUL-terminated); regular files only.
static int read_file(kvs_session *s, const char *cmd, const char *path, char **buf, size_t *len)
{
    if (kvq_file_read(path, KVQ_TEXT_MAX_BYTES, buf, len)) return kvs_errorf(s, "%s: %s", cmd, kvq_last_error());
    return 0;
}

// One result: ids on a line, or {"ids": [...], "tokens": [...]}.
static int print_ids(kvs_session *s, const kvq_tok *t, const int32_t *ids, int n, bool json)
{
    char *txt = NULL;
    if (json) {
        json_t *o = json_object(), *ja = json_array(), *jt = json_array();
        for (int i = 0; i < n; i++) {
            size_t len = 0;
            const char *str = kvq_tok_token(t, ids[i], &len);
            json_array_append_new(ja, json_integer(ids[i]));
            json_array_append_new(jt, str ? json_stringn(str, len) : json_null());
        }
        json_object_set_new(o, "ids", ja);
        json_object_set_new(o, "tokens", jt);
        txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        json_decref(o);
    } else {
        size_t cap = (size_t)n * 11 + 1, at = 0;
        if ((txt = malloc(cap))) {
            txt[0] = 0;
            for (int i = 0; i < n; i++) at += (size_t)snprintf(txt + at, cap - at, i ? " %d" : "%d", ids[i]);
        }
    }
    if (!txt) return kvs_errorf(s, "tokenize: out of memory");
    kvs_puts(s, txt);
    free(txt);
    return 0;
}

int kvs_cmd_tokenize(kvs_session *s, kvs_args *a)
{
    const char *path = kvs_opt_str(a, "tokenizer", NULL), *file = kvs_opt_str(a, "text", NULL);
    bool json = kvs_opt_flag(a, "json") || s->json, no_special = kvs_opt_flag(a, "no-special");
    bool each = kvs_opt_flag(a, "each-line");
    if (kvs_args_check_unused(s, a, "tokenize")) return -1;
    if (!path) return kvs_errorf(s, "tokenize: --tokenizer PATH is required (tokenizer.json or a directory holding it)");
    if (!!file == (a->npos == 1) || a->npos > 1)
        return kvs_errorf(s, "tokenize: give the text as --text FILE or as one STRING argument");
    char *text = NULL;
    size_t len = 0;
    if (file) {
        if (read_file(s, "tokenize", file, &text, &len)) return -1;
    } else {
        len = strlen(a->pos[0]);
        if (!(text = strdup(a->pos[0]))) return kvs_errorf(s, "tokenize: out of memory");
    }
    kvq_tok *t = NULL;
    if (kvq_tok_load(path, &t)) {
        free(text);
        return kvs_errorf(s, "tokenize: %s", kvq_last_error());
    }
    int rc = 0;
    size_t at = 0;
    do {   // --each-line: every line (without its "\n") is a text of its own
        size_t end = len;
        if (each) {
            const char *nl = memchr(text + at, '\n', len - at);
            end = nl ? (size_t)(nl - text) : len;
        }
        int32_t *ids = NULL;
        int n = 0;
        if (kvq_tok_encode(t, text + at, end - at, !no_special, &ids, &n)) {
            rc = kvs_errorf(s, "tokenize: %s", kvq_last_error());
            break;
        }
        rc = print_ids(s, t, ids, n, json);
        free(ids);
        at = end + 1;
    } while (!rc && each && at < len);
    kvq_tok_free(t);
    free(text);
    return rc;
}
