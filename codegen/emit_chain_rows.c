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
    char ref[512], lb[600], st[900], name[16], a[128], bb[128], res[512], sres[600];
    param(&l, out_type(n->dtype), "y", off_of(e, ln));
    param(&l, in_type(gm->dtype), "gamma", off_of(e, n->inputs[1]));
    param(&l, in_type(bt->dtype), "beta", off_of(e, n->inputs[2]));
    for (int m = 0; m < nel; m++) {
        if (!cg_chain_stores(g, nodes[m])) continue;
        snprintf(name, sizeof name, "y%d", m);
        param(&l, out_type(g->nodes[nodes[m]].dtype), name, off_of(e, nodes[m]));
    }
    int ext[CG_MAX_PARAMS], next = 0; /* the distinct inputs from outside the chain */
    for (int m = 0; m < nel; m++) {
        const ir_node *nd = &g->nodes[nodes[m]];
        for (int k = 0; k < nd->ninputs; k++) {
            int in = nd->inputs[k], seen = 0;
            for (int q = 0; q < m; q++) seen |= nodes[q] == in;
            for (int q = 0; q < next; q++) seen |= ext[q] == in;
            if (seen) continue;
            ext[next] = in;
            snprintf(name, sizeof name, "x%d", next++);
            param(&l, in_type(g->nodes[in].dtype), name, off_of(e, in));
        }
    }
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
    for (int q = 0; q < next; q++) {
        const ir_node *in = &g->nodes[ext[q]];
        term t[IR_MAX_DIMS];
        int nt = cg_bcast_terms(in, x->ndim, x->shape, t);
        sb idx = {0};
        cg_emit_terms(&idx, "i", t, nt);
        snprintf(ref, sizeof ref, "x%d[%s]", q, idx.s);
        free(idx.s);
        cg_sb_printf(b, "        const float a%d = %s;\n", q, cg_ld(lb, sizeof lb, in->dtype, ref));
    }
    for (int m = 0; m < nel; m++) {
        const ir_node *nd = &g->nodes[nodes[m]];
        char ops[2][16] = {"", ""};
        const char *operands[2] = {ops[0], ops[1]};
        for (int k = 0; k < nd->ninputs && k < 2; k++) {
            int in = nd->inputs[k];
            for (int q = 0; q < m; q++)
                if (nodes[q] == in) snprintf(ops[k], sizeof ops[k], "v%d", q);
            for (int q = 0; q < next; q++)
                if (ext[q] == in) snprintf(ops[k], sizeof ops[k], "a%d", q);
        }
        char *v = cg_expr_value(nd, operands); /* rounded to its dtype: what the LayerNorm reads */
        cg_sb_printf(b, "        const float v%d = %s;\n", m, v);
        free(v);
        if (!cg_chain_stores(g, nodes[m])) continue;
        snprintf(ref, sizeof ref, "v%d", m);
        cg_sb_printf(b, "        y%d[i] = %s;\n", m, cg_st(st, sizeof st, nd->dtype, ref));
    }
    cg_sb_printf(b, "        xv[k] = v%d;\n    }\n", nel - 1);
    cg_emit_row_stats_reg(b, C, n->attrs.eps);
    cg_emit_row_for(b, C, 1);
    snprintf(res, sizeof res, "(xv[k] - mean) * rstd * %s + %s", cg_ld(a, sizeof a, gm->dtype, "gamma[c]"),
             cg_ld(bb, sizeof bb, bt->dtype, "beta[c]"));
    cg_sb_printf(b, "        y[row + c] = %s;\n    }\n", cg_st(sres, sizeof sres, n->dtype, res));
    e->node = nodes[0];
    cg_finish(e, &l, grid, block);
    /* the step (and a kernel's first use) names every member */
    rt_plan_step *step = &e->p->steps[e->p->nsteps - 1];
    cg_kernel *kn = &e->p->kernels[step->kernel];
    sb what = {0};
    cg_sb_printf(&what, "%s", step->what);
    for (int m = 1; m < count; m++) {
        char *label = cg_node_label(g, nodes[m]);
        cg_sb_printf(&what, ", %s", label);
        free(label);
    }
    free((void *)step->what);
    step->what = what.s;
    if (kn->nuses == 1) {
        free(kn->nodes);
        kn->nodes = xstrdup(what.s);
    }
    e->node = saved;
}
