/* codegen.h: from an optimized training graph to a standalone executable.
 *
 * Sections follow the files that implement them:
 *   options.c  defaults
 *   emit*.c    the pipeline's schedule + memory plan -> a program: deduplicated CUDA C kernels
 *              (kernels.cu) and the ordered launch/GEMM steps of one training iteration; the per-op table.
 *              The kernel families it dispatches to (emit_internal.h, private): emit_text.c
 *              (CUDA-text helpers), emit_pointwise.c, emit_reduce.c, emit_rows.c,
 *              emit_optim.c, emit_gemm.c
 *   writer.c   the program's files: kernels.cu, plan.c (the rt_plan, runtime/plan.h), the emu
 *              glue (emu_glue.cc) and the per-kernel resource report
 *   stats.c    one step's work counted from a program: launches, GEMM calls, FLOPs, modeled bytes
 *   cost_model.c  a named GPU's peaks -> modeled step time, images/s, MFU by part (--stats)
 *   nvrtc.c    NVRTC (dlopen'd): kernels.cu -> cubin + PTX, registers/spills, on-disk cache
 *   compile.c  cg_compile: the whole chain, host compiler and link with the runtime into EXE
 *   locate.c   where the runtime and the models are (installed prefix, build tree, environment)
 */
#ifndef DEITC_CODEGEN_H
#define DEITC_CODEGEN_H

#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/plan.h"

/* The IR and the runtime mirror these enums, and codegen (and deitc run) pass their values
 * across as numbers: keep them in step. */
_Static_assert(IR_F32 == (int)RT_F32 && IR_F16 == (int)RT_F16 && IR_BF16 == (int)RT_BF16 &&
                   IR_I32 == (int)RT_I32 && IR_I64 == (int)RT_I64 && IR_DTYPE_COUNT == (int)RT_F64 /* files only, after the twins */,
               "ir_dtype and rt_dtype differ");
_Static_assert(IR_OPT_LR == (int)RT_OPT_LR && IR_OPT_WEIGHT_DECAY == (int)RT_OPT_WEIGHT_DECAY &&
                   IR_OPT_BIAS_CORR1 == (int)RT_OPT_BIAS_CORR1 && IR_OPT_BIAS_CORR2 == (int)RT_OPT_BIAS_CORR2 &&
                   IR_OPT_GRAD_SCALE == (int)RT_OPT_GRAD_SCALE && IR_OPT_SKIP == (int)RT_OPT_SKIP &&
                   IR_OPT_SLOTS == (int)RT_OPT_SLOTS,
               "IR_OPT_* and RT_OPT_* differ");
_Static_assert(IR_SCALER_SCALE == (int)RT_SCALER_SCALE && IR_SCALER_GROWTH == (int)RT_SCALER_GROWTH &&
                   IR_SCALER_SKIPPED == (int)RT_SCALER_SKIPPED && IR_SCALER_OVERFLOW == (int)RT_SCALER_OVERFLOW &&
                   IR_SCALER_STEP == (int)RT_SCALER_STEP && IR_SCALER_INTERVAL == (int)RT_SCALER_INTERVAL &&
                   IR_SCALER_MODE == (int)RT_SCALER_MODE && IR_SCALER_SLOTS == (int)RT_SCALER_SLOTS &&
                   IR_LOSS_SCALE_NONE == (int)RT_LOSS_SCALE_NONE && IR_LOSS_SCALE_STATIC == (int)RT_LOSS_SCALE_STATIC &&
                   IR_LOSS_SCALE_DYNAMIC == (int)RT_LOSS_SCALE_DYNAMIC,
               "IR_SCALER_* and RT_SCALER_* differ");
_Static_assert(IR_INIT_ZEROS == (int)RT_INIT_ZEROS && IR_INIT_ONES == (int)RT_INIT_ONES &&
                   IR_INIT_TRUNC_NORMAL == (int)RT_INIT_TRUNC_NORMAL,
               "ir_init and rt_init differ");
_Static_assert(IR_COMPUTE_32F == (int)RT_COMPUTE_32F && IR_COMPUTE_TF32 == (int)RT_COMPUTE_32F_FAST_TF32,
               "ir_compute and rt_compute differ");

typedef struct {
    const char *target;    /* "cuda" (default) or "emu" */
    const char *arch;      /* "sm_90"...; NULL: the local GPU's, else sm_90 */
    const char *emit_dir;  /* keep kernels.cu and the plan here; NULL: a temporary dir */
    const char *output;    /* the executable to write */
    long batch;            /* the batch the graph was built for */
} cg_options;

void cg_options_default(cg_options *o);

/* Writes the executable for the pipeline's result r (a training graph, its schedule and
 * memory plan; --precision and --fuse are pass options, already applied). 0 on success,
 * else -1 with err; never leaves a partial executable behind. */
int cg_compile(const pass_result *r, const cg_options *o, char *err, size_t errsize);

/* ---- emit.c ------------------------------------------------------------------------------ */

#define CG_MAX_PARAMS 12

typedef struct {
    char *name;            /* "k012_layer_norm" (kernels.cu's extern "C" symbol) */
    char *text;            /* the kernel's whole definition, header comment included */
    char *body;            /* the definition without name and comment: what dedupe compares */
    uint64_t hash;         /* of body */
    int needs_fibers;      /* emu: uses __syncthreads or warp operations */
    int nparams;
    const char *param_types[CG_MAX_PARAMS]; /* "float *", "const float *", ... (static) */
    char *desc;            /* "layer_norm f32[8,197,384] ..." of its first node */
    char *nodes;           /* "%12 blocks.0.norm1, ..." the nodes it computes */
    int nuses;             /* launches of it in the step list */
    int registers, spill_bytes; /* ptxas' report (cuda target); -1: unknown */
    int line, nlines;      /* where its text sits in kernels.cu (1-based), set by the writer */
} cg_kernel;

typedef struct {
    const ir_graph *g;     /* the pipeline's result, borrowed: */
    const pass_mem_plan *mem;
    const int *order;      /* the schedule */
    int norder;
    const char *precision; /* "fp32" */
    cg_kernel *kernels;
    int nkernels, kcap;
    rt_plan_step *steps;   /* args and what are heap copies owned by the program */
    int nsteps, scap;
    int *step_node;        /* [nsteps] the node each step computes (a fusion group: its first) */
    int emitting;          /* the node being emitted (what cg_add_step records) */
    int neval_steps;       /* steps[0..neval_steps) compute logits and loss: what EXE eval runs */
    double beta1, beta2, adam_eps;
} cg_program;

/* What the emitter does with an op: its row in the per-op table (emit.c). */
typedef enum {
    CG_OP_NO_ROW = 0, /* the table lacks the op: a bug cg_op_table_check reports */
    CG_OP_KERNELS,    /* one or more kernel launches */
    CG_OP_GEMM,       /* rt_gemm steps */
    CG_OP_ALIAS,      /* no step: shares its input's buffer (reshape) */
    CG_OP_LEAF,       /* no step: arena storage bound from outside (input, weight, state) */
} cg_op_kind;

cg_op_kind cg_op_kind_of(ir_op op);
/* 0 when every op has a complete row in the table, else -1 with err naming the first op that
 * has none. cg_program_new runs it first. */
int cg_op_table_check(char *err, size_t errsize);

/* Emits every scheduled node of the pipeline's result r (graph, schedule and memory plan,
 * which the program borrows: r must outlive it); a fusion group is one launch. NULL with err
 * when the graph has something the emitter cannot compile (names the node), or the pipeline
 * stopped before the memory plan. */
cg_program *cg_program_new(const pass_result *r, const cg_options *o, char *err, size_t errsize);
/* Bytes of scratch node i's kernels need while they run (partial sums of two-pass
 * reductions): what the pipeline's memory plan reserves (pass_options.scratch_bytes). */
int64_t cg_scratch_bytes(const ir_graph *g, int i);
void cg_program_free(cg_program *p);

/* ---- writer.c ----------------------------------------------------------------------------- */

/* cuda executables: bytes at the end of the arena given to cuBLASLt as its workspace. */
#define CG_GEMM_WORKSPACE_BYTES (32ll << 20)

/* kernels.cu: the prelude include and every kernel in first-use order; sets each kernel's
 * line/nlines. Returns a heap string. Same program -> byte-identical text. */
char *cg_kernels_source(cg_program *p);

/* Where plan.c finds the device code: cuda embeds cubin/PTX files with .incbin; emu refers
 * to the kernel table the glue defines. */
typedef struct {
    const char *target;      /* "cuda" or "emu" */
    const char *arch;        /* "sm_90" (cuda) */
    const char *cubin_path;  /* cuda: files to embed */
    const char *ptx_path;
    size_t cubin_size;
    const char *precision;
    const char *init_path;   /* the file cg_write_init_data wrote, or NULL when it had no data */
} cg_plan_target;

/* The weights' initial values from the model file (ONNX initializers), f32, concatenated in
 * plan order, for plan.c to embed with .incbin. Returns the bytes written (0: no weight has
 * data, write nothing to embed), or -1 on a write error. */
int64_t cg_write_init_data(const cg_program *p, FILE *f);

int cg_write_plan(const cg_program *p, const cg_plan_target *t, FILE *f);
/* emu_glue.cc: #includes kernels.cu and defines `deitc_emu_kernels`, one emu launcher each. */
int cg_write_emu_glue(const cg_program *p, FILE *f);
/* A table of kernels: name, uses, params, fibers, registers, spills; and the memory plan. */
void cg_write_report(const cg_program *p, FILE *f);

/* ---- stats.c: one step's work (modeled, from the plan; nothing measured) ------------------ */

typedef enum { /* the parts of the breakdown. ORDER: stats.c's part_names */
    CG_PART_GEMM,        /* the linear layers' products (forward and backward) */
    CG_PART_ATTENTION,   /* batched products of two batched operands, softmax, its gradient */
    CG_PART_LAYER_NORM,
    CG_PART_ELEMENTWISE, /* pointwise ops, gathers, reductions, constants, memsets */
    CG_PART_LOSS,        /* cross-entropy and its gradient */
    CG_PART_OPTIMIZER,   /* AdamW, gradient clipping */
    CG_PART_COUNT
} cg_part;

typedef enum { /* which peak rate a piece of work runs at. ORDER: cg_gpu.peak */
    CG_PEAK_F32,         /* CUDA cores, fp32 (every kernel, fp32 GEMMs) */
    CG_PEAK_TF32,        /* tensor cores, TF32 inputs */
    CG_PEAK_F16,         /* tensor cores, fp16 / bf16 inputs (dense) */
    CG_PEAK_COUNT
} cg_peak;

typedef struct {
    cg_part part;
    cg_peak peak;
    int node;            /* the IR node (a fusion group's first) */
    int launches;        /* plan steps: kernel launches, or 1 GEMM call */
    int gemms;           /* 1: a GEMM step */
    int64_t flops;       /* modeled float operations */
    int64_t bytes;       /* modeled device-memory reads + writes */
} cg_work;

typedef struct {
    cg_work *items;      /* one GEMM step, or one kernel node (group) with all its launches */
    int nitems, cap;
    int distinct_kernels;
    int64_t launches;    /* every plan step: kernel launches + GEMM calls (+ memsets) */
    int64_t gemm_calls;
    int64_t gemm_flops, other_flops, bytes;
    int64_t gemm_flops_at[CG_PEAK_COUNT]; /* GEMM FLOPs by the peak they run at */
    int64_t arena_bytes, peak_bytes;      /* the memory plan's */
    int64_t batch;
    const char *precision;
} cg_stats;

/* The peak a GEMM runs at, from its operand types (f16/bf16: tensor cores) and the program's
 * precision (tf32: TF32 tensor cores; fp32: CUDA cores). */
cg_peak cg_gemm_peak(const rt_gemm *gm, const char *precision);
const char *cg_part_name(cg_part p);
/* Counts program p's step (p must outlive nothing: s owns its items). */
void cg_stats_of(const cg_program *p, cg_stats *s);
void cg_stats_free(cg_stats *s);

/* ---- cost_model.c: modeled time on a named GPU ------------------------------------------- */

typedef struct {
    const char *name;     /* "h100" (what --model-gpu takes) */
    const char *full;     /* "H100 SXM5" */
    double peak[CG_PEAK_COUNT]; /* FLOP/s */
    double bandwidth;     /* HBM bytes/s */
    double launch_s;      /* seconds per kernel node inside a CUDA Graph replay */
} cg_gpu;

/* "h100", "h200", "a100"; NULL for any other name. */
const cg_gpu *cg_gpu_find(const char *name);
/* "h100, h200, a100" */
const char *cg_gpu_names(void);

typedef struct {
    double time_s;                      /* modeled step time */
    double images_per_s;                /* batch / time_s */
    double mfu;                         /* GEMM FLOPs at their peaks' time / step time */
    double part_time[CG_PART_COUNT];
    int64_t part_launches[CG_PART_COUNT], part_gemms[CG_PART_COUNT];
    int64_t part_flops[CG_PART_COUNT], part_bytes[CG_PART_COUNT];
} cg_cost;

/* Each work item's time is max(flops / peak, bytes / bandwidth) + launches * launch_s; the
 * step's is their sum (kernels of a CUDA Graph run one after another). */
void cg_cost_of(const cg_stats *s, const cg_gpu *gpu, cg_cost *c);
/* The table (--stats): every figure labelled modeled; the script-readable lines
 * "launches per step: N", "GEMM calls per step: N", "bytes per step: N", "FLOPs per step: N",
 * "modeled images/s (h100): N". */
void cg_stats_print(const cg_stats *s, const cg_gpu *gpu, FILE *f);
/* The same as one JSON object (--stats-json). */
void cg_stats_print_json(const cg_stats *s, const cg_gpu *gpu, FILE *f);

/* ---- nvrtc.c ------------------------------------------------------------------------------ */

/* The compute capability of the machine's first GPU as "sm_XY" (through the CUDA driver,
 * loaded with dlopen), or "sm_90" where there is no driver or GPU. */
const char *cg_default_arch(char *buf, size_t size);
/* Creates a directory and its parents (like mkdir -p); 0 on success or if it exists. */
int cg_mkdir_p(const char *path);

typedef struct {
    unsigned char *cubin;
    size_t cubin_size;
    char *ptx;             /* NUL-terminated */
    size_t ptx_size;       /* without the NUL */
    char *log;             /* ptxas' -v log (registers, spills) */
    int cached;            /* 1: came from the on-disk cache */
} cg_nvrtc_result;

/* The device library kernels.cu includes (runtime/kernel_prelude.cuh and the headers it
 * includes), as NVRTC gets them: in-memory headers by name. */
#define CG_MAX_HEADERS 8
typedef struct {
    int n;
    const char *names[CG_MAX_HEADERS]; /* "kernel_prelude.cuh", "dc_base.cuh", ... (static) */
    char *texts[CG_MAX_HEADERS];       /* heap */
} cg_headers;

/* Reads every header of the device library from rt_dir (the runtime/ folder). -1 with err
 * naming the file it cannot read. */
int cg_headers_read(cg_headers *h, const char *rt_dir, char *err, size_t errsize);
void cg_headers_free(cg_headers *h);

/* Compiles kernels.cu (the headers passed in memory) for arch "sm_XX", using the on-disk cache
 * ($XDG_CACHE_HOME/deitc, else ~/.cache/deitc; DEITC_CACHE_DIR overrides, DEITC_NO_CACHE=1
 * disables), keyed on the source, every header's name and text, the options and NVRTC's
 * version. On failure: -1 with err holding NVRTC's log, each error line annotated with the
 * kernel it falls in. Fills registers/spill_bytes of p's kernels. */
int cg_nvrtc_compile(cg_program *p, const char *source, const cg_headers *headers, const char *arch,
                     cg_nvrtc_result *out, char *err, size_t errsize);
void cg_nvrtc_result_free(cg_nvrtc_result *r);
/* Parses "ptxas info : Used N registers" / "N bytes spill stores" lines into p's kernels. */
void cg_parse_ptxas_log(cg_program *p, const char *log);
/* NVRTC's version ("13.0") and the name it was loaded by, into buf; -1 with err where NVRTC
 * cannot be loaded. */
int cg_nvrtc_version(char *buf, size_t size, char *err, size_t errsize);

/* ---- locate.c ----------------------------------------------------------------------------- */

#define CG_PATH_MAX 4096

typedef struct {
    char prefix[CG_PATH_MAX];        /* the installed prefix; "" in a build tree */
    char runtime_dir[CG_PATH_MAX + 64]; /* plan.h rt.h kernel_prelude.cuh cuda_emu.h ("" if unknown) */
    char runtime_libs[CG_PATH_MAX];  /* colon-separated static libraries, in link order */
    char models_dir[CG_PATH_MAX + 64]; /* the *.yaml that model names resolve to */
    const char *runtime_from, *models_from; /* "installed", "build tree", or the variable's name */
} cg_paths;

/* Finds deitc's files for the executable `exe` (NULL: this process, /proc/self/exe): the
 * installed layout around it if there is one, else the build tree's compiled-in paths; the
 * environment overrides either. Returns 1 for an installed layout, else 0. */
int cg_paths_find(const char *exe, cg_paths *out);
/* MODEL as given if it is a path or an existing file; else a model name: models_dir/MODEL, or
 * models_dir/MODEL.yaml. -1 with err (naming the models there are) if neither exists. */
int cg_model_resolve(const char *model, const cg_paths *p, char *out, size_t size, char *err, size_t errsize);
/* The model names in p->models_dir (files NAME.yaml), sorted, space-separated, into out;
 * returns how many, -1 if the folder cannot be read. */
int cg_models_list(const cg_paths *p, char *out, size_t size);

#endif
