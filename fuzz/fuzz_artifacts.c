// fuzz_artifacts.c — kvq_artifacts_load on an arbitrary manifest.json and
// artifacts.safetensors (input split by fuzz_split) in a temp directory.
// What loads must agree with itself: every tensor named, found, and its
// shape consistent with its element count.
#include "fuzz_util.h"
#include "artifacts.h"

static volatile float sink;   // keeps the reads

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *man, *ten;
    size_t nman, nten;
    fuzz_split(data, size, &man, &nman, &ten, &nten);
    const char *dir = fuzz_tmpdir();
    char p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/manifest.json", dir);
    snprintf(p2, sizeof p2, "%s/artifacts.safetensors", dir);
    fuzz_write(p1, man, nman);
    fuzz_write(p2, ten, nten);
    kvq_artifacts *a = NULL;
    if (kvq_artifacts_load(dir, &a) == KVQ_OK) {
        if (!kvq_artifacts_meta(a, "method") || !kvq_artifacts_meta(a, "version")) abort();
        for (int i = 0; i < kvq_artifacts_count(a); i++) {
            const char *name = kvq_artifacts_name(a, i);
            int nd = 0;
            int64_t sh[16];
            const float *x = kvq_artifacts_get(a, name, &nd, sh);
            if (!x) abort();
            size_t n = 1;
            for (int d = 0; d < nd; d++) n *= (size_t)sh[d];
            for (size_t j = 0; j < n; j++) sink += x[j];   // every element readable
            const float *y = NULL;
            if (kvq_artifacts_require(a, name, nd, sh, &y) != KVQ_OK || y != x) abort();
        }
        kvq_artifacts_free(a);
    } else if (a) {
        abort();
    }
    unlink(p1);
    unlink(p2);
    return 0;
}
