/* emit_attention.c: the attention family, the fused ops of the qkv-attention fusion:
 * attention (qkv [B,N,3D] -> O [B,N,D], LSE [B,H,N]) and attention_bwd (dO, qkv, O, LSE ->
 * dqkv [B,N,3D]). qkv is read in place (Q, K, V of head h at columns h*hd, D + h*hd,
 * 2D + h*hd of each row), O written with the heads merged, dqkv in qkv's layout: no permute,
 * slice or copy around them. Values load and store in the node's dtype (f32, f16, bf16);
 * every product and sum is an fp32 FMA (the fp32 variant: no tensor cores).
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
#include "codegen/emit_internal.h"

enum { ATT_THREADS = 128, ATT_QT = 16, ATT_KT = 32, ATT_BQT = 16, ATT_BKT = 16 };

typedef struct {
    int64_t B, N, H, hd, D, D3;
    double scale;
    ir_dtype t;
} att_dims;

static att_dims dims_of(const ir_graph *g, const ir_node *n) {
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

/* the block's (b, h, tile) and base = qkv at (b, row 0, head h) */
static void emit_head(sb *b, const att_dims *a, int64_t tiles) {
    cg_sb_printf(b, "    const int tid = threadIdx.x;\n");
    cg_sb_printf(b, "    const int tile = blockIdx.x %% %lld, bh = blockIdx.x / %lld;\n", (long long)tiles, (long long)tiles);
    cg_sb_printf(b, "    const int bb = bh / %lld, h = bh %% %lld;\n", (long long)a->H, (long long)a->H);
    cg_sb_printf(b, "    const auto *base = qkv + (long long)bb * %lld + h * %lld;\n", (long long)(a->N * a->D3), (long long)a->hd);
}

static int emit_forward(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = dims_of(e->g, n);
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
    emit_head(b, &a, tiles);
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

/* ---- forward on tensor cores (f16/bf16 operands, fp32 accumulators) -------------------------
 *
 * FlashAttention-2's forward with mma.sync m16n8k16 (dc_mma.cuh): a block of 4 warps per
 * (batch, head, tile of ATT_MQ = 64 queries), each warp 16 query rows whose Q fragments it
 * holds in registers (read from qkv in place, pairs of 16-bit values); K and V tiles of ATT_MK =
 * 64 keys staged in shared memory by cp.async (rows past N zero-filled), S = Q K^T by
 * ldmatrix_x2 of K, the online softmax on the S fragments (row max and sum over the 4 lanes of a
 * row by two xor shuffles), P rounded to the operand type and reused as the A fragment of P V
 * (V by ldmatrix_x2_trans). Work is skipped in steps of the mma shape: a warp whose 16 rows are
 * all past N computes nothing, and the last key tile computes only its ceil(valid / 8) key
 * blocks of S and ceil(valid / 16) steps of P V. Needs hd a multiple of 16 (else the FMA
 * kernel). */
enum { ATT_MQ = 64, ATT_MK = 64 };

static int emit_forward_mma(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = dims_of(e->g, n);
    long long HD = (long long)a.hd, N = (long long)a.N, D = (long long)a.D, D3 = (long long)a.D3;
    long long tiles = (a.N + ATT_MQ - 1) / ATT_MQ, KS = HD / 16, DB = HD / 8, HDP = HD + 8;
    int bf = a.t == IR_BF16;
    const char *T = bf ? "dc_bf16" : "dc_half", *T8 = bf ? "dc_bf16x8" : "dc_half8", *cvt = bf ? "dc_f2b" : "dc_f2h";
    const char *mma = bf ? "dc_mma_bf16" : "dc_mma_f16";
    char fl[64];
    launch l = {0};
    l.tag = "attention_mma";
    l.fibers = 1;
    param(&l, out_type(a.t), "o", off_of(e, e->node));
    param(&l, "float *", "lse", off_of(e, e->node) + pass_mem_output_offset(n, 1));
    param(&l, in_type(a.t), "qkv", off_of(e, n->inputs[0]));
    sb *b = &l.body;
    cg_sb_printf(b, "    __shared__ __align__(16) %s Ks[%d][%lld];\n    __shared__ __align__(16) %s Vs[%d][%lld];\n", T, ATT_MK,
                 HDP, T, ATT_MK, HDP);
    emit_head(b, &a, tiles);
    cg_sb_printf(b, "    const int lane = tid & 31, w = tid >> 5, g = lane >> 2, t = lane & 3;\n");
    cg_sb_printf(b, "    const int i0 = tile * %d + w * 16 + g, i1 = i0 + 8;\n", ATT_MQ);
    cg_sb_printf(b, "    const bool active = tile * %d + w * 16 < %lld; /* a warp with a row below N */\n", ATT_MQ, N);
    cg_sb_printf(b, "    %s z8;\n    DC_UNROLL for (int k = 0; k < 8; k++) z8.v[k] = %s(0.0f);\n", T8, cvt);
    /* Q fragments: A[g][2t, 2t+1], A[g+8][..], A[g][2t+8, ..], A[g+8][2t+8, ..] of each 16-wide k step */
    cg_sb_printf(b, "    unsigned qf[%lld][4];\n    DC_UNROLL for (int ks = 0; ks < %lld; ks++) {\n", KS, KS);
    cg_sb_printf(b, "        const int c = ks * 16 + 2 * t;\n");
    cg_sb_printf(b, "        const auto *r0 = base + (long long)i0 * %lld, *r1 = base + (long long)i1 * %lld;\n", D3, D3);
    cg_sb_printf(b, "        qf[ks][0] = i0 < %lld ? dc_pack2(r0[c].x, r0[c + 1].x) : 0u;\n", N);
    cg_sb_printf(b, "        qf[ks][1] = i1 < %lld ? dc_pack2(r1[c].x, r1[c + 1].x) : 0u;\n", N);
    cg_sb_printf(b, "        qf[ks][2] = i0 < %lld ? dc_pack2(r0[c + 8].x, r0[c + 9].x) : 0u;\n", N);
    cg_sb_printf(b, "        qf[ks][3] = i1 < %lld ? dc_pack2(r1[c + 8].x, r1[c + 9].x) : 0u;\n    }\n", N);
    cg_sb_printf(b, "    float oacc[%lld][4];\n    DC_UNROLL for (int db = 0; db < %lld; db++) oacc[db][0] = oacc[db][1] = "
                    "oacc[db][2] = oacc[db][3] = 0.0f;\n", DB, DB);
    cg_sb_printf(b, "    float m0 = -DC_INF, m1 = -DC_INF, l0 = 0.0f, l1 = 0.0f;\n");
    cg_sb_printf(b, "    for (int k0 = 0; k0 < %lld; k0 += %d) {\n", N, ATT_MK);
    /* K, V tile: 16-byte chunks */
    cg_sb_printf(b, "        for (int ch = tid; ch < %lld; ch += %d) {\n", (long long)ATT_MK * DB, ATT_THREADS);
    cg_sb_printf(b, "            const int r = ch / %lld, c = (ch %% %lld) * 8, key = k0 + r;\n", DB, DB);
    cg_sb_printf(b, "            if (key < %lld) {\n", N);
    cg_sb_printf(b, "                dc_cp_async16(&Ks[r][c], base + (long long)key * %lld + %lld + c);\n", D3, D);
    cg_sb_printf(b, "                dc_cp_async16(&Vs[r][c], base + (long long)key * %lld + %lld + c);\n", D3, 2 * D);
    cg_sb_printf(b, "            } else {\n                dc_store8(&Ks[r][c], z8);\n                dc_store8(&Vs[r][c], z8);\n            }\n        }\n");
    cg_sb_printf(b, "        dc_cp_async_commit();\n        dc_cp_async_wait<0>();\n        __syncthreads();\n");
    cg_sb_printf(b, "        const int kv = min(%lld - k0, %d), nbc = (kv + 7) >> 3, ksc = (kv + 15) >> 4;\n", N, ATT_MK);
    cg_sb_printf(b, "        if (active) {\n");
    cg_sb_printf(b, "            float s[%d][4];\n", ATT_MK / 8);
    cg_sb_printf(b, "            DC_UNROLL for (int nb = 0; nb < %d; nb++) {\n", ATT_MK / 8);
    cg_sb_printf(b, "                s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;\n");
    cg_sb_printf(b, "                if (nb >= nbc) continue;\n");
    cg_sb_printf(b, "                DC_UNROLL for (int ks = 0; ks < %lld; ks++) {\n", KS);
    cg_sb_printf(b, "                    unsigned kf[2];\n");
    cg_sb_printf(b, "                    dc_ldmatrix_x2(kf, &Ks[nb * 8 + (lane & 7)][ks * 16 + ((lane >> 3) & 1) * 8]);\n");
    cg_sb_printf(b, "                    %s(s[nb], qf[ks], kf, s[nb]);\n                }\n            }\n", mma);
    /* scale, mask, row max */
    cg_sb_printf(b, "            float mx0 = -DC_INF, mx1 = -DC_INF;\n");
    cg_sb_printf(b, "            DC_UNROLL for (int nb = 0; nb < %d; nb++)\n", ATT_MK / 8);
    cg_sb_printf(b, "                DC_UNROLL for (int q = 0; q < 4; q++) {\n");
    cg_sb_printf(b, "                    const int key = k0 + nb * 8 + 2 * t + (q & 1);\n");
    cg_sb_printf(b, "                    s[nb][q] = key < %lld ? s[nb][q] * %s : -DC_INF;\n", N, cg_flit(fl, sizeof fl, a.scale));
    cg_sb_printf(b, "                    if (q < 2) mx0 = fmaxf(mx0, s[nb][q]);\n                    else mx1 = fmaxf(mx1, s[nb][q]);\n                }\n");
    cg_sb_printf(b, "            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));\n");
    cg_sb_printf(b, "            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));\n");
    cg_sb_printf(b, "            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));\n");
    cg_sb_printf(b, "            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));\n");
    cg_sb_printf(b, "            const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);\n");
    cg_sb_printf(b, "            const float a0 = dc_exp(m0 - n0), a1 = dc_exp(m1 - n1);\n");
    cg_sb_printf(b, "            float sum0 = 0.0f, sum1 = 0.0f;\n");
    cg_sb_printf(b, "            DC_UNROLL for (int nb = 0; nb < %d; nb++)\n", ATT_MK / 8);
    cg_sb_printf(b, "                DC_UNROLL for (int q = 0; q < 4; q++) {\n");
    cg_sb_printf(b, "                    const float p = dc_exp(s[nb][q] - (q < 2 ? n0 : n1));\n");
    cg_sb_printf(b, "                    s[nb][q] = p;\n                    if (q < 2) sum0 += p;\n                    else sum1 += p;\n                }\n");
    cg_sb_printf(b, "            sum0 += __shfl_xor_sync(0xffffffffu, sum0, 1);\n            sum0 += __shfl_xor_sync(0xffffffffu, sum0, 2);\n");
    cg_sb_printf(b, "            sum1 += __shfl_xor_sync(0xffffffffu, sum1, 1);\n            sum1 += __shfl_xor_sync(0xffffffffu, sum1, 2);\n");
    cg_sb_printf(b, "            l0 = l0 * a0 + sum0;\n            l1 = l1 * a1 + sum1;\n            m0 = n0;\n            m1 = n1;\n");
    cg_sb_printf(b, "            DC_UNROLL for (int db = 0; db < %lld; db++) {\n", DB);
    cg_sb_printf(b, "                oacc[db][0] *= a0;\n                oacc[db][1] *= a0;\n                oacc[db][2] *= a1;\n                oacc[db][3] *= a1;\n            }\n");
    /* P V: P's C fragments of key blocks 2j, 2j+1 are the A fragment of keys 16j..16j+15 */
    cg_sb_printf(b, "            DC_UNROLL for (int j = 0; j < %d; j++) {\n", ATT_MK / 16);
    cg_sb_printf(b, "                if (j >= ksc) continue;\n");
    cg_sb_printf(b, "                unsigned pf[4];\n");
    cg_sb_printf(b, "                pf[0] = dc_pack2(%s(s[2 * j][0]).x, %s(s[2 * j][1]).x);\n", cvt, cvt);
    cg_sb_printf(b, "                pf[1] = dc_pack2(%s(s[2 * j][2]).x, %s(s[2 * j][3]).x);\n", cvt, cvt);
    cg_sb_printf(b, "                pf[2] = dc_pack2(%s(s[2 * j + 1][0]).x, %s(s[2 * j + 1][1]).x);\n", cvt, cvt);
    cg_sb_printf(b, "                pf[3] = dc_pack2(%s(s[2 * j + 1][2]).x, %s(s[2 * j + 1][3]).x);\n", cvt, cvt);
    cg_sb_printf(b, "                DC_UNROLL for (int db = 0; db < %lld; db++) {\n", DB);
    cg_sb_printf(b, "                    unsigned vf[2];\n");
    cg_sb_printf(b, "                    dc_ldmatrix_x2_trans(vf, &Vs[j * 16 + (lane & 15)][db * 8]);\n");
    cg_sb_printf(b, "                    %s(oacc[db], pf, vf, oacc[db]);\n                }\n            }\n        }\n", mma);
    cg_sb_printf(b, "        __syncthreads();\n    }\n");
    /* O rows i0, i1 (columns db*8 + 2t, +1), LSE from the lane of t = 0 */
    cg_sb_printf(b, "    const float r0 = 1.0f / l0, r1 = 1.0f / l1;\n");
    cg_sb_printf(b, "    DC_UNROLL for (int db = 0; db < %lld; db++) {\n", DB);
    cg_sb_printf(b, "        const int c = h * %lld + db * 8 + 2 * t;\n", HD);
    cg_sb_printf(b, "        if (i0 < %lld) {\n            auto *row = o + ((long long)bb * %lld + i0) * %lld + c;\n", N, N, D);
    cg_sb_printf(b, "            row[0] = %s(oacc[db][0] * r0);\n            row[1] = %s(oacc[db][1] * r0);\n        }\n", cvt, cvt);
    cg_sb_printf(b, "        if (i1 < %lld) {\n            auto *row = o + ((long long)bb * %lld + i1) * %lld + c;\n", N, N, D);
    cg_sb_printf(b, "            row[0] = %s(oacc[db][2] * r1);\n            row[1] = %s(oacc[db][3] * r1);\n        }\n    }\n", cvt, cvt);
    cg_sb_printf(b, "    if (t == 0 && i0 < %lld) lse[(long long)bh * %lld + i0] = m0 + logf(l0);\n", N, N);
    cg_sb_printf(b, "    if (t == 0 && i1 < %lld) lse[(long long)bh * %lld + i1] = m1 + logf(l1);\n", N, N);
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

static void bwd_params(emitter *e, launch *l, const ir_node *n, const att_dims *a) {
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
    att_dims a = dims_of(e->g, n);
    long long HD = (long long)a.hd, N = (long long)a.N;
    char fl[64], s1[256], s2[256], dst[192];
    cg_flit(fl, sizeof fl, a.scale);
    /* dK, dV: a block per key tile */
    {
        int64_t tiles = (a.N + ATT_BKT - 1) / ATT_BKT, oe = (ATT_BKT * a.hd + ATT_THREADS - 1) / ATT_THREADS;
        launch l = {0};
        l.tag = "attention_bwd_dkv";
        bwd_params(e, &l, n, &a);
        sb *b = &l.body;
        bwd_shared(b, &a, 1);
        emit_head(b, &a, tiles);
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
        bwd_params(e, &l, n, &a);
        sb *b = &l.body;
        bwd_shared(b, &a, 0);
        emit_head(b, &a, tiles);
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

/* ---- backward on tensor cores (f16/bf16, hd a multiple of 16) -------------------------------
 *
 * The FMA backward's two-kernel scheme with mma.sync: every warp owns 16 rows of what it
 * writes, so nothing is reduced across warps and every value of dqkv has one writer.
 *   _mma_dkv: a block of 4 warps per 64 keys (K, V in shared memory); warp w owns keys 16w..
 *             16w+15 and walks the queries 16 at a time (Q, dO tile in shared memory): S^T = K Q^T,
 *             dP^T = V dO^T, P^T = exp(S^T scale - LSE), dS^T = P^T (dP^T - D); dV += P^T dO,
 *             dK += dS^T Q (P^T, dS^T rounded to the operand type, reused as A fragments)
 *   _mma_dq:  a block of 4 warps per 64 queries; warp w holds its 16 rows of Q and dO as A
 *             fragments and walks the keys 32 at a time: S, dP, P, dS as above, dQ += dS K. */
enum { ATT_BMK = 64, ATT_BMQ = 16, ATT_DQK = 32 };

static int emit_backward_mma_dkv(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = dims_of(e->g, n);
    long long HD = (long long)a.hd, N = (long long)a.N, D = (long long)a.D, D3 = (long long)a.D3;
    long long tiles = (a.N + ATT_BMK - 1) / ATT_BMK, KS = HD / 16, DB = HD / 8, HDP = HD + 8;
    int bf = a.t == IR_BF16;
    const char *T = bf ? "dc_bf16" : "dc_half", *T8 = bf ? "dc_bf16x8" : "dc_half8", *cvt = bf ? "dc_f2b" : "dc_f2h";
    const char *mma = bf ? "dc_mma_bf16" : "dc_mma_f16";
    char fl[64], l1[160], l2[160], r1[200], r2[200];
    cg_flit(fl, sizeof fl, a.scale);
    launch l = {0};
    l.tag = "attention_bwd_mma_dkv";
    bwd_params(e, &l, n, &a);
    sb *b = &l.body;
    cg_sb_printf(b, "    __shared__ __align__(16) %s Ks[%d][%lld], Vs[%d][%lld];\n", T, ATT_BMK, HDP, ATT_BMK, HDP);
    cg_sb_printf(b, "    __shared__ __align__(16) %s Qs[%d][%lld], dOs[%d][%lld];\n", T, ATT_BMQ, HDP, ATT_BMQ, HDP);
    cg_sb_printf(b, "    __shared__ float lse_s[%d], D_s[%d];\n", ATT_BMQ, ATT_BMQ);
    emit_head(b, &a, tiles);
    cg_sb_printf(b, "    const int lane = tid & 31, w = tid >> 5, g = lane >> 2, t = lane & 3;\n");
    cg_sb_printf(b, "    const int k0 = tile * %d, kw = k0 + w * 16;\n", ATT_BMK);
    cg_sb_printf(b, "    const bool active = kw < %lld;\n", N);
    cg_sb_printf(b, "    const auto *dob = dO + (long long)bb * %lld + h * %lld;\n", N * D, HD);
    cg_sb_printf(b, "    %s z8;\n    DC_UNROLL for (int k = 0; k < 8; k++) z8.v[k] = %s(0.0f);\n", T8, cvt);
    cg_sb_printf(b, "    for (int ch = tid; ch < %lld; ch += %d) {\n", (long long)ATT_BMK * DB, ATT_THREADS);
    cg_sb_printf(b, "        const int r = ch / %lld, c = (ch %% %lld) * 8, key = k0 + r;\n", DB, DB);
    cg_sb_printf(b, "        if (key < %lld) {\n            dc_cp_async16(&Ks[r][c], base + (long long)key * %lld + %lld + c);\n", N, D3, D);
    cg_sb_printf(b, "            dc_cp_async16(&Vs[r][c], base + (long long)key * %lld + %lld + c);\n", D3, 2 * D);
    cg_sb_printf(b, "        } else {\n            dc_store8(&Ks[r][c], z8);\n            dc_store8(&Vs[r][c], z8);\n        }\n    }\n");
    cg_sb_printf(b, "    float dk[%lld][4], dv[%lld][4];\n", DB, DB);
    cg_sb_printf(b, "    DC_UNROLL for (int db = 0; db < %lld; db++)\n        DC_UNROLL for (int q = 0; q < 4; q++) dk[db][q] = dv[db][q] = 0.0f;\n", DB);
    cg_sb_printf(b, "    for (int q0 = 0; q0 < %lld; q0 += %d) {\n        __syncthreads();\n", N, ATT_BMQ);
    cg_sb_printf(b, "        for (int ch = tid; ch < %lld; ch += %d) {\n", (long long)ATT_BMQ * DB, ATT_THREADS);
    cg_sb_printf(b, "            const int r = ch / %lld, c = (ch %% %lld) * 8, i = q0 + r;\n", DB, DB);
    cg_sb_printf(b, "            if (i < %lld) {\n                dc_cp_async16(&Qs[r][c], base + (long long)i * %lld + c);\n", N, D3);
    cg_sb_printf(b, "                dc_cp_async16(&dOs[r][c], dob + (long long)i * %lld + c);\n", D);
    cg_sb_printf(b, "            } else {\n                dc_store8(&Qs[r][c], z8);\n                dc_store8(&dOs[r][c], z8);\n            }\n        }\n");
    snprintf(r1, sizeof r1, "dO[((long long)bb * %lld + i) * %lld + h * %lld + d]", N, D, HD);
    snprintf(r2, sizeof r2, "O[((long long)bb * %lld + i) * %lld + h * %lld + d]", N, D, HD);
    cg_sb_printf(b, "        if (tid < %d) {\n            const int i = q0 + tid;\n            float s = 0.0f;\n", ATT_BMQ);
    cg_sb_printf(b, "            if (i < %lld)\n                for (int d = 0; d < %lld; d++) s = fmaf(%s, %s, s);\n", N, HD,
                 cg_ld(l1, sizeof l1, a.t, r1), cg_ld(l2, sizeof l2, a.t, r2));
    cg_sb_printf(b, "            D_s[tid] = s;\n            lse_s[tid] = i < %lld ? lse[(long long)bh * %lld + i] : DC_INF;\n        }\n", N, N);
    cg_sb_printf(b, "        dc_cp_async_commit();\n        dc_cp_async_wait<0>();\n        __syncthreads();\n");
    cg_sb_printf(b, "        if (!active) continue;\n");
    /* S^T, dP^T: 16 keys x 16 queries (two 8-query blocks) */
    cg_sb_printf(b, "        float st[2][4], dpt[2][4];\n");
    cg_sb_printf(b, "        DC_UNROLL for (int nb = 0; nb < 2; nb++) {\n");
    cg_sb_printf(b, "            DC_UNROLL for (int q = 0; q < 4; q++) st[nb][q] = dpt[nb][q] = 0.0f;\n");
    cg_sb_printf(b, "            DC_UNROLL for (int ks = 0; ks < %lld; ks++) {\n", KS);
    cg_sb_printf(b, "                unsigned ka[4], va[4], qb[2], ob[2];\n");
    cg_sb_printf(b, "                dc_ldmatrix_x4(ka, &Ks[w * 16 + (lane & 15)][ks * 16 + (lane >> 4) * 8]);\n");
    cg_sb_printf(b, "                dc_ldmatrix_x4(va, &Vs[w * 16 + (lane & 15)][ks * 16 + (lane >> 4) * 8]);\n");
    cg_sb_printf(b, "                dc_ldmatrix_x2(qb, &Qs[nb * 8 + (lane & 7)][ks * 16 + ((lane >> 3) & 1) * 8]);\n");
    cg_sb_printf(b, "                dc_ldmatrix_x2(ob, &dOs[nb * 8 + (lane & 7)][ks * 16 + ((lane >> 3) & 1) * 8]);\n");
    cg_sb_printf(b, "                %s(st[nb], ka, qb, st[nb]);\n                %s(dpt[nb], va, ob, dpt[nb]);\n            }\n", mma, mma);
    cg_sb_printf(b, "            DC_UNROLL for (int q = 0; q < 4; q++) {\n");
    cg_sb_printf(b, "                const int c = nb * 8 + 2 * t + (q & 1); /* the query, in the tile */\n");
    cg_sb_printf(b, "                const float p = dc_exp(st[nb][q] * %s - lse_s[c]);\n", fl);
    cg_sb_printf(b, "                st[nb][q] = p;\n                dpt[nb][q] = p * (dpt[nb][q] - D_s[c]);\n            }\n        }\n");
    cg_sb_printf(b, "        unsigned pa[4], sa[4];\n");
    cg_sb_printf(b, "        pa[0] = dc_pack2(%s(st[0][0]).x, %s(st[0][1]).x);\n        pa[1] = dc_pack2(%s(st[0][2]).x, %s(st[0][3]).x);\n", cvt, cvt, cvt, cvt);
    cg_sb_printf(b, "        pa[2] = dc_pack2(%s(st[1][0]).x, %s(st[1][1]).x);\n        pa[3] = dc_pack2(%s(st[1][2]).x, %s(st[1][3]).x);\n", cvt, cvt, cvt, cvt);
    cg_sb_printf(b, "        sa[0] = dc_pack2(%s(dpt[0][0]).x, %s(dpt[0][1]).x);\n        sa[1] = dc_pack2(%s(dpt[0][2]).x, %s(dpt[0][3]).x);\n", cvt, cvt, cvt, cvt);
    cg_sb_printf(b, "        sa[2] = dc_pack2(%s(dpt[1][0]).x, %s(dpt[1][1]).x);\n        sa[3] = dc_pack2(%s(dpt[1][2]).x, %s(dpt[1][3]).x);\n", cvt, cvt, cvt, cvt);
    cg_sb_printf(b, "        DC_UNROLL for (int db = 0; db < %lld; db++) {\n", DB);
    cg_sb_printf(b, "            unsigned ob[2], qb[2];\n");
    cg_sb_printf(b, "            dc_ldmatrix_x2_trans(ob, &dOs[lane & 15][db * 8]);\n");
    cg_sb_printf(b, "            dc_ldmatrix_x2_trans(qb, &Qs[lane & 15][db * 8]);\n");
    cg_sb_printf(b, "            %s(dv[db], pa, ob, dv[db]);\n            %s(dk[db], sa, qb, dk[db]);\n        }\n    }\n", mma, mma);
    cg_sb_printf(b, "    DC_UNROLL for (int db = 0; db < %lld; db++) {\n", DB);
    cg_sb_printf(b, "        const int c = h * %lld + db * 8 + 2 * t;\n", HD);
    cg_sb_printf(b, "        DC_UNROLL for (int half = 0; half < 2; half++) {\n");
    cg_sb_printf(b, "            const int key = kw + g + 8 * half;\n            if (key >= %lld) continue;\n", N);
    cg_sb_printf(b, "            auto *row = dqkv + ((long long)bb * %lld + key) * %lld + c;\n", N, D3);
    cg_sb_printf(b, "            row[%lld] = %s(dk[db][2 * half] * %s);\n            row[%lld] = %s(dk[db][2 * half + 1] * %s);\n", D, cvt, fl,
                 D + 1, cvt, fl);
    cg_sb_printf(b, "            row[%lld] = %s(dv[db][2 * half]);\n            row[%lld] = %s(dv[db][2 * half + 1]);\n        }\n    }\n", 2 * D,
                 cvt, 2 * D + 1, cvt);
    cg_finish(e, &l, a.B * a.H * tiles, ATT_THREADS);
    return 0;
}

static int emit_backward_mma_dq(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = dims_of(e->g, n);
    long long HD = (long long)a.hd, N = (long long)a.N, D = (long long)a.D, D3 = (long long)a.D3;
    long long tiles = (a.N + ATT_MQ - 1) / ATT_MQ, KS = HD / 16, DB = HD / 8, HDP = HD + 8, NB = ATT_DQK / 8;
    int bf = a.t == IR_BF16;
    const char *T = bf ? "dc_bf16" : "dc_half", *T8 = bf ? "dc_bf16x8" : "dc_half8", *cvt = bf ? "dc_f2b" : "dc_f2h";
    const char *cv = bf ? "dc_b2f" : "dc_h2f", *mma = bf ? "dc_mma_bf16" : "dc_mma_f16";
    char fl[64];
    cg_flit(fl, sizeof fl, a.scale);
    launch l = {0};
    l.tag = "attention_bwd_mma_dq";
    bwd_params(e, &l, n, &a);
    sb *b = &l.body;
    cg_sb_printf(b, "    __shared__ __align__(16) %s Ks[%d][%lld], Vs[%d][%lld];\n", T, ATT_DQK, HDP, ATT_DQK, HDP);
    emit_head(b, &a, tiles);
    cg_sb_printf(b, "    const int lane = tid & 31, w = tid >> 5, g = lane >> 2, t = lane & 3;\n");
    cg_sb_printf(b, "    const int i0 = tile * %d + w * 16 + g, i1 = i0 + 8;\n", ATT_MQ);
    cg_sb_printf(b, "    const bool active = tile * %d + w * 16 < %lld;\n", ATT_MQ, N);
    cg_sb_printf(b, "    const auto *dob = dO + (long long)bb * %lld + h * %lld, *ob = O + (long long)bb * %lld + h * %lld;\n", N * D,
                 HD, N * D, HD);
    cg_sb_printf(b, "    %s z8;\n    DC_UNROLL for (int k = 0; k < 8; k++) z8.v[k] = %s(0.0f);\n", T8, cvt);
    /* Q and dO rows as A fragments; D and LSE of rows i0, i1 (D: 4 lanes of a row, shuffles) */
    cg_sb_printf(b, "    unsigned qf[%lld][4], of[%lld][4];\n", KS, KS);
    cg_sb_printf(b, "    DC_UNROLL for (int ks = 0; ks < %lld; ks++) {\n        const int c = ks * 16 + 2 * t;\n", KS);
    cg_sb_printf(b, "        const auto *r0 = base + (long long)i0 * %lld, *r1 = base + (long long)i1 * %lld;\n", D3, D3);
    cg_sb_printf(b, "        const auto *o0 = dob + (long long)i0 * %lld, *o1 = dob + (long long)i1 * %lld;\n", D, D);
    cg_sb_printf(b, "        qf[ks][0] = i0 < %lld ? dc_pack2(r0[c].x, r0[c + 1].x) : 0u;\n", N);
    cg_sb_printf(b, "        qf[ks][1] = i1 < %lld ? dc_pack2(r1[c].x, r1[c + 1].x) : 0u;\n", N);
    cg_sb_printf(b, "        qf[ks][2] = i0 < %lld ? dc_pack2(r0[c + 8].x, r0[c + 9].x) : 0u;\n", N);
    cg_sb_printf(b, "        qf[ks][3] = i1 < %lld ? dc_pack2(r1[c + 8].x, r1[c + 9].x) : 0u;\n", N);
    cg_sb_printf(b, "        of[ks][0] = i0 < %lld ? dc_pack2(o0[c].x, o0[c + 1].x) : 0u;\n", N);
    cg_sb_printf(b, "        of[ks][1] = i1 < %lld ? dc_pack2(o1[c].x, o1[c + 1].x) : 0u;\n", N);
    cg_sb_printf(b, "        of[ks][2] = i0 < %lld ? dc_pack2(o0[c + 8].x, o0[c + 9].x) : 0u;\n", N);
    cg_sb_printf(b, "        of[ks][3] = i1 < %lld ? dc_pack2(o1[c + 8].x, o1[c + 9].x) : 0u;\n    }\n", N);
    cg_sb_printf(b, "    float D0 = 0.0f, D1 = 0.0f;\n");
    cg_sb_printf(b, "    for (int d = t; d < %lld; d += 4) {\n", HD);
    cg_sb_printf(b, "        if (i0 < %lld) D0 = fmaf(%s(dob[(long long)i0 * %lld + d]), %s(ob[(long long)i0 * %lld + d]), D0);\n", N, cv, D, cv, D);
    cg_sb_printf(b, "        if (i1 < %lld) D1 = fmaf(%s(dob[(long long)i1 * %lld + d]), %s(ob[(long long)i1 * %lld + d]), D1);\n    }\n", N, cv, D, cv, D);
    cg_sb_printf(b, "    D0 += __shfl_xor_sync(0xffffffffu, D0, 1);\n    D0 += __shfl_xor_sync(0xffffffffu, D0, 2);\n");
    cg_sb_printf(b, "    D1 += __shfl_xor_sync(0xffffffffu, D1, 1);\n    D1 += __shfl_xor_sync(0xffffffffu, D1, 2);\n");
    cg_sb_printf(b, "    const float L0 = i0 < %lld ? lse[(long long)bh * %lld + i0] : DC_INF;\n", N, N);
    cg_sb_printf(b, "    const float L1 = i1 < %lld ? lse[(long long)bh * %lld + i1] : DC_INF;\n", N, N);
    cg_sb_printf(b, "    float dq[%lld][4];\n    DC_UNROLL for (int db = 0; db < %lld; db++)\n        DC_UNROLL for (int q = 0; q < 4; q++) dq[db][q] = 0.0f;\n", DB, DB);
    cg_sb_printf(b, "    for (int k0 = 0; k0 < %lld; k0 += %d) {\n        __syncthreads();\n", N, ATT_DQK);
    cg_sb_printf(b, "        for (int ch = tid; ch < %lld; ch += %d) {\n", (long long)ATT_DQK * DB, ATT_THREADS);
    cg_sb_printf(b, "            const int r = ch / %lld, c = (ch %% %lld) * 8, key = k0 + r;\n", DB, DB);
    cg_sb_printf(b, "            if (key < %lld) {\n                dc_cp_async16(&Ks[r][c], base + (long long)key * %lld + %lld + c);\n", N, D3, D);
    cg_sb_printf(b, "                dc_cp_async16(&Vs[r][c], base + (long long)key * %lld + %lld + c);\n", D3, 2 * D);
    cg_sb_printf(b, "            } else {\n                dc_store8(&Ks[r][c], z8);\n                dc_store8(&Vs[r][c], z8);\n            }\n        }\n");
    cg_sb_printf(b, "        dc_cp_async_commit();\n        dc_cp_async_wait<0>();\n        __syncthreads();\n");
    cg_sb_printf(b, "        if (!active) continue;\n");
    cg_sb_printf(b, "        float s[%lld][4], dp[%lld][4];\n", NB, NB);
    cg_sb_printf(b, "        DC_UNROLL for (int nb = 0; nb < %lld; nb++) {\n", NB);
    cg_sb_printf(b, "            DC_UNROLL for (int q = 0; q < 4; q++) s[nb][q] = dp[nb][q] = 0.0f;\n");
    cg_sb_printf(b, "            DC_UNROLL for (int ks = 0; ks < %lld; ks++) {\n", KS);
    cg_sb_printf(b, "                unsigned kb[2], vb[2];\n");
    cg_sb_printf(b, "                dc_ldmatrix_x2(kb, &Ks[nb * 8 + (lane & 7)][ks * 16 + ((lane >> 3) & 1) * 8]);\n");
    cg_sb_printf(b, "                dc_ldmatrix_x2(vb, &Vs[nb * 8 + (lane & 7)][ks * 16 + ((lane >> 3) & 1) * 8]);\n");
    cg_sb_printf(b, "                %s(s[nb], qf[ks], kb, s[nb]);\n                %s(dp[nb], of[ks], vb, dp[nb]);\n            }\n", mma, mma);
    cg_sb_printf(b, "            DC_UNROLL for (int q = 0; q < 4; q++) {\n");
    cg_sb_printf(b, "                const int key = k0 + nb * 8 + 2 * t + (q & 1);\n");
    cg_sb_printf(b, "                const float p = key < %lld ? dc_exp(s[nb][q] * %s - (q < 2 ? L0 : L1)) : 0.0f;\n", N, fl);
    cg_sb_printf(b, "                s[nb][q] = p * (dp[nb][q] - (q < 2 ? D0 : D1));\n            }\n        }\n");
    cg_sb_printf(b, "        DC_UNROLL for (int j = 0; j < %lld; j++) {\n", NB / 2);
    cg_sb_printf(b, "            unsigned sa[4];\n");
    cg_sb_printf(b, "            sa[0] = dc_pack2(%s(s[2 * j][0]).x, %s(s[2 * j][1]).x);\n", cvt, cvt);
    cg_sb_printf(b, "            sa[1] = dc_pack2(%s(s[2 * j][2]).x, %s(s[2 * j][3]).x);\n", cvt, cvt);
    cg_sb_printf(b, "            sa[2] = dc_pack2(%s(s[2 * j + 1][0]).x, %s(s[2 * j + 1][1]).x);\n", cvt, cvt);
    cg_sb_printf(b, "            sa[3] = dc_pack2(%s(s[2 * j + 1][2]).x, %s(s[2 * j + 1][3]).x);\n", cvt, cvt);
    cg_sb_printf(b, "            DC_UNROLL for (int db = 0; db < %lld; db++) {\n", DB);
    cg_sb_printf(b, "                unsigned kb[2];\n                dc_ldmatrix_x2_trans(kb, &Ks[j * 16 + (lane & 15)][db * 8]);\n");
    cg_sb_printf(b, "                %s(dq[db], sa, kb, dq[db]);\n            }\n        }\n    }\n", mma);
    cg_sb_printf(b, "    DC_UNROLL for (int db = 0; db < %lld; db++) {\n", DB);
    cg_sb_printf(b, "        const int c = h * %lld + db * 8 + 2 * t;\n", HD);
    cg_sb_printf(b, "        if (i0 < %lld) {\n            auto *row = dqkv + ((long long)bb * %lld + i0) * %lld + c;\n", N, N, D3);
    cg_sb_printf(b, "            row[0] = %s(dq[db][0] * %s);\n            row[1] = %s(dq[db][1] * %s);\n        }\n", cvt, fl, cvt, fl);
    cg_sb_printf(b, "        if (i1 < %lld) {\n            auto *row = dqkv + ((long long)bb * %lld + i1) * %lld + c;\n", N, N, D3);
    cg_sb_printf(b, "            row[0] = %s(dq[db][2] * %s);\n            row[1] = %s(dq[db][3] * %s);\n        }\n    }\n", cvt, fl, cvt, fl);
    cg_finish(e, &l, a.B * a.H * tiles, ATT_THREADS);
    return 0;
}

int cg_emit_attention(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = dims_of(e->g, n);
    if (a.hd > 128) {
        snprintf(e->err, e->errsize, "codegen: node %%%d '%s': attention head dim %lld is above 128 (the fused "
                 "kernels' shared-memory tiles); compile with --fuse none", e->node, n->name ? n->name : "",
                 (long long)a.hd);
        return -1;
    }
    int mma = a.t != IR_F32 && a.hd % 16 == 0; /* tensor cores: f16/bf16 operands, k steps of 16 */
    if (n->op == IR_OP_ATTENTION_BWD)
        return mma ? (emit_backward_mma_dkv(e) || emit_backward_mma_dq(e)) : emit_backward(e);
    return mma ? emit_forward_mma(e) : emit_forward(e);
}
