// file.c — regular-file opens and bounded whole-file reads (file.h).
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "file.h"

static const char *kind(mode_t m)
{
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a fifo";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a plain file";
}

kvq_status kvq_file_open_regular(const char *path, int *fd, size_t *size)
{
    *fd = -1;
    if (size) *size = 0;
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f < 0) return kvq_error(KVQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        return kvq_error(KVQ_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return kvq_error(KVQ_ERR_IO, "%s: not a regular file (%s)", path, kind(sb.st_mode));
    }
    int fl = fcntl(f, F_GETFL);
    if (fl >= 0) fcntl(f, F_SETFL, fl & ~O_NONBLOCK);   // reads of a regular file never block anyway
    *fd = f;
    if (size) *size = (size_t)sb.st_size;
    return KVQ_OK;
}

kvq_status kvq_file_fopen(const char *path, FILE **out, size_t *size)
{
    *out = NULL;
    int fd;
    kvq_status s = kvq_file_open_regular(path, &fd, size);
    if (s) return s;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return kvq_error(KVQ_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    *out = f;
    return KVQ_OK;
}

kvq_status kvq_file_read(const char *path, size_t max, char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f;
    size_t size;
    kvq_status s = kvq_file_fopen(path, &f, &size);
    if (s) return s;
    if (size > max) {
        fclose(f);
        return kvq_error(KVQ_ERR_IO, "%s: larger than %zu bytes (%zu bytes)", path, max, size);
    }
    // One byte more than st_size: a file that grew since fstat shows it.
    size_t cap = size + 1;
    char *b = malloc(cap + 1);
    if (!b) {
        fclose(f);
        return kvq_error(KVQ_ERR_NOMEM, "%s: out of memory for %zu bytes", path, size);
    }
    size_t n = 0;
    bool oom = false;
    for (;;) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0 || n > max) break;
        if (n == cap) {
            size_t nc = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nb = realloc(b, nc + 1);
            if (!nb) {
                oom = true;
                break;
            }
            b = nb;
            cap = nc;
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (err || oom || n > max) {
        free(b);
        return err ? kvq_error(KVQ_ERR_IO, "%s: read error", path)
               : oom ? kvq_error(KVQ_ERR_NOMEM, "%s: out of memory", path)
                     : kvq_error(KVQ_ERR_IO, "%s: larger than %zu bytes", path, max);
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return KVQ_OK;
}

kvq_status kvq_json_load(const char *path, json_t **out)
{
    *out = NULL;
    char *b;
    size_t n;
    kvq_status s = kvq_file_read(path, KVQ_JSON_MAX_BYTES, &b, &n);
    if (s) return s;
    json_error_t je;
    json_t *root = json_loadb(b, n, 0, &je);
    free(b);
    if (!root) return kvq_error(KVQ_ERR_FORMAT, "%s:%d: %s", path, je.line, je.text);
    *out = root;
    return KVQ_OK;
}

bool kvq_file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}
