/* mixup.h: the host side of Mixup / CutMix (timm's Mixup, mode 'batch'): each step's lam and
 * CutMix box, drawn from a counter-based generator of (seed, step) so that a resumed run draws
 * what an uninterrupted one does (its state is the step number the checkpoint keeps), and the
 * INPUT "mix" (f32 [2*H*W + 2]) the training graph mixes with (layout: passes/mixup.c). */
#ifndef DEITC_RT_MIXUP_H
#define DEITC_RT_MIXUP_H

#include <stdint.h>

typedef struct {
    double mixup_alpha;  /* --mixup A: Beta(A, A) for Mixup; 0: off (DeiT: 0.8) */
    double cutmix_alpha; /* --cutmix A: Beta(A, A) for CutMix; 0: off (DeiT: 1.0) */
    double prob;         /* --mixup-prob P: a step mixes with probability P (timm's mix_prob, 1) */
    double switch_prob;  /* --mixup-switch-prob P: with both on, CutMix with probability P (0.5) */
} rt_mix_options;

typedef struct {
    double lam;               /* the weight of the sample itself (CutMix: corrected for the box) */
    int cutmix;               /* 1: the box [yl,yh) x [xl,xh) comes from the partner */
    int64_t yl, yh, xl, xh;
} rt_mix_draw;

void rt_mix_options_default(rt_mix_options *o); /* both off, prob 1, switch 0.5 */
int rt_mix_enabled(const rt_mix_options *o);    /* either alpha > 0 */

/* The uniform draws of one step in [0,1), a stream per (seed, step): counter-based. */
typedef struct {
    uint64_t key, counter;
} rt_mix_rng;
void rt_mix_rng_init(rt_mix_rng *r, uint64_t seed, long step);
double rt_mix_uniform(rt_mix_rng *r);
double rt_mix_beta(rt_mix_rng *r, double alpha); /* Beta(alpha, alpha), alpha > 0 */

/* timm's (1.0) rand_bbox + cutmix_bbox_and_lam (correct_lam): cut = int(H*sqrt(1-lam)) rows
 * [cy - cut/2, cy + (cut+1)/2) (columns alike), clipped to the image; d->lam = 1 - area/(H*W). */
void rt_mix_cutmix_box(double lam, int64_t H, int64_t W, int64_t cy, int64_t cx, rt_mix_draw *d);

/* timm's _params_per_batch and box for step `step`: the order of draws is timm's (mix_prob,
 * switch, beta, then the box centre's y and x). */
void rt_mix_draw_step(const rt_mix_options *o, uint64_t seed, long step, int64_t H, int64_t W, rt_mix_draw *d);

/* The "mix" input for a draw (NULL: none, the identity: w 1, partner 0, lam 1). */
void rt_mix_fill(const rt_mix_draw *d, int64_t H, int64_t W, float *mix);

#endif
