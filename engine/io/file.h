// file.h — the one way engine/ and app/ open a file for reading: only
// regular files (a FIFO, device or directory given as a trace, manifest,
// config or text is refused at once instead of blocking or reading for
// ever), and whole-file reads bounded by a size limit the caller names.
#ifndef KVQ_FILE_H
#define KVQ_FILE_H
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include "kvq.h"

// Largest JSON file (config.json, index, manifest, run history) read whole.
#define KVQ_JSON_MAX_BYTES ((size_t)64 << 20)

// Largest text or token file (ppl --text / --tokens, capture): a bound that
// also keeps a run over it finite.
#define KVQ_TEXT_MAX_BYTES ((size_t)16 << 20)

// open(O_RDONLY | O_NONBLOCK) (a FIFO with no writer would block the open
// itself), fstat: anything but a regular file is KVQ_ERR_IO "PATH: not a
// regular file (a fifo)"; then O_NONBLOCK is cleared. *fd is owned by the
// caller; *size (optional) is st_size.
kvq_status kvq_file_open_regular(const char *path, int *fd, size_t *size);
// Whether anything is at path (any kind: the readers above refuse what is not a
// regular file, with a message naming it).
bool kvq_file_exists(const char *path);
// The same as a FILE * opened "rb" (caller fcloses).
kvq_status kvq_file_fopen(const char *path, FILE **out, size_t *size);
// The whole file, NUL-terminated (*buf owned by the caller, free()). A file
// larger than max bytes is KVQ_ERR_IO "PATH: larger than MAX bytes" (checked
// on st_size and again while reading: the file may grow).
kvq_status kvq_file_read(const char *path, size_t max, char **buf, size_t *len);
// kvq_file_read (KVQ_JSON_MAX_BYTES) + json_loadb: KVQ_ERR_IO when the file
// cannot be read, KVQ_ERR_FORMAT "PATH:LINE: jansson's message" when it does
// not parse. *out owned by the caller (json_decref).
kvq_status kvq_json_load(const char *path, json_t **out);
#endif
