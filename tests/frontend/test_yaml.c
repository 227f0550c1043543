/* test_yaml.c: the YAML frontend and the layer builders.
 *   test_yaml unit    exact parameter counts of the DeiT models, the deit_micro config via -D
 *                     against the oracle's weight names and shapes, graph facts (input, logits,
 *                     source locations), expressions, -D errors, extension dispatch
 *   test_yaml bad     every file of tests/data/bad_yaml gives its expected message, no crash
 *   test_yaml oracle  deit_micro logits from the reference interpreter vs PyTorch
 */
#include "frontend/frontend.h"
#include "runtime/rt.h"
#include "tests/harness.h"

#include <string.h>

static char path_buf[1024];

static const char *model_path(const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/models/%s", test_env("DEITC_SOURCE_DIR"), name);
    return path_buf;
}

static const fe_define micro_defines[] = {
    {"img_size", "32"}, {"patch_size", "8"}, {"num_classes", "10"},
    {"embed_dim", "64"}, {"depth", "2"},     {"num_heads", "2"},
};
#define NMICRO ((int)(sizeof micro_defines / sizeof *micro_defines))

static ir_graph *load(const char *path, const fe_define *d, int nd, int64_t batch) {
    ir_graph *g = NULL;
    char err[1024];
    if (fe_load_model(path, d, nd, batch, &g, err, sizeof err)) {
        fprintf(stderr, "load %s failed: %s\n", path, err);
        return NULL;
    }
    return g;
}

static void test_param_counts(void) {
    static const struct {
        const char *file;
        int64_t params, dim, heads;
    } models[] = {
        {"deit_tiny.yaml", 5717416, 192, 3},
        {"deit_small.yaml", 22050664, 384, 6},
        {"deit_base.yaml", 86567656, 768, 12},
        {"deit_tiny_distilled.yaml", 5910800, 192, 3},
        {"deit_small_distilled.yaml", 22436432, 384, 6},
        {"deit_base_distilled.yaml", 87338192, 768, 12},
    };
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        ir_graph *g = load(model_path(models[i].file), NULL, 0, 0);
        CHECK_MSG(g != NULL, "%s", models[i].file);
        if (!g) continue;
        CHECK_MSG(ir_count_params(g) == models[i].params, "%s: %lld params, want %lld",
                  models[i].file, (long long)ir_count_params(g), (long long)models[i].params);
        CHECK(g->info.embed_dim == models[i].dim && g->info.num_heads == models[i].heads);
        CHECK(g->info.img_size == 224 && g->info.patch_size == 16 && g->info.depth == 12);
        CHECK(g->info.num_classes == 1000 && g->info.in_chans == 3 && g->info.mlp_ratio == 4.0);
        CHECK(g->info.batch == 1);
        int lg = ir_find(g, "logits");
        CHECK(lg >= 0 && g->nodes[lg].ndim == 2 && g->nodes[lg].shape[0] == 1 &&
              g->nodes[lg].shape[1] == 1000 && (g->nodes[lg].flags & IR_NODE_OUTPUT));
        CHECK(ir_find(g, "blocks.11.mlp.fc2.bias") >= 0 && ir_find(g, "blocks.12.norm1.weight") < 0);
        ir_graph_free(g);
    }
}

/* deit_micro from deit_tiny.yaml with -D: names and shapes equal the oracle's init weights */
static void test_micro(void) {
    ir_graph *g = load(model_path("deit_tiny.yaml"), micro_defines, NMICRO, 4);
    CHECK(g != NULL);
    if (!g) return;
    CHECK_MSG(ir_count_params(g) == 114250, "%lld", (long long)ir_count_params(g));
    CHECK(g->info.batch == 4 && g->info.img_size == 32 && g->info.embed_dim == 64);

    int im = ir_find(g, "images");
    CHECK(im >= 0 && g->nodes[im].op == IR_OP_INPUT && g->nodes[im].ndim == 4 &&
          g->nodes[im].shape[0] == 4 && g->nodes[im].shape[1] == 3 && g->nodes[im].shape[2] == 32);
    int lg = ir_find(g, "logits");
    CHECK(lg == g->n - 1 && g->nodes[lg].shape[0] == 4 && g->nodes[lg].shape[1] == 10);
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        CHECK_MSG(n->loc.file && n->loc.line > 0 && n->loc.col > 0, "node %%%d has no location", i);
        if (n->op == IR_OP_WEIGHT) CHECK_MSG(n->flags & IR_NODE_TRAINABLE, "%s", n->name);
        if (n->op == IR_OP_MATMUL) CHECK_MSG(n->attrs.alpha != 0, "%%%d", i);
    }
    CHECK(ir_verify(g) == 0);

    char p[1024], err[512];
    snprintf(p, sizeof p, "%s/deit_micro/init.safetensors", test_env("DEITC_TESTDATA"));
    rt_tensor_set ts;
    CHECK_MSG(rt_safetensors_read(p, &ts, err, sizeof err) == 0, "%s", err);
    int nweights = 0;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_WEIGHT) continue;
        nweights++;
        const rt_tensor *t = rt_tensor_set_find(&ts, n->name);
        CHECK_MSG(t != NULL, "weight %s is not in init.safetensors", n->name);
        if (!t) continue;
        int same = t->ndim == n->ndim;
        for (int d = 0; same && d < n->ndim; d++) same = t->shape[d] == n->shape[d];
        char s[96];
        CHECK_MSG(same, "weight %s has shape %s", n->name, ir_shape_str(n, s, sizeof s));
    }
    CHECK_MSG(nweights == ts.count, "%d weights in the graph, %d in init.safetensors", nweights,
              ts.count);
    rt_tensor_set_free(&ts);
    ir_graph_free(g);

    /* the same model written out in full (tests/frontend/micro.yaml) gives the same graph */
    char mp[1024];
    snprintf(mp, sizeof mp, "%s/tests/frontend/micro.yaml", test_env("DEITC_SOURCE_DIR"));
    ir_graph *a = load(mp, NULL, 0, 4), *b = load(model_path("deit_tiny.yaml"), micro_defines, NMICRO, 4);
    CHECK(a && b && a->n == b->n);
    for (int i = 0; a && b && i < a->n && i < b->n; i++) {
        const ir_node *x = &a->nodes[i], *y = &b->nodes[i];
        CHECK_MSG(x->op == y->op && ir_same_shape(x, y) && x->ninputs == y->ninputs &&
                      !memcmp(x->inputs, y->inputs, sizeof x->inputs) &&
                      (x->name == y->name || (x->name && y->name && !strcmp(x->name, y->name))),
                  "node %%%d differs", i);
    }
    ir_graph_free(a);
    ir_graph_free(b);
}

static int load_text(const char *text, const fe_define *d, int nd, ir_graph **g, char *err,
                     size_t errsize) {
    return fe_yaml_load_string(text, strlen(text), "mem.yaml", d, nd, 2, g, err, errsize);
}

static void test_expressions_and_defines(void) {
    /* expressions, params defined in terms of others, out-of-order, tanh gelu, distilled */
    const char *text =
        "params: {img_size: 32, patch_size: 8, embed_dim: 64, num_heads: 2,\n"
        "         depth: 2 ** 1}\n"; /* '**' is not an operator */
    ir_graph *g;
    char err[1024];
    CHECK(load_text(text, NULL, 0, &g, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "mem.yaml:2:20: unexpected character '*' in '2 ** 1'") != NULL, "%s", err);

    text = "name: expr\n"
           "params: {img_size: patch_size * 4, patch_size: 8 // 3 + 2, embed_dim: num_heads * 16,\n"
           "         num_heads: (7 - 1) % 4, depth: 1, num_classes: 7, mlp_ratio: 1.5, gelu: tanh,\n"
           "         qkv_bias: false}\n"
           "layers:\n"
           "  - {op: patch_embed, name: pe}\n"
           "  - {op: tokens, names: [cls_token, dist_token]}\n"
           "  - {op: pos_embed}\n"
           "  - repeat: depth\n"
           "    layers:\n"
           "      - {op: residual, name: r, layers: [{op: attention, name: attn}]}\n"
           "      - {op: mlp, name: mlp, gelu: gelu}\n"
           "  - {op: distilled_head}\n";
    CHECK_MSG(load_text(text, NULL, 0, &g, err, sizeof err) == 0, "%s", err);
    if (g) {
        CHECK(g->info.img_size == 16 && g->info.patch_size == 4 && g->info.embed_dim == 32 &&
              g->info.num_heads == 2 && g->info.mlp_ratio == 1.5);
        CHECK(strcmp(g->info.model_name, "expr") == 0);
        CHECK(ir_find(g, "0.r.attn.qkv.weight") >= 0 && ir_find(g, "0.r.attn.qkv.bias") < 0);
        int fc1 = ir_find(g, "0.mlp.fc1.weight");
        CHECK(fc1 >= 0 && g->nodes[fc1].shape[0] == 48);
        CHECK(ir_find(g, "dist_token") >= 0 && ir_find(g, "head_dist.weight") >= 0);
        int pos = ir_find(g, "pos_embed");
        CHECK(pos >= 0 && g->nodes[pos].shape[1] == 18);
        int gelu = -1;
        for (int i = 0; i < g->n; i++)
            if (g->nodes[i].op == IR_OP_GELU) gelu = i;
        CHECK(gelu >= 0 && g->nodes[gelu].attrs.gelu_tanh == 1);
        int lg = ir_find(g, "logits");
        CHECK(lg >= 0 && g->nodes[lg].shape[0] == 2 && g->nodes[lg].shape[1] == 7);
        CHECK(ir_verify(g) == 0);
        ir_graph_free(g);
    }

    /* -D replaces a value before evaluation, other params follow it */
    fe_define d[] = {{"patch_size", "2"}, {"gelu", "erf"}, {"qkv_bias", "true"}};
    CHECK_MSG(load_text(text, d, 3, &g, err, sizeof err) == 0, "%s", err);
    if (g) {
        CHECK(g->info.img_size == 8 && ir_find(g, "0.r.attn.qkv.bias") >= 0);
        ir_graph_free(g);
    }
    static const struct {
        fe_define d;
        const char *want;
    } bad[] = {
        {{"embed_dims", "64"}, "-D embed_dims=64: unknown hyperparameter 'embed_dims'"},
        {{"embed_dim", "abc"}, "-D embed_dim=abc: unknown name 'abc'"},
        {{"embed_dim", "33"}, "-D embed_dim=33: embed_dim 33 is not divisible by num_heads 2"},
        {{"img_size", "10"}, "-D img_size=10: img_size 10 is not divisible by patch_size 4"},
        {{"depth", "0"}, "-D depth=0: depth must be between 1 and"},
        {{"depth", "1.5"}, "depth must be a whole number"},
        {{"qkv_bias", "2"}, "qkv_bias must be true or false"},
        {{"gelu", "relu"}, "gelu must be erf or tanh"},
        {{"mlp_ratio", "-1"}, "mlp_ratio must be positive"},
        {{"embed_dim", "1e300 * 1e300"}, "out of range"},
        {{"embed_dim", ""}, "expected a number"},
        {{"", "1"}, "unknown hyperparameter ''"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        g = NULL;
        err[0] = 0;
        CHECK(load_text(text, &bad[i].d, 1, &g, err, sizeof err) != 0 && g == NULL);
        CHECK_MSG(strstr(err, bad[i].want) != NULL, "-D %s=%s: got '%s', want '%s'",
                  bad[i].d.name, bad[i].d.value, err, bad[i].want);
    }

    /* text that is not NUL-terminated, and tiny buffers for messages */
    const char *tiny = "params: {img_size: 8}xxxx";
    CHECK(fe_yaml_load_string(tiny, 21, "t.yaml", NULL, 0, 0, &g, err, 8) != 0 && strlen(err) < 8);
}

static void test_dispatch(void) {
    ir_graph *g = (ir_graph *)1;
    char err[512];
#ifndef DEITC_HAVE_ONNX
    CHECK(fe_load_model("m.onnx", NULL, 0, 0, &g, err, sizeof err) != 0 && g == NULL);
    CHECK_MSG(strstr(err, "ONNX support not built") != NULL, "%s", err);
#endif
    CHECK(fe_load_model("m.txt", NULL, 0, 0, &g, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "m.txt: unknown model format") != NULL, "%s", err);
    CHECK(fe_load_model("/nonexistent/m.yaml", NULL, 0, 0, &g, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "/nonexistent/m.yaml: cannot open") != NULL, "%s", err);
    CHECK(fe_load_model(test_env("DEITC_SOURCE_DIR"), NULL, 0, 0, &g, err, sizeof err) != 0);
}

/* file in tests/data/bad_yaml -> words the message must contain (after "FILE:") */
static const struct {
    const char *file, *want1, *want2;
} bad_files[] = {
    {"alias_cycle.yaml", "11:31:", "nested more than"},
    {"bad_bool.yaml", "9:13:", "qkv_bias must be true or false, got 'maybe'"},
    {"bad_expr.yaml", "23:54:", "unknown name 'mlp_ratoi'"},
    {"bad_gelu.yaml", "9:9:", "gelu must be erf or tanh, got 'relu'"},
    {"bad_indent.yaml", "11:5:", "YAML syntax error"},
    {"bad_name.yaml", "24:28:", "name 'no.rm' may hold only"},
    {"bad_utf8.yaml", "1:", "YAML syntax error: invalid trailing UTF-8 octet"},
    {"binary.yaml", "3:1:", "binary file"},
    {"comments_only.yaml", "1:1:", "empty file"},
    {"cyclic_param.yaml", "6:14:", "defined in terms of itself"},
    {"div_zero.yaml", "23:52:", "division by zero"},
    {"duplicate_key.yaml", "9:3:", "duplicate key 'depth' in params (first at line 7)"},
    {"duplicate_weight.yaml", "22:13:", "weight 'blocks.0.norm1.bias' is made twice"},
    {"empty.yaml", "1:1:", "empty file"},
    {"empty_layers.yaml", "9:9:", "'layers' is empty"},
    {"first_not_patch.yaml", "10:5:", "'cls_token' cannot come first"},
    {"heads_not_divisible.yaml", "8:14:", "embed_dim 64 is not divisible by num_heads 5"},
    {"img_not_divisible.yaml", "4:15:", "img_size 36 is not divisible by patch_size 8"},
    {"list_value.yaml", "25:31:", "index must be a single value, not a list"},
    {"malformed.yaml", "27:1:", "YAML syntax error: did not find expected ',' or '}'"},
    {"missing_layers.yaml", "1:1:", "needs 'layers'"},
    {"missing_param.yaml", "3:3:", "params: missing 'embed_dim'"},
    {"negative_dim.yaml", "6:14:", "embed_dim must be between 1 and"},
    {"no_head.yaml", "10:3:", "the layers end with [1,17,64]; expected logits [1,10]"},
    {"not_mapping.yaml", "1:1:", "must be a YAML mapping"},
    {"not_whole.yaml", "23:42:", "hidden must be a whole number"},
    {"repeat_zero.yaml", "13:13:", "repeat must be between 1 and"},
    {"residual_shape.yaml", "20:9:", "residual: its layers change the shape [1,17,64] into [1,17,10]"},
    {"two_documents.yaml", "28:1:", "a second YAML document"},
    {"unknown_key.yaml", "19:41:", "unknown key 'head' in layer 'attention' (expected: op name heads"},
    {"unknown_op.yaml", "23:18:", "unknown op 'convolution' (expected one of: patch_embed"},
    {"unknown_param.yaml", "6:3:", "unknown key 'embed_dims' in params"},
    {"zero_depth.yaml", "7:10:", "depth must be between 1 and"},
};

static void test_bad_files(void) {
    char dir[1024], path[1200], want[1400], err[1024];
    snprintf(dir, sizeof dir, "%s/bad_yaml", test_env("DEITC_TESTDATA"));
    for (size_t i = 0; i < sizeof bad_files / sizeof *bad_files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, bad_files[i].file);
        ir_graph *g = (ir_graph *)1;
        err[0] = 0;
        int r = fe_load_model(path, NULL, 0, 0, &g, err, sizeof err);
        CHECK_MSG(r != 0 && g == NULL, "%s loaded", bad_files[i].file);
        snprintf(want, sizeof want, "%s:%s", path, bad_files[i].want1);
        CHECK_MSG(strncmp(err, want, strlen(want)) == 0, "%s: got '%s', want it to start '%s'",
                  bad_files[i].file, err, want);
        CHECK_MSG(strstr(err, bad_files[i].want2) != NULL, "%s: got '%s', want '%s'",
                  bad_files[i].file, err, bad_files[i].want2);
    }
}

/* deit_micro: interpreter logits vs the PyTorch float64 oracle */
static int test_oracle(void) {
    const char *td = test_env("DEITC_TESTDATA");
    char p[1024], err[512];
    rt_tensor_set init = {0}, batch = {0}, expected = {0};
    snprintf(p, sizeof p, "%s/deit_micro/init.safetensors", td);
    CHECK_MSG(rt_safetensors_read(p, &init, err, sizeof err) == 0, "%s", err);
    snprintf(p, sizeof p, "%s/deit_micro/batch.safetensors", td);
    CHECK_MSG(rt_safetensors_read(p, &batch, err, sizeof err) == 0, "%s", err);
    snprintf(p, sizeof p, "%s/deit_micro/expected.safetensors", td);
    CHECK_MSG(rt_safetensors_read(p, &expected, err, sizeof err) == 0, "%s", err);
    ir_graph *g = load(model_path("deit_tiny.yaml"), micro_defines, NMICRO, 4);
    CHECK(g != NULL);
    if (g && !test_failures) {
        ir_interp *it = ir_interp_new(g, 0);
        for (int i = 0; i < g->n; i++) {
            const ir_node *n = &g->nodes[i];
            if (n->op != IR_OP_WEIGHT && n->op != IR_OP_INPUT) continue;
            const rt_tensor *t = rt_tensor_set_find(n->op == IR_OP_WEIGHT ? &init : &batch, n->name);
            CHECK_MSG(t && rt_tensor_numel(t) == ir_numel(n), "no data for %s", n->name);
            if (!t) continue;
            float *buf = malloc(sizeof(float) * (size_t)rt_tensor_numel(t));
            rt_tensor_to_f32(t, buf);
            ir_interp_set_f32(it, i, buf);
            free(buf);
        }
        CHECK_MSG(ir_interp_run(it) == 0, "%s", ir_interp_error(it));
        const rt_tensor *want = rt_tensor_set_find(&expected, "logits");
        int lg = ir_find(g, "logits");
        if (want && lg >= 0 && rt_tensor_numel(want) == ir_numel(&g->nodes[lg])) {
            long n = (long)rt_tensor_numel(want);
            float *got = malloc(sizeof(float) * (size_t)n), *ref = malloc(sizeof(float) * (size_t)n);
            ir_interp_get_f32(it, lg, got);
            rt_tensor_to_f32(want, ref);
            double e = test_rel_l2(got, ref, n);
            printf("deit_micro logits: relative L2 error %.3g vs PyTorch\n", e);
            CHECK_MSG(e < 1e-5, "relative L2 error %g", e);
            free(got);
            free(ref);
        } else {
            CHECK_MSG(0, "expected logits missing or of another size");
        }
        ir_interp_free(it);
    }
    ir_graph_free(g);
    rt_tensor_set_free(&init);
    rt_tensor_set_free(&batch);
    rt_tensor_set_free(&expected);
    return test_result();
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "unit";
    if (strcmp(mode, "oracle") == 0) return test_oracle();
    if (strcmp(mode, "bad") == 0) {
        test_bad_files();
        return test_result();
    }
    test_param_counts();
    test_micro();
    test_expressions_and_defines();
    test_dispatch();
    return test_result();
}
