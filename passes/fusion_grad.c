/* fusion_grad.c: the backward pass's bias gradients as column sums fused with the elementwise
 * node that makes their input (fusions of the finished step; fusion.c has the table of names):
 *
 *   bias-gelu-grad  dh = GELU_GRAD(dy, h) and db = SUM_TO(dh) [C] right after it (the MLP's
 *                   fc1 bias gradient): one chain, so one kernel computes the GELU derivative,
 *                   stores dh (the fc1 dgrad and wgrad GEMMs read it) and sums it over rows
 *   bias-grad       any other elementwise node x and a SUM_TO(x) to x's last dim (a linear
 *                   layer's bias gradient, e.g. attn.proj's: the sum of the residual stream's
 *                   gradients): the SUM_TO is moved right after x (a new graph; its only input
 *                   is x, so the order stays topological) and chained with it
 *
 * Neither changes what the step computes: the fused kernel sums the values the unfused SUM_TO
 * would read back, in its order (codegen/emit_chain_reduce.c). */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int last_chain(const ir_graph *g) {
    int chains = 0;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].chain > chains) chains = g->nodes[i].chain;
    return chains;
}

/* Whether node s is a SUM_TO of elementwise node x to x's last dim, both free of chains and
 * groups (the verifier's rule for a chain that ends in a column sum). */
static int column_sum_of(const ir_graph *g, int s, int x) {
    const ir_node *n = &g->nodes[s], *in = &g->nodes[x];
    return n->op == IR_OP_SUM_TO && n->inputs[0] == x && n->ndim == 1 && in->ndim >= 2 &&
           n->shape[0] == in->shape[in->ndim - 1] && (ir_op_flags(in->op) & IR_OPF_ELEMENTWISE) && !n->chain &&
           !in->chain && !n->group && !in->group;
}

int pass_fuse_bias_gelu_grad(ir_graph *g) {
    int chains = last_chain(g), count = 0;
    for (int i = 1; i < g->n; i++) {
        if (g->nodes[i - 1].op != IR_OP_GELU_GRAD || !column_sum_of(g, i, i - 1)) continue;
        g->nodes[i - 1].chain = g->nodes[i].chain = ++chains;
        count++;
    }
    return count;
}

ir_graph *pass_fuse_bias_grad(const ir_graph *f, int *count, char *err, size_t errsize) {
    int n = f->n;
    int *sum_of = malloc(sizeof(int) * (size_t)(n + 1)); /* [x] the SUM_TO that moves behind x, or -1 */
    int *moved = calloc((size_t)n + 1, sizeof(int));      /* [s] it moves */
    int *map = malloc(sizeof(int) * (size_t)(n + 1));
    if (!sum_of || !moved || !map) abort();
    for (int i = 0; i < n; i++) sum_of[i] = -1;
    for (int s = 0; s < n; s++) {
        const ir_node *nd = &f->nodes[s];
        if (nd->op != IR_OP_SUM_TO || nd->ninputs != 1) continue;
        int x = nd->inputs[0];
        if (f->nodes[x].op == IR_OP_GELU_GRAD || sum_of[x] >= 0 || !column_sum_of(f, s, x)) continue;
        sum_of[x] = s;
        moved[s] = 1;
    }
    ir_graph *g = ir_graph_new();
    g->info = f->info;
    if (f->info.model_name) g->info.model_name = ir_arena_strdup(&g->arena, f->info.model_name);
    int rc = 0, chains = last_chain(f);
    *count = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (moved[i]) continue; /* copied right after its input */
        map[i] = ir_copy_node(g, f, i, map);
        rc = map[i] < 0;
        if (rc || sum_of[i] < 0) continue;
        int s = sum_of[i];
        map[s] = ir_copy_node(g, f, s, map);
        rc = map[s] < 0;
        if (rc) break;
        g->nodes[map[i]].chain = g->nodes[map[s]].chain = ++chains;
        ++*count;
    }
    free(sum_of);
    free(moved);
    free(map);
    if (rc) {
        snprintf(err, errsize, "bias-grad: %s", g->error);
        ir_graph_free(g);
        return NULL;
    }
    return g;
}
