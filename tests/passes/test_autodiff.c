/* test_autodiff.c: every op's derivative rule against central finite differences, in float64.
 *
 * The table below has one or more cases per op: each builds a tiny graph whose WEIGHT leaves
 * are the variables, the harness makes loss = sum(out * r) with random r, differentiates with
 * pass_autodiff and compares with (L(p+h) - L(p-h)) / 2h for every element of every variable.
 * Ops without a derivative must say so in the table: an op in ops.def that appears in no row
 * fails the test, so adding an op without a derivative test breaks the build's tests.
 */
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/harness.h"

#include <string.h>

static const ir_loc NOLOC = {0};

/* ---- graph helpers ------------------------------------------------------------------------ */

static int leaf(ir_graph *g, ir_op op, ir_dtype t, int ndim, const int64_t *s) {
    static int counter;
    char name[32];
    snprintf(name, sizeof name, "%s%d", op == IR_OP_WEIGHT ? "p" : "in", counter++);
    int id = ir_leaf(g, op, t, ndim, s, name, NOLOC);
    if (id < 0) fprintf(stderr, "leaf: %s\n", g->error);
    return id;
}
#define W(g, ...) leaf(g, IR_OP_WEIGHT, IR_F32, sizeof((int64_t[]){__VA_ARGS__}) / 8, (int64_t[]){__VA_ARGS__})

static int op1(ir_graph *g, ir_op op, int x, const ir_attrs *a) {
    return ir_unary(g, op, x, a, NULL, NOLOC);
}
static int op2(ir_graph *g, ir_op op, int x, int y, const ir_attrs *a) {
    return ir_binary(g, op, x, y, a, NULL, NOLOC);
}
static int shaped(ir_graph *g, ir_op op, int x, const ir_attrs *a, int ndim, const int64_t *s) {
    return ir_add(g, op, &x, 1, a, IR_F32, ndim, s, NULL, NOLOC);
}
static int cnst(ir_graph *g, double v) {
    ir_attrs a = {0};
    a.alpha = v;
    int64_t one[1] = {1};
    return ir_add(g, IR_OP_CONST, NULL, 0, &a, IR_F32, 1, one, NULL, NOLOC);
}
static int mm(ir_graph *g, int a, int b, int ta, int tb, double alpha) {
    ir_attrs at = {0};
    at.trans_a = ta;
    at.trans_b = tb;
    at.alpha = alpha;
    return op2(g, IR_OP_MATMUL, a, b, &at);
}

/* ---- the cases ----------------------------------------------------------------------------- */

typedef int (*build_fn)(ir_graph *g);

static int b_add_same(ir_graph *g) { return op2(g, IR_OP_ADD, W(g, 2, 3), W(g, 2, 3), NULL); }
static int b_add_bcast(ir_graph *g) { return op2(g, IR_OP_ADD, W(g, 2, 3, 4), W(g, 4), NULL); }
static int b_add_bcast2(ir_graph *g) { return op2(g, IR_OP_ADD, W(g, 2, 1, 4), W(g, 3, 1), NULL); }
static int b_add_twice(ir_graph *g) {
    int x = W(g, 3, 2);
    return op2(g, IR_OP_ADD, x, op2(g, IR_OP_MUL, x, x, NULL), NULL);
}
static int b_sub(ir_graph *g) { return op2(g, IR_OP_SUB, W(g, 2, 3), W(g, 3), NULL); }
static int b_sub2(ir_graph *g) { return op2(g, IR_OP_SUB, W(g, 1, 3), W(g, 2, 1), NULL); }
static int b_mul(ir_graph *g) { return op2(g, IR_OP_MUL, W(g, 2, 3), W(g, 2, 1), NULL); }
static int b_div(ir_graph *g) {
    int den = op2(g, IR_OP_ADD, W(g, 3), cnst(g, 3.0), NULL); /* in [2, 4] */
    return op2(g, IR_OP_DIV, W(g, 2, 3), den, NULL);
}
static int b_scale(ir_graph *g) {
    ir_attrs a = {0};
    a.alpha = -1.7;
    return op1(g, IR_OP_SCALE, W(g, 2, 3), &a);
}
static int b_sqrt(ir_graph *g) { return op1(g, IR_OP_SQRT, op2(g, IR_OP_ADD, W(g, 2, 3), cnst(g, 2.0), NULL), NULL); }
static int b_erf(ir_graph *g) { return op1(g, IR_OP_ERF, W(g, 2, 5), NULL); }
static int b_gelu(ir_graph *g) { return op1(g, IR_OP_GELU, W(g, 2, 5), NULL); }
static int b_gelu_tanh(ir_graph *g) {
    ir_attrs a = {0};
    a.gelu_tanh = 1;
    return op1(g, IR_OP_GELU, W(g, 2, 5), &a);
}
static int b_cast(ir_graph *g) {
    int x = W(g, 2, 3);
    int h = ir_add(g, IR_OP_CAST, &x, 1, NULL, IR_F16, 0, NULL, NULL, NOLOC);
    return ir_add(g, IR_OP_CAST, &h, 1, NULL, IR_F32, 0, NULL, NULL, NOLOC);
}
static int b_reshape(ir_graph *g) { return shaped(g, IR_OP_RESHAPE, W(g, 2, 6), NULL, 3, (int64_t[]){3, 2, 2}); }
static int b_permute(ir_graph *g) {
    ir_attrs a = {0};
    a.perm[0] = 2, a.perm[1] = 0, a.perm[2] = 1;
    return op1(g, IR_OP_PERMUTE, W(g, 2, 3, 4), &a);
}
static int b_flip_batch(ir_graph *g) { return op1(g, IR_OP_FLIP_BATCH, W(g, 3, 2, 2), NULL); }
static int b_expand(ir_graph *g) { return shaped(g, IR_OP_EXPAND, W(g, 3, 1), NULL, 3, (int64_t[]){2, 3, 4}); }
static int b_sum_to(ir_graph *g) { return shaped(g, IR_OP_SUM_TO, W(g, 2, 3, 4), NULL, 2, (int64_t[]){3, 1}); }
static int b_concat(ir_graph *g) {
    int x = W(g, 2, 1, 3), y = W(g, 2, 2, 3);
    int in[3] = {x, y, x};
    ir_attrs a = {0};
    a.axis = 1;
    return ir_add(g, IR_OP_CONCAT, in, 3, &a, IR_F32, 0, NULL, NULL, NOLOC);
}
static int b_slice(ir_graph *g) {
    ir_attrs a = {0};
    a.axis = 1, a.start = 1, a.end = 3;
    return op1(g, IR_OP_SLICE, W(g, 2, 4, 3), &a);
}
/* slices of one value: tiling it (-> one CONCAT), overlapping, plus another use of it */
static int slices(ir_graph *g, const int64_t (*r)[2], int k, int extra_use) {
    int x = W(g, 3, 2, 4), y = -1;
    for (int i = 0; i < k; i++) {
        ir_attrs a = {0};
        a.axis = 0, a.start = r[i][0], a.end = r[i][1];
        int s = op1(g, IR_OP_SLICE, x, &a);
        int t = op1(g, IR_OP_GELU, shaped(g, IR_OP_SUM_TO, s, NULL, 3, (int64_t[]){1, 2, 4}), NULL);
        y = y < 0 ? t : op2(g, IR_OP_MUL, y, t, NULL);
    }
    return extra_use ? op2(g, IR_OP_ADD, x, y, NULL) : y;
}
static int b_slices_tile(ir_graph *g) { return slices(g, (const int64_t[][2]){{1, 2}, {0, 1}, {2, 3}}, 3, 0); }
static int b_slices_overlap(ir_graph *g) { return slices(g, (const int64_t[][2]){{0, 2}, {1, 3}}, 2, 1); }
static int b_slices_gap(ir_graph *g) { return slices(g, (const int64_t[][2]){{0, 1}, {2, 3}}, 2, 0); }
static int b_slices_tile_use(ir_graph *g) { return slices(g, (const int64_t[][2]){{0, 1}, {1, 3}}, 2, 1); }
static int b_pad(ir_graph *g) {
    ir_attrs a = {0};
    a.axis = 0, a.start = 1, a.end = 3;
    return shaped(g, IR_OP_PAD, W(g, 2, 3), &a, 2, (int64_t[]){4, 3});
}
static int b_patchify(ir_graph *g) {
    ir_attrs a = {0};
    a.patch = 2;
    return op1(g, IR_OP_PATCHIFY, W(g, 2, 2, 4, 6), &a);
}
static int b_unpatchify(ir_graph *g) {
    ir_attrs a = {0};
    a.patch = 2;
    return shaped(g, IR_OP_UNPATCHIFY, W(g, 2, 6, 8), &a, 4, (int64_t[]){2, 2, 4, 6});
}
static int b_mm_nn(ir_graph *g) { return mm(g, W(g, 3, 4), W(g, 4, 5), 0, 0, 1.0); }
static int b_mm_nt(ir_graph *g) { return mm(g, W(g, 3, 4), W(g, 5, 4), 0, 1, 0.5); }
static int b_mm_tn(ir_graph *g) { return mm(g, W(g, 4, 3), W(g, 4, 5), 1, 0, -2.0); }
static int b_mm_tt(ir_graph *g) { return mm(g, W(g, 4, 3), W(g, 5, 4), 1, 1, 1.0); }
static int b_mm_batched(ir_graph *g) { return mm(g, W(g, 2, 3, 4), W(g, 2, 4, 5), 0, 0, 1.0); }
static int b_mm_bcast(ir_graph *g) { return mm(g, W(g, 2, 1, 3, 4), W(g, 3, 5, 4), 0, 1, 0.3); }
static int b_mm_shared_nt(ir_graph *g) { return mm(g, W(g, 2, 3, 4), W(g, 5, 4), 0, 1, 1.0); }
static int b_mm_shared_nn(ir_graph *g) { return mm(g, W(g, 2, 3, 4), W(g, 4, 5), 0, 0, 0.7); }
static int b_mm_shared_tn(ir_graph *g) { return mm(g, W(g, 2, 4, 3), W(g, 4, 5), 1, 0, 1.0); }
static int b_mm_shared_tt(ir_graph *g) { return mm(g, W(g, 2, 4, 3), W(g, 5, 4), 1, 1, 1.0); }
static int b_mm_shared_a(ir_graph *g) { return mm(g, W(g, 3, 4), W(g, 2, 4, 5), 0, 0, 1.0); }
static int b_mm_shared_a_t(ir_graph *g) { return mm(g, W(g, 4, 3), W(g, 2, 5, 4), 1, 1, 1.0); }
static int b_mm_self(ir_graph *g) {
    int x = W(g, 2, 3, 4);
    return mm(g, x, x, 0, 1, 0.5);
}
static int b_reduce_mean(ir_graph *g) {
    ir_attrs a = {0};
    a.axis = 1;
    return op1(g, IR_OP_REDUCE_MEAN, W(g, 2, 3, 4), &a);
}
static int b_layer_norm(ir_graph *g) {
    ir_attrs a = {0};
    a.eps = 1e-5;
    int in[3] = {W(g, 2, 3, 5), W(g, 5), W(g, 5)};
    return ir_add(g, IR_OP_LAYER_NORM, in, 3, &a, IR_F32, 0, NULL, NULL, NOLOC);
}
/* LayerNorm with its row statistics as outputs: y alone (what training uses: dx from the
 * kept statistics), and y, mean and rstd all read (the statistics' own derivatives) */
static int ln_stats(ir_graph *g, int *mean, int *rstd) {
    ir_attrs a = {0}, p = {0};
    a.eps = 1e-5;
    int in[3] = {W(g, 2, 3, 5), W(g, 5), W(g, 5)};
    int s = ir_add(g, IR_OP_LAYER_NORM_STATS, in, 3, &a, IR_F32, 0, NULL, NULL, NOLOC);
    p.output = 1;
    *mean = op1(g, IR_OP_PROJECT, s, &p);
    p.output = 2;
    *rstd = op1(g, IR_OP_PROJECT, s, &p);
    p.output = 0;
    return op1(g, IR_OP_PROJECT, s, &p);
}
static int b_ln_stats_y(ir_graph *g) {
    int mean, rstd;
    return ln_stats(g, &mean, &rstd);
}
static int b_ln_stats_all(ir_graph *g) {
    int mean, rstd, y = ln_stats(g, &mean, &rstd);
    ir_attrs a = {0};
    a.alpha = 0.7;
    return op2(g, IR_OP_ADD, op2(g, IR_OP_MUL, y, op1(g, IR_OP_SCALE, mean, &a), NULL), rstd, NULL);
}
static int b_softmax(ir_graph *g) { return op1(g, IR_OP_SOFTMAX, W(g, 2, 3, 5), NULL); }
static int cross_entropy(ir_graph *g, double smoothing) {
    ir_attrs a = {0};
    a.smoothing = smoothing;
    int labels = leaf(g, IR_OP_INPUT, IR_I64, 1, (int64_t[]){3});
    int opt = ir_leaf(g, IR_OP_INPUT, IR_F32, 1, (int64_t[]){IR_OPT_SLOTS}, "opt", NOLOC); /* smoothing slot */
    int in[3] = {W(g, 3, 5), labels, opt};
    return ir_add(g, IR_OP_CROSS_ENTROPY, in, 3, &a, IR_F32, 0, NULL, "ce", NOLOC);
}
static int b_ce(ir_graph *g) { return cross_entropy(g, 0.0); }
static int b_ce_smooth(ir_graph *g) { return cross_entropy(g, 0.1); }
static int b_sum_squares(ir_graph *g) {
    int x = W(g, 2, 3);
    int in[3] = {x, W(g, 4), x};
    return ir_add(g, IR_OP_SUM_SQUARES, in, 3, NULL, IR_F32, 0, NULL, NULL, NOLOC);
}
/* a small attention-shaped chain: several rules composed, values reused */
static int b_chain(ir_graph *g) {
    int x = W(g, 2, 3, 4), wq = W(g, 4, 4);
    int q = mm(g, x, wq, 0, 1, 1.0);
    int s = op1(g, IR_OP_SOFTMAX, mm(g, q, x, 0, 1, 0.5), NULL);
    int y = mm(g, s, q, 0, 0, 1.0);
    ir_attrs a = {0};
    a.eps = 1e-6;
    int in[3] = {op2(g, IR_OP_ADD, y, x, NULL), W(g, 4), W(g, 4)};
    return op1(g, IR_OP_GELU, ir_add(g, IR_OP_LAYER_NORM, in, 3, &a, IR_F32, 0, NULL, NULL, NOLOC), NULL);
}

/* fused attention over qkv [2,5,12] (2 heads of 2): O (output 0) alone, as training reads it;
 * and qkv made by a product that also feeds the result beside O (gradients summed) */
static int attention(ir_graph *g, int qkv) {
    ir_attrs a = {0}, p = {0};
    a.heads = 2;
    a.alpha = 0.6;
    int att = ir_add(g, IR_OP_ATTENTION, &qkv, 1, &a, IR_F32, 0, NULL, NULL, NOLOC);
    return op1(g, IR_OP_PROJECT, att, &p);
}
static int b_attention(ir_graph *g) { return attention(g, W(g, 2, 5, 12)); }
static int b_attention_qkv(ir_graph *g) {
    int x = W(g, 2, 5, 4), qkv = mm(g, x, W(g, 12, 4), 0, 1, 1.0);
    return op2(g, IR_OP_MUL, attention(g, qkv), x, NULL);
}

typedef struct {
    ir_op op;
    const char *what;
    build_fn build;   /* NULL: the op has no derivative, for the reason in `what` */
} fd_case;

static const fd_case cases[] = {
    {IR_OP_INPUT, "leaf", NULL},
    {IR_OP_WEIGHT, "leaf", NULL},
    {IR_OP_STATE, "leaf", NULL},
    {IR_OP_CONST, "leaf", NULL},
    {IR_OP_ADD, "same shape", b_add_same},
    {IR_OP_ADD, "broadcast [2,3,4]+[4]", b_add_bcast},
    {IR_OP_ADD, "broadcast [2,1,4]+[3,1]", b_add_bcast2},
    {IR_OP_ADD, "x + x*x (fan-out)", b_add_twice},
    {IR_OP_SUB, "broadcast [2,3]-[3]", b_sub},
    {IR_OP_SUB, "broadcast [1,3]-[2,1]", b_sub2},
    {IR_OP_MUL, "broadcast [2,3]*[2,1]", b_mul},
    {IR_OP_DIV, "broadcast [2,3]/[3]", b_div},
    {IR_OP_SCALE, "alpha -1.7", b_scale},
    {IR_OP_SQRT, "sqrt", b_sqrt},
    {IR_OP_ERF, "erf", b_erf},
    {IR_OP_GELU, "erf", b_gelu},
    {IR_OP_GELU, "tanh", b_gelu_tanh},
    {IR_OP_GELU_GRAD, "backward op (no second order)", NULL},
    {IR_OP_ERF_GRAD, "backward op (no second order)", NULL},
    {IR_OP_CAST, "f32 -> f16 -> f32", b_cast},
    {IR_OP_RESHAPE, "[2,6] -> [3,2,2]", b_reshape},
    {IR_OP_PERMUTE, "(2,0,1)", b_permute},
    {IR_OP_FLIP_BATCH, "[3,2,2] rows reversed", b_flip_batch},
    {IR_OP_EXPAND, "[3,1] -> [2,3,4]", b_expand},
    {IR_OP_SUM_TO, "[2,3,4] -> [3,1]", b_sum_to},
    {IR_OP_CONCAT, "axis 1, an input twice", b_concat},
    {IR_OP_SLICE, "axis 1 [1,3)", b_slice},
    {IR_OP_SLICE, "3 slices tiling (q,k,v)", b_slices_tile},
    {IR_OP_SLICE, "overlapping + other use", b_slices_overlap},
    {IR_OP_SLICE, "with a gap", b_slices_gap},
    {IR_OP_SLICE, "tiling + other use", b_slices_tile_use},
    {IR_OP_PAD, "axis 0 [1,3)", b_pad},
    {IR_OP_PATCHIFY, "p=2", b_patchify},
    {IR_OP_UNPATCHIFY, "p=2", b_unpatchify},
    {IR_OP_MATMUL, "a @ b", b_mm_nn},
    {IR_OP_MATMUL, "a @ b^T alpha", b_mm_nt},
    {IR_OP_MATMUL, "a^T @ b alpha", b_mm_tn},
    {IR_OP_MATMUL, "a^T @ b^T", b_mm_tt},
    {IR_OP_MATMUL, "batched", b_mm_batched},
    {IR_OP_MATMUL, "broadcast batch [2,1]x[3]", b_mm_bcast},
    {IR_OP_MATMUL, "shared weight x @ W^T", b_mm_shared_nt},
    {IR_OP_MATMUL, "shared weight x @ W", b_mm_shared_nn},
    {IR_OP_MATMUL, "shared weight x^T @ W", b_mm_shared_tn},
    {IR_OP_MATMUL, "shared weight x^T @ W^T", b_mm_shared_tt},
    {IR_OP_MATMUL, "shared left W @ x", b_mm_shared_a},
    {IR_OP_MATMUL, "shared left W^T @ x^T", b_mm_shared_a_t},
    {IR_OP_MATMUL, "x @ x^T", b_mm_self},
    {IR_OP_MATMUL, "attention-like chain", b_chain},
    {IR_OP_REDUCE_MEAN, "axis 1", b_reduce_mean},
    {IR_OP_LAYER_NORM, "x, gamma, beta", b_layer_norm},
    {IR_OP_LAYER_NORM_STATS, "y only (dx from the statistics)", b_ln_stats_y},
    {IR_OP_LAYER_NORM_STATS, "y * 0.7 mean + rstd", b_ln_stats_all},
    {IR_OP_PROJECT, "the three outputs of layer_norm_stats", b_ln_stats_all},
    {IR_OP_LAYER_NORM_DX, "backward op (no second order)", NULL},
    {IR_OP_LAYER_NORM_DX_STATS, "backward op (no second order)", NULL},
    {IR_OP_LAYER_NORM_DGAMMA, "backward op (no second order)", NULL},
    {IR_OP_SOFTMAX, "last dim", b_softmax},
    {IR_OP_SOFTMAX_GRAD, "backward op (no second order)", NULL},
    {IR_OP_CROSS_ENTROPY, "no smoothing", b_ce},
    {IR_OP_CROSS_ENTROPY, "smoothing 0.1", b_ce_smooth},
    {IR_OP_CROSS_ENTROPY_GRAD, "backward op (no second order)", NULL},
    {IR_OP_SUM_SQUARES, "an input twice", b_sum_squares},
    {IR_OP_CLIP_COEF, "optimizer (gradient clipping)", NULL},
    {IR_OP_ADAMW, "optimizer update", NULL},
    {IR_OP_LOSS_SCALE_OPT, "optimizer (loss scaling)", NULL},
    {IR_OP_LOSS_SCALE_UPDATE, "optimizer (loss scaler update)", NULL},
    {IR_OP_EMA, "optimizer (EMA of the weights)", NULL},
    {IR_OP_ATTENTION, "qkv [2,5,12], 2 heads, O", b_attention},
    {IR_OP_ATTENTION, "qkv = x W^T, O * x", b_attention_qkv},
    {IR_OP_ATTENTION_BWD, "backward op (no second order)", NULL},
};

/* ---- the harness ------------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double uniform(void) { /* [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / (double)(1ull << 52) - 1.0;
}

static double run_loss(ir_interp *it, int loss) {
    double v;
    if (ir_interp_run(it)) {
        fprintf(stderr, "interp: %s\n", ir_interp_error(it));
        return NAN;
    }
    ir_interp_get_f64(it, loss, &v);
    return v;
}

/* Returns the worst relative error over the case's variables (or +inf on failure). */
static double check_case(const fd_case *c) {
    ir_graph *g = ir_graph_new();
    int out = c->build(g);
    if (out < 0) {
        fprintf(stderr, "build: %s\n", g->error);
        ir_graph_free(g);
        return INFINITY;
    }
    int64_t one[1] = {1};
    const ir_node *on = &g->nodes[out];
    int r = leaf(g, IR_OP_INPUT, IR_F32, on->ndim, on->shape);
    int prod = op2(g, IR_OP_MUL, out, r, NULL);
    int loss = shaped(g, IR_OP_SUM_TO, prod, NULL, 1, one);
    int seed = cnst(g, 1.0);
    int wrt[32], grads[32], nwrt = 0, nforward = g->n;
    for (int i = 0; i < nforward; i++)
        if (g->nodes[i].op == IR_OP_WEIGHT && nwrt < 32) wrt[nwrt++] = i;
    double worst = INFINITY;
    if (loss < 0 || seed < 0 || pass_autodiff(g, loss, seed, wrt, nwrt, grads) || ir_verify(g)) {
        fprintf(stderr, "autodiff: %s\n", g->error);
        ir_graph_free(g);
        return worst;
    }
    ir_interp *it = ir_interp_new(g, 1);
    for (int i = 0; i < nforward + 2; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_WEIGHT && n->op != IR_OP_INPUT) continue;
        int64_t k = ir_numel(n);
        double *v = malloc(sizeof(double) * (size_t)k);
        for (int64_t j = 0; j < k; j++)
            v[j] = n->dtype == IR_I64 ? (double)(j * 7 % 5) : uniform(); /* labels in [0,5) */
        if (n->name && !strcmp(n->name, "opt")) /* the opt slots: the case's label smoothing */
            for (int64_t j = 0; j < k; j++)
                v[j] = j == IR_OPT_LABEL_SMOOTHING ? g->nodes[out].attrs.smoothing : 0;
        ir_interp_set_f64(it, i, v);
        free(v);
    }
    worst = 0;
    if (isnan(run_loss(it, loss))) worst = INFINITY;
    for (int w = 0; w < nwrt && worst < INFINITY; w++) {
        int64_t k = ir_numel(&g->nodes[wrt[w]]);
        double *p = malloc(sizeof(double) * (size_t)k), *an = malloc(sizeof(double) * (size_t)k);
        double *fd = malloc(sizeof(double) * (size_t)k);
        if (grads[w] < 0) {
            memset(an, 0, sizeof(double) * (size_t)k);
        } else {
            run_loss(it, loss);
            ir_interp_get_f64(it, grads[w], an);
        }
        ir_interp_get_f64(it, wrt[w], p);
        const double h = 1e-6;
        for (int64_t j = 0; j < k; j++) {
            double save = p[j];
            p[j] = save + h;
            ir_interp_set_f64(it, wrt[w], p);
            double lp = run_loss(it, loss);
            p[j] = save - h;
            ir_interp_set_f64(it, wrt[w], p);
            double lm = run_loss(it, loss);
            p[j] = save;
            ir_interp_set_f64(it, wrt[w], p);
            fd[j] = (lp - lm) / (2 * h);
        }
        double num = 0, den = 0;
        for (int64_t j = 0; j < k; j++) {
            num += (an[j] - fd[j]) * (an[j] - fd[j]);
            den += fd[j] * fd[j];
        }
        double err = sqrt(num) / (sqrt(den) > 1e-3 ? sqrt(den) : 1e-3);
        if (!(err <= worst)) worst = isnan(err) ? INFINITY : err;
        free(p);
        free(an);
        free(fd);
    }
    ir_interp_free(it);
    ir_graph_free(g);
    return worst;
}

int main(void) {
    int covered[IR_OP_COUNT] = {0};
    int ncases = (int)(sizeof cases / sizeof *cases);
    for (int i = 0; i < ncases; i++) covered[cases[i].op] = 1;
    for (int op = 0; op < IR_OP_COUNT; op++)
        CHECK_MSG(covered[op], "op '%s' has neither a finite-difference case nor a 'no derivative' "
                               "entry in the table of tests/passes/test_autodiff.c", ir_op_name(op));
    double worst_all = 0;
    for (int i = 0; i < ncases; i++) {
        const fd_case *c = &cases[i];
        if (!c->build) {
            printf("%-20s %-32s no derivative\n", ir_op_name(c->op), c->what);
            continue;
        }
        double err = check_case(c);
        printf("%-20s %-32s rel err %.2e\n", ir_op_name(c->op), c->what, err);
        CHECK_MSG(err < 1e-6, "%s (%s): analytic vs finite-difference relative error %.3e", ir_op_name(c->op),
                  c->what, err);
        if (err > worst_all) worst_all = err;
    }
    printf("worst relative error: %.3e over %d cases\n", worst_all, ncases);

    /* an op without a rule on the path is an error, not a silent zero */
    ir_graph *g = ir_graph_new();
    int x = W(g, 2, 3), one[1];
    int d = op2(g, IR_OP_GELU_GRAD, x, x, NULL);
    int loss = shaped(g, IR_OP_SUM_TO, d, NULL, 1, (int64_t[]){1}), seed = cnst(g, 1.0);
    CHECK(pass_autodiff(g, loss, seed, &x, 1, one) == -1 && strstr(g->error, "gelu_grad"));
    printf("no rule: %s\n", g->error);
    ir_graph_free(g);
    return test_result();
}
