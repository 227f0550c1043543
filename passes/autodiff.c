/* autodiff.c: reverse-mode differentiation over the IR.
 *
 * pass_autodiff walks the original nodes from the loss back to the first one and appends, for
 * every node on a path from a wrt-node to the loss ("active"), the nodes computing the
 * gradient of each of its active inputs; contributions to a value used several times are
 * summed with ADD. Each op's rule lives in one case of grad_rule() below and reads only the
 * forward values it needs (SOFTMAX_GRAD takes the softmax output y, SQRT's rule takes y, ...).
 * A node with several outputs gets one gradient per output, gathered from the PROJECT nodes
 * that read them (ograd); its rule sees them all at once.
 *
 * Invariants: gradient nodes have the shape and dtype of the value they differentiate; they
 * carry the forward node's source location and the name "d.<forward name>"; node pointers are
 * never held across ir_add (the node array may move).
 */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A SLICE's gradient kept aside until its input is reached, so that slices tiling a value
 * (q, k, v out of qkv) give one CONCAT instead of PADs summed up. */
typedef struct {
    int next;                 /* next entry for the same node, -1 at the end */
    int grad;                 /* gradient of the slice */
    int64_t axis, start, end; /* the SLICE's attributes */
} ad_slice;

typedef struct {
    ir_graph *g;
    int *grad;    /* grad[i]: gradient node of node i, -1 while none */
    int *ograd;   /* ograd[i * IR_MAX_OUTPUTS + k]: gradient of output k of multi-output node
                     i, -1 while none */
    int *slices;  /* slices[i]: first pending ad_slice of node i, -1 when none */
    ad_slice *pend;
    int npend, cappend;
    int failed;   /* a builder failed: g->error holds why */
    ir_loc loc;   /* of the forward node being differentiated */
    const char *name;
} ad_ctx;

/* ---- builders: each returns the new node, or -1 (ctx->failed) ----------------------------- */

static int ad_add(ad_ctx *c, ir_op op, const int *in, int nin, const ir_attrs *a, int ndim,
                  const int64_t *shape) {
    if (c->failed) return -1;
    for (int i = 0; i < nin; i++)
        if (in[i] < 0) return c->failed = 1, -1;
    ir_dtype t = c->g->nodes[in[0]].dtype;
    int id = ir_add(c->g, op, in, nin, a, t, ndim, shape, c->name, c->loc);
    if (id < 0) c->failed = 1;
    return id;
}

static int ad_unary(ad_ctx *c, ir_op op, int x, const ir_attrs *a) {
    return ad_add(c, op, &x, 1, a, 0, NULL);
}

static int ad_binary(ad_ctx *c, ir_op op, int x, int y, const ir_attrs *a) {
    int in[2] = {x, y};
    return ad_add(c, op, in, 2, a, 0, NULL);
}

static int ad_scale(ad_ctx *c, int x, double alpha) {
    ir_attrs a = {0};
    a.alpha = alpha;
    return ad_unary(c, IR_OP_SCALE, x, &a);
}

static int ad_shaped(ad_ctx *c, ir_op op, int x, const ir_attrs *a, const ir_node *like) {
    return ad_add(c, op, &x, 1, a, like->ndim, like->shape);
}

/* d (shaped like a broadcast result) summed back to the shape of `like`: nothing, a RESHAPE
 * when only leading 1-dims differ, else SUM_TO. */
static int sum_to(ad_ctx *c, int d, const ir_node *like) {
    if (d < 0 || c->failed) return -1;
    const ir_node *dn = &c->g->nodes[d];
    if (ir_same_shape(dn, like)) return d;
    if (ir_numel(dn) == ir_numel(like)) return ad_shaped(c, IR_OP_RESHAPE, d, NULL, like);
    return ad_shaped(c, IR_OP_SUM_TO, d, NULL, like);
}

static int matmul(ad_ctx *c, int a, int b, int ta, int tb, double alpha) {
    ir_attrs at = {0};
    at.trans_a = ta;
    at.trans_b = tb;
    at.alpha = alpha;
    return ad_binary(c, IR_OP_MATMUL, a, b, &at);
}

/* [..., R, C] -> [prod(...) * R, C] */
static int flatten_rows(ad_ctx *c, int x) {
    const ir_node *n = &c->g->nodes[x];
    if (n->ndim == 2) return x;
    int64_t s[2] = {ir_numel(n) / n->shape[n->ndim - 1], n->shape[n->ndim - 1]};
    return ad_add(c, IR_OP_RESHAPE, &x, 1, NULL, 2, s);
}

/* Adds contribution d to the gradient of node x. */
static void accumulate(ad_ctx *c, int x, int d) {
    if (d < 0 || c->failed) return;
    c->grad[x] = c->grad[x] < 0 ? d : ad_binary(c, IR_OP_ADD, c->grad[x], d, NULL);
}

/* Adds contribution d to the gradient of output k of multi-output node x. */
static void accumulate_output(ad_ctx *c, int x, int k, int d) {
    if (d < 0 || c->failed) return;
    int *at = &c->ograd[x * IR_MAX_OUTPUTS + k];
    *at = *at < 0 ? d : ad_binary(c, IR_OP_ADD, *at, d, NULL);
}

static int project(ad_ctx *c, int x, int k) {
    ir_attrs a = {0};
    a.output = k;
    return ad_unary(c, IR_OP_PROJECT, x, &a);
}

/* ---- LAYER_NORM_STATS --------------------------------------------------------------------- *
 * y = (x - mean) * rstd * gamma + beta, with outputs (y, mean, rstd). From dy: dx by
 * LAYER_NORM_DX_STATS with the forward's statistics, dgamma, dbeta as LAYER_NORM's. From the
 * statistics themselves (rare; a loss that reads them): d mean / dx_j = 1/C and
 * d rstd / dx_j = -rstd^3 (x_j - mean) / C. */
static void grad_layer_norm_stats(ad_ctx *c, const ir_node *n, int self, const int *active) {
    int x = n->inputs[0], gamma = n->inputs[1], beta = n->inputs[2];
    int dy = c->ograd[self * IR_MAX_OUTPUTS], dmean = c->ograd[self * IR_MAX_OUTPUTS + 1];
    int drstd = c->ograd[self * IR_MAX_OUTPUTS + 2];
    const ir_node xn = c->g->nodes[x];
    double inv_c = 1.0 / (double)xn.shape[xn.ndim - 1];
    ir_attrs a = {0};
    a.eps = n->attrs.eps;
    int need_stats = (dy >= 0 && active[x]) || drstd >= 0;
    int mean = need_stats ? project(c, self, 1) : -1, rstd = need_stats ? project(c, self, 2) : -1;
    if (dy >= 0) {
        if (active[x]) {
            int in[5] = {dy, x, gamma, mean, rstd};
            accumulate(c, x, ad_add(c, IR_OP_LAYER_NORM_DX_STATS, in, 5, &a, 0, NULL));
        }
        if (active[gamma]) accumulate(c, gamma, ad_binary(c, IR_OP_LAYER_NORM_DGAMMA, dy, x, &a));
        if (active[beta]) accumulate(c, beta, sum_to(c, dy, &c->g->nodes[beta]));
    }
    if (!active[x]) return;
    if (dmean >= 0) accumulate(c, x, ad_shaped(c, IR_OP_EXPAND, ad_scale(c, dmean, inv_c), NULL, &xn));
    if (drstd >= 0) {
        int r3 = ad_binary(c, IR_OP_MUL, ad_binary(c, IR_OP_MUL, rstd, rstd, NULL), rstd, NULL);
        int t = ad_binary(c, IR_OP_MUL, drstd, r3, NULL);
        int centered = ad_binary(c, IR_OP_SUB, x, mean, NULL);
        accumulate(c, x, ad_scale(c, ad_binary(c, IR_OP_MUL, centered, t, NULL), -inv_c));
    }
}

/* ---- ATTENTION ---------------------------------------------------------------------------- *
 * (O, LSE) = attention(qkv): d qkv = ATTENTION_BWD(dO, qkv, O, LSE), which recomputes the
 * probabilities from qkv and the forward's LSE. LSE is a by-product kept for the backward; a
 * loss that reads it has no rule here (refused). */
static int grad_attention(ad_ctx *c, const ir_node *n, int self, const int *active) {
    int qkv = n->inputs[0], dO = c->ograd[self * IR_MAX_OUTPUTS];
    if (c->ograd[self * IR_MAX_OUTPUTS + 1] >= 0) {
        snprintf(c->g->error, sizeof c->g->error, "attention '%s': no derivative rule for its log-sum-exp "
                 "output (node %%%d)", n->name ? n->name : "", self);
        return -1;
    }
    if (dO < 0 || !active[qkv]) return 0;
    ir_attrs a = {0};
    a.heads = n->attrs.heads;
    a.alpha = n->attrs.alpha;
    int in[4] = {dO, qkv, project(c, self, 0), project(c, self, 1)};
    accumulate(c, qkv, ad_add(c, IR_OP_ATTENTION_BWD, in, 4, &a, 0, NULL));
    return c->failed ? -1 : 0;
}

/* ---- MATMUL ------------------------------------------------------------------------------ *
 * y = alpha * op(A) @ op(B). With A' = op(A), B' = op(B): dA' = alpha dy B'^T, dB' = alpha A'^T dy,
 * and dA = dA' or its transpose. A 2-D operand shared by a batched product gets its gradient
 * summed over the batch: as one MATMUL over [batch*rows, K] views when the layout allows (the
 * GEMM the GPU wants), else a batched MATMUL and SUM_TO. */
static void grad_matmul(ad_ctx *c, const ir_node *n, int self, const int *active) {
    int dy = c->grad[self], A = n->inputs[0], B = n->inputs[1];
    int ta = n->attrs.trans_a, tb = n->attrs.trans_b;
    double al = n->attrs.alpha;
    ir_node an = c->g->nodes[A], bn = c->g->nodes[B], yn = *n;
    int batched = yn.ndim > 2;
    if (active[A]) {
        int d; /* a 2-D A under a batched B is rare (x @ W^T puts weights second): batched + SUM_TO */
        if (!ta)
            d = matmul(c, dy, B, 0, !tb, al);
        else
            d = matmul(c, B, dy, tb, 1, al);
        accumulate(c, A, sum_to(c, d, &an));
    }
    if (active[B]) {
        int d;
        int a_full = an.ndim == yn.ndim; /* A carries all of y's batch dims (not broadcast) */
        for (int i = 0; a_full && i < yn.ndim - 2; i++) a_full = an.shape[i] == yn.shape[i];
        if (batched && bn.ndim == 2 && !ta && a_full) {
            /* weight shared across the batch: dB from [batch*M, K] and [batch*M, N] views */
            int a2 = flatten_rows(c, A), dy2 = flatten_rows(c, dy);
            d = tb ? matmul(c, dy2, a2, 1, 0, al) : matmul(c, a2, dy2, 1, 0, al);
        } else if (!tb) {
            d = matmul(c, A, dy, !ta, 0, al);
        } else {
            d = matmul(c, dy, A, 1, ta, al);
        }
        accumulate(c, B, sum_to(c, d, &bn));
    }
}

/* ---- the derivative rule of every op ------------------------------------------------------ */

/* Appends the gradients of node `self`'s active inputs, given its gradient c->grad[self].
 * Returns 0, or -1 with g->error set when the op has no derivative rule. */
static int grad_rule(ad_ctx *c, int self, const int *active) {
    ir_graph *g = c->g;
    const ir_node node = g->nodes[self]; /* a copy: g->nodes moves as nodes are added */
    const ir_node *n = &node;
    int dy = c->grad[self];
    int x = n->ninputs > 0 ? n->inputs[0] : -1, y = n->ninputs > 1 ? n->inputs[1] : -1;
    ir_node xn = x >= 0 ? g->nodes[x] : node, yn = y >= 0 ? g->nodes[y] : node;
    int ax = x >= 0 && active[x], ay = y >= 0 && active[y];
    ir_attrs a = {0};

    switch (n->op) {
    case IR_OP_ADD:
        if (ax) accumulate(c, x, sum_to(c, dy, &xn));
        if (ay) accumulate(c, y, sum_to(c, dy, &yn));
        break;
    case IR_OP_SUB:
        if (ax) accumulate(c, x, sum_to(c, dy, &xn));
        if (ay) accumulate(c, y, ad_scale(c, sum_to(c, dy, &yn), -1.0));
        break;
    case IR_OP_MUL:
        if (ax) accumulate(c, x, sum_to(c, ad_binary(c, IR_OP_MUL, dy, y, NULL), &xn));
        if (ay) accumulate(c, y, sum_to(c, ad_binary(c, IR_OP_MUL, dy, x, NULL), &yn));
        break;
    case IR_OP_DIV: /* out = x / y: dx = dy / y, dy' = -dy * out / y */
        if (ax) accumulate(c, x, sum_to(c, ad_binary(c, IR_OP_DIV, dy, y, NULL), &xn));
        if (ay) {
            int t = ad_binary(c, IR_OP_DIV, ad_binary(c, IR_OP_MUL, dy, self, NULL), y, NULL);
            accumulate(c, y, ad_scale(c, sum_to(c, t, &yn), -1.0));
        }
        break;
    case IR_OP_SCALE:
        if (ax) accumulate(c, x, ad_scale(c, dy, n->attrs.alpha));
        break;
    case IR_OP_SQRT: /* d sqrt(x) = dy / (2 sqrt(x)): uses the output */
        if (ax) accumulate(c, x, ad_scale(c, ad_binary(c, IR_OP_DIV, dy, self, NULL), 0.5));
        break;
    case IR_OP_ERF:
        if (ax) accumulate(c, x, ad_binary(c, IR_OP_ERF_GRAD, dy, x, NULL));
        break;
    case IR_OP_GELU:
        a.gelu_tanh = n->attrs.gelu_tanh;
        if (ax) accumulate(c, x, ad_binary(c, IR_OP_GELU_GRAD, dy, x, &a));
        break;
    case IR_OP_CAST: /* back to the input's dtype */
        if (ax) {
            int in[1] = {dy};
            int id = c->failed ? -1
                               : ir_add(g, IR_OP_CAST, in, 1, NULL, xn.dtype, 0, NULL, c->name, c->loc);
            if (id < 0) c->failed = 1;
            accumulate(c, x, id);
        }
        break;
    case IR_OP_RESHAPE:
        if (ax) accumulate(c, x, ad_shaped(c, IR_OP_RESHAPE, dy, NULL, &xn));
        break;
    case IR_OP_PERMUTE:
        for (int i = 0; i < n->ndim; i++) a.perm[n->attrs.perm[i]] = i;
        if (ax) accumulate(c, x, ad_unary(c, IR_OP_PERMUTE, dy, &a));
        break;
    case IR_OP_FLIP_BATCH: /* its own adjoint */
        if (ax) accumulate(c, x, ad_unary(c, IR_OP_FLIP_BATCH, dy, NULL));
        break;
    case IR_OP_EXPAND:
        if (ax) accumulate(c, x, sum_to(c, dy, &xn));
        break;
    case IR_OP_SUM_TO:
        if (ax) accumulate(c, x, ad_shaped(c, IR_OP_EXPAND, dy, NULL, &xn));
        break;
    case IR_OP_CONCAT: {
        int64_t at = 0;
        for (int k = 0; k < n->ninputs; k++) {
            int in = n->inputs[k];
            int64_t len = g->nodes[in].shape[n->attrs.axis];
            if (active[in]) {
                a.axis = n->attrs.axis;
                a.start = at;
                a.end = at + len;
                accumulate(c, in, len == n->shape[a.axis] ? dy : ad_unary(c, IR_OP_SLICE, dy, &a));
            }
            at += len;
        }
        break;
    }
    case IR_OP_SLICE: /* PAD, or a part of a CONCAT: see finish_slices() */
        if (ax) {
            if (c->npend == c->cappend) {
                c->cappend = c->cappend ? 2 * c->cappend : 64;
                c->pend = realloc(c->pend, sizeof(ad_slice) * (size_t)c->cappend);
                if (!c->pend) abort();
            }
            c->pend[c->npend] = (ad_slice){c->slices[x], dy, n->attrs.axis, n->attrs.start, n->attrs.end};
            c->slices[x] = c->npend++;
        }
        break;
    case IR_OP_PAD:
        a.axis = n->attrs.axis;
        a.start = n->attrs.start;
        a.end = n->attrs.end;
        if (ax) accumulate(c, x, ad_unary(c, IR_OP_SLICE, dy, &a));
        break;
    case IR_OP_PATCHIFY:
        a.patch = n->attrs.patch;
        if (ax) accumulate(c, x, ad_shaped(c, IR_OP_UNPATCHIFY, dy, &a, &xn));
        break;
    case IR_OP_UNPATCHIFY:
        a.patch = n->attrs.patch;
        if (ax) accumulate(c, x, ad_unary(c, IR_OP_PATCHIFY, dy, &a));
        break;
    case IR_OP_MATMUL:
        grad_matmul(c, n, self, active);
        break;
    case IR_OP_REDUCE_MEAN:
        if (ax)
            accumulate(c, x, ad_shaped(c, IR_OP_EXPAND,
                                       ad_scale(c, dy, 1.0 / (double)xn.shape[n->attrs.axis]), NULL,
                                       &xn));
        break;
    case IR_OP_LAYER_NORM: {
        int gamma = n->inputs[1], beta = n->inputs[2];
        a.eps = n->attrs.eps;
        if (ax) {
            int in[3] = {dy, x, gamma};
            accumulate(c, x, ad_add(c, IR_OP_LAYER_NORM_DX, in, 3, &a, 0, NULL));
        }
        if (active[gamma]) accumulate(c, gamma, ad_binary(c, IR_OP_LAYER_NORM_DGAMMA, dy, x, &a));
        if (active[beta]) accumulate(c, beta, sum_to(c, dy, &g->nodes[beta]));
        break;
    }
    case IR_OP_PROJECT: /* its node's rule takes the gradient of each output */
        accumulate_output(c, x, n->attrs.output, dy);
        break;
    case IR_OP_LAYER_NORM_STATS:
        grad_layer_norm_stats(c, n, self, active);
        break;
    case IR_OP_ATTENTION:
        if (grad_attention(c, n, self, active)) return -1;
        break;
    case IR_OP_SOFTMAX: /* uses the output y, not the input */
        if (ax) accumulate(c, x, ad_binary(c, IR_OP_SOFTMAX_GRAD, dy, self, NULL));
        break;
    case IR_OP_CROSS_ENTROPY:
        a.smoothing = n->attrs.smoothing;
        if (ax) {
            int in[4] = {dy, x, y, n->inputs[2]};
            int id = c->failed ? -1
                               : ir_add(g, IR_OP_CROSS_ENTROPY_GRAD, in, 4, &a, xn.dtype, 0, NULL,
                                        c->name, c->loc);
            if (id < 0) c->failed = 1;
            accumulate(c, x, id);
        }
        break;
    case IR_OP_SUM_SQUARES: /* d sum(x^2) = 2 x dy */
        for (int k = 0; k < n->ninputs; k++) {
            int in = n->inputs[k];
            if (active[in])
                accumulate(c, in, ad_binary(c, IR_OP_MUL, ad_scale(c, in, 2.0), dy, NULL));
        }
        break;
    /* no derivative: leaves are sources; the backward helper ops are not differentiated again
     * (no second order); the optimizer ops are not differentiable steps */
    case IR_OP_INPUT:
    case IR_OP_WEIGHT:
    case IR_OP_STATE:
    case IR_OP_CONST:
        break;
    case IR_OP_GELU_GRAD:
    case IR_OP_ERF_GRAD:
    case IR_OP_LAYER_NORM_DX:
    case IR_OP_LAYER_NORM_DX_STATS:
    case IR_OP_LAYER_NORM_DGAMMA:
    case IR_OP_SOFTMAX_GRAD:
    case IR_OP_CROSS_ENTROPY_GRAD:
    case IR_OP_CLIP_COEF:
    case IR_OP_ATTENTION_BWD:
    case IR_OP_ADAMW:
    case IR_OP_LOSS_SCALE_OPT:
    case IR_OP_LOSS_SCALE_UPDATE:
    case IR_OP_EMA:
    case IR_OP_COUNT:
        snprintf(g->error, sizeof g->error, "%s '%s': op has no derivative rule (node %%%d)",
                 ir_op_name(n->op), n->name ? n->name : "", self);
        return -1;
    }
    return c->failed ? -1 : 0;
}

/* Adds the pending SLICE gradients of node x to its gradient: one CONCAT when the slices tile
 * x along one axis (at most IR_MAX_INPUTS of them), else a PAD of each. */
static void finish_slices(ad_ctx *c, int x) {
    ad_slice *s[IR_MAX_INPUTS];
    int k = 0, tiles = 1;
    for (int e = c->slices[x]; e >= 0; e = c->pend[e].next) {
        if (k == IR_MAX_INPUTS) {
            tiles = 0;
            break;
        }
        s[k++] = &c->pend[e];
    }
    if (k == 0) return;
    for (int i = 1; i < k; i++) /* insertion sort by start */
        for (int j = i; j > 0 && s[j]->start < s[j - 1]->start; j--) {
            ad_slice *t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
        }
    const ir_node xn = c->g->nodes[x];
    for (int i = 0; i < k && tiles; i++)
        tiles = s[i]->axis == s[0]->axis && s[i]->start == (i ? s[i - 1]->end : 0) &&
                (i < k - 1 || s[i]->end == xn.shape[s[0]->axis]);
    if (tiles) {
        int in[IR_MAX_INPUTS];
        ir_attrs a = {0};
        a.axis = s[0]->axis;
        for (int i = 0; i < k; i++) in[i] = s[i]->grad;
        accumulate(c, x, k == 1 ? in[0] : ad_add(c, IR_OP_CONCAT, in, k, &a, 0, NULL));
    } else {
        for (int e = c->slices[x]; e >= 0; e = c->pend[e].next) {
            ir_attrs a = {0};
            a.axis = c->pend[e].axis;
            a.start = c->pend[e].start;
            a.end = c->pend[e].end;
            accumulate(c, x, ad_shaped(c, IR_OP_PAD, c->pend[e].grad, &a, &xn));
        }
    }
    c->slices[x] = -1;
}

int pass_autodiff(ir_graph *g, int loss, int seed, const int *wrt, int nwrt, int *grads) {
    int n0 = g->n;
    if (loss < 0 || loss >= n0 || seed < 0 || seed >= n0 ||
        !ir_same_shape(&g->nodes[loss], &g->nodes[seed])) {
        snprintf(g->error, sizeof g->error, "autodiff: bad loss %%%d or seed %%%d", loss, seed);
        return -1;
    }
    /* active = depends on a wrt node (forward sweep) and the loss depends on it (backward) */
    char *from_wrt = calloc((size_t)n0, 1), *to_loss = calloc((size_t)n0, 1);
    int *active = calloc((size_t)n0, sizeof(int));
    ad_ctx c = {0};
    c.g = g;
    c.grad = malloc(sizeof(int) * (size_t)n0);
    c.slices = malloc(sizeof(int) * (size_t)n0);
    c.ograd = malloc(sizeof(int) * (size_t)n0 * IR_MAX_OUTPUTS);
    if (!from_wrt || !to_loss || !active || !c.grad || !c.slices || !c.ograd) abort();
    for (int i = 0; i < n0 * IR_MAX_OUTPUTS; i++) c.ograd[i] = -1;
    for (int i = 0; i < nwrt; i++)
        if (wrt[i] >= 0 && wrt[i] < n0) from_wrt[wrt[i]] = 1;
    for (int i = 0; i < n0; i++)
        for (int k = 0; k < g->nodes[i].ninputs && !from_wrt[i]; k++)
            from_wrt[i] = from_wrt[g->nodes[i].inputs[k]];
    to_loss[loss] = 1;
    for (int i = loss; i >= 0; i--)
        if (to_loss[i])
            for (int k = 0; k < g->nodes[i].ninputs; k++) to_loss[g->nodes[i].inputs[k]] = 1;
    for (int i = 0; i < n0; i++) {
        active[i] = from_wrt[i] && to_loss[i];
        c.grad[i] = c.slices[i] = -1;
    }
    int rc = 0;
    if (active[loss]) {
        c.grad[loss] = seed;
        for (int i = loss; i >= 0 && rc == 0; i--) {
            if (!active[i]) continue;
            c.loc = g->nodes[i].loc;
            c.name = g->nodes[i].name ? ir_arena_printf(&g->arena, "d.%s", g->nodes[i].name) : NULL;
            finish_slices(&c, i); /* every user of node i comes later: all its slices are in */
            if (c.failed) rc = -1;
            int has_grad = c.grad[i] >= 0;
            for (int k = 0; k < ir_op_outputs(g->nodes[i].op) && !has_grad; k++)
                has_grad = ir_op_outputs(g->nodes[i].op) > 1 && c.ograd[i * IR_MAX_OUTPUTS + k] >= 0;
            if (rc || !has_grad || ir_op_flags(g->nodes[i].op) & IR_OPF_LEAF) continue;
            rc = grad_rule(&c, i, active);
        }
    }
    for (int i = 0; i < nwrt; i++) grads[i] = rc == 0 && wrt[i] >= 0 && wrt[i] < n0 ? c.grad[wrt[i]] : -1;
    free(from_wrt);
    free(to_loss);
    free(active);
    free(c.grad);
    free(c.slices);
    free(c.ograd);
    free(c.pend);
    return rc;
}
