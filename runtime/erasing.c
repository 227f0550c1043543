/* erasing.c: timm's RandomErasing (timm/data/random_erasing.py) in mode 'pixel' with one box,
 * as DeiT trains (--reprob 0.25): with probability p, up to 10 tries of an area fraction
 * uniform in [0.02, 1/3] and an aspect ratio log-uniform in [0.3, 1/0.3]; the first box that
 * fits strictly inside the image is filled with per-pixel standard normal values. It runs on
 * the NORMALIZED image (timm erases after ToTensor + Normalize), so the transform's uint8 output
 * cannot hold it: the loader applies it to each sample after normalizing (loader.c), from the
 * sample's RNG (a stream of its own), so it is reproducible with any number of workers. A
 * loader that delivers uint8 batches (normalized on the device) refuses a transform with it.
 */
#include "runtime/rt.h"

#include <math.h>

static uint64_t erase_stream(uint64_t rng) {
    uint64_t s = rng ^ 0x3c6ef372fe94f82bull;
    rt_splitmix64(&s);
    return s;
}

int rt_erase_box(const rt_transform *t, uint64_t rng, rt_erase_params *out) {
    uint64_t s = erase_stream(rng);
    out->x = out->y = out->w = out->h = 0;
    out->rng = 0;
    if (!(t->erase_p > 0) || rt_uniform01(&s) > t->erase_p) return 0;
    double area = (double)t->size * t->size, la0 = log(0.3), la1 = log(1.0 / 0.3);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (0.02 + (1.0 / 3.0 - 0.02) * rt_uniform01(&s));
        double aspect = exp(la0 + (la1 - la0) * rt_uniform01(&s));
        int h = (int)lround(sqrt(target * aspect)), w = (int)lround(sqrt(target / aspect));
        if (w < t->size && h < t->size) {
            out->y = (int)(rt_splitmix64(&s) % (uint64_t)(t->size - h + 1));
            out->x = (int)(rt_splitmix64(&s) % (uint64_t)(t->size - w + 1));
            out->w = w;
            out->h = h;
            out->rng = rt_splitmix64(&s);
            return w > 0 && h > 0;
        }
    }
    return 0;
}

void rt_erase_apply(const rt_transform *t, uint64_t rng, float *chw) {
    rt_erase_params e;
    if (!rt_erase_box(t, rng, &e)) return;
    uint64_t s = e.rng;
    size_t plane = (size_t)t->size * t->size;
    for (int c = 0; c < 3; c++) /* (chan, h, w) order, as torch's normal_ fills the patch */
        for (int y = e.y; y < e.y + e.h; y++)
            for (int x = e.x; x < e.x + e.w; x += 2) { /* Box-Muller: two values a draw */
                double r = sqrt(-2.0 * log(rt_uniform01(&s))), a = 2.0 * M_PI * rt_uniform01(&s);
                float *p = chw + c * plane + (size_t)y * t->size + x;
                p[0] = (float)(r * cos(a));
                if (x + 1 < e.x + e.w) p[1] = (float)(r * sin(a));
            }
}
