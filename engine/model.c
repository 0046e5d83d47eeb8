// model.c — loading a Hugging Face Llama checkpoint: config.json checks and
// f32 weights from one safetensors file or the shards of an index.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "file.h"
#include "model.h"
#include "safetensors.h"

#define MODEL_MAX_SHARDS 256
#define CFG_MAX_HEADS 1024
#define CFG_MAX_POSITIONS (1 << 24)
// rope_theta: real checkpoints use 1e4..5e8; below 1 the frequencies invert
#define CFG_MIN_THETA 1.0
#define CFG_MAX_THETA 1e12
// rms_norm_eps: real ones are 1e-6..1e-5; a large eps silences every layer
#define CFG_MAX_EPS 1e-2

static bool file_exists(const char *path)
{
    struct stat sb;   // any kind: the reader refuses what is not a regular file, by name
    return stat(path, &sb) == 0;
}

// ---- config.json ----
// Integer field in [lo, hi] (def when absent and not required). The upper
// bounds keep every product of sizes the runner forms inside int and every
// loop over them finite.
static kvq_status cfg_int(const char *path, json_t *root, const char *key, bool required, int def,
                          int lo, int hi, int *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s' missing (expected an integer)", path, key);
        *out = def;
        return KVQ_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s' is not an integer in %d..%d", path, key, lo, hi);
    *out = (int)json_integer_value(v);
    return KVQ_OK;
}

// Positive number at most hi (def when absent).
static kvq_status cfg_num(const char *path, json_t *root, const char *key, double def, double hi, double *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return KVQ_OK;
    }
    if (!json_is_number(v) || !(json_number_value(v) > 0) || !(json_number_value(v) <= hi))
        return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s' is not a number in (0, %g]", path, key, hi);
    *out = json_number_value(v);
    return KVQ_OK;
}

// A boolean that this runner supports only at one value (attention_bias...).
static kvq_status cfg_bool_must(const char *path, json_t *root, const char *key, bool def, bool need,
                                bool *out)
{
    json_t *v = json_object_get(root, key);
    bool b = def;
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s' is not a boolean", path, key);
        b = json_is_true(v);
    }
    if (out) *out = b;
    else if (b != need)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field '%s' = %s is not supported (expected %s)", path, key,
                         b ? "true" : "false", need ? "true" : "false");
    return KVQ_OK;
}

// rope_scaling (transformers 4) or rope_parameters (transformers 5).
static kvq_status cfg_rope(const char *path, json_t *root, kvq_model_config *c)
{
    strcpy(c->rope_type, "default");
    const char *field = "rope_scaling";
    json_t *rs = json_object_get(root, field);
    json_t *rp = json_object_get(root, "rope_parameters");
    if ((!rs || json_is_null(rs)) && rp && json_is_object(rp)) {
        rs = rp;
        field = "rope_parameters";
        json_t *th = json_object_get(rp, "rope_theta");
        if (th && !json_is_null(th)) {
            kvq_status s = cfg_num(path, rp, "rope_theta", c->rope_theta, CFG_MAX_THETA, &c->rope_theta);
            if (s) return s;
        }
    }
    if (!rs || json_is_null(rs)) return KVQ_OK;
    if (!json_is_object(rs)) return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s' is not an object", path, field);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    const char *type = t && json_is_string(t) ? json_string_value(t) : "default";
    if (strcmp(type, "default") && strcmp(type, "llama3") && strcmp(type, "linear"))
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field '%s.rope_type' = '%s' is not supported (expected default, llama3 or linear)",
                         path, field, type);
    snprintf(c->rope_type, sizeof c->rope_type, "%s", type);
    if (!strcmp(type, "default")) return KVQ_OK;
    kvq_status s = cfg_num(path, rs, "factor", 0, 1e4, &c->rope_factor);
    if (s) return s;
    if (c->rope_factor <= 0)
        return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s.factor' missing (expected a positive number)", path, field);
    if (!strcmp(type, "llama3")) {
        if ((s = cfg_num(path, rs, "low_freq_factor", 1.0, 1e4, &c->rope_low_freq_factor)) ||
            (s = cfg_num(path, rs, "high_freq_factor", 4.0, 1e4, &c->rope_high_freq_factor)) ||
            (s = cfg_int(path, rs, "original_max_position_embeddings", true, 0, 1, CFG_MAX_POSITIONS,
                         &c->rope_original_max_position)))
            return s;
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
            return kvq_error(KVQ_ERR_FORMAT, "%s: '%s.high_freq_factor' %g <= low_freq_factor %g", path, field,
                             c->rope_high_freq_factor, c->rope_low_freq_factor);
    }
    return KVQ_OK;
}

static kvq_status cfg_parse(const char *path, json_t *root, kvq_model_config *c)
{
    if (!json_is_object(root)) return kvq_error(KVQ_ERR_FORMAT, "%s: not a JSON object", path);
    json_t *mt = json_object_get(root, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "llama")))
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field 'model_type' = '%s' is not supported (expected llama)", path,
                         json_is_string(mt) ? json_string_value(mt) : "?");
    json_t *act = json_object_get(root, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field 'hidden_act' = '%s' is not supported (expected silu)", path,
                         json_is_string(act) ? json_string_value(act) : "?");
    if (json_object_get(root, "quantization_config"))
        return kvq_error(KVQ_ERR_UNSUPPORTED,
                         "%s: field 'quantization_config' is not supported (expected F16/BF16/F32 weights)", path);
    kvq_status s;
    if ((s = cfg_int(path, root, "vocab_size", true, 0, 1, 1 << 24, &c->vocab_size)) ||
        (s = cfg_int(path, root, "hidden_size", true, 0, 1, 1 << 16, &c->hidden_size)) ||
        (s = cfg_int(path, root, "intermediate_size", true, 0, 1, 1 << 18, &c->intermediate_size)) ||
        (s = cfg_int(path, root, "num_hidden_layers", true, 0, 1, 1 << 16, &c->n_layers)) ||
        (s = cfg_int(path, root, "num_attention_heads", true, 0, 1, CFG_MAX_HEADS, &c->n_heads)) ||
        (s = cfg_int(path, root, "num_key_value_heads", false, c->n_heads, 1, CFG_MAX_HEADS, &c->n_kv_heads)) ||
        (s = cfg_int(path, root, "head_dim", false, c->hidden_size / c->n_heads, 1, 1 << 16, &c->head_dim)) ||
        (s = cfg_int(path, root, "max_position_embeddings", false, 2048, 1, CFG_MAX_POSITIONS, &c->max_position_embeddings)) ||
        (s = cfg_num(path, root, "rope_theta", 10000.0, CFG_MAX_THETA, &c->rope_theta)) ||
        (s = cfg_num(path, root, "rms_norm_eps", 1e-6, CFG_MAX_EPS, &c->rms_norm_eps)) ||
        (s = cfg_bool_must(path, root, "tie_word_embeddings", false, false, &c->tie_word_embeddings)) ||
        (s = cfg_bool_must(path, root, "attention_bias", false, false, NULL)) ||
        (s = cfg_bool_must(path, root, "mlp_bias", false, false, NULL)) || (s = cfg_rope(path, root, c)))
        return s;
    if (c->rope_theta < CFG_MIN_THETA)
        return kvq_error(KVQ_ERR_FORMAT, "%s: field 'rope_theta' = %g is out of range (expected %g..%g)", path,
                         c->rope_theta, CFG_MIN_THETA, CFG_MAX_THETA);
    if (!json_object_get(root, "head_dim") && c->hidden_size % c->n_heads)
        return kvq_error(KVQ_ERR_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path,
                         c->hidden_size, c->n_heads);
    if (c->n_heads % c->n_kv_heads)
        return kvq_error(KVQ_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                         path, c->n_heads, c->n_kv_heads);
    if (c->head_dim > KVQ_MAX_HEAD_DIM || c->head_dim % 2)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field 'head_dim' = %d is not supported (expected even, <= %d)",
                         path, c->head_dim, KVQ_MAX_HEAD_DIM);
    if (c->n_layers > KVQ_MAX_LAYERS)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field 'num_hidden_layers' = %d is not supported (expected <= %d)",
                         path, c->n_layers, KVQ_MAX_LAYERS);
    return KVQ_OK;
}

kvq_status kvq_model_config_load(const char *dir, kvq_model_config *out)
{
    memset(out, 0, sizeof *out);
    char path[KVQ_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!file_exists(path))
        return kvq_error(KVQ_ERR_IO, "%s: no config.json (expected a Hugging Face checkpoint directory)", dir);
    json_t *root;
    kvq_status s = kvq_json_load(path, &root);
    if (s) return s;
    s = cfg_parse(path, root, out);
    json_decref(root);
    return s;
}

// HF computes inv_freq in f32; the same rounding keeps captured keys within
// F16 rounding of transformers' at long positions.
static void rope_inv_freq(const kvq_model_config *c, float *inv)
{
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        inv[i] = 1.0f / powf((float)c->rope_theta, e);
    }
    if (!strcmp(c->rope_type, "linear")) {
        for (int i = 0; i < half; i++) inv[i] = (float)(inv[i] / c->rope_factor);
    } else if (!strcmp(c->rope_type, "llama3")) {
        double old = c->rope_original_max_position, f = c->rope_factor;
        double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
        double low_wavelen = old / lo, high_wavelen = old / hi;
        for (int i = 0; i < half; i++) {
            double w = 2.0 * M_PI / inv[i];
            double v = inv[i];
            if (w > low_wavelen) v = inv[i] / f;   // long wavelengths: fully interpolated
            else if (w >= high_wavelen) {          // between: smooth blend
                double sm = (old / w - lo) / (hi - lo);
                v = (1 - sm) * inv[i] / f + sm * inv[i];
            }
            inv[i] = (float)v;
        }
    }
}

// ---- weights ----
typedef struct {
    int n;
    kvq_st *st[MODEL_MAX_SHARDS];
    const char *dir;
} shard_set;

static void shards_close(shard_set *ss)
{
    for (int i = 0; i < ss->n; i++) kvq_st_close(ss->st[i]);
    ss->n = 0;
}

static kvq_status shard_open(shard_set *ss, const char *file, const char *listed_in)
{
    if (ss->n == MODEL_MAX_SHARDS)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: more than %d shards", ss->dir, MODEL_MAX_SHARDS);
    char path[KVQ_PATH_LEN + 300];
    snprintf(path, sizeof path, "%s/%s", ss->dir, file);
    if (strstr(file, "..") || strchr(file, '/'))
        return kvq_error(KVQ_ERR_FORMAT, "%s: shard name '%s' points outside the directory", listed_in, file);
    if (!file_exists(path))
        return kvq_error(KVQ_ERR_IO, "%s: shard '%s' listed in %s is missing", ss->dir, file, listed_in);
    kvq_status s = kvq_st_open(path, &ss->st[ss->n]);
    if (s) return s;
    ss->n++;
    return KVQ_OK;
}

static kvq_status shards_open(shard_set *ss)
{
    char path[KVQ_PATH_LEN + 64];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", ss->dir);
    if (!file_exists(path)) {
        snprintf(path, sizeof path, "%s/model.safetensors", ss->dir);
        if (!file_exists(path))
            return kvq_error(KVQ_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", ss->dir);
        return shard_open(ss, "model.safetensors", "the directory");
    }
    json_t *root;
    kvq_status s = kvq_json_load(path, &root);
    if (s) return s;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        s = kvq_error(KVQ_ERR_FORMAT, "%s: field 'weight_map' missing (expected an object)", path);
        goto out;
    }
    // Distinct shard files in order of first appearance.
    const char *names[MODEL_MAX_SHARDS];
    int nn = 0;
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        if (!json_is_string(v)) {
            s = kvq_error(KVQ_ERR_FORMAT, "%s: weight_map['%s'] is not a string", path, key);
            goto out;
        }
        const char *f = json_string_value(v);
        bool seen = false;
        for (int i = 0; i < nn && !seen; i++) seen = !strcmp(names[i], f);
        if (seen) continue;
        if (nn == MODEL_MAX_SHARDS) {
            s = kvq_error(KVQ_ERR_UNSUPPORTED, "%s: more than %d shards", path, MODEL_MAX_SHARDS);
            goto out;
        }
        names[nn++] = f;
    }
    for (int i = 0; i < nn && !s; i++) s = shard_open(ss, names[i], "model.safetensors.index.json");
out:
    json_decref(root);
    return s;
}

static const kvq_st_tensor *shards_find(const shard_set *ss, const char *name)
{
    for (int i = 0; i < ss->n; i++) {
        const kvq_st_tensor *t = kvq_st_find(ss->st[i], name);
        if (t) return t;
    }
    return NULL;
}

// Load one tensor of shape (rows, cols) (cols 0: a vector of rows) as f32.
static kvq_status load_tensor(const shard_set *ss, const char *name, int64_t rows, int64_t cols, float **out,
                              size_t *n_params)
{
    const kvq_st_tensor *t = shards_find(ss, name);
    if (!t) return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' not found in the checkpoint", ss->dir, name);
    bool ok = cols ? (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols)
                   : (t->ndim == 1 && t->shape[0] == rows);
    if (!ok) {
        char got[96] = "";
        size_t len = 0;
        for (int d = 0; d < t->ndim && len < sizeof got; d++)
            len += (size_t)snprintf(got + len, sizeof got - len, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (cols)
            return kvq_error(KVQ_ERR_SHAPE, "%s: tensor '%s' has shape [%s] (expected [%lld, %lld] from config.json)",
                             ss->dir, name, got, (long long)rows, (long long)cols);
        return kvq_error(KVQ_ERR_SHAPE, "%s: tensor '%s' has shape [%s] (expected [%lld] from config.json)", ss->dir,
                         name, got, (long long)rows);
    }
    if (t->dtype != KVQ_DT_F16 && t->dtype != KVQ_DT_BF16 && t->dtype != KVQ_DT_F32)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (expected F16, BF16 or F32)", ss->dir,
                         name, kvq_dtype_name(t->dtype));
    float *buf = malloc(sizeof(float) * t->nelem);
    if (!buf) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory for '%s'", ss->dir, name);
    kvq_status s = kvq_st_read_f32(t, 0, t->nelem, buf);
    if (s) {
        free(buf);
        return s;
    }
    for (size_t i = 0; i < t->nelem; i++)
        if (!isfinite(buf[i])) {
            free(buf);
            return kvq_error(KVQ_ERR_NONFINITE, "%s: tensor '%s' has a non-finite value at element %zu", ss->dir,
                             name, i);
        }
    *out = buf;
    *n_params += t->nelem;
    return KVQ_OK;
}

static kvq_status load_layer(const shard_set *ss, const kvq_model_config *c, int l, kvq_model_layer *L,
                             size_t *np)
{
    int64_t h = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim, kd = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t im = c->intermediate_size;
    struct { const char *suffix; int64_t r, cl; float **dst; } w[] = {
        {"input_layernorm.weight", h, 0, &L->attn_norm},
        {"self_attn.q_proj.weight", qd, h, &L->wq},
        {"self_attn.k_proj.weight", kd, h, &L->wk},
        {"self_attn.v_proj.weight", kd, h, &L->wv},
        {"self_attn.o_proj.weight", h, qd, &L->wo},
        {"post_attention_layernorm.weight", h, 0, &L->mlp_norm},
        {"mlp.gate_proj.weight", im, h, &L->w_gate},
        {"mlp.up_proj.weight", im, h, &L->w_up},
        {"mlp.down_proj.weight", h, im, &L->w_down},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.%s", l, w[i].suffix);
        kvq_status s = load_tensor(ss, name, w[i].r, w[i].cl, w[i].dst, np);
        if (s) return s;
    }
    return KVQ_OK;
}

kvq_status kvq_model_load(const char *dir, kvq_model **out)
{
    *out = NULL;
    if (strlen(dir) >= KVQ_PATH_LEN) return kvq_error(KVQ_ERR_ARG, "model path too long: %.60s...", dir);
    kvq_model *m = calloc(1, sizeof *m);
    if (!m) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", dir);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    size_t dl = strlen(m->dir);
    while (dl > 1 && m->dir[dl - 1] == '/') m->dir[--dl] = 0;
    const char *base = strrchr(m->dir, '/');
    snprintf(m->name, sizeof m->name, "%.255s", base ? base + 1 : m->dir);   // name is 256 bytes
    shard_set ss = {.dir = m->dir};
    kvq_status s = kvq_model_config_load(m->dir, &m->cfg);
    if (s) goto fail;
    const kvq_model_config *c = &m->cfg;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    m->inv_freq = malloc(sizeof(float) * (size_t)(c->head_dim / 2));
    if (!m->layers || !m->inv_freq) {
        s = kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    rope_inv_freq(c, m->inv_freq);
    if ((s = shards_open(&ss))) goto fail;
    if ((s = load_tensor(&ss, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, &m->embed, &m->n_params)))
        goto fail;
    if ((s = load_tensor(&ss, "model.norm.weight", c->hidden_size, 0, &m->final_norm, &m->n_params))) goto fail;
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
    } else if ((s = load_tensor(&ss, "lm_head.weight", c->vocab_size, c->hidden_size, &m->lm_head, &m->n_params))) {
        goto fail;
    }
    for (int l = 0; l < c->n_layers; l++)
        if ((s = load_layer(&ss, c, l, &m->layers[l], &m->n_params))) goto fail;
    shards_close(&ss);
    *out = m;
    return KVQ_OK;
fail:
    shards_close(&ss);
    kvq_model_free(m);
    return s;
}

void kvq_model_free(kvq_model *m)
{
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++) {
            kvq_model_layer *L = &m->layers[l];
            float *all[] = {L->attn_norm, L->wq, L->wk, L->wv, L->wo, L->mlp_norm, L->w_gate, L->w_up, L->w_down};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
        }
    free(m->layers);
    if (m->lm_head != m->embed) free(m->lm_head);
    free(m->embed);
    free(m->final_norm);
    free(m->inv_freq);
    free(m);
}
