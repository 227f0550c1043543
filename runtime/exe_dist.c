/* exe_dist.c: `EXE allreduce`: times the data-parallel gradient all-reduce alone (every bucket
 * of the plan's gradients averaged once, back to back, --steps times after one warm-up), on
 * NCCL for a cuda plan, over the TCP star on emu. It runs with the launcher's ranks, or alone as
 * a world of one (what benchmarks/gpu_check does on one GPU: the NCCL path loads and runs;
 * the time is NCCL's own overhead, no link is crossed). Prints one line for people and one JSON
 * line: {"ranks", "buckets", "bytes", "median_ms", "min_ms", "algbw_gbs"}.
 */
#include "runtime/dist.h"
#include "runtime/exe_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int rt_exe_cmd_allreduce(const exe_args *a, const rt_plan *p) {
    session s;
    memset(&s, 0, sizeof s);
    rt_dist *dist = NULL;
    double *ms = NULL;
    int rc = 1, rank = 0, world = 1;
    char err[1200];
    setenv("DEITC_DIST", "1", 0); /* a world of one too */
    if (rt_exe_dist_start(&dist, &rank, &world)) goto done;
    if (rt_exe_session_open(&s, p, 1) || rt_exe_load_weights(&s, a->init, a->partial_init, a->seed)) goto done;
    if (rt_dist_attach(dist, s.dev, a->bucket_mb, err, sizeof err)) {
        rt_exe_error("data parallel (rank %d of %d): %s", rank, world, err);
        goto done;
    }
    long reps = a->has_steps ? a->steps : 20;
    ms = malloc(sizeof(double) * (size_t)(reps + 1));
    if (!ms) abort();
    for (long i = -1; i < reps; i++) { /* i == -1: the warm-up */
        double t0 = rt_exe_now_s();
        if (rt_dist_allreduce_all(dist)) {
            rt_exe_error("all-reduce: %s", s.dev->err[0] ? s.dev->err : rt_dist_error(dist));
            goto done;
        }
        if (i >= 0) ms[i] = (rt_exe_now_s() - t0) * 1e3;
    }
    qsort(ms, (size_t)reps, sizeof *ms, cmp_double);
    double med = ms[reps / 2], bytes = (double)rt_dist_grad_bytes(dist);
    if (!rank) {
        printf("allreduce: %d rank%s on %s, %d buckets (--bucket-mb %g), %.2f MiB of gradients: median %.3f ms, "
               "min %.3f ms over %ld (%.1f GB/s algorithm bandwidth)\n", world, world == 1 ? "" : "s", s.dev->name,
               rt_dist_bucket_count(dist), a->bucket_mb, bytes / 1048576.0, med, ms[0], reps,
               bytes / (med > 0 ? med * 1e-3 : 1e-12) / 1e9);
        printf("{\"ranks\":%d,\"buckets\":%d,\"bytes\":%.0f,\"median_ms\":", world, rt_dist_bucket_count(dist), bytes);
        rt_exe_json_num(stdout, med);
        printf(",\"min_ms\":");
        rt_exe_json_num(stdout, ms[0]);
        printf(",\"algbw_gbs\":");
        rt_exe_json_num(stdout, bytes / (med > 0 ? med * 1e-3 : 1e-12) / 1e9);
        printf("}\n");
    }
    rc = 0;
done:
    rt_dist_close(dist);
    free(ms);
    rt_exe_session_free(&s);
    return rc;
}
