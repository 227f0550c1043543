/* emit_attention.h: what the attention family's two files share (private to
 * codegen/emit_attention*.c): the node's sizes, the block prologue, the backward's parameters.
 *   emit_attention.c      the FMA kernels (fp32, and head dims not a multiple of 16) and the
 *                         dispatcher cg_emit_attention
 *   emit_attention_mma.c  the tensor-core kernels (f16/bf16, head dim a multiple of 16): the
 *                         forward with K/V resident in shared memory (short N) or streamed with
 *                         an online softmax, and the two backward kernels */
#ifndef DEITC_EMIT_ATTENTION_H
#define DEITC_EMIT_ATTENTION_H

#include "codegen/emit_internal.h"

enum { ATT_THREADS = 128 };

typedef struct {
    int64_t B, N, H, hd, D, D3;
    double scale;
    ir_dtype t;
} att_dims;

/* B, N, heads, head dim, D, 3D, scale and dtype of an attention or attention_bwd node */
att_dims cg_att_dims(const ir_graph *g, const ir_node *n);
/* the block's (b, h, tile) and base = qkv at (b, row 0, head h) */
void cg_att_head(sb *b, const att_dims *a, int64_t tiles);
/* attention_bwd's parameters: dqkv (out), dO, qkv, O, lse */
void cg_att_bwd_params(emitter *e, launch *l, const ir_node *n, const att_dims *a);

/* emit_attention_mma.c: the tensor-core forward (resident or online by N, hd) and backward */
int cg_att_forward_mma(emitter *e);
int cg_att_backward_mma(emitter *e);

#endif /* DEITC_EMIT_ATTENTION_H */
