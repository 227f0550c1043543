/* deitc.c: the command line. Parses arguments and calls frontend -> passes -> codegen.
 *
 *   deitc inspect MODEL [-D name=value]... [--batch N] [--precision P] [--fuse F]
 *   deitc dump    MODEL [-D ...] [--after STAGE] [--batch N] [--precision P] [--fuse F]
 *   deitc run     MODEL [-D ...] [--weights W.safetensors [--partial-init]] --input X.safetensors
 *                 -o OUT.safetensors [--steps K --lr LR --weight-decay WD [--losses L.safetensors]]
 *                 [--grads] [--f64] [--precision P] [--fuse F]
 *   deitc compile MODEL [-D ...] -o EXE [--target cuda|emu] [--arch sm_XX] [--batch N] ...
 * --precision and --fuse are options of the passes (passes/pipeline.c), checked before any
 * work; codegen compiles what the pipeline produced.
 * The training options (dump, run --steps, compile; inspect's step too) include --loss-scale
 * none|dynamic|S [--loss-scale-init S] [--loss-scale-interval N] (default by --precision:
 * dynamic for fp16, else none; passes/loss_scale.c); compile bakes it in as the executable's.
 *   deitc export  MODEL.onnx --weights TRAINED.safetensors -o OUT.onnx
 *   deitc help | --help | --version
 *
 * MODEL is a file, or the name of one in the models folder (deit_small: models/deit_small.yaml;
 * codegen/locate.c says where that folder is for an installed deitc). Every error names what is wrong
 * and where, and exits with status 1 (2 for usage errors).
 * Each option is given once (-D once per name; --freeze may repeat), numbers are decimal, no
 * output may be one of the inputs, and output lost on stdout is an error.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/interp_par.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/rt.h"
#include "deitc_version.h" /* DEITC_GIT_COMMIT, generated at build time */

#define MAX_DEFINES 64

typedef struct {
    const char *command, *model;
    fe_define defines[MAX_DEFINES];
    char define_names[MAX_DEFINES][64];
    int ndefines;
    const char *after, *weights, *input, *output, *target, *arch, *precision, *fuse, *emit_dir;
    const char *output_node, *losses;
    const char *freeze[MAX_DEFINES];
    int nfreeze;
    long steps, batch;
    double lr, weight_decay, label_smoothing, clip_grad_norm;
    int ema; /* --ema: the step keeps an EMA of the weights (EXE train --ema-decay) */
    int grads, f64, partial_init;
    int stats, stats_json;      /* --stats, --stats-json */
    const char *model_gpu;      /* --model-gpu (NULL: h100) */
    const char *loss_scale;     /* --loss-scale as given (NULL: the precision's default) */
    double loss_scale_init;     /* --loss-scale-init (0: not given) */
    long loss_scale_interval;   /* --loss-scale-interval (0: not given) */
    int mix;                    /* --mix: Mixup/CutMix in the training graph (passes/mixup.c) */
    int stochastic_depth;       /* --stochastic-depth: drop path input in the graph (passes/drop_path.c) */
} cli_args;

static void usage_to(FILE *f) {
    fprintf(f,
            "usage:\n"
            "  deitc inspect MODEL [-D name=value]... [--batch N] [PASS OPTIONS]\n"
            "  deitc dump    MODEL [-D ...] [--after STAGE] [--batch N] [PASS OPTIONS]\n"
            "  deitc run     MODEL [-D ...] [--weights W.safetensors [--partial-init]] --input X.safetensors\n"
            "                -o OUT.safetensors [--steps K --lr LR --weight-decay WD [--losses L.safetensors]]\n"
            "                [--grads] [--f64] [PASS OPTIONS]\n"
            "  deitc compile MODEL [-D ...] -o EXE [--target cuda|emu] [--arch sm_XX] [--batch N]\n"
            "                [--emit-dir DIR] [PASS OPTIONS] [STATS OPTIONS]\n"
            "  deitc export  MODEL.onnx --weights TRAINED.safetensors -o OUT.onnx\n"
            "  deitc help | --version\n"
            "Pass options (inspect, dump, run, compile):\n"
            "  --precision fp32|tf32|fp16|bf16 (default: fp16 for --target cuda, fp32 for emu; the target\n"
            "  defaults to cuda, for run to emu)  --target cuda|emu\n"
            "  --fuse all|none|NAME,... (all: adamw-group, bias-gelu, elementwise-chain,\n"
            "  bias-gelu-grad, bias-grad, gelu-epilogue, residual-layer-norm, layer-norm-dbeta,\n"
            "  qkv-attention;\n"
            "  opt-in: layer-norm-stats)\n"
            "Stats options (inspect, compile): --stats | --stats-json  [--model-gpu h100|h200|a100]\n"
            "  the step's launches, GEMM calls, FLOPs, bytes and a modeled time on that GPU (default h100)\n"
            "STAGE: check forward-fusion training precision fusion schedule memplan\n"
            "Training options (dump --after training, run --steps, compile):\n"
            "  --label-smoothing S  --clip-grad MAX_NORM  --freeze PATTERN (fnmatch, repeatable)\n"
            "  --ema (an EMA of the weights on the device each step: EXE train --ema-decay D --save-ema E)\n"
            "  --output NODE (ONNX: the output the loss goes on)\n"
            "  --loss-scale none|dynamic|S [--loss-scale-init S] [--loss-scale-interval N] (default: dynamic\n"
            "  for fp16, none otherwise; compile bakes it in as the executable's default)\n"
            "  --mix (dump, compile): Mixup/CutMix in the graph; EXE train --mixup A --cutmix A (timm's Mixup)\n"
            "  --stochastic-depth: drop path in the graph; EXE train --drop-path R (DeiT-S: 0.1)\n"
            "  --recipe deit (inspect, compile): --mix --stochastic-depth --ema, so that one executable runs\n"
            "  DeiT's recipe, each part chosen at run time (0: off, the same bits as without; costs launches)\n"
            "MODEL is a .yaml or .onnx file, or a model name (deit_tiny, deit_small, ...: see 'deitc help').\n"
            "-D overrides a hyperparameter (img_size patch_size in_chans num_classes embed_dim depth\n"
            "num_heads mlp_ratio qkv_bias layer_norm_eps gelu).\n"
            "Each option may be given once (-D once per name); numbers are decimal.\n");
}

/* `deitc --version`: what was built, from which commit, against which CUDA; NVRTC as found now
 * and where the runtime and the models are (installed prefix or build tree) */
static int print_version(void) {
    cg_paths p;
    cg_paths_find(NULL, &p);
    char nv[512], err[1024];
    printf("deitc %s (commit %s)\n", DEITC_VERSION, DEITC_GIT_COMMIT);
#ifdef __clang__
    const char *cc = "clang";
#else
    const char *cc = "gcc";
#endif
    printf("built with: CUDA toolkit %s and its NVRTC; %s %s\n", DEITC_CUDA_BUILT, cc, __VERSION__);
    if (cg_nvrtc_version(nv, sizeof nv, err, sizeof err) == 0) printf("nvrtc: %s\n", nv);
    else printf("nvrtc: not found (--target cuda needs it): %s\n", err);
    printf("runtime: %s (%s)\nmodels: %s (%s)\n", *p.runtime_dir ? p.runtime_dir : "not found", p.runtime_from,
           *p.models_dir ? p.models_dir : "not found", p.models_from);
    return 0;
}

/* `deitc help`: the usage, the models by name, the environment; `man deitc` has the rest */
static int print_help(void) {
    usage_to(stdout);
    cg_paths p;
    cg_paths_find(NULL, &p);
    char list[2048];
    int n = *p.models_dir ? cg_models_list(&p, list, sizeof list) : -1;
    printf("\nModels by name (%s): %s\n", *p.models_dir ? p.models_dir : "no models folder",
           n > 0 ? list : "none");
    printf("\nExecutables (EXE from deitc compile): EXE train | eval | bench | info; EXE --help\n"
           "\nEnvironment:\n"
           "  DEITC_MODELS_DIR              where model names are looked up\n"
           "  DEITC_RUNTIME_DIR             the runtime headers (plan.h, rt.h, kernel_prelude.cuh, cuda_emu.h)\n"
           "  DEITC_RUNTIME_LIB             the static libraries to link, colon-separated, in order\n"
           "  DEITC_NVRTC_LIB               libnvrtc.so to load for --target cuda\n"
           "  DEITC_CC, DEITC_CXX           host C and C++ compilers (cc, c++)\n"
           "  DEITC_CACHE_DIR, DEITC_NO_CACHE=1   the NVRTC cache ($XDG_CACHE_HOME/deitc)\n"
           "deitc --version says which runtime, models and NVRTC it uses. More: man deitc.\n");
    return 0;
}

static void usage(void) { usage_to(stderr); }

/* --help or -h anywhere (deitc --help, deitc compile --help): the usage on stdout, exit 0 */
static int asks_for_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return 1;
    return 0;
}

static char **cli_argv; /* file names in messages are escaped (rt_message_escape) */
static int cli_argc;

/* Prints "deitc: MESSAGE" and returns `status`: 1 for errors, 2 for usage errors. */
static int report(int status, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static int report(int status, const char *fmt, va_list ap) {
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *text = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (!text) abort();
    vsnprintf(text, (size_t)(n > 0 ? n : 0) + 1, fmt, again);
    va_end(again);
    rt_strbuf shown = {0};
    rt_message_escape(text, cli_argv, cli_argc, &shown);
    fprintf(stderr, "deitc: %s\n", shown.s ? shown.s : "");
    rt_sb_free(&shown);
    free(text);
    return status;
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = report(1, fmt, ap);
    va_end(ap);
    return rc;
}

static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = report(2, fmt, ap);
    va_end(ap);
    return rc;
}

static int parse_number(const char *flag, const char *s, double *out) {
    errno = 0;
    double v = rt_is_decimal(s) ? strtod(s, NULL) : NAN;
    if (errno || !isfinite(v)) return bad_usage("%s expects a decimal number, got '%s'", flag, s);
    *out = v;
    return 0;
}

/* The options each command takes; any other is refused rather than silently ignored. */
static int option_allowed(const char *cmd, const char *opt) {
    static const char *const train_opts = " --label-smoothing --clip-grad --freeze --output --ema --loss-scale"
                                          " --loss-scale-init --loss-scale-interval";
    static const struct {
        const char *cmd, *opts;
    } table[] = {
        {"inspect", " -D --batch --precision --target --fuse --stats --stats-json --model-gpu --mix --stochastic-depth --recipe --loss-scale --loss-scale-init"
                    " --loss-scale-interval"},
        {"dump", " -D --after --batch --precision --target --fuse --mix --stochastic-depth"},
        {"run", " -D --weights --partial-init --input -o --steps --lr --weight-decay --losses --grads --f64 --precision --target --fuse --mix --stochastic-depth"},
        {"compile", " -D -o --target --arch --precision --fuse --emit-dir --batch --stats --stats-json --model-gpu --mix --stochastic-depth --recipe"},
        {"export", " --weights -o"},
    };
    char key[64];
    snprintf(key, sizeof key, " %.60s", opt);
    if (strncmp(opt, "-D", 2) == 0) snprintf(key, sizeof key, " -D");
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(table[i].cmd, cmd) != 0) continue;
        int training = strcmp(cmd, "inspect") != 0 && strcmp(cmd, "export") != 0;
        const char *lists[2] = {table[i].opts, training ? train_opts : ""};
        for (int l = 0; l < 2; l++)
            for (const char *at = strstr(lists[l], key); at; at = strstr(at + 1, key))
                if (at[strlen(key)] == ' ' || at[strlen(key)] == 0) return 1;
        return 0;
    }
    return 1; /* unknown commands are reported by main */
}

static int parse_args(int argc, char **argv, cli_args *a) {
    memset(a, 0, sizeof *a);
    a->lr = 1e-3;
    a->weight_decay = 0.05;
    if (argc < 3) return 2;
    a->command = argv[1];
    const char *seen[64];
    int nseen = 0;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE() \
    do { if (!next) return bad_usage("%s needs a value", s); i++; } while (0)
        double num;
        if (s[0] == '-' && s[1] && !option_allowed(a->command, s))
            return bad_usage("'%s' does not take %s (see 'deitc --help')", a->command, s);
        if (s[0] == '-' && s[1] && strncmp(s, "-D", 2) != 0 && strcmp(s, "--freeze") != 0) {
            for (int j = 0; j < nseen; j++) /* each option once: no silent "last one wins" */
                if (strcmp(seen[j], s) == 0) return bad_usage("%s is given twice", s);
            if (nseen < 64) seen[nseen++] = s;
        }
        if (strcmp(s, "-D") == 0 || strncmp(s, "-D", 2) == 0) {
            const char *def = s[2] ? s + 2 : next;
            if (!s[2]) NEED_VALUE();
            const char *eq = strchr(def, '=');
            if (!eq || eq == def) return bad_usage("-D expects name=value, got '%s'", def);
            if (a->ndefines == MAX_DEFINES) return bad_usage("too many -D options");
            if (eq - def >= 64) return bad_usage("-D name too long: '%s'", def);
            char *name = a->define_names[a->ndefines];
            snprintf(name, 64, "%.*s", (int)(eq - def), def);
            for (int k = 0; k < a->ndefines; k++)
                if (strcmp(a->defines[k].name, name) == 0) return bad_usage("-D %s is given twice", name);
            a->defines[a->ndefines].name = name;
            a->defines[a->ndefines++].value = eq + 1;
        } else if (strcmp(s, "--after") == 0) { NEED_VALUE(); a->after = next;
        } else if (strcmp(s, "--weights") == 0) { NEED_VALUE(); a->weights = next;
        } else if (strcmp(s, "--input") == 0) { NEED_VALUE(); a->input = next;
        } else if (strcmp(s, "-o") == 0) { NEED_VALUE(); a->output = next;
        } else if (strcmp(s, "--target") == 0) { NEED_VALUE(); a->target = next;
        } else if (strcmp(s, "--arch") == 0) { NEED_VALUE(); a->arch = next;
        } else if (strcmp(s, "--precision") == 0) { NEED_VALUE(); a->precision = next;
        } else if (strcmp(s, "--fuse") == 0) { NEED_VALUE(); a->fuse = next;
        } else if (strcmp(s, "--emit-dir") == 0) { NEED_VALUE(); a->emit_dir = next;
        } else if (strcmp(s, "--output") == 0) { NEED_VALUE(); a->output_node = next;
        } else if (strcmp(s, "--losses") == 0) { NEED_VALUE(); a->losses = next;
        } else if (strcmp(s, "--partial-init") == 0) {
            a->partial_init = 1;
        } else if (strcmp(s, "--freeze") == 0) {
            NEED_VALUE();
            if (a->nfreeze == MAX_DEFINES) return bad_usage("too many --freeze options");
            a->freeze[a->nfreeze++] = next;
        } else if (strcmp(s, "--steps") == 0 || strcmp(s, "--batch") == 0) {
            NEED_VALUE();
            if (parse_number(s, next, &num)) return 2;
            if (num < 1 || num != floor(num) || num > 1e9 || strspn(next, "0123456789") != strlen(next))
                return bad_usage("%s expects a positive decimal integer, got '%s'", s, next);
            if (s[2] == 's') a->steps = (long)num; else a->batch = (long)num;
        } else if (strcmp(s, "--lr") == 0) {
            NEED_VALUE();
            if (parse_number(s, next, &a->lr)) return 2;
            if (a->lr <= 0) return bad_usage("--lr must be positive, got %s", next);
        } else if (strcmp(s, "--weight-decay") == 0) {
            NEED_VALUE();
            if (parse_number(s, next, &a->weight_decay)) return 2;
            if (a->weight_decay < 0) return bad_usage("--weight-decay must not be negative, got %s", next);
        } else if (strcmp(s, "--label-smoothing") == 0) {
            NEED_VALUE();
            if (parse_number(s, next, &a->label_smoothing)) return 2;
            if (a->label_smoothing < 0 || a->label_smoothing >= 1)
                return bad_usage("--label-smoothing must be in [0, 1), got %s", next);
        } else if (strcmp(s, "--recipe") == 0) { /* DeiT's: everything its training run may turn on */
            NEED_VALUE();
            if (strcmp(next, "deit")) return bad_usage("--recipe expects deit, got '%s'", next);
            a->mix = a->stochastic_depth = a->ema = 1;
        } else if (strcmp(s, "--mix") == 0) {
            a->mix = 1;
        } else if (strcmp(s, "--stochastic-depth") == 0) {
            a->stochastic_depth = 1;
        } else if (strcmp(s, "--clip-grad") == 0) {
            NEED_VALUE();
            if (parse_number(s, next, &a->clip_grad_norm)) return 2;
            if (a->clip_grad_norm <= 0) return bad_usage("--clip-grad must be positive, got %s", next);
        } else if (strcmp(s, "--ema") == 0) {
            a->ema = 1;
        } else if (strcmp(s, "--model-gpu") == 0) {
            NEED_VALUE();
            if (!cg_gpu_find(next)) return bad_usage("--model-gpu %s: unknown GPU (known: %s)", next, cg_gpu_names());
            a->model_gpu = next;
        } else if (strcmp(s, "--loss-scale") == 0) {
            NEED_VALUE();
            int mode;
            char err[256];
            if (rt_loss_scale_parse(s, next, &mode, &num, err, sizeof err)) return bad_usage("%s", err);
            a->loss_scale = next;
        } else if (strcmp(s, "--loss-scale-init") == 0) {
            NEED_VALUE();
            if (rt_loss_scale_value(next, &a->loss_scale_init))
                return bad_usage("--loss-scale-init expects a decimal number > 0 (at most 3.4e38), got '%s'", next);
        } else if (strcmp(s, "--loss-scale-interval") == 0) {
            NEED_VALUE();
            if (strspn(next, "0123456789") != strlen(next) || !*next || strlen(next) > 9 || atol(next) < 1 ||
                atol(next) > PASS_LOSS_SCALE_MAX_COUNT)
                return bad_usage("--loss-scale-interval expects a decimal integer from 1 to %ld, got '%s'",
                                 PASS_LOSS_SCALE_MAX_COUNT, next);
            a->loss_scale_interval = atol(next);
        } else if (strcmp(s, "--stats") == 0) {
            a->stats = 1;
        } else if (strcmp(s, "--stats-json") == 0) {
            a->stats_json = 1;
        } else if (strcmp(s, "--grads") == 0) {
            a->grads = 1;
        } else if (strcmp(s, "--f64") == 0) {
            a->f64 = 1;
        } else if (s[0] == '-' && s[1]) {
            return bad_usage("unknown option '%s' (see 'deitc --help')", s);
        } else if (!a->model) {
            a->model = s;
        } else {
            return bad_usage("unexpected argument '%s'", s);
        }
#undef NEED_VALUE
    }
    if (!a->model) return bad_usage("no MODEL given");
    if ((a->loss_scale_init || a->loss_scale_interval) &&
        strcmp(a->loss_scale ? a->loss_scale : pass_loss_scale_default(a->precision), "dynamic") != 0)
        return bad_usage("--loss-scale-%s needs --loss-scale dynamic (the default for fp16 only)",
                         a->loss_scale_init ? "init" : "interval");
    if (a->model_gpu && !a->stats && !a->stats_json) return bad_usage("--model-gpu needs --stats or --stats-json");
    return 0;
}

static ir_graph *load(const cli_args *a, long batch) {
    char err[1024], path[CG_PATH_MAX + 300];
    ir_graph *g = NULL;
    cg_paths p;
    cg_paths_find(NULL, &p);
    if (cg_model_resolve(a->model, &p, path, sizeof path, err, sizeof err)) {
        die("%s", err);
        return NULL;
    }
    if (fe_load_model(path, a->defines, a->ndefines, batch, &g, err, sizeof err)) {
        die("%s", err);
        return NULL;
    }
    if (g->info.note) fprintf(stderr, "deitc: note: %s: %s\n", a->model, g->info.note);
    return g;
}

/* --precision, else the target's default: fp16 for cuda, fp32 for emu. The target is --target,
 * else cuda, except for `run` (the CPU reference: emu's arithmetic unless told otherwise). */
static const char *precision_of(const cli_args *a) {
    if (a->precision) return a->precision;
    const char *target = a->target ? a->target : strcmp(a->command, "run") == 0 ? "emu" : "cuda";
    return strcmp(target, "emu") == 0 ? "fp32" : "fp16";
}

static pass_options make_pass_options(const cli_args *a, int training) {
    pass_options o;
    pass_options_default(&o);
    o.training = training;
    o.precision = precision_of(a);
    o.fuse = a->fuse;
    o.scratch_bytes = cg_scratch_bytes; /* the memory plan reserves what the kernels need */
    o.train.label_smoothing = a->label_smoothing;
    o.train.clip_grad_norm = a->clip_grad_norm;
    o.train.ema = a->ema;
    o.train.freeze = a->freeze;
    o.train.nfreeze = a->nfreeze;
    o.train.output = a->output_node;
    o.train.mixup = a->mix;
    o.train.drop_path = a->stochastic_depth;
    /* --loss-scale (parse_args checked it), else the precision's default */
    int mode = IR_LOSS_SCALE_NONE;
    double v = 1;
    char err[256];
    const char *ls = a->loss_scale ? a->loss_scale : pass_loss_scale_default(a->precision);
    if (rt_loss_scale_parse("--loss-scale", ls, &mode, &v, err, sizeof err)) abort();
    o.train.loss_scale = mode;
    o.train.loss_scale_init = mode == IR_LOSS_SCALE_STATIC ? v : a->loss_scale_init;
    o.train.loss_scale_interval = a->loss_scale_interval;
    return o;
}

/* ---- stats (inspect, compile) ------------------------------------------------------------ */

/* --stats / --stats-json of program p on stdout (nothing without either). */
static void print_stats(const cli_args *a, const cg_program *p) {
    if (!a->stats && !a->stats_json) return;
    const cg_gpu *gpu = cg_gpu_find(a->model_gpu ? a->model_gpu : "h100");
    cg_stats st;
    cg_stats_of(p, &st);
    if (a->stats) cg_stats_print(&st, gpu, stdout);
    if (a->stats_json) cg_stats_print_json(&st, gpu, stdout);
    cg_stats_free(&st);
}

/* ---- inspect ------------------------------------------------------------------------------ */

/* The training step the pipeline makes of g (taken over) with a's pass options, as codegen
 * would emit it: nodes, plan steps, launches, kernels, arena. A model that cannot be trained
 * (an ONNX graph without logits) says why instead. */
static int inspect_step(ir_graph *g, const pass_options *po, const cli_args *a) {
    char err[1024], names[256];
    int64_t batch = g->info.batch > 0 ? g->info.batch : 1;
    pass_result *r = pass_pipeline_run(g, po, NULL, err, sizeof err);
    if (!r) {
        if (a->stats_json) return die("training step: not built (%s)", err);
        printf("training step: not built (%s)\n", err);
        return a->stats ? 1 : 0;
    }
    cg_options co;
    cg_options_default(&co);
    cg_program *p = cg_program_new(r, &co, err, sizeof err);
    if (a->stats_json) { /* the JSON object alone, for scripts */
        int rc = p ? 0 : die("plan: not built (%s)", err);
        if (p) print_stats(a, p);
        cg_program_free(p);
        pass_result_free(r);
        return rc;
    }
    printf("training step: batch %lld, precision %s, fusions %s, %d nodes\n", (long long)batch, r->precision,
           pass_fuse_names(r->fusions, names, sizeof names), r->g->n);
    if (p) {
        int launches = 0, gemms = 0;
        for (int s = 0; s < p->nsteps; s++) {
            launches += p->steps[s].kind == RT_STEP_KERNEL;
            gemms += p->steps[s].kind == RT_STEP_GEMM;
        }
        printf("plan per step: %d steps (%d kernel launches, %d GEMMs), %d kernels, arena %.2f MiB\n", p->nsteps,
               launches, gemms, p->nkernels, (double)r->mem->arena_bytes / (1 << 20));
        print_stats(a, p);
    } else {
        printf("plan per step: not built (%s)\n", err);
    }
    int rc = !p && a->stats;
    cg_program_free(p);
    pass_result_free(r);
    return rc;
}

static int cmd_inspect(const cli_args *a) {
    char err[1024];
    pass_options po = make_pass_options(a, 1);
    if (pass_options_check(&po, err, sizeof err)) return die("%s", err);
    /* batch 0: the model's own (1, or an ONNX export's fixed batch); figures are per image */
    ir_graph *g = load(a, a->batch ? a->batch : 0);
    if (!g) return 1;
    if (a->stats_json) return inspect_step(g, &po, a);
    int64_t macs = 0, act_bytes = 0, hist[IR_OP_COUNT] = {0};
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        hist[n->op]++;
        if (!(ir_op_flags(n->op) & IR_OPF_LEAF)) act_bytes += ir_numel(n) * (int64_t)ir_dtype_size(n->dtype);
        if (n->op == IR_OP_MATMUL) {
            const ir_node *x = &g->nodes[n->inputs[0]];
            int64_t k = x->shape[x->ndim - (n->attrs.trans_a ? 2 : 1)];
            macs += ir_numel(n) * k;
        }
    }
    printf("model: %s\n", g->info.model_name ? g->info.model_name : a->model);
    printf("parameters: %lld\n", (long long)ir_count_params(g));
    int64_t nb = g->info.batch > 0 ? g->info.batch : 1;
    macs /= nb;
    act_bytes /= nb;
    printf("MACs per image: %.3f G (%lld)\n", (double)macs / 1e9, (long long)macs);
    printf("activation memory per image: %.2f MiB (forward values, f32)\n", (double)act_bytes / (1 << 20));
    printf("nodes: %d\nop histogram:\n", g->n);
    for (int op = 0; op < IR_OP_COUNT; op++)
        if (hist[op]) printf("  %-20s %lld\n", ir_op_name(op), (long long)hist[op]);
    return inspect_step(g, &po, a);
}

/* ---- dump --------------------------------------------------------------------------------- */

static int cmd_dump(const cli_args *a) {
    ir_graph *g = load(a, a->batch ? a->batch : 0);
    if (!g) return 1;
    char err[1024];
    int training = a->after && strcmp(a->after, "check") != 0;
    pass_options o = make_pass_options(a, training);
    pass_result *r = pass_pipeline_run(g, &o, a->after ? a->after : "check", err, sizeof err);
    if (!r) return die("%s", err);
    pass_result_print(r, stdout);
    pass_result_free(r);
    return 0;
}

/* ---- run: the reference interpreter ------------------------------------------------------- */

/* timm's initializer for the weights no file gives, filled and bound on the interpreter's host
 * threads (each tensor's values depend on its name only; distinct leaves bind independently) */
typedef struct {
    const ir_node *n;
    int id;
    float *buf;
} init_job;

typedef struct {
    init_job *jobs;
    ir_interp *it;
} init_jobs;

static void init_jobs_fill(void *ctx, int64_t lo, int64_t hi) {
    init_jobs *all = ctx;
    for (int64_t k = lo; k < hi; k++) {
        init_job *j = &all->jobs[k];
        rt_init_fill((rt_init)j->n->attrs.init, j->n->attrs.init_std, 0, j->n->name, j->buf, ir_numel(j->n));
        ir_interp_set_f32(all->it, j->id, j->buf);
        free(j->buf);
        j->buf = NULL;
    }
}

static void init_jobs_free(init_job *jobs, int njobs) {
    for (int k = 0; k < njobs; k++) free(jobs[k].buf);
    free(jobs);
}

/* Binds every WEIGHT leaf of g: from the weights file when given (name, shape must match),
 * else from the model file's own data, else timm's initializer. A file that gives only some of
 * the weights is an error unless `partial` (--partial-init), with which a classifier head of
 * another shape counts as missing too (fine-tuning to other classes). */
static int bind_weights(const ir_graph *g, ir_interp *it, const rt_tensor_set *w, const char *wpath, int partial) {
    char shape[96];
    const char **missing = calloc((size_t)g->n + 1, sizeof *missing);
    init_job *jobs = calloc((size_t)g->n + 1, sizeof *jobs);
    if (!missing || !jobs) abort();
    int nmissing = 0, total = 0, njobs = 0;
    char note[600], full[600];
    const char *prefix = w ? rt_weights_prefix(w, wpath, note, sizeof note) : "";
    if (*prefix) fprintf(stderr, "deitc: note: %s\n", note);
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_WEIGHT) continue;
        total++;
        int64_t numel = ir_numel(n);
        float *buf = malloc(sizeof(float) * (size_t)numel);
        if (!buf) {
            free(missing);
            init_jobs_free(jobs, njobs);
            return die("%s: out of memory for %s", n->name, ir_shape_str(n, shape, sizeof shape));
        }
        char err[1024];
        snprintf(full, sizeof full, "%s%s", prefix, n->name);
        const rt_tensor *t = w ? rt_tensor_set_find(w, full) : NULL;
        int same = t && t->ndim == n->ndim;
        for (int d = 0; same && d < n->ndim; d++) same = t->shape[d] == n->shape[d];
        int found = t && !same && partial && rt_weight_is_head(n->name) ? 0 /* a new head */
                    : w ? rt_weight_read(w, wpath, full, n->ndim, n->shape, buf, err, sizeof err) : 0;
        if (found < 0) {
            free(buf);
            free(missing);
            init_jobs_free(jobs, njobs);
            return die("%s", err);
        }
        if (w && !found) missing[nmissing++] = n->name;
        if (!found && n->data)
            memcpy(buf, n->data, sizeof(float) * (size_t)numel);
        else if (!found) {
            jobs[njobs++] = (init_job){n, i, buf};
            continue;
        }
        ir_interp_set_f32(it, i, buf);
        free(buf);
    }
    init_jobs all = {jobs, it};
    ir_par_for(njobs, 1, init_jobs_fill, &all);
    init_jobs_free(jobs, njobs);
    if (nmissing) {
        char msg[1024];
        rt_weights_missing_text(wpath, missing, nmissing, total, partial, msg, sizeof msg);
        free(missing);
        if (!partial) return die("%s", msg);
        fprintf(stderr, "deitc: note: %s\n", msg);
    } else {
        free(missing);
    }
    /* a tensor the model does not use is most likely a misspelt weight: say so (the losses
     * and grad.* that `deitc run` itself writes beside the weights are expected) */
    int unused = 0;
    const char *first = NULL;
    for (int k = 0; w && k < w->count; k++) {
        const char *name = w->tensors[k].name;
        int id = ir_find(g, name + strlen(prefix));
        if ((id < 0 || g->nodes[id].op != IR_OP_WEIGHT) && strcmp(name, "losses") != 0 &&
            strncmp(name, "grad.", 5) != 0 && !unused++)
            first = name;
    }
    if (unused)
        fprintf(stderr, "deitc: warning: %s: %d tensor%s not a weight of the model, ignored "
                        "(first: '%s')\n", wpath, unused, unused == 1 ? " is" : "s are", first);
    return 0;
}

/* Finds tensor `name` in the input file and checks it has the node's shape. */
static const rt_tensor *input_tensor(const rt_tensor_set *in, const char *path, const ir_node *n) {
    char shape[96];
    const rt_tensor *t = rt_tensor_set_find(in, n->name);
    if (!t) {
        die("%s: no tensor '%s' (needs %s %s)", path, n->name, ir_dtype_name(n->dtype),
            ir_shape_str(n, shape, sizeof shape));
        return NULL;
    }
    int ok = t->ndim == n->ndim;
    for (int d = 0; ok && d < n->ndim; d++) ok = t->shape[d] == n->shape[d];
    if (!ok) {
        die("%s: tensor '%s' has the wrong shape (the model needs %s)", path, n->name,
            ir_shape_str(n, shape, sizeof shape));
        return NULL;
    }
    return t;
}

typedef struct {
    rt_tensor *t;
    int n, cap;
} out_list;

static void out_add(out_list *o, const char *name, rt_dtype dtype, int ndim, const int64_t *shape,
                    const void *data, size_t nbytes) {
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 64;
        o->t = realloc(o->t, sizeof(rt_tensor) * (size_t)o->cap);
        if (!o->t) abort();
    }
    rt_tensor *t = &o->t[o->n++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    t->nbytes = nbytes;
    t->data = malloc(nbytes ? nbytes : 1);
    if (!t->data || !t->name) abort();
    memcpy(t->data, data, nbytes);
}

static void out_add_node(out_list *o, const ir_interp *it, const ir_node *n, int id, const char *name) {
    int64_t k = ir_numel(n);
    float *buf = malloc(sizeof(float) * (size_t)k);
    if (!buf) abort();
    ir_interp_get_f32(it, id, buf);
    out_add(o, name, RT_F32, n->ndim, n->shape, buf, sizeof(float) * (size_t)k);
    free(buf);
}

static void out_free(out_list *o) {
    rt_tensor_set s = {.tensors = o->t, .count = o->n};
    rt_tensor_set_free(&s);
}

/* Before any work: -o is none of the inputs and (with writable) can be written. */
static int check_output(const char *what, const char *out, const rt_named_path *inputs, int nin, int writable) {
    char err[1200];
    rt_named_path o = {what, out};
    if (rt_paths_check(&o, 1, inputs, nin, err, sizeof err) || (writable && rt_output_check(out, err, sizeof err)))
        return die("%s", err);
    return 0;
}

static int cmd_run(const cli_args *a) {
    char err[1024];
    if (!a->input) return die("run needs --input X.safetensors");
    if (!a->output) return die("run needs -o OUT.safetensors");
    if (a->losses && !a->steps) return die("--losses needs --steps (the losses of the training steps)");
    if (a->partial_init && !a->weights) return die("--partial-init needs --weights");
    const rt_named_path inputs[] = {{"the model", a->model}, {"--weights", a->weights}, {"--input", a->input},
                                    {"deitc itself", "/proc/self/exe"}};
    if (check_output("-o", a->output, inputs, 4, 1)) return 1;
    if (a->losses && check_output("--losses", a->losses, inputs, 4, 1)) return 1;
    if (a->losses && rt_same_file(a->losses, a->output)) return die("--losses and -o name the same file");
    rt_tensor_set in = {0}, w = {0};
    if (rt_safetensors_read(a->input, &in, err, sizeof err)) return die("%s", err);
    const rt_tensor *images = rt_tensor_set_find(&in, "images");
    if (!images || images->ndim != 4) {
        rt_tensor_set_free(&in);
        return die("%s: needs a tensor 'images' of shape [N,C,H,W]", a->input);
    }
    if (a->weights && rt_safetensors_read_checked(a->weights, 0, &w, err, sizeof err) < 0) {
        rt_tensor_set_free(&in);
        return die("%s", err);
    }
    int training = a->steps > 0;
    int rc = 1;
    ir_graph *g = load(a, (long)images->shape[0]);
    ir_interp *it = NULL;
    out_list out = {0};
    if (!g) goto done;
    pass_options po = make_pass_options(a, training);
    /* the interpreter needs the graph, not an order or an arena */
    g = pass_result_take_graph(pass_pipeline_run(g, &po, "fusion", err, sizeof err));
    if (!g) {
        die("%s", err);
        goto done;
    }
    it = ir_interp_new(g, a->f64);
    if (!it) {
        die("%s: out of memory: the interpreter holds every weight of the graph as doubles",
            a->model);
        goto done;
    }
    ir_interp_release_dead(it); /* only outputs, weights and states are read back */
    if (bind_weights(g, it, a->weights ? &w : NULL, a->weights, a->partial_init)) goto done;
    int scaler = training ? ir_find(g, "loss_scaler") : -1; /* --loss-scale: its start, from the options */
    if (scaler >= 0) ir_interp_set_f32(it, scaler, g->nodes[scaler].data);
    if (scaler >= 0 && a->steps > PASS_LOSS_SCALE_MAX_COUNT) {
        die("--steps %ld: the loss scaler counts steps in f32 state, exact to %ld steps", a->steps,
            PASS_LOSS_SCALE_MAX_COUNT);
        goto done;
    }
    /* runtime inputs */
    int opt = -1;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_INPUT) continue;
        if (n->name && strcmp(n->name, "opt") == 0) {
            opt = i;
            continue;
        }
        if (n->name && strcmp(n->name, "labels") == 0 && !rt_tensor_set_find(&in, "labels")) {
            die("%s: --steps needs a tensor 'labels' (i64 [%lld]) beside 'images'", a->input,
                (long long)n->shape[0]);
            goto done;
        }
        const rt_tensor *t = input_tensor(&in, a->input, n);
        if (!t) goto done;
        int64_t k = ir_numel(n);
        if (ir_dtype_is_float(n->dtype)) {
            float *buf = malloc(sizeof(float) * (size_t)k);
            if (!buf) abort();
            int bad = rt_tensor_to_f32(t, buf);
            if (!bad) ir_interp_set_f32(it, i, buf);
            free(buf);
            if (bad) {
                die("%s: tensor '%s' must be a float tensor", a->input, n->name);
                goto done;
            }
        } else {
            int64_t *buf = malloc(sizeof(int64_t) * (size_t)k);
            if (!buf) abort();
            int bad = rt_tensor_to_i64(t, buf);
            if (!bad) ir_interp_set_i64(it, i, buf);
            free(buf);
            if (bad) {
                die("%s: tensor '%s' must be an integer tensor", a->input, n->name);
                goto done;
            }
        }
    }
    if (!training) {
        if (ir_interp_run(it)) {
            die("%s", ir_interp_error(it));
            goto done;
        }
        for (int i = 0; i < g->n; i++)
            if (g->nodes[i].flags & IR_NODE_OUTPUT) out_add_node(&out, it, &g->nodes[i], i, g->nodes[i].name);
    } else {
        int loss = ir_find(g, "loss");
        float *losses = NULL, *scales = NULL; /* grown as steps run: --steps may be huge */
        long cap = 0;
        for (long step = 1; step <= a->steps; step++) {
            if (step > cap) {
                cap = cap ? 2 * cap : 1024;
                losses = realloc(losses, sizeof(float) * (size_t)cap);
                scales = scaler >= 0 ? realloc(scales, sizeof(float) * IR_SCALER_SLOTS * (size_t)cap) : NULL;
                if (!losses || (scaler >= 0 && !scales)) abort();
            }
            double slots64[IR_OPT_SLOTS]; /* the executables' fill (IR_OPT_* = RT_OPT_*) */
            float slots[IR_OPT_SLOTS];
            rt_opt_run run = {a->weight_decay, po.train.beta1, po.train.beta2, po.train.adam_eps,
                              po.train.label_smoothing, po.train.clip_grad_norm, 0};
            rt_opt_fill(slots64, a->lr, &run, step);
            for (int s = 0; s < IR_OPT_SLOTS; s++) slots[s] = (float)slots64[s];
            if (a->f64) ir_interp_set_f64(it, opt, slots64);
            else ir_interp_set_f32(it, opt, slots);
            if (ir_interp_run(it)) {
                free(losses);
                free(scales);
                die("%s", ir_interp_error(it));
                goto done;
            }
            ir_interp_get_f32(it, loss, &losses[step - 1]);
            if (scaler >= 0) ir_interp_get_f32(it, scaler, scales + (step - 1) * IR_SCALER_SLOTS);
            if (!isfinite(losses[step - 1])) { /* nothing written: the weights are lost causes */
                die("the loss is %g at step %ld: training diverged (try a smaller --lr); %s not written",
                    (double)losses[step - 1], step, a->output);
                free(losses);
                free(scales);
                goto done;
            }
            if (step == 1 && a->grads)
                for (int i = 0; i < g->n; i++) {
                    const ir_node *n = &g->nodes[i];
                    if (n->flags & IR_NODE_OUTPUT && n->name && strncmp(n->name, "grad.", 5) == 0)
                        out_add_node(&out, it, n, i, n->name);
                }
        }
        for (int i = 0; i < g->n; i++) {
            const ir_node *n = &g->nodes[i];
            if (n->op == IR_OP_WEIGHT) out_add_node(&out, it, n, i, n->name);
        }
        /* the weights file holds weights only (timm loads it strictly): losses go to --losses */
        /* with a loss scaler, its state after each step beside them: loss_scaler f32 [K, slots] */
        rt_tensor lt[2] = {{"losses", RT_F32, 1, {a->steps}, sizeof(float) * (size_t)a->steps, losses},
                           {"loss_scaler", RT_F32, 2, {a->steps, IR_SCALER_SLOTS},
                            sizeof(float) * IR_SCALER_SLOTS * (size_t)a->steps, scales}};
        if (a->losses && rt_safetensors_write(a->losses, lt, scaler >= 0 ? 2 : 1, NULL, err, sizeof err)) {
            free(losses);
            free(scales);
            die("%s", err);
            goto done;
        }
        for (long k = 0; k < a->steps && !a->losses; k++) {
            printf("step %ld: loss %.7g", k + 1, (double)losses[k]);
            const float *sc = scales ? scales + k * IR_SCALER_SLOTS : NULL;
            if (sc)
                printf("  scale %g  skipped %.0f%s", (double)sc[IR_SCALER_SCALE], (double)sc[IR_SCALER_SKIPPED],
                       sc[IR_SCALER_OVERFLOW] != 0 ? "  (gradients not finite)" : "");
            printf("\n");
        }
        free(losses);
        free(scales);
    }
    for (int i = 0; i < out.n; i++) { /* never a file of NaN: the updated weights must be finite too */
        const rt_tensor *t = &out.t[i];
        const float *v = t->data;
        for (size_t j = 0; t->dtype == RT_F32 && j < t->nbytes / sizeof(float); j++)
            if (!isfinite(v[j])) {
                die("%s not written: tensor '%s' holds a NaN or infinity at element %zu%s", a->output, t->name, j,
                    training ? " (training diverged: try a smaller --lr)" : "");
                goto done;
            }
    }
    if (rt_safetensors_write(a->output, out.t, out.n, NULL, err, sizeof err)) {
        die("%s", err);
        goto done;
    }
    rc = 0;
done:
    out_free(&out);
    ir_interp_free(it);
    ir_graph_free(g);
    rt_tensor_set_free(&in);
    rt_tensor_set_free(&w);
    return rc;
}

/* ---- compile ------------------------------------------------------------------------------ */

static int cmd_compile(const cli_args *a) {
    char err[1024];
    if (!a->output) return die("compile needs -o EXE");
    /* before the compile: the executable is a regular file, none of the inputs */
    struct stat st;
    if (stat(a->output, &st) == 0 && S_ISDIR(st.st_mode)) return die("-o %s: is a directory", a->output);
    if (stat(a->output, &st) == 0 && !S_ISREG(st.st_mode))
        return die("-o %s: is not a regular file (an executable is written to one)", a->output);
    const rt_named_path inputs[] = {{"the model", a->model}, {"deitc itself", "/proc/self/exe"}};
    if (check_output("-o", a->output, inputs, 2, 0)) return 1; /* cg_compile probes it (--emit-dir may hold it) */
    cg_options co;
    cg_options_default(&co);
    if (a->target) co.target = a->target;
    if (a->arch) co.arch = a->arch;
    co.emit_dir = a->emit_dir;
    co.output = a->output;
    if (a->batch) co.batch = a->batch;
    pass_options po = make_pass_options(a, 1);
    if (pass_options_check(&po, err, sizeof err)) return die("%s", err);
    ir_graph *g = load(a, co.batch);
    if (!g) return 1;
    pass_result *r = pass_pipeline_run(g, &po, NULL, err, sizeof err);
    if (!r) return die("%s", err);
    int rc = cg_compile(r, &co, err, sizeof err);
    if (!rc && (a->stats || a->stats_json)) { /* the program cg_compile emitted, once more */
        cg_program *p = cg_program_new(r, &co, err, sizeof err);
        rc = p ? 0 : -1;
        if (p) print_stats(a, p);
        cg_program_free(p);
    }
    pass_result_free(r);
    if (rc) return die("%s", err);
    return 0;
}

/* ---- export ------------------------------------------------------------------------------- */

static int cmd_export(const cli_args *a) {
    char err[1024];
    if (!a->weights) return die("export needs --weights TRAINED.safetensors");
    if (!a->output) return die("export needs -o OUT.onnx");
    const rt_named_path inputs[] = {{"the model", a->model}, {"--weights", a->weights},
                                    {"deitc itself", "/proc/self/exe"}};
    if (check_output("-o", a->output, inputs, 3, 1)) return 1;
    int n = fe_onnx_export(a->model, a->weights, a->output, err, sizeof err);
    if (n < 0) return die("%s", err);
    char shown_out[4096], shown_w[4096];
    printf("deitc: wrote %s (%d initializers from %s)\n", rt_path_show(a->output, shown_out, sizeof shown_out), n,
           rt_path_show(a->weights, shown_w, sizeof shown_w));
    return 0;
}

/* rc, or 1 when what was printed did not reach stdout (a full disk, a closed pipe). */
static int stdout_checked(int rc) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
    die("writing the standard output failed: %s", errno ? strerror(errno) : "I/O error");
    return rc ? rc : 1;
}

static int dispatch(const cli_args *a) {
    if (a->target && strcmp(a->target, "cuda") != 0 && strcmp(a->target, "emu") != 0)
        return die("unknown --target '%s' (cuda or emu)", a->target);
    if (strcmp(a->command, "inspect") == 0) return cmd_inspect(a);
    if (strcmp(a->command, "dump") == 0) return cmd_dump(a);
    if (strcmp(a->command, "run") == 0) return cmd_run(a);
    if (strcmp(a->command, "compile") == 0) return cmd_compile(a);
    if (strcmp(a->command, "export") == 0) return cmd_export(a);
    usage();
    return bad_usage("unknown command '%s'", a->command);
}

int main(int argc, char **argv) {
    cli_argv = argv;
    cli_argc = argc;
    if (argc == 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) return stdout_checked(print_version());
    if (argc >= 2 && strcmp(argv[1], "help") == 0) return stdout_checked(print_help()); /* deitc help [COMMAND] */
    if (asks_for_help(argc, argv)) {
        usage_to(stdout);
        return stdout_checked(0);
    }
    cli_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        if (argc < 3) usage();
        return 2;
    }
    return stdout_checked(dispatch(&a));
}
