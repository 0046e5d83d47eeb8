// recommend.h — the table behind `kvstudio recommend` and the studio's Deploy
// view: every KV format an engine offers (deploy.h), replayed through the
// caches on a trace exactly as that engine stores it, ranked; plus
// kvstudio's own best configuration at the same budget (not deployable in
// those engines). Computes only: the CLI and the view print it.
//
// Rows within the budget come first, ranked by output error (key rel MSE
// when the trace has no queries); the Pareto front over (bytes per token,
// that error) is marked.
#ifndef KVQ_RECOMMEND_H
#define KVQ_RECOMMEND_H
#include <stdbool.h>
#include "deploy.h"
#include "metrics.h"
#include "trace.h"

// The figures of a row, in printing order. Adding a column = one entry
// here, one row in kvq_recommend_cols (recommend.c) and the code that fills
// v[] (row_prepare for memory, measure for replayed figures).
typedef enum kvq_recommend_col_id {
    KVQ_REC_KEY_BITS, KVQ_REC_VALUE_BITS, KVQ_REC_BYTES_PER_TOKEN, KVQ_REC_GIB,   // from the format
    KVQ_REC_KEY_REL_MSE, KVQ_REC_OUTPUT_ERROR, KVQ_REC_ATTN_KL,                   // from the replay
    KVQ_REC_N_COLS
} kvq_recommend_col_id;

typedef struct kvq_recommend_col {
    kvq_metric_id metric;   // name, JSON key, format and unit
    bool measured;          // needs the replay (absent when the row failed)
    bool integer;           // a count (JSON integer)
} kvq_recommend_col;
extern const kvq_recommend_col kvq_recommend_cols[KVQ_REC_N_COLS];

typedef struct kvq_recommend_row {
    const char *engine, *format, *flags;   // static strings (deploy table), or into the table
    kvq_config cfg;
    kvq_deploy_memory mem;
    double v[KVQ_REC_N_COLS];   // NAN = not measured
    bool ok;                    // replayed; error[] says why not
    bool in_budget, front;
    int rank;                   // 1.. among the ok rows in table order, 0 = failed
    char label[160];            // kvq_config_label
    char error[256];
} kvq_recommend_row;

typedef struct kvq_recommend_opts {
    const char *engine;   // an engine of kvq_deploy_formats, or "all"
    long context;         // tokens the memory is given at, 0 = the trace's length
    double budget_gib;    // <= 0 = none
    int seq_len;          // tokens replayed, 0 = the whole trace
    uint64_t seed;
} kvq_recommend_opts;
void kvq_recommend_opts_default(kvq_recommend_opts *o);

#define KVQ_REC_MAX_ROWS 96
typedef struct kvq_recommend_table {
    kvq_recommend_opts opts;    // as run, context resolved (engine points at the caller's string)
    int n_layers, n_kv_heads, head_dim, replayed;   // shape; tokens replayed
    bool by_output;             // ranked by output error (else key rel MSE)
    int n, n_ok;
    kvq_recommend_row rows[KVQ_REC_MAX_ROWS];   // ranked
    // kvstudio's best within own_budget_gib (the budget, else the memory of
    // the top engine row); own_budget_gib 0 = not sought
    bool have_best;
    double own_budget_gib;
    kvq_recommend_row best;     // format = its label, flags = not_deployable
    char not_deployable[96];    // "not deployable in llamacpp, vllm or mlx"
} kvq_recommend_table;

// The metric the table ranks by.
kvq_metric_id kvq_recommend_rank_metric(const kvq_recommend_table *t);
double kvq_recommend_rank_err(const kvq_recommend_table *t, const kvq_recommend_row *r);

// Fills *out (caller-owned, large: allocate it). art (may be NULL) adds its
// method to kvstudio's candidates and must match the trace. p may be NULL;
// cancelling returns KVQ_ERR_CANCELLED with *out incomplete. A row whose
// format cannot run on this shape is kept with ok = false and its error.
// Returns an error only for bad options or cancel; zero rows (an unknown
// engine) is not an error here: callers check out->n_ok.
kvq_status kvq_recommend_run(const kvq_trace *t, const kvq_artifacts *art, const kvq_recommend_opts *o,
                             kvq_progress *p, kvq_recommend_table *out);
#endif
