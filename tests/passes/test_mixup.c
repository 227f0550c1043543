/* test_mixup.c: Mixup / CutMix in the training graph (passes/mixup.c) and their host draws
 * (runtime/mixup.c), on a hand-made model (images [B,C,H,W] -> reshape -> matmul -> logits):
 *   - the mixed images (node "images.mixed") are, bit for bit, timm's x*lam + flip(x)*(1-lam)
 *     and its CutMix box copy, computed here by hand in float;
 *   - the loss is SoftTargetCrossEntropy of timm's mixup_target (smoothing folded in), computed
 *     here by hand in double from the mixed images;
 *   - the identity mix (w 1, partner 0, lam 1) gives the unmixed graph's loss and gradients
 *     bit for bit;
 *   - the CutMix box and its lam correction against a hand computation of timm's rand_bbox;
 *   - the draws: the same (seed, step) the same, others not; Beta(a, a)'s mean and variance
 *     over many draws; mix_prob and switch_prob as frequencies.
 */
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/mixup.h"
#include "tests/harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 4, C = 2, H = 6, W = 5, K = 3, HW = H * W, D = C * H * W };
static const double SMOOTH = 0.1;

static ir_graph *model(void) {
    ir_graph *f = ir_graph_new();
    ir_loc loc = {0};
    int x = ir_leaf(f, IR_OP_INPUT, IR_F32, 4, (int64_t[]){B, C, H, W}, "images", loc);
    int w = ir_leaf(f, IR_OP_WEIGHT, IR_F32, 2, (int64_t[]){D, K}, "w", loc);
    f->nodes[w].flags |= IR_NODE_TRAINABLE;
    int r = ir_reshape(f, x, 2, (int64_t[]){B, D}, "flat", loc);
    ir_attrs a = {0};
    a.alpha = 1;
    int y = ir_binary(f, IR_OP_MATMUL, r, w, &a, "logits", loc);
    ir_node_set_output(f, y, "logits");
    return f;
}

static float X[B * D], WT[D * K];
static const int64_t Y[B] = {0, 2, 1, 1};

/* runs one training step of g with mix (NULL: g has no mix input); loss, mixed images, grad */
static void run(const ir_graph *g, const float *mix, float *loss, float *mixed, float *grad) {
    ir_interp *it = ir_interp_new(g, 0);
    ir_interp_set_f32(it, ir_find(g, "images"), X);
    ir_interp_set_f32(it, ir_find(g, "w"), WT);
    ir_interp_set_i64(it, ir_find(g, "labels"), Y);
    float opt[IR_OPT_SLOTS] = {0};
    opt[IR_OPT_BIAS_CORR1] = opt[IR_OPT_BIAS_CORR2] = 1, opt[IR_OPT_GRAD_SCALE] = 1;
    opt[IR_OPT_LABEL_SMOOTHING] = (float)SMOOTH; /* the run's label smoothing: the compile's default here */
    ir_interp_set_f32(it, ir_find(g, "opt"), opt);
    if (mix) ir_interp_set_f32(it, ir_find(g, "mix"), mix);
    CHECK(ir_interp_run(it) == 0);
    ir_interp_get_f32(it, ir_find(g, "loss"), loss);
    ir_interp_get_f32(it, ir_find(g, "grad.w"), grad);
    if (mixed) {
        int m = -1;
        for (int i = 0; i < g->n; i++)
            if (g->nodes[i].name && !strcmp(g->nodes[i].name, "images.mixed")) m = i;
        CHECK(m >= 0);
        if (m >= 0) ir_interp_get_f32(it, m, mixed);
    }
    ir_interp_free(it);
}

/* timm: SoftTargetCrossEntropy(mixed @ w, lam * smooth(onehot(y)) + (1 - lam) * smooth(onehot(flip y))) */
static double soft_loss(const float *mixed, double lam) {
    double total = 0, off = SMOOTH / K, on = 1 - SMOOTH + off;
    for (int b = 0; b < B; b++) {
        double z[K], mx = -1e300, s = 0;
        for (int k = 0; k < K; k++) {
            z[k] = 0;
            for (int d = 0; d < D; d++) z[k] += (double)mixed[b * D + d] * WT[d * K + k];
            if (z[k] > mx) mx = z[k];
        }
        for (int k = 0; k < K; k++) s += exp(z[k] - mx);
        for (int k = 0; k < K; k++) {
            double t = lam * (k == Y[b] ? on : off) + (1 - lam) * (k == Y[B - 1 - b] ? on : off);
            total += -t * (z[k] - mx - log(s));
        }
    }
    return total / B;
}

static void graph_checks(void) {
    for (int i = 0; i < B * D; i++) X[i] = (float)sin(1.3 * i + 0.2);
    for (int i = 0; i < D * K; i++) WT[i] = (float)(0.05 * cos(0.7 * i));
    ir_graph *f = model();
    pass_train_options o;
    pass_train_options_default(&o);
    o.label_smoothing = SMOOTH;
    char err[512];
    ir_graph *plain = pass_training(f, &o, err, sizeof err);
    o.mixup = 1;
    ir_graph *mixg = pass_training(f, &o, err, sizeof err);
    CHECK_MSG(plain && mixg, "%s", err);
    if (!plain || !mixg) return;
    CHECK(ir_verify(mixg) == 0);
    float mix[2 * HW + 2], loss0, loss1, mixed[B * D], g0[D * K], g1[D * K];
    /* identity: the plain graph's bits */
    rt_mix_fill(NULL, H, W, mix);
    run(plain, NULL, &loss0, NULL, g0);
    run(mixg, mix, &loss1, mixed, g1);
    CHECK_MSG(loss0 == loss1, "identity mix: loss %.9g vs plain %.9g", loss1, loss0);
    CHECK(memcmp(g0, g1, sizeof g0) == 0);
    CHECK(memcmp(mixed, X, sizeof X) == 0);
    /* mixup: timm's x.mul_(lam).add_(x.flip(0).mul_(1 - lam)) in float, bit for bit */
    rt_mix_draw d = {0};
    d.lam = 0.3183098861837907;
    rt_mix_fill(&d, H, W, mix);
    run(mixg, mix, &loss1, mixed, g1);
    int exact = 1;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < D; i++)
            exact &= mixed[b * D + i] == X[b * D + i] * (float)d.lam + X[(B - 1 - b) * D + i] * (float)(1 - d.lam);
    CHECK_MSG(exact, "mixup: the mixed images are not timm's");
    double want = soft_loss(mixed, d.lam);
    CHECK_MSG(fabs(loss1 - want) <= 1e-6 * fabs(want), "mixup loss %.9g, SoftTargetCrossEntropy by hand %.9g", loss1, want);
    CHECK(loss1 != loss0);
    /* cutmix: a box from the partner, lam corrected */
    rt_mix_cutmix_box(0.55, H, W, 1, 4, &d);
    /* by hand: sqrt(0.45) = 0.67: cut 4 x 3; y [1-2, 1+2) -> [0,3), x [4-1, 4+2) -> [3,5) */
    CHECK(d.cutmix && d.yl == 0 && d.yh == 3 && d.xl == 3 && d.xh == 5);
    CHECK(d.lam == 1 - 6.0 / 30.0);
    rt_mix_fill(&d, H, W, mix);
    run(mixg, mix, &loss1, mixed, g1);
    exact = 1;
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int in = y >= 0 && y < 3 && x >= 3 && x < 5, i = (c * H + y) * W + x;
                    exact &= mixed[b * D + i] == X[(in ? B - 1 - b : b) * D + i];
                }
    CHECK_MSG(exact, "cutmix: the mixed images are not timm's box copy");
    want = soft_loss(mixed, d.lam);
    CHECK_MSG(fabs(loss1 - want) <= 1e-6 * fabs(want), "cutmix loss %.9g, by hand %.9g", loss1, want);
    ir_graph_free(plain);
    ir_graph_free(mixg);
    ir_graph_free(f);
}

static void draw_checks(void) {
    rt_mix_options o;
    rt_mix_options_default(&o);
    rt_mix_draw a, b;
    rt_mix_draw_step(&o, 1, 1, 224, 224, &a);
    CHECK(!rt_mix_enabled(&o) && a.lam == 1 && !a.cutmix);
    o.mixup_alpha = 0.8, o.cutmix_alpha = 1.0;
    rt_mix_draw_step(&o, 7, 12, 224, 224, &a);
    rt_mix_draw_step(&o, 7, 12, 224, 224, &b);
    CHECK(memcmp(&a, &b, sizeof a) == 0); /* a resumed run draws the same */
    int differ = 0, cut = 0, n = 20000;
    double sum = 0, sq = 0;
    for (int s = 1; s <= n; s++) {
        rt_mix_draw_step(&o, 7, s, 224, 224, &b);
        differ += b.lam != a.lam;
        cut += b.cutmix;
        if (b.cutmix) CHECK(b.yl >= 0 && b.yh <= 224 && b.xl >= 0 && b.xh <= 224 && b.lam >= 0 && b.lam <= 1);
    }
    CHECK(differ > n - 10);
    CHECK_MSG(fabs(cut / (double)n - 0.5) < 0.02, "switch prob 0.5: %d of %d steps cutmix", cut, n);
    rt_mix_rng r;
    rt_mix_rng_init(&r, 3, 4);
    for (int i = 0; i < n; i++) {
        double v = rt_mix_beta(&r, 0.8);
        CHECK(v >= 0 && v <= 1);
        sum += v, sq += v * v;
    }
    double mean = sum / n, var = sq / n - mean * mean, want_var = 1 / (4 * (2 * 0.8 + 1));
    CHECK_MSG(fabs(mean - 0.5) < 0.01 && fabs(var - want_var) < 0.005, "Beta(0.8,0.8): mean %g var %g (want 0.5, %g)",
              mean, var, want_var);
    o.prob = 0.25;
    int mixed = 0;
    for (int s = 1; s <= n; s++) {
        rt_mix_draw_step(&o, 9, s, 32, 32, &b);
        mixed += b.lam != 1;
    }
    CHECK_MSG(fabs(mixed / (double)n - 0.25) < 0.02, "mix prob 0.25: %d of %d steps mixed", mixed, n);
}

/* `test_mixup mix CUTMIX LAM H W CY CX`: for check_mixup_timm.py, the draw (box, corrected lam)
 * and the "mix" input, as text: "yl yh xl xh lam" then the 2*H*W + 2 floats */
static int print_mix(char **argv) {
    int cutmix = atoi(argv[2]);
    double lam = atof(argv[3]);
    int64_t h = atol(argv[4]), w = atol(argv[5]);
    if (h < 1 || w < 1 || h > 4096 || w > 4096) return 2;
    rt_mix_draw d = {0};
    d.lam = lam;
    if (cutmix) rt_mix_cutmix_box(lam, h, w, atol(argv[6]), atol(argv[7]), &d);
    float *mix = malloc(sizeof(float) * (size_t)(2 * h * w + 2));
    if (!mix) return 1;
    rt_mix_fill(&d, h, w, mix);
    printf("%lld %lld %lld %lld %.17g\n", (long long)d.yl, (long long)d.yh, (long long)d.xl, (long long)d.xh, d.lam);
    for (int64_t i = 0; i < 2 * h * w + 2; i++) printf("%.9g\n", mix[i]);
    free(mix);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 8 && !strcmp(argv[1], "mix")) return print_mix(argv);
    graph_checks();
    draw_checks();
    return test_result();
}
