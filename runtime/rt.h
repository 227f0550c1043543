/* rt.h: the runtime that training executables link (and that the compiler shares for weight
 * files). It never includes IR headers: an executable carries no compiler.
 *
 * Sections follow the files that implement them:
 *   common.c       error formatting, random numbers
 *   input.c        opening and reading input files (regular files only, never blocking)
 *   json.c         the JSON writer (growing buffer, escaping) and a reader of flat metadata
 *   output.c       writing output files (temporary + rename, devices in place), path checks
 *   safetensors.c  reading and writing safetensors files, dtype conversion
 *   checksum.c     CRC-32 checksums in the safetensors files deitc writes, and their check
 *   init.c         deterministic weight initialization (timm's DeiT scheme)
 * and, for the executables only (library deitc_exe, which also holds main()):
 *   gemm_cpu.c     the emu target's matrix products on the host
 *   device.c       the device layer: a small vtable (emu in device_emu.c, cuda in
 *                  device_cuda.c), plan checks, running one step (CUDA Graph replay)
 *   data.c         tensor datasets (safetensors, CIFAR-10 .bin), synthetic data, shuffling
 *   image_folder.c ImageFolder directories (JPEG, PNG) for data.c
 *   exe.c          the commands: train, eval, bench, info (rt_main); the rest of them in
 *                  exe_session.c, exe_train.c and exe_eval_bench.c (private: exe_internal.h)
 */
#ifndef DEITC_RT_H
#define DEITC_RT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- common.c --------------------------------------------------------------------------- */

/* Formats a message into err (errsize bytes) and returns -1, for `return rt_errorf(...)`. */
int rt_errorf(char *err, size_t errsize, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t rt_splitmix64(uint64_t *state); /* next value of the stream; advances *state */
double rt_uniform01(uint64_t *state);    /* uniform in (0, 1) */
/* An on/off environment variable: unset or empty is 0; "0"/"false" 0 and "1"/"true" 1 (any
 * case); anything else is an error naming the variable and its value (-1). */
/* 1 when s is a decimal number: digits, an optional fraction and exponent, nothing else (no hex,
 * inf, nan or blanks): what command-line numbers must be. */
int rt_is_decimal(const char *s);
int rt_env_flag(const char *name, int *on, char *err, size_t errsize);
/* --loss-scale VALUE (opt names the option in messages): "none" (RT_LOSS_SCALE_NONE, *scale 1),
 * "dynamic" (*scale 0: the initial scale is another option's) or a static scale S (a decimal
 * number > 0 that is a finite, nonzero float). 0, or -1 with err. */
int rt_loss_scale_parse(const char *opt, const char *s, int *mode, double *scale, char *err, size_t errsize);
/* A scale (--loss-scale S, --loss-scale-init S): a decimal > 0, finite and nonzero as a float. 0 or -1. */
int rt_loss_scale_value(const char *s, double *scale);

/* Temporary files and folders (an output being written before its rename, a compile's work
 * folder) that SIGINT, SIGTERM and SIGHUP remove before the process dies of the signal, so an
 * interrupted write leaves nothing behind. rt_tmp_track returns a handle for rt_tmp_untrack
 * (call it once the path is renamed or removed), or -1 when all slots are taken (then the
 * path is simply not cleaned up on a signal). Signals the process ignores stay ignored. */
int rt_tmp_track(const char *path, int is_dir);
void rt_tmp_untrack(int handle);

/* ---- input.c ---------------------------------------------------------------------------- */

#define RT_INPUT_NOFOLLOW 1 /* flags: refuse a symbolic link as the last component of the path */

/* Opens an input file for reading: non-blocking first, then fstat, so that a FIFO, device,
 * socket or directory is refused ("PATH: not a regular file (it is a FIFO)")
 * instead of blocking; the descriptor returned is blocking again. *size (when size is not
 * NULL) is the file's size. -1 with err naming the path and why. */
int rt_input_open(const char *path, int flags, int64_t *size, char *err, size_t errsize);
/* The same as a stdio stream ("rb"); NULL with err. */
FILE *rt_input_fopen(const char *path, int flags, int64_t *size, char *err, size_t errsize);
/* Reads the whole regular file into a new heap buffer (NUL-terminated; *len bytes before the
 * NUL). Refuses files over max_bytes before allocating; out of memory is an error. */
int rt_input_read(const char *path, int flags, size_t max_bytes, void **buf, size_t *len, char *err,
                  size_t errsize);
/* Exactly n bytes at offset of fd (`path` in messages); a short file is an error. */
int rt_input_pread(int fd, const char *path, void *buf, size_t n, int64_t offset, char *err, size_t errsize);
/* "a FIFO", "a directory", ... for a st_mode. */
const char *rt_file_kind(unsigned mode);

/* ---- json.c ------------------------------------------------------------------------------ */

/* A growing text buffer; zero-initialize (rt_strbuf b = {0}), rt_sb_free when done. s is
 * NUL-terminated once anything was put. */
typedef struct {
    char *s;
    size_t len, cap;
} rt_strbuf;
void rt_sb_putn(rt_strbuf *b, const char *s, size_t n);
void rt_sb_puts(rt_strbuf *b, const char *s);
void rt_sb_printf(rt_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal of s: quotes, backslashes and control characters escaped, bytes that
 * are not UTF-8 as U+FFFD, so the result is valid JSON whatever s holds. */
void rt_sb_json_string(rt_strbuf *b, const char *s);
/* A JSON number (%.17g: reads back exactly), or null when v is not finite. */
void rt_sb_json_number(rt_strbuf *b, double v);
void rt_sb_free(rt_strbuf *b);
/* The string value of `key` in a flat JSON object's text (a safetensors __metadata__) into
 * *value: 1 found, 0 absent (or object NULL), -1 malformed. */
int rt_json_get_string(const char *object, const char *key, rt_strbuf *value);

/* ---- output.c ---------------------------------------------------------------------------- */

/* path for messages: control characters escaped (\n, \x01), backslashes doubled; into buf. */
const char *rt_path_show(const char *path, char *buf, size_t size);
/* Removes PATH.tmp.N and PATH.probe.N left beside path by processes N that no longer exist
 * (a kill -9 during a write). */
void rt_tmp_remove_stale(const char *path);

/* An output being written: a regular file (or a new one) goes to PATH.tmp.PID and is renamed
 * over path by rt_output_commit; anything else that exists (a device, a FIFO) is written in
 * place, never replaced; a directory is refused. */
typedef struct {
    char *path, *tmp; /* tmp: NULL when writing in place */
    FILE *f;          /* write here */
    int tracked;      /* rt_tmp_track handle */
} rt_output;
int rt_output_open(rt_output *o, const char *path, char *err, size_t errsize);
/* Flushes, checks every write (ENOSPC...), closes and renames; on failure removes the temporary. */
int rt_output_commit(rt_output *o, char *err, size_t errsize);
void rt_output_abort(rt_output *o);
/* Before any work: path can be written (not a directory; a temporary can be made beside it,
 * or the device or FIFO takes writes). */
int rt_output_check(const char *path, char *err, size_t errsize);

/* An option's file, for rt_paths_check's messages: what = "--save", path = its value (NULL: not given). */
typedef struct {
    const char *what, *path;
} rt_named_path;
/* 1 when both name one existing file (device and inode) */
int rt_same_file(const char *a, const char *b);
/* -1 with err naming both when an output is the same file (device and inode) as an input or
 * as another output; outputs that do not exist yet, and ones that are not regular files
 * (/dev/null), are fine. */
int rt_paths_check(const rt_named_path *outputs, int nout, const rt_named_path *inputs, int nin, char *err,
                   size_t errsize);
/* msg as printed: each of args[0..nargs) that holds control characters (a file name from the
 * command line) escaped as rt_path_show does, and any other control character but newline
 * and tab as \xNN. */
void rt_message_escape(const char *msg, char *const *args, int nargs, rt_strbuf *out);
/* Reads a whole regular file into *buf (malloc'ed, *size bytes). */
int rt_file_read(const char *path, unsigned char **buf, size_t *size, char *err, size_t errsize);

/* ---- safetensors.c ---------------------------------------------------------------------- */

/* ORDER: same numbering as ir_dtype (IR_F32 ...), so the compiler can pass dtypes through. */
/* RT_F64 (last, no IR twin) exists only in files: weights in it are converted to float32 as read. */
typedef enum { RT_F32, RT_F16, RT_BF16, RT_I32, RT_I64, RT_F64, RT_DTYPE_COUNT } rt_dtype;

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
    int *index;     /* hash of the names (open addressing, -1 empty; index_cap slots, a power
                       of 2) made by the reader, so rt_tensor_set_find is O(1); NULL in sets
                       put together by hand, which rt_tensor_set_find scans instead */
    int index_cap;
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
/* Writes tensors (in the given order) to path through rt_output (a temporary file and rename,
 * so a failed write never leaves a half-written file; devices in place). metadata_json: an
 * object's text or NULL; the checksums of checksum.c are added to it. */
int rt_safetensors_write(const char *path, const rt_tensor *tensors, int count,
                         const char *metadata_json, char *err, size_t errsize);
void rt_tensor_set_free(rt_tensor_set *s);
const rt_tensor *rt_tensor_set_find(const rt_tensor_set *s, const char *name);

/* A weight of the given shape out of a weights file (`path` names it in messages), as float32
 * in out: 1 when found and converted, 0 when the file lacks it, -1 with err when its shape or
 * dtype is wrong or it holds a NaN or infinity. What `deitc run` and the executables share. */
int rt_weight_read(const rt_tensor_set *file, const char *path, const char *name, int ndim,
                   const int64_t *shape, float *out, char *err, size_t errsize);
/* The wrapper prefix every tensor of a weights file is named under, "module." (PyTorch's
 * DistributedDataParallel) or "model." (a wrapped model's state_dict), repeatedly
 * ("module.model."), with a note in msg naming it; "" (and msg untouched) when there is none.
 * Readers then look weight W up as prefix + W. The result points into static storage. */
const char *rt_weights_prefix(const rt_tensor_set *s, const char *path, char *msg, size_t size);
/* A classifier head's weight (head.*, head_dist.*): the one part a fine-tuning weights file is
 * expected to lack, or to hold at another number of classes. */
int rt_weight_is_head(const char *name);
/* The message for a weights file that gives only part of a model's weights: missing[0..n) of
 * its `total` weights (names) are not in `path`. Without `partial` (--partial-init) it is the
 * error, naming what is missing (and --partial-init, saying when only the head is); with it,
 * the note that those keep the model's own values. */
void rt_weights_missing_text(const char *path, const char *const *missing, int n, int total, int partial,
                             char *buf, size_t size);

/* 0 when every element of a float tensor is finite (integer tensors always are); else -1 with
 * err naming `path`, the tensor and the first NaN or infinity, as rt_weight_read says it. */
int rt_tensor_check_finite(const rt_tensor *t, const char *path, char *err, size_t errsize);
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

/* ---- checksum.c ------------------------------------------------------------------------- */

uint32_t rt_crc32(uint32_t crc, const void *data, size_t n); /* zlib's CRC-32; start with 0 */
/* The "deitc.crc32" value for these tensors: their CRC-32s, comma-separated, into out. */
void rt_checksum_tensors(const rt_tensor *tensors, int count, rt_strbuf *out);
/* Fills in the "deitc.header_crc32" digits of a header about to be written; -1 if it has none. */
int rt_checksum_seal_header(const unsigned char len8[8], char *hdr, size_t n);
/* Checks the checksums of a parsed file (buf: its bytes, set: what rt_safetensors_parse made of
 * them): 0 valid, 1 the file has none (fine unless required, or the file says deitc wrote it),
 * -1 with err naming the damaged tensor, or the metadata. */
int rt_safetensors_verify(const unsigned char *buf, size_t size, const rt_tensor_set *set, const char *what,
                          int required, char *err, size_t errsize);
/* rt_safetensors_parse, then rt_safetensors_verify (a parse error in a file that says deitc
 * wrote it, or with required, is called damage): 0, or -1 with err. */
int rt_safetensors_parse_checked(const unsigned char *buf, size_t size, const char *what, int required,
                                 rt_tensor_set *out, char *err, size_t errsize);
/* The same from a file: what --init, --resume and deitc run --weights use. */
int rt_safetensors_read_checked(const char *path, int required, rt_tensor_set *out, char *err, size_t errsize);

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
/* The epilogue of g (plan.h) on C after rt_gemm_cpu wrote the product t there: bias and aux as
 * rt_epilogue says (NULL where it uses none). Column sums in row order: deterministic. */
void rt_gemm_cpu_epilogue(const rt_gemm *g, void *c, void *bias, void *aux);
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
    /* data-parallel training (dist.c): rt_device_run calls step_hook(d, i, 0) before step i
     * (wait for the gradient buckets step i reads; i == num_steps: all the rest) and
     * step_hook(d, i, 1) after it (start the buckets it completes; i == -1: before the first).
     * Under CUDA Graph capture what it enqueues is captured too. NULL with one rank. */
    int (*step_hook)(rt_device *d, int step, int after);
    void *hook_ctx;
    void *native_stream;      /* cuda: the CUstream the steps run on (NULL on emu) */
    uint64_t arena_address;   /* the arena's base: a CUdeviceptr on cuda, a host pointer on emu */
    /* The per-step data path that never blocks the host (runtime/exe_stage.c): two stage slots,
     * each a host buffer (pinned on cuda) stage_host[i] and its device twin at stage_device[i]
     * (stage_open(d, bytes) makes both). stage_begin(i): slot i's host buffer may be written
     * (waits, counted in syncs, only while its previous copy is still in flight); stage_end(i,
     * n): its first n bytes go to the twin on a copy stream, and the step stream waits for that
     * copy (an event); stage_done(i): what the step stream queued so far has read the twin
     * (the next copy into it waits for that). copy_to_arena and launch_kernel (the plan's
     * kernel k with cuLaunchKernel-style arguments, e.g. dc_data_normalize) queue on the step
     * stream. The readback buffer (readback_open, pinned on cuda) takes download_async's copies
     * from the arena, queued on the step stream; readback_wait waits for all of them (a sync). */
    int (*stage_open)(rt_device *d, uint64_t bytes);
    int (*stage_begin)(rt_device *d, int slot);
    int (*stage_end)(rt_device *d, int slot, uint64_t bytes);
    int (*stage_done)(rt_device *d, int slot);
    int (*copy_to_arena)(rt_device *d, uint64_t offset, uint64_t src_address, uint64_t bytes);
    int (*launch_kernel)(rt_device *d, int kernel, const unsigned grid[3], const unsigned block[3], void **args);
    int (*readback_open)(rt_device *d, uint64_t bytes);
    int (*download_async)(rt_device *d, uint64_t readback_offset, uint64_t offset, uint64_t bytes);
    int (*readback_wait)(rt_device *d);
    void *stage_host[2];
    uint64_t stage_device[2], stage_bytes;
    void *readback_host;
    uint64_t readback_bytes;
    /* host synchronizations so far: every call that blocks the host until the device is done
     * (upload, download, synchronize, timer_stop, readback_wait, a stage_begin that waited) */
    long syncs;
};
/* The plan's kernel named `name` (a runtime-launched one such as dc_data_normalize), or -1. */
int rt_plan_kernel(const rt_plan *p, const char *name);

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
/* A decoded image: 8-bit RGB, rows of 3*w bytes; full_w x full_h is the image's own size (w x h
 * is smaller when the JPEG was decoded at M/8 of its size, M < 8, in the DCT domain). */
typedef struct {
    unsigned char *rgb;
    int w, h, full_w, full_h;
} rt_rgb_image;
/* How far a JPEG may be shrunk while decoding: pick(ctx, full_w, full_h) returns M in 1..8, the
 * JPEG then decoded at M/8 of its size (libjpeg-turbo's scale_num/scale_denom; 8: full size). */
typedef struct {
    int (*pick)(void *ctx, int full_w, int full_h);
    void *ctx;
} rt_decode_shrink;
/* An ImageFolder's listing, nothing decoded: paths[i] has label labels[i]. */
typedef struct {
    char **paths;
    int64_t *labels, n;
    char **class_names;  /* (classes) sorted folder names */
    int64_t classes;
    int crop;            /* the model's image side */
    float mean[3], std[3]; /* the normalization of its uint8 pixels (ImageNet's) */
} rt_image_list;
/* Lists dir and checks it against the plan (3 channels, square, classes <= num_classes). */
int rt_image_folder_list(const char *dir, const rt_plan *p, rt_image_list *l, char *err, size_t errsize);
void rt_image_list_free(rt_image_list *l);
/* Decodes one file (by content; thread-safe; the decoders share one memory budget) into *img
 * (img->rgb malloc'ed: free it). shrink may be NULL (full size). */
int rt_image_decode(const char *path, const rt_decode_shrink *shrink, rt_rgb_image *img, char *err, size_t errsize);
/* The same for an image held in memory (name: for messages). */
int rt_image_decode_mem(const char *name, const unsigned char *buf, size_t size, const rt_decode_shrink *shrink,
                        rt_rgb_image *img, char *err, size_t errsize);
/* timm's eval transform (resize to crop/0.875, center crop) of a full-size image into
 * out (3, crop, crop) uint8, bit-exact with PIL. -1 only when out of memory. */
int rt_image_eval_crop(const rt_rgb_image *img, int crop, unsigned char *out);
/* image_encode.c: rgb (h rows of 3*w bytes) as a JPEG of the quality (1-100) into *out (malloc'ed). */
int rt_jpeg_encode(const uint8_t *rgb, int w, int h, int quality, uint8_t **out, size_t *size, char *err,
                   size_t errsize);
/* rgb as an 8-bit RGB PNG into *out (malloc'ed). */
int rt_png_encode(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *size, char *err, size_t errsize);
/* The model's image shape (C, H, W): its `images` input, else the plan's header fields. */
void rt_plan_image_shape(const rt_plan *p, int64_t chw[3]);
/* Image i as c*h*w normalized floats into out. */
void rt_dataset_image(const rt_dataset *ds, int64_t i, float *out);
/* n random images (standard normal) and labels of the plan's shape. */
int rt_dataset_synthetic(const rt_plan *p, int64_t n, uint64_t seed, rt_dataset *ds, char *err, size_t errsize);
void rt_dataset_free(rt_dataset *ds);
/* perm[0..n) = a permutation of 0..n-1 determined by (seed, epoch). */
void rt_shuffle(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch);

/* ---- transform.c: what the loader's workers do to each sample --------------------------- */

/* randaug.c: timm's RandAugment, increasing op set (rand-m9-mstd0.5-inc1), on uint8 CHW. */
enum {
    RT_RA_AUTOCONTRAST, RT_RA_EQUALIZE, RT_RA_INVERT, RT_RA_ROTATE, RT_RA_POSTERIZE_INC, RT_RA_SOLARIZE_INC,
    RT_RA_SOLARIZE_ADD, RT_RA_COLOR_INC, RT_RA_CONTRAST_INC, RT_RA_BRIGHTNESS_INC, RT_RA_SHARPNESS_INC,
    RT_RA_SHEAR_X, RT_RA_SHEAR_Y, RT_RA_TRANSLATE_X_REL, RT_RA_TRANSLATE_Y_REL, RT_RA_NUM_OPS
};
typedef struct {
    int num_layers;             /* ops an image (n) */
    double magnitude, mstd;     /* m (0-10) and the std of its gaussian noise */
    double prob;                /* each op's probability (p, timm's 0.5) */
    uint8_t fill[3];            /* the geometric ops' fill (timm's img_mean) */
} rt_randaug;
/* Parses timm's config string ("rand-m9-mstd0.5-inc1"; sections m, n, mstd, p, inc). */
int rt_randaug_parse(const char *spec, rt_randaug *ra, char *err, size_t errsize);
/* One op at a magnitude in [0, 10] (negate: the signed ops' sign), in place; -1 out of memory. */
int rt_randaug_op(int op, double magnitude, int negate, const uint8_t fill[3], uint8_t *chw, int w, int h);
const char *rt_randaug_op_name(int op);
/* num_layers ops sampled from *rng (advanced) applied in place; -1 out of memory. */
int rt_randaug_apply(const rt_randaug *ra, uint64_t *rng, uint8_t *chw, int w, int h);

/* A transform: rng (the sample's state, rt_sample_rng) + a decoded image -> out (3, size,
 * size) uint8 CHW. New transforms (RandAugment, ...) add a name to rt_transform_init. */
typedef struct rt_transform rt_transform;
struct rt_transform {
    const char *name; /* "none" (timm's eval resize + center crop), "light" (random resized crop + flip) */
    int size;         /* the output side */
    /* 0 ok, -1 out of memory */
    int (*apply)(const rt_transform *t, uint64_t rng, const rt_rgb_image *img, uint8_t *out);
    /* optional (NULL: 8): the smallest M in 1..8 such that apply is happy with a full_w x full_h
     * JPEG decoded at M/8 of its size in the DCT domain */
    int (*shrink)(const rt_transform *t, uint64_t rng, int full_w, int full_h);
    double scale[2], ratio[2]; /* RandomResizedCrop's area fraction and aspect ratio ranges */
    float flip_p;              /* horizontal flip probability */
    rt_randaug ra;             /* "randaug": RandAugment after the crop and flip */
    float erase_p;             /* Random Erasing probability (erasing.c; applied by the loader) */
};
int rt_transform_init(rt_transform *t, const char *name, int size, char *err, size_t errsize);
/* 1 when t is RandomResizedCrop + flip and nothing else (what dc_data.cuh's crop does on the
 * device): --aug light, or a preset with --rand-augment none and --reprob 0. */
int rt_transform_is_crop_flip(const rt_transform *t);
/* The parts of a training transform given on their own (after rt_transform_init): RandAugment's
 * timm spec (rand-m9-mstd0.5-inc1; "none": crop and flip only; NULL: the preset's) and Random
 * Erasing's probability (reprob < 0: the preset's). Refused (-1, err) on "none" or a bad spec. */
int rt_transform_set_parts(rt_transform *t, const char *rand_augment, double reprob, char *err, size_t errsize);
/* erasing.c: timm's RandomErasing (pixel mode, one box) on the normalized sample. */
typedef struct {
    int x, y, w, h;
    uint64_t rng; /* the fill's stream */
} rt_erase_params;
/* 1 and the box when the sample rng erases (probability t->erase_p), else 0. */
int rt_erase_box(const rt_transform *t, uint64_t rng, rt_erase_params *out);
/* The box filled with standard normal values in chw (3, size, size), normalized floats. */
void rt_erase_apply(const rt_transform *t, uint64_t rng, float *chw);
/* The RNG state of sample `index` in `epoch` of a run seeded `seed`. */
uint64_t rt_sample_rng(uint64_t seed, int64_t epoch, int64_t index);
/* RandomResizedCrop's box (full-image pixels) and flip, as torchvision's get_params samples them. */
typedef struct {
    int x, y, w, h, flip;
} rt_crop_params;
void rt_rrc_params(const rt_transform *t, uint64_t rng, int full_w, int full_h, rt_crop_params *out);
/* The box c of img resized to size x size (PIL BICUBIC), flipped if c->flip, into out CHW. */
int rt_rrc_apply_box(const rt_rgb_image *img, const rt_crop_params *c, int size, uint8_t *out);

/* PIL's resampling (Pillow's Resample.c, 8 bits a channel): the rectangle [rx, rx+rw) x
 * [ry, ry+rh) of img, seen as an image of its own, its box (x0, y0, x1, y1, relative to the
 * rectangle) resized to ow x oh with BICUBIC (cubic) or BILINEAR, horizontal pass (rounded to
 * uint8) then vertical, a pass skipped where Pillow skips it; only the output window [ox, ox+nw)
 * x [oy, oy+nh) is computed, into out (nw x nh) as CHW (chw) or HWC, mirrored if flip. What the
 * training crops (rt_rrc_apply_box) and the eval resize + center crop (rt_image_eval_crop) share. */
typedef struct {
    int rx, ry, rw, rh;
    double box[4];
    int ow, oh, ox, oy, nw, nh;
    int cubic, flip, chw;
} rt_resample;
/* 0, or -1 when out of memory */
int rt_resample_box(const rt_rgb_image *img, const rt_resample *r, uint8_t *out);
/* img resized to ow x oh (PIL BILINEAR, antialiased) into out, HWC (rows of 3 * ow bytes). */
int rt_image_resize_bilinear(const rt_rgb_image *img, int ow, int oh, uint8_t *out);

/* ---- loader.c: batches decoded and transformed by worker threads ahead of the step ------- */

/* Where samples come from: n of them, labels[i], and decode(i) -> a full (or DCT-shrunk) image. */
typedef struct {
    int64_t n;
    const int64_t *labels;
    void *ctx;
    int (*decode)(void *ctx, int64_t i, const rt_decode_shrink *shrink, rt_rgb_image *img, char *err, size_t errsize);
} rt_sample_source;
/* The source over an ImageFolder listing (l must outlive the source's use). */
rt_sample_source rt_image_list_source(const rt_image_list *l);

typedef struct {
    const rt_sample_source *src;
    const rt_transform *tf;
    int64_t batch;    /* images a batch (this rank's) */
    int workers;      /* decoding threads (>= 1) */
    int depth;        /* batches in flight (>= 2): the queue's memory is depth * batch images */
    uint64_t seed;
    int shuffle;      /* 0: the epoch's order is 0, 1, ..., n-1 */
    int64_t window;   /* > 0: rt_shuffle_windowed's quasi-random order (a .dpk); 0: rt_shuffle */
    int rank, world;  /* this rank's share of each epoch: perm[rank], perm[rank + world], ... */
    long first_step;  /* 1-based: the first batch delivered is this step's */
    const float *mean, *std; /* (3) given: the workers also normalize, batches are float
                              * ((x / 255 - mean) / std, rt_dataset_image's values); NULL: uint8 */
    int64_t raw_bytes;       /* > 0: the device crops (dc_data.cuh): each image is its raw RGB
                              * sample (at most raw_bytes, at image j * raw_bytes of the batch),
                              * and rt_loader_meta has its box, sampled as tf's apply would
                              * (rt_rrc_params); tf must be a RandomResizedCrop ("light") */
} rt_loader_config;
typedef struct rt_loader rt_loader;
/* Batches per epoch: (n / world) / batch (the tail of the permutation is dropped). */
int64_t rt_loader_steps_per_epoch(const rt_loader_config *c);
/* Starts the workers. The epoch order is rt_shuffle(seed, epoch), the same as in-memory data. */
int rt_loader_open(rt_loader **out, const rt_loader_config *c, char *err, size_t errsize);
/* The next step's batch: images (batch, 3, size, size) uint8 (float with mean/std) and labels
 * (batch), valid until the next call. A sample that failed to decode is an error naming it. */
int rt_loader_next(rt_loader *L, const void **images, const int64_t **labels, char *err, size_t errsize);
/* With raw_bytes: the batch last handed out's crops, 8 values an image: its offset in the
 * batch, w, h, then the box x, y, w, h and the flip (dc_data_crop_u8's meta). */
const int64_t *rt_loader_meta(const rt_loader *L);
/* Seconds rt_loader_next waited for workers, in all. */
double rt_loader_wait_s(const rt_loader *L);
void rt_loader_free(rt_loader *L);

/* ---- pack.c: the packed dataset (.dpk), written once, mmap'ed by the executables --------- */

enum { RT_DPK_JPEG = 1, RT_DPK_RAW = 2 };
typedef struct {
    const char *path;
    const unsigned char *map; /* the whole file */
    uint64_t size, n, classes, samples_end;
    const unsigned char *index; /* n entries */
    int kind, max_side;
    int64_t *labels;     /* (n) */
    char **class_names;  /* (classes) */
} rt_dpk;
typedef struct {
    uint64_t offset, size;
    int w, h;
    int64_t source; /* its place in the packed folder's sorted listing */
    uint32_t crc;
    const unsigned char *bytes;
} rt_dpk_sample;
/* Maps and checks a .dpk: header, version, trailer, index checksum, every entry's bounds. */
int rt_dpk_open(const char *path, rt_dpk *d, char *err, size_t errsize);
void rt_dpk_close(rt_dpk *d);
void rt_dpk_entry(const rt_dpk *d, int64_t i, rt_dpk_sample *s);
/* Sample i (its checksum checked) decoded: raw copied, JPEG decoded (shrink as allowed). */
int rt_dpk_decode(const rt_dpk *d, int64_t i, const rt_decode_shrink *shrink, rt_rgb_image *img, char *err,
                  size_t errsize);
rt_sample_source rt_dpk_source(const rt_dpk *d);
/* Packs the ImageFolder dir into out (atomically): shorter sides capped at max_side, raw or
 * JPEG of the quality, by `workers` threads. */
int rt_dpk_pack(const char *dir, const char *out, int max_side, int quality, int raw, int workers, char *err,
                size_t errsize);
/* rt_shuffle for a packed file: the windows of `window` consecutive samples in a random order,
 * the samples of each window shuffled (reads stay within a window at a time). */
void rt_shuffle_windowed(int64_t *perm, int64_t n, int64_t window, uint64_t seed, int64_t epoch);
/* A .dpk as an in-memory dataset (eval): every sample through the eval transform. */
int rt_dpk_load(const char *path, const rt_plan *p, rt_dataset *ds, char *err, size_t errsize);
/* The plan's checks for streamed images: 3 channels, square; *size its side. */
int rt_plan_rgb_side(const char *what, const rt_plan *p, int *size, char *err, size_t errsize);

/* ---- exe.c -------------------------------------------------------------------------------- */

/* The executable's command line (`EXE train|eval|bench|info ...`); returns the exit status. */
int rt_main(const rt_plan *p, int argc, char **argv);

#endif /* DEITC_RT_EXE_SECTIONS */

#endif
