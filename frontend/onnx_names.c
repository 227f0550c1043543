/* onnx_names.c: timm's names and PyTorch's layout for the weights of an ONNX-imported ViT/DeiT.
 *
 * torch's exporters fold each Linear's transpose into a new initializer ("onnx::MatMul_1143"
 * from the legacy exporter, "val_13" from the dynamo one) that holds W^T, [in, out]; a static
 * batch export of the dynamo kind even folds cls_token.expand(B, -1, -1) into one [B,1,D]
 * initializer. Trained and saved under those names, the weights would not load into timm.
 *
 * This pass runs on the reader's recovered forward graph (LAYER_NORM, GELU and attention
 * already rebuilt) and, when it has the shape of a timm VisionTransformer (patch embedding;
 * cls token (+ dist token); pos_embed; depth blocks of norm1, attn.qkv, attn.proj, norm2,
 * mlp.fc1, mlp.fc2; norm; head (+ head_dist)), names every weight as timm does and holds the
 * Linear weights as [out, in] (the MATMUL reads them with trans_b). Each renamed WEIGHT keeps
 * the initializer's name and layout in src_name / src_layout, which `deitc export` uses to
 * write the ONNX file back with its own initializer names. Weights it cannot name (a graph of
 * another shape, a weight shared by two nodes) keep their ONNX names and are listed once in
 * g->info.note, when their names are not module paths already.
 */
#include "frontend/frontend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    ir_graph *g;
    int *uses;       /* consumers per node */
    int *first_use;  /* the first consumer of each node, or -1 */
    const char **to; /* new name per WEIGHT node, or NULL */
} nctx;

static const ir_node *nd(const nctx *c, int id) { return &c->g->nodes[id]; }

static int is_weight(const nctx *c, int id, int ndim) {
    return nd(c, id)->op == IR_OP_WEIGHT && nd(c, id)->ndim == ndim && nd(c, id)->data && c->uses[id] == 1;
}

/* A linear layer: MATMUL of an activation by a 2-D weight, plus an optional 1-D bias. */
typedef struct {
    int mm, w, bias; /* node ids; bias -1 when none */
    int64_t in, out;
    int transposed; /* w is [in, out] (the MATMUL has no trans_b) */
} linear;

/* Is node i a linear (a MATMUL whose second operand is a weight used only there)? */
static int as_linear(const nctx *c, int i, linear *l) {
    const ir_node *n = nd(c, i);
    if (n->op != IR_OP_MATMUL || n->attrs.trans_a || n->attrs.alpha != 1.0 || !is_weight(c, n->inputs[1], 2))
        return 0;
    if (nd(c, n->inputs[0])->op == IR_OP_PATCHIFY) return 0;
    const ir_node *w = nd(c, n->inputs[1]);
    l->mm = i, l->w = n->inputs[1], l->bias = -1;
    l->transposed = !n->attrs.trans_b;
    l->in = w->shape[l->transposed ? 0 : 1], l->out = w->shape[l->transposed ? 1 : 0];
    /* the bias: the MATMUL's one consumer is ADD(matmul, weight [out]) */
    const ir_node *a = c->uses[i] == 1 ? nd(c, c->first_use[i]) : NULL;
    if (a && a->op == IR_OP_ADD && a->inputs[0] == i && is_weight(c, a->inputs[1], 1) &&
        nd(c, a->inputs[1])->shape[0] == l->out)
        l->bias = a->inputs[1];
    return 1;
}

static void name_as(nctx *c, int id, const char *fmt, long k, const char *part) {
    char buf[128];
    if (k >= 0) snprintf(buf, sizeof buf, fmt, k, part);
    else snprintf(buf, sizeof buf, fmt, part);
    c->to[id] = ir_arena_strdup(&c->g->arena, buf);
}

static void name_linear(nctx *c, const linear *l, const char *fmt, long k, const char *what) {
    char part[64];
    snprintf(part, sizeof part, "%s.weight", what);
    name_as(c, l->w, fmt, k, part);
    if (l->bias >= 0) {
        snprintf(part, sizeof part, "%s.bias", what);
        name_as(c, l->bias, fmt, k, part);
    }
}

static int name_norm(nctx *c, int ln, const char *fmt, long k, const char *what) {
    const ir_node *n = nd(c, ln);
    if (!is_weight(c, n->inputs[1], 1) || !is_weight(c, n->inputs[2], 1)) return -1;
    char part[64];
    snprintf(part, sizeof part, "%s.weight", what);
    name_as(c, n->inputs[1], fmt, k, part);
    snprintf(part, sizeof part, "%s.bias", what);
    name_as(c, n->inputs[2], fmt, k, part);
    return 0;
}

/* A token weight in front of the patches: EXPAND(weight [1,1,D]), or (torch's folded
 * static-batch export) a weight [B,1,D] of identical rows: *repeated set. -1 when neither. */
static int token_weight(const nctx *c, int id, int64_t dim, int *repeated) {
    const ir_node *n = nd(c, id);
    *repeated = 0;
    if (n->op == IR_OP_EXPAND && is_weight(c, n->inputs[0], 3)) {
        const ir_node *w = nd(c, n->inputs[0]);
        return w->shape[0] == 1 && w->shape[1] == 1 && w->shape[2] == dim ? n->inputs[0] : -1;
    }
    if (!is_weight(c, id, 3) || n->shape[1] != 1 || n->shape[2] != dim) return -1;
    for (int64_t b = 1; b < n->shape[0]; b++)
        if (memcmp(n->data, n->data + b * dim, sizeof(float) * (size_t)dim)) return -1;
    *repeated = n->shape[0] > 1;
    return id;
}

/* Recognizes the VisionTransformer; fills c->to and the list of linears to transpose. 0 when
 * the graph has its shape, else -1. */
static int recognize(nctx *c, linear *lin, int *nlin, int *tokens, int *ntok) {
    ir_graph *g = c->g;
    int patch = -1, concat = -1, pos = -1, lns[512], nln = 0;
    *nlin = 0;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op == IR_OP_MATMUL && nd(c, n->inputs[0])->op == IR_OP_PATCHIFY && patch < 0) patch = i;
        if (n->op == IR_OP_CONCAT && n->attrs.axis == 1 && concat < 0) concat = i;
        if (n->op == IR_OP_LAYER_NORM) {
            if (nln == 512) return -1;
            lns[nln++] = i;
        }
        linear l;
        if (as_linear(c, i, &l)) {
            if (*nlin == 1024) return -1;
            lin[(*nlin)++] = l;
        }
    }
    if (patch < 0 || concat < 0 || nln < 3 || nln % 2 == 0) return -1;
    int64_t D = nd(c, patch)->shape[nd(c, patch)->ndim - 1];
    /* patch embedding: MATMUL(PATCHIFY, RESHAPE(weight [D,C,P,P])) + bias */
    const ir_node *pm = nd(c, patch);
    int pw = pm->inputs[1];
    if (nd(c, pw)->op == IR_OP_RESHAPE) pw = nd(c, pw)->inputs[0];
    if (!pm->attrs.trans_b || !is_weight(c, pw, 4) || nd(c, pw)->shape[0] != D) return -1;
    name_as(c, pw, "patch_embed.proj.%s", -1, "weight");
    for (int j = patch + 1; j < g->n; j++)
        if (nd(c, j)->op == IR_OP_ADD && nd(c, j)->inputs[0] == patch) {
            int b = nd(c, j)->inputs[1];
            if (is_weight(c, b, 1) && nd(c, b)->shape[0] == D) name_as(c, b, "patch_embed.proj.%s", -1, "bias");
            break;
        }
    /* cls_token (and dist_token) first on the CONCAT, then pos_embed added to it */
    const ir_node *cat = nd(c, concat);
    *ntok = 0;
    for (int k = 0; k < cat->ninputs - 1 && k < 2; k++) {
        int rep, w = token_weight(c, cat->inputs[k], D, &rep);
        if (w < 0) break;
        tokens[(*ntok)++] = w;
        name_as(c, w, "%s", -1, k == 0 ? "cls_token" : "dist_token");
    }
    if (*ntok == 0) return -1;
    for (int j = concat + 1; j < g->n && pos < 0; j++)
        if (nd(c, j)->op == IR_OP_ADD && nd(c, j)->inputs[0] == concat) pos = nd(c, j)->inputs[1];
    if (pos < 0 || !is_weight(c, pos, 3) || nd(c, pos)->shape[0] != 1) return -1;
    name_as(c, pos, "%s", -1, "pos_embed");
    /* blocks: norm1, qkv, proj, norm2, fc1, fc2; then norm, head (+ head_dist) */
    int depth = (nln - 1) / 2, heads = *nlin - 4 * depth;
    if (heads < 1 || heads > 2) return -1;
    for (int b = 0; b < depth; b++) {
        const linear *q = &lin[4 * b], *p = q + 1, *f1 = q + 2, *f2 = q + 3;
        /* in graph order: norm1 < qkv < proj < norm2 < fc1 < fc2 < next norm1 */
        if (!(lns[2 * b] < q->mm && p->mm < lns[2 * b + 1] && lns[2 * b + 1] < f1->mm && f2->mm < lns[2 * b + 2]))
            return -1;
        if (q->in != D || q->out != 3 * D || p->in != D || p->out != D || f1->in != D || f2->in != f1->out ||
            f2->out != D)
            return -1;
        if (name_norm(c, lns[2 * b], "blocks.%ld.%s", b, "norm1") || name_norm(c, lns[2 * b + 1], "blocks.%ld.%s", b, "norm2"))
            return -1;
        name_linear(c, q, "blocks.%ld.%s", b, "attn.qkv");
        name_linear(c, p, "blocks.%ld.%s", b, "attn.proj");
        name_linear(c, f1, "blocks.%ld.%s", b, "mlp.fc1");
        name_linear(c, f2, "blocks.%ld.%s", b, "mlp.fc2");
    }
    if (name_norm(c, lns[nln - 1], "%s", -1, "norm")) return -1;
    for (int h = 0; h < heads; h++) {
        const linear *l = &lin[4 * depth + h];
        if (l->in != D || l->mm < lns[nln - 1]) return -1;
        name_linear(c, l, "%s", -1, h == 0 ? "head" : "head_dist");
    }
    return 0;
}

/* A name that is a module path (blocks.0.attn.qkv.weight), not one torch's export made up. */
static int is_module_path(const char *s) {
    if (strncmp(s, "onnx::", 6) == 0 || strncmp(s, "val_", 4) == 0 || strchr(s, ':') || strchr(s, '/')) return 0;
    return strchr(s, '.') != NULL || strcmp(s, "cls_token") == 0 || strcmp(s, "pos_embed") == 0 ||
           strcmp(s, "dist_token") == 0;
}

/* Lists the trainable weights left with made-up names in g->info.note. */
static void note_unnamed(nctx *c, const char *why) {
    ir_graph *g = c->g;
    char list[1024];
    size_t len = 0;
    int count = 0;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_WEIGHT || !(n->flags & IR_NODE_TRAINABLE) || c->to[i] || is_module_path(n->name)) continue;
        if (count++ < 8 && len < sizeof list - 64)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s'%s'", count > 1 ? ", " : "", n->name);
    }
    if (!count) return;
    g->info.note = ir_arena_printf(&g->arena, "%d weight%s keep%s the ONNX file's name%s (%s): %s%s", count,
                                   count == 1 ? "" : "s", count == 1 ? "s" : "", count == 1 ? "" : "s", why, list,
                                   count > 8 ? ", ..." : "");
}

/* Renames and re-lays the weights; rebuilds the graph when a repeated token is folded back to
 * [1,1,D] + EXPAND. Returns the (possibly new) graph; NULL with err on an internal error. */
static ir_graph *apply(nctx *c, const linear *lin, int nlin, const int *tokens, int ntok, char *err, size_t errsize) {
    ir_graph *g = c->g;
    /* a name another leaf already has stays where it is */
    for (int i = 0; i < g->n; i++) {
        if (!c->to[i]) continue;
        int other = ir_find(g, c->to[i]);
        if (other >= 0 && other != i) c->to[i] = NULL;
    }
    for (int k = 0; k < nlin; k++) {
        const linear *l = &lin[k];
        if (!l->transposed || !c->to[l->w]) continue;
        ir_node *w = &g->nodes[l->w];
        float *t = ir_arena_alloc(&g->arena, sizeof(float) * (size_t)(l->in * l->out));
        for (int64_t i = 0; i < l->in; i++)
            for (int64_t o = 0; o < l->out; o++) t[o * l->in + i] = w->data[i * l->out + o];
        w->data = t;
        w->shape[0] = l->out, w->shape[1] = l->in;
        w->src_layout = IR_SRC_TRANSPOSED;
        g->nodes[l->mm].attrs.trans_b = 1;
    }
    for (int i = 0; i < g->n; i++) {
        ir_node *n = &g->nodes[i];
        if (!c->to[i] || (strcmp(c->to[i], n->name) == 0 && n->src_layout == IR_SRC_SAME)) continue;
        n->src_name = n->name;
        n->name = c->to[i];
    }
    note_unnamed(c, "not matched to a timm module");
    int repeated = -1;
    for (int k = 0; k < ntok; k++) {
        int rep;
        const ir_node *n = &g->nodes[tokens[k]];
        if (c->to[tokens[k]] && token_weight(c, tokens[k], n->shape[2], &rep) >= 0 && rep) repeated = tokens[k];
    }
    if (repeated < 0) return g;
    /* the repeated token: WEIGHT [1,1,D] (its first row) + EXPAND [B,1,D] in its place */
    ir_graph *ng = ir_graph_new();
    ng->info = g->info;
    int *map = malloc(sizeof(int) * (size_t)g->n);
    if (!map) abort();
    for (int i = 0; i < g->n && ng; i++) {
        map[i] = ir_copy_node(ng, g, i, map);
        if (map[i] >= 0 && i == repeated) {
            ir_node *w = &ng->nodes[map[i]];
            int64_t B = w->shape[0];
            w->shape[0] = 1;
            w->src_layout = IR_SRC_REPEATED;
            int64_t shape[3] = {B, 1, w->shape[2]};
            map[i] = ir_add(ng, IR_OP_EXPAND, &map[i], 1, NULL, IR_F32, 3, shape, w->name, w->loc);
        }
        if (map[i] < 0) {
            snprintf(err, errsize, "internal error renaming weights: %s", ng->error);
            ir_graph_free(ng);
            ng = NULL;
        }
    }
    free(map);
    if (ng) {
        if (g->info.model_name) ng->info.model_name = ir_arena_strdup(&ng->arena, g->info.model_name);
        if (g->info.note) ng->info.note = ir_arena_strdup(&ng->arena, g->info.note);
    }
    ir_graph_free(g);
    return ng;
}

ir_graph *fe_onnx_timm_names(ir_graph *g, char *err, size_t errsize) {
    nctx c = {g, calloc((size_t)g->n, sizeof(int)), malloc(sizeof(int) * (size_t)g->n),
              calloc((size_t)g->n, sizeof(char *))};
    linear *lin = malloc(sizeof(linear) * 1024);
    if (!c.uses || !c.first_use || !c.to || !lin) abort();
    memset(c.first_use, 0xff, sizeof(int) * (size_t)g->n);
    for (int i = 0; i < g->n; i++)
        for (int k = 0; k < g->nodes[i].ninputs; k++) {
            int x = g->nodes[i].inputs[k];
            if (c.uses[x]++ == 0) c.first_use[x] = i;
        }
    int nlin = 0, tokens[2], ntok = 0;
    if (recognize(&c, lin, &nlin, tokens, &ntok)) {
        memset(c.to, 0, sizeof(char *) * (size_t)g->n);
        note_unnamed(&c, "the graph is not recognized as a timm ViT/DeiT");
    } else {
        g = apply(&c, lin, nlin, tokens, ntok, err, errsize);
    }
    free(c.uses);
    free(c.first_use);
    free((void *)c.to);
    free(lin);
    return g;
}
