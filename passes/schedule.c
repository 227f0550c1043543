/* schedule.c: the order in which a training step's nodes run.
 *
 * The graph is already topological; the schedule keeps that order for the nodes that matter
 * (those an output or an effect depends on), drops leaves (bound from outside) and dead nodes,
 * and moves effect nodes (ADAMW, which update weights in place) after every other node so no
 * reader sees an updated weight.
 */
#include "passes/passes.h"

#include <stdlib.h>

int pass_schedule(const ir_graph *g, int *order) {
    unsigned char *needed = calloc((size_t)g->n + 1, 1);
    if (!needed) abort();
    for (int i = g->n - 1; i >= 0; i--) {
        const ir_node *n = &g->nodes[i];
        if ((n->flags & IR_NODE_OUTPUT) || (ir_op_flags(n->op) & IR_OPF_EFFECT)) needed[i] = 1;
        if (!needed[i]) continue;
        for (int k = 0; k < n->ninputs; k++) needed[n->inputs[k]] = 1;
    }
    int count = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < g->n; i++) {
            const ir_node *n = &g->nodes[i];
            unsigned f = ir_op_flags(n->op);
            if (!needed[i] || (f & IR_OPF_LEAF)) continue;
            if ((pass == 0) == !(f & IR_OPF_EFFECT)) order[count++] = i;
        }
    free(needed);
    return count;
}
