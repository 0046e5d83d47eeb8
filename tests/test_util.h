// test_util.h — small helpers shared by the unit tests. static inline: each
// tests/test_*.c is its own binary and uses only some of them.
#ifndef KVQ_TEST_UTIL_H
#define KVQ_TEST_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Makes a fresh directory /tmp/kvq_test_<tag>_XXXXXX into dir; 0 or -1
// (cmocka setup convention).
static inline int tu_tmpdir_new(char *dir, size_t n, const char *tag)
{
    snprintf(dir, n, "/tmp/kvq_test_%s_XXXXXX", tag);
    return mkdtemp(dir) ? 0 : -1;
}

// Removes dir and everything below it; 0 or -1.
static inline int tu_rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

// The whole file at path, NUL-terminated (so text can be searched), *len its
// size; NULL when it cannot be read. Free with free().
static inline void *tu_slurp(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = 0, *len = (size_t)n;
    return b;
}

// a . b in double, a and b of d floats.
static inline double tu_dot(const float *a, const float *b, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)a[i] * b[i];
    return s;
}
// Test-vector files (tests/data/formats/*.txt) write bytes and float bits
// in hex: one hex digit's value, and n float32 words of 8 hex digits each
// (their bit patterns) read from p. Returns the text after the last word, or
// NULL when fewer than n words are there.
static inline int tu_hexval(int c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static inline char *tu_read_hex_floats(char *p, float *x, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned u;
        int k;
        if (sscanf(p, " %8x%n", &u, &k) != 1) return NULL;
        p += k;
        memcpy(&x[i], &u, 4);
    }
    return p;
}
#endif
