/* interp_values.c: the reference interpreter's value storage. A full-size graph holds
 * gigabytes of intermediate doubles if every value lives to the end, and fresh memory costs a
 * page fault (and the kernel's zeroing) per 4 KiB the first time it is written. So leaves live
 * as long as the interpreter, every other value is taken from a pool of freed arrays (best fit:
 * the smallest that holds it, else a new one) when its node runs, and, once release is on, is
 * given back after its last reader, ready for the next node of that size: the same few arrays
 * serve every block of a transformer and every step of a training run. Values never depend on
 * where they are stored: every op writes its whole output. */
#include "ir/interp_values.h"

#include <stdlib.h>

int64_t ir_value_len(const ir_node *n) {
    int64_t len = 0;
    for (int k = 0; k < ir_op_outputs(n->op); k++) {
        ir_node o;
        ir_node_output(n, k, &o);
        len += ir_numel(&o);
    }
    return len;
}

static int is_kept(const ir_node *n) { return (ir_op_flags(n->op) & IR_OPF_LEAF) || (n->flags & IR_NODE_OUTPUT); }

int ir_values_init(ir_values *v, const ir_graph *g) {
    *v = (ir_values){.g = g};
    v->val = calloc((size_t)g->n + 1, sizeof(double *));
    v->cap = calloc((size_t)g->n + 1, sizeof(int64_t));
    if (!v->val || !v->cap) abort();
    for (int i = 0; i < g->n; i++) {
        if (!(ir_op_flags(g->nodes[i].op) & IR_OPF_LEAF)) continue;
        v->cap[i] = ir_value_len(&g->nodes[i]);
        v->val[i] = calloc((size_t)(v->cap[i] ? v->cap[i] : 1), sizeof(double));
        if (!v->val[i]) return -1; /* a graph too big for this machine: the caller reports it */
    }
    return 0;
}

void ir_values_free(ir_values *v) {
    if (!v->val) return;
    for (int i = 0; i < v->g->n; i++) free(v->val[i]);
    for (int k = 0; k < v->npool; k++) free(v->pool[k].buf);
    free(v->val);
    free(v->cap);
    free(v->last_reader);
    free(v->pool);
    *v = (ir_values){0};
}

double *ir_values_take(ir_values *v, int i) {
    if (v->val[i]) return v->val[i];
    int64_t len = ir_value_len(&v->g->nodes[i]);
    int best = -1;
    for (int k = 0; k < v->npool; k++)
        if (v->pool[k].cap >= len && (best < 0 || v->pool[k].cap < v->pool[best].cap)) best = k;
    if (best >= 0) {
        v->val[i] = v->pool[best].buf;
        v->cap[i] = v->pool[best].cap;
        v->pool[best] = v->pool[--v->npool];
        return v->val[i];
    }
    v->val[i] = malloc(sizeof(double) * (size_t)(len ? len : 1));
    v->cap[i] = len;
    return v->val[i];
}

static void give_back(ir_values *v, int i) {
    if (!v->val[i] || is_kept(&v->g->nodes[i])) return;
    if (v->npool == v->pool_cap) {
        v->pool_cap = v->pool_cap ? 2 * v->pool_cap : 32;
        v->pool = realloc(v->pool, sizeof *v->pool * (size_t)v->pool_cap);
        if (!v->pool) abort();
    }
    v->pool[v->npool++] = (ir_value_buf){v->val[i], v->cap[i]};
    v->val[i] = NULL;
    v->cap[i] = 0;
}

void ir_values_release_dead(ir_values *v) {
    if (v->last_reader) return;
    const ir_graph *g = v->g;
    v->last_reader = malloc(sizeof(int) * ((size_t)g->n + 1));
    if (!v->last_reader) abort();
    for (int i = 0; i < g->n; i++) v->last_reader[i] = -1;
    for (int j = 0; j < g->n; j++)
        for (int k = 0; k < g->nodes[j].ninputs; k++) v->last_reader[g->nodes[j].inputs[k]] = j;
}

void ir_values_after_node(ir_values *v, int j) {
    if (!v->last_reader) return;
    const ir_node *n = &v->g->nodes[j];
    for (int k = 0; k < n->ninputs; k++)
        if (v->last_reader[n->inputs[k]] == j) give_back(v, n->inputs[k]);
    if (v->last_reader[j] < 0) give_back(v, j);
}
