/* schedule.c: the order in which a training step's nodes run.
 *
 * The graph is already topological; the schedule keeps that order for the nodes that matter
 * (those an output or an effect depends on), drops leaves (bound from outside) and dead nodes,
 * and moves effect nodes (ADAMW, which update weights in place) after every other node so no
 * reader sees an updated weight. The fusion pass numbers groups only among nodes that are
 * consecutive in node order, so the members of a group stay next to each other here;
 * pass_schedule_check says so after every schedule.
 */
#include "passes/passes.h"

#include <stdio.h>
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

int pass_schedule_check(const ir_graph *g, const int *order, int n, char *err, size_t errsize) {
    int *pos = malloc(sizeof(int) * (size_t)(g->n + 1)), rc = 0, effects = 0;
    if (!pos) abort();
    for (int i = 0; i < g->n; i++) pos[i] = -1;
    for (int s = 0; s < n && !rc; s++) {
        int i = order[s];
        const ir_node *nd = &g->nodes[i];
        unsigned f = ir_op_flags(nd->op);
        if (i < 0 || i >= g->n || pos[i] >= 0 || (f & IR_OPF_LEAF)) {
            snprintf(err, errsize, "schedule: step %d (%%%d) is a leaf, repeated or not a node", s, i);
            rc = -1;
            break;
        }
        for (int k = 0; k < nd->ninputs && !rc; k++) {
            int in = nd->inputs[k];
            if (pos[in] < 0 && !(ir_op_flags(g->nodes[in].op) & IR_OPF_LEAF)) {
                snprintf(err, errsize, "schedule: step %d (%%%d) reads %%%d before it is computed", s, i, in);
                rc = -1;
            }
        }
        if (!rc && effects && !(f & IR_OPF_EFFECT)) {
            snprintf(err, errsize, "schedule: step %d (%%%d) comes after an optimizer update", s, i);
            rc = -1;
        }
        effects |= (f & IR_OPF_EFFECT) != 0;
        /* a group member follows another member, or no earlier step is in its group */
        if (!rc && nd->group && !(s > 0 && g->nodes[order[s - 1]].group == nd->group))
            for (int t = 0; t < s && !rc; t++)
                if (g->nodes[order[t]].group == nd->group) {
                    snprintf(err, errsize, "schedule: fusion group %d is split (steps %d and %d)", nd->group, t, s);
                    rc = -1;
                }
        /* likewise a chain member */
        if (!rc && nd->chain && !(s > 0 && g->nodes[order[s - 1]].chain == nd->chain))
            for (int t = 0; t < s && !rc; t++)
                if (g->nodes[order[t]].chain == nd->chain) {
                    snprintf(err, errsize, "schedule: elementwise chain %d is split (steps %d and %d)", nd->chain, t, s);
                    rc = -1;
                }
        pos[i] = s;
    }
    free(pos);
    return rc;
}
