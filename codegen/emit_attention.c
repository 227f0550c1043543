/* emit_attention.c: the attention family, the fused ops of the qkv-attention fusion:
 * attention (qkv [B,N,3D] -> O [B,N,D], LSE [B,H,N]) and attention_bwd (dO, qkv, O, LSE ->
 * dqkv [B,N,3D]). qkv is read in place (Q, K, V of head h at columns h*hd, D + h*hd,
 * 2D + h*hd of each row), O written with the heads merged, dqkv in qkv's layout: no permute,
 * slice or copy around them. Values load and store in the node's dtype (f32, f16, bf16).
 * This file: the FMA kernels (fp32, and f16/bf16 head dims not a multiple of 16; every product
 * and sum an fp32 FMA) and the dispatcher; f16/bf16 with hd % 16 == 0 go to the tensor-core
 * kernels of emit_attention_mma.c.
 *
 *   attention      one block (128 threads) per (batch, head, tile of ATT_QT queries); the
 *                  queries in shared memory, the keys and values streamed through it ATT_KT
 *                  at a time with an online softmax (running max and sum per row, the output
 *                  rescaled), so any N >= 1 works; padded keys score -inf, padded queries store
 *                  nothing. Each thread owns ATT_QT*hd/128 output elements in registers.
 *   attention_bwd  FlashAttention-2's backward, recomputing P = exp(s - LSE) from Q, K and the
 *                  saved LSE, D = rowsum(dO * O); two kernels, each value of dqkv written by
 *                  exactly one thread (no atomics, deterministic):
 *                    _dkv: a block per (batch, head, tile of ATT_BKT keys) owns dK and dV of its
 *                          keys and walks all query tiles: dV += P^T dO, dK += dS^T Q * scale
 *                    _dq:  a block per (batch, head, tile of ATT_BQT queries) walks all key
 *                          tiles: dQ += dS K * scale, dS = P * (dO V^T - D)
 * Shared memory is static (under 48 KB at hd <= 128: fwd 16x128 Q + 2 x 32x129 K, V + 16x32
 * P; bwd 4 tiles of 16 x hd + 2 of 16x16). */
#include "codegen/emit_attention.h"

enum { ATT_QT = 16, ATT_KT = 32, ATT_BQT = 16, ATT_BKT = 16 };

att_dims cg_att_dims(const ir_graph *g, const ir_node *n) {
    const ir_node *qkv = &g->nodes[n->inputs[n->op == IR_OP_ATTENTION ? 0 : 1]];
    att_dims a;
    a.B = qkv->shape[0], a.N = qkv->shape[1], a.D3 = qkv->shape[2], a.D = a.D3 / 3;
    a.H = n->attrs.heads, a.hd = a.D / a.H, a.scale = n->attrs.alpha, a.t = qkv->dtype;
    return a;
}

/* "LD(base[(long long)(row) * D3 + col + d])" as a float expression into buf */
static const char *ld_at(char *buf, size_t size, const att_dims *a, const char *ptr, const char *row, const char *col) {
    char ref[192];
    snprintf(ref, sizeof ref, "%s[(long long)(%s) * %lld + %s]", ptr, row, (long long)a->D3, col);
    return cg_ld(buf, size, a->t, ref);
}

/* fills smem[rows][ld] with the tile's rows r0 + r of qkv at column offset col (0 past N) */
static void emit_tile_load(sb *b, const att_dims *a, const char *smem, int rows, const char *r0, int64_t col) {
    char colx[64], lb[256];
    snprintf(colx, sizeof colx, "%lld + d", (long long)col);
    cg_sb_printf(b, "        for (int e = tid; e < %lld; e += %d) {\n", (long long)(rows * a->hd), ATT_THREADS);
    cg_sb_printf(b, "            const int r = e / %lld, d = e %% %lld, i = %s + r;\n", (long long)a->hd, (long long)a->hd, r0);
    cg_sb_printf(b, "            %s[r][d] = i < %lld ? %s : 0.0f;\n        }\n", smem, (long long)a->N,
                 ld_at(lb, sizeof lb, a, "base", "i", colx));
}

void cg_att_head(sb *b, const att_dims *a, int64_t tiles) {
    cg_sb_printf(b, "    const int tid = threadIdx.x;\n");
    cg_sb_printf(b, "    const int tile = blockIdx.x %% %lld, bh = blockIdx.x / %lld;\n", (long long)tiles, (long long)tiles);
    cg_sb_printf(b, "    const int bb = bh / %lld, h = bh %% %lld;\n", (long long)a->H, (long long)a->H);
    cg_sb_printf(b, "    const auto *base = qkv + (long long)bb * %lld + h * %lld;\n", (long long)(a->N * a->D3), (long long)a->hd);
}

static int emit_forward(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = cg_att_dims(e->g, n);
    int64_t tiles = (a.N + ATT_QT - 1) / ATT_QT, HD = a.hd;
    int64_t oe = (ATT_QT * HD + ATT_THREADS - 1) / ATT_THREADS;
    launch l = {0};
    l.tag = "attention";
    l.fibers = 1;
    param(&l, out_type(a.t), "o", off_of(e, e->node));
    param(&l, "float *", "lse", off_of(e, e->node) + pass_mem_output_offset(n, 1));
    param(&l, in_type(a.t), "qkv", off_of(e, n->inputs[0]));
    sb *b = &l.body;
    char fl[64], sv[256];
    cg_sb_printf(b, "    __shared__ float Qs[%d][%lld];\n", ATT_QT, (long long)HD);
    cg_sb_printf(b, "    __shared__ float Ks[%d][%lld];\n", ATT_KT, (long long)HD + 1);
    cg_sb_printf(b, "    __shared__ float Vs[%d][%lld];\n", ATT_KT, (long long)HD);
    cg_sb_printf(b, "    __shared__ float Ps[%d][%d];\n", ATT_QT, ATT_KT);
    cg_sb_printf(b, "    __shared__ float row_m[%d], row_l[%d], row_a[%d];\n", ATT_QT, ATT_QT, ATT_QT);
    cg_att_head(b, &a, tiles);
    cg_sb_printf(b, "    const int q0 = tile * %d;\n    {\n", ATT_QT);
    emit_tile_load(b, &a, "Qs", ATT_QT, "q0", 0);
    cg_sb_printf(b, "    }\n    if (tid < %d) {\n        row_m[tid] = -DC_INF;\n        row_l[tid] = 0.0f;\n    }\n", ATT_QT);
    cg_sb_printf(b, "    float acc[%lld];\n    DC_UNROLL for (int u = 0; u < %lld; u++) acc[u] = 0.0f;\n", (long long)oe, (long long)oe);
    cg_sb_printf(b, "    for (int k0 = 0; k0 < %lld; k0 += %d) {\n        __syncthreads();\n", (long long)a.N, ATT_KT);
    emit_tile_load(b, &a, "Ks", ATT_KT, "k0", a.D);
    emit_tile_load(b, &a, "Vs", ATT_KT, "k0", 2 * a.D);
    cg_sb_printf(b, "        __syncthreads();\n");
    /* scores of the tile: ATT_QT*ATT_KT / 128 per thread; Q scaled as it is used */
    cg_sb_printf(b, "        DC_UNROLL for (int u = 0; u < %d; u++) {\n", ATT_QT * ATT_KT / ATT_THREADS);
    cg_sb_printf(b, "            const int e = tid + %d * u, r = e / %d, j = e %% %d;\n", ATT_THREADS, ATT_KT, ATT_KT);
    cg_sb_printf(b, "            float s = 0.0f;\n");
    cg_sb_printf(b, "            for (int d = 0; d < %lld; d++) s = fmaf(Qs[r][d], Ks[j][d], s);\n", (long long)HD);
    cg_sb_printf(b, "            Ps[r][j] = k0 + j < %lld ? s * %s : -DC_INF;\n        }\n", (long long)a.N,
                 cg_flit(fl, sizeof fl, a.scale));
    cg_sb_printf(b, "        __syncthreads();\n");
    /* online softmax, one thread per row */
    cg_sb_printf(b, "        if (tid < %d) {\n", ATT_QT);
    cg_sb_printf(b, "            float mx = row_m[tid];\n");
    cg_sb_printf(b, "            for (int j = 0; j < %d; j++) mx = fmaxf(mx, Ps[tid][j]);\n", ATT_KT);
    cg_sb_printf(b, "            const float al = dc_exp(row_m[tid] - mx);\n            float sum = 0.0f;\n");
    cg_sb_printf(b, "            for (int j = 0; j < %d; j++) {\n", ATT_KT);
    cg_sb_printf(b, "                const float p = dc_exp(Ps[tid][j] - mx);\n                Ps[tid][j] = p;\n                sum += p;\n            }\n");
    cg_sb_printf(b, "            row_l[tid] = row_l[tid] * al + sum;\n            row_m[tid] = mx;\n            row_a[tid] = al;\n        }\n");
    cg_sb_printf(b, "        __syncthreads();\n");
    cg_sb_printf(b, "        DC_UNROLL for (int u = 0; u < %lld; u++) {\n", (long long)oe);
    cg_sb_printf(b, "            const int e = tid + %d * u, r = e / %lld, d = e %% %lld;\n", ATT_THREADS, (long long)HD, (long long)HD);
    if ((ATT_QT * HD) % ATT_THREADS) cg_sb_printf(b, "            if (e >= %lld) break;\n", (long long)(ATT_QT * HD));
    cg_sb_printf(b, "            float s = acc[u] * row_a[r];\n");
    cg_sb_printf(b, "            for (int j = 0; j < %d; j++) s = fmaf(Ps[r][j], Vs[j][d], s);\n", ATT_KT);
    cg_sb_printf(b, "            acc[u] = s;\n        }\n    }\n");
    /* O with the heads merged; LSE per (b, h, row) */
    cg_sb_printf(b, "    DC_UNROLL for (int u = 0; u < %lld; u++) {\n", (long long)oe);
    cg_sb_printf(b, "        const int e = tid + %d * u, r = e / %lld, d = e %% %lld, i = q0 + r;\n", ATT_THREADS, (long long)HD,
                 (long long)HD);
    if ((ATT_QT * HD) % ATT_THREADS) cg_sb_printf(b, "        if (e >= %lld) break;\n", (long long)(ATT_QT * HD));
    cg_sb_printf(b, "        if (i < %lld) o[((long long)bb * %lld + i) * %lld + h * %lld + d] = %s;\n    }\n", (long long)a.N,
                 (long long)a.N, (long long)a.D, (long long)HD, cg_st(sv, sizeof sv, a.t, "acc[u] / row_l[r]"));
    cg_sb_printf(b, "    if (tid < %d && q0 + tid < %lld) lse[(long long)bh * %lld + q0 + tid] = row_m[tid] + logf(row_l[tid]);\n",
                 ATT_QT, (long long)a.N, (long long)a.N);
    cg_finish(e, &l, a.B * a.H * tiles, ATT_THREADS);
    return 0;
}

/* the backward's per-query-row values of a tile of ATT_BQT rows from q0: lse_s (+inf past N:
 * P = 0 there) and D_s = rowsum(dO * O) */
static void emit_row_terms(sb *b, const att_dims *a) {
    char l1[160], l2[160], r1[160], r2[160];
    snprintf(r1, sizeof r1, "dO[((long long)bb * %lld + i) * %lld + h * %lld + d]", (long long)a->N, (long long)a->D, (long long)a->hd);
    snprintf(r2, sizeof r2, "O[((long long)bb * %lld + i) * %lld + h * %lld + d]", (long long)a->N, (long long)a->D, (long long)a->hd);
    cg_sb_printf(b, "        if (tid < %d) {\n            const int i = q0 + tid;\n            float s = 0.0f;\n", ATT_BQT);
    cg_sb_printf(b, "            if (i < %lld)\n                for (int d = 0; d < %lld; d++) s = fmaf(%s, %s, s);\n", (long long)a->N,
                 (long long)a->hd, cg_ld(l1, sizeof l1, a->t, r1), cg_ld(l2, sizeof l2, a->t, r2));
    cg_sb_printf(b, "            D_s[tid] = s;\n            lse_s[tid] = i < %lld ? lse[(long long)bh * %lld + i] : DC_INF;\n        }\n",
                 (long long)a->N, (long long)a->N);
}

/* P and dS of the (query tile, key tile) pair into Ps, dSs (Ps only when `want_p`) */
static void emit_probs(sb *b, const att_dims *a, int want_p) {
    char fl[64];
    cg_sb_printf(b, "        DC_UNROLL for (int u = 0; u < %d; u++) {\n", ATT_BQT * ATT_BKT / ATT_THREADS);
    cg_sb_printf(b, "            const int e = tid + %d * u, r = e / %d, j = e %% %d;\n", ATT_THREADS, ATT_BKT, ATT_BKT);
    cg_sb_printf(b, "            float s = 0.0f, dp = 0.0f;\n");
    cg_sb_printf(b, "            for (int d = 0; d < %lld; d++) {\n", (long long)a->hd);
    cg_sb_printf(b, "                s = fmaf(Qs[r][d], Ks[j][d], s);\n                dp = fmaf(dOs[r][d], Vs[j][d], dp);\n            }\n");
    cg_sb_printf(b, "            const float p = k0 + j < %lld ? dc_exp(s * %s - lse_s[r]) : 0.0f;\n", (long long)a->N,
                 cg_flit(fl, sizeof fl, a->scale));
    if (want_p) cg_sb_printf(b, "            Ps[r][j] = p;\n");
    cg_sb_printf(b, "            dSs[r][j] = p * (dp - D_s[r]);\n        }\n");
}

static void bwd_shared(sb *b, const att_dims *a, int want_p) {
    long long HD = (long long)a->hd;
    cg_sb_printf(b, "    __shared__ float Qs[%d][%lld], dOs[%d][%lld];\n", ATT_BQT, HD, ATT_BQT, HD);
    cg_sb_printf(b, "    __shared__ float Ks[%d][%lld], Vs[%d][%lld];\n", ATT_BKT, HD + 1, ATT_BKT, HD + 1);
    if (want_p) cg_sb_printf(b, "    __shared__ float Ps[%d][%d];\n", ATT_BQT, ATT_BKT);
    cg_sb_printf(b, "    __shared__ float dSs[%d][%d], lse_s[%d], D_s[%d];\n", ATT_BQT, ATT_BKT, ATT_BQT, ATT_BQT);
}

void cg_att_bwd_params(emitter *e, launch *l, const ir_node *n, const att_dims *a) {
    param(l, out_type(a->t), "dqkv", off_of(e, e->node));
    param(l, in_type(a->t), "dO", off_of(e, n->inputs[0]));
    param(l, in_type(a->t), "qkv", off_of(e, n->inputs[1]));
    param(l, in_type(a->t), "O", off_of(e, n->inputs[2]));
    param(l, "const float *", "lse", off_of(e, n->inputs[3]));
    l->fibers = 1;
}

/* this thread's output elements u of a tile of `rows` x hd: e, r (row), d */
static void emit_own_loop(sb *b, int64_t rows, int64_t hd, const char *rname, const char *indent) {
    int64_t oe = (rows * hd + ATT_THREADS - 1) / ATT_THREADS;
    cg_sb_printf(b, "%sDC_UNROLL for (int u = 0; u < %lld; u++) {\n", indent, (long long)oe);
    cg_sb_printf(b, "%s    const int e = tid + %d * u, %s = e / %lld, d = e %% %lld;\n", indent, ATT_THREADS, rname,
                 (long long)hd, (long long)hd);
    if ((rows * hd) % ATT_THREADS) cg_sb_printf(b, "%s    if (e >= %lld) break;\n", indent, (long long)(rows * hd));
}

static int emit_backward(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = cg_att_dims(e->g, n);
    long long HD = (long long)a.hd, N = (long long)a.N;
    char fl[64], s1[256], s2[256], dst[192];
    cg_flit(fl, sizeof fl, a.scale);
    /* dK, dV: a block per key tile */
    {
        int64_t tiles = (a.N + ATT_BKT - 1) / ATT_BKT, oe = (ATT_BKT * a.hd + ATT_THREADS - 1) / ATT_THREADS;
        launch l = {0};
        l.tag = "attention_bwd_dkv";
        cg_att_bwd_params(e, &l, n, &a);
        sb *b = &l.body;
        bwd_shared(b, &a, 1);
        cg_att_head(b, &a, tiles);
        cg_sb_printf(b, "    const int k0 = tile * %d;\n    {\n", ATT_BKT);
        emit_tile_load(b, &a, "Ks", ATT_BKT, "k0", a.D);
        emit_tile_load(b, &a, "Vs", ATT_BKT, "k0", 2 * a.D);
        cg_sb_printf(b, "    }\n    float dk[%lld], dv[%lld];\n", (long long)oe, (long long)oe);
        cg_sb_printf(b, "    DC_UNROLL for (int u = 0; u < %lld; u++) dk[u] = dv[u] = 0.0f;\n", (long long)oe);
        cg_sb_printf(b, "    for (int q0 = 0; q0 < %lld; q0 += %d) {\n        __syncthreads();\n", N, ATT_BQT);
        emit_tile_load(b, &a, "Qs", ATT_BQT, "q0", 0);
        /* dO rows of the tile (dO is [B,N,D]: its own row stride) */
        cg_sb_printf(b, "        for (int e = tid; e < %lld; e += %d) {\n", (long long)(ATT_BQT * a.hd), ATT_THREADS);
        cg_sb_printf(b, "            const int r = e / %lld, d = e %% %lld, i = q0 + r;\n", HD, HD);
        snprintf(dst, sizeof dst, "dO[((long long)bb * %lld + i) * %lld + h * %lld + d]", N, (long long)a.D, HD);
        cg_sb_printf(b, "            dOs[r][d] = i < %lld ? %s : 0.0f;\n        }\n", N, cg_ld(s1, sizeof s1, a.t, dst));
        emit_row_terms(b, &a);
        cg_sb_printf(b, "        __syncthreads();\n");
        emit_probs(b, &a, 1);
        cg_sb_printf(b, "        __syncthreads();\n");
        emit_own_loop(b, ATT_BKT, a.hd, "j", "        ");
        cg_sb_printf(b, "            float sv = dv[u], sk = dk[u];\n");
        cg_sb_printf(b, "            for (int r = 0; r < %d; r++) {\n", ATT_BQT);
        cg_sb_printf(b, "                sv = fmaf(Ps[r][j], dOs[r][d], sv);\n                sk = fmaf(dSs[r][j], Qs[r][d], sk);\n            }\n");
        cg_sb_printf(b, "            dv[u] = sv;\n            dk[u] = sk;\n        }\n    }\n");
        emit_own_loop(b, ATT_BKT, a.hd, "j", "    ");
        cg_sb_printf(b, "        const int kk = k0 + j;\n        if (kk >= %lld) continue;\n", N);
        cg_sb_printf(b, "        auto *row = dqkv + ((long long)bb * %lld + kk) * %lld + h * %lld + d;\n", N, (long long)a.D3, HD);
        snprintf(dst, sizeof dst, "dk[u] * %s", fl);
        cg_sb_printf(b, "        row[%lld] = %s;\n        row[%lld] = %s;\n    }\n", (long long)a.D, cg_st(s1, sizeof s1, a.t, dst),
                     (long long)(2 * a.D), cg_st(s2, sizeof s2, a.t, "dv[u]"));
        cg_finish(e, &l, a.B * a.H * tiles, ATT_THREADS);
    }
    /* dQ: a block per query tile */
    {
        int64_t tiles = (a.N + ATT_BQT - 1) / ATT_BQT, oe = (ATT_BQT * a.hd + ATT_THREADS - 1) / ATT_THREADS;
        launch l = {0};
        l.tag = "attention_bwd_dq";
        cg_att_bwd_params(e, &l, n, &a);
        sb *b = &l.body;
        bwd_shared(b, &a, 0);
        cg_att_head(b, &a, tiles);
        cg_sb_printf(b, "    const int q0 = tile * %d;\n    {\n", ATT_BQT);
        emit_tile_load(b, &a, "Qs", ATT_BQT, "q0", 0);
        cg_sb_printf(b, "        for (int e = tid; e < %lld; e += %d) {\n", (long long)(ATT_BQT * a.hd), ATT_THREADS);
        cg_sb_printf(b, "            const int r = e / %lld, d = e %% %lld, i = q0 + r;\n", HD, HD);
        snprintf(dst, sizeof dst, "dO[((long long)bb * %lld + i) * %lld + h * %lld + d]", N, (long long)a.D, HD);
        cg_sb_printf(b, "            dOs[r][d] = i < %lld ? %s : 0.0f;\n        }\n", N, cg_ld(s1, sizeof s1, a.t, dst));
        emit_row_terms(b, &a);
        cg_sb_printf(b, "    }\n    float dq[%lld];\n", (long long)oe);
        cg_sb_printf(b, "    DC_UNROLL for (int u = 0; u < %lld; u++) dq[u] = 0.0f;\n", (long long)oe);
        cg_sb_printf(b, "    for (int k0 = 0; k0 < %lld; k0 += %d) {\n        __syncthreads();\n", N, ATT_BKT);
        emit_tile_load(b, &a, "Ks", ATT_BKT, "k0", a.D);
        emit_tile_load(b, &a, "Vs", ATT_BKT, "k0", 2 * a.D);
        cg_sb_printf(b, "        __syncthreads();\n");
        emit_probs(b, &a, 0);
        cg_sb_printf(b, "        __syncthreads();\n");
        emit_own_loop(b, ATT_BQT, a.hd, "r", "        ");
        cg_sb_printf(b, "            float s = dq[u];\n");
        cg_sb_printf(b, "            for (int j = 0; j < %d; j++) s = fmaf(dSs[r][j], Ks[j][d], s);\n", ATT_BKT);
        cg_sb_printf(b, "            dq[u] = s;\n        }\n    }\n");
        emit_own_loop(b, ATT_BQT, a.hd, "r", "    ");
        cg_sb_printf(b, "        const int i = q0 + r;\n");
        snprintf(dst, sizeof dst, "dq[u] * %s", fl);
        cg_sb_printf(b, "        if (i < %lld) dqkv[((long long)bb * %lld + i) * %lld + h * %lld + d] = %s;\n    }\n", N, N,
                     (long long)a.D3, HD, cg_st(s1, sizeof s1, a.t, dst));
        cg_finish(e, &l, a.B * a.H * tiles, ATT_THREADS);
    }
    return 0;
}

int cg_attention_mma(const ir_graph *g, const ir_node *n) {
    att_dims a = cg_att_dims(g, n);
    return a.t != IR_F32 && a.hd % 16 == 0; /* tensor cores: f16/bf16 operands, k steps of 16 */
}

int cg_emit_attention(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = cg_att_dims(e->g, n);
    if (a.hd > 128) {
        snprintf(e->err, e->errsize, "codegen: node %%%d '%s': attention head dim %lld is above 128 (the fused "
                 "kernels' shared-memory tiles); compile with --fuse none", e->node, n->name ? n->name : "",
                 (long long)a.hd);
        return -1;
    }
    int mma = cg_attention_mma(e->g, n);
    if (n->op == IR_OP_ATTENTION_BWD) return mma ? cg_att_backward_mma(e) : emit_backward(e);
    return mma ? cg_att_forward_mma(e) : emit_forward(e);
}
