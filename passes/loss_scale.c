/* loss_scale.c: loss scaling in the training step (--loss-scale), GradScaler's semantics with
 * its state on the device, so that a captured step needs no host decision:
 *
 *   STATE loss_scaler f32[IR_SCALER_SLOTS] (initial value: the options; see ir.h's slots)
 *     -> SLICE [0,1) = the scale: the backward's seed (d(loss * scale) / d loss)
 *   SUM_SQUARES of every (scaled) gradient -> ss (shared with gradient clipping): NaN when one
 *     of them is inf or NaN (+inf only for a sum that overflows): the device-side overflow flag
 *   LOSS_SCALE_OPT(ss, opt, scaler) -> opt: GRAD_SCALE *= 1/scale (fp64, used as fp32), the bias
 *     corrections from the device's step count, SKIP when a gradient was not finite
 *   (CLIP_COEF on that opt: the norm of the unscaled gradients) -> every ADAMW
 *   LOSS_SCALE_UPDATE(scaler, ss), last: skip count, halve / grow the scale, step count.
 *
 * Without loss scaling (IR_LOSS_SCALE_NONE in the options) none of this exists: the graph is
 * what it was before loss scaling was built. An executable built with a scaler can still run
 * with mode none (scale 1, nothing skipped): bit for bit what the plain graph computes.
 */
#include "passes/passes.h"

#include <string.h>

const char *pass_loss_scale_default(const char *precision) {
    return precision && strcmp(precision, "fp16") == 0 ? "dynamic" : "none";
}

int pass_loss_scale_state(ir_graph *g, const pass_train_options *o, ir_loc loc) {
    int64_t slots[1] = {IR_SCALER_SLOTS};
    int sc = ir_leaf(g, IR_OP_STATE, IR_F32, 1, slots, "loss_scaler", loc);
    if (sc < 0) return -1;
    float *init = ir_arena_alloc(&g->arena, sizeof(float) * IR_SCALER_SLOTS);
    init[IR_SCALER_SCALE] = o->loss_scale == IR_LOSS_SCALE_NONE ? 1.0f
                            : o->loss_scale_init > 0           ? (float)o->loss_scale_init
                                                               : PASS_LOSS_SCALE_INIT;
    init[IR_SCALER_INTERVAL] = (float)(o->loss_scale_interval > 0 ? o->loss_scale_interval : PASS_LOSS_SCALE_INTERVAL);
    init[IR_SCALER_MODE] = (float)o->loss_scale;
    g->nodes[sc].data = init;
    return sc;
}

int pass_loss_scale_seed(ir_graph *g, int scaler, ir_loc loc) {
    ir_attrs a = {0};
    a.axis = 0, a.start = 0, a.end = 1;
    return ir_unary(g, IR_OP_SLICE, scaler, &a, "loss.seed", loc);
}
