/* exe_internal.h: what the executable's command files share, private to them (never installed,
 * never included outside runtime/exe*.c): the parsed command line, the session over the plan and
 * the device, and the helpers each file implements (sections follow the files):
 *   exe.c            rt_main, arguments, usage; messages (program name, errors, file names)
 *   exe_session.c    the session, weights, data, per-step uploads and downloads, checkpoints
 *   exe_train.c      train
 *   exe_eval_bench.c eval, bench, info
 *   exe_loss_scale.c the loss scaler: options onto its device state, resume checks, metrics
 *   exe_dist.c       allreduce (the data-parallel gradient all-reduce, timed)
 *   run_options.c    the run's options (label smoothing, clipping, betas, lr schedule)
 *   validate.c       evaluation over every image (eval, --val-data), summary.csv
 *   signals.c        Ctrl-C / SIGTERM: finish the step, checkpoint, say how to resume
 *   finetune.c       --init from another task (a new head) or resolution (pos_embed resampled)
 *   log.c, plot.c    progress lines and bar, metrics fields, --plot curves.png
 */
#ifndef DEITC_EXE_INTERNAL_H
#define DEITC_EXE_INTERNAL_H

#include "runtime/mixup.h"
#include "runtime/rt.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *cmd;
    const char *init, *data, *save, *metrics, *checkpoint, *resume;
    long steps, epochs, warmup_steps, bench_warmup, log_every, checkpoint_every;
    int has_steps, has_epochs, has_lr, shuffle, synthetic, use_graph, verbose, cosine, profile, resume_override, partial_init;
    double lr, weight_decay;
    double bucket_mb;    /* --bucket-mb: data-parallel gradient bucket size, MiB (25) */
    uint64_t seed;
    rt_dtype save_dtype; /* --save-dtype: what --save writes f32 weights as (RT_F32, RT_F16, RT_BF16) */
    const char *loss_scale;     /* --loss-scale none|dynamic|S as given; NULL: the plan's default */
    double loss_scale_init;     /* --loss-scale-init S; 0: not given */
    long loss_scale_interval;   /* --loss-scale-interval N; 0: not given */
    const char *aug;     /* --aug none|light (NULL: none) */
    long workers;        /* --workers: the loader's threads (0: one a core) */
    int stream;          /* --stream: stream an ImageFolder even when it would fit the cache */
    rt_mix_options mix;         /* --mixup --cutmix --mixup-prob --mixup-switch-prob (exe_mixup.c) */
    double drop_path;           /* --drop-path R: stochastic depth's rate (exe_mixup.c); 0: off */
    /* the run's options (run_options.c); has_*: given, else the plan's defaults */
    double label_smoothing, clip_grad, beta1, beta2, adam_eps, min_lr, warmup_epochs;
    int has_label_smoothing, has_clip_grad, has_beta1, has_beta2, has_adam_eps, schedule_per_epoch;
    const char *val_data, *save_best, *summary; /* validation (validate.c) */
    const char *plot; /* --plot curves.png (plot.c) */
    double ema_decay; /* --ema-decay (ema.c; plans compiled with --ema) */
    int has_ema_decay;
    const char *save_ema;
    const char *freeze; /* --freeze PATTERNS (freeze.c) */
    const char *rand_augment; /* --rand-augment SPEC|none: RandAugment apart from --aug (NULL: --aug's) */
    double reprob;            /* --reprob P: Random Erasing's probability (has_reprob: given) */
    int has_reprob;
    long eval_every;
} exe_args;

typedef struct {
    const rt_plan *p;
    rt_device *dev;
    const rt_plan_tensor *images, *labels, *opt, *loss, *logits;
    const rt_plan_tensor *scaler; /* STATE "loss_scaler" of a plan built with loss scaling; NULL */
    const rt_plan_tensor *mix;    /* INPUT "mix" of a plan built with deitc compile --mix; NULL */
    const rt_plan_tensor *drop_path; /* INPUT "drop_path" (deitc compile --stochastic-depth); NULL */
    int64_t image_numel; /* C*H*W */
    float *batch_f32;    /* (batch, C, H, W) gathered on the host */
    void *stage;         /* the same in the images tensor's dtype (when not f32) */
    void *label_stage;   /* (batch) in the labels tensor's dtype */
    /* the run's state a checkpoint carries besides weights and AdamW's (metadata deitc.state.*) */
    double best_top1;      /* --save-best: the best validation top-1 so far (fraction), -1: none */
    double epoch_loss_sum; /* the current epoch's train losses so far (summary.csv's train_loss) */
    long epoch_loss_steps;
    /* exe_stage.c: train's per-step data through the device's stage slots (rt.h) */
    int stage_on;        /* the slots are open */
    int stage_slot;      /* the slot being filled; -1: none (rt_exe_put uploads at once) */
    int stage_kernel;    /* the plan's dc_data_normalize; -1: none (images normalized on the host) */
    int stage_images;    /* the slot holds this batch's uint8 images (1) or raw samples to crop (2) */
    int stage_crop_kernel; /* the plan's dc_data_crop; -1: none */
    uint64_t stage_region; /* bytes at the slot's start for the images (0: batch x C x H x W) */
    long stage_batches;  /* batches staged so far (the slot is their parity) */
    uint64_t stage_used; /* bytes of the slot filled */
    int stage_ncopies;
    struct {
        uint64_t offset, at, bytes; /* arena offset <- slot offset, bytes */
    } stage_copies[8];
} session;

/* what rt_exe_evaluate counts over a dataset */
typedef struct {
    int64_t n, top1, top5; /* images, and those whose label is the top-1 / in the top 5 */
    double loss;           /* mean cross-entropy (no label smoothing) */
} rt_exe_eval;

/* The largest count any option takes: far beyond any run, far below where sums overflow. */
#define MAX_COUNT 1000000000000L

/* ---- exe.c -------------------------------------------------------------------------------- */

extern const char *rt_exe_prog; /* argv[0]'s last component, for messages */
extern char **rt_exe_argv;      /* the command line (argc, argv of rt_main) */
extern int rt_exe_argc;
extern double rt_exe_t_main;    /* rt_exe_now_s() when rt_main began: bench reports start-up from it */
/* "PROG: error: MESSAGE" on stderr, file names from the command line escaped; returns 1. */
int rt_exe_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* a file name for stdout: control characters escaped (one static buffer: one name a printf) */
const char *rt_exe_shown(const char *path);
double rt_exe_now_s(void);               /* the monotonic clock, in seconds */
void rt_exe_json_num(FILE *f, double v); /* %.9g, or null when not finite */

/* ---- exe_session.c ------------------------------------------------------------------------ */

int64_t rt_exe_numel(const rt_plan_tensor *t);
void rt_exe_session_free(session *s);
/* Finds the tensors the runtime fills and reads, checks them, opens the device. */
int rt_exe_session_open(session *s, const rt_plan *p, int need_device);
/* Weights from --init (every one, unless partial: --partial-init), else the model's own values,
 * else the plan's initializers; state zeroed. */
int rt_exe_load_weights(session *s, const char *init, int partial, uint64_t seed);
/* Gathers images/labels idx[0..batch) of ds and uploads them. */
int rt_exe_fill_batch(session *s, const rt_dataset *ds, const int64_t *idx);
int rt_exe_set_opt(session *s, double lr, const rt_opt_run *r, long t); /* the "opt" slots for step t */
int rt_exe_read_f32(session *s, const rt_plan_tensor *t, int64_t n, float *out);
int rt_exe_load_data(const exe_args *a, const rt_plan *p, rt_dataset *ds); /* --data or --synthetic */
/* --save (with_state 0, weights as dtype) or --checkpoint (with_state 1) after `steps` of `total`. */
int rt_exe_save_weights(session *s, const char *path, long steps, int with_state, const exe_args *a, long total,
                        rt_dtype dtype);
/* --resume: the checkpoint's weights and optimizer state, and the step it reached into *step. */
int rt_exe_load_checkpoint(session *s, const exe_args *a, long total, long *step);

/* ---- exe_stage.c: the per-step data without host synchronization ---------------------------- */

/* Opens the device's stage slots for train's batches (no-op on a device without them). */
int rt_exe_stage_open(session *s);
/* A step's data begins: what rt_exe_put and rt_exe_fill_batch get goes into the next slot. */
int rt_exe_stage_begin(session *s);
/* The slot's room for the batch's uint8 images (batch x C x H x W, CHW each), normalized on the
 * device with mean/std at rt_exe_stage_end; NULL when no slot is being filled or the plan has
 * no dc_data_normalize (then the caller normalizes on the host). */
uint8_t *rt_exe_stage_u8(session *s, const float mean[3], const float stdv[3]);
/* Room for `bytes` of raw samples at the slots' start (reopens them larger when needed). */
int rt_exe_stage_reserve(session *s, uint64_t bytes);
/* The batch as raw RGB samples (raw, bytes) with their crops (meta: rt_loader_meta's, batch x
 * 8) into the slot: dc_data_crop crops, flips and normalizes them at rt_exe_stage_end. 0 or 1. */
int rt_exe_stage_crop(session *s, const void *raw, uint64_t bytes, const int64_t *meta, const float mean[3],
                      const float stdv[3]);
/* bytes for arena offset: into the slot being filled (a second put to the same offset replaces
 * the first), else uploaded at once. 0 or 1 (reported). */
int rt_exe_put(session *s, uint64_t offset, const void *src, uint64_t bytes);
/* The slot to the device (copy stream), its parts into the arena, the images normalized: all
 * queued on the step stream, nothing waited for. 0 or 1 (reported). */
int rt_exe_stage_end(session *s);

/* ---- exe_loss_scale.c ---------------------------------------------------------------------- */

/* What --loss-scale, --loss-scale-init and --loss-scale-interval make of the plan's default (the
 * scaler's embedded initial state): mode (RT_LOSS_SCALE_*), first scale, interval. -1 (reported)
 * for options the plan cannot honour (no scaler, --loss-scale-init without dynamic). */
int rt_exe_scaler_config(const session *s, const exe_args *a, int *mode, double *scale, long *interval);
/* The scaler's start: its state from the options (a fresh run) or, after --resume (resumed 1),
 * the checkpoint's with the options' mode and interval. Nothing without a scaler. */
int rt_exe_scaler_setup(session *s, const exe_args *a, int resumed);
/* The run options a checkpoint records for the scaler ("loss_scale" and "loss_scale_interval"
 * into key/value pairs, at most 2): how many (0 without a scaler). */
int rt_exe_scaler_run_options(const session *s, const exe_args *a, const char **keys, char (*values)[64]);
/* Reads the scaler's state (after a step) into st. */
int rt_exe_scaler_read(session *s, float st[RT_SCALER_SLOTS]);
/* The metrics fields (",\"loss_scale\":...") and the log's words ("  scale S  skipped N") */
void rt_exe_scaler_json(FILE *f, const float st[RT_SCALER_SLOTS]);
void rt_exe_scaler_log(FILE *f, const float st[RT_SCALER_SLOTS]);
/* info's line on the plan's loss scaling (its default, or none) */
void rt_exe_scaler_info(const rt_plan *p);
/* ---- exe_data.c ---------------------------------------------------------------------------- */

/* train's streamed ImageFolder (on = 0: the data is loaded whole by rt_exe_load_data) */
typedef struct {
    int on, is_dpk, f32; /* f32: the workers normalize into the f32 images tensor's layout */
    int64_t raw_bytes;   /* > 0: raw .dpk samples cropped on the device (dc_data_crop), each at most this */
    rt_image_list list; /* the folder's (for a .dpk: only n, classes, mean and std) */
    rt_dpk dpk;
    rt_sample_source src;
    rt_transform tf;
    rt_loader *loader;
    int64_t *iota; /* 0..batch-1 */
    int rank, world; /* data parallel: this rank's share of each epoch (0, 0: the whole) */
} exe_stream;
int rt_exe_default_workers(void);
int rt_exe_stream_open(const exe_args *a, const rt_plan *p, exe_stream *st); /* decides on */
int rt_exe_stream_start(exe_stream *st, session *s, const exe_args *a, const rt_plan *p, long first_step);
int rt_exe_stream_batch(session *s, exe_stream *st); /* the next batch, uploaded */
int rt_exe_bench_stream_open(const exe_args *a, const rt_plan *p, exe_stream *st); /* bench --data */
void rt_exe_stream_free(exe_stream *st);
int rt_exe_cmd_pack(int argc, char **argv); /* EXE pack DIR -o OUT.dpk ...: the exit status */
/* ---- run_options.c: the options that belong to a run (label smoothing, clipping, betas, lr) - */

extern const char rt_exe_run_option_names[]; /* " --label-smoothing ... ": what train takes besides */
/* opt with its value next: 1 parsed (a value taken), 0 not one of these, -1 bad (printed). */
int rt_exe_run_option(exe_args *a, const char *opt, const char *next);
int rt_exe_run_options_check(const exe_args *a); /* 0, or 2 (usage error printed) */
int rt_exe_run_options_plan_check(const exe_args *a, const rt_plan *p); /* 0, or 1 (reported) */
double rt_exe_base_lr(const exe_args *a, const rt_plan *p); /* --lr, else 5e-4 x global batch / 512 */
void rt_exe_set_world(int world); /* the data-parallel world size the global batch counts (1) */
void rt_exe_run_opt(const exe_args *a, const rt_plan *p, rt_opt_run *r); /* options, else the plan's */
long rt_exe_warmup_steps(const exe_args *a, long per_epoch);
/* the lr of step (1-based) of total: warm-up, then constant or cosine to --min-lr */
double rt_exe_lr_at(const exe_args *a, double lr, long step, long total, long per_epoch);

/* ---- validate.c: evaluation over every image, the val folder's classes, summary.csv ------- */

/* loss, top-1, top-5 over every image of ds (the last batch padded, the padding masked) */
int rt_exe_evaluate(session *s, const rt_dataset *ds, const exe_args *a, rt_exe_eval *out);
/* What rt_exe_evaluate_shard measures: every image by its logits (top-1/top-5, the last batch
 * padded and masked), or, for a plan without logits, full batches by the plan's loss output
 * (the mean over each batch; no accuracy: top1 and top5 stay 0). */
enum { RT_EXE_EVAL_LOGITS, RT_EXE_EVAL_LOSS };
/* The same over images rank, rank + world, ... of ds (data-parallel eval), with the loss's sum */
int rt_exe_evaluate_shard(session *s, const rt_dataset *ds, const exe_args *a, int rank, int world, int mode,
                          rt_exe_eval *out, double *loss_sum);
/* two ImageFolder directories with other class folders: an error (reported); else 0 */
int rt_exe_check_val_classes(const char *train_dir, const char *val_dir);
/* one summary.csv row (header: a new file with timm's columns first); top-1/top-5 in percent */
int rt_exe_summary_row(const char *path, int header, long epoch, double train_loss, const rt_exe_eval *e, double lr);

/* ---- finetune.c: --init from another task or resolution ----------------------------------- */

/* Weight t from file tensor ft of another shape, as timm fine-tunes: a head of another class
 * count re-initialized (trunc_normal .02 / zeros), a pos_embed of another grid resampled;
 * each said on stderr. 1 done, 0 not such a case (the caller reports the mismatch), -1 error. */
int rt_exe_init_adapt(session *s, const rt_plan_tensor *t, const rt_tensor *ft, const char *path, uint64_t seed);
/* src (sh, sw, c) channels last -> dst (dh, dw, c) as torch's F.interpolate(mode='bicubic',
 * align_corners=False, antialias=True) */
void rt_resample_bicubic_aa(const float *src, int64_t sh, int64_t sw, int64_t c, float *dst, int64_t dh, int64_t dw);

/* ---- log.c: the progress lines (a bar on a terminal), the metrics' fields, the curves ------- */

typedef struct {
    long step;
    double loss, top1; /* top1: eval points only (fraction) */
    int is_eval;
} rt_exe_point;
typedef struct {
    long first, total, per_epoch;
    uint64_t mem_bytes; /* device memory held */
    int tty;            /* stdout is a terminal: the line is rewritten in place */
    double t_start, loss_sum, data_s, device_s;
    long nloss;
    rt_exe_point *train, *eval; /* the curves, for --plot */
    long ntrain, neval, cap_train, cap_eval;
} rt_exe_log;
typedef struct {
    long step;
    double loss, lr;
    double data_s, device_s; /* waiting for the batch (gather, upload); the step and its loss read */
    int64_t images;        /* this step's, over every rank */
    const float *scaler;   /* the loss scaler's state after the step (RT_SCALER_SLOTS), or NULL */
} rt_exe_step_info;
void rt_exe_log_init(rt_exe_log *l, long first, long total, long per_epoch, uint64_t mem_bytes);
void rt_exe_log_free(rt_exe_log *l);
/* one step: the printed line (every log_every, first, last), its metrics line; -1 when the
 * metrics write failed */
int rt_exe_log_step(rt_exe_log *l, const rt_exe_step_info *st, long log_every, FILE *metrics);
void rt_exe_log_eval(rt_exe_log *l, long step, double loss, double top1);

/* ---- plot.c: --plot curves.png (libpng) ------------------------------------------------------ */

/* train loss (and eval loss, top-1) against the step, as a PNG; 0, or 1 (reported) */
int rt_exe_plot(const rt_exe_log *l, const char *path);

/* ---- ema.c: the weights' EMA (plans compiled with --ema) ------------------------------------ */

int rt_exe_has_ema(const rt_plan *p);   /* the plan keeps STATE ema.<w> */
int rt_exe_ema_start(session *s);       /* a fresh run: the EMA = the weights */
int rt_exe_ema_swap(session *s);        /* weights <-> EMA (evaluate the EMA, then swap back) */
/* --save-ema: the EMA under the weights' names (weights without one as they are) */
int rt_exe_ema_save(session *s, const char *path, long step, const exe_args *a, long total);

/* ---- freeze.c: --freeze at run time ------------------------------------------------------- */

typedef struct {
    int n;        /* frozen weights */
    int *index;   /* their plan tensor indices */
    void **data;  /* their values, as the plan holds them */
    int *ema;     /* the index of each one's STATE ema.<w>, or -1 */
} rt_exe_frozen;
/* the weights matching patterns (comma-separated fnmatch; NULL: none) as they are now */
int rt_exe_freeze_start(session *s, const char *patterns, rt_exe_frozen *f);
int rt_exe_freeze_restore(session *s, const rt_exe_frozen *f); /* after each step */
void rt_exe_freeze_free(rt_exe_frozen *f);

/* ---- signals.c: SIGINT/SIGTERM finish the step, checkpoint, exit 130/143 -------------------- */

void rt_exe_signals_install(void); /* the first signal raises a flag, a second exits at once */
void rt_exe_signals_restore(void);
int rt_exe_signal_pending(void);   /* the first signal's number, or 0 */
/* "resume with: ARGV --resume C" (--init, --resume dropped), shell-quoted */
void rt_exe_print_resume(FILE *f, int argc, char **argv, const char *checkpoint);

/* ---- the commands (exe_train.c, exe_eval_bench.c): each returns the exit status --------- */

/* Data parallel (runtime/dist.h; exe_train.c): the launcher's ranks meet, LOCAL_RANK picks the
 * GPU unless DEITC_DEVICE does; *dist stays NULL for a single process (or world 1 without
 * DEITC_DIST=1). Returns 1 after printing the error. */
struct rt_dist;
int rt_exe_dist_start(struct rt_dist **dist, int *rank, int *world);
int rt_exe_cmd_train(const exe_args *a, const rt_plan *p);
int rt_exe_cmd_eval(const exe_args *a, const rt_plan *p);
int rt_exe_cmd_bench(const exe_args *a, const rt_plan *p);
int rt_exe_cmd_info(const exe_args *a, const rt_plan *p);
int rt_exe_cmd_allreduce(const exe_args *a, const rt_plan *p); /* exe_dist.c */

/* ---- exe_mixup.c -------------------------------------------------------------------------- */

/* Uploads the "mix" input (a plan without one: nothing) for step `step` of a run with options
 * o, or the identity (no mixing) when o is NULL or off. */
int rt_exe_set_mix(session *s, const rt_mix_options *o, uint64_t seed, long step);
/* --mixup/--cutmix given to a plan without "mix": the error (1); else 0. */
int rt_exe_mix_check(const session *s, const rt_mix_options *o);
/* Uploads the "drop_path" input (a plan without one: nothing) for step `step` at `rate` (0: keep all). */
int rt_exe_set_drop_path(session *s, double rate, uint64_t seed, long step);
/* --drop-path given to a plan without "drop_path": the error (1); else 0. */
int rt_exe_drop_path_check(const session *s, double rate);
/* A plan with "mix": the run option a checkpoint keeps ("mixup": "A,A,P,P"), returning 1; else 0. */
int rt_exe_mix_run_option(const session *s, const rt_mix_options *o, const char **key, char *value, size_t size);

#endif
