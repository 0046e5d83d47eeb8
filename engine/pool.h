// pool.h — a small persistent pthread pool that splits engine work (heads,
// token blocks, encode chunks) over threads. The engine uses it only where
// the result does not depend on the thread count: work is cut into tasks
// by the data size alone, and each task writes its own output, so 1 and N
// threads give bit-identical results.
//
// Thread count: kvq_threads_set(n) (n >= 1); 0 or never set = the env var
// KVQ_THREADS, else 1 (determinism and no surprise CPU use in tests).
// Workers are started lazily on the first parallel call with more than one
// thread and live until kvq_threads_shutdown() (or process exit).
#ifndef KVQ_POOL_H
#define KVQ_POOL_H
#include <stddef.h>
#include <stdint.h>

#define KVQ_MAX_THREADS 64

// Threads the next parallel call may use (>= 1, <= KVQ_MAX_THREADS).
int kvq_threads(void);
// n >= 1 fixes the count; n <= 0 returns to KVQ_THREADS / 1. Thread-safe.
void kvq_threads_set(int n);
// Sets OpenBLAS's own thread count and returns the one it had, for work
// that is parallel on this pool and calls BLAS from every task (OpenBLAS's
// workers would spin in sched_yield beside ours, and its thread split moves
// the last bits of a sum): `int was = kvq_blas_threads_set(1); ...;
// kvq_blas_threads_set(was);`. Not thread-safe against another caller.
int kvq_blas_threads_set(int n);
// Stops and joins the workers (tests and valgrind runs); a later parallel
// call starts them again.
void kvq_threads_shutdown(void);

// fn(ctx, t) for every t in [0, n_tasks): the caller runs tasks too and
// returns when all are done. Tasks are taken in increasing order from a
// shared counter. If the pool is busy (another thread's call, or a call
// from inside a task) or cannot start, the tasks run inline on the caller:
// never a deadlock, never a failure. fn must not longjmp out.
typedef void (*kvq_task_fn)(void *ctx, int task);
void kvq_parallel_for(int n_tasks, kvq_task_fn fn, void *ctx);

// A quantizer's encode / decode of n vectors split over the pool in blocks
// of KVQ_PAR_BLOCK vectors (rounded to the method's group). Plans may be used
// from several threads at once (kvq.h), records are independent, so the
// output is the same bytes as one q->m->encode / decode call.
// x: (n, head_dim) row-major; codes: (n, q->bpv).
#define KVQ_PAR_BLOCK 512
struct kvq_quantizer;
void kvq_encode_parallel(const struct kvq_quantizer *q, const float *x, size_t n, uint8_t *codes);
void kvq_decode_parallel(const struct kvq_quantizer *q, const uint8_t *codes, size_t n, float *x);
#endif
