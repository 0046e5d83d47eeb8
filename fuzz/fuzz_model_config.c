// fuzz_model_config.c — the Hugging Face checkpoint loader on an arbitrary
// config.json and model.safetensors.index.json (input split by fuzz_split)
// in a temp directory with no shards: the config checks, then the index
// (weight_map, shard names, a missing shard) must all fail cleanly.
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
        kvq_model *m = NULL;
        if (kvq_model_load(dir, &m) == KVQ_OK) abort();   // there are no weights to find
        if (m) abort();
    }
    unlink(p1);
    unlink(p2);
    return 0;
}
