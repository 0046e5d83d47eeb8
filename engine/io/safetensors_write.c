// safetensors_write.c — kvq_st_write and the atomic-file helpers (temp file
// in the same directory, fsync, rename, fsync the directory).
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include "safetensors.h"

// product(shape) x element size, or -1 on overflow
static int byte_size(int ndim, const int64_t *shape, int esize, size_t *nbytes)
{
    size_t n = (size_t)esize;
    for (int d = 0; d < ndim; d++) {
        uint64_t s = (uint64_t)shape[d];
        if (s && n > SIZE_MAX / s) return -1;
        n *= (size_t)s;
    }
    *nbytes = n;
    return 0;
}

// ---- atomic files ----
static atomic_uint tmp_counter;

kvq_status kvq_atomic_open(kvq_atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path)
        return kvq_error(KVQ_ERR_ARG, "%s: path longer than %d bytes", path, KVQ_PATH_LEN - 1);
    snprintf(af->path, sizeof af->path, "%s", path);
    // A symbolic link is followed: the temp goes beside its target and the
    // target is replaced (renaming over the link would turn it into a file).
    struct stat ls;
    if (lstat(path, &ls) == 0 && S_ISLNK(ls.st_mode)) {
        char *real = realpath(path, NULL);
        if (!real)
            return kvq_error(KVQ_ERR_IO, "%s: a symbolic link whose target cannot be resolved (%s); refusing to write "
                             "through it", path, strerror(errno));
        bool fits = strlen(real) < sizeof af->path;
        if (fits) snprintf(af->path, sizeof af->path, "%s", real);
        free(real);
        if (!fits) return kvq_error(KVQ_ERR_ARG, "%s: the link's target path is too long", path);
        path = af->path;
    }
    // Renaming over a device, FIFO or directory would replace the node
    // itself (as root, `export json /dev/full` replaced /dev/full).
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return kvq_error(KVQ_ERR_IO, "%s: exists and is not a regular file, expected a file path to write", path);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&tmp_counter, 1));
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp) return kvq_error(KVQ_ERR_IO, "%s: cannot create %s: %s", path, af->tmp, strerror(errno));
    return KVQ_OK;
}

void kvq_atomic_abort(kvq_atomic_file *af)
{
    if (af->fp) fclose(af->fp);
    af->fp = NULL;
    if (af->tmp[0]) unlink(af->tmp);
    af->tmp[0] = 0;
}

kvq_status kvq_atomic_commit(kvq_atomic_file *af)
{
    FILE *fp = af->fp;
    if (!fp) return kvq_error(KVQ_ERR_ARG, "%s: atomic file not open", af->path);
    if (fflush(fp) != 0 || ferror(fp) || fsync(fileno(fp)) != 0) {
        int e = errno;
        kvq_atomic_abort(af);
        return kvq_error(KVQ_ERR_IO, "%s: write failed: %s", af->path, strerror(e));
    }
    af->fp = NULL;
    if (fclose(fp) != 0) {
        int e = errno;
        kvq_atomic_abort(af);
        return kvq_error(KVQ_ERR_IO, "%s: close failed: %s", af->path, strerror(e));
    }
    if (rename(af->tmp, af->path) != 0) {
        int e = errno;
        kvq_atomic_abort(af);
        return kvq_error(KVQ_ERR_IO, "%s: cannot rename %s over it: %s", af->path, af->tmp, strerror(e));
    }
    af->tmp[0] = 0;
    // the rename is durable only once the directory entry is on disk
    char dir[KVQ_PATH_LEN];
    snprintf(dir, sizeof dir, "%s", af->path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);   // best effort: some filesystems refuse fsync on directories
        close(fd);
    }
    return KVQ_OK;
}

// ---- writer ----
static kvq_status check_wtensors(const char *path, const kvq_st_wtensor *t, int n, size_t *nbytes)
{
    for (int i = 0; i < n; i++) {
        if (!t[i].name || !t[i].name[0] || strcmp(t[i].name, "__metadata__") == 0)
            return kvq_error(KVQ_ERR_ARG, "%s: tensor %d: name '%s' is empty or reserved", path, i,
                             t[i].name ? t[i].name : "(null)");
        if (t[i].dtype < 0 || t[i].dtype >= KVQ_DT_COUNT || t[i].ndim < 0 || t[i].ndim > KVQ_ST_MAX_DIMS)
            return kvq_error(KVQ_ERR_ARG, "%s: tensor '%s': dtype %d / ndim %d out of range", path, t[i].name,
                             (int)t[i].dtype, t[i].ndim);
        for (int d = 0; d < t[i].ndim; d++)
            if (t[i].shape[d] < 0)
                return kvq_error(KVQ_ERR_ARG, "%s: tensor '%s': shape[%d] is %lld, expected >= 0", path,
                                 t[i].name, d, (long long)t[i].shape[d]);
        if (byte_size(t[i].ndim, t[i].shape, kvq_dtype_size(t[i].dtype), &nbytes[i]) != 0)
            return kvq_error(KVQ_ERR_ARG, "%s: tensor '%s': byte size overflows", path, t[i].name);
        if (nbytes[i] && !t[i].data)
            return kvq_error(KVQ_ERR_ARG, "%s: tensor '%s': data is NULL", path, t[i].name);
        for (int j = 0; j < i; j++)
            if (strcmp(t[i].name, t[j].name) == 0)
                return kvq_error(KVQ_ERR_ARG, "%s: tensor '%s' given twice", path, t[i].name);
    }
    return KVQ_OK;
}

static char *build_header(const kvq_st_wtensor *t, int n, const size_t *nbytes, const char *const *mk,
                          const char *const *mv, int n_meta)
{
    json_t *root = json_object();
    int bad = !root;
    if (n_meta > 0 && !bad) {
        json_t *m = json_object();
        for (int i = 0; m && i < n_meta; i++)
            bad |= json_object_set_new(m, mk[i], json_string(mv[i] ? mv[i] : ""));
        bad |= !m || json_object_set_new(root, "__metadata__", m);
    }
    size_t at = 0;
    for (int i = 0; i < n && !bad; i++) {
        json_t *e = json_object(), *sh = json_array();
        for (int d = 0; sh && d < t[i].ndim; d++) bad |= json_array_append_new(sh, json_integer(t[i].shape[d]));
        bad |= !e || !sh;
        if (!bad) {
            bad |= json_object_set_new(e, "dtype", json_string(kvq_dtype_name(t[i].dtype)));
            bad |= json_object_set_new(e, "shape", sh);
            sh = NULL;
            bad |= json_object_set_new(e, "data_offsets",
                                       json_pack("[II]", (json_int_t)at, (json_int_t)(at + nbytes[i])));
            bad |= json_object_set_new(root, t[i].name, e);
            e = NULL;
        }
        json_decref(e);
        json_decref(sh);
        at += nbytes[i];
    }
    char *s = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

kvq_status kvq_st_write(const char *path, const kvq_st_wtensor *t, int n_tensors,
                        const char *const *meta_keys, const char *const *meta_vals, int n_meta)
{
    if (n_tensors < 0 || n_meta < 0 || (n_tensors && !t) || (n_meta && (!meta_keys || !meta_vals)))
        return kvq_error(KVQ_ERR_ARG, "%s: bad tensor or metadata list", path);
    for (int i = 0; i < n_meta; i++)
        if (!meta_keys[i]) return kvq_error(KVQ_ERR_ARG, "%s: metadata key %d is NULL", path, i);
    size_t *nbytes = calloc((size_t)n_tensors + 1, sizeof *nbytes);
    if (!nbytes) return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", path);
    kvq_status s = check_wtensors(path, t, n_tensors, nbytes);
    char *hdr = s == KVQ_OK ? build_header(t, n_tensors, nbytes, meta_keys, meta_vals, n_meta) : NULL;
    if (s == KVQ_OK && !hdr) s = kvq_error(KVQ_ERR_NOMEM, "%s: cannot build the header (out of memory or invalid UTF-8 in a name)", path);
    kvq_atomic_file af;
    if (s == KVQ_OK) s = kvq_atomic_open(&af, path);
    if (s == KVQ_OK) {
        // pad so 8 + N is a multiple of 8: tensor data starts aligned
        size_t len = strlen(hdr), padded = (len + 7) & ~(size_t)7;
        uint8_t le[8];
        for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
        FILE *fp = af.fp;
        int ok = fwrite(le, 1, 8, fp) == 8 && fwrite(hdr, 1, len, fp) == len;
        for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
        for (int i = 0; ok && i < n_tensors; i++)
            ok = nbytes[i] == 0 || fwrite(t[i].data, 1, nbytes[i], fp) == nbytes[i];
        if (!ok) {
            kvq_atomic_abort(&af);
            s = kvq_error(KVQ_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        } else {
            s = kvq_atomic_commit(&af);
        }
    }
    free(hdr);
    free(nbytes);
    return s;
}
