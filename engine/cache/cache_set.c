// cache_set.c — one cache per layer of a model or trace from one config
// (bit_allocation and protect_layers resolve per layer in kvq_cache_new_ex).
#include <stdlib.h>
#include "cache.h"

kvq_status kvq_cache_set_new_ex(const kvq_config *cfg, const kvq_artifacts *art, int n_layers,
                                int n_kv_heads, int head_dim, const kvq_allocator *alloc,
                                kvq_cache_set **out)
{
    *out = NULL;
    if (n_layers < 1 || n_layers > KVQ_MAX_LAYERS)
        return kvq_error(KVQ_ERR_ARG, "cache set: %d layers (expected 1..%d)", n_layers, KVQ_MAX_LAYERS);
    kvq_cache_set *s = calloc(1, sizeof *s);
    if (s) s->layers = calloc((size_t)n_layers, sizeof *s->layers);
    if (!s || !s->layers) {
        free(s);
        return kvq_error(KVQ_ERR_NOMEM, "cache set: out of memory");
    }
    s->n_layers = n_layers;
    for (int l = 0; l < n_layers; l++) {
        kvq_status st = kvq_cache_new_ex(cfg, art, l, n_layers, n_kv_heads, head_dim, alloc, &s->layers[l]);
        if (st) {
            kvq_cache_set_free(s);
            return st;
        }
    }
    *out = s;
    return KVQ_OK;
}

kvq_status kvq_cache_set_new(const kvq_config *cfg, const kvq_artifacts *art, int n_layers,
                             int n_kv_heads, int head_dim, kvq_cache_set **out)
{
    return kvq_cache_set_new_ex(cfg, art, n_layers, n_kv_heads, head_dim, NULL, out);
}

void kvq_cache_set_free(kvq_cache_set *s)
{
    if (!s) return;
    for (int l = 0; l < s->n_layers; l++) kvq_cache_free(s->layers[l]);
    free(s->layers);
    free(s);
}

void kvq_cache_set_reset(kvq_cache_set *s)
{
    for (int l = 0; s && l < s->n_layers; l++) kvq_cache_reset(s->layers[l]);
}

void kvq_cache_set_attach(kvq_cache_set *s, kvq_observers *obs)
{
    for (int l = 0; s && l < s->n_layers; l++) kvq_cache_attach(s->layers[l], obs);
}

size_t kvq_cache_set_bytes(const kvq_cache_set *s)
{
    size_t b = 0;
    for (int l = 0; s && l < s->n_layers; l++) b += kvq_cache_bytes(s->layers[l]);
    return b;
}
