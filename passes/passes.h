/* passes.h: graph-to-graph passes, each a plain function; pipeline.c lists them in order.
 *
 * A pass that rebuilds a graph returns a new one (its own arena) and leaves the input alone;
 * the caller frees what it no longer needs. Errors (bad input the user can fix) come back as
 * NULL/-1 with a message; internal invariants are asserts. Sections follow the files:
 *   fusion.c    the named fusions (--fuse): layer-norm-stats before training, adamw-group after
 *   training.c  loss + autodiff + AdamW: the forward graph becomes one training step
 *   autodiff.c  reverse-mode differentiation over the IR
 *   precision.c the precision stage (--precision)
 *   schedule.c  execution order; memplan.c: the device arena
 *   pipeline.c  the ordered list of stages, `--after STAGE` for `deitc dump`
 */
#ifndef DEITC_PASSES_H
#define DEITC_PASSES_H

#include "ir/ir.h"

/* ---- training.c ------------------------------------------------------------------------- */

typedef struct {
    double label_smoothing;     /* 0 = none; DeiT trains with 0.1 */
    double beta1, beta2, adam_eps;
    double clip_grad_norm;      /* 0 = off; else clip the global gradient norm to this */
    int ema;                    /* 1: STATE ema.<w> and an EMA update of it after each ADAMW */
    const char *const *freeze;  /* glob patterns (fnmatch) of weights that are not trained */
    int nfreeze;
    const char *output;         /* node to put the loss on; NULL = the output "logits", or the
                                   graph's single output */
    int loss_scale;             /* IR_LOSS_SCALE_*: NONE (0) builds no scaler at all; STATIC or
                                   DYNAMIC build one (loss_scale.c) that starts in that mode */
    double loss_scale_init;     /* the first (static: the fixed) scale; 0: PASS_LOSS_SCALE_INIT */
    long loss_scale_interval;   /* dynamic: clean steps before the scale doubles; 0: the default */
    int mixup;                  /* 1: Mixup/CutMix in the graph (mixup.c): INPUT "mix", mixed loss */
    int drop_path;              /* 1: stochastic depth (drop_path.c): INPUT "drop_path" scales branches */
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
 * min(1, max_norm / (norm + 1e-6)) in the graph, max_norm being the opt slot CLIP_NORM (0: off). label_smoothing,
 * clip_grad_norm, betas and eps are defaults recorded in the attrs (the plan's defaults); the
 * kernels read the opt slots. Returns NULL with err on failure (no
 * output to put the loss on, logits not [B,K]). With loss_scale (loss_scale.c): the STATE "loss_scaler",
 * the seed is its scale, LOSS_SCALE_OPT between opt and the clipping / ADAMWs, and
 * LOSS_SCALE_UPDATE last. */
ir_graph *pass_training(const ir_graph *forward, const pass_train_options *o, char *err,
                        size_t errsize);

/* ---- mixup.c ----------------------------------------------------------------------------- */

/* The forward graph with INPUT "mix" (f32 [2*H*W + 2], layout at the top of mixup.c) right
 * after "images" and every reader of the images reading x*w + flip(x)*wf instead. NULL with err
 * when the model has no float images [B,C,H,W]. */
ir_graph *pass_mixup_forward(const ir_graph *f, char *err, size_t errsize);
/* The loss under mixup: lam * CE_s(logits, labels) + (1 - lam) * CE_s(logits, flip(labels)),
 * named "loss" (timm's SoftTargetCrossEntropy of its mixup_target). -1 with g->error. */
int pass_mixup_loss(ir_graph *g, int logits, int labels, int opt, double smoothing, ir_loc loc);

/* ---- drop_path.c ------------------------------------------------------------------------- */

/* The number of residual adds (ADD nodes named "<block>.residual") of a forward graph. */
int pass_drop_path_count(const ir_graph *f);
/* The forward graph with INPUT "drop_path" (f32 [R*B], R = pass_drop_path_count) and every
 * residual ADD(x, branch) reading branch * its [B,1,..] slice. NULL with err when there is none. */
ir_graph *pass_drop_path_forward(const ir_graph *f, char *err, size_t errsize);

/* ---- loss_scale.c ------------------------------------------------------------------------ */

#define PASS_LOSS_SCALE_INIT 65536.0f    /* GradScaler's init_scale */
#define PASS_LOSS_SCALE_INTERVAL 2000    /* GradScaler's growth_interval */
#define PASS_LOSS_SCALE_MAX_COUNT 16777216L /* 2^24: the scaler's f32 counters stay exact below */

/* --loss-scale's default for a --precision: "dynamic" for fp16, "none" for the others. */
const char *pass_loss_scale_default(const char *precision);
/* The STATE "loss_scaler" (f32 [IR_SCALER_SLOTS], its initial value from o in node.data).
 * Returns its index, or -1 with g->error. */
int pass_loss_scale_state(ir_graph *g, const pass_train_options *o, ir_loc loc);
/* The backward's seed under loss scaling: the scale, SLICE [0,1) of the scaler. */
int pass_loss_scale_seed(ir_graph *g, int scaler, ir_loc loc);

/* ---- fusion.c ---------------------------------------------------------------------------- */

/* The named fusions, as bits. "all" (the default) is every fusion marked default in fusion.c's
 * table; opt-in fusions run only when named. */
enum {
    PASS_FUSE_LAYER_NORM_STATS = 1, /* "layer-norm-stats" (forward-fusion, opt-in): LAYER_NORM
                                       keeps its rows' mean and rstd for its backward
                                       (LAYER_NORM_STATS + PROJECT, dx by LAYER_NORM_DX_STATS) */
    PASS_FUSE_ADAMW_GROUP = 2,      /* "adamw-group" (fusion, default): the f32 ADAMW updates
                                       with one opt input and hyperparameters run as one launch
                                       (ir_node.group) */
    PASS_FUSE_BIAS_GELU = 4,        /* "bias-gelu" (fusion, default): a linear layer's bias add and
                                       the GELU after it in one elementwise kernel (ir_node.chain) */
    PASS_FUSE_ELEMENTWISE_CHAIN = 8, /* "elementwise-chain" (fusion, default): runs of elementwise
                                       nodes, each reading the one before, in one kernel */
    PASS_FUSE_BIAS_GELU_GRAD = 16,  /* "bias-gelu-grad" (fusion, default): GELU_GRAD and the fc1
                                       bias gradient (its column sum) in one kernel (a chain) */
    PASS_FUSE_BIAS_GRAD = 32,       /* "bias-grad" (fusion, default): another elementwise node and
                                       the column sum of it (a bias gradient), moved behind it, in
                                       one kernel (a new graph) */
    PASS_FUSE_GELU_EPILOGUE = 64,   /* "gelu-epilogue" (fusion, default): tanh GELU models only:
                                       the MLP's bias + GELU and its backward's GELU derivative +
                                       bias gradient in the epilogues of the GEMMs beside them
                                       (cuBLASLt's GELU_AUX_BIAS and DGELU_BGRAD; a new graph) */
    PASS_FUSE_RESIDUAL_LAYER_NORM = 128, /* "residual-layer-norm" (fusion, default): a LayerNorm
                                       joins the elementwise chain that makes its input (the
                                       residual add): one kernel stores the sum and normalizes */
    PASS_FUSE_LAYER_NORM_DBETA = 256, /* "layer-norm-dbeta" (fusion, default): a LayerNorm's beta
                                       gradient summed in its gamma gradient's kernel */
    PASS_FUSE_QKV_ATTENTION = 512,  /* "qkv-attention" (forward-fusion, default): softmax attention
                                       over the qkv projection's [B,N,3D] value as one ATTENTION
                                       (O, LSE), its derivative one ATTENTION_BWD */
    PASS_FUSE_RESIDUAL_LAYER_NORM_GRAD = 1024, /* "residual-layer-norm-grad" (fusion, default): a
                                       LayerNorm's input gradient and the residual gradient's add
                                       after it (and the bias gradient summed from that) in one
                                       row kernel */
    PASS_FUSE_SELECT_TOKEN_LAYER_NORM = 2048, /* "select-token-layer-norm" (forward-fusion,
                                       default): the final LayerNorm computed only on the token
                                       rows the head selects (forward and backward) */
    PASS_FUSE_SOFTMAX_CROSS_ENTROPY = 4096, /* "softmax-cross-entropy" (fusion, default): the
                                       loss and its dlogits in one row kernel */
};

/* Parses --fuse: "all", "none", or a comma list of fusion names (and "all"). 0 with *bits set,
 * else -1 with err naming the unknown name and listing the known ones. */
int pass_fuse_parse(const char *spec, unsigned *bits, char *err, size_t errsize);
/* "adamw-group,layer-norm-stats" (or "none") into buf; returns buf. */
const char *pass_fuse_names(unsigned bits, char *buf, size_t size);

/* layer-norm-stats: a new graph where every LAYER_NORM is LAYER_NORM_STATS read through
 * PROJECT 0 (which takes over its name, flags and users). NULL with err on failure. */
ir_graph *pass_fuse_layer_norm_stats(const ir_graph *g, char *err, size_t errsize);
/* qkv-attention (fusion_attention.c): a new graph where each softmax attention over views of
 * one [B,N,3D] value (q, k, v its head splits at columns 0, D, 2D; scores = q k^T * scale,
 * softmax, times v) is ATTENTION(qkv) read through PROJECT, the views between them and the
 * chain's nodes left unread dropped. *fused (may be NULL): how many it replaced. NULL with err
 * on failure. */
ir_graph *pass_fuse_qkv_attention(const ir_graph *g, int *fused, char *err, size_t errsize);
/* the widest head qkv-attention fuses (the fused kernels' shared-memory tiles hold hd <= 128) */
#define PASS_ATTENTION_MAX_HEAD_DIM 128
/* adamw-group: numbers the groups of ADAMW nodes that can share a launch (consecutive in node
 * order, f32 parameter, gradient and state, the same opt input, betas and eps; runs of two or
 * more). Returns the number of groups. */
int pass_fuse_adamw_group(ir_graph *g);
/* bias-gelu: numbers the chains ADD(MATMUL, bias) -> GELU (consecutive in node order, same
 * shape). Returns how many it made. */
int pass_fuse_bias_gelu(ir_graph *g);
/* elementwise-chain: numbers the chains of elementwise nodes consecutive in node order, each
 * reading the one before with its shape (at most 4 members; extends chains already made).
 * Returns how many new chains it made. */
int pass_fuse_elementwise_chain(ir_graph *g);

/* ---- fusion_grad.c ------------------------------------------------------------------------ */

/* bias-gelu-grad: numbers the chains GELU_GRAD -> SUM_TO of it to its last dim (consecutive in
 * node order). Returns how many it made. */
int pass_fuse_bias_gelu_grad(ir_graph *g);
/* bias-grad: a new graph where each SUM_TO of an elementwise node x (not GELU_GRAD) to x's last
 * dim comes right after x, the two a chain; *count of them. NULL with err on failure. */
ir_graph *pass_fuse_bias_grad(const ir_graph *g, int *count, char *err, size_t errsize);

/* ---- fusion_gemm.c ------------------------------------------------------------------------ */

/* gelu-epilogue: a new graph where MATMUL -> ADD(bias) -> GELU tanh and MATMUL -> GELU_GRAD
 * tanh -> SUM_TO (the bias gradient) are consecutive chains that start with the MATMUL (one
 * GEMM with an epilogue); *count of them. NULL with err on failure. */
ir_graph *pass_fuse_gelu_epilogue(const ir_graph *g, int *count, char *err, size_t errsize);

/* ---- fusion_rows.c ------------------------------------------------------------------------ */

/* residual-layer-norm: each LAYER_NORM of an elementwise node x that ends an elementwise chain
 * (or of x alone), x stored for other readers, only leaves between: the LayerNorm joins the
 * chain as its last member. Returns how many. */
int pass_fuse_residual_layer_norm(ir_graph *g);
/* layer-norm-dbeta: chains LAYER_NORM_DGAMMA(dy, x) with a SUM_TO(dy) to its last dim right
 * after it. Returns how many. */
int pass_fuse_layer_norm_dbeta(ir_graph *g);
/* residual-layer-norm-grad: each LAYER_NORM_DX whose value the elementwise node right after
 * it reads (with its shape) starts that node's chain (one made of elementwise members, maybe
 * ending in a column sum), or a chain of the two. Returns how many. */
int pass_fuse_residual_layer_norm_grad(ir_graph *g);
/* select-token-layer-norm: a new graph where each LAYER_NORM read only through SLICEs along
 * another axis than its last (the head's token selection) is, for each slice, the LAYER_NORM of
 * that slice of its input; *count of them. NULL with err on failure. */
ir_graph *pass_fuse_select_token_layer_norm(const ir_graph *g, int *count, char *err, size_t errsize);
/* softmax-cross-entropy: a new graph where each CROSS_ENTROPY with a CROSS_ENTROPY_GRAD over
 * its logits, labels and opt that does not depend on it (nor does anything between) sits right
 * before that derivative, the two a chain; *count of them. NULL with err on failure. */
ir_graph *pass_fuse_softmax_cross_entropy(const ir_graph *g, int *count, char *err, size_t errsize);

/* ---- precision.c -------------------------------------------------------------------------- */

/* The precision stage: "fp32" (or NULL) keeps the graph as it is; "tf32" gives every matmul
 * with f32 operands compute=tf32 (in place); "fp16" and "bf16" run the casting pass (the file's
 * header says what it keeps in f32): a new graph. Returns g itself (fp32, tf32), the new graph
 * (the caller frees g), or NULL with err. */
ir_graph *pass_precision(ir_graph *g, const char *precision, char *err, size_t errsize);
/* 0 fp32, 1 tf32, 2 fp16, 3 bf16; -1 with err for anything else (NULL included). */
int pass_precision_parse(const char *precision, char *err, size_t errsize);

/* ---- autodiff.c ------------------------------------------------------------------------- */

/* Appends to g the reverse-mode derivative of scalar node `loss` (seeded with node `seed`,
 * shape [1]) with respect to every node in wrt[0..nwrt); grads[i] receives the gradient node of
 * wrt[i] (-1 if the loss does not depend on it). Only nodes on a path from a wrt node to the
 * loss get gradients; gradients of values used several times are summed. Gradient nodes are
 * named "d.<forward name>" and carry the forward node's location. 0 on success; -1 with
 * g->error set when an op on the path has no derivative rule (the backward helper ops, the
 * optimizer ops: no second order). */
int pass_autodiff(ir_graph *g, int loss, int seed, const int *wrt, int nwrt, int *grads);

/* ---- schedule.c, memplan.c: execution order and the device arena (read by codegen) ----- */

/* Execution order of g's computing nodes (leaves excluded): topological, effect nodes (ADAMW)
 * last, the members of a fusion group next to each other. Writes at most g->n node indices to
 * order; returns how many. */
int pass_schedule(const ir_graph *g, int *order);
/* The schedule's invariants: every input of a step is a leaf or an earlier step, no effect
 * before a non-effect, each fusion group contiguous. 0, or -1 with err. */
int pass_schedule_check(const ir_graph *g, const int *order, int n, char *err, size_t errsize);

/* One device arena for a training step. Persistent buffers (WEIGHT, STATE, INPUT, outputs)
 * come first, never shared; every other value lives from the step that computes it to its
 * last reader, and values whose lifetimes do not overlap share memory. Views (RESHAPE,
 * PROJECT) alias their input (no copy; PROJECT k at output k's place in a multi-output
 * node's buffer); ADAMW aliases its parameter (updated in place). Offsets are 256-aligned. */
typedef struct {
    int n;                   /* nodes of the graph */
    int64_t *offset;         /* [n] byte offset of the node's value, -1: none (unscheduled) */
    int *alias_of;           /* [n] node whose buffer holds this value (itself if its own) */
    int64_t *scratch_offset; /* [n] byte offset of the node's scratch, -1: none */
    unsigned char *persistent; /* [n] 1 if the node's buffer is persistent */
    int64_t arena_bytes;     /* total arena size */
    int64_t persistent_bytes;
    int64_t peak_bytes;      /* max over steps of the bytes live at once (persistent included) */
    int *pos, *last;         /* [n] schedule position of each node and the last step that reads
                                its buffer's root (-1: unscheduled) */
    int64_t *pitch;          /* [n] elements from one row (last dim) of the value to the next: the
                                last dim, or a 16-bit attention value's rows padded to a multiple
                                of 8 (memplan.c says which); the kernels and GEMMs that touch a
                                padded value index its rows by it */
} pass_mem_plan;

#define PASS_MEM_ALIGN 256

/* Plans the arena for g executed in `order` (nsteps nodes). scratch_bytes (may be NULL): per
 * node, temporary bytes it needs while it runs. Returns NULL only on allocation failure. */
pass_mem_plan *pass_mem_plan_new(const ir_graph *g, const int *order, int nsteps,
                                 const int64_t *scratch_bytes);
void pass_mem_plan_free(pass_mem_plan *p);
/* The plan's invariants: every buffer inside the arena and aligned, views at their root's
 * offset (plus the output's place for PROJECT), and no two buffers (scratch included) that
 * are live at the same step overlap. 0, or -1 with err naming the two. */
int pass_mem_plan_check(const ir_graph *g, const pass_mem_plan *p, const int64_t *scratch_bytes,
                        char *err, size_t errsize);
/* Bytes of node's value (numel * dtype size, rounded up to PASS_MEM_ALIGN; a multi-output
 * node: all its outputs, each rounded up). */
int64_t pass_mem_bytes(const ir_node *n);
/* Bytes of node i's buffer in plan p: pass_mem_bytes, with its rows at p's pitch. */
int64_t pass_mem_value_bytes(const ir_graph *g, const pass_mem_plan *p, int i);
/* Where output k of node n starts in its buffer (bytes; 0 for output 0). */
int64_t pass_mem_output_offset(const ir_node *n, int k);

/* ---- pipeline.c ------------------------------------------------------------------------- */

typedef struct {
    int training;               /* build the training step (else: the forward graph only) */
    pass_train_options train;
    const char *precision;      /* --precision: "fp32", "tf32", "fp16", "bf16" (NULL: fp32) */
    const char *fuse;           /* --fuse: "all" (NULL: all), "none", or NAME,... */
    /* bytes of scratch node i's kernels need while they run (codegen knows: cg_scratch_bytes);
     * NULL: none. The memory plan reserves them. */
    int64_t (*scratch_bytes)(const ir_graph *g, int node);
} pass_options;

void pass_options_default(pass_options *o); /* training on, fp32, all fusions */
/* Checks --precision and --fuse before any work: 0, or -1 with err. */
int pass_options_check(const pass_options *o, char *err, size_t errsize);

/* What the pipeline produced: the graph, and from the schedule and memory-plan stages (when
 * they ran) the order and the arena. Codegen reads only this. */
typedef struct {
    ir_graph *g;
    const char *last_stage;   /* the name of the last stage that ran */
    const char *precision;    /* "fp32", "tf32", "fp16" or "bf16" (a static string) */
    unsigned fusions;         /* PASS_FUSE_* bits of the fusions that ran */
    int *order, norder;       /* the schedule; NULL before the schedule stage */
    int64_t *scratch;         /* [g->n] scratch bytes per node; NULL before the memory plan */
    pass_mem_plan *mem;       /* NULL before the memory plan */
} pass_result;

/* Names of the stages in order, NULL-terminated: "check", "forward-fusion", "training",
 * "precision", "fusion", "schedule", "memplan". */
extern const char *const pass_names[];

/* Runs the stages in order on `g` (which it takes over and frees), stopping after the stage
 * named `stop_after` (NULL: run all). Verifies the result after each stage. Returns the
 * result, or NULL with err. */
pass_result *pass_pipeline_run(ir_graph *g, const pass_options *o, const char *stop_after,
                               char *err, size_t errsize);
void pass_result_free(pass_result *r);
/* Frees r but its graph, which it returns (NULL for r NULL): for callers that need only the
 * graph (the interpreter). */
ir_graph *pass_result_take_graph(pass_result *r);
/* The graph (ir_print), then the schedule and the memory plan where they were made. */
void pass_result_print(const pass_result *r, FILE *out);

#endif
