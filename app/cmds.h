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
KVS_CMD(ppl) KVS_CMD(generate) KVS_CMD(capture)
KVS_CMD(tokenize)
KVS_CMD(precompute) KVS_CMD(calibrate) KVS_CMD(save) KVS_CMD(load_artifacts)
KVS_CMD(view) KVS_CMD(run) KVS_CMD(replay) KVS_CMD(pause) KVS_CMD(step) KVS_CMD(export)
#undef KVS_CMD

// `replay` outside the studio (cmd_cache.c): the session's trace and config
// replayed to the end through the benchmark machinery; prints its report.
int kvs_replay_batch(kvs_session *s);

// Token ids of text (len bytes) for model m (cmd_model.c): through the model
// directory's tokenizer.json when it has one (*tk set, the caller frees it
// with kvq_tok_free), else the raw bytes (byte-level models only; *tk NULL).
// *tok: malloc'd, the caller frees it. what names the text in errors.
struct kvq_model;
struct kvq_tok;
int kvs_model_text_tokens(kvs_session *s, const char *cmd, const struct kvq_model *m, const char *what,
                          const char *text, size_t len, int32_t **tok, int *n, struct kvq_tok **tk);
// Bytes of a text of text_len bytes that the n - 1 scored predictions of
// its tokens cover (bits per byte): all of it with a leading BOS, else all
// but the first token's bytes; byte-level (tk NULL): n - 1.
size_t kvs_model_scored_bytes(const struct kvq_tok *tk, const int32_t *tok, int n, size_t text_len);

// Placeholder for a command whose area has not landed yet.
#define KVS_CMD_STUB(name)                                                        \
    int kvs_cmd_##name(kvs_session *s, kvs_args *a)                               \
    { (void)a; return kvs_errorf(s, "%s: not implemented yet", #name); }
#endif
