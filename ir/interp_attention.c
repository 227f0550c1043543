/* interp_attention.c: the interpreter's semantics of the fused attention ops, computed the
 * unfused way in double (what the chain qkv -> q, k, v -> scores -> softmax -> context means):
 *
 *   ATTENTION (qkv [B,N,3D]) -> O [B,N,D], LSE [B,H,N]: per batch b and head h, with
 *     q_i = qkv[b,i,h*hd + d], k_j = qkv[b,j,D + h*hd + d], v_j = qkv[b,j,2D + h*hd + d]:
 *     s_ij = scale * q_i . k_j;  m_i = max_j s_ij;  l_i = sum_j exp(s_ij - m_i)
 *     O[b,i,h*hd + d] = sum_j exp(s_ij - m_i) / l_i * v_j[d];  LSE[b,h,i] = m_i + log l_i
 *   ATTENTION_BWD (dO, qkv, O, LSE) -> dqkv [B,N,3D], from the forward's O and LSE as the
 *     kernels read them: P_ij = exp(s_ij - LSE_i); D_i = dO_i . O_i; dv_j = sum_i P_ij dO_i;
 *     dS_ij = P_ij (dO_i . v_j - D_i); dq_i = scale sum_j dS_ij k_j; dk_j = scale sum_i dS_ij q_i
 *
 * The caller (interp.c) rounds every output to its dtype. */
#include "ir/interp_par.h"
#include "ir/ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One fused attention op's operands and sizes, shared by the threads that run its heads. */
typedef struct {
    const ir_node *n;
    double *const *v;
    const double *qkv;
    double *out;
    int64_t B, N, D3, H;
} attention_job;

/* Heads [lo, hi) of the flattened (batch, head) range: each head reads and writes only its own
 * columns, and is computed the same way on whichever thread runs it. */
static void attention_heads(void *ctx, int64_t lo, int64_t hi) {
    const attention_job *job = ctx;
    const ir_node *n = job->n;
    double *const *v = job->v;
    const double *qkv = job->qkv;
    double *out = job->out;
    int bwd = n->op == IR_OP_ATTENTION_BWD;
    int64_t B = job->B, N = job->N, D3 = job->D3, D = D3 / 3, H = job->H, hd = D / H;
    double scale = n->attrs.alpha;
    double *s = malloc(sizeof(double) * (size_t)(N * N + hd) + 1);
    if (!s) abort();
    double *acc_o = s + N * N; /* one output row, accumulated over the keys in order */
    for (int64_t bh = lo; bh < hi; bh++) {
        int64_t b = bh / H, h = bh % H;
        const double *q = qkv + b * N * D3 + h * hd, *k = q + D, *vv = q + 2 * D;
        for (int64_t i = 0; i < N; i++) /* scores */
            for (int64_t j = 0; j < N; j++) {
                double acc = 0;
                for (int64_t d = 0; d < hd; d++) acc += q[i * D3 + d] * k[j * D3 + d];
                s[i * N + j] = scale * acc;
            }
        if (!bwd) {
            double *o = out + b * N * D + h * hd, *lse = out + B * N * D + (b * H + h) * N;
            for (int64_t i = 0; i < N; i++) {
                double m = -INFINITY, l = 0;
                for (int64_t j = 0; j < N; j++) m = s[i * N + j] > m ? s[i * N + j] : m;
                for (int64_t j = 0; j < N; j++) l += (s[i * N + j] = exp(s[i * N + j] - m));
                for (int64_t d = 0; d < hd; d++) acc_o[d] = 0;
                for (int64_t j = 0; j < N; j++) {
                    double p = s[i * N + j] / l;
                    for (int64_t d = 0; d < hd; d++) acc_o[d] += p * vv[j * D3 + d];
                }
                for (int64_t d = 0; d < hd; d++) o[i * D + d] = acc_o[d];
                lse[i] = m + log(l);
            }
            continue;
        }
        const double *dO = v[n->inputs[0]] + b * N * D + h * hd, *O = v[n->inputs[2]] + b * N * D + h * hd;
        const double *lse = v[n->inputs[3]] + (b * H + h) * N;
        double *dq = out + b * N * D3 + h * hd, *dk = dq + D, *dv = dq + 2 * D;
        for (int64_t i = 0; i < N; i++) {
            double Di = 0;
            for (int64_t d = 0; d < hd; d++) Di += dO[i * D + d] * O[i * D + d];
            for (int64_t j = 0; j < N; j++) {
                double p = exp(s[i * N + j] - lse[i]), dp = 0;
                for (int64_t d = 0; d < hd; d++) {
                    dp += dO[i * D + d] * vv[j * D3 + d];
                    dv[j * D3 + d] += p * dO[i * D + d];
                }
                double ds = p * (dp - Di);
                for (int64_t d = 0; d < hd; d++) {
                    dq[i * D3 + d] += scale * ds * k[j * D3 + d];
                    dk[j * D3 + d] += scale * ds * q[i * D3 + d];
                }
            }
        }
    }
    free(s);
}

void ir_interp_attention(const ir_graph *g, const ir_node *n, double *const *v, double *out) {
    int qkv_input = n->inputs[n->op == IR_OP_ATTENTION_BWD ? 1 : 0];
    const ir_node *qn = &g->nodes[qkv_input];
    attention_job job = {n, v, v[qkv_input], out, qn->shape[0], qn->shape[1], qn->shape[2], n->attrs.heads};
    if (n->op == IR_OP_ATTENTION_BWD) memset(out, 0, sizeof(double) * (size_t)(job.B * job.N * job.D3));
    /* a head is about 4 N^2 hd flops forward: one a range is plenty to spread */
    ir_par_for(job.B * job.H, 1, attention_heads, &job);
}
