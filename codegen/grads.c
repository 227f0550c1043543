/* grads.c: the plan's gradient table (rt_plan.grads), what data-parallel training all-reduces
 * (runtime/dist.c). A gradient is what the optimizer reads: the grad input of every ADAMW node
 * and every input of a SUM_SQUARES node (the clip norm). For each, from the schedule and the
 * steps emitted for it:
 *   ready_step  the last step whose node sits at or before the gradient, or at or before the
 *               last backward node reading its buffer, in the schedule: after it nothing writes
 *               or reads the gradient until the optimizer (steps follow the schedule; a fused
 *               launch is recorded at its first member);
 *   use_step    the first step whose nodes (from its own node up to the next step's) include an
 *               optimizer node (clip norm, AdamW) reading the gradient's buffer: the runtime
 *               waits for the gradient's bucket before it.
 * Listed in backward production order (ready_step, then schedule position), which is the order
 * the runtime fills its buckets in. Two gradients on one buffer are listed once; gradients that
 * overlap otherwise are a bug in the memory plan and fail the compile.
 */
#include "codegen/codegen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_grad(const void *x, const void *y) {
    const cg_grad *a = x, *b = y;
    if (a->ready_step != b->ready_step) return a->ready_step < b->ready_step ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int cmp_offset(const void *x, const void *y) {
    const cg_grad *a = *(cg_grad *const *)x, *b = *(cg_grad *const *)y;
    return a->offset < b->offset ? -1 : a->offset > b->offset;
}

/* the ops that read finished gradients: the clip norm and AdamW */
static int is_optimizer(ir_op op) { return op == IR_OP_ADAMW || op == IR_OP_SUM_SQUARES || op == IR_OP_CLIP_COEF; }

/* whether node x's buffer overlaps [offset, +bytes) */
static int overlaps(const cg_program *p, int x, int64_t offset, int64_t bytes) {
    int64_t o = p->mem->offset[x];
    if (o < 0) return 0;
    int64_t n = ir_numel(&p->g->nodes[x]) * (int64_t)ir_dtype_size(p->g->nodes[x].dtype);
    return o < offset + bytes && offset < o + n;
}

int cg_plan_grads(const cg_program *p, cg_grad **out, int *count, char *err, size_t errsize) {
    const ir_graph *g = p->g;
    *out = NULL;
    *count = 0;
    int *pos = malloc(sizeof(int) * (size_t)(g->n + 1));
    unsigned char *is_grad = calloc((size_t)g->n + 1, 1);
    if (!pos || !is_grad) abort();
    for (int i = 0; i < g->n; i++) pos[i] = -1;
    for (int s = 0; s < p->norder; s++) pos[p->order[s]] = s;
    int n = 0;
    for (int i = 0; i < g->n; i++) {
        const ir_node *nd = &g->nodes[i];
        if (nd->op == IR_OP_ADAMW && nd->ninputs > 1) is_grad[nd->inputs[1]] = 1;
        if (nd->op == IR_OP_SUM_SQUARES)
            for (int k = 0; k < nd->ninputs; k++) is_grad[nd->inputs[k]] = 1;
    }
    for (int i = 0; i < g->n; i++) n += is_grad[i] && p->mem->offset[i] >= 0 && pos[i] >= 0;
    cg_grad *gr = calloc((size_t)n + 1, sizeof *gr);
    if (!gr) abort();
    /* step_start[s]: the schedule position of step s's node (-1: a CONST fill before the schedule);
     * step s covers positions step_start[s] .. (the next larger start) - 1 */
    int *start = malloc(sizeof(int) * (size_t)(p->nsteps + 1)), *end = malloc(sizeof(int) * (size_t)(p->nsteps + 1));
    if (!start || !end) abort();
    for (int s = 0; s < p->nsteps; s++) start[s] = p->step_node[s] >= 0 && p->step_node[s] < g->n ? pos[p->step_node[s]] : -1;
    int next = p->norder;
    for (int s = p->nsteps - 1; s >= 0; s--) {
        end[s] = start[s] < 0 ? -1 : next - 1;
        if (start[s] >= 0 && (s == 0 || start[s - 1] != start[s])) next = start[s];
    }
    int k = 0;
    for (int i = 0; i < g->n; i++) {
        if (!is_grad[i] || p->mem->offset[i] < 0 || pos[i] < 0) continue;
        const ir_node *nd = &g->nodes[i];
        cg_grad *c = &gr[k++];
        c->node = i;
        c->pos = pos[i];
        c->offset = p->mem->offset[i];
        c->bytes = ir_numel(nd) * (int64_t)ir_dtype_size(nd->dtype);
        c->dtype = nd->dtype;
        /* the last position that writes or (backward) reads the buffer: a gradient the backward
         * pass reads on (pos_embed's, with batch 1 the same tensor as the residual stream's) is
         * averaged only after that */
        int last = pos[i];
        for (int q = pos[i] + 1; q < p->norder; q++) {
            const ir_node *u = &g->nodes[p->order[q]];
            if (is_optimizer(u->op)) continue;
            for (int in = 0; in < u->ninputs; in++)
                if (overlaps(p, u->inputs[in], c->offset, c->bytes)) last = q;
        }
        c->ready_step = -1;
        for (int s = 0; s < p->nsteps; s++)
            if (start[s] <= last) c->ready_step = s;
        c->use_step = p->nsteps;
        for (int s = 0; s < p->nsteps && c->use_step == p->nsteps; s++) {
            if (start[s] < 0) continue;
            for (int q = start[s]; q <= end[s] && c->use_step == p->nsteps; q++) {
                const ir_node *u = &g->nodes[p->order[q]];
                if (!is_optimizer(u->op)) continue;
                for (int in = 0; in < u->ninputs; in++)
                    if (overlaps(p, u->inputs[in], c->offset, c->bytes)) c->use_step = s;
            }
        }
    }
    free(start);
    free(end);
    free(pos);
    free(is_grad);
    /* one buffer once (the later ready step, the earlier use); partial overlaps are a bug */
    cg_grad **by_off = malloc(sizeof *by_off * (size_t)(n + 1));
    if (!by_off) abort();
    for (int i = 0; i < n; i++) by_off[i] = &gr[i];
    qsort(by_off, (size_t)n, sizeof *by_off, cmp_offset);
    for (int i = 1; i < n; i++) {
        cg_grad *a = by_off[i - 1], *b = by_off[i];
        if (a->node < 0) continue;
        if (b->offset == a->offset && b->bytes == a->bytes && b->dtype == a->dtype) {
            if (b->ready_step < a->ready_step) b->ready_step = a->ready_step;
            if (b->use_step > a->use_step) b->use_step = a->use_step;
            a->node = -1;
        } else if (b->offset < a->offset + a->bytes) {
            snprintf(err, errsize, "codegen: gradients %%%d and %%%d overlap in the arena ([%lld, +%lld) and [%lld, +%lld))",
                     a->node, b->node, (long long)a->offset, (long long)a->bytes, (long long)b->offset,
                     (long long)b->bytes);
            free(by_off);
            free(gr);
            return -1;
        }
    }
    free(by_off);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (gr[i].node >= 0) gr[m++] = gr[i];
    qsort(gr, (size_t)m, sizeof *gr, cmp_grad);
    for (int i = 0; i < m; i++)
        if (gr[i].use_step <= gr[i].ready_step) {
            snprintf(err, errsize, "codegen: gradient %%%d is read by step %d before its last write (step %d)",
                     gr[i].node, gr[i].use_step, gr[i].ready_step);
            free(gr);
            return -1;
        }
    *out = gr;
    *count = m;
    return 0;
}
