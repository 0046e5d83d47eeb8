// mouse.c — mouse input for the studio. Every frame, draw code records the
// rectangles it laid out (tabs, table rows, list items, plot switches) with
// a tag and an index; a click is looked up in that list, so what is
// clickable is exactly what was drawn. The frame handles the tabs and the
// log overlay (the wheel scrolls it); the rest goes to the view's `mouse`
// entry, and a wheel no view takes moves the view as Up/Down do. Every
// action stays reachable from the keyboard.
//
// ncurses decodes the terminal's reports (X10 `ESC [ M`, or SGR 1006
// `ESC [ < b ; x ; y M` where terminfo's XM says so, as xterm's does) into
// BUTTON1_PRESSED etc.; mouseinterval(0) delivers a press at once instead of
// waiting to fold it into a click.
#include <stdlib.h>
#include <string.h>
#include "ui.h"

void kvs_hit_reset(kvs_ui *ui) { ui->n_hits = 0; }

void kvs_hit_add(kvs_ui *ui, kvs_rect r, int tag, int index)
{
    if (r.x < 0) r.w += r.x, r.x = 0;
    if (r.y < 0) r.h += r.y, r.y = 0;
    if (r.w <= 0 || r.h <= 0 || ui->n_hits >= KVS_MAX_HITS) return;
    ui->hits[ui->n_hits++] = (struct kvs_hit){.r = r, .tag = tag, .index = index};
}

bool kvs_hit_find(const kvs_ui *ui, int y, int x, int *tag, int *index)
{
    for (int i = ui->n_hits - 1; i >= 0; i--) {
        const kvs_rect *r = &ui->hits[i].r;
        if (y >= r->y && y < r->y + r->h && x >= r->x && x < r->x + r->w) {
            *tag = ui->hits[i].tag;
            *index = ui->hits[i].index;
            return true;
        }
    }
    *tag = KVS_HIT_NONE;
    *index = -1;
    return false;
}

#ifndef BUTTON5_PRESSED   // ncurses built with the old (version 1) mouse ABI has no wheel-down
#define BUTTON5_PRESSED 0
#endif

void kvs_mouse_enable(kvs_ui *ui)
{
    (void)ui;
    const char *off = getenv("KVSTUDIO_NO_MOUSE");
    if (off && *off && strcmp(off, "0")) return;
    mousemask(BUTTON1_PRESSED | BUTTON1_CLICKED | BUTTON4_PRESSED | BUTTON5_PRESSED, NULL);
    mouseinterval(0);
}

int kvs_ui_mouse(kvs_ui *ui, kvs_mouse *m)
{
    kvs_hit_find(ui, m->y, m->x, &m->tag, &m->index);
    if (ui->prompt_active || ui->confirm_quit || ui->too_small) return KVS_KEY_HANDLED;
    bool wheel = m->kind != KVS_MOUSE_CLICK;
    int up = m->kind == KVS_MOUSE_WHEEL_UP;
    if (ui->show_log) {   // the overlay owns the mouse as it owns the keys
        if (wheel) {
            ui->log_scroll += up ? 3 : -3;   // clamped when drawn
            if (ui->log_scroll < 0) ui->log_scroll = 0;
        }
        return KVS_KEY_REDRAW;
    }
    if (m->tag == KVS_HIT_TAB && !wheel && m->index >= 0 && m->index < kvs_n_views) {
        if (m->index != ui->view && !strcmp(kvs_views[m->index]->name, "help")) ui->help_back = ui->view;
        kvs_ui_switch(ui, kvs_views[m->index]->name);
        return KVS_KEY_REDRAW;
    }
    const kvs_view *v = kvs_views[ui->view];
    int f = v->mouse ? v->mouse(ui, m) : KVS_KEY_UNHANDLED;
    if (!f && wheel) f = kvs_ui_key(ui, up ? KEY_UP : KEY_DOWN);
    return f ? f : KVS_KEY_HANDLED;
}

int kvs_ui_mouse_event(kvs_ui *ui)
{
    MEVENT e;
    if (getmouse(&e) != OK) return KVS_KEY_HANDLED;
    kvs_mouse m = {.y = e.y, .x = e.x};
    if (e.bstate & BUTTON4_PRESSED) m.kind = KVS_MOUSE_WHEEL_UP;
    else if (e.bstate & BUTTON5_PRESSED) m.kind = KVS_MOUSE_WHEEL_DOWN;   // 0 without it (above)
    else if (e.bstate & (BUTTON1_PRESSED | BUTTON1_CLICKED)) m.kind = KVS_MOUSE_CLICK;
    else return KVS_KEY_HANDLED;
    return kvs_ui_mouse(ui, &m);
}
