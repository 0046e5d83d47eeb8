// tests/peers/ggml_peer.c — kvstudio's llama.cpp KV formats against the real
// ggml, byte for byte. Built and run by tools/peers.sh (`make peers`), linked
// with libkvq and with ggml's static CPU libraries built from the llama.cpp
// release that node-llama-cpp ships (outside the tree; nothing of it is here).
//
// For every format and every input, kvstudio's encode must give the same
// bytes as ggml's KV-cache write path, ggml_get_type_traits_cpu(t)->from_float
// (what GGML_OP_SET_ROWS / GGML_OP_CPY call per row), and kvstudio's decode
// the same float bits as ggml_get_type_traits(t)->to_float of those bytes.
// Inputs: every (layer, kv head) key and value matrix of the traces given on
// the command line, one vector per token, plus synthetic vectors (Gaussians
// over many scales, ties, zeros, subnormals, huge values; Inf and NaN for the
// float formats). Prints one line per format; exit 1 on any mismatch.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml-cpu.h"
#include "ggml.h"
#include "kvq.h"
#include "trace.h"

typedef struct {
    const char *method;   // kvstudio name
    enum ggml_type type;
    bool floats;          // f32/f16/bf16: Inf and NaN inputs are fair
} peer_format;

static const peer_format formats[] = {
    {"llamacpp:f32", GGML_TYPE_F32, true},     {"llamacpp:f16", GGML_TYPE_F16, true},
    {"llamacpp:bf16", GGML_TYPE_BF16, true},   {"llamacpp:q8_0", GGML_TYPE_Q8_0, false},
    {"llamacpp:q4_0", GGML_TYPE_Q4_0, false},  {"llamacpp:q4_1", GGML_TYPE_Q4_1, false},
    {"llamacpp:iq4_nl", GGML_TYPE_IQ4_NL, false}, {"llamacpp:q5_0", GGML_TYPE_Q5_0, false},
    {"llamacpp:q5_1", GGML_TYPE_Q5_1, false},
};
#define N_FORMATS (int)(sizeof formats / sizeof formats[0])

typedef struct {
    long vectors, code_mismatch, value_mismatch;
    long tiny_blocks;  // iq4_nl blocks whose nibbles ggml leaves undefined
    char first[256];   // the first mismatch, for the report
} peer_tally;

// ggml's quantize_row_iq4_nl_ref skips a block whose max |x| is below
// GROUP_MAX_EPS (1e-15): it stores scale 0 but packs nibbles from its
// uninitialised index array, so those bytes are undefined there (kvstudio
// writes nibble 0). Such a block must still have both scales 0 and decode to
// zeros on both sides; then its nibbles and the sign of its zeros are not
// compared (counted apart in the report).
static void exempt_tiny_blocks(const float *x, size_t n, int d, uint8_t *ck, uint8_t *cg,
                               float *yk, float *yg, peer_tally *t)
{
    const size_t nb = n * (size_t)d / 32, bytes = 18;
    for (size_t b = 0; b < nb; b++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        if (amax >= 1e-15f) continue;
        bool zeros = ck[b * bytes] == cg[b * bytes] && ck[b * bytes + 1] == cg[b * bytes + 1];
        for (int j = 0; j < 32; j++) zeros = zeros && yk[b * 32 + j] == 0.0f && yg[b * 32 + j] == 0.0f;
        if (!zeros) continue;   // left to the byte comparison, which then fails
        memcpy(cg + b * bytes + 2, ck + b * bytes + 2, bytes - 2);
        memcpy(yg + b * 32, yk + b * 32, sizeof(float) * 32);
        t->tiny_blocks++;
    }
}

// One (n, d) matrix through both sides; a vector counts once however many
// of its bytes differ.
static int compare(const peer_format *f, const kvq_quantizer *q, const float *x, size_t n, int d,
                   const char *what, peer_tally *t)
{
    const size_t row = ggml_row_size(f->type, d);
    if (row != q->bpv) {
        snprintf(t->first, sizeof t->first, "bytes per vector: kvstudio %zu, ggml %zu", q->bpv, row);
        t->code_mismatch += (long)n;
        t->vectors += (long)n;
        return 1;
    }
    uint8_t *ck = malloc(n * row), *cg = malloc(n * row);
    float *yk = malloc(sizeof(float) * n * (size_t)d), *yg = malloc(sizeof(float) * n * (size_t)d);
    if (!ck || !cg || !yk || !yg) {
        fprintf(stderr, "ggml_peer: out of memory\n");
        exit(2);
    }
    const struct ggml_type_traits_cpu *cpu = ggml_get_type_traits_cpu(f->type);
    const struct ggml_type_traits *tt = ggml_get_type_traits(f->type);
    q->m->encode(q->plan, x, n, ck);
    q->m->decode(q->plan, ck, n, yk);
    for (size_t i = 0; i < n; i++) {   // row by row, as set_rows writes a KV cell
        cpu->from_float(x + i * (size_t)d, cg + i * row, d);
        if (tt->to_float) tt->to_float(cg + i * row, yg + i * (size_t)d, d);
        else memcpy(yg + i * (size_t)d, cg + i * row, row);   // f32: the cache holds floats
    }
    if (f->type == GGML_TYPE_IQ4_NL) exempt_tiny_blocks(x, n, d, ck, cg, yk, yg, t);
    for (size_t i = 0; i < n; i++) {
        t->vectors++;
        const bool cm = memcmp(ck + i * row, cg + i * row, row) != 0;
        const bool vm = memcmp(yk + i * (size_t)d, yg + i * (size_t)d, sizeof(float) * (size_t)d) != 0;
        t->code_mismatch += cm;
        t->value_mismatch += vm;
        if ((cm || vm) && !t->first[0]) {
            size_t b = 0;
            while (b < row && ck[i * row + b] == cg[i * row + b]) b++;
            snprintf(t->first, sizeof t->first, "%s vector %zu: %s (first differing byte %zu)", what,
                     i, cm ? "codes differ" : "decoded values differ", b);
        }
    }
    free(ck);
    free(cg);
    free(yk);
    free(yg);
    return 0;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static double uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static float gauss(void)
{
    double u = uniform(), v = uniform();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

// n vectors of d synthetic values (d a multiple of 32): scaled Gaussians,
// then hand-made blocks.
static size_t synth(float *x, size_t cap, int d, bool floats)
{
    size_t n = 0;
    static const float scales[] = {1e-6f, 1e-3f, 0.1f, 1.0f, 7.0f, 100.0f, 3e4f};
    for (int s = 0; s < 7; s++)
        for (int k = 0; k < 64 && n < cap; k++, n++)
            for (int j = 0; j < d; j++) x[n * d + j] = scales[s] * gauss() * (j % 17 == 3 ? 9.0f : 1.0f);
    for (int k = 0; k < 16 && n < cap; k++, n++) {   // ties of the rounding: halves and quarters
        for (int j = 0; j < d; j++) x[n * d + j] = (float)((j % 32) - 16 + k) * (k & 1 ? 0.5f : 0.25f);
        x[n * d] = (float)(k + 1) * 8.0f;
    }
    for (int k = 0; k < 8 && n < cap; k++, n++)      // integers whose scale is exact
        for (int j = 0; j < d; j++) x[n * d + j] = (float)((j * (k + 3)) % 255 - 127);
    if (n < cap) {                                   // zeros, then constant blocks
        for (int j = 0; j < d; j++) x[n * d + j] = 0.0f;
        n++;
    }
    for (int k = 0; k < 4 && n < cap; k++, n++)
        for (int j = 0; j < d; j++) x[n * d + j] = (k & 1 ? -1.0f : 1.0f) * (float)(k + 1) * 0.37f;
    for (int k = 0; k < 4 && n < cap; k++, n++)      // subnormal and tiny
        for (int j = 0; j < d; j++) x[n * d + j] = (float)((j % 7) - 3) * (k < 2 ? 1e-40f : 3e-8f);
    for (int k = 0; k < 2 && n < cap; k++, n++)      // past the f16 range (scales overflow)
        for (int j = 0; j < d; j++) x[n * d + j] = gauss() * (k ? 1e6f : 7e4f);
    if (floats)
        for (int k = 0; k < 2 && n < cap; k++, n++)
            for (int j = 0; j < d; j++) {
                float v = gauss();
                if (j % 5 == 1) v = k ? -INFINITY : INFINITY;
                if (j % 7 == 2) v = NAN;
                if (j % 11 == 4) {
                    uint32_t b = 0x7f800001u + (uint32_t)j * 977u;   // signalling NaNs, payloads
                    memcpy(&v, &b, 4);
                }
                x[n * d + j] = v;
            }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ggml_peer TRACE.safetensors...\n");
        return 2;
    }
    ggml_cpu_init();
    peer_tally tally[N_FORMATS];
    memset(tally, 0, sizeof tally);
    int bad = 0;
    for (int a = 1; a < argc; a++) {
        kvq_trace *tr;
        if (kvq_trace_open(argv[a], NULL, &tr)) {
            fprintf(stderr, "ggml_peer: %s\n", kvq_last_error());
            return 2;
        }
        const int d = tr->head_dim, nt = tr->n_tokens;
        float *x = malloc(sizeof(float) * (size_t)nt * (size_t)d);
        for (int fi = 0; fi < N_FORMATS; fi++) {
            const peer_format *f = &formats[fi];
            kvq_config cfg;
            kvq_config_default(&cfg);
            const kvq_method *m;
            if (kvq_method_lookup(f->method, &m)) {
                fprintf(stderr, "ggml_peer: %s\n", kvq_last_error());
                return 2;
            }
            kvq_plan_params pp = {.bits = m->min_bits, .head_dim = d, .cfg = &cfg};
            kvq_quantizer q;
            if (kvq_quantizer_init(&q, f->method, &pp)) {
                fprintf(stderr, "ggml_peer: %s: %s\n", f->method, kvq_last_error());
                return 2;
            }
            for (int l = 0; l < tr->n_layers; l++)
                for (int h = 0; h < tr->n_kv_heads; h++)
                    for (int v = 0; v < 1 + tr->has_values; v++) {
                        char what[64];
                        snprintf(what, sizeof what, "layer %d head %d %s", l, h, v ? "values" : "keys");
                        (v ? kvq_trace_values : kvq_trace_keys)(tr, l, h, x);
                        bad |= compare(f, &q, x, (size_t)nt, d, what, &tally[fi]);
                    }
            if (a == 1) {   // synthetic vectors once, at the first trace's head_dim
                const size_t cap = 512;
                float *s = malloc(sizeof(float) * cap * (size_t)d);
                size_t n = synth(s, cap, d, f->floats);
                bad |= compare(f, &q, s, n, d, "synthetic", &tally[fi]);
                free(s);
            }
            kvq_quantizer_free(&q);
        }
        free(x);
        kvq_trace_free(tr);
    }
    for (int fi = 0; fi < N_FORMATS; fi++) {
        const peer_tally *t = &tally[fi];
        const bool ok = !t->code_mismatch && !t->value_mismatch;
        char tiny[96] = "";
        if (t->tiny_blocks)
            snprintf(tiny, sizeof tiny, " (%ld blocks with max |x| < 1e-15: scale and zeros only)",
                     t->tiny_blocks);
        printf("%-16s %-4s %7ld vectors, %ld code mismatches, %ld decode mismatches%s%s%s\n",
               formats[fi].method, ok ? "ok" : "FAIL", t->vectors, t->code_mismatch,
               t->value_mismatch, tiny, ok ? "" : ": ", t->first);
        bad |= !ok;
    }
    return bad ? 1 : 0;
}
