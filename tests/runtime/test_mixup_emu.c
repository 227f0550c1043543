/* test_mixup_emu.c: Mixup / CutMix end to end: `EXE train --mixup 0.8 --cutmix 1.0` of an emu
 * executable compiled with `deitc compile --mix` (the mixup_build fixture) against the
 * interpreter (`deitc run --mix --steps 1`) given the same step's draw (runtime/mixup.c, the
 * draws are a function of (seed, step)), once for a step that CutMixes and once for one that
 * Mixups (the second with stochastic depth, --drop-path 0.5: the same masks given to the
 * interpreter; the executable is compiled with --stochastic-depth too): the loss within 1e-4 and every weight after the AdamW step within 5e-3 (rel. L2);
 * the mixed step differs from an unmixed one (so the mixing took place); eval of the same
 * executable is unmixed; a bad --mixup-prob is refused.
 *   usage: test_mixup_emu EXE
 */
#include "runtime/drop_path.h"
#include "runtime/mixup.h"
#include "runtime/rt.h"
#include "tests/harness.h"

#include <stdlib.h>
#include <string.h>

#define MICRO "-D img_size=32 -D patch_size=8 -D depth=2 -D num_classes=10 -D embed_dim=64 -D num_heads=2"
#define COMMON "--steps 1 --lr 0.001 --weight-decay 0.05"
enum { HW = 32 * 32 };

static char dir[256];
static const char *data, *src, *bin;

static int read_set(const char *name, rt_tensor_set *s) {
    char path[600], err[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (name[0] == '/') snprintf(path, sizeof path, "%s", name);
    if (rt_safetensors_read(path, s, err, sizeof err)) return fprintf(stderr, "%s\n", err), -1;
    return 0;
}

/* worst relative L2 over the weights of a (all in b) */
static double worst_rel(const char *pa, const char *pb) {
    rt_tensor_set a, b;
    if (read_set(pa, &a)) return 1e9;
    if (read_set(pb, &b)) return rt_tensor_set_free(&a), 1e9;
    double worst = 0;
    for (int i = 0; i < a.count; i++) {
        const rt_tensor *x = &a.tensors[i], *y = rt_tensor_set_find(&b, x->name);
        if (!y || y->nbytes != x->nbytes || x->dtype != RT_F32) {
            worst = 1e9;
            continue;
        }
        double r = test_rel_l2(x->data, y->data, (long)(x->nbytes / 4));
        if (r > worst) worst = r;
    }
    if (!a.count) worst = 1e9;
    rt_tensor_set_free(&a);
    rt_tensor_set_free(&b);
    return worst;
}

/* in.safetensors: the oracle batch plus this draw's "mix" and step 1's drop path masks */
static int write_input(const rt_mix_draw *d, double rate, uint64_t seed) {
    char path[600], err[600];
    rt_tensor_set set;
    snprintf(path, sizeof path, "%s/deit_micro/batch.safetensors", data);
    if (read_set(path, &set)) return -1;
    static float mix[2 * HW + 2];
    rt_mix_fill(d, 32, 32, mix);
    static float dp[4 * 4]; /* 4 residuals (depth 2) x batch 4 */
    rt_drop_path_fill(rate, 4, 4, seed, 1, dp);
    rt_tensor t[4];
    memset(t, 0, sizeof t);
    t[3].name = "drop_path", t[3].dtype = RT_F32, t[3].ndim = 1, t[3].shape[0] = 16, t[3].nbytes = sizeof dp;
    t[3].data = dp;
    t[0] = *rt_tensor_set_find(&set, "images");
    t[1] = *rt_tensor_set_find(&set, "labels");
    t[2].name = "mix", t[2].dtype = RT_F32, t[2].ndim = 1, t[2].shape[0] = 2 * HW + 2, t[2].nbytes = sizeof mix;
    t[2].data = mix;
    snprintf(path, sizeof path, "%s/in.safetensors", dir);
    int rc = rt_safetensors_write(path, t, 4, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    rt_tensor_set_free(&set);
    return rc;
}

static double first_loss(const char *metrics) {
    char path[600], buf[4096];
    snprintf(path, sizeof path, "%s/%s", dir, metrics);
    test_slurp(path, buf, sizeof buf);
    const char *l = strstr(buf, "\"loss\":");
    return l ? atof(l + 7) : 1e9;
}

static void one(const char *exe, uint64_t seed, const rt_mix_draw *d, double rate, const char *what) {
    CHECK(write_input(d, rate, seed) == 0);
    CHECK(test_sh("cd '%s' && '%s' train --no-shuffle --init '%s/deit_micro/init.safetensors' --data "
                  "'%s/deit_micro/batch.safetensors' " COMMON " --seed %llu --mixup 0.8 --cutmix 1.0 --drop-path %g "
                  "--metrics e.jsonl --save e.safetensors > e.txt && '%s' run '%s/models/deit_tiny.yaml' " MICRO
                  " --mix --stochastic-depth --weights "
                  "'%s/deit_micro/init.safetensors' --input in.safetensors " COMMON " -o i.safetensors --losses "
                  "il.safetensors > i.txt",
                  dir, exe, data, data, (unsigned long long)seed, rate, bin, src, data) == 0);
    rt_tensor_set il;
    double li = 1e9, le = first_loss("e.jsonl");
    if (!read_set("il.safetensors", &il)) {
        const rt_tensor *t = rt_tensor_set_find(&il, "losses");
        if (t && t->dtype == RT_F32) li = ((const float *)t->data)[0];
        rt_tensor_set_free(&il);
    }
    double w = worst_rel("i.safetensors", "e.safetensors");
    fprintf(stderr, "%s (seed %llu, lam %.6f): loss emu %.7f interpreter %.7f; weights worst rel. L2 %.2e\n", what,
            (unsigned long long)seed, d->lam, le, li, w);
    CHECK_MSG(fabs(le - li) <= 1e-4 * fabs(li), "%s: loss emu %g vs interpreter %g", what, le, li);
    CHECK_MSG(w <= 5e-3, "%s: weights emu vs interpreter rel. L2 %g", what, w);
    /* unmixed: another loss, other weights */
    CHECK(test_sh("cd '%s' && '%s' train --no-shuffle --init '%s/deit_micro/init.safetensors' --data "
                  "'%s/deit_micro/batch.safetensors' " COMMON " --seed %llu --metrics u.jsonl --save u.safetensors > u.txt",
                  dir, exe, data, data, (unsigned long long)seed) == 0);
    double lu = first_loss("u.jsonl");
    CHECK_MSG(fabs(lu - le) > 1e-4 * fabs(lu), "%s: the mixed loss %g is the unmixed one %g", what, le, lu);
    CHECK(worst_rel("u.safetensors", "e.safetensors") > 1e-4);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_mixup_emu EXE\n");
        return 2;
    }
    data = test_env("DEITC_TESTDATA"), src = test_env("DEITC_SOURCE_DIR"), bin = test_env("DEITC_BIN");
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/deitc_mixup_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return 1;
    rt_mix_options o;
    rt_mix_options_default(&o);
    o.mixup_alpha = 0.8, o.cutmix_alpha = 1.0;
    uint64_t cut = 0, mix = 0;
    rt_mix_draw dc, dm, d;
    for (uint64_t s = 1; s < 200 && (!cut || !mix); s++) {
        rt_mix_draw_step(&o, s, 1, 32, 32, &d);
        if (d.cutmix && !cut && d.lam < 0.9 && d.lam > 0.1) cut = s, dc = d;
        if (!d.cutmix && !mix && d.lam < 0.9 && d.lam > 0.1) mix = s, dm = d;
    }
    CHECK(cut && mix);
    if (cut) one(argv[1], cut, &dc, 0, "cutmix");
    if (mix) one(argv[1], mix, &dm, 0.5, "mixup + drop path 0.5");
    /* resumed: the draws are a function of (seed, step): byte-identical to the straight run */
    /* (the step-2 checkpoint of a 4-step run: a run of 2 steps, resumed with --resume-override for
     * the step count; constant lr, so the steps are those of the 4-step run) */
    CHECK(test_sh("cd '%s' && '%s' train --init '%s/deit_micro/init.safetensors' --data "
                  "'%s/deit_micro/batch.safetensors' --steps 2 --seed 5 --mixup 0.8 --cutmix 1.0 --drop-path 0.3 --checkpoint ca.st "
                  "> ra.txt && '%s' train --init "
                  "'%s/deit_micro/init.safetensors' --data '%s/deit_micro/batch.safetensors' --steps 4 --seed 5 --mixup "
                  "0.8 --cutmix 1.0 --drop-path 0.3 --save full.safetensors > full.txt",
                  dir, argv[1], data, data, argv[1], data, data) == 0);
    CHECK(test_sh("cd '%s' && '%s' train --data '%s/deit_micro/batch.safetensors' --steps 4 --seed 5 --mixup 0.8 "
                  "--cutmix 1.0 --drop-path 0.3 --resume ca.st --resume-override --save resumed.safetensors > res.txt 2>&1 && "
                  "grep -q 'resuming from' res.txt && cmp -s resumed.safetensors full.safetensors",
                  dir, argv[1], data) == 0);
    /* and a mixed 4-step run is not the unmixed one */
    CHECK(test_sh("cd '%s' && '%s' train --init '%s/deit_micro/init.safetensors' --data "
                  "'%s/deit_micro/batch.safetensors' --steps 4 --seed 5 --save plain4.safetensors > p4.txt && "
                  "! cmp -s plain4.safetensors full.safetensors", dir, argv[1], data, data) == 0);
    /* a resume with other mixup options is refused */
    CHECK(test_sh("cd '%s' && ! '%s' train --data '%s/deit_micro/batch.safetensors' --steps 4 --seed 5 --mixup 0.5 "
                  "--cutmix 1.0 --drop-path 0.3 --resume ca.st > bad2.txt 2>&1 && grep -q mixup bad2.txt",
                  dir, argv[1], data) == 0);
    CHECK(test_sh("'%s' train --synthetic --steps 1 --mixup-prob 2 2> '%s/bad.txt'; test $? = 2 && grep -q "
                  "'mixup-prob must be in' '%s/bad.txt'", argv[1], dir, dir) == 0);
    if (!test_failures) test_sh("rm -rf '%s'", dir);
    else fprintf(stderr, "kept %s for inspection\n", dir);
    return test_result();
}
