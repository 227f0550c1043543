/* fusion.c: the named fusions that --fuse turns on and off, and the passes that make them.
 *
 * Each fusion has a name, a bit (PASS_FUSE_*), the pipeline stage it runs in and whether
 * "all" includes it. Fusions that need their own derivative rule run in forward-fusion,
 * before the training pass differentiates the graph; those that only regroup the finished
 * step run in fusion, after precision. Neither kind changes what the graph computes (beyond
 * rounding): the interpreter gives the same answer with or without them.
 *
 *   layer-norm-stats  forward-fusion, opt-in   LAYER_NORM keeps its rows' mean and rstd
 *   qkv-attention     forward-fusion, in "all" softmax attention over the qkv projection: one
 *                                              ATTENTION op (fusion_attention.c)
 *   adamw-group       fusion, in "all"         f32 ADAMW updates in one launch
 *   bias-gelu         fusion, in "all"         a linear layer's bias add and the GELU after it:
 *                                              one elementwise kernel (a chain) fed by the GEMM
 *   elementwise-chain fusion, in "all"         runs of elementwise nodes, each reading the one
 *                                              before: one kernel (a bias add and the residual
 *                                              add after it; values read only inside it stay
 *                                              in registers)
 *   bias-gelu-grad    fusion, in "all"         GELU_GRAD and the fc1 bias gradient (its column
 *                                              sum): one kernel (fusion_grad.c)
 *   bias-grad         fusion, in "all"         another elementwise node and its column sum (a
 *                                              bias gradient): one kernel (fusion_grad.c)
 *   gelu-epilogue     fusion, in "all"         tanh GELU only: bias + GELU, and GELU' + bias
 *                                              gradient, in GEMM epilogues (fusion_gemm.c)
 *   residual-layer-norm fusion, in "all"       the residual add's chain and the LayerNorm of
 *                                              its sum: one kernel, two outputs (fusion_rows.c)
 *   layer-norm-dbeta  fusion, in "all"         a LayerNorm's dgamma and dbeta column sums in one
 *                                              kernel (fusion_rows.c)
 *   residual-layer-norm-grad fusion, in "all"  a LayerNorm's dx, the residual gradient's add
 *                                              after it and that sum's column sum (a bias
 *                                              gradient): one row kernel (fusion_rows.c)
 *   select-token-layer-norm forward-fusion, in "all"  the final LayerNorm on the rows the head
 *                                              selects only (the class token): SLICE, then
 *                                              LAYER_NORM (fusion_rows.c)
 *   softmax-cross-entropy fusion, in "all"     the loss and its derivative: one row kernel
 *                                              (fusion_rows.c)
 */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned bit;
    int in_all; /* "all" turns it on */
} fusions[] = {
    {"adamw-group", PASS_FUSE_ADAMW_GROUP, 1},
    {"layer-norm-stats", PASS_FUSE_LAYER_NORM_STATS, 0},
    {"bias-gelu", PASS_FUSE_BIAS_GELU, 1},
    {"elementwise-chain", PASS_FUSE_ELEMENTWISE_CHAIN, 1},
    {"bias-gelu-grad", PASS_FUSE_BIAS_GELU_GRAD, 1},
    {"bias-grad", PASS_FUSE_BIAS_GRAD, 1},
    {"gelu-epilogue", PASS_FUSE_GELU_EPILOGUE, 1},
    {"residual-layer-norm", PASS_FUSE_RESIDUAL_LAYER_NORM, 1},
    {"layer-norm-dbeta", PASS_FUSE_LAYER_NORM_DBETA, 1},
    {"qkv-attention", PASS_FUSE_QKV_ATTENTION, 1},
    {"residual-layer-norm-grad", PASS_FUSE_RESIDUAL_LAYER_NORM_GRAD, 1},
    {"select-token-layer-norm", PASS_FUSE_SELECT_TOKEN_LAYER_NORM, 1},
    {"softmax-cross-entropy", PASS_FUSE_SOFTMAX_CROSS_ENTROPY, 1},
};
enum { NFUSIONS = sizeof fusions / sizeof fusions[0] };

static unsigned all_bits(void) {
    unsigned b = 0;
    for (int i = 0; i < NFUSIONS; i++)
        if (fusions[i].in_all) b |= fusions[i].bit;
    return b;
}

int pass_fuse_parse(const char *spec, unsigned *bits, char *err, size_t errsize) {
    if (!spec || strcmp(spec, "all") == 0) {
        *bits = all_bits();
        return 0;
    }
    if (strcmp(spec, "none") == 0) {
        *bits = 0;
        return 0;
    }
    unsigned b = 0;
    const char *at = spec;
    for (;;) {
        size_t len = strcspn(at, ",");
        int found = len == 3 && strncmp(at, "all", 3) == 0;
        if (found) b |= all_bits();
        for (int i = 0; i < NFUSIONS && !found; i++)
            if (strlen(fusions[i].name) == len && strncmp(at, fusions[i].name, len) == 0) {
                b |= fusions[i].bit;
                found = 1;
            }
        if (!found) {
            char known[512];
            size_t k = 0;
            for (int i = 0; i < NFUSIONS && k < sizeof known; i++)
                k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "", fusions[i].name);
            snprintf(err, errsize, "--fuse %s: unknown fusion '%.*s' (known: %s; or all, none)", spec,
                     (int)(len < 64 ? len : 64), at, known);
            return -1;
        }
        if (!at[len]) break;
        at += len + 1;
    }
    *bits = b;
    return 0;
}

const char *pass_fuse_names(unsigned bits, char *buf, size_t size) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < NFUSIONS; i++)
        if (bits & fusions[i].bit && k < size)
            k += (size_t)snprintf(buf + k, size - k, "%s%s", k ? "," : "", fusions[i].name);
    if (!k) snprintf(buf, size, "none");
    return buf;
}

/* ---- layer-norm-stats --------------------------------------------------------------------- */

ir_graph *pass_fuse_layer_norm_stats(const ir_graph *f, char *err, size_t errsize) {
    ir_graph *g = ir_graph_new();
    g->info = f->info;
    if (f->info.model_name) g->info.model_name = ir_arena_strdup(&g->arena, f->info.model_name);
    int *map = malloc(sizeof(int) * (size_t)(f->n + 1));
    if (!map) abort();
    int rc = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        const ir_node *n = &f->nodes[i];
        if (n->op != IR_OP_LAYER_NORM) {
            map[i] = ir_copy_node(g, f, i, map);
            rc = map[i] < 0;
            continue;
        }
        int in[3] = {map[n->inputs[0]], map[n->inputs[1]], map[n->inputs[2]]};
        int s = ir_add(g, IR_OP_LAYER_NORM_STATS, in, 3, &n->attrs, n->dtype, 0, NULL, n->name, n->loc);
        ir_attrs p = {0}; /* output 0: y, in the LAYER_NORM's place */
        int y = s < 0 ? -1 : ir_add(g, IR_OP_PROJECT, &s, 1, &p, n->dtype, 0, NULL, n->name, n->loc);
        if (y >= 0) g->nodes[y].flags = n->flags;
        map[i] = y;
        rc = y < 0;
    }
    free(map);
    if (rc) {
        snprintf(err, errsize, "layer-norm-stats: %s", g->error);
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

/* ---- adamw-group -------------------------------------------------------------------------- */

static int groupable_adamw(const ir_graph *g, const ir_node *n) {
    if (n->op != IR_OP_ADAMW) return 0;
    for (int k = 0; k < 4; k++) /* the grouped kernel reads and writes float */
        if (g->nodes[n->inputs[k]].dtype != IR_F32) return 0;
    return 1;
}

static int same_update(const ir_node *a, const ir_node *b) {
    return a->inputs[4] == b->inputs[4] && a->attrs.beta1 == b->attrs.beta1 &&
           a->attrs.beta2 == b->attrs.beta2 && a->attrs.eps == b->attrs.eps;
}

int pass_fuse_adamw_group(ir_graph *g) {
    int groups = 0;
    for (int i = 0; i < g->n;) {
        if (!groupable_adamw(g, &g->nodes[i])) {
            i++;
            continue;
        }
        int j = i + 1;
        while (j < g->n && groupable_adamw(g, &g->nodes[j]) && same_update(&g->nodes[i], &g->nodes[j])) j++;
        if (j - i > 1) {
            groups++;
            for (int k = i; k < j; k++) g->nodes[k].group = groups;
        }
        i = j;
    }
    return groups;
}

/* ---- bias-gelu ---------------------------------------------------------------------------- */

/* h = ADD(MATMUL, bias [C]) with y = GELU(h) right after it: a chain of the two (the kernel
 * stores h, which GELU_GRAD reads in the backward pass, and y). */
static int last_chain(const ir_graph *g) { /* chains are numbered after what is there */
    int chains = 0;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].chain > chains) chains = g->nodes[i].chain;
    return chains;
}

int pass_fuse_bias_gelu(ir_graph *g) {
    int chains = last_chain(g);
    int count = 0;
    for (int i = 1; i < g->n; i++) {
        ir_node *y = &g->nodes[i], *h = &g->nodes[i - 1];
        if (y->op != IR_OP_GELU || y->inputs[0] != i - 1 || h->op != IR_OP_ADD || h->chain || h->group)
            continue;
        const ir_node *mm = &g->nodes[h->inputs[0]], *bias = &g->nodes[h->inputs[1]];
        if (mm->op != IR_OP_MATMUL || bias->ndim != 1 || !ir_same_shape(h, mm) || !ir_same_shape(y, h)) continue;
        h->chain = y->chain = ++chains;
        count++;
    }
    return count;
}

/* ---- elementwise-chain -------------------------------------------------------------------- */

enum { CHAIN_MAX = 4 }; /* members of a chain: keeps the kernel's parameters within bounds */

static int chainable(const ir_node *n) {
    return (ir_op_flags(n->op) & IR_OPF_ELEMENTWISE) && !n->group && n->ninputs <= 2;
}

int pass_fuse_elementwise_chain(ir_graph *g) {
    int chains = last_chain(g), count = 0, len = 0;
    for (int i = 1; i < g->n; i++) {
        ir_node *n = &g->nodes[i], *prev = &g->nodes[i - 1];
        int reads = 0;
        for (int k = 0; k < n->ninputs; k++) reads |= n->inputs[k] == i - 1;
        if (n->chain || !chainable(n) || !chainable(prev) || !reads || !ir_same_shape(n, prev)) continue;
        if (!prev->chain) {
            prev->chain = ++chains;
            count++;
            len = 1;
        } else {
            len = 0; /* extending a chain made before: count its members */
            int j;
            for (j = i - 1; j >= 0 && g->nodes[j].chain == prev->chain; j--) len++;
            if (!chainable(&g->nodes[j + 1])) continue; /* a GEMM epilogue's chain: complete */
        }
        if (len >= CHAIN_MAX) continue;
        n->chain = prev->chain;
    }
    return count;
}
