/* stats.c: what one training step of a program does, counted from its steps and graph:
 * launches, GEMM calls, FLOPs and modeled device-memory bytes, as a list of work items the
 * cost model (cost_model.c) turns into time. Nothing here is measured.
 *
 * A work item is one GEMM step, or one kernel node with all its launches (a fusion group:
 * its members together, one launch). Its modeled bytes are what it reads plus what it
 * writes, each distinct tensor once:
 *   GEMM     A and B (an operand with batch stride 0 once, else once per batch), C written
 *            (and read when beta != 0), an epilogue's aux matrix and bias vector (gelu-epilogue);
 *            FLOPs 2*M*N*K per matrix (the epilogue's few per element not counted)
 *   kernel   every distinct input's value, every output written (ADAMW: the parameter and
 *            both moments in place), and a two-pass reduction's partial sums written and read
 *            back; FLOPs a per-element count of the op's arithmetic (flops_per_element)
 *   chain    an elementwise chain (bias-gelu, elementwise-chain): the members' values that
 *            are read outside it written, the inputs from outside the chain read once; one
 *            ending in a column sum (bias-gelu-grad, bias-grad, layer-norm-dbeta) adds the
 *            sum's output, and any member's partial sums written and read back
 *   zero     a memset: the bytes written
 * The parts: GEMMs (the linear layers: one operand shared over the batch, or batch 1),
 * attention (batched GEMMs whose both operands are batched, softmax and its gradient, the fused
 * attention and attention_bwd kernels: FLOPs by attention_flops, bytes their tensors, the
 * backward's inputs twice: each of its two kernels reads them; timed at the fp16/bf16 tensor-core
 * peak where the kernels use mma, f16/bf16 with head dims a multiple of 16),
 * LayerNorm, elementwise (pointwise, gathers, sums), loss, optimizer (AdamW, gradient
 * clipping's sum of squares). */
#include "codegen/emit_internal.h"

static const char *const part_names[CG_PART_COUNT] = {"GEMMs", "attention", "LayerNorm", "elementwise", "loss",
                                                      "optimizer"};

const char *cg_part_name(cg_part p) { return (unsigned)p < CG_PART_COUNT ? part_names[p] : "?"; }

cg_peak cg_gemm_peak(const rt_gemm *gm, const char *precision) {
    rt_dtype t = gm->a_type;
    if (t == RT_F16 || t == RT_BF16 || gm->b_type == RT_F16 || gm->b_type == RT_BF16) return CG_PEAK_F16;
    if (precision && strcmp(precision, "tf32") == 0) return CG_PEAK_TF32;
    return CG_PEAK_F32;
}

/* Modeled float operations per element (of the output; reductions: of the input) of a
 * kernel op: a count of its arithmetic to the nearest few, not a measurement. erf is about
 * a dozen operations in CUDA's libdevice (a rational approximation). */
static int64_t flops_per_element(ir_op op, int *per_input) {
    *per_input = 0;
    switch (op) {
    case IR_OP_ADD: case IR_OP_SUB: case IR_OP_MUL: case IR_OP_DIV: case IR_OP_SCALE: case IR_OP_SQRT:
        return 1;
    case IR_OP_ERF: return 12;
    case IR_OP_GELU: return 15;      /* 0.5 * x * (1 + erf(x / sqrt 2)) */
    case IR_OP_GELU_GRAD: return 20; /* dy * (Phi(x) + x * phi(x)): erf and exp */
    case IR_OP_ERF_GRAD: return 5;
    case IR_OP_SUM_TO: case IR_OP_REDUCE_MEAN: *per_input = 1; return 1;
    case IR_OP_SUM_SQUARES: *per_input = 1; return 2;
    case IR_OP_LAYER_NORM: case IR_OP_LAYER_NORM_STATS: *per_input = 1; return 8;
    case IR_OP_LAYER_NORM_DX: case IR_OP_LAYER_NORM_DX_STATS: *per_input = 1; return 10;
    case IR_OP_LAYER_NORM_DGAMMA: *per_input = 1; return 4;
    case IR_OP_SOFTMAX: return 5;
    case IR_OP_SOFTMAX_GRAD: return 4;
    case IR_OP_CROSS_ENTROPY: *per_input = 1; return 4;
    case IR_OP_CROSS_ENTROPY_GRAD: return 5;
    case IR_OP_ADAMW: return 14;
    case IR_OP_EMA: return 3;
    default: return 0; /* copies, gathers, casts, constants, views */
    }
}

static cg_part part_of_op(ir_op op) {
    switch (op) {
    case IR_OP_LAYER_NORM: case IR_OP_LAYER_NORM_DX: case IR_OP_LAYER_NORM_DGAMMA: case IR_OP_LAYER_NORM_STATS:
    case IR_OP_LAYER_NORM_DX_STATS:
        return CG_PART_LAYER_NORM;
    case IR_OP_SOFTMAX: case IR_OP_SOFTMAX_GRAD: case IR_OP_ATTENTION: case IR_OP_ATTENTION_BWD:
        return CG_PART_ATTENTION;
    case IR_OP_CROSS_ENTROPY: case IR_OP_CROSS_ENTROPY_GRAD: return CG_PART_LOSS;
    case IR_OP_ADAMW: case IR_OP_CLIP_COEF: case IR_OP_SUM_SQUARES: case IR_OP_LOSS_SCALE_OPT:
    case IR_OP_LOSS_SCALE_UPDATE: case IR_OP_EMA:
        return CG_PART_OPTIMIZER;
    default: return CG_PART_ELEMENTWISE;
    }
}

/* FLOPs of the fused attention kernels (emit_attention.c), per (batch, head) with N x N
 * scores of hd-long dot products: forward Q K^T and P V (2 N^2 hd each) and the softmax (about
 * 5 N^2: max, exp, sum, rescale); backward S and dP recomputed by both of its kernels (4 x 2 N^2
 * hd), dV, dK, dQ (3 x 2 N^2 hd) and P, dS (about 6 N^2, twice). */
static int64_t attention_flops(const ir_graph *g, const ir_node *n) {
    const ir_node *qkv = &g->nodes[n->inputs[n->op == IR_OP_ATTENTION ? 0 : 1]];
    int64_t B = qkv->shape[0], N = qkv->shape[1], H = n->attrs.heads, hd = qkv->shape[2] / 3 / H;
    int64_t nn = B * H * N * N;
    return n->op == IR_OP_ATTENTION ? nn * (4 * hd + 5) : nn * (14 * hd + 12);
}

static int64_t value_bytes(const ir_node *n) {
    if (ir_op_outputs(n->op) > 1) return pass_mem_bytes(n); /* every output (each 256-aligned) */
    return ir_numel(n) * (int64_t)ir_dtype_size(n->dtype);
}

/* Reads + writes and FLOPs of kernel node i (not a GEMM), with `launches` launches. */
static void kernel_node_cost(const cg_program *p, int i, int launches, int64_t *bytes, int64_t *flops) {
    const ir_graph *g = p->g;
    const ir_node *n = &g->nodes[i];
    int64_t b = value_bytes(n), in_elems = 0;
    for (int k = 0; k < n->ninputs; k++) {
        int dup = 0;
        for (int q = 0; q < k; q++) dup |= n->inputs[q] == n->inputs[k];
        if (dup) continue;
        const ir_node *x = &g->nodes[n->inputs[k]];
        b += value_bytes(x);
        if (k == 0) in_elems = ir_numel(x);
    }
    if (n->op == IR_OP_ADAMW) /* m and v are updated in place besides the parameter */
        b += value_bytes(&g->nodes[n->inputs[2]]) + value_bytes(&g->nodes[n->inputs[3]]);
    if (launches > 1 && p->mem->scratch_offset[i] >= 0) /* partial sums: written, read back */
        b += 2 * cg_scratch_bytes(g, i);
    int per_input;
    int64_t f = flops_per_element(n->op, &per_input);
    if (n->op == IR_OP_SUM_SQUARES) { /* over all its inputs */
        in_elems = 0;
        for (int k = 0; k < n->ninputs; k++) in_elems += ir_numel(&g->nodes[n->inputs[k]]);
    }
    *flops = f * (per_input ? in_elems : ir_numel(n));
    if (n->op == IR_OP_ATTENTION || n->op == IR_OP_ATTENTION_BWD) *flops = attention_flops(g, n);
    if (n->op == IR_OP_ATTENTION_BWD) /* its second kernel (dq) reads the inputs again */
        for (int k = 0; k < n->ninputs; k++) b += value_bytes(&g->nodes[n->inputs[k]]);
    *bytes = b;
}

/* An elementwise chain from its first member `first`: the values it stores written, each
 * distinct input from outside the chain read once (what the chain kernel does). */
static void chain_cost(const cg_program *p, int first, int64_t *bytes, int64_t *flops) {
    const ir_graph *g = p->g;
    int chain = g->nodes[first].chain;
    *bytes = *flops = 0;
    for (int m = first; m < g->n; m++) {
        const ir_node *n = &g->nodes[m];
        if (ir_op_flags(n->op) & IR_OPF_LEAF) continue; /* a LayerNorm's gamma and beta sit before it */
        if (n->chain != chain) break;
        int per_input;
        if (cg_chain_stores(g, m)) *bytes += value_bytes(n);
        int64_t f = flops_per_element(n->op, &per_input);
        *flops += f * (per_input ? ir_numel(&g->nodes[n->inputs[0]]) : ir_numel(n));
        if (p->mem->scratch_offset[m] >= 0) *bytes += 2 * cg_scratch_bytes(g, m); /* partial sums */
        if (n->op == IR_OP_SUM_TO) continue; /* its input: the member before it (or its dy), read already */
        for (int k = 0; k < n->ninputs; k++) {
            int in = n->inputs[k], seen = g->nodes[in].chain == chain;
            for (int q = first; q < m && !seen; q++)
                for (int j = 0; j < g->nodes[q].ninputs; j++) seen |= g->nodes[q].inputs[j] == in;
            for (int j = 0; j < k; j++) seen |= n->inputs[j] == in;
            if (!seen) *bytes += value_bytes(&g->nodes[in]);
        }
    }
}

static void gemm_cost(const rt_gemm *gm, int64_t *bytes, int64_t *flops) {
    int64_t na = gm->stride_a ? gm->batch : 1, nb = gm->stride_b ? gm->batch : 1;
    int64_t c = gm->batch * gm->m * gm->n * (int64_t)rt_dtype_size(gm->c_type);
    *bytes = na * gm->m * gm->k * (int64_t)rt_dtype_size(gm->a_type) +
             nb * gm->k * gm->n * (int64_t)rt_dtype_size(gm->b_type) + c * (gm->beta != 0 ? 2 : 1);
    if (gm->epilogue != RT_EPILOGUE_NONE) /* aux [m, n] written (GELU_AUX_BIAS) or read (DGELU), bias [n] */
        *bytes += gm->m * gm->n * (int64_t)rt_dtype_size(gm->c_type) + gm->n * (int64_t)rt_dtype_size(gm->c_type);
    *flops = 2 * gm->batch * gm->m * gm->n * gm->k;
}

static cg_work *add_item(cg_stats *s) {
    if (s->nitems == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->items = realloc(s->items, sizeof *s->items * (size_t)s->cap);
        if (!s->items) abort();
    }
    cg_work *w = &s->items[s->nitems++];
    memset(w, 0, sizeof *w);
    return w;
}

void cg_stats_of(const cg_program *p, cg_stats *s) {
    memset(s, 0, sizeof *s);
    const ir_graph *g = p->g;
    s->distinct_kernels = p->nkernels;
    s->batch = g->info.batch > 0 ? g->info.batch : 1;
    s->precision = p->precision;
    s->arena_bytes = p->mem->arena_bytes;
    s->peak_bytes = p->mem->peak_bytes;
    for (int st = 0; st < p->nsteps;) {
        const rt_plan_step *step = &p->steps[st];
        int node = p->step_node[st];
        cg_work *w = add_item(s);
        w->node = node;
        if (step->kind == RT_STEP_GEMM) {
            const rt_gemm *gm = &step->gemm;
            gemm_cost(gm, &w->bytes, &w->flops);
            w->launches = w->gemms = 1;
            w->peak = cg_gemm_peak(gm, p->precision);
            w->part = gm->batch > 1 && gm->stride_a && gm->stride_b ? CG_PART_ATTENTION : CG_PART_GEMM;
            st++;
        } else if (step->kind == RT_STEP_ZERO) {
            w->bytes = (int64_t)step->bytes;
            w->launches = 1;
            w->part = CG_PART_ELEMENTWISE;
            st++;
        } else { /* a kernel node: all its consecutive launches */
            int end = st;
            while (end < p->nsteps && p->step_node[end] == node && p->steps[end].kind == RT_STEP_KERNEL) end++;
            w->launches = end - st;
            int group = g->nodes[node].group;
            w->part = part_of_op(g->nodes[node].op);
            if ((g->nodes[node].op == IR_OP_ATTENTION || g->nodes[node].op == IR_OP_ATTENTION_BWD) &&
                cg_attention_mma(g, &g->nodes[node]))
                w->peak = CG_PEAK_F16; /* its products on tensor cores (the exp and scaling FLOPs are few) */
            if (g->nodes[node].chain) {
                chain_cost(p, node, &w->bytes, &w->flops);
                st = end;
                goto counted;
            }
            for (int k = 0; k < g->n; k++) { /* a fusion group: every member's work */
                if (k != node && (!group || g->nodes[k].group != group)) continue;
                int64_t b, f;
                kernel_node_cost(p, k, k == node ? w->launches : 1, &b, &f);
                w->bytes += b;
                w->flops += f;
            }
            st = end;
        }
    counted:
        s->launches += w->launches;
        s->gemm_calls += w->gemms;
        s->bytes += w->bytes;
        if (w->gemms) {
            s->gemm_flops += w->flops;
            s->gemm_flops_at[w->peak] += w->flops;
        } else {
            s->other_flops += w->flops;
        }
    }
}

void cg_stats_free(cg_stats *s) {
    free(s->items);
    memset(s, 0, sizeof *s);
}
