// label.h — what a run is called: one label function used by history rows,
// plot legends, exports and the benchmark/ppl/generate headers, so the label
// always says what ran and two different configurations never share one.
#ifndef KVQ_LABEL_H
#define KVQ_LABEL_H
#include <stddef.h>
#include "kvq.h"

// Short content id of loaded artifacts: 8 hex digits of a 64-bit FNV-1a over
// the tensor names, shapes, data and the "method" metadata; "" for NULL.
void kvq_artifacts_id(const kvq_artifacts *a, char *buf, size_t n);

// "<method> k<bits>/v<value_bits>" (v16 = fp16 values); with a bit allocation
// "<method> k<mean>/v<vb> alloc 1/2/3/3/3/3"; then every other config field
// that differs from kvq_config_default as " field=value" (value_method,
// outlier_channels, sink_tokens, sliding_window, ...), and " art=<id>" when
// art_id is non-empty and the key or value method reads artifacts
// (needs_calibration; the id then replaces the artifact paths). Fits in n (truncated
// with "..." when n is too small). Returns buf.
const char *kvq_config_label(const kvq_config *c, const char *art_id, char *buf, size_t n);

// Fixed-width methods (min_bits == max_bits in the traits table) take their
// width when bits was not given; a given width that conflicts is an error.
// Other methods get bits clamped into their range when not given. *changed
// (optional) says whether c->bits moved. NULL when fine, else a message.
const char *kvq_config_fit_bits(kvq_config *c, bool bits_given, bool *changed);
#endif
