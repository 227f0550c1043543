/* exe_loss_scale.c: the loss scaler of a plan built with loss scaling (deitc compile
 * --loss-scale, the default for fp16): the STATE "loss_scaler" (RT_SCALER_* slots) lives on the
 * device and the step updates it itself (skip, halve, grow, count), so the host only sets its
 * start and reads it back with the loss for the metrics. Its embedded initial value is the
 * compile-time default; --loss-scale none|dynamic|S, --loss-scale-init S and
 * --loss-scale-interval N override it. A checkpoint holds the state like any optimizer state;
 * the mode and interval are run options that --resume compares.
 */
#include "runtime/exe_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rt_exe_scaler_config(const session *s, const exe_args *a, int *mode, double *scale, long *interval) {
    char err[256];
    const rt_plan_tensor *t = s->scaler;
    const float *baked = t ? t->init_data : NULL;
    int given = 0;
    double v = 0;
    if (a->loss_scale && rt_loss_scale_parse("--loss-scale", a->loss_scale, &given, &v, err, sizeof err))
        return rt_exe_error("%s", err);
    if (!baked) {
        if ((a->loss_scale && given != RT_LOSS_SCALE_NONE) || a->loss_scale_init || a->loss_scale_interval)
            return rt_exe_error("this executable was compiled without loss scaling (--precision %s defaults to none): "
                                "compile it with deitc compile --loss-scale dynamic (or a static scale) to use "
                                "--loss-scale%s",
                                s->p->precision ? s->p->precision : "fp32", a->loss_scale_init ? "-init" : a->loss_scale_interval ? "-interval" : "");
        *mode = RT_LOSS_SCALE_NONE, *scale = 1, *interval = 0;
        return 0;
    }
    int bmode = (int)baked[RT_SCALER_MODE];
    *mode = a->loss_scale ? given : bmode;
    *interval = a->loss_scale_interval ? a->loss_scale_interval : (long)baked[RT_SCALER_INTERVAL];
    if (a->loss_scale_init && *mode != RT_LOSS_SCALE_DYNAMIC)
        return rt_exe_error("--loss-scale-init is the first scale of --loss-scale dynamic (this run's loss scaling is "
                            "%s)", *mode == RT_LOSS_SCALE_NONE ? "none" : "static");
    if (*mode == RT_LOSS_SCALE_STATIC) *scale = a->loss_scale ? v : baked[RT_SCALER_SCALE];
    else if (*mode == RT_LOSS_SCALE_NONE) *scale = 1;
    else *scale = a->loss_scale_init ? a->loss_scale_init : bmode == RT_LOSS_SCALE_DYNAMIC ? baked[RT_SCALER_SCALE] : 65536.0;
    return 0;
}

int rt_exe_scaler_read(session *s, float st[RT_SCALER_SLOTS]) {
    if (s->dev->download(s->dev, st, s->scaler->offset, sizeof(float) * RT_SCALER_SLOTS))
        return rt_exe_error("%s", s->dev->err);
    return 0;
}

int rt_exe_scaler_setup(session *s, const exe_args *a, int resumed) {
    int mode = 0;
    double scale = 0;
    long interval = 0;
    if (rt_exe_scaler_config(s, a, &mode, &scale, &interval)) return 1;
    if (!s->scaler) return 0;
    float st[RT_SCALER_SLOTS] = {0};
    if (resumed && rt_exe_scaler_read(s, st)) return 1;
    if (!resumed || (int)st[RT_SCALER_MODE] != mode) { /* a new start (or, with --resume-override, a new mode) */
        if (!resumed) memset(st, 0, sizeof st);
        st[RT_SCALER_SCALE] = (float)scale;
        st[RT_SCALER_GROWTH] = 0;
    } else if (mode == RT_LOSS_SCALE_STATIC) {
        st[RT_SCALER_SCALE] = (float)scale;
    }
    st[RT_SCALER_MODE] = (float)mode;
    st[RT_SCALER_INTERVAL] = (float)interval;
    if (s->dev->upload(s->dev, s->scaler->offset, st, sizeof st)) return rt_exe_error("%s", s->dev->err);
    return 0;
}

/* shortest digits that read back as the same float */
static void float_text(double v, char *buf, size_t size) {
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if ((float)strtod(buf, NULL) == (float)v) return;
    }
}

int rt_exe_scaler_run_options(const session *s, const exe_args *a, const char **keys, char (*values)[64]) {
    int mode = 0;
    double scale = 0;
    long interval = 0;
    if (!s->scaler || rt_exe_scaler_config(s, a, &mode, &scale, &interval)) return 0;
    char num[32];
    float_text(scale, num, sizeof num);
    keys[0] = "loss_scale";
    if (mode == RT_LOSS_SCALE_NONE) snprintf(values[0], 64, "none");
    else snprintf(values[0], 64, "%s %s", mode == RT_LOSS_SCALE_STATIC ? "static" : "dynamic from", num);
    keys[1] = "loss_scale_interval";
    snprintf(values[1], 64, "%ld", mode == RT_LOSS_SCALE_DYNAMIC ? interval : 0L);
    return 2;
}

void rt_exe_scaler_json(FILE *f, const float st[RT_SCALER_SLOTS]) {
    fprintf(f, ",\"loss_scale\":");
    rt_exe_json_num(f, st[RT_SCALER_SCALE]);
    fprintf(f, ",\"overflow\":%d,\"skipped_steps\":%.0f,\"growth_tracker\":%.0f,\"optimizer_steps\":%.0f",
            st[RT_SCALER_OVERFLOW] != 0, (double)st[RT_SCALER_SKIPPED], (double)st[RT_SCALER_GROWTH],
            (double)st[RT_SCALER_STEP]);
}

void rt_exe_scaler_log(FILE *f, const float st[RT_SCALER_SLOTS]) {
    int none = (int)st[RT_SCALER_MODE] == RT_LOSS_SCALE_NONE;
    fprintf(f, "  scale %g  skipped %.0f%s", (double)st[RT_SCALER_SCALE], (double)st[RT_SCALER_SKIPPED],
            st[RT_SCALER_OVERFLOW] == 0 ? "" : none ? "  (gradients not finite)" : "  (gradients not finite: step skipped)");
}

void rt_exe_scaler_info(const rt_plan *p) {
    const float *v = NULL;
    for (int i = 0; i < p->num_tensors; i++)
        if (p->tensors[i].role == RT_ROLE_STATE && !strcmp(p->tensors[i].name, "loss_scaler")) v = p->tensors[i].init_data;
    if (!v) {
        printf("loss scaling: none (compiled without a loss scaler)\n");
        return;
    }
    int mode = (int)v[RT_SCALER_MODE];
    if (mode == RT_LOSS_SCALE_DYNAMIC)
        printf("loss scaling: dynamic from %g, growth interval %.0f (the default; train --loss-scale changes it)\n",
               (double)v[RT_SCALER_SCALE], (double)v[RT_SCALER_INTERVAL]);
    else
        printf("loss scaling: %s%.9g (the default; train --loss-scale changes it)\n", mode == RT_LOSS_SCALE_STATIC ? "static " : "none, scale ",
               (double)v[RT_SCALER_SCALE]);
}
