/* test_drop_path.c: stochastic depth (passes/drop_path.c, runtime/drop_path.c) on a hand-made
 * model of two residuals (images [B,D] -> r1 = x + x@W1 -> r2 = r1 + r1@W3 -> logits = r2@W2):
 *   - the identity input (every value 1) gives the plain graph's loss and gradients bit for bit;
 *   - the derivative with a mask that drops and rescales samples: every gradient against central
 *     finite differences of the loss in float64;
 *   - a residual dropped for every sample gives its branch's weight a zero gradient;
 *   - the expectation: the mean of the logits over many drawn masks is the undropped logits
 *     (the masks are 1/keep or 0: unbiased), and the masks' drop frequencies follow timm's
 *     linear rule (linspace(0, rate, depth)); the same (seed, step) draws the same.
 */
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/drop_path.h"
#include "tests/harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 3, D = 4, K = 3, R = 2 };
static double X[B * D], W1[D * D], W3[D * D], W2[D * K];
static const int64_t Y[B] = {0, 2, 1};

static ir_graph *model(void) {
    ir_graph *f = ir_graph_new();
    ir_loc loc = {0};
    ir_attrs a = {0};
    a.alpha = 1;
    int x = ir_leaf(f, IR_OP_INPUT, IR_F32, 2, (int64_t[]){B, D}, "images", loc);
    int w1 = ir_leaf(f, IR_OP_WEIGHT, IR_F32, 2, (int64_t[]){D, D}, "w1", loc);
    int w3 = ir_leaf(f, IR_OP_WEIGHT, IR_F32, 2, (int64_t[]){D, D}, "w3", loc);
    int w2 = ir_leaf(f, IR_OP_WEIGHT, IR_F32, 2, (int64_t[]){D, K}, "w2", loc);
    f->nodes[w1].flags |= IR_NODE_TRAINABLE;
    f->nodes[w2].flags |= IR_NODE_TRAINABLE;
    f->nodes[w3].flags |= IR_NODE_TRAINABLE;
    int h = ir_binary(f, IR_OP_MATMUL, x, w1, &a, "blocks.0.attn", loc);
    int r1 = ir_binary(f, IR_OP_ADD, x, h, NULL, "blocks.0.residual", loc);
    int h2 = ir_binary(f, IR_OP_MATMUL, r1, w3, &a, "blocks.0.mlp", loc);
    int r2 = ir_binary(f, IR_OP_ADD, r1, h2, NULL, "blocks.0.residual", loc);
    int y = ir_binary(f, IR_OP_MATMUL, r2, w2, &a, "logits", loc);
    ir_node_set_output(f, y, "logits");
    return f;
}

/* one step of g in float64 (or float32) with mask (NULL: g has no drop_path) */
static double run(const ir_graph *g, const double *mask, int f64, double *grads /* w1 w3 w2 */, double *logits) {
    ir_interp *it = ir_interp_new(g, f64);
    ir_interp_set_f64(it, ir_find(g, "images"), X);
    ir_interp_set_f64(it, ir_find(g, "w1"), W1);
    ir_interp_set_f64(it, ir_find(g, "w3"), W3);
    ir_interp_set_f64(it, ir_find(g, "w2"), W2);
    ir_interp_set_i64(it, ir_find(g, "labels"), Y);
    double opt[IR_OPT_SLOTS] = {0};
    opt[IR_OPT_BIAS_CORR1] = opt[IR_OPT_BIAS_CORR2] = 1, opt[IR_OPT_GRAD_SCALE] = 1;
    ir_interp_set_f64(it, ir_find(g, "opt"), opt);
    if (mask) ir_interp_set_f64(it, ir_find(g, "drop_path"), mask);
    CHECK(ir_interp_run(it) == 0);
    double loss;
    ir_interp_get_f64(it, ir_find(g, "loss"), &loss);
    if (grads) {
        ir_interp_get_f64(it, ir_find(g, "grad.w1"), grads);
        ir_interp_get_f64(it, ir_find(g, "grad.w3"), grads + D * D);
        ir_interp_get_f64(it, ir_find(g, "grad.w2"), grads + 2 * D * D);
    }
    if (logits) ir_interp_get_f64(it, ir_find(g, "logits"), logits);
    ir_interp_free(it);
    return loss;
}

int main(void) {
    for (int i = 0; i < B * D; i++) X[i] = sin(0.9 * i + 0.3);
    for (int i = 0; i < D * D; i++) W1[i] = 0.3 * cos(1.7 * i), W3[i] = 0.25 * sin(2.3 * i + 1);
    for (int i = 0; i < D * K; i++) W2[i] = 0.4 * cos(0.6 * i + 0.5);
    ir_graph *f = model();
    CHECK(pass_drop_path_count(f) == R);
    pass_train_options o;
    pass_train_options_default(&o);
    char err[512];
    ir_graph *plain = pass_training(f, &o, err, sizeof err);
    o.drop_path = 1;
    ir_graph *g = pass_training(f, &o, err, sizeof err);
    CHECK_MSG(plain && g, "%s", err);
    if (!plain || !g) return test_result();
    CHECK(ir_verify(g) == 0);
    enum { NG = 2 * D * D + D * K };
    double g0[NG], g1[NG], ones[R * B], l0[B * K], l1[B * K];
    for (int i = 0; i < R * B; i++) ones[i] = 1;
    double a = run(plain, NULL, 0, g0, l0), b = run(g, ones, 0, g1, l1);
    CHECK_MSG(a == b && memcmp(g0, g1, sizeof g0) == 0, "identity drop path: loss %.9g vs plain %.9g", b, a);
    /* derivative: sample 1 of residual 0 dropped, sample 0 of residual 1 dropped, others 1/keep */
    double mask[R * B] = {1 / 0.7, 0, 1 / 0.7, 0, 1 / 0.7, 1 / 0.7};
    run(g, mask, 1, g1, NULL);
    double *w[3] = {W1, W3, W2};
    int nw[3] = {D * D, D * D, D * K}, at = 0;
    double worst = 0;
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < nw[t]; i++, at++) {
            double keep = w[t][i], h = 1e-6;
            w[t][i] = keep + h;
            double lp = run(g, mask, 1, NULL, NULL);
            w[t][i] = keep - h;
            double lm = run(g, mask, 1, NULL, NULL);
            w[t][i] = keep;
            double fd = (lp - lm) / (2 * h), e = fabs(fd - g1[at]) / (fabs(fd) + 1e-8);
            if (e > worst) worst = e;
        }
    fprintf(stderr, "drop path: gradients vs finite differences, worst relative error %.2e\n", worst);
    CHECK(worst < 1e-6);
    /* a branch dropped for every sample: no gradient for its weight */
    double drop0[R * B] = {0, 0, 0, 1, 1, 1};
    run(g, drop0, 1, g1, NULL);
    int zero = 1;
    for (int i = 0; i < D * D; i++) zero &= g1[i] == 0;
    CHECK(zero);
    /* expectation over drawn masks (rate 0.3: with R = 2, one block, p = 0.3) */
    float m[R * B];
    double mean[B * K] = {0}, dm[R * B];
    int n = 4000;
    for (int s = 1; s <= n; s++) {
        rt_drop_path_fill(0.3, R, B, 11, s, m);
        for (int i = 0; i < R * B; i++) dm[i] = m[i];
        run(g, dm, 1, NULL, l1);
        for (int i = 0; i < B * K; i++) mean[i] += l1[i] / n;
    }
    run(plain, NULL, 1, NULL, l0);
    double num = 0, den = 0;
    for (int i = 0; i < B * K; i++) num += (mean[i] - l0[i]) * (mean[i] - l0[i]), den += l0[i] * l0[i];
    fprintf(stderr, "drop path: mean logits over %d masks vs undropped: relative L2 %.3g\n", n, sqrt(num / den));
    CHECK(sqrt(num / den) < 0.03);
    /* the masks: timm's linear rule, values 0 or 1/keep, frequencies, determinism */
    CHECK(rt_drop_path_prob(0.1, 0, 24) == 0 && rt_drop_path_prob(0.1, 1, 24) == 0);
    CHECK(fabs(rt_drop_path_prob(0.1, 23, 24) - 0.1) < 1e-15 && fabs(rt_drop_path_prob(0.1, 4, 24) - 0.1 * 2 / 11) < 1e-15);
    enum { RR = 24, BB = 64, STEPS = 400 };
    static float v[RR * BB], v2[RR * BB];
    int dropped[RR] = {0}, bad = 0;
    double sum[RR] = {0};
    for (int s = 1; s <= STEPS; s++) {
        rt_drop_path_fill(0.1, RR, BB, 5, s, v);
        for (int k = 0; k < RR; k++) {
            float keep = (float)(1 - rt_drop_path_prob(0.1, k, RR)), up = k < 2 ? 1.0f : 1.0f / keep;
            for (int bb = 0; bb < BB; bb++) {
                float x = v[k * BB + bb];
                bad += x != 0 && x != up;
                dropped[k] += x == 0;
                sum[k] += x;
            }
        }
    }
    CHECK(bad == 0);
    for (int k = 0; k < RR; k++) {
        double p = rt_drop_path_prob(0.1, k, RR), nn = (double)STEPS * BB, freq = dropped[k] / nn;
        CHECK_MSG(fabs(freq - p) <= 4 * sqrt(p * (1 - p) / nn) + 1e-12, "residual %d: dropped %.4f, rate %.4f", k, freq,
                  p);
        CHECK_MSG(fabs(sum[k] / nn - 1) < 0.02, "residual %d: mean mask %.4f, not 1", k, sum[k] / nn);
    }
    rt_drop_path_fill(0.1, RR, BB, 5, 17, v);
    rt_drop_path_fill(0.1, RR, BB, 5, 17, v2);
    CHECK(memcmp(v, v2, sizeof v) == 0);
    rt_drop_path_fill(0.1, RR, BB, 5, 18, v2);
    CHECK(memcmp(v, v2, sizeof v) != 0);
    ir_graph_free(plain);
    ir_graph_free(g);
    ir_graph_free(f);
    return test_result();
}
