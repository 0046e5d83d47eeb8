// help.c — view 6: keys and commands, generated from the tables the code
// dispatches on (kvs_global_keys, each view's key table, kvs_commands), so
// help cannot drift from behaviour. `/` filters both columns.
#include <string.h>
#include "commands.h"
#include "metrics.h"
#include "ui.h"

typedef struct {
    char text[200];
    kvs_color color;
} help_line;

#define HELP_MAX 512

static void add(help_line *l, int *n, kvs_color c, const char *a, const char *b, int wa)
{
    if (*n >= HELP_MAX) return;
    snprintf(l[*n].text, sizeof l[*n].text, "%-*s %s", wa, a, b ? b : "");
    l[*n].color = c;
    (*n)++;
}

static void key_section(kvs_ui *ui, help_line *l, int *n, const char *title, const kvs_keybind *t)
{
    int start = *n;
    add(l, n, KVS_C_TITLE, title, NULL, 0);
    int rows = 0;
    for (int i = 0; t && t[i].key; i++) {
        if (!t[i].label) continue;
        char both[256];
        snprintf(both, sizeof both, "%s %s", t[i].label, t[i].help);
        if (!kvs_filter_match(ui, both)) continue;
        add(l, n, KVS_C_NORMAL, t[i].label, t[i].help, 11);
        rows++;
    }
    if (!rows) *n = start;   // the filter emptied the section
    else add(l, n, KVS_C_NORMAL, "", NULL, 0);
}

static int key_lines(kvs_ui *ui, help_line *l)
{
    int n = 0;
    key_section(ui, l, &n, "Keys everywhere", kvs_global_keys);
    for (int v = 0; v < kvs_n_views; v++) {
        char t[64];
        snprintf(t, sizeof t, "%d %s", v + 1, kvs_views[v]->title);
        key_section(ui, l, &n, t, kvs_views[v]->keys);
    }
    return n;
}

static int command_lines(kvs_ui *ui, help_line *l)
{
    int n = 0;
    add(l, &n, KVS_C_TITLE, "Commands (: prompt, --script FILE, stdin, `kvstudio CMD`)", NULL, 0);
    for (int i = 0; i < kvs_n_commands; i++) {
        const kvs_command *c = &kvs_commands[i];
        char both[512], usage[sizeof l[0].text - 2];
        kvs_command_usage(c, usage, sizeof usage);
        snprintf(both, sizeof both, "%s %s", usage, c->help);
        if (!kvs_filter_match(ui, both)) continue;
        add(l, &n, KVS_C_ACCENT, usage, NULL, 0);
        add(l, &n, KVS_C_NORMAL, "", c->help, 3);
    }
    add(l, &n, KVS_C_NORMAL, "", NULL, 0);
    add(l, &n, KVS_C_DIM, "COMMAND --help describes its options; Tab completes", NULL, 0);
    add(l, &n, KVS_C_DIM, "commands, methods, options and paths.", NULL, 0);
    // the glossary: every metric as engine/metrics.c defines it (docs/METRICS.md)
    add(l, &n, KVS_C_NORMAL, "", NULL, 0);
    add(l, &n, KVS_C_TITLE, "Metrics (KL in bits everywhere)", NULL, 0);
    for (int i = 0; i < KVQ_M_COUNT; i++) {
        const kvq_metric *m = &kvq_metrics[i];
        char head[96], both[640];
        snprintf(head, sizeof head, "%s%s%s%s", m->name, m->unit[0] ? " (" : "", m->unit, m->unit[0] ? ")" : "");
        snprintf(both, sizeof both, "%s %s %s", head, m->formula, m->over);
        if (!kvs_filter_match(ui, both)) continue;
        add(l, &n, KVS_C_ACCENT, head, NULL, 0);
        add(l, &n, KVS_C_NORMAL, "", m->formula, 3);
        add(l, &n, KVS_C_DIM, "", m->over, 3);
    }
    return n;
}

// Lines wrapped at w cells at a space, continuation rows indented under the
// text they continue ("q/F10       quit (asks ..." goes on under "quit"),
// so a narrow terminal loses nothing.
static int wrap_lines(const help_line *in, int n, int w, help_line *out, int max)
{
    int k = 0;
    for (int i = 0; i < n && k < max; i++) {
        const char *t = in[i].text;
        int len = (int)strlen(t), lead = (int)strspn(t, " "), ind = lead + 2;
        const char *gap = strstr(t + lead, "  ");   // "label       help": continue under the help
        if (gap && gap - t < 14) ind = (int)(gap - t) + (int)strspn(gap, " ");
        if (ind > w / 2) ind = 2;
        int off = 0, first = 1;
        while (k < max) {
            int pad = first ? 0 : ind, room = w - pad;
            int cut = len - off <= room ? len - off : room;
            if (off + cut < len)
                for (int c = cut; c > room / 2; c--)
                    if (t[off + c] == ' ') {
                        cut = c;
                        break;
                    }
            snprintf(out[k].text, sizeof out[k].text, "%*s%.*s", pad, "", cut, t + off);
            out[k++].color = in[i].color;
            off += cut;
            while (t[off] == ' ' && off < len) off++;
            if (off >= len) break;
            first = 0;
        }
    }
    return k;
}

static void help_draw(kvs_ui *ui, kvs_rect r)
{
    static help_line keys_raw[HELP_MAX], cmds_raw[HELP_MAX], keys[4 * HELP_MAX], cmds[4 * HELP_MAX];
    int lw = r.w / 2 < 56 ? r.w / 2 : 56;
    kvs_rect lb = {r.y, r.x, r.h, lw}, rb = {r.y, r.x + lw, r.h, r.w - lw};
    kvs_w_box(ui, lb, "keys");
    kvs_w_box(ui, rb, "commands");
    kvs_rect li = kvs_w_inner(lb), ri = kvs_w_inner(rb);
    int nk = wrap_lines(keys_raw, key_lines(ui, keys_raw), li.w - 2, keys, 4 * HELP_MAX);
    int nc = wrap_lines(cmds_raw, command_lines(ui, cmds_raw), ri.w - 2, cmds, 4 * HELP_MAX);
    int most = nk > nc ? nk : nc;
    int max_scroll = most > li.h ? most - li.h : 0;
    if (ui->help_scroll > max_scroll) ui->help_scroll = max_scroll;
    if (ui->help_scroll < 0) ui->help_scroll = 0;
    for (int i = 0; i < li.h; i++) {
        int k = ui->help_scroll + i;
        if (k < nk) kvs_w_text(ui, li.y + i, li.x + 1, li.w - 1, kvs_attr(ui, keys[k].color), "%s", keys[k].text);
        if (k < nc) kvs_w_text(ui, ri.y + i, ri.x + 1, ri.w - 1, kvs_attr(ui, cmds[k].color), "%s", cmds[k].text);
    }
    kvs_w_scroll(ui, lb, ui->help_scroll < nk ? ui->help_scroll : nk, li.h, nk);
    kvs_w_scroll(ui, rb, ui->help_scroll < nc ? ui->help_scroll : nc, li.h, nc);
}

static int help_scroll(kvs_ui *ui, int key)
{
    int page = LINES - 6;
    switch (key) {
    case KEY_UP: case 'k': ui->help_scroll--; break;
    case KEY_DOWN: case 'j': ui->help_scroll++; break;
    case KEY_PPAGE: ui->help_scroll -= page; break;
    case KEY_NPAGE: case ' ': ui->help_scroll += page; break;
    case KEY_HOME: case 'g': ui->help_scroll = 0; break;
    default: return KVS_KEY_UNHANDLED;
    }
    if (ui->help_scroll < 0) ui->help_scroll = 0;
    return KVS_KEY_REDRAW;
}

static const kvs_keybind help_keys[] = {
    {KEY_DOWN, 'j', "Up/Down", "scroll (j/k)", help_scroll},
    {KEY_UP, 'k', NULL, NULL, help_scroll},
    {KEY_NPAGE, ' ', "PgUp/PgDn", "scroll a page", help_scroll},
    {KEY_PPAGE, 0, NULL, NULL, help_scroll},
    {KEY_HOME, 'g', NULL, NULL, help_scroll},
    {'/', 0, "/", "filter keys and commands", kvs_filter_start},
    {27, '?', "Esc/?", "back to the previous view", kvs_help_back},
    {0, 0, NULL, NULL, NULL},
};

const kvs_view kvs_view_help = {
    .name = "help", .title = "Help", .draw = help_draw, .keys = help_keys,
};
