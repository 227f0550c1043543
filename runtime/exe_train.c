/* exe_train.c: `EXE train`: the outputs checked before any step, the data, weights or a
 * --resume checkpoint, then the steps (batches of the plan's batch size, reshuffled each epoch,
 * lr from the warm-up and schedule), the --metrics lines and progress, periodic and final
 * --checkpoint files and --save; with a loss scaler (exe_loss_scale.c) its start from the
 * options and its state in every metrics line. A loss that is not finite stops the run (exit 1) before any
 * file is written with it.
 */
#include "runtime/exe_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run_step(session *s, int use_graph) {
    if (rt_device_run(s->dev, use_graph)) return rt_exe_error("%s", s->dev->err);
    return 0;
}

static double lr_at(const exe_args *a, long step, long total) {
    if (a->warmup_steps > 0 && step <= a->warmup_steps) return a->lr * (double)step / (double)a->warmup_steps;
    if (!a->cosine) return a->lr;
    long span = total - a->warmup_steps;
    if (span < 1) return a->lr;
    double progress = (double)(step - a->warmup_steps - 1) / (double)span;
    return a->lr * 0.5 * (1 + cos(3.14159265358979323846 * progress));
}

/* Fails early (before any training) when `path` cannot be written, so a long run never ends
 * with its results lost. */
static int check_writable(const char *path) {
    char err[1200];
    return rt_output_check(path, err, sizeof err) ? rt_exe_error("%s", err) : 0;
}

int rt_exe_cmd_train(const exe_args *a, const rt_plan *p) {
    rt_dataset ds;
    memset(&ds, 0, sizeof ds);
    session s;
    memset(&s, 0, sizeof s);
    FILE *metrics = NULL;
    int64_t *perm = NULL, *idx = NULL;
    int rc = 1;
    /* no output may be one of the inputs (--resume C --checkpoint C continues C: that is the point) */
    char err[1200];
    int resume_is_checkpoint = a->resume && a->checkpoint && rt_same_file(a->resume, a->checkpoint);
    const rt_named_path outputs[] = {{"--save", a->save}, {"--checkpoint", a->checkpoint}, {"--metrics", a->metrics}};
    const rt_named_path inputs[] = {{"--data", a->data}, {"--init", a->init},
                                    {"--resume", resume_is_checkpoint ? NULL : a->resume},
                                    {"the executable", "/proc/self/exe"}};
    if (rt_paths_check(outputs, 3, inputs, 4, err, sizeof err)) {
        rt_exe_error("%s", err);
        goto done;
    }
    if (a->save && check_writable(a->save)) goto done;
    if (a->checkpoint && check_writable(a->checkpoint)) goto done;
    if (a->metrics && check_writable(a->metrics)) goto done;
    if (rt_exe_load_data(a, p, &ds)) goto done;
    if (ds.n < p->batch) {
        rt_exe_error("%s: the dataset has %lld images, fewer than the batch size %lld this executable was compiled for "
                     "(deitc compile --batch N)",
                     a->data ? a->data : "synthetic data", (long long)ds.n, (long long)p->batch);
        goto done;
    }
    if (a->metrics && !(metrics = fopen(a->metrics, a->resume ? "a" : "w"))) { /* a resumed run appends */
        rt_exe_error("%s: cannot open for writing: %s", a->metrics, strerror(errno));
        goto done;
    }
    int64_t per_epoch = ds.n / p->batch;
    if (a->has_epochs && a->epochs > MAX_COUNT / per_epoch) {
        rt_exe_error("--epochs %ld: %ld epochs of %lld steps is more steps than can be counted", a->epochs, a->epochs,
                     (long long)per_epoch);
        goto done;
    }
    long total = a->has_steps ? a->steps : (long)(a->has_epochs ? a->epochs : 1) * (long)per_epoch;
    long first = 1; /* the first step to run: after the checkpoint's with --resume */
    if (rt_exe_session_open(&s, p, 1) || rt_exe_load_weights(&s, a->init, a->partial_init, a->seed)) goto done;
    if (a->resume) {
        long at = 0;
        if (rt_exe_load_checkpoint(&s, a, total, &at)) goto done;
        first = at + 1;
    }
    if (rt_exe_scaler_setup(&s, a, a->resume != NULL)) goto done;
    if (s.scaler && total > 16777216L) {
        rt_exe_error("%ld steps: the loss scaler counts steps in f32 state, exact to 16777216 steps", total);
        goto done;
    }
    float scaler[RT_SCALER_SLOTS] = {0};
    long log_every = a->log_every ? a->log_every : (total <= 50 ? 1 : total / 25);
    perm = malloc(sizeof(int64_t) * (size_t)ds.n);
    if (!perm) abort();
    printf("train: %s on %s, batch %lld, %lld images (%lld steps an epoch), %ld steps, lr %g%s, weight decay %g\n",
           p->model_name ? p->model_name : "model", s.dev->name, (long long)p->batch, (long long)ds.n,
           (long long)per_epoch, total, a->lr, a->cosine ? " cosine" : "", a->weight_decay);
    fflush(stdout);
    int64_t epoch = -1;
    double t_start = rt_exe_now_s(), images = 0;
    if (first == total + 1 && a->save) { /* a finished run's checkpoint: its weights are the result */
        printf("%s: the checkpoint is at the run's last step (%ld): nothing left to train; writing its weights\n",
               rt_exe_shown(a->resume), total);
        if (rt_exe_save_weights(&s, a->save, total, 0, a, total, a->save_dtype)) goto done;
        rc = 0;
        goto done;
    }
    if (first > total) {
        rt_exe_error("%s: the checkpoint is at step %ld and this run has %ld steps: nothing left to train (give more "
                     "--steps or --epochs, or --save W to write its weights)", a->resume, first - 1, total);
        goto done;
    }
    if (a->resume) printf("resuming from %s at step %ld\n", rt_exe_shown(a->resume), first - 1);
    for (long step = first; step <= total; step++) {
        int64_t e = (step - 1) / per_epoch, pos = ((step - 1) % per_epoch) * p->batch;
        if (e != epoch) {
            epoch = e;
            if (a->shuffle) rt_shuffle(perm, ds.n, a->seed, e);
            else
                for (int64_t i = 0; i < ds.n; i++) perm[i] = i;
        }
        double t0 = rt_exe_now_s(), lr = lr_at(a, step, total);
        float loss;
        if (rt_exe_fill_batch(&s, &ds, perm + pos) || rt_exe_set_opt(&s, lr, a->weight_decay, step) ||
            run_step(&s, a->use_graph && step > first) || rt_exe_read_f32(&s, s.loss, 1, &loss) ||
            (s.scaler && rt_exe_scaler_read(&s, scaler)))
            goto done;
        double dt = rt_exe_now_s() - t0, ips = (double)p->batch / (dt > 0 ? dt : 1e-9);
        images += (double)p->batch;
        if (!isfinite(loss)) { /* the weights that gave it are lost causes: keep what was written */
            rt_exe_error("the loss is %g at step %ld: training diverged (try a smaller --lr); stopped without writing "
                         "%s%s", loss, step, a->checkpoint ? "over the last checkpoint " : "any weights",
                         a->checkpoint ? a->checkpoint : "");
            goto done;
        }
        if (metrics) {
            fprintf(metrics, "{\"step\":%ld,\"epoch\":%lld,\"loss\":", step, (long long)e);
            rt_exe_json_num(metrics, loss);
            fprintf(metrics, ",\"lr\":");
            rt_exe_json_num(metrics, lr);
            fprintf(metrics, ",\"images_per_s\":");
            rt_exe_json_num(metrics, ips);
            if (s.scaler) rt_exe_scaler_json(metrics, scaler);
            fprintf(metrics, "}\n");
            if (fflush(metrics) || ferror(metrics)) { /* stop now rather than train on with the metrics lost */
                rt_exe_error("%s: write failed at step %ld: %s", a->metrics, step, strerror(errno));
                goto done;
            }
        }
        if (step == first || step == total || step % log_every == 0) {
            printf("step %ld/%ld  loss %.6f  lr %.3g  %.1f images/s", step, total, loss, lr, ips);
            if (s.scaler) rt_exe_scaler_log(stdout, scaler);
            printf("\n");
            fflush(stdout);
        }
        if (a->checkpoint_every && step % a->checkpoint_every == 0 && step < total &&
            rt_exe_save_weights(&s, a->checkpoint, step, 1, a, total, RT_F32))
            goto done;
    }
    double elapsed = rt_exe_now_s() - t_start;
    printf("trained %ld steps in %.2f s (%.1f images/s)\n", total - first + 1, elapsed, images / (elapsed > 0 ? elapsed : 1e-9));
    if (a->checkpoint && rt_exe_save_weights(&s, a->checkpoint, total, 1, a, total, RT_F32)) goto done;
    if (a->save && rt_exe_save_weights(&s, a->save, total, 0, a, total, a->save_dtype)) goto done;
    rc = 0;
done:
    if (metrics && fclose(metrics) && !rc) rc = rt_exe_error("%s: write failed", a->metrics);
    free(perm);
    free(idx);
    rt_exe_session_free(&s);
    rt_dataset_free(&ds);
    return rc;
}

