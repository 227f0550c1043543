/* test_mixed.c: a mixed-precision executable against the interpreter running the same graph.
 *
 * `test_rt_mixed fp16|bf16 [hd64]`: `deitc compile --target emu --precision P` of the deit_micro
 * oracle model (head dim 32, 17 tokens; hd64: the img24_h1_d1 case, head dim 64, 10 tokens), `EXE train` (3 AdamW steps from the oracle's weights, --save) and `EXE eval`, against
 * `deitc run --precision P --steps 3` (the interpreter rounds every value to its node's dtype on
 * store, as the kernels do) and against PyTorch's float64 oracle.
 *
 * Tolerances, exe vs interpreter: the losses within 1e-3 relative (measured fp16 2.4e-4, bf16
 * 4.0e-4; hd64 fp16 2.5e-5), the weights within 1e-2 rel L2 (measured fp16 5.5e-3,
 * blocks.0.attn.proj.bias; bf16 1.6e-4; hd64 fp16 5.1e-4), qkv biases aside (their key third has an exactly zero gradient, so Adam moves it by
 * +-lr times the sign of rounding noise). Not identical, because the kernels compute in float
 * and the interpreter in double before the same rounding to f16/bf16: now and then a value
 * lands on the other side of a 16-bit rounding boundary (one step: 2^-11 relative in fp16,
 * 2^-8 in bf16), and Adam's sign-like first steps amplify that into the weights. Against the
 * oracle: the losses within 2e-2 (fp16) and 5e-2 (bf16), as the issue asks (measured 8e-5 and
 * 1.2e-3 in the interpreter). The plan holds a 16-bit copy of every matrix weight (copy_of),
 * its GEMMs take 16-bit operands only (the scores' rows padded to 16 bytes), and a saved run is
 * the f32 masters. */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <string.h>

#define MICRO "-D img_size=32 -D patch_size=8 -D depth=2 -D num_classes=10 -D embed_dim=64 -D num_heads=2"
#define HD64 "-D img_size=24 -D patch_size=8 -D depth=1 -D num_classes=6 -D embed_dim=64 -D num_heads=1"

static double json_loss(const char *line) {
    const char *p = strstr(line, "\"loss\":");
    double v = -1;
    if (!p || sscanf(p, "\"loss\":%lf", &v) != 1) return -1;
    return v;
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "fp16") && strcmp(argv[1], "bf16"))) {
        fprintf(stderr, "usage: test_rt_mixed fp16|bf16\n");
        return 2;
    }
    const char *prec = argv[1];
    int bf16 = strcmp(prec, "bf16") == 0, hd64 = argc > 2 && strcmp(argv[2], "hd64") == 0;
    const char *cs = hd64 ? "deit_img24_h1_d1" : "deit_micro", *defs = hd64 ? HD64 : MICRO;
    int copies = hd64 ? 7 : 11, weights = hd64 ? 19 : 30; /* 16-bit copies; weights but the qkv biases */
    const char *data = test_env("DEITC_TESTDATA"), *src = test_env("DEITC_SOURCE_DIR"), *bin = test_env("DEITC_BIN");
    const char *tmp = getenv("TMPDIR");
    char dir[256], cmd[8192], path[600];
    snprintf(dir, sizeof dir, "%s/deitc_mixed_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return 1;
    int rc = test_sh("'%s' compile '%s/models/deit_tiny.yaml' %s --batch 4 --target emu --precision %s "
                     "--emit-dir '%s/src' -o '%s/micro' > '%s/compile.txt' 2>&1",
                     bin, src, defs, prec, dir, dir, dir);
    CHECK_MSG(rc == 0, "deitc compile failed (%d); see %s/compile.txt", rc, dir);
    if (rc) return test_result();
    /* 16-bit weight copies (patch_embed, cls_token, 4 per block, head) made from their masters;
     * every GEMM with 16-bit operands */
    CHECK(test_sh("[ $(grep -c '\"%s\\..*RT_ROLE_STATE.*copy_of = ' '%s/src/plan.c') -eq %d ]", bf16 ? "bf16" : "f16", dir,
                  copies) == 0);
    CHECK(test_sh("! grep -q '.a_type = RT_F32' '%s/src/plan.c' && grep -q '.a_type = RT_%s' '%s/src/plan.c'", dir,
                  bf16 ? "BF16" : "F16", dir) == 0);
    /* the unfused attention's scores rows (17 or 10 tokens) padded to 24 or 16 elements (16-byte
     * rows): a plan of the same model with --fuse none (the cuda target's, NVRTC only; the
     * executable above runs the fused attention) */
    CHECK(test_sh("'%s' compile '%s/models/deit_tiny.yaml' %s --batch 4 --target cuda --arch sm_80 --precision %s "
                  "--fuse none --emit-dir '%s/unfused' -o '%s/unfused.exe' > '%s/unfused.txt' 2>&1",
                  bin, src, defs, prec, dir, dir, dir) == 0);
    CHECK(test_sh("grep 'attn.scores\", .kind = RT_STEP_GEMM' '%s/unfused/plan.c' | grep -q '.ldc = %d, .stride_a = [0-9]*, "
                  ".stride_b = [0-9]*, .stride_c = %d,'", dir, hd64 ? 16 : 24, hd64 ? 10 * 16 : 17 * 24) == 0);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && ./micro train --init '%s/%s/init.safetensors' --data '%s/%s/batch.safetensors' "
             "--steps 3 --lr 0.001 --weight-decay 0.05 --no-shuffle --save after.safetensors --metrics m.jsonl "
             "> train.txt 2>&1 && ./micro eval --init '%s/%s/init.safetensors' "
             "--data '%s/%s/batch.safetensors' > eval.txt 2>&1",
             dir, data, cs, data, cs, data, cs, data, cs);
    CHECK(test_sh("%s", cmd) == 0);
    snprintf(cmd, sizeof cmd,
             "'%s' run '%s/models/deit_tiny.yaml' %s --precision %s --weights '%s/%s/init.safetensors' "
             "--input '%s/%s/batch.safetensors' --steps 3 --lr 0.001 --weight-decay 0.05 "
             "--losses '%s/losses.safetensors' -o '%s/interp.safetensors' > '%s/run.txt' 2>&1",
             bin, src, defs, prec, data, cs, data, cs, dir, dir, dir);
    CHECK(test_sh("%s", cmd) == 0);

    char err[512];
    rt_tensor_set got, want, losses, expected;
    memset(&got, 0, sizeof got);
    memset(&want, 0, sizeof want);
    memset(&losses, 0, sizeof losses);
    memset(&expected, 0, sizeof expected);
    snprintf(path, sizeof path, "%s/after.safetensors", dir);
    int ok = rt_safetensors_read(path, &got, err, sizeof err) == 0;
    snprintf(path, sizeof path, "%s/interp.safetensors", dir);
    ok &= rt_safetensors_read(path, &want, err, sizeof err) == 0;
    snprintf(path, sizeof path, "%s/losses.safetensors", dir);
    ok &= rt_safetensors_read(path, &losses, err, sizeof err) == 0;
    snprintf(path, sizeof path, "%s/%s/expected.safetensors", data, cs);
    ok &= rt_safetensors_read(path, &expected, err, sizeof err) == 0;
    CHECK_MSG(ok, "%s", err);
    const rt_tensor *il = ok ? rt_tensor_set_find(&losses, "losses") : NULL;
    const rt_tensor *ol = ok ? rt_tensor_set_find(&expected, "losses") : NULL;
    CHECK(il && ol && rt_tensor_numel(il) == 3 && rt_tensor_numel(ol) == 3);
    if (ok && il && ol && rt_tensor_numel(il) == 3 && rt_tensor_numel(ol) == 3) {
        int matched = 0;
        double worst = 0;
        const char *worst_name = "";
        for (int i = 0; i < got.count; i++) {
            const rt_tensor *g = &got.tensors[i], *w = rt_tensor_set_find(&want, g->name);
            CHECK_MSG(g->dtype == RT_F32, "saved '%s' is not the f32 master", g->name);
            CHECK_MSG(w && rt_tensor_numel(g) == rt_tensor_numel(w), "the interpreter lacks '%s'", g->name);
            if (!w || rt_tensor_numel(g) != rt_tensor_numel(w) || strstr(g->name, "qkv.bias")) continue;
            double e = test_rel_l2(g->data, w->data, (long)rt_tensor_numel(w));
            if (e > worst) worst = e, worst_name = g->name;
            matched++;
        }
        fprintf(stderr, "%s %s: %d weights after 3 steps: worst rel L2 %.2e (%s) against deitc run --precision %s\n", cs,
                prec, matched, worst, worst_name, prec);
        CHECK(matched == weights && worst < 1e-2);
        /* the losses of the 3 steps (metrics) and eval's (the first step's forward) */
        const float *li = il->data, *lo = ol->data;
        char buf[4096];
        snprintf(path, sizeof path, "%s/m.jsonl", dir);
        FILE *f = fopen(path, "r");
        for (int s = 0; s < 3; s++) {
            double l = f && fgets(buf, sizeof buf, f) ? json_loss(buf) : -1;
            fprintf(stderr, "%s %s: step %d loss: exe %.7g, interpreter %.7g, oracle %.7g\n", cs, prec, s + 1, l, li[s], lo[s]);
            CHECK(fabs(l - li[s]) < 1e-3 * fabs(li[s]));
            CHECK(fabs(l - lo[s]) < (bf16 ? 5e-2 : 2e-2) * fabs(lo[s]));
        }
        if (f) fclose(f);
        snprintf(path, sizeof path, "%s/eval.txt", dir);
        test_slurp(path, buf, sizeof buf);
        double le = json_loss(buf);
        CHECK_MSG(fabs(le - li[0]) < 1e-3 * fabs(li[0]), "eval loss %g, interpreter %g", le, li[0]);
    }
    rt_tensor_set_free(&got);
    rt_tensor_set_free(&want);
    rt_tensor_set_free(&losses);
    rt_tensor_set_free(&expected);
    if (!test_failures) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        test_sh("%s", cmd);
    } else {
        fprintf(stderr, "kept %s for inspection\n", dir);
    }
    return test_result();
}
