// fuzz_commands.c — the command language (tokenizer, option parsing, every
// batch command's argument checks) on an arbitrary script run through
// kvs_run_script, in a fresh session holding a tiny valid trace.
// Each input runs in a private temp directory (cwd restored after) and drops lines that could
// reach outside it or run for long: any line containing '/' or naming a
// model/calibration/benchmark command (checked after removing quotes and
// backslashes, so every token the tokenizer can produce is a substring).
#include "fuzz_util.h"
#include <ctype.h>
#include <fcntl.h>
#include "commands.h"

static const char *const seed_files[] = {"tr_valid.safetensors", "mlx_cache.safetensors", "npy_keys.npy",
                                         "npy_values.npy"};
#define N_SEED (sizeof seed_files / sizeof seed_files[0])

static const char *const denied[] = {"ppl", "generate", "capture", "precompute", "calibrate", "benchmark",
                                     "compare", "/"};

static void copy_in(const char *dir, const char *name)
{
    char src[300], dst[300];
    snprintf(src, sizeof src, "tests/data/%s", name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    FILE *f = fopen(src, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_commands: run from the repository root (%s missing)\n", src);
        abort();
    }
    static uint8_t buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    fuzz_write(dst, buf, n);
}

static int keep_seed_files(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag;
    if (ftw->level == 0) return 0;
    for (size_t i = 0; i < N_SEED; i++)
        if (ftw->level == 1 && strcmp(p + ftw->base, seed_files[i]) == 0) return 0;
    remove(p);
    return 0;
}

static void out_none(void *user, bool is_error, const char *line)
{
    (void)user; (void)is_error;
    if (strlen(line) > (1u << 20)) abort();   // output lines stay bounded
}

static bool line_allowed(const char *l, size_t n)
{
    char s[4096];
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < sizeof s; i++)
        if (l[i] != '\'' && l[i] != '"' && l[i] != '\\') s[k++] = (char)tolower((unsigned char)l[i]);
    s[k] = 0;
    if (n >= sizeof s) return false;
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++)
        if (strstr(s, denied[i])) return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    const char *dir = fuzz_tmpdir();
    if (!ready) {
        for (size_t i = 0; i < N_SEED; i++) copy_in(dir, seed_files[i]);
        ready = true;
    }
    if (size > 8192 || memchr(data, 0, size)) return 0;   // scripts are text lines
    int home = open(".", O_RDONLY | O_DIRECTORY);   // back there after the input
    if (home < 0 || chdir(dir)) abort();
    char *script = malloc(size + 2);
    size_t len = 0;
    for (size_t i = 0; i < size;) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t end = nl ? (size_t)(nl - data) + 1 : size;
        if (line_allowed((const char *)data + i, end - i)) {
            memcpy(script + len, data + i, end - i);
            len += end - i;
        }
        i = end;
    }
    kvs_session s;
    kvs_session_init(&s);
    s.out = out_none;
    if (kvs_session_load(&s, "tr_valid.safetensors", NULL)) abort();
    FILE *f = fmemopen(script, len ? len : 1, "r");
    if (!f) abort();
    if (len == 0) fgetc(f);   // fmemopen refuses size 0: an empty script
    (void)kvs_run_script(&s, f, "fuzz.kvs");
    fclose(f);
    kvs_session_free(&s);
    free(script);
    nftw(".", keep_seed_files, 16, FTW_DEPTH | FTW_PHYS);
    if (fchdir(home)) abort();
    close(home);
    return 0;
}
