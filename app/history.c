// history.c — the studio's run history on disk: every finished run is kept,
// so a crash never loses results, and the next start shows them again.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
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
    json_object_set_new(o, "label", json_string(r->label));
    json_object_set_new(o, "config", cfg);
    json_object_set_new(o, "key_bits", num(r->key_bits));
    json_object_set_new(o, "value_bits", num(r->value_bits));
    json_object_set_new(o, "key_rel_mse", num(r->key_rel_mse));
    json_object_set_new(o, "value_rel_mse", num(r->value_rel_mse));
    json_object_set_new(o, "key_cosine", num(r->key_cosine));
    json_object_set_new(o, "value_cosine", num(r->value_cosine));
    json_object_set_new(o, "ip_rel_error", num(r->ip_rel_error));
    json_object_set_new(o, "attn_rel_error", num(r->attn_rel_error));
    json_object_set_new(o, "compression", num(r->compression));
    json_object_set_new(o, "encode_vps", num(r->encode_vps));
    json_object_set_new(o, "layer_key_rel_mse", lm);
    json_object_set_new(o, "layer_key_cosine", lc);
    return o;
}

static bool run_from_json(json_t *o, kvs_run *r)
{
    memset(r, 0, sizeof *r);
    kvq_config_default(&r->cfg);
    json_t *cfg = json_object_get(o, "config"), *label = json_object_get(o, "label");
    if (!json_is_object(cfg) || !json_is_string(label)) return false;
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v)
        if (!json_is_string(v) || kvq_config_set(&r->cfg, key, json_string_value(v))) return false;
    snprintf(r->label, sizeof r->label, "%s", json_string_value(label));
    r->key_bits = get_num(o, "key_bits");
    r->value_bits = get_num(o, "value_bits");
    r->key_rel_mse = get_num(o, "key_rel_mse");
    r->value_rel_mse = get_num(o, "value_rel_mse");
    r->key_cosine = get_num(o, "key_cosine");
    r->value_cosine = get_num(o, "value_cosine");
    r->ip_rel_error = get_num(o, "ip_rel_error");
    r->attn_rel_error = get_num(o, "attn_rel_error");
    r->compression = get_num(o, "compression");
    r->encode_vps = get_num(o, "encode_vps");
    json_t *lm = json_object_get(o, "layer_key_rel_mse"), *lc = json_object_get(o, "layer_key_cosine");
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

int kvs_session_history_save_locked(kvs_session *s)
{
    if (!s->runs_path[0]) return 0;
    json_t *arr = json_array();
    for (int i = 0; i < s->n_runs; i++) json_array_append_new(arr, run_to_json(&s->runs[i]));
    json_t *root = json_pack("{s:s, s:i, s:o}", "format", "kvstudio-runs", "version", 1, "runs", arr);
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
    return st ? -1 : 0;
}

int kvs_session_history_open(kvs_session *s, const char *path)
{
    snprintf(s->runs_path, sizeof s->runs_path, "%s", path);
    if (access(path, F_OK) != 0) return 0;   // first start
    json_t *root;
    if (kvq_json_load(path, &root)) goto bad;   // unreadable, not a regular file, or not JSON
    json_t *runs = json_object_get(root, "runs");
    if (!json_is_array(runs)) {
        json_decref(root);
        goto bad;
    }
    int loaded = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < json_array_size(runs) && s->n_runs < KVS_MAX_RUNS; i++) {
        kvs_run r;
        if (run_from_json(json_array_get(runs, i), &r)) {
            s->runs[s->n_runs++] = r;
            loaded++;
        }
    }
    pthread_mutex_unlock(&s->lock);
    json_decref(root);
    return loaded;
bad:;
    char aside[KVQ_PATH_LEN + 8];
    snprintf(aside, sizeof aside, "%s.bad", path);
    rename(path, aside);   // keep it for the user, start a fresh history
    return kvs_errorf(s, "%s: run history unreadable (kept as %s); starting a new one", path, aside);
}
