/* exe_mixup.c: Mixup / CutMix and stochastic depth in `EXE train`: the per-step "mix" input of a
 * plan compiled with `deitc compile --mix` (draws: mixup.c; the mixing itself is in the graph:
 * passes/mixup.c) and the "drop_path" input of one compiled with --stochastic-depth (masks:
 * drop_path.c; passes/drop_path.c). Every other step (eval, bench, a run without the options)
 * uploads the identity. */
#include "runtime/drop_path.h"
#include "runtime/exe_internal.h"

#include <stdio.h>
#include <stdlib.h>

int rt_exe_mix_check(const session *s, const rt_mix_options *o) {
    if (!rt_mix_enabled(o) || s->mix) return 0;
    return rt_exe_error("--mixup/--cutmix: this executable has no mixing in its training graph (compile it with "
                        "deitc compile --mix, or --recipe deit)");
}

int rt_exe_mix_run_option(const session *s, const rt_mix_options *o, const char **key, char *value, size_t size) {
    if (!s->mix) return 0;
    *key = "mixup"; /* mixup alpha, cutmix alpha, prob, switch prob: a resume with others is refused */
    snprintf(value, size, "%.9g,%.9g,%.9g,%.9g", o->mixup_alpha, o->cutmix_alpha, o->prob, o->switch_prob);
    return 1;
}

int rt_exe_set_mix(session *s, const rt_mix_options *o, uint64_t seed, long step) {
    if (!s->mix) return 0;
    int64_t H = s->images->shape[2], W = s->images->shape[3], n = 2 * H * W + 2;
    if (s->mix->dtype != RT_F32 || rt_exe_numel(s->mix) != n)
        return rt_exe_error("plan: the input 'mix' must be f32 [%lld] for images of %lldx%lld", (long long)n,
                            (long long)H, (long long)W);
    rt_mix_draw d;
    int on = o && rt_mix_enabled(o);
    if (on) rt_mix_draw_step(o, seed, step, H, W, &d);
    float *mix = malloc(sizeof(float) * (size_t)n);
    if (!mix) abort();
    rt_mix_fill(on ? &d : NULL, H, W, mix);
    int rc = rt_exe_put(s, s->mix->offset, mix, sizeof(float) * (size_t)n);
    free(mix);
    return rc;
}

int rt_exe_drop_path_check(const session *s, double rate) {
    if (rate <= 0 || s->drop_path) return 0;
    return rt_exe_error("--drop-path: this executable has no stochastic depth in its training graph (compile it "
                        "with deitc compile --stochastic-depth, or --recipe deit)");
}

int rt_exe_set_drop_path(session *s, double rate, uint64_t seed, long step) {
    if (!s->drop_path) return 0;
    int64_t n = rt_exe_numel(s->drop_path), B = s->p->batch;
    if (s->drop_path->dtype != RT_F32 || B < 1 || n % B)
        return rt_exe_error("plan: the input 'drop_path' must be f32 [residuals*%lld]", (long long)B);
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) abort();
    rt_drop_path_fill(rate, (int)(n / B), B, seed, step, v);
    int rc = rt_exe_put(s, s->drop_path->offset, v, sizeof(float) * (size_t)n);
    free(v);
    return rc;
}
