/* ir.h: the one central data structure of deitc, and everything that works on it directly.
 *
 * A graph is an array of nodes in topological order (a node's inputs have smaller indices),
 * allocated from one arena per graph. Every node has an op (ops.def), a dtype, a static shape
 * (batch included), inputs by node index, typed attributes, a name and the source location it
 * came from. Weights, runtime inputs, optimizer state and outputs are explicit.
 *
 * Sections follow the files that implement them:
 *   ir.c      arena, graph, builders, shape rules, verifier, lookups
 *   print.c   the text form (`deitc dump`)
 *   interp.c  the CPU reference interpreter: the semantics of every op
 *   interp_gemm.c  its matrix product, cache-blocked and threaded (bit-identical to the loop)
 *   (private to ir/: interp_values.c, the interpreter's pooled values; interp_par.c, its threads)
 */
#ifndef DEITC_IR_H
#define DEITC_IR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- op table --------------------------------------------------------------------------- */

enum {
    IR_OPF_LEAF = 1,        /* no inputs; value bound from outside or constant */
    IR_OPF_ELEMENTWISE = 2, /* out[i] depends on inputs at the broadcast index i only */
    IR_OPF_EFFECT = 4,      /* writes its inputs in place (optimizer); scheduled last */
    IR_OPF_ALIAS = 8,       /* a view of input 0's buffer (RESHAPE, PROJECT): no kernel, no copy */
    IR_OPF_AXIS = 16,       /* reads attrs.axis; a negative axis counts from the end */
    IR_OPF_GROUPABLE = 32,  /* nodes of this op may share a fusion group (ir_node.group) */
};

typedef enum {
#define X(name, text, nin, nout, flags) IR_OP_##name,
#include "ops.def"
#undef X
    IR_OP_COUNT
} ir_op;

const char *ir_op_name(ir_op op);   /* "matmul" */
int ir_op_arity(ir_op op);          /* -1: variadic (one or more) */
int ir_op_outputs(ir_op op);        /* 1, or more for a multi-output op (read through PROJECT) */
unsigned ir_op_flags(ir_op op);
int ir_op_from_name(const char *s); /* -1 when unknown */

/* ---- types ------------------------------------------------------------------------------ */

/* ORDER: the dtype names table in ir.c; rt_dtype in runtime/rt.h (codegen.h asserts it) */
typedef enum { IR_F32, IR_F16, IR_BF16, IR_I32, IR_I64, IR_DTYPE_COUNT } ir_dtype;

const char *ir_dtype_name(ir_dtype t); /* "f32" */
size_t ir_dtype_size(ir_dtype t);
int ir_dtype_is_float(ir_dtype t);

#define IR_MAX_DIMS 6
#define IR_MAX_INPUTS 8
#define IR_MAX_OUTPUTS 4 /* the most outputs an op in ops.def has */

typedef struct {
    const char *file; /* arena string; NULL when unknown */
    int line, col;    /* 1-based; 0 when unknown */
} ir_loc;

/* Slots of the optimizer's runtime input "opt" (f32 [IR_OPT_SLOTS]), filled by the host each
 * step (rt_opt_fill) so that schedules and loss scaling need no recompilation. ORDER: RT_OPT_*
 * in runtime/plan.h (codegen.h asserts it). */
enum {
    IR_OPT_LR = 0,         /* learning rate of this step */
    IR_OPT_WEIGHT_DECAY,   /* decoupled weight decay (applied where attrs.decay) */
    IR_OPT_BIAS_CORR1,     /* 1 - beta1^t */
    IR_OPT_BIAS_CORR2,     /* 1 - beta2^t */
    IR_OPT_GRAD_SCALE,     /* gradients are multiplied by this (clipping, loss-scale undo) */
    IR_OPT_SKIP,           /* nonzero: ADAMW leaves weight and moments as they are (a step whose
                              gradients were not finite under loss scaling); the host fills 0 */
    /* the run's options (EXE train --label-smoothing ...; the compile's values are the defaults) */
    IR_OPT_LABEL_SMOOTHING, /* CROSS_ENTROPY*: label smoothing s in [0, 1) */
    IR_OPT_CLIP_NORM,      /* CLIP_COEF: max global gradient norm; 0 = no clipping */
    IR_OPT_BETA1,          /* ADAMW: beta1, 1 - beta1 (each rounded from double on the host) */
    IR_OPT_ONE_MINUS_BETA1,
    IR_OPT_BETA2,          /* ADAMW: beta2, 1 - beta2 */
    IR_OPT_ONE_MINUS_BETA2,
    IR_OPT_ADAM_EPS,       /* ADAMW: eps */
    IR_OPT_EMA_DECAY,      /* EMA: decay d; 1 - d rounded on the host follows */
    IR_OPT_ONE_MINUS_EMA_DECAY,
    IR_OPT_SLOTS
};

/* Slots of the dynamic loss scaler's STATE "loss_scaler" (f32 [IR_SCALER_SLOTS]; training.c
 * builds it with --loss-scale, LOSS_SCALE_OPT reads it, LOSS_SCALE_UPDATE updates it in place at
 * the end of each step: GradScaler's state, on the device). Counters are exact up to 2^24.
 * ORDER: RT_SCALER_* in runtime/plan.h. */
enum {
    IR_SCALER_SCALE = 0,   /* the loss is multiplied by this (the backward's seed) */
    IR_SCALER_GROWTH,      /* clean steps since the scale last changed (GradScaler's growth tracker) */
    IR_SCALER_SKIPPED,     /* steps skipped so far (gradients not finite) */
    IR_SCALER_OVERFLOW,    /* 1: the last step's gradients were not finite; 0: they were */
    IR_SCALER_STEP,        /* AdamW updates taken: the bias corrections' t */
    IR_SCALER_INTERVAL,    /* clean steps after which a dynamic scale doubles */
    IR_SCALER_MODE,        /* IR_LOSS_SCALE_* */
    IR_SCALER_SLOTS
};
/* ORDER: RT_LOSS_SCALE_* */
typedef enum {
    IR_LOSS_SCALE_NONE = 0,    /* scale 1, nothing skipped (the step count still on the device) */
    IR_LOSS_SCALE_STATIC,      /* a fixed scale; steps with non-finite gradients skipped */
    IR_LOSS_SCALE_DYNAMIC,     /* GradScaler: halve on overflow, double after INTERVAL clean steps */
} ir_loss_scale_mode;

/* How a WEIGHT is initialized when no weights file gives it (timm's DeiT init). */
typedef enum { IR_INIT_ZEROS, IR_INIT_ONES, IR_INIT_TRUNC_NORMAL } ir_init;

/* How a MATMUL's products are computed (set by the precision pass). ORDER: RT_COMPUTE_* in
 * runtime/plan.h (codegen.h asserts it). */
typedef enum {
    IR_COMPUTE_32F = 0, /* products and accumulation in fp32 (its operands' precision) */
    IR_COMPUTE_TF32,    /* f32 operands rounded to TF32 (10 mantissa bits), fp32 accumulation */
} ir_compute;

/* Typed attributes; each op reads only the fields its row in ops.def names. */
typedef struct {
    int64_t axis;              /* CONCAT, SLICE, PAD, REDUCE_MEAN */
    int64_t start, end;        /* SLICE, PAD: element range along axis */
    int64_t perm[IR_MAX_DIMS]; /* PERMUTE */
    int64_t patch;             /* PATCHIFY, UNPATCHIFY: patch side in pixels */
    int trans_a, trans_b;      /* MATMUL */
    ir_compute compute;        /* MATMUL */
    int gelu_tanh;             /* GELU, GELU_GRAD: 1 = tanh approximation, 0 = exact erf */
    int decay;                 /* ADAMW: 1 = apply weight decay to this parameter */
    int output;                /* PROJECT: which output of its input (0-based) */
    int64_t heads;             /* ATTENTION, ATTENTION_BWD: heads in qkv's last dim */
    double alpha;              /* MATMUL and SCALE multiplier, CONST value */
    double eps;                /* LAYER_NORM*, ADAMW */
    double beta1, beta2;       /* ADAMW */
    double smoothing;          /* CROSS_ENTROPY*: label smoothing */
    ir_init init;              /* WEIGHT: default initializer (std in init_std) */
    double init_std;           /* WEIGHT: std of IR_INIT_TRUNC_NORMAL (truncated at 2 std) */
} ir_attrs;

/* How a model file holds a WEIGHT the frontend renamed (ir_node.src_name). */
typedef enum {
    IR_SRC_SAME = 0,     /* as the graph holds it */
    IR_SRC_TRANSPOSED,   /* 2-D, transposed: the file has [in,out], the graph PyTorch's [out,in] */
    IR_SRC_REPEATED,     /* the file repeats it along dim 0 (torch's static-batch export of an
                            expanded cls_token: [B,1,D] of identical rows; the graph [1,1,D]) */
} ir_src_layout;

enum {
    IR_NODE_TRAINABLE = 1, /* WEIGHT: gets a gradient and an optimizer update */
    IR_NODE_OUTPUT = 2,    /* value is reported (logits, loss, grad.*) */
};

typedef struct {
    ir_op op;
    ir_dtype dtype;
    int ndim;
    int64_t shape[IR_MAX_DIMS];
    int ninputs;
    int inputs[IR_MAX_INPUTS]; /* node indices, all smaller than this node's */
    ir_attrs attrs;
    unsigned flags;            /* IR_NODE_* */
    int group;                 /* fusion group (set by the fusion pass; 0: none): nodes of a
                                  IR_OPF_GROUPABLE op sharing a group run as one launch */
    int chain;                 /* elementwise chain (set by the fusion pass; 0: none): consecutive
                                  elementwise nodes of one chain, each after the first reading the
                                  one before (same shape), run as one kernel that stores every
                                  member's value; it may end in a SUM_TO of its last member to
                                  that member's last dim (a bias gradient: a column sum) or a
                                  LAYER_NORM of it (only leaves between), start with a LAYER_NORM_DX
                                  read by the member after it, be [CROSS_ENTROPY, its
                                  CROSS_ENTROPY_GRAD], or start with a MATMUL
                                  whose GEMM epilogue computes the rest (ir.c's verifier) */
    const char *name;          /* arena string, unique among leaves and outputs; may be NULL */
    ir_loc loc;
    const float *data;         /* WEIGHT (or CONST tensor) value from the model file, numel f32,
                                  arena-owned; NULL when the model file carries none */
    const char *src_name;      /* WEIGHT renamed by the frontend (timm's name for an ONNX
                                  initializer): the name in the model file; else NULL */
    ir_src_layout src_layout;  /* WEIGHT with src_name: how the file holds the value */
} ir_node;

/* Model facts the frontend knows, for `deitc inspect` and the runtime's data checks. */
typedef struct {
    const char *model_name;
    int64_t img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads;
    double mlp_ratio;
    int64_t batch;
    const char *note; /* arena string the frontend wants shown once (weights it could not name
                         as timm does), or NULL */
} ir_model_info;

/* ---- ir.c: arena ------------------------------------------------------------------------ */

typedef struct ir_arena_block ir_arena_block;
typedef struct {
    ir_arena_block *head;
} ir_arena;

void *ir_arena_alloc(ir_arena *a, size_t n); /* zeroed, 16-byte aligned; aborts on OOM */
void *ir_arena_try_alloc(ir_arena *a, size_t n); /* the same, NULL on OOM (sizes from inputs) */
char *ir_arena_strdup(ir_arena *a, const char *s);
char *ir_arena_printf(ir_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ir_arena_free(ir_arena *a);

/* ---- ir.c: graph and builders ----------------------------------------------------------- */

typedef struct {
    ir_arena arena;
    ir_node *nodes; /* n nodes in topological order (heap array, grows) */
    int n, cap;
    ir_model_info info;
    char error[512]; /* set by a builder whose shape rule rejects its inputs */
} ir_graph;

ir_graph *ir_graph_new(void);
void ir_graph_free(ir_graph *g);

/* Appends a node; computes its shape with the op's shape rule unless the op takes its shape
 * from the caller (RESHAPE, EXPAND, SUM_TO, UNPATCHIFY, leaves: pass ndim/shape).
 * Returns the new node's index, or -1 with g->error set ("node NAME (file:line:col): ...").
 * The builders below are thin wrappers that name the common cases. */
int ir_add(ir_graph *g, ir_op op, const int *inputs, int ninputs, const ir_attrs *attrs,
           ir_dtype dtype, int ndim, const int64_t *shape, const char *name, ir_loc loc);

int ir_leaf(ir_graph *g, ir_op op, ir_dtype dtype, int ndim, const int64_t *shape,
            const char *name, ir_loc loc);
int ir_unary(ir_graph *g, ir_op op, int x, const ir_attrs *attrs, const char *name, ir_loc loc);
int ir_binary(ir_graph *g, ir_op op, int a, int b, const ir_attrs *attrs, const char *name,
              ir_loc loc);
int ir_reshape(ir_graph *g, int x, int ndim, const int64_t *shape, const char *name, ir_loc loc);

/* Copies node `src` of `from` (inputs remapped through map[]) into g; map[] may be NULL when
 * indices stay the same. Returns the new index. Used by passes that rebuild a graph. */
int ir_copy_node(ir_graph *g, const ir_graph *from, int src, const int *map);

void ir_node_set_output(ir_graph *g, int node, const char *name);
int ir_find(const ir_graph *g, const char *name); /* leaf or output by name; -1 if none */
int64_t ir_numel(const ir_node *n);
/* The type of output k of node n: *out becomes a copy of n with output k's dtype, ndim and
 * shape (n itself for output 0). k must be below ir_op_outputs(n->op). */
void ir_node_output(const ir_node *n, int k, ir_node *out);
int ir_same_shape(const ir_node *a, const ir_node *b);
/* "[4,3,32,32]" into buf */
const char *ir_shape_str(const ir_node *n, char *buf, size_t size);

/* Formats "file:line:col: MESSAGE" into buf ("file: MESSAGE" without a line, MESSAGE without
 * a file): the one shape of an error that points into a model file. Returns buf. */
char *ir_loc_format(char *buf, size_t size, ir_loc loc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Shape rules and invariants of every node; 0 if fine, else -1 with g->error set: inputs
 * defined before use, nothing after an optimizer update, every shape what its rule gives,
 * unique leaf and output names, multi-output nodes read only through PROJECT (and never
 * outputs themselves), and fusion groups of one groupable op with the same opt input and
 * hyperparameters. The pipeline runs it after every stage. */
int ir_verify(ir_graph *g);

/* Total element count of trainable weights. */
int64_t ir_count_params(const ir_graph *g);

/* ---- print.c ---------------------------------------------------------------------------- */

/* One line per node: "%12 = matmul(%10, %11) f32[4,17,192] trans_b name=... @file:3:5" */
void ir_print(const ir_graph *g, FILE *out);

/* ---- interp.c: the reference interpreter ------------------------------------------------ */

/* Runs a graph on the CPU. Floating values are computed and stored in float32, or float64 when
 * created with use_f64; integer values are stored as int64. Leaves (INPUT, WEIGHT, STATE) are
 * bound by copying host data in; STATE starts at zero. ADAMW nodes update their WEIGHT and
 * STATE inputs in place, so running the graph K times takes K optimizer steps. */
typedef struct ir_interp ir_interp;

/* NULL when the leaves of g do not fit in memory (one double per element). */
ir_interp *ir_interp_new(const ir_graph *g, int use_f64);
void ir_interp_free(ir_interp *it);
/* From now on each run frees every value but the leaves' and the IR_NODE_OUTPUT nodes' after
 * its last reader (reusing the memory for later values); only those stay readable. Without
 * it, every value stays readable after a run. */
void ir_interp_release_dead(ir_interp *it);
/* Binds a leaf from float (f32) or int64 (integer dtypes) host data of the node's numel.
 * Distinct leaves may be bound from several threads at once. */
void ir_interp_set_f32(ir_interp *it, int node, const float *data);
void ir_interp_set_f64(ir_interp *it, int node, const double *data);
void ir_interp_set_i64(ir_interp *it, int node, const int64_t *data);
/* Runs every node in order; 0 on success, -1 with a message in ir_interp_error. */
int ir_interp_run(ir_interp *it);
const char *ir_interp_error(const ir_interp *it);
/* Reads a node's value (after a run, or a leaf's bound value) as float32/float64/int64. */
void ir_interp_get_f32(const ir_interp *it, int node, float *out);
void ir_interp_get_f64(const ir_interp *it, int node, double *out);
void ir_interp_get_i64(const ir_interp *it, int node, int64_t *out);

/* ---- interp_attention.c: ATTENTION and ATTENTION_BWD in the interpreter -------------------- */

/* out = node n's value (ATTENTION: O then LSE) from the inputs' values v[], in double, the
 * unfused way (scores, softmax, products); the caller rounds to the outputs' dtypes. */
void ir_interp_attention(const ir_graph *g, const ir_node *n, double *const *v, double *out);

/* ---- interp_gemm.c: the interpreter's matrix product ------------------------------------ */

/* c[t] (m x n, row-major, at c + t*m*n) = alpha * op(a[t]) @ op(b[t]) for t < batch, where
 * a[t] = a + a_off[t] is m x k (k x m when trans_a) and b[t] = b + b_off[t] is k x n (n x k
 * when trans_b). Each element sums k = 0..K-1 in order from +0, rounding every multiply and add
 * (as the plain triple loop), whatever the blocking and the number of threads. */
typedef struct {
    const double *a, *b;
    double *c;
    const int64_t *a_off, *b_off; /* [batch] element offsets */
    int64_t batch, m, n, k;
    int trans_a, trans_b;
    double alpha;
} ir_gemm_f64;
void ir_gemm_f64_run(const ir_gemm_f64 *p);
/* Threads for ir_gemm_f64_run (tests); default DEITC_GEMM_THREADS, else the online CPUs. */
void ir_gemm_f64_set_threads(int n);
/* Frees the calling thread's packing buffer, which ir_gemm_f64_run keeps from one product to the
 * next (ir_interp_free calls it; a later product makes a new one). */
void ir_gemm_f64_release(void);

#endif
