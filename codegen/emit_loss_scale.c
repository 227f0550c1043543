/* emit_loss_scale.c: the loss scaler's two kernels (passes/loss_scale.c builds the nodes; the
 * interpreter's run_loss_scale_* say what they compute, in the same float arithmetic):
 *   loss_scale_opt     one block: the opt slots the ADAMWs read (unscale, bias corrections from
 *                      the device's step count, skip)
 *   loss_scale_update  one thread: GradScaler.update on the scaler state, in place
 * and what the AdamW kernels ask: whether their opt can carry a skip. */
#include "codegen/emit_internal.h"

/* Whether opt node `opt` (an ADAMW's input 4) comes from LOSS_SCALE_OPT, possibly through
 * CLIP_COEF: then its SKIP slot may be set and the update must check it. */
int cg_opt_may_skip(const ir_graph *g, int opt) {
    while (g->nodes[opt].op == IR_OP_CLIP_COEF) opt = g->nodes[opt].inputs[1];
    return g->nodes[opt].op == IR_OP_LOSS_SCALE_OPT;
}

/* The kernels' shared lines: inv = (float)(1 / (double)scale), and `finite`: every gradient was
 * (their SUM_SQUARES is not NaN) and, for a scale below 1, unscaling does not overflow. */
static void finite_lines(sb *b) {
    cg_sb_printf(b, "    const float scale = sc[%d], inv = (float)(1.0 / (double)scale), q = ss[0];\n", IR_SCALER_SCALE);
    cg_sb_printf(b, "    float u = q * inv;\n    u = u * inv;\n");
    cg_sb_printf(b, "    const bool finite = q == q && (inv <= 1.0f || fabsf(u) <= DC_FLT_MAX);\n");
}

/* (ss [1], opt [IR_OPT_SLOTS], scaler [IR_SCALER_SLOTS]) -> opt */
int cg_emit_loss_scale_opt(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    l.tag = "loss_scale_opt";
    param(&l, "float *", "y", off_of(e, e->node));
    param(&l, "const float *", "ss", off_of(e, n->inputs[0]));
    param(&l, "const float *", "opt", off_of(e, n->inputs[1]));
    param(&l, "const float *", "sc", off_of(e, n->inputs[2]));
    sb *b = &l.body;
    cg_sb_printf(b, "    const int i = threadIdx.x;\n    if (i >= %d) return;\n", IR_OPT_SLOTS);
    finite_lines(b);
    cg_sb_printf(b, "    const bool skip = sc[%d] != %d.0f && !finite;\n", IR_SCALER_MODE, IR_LOSS_SCALE_NONE);
    cg_sb_printf(b, "    const double t = (double)sc[%d] + 1.0; /* the AdamW step this one would be */\n", IR_SCALER_STEP);
    cg_sb_printf(b, "    float v = opt[i];\n");
    cg_sb_printf(b, "    if (i == %d) v = opt[i] * inv;\n", IR_OPT_GRAD_SCALE);
    cg_sb_printf(b, "    if (i == %d) v = (float)(1.0 - pow(%.17e, t));\n", IR_OPT_BIAS_CORR1, n->attrs.beta1);
    cg_sb_printf(b, "    if (i == %d) v = (float)(1.0 - pow(%.17e, t));\n", IR_OPT_BIAS_CORR2, n->attrs.beta2);
    cg_sb_printf(b, "    if (i == %d) v = skip || opt[i] != 0.0f ? 1.0f : 0.0f;\n", IR_OPT_SKIP);
    cg_sb_printf(b, "    y[i] = v;\n");
    cg_finish(e, &l, 1, 32);
    return 0;
}

/* (scaler STATE, ss [1]): in place on the scaler */
int cg_emit_loss_scale_update(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    l.tag = "loss_scale_update";
    param(&l, "float *", "sc", off_of(e, n->inputs[0]));
    param(&l, "const float *", "ss", off_of(e, n->inputs[1]));
    sb *b = &l.body;
    cg_sb_printf(b, "    if (threadIdx.x != 0) return;\n");
    finite_lines(b);
    cg_sb_printf(b, "    const float mode = sc[%d];\n", IR_SCALER_MODE);
    cg_sb_printf(b, "    sc[%d] = finite ? 0.0f : 1.0f;\n", IR_SCALER_OVERFLOW);
    cg_sb_printf(b, "    if (finite || mode == %d.0f) sc[%d] = sc[%d] + 1.0f;\n", IR_LOSS_SCALE_NONE, IR_SCALER_STEP,
                 IR_SCALER_STEP);
    cg_sb_printf(b, "    else sc[%d] = sc[%d] + 1.0f;\n", IR_SCALER_SKIPPED, IR_SCALER_SKIPPED);
    cg_sb_printf(b, "    if (mode != %d.0f) return;\n", IR_LOSS_SCALE_DYNAMIC);
    cg_sb_printf(b, "    float s = scale, growth = sc[%d];\n", IR_SCALER_GROWTH);
    cg_sb_printf(b, "    if (!finite) {\n        s = s * 0.5f;\n        growth = 0.0f;\n");
    cg_sb_printf(b, "    } else if (growth + 1.0f >= sc[%d]) {\n", IR_SCALER_INTERVAL);
    cg_sb_printf(b, "        const float grown = s * 2.0f;\n        if (fabsf(grown) <= DC_FLT_MAX) s = grown;\n");
    cg_sb_printf(b, "        growth = 0.0f;\n    } else {\n        growth = growth + 1.0f;\n    }\n");
    cg_sb_printf(b, "    sc[%d] = s;\n    sc[%d] = growth;\n", IR_SCALER_SCALE, IR_SCALER_GROWTH);
    cg_finish(e, &l, 1, 32);
    return 0;
}
