// commands.h — the one command language: the studio's `:` prompt,
// `kvstudio --script FILE`, stdin, and CLI subcommands (`kvstudio info T`
// runs the command `info T`). One table (commands.c) lists every command;
// help and completion are generated from it.
#ifndef KVS_COMMANDS_H
#define KVS_COMMANDS_H
#include "session.h"

// Parsed arguments: positionals plus options. Accepted option spellings:
// `--key value`, `--key=value`, `key=value`, and `--flag` (value "true").
// Dashes and underscores in keys are equivalent.
#define KVS_MAX_ARGS 64
typedef struct kvs_args {
    int npos;
    const char *pos[KVS_MAX_ARGS];
    int nopt;
    const char *key[KVS_MAX_ARGS];
    const char *val[KVS_MAX_ARGS];
    bool used[KVS_MAX_ARGS];      // set by the getters; leftovers are "unknown option"
} kvs_args;

typedef struct kvs_command {
    const char *name;             // "quantize"
    const char *usage;            // "quantize [TRACE] --method M --bits B [--json]"
    const char *help;             // one line
    const char *const *options;   // option names for help/completion (NULL-terminated), may be NULL
    int (*run)(kvs_session *s, kvs_args *a);   // 0 ok, -1 error (already printed)
    bool batch_ok;                // usable as a CLI subcommand / in scripts without the studio
} kvs_command;

extern const kvs_command kvs_commands[];
extern const int kvs_n_commands;
const kvs_command *kvs_command_find(const char *name);

// Option getters (mark the option used). Return the default when absent;
// on a malformed value print an error naming the option and return -1
// from the *_int/_double forms through *ok = false.
const char *kvs_opt_str(kvs_args *a, const char *key, const char *def);
bool kvs_opt_flag(kvs_args *a, const char *key);
// Whether an option was given at all (does not mark it used).
bool kvs_opt_given(const kvs_args *a, const char *key);
long kvs_opt_int(kvs_session *s, kvs_args *a, const char *key, long def, long lo, long hi, bool *ok);
double kvs_opt_double(kvs_session *s, kvs_args *a, const char *key, double def, bool *ok);
// Error for the first option no getter consumed; call after reading options.
int kvs_args_check_unused(kvs_session *s, kvs_args *a, const char *cmd);
// Apply every remaining option whose key is a kvq_config field to cfg
// (method, bits, value-bits, use-hadamard, ...). -1 on a bad value.
int kvs_args_apply_config(kvs_session *s, kvs_args *a, kvq_config *cfg);
// Ensure a trace: the first positional (loaded into the session) or the
// session's current one; error when neither.
int kvs_args_trace(kvs_session *s, kvs_args *a);

// Tokenize (shell-like quotes) and run one line. Blank lines and `#` comments
// are no-ops. Returns 0 / -1.
int kvs_exec_line(kvs_session *s, const char *line);
int kvs_exec_argv(kvs_session *s, int argc, char **argv);
// Run a script; an error stops it and prints "FILE:LINE: message". Returns 0 / -1.
int kvs_run_script(kvs_session *s, FILE *f, const char *name);
#endif
