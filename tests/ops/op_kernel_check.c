/* op_kernel_check.c: the main of the per-op kernel check, linked with a generated plan.c (every
 * case of tests/ops/op_kernel_test.c in one program) and the runtime. Runs on either target:
 * the emu build runs in ctest, the cuda build is what `op_kernel_test --make-cuda-package`
 * writes for a GPU machine (benchmarks/gpu_check runs it first).
 *
 *   op_kernel_check [DIR]   DIR holds op_kernel_cases.txt and op_kernel_data.safetensors
 *                           (default: the executable's own folder)
 *
 * Uploads every case's inputs, runs the plan's steps one at a time (synchronizing after each,
 * so a failing launch names its step), downloads every case's outputs and compares them with
 * the reference interpreter's, which the data file carries ("want/NAME"; inputs "in/NAME").
 * Prints `PASS|FAIL op variant dtype rel_l2=E tol=T` per case and `N passed, M failed`; exit 0 iff
 * every case ran and passed.
 *
 * op_kernel_cases.txt: a first line `op_kernel_cases 1 NCASES`, then one line per case:
 *   op variant dtype tol nin nout in_name... out_name...
 * (tensor names of the plan, without spaces). */
#include "runtime/rt.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_TENSORS = 16 };

typedef struct {
    char op[64], variant[96], dtype[32];
    double tol;
    int nin, nout;
    char in[MAX_TENSORS][96], out[MAX_TENSORS][96];
} check_case;

static const rt_plan_tensor *plan_tensor(const char *name) {
    for (int i = 0; i < deitc_plan.num_tensors; i++)
        if (strcmp(deitc_plan.tensors[i].name, name) == 0) return &deitc_plan.tensors[i];
    return NULL;
}

/* a tensor's values as doubles (floats converted, integers exact) */
static double value_at(rt_dtype t, const unsigned char *p, int64_t i) {
    switch (t) {
    case RT_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case RT_F16: case RT_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return t == RT_F16 ? rt_half_to_float(h) : rt_bf16_to_float(h);
    }
    case RT_I32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    default: {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        return (double)v;
    }
    }
}

static int read_cases(const char *path, check_case **out, int *count) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "op_kernel_check: cannot open %s\n", path);
        return -1;
    }
    int version = 0, n = 0;
    if (fscanf(f, "op_kernel_cases %d %d", &version, &n) != 2 || version != 1 || n <= 0 || n > 100000) {
        fprintf(stderr, "op_kernel_check: %s: bad first line\n", path);
        fclose(f);
        return -1;
    }
    check_case *c = calloc((size_t)n, sizeof *c);
    if (!c) abort();
    for (int i = 0; i < n; i++) {
        check_case *k = &c[i];
        int ok = fscanf(f, "%63s %95s %31s %lf %d %d", k->op, k->variant, k->dtype, &k->tol, &k->nin, &k->nout) == 6;
        ok = ok && k->nin >= 0 && k->nin <= MAX_TENSORS && k->nout > 0 && k->nout <= MAX_TENSORS;
        for (int j = 0; ok && j < k->nin; j++) ok = fscanf(f, "%95s", k->in[j]) == 1;
        for (int j = 0; ok && j < k->nout; j++) ok = fscanf(f, "%95s", k->out[j]) == 1;
        if (!ok) {
            fprintf(stderr, "op_kernel_check: %s: case %d is malformed\n", path, i + 1);
            free(c);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    *out = c;
    *count = n;
    return 0;
}

/* Relative L2 error of the device's value of plan tensor `name` against want/name; -1 on a
 * missing or mismatched tensor (message printed), INFINITY on NaN. */
static double compare(rt_device *d, const rt_tensor_set *data, const char *name) {
    char key[128];
    snprintf(key, sizeof key, "want/%s", name);
    const rt_plan_tensor *pt = plan_tensor(name);
    const rt_tensor *want = rt_tensor_set_find(data, key);
    if (!pt || !want || want->dtype != RT_F32 || (uint64_t)rt_tensor_numel(want) * rt_dtype_size(pt->dtype) > pt->bytes) {
        fprintf(stderr, "op_kernel_check: output %s: missing from the plan or the data file, or sizes differ\n", name);
        return -1;
    }
    int64_t n = rt_tensor_numel(want);
    unsigned char *got = malloc((size_t)n * rt_dtype_size(pt->dtype) + 1);
    if (!got) abort();
    if (d->download(d, got, pt->offset, (uint64_t)n * rt_dtype_size(pt->dtype))) {
        fprintf(stderr, "op_kernel_check: %s\n", d->err);
        free(got);
        return -1;
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = value_at(pt->dtype, got, i), w = value_at(RT_F32, want->data, i);
        if (g == w || (isnan(g) && isnan(w))) { /* the same infinity, or NaN for NaN, counts as no error */
            if (isfinite(w)) den += w * w;
            continue;
        }
        num += (g - w) * (g - w); /* inf or NaN where they differ: the case fails */
        den += isfinite(w) ? w * w : 0;
    }
    free(got);
    double e = den > 0 ? sqrt(num / den) : sqrt(num);
    return isnan(e) ? INFINITY : e;
}

int main(int argc, char **argv) {
    char dir[PATH_MAX], path[PATH_MAX + 64], err[2048];
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: op_kernel_check [DIR]   (DIR: op_kernel_cases.txt, op_kernel_data.safetensors)\n");
        return 2;
    }
    if (argc == 2) {
        snprintf(dir, sizeof dir, "%s", argv[1]);
    } else {
        ssize_t k = readlink("/proc/self/exe", dir, sizeof dir - 1);
        if (k <= 0) {
            fprintf(stderr, "op_kernel_check: cannot find my own folder; pass DIR\n");
            return 2;
        }
        dir[k] = 0;
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
    }
    check_case *cases = NULL;
    int ncases = 0;
    snprintf(path, sizeof path, "%s/op_kernel_cases.txt", dir);
    if (read_cases(path, &cases, &ncases)) return 1;
    rt_tensor_set data = {0};
    snprintf(path, sizeof path, "%s/op_kernel_data.safetensors", dir);
    if (rt_safetensors_read(path, &data, err, sizeof err)) {
        fprintf(stderr, "op_kernel_check: %s\n", err);
        free(cases);
        return 1;
    }
    rt_device *d = NULL;
    if (rt_device_new(&deitc_plan, &d, err, sizeof err)) {
        fprintf(stderr, "op_kernel_check: %s\n", err);
        for (int c = 0; c < ncases; c++)
            printf("FAIL %s %s %s rel_l2=inf (not run: no device)\n", cases[c].op, cases[c].variant, cases[c].dtype);
        printf("0 passed, %d failed\n", ncases);
        rt_tensor_set_free(&data);
        free(cases);
        return 1;
    }
    printf("op_kernel_check: %d cases, %d steps, %d kernels on %s\n", ncases, deitc_plan.num_steps,
           deitc_plan.num_kernels, d->name);
    /* inputs */
    const char *fail = NULL;
    for (int c = 0; c < ncases && !fail; c++) {
        for (int j = 0; j < cases[c].nin; j++) {
            char key[128];
            snprintf(key, sizeof key, "in/%s", cases[c].in[j]);
            const rt_plan_tensor *pt = plan_tensor(cases[c].in[j]);
            const rt_tensor *t = rt_tensor_set_find(&data, key);
            if (!pt || !t || t->dtype != pt->dtype || t->nbytes > pt->bytes) {
                snprintf(err, sizeof err, "input %s: missing from the plan or the data file, or dtype/size differ",
                         cases[c].in[j]);
                fail = err;
                break;
            }
            if (d->upload(d, pt->offset, t->data, t->nbytes)) {
                fail = d->err;
                break;
            }
        }
    }
    /* the steps, one at a time */
    for (int i = 0; i < deitc_plan.num_steps && !fail; i++) {
        const rt_plan_step *s = &deitc_plan.steps[i];
        int rc = s->kind == RT_STEP_KERNEL ? d->launch(d, i)
                 : s->kind == RT_STEP_GEMM ? d->gemm(d, i)
                                           : d->zero(d, s->offset, s->bytes);
        if (rc || d->synchronize(d)) {
            snprintf(err, sizeof err, "step %d (%s): %s", i, s->what ? s->what : "?", d->err);
            fail = err;
        }
    }
    if (fail) fprintf(stderr, "op_kernel_check: %s\n", fail);
    int passed = 0, failed = 0;
    for (int c = 0; c < ncases; c++) {
        const check_case *k = &cases[c];
        double worst = 0;
        int bad = fail != NULL;
        for (int j = 0; j < k->nout && !bad; j++) {
            double e = compare(d, &data, k->out[j]);
            if (e < 0) bad = 1;
            else if (!(e <= worst)) worst = e;
        }
        bad = bad || !(worst <= k->tol);
        if (fail) printf("FAIL %s %s %s rel_l2=inf (not run: a step failed)\n", k->op, k->variant, k->dtype);
        else printf("%s %s %s %s rel_l2=%.3g tol=%.3g\n", bad ? "FAIL" : "PASS", k->op, k->variant, k->dtype, worst, k->tol);
        if (bad) failed++;
        else passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    rt_device_free(d);
    rt_tensor_set_free(&data);
    free(cases);
    return failed == 0 && passed > 0 ? 0 : 1;
}
