// test_mouse.c — in-process tests of the studio's mouse and Deploy view
// (views/mouse.c, views/deploy.c), drawn into an ncurses screen on /dev/null
// as test_views.c does: clicks land on what the last frame drew (tabs, lab
// fields, plot switches, table rows, legend entries), the wheel scrolls the
// log overlay and lists, and the Deploy view's job fills, filters and
// cancels. tests/tui/mouse.sh and deploy.sh drive the same through a real
// terminal's escape sequences.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "commands.h"
#include "recommend.h"
#include "tui.h"
#include "ui.h"
#include "test_util.h"
#include "tui_fixture.h"

// The legend line of an engine: its marker, name and row count.
static const char *legend_of(char marker, const char *engine, char *buf, size_t n)
{
    int rows = 0;
    for (int i = 0; i < kvq_n_deploy_formats; i++) rows += !strcmp(kvq_deploy_formats[i].engine, engine);
    snprintf(buf, n, "%c %-12s %3d", marker, engine, rows);
    return buf;
}

// The screen row holding text, -1 when none.
static int row_of(kvs_ui *ui, const char *text)
{
    const char *s = grab(ui), *hit = strstr(s, text);
    int y = 0;
    for (const char *p = s; hit && p < hit; p++) y += *p == '\n';
    return hit ? y : -1;
}

static int setup(void **state)
{
    static const fixture_opts o = {.tag = "mouse", .term = "xterm", .locale = "C", .rows = 24, .cols = 80, .color = false, .utf8 = false};
    return fixture_open(state, &o);
}

// The centre of the first rectangle the last frame drew with tag/index.
static bool hit_of(const kvs_ui *ui, int tag, int index, int *y, int *x)
{
    for (int i = 0; i < ui->n_hits; i++)
        if (ui->hits[i].tag == tag && ui->hits[i].index == index) {
            *y = ui->hits[i].r.y + ui->hits[i].r.h / 2;
            *x = ui->hits[i].r.x + ui->hits[i].r.w / 2;
            return true;
        }
    return false;
}

static int click_at(kvs_ui *ui, int y, int x)
{
    kvs_mouse m = {.kind = KVS_MOUSE_CLICK, .y = y, .x = x};
    return kvs_ui_mouse(ui, &m);
}

static int wheel_at(kvs_ui *ui, bool up, int y, int x)
{
    kvs_mouse m = {.kind = up ? KVS_MOUSE_WHEEL_UP : KVS_MOUSE_WHEEL_DOWN, .y = y, .x = x};
    return kvs_ui_mouse(ui, &m);
}

static void test_hits(void **state)
{
    (void)state;
    kvs_ui ui;
    memset(&ui, 0, sizeof ui);
    int tag, idx;
    assert_false(kvs_hit_find(&ui, 0, 0, &tag, &idx));
    assert_int_equal(tag, KVS_HIT_NONE);
    kvs_hit_add(&ui, (kvs_rect){2, 0, 10, 40}, 100, 1);
    kvs_hit_add(&ui, (kvs_rect){5, 5, 1, 10}, 101, 7);   // drawn later: on top
    kvs_hit_add(&ui, (kvs_rect){0, -3, 1, 5}, 102, 0);   // clipped to x 0..1
    kvs_hit_add(&ui, (kvs_rect){0, 0, 0, 5}, 103, 0);    // empty: ignored
    assert_true(kvs_hit_find(&ui, 5, 6, &tag, &idx));
    assert_int_equal(tag, 101);
    assert_int_equal(idx, 7);
    assert_true(kvs_hit_find(&ui, 5, 20, &tag, &idx));
    assert_int_equal(tag, 100);
    assert_true(kvs_hit_find(&ui, 0, 1, &tag, &idx));
    assert_int_equal(tag, 102);
    assert_false(kvs_hit_find(&ui, 0, 2, &tag, &idx));
    assert_false(kvs_hit_find(&ui, 12, 0, &tag, &idx));   // one past the bottom
    kvs_hit_reset(&ui);
    assert_false(kvs_hit_find(&ui, 5, 6, &tag, &idx));
    for (int i = 0; i < KVS_MAX_HITS + 10; i++) kvs_hit_add(&ui, (kvs_rect){0, 0, 1, 1}, 1, i);   // full: dropped
    assert_int_equal(ui.n_hits, KVS_MAX_HITS);
}

static void test_tabs_fields_plots_wheel(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    int y, x, lab = kvs_view_index("lab"), help = kvs_view_index("help");
    grab(ui);
    assert_true(hit_of(ui, KVS_HIT_TAB, lab, &y, &x));
    assert_int_equal(y, 0);
    click_at(ui, y, x);
    assert_int_equal(ui->view, lab);
    // a field: the first click selects, the second edits it on the prompt
    grab(ui);
    assert_true(hit_of(ui, KVS_HIT_VIEW, 2, &y, &x));   // lab.c HIT_FIELD, row 2
    click_at(ui, y, x);
    assert_int_equal(ui->lab.row, 2);
    assert_false(ui->prompt_active);
    grab(ui);
    click_at(ui, y, x);
    assert_true(ui->prompt_active);
    kvs_ui_key(ui, 27);
    assert_false(ui->prompt_active);
    // the wheel over the form moves the field cursor as Up/Down do
    wheel_at(ui, false, y, x);
    assert_int_equal(ui->lab.row, 3);
    // help from its tab remembers where it came from
    grab(ui);
    assert_true(hit_of(ui, KVS_HIT_TAB, help, &y, &x));
    click_at(ui, y, x);
    assert_int_equal(ui->view, help);
    assert_int_equal(ui->help_back, lab);
    grab(ui);
    wheel_at(ui, false, 10, 10);
    wheel_at(ui, false, 10, 10);
    assert_int_equal(ui->help_scroll, 2);
    // plot switches
    kvs_ui_switch(ui, "plots");
    grab(ui);
    assert_true(hit_of(ui, KVS_HIT_VIEW, 2, &y, &x));
    click_at(ui, y, x);
    assert_int_equal(ui->plots.which, 2);
    // the log overlay owns the mouse: the wheel scrolls it, clicks reach nothing
    for (int i = 0; i < 60; i++) kvs_printf(&f->s, "line %d", i);
    ui->show_log = true;
    grab(ui);
    wheel_at(ui, true, 10, 10);
    assert_int_equal(ui->log_scroll, 3);
    wheel_at(ui, false, 10, 10);
    wheel_at(ui, false, 10, 10);
    assert_int_equal(ui->log_scroll, 0);
    assert_true(hit_of(ui, KVS_HIT_TAB, lab, &y, &x));
    click_at(ui, y, x);
    assert_int_equal(ui->view, kvs_view_index("plots"));
    // nor while the prompt is open
    ui->show_log = false;
    kvs_ui_key(ui, ':');
    click_at(ui, y, x);
    assert_int_equal(ui->view, kvs_view_index("plots"));
    kvs_ui_key(ui, 27);
}

static void test_deploy_view(void **state)
{
    fixture *f = *state;
    kvs_ui *ui = f->ui;
    // opening the view starts the job; Esc (cancel) stops it, keeping no table
    assert_int_equal(kvs_ui_switch(ui, "deploy"), 0);
    grab(ui);
    assert_true(kvs_job_busy(ui));
    kvs_job_cancel(ui);
    kvs_job_wait(ui);
    assert_shows(ui, "recommend cancelled");
    assert_shows(ui, "r measures every format");
    // `recommend` in the studio fills the view
    assert_int_equal(kvs_exec_line(&f->s, "recommend --engine vllm --seq-len 16 --context 8192 --budget-gb 0.03"), 0);
    assert_true(kvs_job_busy(ui));
    kvs_job_wait(ui);
    assert_shows(ui, "engine vllm (e)  context 8192 (c)  budget 0.03 GiB (b)");
    char legend[64];
    assert_shows(ui, legend_of('+', "vllm", legend, sizeof legend));   // legend: marker, engine, rows
    assert_shows(ui, "# kvstudio (own)");
    assert_shows(ui, "|  1* + vllm     fp8 ");
    assert_shows(ui, "vllm fp8:  --kv-cache-dtype fp8");   // the selected row's flag
    // a click selects a row; on the selected one it is Enter (status line)
    int y = row_of(ui, " vllm     auto "), x;
    assert_true(y > 0);
    click_at(ui, y, 10);
    assert_shows(ui, "vllm auto:  --kv-cache-dtype auto");
    grab(ui);
    click_at(ui, y, 10);
    assert_shows(ui, "vllm auto (rank ");
    assert_shows(ui, ", over the budget");
    // options not given keep the view's; the legend's engine filters
    assert_int_equal(kvs_exec_line(&f->s, "recommend --engine all --seq-len 8"), 0);
    kvs_job_wait(ui);
    assert_shows(ui, "engine all (e)  context 8192 (c)  budget 0.03 GiB (b)");
    assert_shows(ui, legend_of('o', "llamacpp", legend, sizeof legend));
    assert_shows(ui, legend_of('x', "mlx", legend, sizeof legend));
    assert_true(hit_of(ui, KVS_HIT_VIEW + 1, 2, &y, &x));   // HIT_LEGEND, mlx
    click_at(ui, y, x);
    kvs_job_wait(ui);
    assert_shows(ui, "engine mlx (e)");
    const char *s = grab(ui);
    assert_null(strstr(s, "o llamacpp"));
    // e cycles the engines after mlx, then comes back to all
    for (int i = 0; i < 16 && !strstr(grab(ui), "engine all (e)"); i++) {
        kvs_ui_key(ui, 'e');
        kvs_job_wait(ui);
    }
    assert_shows(ui, "engine all (e)");
    // c opens the prompt on the context, its value selected
    kvs_ui_key(ui, 'c');
    assert_true(ui->prompt_active);
    kvs_ui_key(ui, 27);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hits),
        cmocka_unit_test_setup_teardown(test_tabs_fields_plots_wheel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deploy_view, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
