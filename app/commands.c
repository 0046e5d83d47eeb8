// commands.c — the command table, argument parsing, line/script execution.
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "calib/calib.h"
#include "cmds.h"

// Option tables, one per command (or shared where commands read the very
// same options). Ranges here are the only ones: the parser checks them.
#define END {.name = NULL}
#define JSON_FLAG {.name = "json", .kind = KVS_OPT_FLAG, .help = "print JSON instead of text"}
#define INT_MAX_D 2147483647.0

static const kvs_option opts_json[] = {JSON_FLAG, END};
// `load`'s options; also the KVS_OPTS_TRACE group of commands that take a TRACE.
static const kvs_option opts_load[] = {
    {.name = "values", .kind = KVS_OPT_STRING, .arg = "V.npy", .help = "values of an .npy key trace (same shape)"},
    {.name = "dtype", .kind = KVS_OPT_STRING, .arg = "bf16", .choices = "bf16",
     .help = "read an .npy trace's uint16 data as bf16"},
    END};
static const kvs_option opts_quantize[] = {
    {.name = "tokens", .kind = KVS_OPT_INT, .arg = "N", .lo = 0, .hi = INT_MAX_D,
     .help = "use the first N tokens (0 = all)"},
    {.name = "layers", .kind = KVS_OPT_STRING, .arg = "0,2-4", .help = "only these layers"},
    {.name = "queries", .kind = KVS_OPT_INT, .arg = "Q", .lo = 0, .hi = INT_MAX_D,
     .help = "queries per head for the q.k error"},
    {.name = "pairs", .kind = KVS_OPT_INT, .arg = "N", .lo = 0, .hi = INT_MAX_D,
     .help = "q.k error over a seeded sample of N (query, key) pairs above N (0 = all; default 1048576)"},
    JSON_FLAG, END};
static const kvs_option opts_benchmark[] = {
    {.name = "trace", .kind = KVS_OPT_STRING, .arg = "T", .help = "trace file (default: the loaded one)"},
    {.name = "seq-len", .kind = KVS_OPT_INT, .arg = "N", .lo = 0, .hi = 1 << 24,
     .help = "tokens replayed (0 = the whole trace)"},
    {.name = "num-runs", .kind = KVS_OPT_INT, .arg = "R", .lo = 1, .hi = 1000,
     .help = "replays; latency is averaged over all"},
    {.name = "output", .kind = KVS_OPT_STRING, .arg = "F.json", .help = "also write the JSON report (atomically)"},
    {.name = "artifacts", .kind = KVS_OPT_STRING, .arg = "DIR", .help = "calibration artifacts for this run"},
    JSON_FLAG, END};
static const kvs_option opts_compare[] = {
    {.name = "trace", .kind = KVS_OPT_STRING, .arg = "T", .help = "trace file (default: the loaded one)"},
    {.name = "methods", .kind = KVS_OPT_LIST, .arg = "a,b", .help = "methods (default: every one that can run)"},
    {.name = "bits", .kind = KVS_OPT_LIST, .arg = "2,3,4", .lo = 1, .hi = 16, .help = "key bit widths (default 2,3,4)"},
    {.name = "seq-len", .kind = KVS_OPT_INT, .arg = "N", .lo = 0, .hi = 1 << 24,
     .help = "tokens replayed (0 = the whole trace)"},
    {.name = "output", .kind = KVS_OPT_STRING, .arg = "F.json", .help = "also write the JSON rows (atomically)"},
    JSON_FLAG, END};
static const kvs_option opts_recommend[] = {
    {.name = "trace", .kind = KVS_OPT_STRING, .arg = "T", .help = "trace file (default: the loaded one)"},
    {.name = "engine", .kind = KVS_OPT_STRING, .arg = "E", .choices = "llamacpp|vllm|mlx|tomturbo|transformers|all",
     .help = "engine whose KV formats are measured (default all)"},
    {.name = "context", .kind = KVS_OPT_INT, .arg = "N", .lo = 0, .hi = 1 << 30,
     .help = "tokens the KV memory is given at (0 = the trace's length)"},
    {.name = "budget-gb", .kind = KVS_OPT_DOUBLE, .arg = "G", .lo = 0, .hi = 1e9,
     .help = "KV memory budget at --context in GiB (2^30 bytes; 0 = none)"},
    {.name = "artifacts", .kind = KVS_OPT_STRING, .arg = "DIR",
     .help = "calibration artifacts: their method joins kvstudio's own candidates"},
    {.name = "seq-len", .kind = KVS_OPT_INT, .arg = "N", .lo = 0, .hi = 1 << 24,
     .help = "tokens replayed (0 = the whole trace)"},
    {.name = "model", .kind = KVS_OPT_STRING, .arg = "DIR",
     .help = "also run this checkpoint (the trace's shape) with each format: bits/byte, next-token KL vs fp16"},
    {.name = "text", .kind = KVS_OPT_STRING, .arg = "FILE",
     .help = "text --model scores (default sample_data/texts/textwrap-1k.py)"},
    {.name = "text-bytes", .kind = KVS_OPT_INT, .arg = "N", .lo = 0, .hi = 1 << 24,
     .help = "first N bytes of --text scored (default 128; 0 = all of it)"},
    JSON_FLAG, END};
#define MODEL_OPT {.name = "model", .kind = KVS_OPT_STRING, .arg = "DIR", \
                   .help = "Hugging Face checkpoint directory (llama, mistral, qwen2/3, gemma2/3, phi3); " \
                           "needed unless the studio was opened on one"}
#define ARTIFACTS_OPT {.name = "artifacts", .kind = KVS_OPT_STRING, .arg = "DIR", \
                       .help = "calibration artifacts (calibrated methods)"}
static const kvs_option opts_ppl[] = {
    MODEL_OPT,
    {.name = "text", .kind = KVS_OPT_STRING, .arg = "FILE", .help = "text scored (tokenizer.json of the model, or bytes)"},
    {.name = "tokens", .kind = KVS_OPT_STRING, .arg = "FILE", .help = "token ids instead of --text (.npy or text)"},
    {.name = "output", .kind = KVS_OPT_STRING, .arg = "F.json", .help = "also write the JSON result (atomically)"},
    {.name = "per-token", .kind = KVS_OPT_FLAG, .help = "JSON: every token's NLL in nats (token_nll_nats)"},
    ARTIFACTS_OPT, JSON_FLAG, END};
static const kvs_option opts_generate[] = {
    MODEL_OPT,
    {.name = "prompt", .kind = KVS_OPT_STRING, .arg = "TEXT", .help = "prompt text (tokenizer.json of the model, or bytes)"},
    {.name = "tokens", .kind = KVS_OPT_STRING, .arg = "FILE", .help = "prompt token ids instead of --prompt"},
    {.name = "max-tokens", .kind = KVS_OPT_INT, .arg = "N", .lo = 1, .hi = 1 << 20, .help = "tokens to generate (64)"},
    {.name = "temperature", .kind = KVS_OPT_DOUBLE, .arg = "T", .lo = 0, .hi = 100,
     .help = "sampling temperature (0 = greedy, the default)"},
    {.name = "seed", .kind = KVS_OPT_INT, .arg = "S", .lo = 0, .hi = INT_MAX_D,
     .help = "sampling seed (default: the config's seed)"},
    ARTIFACTS_OPT, END};
static const kvs_option opts_capture[] = {
    MODEL_OPT,
    {.name = "text", .kind = KVS_OPT_STRING, .arg = "FILE", .help = "text run through the model (tokenizer.json, or bytes)"},
    {.name = "out", .kind = KVS_OPT_STRING, .arg = "TRACE.safetensors", .required = true,
     .help = "kvtrace file written (atomically; the studio's default: the state directory, then opened)"},
    {.name = "tokens", .kind = KVS_OPT_STRING, .arg = "N|FILE", .help = "first N tokens of the text, or token ids"},
    ARTIFACTS_OPT, END};
static const kvs_option opts_grid[] = {
    MODEL_OPT,
    {.name = "methods", .kind = KVS_OPT_LIST, .arg = "a,b", .help = "key methods, at most 8 (default: the config's)"},
    {.name = "bits", .kind = KVS_OPT_LIST, .arg = "2,3,4", .lo = 1, .hi = 16,
     .help = "key bit widths, at most 6 (default 2,3,4)"},
    {.name = "value-bits", .kind = KVS_OPT_INT, .arg = "N", .lo = 2, .hi = 16,
     .help = "value bits of every cell: 2, 3, 4, 8 or 16 (default: the config's)"},
    {.name = "text", .kind = KVS_OPT_STRING, .arg = "FILE",
     .help = "text scored (default sample_data/texts/textwrap-1k.py)"},
    END};
static const kvs_option opts_tokenize[] = {
    {.name = "tokenizer", .kind = KVS_OPT_STRING, .arg = "PATH", .required = true,
     .help = "tokenizer.json, or a directory holding it"},
    {.name = "text", .kind = KVS_OPT_STRING, .arg = "FILE", .help = "text file to tokenize (instead of STRING)"},
    {.name = "no-special", .kind = KVS_OPT_FLAG, .help = "add no BOS/EOS (post-processor off)"},
    {.name = "each-line", .kind = KVS_OPT_FLAG, .help = "one result per input line"},
    JSON_FLAG, END};
static const kvs_option opts_precompute[] = {
    {.name = "method", .kind = KVS_OPT_STRING, .arg = "M", .required = true,
     .help = "calibrator: vecinfer, spectral, ratequant, rabitq or commvq"},
    {.name = "trace", .kind = KVS_OPT_STRING, .arg = "T", .required = true, .help = "trace calibrated on"},
    {.name = "output", .kind = KVS_OPT_STRING, .arg = "DIR", .required = true,
     .help = "artifact directory written (atomically)"},
    {.name = "quiet", .kind = KVS_OPT_FLAG, .help = "no summary of the artifacts"},
    END};

// Keep sorted by area; `help` prints in this order.
const kvs_command kvs_commands[] = {
    {.name = "load", .args = "PATH", .help = "open a trace (kvtrace .safetensors, .npy keys, mlx_lm cache)",
     .options = opts_load, .run = kvs_cmd_load},
    {.name = "info", .args = "[TRACE]",
     .help = "shape, key/value norms, outlier channels and d_eff per layer and kv head", .options = opts_json,
     .groups = KVS_OPTS_TRACE, .run = kvs_cmd_info},
    {.name = "methods", .help = "list quantization methods", .run = kvs_cmd_methods},
    {.name = "method", .args = "NAME", .help = "choose the key method", .run = kvs_cmd_method},
    {.name = "bits", .args = "N", .help = "key bits per coordinate", .run = kvs_cmd_bits},
    {.name = "value-bits", .args = "N", .help = "value bits: 2, 3, 4, 8 or 16 (= fp16)", .run = kvs_cmd_value_bits},
    {.name = "set", .args = "KEY=VALUE ...", .help = "set any config field (see `show`)", .groups = KVS_OPTS_CONFIG,
     .args_show_groups = true, .run = kvs_cmd_set},
    {.name = "show", .help = "print the current config", .options = opts_json, .run = kvs_cmd_show},
    {.name = "quantize", .args = "[TRACE]", .help = "encode every layer and head; bits held, MSE, cosine, q.k error",
     .options = opts_quantize, .groups = KVS_OPTS_TRACE | KVS_OPTS_CONFIG, .run = kvs_cmd_quantize},
    {.name = "benchmark", .help = "replay a trace through the caches with every observer attached",
     .options = opts_benchmark, .groups = KVS_OPTS_TRACE | KVS_OPTS_CONFIG, .run = kvs_cmd_benchmark},
    {.name = "compare", .help = "grid of methods x bits in one table", .options = opts_compare,
     .groups = KVS_OPTS_TRACE | KVS_OPTS_CONFIG, .run = kvs_cmd_compare},
    {.name = "recommend", .help = "which engine KV flag to set: every format measured on the trace, ranked",
     .options = opts_recommend, .groups = KVS_OPTS_TRACE, .run = kvs_cmd_recommend},
    {.name = "ppl", .help = "bits per byte of a text, and KL against the unquantized run", .options = opts_ppl,
     .groups = KVS_OPTS_CONFIG, .run = kvs_cmd_ppl},
    {.name = "generate", .help = "stream text from the model through the quantized cache", .options = opts_generate,
     .groups = KVS_OPTS_CONFIG, .run = kvs_cmd_generate},
    {.name = "capture", .help = "run the model and write a kvtrace file", .options = opts_capture,
     .groups = KVS_OPTS_CONFIG, .run = kvs_cmd_capture},
    {.name = "grid", .help = "bits/byte and KL vs fp16 of methods x key bits on the model (the studio's model view)",
     .options = opts_grid, .run = kvs_cmd_grid},
    {.name = "tokenize", .args = "[STRING]", .help = "token ids of a text under a Hugging Face tokenizer.json",
     .options = opts_tokenize, .run = kvs_cmd_tokenize},
    {.name = "precompute", .help = "calibrate and write artifacts atomically", .options = opts_precompute,
     .groups = KVS_OPTS_CALIB, .run = kvs_cmd_precompute},
    {.name = "calibrate", .args = "METHOD [KEY=VALUE ...]", .help = "calibrate on the loaded trace",
     .groups = KVS_OPTS_CALIB, .args_show_groups = true, .run = kvs_cmd_calibrate},
    {.name = "save", .args = "artifacts DIR [METHOD]",
     .help = "write the artifacts in use (or METHOD's set)", .run = kvs_cmd_save},
    {.name = "load-artifacts", .args = "DIR", .help = "load calibration artifacts", .run = kvs_cmd_load_artifacts},
    {.name = "run", .help = "run the current method on the trace (lab)", .run = kvs_cmd_run},
    {.name = "replay", .args = "[SPEED]",
     .help = "replay the trace through the caches (dashboard, SPEED tokens/tick; batch: to the end + report)",
     .run = kvs_cmd_replay},
    {.name = "play", .help = "start/resume the dashboard replay", .run = kvs_cmd_replay,
     .studio_only = "starts the studio's dashboard replay; in scripts use `replay` (runs it to the end)"},
    {.name = "pause", .help = "pause the replay", .run = kvs_cmd_pause,
     .studio_only = "pauses the studio's dashboard replay; in scripts `replay` runs to the end"},
    {.name = "step", .args = "[N]", .help = "advance the replay N tokens (1)", .run = kvs_cmd_step,
     .studio_only = "moves the studio's dashboard replay N tokens; in scripts use `replay`"},
    {.name = "view", .args = "NAME", .help = "switch the studio view", .run = kvs_cmd_view,
     .studio_only = "switches the studio's view; open the studio with `kvstudio [TRACE]`"},
    {.name = "export", .args = "json|csv|svg PATH [PLOT]", .help = "export runs, or a plot (the current one) as SVG",
     .run = kvs_cmd_export},
    {.name = "help", .args = "[COMMAND]", .help = "list commands or describe one", .run = kvs_cmd_help},
    {.name = "version", .help = "print the version", .run = kvs_cmd_version},
    {.name = "quit", .help = "leave", .run = kvs_cmd_quit},
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

static const kvs_option *option_find(const kvs_option *t, const char *key)
{
    for (; t && t->name; t++)
        if (keys_equal(t->name, key)) return t;
    return NULL;
}

static bool in_names(const char *const *names, const char *key)
{
    for (int i = 0; names[i]; i++)
        if (keys_equal(names[i], key)) return true;
    return false;
}

const kvs_option *kvs_command_option(const kvs_command *c, const char *key)
{
    const kvs_option *o = option_find(c->options, key);
    if (!o && (c->groups & KVS_OPTS_TRACE)) o = option_find(opts_load, key);
    return o;
}

// Which group declares key (KVS_OPTS_*), 0 when none of c's groups does.
static unsigned group_of(const kvs_command *c, const char *key)
{
    if ((c->groups & KVS_OPTS_TRACE) && option_find(opts_load, key)) return KVS_OPTS_TRACE;
    if ((c->groups & KVS_OPTS_CONFIG) && in_names(kvq_config_field_names(), key)) return KVS_OPTS_CONFIG;
    if ((c->groups & KVS_OPTS_CALIB) && (in_names(kvq_calib_opts_names(), key) || keys_equal(key, "model")))
        return KVS_OPTS_CALIB;
    return 0;
}

static bool parse_flag(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"}, *const no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(v, yes[i])) return *out = true, true;
        if (!strcmp(v, no[i])) return *out = false, true;
    }
    return false;
}

static bool parse_long(const char *v, double lo, double hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return false;
    *out = x;
    return true;
}

static bool one_of(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

// The value of an own option against its entry; an error names both.
static int check_value(kvs_session *s, const kvs_command *c, const kvs_option *o, const char *v)
{
    long x;
    bool b;
    switch (o->kind) {
    case KVS_OPT_FLAG:
        if (!parse_flag(v, &b))
            return kvs_errorf(s, "%s: --%s is a flag: '%s' is not true or false", c->name, o->name, v);
        return 0;
    case KVS_OPT_INT:
        if (!parse_long(v, o->lo, o->hi, &x))
            return kvs_errorf(s, "%s: --%s: '%s' is not an integer in %.0f..%.0f", c->name, o->name, v, o->lo, o->hi);
        return 0;
    case KVS_OPT_DOUBLE: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(d) || (o->lo < o->hi && (d < o->lo || d > o->hi)))
            return o->lo < o->hi
                       ? kvs_errorf(s, "%s: --%s: '%s' is not a number in %g..%g", c->name, o->name, v, o->lo, o->hi)
                       : kvs_errorf(s, "%s: --%s: '%s' is not a number", c->name, o->name, v);
        return 0;
    }
    case KVS_OPT_STRING:
        if (!*v) return kvs_errorf(s, "%s: --%s: empty value (expected %s)", c->name, o->name, o->arg);
        if (o->choices && !one_of(o->choices, v))
            return kvs_errorf(s, "%s: --%s '%s' unknown (expected %s)", c->name, o->name, v, o->choices);
        return 0;
    case KVS_OPT_LIST: {
        int items = 0;
        for (const char *p = v; *p;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            char item[64];
            if (len == 0 || len >= sizeof item) break;
            memcpy(item, p, len);
            item[len] = 0;
            if (o->lo < o->hi && !parse_long(item, o->lo, o->hi, &x))
                return kvs_errorf(s, "%s: --%s: '%s' is not an integer in %.0f..%.0f", c->name, o->name, item,
                                  o->lo, o->hi);
            items++;
            if (!comma) return 0;
            p = comma + 1;
        }
        return kvs_errorf(s, "%s: --%s: '%s' is not a comma-separated list like %s", c->name, o->name, v, o->arg);
    }
    }
    return 0;
}

// "quantize: unknown option 'frob' (known: tokens, layers, ..., method, bits, ...)"
static int unknown_option(kvs_session *s, const kvs_command *c, const char *key)
{
    char known[1024] = "";
    size_t len = 0;
    const kvs_option *tables[2] = {c->options, (c->groups & KVS_OPTS_TRACE) ? opts_load : NULL};
    for (int t = 0; t < 2; t++)
        for (const kvs_option *o = tables[t]; o && o->name && len < sizeof known; o++)
            len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", o->name);
    const char *const *groups[2] = {(c->groups & KVS_OPTS_CONFIG) ? kvq_config_field_names() : NULL,
                                    (c->groups & KVS_OPTS_CALIB) ? kvq_calib_opts_names() : NULL};
    for (int g = 0; g < 2; g++)
        for (int i = 0; groups[g] && groups[g][i] && len < sizeof known; i++)
            if (!option_find(c->options, groups[g][i]))
                len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", len ? ", " : "", groups[g][i]);
    if (c->groups & KVS_OPTS_CALIB && len < sizeof known) snprintf(known + len, sizeof known - len, ", model");
    if (!known[0]) return kvs_errorf(s, "%s: unknown option '%s' (%s takes no options)", c->name, key, c->name);
    return kvs_errorf(s, "%s: unknown option '%s' (known: %s)", c->name, key, known);
}

int kvs_args_parse(kvs_session *s, const kvs_command *c, int argc, char **argv, kvs_args *a)
{
    memset(a, 0, sizeof *a);
    a->cmd = c;
    for (int i = 0; i < argc; i++) {
        char *t = argv[i], *key = NULL, *val = NULL;
        bool dashed = t[0] == '-' && t[1] == '-' && t[2];
        if (dashed) {
            key = t + 2;
        } else if (strchr(t, '=') && t[0] != '=' && t[0] != '/' && t[0] != '.') {
            key = t;
        } else {
            if (a->npos >= KVS_MAX_ARGS) return kvs_errorf(s, "%s: too many arguments", c->name);
            a->pos[a->npos++] = t;
            continue;
        }
        char *eq = strchr(key, '=');
        if (eq) *eq = 0, val = eq + 1;
        const kvs_option *o = option_find(c->options, key);
        if (!o && !group_of(c, key)) return unknown_option(s, c, key);
        if (!val) {   // --key VALUE; a flag takes none
            bool next = i + 1 < argc && !(argv[i + 1][0] == '-' && argv[i + 1][1] == '-');
            if (o && o->kind == KVS_OPT_FLAG) val = "true";
            else if (next) val = argv[++i];
            else if (o) return kvs_errorf(s, "%s: --%s expects a value (%s)", c->name, o->name, o->arg);
            else val = "true";   // a bool config/calibration field: --use-hadamard
        }
        if (o && check_value(s, c, o, val)) return -1;
        if (a->nopt >= KVS_MAX_ARGS) return kvs_errorf(s, "%s: too many options", c->name);
        a->key[a->nopt] = key;
        a->val[a->nopt++] = val;
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
    bool b = false;
    return i >= 0 && parse_flag(a->val[i], &b) && b;
}

long kvs_opt_int(kvs_args *a, const char *key, long def)
{
    int i = opt_index(a, key);
    return i < 0 ? def : strtol(a->val[i], NULL, 10);   // checked by the parser
}

double kvs_opt_double(kvs_args *a, const char *key, double def)
{
    int i = opt_index(a, key);
    return i < 0 ? def : strtod(a->val[i], NULL);
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
        if (!a->used[i] && !(a->cmd && (a->cmd->groups & KVS_OPTS_TRACE) && option_find(opts_load, a->key[i])))
            return kvs_errorf(s, "%s: option '%s' is declared but not read (a bug: please report it)", cmd,
                              a->key[i]);
    return 0;
}

int kvs_args_trace_from(kvs_session *s, kvs_args *a, const char *path)
{
    kvq_trace_opts o = {0};
    o.values_path = kvs_opt_str(a, "values", NULL);
    o.npy_dtype_bf16 = kvs_opt_str(a, "dtype", NULL) != NULL;   // the parser allows bf16 only
    const char *cmd = a->cmd ? a->cmd->name : "trace";
    if (!path && a->npos > 0) path = a->pos[0];
    if (path) return kvs_session_load(s, path, &o);
    if (o.values_path || o.npy_dtype_bf16)
        return kvs_errorf(s, "%s: --values and --dtype apply to a trace given on this command line", cmd);
    if (s->trace) return 0;
    if (a->cmd && option_find(a->cmd->options, "trace"))
        return kvs_errorf(s, "no trace loaded: %s takes --trace FILE (or `load FILE` before it in a script)", cmd);
    return kvs_errorf(s, "no trace loaded: %s takes a TRACE argument (or `load TRACE` before it in a script)", cmd);
}

int kvs_args_trace(kvs_session *s, kvs_args *a) { return kvs_args_trace_from(s, a, NULL); }

// ---- usage and help, from the same tables ----
static void append(char *buf, size_t n, size_t *len, const char *fmt, const char *a1, const char *a2)
{
    if (*len < n) *len += (size_t)snprintf(buf + *len, n - *len, fmt, a1, a2);
}

void kvs_command_usage(const kvs_command *c, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    append(buf, n, &len, "%s%s", c->name, "");
    if (c->args) append(buf, n, &len, " %s%s", c->args, "");
    for (const kvs_option *o = c->options; o && o->name; o++) {
        const char *fmt = o->kind == KVS_OPT_FLAG ? (o->required ? " --%s" : " [--%s]")
                                                  : (o->required ? " --%s %s" : " [--%s %s]");
        append(buf, n, &len, fmt, o->name, o->arg ? o->arg : "");
    }
    if (c->args_show_groups) return;
    if (c->groups & KVS_OPTS_TRACE) append(buf, n, &len, " [load options]%s%s", "", "");
    if (c->groups & KVS_OPTS_CONFIG) append(buf, n, &len, " [config options]%s%s", "", "");
    if (c->groups & KVS_OPTS_CALIB) append(buf, n, &len, " [calibration options]%s%s", "", "");
}

static void option_line(kvs_session *s, const char *name, const char *arg, const char *values, const char *help)
{
    char left[160];
    snprintf(left, sizeof left, "--%s%s%s", name, arg ? " " : "", arg ? arg : "");
    kvs_printf(s, "  %-26s %-22s %s", left, values, help);
}

static void own_values(const kvs_option *o, char *buf, size_t n)
{
    switch (o->kind) {
    case KVS_OPT_FLAG: snprintf(buf, n, "flag"); break;
    case KVS_OPT_INT: snprintf(buf, n, "integer %.0f..%.0f", o->lo, o->hi); break;
    case KVS_OPT_DOUBLE: o->lo < o->hi ? snprintf(buf, n, "number %g..%g", o->lo, o->hi) : snprintf(buf, n, "number"); break;
    case KVS_OPT_STRING: o->choices ? snprintf(buf, n, "one of %s", o->choices) : snprintf(buf, n, "text"); break;
    case KVS_OPT_LIST:
        o->lo < o->hi ? snprintf(buf, n, "list of %.0f..%.0f", o->lo, o->hi) : snprintf(buf, n, "list");
        break;
    }
}

// Names wrapped into lines of about 96 columns.
static void name_lines(kvs_session *s, const char *const *names, const char *prefix, const char *extra)
{
    char line[256] = "";
    size_t len = 0;
    for (int i = 0; names[i] || extra; i++) {
        const char *nm = names[i] ? names[i] : extra;
        char d[64];
        snprintf(d, sizeof d, "%s%s", prefix, nm);
        for (char *p = d; *p; p++)
            if (*p == '_') *p = '-';
        if (len + strlen(d) + 1 > 96) {
            kvs_printf(s, "  %s", line);
            len = 0;
            line[0] = 0;
        }
        len += (size_t)snprintf(line + len, sizeof line - len, "%s%s", len ? " " : "", d);
        if (!names[i]) break;
    }
    if (len) kvs_printf(s, "  %s", line);
}

void kvs_command_print_help(kvs_session *s, const kvs_command *c)
{
    char u[1024], v[96];
    kvs_command_usage(c, u, sizeof u);
    kvs_printf(s, "usage: %s", u);
    kvs_printf(s, "  %s", c->help);
    if (c->studio_only) kvs_printf(s, "  studio only: %s", c->studio_only);
    if (c->options && c->options->name) {
        kvs_printf(s, "options:");
        for (const kvs_option *o = c->options; o->name; o++) {
            own_values(o, v, sizeof v);
            option_line(s, o->name, o->arg, v, o->help);
        }
    }
    if (c->groups & KVS_OPTS_TRACE) {
        kvs_printf(s, "load options (how the trace given here is read, as by `load`):");
        for (const kvs_option *o = opts_load; o->name; o++) {
            own_values(o, v, sizeof v);
            option_line(s, o->name, o->arg, v, o->help);
        }
    }
    if (c->groups & KVS_OPTS_CONFIG) {
        kvs_printf(s, "config options (kvq_config fields, as --KEY VALUE or KEY=VALUE; `show` prints the current values):");
        const char *const *names = kvq_config_field_names();
        for (int i = 0; names[i]; i++) {
            kvq_config_field_info fi;
            char d[64];
            snprintf(d, sizeof d, "%s", names[i]);
            for (char *p = d; *p; p++)
                if (*p == '_') *p = '-';
            if (option_find(c->options, d)) continue;   // the command's own option of that name wins
            if (kvq_config_field_describe(names[i], &fi)) continue;
            option_line(s, d, NULL, fi.values, fi.help);
        }
    }
    if (c->groups & KVS_OPTS_CALIB) {
        kvs_printf(s, "calibration options (KEY=VALUE or --KEY VALUE; kvq_calib_opts in engine/calib/calib.h "
                      "describes each):");
        name_lines(s, kvq_calib_opts_names(), "--", "model");
    }
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
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help")) {
            kvs_command_print_help(s, c);
            return 0;
        }
    if (c->studio_only && !s->interactive) return kvs_errorf(s, "%s: %s", c->name, c->studio_only);
    kvs_args a;
    if (kvs_args_parse(s, c, argc - 1, argv + 1, &a)) return -1;
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
    kvs_session_try_select_art(s);   // the command may have changed the method
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

// Length of the UTF-8 sequence at p (up to end), 0 when malformed
// (overlong forms, surrogates and code points past U+10FFFF included).
static int utf8_len(const unsigned char *p, const unsigned char *end)
{
    int n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
    if (p[0] < 0xc2 || p[0] > 0xf4 || end - p < n) return 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) || (p[0] == 0xf0 && p[1] < 0x90) ||
        (p[0] == 0xf4 && p[1] > 0x8f))
        return 0;
    return n;
}

// A script line (its LF / CRLF end removed) must be text: a NUL used to cut
// the line short and a bare CR (old Mac line ends) to hide every later
// command, both silently. Error naming the byte and column, or 0.
static int check_text_line(kvs_session *s, const char *line, size_t n)
{
    const unsigned char *p = (const unsigned char *)line, *end = p + n;
    for (const unsigned char *q = p; q < end;) {
        long col = (long)(q - p) + 1;
        if (*q == '\r')
            return kvs_errorf(s, "bare carriage return (CR) at column %ld: line ends must be LF or CRLF", col);
        if ((*q < 0x20 && *q != '\t') || *q == 0x7f)
            return kvs_errorf(s, "byte 0x%02x at column %ld is not text (a binary file?)", *q, col);
        if (*q < 0x80) {
            q++;
            continue;
        }
        int k = utf8_len(q, end);
        if (!k) return kvs_errorf(s, "byte 0x%02x at column %ld is not UTF-8 text (a binary file?)", *q, col);
        q += k;
    }
    return 0;
}

int kvs_run_script(kvs_session *s, FILE *f, const char *name)
{
    script_ctx ctx = {.out = s->out, .user = s->out_user, .name = name};
    s->out = script_out;
    s->out_user = &ctx;
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    ssize_t n;
    errno = 0;
    while (!s->quit && (n = getline(&line, &cap, f)) > 0) {
        ctx.line++;
        if (line[n - 1] == '\n') n--;
        if (n > 0 && line[n - 1] == '\r') n--;   // CRLF
        line[n] = 0;
        if (check_text_line(s, line, (size_t)n) || kvs_exec_line(s, line)) {
            rc = -1;
            break;
        }
        errno = 0;
    }
    if (!rc && !s->quit && ferror(f)) {
        ctx.line++;
        rc = kvs_errorf(s, "cannot read: %s", strerror(errno ? errno : EIO));
    }
    free(line);
    s->out = ctx.out;
    s->out_user = ctx.user;
    return rc;
}
