/* exe_eval_bench.c: the commands that measure and describe: `EXE eval` (loss and accuracy over a
 * dataset, forward steps only), `EXE bench` (the step timed on synthetic data: device events on
 * cuda, wall clock on emu; --profile times each plan step alone) and `EXE info` (what the plan
 * holds).
 */
#include "runtime/dist.h"
#include "runtime/exe_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- eval ---------------------------------------------------------------------------------- */

/* Runs the plan's forward steps only (through logits and loss: rt_device_run_forward) over the
 * data set: the weights and the optimizer state stay as loaded. */
int rt_exe_cmd_eval(const exe_args *a, const rt_plan *p) {
    rt_dataset ds;
    memset(&ds, 0, sizeof ds);
    session s;
    memset(&s, 0, sizeof s);
    int rc = 1;
    rt_dist *dist = NULL; /* data parallel: rank r evaluates images r, r + world, ...; counts summed */
    int rank = 0, world = 1;
    if (rt_exe_dist_start(&dist, &rank, &world)) goto done;
    if (rt_exe_load_data(a, p, &ds)) goto done;
    if (ds.n == 0) {
        rt_exe_error("%s: the dataset has no images", a->data);
        goto done;
    }
    if (rt_exe_session_open(&s, p, 1) || rt_exe_load_weights(&s, a->init, a->partial_init, a->seed)) goto done;
    int64_t n = world > 1 ? (ds.n - rank + world - 1) / world : ds.n; /* this rank's images */
    if (!s.logits && n < p->batch && world == 1) {
        rt_exe_error("%s: the dataset has %lld images, fewer than the batch size %lld (and the plan has no logits "
                     "output to evaluate a partial batch with)",
                     a->data, (long long)ds.n, (long long)p->batch);
        goto done;
    }
    /* every image, top-1 and top-5; without logits full batches by the loss (validate.c); on
     * several ranks each its shard */
    rt_exe_eval ev;
    double loss_sum = 0;
    if (rt_exe_evaluate_shard(&s, &ds, a, rank, world, s.logits ? RT_EXE_EVAL_LOGITS : RT_EXE_EVAL_LOSS, &ev,
                              &loss_sum))
        goto done;
    if (dist) { /* exact: counts summed, not averages of averages; the loss sums in rank order */
        int64_t counts[3] = {ev.n, ev.top1, ev.top5};
        if (rt_dist_sum_i64(dist, counts, 3) || rt_dist_sum_f64(dist, &loss_sum, 1)) {
            rt_exe_error("data parallel (rank %d of %d): %s", rank, world, rt_dist_error(dist));
            goto done;
        }
        ev.n = counts[0], ev.top1 = counts[1], ev.top5 = counts[2];
        ev.loss = ev.n ? loss_sum / (double)ev.n : NAN;
        if (rank) { /* rank 0 reports */
            rc = 0;
            goto done;
        }
    }
    if (!s.logits) {
        printf("eval: %lld images (full batches only), loss %.6f, accuracy unavailable (no logits output)\n",
               (long long)ev.n, ev.loss);
        printf("{\"images\":%lld,\"loss\":", (long long)ev.n);
        rt_exe_json_num(stdout, ev.loss);
        printf(",\"accuracy\":null}\n");
        rc = 0;
        goto done;
    }
    double dn = (double)(ev.n ? ev.n : 1);
    printf("eval: %lld images, loss %.6f, accuracy %.2f%%, top-5 %.2f%%\n", (long long)ev.n, ev.loss,
           100.0 * (double)ev.top1 / dn, 100.0 * (double)ev.top5 / dn);
    printf("{\"images\":%lld,\"loss\":", (long long)ev.n);
    rt_exe_json_num(stdout, ev.loss);
    printf(",\"accuracy\":");
    rt_exe_json_num(stdout, (double)ev.top1 / dn);
    printf(",\"top1\":%lld,\"top5\":%lld,\"top5_accuracy\":", (long long)ev.top1, (long long)ev.top5);
    rt_exe_json_num(stdout, (double)ev.top5 / dn);
    printf("}\n");
    rc = 0;
done:
    rt_dist_close(dist);
    rt_exe_session_free(&s);
    rt_dataset_free(&ds);
    return rc;
}

/* ---- bench --------------------------------------------------------------------------------- */

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double gemm_flops(const rt_plan *p) {
    double f = 0;
    for (int i = 0; i < p->num_steps; i++)
        if (p->steps[i].kind == RT_STEP_GEMM) {
            const rt_gemm *g = &p->steps[i].gemm;
            f += 2.0 * (double)g->m * (double)g->n * (double)g->k * (double)g->batch;
        }
    return f;
}

typedef struct {
    char name[96];    /* kernel name, GEMM shape, or "zero" */
    int kind, calls;
    double ms;
} profile_row;

static int cmp_row(const void *x, const void *y) {
    double a = ((const profile_row *)x)->ms, b = ((const profile_row *)y)->ms;
    return a > b ? -1 : a < b;
}

/* Runs `steps` more steps timing each plan step alone; prints where the time goes, grouped by
 * kernel (GEMMs by what they compute). */
static int profile(session *s, const exe_args *a, long steps) {
    const rt_plan *p = s->p;
    double *per = calloc((size_t)p->num_steps + 1, sizeof *per);
    profile_row *rows = calloc((size_t)p->num_steps + 1, sizeof *rows);
    if (!per || !rows) abort();
    s->dev->profile_ms = per;
    int rc = 0;
    rt_opt_run run;
    rt_exe_run_opt(a, p, &run);
    for (long i = 0; i < steps && !rc; i++)
        if (rt_exe_set_opt(s, rt_exe_base_lr(a, p), &run, i + 1) || rt_device_run(s->dev, 0))
            rc = rt_exe_error("%s", s->dev->err);
    s->dev->profile_ms = NULL;
    int n = 0;
    double total = 0;
    for (int i = 0; i < p->num_steps && !rc; i++) {
        const rt_plan_step *st = &p->steps[i];
        char name[96] = "zero";
        if (st->kind == RT_STEP_KERNEL) snprintf(name, sizeof name, "%s", p->kernel_names[st->kernel]);
        else if (st->kind == RT_STEP_GEMM)
            snprintf(name, sizeof name, "gemm m %lld n %lld k %lld batch %lld %s%s", (long long)st->gemm.m,
                     (long long)st->gemm.n, (long long)st->gemm.k, (long long)st->gemm.batch,
                     st->gemm.trans_a ? "T" : "N", st->gemm.trans_b ? "T" : "N");
        int r = 0;
        while (r < n && !(rows[r].kind == (int)st->kind && !strcmp(rows[r].name, name))) r++;
        if (r == n) {
            memcpy(rows[n].name, name, sizeof name);
            rows[n++].kind = (int)st->kind;
        }
        rows[r].calls++;
        rows[r].ms += per[i] / (double)steps;
        total += per[i] / (double)steps;
    }
    if (!rc) {
        qsort(rows, (size_t)n, sizeof *rows, cmp_row);
        double by_kind[3] = {0};
        for (int r = 0; r < n; r++) by_kind[rows[r].kind] += rows[r].ms;
        printf("profile (each plan step timed alone, mean of %ld steps): %.3f ms a step; kernels %.1f%%, GEMMs "
               "%.1f%%, zero fills %.1f%%\n",
               steps, total, 100 * by_kind[0] / (total > 0 ? total : 1), 100 * by_kind[1] / (total > 0 ? total : 1),
               100 * by_kind[2] / (total > 0 ? total : 1));
        printf("  %10s %6s %6s  %s\n", "ms/step", "%", "calls", "what");
        for (int r = 0; r < n; r++) /* every row: benchmarks/gpu_check sums the attention part from them */
            printf("  %10.3f %6.1f %6d  %s\n", rows[r].ms, 100 * rows[r].ms / (total > 0 ? total : 1), rows[r].calls,
                   rows[r].name);
    }
    free(per);
    free(rows);
    return rc;
}

int rt_exe_cmd_bench(const exe_args *a, const rt_plan *p) {
    rt_dataset ds;
    session s;
    memset(&s, 0, sizeof s);
    double *ms = NULL;
    int rc = 1;
    char err[1200];
    long steps = a->has_steps ? a->steps : 20, warm = a->bench_warmup;
    if (steps > 1000000 || warm > 1000000) /* the timings are kept; runs of this length measure nothing more */
        return rt_exe_error("bench times at most 1000000 steps after at most 1000000 warm-up steps (--steps %ld, "
                            "--warmup %ld)", steps, warm);
    exe_stream st; /* bench --data: each step takes its batch from the streaming loader (exe_data.c) */
    if (rt_exe_bench_stream_open(a, p, &st)) return 1;
    if (rt_dataset_synthetic(p, p->batch, a->seed, &ds, err, sizeof err)) {
        rt_exe_stream_free(&st);
        return rt_exe_error("%s", err);
    }
    if (rt_exe_session_open(&s, p, 1) || rt_exe_load_weights(&s, a->init, a->partial_init, a->seed)) goto done;
    if (st.on && (rt_exe_stage_open(&s) || rt_exe_stream_start(&st, &s, a, p, 1))) goto done; /* train's data path */
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)p->batch);
    if (!idx) abort();
    for (int64_t i = 0; i < p->batch; i++) idx[i] = i;
    int frc = rt_exe_fill_batch(&s, &ds, idx);
    free(idx);
    if (frc) goto done;
    ms = malloc(sizeof(double) * (size_t)steps);
    if (!ms) abort();
    /* start-up: device, libraries, cuBLASLt's algorithms, weights, the batch; then warm-up (the
     * first step eager, the second captured as a graph) and the timed steps, by the wall clock */
    double t_ready = rt_exe_now_s(), t_warm = t_ready;
    long syncs0 = s.dev->syncs; /* the timed steps' host synchronizations (timer_stop's included) */
    for (long i = 0; i < warm + steps; i++) {
        double t;
        if (i == warm) t_warm = rt_exe_now_s(), syncs0 = s.dev->syncs;
        double t0 = rt_exe_now_s();
        rt_opt_run run;
        rt_exe_run_opt(a, p, &run);
        if (rt_exe_stage_begin(&s) || (st.on && rt_exe_stream_batch(&s, &st)) ||
            rt_exe_set_opt(&s, rt_exe_base_lr(a, p), &run, i + 1) || rt_exe_stage_end(&s))
            goto done;
        if (s.dev->timer_start(s.dev) || rt_device_run(s.dev, a->use_graph && i > 0) || s.dev->timer_stop(s.dev, &t)) {
            rt_exe_error("%s", s.dev->err);
            goto done;
        }
        if (st.on) t = (rt_exe_now_s() - t0) * 1e3; /* the wall clock: the data path's time included */
        if (i >= warm) ms[i - warm] = t;
    }
    double syncs_per_step = (double)(s.dev->syncs - syncs0) / (double)steps;
    float loss;
    if (rt_exe_read_f32(&s, s.loss, 1, &loss)) goto done;
    double t_end = rt_exe_now_s();
    qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
    double med = steps % 2 ? ms[steps / 2] : 0.5 * (ms[steps / 2 - 1] + ms[steps / 2]);
    double ips = (double)p->batch * 1e3 / med, tflops = gemm_flops(p) / (med * 1e-3) / 1e12;
    int graph = a->use_graph && s.dev->capture_begin;
    printf("bench: %s on %s (%s), batch %lld, %ld steps after %ld warm-up%s\n",
           p->model_name ? p->model_name : "model", s.dev->name, s.dev->target, (long long)p->batch, steps, warm,
           graph ? ", CUDA Graph replay" : "");
    printf("  step time%s: median %.3f ms, min %.3f ms, max %.3f ms\n",
           st.on ? " (with the data path: batch, upload, step; wall clock)" : "", med, ms[0], ms[steps - 1]);
    if (st.on) printf("  data: the steps waited %.3f s in all for the loader's workers\n", rt_loader_wait_s(st.loader));
    printf("  host synchronizations: %.2f a step (the step timer's own included)\n", syncs_per_step);
    printf("  %.1f images/s, GEMMs %.2f TFLOP/s, device memory %.1f MiB, last loss %.4f\n", ips, tflops,
           (double)s.dev->mem_bytes / (1 << 20), loss);
    printf("  wall clock: start-up %.3f s, warm-up %.3f s, timed steps %.3f s\n", t_ready - rt_exe_t_main,
           t_warm - t_ready, t_end - t_warm);
    /* names escaped; a figure that is not finite (a step timed at 0 ms) is null, never inf */
    rt_strbuf js = {0};
    const char *names[4][2] = {{"bench", p->model_name ? p->model_name : ""}, {"target", s.dev->target},
                               {"device", s.dev->name}, {"precision", p->precision ? p->precision : ""}};
    for (int i = 0; i < 4; i++) {
        rt_sb_printf(&js, "%s\"%s\":", i ? "," : "{", names[i][0]);
        rt_sb_json_string(&js, names[i][1]);
    }
    rt_sb_printf(&js, ",\"batch\":%lld,\"steps\":%ld,\"graph\":%s", (long long)p->batch, steps,
                 graph ? "true" : "false");
    const struct {
        const char *key, *fmt;
        double v;
    } figures[] = {{"median_ms", "%.4f", med},     {"min_ms", "%.4f", ms[0]},         {"max_ms", "%.4f", ms[steps - 1]},
                   {"images_per_s", "%.2f", ips}, {"gemm_tflops", "%.3f", tflops}};
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
        rt_sb_printf(&js, ",\"%s\":", figures[i].key);
        if (isfinite(figures[i].v)) rt_sb_printf(&js, figures[i].fmt, figures[i].v);
        else rt_sb_puts(&js, "null");
    }
    rt_sb_printf(&js, ",\"device_mem_bytes\":%llu,\"arena_bytes\":%llu,\"startup_wall_ms\":%.1f,"
                 "\"warmup_wall_ms\":%.1f,\"timed_wall_ms\":%.1f,\"host_syncs_per_step\":%.2f,\"loss\":",
                 (unsigned long long)s.dev->mem_bytes, (unsigned long long)p->arena_bytes,
                 (t_ready - rt_exe_t_main) * 1e3, (t_warm - t_ready) * 1e3, (t_end - t_warm) * 1e3, syncs_per_step);
    rt_sb_json_number(&js, loss);
    printf("%s}\n", js.s);
    rt_sb_free(&js);
    if (a->profile && profile(&s, a, steps)) goto done;
    rc = 0;
done:
    free(ms);
    rt_exe_stream_free(&st);
    rt_exe_session_free(&s);
    rt_dataset_free(&ds);
    return rc;
}

/* ---- info ---------------------------------------------------------------------------------- */

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t size) {
    buf[0] = 0;
    for (int d = 0; d < ndim; d++) {
        size_t n = strlen(buf);
        snprintf(buf + n, size - n, "%s%lld", d ? "," : "", (long long)shape[d]);
    }
}

int rt_exe_cmd_info(const exe_args *a, const rt_plan *p) {
    char err[1200];
    if (rt_plan_check(p, err, sizeof err)) return rt_exe_error("%s", err);
    static const char *roles[] = {"weight", "state", "input", "output"};
    int64_t params = 0;
    uint64_t role_bytes[4] = {0};
    int role_count[4] = {0};
    for (int i = 0; i < p->num_tensors; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if ((unsigned)t->role < 4) {
            role_bytes[t->role] += t->bytes;
            role_count[t->role]++;
        }
        if (t->role == RT_ROLE_WEIGHT) params += rt_exe_numel(t);
    }
    int kinds[3] = {0};
    for (int i = 0; i < p->num_steps; i++)
        if ((unsigned)p->steps[i].kind < 3) kinds[p->steps[i].kind]++;
    printf("model: %s\n", p->model_name ? p->model_name : "?");
    printf("target: %s%s%s\n", rt_plan_is_cuda(p) ? "cuda" : "emu", p->arch ? " " : "", p->arch ? p->arch : "");
    printf("precision: %s\n", p->precision ? p->precision : "?");
    printf("batch: %lld, image: %lld x %lld x %lld, classes: %lld\n", (long long)p->batch, (long long)p->in_chans,
           (long long)p->img_size, (long long)p->img_size, (long long)p->num_classes);
    printf("parameters: %lld\n", (long long)params);
    printf("arena: %llu bytes (%.1f MiB), planner peak %llu bytes\n", (unsigned long long)p->arena_bytes,
           (double)p->arena_bytes / (1 << 20), (unsigned long long)p->peak_bytes);
    printf("tensors: %d (", p->num_tensors);
    for (int r = 0; r < 4; r++)
        printf("%s%d %s %.1f MiB", r ? ", " : "", role_count[r], roles[r], (double)role_bytes[r] / (1 << 20));
    printf(")\n");
    printf("steps: %d (%d kernel launches, %d GEMMs, %d zero fills), GEMM work %.3f GFLOP\n", p->num_steps, kinds[0],
           kinds[1], kinds[2], gemm_flops(p) / 1e9);
    if (p->num_eval_steps > 0) printf("eval runs steps 1-%d (logits and loss)\n", p->num_eval_steps);
    printf("optimizer: AdamW beta1 %g beta2 %g eps %g\n", p->beta1, p->beta2, p->adam_eps);
    rt_exe_scaler_info(p);
    printf("run defaults: label smoothing %g, clip-grad %g (train --label-smoothing, --clip-grad, --beta1 ...)\n",
           p->label_smoothing, p->clip_grad_norm);
    printf("kernels: %d\n", p->num_kernels);
    for (int k = 0; k < p->num_kernels; k++) {
        int launches = 0;
        for (int i = 0; i < p->num_steps; i++) launches += p->steps[i].kind == RT_STEP_KERNEL && p->steps[i].kernel == k;
        printf("  %-40s %d launch%s\n", p->kernel_names[k], launches, launches == 1 ? "" : "es");
    }
    if (a->verbose) {
        printf("tensor list:\n");
        for (int i = 0; i < p->num_tensors; i++) {
            const rt_plan_tensor *t = &p->tensors[i];
            char sh[160];
            shape_str(t->shape, t->ndim, sh, sizeof sh);
            printf("  %-7s %-40s %-4s [%s] @%llu\n", (unsigned)t->role < 4 ? roles[t->role] : "?", t->name,
                   rt_dtype_name(t->dtype), sh, (unsigned long long)t->offset);
        }
        printf("step list:\n");
        for (int i = 0; i < p->num_steps; i++) {
            const rt_plan_step *st = &p->steps[i];
            if (st->kind == RT_STEP_KERNEL)
                printf("  %4d kernel %s grid %u,%u,%u block %u,%u,%u  %s\n", i, p->kernel_names[st->kernel],
                       st->grid[0], st->grid[1], st->grid[2], st->block[0], st->block[1], st->block[2],
                       st->what ? st->what : "");
            else if (st->kind == RT_STEP_GEMM)
                printf("  %4d gemm m %lld n %lld k %lld batch %lld trans %d%d  %s\n", i, (long long)st->gemm.m,
                       (long long)st->gemm.n, (long long)st->gemm.k, (long long)st->gemm.batch, st->gemm.trans_a,
                       st->gemm.trans_b, st->what ? st->what : "");
            else
                printf("  %4d zero %llu bytes @%llu  %s\n", i, (unsigned long long)st->bytes,
                       (unsigned long long)st->offset, st->what ? st->what : "");
        }
    }
    return 0;
}

