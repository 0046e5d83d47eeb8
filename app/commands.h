// commands.h — the one command language: the studio's `:` prompt,
// `kvstudio --script FILE`, stdin, and CLI subcommands (`kvstudio info T`
// runs the command `info T`). One table (commands.c) lists every command
// with its options; the parser, `COMMAND --help`, `help` and the prompt's
// completion are all generated from it.
#ifndef KVS_COMMANDS_H
#define KVS_COMMANDS_H
#include "session.h"

// What an option's value is. The parser checks it against the entry
// (range, choices) before the handler runs, so getters cannot fail.
typedef enum {
    KVS_OPT_FLAG,     // --json (no separate value; --json=false allowed)
    KVS_OPT_INT,      // integer in lo..hi
    KVS_OPT_DOUBLE,   // finite number in lo..hi (no bound when lo == hi)
    KVS_OPT_STRING,   // any text, or one of `choices`
    KVS_OPT_LIST,     // comma-separated items; integers in lo..hi when lo < hi
} kvs_opt_kind;

typedef struct kvs_option {
    const char *name;       // dashed: "seq-len" (underscores accepted when typed)
    kvs_opt_kind kind;
    const char *arg;        // value placeholder in usage lines: "N", "FILE"; NULL for flags
    double lo, hi;          // KVS_OPT_INT / _DOUBLE / _LIST range, inclusive
    const char *choices;    // KVS_OPT_STRING: "bf16" or "a|b|c"; NULL = any text
    bool required;          // the handler refuses to run without it (usage shows no brackets)
    const char *help;       // one line
} kvs_option;

// Option groups a command accepts besides its own table:
enum {
    KVS_OPTS_TRACE = 1,    // --values, --dtype: how a TRACE given to the command is read (as `load`)
    KVS_OPTS_CONFIG = 2,   // every kvq_config field (--method, --bits, --value-bits, ...)
    KVS_OPTS_CALIB = 4,    // every kvq_calib_opts field and `model` (calibration)
};

// Parsed arguments: positionals plus options. Accepted option spellings:
// `--key value`, `--key=value`, `key=value`, and `--flag`. Dashes and
// underscores in keys are equivalent. Every option is one the command
// declares (own table or group); its value has been checked.
#define KVS_MAX_ARGS 64
struct kvs_command;
typedef struct kvs_args {
    const struct kvs_command *cmd;
    int npos;
    const char *pos[KVS_MAX_ARGS];
    int nopt;
    const char *key[KVS_MAX_ARGS];
    const char *val[KVS_MAX_ARGS];
    bool used[KVS_MAX_ARGS];      // set by the getters; leftovers are "not read" errors
} kvs_args;

typedef struct kvs_command {
    const char *name;             // "quantize"
    const char *args;             // positionals in the usage line: "[TRACE]", "NAME" (NULL: none)
    const char *help;             // one line
    const kvs_option *options;    // own options, ended by an entry with name NULL; may be NULL
    unsigned groups;              // KVS_OPTS_* also accepted
    bool args_show_groups;        // `args` already shows how group options are written (set, calibrate)
    int (*run)(kvs_session *s, kvs_args *a);   // 0 ok, -1 error (already printed)
    const char *studio_only;      // NULL: works in batch; else why it needs the studio (the batch error)
} kvs_command;

extern const kvs_command kvs_commands[];
extern const int kvs_n_commands;
const kvs_command *kvs_command_find(const char *name);

// The usage line, generated from the tables: "quantize [TRACE] [--tokens N] ...".
void kvs_command_usage(const kvs_command *c, char *buf, size_t n);
// Parse argv (the words after the command name) for command c into a:
// unknown options and malformed values are errors naming the option and
// what was expected. Keeps pointers into argv (and writes NULs into it).
int kvs_args_parse(kvs_session *s, const kvs_command *c, int argc, char **argv, kvs_args *a);
// The table entry of option key for c (own, or the load group's); NULL for
// config/calibration fields and options c does not take.
const kvs_option *kvs_command_option(const kvs_command *c, const char *key);
// Print `COMMAND --help`: usage, help, and every option with its value.
void kvs_command_print_help(kvs_session *s, const kvs_command *c);

// Option getters (mark the option used). Return the default when absent;
// the parser already checked the value against the command's table.
const char *kvs_opt_str(kvs_args *a, const char *key, const char *def);
bool kvs_opt_flag(kvs_args *a, const char *key);
// Whether an option was given at all (does not mark it used).
bool kvs_opt_given(const kvs_args *a, const char *key);
long kvs_opt_int(kvs_args *a, const char *key, long def);
double kvs_opt_double(kvs_args *a, const char *key, double def);
// Error for the first option the handler did not read (a declared option
// the handler ignores); load options are read later by kvs_args_trace.
int kvs_args_check_unused(kvs_session *s, kvs_args *a, const char *cmd);
// Apply every remaining option whose key is a kvq_config field to cfg
// (method, bits, value-bits, use-hadamard, ...). -1 on a bad value.
int kvs_args_apply_config(kvs_session *s, kvs_args *a, kvq_config *cfg);
// Ensure a trace: `path` when not NULL (e.g. --trace), else the first
// positional, loaded with the load options (--values, --dtype) into the
// session; else the session's current one. Error naming how this command
// takes a trace when there is none.
int kvs_args_trace_from(kvs_session *s, kvs_args *a, const char *path);
int kvs_args_trace(kvs_session *s, kvs_args *a);

// Tokenize (shell-like quotes) and run one line. Blank lines and `#` comments
// are no-ops. Returns 0 / -1.
int kvs_exec_line(kvs_session *s, const char *line);
int kvs_exec_argv(kvs_session *s, int argc, char **argv);
// Run a script; an error stops it and prints "FILE:LINE: message". A line
// that is not text (NUL, control bytes, invalid UTF-8) or holds a bare CR
// (old Mac line ends) is such an error: nothing of it is run. Line ends are
// LF or CRLF. Returns 0 / -1.
int kvs_run_script(kvs_session *s, FILE *f, const char *name);
#endif
