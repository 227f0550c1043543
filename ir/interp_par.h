/* interp_par.h: the host threads of the reference interpreter (ir/interp_par.c), shared by its
 * matrix product (interp_gemm.c) and its row-wise ops (interp.c). Private to ir/ (and deitc run's
 * weight initialization). */
#ifndef DEITC_IR_INTERP_PAR_H
#define DEITC_IR_INTERP_PAR_H

#include <stdint.h>

/* Threads to use: ir_gemm_f64_set_threads's count, else DEITC_GEMM_THREADS, else the online
 * CPUs; 1 to 16. */
int ir_host_threads(void);
void ir_host_threads_set(int n);

/* Runs fn(arg) on nt threads at once (the caller being one of them) and waits for all. */
void ir_par_run(int nt, void *(*fn)(void *), void *arg);

/* fn(ctx, lo, hi) over [0, n) cut into contiguous ranges of at least `grain` items (a few per
 * thread), taken in turn by ir_host_threads() threads (one range, on the calling thread, when
 * n < 2 * grain). The ranges only decide
 * which thread computes which items: fn must compute each item the same way wherever it lies,
 * so the result never depends on the thread count. */
void ir_par_for(int64_t n, int64_t grain, void (*fn)(void *ctx, int64_t lo, int64_t hi), void *ctx);

/* Tests: every parallel for in ranges of `grain` items, whatever it asks for, and every matrix
 * product on all the threads however small (0: back to normal). */
void ir_par_force_grain(int64_t grain);
int64_t ir_par_forced_grain(void);

#endif
