// calib/kmeans.h — Lloyd k-means shared by every calibration that needs
// centroids (RaBitQ IVF, CommVQ codebook init, VecInfer product VQ).
//
// k-means++ seeding (D^2 sampling, on at most KVQ_KMEANS_SEED_PPC rows per
// centroid, KVQ_KMEANS_SEED_MIN at least), squared distances |x|^2 + |c|^2 - 2 x.c
// through one cblas_sgemm per chunk of rows, empty clusters re-seeded with
// the point farthest from its centroid, deterministic for a given seed.
// Above k * max_points_per_centroid rows, seeding and Lloyd run on that many
// rows drawn with the seeded RNG and only the final assignment sees them all
// (FAISS's Clustering.cpp does the same with 256 per centroid:
// faiss/Clustering.cpp at facebookresearch/faiss@f4f7b9b5368b).
// From k = 16 to 1024 Hamerly's bounds skip the rows that cannot change
// centroid, and for k = 64..256 at d <= KVQ_KMEANS_SMALL_D most of the
// others scan only a neighbour list of their centroid (kmeans.c). The argmin scans centroids in index order on one thread, so results do not
// depend on the thread count. Calibration code may allocate (not a kernel).
#ifndef KVQ_KMEANS_H
#define KVQ_KMEANS_H
#include <stddef.h>
#include <stdint.h>
#include "kvq.h"

#define KVQ_KMEANS_MAX_PPC 256   // FAISS's default max_points_per_centroid
#define KVQ_KMEANS_SEED_PPC 16   // k-means++ draws from at most max(k x this, SEED_MIN)
#define KVQ_KMEANS_SEED_MIN 4096 // of the training rows (a seeded subset; all rows below)

typedef struct kvq_kmeans_opts {
    int k;                  // clusters, 1..n
    int max_iter;           // Lloyd iterations (assign + update), >= 1
    double tol;             // stop when relative inertia drop < tol (0 = run max_iter
                            // or until assignments stop changing)
    uint64_t seed;          // seeding stream; same seed + same input => same result
    int max_points_per_centroid; // train on at most k * this many rows, drawn with the
                            // seeded RNG (0 = KVQ_KMEANS_MAX_PPC, < 0 = every row)
    kvq_progress *progress; // optional: fraction = iteration / max_iter, stage "kmeans"
} kvq_kmeans_opts;

typedef struct kvq_kmeans_result {
    int k, d;
    float *centroids;   // (k, d) row-major, owned
    int32_t *assign;    // (n) cluster of each input row, owned
    double *inertia;    // (n_iter) sum over the training rows (all n, or the
                        // n_train sampled) of |x - c_assign|^2 after each
                        // iteration's assignment step; non-increasing; owned
    size_t n_train;     // rows seeding and Lloyd ran on (n, or k * max_points_per_centroid)
    int n_iter;         // iterations run (<= max_iter)
    int n_reseeded;     // empty clusters re-seeded over the whole run
} kvq_kmeans_result;

// x: (n, d) row-major. On success fills *r (free with kvq_kmeans_result_free).
// KVQ_ERR_ARG for k outside 1..n or bad d/max_iter, KVQ_ERR_NONFINITE for a
// non-finite input, KVQ_ERR_CANCELLED when progress asked to stop (r left empty).
kvq_status kvq_kmeans(const float *x, size_t n, int d, const kvq_kmeans_opts *o,
                      kvq_kmeans_result *r);
void kvq_kmeans_result_free(kvq_kmeans_result *r);
// The spec kvq_kmeans is checked against (tests/test_kmeans.c): the same
// seeding, sample, Lloyd loop and re-seeding, with every distance of the
// assignment step exact in double (n x k x d scalar work: small inputs only).
kvq_status kvq_kmeans_reference(const float *x, size_t n, int d, const kvq_kmeans_opts *o,
                                kvq_kmeans_result *r);

// dist (n, k) = squared Euclidean distances between rows of x (n, d) and c (k, d),
// computed as |x|^2 + |c|^2 - 2 x c^T with cblas_sgemm, clamped at 0.
// xnorm (n) and cnorm (k) are the squared row norms (caller computes them once).
void kvq_kmeans_sqdist(const float *x, const float *xnorm, size_t n, const float *c,
                       const float *cnorm, int k, int d, float *dist);

// Index of the smallest row[j] + cnorm[j] over j < k (ties to the lower
// index), its value in *best: the argmin of the assignment step (AVX2 when
// kvq_simd_avx2(), else the scalar loop; both pick the same index).
int kvq_kmeans_argmin(const float *row, const float *cnorm, int k, float *best);

// kvq_kmeans_argmin plus the second smallest value in *second (+inf for k = 1).
int kvq_kmeans_argmin2(const float *row, const float *cnorm, int k, float *best, float *second);

// Up to this many dimensions the assignment step scores centroids with
// kvq_kmeans_scores_small instead of cblas_sgemm: at d = 4 (vecinfer's
// subspaces) an sgemm's packing costs more than its 4 multiply-adds per
// (row, centroid).
#define KVQ_KMEANS_SMALL_D 8
// out (m, k) = -2 x c^T for x: (m, d), ct: (d, k) the centroids transposed,
// d <= KVQ_KMEANS_SMALL_D (any d for the _ref). Each entry is
// sum_t (-2 x_t) c_t in t order, products and sums rounded in float: the
// AVX2 path and the scalar _ref give the same bits.
void kvq_kmeans_scores_small(const float *x, size_t m, int d, const float *ct, int k, float *out);
void kvq_kmeans_scores_small_ref(const float *x, size_t m, int d, const float *ct, int k, float *out);

// kvq_kmeans_argmin2 of the row kvq_kmeans_scores_small would give for the
// one point x: (d), computed without writing it (the same values, so the same
// picks, AVX2 or scalar). ct: (d, k).
int kvq_kmeans_argmin2_small(const float *x, int d, const float *ct, const float *cnorm, int k, float *best,
                             float *second);

// kvq_kmeans_argmin2_small over the first k columns of ct: (d, ld), ld >= k
// (a centroid's neighbour list in kmeans.c); the _ref is the scalar loop.
int kvq_kmeans_argmin2_small_ld(const float *x, int d, const float *ct, int ld, const float *cnorm, int k,
                                float *best, float *second);
int kvq_kmeans_argmin2_small_ld_ref(const float *x, int d, const float *ct, int ld, const float *cnorm, int k,
                                    float *best, float *second);

// Nearest centroid of each row (ties to the lower index); optional best
// squared distance per row. Allocates a temporary (256, k) block.
kvq_status kvq_kmeans_assign(const float *x, size_t n, const float *c, int k, int d,
                             int32_t *assign, float *best);
#endif
