/* validate.c: evaluation over EVERY image of a dataset (what `EXE eval` and the training run's
 * --val-data report): batches of the plan's size, the last one padded with images from the
 * start and its padding masked out (a plan without logits: full batches by its loss output); loss (the plain cross-entropy, as timm's validate: no
 * label smoothing), top-1 and top-5 computed on the host in double from the logits. Also the
 * check that a --val-data ImageFolder has the train folder's classes, and the per-epoch
 * --summary CSV (timm's summary.csv columns).
 */
#include "runtime/exe_internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* row z (k classes): the cross-entropy against label y, and whether y is in the top 1 / top 5
 * (ties broken towards the lower class index, as a stable sort would) */
static double row_metrics(const float *z, int64_t k, int64_t y, int *top1, int *top5) {
    int64_t best = 0;
    for (int64_t c = 1; c < k; c++)
        if (z[c] > z[best]) best = c;
    double mx = z[best], sum = 0;
    for (int64_t c = 0; c < k; c++) sum += exp((double)z[c] - mx);
    int64_t above = 0; /* classes ranked before y */
    for (int64_t c = 0; c < k; c++) above += z[c] > z[y] || (z[c] == z[y] && c < y);
    *top1 = above == 0;
    *top5 = above < 5;
    return log(sum) + mx - (double)z[y];
}

int rt_exe_evaluate(session *s, const rt_dataset *ds, const exe_args *a, rt_exe_eval *out) {
    return rt_exe_evaluate_shard(s, ds, a, 0, 1, RT_EXE_EVAL_LOGITS, out, NULL);
}

int rt_exe_evaluate_shard(session *s, const rt_dataset *ds, const exe_args *a, int rank, int world, int mode,
                          rt_exe_eval *out, double *loss_sum_out) {
    const rt_plan *p = s->p;
    memset(out, 0, sizeof *out);
    if (ds->n == 0) return rt_exe_error("the evaluation dataset has no images");
    int by_loss = mode == RT_EXE_EVAL_LOSS;
    if (!by_loss && !s->logits)
        return rt_exe_error("this executable's plan has no [batch, classes] output 'logits': it cannot evaluate "
                            "top-1/top-5 over every image");
    /* this rank's images: rank, rank + world, ... (all of them for one rank); by the loss: the
     * full batches of them only */
    int64_t mine = ds->n > rank ? (ds->n - rank + world - 1) / world : 0;
    int64_t k = p->num_classes, batches = by_loss ? mine / p->batch : (mine + p->batch - 1) / p->batch;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)p->batch);
    float *logits = malloc(sizeof(float) * (size_t)(by_loss ? 1 : p->batch * k));
    if (!idx || !logits) abort();
    rt_opt_run run;
    rt_exe_run_opt(a, p, &run);
    run.weight_decay = 0;
    run.label_smoothing = 0; /* the forward's loss is not what is reported; keep it plain anyway */
    double loss_sum = 0;
    int rc = 0;
    for (int64_t b = 0; b < batches && !rc; b++) {
        for (int64_t i = 0; i < p->batch; i++) /* padding: from the start of the shard */
            idx[i] = rank + ((b * p->batch + i) % mine) * world;
        /* the forward steps only; lr 0 keeps the weights even in a plan whose eval prefix reaches
         * an update (or that has none: hand-written plans run every step) */
        if (rt_exe_fill_batch(s, ds, idx) || rt_exe_set_opt(s, 0, &run, 1)) rc = 1;
        else if (rt_device_run_forward(s->dev)) rc = rt_exe_error("%s", s->dev->err);
        else if (by_loss ? rt_exe_read_f32(s, s->loss, 1, logits) : rt_exe_read_f32(s, s->logits, p->batch * k, logits))
            rc = 1;
        if (by_loss && !rc) { /* the batch's mean loss */
            loss_sum += logits[0] * (double)p->batch;
            out->n += p->batch;
            continue;
        }
        for (int64_t i = 0; i < p->batch && !rc && b * p->batch + i < mine; i++) { /* padding masked */
            int t1, t5;
            loss_sum += row_metrics(logits + i * k, k, ds->labels[idx[i]], &t1, &t5);
            out->top1 += t1;
            out->top5 += t5;
            out->n++;
        }
    }
    out->loss = out->n ? loss_sum / (double)out->n : NAN;
    if (loss_sum_out) *loss_sum_out = loss_sum;
    free(idx);
    free(logits);
    return rc;
}

/* ---- the class folders of an ImageFolder ------------------------------------------------- */

static int cmp_str(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

/* the sorted subfolder names of dir (the classes), or -1 when dir is not a readable folder */
static int class_names(const char *dir, char ***names, size_t *count) {
    *names = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *full = malloc(len);
        if (!full) abort();
        snprintf(full, len, "%s/%s", dir, e->d_name);
        struct stat st;
        int is_dir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
        free(full);
        if (!is_dir) continue;
        if (*count == cap) {
            cap = cap ? 2 * cap : 16;
            *names = realloc(*names, cap * sizeof **names);
            if (!*names) abort();
        }
        (*names)[(*count)++] = strdup(e->d_name);
        if (!(*names)[*count - 1]) abort();
    }
    closedir(d);
    if (*count) qsort(*names, *count, sizeof **names, cmp_str);
    return 0;
}

int rt_exe_check_val_classes(const char *train_dir, const char *val_dir) {
    struct stat st;
    if (!train_dir || !val_dir || stat(train_dir, &st) || !S_ISDIR(st.st_mode) || stat(val_dir, &st) ||
        !S_ISDIR(st.st_mode))
        return 0; /* not two ImageFolders: the labels are the files' own */
    char **tn = NULL, **vn = NULL;
    size_t tc = 0, vc = 0;
    int rc = 0;
    if (class_names(train_dir, &tn, &tc) == 0 && class_names(val_dir, &vn, &vc) == 0) {
        size_t i = 0;
        while (i < tc && i < vc && !strcmp(tn[i], vn[i])) i++;
        if (i < tc || i < vc) {
            if (i < tc && i < vc)
                rc = rt_exe_error("--val-data %s: its classes differ from --data %s's: class %zu is '%s' there and "
                                  "'%s' here (%zu and %zu class folders); the labels would not mean the same classes",
                                  val_dir, train_dir, i, vn[i], tn[i], vc, tc);
            else
                rc = rt_exe_error("--val-data %s has %zu class folders, --data %s has %zu (first unmatched: '%s'); "
                                  "the labels would not mean the same classes",
                                  val_dir, vc, train_dir, tc, i < tc ? tn[i] : vn[i]);
        }
    }
    for (size_t i = 0; i < tc; i++) free(tn[i]);
    for (size_t i = 0; i < vc; i++) free(vn[i]);
    free(tn);
    free(vn);
    return rc;
}

/* ---- summary.csv --------------------------------------------------------------------------- */

int rt_exe_summary_row(const char *path, int header, long epoch, double train_loss, const rt_exe_eval *e,
                       double lr) {
    FILE *f = fopen(path, header ? "w" : "a");
    if (!f) return rt_exe_error("%s: cannot open for writing: %s", path, strerror(errno));
    if (header) fprintf(f, "epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\n");
    double n = e->n ? (double)e->n : 1;
    fprintf(f, "%ld,%.9g,%.9g,%.6f,%.6f,%.9g\n", epoch, train_loss, e->loss, 100.0 * (double)e->top1 / n,
            100.0 * (double)e->top5 / n, lr);
    int bad = ferror(f);
    if (fclose(f) || bad) return rt_exe_error("%s: write failed", path);
    return 0;
}
