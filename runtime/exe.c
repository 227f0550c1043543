/* exe.c: the training executable's commands, over any device (device.c) and the compiled plan:
 *   train  weights (--init, the model's own, or the plan's initializers) -> steps over the data (batches of the
 *          plan's batch size, reshuffled each epoch) -> metrics, progress, --save
 *   eval   loss and accuracy over a dataset
 *   bench  timing of the step on synthetic data (device events on cuda, wall clock on emu)
 *   info   what the plan holds
 * Per step the host fills the INPUT tensors "images", "labels" and "opt" (RT_OPT_* slots: lr
 * from the schedule, weight decay, Adam bias corrections 1 - beta^t with t counted from 1,
 * grad scale 1), runs the step and reads the OUTPUT "loss" (and "logits" for eval).
 * All bad input is reported before the first step; exit status 1 for errors, 2 for usage.
 * This file: rt_main, the command dispatch, argument parsing, usage and the messages' helpers;
 * the session and checkpoints in exe_session.c, train in exe_train.c, eval, bench and info in
 * exe_eval_bench.c (what they share: exe_internal.h).
 */
#include "runtime/exe_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
/* ---- what the other exe_*.c files share (exe_internal.h) ---------------------------------- */

const char *rt_exe_prog = "EXE";
static char **prog_argv; /* file names in messages are escaped (rt_message_escape) */
static int prog_argc;
char **rt_exe_argv; /* the command line, for the resume command an interrupted run prints */
int rt_exe_argc;
double rt_exe_t_main; /* rt_exe_now_s() when rt_main began: bench reports start-up from it */

int rt_exe_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rt_strbuf shown = {0};
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *text = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (!text) abort();
    va_start(ap, fmt);
    vsnprintf(text, (size_t)(n > 0 ? n : 0) + 1, fmt, ap);
    va_end(ap);
    rt_message_escape(text, prog_argv, prog_argc, &shown);
    fprintf(stderr, "%s: error: %s\n", rt_exe_prog, shown.s ? shown.s : "");
    free(text);
    rt_sb_free(&shown);
    return 1;
}

/* a file name for stdout: control characters escaped (one static buffer: one name a printf) */
const char *rt_exe_shown(const char *path) {
    static char buf[4096];
    return rt_path_show(path, buf, sizeof buf);
}

double rt_exe_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void rt_exe_json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fprintf(f, "null");
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: %s train [--init W.safetensors [--partial-init]] --data D [--steps K | --epochs E] [--lr LR]\n"
            "                [--weight-decay WD] [--no-shuffle] [--save OUT.safetensors [--save-dtype fp32|fp16|bf16]]\n"
            "                [--metrics FILE.jsonl]\n"
            "                [--seed S] [--synthetic] [--warmup-steps W] [--schedule cosine|constant]\n"
            "                [--log-every N] [--no-graph] [--checkpoint C.safetensors [--checkpoint-every N]]\n"
            "                [--resume C.safetensors [--resume-override]] [--aug none|light|randaug|deit] [--workers N] [--stream]\n"
            "                [--loss-scale none|dynamic|S [--loss-scale-init S] [--loss-scale-interval N]]\n"
            "                [--mixup A] [--cutmix A] [--mixup-prob P] [--mixup-switch-prob P] (compiled with --mix;\n"
            "                timm's Mixup: DeiT uses --mixup 0.8 --cutmix 1.0; 0 is off, the default)\n"
            "                [--drop-path R] (compiled with --stochastic-depth; DeiT-S: 0.1, linear over blocks)\n"
            "                [--label-smoothing S] [--clip-grad MAX_NORM] [--beta1 B1] [--beta2 B2] [--adam-eps E]\n"
            "                [--min-lr LR] [--warmup-epochs E] [--schedule-per step|epoch]\n"
            "                [--val-data D [--eval-every N] [--save-best B.safetensors] [--summary S.csv]]\n"
            "                [--plot curves.png] [--ema-decay D] [--save-ema E.safetensors] [--freeze PATTERN,...]\n"
            "       %s eval --data D [--init W.safetensors [--partial-init]] [--seed S]\n"
            "       %s bench [--steps K] [--warmup W] [--init W.safetensors [--partial-init]] [--no-graph] [--profile]\n"
            "                [--data DIR|X.dpk [--aug none|light] [--workers N]]  (--data: the data path timed too)\n"
            "--init must give every weight of the model; with --partial-init the ones it lacks (a new classifier\n"
            "   head, for fine-tuning: also one of another number of classes) keep the model's own values.\n"
            "       %s info [-v]\n"
            "       %s allreduce [--steps K] [--bucket-mb MB]   (the gradient all-reduce alone, timed)\n"
            "       %s pack DIR -o OUT.dpk [--max-side S] [--jpeg-quality Q | --raw] [--workers N]\n"
            "D: an ImageFolder directory (a subfolder of .jpg/.jpeg/.png images per class; resized and center-\n"
            "   cropped as timm evaluates, ImageNet mean/std), a .safetensors tensor dataset (images f32 [N,C,H,W],\n"
            "   labels i64 [N]) or a CIFAR-10 .bin.\n"
            "--aug light: RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, bicubic) + flip, per (seed, epoch, image).\n"
            "--aug randaug: light + timm's RandAugment rand-m9-mstd0.5-inc1; deit: randaug + random erasing (p 0.25).\n"
            "   Their parts on their own: --rand-augment SPEC (timm's rand-m<M>[-n<N>][-mstd<S>][-p<P>]-inc1, or none)\n"
            "   and --reprob P (random erasing's probability) replace the preset's (--aug deit = light\n"
            "   --rand-augment rand-m9-mstd0.5-inc1 --reprob 0.25).\n"
            "   An ImageFolder is streamed by --workers threads (default: one a core) with --aug light, --stream, or\n"
            "   when its pixels exceed DEITC_DATA_CACHE_MB (1024); else decoded once. Same batches either way.\n"
            "--lr defaults to DeiT's 5e-4 x batch / 512; --label-smoothing and --clip-grad (0: off) default to the\n"
            "   compile's values, the betas and eps to the model's. --val-data is evaluated (loss, top-1, top-5 over\n"
            "   every image) after every epoch and every --eval-every steps. --ema-decay (default 0.99996) and\n"
            "   --save-ema need an executable compiled with --ema. Ctrl-C or SIGTERM: the step finishes, a checkpoint\n"
            "   is written (--checkpoint, else interrupted.safetensors) with the command that resumes it; exit 130/143.\n"
            "   --init with a head of another class count re-initializes the head; a pos_embed of another grid is\n"
            "   resampled (timm's resample_abs_pos_embed).\n"
            "--checkpoint writes the weights, the AdamW state and the step (every N steps and at the end); --resume\n"
            "continues such a run from its step (or, at its last step, writes its --save file); a run with other\n"
            "--steps/--epochs, --lr, --weight-decay, schedule, warm-up, shuffling, --aug or --seed is refused unless\n"
            "--resume-override. Training stops (exit 1) at a loss that is not finite; no file is ever written\n"
            "with a NaN or infinity. Each option may be given once; numbers are decimal.\n"
            "--loss-scale (an executable compiled with loss scaling: deitc compile --loss-scale, the fp16 default):\n"
            "   dynamic is GradScaler's (first scale --loss-scale-init, 65536; halved when a step's gradients are not\n"
            "   finite, which skips that step; doubled after --loss-scale-interval clean steps, 2000), S a static scale,\n"
            "   none no scaling. The scale, skipped steps and overflow flag are in the metrics and checkpoints.\n"
            "Data parallel: one process per GPU (mpirun, srun, torchrun --no-python, or RANK/WORLD_SIZE/LOCAL_RANK\n"
            "with MASTER_ADDR/MASTER_PORT); the plan's batch is per rank; gradients are averaged in buckets of\n"
            "--bucket-mb MiB (25); rank 0 writes --save, --checkpoint and --metrics. DEITC_DIST_TIMEOUT (300 s).\n"
            "Environment: DEITC_GEMM_THREADS (emu), DEITC_NO_GRAPH=0|1, DEITC_DEVICE, DEITC_CUDA_SYNC=0|1 (cuda).\n"
            "TF32 products are a compile option (deitc compile --precision tf32), not an environment variable.\n",
            rt_exe_prog, rt_exe_prog, rt_exe_prog, rt_exe_prog, rt_exe_prog, rt_exe_prog);
}

/* ---- arguments ----------------------------------------------------------------------------- */

/* Decimal digits only: no sign, blanks, 0x or octal surprises. */
static int parse_long(const char *opt, const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    int digits = s && *s && strspn(s, "0123456789") == strlen(s);
    long v = digits ? strtol(s, &end, 10) : 0;
    if (!digits || errno || v < min || v > max) {
        rt_exe_error("%s expects a decimal integer from %ld to %ld, got '%s'", opt, min, max, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *opt, const char *s, double min, double *out) {
    errno = 0;
    double v = s && rt_is_decimal(s) ? strtod(s, NULL) : NAN;
    if (errno || !(v >= min) || !isfinite(v)) {
        rt_exe_error("%s expects a decimal number >= %g, got '%s'", opt, min, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

/* The options each command takes; any other is refused rather than silently ignored. */
static int option_allowed(const char *cmd, const char *opt) {
    static const struct {
        const char *cmd, *opts;
    } table[] = {
        {"train", " --init --partial-init --data --save --metrics --steps --epochs --lr --weight-decay --seed --warmup-steps"
                  " --save-dtype --schedule --log-every --no-shuffle --synthetic --no-graph -v --verbose --profile"
                  " --checkpoint --checkpoint-every --resume --resume-override --loss-scale --loss-scale-init"
                  " --loss-scale-interval --bucket-mb --aug --workers --stream --mixup --cutmix --mixup-prob"
                  " --mixup-switch-prob --drop-path "},
        {"eval", " --init --partial-init --data --synthetic --seed --no-graph -v --verbose "},
        {"bench", " --init --partial-init --steps --warmup --seed --no-graph -v --verbose --profile --data --aug --workers "},
        {"info", " -v --verbose "},
        {"allreduce", " --steps --bucket-mb --init --partial-init --seed -v --verbose "},
    };
    char key[64];
    snprintf(key, sizeof key, " %s ", opt);
    if (!strcmp(cmd, "train") && strstr(rt_exe_run_option_names, key)) return 1; /* run_options.c */
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].cmd, cmd)) return strstr(table[i].opts, key) != NULL;
    return 1; /* unknown commands are reported by the caller */
}

/* 0 ok, 2 usage error (message printed). */
static int parse_args(int argc, char **argv, exe_args *a) {
    memset(a, 0, sizeof *a);
    a->cmd = argv[1];
    a->weight_decay = 0.05;
    a->bucket_mb = 25;
    a->shuffle = 1;
    a->bench_warmup = 3;
    rt_mix_options_default(&a->mix);
    /* DEITC_NO_GRAPH=1|true is --no-graph; 0, false or unset keep the graph; anything else is an error */
    int no_graph = 0;
    char env_err[256];
    if (rt_env_flag("DEITC_NO_GRAPH", &no_graph, env_err, sizeof env_err)) {
        rt_exe_error("%s", env_err);
        return 2;
    }
    a->use_graph = !no_graph;
    const char *seen[64];
    int nseen = 0;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        long lv;
        if (s[0] == '-' && !option_allowed(a->cmd, s)) {
            fprintf(stderr, "%s: error: '%s' does not take %s\n", rt_exe_prog, a->cmd, s);
            usage(stderr);
            return 2;
        }
        const char *name = !strcmp(s, "-v") ? "--verbose" : s;
        for (int j = 0; j < nseen && s[0] == '-'; j++) /* each option once: no silent "last one wins" */
            if (!strcmp(seen[j], name)) {
                rt_exe_error("%s is given twice", s);
                return 2;
            }
        if (s[0] == '-' && nseen < 64) seen[nseen++] = name;
        int run_opt = rt_exe_run_option(a, s, next); /* label smoothing, clipping, betas, validation */
        if (run_opt < 0) return 2;
        if (run_opt > 0) {
            i++;
            continue;
        }
        if (!strcmp(s, "--init")) a->init = next;
        else if (!strcmp(s, "--data")) a->data = next;
        else if (!strcmp(s, "--save")) a->save = next;
        else if (!strcmp(s, "--metrics")) a->metrics = next;
        else if (!strcmp(s, "--checkpoint")) a->checkpoint = next;
        else if (!strcmp(s, "--resume")) a->resume = next;
        else if (!strcmp(s, "--checkpoint-every")) {
            if (parse_long(s, next, 1, MAX_COUNT, &a->checkpoint_every)) return 2;
        }
        else if (!strcmp(s, "--steps")) {
            if (parse_long(s, next, 1, MAX_COUNT, &a->steps)) return 2;
            a->has_steps = 1;
        } else if (!strcmp(s, "--epochs")) {
            if (parse_long(s, next, 1, LONG_MAX, &a->epochs)) return 2;
            a->has_epochs = 1;
        } else if (!strcmp(s, "--lr")) {
            if (parse_double(s, next, 0, &a->lr)) return 2;
            a->has_lr = 1;
        } else if (!strcmp(s, "--bucket-mb")) {
            if (parse_double(s, next, 0, &a->bucket_mb)) return 2;
            if (!(a->bucket_mb > 0) || a->bucket_mb > 1e6) return rt_exe_error("--bucket-mb expects MiB, a number > 0"), 2;
        } else if (!strcmp(s, "--weight-decay")) {
            if (parse_double(s, next, 0, &a->weight_decay)) return 2;
        } else if (!strcmp(s, "--seed")) {
            if (parse_long(s, next, 0, LONG_MAX, &lv)) return 2;
            a->seed = (uint64_t)lv;
        } else if (!strcmp(s, "--mixup") || !strcmp(s, "--cutmix")) {
            if (parse_double(s, next, 0, s[2] == 'm' ? &a->mix.mixup_alpha : &a->mix.cutmix_alpha)) return 2;
        } else if (!strcmp(s, "--drop-path")) {
            if (parse_double(s, next, 0, &a->drop_path)) return 2;
            if (a->drop_path >= 1) {
                rt_exe_error("--drop-path must be in [0, 1), got %s", next);
                return 2;
            }
        } else if (!strcmp(s, "--mixup-prob") || !strcmp(s, "--mixup-switch-prob")) {
            double *p = s[8] == 'p' ? &a->mix.prob : &a->mix.switch_prob;
            if (parse_double(s, next, 0, p)) return 2;
            if (*p > 1) {
                rt_exe_error("%s must be in [0, 1], got %s", s, next);
                return 2;
            }
        } else if (!strcmp(s, "--warmup-steps")) {
            if (parse_long(s, next, 0, MAX_COUNT, &a->warmup_steps)) return 2;
        } else if (!strcmp(s, "--warmup")) {
            if (parse_long(s, next, 0, MAX_COUNT, &a->bench_warmup)) return 2;
        } else if (!strcmp(s, "--log-every")) {
            if (parse_long(s, next, 1, LONG_MAX, &a->log_every)) return 2;
        } else if (!strcmp(s, "--loss-scale")) {
            int mode;
            double v;
            char err[256];
            if (rt_loss_scale_parse(s, next, &mode, &v, err, sizeof err)) {
                rt_exe_error("%s", err);
                return 2;
            }
            a->loss_scale = next;
        } else if (!strcmp(s, "--loss-scale-init")) {
            if (rt_loss_scale_value(next, &a->loss_scale_init)) {
                rt_exe_error("--loss-scale-init expects a decimal number > 0 (at most 3.4e38), got '%s'", next ? next : "");
                return 2;
            }
        } else if (!strcmp(s, "--loss-scale-interval")) {
            if (parse_long(s, next, 1, 16777216L, &a->loss_scale_interval)) return 2;
        } else if (!strcmp(s, "--save-dtype")) {
            if (!next || (strcmp(next, "fp32") && strcmp(next, "fp16") && strcmp(next, "bf16"))) {
                fprintf(stderr, "%s: error: --save-dtype expects fp32, fp16 or bf16, got '%s'\n", rt_exe_prog,
                        next ? next : "");
                return 2;
            }
            a->save_dtype = !strcmp(next, "fp16") ? RT_F16 : !strcmp(next, "bf16") ? RT_BF16 : RT_F32;
        } else if (!strcmp(s, "--workers")) {
            if (parse_long(s, next, 1, 256, &a->workers)) return 2;
        } else if (!strcmp(s, "--aug")) {
            if (!next || (strcmp(next, "none") && strcmp(next, "light") && strcmp(next, "randaug") && strcmp(next, "deit"))) {
                fprintf(stderr, "%s: error: --aug expects none, light, randaug or deit, got '%s'\n", rt_exe_prog,
                        next ? next : "");
                return 2;
            }
            a->aug = next;
        } else if (!strcmp(s, "--schedule")) {
            if (!next || (strcmp(next, "cosine") && strcmp(next, "constant"))) {
                fprintf(stderr, "%s: error: --schedule expects cosine or constant, got '%s'\n", rt_exe_prog,
                        next ? next : "");
                return 2;
            }
            a->cosine = !strcmp(next, "cosine");
        } else {
            takes = 0;
            if (!strcmp(s, "--no-shuffle")) a->shuffle = 0;
            else if (!strcmp(s, "--partial-init")) a->partial_init = 1;
            else if (!strcmp(s, "--synthetic")) a->synthetic = 1;
            else if (!strcmp(s, "--no-graph")) a->use_graph = 0;
            else if (!strcmp(s, "-v") || !strcmp(s, "--verbose")) a->verbose = 1;
            else if (!strcmp(s, "--profile")) a->profile = 1;
            else if (!strcmp(s, "--resume-override")) a->resume_override = 1;
            else if (!strcmp(s, "--stream")) a->stream = 1;
            else {
                fprintf(stderr, "%s: error: unknown option '%s' for '%s'\n", rt_exe_prog, s, a->cmd);
                usage(stderr);
                return 2;
            }
        }
        if (takes) {
            if (!next) {
                fprintf(stderr, "%s: error: %s needs a value\n", rt_exe_prog, s);
                return 2;
            }
            i++;
        }
    }
    if (a->has_steps && a->has_epochs) {
        fprintf(stderr, "%s: error: give --steps or --epochs, not both\n", rt_exe_prog);
        return 2;
    }
    if (a->resume && a->init) {
        fprintf(stderr, "%s: error: give --init or --resume, not both (a checkpoint holds the weights)\n", rt_exe_prog);
        return 2;
    }
    if (a->resume_override && !a->resume) {
        fprintf(stderr, "%s: error: --resume-override needs --resume C\n", rt_exe_prog);
        return 2;
    }
    if (a->save_dtype != RT_F32 && !a->save) {
        fprintf(stderr, "%s: error: --save-dtype needs --save FILE\n", rt_exe_prog);
        return 2;
    }
    if (a->checkpoint_every && !a->checkpoint) {
        fprintf(stderr, "%s: error: --checkpoint-every needs --checkpoint FILE\n", rt_exe_prog);
        return 2;
    }
    if (a->has_lr && a->lr <= 0) {
        fprintf(stderr, "%s: error: --lr must be positive\n", rt_exe_prog);
        return 2;
    }
    return rt_exe_run_options_check(a);
}

/* ---- main ---------------------------------------------------------------------------------- */

/* rc, or 1 when what was printed did not reach stdout (a full disk, a closed pipe): a lost
 * report is an error, not a success. */
static int stdout_checked(int rc) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
    rt_exe_error("writing the standard output failed: %s", errno ? strerror(errno) : "I/O error");
    return rc ? rc : 1;
}

int rt_main(const rt_plan *p, int argc, char **argv) {
    prog_argv = rt_exe_argv = argv;
    prog_argc = rt_exe_argc = argc;
    rt_exe_t_main = rt_exe_now_s();
    /* not a terminal: one buffer that holds the help (so that a failed write's errno is seen by
     * stdout_checked's flush, not lost inside fprintf) */
    static char stdout_buffer[1 << 16];
    if (!isatty(STDOUT_FILENO)) setvbuf(stdout, stdout_buffer, _IOFBF, sizeof stdout_buffer);
    if (argc > 0 && argv[0]) {
        const char *slash = strrchr(argv[0], '/');
        rt_exe_prog = slash ? slash + 1 : argv[0];
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") || (i == 1 && !strcmp(argv[i], "help"))) {
            usage(stdout); /* EXE --help, EXE train --help */
            return stdout_checked(0);
        }
    if (!strcmp(argv[1], "pack")) return rt_exe_cmd_pack(argc, argv); /* exe_data.c: its own options */
    exe_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    if (!strcmp(a.cmd, "train")) rc = rt_exe_cmd_train(&a, p);
    else if (!strcmp(a.cmd, "eval")) rc = rt_exe_cmd_eval(&a, p);
    else if (!strcmp(a.cmd, "bench")) rc = rt_exe_cmd_bench(&a, p);
    else if (!strcmp(a.cmd, "info")) rc = rt_exe_cmd_info(&a, p);
    else if (!strcmp(a.cmd, "allreduce")) rc = rt_exe_cmd_allreduce(&a, p);
    else {
        fprintf(stderr, "%s: error: unknown command '%s' (train, eval, bench, info, allreduce)\n", rt_exe_prog, a.cmd);
        usage(stderr);
        return 2;
    }
    return stdout_checked(rc);
}
