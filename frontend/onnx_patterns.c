/* onnx_patterns.c: the IR builders of the ONNX reader (see onnx.c) and the patterns they
 * recover as each IR node is made: a decomposed LayerNorm becomes LAYER_NORM, the erf and
 * tanh spellings of GELU become GELU; in attention as exported (scaled_dot_product_attention
 * spelled out), a MatMul of a transposed operand takes trans_a/trans_b and the scales of q and
 * k^T fold into its alpha; reshape-of-reshape and permute-of-permute collapse. Also the
 * materializing of a constant as an IR leaf (ir_of). The opset-23 Attention op itself is
 * lowered in onnx_ops.c, from these builders.
 */
#ifdef DEITC_HAVE_ONNX
#include "frontend/onnx_internal.h"

/* ---- IR builders with peepholes --------------------------------------------------------- */

static ir_loc here(octx *c) {
    ir_loc l = {c->path, c->node_index + 1, 1}; /* line: 1-based index of the ONNX node */
    return l;
}

int fe_ox_check_ir(octx *c, int id) {
    if (id < 0) return fe_ox_fail(c, "%s", c->g->error);
    const ir_node *n = &c->g->nodes[id];
    int64_t k = 1;
    for (int i = 0; i < n->ndim; i++)
        if (__builtin_mul_overflow(k, n->shape[i], &k) || k > OX_MAX_NUMEL) {
            c->g->n--;
            return fe_ox_fail(c, "tensor of more than 2^40 elements");
        }
    return id;
}

int fe_ox_b_node(octx *c, ir_op op, const int *in, int nin, const ir_attrs *a, int ndim, const int64_t *shape) {
    if (c->failed) return -1;
    for (int k = 0; k < nin; k++)
        if (in[k] < 0) return -1;
    ir_dtype t = nin ? c->g->nodes[in[0]].dtype : IR_F32;
    return fe_ox_check_ir(c, ir_add(c->g, op, in, nin, a, t, ndim, shape, c->node_name, here(c)));
}

static const ir_node *nd(octx *c, int id) { return &c->g->nodes[id]; }

int fe_ox_b_const(octx *c, double value, int ndim, const int64_t *shape) {
    ir_attrs a = {0};
    a.alpha = value;
    int64_t one = 1;
    if (ndim == 0) ndim = 1, shape = &one;
    if (c->failed) return -1;
    return fe_ox_check_ir(c, ir_add(c->g, IR_OP_CONST, NULL, 0, &a, IR_F32, ndim, shape, NULL, here(c)));
}

static int is_scalar_const(octx *c, int id, double *value) {
    const ir_node *n = nd(c, id);
    if (n->op != IR_OP_CONST || ir_numel(n) != 1) return 0;
    if (value) *value = n->attrs.alpha;
    return 1;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-6 * fmax(1.0, fabs(b)); }

static int is_last_swap(octx *c, int x);

int fe_ox_b_reshape(octx *c, int x, int ndim, const int64_t *shape) {
    if (x < 0) return -1;
    while (nd(c, x)->op == IR_OP_RESHAPE) x = nd(c, x)->inputs[0];
    const ir_node *n = nd(c, x);
    if (n->ndim == ndim && memcmp(n->shape, shape, sizeof(int64_t) * (size_t)ndim) == 0) return x;
    /* reshape(swap-last-two(y)) that only regroups the leading dims is swap-last-two of y
     * reshaped: the dynamo exporter's k^T of scaled_dot_product_attention, [B,H,N,d] ->
     * [B*H,N,d] -> [B*H,d,N] -> [B,H,d,N], becomes one swap, which the MATMUL then absorbs */
    if (is_last_swap(c, x) && ndim >= 2 && shape[ndim - 2] == n->shape[n->ndim - 2] &&
        shape[ndim - 1] == n->shape[n->ndim - 1]) {
        int64_t inner[IR_MAX_DIMS], perm[IR_MAX_DIMS];
        memcpy(inner, shape, sizeof(int64_t) * (size_t)ndim);
        inner[ndim - 2] = shape[ndim - 1], inner[ndim - 1] = shape[ndim - 2];
        for (int i = 0; i < ndim; i++) perm[i] = i;
        perm[ndim - 2] = ndim - 1, perm[ndim - 1] = ndim - 2;
        return fe_ox_b_permute(c, fe_ox_b_reshape(c, n->inputs[0], ndim, inner), perm);
    }
    return fe_ox_b_node(c, IR_OP_RESHAPE, &x, 1, NULL, ndim, shape);
}

int fe_ox_b_permute(octx *c, int x, const int64_t *perm) {
    if (x < 0) return -1;
    int r = nd(c, x)->ndim;
    int64_t p[IR_MAX_DIMS];
    memcpy(p, perm, sizeof(int64_t) * (size_t)r);
    while (nd(c, x)->op == IR_OP_PERMUTE) { /* out i = y p[i] = x q[p[i]] */
        int64_t q[IR_MAX_DIMS];
        for (int i = 0; i < r; i++) q[i] = nd(c, x)->attrs.perm[p[i]];
        memcpy(p, q, sizeof q);
        x = nd(c, x)->inputs[0];
    }
    int identity = 1;
    for (int i = 0; i < r; i++) identity &= p[i] == i;
    if (identity) return x;
    ir_attrs a = {0};
    memcpy(a.perm, p, sizeof(int64_t) * (size_t)r);
    return fe_ox_b_node(c, IR_OP_PERMUTE, &x, 1, &a, 0, NULL);
}

/* is x a PERMUTE that swaps its last two dims only? */
static int is_last_swap(octx *c, int x) {
    const ir_node *n = nd(c, x);
    if (n->op != IR_OP_PERMUTE || n->ndim < 2) return 0;
    for (int i = 0; i < n->ndim - 2; i++)
        if (n->attrs.perm[i] != i) return 0;
    return n->attrs.perm[n->ndim - 2] == n->ndim - 1 && n->attrs.perm[n->ndim - 1] == n->ndim - 2;
}

int fe_ox_b_matmul(octx *c, int a, int b, int ta, int tb, double alpha) {
    if (a < 0 || b < 0) return -1;
    /* operands scaled (q * s, k^T * s of an exported scaled_dot_product_attention) or
     * transposed in their last two dims: alpha and trans_a/trans_b take them */
    for (int k = 0; k < 2; k++) {
        int *x = k ? &b : &a, *t = k ? &tb : &ta;
        for (;;) {
            if (nd(c, *x)->op == IR_OP_SCALE) alpha *= nd(c, *x)->attrs.alpha, *x = nd(c, *x)->inputs[0];
            else if (is_last_swap(c, *x)) *x = nd(c, *x)->inputs[0], *t = !*t;
            else break;
        }
    }
    ir_attrs at = {0};
    at.trans_a = ta;
    at.trans_b = tb;
    at.alpha = alpha;
    int in[2] = {a, b};
    return fe_ox_b_node(c, IR_OP_MATMUL, in, 2, &at, 0, NULL);
}

static int try_gelu(octx *c, int r);

/* x * alpha, folded into a MATMUL or SCALE it follows */
int fe_ox_b_scale(octx *c, int x, double alpha) {
    if (x < 0) return -1;
    if (alpha == 1.0) return x;
    const ir_node *n = nd(c, x);
    if (n->op == IR_OP_MATMUL)
        return fe_ox_b_matmul(c, n->inputs[0], n->inputs[1], n->attrs.trans_a, n->attrs.trans_b, n->attrs.alpha * alpha);
    if (n->op == IR_OP_SCALE) return fe_ox_b_scale(c, n->inputs[0], n->attrs.alpha * alpha);
    ir_attrs a = {0};
    a.alpha = alpha;
    int y = fe_ox_b_node(c, IR_OP_SCALE, &x, 1, &a, 0, NULL);
    return y < 0 ? -1 : try_gelu(c, y);
}

static int try_layer_norm(octx *c, int r);

/* Elementwise binary op; the full-size operand goes first for ADD and MUL (bias adds then
 * read add(matmul, bias) as the YAML frontend builds them). */
int fe_ox_b_binary(octx *c, ir_op op, int a, int b) {
    if (a < 0 || b < 0) return -1;
    if ((op == IR_OP_ADD || op == IR_OP_MUL) && ir_numel(nd(c, a)) < ir_numel(nd(c, b)) &&
        nd(c, a)->ndim <= nd(c, b)->ndim) {
        int t = a;
        a = b, b = t;
    }
    int in[2] = {a, b};
    int y = fe_ox_b_node(c, op, in, 2, NULL, 0, NULL);
    if (y < 0) return -1;
    if (op == IR_OP_ADD) return try_layer_norm(c, y);
    if (op == IR_OP_MUL) return try_gelu(c, y);
    return y;
}

/* ---- pattern recovery ------------------------------------------------------------------- */

/* Collects the factors of a product tree of MUL/SCALE/scalar CONST under r (depth <= 3). */
static void product(octx *c, int r, int depth, double *k, int *f, int *nf) {
    const ir_node *n = nd(c, r);
    double v;
    if (is_scalar_const(c, r, &v)) {
        *k *= v;
    } else if (n->op == IR_OP_SCALE && depth < 3) {
        *k *= n->attrs.alpha;
        product(c, n->inputs[0], depth + 1, k, f, nf);
    } else if (n->op == IR_OP_MUL && depth < 3) {
        product(c, n->inputs[0], depth + 1, k, f, nf);
        product(c, n->inputs[1], depth + 1, k, f, nf);
    } else if (*nf < 4) {
        f[(*nf)++] = r;
    } else {
        *nf = 5; /* too many: no match */
    }
}

/* The tanh GELU has no Tanh op in the IR to lower to: a Tanh node whose input is
 * sqrt(2/pi) * (x + 0.044715 x^3) becomes a marker, ERF(x) with attrs.gelu_tanh = 1, which
 * only the pattern below reads; prune() refuses a graph where a marker outlived it. */
int fe_ox_is_tanh_marker(octx *c, int id) {
    return nd(c, id)->op == IR_OP_ERF && nd(c, id)->attrs.gelu_tanh;
}

/* 1 + erf(x / sqrt 2) or 1 + tanh-marker(x), in either order: returns x (*tanh set), else -1 */
static int gelu_term(octx *c, int id, int *tanh) {
    const ir_node *n = nd(c, id);
    if (n->op != IR_OP_ADD) return -1;
    double one;
    int e = n->inputs[0], k = n->inputs[1];
    if (is_scalar_const(c, e, NULL)) e = n->inputs[1], k = n->inputs[0];
    if (!is_scalar_const(c, k, &one) || !near(one, 1.0) || nd(c, e)->op != IR_OP_ERF) return -1;
    if ((*tanh = fe_ox_is_tanh_marker(c, e))) return nd(c, e)->inputs[0];
    const ir_node *u = nd(c, nd(c, e)->inputs[0]);
    if (u->op != IR_OP_SCALE || !near(u->attrs.alpha, M_SQRT1_2)) return -1;
    return u->inputs[0];
}

/* 0.5 * x * (1 + erf(x / sqrt 2)) in any association -> GELU(x); the same with the tanh
 * marker -> GELU(x) with gelu_tanh */
static int try_gelu(octx *c, int r) {
    double k = 1;
    int f[5], nf = 0;
    product(c, r, 0, &k, f, &nf);
    if (nf != 2 || !near(k, 0.5)) return r;
    for (int i = 0; i < 2; i++) {
        int tanh = 0, x = gelu_term(c, f[i], &tanh);
        if (x >= 0 && x == f[1 - i]) {
            ir_attrs a = {0};
            a.gelu_tanh = tanh;
            return fe_ox_b_node(c, IR_OP_GELU, &x, 1, &a, 0, NULL);
        }
    }
    return r;
}

/* sqrt(2/pi) * (x + 0.044715 * x^3), each product in any association: returns x, else -1 */
int fe_ox_tanh_gelu_arg(octx *c, int u) {
    double k = 1;
    int f[5], nf = 0;
    product(c, u, 0, &k, f, &nf);
    if (nf != 1 || !near(k, sqrt(2.0 / M_PI)) || nd(c, f[0])->op != IR_OP_ADD) return -1;
    const ir_node *add = nd(c, f[0]);
    for (int i = 0; i < 2; i++) {
        int x = add->inputs[i], cube[5], ncube = 0;
        double k3 = 1;
        product(c, add->inputs[1 - i], 0, &k3, cube, &ncube);
        if (ncube == 3 && near(k3, 0.044715) && cube[0] == x && cube[1] == x && cube[2] == x) return x;
    }
    return -1;
}

static int is_mean_last(octx *c, int id, int x) {
    const ir_node *n = nd(c, id);
    return n->op == IR_OP_REDUCE_MEAN && n->inputs[0] == x && n->attrs.axis == nd(c, x)->ndim - 1;
}

/* x - mean(x) over the last dim: returns x, else -1 */
static int centered(octx *c, int id) {
    const ir_node *n = nd(c, id);
    if (n->op != IR_OP_SUB) return -1;
    int x = n->inputs[0];
    return is_mean_last(c, n->inputs[1], x) ? x : -1;
}

static int is_vec(octx *c, int id, int64_t dim) {
    const ir_node *n = nd(c, id);
    return n->ndim == 1 && n->shape[0] == dim && (n->op == IR_OP_WEIGHT || n->op == IR_OP_CONST);
}

/* (x - mean) / sqrt(mean((x - mean)^2) + eps) * gamma + beta  ->  LAYER_NORM(x, gamma, beta) */
static int try_layer_norm(octx *c, int r) {
    const ir_node *add = nd(c, r);
    int mul = add->inputs[0], beta = add->inputs[1];
    if (nd(c, mul)->op != IR_OP_MUL) return r;
    int dv = nd(c, mul)->inputs[0], gamma = nd(c, mul)->inputs[1];
    if (nd(c, dv)->op != IR_OP_DIV) return r;
    int s = nd(c, dv)->inputs[0], sd = nd(c, dv)->inputs[1];
    int x = centered(c, s);
    if (x < 0 || nd(c, sd)->op != IR_OP_SQRT) return r;
    const ir_node *ve = nd(c, nd(c, sd)->inputs[0]);
    if (ve->op != IR_OP_ADD) return r;
    int var = ve->inputs[0], epsn = ve->inputs[1];
    double eps;
    if (is_scalar_const(c, var, NULL)) var = ve->inputs[1], epsn = ve->inputs[0];
    if (!is_scalar_const(c, epsn, &eps) || !(eps > 0)) return r;
    const ir_node *vn = nd(c, var);
    if (vn->op != IR_OP_REDUCE_MEAN || vn->attrs.axis != vn->ndim - 1) return r;
    const ir_node *sq = nd(c, vn->inputs[0]);
    if (sq->op != IR_OP_MUL || sq->inputs[0] != sq->inputs[1]) return r;
    if (sq->inputs[0] != s && centered(c, sq->inputs[0]) != x) return r;
    int64_t dim = nd(c, x)->shape[nd(c, x)->ndim - 1];
    if (!is_vec(c, gamma, dim) || !is_vec(c, beta, dim) || !ir_same_shape(nd(c, x), add)) return r;
    ir_attrs a = {0};
    a.eps = eps;
    int in[3] = {x, gamma, beta};
    return fe_ox_b_node(c, IR_OP_LAYER_NORM, in, 3, &a, 0, NULL);
}

/* ---- materializing values --------------------------------------------------------------- */

/* The IR node of v: a constant becomes a leaf (trainable WEIGHT for weights, CONST when all
 * elements are equal, else a fixed WEIGHT holding the data). */
int fe_ox_ir_of(octx *c, oval *v) {
    if (c->failed) return -1;
    if (v->ir >= 0) return v->ir;
    if (v->kind != VAL_CONST) return fe_ox_fail(c, "value '%s' is not defined", v->name);
    if (!v->f) return fe_ox_fail(c, "integer tensor '%s' used as data is not supported", v->name);
    if (v->numel == 0) return fe_ox_fail(c, "empty tensor '%s' used as data", v->name);
    int uniform = !v->weight;
    for (int64_t k = 1; uniform && k < v->numel; k++) uniform = v->f[k] == v->f[0];
    int id;
    if (uniform) {
        id = fe_ox_b_const(c, v->f[0], v->ndim, v->shape);
    } else {
        static const char *const reserved[] = {"images", "labels", "logits", "loss", "opt"};
        for (size_t k = 0; k < sizeof reserved / sizeof *reserved; k++)
            if (strcmp(v->name, reserved[k]) == 0)
                return fe_ox_fail(c, "tensor '%s' has a name deitc keeps for its own inputs and outputs", v->name);
        id = fe_ox_check_ir(c, ir_leaf(c->g, IR_OP_WEIGHT, IR_F32, v->ndim, v->shape, v->name, here(c)));
        if (id < 0) return -1;
        c->g->nodes[id].data = v->f; /* copied into the arena of the final graph */
        if (v->weight) c->g->nodes[id].flags |= IR_NODE_TRAINABLE;
    }
    v->ir = id;
    return id;
}

#else
typedef int fe_onnx_not_built; /* ISO C wants a translation unit to declare something */
#endif
