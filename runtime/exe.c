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
#include <time.h>
/* ---- what the other exe_*.c files share (exe_internal.h) ---------------------------------- */

const char *rt_exe_prog = "EXE";
static char **prog_argv; /* file names in messages are escaped (rt_message_escape) */
static int prog_argc;
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
            "                [--resume C.safetensors [--resume-override]]\n"
            "                [--loss-scale none|dynamic|S [--loss-scale-init S] [--loss-scale-interval N]]\n"
            "       %s eval --data D [--init W.safetensors [--partial-init]] [--seed S]\n"
            "       %s bench [--steps K] [--warmup W] [--init W.safetensors [--partial-init]] [--no-graph] [--profile]\n"
            "--init must give every weight of the model; with --partial-init the ones it lacks (a new classifier\n"
            "   head, for fine-tuning: also one of another number of classes) keep the model's own values.\n"
            "       %s info [-v]\n"
            "D: an ImageFolder directory (a subfolder of .jpg/.jpeg/.png images per class; resized and center-\n"
            "   cropped as timm evaluates, ImageNet mean/std), a .safetensors tensor dataset (images f32 [N,C,H,W],\n"
            "   labels i64 [N]) or a CIFAR-10 .bin.\n"
            "--checkpoint writes the weights, the AdamW state and the step (every N steps and at the end); --resume\n"
            "continues such a run from its step (or, at its last step, writes its --save file); a run with other\n"
            "--steps/--epochs, --lr, --weight-decay, schedule, warm-up, shuffling or --seed is refused unless\n"
            "--resume-override. Training stops (exit 1) at a loss that is not finite; no file is ever written\n"
            "with a NaN or infinity. Each option may be given once; numbers are decimal.\n"
            "--loss-scale (an executable compiled with loss scaling: deitc compile --loss-scale, the fp16 default):\n"
            "   dynamic is GradScaler's (first scale --loss-scale-init, 65536; halved when a step's gradients are not\n"
            "   finite, which skips that step; doubled after --loss-scale-interval clean steps, 2000), S a static scale,\n"
            "   none no scaling. The scale, skipped steps and overflow flag are in the metrics and checkpoints.\n"
            "Environment: DEITC_GEMM_THREADS (emu), DEITC_NO_GRAPH=0|1, DEITC_DEVICE, DEITC_CUDA_SYNC=0|1 (cuda).\n"
            "TF32 products are a compile option (deitc compile --precision tf32), not an environment variable.\n",
            rt_exe_prog, rt_exe_prog, rt_exe_prog, rt_exe_prog);
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
                  " --loss-scale-interval "},
        {"eval", " --init --partial-init --data --synthetic --seed --no-graph -v --verbose "},
        {"bench", " --init --partial-init --steps --warmup --seed --no-graph -v --verbose --profile "},
        {"info", " -v --verbose "},
    };
    char key[64];
    snprintf(key, sizeof key, " %s ", opt);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].cmd, cmd)) return strstr(table[i].opts, key) != NULL;
    return 1; /* unknown commands are reported by the caller */
}

/* 0 ok, 2 usage error (message printed). */
static int parse_args(int argc, char **argv, exe_args *a) {
    memset(a, 0, sizeof *a);
    a->cmd = argv[1];
    a->lr = 1e-3;
    a->weight_decay = 0.05;
    a->shuffle = 1;
    a->bench_warmup = 3;
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
        } else if (!strcmp(s, "--weight-decay")) {
            if (parse_double(s, next, 0, &a->weight_decay)) return 2;
        } else if (!strcmp(s, "--seed")) {
            if (parse_long(s, next, 0, LONG_MAX, &lv)) return 2;
            a->seed = (uint64_t)lv;
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
    if (a->lr <= 0) {
        fprintf(stderr, "%s: error: --lr must be positive\n", rt_exe_prog);
        return 2;
    }
    return 0;
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
    prog_argv = argv;
    prog_argc = argc;
    rt_exe_t_main = rt_exe_now_s();
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
    exe_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    if (!strcmp(a.cmd, "train")) rc = rt_exe_cmd_train(&a, p);
    else if (!strcmp(a.cmd, "eval")) rc = rt_exe_cmd_eval(&a, p);
    else if (!strcmp(a.cmd, "bench")) rc = rt_exe_cmd_bench(&a, p);
    else if (!strcmp(a.cmd, "info")) rc = rt_exe_cmd_info(&a, p);
    else {
        fprintf(stderr, "%s: error: unknown command '%s' (train, eval, bench, info)\n", rt_exe_prog, a.cmd);
        usage(stderr);
        return 2;
    }
    return stdout_checked(rc);
}
