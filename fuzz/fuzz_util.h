// fuzz_util.h — shared helpers for the libFuzzer targets in fuzz/: a private
// temp directory per process (removed at exit) for loaders that only take
// paths, and a splitter for inputs that hold two files.
// Header-only (static functions) so each target stays one translation unit
// and tests/test_regress.c can include every target to replay saved inputs.
#ifndef KVQ_FUZZ_UTIL_H
#define KVQ_FUZZ_UTIL_H
#define _GNU_SOURCE
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir[256];

static inline int fuzz_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(p);
    return 0;
}

static inline void fuzz_rm_tree(const char *p) { nftw(p, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static inline void fuzz_cleanup(void)
{
    if (fuzz_dir[0]) fuzz_rm_tree(fuzz_dir);
}

// The per-process directory (tmpfs when there is one: a write per input).
static inline const char *fuzz_tmpdir(void)
{
    if (fuzz_dir[0]) return fuzz_dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/kvq-fuzz.XXXXXX", base);
    if (!mkdtemp(fuzz_dir)) abort();
    atexit(fuzz_cleanup);
    return fuzz_dir;
}

// Write bytes to path (replacing it); abort on failure: the harness, not the
// code under test, is broken then.
static inline void fuzz_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f)) abort();
}

// Inputs holding two files: [u32 little-endian length of part a][a][b].
// The length is taken modulo what is left, so every input splits.
static inline void fuzz_split(const uint8_t *d, size_t n, const uint8_t **a, size_t *na, const uint8_t **b,
                       size_t *nb)
{
    if (n < 4) {
        *a = d; *na = 0; *b = d; *nb = 0;
        return;
    }
    uint32_t len = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
    size_t rest = n - 4;
    *na = rest ? len % (rest + 1) : 0;
    *a = d + 4;
    *b = d + 4 + *na;
    *nb = rest - *na;
}
#endif
