/* interp_par.c: the reference interpreter's host threads: how many (DEITC_GEMM_THREADS, else
 * the online CPUs, at most 16, as the emu target's GEMM counts them), running one function on
 * several threads, and a parallel for over contiguous ranges. Threads are started per call and
 * joined before it returns: the interpreter keeps no threads between ops. */
#include "ir/interp_par.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

enum { MAX_THREADS = 16 };

static int threads; /* 0: not decided yet */

static int clamp_threads(long n) { return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n; }

void ir_host_threads_set(int n) { threads = clamp_threads(n); }

int ir_host_threads(void) {
    if (threads > 0) return threads;
    const char *env = getenv("DEITC_GEMM_THREADS");
    threads = clamp_threads(env && *env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN));
    return threads;
}

void ir_par_run(int nt, void *(*fn)(void *), void *arg) {
    pthread_t th[MAX_THREADS];
    int started = 0;
    for (int t = 1; t < nt && t < MAX_THREADS; t++) /* a thread that fails to start: fewer do the work */
        if (pthread_create(&th[started], NULL, fn, arg) == 0) started++;
    fn(arg);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
}

typedef struct {
    void (*fn)(void *ctx, int64_t lo, int64_t hi);
    void *ctx;
    int64_t n, chunk;
    int ranges;
    int next; /* the next range to take, under lock */
    pthread_mutex_t lock;
} par_job;

static void *par_worker(void *arg) {
    par_job *job = arg;
    for (;;) {
        pthread_mutex_lock(&job->lock);
        int r = job->next < job->ranges ? job->next++ : -1;
        pthread_mutex_unlock(&job->lock);
        if (r < 0) return NULL;
        int64_t lo = r * job->chunk, hi = lo + job->chunk < job->n ? lo + job->chunk : job->n;
        job->fn(job->ctx, lo, hi);
    }
}

static int64_t forced_grain;

void ir_par_force_grain(int64_t grain) { forced_grain = grain > 0 ? grain : 0; }

int64_t ir_par_forced_grain(void) { return forced_grain; }

void ir_par_for(int64_t n, int64_t grain, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx) {
    if (n <= 0) return;
    if (forced_grain) grain = forced_grain;
    if (grain < 1) grain = 1;
    int64_t nt = ir_host_threads(), ranges = n / grain;
    if (nt > ranges) nt = ranges;
    if (nt <= 1) {
        fn(ctx, 0, n);
        return;
    }
    if (ranges > 4 * nt) ranges = 4 * nt; /* a few each: a thread the machine holds back delays less */
    par_job job = {fn, ctx, n, (n + ranges - 1) / ranges, 0, 0, PTHREAD_MUTEX_INITIALIZER};
    job.ranges = (int)((n + job.chunk - 1) / job.chunk);
    ir_par_run((int)nt, par_worker, &job);
    pthread_mutex_destroy(&job.lock);
}
