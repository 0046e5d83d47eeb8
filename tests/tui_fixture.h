// tui_fixture.h — the in-process studio fixture of test_views.c and
// test_mouse.c: a session with the sample trace loaded, an ncurses screen on
// /dev/null of a given terminal type and size, the ui on top, a private
// XDG_STATE_HOME; and the screen read back as text. static inline: each
// test file is its own binary and uses only some of these.
#ifndef KVS_TUI_FIXTURE_H
#define KVS_TUI_FIXTURE_H
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "commands.h"
#include "tui.h"
#include "ui.h"
#include "test_util.h"

#define TRACE "sample_data/traces/code-1k.safetensors"

typedef struct {
    kvs_session s;
    kvs_ui *ui;
    SCREEN *scr;
    FILE *out, *in;
    char state_dir[64];
} fixture;

// How a test file wants its terminal.
typedef struct fixture_opts {
    const char *tag;      // of the state dir: /tmp/kvs_test_<tag>_XXXXXX
    const char *term;     // terminfo name
    const char *locale;
    int rows, cols;
    bool color, utf8;     // color false sets NO_COLOR=1
} fixture_opts;

static inline void fixture_quiet_out(void *user, bool is_error, const char *line)
{
    (void)user, (void)is_error, (void)line;
}

static inline int fixture_open(void **state, const fixture_opts *o)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->state_dir, sizeof f->state_dir, "/tmp/kvs_test_%s_XXXXXX", o->tag);
    assert_non_null(mkdtemp(f->state_dir));
    setenv("XDG_STATE_HOME", f->state_dir, 1);
    if (o->color) unsetenv("NO_COLOR");
    else setenv("NO_COLOR", "1", 1);
    kvs_session_init(&f->s);
    f->s.out = fixture_quiet_out;
    assert_int_equal(kvs_session_load(&f->s, TRACE, NULL), 0);
    setlocale(LC_ALL, o->locale);
    f->out = fopen("/dev/null", "w");
    f->in = fopen("/dev/null", "r");
    f->scr = newterm(o->term, f->out, f->in);
    assert_non_null(f->scr);
    set_term(f->scr);
    resizeterm(o->rows, o->cols);
    f->ui = kvs_ui_new(&f->s);
    assert_non_null(f->ui);
    if (o->utf8) f->ui->utf8 = true;
    kvs_colors_init(f->ui);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fixture *f = *state;
    kvs_prompt_shutdown(f->ui);
    endwin();
    kvs_ui_free(f->ui);
    delscreen(f->scr);
    fclose(f->out);
    fclose(f->in);
    kvs_session_free(&f->s);
    tu_rm_rf(f->state_dir);   // best effort
    free(f);
    return 0;
}

static char fixture_screen[200 * 80 * 4];

// The whole screen as text, one line per row (drawn first).
static inline const char *grab(kvs_ui *ui)
{
    kvs_ui_draw(ui);
    size_t len = 0;
    for (int y = 0; y < LINES; y++) {
        char row[1024];
        int n = mvinnstr(y, 0, row, (int)sizeof row - 1);
        row[n < 0 ? 0 : n] = 0;
        len += (size_t)snprintf(fixture_screen + len, sizeof fixture_screen - len, "%s\n", row);
    }
    return fixture_screen;
}

static inline void assert_shows(kvs_ui *ui, const char *text)
{
    const char *s = grab(ui);
    if (!strstr(s, text)) {
        fprintf(stderr, "---- screen ----\n%s---- expected: '%s'\n", s, text);   // print_message truncates
        fail();
    }
}

static inline void assert_hides(kvs_ui *ui, const char *text)
{
    const char *s = grab(ui);
    if (strstr(s, text)) {
        fprintf(stderr, "---- screen ----\n%s---- not expected: '%s'\n", s, text);
        fail();
    }
}
#endif
