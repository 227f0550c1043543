/* emit_pointwise.c: the pointwise family: elementwise ops (arithmetic, GELU, erf, cast, expand,
 * const: y[i] = expr of the inputs read with broadcasting) and gathers (permute, slice, pad,
 * concat, patchify, unpatchify). One thread per output element, or per 4 (float4 through
 * dc_load4/dc_store4) where every input allows it; grid-stride loop, 256 threads, at most 8192
 * blocks. */
#include "codegen/emit_internal.h"

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

/* How an elementwise input is read when four consecutive outputs go together (float4). */
typedef enum { VEC_NO, VEC_LOAD4, VEC_SPLAT } vec_kind;

/* VEC_LOAD4: outputs 4j..4j+3 read 4 consecutive, 16-byte aligned input elements (same shape,
 * or a broadcast whose innermost run, like a bias over the last dim, is a multiple of 4);
 * VEC_SPLAT: they all read one element (a scalar, or broadcast along a last dim of 4k). */
static vec_kind vec_kind_of(const term *t, int nt) {
    if (nt == 0) return VEC_SPLAT;
    if (t[0].div == 1 && t[0].mul == 1 && t[0].mod % 4 == 0) return VEC_LOAD4;
    for (int k = 0; k < nt; k++)
        if (t[k].div % 4) return VEC_NO;
    return VEC_SPLAT;
}

/* y[i] = expr, with expr over a, b: the node's inputs loaded with broadcasting. All-f32 nodes
 * whose inputs allow it go four elements at a time (dc_load4/dc_store4). */
int cg_emit_elementwise(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    l.tag = ir_op_name(n->op);
    char c1[64], c2[320], ref[512], lb[600];
    int64_t total = ir_numel(n);
    term t[2][IR_MAX_DIMS];
    int nt[2];
    vec_kind vk[2];
    int vec = n->dtype == IR_F32 && total % 4 == 0 && n->ninputs <= 2;
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    for (int k = 0; k < n->ninputs; k++) {
        const ir_node *in = &e->g->nodes[n->inputs[k]];
        char nm[16];
        snprintf(nm, sizeof nm, "x%d", k);
        param(&l, in_type(in->dtype), nm, off_of(e, n->inputs[k]));
        nt[k] = cg_bcast_terms(in, n->ndim, n->shape, t[k]);
        vk[k] = vec_kind_of(t[k], nt[k]);
        if (in->dtype != IR_F32 || vk[k] == VEC_NO) vec = 0;
    }
    const char *expr;
    char ex[256];
    switch (n->op) {
    case IR_OP_ADD: expr = "a + b"; break;
    case IR_OP_SUB: expr = "a - b"; break;
    case IR_OP_MUL: expr = "a * b"; break;
    case IR_OP_DIV: expr = "a / b"; break;
    case IR_OP_SCALE:
        snprintf(ex, sizeof ex, "a * %s", cg_flit(c1, sizeof c1, n->attrs.alpha));
        expr = ex;
        break;
    case IR_OP_SQRT: expr = "dc_sqrt(a)"; break;
    case IR_OP_ERF: expr = "dc_erf(a)"; break;
    case IR_OP_GELU: expr = n->attrs.gelu_tanh ? "dc_gelu_tanh(a)" : "dc_gelu_erf(a)"; break;
    case IR_OP_GELU_GRAD: expr = n->attrs.gelu_tanh ? "a * dc_gelu_tanh_grad(b)" : "a * dc_gelu_erf_grad(b)"; break;
    case IR_OP_ERF_GRAD: expr = "a * 1.12837917f * dc_exp(-b * b)"; break;
    case IR_OP_CAST: case IR_OP_EXPAND: expr = "a"; break;
    case IR_OP_CONST: expr = cg_flit(ex, sizeof ex, n->attrs.alpha); break;
    default: assert(0); expr = "0";
    }
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
        cg_loop_close(e, &l, total);
        return 0;
    }
    /* four at a time: i4 counts float4s, i = 4 * i4 the first element */
    sb *b = &l.body;
    const char *it = idx_type(total);
    cg_sb_printf(b, "    for (%s i4 = (%s)blockIdx.x * blockDim.x + threadIdx.x; i4 < %lld; i4 += (%s)gridDim.x * blockDim.x) {\n",
              it, it, (long long)total / 4, it);
    cg_sb_printf(b, "        const %s i = 4 * i4;\n", it);
    for (int k = 0; k < n->ninputs; k++) {
        sb idx = {0};
        cg_emit_terms(&idx, "i", t[k], nt[k]);
        if (vk[k] == VEC_LOAD4) cg_sb_printf(b, "        const float4 %c4 = dc_load4(x%d + %s);\n", 'a' + k, k, idx.s);
        else cg_sb_printf(b, "        const float %c = x%d[%s];\n", 'a' + k, k, idx.s);
        free(idx.s);
    }
    /* the expression as a lambda of the scalar inputs, applied to each component */
    cg_sb_printf(b, "        const auto f = [](%s%s%s) { return %s; };\n", n->ninputs > 0 ? "float a" : "",
              n->ninputs > 1 ? ", " : "", n->ninputs > 1 ? "float b" : "", expr);
    cg_sb_printf(b, "        dc_store4(y + i, make_float4(");
    const char comp[4] = {'x', 'y', 'z', 'w'};
    for (int c = 0; c < 4; c++) {
        cg_sb_printf(b, "%sf(", c ? ", " : "");
        for (int k = 0; k < n->ninputs; k++) {
            cg_sb_printf(b, "%s", k ? ", " : "");
            if (vk[k] == VEC_LOAD4) cg_sb_printf(b, "%c4.%c", 'a' + k, comp[c]);
            else cg_sb_printf(b, "%c", 'a' + k);
        }
        cg_sb_printf(b, ")");
    }
    cg_sb_printf(b, "));\n    }\n");
    cg_finish(e, &l, stride_grid(total / 4), 256);
    return 0;
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
    /* four at a time where every output run of 4 comes from 4 aligned consecutive inputs */
    int vec = total % 4 == 0 && n->dtype == IR_F32;
    for (int k = 0; k < n->ninputs; k++) vec &= e->g->nodes[n->inputs[k]].dtype == IR_F32;
    if (n->op == IR_OP_PERMUTE) {
        int d = n->ndim - 1;
        int64_t run = n->shape[d];
        while (d > 0 && n->attrs.perm[d - 1] == n->attrs.perm[d] - 1) run *= n->shape[--d];
        vec &= n->attrs.perm[n->ndim - 1] == n->ndim - 1 && run % 4 == 0;
    } else if (n->op == IR_OP_PATCHIFY || n->op == IR_OP_UNPATCHIFY) {
        vec &= n->attrs.patch % 4 == 0;
    } else {
        int64_t outer, inner;
        axis_view(n, n->attrs.axis, &outer, &inner);
        vec &= inner % 4 == 0;
    }
    const char *it = idx_type(total);
    sb *b = &l.body;
    if (vec) {
        cg_sb_printf(b, "    for (%s i4 = (%s)blockIdx.x * blockDim.x + threadIdx.x; i4 < %lld; i4 += (%s)gridDim.x * blockDim.x) {\n",
                  it, it, (long long)total / 4, it);
        cg_sb_printf(b, "        const %s i = 4 * i4;\n", it);
    } else {
        cg_loop_open(&l, total);
    }
    /* a copy is `<open>x0[...]<close>;` */
    const char *open = vec ? "dc_store4(y + i, dc_load4(&" : "y[i] = ", *close = vec ? "))" : "";
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
        if (vec) cg_sb_printf(b, "        else dc_store4(y + i, make_float4(0.0f, 0.0f, 0.0f, 0.0f));\n");
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
        cg_finish(e, &l, stride_grid(total / 4), 256);
    } else {
        cg_loop_close(e, &l, total);
    }
    return 0;
}
