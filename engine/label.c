// label.c — run labels and artifact ids (label.h).
#include "label.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "artifacts.h"

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

void kvq_artifacts_id(const kvq_artifacts *a, char *buf, size_t n)
{
    if (!n) return;
    buf[0] = 0;
    if (!a) return;
    uint64_t h = 0xcbf29ce484222325ULL;
    const char *m = kvq_artifacts_meta(a, "method");
    if (m) h = fnv(h, m, strlen(m) + 1);
    for (int i = 0; i < kvq_artifacts_count(a); i++) {
        const char *name = kvq_artifacts_name(a, i);
        int nd = 0;
        int64_t sh[8] = {0};
        const float *d = kvq_artifacts_get(a, name, &nd, sh);
        h = fnv(h, name, strlen(name) + 1);
        size_t cnt = 1;
        for (int k = 0; k < nd && k < 8; k++) cnt *= (size_t)sh[k];
        h = fnv(h, sh, sizeof sh);
        if (d) h = fnv(h, d, cnt * sizeof(float));
    }
    snprintf(buf, n, "%08x", (unsigned)(h ^ (h >> 32)));
}

// Appends to buf at *len, keeping the terminator; marks truncation with "...".
static void put(char *buf, size_t n, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t n, size_t *len, const char *fmt, ...)
{
    if (*len >= n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, n - *len, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k >= n - *len) {
        *len = n;
        if (n >= 4) memcpy(buf + n - 4, "...", 4);
        return;
    }
    *len += (size_t)k;
}

static bool is_path_field(const char *f)
{
    return !strcmp(f, "artifacts") || !strcmp(f, "smooth_factors") || !strcmp(f, "rotations");
}

const char *kvq_config_label(const kvq_config *c, const char *art_id, char *buf, size_t n)
{
    if (!n) return buf;
    buf[0] = 0;
    size_t len = 0;
    // artifacts are part of the configuration only where a method reads them
    const kvq_method *km = kvq_method_find(c->method), *vm = c->value_method[0] ? kvq_method_find(c->value_method) : NULL;
    if (!(km && km->needs_calibration) && !(vm && vm->needs_calibration && c->value_bits != 16)) art_id = NULL;
    char kb[32];
    if (c->n_bit_allocation > 0) {
        double sum = 0;
        for (int i = 0; i < c->n_bit_allocation; i++) sum += c->bit_allocation[i];
        snprintf(kb, sizeof kb, "%.3g", sum / c->n_bit_allocation);
    } else {
        snprintf(kb, sizeof kb, "%d", c->bits);
    }
    put(buf, n, &len, "%s k%s/v%d", c->method, kb, c->value_bits);
    if (c->n_bit_allocation > 0) {
        put(buf, n, &len, " alloc");
        for (int i = 0; i < c->n_bit_allocation; i++) put(buf, n, &len, "%c%d", i ? '/' : ' ', c->bit_allocation[i]);
    }
    kvq_config d;
    kvq_config_default(&d);
    const char *const *names = kvq_config_field_names();
    for (int i = 0; names[i]; i++) {
        const char *f = names[i];
        if (!strcmp(f, "method") || !strcmp(f, "value_bits") || !strcmp(f, "bit_allocation")) continue;
        if (!strcmp(f, "bits") && c->n_bit_allocation == 0) continue;   // shown as k<bits>
        if (art_id && art_id[0] && is_path_field(f)) continue;         // the id says which artifacts
        char v[1024], dv[1024];
        kvq_config_get(c, f, v, sizeof v);
        kvq_config_get(&d, f, dv, sizeof dv);
        if (!strcmp(f, "value_method")) {   // "" and turboquant_mse are the same; fp16 values ignore it
            if (c->value_bits == 16 || !v[0] || !strcmp(v, "turboquant_mse")) continue;
        } else if (!strcmp(f, "query_int8") && strcmp(c->method, "turboquant_mse")) {
            continue;   // only turboquant_mse keys read it
        } else if (!strcmp(v, dv)) {
            continue;
        }
        put(buf, n, &len, " %s=%s", f, v);
    }
    if (art_id && art_id[0]) put(buf, n, &len, " art=%s", art_id);
    return buf;
}

const char *kvq_config_fit_bits(kvq_config *c, bool bits_given, bool *changed)
{
    static _Thread_local char msg[256];
    if (changed) *changed = false;
    const kvq_method *m = kvq_method_find(c->method);
    if (!m) return NULL;   // kvq_config_check names the unknown method
    int want = c->bits;
    if (m->min_bits == m->max_bits) {
        if (bits_given && c->bits != m->min_bits) {
            snprintf(msg, sizeof msg, "bits: %s has a fixed width of %d bit%s (got %d; leave bits out to take it)",
                     m->name, m->min_bits, m->min_bits == 1 ? "" : "s", c->bits);
            return msg;
        }
        want = m->min_bits;
    } else if (!bits_given) {
        want = c->bits < m->min_bits ? m->min_bits : c->bits > m->max_bits ? m->max_bits : c->bits;
    }
    if (changed) *changed = want != c->bits;
    c->bits = want;
    return NULL;
}
