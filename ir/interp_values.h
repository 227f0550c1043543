/* interp_values.h: where the reference interpreter keeps its values (ir/interp_values.c):
 * one double array per node, leaves held for the interpreter's life, the others taken from a
 * pool of freed arrays when their node runs and, once ir_values_release_dead is on, given back
 * after their last reader. Private to ir/. */
#ifndef DEITC_IR_INTERP_VALUES_H
#define DEITC_IR_INTERP_VALUES_H

#include "ir/ir.h"

typedef struct {
    double *buf;
    int64_t cap; /* elements */
} ir_value_buf;

typedef struct {
    const ir_graph *g;
    double **val;      /* [n]: node i's value, NULL while none is held */
    int64_t *cap;      /* [n]: elements val[i] can hold */
    int *last_reader;  /* [n]: the last node that reads node i, -1 for none; NULL: keep all */
    ir_value_buf *pool; /* freed arrays, ready to be taken again */
    int npool, pool_cap;
} ir_values;

/* Elements of node n's value: all its outputs, one after another. */
int64_t ir_value_len(const ir_node *n);

/* Leaves (INPUT, WEIGHT, STATE, CONST) get their zeroed arrays now: -1 when they do not fit. */
int ir_values_init(ir_values *v, const ir_graph *g);
void ir_values_free(ir_values *v);
/* Node i's array (ir_value_len elements, contents undefined unless held from before): NULL
 * when out of memory. */
double *ir_values_take(ir_values *v, int i);
/* From now on, every value but the leaves' and those flagged IR_NODE_OUTPUT goes back to the
 * pool once the last node that reads it has run. */
void ir_values_release_dead(ir_values *v);
/* After node j ran: gives back the values whose last reader j is (and j's own, unread). */
void ir_values_after_node(ir_values *v, int j);

#endif
