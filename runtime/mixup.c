/* mixup.c: the host side of Mixup / CutMix (see mixup.h): timm's draws, in timm's order, from a
 * counter-based generator, and the "mix" input the training graph reads (passes/mixup.c). */
#include "runtime/mixup.h"

#include <math.h>
#include <string.h>

void rt_mix_options_default(rt_mix_options *o) {
    memset(o, 0, sizeof *o);
    o->prob = 1;
    o->switch_prob = 0.5;
}

int rt_mix_enabled(const rt_mix_options *o) { return o->mixup_alpha > 0 || o->cutmix_alpha > 0; }

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

void rt_mix_rng_init(rt_mix_rng *r, uint64_t seed, long step) {
    r->key = splitmix64(splitmix64(seed ^ 0x6d69787570ULL /* "mixup" */) ^ (uint64_t)step);
    r->counter = 0;
}

double rt_mix_uniform(rt_mix_rng *r) {
    uint64_t x = splitmix64(r->key ^ splitmix64(r->counter++));
    return (double)(x >> 11) * 0x1.0p-53;
}

static double normal(rt_mix_rng *r) { /* Box-Muller */
    double u = 1 - rt_mix_uniform(r), v = rt_mix_uniform(r);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Gamma(a, 1): Marsaglia and Tsang; a < 1 through Gamma(a + 1) * U^(1/a) */
static double gamma_draw(rt_mix_rng *r, double a) {
    if (a < 1) {
        double u = 1 - rt_mix_uniform(r);
        return gamma_draw(r, a + 1) * pow(u, 1 / a);
    }
    double d = a - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double x = normal(r), v = 1 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = 1 - rt_mix_uniform(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

double rt_mix_beta(rt_mix_rng *r, double alpha) {
    double x = gamma_draw(r, alpha), y = gamma_draw(r, alpha);
    return x + y > 0 ? x / (x + y) : 0.5;
}

static int64_t clip(int64_t v, int64_t hi) { return v < 0 ? 0 : v > hi ? hi : v; }

void rt_mix_cutmix_box(double lam, int64_t H, int64_t W, int64_t cy, int64_t cx, rt_mix_draw *d) {
    double ratio = sqrt(1 - lam);
    int64_t cut_h = (int64_t)((double)H * ratio), cut_w = (int64_t)((double)W * ratio);
    d->cutmix = 1;
    d->yl = clip(cy - cut_h / 2, H);
    d->yh = clip(cy + (cut_h + 1) / 2, H); /* timm 1.0: the upper half rounds up */
    d->xl = clip(cx - cut_w / 2, W);
    d->xh = clip(cx + (cut_w + 1) / 2, W);
    d->lam = 1 - (double)((d->yh - d->yl) * (d->xh - d->xl)) / (double)(H * W);
}

static int64_t randint(rt_mix_rng *r, int64_t n) { /* [0, n) */
    int64_t v = (int64_t)(rt_mix_uniform(r) * (double)n);
    return v < n ? v : n - 1;
}

void rt_mix_draw_step(const rt_mix_options *o, uint64_t seed, long step, int64_t H, int64_t W, rt_mix_draw *d) {
    memset(d, 0, sizeof *d);
    d->lam = 1;
    if (!rt_mix_enabled(o)) return;
    rt_mix_rng r;
    rt_mix_rng_init(&r, seed, step);
    if (!(rt_mix_uniform(&r) < o->prob)) return;
    int use_cutmix;
    double lam;
    if (o->mixup_alpha > 0 && o->cutmix_alpha > 0) {
        use_cutmix = rt_mix_uniform(&r) < o->switch_prob;
        lam = rt_mix_beta(&r, use_cutmix ? o->cutmix_alpha : o->mixup_alpha);
    } else if (o->mixup_alpha > 0) {
        use_cutmix = 0;
        lam = rt_mix_beta(&r, o->mixup_alpha);
    } else {
        use_cutmix = 1;
        lam = rt_mix_beta(&r, o->cutmix_alpha);
    }
    if (lam == 1) return; /* timm: nothing mixed */
    if (!use_cutmix) {
        d->lam = lam;
        return;
    }
    int64_t cy = randint(&r, H), cx = randint(&r, W);
    rt_mix_cutmix_box(lam, H, W, cy, cx, d);
}

void rt_mix_fill(const rt_mix_draw *d, int64_t H, int64_t W, float *mix) {
    int64_t hw = H * W;
    float *w = mix, *wf = mix + hw;
    double lam = d ? d->lam : 1;
    for (int64_t i = 0; i < hw; i++) {
        w[i] = d && !d->cutmix ? (float)lam : 1.0f;
        wf[i] = d && !d->cutmix ? (float)(1 - lam) : 0.0f;
    }
    if (d && d->cutmix)
        for (int64_t y = d->yl; y < d->yh; y++)
            for (int64_t x = d->xl; x < d->xh; x++) w[y * W + x] = 0, wf[y * W + x] = 1;
    mix[2 * hw] = (float)lam;
    mix[2 * hw + 1] = (float)(1 - lam);
}
