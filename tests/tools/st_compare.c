/* st_compare.c: compares tensors of two safetensors files by relative L2 error.
 *
 *   st_compare [--delta BASE [--qkv-key BOUND]] GOT EXPECTED TOL [NAME|PREFIX*]...
 *
 * With --delta, compares the changes (GOT - BASE) and (EXPECTED - BASE) instead: after a few
 * optimizer steps the weights barely move, so this is what shows the update itself is right.
 * Each NAME must exist in both files (PREFIX* matches every tensor of EXPECTED whose name starts
 * with PREFIX, and at least one must); with no names, every tensor of EXPECTED is compared;
 * !PATTERN leaves out the tensors it matches.
 * With --qkv-key (weights' changes after a few AdamW steps), a *qkv.bias is checked by thirds:
 * its query and value thirds by relative L2 like any tensor, and its key third on its own terms:
 * the key bias's gradient is exactly zero (softmax ignores a shift shared by all keys), so Adam
 * turns rounding noise into steps of up to lr each, in PyTorch's float32 as in ours: every change
 * there, in GOT and in EXPECTED, must be at most BOUND (steps * lr) in magnitude.
 * EXPECTED's tensor may be named differently in GOT with GOTNAME=EXPNAME. Prints one line per
 * tensor with its error and the worst; exits 1 if any error exceeds TOL or anything is missing. */
#include <fnmatch.h>
#include <string.h>

#include "runtime/rt.h"
#include "tests/harness.h"

static const rt_tensor_set *delta_base; /* --delta: compare changes from this set */
static double qkv_key_bound;             /* --qkv-key: bound on the key bias third's changes */

static int is_qkv_bias(const char *name) {
    size_t n = strlen(name);
    return n >= 8 && strcmp(name + n - 8, "qkv.bias") == 0;
}

/* A qkv bias's changes x (got), y (expected), n = 3 * third: the query and value thirds by
 * relative L2, the key third against the bound (INFINITY when past it). */
static double compare_qkv_bias(const float *x, const float *y, int64_t n, const char *name) {
    int64_t t = n / 3;
    float *a = malloc(sizeof(float) * (size_t)(2 * t + 1)), *b = malloc(sizeof(float) * (size_t)(2 * t + 1));
    memcpy(a, x, sizeof(float) * (size_t)t), memcpy(a + t, x + 2 * t, sizeof(float) * (size_t)t);
    memcpy(b, y, sizeof(float) * (size_t)t), memcpy(b + t, y + 2 * t, sizeof(float) * (size_t)t);
    double e = test_rel_l2(a, b, 2 * t), worst = 0;
    for (int64_t k = t; k < 2 * t; k++) {
        worst = fabs(x[k]) > worst ? fabs(x[k]) : worst;
        worst = fabs(y[k]) > worst ? fabs(y[k]) : worst;
    }
    printf("  %-40s key third: largest change %.3e (bound %.1e); query and value thirds:\n", name, worst, qkv_key_bound);
    free(a);
    free(b);
    return worst <= qkv_key_bound * (1 + 1e-6) ? e : INFINITY;
}

/* subtracts base's tensor `name` (when --delta is on) from x */
static int subtract_base(float *x, const char *name, int64_t n) {
    if (!delta_base) return 0;
    const rt_tensor *t = rt_tensor_set_find(delta_base, name);
    if (!t || rt_tensor_numel(t) != n) return -1;
    float *b = malloc(sizeof(float) * (size_t)(n ? n : 1));
    int rc = rt_tensor_to_f32(t, b);
    for (int64_t i = 0; !rc && i < n; i++) x[i] -= b[i];
    free(b);
    return rc;
}

static double compare(const rt_tensor *a, const rt_tensor *b, const char *name) {
    int64_t n = rt_tensor_numel(b);
    if (rt_tensor_numel(a) != n) {
        printf("  %-40s size differs: %lld vs %lld\n", name, (long long)rt_tensor_numel(a), (long long)n);
        return INFINITY;
    }
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1)), *y = malloc(sizeof(float) * (size_t)(n ? n : 1));
    double e;
    if (rt_tensor_to_f32(a, x) || rt_tensor_to_f32(b, y)) {
        int64_t *xi = malloc(sizeof(int64_t) * (size_t)(n ? n : 1)), *yi = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
        e = (rt_tensor_to_i64(a, xi) || rt_tensor_to_i64(b, yi) ||
             memcmp(xi, yi, sizeof(int64_t) * (size_t)n)) ? INFINITY : 0;
        free(xi);
        free(yi);
    } else if (subtract_base(x, name, n) || subtract_base(y, name, n)) {
        printf("  %-40s not in the --delta base\n", name);
        e = INFINITY;
    } else if (qkv_key_bound > 0 && is_qkv_bias(name) && n % 3 == 0) {
        e = compare_qkv_bias(x, y, n, name);
    } else {
        e = test_rel_l2(x, y, n);
    }
    free(x);
    free(y);
    return e;
}

int main(int argc, char **argv) {
    rt_tensor_set base = {0};
    char err0[512];
    if (argc > 2 && strcmp(argv[1], "--delta") == 0) {
        if (rt_safetensors_read(argv[2], &base, err0, sizeof err0)) {
            fprintf(stderr, "%s\n", err0);
            return 1;
        }
        delta_base = &base;
        argv += 2;
        argc -= 2;
        if (argc > 2 && strcmp(argv[1], "--qkv-key") == 0) {
            qkv_key_bound = atof(argv[2]);
            argv += 2;
            argc -= 2;
        }
    }
    if (argc < 4) {
        fprintf(stderr, "usage: st_compare [--delta BASE [--qkv-key BOUND]] GOT EXPECTED TOL [NAME|PREFIX*|GOTNAME=EXPNAME]...\n");
        return 2;
    }
    char err[512];
    rt_tensor_set got, exp;
    if (rt_safetensors_read(argv[1], &got, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    if (rt_safetensors_read(argv[2], &exp, err, sizeof err)) { fprintf(stderr, "%s\n", err); rt_tensor_set_free(&got); return 1; }
    double tol = atof(argv[3]), worst = 0;
    const char *worst_name = "";
    int failures = 0, compared = 0;
    for (int t = 0; t < exp.count; t++) {
        const char *ename = exp.tensors[t].name, *gname = ename;
        int wanted = argc == 4, excluded = 0;
        for (int i = 4; i < argc; i++)
            if (argv[i][0] == '!') {
                excluded |= fnmatch(argv[i] + 1, ename, 0) == 0;
                wanted |= i == 4 && argc == 5; /* only exclusions: everything else */
            }
        if (excluded) continue;
        for (int i = 4; i < argc && !wanted; i++) {
            if (argv[i][0] == '!') continue;
            const char *eq = strchr(argv[i], '=');
            if (eq && strcmp(eq + 1, ename) == 0) {
                static char buf[256];
                snprintf(buf, sizeof buf, "%.*s", (int)(eq - argv[i]), argv[i]);
                gname = buf;
                wanted = 1;
            } else if (!eq) {
                wanted = fnmatch(argv[i], ename, 0) == 0;
            }
        }
        if (!wanted) continue;
        compared++;
        const rt_tensor *g = rt_tensor_set_find(&got, gname);
        if (!g) {
            printf("  %-40s MISSING in %s\n", gname, argv[1]);
            failures++;
            continue;
        }
        double e = compare(g, &exp.tensors[t], ename);
        printf("  %-40s rel L2 %.3e%s\n", ename, e, !(e <= tol) ? "  > tolerance" : "");
        if (!(e <= tol)) failures++;
        if (e > worst) worst = e, worst_name = ename;
    }
    for (int i = 4; i < argc; i++) { /* every explicit name must have matched something */
        if (argv[i][0] == '!') continue;
        int matched = 0;
        const char *pat = strchr(argv[i], '=') ? strchr(argv[i], '=') + 1 : argv[i];
        for (int t = 0; t < exp.count; t++) matched |= fnmatch(pat, exp.tensors[t].name, 0) == 0;
        if (!matched) {
            printf("  %-40s MISSING in %s\n", pat, argv[2]);
            failures++;
        }
    }
    printf("compared %d tensors, worst %.3e (%s), tolerance %.1e: %s\n", compared, worst, worst_name,
           tol, failures ? "FAIL" : "ok");
    rt_tensor_set_free(&got);
    rt_tensor_set_free(&exp);
    rt_tensor_set_free(&base);
    return failures || !compared ? 1 : 0;
}
