/* training.c: the training pass. The forward graph becomes one training step:
 *
 *   forward ... -> logits [B,K] --+
 *   INPUT labels i64 [B] ---------+-> CROSS_ENTROPY -> output "loss" [1]
 *   CONST 1.0 [1] (seed) -> pass_autodiff -> output "grad.<w>" for every trained weight
 *   INPUT opt f32 [IR_OPT_SLOTS] -> (clip_grad_norm: SUM_SQUARES of all grads -> CLIP_COEF)
 *   STATE adam_m.<w>, adam_v.<w>; ADAMW(w, grad.<w>, m, v, opt) per trained weight, last.
 *
 * Gradient clipping stays in the graph: CLIP_COEF folds min(1, max_norm / (norm + 1e-6)) into
 * the GRAD_SCALE slot of the opt vector the ADAMW nodes read, so no host round trip is needed.
 * With --loss-scale (loss_scale.c) the seed is the scaler's scale and the ADAMWs read opt
 * through LOSS_SCALE_OPT (unscale, skip, bias corrections from the device's step count).
 * Weights matched by a --freeze pattern, or that the loss does not depend on, lose
 * IR_NODE_TRAINABLE: they stay WEIGHT leaves with neither gradient nor update.
 */
#include "passes/passes.h"

#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pass_train_options_default(pass_train_options *o) {
    memset(o, 0, sizeof *o);
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->adam_eps = 1e-8;
}

static ir_graph *fail(ir_graph *g, char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static ir_graph *fail(ir_graph *g, char *err, size_t errsize, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
    ir_graph_free(g);
    return NULL;
}

/* The node the loss goes on: o->output by name, else output "logits", else the one output. */
static int find_logits(const ir_graph *f, const pass_train_options *o, char *err, size_t errsize) {
    if (o->output) {
        int id = ir_find(f, o->output);
        if (id < 0) snprintf(err, errsize, "training: the model has no node named '%s'", o->output);
        return id;
    }
    int id = ir_find(f, "logits");
    if (id >= 0 && f->nodes[id].flags & IR_NODE_OUTPUT) return id;
    int found = -1, count = 0;
    for (int i = 0; i < f->n; i++)
        if (f->nodes[i].flags & IR_NODE_OUTPUT) found = i, count++;
    if (count == 1) return found;
    if (count)
        snprintf(err, errsize,
                 "training: none of the model's %d outputs is named 'logits'; name one with --output",
                 count);
    else
        snprintf(err, errsize, "training: the model has no output to put the loss on");
    return -1;
}

static int frozen(const pass_train_options *o, const char *name) {
    for (int i = 0; i < o->nfreeze; i++)
        if (name && fnmatch(o->freeze[i], name, 0) == 0) return 1;
    return 0;
}

/* timm: decay only parameters with more than one dimension, never the learned tokens */
static int decays(const ir_node *w) {
    static const char *const no_decay[] = {"pos_embed", "cls_token", "dist_token"};
    if (w->ndim <= 1) return 0;
    for (size_t i = 0; i < sizeof no_decay / sizeof *no_decay; i++)
        if (w->name && strcmp(w->name, no_decay[i]) == 0) return 0;
    return 1;
}

/* Sum of squares of all gradients, as SUM_SQUARES groups (IR_MAX_INPUTS each) added up. */
static int sum_squares_all(ir_graph *g, const int *grads, int n, ir_loc loc) {
    int total = -1;
    for (int i = 0; i < n; i += IR_MAX_INPUTS) {
        int k = n - i < IR_MAX_INPUTS ? n - i : IR_MAX_INPUTS;
        int s = ir_add(g, IR_OP_SUM_SQUARES, grads + i, k, NULL, IR_F32, 0, NULL, "grad_norm.sq", loc);
        if (s < 0) return -1;
        total = total < 0 ? s : ir_binary(g, IR_OP_ADD, total, s, NULL, "grad_norm.sq", loc);
        if (total < 0) return -1;
    }
    return total;
}

ir_graph *pass_training(const ir_graph *f, const pass_train_options *o, char *err, size_t errsize) {
    int logits = find_logits(f, o, err, errsize);
    if (logits < 0) return NULL;
    const ir_node *ln = &f->nodes[logits];
    char shape[96];
    if (ln->ndim != 2 || !ir_dtype_is_float(ln->dtype))
        return fail(NULL, err, errsize, "training: '%s' must be float logits [B,K], got %s%s",
                    ln->name ? ln->name : "", ir_dtype_name(ln->dtype), ir_shape_str(ln, shape, sizeof shape));
    if (ir_find(f, "labels") >= 0 || ir_find(f, "loss") >= 0 || ir_find(f, "opt") >= 0)
        return fail(NULL, err, errsize, "training: the model already has a node named labels, loss or opt");

    ir_graph *g = ir_graph_new();
    g->info = f->info;
    if (f->info.model_name) g->info.model_name = ir_arena_strdup(&g->arena, f->info.model_name);
    if (f->info.note) g->info.note = ir_arena_strdup(&g->arena, f->info.note);
    for (int i = 0; i < f->n; i++)
        if (ir_copy_node(g, f, i, NULL) != i)
            return fail(g, err, errsize, "training: copying the forward graph: %s", g->error);
    ir_loc loc = ln->loc;

    /* loss */
    int64_t bshape[1] = {ln->shape[0]}, one[1] = {1}, slots[1] = {IR_OPT_SLOTS};
    int labels = ir_leaf(g, IR_OP_INPUT, IR_I64, 1, bshape, "labels", loc);
    ir_attrs ce = {0};
    ce.smoothing = o->label_smoothing;
    int loss = labels < 0 ? -1 : ir_binary(g, IR_OP_CROSS_ENTROPY, logits, labels, &ce, "loss", loc);
    if (loss < 0) return fail(g, err, errsize, "training: %s", g->error);
    ir_node_set_output(g, loss, "loss");
    ir_attrs sa = {0};
    sa.alpha = 1.0;
    int scaler = o->loss_scale != IR_LOSS_SCALE_NONE ? pass_loss_scale_state(g, o, loc) : -1;
    int seed = o->loss_scale == IR_LOSS_SCALE_NONE ? ir_add(g, IR_OP_CONST, NULL, 0, &sa, IR_F32, 1, one, "loss.seed", loc)
               : scaler < 0                        ? -1
                                                   : pass_loss_scale_seed(g, scaler, loc);
    if (seed < 0) return fail(g, err, errsize, "training: %s", g->error);

    /* gradients of the trained weights */
    int *wrt = malloc(sizeof(int) * (size_t)f->n), *grads = malloc(sizeof(int) * (size_t)f->n);
    if (!wrt || !grads) abort();
    int nwrt = 0;
    for (int i = 0; i < f->n; i++) {
        ir_node *w = &g->nodes[i];
        if (w->op != IR_OP_WEIGHT || !(w->flags & IR_NODE_TRAINABLE)) continue;
        if (frozen(o, w->name) || !ir_dtype_is_float(w->dtype))
            w->flags &= ~(unsigned)IR_NODE_TRAINABLE;
        else
            wrt[nwrt++] = i;
    }
    if (pass_autodiff(g, loss, seed, wrt, nwrt, grads)) {
        free(wrt);
        free(grads);
        return fail(g, err, errsize, "training: %s", g->error);
    }
    int ntrained = 0;
    for (int k = 0; k < nwrt; k++) {
        int w = wrt[k], d = grads[k];
        if (d < 0) { /* the loss does not depend on it */
            g->nodes[w].flags &= ~(unsigned)IR_NODE_TRAINABLE;
            continue;
        }
        /* a gradient node shared with another output (or the seed) gets its own copy */
        if (g->nodes[d].flags & IR_NODE_OUTPUT || ir_op_flags(g->nodes[d].op) & IR_OPF_LEAF || d == seed)
            d = ir_reshape(g, d, g->nodes[d].ndim, g->nodes[d].shape, NULL, g->nodes[w].loc);
        if (d < 0) {
            ntrained = -1;
            break;
        }
        ir_node_set_output(g, d, ir_arena_printf(&g->arena, "grad.%s", g->nodes[w].name));
        wrt[ntrained] = w;
        grads[ntrained++] = d;
    }

    /* optimizer: opt slots, optional clipping, state, then the updates last */
    int opt = ntrained < 0 ? -1 : ir_leaf(g, IR_OP_INPUT, IR_F32, 1, slots, "opt", loc);
    int ss = -1;
    if (opt >= 0 && (o->clip_grad_norm > 0 || scaler >= 0) && ntrained > 0) {
        ss = sum_squares_all(g, grads, ntrained, loc);
        if (ss < 0) opt = -1;
    }
    if (opt >= 0 && scaler >= 0 && ntrained > 0) {
        ir_attrs la = {0};
        la.beta1 = o->beta1;
        la.beta2 = o->beta2;
        int in[3] = {ss, opt, scaler};
        opt = ir_add(g, IR_OP_LOSS_SCALE_OPT, in, 3, &la, IR_F32, 0, NULL, "opt.unscaled", loc);
    }
    if (opt >= 0 && o->clip_grad_norm > 0 && ntrained > 0) {
        ir_attrs ca = {0};
        ca.alpha = o->clip_grad_norm;
        opt = ir_binary(g, IR_OP_CLIP_COEF, ss, opt, &ca, "opt.clipped", loc);
    }
    int *m = malloc(sizeof(int) * (size_t)(nwrt + 1)), *v = malloc(sizeof(int) * (size_t)(nwrt + 1));
    if (!m || !v) abort();
    for (int k = 0; k < ntrained && opt >= 0; k++) {
        const ir_node *w = &g->nodes[wrt[k]];
        ir_dtype t = w->dtype;
        int nd = w->ndim;
        int64_t s[IR_MAX_DIMS];
        memcpy(s, w->shape, sizeof s);
        ir_loc wl = w->loc;
        const char *nm = w->name;
        m[k] = ir_leaf(g, IR_OP_STATE, t, nd, s, ir_arena_printf(&g->arena, "adam_m.%s", nm), wl);
        v[k] = ir_leaf(g, IR_OP_STATE, t, nd, s, ir_arena_printf(&g->arena, "adam_v.%s", nm), wl);
        if (m[k] < 0 || v[k] < 0) opt = -1;
    }
    for (int k = 0; k < ntrained && opt >= 0; k++) {
        const ir_node *w = &g->nodes[wrt[k]];
        ir_attrs aa = {0};
        aa.beta1 = o->beta1;
        aa.beta2 = o->beta2;
        aa.eps = o->adam_eps;
        aa.decay = decays(w);
        int in[5] = {wrt[k], grads[k], m[k], v[k], opt};
        if (ir_add(g, IR_OP_ADAMW, in, 5, &aa, w->dtype, 0, NULL, w->name, w->loc) < 0) opt = -1;
    }
    if (opt >= 0 && scaler >= 0 && ntrained > 0) { /* after every reader of the scale */
        int in[2] = {scaler, ss};
        if (ir_add(g, IR_OP_LOSS_SCALE_UPDATE, in, 2, NULL, IR_F32, 0, NULL, "loss_scaler.update", loc) < 0) opt = -1;
    }
    free(wrt);
    free(grads);
    free(m);
    free(v);
    if (opt < 0) return fail(g, err, errsize, "training: %s", g->error);
    return g;
}
