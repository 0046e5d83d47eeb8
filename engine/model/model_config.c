// model_config.c — config.json of a Hugging Face checkpoint: the traits table
// of supported architectures, field checks, per-layer sliding windows and the
// RoPE variants (inverse frequencies as transformers computes them).
// Facts from transformers 5.17 (modeling_rope_utils.py, masking_utils.py,
// models/{gemma2,gemma3,phi3,qwen2,qwen3,mistral}/modeling_*.py).
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "file.h"
#include "model.h"

static const kvq_arch ARCHES[] = {
    {.model_type = "llama", .label = "Llama", .act_key = "hidden_act"},
    {.model_type = "mistral", .label = "Mistral", .window = KVQ_WIN_ALL, .act_key = "hidden_act"},
    {.model_type = "qwen2", .label = "Qwen2", .qkv_bias = true, .window = KVQ_WIN_ALL,
     .window_flag = "use_sliding_window", .act_key = "hidden_act"},
    {.model_type = "qwen3", .label = "Qwen3", .qk_norm = true, .window = KVQ_WIN_ALL,
     .window_flag = "use_sliding_window", .act_key = "hidden_act"},
    {.model_type = "gemma2", .label = "Gemma2", .norm = KVQ_NORM_1PW, .sandwich_norm = true, .embed_scale = true,
     .pre_attn_scalar = true, .softcaps = true, .window = KVQ_WIN_ALTERNATE, .act_key = "hidden_activation",
     .act_default = KVQ_ACT_GELU_TANH},
    {.model_type = "gemma3_text", .label = "Gemma3", .norm = KVQ_NORM_1PW, .qk_norm = true, .sandwich_norm = true,
     .embed_scale = true, .pre_attn_scalar = true, .softcaps = true, .local_rope = true, .window = KVQ_WIN_PATTERN,
     .window_period = 6, .act_key = "hidden_activation", .act_default = KVQ_ACT_GELU_TANH},
    {.model_type = "phi3", .label = "Phi3", .window = KVQ_WIN_ALL, .act_key = "hidden_act",
     .qkv_fused = "self_attn.qkv_proj.weight", .gate_up_fused = "mlp.gate_up_proj.weight"},
};

static const struct { const char *name; kvq_act_kind act; } ACTS[] = {
    {"silu", KVQ_ACT_SILU},
    {"gelu_pytorch_tanh", KVQ_ACT_GELU_TANH},
};

// Upper bounds of config fields: they keep every product of sizes the runner
// forms inside int and every loop over them finite. Fields not listed take
// the defaults below.
#define CFG_MAX_HEADS 1024
#define CFG_MAX_POSITIONS (1 << 24)
#define CFG_INT_MAX_DEFAULT (1 << 24)
// rope_theta: real checkpoints use 1e4..5e8; below 1 the frequencies invert
#define CFG_MIN_THETA 1.0
#define CFG_MAX_THETA 1e12
#define CFG_NUM_MAX_DEFAULT 1e6
static const struct { const char *key; double hi; } CFG_MAX[] = {
    {"vocab_size", 1 << 24}, {"hidden_size", 1 << 16}, {"intermediate_size", 1 << 18},
    {"num_hidden_layers", 1 << 16}, {"num_attention_heads", CFG_MAX_HEADS},
    {"num_key_value_heads", CFG_MAX_HEADS}, {"head_dim", 1 << 16},
    {"max_position_embeddings", CFG_MAX_POSITIONS}, {"original_max_position_embeddings", CFG_MAX_POSITIONS},
    {"rope_theta", CFG_MAX_THETA}, {"rope_local_base_freq", CFG_MAX_THETA},
    {"rms_norm_eps", 1e-2},   // real ones are 1e-6..1e-5; a large eps silences every layer
    {"factor", 1e4}, {"low_freq_factor", 1e4}, {"high_freq_factor", 1e4},
};

static double cfg_max(const char *key, double def)
{
    for (size_t i = 0; i < sizeof CFG_MAX / sizeof CFG_MAX[0]; i++)
        if (!strcmp(CFG_MAX[i].key, key)) return CFG_MAX[i].hi;
    return def;
}

static bool present(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    return v && !json_is_null(v);
}

static kvq_status cfg_int(const char *path, json_t *root, const char *key, bool required, int def, int lo, int *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s' missing (expected an integer)", path, key);
        *out = def;
        return KVQ_OK;
    }
    int hi = (int)cfg_max(key, CFG_INT_MAX_DEFAULT);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s' is not an integer in %d..%d", path, key, lo, hi);
    *out = (int)json_integer_value(v);
    return KVQ_OK;
}

static kvq_status cfg_num(const char *path, json_t *root, const char *key, double def, double *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return KVQ_OK;
    }
    double hi = cfg_max(key, CFG_NUM_MAX_DEFAULT);
    if (!json_is_number(v) || !(json_number_value(v) > 0) || !(json_number_value(v) <= hi))
        return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s' is not a number in (0, %g]", path, key, hi);
    *out = json_number_value(v);
    return KVQ_OK;
}

static kvq_status cfg_bool(const char *path, json_t *root, const char *key, bool def, bool *out)
{
    json_t *v = json_object_get(root, key);
    *out = def;
    if (!v || json_is_null(v)) return KVQ_OK;
    if (!json_is_boolean(v)) return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s' is not a boolean", path, key);
    *out = json_is_true(v);
    return KVQ_OK;
}

// ---- RoPE ----
typedef kvq_status (*rope_parse_fn)(const char *path, const char *field, json_t *rs, kvq_rope *r);

static kvq_status parse_factor(const char *path, const char *field, json_t *rs, kvq_rope *r)
{
    kvq_status s = cfg_num(path, rs, "factor", 0, &r->factor);
    if (!s && r->factor <= 0)
        s = kvq_error(KVQ_ERR_FORMAT, "%s: field '%s.factor' missing (expected a positive number)", path, field);
    return s;
}

static kvq_status parse_llama3(const char *path, const char *field, json_t *rs, kvq_rope *r)
{
    kvq_status s;
    if ((s = parse_factor(path, field, rs, r)) ||
        (s = cfg_num(path, rs, "low_freq_factor", 1.0, &r->low_freq_factor)) ||
        (s = cfg_num(path, rs, "high_freq_factor", 4.0, &r->high_freq_factor)))
        return s;
    if (r->high_freq_factor <= r->low_freq_factor)
        return kvq_error(KVQ_ERR_FORMAT, "%s: '%s.high_freq_factor' %g <= low_freq_factor %g", path, field,
                         r->high_freq_factor, r->low_freq_factor);
    return KVQ_OK;
}

static kvq_status parse_yarn(const char *path, const char *field, json_t *rs, kvq_rope *r)
{
    kvq_status s;
    // attention_factor, when absent, comes from factor and mscale in parse_rope
    if ((s = parse_factor(path, field, rs, r)) || (s = cfg_num(path, rs, "beta_fast", 32, &r->beta_fast)) ||
        (s = cfg_num(path, rs, "beta_slow", 1, &r->beta_slow)) ||
        (s = cfg_num(path, rs, "attention_factor", 0, &r->attention_factor)) ||
        (s = cfg_num(path, rs, "mscale", 0, &r->mscale)) ||
        (s = cfg_num(path, rs, "mscale_all_dim", 0, &r->mscale_all_dim)) ||
        (s = cfg_bool(path, rs, "truncate", true, &r->truncate)))
        return s;
    return KVQ_OK;
}

static kvq_status parse_factors(const char *path, const char *field, json_t *rs, const char *key, double *dst,
                                int *n)
{
    json_t *a = json_object_get(rs, key);
    if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > KVQ_MAX_HEAD_DIM / 2)
        return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s.%s' missing (expected an array of head_dim / 2 numbers)", path,
                         field, key);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        if (!json_is_number(v) || !(json_number_value(v) > 0))
            return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s.%s[%zu]' is not a positive number", path, field, key, i);
        dst[i] = json_number_value(v);
    }
    *n = (int)json_array_size(a);
    return KVQ_OK;
}

static kvq_status parse_longrope(const char *path, const char *field, json_t *rs, kvq_rope *r)
{
    int ns = 0, nl = 0;
    kvq_status s;
    if ((s = parse_factors(path, field, rs, "short_factor", r->short_factor, &ns)) ||
        (s = parse_factors(path, field, rs, "long_factor", r->long_factor, &nl)) ||
        (s = cfg_num(path, rs, "factor", 0, &r->factor)) ||
        (s = cfg_num(path, rs, "attention_factor", 0, &r->attention_factor)))
        return s;
    if (ns != nl)
        return kvq_error(KVQ_ERR_FORMAT, "%s: '%s.short_factor' has %d entries, long_factor %d", path, field, ns, nl);
    r->n_ext = ns;
    return KVQ_OK;
}

static const struct {
    const char *name;
    kvq_rope_type type;
    rope_parse_fn parse;     // NULL: theta only
    bool needs_original;     // original_max_position_embeddings
} ROPES[] = {
    {"default", KVQ_ROPE_DEFAULT, NULL, false},
    {"linear", KVQ_ROPE_LINEAR, parse_factor, false},
    {"llama3", KVQ_ROPE_LLAMA3, parse_llama3, true},
    {"yarn", KVQ_ROPE_YARN, parse_yarn, true},
    {"longrope", KVQ_ROPE_LONGROPE, parse_longrope, true},
};

// One RoPE from a rope_scaling / rope_parameters object (rs may be NULL: default).
static kvq_status parse_rope(const char *path, json_t *root, const char *field, json_t *rs, double theta,
                             kvq_rope *r, char *type_out, size_t type_len)
{
    memset(r, 0, sizeof *r);
    r->theta = theta;
    r->attention_factor = 1.0;
    const char *type = "default";
    if (rs) {
        if (!json_is_object(rs)) return kvq_error(KVQ_ERR_FORMAT, "%s: field '%s' is not an object", path, field);
        json_t *t = json_object_get(rs, "rope_type");
        if (!t) t = json_object_get(rs, "type");
        if (t && json_is_string(t)) type = json_string_value(t);
        kvq_status s = cfg_num(path, rs, "rope_theta", theta, &r->theta);
        if (s) return s;
        double prf = 1.0;
        if ((s = cfg_num(path, rs, "partial_rotary_factor", 1.0, &prf))) return s;
        if (prf != 1.0)
            return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field '%s.partial_rotary_factor' = %g is not supported (expected 1)",
                             path, field, prf);
    }
    size_t k = 0;
    while (k < sizeof ROPES / sizeof ROPES[0] && strcmp(ROPES[k].name, type)) k++;
    if (k == sizeof ROPES / sizeof ROPES[0])
        return kvq_error(KVQ_ERR_UNSUPPORTED,
                         "%s: field '%s.rope_type' = '%s' is not supported (expected default, linear, llama3, yarn or longrope)",
                         path, field, type);
    r->type = ROPES[k].type;
    if (type_out) snprintf(type_out, type_len, "%s", type);
    if (ROPES[k].parse) {
        kvq_status s = ROPES[k].parse(path, field, rs, r);
        if (s) return s;
    }
    if (!ROPES[k].needs_original) return KVQ_OK;
    // transformers' standardize_rope_params: a top-level original_max_position_embeddings
    // (Phi3) wins over the one in the rope dict; max_position_embeddings is the fallback.
    int maxpos = 2048;
    kvq_status s = cfg_int(path, root, "max_position_embeddings", false, 2048, 1, &maxpos);
    if (!s) s = cfg_int(path, rs, "original_max_position_embeddings", false, maxpos, 1, &r->original_max_position);
    if (!s && present(root, "original_max_position_embeddings"))
        s = cfg_int(path, root, "original_max_position_embeddings", true, 0, 1, &r->original_max_position);
    if (s) return s;
    double ratio = (double)maxpos / r->original_max_position;
    if (r->type == KVQ_ROPE_YARN) {
        double mscale = r->mscale, mscale_all = r->mscale_all_dim;
        if (r->attention_factor == 0) {
            double f = r->factor;
#define YARN_MSCALE(sc, m) ((sc) <= 1 ? 1.0 : 0.1 * (m) * log(sc) + 1.0)
            r->attention_factor = mscale > 0 && mscale_all > 0 ? YARN_MSCALE(f, mscale) / YARN_MSCALE(f, mscale_all)
                                                               : YARN_MSCALE(f, 1.0);
#undef YARN_MSCALE
        }
    } else if (r->type == KVQ_ROPE_LONGROPE) {
        if (r->factor <= 0) r->factor = ratio;
        if (r->attention_factor == 0)
            r->attention_factor = r->factor <= 1 ? 1.0 : sqrt(1 + log(r->factor) / log(r->original_max_position));
    }
    return KVQ_OK;
}

// Global and local RoPE: rope_parameters (transformers 5: one dict, or one per
// layer type) or rope_scaling + rope_theta (transformers 4; Gemma3's local
// base in rope_local_base_freq).
static kvq_status cfg_ropes(const char *path, json_t *root, kvq_model_config *c)
{
    json_t *rs = json_object_get(root, "rope_scaling");
    json_t *rp = json_object_get(root, "rope_parameters");
    const char *field = "rope_scaling";
    if ((!rs || json_is_null(rs)) && rp && !json_is_null(rp)) rs = rp, field = "rope_parameters";
    if (rs && json_is_null(rs)) rs = NULL;
    json_t *full = rs && json_is_object(rs) ? json_object_get(rs, "full_attention") : NULL;
    json_t *slid = rs && json_is_object(rs) ? json_object_get(rs, "sliding_attention") : NULL;
    kvq_status s;
    if (full || slid) {
        if ((s = parse_rope(path, root, "rope_parameters.full_attention", full, c->rope_theta, &c->rope[0],
                            c->rope_type, sizeof c->rope_type)) ||
            (s = parse_rope(path, root, "rope_parameters.sliding_attention", slid ? slid : full, c->rope_theta,
                            &c->rope[1], NULL, 0)))
            return s;
    } else {
        if ((s = parse_rope(path, root, field, rs, c->rope_theta, &c->rope[0], c->rope_type, sizeof c->rope_type)))
            return s;
        double local = 10000.0;
        if ((s = cfg_num(path, root, "rope_local_base_freq", 10000.0, &local))) return s;
        if ((s = parse_rope(path, root, field, NULL, local, &c->rope[1], NULL, 0))) return s;
    }
    c->rope_theta = c->rope[0].theta;
    for (int i = 0; i < 2; i++)
        if (c->rope[i].type == KVQ_ROPE_LONGROPE && c->rope[i].n_ext != c->head_dim / 2)
            return kvq_error(KVQ_ERR_FORMAT, "%s: longrope short_factor has %d entries (expected head_dim / 2 = %d)",
                             path, c->rope[i].n_ext, c->head_dim / 2);
    return KVQ_OK;
}

// HF computes inv_freq in f32; the same rounding keeps captured keys within
// F16 rounding of transformers' at long positions.
void kvq_rope_inv_freq(const kvq_rope *r, int head_dim, bool long_factors, float *inv)
{
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)head_dim;
        inv[i] = 1.0f / powf((float)r->theta, e);
    }
    switch (r->type) {
    case KVQ_ROPE_DEFAULT:
        break;
    case KVQ_ROPE_LINEAR:
        for (int i = 0; i < half; i++) inv[i] = (float)(inv[i] / r->factor);
        break;
    case KVQ_ROPE_LLAMA3: {
        double old = r->original_max_position, f = r->factor;
        double lo = r->low_freq_factor, hi = r->high_freq_factor;
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
        break;
    }
    case KVQ_ROPE_YARN: {
        // Dimensions that turn fewer than beta_slow times over the original
        // context are interpolated (/ factor), more than beta_fast kept, a
        // linear ramp between.
        double base = r->theta, om = r->original_max_position;
        double lo = head_dim * log(om / (r->beta_fast * 2 * M_PI)) / (2 * log(base));
        double hi = head_dim * log(om / (r->beta_slow * 2 * M_PI)) / (2 * log(base));
        if (r->truncate) lo = floor(lo), hi = ceil(hi);
        if (lo < 0) lo = 0;
        if (hi > head_dim - 1) hi = head_dim - 1;
        if (lo == hi) hi += 0.001;
        for (int i = 0; i < half; i++) {
            float ramp = (float)(((float)i - (float)lo) / (float)(hi - lo));
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            float extra = 1.0f - ramp;                       // weight of the unscaled frequency
            float pf = powf((float)base, (float)(2 * i) / (float)head_dim);
            float inter = 1.0f / ((float)r->factor * pf), ext = 1.0f / pf;
            inv[i] = inter * (1.0f - extra) + ext * extra;
        }
        break;
    }
    case KVQ_ROPE_LONGROPE:
        for (int i = 0; i < half; i++) {
            float pf = powf((float)r->theta, (float)(2 * i) / (float)head_dim);
            float ef = (float)(long_factors ? r->long_factor[i] : r->short_factor[i]);
            inv[i] = 1.0f / (ef * pf);
        }
        break;
    }
}

// Which layers slide: layer_types when config.json has it, else the arch's pattern.
static kvq_status cfg_windows(const char *path, json_t *root, kvq_model_config *c)
{
    const kvq_arch *a = c->arch;
    memset(c->layer_window, 0, sizeof c->layer_window);
    c->sliding_window = 0;
    if (a->window == KVQ_WIN_NONE) return KVQ_OK;
    kvq_status s = cfg_int(path, root, "sliding_window", false, 0, 1, &c->sliding_window);
    if (s) return s;
    bool on = true;
    if (a->window_flag && (s = cfg_bool(path, root, a->window_flag, false, &on))) return s;
    if (!on) c->sliding_window = 0;
    if (!c->sliding_window) return KVQ_OK;
    json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || (int)json_array_size(lt) != c->n_layers)
            return kvq_error(KVQ_ERR_FORMAT, "%s: field 'layer_types' is not an array of num_hidden_layers = %d strings",
                             path, c->n_layers);
        for (int l = 0; l < c->n_layers; l++) {
            const char *t = json_string_value(json_array_get(lt, (size_t)l));
            if (t && !strcmp(t, "sliding_attention")) c->layer_window[l] = c->sliding_window;
            else if (!t || strcmp(t, "full_attention"))
                return kvq_error(KVQ_ERR_UNSUPPORTED,
                                 "%s: field 'layer_types[%d]' = '%s' is not supported (expected sliding_attention or full_attention)",
                                 path, l, t ? t : "?");
        }
        return KVQ_OK;
    }
    int period = a->window_period;
    if (a->window == KVQ_WIN_PATTERN) {
        const char *key = present(root, "sliding_window_pattern") ? "sliding_window_pattern" : "_sliding_window_pattern";
        if ((s = cfg_int(path, root, key, false, a->window_period, 1, &period))) return s;
    }
    for (int l = 0; l < c->n_layers; l++) {
        bool slides = a->window == KVQ_WIN_ALL || (a->window == KVQ_WIN_ALTERNATE && l % 2 == 0) ||
                      (a->window == KVQ_WIN_PATTERN && (l + 1) % period != 0);
        c->layer_window[l] = slides ? c->sliding_window : 0;
    }
    return KVQ_OK;
}

static kvq_status cfg_arch(const char *path, json_t *root, kvq_model_config *c)
{
    json_t *mt = json_object_get(root, "model_type");
    const char *name = "llama";
    if (mt) name = json_is_string(mt) ? json_string_value(mt) : "?";
    size_t n = sizeof ARCHES / sizeof ARCHES[0];
    for (size_t i = 0; i < n; i++)
        if (!strcmp(ARCHES[i].model_type, name)) c->arch = &ARCHES[i];
    if (c->arch) return KVQ_OK;
    char list[256] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", ARCHES[i].model_type);
    return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field 'model_type' = '%s' is not supported (expected one of %s)", path,
                     name, list);
}

static kvq_status cfg_act(const char *path, json_t *root, kvq_model_config *c)
{
    const char *key = c->arch->act_key;
    json_t *act = json_object_get(root, key);
    if (!act || json_is_null(act)) {   // Gemma configs carry both names; either one counts
        key = strcmp(key, "hidden_act") ? "hidden_act" : "hidden_activation";
        act = json_object_get(root, key);
    }
    c->act = c->arch->act_default;
    if (!act || json_is_null(act)) return KVQ_OK;
    const char *v = json_is_string(act) ? json_string_value(act) : "?";
    for (size_t i = 0; i < sizeof ACTS / sizeof ACTS[0]; i++)
        if (!strcmp(ACTS[i].name, v)) {
            c->act = ACTS[i].act;
            return KVQ_OK;
        }
    return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field '%s' = '%s' is not supported (expected silu or gelu_pytorch_tanh)",
                     path, key, v);
}

static kvq_status cfg_parse(const char *path, json_t *root, kvq_model_config *c)
{
    if (!json_is_object(root)) return kvq_error(KVQ_ERR_FORMAT, "%s: not a JSON object", path);
    kvq_status s;
    if ((s = cfg_arch(path, root, c)) || (s = cfg_act(path, root, c))) return s;
    if (json_object_get(root, "quantization_config"))
        return kvq_error(KVQ_ERR_UNSUPPORTED,
                         "%s: field 'quantization_config' is not supported (expected F16/BF16/F32 weights)", path);
    bool mlp_bias = false;
    double prf = 1.0;
    if ((s = cfg_int(path, root, "vocab_size", true, 0, 1, &c->vocab_size)) ||
        (s = cfg_int(path, root, "hidden_size", true, 0, 1, &c->hidden_size)) ||
        (s = cfg_int(path, root, "intermediate_size", true, 0, 1, &c->intermediate_size)) ||
        (s = cfg_int(path, root, "num_hidden_layers", true, 0, 1, &c->n_layers)) ||
        (s = cfg_int(path, root, "num_attention_heads", true, 0, 1, &c->n_heads)) ||
        (s = cfg_int(path, root, "num_key_value_heads", false, c->n_heads, 1, &c->n_kv_heads)) ||
        (s = cfg_int(path, root, "head_dim", false, c->hidden_size / c->n_heads, 1, &c->head_dim)) ||
        (s = cfg_int(path, root, "max_position_embeddings", false, 2048, 1, &c->max_position_embeddings)) ||
        (s = cfg_num(path, root, "rope_theta", 10000.0, &c->rope_theta)) ||
        (s = cfg_num(path, root, "rms_norm_eps", 1e-6, &c->rms_norm_eps)) ||
        (s = cfg_num(path, root, "partial_rotary_factor", 1.0, &prf)) ||
        (s = cfg_bool(path, root, "tie_word_embeddings", false, &c->tie_word_embeddings)) ||
        (s = cfg_bool(path, root, "attention_bias", false, &c->attention_bias)) ||
        (s = cfg_bool(path, root, "mlp_bias", false, &mlp_bias)))
        return s;
    if (mlp_bias)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field 'mlp_bias' = true is not supported (expected false)", path);
    if (prf != 1.0)
        return kvq_error(KVQ_ERR_UNSUPPORTED, "%s: field 'partial_rotary_factor' = %g is not supported (expected 1)",
                         path, prf);
    if (!present(root, "head_dim") && c->hidden_size % c->n_heads)
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
    c->query_pre_attn_scalar = c->head_dim;
    if (c->arch->pre_attn_scalar &&
        (s = cfg_num(path, root, "query_pre_attn_scalar", c->head_dim, &c->query_pre_attn_scalar)))
        return s;
    if (c->arch->softcaps && ((s = cfg_num(path, root, "attn_logit_softcapping", 0, &c->attn_softcap)) ||
                              (s = cfg_num(path, root, "final_logit_softcapping", 0, &c->final_softcap))))
        return s;
    if ((s = cfg_ropes(path, root, c)) || (s = cfg_windows(path, root, c))) return s;
    if (c->rope_theta < CFG_MIN_THETA)
        return kvq_error(KVQ_ERR_FORMAT, "%s: field 'rope_theta' = %g is out of range (expected %g..%g)", path,
                         c->rope_theta, CFG_MIN_THETA, CFG_MAX_THETA);
    return KVQ_OK;
}

kvq_status kvq_model_config_load(const char *dir, kvq_model_config *out)
{
    memset(out, 0, sizeof *out);
    char path[KVQ_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!kvq_file_exists(path))
        return kvq_error(KVQ_ERR_IO, "%s: no config.json (expected a Hugging Face checkpoint directory)", dir);
    json_t *root;
    kvq_status s = kvq_json_load(path, &root);
    if (s) return s;
    s = cfg_parse(path, root, out);
    json_decref(root);
    return s;
}
