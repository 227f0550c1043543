/* ir.c: arena, graph construction, the shape rule of every op, and the verifier.
 *
 * Invariants kept here: nodes are in topological order (inputs have smaller indices); every
 * node's shape is what its op's shape rule gives for its inputs; leaf and output names are
 * unique. A builder that is handed inconsistent inputs returns -1 and leaves a message in
 * g->error naming the node and its source location; it never appends a half-made node.
 */
#include "ir/ir.h"

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- op table --------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int arity, outputs;
    unsigned flags;
} op_table[IR_OP_COUNT] = {
#define X(name, text, nin, nout, flags) {text, nin, nout, flags},
#include "ops.def"
#undef X
};

const char *ir_op_name(ir_op op) { return (unsigned)op < IR_OP_COUNT ? op_table[op].name : "?"; }
int ir_op_arity(ir_op op) { return op_table[op].arity; }
int ir_op_outputs(ir_op op) { return op_table[op].outputs; }
unsigned ir_op_flags(ir_op op) { return op_table[op].flags; }

int ir_op_from_name(const char *s) {
    for (int i = 0; i < IR_OP_COUNT; i++)
        if (strcmp(op_table[i].name, s) == 0) return i;
    return -1;
}

#define X(name, text, nin, nout, flags) _Static_assert(nout >= 1 && nout <= IR_MAX_OUTPUTS, #name);
#include "ops.def"
#undef X

static const char *const dtype_names[IR_DTYPE_COUNT] = {"f32", "f16", "bf16", "i32", "i64"};
static const size_t dtype_sizes[IR_DTYPE_COUNT] = {4, 2, 2, 4, 8};

const char *ir_dtype_name(ir_dtype t) { return (unsigned)t < IR_DTYPE_COUNT ? dtype_names[t] : "?"; }
size_t ir_dtype_size(ir_dtype t) { return dtype_sizes[t]; }
int ir_dtype_is_float(ir_dtype t) { return t == IR_F32 || t == IR_F16 || t == IR_BF16; }

/* ---- arena ------------------------------------------------------------------------------ */

struct ir_arena_block {
    ir_arena_block *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

void *ir_arena_try_alloc(ir_arena *a, size_t n) {
    if (n > SIZE_MAX / 2) return NULL;
    n = (n + 15) & ~(size_t)15;
    ir_arena_block *b = a->head;
    if (!b || b->used + n > b->size) {
        size_t size = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + size);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->size = size;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void *ir_arena_alloc(ir_arena *a, size_t n) {
    void *p = ir_arena_try_alloc(a, n);
    if (!p) {
        fprintf(stderr, "deitc: out of memory\n");
        abort();
    }
    return p;
}

char *ir_arena_strdup(ir_arena *a, const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = ir_arena_alloc(a, n);
    memcpy(p, s, n);
    return p;
}

char *ir_arena_printf(ir_arena *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = ir_arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void ir_arena_free(ir_arena *a) {
    for (ir_arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}

/* ---- graph ------------------------------------------------------------------------------ */

ir_graph *ir_graph_new(void) {
    ir_graph *g = calloc(1, sizeof *g);
    if (!g) abort();
    return g;
}

void ir_graph_free(ir_graph *g) {
    if (!g) return;
    ir_arena_free(&g->arena);
    free(g->nodes);
    free(g);
}

int64_t ir_numel(const ir_node *n) {
    int64_t k = 1;
    for (int i = 0; i < n->ndim; i++) k *= n->shape[i];
    return k;
}

int ir_same_shape(const ir_node *a, const ir_node *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static const char *dims_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, size - k, "[");
    for (int i = 0; i < ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < size) snprintf(buf + k, size - k, "]");
    return buf;
}

const char *ir_shape_str(const ir_node *n, char *buf, size_t size) {
    return dims_str(n->ndim, n->shape, buf, size);
}

void ir_node_output(const ir_node *n, int k, ir_node *out) {
    assert(k >= 0 && k < ir_op_outputs(n->op));
    *out = *n;
    switch (n->op) {
    case IR_OP_LAYER_NORM_STATS: /* y, then the rows' mean and rstd, f32 [..., 1] */
        if (k > 0) {
            out->dtype = IR_F32;
            out->shape[out->ndim - 1] = 1;
        }
        break;
    case IR_OP_ATTENTION: /* O [B,N,D] (the node's own type), then LSE f32 [B,H,N] */
        if (k == 1) {
            out->dtype = IR_F32;
            out->ndim = 3;
            out->shape[2] = n->shape[1];
            out->shape[1] = n->attrs.heads;
        }
        break;
    default:
        break;
    }
}

char *ir_loc_format(char *buf, size_t size, ir_loc loc, const char *fmt, ...) {
    char why[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (loc.file && loc.line > 0)
        snprintf(buf, size, "%s:%d:%d: %s", loc.file, loc.line, loc.col, why);
    else if (loc.file)
        snprintf(buf, size, "%s: %s", loc.file, why);
    else
        snprintf(buf, size, "%s", why);
    return buf;
}

/* Formats "file:line:col: OP 'NAME': why" into g->error; always returns -1. */
static int node_error(ir_graph *g, const ir_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int node_error(ir_graph *g, const ir_node *n, const char *fmt, ...) {
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    ir_loc_format(g->error, sizeof g->error, n->loc, "%s '%s': %s", ir_op_name(n->op),
                  n->name ? n->name : "", why);
    return -1;
}

/* numpy broadcasting of two shapes into out; 0 if compatible */
static int broadcast_shapes(const ir_node *a, const ir_node *b, int *ndim, int64_t *out) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) return -1;
        out[i] = da == 1 ? db : da;
    }
    *ndim = nd;
    return 0;
}

/* can `from` be broadcast to the shape (ndim, to)? */
static int broadcastable(const ir_node *from, int ndim, const int64_t *to) {
    if (from->ndim > ndim) return 0;
    for (int i = 0; i < from->ndim; i++) {
        int64_t d = from->shape[i], t = to[ndim - from->ndim + i];
        if (d != t && d != 1) return 0;
    }
    return 1;
}

static int check_dims(ir_graph *g, ir_node *n) {
    for (int i = 0; i < n->ndim; i++)
        if (n->shape[i] <= 0) return node_error(g, n, "dimension %d is %lld", i, (long long)n->shape[i]);
    return 0;
}

/* The shape rule: fills n->shape/ndim/dtype from its inputs (or checks the given shape). */
static int infer_shape_rule(ir_graph *g, ir_node *n) {
    const ir_node *in[IR_MAX_INPUTS] = {0};
    char s0[96], s1[96];
    for (int i = 0; i < n->ninputs; i++) in[i] = &g->nodes[n->inputs[i]];
    const ir_node *x = n->ninputs ? in[0] : NULL;
    int arity = ir_op_arity(n->op);
    if (arity >= 0 ? n->ninputs != arity : n->ninputs < 1)
        return node_error(g, n, "takes %d inputs, got %d", arity, n->ninputs);

    for (int i = 0; i < n->ninputs; i++)
        if (n->op != IR_OP_PROJECT && ir_op_outputs(in[i]->op) > 1)
            return node_error(g, n, "input %d (%%%d) has %d outputs: read one through project", i,
                              n->inputs[i], ir_op_outputs(in[i]->op));

    /* elementwise ops: the broadcast of their inputs, in input 0's dtype (CAST: the node's) */
    if (ir_op_flags(n->op) & IR_OPF_ELEMENTWISE) {
        if (n->ninputs == 2 && broadcast_shapes(in[0], in[1], &n->ndim, n->shape))
            return node_error(g, n, "shapes %s and %s do not broadcast", ir_shape_str(in[0], s0, 96),
                              ir_shape_str(in[1], s1, 96));
        if (n->ninputs == 1) {
            n->ndim = x->ndim;
            memcpy(n->shape, x->shape, sizeof n->shape);
        }
        if (n->op != IR_OP_CAST) n->dtype = x->dtype;
        return check_dims(g, n);
    }

    if (ir_op_flags(n->op) & IR_OPF_LEAF) return check_dims(g, n); /* the caller's shape */

    switch (n->op) {
    case IR_OP_FLIP_BATCH:
        if (x->ndim < 1) return node_error(g, n, "flip_batch needs an input with a batch dim");
        /* fall through */
    case IR_OP_SOFTMAX:
        n->ndim = x->ndim;
        memcpy(n->shape, x->shape, sizeof n->shape);
        n->dtype = x->dtype;
        break;
    case IR_OP_PROJECT: {
        int k = n->attrs.output, nout = ir_op_outputs(x->op);
        if (nout < 2 || k < 0 || k >= nout)
            return node_error(g, n, "output %d of %s (%%%d), which has %d output%s", k,
                              ir_op_name(x->op), n->inputs[0], nout, nout == 1 ? "" : "s");
        ir_node o;
        ir_node_output(x, k, &o);
        n->ndim = o.ndim;
        memcpy(n->shape, o.shape, sizeof n->shape);
        n->dtype = o.dtype;
        break;
    }
    case IR_OP_RESHAPE: {
        int64_t k = 1;
        for (int i = 0; i < n->ndim; i++) k *= n->shape[i];
        if (k != ir_numel(x))
            return node_error(g, n, "cannot reshape %s into %s", ir_shape_str(x, s0, 96),
                              ir_shape_str(n, s1, 96));
        n->dtype = x->dtype;
        break;
    }
    case IR_OP_PERMUTE: {
        int seen[IR_MAX_DIMS] = {0};
        n->ndim = x->ndim;
        for (int i = 0; i < x->ndim; i++) {
            int64_t p = n->attrs.perm[i];
            if (p < 0 || p >= x->ndim || seen[p]++)
                return node_error(g, n, "bad permutation for %d dims", x->ndim);
            n->shape[i] = x->shape[p];
        }
        n->dtype = x->dtype;
        break;
    }
    case IR_OP_EXPAND:
        if (!broadcastable(x, n->ndim, n->shape))
            return node_error(g, n, "cannot expand %s to %s", ir_shape_str(x, s0, 96),
                              ir_shape_str(n, s1, 96));
        n->dtype = x->dtype;
        break;
    case IR_OP_SUM_TO:
        if (!broadcastable(n, x->ndim, x->shape))
            return node_error(g, n, "cannot sum %s to %s", ir_shape_str(x, s0, 96),
                              ir_shape_str(n, s1, 96));
        n->dtype = x->dtype;
        break;
    case IR_OP_CONCAT: {
        int64_t ax = n->attrs.axis, total = 0;
        if (ax < 0 || ax >= x->ndim) return node_error(g, n, "axis %lld out of range", (long long)ax);
        for (int i = 0; i < n->ninputs; i++) {
            if (in[i]->ndim != x->ndim || in[i]->dtype != x->dtype)
                return node_error(g, n, "inputs differ in rank or dtype");
            for (int d = 0; d < x->ndim; d++)
                if (d != ax && in[i]->shape[d] != x->shape[d])
                    return node_error(g, n, "input %s does not match %s off axis %lld",
                                      ir_shape_str(in[i], s0, 96), ir_shape_str(x, s1, 96),
                                      (long long)ax);
            total += in[i]->shape[ax];
        }
        n->ndim = x->ndim;
        memcpy(n->shape, x->shape, sizeof n->shape);
        n->shape[ax] = total;
        n->dtype = x->dtype;
        break;
    }
    case IR_OP_SLICE: {
        int64_t ax = n->attrs.axis;
        if (ax < 0 || ax >= x->ndim) return node_error(g, n, "axis %lld out of range", (long long)ax);
        if (n->attrs.start < 0 || n->attrs.start >= n->attrs.end || n->attrs.end > x->shape[ax])
            return node_error(g, n, "range [%lld,%lld) outside dim of size %lld",
                              (long long)n->attrs.start, (long long)n->attrs.end,
                              (long long)x->shape[ax]);
        n->ndim = x->ndim;
        memcpy(n->shape, x->shape, sizeof n->shape);
        n->shape[ax] = n->attrs.end - n->attrs.start;
        n->dtype = x->dtype;
        break;
    }
    case IR_OP_PAD: {
        int64_t ax = n->attrs.axis;
        if (ax < 0 || ax >= n->ndim || n->ndim != x->ndim)
            return node_error(g, n, "axis %lld out of range", (long long)ax);
        for (int d = 0; d < n->ndim; d++) {
            int64_t want = d == ax ? n->attrs.end - n->attrs.start : n->shape[d];
            if (x->shape[d] != want || n->attrs.start < 0 || n->attrs.end > n->shape[ax])
                return node_error(g, n, "cannot pad %s into %s", ir_shape_str(x, s0, 96),
                                  ir_shape_str(n, s1, 96));
        }
        n->dtype = x->dtype;
        break;
    }
    case IR_OP_PATCHIFY: {
        int64_t p = n->attrs.patch;
        if (x->ndim != 4 || p <= 0 || x->shape[2] % p || x->shape[3] % p)
            return node_error(g, n, "input %s is not [B,C,H,W] with H and W divisible by %lld",
                              ir_shape_str(x, s0, 96), (long long)p);
        n->ndim = 3;
        n->shape[0] = x->shape[0];
        n->shape[1] = (x->shape[2] / p) * (x->shape[3] / p);
        n->shape[2] = x->shape[1] * p * p;
        n->dtype = x->dtype;
        break;
    }
    case IR_OP_UNPATCHIFY: {
        int64_t p = n->attrs.patch;
        if (n->ndim != 4 || p <= 0 || n->shape[2] % p || n->shape[3] % p || x->ndim != 3 ||
            x->shape[0] != n->shape[0] || x->shape[1] != (n->shape[2] / p) * (n->shape[3] / p) ||
            x->shape[2] != n->shape[1] * p * p)
            return node_error(g, n, "cannot unpatchify %s into %s", ir_shape_str(x, s0, 96),
                              ir_shape_str(n, s1, 96));
        n->dtype = x->dtype;
        break;
    }
    case IR_OP_MATMUL: {
        const ir_node *a = in[0], *b = in[1];
        if (a->ndim < 2 || b->ndim < 2) return node_error(g, n, "operands need 2 or more dims");
        int64_t m = a->shape[a->ndim - (n->attrs.trans_a ? 1 : 2)];
        int64_t ka = a->shape[a->ndim - (n->attrs.trans_a ? 2 : 1)];
        int64_t kb = b->shape[b->ndim - (n->attrs.trans_b ? 1 : 2)];
        int64_t nn = b->shape[b->ndim - (n->attrs.trans_b ? 2 : 1)];
        if (ka != kb)
            return node_error(g, n, "inner dimensions differ: %s%s times %s%s",
                              ir_shape_str(a, s0, 96), n->attrs.trans_a ? "^T" : "",
                              ir_shape_str(b, s1, 96), n->attrs.trans_b ? "^T" : "");
        ir_node ba = *a, bb = *b;
        ba.ndim -= 2;
        bb.ndim -= 2;
        if (broadcast_shapes(&ba, &bb, &n->ndim, n->shape))
            return node_error(g, n, "batch dims of %s and %s do not broadcast",
                              ir_shape_str(a, s0, 96), ir_shape_str(b, s1, 96));
        n->shape[n->ndim++] = m;
        n->shape[n->ndim++] = nn;
        if (n->ndim > IR_MAX_DIMS) return node_error(g, n, "too many dims");
        if (a->dtype != b->dtype && ir_dtype_is_float(a->dtype))
            return node_error(g, n, "operands of different dtypes (%s, %s)", ir_dtype_name(a->dtype),
                              ir_dtype_name(b->dtype));
        if (n->attrs.compute != IR_COMPUTE_32F &&
            (n->attrs.compute != IR_COMPUTE_TF32 || a->dtype != IR_F32 || b->dtype != IR_F32))
            return node_error(g, n, "compute type %d needs f32 operands (tf32)", (int)n->attrs.compute);
        n->dtype = a->dtype;
        break;
    }
    case IR_OP_REDUCE_MEAN:
        if (n->attrs.axis < 0 || n->attrs.axis >= x->ndim)
            return node_error(g, n, "axis %lld out of range", (long long)n->attrs.axis);
        n->ndim = x->ndim;
        memcpy(n->shape, x->shape, sizeof n->shape);
        n->shape[n->attrs.axis] = 1;
        n->dtype = x->dtype;
        break;
    case IR_OP_LAYER_NORM:
    case IR_OP_LAYER_NORM_STATS:
    case IR_OP_LAYER_NORM_DX:
    case IR_OP_LAYER_NORM_DX_STATS: {
        int fwd = n->op == IR_OP_LAYER_NORM || n->op == IR_OP_LAYER_NORM_STATS;
        const ir_node *data = fwd ? in[0] : in[1];
        const ir_node *gamma = fwd ? in[1] : in[2];
        int64_t c = data->shape[data->ndim - 1];
        if (gamma->ndim != 1 || gamma->shape[0] != c ||
            (fwd && (in[2]->ndim != 1 || in[2]->shape[0] != c)) ||
            (!fwd && !ir_same_shape(in[0], in[1])))
            return node_error(g, n, "scale/shift must be [%lld] for input %s", (long long)c,
                              ir_shape_str(data, s0, 96));
        if (n->op == IR_OP_LAYER_NORM_DX_STATS)
            for (int k = 3; k < 5; k++) { /* mean, rstd: f32, the input's shape with last dim 1 */
                ir_node want = *data;
                want.shape[want.ndim - 1] = 1;
                if (!ir_same_shape(in[k], &want) || in[k]->dtype != IR_F32)
                    return node_error(g, n, "row statistics must be f32%s, got %s%s",
                                      ir_shape_str(&want, s0, 96), ir_dtype_name(in[k]->dtype),
                                      ir_shape_str(in[k], s1, 96));
            }
        n->ndim = data->ndim;
        memcpy(n->shape, data->shape, sizeof n->shape);
        n->dtype = data->dtype;
        break;
    }
    case IR_OP_LAYER_NORM_DGAMMA:
    case IR_OP_SOFTMAX_GRAD:
        if (!ir_same_shape(in[0], in[1]))
            return node_error(g, n, "shapes %s and %s differ", ir_shape_str(in[0], s0, 96),
                              ir_shape_str(in[1], s1, 96));
        if (n->op == IR_OP_LAYER_NORM_DGAMMA) {
            n->ndim = 1;
            n->shape[0] = x->shape[x->ndim - 1];
        } else {
            n->ndim = x->ndim;
            memcpy(n->shape, x->shape, sizeof n->shape);
        }
        n->dtype = in[1]->dtype;
        break;
    case IR_OP_CROSS_ENTROPY:
    case IR_OP_CROSS_ENTROPY_GRAD: {
        const ir_node *logits = in[n->op == IR_OP_CROSS_ENTROPY ? 0 : 1];
        const ir_node *labels = in[n->op == IR_OP_CROSS_ENTROPY ? 1 : 2];
        const ir_node *opt = in[n->op == IR_OP_CROSS_ENTROPY ? 2 : 3];
        if (logits->ndim != 2 || labels->ndim != 1 || labels->shape[0] != logits->shape[0] ||
            ir_dtype_is_float(labels->dtype))
            return node_error(g, n, "needs logits [B,K] and integer labels [B], got %s and %s",
                              ir_shape_str(logits, s0, 96), ir_shape_str(labels, s1, 96));
        if (ir_numel(opt) != IR_OPT_SLOTS || opt->dtype != IR_F32)
            return node_error(g, n, "needs the f32 opt slots [%d] (label smoothing) as its last input", IR_OPT_SLOTS);
        if (n->op == IR_OP_CROSS_ENTROPY) {
            n->ndim = 1;
            n->shape[0] = 1;
            n->dtype = IR_F32;
        } else {
            n->ndim = 2;
            memcpy(n->shape, logits->shape, sizeof n->shape);
            n->dtype = logits->dtype;
        }
        break;
    }
    case IR_OP_SUM_SQUARES:
        n->ndim = 1;
        n->shape[0] = 1;
        n->dtype = IR_F32;
        break;
    case IR_OP_CLIP_COEF:
        if (ir_numel(in[0]) != 1 || ir_numel(in[1]) != IR_OPT_SLOTS || !ir_dtype_is_float(in[1]->dtype))
            return node_error(g, n, "needs (sum_squares [1], opt [%d])", IR_OPT_SLOTS);
        n->ndim = in[1]->ndim;
        memcpy(n->shape, in[1]->shape, sizeof n->shape);
        n->dtype = in[1]->dtype;
        break;
    case IR_OP_EMA:
        if (x->op != IR_OP_STATE || !ir_same_shape(x, in[1]) || x->dtype != in[1]->dtype ||
            ir_numel(in[2]) != IR_OPT_SLOTS || in[2]->dtype != IR_F32)
            return node_error(g, n, "needs (ema state, weight of its shape and dtype, opt[%d])", IR_OPT_SLOTS);
        n->ndim = x->ndim;
        memcpy(n->shape, x->shape, sizeof n->shape);
        n->dtype = x->dtype;
        break;
    case IR_OP_ATTENTION:
    case IR_OP_ATTENTION_BWD: {
        const ir_node *qkv = n->op == IR_OP_ATTENTION ? x : in[1];
        int64_t H = n->attrs.heads;
        if (qkv->ndim != 3 || qkv->shape[2] % 3 || H <= 0 || (qkv->shape[2] / 3) % H ||
            !ir_dtype_is_float(qkv->dtype))
            return node_error(g, n, "needs qkv [B,N,3D] (float) with D divisible by heads=%lld, got %s %s",
                              (long long)H, ir_dtype_name(qkv->dtype), ir_shape_str(qkv, s0, 96));
        if (!(n->attrs.alpha == n->attrs.alpha) || n->attrs.alpha == 0 || n->attrs.alpha > 1e30 ||
            n->attrs.alpha < -1e30)
            return node_error(g, n, "scale %g is not a finite nonzero number", n->attrs.alpha);
        ir_node o = *qkv; /* O: [B,N,D] */
        o.shape[2] /= 3;
        if (n->op == IR_OP_ATTENTION_BWD) {
            ir_node lse = o;
            lse.shape[1] = H;
            lse.shape[2] = o.shape[1];
            for (int k = 0; k < 3; k += 2)
                if (!ir_same_shape(in[k], &o) || in[k]->dtype != qkv->dtype)
                    return node_error(g, n, "input %d must be %s%s like qkv's O, got %s%s", k,
                                      ir_dtype_name(qkv->dtype), ir_shape_str(&o, s0, 96),
                                      ir_dtype_name(in[k]->dtype), ir_shape_str(in[k], s1, 96));
            if (!ir_same_shape(in[3], &lse) || in[3]->dtype != IR_F32)
                return node_error(g, n, "log-sum-exp must be f32%s, got %s%s", ir_shape_str(&lse, s0, 96),
                                  ir_dtype_name(in[3]->dtype), ir_shape_str(in[3], s1, 96));
            o = *qkv;
        }
        n->ndim = 3;
        memcpy(n->shape, o.shape, sizeof n->shape);
        n->dtype = qkv->dtype;
        break;
    }
    case IR_OP_ADAMW:
        if ((n->ninputs != 5 && n->ninputs != 6) || x->op != IR_OP_WEIGHT || !ir_same_shape(x, in[1]) ||
            !ir_same_shape(x, in[2]) || !ir_same_shape(x, in[3]) || in[2]->op != IR_OP_STATE ||
            in[3]->op != IR_OP_STATE || ir_numel(in[4]) != IR_OPT_SLOTS ||
            (n->ninputs == 6 && (in[5]->op != IR_OP_STATE || !ir_same_shape(x, in[5]) ||
                                 (in[5]->dtype != IR_F16 && in[5]->dtype != IR_BF16))))
            return node_error(g, n, "needs (weight, grad, m, v, opt[%d][, f16/bf16 copy]) of matching shapes",
                              IR_OPT_SLOTS);
        n->ndim = x->ndim;
        memcpy(n->shape, x->shape, sizeof n->shape);
        n->dtype = x->dtype;
        break;
    case IR_OP_LOSS_SCALE_OPT:
        if (ir_numel(in[0]) != 1 || ir_numel(in[1]) != IR_OPT_SLOTS || in[1]->dtype != IR_F32 ||
            ir_numel(in[2]) != IR_SCALER_SLOTS || in[2]->dtype != IR_F32)
            return node_error(g, n, "needs (sum_squares [1], opt f32[%d], scaler f32[%d])", IR_OPT_SLOTS,
                              IR_SCALER_SLOTS);
        n->ndim = in[1]->ndim;
        memcpy(n->shape, in[1]->shape, sizeof n->shape);
        n->dtype = IR_F32;
        break;
    case IR_OP_LOSS_SCALE_UPDATE:
        if (x->op != IR_OP_STATE || ir_numel(x) != IR_SCALER_SLOTS || x->dtype != IR_F32 || ir_numel(in[1]) != 1)
            return node_error(g, n, "needs (scaler STATE f32[%d], sum_squares [1])", IR_SCALER_SLOTS);
        n->ndim = x->ndim;
        memcpy(n->shape, x->shape, sizeof n->shape);
        n->dtype = IR_F32;
        break;
    default: /* only the leaves and the elementwise ops, handled above, have no case */
        return node_error(g, n, "internal: op has no shape rule");
    }
    return check_dims(g, n);
}

/* Whether a float node of this op may store its value in any float dtype (its store dtype, the
 * node's own; the kernels compute in fp32 and round on store): every computing op but the
 * gathers (which copy elements in their input's dtype), the views, the optimizer's and leaves. */
static int store_dtype_free(ir_op op) {
    switch (op) {
    case IR_OP_PERMUTE: case IR_OP_EXPAND: case IR_OP_CONCAT: case IR_OP_SLICE: case IR_OP_PAD:
    case IR_OP_PATCHIFY: case IR_OP_UNPATCHIFY: case IR_OP_CLIP_COEF:
        return 0;
    default:
        return !(ir_op_flags(op) & (IR_OPF_LEAF | IR_OPF_ALIAS | IR_OPF_EFFECT));
    }
}

/* The shape rule, then the store dtype: a float value the rule gives may be stored in the float
 * dtype the node asks for (mixed precision; output 0 of a multi-output node). */
static int infer_shape(ir_graph *g, ir_node *n) {
    ir_dtype asked = n->dtype;
    if (infer_shape_rule(g, n)) return -1;
    if (store_dtype_free(n->op) && ir_dtype_is_float(asked) && ir_dtype_is_float(n->dtype)) n->dtype = asked;
    return 0;
}

int ir_add(ir_graph *g, ir_op op, const int *inputs, int ninputs, const ir_attrs *attrs,
           ir_dtype dtype, int ndim, const int64_t *shape, const char *name, ir_loc loc) {
    ir_node n = {0};
    n.op = op;
    n.dtype = dtype;
    n.name = ir_arena_strdup(&g->arena, name);
    n.loc = loc;
    n.loc.file = loc.file ? ir_arena_strdup(&g->arena, loc.file) : NULL;
    if (attrs) n.attrs = *attrs;
    if (ninputs > IR_MAX_INPUTS || ndim > IR_MAX_DIMS || ndim < 0)
        return node_error(g, &n, "too many inputs or dims");
    for (int i = 0; i < ninputs; i++) {
        if (inputs[i] < 0 || inputs[i] >= g->n) return node_error(g, &n, "input %d is undefined", i);
        n.inputs[i] = inputs[i];
    }
    n.ninputs = ninputs;
    n.ndim = ndim;
    if (shape) memcpy(n.shape, shape, sizeof(int64_t) * (size_t)ndim);
    if (ninputs && (ir_op_flags(op) & IR_OPF_AXIS) && n.attrs.axis < 0)
        n.attrs.axis += g->nodes[inputs[0]].ndim;
    if (infer_shape(g, &n)) return -1;
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 256;
        g->nodes = realloc(g->nodes, sizeof(ir_node) * (size_t)g->cap);
        if (!g->nodes) abort();
    }
    g->nodes[g->n] = n;
    return g->n++;
}

int ir_leaf(ir_graph *g, ir_op op, ir_dtype dtype, int ndim, const int64_t *shape,
            const char *name, ir_loc loc) {
    return ir_add(g, op, NULL, 0, NULL, dtype, ndim, shape, name, loc);
}

int ir_unary(ir_graph *g, ir_op op, int x, const ir_attrs *attrs, const char *name, ir_loc loc) {
    ir_dtype t = x >= 0 && x < g->n ? g->nodes[x].dtype : IR_F32;
    return ir_add(g, op, &x, 1, attrs, t, 0, NULL, name, loc);
}

int ir_binary(ir_graph *g, ir_op op, int a, int b, const ir_attrs *attrs, const char *name,
              ir_loc loc) {
    int in[2] = {a, b};
    ir_dtype t = a >= 0 && a < g->n ? g->nodes[a].dtype : IR_F32;
    return ir_add(g, op, in, 2, attrs, t, 0, NULL, name, loc);
}

int ir_reshape(ir_graph *g, int x, int ndim, const int64_t *shape, const char *name, ir_loc loc) {
    ir_dtype t = x >= 0 && x < g->n ? g->nodes[x].dtype : IR_F32;
    return ir_add(g, IR_OP_RESHAPE, &x, 1, NULL, t, ndim, shape, name, loc);
}

int ir_copy_node(ir_graph *g, const ir_graph *from, int src, const int *map) {
    const ir_node *s = &from->nodes[src];
    int in[IR_MAX_INPUTS];
    for (int i = 0; i < s->ninputs; i++) in[i] = map ? map[s->inputs[i]] : s->inputs[i];
    int id = ir_add(g, s->op, in, s->ninputs, &s->attrs, s->dtype, s->ndim, s->shape, s->name, s->loc);
    if (id >= 0) {
        g->nodes[id].flags = s->flags;
        g->nodes[id].group = s->group;
        g->nodes[id].src_layout = s->src_layout;
        if (s->src_name) g->nodes[id].src_name = ir_arena_strdup(&g->arena, s->src_name);
        g->nodes[id].chain = s->chain;
        if (s->data) { /* a model's weights: large, sized by the input, so never an abort */
            size_t bytes = sizeof(float) * (size_t)ir_numel(s);
            float *copy = ir_arena_try_alloc(&g->arena, bytes);
            if (!copy) {
                g->n--;
                snprintf(g->error, sizeof g->error, "out of memory for the %zu bytes of '%s'", bytes,
                         s->name ? s->name : "?");
                return -1;
            }
            memcpy(copy, s->data, bytes);
            g->nodes[id].data = copy;
        }
    }
    return id;
}

void ir_node_set_output(ir_graph *g, int node, const char *name) {
    assert(node >= 0 && node < g->n);
    g->nodes[node].flags |= IR_NODE_OUTPUT;
    if (name) g->nodes[node].name = ir_arena_strdup(&g->arena, name);
}

int ir_find(const ir_graph *g, const char *name) {
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->name && (n->flags & IR_NODE_OUTPUT || ir_op_flags(n->op) & IR_OPF_LEAF) &&
            strcmp(n->name, name) == 0)
            return i;
    }
    return -1;
}

int64_t ir_count_params(const ir_graph *g) {
    int64_t k = 0;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].op == IR_OP_WEIGHT && g->nodes[i].flags & IR_NODE_TRAINABLE)
            k += ir_numel(&g->nodes[i]);
    return k;
}

/* ---- verifier --------------------------------------------------------------------------- */

static const ir_graph *sort_graph; /* qsort has no context argument in C11 */

static int by_name(const void *a, const void *b) {
    return strcmp(sort_graph->nodes[*(const int *)a].name, sort_graph->nodes[*(const int *)b].name);
}

/* Node i's elementwise chain: an elementwise op that either starts the chain (no earlier node
 * is in it) or follows the chain's previous member, node i-1, reads it and has its shape. A
 * chain may end in a column sum (SUM_TO of its previous member to that member's last dim: a
 * bias gradient; bias-gelu-grad and bias-grad in passes/fusion.c). */
static int chain_column_sum(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i], *x = i > 0 ? &g->nodes[i - 1] : NULL;
    return n->op == IR_OP_SUM_TO && x && x->chain == n->chain && n->inputs[0] == i - 1 && n->ndim == 1 &&
           x->ndim >= 2 && n->shape[0] == x->shape[x->ndim - 1] && (ir_op_flags(x->op) & IR_OPF_ELEMENTWISE);
}

/* A chain may also start with a MATMUL whose epilogue computes the rest (gelu-epilogue in
 * passes/fusion_gemm.c): exactly [MATMUL, ADD, GELU tanh] or [MATMUL, GELU_GRAD tanh, SUM_TO]. */
static int gemm_epilogue_chain(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    if (n->op != IR_OP_MATMUL || i + 2 >= g->n) return 0;
    const ir_node *a = &g->nodes[i + 1], *b = &g->nodes[i + 2];
    if (a->chain != n->chain || b->chain != n->chain || (i + 3 < g->n && g->nodes[i + 3].chain == n->chain)) return 0;
    if (a->op == IR_OP_ADD) return b->op == IR_OP_GELU && b->attrs.gelu_tanh;
    return a->op == IR_OP_GELU_GRAD && a->attrs.gelu_tanh && b->op == IR_OP_SUM_TO;
}

/* A chain may end in a LAYER_NORM of its last member, with only leaves between the two
 * (residual-layer-norm in passes/fusion_rows.c). */
static int chain_layer_norm(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    int x = n->inputs[0];
    if (n->op != IR_OP_LAYER_NORM || g->nodes[x].chain != n->chain || !(ir_op_flags(g->nodes[x].op) & IR_OPF_ELEMENTWISE))
        return 0;
    for (int j = x + 1; j < i; j++)
        if (!(ir_op_flags(g->nodes[j].op) & IR_OPF_LEAF)) return 0;
    return 1;
}

static int verify_chain(ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    if (n->chain > 0 && chain_column_sum(g, i)) return 0;
    if (n->chain > 0 && chain_layer_norm(g, i)) return 0;
    if (n->chain > 0 && (n->op == IR_OP_LAYER_NORM_DGAMMA || (n->op == IR_OP_SUM_TO && i > 0 &&
                                                              g->nodes[i - 1].op == IR_OP_LAYER_NORM_DGAMMA))) {
        /* layer-norm-dbeta: [LAYER_NORM_DGAMMA(dy, x), SUM_TO(dy)], nothing else */
        int d = n->op == IR_OP_SUM_TO ? i - 1 : i;
        const ir_node *dg = &g->nodes[d], *db = d + 1 < g->n ? &g->nodes[d + 1] : NULL;
        int ok = db && db->op == IR_OP_SUM_TO && db->chain == dg->chain && db->inputs[0] == dg->inputs[0] &&
                 (d == 0 || g->nodes[d - 1].chain != dg->chain) && (d + 2 >= g->n || g->nodes[d + 2].chain != dg->chain);
        if (!ok)
            return node_error(g, n, "chain %d: a layer_norm_dgamma chains only with the sum_to of its dy right after it",
                              n->chain);
        return 0;
    }
    if (n->chain > 0 && n->op == IR_OP_LAYER_NORM_DX) {
        /* residual-layer-norm-grad: it starts its chain, an elementwise member reading it next */
        const ir_node *next = i + 1 < g->n ? &g->nodes[i + 1] : NULL;
        int reads = 0;
        for (int k = 0; next && k < next->ninputs; k++) reads |= next->inputs[k] == i;
        if ((i > 0 && g->nodes[i - 1].chain == n->chain) || !next || next->chain != n->chain || !reads ||
            !(ir_op_flags(next->op) & IR_OPF_ELEMENTWISE))
            return node_error(g, n, "chain %d: a layer_norm_dx starts its chain, an elementwise node reading it "
                              "right after it", n->chain);
        return 0;
    }
    if (n->chain > 0 && (n->op == IR_OP_CROSS_ENTROPY || n->op == IR_OP_CROSS_ENTROPY_GRAD)) {
        /* softmax-cross-entropy: exactly [CROSS_ENTROPY, CROSS_ENTROPY_GRAD] over the same inputs */
        int c = n->op == IR_OP_CROSS_ENTROPY ? i : i - 1;
        const ir_node *ce = c >= 0 ? &g->nodes[c] : NULL, *d = c >= 0 && c + 1 < g->n ? &g->nodes[c + 1] : NULL;
        int ok = ce && d && ce->op == IR_OP_CROSS_ENTROPY && d->op == IR_OP_CROSS_ENTROPY_GRAD && ce->chain == n->chain &&
                 d->chain == n->chain && d->inputs[1] == ce->inputs[0] && d->inputs[2] == ce->inputs[1] &&
                 d->inputs[3] == ce->inputs[2] && (c == 0 || g->nodes[c - 1].chain != n->chain) &&
                 (c + 2 >= g->n || g->nodes[c + 2].chain != n->chain);
        if (!ok)
            return node_error(g, n, "chain %d: a cross_entropy chains only with the cross_entropy_grad of its logits, "
                              "labels and opt right after it", n->chain);
        return 0;
    }
    if (n->chain > 0 && n->op == IR_OP_MATMUL) {
        if (!gemm_epilogue_chain(g, i))
            return node_error(g, n, "chain %d: a MATMUL starts only a GEMM epilogue chain (matmul, add, gelu tanh; or "
                              "matmul, gelu_grad tanh, sum_to)", n->chain);
        for (int j = 0; j < i; j++)
            if (g->nodes[j].chain == n->chain)
                return node_error(g, n, "chain %d: its MATMUL is not its first member (%%%d)", n->chain, j);
        return 0;
    }
    if (n->chain < 0 || !(ir_op_flags(n->op) & IR_OPF_ELEMENTWISE))
        return node_error(g, n, "elementwise chain %d on an op that is not elementwise", n->chain);
    if (i > 0 && g->nodes[i - 1].chain == n->chain) {
        int reads = 0;
        for (int k = 0; k < n->ninputs; k++) reads |= n->inputs[k] == i - 1;
        if (g->nodes[i - 1].op == IR_OP_SUM_TO || g->nodes[i - 1].op == IR_OP_LAYER_NORM)
            return node_error(g, n, "elementwise chain %d continues after its column sum or LayerNorm %%%d", n->chain,
                              i - 1);
        if (!reads || !ir_same_shape(n, &g->nodes[i - 1]))
            return node_error(g, n, "elementwise chain %d: it does not read the chain's previous member "
                              "%%%d, or has another shape", n->chain, i - 1);
        return 0;
    }
    for (int j = 0; j < i; j++)
        if (g->nodes[j].chain == n->chain)
            return node_error(g, n, "elementwise chain %d is split (%%%d and %%%d)", n->chain, j, i);
    return 0;
}

/* Node i's fusion group: a groupable op, and every earlier member has the same op, opt input
 * (the last) and hyperparameters, so that one launch can run them all. */
static int verify_group(ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    if (n->group < 0 || !(ir_op_flags(n->op) & IR_OPF_GROUPABLE))
        return node_error(g, n, "fusion group %d on an op that cannot be grouped", n->group);
    for (int j = 0; j < i; j++) {
        const ir_node *m = &g->nodes[j];
        if (m->group != n->group) continue;
        /* the opt input: ADAMW's fifth (a sixth, its 16-bit copy, may differ), else the last */
        int mo = m->op == IR_OP_ADAMW ? 4 : m->ninputs - 1, no = n->op == IR_OP_ADAMW ? 4 : n->ninputs - 1;
        if (m->op != n->op || (m->op != IR_OP_ADAMW && m->ninputs != n->ninputs) ||
            m->ninputs <= mo || n->ninputs <= no || m->inputs[mo] != n->inputs[no] ||
            m->attrs.beta1 != n->attrs.beta1 || m->attrs.beta2 != n->attrs.beta2 ||
            m->attrs.eps != n->attrs.eps)
            return node_error(g, n, "fusion group %d mixes it with %%%d (%s), which differs in op, "
                              "opt input or hyperparameters", n->group, j, ir_op_name(m->op));
        break; /* the first member stands for all earlier ones */
    }
    return 0;
}

int ir_verify(ir_graph *g) {
    int seen_effect = 0, nnamed = 0;
    int *named = malloc(sizeof(int) * (size_t)(g->n ? g->n : 1));
    if (!named) abort();
    for (int i = 0; i < g->n; i++) {
        ir_node copy = g->nodes[i];
        int bad = 0;
        for (int k = 0; k < copy.ninputs && !bad; k++)
            if (copy.inputs[k] < 0 || copy.inputs[k] >= i)
                bad = node_error(g, &copy, "input %d (%%%d) is not defined before node %%%d", k,
                                 copy.inputs[k], i);
        if (!bad && ir_op_flags(copy.op) & IR_OPF_EFFECT)
            seen_effect = 1;
        else if (!bad && seen_effect)
            bad = node_error(g, &copy, "computed after an optimizer update (%%%d)", i);
        ir_node check = copy; /* re-run the shape rule and compare */
        if (!bad && infer_shape(g, &check)) bad = -1;
        if (!bad && (!ir_same_shape(&check, &copy) || check.dtype != copy.dtype))
            bad = node_error(g, &copy, "shape or dtype disagrees with its op's rule");
        if (!bad && ir_op_outputs(copy.op) > 1 && copy.flags & IR_NODE_OUTPUT)
            bad = node_error(g, &copy, "a node with %d outputs is not an output itself: mark a "
                             "project of it", ir_op_outputs(copy.op));
        if (!bad && copy.group) bad = verify_group(g, i);
        if (!bad && copy.chain) bad = verify_chain(g, i);
        if (!bad && copy.group && copy.chain)
            bad = node_error(g, &copy, "in both a fusion group and an elementwise chain");
        if (bad) {
            free(named);
            return -1;
        }
        if (copy.name && (copy.flags & IR_NODE_OUTPUT || ir_op_flags(copy.op) & IR_OPF_LEAF))
            named[nnamed++] = i;
    }
    /* leaf and output names are unique */
    sort_graph = g;
    qsort(named, (size_t)nnamed, sizeof(int), by_name);
    for (int k = 1; k < nnamed; k++)
        if (strcmp(g->nodes[named[k]].name, g->nodes[named[k - 1]].name) == 0) {
            ir_node copy = g->nodes[named[k]];
            free(named);
            return node_error(g, &copy, "name also used by another node");
        }
    free(named);
    return 0;
}
