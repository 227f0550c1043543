/* emit_chain_reduce.c: an elementwise chain that ends in a column sum (ir_node.chain; the
 * fusions bias-gelu-grad and bias-grad in passes/fusion.c): the members' values computed where
 * the column sum's pass 1 reads them, so the kernel that computes, say, dh = dy * GELU'(h)
 * stores dh (which the next GEMMs read) and sums it over rows for the bias gradient at once.
 *
 * The reduction is the unfused SUM_TO's, element for element: the same two-pass plan
 * (cg_red_plan_of), the same row order per thread, the same combination of the block's
 * partial sums, the same pass 2 (cg_emit_partials_sum), and every member's value rounded to
 * its dtype before it is summed, as the stored value the unfused SUM_TO would read back. So
 * the fused and unfused steps give the same bits, and the sums stay deterministic (no
 * atomics). The sum is over every dim but the last (the verifier's rule for such a chain):
 * element (r, o) of the chain's last member is i = r * C + o. */
#include "codegen/emit_internal.h"

void cg_emit_chain_reduce(emitter *e, const int *nodes, int count) {
    const ir_graph *g = e->g;
    const int sum = nodes[count - 1], nel = count - 1; /* the SUM_TO; elementwise members before it */
    const ir_node *s = &g->nodes[sum], *x = &g->nodes[nodes[nel - 1]];
    assert(s->op == IR_OP_SUM_TO && nel >= 1 && s->inputs[0] == nodes[nel - 1]);
    const int64_t C = last_dim(x), R = ir_numel(x) / C;
    const red_plan rp = cg_red_plan_of(C, R);
    const int64_t part = rp.chunks > 1 ? e->m->scratch_offset[sum] : -1;
    assert(rp.chunks == 1 || part >= 0);
    launch l = {0};
    char tag[64], st[900];
    int gelu = nel == 1 && x->op == IR_OP_GELU_GRAD;
    snprintf(tag, sizeof tag, "%s%s", gelu ? "bias_gelu_grad" : "chain_sum_to", rp.chunks > 1 ? "_pass1" : "");
    l.tag = tag;
    if (rp.chunks > 1) param(&l, "float *", "part", part);
    else param(&l, out_type(s->dtype), "y", off_of(e, sum));
    int ext[CG_MAX_PARAMS]; /* the distinct inputs from outside the chain */
    int next = cg_chain_params(e, &l, nodes, nel, 0, ext);
    const char *it = idx_type(ir_numel(x));
    sb *b = &l.body;
    cg_sb_printf(b, "    const int tx = threadIdx.x %% %d, ty = threadIdx.x / %d;\n", rp.tx, rp.tx);
    if (rp.chunks > 1) {
        cg_sb_printf(b, "    const int chunk = blockIdx.x / %lld;\n", (long long)rp.tiles);
        cg_sb_printf(b, "    const %s o = (%s)(blockIdx.x %% %lld) * %d + tx;\n", it, it, (long long)rp.tiles, rp.tx);
        cg_sb_printf(b, "    const %s r0 = (%s)chunk * %lld, r1 = r0 + %lld < %lld ? r0 + %lld : %lld;\n", it, it,
                     (long long)rp.rows, (long long)rp.rows, (long long)R, (long long)rp.rows, (long long)R);
    } else {
        cg_sb_printf(b, "    const %s o = (%s)blockIdx.x * %d + tx;\n", it, it, rp.tx);
        cg_sb_printf(b, "    const %s r0 = 0, r1 = %lld;\n", it, (long long)R);
    }
    cg_sb_printf(b, "    float acc = 0.0f;\n    if (o < %lld) {\n", (long long)C);
    cg_sb_printf(b, "        for (%s r = r0 + ty; r < r1; r += %d) {\n", it, rp.ty);
    cg_sb_printf(b, "            const %s i = r * %lld + o;\n", it, (long long)C);
    cg_chain_values(g, b, nodes, nel, 0, ext, next, x, "            ");
    cg_sb_printf(b, "            acc += v%d;\n        }\n    }\n", nel - 1);
    char fmt[1000];
    if (rp.chunks > 1) snprintf(fmt, sizeof fmt, "part[(long long)chunk * %lld + o] = %%s;", (long long)C);
    else snprintf(fmt, sizeof fmt, "y[o] = %s;", cg_st(st, sizeof st, s->dtype, "%s"));
    cg_reduce_finish(&l, rp.tx, rp.ty, C, fmt);
    int saved = e->node;
    e->node = nodes[0];
    cg_finish(e, &l, rp.tiles * rp.chunks, rp.tx * rp.ty);
    cg_chain_name_step(e, nodes, count); /* "%76 a, %77 b" */
    e->node = sum; /* pass 2 writes the SUM_TO's value */
    if (rp.chunks > 1) cg_emit_partials_sum(e, part, rp.chunks, C, 1);
    e->node = saved;
}
