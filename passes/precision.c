/* precision.c: the precision stage (--precision), after the training pass.
 *
 *   fp32  the graph as built: fp32 storage, true fp32 products (compute=32f)
 *   tf32  fp32 storage; every matmul with f32 operands gets compute=tf32: its operands are
 *         rounded to TF32 for the tensor cores, with fp32 accumulation (cuBLASLt's
 *         CUBLAS_COMPUTE_32F_FAST_TF32, recorded per GEMM in the plan; the emu's CPU GEMM and
 *         the interpreter round the operands the same way, nearest even). Everything else, the
 *         reductions and the optimizer included, stays fp32.
 *   fp16, bf16  the casting pass (H below is f16 or bf16). It only chooses each value's store
 *         dtype (ir.c: a computing node may store its fp32 result in any float dtype, so a cast
 *         is the store of its producer, never a kernel of its own) and rebuilds the graph:
 *         - master weights, AdamW's m and v, and the gradients AdamW reads stay f32; every
 *           trained weight that a 16-bit operand needs gets a STATE "<H>.<weight>" (e.g.
 *           "f16.blocks.0.attn.qkv.weight") that its ADAMW writes as a sixth input, rounding
 *           the new master once per step in the same kernel. The copy for the first step is
 *           made where the weights are loaded (the runtime's upload of a weight writes its
 *           copies, rt_plan_tensor.copy_of; the interpreter before its first step), so the
 *           copy is always round(master). A weight no ADAMW updates (frozen, forward graphs)
 *           is read through a CAST.
 *         - the inputs of the ops in `operand16` (MATMUL, ATTENTION, ATTENTION_BWD)
 *           are H: products with 16-bit operands, fp32 accumulation (compute 32F, scale 32F);
 *           the product itself is stored H unless it must be f32.
 *         - f32, as autocast's fp32 list: reported outputs (loss, logits, grad.*), the ops in
 *           `keep32` (loss, every reduction: bias and LayerNorm-parameter gradients, sums of
 *           squares for clipping), and what those read through views and gathers. LayerNorm's
 *           and softmax's statistics are fp32 inside their kernels (and LAYER_NORM_STATS keeps
 *           them f32); their normalized outputs are stored H, as the products read them.
 *         - every other activation is stored H (the probabilities, GELU, the gradient stream).
 *         - the residual stream (the sums a LayerNorm normalizes: pos_embed's add and every
 *           block's residual add) is stored f32; the gradient stream stays H (the products
 *           read it directly). Measured with `deitc run` on deit_micro against the float64
 *           oracle (rel L2; logits, then the 3 steps' losses), f32 residual vs H residual
 *           (llm.c's choice): fp16 7.4e-4, 7.9e-5 vs 1.0e-3, 1.1e-4; bf16 7.4e-3, 1.2e-3 vs
 *           9.5e-3, 8.9e-4. Modeled arena at batch 256 (`deitc inspect MODEL --batch 256
 *           --precision fp16`, fp32 in brackets; before the attention rows' padding, which
 *           adds 0.1-0.2%): DeiT-S 10054 MiB, 56.1% (17914) vs 9167 MiB, 51.2%; DeiT-Ti 5010 vs
 *           4567 (9023); DeiT-B 20689 vs 18916 (36180). Both fit the
 *           60% budget; the f32 stream is the more accurate (30% on fp16 logits here, and each
 *           of a deeper model's 2*depth adds would round it otherwise) and is what autocast
 *           computes for DeiT (pos_embed promotes the stream to f32), so it is the choice.
 *         Where a value a 16-bit input needs is f32 (a reported output, a weight without an
 *         ADAMW, an input that is not all-16-bit), a CAST node is added once for that value;
 *         an INPUT that only 16-bit inputs read (images) becomes H instead (the host converts
 *         it on upload). `deitc dump --after precision` shows every cast that remains.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ops whose floating inputs are 16-bit operands (fp32 arithmetic inside). Bit k of `inputs`:
 * input k is one. The fused attention takes qkv (and, backward, dO and O) 16-bit; its LSE stays
 * f32 (the op's rule), and its outputs are stored in qkv's dtype. */
static const struct {
    ir_op op;
    unsigned inputs;
} operand16[] = {
    {IR_OP_MATMUL, 3},
    {IR_OP_ATTENTION, 1},
    {IR_OP_ATTENTION_BWD, 7},
};

/* Ops whose result is f32 whatever reads it: the loss and every reduction. */
static const ir_op keep32[] = {
    IR_OP_CROSS_ENTROPY, IR_OP_SUM_TO, IR_OP_SUM_SQUARES, IR_OP_REDUCE_MEAN, IR_OP_LAYER_NORM_DGAMMA,
    IR_OP_CLIP_COEF, IR_OP_LOSS_SCALE_OPT, IR_OP_LOSS_SCALE_UPDATE,
};

/* Gathers copy elements in their input's dtype: every input in the node's own. */
static int is_gather(ir_op op) {
    return op == IR_OP_PERMUTE || op == IR_OP_EXPAND || op == IR_OP_CONCAT || op == IR_OP_SLICE ||
           op == IR_OP_PAD || op == IR_OP_PATCHIFY || op == IR_OP_UNPATCHIFY;
}

static unsigned operand16_mask(ir_op op) {
    for (size_t k = 0; k < sizeof operand16 / sizeof operand16[0]; k++)
        if (operand16[k].op == op) return operand16[k].inputs;
    return 0;
}

static int is_keep32(ir_op op) {
    for (size_t k = 0; k < sizeof keep32 / sizeof keep32[0]; k++)
        if (keep32[k] == op) return 1;
    return 0;
}

static int is_layer_norm_x(const ir_node *n, int k) {
    return k == 0 && (n->op == IR_OP_LAYER_NORM || n->op == IR_OP_LAYER_NORM_STATS);
}

/* The dtype input k of node n must have when n stores dtype `own` (-1: any). */
static int input_needs(const ir_graph *g, const ir_node *n, int k, ir_dtype own, ir_dtype h) {
    if (!ir_dtype_is_float(g->nodes[n->inputs[k]].dtype)) return -1;
    if (operand16_mask(n->op) >> k & 1) return (int)h;
    if (is_gather(n->op)) return (int)own;
    return -1;
}

typedef struct {
    const ir_graph *f; /* the graph before */
    ir_graph *g;       /* the graph being built */
    ir_dtype h;        /* f16 or bf16 */
    int *map;          /* [f->n] node of f -> node of g */
    int *copy;         /* [f->n] WEIGHT of f -> its 16-bit STATE in g (-1: none yet) */
    int *cast;         /* [f->n] node of f -> its CAST to h in g (-1: none yet) */
    int *cast32;       /* [f->n] node of f -> its CAST to f32 in g (-1: none yet) */
    unsigned char *updated; /* [f->n] WEIGHT with an ADAMW */
} builder;

/* The mapped node of f's i viewed through RESHAPEs down to a WEIGHT: that weight, else -1. */
static int weight_root(const ir_graph *f, int i) {
    while (f->nodes[i].op == IR_OP_RESHAPE) i = f->nodes[i].inputs[0];
    return f->nodes[i].op == IR_OP_WEIGHT ? i : -1;
}

/* f's node i (already built) in dtype t in g: itself, the 16-bit copy of a trained weight
 * (with the views re-made on it), or a CAST; each made once. */
static int as_dtype(builder *b, int i, ir_dtype t) {
    const ir_graph *f = b->f;
    ir_graph *g = b->g;
    if (g->nodes[b->map[i]].dtype == t) return b->map[i];
    const ir_node *n = &f->nodes[i];
    int *memo = t == b->h ? b->cast : b->cast32; /* node i in dtype t, once made */
    if (memo[i] >= 0) return memo[i];
    int w = t == b->h ? weight_root(f, i) : -1;
    if (w >= 0 && b->updated[w]) {
        if (b->copy[w] < 0) {
            const ir_node *wn = &f->nodes[w];
            b->copy[w] = ir_leaf(g, IR_OP_STATE, t, wn->ndim, wn->shape,
                                 ir_arena_printf(&g->arena, "%s.%s", ir_dtype_name(t), wn->name), wn->loc);
            if (b->copy[w] < 0) return -1;
        }
        if (i == w) return memo[i] = b->copy[w];
        int in = as_dtype(b, n->inputs[0], t);
        return memo[i] = in < 0 ? -1 : ir_add(g, IR_OP_RESHAPE, &in, 1, &n->attrs, t, n->ndim, n->shape, n->name, n->loc);
    }
    ir_attrs a = {0};
    const char *nm = n->name ? ir_arena_printf(&g->arena, "%s.%s", n->name, ir_dtype_name(t)) : NULL;
    return memo[i] = ir_add(g, IR_OP_CAST, &b->map[i], 1, &a, t, 0, NULL, nm, n->loc);
}

static ir_graph *cast_pass(const ir_graph *f, ir_dtype h, char *err, size_t errsize) {
    int nf = f->n;
    unsigned char *keep = calloc((size_t)nf + 1, 1), *only16 = calloc((size_t)nf + 1, 1);
    builder b = {f, ir_graph_new(), h, malloc(sizeof(int) * (size_t)(nf + 1)), malloc(sizeof(int) * (size_t)(nf + 1)),
                 malloc(sizeof(int) * (size_t)(nf + 1)), malloc(sizeof(int) * (size_t)(nf + 1)),
                 calloc((size_t)nf + 1, 1)};
    if (!keep || !only16 || !b.map || !b.copy || !b.cast || !b.cast32 || !b.updated) abort();
    ir_graph *g = b.g;
    g->info = f->info;
    if (f->info.model_name) g->info.model_name = ir_arena_strdup(&g->arena, f->info.model_name);
    if (f->info.note) g->info.note = ir_arena_strdup(&g->arena, f->info.note);
    for (int i = 0; i < nf; i++) {
        const ir_node *n = &f->nodes[i];
        b.copy[i] = b.cast[i] = b.cast32[i] = -1;
        if (n->op == IR_OP_ADAMW) b.updated[n->inputs[0]] = 1;
        keep[i] = (n->flags & IR_NODE_OUTPUT) || is_keep32(n->op) || n->op == IR_OP_ADAMW;
        /* a view or gather of optimizer state (the loss scaler's seed slice: 65536 is inf in f16) */
        if ((is_gather(n->op) || ir_op_flags(n->op) & IR_OPF_ALIAS) && n->ninputs &&
            f->nodes[n->inputs[0]].op == IR_OP_STATE)
            keep[i] = 1;
        only16[i] = n->op == IR_OP_INPUT && ir_dtype_is_float(n->dtype);
    }
    /* the residual stream: sums a LayerNorm normalizes */
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f->nodes[i].ninputs; k++)
            if (is_layer_norm_x(&f->nodes[i], k) && f->nodes[f->nodes[i].inputs[k]].op == IR_OP_ADD)
                keep[f->nodes[i].inputs[k]] = 1;
    /* a product only f32 values read (the head's, before the logits' bias) is stored f32 */
    unsigned char *read_h = calloc((size_t)nf + 1, 1);
    if (!read_h) abort();
    for (int i = 0; i < nf; i++)
        for (int k = 0; k < f->nodes[i].ninputs; k++)
            read_h[f->nodes[i].inputs[k]] |= !keep[i] || ir_op_flags(f->nodes[i].op) & IR_OPF_ALIAS;
    for (int i = 0; i < nf; i++)
        if (operand16_mask(f->nodes[i].op) && !read_h[i]) keep[i] = 1;
    free(read_h);
    /* f32 through views and gathers to what they read; INPUTs read by anything but 16-bit
     * operands and gathers stay f32 */
    for (int i = nf - 1; i >= 0; i--) {
        const ir_node *n = &f->nodes[i];
        for (int k = 0; k < n->ninputs; k++) {
            int in = n->inputs[k];
            if (keep[i] && (ir_op_flags(n->op) & IR_OPF_ALIAS || is_gather(n->op))) keep[in] = 1;
            if (!(operand16_mask(n->op) >> k & 1) && !(is_gather(n->op) && !keep[i])) only16[in] = 0;
        }
    }
    int rc = 0;
    for (int i = 0; i < nf && !rc; i++) {
        const ir_node *n = &f->nodes[i];
        if (ir_op_flags(n->op) & IR_OPF_LEAF) {
            b.map[i] = ir_copy_node(g, f, i, NULL);
            if (b.map[i] >= 0 && only16[i]) g->nodes[b.map[i]].dtype = h;
            rc = b.map[i] < 0;
            continue;
        }
        ir_dtype own = n->dtype;
        if (ir_dtype_is_float(n->dtype) && !keep[i] && !(ir_op_flags(n->op) & IR_OPF_ALIAS)) own = h;
        int in[IR_MAX_INPUTS], nin = n->ninputs;
        for (int k = 0; k < nin && !rc; k++) {
            int need = input_needs(f, n, k, own, h);
            in[k] = need < 0 ? b.map[n->inputs[k]] : as_dtype(&b, n->inputs[k], (ir_dtype)need);
            rc = in[k] < 0;
        }
        if (rc) break;
        if (ir_op_flags(n->op) & IR_OPF_ALIAS) own = n->op == IR_OP_RESHAPE ? g->nodes[in[0]].dtype : own;
        if (n->op == IR_OP_ADAMW && b.copy[n->inputs[0]] >= 0) in[nin++] = b.copy[n->inputs[0]];
        ir_attrs a = n->attrs;
        if (n->op == IR_OP_MATMUL) a.compute = IR_COMPUTE_32F;
        /* PROJECT: output k's dtype by its op's rule */
        if (n->op == IR_OP_PROJECT) {
            ir_node o;
            ir_node_output(&g->nodes[in[0]], n->attrs.output, &o);
            own = o.dtype;
        }
        int id = ir_add(g, n->op, in, nin, &a, own, n->ndim, n->shape, n->name, n->loc);
        if (id >= 0) {
            g->nodes[id].flags = n->flags;
            g->nodes[id].group = n->group;
            g->nodes[id].chain = n->chain;
        }
        b.map[i] = id;
        rc = id < 0;
    }
    if (rc) snprintf(err, errsize, "precision %s: %s", ir_dtype_name(h), g->error);
    free(keep);
    free(only16);
    free(b.map);
    free(b.copy);
    free(b.cast);
    free(b.cast32);
    free(b.updated);
    if (rc) {
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

int pass_precision_parse(const char *precision, char *err, size_t errsize) {
    static const char *const names[] = {"fp32", "tf32", "fp16", "bf16"};
    for (int k = 0; k < 4; k++)
        if (precision && strcmp(precision, names[k]) == 0) return k;
    snprintf(err, errsize, "--precision %s: unknown (fp32, tf32, fp16, bf16)", precision ? precision : "(none)");
    return -1;
}

ir_graph *pass_precision(ir_graph *g, const char *precision, char *err, size_t errsize) {
    if (!precision || strcmp(precision, "fp32") == 0) return g;
    int k = pass_precision_parse(precision, err, errsize);
    if (k < 0) return NULL;
    if (k == 1) { /* tf32 */
        for (int i = 0; g && i < g->n; i++) {
            ir_node *n = &g->nodes[i];
            if (n->op == IR_OP_MATMUL && g->nodes[n->inputs[0]].dtype == IR_F32 &&
                g->nodes[n->inputs[1]].dtype == IR_F32)
                n->attrs.compute = IR_COMPUTE_TF32;
        }
        return g;
    }
    return g ? cast_pass(g, k == 2 ? IR_F16 : IR_BF16, err, errsize) : g;
}
