/* test_fusion_attention.c: the qkv-attention fusion (passes/fusion_attention.c).
 *
 *   models     on the YAML models (DeiT-micro's sizes, N = 5, and N = 26 with 3 heads of 16)
 *              and the ONNX exports of deit_micro (opset 13 and 17): one ATTENTION and one
 *              ATTENTION_BWD per block, no softmax left, the attention reads the qkv bias add
 *              (the GEMM's output) directly and the output projection reads O directly; the
 *              training step (f64 interpreter: loss, logits, every gradient) equals the
 *              unfused one to 1e-10; --fuse none and --fuse all say off and on
 *   patterns   a hand-built chain is fused and keeps its value; with q and k swapped, with
 *              the probabilities also an output, or with k from another tensor it is not
 *              fused (the graph keeps its softmax)
 */
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/harness.h"

#include <math.h>
#include <string.h>

static const ir_loc NOLOC = {0};

static pass_result *run(ir_graph *g, const char *fuse, const char *after) {
    char err[1024];
    pass_options o;
    pass_options_default(&o);
    o.fuse = fuse;
    pass_result *r = pass_pipeline_run(g, &o, after, err, sizeof err);
    CHECK_MSG(r != NULL, "--fuse %s: %s", fuse, err);
    return r;
}

static int count_op(const ir_graph *g, ir_op op) {
    int k = 0;
    for (int i = 0; i < g->n; i++) k += g->nodes[i].op == op;
    return k;
}

/* the f64 interpreter on g, leaves bound by name to fixed values */
static ir_interp *run_interp(const ir_graph *g) {
    ir_interp *it = ir_interp_new(g, 1);
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_WEIGHT && n->op != IR_OP_INPUT) continue;
        int64_t m = ir_numel(n);
        double *v = malloc(sizeof(double) * (size_t)m);
        size_t h = strlen(n->name);
        for (int64_t j = 0; j < m; j++)
            v[j] = n->dtype == IR_I64 ? (double)(j % 3)
                   : strcmp(n->name, "opt") == 0 ? 1.0
                                                 : 0.8 * sin(0.37 * (double)j + (double)h);
        ir_interp_set_f64(it, i, v);
        free(v);
    }
    CHECK_MSG(ir_interp_run(it) == 0, "%s", ir_interp_error(it));
    return it;
}

/* the worst relative difference of b's outputs from a's, by name; *count compared */
static double compare_outputs(const ir_graph *ga, const ir_graph *gb, int *count) {
    ir_interp *ia = run_interp(ga), *ib = run_interp(gb);
    double worst = 0;
    *count = 0;
    for (int i = 0; i < ga->n; i++) {
        const ir_node *n = &ga->nodes[i];
        if (!(n->flags & IR_NODE_OUTPUT) || n->op == IR_OP_ADAMW) continue;
        int j = ir_find(gb, n->name);
        CHECK_MSG(j >= 0 && ir_numel(&gb->nodes[j]) == ir_numel(n), "output %s", n->name);
        if (j < 0 || ir_numel(&gb->nodes[j]) != ir_numel(n)) continue;
        int64_t m = ir_numel(n);
        double *a = malloc(sizeof(double) * (size_t)m), *b = malloc(sizeof(double) * (size_t)m);
        ir_interp_get_f64(ia, i, a);
        ir_interp_get_f64(ib, j, b);
        for (int64_t k = 0; k < m; k++) {
            double e = fabs(a[k] - b[k]) / (fabs(a[k]) > 1e-3 ? fabs(a[k]) : 1e-3);
            worst = isnan(e) ? INFINITY : e > worst ? e : worst;
        }
        *count += 1;
        free(a);
        free(b);
    }
    ir_interp_free(ia);
    ir_interp_free(ib);
    return worst;
}

/* ---- models ------------------------------------------------------------------------------- */

static ir_graph *load(const char *path, const fe_define *d, int nd) {
    char err[1024];
    ir_graph *g = NULL;
    CHECK_MSG(fe_load_model(path, d, nd, 2, &g, err, sizeof err) == 0, "%s: %s", path, err);
    return g;
}

static void check_model(const char *what, ir_graph *(*make)(const void *), const void *arg, int depth) {
    pass_result *plain = run(make(arg), "none", "fusion"), *fused = run(make(arg), "qkv-attention", "fusion");
    pass_result *all = run(make(arg), "all", "forward-fusion");
    if (!plain || !fused || !all) return;
    const ir_graph *g = fused->g;
    CHECK_MSG(count_op(g, IR_OP_ATTENTION) == depth && count_op(g, IR_OP_ATTENTION_BWD) == depth,
              "%s: %d attention, %d attention_bwd, want %d", what, count_op(g, IR_OP_ATTENTION),
              count_op(g, IR_OP_ATTENTION_BWD), depth);
    CHECK_MSG(count_op(g, IR_OP_SOFTMAX) == 0 && count_op(g, IR_OP_SOFTMAX_GRAD) == 0, "%s: softmax left", what);
    CHECK(count_op(plain->g, IR_OP_ATTENTION) == 0 && count_op(plain->g, IR_OP_SOFTMAX) == depth);
    CHECK(count_op(all->g, IR_OP_ATTENTION) == depth);
    CHECK(fused->fusions == PASS_FUSE_QKV_ATTENTION && plain->fusions == 0 && (all->fusions & PASS_FUSE_QKV_ATTENTION));
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_ATTENTION) continue;
        /* qkv: the bias add of the projection's GEMM, nothing between */
        const ir_node *qkv = &g->nodes[n->inputs[0]];
        CHECK_MSG(qkv->op == IR_OP_ADD && g->nodes[qkv->inputs[0]].op == IR_OP_MATMUL, "%s: attention %%%d reads %s",
                  what, i, ir_op_name(qkv->op));
        /* O: read by the output projection's GEMM (through PROJECT 0) */
        int readers = 0;
        for (int j = i + 1; j < g->n; j++) {
            const ir_node *p = &g->nodes[j];
            if (p->op != IR_OP_PROJECT || p->inputs[0] != i || p->attrs.output != 0) continue;
            for (int k = j + 1; k < g->n; k++)
                for (int q = 0; q < g->nodes[k].ninputs; q++)
                    if (g->nodes[k].inputs[q] == j && g->nodes[k].op == IR_OP_MATMUL && q == 0) readers++;
        }
        CHECK_MSG(readers == 1, "%s: attention %%%d's O feeds %d projection GEMMs", what, i, readers);
    }
    int nout = 0;
    double worst = compare_outputs(plain->g, g, &nout);
    printf("%s: %d attention blocks fused; %d outputs of the training step, worst relative difference %.3g\n", what,
           depth, nout, worst);
    CHECK_MSG(nout > 20 && worst < 1e-10, "%s: %.3g", what, worst);
    pass_result_free(plain);
    pass_result_free(fused);
    pass_result_free(all);
}

typedef struct {
    const char *img, *patch, *dim, *heads, *depth;
} yaml_sizes;

static ir_graph *yaml_model(const void *arg) {
    const yaml_sizes *s = arg;
    char model[1024];
    snprintf(model, sizeof model, "%s/models/deit_tiny.yaml", test_env("DEITC_SOURCE_DIR"));
    fe_define d[] = {{"img_size", s->img}, {"patch_size", s->patch}, {"num_classes", "3"},
                     {"embed_dim", s->dim}, {"depth", s->depth}, {"num_heads", s->heads}};
    return load(model, d, 6);
}

static ir_graph *onnx_model(const void *arg) {
    char model[1024];
    snprintf(model, sizeof model, "%s/deit_micro/%s", test_env("DEITC_TESTDATA"), (const char *)arg);
    return load(model, NULL, 0);
}

static void test_models(void) {
    static const yaml_sizes micro = {"16", "8", "16", "2", "2"}, odd = {"40", "8", "48", "3", "1"},
                            deit_micro = {"32", "8", "64", "2", "2"};
    check_model("yaml N=5 D=16 H=2", yaml_model, &micro, 2);
    check_model("yaml N=26 D=48 H=3", yaml_model, &odd, 1);
    check_model("yaml deit_micro N=17 D=64 H=2", yaml_model, &deit_micro, 2);
#ifdef DEITC_HAVE_ONNX
    check_model("onnx deit_micro opset13", onnx_model, "deit_opset13.onnx", 2);
    check_model("onnx deit_micro opset17", onnx_model, "deit_opset17.onnx", 2);
#else
    (void)onnx_model;
    printf("onnx: not built, the ONNX exports are not checked\n");
#endif
}

/* ---- hand-built patterns -------------------------------------------------------------------- */

enum { SWAP_QK = 1, PROBS_OUT = 2, K_ELSEWHERE = 4 };

/* qkv [1,5,12] (2 heads of 2) through timm's views, attention, back to [1,5,4], as an output */
static ir_graph *chain(int how) {
    ir_graph *g = ir_graph_new();
    int64_t s3[3] = {1, 5, 12}, s5[5] = {1, 5, 3, 2, 2}, s4[4] = {1, 2, 5, 2}, o3[3] = {1, 5, 4};
    int x = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 3, s3, "x", NOLOC);
    int other = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 4, s4, "other", NOLOC);
    ir_attrs p = {0};
    const int64_t perm5[5] = {2, 0, 3, 1, 4};
    memcpy(p.perm, perm5, sizeof perm5);
    int t = ir_unary(g, IR_OP_PERMUTE, ir_reshape(g, x, 5, s5, "heads", NOLOC), &p, "perm", NOLOC);
    int part[3];
    for (int k = 0; k < 3; k++) {
        ir_attrs sl = {0};
        sl.start = k, sl.end = k + 1;
        part[k] = ir_reshape(g, ir_unary(g, IR_OP_SLICE, t, &sl, "part", NOLOC), 4, s4, "part", NOLOC);
    }
    int q = part[how & SWAP_QK ? 1 : 0], k = how & K_ELSEWHERE ? other : part[how & SWAP_QK ? 0 : 1];
    ir_attrs mm = {0};
    mm.trans_b = 1, mm.alpha = 0.7;
    int pr = ir_unary(g, IR_OP_SOFTMAX, ir_binary(g, IR_OP_MATMUL, q, k, &mm, "scores", NOLOC), NULL, "probs", NOLOC);
    if (how & PROBS_OUT) ir_node_set_output(g, pr, "probs");
    ir_attrs mv = {0};
    mv.alpha = 1.0;
    int c = ir_binary(g, IR_OP_MATMUL, pr, part[2], &mv, "context", NOLOC);
    ir_attrs p2 = {0};
    const int64_t perm4[4] = {0, 2, 1, 3};
    memcpy(p2.perm, perm4, sizeof perm4);
    int y = ir_reshape(g, ir_unary(g, IR_OP_PERMUTE, c, &p2, "back", NOLOC), 3, o3, "merged", NOLOC);
    CHECK_MSG(y >= 0, "%s", g->error);
    ir_node_set_output(g, y, "y");
    return g;
}

static void test_patterns(void) {
    static const struct { int how; int fused; const char *what; } C[] = {
        {0, 1, "timm's chain"}, {SWAP_QK, 0, "q and k swapped"}, {PROBS_OUT, 0, "probabilities also an output"},
        {K_ELSEWHERE, 0, "k from another tensor"},
    };
    for (size_t c = 0; c < sizeof C / sizeof C[0]; c++) {
        char err[512];
        ir_graph *g = chain(C[c].how);
        CHECK_MSG(ir_verify(g) == 0, "%s", g->error);
        int fused = -1;
        ir_graph *f = pass_fuse_qkv_attention(g, &fused, err, sizeof err);
        CHECK_MSG(f != NULL, "%s: %s", C[c].what, err);
        if (!f) {
            ir_graph_free(g);
            continue;
        }
        CHECK_MSG(ir_verify(f) == 0, "%s", f->error);
        CHECK_MSG(fused == C[c].fused && count_op(f, IR_OP_ATTENTION) == C[c].fused &&
                      count_op(f, IR_OP_SOFTMAX) == !C[c].fused,
                  "%s: fused %d", C[c].what, fused);
        if (C[c].fused) { /* every view, the slices and the permutes gone: qkv -> attention -> O */
            CHECK(count_op(f, IR_OP_SLICE) == 0 && count_op(f, IR_OP_PERMUTE) == 0 && count_op(f, IR_OP_MATMUL) == 0);
            int y = ir_find(f, "y");
            CHECK(y >= 0 && f->nodes[y].op == IR_OP_RESHAPE && f->nodes[f->nodes[y].inputs[0]].op == IR_OP_PROJECT);
        }
        ir_interp *a = run_interp(g), *b = run_interp(f);
        int ya = ir_find(g, "y"), yb = ir_find(f, "y");
        double va[20], vb[20], worst = 0;
        ir_interp_get_f64(a, ya, va);
        ir_interp_get_f64(b, yb, vb);
        for (int k = 0; k < 20; k++) worst = fmax(worst, fabs(va[k] - vb[k]));
        CHECK_MSG(worst < 1e-12, "%s: differs by %.3g", C[c].what, worst);
        ir_interp_free(a);
        ir_interp_free(b);
        ir_graph_free(f);
        ir_graph_free(g);
    }
}

int main(void) {
    test_patterns();
    test_models();
    return test_result();
}
