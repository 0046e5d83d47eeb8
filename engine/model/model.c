// model.c — loading a Hugging Face checkpoint from one safetensors file or
// the shards of an index (config.json: model_config.c), with the tensor
// names and fused projections of the architecture's traits. Matrices stay in
// the mapping (views, linear.h); only norm weights and biases are copied.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "file.h"
#include "model.h"
#include "safetensors.h"
#include "simd.h"
#if KVQ_HAVE_X86
#include <immintrin.h>
#endif

#define MODEL_MAX_SHARDS 256

// ---- weights ----
typedef struct {
    int n;
    kvq_st *st[MODEL_MAX_SHARDS];
    const char *dir;
    bool stream;   // give each matrix's pages back once it is scanned
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
    if (!kvq_file_exists(path))
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
    if (!kvq_file_exists(path)) {
        snprintf(path, sizeof path, "%s/model.safetensors", ss->dir);
        if (!kvq_file_exists(path))
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

// Bit tests, block by block without an early exit (a lane whose exponent
// is all ones is Inf/NaN): 32 bytes at a time with AVX2, else 64-bit words
// (4 halves or 2 floats); the first flagged block is then searched element
// by element. At load every weight byte passes through here once.
#define SCAN_BLOCK 65536
#if KVQ_HAVE_X86
KVQ_TARGET_AVX2 static size_t flagged_avx2(const uint8_t *p, size_t nbytes, kvq_dtype dt, bool *bad)
{
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    if (dt == KVQ_DT_F32) {
        const __m256i em = _mm256_set1_epi32(0x7f800000);
        for (; i + 32 <= nbytes; i += 32) {
            __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + i)), em);
            acc = _mm256_or_si256(acc, _mm256_cmpeq_epi32(v, em));
        }
    } else {
        const __m256i em = _mm256_set1_epi16(dt == KVQ_DT_BF16 ? 0x7f80 : 0x7c00);
        for (; i + 32 <= nbytes; i += 32) {
            __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + i)), em);
            acc = _mm256_or_si256(acc, _mm256_cmpeq_epi16(v, em));
        }
    }
    *bad = !_mm256_testz_si256(acc, acc);
    return i;
}
#endif

static bool block_has_nonfinite(const uint8_t *p, size_t nbytes, kvq_dtype dt)
{
    uint64_t em = dt == KVQ_DT_F32 ? 0x7f8000007f800000ull : dt == KVQ_DT_BF16 ? 0x7f807f807f807f80ull
                                                                                : 0x7c007c007c007c00ull;
    uint64_t one = dt == KVQ_DT_F32 ? 0x0000000100000001ull : 0x0001000100010001ull;
    uint64_t top = dt == KVQ_DT_F32 ? 0x8000000080000000ull : 0x8000800080008000ull;
    uint64_t bad = 0;
    size_t i = 0;
#if KVQ_HAVE_X86
    if (kvq_simd_avx2()) {
        bool b;
        i = flagged_avx2(p, nbytes, dt, &b);
        if (b) return true;
    }
#endif
    for (; i + 8 <= nbytes; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t t = (w & em) ^ em;            // a zero lane: exponent all ones
        bad |= (t - one) & ~t & top;           // any zero lane sets a top bit (lanes are < top)
    }
    bool is_nan;
    size_t es = (size_t)kvq_dtype_size(dt), rest = (nbytes - i) / es;
    return bad != 0 || (rest && kvq_scan_nonfinite(p + i, rest, dt, false, &is_nan) < rest);
}

static size_t first_nonfinite(const kvq_st_tensor *t)
{
    size_t es = (size_t)kvq_dtype_size(t->dtype);
    for (size_t b = 0; b < t->nelem; b += SCAN_BLOCK) {
        size_t n = t->nelem - b < SCAN_BLOCK ? t->nelem - b : SCAN_BLOCK;
        if (!block_has_nonfinite(t->data + b * es, n * es, t->dtype)) continue;
        bool is_nan;
        return b + kvq_scan_nonfinite(t->data + b * es, n, t->dtype, false, &is_nan);
    }
    return t->nelem;
}

// Find one tensor of shape (rows, cols) (cols 0: a vector of rows), F16,
// BF16 or F32 and finite throughout.
static kvq_status find_tensor(const shard_set *ss, const char *name, int64_t rows, int64_t cols,
                              const kvq_st_tensor **out)
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
    size_t bad = first_nonfinite(t);
    if (bad < t->nelem)
        return kvq_error(KVQ_ERR_NONFINITE, "%s: tensor '%s' has a non-finite value at element %zu", ss->dir, name,
                         bad);
    *out = t;
    return KVQ_OK;
}

// A vector (norm weight, bias) as an f32 copy.
static kvq_status load_vector(const shard_set *ss, const char *name, int64_t rows, float **out, size_t *n_params)
{
    const kvq_st_tensor *t;
    kvq_status s = find_tensor(ss, name, rows, 0, &t);
    if (s) return s;
    float *buf = malloc(sizeof(float) * (t->nelem ? t->nelem : 1));
    if (!buf) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory for '%s'", ss->dir, name);
    if ((s = kvq_st_read_f32(t, 0, t->nelem, buf))) {
        free(buf);
        return s;
    }
    *out = buf;
    *n_params += t->nelem;
    return KVQ_OK;
}

// A matrix as a view into the mapping. Its pages, read by the finite scan,
// are given back at once when the model streams its weights.
static kvq_status load_weight(const shard_set *ss, const char *name, int64_t rows, int64_t cols, kvq_weight *out,
                              size_t *n_params)
{
    const kvq_st_tensor *t;
    kvq_status s = find_tensor(ss, name, rows, cols, &t);
    if (s) return s;
    *out = (kvq_weight){.data = t->data, .dtype = t->dtype, .rows = rows, .cols = cols, .mapped = true};
    if (ss->stream) kvq_weight_release(out);
    *n_params += t->nelem;
    return KVQ_OK;
}

// Split a fused (sum of rows, cols) tensor into row views of rows[i] rows each.
static kvq_status split_rows(const shard_set *ss, const char *name, int np, const int64_t *rows, int64_t cols,
                             kvq_weight *dst[], size_t *n_params)
{
    int64_t total = 0;
    for (int i = 0; i < np; i++) total += rows[i];
    kvq_weight all;
    kvq_status s = load_weight(ss, name, total, cols, &all, n_params);
    if (s) return s;
    int64_t r0 = 0;
    for (int i = 0; i < np; i++) {
        *dst[i] = kvq_weight_rows(&all, r0, rows[i]);
        r0 += rows[i];
    }
    return KVQ_OK;
}

static kvq_status load_layer(const shard_set *ss, const kvq_model_config *c, int l, kvq_model_layer *L,
                             size_t *np)
{
    const kvq_arch *a = c->arch;
    int64_t h = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim, kd = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t im = c->intermediate_size, hd = c->head_dim;
    bool qkv_bias = a->qkv_bias || c->attention_bias;
    // Gemma's sandwich: input -> attn -> post_attention -> +, pre_feedforward -> mlp -> post_feedforward -> +.
    // Elsewhere post_attention_layernorm is the norm before the MLP.
    struct { const char *suffix; int64_t r; float **dst; bool want; } vec[] = {
        {"input_layernorm.weight", h, &L->attn_norm, true},
        {"self_attn.q_proj.bias", qd, &L->bq, qkv_bias},
        {"self_attn.k_proj.bias", kd, &L->bk, qkv_bias},
        {"self_attn.v_proj.bias", kd, &L->bv, qkv_bias},
        {"self_attn.q_norm.weight", hd, &L->q_norm, a->qk_norm},
        {"self_attn.k_norm.weight", hd, &L->k_norm, a->qk_norm},
        {"self_attn.o_proj.bias", h, &L->bo, c->attention_bias},
        {"post_attention_layernorm.weight", h, a->sandwich_norm ? &L->post_attn_norm : &L->mlp_norm, true},
        {"pre_feedforward_layernorm.weight", h, &L->mlp_norm, a->sandwich_norm},
        {"post_feedforward_layernorm.weight", h, &L->post_mlp_norm, a->sandwich_norm},
    };
    struct { const char *suffix; int64_t r, cl; kvq_weight *dst; bool want; } mat[] = {
        {"self_attn.q_proj.weight", qd, h, &L->wq, !a->qkv_fused},
        {"self_attn.k_proj.weight", kd, h, &L->wk, !a->qkv_fused},
        {"self_attn.v_proj.weight", kd, h, &L->wv, !a->qkv_fused},
        {"self_attn.o_proj.weight", h, qd, &L->wo, true},
        {"mlp.gate_proj.weight", im, h, &L->w_gate, !a->gate_up_fused},
        {"mlp.up_proj.weight", im, h, &L->w_up, !a->gate_up_fused},
        {"mlp.down_proj.weight", h, im, &L->w_down, true},
    };
    char name[160];
    kvq_status s;
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        if (!vec[i].want) continue;
        snprintf(name, sizeof name, "model.layers.%d.%s", l, vec[i].suffix);
        if ((s = load_vector(ss, name, vec[i].r, vec[i].dst, np))) return s;
    }
    for (size_t i = 0; i < sizeof mat / sizeof mat[0]; i++) {
        if (!mat[i].want) continue;
        snprintf(name, sizeof name, "model.layers.%d.%s", l, mat[i].suffix);
        if ((s = load_weight(ss, name, mat[i].r, mat[i].cl, mat[i].dst, np))) return s;
    }
    if (a->qkv_fused) {
        int64_t rows[3] = {qd, kd, kd};
        kvq_weight *dst[3] = {&L->wq, &L->wk, &L->wv};
        snprintf(name, sizeof name, "model.layers.%d.%s", l, a->qkv_fused);
        if ((s = split_rows(ss, name, 3, rows, h, dst, np))) return s;
    }
    if (a->gate_up_fused) {
        int64_t rows[2] = {im, im};
        kvq_weight *dst[2] = {&L->w_gate, &L->w_up};
        snprintf(name, sizeof name, "model.layers.%d.%s", l, a->gate_up_fused);
        if ((s = split_rows(ss, name, 2, rows, h, dst, np))) return s;
    }
    if (a->norm == KVQ_NORM_1PW) {   // Gemma scales by (1 + w), in f32 as HF does: fold the 1 in once
        float *norms[] = {L->attn_norm, L->post_attn_norm, L->mlp_norm, L->post_mlp_norm, L->q_norm, L->k_norm};
        int64_t len[] = {h, h, h, h, hd, hd};
        for (size_t i = 0; i < sizeof norms / sizeof norms[0]; i++)
            for (int64_t j = 0; norms[i] && j < len[i]; j++) norms[i][j] += 1.0f;
    }
    return KVQ_OK;
}

static void layer_free(kvq_model_layer *L)
{
    float *all[] = {L->attn_norm, L->bq, L->bk, L->bv, L->bo, L->q_norm, L->k_norm,
                    L->post_attn_norm, L->mlp_norm, L->post_mlp_norm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
}

// Physical memory in bytes (0 when unknown: no streaming).
static size_t phys_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), ps = sysconf(_SC_PAGESIZE);
    return pages > 0 && ps > 0 ? (size_t)pages * (size_t)ps : 0;
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
    bool ok = m->layers != NULL;
    for (int i = 0; i < (c->arch->local_rope ? 2 : 1); i++) {
        size_t bytes = sizeof(float) * (size_t)(c->head_dim / 2);
        ok = ok && (m->inv_freq[i] = malloc(bytes));
        if (ok && c->rope[i].type == KVQ_ROPE_LONGROPE) ok = (m->inv_freq_long[i] = malloc(bytes)) != NULL;
        if (!ok) break;
        kvq_rope_inv_freq(&c->rope[i], c->head_dim, false, m->inv_freq[i]);
        if (m->inv_freq_long[i]) kvq_rope_inv_freq(&c->rope[i], c->head_dim, true, m->inv_freq_long[i]);
    }
    if (!ok) {
        s = kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    if ((s = shards_open(&ss))) goto fail;
    for (int i = 0; i < ss.n; i++)
        for (int j = 0; j < ss.st[i]->n_tensors; j++) m->weight_bytes += ss.st[i]->tensors[j].nbytes;
    size_t phys = phys_bytes();
    m->stream_weights = ss.stream = phys && m->weight_bytes > phys / 2;
    if ((s = load_weight(&ss, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, &m->embed, &m->n_params)))
        goto fail;
    if ((s = load_vector(&ss, "model.norm.weight", c->hidden_size, &m->final_norm, &m->n_params))) goto fail;
    if (c->arch->norm == KVQ_NORM_1PW)
        for (int i = 0; i < c->hidden_size; i++) m->final_norm[i] += 1.0f;
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
    } else if ((s = load_weight(&ss, "lm_head.weight", c->vocab_size, c->hidden_size, &m->lm_head, &m->n_params))) {
        goto fail;
    }
    for (int l = 0; l < c->n_layers; l++)
        if ((s = load_layer(&ss, c, l, &m->layers[l], &m->n_params))) goto fail;
    if (!(m->shards = malloc(sizeof *m->shards * (size_t)ss.n))) {
        s = kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    memcpy(m->shards, ss.st, sizeof *m->shards * (size_t)ss.n);
    m->n_shards = ss.n;
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
        for (int l = 0; l < m->cfg.n_layers; l++) layer_free(&m->layers[l]);
    free(m->layers);
    free(m->final_norm);
    for (int i = 0; i < 2; i++) {
        free(m->inv_freq[i]);
        free(m->inv_freq_long[i]);
    }
    for (int i = 0; i < m->n_shards; i++) kvq_st_close(m->shards[i]);
    free(m->shards);
    free(m);
}
