/* emit_internal.h: what the emitter's files share (private to codegen/emit*.c).
 *
 * The emitter is a driver and kernel families:
 *   emit.c            driver: the program, its steps, kernel deduplication, and the per-op
 *                     table (each op's emitter and scratch size; every op has a row)
 *   emit_text.c       CUDA-text helpers: growing strings, dtype loads/stores, float literals,
 *                     index arithmetic (offset terms, broadcasting)
 *   emit_pointwise.c  elementwise ops and gathers (permute, slice, pad, concat, patchify)
 *   emit_chain_reduce.c  an elementwise chain ending in a column sum (a bias gradient)
 *   emit_reduce.c     reductions: sum_to, reduce_mean, sum_squares; shared two-pass helpers
 *   emit_rows.c       row ops: layer_norm (dx, dgamma), softmax (grad), cross_entropy (grad)
 *   emit_optim.c      optimizer: adamw (one tensor, and a run of them in one launch), clip_coef
 *   emit_gemm.c       matmul -> rt_gemm steps
 *   emit_attention.c  attention, attention_bwd: fused softmax attention over qkv in place (FMA
 *                     kernels; emit_attention_mma.c the tensor-core ones, emit_attention.h)
 *
 * A family's emitter reads the node e->node of e->g and appends one or more launches through
 * cg_finish (or GEMM steps through cg_add_step). Every size is a compile-time constant in the
 * kernel text; all arithmetic is float, values load/store through the dtype's conversion. */
#ifndef DEITC_EMIT_INTERNAL_H
#define DEITC_EMIT_INTERNAL_H

#include "codegen/codegen.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- emit_text.c: CUDA-text helpers ------------------------------------------------------- */

/* A growing string: {0} is empty; s is NULL until the first append, then NUL-terminated. */
typedef struct {
    char *s;
    size_t n, cap;
} sb;

void cg_sb_vprintf(sb *b, const char *fmt, va_list ap);
void cg_sb_printf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

/* An expression loading `ref` (an lvalue of dtype t) as float. */
const char *cg_ld(char *buf, size_t size, ir_dtype t, const char *ref);
/* The float expression `v` converted for a store to dtype t. */
const char *cg_st(char *buf, size_t size, ir_dtype t, const char *v);
/* A float literal that reads back as the float nearest to x. */
const char *cg_flit(char *buf, size_t size, double x);

static inline int64_t pow2ceil(int64_t x) {
    int64_t p = 1;
    while (p < x) p *= 2;
    return p;
}

static inline int64_t round32(int64_t x) { return (x + 31) / 32 * 32; }

static inline int64_t last_dim(const ir_node *n) { return n->shape[n->ndim - 1]; }

/* index terms: offset = sum over terms of ((i / div) % mod) * mul */
typedef struct {
    int64_t div, mod, mul; /* mod 0: no modulo needed */
} term;

/* Appends the offset expression of terms t over index variable iv ("0" for none). */
void cg_emit_terms(sb *b, const char *iv, const term *t, int nt);
/* Terms of the offset into `in` (right-aligned, broadcast over size-1 dims) of output
 * element i of shape out[0..nd). Consecutive dims of the same kind are merged. */
int cg_bcast_terms(const ir_node *in, int nd, const int64_t *out, term *t);

/* int indices while i + gridDim.x * blockDim.x cannot overflow */
static inline const char *idx_type(int64_t n) { return n < ((int64_t)1 << 30) ? "int" : "long long"; }

/* grid for a grid-stride loop over n elements with 256 threads */
static inline int64_t stride_grid(int64_t n) {
    int64_t g = (n + 255) / 256;
    if (g > 8192) g = 8192;
    return g < 1 ? 1 : g;
}

static inline const char *in_type(ir_dtype t) {
    switch (t) {
    case IR_F32: return "const float *";
    case IR_F16: return "const dc_half *";
    case IR_BF16: return "const dc_bf16 *";
    case IR_I32: return "const int *";
    default: return "const long long *";
    }
}

static inline const char *out_type(ir_dtype t) {
    switch (t) {
    case IR_F32: return "float *";
    case IR_F16: return "dc_half *";
    case IR_BF16: return "dc_bf16 *";
    case IR_I32: return "int *";
    default: return "long long *";
    }
}

/* ---- emit.c: the program under construction ---------------------------------------------- */

typedef struct {
    cg_program *p;
    const ir_graph *g;
    const pass_mem_plan *m;
    int node;            /* the node being emitted */
    char *err;
    size_t errsize;
} emitter;

/* One launch being built: parameters (type, name, arena offset) and the body text. */
typedef struct {
    sb body;
    int np;
    const char *ptype[CG_MAX_PARAMS];
    char pname[CG_MAX_PARAMS][16];
    int64_t off[CG_MAX_PARAMS];
    int fibers;
    unsigned dyn_shared; /* bytes of dynamic shared memory per block (DC_DYNAMIC_SHARED); 0: none */
    const char *tag; /* kernel name suffix: op name or a variant */
} launch;

static inline void param(launch *l, const char *type, const char *name, int64_t off) {
    assert(l->np < CG_MAX_PARAMS && off >= 0);
    l->ptype[l->np] = type;
    snprintf(l->pname[l->np], sizeof l->pname[0], "%s", name);
    l->off[l->np++] = off;
}

/* the arena offset of a node's value */
static inline int64_t off_of(emitter *e, int node) {
    int64_t o = e->m->offset[node];
    assert(o >= 0);
    return o;
}

void cg_add_step(cg_program *p, const rt_plan_step *s);
/* "%12 blocks.0.norm1" (heap) */
char *cg_node_label(const ir_graph *g, int i);
/* Finishes a launch of e->node: dedupes its kernel (frees l's body) and appends the step. */
void cg_finish(emitter *e, launch *l, int64_t grid, int block);

/* One row of the per-op table. */
typedef struct {
    cg_op_kind kind;
    int (*emit)(emitter *e);                                /* CG_OP_KERNELS: its steps */
    int64_t (*scratch)(const ir_graph *g, const ir_node *n); /* bytes while it runs; NULL: 0 */
    const char *why;                                        /* what happens instead (no emit) */
} cg_op_row;

/* ---- emit_pointwise.c -------------------------------------------------------------------- */

/* Opens / closes (and finishes) the grid-stride loop over `total` elements (variable i). */
void cg_loop_open(launch *l, int64_t total);
void cg_loop_close(emitter *e, launch *l, int64_t total);
/* The float expression of elementwise node n (an IR_OPF_ELEMENTWISE op, EXPAND or CONST)
 * applied to its operands' float expressions (operands[0], [1]; parenthesized where needed):
 * add over "a", "b" is "a + b"; scale over "x + y" is "(x + y) * 0.5f". Heap string. */
char *cg_expr_op(const ir_node *n, const char *const *operands);
/* The same, as the value n stores: rounded to n's dtype (f16: dc_h2f(dc_f2h(...)), ...), what an
 * intermediate of a fused chain must be to compute the same bits as the unfused nodes. */
char *cg_expr_value(const ir_node *n, const char *const *operands);
int cg_emit_elementwise(emitter *e);
/* An elementwise chain (bias-gelu: ir_node.chain) of `count` scheduled nodes, one kernel:
 * each member's value from its inputs (the chain's earlier members as registers, rounded to
 * their dtype as cg_expr_value says: the unfused nodes' bits), every member's value stored. */
void cg_emit_chain(emitter *e, const int *nodes, int count);
/* Whether chain member i's value is stored: unless it is no output and every reader of it is
 * in its chain (then it lives only in a register of the chain's kernel). */
int cg_chain_stores(const ir_graph *g, int i);
/* The pieces every chain kernel shares (emit_pointwise.c, emit_chain_reduce.c, emit_chain_rows.c):
 * cg_chain_params adds the parameters y<m> (members of nodes[0..count) whose value is stored)
 * and x<q> (the distinct inputs from outside those members, into ext[]; returns how many);
 * cg_chain_values writes, for element i of `shape` (inputs broadcast to it), a<q> loaded from
 * x<q>, v<m> each member's value rounded to its dtype, and the stores y<m>[i], each line
 * indented by `indent`. Members before `from` (0: none) are the caller's: it computes their v<m>
 * (and stores them), the two only read them. cg_chain_name_step names every member in the step just emitted (and
 * in its kernel's first use): "%35 a, %36 b". */
int cg_chain_params(emitter *e, launch *l, const int *nodes, int count, int from, int *ext);
void cg_chain_values(const ir_graph *g, sb *b, const int *nodes, int count, int from, const int *ext, int next,
                     const ir_node *shape, const char *indent);
void cg_chain_name_step(emitter *e, const int *nodes, int count);
int cg_emit_gather(emitter *e);

/* ---- emit_chain_reduce.c ------------------------------------------------------------------ */

/* A chain whose last member is a SUM_TO of the member before it to that member's last dim (a
 * bias gradient): the elementwise members computed and stored inside the column sum's pass 1,
 * whose plan, order and pass 2 are the unfused SUM_TO's (the same bits). Called by
 * cg_emit_chain. */
void cg_emit_chain_reduce(emitter *e, const int *nodes, int count);

/* ---- emit_reduce.c ------------------------------------------------------------------------ */

/* Two-pass plan of a reduction of nout outputs over R elements each (see emit_reduce.c). */
enum { RED_TARGET_BLOCKS = 512, RED_MIN_ROWS = 256 };
typedef struct {
    int tx, ty;
    int64_t tiles;   /* column tiles of tx outputs */
    int64_t chunks;  /* row ranges (1: single pass) */
    int64_t rows;    /* rows of a range, a multiple of ty */
} red_plan;

/* Block shape for nout outputs of r reduced elements each: tx outputs x ty partials. */
void cg_reduce_shape(int64_t nout, int64_t r, int *tx, int *ty);
red_plan cg_red_plan_of(int64_t nout, int64_t R);
/* Appends the partial-sum combination and the store; `acc` holds this thread's partial. */
void cg_reduce_finish(launch *l, int tx, int ty, int64_t nout, const char *store_fmt);
/* Pass 2 of a two-pass column reduction: y[o] = scale * sum over k of part[k][o]. */
void cg_emit_partials_sum(emitter *e, int64_t part, int64_t chunks, int64_t nout, double scale);
/* Pass 2 of a scalar reduction: y[0] = scale * (sum of part[0..nparts)). */
void cg_emit_block_total(emitter *e, int64_t part, int64_t nparts, double scale);
int cg_emit_reduce(emitter *e);
int64_t cg_reduce_scratch(const ir_graph *g, const ir_node *n);
int cg_emit_sum_squares(emitter *e);
int64_t cg_sum_squares_scratch(const ir_graph *g, const ir_node *n);

/* ---- emit_rows.c -------------------------------------------------------------------------- */

int cg_emit_layer_norm(emitter *e); /* layer_norm(_stats) and layer_norm_dx(_stats) */
int cg_emit_layer_norm_dgamma(emitter *e);
/* A chain [LAYER_NORM_DGAMMA, SUM_TO of its dy] (layer-norm-dbeta): dgamma and dbeta summed in
 * one pass over dy and x, and one pass 2 for both (rows wider than a warp's: the two apart).
 * Called by cg_emit_chain. */
void cg_emit_layer_norm_dgamma_dbeta(emitter *e, const int *nodes, int count);
int64_t cg_layer_norm_dgamma_scratch(const ir_graph *g, const ir_node *n);
int cg_emit_softmax(emitter *e); /* softmax and softmax_grad */
int cg_emit_cross_entropy(emitter *e); /* cross_entropy and cross_entropy_grad */
/* A chain [CROSS_ENTROPY, CROSS_ENTROPY_GRAD] (softmax-cross-entropy): the rows' losses and
 * dlogits in one kernel (then the losses' mean, as the plain loss). Called by cg_emit_chain. */
void cg_emit_cross_entropy_with_grad(emitter *e, const int *nodes, int count);
/* The widest row of the one-warp-a-row kernels. */
int cg_row_warp_max(void);
/* A warp-row kernel's head (lane, r; warps past the last row leave) for rows of C <= the warp
 * maximum; its grid and block. */
void cg_emit_row_head_warp(sb *b, const char *it, int64_t C, int64_t rows, int64_t *grid, int *block);
/* mean and rstd of the row held in registers xv (padding 0), as layer_norm's warp kernel. */
void cg_emit_row_stats_reg(sb *b, int64_t C, double eps);
/* opens the unrolled loop over a lane's columns (c defined); guard: skip padding columns */
void cg_emit_row_for(sb *b, int64_t C, int guard);
/* `float name[K]` = a lane's columns of the row at ptr (indexed by c), pad beyond C */
void cg_emit_row_load(sb *b, const char *name, const char *ptr, ir_dtype t, int64_t C, const char *pad);
/* How layer_norm_dgamma's kernel (and the LayerNorm-dx chain's) takes rows: blocks of *warps
 * warps, each block a range of *range rows (a warp every *warps-th row of it), *ranges of them;
 * summed: ranges long enough for column sums (partial sums per range; one range where a plain
 * column sum of C outputs over the rows takes one pass), else a row a warp. */
void cg_layer_norm_row_ranges(int64_t C, int64_t rows, int summed, int *warps, int64_t *range, int64_t *ranges);
/* Scratch of a SUM_TO that ends a chain starting with LAYER_NORM_DX (residual-layer-norm-grad):
 * the partial sums of its row ranges; -1 when it is no such SUM_TO (or its rows are too wide). */
int64_t cg_layer_norm_dx_sum_scratch(const ir_graph *g, const ir_node *sum);

/* ---- emit_chain_rows.c -------------------------------------------------------------------- */

/* A chain whose last member is a LAYER_NORM of the member before it (residual-layer-norm): the
 * elementwise members computed, stored, and normalized in one warp-row kernel (its arithmetic
 * the unfused kernels': the same bits); rows wider than a warp's: the chain, then the
 * LayerNorm, two launches. Called by cg_emit_chain. */
void cg_emit_chain_layer_norm(emitter *e, const int *nodes, int count);
/* A chain that starts with a LAYER_NORM_DX (residual-layer-norm-grad): the LayerNorm's input
 * gradient, then the elementwise members (the residual gradient's add) from it in registers,
 * and a column sum of the last member if the chain ends in one, in one kernel; rows wider than
 * a warp's: the LayerNorm dx, then the rest as a chain. Called by cg_emit_chain. */
void cg_emit_chain_layer_norm_dx(emitter *e, const int *nodes, int count);
int64_t cg_cross_entropy_scratch(const ir_graph *g, const ir_node *n);

/* ---- emit_optim.c ------------------------------------------------------------------------- */

int cg_emit_clip_coef(emitter *e);
int cg_emit_ema(emitter *e);
int cg_emit_adamw(emitter *e);
/* Whether ADAMW node i can join a multi-tensor launch: f32 parameter, gradient and state. */
int cg_adamw_multi_ok(const ir_graph *g, int i);
/* A fusion group of ADAMW nodes (adamw-group: consecutive in the schedule, same opt input):
 * one launch. */
void cg_emit_adamw_multi(emitter *e, const int *nodes, int count);

/* ---- emit_loss_scale.c -------------------------------------------------------------------- */

int cg_emit_loss_scale_opt(emitter *e);
int cg_emit_loss_scale_update(emitter *e);
/* 1 when opt node `opt` comes from LOSS_SCALE_OPT (through CLIP_COEF or not): the AdamW
 * kernels reading it return early when its SKIP slot is set. */
int cg_opt_may_skip(const ir_graph *g, int opt);

/* ---- emit_gemm.c -------------------------------------------------------------------------- */

int cg_emit_matmul(emitter *e);
/* A chain that starts with a MATMUL (gelu-epilogue): one GEMM step whose epilogue computes the
 * rest (GELU_AUX_BIAS, DGELU_BGRAD; plan.h). 0, or -1 with e->err. */
int cg_emit_gemm_epilogue(emitter *e, const int *nodes, int count);

/* ---- emit_attention.c --------------------------------------------------------------------- */

int cg_emit_attention(emitter *e); /* attention and attention_bwd (the qkv-attention fusion) */
/* whether an attention or attention_bwd node runs on tensor cores (f16/bf16, head dim % 16 == 0) */
int cg_attention_mma(const ir_graph *g, const ir_node *n);
/* whether the f16/bf16 tensor-core forward keeps K and V of the head in shared memory (N, hd) */
int cg_attention_kv_resident(int64_t n, int64_t hd);

#endif
