/* test_pipeline.c: the pipeline's stages and options, multi-output nodes through the
 * interpreter, schedule and memory plan, and the two named fusions.
 *
 *   stages     the stage list, --after every stage, unknown stages, --fuse / --precision
 *              parsing and refusals (with the known names listed)
 *   multi      LAYER_NORM_STATS: its three outputs in the interpreter against a plain
 *              LAYER_NORM and the rows' statistics; the printer; the verifier refuses reading
 *              a multi-output node directly, a bad PROJECT, and marking it an output
 *   memplan    PROJECT's buffer is its output's place in the node's buffer, the node lives to
 *              the last reader of any output, and the plan's checker finds a planted overlap
 *   tf32       --precision tf32 gives every matmul of the training step (forward and backward)
 *              compute=tf32 and none under fp32; the printer shows it; the interpreter rounds
 *              a tf32 matmul's operands to 10 mantissa bits (nearest, ties to even) in the f32
 *              mode and not in the f64 one; the verifier refuses compute=tf32 on f16 operands
 *   cast       the interpreter's f32 -> f16 / bf16 casts on edge values against hand-worked
 *              results: ties to even (normal and subnormal), the largest finite values and the
 *              first that overflow, underflow to zero, infinities, NaN, signed zero (tests/ops
 *              runs the same values through the emitted cast kernels, bit for bit)
 *   fusions    layer-norm-stats keeps the training step's answer (f64 interpreter: loss and
 *              every gradient to 1e-12); adamw-group: one group of every ADAMW under all, none
 *              under none; the verifier refuses bad groups and the schedule check a split one
 */
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/harness.h"

#include <string.h>

static const ir_loc NOLOC = {0};

static ir_graph *micro_forward(int64_t batch) {
    char model[1024], err[1024];
    snprintf(model, sizeof model, "%s/models/deit_tiny.yaml", test_env("DEITC_SOURCE_DIR"));
    fe_define d[] = {{"img_size", "16"}, {"patch_size", "8"}, {"num_classes", "3"},
                     {"embed_dim", "16"}, {"depth", "2"}, {"num_heads", "2"}};
    ir_graph *g = NULL;
    CHECK_MSG(fe_load_model(model, d, 6, batch, &g, err, sizeof err) == 0, "%s", err);
    return g;
}

static pass_result *run(ir_graph *g, const char *fuse, const char *precision, const char *after, char *err,
                        size_t errsize) {
    pass_options o;
    pass_options_default(&o);
    o.fuse = fuse;
    o.precision = precision;
    return pass_pipeline_run(g, &o, after, err, errsize);
}

/* ---- stages and options --------------------------------------------------------------------- */

static void test_stages(void) {
    static const char *const want[] = {"check", "forward-fusion", "training", "precision", "fusion",
                                       "schedule", "memplan"};
    char err[1024];
    int n = 0;
    for (; pass_names[n]; n++) CHECK(n < 7 && strcmp(pass_names[n], want[n]) == 0);
    CHECK(n == 7);
    for (int s = 0; s < n; s++) {
        pass_result *r = run(micro_forward(2), NULL, NULL, pass_names[s], err, sizeof err);
        CHECK_MSG(r != NULL, "--after %s: %s", pass_names[s], err);
        if (!r) continue;
        CHECK(strcmp(r->last_stage, pass_names[s]) == 0);
        CHECK((r->order != NULL) == (s >= 5) && (r->mem != NULL) == (s == 6));
        CHECK((ir_find(r->g, "loss") >= 0) == (s >= 2));
        pass_result_free(r);
    }
    CHECK(run(micro_forward(2), NULL, NULL, "fusion2", err, sizeof err) == NULL && strstr(err, "unknown pass 'fusion2'") &&
          strstr(err, "forward-fusion, training, precision, fusion, schedule, memplan"));

    unsigned bits = 99;
    const unsigned all = PASS_FUSE_ADAMW_GROUP | PASS_FUSE_BIAS_GELU | PASS_FUSE_ELEMENTWISE_CHAIN | PASS_FUSE_BIAS_GELU_GRAD |
                         PASS_FUSE_BIAS_GRAD | PASS_FUSE_GELU_EPILOGUE | PASS_FUSE_RESIDUAL_LAYER_NORM |
                         PASS_FUSE_LAYER_NORM_DBETA | PASS_FUSE_QKV_ATTENTION | PASS_FUSE_RESIDUAL_LAYER_NORM_GRAD |
                         PASS_FUSE_SELECT_TOKEN_LAYER_NORM | PASS_FUSE_SOFTMAX_CROSS_ENTROPY;
    CHECK(pass_fuse_parse("all", &bits, err, sizeof err) == 0 && bits == all);
    CHECK(pass_fuse_parse(NULL, &bits, err, sizeof err) == 0 && bits == all);
    CHECK(pass_fuse_parse("bias-gelu", &bits, err, sizeof err) == 0 && bits == PASS_FUSE_BIAS_GELU);
    CHECK(pass_fuse_parse("none", &bits, err, sizeof err) == 0 && bits == 0);
    CHECK(pass_fuse_parse("layer-norm-stats", &bits, err, sizeof err) == 0 && bits == PASS_FUSE_LAYER_NORM_STATS);
    CHECK(pass_fuse_parse("all,layer-norm-stats", &bits, err, sizeof err) == 0 &&
          bits == (all | PASS_FUSE_LAYER_NORM_STATS));
    CHECK(pass_fuse_parse("adamw-group,gelu-bias", &bits, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "unknown fusion 'gelu-bias'") && strstr(err, "adamw-group, layer-norm-stats, bias-gelu, elementwise-chain, bias-gelu-grad, bias-grad, gelu-epilogue, residual-layer-norm, layer-norm-dbeta, qkv-attention, residual-layer-norm-grad, select-token-layer-norm, softmax-cross-entropy; or all, none"),
              "%s", err);
    CHECK(pass_fuse_parse("adamw-group,", &bits, err, sizeof err) == -1 && strstr(err, "unknown fusion ''"));
    char names[128];
    CHECK(strcmp(pass_fuse_names(PASS_FUSE_ADAMW_GROUP | PASS_FUSE_LAYER_NORM_STATS, names, sizeof names),
                 "adamw-group,layer-norm-stats") == 0);
    CHECK(strcmp(pass_fuse_names(0, names, sizeof names), "none") == 0);
    /* refused before any stage runs, whatever --after says */
    CHECK(run(micro_forward(2), NULL, "fp8", "check", err, sizeof err) == NULL && strstr(err, "--precision fp8: unknown"));
    CHECK(run(micro_forward(2), NULL, "fp8", NULL, err, sizeof err) == NULL && strstr(err, "--precision fp8: unknown"));
    CHECK(run(micro_forward(2), "nope", NULL, "check", err, sizeof err) == NULL && strstr(err, "--fuse nope"));
}

/* ---- multi-output nodes --------------------------------------------------------------------- */

static int weight(ir_graph *g, const char *name, int ndim, const int64_t *s) {
    return ir_leaf(g, IR_OP_WEIGHT, IR_F32, ndim, s, name, NOLOC);
}

static int project(ir_graph *g, int x, int k) {
    ir_attrs a = {0};
    a.output = k;
    return ir_unary(g, IR_OP_PROJECT, x, &a, NULL, NOLOC);
}

/* x [2,3,5], gamma, beta [5]: LAYER_NORM_STATS (and a plain LAYER_NORM beside it) */
typedef struct {
    int x, gamma, beta, stats, y, mean, rstd, plain;
} ln_graph;

static ir_graph *build_ln(ln_graph *l) {
    ir_graph *g = ir_graph_new();
    int64_t xs[3] = {2, 3, 5}, cs[1] = {5};
    l->x = weight(g, "x", 3, xs);
    l->gamma = weight(g, "gamma", 1, cs);
    l->beta = weight(g, "beta", 1, cs);
    ir_attrs a = {0};
    a.eps = 1e-5;
    int in[3] = {l->x, l->gamma, l->beta};
    l->stats = ir_add(g, IR_OP_LAYER_NORM_STATS, in, 3, &a, IR_F32, 0, NULL, "norm", NOLOC);
    l->mean = project(g, l->stats, 1);
    l->y = project(g, l->stats, 0);
    l->rstd = project(g, l->stats, 2);
    l->plain = ir_add(g, IR_OP_LAYER_NORM, in, 3, &a, IR_F32, 0, NULL, "plain", NOLOC);
    CHECK_MSG(l->plain >= 0 && ir_verify(g) == 0, "%s", g->error);
    return g;
}

static void test_multi(void) {
    ln_graph l;
    ir_graph *g = build_ln(&l);
    CHECK(ir_op_outputs(IR_OP_LAYER_NORM_STATS) == 3 && ir_op_outputs(IR_OP_LAYER_NORM) == 1);
    const ir_node *m = &g->nodes[l.mean];
    CHECK(m->ndim == 3 && m->shape[2] == 1 && m->shape[1] == 3 && m->dtype == IR_F32);
    CHECK(ir_same_shape(&g->nodes[l.y], &g->nodes[l.x]));
    /* the interpreter: y is LAYER_NORM's answer; mean and rstd are the rows' statistics */
    ir_interp *it = ir_interp_new(g, 1);
    double x[30], gm[5], bt[5];
    for (int i = 0; i < 30; i++) x[i] = sin(1.3 * i) * (1 + i % 4);
    for (int i = 0; i < 5; i++) gm[i] = 0.5 + 0.1 * i, bt[i] = 0.2 * i - 0.3;
    ir_interp_set_f64(it, l.x, x);
    ir_interp_set_f64(it, l.gamma, gm);
    ir_interp_set_f64(it, l.beta, bt);
    CHECK_MSG(ir_interp_run(it) == 0, "%s", ir_interp_error(it));
    double y[30], plain[30], mean[6], rstd[6];
    ir_interp_get_f64(it, l.y, y);
    ir_interp_get_f64(it, l.plain, plain);
    ir_interp_get_f64(it, l.mean, mean);
    ir_interp_get_f64(it, l.rstd, rstd);
    for (int i = 0; i < 30; i++) CHECK(y[i] == plain[i]);
    for (int r = 0; r < 6; r++) {
        double s = 0, ss = 0;
        for (int j = 0; j < 5; j++) s += x[r * 5 + j];
        s /= 5;
        for (int j = 0; j < 5; j++) ss += (x[r * 5 + j] - s) * (x[r * 5 + j] - s);
        CHECK(fabs(mean[r] - s) < 1e-14 && fabs(rstd[r] - 1 / sqrt(ss / 5 + 1e-5)) < 1e-12);
    }
    ir_interp_free(it);
    /* the printer shows every output's type and which one a projection takes */
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    ir_print(g, f);
    fclose(f);
    CHECK_MSG(strstr(buf, "= layer_norm_stats(%0, %1, %2) (f32[2,3,5], f32[2,3,1], f32[2,3,1]) eps=1e-05  norm") &&
                  strstr(buf, "= project(%3) f32[2,3,1] output=1"),
              "%s", buf);
    /* the verifier: read only through project, project a real output, never an output itself */
    int bad = ir_unary(g, IR_OP_SCALE, l.stats, NULL, NULL, NOLOC);
    CHECK(bad == -1 && strstr(g->error, "has 3 outputs: read one through project"));
    CHECK(project(g, l.stats, 3) == -1 && strstr(g->error, "output 3 of layer_norm_stats"));
    CHECK(project(g, l.x, 0) == -1 && strstr(g->error, "which has 1 output"));
    g->nodes[l.stats].flags |= IR_NODE_OUTPUT;
    CHECK(ir_verify(g) == -1 && strstr(g->error, "is not an output itself"));
    ir_graph_free(g);
}

/* ---- memory plan ---------------------------------------------------------------------------- */

static void test_memplan(void) {
    ln_graph l;
    ir_graph *g = build_ln(&l);
    /* consumers: y early, rstd last (so the stats node must live to the end), an output */
    int a = ir_unary(g, IR_OP_GELU, l.y, NULL, NULL, NOLOC);
    int b = ir_binary(g, IR_OP_MUL, a, l.mean, NULL, NULL, NOLOC);
    int c = ir_binary(g, IR_OP_ADD, b, l.plain, NULL, NULL, NOLOC);
    int d = ir_binary(g, IR_OP_MUL, c, l.rstd, NULL, "out", NOLOC);
    ir_node_set_output(g, d, "out");
    CHECK_MSG(ir_verify(g) == 0, "%s", g->error);
    int order[64], n = pass_schedule(g, order);
    char err[512];
    CHECK_MSG(pass_schedule_check(g, order, n, err, sizeof err) == 0, "%s", err);
    int64_t scratch[64] = {0};
    scratch[c] = 1000; /* a node that needs scratch while it runs */
    pass_mem_plan *p = pass_mem_plan_new(g, order, n, scratch);
    const ir_node *s = &g->nodes[l.stats];
    int64_t ybytes = 30 * 4, ab = PASS_MEM_ALIGN; /* y: 120 bytes, rounded up to one unit */
    CHECK(pass_mem_output_offset(s, 0) == 0 && pass_mem_output_offset(s, 1) == ab &&
          pass_mem_output_offset(s, 2) == 2 * ab && pass_mem_bytes(s) == 3 * ab && ybytes <= ab);
    CHECK(p->alias_of[l.y] == l.stats && p->alias_of[l.mean] == l.stats && p->alias_of[l.rstd] == l.stats);
    CHECK(p->offset[l.y] == p->offset[l.stats] && p->offset[l.mean] == p->offset[l.stats] + ab &&
          p->offset[l.rstd] == p->offset[l.stats] + 2 * ab);
    CHECK(p->last[l.stats] == p->pos[d]); /* rstd is read by the last step */
    CHECK_MSG(pass_mem_plan_check(g, p, scratch, err, sizeof err) == 0, "%s", err);
    /* the checker finds an overlap: put the plain LayerNorm where the stats node lives */
    int64_t keep = p->offset[l.plain];
    p->offset[l.plain] = p->offset[l.stats] + ab;
    CHECK(pass_mem_plan_check(g, p, scratch, err, sizeof err) == -1 && strstr(err, "overlap while both are live"));
    p->offset[l.plain] = keep;
    p->offset[l.mean] += PASS_MEM_ALIGN;
    CHECK(pass_mem_plan_check(g, p, scratch, err, sizeof err) == -1 && strstr(err, "not at its root"));
    pass_mem_plan_free(p);
    /* the schedule checker: an input after its reader */
    int t = order[0];
    order[0] = order[1], order[1] = t;
    CHECK(pass_schedule_check(g, order, n, err, sizeof err) == -1 && strstr(err, "before it is computed"));
    ir_graph_free(g);
}

/* ---- the fusions ---------------------------------------------------------------------------- */

/* The f64 interpreter on g with fixed inputs (the same for graphs with the same leaves). */
static ir_interp *run_step(const ir_graph *g) {
    ir_interp *it = ir_interp_new(g, 1);
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_WEIGHT && n->op != IR_OP_INPUT) continue;
        int64_t m = ir_numel(n);
        double *v = malloc(sizeof(double) * (size_t)m);
        for (int64_t j = 0; j < m; j++)
            v[j] = n->dtype == IR_I64 ? (double)(j % 3) : strcmp(n->name, "opt") == 0 ? 1.0 : sin(0.37 * (double)j + (double)strlen(n->name));
        ir_interp_set_f64(it, i, v);
        free(v);
    }
    CHECK_MSG(ir_interp_run(it) == 0, "%s", ir_interp_error(it));
    return it;
}

/* the worst relative difference of b's outputs (loss, logits, grad.*) from a's, by name */
static double compare_outputs(const ir_graph *ga, const ir_graph *gb, int *count) {
    ir_interp *ia = run_step(ga), *ib = run_step(gb);
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
            worst = e > worst || isnan(e) ? (isnan(e) ? INFINITY : e) : worst;
        }
        *count += 1;
        free(a);
        free(b);
    }
    ir_interp_free(ia);
    ir_interp_free(ib);
    return worst;
}

static void test_fusions(void) {
    char err[1024];
    /* layer-norm-stats: every LAYER_NORM replaced, the backward reads the statistics */
    pass_result *plain = run(micro_forward(2), "none", NULL, "fusion", err, sizeof err);
    pass_result *lns = run(micro_forward(2), "layer-norm-stats", NULL, "fusion", err, sizeof err);
    CHECK_MSG(plain && lns, "%s", err);
    if (!plain || !lns) return;
    int count[IR_OP_COUNT] = {0}, count0[IR_OP_COUNT] = {0};
    for (int i = 0; i < lns->g->n; i++) count[lns->g->nodes[i].op]++;
    for (int i = 0; i < plain->g->n; i++) count0[plain->g->nodes[i].op]++;
    CHECK(count[IR_OP_LAYER_NORM] == 0 && count[IR_OP_LAYER_NORM_STATS] == count0[IR_OP_LAYER_NORM] &&
          count[IR_OP_LAYER_NORM_DX] == 0 && count[IR_OP_LAYER_NORM_DX_STATS] == count0[IR_OP_LAYER_NORM_DX] &&
          count0[IR_OP_LAYER_NORM] == 5);
    CHECK(lns->fusions == PASS_FUSE_LAYER_NORM_STATS && plain->fusions == 0);
    int nout = 0;
    double worst = compare_outputs(plain->g, lns->g, &nout);
    printf("layer-norm-stats vs plain: %d outputs, worst relative difference %.3g\n", nout, worst);
    CHECK(nout > 20 && worst < 1e-12);
    pass_result_free(plain);
    pass_result_free(lns);

    /* adamw-group: one group of every ADAMW under all, none under none */
    pass_result *all = run(micro_forward(2), "all", NULL, NULL, err, sizeof err);
    pass_result *none = run(micro_forward(2), "none", NULL, NULL, err, sizeof err);
    CHECK_MSG(all && none, "%s", err);
    if (!all || !none) return;
    int nadam = 0, grouped = 0, any_none = 0;
    for (int i = 0; i < all->g->n; i++) {
        nadam += all->g->nodes[i].op == IR_OP_ADAMW;
        grouped += all->g->nodes[i].group == 1;
        CHECK(all->g->nodes[i].group <= 1);
        any_none |= none->g->nodes[i].group != 0;
    }
    CHECK(nadam > 20 && grouped == nadam && !any_none);
    /* the verifier: a group on an op that cannot be grouped, a group mixing different updates */
    ir_graph *g = all->g;
    int first = -1, last = -1, gelu = -1;
    for (int i = 0; i < g->n; i++) {
        if (g->nodes[i].op == IR_OP_ADAMW) last = i, first = first < 0 ? i : first;
        if (g->nodes[i].op == IR_OP_GELU && gelu < 0) gelu = i;
    }
    g->nodes[gelu].group = 1;
    CHECK(ir_verify(g) == -1 && strstr(g->error, "cannot be grouped"));
    g->nodes[gelu].group = 0;
    g->nodes[last].attrs.beta2 = 0.95;
    CHECK(ir_verify(g) == -1 && strstr(g->error, "fusion group 1 mixes it with"));
    g->nodes[last].attrs.beta2 = g->nodes[first].attrs.beta2;
    CHECK(ir_verify(g) == 0);
    /* the schedule checker: a group split by another step */
    int *order = all->order, n = all->norder;
    CHECK_MSG(pass_schedule_check(g, order, n, err, sizeof err) == 0, "%s", err);
    g->nodes[order[n - 2]].group = 2; /* members 1 .. 1, 2, 1: group 1 split */
    CHECK(pass_schedule_check(g, order, n, err, sizeof err) == -1 && strstr(err, "fusion group 1 is split"));
    pass_result_free(all);
    pass_result_free(none);
}

/* ---- tf32 ---------------------------------------------------------------------------------- */

static void test_tf32(void) {
    char err[1024];
    for (int t = 0; t < 2; t++) {
        /* unfused attention: its scores and context products are matmuls too */
        pass_result *r = run(micro_forward(2), "none", t ? "tf32" : "fp32", "precision", err, sizeof err);
        CHECK_MSG(r != NULL, "%s", err);
        if (!r) continue;
        CHECK(strcmp(r->precision, t ? "tf32" : "fp32") == 0);
        int matmuls = 0, marked = 0;
        for (int i = 0; i < r->g->n; i++) {
            matmuls += r->g->nodes[i].op == IR_OP_MATMUL;
            marked += r->g->nodes[i].op == IR_OP_MATMUL && r->g->nodes[i].attrs.compute == IR_COMPUTE_TF32;
        }
        /* 2 blocks x (qkv, scores, context, proj, fc1, fc2) + head forward, 2-3 each backward */
        CHECK_MSG(matmuls > 30 && marked == (t ? matmuls : 0), "%s: %d of %d matmuls tf32", r->precision, marked,
                  matmuls);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        pass_result_print(r, f);
        fclose(f);
        CHECK((strstr(text, " compute=tf32") != NULL) == t && strstr(text, t ? "precision tf32" : "precision fp32"));
        free(text);
        pass_result_free(r);
    }
    /* x[1,2] @ w[2,1] with x = (1 + 3*2^-12, 1 + 2^-11), w = (1, 1): TF32 keeps 10 mantissa
     * bits, so x0 rounds up to 1 + 2^-10 and x1 (a tie) to even, 1: 2 + 2^-10; fp32: 2 + 5*2^-12 */
    for (int mode = 0; mode < 3; mode++) { /* fp32, tf32, tf32 in the f64 interpreter */
        ir_graph *g = ir_graph_new();
        int64_t xs[2] = {1, 2}, ws[2] = {2, 1};
        int x = weight(g, "x", 2, xs), w = weight(g, "w", 2, ws);
        ir_attrs a = {0};
        a.alpha = 1;
        a.compute = mode ? IR_COMPUTE_TF32 : IR_COMPUTE_32F;
        int y = ir_binary(g, IR_OP_MATMUL, x, w, &a, "y", NOLOC);
        CHECK_MSG(y >= 0 && ir_verify(g) == 0, "%s", g->error);
        ir_interp *it = ir_interp_new(g, mode == 2);
        const float xv[2] = {1 + 3 * 0x1p-12f, 1 + 0x1p-11f}, wv[2] = {1, 1};
        ir_interp_set_f32(it, x, xv);
        ir_interp_set_f32(it, w, wv);
        CHECK_MSG(ir_interp_run(it) == 0, "%s", ir_interp_error(it));
        double got;
        ir_interp_get_f64(it, y, &got);
        double want = mode == 1 ? 2 + 0x1p-10 : 2 + 5 * 0x1p-12;
        CHECK_MSG(got == want, "mode %d: %.17g, want %.17g", mode, got, want);
        ir_interp_free(it);
        ir_graph_free(g);
    }
    /* compute=tf32 needs f32 operands */
    ir_graph *g = ir_graph_new();
    int64_t s2[2] = {2, 2};
    int x = ir_leaf(g, IR_OP_WEIGHT, IR_F16, 2, s2, "x", NOLOC);
    ir_attrs a = {0};
    a.alpha = 1;
    a.compute = IR_COMPUTE_TF32;
    int y = ir_binary(g, IR_OP_MATMUL, x, x, &a, "y", NOLOC);
    CHECK(y < 0 || ir_verify(g) != 0);
    CHECK_MSG(strstr(g->error, "needs f32 operands (tf32)"), "%s", g->error);
    ir_graph_free(g);
}

/* ---- casts --------------------------------------------------------------------------------- */

static void test_cast_rounding(void) {
    static const float x[] = {1 + 0x1p-11f, 1 + 3 * 0x1p-11f, 1 + 0x1p-8f, 1 + 3 * 0x1p-8f, 65504, 65519.996f, 65520,
                              -65520, 0x1p-24f, 0x1p-25f, 3 * 0x1p-25f, 0x1p-14f, 0x1.ff8p-15f, 0x1p-133f, 0x1p-134f,
                              0x1.8p-133f, 0x1p-149f, 0x1.fffffep127f, 0x1.fep127f, 0x1.ffp127f, -0x1.ffp127f, INFINITY,
                              -INFINITY, NAN, -0.0f, 3.1415927f};
    static const double f16[] = {1, 1 + 0x1p-9, 1 + 0x1p-8, 1 + 3 * 0x1p-8, 65504, 65504, INFINITY, -INFINITY,
                                 0x1p-24, 0, 0x1p-23, 0x1p-14, 1023 * 0x1p-24, 0, 0, 0, 0, INFINITY, INFINITY, INFINITY,
                                 -INFINITY, INFINITY, -INFINITY, NAN, -0.0, 3.140625};
    static const double bf16[] = {1, 1, 1, 1 + 0x1p-6, 65536, 65536, 65536, -65536, 0x1p-24, 0x1p-25, 3 * 0x1p-25,
                                  0x1p-14, 0x1p-14, 0x1p-133, 0, 0x1p-132, 0, INFINITY, 0x1.fep127, INFINITY, -INFINITY,
                                  INFINITY, -INFINITY, NAN, -0.0, 3.140625};
    enum { N = sizeof x / sizeof x[0] };
    _Static_assert(sizeof f16 / sizeof f16[0] == N && sizeof bf16 / sizeof bf16[0] == N, "a result per value");
    ir_graph *g = ir_graph_new();
    int64_t sh[1] = {N};
    int in = weight(g, "x", 1, sh);
    int y16 = ir_add(g, IR_OP_CAST, &in, 1, NULL, IR_F16, 1, sh, "y16", NOLOC);
    int yb = ir_add(g, IR_OP_CAST, &in, 1, NULL, IR_BF16, 1, sh, "ybf16", NOLOC);
    CHECK_MSG(y16 >= 0 && yb >= 0 && ir_verify(g) == 0, "%s", g->error);
    ir_interp *it = ir_interp_new(g, 0);
    ir_interp_set_f32(it, in, x);
    CHECK_MSG(ir_interp_run(it) == 0, "%s", ir_interp_error(it));
    double got16[N], gotb[N];
    ir_interp_get_f64(it, y16, got16);
    ir_interp_get_f64(it, yb, gotb);
    for (int k = 0; k < N; k++) {
        int ok16 = isnan(f16[k]) ? isnan(got16[k]) : got16[k] == f16[k] && !signbit(got16[k]) == !signbit(f16[k]);
        int okb = isnan(bf16[k]) ? isnan(gotb[k]) : gotb[k] == bf16[k] && !signbit(gotb[k]) == !signbit(bf16[k]);
        CHECK_MSG(ok16, "cast(%a) to f16: %a, want %a", x[k], got16[k], f16[k]);
        CHECK_MSG(okb, "cast(%a) to bf16: %a, want %a", x[k], gotb[k], bf16[k]);
    }
    ir_interp_free(it);
    ir_graph_free(g);
}

int main(void) {
    test_stages();
    test_cast_rounding();
    test_tf32();
    test_multi();
    test_memplan();
    test_fusions();
    return test_result();
}
