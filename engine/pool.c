// pool.c — persistent worker threads for kvq_parallel_for (contract in pool.h).
// One job at a time: a caller that finds the pool taken runs its tasks
// inline, so nested or concurrent calls cost parallelism, never correctness.
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include "kvq.h"
#include "pool.h"

// Worker stacks: kernels keep scratch on the stack (TQ_CHUNK rows, attention
// blocks), a few hundred KB at most.
#define POOL_STACK_BYTES (4u << 20)
// A worker that finishes a job polls for the next one this long before it
// sleeps, and a caller whose tasks are all taken polls this long for the
// workers still inside one before it sleeps: a futex sleep + wake costs
// 10-20 us each way on a KVM guest, and a worker that starts late takes
// fewer of the job's tasks, so back-to-back jobs of ~1 ms (one decode
// step's attention per layer) lost a task's worth of balance every call.
// ggml's threadpool polls the same way (poll level 50, some ms).
#define POOL_SPIN_S 100e-6

static atomic_int g_set;   // kvq_threads_set value, 0 = env/default

static struct {
    pthread_mutex_t mu;      // guards everything below but the job counters
    pthread_cond_t wake, done;
    pthread_t tid[KVQ_MAX_THREADS];
    int n_workers;           // started
    int want;                // workers the current job may use
    atomic_ulong gen;        // job generation: workers wait for it to change
    bool stop;
    // the job
    kvq_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next;         // next task to take
    atomic_int active;       // workers inside the current job (changed under mu)
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
       .done = PTHREAD_COND_INITIALIZER};

static pthread_mutex_t g_busy = PTHREAD_MUTEX_INITIALIZER;   // one job at a time

int kvq_threads(void)
{
    int n = atomic_load(&g_set);
    if (n <= 0) {
        const char *e = getenv("KVQ_THREADS");
        n = e ? atoi(e) : 1;
    }
    if (n < 1) n = 1;
    return n > KVQ_MAX_THREADS ? KVQ_MAX_THREADS : n;
}

void kvq_threads_set(int n) { atomic_store(&g_set, n > 0 ? n : 0); }

static void run_tasks(void)
{
    for (;;) {
        int t = atomic_fetch_add(&P.next, 1);
        if (t >= P.n_tasks) return;
        P.fn(P.ctx, t);
    }
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Polls until *v != old or POOL_SPIN_S passed; the caller then takes the
// mutex and checks properly (the poll only saves the sleep).
static void spin_while_ulong(atomic_ulong *v, unsigned long old)
{
    double t0 = kvq_now_s();
    for (int i = 1; atomic_load_explicit(v, memory_order_relaxed) == old; i++) {
        cpu_relax();
        if (i % 64 == 0 && kvq_now_s() - t0 > POOL_SPIN_S) return;
    }
}

static void spin_while_busy(atomic_int *v)
{
    double t0 = kvq_now_s();
    for (int i = 1; atomic_load_explicit(v, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if (i % 64 == 0 && kvq_now_s() - t0 > POOL_SPIN_S) return;
    }
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        while (!P.stop && (atomic_load(&P.gen) == seen || id >= P.want)) {
            if (atomic_load(&P.gen) != seen) seen = atomic_load(&P.gen);   // a job not meant for this worker
            else pthread_cond_wait(&P.wake, &P.mu);
        }
        if (P.stop) break;
        seen = atomic_load(&P.gen);
        atomic_fetch_add(&P.active, 1);
        pthread_mutex_unlock(&P.mu);
        run_tasks();
        pthread_mutex_lock(&P.mu);
        if (atomic_fetch_sub(&P.active, 1) == 1) pthread_cond_broadcast(&P.done);
        pthread_mutex_unlock(&P.mu);
        spin_while_ulong(&P.gen, seen);
        pthread_mutex_lock(&P.mu);
    }
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

// Called with g_busy held. Returns the workers available (may be fewer).
static int ensure_workers(int n)
{
    pthread_mutex_lock(&P.mu);
    if (P.n_workers < n) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setstacksize(&at, POOL_STACK_BYTES);
        while (P.n_workers < n &&
               pthread_create(&P.tid[P.n_workers], &at, worker, (void *)(intptr_t)P.n_workers) == 0)
            P.n_workers++;
        pthread_attr_destroy(&at);
    }
    int have = P.n_workers < n ? P.n_workers : n;
    pthread_mutex_unlock(&P.mu);
    return have;
}

void kvq_parallel_for(int n_tasks, kvq_task_fn fn, void *ctx)
{
    if (n_tasks <= 0) return;
    int nt = kvq_threads();
    int workers = (nt < n_tasks ? nt : n_tasks) - 1;
    if (workers <= 0 || pthread_mutex_trylock(&g_busy) != 0) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t);
        return;
    }
    workers = ensure_workers(workers);
    pthread_mutex_lock(&P.mu);
    P.fn = fn;
    P.ctx = ctx;
    P.n_tasks = n_tasks;
    atomic_store(&P.next, 0);
    P.want = workers;
    atomic_fetch_add(&P.gen, 1);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mu);
    run_tasks();
    // Every task is taken; wait for workers still inside one. A worker that
    // wakes late finds the counter exhausted and leaves at once.
    spin_while_busy(&P.active);
    pthread_mutex_lock(&P.mu);
    while (atomic_load(&P.active) > 0) pthread_cond_wait(&P.done, &P.mu);
    P.want = 0;
    pthread_mutex_unlock(&P.mu);
    pthread_mutex_unlock(&g_busy);
}

void kvq_threads_shutdown(void)
{
    pthread_mutex_lock(&g_busy);
    pthread_mutex_lock(&P.mu);
    P.stop = true;
    pthread_cond_broadcast(&P.wake);
    int n = P.n_workers;
    pthread_mutex_unlock(&P.mu);
    for (int i = 0; i < n; i++) pthread_join(P.tid[i], NULL);
    pthread_mutex_lock(&P.mu);
    P.n_workers = 0;
    P.stop = false;
    pthread_mutex_unlock(&P.mu);
    pthread_mutex_unlock(&g_busy);
}

// ---- parallel encode / decode ----
typedef struct par_codec {
    const kvq_quantizer *q;
    const float *x;
    float *y;
    const uint8_t *cin;
    uint8_t *cout;
    size_t n, blk;
} par_codec;

static void enc_task(void *u, int t)
{
    const par_codec *p = u;
    size_t i0 = (size_t)t * p->blk, k = p->n - i0 < p->blk ? p->n - i0 : p->blk;
    p->q->m->encode(p->q->plan, p->x + i0 * (size_t)p->q->head_dim, k, p->cout + i0 * p->q->bpv);
}

static void dec_task(void *u, int t)
{
    const par_codec *p = u;
    size_t i0 = (size_t)t * p->blk, k = p->n - i0 < p->blk ? p->n - i0 : p->blk;
    p->q->m->decode(p->q->plan, p->cin + i0 * p->q->bpv, k, p->y + i0 * (size_t)p->q->head_dim);
}

static size_t par_block(const kvq_quantizer *q)
{
    size_t g = q->group ? q->group : 1;
    return (KVQ_PAR_BLOCK + g - 1) / g * g;
}

void kvq_encode_parallel(const kvq_quantizer *q, const float *x, size_t n, uint8_t *codes)
{
    par_codec p = {.q = q, .x = x, .cout = codes, .n = n, .blk = par_block(q)};
    kvq_parallel_for((int)((n + p.blk - 1) / p.blk), enc_task, &p);
}

void kvq_decode_parallel(const kvq_quantizer *q, const uint8_t *codes, size_t n, float *x)
{
    par_codec p = {.q = q, .y = x, .cin = codes, .n = n, .blk = par_block(q)};
    kvq_parallel_for((int)((n + p.blk - 1) / p.blk), dec_task, &p);
}

int kvq_blas_threads_set(int n)
{
    const int was = openblas_get_num_threads();
    openblas_set_num_threads(n);
    return was;
}
