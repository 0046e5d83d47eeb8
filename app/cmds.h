// cmds.h — handlers of the command table, one file per area:
// cmd_core.c (session, trace, config), cmd_quant.c (quantize report),
// cmd_cache.c (benchmark, compare), cmd_recommend.c (recommend), cmd_model.c (ppl, generate, capture),
// cmd_tok.c (tokenize), cmd_calib.c (precompute, calibrate, artifacts), cmd_ui.c (studio actions).
#ifndef KVS_CMDS_H
#define KVS_CMDS_H
#include "commands.h"

#define KVS_CMD(name) int kvs_cmd_##name(kvs_session *s, kvs_args *a);
KVS_CMD(load) KVS_CMD(info) KVS_CMD(help) KVS_CMD(quit) KVS_CMD(set) KVS_CMD(show)
KVS_CMD(method) KVS_CMD(bits) KVS_CMD(value_bits) KVS_CMD(version) KVS_CMD(methods)
KVS_CMD(quantize)
KVS_CMD(benchmark) KVS_CMD(compare) KVS_CMD(recommend)
KVS_CMD(ppl) KVS_CMD(generate) KVS_CMD(capture) KVS_CMD(grid)
KVS_CMD(tokenize)
KVS_CMD(precompute) KVS_CMD(calibrate) KVS_CMD(save) KVS_CMD(load_artifacts)
KVS_CMD(view) KVS_CMD(run) KVS_CMD(replay) KVS_CMD(pause) KVS_CMD(step) KVS_CMD(export)
#undef KVS_CMD

// `replay` outside the studio (cmd_cache.c): the session's trace and config
// replayed to the end through the benchmark machinery; prints its report.
int kvs_replay_batch(kvs_session *s);

// ---- cmd_model.c's model helpers, shared with cmd_grid.c ----
typedef struct kvq_model kvq_model;
typedef struct kvq_tok kvq_tok;
#define KVS_MODEL_CHUNK 128   // prefill chunk: the cache sees the text as a real prompt would arrive
// --model DIR, else the session's model (a studio without one adopts DIR).
void kvs_model_dir(kvs_session *s, kvs_args *a, char *dir, size_t n);
// Loads the checkpoint at dir (error naming cmd; "" = --model is required). 0 / -1.
int kvs_model_load(kvs_session *s, const char *dir, const char *cmd, kvq_model **m);
// Token ids of a text file: the model's tokenizer.json (*tk, the caller frees) or
// bytes; *nbytes the file size. 0 / -1 (printed).
int kvs_model_text_tokens(kvs_session *s, const char *cmd, const kvq_model *m, const char *path, int32_t **tok,
                          int *n, kvq_tok **tk, size_t *nbytes);
// Bytes of text the n - 1 scored predictions cover (bits per byte's divisor).
size_t kvs_model_scored_bytes(const kvq_tok *tk, const int32_t *tok, int n, size_t text_len);
void kvs_model_cfg_label(const kvq_config *c, const kvq_artifacts *art, char *buf, size_t n);
// The session's set for c's key method, else its value method, else s->art. Under s->lock.
const kvq_artifacts *kvs_model_session_art(kvs_session *s, const kvq_config *c);

// Placeholder for a command whose area has not landed yet.
#define KVS_CMD_STUB(name)                                                        \
    int kvs_cmd_##name(kvs_session *s, kvs_args *a)                               \
    { (void)a; return kvs_errorf(s, "%s: not implemented yet", #name); }
#endif
