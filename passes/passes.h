/* passes.h: graph-to-graph passes, each a plain function; pipeline.c lists them in order.
 *
 * A pass that rebuilds a graph returns a new one (its own arena) and leaves the input alone;
 * the caller frees what it no longer needs. Errors (bad input the user can fix) come back as
 * NULL/-1 with a message; internal invariants are asserts. Sections follow the files:
 *   training.c  loss + autodiff + AdamW: the forward graph becomes one training step
 *   autodiff.c  reverse-mode differentiation over the IR
 *   pipeline.c  the ordered list of passes, `--after PASS` for `deitc dump`
 */
#ifndef DEITC_PASSES_H
#define DEITC_PASSES_H

#include "ir/ir.h"

/* ---- training.c ------------------------------------------------------------------------- */

typedef struct {
    double label_smoothing;     /* 0 = none; DeiT trains with 0.1 */
    double beta1, beta2, adam_eps;
    double clip_grad_norm;      /* 0 = off; else clip the global gradient norm to this */
    const char *const *freeze;  /* glob patterns (fnmatch) of weights that are not trained */
    int nfreeze;
    const char *output;         /* node to put the loss on; NULL = the output "logits", or the
                                   graph's single output */
} pass_train_options;

void pass_train_options_default(pass_train_options *o);

/* Builds the training step from a forward graph: INPUTs "images", "labels" (i64 [B]) and
 * "opt" (f32 [IR_OPT_SLOTS], see ir.h); outputs "loss" (f32 [1], before the update),
 * "logits" and "grad.<weight>" for every trained weight; STATEs "adam_m.<w>", "adam_v.<w>";
 * one ADAMW per trained weight, last. Weight decay follows timm: only weights with more than
 * one dimension, never pos_embed, cls_token, dist_token. Returns NULL with err on failure. */
ir_graph *pass_training(const ir_graph *forward, const pass_train_options *o, char *err,
                        size_t errsize);

/* ---- autodiff.c ------------------------------------------------------------------------- */

/* Appends to g the reverse-mode derivative of scalar node `loss` (seeded with node `seed`,
 * shape [1]) with respect to every node in wrt[0..nwrt); grads[i] receives the gradient node of
 * wrt[i] (-1 if it does not depend on it). Gradients of values used several times are summed.
 * 0 on success; -1 with g->error set when an op has no derivative rule. */
int pass_autodiff(ir_graph *g, int loss, int seed, const int *wrt, int nwrt, int *grads);

/* ---- pipeline.c ------------------------------------------------------------------------- */

typedef struct {
    int training;               /* build the training step (else: the forward graph only) */
    pass_train_options train;
} pass_options;

/* Names of the passes in order, NULL-terminated: "check", "training", ... */
extern const char *const pass_names[];

/* Runs the passes in order on `g` (which it takes over and frees), stopping after the pass
 * named `stop_after` (NULL: run all). Verifies the graph after each pass. Returns the final
 * graph, or NULL with err. */
ir_graph *pass_pipeline_run(ir_graph *g, const pass_options *o, const char *stop_after,
                            char *err, size_t errsize);

#endif
