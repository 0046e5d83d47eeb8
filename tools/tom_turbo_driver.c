// tools/tom_turbo_driver.c — the reference side of tests/data/formats/tom_turbo.txt:
// runs TheTom/llama-cpp-turboquant's own ggml (ggml-base + ggml-cpu, built by
// tools/tom_turbo_vectors.sh outside the tree) on the vectors it reads, along
// the path llama.cpp's KV cache takes on the CPU backend:
//   write:  ggml_pad to a multiple of 128 (llama-kv-cache.cpp cpy_k, :1459-1467)
//           then GGML_OP_SET_ROWS into a turboN tensor with WHT group 128 in
//           op_params (:1494-1498), computed by ggml_graph_compute;
//   read:   the type's to_float (dequantize_row_turboN_0, rotated domain), then
//           GGML_OP_TURBO_WHT direction 1, group 128, with the all-ones InnerQ
//           scale (llama-graph.cpp:1983-1993, llama-kv-cache.cpp:443-447);
//   score:  the query through GGML_OP_TURBO_WHT direction 0 (llama-graph.cpp
//           :2254-2265) and the type's CPU vec_dot against the cached row.
// q8_0, the K type of the fork's asymmetric configs (-ctk q8_0 -ctv turboN),
// goes through the same SET_ROWS and to_float, unpadded and unrotated.
// Never part of kvstudio's build. Input, one vector a line: `d x_0 .. x_{d-1}`
// as float32 hex; a second line `q` gives the query for it. Output, one line a
// (type, vector): `turboN d | x | record bytes | decoded | query | score`, and
// `q8_0 d | x | record bytes | decoded` (its vec_dot rounds the query to q8_0
// first, which kvstudio's score does not: not recorded).
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ggml.h"
#include "ggml-cpu.h"

#define QK 128
#define MAXD 256

static void run(struct ggml_context *ctx, struct ggml_tensor *out, struct ggml_cgraph *gf)
{
    ggml_build_forward_expand(gf, out);
    if (ggml_graph_compute_with_ctx(ctx, gf, 1) != GGML_STATUS_SUCCESS) {
        fprintf(stderr, "tom_turbo_driver: graph compute failed\n");
        exit(1);
    }
}

// One vector x of d values through type t; writes the output line.
static void one(enum ggml_type t, int d, const float *x, const float *q)
{
    const bool turbo = t != GGML_TYPE_Q8_0;
    const int dp = turbo ? (d + QK - 1) / QK * QK : d;
    struct ggml_init_params ip = {.mem_size = 16 << 20, .mem_buffer = NULL, .no_alloc = false};
    struct ggml_context *ctx = ggml_init(ip);
    // (d, 1 head, 1 token) as k_cur, padded per head, flattened, stored at row 0
    struct ggml_tensor *src = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, d, 1, 1);
    memcpy(src->data, x, sizeof(float) * (size_t)d);
    struct ggml_tensor *cur = src;
    if (dp != d) cur = ggml_pad(ctx, cur, dp - d, 0, 0, 0);
    cur = ggml_view_2d(ctx, cur, dp, 1, cur->nb[2], 0);
    struct ggml_tensor *cache = ggml_new_tensor_2d(ctx, t, dp, 1);
    struct ggml_tensor *idx = ggml_new_tensor_1d(ctx, GGML_TYPE_I64, 1);
    ((int64_t *)idx->data)[0] = 0;
    struct ggml_tensor *set = ggml_set_rows(ctx, cache, cur, idx);
    const int32_t wht_group = QK;
    if (turbo) memcpy(set->op_params, &wht_group, sizeof wht_group);
    run(ctx, set, ggml_new_graph(ctx));
    const size_t nbytes = ggml_row_size(t, dp);
    const uint8_t *rec = cache->data;

    // read back: to_float, then the graph's inverse WHT
    struct ggml_tensor *rot = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, dp, 1);
    ggml_get_type_traits(t)->to_float(rec, rot->data, dp);
    struct ggml_tensor *ones = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 128);
    for (int i = 0; i < 128; i++) ((float *)ones->data)[i] = 1.0f;
    struct ggml_tensor *inv = rot;
    if (turbo) {
        inv = ggml_turbo_wht(ctx, rot, 1, QK, ones);
        run(ctx, inv, ggml_new_graph(ctx));
    }

    // the query: padded, rotated forward (group auto = 128), vec_dot with the row
    float score = 0.0f;
    if (turbo) {
        struct ggml_tensor *qt = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, d, 1, 1);
        memcpy(qt->data, q, sizeof(float) * (size_t)d);
        struct ggml_tensor *qc = dp != d ? ggml_cont(ctx, ggml_pad(ctx, qt, dp - d, 0, 0, 0)) : qt;
        struct ggml_tensor *qr = ggml_turbo_wht(ctx, qc, 0, 0, ones);
        run(ctx, qr, ggml_new_graph(ctx));
        ggml_get_type_traits_cpu(t)->vec_dot(dp, &score, 0, rec, 0, qr->data, 0, 1);
    }

    printf("%s %d |", ggml_type_name(t), d);
    for (int i = 0; i < d; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        printf(" %08x", u);
    }
    printf(" | ");
    for (size_t i = 0; i < nbytes; i++) printf("%02x", rec[i]);
    printf(" |");
    for (int i = 0; i < d; i++) {   // the padding is dropped, as the graph's view does
        uint32_t u;
        memcpy(&u, (const float *)inv->data + i, 4);
        printf(" %08x", u);
    }
    if (turbo) {
        printf(" |");
        for (int i = 0; i < d; i++) {
            uint32_t u;
            memcpy(&u, &q[i], 4);
            printf(" %08x", u);
        }
        uint32_t su;
        memcpy(&su, &score, 4);
        printf(" | %08x", su);
    }
    printf("\n");
    ggml_free(ctx);
}

static int read_vec(FILE *f, int *d, float *x)
{
    if (fscanf(f, "%d", d) != 1) return 0;
    if (*d < 1 || *d > MAXD) {
        fprintf(stderr, "tom_turbo_driver: d %d out of 1..%d\n", *d, MAXD);
        exit(1);
    }
    for (int i = 0; i < *d; i++) {
        unsigned u;
        if (fscanf(f, "%8x", &u) != 1) {
            fprintf(stderr, "tom_turbo_driver: short vector\n");
            exit(1);
        }
        memcpy(&x[i], &u, 4);
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tom_turbo_driver INPUTS\n");
        return 2;
    }
    ggml_cpu_init();
    static const enum ggml_type types[] = {GGML_TYPE_TURBO2_0, GGML_TYPE_TURBO3_0, GGML_TYPE_TURBO4_0,
                                           GGML_TYPE_Q8_0};
    for (int k = 0; k < 4; k++) {
        FILE *f = fopen(argv[1], "r");
        if (!f) {
            perror(argv[1]);
            return 1;
        }
        int d, dq;
        float x[MAXD], q[MAXD];
        while (read_vec(f, &d, x)) {
            if (!read_vec(f, &dq, q) || dq != d) {
                fprintf(stderr, "tom_turbo_driver: vector without its query\n");
                return 1;
            }
            one(types[k], d, x, q);
        }
        fclose(f);
    }
    return 0;
}
