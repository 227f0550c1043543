/* layers.c: IR for the DeiT layers, written once so that the YAML and the ONNX frontend build
 * identical graphs. Each builder follows timm's module of the same name (vision_transformer.py)
 * and names its weights as timm does: NAME.weight, NAME.bias, NAME.proj.weight ...
 *
 * Invariants: every node made here has numel <= FE_MAX_NUMEL (checked right after it is made,
 * so that no later product of dims can overflow), and every MATMUL sets alpha explicitly.
 */
#include "frontend/frontend.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#define FE_MAX_NUMEL ((int64_t)1 << 40) /* elements in one tensor: far beyond any real model */

/* Formats an error about location loc into g->error; returns -1. */
static int layer_error(ir_graph *g, ir_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int layer_error(ir_graph *g, ir_loc loc, const char *fmt, ...) {
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    ir_loc_format(g->error, sizeof g->error, loc, "%s", why);
    return -1;
}

/* Accepts the node just made (id), or drops it if its tensor is absurdly large. */
static int checked(ir_graph *g, int id) {
    if (id < 0) return -1;
    const ir_node *n = &g->nodes[id];
    int64_t k = 1;
    for (int i = 0; i < n->ndim; i++)
        if (__builtin_mul_overflow(k, n->shape[i], &k) || k > FE_MAX_NUMEL) {
            char s[128];
            ir_shape_str(n, s, sizeof s);
            ir_loc loc = n->loc;
            const char *name = n->name ? n->name : ir_op_name(n->op);
            layer_error(g, loc, "%s: tensor %s is too large (more than 2^40 elements)", name, s);
            g->n--; /* the last node; its arena strings stay until the graph is freed */
            return -1;
        }
    return id;
}

/* name + suffix in the graph's arena ("blocks.0.attn" ".qkv" -> "blocks.0.attn.qkv") */
static const char *sub(ir_graph *g, const char *name, const char *suffix) {
    if (!name || !*name) return ir_arena_strdup(&g->arena, suffix[0] == '.' ? suffix + 1 : suffix);
    return ir_arena_printf(&g->arena, "%s%s", name, suffix);
}

static int add(ir_graph *g, ir_op op, const int *in, int nin, const ir_attrs *a, int ndim,
               const int64_t *shape, const char *name, ir_loc loc) {
    ir_dtype t = nin && in[0] >= 0 && in[0] < g->n ? g->nodes[in[0]].dtype : IR_F32;
    return checked(g, ir_add(g, op, in, nin, a, t, ndim, shape, name, loc));
}

static int unary(ir_graph *g, ir_op op, int x, const ir_attrs *a, const char *name, ir_loc loc) {
    return add(g, op, &x, 1, a, 0, NULL, name, loc);
}

static int binary(ir_graph *g, ir_op op, int x, int y, const ir_attrs *a, const char *name,
                  ir_loc loc) {
    int in[2] = {x, y};
    return add(g, op, in, 2, a, 0, NULL, name, loc);
}

static int reshape(ir_graph *g, int x, int ndim, const int64_t *shape, const char *name,
                   ir_loc loc) {
    return add(g, IR_OP_RESHAPE, &x, 1, NULL, ndim, shape, name, loc);
}

static int matmul(ir_graph *g, int a, int b, int trans_b, double alpha, const char *name,
                  ir_loc loc) {
    ir_attrs at = {0};
    at.trans_b = trans_b;
    at.alpha = alpha;
    return binary(g, IR_OP_MATMUL, a, b, &at, name, loc);
}

static const ir_node *node(const ir_graph *g, int x) { return &g->nodes[x]; }

/* x must be a [B,N,D] token tensor (what every transformer layer takes) */
static int want_tokens(ir_graph *g, int x, const char *what, ir_loc loc) {
    if (x < 0) return -1;
    const ir_node *n = node(g, x);
    if (n->ndim == 3) return 0;
    char s[128];
    return layer_error(g, loc, "%s expects tokens [B,N,D], got %s", what,
                       ir_shape_str(n, s, sizeof s));
}

int fe_weight(ir_graph *g, const char *name, int ndim, const int64_t *shape, ir_init init,
              double std, ir_loc loc) {
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0)
            return layer_error(g, loc, "weight %s: dimension %d is %lld", name, i,
                               (long long)shape[i]);
    int id = checked(g, ir_leaf(g, IR_OP_WEIGHT, IR_F32, ndim, shape, name, loc));
    if (id >= 0) {
        g->nodes[id].flags |= IR_NODE_TRAINABLE;
        g->nodes[id].attrs.init = init;
        g->nodes[id].attrs.init_std = std;
    }
    return id;
}

int fe_linear(ir_graph *g, int x, int64_t in, int64_t out, int bias, const char *name, ir_loc loc) {
    if (x < 0) return -1;
    const ir_node *n = node(g, x);
    char s[128];
    if (n->ndim < 2 || n->shape[n->ndim - 1] != in)
        return layer_error(g, loc, "linear '%s' expects [...,%lld], got %s", name ? name : "",
                           (long long)in, ir_shape_str(n, s, sizeof s));
    int64_t ws[2] = {out, in};
    int w = fe_weight(g, sub(g, name, ".weight"), 2, ws, IR_INIT_TRUNC_NORMAL, FE_INIT_STD, loc);
    if (w < 0) return -1;
    int y = matmul(g, x, w, 1, 1.0, name, loc);
    if (y < 0 || !bias) return y;
    int b = fe_weight(g, sub(g, name, ".bias"), 1, &out, IR_INIT_ZEROS, 0, loc);
    if (b < 0) return -1;
    return binary(g, IR_OP_ADD, y, b, NULL, name, loc);
}

int fe_layer_norm(ir_graph *g, int x, int64_t dim, double eps, const char *name, ir_loc loc) {
    if (x < 0) return -1;
    const ir_node *n = node(g, x);
    char s[128];
    if (n->ndim < 1 || n->shape[n->ndim - 1] != dim)
        return layer_error(g, loc, "layer_norm '%s' expects [...,%lld], got %s", name ? name : "",
                           (long long)dim, ir_shape_str(n, s, sizeof s));
    if (!(eps > 0) || !isfinite(eps))
        return layer_error(g, loc, "layer_norm '%s': eps must be a positive number, got %g",
                           name ? name : "", eps);
    int gamma = fe_weight(g, sub(g, name, ".weight"), 1, &dim, IR_INIT_ONES, 0, loc);
    if (gamma < 0) return -1;
    int beta = fe_weight(g, sub(g, name, ".bias"), 1, &dim, IR_INIT_ZEROS, 0, loc);
    if (beta < 0) return -1;
    ir_attrs a = {0};
    a.eps = eps;
    int in[3] = {x, gamma, beta};
    return add(g, IR_OP_LAYER_NORM, in, 3, &a, 0, NULL, name, loc);
}

int fe_attention(ir_graph *g, int x, int64_t dim, int64_t heads, int qkv_bias, const char *name,
                 ir_loc loc) {
    if (want_tokens(g, x, "attention", loc)) return -1;
    if (heads <= 0 || dim % heads)
        return layer_error(g, loc, "attention '%s': dim %lld is not divisible by %lld heads",
                           name ? name : "", (long long)dim, (long long)heads);
    int64_t B = node(g, x)->shape[0], N = node(g, x)->shape[1], hd = dim / heads;
    int qkv = fe_linear(g, x, dim, 3 * dim, qkv_bias, sub(g, name, ".qkv"), loc);
    if (qkv < 0) return -1;
    /* [B,N,3D] -> [B,N,3,H,hd] -> [3,B,H,N,hd] */
    int64_t s5[5] = {B, N, 3, heads, hd};
    int t = reshape(g, qkv, 5, s5, sub(g, name, ".qkv_heads"), loc);
    ir_attrs p = {0};
    const int64_t perm5[5] = {2, 0, 3, 1, 4};
    memcpy(p.perm, perm5, sizeof perm5);
    t = t < 0 ? -1 : unary(g, IR_OP_PERMUTE, t, &p, sub(g, name, ".qkv_perm"), loc);
    if (t < 0) return -1;
    int qkvs[3];
    static const char *const part[3] = {".q", ".k", ".v"};
    for (int i = 0; i < 3; i++) {
        ir_attrs sl = {0};
        sl.axis = 0;
        sl.start = i;
        sl.end = i + 1;
        int s = unary(g, IR_OP_SLICE, t, &sl, sub(g, name, part[i]), loc);
        int64_t s4[4] = {B, heads, N, hd};
        qkvs[i] = s < 0 ? -1 : reshape(g, s, 4, s4, sub(g, name, part[i]), loc);
        if (qkvs[i] < 0) return -1;
    }
    /* timm: scale = head_dim ** -0.5, applied to q @ k^T */
    int att = matmul(g, qkvs[0], qkvs[1], 1, pow((double)hd, -0.5), sub(g, name, ".scores"), loc);
    att = att < 0 ? -1 : unary(g, IR_OP_SOFTMAX, att, NULL, sub(g, name, ".probs"), loc);
    int y = att < 0 ? -1 : matmul(g, att, qkvs[2], 0, 1.0, sub(g, name, ".context"), loc);
    if (y < 0) return -1;
    /* [B,H,N,hd] -> [B,N,H,hd] -> [B,N,D] */
    ir_attrs p2 = {0};
    const int64_t perm4[4] = {0, 2, 1, 3};
    memcpy(p2.perm, perm4, sizeof perm4);
    y = unary(g, IR_OP_PERMUTE, y, &p2, sub(g, name, ".context_perm"), loc);
    int64_t s3[3] = {B, N, dim};
    y = y < 0 ? -1 : reshape(g, y, 3, s3, sub(g, name, ".context_merge"), loc);
    if (y < 0) return -1;
    return fe_linear(g, y, dim, dim, 1, sub(g, name, ".proj"), loc);
}

int fe_mlp(ir_graph *g, int x, int64_t dim, int64_t hidden, int gelu_tanh, const char *name,
           ir_loc loc) {
    if (x < 0) return -1;
    int h = fe_linear(g, x, dim, hidden, 1, sub(g, name, ".fc1"), loc);
    if (h < 0) return -1;
    ir_attrs a = {0};
    a.gelu_tanh = gelu_tanh;
    h = unary(g, IR_OP_GELU, h, &a, sub(g, name, ".act"), loc);
    if (h < 0) return -1;
    return fe_linear(g, h, hidden, dim, 1, sub(g, name, ".fc2"), loc);
}

int fe_patch_embed(ir_graph *g, int images, int64_t in_chans, int64_t patch, int64_t dim,
                   const char *name, ir_loc loc) {
    if (images < 0) return -1;
    const ir_node *n = node(g, images);
    char s[128];
    if (n->ndim != 4 || n->shape[1] != in_chans || patch <= 0 || n->shape[2] % patch ||
        n->shape[3] % patch)
        return layer_error(g, loc,
                           "patch_embed '%s' expects images [B,%lld,H,W] with H and W divisible "
                           "by patch %lld, got %s",
                           name ? name : "", (long long)in_chans, (long long)patch,
                           ir_shape_str(n, s, sizeof s));
    /* the weight first: its checked numel bounds C*P*P below */
    int64_t ws[4] = {dim, in_chans, patch, patch};
    int w = fe_weight(g, sub(g, name, ".proj.weight"), 4, ws, IR_INIT_TRUNC_NORMAL, FE_INIT_STD, loc);
    if (w < 0) return -1;
    int64_t w2[2] = {dim, in_chans * patch * patch};
    w = reshape(g, w, 2, w2, sub(g, name, ".proj.weight_2d"), loc);
    ir_attrs a = {0};
    a.patch = patch;
    int p = w < 0 ? -1 : unary(g, IR_OP_PATCHIFY, images, &a, sub(g, name, ".patches"), loc);
    int y = p < 0 ? -1 : matmul(g, p, w, 1, 1.0, sub(g, name, ".proj"), loc);
    if (y < 0) return -1;
    int b = fe_weight(g, sub(g, name, ".proj.bias"), 1, &dim, IR_INIT_ZEROS, 0, loc);
    if (b < 0) return -1;
    return binary(g, IR_OP_ADD, y, b, NULL, name, loc);
}

int fe_prepend_tokens(ir_graph *g, int x, const char *const *names, int ntokens, ir_loc loc) {
    if (want_tokens(g, x, "tokens", loc)) return -1;
    if (ntokens < 1 || ntokens >= IR_MAX_INPUTS)
        return layer_error(g, loc, "between 1 and %d tokens can be prepended, not %d",
                           IR_MAX_INPUTS - 1, ntokens);
    int64_t B = node(g, x)->shape[0], D = node(g, x)->shape[2];
    int in[IR_MAX_INPUTS];
    for (int i = 0; i < ntokens; i++) {
        int64_t ws[3] = {1, 1, D};
        int t = fe_weight(g, names[i], 3, ws, IR_INIT_TRUNC_NORMAL, FE_INIT_STD, loc);
        int64_t es[3] = {B, 1, D};
        in[i] = t < 0 ? -1 : add(g, IR_OP_EXPAND, &t, 1, NULL, 3, es, sub(g, names[i], ".expand"),
                                 loc);
        if (in[i] < 0) return -1;
    }
    in[ntokens] = x;
    ir_attrs a = {0};
    a.axis = 1;
    return add(g, IR_OP_CONCAT, in, ntokens + 1, &a, 0, NULL, "tokens", loc);
}

int fe_pos_embed(ir_graph *g, int x, const char *name, ir_loc loc) {
    if (want_tokens(g, x, "pos_embed", loc)) return -1;
    int64_t ws[3] = {1, node(g, x)->shape[1], node(g, x)->shape[2]};
    int w = fe_weight(g, name, 3, ws, IR_INIT_TRUNC_NORMAL, FE_INIT_STD, loc);
    if (w < 0) return -1;
    return binary(g, IR_OP_ADD, x, w, NULL, sub(g, name, ".add"), loc);
}

int fe_select_token(ir_graph *g, int x, int64_t index, const char *name, ir_loc loc) {
    if (want_tokens(g, x, "select_token", loc)) return -1;
    int64_t B = node(g, x)->shape[0], N = node(g, x)->shape[1], D = node(g, x)->shape[2];
    if (index < 0 || index >= N)
        return layer_error(g, loc, "select_token: index %lld outside the %lld tokens",
                           (long long)index, (long long)N);
    ir_attrs a = {0};
    a.axis = 1;
    a.start = index;
    a.end = index + 1;
    const char *nm = name ? name : ir_arena_printf(&g->arena, "token%lld", (long long)index);
    int s = unary(g, IR_OP_SLICE, x, &a, nm, loc);
    int64_t s2[2] = {B, D};
    return s < 0 ? -1 : reshape(g, s, 2, s2, nm, loc);
}

int fe_distilled_head(ir_graph *g, int x, int64_t num_classes, const char *head,
                      const char *head_dist, ir_loc loc) {
    if (want_tokens(g, x, "distilled_head", loc)) return -1;
    int64_t D = node(g, x)->shape[2];
    int c = fe_select_token(g, x, 0, "cls", loc);
    int d = c < 0 ? -1 : fe_select_token(g, x, 1, "dist", loc);
    int yc = d < 0 ? -1 : fe_linear(g, c, D, num_classes, 1, head, loc);
    int yd = yc < 0 ? -1 : fe_linear(g, d, D, num_classes, 1, head_dist, loc);
    int s = yd < 0 ? -1 : binary(g, IR_OP_ADD, yc, yd, NULL, "heads_sum", loc);
    ir_attrs a = {0};
    a.alpha = 0.5;
    return s < 0 ? -1 : unary(g, IR_OP_SCALE, s, &a, "heads_mean", loc);
}
