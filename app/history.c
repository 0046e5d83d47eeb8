// history.c — the studio's run history on disk: every finished run is kept,
// so a crash never loses results, and the next start shows them again.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "label.h"
#include "metrics.h"
#include "file.h"
#include "safetensors.h"
#include "session.h"

bool kvs_state_path(const char *name, char *buf, size_t n)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char dir[KVQ_PATH_LEN];
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/kvstudio", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.local/state/kvstudio", home);
    else return false;
    for (char *p = dir + 1; *p; p++)   // mkdir -p
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0700);
            *p = '/';
        }
    if (mkdir(dir, 0700) && errno != EEXIST) return false;
    return (size_t)snprintf(buf, n, "%s/%s", dir, name) < n;
}

// NaN is not JSON: store null and read it back as NaN.
static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }
static double get_num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

// The run record's figures, each under its metric's JSON key. v1/v1_replay:
// the key version 1 of runs.json used (before one vocabulary), for encode and
// replay runs: v1 kept two different metrics under one key ("attn_rel_error"
// was the lab's attention error (keys) or a replay's output error), told
// apart by the " (cache)" suffix v1 gave replay labels.
typedef struct {
    kvq_metric_id id;
    size_t off;
    const char *v1, *v1_replay;
} run_field;
#define RF(id, field, v1, v1r) {KVQ_M_##id, offsetof(kvs_run, field), v1, v1r}
static const run_field run_fields[] = {
    RF(KEY_BITS, key_bits, "key_bits", "key_bits"),
    RF(VALUE_BITS, value_bits, "value_bits", "value_bits"),
    RF(KEY_REL_MSE, key_rel_mse, "key_rel_mse", "key_rel_mse"),
    RF(VALUE_REL_MSE, value_rel_mse, "value_rel_mse", "value_rel_mse"),
    RF(KEY_COSINE, key_cosine, "key_cosine", "key_cosine"),
    RF(VALUE_COSINE, value_cosine, "value_cosine", "value_cosine"),
    RF(QK_ERROR, qk_error, "ip_rel_error", NULL),
    RF(PROBE_ERROR, probe_error, NULL, "ip_rel_error"),
    RF(ATTN_KEY_ERROR, attn_key_error, "attn_rel_error", NULL),
    RF(OUTPUT_ERROR, output_error, NULL, "attn_rel_error"),
    RF(ATTN_KL, attn_kl, NULL, NULL),
    RF(COMPRESSION, compression, "compression", NULL),
    RF(CACHE_COMPRESSION, cache_compression, NULL, "compression"),
    RF(ENCODE_VPS, encode_vps, "encode_vps", "encode_vps"),
};
#define N_RUN_FIELDS (sizeof run_fields / sizeof run_fields[0])

static double *field_at(kvs_run *r, const run_field *f) { return (double *)((char *)r + f->off); }
static double field_get(const kvs_run *r, const run_field *f) { return *(const double *)((const char *)r + f->off); }

void kvs_run_init(kvs_run *r, const kvq_config *cfg, const kvq_artifacts *art, const char *source)
{
    memset(r, 0, sizeof *r);
    r->cfg = *cfg;
    char id[16];
    kvq_artifacts_id(art, id, sizeof id);
    kvq_config_label(cfg, id, r->label, sizeof r->label);
    snprintf(r->source, sizeof r->source, "%s", source);
    for (size_t i = 0; i < N_RUN_FIELDS; i++) *field_at(r, &run_fields[i]) = NAN;
}

int kvs_run_n_fields(void) { return (int)N_RUN_FIELDS; }
kvq_metric_id kvs_run_field_metric(int i) { return run_fields[i].id; }
double kvs_run_field(const kvs_run *r, int i) { return field_get(r, &run_fields[i]); }

static json_t *run_to_json(const kvs_run *r)
{
    json_t *cfg = json_object();
    const char *const *names = kvq_config_field_names();
    for (int i = 0; names[i]; i++) {
        char v[1024];
        if (!kvq_config_get(&r->cfg, names[i], v, sizeof v)) json_object_set_new(cfg, names[i], json_string(v));
    }
    json_t *lm = json_array(), *lc = json_array();
    for (int l = 0; l < r->n_layers && l < KVQ_MAX_LAYERS; l++) {
        json_array_append_new(lm, num(r->layer_key_rel_mse[l]));
        json_array_append_new(lc, num(r->layer_key_cosine[l]));
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "label", json_string(r->label));
    json_object_set_new(o, "source", json_string(r->source));
    json_object_set_new(o, "config", cfg);
    for (size_t i = 0; i < N_RUN_FIELDS; i++)
        json_object_set_new(o, kvq_metrics[run_fields[i].id].json, num(field_get(r, &run_fields[i])));
    json_t *pl = json_object();
    json_object_set_new(pl, kvq_metrics[KVQ_M_KEY_REL_MSE].json, lm);
    json_object_set_new(pl, kvq_metrics[KVQ_M_KEY_COSINE].json, lc);
    json_object_set_new(o, "per_layer", pl);
    return o;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

static bool run_from_json(json_t *o, int version, kvs_run *r)
{
    memset(r, 0, sizeof *r);
    kvq_config_default(&r->cfg);
    json_t *cfg = json_object_get(o, "config"), *label = json_object_get(o, "label");
    if (!json_is_object(cfg) || !json_is_string(label)) return false;
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v)
        if (!json_is_string(v) || kvq_config_set(&r->cfg, key, json_string_value(v))) return false;
    const char *lab = json_string_value(label);
    json_t *src = json_object_get(o, "source");
    bool replay = version < 2 ? ends_with(lab, " (cache)") : json_is_string(src) && !strcmp(json_string_value(src), "replay");
    snprintf(r->source, sizeof r->source, "%s", replay ? "replay" : "encode");
    json_t *id = json_object_get(o, "id");
    if (json_is_string(id)) snprintf(r->id, sizeof r->id, "%s", json_string_value(id));
    if (version < 2) kvq_config_label(&r->cfg, NULL, r->label, sizeof r->label);   // v1 labels hid the config
    else snprintf(r->label, sizeof r->label, "%s", lab);
    for (size_t i = 0; i < N_RUN_FIELDS; i++) {
        const run_field *f = &run_fields[i];
        const char *k = version < 2 ? (replay ? f->v1_replay : f->v1) : kvq_metrics[f->id].json;
        *field_at(r, f) = k ? get_num(o, k) : NAN;
    }
    // v1 replay runs stored the cache's compression only; the record one follows from the bits
    if (version < 2 && replay && isfinite(r->key_bits) && isfinite(r->value_bits))
        r->compression = 32.0 / (r->key_bits + r->value_bits);
    json_t *pl = json_object_get(o, "per_layer");
    json_t *lm = version < 2 ? json_object_get(o, "layer_key_rel_mse") : json_object_get(pl, kvq_metrics[KVQ_M_KEY_REL_MSE].json);
    json_t *lc = version < 2 ? json_object_get(o, "layer_key_cosine") : json_object_get(pl, kvq_metrics[KVQ_M_KEY_COSINE].json);
    size_t n = json_array_size(lm);
    if (n > KVQ_MAX_LAYERS || json_array_size(lc) != n) return false;
    r->n_layers = (int)n;
    for (size_t l = 0; l < n; l++) {
        json_t *a = json_array_get(lm, l), *b = json_array_get(lc, l);
        r->layer_key_rel_mse[l] = json_is_number(a) ? json_number_value(a) : NAN;
        r->layer_key_cosine[l] = json_is_number(b) ? json_number_value(b) : NAN;
    }
    return true;
}

// The runs of a history file (root already parsed) into out (up to max);
// runs without an id (written before ids) get "legacy.<index>", the same in
// every session that reads the file, so they merge as one.
static int runs_from_root(json_t *root, kvs_run *out, int max)
{
    json_t *runs = json_object_get(root, "runs"), *ver = json_object_get(root, "version");
    int version = json_is_integer(ver) ? (int)json_integer_value(ver) : 1, n = 0;
    for (size_t i = 0; i < json_array_size(runs) && n < max; i++)
        if (run_from_json(json_array_get(runs, i), version, &out[n])) {
            if (!out[n].id[0]) snprintf(out[n].id, sizeof out[n].id, "legacy.%zu", i);
            n++;
        }
    return n;
}

// flock(2) on path.lock serialises the read-merge-write of sessions sharing
// the state directory (the lock file stays; it holds nothing).
static int history_lock(const char *path)
{
    char lp[KVQ_PATH_LEN + 8];
    snprintf(lp, sizeof lp, "%s.lock", path);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    while (flock(fd, LOCK_EX) && errno == EINTR) {}
    return fd;
}

int kvs_session_history_save_locked(kvs_session *s)
{
    if (!s->runs_path[0]) return 0;
    int lk = history_lock(s->runs_path);
    if (lk < 0) return kvq_error(KVQ_ERR_IO, "%s.lock: %s", s->runs_path, strerror(errno)), -1;
    // the file's runs first (another session may have added some since we
    // read it), then ours that it lacks; the newest KVS_MAX_RUNS are kept
    kvs_run *disk = malloc(sizeof *disk * KVS_MAX_RUNS);
    if (!disk) {
        close(lk);
        return kvq_error(KVQ_ERR_NOMEM, "run history: out of memory"), -1;
    }
    int nd = 0;
    json_t *old;
    if (access(s->runs_path, F_OK) == 0 && !kvq_json_load(s->runs_path, &old)) {
        nd = runs_from_root(old, disk, KVS_MAX_RUNS);
        json_decref(old);
    }
    json_t *arr = json_array();
    int total = nd;
    for (int i = 0; i < s->n_runs; i++) {
        bool have = false;
        for (int k = 0; k < nd && !have; k++) have = !strcmp(disk[k].id, s->runs[i].id);
        if (!have) total++;
    }
    int skip = total > KVS_MAX_RUNS ? total - KVS_MAX_RUNS : 0, at = 0;
    for (int k = 0; k < nd; k++, at++)
        if (at >= skip) json_array_append_new(arr, run_to_json(&disk[k]));
    for (int i = 0; i < s->n_runs; i++) {
        bool have = false;
        for (int k = 0; k < nd && !have; k++) have = !strcmp(disk[k].id, s->runs[i].id);
        if (!have && at++ >= skip) json_array_append_new(arr, run_to_json(&s->runs[i]));
    }
    json_t *root = json_pack("{s:s, s:i, s:o}", "format", "kvstudio-runs", "version", 2, "runs", arr);
    char *txt = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(root);
    kvq_atomic_file af;
    kvq_status st = txt ? kvq_atomic_open(&af, s->runs_path) : KVQ_ERR_NOMEM;
    if (!st) {
        if (fputs(txt, (FILE *)af.fp) == EOF) {
            kvq_atomic_abort(&af);
            st = kvq_error(KVQ_ERR_IO, "%s: write failed", s->runs_path);
        } else {
            st = kvq_atomic_commit(&af);
        }
    }
    free(txt);
    free(disk);
    close(lk);   // releases the flock
    return st ? -1 : 0;
}

int kvs_session_history_open(kvs_session *s, const char *path)
{
    snprintf(s->runs_path, sizeof s->runs_path, "%s", path);
    if (!s->session_id[0]) kvs_session_new_id(s);
    if (access(path, F_OK) != 0) return 0;   // first start
    json_t *root;
    if (kvq_json_load(path, &root)) goto bad;   // unreadable, not a regular file, or not JSON
    json_t *runs = json_object_get(root, "runs");
    if (!json_is_array(runs)) {
        json_decref(root);
        goto bad;
    }
    pthread_mutex_lock(&s->lock);
    int loaded = runs_from_root(root, s->runs + s->n_runs, KVS_MAX_RUNS - s->n_runs);
    s->n_runs += loaded;
    pthread_mutex_unlock(&s->lock);
    json_decref(root);
    return loaded;
bad:;
    char aside[KVQ_PATH_LEN + 8];
    snprintf(aside, sizeof aside, "%s.bad", path);
    rename(path, aside);   // keep it for the user, start a fresh history
    return kvs_errorf(s, "%s: run history unreadable (kept as %s); starting a new one", path, aside);
}
