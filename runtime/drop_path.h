/* drop_path.h: the host side of stochastic depth (timm's DropPath, DeiT's drop_path_rate): each
 * step's per-sample keep mask of every residual branch, from a counter-based generator of
 * (seed, step, residual, sample) (a resumed run draws the same), as the INPUT "drop_path"
 * (f32 [R*B]) the training graph scales the branches with (passes/drop_path.c). */
#ifndef DEITC_RT_DROP_PATH_H
#define DEITC_RT_DROP_PATH_H

#include <stdint.h>

/* The drop probability of residual k of R: timm's linspace(0, rate, depth)[block], with blocks
 * of two residuals (attention, MLP) when R is even, else one residual a block. */
double rt_drop_path_prob(double rate, int k, int R);
/* The "drop_path" input of step `step` (rate 0: every value 1): residual k, sample b at
 * out[k*B + b]: 0 (dropped) or (float)(1 / (float)keep) with keep = 1 - prob. */
void rt_drop_path_fill(double rate, int R, int64_t B, uint64_t seed, long step, float *out);

#endif
