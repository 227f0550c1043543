/* test_onnx.c: tests of the ONNX frontend (frontend/onnx.c). One executable, one mode per ctest:
 *   test_onnx load         every model under deit_micro/, onnx/{small,wide}/ and onnx/export/
 *                          loads (opsets 13..20, typed fields, external data,
 *                          do_constant_folding=False, static batch, tanh GELU, initializers
 *                          deduplicated into Identity nodes), has the YAML
 *                          model's op histogram and parameter count, and its logits from the
 *                          reference interpreter match PyTorch's (relative L2 < 1e-4)
 *   test_onnx ops          small graphs of the other ops (Slice, Split, Gemm, Gather, Flatten,
 *                          ReduceMean keepdims=0, LayerNormalization without bias, Gelu tanh...)
 *                          against numpy
 *   test_onnx bad          truncated, random, unsupported op, missing external data, data length
 *                          disagreeing with the shape, undefined value, -D conflicts, Softmax
 *                          off the last axis, Tanh outside a GELU, a static batch asked for
 *                          another: each fails with a message naming what and where
 *   test_onnx cli-run      `deitc run X.onnx --input batch -o out` logits vs PyTorch
 *   test_onnx cli-train    `deitc run --steps 3 --lr 1e-3 --weight-decay 0.05` losses vs PyTorch
 *   test_onnx cli-inspect  `deitc inspect` op histogram, parameters and MACs per image of the
 *                          ONNX DeiTs (a static batch of 3 too) == the YAML ones
 *   test_onnx tiny         a full-size DeiT-Ti exported at run time by /usr/bin/python3 + torch
 *                          imports with 5,717,416 parameters in under a second (exit 77: skip)
 */
#include "frontend/frontend.h"
#include "runtime/rt.h"
#include "tests/harness.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


static const fe_define micro_defines[] = {
    {"img_size", "32"}, {"patch_size", "8"}, {"num_classes", "10"},
    {"embed_dim", "64"}, {"depth", "2"},     {"num_heads", "2"},
};
#define NMICRO ((int)(sizeof micro_defines / sizeof *micro_defines))

/* a case: folder under DEITC_TESTDATA, model files in it, batch, parameter count (0: not
 * checked), the -D settings of models/deit_tiny.yaml that make the same model, tanh GELU */
typedef struct {
    const char *dir;
    const char *models[8];
    int64_t batch, params;
    fe_define defines[8];
    int gelu_tanh;
} test_case;

static const test_case cases[] = {
    {"deit_micro", {"deit_opset13.onnx", "deit_opset17.onnx"}, 4, 114250,
     {{"img_size", "32"}, {"patch_size", "8"}, {"num_classes", "10"}, {"embed_dim", "64"}, {"depth", "2"},
      {"num_heads", "2"}}, 0},
    {"onnx/small", {"deit_opset14.onnx", "deit_opset15.onnx", "deit_opset16.onnx",
                    "deit_opset18.onnx", "deit_opset20_gelu.onnx", "deit_typed.onnx",
                    "deit_external.onnx"}, 2, 0,
     {{"img_size", "32"}, {"patch_size", "8"}, {"num_classes", "5"}, {"embed_dim", "32"}, {"depth", "1"},
      {"num_heads", "2"}, {"mlp_ratio", "2"}}, 0},
    {"onnx/wide", {"deit_opset13.onnx", "deit_opset17.onnx"}, 3, 0,
     {{"img_size", "48"}, {"patch_size", "16"}, {"num_classes", "7"}, {"embed_dim", "48"}, {"depth", "2"},
      {"num_heads", "3"}}, 0},
    /* exported by make_cases.py: do_constant_folding=False, static batch (no dynamic_axes) */
    {"onnx/export/nofold", {"deit_opset13_nofold.onnx", "deit_opset17_nofold.onnx", "deit_opset15_static.onnx",
                            "deit_opset16_static_nofold.onnx"}, 2, 0,
     {{"img_size", "24"}, {"patch_size", "8"}, {"num_classes", "4"}, {"embed_dim", "24"}, {"depth", "2"},
      {"num_heads", "2"}, {"mlp_ratio", "2"}}, 0},
    /* gelu(approximate='tanh') spelled out as Mul/Add/Tanh; head dim 4 */
    {"onnx/export/gelu_tanh", {"deit_opset13_static_nofold.onnx", "deit_opset14.onnx", "deit_opset17_nofold.onnx",
                               "deit_opset18_nofold.onnx"}, 3, 0,
     {{"img_size", "16"}, {"patch_size", "4"}, {"num_classes", "3"}, {"embed_dim", "16"}, {"depth", "2"},
      {"num_heads", "4"}, {"gelu", "tanh"}}, 1},
    /* a fresh model (LayerNorms 1/0, zero biases): torch exports equal initializers once and
     * the others as Identity nodes of it; untied again, every parameter counts */
    {"onnx/export/dedup", {"deit_opset17.onnx", "deit_opset13_nofold.onnx"}, 2, 7715,
     {{"img_size", "16"}, {"patch_size", "8"}, {"num_classes", "3"}, {"embed_dim", "16"}, {"depth", "2"},
      {"num_heads", "2"}, {"mlp_ratio", "2"}}, 0},
};

static int ndefines(const test_case *tc) {
    int n = 0;
    while (n < 8 && tc->defines[n].name) n++;
    return n;
}

static const char *data_path(char *buf, size_t n, const char *dir, const char *file) {
    snprintf(buf, n, "%s/%s/%s", test_env("DEITC_TESTDATA"), dir, file);
    return buf;
}

static void histogram(const ir_graph *g, int64_t *h) {
    memset(h, 0, sizeof(int64_t) * IR_OP_COUNT);
    for (int i = 0; i < g->n; i++) h[g->nodes[i].op]++;
}

static int same_histogram(const ir_graph *a, const ir_graph *b, const char *what) {
    int64_t ha[IR_OP_COUNT], hb[IR_OP_COUNT];
    histogram(a, ha);
    histogram(b, hb);
    int same = 1;
    for (int op = 0; op < IR_OP_COUNT; op++)
        if (ha[op] != hb[op]) {
            fprintf(stderr, "%s: %s %lld vs %lld\n", what, ir_op_name(op), (long long)ha[op], (long long)hb[op]);
            same = 0;
        }
    return same;
}

/* Logits of g from the reference interpreter, weights from the model file, images from batch. */
static float *run_logits(const ir_graph *g, const rt_tensor_set *batch, int64_t *numel) {
    ir_interp *it = ir_interp_new(g, 0);
    int lg = ir_find(g, "logits"), im = ir_find(g, "images");
    const rt_tensor *images = rt_tensor_set_find(batch, "images");
    if (lg < 0 || im < 0 || !images || rt_tensor_numel(images) != ir_numel(&g->nodes[im])) {
        fprintf(stderr, "graph or batch lacks images/logits\n");
        ir_interp_free(it);
        return NULL;
    }
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].op == IR_OP_WEIGHT && g->nodes[i].data) ir_interp_set_f32(it, i, g->nodes[i].data);
    float *x = malloc(sizeof(float) * (size_t)rt_tensor_numel(images));
    rt_tensor_to_f32(images, x);
    ir_interp_set_f32(it, im, x);
    free(x);
    float *y = NULL;
    if (ir_interp_run(it)) {
        fprintf(stderr, "interpreter: %s\n", ir_interp_error(it));
    } else {
        *numel = ir_numel(&g->nodes[lg]);
        y = malloc(sizeof(float) * (size_t)*numel);
        ir_interp_get_f32(it, lg, y);
    }
    ir_interp_free(it);
    return y;
}

/* compares a float tensor `name` of file `path` with `got` */
static void check_against(const char *path, const char *name, const float *got, int64_t n, double tol) {
    rt_tensor_set e;
    char err[512];
    if (rt_safetensors_read(path, &e, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    const rt_tensor *t = rt_tensor_set_find(&e, name);
    CHECK_MSG(t && rt_tensor_numel(t) == n, "%s: %s missing or of %lld elements, want %lld", path, name,
              t ? (long long)rt_tensor_numel(t) : -1LL, (long long)n);
    if (t && rt_tensor_numel(t) == n) {
        float *want = malloc(sizeof(float) * (size_t)n);
        rt_tensor_to_f32(t, want);
        double r = test_rel_l2(got, want, n);
        CHECK_MSG(r < tol, "%s: %s relative L2 error %.3g (tolerance %g)", path, name, r, tol);
        printf("  %-40s %s rel L2 %.2e\n", path + strlen(test_env("DEITC_TESTDATA")) + 1, name, r);
        free(want);
    }
    rt_tensor_set_free(&e);
}

/* ---- load ------------------------------------------------------------------------------- */

static void check_structure(const ir_graph *g, const char *what, int gelu_tanh) {
    int im = ir_find(g, "images"), lg = ir_find(g, "logits");
    CHECK_MSG(im >= 0 && g->nodes[im].op == IR_OP_INPUT, "%s: no INPUT images", what);
    CHECK_MSG(lg >= 0 && g->nodes[lg].flags & IR_NODE_OUTPUT, "%s: no output logits", what);
    int64_t h[IR_OP_COUNT];
    histogram(g, h);
    /* pattern recovery left nothing spelled out */
    CHECK_MSG(h[IR_OP_ERF] == 0 && h[IR_OP_SQRT] == 0 && h[IR_OP_REDUCE_MEAN] == 0 &&
                  h[IR_OP_SCALE] == 0 && h[IR_OP_DIV] == 0 && h[IR_OP_SUB] == 0 && h[IR_OP_CONST] == 0,
              "%s: decomposed ops remain (erf %lld sqrt %lld reduce_mean %lld scale %lld div %lld)", what,
              (long long)h[IR_OP_ERF], (long long)h[IR_OP_SQRT], (long long)h[IR_OP_REDUCE_MEAN],
              (long long)h[IR_OP_SCALE], (long long)h[IR_OP_DIV]);
    CHECK_MSG(h[IR_OP_LAYER_NORM] == 2 * g->info.depth + 1 && h[IR_OP_GELU] == g->info.depth &&
                  h[IR_OP_SOFTMAX] == g->info.depth && h[IR_OP_PATCHIFY] == 1,
              "%s: layer_norm %lld gelu %lld softmax %lld for depth %lld", what, (long long)h[IR_OP_LAYER_NORM],
              (long long)h[IR_OP_GELU], (long long)h[IR_OP_SOFTMAX], (long long)g->info.depth);
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op == IR_OP_GELU)
            CHECK_MSG(n->attrs.gelu_tanh == gelu_tanh, "%s: %%%d gelu_tanh %d, want %d", what, i, n->attrs.gelu_tanh, gelu_tanh);
        if (n->op == IR_OP_WEIGHT)
            CHECK_MSG(n->flags & IR_NODE_TRAINABLE && n->data && n->name, "%s: weight %%%d", what, i);
        if (n->op != IR_OP_INPUT) CHECK_MSG(n->loc.file && n->loc.line > 0, "%s: %%%d has no location", what, i);
    }
}

static void test_load(void) {
    char err[1024], p[1024], yp[1024];
    snprintf(yp, sizeof yp, "%s/models/deit_tiny.yaml", test_env("DEITC_SOURCE_DIR"));
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const test_case *tc = &cases[k];
        ir_graph *yaml = NULL;
        CHECK_MSG(fe_load_model(yp, tc->defines, ndefines(tc), tc->batch, &yaml, err, sizeof err) == 0,
                  "%s: the YAML twin does not load: %s", tc->dir, err);
        rt_tensor_set batch;
        CHECK_MSG(rt_safetensors_read(data_path(p, sizeof p, tc->dir, "batch.safetensors"), &batch, err, sizeof err) == 0, "%s", err);
        ir_graph *first = NULL;
        for (int m = 0; m < 8 && tc->models[m]; m++) {
            ir_graph *g = NULL;
            data_path(p, sizeof p, tc->dir, tc->models[m]);
            int rc = fe_onnx_load(p, NULL, 0, tc->batch, &g, err, sizeof err);
            CHECK_MSG(rc == 0 && g, "%s: %s", p, err);
            if (!g) continue;
            CHECK_MSG(ir_verify(g) == 0, "%s: %s", p, g->error);
            check_structure(g, p, tc->gelu_tanh);
            if (tc->params) CHECK_MSG(ir_count_params(g) == tc->params, "%s: %lld parameters", p, (long long)ir_count_params(g));
            if (strstr(tc->dir, "dedup")) /* the Identity outputs are weights with PyTorch's names */
                CHECK_MSG(ir_find(g, "blocks.1.norm2.weight") >= 0 && ir_find(g, "norm.bias") >= 0 &&
                              ir_find(g, "blocks.0.attn.proj.bias") >= 0, "%s: untied weights not named", p);
            if (first) {
                CHECK_MSG(same_histogram(g, first, p), "%s: histogram differs from %s", p, tc->models[0]);
                CHECK(ir_count_params(g) == ir_count_params(first));
            }
            if (yaml) {
                CHECK_MSG(same_histogram(g, yaml, p), "%s: op histogram differs from deit_tiny.yaml", p);
                CHECK(ir_count_params(g) == ir_count_params(yaml));
            }
            int64_t n = 0;
            float *y = run_logits(g, &batch, &n);
            CHECK_MSG(y != NULL, "%s: no logits", p);
            if (y) check_against(data_path(p, sizeof p, tc->dir, "expected.safetensors"), "logits", y, n, 1e-4);
            free(y);
            if (!first) first = g;
            else ir_graph_free(g);
        }
        ir_graph_free(first);
        ir_graph_free(yaml);
        rt_tensor_set_free(&batch);
    }
    /* the micro model's facts, and -D settings that restate them are accepted */
    ir_graph *g = NULL;
    data_path(p, sizeof p, "deit_micro", "deit_opset17.onnx");
    CHECK_MSG(fe_onnx_load(p, micro_defines, NMICRO, 0, &g, err, sizeof err) == 0, "%s", err);
    if (g) {
        const ir_model_info *m = &g->info;
        CHECK_MSG(m->batch == 1 && m->img_size == 32 && m->patch_size == 8 && m->in_chans == 3 &&
                      m->num_classes == 10 && m->embed_dim == 64 && m->depth == 2 && m->num_heads == 2 &&
                      m->mlp_ratio == 4.0,
                  "info: batch %lld img %lld patch %lld classes %lld dim %lld depth %lld heads %lld mlp %g",
                  (long long)m->batch, (long long)m->img_size, (long long)m->patch_size, (long long)m->num_classes,
                  (long long)m->embed_dim, (long long)m->depth, (long long)m->num_heads, m->mlp_ratio);
        ir_graph_free(g);
    }
    /* a tiny non-DeiT graph: MatMul + Add + Softmax */
    data_path(p, sizeof p, "onnx/bad", "tiny_ok.onnx");
    CHECK_MSG(fe_onnx_load(p, NULL, 0, 0, &g, err, sizeof err) == 0, "%s", err);
    if (g) {
        int lg = ir_find(g, "logits");
        CHECK(lg >= 0 && g->nodes[lg].op == IR_OP_SOFTMAX && g->nodes[lg].shape[0] == 1);
        ir_graph_free(g);
    }
}

/* ---- other ops (tests/data/onnx/ops: numpy's answers) ---------------------------------- */

static void test_ops(void) {
    static const char *const names[] = {"slice_split_gemm", "reduce_gather_softmax", "ln_gelu_tanh", "gelu_new_sdpa"};
    char p[1024], d[1024], err[1024], f[256];
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        snprintf(f, sizeof f, "%s.safetensors", names[k]);
        data_path(d, sizeof d, "onnx/ops", f);
        snprintf(f, sizeof f, "%s.onnx", names[k]);
        ir_graph *g = NULL;
        rt_tensor_set io;
        CHECK_MSG(fe_onnx_load(data_path(p, sizeof p, "onnx/ops", f), NULL, 0, 2, &g, err, sizeof err) == 0, "%s", err);
        if (!g) continue;
        CHECK_MSG(ir_verify(g) == 0, "%s: %s", p, g->error);
        CHECK_MSG(rt_safetensors_read(d, &io, err, sizeof err) == 0, "%s", err);
        int64_t n = 0;
        float *y = run_logits(g, &io, &n);
        CHECK_MSG(y != NULL, "%s: no output", p);
        if (y) check_against(d, "logits", y, n, 1e-5);
        free(y);
        if (strcmp(names[k], "gelu_new_sdpa") == 0) {
            /* gelu_new's spelling is one tanh GELU; the scaled operands became matmul alpha */
            int64_t h[IR_OP_COUNT];
            histogram(g, h);
            CHECK_MSG(h[IR_OP_GELU] == 1 && h[IR_OP_MATMUL] == 2 && h[IR_OP_SOFTMAX] == 1 && h[IR_OP_SCALE] == 0 &&
                          h[IR_OP_ERF] == 0 && h[IR_OP_MUL] == 0 && h[IR_OP_ADD] == 0 && h[IR_OP_PERMUTE] == 0,
                      "%s: gelu %lld matmul %lld scale %lld mul %lld add %lld permute %lld", p, (long long)h[IR_OP_GELU],
                      (long long)h[IR_OP_MATMUL], (long long)h[IR_OP_SCALE], (long long)h[IR_OP_MUL],
                      (long long)h[IR_OP_ADD], (long long)h[IR_OP_PERMUTE]);
            for (int i = 0; i < g->n; i++) {
                const ir_node *nn = &g->nodes[i];
                if (nn->op == IR_OP_GELU) CHECK(nn->attrs.gelu_tanh == 1);
                if (nn->op == IR_OP_MATMUL && nn->attrs.trans_b)
                    CHECK_MSG(fabs(nn->attrs.alpha - 0.40824829046386301) < 1e-6, "scores alpha %g", nn->attrs.alpha);
            }
        }
        rt_tensor_set_free(&io);
        ir_graph_free(g);
    }
}

/* ---- bad inputs ------------------------------------------------------------------------- */

static void expect_error_batch(const char *path, const void *buf, size_t len, const fe_define *d, int nd,
                               int64_t batch, const char *const *needles) {
    ir_graph *g = (ir_graph *)1;
    char err[1024] = "";
    int rc = buf ? fe_onnx_load_buffer(buf, len, path, d, nd, batch, &g, err, sizeof err)
                 : fe_onnx_load(path, d, nd, batch, &g, err, sizeof err);
    CHECK_MSG(rc != 0 && g == NULL, "%s: loaded", path);
    CHECK_MSG(strncmp(err, path, strlen(path)) == 0, "%s: message does not start with the file: %s", path, err);
    for (int k = 0; needles[k]; k++) CHECK_MSG(strstr(err, needles[k]), "%s: '%s' not in: %s", path, needles[k], err);
    printf("  %s\n", err);
}

static void expect_error(const char *path, const void *buf, size_t len, const fe_define *d, int nd,
                         const char *const *needles) {
    expect_error_batch(path, buf, len, d, nd, 1, needles);
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static void test_bad(void) {
    char p[1024];
    static const struct {
        const char *file;
        const char *needles[5];
    } files[] = {
        {"unsupported_op.onnx", {"the_tanh", "Tanh", "opset 17", NULL}},
        {"unsupported_sin.onnx", {"node 'the_sin'", "(Sin,", "opset 15", "operator Sin is not supported"}},
        {"softmax_axis1.onnx", {"node 'sm_axis1'", "Softmax", "axis 1 of a [1,3,4]", "not supported"}},
        {"softmax_opset11.onnx", {"node 'sm_old'", "opset 11", "the default before opset 13", "not supported"}},
        {"tanh_outside_gelu.onnx", {"node 'lonely_tanh'", "(Tanh,", "only inside the tanh-approximate GELU", NULL}},
        {"bad_length.onnx", {"initializer 'w'", "raw_data holds 40 bytes", "needs 64", NULL}},
        {"bad_typed_length.onnx", {"initializer 'w'", "float_data", NULL}},
        {"missing_external.onnx", {"initializer 'w'", "missing_weights.bin", "No such file", NULL}},
        {"undefined_input.onnx", {"node 'mm'", "'nowhere'", NULL}},
    };
    for (size_t k = 0; k < sizeof files / sizeof *files; k++)
        expect_error(data_path(p, sizeof p, "onnx/bad", files[k].file), NULL, 0, NULL, 0, files[k].needles);

    const char *nofile[] = {"cannot open", NULL};
    expect_error("/nonexistent/model.onnx", NULL, 0, NULL, 0, nofile);

    /* truncations and random bytes of a real model, from memory */
    size_t len = 0;
    unsigned char *m = slurp(data_path(p, sizeof p, "deit_micro", "deit_opset17.onnx"), &len);
    CHECK(m != NULL && len > 1000);
    if (!m) return;
    const char *any[] = {NULL};
    size_t cuts[] = {0, 1, 7, 100, 1000, len / 2, len - 1};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) expect_error("trunc.onnx", m, cuts[k], NULL, 0, any);
    const char *corrupt[] = {"not an ONNX model", NULL};
    expect_error("trunc.onnx", m, len - 1, NULL, 0, corrupt);
    uint64_t r = 88172645463325252ull;
    unsigned char *rnd = malloc(4096);
    for (int t = 0; t < 64; t++) {
        for (int i = 0; i < 4096; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            rnd[i] = (unsigned char)r;
        }
        ir_graph *g = NULL;
        char err[512];
        CHECK(fe_onnx_load_buffer(rnd, 1 + (size_t)(r % 4096), "random.onnx", NULL, 0, 1, &g, err, sizeof err) != 0 && !g);
    }
    free(rnd);
    /* graphs nested in attributes 300000 deep: refused before protobuf-c recurses. Built from
     * the inside out, back to front: Model{graph: Graph{node: Node{attribute: Attr{g: ...}}}} */
    size_t cap = 8u << 20, pos = cap;
    unsigned char *deep = malloc(cap);
    static const unsigned char tags[3] = {0x32, 0x2a, 0x0a}; /* Attr.g=6, Node.attribute=5, Graph.node=1 */
    for (int t = 0; t < 3 * 300000 + 1; t++) {
        unsigned char hdr[11];
        size_t k = 0, len = cap - pos;
        hdr[k++] = t == 3 * 300000 ? 0x3a : tags[t % 3]; /* outermost: Model.graph=7 */
        for (size_t v = len;; v >>= 7) {
            hdr[k++] = (unsigned char)((v & 127) | (v >= 128 ? 128 : 0));
            if (v < 128) break;
        }
        pos -= k;
        memcpy(deep + pos, hdr, k);
    }
    const char *nest[] = {"nested", NULL};
    expect_error("deep.onnx", deep + pos, cap - pos, NULL, 0, nest);
    free(deep);
    /* a fixed batch that is not the one asked for */
    ir_graph *g = NULL;
    char err[1024];
    CHECK(fe_onnx_load(data_path(p, sizeof p, "onnx/bad", "tiny_ok.onnx"), NULL, 0, 5, &g, err, sizeof err) != 0 && !g);
    CHECK_MSG(strstr(err, "fixed batch of 1") && strstr(err, "'x'"), "%s", err);
    /* a DeiT exported without dynamic_axes (batch 2 baked into its shape constants) */
    static const char *const statics[] = {"deit_opset15_static.onnx", "deit_opset16_static_nofold.onnx"};
    for (int k = 0; k < 2; k++) {
        const char *need[] = {"'images'", "fixed batch of 2", "batch 5 is asked for", "dynamic_axes", NULL};
        expect_error_batch(data_path(p, sizeof p, "onnx/export/nofold", statics[k]), NULL, 0, NULL, 0, 5, need);
    }
    /* -D settings that contradict the file */
    const fe_define wrong[] = {{"embed_dim", "128"}};
    const char *dim[] = {"embed_dim", "64", NULL};
    expect_error("micro.onnx", m, len, wrong, 1, dim);
    const fe_define unknown[] = {{"colour", "blue"}};
    const char *col[] = {"colour", NULL};
    expect_error("micro.onnx", m, len, unknown, 1, col);
    free(m);
}

/* ---- the deitc command ------------------------------------------------------------------ */

static char tmpdir[256];

static void make_tmpdir(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/deitc_onnx_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void remove_tmpdir(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
}

static float *read_output(const char *path, const char *name, int64_t *n) {
    rt_tensor_set s;
    char err[512];
    if (rt_safetensors_read(path, &s, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    const rt_tensor *t = rt_tensor_set_find(&s, name);
    float *y = NULL;
    if (t) {
        *n = rt_tensor_numel(t);
        y = malloc(sizeof(float) * (size_t)*n);
        rt_tensor_to_f32(t, y);
    } else {
        fprintf(stderr, "%s: no tensor %s\n", path, name);
    }
    rt_tensor_set_free(&s);
    return y;
}

static void test_cli(int train) {
    make_tmpdir();
    char p[1024], b[1024], e[1024], out[512], lpath[600], cmd[4096];
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const test_case *tc = &cases[k];
        for (int m = 0; m < 8 && tc->models[m]; m++) {
            if (k == 1 && m > 0 && !train) continue; /* the loader test covers the variants */
            snprintf(out, sizeof out, "%s/out.safetensors", tmpdir);
            snprintf(lpath, sizeof lpath, "%s/losses.safetensors", tmpdir);
            snprintf(cmd, sizeof cmd, "'%s' run '%s' --input '%s' -o '%s'%s%s", test_env("DEITC_BIN"),
                     data_path(p, sizeof p, tc->dir, tc->models[m]), data_path(b, sizeof b, tc->dir, "batch.safetensors"),
                     out, train ? " --steps 3 --lr 1e-3 --weight-decay 0.05 --losses " : "", train ? lpath : "");
            printf("$ %s\n", cmd);
            fflush(stdout);
            unlink(out);
            int rc = system(cmd);
            CHECK_MSG(rc == 0, "deitc run failed (%d)", rc);
            if (rc) continue;
            int64_t n = 0;
            float *y = read_output(train ? lpath : out, train ? "losses" : "logits", &n);
            CHECK(y != NULL);
            if (y) check_against(data_path(e, sizeof e, tc->dir, "expected.safetensors"), train ? "losses" : "logits", y, n, 1e-4);
            free(y);
        }
    }
    remove_tmpdir();
}

/* the "parameters:", "MACs per image:" and "op histogram:" lines of `deitc inspect`, as one
 * string */
static int inspect_histogram(const char *args, char *hist, size_t size) {
    char cmd[4096], line[512];
    snprintf(cmd, sizeof cmd, "'%s' inspect %s", test_env("DEITC_BIN"), args);
    printf("$ %s\n", cmd);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    int in = 0;
    size_t k = 0;
    hist[0] = 0;
    while (fgets(line, sizeof line, f)) {
        fputs(line, stdout);
        if (strncmp(line, "op histogram", 12) == 0) in = 1;
        else if ((strncmp(line, "parameters:", 11) == 0 || strncmp(line, "MACs per image:", 15) == 0) &&
                 k + strlen(line) < size)
            k += (size_t)snprintf(hist + k, size - k, "%s", line);
        else if (in && line[0] == ' ' && k + strlen(line) < size) k += (size_t)snprintf(hist + k, size - k, "%s", line);
        else in = 0;
    }
    return pclose(f) == 0 && k > 0 ? 0 : -1;
}

static void test_cli_inspect(void) {
    char a[4096], hy[4096], ho[4096], p[1024];
    /* every model of every case, static batches (inspected at their own batch) included */
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const test_case *tc = &cases[k];
        size_t n = (size_t)snprintf(a, sizeof a, "'%s/models/deit_tiny.yaml'", test_env("DEITC_SOURCE_DIR"));
        for (int d = 0; d < ndefines(tc) && n < sizeof a; d++)
            n += (size_t)snprintf(a + n, sizeof a - n, " -D %s=%s", tc->defines[d].name, tc->defines[d].value);
        CHECK_MSG(inspect_histogram(a, hy, sizeof hy) == 0, "deitc inspect of the YAML model failed");
        for (int m = 0; m < 8 && tc->models[m]; m++) {
            snprintf(a, sizeof a, "'%s'", data_path(p, sizeof p, tc->dir, tc->models[m]));
            CHECK_MSG(inspect_histogram(a, ho, sizeof ho) == 0, "deitc inspect %s failed", p);
            CHECK_MSG(strcmp(hy, ho) == 0, "inspect differs:\nYAML:\n%sONNX %s:\n%s", hy, p, ho);
        }
    }
}

/* ---- full-size DeiT-Ti ------------------------------------------------------------------ */

static int test_tiny(void) {
    if (access("/usr/bin/python3", X_OK)) {
        printf("SKIPPED: no torch (/usr/bin/python3 is missing)\n");
        return 77;
    }
    make_tmpdir();
    char model[512], cmd[2048];
    snprintf(model, sizeof model, "%s/deit_tiny.onnx", tmpdir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/onnx/export_deit_tiny.py' '%s' 2>&1 | tail -n 3",
             test_env("DEITC_SOURCE_DIR"), model);
    int rc = system(cmd);
    struct stat st;
    if (rc != 0 || stat(model, &st)) {
        remove_tmpdir();
        printf("SKIPPED: no torch (the export did not run)\n");
        return 77;
    }
    ir_graph *g = NULL;
    char err[1024];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = fe_onnx_load(model, NULL, 0, 8, &g, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK_MSG(rc == 0 && g, "%s", err);
    if (g) {
        printf("DeiT-Ti 224 (%.1f MB): %lld parameters, %d nodes, imported in %.3f s\n", (double)st.st_size / 1e6,
               (long long)ir_count_params(g), g->n, s);
        CHECK_MSG(ir_count_params(g) == 5717416, "%lld parameters", (long long)ir_count_params(g));
        check_structure(g, model, 0);
#ifdef DEITC_SANITIZE
        double limit = 5.0; /* ASan builds are several times slower */
#else
        double limit = 1.0;
#endif
        CHECK_MSG(s < limit, "import took %.3f s (limit %.1f s)", s, limit);
        ir_graph *y = NULL;
        char yp[1024];
        snprintf(yp, sizeof yp, "%s/models/deit_tiny.yaml", test_env("DEITC_SOURCE_DIR"));
        if (fe_load_model(yp, NULL, 0, 8, &y, err, sizeof err) == 0) {
            CHECK_MSG(same_histogram(g, y, "deit_tiny.onnx vs deit_tiny.yaml"), "histograms differ");
            ir_graph_free(y);
        }
        ir_graph_free(g);
    }
    remove_tmpdir();
    return test_result();
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "load") == 0) test_load();
    else if (strcmp(mode, "ops") == 0) test_ops();
    else if (strcmp(mode, "bad") == 0) test_bad();
    else if (strcmp(mode, "cli-run") == 0) test_cli(0);
    else if (strcmp(mode, "cli-train") == 0) test_cli(1);
    else if (strcmp(mode, "cli-inspect") == 0) test_cli_inspect();
    else if (strcmp(mode, "tiny") == 0) return test_tiny();
    else {
        fprintf(stderr, "usage: test_onnx load|ops|bad|cli-run|cli-train|cli-inspect|tiny\n");
        return 2;
    }
    return test_result();
}
