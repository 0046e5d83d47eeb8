// fuzz_artifacts.c — kvq_artifacts_load on an arbitrary manifest.json and
// artifacts.safetensors (input split by fuzz_split) in a temp directory,
// then every calibrated method's plan built from what loaded.
// What loads must agree with itself: every tensor named, found, and its
// shape consistent with its element count. And what loads must be safe to
// plan with (issue 17: the load-time shape/range check): each calibrated
// method's quantizer for the first layers and heads of the manifest's trace
// shape either fails with a status or encodes, decodes and scores one vector
// without a memory error (ASan/UBSan).
#include "fuzz_util.h"
#include "artifacts.h"
#include "methods/methods.h"

static volatile float sink;   // keeps the reads

static int meta_int(const kvq_artifacts *a, const char *key)
{
    const char *v = kvq_artifacts_meta(a, key);
    return v ? atoi(v) : 0;
}

// Plans of every calibrated method on a (loaded, so checked) artifacts set.
static void plan_all(const kvq_artifacts *a)
{
    int L = meta_int(a, "trace.layers"), H = meta_int(a, "trace.kv_heads"), d = meta_int(a, "trace.head_dim");
    if (L < 1 || H < 1 || d < 1 || d > KVQ_MAX_HEAD_DIM) return;
    kvq_config cfg;
    kvq_config_default(&cfg);
    int nd;
    int64_t sh[8];
    if (kvq_artifacts_get(a, "rabitq.centroids.l0.h0", &nd, sh) && nd == 2) cfg.num_clusters = (int)sh[0];
    float x[KVQ_MAX_HEAD_DIM], score;
    for (int i = 0; i < d; i++) x[i] = (float)((i * 7) % 11 - 5) / 4;
    for (int m = 0; m < kvq_n_methods; m++) {
        const kvq_method *me = &kvq_methods[m];
        if (!me->needs_calibration) continue;
        for (int l = 0; l < L && l < 2; l++)
            for (int h = 0; h < H && h < 2; h++)
                for (int b = me->min_bits; b <= me->max_bits; b += 2) {
                    kvq_plan_params pp = {.bits = b, .head_dim = d, .layer = l, .kv_head = h, .cfg = &cfg, .art = a};
                    kvq_quantizer q;
                    if (kvq_quantizer_init(&q, me->name, &pp) != KVQ_OK) continue;
                    uint8_t *codes = calloc(1, q.bpv * q.group + 1);
                    float *xs = malloc(sizeof(float) * (size_t)d * q.group);
                    float *ys = malloc(sizeof(float) * (size_t)d * q.group);
                    void *qs = calloc(1, q.qbytes + 1);
                    if (!codes || !xs || !ys || !qs) abort();
                    for (size_t g = 0; g < q.group; g++) memcpy(xs + g * (size_t)d, x, sizeof(float) * (size_t)d);
                    me->encode(q.plan, xs, q.group, codes);
                    me->decode(q.plan, codes, q.group, ys);
                    me->prepare_query(q.plan, x, qs);
                    me->score(q.plan, qs, codes, 1, &score);
                    sink += ys[0] + score;
                    free(codes);
                    free(xs);
                    free(ys);
                    free(qs);
                    kvq_quantizer_free(&q);
                }
    }
}

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
        if (kvq_artifacts_check(a, "reloaded") != KVQ_OK) abort();   // load ran the same check
        plan_all(a);
        kvq_artifacts_free(a);
    } else if (a) {
        abort();
    }
    unlink(p1);
    unlink(p2);
    return 0;
}
