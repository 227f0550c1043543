/* test_fuse_grad.c: the bias-gradient fusions (passes/fusion_grad.c, codegen/emit_chain_reduce.c)
 * end to end.
 *
 *   test_fuse_grad count   on a DeiT-micro step: bias-gelu-grad makes one chain per block (its
 *                          MLP's GELU derivative and fc1 bias gradient) and bias-grad one per
 *                          attn.proj and per fc2 but the last block's (its input is a sum of
 *                          the residual stream's gradients); every such chain is one launch
 *                          (one pass at this size) and the step has that many launches fewer;
 *                          residual-layer-norm-grad: each block LayerNorm's dx and the residual
 *                          gradient's add after it (and bias-grad's column sum of that) one launch
 *   test_fuse_grad emu_micro  emu EXEs trained 3 steps: --fuse none against bias-gelu-grad,
 *                          bias-grad, all, residual-layer-norm-grad, select-token-layer-norm
 *                          and softmax-cross-entropy on ../shared/testdata/deit_micro (its weights and
 *                          batch): losses and weights within relative L2 1e-5 (the same float
 *                          sums: in fact the same bits)
 *   test_fuse_grad emu_own    the same, none against all and residual-layer-norm, on a size of
 *                          our own (145 tokens a batch of 4: 580 rows, the two-pass column sums;
 *                          48-wide rows: padded lanes in the LayerNorm's warps)
 *   test_fuse_grad tanh       gelu-epilogue on a tanh-GELU model (test_tanh says what)
 *   test_fuse_grad select     select-token-layer-norm: the graph, and the interpreter's bits
 *                          (test_select says what)
 * Everything is written under a fresh temporary directory, removed at the end. */
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/rt.h"
#include "tests/harness.h"

static char tmp[512];

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (!s) abort();
    s[fread(s, 1, (size_t)n, f)] = 0;
    fclose(f);
    return s;
}

/* ---- count ------------------------------------------------------------------------------- *
 * (residual-layer-norm's chains and launches: test_codegen fuse) */

typedef struct {
    int gelu_chains, sum_chains; /* chains ending in a column sum of GELU_GRAD / of another op */
    int dbeta_chains;            /* layer-norm-dbeta: dgamma + the column sum of its dy */
    int dx_chains, dx_sum_chains; /* residual-layer-norm-grad: chains that start with a LayerNorm
                                    dx, and of them those that end in a column sum */
    int fused_launches;          /* launches of their kernels */
    int launches;                /* of the whole step */
} chain_counts;

static int counts_of(const char *fuse, chain_counts *c) {
    const char *src = test_env("DEITC_SOURCE_DIR");
    char model[1024], err[1024];
    snprintf(model, sizeof model, "%s/models/deit_tiny.yaml", src);
    fe_define micro[] = {{"img_size", "32"}, {"patch_size", "8"}, {"num_classes", "10"},
                         {"embed_dim", "64"}, {"depth", "2"}, {"num_heads", "2"}};
    ir_graph *g = NULL;
    memset(c, 0, sizeof *c);
    if (fe_load_model(model, micro, 6, 4, &g, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    pass_options po;
    pass_options_default(&po);
    po.fuse = fuse;
    po.scratch_bytes = cg_scratch_bytes;
    pass_result *r = pass_pipeline_run(g, &po, NULL, err, sizeof err);
    cg_options o;
    cg_options_default(&o);
    cg_program *p = r ? cg_program_new(r, &o, err, sizeof err) : NULL;
    CHECK_MSG(p != NULL, "--fuse %s: %s", fuse, err);
    if (!p) {
        pass_result_free(r);
        return -1;
    }
    for (int i = 1; i < r->g->n; i++) {
        const ir_node *n = &r->g->nodes[i], *x = &r->g->nodes[i - 1];
        if (n->op != IR_OP_SUM_TO || !n->chain) continue;
        if (x->op == IR_OP_LAYER_NORM_DGAMMA) {
            CHECK(x->chain == n->chain && n->inputs[0] == x->inputs[0]);
            c->dbeta_chains++;
            continue;
        }
        CHECK_MSG(x->chain == n->chain && n->inputs[0] == i - 1, "--fuse %s: column sum %%%d apart from its chain", fuse, i);
        if (x->op == IR_OP_GELU_GRAD) c->gelu_chains++;
        else c->sum_chains++;
    }
    for (int i = 0; i + 1 < r->g->n; i++) {
        const ir_node *n = &r->g->nodes[i];
        if (n->op != IR_OP_LAYER_NORM_DX || !n->chain) continue;
        CHECK_MSG(r->g->nodes[i + 1].chain == n->chain && r->g->nodes[i + 1].op == IR_OP_ADD, "--fuse %s: %%%d", fuse, i);
        c->dx_chains++;
        c->dx_sum_chains += i + 2 < r->g->n && r->g->nodes[i + 2].chain == n->chain;
    }
    for (int s = 0; s < p->nsteps; s++) {
        if (p->steps[s].kind == RT_STEP_GEMM || p->steps[s].kind == RT_STEP_KERNEL) c->launches++;
        if (p->steps[s].kind != RT_STEP_KERNEL) continue;
        const char *name = p->kernels[p->steps[s].kernel].name;
        c->fused_launches += strstr(name, "_bias_gelu_grad") != NULL || strstr(name, "_chain_sum_to") != NULL ||
                             strstr(name, "_layer_norm_dx_chain_sum") != NULL;
    }
    cg_program_free(p);
    pass_result_free(r);
    return 0;
}

static int test_count(void) {
    chain_counts none, gelu, bias, all, dx, bias_dx;
    if (counts_of("none", &none) || counts_of("bias-gelu-grad", &gelu) || counts_of("bias-grad", &bias) ||
        counts_of("all", &all) || counts_of("residual-layer-norm-grad", &dx) ||
        counts_of("bias-grad,residual-layer-norm-grad", &bias_dx))
        return test_result();
    fprintf(stderr, "launches: none %d, bias-gelu-grad %d, bias-grad %d, all %d, residual-layer-norm-grad %d (with "
            "bias-grad %d)\n", none.launches, gelu.launches, bias.launches, all.launches, dx.launches, bias_dx.launches);
    CHECK(none.gelu_chains == 0 && none.sum_chains == 0 && none.fused_launches == 0);
    CHECK_MSG(gelu.gelu_chains == 2 && gelu.sum_chains == 0 && gelu.fused_launches == 2,
              "bias-gelu-grad: %d gelu chains, %d others, %d launches", gelu.gelu_chains, gelu.sum_chains,
              gelu.fused_launches);
    /* attn.proj of both blocks, fc2 of block 0 (block 1's fc2 sums the final norm's dx) */
    CHECK_MSG(bias.gelu_chains == 0 && bias.sum_chains == 3 && bias.fused_launches == 3,
              "bias-grad: %d gelu chains, %d others, %d launches", bias.gelu_chains, bias.sum_chains, bias.fused_launches);
    CHECK(all.gelu_chains == 2 && all.sum_chains == 3 && all.fused_launches == 5);
    CHECK(none.dbeta_chains == 0 && gelu.dbeta_chains == 0 && all.dbeta_chains == 5); /* one per LayerNorm */
    /* each fused chain saves its elementwise launch */
    CHECK(gelu.launches == none.launches - 2 && bias.launches == none.launches - 3);
    /* residual-layer-norm-grad: the 4 blocks' LayerNorms' dx with the residual gradient's add
     * after each (the final norm's dx starts the residual gradient: no add), one launch fewer
     * each; with bias-grad 3 of those adds' column sums join them (their launches too) */
    CHECK_MSG(dx.dx_chains == 4 && dx.dx_sum_chains == 0 && dx.launches == none.launches - 4,
              "residual-layer-norm-grad: %d chains, %d with a sum, %d launches", dx.dx_chains, dx.dx_sum_chains,
              dx.launches);
    CHECK(bias_dx.dx_chains == 4 && bias_dx.dx_sum_chains == 3 && bias_dx.launches == bias.launches - 4);
    CHECK(all.dx_chains == 4 && all.dx_sum_chains == 3 && none.dx_chains == 0);
    return test_result();
}

/* ---- emu --------------------------------------------------------------------------------- */

static int read_losses(const char *path, float *out, int max) {
    char *s = slurp(path);
    int n = 0;
    for (char *p = s; p && n < max && (p = strstr(p, "\"loss\":")); p += 7) out[n++] = strtof(p + 7, NULL);
    free(s);
    return n;
}

/* every tensor of want in got, within relative L2 tol. A qkv bias is compared on its query and
 * value thirds: its key third has an exactly zero gradient (softmax ignores a shift shared by
 * all keys), so Adam moves it by +-lr times the sign of rounding noise, and a fusion that sums a
 * gradient in another order (layer-norm-dbeta, gelu-epilogue) changes that noise, nothing else */
static void compare_sets(const rt_tensor_set *got, const rt_tensor_set *want, double tol, const char *what) {
    double worst = 0;
    CHECK_MSG(got->count == want->count && want->count > 20, "%s: %d tensors against %d", what, got->count, want->count);
    for (int i = 0; i < want->count; i++) {
        const rt_tensor *w = &want->tensors[i], *g = rt_tensor_set_find(got, w->name);
        CHECK_MSG(g != NULL, "%s: '%s' missing", what, w->name);
        if (!g || rt_tensor_numel(g) != rt_tensor_numel(w)) continue;
        int64_t n = rt_tensor_numel(w);
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        CHECK(rt_tensor_to_f32(g, a) == 0 && rt_tensor_to_f32(w, b) == 0);
        if (strstr(w->name, "qkv.bias") && n % 3 == 0)
            for (int64_t k = n / 3; k < 2 * n / 3; k++) a[k] = b[k] = 0; /* the key third */
        double e = test_rel_l2(a, b, n);
        CHECK_MSG(e <= tol, "%s: %s relative L2 %.3g > %.3g", what, w->name, e, tol);
        if (e > worst) worst = e;
        free(a);
        free(b);
    }
    fprintf(stderr, "%s: worst relative L2 %.3g\n", what, worst);
}

/* The emu EXE of deit_tiny.yaml with `defs`, built with --fuse `fuse` (its kernels.cu holding
 * `kernel`, or not when want is 0), trained 3 steps on `batch` (from `init` when given):
 * weights into *out, losses[3]. */
static int train(const char *defs, const char *fuse, int nbatch, const char *batch, const char *init,
                 const char *kernel, int want, rt_tensor_set *out, float *losses) {
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    char path[1100], err[1024], init_arg[1100] = "";
    if (init) snprintf(init_arg, sizeof init_arg, "--init '%s'", init);
    int rc = test_sh("'%s' compile '%s/models/deit_tiny.yaml' %s --fuse %s --batch %d --target emu -o '%s/exe' "
                     "--emit-dir '%s/emit'", bin, src, defs, fuse, nbatch, tmp, tmp);
    CHECK_MSG(rc == 0, "--fuse %s: compile failed", fuse);
    rc = rc ? rc : test_sh("'%s/exe' train --data '%s' %s --steps 3 --no-shuffle --lr 1e-3 --weight-decay 0.05 "
                           "--save '%s/out.safetensors' --metrics '%s/m.jsonl'", tmp, batch, init_arg, tmp, tmp);
    CHECK_MSG(rc == 0, "--fuse %s: training failed", fuse);
    if (rc) return -1;
    char *cu = slurp((snprintf(path, sizeof path, "%s/emit/kernels.cu", tmp), path));
    CHECK_MSG(cu && (strstr(cu, kernel) != NULL) == want, "--fuse %s: kernels.cu %s %s", fuse, want ? "lacks" : "has",
              kernel);
    free(cu);
    snprintf(path, sizeof path, "%s/m.jsonl", tmp);
    CHECK(read_losses(path, losses, 3) == 3);
    snprintf(path, sizeof path, "%s/out.safetensors", tmp);
    CHECK_MSG(rt_safetensors_read(path, out, err, sizeof err) == 0, "%s", err);
    return 0;
}

/* fused against unfused: losses and weights within 1e-5 */
static void agree(rt_tensor_set *out, float (*losses)[3], int runs, const char *const *fuse, const char *where) {
    for (int m = 1; m < runs; m++) {
        char what[160];
        snprintf(what, sizeof what, "%s: weights after 3 steps, --fuse %s vs none", where, fuse[m]);
        compare_sets(&out[m], &out[0], 1e-5, what);
        double e = test_rel_l2(losses[m], losses[0], 3);
        CHECK_MSG(e <= 1e-5, "%s: losses, --fuse %s vs none: relative L2 %.3g", where, fuse[m], e);
    }
}

/* a batch of 4 random images of side S, labels below 7 */
static int random_batch(int S, const char *path) {
    enum { N = 4 };
    char err[1024];
    float *img = malloc(sizeof(float) * N * 3 * (size_t)(S * S));
    int64_t labels[N] = {2, 0, 6, 3};
    uint64_t seed = 4242;
    for (int i = 0; i < N * 3 * S * S; i++) img[i] = (float)(rt_uniform01(&seed) * 2 - 1);
    rt_tensor t[2] = {{"images", RT_F32, 4, {N, 3, S, S}, sizeof(float) * N * 3 * (size_t)(S * S), img},
                      {"labels", RT_I64, 1, {N}, sizeof labels, labels}};
    int rc = rt_safetensors_write(path, t, 2, NULL, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    free(img);
    return rc;
}

static int test_emu_micro(void) {
    char data[1024], batch[1100], init[1100];
    snprintf(data, sizeof data, "%s/deit_micro", test_env("DEITC_TESTDATA"));
    snprintf(batch, sizeof batch, "%s/batch.safetensors", data);
    snprintf(init, sizeof init, "%s/init.safetensors", data);
    const char *micro = "-D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2";
    enum { RUNS = 7 };
    const char *fuse[RUNS] = {"none", "bias-gelu-grad", "bias-grad", "all", "residual-layer-norm-grad",
                              "select-token-layer-norm", "softmax-cross-entropy"};
    const char *kernel[RUNS] = {"_chain_sum_to(", "_bias_gelu_grad(", "_chain_sum_to(", "_bias_gelu_grad(",
                                "_layer_norm_dx_chain(", "layer_norm_dx (f32[4,1,64]", "_cross_entropy_with_grad_pass1("};
    rt_tensor_set out[RUNS] = {{0}};
    float losses[RUNS][3] = {{0}};
    int ok = 1;
    for (int m = 0; m < RUNS && ok; m++) ok = !train(micro, fuse[m], 4, batch, init, kernel[m], m > 0, &out[m], losses[m]);
    if (ok) agree(out, losses, RUNS, fuse, "deit_micro");
    for (int m = 0; m < RUNS; m++) rt_tensor_set_free(&out[m]);
    return test_result();
}

static int test_emu_own(void) {
    char batch[1100];
    int ok;
    /* our own size: 12x12 patches + the class token, 3 heads of 16, mlp_ratio 2, 7 classes; the
     * column sums over 580 rows take two passes */
    const char *own = "-D img_size=48 -D patch_size=4 -D num_classes=7 -D embed_dim=48 -D depth=2 -D num_heads=3 "
                      "-D mlp_ratio=2";
    enum { RUNS2 = 4 };
    const char *fuse2[RUNS2] = {"none", "all", "residual-layer-norm", "bias-grad,residual-layer-norm-grad"};
    const char *kernel2[RUNS2] = {"_layer_norm_chain(", "bias_gelu_grad_pass1", "_layer_norm_chain(",
                                  "_layer_norm_dx_chain_sum_pass1("};
    rt_tensor_set out2[RUNS2] = {{0}};
    float losses2[RUNS2][3] = {{0}};
    snprintf(batch, sizeof batch, "%s/rand48.safetensors", tmp);
    ok = !random_batch(48, batch);
    for (int m = 0; m < RUNS2 && ok; m++)
        ok = !train(own, fuse2[m], 4, batch, NULL, kernel2[m], m > 0, &out2[m], losses2[m]);
    if (ok) agree(out2, losses2, RUNS2, fuse2, "img48");
    for (int m = 0; m < RUNS2; m++) rt_tensor_set_free(&out2[m]);
    return test_result();
}

/* ---- tanh: gelu-epilogue --------------------------------------------------------------- */

/* how many GEMM steps of `dir`/plan.c have epilogue `name` */
static int count_in_plan(const char *dir, const char *name) {
    char path[1100];
    snprintf(path, sizeof path, "%s/plan.c", dir);
    char *s = slurp(path);
    int n = 0;
    for (const char *p = s; p && (p = strstr(p, name)); p += strlen(name)) n++;
    free(s);
    return n;
}

/* A tanh-GELU DeiT-micro (no qkv bias: its key third's exactly zero gradient is sign noise
 * under Adam, whatever the summation order): --fuse all runs each block's fc1 as one GEMM
 * with GELU_AUX_BIAS and its backward's fc2 dgrad with DGELU_BGRAD, in the emu's plan and (with
 * NVRTC) the cuda target's; the emu EXEs with and without agree on losses and weights after 3
 * steps (1e-5). The EXE against the interpreter: codegen_emu_gelu_tanh (test_codegen). */
static int test_tanh(void) {
    const char *defs = "-D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2 "
                       "-D gelu=tanh -D qkv_bias=false";
    char batch[1100], dir[1100];
    snprintf(batch, sizeof batch, "%s/rand32.safetensors", tmp);
    if (random_batch(32, batch)) return test_result();
    const char *fuse[2] = {"none", "all"};
    rt_tensor_set out[2] = {{0}};
    float losses[2][3] = {{0}};
    int ok = 1;
    snprintf(dir, sizeof dir, "%s/emit", tmp);
    for (int m = 0; m < 2 && ok; m++) {
        /* tanh GELU keeps no bias-gelu or bias-gelu-grad kernel: the epilogues took them */
        ok = !train(defs, fuse[m], 4, batch, NULL, "_bias_gelu", 0, &out[m], losses[m]);
        int fwd = count_in_plan(dir, ".epilogue = RT_EPILOGUE_GELU_AUX_BIAS"),
            bwd = count_in_plan(dir, ".epilogue = RT_EPILOGUE_DGELU_BGRAD");
        CHECK_MSG(fwd == (m ? 2 : 0) && bwd == (m ? 2 : 0), "--fuse %s: %d GELU_AUX_BIAS and %d DGELU_BGRAD GEMMs",
                  fuse[m], fwd, bwd);
    }
    if (ok) agree(out, losses, 2, fuse, "tanh gelu");
    for (int m = 0; m < 2; m++) rt_tensor_set_free(&out[m]);
    /* the cuda target's plan (NVRTC compiles the kernels; without it this part is skipped) */
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    snprintf(dir, sizeof dir, "%s/cuda", tmp);
    int rc = test_sh("'%s' compile '%s/models/deit_tiny.yaml' %s --batch 4 --target cuda --arch sm_90 --precision fp32 -o '%s/exe' "
                     "--emit-dir '%s' 2> '%s.log'", bin, src, defs, dir, dir, dir);
    char log[1200];
    snprintf(log, sizeof log, "%s.log", dir);
    char *why = slurp(log);
    if (rc && why && strstr(why, "NVRTC")) {
        fprintf(stderr, "cuda target: no NVRTC here, its plan not checked (%s)\n", why);
    } else {
        CHECK_MSG(rc == 0, "cuda compile failed: %s", why ? why : "");
        CHECK(count_in_plan(dir, ".epilogue = RT_EPILOGUE_GELU_AUX_BIAS") == 2 &&
              count_in_plan(dir, ".epilogue = RT_EPILOGUE_DGELU_BGRAD") == 2);
    }
    free(why);
    return test_result();
}

/* ---- select: select-token-layer-norm ---------------------------------------------------- */

/* The DeiT-micro training step of `model` with --fuse `fuse`: LayerNorms of a token slice, of
 * all the tokens, and LayerNorm dxs of one token a row */
static void select_counts(const char *model, const char *fuse, int *sliced, int *full, int *small_dx) {
    const char *src = test_env("DEITC_SOURCE_DIR");
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/models/%s.yaml", src, model);
    fe_define micro[] = {{"img_size", "32"}, {"patch_size", "8"}, {"num_classes", "10"},
                         {"embed_dim", "64"}, {"depth", "2"}, {"num_heads", "2"}};
    ir_graph *g = NULL;
    *sliced = *full = *small_dx = -1;
    CHECK_MSG(fe_load_model(path, micro, 6, 4, &g, err, sizeof err) == 0, "%s", err);
    if (!g) return;
    pass_options po;
    pass_options_default(&po);
    po.fuse = fuse;
    pass_result *r = pass_pipeline_run(g, &po, "training", err, sizeof err);
    CHECK_MSG(r != NULL, "%s --fuse %s: %s", model, fuse, err);
    if (!r) return;
    *sliced = *full = *small_dx = 0;
    for (int i = 0; i < r->g->n; i++) {
        const ir_node *n = &r->g->nodes[i];
        if (n->op == IR_OP_LAYER_NORM && r->g->nodes[n->inputs[0]].op == IR_OP_SLICE && n->shape[1] == 1) ++*sliced;
        else if (n->op == IR_OP_LAYER_NORM) ++*full;
        if (n->op == IR_OP_LAYER_NORM_DX && n->shape[1] == 1) ++*small_dx;
    }
    pass_result_free(r);
}

/* select-token-layer-norm: the final LayerNorm on the head's token rows only (DeiT: the class
 * token; distilled: the class and the distillation tokens, each its own), forward and backward;
 * the interpreter (deitc run, 2 training steps) gives the same bits with and without it (the
 * distilled model: within 1e-6, its norm's gamma and beta gradients summed token by token). The
 * emu EXEs: emu_micro. */
static int test_select(void) {
    static const struct { const char *model; int tokens; } M[] = {{"deit_tiny", 1}, {"deit_tiny_distilled", 2}};
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    const char *micro = "-D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2";
    char batch[1100], err[1024];
    snprintf(batch, sizeof batch, "%s/rand32.safetensors", tmp);
    if (random_batch(32, batch)) return test_result();
    for (int k = 0; k < 2; k++) {
        int sliced, full, small_dx;
        select_counts(M[k].model, "none", &sliced, &full, &small_dx);
        CHECK_MSG(sliced == 0 && full == 5 && small_dx == 0, "%s none: %d sliced, %d full, %d small dx", M[k].model,
                  sliced, full, small_dx);
        select_counts(M[k].model, "select-token-layer-norm", &sliced, &full, &small_dx);
        CHECK_MSG(sliced == M[k].tokens && full == 4 && small_dx == M[k].tokens,
                  "%s select-token-layer-norm: %d sliced, %d full, %d small dx", M[k].model, sliced, full, small_dx);
        rt_tensor_set out[2] = {{0}};
        const char *fuse[2] = {"none", "select-token-layer-norm"};
        for (int m = 0; m < 2; m++) {
            char path[1100];
            snprintf(path, sizeof path, "%s/run%d.safetensors", tmp, m);
            int rc = test_sh("'%s' run '%s/models/%s.yaml' %s --input '%s' -o '%s' --steps 2 --lr 1e-3 --weight-decay 0.05 "
                             "--fuse %s", bin, src, M[k].model, micro, batch, path, fuse[m]);
            CHECK_MSG(rc == 0, "%s: deitc run --fuse %s failed", M[k].model, fuse[m]);
            CHECK_MSG(rc || rt_safetensors_read(path, &out[m], err, sizeof err) == 0, "%s", err);
        }
        CHECK_MSG(out[0].count == out[1].count && out[0].count > 20, "%s: %d tensors against %d", M[k].model,
                  out[1].count, out[0].count);
        if (M[k].tokens == 1) { /* the same arithmetic: the same bits */
            for (int i = 0; i < out[0].count; i++) {
                const rt_tensor *a = &out[0].tensors[i], *b = rt_tensor_set_find(&out[1], a->name);
                CHECK_MSG(b && b->nbytes == a->nbytes && memcmp(a->data, b->data, a->nbytes) == 0,
                          "%s: %s differs with select-token-layer-norm", M[k].model, a->name);
            }
        } else { /* norm.weight and norm.bias: each token's gradient summed apart, then added */
            compare_sets(&out[1], &out[0], 1e-6, "deit_tiny_distilled: deitc run, select-token-layer-norm vs none");
        }
        for (int m = 0; m < 2; m++) rt_tensor_set_free(&out[m]);
    }
    return test_result();
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_fuse_grad count|emu_micro|emu_own|tanh|select\n");
        return 2;
    }
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/deitc_fg_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 2;
    }
    int rc = 2;
    if (strcmp(argv[1], "count") == 0) rc = test_count();
    else if (strcmp(argv[1], "emu_micro") == 0) rc = test_emu_micro();
    else if (strcmp(argv[1], "emu_own") == 0) rc = test_emu_own();
    else if (strcmp(argv[1], "tanh") == 0) rc = test_tanh();
    else if (strcmp(argv[1], "select") == 0) rc = test_select();
    else fprintf(stderr, "unknown mode %s\n", argv[1]);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return rc;
}
