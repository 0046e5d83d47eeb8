// artifacts_impl.h — private layout shared by artifacts.c and artifacts_io.c.
#ifndef KVQ_ARTIFACTS_IMPL_H
#define KVQ_ARTIFACTS_IMPL_H
#include <stddef.h>
#include <stdint.h>
#define KVQ_ART_MAX_DIMS 8
typedef struct {
    char *name;
    float *data;
    int ndim;
    int64_t shape[KVQ_ART_MAX_DIMS];
    size_t nelem;
} kvq_art_tensor;
struct kvq_artifacts {
    int n;
    kvq_art_tensor *t;
    int n_meta;
    char **meta_keys, **meta_vals;
};
#endif
