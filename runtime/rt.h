/* rt.h: the runtime that training executables link (and that the compiler shares for weight
 * files). It never includes IR headers: an executable carries no compiler.
 *
 * Sections follow the files that implement them:
 *   common.c       error formatting, random numbers
 *   safetensors.c  reading and writing safetensors files, dtype conversion
 *   init.c         deterministic weight initialization (timm's DeiT scheme)
 * and, for the executables only (library deitc_exe, which also holds main()):
 *   gemm_cpu.c     the emu target's matrix products on the host
 *   device.c       the device layer: a small vtable (emu in device_emu.c, cuda in
 *                  device_cuda.c), plan checks, running one step (CUDA Graph replay)
 *   data.c         tensor datasets (safetensors, CIFAR-10 .bin), synthetic data, shuffling
 *   image_folder.c ImageFolder directories (JPEG, PNG) for data.c
 *   exe.c          the commands: train, eval, bench, info (rt_main)
 */
#ifndef DEITC_RT_H
#define DEITC_RT_H

#include <stddef.h>
#include <stdint.h>

/* ---- common.c --------------------------------------------------------------------------- */

/* Formats a message into err (errsize bytes) and returns -1, for `return rt_errorf(...)`. */
int rt_errorf(char *err, size_t errsize, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t rt_splitmix64(uint64_t *state); /* next value of the stream; advances *state */
double rt_uniform01(uint64_t *state);    /* uniform in (0, 1) */

/* Temporary files and folders (an output being written before its rename, a compile's work
 * folder) that SIGINT, SIGTERM and SIGHUP remove before the process dies of the signal, so an
 * interrupted write leaves nothing behind. rt_tmp_track returns a handle for rt_tmp_untrack
 * (call it once the path is renamed or removed), or -1 when all slots are taken (then the
 * path is simply not cleaned up on a signal). Signals the process ignores stay ignored. */
int rt_tmp_track(const char *path, int is_dir);
void rt_tmp_untrack(int handle);

/* ---- safetensors.c ---------------------------------------------------------------------- */

/* ORDER: same numbering as ir_dtype (IR_F32 ...), so the compiler can pass dtypes through. */
typedef enum { RT_F32, RT_F16, RT_BF16, RT_I32, RT_I64, RT_DTYPE_COUNT } rt_dtype;

#define RT_MAX_DIMS 8

typedef struct {
    char *name;
    rt_dtype dtype;
    int ndim;
    int64_t shape[RT_MAX_DIMS];
    size_t nbytes;
    void *data; /* nbytes, little-endian elements */
} rt_tensor;

typedef struct {
    rt_tensor *tensors;
    int count;
    char *metadata; /* the raw JSON text of "__metadata__", or NULL */
} rt_tensor_set;

const char *rt_dtype_name(rt_dtype t); /* safetensors spelling: "F32" */
size_t rt_dtype_size(rt_dtype t);
int64_t rt_tensor_numel(const rt_tensor *t);

/* Reads a whole safetensors file. 0 on success; else -1 with err naming the file and what is
 * wrong (truncated body, bad header JSON, unknown dtype, offsets that disagree with shapes). */
int rt_safetensors_read(const char *path, rt_tensor_set *out, char *err, size_t errsize);
/* Same from a memory buffer (fuzzing, tests); `what` names the source in messages. */
int rt_safetensors_parse(const unsigned char *buf, size_t size, const char *what,
                         rt_tensor_set *out, char *err, size_t errsize);
/* Writes tensors (in the given order) to path via a temporary file and rename, so a failed
 * write never leaves a half-written file. metadata_json: an object's text or NULL. */
int rt_safetensors_write(const char *path, const rt_tensor *tensors, int count,
                         const char *metadata_json, char *err, size_t errsize);
void rt_tensor_set_free(rt_tensor_set *s);
const rt_tensor *rt_tensor_set_find(const rt_tensor_set *s, const char *name);

/* A weight of the given shape out of a weights file (`path` names it in messages), as float32
 * in out: 1 when found and converted, 0 when the file lacks it, -1 with err when its shape or
 * dtype is wrong or it holds a NaN or infinity. What `deitc run` and the executables share. */
int rt_weight_read(const rt_tensor_set *file, const char *path, const char *name, int ndim,
                   const int64_t *shape, float *out, char *err, size_t errsize);

/* Converts a float tensor (F32, F16, BF16) to float32; -1 if the dtype is not a float. */
int rt_tensor_to_f32(const rt_tensor *t, float *out);
/* Converts an integer tensor (I32, I64) to int64; -1 if not an integer dtype. */
int rt_tensor_to_i64(const rt_tensor *t, int64_t *out);
float rt_half_to_float(uint16_t h);
uint16_t rt_float_to_half(float f); /* round to nearest even */
float rt_bf16_to_float(uint16_t h);
uint16_t rt_float_to_bf16(float f); /* round to nearest even */
/* f rounded to TF32 (8 exponent, 10 mantissa bits; kept in a float): nearest even, subnormals
 * on the same grid, overflow to inf, NaN stays NaN. What the emu (and the interpreter) take a
 * TF32 tensor-core operand to be. */
float rt_round_tf32(float f);

/* ---- init.c ---------------------------------------------------------------------------- */

/* ORDER: same numbering as ir_init. */
typedef enum { RT_INIT_ZEROS, RT_INIT_ONES, RT_INIT_TRUNC_NORMAL } rt_init;

/* Fills out[0..n) for the weight `name`: zeros, ones, or a normal(0, std) truncated at 2 std.
 * Deterministic in (seed, name), independent of the order weights are initialized in. */
void rt_init_fill(rt_init kind, double std, uint64_t seed, const char *name, float *out, int64_t n);

/* ---- gemm_cpu.c ------------------------------------------------------------------------ */

/* The sections below need plan.h's types. Included first, this header pulls plan.h in here
 * (plan.h's own #include of it is then a no-op); reached from the top of plan.h (generated
 * plan.c files include plan.h only) they are skipped. So files that use them include rt.h. */
#ifndef DEITC_RT_PLAN_H
#include "runtime/plan.h"
#define DEITC_RT_EXE_SECTIONS 1
#endif
#ifdef DEITC_RT_EXE_SECTIONS

/* C = alpha * opA(A) @ opB(B) + beta * C with the row-major semantics of rt_gemm (plan.h);
 * a, b, c point at the operands' first elements (the arena offsets already applied). */
void rt_gemm_cpu(const rt_gemm *g, const void *a, const void *b, void *c);
/* Threads for large products (default: DEITC_GEMM_THREADS, else the number of CPUs). */
void rt_gemm_cpu_set_threads(int n);

/* ---- device.c, device_emu.c, device_cuda.c ------------------------------------------------ */

/* One device: the arena, and the operations a step needs. Every operation returns 0, or -1
 * with `err` naming the failed call (and the plan step, where there is one). */
typedef struct rt_device rt_device;
struct rt_device {
    const char *target;       /* "cuda" or "emu" */
    char name[256];           /* what runs it, for people: "NVIDIA H100 (sm_90)", "CPU" */
    const rt_plan *plan;
    uint64_t mem_bytes;       /* device memory held: arena + GEMM workspace */
    int captured;             /* a CUDA Graph of the step exists */
    double *profile_ms;       /* NULL, or per plan step: time accumulated by rt_device_run
                                 (each step timed alone: synchronizing, no graph) */
    char err[1024];
    void *impl;
    int (*upload)(rt_device *d, uint64_t offset, const void *src, uint64_t bytes);
    int (*download)(rt_device *d, void *dst, uint64_t offset, uint64_t bytes);
    int (*zero)(rt_device *d, uint64_t offset, uint64_t bytes);
    int (*launch)(rt_device *d, int step);  /* an RT_STEP_KERNEL step of the plan */
    int (*gemm)(rt_device *d, int step);    /* an RT_STEP_GEMM step */
    int (*synchronize)(rt_device *d);
    /* graph capture of the step's launches and its replay; NULL where unsupported */
    int (*capture_begin)(rt_device *d);
    int (*capture_end)(rt_device *d);
    int (*replay)(rt_device *d);
    /* timing: device events on cuda, the wall clock on emu; stop synchronizes */
    int (*timer_start)(rt_device *d);
    int (*timer_stop)(rt_device *d, double *ms);
    void (*destroy)(rt_device *d);
};

/* A kernel step's arguments as cuLaunchKernel takes them: args[i] points at the i-th value
 * (an arena address, an int64 or a float). Small argument lists need no allocation. */
typedef union {
    uint64_t address; /* arena base + offset: a device pointer on cuda, a host one on emu */
    void *host;       /* the same address read as a host pointer (emu kernels) */
    int64_t i64;
    float f32;
} rt_arg_value;
typedef struct {
    rt_arg_value inline_values[32];
    void *inline_args[32];
    rt_arg_value *values;
    void **args;
} rt_kernel_args;
void rt_kernel_args_fill(rt_kernel_args *ka, const rt_plan_step *s, uint64_t arena_base);
void rt_kernel_args_release(rt_kernel_args *ka);

/* 1 when the plan was compiled for --target cuda (it carries a cubin, PTX or an arch). */
int rt_plan_is_cuda(const rt_plan *p);
/* Checks plan.h's invariants (offsets inside the arena, kernel indices, GEMM extents). */
int rt_plan_check(const rt_plan *p, char *err, size_t errsize);
/* Opens the plan's target with a zeroed arena. On a machine without what the target needs
 * (the CUDA driver, a GPU, cuBLASLt) the message says so and what to do instead. */
int rt_device_new(const rt_plan *p, rt_device **out, char *err, size_t errsize);
int rt_device_emu_new(const rt_plan *p, rt_device **out, char *err, size_t errsize);
int rt_device_cuda_new(const rt_plan *p, rt_device **out, char *err, size_t errsize);
void rt_device_free(rt_device *d);
/* Runs the plan's steps once. use_graph: capture them as a CUDA Graph on the first such call
 * and replay it afterwards (ignored where unsupported); call without it at least once first. */
int rt_device_run(rt_device *d, int use_graph);
/* Runs only the steps up to logits and loss (the plan's num_eval_steps), never as a graph:
 * what eval needs, without the backward pass and the optimizer. */
int rt_device_run_forward(rt_device *d);

/* ---- data.c ------------------------------------------------------------------------------ */

/* Images are held in one of two stores: float, already normalized (tensor datasets, CIFAR-10,
 * synthetic), or uint8 pixels (ImageFolder: 4x smaller) normalized per channel when gathered,
 * x / 255 then (x - mean[c]) / std[c]. rt_dataset_image reads either. */
typedef struct {
    int64_t n, c, h, w;
    float *images;            /* (n, c, h, w), normalized; NULL when images_u8 holds them */
    uint8_t *images_u8;       /* (n, c, h, w) raw pixels (c <= 3), or NULL */
    float mean[3], std[3];    /* for images_u8 */
    int64_t *labels;          /* (n) */
    int64_t classes;          /* ImageFolder: class folders found; else 0 */
    double load_s;            /* ImageFolder: seconds spent listing and decoding */
} rt_dataset;

/* Loads a .safetensors tensor dataset (`images` float [N,C,H,W], `labels` integer [N]), a
 * CIFAR-10 .bin or an ImageFolder directory and checks it against the plan: image shape,
 * labels in [0, num_classes). */
int rt_dataset_load(const char *path, const rt_plan *p, rt_dataset *ds, char *err, size_t errsize);
/* image_folder.c: an ImageFolder directory (class subfolders of .jpg/.jpeg/.png files),
 * decoded in parallel and transformed as timm's eval transform does (resize, center crop). */
int rt_image_folder_load(const char *dir, const rt_plan *p, rt_dataset *ds, char *err, size_t errsize);
/* The model's image shape (C, H, W): its `images` input, else the plan's header fields. */
void rt_plan_image_shape(const rt_plan *p, int64_t chw[3]);
/* Image i as c*h*w normalized floats into out. */
void rt_dataset_image(const rt_dataset *ds, int64_t i, float *out);
/* n random images (standard normal) and labels of the plan's shape. */
int rt_dataset_synthetic(const rt_plan *p, int64_t n, uint64_t seed, rt_dataset *ds, char *err, size_t errsize);
void rt_dataset_free(rt_dataset *ds);
/* perm[0..n) = a permutation of 0..n-1 determined by (seed, epoch). */
void rt_shuffle(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch);

/* ---- exe.c -------------------------------------------------------------------------------- */

/* The executable's command line (`EXE train|eval|bench|info ...`); returns the exit status. */
int rt_main(const rt_plan *p, int argc, char **argv);

#endif /* DEITC_RT_EXE_SECTIONS */

#endif
