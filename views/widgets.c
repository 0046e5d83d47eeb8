// widgets.c — boxes, text, bars, sparklines, vertical bar charts, line plots
// (braille in a UTF-8 locale, one character per cell otherwise) and table
// rows. Everything clips to the rectangle it is given, so views can be laid
// out from the terminal size without bounds checks of their own.
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
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
        char *paren = strstr(t, "  (");   // "config  (keys...)": the keys go before the name is cut
        if (paren && (int)strlen(t) > r.w - 6) *paren = 0;
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
        if (!w) continue;   // a column kvs_table_fit dropped
        const char *c = cells[i] ? cells[i] : "";
        int cl = (int)strlen(c);
        bool cut = cl > w && w > 1;   // a cut cell ends in '~', never in a cut digit
        if (cl > w) cl = cut ? w - 1 : w;
        int pad = w - cl - cut;
        if (widths[i] < 0)
            len += (size_t)snprintf(line + len, sizeof line - len, "%*s%.*s%s ", pad, "", cl, c, cut ? "~" : "");
        else
            len += (size_t)snprintf(line + len, sizeof line - len, "%.*s%s%*s ", cl, c, cut ? "~" : "", pad, "");
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
    memset(p->point, -1, sizeof p->point);
}

static const char series_marker[KVS_N_MARKERS] = {'*', 'o', 'x', '+', '#', '@', '%', '&', '=', '$'};
char kvs_series_marker(int series) { return series_marker[(series < 0 ? 0 : series) % KVS_N_MARKERS]; }

attr_t kvs_series_attr(const kvs_ui *ui, int series)
{
    if (series < 0) series = 0;
    attr_t a = kvs_attr(ui, (kvs_color)(KVS_C_S1 + series % KVS_N_SERIES));
    return ui->colors && series / KVS_N_SERIES % 2 ? a | A_BOLD : a;   // 7..12: the bright half
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
    plot_dot(p, cx, cy, series);
    // the cell shows the series' marker (legible without colour)
    int mx = p->braille ? cx / 2 : cx, my = p->braille ? cy / 4 : cy;
    if (cx >= 0 && cy >= 0 && mx < p->r.w && my < p->r.h) p->point[my][mx] = (int8_t)series;
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

// An axis end: fitted, trailing zeros of the decimals dropped ("0.92", "10").
static int axis_num(double v, int w, int dec, char *buf, size_t n)
{
    int len = kvs_fmt_num(v, w, dec, buf, n);
    if (len <= 0 || !strchr(buf, '.') || strchr(buf, 'e')) return len;
    while (len > 1 && buf[len - 1] == '0') buf[--len] = 0;
    if (buf[len - 1] == '.') buf[--len] = 0;
    return len;
}

void kvs_plot_draw(kvs_ui *ui, const kvs_plot *p, const char *xlabel, const char *ylabel)
{
    const kvs_rect r = p->r;
    attr_t dim = kvs_attr(ui, KVS_C_DIM);
    for (int y = 0; y < r.h; y++)
        for (int x = 0; x < r.w; x++) {
            int pt = p->point[y][x];
            if (!p->dots[y][x] && pt < 0) continue;
            int s = pt >= 0 ? pt : p->series[y][x];
            attrset(kvs_series_attr(ui, s) | (pt >= 0 ? A_BOLD : 0));
            move(r.y + y, r.x + x);
            if (pt >= 0) addch((chtype)kvs_series_marker(pt));
            else if (p->braille) put_braille(p->dots[y][x]);
            else addch(ui->colors ? (chtype)kvs_series_marker(s) : '.');   // lines: dots without colour
        }
    attrset(dim);
    draw_vline(ui, r.y, r.x - 1, r.h);
    draw_hline(ui, r.y + r.h, r.x, r.w);
    mvaddstr(r.y + r.h, r.x - 1, ui->utf8 ? "\u2514" : "+");
    attrset(A_NORMAL);
    char b[32];   // axis ends: never cut (1.83e+05 shows as 183000, not 1.83e+0)
    if (axis_num(p->y1, 7, 4, b, sizeof b) > 0) kvs_w_text(ui, r.y, r.x - 9, 7, dim, "%7s", b);
    if (axis_num(p->y0, 7, 4, b, sizeof b) > 0) kvs_w_text(ui, r.y + r.h - 1, r.x - 9, 7, dim, "%7s", b);
    if (axis_num(p->x0, 8, 2, b, sizeof b) > 0) kvs_w_text(ui, r.y + r.h + 1, r.x, 10, dim, "%s", b);
    if (axis_num(p->x1, 8, 2, b, sizeof b) > 0)
        kvs_w_text(ui, r.y + r.h + 1, r.x + r.w - (int)strlen(b), 10, dim, "%s", b);
    if (xlabel) kvs_w_text(ui, r.y + r.h + 1, r.x + (r.w - (int)strlen(xlabel)) / 2, r.w, dim, "%s", xlabel);
    if (ylabel) kvs_w_text(ui, r.y - 1, r.x - 9, r.w + 9, dim, "%s", ylabel);   // the row above: the whole name
}

// ---- numbers that fit: never cut a digit or an exponent ----
// Short labels of metrics for narrow panels (the full name is in the metric
// table, engine/metrics.c; these only abbreviate it, they never rename).
static const char *const metric_abbr[KVQ_M_COUNT] = {
    [KVQ_M_KEY_BITS] = "k bits", [KVQ_M_VALUE_BITS] = "v bits", [KVQ_M_COMPRESSION] = "ratio",
    [KVQ_M_CACHE_COMPRESSION] = "ratio", [KVQ_M_CACHE_MB] = "cache", [KVQ_M_FP16_MB] = "fp16",
    [KVQ_M_BYTES_PER_TOKEN] = "B/tok", [KVQ_M_KEY_REL_MSE] = "rel MSE", [KVQ_M_VALUE_REL_MSE] = "v rel MSE",
    [KVQ_M_KEY_COSINE] = "cos", [KVQ_M_KEY_COSINE_MIN] = "min", [KVQ_M_VALUE_COSINE] = "v cos",
    [KVQ_M_QK_ERROR] = "q.k err", [KVQ_M_PROBE_ERROR] = "probe err", [KVQ_M_ATTN_KEY_ERROR] = "attn err",
    [KVQ_M_OUTPUT_ERROR] = "out err", [KVQ_M_ATTN_KL] = "KL", [KVQ_M_TOPK_RECALL] = "top-k",
    [KVQ_M_ENCODE_MS] = "enc", [KVQ_M_ENCODE_P99_MS] = "p99", [KVQ_M_ATTEND_MS] = "attend",
    [KVQ_M_KEY_NORM] = "|k|", [KVQ_M_OUTLIER_FRACTION] = "outliers", [KVQ_M_INERTIA] = "inertia",
};

const char *kvs_metric_abbr(kvq_metric_id id)
{
    return id >= 0 && id < KVQ_M_COUNT && metric_abbr[id] ? metric_abbr[id] : kvq_metrics[id].name;
}

// Shortest exponent form: "1.8e-5", "2e+7" -> "2e7".
static int fmt_sci(double v, int dec, char *buf, size_t n)
{
    char t[64];
    snprintf(t, sizeof t, "%.*e", dec, v);
    char *e = strchr(t, 'e');
    if (!e) return snprintf(buf, n, "%s", t);
    int ex = atoi(e + 1);
    *e = 0;
    if (strchr(t, '.')) {   // 2.0e-5 -> 2e-5: zeros say nothing here
        char *z = e - 1;
        while (*z == '0') *z-- = 0;
        if (*z == '.') *z = 0;
    }
    return snprintf(buf, n, "%se%d", t, ex);
}

int kvs_fmt_num(double v, int w, int dec, char *buf, size_t n)
{
    char t[64];
    int len;
    if (n) buf[0] = 0;
    if (!isfinite(v)) {
        if (w < 3) return -1;
        return snprintf(buf, n, "n/a");
    }
    if (dec < 0) dec = 0;
    if (dec > 12) dec = 12;
    // fewer decimals while the value stays within 5% (0.00002 never becomes 0.0000)
    for (int d = dec; d >= 0; d--) {
        len = snprintf(t, sizeof t, "%.*f", d, v);
        if (len > w) continue;
        double back = strtod(t, NULL);
        if (v == 0 || fabs(back - v) <= 0.05 * fabs(v)) return snprintf(buf, n, "%s", t);
        break;   // fewer decimals only lose more
    }
    // large: unit suffixes (183k, 1.8M); small: exponents (1.8e-5)
    double a = fabs(v);
    if (a >= 1000) {
        static const char sfx[] = "kMGTP";
        double s = v;
        for (int k = 0; k < 5 && fabs(s) >= 1000; k++) {
            s /= 1000;
            if (fabs(s) >= 1000 && k < 4) continue;
            for (int d = 2; d >= 0; d--) {
                len = snprintf(t, sizeof t, "%.*f%c", d, s, sfx[k]);
                if (len <= w) return snprintf(buf, n, "%s", t);
            }
            break;
        }
    }
    for (int d = 3; d >= 0; d--) {
        len = fmt_sci(v, d, t, sizeof t);
        if (len <= w) return snprintf(buf, n, "%s", t);
    }
    return -1;
}

// Decimals of a printf format ("%.4f" -> 4; "%.3g" -> 3 significant digits
// as decimals of the leading digit, good enough for the fallback).
static int fmt_decimals(const char *fmt)
{
    const char *p = strchr(fmt, '.');
    return p ? atoi(p + 1) : 3;
}

int kvs_fmt_metric(kvq_metric_id id, double v, int w, char *buf, size_t n)
{
    char t[64];
    int len = snprintf(t, sizeof t, isfinite(v) ? kvq_metrics[id].fmt : "n/a", v);
    if (len <= w) return snprintf(buf, n, "%s", t);
    return kvs_fmt_num(v, w, fmt_decimals(kvq_metrics[id].fmt), buf, n);
}

// "value unit" as the metric table writes it (no space before x and %).
static void with_unit(kvq_metric_id id, const char *num, char *buf, size_t n)
{
    const char *u = kvq_metrics[id].unit;
    if (!u[0] || !strcmp(num, "n/a")) snprintf(buf, n, "%s", num);
    else snprintf(buf, n, "%s%s%s", num, strcmp(u, "x") && strcmp(u, "%") ? " " : "", u);
}

void kvs_metric_part(kvs_part *p, kvq_metric_id id, double v, int prio)
{
    char num[48];
    kvs_fmt_metric(id, v, 12, num, sizeof num);
    char vu[64];
    with_unit(id, num, vu, sizeof vu);
    snprintf(p->text, sizeof p->text, "%s %s", kvq_metrics[id].name, vu);
    snprintf(p->brief, sizeof p->brief, "%s %s", kvs_metric_abbr(id), vu);
    p->prio = prio;
}

int kvs_fit_parts(kvs_part *p, int n, int w, const char *sep, char *out, size_t on)
{
    bool brief[64] = {0}, shown[64];
    if (n > 64) n = 64;
    for (int i = 0; i < n; i++) shown[i] = p[i].text[0] != 0;
    int sl = (int)strlen(sep);
    for (;;) {
        int len = 0, k = 0;
        for (int i = 0; i < n; i++)
            if (shown[i]) len += (k++ ? sl : 0) + (int)strlen(brief[i] && p[i].brief[0] ? p[i].brief : p[i].text);
        if (len <= w || !k) break;
        // the least important (highest prio, then the last) part shortens its label, else goes
        int pick = -1;
        for (int i = 0; i < n; i++)
            if (shown[i] && !brief[i] && p[i].brief[0] && strcmp(p[i].brief, p[i].text) &&
                (pick < 0 || p[i].prio >= p[pick].prio)) pick = i;
        if (pick >= 0) {
            brief[pick] = true;
            continue;
        }
        for (int i = 0; i < n; i++)
            if (shown[i] && (pick < 0 || p[i].prio >= p[pick].prio)) pick = i;
        shown[pick] = false;
    }
    size_t len = 0;
    int k = 0;
    if (on) out[0] = 0;
    for (int i = 0; i < n && len < on; i++)
        if (shown[i]) {
            len += (size_t)snprintf(out + len, on - len, "%s%s", k++ ? sep : "", brief[i] && p[i].brief[0] ? p[i].brief : p[i].text);
            if (len >= on) len = on - 1;
        }
    return k;
}

int kvs_w_parts(kvs_ui *ui, int y, int x, int w, attr_t a, kvs_part *p, int n, const char *sep)
{
    char line[1024];
    int k = kvs_fit_parts(p, n, w, sep, line, sizeof line);
    kvs_w_text(ui, y, x, w, a, "%s", line);
    return k;
}

int kvs_table_fit(const kvs_col *c, int n, int w, int *width, const char **hdr)
{
    bool brief = false, shown[32];
    if (n > 32) n = 32;
    for (int i = 0; i < n; i++) shown[i] = true;
    for (;;) {
        int used = 0, flex = -1;
        for (int i = 0; i < n; i++) {
            if (!shown[i]) continue;
            const char *h = brief && c[i].brief ? c[i].brief : c[i].head;
            int cw = (int)strlen(h) > c[i].min_w ? (int)strlen(h) : c[i].min_w;
            if (c[i].flex) cw = c[i].min_w, flex = i;
            width[i] = cw;
            hdr[i] = h;
            used += cw + 1;
        }
        if (used <= w) {
            if (flex >= 0) width[flex] += w - used;
            break;
        }
        if (!brief) {
            brief = true;
            continue;
        }
        int pick = -1;
        for (int i = 0; i < n; i++)
            if (shown[i] && c[i].prio > 0 && (pick < 0 || c[i].prio >= c[pick].prio)) pick = i;
        if (pick < 0) break;   // only the columns that stay: the row clips at the box edge
        shown[pick] = false;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!shown[i]) width[i] = 0, hdr[i] = NULL;
        else k++;
        if (c[i].right && width[i] > 0) width[i] = -width[i];
    }
    return k;
}

void kvs_w_scroll(kvs_ui *ui, kvs_rect box, int first, int vis, int n)
{
    if (n <= vis || box.h < 3 || box.w < 12) return;
    attr_t a = kvs_attr(ui, KVS_C_ACCENT);
    int last = first + vis < n ? first + vis : n;
    if (first > 0) kvs_w_text(ui, box.y + 1, box.x + box.w - 1, 1, a, "%s", "^");
    if (last < n) kvs_w_text(ui, box.y + box.h - 2, box.x + box.w - 1, 1, a, "%s", "v");
    char t[64];
    int len = snprintf(t, sizeof t, " %d-%d of %d%s ", first + 1, last, n, last < n ? " v" : " ^");
    if (len + 4 <= box.w) kvs_w_text(ui, box.y + box.h - 1, box.x + box.w - 2 - len, len, a, "%s", t);
}
