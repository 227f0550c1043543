/* test_ir.c: shape rules reject inconsistent graphs with a located message, the verifier
 * catches a corrupted graph, and the interpreter's ops agree with values worked out by hand. */
#include <string.h>

#include "ir/ir.h"
#include "tests/harness.h"

static ir_loc at(int line) { return (ir_loc){"t.yaml", line, 3}; }

static int leaf(ir_graph *g, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    int64_t s[3] = {d0, d1, d2};
    return ir_leaf(g, IR_OP_INPUT, IR_F32, ndim, s, name, at(1));
}

static void test_shape_errors(void) {
    ir_graph *g = ir_graph_new();
    int a = leaf(g, "a", 2, 2, 3, 0), b = leaf(g, "b", 2, 4, 5, 0);
    ir_attrs at0 = {0};
    CHECK(ir_binary(g, IR_OP_MATMUL, a, b, &at0, "mm", at(7)) == -1);
    CHECK_MSG(strstr(g->error, "t.yaml:7:3") && strstr(g->error, "inner dimensions"), "%s", g->error);
    CHECK(ir_binary(g, IR_OP_ADD, a, b, NULL, "add", at(8)) == -1);
    CHECK_MSG(strstr(g->error, "do not broadcast"), "%s", g->error);
    int64_t bad[2] = {5, 5};
    CHECK(ir_reshape(g, a, 2, bad, "r", at(9)) == -1);
    ir_attrs p = {.patch = 4};
    int64_t img[4] = {1, 3, 10, 8};
    int im = ir_leaf(g, IR_OP_INPUT, IR_F32, 4, img, "images", at(2));
    CHECK(ir_unary(g, IR_OP_PATCHIFY, im, &p, "pe", at(10)) == -1);
    CHECK_MSG(strstr(g->error, "divisible"), "%s", g->error);
    /* the verifier notices a node whose recorded shape disagrees with its rule */
    ir_attrs tb = {.trans_b = 1, .alpha = 1};
    int c = leaf(g, "c", 2, 5, 3, 0);
    int mm = ir_binary(g, IR_OP_MATMUL, a, c, &tb, "ok", at(11));
    CHECK(mm >= 0 && g->nodes[mm].shape[0] == 2 && g->nodes[mm].shape[1] == 5);
    CHECK(ir_verify(g) == 0);
    g->nodes[mm].shape[1] = 6;
    CHECK(ir_verify(g) == -1);
    ir_graph_free(g);
}

static void test_interpreter(void) {
    ir_graph *g = ir_graph_new();
    int x = leaf(g, "x", 2, 2, 3, 0);
    int w = leaf(g, "w", 2, 2, 3, 0);
    ir_attrs tb = {.trans_b = 1, .alpha = 0.5};
    int mm = ir_binary(g, IR_OP_MATMUL, x, w, &tb, "mm", at(1));      /* [2,2] */
    int sm = ir_unary(g, IR_OP_SOFTMAX, mm, NULL, "sm", at(1));
    int64_t c3[1] = {3};
    int gam = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 1, c3, "gamma", at(1));
    int bet = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 1, c3, "beta", at(1));
    int in3[3] = {x, gam, bet};
    ir_attrs ln = {.eps = 1e-5};
    int lnn = ir_add(g, IR_OP_LAYER_NORM, in3, 3, &ln, IR_F32, 0, NULL, "ln", at(1));
    int64_t two[1] = {2};
    int lab = ir_leaf(g, IR_OP_INPUT, IR_I64, 1, two, "labels", at(1));
    int64_t nslots[1] = {IR_OPT_SLOTS};
    int opt = ir_leaf(g, IR_OP_INPUT, IR_F32, 1, nslots, "opt", at(1));
    int ce_in[3] = {mm, lab, opt};
    int ce = ir_add(g, IR_OP_CROSS_ENTROPY, ce_in, 3, NULL, IR_F32, 0, NULL, "loss", at(1));
    int cast = ir_add(g, IR_OP_CAST, &x, 1, NULL, IR_F16, 0, NULL, "h", at(1));
    CHECK(mm >= 0 && sm >= 0 && lnn >= 0 && ce >= 0 && cast >= 0);
    CHECK(ir_verify(g) == 0);

    ir_interp *it = ir_interp_new(g, 1);
    double xv[6] = {1, 2, 3, 4, 5, 6.0001}, wv[6] = {1, 0, 0, 0, 1, 1};
    double gv[3] = {1, 2, 3}, bv[3] = {0, 0, 1};
    int64_t lv[2] = {0, 1};
    ir_interp_set_f64(it, x, xv);
    ir_interp_set_f64(it, w, wv);
    ir_interp_set_f64(it, gam, gv);
    ir_interp_set_f64(it, bet, bv);
    ir_interp_set_i64(it, lab, lv);
    CHECK(ir_interp_run(it) == 0);
    double out[6];
    ir_interp_get_f64(it, mm, out); /* 0.5 * x @ w^T */
    CHECK(fabs(out[0] - 0.5) < 1e-12 && fabs(out[1] - 2.5) < 1e-12 && fabs(out[2] - 2.0) < 1e-12);
    ir_interp_get_f64(it, sm, out);
    CHECK(fabs(out[0] - 1 / (1 + exp(2.0))) < 1e-12 && fabs(out[0] + out[1] - 1) < 1e-12);
    ir_interp_get_f64(it, lnn, out); /* row 1,2,3: xhat = (-1,0,1)/sqrt(2/3+eps) */
    double r = 1 / sqrt(2.0 / 3 + 1e-5);
    CHECK(fabs(out[0] + r) < 1e-9 && fabs(out[1]) < 1e-9 && fabs(out[2] - (3 * r + 1)) < 1e-9);
    ir_interp_get_f64(it, ce, out);
    double l0 = log(1 + exp(2.0)), l1 = log(exp(2.0) + exp(5.50005)) - 5.50005;
    CHECK_MSG(fabs(out[0] - (l0 + l1) / 2) < 1e-6, "loss %g", out[0]);
    ir_interp *it32 = ir_interp_new(g, 0); /* float64 mode keeps casts exact; f32 rounds */
    ir_interp_set_f64(it32, x, xv);
    ir_interp_set_f64(it32, w, wv);
    ir_interp_set_i64(it32, lab, lv);
    CHECK(ir_interp_run(it32) == 0);
    ir_interp_get_f64(it32, cast, out);
    CHECK(out[5] == 6.0); /* 6.0001 rounds to 6 in fp16 */
    ir_interp_free(it32);
    /* a label outside [0, K) is an error, not a crash */
    lv[1] = 5;
    ir_interp_set_i64(it, lab, lv);
    CHECK(ir_interp_run(it) == -1);
    CHECK_MSG(strstr(ir_interp_error(it), "outside"), "%s", ir_interp_error(it));
    ir_interp_free(it);

    FILE *devnull = fopen("/dev/null", "w");
    ir_print(g, devnull);
    fclose(devnull);
    ir_graph_free(g);
}

static void test_patchify_roundtrip(void) {
    ir_graph *g = ir_graph_new();
    int64_t s[4] = {2, 3, 4, 6};
    int im = ir_leaf(g, IR_OP_INPUT, IR_F32, 4, s, "images", at(1));
    ir_attrs p = {.patch = 2};
    int pt = ir_unary(g, IR_OP_PATCHIFY, im, &p, "p", at(1));
    CHECK(pt >= 0 && g->nodes[pt].shape[1] == 6 && g->nodes[pt].shape[2] == 12);
    int back = ir_add(g, IR_OP_UNPATCHIFY, &pt, 1, &p, IR_F32, 4, s, "u", at(1));
    CHECK(back >= 0);
    ir_interp *it = ir_interp_new(g, 0);
    float v[144], o[144];
    for (int i = 0; i < 144; i++) v[i] = (float)i;
    ir_interp_set_f32(it, im, v);
    CHECK(ir_interp_run(it) == 0);
    ir_interp_get_f32(it, back, o);
    CHECK(memcmp(v, o, sizeof v) == 0);
    ir_interp_get_f32(it, pt, o); /* patch 1 of image 0: rows 0-1, cols 2-3 of channel 0 */
    CHECK(o[12] == 2 && o[13] == 3 && o[14] == 8 && o[15] == 9);
    ir_interp_free(it);
    ir_graph_free(g);
}

/* the one formatter of located errors: file:line:col, file alone, or the bare message */
static void test_loc_format(void) {
    char buf[128];
    CHECK(strcmp(ir_loc_format(buf, sizeof buf, at(4), "bad %s", "dim"), "t.yaml:4:3: bad dim") == 0);
    CHECK(strcmp(ir_loc_format(buf, sizeof buf, (ir_loc){"m.yaml", 0, 0}, "empty"), "m.yaml: empty") == 0);
    CHECK(strcmp(ir_loc_format(buf, sizeof buf, (ir_loc){0}, "x=%d", 3), "x=3") == 0);
    char tiny[8];
    CHECK(strcmp(ir_loc_format(tiny, sizeof tiny, at(4), "long message"), "t.yaml:") == 0);
}

/* the op table's columns: outputs, and the flags other code reads instead of op lists */
static void test_op_table(void) {
    int multi = 0;
    for (int op = 0; op < IR_OP_COUNT; op++) {
        CHECK(ir_op_outputs(op) >= 1 && ir_op_outputs(op) <= IR_MAX_OUTPUTS);
        multi += ir_op_outputs(op) > 1;
        CHECK(ir_op_from_name(ir_op_name(op)) == op);
    }
    CHECK(multi >= 1 && ir_op_outputs(IR_OP_LAYER_NORM_STATS) == 3);
    CHECK(ir_op_flags(IR_OP_RESHAPE) & IR_OPF_ALIAS && ir_op_flags(IR_OP_PROJECT) & IR_OPF_ALIAS);
    CHECK(ir_op_flags(IR_OP_SLICE) & IR_OPF_AXIS && !(ir_op_flags(IR_OP_PAD) & IR_OPF_AXIS));
    CHECK(ir_op_flags(IR_OP_ADAMW) & IR_OPF_GROUPABLE && !(ir_op_flags(IR_OP_MATMUL) & IR_OPF_GROUPABLE));
    /* a negative axis counts from the end on every IR_OPF_AXIS op */
    ir_graph *g = ir_graph_new();
    int x = leaf(g, "x", 3, 2, 3, 4);
    ir_attrs a = {.axis = -1, .start = 1, .end = 3};
    int s = ir_unary(g, IR_OP_SLICE, x, &a, "s", at(5));
    CHECK(s >= 0 && g->nodes[s].attrs.axis == 2 && g->nodes[s].shape[2] == 2);
    ir_attrs m = {.axis = -2};
    int r = ir_unary(g, IR_OP_REDUCE_MEAN, x, &m, "m", at(6));
    CHECK(r >= 0 && g->nodes[r].attrs.axis == 1 && g->nodes[r].shape[1] == 1);
    ir_graph_free(g);
}

int main(void) {
    test_loc_format();
    test_op_table();
    test_shape_errors();
    test_interpreter();
    test_patchify_roundtrip();
    return test_result();
}
