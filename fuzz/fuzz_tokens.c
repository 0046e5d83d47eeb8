// fuzz_tokens.c — kvq_tokens_load (token-id files for `ppl --tokens`: an
// I32/I64 .npy vector or whitespace-separated integers) on arbitrary bytes
// written to a temp file. Accepted ids are all in 0..INT32_MAX.
#include "fuzz_util.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[300];
    snprintf(path, sizeof path, "%s/tokens.%s", fuzz_tmpdir(), size >= 6 && !memcmp(data, "\x93NUMPY", 6) ? "npy" : "txt");
    fuzz_write(path, data, size);
    int32_t *tok = NULL;
    int n = -1;
    if (kvq_tokens_load(path, &tok, &n) == KVQ_OK) {
        if (!tok || n < 0) abort();
        for (int i = 0; i < n; i++)
            if (tok[i] < 0) abort();
        free(tok);
    } else if (tok) {
        abort();
    }
    unlink(path);
    return 0;
}
