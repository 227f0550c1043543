/* log.c: what `EXE train` tells people while it runs, in timm's spirit: every --log-every
 * steps a line with the epoch, step/total, the loss now and its running average, images/s, lr,
 * the time spent waiting for data and on the device, the ETA and the device memory held; when
 * stdout is a terminal the same line is a progress bar rewritten in place (plain lines
 * otherwise, so logs and pipes stay line-based). The --metrics JSONL lines carry the same
 * fields. The run's curves are kept for --plot (plot.c).
 */
#include "runtime/exe_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void rt_exe_log_init(rt_exe_log *l, long first, long total, long per_epoch, uint64_t mem_bytes) {
    memset(l, 0, sizeof *l);
    l->first = first;
    l->total = total;
    l->per_epoch = per_epoch;
    l->mem_bytes = mem_bytes;
    l->tty = isatty(STDOUT_FILENO);
    l->t_start = rt_exe_now_s();
}

void rt_exe_log_free(rt_exe_log *l) {
    free(l->train);
    free(l->eval);
    memset(l, 0, sizeof *l);
}

static void hms(double s, char *buf, size_t size) {
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

/* the progress bar: [#####.....] of this epoch */
static void bar(char *buf, size_t size, long done, long of) {
    enum { W = 20 };
    int k = of > 0 ? (int)((double)W * (double)done / (double)of) : W;
    char b[W + 1];
    for (int i = 0; i < W; i++) b[i] = i < k ? '#' : '.';
    b[W] = 0;
    snprintf(buf, size, "[%s]", b);
}

int rt_exe_log_step(rt_exe_log *l, const rt_exe_step_info *st, long log_every, FILE *metrics) {
    if (l->ntrain == l->cap_train) {
        l->cap_train = l->cap_train ? 2 * l->cap_train : 1024;
        l->train = realloc(l->train, sizeof *l->train * (size_t)l->cap_train);
        if (!l->train) abort();
    }
    l->train[l->ntrain++] = (rt_exe_point){st->step, st->loss, 0, 0};
    if ((st->step - 1) % l->per_epoch == 0) l->loss_sum = 0, l->nloss = 0; /* the average is the epoch's */
    l->loss_sum += st->loss;
    l->nloss++;
    l->data_s += st->data_s;
    l->device_s += st->device_s;
    double step_s = st->data_s + st->device_s, avg = l->loss_sum / (double)l->nloss;
    double elapsed = rt_exe_now_s() - l->t_start, per = elapsed / (double)(st->step - l->first + 1);
    double eta = per * (double)(l->total - st->step), ips = (double)st->images / (step_s > 0 ? step_s : 1e-9);
    long in_epoch = (st->step - 1) % l->per_epoch + 1, epoch = (st->step - 1) / l->per_epoch + 1;
    char eta_s[32], b[32];
    hms(eta, eta_s, sizeof eta_s);
    bar(b, sizeof b, in_epoch, l->per_epoch);
    int show = st->step == l->first || st->step == l->total || st->step % log_every == 0;
    char line[512];
    snprintf(line, sizeof line,
             "step %ld/%ld  loss %.6f  lr %.3g  %.1f images/s  (avg %.4f)  epoch %ld [%ld/%ld]  data %.3f s  "
             "device %.3f s  ETA %s  mem %.1f MiB",
             st->step, l->total, st->loss, st->lr, ips, avg, epoch, in_epoch, l->per_epoch, st->data_s, st->device_s,
             eta_s, (double)l->mem_bytes / (1024.0 * 1024.0));
    if (st->scaler) { /* the loss scaler's words ("  scale S  skipped N") */
        char words[160] = "";
        FILE *w = fmemopen(words, sizeof words - 1, "w");
        if (w) {
            rt_exe_scaler_log(w, st->scaler);
            fclose(w);
        }
        size_t used = strlen(line);
        snprintf(line + used, sizeof line - used, "%s", words);
    }
    if (l->tty) { /* in place; a line of its own at each --log-every, an epoch's end and the last step */
        printf("\r\033[K%s %s", b, line);
        if (show || in_epoch == l->per_epoch) printf("\n");
    } else if (show) {
        printf("%s\n", line);
    }
    fflush(stdout);
    if (metrics) {
        fprintf(metrics, "{\"step\":%ld,\"epoch\":%ld,\"loss\":", st->step, epoch - 1);
        rt_exe_json_num(metrics, st->loss);
        fprintf(metrics, ",\"lr\":");
        rt_exe_json_num(metrics, st->lr);
        fprintf(metrics, ",\"images_per_s\":");
        rt_exe_json_num(metrics, ips);
        fprintf(metrics, ",\"loss_avg\":");
        rt_exe_json_num(metrics, avg);
        fprintf(metrics, ",\"data_s\":");
        rt_exe_json_num(metrics, st->data_s);
        fprintf(metrics, ",\"device_s\":");
        rt_exe_json_num(metrics, st->device_s);
        fprintf(metrics, ",\"eta_s\":");
        rt_exe_json_num(metrics, eta);
        fprintf(metrics, ",\"mem_bytes\":%llu", (unsigned long long)l->mem_bytes);
        if (st->scaler) rt_exe_scaler_json(metrics, st->scaler);
        fprintf(metrics, "}\n");
        if (fflush(metrics) || ferror(metrics)) return -1;
    }
    return 0;
}

void rt_exe_log_eval(rt_exe_log *l, long step, double loss, double top1) {
    if (l->neval == l->cap_eval) {
        l->cap_eval = l->cap_eval ? 2 * l->cap_eval : 64;
        l->eval = realloc(l->eval, sizeof *l->eval * (size_t)l->cap_eval);
        if (!l->eval) abort();
    }
    l->eval[l->neval++] = (rt_exe_point){step, loss, top1, 1};
}
