/* emit_pointwise.c: the pointwise family: elementwise ops (arithmetic, GELU, erf, cast, expand,
 * const: y[i] = expr of the inputs read with broadcasting) and gathers (permute, slice, pad,
 * concat, patchify, unpatchify). One thread per output element, or per 16 bytes of output (4
 * f32 through dc_load4/dc_store4, 8 f16/bf16 through dc_load8/dc_store8) where every input
 * allows it; grid-stride loop, 256 threads, at most 8192 blocks. Elementwise expressions come
 * from one builder (cg_expr_op): an op and its operands' expressions make the op's expression,
 * so a chain of elementwise nodes composes into one expression (one kernel). */
#include "codegen/emit_internal.h"

#include <ctype.h>

/* Opens the grid-stride loop over the node's elements (variable i). */
void cg_loop_open(launch *l, int64_t total) {
    const char *it = idx_type(total);
    cg_sb_printf(&l->body, "    for (%s i = (%s)blockIdx.x * blockDim.x + threadIdx.x; i < %lld; i += (%s)gridDim.x * blockDim.x) {\n",
              it, it, (long long)total, it);
}

void cg_loop_close(emitter *e, launch *l, int64_t total) {
    cg_sb_printf(&l->body, "    }\n");
    cg_finish(e, l, stride_grid(total), 256);
}

/* ---- the expression builder ------------------------------------------------------------ */

/* Whether s can stand as an operand without parentheses: a name, a number or a member access
 * ("a", "1.5f", "a4.x"), optionally followed by one bracketed call or index that ends it
 * ("dc_erf(a)", "x0[i]"). */
static int is_atom(const char *s) {
    const char *p = s;
    while (*p && (isalnum((unsigned char)*p) || *p == '_' || *p == '.')) p++;
    if (p == s) return 0;
    if (!*p) return 1;
    if (*p != '(' && *p != '[') return 0;
    int depth = 0;
    for (; *p; p++) {
        if (*p == '(' || *p == '[') depth++;
        else if ((*p == ')' || *p == ']') && --depth == 0) return p[1] == 0;
    }
    return 0;
}

/* the op's float expression as a template: $a, $b an operand as is (a call's argument), @a, @b
 * an operand in an operator's place (parenthesized unless an atom); NULL: not elementwise */
static const char *expr_template(const ir_node *n) {
    switch (n->op) {
    case IR_OP_ADD: return "@a + @b";
    case IR_OP_SUB: return "@a - @b";
    case IR_OP_MUL: return "@a * @b";
    case IR_OP_DIV: return "@a / @b";
    case IR_OP_SCALE: return "@a * %s";
    case IR_OP_SQRT: return "dc_sqrt($a)";
    case IR_OP_ERF: return "dc_erf($a)";
    case IR_OP_GELU: return n->attrs.gelu_tanh ? "dc_gelu_tanh($a)" : "dc_gelu_erf($a)";
    case IR_OP_GELU_GRAD: return n->attrs.gelu_tanh ? "@a * dc_gelu_tanh_grad($b)" : "@a * dc_gelu_erf_grad($b)";
    case IR_OP_ERF_GRAD: return "@a * 1.12837917f * dc_exp(-@b * @b)";
    case IR_OP_CAST: case IR_OP_EXPAND: return "$a";
    case IR_OP_CONST: return "%s";
    default: return NULL;
    }
}

char *cg_expr_op(const ir_node *n, const char *const *operands) {
    const char *tpl = expr_template(n);
    assert(tpl);
    char lit[64];
    cg_flit(lit, sizeof lit, n->attrs.alpha); /* SCALE's factor, CONST's value */
    sb b = {0};
    cg_sb_printf(&b, "%s", "");
    for (const char *p = tpl; *p; p++) {
        if ((*p == '$' || *p == '@') && (p[1] == 'a' || p[1] == 'b')) {
            const char *x = operands[p[1] - 'a'];
            if (*p == '@' && !is_atom(x)) cg_sb_printf(&b, "(%s)", x);
            else cg_sb_printf(&b, "%s", x);
            p++;
        } else if (*p == '%' && p[1] == 's') {
            cg_sb_printf(&b, "%s", lit);
            p++;
        } else {
            cg_sb_printf(&b, "%c", *p);
        }
    }
    return b.s;
}

char *cg_expr_value(const ir_node *n, const char *const *operands) {
    char *e = cg_expr_op(n, operands);
    sb b = {0};
    switch (n->dtype) { /* the value as stored: rounded to the node's dtype */
    case IR_F16: cg_sb_printf(&b, "dc_h2f(dc_f2h(%s))", e); break;
    case IR_BF16: cg_sb_printf(&b, "dc_b2f(dc_f2b(%s))", e); break;
    case IR_I32: cg_sb_printf(&b, "(float)(int)(%s)", e); break;
    case IR_I64: cg_sb_printf(&b, "(float)(long long)(%s)", e); break;
    default: cg_sb_printf(&b, "%s", e); break;
    }
    free(e);
    return b.s;
}

/* ---- elementwise kernels ------------------------------------------------------------------ */

/* How an elementwise input is read when W consecutive outputs go together (16 bytes of output:
 * W = 4 f32, 8 f16/bf16). VEC_LOAD: outputs Wj..Wj+W-1 read W consecutive, aligned input
 * elements (same shape, or a broadcast whose innermost run, like a bias over the last dim, is a
 * multiple of W); VEC_SPLAT: they all read one element (a scalar, or broadcast along a last dim
 * of W k). */
typedef enum { VEC_NO, VEC_LOAD, VEC_SPLAT } vec_kind;

static vec_kind vec_kind_of(const term *t, int nt, int W) {
    if (nt == 0) return VEC_SPLAT;
    if (t[0].div == 1 && t[0].mul == 1 && t[0].mod % W == 0) return VEC_LOAD;
    for (int k = 0; k < nt; k++)
        if (t[k].div % W) return VEC_NO;
    return VEC_SPLAT;
}

static int is16(ir_dtype t) { return t == IR_F16 || t == IR_BF16; }

/* the 16-byte vector width in elements of a dtype (0: no vector access) */
static int vec_width(ir_dtype t) { return t == IR_F32 ? 4 : is16(t) ? 8 : 0; }

/* W outputs at a time: i counts vectors ("i4", "i8"), i = W * iW the first element */
static void vec_loop_open(sb *b, int W, int64_t total) {
    const char *it = idx_type(total);
    cg_sb_printf(b, "    for (%s i%d = (%s)blockIdx.x * blockDim.x + threadIdx.x; i%d < %lld; i%d += (%s)gridDim.x * blockDim.x) {\n",
                 it, W, it, W, (long long)total / W, W, it);
    cg_sb_printf(b, "        const %s i = %d * i%d;\n", it, W, W);
}

/* y[i] = expr, with expr over a, b: the node's inputs loaded with broadcasting (cg_expr_op).
 * Where the inputs allow it, 16 bytes of output at a time: 4 f32 (dc_load4/dc_store4), 8 f16
 * or bf16 (dc_load8/dc_store8; f32 inputs as two float4). */
int cg_emit_elementwise(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    l.tag = ir_op_name(n->op);
    char c2[320], ref[512], lb[600];
    int64_t total = ir_numel(n);
    term t[2][IR_MAX_DIMS];
    int nt[2];
    vec_kind vk[2];
    const int W = vec_width(n->dtype);
    int vec = W && total % W == 0 && n->ninputs <= 2;
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    for (int k = 0; k < n->ninputs; k++) {
        const ir_node *in = &e->g->nodes[n->inputs[k]];
        char nm[16];
        snprintf(nm, sizeof nm, "x%d", k);
        param(&l, in_type(in->dtype), nm, off_of(e, n->inputs[k]));
        nt[k] = cg_bcast_terms(in, n->ndim, n->shape, t[k]);
        vk[k] = W ? vec_kind_of(t[k], nt[k], W) : VEC_NO;
        /* a vector read: f32 (W / 4 float4s) or 16-bit inputs of 8; integers element by element */
        int readable = vk[k] == VEC_SPLAT ? 1 : in->dtype == IR_F32 || (is16(in->dtype) && W == 8);
        if (vk[k] == VEC_NO || !readable || (W == 4 && in->dtype != IR_F32)) vec = 0;
    }
    static const char *const names[2] = {"a", "b"};
    char *expr = cg_expr_op(n, names);
    if (!vec) {
        cg_loop_open(&l, total);
        for (int k = 0; k < n->ninputs; k++) {
            const ir_node *in = &e->g->nodes[n->inputs[k]];
            sb idx = {0};
            cg_emit_terms(&idx, "i", t[k], nt[k]);
            snprintf(ref, sizeof ref, "x%d[%s]", k, idx.s);
            free(idx.s);
            cg_sb_printf(&l.body, "        const float %c = %s;\n", 'a' + k, cg_ld(lb, sizeof lb, in->dtype, ref));
        }
        cg_sb_printf(&l.body, "        y[i] = %s;\n", cg_st(c2, sizeof c2, n->dtype, expr));
        free(expr);
        cg_loop_close(e, &l, total);
        return 0;
    }
    sb *b = &l.body;
    vec_loop_open(b, W, total);
    for (int k = 0; k < n->ninputs; k++) {
        const ir_node *in = &e->g->nodes[n->inputs[k]];
        sb idx = {0};
        cg_emit_terms(&idx, "i", t[k], nt[k]);
        if (vk[k] == VEC_LOAD && in->dtype == IR_F32 && W == 4)
            cg_sb_printf(b, "        const float4 %c4 = dc_load4(x%d + %s);\n", 'a' + k, k, idx.s);
        else if (vk[k] == VEC_LOAD && in->dtype == IR_F32)
            cg_sb_printf(b, "        const float4 %c4 = dc_load4(x%d + %s), %c4hi = dc_load4(x%d + %s + 4);\n", 'a' + k, k,
                         idx.s, 'a' + k, k, idx.s);
        else if (vk[k] == VEC_LOAD)
            cg_sb_printf(b, "        const %s %c8 = dc_load8(x%d + %s);\n", in->dtype == IR_F16 ? "dc_half8" : "dc_bf16x8",
                         'a' + k, k, idx.s);
        else if (in->dtype == IR_F32)
            cg_sb_printf(b, "        const float %c = x%d[%s];\n", 'a' + k, k, idx.s);
        else {
            snprintf(ref, sizeof ref, "x%d[%s]", k, idx.s);
            cg_sb_printf(b, "        const float %c = %s;\n", 'a' + k, cg_ld(lb, sizeof lb, in->dtype, ref));
        }
        free(idx.s);
    }
    /* the expression as a lambda of the scalar inputs, applied to each component */
    cg_sb_printf(b, "        const auto f = [](%s%s%s) { return %s; };\n", n->ninputs > 0 ? "float a" : "",
              n->ninputs > 1 ? ", " : "", n->ninputs > 1 ? "float b" : "", expr);
    free(expr);
    const char comp[4] = {'x', 'y', 'z', 'w'};
    if (W == 4)
        cg_sb_printf(b, "        dc_store4(y + i, make_float4(");
    else
        cg_sb_printf(b, "        %s r;\n", n->dtype == IR_F16 ? "dc_half8" : "dc_bf16x8");
    for (int c = 0; c < W; c++) {
        if (W == 4) cg_sb_printf(b, "%sf(", c ? ", " : "");
        else cg_sb_printf(b, "        r.v[%d] = %s(f(", c, n->dtype == IR_F16 ? "dc_f2h" : "dc_f2b");
        for (int k = 0; k < n->ninputs; k++) {
            const ir_node *in = &e->g->nodes[n->inputs[k]];
            cg_sb_printf(b, "%s", k ? ", " : "");
            if (vk[k] != VEC_LOAD) cg_sb_printf(b, "%c", 'a' + k);
            else if (in->dtype == IR_F32) cg_sb_printf(b, "%c4%s.%c", 'a' + k, c >= 4 ? "hi" : "", comp[c % 4]);
            else cg_sb_printf(b, "%s(%c8.v[%d])", in->dtype == IR_F16 ? "dc_h2f" : "dc_b2f", 'a' + k, c);
        }
        cg_sb_printf(b, W == 4 ? ")" : "));\n");
    }
    if (W == 4) cg_sb_printf(b, "));\n    }\n");
    else cg_sb_printf(b, "        dc_store8(y + i, r);\n    }\n");
    cg_finish(e, &l, stride_grid(total / W), 256);
    return 0;
}

/* ---- elementwise chains ------------------------------------------------------------------- */

int cg_chain_stores(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    if (!n->chain || n->flags & IR_NODE_OUTPUT) return 1;
    for (int j = i + 1; j < g->n; j++)
        for (int k = 0; k < g->nodes[j].ninputs; k++)
            if (g->nodes[j].inputs[k] == i && g->nodes[j].chain != n->chain) return 1;
    return 0;
}

int cg_chain_params(emitter *e, launch *l, const int *nodes, int count, int from, int *ext) {
    const ir_graph *g = e->g;
    char name[16];
    int next = 0;
    for (int m = 0; m < count; m++) {
        if (!cg_chain_stores(g, nodes[m])) continue;
        snprintf(name, sizeof name, "y%d", m);
        param(l, out_type(g->nodes[nodes[m]].dtype), name, off_of(e, nodes[m]));
    }
    for (int m = from; m < count; m++) {
        const ir_node *n = &g->nodes[nodes[m]];
        for (int k = 0; k < n->ninputs; k++) {
            int in = n->inputs[k], seen = 0;
            for (int q = 0; q < m; q++) seen |= nodes[q] == in;
            for (int q = 0; q < next; q++) seen |= ext[q] == in;
            if (seen) continue;
            ext[next] = in;
            snprintf(name, sizeof name, "x%d", next++);
            param(l, in_type(g->nodes[in].dtype), name, off_of(e, in));
        }
    }
    return next;
}

void cg_chain_values(const ir_graph *g, sb *b, const int *nodes, int count, int from, const int *ext, int next,
                     const ir_node *shape, const char *indent) {
    char ref[512], lb[600], st[900];
    for (int q = 0; q < next; q++) {
        const ir_node *in = &g->nodes[ext[q]];
        term t[IR_MAX_DIMS];
        int nt = cg_bcast_terms(in, shape->ndim, shape->shape, t);
        sb idx = {0};
        cg_emit_terms(&idx, "i", t, nt);
        snprintf(ref, sizeof ref, "x%d[%s]", q, idx.s);
        free(idx.s);
        cg_sb_printf(b, "%sconst float a%d = %s;\n", indent, q, cg_ld(lb, sizeof lb, in->dtype, ref));
    }
    for (int m = from; m < count; m++) {
        const ir_node *n = &g->nodes[nodes[m]];
        char ops[2][16] = {"", ""};
        const char *operands[2] = {ops[0], ops[1]};
        for (int k = 0; k < n->ninputs && k < 2; k++) {
            int in = n->inputs[k];
            for (int q = 0; q < m; q++)
                if (nodes[q] == in) snprintf(ops[k], sizeof ops[k], "v%d", q);
            for (int q = 0; q < next; q++)
                if (ext[q] == in) snprintf(ops[k], sizeof ops[k], "a%d", q);
        }
        char *v = cg_expr_value(n, operands); /* rounded to n's dtype: what an unfused reader reads */
        cg_sb_printf(b, "%sconst float v%d = %s;\n", indent, m, v);
        free(v);
        if (!cg_chain_stores(g, nodes[m])) continue;
        snprintf(ref, sizeof ref, "v%d", m);
        cg_sb_printf(b, "%sy%d[i] = %s;\n", indent, m, cg_st(st, sizeof st, n->dtype, ref));
    }
}

void cg_chain_name_step(emitter *e, const int *nodes, int count) {
    rt_plan_step *step = &e->p->steps[e->p->nsteps - 1];
    cg_kernel *kn = &e->p->kernels[step->kernel];
    sb what = {0};
    cg_sb_printf(&what, "%s", step->what);
    for (int m = 1; m < count; m++) {
        char *label = cg_node_label(e->g, nodes[m]);
        cg_sb_printf(&what, ", %s", label);
        free(label);
    }
    free((void *)step->what);
    step->what = what.s;
    if (kn->nuses == 1) {
        free(kn->nodes);
        kn->nodes = xstrdup(what.s);
    }
}

void cg_emit_chain(emitter *e, const int *nodes, int count) {
    const ir_graph *g = e->g;
    const ir_node *root = &g->nodes[nodes[count - 1]];
    if (g->nodes[nodes[0]].op == IR_OP_LAYER_NORM_DGAMMA) { /* with dbeta: emit_rows.c */
        cg_emit_layer_norm_dgamma_dbeta(e, nodes, count);
        return;
    }
    if (g->nodes[nodes[0]].op == IR_OP_CROSS_ENTROPY) { /* with its gradient: emit_rows.c */
        cg_emit_cross_entropy_with_grad(e, nodes, count);
        return;
    }
    if (g->nodes[nodes[0]].op == IR_OP_LAYER_NORM_DX) { /* starts with a LayerNorm dx: emit_chain_rows.c */
        cg_emit_chain_layer_norm_dx(e, nodes, count);
        return;
    }
    if (root->op == IR_OP_SUM_TO) { /* ends in a column sum: emit_chain_reduce.c */
        cg_emit_chain_reduce(e, nodes, count);
        return;
    }
    if (root->op == IR_OP_LAYER_NORM) { /* ends in a LayerNorm: emit_chain_rows.c */
        cg_emit_chain_layer_norm(e, nodes, count);
        return;
    }
    launch l = {0};
    int bias_gelu = count == 2 && g->nodes[nodes[0]].op == IR_OP_ADD && root->op == IR_OP_GELU;
    l.tag = bias_gelu ? "bias_gelu" : "chain";
    int64_t total = ir_numel(root);
    int ext[CG_MAX_PARAMS]; /* the distinct inputs from outside the chain */
    int next = cg_chain_params(e, &l, nodes, count, 0, ext);
    cg_loop_open(&l, total);
    cg_chain_values(g, &l.body, nodes, count, 0, ext, next, root, "        ");
    int saved = e->node;
    e->node = nodes[0];
    cg_loop_close(e, &l, total);
    e->node = saved;
    /* the step (and a kernel's first use) names every member: "%35 a, %36 b" */
    cg_chain_name_step(e, nodes, count);
}

/* outer/len/inner view of a node around axis: i = (o * len + k) * inner + r */
static void axis_view(const ir_node *n, int64_t axis, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int d = 0; d < axis; d++) *outer *= n->shape[d];
    for (int d = (int)axis + 1; d < n->ndim; d++) *inner *= n->shape[d];
}

int cg_emit_gather(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *x = &e->g->nodes[n->inputs[0]];
    launch l = {0};
    l.tag = ir_op_name(n->op);
    char lb[600], sbuf[700];
    int64_t total = ir_numel(n);
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    for (int k = 0; k < n->ninputs; k++) {
        char nm[16];
        snprintf(nm, sizeof nm, "x%d", k);
        param(&l, in_type(e->g->nodes[n->inputs[k]].dtype), nm, off_of(e, n->inputs[k]));
    }
    /* 16 bytes at a time (W = 4 f32, 8 f16/bf16) where every output run of W comes from W
     * aligned consecutive inputs (all of the node's dtype, as a gather's shape rule says) */
    const int W = vec_width(n->dtype);
    int vec = W && total % W == 0;
    for (int k = 0; k < n->ninputs; k++) vec &= e->g->nodes[n->inputs[k]].dtype == n->dtype;
    if (n->op == IR_OP_PERMUTE) {
        int d = n->ndim - 1;
        int64_t run = n->shape[d];
        while (d > 0 && n->attrs.perm[d - 1] == n->attrs.perm[d] - 1) run *= n->shape[--d];
        vec &= n->attrs.perm[n->ndim - 1] == n->ndim - 1 && W && run % W == 0;
    } else if (n->op == IR_OP_PATCHIFY || n->op == IR_OP_UNPATCHIFY) {
        vec &= W && n->attrs.patch % W == 0;
    } else {
        int64_t outer, inner;
        axis_view(n, n->attrs.axis, &outer, &inner);
        vec &= W && inner % W == 0;
    }
    const char *it = idx_type(total);
    sb *b = &l.body;
    if (vec) vec_loop_open(b, W, total);
    else cg_loop_open(&l, total);
    /* a copy is `<open>x0[...]<close>;` */
    const char *open = !vec ? "y[i] = " : W == 4 ? "dc_store4(y + i, dc_load4(&" : "dc_store8(y + i, dc_load8(&";
    const char *close = vec ? "))" : "";
    switch (n->op) {
    case IR_OP_PERMUTE: {
        int64_t istride[IR_MAX_DIMS], ostride[IR_MAX_DIMS];
        for (int d = x->ndim - 1, s = 1; d >= 0; d--) {
            istride[d] = s;
            s *= (int)x->shape[d];
        }
        for (int d = n->ndim - 1, s = 1; d >= 0; d--) {
            ostride[d] = s;
            s *= (int)n->shape[d];
        }
        term t[IR_MAX_DIMS];
        int nt = 0;
        for (int d = n->ndim - 1; d >= 0;) {
            /* merge d with earlier dims while they stay consecutive in the input */
            int e0 = d;
            int64_t size = n->shape[d];
            while (d > 0 && n->attrs.perm[d - 1] == n->attrs.perm[d] - 1) size *= n->shape[--d];
            t[nt].div = ostride[e0];
            t[nt].mod = d == 0 ? 0 : size;
            t[nt].mul = istride[n->attrs.perm[e0]];
            nt++;
            d--;
        }
        sb idx = {0};
        cg_emit_terms(&idx, "i", t, nt);
        snprintf(sbuf, sizeof sbuf, "x0[%s]", idx.s);
        free(idx.s);
        cg_sb_printf(b, "        %s%s%s;\n", open, sbuf, close);
        break;
    }
    case IR_OP_SLICE: {
        int64_t outer, inner, len = n->attrs.end - n->attrs.start, dim = x->shape[n->attrs.axis];
        axis_view(n, n->attrs.axis, &outer, &inner);
        cg_sb_printf(b, "        const %s o = i / %lld, k = i / %lld %% %lld, r = i %% %lld;\n", it,
                  (long long)(len * inner), (long long)inner, (long long)len, (long long)inner);
        cg_sb_printf(b, "        %sx0[(o * %lld + %lld + k) * %lld + r]%s;\n", open, (long long)dim,
                  (long long)n->attrs.start, (long long)inner, close);
        break;
    }
    case IR_OP_PAD: {
        int64_t outer, inner, len = n->attrs.end - n->attrs.start, dim = n->shape[n->attrs.axis];
        axis_view(n, n->attrs.axis, &outer, &inner);
        char zero[64];
        cg_st(zero, sizeof zero, n->dtype, "0.0f");
        cg_sb_printf(b, "        const %s o = i / %lld, k = i / %lld %% %lld - %lld, r = i %% %lld;\n", it,
                  (long long)(dim * inner), (long long)inner, (long long)dim, (long long)n->attrs.start,
                  (long long)inner);
        cg_sb_printf(b, "        if (k >= 0 && k < %lld) %sx0[(o * %lld + k) * %lld + r]%s;\n", (long long)len, open,
                  (long long)len, (long long)inner, close);
        if (vec && W == 4) cg_sb_printf(b, "        else dc_store4(y + i, make_float4(0.0f, 0.0f, 0.0f, 0.0f));\n");
        else if (vec) cg_sb_printf(b, "        else dc_store8(y + i, %s{});\n", n->dtype == IR_F16 ? "dc_half8" : "dc_bf16x8");
        else cg_sb_printf(b, "        else y[i] = %s;\n", zero);
        break;
    }
    case IR_OP_CONCAT: {
        int64_t outer, inner, dim = n->shape[n->attrs.axis], at = 0;
        axis_view(n, n->attrs.axis, &outer, &inner);
        cg_sb_printf(b, "        const %s o = i / %lld, k = i / %lld %% %lld, r = i %% %lld;\n", it,
                  (long long)(dim * inner), (long long)inner, (long long)dim, (long long)inner);
        for (int q = 0; q < n->ninputs; q++) {
            int64_t len = e->g->nodes[n->inputs[q]].shape[n->attrs.axis];
            if (q + 1 < n->ninputs) cg_sb_printf(b, "        %sif (k < %lld) ", q ? "else " : "", (long long)(at + len));
            else cg_sb_printf(b, "        %s", q ? "else " : "");
            cg_sb_printf(b, "%sx%d[(o * %lld + k - %lld) * %lld + r]%s;\n", open, q, (long long)len, (long long)at,
                      (long long)inner, close);
            at += len;
        }
        break;
    }
    case IR_OP_FLIP_BATCH: {
        int64_t nb = n->shape[0], inner = nb ? total / nb : 0;
        cg_sb_printf(b, "        const %s bt = i / %lld, r = i %% %lld;\n", it, (long long)inner, (long long)inner);
        cg_sb_printf(b, "        %sx0[(%lld - bt) * %lld + r]%s;\n", open, (long long)(nb - 1), (long long)inner, close);
        break;
    }
    case IR_OP_PATCHIFY: {
        int64_t P = n->attrs.patch, C = x->shape[1], H = x->shape[2], W = x->shape[3];
        int64_t pw = W / P, np = (H / P) * pw, K = C * P * P;
        cg_sb_printf(b, "        const %s bt = i / %lld, p = i / %lld %% %lld, k = i %% %lld;\n", it,
                  (long long)(np * K), (long long)K, (long long)np, (long long)K);
        cg_sb_printf(b, "        const %s c = k / %lld, yy = p / %lld * %lld + k / %lld %% %lld, xx = p %% %lld * %lld + k %% %lld;\n",
                  it, (long long)(P * P), (long long)pw, (long long)P, (long long)P, (long long)P,
                  (long long)pw, (long long)P, (long long)P);
        cg_sb_printf(b, "        %sx0[((bt * %lld + c) * %lld + yy) * %lld + xx]%s;\n", open, (long long)C, (long long)H,
                  (long long)W, close);
        break;
    }
    case IR_OP_UNPATCHIFY: {
        int64_t P = n->attrs.patch, C = n->shape[1], H = n->shape[2], W = n->shape[3];
        int64_t pw = W / P, np = (H / P) * pw, K = C * P * P;
        cg_sb_printf(b, "        const %s bt = i / %lld, c = i / %lld %% %lld, yy = i / %lld %% %lld, xx = i %% %lld;\n",
                  it, (long long)(C * H * W), (long long)(H * W), (long long)C, (long long)W, (long long)H,
                  (long long)W);
        cg_sb_printf(b, "        const %s p = yy / %lld * %lld + xx / %lld, k = c * %lld + yy %% %lld * %lld + xx %% %lld;\n",
                  it, (long long)P, (long long)pw, (long long)P, (long long)(P * P), (long long)P,
                  (long long)P, (long long)P);
        cg_sb_printf(b, "        %sx0[(bt * %lld + p) * %lld + k]%s;\n", open, (long long)np, (long long)K, close);
        break;
    }
    default:
        assert(0);
    }
    (void)lb;
    if (vec) {
        cg_sb_printf(b, "    }\n");
        cg_finish(e, &l, stride_grid(total / W), 256);
    } else {
        cg_loop_close(e, &l, total);
    }
    return 0;
}
