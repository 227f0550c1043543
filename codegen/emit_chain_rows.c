/* emit_chain_rows.c: an elementwise chain that ends in a LayerNorm of its last member
 * (residual-layer-norm in passes/fusion_rows.c): in DeiT the bias add of attn.proj or fc2 and
 * the residual add after it, then the next block's norm1 / norm2 (or the final norm). One
 * warp a row: each lane computes its columns of the chain from the chain's inputs, stores the
 * members that are read elsewhere (the residual stream's sum) and keeps the last member in
 * registers, from which the LayerNorm's statistics and output come, as layer_norm's warp
 * kernel computes them (emit_rows.c's pieces), from the value rounded to its dtype, as the
 * unfused LayerNorm would read it back: the same bits. The residual sum is written once and
 * never read back by this kernel.
 *
 * Rows wider than a warp's kernels take (> cg_row_warp_max()): the chain's kernel, then the
 * plain LayerNorm (the pass made sure the sum is stored).
 *
 * The backward's mirror image (residual-layer-norm-grad): a chain that starts with
 * LAYER_NORM_DX(dy, x, gamma), then the elementwise members reading it (the residual stream's
 * gradient added to the LayerNorm's input gradient), and may end in a column sum of the last
 * one (attn.proj's / the previous fc2's bias gradient, which bias-grad chained with the add).
 * Blocks of warps take ranges of rows as layer_norm_dgamma's kernel does, a warp a row: the
 * row's dx as layer_norm_dx's warp kernel computes it (rounded to its dtype, as the unfused add
 * reads it back), the members from it in registers, the last stored and summed per lane; the
 * block adds its warps' sums in warp order into its range's partial sums, pass 2 sums the
 * ranges in order (deterministic, no atomics; the sum's order is not the unfused SUM_TO's, so
 * the bias gradient agrees to rounding, the stored values bit for bit). */
#include "codegen/emit_internal.h"

void cg_emit_chain_layer_norm(emitter *e, const int *nodes, int count) {
    const ir_graph *g = e->g;
    const int ln = nodes[count - 1], nel = count - 1;
    const ir_node *n = &g->nodes[ln], *x = &g->nodes[nodes[nel - 1]];
    assert(n->op == IR_OP_LAYER_NORM && nel >= 1 && n->inputs[0] == nodes[nel - 1]);
    const int64_t C = last_dim(x), rows = ir_numel(x) / C;
    int saved = e->node;
    if (C > cg_row_warp_max()) { /* the chain, then the LayerNorm */
        assert(cg_chain_stores(g, nodes[nel - 1]));
        cg_emit_chain(e, nodes, nel);
        e->node = ln;
        cg_emit_layer_norm(e);
        e->node = saved;
        return;
    }
    const ir_node *gm = &g->nodes[n->inputs[1]], *bt = &g->nodes[n->inputs[2]];
    launch l = {0};
    l.tag = "layer_norm_chain";
    l.fibers = 1;
    char a[128], bb[128], res[512], sres[600];
    param(&l, out_type(n->dtype), "y", off_of(e, ln));
    param(&l, in_type(gm->dtype), "gamma", off_of(e, n->inputs[1]));
    param(&l, in_type(bt->dtype), "beta", off_of(e, n->inputs[2]));
    int ext[CG_MAX_PARAMS]; /* the distinct inputs from outside the chain */
    int next = cg_chain_params(e, &l, nodes, nel, 0, ext);
    const char *it = idx_type(ir_numel(x));
    sb *b = &l.body;
    int64_t grid;
    int block;
    cg_emit_row_head_warp(b, it, C, rows, &grid, &block);
    cg_sb_printf(b, "    const %s row = r * %lld;\n", it, (long long)C);
    cg_sb_printf(b, "    float xv[%lld];\n", (long long)(C + 31) / 32);
    cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)(C + 31) / 32);
    cg_sb_printf(b, "        const int c = lane + 32 * k;\n");
    if (C % 32) cg_sb_printf(b, "        if (c >= %lld) {\n            xv[k] = 0.0f;\n            continue;\n        }\n", (long long)C);
    cg_sb_printf(b, "        const %s i = row + c;\n", it);
    cg_chain_values(g, b, nodes, nel, 0, ext, next, x, "        ");
    cg_sb_printf(b, "        xv[k] = v%d;\n    }\n", nel - 1);
    cg_emit_row_stats_reg(b, C, n->attrs.eps);
    cg_emit_row_for(b, C, 1);
    snprintf(res, sizeof res, "(xv[k] - mean) * rstd * %s + %s", cg_ld(a, sizeof a, gm->dtype, "gamma[c]"),
             cg_ld(bb, sizeof bb, bt->dtype, "beta[c]"));
    cg_sb_printf(b, "        y[row + c] = %s;\n    }\n", cg_st(sres, sizeof sres, n->dtype, res));
    e->node = nodes[0];
    cg_finish(e, &l, grid, block);
    cg_chain_name_step(e, nodes, count); /* the step (and a kernel's first use) names every member */
    e->node = saved;
}

/* "dc_h2f(dc_f2h(v))": v rounded to t, as a value of t read back */
static const char *rounded(char *buf, size_t size, ir_dtype t, const char *v) {
    if (t == IR_F16) snprintf(buf, size, "dc_h2f(dc_f2h(%s))", v);
    else if (t == IR_BF16) snprintf(buf, size, "dc_b2f(dc_f2b(%s))", v);
    else snprintf(buf, size, "%s", v);
    return buf;
}

void cg_emit_chain_layer_norm_dx(emitter *e, const int *nodes, int count) {
    const ir_graph *g = e->g;
    const ir_node *n = &g->nodes[nodes[0]];
    const int has_sum = g->nodes[nodes[count - 1]].op == IR_OP_SUM_TO, nel = count - has_sum;
    assert(n->op == IR_OP_LAYER_NORM_DX && nel >= 2);
    const ir_node *dy = &g->nodes[n->inputs[0]], *x = &g->nodes[n->inputs[1]], *gm = &g->nodes[n->inputs[2]];
    const int64_t C = last_dim(x), rows = ir_numel(x) / C, K = (C + 31) / 32;
    int saved = e->node;
    if (C > cg_row_warp_max()) { /* the LayerNorm dx (its value stored), then the rest as a chain */
        e->node = nodes[0];
        cg_emit_layer_norm(e);
        cg_emit_chain(e, nodes + 1, count - 1);
        e->node = saved;
        return;
    }
    int warps;
    int64_t range, ranges;
    cg_layer_norm_row_ranges(C, rows, has_sum, &warps, &range, &ranges);
    const int sum = has_sum ? nodes[count - 1] : -1;
    const int64_t part = has_sum && ranges > 1 ? e->m->scratch_offset[sum] : -1;
    assert(!has_sum || ranges == 1 || part >= 0);
    const char *it = idx_type(ir_numel(x));
    char tag[64], a[128], bb[128], res[512], rv[600], st[700];
    launch l = {0};
    snprintf(tag, sizeof tag, "layer_norm_dx_chain%s%s", has_sum ? "_sum" : "", part >= 0 ? "_pass1" : "");
    l.tag = tag;
    l.fibers = 1;
    if (part >= 0) param(&l, "float *", "part", part);
    else if (has_sum) param(&l, out_type(g->nodes[sum].dtype), "y", off_of(e, sum));
    param(&l, in_type(dy->dtype), "dy", off_of(e, n->inputs[0]));
    param(&l, in_type(x->dtype), "x", off_of(e, n->inputs[1]));
    param(&l, in_type(gm->dtype), "gamma", off_of(e, n->inputs[2]));
    int ext[CG_MAX_PARAMS]; /* the distinct inputs of the elementwise members from outside the chain */
    int next = cg_chain_params(e, &l, nodes, nel, 1, ext);
    sb *b = &l.body;
    cg_sb_printf(b, "    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;\n");
    cg_sb_printf(b, "    const %s r0 = (%s)blockIdx.x * %lld, r1 = r0 + %lld < %lld ? r0 + %lld : %lld;\n", it, it,
                 (long long)range, (long long)range, (long long)rows, (long long)range, (long long)rows);
    if (has_sum) {
        cg_sb_printf(b, "    float acc[%lld];\n", (long long)K);
        cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) acc[k] = 0.0f;\n", (long long)K);
    }
    cg_sb_printf(b, "    for (%s r = r0 + w; r < r1; r += %d) { /* the same for the whole warp */\n", it, warps);
    sb row = {0}; /* layer_norm_dx's warp kernel, row r */
    cg_sb_printf(&row, "    const %s row = r * %lld;\n", it, (long long)C);
    cg_sb_printf(&row, "    const auto *xr = x + row;\n    const auto *dyr = dy + row;\n");
    cg_emit_row_load(&row, "xv", "xr", x->dtype, C, "0.0f");
    cg_emit_row_stats_reg(&row, C, n->attrs.eps);
    cg_sb_printf(&row, "    float gv[%lld], s1 = 0.0f, s2 = 0.0f;\n", (long long)K);
    cg_sb_printf(&row, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)K);
    cg_sb_printf(&row, "        const int c = lane + 32 * k;\n");
    snprintf(res, sizeof res, "%s * %s", cg_ld(a, sizeof a, dy->dtype, "dyr[c]"), cg_ld(bb, sizeof bb, gm->dtype, "gamma[c]"));
    if (C % 32) cg_sb_printf(&row, "        gv[k] = c < %lld ? %s : 0.0f;\n", (long long)C, res);
    else cg_sb_printf(&row, "        gv[k] = %s;\n", res);
    cg_sb_printf(&row, "        xv[k] = (xv[k] - mean) * rstd;\n");
    cg_sb_printf(&row, "        s1 += gv[k];\n        s2 += gv[k] * xv[k];\n    }\n");
    char fl[64];
    cg_flit(fl, sizeof fl, 1.0 / (double)C);
    cg_sb_printf(&row, "    s1 = dc_warp_sum(s1) * %s;\n    s2 = dc_warp_sum(s2) * %s;\n", fl, fl);
    cg_emit_row_for(&row, C, 1);
    cg_sb_printf(&row, "        const %s i = row + c;\n", it);
    cg_sb_printf(&row, "        const float v0 = %s;\n", rounded(rv, sizeof rv, n->dtype, "rstd * (gv[k] - s1 - xv[k] * s2)"));
    if (cg_chain_stores(g, nodes[0])) cg_sb_printf(&row, "        y0[i] = %s;\n", cg_st(st, sizeof st, n->dtype, "v0"));
    cg_chain_values(g, &row, nodes, nel, 1, ext, next, x, "        ");
    if (has_sum) cg_sb_printf(&row, "        acc[k] += v%d;\n", nel - 1);
    cg_sb_printf(&row, "    }\n");
    for (const char *p = row.s, *q; *p; p = q + 1) { /* indented one level */
        q = strchr(p, '\n');
        cg_sb_printf(b, "    %.*s\n", (int)(q - p), p);
    }
    free(row.s);
    cg_sb_printf(b, "    }\n");
    if (has_sum) { /* the block's warps' sums in warp order */
        cg_sb_printf(b, "    __shared__ float sum[%d][%lld];\n", warps, (long long)(32 * K));
        cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) sum[w][lane + 32 * k] = acc[k];\n", (long long)K);
        cg_sb_printf(b, "    __syncthreads();\n");
        cg_sb_printf(b, "    for (int c = threadIdx.x; c < %lld; c += %d) {\n", (long long)C, 32 * warps);
        cg_sb_printf(b, "        float s = 0.0f;\n        for (int q = 0; q < %d; q++) s += sum[q][c];\n", warps);
        if (part >= 0) cg_sb_printf(b, "        part[(long long)blockIdx.x * %lld + c] = s;\n    }\n", (long long)C);
        else cg_sb_printf(b, "        y[c] = %s;\n    }\n", cg_st(st, sizeof st, g->nodes[sum].dtype, "s"));
    }
    e->node = nodes[0];
    cg_finish(e, &l, ranges, 32 * warps);
    cg_chain_name_step(e, nodes, count);
    if (part >= 0) {
        e->node = sum; /* pass 2 writes the SUM_TO's value */
        cg_emit_partials_sum(e, part, ranges, C, 1);
    }
    e->node = saved;
}
