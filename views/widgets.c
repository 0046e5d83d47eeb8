// widgets.c — boxes, text, bars, sparklines, vertical bar charts, line plots
// (braille in a UTF-8 locale, one character per cell otherwise) and table
// rows. Everything clips to the rectangle it is given, so views can be laid
// out from the terminal size without bounds checks of their own.
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include "ui.h"

// UTF-8 strings of the eighth blocks, 1/8 .. 8/8 (left-aligned horizontal, bottom-aligned vertical).
static const char *const hblock[9] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉", "█"};
static const char *const vblock[9] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
static const char ascii_ramp[] = " .:-=+*#%@";

kvs_rect kvs_w_inner(kvs_rect r) { return (kvs_rect){r.y + 1, r.x + 1, r.h - 2, r.w - 2}; }

// Lines and corners as UTF-8 text (ASCII otherwise): the alternate character
// set would show up as letters in terminal captures and some multiplexers.
static void draw_hline(const kvs_ui *ui, int y, int x, int n)
{
    move(y, x);
    for (int i = 0; i < n; i++) addstr(ui->utf8 ? "\u2500" : "-");
}

static void draw_vline(const kvs_ui *ui, int y, int x, int n)
{
    for (int i = 0; i < n; i++) mvaddstr(y + i, x, ui->utf8 ? "\u2502" : "|");
}

void kvs_w_box(kvs_ui *ui, kvs_rect r, const char *title)
{
    if (r.h < 2 || r.w < 2) return;
    attrset(kvs_attr(ui, KVS_C_DIM));
    draw_hline(ui, r.y, r.x + 1, r.w - 2);
    draw_hline(ui, r.y + r.h - 1, r.x + 1, r.w - 2);
    draw_vline(ui, r.y + 1, r.x, r.h - 2);
    draw_vline(ui, r.y + 1, r.x + r.w - 1, r.h - 2);
    mvaddstr(r.y, r.x, ui->utf8 ? "\u256d" : "+");
    mvaddstr(r.y, r.x + r.w - 1, ui->utf8 ? "\u256e" : "+");
    mvaddstr(r.y + r.h - 1, r.x, ui->utf8 ? "\u2570" : "+");
    mvaddstr(r.y + r.h - 1, r.x + r.w - 1, ui->utf8 ? "\u256f" : "+");
    if (title && r.w > 6) {
        attrset(kvs_attr(ui, KVS_C_TITLE));
        char t[256];   // titles carry trace paths and names from files
        snprintf(t, sizeof t, "%s", title);
        kvq_text_sanitize(t, false);
        mvaddch(r.y, r.x + 2, ' ');
        addnstr(t, r.w - 6);
        addch(' ');
    }
    attrset(A_NORMAL);
}

void kvs_w_text(kvs_ui *ui, int y, int x, int maxw, attr_t a, const char *fmt, ...)
{
    (void)ui;
    if (maxw <= 0 || y < 0 || y >= LINES) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    kvq_text_sanitize(buf, false);   // names and metadata from files: no escapes, one line
    attrset(a);
    mvaddnstr(y, x, buf, maxw);   // ASCII text: bytes = cells
    attrset(A_NORMAL);
}

void kvs_w_hbar(kvs_ui *ui, int y, int x, int w, double frac, attr_t a)
{
    if (w <= 0) return;
    if (!(frac >= 0)) frac = 0;   // NaN too
    if (frac > 1) frac = 1;
    int eighths = (int)lround(frac * w * 8);
    attrset(a);
    move(y, x);
    for (int i = 0; i < w; i++) {
        int e = eighths - 8 * i;
        e = e < 0 ? 0 : e > 8 ? 8 : e;
        if (ui->utf8) addstr(e ? hblock[e] : " ");
        else addch(e >= 4 ? '#' : e ? '=' : '.');
    }
    attrset(A_NORMAL);
}

// Max of v over the bucket of cell i when n values are spread over w cells.
static float bucket_max(const float *v, int n, int w, int i)
{
    int a = (int)((long)i * n / w), b = (int)((long)(i + 1) * n / w);
    if (b <= a) b = a + 1;
    if (b > n) b = n;
    float m = NAN;
    for (int k = a; k < b; k++)
        if (isfinite(v[k]) && !(v[k] <= m)) m = v[k];   // NaN m: take the first finite value
    return m;
}

void kvs_w_sparkline(kvs_ui *ui, int y, int x, int w, const float *v, int n, attr_t a)
{
    if (w <= 0 || n <= 0) return;
    if (w > n) w = n;
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;   // NaN: not measured yet
        if (v[i] < lo) lo = v[i];
        if (v[i] > hi) hi = v[i];
    }
    attrset(a);
    move(y, x);
    for (int i = 0; i < w; i++) {
        float m = bucket_max(v, n, w, i);
        if (!isfinite(m)) {
            addch(' ');
            continue;
        }
        double f = hi > lo ? (m - lo) / (hi - lo) : 0.5;
        if (ui->utf8) addstr(vblock[1 + (int)lround(f * 7)]);
        else addch((chtype)ascii_ramp[1 + (int)lround(f * 8)]);
    }
    attrset(A_NORMAL);
}

void kvs_w_vbars(kvs_ui *ui, kvs_rect r, const float *v, int n, double vmax, const bool *mark,
                 attr_t a, attr_t hi)
{
    if (r.w <= 0 || r.h <= 0 || n <= 0) return;
    int w = r.w < n ? r.w : n;
    if (!(vmax > 0)) vmax = 1;
    for (int i = 0; i < w; i++) {
        float m = bucket_max(v, n, w, i);
        bool marked = false;
        int lo = (int)((long)i * n / w), up = (int)((long)(i + 1) * n / w);
        for (int k = lo; mark && k < (up > lo ? up : lo + 1) && k < n; k++) marked |= mark[k];
        double fr = isfinite(m) && m > 0 ? fmin(1.0, m / vmax) : 0;
        int eighths = (int)lround(fr * r.h * 8);
        attrset(marked ? hi : a);
        for (int row = 0; row < r.h; row++) {
            int e = eighths - 8 * row;
            e = e < 0 ? 0 : e > 8 ? 8 : e;
            int yy = r.y + r.h - 1 - row;
            if (ui->utf8) mvaddstr(yy, r.x + i, vblock[e]);
            else mvaddch(yy, r.x + i, e >= 4 ? (marked ? '#' : '|') : e ? '.' : ' ');
        }
    }
    attrset(A_NORMAL);
}

void kvs_w_row(kvs_ui *ui, int y, int x, int maxw, attr_t a, int n, const int *widths,
               const char *const *cells)
{
    char line[512];
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof line - 1; i++) {
        int w = widths[i] < 0 ? -widths[i] : widths[i];
        const char *c = cells[i] ? cells[i] : "";
        int cl = (int)strlen(c);
        if (cl > w) cl = w;
        int pad = w - cl;
        if (widths[i] < 0)
            len += (size_t)snprintf(line + len, sizeof line - len, "%*s%.*s ", pad, "", cl, c);
        else
            len += (size_t)snprintf(line + len, sizeof line - len, "%.*s%*s ", cl, c, pad, "");
    }
    kvs_w_text(ui, y, x, maxw, a, "%s", line);
}

// ---- line plots ----
void kvs_plot_init(kvs_plot *p, kvs_rect r, bool braille, double x0, double x1, double y0, double y1)
{
    if (r.w > KVS_PLOT_MAX_W) r.w = KVS_PLOT_MAX_W;
    if (r.h > KVS_PLOT_MAX_H) r.h = KVS_PLOT_MAX_H;
    if (r.w < 1) r.w = 1;
    if (r.h < 1) r.h = 1;
    p->r = r;
    p->braille = braille;
    p->dw = r.w * (braille ? 2 : 1);
    p->dh = r.h * (braille ? 4 : 1);
    if (!(x1 > x0)) x1 = x0 + 1;
    if (!(y1 > y0)) y1 = y0 + 1;
    p->x0 = x0, p->x1 = x1, p->y0 = y0, p->y1 = y1;
    memset(p->dots, 0, sizeof p->dots);
    memset(p->series, -1, sizeof p->series);
}

static void plot_dot(kvs_plot *p, int dx, int dy, int series)
{
    if (dx < 0 || dy < 0 || dx >= p->dw || dy >= p->dh) return;
    if (!p->braille) {
        p->dots[dy][dx] = 1;
        p->series[dy][dx] = (int8_t)series;
        return;
    }
    // braille cell: dots 1-3 + 7 in the left column, 4-6 + 8 in the right
    static const uint8_t bit[4][2] = {{0x01, 0x08}, {0x02, 0x10}, {0x04, 0x20}, {0x40, 0x80}};
    p->dots[dy / 4][dx / 2] |= bit[dy % 4][dx % 2];
    p->series[dy / 4][dx / 2] = (int8_t)series;
}

static void to_dots(const kvs_plot *p, double x, double y, double *dx, double *dy)
{
    *dx = (x - p->x0) / (p->x1 - p->x0) * (p->dw - 1);
    *dy = (1 - (y - p->y0) / (p->y1 - p->y0)) * (p->dh - 1);   // dot rows grow downwards
}

void kvs_plot_point(kvs_plot *p, double x, double y, int series)
{
    if (!isfinite(x) || !isfinite(y)) return;
    double dx, dy;
    to_dots(p, x, y, &dx, &dy);
    int cx = (int)lround(dx), cy = (int)lround(dy);
    if (!p->braille) {
        plot_dot(p, cx, cy, series);
        return;
    }
    for (int i = -1; i <= 1; i++)   // a 3x3-dot marker: single dots are easy to miss
        for (int k = -1; k <= 1; k++) plot_dot(p, cx + i, cy + k, series);
}

void kvs_plot_line(kvs_plot *p, double xa, double ya, double xb, double yb, int series)
{
    if (!isfinite(xa) || !isfinite(ya) || !isfinite(xb) || !isfinite(yb)) return;
    double ax, ay, bx, by;
    to_dots(p, xa, ya, &ax, &ay);
    to_dots(p, xb, yb, &bx, &by);
    int steps = (int)ceil(fmax(fabs(bx - ax), fabs(by - ay)));
    if (steps > 4 * (p->dw + p->dh)) steps = 4 * (p->dw + p->dh);   // clipped far outside
    for (int i = 0; i <= steps; i++) {
        double t = steps ? (double)i / steps : 0;
        plot_dot(p, (int)lround(ax + t * (bx - ax)), (int)lround(ay + t * (by - ay)), series);
    }
}

static void put_braille(uint8_t bits)
{
    // U+2800 + bits, as UTF-8: E2 A0+(bits>>6) 80+(bits&63)
    char u[4] = {(char)0xE2, (char)(0xA0 | (bits >> 6)), (char)(0x80 | (bits & 0x3F)), 0};
    addstr(u);
}

void kvs_plot_draw(kvs_ui *ui, const kvs_plot *p, const char *xlabel, const char *ylabel)
{
    static const char series_ch[KVS_N_SERIES] = {'*', '+', 'o', 'x', '#', '@'};
    const kvs_rect r = p->r;
    attr_t dim = kvs_attr(ui, KVS_C_DIM);
    for (int y = 0; y < r.h; y++)
        for (int x = 0; x < r.w; x++) {
            if (!p->dots[y][x]) continue;
            int s = p->series[y][x];
            attrset(kvs_attr(ui, (kvs_color)(KVS_C_S1 + (s < 0 ? 0 : s % KVS_N_SERIES))));
            move(r.y + y, r.x + x);
            if (p->braille) put_braille(p->dots[y][x]);
            else addch((chtype)series_ch[s < 0 ? 0 : s % KVS_N_SERIES]);
        }
    attrset(dim);
    draw_vline(ui, r.y, r.x - 1, r.h);
    draw_hline(ui, r.y + r.h, r.x, r.w);
    mvaddstr(r.y + r.h, r.x - 1, ui->utf8 ? "\u2514" : "+");
    attrset(A_NORMAL);
    char b[32];
    snprintf(b, sizeof b, "%7.3g", p->y1);
    kvs_w_text(ui, r.y, r.x - 8, 7, dim, "%s", b);
    snprintf(b, sizeof b, "%7.3g", p->y0);
    kvs_w_text(ui, r.y + r.h - 1, r.x - 8, 7, dim, "%s", b);
    snprintf(b, sizeof b, "%.3g", p->x0);
    kvs_w_text(ui, r.y + r.h + 1, r.x, 10, dim, "%s", b);
    snprintf(b, sizeof b, "%.3g", p->x1);
    kvs_w_text(ui, r.y + r.h + 1, r.x + r.w - (int)strlen(b), 10, dim, "%s", b);
    if (xlabel) kvs_w_text(ui, r.y + r.h + 1, r.x + (r.w - (int)strlen(xlabel)) / 2, r.w, dim, "%s", xlabel);
    if (ylabel) kvs_w_text(ui, r.y - 1, r.x - 8, r.w + 8, dim, "%s", ylabel);   // the row above: the whole name
}
