/* test_training.c: the training pass.
 *
 * 1. Structure and options on a small hand-built graph: loss/grad/opt/state nodes, ADAMW last
 *    with timm's weight-decay rule, --freeze patterns, weights the loss does not reach,
 *    gradient clipping (CLIP_COEF's value and its effect on the AdamW moments), error cases,
 *    loss scaling (its nodes; exact power-of-two scaling; skipped steps).
 * 2. Oracle: every case under DEITC_TESTDATA with init/batch/expected/after_steps safetensors
 *    (PyTorch float64, ../shared/tools/deit_ref.py) is built from models/deit_tiny.yaml with the
 *    case's sizes, trained for its number of steps by the f32 interpreter, and compared:
 *    gradients of step 1 and the losses within relative L2 1e-4, weights after the steps within
 *    5e-3; the f64 interpreter's gradients within 1e-6. The worst errors are printed.
 */
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/rt.h"
#include "tests/harness.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

static const ir_loc NOLOC = {0};

/* ---- 1. structure on a small graph ------------------------------------------------------- */

/* x [3,4] + pos_embed [1,4] -> layer_norm (norm.weight/bias) -> @ fc.weight^T + fc.bias ->
 * logits [3,5]; plus a trainable "unused" weight the logits do not depend on. */
static ir_graph *small_graph(void) {
    ir_graph *g = ir_graph_new();
    int64_t xs[2] = {3, 4}, ps[2] = {1, 4}, ws[2] = {5, 4}, bs[1] = {5}, cs[1] = {4}, us[1] = {2};
    int x = ir_leaf(g, IR_OP_INPUT, IR_F32, 2, xs, "images", NOLOC);
    int pos = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 2, ps, "pos_embed", NOLOC);
    int gam = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 1, cs, "norm.weight", NOLOC);
    int bet = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 1, cs, "norm.bias", NOLOC);
    int w = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 2, ws, "fc.weight", NOLOC);
    int b = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 1, bs, "fc.bias", NOLOC);
    int u = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 1, us, "unused", NOLOC);
    for (int i = pos; i <= u; i++) g->nodes[i].flags |= IR_NODE_TRAINABLE;
    int h = ir_binary(g, IR_OP_ADD, x, pos, NULL, "h", NOLOC);
    ir_attrs ln = {0};
    ln.eps = 1e-6;
    int in[3] = {h, gam, bet};
    h = ir_add(g, IR_OP_LAYER_NORM, in, 3, &ln, IR_F32, 0, NULL, "norm", NOLOC);
    ir_attrs mm = {0};
    mm.trans_b = 1;
    mm.alpha = 1;
    int y = ir_binary(g, IR_OP_MATMUL, h, w, &mm, "fc", NOLOC);
    y = ir_binary(g, IR_OP_ADD, y, b, NULL, "fc", NOLOC);
    ir_node_set_output(g, y, "logits");
    if (y < 0 || ir_verify(g)) fprintf(stderr, "small_graph: %s\n", g->error);
    return g;
}

static int count_op(const ir_graph *g, ir_op op) {
    int k = 0;
    for (int i = 0; i < g->n; i++) k += g->nodes[i].op == op;
    return k;
}

static const ir_node *adamw_of(const ir_graph *g, const char *weight) {
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].op == IR_OP_ADAMW && strcmp(g->nodes[g->nodes[i].inputs[0]].name, weight) == 0)
            return &g->nodes[i];
    return NULL;
}

static void bind_random(ir_interp *it, const ir_graph *g) {
    uint64_t s = 12345;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_WEIGHT && n->op != IR_OP_INPUT) continue;
        int64_t k = ir_numel(n);
        double *v = malloc(sizeof(double) * (size_t)k);
        for (int64_t j = 0; j < k; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            v[j] = (double)(s >> 11) / (double)(1ull << 53) * 2 - 1;
            if (n->name && strcmp(n->name, "labels") == 0) v[j] = (double)(j % 5);
            if (n->name && strcmp(n->name, "opt") == 0) {
                const double slots[IR_OPT_SLOTS] = {1e-2, 0.05, 0.1, 0.001, 1.0};
                v[j] = slots[j];
            }
        }
        ir_interp_set_f64(it, i, v);
        free(v);
    }
}

/* x [3,4] + b0 + ... + b9 (each [4]) -> @ fc.weight^T -> logits [3,5]: 11 trained weights */
static ir_graph *wide_graph(void) {
    ir_graph *g = ir_graph_new();
    int64_t xs[2] = {3, 4}, ws[2] = {5, 4}, bs[1] = {4};
    int h = ir_leaf(g, IR_OP_INPUT, IR_F32, 2, xs, "images", NOLOC);
    for (int i = 0; i < 10; i++) {
        char name[8];
        snprintf(name, sizeof name, "b%d", i);
        int b = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 1, bs, name, NOLOC);
        g->nodes[b].flags |= IR_NODE_TRAINABLE;
        h = ir_binary(g, i % 2 ? IR_OP_MUL : IR_OP_ADD, h, b, NULL, NULL, NOLOC);
    }
    int w = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 2, ws, "fc.weight", NOLOC);
    g->nodes[w].flags |= IR_NODE_TRAINABLE;
    ir_attrs mm = {0};
    mm.trans_b = 1;
    mm.alpha = 1;
    ir_node_set_output(g, ir_binary(g, IR_OP_MATMUL, h, w, &mm, NULL, NOLOC), "logits");
    return g;
}

/* CLIP_COEF puts min(1, max/(norm+1e-6)) into GRAD_SCALE, and AdamW's first moment after one
 * step is (1 - beta1) * grad * that */
static void check_clip(const ir_graph *f, double max_norm, int groups) {
    char err[512];
    pass_train_options o;
    pass_train_options_default(&o);
    o.clip_grad_norm = max_norm;
    ir_graph *t = pass_training(f, &o, err, sizeof err);
    CHECK_MSG(t != NULL, "%s", err);
    if (!t) return;
    CHECK(count_op(t, IR_OP_CLIP_COEF) == 1);
    CHECK_MSG(count_op(t, IR_OP_SUM_SQUARES) == groups, "%d sum_squares", count_op(t, IR_OP_SUM_SQUARES));
    ir_interp *it = ir_interp_new(t, 1);
    bind_random(it, t);
    CHECK(ir_interp_run(it) == 0);
    double ss = 0, opt[IR_OPT_SLOTS] = {0}, v[64], m[64];
    for (int i = 0; i < t->n; i++) {
        const ir_node *n = &t->nodes[i];
        if (n->op == IR_OP_CLIP_COEF) ir_interp_get_f64(it, i, opt);
        if (!(n->flags & IR_NODE_OUTPUT) || strncmp(n->name, "grad.", 5) || ir_numel(n) > 64) continue;
        ir_interp_get_f64(it, i, v);
        for (int64_t j = 0; j < ir_numel(n); j++) ss += v[j] * v[j];
    }
    double coef = max_norm / (sqrt(ss) + 1e-6);
    if (coef > 1) coef = 1;
    CHECK_MSG(fabs(opt[IR_OPT_GRAD_SCALE] - coef) < 1e-12 * (1 + coef), "clip scale %g, want %g",
              opt[IR_OPT_GRAD_SCALE], coef);
    CHECK(opt[IR_OPT_LR] == 1e-2);
    ir_interp_get_f64(it, ir_find(t, "grad.fc.weight"), v);
    ir_interp_get_f64(it, ir_find(t, "adam_m.fc.weight"), m);
    for (int j = 0; j < 20; j++) CHECK(fabs(m[j] - 0.1 * v[j] * coef) < 1e-12);
    printf("clip %g, %d sum_squares group(s): norm %.4f, scale %.6f\n", max_norm, groups, sqrt(ss), coef);
    ir_interp_free(it);
    ir_graph_free(t);
}

static void test_structure(void) {
    char err[512];
    ir_graph *f = small_graph();
    pass_train_options o;
    pass_train_options_default(&o);
    ir_graph *t = pass_training(f, &o, err, sizeof err);
    CHECK_MSG(t != NULL, "%s", err);
    if (!t) {
        ir_graph_free(f);
        return;
    }
    CHECK(ir_verify(t) == 0);
    CHECK(ir_find(t, "loss") >= 0 && ir_find(t, "logits") >= 0 && ir_find(t, "labels") >= 0);
    CHECK(ir_find(t, "opt") >= 0 && t->nodes[ir_find(t, "opt")].shape[0] == IR_OPT_SLOTS);
    CHECK(t->nodes[ir_find(t, "labels")].dtype == IR_I64);
    static const char *const trained[] = {"pos_embed", "norm.weight", "norm.bias", "fc.weight", "fc.bias"};
    for (int i = 0; i < 5; i++) {
        char name[64];
        snprintf(name, sizeof name, "grad.%s", trained[i]);
        CHECK_MSG(ir_find(t, name) >= 0, "no output %s", name);
        snprintf(name, sizeof name, "adam_m.%s", trained[i]);
        CHECK_MSG(ir_find(t, name) >= 0 && t->nodes[ir_find(t, name)].op == IR_OP_STATE, "no state %s", name);
        CHECK_MSG(adamw_of(t, trained[i]) != NULL, "no adamw for %s", trained[i]);
    }
    CHECK(count_op(t, IR_OP_ADAMW) == 5);
    CHECK(ir_find(t, "grad.unused") < 0 && !(t->nodes[ir_find(t, "unused")].flags & IR_NODE_TRAINABLE));
    CHECK(adamw_of(t, "fc.weight") && adamw_of(t, "fc.weight")->attrs.decay == 1);
    CHECK(adamw_of(t, "fc.bias") && adamw_of(t, "fc.bias")->attrs.decay == 0);
    CHECK(adamw_of(t, "pos_embed") && adamw_of(t, "pos_embed")->attrs.decay == 0);
    CHECK(adamw_of(t, "fc.weight") && adamw_of(t, "fc.weight")->attrs.beta2 == 0.999);
    for (int i = 0, seen = 0; i < t->n; i++) { /* every ADAMW after every other node */
        if (t->nodes[i].op == IR_OP_ADAMW) seen = 1;
        else CHECK_MSG(!seen, "node %%%d after an adamw", i);
    }
    CHECK(count_op(t, IR_OP_LAYER_NORM_DX) == 1); /* pos_embed is trained: dx is needed */
    CHECK(count_op(t, IR_OP_LAYER_NORM_DGAMMA) == 1);
    CHECK(count_op(t, IR_OP_CLIP_COEF) == 0);
    /* the text form shows the backward graph */
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    ir_print(t, mem);
    fclose(mem);
    CHECK(strstr(buf, "= adamw(") && strstr(buf, "= layer_norm_dgamma(") && strstr(buf, "-> grad.fc.weight"));
    free(buf);
    ir_graph_free(t);

    /* --freeze: fc.* and norm.bias stay WEIGHT without gradient or update */
    const char *const pats[] = {"fc.*", "norm.b?as"};
    o.freeze = pats;
    o.nfreeze = 2;
    t = pass_training(f, &o, err, sizeof err);
    CHECK_MSG(t != NULL, "%s", err);
    if (t) {
        CHECK(count_op(t, IR_OP_ADAMW) == 2);
        CHECK(ir_find(t, "grad.fc.weight") < 0 && ir_find(t, "grad.norm.bias") < 0);
        CHECK(ir_find(t, "grad.pos_embed") >= 0 && ir_find(t, "grad.norm.weight") >= 0);
        CHECK(!(t->nodes[ir_find(t, "fc.weight")].flags & IR_NODE_TRAINABLE));
        CHECK(ir_count_params(t) == 4 + 4);
        ir_graph_free(t);
    }
    o.nfreeze = 0;

    /* clipping, with one SUM_SQUARES group and with two */
    ir_graph *wide = wide_graph();
    for (int pass = 0; pass < 4; pass++)
        check_clip(pass < 2 ? f : wide, pass % 2 ? 1e3 : 1e-3, pass < 2 ? 1 : 2);
    ir_graph_free(wide);
    o.clip_grad_norm = 0;

    /* label smoothing reaches the loss and its gradient */
    o.label_smoothing = 0.1;
    t = pass_training(f, &o, err, sizeof err);
    CHECK_MSG(t != NULL, "%s", err);
    for (int i = 0; t && i < t->n; i++)
        if (t->nodes[i].op == IR_OP_CROSS_ENTROPY || t->nodes[i].op == IR_OP_CROSS_ENTROPY_GRAD)
            CHECK(t->nodes[i].attrs.smoothing == 0.1);
    ir_graph_free(t);
    o.label_smoothing = 0;

    /* errors: no logits among several outputs; logits that are not [B,K] */
    ir_node_set_output(f, 7, "h_out");
    f->nodes[f->n - 1].name = "not_logits";
    t = pass_training(f, &o, err, sizeof err);
    CHECK(t == NULL && strstr(err, "logits"));
    ir_graph_free(t);
    printf("no logits: %s\n", err);
    o.output = "h_out";
    o.clip_grad_norm = 0;
    t = pass_training(f, &o, err, sizeof err); /* any 2-D float output can carry the loss */
    CHECK_MSG(t != NULL, "%s", err);
    CHECK(t && count_op(t, IR_OP_ADAMW) == 1); /* only pos_embed reaches h */
    ir_graph_free(t);
    o.output = "nonexistent";
    t = pass_training(f, &o, err, sizeof err);
    CHECK(t == NULL && strstr(err, "nonexistent"));
    printf("bad output: %s\n", err);
    ir_graph_free(f);

    ir_graph *g3 = ir_graph_new();
    int64_t s3[3] = {2, 3, 4};
    int x = ir_leaf(g3, IR_OP_WEIGHT, IR_F32, 3, s3, "w", NOLOC);
    ir_node_set_output(g3, ir_unary(g3, IR_OP_GELU, x, NULL, NULL, NOLOC), "logits");
    pass_train_options_default(&o);
    t = pass_training(g3, &o, err, sizeof err);
    CHECK(t == NULL && strstr(err, "[B,K]"));
    printf("3-D logits: %s\n", err);
    ir_graph_free(t);
    ir_graph_free(g3);
}

/* ---- 2. oracle ---------------------------------------------------------------------------- */

static double config_num(const char *json, const char *key, double fallback) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? strtod(p + strlen(pat), NULL) : fallback;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    if (buf) fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    return buf;
}

typedef struct {
    double worst;
    char name[128];
} worst_t;

static void note(worst_t *w, double err, const char *name) {
    if (err > w->worst || isnan(err)) {
        w->worst = isnan(err) ? INFINITY : err;
        snprintf(w->name, sizeof w->name, "%s", name);
    }
}

/* Trains the case for its steps in f32 (or only step 1 in f64) and compares with the oracle. */
static void run_case(const char *dir, const char *case_name, int f64) {
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *cfg = read_text(path);
    CHECK_MSG(cfg != NULL, "cannot read %s", path);
    if (!cfg) return;
    static const char *const keys[] = {"img_size", "patch_size", "num_classes", "embed_dim",
                                       "depth", "num_heads", "mlp_ratio"};
    char vals[7][32];
    fe_define defs[7];
    for (int i = 0; i < 7; i++) {
        snprintf(vals[i], sizeof vals[i], "%g", config_num(cfg, keys[i], 0));
        defs[i].name = keys[i];
        defs[i].value = vals[i];
    }
    long steps = f64 ? 1 : (long)config_num(cfg, "steps", 3);
    double lr = config_num(cfg, "lr", 1e-3), wd = config_num(cfg, "weight_decay", 0.05);
    free(cfg);

    rt_tensor_set init = {0}, batch = {0}, expect = {0}, after = {0};
    const char *files[4] = {"init", "batch", "expected", "after_steps"};
    rt_tensor_set *sets[4] = {&init, &batch, &expect, &after};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, files[i]);
        CHECK_MSG(rt_safetensors_read(path, sets[i], err, sizeof err) == 0, "%s", err);
    }
    const rt_tensor *images = rt_tensor_set_find(&batch, "images");
    const rt_tensor *labels = rt_tensor_set_find(&batch, "labels");
    ir_graph *g = NULL;
    snprintf(path, sizeof path, "%s/models/deit_tiny.yaml", test_env("DEITC_SOURCE_DIR"));
    if (!images || !labels) goto done;
    CHECK_MSG(fe_load_model(path, defs, 7, images->shape[0], &g, err, sizeof err) == 0, "%s", err);
    if (!g) goto done;
    pass_options po;
    pass_options_default(&po);
    g = pass_result_take_graph(pass_pipeline_run(g, &po, NULL, err, sizeof err));
    CHECK_MSG(g != NULL, "%s", err);
    if (!g) goto done;

    ir_interp *it = ir_interp_new(g, f64);
    int opt = ir_find(g, "opt"), loss = ir_find(g, "loss");
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        const rt_tensor *t = n->op == IR_OP_WEIGHT ? rt_tensor_set_find(&init, n->name)
                           : n->op == IR_OP_INPUT && i != opt ? rt_tensor_set_find(&batch, n->name)
                                                              : NULL;
        if (n->op != IR_OP_WEIGHT && (n->op != IR_OP_INPUT || i == opt)) continue;
        CHECK_MSG(t && rt_tensor_numel(t) == ir_numel(n), "%s: no tensor %s of %lld elements", dir,
                  n->name, (long long)ir_numel(n));
        if (!t || rt_tensor_numel(t) != ir_numel(n)) continue;
        if (n->dtype == IR_I64) {
            int64_t *v = malloc(sizeof(int64_t) * (size_t)ir_numel(n));
            rt_tensor_to_i64(t, v);
            ir_interp_set_i64(it, i, v);
            free(v);
        } else {
            float *v = malloc(sizeof(float) * (size_t)ir_numel(n));
            rt_tensor_to_f32(t, v);
            ir_interp_set_f32(it, i, v);
            free(v);
        }
    }
    worst_t wg = {0, ""}, ww = {0, ""}, wl = {0, ""};
    float *losses = calloc((size_t)steps, sizeof(float));
    for (long step = 1; step <= steps; step++) {
        /* as deitc run: the host fills the opt slots each step */
        double slots[IR_OPT_SLOTS] = {lr, wd, 1 - pow(0.9, (double)step), 1 - pow(0.999, (double)step), 1};
        float slots32[IR_OPT_SLOTS];
        for (int s = 0; s < IR_OPT_SLOTS; s++) slots32[s] = (float)slots[s];
        if (f64) ir_interp_set_f64(it, opt, slots);
        else ir_interp_set_f32(it, opt, slots32);
        CHECK_MSG(ir_interp_run(it) == 0, "%s", ir_interp_error(it));
        ir_interp_get_f32(it, loss, &losses[step - 1]);
        if (step > 1) continue;
        for (int i = 0; i < g->n; i++) {
            const ir_node *n = &g->nodes[i];
            if (!(n->flags & IR_NODE_OUTPUT) || strncmp(n->name, "grad.", 5)) continue;
            const rt_tensor *e = rt_tensor_set_find(&expect, n->name);
            CHECK_MSG(e && rt_tensor_numel(e) == ir_numel(n), "%s: expected has no %s", dir, n->name);
            if (!e || rt_tensor_numel(e) != ir_numel(n)) continue;
            float *a = malloc(sizeof(float) * (size_t)ir_numel(n)), *b = malloc(sizeof(float) * (size_t)ir_numel(n));
            ir_interp_get_f32(it, i, a);
            rt_tensor_to_f32(e, b);
            note(&wg, test_rel_l2(a, b, (long)ir_numel(n)), n->name);
            free(a);
            free(b);
        }
        int ngrads = 0;
        for (int i = 0; i < expect.count; i++) ngrads += strncmp(expect.tensors[i].name, "grad.", 5) == 0;
        int nout = 0;
        for (int i = 0; i < g->n; i++)
            nout += g->nodes[i].flags & IR_NODE_OUTPUT && strncmp(g->nodes[i].name, "grad.", 5) == 0;
        CHECK_MSG(nout == ngrads, "%s: %d gradients, the oracle has %d", dir, nout, ngrads);
    }
    double gtol = f64 ? 1e-6 : 1e-4;
    CHECK_MSG(wg.worst < gtol, "%s%s: gradient %s off by %.3e (relative L2)", case_name, f64 ? " f64" : "",
              wg.name, wg.worst);
    if (!f64) {
        const rt_tensor *el = rt_tensor_set_find(&expect, "losses");
        CHECK(el && rt_tensor_numel(el) == steps);
        if (el && rt_tensor_numel(el) == steps) {
            float *b = malloc(sizeof(float) * (size_t)steps);
            rt_tensor_to_f32(el, b);
            note(&wl, test_rel_l2(losses, b, steps), "losses");
            free(b);
        }
        for (int i = 0; i < g->n; i++) {
            const ir_node *n = &g->nodes[i];
            if (n->op != IR_OP_WEIGHT) continue;
            const rt_tensor *e = rt_tensor_set_find(&after, n->name);
            CHECK_MSG(e && rt_tensor_numel(e) == ir_numel(n), "%s: after_steps has no %s", dir, n->name);
            if (!e || rt_tensor_numel(e) != ir_numel(n)) continue;
            float *a = malloc(sizeof(float) * (size_t)ir_numel(n)), *b = malloc(sizeof(float) * (size_t)ir_numel(n));
            ir_interp_get_f32(it, i, a);
            rt_tensor_to_f32(e, b);
            note(&ww, test_rel_l2(a, b, (long)ir_numel(n)), n->name);
            free(a);
            free(b);
        }
        CHECK_MSG(wl.worst < 1e-4, "%s: losses off by %.3e", case_name, wl.worst);
        CHECK_MSG(ww.worst < 5e-3, "%s: weight %s off by %.3e after %ld steps", case_name, ww.name, ww.worst,
                  steps);
        printf("%-22s f32: worst grad %.2e (%s), losses %.2e, weights after %ld steps %.2e (%s)\n",
               case_name, wg.worst, wg.name, wl.worst, steps, ww.worst, ww.name);
    } else {
        printf("%-22s f64: worst grad %.2e (%s)\n", case_name, wg.worst, wg.name);
    }
    free(losses);
    ir_interp_free(it);
done:
    ir_graph_free(g);
    for (int i = 0; i < 4; i++) rt_tensor_set_free(sets[i]);
}

static void test_oracle(void) {
    const char *data = test_env("DEITC_TESTDATA");
    DIR *d = opendir(data);
    CHECK_MSG(d != NULL, "cannot open %s", data);
    if (!d) return;
    char names[64][256];
    int ncases = 0;
    struct dirent *e;
    while ((e = readdir(d)) && ncases < 64) {
        char p[1024];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s/after_steps.safetensors", data, e->d_name);
        if (e->d_name[0] != '.' && stat(p, &st) == 0) snprintf(names[ncases++], 256, "%s", e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)ncases, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    CHECK_MSG(ncases >= 2, "expected deit_micro and train_img16_h4_d2 under %s", data);
    for (int i = 0; i < ncases; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%.700s/%.255s", data, names[i]);
        run_case(dir, names[i], 0);
        run_case(dir, names[i], 1);
    }
}

/* --loss-scale: the scaler's nodes, and in the f32 interpreter a power-of-two scale gives the
 * unscaled run's bits (the scaling is exact), a huge static one that overflows a gradient skips
 * every step (weights as they were, the skip and step counts on the scaler) */
static void run_steps(const ir_graph *t, int steps, int tiny_inputs, float *w_out, float *sc_out) {
    ir_interp *it = ir_interp_new(t, 0);
    bind_random(it, t);
    for (int k = 0; tiny_inputs && k < 2; k++) { /* h = images + pos_embed tiny: LayerNorm's dx (pos_embed's grad) huge */
        int x = ir_find(t, k ? "pos_embed" : "images");
        double v[12];
        ir_interp_get_f64(it, x, v);
        for (int64_t j = 0; j < ir_numel(&t->nodes[x]); j++) v[j] *= 0x1p-14;
        ir_interp_set_f64(it, x, v);
    }
    int sc = ir_find(t, "loss_scaler");
    if (sc >= 0) ir_interp_set_f32(it, sc, t->nodes[sc].data);
    for (int k = 0; k < steps; k++) { /* the slots of step k+1, as the executables fill them */
        double exact[IR_OPT_SLOTS];
        float slots[IR_OPT_SLOTS];
        rt_opt_fill(exact, 1e-2, 0.05, 0.9, 0.999, k + 1);
        for (int j = 0; j < IR_OPT_SLOTS; j++) slots[j] = (float)exact[j];
        ir_interp_set_f32(it, ir_find(t, "opt"), slots);
        CHECK(ir_interp_run(it) == 0);
    }
    ir_interp_get_f32(it, ir_find(t, "fc.weight"), w_out);
    if (sc >= 0) ir_interp_get_f32(it, sc, sc_out);
    ir_interp_free(it);
}

static void test_loss_scale(void) {
    char err[512];
    ir_graph *f = small_graph();
    pass_train_options o;
    pass_train_options_default(&o);
    o.clip_grad_norm = 0.5;
    ir_graph *plain = pass_training(f, &o, err, sizeof err);
    o.loss_scale = IR_LOSS_SCALE_DYNAMIC;
    o.loss_scale_init = 1024;
    o.loss_scale_interval = 2;
    ir_graph *t = pass_training(f, &o, err, sizeof err);
    o.loss_scale = IR_LOSS_SCALE_STATIC;
    o.loss_scale_init = 0x1p126;
    ir_graph *huge = pass_training(f, &o, err, sizeof err);
    CHECK_MSG(plain && t && huge, "%s", err);
    if (plain && t && huge) {
        CHECK(ir_verify(t) == 0 && count_op(plain, IR_OP_LOSS_SCALE_OPT) == 0 && ir_find(plain, "loss_scaler") < 0);
        CHECK(count_op(t, IR_OP_LOSS_SCALE_OPT) == 1 && count_op(t, IR_OP_LOSS_SCALE_UPDATE) == 1);
        CHECK(t->nodes[t->n - 1].op == IR_OP_LOSS_SCALE_UPDATE); /* after every reader of the scale */
        int sc = ir_find(t, "loss_scaler");
        CHECK(sc >= 0 && t->nodes[sc].op == IR_OP_STATE && t->nodes[sc].data && t->nodes[sc].data[IR_SCALER_SCALE] == 1024 &&
              t->nodes[sc].data[IR_SCALER_INTERVAL] == 2 && t->nodes[sc].data[IR_SCALER_MODE] == IR_LOSS_SCALE_DYNAMIC);
        for (int i = 0; i < t->n; i++) /* the clipping reads the unscaled opt: the norm is the true one */
            if (t->nodes[i].op == IR_OP_CLIP_COEF) CHECK(t->nodes[t->nodes[i].inputs[1]].op == IR_OP_LOSS_SCALE_OPT);
        float w0[20], w1[20], w2[20], w3[20], s1[IR_SCALER_SLOTS], s3[IR_SCALER_SLOTS];
        run_steps(plain, 0, 0, w0, NULL);
        run_steps(plain, 3, 0, w1, NULL);
        run_steps(t, 3, 0, w2, s1);
        run_steps(huge, 3, 1, w3, s3); /* 2^126 * pos_embed's gradient is not finite */
        CHECK(memcmp(w1, w2, sizeof w1) == 0 && memcmp(w1, w0, sizeof w1) != 0);
        CHECK(s1[IR_SCALER_SCALE] == 2048 && s1[IR_SCALER_GROWTH] == 1 && s1[IR_SCALER_STEP] == 3 && s1[IR_SCALER_SKIPPED] == 0);
        CHECK(memcmp(w3, w0, sizeof w0) == 0);
        CHECK(s3[IR_SCALER_SCALE] == 0x1p126f && s3[IR_SCALER_SKIPPED] == 3 && s3[IR_SCALER_STEP] == 0 &&
              s3[IR_SCALER_OVERFLOW] == 1);
        printf("loss scaling: 3 steps at scale 1024 = 3 unscaled steps bit for bit; at 2^126 all 3 skipped\n");
    }
    ir_graph_free(plain);
    ir_graph_free(t);
    ir_graph_free(huge);
    ir_graph_free(f);
}

int main(void) {
    test_structure();
    test_loss_scale();
    test_oracle();
    return test_result();
}
