// bench/tok_bench.c — encode throughput of engine/tok on a text, for
// bench/tok_bench.sh (which times tokenizers.js the same way and reports
// the ratio). Loading is not timed; one untimed warm-up pass, then ROUNDS
// passes over the texts (each line its own text with --each-line).
// usage: tok_bench TOKENIZER TEXT_FILE ROUNDS [--each-line] [--no-special]
// prints {"seconds": s, "bytes": b, "tokens": n} (bytes and tokens summed over rounds)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kvq.h"
#include "tok/tok.h"

static long encode_all(kvq_tok *t, const char *text, size_t len, bool each, bool special, size_t *bytes)
{
    long total = 0;
    size_t at = 0;
    do {
        size_t end = len;
        if (each) {
            const char *nl = memchr(text + at, '\n', len - at);
            end = nl ? (size_t)(nl - text) : len;
        }
        int32_t *ids;
        int n;
        if (kvq_tok_encode(t, text + at, end - at, special, &ids, &n)) return -1;
        free(ids);
        total += n;
        *bytes += end - at;
        at = end + 1;
    } while (each && at < len);
    return total;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: tok_bench TOKENIZER TEXT_FILE ROUNDS [--each-line] [--no-special]\n");
        return 2;
    }
    bool each = false, special = true;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--each-line")) each = true;
        else if (!strcmp(argv[i], "--no-special")) special = false;
    }
    int rounds = atoi(argv[3]);
    FILE *f = fopen(argv[2], "rb");
    if (!f || rounds < 1) {
        fprintf(stderr, "tok_bench: %s: cannot open (or ROUNDS < 1)\n", argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)sz + 1);
    if (!text || fread(text, 1, (size_t)sz, f) != (size_t)sz) {
        fprintf(stderr, "tok_bench: %s: read error\n", argv[2]);
        return 1;
    }
    fclose(f);
    kvq_tok *t;
    if (kvq_tok_load(argv[1], &t)) {
        fprintf(stderr, "tok_bench: %s\n", kvq_last_error());
        return 1;
    }
    size_t bytes = 0;
    if (encode_all(t, text, (size_t)sz, each, special, &bytes) < 0) {
        fprintf(stderr, "tok_bench: %s\n", kvq_last_error());
        return 1;
    }
    bytes = 0;
    long tokens = 0;
    double t0 = kvq_now_s();
    for (int r = 0; r < rounds; r++) tokens += encode_all(t, text, (size_t)sz, each, special, &bytes);
    double s = kvq_now_s() - t0;
    printf("{\"seconds\": %.6f, \"bytes\": %zu, \"tokens\": %ld}\n", s, bytes, tokens);
    kvq_tok_free(t);
    free(text);
    return 0;
}
