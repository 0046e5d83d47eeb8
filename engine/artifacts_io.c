// artifacts_io.c — artifacts on disk: a directory holding artifacts.safetensors
// (F32 tensors in the order they were put) and manifest.json (method, software
// version, trace shape, options, tensor list).
//
// Atomicity: both files are written into a fresh sibling "<dir>.tmp.XXXXXX"
// (mkdtemp: always one this call created; each file itself written to a
// temp name, fsynced, renamed), then the whole directory replaces the old
// one with renameat2(RENAME_EXCHANGE), so a reader sees the old pair or the
// new pair, never a mix. Where the exchange is unsupported, the old
// directory is renamed aside first (a crash in that window leaves
// "<dir>.old.XXXXXX" intact, never a half-written DIR). A symbolic link as
// DIR is followed: the temp directory is made beside the link's target and
// the target is replaced, the link stays a link; only the two artifact
// files of directories this call made or replaced are ever removed.
// Output is byte-for-byte deterministic: no timestamps, fixed key order.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "artifacts.h"
#include "artifacts_impl.h"
#include "file.h"
#include "safetensors.h"

#define ART_FORMAT "kvstudio-artifacts"
#define ART_TENSORS "artifacts.safetensors"
#define ART_MANIFEST "manifest.json"

// Meta keys "trace.<x>" and "option.<x>" are grouped into objects; the four
// trace shape fields are written as integers.
static bool is_int_field(const char *k)
{
    return !strcmp(k, "layers") || !strcmp(k, "kv_heads") || !strcmp(k, "head_dim") || !strcmp(k, "tokens");
}

static json_t *manifest_build(const kvq_artifacts *a)
{
    json_t *root = json_object(), *trace = json_object(), *opts = json_object(), *extra = json_object();
    json_t *tensors = json_array();
    const char *m = kvq_artifacts_meta(a, "method"), *v = kvq_artifacts_meta(a, "version");
    json_object_set_new(root, "format", json_string(ART_FORMAT));
    json_object_set_new(root, "method", json_string(m ? m : ""));
    json_object_set_new(root, "version", json_string(v ? v : KVQ_VERSION));
    for (int i = 0; i < a->n_meta; i++) {
        const char *k = a->meta_keys[i], *val = a->meta_vals[i];
        if (!strcmp(k, "method") || !strcmp(k, "version")) continue;
        if (!strncmp(k, "trace.", 6)) {
            if (is_int_field(k + 6)) json_object_set_new(trace, k + 6, json_integer(strtoll(val, NULL, 10)));
            else json_object_set_new(trace, k + 6, json_string(val));
        } else if (!strncmp(k, "option.", 7)) {
            json_object_set_new(opts, k + 7, json_string(val));
        } else {
            json_object_set_new(extra, k, json_string(val));
        }
    }
    json_object_set_new(root, "trace", trace);
    json_object_set_new(root, "options", opts);
    json_object_set_new(root, "meta", extra);
    for (int i = 0; i < a->n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < a->t[i].ndim; d++) json_array_append_new(shape, json_integer(a->t[i].shape[d]));
        json_array_append_new(tensors, json_pack("{s:s, s:s, s:o}", "name", a->t[i].name, "dtype", "F32",
                                                 "shape", shape));
    }
    json_object_set_new(root, "tensors", tensors);
    return root;
}

static void join(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

// Remove the two artifact files and the directory; best effort.
static void remove_artifact_dir(const char *dir)
{
    char p[KVQ_PATH_LEN + 64];
    join(p, sizeof p, dir, ART_TENSORS);
    unlink(p);
    join(p, sizeof p, dir, ART_MANIFEST);
    unlink(p);
    rmdir(dir);
}

// A directory we may replace holds nothing but our two files (so a typo in
// --output can never delete someone's directory).
static kvq_status check_replaceable(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return kvq_error(KVQ_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    struct dirent *e;
    kvq_status s = KVQ_OK;
    while ((e = readdir(d)) && !s) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, ART_TENSORS) || !strcmp(n, ART_MANIFEST))
            continue;
        s = kvq_error(KVQ_ERR_IO, "%s: exists and holds '%s', not only artifacts; refusing to replace it "
                      "(choose an empty or new directory)", dir, n);
    }
    closedir(d);
    return s;
}

static void fsync_parent(const char *dir)
{
    char parent[KVQ_PATH_LEN];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (!slash) strcpy(parent, ".");
    else if (slash == parent) slash[1] = 0;
    else *slash = 0;
    int fd = open(parent, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static kvq_status write_files(const kvq_artifacts *a, const char *tmp)
{
    char path[KVQ_PATH_LEN + 64];
    kvq_st_wtensor *wt = calloc((size_t)(a->n ? a->n : 1), sizeof *wt);
    if (!wt) return kvq_error(KVQ_ERR_NOMEM, "artifacts: out of memory");
    for (int i = 0; i < a->n; i++) {
        wt[i].name = a->t[i].name;
        wt[i].dtype = KVQ_DT_F32;
        wt[i].ndim = a->t[i].ndim;
        memcpy(wt[i].shape, a->t[i].shape, sizeof(int64_t) * (size_t)a->t[i].ndim);
        wt[i].data = a->t[i].data;
    }
    join(path, sizeof path, tmp, ART_TENSORS);
    static const char *const mk[] = {"format"}, *const mv[] = {ART_FORMAT};
    kvq_status s = kvq_st_write(path, wt, a->n, mk, mv, 1);
    free(wt);
    if (s) return s;
    json_t *root = manifest_build(a);
    char *txt = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!txt) return kvq_error(KVQ_ERR_NOMEM, "artifacts: cannot serialize the manifest");
    join(path, sizeof path, tmp, ART_MANIFEST);
    kvq_atomic_file af;
    s = kvq_atomic_open(&af, path);
    if (!s) {
        if (fputs(txt, (FILE *)af.fp) == EOF || fputc('\n', (FILE *)af.fp) == EOF) {
            kvq_atomic_abort(&af);
            s = kvq_error(KVQ_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        } else {
            s = kvq_atomic_commit(&af);
        }
    }
    free(txt);
    return s;
}

// The directory to write: dir itself, or the target of a symbolic link
// (a link to nothing is refused: following it would create a directory
// somewhere the user never named).
static kvq_status resolve_output(const char *dir, char *out, size_t n)
{
    struct stat ls;
    if (lstat(dir, &ls) != 0 || !S_ISLNK(ls.st_mode)) {
        snprintf(out, n, "%s", dir);
        return KVQ_OK;
    }
    char *real = realpath(dir, NULL);
    if (!real)
        return kvq_error(KVQ_ERR_IO, "%s: a symbolic link whose target cannot be resolved (%s); refusing to write "
                         "through it (remove the link or point it at a directory)", dir, strerror(errno));
    size_t len = strlen(real);
    if (len + 40 >= n) {
        free(real);
        return kvq_error(KVQ_ERR_ARG, "%s: the link's target path is too long", dir);
    }
    memcpy(out, real, len + 1);
    free(real);
    return KVQ_OK;
}

kvq_status kvq_artifacts_save(const kvq_artifacts *a, const char *dir)
{
    if (!a) return kvq_error(KVQ_ERR_ARG, "save artifacts: nothing to save (calibrate first)");
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    if (len == 0 || len + 40 >= KVQ_PATH_LEN)
        return kvq_error(KVQ_ERR_ARG, "save artifacts: directory path '%s' empty or too long", dir);
    char given[KVQ_PATH_LEN], d[KVQ_PATH_LEN], tmp[KVQ_PATH_LEN + 32], old[KVQ_PATH_LEN + 32];
    memcpy(given, dir, len);
    given[len] = 0;
    kvq_status s = resolve_output(given, d, sizeof d);
    if (s) return s;
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", d);
    snprintf(old, sizeof old, "%s.old.XXXXXX", d);
    struct stat st;
    bool exists = stat(d, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode))
        return kvq_error(KVQ_ERR_IO, "%s: exists and is not a directory", d);
    if (exists && (s = check_replaceable(d))) return s;
    if (!mkdtemp(tmp))
        return kvq_error(KVQ_ERR_IO, "%s: cannot create temp directory %s: %s", given, tmp, strerror(errno));
    // mkdtemp makes 0700: give the new directory the old one's mode, or
    // what mkdir would have (0777 less the umask)
    mode_t um = umask(0);
    umask(um);
    chmod(tmp, exists ? (st.st_mode & 07777) : (0777 & ~um));
    s = write_files(a, tmp);
    if (s) {
        remove_artifact_dir(tmp);
        return s;
    }
    if (!exists) {
        if (rename(tmp, d) != 0) {
            s = kvq_error(KVQ_ERR_IO, "%s: cannot rename %s into place: %s", d, tmp, strerror(errno));
            remove_artifact_dir(tmp);
            return s;
        }
    } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, d, RENAME_EXCHANGE) == 0) {
        remove_artifact_dir(tmp);   // now holds the old artifacts
    } else {
        // old: an empty directory made here, which rename(d, old) replaces
        if (!mkdtemp(old) || rename(d, old) != 0 || rename(tmp, d) != 0) {
            s = kvq_error(KVQ_ERR_IO, "%s: cannot replace the old artifacts: %s", d, strerror(errno));
            if (stat(d, &st) != 0) rename(old, d);   // put the old ones back
            remove_artifact_dir(tmp);
            return s;
        }
        remove_artifact_dir(old);
    }
    fsync_parent(d);
    return KVQ_OK;
}

// ---- load ----
static void shape_str(char *buf, size_t n, int ndim, const int64_t *sh)
{
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && len < n; d++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", d ? "," : "", (long long)sh[d]);
    if (len < n) snprintf(buf + len, n - len, "]");
}

static kvq_status load_meta(kvq_artifacts *a, const char *mpath, json_t *root)
{
    const char *key;
    json_t *val;
    kvq_status s = KVQ_OK;
    const char *m = json_string_value(json_object_get(root, "method"));
    const char *v = json_string_value(json_object_get(root, "version"));
    if (!m || !v) return kvq_error(KVQ_ERR_FORMAT, "%s: 'method' and 'version' must be strings", mpath);
    if ((s = kvq_artifacts_set_meta(a, "method", m)) || (s = kvq_artifacts_set_meta(a, "version", v))) return s;
    if (strcmp(v, KVQ_VERSION))
        kvq_log(KVQ_LOG_WARN, "%s: artifacts made by kvstudio %s, this is %s", mpath, v, KVQ_VERSION);
    static const char *const groups[] = {"trace", "options", "meta"};
    static const char *const prefix[] = {"trace.", "option.", ""};
    for (int g = 0; g < 3 && !s; g++) {
        json_t *obj = json_object_get(root, groups[g]);
        if (!json_is_object(obj)) return kvq_error(KVQ_ERR_FORMAT, "%s: '%s' must be an object", mpath, groups[g]);
        json_object_foreach(obj, key, val) {
            char k[256], sv[64];
            snprintf(k, sizeof k, "%s%s", prefix[g], key);
            const char *str = json_string_value(val);
            if (json_is_integer(val)) {
                snprintf(sv, sizeof sv, "%lld", (long long)json_integer_value(val));
                str = sv;
            }
            if (!str) return kvq_error(KVQ_ERR_FORMAT, "%s: %s.%s must be a string or an integer", mpath,
                                       groups[g], key);
            if ((s = kvq_artifacts_set_meta(a, k, str))) break;
        }
    }
    return s;
}

static kvq_status load_tensors(kvq_artifacts *a, const char *mpath, json_t *list, const kvq_st *st)
{
    size_t n = json_array_size(list);
    if (!json_is_array(list)) return kvq_error(KVQ_ERR_FORMAT, "%s: 'tensors' must be an array", mpath);
    if ((int)n != st->n_tensors)
        return kvq_error(KVQ_ERR_FORMAT, "%s lists %zu tensors but %s holds %d", mpath, n, st->path, st->n_tensors);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(list, i), *shape = json_object_get(e, "shape");
        const char *name = json_string_value(json_object_get(e, "name"));
        if (!name || !json_is_array(shape) || json_array_size(shape) > KVQ_ART_MAX_DIMS)
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensors[%zu] needs a 'name' and a 'shape' of <= %d dims",
                             mpath, i, KVQ_ART_MAX_DIMS);
        const kvq_st_tensor *t = kvq_st_find(st, name);
        if (!t) return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' is in the manifest but not in the file",
                                 st->path, name);
        if (t->dtype != KVQ_DT_F32)
            return kvq_error(KVQ_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected F32", st->path, name,
                             kvq_dtype_name(t->dtype));
        int64_t sh[KVQ_ART_MAX_DIMS];
        int nd = (int)json_array_size(shape);
        for (int d = 0; d < nd; d++) sh[d] = json_integer_value(json_array_get(shape, (size_t)d));
        bool same = nd == t->ndim;
        for (int d = 0; same && d < nd; d++) same = sh[d] == t->shape[d];
        if (!same) {
            char s1[96], s2[96];
            shape_str(s1, sizeof s1, nd, sh);
            shape_str(s2, sizeof s2, t->ndim, t->shape);
            return kvq_error(KVQ_ERR_SHAPE, "%s: tensor '%s' has shape %s in the manifest but %s in %s", mpath,
                             name, s1, s2, st->path);
        }
        float *buf = malloc(sizeof(float) * (t->nelem ? t->nelem : 1));
        if (!buf) return kvq_error(KVQ_ERR_NOMEM, "artifacts: out of memory");
        kvq_status s = kvq_st_read_f32(t, 0, t->nelem, buf);
        bool is_nan = false;
        size_t bad = s ? t->nelem : kvq_scan_nonfinite(buf, t->nelem, KVQ_DT_F32, false, &is_nan);
        if (!s && bad < t->nelem)   // a poisoned codebook would quantize everything to garbage
            s = kvq_error(KVQ_ERR_NONFINITE, "%s: tensor '%s': %s at element %zu (expected finite values)",
                          st->path, name, is_nan ? "NaN" : "Inf", bad);
        if (!s) s = kvq_artifacts_put(a, name, buf, nd, sh);
        free(buf);
        if (s) return s;
    }
    return KVQ_OK;
}

kvq_status kvq_artifacts_load(const char *dir, kvq_artifacts **out)
{
    *out = NULL;
    char mpath[KVQ_PATH_LEN + 64], tpath[KVQ_PATH_LEN + 64];
    join(mpath, sizeof mpath, dir, ART_MANIFEST);
    join(tpath, sizeof tpath, dir, ART_TENSORS);
    struct stat stt;
    if (stat(dir, &stt) != 0 || !S_ISDIR(stt.st_mode))
        return kvq_error(KVQ_ERR_IO, "%s: not an artifacts directory (run `kvstudio precompute ... --output %s`)",
                         dir, dir);
    json_t *root;
    kvq_status s = kvq_json_load(mpath, &root);
    if (s) return s;
    const char *fmt = json_string_value(json_object_get(root, "format"));
    if (!json_is_object(root) || !fmt || strcmp(fmt, ART_FORMAT)) {
        s = kvq_error(KVQ_ERR_FORMAT, "%s: 'format' is '%s', expected '%s'", mpath, fmt ? fmt : "(missing)",
                      ART_FORMAT);
        json_decref(root);
        return s;
    }
    kvq_st *st = NULL;
    kvq_artifacts *a = NULL;
    if (!(s = kvq_st_open(tpath, &st)) && !(s = kvq_artifacts_new(&a)) && !(s = load_meta(a, mpath, root)))
        s = load_tensors(a, mpath, json_object_get(root, "tensors"), st);
    if (!s) s = kvq_artifacts_check(a, tpath);
    kvq_st_close(st);
    json_decref(root);
    if (s) {
        kvq_artifacts_free(a);
        return s;
    }
    *out = a;
    return KVQ_OK;
}
