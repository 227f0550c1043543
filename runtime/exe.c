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
 */
#include "runtime/rt.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *cmd;
    const char *init, *data, *save, *metrics, *checkpoint, *resume;
    long steps, epochs, warmup_steps, bench_warmup, log_every, checkpoint_every;
    int has_steps, has_epochs, has_lr, shuffle, synthetic, use_graph, verbose, cosine, profile, resume_override, partial_init;
    double lr, weight_decay;
    uint64_t seed;
    rt_dtype save_dtype; /* --save-dtype: what --save writes f32 weights as (RT_F32, RT_F16, RT_BF16) */
} exe_args;

typedef struct {
    const rt_plan *p;
    rt_device *dev;
    const rt_plan_tensor *images, *labels, *opt, *loss, *logits;
    int64_t image_numel; /* C*H*W */
    float *batch_f32;    /* (batch, C, H, W) gathered on the host */
    void *stage;         /* the same in the images tensor's dtype (when not f32) */
    void *label_stage;   /* (batch) in the labels tensor's dtype */
} session;

static const char *prog = "EXE";
static char **prog_argv; /* file names in messages are escaped (rt_message_escape) */
static int prog_argc;
static double t_main; /* now_s() when rt_main began: bench reports start-up from it */

static int error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int error(const char *fmt, ...) {
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
    fprintf(stderr, "%s: error: %s\n", prog, shown.s ? shown.s : "");
    free(text);
    rt_sb_free(&shown);
    return 1;
}

/* a file name for stdout: control characters escaped (one static buffer: one name a printf) */
static const char *shown(const char *path) {
    static char buf[4096];
    return rt_path_show(path, buf, sizeof buf);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: %s train [--init W.safetensors [--partial-init]] --data D [--steps K | --epochs E] [--lr LR]\n"
            "                [--weight-decay WD] [--no-shuffle] [--save OUT.safetensors [--save-dtype fp32|fp16|bf16]]\n"
            "                [--metrics FILE.jsonl]\n"
            "                [--seed S] [--synthetic] [--warmup-steps W] [--schedule cosine|constant]\n"
            "                [--log-every N] [--no-graph] [--checkpoint C.safetensors [--checkpoint-every N]]\n"
            "                [--resume C.safetensors [--resume-override]]\n"
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
            "Environment: DEITC_GEMM_THREADS (emu), DEITC_NO_GRAPH, DEITC_DEVICE, DEITC_CUDA_SYNC (cuda).\n"
            "TF32 products are a compile option (deitc compile --precision tf32), not an environment variable.\n",
            prog, prog, prog, prog);
}

/* ---- arguments ----------------------------------------------------------------------------- */

/* The largest count any option takes: far beyond any run, far below where sums overflow. */
#define MAX_COUNT 1000000000000L

/* Decimal digits only: no sign, blanks, 0x or octal surprises. */
static int parse_long(const char *opt, const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    int digits = s && *s && strspn(s, "0123456789") == strlen(s);
    long v = digits ? strtol(s, &end, 10) : 0;
    if (!digits || errno || v < min || v > max) {
        error("%s expects a decimal integer from %ld to %ld, got '%s'", opt, min, max, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

/* Decimal numbers: digits, an optional fraction and exponent (no hex, inf or nan). */
static int is_decimal(const char *s) {
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    size_t a = strspn(p, "0123456789");
    p += a;
    size_t b = 0;
    if (*p == '.') b = strspn(++p, "0123456789"), p += b;
    if (!a && !b) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        size_t e = strspn(p, "0123456789");
        if (!e) return 0;
        p += e;
    }
    return *p == 0;
}

static int parse_double(const char *opt, const char *s, double min, double *out) {
    errno = 0;
    double v = s && is_decimal(s) ? strtod(s, NULL) : NAN;
    if (errno || !(v >= min) || !isfinite(v)) {
        error("%s expects a decimal number >= %g, got '%s'", opt, min, s ? s : "");
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
                  " --checkpoint --checkpoint-every --resume --resume-override "},
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
    a->use_graph = 1;
    a->bench_warmup = 3;
    const char *seen[64];
    int nseen = 0;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        long lv;
        if (s[0] == '-' && !option_allowed(a->cmd, s)) {
            fprintf(stderr, "%s: error: '%s' does not take %s\n", prog, a->cmd, s);
            usage(stderr);
            return 2;
        }
        const char *name = !strcmp(s, "-v") ? "--verbose" : s;
        for (int j = 0; j < nseen && s[0] == '-'; j++) /* each option once: no silent "last one wins" */
            if (!strcmp(seen[j], name)) {
                error("%s is given twice", s);
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
        } else if (!strcmp(s, "--save-dtype")) {
            if (!next || (strcmp(next, "fp32") && strcmp(next, "fp16") && strcmp(next, "bf16"))) {
                fprintf(stderr, "%s: error: --save-dtype expects fp32, fp16 or bf16, got '%s'\n", prog,
                        next ? next : "");
                return 2;
            }
            a->save_dtype = !strcmp(next, "fp16") ? RT_F16 : !strcmp(next, "bf16") ? RT_BF16 : RT_F32;
        } else if (!strcmp(s, "--schedule")) {
            if (!next || (strcmp(next, "cosine") && strcmp(next, "constant"))) {
                fprintf(stderr, "%s: error: --schedule expects cosine or constant, got '%s'\n", prog,
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
                fprintf(stderr, "%s: error: unknown option '%s' for '%s'\n", prog, s, a->cmd);
                usage(stderr);
                return 2;
            }
        }
        if (takes) {
            if (!next) {
                fprintf(stderr, "%s: error: %s needs a value\n", prog, s);
                return 2;
            }
            i++;
        }
    }
    if (a->has_steps && a->has_epochs) {
        fprintf(stderr, "%s: error: give --steps or --epochs, not both\n", prog);
        return 2;
    }
    if (a->resume && a->init) {
        fprintf(stderr, "%s: error: give --init or --resume, not both (a checkpoint holds the weights)\n", prog);
        return 2;
    }
    if (a->resume_override && !a->resume) {
        fprintf(stderr, "%s: error: --resume-override needs --resume C\n", prog);
        return 2;
    }
    if (a->save_dtype != RT_F32 && !a->save) {
        fprintf(stderr, "%s: error: --save-dtype needs --save FILE\n", prog);
        return 2;
    }
    if (a->checkpoint_every && !a->checkpoint) {
        fprintf(stderr, "%s: error: --checkpoint-every needs --checkpoint FILE\n", prog);
        return 2;
    }
    if (a->lr <= 0) {
        fprintf(stderr, "%s: error: --lr must be positive\n", prog);
        return 2;
    }
    return 0;
}

/* ---- the session: plan tensors, device, host staging ----------------------------------------- */

static const rt_plan_tensor *find_tensor(const rt_plan *p, rt_role role, const char *name) {
    for (int i = 0; i < p->num_tensors; i++)
        if (p->tensors[i].role == role && strcmp(p->tensors[i].name, name) == 0) return &p->tensors[i];
    return NULL;
}

static int64_t numel(const rt_plan_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t size) {
    buf[0] = 0;
    for (int d = 0; d < ndim; d++) {
        size_t n = strlen(buf);
        snprintf(buf + n, size - n, "%s%lld", d ? "," : "", (long long)shape[d]);
    }
}

/* float -> the tensor's dtype (f32, f16, bf16) */
static void from_f32(const float *src, int64_t n, rt_dtype t, void *dst) {
    if (t == RT_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
    } else {
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++) h[i] = t == RT_F16 ? rt_float_to_half(src[i]) : rt_float_to_bf16(src[i]);
    }
}

static void to_f32(const void *src, int64_t n, rt_dtype t, float *dst) {
    rt_tensor tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.dtype = t;
    tmp.ndim = 1;
    tmp.shape[0] = n;
    tmp.nbytes = (size_t)n * rt_dtype_size(t);
    tmp.data = (void *)src;
    if (rt_tensor_to_f32(&tmp, dst)) memset(dst, 0, sizeof(float) * (size_t)n);
}

static int is_float(rt_dtype t) { return t == RT_F32 || t == RT_F16 || t == RT_BF16; }

static void session_free(session *s) {
    rt_device_free(s->dev);
    free(s->batch_f32);
    free(s->stage);
    free(s->label_stage);
    memset(s, 0, sizeof *s);
}

/* Finds the tensors the runtime fills and reads, checks them, opens the device. */
static int session_open(session *s, const rt_plan *p, int need_device) {
    memset(s, 0, sizeof *s);
    s->p = p;
    char err[1200];
    if (rt_plan_check(p, err, sizeof err)) return error("%s", err);
    for (int i = 0; i < p->num_tensors; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if (t->role == RT_ROLE_INPUT && strcmp(t->name, "images") && strcmp(t->name, "labels") &&
            strcmp(t->name, "opt"))
            return error("plan: input '%s' is not one the runtime fills (images, labels, opt)", t->name);
    }
    s->images = find_tensor(p, RT_ROLE_INPUT, "images");
    s->labels = find_tensor(p, RT_ROLE_INPUT, "labels");
    s->opt = find_tensor(p, RT_ROLE_INPUT, "opt");
    s->loss = find_tensor(p, RT_ROLE_OUTPUT, "loss");
    s->logits = find_tensor(p, RT_ROLE_OUTPUT, "logits");
    if (!s->images || s->images->ndim != 4 || s->images->shape[0] != p->batch || !is_float(s->images->dtype))
        return error("plan: needs a float input 'images' of shape [batch=%lld,C,H,W]", (long long)p->batch);
    if (!s->labels || numel(s->labels) != p->batch || (s->labels->dtype != RT_I64 && s->labels->dtype != RT_I32))
        return error("plan: needs an integer input 'labels' of shape [%lld]", (long long)p->batch);
    if (!s->opt || s->opt->dtype != RT_F32 || numel(s->opt) < RT_OPT_SLOTS)
        return error("plan: needs an f32 input 'opt' with %d slots", RT_OPT_SLOTS);
    if (!s->loss || !is_float(s->loss->dtype) || numel(s->loss) < 1)
        return error("plan: needs a float output 'loss'");
    if (s->logits && (!is_float(s->logits->dtype) || numel(s->logits) != p->batch * p->num_classes))
        s->logits = NULL; /* not the [batch, classes] logits eval can use */
    s->image_numel = s->images->shape[1] * s->images->shape[2] * s->images->shape[3];
    s->batch_f32 = malloc(sizeof(float) * (size_t)(p->batch * s->image_numel));
    s->stage = malloc(sizeof(float) * (size_t)(p->batch * s->image_numel));
    s->label_stage = malloc(sizeof(int64_t) * (size_t)p->batch);
    if (!s->batch_f32 || !s->stage || !s->label_stage) return error("out of memory for the host batch");
    if (need_device && getenv("DEITC_TF32"))
        fprintf(stderr, "note: DEITC_TF32 is ignored: this executable was compiled with --precision %s "
                        "(TF32 products: deitc compile --precision tf32)\n", p->precision ? p->precision : "fp32");
    if (need_device && rt_device_new(p, &s->dev, err, sizeof err)) return error("%s", err);
    return 0;
}

/* Uploads plan tensor t (converted to its dtype) from file (`path` in messages), else, when the
 * file lacks it, from fallback: the model's own values (init_data), else its initializer.
 * Returns 1 when the file had it, 0 when the fallback was used (none given: nothing uploaded),
 * -1 on error (reported). */
static int upload_tensor(session *s, const rt_plan_tensor *t, const rt_tensor_set *file, const char *path,
                         const char *prefix, int fallback, uint64_t seed) {
    char err[1200];
    int64_t n = numel(t);
    float *buf = malloc(sizeof(float) * (size_t)(n ? n : 1));
    void *conv = malloc((size_t)(n ? n : 1) * rt_dtype_size(t->dtype) + 4);
    if (!buf || !conv) abort();
    char full[600];
    snprintf(full, sizeof full, "%s%s", prefix, t->name);
    int found = file ? rt_weight_read(file, path, full, t->ndim, t->shape, buf, err, sizeof err) : 0;
    if (found < 0) error("%s", err);
    else if (!found && fallback && t->init_data) memcpy(buf, t->init_data, sizeof(float) * (size_t)n);
    else if (!found && fallback) rt_init_fill(t->init, t->init_std, seed, t->name, buf, n);
    if (found > 0 || (found == 0 && fallback)) {
        from_f32(buf, n, t->dtype, conv);
        if (s->dev->upload(s->dev, t->offset, conv, (uint64_t)n * rt_dtype_size(t->dtype))) {
            error("%s", s->dev->err);
            found = -1;
        }
    }
    free(buf);
    free(conv);
    return found;
}

/* Weights from --init (checked tensor by tensor), else the model file's values embedded in
 * the plan, else the plan's initializers; state zeroed. --init must give every weight unless
 * `partial` (--partial-init), with which a classifier head of another shape is left out too. */
static int load_weights(session *s, const char *init, int partial, uint64_t seed) {
    const rt_plan *p = s->p;
    rt_tensor_set set;
    memset(&set, 0, sizeof set);
    char err[1200];
    if (partial && !init) return error("--partial-init needs --init");
    if (init && rt_safetensors_read_checked(init, 0, &set, err, sizeof err) < 0) return error("%s", err);
    char note[600], full[600];
    const char *prefix = init ? rt_weights_prefix(&set, init, note, sizeof note) : "";
    if (*prefix) fprintf(stderr, "%s: note: %s\n", prog, note);
    const char **missing = calloc((size_t)p->num_tensors + 1, sizeof *missing);
    if (!missing) abort();
    int rc = 0, used = 0, nmissing = 0, total = 0;
    for (int i = 0; i < p->num_tensors && !rc; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if (t->role == RT_ROLE_STATE) {
            if (s->dev->zero(s->dev, t->offset, t->bytes)) rc = error("%s", s->dev->err);
            continue;
        }
        if (t->role != RT_ROLE_WEIGHT) continue;
        total++;
        snprintf(full, sizeof full, "%s%s", prefix, t->name);
        const rt_tensor *ft = init ? rt_tensor_set_find(&set, full) : NULL;
        int same = ft && ft->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = ft->shape[d] == t->shape[d];
        int skip = ft && !same && partial && rt_weight_is_head(t->name); /* a new head */
        int found = upload_tensor(s, t, init && !skip ? &set : NULL, init, prefix, !init || partial, seed);
        if (found < 0) rc = 1;
        else if (found) used++;
        else if (init) missing[nmissing++] = t->name, used += skip; /* a skipped head is no stray tensor */
    }
    if (!rc && nmissing) {
        char msg[1024];
        rt_weights_missing_text(init, missing, nmissing, total, partial, msg, sizeof msg);
        if (partial) fprintf(stderr, "%s: note: %s\n", prog, msg);
        else rc = error("%s", msg);
    }
    free(missing);
    if (!rc && init && used < set.count) {
        const char *first = "?";
        for (int i = 0; i < set.count; i++)
            if (!find_tensor(p, RT_ROLE_WEIGHT, set.tensors[i].name + strlen(prefix))) {
                first = set.tensors[i].name;
                break;
            }
        fprintf(stderr, "%s: note: %d tensor(s) in %s are not weights of this model (e.g. '%s'); ignored\n", prog,
                set.count - used, init, first);
    }
    rt_tensor_set_free(&set);
    return rc;
}

/* Gathers images/labels idx[0..batch) of ds and uploads them. */
static int fill_batch(session *s, const rt_dataset *ds, const int64_t *idx) {
    const rt_plan *p = s->p;
    for (int64_t i = 0; i < p->batch; i++) rt_dataset_image(ds, idx[i], s->batch_f32 + i * s->image_numel);
    int64_t n = p->batch * s->image_numel;
    const void *img = s->batch_f32;
    if (s->images->dtype != RT_F32) {
        from_f32(s->batch_f32, n, s->images->dtype, s->stage);
        img = s->stage;
    }
    for (int64_t i = 0; i < p->batch; i++) {
        if (s->labels->dtype == RT_I64) ((int64_t *)s->label_stage)[i] = ds->labels[idx[i]];
        else ((int32_t *)s->label_stage)[i] = (int32_t)ds->labels[idx[i]];
    }
    if (s->dev->upload(s->dev, s->images->offset, img, (uint64_t)n * rt_dtype_size(s->images->dtype)) ||
        s->dev->upload(s->dev, s->labels->offset, s->label_stage, (uint64_t)p->batch * rt_dtype_size(s->labels->dtype)))
        return error("%s", s->dev->err);
    return 0;
}

static int set_opt(session *s, double lr, double wd, long t) {
    double exact[RT_OPT_SLOTS];
    float slots[RT_OPT_SLOTS];
    rt_opt_fill(exact, lr, wd, s->p->beta1, s->p->beta2, t);
    for (int k = 0; k < RT_OPT_SLOTS; k++) slots[k] = (float)exact[k];
    if (s->dev->upload(s->dev, s->opt->offset, slots, sizeof slots)) return error("%s", s->dev->err);
    return 0;
}

static int read_f32(session *s, const rt_plan_tensor *t, int64_t n, float *out) {
    size_t bytes = (size_t)n * rt_dtype_size(t->dtype);
    void *raw = malloc(bytes ? bytes : 1);
    if (!raw) abort();
    int rc = s->dev->download(s->dev, raw, t->offset, bytes);
    if (!rc) to_f32(raw, n, t->dtype, out);
    free(raw);
    return rc ? error("%s", s->dev->err) : 0;
}

static int run_step(session *s, int use_graph) {
    if (rt_device_run(s->dev, use_graph)) return error("%s", s->dev->err);
    return 0;
}

static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fprintf(f, "null");
}

static double lr_at(const exe_args *a, long step, long total) {
    if (a->warmup_steps > 0 && step <= a->warmup_steps) return a->lr * (double)step / (double)a->warmup_steps;
    if (!a->cosine) return a->lr;
    long span = total - a->warmup_steps;
    if (span < 1) return a->lr;
    double progress = (double)(step - a->warmup_steps - 1) / (double)span;
    return a->lr * 0.5 * (1 + cos(3.14159265358979323846 * progress));
}

static int load_data(const exe_args *a, const rt_plan *p, rt_dataset *ds) {
    char err[1200];
    if (a->synthetic) {
        if (rt_dataset_synthetic(p, p->batch, a->seed, ds, err, sizeof err)) return error("%s", err);
        return 0;
    }
    if (!a->data)
        return error("%s needs --data D (an ImageFolder directory, a .safetensors tensor dataset or CIFAR-10 .bin)%s",
                     a->cmd, strcmp(a->cmd, "train") ? "" : ", or --synthetic");
    if (rt_dataset_load(a->data, p, ds, err, sizeof err)) return error("%s", err);
    if (ds->images_u8)
        printf("data: %s: %lld images, %lld classes, decoded in %.2f s\n", shown(a->data), (long long)ds->n,
               (long long)ds->classes, ds->load_s);
    return 0;
}

/* ---- train --------------------------------------------------------------------------------- */

/* Fails early (before any training) when `path` cannot be written, so a long run never ends
 * with its results lost. */
static int check_writable(const char *path) {
    char err[1200];
    return rt_output_check(path, err, sizeof err) ? error("%s", err) : 0;
}

/* The index of the first element of a float tensor that is not finite, or -1. */
static int64_t first_nonfinite(const void *data, int64_t n, rt_dtype t) {
    if (!is_float(t)) return -1;
    float chunk[1024];
    for (int64_t i = 0; i < n; i += 1024) {
        int64_t k = n - i < 1024 ? n - i : 1024;
        to_f32((const char *)data + (size_t)i * rt_dtype_size(t), k, t, chunk);
        for (int64_t j = 0; j < k; j++)
            if (!isfinite(chunk[j])) return i + j;
    }
    return -1;
}

/* The run's options a checkpoint keeps, as metadata keys and values: what --resume compares. */
typedef struct {
    const char *key;
    char value[64];
} run_option;
enum { RUN_OPTIONS = 7 };

/* v in the fewest digits that read back as v (0.1, not 0.10000000000000001) */
static void shortest(double v, char *buf, size_t size) {
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static void run_options(const exe_args *a, long total, run_option o[RUN_OPTIONS]) {
    static const char *keys[RUN_OPTIONS] = {"steps", "lr", "weight_decay", "schedule", "warmup_steps", "seed",
                                            "shuffle"};
    for (int i = 0; i < RUN_OPTIONS; i++) o[i].key = keys[i];
    snprintf(o[0].value, sizeof o[0].value, "%ld", total);
    shortest(a->lr, o[1].value, sizeof o[1].value);
    shortest(a->weight_decay, o[2].value, sizeof o[2].value);
    snprintf(o[3].value, sizeof o[3].value, "%s", a->cosine ? "cosine" : "constant");
    snprintf(o[4].value, sizeof o[4].value, "%ld", a->warmup_steps);
    snprintf(o[5].value, sizeof o[5].value, "%llu", (unsigned long long)a->seed);
    snprintf(o[6].value, sizeof o[6].value, "%s", a->shuffle ? "yes" : "no");
}

/* The trained weights (--save: timm's names, loadable by timm), or with with_state a checkpoint
 * (--checkpoint): the weights, the optimizer state (adam_m.*, adam_v.*) and the step reached,
 * as the I64 tensor "checkpoint.step", which --resume continues from. dtype (--save-dtype):
 * f32 weights written as F16 or BF16 (round to nearest even; half the bytes, timm loads both);
 * checkpoints always keep what the plan holds, so that a resumed run is exact. */
static int save_weights(session *s, const char *path, long steps, int with_state, const exe_args *a, long total,
                        rt_dtype dtype) {
    const rt_plan *p = s->p;
    rt_tensor *ts = calloc((size_t)p->num_tensors + 2, sizeof *ts);
    if (!ts) abort();
    int n = 0, rc = 0;
    int64_t step64 = steps;
    for (int i = 0; i < p->num_tensors && !rc; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if (t->role != RT_ROLE_WEIGHT && !(with_state && t->role == RT_ROLE_STATE)) continue;
        rt_tensor *o = &ts[n++];
        o->name = (char *)t->name;
        o->dtype = t->dtype;
        o->ndim = t->ndim;
        memcpy(o->shape, t->shape, sizeof o->shape);
        o->nbytes = (size_t)numel(t) * rt_dtype_size(t->dtype);
        o->data = malloc(o->nbytes ? o->nbytes : 1);
        if (!o->data) abort();
        if (s->dev->download(s->dev, o->data, t->offset, o->nbytes)) rc = error("%s", s->dev->err);
        int64_t bad = rc ? -1 : first_nonfinite(o->data, numel(t), t->dtype);
        if (bad >= 0)
            rc = error("not writing %s: %s '%s' holds a NaN or infinity at element %lld after step %ld (training "
                       "diverged: try a smaller --lr); the file is left as it was",
                       path, t->role == RT_ROLE_STATE ? "optimizer state" : "weight", t->name, (long long)bad, steps);
        if (!rc && !with_state && t->dtype == RT_F32 && dtype != RT_F32) { /* narrowed in place */
            const float *f = o->data;
            uint16_t *h = o->data;
            for (int64_t k = 0; k < numel(t); k++) h[k] = dtype == RT_F16 ? rt_float_to_half(f[k]) : rt_float_to_bf16(f[k]);
            o->dtype = dtype;
            o->nbytes /= 2;
        }
    }
    rt_strbuf meta = {0};
    if (!rc) {
        char err[1200];
        rt_sb_puts(&meta, "{\"format\":\"pt\",\"model\":");
        rt_sb_json_string(&meta, p->model_name ? p->model_name : "?");
        rt_sb_printf(&meta, ",\"steps\":\"%ld\",\"producer\":\"deitc\"", steps);
        if (with_state) {
            run_option ro[RUN_OPTIONS];
            run_options(a, total, ro);
            for (int i = 0; i < RUN_OPTIONS; i++) {
                rt_sb_printf(&meta, ",\"deitc.run.%s\":", ro[i].key);
                rt_sb_json_string(&meta, ro[i].value);
            }
        }
        rt_sb_puts(&meta, "}");
        if (with_state) {
            rt_tensor *o = &ts[n++];
            o->name = "checkpoint.step";
            o->dtype = RT_I64;
            o->ndim = 1;
            o->shape[0] = 1;
            o->nbytes = sizeof step64;
            o->data = malloc(sizeof step64);
            if (!o->data) abort();
            memcpy(o->data, &step64, sizeof step64);
        }
        if (rt_safetensors_write(path, ts, n, meta.s, err, sizeof err)) rc = error("%s", err);
        else if (with_state) printf("checkpoint at step %ld: %s\n", steps, shown(path));
        else printf("saved %d weight tensors to %s\n", n, shown(path));
    }
    rt_sb_free(&meta);
    for (int i = 0; i < n; i++) free(ts[i].data);
    free(ts);
    return rc;
}

/* --resume: a checkpoint (its checksums verified) of a run with these options (unless
 * --resume-override): its weights and optimizer state (every one of this model's, with its
 * shape) and the step it reached, into *step. */
static int load_checkpoint(session *s, const exe_args *a, long total, long *step) {
    const rt_plan *p = s->p;
    const char *path = a->resume;
    rt_tensor_set set;
    memset(&set, 0, sizeof set);
    char err[1200];
    if (rt_safetensors_read_checked(path, 1, &set, err, sizeof err)) return error("%s", err);
    int rc = 0;
    const rt_tensor *st = rt_tensor_set_find(&set, "checkpoint.step");
    int64_t at = 0;
    if (!st || st->dtype != RT_I64 || st->nbytes != sizeof at)
        rc = error("%s: not a checkpoint: it has no I64 tensor 'checkpoint.step' (write one with train --checkpoint)",
                   path);
    else {
        memcpy(&at, st->data, sizeof at);
        if (at < 1 || at > LONG_MAX) rc = error("%s: checkpoint.step = %lld is not a step", path, (long long)at);
    }
    if (!rc) {
        run_option ro[RUN_OPTIONS];
        run_options(a, total, ro);
        rt_strbuf diff = {0}, v = {0};
        for (int i = 0; i < RUN_OPTIONS; i++) {
            char key[64];
            snprintf(key, sizeof key, "deitc.run.%s", ro[i].key);
            int found = rt_json_get_string(set.metadata, key, &v);
            if (found != 1 || strcmp(v.s, ro[i].value))
                rt_sb_printf(&diff, "%s%s %s (the checkpoint's run: %s)", diff.len ? ", " : "", ro[i].key, ro[i].value,
                             found == 1 ? v.s : "not recorded");
        }
        if (diff.len && !a->resume_override)
            rc = error("%s: this run differs from the checkpoint's: %s; give the same options to continue that run, or "
                       "--resume-override to continue with these",
                       path, diff.s);
        else if (diff.len)
            fprintf(stderr, "%s: note: --resume-override: continuing %s with other options: %s\n", prog, path, diff.s);
        rt_sb_free(&diff);
        rt_sb_free(&v);
    }
    for (int i = 0; i < p->num_tensors && !rc; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if (t->role != RT_ROLE_WEIGHT && t->role != RT_ROLE_STATE) continue;
        int found = upload_tensor(s, t, &set, path, "", 0, 0);
        if (found < 0) rc = 1;
        else if (!found)
            rc = error("%s: has no tensor '%s' (%s of this model): not a checkpoint of it", path, t->name,
                       t->role == RT_ROLE_STATE ? "optimizer state" : "a weight");
    }
    rt_tensor_set_free(&set);
    if (!rc) *step = (long)at;
    return rc;
}

static int cmd_train(const exe_args *a, const rt_plan *p) {
    rt_dataset ds;
    memset(&ds, 0, sizeof ds);
    session s;
    memset(&s, 0, sizeof s);
    FILE *metrics = NULL;
    int64_t *perm = NULL, *idx = NULL;
    int rc = 1;
    /* no output may be one of the inputs (--resume C --checkpoint C continues C: that is the point) */
    char err[1200];
    int resume_is_checkpoint = a->resume && a->checkpoint && rt_same_file(a->resume, a->checkpoint);
    const rt_named_path outputs[] = {{"--save", a->save}, {"--checkpoint", a->checkpoint}, {"--metrics", a->metrics}};
    const rt_named_path inputs[] = {{"--data", a->data}, {"--init", a->init},
                                    {"--resume", resume_is_checkpoint ? NULL : a->resume},
                                    {"the executable", "/proc/self/exe"}};
    if (rt_paths_check(outputs, 3, inputs, 4, err, sizeof err)) {
        error("%s", err);
        goto done;
    }
    if (a->save && check_writable(a->save)) goto done;
    if (a->checkpoint && check_writable(a->checkpoint)) goto done;
    if (a->metrics && check_writable(a->metrics)) goto done;
    if (load_data(a, p, &ds)) goto done;
    if (ds.n < p->batch) {
        error("%s: the dataset has %lld images, fewer than the batch size %lld this executable was compiled for "
              "(deitc compile --batch N)",
              a->data ? a->data : "synthetic data", (long long)ds.n, (long long)p->batch);
        goto done;
    }
    if (a->metrics && !(metrics = fopen(a->metrics, a->resume ? "a" : "w"))) { /* a resumed run appends */
        error("%s: cannot open for writing: %s", a->metrics, strerror(errno));
        goto done;
    }
    int64_t per_epoch = ds.n / p->batch;
    if (a->has_epochs && a->epochs > MAX_COUNT / per_epoch) {
        error("--epochs %ld: %ld epochs of %lld steps is more steps than can be counted", a->epochs, a->epochs,
              (long long)per_epoch);
        goto done;
    }
    long total = a->has_steps ? a->steps : (long)(a->has_epochs ? a->epochs : 1) * (long)per_epoch;
    long first = 1; /* the first step to run: after the checkpoint's with --resume */
    if (session_open(&s, p, 1) || load_weights(&s, a->init, a->partial_init, a->seed)) goto done;
    if (a->resume) {
        long at = 0;
        if (load_checkpoint(&s, a, total, &at)) goto done;
        first = at + 1;
    }
    long log_every = a->log_every ? a->log_every : (total <= 50 ? 1 : total / 25);
    perm = malloc(sizeof(int64_t) * (size_t)ds.n);
    if (!perm) abort();
    printf("train: %s on %s, batch %lld, %lld images (%lld steps an epoch), %ld steps, lr %g%s, weight decay %g\n",
           p->model_name ? p->model_name : "model", s.dev->name, (long long)p->batch, (long long)ds.n,
           (long long)per_epoch, total, a->lr, a->cosine ? " cosine" : "", a->weight_decay);
    fflush(stdout);
    int64_t epoch = -1;
    double t_start = now_s(), images = 0;
    if (first == total + 1 && a->save) { /* a finished run's checkpoint: its weights are the result */
        printf("%s: the checkpoint is at the run's last step (%ld): nothing left to train; writing its weights\n",
               shown(a->resume), total);
        if (save_weights(&s, a->save, total, 0, a, total, a->save_dtype)) goto done;
        rc = 0;
        goto done;
    }
    if (first > total) {
        error("%s: the checkpoint is at step %ld and this run has %ld steps: nothing left to train (give more --steps "
              "or --epochs, or --save W to write its weights)", a->resume, first - 1, total);
        goto done;
    }
    if (a->resume) printf("resuming from %s at step %ld\n", shown(a->resume), first - 1);
    for (long step = first; step <= total; step++) {
        int64_t e = (step - 1) / per_epoch, pos = ((step - 1) % per_epoch) * p->batch;
        if (e != epoch) {
            epoch = e;
            if (a->shuffle) rt_shuffle(perm, ds.n, a->seed, e);
            else
                for (int64_t i = 0; i < ds.n; i++) perm[i] = i;
        }
        double t0 = now_s(), lr = lr_at(a, step, total);
        float loss;
        if (fill_batch(&s, &ds, perm + pos) || set_opt(&s, lr, a->weight_decay, step) ||
            run_step(&s, a->use_graph && step > first) || read_f32(&s, s.loss, 1, &loss))
            goto done;
        double dt = now_s() - t0, ips = (double)p->batch / (dt > 0 ? dt : 1e-9);
        images += (double)p->batch;
        if (!isfinite(loss)) { /* the weights that gave it are lost causes: keep what was written */
            error("the loss is %g at step %ld: training diverged (try a smaller --lr); stopped without writing %s%s", loss,
                  step, a->checkpoint ? "over the last checkpoint " : "any weights", a->checkpoint ? a->checkpoint : "");
            goto done;
        }
        if (metrics) {
            fprintf(metrics, "{\"step\":%ld,\"epoch\":%lld,\"loss\":", step, (long long)e);
            json_num(metrics, loss);
            fprintf(metrics, ",\"lr\":");
            json_num(metrics, lr);
            fprintf(metrics, ",\"images_per_s\":");
            json_num(metrics, ips);
            fprintf(metrics, "}\n");
            if (fflush(metrics) || ferror(metrics)) { /* stop now rather than train on with the metrics lost */
                error("%s: write failed at step %ld: %s", a->metrics, step, strerror(errno));
                goto done;
            }
        }
        if (step == first || step == total || step % log_every == 0) {
            printf("step %ld/%ld  loss %.6f  lr %.3g  %.1f images/s\n", step, total, loss, lr, ips);
            fflush(stdout);
        }
        if (a->checkpoint_every && step % a->checkpoint_every == 0 && step < total &&
            save_weights(&s, a->checkpoint, step, 1, a, total, RT_F32))
            goto done;
    }
    double elapsed = now_s() - t_start;
    printf("trained %ld steps in %.2f s (%.1f images/s)\n", total - first + 1, elapsed, images / (elapsed > 0 ? elapsed : 1e-9));
    if (a->checkpoint && save_weights(&s, a->checkpoint, total, 1, a, total, RT_F32)) goto done;
    if (a->save && save_weights(&s, a->save, total, 0, a, total, a->save_dtype)) goto done;
    rc = 0;
done:
    if (metrics && fclose(metrics) && !rc) rc = error("%s: write failed", a->metrics);
    free(perm);
    free(idx);
    session_free(&s);
    rt_dataset_free(&ds);
    return rc;
}

/* ---- eval ---------------------------------------------------------------------------------- */

/* Runs the training step with lr = 0 and weight decay 0 (the plan has no forward-only path):
 * weights stay as loaded; the optimizer state changes, but is never saved by eval. */
static int cmd_eval(const exe_args *a, const rt_plan *p) {
    rt_dataset ds;
    memset(&ds, 0, sizeof ds);
    session s;
    memset(&s, 0, sizeof s);
    int64_t *idx = NULL;
    float *logits = NULL;
    int rc = 1;
    if (load_data(a, p, &ds)) goto done;
    if (ds.n == 0) {
        error("%s: the dataset has no images", a->data);
        goto done;
    }
    if (session_open(&s, p, 1) || load_weights(&s, a->init, a->partial_init, a->seed)) goto done;
    if (!s.logits && ds.n < p->batch) {
        error("%s: the dataset has %lld images, fewer than the batch size %lld (and the plan has no logits output to "
              "evaluate a partial batch with)",
              a->data, (long long)ds.n, (long long)p->batch);
        goto done;
    }
    int64_t batches = s.logits ? (ds.n + p->batch - 1) / p->batch : ds.n / p->batch, counted = 0, correct = 0;
    idx = malloc(sizeof(int64_t) * (size_t)p->batch);
    logits = malloc(sizeof(float) * (size_t)(p->batch * (p->num_classes > 0 ? p->num_classes : 1)));
    if (!idx || !logits) abort();
    double loss_sum = 0;
    for (int64_t b = 0; b < batches; b++) {
        for (int64_t i = 0; i < p->batch; i++) idx[i] = (b * p->batch + i) % ds.n;
        float loss;
        /* the forward steps only; lr 0 keeps the weights even in a plan whose eval prefix reaches
         * an update (or that has none: hand-written plans run every step) */
        if (fill_batch(&s, &ds, idx) || set_opt(&s, 0, 0, 1) || rt_device_run_forward(s.dev) ||
            read_f32(&s, s.loss, 1, &loss))
            goto done;
        if (!s.logits) {
            loss_sum += loss * (double)p->batch;
            counted += p->batch;
            continue;
        }
        if (read_f32(&s, s.logits, p->batch * p->num_classes, logits)) goto done;
        for (int64_t i = 0; i < p->batch && b * p->batch + i < ds.n; i++) {
            const float *z = logits + i * p->num_classes;
            int64_t best = 0;
            double mx = z[0], sum = 0;
            for (int64_t c = 1; c < p->num_classes; c++)
                if (z[c] > z[best]) best = c;
            mx = z[best];
            for (int64_t c = 0; c < p->num_classes; c++) sum += exp((double)z[c] - mx);
            loss_sum += log(sum) + mx - z[ds.labels[idx[i]]];
            correct += best == ds.labels[idx[i]];
            counted++;
        }
    }
    double loss = counted ? loss_sum / (double)counted : NAN;
    if (s.logits) {
        printf("eval: %lld images, loss %.6f, accuracy %.2f%%\n", (long long)counted, loss,
               100.0 * (double)correct / (double)(counted ? counted : 1));
        printf("{\"images\":%lld,\"loss\":", (long long)counted);
        json_num(stdout, loss);
        printf(",\"accuracy\":");
        json_num(stdout, (double)correct / (double)(counted ? counted : 1));
        printf("}\n");
    } else {
        printf("eval: %lld images (full batches only), loss %.6f, accuracy unavailable (no logits output)\n",
               (long long)counted, loss);
        printf("{\"images\":%lld,\"loss\":", (long long)counted);
        json_num(stdout, loss);
        printf(",\"accuracy\":null}\n");
    }
    rc = 0;
done:
    free(idx);
    free(logits);
    session_free(&s);
    rt_dataset_free(&ds);
    return rc;
}

/* ---- bench --------------------------------------------------------------------------------- */

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static double gemm_flops(const rt_plan *p) {
    double f = 0;
    for (int i = 0; i < p->num_steps; i++)
        if (p->steps[i].kind == RT_STEP_GEMM) {
            const rt_gemm *g = &p->steps[i].gemm;
            f += 2.0 * (double)g->m * (double)g->n * (double)g->k * (double)g->batch;
        }
    return f;
}

typedef struct {
    char name[96];    /* kernel name, GEMM shape, or "zero" */
    int kind, calls;
    double ms;
} profile_row;

static int cmp_row(const void *x, const void *y) {
    double a = ((const profile_row *)x)->ms, b = ((const profile_row *)y)->ms;
    return a > b ? -1 : a < b;
}

/* Runs `steps` more steps timing each plan step alone; prints where the time goes, grouped by
 * kernel (GEMMs by what they compute). */
static int profile(session *s, const exe_args *a, long steps) {
    const rt_plan *p = s->p;
    double *per = calloc((size_t)p->num_steps + 1, sizeof *per);
    profile_row *rows = calloc((size_t)p->num_steps + 1, sizeof *rows);
    if (!per || !rows) abort();
    s->dev->profile_ms = per;
    int rc = 0;
    for (long i = 0; i < steps && !rc; i++)
        if (set_opt(s, a->lr, a->weight_decay, i + 1) || rt_device_run(s->dev, 0)) rc = error("%s", s->dev->err);
    s->dev->profile_ms = NULL;
    int n = 0;
    double total = 0;
    for (int i = 0; i < p->num_steps && !rc; i++) {
        const rt_plan_step *st = &p->steps[i];
        char name[96] = "zero";
        if (st->kind == RT_STEP_KERNEL) snprintf(name, sizeof name, "%s", p->kernel_names[st->kernel]);
        else if (st->kind == RT_STEP_GEMM)
            snprintf(name, sizeof name, "gemm m %lld n %lld k %lld batch %lld %s%s", (long long)st->gemm.m,
                     (long long)st->gemm.n, (long long)st->gemm.k, (long long)st->gemm.batch,
                     st->gemm.trans_a ? "T" : "N", st->gemm.trans_b ? "T" : "N");
        int r = 0;
        while (r < n && !(rows[r].kind == (int)st->kind && !strcmp(rows[r].name, name))) r++;
        if (r == n) {
            memcpy(rows[n].name, name, sizeof name);
            rows[n++].kind = (int)st->kind;
        }
        rows[r].calls++;
        rows[r].ms += per[i] / (double)steps;
        total += per[i] / (double)steps;
    }
    if (!rc) {
        qsort(rows, (size_t)n, sizeof *rows, cmp_row);
        double by_kind[3] = {0};
        for (int r = 0; r < n; r++) by_kind[rows[r].kind] += rows[r].ms;
        printf("profile (each plan step timed alone, mean of %ld steps): %.3f ms a step; kernels %.1f%%, GEMMs "
               "%.1f%%, zero fills %.1f%%\n",
               steps, total, 100 * by_kind[0] / (total > 0 ? total : 1), 100 * by_kind[1] / (total > 0 ? total : 1),
               100 * by_kind[2] / (total > 0 ? total : 1));
        printf("  %10s %6s %6s  %s\n", "ms/step", "%", "calls", "what");
        for (int r = 0; r < n && r < 30; r++)
            printf("  %10.3f %6.1f %6d  %s\n", rows[r].ms, 100 * rows[r].ms / (total > 0 ? total : 1), rows[r].calls,
                   rows[r].name);
    }
    free(per);
    free(rows);
    return rc;
}

static int cmd_bench(const exe_args *a, const rt_plan *p) {
    rt_dataset ds;
    session s;
    memset(&s, 0, sizeof s);
    double *ms = NULL;
    int rc = 1;
    char err[1200];
    long steps = a->has_steps ? a->steps : 20, warm = a->bench_warmup;
    if (steps > 1000000 || warm > 1000000) /* the timings are kept; runs of this length measure nothing more */
        return error("bench times at most 1000000 steps after at most 1000000 warm-up steps (--steps %ld, --warmup %ld)",
                     steps, warm);
    if (rt_dataset_synthetic(p, p->batch, a->seed, &ds, err, sizeof err)) return error("%s", err);
    if (session_open(&s, p, 1) || load_weights(&s, a->init, a->partial_init, a->seed)) goto done;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)p->batch);
    if (!idx) abort();
    for (int64_t i = 0; i < p->batch; i++) idx[i] = i;
    int frc = fill_batch(&s, &ds, idx);
    free(idx);
    if (frc) goto done;
    ms = malloc(sizeof(double) * (size_t)steps);
    if (!ms) abort();
    /* start-up: device, libraries, cuBLASLt's algorithms, weights, the batch; then warm-up (the
     * first step eager, the second captured as a graph) and the timed steps, by the wall clock */
    double t_ready = now_s(), t_warm = t_ready;
    for (long i = 0; i < warm + steps; i++) {
        double t;
        if (i == warm) t_warm = now_s();
        if (set_opt(&s, a->lr, a->weight_decay, i + 1)) goto done;
        if (s.dev->timer_start(s.dev) || rt_device_run(s.dev, a->use_graph && i > 0) || s.dev->timer_stop(s.dev, &t)) {
            error("%s", s.dev->err);
            goto done;
        }
        if (i >= warm) ms[i - warm] = t;
    }
    float loss;
    if (read_f32(&s, s.loss, 1, &loss)) goto done;
    double t_end = now_s();
    qsort(ms, (size_t)steps, sizeof *ms, cmp_double);
    double med = steps % 2 ? ms[steps / 2] : 0.5 * (ms[steps / 2 - 1] + ms[steps / 2]);
    double ips = (double)p->batch * 1e3 / med, tflops = gemm_flops(p) / (med * 1e-3) / 1e12;
    int graph = a->use_graph && s.dev->capture_begin && !getenv("DEITC_NO_GRAPH");
    printf("bench: %s on %s (%s), batch %lld, %ld steps after %ld warm-up%s\n",
           p->model_name ? p->model_name : "model", s.dev->name, s.dev->target, (long long)p->batch, steps, warm,
           graph ? ", CUDA Graph replay" : "");
    printf("  step time: median %.3f ms, min %.3f ms, max %.3f ms\n", med, ms[0], ms[steps - 1]);
    printf("  %.1f images/s, GEMMs %.2f TFLOP/s, device memory %.1f MiB, last loss %.4f\n", ips, tflops,
           (double)s.dev->mem_bytes / (1 << 20), loss);
    printf("  wall clock: start-up %.3f s, warm-up %.3f s, timed steps %.3f s\n", t_ready - t_main, t_warm - t_ready,
           t_end - t_warm);
    /* names escaped; a figure that is not finite (a step timed at 0 ms) is null, never inf */
    rt_strbuf js = {0};
    const char *names[4][2] = {{"bench", p->model_name ? p->model_name : ""}, {"target", s.dev->target},
                               {"device", s.dev->name}, {"precision", p->precision ? p->precision : ""}};
    for (int i = 0; i < 4; i++) {
        rt_sb_printf(&js, "%s\"%s\":", i ? "," : "{", names[i][0]);
        rt_sb_json_string(&js, names[i][1]);
    }
    rt_sb_printf(&js, ",\"batch\":%lld,\"steps\":%ld,\"graph\":%s", (long long)p->batch, steps,
                 graph ? "true" : "false");
    const struct {
        const char *key, *fmt;
        double v;
    } figures[] = {{"median_ms", "%.4f", med},     {"min_ms", "%.4f", ms[0]},         {"max_ms", "%.4f", ms[steps - 1]},
                   {"images_per_s", "%.2f", ips}, {"gemm_tflops", "%.3f", tflops}};
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
        rt_sb_printf(&js, ",\"%s\":", figures[i].key);
        if (isfinite(figures[i].v)) rt_sb_printf(&js, figures[i].fmt, figures[i].v);
        else rt_sb_puts(&js, "null");
    }
    rt_sb_printf(&js, ",\"device_mem_bytes\":%llu,\"arena_bytes\":%llu,\"startup_wall_ms\":%.1f,"
                 "\"warmup_wall_ms\":%.1f,\"timed_wall_ms\":%.1f,\"loss\":",
                 (unsigned long long)s.dev->mem_bytes, (unsigned long long)p->arena_bytes, (t_ready - t_main) * 1e3,
                 (t_warm - t_ready) * 1e3, (t_end - t_warm) * 1e3);
    rt_sb_json_number(&js, loss);
    printf("%s}\n", js.s);
    rt_sb_free(&js);
    if (a->profile && profile(&s, a, steps)) goto done;
    rc = 0;
done:
    free(ms);
    session_free(&s);
    rt_dataset_free(&ds);
    return rc;
}

/* ---- info ---------------------------------------------------------------------------------- */

static int cmd_info(const exe_args *a, const rt_plan *p) {
    char err[1200];
    if (rt_plan_check(p, err, sizeof err)) return error("%s", err);
    static const char *roles[] = {"weight", "state", "input", "output"};
    int64_t params = 0;
    uint64_t role_bytes[4] = {0};
    int role_count[4] = {0};
    for (int i = 0; i < p->num_tensors; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if ((unsigned)t->role < 4) {
            role_bytes[t->role] += t->bytes;
            role_count[t->role]++;
        }
        if (t->role == RT_ROLE_WEIGHT) params += numel(t);
    }
    int kinds[3] = {0};
    for (int i = 0; i < p->num_steps; i++)
        if ((unsigned)p->steps[i].kind < 3) kinds[p->steps[i].kind]++;
    printf("model: %s\n", p->model_name ? p->model_name : "?");
    printf("target: %s%s%s\n", rt_plan_is_cuda(p) ? "cuda" : "emu", p->arch ? " " : "", p->arch ? p->arch : "");
    printf("precision: %s\n", p->precision ? p->precision : "?");
    printf("batch: %lld, image: %lld x %lld x %lld, classes: %lld\n", (long long)p->batch, (long long)p->in_chans,
           (long long)p->img_size, (long long)p->img_size, (long long)p->num_classes);
    printf("parameters: %lld\n", (long long)params);
    printf("arena: %llu bytes (%.1f MiB), planner peak %llu bytes\n", (unsigned long long)p->arena_bytes,
           (double)p->arena_bytes / (1 << 20), (unsigned long long)p->peak_bytes);
    printf("tensors: %d (", p->num_tensors);
    for (int r = 0; r < 4; r++)
        printf("%s%d %s %.1f MiB", r ? ", " : "", role_count[r], roles[r], (double)role_bytes[r] / (1 << 20));
    printf(")\n");
    printf("steps: %d (%d kernel launches, %d GEMMs, %d zero fills), GEMM work %.3f GFLOP\n", p->num_steps, kinds[0],
           kinds[1], kinds[2], gemm_flops(p) / 1e9);
    if (p->num_eval_steps > 0) printf("eval runs steps 1-%d (logits and loss)\n", p->num_eval_steps);
    printf("optimizer: AdamW beta1 %g beta2 %g eps %g\n", p->beta1, p->beta2, p->adam_eps);
    printf("kernels: %d\n", p->num_kernels);
    for (int k = 0; k < p->num_kernels; k++) {
        int launches = 0;
        for (int i = 0; i < p->num_steps; i++) launches += p->steps[i].kind == RT_STEP_KERNEL && p->steps[i].kernel == k;
        printf("  %-40s %d launch%s\n", p->kernel_names[k], launches, launches == 1 ? "" : "es");
    }
    if (a->verbose) {
        printf("tensor list:\n");
        for (int i = 0; i < p->num_tensors; i++) {
            const rt_plan_tensor *t = &p->tensors[i];
            char sh[160];
            shape_str(t->shape, t->ndim, sh, sizeof sh);
            printf("  %-7s %-40s %-4s [%s] @%llu\n", (unsigned)t->role < 4 ? roles[t->role] : "?", t->name,
                   rt_dtype_name(t->dtype), sh, (unsigned long long)t->offset);
        }
        printf("step list:\n");
        for (int i = 0; i < p->num_steps; i++) {
            const rt_plan_step *st = &p->steps[i];
            if (st->kind == RT_STEP_KERNEL)
                printf("  %4d kernel %s grid %u,%u,%u block %u,%u,%u  %s\n", i, p->kernel_names[st->kernel],
                       st->grid[0], st->grid[1], st->grid[2], st->block[0], st->block[1], st->block[2],
                       st->what ? st->what : "");
            else if (st->kind == RT_STEP_GEMM)
                printf("  %4d gemm m %lld n %lld k %lld batch %lld trans %d%d  %s\n", i, (long long)st->gemm.m,
                       (long long)st->gemm.n, (long long)st->gemm.k, (long long)st->gemm.batch, st->gemm.trans_a,
                       st->gemm.trans_b, st->what ? st->what : "");
            else
                printf("  %4d zero %llu bytes @%llu  %s\n", i, (unsigned long long)st->bytes,
                       (unsigned long long)st->offset, st->what ? st->what : "");
        }
    }
    return 0;
}

/* ---- main ---------------------------------------------------------------------------------- */

/* rc, or 1 when what was printed did not reach stdout (a full disk, a closed pipe): a lost
 * report is an error, not a success. */
static int stdout_checked(int rc) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
    error("writing the standard output failed: %s", errno ? strerror(errno) : "I/O error");
    return rc ? rc : 1;
}

int rt_main(const rt_plan *p, int argc, char **argv) {
    prog_argv = argv;
    prog_argc = argc;
    t_main = now_s();
    if (argc > 0 && argv[0]) {
        const char *slash = strrchr(argv[0], '/');
        prog = slash ? slash + 1 : argv[0];
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
    if (!strcmp(a.cmd, "train")) rc = cmd_train(&a, p);
    else if (!strcmp(a.cmd, "eval")) rc = cmd_eval(&a, p);
    else if (!strcmp(a.cmd, "bench")) rc = cmd_bench(&a, p);
    else if (!strcmp(a.cmd, "info")) rc = cmd_info(&a, p);
    else {
        fprintf(stderr, "%s: error: unknown command '%s' (train, eval, bench, info)\n", prog, a.cmd);
        usage(stderr);
        return 2;
    }
    return stdout_checked(rc);
}
