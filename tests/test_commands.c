// test_commands.c — the command language: tokenizing, options, config
// commands, errors with file:line in scripts, help generated from the table.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>
#include "commands.h"
#include "progress.h"

typedef struct {
    char out[16384];
    char err[4096];
} capture;

static void sink(void *user, bool is_error, const char *line)
{
    capture *c = user;
    char *dst = is_error ? c->err : c->out;
    size_t cap = is_error ? sizeof c->err : sizeof c->out;
    size_t len = strlen(dst);
    snprintf(dst + len, cap - len, "%s\n", line);
}

static void session(kvs_session *s, capture *c)
{
    kvs_session_init(s);
    memset(c, 0, sizeof *c);
    s->out = sink;
    s->out_user = c;
}

static void test_config_commands(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    assert_int_equal(kvs_exec_line(&s, "method turboquant_prod"), 0);
    assert_string_equal(s.cfg.method, "turboquant_prod");
    assert_int_equal(kvs_exec_line(&s, "bits 4"), 0);
    assert_int_equal(s.cfg.bits, 4);
    assert_int_equal(kvs_exec_line(&s, "set value-bits=3 use_hadamard=false --seed 7"), 0);
    assert_int_equal(s.cfg.value_bits, 3);
    assert_false(s.cfg.use_hadamard);
    assert_int_equal(s.cfg.seed, 7);
    // a failing set changes nothing, not even the valid parts
    assert_int_equal(kvs_exec_line(&s, "set value-bits=4 bits=99"), -1);
    assert_int_equal(s.cfg.value_bits, 3);
    assert_non_null(strstr(c.err, "bits"));
    assert_int_equal(kvs_exec_line(&s, "bits 0"), -1);
    assert_int_equal(kvs_exec_line(&s, "bits 17"), -1);
    assert_int_equal(s.cfg.bits, 4);
    assert_int_equal(kvs_exec_line(&s, "method nosuch"), -1);
    assert_non_null(strstr(c.err, "unknown method 'nosuch'"));
    // switching method clamps bits into the new method's range
    assert_int_equal(kvs_exec_line(&s, "method q8_0"), 0);
    assert_int_equal(s.cfg.bits, 8);
    kvs_session_free(&s);
}

static void test_quotes_and_comments(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    assert_int_equal(kvs_exec_line(&s, "   # a comment"), 0);
    assert_int_equal(kvs_exec_line(&s, ""), 0);
    assert_int_equal(kvs_exec_line(&s, "set artifacts='/tmp/my dir' # trailing"), 0);
    assert_string_equal(s.cfg.artifacts, "/tmp/my dir");
    assert_int_equal(kvs_exec_line(&s, "set rotations=\"a\\\"b\""), 0);
    assert_string_equal(s.cfg.rotations, "a\"b");
    assert_int_equal(kvs_exec_line(&s, "set artifacts='unterminated"), -1);
    assert_non_null(strstr(c.err, "unterminated"));
    kvs_session_free(&s);
}

static void test_unknown_and_help(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    assert_int_equal(kvs_exec_line(&s, "frobnicate"), -1);
    assert_non_null(strstr(c.err, "unknown command 'frobnicate'"));
    assert_int_equal(kvs_exec_line(&s, "help"), 0);
    for (int i = 0; i < kvs_n_commands; i++) {
        char u[1024];
        kvs_command_usage(&kvs_commands[i], u, sizeof u);
        assert_non_null(strstr(c.out, u));
    }
    c.out[0] = 0;
    assert_int_equal(kvs_exec_line(&s, "info --help"), 0);
    assert_non_null(strstr(c.out, "usage: info"));
    assert_int_equal(kvs_exec_line(&s, "help nosuch"), -1);
    assert_int_equal(kvs_exec_line(&s, "info"), -1);
    assert_non_null(strstr(c.err, "no trace loaded"));
    assert_int_equal(kvs_exec_line(&s, "show --bogus"), -1);
    assert_non_null(strstr(c.err, "unknown option 'bogus'"));
    kvs_session_free(&s);
}

static void test_script_errors_name_line(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    const char *text = "# setup\nbits 2\n\nwibble 3\nbits 4\n";
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    assert_int_equal(kvs_run_script(&s, f, "my.kvs"), -1);
    fclose(f);
    assert_non_null(strstr(c.err, "my.kvs:4: unknown command 'wibble'"));
    assert_int_equal(s.cfg.bits, 2);   // stopped at the error
    assert_ptr_equal(s.out, sink);     // output routing restored
    text = "bits 2\nquit\nbits 4\n";
    f = fmemopen((void *)text, strlen(text), "r");
    assert_int_equal(kvs_run_script(&s, f, "q.kvs"), 0);
    fclose(f);
    assert_true(s.quit);
    assert_int_equal(s.cfg.bits, 2);
    kvs_session_free(&s);
}

static void test_load_errors(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    assert_int_equal(kvs_exec_line(&s, "load /nonexistent/trace.safetensors"), -1);
    assert_non_null(strstr(c.err, "/nonexistent/trace.safetensors"));
    assert_null(s.trace);
    assert_int_equal(kvs_exec_line(&s, "load a b"), -1);
    assert_int_equal(kvs_exec_line(&s, "load x --dtype f64"), -1);
    kvs_session_free(&s);
}


// A value the parser accepts for option name of c ("1" for config and
// calibration fields: the handlers check those).
static const char *value_for(const kvs_command *c, const char *name, char *buf, size_t n)
{
    const kvs_option *o = kvs_command_option(c, name);
    if (!o) return "1";
    switch (o->kind) {
    case KVS_OPT_FLAG: return NULL;
    case KVS_OPT_INT:
    case KVS_OPT_DOUBLE: snprintf(buf, n, "%.0f", o->lo); return buf;
    case KVS_OPT_STRING:
        if (!o->choices) return "x";
        snprintf(buf, n, "%.*s", (int)strcspn(o->choices, "|"), o->choices);
        return buf;
    case KVS_OPT_LIST: return o->lo < o->hi ? (snprintf(buf, n, "%.0f", o->lo), buf) : "x";
    }
    return "1";
}

static int parse_one(kvs_session *s, const kvs_command *c, const char *name)
{
    char opt[96], vb[64];
    snprintf(opt, sizeof opt, "--%s", name);
    const char *v = value_for(c, name, vb, sizeof vb);
    char *argv[2] = {opt, (char *)v};
    kvs_args a;
    return kvs_args_parse(s, c, v ? 2 : 1, argv, &a);
}

// Every option `COMMAND --help` prints is accepted by the parser; an
// unlisted one is rejected; every option of the table is in the help; and
// running the command with it never says the handler ignored it.
static void test_help_matches_parser(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    for (int i = 0; i < kvs_n_commands; i++) {
        const kvs_command *k = &kvs_commands[i];
        char line[128];
        snprintf(line, sizeof line, "%s --help", k->name);
        c.out[0] = c.err[0] = 0;
        assert_int_equal(kvs_exec_line(&s, line), 0);   // works in batch too, studio-only commands included
        char help[sizeof c.out];
        memcpy(help, c.out, sizeof help);
        int listed = 0;
        for (char *p = strstr(help, "--"); p; p = strstr(p + 2, "--")) {
            if (p > help && p[-1] != ' ' && p[-1] != '[') continue;
            char name[64];
            size_t n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz0123456789-_");
            if (n == 0 || n >= sizeof name || !strncmp(p + 2, "help", 4)) continue;
            snprintf(name, sizeof name, "%.*s", (int)n, p + 2);
            c.err[0] = 0;
            if (parse_one(&s, k, name)) fail_msg("%s --help lists --%s but the parser rejects it: %s", k->name, name, c.err);
            listed++;
        }
        for (const kvs_option *o = k->options; o && o->name; o++) {
            char want[80];
            snprintf(want, sizeof want, "--%s", o->name);
            if (!strstr(help, want)) fail_msg("%s: option %s missing from its help", k->name, want);
            // the handler reads it: no "unknown option", no "declared but not read"
            char vb[64], cmdline[256];
            const char *v = value_for(k, o->name, vb, sizeof vb);
            snprintf(cmdline, sizeof cmdline, "%s --%s%s%s", k->name, o->name, v ? "=" : "", v ? v : "");
            c.err[0] = 0;
            kvs_exec_line(&s, cmdline);
            if (strstr(c.err, "unknown option") || strstr(c.err, "not read"))
                fail_msg("%s: %s", cmdline, c.err);
        }
        if (k->options && k->options->name) assert_true(listed > 0);
        c.err[0] = 0;
        assert_int_not_equal(parse_one(&s, k, "no-such-option"), 0);
        assert_non_null(strstr(c.err, "unknown option 'no-such-option'"));
    }
    kvs_session_free(&s);
}

static bool accepts(kvs_session *s, const char *cmd, const char *opt)
{
    return parse_one(s, kvs_command_find(cmd), opt) == 0;
}

// ppl, generate and capture each have their own options (they shared one
// list, so each help offered options the command then rejected).
static void test_model_command_options(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    static const char *const ppl_yes[] = {"model", "text", "tokens", "output", "artifacts", "json", "method", "bits",
                                          "value-bits", NULL};
    static const char *const ppl_no[] = {"prompt", "max-tokens", "temperature", "out", NULL};
    static const char *const gen_yes[] = {"model", "prompt", "tokens", "max-tokens", "temperature", "seed",
                                          "artifacts", "method", "residual-length", NULL};
    static const char *const gen_no[] = {"text", "output", "out", "json", NULL};
    static const char *const cap_yes[] = {"model", "text", "out", "tokens", "artifacts", "method", "bits", NULL};
    static const char *const cap_no[] = {"prompt", "max-tokens", "output", "json", "temperature", NULL};
    const struct { const char *cmd; const char *const *yes, *const *no; } sets[] = {
        {"ppl", ppl_yes, ppl_no}, {"generate", gen_yes, gen_no}, {"capture", cap_yes, cap_no}};
    for (int k = 0; k < 3; k++) {
        char line[64];
        snprintf(line, sizeof line, "%s --help", sets[k].cmd);
        c.out[0] = 0;
        assert_int_equal(kvs_exec_line(&s, line), 0);
        for (const char *const *y = sets[k].yes; *y; y++) {
            if (!accepts(&s, sets[k].cmd, *y)) fail_msg("%s rejects --%s", sets[k].cmd, *y);
            char want[64];
            snprintf(want, sizeof want, "--%s ", *y);
            if (!strstr(c.out, want)) fail_msg("%s --help lacks %s", sets[k].cmd, want);
        }
        for (const char *const *n = sets[k].no; *n; n++) {
            if (accepts(&s, sets[k].cmd, *n)) fail_msg("%s accepts --%s", sets[k].cmd, *n);
            char bad[64];
            snprintf(bad, sizeof bad, "--%s ", *n);
            if (strstr(c.out, bad)) fail_msg("%s --help lists %s", sets[k].cmd, bad);
        }
    }
    // values are checked against the table before the handler runs
    c.err[0] = 0;
    assert_int_equal(kvs_exec_line(&s, "generate --model m --prompt x --max-tokens 0"), -1);
    assert_non_null(strstr(c.err, "generate: --max-tokens: '0' is not an integer in 1..1048576"));
    assert_int_equal(kvs_exec_line(&s, "generate --model m --temperature -1"), -1);
    assert_non_null(strstr(c.err, "--temperature: '-1' is not a number in 0..100"));
    assert_int_equal(kvs_exec_line(&s, "compare --bits 2,x"), -1);
    assert_non_null(strstr(c.err, "compare: --bits: 'x' is not an integer in 1..16"));
    assert_int_equal(kvs_exec_line(&s, "ppl --model"), -1);
    assert_non_null(strstr(c.err, "ppl: --model expects a value (DIR)"));
    kvs_session_free(&s);
}

// A flag takes no separate value: `info --json TRACE` reads TRACE as the trace.
static void test_flag_takes_no_value(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    kvs_args a;
    char w0[] = "--json", w1[] = "tests/data/tr_valid.safetensors";
    char *argv[] = {w0, w1};
    assert_int_equal(kvs_args_parse(&s, kvs_command_find("info"), 2, argv, &a), 0);
    assert_int_equal(a.npos, 1);
    assert_string_equal(a.pos[0], "tests/data/tr_valid.safetensors");
    assert_true(kvs_opt_flag(&a, "json"));
    kvs_session_free(&s);
}

static int script(kvs_session *s, const char *text, size_t n, const char *name)
{
    FILE *f = fmemopen((void *)text, n, "r");
    assert_non_null(f);
    int rc = kvs_run_script(s, f, name);
    fclose(f);
    return rc;
}

// NUL bytes, control bytes, invalid UTF-8 and bare CR are errors naming
// file:line; nothing of such a line (or after it) runs. CRLF is fine.
static void test_script_text_checks(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    static const char nul[] = "bits 2\nbits 4\0 bits 5\nbits 6\n";
    assert_int_equal(script(&s, nul, sizeof nul - 1, "nul.kvs"), -1);
    assert_non_null(strstr(c.err, "nul.kvs:2: byte 0x00 at column 7 is not text"));
    assert_int_equal(s.cfg.bits, 2);
    c.err[0] = 0;
    static const char cr[] = "bits 3\rbits 4\rbits 5\r";
    assert_int_equal(script(&s, cr, sizeof cr - 1, "mac.kvs"), -1);
    assert_non_null(strstr(c.err, "mac.kvs:1: bare carriage return (CR) at column 7"));
    assert_int_equal(s.cfg.bits, 2);
    c.err[0] = 0;
    static const char crlf[] = "bits 3\r\n# caf\xc3\xa9 \xe2\x82\xac\r\nbits 4\r\n";
    assert_int_equal(script(&s, crlf, sizeof crlf - 1, "dos.kvs"), 0);
    assert_int_equal(s.cfg.bits, 4);
    assert_string_equal(c.err, "");
    static const char bin[] = "bits 2\n\x7f" "ELF\x02\x01\n";
    assert_int_equal(script(&s, bin, sizeof bin - 1, "a.out"), -1);
    assert_non_null(strstr(c.err, "a.out:2: byte 0x7f at column 1 is not text"));
    c.err[0] = 0;
    static const char latin1[] = "# caf\xe9\n";
    assert_int_equal(script(&s, latin1, sizeof latin1 - 1, "l1.kvs"), -1);
    assert_non_null(strstr(c.err, "l1.kvs:1: byte 0xe9 at column 6 is not UTF-8 text"));
    kvs_session_free(&s);
}

// value_bits: 2, 3, 4, 8 or 16 everywhere (set, value-bits, options, check),
// from the config field table.
static void test_value_bits_set(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    const char *bad[] = {"value-bits 5", "value-bits 7", "value-bits 1", "set value_bits=6",
                         "quantize tests/data/tr_valid.safetensors --value-bits 5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        c.err[0] = 0;
        assert_int_equal(kvs_exec_line(&s, bad[i]), -1);
        if (!strstr(c.err, "is not one of 2, 3, 4, 8 or 16")) fail_msg("%s: %s", bad[i], c.err);
    }
    assert_int_equal(s.cfg.value_bits, 2);
    assert_int_equal(kvs_exec_line(&s, "value-bits 8"), 0);
    assert_int_equal(s.cfg.value_bits, 8);
    kvq_config cfg;
    kvq_config_default(&cfg);
    cfg.value_bits = 5;
    assert_non_null(strstr(kvq_config_check(&cfg), "value_bits: 5 is not one of 2, 3, 4, 8 or 16"));
    cfg.value_bits = 16;
    assert_null(kvq_config_check(&cfg));
    kvs_session_free(&s);
}

// show --json: numbers are JSON numbers, bools are bools.
static void test_show_json_types(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    assert_int_equal(kvs_exec_line(&s, "set bit_allocation=2,3 seed=7"), 0);
    assert_int_equal(kvs_exec_line(&s, "show --json"), 0);
    json_error_t e;
    json_t *o = json_loads(c.out, 0, &e);
    assert_non_null(o);
    assert_true(json_is_integer(json_object_get(o, "bits")));
    assert_int_equal(json_integer_value(json_object_get(o, "bits")), 3);
    assert_true(json_is_integer(json_object_get(o, "value_bits")));
    assert_true(json_is_integer(json_object_get(o, "seed")));
    assert_int_equal(json_integer_value(json_object_get(o, "seed")), 7);
    assert_true(json_is_true(json_object_get(o, "use_hadamard")));
    assert_true(json_is_string(json_object_get(o, "method")));
    json_t *ba = json_object_get(o, "bit_allocation");
    assert_true(json_is_array(ba) && json_array_size(ba) == 2);
    assert_int_equal(json_integer_value(json_array_get(ba, 1)), 3);
    json_decref(o);
    kvs_session_free(&s);
}

// replay runs in batch (the benchmark machinery, observer report);
// play/pause/step/view say why they need the studio.
static void test_replay_in_batch(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    assert_int_equal(kvs_exec_line(&s, "replay"), -1);
    assert_non_null(strstr(c.err, "replay: no trace loaded"));
    assert_int_equal(kvs_exec_line(&s, "load tests/data/tr_valid.safetensors"), 0);
    c.out[0] = 0;
    assert_int_equal(kvs_exec_line(&s, "replay 8"), 0);
    assert_non_null(strstr(c.out, "replay     turboquant_mse k3/v2 on tests/data/tr_valid.safetensors"));
    assert_non_null(strstr(c.out, "memory     peak"));
    assert_non_null(strstr(c.out, "key norms"));
    assert_int_equal(s.n_runs, 1);
    const char *why[][2] = {{"step", "step: moves the studio's dashboard replay N tokens; in scripts use `replay`"},
                            {"play", "play: starts the studio's dashboard replay; in scripts use `replay`"},
                            {"pause", "pause: pauses the studio's dashboard replay"},
                            {"view plots", "view: switches the studio's view"}};
    for (int i = 0; i < 4; i++) {
        c.err[0] = 0;
        assert_int_equal(kvs_exec_line(&s, why[i][0]), -1);
        if (!strstr(c.err, why[i][1])) fail_msg("%s: %s", why[i][0], c.err);
        assert_null(strstr(c.err, "only available"));
    }
    kvs_session_free(&s);
}

// Commands name how they take a trace; quantize reads an .npy trace with
// --values like load does.
static void test_trace_options(void **st)
{
    (void)st;
    kvs_session s;
    capture c;
    session(&s, &c);
    assert_int_equal(kvs_exec_line(&s, "benchmark --method q8_0 --bits 8"), -1);
    assert_non_null(strstr(c.err, "no trace loaded: benchmark takes --trace FILE"));
    assert_null(strstr(c.err, "load PATH"));
    c.out[0] = 0;
    assert_int_equal(kvs_exec_line(&s, "quantize tests/data/npy_keys.npy --values tests/data/npy_values.npy "
                                       "--method turboquant_mse --bits 2 --use-hadamard false"), 0);
    assert_non_null(s.trace);
    assert_true(s.trace->has_values);
    assert_non_null(strstr(c.out, "quantize tests/data/npy_keys.npy"));
    c.err[0] = 0;
    assert_int_equal(kvs_exec_line(&s, "info --values tests/data/npy_values.npy"), -1);
    assert_non_null(strstr(c.err, "--values and --dtype apply to a trace given on this command line"));

    kvs_session_free(&s);
}

// The progress line of long batch commands: text with and without an ETA,
// silent for the first KVS_PROGRESS_AFTER_S and when stderr is no terminal.
static void test_progress_line(void **state)
{
    (void)state;
    char buf[160];
    kvs_progress_format(buf, sizeof buf, "info", 0.4375, "layer 14/32", 12.2, 15.6);
    assert_string_equal(buf, "info:  44% layer 14/32, 12 s elapsed, about 16 s left");
    kvs_progress_format(buf, sizeof buf, "quantize", 0.0, "layer 0/32", 0.4, -1);
    assert_string_equal(buf, "quantize:   0% layer 0/32, 0 s elapsed");
    kvs_session s;
    capture c;
    session(&s, &c);
    kvs_tty_progress tp;
    kvq_progress *p = kvs_tty_progress_begin(&tp, &s, "info");
    assert_false(kvq_progress_report(p, 0.5, "layer 1/2"));   // too early: nothing shown
    assert_false(tp.shown);
    tp.t0 -= 3 * KVS_PROGRESS_AFTER_S;
    tp.on = false;                                          // not a terminal
    kvq_progress_report(p, 0.5, "layer 1/2");
    assert_false(tp.shown);
    tp.on = true;
    kvq_progress_report(p, 0.5, "layer 1/2");
    assert_true(tp.shown);
    kvs_tty_progress_end(&tp);
    assert_false(tp.shown);
    assert_string_equal(c.out, "");   // never on the command's output
    kvs_session_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_commands), cmocka_unit_test(test_quotes_and_comments),
        cmocka_unit_test(test_unknown_and_help), cmocka_unit_test(test_script_errors_name_line),
        cmocka_unit_test(test_load_errors), cmocka_unit_test(test_help_matches_parser),
        cmocka_unit_test(test_model_command_options), cmocka_unit_test(test_flag_takes_no_value),
        cmocka_unit_test(test_script_text_checks), cmocka_unit_test(test_value_bits_set),
        cmocka_unit_test(test_show_json_types), cmocka_unit_test(test_replay_in_batch),
        cmocka_unit_test(test_trace_options),
        cmocka_unit_test(test_progress_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
