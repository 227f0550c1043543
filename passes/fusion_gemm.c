/* fusion_gemm.c: gelu-epilogue, a fusion of the finished step (fusion.c has the table of
 * names): for a model with tanh GELU (`gelu: tanh`), the MLP's GELU goes into the epilogue of
 * the GEMM next to it, as cuBLASLt's GELU epilogues compute it (the tanh approximation; for
 * exact-erf GELU no library ships a backward epilogue, so erf models keep bias-gelu and
 * bias-gelu-grad, which are kernels of our own):
 *
 *   forward   mm = MATMUL(x, W) -> h = ADD(mm, bias [N]) -> y = GELU_tanh(h)
 *             one GEMM with GELU_AUX_BIAS: y in C, h (which the backward reads) in aux
 *   backward  g = MATMUL(dy, W2) -> dh = GELU_GRAD_tanh(g, h) -> db = SUM_TO(dh) [N]
 *             one GEMM with DGELU_BGRAD: dh in C, h read from aux, db the bias gradient
 *
 * Each is a chain (ir_node.chain) that starts with its MATMUL; the GEMM must be one product
 * (batch 1 once the batch dims are flattened into M: a 2-D right operand, A not transposed).
 * The backward's GELU_GRAD and SUM_TO come after other nodes in the autodiff's order (the
 * fc2 weight gradient's GEMM): the new graph moves them right behind their MATMUL, which is
 * topological (their other input, h, is older). The interpreter's answer is unchanged. */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the only reader of node i among nodes after it, or -1 (none, several, or an output) */
static int only_reader(const ir_graph *g, int i) {
    if (g->nodes[i].flags & IR_NODE_OUTPUT) return -1;
    int r = -1;
    for (int j = i + 1; j < g->n; j++)
        for (int k = 0; k < g->nodes[j].ninputs; k++)
            if (g->nodes[j].inputs[k] == i) {
                if (r >= 0 && r != j) return -1;
                r = j;
            }
    return r;
}

/* the first SUM_TO of node i to its last dim, or -1 */
static int column_sum(const ir_graph *g, int i) {
    const ir_node *x = &g->nodes[i];
    for (int j = i + 1; j < g->n; j++) {
        const ir_node *s = &g->nodes[j];
        if (s->op == IR_OP_SUM_TO && s->inputs[0] == i && s->ndim == 1 && s->shape[0] == x->shape[x->ndim - 1] &&
            !s->chain && s->dtype == x->dtype)
            return j;
    }
    return -1;
}

static int is_leaf(const ir_graph *g, int i) { return (ir_op_flags(g->nodes[i].op) & IR_OPF_LEAF) != 0; }

/* a MATMUL the emitter runs as one product, C of the same dtype as its operands */
static int single_gemm(const ir_graph *g, const ir_node *mm) {
    const ir_node *a = &g->nodes[mm->inputs[0]], *b = &g->nodes[mm->inputs[1]];
    return mm->op == IR_OP_MATMUL && !mm->chain && !mm->attrs.trans_a && b->ndim == 2 && a->ndim >= 2 &&
           mm->ndim >= 2 && a->dtype == mm->dtype && b->dtype == mm->dtype;
}

/* the pattern at MATMUL i: the two nodes after it in the chain (*n1, *n2), or 0 */
static int epilogue_at(const ir_graph *g, int i, int *n1, int *n2) {
    const ir_node *mm = &g->nodes[i];
    if (!single_gemm(g, mm)) return 0;
    int r = only_reader(g, i);
    if (r < 0) return 0;
    const ir_node *n = &g->nodes[r];
    if (n->chain || n->group || !ir_same_shape(n, mm) || n->dtype != mm->dtype) return 0;
    if (n->op == IR_OP_ADD && n->inputs[0] == i) { /* forward: bias add, then the GELU */
        const ir_node *bias = &g->nodes[n->inputs[1]];
        if (bias->ndim != 1 || bias->shape[0] != mm->shape[mm->ndim - 1] || bias->dtype != mm->dtype) return 0;
        int y = -1;
        for (int j = r + 1; j < g->n && y < 0; j++)
            if (g->nodes[j].op == IR_OP_GELU && g->nodes[j].inputs[0] == r) y = j;
        if (y < 0 || !g->nodes[y].attrs.gelu_tanh || g->nodes[y].chain || g->nodes[y].dtype != mm->dtype) return 0;
        /* the GELU must be h's only reader but for the backward's GELU_GRAD (which reads aux) */
        for (int j = r + 1; j < g->n; j++)
            for (int k = 0; k < g->nodes[j].ninputs; k++)
                if (g->nodes[j].inputs[k] == r && j != y && g->nodes[j].op != IR_OP_GELU_GRAD) return 0;
        *n1 = r;
        *n2 = y;
        return 1;
    }
    if (n->op == IR_OP_GELU_GRAD && n->inputs[0] == i && n->attrs.gelu_tanh && n->inputs[1] != i) {
        const ir_node *h = &g->nodes[n->inputs[1]];
        int s = column_sum(g, r);
        if (s < 0 || !ir_same_shape(h, mm) || h->dtype != mm->dtype) return 0;
        *n1 = r;
        *n2 = s;
        return 1;
    }
    return 0;
}

ir_graph *pass_fuse_gelu_epilogue(const ir_graph *f, int *count, char *err, size_t errsize) {
    int n = f->n;
    int *first = malloc(sizeof(int) * (size_t)(n + 1)), *second = malloc(sizeof(int) * (size_t)(n + 1));
    int *moved = calloc((size_t)n + 1, sizeof(int)), *map = malloc(sizeof(int) * (size_t)(n + 1));
    if (!first || !second || !moved || !map) abort();
    for (int i = 0; i < n; i++) {
        first[i] = second[i] = -1;
        int a, b;
        if (f->nodes[i].op != IR_OP_MATMUL || !epilogue_at(f, i, &a, &b) || moved[a] || moved[b]) continue;
        /* what moves behind the MATMUL may read it, older nodes, leaves (copied before it) and
         * the first of the two */
        int ok = 1;
        for (int k = 0; k < f->nodes[a].ninputs; k++) ok &= f->nodes[a].inputs[k] <= i || is_leaf(f, f->nodes[a].inputs[k]);
        for (int k = 0; k < f->nodes[b].ninputs; k++)
            ok &= f->nodes[b].inputs[k] <= i || f->nodes[b].inputs[k] == a || is_leaf(f, f->nodes[b].inputs[k]);
        if (!ok) continue;
        first[i] = a;
        second[i] = b;
        moved[a] = moved[b] = 1;
    }
    ir_graph *g = ir_graph_new();
    g->info = f->info;
    if (f->info.model_name) g->info.model_name = ir_arena_strdup(&g->arena, f->info.model_name);
    int rc = 0, chains = 0;
    for (int i = 0; i < n; i++)
        if (f->nodes[i].chain > chains) chains = f->nodes[i].chain;
    *count = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (moved[i]) continue; /* copied already: behind its MATMUL, or a leaf before it */
        if (first[i] >= 0) /* the leaves the two read that come later (a bias): before the GEMM */
            for (int q = 0; q < 2 && !rc; q++) {
                const ir_node *m = &f->nodes[q ? second[i] : first[i]];
                for (int k = 0; k < m->ninputs && !rc; k++) {
                    int x = m->inputs[k];
                    if (x <= i || !is_leaf(f, x) || moved[x]) continue;
                    map[x] = ir_copy_node(g, f, x, map);
                    rc = map[x] < 0;
                    moved[x] = 1;
                }
            }
        if (rc) break;
        map[i] = ir_copy_node(g, f, i, map);
        rc = map[i] < 0;
        if (rc || first[i] < 0) continue;
        map[first[i]] = ir_copy_node(g, f, first[i], map);
        rc = map[first[i]] < 0;
        if (!rc) map[second[i]] = ir_copy_node(g, f, second[i], map);
        rc = rc || map[second[i]] < 0;
        if (rc) break;
        ++chains;
        g->nodes[map[i]].chain = g->nodes[map[first[i]]].chain = g->nodes[map[second[i]]].chain = chains;
        ++*count;
    }
    free(first);
    free(second);
    free(moved);
    free(map);
    if (rc) {
        snprintf(err, errsize, "gelu-epilogue: %s", g->error);
        ir_graph_free(g);
        return NULL;
    }
    return g;
}
