/* run_options.c: the options that belong to a training run rather than to a compile: label
 * smoothing, gradient clipping, AdamW's betas and eps (opt slots the graph reads, see
 * RT_OPT_* in plan.h), the lr schedule (DeiT's default lr 5e-4 x batch / 512, linear warm-up
 * in steps or epochs, cosine to --min-lr, per step or per epoch), validation (--val-data,
 * --eval-every, --save-best, --summary) and the training transform's parts apart from --aug's
 * preset (--rand-augment, --reprob). The compile's values (deitc compile --label-smoothing,
 * --clip-grad) are the defaults, so a run without these options is the compiled one, bit for bit.
 */
#include "runtime/exe_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char rt_exe_run_option_names[] = " --label-smoothing --clip-grad --beta1 --beta2 --adam-eps --min-lr"
                                       " --warmup-epochs --schedule-per --val-data --eval-every --save-best"
                                       " --summary --plot --ema-decay --save-ema --freeze --rand-augment --reprob ";

static int bad(const char *opt, const char *what, const char *got) {
    fprintf(stderr, "%s: error: %s expects %s, got '%s'\n", rt_exe_prog, opt, what, got ? got : "");
    return -1;
}

/* a decimal number in [lo, hi] (hi_open: below hi) */
static int number(const char *opt, const char *s, double lo, double hi, int hi_open, double *out) {
    errno = 0;
    double v = s && rt_is_decimal(s) ? strtod(s, NULL) : NAN;
    if (errno || !(v >= lo) || !(hi_open ? v < hi : v <= hi)) {
        char what[96];
        snprintf(what, sizeof what, "a decimal number in [%g, %g%s", lo, hi, hi_open ? ")" : "]");
        return bad(opt, what, s);
    }
    *out = v;
    return 0;
}

int rt_exe_run_option(exe_args *a, const char *opt, const char *next) {
    double v;
    if (!strcmp(opt, "--label-smoothing")) {
        if (number(opt, next, 0, 1, 1, &a->label_smoothing)) return -1;
        a->has_label_smoothing = 1;
    } else if (!strcmp(opt, "--clip-grad")) { /* 0: no clipping, even in an executable compiled with it */
        if (number(opt, next, 0, 1e30, 0, &a->clip_grad)) return -1;
        a->has_clip_grad = 1;
    } else if (!strcmp(opt, "--beta1")) {
        if (number(opt, next, 0, 1, 1, &a->beta1)) return -1;
        a->has_beta1 = 1;
    } else if (!strcmp(opt, "--beta2")) {
        if (number(opt, next, 0, 1, 1, &a->beta2)) return -1;
        a->has_beta2 = 1;
    } else if (!strcmp(opt, "--adam-eps")) {
        if (number(opt, next, 0, 1, 0, &v)) return -1;
        if (v <= 0) return bad(opt, "a positive number", next);
        a->adam_eps = v;
        a->has_adam_eps = 1;
    } else if (!strcmp(opt, "--min-lr")) {
        if (number(opt, next, 0, 1e30, 0, &a->min_lr)) return -1;
    } else if (!strcmp(opt, "--warmup-epochs")) {
        if (number(opt, next, 0, 1e9, 0, &a->warmup_epochs)) return -1;
    } else if (!strcmp(opt, "--schedule-per")) {
        if (!next || (strcmp(next, "step") && strcmp(next, "epoch"))) return bad(opt, "step or epoch", next);
        a->schedule_per_epoch = !strcmp(next, "epoch");
    } else if (!strcmp(opt, "--val-data")) {
        a->val_data = next;
    } else if (!strcmp(opt, "--eval-every")) {
        if (number(opt, next, 1, 1e12, 0, &v)) return -1;
        if (v != floor(v)) return bad(opt, "a whole number of steps", next);
        a->eval_every = (long)v;
    } else if (!strcmp(opt, "--save-best")) {
        a->save_best = next;
    } else if (!strcmp(opt, "--summary")) {
        a->summary = next;
    } else if (!strcmp(opt, "--plot")) {
        a->plot = next;
    } else if (!strcmp(opt, "--ema-decay")) {
        if (number(opt, next, 0, 1, 1, &a->ema_decay)) return -1;
        a->has_ema_decay = 1;
    } else if (!strcmp(opt, "--save-ema")) {
        a->save_ema = next;
    } else if (!strcmp(opt, "--rand-augment")) { /* timm's spec (checked here), or none */
        rt_randaug ra;
        char err[512];
        if (next && strcmp(next, "none") && rt_randaug_parse(next, &ra, err, sizeof err)) {
            fprintf(stderr, "%s: error: %s\n", rt_exe_prog, err);
            return -1;
        }
        a->rand_augment = next;
    } else if (!strcmp(opt, "--reprob")) {
        if (number(opt, next, 0, 1, 0, &a->reprob)) return -1;
        a->has_reprob = 1;
    } else if (!strcmp(opt, "--freeze")) {
        if (next && !*next) return bad(opt, "comma-separated weight name patterns", next);
        a->freeze = next;
    } else {
        return 0;
    }
    if (!next) {
        fprintf(stderr, "%s: error: %s needs a value\n", rt_exe_prog, opt);
        return -1;
    }
    return 1;
}

int rt_exe_run_options_check(const exe_args *a) {
    if ((a->eval_every || a->save_best || a->summary) && !a->val_data) {
        fprintf(stderr, "%s: error: %s needs --val-data DIR\n", rt_exe_prog,
                a->eval_every ? "--eval-every" : a->save_best ? "--save-best" : "--summary");
        return 2;
    }
    if ((a->rand_augment || a->has_reprob) && (!a->aug || !strcmp(a->aug, "none"))) {
        fprintf(stderr, "%s: error: %s is a part of the training transform: give --aug light, randaug or deit "
                        "with it\n", rt_exe_prog, a->rand_augment ? "--rand-augment" : "--reprob");
        return 2;
    }
    if (a->warmup_epochs > 0 && a->warmup_steps > 0) {
        fprintf(stderr, "%s: error: give --warmup-steps or --warmup-epochs, not both\n", rt_exe_prog);
        return 2;
    }
    if (a->has_lr && a->min_lr > a->lr) {
        fprintf(stderr, "%s: error: --min-lr %g is above --lr %g\n", rt_exe_prog, a->min_lr, a->lr);
        return 2;
    }
    return 0;
}

int rt_exe_run_options_plan_check(const exe_args *a, const rt_plan *p) {
    if ((a->has_ema_decay || a->save_ema) && !rt_exe_has_ema(p))
        return rt_exe_error("%s: this executable keeps no EMA of the weights; compile with deitc compile --ema (or "
                            "--recipe deit)",
                            a->has_ema_decay ? "--ema-decay" : "--save-ema");
    if (a->has_clip_grad && a->clip_grad > 0 && !(p->clip_grad_norm > 0))
        return rt_exe_error("--clip-grad %g: this executable was compiled without gradient clipping (its norm is "
                            "not computed); compile with deitc compile --clip-grad N (N: the default; a run may then "
                            "give any norm, or 0 for none)", a->clip_grad);
    return 0;
}

static int data_parallel_world = 1; /* ranks training together (rt_exe_set_world) */

void rt_exe_set_world(int world) { data_parallel_world = world > 0 ? world : 1; }

double rt_exe_base_lr(const exe_args *a, const rt_plan *p) {
    /* DeiT: lr 5e-4 at a (global) batch of 512, scaled */
    return a->has_lr ? a->lr : 5e-4 * (double)p->batch * data_parallel_world / 512.0;
}

void rt_exe_run_opt(const exe_args *a, const rt_plan *p, rt_opt_run *r) {
    r->weight_decay = a->weight_decay;
    r->beta1 = a->has_beta1 ? a->beta1 : p->beta1;
    r->beta2 = a->has_beta2 ? a->beta2 : p->beta2;
    r->adam_eps = a->has_adam_eps ? a->adam_eps : p->adam_eps;
    r->label_smoothing = a->has_label_smoothing ? a->label_smoothing : p->label_smoothing;
    r->clip_norm = a->has_clip_grad ? a->clip_grad : p->clip_grad_norm;
    r->ema_decay = a->has_ema_decay ? a->ema_decay : 0.99996; /* DeiT's model_ema_decay */
}

long rt_exe_warmup_steps(const exe_args *a, long per_epoch) {
    if (a->warmup_epochs > 0) return (long)ceil(a->warmup_epochs * (double)per_epoch);
    return a->warmup_steps;
}

/* timm's CosineLRScheduler without restarts: linear warm-up from 0 to lr over the warm-up,
 * then min_lr + (lr - min_lr) (1 + cos(pi t / T)) / 2 over the rest. Per epoch (timm's
 * default t_in_epochs): t and T count epochs, and every step of an epoch has its lr. */
double rt_exe_lr_at(const exe_args *a, double lr, long step, long total, long per_epoch) {
    long warmup = rt_exe_warmup_steps(a, per_epoch);
    if (warmup > 0 && step <= warmup) return lr * (double)step / (double)warmup;
    if (!a->cosine) return lr;
    double t, span;
    if (a->schedule_per_epoch && per_epoch > 0) {
        long wep = (warmup + per_epoch - 1) / per_epoch, epochs = (total + per_epoch - 1) / per_epoch;
        t = (double)((step - 1) / per_epoch - wep);
        span = (double)(epochs - wep);
        if (t < 0) t = 0;
    } else {
        t = (double)(step - warmup - 1);
        span = (double)(total - warmup);
    }
    if (span < 1) return lr;
    double progress = t / span;
    if (a->min_lr == 0) return lr * 0.5 * (1 + cos(3.14159265358979323846 * progress));
    return a->min_lr + (lr - a->min_lr) * 0.5 * (1 + cos(3.14159265358979323846 * progress));
}
