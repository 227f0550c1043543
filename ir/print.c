/* print.c: the text form of a graph, printed by `deitc dump` after any pass.
 *
 * One line per node, in order:
 *   %12 = matmul(%10, %11) f32[4,17,192] trans_b alpha=0.125  blocks.0.attn.scores  @deit.yaml:14:9
 * Leaves print their role and name; outputs are marked with "-> name". A node with several
 * outputs prints each one's type, and a projection which one it takes:
 *   %20 = layer_norm_stats(%17, %18, %19) (f32[4,17,192], f32[4,17,1], f32[4,17,1]) eps=1e-06
 *   %21 = project(%20) f32[4,17,192] output=0
 * A node in a fusion group (the fusion pass) ends with "group=N", one in an elementwise chain
 * with "chain=N".
 */
#include "ir/ir.h"

static void print_attrs(const ir_node *n, FILE *out) {
    const ir_attrs *a = &n->attrs;
    switch (n->op) {
    case IR_OP_CONST:
    case IR_OP_SCALE:
    case IR_OP_CLIP_COEF:
        fprintf(out, " alpha=%g", a->alpha);
        break;
    case IR_OP_MATMUL:
        if (a->trans_a) fprintf(out, " trans_a");
        if (a->trans_b) fprintf(out, " trans_b");
        if (a->alpha != 1.0) fprintf(out, " alpha=%g", a->alpha);
        if (a->compute == IR_COMPUTE_TF32) fprintf(out, " compute=tf32");
        break;
    case IR_OP_PERMUTE:
        fprintf(out, " perm=(");
        for (int i = 0; i < n->ndim; i++) fprintf(out, "%s%lld", i ? "," : "", (long long)a->perm[i]);
        fprintf(out, ")");
        break;
    case IR_OP_CONCAT:
    case IR_OP_REDUCE_MEAN:
        fprintf(out, " axis=%lld", (long long)a->axis);
        break;
    case IR_OP_SLICE:
    case IR_OP_PAD:
        fprintf(out, " axis=%lld range=[%lld,%lld)", (long long)a->axis, (long long)a->start,
                (long long)a->end);
        break;
    case IR_OP_PATCHIFY:
    case IR_OP_UNPATCHIFY:
        fprintf(out, " patch=%lld", (long long)a->patch);
        break;
    case IR_OP_GELU:
    case IR_OP_GELU_GRAD:
        fprintf(out, " %s", a->gelu_tanh ? "tanh" : "erf");
        break;
    case IR_OP_LAYER_NORM:
    case IR_OP_LAYER_NORM_STATS:
    case IR_OP_LAYER_NORM_DX:
    case IR_OP_LAYER_NORM_DX_STATS:
    case IR_OP_LAYER_NORM_DGAMMA:
        fprintf(out, " eps=%g", a->eps);
        break;
    case IR_OP_ATTENTION:
    case IR_OP_ATTENTION_BWD:
        fprintf(out, " heads=%lld scale=%.9g", (long long)a->heads, a->alpha);
        break;
    case IR_OP_CROSS_ENTROPY:
    case IR_OP_CROSS_ENTROPY_GRAD:
        if (a->smoothing) fprintf(out, " smoothing=%g", a->smoothing);
        break;
    case IR_OP_LOSS_SCALE_OPT:
        fprintf(out, " beta1=%g beta2=%g", a->beta1, a->beta2);
        break;
    case IR_OP_ADAMW:
        fprintf(out, " betas=(%g,%g) eps=%g%s", a->beta1, a->beta2, a->eps, a->decay ? " decay" : "");
        break;
    case IR_OP_PROJECT:
        fprintf(out, " output=%d", a->output);
        break;
    default:
        break;
    }
}

void ir_print(const ir_graph *g, FILE *out) {
    char shape[96];
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        fprintf(out, "%%%d = %s", i, ir_op_name(n->op));
        if (n->ninputs) {
            fprintf(out, "(");
            for (int k = 0; k < n->ninputs; k++) fprintf(out, "%s%%%d", k ? ", " : "", n->inputs[k]);
            fprintf(out, ")");
        }
        int nout = ir_op_outputs(n->op);
        for (int k = 0; k < nout; k++) {
            ir_node o;
            ir_node_output(n, k, &o);
            fprintf(out, "%s%s%s%s", k ? ", " : nout > 1 ? " (" : " ", ir_dtype_name(o.dtype),
                    ir_shape_str(&o, shape, sizeof shape), k == nout - 1 && nout > 1 ? ")" : "");
        }
        print_attrs(n, out);
        if (n->group) fprintf(out, " group=%d", n->group);
        if (n->chain) fprintf(out, " chain=%d", n->chain);
        if (n->op == IR_OP_WEIGHT && n->flags & IR_NODE_TRAINABLE) fprintf(out, " trainable");
        if (n->name) fprintf(out, "%s%s", n->flags & IR_NODE_OUTPUT ? "  -> " : "  ", n->name);
        if (n->loc.file) fprintf(out, "  @%s:%d:%d", n->loc.file, n->loc.line, n->loc.col);
        fputc('\n', out);
    }
}
