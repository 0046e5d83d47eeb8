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
    for (int i = 0; i < kvs_n_commands; i++) assert_non_null(strstr(c.out, kvs_commands[i].usage));
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
        cmocka_unit_test(test_load_errors),        cmocka_unit_test(test_progress_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
