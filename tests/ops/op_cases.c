/* op_cases.c: the cases of the per-op kernel test (the idea of ggml's test-backend-ops): for
 * every op the emitter compiles, small graphs at shapes that hit each variant it chooses (rows
 * below and above the warp limit, one- and two-pass reductions, vector and scalar paths, odd
 * sizes) and every dtype the op accepts. Each case names the variant it means to hit as a
 * substring its kernels (name or text) must contain, so a change to the emitter's choices
 * shows up here instead of silently leaving a path untested.
 *
 * Adding an op: add its cases below (op_kernel_test's coverage check fails until there is at
 * least one case for each of f32, f16 and bf16, unless op_dtype_exempt says why not). */
#include "tests/ops/op_cases.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/emit_internal.h" /* cg_attention_kv_resident: which forward a case expects */
#include "runtime/rt.h"

/* shape literal: SH(2, 3) -> ndim, (int64_t[]){2, 3} */
#define SH(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

static const double TOL_F32 = 1e-6;

/* one rounding step of the dtype: what f16/bf16 outputs may differ by (2^-10, 2^-7) */
double op_tol(ir_dtype t) { return t == IR_F16 ? 9.8e-4 : t == IR_BF16 ? 7.9e-3 : TOL_F32; }

static uint64_t rng_state = 0x5eed0b5ull;

static double uniform(double lo, double hi) { return lo + (hi - lo) * rt_uniform01(&rng_state); }

static double round_to(ir_dtype t, double x) {
    switch (t) {
    case IR_F16: return rt_half_to_float(rt_float_to_half((float)x));
    case IR_BF16: return rt_bf16_to_float(rt_float_to_bf16((float)x));
    case IR_F32: return (float)x;
    default: return (double)(int64_t)x;
    }
}

static op_case *cur(op_suite *s) { return &s->cases[s->ncases - 1]; }

static const char *node_name(op_suite *s, const char *what, int k) {
    return ir_arena_printf(&s->g->arena, "c%03d.%s%d", s->ncases - 1, what, k);
}

static void begin(op_suite *s, ir_op op, const char *variant, ir_dtype dtype, const char *expect) {
    if (s->ncases == OP_MAX_CASES) {
        fprintf(stderr, "op_cases: more than %d cases\n", OP_MAX_CASES);
        exit(2);
    }
    op_case *c = &s->cases[s->ncases++];
    memset(c, 0, sizeof *c);
    c->op = op;
    snprintf(c->variant, sizeof c->variant, "%s", variant);
    c->dtype = dtype;
    c->expect = expect;
    c->tol = op_tol(dtype);
}

static void reject(op_suite *s, const char *what) { cur(s)->reject = what; }

/* binds leaf node i of the suite to values (doubles, already representable in its dtype) */
static void bind(op_suite *s, int i, double *v) {
    if (i >= s->cap) {
        int cap = (i + 1) * 2;
        s->leaf = realloc(s->leaf, sizeof *s->leaf * (size_t)cap);
        if (!s->leaf) abort();
        memset(s->leaf + s->cap, 0, sizeof *s->leaf * (size_t)(cap - s->cap));
        s->cap = cap;
    }
    s->leaf[i] = v;
    op_case *c = cur(s);
    c->in[c->nin++] = i;
}

static int check_node(op_suite *s, int id) {
    if (id < 0) {
        fprintf(stderr, "op_cases: case %d (%s %s): %s\n", s->ncases - 1, ir_op_name(cur(s)->op), cur(s)->variant,
                s->g->error);
        exit(2);
    }
    return id;
}

/* A leaf of the case (INPUT unless op says WEIGHT/STATE), uniform values in [lo, hi) rounded
 * to its dtype; integer dtypes get integers in [lo, hi). */
static int leaf_op(op_suite *s, ir_op op, ir_dtype t, int ndim, const int64_t *shape, double lo, double hi) {
    int id = check_node(s, ir_leaf(s->g, op, t, ndim, shape, node_name(s, "x", cur(s)->nin), (ir_loc){0}));
    int64_t n = ir_numel(&s->g->nodes[id]);
    double *v = malloc(sizeof *v * (size_t)n + 1);
    if (!v) abort();
    for (int64_t k = 0; k < n; k++) v[k] = ir_dtype_is_float(t) ? round_to(t, uniform(lo, hi)) : (double)(int64_t)uniform(lo, hi);
    bind(s, id, v);
    return id;
}

static int in(op_suite *s, ir_dtype t, int ndim, const int64_t *shape, double lo, double hi) {
    return leaf_op(s, IR_OP_INPUT, t, ndim, shape, lo, hi);
}

static int node(op_suite *s, ir_op op, const int *ins, int nin, const ir_attrs *a, ir_dtype t, int ndim,
                const int64_t *shape) {
    static int k;
    return check_node(s, ir_add(s->g, op, ins, nin, a, t, ndim, shape, node_name(s, "n", k++), (ir_loc){0}));
}

/* node id is one of the case's results (an output; leaves updated in place are listed as is) */
static void result(op_suite *s, int id) {
    op_case *c = cur(s);
    if (!(s->g->nodes[id].flags & IR_NODE_OUTPUT) && s->g->nodes[id].op != IR_OP_WEIGHT &&
        s->g->nodes[id].op != IR_OP_STATE)
        ir_node_set_output(s->g, id, node_name(s, "y", c->nout));
    c->out[c->nout++] = id;
}

static int unary(op_suite *s, ir_op op, int x, const ir_attrs *a) {
    return node(s, op, &x, 1, a, s->g->nodes[x].dtype, 0, NULL);
}

static int binary(op_suite *s, ir_op op, int x, int y) {
    return node(s, op, (int[]){x, y}, 2, NULL, s->g->nodes[x].dtype, 0, NULL);
}

static const ir_dtype FLOATS[3] = {IR_F32, IR_F16, IR_BF16};

/* Gives leaf x values of every magnitude: f16 subnormals (below 6.1e-5), halfway cases, up to
 * past f16's range (infinities), zeros of both signs. */
static void spread(op_suite *s, int x, ir_dtype t) {
    double *v = s->leaf[x];
    int64_t n = ir_numel(&s->g->nodes[x]);
    for (int64_t k = 0; k < n; k++) {
        double m = uniform(-1, 1) * pow(10.0, uniform(-9, 5.2));
        if (k % 17 == 3) m = k % 2 ? 0.0 : -0.0;
        if (k % 13 == 5) m = 1.0 + 1.0 / 2048; /* f16 tie: rounds to even */
        v[k] = round_to(t, m);
    }
}

/* ---- pointwise --------------------------------------------------------------------------- */

static void elementwise_cases(op_suite *s) {
    static const ir_op binops[] = {IR_OP_ADD, IR_OP_SUB, IR_OP_MUL, IR_OP_DIV, IR_OP_GELU_GRAD, IR_OP_ERF_GRAD};
    for (size_t o = 0; o < sizeof binops / sizeof binops[0]; o++) {
        ir_op op = binops[o];
        double lo = op == IR_OP_DIV ? 0.5 : -2;
        for (int d = 0; d < 3; d++) {
            ir_dtype t = FLOATS[d];
            const char *vexp = t == IR_F32 ? "dc_store4" : "dc_store8";
            begin(s, op, t == IR_F32 ? "same_shape_vec4" : "same_shape_vec8", t, vexp);
            result(s, binary(s, op, in(s, t, SH(8, 48), -2, 2), in(s, t, SH(8, 48), lo, 2)));
            begin(s, op, "bias_lastdim", t, vexp);
            result(s, binary(s, op, in(s, t, SH(5, 3, 16), -2, 2), in(s, t, SH(16), lo, 2)));
            begin(s, op, "bias_lastdim12", t, t == IR_F32 ? "dc_store4" : NULL); /* 8 does not divide 12 */
            if (t != IR_F32) reject(s, "dc_store");
            result(s, binary(s, op, in(s, t, SH(5, 7, 12), -2, 2), in(s, t, SH(12), lo, 2)));
            begin(s, op, "odd_scalar", t, NULL);
            reject(s, "dc_store");
            result(s, binary(s, op, in(s, t, SH(7, 13), -2, 2), in(s, t, SH(7, 13), lo, 2)));
        }
        /* broadcasts that stay scalar: a column, both sides, a rank difference */
        begin(s, op, "bcast_col_scalar", IR_F32, NULL);
        reject(s, "dc_store");
        result(s, binary(s, op, in(s, IR_F32, SH(6, 5), -2, 2), in(s, IR_F32, SH(6, 1), lo, 2)));
        begin(s, op, "bcast_both", IR_F32, NULL);
        result(s, binary(s, op, in(s, IR_F32, SH(3, 1, 8), -2, 2), in(s, IR_F32, SH(1, 4, 1), lo, 2)));
        begin(s, op, "bcast_splat_vec4", IR_F32, "dc_store4"); /* a [N,1] operand over a last dim of 4k */
        result(s, binary(s, op, in(s, IR_F32, SH(6, 8), -2, 2), in(s, IR_F32, SH(6, 1), lo, 2)));
        begin(s, op, "scalar_operand", IR_F32, "dc_store4");
        result(s, binary(s, op, in(s, IR_F32, SH(4, 16), -2, 2), in(s, IR_F32, SH(1), lo, 2)));
    }
    /* unary ops */
    for (int d = 0; d < 3; d++) {
        ir_dtype t = FLOATS[d];
        const char *vexp = t == IR_F32 ? "dc_store4" : "dc_store8";
        ir_attrs a = {0};
        a.alpha = -0.37;
        begin(s, IR_OP_SCALE, "vec4", t, vexp);
        result(s, unary(s, IR_OP_SCALE, in(s, t, SH(4, 32), -3, 3), &a));
        begin(s, IR_OP_SCALE, "odd", t, NULL);
        reject(s, "dc_store");
        result(s, unary(s, IR_OP_SCALE, in(s, t, SH(3, 7), -3, 3), &a));
        begin(s, IR_OP_SQRT, "vec4", t, vexp);
        result(s, unary(s, IR_OP_SQRT, in(s, t, SH(64), 0, 9), NULL));
        begin(s, IR_OP_SQRT, "odd", t, NULL);
        result(s, unary(s, IR_OP_SQRT, in(s, t, SH(33), 0, 9), NULL));
        begin(s, IR_OP_ERF, "vec4", t, vexp);
        result(s, unary(s, IR_OP_ERF, in(s, t, SH(2, 40), -3, 3), NULL));
        begin(s, IR_OP_ERF, "odd", t, NULL);
        result(s, unary(s, IR_OP_ERF, in(s, t, SH(5, 5), -3, 3), NULL));
        for (int tanh = 0; tanh < 2; tanh++) {
            ir_attrs ga = {0};
            ga.gelu_tanh = tanh;
            begin(s, IR_OP_GELU, tanh ? "tanh_vec4" : "erf_vec4", t, tanh ? "dc_gelu_tanh(" : "dc_gelu_erf(");
            result(s, unary(s, IR_OP_GELU, in(s, t, SH(3, 64), -4, 4), &ga));
            begin(s, IR_OP_GELU, tanh ? "tanh_odd" : "erf_odd", t, NULL);
            result(s, unary(s, IR_OP_GELU, in(s, t, SH(3, 11), -4, 4), &ga));
            begin(s, IR_OP_GELU_GRAD, tanh ? "tanh" : "erf", t, tanh ? "dc_gelu_tanh_grad" : "dc_gelu_erf_grad");
            int dy = in(s, t, SH(4, 9), -2, 2);
            result(s, node(s, IR_OP_GELU_GRAD, (int[]){dy, in(s, t, SH(4, 9), -4, 4)}, 2, &ga, t, 0, NULL));
        }
        /* expand: a bias row over rows (vector splat path on f32), a column (scalar) */
        begin(s, IR_OP_EXPAND, "row_to_matrix", t, vexp);
        result(s, node(s, IR_OP_EXPAND, (int[]){in(s, t, SH(1, 8), -2, 2)}, 1, NULL, t, SH(6, 8)));
        begin(s, IR_OP_EXPAND, "col_odd", t, NULL);
        result(s, node(s, IR_OP_EXPAND, (int[]){in(s, t, SH(3, 1), -2, 2)}, 1, NULL, t, SH(2, 3, 5)));
        /* const: a persistent leaf filled first each step */
        begin(s, IR_OP_CONST, "fill", t, NULL);
        ir_attrs ca = {0};
        ca.alpha = 0.3;
        int k = check_node(s, ir_add(s->g, IR_OP_CONST, NULL, 0, &ca, t, SH(5, 8), node_name(s, "const", 0), (ir_loc){0}));
        result(s, k);
    }
    /* casts between every float dtype, and from/to integers (integer-valued data) */
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            if (a == b) continue;
            char v[64];
            snprintf(v, sizeof v, "from_%s", ir_dtype_name(FLOATS[a]));
            begin(s, IR_OP_CAST, v, FLOATS[b], NULL);
            int x = in(s, FLOATS[a], SH(6, 10), -1, 1);
            spread(s, x, FLOATS[a]);
            result(s, node(s, IR_OP_CAST, &x, 1, NULL, FLOATS[b], 0, NULL));
            cur(s)->tol = 0; /* both round to nearest even: the same bits */
        }
    /* narrowing casts of the edge values: ties to even (normal and subnormal), the largest
     * finite values and the first that round to inf, f32 subnormals, infinities, NaN */
    static const float edges[] = {1 + 0x1p-11f, 1 + 3 * 0x1p-11f, 1 + 0x1p-8f, 1 + 3 * 0x1p-8f, 65504, 65519.996f,
                                  65520, -65520, 0x1p-24f, 0x1p-25f, 3 * 0x1p-25f, 0x1.8p-24f, 0x1p-14f, 0x1.ff8p-15f,
                                  0x1p-133f, 0x1p-134f, 0x1.8p-133f, 0x1p-149f, 0x1.fffffep127f, 0x1.fe0000p127f,
                                  0x1.ff0000p127f, -0x1.ff0000p127f, INFINITY, -INFINITY, NAN, -0.0f, 0, 3.1415927f};
    enum { NEDGES = sizeof edges / sizeof edges[0] };
    for (int b = 1; b < 3; b++) {
        begin(s, IR_OP_CAST, "from_f32_edges", FLOATS[b], NULL);
        int x = in(s, IR_F32, SH(NEDGES), -1, 1);
        for (int k = 0; k < NEDGES; k++) s->leaf[x][k] = edges[k];
        result(s, node(s, IR_OP_CAST, &x, 1, NULL, FLOATS[b], 0, NULL));
        cur(s)->tol = 0; /* the same bits; NaN where both are NaN */
    }
    /* narrowing casts 8 at a time: f32 read as two float4s */
    for (int b = 1; b < 3; b++) {
        begin(s, IR_OP_CAST, "from_f32_vec8", FLOATS[b], "a4hi");
        int x = in(s, IR_F32, SH(8, 16), -1, 1);
        spread(s, x, IR_F32);
        result(s, node(s, IR_OP_CAST, &x, 1, NULL, FLOATS[b], 0, NULL));
        cur(s)->tol = 0;
    }
    begin(s, IR_OP_FLIP_BATCH, "labels_i64", IR_I64, NULL); /* mixup's partner labels */
    result(s, unary(s, IR_OP_FLIP_BATCH, in(s, IR_I64, SH(6), 0, 9), NULL));
    begin(s, IR_OP_CAST, "from_i64", IR_F32, "(float)");
    result(s, node(s, IR_OP_CAST, (int[]){in(s, IR_I64, SH(9), -1000, 1000)}, 1, NULL, IR_F32, 0, NULL));
    begin(s, IR_OP_CAST, "from_i32", IR_F16, "(float)");
    result(s, node(s, IR_OP_CAST, (int[]){in(s, IR_I32, SH(9), -1000, 1000)}, 1, NULL, IR_F16, 0, NULL));
    /* to integers from integer-valued floats (the interpreter does not truncate) */
    static const ir_dtype ints[2] = {IR_I32, IR_I64};
    for (int k = 0; k < 2; k++) {
        begin(s, IR_OP_CAST, "f32_to_int", ints[k], ints[k] == IR_I32 ? "(int)(" : "(long long)(");
        int x = in(s, IR_I64, SH(7), -100, 100);
        int f = node(s, IR_OP_CAST, &x, 1, NULL, IR_F32, 0, NULL);
        result(s, node(s, IR_OP_CAST, &f, 1, NULL, ints[k], 0, NULL));
    }
}

static void gather_cases(op_suite *s) {
    for (int d = 0; d < 3; d++) {
        ir_dtype t = FLOATS[d];
        const char *vexp = t == IR_F32 ? "dc_store4" : "dc_store8";
        ir_attrs a = {0};
        /* permute: attention's head split keeps the last dim (vector), a transpose does not */
        int64_t p1[] = {0, 2, 1, 3};
        memcpy(a.perm, p1, sizeof p1);
        begin(s, IR_OP_PERMUTE, "keep_last_vec4", t, vexp);
        result(s, unary(s, IR_OP_PERMUTE, in(s, t, SH(2, 5, 3, 8), -2, 2), &a));
        int64_t p2[] = {1, 0};
        memset(a.perm, 0, sizeof a.perm);
        memcpy(a.perm, p2, sizeof p2);
        begin(s, IR_OP_PERMUTE, "transpose", t, NULL);
        reject(s, "dc_store");
        result(s, unary(s, IR_OP_PERMUTE, in(s, t, SH(12, 7), -2, 2), &a));
        int64_t p3[] = {2, 0, 3, 1};
        memset(a.perm, 0, sizeof a.perm);
        memcpy(a.perm, p3, sizeof p3);
        begin(s, IR_OP_PERMUTE, "rank4_odd", t, NULL);
        result(s, unary(s, IR_OP_PERMUTE, in(s, t, SH(3, 5, 2, 7), -2, 2), &a));
        /* flip_batch (mixup's partner): rows of 8 (vector) and odd rows (scalar) */
        begin(s, IR_OP_FLIP_BATCH, "rows_vec", t, vexp);
        result(s, unary(s, IR_OP_FLIP_BATCH, in(s, t, SH(5, 2, 8), -2, 2), NULL));
        begin(s, IR_OP_FLIP_BATCH, "rows_odd", t, NULL);
        reject(s, "dc_store");
        result(s, unary(s, IR_OP_FLIP_BATCH, in(s, t, SH(4, 3, 3), -2, 2), NULL));
        /* slice / pad along a middle axis (inner 8: vector) and the last (odd: scalar) */
        memset(&a, 0, sizeof a);
        a.axis = 1, a.start = 1, a.end = 4;
        begin(s, IR_OP_SLICE, "mid_axis_vec4", t, vexp);
        result(s, unary(s, IR_OP_SLICE, in(s, t, SH(3, 5, 8), -2, 2), &a));
        begin(s, IR_OP_PAD, "mid_axis_vec4", t, vexp);
        result(s, node(s, IR_OP_PAD, (int[]){in(s, t, SH(3, 3, 8), -2, 2)}, 1, &a, t, SH(3, 5, 8)));
        a.axis = 1, a.start = 0, a.end = 1; /* select_token */
        begin(s, IR_OP_SLICE, "token0", t, vexp);
        result(s, unary(s, IR_OP_SLICE, in(s, t, SH(2, 9, 16), -2, 2), &a));
        a.axis = 2, a.start = 2, a.end = 5;
        begin(s, IR_OP_SLICE, "last_axis_odd", t, NULL);
        reject(s, "dc_store");
        result(s, unary(s, IR_OP_SLICE, in(s, t, SH(2, 3, 7), -2, 2), &a));
        begin(s, IR_OP_PAD, "last_axis_odd", t, NULL);
        reject(s, "dc_store");
        result(s, node(s, IR_OP_PAD, (int[]){in(s, t, SH(2, 3, 3), -2, 2)}, 1, &a, t, SH(2, 3, 7)));
        /* concat: cls token + patches (2 inputs), three inputs on the last axis */
        memset(&a, 0, sizeof a);
        a.axis = 1;
        begin(s, IR_OP_CONCAT, "two_mid_vec4", t, vexp);
        result(s, node(s, IR_OP_CONCAT, (int[]){in(s, t, SH(2, 1, 8), -2, 2), in(s, t, SH(2, 6, 8), -2, 2)}, 2, &a, t, 0,
                       NULL));
        a.axis = 1;
        begin(s, IR_OP_CONCAT, "three_last_odd", t, NULL);
        result(s, node(s, IR_OP_CONCAT,
                       (int[]){in(s, t, SH(3, 2), -2, 2), in(s, t, SH(3, 5), -2, 2), in(s, t, SH(3, 1), -2, 2)}, 3, &a, t,
                       0, NULL));
        /* patchify / unpatchify: patch 4 (vector rows), patch 3 (scalar) */
        memset(&a, 0, sizeof a);
        a.patch = 8;
        begin(s, IR_OP_PATCHIFY, "patch8_vec", t, vexp);
        result(s, unary(s, IR_OP_PATCHIFY, in(s, t, SH(2, 3, 16, 24), -2, 2), &a));
        begin(s, IR_OP_UNPATCHIFY, "patch8_vec", t, vexp);
        result(s, node(s, IR_OP_UNPATCHIFY, (int[]){in(s, t, SH(2, 6, 192), -2, 2)}, 1, &a, t, SH(2, 3, 16, 24)));
        a.patch = 4; /* vector for f32 only */
        begin(s, IR_OP_PATCHIFY, "patch4", t, t == IR_F32 ? "dc_store4" : NULL);
        if (t != IR_F32) reject(s, "dc_store");
        result(s, unary(s, IR_OP_PATCHIFY, in(s, t, SH(2, 3, 8, 12), -2, 2), &a));
        begin(s, IR_OP_UNPATCHIFY, "patch4", t, t == IR_F32 ? "dc_store4" : NULL);
        result(s, node(s, IR_OP_UNPATCHIFY, (int[]){in(s, t, SH(2, 6, 48), -2, 2)}, 1, &a, t, SH(2, 3, 8, 12)));
        a.patch = 3;
        begin(s, IR_OP_PATCHIFY, "patch3", t, NULL);
        reject(s, "dc_store");
        result(s, unary(s, IR_OP_PATCHIFY, in(s, t, SH(1, 2, 6, 9), -2, 2), &a));
        begin(s, IR_OP_UNPATCHIFY, "patch3", t, NULL);
        reject(s, "dc_store");
        result(s, node(s, IR_OP_UNPATCHIFY, (int[]){in(s, t, SH(1, 6, 18), -2, 2)}, 1, &a, t, SH(1, 2, 6, 9)));
    }
}

/* ---- reductions ---------------------------------------------------------------------------- */

static void reduce_cases(op_suite *s) {
    for (int d = 0; d < 3; d++) {
        ir_dtype t = FLOATS[d];
        /* sum_to: a bias gradient (rows summed; two passes once rows >= 512), a mixture of kept
         * and reduced dims, everything to one value */
        begin(s, IR_OP_SUM_TO, "rows_one_pass", t, NULL);
        reject(s, "_pass1");
        result(s, node(s, IR_OP_SUM_TO, (int[]){in(s, t, SH(37, 24), -2, 2)}, 1, NULL, t, SH(24)));
        begin(s, IR_OP_SUM_TO, "rows_two_pass", t, "sum_to_pass2");
        result(s, node(s, IR_OP_SUM_TO, (int[]){in(s, t, SH(2, 600, 7), -2, 2)}, 1, NULL, t, SH(7)));
        begin(s, IR_OP_SUM_TO, "keep_middle", t, NULL);
        result(s, node(s, IR_OP_SUM_TO, (int[]){in(s, t, SH(2, 3, 5), -2, 2)}, 1, NULL, t, SH(3, 1)));
        begin(s, IR_OP_SUM_TO, "to_scalar", t, NULL);
        result(s, node(s, IR_OP_SUM_TO, (int[]){in(s, t, SH(45), -2, 2)}, 1, NULL, t, SH(1)));
        begin(s, IR_OP_SUM_TO, "wide_outputs", t, NULL); /* more outputs than one column tile */
        result(s, node(s, IR_OP_SUM_TO, (int[]){in(s, t, SH(5, 70), -2, 2)}, 1, NULL, t, SH(1, 70)));
        /* bias-gelu-grad: dh = GELU_GRAD(dy, h) and its column sum (the fc1 bias gradient) in one
         * kernel, one pass and two (erf, and tanh); bias-grad: an add and its column sum, one
         * input broadcast (a bias over the last dim) */
        ir_attrs ga = {0};
        begin(s, IR_OP_GELU_GRAD, "bias_gelu_grad_one_pass", t, "_bias_gelu_grad(");
        int dh = node(s, IR_OP_GELU_GRAD, (int[]){in(s, t, SH(3, 7, 40), -1, 1), in(s, t, SH(3, 7, 40), -3, 3)}, 2, &ga,
                      t, 0, NULL);
        int db = node(s, IR_OP_SUM_TO, (int[]){dh}, 1, NULL, t, SH(40));
        result(s, dh);
        result(s, db);
        for (int tanh_gelu = 0; tanh_gelu < 2; tanh_gelu++) {
            ga.gelu_tanh = tanh_gelu;
            begin(s, IR_OP_GELU_GRAD, tanh_gelu ? "bias_gelu_grad_two_pass_tanh" : "bias_gelu_grad_two_pass", t,
                  "bias_gelu_grad_pass1");
            dh = node(s, IR_OP_GELU_GRAD, (int[]){in(s, t, SH(2, 300, 24), -1, 1), in(s, t, SH(2, 300, 24), -3, 3)}, 2,
                      &ga, t, 0, NULL);
            db = node(s, IR_OP_SUM_TO, (int[]){dh}, 1, NULL, t, SH(24));
            result(s, dh);
            result(s, db);
        }
        begin(s, IR_OP_SUM_TO, "chain_sum_to", t, "_chain_sum_to(");
        int sum = binary(s, IR_OP_ADD, in(s, t, SH(4, 9, 33), -2, 2), in(s, t, SH(33), -2, 2));
        result(s, node(s, IR_OP_SUM_TO, (int[]){sum}, 1, NULL, t, SH(33)));
        result(s, sum);
        ir_attrs a = {0};
        a.axis = 1;
        begin(s, IR_OP_REDUCE_MEAN, "mid_axis", t, NULL);
        reject(s, "_pass1");
        result(s, unary(s, IR_OP_REDUCE_MEAN, in(s, t, SH(3, 5, 7), -2, 2), &a));
        begin(s, IR_OP_REDUCE_MEAN, "two_pass", t, "reduce_mean_pass2");
        result(s, unary(s, IR_OP_REDUCE_MEAN, in(s, t, SH(2, 700, 3), -2, 2), &a));
        a.axis = 2;
        begin(s, IR_OP_REDUCE_MEAN, "last_axis", t, NULL);
        result(s, unary(s, IR_OP_REDUCE_MEAN, in(s, t, SH(2, 3, 33), -2, 2), &a));
        /* sum_squares of several tensors (one over SS_TILE = 4096 elements: several blocks);
         * its result is f32 whatever the inputs' dtype, so the f32 tolerance holds */
        begin(s, IR_OP_SUM_SQUARES, "multi_tensor", t, "sum_squares_pass2");
        cur(s)->tol = TOL_F32;
        result(s, node(s, IR_OP_SUM_SQUARES,
                       (int[]){in(s, t, SH(5000), -1, 1), in(s, t, SH(3, 7), -1, 1), in(s, t, SH(1), -1, 1)}, 3, NULL,
                       IR_F32, 0, NULL));
        /* a value that is not finite gives NaN (what loss scaling reads as an overflow); finite
         * values whose squares overflow give +inf */
        for (int kind = 0; kind < (t == IR_F16 ? 1 : 2); kind++) { /* f16 squares cannot overflow f32 */
            begin(s, IR_OP_SUM_SQUARES, kind ? "squares_overflow" : "not_finite", t, "sum_squares_pass2");
            cur(s)->tol = TOL_F32;
            int a0 = in(s, t, SH(5000), -1, 1), a1 = in(s, t, SH(3, 7), -1, 1);
            if (kind == 0) s->leaf[a0][4321] = INFINITY, s->leaf[a1][5] = -INFINITY;
            for (int j = 0; kind == 1 && j < 21; j++) s->leaf[a1][j] = round_to(t, 3e37);
            result(s, node(s, IR_OP_SUM_SQUARES, (int[]){a0, a1}, 2, NULL, IR_F32, 0, NULL));
        }
    }
}

/* ---- row ops ------------------------------------------------------------------------------ */

/* the opt slots a cross-entropy reads: label smoothing sm (the others unused, 0) */
static int smoothing_opt(op_suite *s, double sm) {
    int o = in(s, IR_F32, SH(IR_OPT_SLOTS), 0, 0);
    for (int k = 0; k < IR_OPT_SLOTS; k++) s->leaf[o][k] = k == IR_OPT_LABEL_SMOOTHING ? (float)sm : 0;
    return o;
}

static void row_cases(op_suite *s) {
    /* widths: a multiple of 32, padded lanes, the warp limit, past it (a block per row) */
    static const struct { int64_t rows, C; const char *name, *expect; } W[] = {
        {8, 64, "warp_c64", "dc_warp_sum"},    {7, 40, "warp_c40_pad", "dc_warp_sum"},
        {5, 1024, "warp_c1024", "dc_warp_sum"}, {3, 1100, "block_c1100", "dc_block_sum"},
    };
    for (int d = 0; d < 3; d++) {
        ir_dtype t = FLOATS[d];
        for (size_t w = 0; w < sizeof W / sizeof W[0]; w++) {
            int64_t R = W[w].rows, C = W[w].C;
            ir_attrs a = {0};
            a.eps = 1e-6;
            begin(s, IR_OP_LAYER_NORM, W[w].name, t, W[w].expect);
            int x = in(s, t, SH(R, C), -3, 3);
            result(s, node(s, IR_OP_LAYER_NORM, (int[]){x, in(s, t, SH(C), 0.5, 1.5), in(s, t, SH(C), -1, 1)}, 3, &a,
                           t, 0, NULL));
            /* residual-layer-norm: a bias add and the residual add (an elementwise chain), the sum
             * stored and normalized in one kernel (wider than a warp's rows: the chain's kernel,
             * then the LayerNorm's) */
            char variant[64];
            snprintf(variant, sizeof variant, "residual_%s", W[w].name);
            begin(s, IR_OP_LAYER_NORM, variant, t, C <= 1024 ? "_layer_norm_chain(" : "_chain(");
            int res = in(s, t, SH(R, C), -2, 2), mmv = in(s, t, SH(R, C), -2, 2), bias = in(s, t, SH(C), -1, 1);
            int rsum = binary(s, IR_OP_ADD, res, binary(s, IR_OP_ADD, mmv, bias));
            result(s, rsum);
            result(s, node(s, IR_OP_LAYER_NORM, (int[]){rsum, in(s, t, SH(C), 0.5, 1.5), in(s, t, SH(C), -1, 1)}, 3, &a,
                           t, 0, NULL));
            begin(s, IR_OP_LAYER_NORM_DX, W[w].name, t, W[w].expect);
            int dy = in(s, t, SH(R, C), -1, 1);
            result(s, node(s, IR_OP_LAYER_NORM_DX, (int[]){dy, in(s, t, SH(R, C), -3, 3), in(s, t, SH(C), 0.5, 1.5)}, 3,
                           &a, t, 0, NULL));
            /* the LayerNorm that keeps its statistics: y, mean and rstd through PROJECT; its dx
             * from given statistics (any values: the kernel reads, never recomputes, them) */
            begin(s, IR_OP_LAYER_NORM_STATS, W[w].name, t, "mean_out[r] = mean;");
            x = in(s, t, SH(R, C), -3, 3);
            int st = node(s, IR_OP_LAYER_NORM_STATS, (int[]){x, in(s, t, SH(C), 0.5, 1.5), in(s, t, SH(C), -1, 1)}, 3,
                          &a, t, 0, NULL);
            for (int k = 0; k < 3; k++) {
                ir_attrs pa = {0};
                pa.output = k;
                result(s, unary(s, IR_OP_PROJECT, st, &pa));
            }
            begin(s, IR_OP_LAYER_NORM_DX_STATS, W[w].name, t, W[w].expect);
            reject(s, "dc_sqrt"); /* statistics read, not recomputed */
            dy = in(s, t, SH(R, C), -1, 1);
            int xs = in(s, t, SH(R, C), -3, 3), gs = in(s, t, SH(C), 0.5, 1.5);
            int mean = in(s, IR_F32, SH(R, 1), -1, 1), rstd = in(s, IR_F32, SH(R, 1), 0.3, 2);
            result(s, node(s, IR_OP_LAYER_NORM_DX_STATS, (int[]){dy, xs, gs, mean, rstd}, 5, &a, t, 0, NULL));
            begin(s, IR_OP_SOFTMAX, W[w].name, t, W[w].expect);
            result(s, unary(s, IR_OP_SOFTMAX, in(s, t, SH(R, C), -4, 4), NULL));
            begin(s, IR_OP_SOFTMAX_GRAD, W[w].name, t, W[w].expect);
            dy = in(s, t, SH(R, C), -1, 1);
            result(s, binary(s, IR_OP_SOFTMAX_GRAD, dy, in(s, t, SH(R, C), 0, 0.02)));
        }
        /* attention-shaped softmax: [B, heads, N, N] with N odd */
        begin(s, IR_OP_SOFTMAX, "attn_4d", t, "dc_warp_max");
        result(s, unary(s, IR_OP_SOFTMAX, in(s, t, SH(2, 3, 5, 5), -4, 4), NULL));
        /* dgamma: warp rows one pass (< 64 rows), two passes, a block per row (stats scratch) */
        ir_attrs a = {0};
        a.eps = 1e-5;
        begin(s, IR_OP_LAYER_NORM_DGAMMA, "warp_one_pass", t, "dc_warp_sum");
        reject(s, "_pass1");
        result(s, node(s, IR_OP_LAYER_NORM_DGAMMA, (int[]){in(s, t, SH(9, 40), -1, 1), in(s, t, SH(9, 40), -3, 3)}, 2, &a,
                       t, 0, NULL));
        begin(s, IR_OP_LAYER_NORM_DGAMMA, "warp_two_pass", t, "layer_norm_dgamma_pass2");
        result(s, node(s, IR_OP_LAYER_NORM_DGAMMA, (int[]){in(s, t, SH(2, 100, 64), -1, 1), in(s, t, SH(2, 100, 64), -3, 3)},
                       2, &a, t, 0, NULL));
        begin(s, IR_OP_LAYER_NORM_DGAMMA, "block_stats", t, "layer_norm_stats");
        result(s, node(s, IR_OP_LAYER_NORM_DGAMMA, (int[]){in(s, t, SH(5, 1030), -1, 1), in(s, t, SH(5, 1030), -3, 3)}, 2,
                       &a, t, 0, NULL));
        /* layer-norm-dbeta: dgamma and the column sum of the same dy (dbeta) in one kernel, one
         * pass and two (one pass 2 for both), and rows past the warp limit (the two apart) */
        static const struct { int64_t R, T, C; const char *name, *expect; } D[] = {
            {1, 9, 40, "dbeta_one_pass", "_layer_norm_dgamma_dbeta("},
            {2, 100, 64, "dbeta_two_pass", "layer_norm_dgamma_dbeta_pass2"},
            {1, 5, 1030, "dbeta_block", "layer_norm_stats"},
        };
        for (int k = 0; k < 3; k++) {
            begin(s, IR_OP_LAYER_NORM_DGAMMA, D[k].name, t, D[k].expect);
            int dy = in(s, t, SH(D[k].R, D[k].T, D[k].C), -1, 1);
            result(s, node(s, IR_OP_LAYER_NORM_DGAMMA, (int[]){dy, in(s, t, SH(D[k].R, D[k].T, D[k].C), -3, 3)}, 2, &a, t, 0,
                           NULL));
            result(s, node(s, IR_OP_SUM_TO, (int[]){dy}, 1, NULL, t, SH(D[k].C)));
        }
        /* residual-layer-norm-grad: a LayerNorm's dx and the residual gradient's add after it
         * (the sum stored, dx only in registers), warp rows (padded lanes too) and past the warp
         * limit (the two apart); with the column sum of the add (bias-grad's chain) one pass,
         * two, at the warp limit (the most registers) and past it */
        static const struct { int64_t R, T, C; int sum; const char *name, *expect; } G[] = {
            {1, 8, 64, 0, "residual_grad_c64", "_layer_norm_dx_chain("},
            {1, 7, 40, 0, "residual_grad_c40_pad", "_layer_norm_dx_chain("},
            {1, 3, 1100, 0, "residual_grad_block", "_chain("},
            {1, 9, 40, 1, "residual_grad_sum_one_pass", "_layer_norm_dx_chain_sum("},
            {2, 300, 24, 1, "residual_grad_sum_two_pass", "layer_norm_dx_chain_sum_pass1"},
            {1, 40, 1024, 1, "residual_grad_sum_c1024", "_layer_norm_dx_chain_sum("},
            {1, 5, 1030, 1, "residual_grad_sum_block", "_chain_sum_to("},
        };
        for (int k = 0; k < 7; k++) {
            begin(s, IR_OP_LAYER_NORM_DX, G[k].name, t, G[k].expect);
            int64_t R = G[k].R, T = G[k].T, C = G[k].C;
            int res = in(s, t, SH(R, T, C), -1, 1); /* before dx: the chain's nodes are consecutive */
            int dy = in(s, t, SH(R, T, C), -1, 1), xg = in(s, t, SH(R, T, C), -3, 3), gg = in(s, t, SH(C), 0.5, 1.5);
            int dx = node(s, IR_OP_LAYER_NORM_DX, (int[]){dy, xg, gg}, 3, &a, t, 0, NULL);
            int rs = binary(s, IR_OP_ADD, res, dx);
            if (G[k].sum) result(s, node(s, IR_OP_SUM_TO, (int[]){rs}, 1, NULL, t, SH(C)));
            result(s, rs);
        }
        /* cross-entropy: few and many classes, with and without label smoothing; labels i64
         * and i32. The loss is f32 whatever the logits' dtype. */
        static const struct { int64_t B, K; double sm; ir_dtype lt; const char *name; } X[] = {
            {5, 10, 0, IR_I64, "k10"}, {3, 1100, 0, IR_I64, "k1100"}, {4, 37, 0.1, IR_I32, "k37_smooth_i32"},
            {2, 300, 0.1, IR_I64, "k300_smooth"},
        };
        for (size_t k = 0; k < sizeof X / sizeof X[0]; k++) {
            ir_attrs ca = {0};
            ca.smoothing = X[k].sm;
            begin(s, IR_OP_CROSS_ENTROPY, X[k].name, t, "cross_entropy_pass2");
            cur(s)->tol = TOL_F32;
            int lg = in(s, t, SH(X[k].B, X[k].K), -5, 5), lb = in(s, X[k].lt, SH(X[k].B), 0, (double)X[k].K);
            int op = smoothing_opt(s, X[k].sm);
            result(s, node(s, IR_OP_CROSS_ENTROPY, (int[]){lg, lb, op}, 3, &ca, IR_F32, 0, NULL));
            begin(s, IR_OP_CROSS_ENTROPY_GRAD, X[k].name, t, "dc_block_max");
            int dl = in(s, IR_F32, SH(1), 0.5, 2);
            lg = in(s, t, SH(X[k].B, X[k].K), -5, 5);
            lb = in(s, X[k].lt, SH(X[k].B), 0, (double)X[k].K);
            op = smoothing_opt(s, X[k].sm);
            result(s, node(s, IR_OP_CROSS_ENTROPY_GRAD, (int[]){dl, lg, lb, op}, 4, &ca, t, 0, NULL));
            /* softmax-cross-entropy: the loss and its dlogits in one kernel (the seed made first:
             * the derivative right after the loss) */
            char variant[64];
            snprintf(variant, sizeof variant, "with_grad_%s", X[k].name);
            begin(s, IR_OP_CROSS_ENTROPY, variant, t, "cross_entropy_with_grad_pass1");
            dl = in(s, IR_F32, SH(1), 0.5, 2);
            lg = in(s, t, SH(X[k].B, X[k].K), -5, 5);
            lb = in(s, X[k].lt, SH(X[k].B), 0, (double)X[k].K);
            op = smoothing_opt(s, X[k].sm);
            result(s, node(s, IR_OP_CROSS_ENTROPY, (int[]){lg, lb, op}, 3, &ca, IR_F32, 0, NULL));
            result(s, node(s, IR_OP_CROSS_ENTROPY_GRAD, (int[]){dl, lg, lb, op}, 4, &ca, t, 0, NULL));
        }
    }
}

/* ---- attention (the qkv-attention fusion's ops) ---------------------------------------------- */

/* One forward case (O and LSE) and, with `bwd_too`, one backward case (dqkv from the forward's
 * O and LSE, as autodiff wires it) over qkv [B,N,3*H*hd] of dtype t. fp32 within rel. L2 1e-5
 * (sums over N keys and hd dims in a different order than the interpreter's). */
static void attention_case2(op_suite *s, ir_dtype t, int64_t B, int64_t N, int64_t H, int64_t hd, int bwd_too) {
    char v[64];
    snprintf(v, sizeof v, "b%lld_n%lld_h%lld_hd%lld", (long long)B, (long long)N, (long long)H, (long long)hd);
    ir_attrs a = {0};
    a.heads = H;
    a.alpha = 1.0 / sqrt((double)hd);
    double tol = t == IR_F32 ? 1e-5 : op_tol(t);
    for (int bwd = 0; bwd < 1 + bwd_too; bwd++) {
        /* tensor cores (K/V resident in shared memory for short N, else streamed) or FMA */
        const char *fwd = t == IR_F32 || hd % 16 ? "row_m[tid] + logf"
                          : cg_attention_kv_resident(N, hd) ? "attention_kv_resident" : "attention_mma";
        const char *bwd_kernel = t != IR_F32 && hd % 16 == 0 ? "attention_bwd_mma_dkv" : "attention_bwd_dkv";
        begin(s, bwd ? IR_OP_ATTENTION_BWD : IR_OP_ATTENTION, v, t, bwd ? bwd_kernel : fwd);
        cur(s)->tol = tol;
        int qkv = in(s, t, SH(B, N, 3 * H * hd), -2, 2);
        int att = node(s, IR_OP_ATTENTION, &qkv, 1, &a, t, 0, NULL);
        ir_attrs p0 = {0}, p1 = {0};
        p1.output = 1;
        int o = unary(s, IR_OP_PROJECT, att, &p0), lse = unary(s, IR_OP_PROJECT, att, &p1);
        if (!bwd) {
            result(s, o);
            result(s, lse);
            continue;
        }
        int dO = in(s, t, SH(B, N, H * hd), -1, 1);
        result(s, node(s, IR_OP_ATTENTION_BWD, (int[]){dO, qkv, o, lse}, 4, &a, t, 0, NULL));
    }
}

static void attention_case(op_suite *s, ir_dtype t, int64_t B, int64_t N, int64_t H, int64_t hd) {
    attention_case2(s, t, B, N, H, hd, 1);
}

/* Head dims 32, 64, 96, 128 (and DeiT-micro's 8 and 16) over N that hit every tile edge
 * (1, 2, 15, 16, 17 ... 577: one query/key tile, partial tiles, many key tiles), batch 1..3,
 * heads 1..6. The default run is a covering subset; OKT_ATTENTION_GRID=1 adds, for each head
 * dim and each N of the list, one (batch, heads) pair cycling through 1..3 x 1..6. */
static void attention_cases(op_suite *s) {
    static const struct { int64_t B, N, H, hd; } C[] = {
        {1, 1, 1, 32}, {2, 17, 3, 32}, {1, 65, 2, 32}, {3, 2, 1, 64}, {1, 16, 2, 64}, {2, 63, 1, 64},
        {1, 197, 1, 64}, {1, 15, 2, 96}, {1, 64, 1, 96}, {1, 257, 1, 96}, {2, 17, 2, 128}, {1, 128, 1, 128},
        {1, 577, 1, 128}, {2, 17, 6, 8}, {3, 33, 4, 16},
    };
    for (size_t k = 0; k < sizeof C / sizeof C[0]; k++) attention_case(s, IR_F32, C[k].B, C[k].N, C[k].H, C[k].hd);
    for (int d = 1; d < 3; d++) { /* f16/bf16: the tensor-core forward (hd a multiple of 16), FMA for hd 8 */
        attention_case(s, FLOATS[d], 2, 17, 3, 32);
        attention_case(s, FLOATS[d], 1, 65, 1, 64);
        attention_case(s, FLOATS[d], 1, 197, 2, 64);
        attention_case(s, FLOATS[d], 2, 33, 1, 96);
        attention_case(s, FLOATS[d], 1, 130, 1, 128);
        attention_case(s, FLOATS[d], 1, 257, 1, 64); /* past the resident bound: K/V streamed */
        attention_case(s, FLOATS[d], 3, 16, 2, 16);
        attention_case(s, FLOATS[d], 1, 9, 2, 8);
    }
    const char *grid = getenv("OKT_ATTENTION_GRID");
    if (!grid || strcmp(grid, "1") != 0) return;
    static const int64_t NS[] = {1, 2, 15, 16, 17, 63, 64, 65, 128, 197, 256, 257, 577}, HDS[] = {32, 64, 96, 128};
    int k = 0;
    for (int h = 0; h < 4; h++)
        for (size_t n = 0; n < sizeof NS / sizeof NS[0]; n++, k++) {
            int64_t B = 1 + k % 3, H = 1 + k % 6;
            if (NS[n] >= 256 && B * H > 2) B = 1, H = 2; /* keeps the emu run in minutes */
            attention_case(s, IR_F32, B, NS[n], H, HDS[h]);
        }
    /* f16/bf16 forward on tensor cores: N at the resident kernel's bound (256; 192 at hd 96 and
     * 144 at hd 128: 80 KB of K and V) and one past it (K/V streamed), DeiT's 197, 577, small N;
     * the backward (not N-dependent in its choice) once per head dim */
    static const int64_t BOUND[] = {256, 256, 192, 144};
    k = 0;
    for (int d = 1; d < 3; d++)
        for (int h = 0; h < 4; h++) {
            const int64_t NH[] = {1, 17, 197, BOUND[h], BOUND[h] + 1, 577};
            for (size_t n = 0; n < sizeof NH / sizeof NH[0]; n++, k++) {
                int64_t B = 1 + k % 2, H = 1 + k % 3;
                if (NH[n] >= 144 && B * H > 2) B = 1, H = 2;
                if (NH[n] == 577) B = H = 1;
                attention_case2(s, FLOATS[d], B, NH[n], H, HDS[h], NH[n] == BOUND[h] + 1);
            }
        }
}

/* ---- optimizer ------------------------------------------------------------------------------ */

/* opt slots: lr, weight decay, bias corrections (step 3 of beta 0.9 / 0.999), grad scale */
static int opt_input_clip(op_suite *s, double grad_scale, double clip_norm) {
    int o = in(s, IR_F32, SH(IR_OPT_SLOTS), 0, 1);
    double *v = s->leaf[o];
    v[IR_OPT_LR] = (float)0.01;
    v[IR_OPT_WEIGHT_DECAY] = (float)0.05;
    v[IR_OPT_BIAS_CORR1] = (float)(1 - 0.9 * 0.9 * 0.9);
    v[IR_OPT_BIAS_CORR2] = (float)(1 - 0.999 * 0.999 * 0.999);
    v[IR_OPT_GRAD_SCALE] = (float)grad_scale;
    v[IR_OPT_SKIP] = 0; /* the host fills 0 (only LOSS_SCALE_OPT sets it) */
    v[IR_OPT_LABEL_SMOOTHING] = 0;
    v[IR_OPT_CLIP_NORM] = clip_norm;
    v[IR_OPT_BETA1] = (float)0.9;
    v[IR_OPT_ONE_MINUS_BETA1] = (float)(1 - 0.9);
    v[IR_OPT_BETA2] = (float)0.999;
    v[IR_OPT_ONE_MINUS_BETA2] = (float)(1 - 0.999);
    v[IR_OPT_ADAM_EPS] = (float)1e-8;
    v[IR_OPT_EMA_DECAY] = (float)0.9;
    v[IR_OPT_ONE_MINUS_EMA_DECAY] = (float)(1 - 0.9);
    return o;
}

static int opt_input(op_suite *s, double grad_scale) { return opt_input_clip(s, grad_scale, 0); }

/* ADAMW nodes come after every other node (the verifier's rule), so the cases' updates wait
 * here until all their leaves exist */
typedef struct {
    int c, p, g, m, v, opt, decay, copy; /* copy: a 16-bit STATE (mixed precision), or -1 */
} pending_adamw;
enum { MAX_PENDING = 64 };
static pending_adamw pending[MAX_PENDING];
static int npending;

/* one ADAMW node over a fresh weight of shape sh (dtype pt; m, v f32), reading opt */
static void adamw(op_suite *s, ir_dtype pt, int ndim, const int64_t *sh, int decay, int opt) {
    int p = leaf_op(s, IR_OP_WEIGHT, pt, ndim, sh, -1, 1);
    s->g->nodes[p].flags |= IR_NODE_TRAINABLE;
    int g = in(s, pt, ndim, sh, -1, 1);
    int m = leaf_op(s, IR_OP_STATE, IR_F32, ndim, sh, -0.1, 0.1);
    int v = leaf_op(s, IR_OP_STATE, IR_F32, ndim, sh, 0, 0.01);
    if (npending >= MAX_PENDING) abort(); /* not assert: the test is built with NDEBUG */
    pending[npending++] = (pending_adamw){s->ncases - 1, p, g, m, v, opt, decay, -1};
    result(s, p);
    result(s, m);
    result(s, v);
}

/* the same with a 16-bit copy of the weight (dtype ct) that the update rewrites */
static void adamw_copy(op_suite *s, ir_dtype ct, int ndim, const int64_t *sh, int decay, int opt) {
    adamw(s, IR_F32, ndim, sh, decay, opt);
    int c = leaf_op(s, IR_OP_STATE, ct, ndim, sh, -1, 1);
    pending[npending - 1].copy = c;
    result(s, c);
}

static void add_pending_adamw(op_suite *s) {
    for (int k = 0; k < npending; k++) {
        const pending_adamw *q = &pending[k];
        if (q->m < 0) { /* an EMA of weight q->g into state q->p */
            const char *name = ir_arena_printf(&s->g->arena, "c%03d.ema%d", q->c, k);
            check_node(s, ir_add(s->g, IR_OP_EMA, (int[]){q->p, q->g, q->opt}, 3, NULL, s->g->nodes[q->p].dtype, 0, NULL,
                                 name, (ir_loc){0}));
            continue;
        }
        ir_attrs a = {0};
        a.beta1 = 0.9, a.beta2 = 0.999, a.eps = 1e-8, a.decay = q->decay;
        const char *name = ir_arena_printf(&s->g->arena, "c%03d.adamw%d", q->c, k);
        check_node(s, ir_add(s->g, IR_OP_ADAMW, (int[]){q->p, q->g, q->m, q->v, q->opt, q->copy}, q->copy < 0 ? 5 : 6,
                             &a, s->g->nodes[q->p].dtype, 0, NULL, name, (ir_loc){0}));
    }
    npending = 0;
}

/* loss scaling: a scaler state (RT/IR_SCALER_* slots) of the given values */
static int scaler_leaf(op_suite *s, ir_op op, double scale, double growth, double interval, int mode) {
    int sc = leaf_op(s, op, IR_F32, SH(IR_SCALER_SLOTS), 0, 1);
    double *v = s->leaf[sc];
    v[IR_SCALER_SCALE] = (float)scale;
    v[IR_SCALER_GROWTH] = growth;
    v[IR_SCALER_SKIPPED] = 4;
    v[IR_SCALER_OVERFLOW] = 0;
    v[IR_SCALER_STEP] = 41;
    v[IR_SCALER_INTERVAL] = interval;
    v[IR_SCALER_MODE] = mode;
    return sc;
}

/* a sum of squares [1] of value ss (INFINITY, NAN: an overflow) */
static int ss_leaf(op_suite *s, double ss) {
    int x = in(s, IR_F32, SH(1), 1, 2);
    s->leaf[x][0] = ss;
    return x;
}

/* LOSS_SCALE_UPDATE nodes update their scaler in place: they wait with the ADAMWs */
static int pending_update[MAX_PENDING][3], npending_update;

static void loss_scale_cases(op_suite *s) {
    static const struct {
        const char *name;
        double ss, scale, growth, interval;
        int mode;
    } U[] = {
        {"clean", 3.5, 65536, 3, 2000, IR_LOSS_SCALE_DYNAMIC},
        {"grows", 3.5, 65536, 1999, 2000, IR_LOSS_SCALE_DYNAMIC},
        {"growth_capped", 3.5, 0x1p127, 1, 2, IR_LOSS_SCALE_DYNAMIC}, /* 2^128 is not finite: kept */
        {"backoff_inf", INFINITY, 65536, 7, 2000, IR_LOSS_SCALE_DYNAMIC},
        {"backoff_nan", NAN, 1024, 7, 2000, IR_LOSS_SCALE_DYNAMIC},
        {"unscaled_overflow", 3e38, 0.25, 0, 2000, IR_LOSS_SCALE_DYNAMIC}, /* ss * 16 is not finite */
        {"static_overflow", INFINITY, 512, 0, 2000, IR_LOSS_SCALE_STATIC},
        {"none_overflow", INFINITY, 1, 0, 2000, IR_LOSS_SCALE_NONE}, /* counted, never skipped */
    };
    for (size_t k = 0; k < sizeof U / sizeof U[0]; k++) {
        ir_attrs a = {0};
        a.beta1 = 0.9, a.beta2 = 0.999;
        begin(s, IR_OP_LOSS_SCALE_OPT, U[k].name, IR_F32, "loss_scale_opt");
        int ss = ss_leaf(s, U[k].ss), o = opt_input(s, 1.0);
        int sc = scaler_leaf(s, IR_OP_INPUT, U[k].scale, U[k].growth, U[k].interval, U[k].mode);
        result(s, node(s, IR_OP_LOSS_SCALE_OPT, (int[]){ss, o, sc}, 3, &a, IR_F32, 0, NULL));
        begin(s, IR_OP_LOSS_SCALE_UPDATE, U[k].name, IR_F32, "loss_scale_update");
        ss = ss_leaf(s, U[k].ss);
        sc = scaler_leaf(s, IR_OP_STATE, U[k].scale, U[k].growth, U[k].interval, U[k].mode);
        assert(npending_update < 16);
        if (npending_update >= MAX_PENDING) abort();
        pending_update[npending_update][0] = s->ncases - 1;
        pending_update[npending_update][1] = sc;
        pending_update[npending_update++][2] = ss;
        result(s, sc);
    }
    /* AdamW under loss scaling: a skipped step (weight and moments unchanged) and a taken one,
     * per tensor and in a multi-tensor launch */
    static char skip_text[64];
    snprintf(skip_text, sizeof skip_text, "if (opt[%d] != 0.0f) return;", IR_OPT_SKIP);
    for (int skip = 0; skip < 2; skip++) {
        ir_attrs a = {0};
        a.beta1 = 0.9, a.beta2 = 0.999;
        begin(s, IR_OP_ADAMW, skip ? "skipped_step" : "unscaled_step", IR_F32, skip_text);
        reject(s, "adamw_multi");
        int ss = ss_leaf(s, skip ? INFINITY : 3.5), o = opt_input(s, 1.0);
        int sc = scaler_leaf(s, IR_OP_INPUT, 1024, 0, 2000, IR_LOSS_SCALE_DYNAMIC);
        int opt = node(s, IR_OP_LOSS_SCALE_OPT, (int[]){ss, o, sc}, 3, &a, IR_F32, 0, NULL);
        adamw(s, IR_F32, SH(7, 9), 1, opt);
        begin(s, IR_OP_ADAMW, skip ? "multi_skipped_step" : "multi_unscaled_step", IR_F32, "adamw_multi");
        ss = ss_leaf(s, skip ? INFINITY : 3.5), o = opt_input(s, 1.0);
        sc = scaler_leaf(s, IR_OP_INPUT, 1024, 0, 2000, IR_LOSS_SCALE_DYNAMIC);
        opt = node(s, IR_OP_LOSS_SCALE_OPT, (int[]){ss, o, sc}, 3, &a, IR_F32, 0, NULL);
        adamw(s, IR_F32, SH(3000), 1, opt);
        adamw(s, IR_F32, SH(37), 0, opt);
    }
}

static void add_pending_updates(op_suite *s) {
    for (int k = 0; k < npending_update; k++) {
        const char *name = ir_arena_printf(&s->g->arena, "c%03d.update%d", pending_update[k][0], k);
        check_node(s, ir_add(s->g, IR_OP_LOSS_SCALE_UPDATE, (int[]){pending_update[k][1], pending_update[k][2]}, 2, NULL,
                             IR_F32, 0, NULL, name, (ir_loc){0}));
    }
    npending_update = 0;
}

static void optimizer_cases(op_suite *s) {
    /* clip_coef: a norm under the limit (factor 1), over it, and clipping off (max norm 0) */
    for (int over = 0; over < 3; over++) {
        begin(s, IR_OP_CLIP_COEF, over == 2 ? "off" : over ? "clipping" : "under_limit", IR_F32, "clip_coef");
        int ss = in(s, IR_F32, SH(1), over ? 50 : 0.1, over ? 60 : 0.2);
        int o = opt_input_clip(s, over ? 0.5 : 1.0, over == 2 ? 0 : 1.0);
        ir_attrs a = {0};
        a.alpha = 1.0;
        result(s, node(s, IR_OP_CLIP_COEF, (int[]){ss, o}, 2, &a, IR_F32, 0, NULL));
    }
    /* one tensor alone (its own opt, so no run forms): the per-tensor kernel */
    for (int d = 0; d < 3; d++) {
        begin(s, IR_OP_ADAMW, "single", FLOATS[d], "adamw(");
        reject(s, "adamw_multi");
        adamw(s, FLOATS[d], SH(7, 9), 1, opt_input(s, 1.0));
    }
    /* ema: in place on the state, of a weight (f32, f16, bf16 states of the weight's dtype) */
    for (int d = 0; d < 3; d++) {
        begin(s, IR_OP_EMA, "decay_0.9", FLOATS[d], "ema(");
        int e = leaf_op(s, IR_OP_STATE, FLOATS[d], SH(5, 70), -1, 1);
        int w = leaf_op(s, IR_OP_WEIGHT, FLOATS[d], SH(5, 70), -1, 1);
        if (npending >= MAX_PENDING) abort();
        pending[npending++] = (pending_adamw){s->ncases - 1, e, w, -1, -1, opt_input(s, 1.0), 0, -1}; /* m < 0: an EMA */
        result(s, e);
    }
    /* a run sharing one opt: one launch, tensors of several tiles (ADAMW_TILE = 2048) */
    begin(s, IR_OP_ADAMW, "multi_tensor", IR_F32, "adamw_multi");
    int opt = opt_input(s, 0.5);
    adamw(s, IR_F32, SH(5000), 1, opt);
    adamw(s, IR_F32, SH(37), 0, opt);
    adamw(s, IR_F32, SH(64, 32), 1, opt);
    loss_scale_cases(s);
    /* mixed precision: f32 master, m and v, the new master rounded into a 16-bit copy; alone
     * and in a run (with a tensor without copy) */
    for (int d = 1; d < 3; d++) {
        begin(s, IR_OP_ADAMW, "single_copy", FLOATS[d], "copy[i] = ");
        reject(s, "adamw_multi");
        adamw_copy(s, FLOATS[d], SH(7, 9), 1, opt_input(s, 1.0));
        begin(s, IR_OP_ADAMW, "multi_copy", FLOATS[d], "copies[t[7] + i]");
        int o2 = opt_input(s, 0.5);
        adamw_copy(s, FLOATS[d], SH(3000), 1, o2);
        adamw(s, IR_F32, SH(33), 0, o2);
        adamw_copy(s, FLOATS[d], SH(16, 8), 1, o2);
    }
    add_pending_adamw(s);
    add_pending_updates(s);
}

/* ---- mixed dtypes: what the fp16/bf16 casting pass makes (passes/precision.c) ---------------- */

/* A node storing dtype `out` from inputs of other dtypes: every kernel family loads each input
 * through its own dtype and computes in fp32. The case's dtype is the 16-bit one involved. */
static void mixed_cases(op_suite *s) {
    for (int d = 1; d < 3; d++) {
        ir_dtype h = FLOATS[d];
        ir_attrs a = {0};
        a.eps = 1e-6;
        /* a bias add stored 16-bit (f32 bias), the residual add stored f32 (16-bit branch) */
        begin(s, IR_OP_ADD, "mixed_bias_to_h", h, NULL);
        result(s, node(s, IR_OP_ADD, (int[]){in(s, h, SH(5, 3, 16), -2, 2), in(s, IR_F32, SH(16), -1, 1)}, 2, NULL, h, 0,
                       NULL));
        begin(s, IR_OP_ADD, "mixed_residual_to_f32", h, NULL);
        result(s, node(s, IR_OP_ADD, (int[]){in(s, IR_F32, SH(4, 24), -2, 2), in(s, h, SH(4, 24), -2, 2)}, 2, NULL, IR_F32,
                       0, NULL));
        /* the chain of both (a chain's f32 value must not take the place of a 16-bit input
         * the same kernel still reads: memplan keeps a chain's inputs to its last member;
         * rt_micro_fp16 is where a plan did that) */
        begin(s, IR_OP_ADD, "mixed_chain_bias_residual", h, "_chain(");
        int res = in(s, IR_F32, SH(3, 7, 16), -1, 1);
        int mm = node(s, IR_OP_MATMUL, (int[]){in(s, h, SH(3, 7, 8), -1, 1), in(s, h, SH(8, 16), -1, 1)}, 2,
                      &(ir_attrs){.alpha = 1}, h, 0, NULL);
        int sum = node(s, IR_OP_ADD, (int[]){mm, in(s, IR_F32, SH(16), -1, 1)}, 2, NULL, h, 0, NULL);
        result(s, node(s, IR_OP_ADD, (int[]){res, sum}, 2, NULL, IR_F32, 0, NULL));
        /* LayerNorm of the f32 stream stored 16-bit; its dx (16-bit dy, f32 x) and dgamma (f32) */
        begin(s, IR_OP_LAYER_NORM, "mixed_f32_to_h", h, "dc_warp_sum");
        result(s, node(s, IR_OP_LAYER_NORM,
                       (int[]){in(s, IR_F32, SH(7, 40), -3, 3), in(s, IR_F32, SH(40), 0.5, 1.5), in(s, IR_F32, SH(40), -1, 1)},
                       3, &a, h, 0, NULL));
        begin(s, IR_OP_LAYER_NORM_DX, "mixed_dy_h_x_f32", h, "dc_warp_sum");
        result(s, node(s, IR_OP_LAYER_NORM_DX,
                       (int[]){in(s, h, SH(7, 40), -1, 1), in(s, IR_F32, SH(7, 40), -3, 3), in(s, IR_F32, SH(40), 0.5, 1.5)}, 3,
                       &a, h, 0, NULL));
        begin(s, IR_OP_LAYER_NORM_DGAMMA, "mixed_to_f32", h, "dc_warp_sum");
        result(s, node(s, IR_OP_LAYER_NORM_DGAMMA, (int[]){in(s, h, SH(9, 40), -1, 1), in(s, IR_F32, SH(9, 40), -3, 3)}, 2,
                       &a, IR_F32, 0, NULL));
        /* reductions of 16-bit values into f32 (bias gradients), one and two passes */
        begin(s, IR_OP_SUM_TO, "mixed_rows_to_f32", h, NULL);
        result(s, node(s, IR_OP_SUM_TO, (int[]){in(s, h, SH(37, 24), -2, 2)}, 1, NULL, IR_F32, SH(24)));
        begin(s, IR_OP_SUM_TO, "mixed_two_pass_to_f32", h, "sum_to_pass2");
        result(s, node(s, IR_OP_SUM_TO, (int[]){in(s, h, SH(2, 600, 7), -2, 2)}, 1, NULL, IR_F32, SH(7)));
        /* the loss gradient of f32 logits stored 16-bit; GELU and softmax of 16-bit into f32 */
        begin(s, IR_OP_CROSS_ENTROPY_GRAD, "mixed_f32_to_h", h, "dc_block_max");
        result(s, node(s, IR_OP_CROSS_ENTROPY_GRAD,
                       (int[]){in(s, IR_F32, SH(1), 0.5, 2), in(s, IR_F32, SH(5, 10), -5, 5), in(s, IR_I64, SH(5), 0, 10),
                               opt_input(s, 1.0)},
                       4, NULL, h, 0, NULL));
        begin(s, IR_OP_SOFTMAX, "mixed_h_to_f32", h, "dc_warp_max");
        result(s, node(s, IR_OP_SOFTMAX, (int[]){in(s, h, SH(2, 3, 5, 5), -4, 4)}, 1, NULL, IR_F32, 0, NULL));
        begin(s, IR_OP_GELU, "mixed_h_to_f32", h, "dc_gelu_erf(");
        result(s, node(s, IR_OP_GELU, (int[]){in(s, h, SH(3, 64), -4, 4)}, 1, &(ir_attrs){0}, IR_F32, 0, NULL));
        /* 16-bit operands, f32 product (a weight gradient) */
        begin(s, IR_OP_MATMUL, "mixed_h_to_f32_tn", h, "gemm_steps=1");
        result(s, node(s, IR_OP_MATMUL, (int[]){in(s, h, SH(13, 7), -1, 1), in(s, h, SH(13, 5), -1, 1)}, 2,
                       &(ir_attrs){.alpha = 1, .trans_a = 1}, IR_F32, 0, NULL));
        begin(s, IR_OP_MATMUL, "mixed_partial_bcast_to_f32", h, "gemm_steps=6");
        result(s, node(s, IR_OP_MATMUL, (int[]){in(s, h, SH(2, 1, 4, 5), -1, 1), in(s, h, SH(1, 3, 5, 6), -1, 1)}, 2,
                       &(ir_attrs){.alpha = 1}, IR_F32, 0, NULL));
    }
}

/* ---- matrix products ---------------------------------------------------------------------- */

static void gemm_cases(op_suite *s) {
    for (int d = 0; d < 3; d++) {
        ir_dtype t = FLOATS[d];
        static const struct { int ta, tb; const char *name; } T[] = {{0, 0, "nn"}, {0, 1, "nt"}, {1, 0, "tn"}, {1, 1, "tt"}};
        for (int k = 0; k < 4; k++) {
            ir_attrs a = {0};
            a.alpha = 1, a.trans_a = T[k].ta, a.trans_b = T[k].tb;
            begin(s, IR_OP_MATMUL, T[k].name, t, "gemm_steps=1");
            int x = T[k].ta ? in(s, t, SH(13, 7), -1, 1) : in(s, t, SH(7, 13), -1, 1);
            int y = T[k].tb ? in(s, t, SH(5, 13), -1, 1) : in(s, t, SH(13, 5), -1, 1);
            result(s, node(s, IR_OP_MATMUL, (int[]){x, y}, 2, &a, t, 0, NULL));
        }
        ir_attrs a = {0};
        a.alpha = 0.125;
        begin(s, IR_OP_MATMUL, "batched_alpha", t, "gemm_steps=1");
        result(s, node(s, IR_OP_MATMUL, (int[]){in(s, t, SH(2, 3, 4, 5), -1, 1), in(s, t, SH(2, 3, 5, 6), -1, 1)}, 2, &a, t,
                       0, NULL));
        a.alpha = 1;
        begin(s, IR_OP_MATMUL, "shared_rhs_flat", t, "gemm_steps=1"); /* [B*M, K] @ W */
        result(s, node(s, IR_OP_MATMUL, (int[]){in(s, t, SH(3, 7, 8), -1, 1), in(s, t, SH(8, 5), -1, 1)}, 2, &a, t, 0, NULL));
        a.trans_b = 1;
        begin(s, IR_OP_MATMUL, "shared_rhs_nt", t, "gemm_steps=1");
        result(s, node(s, IR_OP_MATMUL, (int[]){in(s, t, SH(3, 7, 8), -1, 1), in(s, t, SH(5, 8), -1, 1)}, 2, &a, t, 0, NULL));
        a.trans_b = 0;
        begin(s, IR_OP_MATMUL, "partial_bcast", t, "gemm_steps=6"); /* one GEMM per output matrix */
        result(s, node(s, IR_OP_MATMUL, (int[]){in(s, t, SH(2, 1, 4, 5), -1, 1), in(s, t, SH(1, 3, 5, 6), -1, 1)}, 2, &a, t,
                       0, NULL));
        /* bias-gelu: the GEMM feeds one chain kernel of the bias add and GELU, which stores both
         * h (what GELU_GRAD reads) and y */
        begin(s, IR_OP_GELU, "bias_gelu_chain", t, "_bias_gelu(");
        int mm = node(s, IR_OP_MATMUL, (int[]){in(s, t, SH(3, 7, 8), -1, 1), in(s, t, SH(8, 12), -1, 1)}, 2, &a, t, 0, NULL);
        int h = binary(s, IR_OP_ADD, mm, in(s, t, SH(12), -1, 1));
        ir_attrs ga = {0};
        int y = unary(s, IR_OP_GELU, h, &ga);
        result(s, h);
        result(s, y);
        /* gelu-epilogue (tanh GELU): the GEMM's GELU_AUX_BIAS epilogue stores h = mm + bias (aux)
         * and y = gelu(h); its DGELU_BGRAD epilogue dh = g * gelu'(h) and db = column sums of dh.
         * The leaves come before the GEMM: the pass then moves nothing (the cases keep their ids) */
        ga.gelu_tanh = 1;
        begin(s, IR_OP_MATMUL, "gelu_aux_bias_epilogue", t, "gemm_epilogue=1");
        int x = in(s, t, SH(3, 7, 8), -1, 1), w = in(s, t, SH(8, 16), -1, 1), bias = in(s, t, SH(16), -1, 1);
        mm = node(s, IR_OP_MATMUL, (int[]){x, w}, 2, &a, t, 0, NULL);
        h = binary(s, IR_OP_ADD, mm, bias);
        result(s, h);
        result(s, unary(s, IR_OP_GELU, h, &ga));
        begin(s, IR_OP_MATMUL, "dgelu_bgrad_epilogue", t, "gemm_epilogue=2");
        int dy = in(s, t, SH(3, 7, 8), -1, 1), w2 = in(s, t, SH(8, 16), -1, 1), hh = in(s, t, SH(3, 7, 16), -3, 3);
        int gm = node(s, IR_OP_MATMUL, (int[]){dy, w2}, 2, &a, t, 0, NULL);
        int dh = node(s, IR_OP_GELU_GRAD, (int[]){gm, hh}, 2, &ga, t, 0, NULL);
        result(s, dh);
        result(s, node(s, IR_OP_SUM_TO, (int[]){dh}, 1, NULL, t, SH(16)));
        /* elementwise-chain: a bias add and the residual add after it; the sum in between is
         * read only inside the chain, so it stays in a register (no store of it) */
        begin(s, IR_OP_ADD, "chain_bias_residual", t, "_chain(");
        int res = in(s, t, SH(3, 7, 12), -1, 1); /* before the sum: the chain's nodes are consecutive */
        int sum = binary(s, IR_OP_ADD, in(s, t, SH(3, 7, 12), -1, 1), in(s, t, SH(12), -1, 1));
        result(s, binary(s, IR_OP_ADD, res, sum));
    }
}

op_suite *op_suite_new(void) {
    op_suite *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->g = ir_graph_new();
    s->g->info.model_name = "op_kernels";
    s->g->info.batch = 1;
    rng_state = 0x5eed0b5ull;
    elementwise_cases(s);
    gather_cases(s);
    reduce_cases(s);
    row_cases(s);
    gemm_cases(s);
    mixed_cases(s);
    attention_cases(s);
    optimizer_cases(s); /* last: the verifier wants nothing computed after an update */
    if (ir_verify(s->g)) {
        fprintf(stderr, "op_cases: the case graph does not verify: %s\n", s->g->error);
        exit(2);
    }
    return s;
}

void op_suite_free(op_suite *s) {
    if (!s) return;
    for (int i = 0; i < s->cap; i++) free(s->leaf[i]);
    free(s->leaf);
    ir_graph_free(s->g);
    free(s);
}

/* Ops and dtypes the coverage check does not demand, with the reason. */
const char *op_dtype_exempt(ir_op op, ir_dtype t) {
    if (op == IR_OP_CLIP_COEF && t != IR_F32) return "reads the f32 opt slots and writes them";
    if ((op == IR_OP_LOSS_SCALE_OPT || op == IR_OP_LOSS_SCALE_UPDATE) && t != IR_F32)
        return "reads and writes the f32 opt slots and loss scaler state";
    return NULL;
}
