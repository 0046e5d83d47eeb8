// bench/torch_bench.c — the PyTorch row of `make bench`: prefill tokens per
// second of kvstudio's runner against PyTorch on CPU, same checkpoint (a
// Qwen2.5-0.5B-shaped bf16 one from tools/make_bigmodel.py), same tokens,
// same thread count, in the same run.
//
//   torch_bench MODEL_DIR PYTHON [TOKENS]
//
// PyTorch runs in a child process (bench/torch_prefill.py, a server on a
// pipe: the forward written out in torch ops, weights upcast to f32 at its
// load) started once per thread count with THREADS, OMP_NUM_THREADS and
// OPENBLAS_NUM_THREADS set; kvstudio sets openblas_set_num_threads and
// kvq_threads_set to the same count. Both prefill the same TOKENS ids
// (default 128, kvstudio in one chunk with the fp16 cache, fused attention
// path) and compute the last position's logits.
//
// Check first: both sides' logits at every position; the row FAILs (exit 1)
// unless max |kvstudio - torch| <= AGREE_TOL x max |torch| (kvstudio's
// fp16 K/V cache against torch's f32 attention is the expected gap).
// Timing (bench_core.h): one warm-up call each, then ROUNDS rounds in A B /
// B A order; the figure is the median of the per-round throughput ratios
// kvstudio / torch (> 1 = kvstudio faster) with min and max. Each pass also
// records its CPU seconds (user + system: getrusage for kvstudio, the
// child's /proc/PID/stat for torch), since on a shared machine wall time
// is what the others leave. The child inherits the environment, so
// OMP_WAIT_POLICY=passive (torch's OpenMP workers sleep instead of spinning
// between ops; they spin by default, which an oversubscribed machine
// punishes) can be given to `make bench`. Results go into bench/results.json under
// "torch" (read, extended, written to a temp file and renamed).
#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "bench_core.h"
#include "bench_data.h"
#include "model.h"
#include "pool.h"

#define RESULTS "bench/results.json"
#define ROUNDS 6
#define AGREE_TOL 1e-2

typedef struct side {
    // kvstudio
    const kvq_model *m;
    kvq_runner *r;
    float *logits;
    // torch
    pid_t pid;
    FILE *to, *from;
    char version[160];
    // both
    const int32_t *tok;
    int n;
    double cpu_s[BENCH_MAX_ROUNDS + 1];   // per call, warm-up first
    int calls;
} side;

#define g_clock bench_wall_clock

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "torch_bench: %s: %s\n", what, msg);
    exit(1);
}

static double self_cpu(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

// utime + stime of a child (fields 14 and 15 of /proc/PID/stat, after the
// parenthesised command name).
static double child_cpu(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return NAN;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

// ---- kvstudio side ----
static void prep_kvs(void *u, int threads)
{
    (void)u;
    openblas_set_num_threads(threads);
    kvq_threads_set(threads);
}

static void pass_kvs(void *u, int i)
{
    (void)i;
    side *s = u;
    double c0 = self_cpu();
    kvq_runner_reset(s->r);
    if (kvq_runner_forward(s->r, s->tok, s->n, false, s->logits)) die("kvstudio prefill", kvq_last_error());
    if (s->calls <= BENCH_MAX_ROUNDS) s->cpu_s[s->calls++] = self_cpu() - c0;
}

// ---- torch side ----
static void torch_ask(side *s, const char *cmd)
{
    fprintf(s->to, "%s\n", cmd);
    fflush(s->to);
    char line[512];
    if (!fgets(line, sizeof line, s->from)) die("torch", "the server closed its pipe (see its stderr above)");
    if (strncmp(line, "ok", 2)) die("torch", line);
}

static void pass_torch(void *u, int i)
{
    (void)i;
    side *s = u;
    double c0 = child_cpu(s->pid);
    torch_ask(s, "prefill");
    if (s->calls <= BENCH_MAX_ROUNDS) s->cpu_s[s->calls++] = child_cpu(s->pid) - c0;
}

static void torch_start(side *s, const char *py, const char *dir, const char *tokfile, int threads)
{
    int in[2], out[2];
    if (pipe(in) || pipe(out)) die("pipe", "failed");
    pid_t pid = fork();
    if (pid < 0) die("fork", "failed");
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        char t[16];
        snprintf(t, sizeof t, "%d", threads);
        setenv("THREADS", t, 1);
        setenv("OMP_NUM_THREADS", t, 1);
        setenv("OPENBLAS_NUM_THREADS", t, 1);
        execlp(py, py, "bench/torch_prefill.py", dir, tokfile, (char *)NULL);
        perror(py);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->pid = pid;
    s->to = fdopen(in[1], "w");
    s->from = fdopen(out[0], "r");
    if (!s->to || !s->from || !fgets(s->version, sizeof s->version, s->from) || strncmp(s->version, "ready", 5))
        die("torch", "the server did not start (see its stderr above)");
    s->version[strcspn(s->version, "\n")] = 0;
}

static void torch_stop(side *s)
{
    fprintf(s->to, "quit\n");
    fclose(s->to);
    fclose(s->from);
    int st;
    waitpid(s->pid, &st, 0);
}

// ---- reporting ----
static json_t *series_json(const bench_kernel *k, const bench_series *sr, const side *sd)
{
    json_t *o = json_object(), *a = json_array(), *c = json_array();
    json_object_set_new(o, "name", json_string(k->name));
    json_object_set_new(o, "threads", json_integer(k->threads));
    json_object_set_new(o, "median_ms", json_real(sr->med_ms));
    json_object_set_new(o, "min_ms", json_real(sr->min_ms));
    json_object_set_new(o, "max_ms", json_real(sr->max_ms));
    json_object_set_new(o, "throughput", json_real(sr->thr));
    json_object_set_new(o, "throughput_unit", json_string("tok"));
    for (int i = 0; i < sr->rounds; i++) json_array_append_new(a, json_real(sr->call_s[i] * 1e3));
    for (int i = 1; i < sd->calls; i++) json_array_append_new(c, isfinite(sd->cpu_s[i]) ? json_real(sd->cpu_s[i]) : json_null());
    json_object_set_new(o, "call_ms", a);
    json_object_set_new(o, "cpu_s", c);   // per timed call, user + system, all threads
    return o;
}

static double median_cpu(const side *s)
{
    return s->calls > 1 ? bench_median(s->cpu_s + 1, s->calls - 1) : NAN;
}

int main(int argc, char **argv)
{
    if (argc < 3) die("usage", "torch_bench MODEL_DIR PYTHON [TOKENS]");
    setvbuf(stdout, NULL, _IOLBF, 0);   // rows as they finish, also into a pipe or file
    const char *dir = argv[1], *py = argv[2];
    int n = argc > 3 ? atoi(argv[3]) : 128;
    if (n < 2) die("tokens", "expected at least 2");
    kvq_model *m;
    if (kvq_model_load(dir, &m)) die(dir, kvq_last_error());
    int V = m->cfg.vocab_size;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n);
    char tokfile[] = "/tmp/torch_bench_tokens.XXXXXX";
    int fd = mkstemp(tokfile);
    FILE *tf = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!tok || !tf) die("tokens", "cannot write the token file");
    for (int i = 0; i < n; i++) {   // spread over the vocabulary; content does not matter for speed
        tok[i] = (int32_t)(((int64_t)i * 7919 + 13) % V);
        fprintf(tf, "%d ", tok[i]);
    }
    fclose(tf);
    kvq_config cfg;   // the fp16 cache on its production path (fused online softmax), as bench.c's model rows
    kvq_config_default(&cfg);
    snprintf(cfg.method, sizeof cfg.method, "fp16");
    snprintf(cfg.value_method, sizeof cfg.value_method, "fp16");
    cfg.bits = cfg.value_bits = 16;
    cfg.use_fused_sdpa = true;
    side kv = {.m = m, .tok = tok, .n = n}, th = {.tok = tok, .n = n};
    if (kvq_runner_new(m, &cfg, NULL, n, &kv.r)) die("runner", kvq_last_error());
    kv.logits = malloc(sizeof(float) * (size_t)n * V);
    float *tl = malloc(sizeof(float) * (size_t)n * V);
    if (!kv.logits || !tl) die("logits", "out of memory");
    double la0[3] = {NAN, NAN, NAN};
    getloadavg(la0, 3);
    printf("torch rows: %s (%s, %d layers, hidden %d), %d-token prefill, %d alternating rounds, load average %.2f\n",
           dir, m->cfg.arch->model_type, m->cfg.n_layers, m->cfg.hidden_size, n, ROUNDS, la0[0]);
    json_t *rows = json_array();
    int failed = 0;
    double agree = NAN;
    for (int threads = 1; threads <= 2; threads++) {
        torch_start(&th, py, dir, tokfile, threads);
        if (threads == 1) {   // same logits first: every position
            char lp[64], cmd[96];
            snprintf(lp, sizeof lp, "%s.logits", tokfile);
            snprintf(cmd, sizeof cmd, "logits %s", lp);
            torch_ask(&th, cmd);
            FILE *f = fopen(lp, "rb");
            size_t got = f ? fread(tl, sizeof(float), (size_t)n * V, f) : 0;
            if (f) fclose(f);
            remove(lp);
            if (got != (size_t)n * V) die("torch logits", "short file");
            prep_kvs(NULL, threads);
            if (kvq_runner_forward(kv.r, tok, n, true, kv.logits)) die("kvstudio logits", kvq_last_error());
            double worst = 0, mag = 0;
            int same_top = 0;
            for (int t = 0; t < n; t++) {
                int ta = 0, tb = 0;
                for (int j = 0; j < V; j++) {
                    size_t i = (size_t)t * V + j;
                    worst = fmax(worst, fabs((double)kv.logits[i] - tl[i]));
                    mag = fmax(mag, fabs(tl[i]));
                    if (kv.logits[i] > kv.logits[(size_t)t * V + ta]) ta = j;
                    if (tl[i] > tl[(size_t)t * V + tb]) tb = j;
                }
                same_top += ta == tb;
            }
            agree = worst / mag;
            bool ok = agree <= AGREE_TOL;
            failed |= !ok;
            printf("  logits, %d positions: max |kvstudio - torch| %.3e, max |torch| %.3f, ratio %.2e (tol %.0e) %s; "
                   "same argmax at %d of %d\n", n, worst, mag, agree, AGREE_TOL, ok ? "ok" : "FAIL", same_top, n);
            if (!ok) {
                torch_stop(&th);
                break;
            }
        }
        kv.calls = th.calls = 0;
        bench_kernel k[2] = {
            {.name = "kvstudio prefill", .prepare = prep_kvs, .pass = pass_kvs, .ctx = &kv, .threads = threads,
             .passes = 1, .work = n, .unit = "tok"},
            {.name = "torch prefill", .pass = pass_torch, .ctx = &th, .threads = threads, .passes = 1, .work = n,
             .unit = "tok"},
        };
        bench_series s[2];
        const char *e = bench_run(&g_clock, k, 2, ROUNDS, s);
        if (e) die("bench", e);
        bench_ratio r;
        if ((e = bench_ratio_compute(BENCH_RATIO_THROUGHPUT, &k[0], &s[0], &k[1], &s[1], &r))) die("ratio", e);
        double la[3] = {NAN, NAN, NAN};
        getloadavg(la, 3);
        printf("  %d thr (load average %.2f)\n", threads, la[0]);
        for (int j = 0; j < 2; j++)
            printf("    %-18s median %9.1f ms [%9.1f, %9.1f]  %7.1f tok/s  cpu %.2f s/pass\n", k[j].name, s[j].med_ms,
                   s[j].min_ms, s[j].max_ms, s[j].thr, median_cpu(j ? &th : &kv));
        printf("    ratio kvstudio/torch tokens/s: median %.3f [%.3f, %.3f] (> 1 = kvstudio faster); %s\n", r.med, r.min,
               r.max, th.version);
        json_t *o = json_object(), *pr = json_array();
        json_object_set_new(o, "threads", json_integer(threads));
        json_object_set_new(o, "loadavg_1min", isfinite(la[0]) ? json_real(la[0]) : json_null());
        json_object_set_new(o, "kvstudio", series_json(&k[0], &s[0], &kv));
        json_object_set_new(o, "torch", series_json(&k[1], &s[1], &th));
        json_object_set_new(o, "ratio_what", json_string("tokens/s of kvstudio / tokens/s of torch, per round (> 1 = kvstudio faster)"));
        json_object_set_new(o, "ratio_median", json_real(r.med));
        json_object_set_new(o, "ratio_min", json_real(r.min));
        json_object_set_new(o, "ratio_max", json_real(r.max));
        for (int i = 0; i < r.rounds; i++) json_array_append_new(pr, json_real(r.r[i]));
        json_object_set_new(o, "ratio_per_round", pr);
        json_array_append_new(rows, o);
        torch_stop(&th);
    }
    remove(tokfile);
    json_error_t je;
    json_t *root = json_load_file(RESULTS, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        root = json_object();
    }
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(dir));
    json_object_set_new(o, "model_type", json_string(m->cfg.arch->model_type));
    json_object_set_new(o, "prefill_tokens", json_integer(n));
    json_object_set_new(o, "rounds", json_integer(ROUNDS));
    json_object_set_new(o, "torch", json_string(th.version));
    json_object_set_new(o, "logits_max_abs_diff_over_max_abs", isfinite(agree) ? json_real(agree) : json_null());
    json_object_set_new(o, "agree_tol", json_real(AGREE_TOL));
    json_object_set_new(o, "rows", rows);
    json_object_set_new(root, "torch", o);
    const char *tmp = RESULTS ".tmp";
    if (json_dump_file(root, tmp, JSON_INDENT(1)) != 0 || rename(tmp, RESULTS) != 0) {
        remove(tmp);
        die(RESULTS, "cannot write");
    }
    json_decref(root);
    printf("wrote the torch section of %s\n", RESULTS);
    kvq_runner_free(kv.r);
    kvq_model_free(m);
    free(kv.logits);
    free(tl);
    free(tok);
    kvq_threads_shutdown();
    return failed;
}
