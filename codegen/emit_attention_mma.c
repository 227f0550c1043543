/* emit_attention_mma.c: the attention family's tensor-core kernels (f16/bf16 operands through
 * dc_mma.cuh's mma.sync m16n8k16 and ldmatrix, fp32 accumulators; head dim a multiple of 16).
 *
 * Forward, FlashAttention-2 style: a block of 4 warps per (batch, head, tile of ATT_MQ = 64
 * queries), each warp 16 query rows whose Q fragments it holds in registers (read from qkv in
 * place, pairs of 16-bit values); S = Q K^T by ldmatrix_x2 of K, the row max and sum over the 4
 * lanes of a row by two xor shuffles, P rounded to the operand type and reused as the A fragment
 * of P V (V by ldmatrix_x2_trans). Two variants, chosen at emit time by N and hd
 * (cg_attention_kv_resident):
 *   attention_kv_resident  N <= ATT_RES_MAXN and K, V of the head (rows padded to 16, pitch
 *                          hd + 8) within ATT_RES_BYTES of dynamic shared memory: K and V loaded
 *                          once per block by cp.async (two groups: S starts while V lands), every
 *                          score of a warp's rows held in registers, so the softmax is exact in
 *                          one pass (row max over all keys, then exp and sum; no rescaling)
 *   attention_mma          longer N: K and V tiles of ATT_MK = 64 keys streamed through static
 *                          shared memory, the online softmax (running max and sum, O rescaled)
 * Work is skipped in steps of the mma shape: a warp whose 16 rows are all past N computes
 * nothing, and the last keys compute only ceil(valid / 8) key blocks of S and ceil(valid / 16)
 * steps of P V; key rows past N are zero-filled in shared memory and score -inf.
 *
 * Backward: the FMA backward's two-kernel scheme (emit_attention.c) with mma.sync: every warp
 * owns 16 rows of what it writes, so nothing is reduced across warps and every value of dqkv
 * has one writer.
 *   _mma_dkv: a block of 4 warps per 64 keys (K, V in shared memory); warp w owns keys 16w..
 *             16w+15 and walks the queries 16 at a time (Q, dO tile in shared memory): S^T = K Q^T,
 *             dP^T = V dO^T, P^T = exp(S^T scale - LSE), dS^T = P^T (dP^T - D); dV += P^T dO,
 *             dK += dS^T Q (P^T, dS^T rounded to the operand type, reused as A fragments)
 *   _mma_dq:  a block of 4 warps per 64 queries; warp w holds its 16 rows of Q and dO as A
 *             fragments and walks the keys 32 at a time: S, dP, P, dS as above, dQ += dS K. */
#include "codegen/emit_attention.h"

enum { ATT_MQ = 64, ATT_MK = 64, ATT_BMK = 64, ATT_BMQ = 16, ATT_DQK = 32 };
/* The resident bound: all of a warp's scores live in registers (4 floats per 8 keys: 128 at N
 * 256), and K + V at most 80 KB, so two blocks fit an SM's shared memory on sm_80 (164 KB) as
 * on sm_90 (228 KB); the registers (about 170 a thread) allow no more than two blocks anyway. */
enum { ATT_RES_MAXN = 256, ATT_RES_BYTES = 80 * 1024 };

static int64_t resident_rows(int64_t n) { return (n + 15) / 16 * 16; }
static int64_t resident_bytes(int64_t n, int64_t hd) { return 2 * resident_rows(n) * (hd + 8) * 2; }

int cg_attention_kv_resident(int64_t n, int64_t hd) {
    return n <= ATT_RES_MAXN && resident_bytes(n, hd) <= ATT_RES_BYTES;
}

typedef struct {
    const char *T, *T8, *cvt, *cv, *mma; /* element, 8-vector, float->T, T->float, mma call */
} mma_types;

static mma_types types_of(ir_dtype t) {
    int bf = t == IR_BF16;
    mma_types m = {bf ? "dc_bf16" : "dc_half", bf ? "dc_bf16x8" : "dc_half8", bf ? "dc_f2b" : "dc_f2h",
                   bf ? "dc_b2f" : "dc_h2f", bf ? "dc_mma_bf16" : "dc_mma_f16"};
    return m;
}

/* one line of kernel text at indent `in` */
static void ln(sb *b, const char *in, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ln(sb *b, const char *in, const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    cg_sb_printf(b, "%s%s\n", in, text);
}

/* the warp's lane, warp, group and thread in group; z8 = eight zeros of the operand type */
static void emit_warp_ids(sb *b) {
    cg_sb_printf(b, "    const int lane = tid & 31, w = tid >> 5, g = lane >> 2, t = lane & 3;\n");
}
static void emit_zero8(sb *b, const mma_types *m) {
    cg_sb_printf(b, "    %s z8;\n    DC_UNROLL for (int k = 0; k < 8; k++) z8.v[k] = %s(0.0f);\n", m->T8, m->cvt);
}

/* Inside a loop over ks with c = ks * 16 + 2 * t: the A fragment name[ks] of rows i0 (from
 * row pointer p0) and i1 (p1), zero past N: A[g][2t, 2t+1], A[g+8][..], A[g][2t+8, ..], A[g+8][2t+8, ..] */
static void emit_a_frag(sb *b, const char *name, const char *p0, const char *p1, long long N) {
    cg_sb_printf(b, "        %s[ks][0] = i0 < %lld ? dc_pack2(%s[c].x, %s[c + 1].x) : 0u;\n", name, N, p0, p0);
    cg_sb_printf(b, "        %s[ks][1] = i1 < %lld ? dc_pack2(%s[c].x, %s[c + 1].x) : 0u;\n", name, N, p1, p1);
    cg_sb_printf(b, "        %s[ks][2] = i0 < %lld ? dc_pack2(%s[c + 8].x, %s[c + 9].x) : 0u;\n", name, N, p0, p0);
    cg_sb_printf(b, "        %s[ks][3] = i1 < %lld ? dc_pack2(%s[c + 8].x, %s[c + 9].x) : 0u;\n", name, N, p1, p1);
}

/* cp.async of `rows` rows of hd 16-bit values into the shared arrays dst[k][r][c] from the
 * global rows src[k] (an expression of `var` and c), 16 bytes a copy; rows past N zero-filled.
 * var = start + r (start NULL: var = r). */
static void emit_chunks(sb *b, const char *in, long long rows, long long DB, const char *var, const char *start,
                        long long N, int n, const char *const dst[], const char *const src[]) {
    ln(b, in, "for (int ch = tid; ch < %lld; ch += %d) {", rows * DB, ATT_THREADS);
    if (start) ln(b, in, "    const int r = ch / %lld, c = (ch %% %lld) * 8, %s = %s + r;", DB, DB, var, start);
    else ln(b, in, "    const int r = ch / %lld, c = (ch %% %lld) * 8, %s = r;", DB, DB, var);
    ln(b, in, "    if (%s < %lld) {", var, N);
    for (int k = 0; k < n; k++) ln(b, in, "        dc_cp_async16(&%s[r][c], %s);", dst[k], src[k]);
    ln(b, in, "    } else {");
    for (int k = 0; k < n; k++) ln(b, in, "        dc_store8(&%s[r][c], z8);", dst[k]);
    ln(b, in, "    }");
    ln(b, in, "}");
}

/* K and V rows of keys var (= start + r) of the head: the two sources for emit_chunks */
static void kv_sources(char ks[96], char vs[96], const att_dims *a, const char *var) {
    snprintf(ks, 96, "base + (long long)%s * %lld + %lld + c", var, (long long)a->D3, (long long)a->D);
    snprintf(vs, 96, "base + (long long)%s * %lld + %lld + c", var, (long long)a->D3, (long long)(2 * a->D));
}

/* Rows i0 and i1 of the warp (columns h*hd + db*8 + 2t, +1) from the accumulators acc[db]
 * times s0 (row i0), s1 (row i1), into dst rows of `stride` values, as the operand type. */
static void emit_rows_store(sb *b, const att_dims *a, const mma_types *m, const char *dst, long long stride,
                            const char *acc, const char *s0, const char *s1) {
    long long N = (long long)a->N, DB = (long long)a->hd / 8;
    cg_sb_printf(b, "    DC_UNROLL for (int db = 0; db < %lld; db++) {\n", DB);
    cg_sb_printf(b, "        const int c = h * %lld + db * 8 + 2 * t;\n", (long long)a->hd);
    cg_sb_printf(b, "        if (i0 < %lld) {\n            auto *row = %s + ((long long)bb * %lld + i0) * %lld + c;\n", N, dst, N, stride);
    cg_sb_printf(b, "            row[0] = %s(%s[db][0] * %s);\n            row[1] = %s(%s[db][1] * %s);\n        }\n", m->cvt, acc, s0,
                 m->cvt, acc, s0);
    cg_sb_printf(b, "        if (i1 < %lld) {\n            auto *row = %s + ((long long)bb * %lld + i1) * %lld + c;\n", N, dst, N, stride);
    cg_sb_printf(b, "            row[0] = %s(%s[db][2] * %s);\n            row[1] = %s(%s[db][3] * %s);\n        }\n    }\n", m->cvt,
                 acc, s1, m->cvt, acc, s1);
}

/* Inside a loop over j: the A fragment name[4] of keys 16j..16j+15 from the C fragments
 * src[2j], src[2j+1] (rounded to the operand type) */
static void emit_pack_a(sb *b, const char *in, const mma_types *m, const char *name, const char *src) {
    ln(b, in, "%s[0] = dc_pack2(%s(%s[2 * j][0]).x, %s(%s[2 * j][1]).x);", name, m->cvt, src, m->cvt, src);
    ln(b, in, "%s[1] = dc_pack2(%s(%s[2 * j][2]).x, %s(%s[2 * j][3]).x);", name, m->cvt, src, m->cvt, src);
    ln(b, in, "%s[2] = dc_pack2(%s(%s[2 * j + 1][0]).x, %s(%s[2 * j + 1][1]).x);", name, m->cvt, src, m->cvt, src);
    ln(b, in, "%s[3] = dc_pack2(%s(%s[2 * j + 1][2]).x, %s(%s[2 * j + 1][3]).x);", name, m->cvt, src, m->cvt, src);
}

/* ---- forward ---------------------------------------------------------------------------- */

/* S = Q K^T of `nbs` key blocks of 8 (those from nbc on left 0), scaled, keys past N -inf
 * (key = k0 + nb * 8 + ..., k0 "" for 0), and the rows' max mx0, mx1 over the 4 lanes */
static void emit_scores(sb *b, const char *in, const att_dims *a, const mma_types *m, long long nbs, const char *nbc,
                        const char *k0) {
    char fl[64];
    ln(b, in, "DC_UNROLL for (int nb = 0; nb < %lld; nb++) {", nbs);
    ln(b, in, "    s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.0f;");
    if (nbc) ln(b, in, "    if (nb >= %s) continue;", nbc);
    ln(b, in, "    DC_UNROLL for (int ks = 0; ks < %lld; ks++) {", (long long)a->hd / 16);
    ln(b, in, "        unsigned kf[2];");
    ln(b, in, "        dc_ldmatrix_x2(kf, &Ks[nb * 8 + (lane & 7)][ks * 16 + ((lane >> 3) & 1) * 8]);");
    ln(b, in, "        %s(s[nb], qf[ks], kf, s[nb]);", m->mma);
    ln(b, in, "    }");
    ln(b, in, "}");
    ln(b, in, "float mx0 = -DC_INF, mx1 = -DC_INF;");
    ln(b, in, "DC_UNROLL for (int nb = 0; nb < %lld; nb++)", nbs);
    ln(b, in, "    DC_UNROLL for (int q = 0; q < 4; q++) {");
    ln(b, in, "        const int key = %snb * 8 + 2 * t + (q & 1);", k0);
    ln(b, in, "        s[nb][q] = key < %lld ? s[nb][q] * %s : -DC_INF;", (long long)a->N, cg_flit(fl, sizeof fl, a->scale));
    ln(b, in, "        if (q < 2) mx0 = fmaxf(mx0, s[nb][q]);");
    ln(b, in, "        else mx1 = fmaxf(mx1, s[nb][q]);");
    ln(b, in, "    }");
    for (int r = 0; r < 2; r++)
        for (int x = 1; x <= 2; x++) ln(b, in, "mx%d = fmaxf(mx%d, __shfl_xor_sync(0xffffffffu, mx%d, %d));", r, r, r, x);
}

/* s[nb][q] = exp(s - n) of the rows' maxima n0, n1; their sums sum0, sum1 over the 4 lanes */
static void emit_exp_sum(sb *b, const char *in, long long nbs) {
    ln(b, in, "float sum0 = 0.0f, sum1 = 0.0f;");
    ln(b, in, "DC_UNROLL for (int nb = 0; nb < %lld; nb++)", nbs);
    ln(b, in, "    DC_UNROLL for (int q = 0; q < 4; q++) {");
    ln(b, in, "        const float p = dc_exp(s[nb][q] - (q < 2 ? n0 : n1));");
    ln(b, in, "        s[nb][q] = p;");
    ln(b, in, "        if (q < 2) sum0 += p;");
    ln(b, in, "        else sum1 += p;");
    ln(b, in, "    }");
    for (int r = 0; r < 2; r++)
        for (int x = 1; x <= 2; x++) ln(b, in, "sum%d += __shfl_xor_sync(0xffffffffu, sum%d, %d);", r, r, x);
}

/* oacc += P V over `steps` steps of 16 keys (those from ksc on skipped; ksc NULL: none) */
static void emit_pv(sb *b, const char *in, const att_dims *a, const mma_types *m, long long steps, const char *ksc) {
    char in2[32];
    snprintf(in2, sizeof in2, "%s    ", in);
    ln(b, in, "DC_UNROLL for (int j = 0; j < %lld; j++) {", steps);
    if (ksc) ln(b, in, "    if (j >= %s) continue;", ksc);
    ln(b, in, "    unsigned pf[4];");
    emit_pack_a(b, in2, m, "pf", "s");
    ln(b, in, "    DC_UNROLL for (int db = 0; db < %lld; db++) {", (long long)a->hd / 8);
    ln(b, in, "        unsigned vf[2];");
    ln(b, in, "        dc_ldmatrix_x2_trans(vf, &Vs[j * 16 + (lane & 15)][db * 8]);");
    ln(b, in, "        %s(oacc[db], pf, vf, oacc[db]);", m->mma);
    ln(b, in, "    }");
    ln(b, in, "}");
}

int cg_att_forward_mma(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = cg_att_dims(e->g, n);
    long long HD = (long long)a.hd, N = (long long)a.N, D = (long long)a.D, D3 = (long long)a.D3;
    long long tiles = (a.N + ATT_MQ - 1) / ATT_MQ, KS = HD / 16, DB = HD / 8, HDP = HD + 8;
    int resident = cg_attention_kv_resident(a.N, a.hd);
    long long NP = (long long)resident_rows(a.N), NB = NP / 8;
    mma_types m = types_of(a.t);
    char ksrc[96], vsrc[96], nbc[32];
    launch l = {0};
    l.tag = resident ? "attention_kv_resident" : "attention_mma";
    l.fibers = 1;
    param(&l, out_type(a.t), "o", off_of(e, e->node));
    param(&l, "float *", "lse", off_of(e, e->node) + pass_mem_output_offset(n, 1));
    param(&l, in_type(a.t), "qkv", off_of(e, n->inputs[0]));
    sb *b = &l.body;
    if (resident) {
        l.dyn_shared = (unsigned)resident_bytes(a.N, a.hd);
        cg_sb_printf(b, "    DC_DYNAMIC_SHARED(%s, kv_smem); /* K then V: %lld rows of pitch %lld each */\n", m.T, NP, HDP);
        cg_sb_printf(b, "    %s (*Ks)[%lld] = reinterpret_cast<%s (*)[%lld]>(kv_smem), (*Vs)[%lld] = Ks + %lld;\n", m.T, HDP, m.T,
                     HDP, HDP, NP);
    } else {
        cg_sb_printf(b, "    __shared__ __align__(16) %s Ks[%d][%lld];\n    __shared__ __align__(16) %s Vs[%d][%lld];\n", m.T,
                     ATT_MK, HDP, m.T, ATT_MK, HDP);
    }
    cg_att_head(b, &a, tiles);
    emit_warp_ids(b);
    cg_sb_printf(b, "    const int i0 = tile * %d + w * 16 + g, i1 = i0 + 8;\n", ATT_MQ);
    cg_sb_printf(b, "    const bool active = tile * %d + w * 16 < %lld; /* a warp with a row below N */\n", ATT_MQ, N);
    emit_zero8(b, &m);
    if (resident) { /* K and V of every key in flight while Q is read */
        kv_sources(ksrc, vsrc, &a, "key");
        emit_chunks(b, "    ", NP, DB, "key", NULL, N, 1, (const char *[]){"Ks"}, (const char *[]){ksrc});
        cg_sb_printf(b, "    dc_cp_async_commit();\n");
        emit_chunks(b, "    ", NP, DB, "key", NULL, N, 1, (const char *[]){"Vs"}, (const char *[]){vsrc});
        cg_sb_printf(b, "    dc_cp_async_commit();\n");
    }
    cg_sb_printf(b, "    unsigned qf[%lld][4];\n    DC_UNROLL for (int ks = 0; ks < %lld; ks++) {\n", KS, KS);
    cg_sb_printf(b, "        const int c = ks * 16 + 2 * t;\n");
    cg_sb_printf(b, "        const auto *r0 = base + (long long)i0 * %lld, *r1 = base + (long long)i1 * %lld;\n", D3, D3);
    emit_a_frag(b, "qf", "r0", "r1", N);
    cg_sb_printf(b, "    }\n");
    cg_sb_printf(b, "    float oacc[%lld][4];\n    DC_UNROLL for (int db = 0; db < %lld; db++) oacc[db][0] = oacc[db][1] = "
                    "oacc[db][2] = oacc[db][3] = 0.0f;\n", DB, DB);
    cg_sb_printf(b, "    float m0 = -DC_INF, m1 = -DC_INF, l0 = 0.0f, l1 = 0.0f;\n");
    if (resident) {
        /* scores of all keys (K landed), exact softmax; then P V (V landed) */
        const char *in = "        ";
        snprintf(nbc, sizeof nbc, "%lld", (N + 7) / 8);
        cg_sb_printf(b, "    dc_cp_async_wait<1>();\n    __syncthreads();\n");
        cg_sb_printf(b, "    float s[%lld][4];\n    if (active) {\n", NB);
        emit_scores(b, in, &a, &m, NB, NB > (N + 7) / 8 ? nbc : NULL, "");
        ln(b, in, "const float n0 = mx0, n1 = mx1;");
        emit_exp_sum(b, in, NB);
        ln(b, in, "l0 = sum0;");
        ln(b, in, "l1 = sum1;");
        ln(b, in, "m0 = n0;");
        ln(b, in, "m1 = n1;");
        cg_sb_printf(b, "    }\n    dc_cp_async_wait<0>();\n    __syncthreads();\n    if (active) {\n");
        emit_pv(b, in, &a, &m, NP / 16, NULL);
        cg_sb_printf(b, "    }\n");
    } else {
        const char *in = "            ";
        cg_sb_printf(b, "    for (int k0 = 0; k0 < %lld; k0 += %d) {\n", N, ATT_MK);
        kv_sources(ksrc, vsrc, &a, "key");
        emit_chunks(b, "        ", ATT_MK, DB, "key", "k0", N, 2, (const char *[]){"Ks", "Vs"}, (const char *[]){ksrc, vsrc});
        cg_sb_printf(b, "        dc_cp_async_commit();\n        dc_cp_async_wait<0>();\n        __syncthreads();\n");
        cg_sb_printf(b, "        const int kv = min(%lld - k0, %d), nbc = (kv + 7) >> 3, ksc = (kv + 15) >> 4;\n", N, ATT_MK);
        cg_sb_printf(b, "        if (active) {\n");
        ln(b, in, "float s[%d][4];", ATT_MK / 8);
        emit_scores(b, in, &a, &m, ATT_MK / 8, "nbc", "k0 + ");
        ln(b, in, "const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);");
        ln(b, in, "const float a0 = dc_exp(m0 - n0), a1 = dc_exp(m1 - n1);");
        emit_exp_sum(b, in, ATT_MK / 8);
        ln(b, in, "l0 = l0 * a0 + sum0;");
        ln(b, in, "l1 = l1 * a1 + sum1;");
        ln(b, in, "m0 = n0;");
        ln(b, in, "m1 = n1;");
        ln(b, in, "DC_UNROLL for (int db = 0; db < %lld; db++) {", DB);
        ln(b, in, "    oacc[db][0] *= a0;");
        ln(b, in, "    oacc[db][1] *= a0;");
        ln(b, in, "    oacc[db][2] *= a1;");
        ln(b, in, "    oacc[db][3] *= a1;");
        ln(b, in, "}");
        /* P V: P's C fragments of key blocks 2j, 2j+1 are the A fragment of keys 16j..16j+15 */
        emit_pv(b, in, &a, &m, ATT_MK / 16, "ksc");
        cg_sb_printf(b, "        }\n        __syncthreads();\n    }\n");
    }
    /* O rows i0, i1 (columns db*8 + 2t, +1), LSE from the lane of t = 0 */
    cg_sb_printf(b, "    const float r0 = 1.0f / l0, r1 = 1.0f / l1;\n");
    emit_rows_store(b, &a, &m, "o", D, "oacc", "r0", "r1");
    cg_sb_printf(b, "    if (t == 0 && i0 < %lld) lse[(long long)bh * %lld + i0] = m0 + logf(l0);\n", N, N);
    cg_sb_printf(b, "    if (t == 0 && i1 < %lld) lse[(long long)bh * %lld + i1] = m1 + logf(l1);\n", N, N);
    cg_finish(e, &l, a.B * a.H * tiles, ATT_THREADS);
    return 0;
}

/* ---- backward ------------------------------------------------------------------------------ */

static int backward_dkv(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = cg_att_dims(e->g, n);
    long long HD = (long long)a.hd, N = (long long)a.N, D = (long long)a.D, D3 = (long long)a.D3;
    long long tiles = (a.N + ATT_BMK - 1) / ATT_BMK, KS = HD / 16, DB = HD / 8, HDP = HD + 8;
    mma_types m = types_of(a.t);
    const char *T = m.T, *cvt = m.cvt, *mma = m.mma;
    char fl[64], l1[160], l2[160], r1[200], r2[200], ksrc[96], vsrc[96], qsrc[96], osrc[96];
    cg_flit(fl, sizeof fl, a.scale);
    launch l = {0};
    l.tag = "attention_bwd_mma_dkv";
    cg_att_bwd_params(e, &l, n, &a);
    sb *b = &l.body;
    cg_sb_printf(b, "    __shared__ __align__(16) %s Ks[%d][%lld], Vs[%d][%lld];\n", T, ATT_BMK, HDP, ATT_BMK, HDP);
    cg_sb_printf(b, "    __shared__ __align__(16) %s Qs[%d][%lld], dOs[%d][%lld];\n", T, ATT_BMQ, HDP, ATT_BMQ, HDP);
    cg_sb_printf(b, "    __shared__ float lse_s[%d], D_s[%d];\n", ATT_BMQ, ATT_BMQ);
    cg_att_head(b, &a, tiles);
    emit_warp_ids(b);
    cg_sb_printf(b, "    const int k0 = tile * %d, kw = k0 + w * 16;\n", ATT_BMK);
    cg_sb_printf(b, "    const bool active = kw < %lld;\n", N);
    cg_sb_printf(b, "    const auto *dob = dO + (long long)bb * %lld + h * %lld;\n", N * D, HD);
    emit_zero8(b, &m);
    kv_sources(ksrc, vsrc, &a, "key");
    emit_chunks(b, "    ", ATT_BMK, DB, "key", "k0", N, 2, (const char *[]){"Ks", "Vs"}, (const char *[]){ksrc, vsrc});
    cg_sb_printf(b, "    float dk[%lld][4], dv[%lld][4];\n", DB, DB);
    cg_sb_printf(b, "    DC_UNROLL for (int db = 0; db < %lld; db++)\n        DC_UNROLL for (int q = 0; q < 4; q++) dk[db][q] = dv[db][q] = 0.0f;\n", DB);
    cg_sb_printf(b, "    for (int q0 = 0; q0 < %lld; q0 += %d) {\n        __syncthreads();\n", N, ATT_BMQ);
    snprintf(qsrc, sizeof qsrc, "base + (long long)i * %lld + c", D3);
    snprintf(osrc, sizeof osrc, "dob + (long long)i * %lld + c", D);
    emit_chunks(b, "        ", ATT_BMQ, DB, "i", "q0", N, 2, (const char *[]){"Qs", "dOs"}, (const char *[]){qsrc, osrc});
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

static int backward_dq(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    att_dims a = cg_att_dims(e->g, n);
    long long HD = (long long)a.hd, N = (long long)a.N, D = (long long)a.D, D3 = (long long)a.D3;
    long long tiles = (a.N + ATT_MQ - 1) / ATT_MQ, KS = HD / 16, DB = HD / 8, HDP = HD + 8, NB = ATT_DQK / 8;
    mma_types m = types_of(a.t);
    const char *T = m.T, *cv = m.cv, *mma = m.mma;
    char fl[64], ksrc[96], vsrc[96];
    cg_flit(fl, sizeof fl, a.scale);
    launch l = {0};
    l.tag = "attention_bwd_mma_dq";
    cg_att_bwd_params(e, &l, n, &a);
    sb *b = &l.body;
    cg_sb_printf(b, "    __shared__ __align__(16) %s Ks[%d][%lld], Vs[%d][%lld];\n", T, ATT_DQK, HDP, ATT_DQK, HDP);
    cg_att_head(b, &a, tiles);
    emit_warp_ids(b);
    cg_sb_printf(b, "    const int i0 = tile * %d + w * 16 + g, i1 = i0 + 8;\n", ATT_MQ);
    cg_sb_printf(b, "    const bool active = tile * %d + w * 16 < %lld;\n", ATT_MQ, N);
    cg_sb_printf(b, "    const auto *dob = dO + (long long)bb * %lld + h * %lld, *ob = O + (long long)bb * %lld + h * %lld;\n", N * D,
                 HD, N * D, HD);
    emit_zero8(b, &m);
    /* Q and dO rows as A fragments; D and LSE of rows i0, i1 (D: 4 lanes of a row, shuffles) */
    cg_sb_printf(b, "    unsigned qf[%lld][4], of[%lld][4];\n", KS, KS);
    cg_sb_printf(b, "    DC_UNROLL for (int ks = 0; ks < %lld; ks++) {\n        const int c = ks * 16 + 2 * t;\n", KS);
    cg_sb_printf(b, "        const auto *r0 = base + (long long)i0 * %lld, *r1 = base + (long long)i1 * %lld;\n", D3, D3);
    cg_sb_printf(b, "        const auto *o0 = dob + (long long)i0 * %lld, *o1 = dob + (long long)i1 * %lld;\n", D, D);
    emit_a_frag(b, "qf", "r0", "r1", N);
    emit_a_frag(b, "of", "o0", "o1", N);
    cg_sb_printf(b, "    }\n");
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
    kv_sources(ksrc, vsrc, &a, "key");
    emit_chunks(b, "        ", ATT_DQK, DB, "key", "k0", N, 2, (const char *[]){"Ks", "Vs"}, (const char *[]){ksrc, vsrc});
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
    emit_pack_a(b, "            ", &m, "sa", "s");
    cg_sb_printf(b, "            DC_UNROLL for (int db = 0; db < %lld; db++) {\n", DB);
    cg_sb_printf(b, "                unsigned kb[2];\n                dc_ldmatrix_x2_trans(kb, &Ks[j * 16 + (lane & 15)][db * 8]);\n");
    cg_sb_printf(b, "                %s(dq[db], sa, kb, dq[db]);\n            }\n        }\n    }\n", mma);
    emit_rows_store(b, &a, &m, "dqkv", D3, "dq", fl, fl);
    cg_finish(e, &l, a.B * a.H * tiles, ATT_THREADS);
    return 0;
}


int cg_att_backward_mma(emitter *e) { return backward_dkv(e) || backward_dq(e); }
