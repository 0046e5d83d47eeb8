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

// Placeholder for a command whose area has not landed yet.
#define KVS_CMD_STUB(name)                                                        \
    int kvs_cmd_##name(kvs_session *s, kvs_args *a)                               \
    { (void)a; return kvs_errorf(s, "%s: not implemented yet", #name); }
#endif
