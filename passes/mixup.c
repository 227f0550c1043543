/* mixup.c: Mixup / CutMix as part of the training graph (timm's Mixup, mode 'batch', with
 * SoftTargetCrossEntropy), built when pass_train_options.mixup is set.
 *
 * The host samples lam (and CutMix's box, lam corrected for the clipped box) each step and
 * fills one small INPUT "mix" f32 [2*H*W + 2] (runtime/mixup.c):
 *   [0, HW)      w:  the weight of each pixel of the sample itself     ([1,1,H,W] broadcast)
 *   [HW, 2HW)    wf: the weight of the same pixel of its partner       (the batch flipped)
 *   2HW          lam, 2HW+1: 1 - lam (both rounded from double on the host)
 * Mixup: w = lam, wf = 1 - lam everywhere; CutMix: w = 0, wf = 1 inside the box, 1 and 0
 * outside; off (or lam = 1): w = 1, wf = 0. So the images become x*w + flip(x)*wf, exactly
 * timm's x.mul_(lam).add_(x.flip(0).mul_(1 - lam)) and its box copy.
 *
 * The soft targets are lam * smooth(onehot(y)) + (1 - lam) * smooth(onehot(flip(y))) with
 * smooth(t) = (1 - s) t + s/K (timm's mixup_target, label smoothing s folded in). The soft
 * cross-entropy is linear in the target, so the loss is built as
 *   lam * CE_s(logits, y) + (1 - lam) * CE_s(logits, flip(y))
 * with the existing smoothed CROSS_ENTROPY (which is timm's LabelSmoothingCrossEntropy, i.e.
 * SoftTargetCrossEntropy of smooth(onehot(y))): the same value and gradient as
 * SoftTargetCrossEntropy(logits, mixup_target) without a [B,K] target tensor.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* SLICE [start, end) of the 1-D "mix" input, reshaped to ndim/shape */
static int mix_part(ir_graph *g, int mix, int64_t start, int64_t end, int ndim, const int64_t *shape,
                    const char *name, ir_loc loc) {
    ir_attrs a = {0};
    a.axis = 0;
    a.start = start;
    a.end = end;
    int s = ir_unary(g, IR_OP_SLICE, mix, &a, name, loc);
    return s < 0 ? -1 : ir_reshape(g, s, ndim, shape, name, loc);
}

ir_graph *pass_mixup_forward(const ir_graph *f, char *err, size_t errsize) {
    int images = ir_find(f, "images");
    if (images < 0 || f->nodes[images].op != IR_OP_INPUT || f->nodes[images].ndim != 4 ||
        !ir_dtype_is_float(f->nodes[images].dtype)) {
        snprintf(err, errsize, "mixup: the model needs a float input 'images' [B,C,H,W] to mix");
        return NULL;
    }
    if (ir_find(f, "mix") >= 0) {
        snprintf(err, errsize, "mixup: the model already has a node named 'mix'");
        return NULL;
    }
    const ir_node *x = &f->nodes[images];
    int64_t H = x->shape[2], W = x->shape[3], hw = H * W;
    ir_loc loc = x->loc;
    ir_graph *g = ir_graph_new();
    g->info = f->info;
    if (f->info.model_name) g->info.model_name = ir_arena_strdup(&g->arena, f->info.model_name);
    if (f->info.note) g->info.note = ir_arena_strdup(&g->arena, f->info.note);
    int *map = calloc((size_t)f->n, sizeof(int));
    if (!map) abort();
    int ok = 1;
    for (int i = 0; i < f->n && ok; i++) {
        map[i] = ir_copy_node(g, f, i, map);
        if (map[i] < 0) ok = 0;
        if (!ok || i != images) continue;
        /* right after the images: the mix input and the mixed images, which the rest reads */
        int64_t len[1] = {2 * hw + 2}, plane[4] = {1, 1, H, W};
        int mix = ir_leaf(g, IR_OP_INPUT, IR_F32, 1, len, "mix", loc);
        int w = mix < 0 ? -1 : mix_part(g, mix, 0, hw, 4, plane, "mix.w", loc);
        int wf = w < 0 ? -1 : mix_part(g, mix, hw, 2 * hw, 4, plane, "mix.w_partner", loc);
        int fl = wf < 0 ? -1 : ir_unary(g, IR_OP_FLIP_BATCH, map[i], NULL, "mix.partner", loc);
        int a = fl < 0 ? -1 : ir_binary(g, IR_OP_MUL, map[i], w, NULL, "mix.self", loc);
        int b = a < 0 ? -1 : ir_binary(g, IR_OP_MUL, fl, wf, NULL, "mix.other", loc);
        int m = b < 0 ? -1 : ir_binary(g, IR_OP_ADD, a, b, NULL, "images.mixed", loc);
        if (m < 0) ok = 0;
        else map[i] = m;
    }
    free(map);
    if (!ok) {
        snprintf(err, errsize, "mixup: %s", g->error);
        ir_graph_free(g);
        return NULL;
    }
    return g;
}

int pass_mixup_loss(ir_graph *g, int logits, int labels, int opt, double smoothing, ir_loc loc) {
    int mix = ir_find(g, "mix");
    if (mix < 0) {
        snprintf(g->error, sizeof g->error, "mixup: the graph has no input 'mix' (pass_mixup_forward)");
        return -1;
    }
    int64_t n = g->nodes[mix].shape[0], one[1] = {1};
    ir_attrs ce = {0};
    ce.smoothing = smoothing;
    int lam = mix_part(g, mix, n - 2, n - 1, 1, one, "mix.lam", loc);
    int lamf = lam < 0 ? -1 : mix_part(g, mix, n - 1, n, 1, one, "mix.lam_partner", loc);
    int yf = lamf < 0 ? -1 : ir_unary(g, IR_OP_FLIP_BATCH, labels, NULL, "labels.partner", loc);
    int l1 = yf < 0 ? -1 : ir_add(g, IR_OP_CROSS_ENTROPY, (int[]){logits, labels, opt}, 3, &ce, IR_F32, 0, NULL, "loss.self", loc);
    int l2 = l1 < 0 ? -1 : ir_add(g, IR_OP_CROSS_ENTROPY, (int[]){logits, yf, opt}, 3, &ce, IR_F32, 0, NULL, "loss.partner", loc);
    int a = l2 < 0 ? -1 : ir_binary(g, IR_OP_MUL, l1, lam, NULL, "loss.self_mixed", loc);
    int b = a < 0 ? -1 : ir_binary(g, IR_OP_MUL, l2, lamf, NULL, "loss.partner_mixed", loc);
    return b < 0 ? -1 : ir_binary(g, IR_OP_ADD, a, b, NULL, "loss", loc);
}
