/* fusion_attention.c: the qkv-attention fusion (forward-fusion, in "all"). Finds softmax
 * attention as the frontends build it (frontend/layers.c fe_attention, and ONNX imports
 * lowered to the same ops):
 *
 *   qkv [B,N,3D] -> (views: reshape, permute, slice) -> q, k, v [B,H,N,hd]
 *   scores = matmul(q, k, trans_b, alpha = scale) -> probs = softmax(scores)
 *   context = matmul(probs, v) [B,H,N,hd] -> permute(0,2,1,3) -> reshape [B,N,D]
 *
 * and replaces it by ATTENTION(qkv) read through PROJECT 0 (O [B,N,D], the heads merged as the
 * output projection reads them) and PROJECT 1 (the rows' log-sum-exp, for ATTENTION_BWD). The
 * qkv value stays what it is (the GEMM and its bias add): no permute, slice or copy between
 * it and the attention. q, k and v are recognised by what they address, not by how the views
 * are spelled: each is followed back through its views to one value, keeping the strides of
 * the view (as torch's view/permute/slice compute them), and must be the head-split of that
 * value at column offsets 0, D and 2D. The context's users see PERMUTE(RESHAPE(O)) in its
 * place, which cancels against the frontend's permute back and reshape (folded here), and the
 * chain's nodes left without readers are dropped. A pattern that does not match is left as
 * it is, and so is one whose heads are wider than PASS_ATTENTION_MAX_HEAD_DIM (the fused
 * kernels keep a tile of rows of hd values in shared memory: codegen/emit_attention.c). */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- strided views ------------------------------------------------------------------------ */

typedef struct {
    int ndim;
    int64_t shape[IR_MAX_DIMS], stride[IR_MAX_DIMS], offset; /* elements of the root's flat layout */
} view;

static void view_contiguous(view *v, const ir_node *n) {
    v->ndim = n->ndim;
    v->offset = 0;
    int64_t s = 1;
    for (int i = n->ndim - 1; i >= 0; i--) {
        v->shape[i] = n->shape[i];
        v->stride[i] = s;
        s *= n->shape[i];
    }
}

/* v reshaped to (ndim, shape) without a copy (torch's computeStride); 0, or -1 if impossible */
static int view_reshape(view *v, int ndim, const int64_t *shape) {
    int64_t st[IR_MAX_DIMS];
    int vd = ndim - 1;
    int64_t base = v->ndim ? v->stride[v->ndim - 1] : 1, tn = 1, vn = 1;
    for (int td = v->ndim - 1; td >= 0; td--) {
        tn *= v->shape[td];
        if (td == 0 || (v->shape[td - 1] != 1 && v->stride[td - 1] != tn * base)) {
            while (vd >= 0 && (vn < tn || shape[vd] == 1)) {
                st[vd] = vn * base;
                vn *= shape[vd];
                vd--;
            }
            if (vn != tn) return -1;
            if (td > 0) {
                base = v->stride[td - 1];
                tn = vn = 1;
            }
        }
    }
    if (vd != -1) return -1;
    v->ndim = ndim;
    memcpy(v->shape, shape, sizeof(int64_t) * (size_t)ndim);
    memcpy(v->stride, st, sizeof(int64_t) * (size_t)ndim);
    return 0;
}

static int is_view_op(ir_op op) { return op == IR_OP_RESHAPE || op == IR_OP_PERMUTE || op == IR_OP_SLICE; }

/* Follows x back through views to the first value that is not one (*root); *v is x as a
 * strided view of root's flat layout. 0, or -1 when some step is not a strided view. */
static int trace_view(const ir_graph *g, int x, int *root, view *v) {
    int chain[64], n = 0;
    while (is_view_op(g->nodes[x].op) && n < 64) {
        chain[n++] = x;
        x = g->nodes[x].inputs[0];
    }
    if (n == 64) return -1;
    *root = x;
    view_contiguous(v, &g->nodes[x]);
    for (int k = n - 1; k >= 0; k--) {
        const ir_node *m = &g->nodes[chain[k]];
        if (m->op == IR_OP_RESHAPE) {
            if (view_reshape(v, m->ndim, m->shape)) return -1;
        } else if (m->op == IR_OP_PERMUTE) {
            view w = *v;
            for (int i = 0; i < m->ndim; i++) {
                w.shape[i] = v->shape[m->attrs.perm[i]];
                w.stride[i] = v->stride[m->attrs.perm[i]];
            }
            *v = w;
        } else { /* SLICE */
            int64_t ax = m->attrs.axis;
            v->offset += m->attrs.start * v->stride[ax];
            v->shape[ax] = m->attrs.end - m->attrs.start;
        }
    }
    return 0;
}

/* is v the [B,H,N,hd] head split of a [B,N,3D] layout at column offset col? */
static int is_head_split(const view *v, int64_t B, int64_t H, int64_t N, int64_t hd, int64_t col) {
    int64_t D3 = 3 * H * hd;
    const int64_t shape[4] = {B, H, N, hd}, stride[4] = {N * D3, hd, D3, 1};
    if (v->ndim != 4 || v->offset != col) return 0;
    for (int i = 0; i < 4; i++)
        if (v->shape[i] != shape[i] || (shape[i] > 1 && v->stride[i] != stride[i])) return 0;
    return 1;
}

/* ---- matching ------------------------------------------------------------------------------ */

typedef struct {
    int root;          /* the qkv value (in f) */
    int64_t B, H, N, hd;
    double scale;
} match;

static int single_use(const int *uses, const ir_node *n, int i) {
    return uses[i] == 1 && !(n->flags & IR_NODE_OUTPUT);
}

/* node c (in f) is the context product of an attention over one qkv value */
static int match_context(const ir_graph *f, const int *uses, int c, match *m) {
    const ir_node *ctx = &f->nodes[c];
    if (ctx->op != IR_OP_MATMUL || ctx->ndim != 4 || ctx->flags & IR_NODE_OUTPUT || ctx->attrs.trans_a || ctx->attrs.trans_b ||
        ctx->attrs.alpha != 1.0 || ctx->attrs.compute != IR_COMPUTE_32F)
        return 0;
    int p = ctx->inputs[0], vx = ctx->inputs[1];
    const ir_node *probs = &f->nodes[p];
    if (probs->op != IR_OP_SOFTMAX || !single_use(uses, probs, p)) return 0;
    int s = probs->inputs[0];
    const ir_node *sc = &f->nodes[s];
    if (sc->op != IR_OP_MATMUL || sc->attrs.trans_a || !sc->attrs.trans_b || sc->attrs.compute != IR_COMPUTE_32F ||
        !single_use(uses, sc, s))
        return 0;
    const ir_node *vn = &f->nodes[vx];
    if (vn->ndim != 4 || !ir_same_shape(vn, ctx) || !ir_same_shape(&f->nodes[sc->inputs[0]], vn) ||
        !ir_same_shape(&f->nodes[sc->inputs[1]], vn))
        return 0;
    m->B = vn->shape[0], m->H = vn->shape[1], m->N = vn->shape[2], m->hd = vn->shape[3];
    if (m->hd > PASS_ATTENTION_MAX_HEAD_DIM) return 0; /* beyond the fused kernels' tiles: left unfused */
    m->scale = sc->attrs.alpha;
    int roots[3], ops[3] = {sc->inputs[0], sc->inputs[1], vx};
    int64_t D = m->H * m->hd;
    for (int k = 0; k < 3; k++) {
        view v;
        if (trace_view(f, ops[k], &roots[k], &v) || !is_head_split(&v, m->B, m->H, m->N, m->hd, k * D)) return 0;
    }
    if (roots[0] != roots[1] || roots[1] != roots[2]) return 0;
    const ir_node *r = &f->nodes[roots[0]];
    if (ir_numel(r) != m->B * m->N * 3 * D || !ir_dtype_is_float(r->dtype) || r->dtype != vn->dtype) return 0;
    m->root = roots[0];
    return 1;
}

/* ---- the rewrite ----------------------------------------------------------------------------- */

typedef struct {
    ir_graph *g;
    unsigned char *mine; /* [g node] made by this pass as a view of an ATTENTION's O */
    int cap;
} rewriter;

static void mark_mine(rewriter *w, int id) {
    if (id < 0) return;
    if (id >= w->cap) {
        int cap = (id + 1) * 2;
        w->mine = realloc(w->mine, (size_t)cap);
        if (!w->mine) abort();
        memset(w->mine + w->cap, 0, (size_t)(cap - w->cap));
        w->cap = cap;
    }
    w->mine[id] = 1;
}

static int is_mine(const rewriter *w, int id) { return id >= 0 && id < w->cap && w->mine[id]; }

/* context c of f replaced: ATTENTION over qkv (in g), O as [B,H,N,hd] for its readers */
static int emit_attention(rewriter *w, const ir_graph *f, int c, const match *m, int qkv) {
    ir_graph *g = w->g;
    const ir_node *ctx = &f->nodes[c];
    int64_t D = m->H * m->hd;
    const ir_node *r = &g->nodes[qkv];
    if (r->ndim != 3 || r->shape[0] != m->B || r->shape[1] != m->N || r->shape[2] != 3 * D) {
        int64_t s3[3] = {m->B, m->N, 3 * D};
        qkv = ir_reshape(g, qkv, 3, s3, g->nodes[qkv].name, ctx->loc);
        if (qkv < 0) return -1;
    }
    ir_attrs a = {0};
    a.heads = m->H;
    a.alpha = m->scale;
    int att = ir_add(g, IR_OP_ATTENTION, &qkv, 1, &a, ctx->dtype, 0, NULL, ctx->name, ctx->loc);
    ir_attrs p = {0};
    int o = att < 0 ? -1 : ir_add(g, IR_OP_PROJECT, &att, 1, &p, ctx->dtype, 0, NULL, ctx->name, ctx->loc);
    if (o < 0) return -1;
    p.output = 1; /* LSE: read by the backward (autodiff makes its own project) */
    int64_t s4[4] = {m->B, m->N, m->H, m->hd};
    int t = ir_reshape(g, o, 4, s4, ctx->name, ctx->loc);
    mark_mine(w, t);
    ir_attrs pa = {0};
    const int64_t perm[4] = {0, 2, 1, 3};
    memcpy(pa.perm, perm, sizeof perm);
    t = t < 0 ? -1 : ir_unary(g, IR_OP_PERMUTE, t, &pa, ctx->name, ctx->loc);
    mark_mine(w, t);
    return t;
}

/* Copies f's node i into g, folding a permute or reshape of one of this pass's views of O;
 * returns its index in g. */
static int copy_folding(rewriter *w, const ir_graph *f, int i, const int *map) {
    ir_graph *g = w->g;
    const ir_node *n = &f->nodes[i];
    if ((n->op == IR_OP_PERMUTE || n->op == IR_OP_RESHAPE) && is_mine(w, map[n->inputs[0]])) {
        int x = map[n->inputs[0]];
        const ir_node *xn = &g->nodes[x];
        int output = (n->flags & IR_NODE_OUTPUT) != 0;
        if (n->op == IR_OP_PERMUTE && xn->op == IR_OP_PERMUTE && !output) { /* out i = in q[p[i]] */
            int64_t q[IR_MAX_DIMS];
            int identity = 1;
            for (int k = 0; k < n->ndim; k++) identity &= (q[k] = xn->attrs.perm[n->attrs.perm[k]]) == k;
            int in = xn->inputs[0];
            if (identity) return in;
            ir_attrs a = n->attrs;
            memcpy(a.perm, q, sizeof q);
            int id = ir_unary(g, IR_OP_PERMUTE, in, &a, n->name, n->loc);
            mark_mine(w, id);
            return id;
        }
        if (n->op == IR_OP_RESHAPE) { /* reshape of a reshape: one reshape (none if it undoes it) */
            int in = xn->op == IR_OP_RESHAPE ? xn->inputs[0] : x;
            const ir_node *inn = &g->nodes[in];
            if (!output && inn->ndim == n->ndim &&
                memcmp(inn->shape, n->shape, sizeof(int64_t) * (size_t)n->ndim) == 0)
                return in;
            int id = ir_reshape(g, in, n->ndim, n->shape, n->name, n->loc);
            if (id >= 0) g->nodes[id].flags = n->flags;
            mark_mine(w, id);
            return id;
        }
    }
    return ir_copy_node(g, f, i, map);
}

/* A copy of g without the computing nodes no output or effect reads (leaves stay). */
static ir_graph *drop_dead(const ir_graph *g, char *err, size_t errsize) {
    char *live = calloc((size_t)g->n + 1, 1);
    int *map = malloc(sizeof(int) * ((size_t)g->n + 1));
    if (!live || !map) abort();
    for (int i = g->n - 1; i >= 0; i--) {
        const ir_node *n = &g->nodes[i];
        if (n->flags & IR_NODE_OUTPUT || ir_op_flags(n->op) & (IR_OPF_EFFECT | IR_OPF_LEAF)) live[i] = 1;
        if (live[i])
            for (int k = 0; k < n->ninputs; k++) live[n->inputs[k]] = 1;
    }
    ir_graph *h = ir_graph_new();
    h->info = g->info;
    if (g->info.model_name) h->info.model_name = ir_arena_strdup(&h->arena, g->info.model_name);
    if (g->info.note) h->info.note = ir_arena_strdup(&h->arena, g->info.note);
    for (int i = 0; i < g->n; i++) {
        map[i] = -1;
        if (live[i] && (map[i] = ir_copy_node(h, g, i, map)) < 0) {
            snprintf(err, errsize, "qkv-attention: %s", h->error);
            ir_graph_free(h);
            h = NULL;
            break;
        }
    }
    free(live);
    free(map);
    return h;
}

ir_graph *pass_fuse_qkv_attention(const ir_graph *f, int *fused, char *err, size_t errsize) {
    int *uses = calloc((size_t)f->n + 1, sizeof(int));
    int *map = malloc(sizeof(int) * ((size_t)f->n + 1));
    if (!uses || !map) abort();
    for (int i = 0; i < f->n; i++)
        for (int k = 0; k < f->nodes[i].ninputs; k++) uses[f->nodes[i].inputs[k]]++;
    rewriter w = {ir_graph_new(), NULL, 0};
    ir_graph *g = w.g;
    g->info = f->info;
    if (f->info.model_name) g->info.model_name = ir_arena_strdup(&g->arena, f->info.model_name);
    if (f->info.note) g->info.note = ir_arena_strdup(&g->arena, f->info.note);
    int count = 0, rc = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        match m;
        if (match_context(f, uses, i, &m)) {
            map[i] = emit_attention(&w, f, i, &m, map[m.root]);
            count++;
        } else {
            map[i] = copy_folding(&w, f, i, map);
        }
        rc = map[i] < 0;
    }
    free(uses);
    free(map);
    free(w.mine);
    if (rc) {
        snprintf(err, errsize, "qkv-attention: %s", g->error);
        ir_graph_free(g);
        return NULL;
    }
    if (fused) *fused = count;
    if (count == 0) return g;
    ir_graph *h = drop_dead(g, err, errsize);
    ir_graph_free(g);
    return h;
}
