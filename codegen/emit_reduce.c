/* emit_reduce.c: the reduction family: sum_to and reduce_mean (column sums over the dims the
 * node keeps as 1), sum_squares (a scalar over several tensors), and the two-pass pieces the
 * row family shares (block shapes, the plan, pass 2). Two passes where one would give a GPU too
 * few blocks: pass 1 writes partial sums to the node's scratch, pass 2 adds them in a fixed
 * order (deterministic, no atomics). */
#include "codegen/emit_internal.h"

void cg_reduce_shape(int64_t nout, int64_t r, int *tx, int *ty) {
    int64_t x = nout >= 32 ? 32 : pow2ceil(nout);
    int64_t y = 256 / x, pr = pow2ceil(r);
    if (y > pr) y = pr;
    if (x * y < 32) x = 32 / y; /* at least one warp */
    *tx = (int)x;
    *ty = (int)y;
}

/* Two-pass plan of a reduction of nout outputs over R elements each. A GPU needs a few hundred
 * blocks: a bias gradient of DeiT-S at batch 256 has 384 outputs (12 column tiles) of 50432
 * rows each. Pass 1 cuts the rows into `chunks` ranges of `rows` and gives every (chunk, column
 * tile) a block, which writes its partial sums to scratch part[chunk][nout]; pass 2 sums the
 * partials of each output in chunk order. Both orders are fixed: the result is deterministic
 * (no atomics). chunks == 1: one pass, straight into the output. */

red_plan cg_red_plan_of(int64_t nout, int64_t R) {
    red_plan p;
    cg_reduce_shape(nout, R, &p.tx, &p.ty);
    p.tiles = (nout + p.tx - 1) / p.tx;
    int64_t want = (RED_TARGET_BLOCKS + p.tiles - 1) / p.tiles, most = R / RED_MIN_ROWS;
    if (want > most) want = most;
    p.chunks = 1;
    p.rows = R;
    if (want < 2) return p;
    p.rows = (R + want - 1) / want;
    p.rows = (p.rows + p.ty - 1) / p.ty * p.ty;
    p.chunks = (R + p.rows - 1) / p.rows;
    return p;
}

/* Appends the partial-sum combination and the store; `acc` holds this thread's partial. */
void cg_reduce_finish(launch *l, int tx, int ty, int64_t nout, const char *store_fmt) {
    sb *b = &l->body;
    if (ty > 1) {
        cg_sb_printf(b, "    __shared__ float red[%d][%d];\n", ty, tx);
        cg_sb_printf(b, "    red[ty][tx] = acc;\n    __syncthreads();\n");
        cg_sb_printf(b, "    if (ty == 0 && o < %lld) {\n", (long long)nout);
        cg_sb_printf(b, "        float s = 0.0f;\n        for (int k = 0; k < %d; k++) s += red[k][tx];\n", ty);
        cg_sb_printf(b, "        ");
        cg_sb_printf(b, store_fmt, "s");
        cg_sb_printf(b, "\n    }\n");
        l->fibers = 1;
    } else {
        cg_sb_printf(b, "    if (o < %lld) ", (long long)nout);
        cg_sb_printf(b, store_fmt, "acc");
        cg_sb_printf(b, "\n");
    }
}

/* Pass 2 of a two-pass reduction: y[o] = scale * sum over k < chunks of part[k][o], in k order
 * (one tx x ty block per column tile, the ty partial sums combined in a fixed order). */
void cg_emit_partials_sum(emitter *e, int64_t part, int64_t chunks, int64_t nout, double scale) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    char tag[64], fl[64], v[128], stb[256], fmt[300];
    snprintf(tag, sizeof tag, "%s_pass2", ir_op_name(n->op));
    l.tag = tag;
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    param(&l, "const float *", "part", part);
    int tx, ty;
    cg_reduce_shape(nout, chunks, &tx, &ty);
    sb *b = &l.body;
    cg_sb_printf(b, "    const int tx = threadIdx.x %% %d, ty = threadIdx.x / %d;\n", tx, tx);
    cg_sb_printf(b, "    const int o = (int)blockIdx.x * %d + tx;\n", tx);
    cg_sb_printf(b, "    float acc = 0.0f;\n");
    cg_sb_printf(b, "    if (o < %lld)\n", (long long)nout);
    cg_sb_printf(b, "        for (int k = ty; k < %lld; k += %d) acc += part[(long long)k * %lld + o];\n", (long long)chunks,
              ty, (long long)nout);
    if (scale != 1) snprintf(v, sizeof v, "%%s * %s", cg_flit(fl, sizeof fl, scale));
    else snprintf(v, sizeof v, "%%s");
    snprintf(fmt, sizeof fmt, "y[o] = %s;", cg_st(stb, sizeof stb, n->dtype, v));
    cg_reduce_finish(&l, tx, ty, nout, fmt);
    cg_finish(e, &l, (nout + tx - 1) / tx, tx * ty);
}

/* outputs and reduced elements per output of a sum_to / reduce_mean node */
static void reduce_sizes(const ir_graph *g, const ir_node *n, int64_t *nout, int64_t *R) {
    *nout = ir_numel(n);
    *R = ir_numel(&g->nodes[n->inputs[0]]) / (*nout ? *nout : 1);
}

/* sum (or mean, scale != 1) of x over the dims where the node is 1 (right-aligned) */
int cg_emit_reduce(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *x = &e->g->nodes[n->inputs[0]];
    int nd = x->ndim;
    int64_t od[IR_MAX_DIMS], nout, R;
    reduce_sizes(e->g, n, &nout, &R);
    double scale = 1;
    if (n->op == IR_OP_REDUCE_MEAN) {
        for (int d = 0; d < nd; d++) od[d] = d == n->attrs.axis ? 1 : x->shape[d];
        scale = 1.0 / (double)x->shape[n->attrs.axis];
    } else {
        for (int d = 0; d < nd; d++) {
            int k = d - (nd - n->ndim);
            od[d] = k >= 0 ? n->shape[k] : 1;
        }
    }
    /* kept terms over the output index o, reduced terms over r (both merged runs) */
    term kt[IR_MAX_DIMS], rt[IR_MAX_DIMS];
    int nk = 0, nr = 0;
    int64_t ko = 1, ro = 1, is = 1;
    for (int d = nd - 1; d >= 0;) {
        if (x->shape[d] == 1) { d--; continue; }
        int kept = od[d] == x->shape[d];
        int64_t size = 1;
        while (d >= 0 && (x->shape[d] == 1 || (od[d] == x->shape[d]) == kept)) size *= x->shape[d--];
        term *t = kept ? &kt[nk++] : &rt[nr++];
        int64_t *os = kept ? &ko : &ro;
        t->div = *os;
        t->mod = size;
        t->mul = is;
        *os *= size;
        is *= size;
    }
    for (int k = 0; k < nk; k++) if (kt[k].div * kt[k].mod >= nout) kt[k].mod = 0;
    for (int k = 0; k < nr; k++) if (rt[k].div * rt[k].mod >= R) rt[k].mod = 0;
    const red_plan rp = cg_red_plan_of(nout, R);
    int64_t part = rp.chunks > 1 ? e->m->scratch_offset[e->node] : -1;
    assert(rp.chunks == 1 || part >= 0);
    launch l = {0};
    char tag[64];
    snprintf(tag, sizeof tag, "%s%s", ir_op_name(n->op), rp.chunks > 1 ? "_pass1" : "");
    l.tag = tag;
    if (rp.chunks > 1) param(&l, "float *", "part", part);
    else param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    param(&l, in_type(x->dtype), "x0", off_of(e, n->inputs[0]));
    const char *it = idx_type(ir_numel(x));
    sb *b = &l.body;
    cg_sb_printf(b, "    const int tx = threadIdx.x %% %d, ty = threadIdx.x / %d;\n", rp.tx, rp.tx);
    if (rp.chunks > 1) {
        cg_sb_printf(b, "    const int chunk = blockIdx.x / %lld;\n", (long long)rp.tiles);
        cg_sb_printf(b, "    const %s o = (%s)(blockIdx.x %% %lld) * %d + tx;\n", it, it, (long long)rp.tiles, rp.tx);
        cg_sb_printf(b, "    const %s r0 = (%s)chunk * %lld, r1 = r0 + %lld < %lld ? r0 + %lld : %lld;\n", it, it,
                  (long long)rp.rows, (long long)rp.rows, (long long)R, (long long)rp.rows, (long long)R);
    } else {
        cg_sb_printf(b, "    const %s o = (%s)blockIdx.x * %d + tx;\n", it, it, rp.tx);
    }
    cg_sb_printf(b, "    float acc = 0.0f;\n    if (o < %lld) {\n", (long long)nout);
    cg_sb_printf(b, "        const %s base = ", it);
    cg_emit_terms(b, "o", kt, nk);
    if (rp.chunks > 1) cg_sb_printf(b, ";\n        for (%s r = r0 + ty; r < r1; r += %d) {\n", it, rp.ty);
    else cg_sb_printf(b, ";\n        for (%s r = ty; r < %lld; r += %d) {\n", it, (long long)R, rp.ty);
    sb s = {0};
    cg_emit_terms(&s, "r", rt, nr);
    char ref[600], lbuf[700], fl[64], stb[700], fmt[800];
    snprintf(ref, sizeof ref, "x0[base + %s]", s.s);
    free(s.s);
    cg_sb_printf(b, "            acc += %s;\n        }\n    }\n", cg_ld(lbuf, sizeof lbuf, x->dtype, ref));
    if (rp.chunks > 1) {
        snprintf(fmt, sizeof fmt, "part[(long long)chunk * %lld + o] = %%s;", (long long)nout);
    } else {
        char v[128];
        if (scale != 1) snprintf(v, sizeof v, "%%s * %s", cg_flit(fl, sizeof fl, scale));
        else snprintf(v, sizeof v, "%%s");
        snprintf(fmt, sizeof fmt, "y[o] = %s;", cg_st(stb, sizeof stb, n->dtype, v));
    }
    cg_reduce_finish(&l, rp.tx, rp.ty, nout, fmt);
    cg_finish(e, &l, rp.tiles * rp.chunks, rp.tx * rp.ty);
    if (rp.chunks > 1) cg_emit_partials_sum(e, part, rp.chunks, nout, scale);
    return 0;
}
/* Pass 2 of a scalar reduction: y[0] = scale * (sum of part[0..nparts)), one block, each thread
 * summing a fixed stride of the partials, then dc_block_sum (a fixed tree): deterministic. */
void cg_emit_block_total(emitter *e, int64_t part, int64_t nparts, double scale) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    char tag[64], fl[64], v[128], sres[200];
    snprintf(tag, sizeof tag, "%s_pass2", ir_op_name(n->op));
    l.tag = tag;
    l.fibers = 1;
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    param(&l, "const float *", "part", part);
    sb *b = &l.body;
    cg_sb_printf(b, "    float s = 0.0f;\n");
    cg_sb_printf(b, "    for (int i = threadIdx.x; i < %lld; i += blockDim.x) s += part[i];\n", (long long)nparts);
    cg_sb_printf(b, "    s = dc_block_sum(s);\n");
    if (scale != 1) snprintf(v, sizeof v, "s * %s", cg_flit(fl, sizeof fl, scale));
    else snprintf(v, sizeof v, "s");
    cg_sb_printf(b, "    if (threadIdx.x == 0) y[0] = %s;\n", cg_st(sres, sizeof sres, n->dtype, v));
    cg_finish(e, &l, 1, 256);
}

/* sum_squares(x0, x1, ...) -> [1]: pass 1 gives each input ceil(numel / SS_TILE) blocks (in
 * input order), each block's sum of squares goes to part[block]; pass 2 adds them in order.
 * An inf or NaN element contributes NaN, so that NaN says "a value was not finite" and +inf
 * only "the sum overflowed" (what loss scaling tells apart). */
enum { SS_TILE = 4096 };
static int64_t sum_squares_blocks(const ir_graph *g, const ir_node *n) {
    int64_t nb = 0;
    for (int k = 0; k < n->ninputs; k++) nb += (ir_numel(&g->nodes[n->inputs[k]]) + SS_TILE - 1) / SS_TILE;
    return nb;
}

int cg_emit_sum_squares(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int64_t part = e->m->scratch_offset[e->node], nb = sum_squares_blocks(e->g, n), at = 0;
    assert(part >= 0);
    launch l = {0};
    l.tag = "sum_squares_pass1";
    l.fibers = 1;
    sb *b = &l.body;
    char a[64];
    param(&l, "float *", "part", part);
    cg_sb_printf(b, "    const int bi = blockIdx.x;\n    float s = 0.0f;\n");
    for (int k = 0; k < n->ninputs; k++) {
        const ir_node *x = &e->g->nodes[n->inputs[k]];
        char nm[16], ref[32];
        int64_t numel = ir_numel(x), blocks = (numel + SS_TILE - 1) / SS_TILE;
        snprintf(nm, sizeof nm, "x%d", k);
        snprintf(ref, sizeof ref, "x%d[i]", k);
        param(&l, in_type(x->dtype), nm, off_of(e, n->inputs[k]));
        const char *it = idx_type(numel + SS_TILE);
        cg_sb_printf(b, "    %sif (bi < %lld) {\n", k ? "else " : "", (long long)(at + blocks));
        cg_sb_printf(b, "        const %s i0 = (%s)(bi - %lld) * %d, i1 = i0 + %d < %lld ? i0 + %d : %lld;\n", it, it,
                  (long long)at, SS_TILE, SS_TILE, (long long)numel, SS_TILE, (long long)numel);
        cg_sb_printf(b, "        for (%s i = i0 + threadIdx.x; i < i1; i += blockDim.x) {\n", it);
        cg_sb_printf(b, "            const float v = %s;\n", cg_ld(a, sizeof a, x->dtype, ref));
        /* a value that is not finite makes the sum NaN (+inf is left to a sum that overflows) */
        cg_sb_printf(b, "            s += fabsf(v) <= DC_FLT_MAX ? v * v : __int_as_float(0x7fc00000);\n        }\n    }\n");
        at += blocks;
    }
    cg_sb_printf(b, "    s = dc_block_sum(s);\n    if (threadIdx.x == 0) part[bi] = s;\n");
    cg_finish(e, &l, nb, 256);
    cg_emit_block_total(e, part, nb, 1);
    return 0;
}


int64_t cg_reduce_scratch(const ir_graph *g, const ir_node *n) {
    const ir_node *prev = n > g->nodes ? n - 1 : NULL; /* layer-norm-dbeta: summed as dgamma is */
    if (n->op == IR_OP_SUM_TO && n->chain && prev && prev->chain == n->chain && prev->op == IR_OP_LAYER_NORM_DGAMMA &&
        last_dim(&g->nodes[prev->inputs[1]]) <= cg_row_warp_max())
        return cg_layer_norm_dgamma_scratch(g, prev);
    int64_t dx_sum = n->op == IR_OP_SUM_TO ? cg_layer_norm_dx_sum_scratch(g, n) : -1;
    if (dx_sum >= 0) return dx_sum; /* residual-layer-norm-grad: summed in the LayerNorm dx rows */
    int64_t nout, R;
    reduce_sizes(g, n, &nout, &R);
    const red_plan rp = cg_red_plan_of(nout, R);
    return rp.chunks > 1 ? (int64_t)sizeof(float) * rp.chunks * nout : 0;
}

int64_t cg_sum_squares_scratch(const ir_graph *g, const ir_node *n) {
    return (int64_t)sizeof(float) * sum_squares_blocks(g, n); /* the blocks' partial sums */
}
