// commands.c — the command table, argument parsing, line/script execution.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cmds.h"

static const char *const opt_json[] = {"json", NULL};
static const char *const opt_quant[] = {"method", "bits", "value-bits", "artifacts", "json", "layers", "tokens",
                                        "queries", "pairs", NULL};
static const char *const opt_bench[] = {"trace", "method", "bits", "value-bits", "seq-len", "num-runs",
                                        "output", "artifacts", NULL};
static const char *const opt_compare[] = {"trace", "methods", "bits", "value-bits", "output", "json", NULL};
static const char *const opt_model[] = {"model", "text", "tokens", "method", "bits", "value-bits",
                                        "output", "prompt", "max-tokens", "temperature", "seed", "out",
                                        "artifacts", "json", NULL};
static const char *const opt_calib[] = {"method", "trace", "output", "num-samples", "sequence-length",
                                        "target-bits", "seed", "max-iter", "layers", "n-queries",
                                        "noise-scale", "min-bits", "max-bits", "per-head", "num-centroids",
                                        "num-subspaces", "signal-bits", "noise-bits", "num-clusters", "quiet",
                                        "model", NULL};
static const char *const opt_load[] = {"values", "dtype", NULL};

// Keep sorted by area; `help` prints in this order.
const kvs_command kvs_commands[] = {
    {.name = "load", .usage = "load PATH [--values V.npy] [--dtype bf16]",
     .help = "open a trace (kvtrace .safetensors, .npy keys, mlx_lm cache)", .options = opt_load,
     .run = kvs_cmd_load, .batch_ok = true},
    {.name = "info", .usage = "info [TRACE] [--json]",
     .help = "shape, key/value norms, outlier channels and d_eff per layer and kv head",
     .options = opt_json, .run = kvs_cmd_info, .batch_ok = true},
    {.name = "methods", .usage = "methods", .help = "list quantization methods",
     .run = kvs_cmd_methods, .batch_ok = true},
    {.name = "method", .usage = "method NAME", .help = "choose the key method", .run = kvs_cmd_method,
     .batch_ok = true},
    {.name = "bits", .usage = "bits N", .help = "key bits per coordinate", .run = kvs_cmd_bits,
     .batch_ok = true},
    {.name = "value-bits", .usage = "value-bits N", .help = "value bits (16 = fp16)",
     .run = kvs_cmd_value_bits, .batch_ok = true},
    {.name = "set", .usage = "set KEY=VALUE ...", .help = "set any config field (see `show`)",
     .run = kvs_cmd_set, .batch_ok = true},
    {.name = "show", .usage = "show [--json]", .help = "print the current config", .options = opt_json,
     .run = kvs_cmd_show, .batch_ok = true},
    {.name = "quantize", .usage = "quantize [TRACE] --method M --bits B [--value-bits V] [opts] [--json]",
     .help = "encode every layer and head; bits held, MSE, cosine, q.k error", .options = opt_quant,
     .run = kvs_cmd_quantize, .batch_ok = true},
    {.name = "benchmark",
     .usage = "benchmark --trace T --method M --bits B [--value-bits V] [--seq-len N] [--num-runs R] "
              "[--output F.json]",
     .help = "replay a trace through the caches with every observer attached", .options = opt_bench,
     .run = kvs_cmd_benchmark, .batch_ok = true},
    {.name = "compare", .usage = "compare --trace T [--methods a,b] [--bits 2,3,4]",
     .help = "grid of methods x bits in one table", .options = opt_compare, .run = kvs_cmd_compare,
     .batch_ok = true},
    {.name = "ppl", .usage = "ppl --model DIR --text FILE [--tokens FILE] [--method M --bits B ...] [--output F]",
     .help = "bits per byte of a text, and KL against the unquantized run", .options = opt_model,
     .run = kvs_cmd_ppl, .batch_ok = true},
    {.name = "generate", .usage = "generate --model DIR --prompt TEXT --max-tokens N [--temperature T] [--seed S]",
     .help = "stream text from the model through the quantized cache", .options = opt_model,
     .run = kvs_cmd_generate, .batch_ok = true},
    {.name = "capture", .usage = "capture --model DIR --text FILE --out TRACE.safetensors [--tokens N]",
     .help = "run the model and write a kvtrace file", .options = opt_model, .run = kvs_cmd_capture,
     .batch_ok = true},
    {.name = "precompute",
     .usage = "precompute --method {vecinfer,spectral,ratequant,rabitq,commvq} --trace T --output DIR",
     .help = "calibrate and write artifacts atomically", .options = opt_calib, .run = kvs_cmd_precompute,
     .batch_ok = true},
    {.name = "calibrate", .usage = "calibrate METHOD [k=v ...]", .help = "calibrate on the loaded trace",
     .options = opt_calib, .run = kvs_cmd_calibrate, .batch_ok = true},
    {.name = "save", .usage = "save artifacts DIR", .help = "write the current artifacts",
     .run = kvs_cmd_save, .batch_ok = true},
    {.name = "load-artifacts", .usage = "load-artifacts DIR", .help = "load calibration artifacts",
     .run = kvs_cmd_load_artifacts, .batch_ok = true},
    {.name = "run", .usage = "run", .help = "run the current method on the trace (lab)", .run = kvs_cmd_run,
     .batch_ok = true},
    {.name = "replay", .usage = "replay [SPEED]", .help = "replay the trace through the caches (dashboard)",
     .run = kvs_cmd_replay},
    {.name = "play", .usage = "play", .help = "start/resume the dashboard replay", .run = kvs_cmd_replay},
    {.name = "pause", .usage = "pause", .help = "pause the replay", .run = kvs_cmd_pause},
    {.name = "step", .usage = "step", .help = "advance the replay one token", .run = kvs_cmd_step},
    {.name = "view", .usage = "view NAME", .help = "switch the studio view", .run = kvs_cmd_view},
    {.name = "export", .usage = "export json|csv|svg PATH", .help = "export runs or the current plot",
     .run = kvs_cmd_export, .batch_ok = true},
    {.name = "help", .usage = "help [COMMAND]", .help = "list commands or describe one", .run = kvs_cmd_help,
     .batch_ok = true},
    {.name = "version", .usage = "version", .help = "print the version", .run = kvs_cmd_version,
     .batch_ok = true},
    {.name = "quit", .usage = "quit", .help = "leave", .run = kvs_cmd_quit, .batch_ok = true},
};
const int kvs_n_commands = (int)(sizeof kvs_commands / sizeof kvs_commands[0]);

const kvs_command *kvs_command_find(const char *name)
{
    for (int i = 0; i < kvs_n_commands; i++)
        if (strcmp(kvs_commands[i].name, name) == 0) return &kvs_commands[i];
    return NULL;
}

// ---- argument parsing ----
static bool keys_equal(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char ca = *a == '_' ? '-' : *a, cb = *b == '_' ? '-' : *b;
        if (ca != cb) return false;
    }
    return *a == *b;
}

static int args_parse(kvs_session *s, int argc, char **argv, kvs_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        char *t = argv[i];
        if (t[0] == '-' && t[1] == '-' && t[2]) {
            if (a->nopt >= KVS_MAX_ARGS) return kvs_errorf(s, "too many options");
            char *eq = strchr(t, '=');
            a->key[a->nopt] = t + 2;
            if (eq) {
                *eq = 0;
                a->val[a->nopt] = eq + 1;
            } else if (i + 1 < argc && !(argv[i + 1][0] == '-' && argv[i + 1][1] == '-')) {
                a->val[a->nopt] = argv[++i];
            } else {
                a->val[a->nopt] = "true";
            }
            a->nopt++;
        } else if (strchr(t, '=') && t[0] != '=' && t[0] != '/' && t[0] != '.') {
            if (a->nopt >= KVS_MAX_ARGS) return kvs_errorf(s, "too many options");
            char *eq = strchr(t, '=');
            *eq = 0;
            a->key[a->nopt] = t;
            a->val[a->nopt++] = eq + 1;
        } else {
            if (a->npos >= KVS_MAX_ARGS) return kvs_errorf(s, "too many arguments");
            a->pos[a->npos++] = t;
        }
    }
    return 0;
}

static int opt_index(kvs_args *a, const char *key)
{
    for (int i = a->nopt - 1; i >= 0; i--)   // last one wins
        if (keys_equal(a->key[i], key)) {
            for (int j = 0; j < a->nopt; j++)
                if (keys_equal(a->key[j], key)) a->used[j] = true;
            return i;
        }
    return -1;
}

bool kvs_opt_given(const kvs_args *a, const char *key)
{
    for (int i = 0; i < a->nopt; i++)
        if (keys_equal(a->key[i], key)) return true;
    return false;
}

const char *kvs_opt_str(kvs_args *a, const char *key, const char *def)
{
    int i = opt_index(a, key);
    return i < 0 ? def : a->val[i];
}

bool kvs_opt_flag(kvs_args *a, const char *key)
{
    int i = opt_index(a, key);
    return i >= 0 && (strcmp(a->val[i], "false") && strcmp(a->val[i], "0") && strcmp(a->val[i], "no"));
}

long kvs_opt_int(kvs_session *s, kvs_args *a, const char *key, long def, long lo, long hi, bool *ok)
{
    int i = opt_index(a, key);
    if (i < 0) return def;
    char *end;
    errno = 0;
    long v = strtol(a->val[i], &end, 10);
    if (errno || end == a->val[i] || *end || v < lo || v > hi) {
        kvs_errorf(s, "--%s: '%s' is not an integer in %ld..%ld", key, a->val[i], lo, hi);
        *ok = false;
        return def;
    }
    return v;
}

double kvs_opt_double(kvs_session *s, kvs_args *a, const char *key, double def, bool *ok)
{
    int i = opt_index(a, key);
    if (i < 0) return def;
    char *end;
    errno = 0;
    double v = strtod(a->val[i], &end);
    if (errno || end == a->val[i] || *end || !isfinite(v)) {
        kvs_errorf(s, "--%s: '%s' is not a number", key, a->val[i]);
        *ok = false;
        return def;
    }
    return v;
}

int kvs_args_apply_config(kvs_session *s, kvs_args *a, kvq_config *cfg)
{
    const char *const *names = kvq_config_field_names();
    for (int i = 0; i < a->nopt; i++) {
        if (a->used[i]) continue;
        for (int k = 0; names[k]; k++)
            if (keys_equal(a->key[i], names[k])) {
                if (kvq_config_set(cfg, names[k], a->val[i]))
                    return kvs_errorf(s, "%s", kvq_last_error());
                a->used[i] = true;
                break;
            }
    }
    return 0;
}

int kvs_args_check_unused(kvs_session *s, kvs_args *a, const char *cmd)
{
    for (int i = 0; i < a->nopt; i++)
        if (!a->used[i]) {
            const kvs_command *c = kvs_command_find(cmd);
            return kvs_errorf(s, "%s: unknown option '%s' (usage: %s)", cmd, a->key[i], c ? c->usage : cmd);
        }
    return 0;
}

int kvs_args_trace(kvs_session *s, kvs_args *a)
{
    if (a->npos > 0) return kvs_session_load(s, a->pos[0], NULL);
    if (!s->trace) return kvs_errorf(s, "no trace loaded (give a path or run `load PATH` first)");
    return 0;
}

// ---- execution ----
// Shell-like split: whitespace separates, '...' and "..." quote, \ escapes.
static int tokenize(kvs_session *s, char *buf, char **argv, int max)
{
    int argc = 0;
    char *r = buf, *w = buf;
    while (*r) {
        while (*r && isspace((unsigned char)*r)) r++;
        if (!*r || *r == '#') break;
        if (argc >= max) return kvs_errorf(s, "too many words on one line (max %d)", max);
        argv[argc++] = w;
        char quote = 0;
        while (*r && (quote || !isspace((unsigned char)*r))) {
            if (quote && *r == quote) quote = 0;
            else if (!quote && (*r == '\'' || *r == '"')) quote = *r;
            else if (*r == '\\' && r[1] && quote != '\'') *w++ = *++r;
            else *w++ = *r;
            r++;
        }
        if (quote) return kvs_errorf(s, "unterminated %c quote", quote);
        if (*r) r++;
        *w++ = 0;
    }
    return argc;
}

int kvs_exec_argv(kvs_session *s, int argc, char **argv)
{
    if (argc == 0) return 0;
    const kvs_command *c = kvs_command_find(argv[0]);
    if (!c) return kvs_errorf(s, "unknown command '%s' (try `help`)", argv[0]);
    if (!c->batch_ok && !s->interactive)
        return kvs_errorf(s, "%s: only available in the studio", c->name);
    kvs_args a;
    if (args_parse(s, argc - 1, argv + 1, &a)) return -1;
    if (a.npos == 0 && a.nopt == 1 && keys_equal(a.key[0], "help")) {
        kvs_printf(s, "usage: %s", c->usage);
        kvs_printf(s, "  %s", c->help);
        if (c->options) {
            char line[512] = "  options:";
            size_t len = strlen(line);
            for (int i = 0; c->options[i] && len < sizeof line; i++)
                len += (size_t)snprintf(line + len, sizeof line - len, " --%s", c->options[i]);
            kvs_printf(s, "%s", line);
        }
        return 0;
    }
    return c->run(s, &a);
}

int kvs_exec_line(kvs_session *s, const char *line)
{
    size_t n = strlen(line);
    char *buf = malloc(n + 1);
    if (!buf) return kvs_errorf(s, "out of memory");
    memcpy(buf, line, n + 1);
    char *argv[KVS_MAX_ARGS * 2];
    int argc = tokenize(s, buf, argv, KVS_MAX_ARGS * 2);
    int rc = argc < 0 ? -1 : kvs_exec_argv(s, argc, argv);
    free(buf);
    return rc;
}

// Errors inside a script are prefixed "FILE:LINE: " through this wrapper.
typedef struct {
    kvs_out_fn out;
    void *user;
    const char *name;
    int line;
} script_ctx;

static void script_out(void *user, bool is_error, const char *msg)
{
    script_ctx *c = user;
    if (!is_error) {
        c->out(c->user, false, msg);
        return;
    }
    char buf[2048];
    snprintf(buf, sizeof buf, "%s:%d: %s", c->name, c->line, msg);
    c->out(c->user, true, buf);
}

int kvs_run_script(kvs_session *s, FILE *f, const char *name)
{
    script_ctx ctx = {.out = s->out, .user = s->out_user, .name = name};
    s->out = script_out;
    s->out_user = &ctx;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (!s->quit && getline(&line, &cap, f) > 0) {
        ctx.line++;
        line[strcspn(line, "\r\n")] = 0;
        if (kvs_exec_line(s, line)) {
            rc = -1;
            break;
        }
    }
    free(line);
    s->out = ctx.out;
    s->out_user = ctx.user;
    return rc;
}
