/* emit_rows.c: the row family, ops over the last dim: layer_norm, layer_norm_dx,
 * layer_norm_dgamma, softmax, softmax_grad, cross_entropy, cross_entropy_grad, and the
 * LayerNorm that keeps its statistics: layer_norm_stats (y, and each row's mean and rstd as
 * outputs 1 and 2) and layer_norm_dx_stats (dx reading them instead of recomputing). Rows of up to
 * ROW_WARP_MAX: one warp per row, 4 rows a block, the row held in registers (read once),
 * warp-shuffle reductions; wider rows one block per row with block reductions (row_shape_of).
 * Cross-entropy: one block per row. */
#include "codegen/emit_internal.h"

/* ---- row kernels: one block per row of the last dim ---------------------------------------- */

static int row_block(int64_t cols) {
    int64_t b = round32(cols);
    return (int)(b > 256 ? 256 : b);
}

/* How a row kernel (layer_norm*, softmax*) covers its rows. Rows of up to ROW_WARP_MAX: one
 * warp per row, ROWS_PER_BLOCK rows a block; each lane walks the row with stride 32 and the
 * reductions are dc_warp_* (shuffles only). On a GPU that beats a block per row for DeiT's
 * 192..768-wide rows (and 197-wide attention rows): no __syncthreads or shared-memory round trip
 * between the passes, 6..24 independent loads per lane, full occupancy with 128-thread blocks;
 * in the emu a reduction is then a rendezvous of 32 fibers instead of 200+ (7x fewer context
 * switches). Wider rows: one block per row (up to 256 threads), dc_block_* reductions. */
enum { ROW_WARP_MAX = 1024, ROWS_PER_BLOCK = 4 };
typedef struct {
    int warp;                     /* one warp per row */
    int64_t grid;
    int block;
    const char *c0, *step;        /* a thread's first column and stride */
    const char *sum, *max, *lead; /* reductions; lead: the thread that stores a row result */
} row_shape;

static row_shape row_shape_of(int64_t C, int64_t rows) {
    row_shape r;
    if (C <= ROW_WARP_MAX) {
        r = (row_shape){1, (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, "lane", "32",
                        "dc_warp_sum", "dc_warp_max", "lane == 0"};
    } else {
        r = (row_shape){0, rows, row_block(C), "threadIdx.x", "blockDim.x", "dc_block_sum", "dc_block_max",
                        "threadIdx.x == 0"};
    }
    return r;
}

/* the kernel's first lines: r = the row index (type it); in warp mode also lane, and warps past
 * the last row leave (a whole warp at once: no shuffle loses a lane) */
static void emit_row_head(sb *b, const row_shape *rs, const char *it, int64_t rows) {
    if (rs->warp) {
        cg_sb_printf(b, "    const int lane = threadIdx.x & 31;\n");
        cg_sb_printf(b, "    const %s r = (%s)blockIdx.x * %d + (threadIdx.x >> 5);\n", it, it, ROWS_PER_BLOCK);
        if (rows % ROWS_PER_BLOCK) cg_sb_printf(b, "    if (r >= %lld) return;\n", (long long)rows);
    } else {
        cg_sb_printf(b, "    const %s r = blockIdx.x;\n", it);
    }
}

/* row statistics into mean, rstd (every thread gets them); x is the row's base pointer */
static void emit_row_stats(sb *b, const row_shape *rs, const char *xr, ir_dtype t, int64_t C, double eps) {
    char ref[64], lb[128], fl[64];
    snprintf(ref, sizeof ref, "%s[c]", xr);
    cg_ld(lb, sizeof lb, t, ref);
    cg_sb_printf(b, "    float s = 0.0f;\n");
    cg_sb_printf(b, "    for (int c = %s; c < %lld; c += %s) s += %s;\n", rs->c0, (long long)C, rs->step, lb);
    cg_sb_printf(b, "    const float mean = %s(s) * %s;\n", rs->sum, cg_flit(fl, sizeof fl, 1.0 / (double)C));
    cg_sb_printf(b, "    float ss = 0.0f;\n");
    cg_sb_printf(b, "    for (int c = %s; c < %lld; c += %s) {\n", rs->c0, (long long)C, rs->step);
    cg_sb_printf(b, "        const float d = %s - mean;\n        ss += d * d;\n    }\n", lb);
    cg_sb_printf(b, "    const float rstd = 1.0f / dc_sqrt(%s(ss) * %s + ", rs->sum, cg_flit(fl, sizeof fl, 1.0 / (double)C));
    cg_sb_printf(b, "%s);\n", cg_flit(fl, sizeof fl, eps));
}

/* ---- row kernels, rows of up to ROW_WARP_MAX: one warp per row, the row in registers ---------
 *
 * Lane l holds columns l, l + 32, ... (K = ceil(C / 32) values, arrays indexed by unrolled
 * constants: registers), so each row is read from memory once and every pass after the first
 * (mean, variance, exp, the outputs) works on registers: softmax computes exp once per element.
 * Padding lanes (C not a multiple of 32) hold a neutral value and store nothing. */

/* `float name[K]` = the row's columns lane + 32 k loaded from ref (a pointer expression
 * indexed by c), `pad` where c >= C */
static void emit_row_load(sb *b, const char *name, const char *ptr, ir_dtype t, int64_t C, const char *pad) {
    char ref[128], lb[192];
    int64_t K = (C + 31) / 32;
    snprintf(ref, sizeof ref, "%s[c]", ptr);
    cg_ld(lb, sizeof lb, t, ref);
    cg_sb_printf(b, "    float %s[%lld];\n", name, (long long)K);
    cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)K);
    cg_sb_printf(b, "        const int c = lane + 32 * k;\n");
    if (C % 32) cg_sb_printf(b, "        %s[k] = c < %lld ? %s : %s;\n    }\n", name, (long long)C, lb, pad);
    else cg_sb_printf(b, "        %s[k] = %s;\n    }\n", name, lb);
}

/* opens an unrolled loop over the lane's columns (c defined); guard: skip padding columns */
static void emit_row_for(sb *b, int64_t C, int guard) {
    cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)(C + 31) / 32);
    cg_sb_printf(b, "        const int c = lane + 32 * k;\n");
    if (guard && C % 32) cg_sb_printf(b, "        if (c >= %lld) continue;\n", (long long)C);
}

/* mean and rstd of the row held in xv (padding holds 0) */
static void emit_row_stats_reg(sb *b, int64_t C, double eps) {
    char fl[64], fe[64];
    cg_flit(fl, sizeof fl, 1.0 / (double)C);
    cg_sb_printf(b, "    float s = 0.0f;\n");
    cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) s += xv[k];\n", (long long)(C + 31) / 32);
    cg_sb_printf(b, "    const float mean = dc_warp_sum(s) * %s;\n", fl);
    cg_sb_printf(b, "    float ss = 0.0f;\n");
    if (C % 32) {
        emit_row_for(b, C, 1);
        cg_sb_printf(b, "        const float d = xv[k] - mean;\n        ss += d * d;\n    }\n");
    } else {
        cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)C / 32);
        cg_sb_printf(b, "        const float d = xv[k] - mean;\n        ss += d * d;\n    }\n");
    }
    cg_sb_printf(b, "    const float rstd = 1.0f / dc_sqrt(dc_warp_sum(ss) * %s + %s);\n", fl, cg_flit(fe, sizeof fe, eps));
}

static int is_layer_norm_dx(const ir_node *n) {
    return n->op == IR_OP_LAYER_NORM_DX || n->op == IR_OP_LAYER_NORM_DX_STATS;
}

/* The start every LayerNorm / LayerNorm-dx row kernel shares, one warp or one block a row:
 * the launch, its parameters (y, then x gamma beta or dy x gamma; layer_norm_stats: then its
 * mean_out, rstd_out; layer_norm_dx_stats: then mean_in, rstd_in), the row head, `row` and
 * the row pointers xr (and dyr). */
static void begin_layer_norm(emitter *e, launch *l, const row_shape *rs) {
    static const char *const names[2][3] = {{"x", "gamma", "beta"}, {"dy", "x", "gamma"}};
    const ir_node *n = &e->g->nodes[e->node];
    int is_dx = is_layer_norm_dx(n);
    const ir_node *x = &e->g->nodes[n->inputs[is_dx ? 1 : 0]];
    int64_t C = last_dim(x), rows = ir_numel(x) / C;
    const char *it = idx_type(ir_numel(x));
    l->tag = ir_op_name(n->op);
    l->fibers = 1;
    param(l, out_type(n->dtype), "y", off_of(e, e->node));
    for (int i = 0; i < 3; i++)
        param(l, in_type(e->g->nodes[n->inputs[i]].dtype), names[is_dx][i], off_of(e, n->inputs[i]));
    if (n->op == IR_OP_LAYER_NORM_STATS) { /* outputs 1 and 2 of the node's buffer, f32 */
        param(l, "float *", "mean_out", off_of(e, e->node) + pass_mem_output_offset(n, 1));
        param(l, "float *", "rstd_out", off_of(e, e->node) + pass_mem_output_offset(n, 2));
    } else if (n->op == IR_OP_LAYER_NORM_DX_STATS) {
        param(l, "const float *", "mean_in", off_of(e, n->inputs[3]));
        param(l, "const float *", "rstd_in", off_of(e, n->inputs[4]));
    }
    emit_row_head(&l->body, rs, it, rows);
    cg_sb_printf(&l->body, "    const %s row = r * %lld;\n", it, (long long)C);
    cg_sb_printf(&l->body, "    const auto *xr = x + row;\n%s", is_dx ? "    const auto *dyr = dy + row;\n" : "");
}

/* mean and rstd of row r: read (layer_norm_dx_stats), else computed (from the registers xv in
 * warp mode, from xr otherwise) and, for layer_norm_stats, stored as the node's outputs 1, 2 */
static void emit_layer_norm_stats(sb *b, const ir_node *n, const row_shape *rs, ir_dtype xt, int64_t C) {
    if (n->op == IR_OP_LAYER_NORM_DX_STATS) {
        cg_sb_printf(b, "    const float mean = mean_in[r], rstd = rstd_in[r];\n");
        return;
    }
    if (rs->warp) emit_row_stats_reg(b, C, n->attrs.eps);
    else emit_row_stats(b, rs, "xr", xt, C, n->attrs.eps);
    if (n->op == IR_OP_LAYER_NORM_STATS)
        cg_sb_printf(b, "    if (%s) {\n        mean_out[r] = mean;\n        rstd_out[r] = rstd;\n    }\n", rs->lead);
}

/* The same for softmax (x) and softmax-dx (dy, yv): parameters, row head, `row`. */
static void begin_softmax(emitter *e, launch *l, const row_shape *rs) {
    const ir_node *n = &e->g->nodes[e->node];
    int64_t C = last_dim(n), rows = ir_numel(n) / C;
    const char *it = idx_type(ir_numel(n));
    l->tag = ir_op_name(n->op);
    l->fibers = 1;
    param(l, out_type(n->dtype), "y", off_of(e, e->node));
    if (n->op == IR_OP_SOFTMAX) {
        param(l, in_type(e->g->nodes[n->inputs[0]].dtype), "x", off_of(e, n->inputs[0]));
    } else {
        param(l, in_type(e->g->nodes[n->inputs[0]].dtype), "dy", off_of(e, n->inputs[0]));
        param(l, in_type(e->g->nodes[n->inputs[1]].dtype), "yv", off_of(e, n->inputs[1]));
    }
    emit_row_head(&l->body, rs, it, rows);
    /* rows at the memory plan's pitch (16-bit attention rows padded; the same for every operand) */
    int64_t P = e->m->pitch ? e->m->pitch[e->node] : C;
    for (int k = 0; k < n->ninputs && e->m->pitch; k++) assert(e->m->pitch[n->inputs[k]] == P);
    cg_sb_printf(&l->body, "    const %s row = r * %lld;\n", it, (long long)P);
}

static int emit_layer_norm_warp(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int is_dx = is_layer_norm_dx(n);
    const ir_node *x = &e->g->nodes[n->inputs[is_dx ? 1 : 0]];
    int64_t C = last_dim(x), rows = ir_numel(x) / C;
    const row_shape rs = row_shape_of(C, rows);
    assert(rs.warp);
    launch l = {0};
    char a[128], bb[128], res[512], sres[600], fl[64];
    begin_layer_norm(e, &l, &rs);
    sb *b = &l.body;
    if (!is_dx) {
        const ir_node *gm = &e->g->nodes[n->inputs[1]], *bt = &e->g->nodes[n->inputs[2]];
        emit_row_load(b, "xv", "xr", x->dtype, C, "0.0f");
        emit_layer_norm_stats(b, n, &rs, x->dtype, C);
        emit_row_for(b, C, 1);
        snprintf(res, sizeof res, "(xv[k] - mean) * rstd * %s + %s", cg_ld(a, sizeof a, gm->dtype, "gamma[c]"),
                 cg_ld(bb, sizeof bb, bt->dtype, "beta[c]"));
        cg_sb_printf(b, "        y[row + c] = %s;\n    }\n", cg_st(sres, sizeof sres, n->dtype, res));
    } else {
        const ir_node *dy = &e->g->nodes[n->inputs[0]], *gm = &e->g->nodes[n->inputs[2]];
        emit_row_load(b, "xv", "xr", x->dtype, C, "0.0f");
        emit_layer_norm_stats(b, n, &rs, x->dtype, C);
        /* gv = dy * gamma; xv becomes xhat */
        cg_sb_printf(b, "    float gv[%lld], s1 = 0.0f, s2 = 0.0f;\n", (long long)(C + 31) / 32);
        cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)(C + 31) / 32);
        cg_sb_printf(b, "        const int c = lane + 32 * k;\n");
        snprintf(res, sizeof res, "%s * %s", cg_ld(a, sizeof a, dy->dtype, "dyr[c]"), cg_ld(bb, sizeof bb, gm->dtype, "gamma[c]"));
        if (C % 32) cg_sb_printf(b, "        gv[k] = c < %lld ? %s : 0.0f;\n", (long long)C, res);
        else cg_sb_printf(b, "        gv[k] = %s;\n", res);
        cg_sb_printf(b, "        xv[k] = (xv[k] - mean) * rstd;\n");
        cg_sb_printf(b, "        s1 += gv[k];\n        s2 += gv[k] * xv[k];\n    }\n");
        cg_flit(fl, sizeof fl, 1.0 / (double)C);
        cg_sb_printf(b, "    s1 = dc_warp_sum(s1) * %s;\n    s2 = dc_warp_sum(s2) * %s;\n", fl, fl);
        emit_row_for(b, C, 1);
        cg_sb_printf(b, "        y[row + c] = %s;\n    }\n", cg_st(sres, sizeof sres, n->dtype, "rstd * (gv[k] - s1 - xv[k] * s2)"));
    }
    cg_finish(e, &l, rs.grid, rs.block);
    return 0;
}

/* layer_norm_dgamma rows of up to ROW_WARP_MAX: blocks of DGAMMA_WARPS warps take ranges of
 * `rows` rows (a warp every DGAMMA_WARPS-th row of the range); a warp recomputes its row's mean
 * and rstd from the row in registers (x is read once anyway, so keeping the forward's
 * statistics would save arithmetic, not memory traffic) and adds dy * xhat into per-lane column
 * sums; the block adds its warps' sums in warp order into part[chunk][C]. Pass 2 (chunks > 1)
 * sums the chunks in order. Deterministic; no atomics. */
enum { DGAMMA_WARPS = 8, DGAMMA_MIN_ROWS = 32 };
static int64_t dgamma_rows(int64_t rows) {
    int64_t chunks = rows / DGAMMA_MIN_ROWS;
    if (chunks > RED_TARGET_BLOCKS) chunks = RED_TARGET_BLOCKS;
    if (chunks < 2) return rows;
    return (rows + chunks - 1) / chunks;
}
static int64_t dgamma_chunks(int64_t rows) {
    int64_t rc = dgamma_rows(rows);
    return (rows + rc - 1) / rc;
}

/* dbeta >= 0 (layer-norm-dbeta): that SUM_TO of dy, the beta gradient, is summed beside dgamma
 * in the same rows and order (its partials in its own scratch), and pass 2 sums both */
static int emit_layer_norm_dgamma_warp(emitter *e, int dbeta) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *dy = &e->g->nodes[n->inputs[0]], *x = &e->g->nodes[n->inputs[1]];
    const ir_node *db = dbeta >= 0 ? &e->g->nodes[dbeta] : NULL;
    int64_t C = last_dim(x), rows = ir_numel(x) / C, K = (C + 31) / 32;
    int64_t rc = dgamma_rows(rows), chunks = dgamma_chunks(rows);
    int64_t part = chunks > 1 ? e->m->scratch_offset[e->node] : -1;
    int64_t partb = chunks > 1 && db ? e->m->scratch_offset[dbeta] : -1;
    assert(chunks == 1 || (part >= 0 && (!db || partb >= 0)));
    const char *it = idx_type(ir_numel(x));
    char a[128], tag[64], sres[128];
    launch l = {0};
    snprintf(tag, sizeof tag, "layer_norm_dgamma%s%s", db ? "_dbeta" : "", chunks > 1 ? "_pass1" : "");
    l.tag = tag;
    l.fibers = 1;
    if (chunks > 1) param(&l, "float *", "part", part);
    else param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    if (db && chunks > 1) param(&l, "float *", "partb", partb);
    else if (db) param(&l, out_type(db->dtype), "yb", off_of(e, dbeta));
    param(&l, in_type(dy->dtype), "dy", off_of(e, n->inputs[0]));
    param(&l, in_type(x->dtype), "x", off_of(e, n->inputs[1]));
    sb *b = &l.body;
    cg_sb_printf(b, "    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;\n");
    cg_sb_printf(b, "    const %s r0 = (%s)blockIdx.x * %lld, r1 = r0 + %lld < %lld ? r0 + %lld : %lld;\n", it, it,
              (long long)rc, (long long)rc, (long long)rows, (long long)rc, (long long)rows);
    cg_sb_printf(b, "    float acc[%lld];\n", (long long)K);
    cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) acc[k] = 0.0f;\n", (long long)K);
    if (db) {
        cg_sb_printf(b, "    float accb[%lld];\n", (long long)K);
        cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) accb[k] = 0.0f;\n", (long long)K);
    }
    cg_sb_printf(b, "    for (%s r = r0 + w; r < r1; r += %d) { /* the same for the whole warp */\n", it, DGAMMA_WARPS);
    sb row = {0};
    cg_sb_printf(&row, "    const auto *xr = x + r * %lld;\n    const auto *dyr = dy + r * %lld;\n", (long long)C, (long long)C);
    emit_row_load(&row, "xv", "xr", x->dtype, C, "0.0f");
    emit_row_stats_reg(&row, C, n->attrs.eps);
    emit_row_for(&row, C, 1);
    if (db) { /* dy once for both sums */
        cg_sb_printf(&row, "        const float d = %s;\n", cg_ld(a, sizeof a, dy->dtype, "dyr[c]"));
        cg_sb_printf(&row, "        acc[k] += d * ((xv[k] - mean) * rstd);\n        accb[k] += d;\n    }\n");
    } else {
        cg_sb_printf(&row, "        acc[k] += %s * ((xv[k] - mean) * rstd);\n    }\n", cg_ld(a, sizeof a, dy->dtype, "dyr[c]"));
    }
    for (const char *p = row.s, *q; *p; p = q + 1) { /* indented one level */
        q = strchr(p, '\n');
        cg_sb_printf(b, "    %.*s\n", (int)(q - p), p);
    }
    free(row.s);
    cg_sb_printf(b, "    }\n");
    cg_sb_printf(b, "    __shared__ float sum[%d][%lld];\n", DGAMMA_WARPS, (long long)(32 * K));
    cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) sum[w][lane + 32 * k] = acc[k];\n", (long long)K);
    cg_sb_printf(b, "    __syncthreads();\n");
    cg_sb_printf(b, "    for (int c = threadIdx.x; c < %lld; c += %d) {\n", (long long)C, 32 * DGAMMA_WARPS);
    cg_sb_printf(b, "        float s = 0.0f;\n        for (int q = 0; q < %d; q++) s += sum[q][c];\n", DGAMMA_WARPS);
    if (chunks > 1) cg_sb_printf(b, "        part[(long long)blockIdx.x * %lld + c] = s;\n    }\n", (long long)C);
    else cg_sb_printf(b, "        y[c] = %s;\n    }\n", cg_st(sres, sizeof sres, n->dtype, "s"));
    if (db) { /* the same shared sums again, for dbeta */
        cg_sb_printf(b, "    __syncthreads();\n");
        cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) sum[w][lane + 32 * k] = accb[k];\n", (long long)K);
        cg_sb_printf(b, "    __syncthreads();\n");
        cg_sb_printf(b, "    for (int c = threadIdx.x; c < %lld; c += %d) {\n", (long long)C, 32 * DGAMMA_WARPS);
        cg_sb_printf(b, "        float s = 0.0f;\n        for (int q = 0; q < %d; q++) s += sum[q][c];\n", DGAMMA_WARPS);
        if (chunks > 1) cg_sb_printf(b, "        partb[(long long)blockIdx.x * %lld + c] = s;\n    }\n", (long long)C);
        else cg_sb_printf(b, "        yb[c] = %s;\n    }\n", cg_st(sres, sizeof sres, db->dtype, "s"));
    }
    cg_finish(e, &l, chunks, 32 * DGAMMA_WARPS);
    if (chunks > 1 && !db) cg_emit_partials_sum(e, part, chunks, C, 1);
    if (chunks > 1 && db) { /* pass 2 of both: each output's chunks in order, as cg_emit_partials_sum */
        launch l2 = {0};
        l2.tag = "layer_norm_dgamma_dbeta_pass2";
        param(&l2, out_type(n->dtype), "y", off_of(e, e->node));
        param(&l2, out_type(db->dtype), "yb", off_of(e, dbeta));
        param(&l2, "const float *", "part", part);
        param(&l2, "const float *", "partb", partb);
        int tx, ty;
        cg_reduce_shape(C, chunks, &tx, &ty);
        sb *b2 = &l2.body;
        char st2[128], fmt[400];
        cg_sb_printf(b2, "    const int tx = threadIdx.x %% %d, ty = threadIdx.x / %d;\n", tx, tx);
        cg_sb_printf(b2, "    const int o = (int)blockIdx.x * %d + tx;\n", tx);
        for (int q = 0; q < 2; q++) {
            const char *pv = q ? "partb" : "part";
            cg_sb_printf(b2, "    {\n    float acc = 0.0f;\n");
            cg_sb_printf(b2, "    if (o < %lld)\n", (long long)C);
            cg_sb_printf(b2, "        for (int k = ty; k < %lld; k += %d) acc += %s[(long long)k * %lld + o];\n",
                         (long long)chunks, ty, pv, (long long)C);
            snprintf(fmt, sizeof fmt, "%s[o] = %s;", q ? "yb" : "y", cg_st(st2, sizeof st2, q ? db->dtype : n->dtype, "%s"));
            if (ty > 1) { /* cg_reduce_finish declares its shared array: one per scope */
                cg_reduce_finish(&l2, tx, ty, C, fmt);
                if (!q) cg_sb_printf(b2, "    __syncthreads();\n");
            } else {
                cg_reduce_finish(&l2, tx, ty, C, fmt);
            }
            cg_sb_printf(b2, "    }\n");
        }
        cg_finish(e, &l2, (C + tx - 1) / tx, tx * ty);
    }
    return 0;
}

void cg_emit_layer_norm_dgamma_dbeta(emitter *e, const int *nodes, int count) {
    assert(count == 2);
    (void)count;
    const ir_node *x = &e->g->nodes[e->g->nodes[nodes[0]].inputs[1]];
    int saved = e->node;
    e->node = nodes[0];
    if (last_dim(x) <= ROW_WARP_MAX) {
        emit_layer_norm_dgamma_warp(e, nodes[1]);
    } else { /* wider rows: the two as they are */
        cg_emit_layer_norm_dgamma(e);
        e->node = nodes[1];
        cg_emit_reduce(e);
    }
    e->node = saved;
}

static int emit_softmax_warp(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int64_t C = last_dim(n), rows = ir_numel(n) / C, K = (C + 31) / 32;
    const row_shape rs = row_shape_of(C, rows);
    assert(rs.warp);
    launch l = {0};
    char sres[300];
    begin_softmax(e, &l, &rs);
    sb *b = &l.body;
    if (n->op == IR_OP_SOFTMAX) {
        const ir_node *x = &e->g->nodes[n->inputs[0]];
        cg_sb_printf(b, "    const auto *xr = x + row;\n");
        emit_row_load(b, "xv", "xr", x->dtype, C, "-DC_INF");
        cg_sb_printf(b, "    float m = -DC_INF;\n");
        cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) m = fmaxf(m, xv[k]);\n", (long long)K);
        cg_sb_printf(b, "    m = dc_warp_max(m);\n    float s = 0.0f;\n");
        cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)K);
        cg_sb_printf(b, "        xv[k] = dc_exp(xv[k] - m); /* padding: exp(-inf) = 0 */\n        s += xv[k];\n    }\n");
        cg_sb_printf(b, "    const float inv = 1.0f / dc_warp_sum(s);\n");
        emit_row_for(b, C, 1);
        cg_sb_printf(b, "        y[row + c] = %s;\n    }\n", cg_st(sres, sizeof sres, n->dtype, "xv[k] * inv"));
    } else {
        const ir_node *dy = &e->g->nodes[n->inputs[0]], *y = &e->g->nodes[n->inputs[1]];
        cg_sb_printf(b, "    const auto *dyr = dy + row;\n    const auto *yr = yv + row;\n");
        emit_row_load(b, "dv", "dyr", dy->dtype, C, "0.0f");
        emit_row_load(b, "pv", "yr", y->dtype, C, "0.0f");
        cg_sb_printf(b, "    float dot = 0.0f;\n");
        cg_sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) dot += dv[k] * pv[k];\n", (long long)K);
        cg_sb_printf(b, "    dot = dc_warp_sum(dot);\n");
        emit_row_for(b, C, 1);
        cg_sb_printf(b, "        y[row + c] = %s;\n    }\n", cg_st(sres, sizeof sres, n->dtype, "pv[k] * (dv[k] - dot)"));
    }
    cg_finish(e, &l, rs.grid, rs.block);
    return 0;
}

/* ---- row kernels, wider rows: one block per row ---------------------------------------------- */

int cg_emit_layer_norm(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int is_dx = is_layer_norm_dx(n);
    const ir_node *x = &e->g->nodes[n->inputs[is_dx ? 1 : 0]];
    int64_t C = last_dim(x), rows = ir_numel(x) / C;
    if (C <= ROW_WARP_MAX) return emit_layer_norm_warp(e);
    const row_shape rs = row_shape_of(C, rows);
    launch l = {0};
    char a[128], bb[128], c[128], res[512], sres[600];
    begin_layer_norm(e, &l, &rs);
    sb *b = &l.body;
    if (!is_dx) {
        const ir_node *gm = &e->g->nodes[n->inputs[1]], *bt = &e->g->nodes[n->inputs[2]];
        emit_layer_norm_stats(b, n, &rs, x->dtype, C);
        cg_sb_printf(b, "    for (int c = %s; c < %lld; c += %s)\n", rs.c0, (long long)C, rs.step);
        snprintf(res, sizeof res, "(%s - mean) * rstd * %s + %s", cg_ld(a, sizeof a, x->dtype, "xr[c]"),
                 cg_ld(bb, sizeof bb, gm->dtype, "gamma[c]"), cg_ld(c, sizeof c, bt->dtype, "beta[c]"));
        cg_sb_printf(b, "        y[row + c] = %s;\n", cg_st(sres, sizeof sres, n->dtype, res));
    } else {
        const ir_node *dy = &e->g->nodes[n->inputs[0]], *gm = &e->g->nodes[n->inputs[2]];
        char fl[64];
        emit_layer_norm_stats(b, n, &rs, x->dtype, C);
        cg_sb_printf(b, "    float s1 = 0.0f, s2 = 0.0f;\n");
        cg_sb_printf(b, "    for (int c = %s; c < %lld; c += %s) {\n", rs.c0, (long long)C, rs.step);
        cg_sb_printf(b, "        const float g = %s * %s;\n", cg_ld(a, sizeof a, dy->dtype, "dyr[c]"),
                  cg_ld(bb, sizeof bb, gm->dtype, "gamma[c]"));
        cg_sb_printf(b, "        s1 += g;\n        s2 += g * (%s - mean) * rstd;\n    }\n", cg_ld(c, sizeof c, x->dtype, "xr[c]"));
        cg_flit(fl, sizeof fl, 1.0 / (double)C);
        cg_sb_printf(b, "    s1 = %s(s1) * %s;\n    s2 = %s(s2) * %s;\n", rs.sum, fl, rs.sum, fl);
        cg_sb_printf(b, "    for (int c = %s; c < %lld; c += %s) {\n", rs.c0, (long long)C, rs.step);
        cg_sb_printf(b, "        const float xh = (%s - mean) * rstd;\n", c);
        snprintf(res, sizeof res, "rstd * (%s * %s - s1 - xh * s2)", a, bb);
        cg_sb_printf(b, "        y[row + c] = %s;\n    }\n", cg_st(sres, sizeof sres, n->dtype, res));
    }
    cg_finish(e, &l, rs.grid, rs.block);
    return 0;
}

/* layer_norm_dgamma(dy, x), wide rows: row stats into scratch (mean, rstd per row), then
 * column sums */
int cg_emit_layer_norm_dgamma(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *dy = &e->g->nodes[n->inputs[0]], *x = &e->g->nodes[n->inputs[1]];
    if (last_dim(x) <= ROW_WARP_MAX) return emit_layer_norm_dgamma_warp(e, -1);
    int64_t C = last_dim(x), rows = ir_numel(x) / C, scratch = e->m->scratch_offset[e->node];
    assert(scratch >= 0);
    const char *it = idx_type(ir_numel(x));
    char a[128], c[128], fmt[256], sv[128];
    {
        const row_shape rs = row_shape_of(C, rows);
        launch l = {0};
        l.tag = "layer_norm_stats";
        l.fibers = 1;
        param(&l, "float *", "stats", scratch);
        param(&l, in_type(x->dtype), "x", off_of(e, n->inputs[1]));
        sb *b = &l.body;
        emit_row_head(b, &rs, it, rows);
        cg_sb_printf(b, "    const auto *xr = x + r * %lld;\n", (long long)C);
        emit_row_stats(b, &rs, "xr", x->dtype, C, n->attrs.eps);
        cg_sb_printf(b, "    if (%s) {\n        stats[2 * r] = mean;\n", rs.lead);
        cg_sb_printf(b, "        stats[2 * r + 1] = rstd;\n    }\n");
        cg_finish(e, &l, rs.grid, rs.block);
    }
    launch l = {0};
    l.tag = "layer_norm_dgamma";
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    param(&l, in_type(dy->dtype), "dy", off_of(e, n->inputs[0]));
    param(&l, in_type(x->dtype), "x", off_of(e, n->inputs[1]));
    param(&l, "const float *", "stats", scratch);
    int tx, ty;
    cg_reduce_shape(C, rows, &tx, &ty);
    sb *b = &l.body;
    cg_sb_printf(b, "    const int tx = threadIdx.x %% %d, ty = threadIdx.x / %d;\n", tx, tx);
    cg_sb_printf(b, "    const int o = blockIdx.x * %d + tx;\n", tx);
    cg_sb_printf(b, "    float acc = 0.0f;\n    if (o < %lld) {\n", (long long)C);
    cg_sb_printf(b, "        for (%s r = ty; r < %lld; r += %d) {\n", it, (long long)rows, ty);
    cg_sb_printf(b, "            const %s at = r * %lld + o;\n", it, (long long)C);
    cg_sb_printf(b, "            acc += %s * (%s - stats[2 * r]) * stats[2 * r + 1];\n", cg_ld(a, sizeof a, dy->dtype, "dy[at]"),
              cg_ld(c, sizeof c, x->dtype, "x[at]"));
    cg_sb_printf(b, "        }\n    }\n");
    snprintf(fmt, sizeof fmt, "y[o] = %s;", cg_st(sv, sizeof sv, n->dtype, "%s"));
    cg_reduce_finish(&l, tx, ty, C, fmt);
    cg_finish(e, &l, (C + tx - 1) / tx, tx * ty);
    return 0;
}

int cg_emit_softmax(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int64_t C = last_dim(n), rows = ir_numel(n) / C;
    if (C <= ROW_WARP_MAX) return emit_softmax_warp(e);
    const row_shape rs = row_shape_of(C, rows);
    launch l = {0};
    char a[128], bb[128], res[512], sres[600];
    begin_softmax(e, &l, &rs);
    sb *b = &l.body;
    if (n->op == IR_OP_SOFTMAX) {
        const ir_node *x = &e->g->nodes[n->inputs[0]];
        cg_ld(a, sizeof a, x->dtype, "x[row + c]");
        cg_sb_printf(b, "    float m = -DC_INF;\n");
        cg_sb_printf(b, "    for (int c = %s; c < %lld; c += %s) m = fmaxf(m, %s);\n", rs.c0, (long long)C, rs.step, a);
        cg_sb_printf(b, "    m = %s(m);\n    float s = 0.0f;\n", rs.max);
        cg_sb_printf(b, "    for (int c = %s; c < %lld; c += %s) s += dc_exp(%s - m);\n", rs.c0, (long long)C, rs.step, a);
        cg_sb_printf(b, "    const float inv = 1.0f / %s(s);\n", rs.sum);
        snprintf(res, sizeof res, "dc_exp(%s - m) * inv", a);
    } else {
        const ir_node *dy = &e->g->nodes[n->inputs[0]], *y = &e->g->nodes[n->inputs[1]];
        cg_ld(a, sizeof a, dy->dtype, "dy[row + c]");
        cg_ld(bb, sizeof bb, y->dtype, "yv[row + c]");
        cg_sb_printf(b, "    float dot = 0.0f;\n");
        cg_sb_printf(b, "    for (int c = %s; c < %lld; c += %s) dot += %s * %s;\n", rs.c0, (long long)C, rs.step, a, bb);
        cg_sb_printf(b, "    dot = %s(dot);\n", rs.sum);
        snprintf(res, sizeof res, "%s * (%s - dot)", bb, a);
    }
    cg_sb_printf(b, "    for (int c = %s; c < %lld; c += %s) y[row + c] = %s;\n", rs.c0, (long long)C, rs.step,
              cg_st(sres, sizeof sres, n->dtype, res));
    cg_finish(e, &l, rs.grid, rs.block);
    return 0;
}

/* log-sum-exp of the row at xr into lse (every thread) */
static void emit_lse(sb *b, ir_dtype t, int64_t K) {
    char a[64];
    cg_ld(a, sizeof a, t, "xr[c]");
    cg_sb_printf(b, "        float m = -DC_INF;\n");
    cg_sb_printf(b, "        for (int c = threadIdx.x; c < %lld; c += blockDim.x) m = fmaxf(m, %s);\n", (long long)K, a);
    cg_sb_printf(b, "        m = dc_block_max(m);\n        float s = 0.0f;\n");
    cg_sb_printf(b, "        for (int c = threadIdx.x; c < %lld; c += blockDim.x) s += dc_exp(%s - m);\n", (long long)K, a);
    cg_sb_printf(b, "        const float lse = m + logf(dc_block_sum(s));\n");
}

/* cross_entropy (node fwd) and cross_entropy_grad (node grad) over the same logits, labels and
 * opt; either may be -1 (the op alone), both: softmax-cross-entropy's kernel, which computes
 * each row's log-sum-exp once for the row's loss and its dlogits. The forward's pass 1 (one
 * block per row) writes the rows' losses to scratch, pass 2 adds them in order. */
static void emit_cross_entropy(emitter *e, int fwd, int grad) {
    const ir_graph *g = e->g;
    const ir_node *f = fwd >= 0 ? &g->nodes[fwd] : NULL, *d = grad >= 0 ? &g->nodes[grad] : NULL;
    const int first = f ? 0 : 1; /* where the logits are among the inputs */
    const ir_node *n = f ? f : d;
    const ir_node *x = &g->nodes[n->inputs[first]], *lab = &g->nodes[n->inputs[first + 1]];
    int64_t B = x->shape[0], K = x->shape[1];
    char a[64], fl[64], res[256], sres[300];
    launch l = {0};
    l.tag = f ? (d ? "cross_entropy_with_grad_pass1" : "cross_entropy_pass1") : ir_op_name(d->op);
    l.fibers = 1;
    sb *b = &l.body;
    int64_t part = f ? e->m->scratch_offset[fwd] : -1;
    assert(!f || part >= 0);
    if (f) param(&l, "float *", "loss_rows", part);
    if (d) param(&l, out_type(d->dtype), "y", off_of(e, grad));
    if (d) param(&l, in_type(g->nodes[d->inputs[0]].dtype), "dloss", off_of(e, d->inputs[0]));
    param(&l, in_type(x->dtype), "x", off_of(e, n->inputs[first]));
    param(&l, in_type(lab->dtype), "labels", off_of(e, n->inputs[first + 1]));
    param(&l, "const float *", "opt", off_of(e, n->inputs[first + 2]));
    cg_ld(a, sizeof a, x->dtype, "xr[c]");
    /* label smoothing s is the run's option (opt slot); s = 0 gives exactly the plain loss */
    cg_sb_printf(b, "    const float sm = opt[%d];\n", IR_OPT_LABEL_SMOOTHING);
    cg_sb_printf(b, "    const int bi = blockIdx.x;\n    {\n");
    cg_sb_printf(b, "        const auto *xr = x + (long long)bi * %lld;\n", (long long)K);
    emit_lse(b, x->dtype, K);
    cg_sb_printf(b, "        const long long t = (long long)labels[bi];\n");
    if (f) {
        cg_sb_printf(b, "        const float xt = t >= 0 && t < %lld ? %s : __int_as_float(0x7fc00000);\n", (long long)K,
                  cg_ld(res, sizeof res, x->dtype, "xr[t]"));
        cg_sb_printf(b, "        float sx = 0.0f;\n");
        cg_sb_printf(b, "        if (sm != 0.0f)\n");
        cg_sb_printf(b, "            for (int c = threadIdx.x; c < %lld; c += blockDim.x) sx += %s;\n", (long long)K, a);
        cg_sb_printf(b, "        sx = dc_block_sum(sx);\n");
        cg_sb_printf(b, "        if (threadIdx.x == 0) loss_rows[bi] = sm != 0.0f ? (1.0f - sm) * (lse - xt) + sm * (lse - sx * %s) : lse - xt;\n",
                  cg_flit(res, sizeof res, 1.0 / (double)K));
    }
    if (d) {
        const ir_node *dl = &g->nodes[d->inputs[0]];
        char dlb[64];
        cg_sb_printf(b, "        const float scale = %s * %s;\n", cg_ld(dlb, sizeof dlb, dl->dtype, "dloss[0]"),
                  cg_flit(fl, sizeof fl, 1.0 / (double)B));
        cg_sb_printf(b, "        for (int c = threadIdx.x; c < %lld; c += blockDim.x) {\n", (long long)K);
        cg_sb_printf(b, "            const float target = (c == t ? 1.0f - sm : 0.0f) + sm / %s;\n", cg_flit(fl, sizeof fl, (double)K));
        snprintf(res, sizeof res, "scale * (dc_exp(%s - lse) - target)", a);
        cg_sb_printf(b, "            y[(long long)bi * %lld + c] = %s;\n        }\n", (long long)K,
                  cg_st(sres, sizeof sres, d->dtype, res));
    }
    cg_sb_printf(b, "    }\n");
    int saved = e->node;
    e->node = f ? fwd : grad;
    cg_finish(e, &l, B, row_block(K));
    if (f && d) {
        const int nodes[2] = {fwd, grad};
        cg_chain_name_step(e, nodes, 2);
    }
    if (f) cg_emit_block_total(e, part, B, 1.0 / (double)B);
    e->node = saved;
}

int cg_emit_cross_entropy(emitter *e) {
    int grad = e->g->nodes[e->node].op == IR_OP_CROSS_ENTROPY_GRAD;
    emit_cross_entropy(e, grad ? -1 : e->node, grad ? e->node : -1);
    return 0;
}

void cg_emit_cross_entropy_with_grad(emitter *e, const int *nodes, int count) {
    assert(count == 2 && e->g->nodes[nodes[0]].op == IR_OP_CROSS_ENTROPY);
    (void)count;
    emit_cross_entropy(e, nodes[0], nodes[1]);
}

int64_t cg_layer_norm_dgamma_scratch(const ir_graph *g, const ir_node *n) {
    const int64_t f = (int64_t)sizeof(float);
    const ir_node *x = &g->nodes[n->inputs[1]];
    int64_t C = last_dim(x), rows = ir_numel(x) / C;
    if (C > ROW_WARP_MAX) return 2 * f * rows; /* row statistics */
    const int64_t chunks = dgamma_chunks(rows);
    return chunks > 1 ? f * chunks * C : 0;
}

int64_t cg_cross_entropy_scratch(const ir_graph *g, const ir_node *n) {
    return (int64_t)sizeof(float) * g->nodes[n->inputs[0]].shape[0]; /* the rows' losses */
}

/* ---- for emit_chain_rows.c: the warp-row pieces, so its kernel computes what these do ------- */

int cg_row_warp_max(void) { return ROW_WARP_MAX; }

void cg_emit_row_head_warp(sb *b, const char *it, int64_t C, int64_t rows, int64_t *grid, int *block) {
    const row_shape rs = row_shape_of(C, rows);
    assert(rs.warp);
    emit_row_head(b, &rs, it, rows);
    *grid = rs.grid;
    *block = rs.block;
}

void cg_emit_row_stats_reg(sb *b, int64_t C, double eps) { emit_row_stats_reg(b, C, eps); }

void cg_emit_row_for(sb *b, int64_t C, int guard) { emit_row_for(b, C, guard); }

void cg_emit_row_load(sb *b, const char *name, const char *ptr, ir_dtype t, int64_t C, const char *pad) {
    emit_row_load(b, name, ptr, t, C, pad);
}

void cg_layer_norm_row_ranges(int64_t C, int64_t rows, int summed, int *warps, int64_t *range, int64_t *ranges) {
    *warps = DGAMMA_WARPS;
    *range = summed ? dgamma_rows(rows) : DGAMMA_WARPS; /* unsummed: a row a warp */
    if (summed && cg_red_plan_of(C, rows).chunks == 1) *range = rows; /* one pass, as the plain sum */
    *ranges = (rows + *range - 1) / *range;
}

int64_t cg_layer_norm_dx_sum_scratch(const ir_graph *g, const ir_node *sum) {
    const ir_node *first = sum;
    while (first > g->nodes && sum->chain && first[-1].chain == sum->chain) first--;
    if (first == sum || first->op != IR_OP_LAYER_NORM_DX) return -1;
    const ir_node *x = &g->nodes[first->inputs[1]];
    int64_t C = last_dim(x), rows = ir_numel(x) / C;
    if (C > ROW_WARP_MAX) return -1; /* the kernels apart: the plain SUM_TO's plan */
    int warps;
    int64_t range, ranges;
    cg_layer_norm_row_ranges(C, rows, 1, &warps, &range, &ranges);
    return ranges > 1 ? (int64_t)sizeof(float) * ranges * C : 0;
}
