// progress.h — a progress line with ETA for batch commands that run longer
// than KVS_PROGRESS_AFTER_S: on stderr, only when stderr is a terminal and
// no studio is up (the studio has its own status line), rewritten in place
// at most every 0.2 s and erased when the command ends, so piped or
// captured output never contains it.
#ifndef KVS_PROGRESS_H
#define KVS_PROGRESS_H
#include <stdbool.h>
#include <stddef.h>
#include "session.h"

#define KVS_PROGRESS_AFTER_S 2.0

typedef struct kvs_tty_progress {
    kvq_progress p;
    const char *cmd;   // static label: "info", "quantize"
    double t0, last;   // start and last print (kvq_now_s)
    bool on, shown;    // on: stderr is a terminal; shown: a line is up
} kvs_tty_progress;

// Returns the kvq_progress to hand to the engine (never NULL); it never
// cancels. cmd must outlive tp.
kvq_progress *kvs_tty_progress_begin(kvs_tty_progress *tp, const kvs_session *s, const char *cmd);
// Erases the line if one was shown.
void kvs_tty_progress_end(kvs_tty_progress *tp);
// The text of one line: "info: 43% layer 14/32, 12 s elapsed, about 16 s left".
void kvs_progress_format(char *buf, size_t n, const char *cmd, double fraction, const char *stage,
                         double elapsed_s, double eta_s);
#endif
