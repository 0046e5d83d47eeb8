// fuzz_model_config.c — the Hugging Face checkpoint loader on an arbitrary
// config.json and model.safetensors.index.json (input split by fuzz_split)
// in a temp directory with no shards: the config checks, then the index
// (weight_map, shard names, a missing shard) must all fail cleanly. A
// config that loads has every field in the range the runner is sized for
// (issue 17: extreme eps/theta/sizes and a missing head_dim with an odd
// shape are refused at load, never reach a run).
#include "fuzz_util.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *cfg, *idx;
    size_t ncfg, nidx;
    fuzz_split(data, size, &cfg, &ncfg, &idx, &nidx);
    const char *dir = fuzz_tmpdir();
    char p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/config.json", dir);
    snprintf(p2, sizeof p2, "%s/model.safetensors.index.json", dir);
    fuzz_write(p1, cfg, ncfg);
    fuzz_write(p2, idx, nidx);
    kvq_model_config c;
    if (kvq_model_config_load(dir, &c) == KVQ_OK) {
        if (c.n_layers < 1 || c.n_heads < 1 || c.n_kv_heads < 1 || c.head_dim < 1) abort();
        if (c.n_layers > KVQ_MAX_LAYERS || c.head_dim > KVQ_MAX_HEAD_DIM || c.head_dim % 2 || c.n_heads % c.n_kv_heads)
            abort();
        if (c.vocab_size > (1 << 24) || c.hidden_size > (1 << 16) || c.intermediate_size > (1 << 18) ||
            c.n_heads > 1024 || c.max_position_embeddings > (1 << 24))
            abort();
        if (!(c.rms_norm_eps > 0 && c.rms_norm_eps <= 1e-2) || !(c.rope_theta >= 1 && c.rope_theta <= 1e12)) abort();
        kvq_model *m = NULL;
        if (kvq_model_load(dir, &m) == KVQ_OK) abort();   // there are no weights to find
        if (m) abort();
    }
    unlink(p1);
    unlink(p2);
    return 0;
}
