/* plan.h: the contract between the code generator and the executable's runtime.
 *
 * `deitc compile` emits, besides kernels.cu, a C file `plan.c` that defines one constant
 * `rt_plan` object (the symbol `deitc_plan`): the device arena's size, every named tensor in
 * it (weights, optimizer state, inputs, outputs) and the ordered list of steps of one training
 * iteration (kernel launches and matrix products). The runtime executes the list as is: it
 * allocates the arena once, binds tensors by offset, and replays the steps (on cuda as a CUDA
 * Graph). Nothing here refers to IR types: the executable carries no compiler.
 *
 * Invariants: offsets are 256-byte aligned and inside arena_bytes; steps only reference
 * tensors/offsets inside the arena; kernel indices are < num_kernels.
 */
#ifndef DEITC_RT_PLAN_H
#define DEITC_RT_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/rt.h"

/* Slots of the INPUT "opt" (f32 [RT_OPT_SLOTS]) the host fills before each step.
 * ORDER: identical to IR_OPT_* in ir/ir.h. */
enum {
    RT_OPT_LR = 0,
    RT_OPT_WEIGHT_DECAY,
    RT_OPT_BIAS_CORR1,  /* 1 - beta1^t */
    RT_OPT_BIAS_CORR2,  /* 1 - beta2^t */
    RT_OPT_GRAD_SCALE,  /* gradient multiplier (loss-scale undo); 1 normally */
    RT_OPT_SKIP,        /* nonzero: AdamW skips the update (set on the device by loss scaling); 0 */
    RT_OPT_SLOTS
};

/* Slots of the STATE "loss_scaler" (f32 [RT_SCALER_SLOTS]) of a plan built with loss scaling,
 * kept on the device and updated at the end of every step (runtime/loss_scale.c reads them).
 * ORDER: identical to IR_SCALER_* in ir/ir.h. */
enum {
    RT_SCALER_SCALE = 0, /* the loss scale the next step uses */
    RT_SCALER_GROWTH,    /* clean steps since the scale last changed */
    RT_SCALER_SKIPPED,   /* steps skipped so far */
    RT_SCALER_OVERFLOW,  /* 1: the last step's gradients were not finite */
    RT_SCALER_STEP,      /* AdamW updates taken (the bias corrections' t) */
    RT_SCALER_INTERVAL,  /* growth interval (dynamic) */
    RT_SCALER_MODE,      /* RT_LOSS_SCALE_* */
    RT_SCALER_SLOTS
};
/* ORDER: IR_LOSS_SCALE_* */
enum { RT_LOSS_SCALE_NONE = 0, RT_LOSS_SCALE_STATIC, RT_LOSS_SCALE_DYNAMIC };

/* The slots of AdamW step t (1-based) at learning rate lr and weight decay wd, with the
 * model's betas: what every executable and `deitc run` feed the graph (common.c). The
 * executables and the f32 interpreter round them to float. */
void rt_opt_fill(double slots[RT_OPT_SLOTS], double lr, double wd, double beta1, double beta2, long t);

/* What a named tensor in the arena is for. ORDER: the runtime's role names. */
typedef enum {
    RT_ROLE_WEIGHT,     /* trained (or frozen) parameter: loaded by --init, written by --save */
    RT_ROLE_STATE,      /* optimizer state: zeroed at start (checkpointed later) */
    RT_ROLE_INPUT,      /* filled by the host each step: "images", "labels", "opt" */
    RT_ROLE_OUTPUT,     /* read by the host after a step: "loss", "logits", "grad.*" */
} rt_role;

typedef struct {
    const char *name;         /* timm / initializer name, or "images", "loss", ... */
    rt_role role;
    rt_dtype dtype;
    int ndim;
    int64_t shape[RT_MAX_DIMS];
    uint64_t offset;          /* bytes from the arena's start */
    uint64_t bytes;
    rt_init init;             /* WEIGHT without --init: how to initialize */
    float init_std;
    int decay;                /* WEIGHT: gets weight decay (informational) */
    const float *init_data;   /* WEIGHT: the model file's values (f32, numel), embedded in the
                               * executable; used when --init lacks the tensor. NULL: use init */
} rt_plan_tensor;

/* One kernel argument: a pointer into the arena, or a scalar. */
typedef enum { RT_ARG_PTR, RT_ARG_I64, RT_ARG_F32 } rt_arg_kind;
typedef struct {
    rt_arg_kind kind;
    uint64_t offset;          /* RT_ARG_PTR: arena offset in bytes */
    int64_t i64;              /* RT_ARG_I64 */
    float f32;                /* RT_ARG_F32 */
} rt_arg;

/* C = alpha * op(A) @ op(B) + beta * C, column-major in cuBLAS terms is the generator's
 * business: the runtime passes these fields to cuBLASLt (cuda) or its CPU GEMM (emu) as is.
 * Row-major meaning (what the emu implements and the generator emits):
 *   for each batch b: C_b[M,N] = alpha * opA(A_b)[M,K] @ opB(B_b)[K,N] + beta * C_b
 *   A_b = A + b*stride_a elements (row-major [M,K], or [K,M] if trans_a), lda its row pitch;
 *   likewise B with ldb, C with ldc. stride 0 broadcasts an operand over the batch. */
/* How a GEMM's products are computed (cuBLASLt's compute type; the plan decides, per GEMM):
 *   RT_COMPUTE_32F            fp32 products and accumulation (f32 operands: true fp32)
 *   RT_COMPUTE_32F_FAST_TF32  f32 operands rounded to TF32 (10 mantissa bits) for tensor cores,
 *                             fp32 accumulation (--precision tf32). The emu models the rounding
 *                             as round-to-nearest-even (rt_round_tf32). ORDER: IR_COMPUTE_*. */
typedef enum { RT_COMPUTE_32F = 0, RT_COMPUTE_32F_FAST_TF32 = 1 } rt_compute;

typedef struct {
    int trans_a, trans_b;
    int64_t m, n, k, batch;
    int64_t lda, ldb, ldc;
    int64_t stride_a, stride_b, stride_c;   /* elements */
    float alpha, beta;
    rt_dtype a_type, b_type, c_type;        /* RT_F32 now; RT_F16/RT_BF16 with mixed precision */
    rt_compute compute;                     /* RT_COMPUTE_32F_FAST_TF32 needs f32 operands */
    uint64_t a, b, c;                       /* arena offsets in bytes */
} rt_gemm;

typedef enum { RT_STEP_KERNEL, RT_STEP_GEMM, RT_STEP_ZERO } rt_step_kind;

typedef struct {
    rt_step_kind kind;
    const char *what;         /* the IR node(s) this step computes, for errors and profiles */
    /* RT_STEP_KERNEL */
    int kernel;               /* index into the plan's kernels */
    unsigned grid[3], block[3];
    unsigned shared_bytes;    /* dynamic shared memory */
    int nargs;
    const rt_arg *args;
    /* RT_STEP_GEMM */
    rt_gemm gemm;
    /* RT_STEP_ZERO: memset(arena + offset, 0, bytes) */
    uint64_t offset, bytes;
} rt_plan_step;

/* emu target: the kernels compiled into the executable, called with cuLaunchKernel-style
 * argument pointers (args[i] points at the i-th argument's value). */
typedef void (*rt_emu_kernel_fn)(const unsigned grid[3], const unsigned block[3],
                                 unsigned shared_bytes, void **args);

typedef struct {
    const char *model_name;
    int64_t batch, img_size, in_chans, num_classes;
    const char *precision;          /* "fp32", ... */
    uint64_t arena_bytes;
    uint64_t peak_bytes;            /* what the memory planner reported */
    int num_tensors;
    const rt_plan_tensor *tensors;
    int num_steps;
    const rt_plan_step *steps;
    int num_eval_steps;             /* steps[0..n) compute logits and loss: what eval runs (0: all) */
    int num_kernels;
    const char *const *kernel_names;
    /* cuda target: cubin (and PTX for a newer GPU) for kernel_names; NULL on emu */
    const unsigned char *cubin;
    size_t cubin_size;
    const char *ptx;
    const char *arch;               /* "sm_90" */
    /* emu target: one function per kernel; NULL on cuda */
    const rt_emu_kernel_fn *emu_kernels;
    double beta1, beta2, adam_eps;  /* the optimizer's constants (bias corrections on the host) */
    /* cuda target: cuBLASLt's workspace, a region of the arena (bytes 0: the runtime allocates
     * its own, as hand-written plans in tests do) */
    uint64_t gemm_workspace_offset, gemm_workspace_bytes;
} rt_plan;

extern const rt_plan deitc_plan;

#endif
