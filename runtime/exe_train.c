/* exe_train.c: `EXE train`: the outputs checked before any step, the data, weights or a
 * --resume checkpoint, then the steps (batches of the plan's batch size, reshuffled each epoch,
 * lr from the warm-up and schedule), the --metrics lines and progress, periodic and final
 * --checkpoint files and --save; with a loss scaler (exe_loss_scale.c) its start from the
 * options and its state in every metrics line; on several ranks (runtime/dist.h) each its share
 * of every epoch, rank 0 alone writing files and lines. A loss that is not finite stops the run
 * (exit 1) before any file is written with it.
 */
#include "runtime/dist.h"
#include "runtime/exe_internal.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run_step(session *s, int use_graph, rt_dist *dist) {
    if (rt_device_run(s->dev, use_graph)) return rt_exe_error("%s", s->dev->err);
    if (rt_dist_step_wait(dist)) return rt_exe_error("data parallel: %s", rt_dist_error(dist));
    return 0;
}

int rt_exe_dist_start(rt_dist **dist, int *rank, int *world) {
    char err[1200];
    rt_dist_env e;
    *dist = NULL;
    if (rt_dist_env_read(&e, err, sizeof err)) return rt_exe_error("%s", err);
    *rank = e.rank;
    *world = e.world;
    int force = 0; /* DEITC_DIST=1: the data-parallel path for a world of one (gpu_check, tests) */
    if (rt_env_flag("DEITC_DIST", &force, err, sizeof err)) return rt_exe_error("%s", err);
    if (e.world == 1 && !force) return 0;
    if (e.local_rank >= 0 && !getenv("DEITC_DEVICE")) {
        char v[16];
        snprintf(v, sizeof v, "%d", e.local_rank);
        setenv("DEITC_DEVICE", v, 1);
    }
    if (rt_dist_open(&e, dist, err, sizeof err)) return rt_exe_error("data parallel (rank %d of %d, from %s): %s", e.rank, e.world, e.source, err);
    return 0;
}

/* Fails early (before any training) when `path` cannot be written, so a long run never ends
 * with its results lost. */
static int check_writable(const char *path) {
    char err[1200];
    return rt_output_check(path, err, sizeof err) ? rt_exe_error("%s", err) : 0;
}

/* After step `step`: the epoch's train loss; at the end of an epoch (or the run) and every
 * --eval-every steps the --val-data evaluation (printed, a metrics line, --save-best when its
 * top-1 is the best so far); at the end of an epoch its summary.csv row. */
static int end_of_step(session *s, const exe_args *a, const rt_dataset *vds, long step, long total, long per_epoch,
                       float loss, double lr, FILE *metrics, int *summary_fresh, rt_exe_log *log) {
    s->epoch_loss_sum += (double)loss;
    s->epoch_loss_steps++;
    int epoch_end = step % per_epoch == 0 || step == total;
    long epoch = (step - 1) / per_epoch + 1; /* 1-based, as printed */
    if (a->val_data && (epoch_end || (a->eval_every && step % a->eval_every == 0))) {
        rt_exe_eval ev;
        if (rt_exe_evaluate(s, vds, a, &ev)) return 1;
        double n = (double)(ev.n ? ev.n : 1), top1 = (double)ev.top1 / n, top5 = (double)ev.top5 / n;
        rt_exe_log_eval(log, step, ev.loss, top1);
        printf("eval: epoch %ld step %ld/%ld  loss %.6f  top-1 %.2f%%  top-5 %.2f%%  (%lld images)\n", epoch, step,
               total, ev.loss, 100 * top1, 100 * top5, (long long)ev.n);
        if (metrics) {
            fprintf(metrics, "{\"step\":%ld,\"epoch\":%ld,\"eval_loss\":", step, epoch - 1);
            rt_exe_json_num(metrics, ev.loss);
            fprintf(metrics, ",\"eval_top1\":");
            rt_exe_json_num(metrics, 100 * top1);
            fprintf(metrics, ",\"eval_top5\":");
            rt_exe_json_num(metrics, 100 * top5);
            fprintf(metrics, ",\"eval_images\":%lld}\n", (long long)ev.n);
            if (fflush(metrics) || ferror(metrics)) return rt_exe_error("%s: write failed at step %ld", a->metrics, step);
        }
        if (rt_exe_has_ema(s->p)) { /* the EMA's weights, evaluated alike */
            rt_exe_eval ee;
            if (rt_exe_ema_swap(s) || rt_exe_evaluate(s, vds, a, &ee) || rt_exe_ema_swap(s)) return 1;
            double en = (double)(ee.n ? ee.n : 1);
            printf("eval (EMA): epoch %ld step %ld/%ld  loss %.6f  top-1 %.2f%%  top-5 %.2f%%\n", epoch, step, total,
                   ee.loss, 100.0 * (double)ee.top1 / en, 100.0 * (double)ee.top5 / en);
            if (metrics) {
                fprintf(metrics, "{\"step\":%ld,\"epoch\":%ld,\"ema_eval_loss\":", step, epoch - 1);
                rt_exe_json_num(metrics, ee.loss);
                fprintf(metrics, ",\"ema_eval_top1\":");
                rt_exe_json_num(metrics, 100.0 * (double)ee.top1 / en);
                fprintf(metrics, ",\"ema_eval_top5\":");
                rt_exe_json_num(metrics, 100.0 * (double)ee.top5 / en);
                fprintf(metrics, "}\n");
            }
        }
        if (a->save_best && top1 > s->best_top1) {
            printf("best top-1 so far (%.2f%%, was %s): ", 100 * top1, s->best_top1 < 0 ? "none" : "lower");
            if (rt_exe_save_weights(s, a->save_best, step, 0, a, total, a->save_dtype)) return 1;
            s->best_top1 = top1;
        }
        if (epoch_end && a->summary) {
            double train_loss = s->epoch_loss_steps ? s->epoch_loss_sum / (double)s->epoch_loss_steps : NAN;
            if (rt_exe_summary_row(a->summary, *summary_fresh, epoch - 1, train_loss, &ev, lr)) return 1;
            *summary_fresh = 0;
        }
        fflush(stdout);
    }
    if (epoch_end) {
        s->epoch_loss_sum = 0;
        s->epoch_loss_steps = 0;
    }
    return 0;
}

int rt_exe_cmd_train(const exe_args *a, const rt_plan *p) {
    rt_dataset ds, vds;
    memset(&ds, 0, sizeof ds);
    memset(&vds, 0, sizeof vds);
    exe_stream stream;
    memset(&stream, 0, sizeof stream);
    session s;
    memset(&s, 0, sizeof s);
    FILE *metrics = NULL;
    rt_exe_log log;
    memset(&log, 0, sizeof log);
    rt_exe_frozen frozen;
    memset(&frozen, 0, sizeof frozen);
    int64_t *perm = NULL, *idx = NULL;
    int rc = 1;
    rt_dist *dist = NULL;
    int rank = 0, world = 1;
    /* no output may be one of the inputs (--resume C --checkpoint C continues C: that is the point) */
    char err[1200];
    int resume_is_checkpoint = a->resume && a->checkpoint && rt_same_file(a->resume, a->checkpoint);
    const rt_named_path outputs[] = {{"--save", a->save},           {"--checkpoint", a->checkpoint},
                                     {"--metrics", a->metrics},     {"--save-best", a->save_best},
                                     {"--summary", a->summary},     {"--plot", a->plot},
                                     {"--save-ema", a->save_ema}};
    const rt_named_path inputs[] = {{"--data", a->data}, {"--init", a->init},
                                    {"--resume", resume_is_checkpoint ? NULL : a->resume},
                                    {"the executable", "/proc/self/exe"}, {"--val-data", a->val_data}};
    if (rt_paths_check(outputs, 7, inputs, 5, err, sizeof err)) {
        rt_exe_error("%s", err);
        goto done;
    }
    if (rt_exe_dist_start(&dist, &rank, &world)) goto done;
    rt_exe_set_world(world); /* the default lr follows the global batch */
    const char *save = rank ? NULL : a->save, *checkpoint = rank ? NULL : a->checkpoint; /* rank 0 writes */
    if (save && check_writable(save)) goto done;
    if (checkpoint && check_writable(checkpoint)) goto done;
    if (!rank) {
        if (a->metrics && check_writable(a->metrics)) goto done;
        if (a->save_best && check_writable(a->save_best)) goto done;
        if (a->summary && check_writable(a->summary)) goto done;
        if (a->plot && check_writable(a->plot)) goto done;
        if (a->save_ema && check_writable(a->save_ema)) goto done;
    }
    if (rt_exe_run_options_plan_check(a, p) || rt_exe_check_val_classes(a->data, a->val_data)) goto done;
    if (rt_exe_stream_open(a, p, &stream)) goto done;
    if (stream.on) { /* streamed: nothing held; the loader reads this rank's share of each epoch */
        ds.n = stream.list.n;
        stream.rank = rank;
        stream.world = world;
    } else if (a->synthetic && world > 1) { /* a batch for every rank */
        if (rt_dataset_synthetic(p, p->batch * world, a->seed, &ds, err, sizeof err)) {
            rt_exe_error("%s", err);
            goto done;
        }
    } else if (rt_exe_load_data(a, p, &ds)) {
        goto done;
    }
    int64_t shard_n = stream.on ? ds.n / world : rt_dist_shard_size(ds.n, world); /* the images one rank sees an epoch */
    if (world > 1 && shard_n < p->batch) {
        rt_exe_error("%s: %lld images on %d ranks are %lld a rank, fewer than the per-rank batch %lld",
                     a->data ? a->data : "synthetic data", (long long)ds.n, world, (long long)shard_n,
                     (long long)p->batch);
        goto done;
    }
    if (a->val_data) {
        if (rt_dataset_load(a->val_data, p, &vds, err, sizeof err)) {
            rt_exe_error("%s", err);
            goto done;
        }
        if (!rank) printf("val data: %s: %lld images\n", rt_exe_shown(a->val_data), (long long)vds.n);
    }
    if (ds.n < p->batch) {
        rt_exe_error("%s: the dataset has %lld images, fewer than the batch size %lld this executable was compiled for "
                     "(deitc compile --batch N)",
                     a->data ? a->data : "synthetic data", (long long)ds.n, (long long)p->batch);
        goto done;
    }
    if (a->metrics && !rank && !(metrics = fopen(a->metrics, a->resume ? "a" : "w"))) { /* a resumed run appends */
        rt_exe_error("%s: cannot open for writing: %s", a->metrics, strerror(errno));
        goto done;
    }
    int64_t per_epoch = shard_n / p->batch;
    if (a->has_epochs && a->epochs > MAX_COUNT / per_epoch) {
        rt_exe_error("--epochs %ld: %ld epochs of %lld steps is more steps than can be counted", a->epochs, a->epochs,
                     (long long)per_epoch);
        goto done;
    }
    long total = a->has_steps ? a->steps : (long)(a->has_epochs ? a->epochs : 1) * (long)per_epoch;
    long first = 1; /* the first step to run: after the checkpoint's with --resume */
    if (rt_exe_session_open(&s, p, 1) || rt_exe_load_weights(&s, a->init, a->partial_init, a->seed) ||
        rt_exe_stage_open(&s))
        goto done;
    if (dist && rt_dist_attach(dist, s.dev, a->bucket_mb, err, sizeof err)) {
        rt_exe_error("data parallel (rank %d of %d): %s", rank, world, err);
        goto done;
    }
    if (a->resume) {
        long at = 0;
        if (rt_exe_load_checkpoint(&s, a, total, &at)) goto done;
        first = at + 1;
    } else if (rt_exe_has_ema(p) && rt_exe_ema_start(&s)) { /* the EMA starts as the weights */
        goto done;
    }
    if (rt_exe_scaler_setup(&s, a, a->resume != NULL) || rt_exe_mix_check(&s, &a->mix) ||
        rt_exe_drop_path_check(&s, a->drop_path))
        goto done;
    if (s.scaler && total > 16777216L) {
        rt_exe_error("%ld steps: the loss scaler counts steps in f32 state, exact to 16777216 steps", total);
        goto done;
    }
    float scaler[RT_SCALER_SLOTS] = {0};
    if (dist) { /* the ranks agree on what each step is, or none starts */
        const char *name = p->model_name ? p->model_name : "";
        uint64_t fp = rt_dist_fingerprint(name, strlen(name), 0);
        uint64_t v[] = {(uint64_t)p->batch, (uint64_t)p->arena_bytes, (uint64_t)p->num_steps, (uint64_t)ds.n,
                        (uint64_t)total, (uint64_t)first, a->seed, (uint64_t)a->shuffle};
        fp = rt_dist_fingerprint(v, sizeof v, fp);
        if (rt_dist_check_same(dist, "the model, batch, dataset size, steps, resume step, seed or shuffling", fp)) {
            rt_exe_error("data parallel (rank %d of %d): %s", rank, world, rt_dist_error(dist));
            goto done;
        }
    }
    double base_lr = rt_exe_base_lr(a, p);
    rt_opt_run run;
    rt_exe_run_opt(a, p, &run);
    long log_every = a->log_every ? a->log_every : (total <= 50 ? 1 : total / 25);
    perm = malloc(sizeof(int64_t) * (size_t)ds.n);
    if (world > 1) idx = malloc(sizeof(int64_t) * (size_t)shard_n); /* this rank's shard of perm */
    if (!perm || (world > 1 && !idx)) abort();
    if (rank == 0 && world == 1)
        printf("train: %s on %s, batch %lld, %lld images (%lld steps an epoch), %ld steps, lr %g%s, weight decay %g\n",
               p->model_name ? p->model_name : "model", s.dev->name, (long long)p->batch, (long long)ds.n,
               (long long)per_epoch, total, base_lr, a->cosine ? " cosine" : "", a->weight_decay);
    else if (rank == 0)
        printf("train: %s on %d ranks (%s), global batch %lld (%d x %lld), %lld images (%lld steps an epoch), %ld "
               "steps, lr %g%s, weight decay %g, %d gradient buckets\n",
               p->model_name ? p->model_name : "model", world, s.dev->name, (long long)p->batch * world, world,
               (long long)p->batch, (long long)ds.n, (long long)per_epoch, total, base_lr, a->cosine ? " cosine" : "",
               a->weight_decay, rt_dist_bucket_count(dist));
    if (!rank && (run.label_smoothing != 0 || run.clip_norm != 0 || a->min_lr != 0))
        printf("train: label smoothing %g, clip-grad %g, min lr %g\n", run.label_smoothing, run.clip_norm, a->min_lr);
    fflush(stdout);
    int64_t epoch = -1;
    int summary_fresh = !a->resume; /* a resumed run appends to its summary */
    double t_start = rt_exe_now_s(), images = 0;
    if (first == total + 1 && a->save) { /* a finished run's checkpoint: its weights are the result */
        rc = 0;
        if (rank) goto done;
        printf("%s: the checkpoint is at the run's last step (%ld): nothing left to train; writing its weights\n",
               rt_exe_shown(a->resume), total);
        if (rt_exe_save_weights(&s, a->save, total, 0, a, total, a->save_dtype)) rc = 1;
        goto done;
    }
    if (first > total) {
        rt_exe_error("%s: the checkpoint is at step %ld and this run has %ld steps: nothing left to train (give more "
                     "--steps or --epochs, or --save W to write its weights)", a->resume, first - 1, total);
        goto done;
    }
    if (a->resume && !rank) printf("resuming from %s at step %ld\n", rt_exe_shown(a->resume), first - 1);
    if (stream.on && rt_exe_stream_start(&stream, &s, a, p, first)) goto done;
    if (rt_exe_freeze_start(&s, a->freeze, &frozen)) goto done;
    rt_exe_log_init(&log, first, total, (long)per_epoch, s.dev->mem_bytes);
    rt_exe_signals_install();
    /* Each step's loss (and the scaler's state) is read back late (runtime/rt.h's readback): the
     * copies are queued after the step and waited for only at a step that needs the values (a
     * printed line, an evaluation, a checkpoint, a signal, the last step, a full buffer), then
     * every waiting step is finished in order. Data parallel and DEITC_HOST_DATA=1: every step. */
    enum { LATE_MAX = 64, LATE_STRIDE = 64 };
    struct { long step; double lr, data_s, device_s; } late[LATE_MAX];
    int nlate = 0, late_ok = !dist && s.stage_on && s.dev->readback_open && s.dev->download_async &&
                             rt_dtype_size(s.loss->dtype) <= 16 && 16 + sizeof(float) * RT_SCALER_SLOTS <= LATE_STRIDE;
    if (late_ok && s.dev->readback_open(s.dev, (uint64_t)LATE_MAX * LATE_STRIDE)) {
        rt_exe_error("%s", s.dev->err);
        goto done;
    }
    int trace_sync = 0; /* DEITC_TRACE_SYNC=1: each step's host synchronizations on stderr */
    if (rt_env_flag("DEITC_TRACE_SYNC", &trace_sync, err, sizeof err)) {
        rt_exe_error("%s", err);
        goto done;
    }
    for (long step = first; step <= total; step++) {
        int64_t e = (step - 1) / per_epoch, pos = ((step - 1) % per_epoch) * p->batch;
        if (e != epoch && !stream.on) {
            epoch = e;
            if (a->shuffle) rt_shuffle(perm, ds.n, a->seed, e);
            else
                for (int64_t i = 0; i < ds.n; i++) perm[i] = i;
            if (world > 1) rt_dist_shard(perm, ds.n, rank, world, idx);
        }
        long syncs0 = s.dev->syncs;
        double t0 = rt_exe_now_s(), lr = rt_exe_lr_at(a, base_lr, step, total, (long)per_epoch);
        float loss = 0;
        if (rt_exe_stage_begin(&s) || /* the step's data into a stage slot: nothing waits (exe_stage.c) */
            (stream.on ? rt_exe_stream_batch(&s, &stream) : rt_exe_fill_batch(&s, &ds, (world > 1 ? idx : perm) + pos)) ||
            rt_exe_set_opt(&s, lr, &run, step) || rt_exe_set_mix(&s, &a->mix, a->seed, step) ||
            rt_exe_set_drop_path(&s, a->drop_path, a->seed, step) || rt_exe_stage_end(&s))
            goto done;
        double t1 = rt_exe_now_s(); /* the data is on the device (or queued for it): the rest is the step */
        if (run_step(&s, a->use_graph && step > first, dist) || rt_exe_freeze_restore(&s, &frozen)) goto done;
        images += (double)p->batch * world;
        int last_of_epoch = step % per_epoch == 0;
        int need = !late_ok || log.tty || step == first || step == total || step % log_every == 0 ||
                   nlate + 1 == LATE_MAX || (last_of_epoch && (a->val_data || a->summary)) ||
                   (a->val_data && a->eval_every && step % a->eval_every == 0) ||
                   (checkpoint && a->checkpoint_every && step % a->checkpoint_every == 0) || rt_exe_signal_pending();
        if (late_ok) {
            uint64_t at = (uint64_t)nlate * LATE_STRIDE;
            if (s.dev->download_async(s.dev, at, s.loss->offset, rt_dtype_size(s.loss->dtype)) ||
                (s.scaler && s.dev->download_async(s.dev, at + 16, s.scaler->offset, sizeof(float) * RT_SCALER_SLOTS))) {
                rt_exe_error("%s", s.dev->err);
                goto done;
            }
            late[nlate].step = step;
            late[nlate].lr = lr;
            late[nlate].data_s = t1 - t0;
            late[nlate].device_s = rt_exe_now_s() - t1;
            nlate++;
            if (!need) {
                if (trace_sync) fprintf(stderr, "sync-trace: step %ld: %ld host synchronizations\n", step, s.dev->syncs - syncs0);
                continue;
            }
            double w0 = rt_exe_now_s();
            if (s.dev->readback_wait(s.dev)) {
                rt_exe_error("%s", s.dev->err);
                goto done;
            }
            late[nlate - 1].device_s += rt_exe_now_s() - w0;
        } else {
            if (rt_exe_read_f32(&s, s.loss, 1, &loss) || (s.scaler && rt_exe_scaler_read(&s, scaler))) goto done;
            late[0].step = step;
            late[0].lr = lr;
            late[0].data_s = t1 - t0;
            late[0].device_s = rt_exe_now_s() - t1;
            nlate = 1;
        }
        if (trace_sync) fprintf(stderr, "sync-trace: step %ld: %ld host synchronizations (its line)\n", step, s.dev->syncs - syncs0);
        for (int k = 0; k < nlate; k++) { /* the waiting steps, in order; the last is this one */
            long at_step = late[k].step;
            if (late_ok) {
                const unsigned char *rb = (const unsigned char *)s.dev->readback_host + (size_t)k * LATE_STRIDE;
                rt_tensor one = {.dtype = s.loss->dtype, .ndim = 1, .shape = {1}, .nbytes = rt_dtype_size(s.loss->dtype),
                                 .data = (void *)rb};
                if (rt_tensor_to_f32(&one, &loss)) loss = NAN;
                if (s.scaler) memcpy(scaler, rb + 16, sizeof(float) * RT_SCALER_SLOTS);
            }
            if (dist) { /* the global batch's loss: the mean of the ranks' */
                double sum = loss;
                if (rt_dist_sum_f64(dist, &sum, 1)) {
                    rt_exe_error("data parallel (rank %d of %d): %s", rank, world, rt_dist_error(dist));
                    goto done;
                }
                loss = (float)(sum / world);
            }
            if (!isfinite(loss)) { /* the weights that gave it are lost causes: keep what was written */
                rt_exe_error("the loss is %g at step %ld: training diverged (try a smaller --lr); stopped without writing "
                             "%s%s", loss, at_step, checkpoint ? "over the last checkpoint " : "any weights",
                             checkpoint ? checkpoint : "");
                goto done;
            }
            rt_exe_step_info info = {at_step, loss, late[k].lr, late[k].data_s, late[k].device_s, p->batch * world,
                                     s.scaler ? scaler : NULL};
            if (!rank && rt_exe_log_step(&log, &info, log_every, metrics)) { /* stop rather than train on with the metrics lost */
                rt_exe_error("%s: write failed at step %ld: %s", a->metrics, at_step, strerror(errno));
                goto done;
            }
            /* validation on rank 0 (the others wait for it in the next step's all-reduce) */
            if (!rank && end_of_step(&s, a, &vds, at_step, total, (long)per_epoch, loss, late[k].lr, metrics,
                                     &summary_fresh, &log))
                goto done;
        }
        nlate = 0;
        if (checkpoint && a->checkpoint_every && step % a->checkpoint_every == 0 && step < total &&
            rt_exe_save_weights(&s, checkpoint, step, 1, a, total, RT_F32))
            goto done;
        int sig = rt_exe_signal_pending();
        if (sig && step < total && !dist) { /* Ctrl-C or SIGTERM: this step is done; keep it, say how to go on */
            const char *ck = a->checkpoint ? a->checkpoint : "interrupted.safetensors";
            printf("interrupted (%s) after step %ld/%ld\n", sig == SIGINT ? "SIGINT" : "SIGTERM", step, total);
            if (rt_exe_save_weights(&s, ck, step, 1, a, total, RT_F32)) goto done;
            rt_exe_print_resume(stdout, rt_exe_argc, rt_exe_argv, ck);
            rc = 128 + sig;
            goto done;
        }
    }
    rt_exe_signals_restore();
    double elapsed = rt_exe_now_s() - t_start;
    if (!rank)
        printf("trained %ld steps in %.2f s (%.1f images/s)\n", total - first + 1, elapsed, images / (elapsed > 0 ? elapsed : 1e-9));
    if (stream.on && !rank)
        printf("data: the steps waited %.2f s in all for the loader's workers\n", rt_loader_wait_s(stream.loader));
    if (checkpoint && rt_exe_save_weights(&s, checkpoint, total, 1, a, total, RT_F32)) goto done;
    if (save && rt_exe_save_weights(&s, save, total, 0, a, total, a->save_dtype)) goto done;
    if (!rank && a->save_ema && rt_exe_ema_save(&s, a->save_ema, total, a, total)) goto done;
    if (!rank && a->plot && rt_exe_plot(&log, a->plot)) goto done;
    /* every rank ends with rank 0's files written (or hears that rank 0 failed) */
    if (dist && rt_dist_barrier(dist)) {
        rt_exe_error("data parallel (rank %d of %d): %s", rank, world, rt_dist_error(dist));
        goto done;
    }
    rc = 0;
done:
    rt_dist_close(dist); /* before the device: its hooks and thread use it */
    rt_exe_log_free(&log);
    rt_exe_freeze_free(&frozen);
    rt_exe_signals_restore();
    if (metrics && fclose(metrics) && !rc) rc = rt_exe_error("%s: write failed", a->metrics);
    free(perm);
    free(idx);
    rt_exe_stream_free(&stream);
    rt_exe_session_free(&s);
    rt_dataset_free(&ds);
    rt_dataset_free(&vds);
    return rc;
}

