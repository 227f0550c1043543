/* precision.c: the precision stage (--precision).
 *
 *   fp32  the graph as built: fp32 storage, true fp32 products (compute=32f)
 *   tf32  fp32 storage; every matmul with f32 operands gets compute=tf32: its operands are
 *         rounded to TF32 for the tensor cores, with fp32 accumulation (cuBLASLt's
 *         CUBLAS_COMPUTE_32F_FAST_TF32, recorded per GEMM in the plan; the emu's CPU GEMM and
 *         the interpreter round the operands the same way, nearest even). Everything else, the
 *         reductions and the optimizer included, stays fp32.
 *   fp16, bf16  the casting pass, not built yet: refused rather than built as fp32 under
 *         another name.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <string.h>

int pass_precision(ir_graph *g, const char *precision, char *err, size_t errsize) {
    if (!precision || strcmp(precision, "fp32") == 0) return 0;
    if (strcmp(precision, "tf32") == 0) {
        for (int i = 0; g && i < g->n; i++) {
            ir_node *n = &g->nodes[i];
            if (n->op == IR_OP_MATMUL && g->nodes[n->inputs[0]].dtype == IR_F32 &&
                g->nodes[n->inputs[1]].dtype == IR_F32)
                n->attrs.compute = IR_COMPUTE_TF32;
        }
        return 0;
    }
    if (strcmp(precision, "fp16") == 0 || strcmp(precision, "bf16") == 0)
        snprintf(err, errsize,
                 "--precision %s: not supported yet (the fp16/bf16 casting pass is still to come; "
                 "fp32 and tf32 are built)",
                 precision);
    else
        snprintf(err, errsize, "--precision %s: unknown (fp32, tf32; fp16 and bf16 to come)", precision);
    return -1;
}
