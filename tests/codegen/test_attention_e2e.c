/* test_attention_e2e.c: the qkv-attention fusion end to end on the emu target.
 *
 *   test_attention_e2e micro   deit_micro (N = 17, 2 heads of 32): the EXE compiled with
 *                              --fuse qkv-attention against the one with --fuse none, 3 steps
 *                              from init.safetensors on batch.safetensors
 *   test_attention_e2e odd     N = 26, 3 heads of 16 (N not a multiple of any tile: 16 queries,
 *                              32 keys), random data, the EXE's own initial weights
 * Each: losses within 1e-5 (relative L2) and every weight within 1e-5 of the unfused EXE's,
 * except the key third of each qkv bias (its gradient is exactly zero in exact arithmetic:
 * softmax ignores a shift shared by all keys, so Adam turns rounding noise into +-lr steps; it
 * is held to 3 steps of lr absolute); the fused EXE run twice writes byte-identical weights;
 * kernels.cu has the fused kernels and no softmax. Temporary files under a fresh directory. */
#include <math.h>
#include <string.h>

#include "runtime/rt.h"
#include "tests/harness.h"

static char tmp[512];

static const char *MICRO = "-D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2";
static const char *ODD = "-D img_size=40 -D patch_size=8 -D num_classes=10 -D embed_dim=48 -D depth=2 -D num_heads=3";
static const double LR = 1e-3;

static int read_losses(const char *path, float *out, int max) {
    static char s[1 << 16];
    test_slurp(path, s, sizeof s);
    int n = 0;
    for (char *p = s; n < max && (p = strstr(p, "\"loss\":")); p += 7) out[n++] = strtof(p + 7, NULL);
    return n;
}

/* compiles `defs` with `fuse` into tmp/exe_FUSE (emit dir tmp/emit_FUSE) */
static int compile(const char *defs, const char *fuse) {
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    int rc = test_sh("'%s' compile '%s/models/deit_tiny.yaml' %s --fuse %s --batch 4 --target emu -o '%s/exe_%s' "
                     "--emit-dir '%s/emit_%s'",
                     bin, src, defs, fuse, tmp, fuse, tmp, fuse);
    CHECK_MSG(rc == 0, "compile --fuse %s failed", fuse);
    return rc;
}

/* tmp/exe_FUSE trains 3 steps from init: tmp/TAG.safetensors, the losses */
static int train(const char *fuse, const char *tag, const char *data, const char *init, float *losses) {
    int rc = test_sh("'%s/exe_%s' train --data '%s' --steps 3 --no-shuffle --lr %g --weight-decay 0.05 --init '%s' "
                     "--save '%s/%s.safetensors' --metrics '%s/%s.jsonl'",
                     tmp, fuse, data, LR, init, tmp, tag, tmp, tag);
    CHECK_MSG(rc == 0, "training --fuse %s failed", fuse);
    if (rc) return -1;
    char path[1100];
    snprintf(path, sizeof path, "%s/%s.jsonl", tmp, tag);
    CHECK(read_losses(path, losses, 3) == 3);
    return 0;
}

static int read_set(const char *tag, rt_tensor_set *s) {
    char path[1100], err[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", tmp, tag);
    int rc = rt_safetensors_read(path, s, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    return rc;
}

static void compare(const rt_tensor_set *got, const rt_tensor_set *want, const char *what) {
    double worst = 0, worst_key = 0;
    const char *worst_name = "";
    CHECK(got->count == want->count && want->count > 20);
    for (int i = 0; i < want->count; i++) {
        const rt_tensor *w = &want->tensors[i], *g = rt_tensor_set_find(got, w->name);
        CHECK_MSG(g && rt_tensor_numel(g) == rt_tensor_numel(w), "%s: '%s' missing", what, w->name);
        if (!g || rt_tensor_numel(g) != rt_tensor_numel(w)) continue;
        int64_t n = rt_tensor_numel(w);
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        CHECK(rt_tensor_to_f32(g, a) == 0 && rt_tensor_to_f32(w, b) == 0);
        double e;
        if (strstr(w->name, "qkv.bias")) { /* q and v thirds relative; the key third absolute */
            int64_t t = n / 3;
            e = fmax(test_rel_l2(a, b, (long)t), test_rel_l2(a + 2 * t, b + 2 * t, (long)t));
            for (int64_t k = t; k < 2 * t; k++) worst_key = fmax(worst_key, fabs(a[k] - b[k]));
        } else {
            e = test_rel_l2(a, b, (long)n);
        }
        CHECK_MSG(e <= 1e-5, "%s: %s relative error %.3g > 1e-5", what, w->name, e);
        if (e > worst) worst = e, worst_name = w->name;
        free(a);
        free(b);
    }
    printf("%s: worst relative error %.3g (%s); key third of the qkv biases: at most %.3g apart\n", what, worst, worst_name,
           worst_key);
    CHECK_MSG(worst_key <= 3 * 2 * LR, "%s: key bias %.3g apart", what, worst_key);
}

static int same_bytes(const char *a, const char *b) {
    return test_sh("cmp -s '%s/%s.safetensors' '%s/%s.safetensors'", tmp, a, tmp, b) == 0;
}

/* the unfused EXE exists (tmp/exe_none) */
static void run_case(const char *defs, const char *data, const char *init) {
    float lf[3], lf2[3], ln[3];
    char path[1100];
    if (compile(defs, "qkv-attention") || train("qkv-attention", "fused", data, init, lf) ||
        train("qkv-attention", "fused2", data, init, lf2) || train("none", "none", data, init, ln))
        return;
    CHECK_MSG(same_bytes("fused", "fused2"), "two runs of the fused EXE wrote different weights");
    double e = test_rel_l2(lf, ln, 3);
    printf("losses fused %.7f %.7f %.7f, unfused %.7f %.7f %.7f: relative L2 %.3g\n", lf[0], lf[1], lf[2], ln[0], ln[1],
           ln[2], e);
    CHECK_MSG(e <= 1e-5, "losses: relative L2 %.3g", e);
    rt_tensor_set f = {0}, n = {0};
    if (read_set("fused", &f) == 0 && read_set("none", &n) == 0) compare(&f, &n, "weights after 3 steps, fused vs unfused");
    rt_tensor_set_free(&f);
    rt_tensor_set_free(&n);
    static char cu[1 << 22];
    snprintf(path, sizeof path, "%s/emit_qkv-attention/kernels.cu", tmp);
    test_slurp(path, cu, sizeof cu);
    CHECK_MSG(strstr(cu, "_attention(") && strstr(cu, "_attention_bwd_dkv(") && strstr(cu, "_attention_bwd_dq(") &&
                  !strstr(cu, "_softmax("),
              "kernels.cu of the fused EXE: attention kernels missing or a softmax left");
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "micro") && strcmp(argv[1], "odd"))) {
        fprintf(stderr, "usage: test_attention_e2e micro|odd\n");
        return 2;
    }
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/deitc_att_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmp)) return 2;
    char data[1100], init[1100];
    if (strcmp(argv[1], "micro") == 0) {
        snprintf(data, sizeof data, "%s/deit_micro/batch.safetensors", test_env("DEITC_TESTDATA"));
        snprintf(init, sizeof init, "%s/deit_micro/init.safetensors", test_env("DEITC_TESTDATA"));
        if (compile(MICRO, "none") == 0) run_case(MICRO, data, init);
    } else { /* random images, labels; initial weights: the EXE's own trained 40 steps, so that
              * attention is past uniform (at timm's init the scores are all near 0, and the q
              * and k gradients, differences of nearly equal terms, are mostly rounding noise
              * that Adam's first steps turn into +-lr) */
        enum { B = 4, S = 40 };
        static float img[B * 3 * S * S];
        int64_t labels[B] = {3, 7, 0, 9};
        uint64_t seed = 777;
        for (int i = 0; i < B * 3 * S * S; i++) img[i] = (float)(rt_uniform01(&seed) * 2 - 1);
        rt_tensor ts[2] = {{"images", RT_F32, 4, {B, 3, S, S}, sizeof img, img},
                           {"labels", RT_I64, 1, {B}, sizeof labels, labels}};
        char err[1024];
        snprintf(data, sizeof data, "%s/data.safetensors", tmp);
        snprintf(init, sizeof init, "%s/init.safetensors", tmp);
        CHECK_MSG(rt_safetensors_write(data, ts, 2, NULL, err, sizeof err) == 0, "%s", err);
        int rc = compile(ODD, "none") ||
                 test_sh("'%s/exe_none' train --data '%s' --steps 40 --no-shuffle --lr 3e-3 --weight-decay 0 --save '%s'",
                         tmp, data, init);
        CHECK_MSG(rc == 0, "making the initial weights failed");
        if (rc == 0) run_case(ODD, data, init);
    }
    test_sh("rm -rf '%s'", tmp);
    return test_result();
}
