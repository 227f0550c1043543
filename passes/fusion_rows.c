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
 * (codegen/emit_rows.c), one pass 2 for both.
 *
 * residual-layer-norm-grad: the backward of a pre-norm block has dx = LAYER_NORM_DX(dy, x, gamma)
 * and right after it the residual stream's gradient ADD(d_out, dx) (autodiff sums a value's
 * gradients as it reaches them), which bias-grad may have chained with the column sum of it (a
 * bias gradient). LAYER_NORM_DX becomes the first member of that chain (or of a chain with the
 * add): one row kernel computes dx, adds, stores the sum and sums it over rows
 * (codegen/emit_chain_rows.c); dx itself is stored only if something else reads it. Runs
 * after bias-grad and elementwise-chain. */
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

/* chain c, from node `first` on, is elementwise members that may end in a column sum */
static int elementwise_chain_from(const ir_graph *g, int first) {
    int c = g->nodes[first].chain;
    for (int j = first; j < g->n && g->nodes[j].chain == c; j++) {
        const ir_node *m = &g->nodes[j];
        int ends = j + 1 >= g->n || g->nodes[j + 1].chain != c;
        if (!(ir_op_flags(m->op) & IR_OPF_ELEMENTWISE) && !(ends && m->op == IR_OP_SUM_TO && j > first)) return 0;
    }
    return 1;
}

int pass_fuse_residual_layer_norm_grad(ir_graph *g) {
    int chains = last_chain(g), count = 0;
    for (int i = 0; i + 1 < g->n; i++) {
        ir_node *dx = &g->nodes[i], *add = &g->nodes[i + 1];
        if (dx->op != IR_OP_LAYER_NORM_DX || dx->chain || dx->group) continue;
        int reads = 0;
        for (int k = 0; k < add->ninputs; k++) reads |= add->inputs[k] == i;
        if (!reads || !(ir_op_flags(add->op) & IR_OPF_ELEMENTWISE) || add->group || !ir_same_shape(add, dx)) continue;
        if (add->chain && !elementwise_chain_from(g, i + 1)) continue;
        if (!add->chain) add->chain = ++chains;
        dx->chain = add->chain;
        count++;
    }
    return count;
}

/* ---- select-token-layer-norm -------------------------------------------------------------- *
 * A LayerNorm read only through slices along a token axis (the head's class token, and the
 * distillation token: the final norm of DeiT) becomes, for each slice, the LayerNorm of that
 * slice of its input: SLICE(x) then LAYER_NORM, the rows the head reads and no others, forward
 * and (autodiff then differentiates the small LayerNorm) backward. A row's LayerNorm depends on
 * that row only, so the values are the same bits; with two slices (a distilled model) gamma's
 * and beta's gradients are the two slices' sums added, another order than one sum over the
 * rows (to rounding). Runs in forward-fusion. */

/* LayerNorm i can be taken apart: not an output, read only by slices along another axis than
 * the normalized one */
static int sliced_only(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    if (n->op != IR_OP_LAYER_NORM || (n->flags & IR_NODE_OUTPUT)) return 0;
    int readers = 0;
    for (int j = i + 1; j < g->n; j++)
        for (int k = 0; k < g->nodes[j].ninputs; k++) {
            if (g->nodes[j].inputs[k] != i) continue;
            const ir_node *s = &g->nodes[j];
            if (s->op != IR_OP_SLICE || s->attrs.axis == n->ndim - 1 || s->attrs.axis < 0) return 0;
            readers++;
        }
    return readers > 0;
}

ir_graph *pass_fuse_select_token_layer_norm(const ir_graph *f, int *count, char *err, size_t errsize) {
    ir_graph *g = ir_graph_new();
    g->info = f->info;
    if (f->info.model_name) g->info.model_name = ir_arena_strdup(&g->arena, f->info.model_name);
    int *map = malloc(sizeof(int) * (size_t)(f->n + 1));
    if (!map) abort();
    int rc = 0;
    *count = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        const ir_node *n = &f->nodes[i];
        if (sliced_only(f, i)) { /* made again after each of its slices */
            map[i] = -1;
            ++*count;
            continue;
        }
        int ln = n->op == IR_OP_SLICE ? n->inputs[0] : -1;
        if (ln < 0 || map[ln] >= 0) {
            map[i] = ir_copy_node(g, f, i, map);
            rc = map[i] < 0;
            continue;
        }
        const ir_node *l = &f->nodes[ln];
        int x = map[l->inputs[0]];
        int s = ir_unary(g, IR_OP_SLICE, x, &n->attrs, n->name, n->loc);
        int in[3] = {s, map[l->inputs[1]], map[l->inputs[2]]};
        int y = s < 0 ? -1 : ir_add(g, IR_OP_LAYER_NORM, in, 3, &l->attrs, l->dtype, 0, NULL, l->name, l->loc);
        if (y >= 0) g->nodes[y].flags = n->flags;
        map[i] = y;
        rc = y < 0;
    }
    free(map);
    if (rc) {
        snprintf(err, errsize, "select-token-layer-norm: %s", g->error);
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

/* ---- softmax-cross-entropy ---------------------------------------------------------------- *
 * The loss CROSS_ENTROPY(logits, labels, opt) and its derivative CROSS_ENTROPY_GRAD(dloss,
 * logits, labels, opt): the derivative reads the seed (or mixup's weight of it), never the loss,
 * so the loss moves to right before it (a new graph; nothing between reads the loss) and the two
 * are a chain: one row kernel computes each row's log-sum-exp once, writes the row's loss for
 * the mean and the row's dlogits (codegen/emit_rows.c); the same arithmetic, the same bits. */

/* the CROSS_ENTROPY_GRAD after node c over c's logits, labels and opt, which no node from c on
 * depends on c (through its inputs); -1 if none */
static int cross_entropy_partner(const ir_graph *g, int c, unsigned char *dep) {
    const ir_node *ce = &g->nodes[c];
    if (ce->op != IR_OP_CROSS_ENTROPY || ce->chain || ce->group) return -1;
    memset(dep, 0, (size_t)g->n);
    dep[c] = 1;
    for (int j = c + 1; j < g->n; j++) {
        const ir_node *n = &g->nodes[j];
        for (int k = 0; k < n->ninputs; k++) dep[j] |= dep[n->inputs[k]];
        if (n->op == IR_OP_CROSS_ENTROPY_GRAD && !n->chain && !n->group && n->inputs[1] == ce->inputs[0] &&
            n->inputs[2] == ce->inputs[1] && n->inputs[3] == ce->inputs[2])
            return dep[j] ? -1 : j;
        if (dep[j]) return -1; /* the loss would have to move past a reader of it */
    }
    return -1;
}

ir_graph *pass_fuse_softmax_cross_entropy(const ir_graph *f, int *count, char *err, size_t errsize) {
    int n = f->n;
    int *before = malloc(sizeof(int) * (size_t)(n + 1)); /* [d] the loss that moves right before d, or -1 */
    unsigned char *moved = calloc((size_t)n + 1, 1), *dep = malloc((size_t)n + 1);
    int *map = malloc(sizeof(int) * (size_t)(n + 1));
    if (!before || !moved || !dep || !map) abort();
    for (int i = 0; i < n; i++) before[i] = -1;
    for (int c = 0; c < n; c++) {
        int d = cross_entropy_partner(f, c, dep);
        if (d < 0 || before[d] >= 0) continue;
        before[d] = c;
        moved[c] = 1;
    }
    ir_graph *g = ir_graph_new();
    g->info = f->info;
    if (f->info.model_name) g->info.model_name = ir_arena_strdup(&g->arena, f->info.model_name);
    int rc = 0, chains = last_chain(f);
    *count = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (moved[i]) continue; /* copied right before its derivative */
        int c = before[i];
        if (c >= 0) {
            map[c] = ir_copy_node(g, f, c, map);
            rc = map[c] < 0;
            if (rc) break;
        }
        map[i] = ir_copy_node(g, f, i, map);
        rc = map[i] < 0;
        if (rc || c < 0) continue;
        g->nodes[map[c]].chain = g->nodes[map[i]].chain = ++chains;
        ++*count;
    }
    free(before);
    free(moved);
    free(dep);
    free(map);
    if (rc) {
        snprintf(err, errsize, "softmax-cross-entropy: %s", g->error);
        ir_graph_free(g);
        return NULL;
    }
    return g;
}
