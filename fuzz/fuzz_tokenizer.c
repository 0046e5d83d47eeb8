// fuzz_tokenizer.c — kvq_tok_load on an arbitrary tokenizer.json, then
// encode (with and without special tokens) and decode of arbitrary text.
// Input: [u32 length][tokenizer.json][text] (fuzz_split). Every id encode
// returns must name a token of the vocabulary.
#include "fuzz_util.h"
#include "tok/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *js, *text;
    size_t njs, ntext;
    fuzz_split(data, size, &js, &njs, &text, &ntext);
    char path[300];
    snprintf(path, sizeof path, "%s/tokenizer.json", fuzz_tmpdir());
    fuzz_write(path, js, njs);
    kvq_tok *t = NULL;
    if (kvq_tok_load(path, &t) != KVQ_OK) {
        if (t) abort();
        unlink(path);
        return 0;
    }
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        int n = -1;
        if (kvq_tok_encode(t, (const char *)text, ntext, special, &ids, &n) != KVQ_OK) continue;
        for (int i = 0; i < n; i++)
            if (!kvq_tok_token(t, ids[i], NULL)) abort();
        char *back = NULL;
        size_t len = 0;
        if (kvq_tok_decode(t, ids, n, &back, &len) == KVQ_OK && (!back || strlen(back) > len)) abort();
        free(back);
        free(ids);
    }
    kvq_tok_free(t);
    unlink(path);
    return 0;
}
