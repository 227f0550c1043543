/* memplan.c: one device arena for a training step, with buffer offsets from liveness.
 *
 * Layout: persistent buffers first (WEIGHT, STATE, INPUT, CONST, every output), in node order,
 * then the transient region, where each value occupies [offset, offset + bytes) from the step
 * that computes it to the last step that reads it (both inclusive, so a kernel never writes a
 * buffer one of its inputs lives in). Transient buffers are placed largest first at the lowest
 * offset that does not collide with an already placed buffer whose lifetime overlaps (greedy
 * best-fit, deterministic). Views (IR_OPF_ALIAS: RESHAPE, PROJECT) share their input's
 * buffer, and effects (ADAMW) their parameter's. A node with several outputs has one buffer
 * holding them all, output k after the aligned outputs before it; PROJECT k points there.
 *
 * An elementwise chain (ir_node.chain: consecutive steps, one kernel or one GEMM with an
 * epilogue) counts as one step for lifetimes: every member's value and scratch is live from
 * the chain's first step, and every input of a member until its last, since one kernel reads
 * the inputs of all of them while it writes all their values.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int id;            /* node (or n + node for a scratch buffer) */
    int start, end;    /* schedule positions, inclusive */
    int64_t bytes, offset;
} buf;

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) abort();
    return p;
}

static int64_t align_up(int64_t x) { return (x + PASS_MEM_ALIGN - 1) / PASS_MEM_ALIGN * PASS_MEM_ALIGN; }

static int64_t last_of(const ir_node *n) { return n->ndim ? n->shape[n->ndim - 1] : 1; }

int64_t pass_mem_output_offset(const ir_node *n, int k) {
    int64_t at = 0;
    for (int j = 0; j < k; j++) {
        ir_node o;
        ir_node_output(n, j, &o);
        at += align_up(ir_numel(&o) * (int64_t)ir_dtype_size(o.dtype));
    }
    return at;
}

int64_t pass_mem_bytes(const ir_node *n) { return pass_mem_output_offset(n, ir_op_outputs(n->op)); }

/* Row pitches: a 16-bit value that only matrix products and softmax rows make and read, whose
 * rows are not a multiple of 8 elements (attention's scores and probabilities, N = 197), is
 * stored with its rows padded to one (16 bytes), so every GEMM reading or writing it has a
 * 16-byte-aligned leading dimension and batch stride (tensor-core algorithms). A softmax's
 * input and output rows share one pitch, so either all of them are padded or none. */
static int pitch_op(ir_op op) { return op == IR_OP_MATMUL || op == IR_OP_SOFTMAX || op == IR_OP_SOFTMAX_GRAD; }

static void row_pitches(const ir_graph *g, int64_t *pitch) {
    int n = g->n;
    unsigned char *pad = xcalloc((size_t)n, 1);
    for (int i = 0; i < n; i++) {
        const ir_node *nd = &g->nodes[i];
        pad[i] = pitch_op(nd->op) && (nd->dtype == IR_F16 || nd->dtype == IR_BF16) && nd->ndim >= 2 &&
                 last_of(nd) % 8 != 0 && !(nd->flags & IR_NODE_OUTPUT);
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].ninputs; k++)
            if (!pitch_op(g->nodes[i].op)) pad[g->nodes[i].inputs[k]] = 0;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < n; i++) {
            const ir_node *nd = &g->nodes[i];
            if (nd->op != IR_OP_SOFTMAX && nd->op != IR_OP_SOFTMAX_GRAD) continue;
            int all = pad[i];
            for (int k = 0; k < nd->ninputs; k++) all &= pad[nd->inputs[k]];
            if (all || !(pad[i] || pad[nd->inputs[0]] || (nd->ninputs > 1 && pad[nd->inputs[1]]))) continue;
            pad[i] = 0;
            for (int k = 0; k < nd->ninputs; k++) pad[nd->inputs[k]] = 0;
            changed = 1;
        }
    }
    for (int i = 0; i < n; i++) {
        const ir_node *nd = &g->nodes[i];
        pitch[i] = nd->ndim ? (pad[i] ? (last_of(nd) + 7) / 8 * 8 : last_of(nd)) : 1;
    }
    free(pad);
}

int64_t pass_mem_value_bytes(const ir_graph *g, const pass_mem_plan *p, int i) {
    const ir_node *nd = &g->nodes[i];
    if (!p->pitch || !nd->ndim || p->pitch[i] == last_of(nd) || ir_numel(nd) == 0) return pass_mem_bytes(nd);
    return align_up(ir_numel(nd) / last_of(nd) * p->pitch[i] * (int64_t)ir_dtype_size(nd->dtype));
}

/* The node whose buffer holds node i's value, and where in it (*delta bytes). */
static int node_root(const ir_graph *g, int i, int64_t *delta) {
    *delta = 0;
    for (;;) {
        const ir_node *n = &g->nodes[i];
        if (!(ir_op_flags(n->op) & (IR_OPF_ALIAS | IR_OPF_EFFECT))) return i;
        if (n->op == IR_OP_PROJECT) *delta += pass_mem_output_offset(&g->nodes[n->inputs[0]], n->attrs.output);
        i = n->inputs[0];
    }
}

static int by_size(const void *pa, const void *pb) {
    const buf *a = pa, *b = pb;
    if (a->bytes != b->bytes) return a->bytes > b->bytes ? -1 : 1;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int by_offset(const void *pa, const void *pb) {
    const buf *a = *(buf *const *)pa, *b = *(buf *const *)pb;
    return a->offset < b->offset ? -1 : a->offset > b->offset;
}

pass_mem_plan *pass_mem_plan_new(const ir_graph *g, const int *order, int nsteps,
                                 const int64_t *scratch_bytes) {
    int n = g->n;
    pass_mem_plan *p = xcalloc(1, sizeof *p);
    p->n = n;
    p->offset = xcalloc((size_t)n, sizeof *p->offset);
    p->alias_of = xcalloc((size_t)n, sizeof *p->alias_of);
    p->scratch_offset = xcalloc((size_t)n, sizeof *p->scratch_offset);
    p->persistent = xcalloc((size_t)n, 1);
    p->pitch = xcalloc((size_t)n, sizeof *p->pitch);
    row_pitches(g, p->pitch);
    int *pos = xcalloc((size_t)n, sizeof *pos), *end = xcalloc((size_t)n, sizeof *end);
    int64_t *delta = xcalloc((size_t)n, sizeof *delta);
    for (int i = 0; i < n; i++) {
        p->offset[i] = p->scratch_offset[i] = -1;
        p->alias_of[i] = node_root(g, i, &delta[i]);
        pos[i] = -1;
        end[i] = -1;
    }
    /* a chain's steps as one: [first[s], last[s]] (a step outside chains: [s, s]) */
    int *first = xcalloc((size_t)nsteps + 1, sizeof *first), *last = xcalloc((size_t)nsteps + 1, sizeof *last);
    for (int s = 0; s < nsteps; s++) {
        int c = g->nodes[order[s]].chain;
        first[s] = c && s > 0 && g->nodes[order[s - 1]].chain == c ? first[s - 1] : s;
    }
    for (int s = nsteps - 1; s >= 0; s--) {
        int c = g->nodes[order[s]].chain;
        last[s] = c && s + 1 < nsteps && g->nodes[order[s + 1]].chain == c ? last[s + 1] : s;
    }
    for (int s = 0; s < nsteps; s++) pos[order[s]] = first[s];
    /* persistence and lifetimes live on the root of each alias class */
    for (int i = 0; i < n; i++) {
        const ir_node *nd = &g->nodes[i];
        int r = p->alias_of[i];
        if ((ir_op_flags(nd->op) & IR_OPF_LEAF) || (nd->flags & IR_NODE_OUTPUT)) p->persistent[r] = 1;
    }
    /* a chain runs as one kernel: its members' inputs are read, and its members' values written,
     * from its first step to its last (with mixed dtypes a member's output may not take the place
     * of another member's input, whose elements are of another size) */
    for (int s = 0; s < nsteps; s++) {
        const ir_node *nd = &g->nodes[order[s]];
        int r = p->alias_of[order[s]];
        if (end[r] < last[s]) end[r] = last[s];
        for (int k = 0; k < nd->ninputs; k++) {
            int ri = p->alias_of[nd->inputs[k]];
            if (end[ri] < last[s]) end[ri] = last[s];
        }
    }
    /* persistent region */
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (p->alias_of[i] != i || !p->persistent[i]) continue;
        if (pos[i] < 0 && !(ir_op_flags(g->nodes[i].op) & IR_OPF_LEAF)) continue;
        p->offset[i] = at;
        at += pass_mem_value_bytes(g, p, i);
    }
    p->persistent_bytes = at;
    /* transient buffers: scheduled roots that are not persistent, plus scratch */
    buf *bufs = xcalloc((size_t)(2 * n), sizeof *bufs);
    int nb = 0;
    for (int i = 0; i < n; i++) {
        if (p->alias_of[i] != i || p->persistent[i] || pos[i] < 0) continue;
        bufs[nb++] = (buf){i, pos[i], end[i], pass_mem_value_bytes(g, p, i), -1};
    }
    for (int s = 0; scratch_bytes && s < nsteps; s++) {
        int i = order[s];
        if (scratch_bytes[i] > 0) bufs[nb++] = (buf){n + i, first[s], last[s], align_up(scratch_bytes[i]), -1};
    }
    qsort(bufs, (size_t)nb, sizeof *bufs, by_size);
    buf **conf = xcalloc((size_t)nb, sizeof *conf);
    int64_t top = 0;
    for (int b = 0; b < nb; b++) {
        int nc = 0;
        for (int c = 0; c < b; c++)
            if (bufs[c].start <= bufs[b].end && bufs[b].start <= bufs[c].end) conf[nc++] = &bufs[c];
        qsort(conf, (size_t)nc, sizeof *conf, by_offset);
        int64_t off = 0;
        for (int c = 0; c < nc; c++) {
            if (conf[c]->offset >= off + bufs[b].bytes) break; /* fits in the gap below */
            if (conf[c]->offset + conf[c]->bytes > off) off = conf[c]->offset + conf[c]->bytes;
        }
        bufs[b].offset = off;
        if (off + bufs[b].bytes > top) top = off + bufs[b].bytes;
    }
    /* peak: the most bytes live at one step */
    int64_t *live = xcalloc((size_t)nsteps + 1, sizeof *live), peak = 0;
    for (int b = 0; b < nb; b++) {
        int id = bufs[b].id;
        if (id < n) p->offset[id] = p->persistent_bytes + bufs[b].offset;
        else p->scratch_offset[id - n] = p->persistent_bytes + bufs[b].offset;
        for (int s = bufs[b].start; s <= bufs[b].end; s++) live[s] += bufs[b].bytes;
    }
    for (int s = 0; s < nsteps; s++) peak = live[s] > peak ? live[s] : peak;
    p->peak_bytes = p->persistent_bytes + peak;
    p->arena_bytes = p->persistent_bytes + top;
    if (p->arena_bytes == 0) p->arena_bytes = PASS_MEM_ALIGN;
    /* every alias takes its root's offset */
    for (int i = 0; i < n; i++) {
        int r = p->alias_of[i];
        if (r != i) p->offset[i] = p->offset[r] < 0 ? -1 : p->offset[r] + delta[i];
        if (r != i) p->persistent[i] = p->persistent[r];
    }
    free(live);
    free(first);
    free(last);
    free(conf);
    free(bufs);
    free(delta);
    p->pos = pos;
    p->last = end;
    return p;
}

void pass_mem_plan_free(pass_mem_plan *p) {
    if (!p) return;
    free(p->offset);
    free(p->alias_of);
    free(p->scratch_offset);
    free(p->persistent);
    free(p->pitch);
    free(p->pos);
    free(p->last);
    free(p);
}

/* ---- the checker (the verifier of the memory-plan stage) ---------------------------------- */

typedef struct {
    int id;             /* node, or n + node for its scratch */
    int64_t at, bytes;
    int start, end;     /* live steps, inclusive; persistent: always */
} placed;

static int by_at(const void *pa, const void *pb) {
    const placed *a = pa, *b = pb;
    return a->at < b->at ? -1 : a->at > b->at;
}

int pass_mem_plan_check(const ir_graph *g, const pass_mem_plan *p, const int64_t *scratch_bytes,
                        char *err, size_t errsize) {
    int n = g->n, nb = 0, rc = 0;
    placed *b = xcalloc((size_t)(2 * n), sizeof *b);
    for (int i = 0; i < n && !rc; i++) {
        int64_t delta, bytes = pass_mem_value_bytes(g, p, i);
        int r = node_root(g, i, &delta);
        if (p->alias_of[i] != r || (p->offset[i] >= 0) != (p->offset[r] >= 0) ||
            (p->offset[i] >= 0 && p->offset[i] != p->offset[r] + delta)) {
            snprintf(err, errsize, "memory plan: %%%d is not at its root %%%d's offset (+%lld)", i, r,
                     (long long)delta);
            rc = -1;
        } else if (p->offset[i] >= 0 && (p->offset[i] % PASS_MEM_ALIGN || p->offset[i] + bytes > p->arena_bytes)) {
            snprintf(err, errsize, "memory plan: %%%d at %lld (+%lld) is unaligned or outside the arena "
                     "(%lld bytes)", i, (long long)p->offset[i], (long long)bytes, (long long)p->arena_bytes);
            rc = -1;
        }
        if (rc || p->offset[i] < 0) continue;
        if (r == i) {
            int keep = p->persistent[i];
            b[nb++] = (placed){i, p->offset[i], bytes, keep ? -1 : p->pos[i], keep ? 1 << 30 : p->last[i]};
        }
        if (scratch_bytes && scratch_bytes[i] > 0 && p->pos[i] >= 0) {
            if (p->scratch_offset[i] < 0 || p->scratch_offset[i] + scratch_bytes[i] > p->arena_bytes) {
                snprintf(err, errsize, "memory plan: %%%d has no room for its %lld bytes of scratch", i,
                         (long long)scratch_bytes[i]);
                rc = -1;
            } else {
                b[nb++] = (placed){n + i, p->scratch_offset[i], align_up(scratch_bytes[i]), p->pos[i], p->pos[i]};
            }
        }
    }
    qsort(b, (size_t)nb, sizeof *b, by_at);
    for (int x = 0; x < nb && !rc; x++)
        for (int y = x + 1; y < nb && b[y].at < b[x].at + b[x].bytes && !rc; y++)
            if (b[x].start <= b[y].end && b[y].start <= b[x].end) {
                snprintf(err, errsize, "memory plan: %s%%%d [%lld,+%lld) and %s%%%d [%lld,+%lld) overlap "
                         "while both are live", b[x].id >= n ? "scratch of " : "", b[x].id % n,
                         (long long)b[x].at, (long long)b[x].bytes, b[y].id >= n ? "scratch of " : "",
                         b[y].id % n, (long long)b[y].at, (long long)b[y].bytes);
                rc = -1;
            }
    free(b);
    return rc;
}
