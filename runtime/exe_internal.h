/* exe_internal.h: what the executable's command files share, private to them (never installed,
 * never included outside runtime/exe*.c): the parsed command line, the session over the plan and
 * the device, and the helpers each file implements (sections follow the files):
 *   exe.c            rt_main, arguments, usage; messages (program name, errors, file names)
 *   exe_session.c    the session, weights, data, per-step uploads and downloads, checkpoints
 *   exe_train.c      train
 *   exe_eval_bench.c eval, bench, info
 *   exe_loss_scale.c the loss scaler: options onto its device state, resume checks, metrics
 */
#ifndef DEITC_EXE_INTERNAL_H
#define DEITC_EXE_INTERNAL_H

#include "runtime/rt.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *cmd;
    const char *init, *data, *save, *metrics, *checkpoint, *resume;
    long steps, epochs, warmup_steps, bench_warmup, log_every, checkpoint_every;
    int has_steps, has_epochs, has_lr, shuffle, synthetic, use_graph, verbose, cosine, profile, resume_override, partial_init;
    double lr, weight_decay;
    uint64_t seed;
    rt_dtype save_dtype; /* --save-dtype: what --save writes f32 weights as (RT_F32, RT_F16, RT_BF16) */
    const char *loss_scale;     /* --loss-scale none|dynamic|S as given; NULL: the plan's default */
    double loss_scale_init;     /* --loss-scale-init S; 0: not given */
    long loss_scale_interval;   /* --loss-scale-interval N; 0: not given */
} exe_args;

typedef struct {
    const rt_plan *p;
    rt_device *dev;
    const rt_plan_tensor *images, *labels, *opt, *loss, *logits;
    const rt_plan_tensor *scaler; /* STATE "loss_scaler" of a plan built with loss scaling; NULL */
    int64_t image_numel; /* C*H*W */
    float *batch_f32;    /* (batch, C, H, W) gathered on the host */
    void *stage;         /* the same in the images tensor's dtype (when not f32) */
    void *label_stage;   /* (batch) in the labels tensor's dtype */
} session;

/* The largest count any option takes: far beyond any run, far below where sums overflow. */
#define MAX_COUNT 1000000000000L

/* ---- exe.c -------------------------------------------------------------------------------- */

extern const char *rt_exe_prog; /* argv[0]'s last component, for messages */
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
int rt_exe_set_opt(session *s, double lr, double wd, long t); /* the "opt" slots for step t */
int rt_exe_read_f32(session *s, const rt_plan_tensor *t, int64_t n, float *out);
int rt_exe_load_data(const exe_args *a, const rt_plan *p, rt_dataset *ds); /* --data or --synthetic */
/* --save (with_state 0, weights as dtype) or --checkpoint (with_state 1) after `steps` of `total`. */
int rt_exe_save_weights(session *s, const char *path, long steps, int with_state, const exe_args *a, long total,
                        rt_dtype dtype);
/* --resume: the checkpoint's weights and optimizer state, and the step it reached into *step. */
int rt_exe_load_checkpoint(session *s, const exe_args *a, long total, long *step);

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

/* ---- the commands (exe_train.c, exe_eval_bench.c): each returns the exit status --------- */

int rt_exe_cmd_train(const exe_args *a, const rt_plan *p);
int rt_exe_cmd_eval(const exe_args *a, const rt_plan *p);
int rt_exe_cmd_bench(const exe_args *a, const rt_plan *p);
int rt_exe_cmd_info(const exe_args *a, const rt_plan *p);

#endif
