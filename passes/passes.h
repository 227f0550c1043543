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
 * one dimension, never pos_embed, cls_token, dist_token. Trained: every IR_NODE_TRAINABLE
 * weight that no freeze pattern matches and that the loss depends on; the others lose the
 * flag (they stay WEIGHT leaves, without gradient or update). With clip_grad_norm > 0 the
 * ADAMWs read opt through CLIP_COEF(SUM_SQUARES(grads...), opt), which scales GRAD_SCALE by
 * min(1, max_norm / (norm + 1e-6)) in the graph. Returns NULL with err on failure (no
 * output to put the loss on, logits not [B,K]). */
ir_graph *pass_training(const ir_graph *forward, const pass_train_options *o, char *err,
                        size_t errsize);

/* ---- autodiff.c ------------------------------------------------------------------------- */

/* Appends to g the reverse-mode derivative of scalar node `loss` (seeded with node `seed`,
 * shape [1]) with respect to every node in wrt[0..nwrt); grads[i] receives the gradient node of
 * wrt[i] (-1 if the loss does not depend on it). Only nodes on a path from a wrt node to the
 * loss get gradients; gradients of values used several times are summed. Gradient nodes are
 * named "d.<forward name>" and carry the forward node's location. 0 on success; -1 with
 * g->error set when an op on the path has no derivative rule (the backward helper ops, the
 * optimizer ops: no second order). */
int pass_autodiff(ir_graph *g, int loss, int seed, const int *wrt, int nwrt, int *grads);

/* ---- schedule.c, memplan.c: execution order and the device arena (used by codegen) ---- */

/* Execution order of g's computing nodes (leaves excluded): topological, effect nodes (ADAMW)
 * last. Writes at most g->n node indices to order; returns how many. */
int pass_schedule(const ir_graph *g, int *order);

/* One device arena for a training step. Persistent buffers (WEIGHT, STATE, INPUT, outputs)
 * come first, never shared; every other value lives from the step that computes it to its
 * last reader, and values whose lifetimes do not overlap share memory. RESHAPE aliases its
 * input (no copy); ADAMW aliases its parameter (updated in place). Offsets are 256-aligned. */
typedef struct {
    int n;                   /* nodes of the graph */
    int64_t *offset;         /* [n] byte offset of the node's value, -1: none (unscheduled) */
    int *alias_of;           /* [n] node whose buffer holds this value (itself if its own) */
    int64_t *scratch_offset; /* [n] byte offset of the node's scratch, -1: none */
    unsigned char *persistent; /* [n] 1 if the node's buffer is persistent */
    int64_t arena_bytes;     /* total arena size */
    int64_t persistent_bytes;
    int64_t peak_bytes;      /* max over steps of the bytes live at once (persistent included) */
} pass_mem_plan;

#define PASS_MEM_ALIGN 256

/* Plans the arena for g executed in `order` (nsteps nodes). scratch_bytes (may be NULL): per
 * node, temporary bytes it needs while it runs. Returns NULL only on allocation failure. */
pass_mem_plan *pass_mem_plan_new(const ir_graph *g, const int *order, int nsteps,
                                 const int64_t *scratch_bytes);
void pass_mem_plan_free(pass_mem_plan *p);
/* Bytes of node's value (numel * dtype size, rounded up to PASS_MEM_ALIGN; a multi-output
 * node: all its outputs, each rounded up). */
int64_t pass_mem_bytes(const ir_node *n);
/* Where output k of node n starts in its buffer (bytes; 0 for output 0). */
int64_t pass_mem_output_offset(const ir_node *n, int k);

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
