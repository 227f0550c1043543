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
 * plain LayerNorm (the pass made sure the sum is stored). */
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
    int next = cg_chain_params(e, &l, nodes, nel, ext);
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
    cg_chain_values(g, b, nodes, nel, ext, next, x, "        ");
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
