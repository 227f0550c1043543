/* emit_optim.c: the optimizer family: adamw (one launch per tensor, or one launch for a run of
 * f32 ADAMW nodes with a table of tensors in the kernel) and clip_coef (the gradient-clipping
 * factor folded into the opt slots' GRAD_SCALE). Under loss scaling an AdamW kernel first
 * returns when its opt's SKIP slot is set (emit_loss_scale.c). */
#include "codegen/emit_internal.h"

int cg_emit_clip_coef(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    char fl[64];
    l.tag = "clip_coef";
    param(&l, "float *", "y", off_of(e, e->node));
    param(&l, "const float *", "ss", off_of(e, n->inputs[0]));
    param(&l, "const float *", "opt", off_of(e, n->inputs[1]));
    sb *b = &l.body;
    cg_sb_printf(b, "    const int i = threadIdx.x;\n    if (i >= %d) return;\n", IR_OPT_SLOTS);
    cg_sb_printf(b, "    const float gs = opt[%d];\n", IR_OPT_GRAD_SCALE);
    cg_sb_printf(b, "    const float coef = %s / (dc_sqrt(ss[0]) * fabsf(gs) + 1e-6f);\n", cg_flit(fl, sizeof fl, n->attrs.alpha));
    cg_sb_printf(b, "    y[i] = i == %d ? gs * fminf(coef, 1.0f) : opt[i];\n", IR_OPT_GRAD_SCALE);
    cg_finish(e, &l, 1, 32);
    return 0;
}

/* (param, grad, m, v, opt): in place on param, m, v */
int cg_emit_adamw(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *pn = &e->g->nodes[n->inputs[0]], *gn = &e->g->nodes[n->inputs[1]];
    const ir_node *mn = &e->g->nodes[n->inputs[2]], *vn = &e->g->nodes[n->inputs[3]];
    const ir_attrs *at = &n->attrs;
    int64_t total = ir_numel(pn);
    launch l = {0};
    l.tag = "adamw";
    param(&l, out_type(pn->dtype), "p", off_of(e, n->inputs[0]));
    param(&l, in_type(gn->dtype), "grad", off_of(e, n->inputs[1]));
    param(&l, out_type(mn->dtype), "m", off_of(e, n->inputs[2]));
    param(&l, out_type(vn->dtype), "v", off_of(e, n->inputs[3]));
    param(&l, "const float *", "opt", off_of(e, n->inputs[4]));
    sb *b = &l.body;
    char f1[64], f2[64], f3[64], f4[64], f5[64], lb[128], sb1[128];
    cg_sb_printf(b, "    const float lr = opt[%d], wd = %s, bc1 = opt[%d], sbc2 = dc_sqrt(opt[%d]), gs = opt[%d];\n",
              IR_OPT_LR, at->decay ? "opt[1]" : "0.0f", IR_OPT_BIAS_CORR1, IR_OPT_BIAS_CORR2, IR_OPT_GRAD_SCALE);
    if (cg_opt_may_skip(e->g, n->inputs[4])) /* loss scaling: a step with non-finite gradients */
        cg_sb_printf(b, "    if (opt[%d] != 0.0f) return;\n", IR_OPT_SKIP);
    cg_loop_open(&l, total);
    cg_sb_printf(b, "        const float g = %s * gs;\n", cg_ld(lb, sizeof lb, gn->dtype, "grad[i]"));
    cg_sb_printf(b, "        const float mi = %s * %s + %s * g;\n", cg_flit(f1, sizeof f1, at->beta1),
              cg_ld(lb, sizeof lb, mn->dtype, "m[i]"), cg_flit(f2, sizeof f2, 1 - at->beta1));
    cg_sb_printf(b, "        const float vi = %s * %s + %s * g * g;\n", cg_flit(f3, sizeof f3, at->beta2),
              cg_ld(lb, sizeof lb, vn->dtype, "v[i]"), cg_flit(f4, sizeof f4, 1 - at->beta2));
    cg_sb_printf(b, "        m[i] = %s;\n", cg_st(sb1, sizeof sb1, mn->dtype, "mi"));
    cg_sb_printf(b, "        v[i] = %s;\n", cg_st(sb1, sizeof sb1, vn->dtype, "vi"));
    cg_sb_printf(b, "        const float denom = dc_sqrt(vi) / sbc2 + %s;\n", cg_flit(f5, sizeof f5, at->eps));
    char upd[256], sb2[300];
    snprintf(upd, sizeof upd, "%s * (1.0f - lr * wd) - (lr / bc1) * mi / denom", cg_ld(lb, sizeof lb, pn->dtype, "p[i]"));
    cg_sb_printf(b, "        p[i] = %s;\n", cg_st(sb2, sizeof sb2, pn->dtype, upd));
    cg_loop_close(e, &l, total);
    return 0;
}

/* Whether ADAMW node i can join a multi-tensor launch: f32 parameter, gradient and state. */
int cg_adamw_multi_ok(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    if (n->op != IR_OP_ADAMW) return 0;
    for (int k = 0; k < 4; k++)
        if (g->nodes[n->inputs[k]].dtype != IR_F32) return 0;
    return 1;
}

/* A run of ADAMW nodes (consecutive in the schedule, same opt input): one launch instead of
 * one per tensor. The kernel takes the arena's base and carries a table (one row a tensor):
 * first block, elements, then the parameter's, gradient's, m's and v's offsets in floats, and
 * whether it decays. Block b updates ADAMW_TILE elements of the tensor whose row holds the
 * last first-block <= b (binary search); the arithmetic is emit_adamw's. */
enum { ADAMW_TILE = 2048 };
void cg_emit_adamw_multi(emitter *e, const int *nodes, int count) {
    const ir_graph *g = e->g;
    const ir_attrs *at = &g->nodes[nodes[0]].attrs;
    launch l = {0};
    l.tag = "adamw_multi";
    param(&l, "float *", "arena", 0);
    param(&l, "const float *", "opt", off_of(e, g->nodes[nodes[0]].inputs[4]));
    sb *b = &l.body;
    char f1[64], f2[64], f3[64], f4[64], f5[64];
    cg_sb_printf(b, "    /* per tensor: first block, elements, offsets (floats) of param, grad, m, v; decay */\n");
    cg_sb_printf(b, "    static const long long tab[%d][7] = {\n", count);
    int64_t blocks = 0;
    for (int q = 0; q < count; q++) {
        const ir_node *n = &g->nodes[nodes[q]];
        int64_t numel = ir_numel(&g->nodes[n->inputs[0]]);
        cg_sb_printf(b, "        {%lld, %lld", (long long)blocks, (long long)numel);
        for (int k = 0; k < 4; k++) {
            int64_t o = off_of(e, n->inputs[k]);
            assert(o % (int64_t)sizeof(float) == 0);
            cg_sb_printf(b, ", %lld", (long long)(o / (int64_t)sizeof(float)));
        }
        cg_sb_printf(b, ", %d}, /* %s */\n", n->attrs.decay ? 1 : 0, g->nodes[n->inputs[0]].name ? g->nodes[n->inputs[0]].name : "");
        blocks += (numel + ADAMW_TILE - 1) / ADAMW_TILE;
    }
    cg_sb_printf(b, "    };\n");
    cg_sb_printf(b, "    int lo = 0, hi = %d;\n", count - 1);
    cg_sb_printf(b, "    while (lo < hi) {\n        const int mid = (lo + hi + 1) / 2;\n");
    cg_sb_printf(b, "        if (tab[mid][0] <= (long long)blockIdx.x) lo = mid;\n        else hi = mid - 1;\n    }\n");
    cg_sb_printf(b, "    const long long *t = tab[lo];\n");
    cg_sb_printf(b, "    float *p = arena + t[2], *m = arena + t[4], *v = arena + t[5];\n");
    cg_sb_printf(b, "    const float *grad = arena + t[3];\n");
    cg_sb_printf(b, "    const float lr = opt[%d], wd = t[6] ? opt[1] : 0.0f, bc1 = opt[%d], sbc2 = dc_sqrt(opt[%d]), gs = opt[%d];\n",
              IR_OPT_LR, IR_OPT_BIAS_CORR1, IR_OPT_BIAS_CORR2, IR_OPT_GRAD_SCALE);
    if (cg_opt_may_skip(g, g->nodes[nodes[0]].inputs[4])) /* loss scaling: a skipped step */
        cg_sb_printf(b, "    if (opt[%d] != 0.0f) return;\n", IR_OPT_SKIP);
    cg_sb_printf(b, "    const long long i0 = ((long long)blockIdx.x - t[0]) * %d, i1 = i0 + %d < t[1] ? i0 + %d : t[1];\n",
              ADAMW_TILE, ADAMW_TILE, ADAMW_TILE);
    cg_sb_printf(b, "    for (long long i = i0 + threadIdx.x; i < i1; i += blockDim.x) {\n");
    cg_sb_printf(b, "        const float g = grad[i] * gs;\n");
    cg_sb_printf(b, "        const float mi = %s * m[i] + %s * g;\n", cg_flit(f1, sizeof f1, at->beta1), cg_flit(f2, sizeof f2, 1 - at->beta1));
    cg_sb_printf(b, "        const float vi = %s * v[i] + %s * g * g;\n", cg_flit(f3, sizeof f3, at->beta2), cg_flit(f4, sizeof f4, 1 - at->beta2));
    cg_sb_printf(b, "        m[i] = mi;\n        v[i] = vi;\n");
    cg_sb_printf(b, "        const float denom = dc_sqrt(vi) / sbc2 + %s;\n", cg_flit(f5, sizeof f5, at->eps));
    cg_sb_printf(b, "        p[i] = p[i] * (1.0f - lr * wd) - (lr / bc1) * mi / denom;\n    }\n");
    int saved = e->node;
    e->node = nodes[0];
    cg_finish(e, &l, blocks, 256);
    e->node = saved;
    /* name the whole run in the step and the kernel's header: "%A first .. %B last (N adamw)" */
    rt_plan_step *st = &e->p->steps[e->p->nsteps - 1];
    cg_kernel *kn = &e->p->kernels[st->kernel];
    char *last = cg_node_label(g, nodes[count - 1]);
    sb what = {0};
    cg_sb_printf(&what, "%s .. %s (%d adamw nodes)", st->what, last, count);
    free(last);
    free((void *)st->what);
    st->what = what.s;
    if (kn->nuses == 1) {
        free(kn->nodes);
        kn->nodes = xstrdup(what.s);
    }
}
