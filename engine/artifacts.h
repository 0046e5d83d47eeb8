// artifacts.h — calibration artifacts: named F32 tensors plus string
// metadata (method, trace shape, options, version). On disk: a directory with
// artifacts.safetensors and manifest.json, both written atomically.
// Tensor naming: "<method>.<what>[.l<layer>][.h<kv_head>]", e.g.
// "rabitq.centroids.l0.h1" (num_clusters, head_dim).
#ifndef KVQ_ARTIFACTS_H
#define KVQ_ARTIFACTS_H
#include <stdint.h>
#include "kvq.h"

kvq_status kvq_artifacts_new(kvq_artifacts **out);
void kvq_artifacts_free(kvq_artifacts *a);
// Copies data. Replaces a tensor of the same name.
kvq_status kvq_artifacts_put(kvq_artifacts *a, const char *name, const float *data, int ndim,
                             const int64_t *shape);
// Pointer owned by a; NULL (and no error set) when absent.
const float *kvq_artifacts_get(const kvq_artifacts *a, const char *name, int *ndim, int64_t *shape);
// Like get, but a missing tensor or a shape other than `shape` (ndim dims) is
// KVQ_ERR_NEEDS_CALIBRATION / KVQ_ERR_SHAPE with a message naming it.
kvq_status kvq_artifacts_require(const kvq_artifacts *a, const char *name, int ndim,
                                 const int64_t *shape, const float **data);
kvq_status kvq_artifacts_set_meta(kvq_artifacts *a, const char *key, const char *value);
const char *kvq_artifacts_meta(const kvq_artifacts *a, const char *key);   // NULL when absent
int kvq_artifacts_count(const kvq_artifacts *a);
const char *kvq_artifacts_name(const kvq_artifacts *a, int i);

kvq_status kvq_artifacts_save(const kvq_artifacts *a, const char *dir);
// Loads and checks (kvq_artifacts_check): what loads is safe to plan with.
kvq_status kvq_artifacts_load(const char *dir, kvq_artifacts **out);
// Every tensor named after a calibrated method ("ratequant.", "vecinfer.",
// "spectral.", "rabitq.", "commvq.") against the shape calib/calib.h gives
// it for the metadata's trace.layers / kv_heads / head_dim (which must then
// be integers in range; per-stream names l<L>.h<H> inside them), and its
// values against what the plans' math takes: integer bits 1..8, unit
// eigenvectors, eigenvalues >= 0, |x| <= 1e9 elsewhere, curve slopes
// |beta| <= 10. KVQ_ERR_SHAPE / KVQ_ERR_FORMAT naming `where` (a file) and
// the tensor. Other tensor names pass unchecked.
kvq_status kvq_artifacts_check(const kvq_artifacts *a, const char *where);
#endif
