// artifacts.c — in-memory calibration artifacts; disk I/O in artifacts_io.c.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "artifacts.h"
#include "artifacts_impl.h"

kvq_status kvq_artifacts_new(kvq_artifacts **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? KVQ_OK : kvq_error(KVQ_ERR_NOMEM, "artifacts: out of memory");
}

void kvq_artifacts_free(kvq_artifacts *a)
{
    if (!a) return;
    for (int i = 0; i < a->n; i++) {
        free(a->t[i].name);
        free(a->t[i].data);
    }
    for (int i = 0; i < a->n_meta; i++) {
        free(a->meta_keys[i]);
        free(a->meta_vals[i]);
    }
    free(a->t);
    free(a->meta_keys);
    free(a->meta_vals);
    free(a);
}

static int find(const kvq_artifacts *a, const char *name)
{
    for (int i = 0; a && i < a->n; i++)
        if (strcmp(a->t[i].name, name) == 0) return i;
    return -1;
}

kvq_status kvq_artifacts_put(kvq_artifacts *a, const char *name, const float *data, int ndim,
                             const int64_t *shape)
{
    if (ndim < 0 || ndim > KVQ_ART_MAX_DIMS)
        return kvq_error(KVQ_ERR_ARG, "artifact %s: %d dims (expected 0..%d)", name, ndim, KVQ_ART_MAX_DIMS);
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && n > SIZE_MAX / sizeof(float) / (size_t)shape[d]))
            return kvq_error(KVQ_ERR_ARG, "artifact %s: bad shape", name);
        n *= (size_t)shape[d];
    }
    float *copy = malloc(n ? n * sizeof *copy : 1);
    char *nm = strdup(name);
    if (!copy || !nm) {
        free(copy);
        free(nm);
        return kvq_error(KVQ_ERR_NOMEM, "artifact %s: out of memory", name);
    }
    if (n) memcpy(copy, data, n * sizeof *copy);
    int i = find(a, name);
    if (i < 0) {
        kvq_art_tensor *t = realloc(a->t, sizeof *t * (size_t)(a->n + 1));
        if (!t) {
            free(copy);
            free(nm);
            return kvq_error(KVQ_ERR_NOMEM, "artifact %s: out of memory", name);
        }
        a->t = t;
        i = a->n++;
    } else {
        free(a->t[i].name);
        free(a->t[i].data);
    }
    a->t[i] = (kvq_art_tensor){.name = nm, .data = copy, .ndim = ndim, .nelem = n};
    memcpy(a->t[i].shape, shape, sizeof(int64_t) * (size_t)ndim);
    return KVQ_OK;
}

const float *kvq_artifacts_get(const kvq_artifacts *a, const char *name, int *ndim, int64_t *shape)
{
    int i = find(a, name);
    if (i < 0) return NULL;
    if (ndim) *ndim = a->t[i].ndim;
    if (shape) memcpy(shape, a->t[i].shape, sizeof(int64_t) * (size_t)a->t[i].ndim);
    return a->t[i].data;
}

kvq_status kvq_artifacts_require(const kvq_artifacts *a, const char *name, int ndim,
                                 const int64_t *shape, const float **data)
{
    int nd;
    int64_t sh[KVQ_ART_MAX_DIMS];
    const float *p = kvq_artifacts_get(a, name, &nd, sh);
    if (!p)
        return kvq_error(KVQ_ERR_NEEDS_CALIBRATION, "artifact '%s' missing%s", name,
                         a ? "" : " (no artifacts loaded: run precompute / calibrate first)");
    bool same = nd == ndim;
    for (int d = 0; same && d < ndim; d++) same = sh[d] == shape[d];
    if (!same) {
        char got[128] = "", want[128] = "";
        size_t lg = 0, lw = 0;
        for (int d = 0; d < nd && lg < sizeof got; d++)
            lg += (size_t)snprintf(got + lg, sizeof got - lg, "%s%lld", d ? "," : "", (long long)sh[d]);
        for (int d = 0; d < ndim && lw < sizeof want; d++)
            lw += (size_t)snprintf(want + lw, sizeof want - lw, "%s%lld", d ? "," : "", (long long)shape[d]);
        return kvq_error(KVQ_ERR_SHAPE, "artifact '%s' has shape [%s], expected [%s]", name, got, want);
    }
    *data = p;
    return KVQ_OK;
}

kvq_status kvq_artifacts_set_meta(kvq_artifacts *a, const char *key, const char *value)
{
    for (int i = 0; i < a->n_meta; i++)
        if (strcmp(a->meta_keys[i], key) == 0) {
            char *v = strdup(value);
            if (!v) return kvq_error(KVQ_ERR_NOMEM, "artifacts: out of memory");
            free(a->meta_vals[i]);
            a->meta_vals[i] = v;
            return KVQ_OK;
        }
    char **k = realloc(a->meta_keys, sizeof *k * (size_t)(a->n_meta + 1));
    if (!k) return kvq_error(KVQ_ERR_NOMEM, "artifacts: out of memory");
    a->meta_keys = k;
    char **v = realloc(a->meta_vals, sizeof *v * (size_t)(a->n_meta + 1));
    if (!v) return kvq_error(KVQ_ERR_NOMEM, "artifacts: out of memory");
    a->meta_vals = v;
    a->meta_keys[a->n_meta] = strdup(key);
    a->meta_vals[a->n_meta] = strdup(value);
    if (!a->meta_keys[a->n_meta] || !a->meta_vals[a->n_meta]) {
        free(a->meta_keys[a->n_meta]);
        free(a->meta_vals[a->n_meta]);
        return kvq_error(KVQ_ERR_NOMEM, "artifacts: out of memory");
    }
    a->n_meta++;
    return KVQ_OK;
}

const char *kvq_artifacts_meta(const kvq_artifacts *a, const char *key)
{
    for (int i = 0; a && i < a->n_meta; i++)
        if (strcmp(a->meta_keys[i], key) == 0) return a->meta_vals[i];
    return NULL;
}

int kvq_artifacts_count(const kvq_artifacts *a) { return a ? a->n : 0; }
const char *kvq_artifacts_name(const kvq_artifacts *a, int i)
{
    return (a && i >= 0 && i < a->n) ? a->t[i].name : NULL;
}
