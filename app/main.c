// main.c — argv dispatch: studio, script, stdin, or one CLI subcommand.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "commands.h"
#include "pool.h"
#include "tui.h"

#define DEFAULT_TRACE "sample_data/traces/code-1k.safetensors"

// The sample trace, found from the working directory or next to the binary
// (build/kvstudio -> ../sample_data), so `kvstudio` works from anywhere in a checkout.
static const char *default_trace(char *buf, size_t n)
{
    if (access(DEFAULT_TRACE, R_OK) == 0) return DEFAULT_TRACE;
    char exe[KVQ_PATH_LEN];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, n, "%s/../%s", exe, DEFAULT_TRACE);
            if (access(buf, R_OK) == 0) return buf;
        }
    }
    return DEFAULT_TRACE;   // the studio then reports it missing
}

static void usage(kvs_session *s)
{
    kvs_printf(s, "kvstudio %s — KV-cache quantization engine and calibration studio", KVQ_VERSION);
    kvs_printf(s, "%s", "");
    kvs_printf(s, "usage: kvstudio                      open the studio on the sample trace");
    kvs_printf(s, "       kvstudio TRACE|MODEL_DIR      open the studio on a trace or model");
    kvs_printf(s, "       kvstudio COMMAND [ARGS...]    run one command (batch mode)");
    kvs_printf(s, "       kvstudio --script FILE        run a command script (FILE - = stdin)");
    kvs_printf(s, "       kvstudio COMMAND --help       describe a command's options");
    kvs_printf(s, "%s", "");
    char *argv[] = {"help"};
    kvs_exec_argv(s, 1, argv);
}

static int run_script_path(kvs_session *s, const char *path)
{
    if (strcmp(path, "-") == 0) return kvs_run_script(s, stdin, "<stdin>") ? 1 : 0;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {   // fopen would succeed and read nothing
        kvs_errorf(s, "%s: is a directory (expected a script file)", path);
        return 1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        kvs_errorf(s, "%s: cannot open script: %s", path, strerror(errno));
        return 1;
    }
    int rc = kvs_run_script(s, f, path);
    fclose(f);
    return rc ? 1 : 0;
}

// The engine reads KVQ_SIMD (engine/simd.c) and KVQ_THREADS (engine/pool.c)
// leniently; a mistyped value would silently run another path, so the CLI
// names it and stops.
static const char *env_error(char *buf, size_t n)
{
    const char *v = getenv("KVQ_SIMD");
    if (v && strcmp(v, "0") && strcmp(v, "scalar") && strcmp(v, "avx2") && strcmp(v, "avx512")) {
        snprintf(buf, n, "KVQ_SIMD=%s: expected 0, scalar, avx2 or avx512 (the highest path to use)", v);
        return buf;
    }
    v = getenv("KVQ_THREADS");
    if (v) {
        char *end;
        long t = strtol(v, &end, 10);
        if (end == v || *end || t < 1 || t > KVQ_MAX_THREADS) {
            snprintf(buf, n, "KVQ_THREADS=%s: expected an integer 1..%d", v, KVQ_MAX_THREADS);
            return buf;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    kvs_session s;
    kvs_session_init(&s);
    int rc = 0;
    bool tty = isatty(0) && isatty(1);
    char ebuf[160];
    const char *env = env_error(ebuf, sizeof ebuf);
    if (env) {
        kvs_errorf(&s, "%s", env);
        rc = 2;
    } else if (argc == 1) {
        char buf[KVQ_PATH_LEN + 64];
        rc = tty ? kvs_tui_run(&s, default_trace(buf, sizeof buf)) : run_script_path(&s, "-");
    } else if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(&s);
    } else if (!strcmp(argv[1], "--version")) {
        kvs_printf(&s, "kvstudio %s", KVQ_VERSION);
    } else if (!strcmp(argv[1], "--script") || !strcmp(argv[1], "-")) {
        if (argv[1][0] == '-' && argv[1][1] == '-' && argc != 3) {
            kvs_errorf(&s, "--script: expected one FILE (or - for stdin)");
            rc = 2;
        } else {
            rc = run_script_path(&s, argc == 3 ? argv[2] : "-");
        }
    } else if (kvs_command_find(argv[1])) {
        rc = kvs_exec_argv(&s, argc - 1, argv + 1) ? 1 : 0;
    } else if (argc == 2 && argv[1][0] != '-' && access(argv[1], F_OK) == 0) {
        if (tty) {
            rc = kvs_tui_run(&s, argv[1]);
        } else {
            char *a2[] = {"info", argv[1]};
            rc = kvs_exec_argv(&s, 2, a2) ? 1 : 0;
        }
    } else {
        kvs_errorf(&s, "unknown command or missing file '%s' (try kvstudio --help)", argv[1]);
        rc = 2;
    }
    kvs_session_free(&s);
    return rc;
}
