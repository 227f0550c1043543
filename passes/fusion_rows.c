/* fusion_rows.c: residual-layer-norm, a fusion of the finished step (fusion.c has the table of
 * names): a LAYER_NORM of an elementwise node x joins x's elementwise chain (or a chain of x
 * alone) as its last member, so one kernel computes the chain, stores x (the residual stream's
 * sum, which the next residual add and the backward read) and normalizes it from registers
 * (codegen/emit_chain_rows.c). In DeiT: attn.proj's / fc2's bias add and the residual add
 * after it (the chain elementwise-chain made), then norm2 / the next block's norm1 / the final
 * norm. Runs after elementwise-chain; the interpreter's answer is unchanged.
 *
 * Only leaves (the LayerNorm's gamma and beta) may sit between x and the LayerNorm in node
 * order: they are not scheduled, so the chain stays consecutive in the schedule.
 *
 * layer-norm-dbeta: LAYER_NORM_DGAMMA(dy, x) and the SUM_TO(dy) right after it (the beta
 * gradient, a column sum of the same dy) as a chain: one kernel sums both over the rows
 * (codegen/emit_rows.c), one pass 2 for both. */
#include "passes/passes.h"

#include <stdio.h>

static int last_chain(const ir_graph *g) {
    int chains = 0;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].chain > chains) chains = g->nodes[i].chain;
    return chains;
}

/* x is read by a node other than `except`, or is an output: its value is stored either way */
static int stored_elsewhere(const ir_graph *g, int x, int except) {
    if (g->nodes[x].flags & IR_NODE_OUTPUT) return 1;
    for (int j = x + 1; j < g->n; j++)
        for (int k = 0; k < g->nodes[j].ninputs; k++)
            if (j != except && g->nodes[j].inputs[k] == x) return 1;
    return 0;
}

int pass_fuse_layer_norm_dbeta(ir_graph *g) {
    int chains = last_chain(g), count = 0;
    for (int i = 0; i + 1 < g->n; i++) {
        ir_node *dg = &g->nodes[i], *db = &g->nodes[i + 1];
        if (dg->op != IR_OP_LAYER_NORM_DGAMMA || db->op != IR_OP_SUM_TO || db->inputs[0] != dg->inputs[0] ||
            dg->chain || db->chain || dg->group || db->group || db->ndim != 1 || db->dtype != dg->dtype ||
            db->shape[0] != dg->shape[dg->ndim - 1])
            continue;
        dg->chain = db->chain = ++chains;
        count++;
    }
    return count;
}

int pass_fuse_residual_layer_norm(ir_graph *g) {
    int chains = last_chain(g), count = 0;
    for (int i = 1; i < g->n; i++) {
        ir_node *ln = &g->nodes[i];
        if (ln->op != IR_OP_LAYER_NORM || ln->chain || ln->group) continue;
        int x = ln->inputs[0];
        ir_node *xn = &g->nodes[x];
        if (!(ir_op_flags(xn->op) & IR_OPF_ELEMENTWISE) || xn->group || !ir_same_shape(xn, ln)) continue;
        int between = 1;
        for (int j = x + 1; j < i; j++) between &= (ir_op_flags(g->nodes[j].op) & IR_OPF_LEAF) != 0;
        if (!between || !stored_elsewhere(g, x, i)) continue;
        if (xn->chain) { /* x must end an elementwise chain */
            int first = x;
            while (first > 0 && g->nodes[first - 1].chain == xn->chain) first--;
            if ((x + 1 < g->n && g->nodes[x + 1].chain == xn->chain) ||
                !(ir_op_flags(g->nodes[first].op) & IR_OPF_ELEMENTWISE))
                continue;
            ln->chain = xn->chain;
        } else {
            ln->chain = xn->chain = ++chains;
        }
        count++;
    }
    return count;
}
