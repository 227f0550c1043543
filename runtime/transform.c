/* transform.c: the per-sample transforms the data loader's workers run (loader.c): one function
 * from (the sample's RNG state, a decoded RGB image) to the model's input as uint8 CHW
 * (3, size, size); normalization to the model's dtype happens when the batch is gathered.
 *   none   timm's eval transform: resize the shorter side to size / 0.875 and center crop
 *          (image_folder.c's, bit-exact with PIL); the RNG is not used; never DCT-shrunk.
 *   light  torchvision/timm RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, 10 tries then a
 *          center crop of the clamped ratio) with PIL's BICUBIC, then a horizontal flip with
 *          probability 0.5. Given the sampled box, the pixels are PIL's crop(box).resize(size,
 *          BICUBIC) bit for bit when the image was decoded at full size; a JPEG whose box is
 *          at least twice the output side is decoded smaller in the DCT domain (libjpeg-turbo's
 *          1/2, 1/4, 1/8, the box never below the output side), the box then mapped onto the
 *          smaller image: close to but not bit-exact with PIL (nothing promises exactness here).
 * The RNG state is rt_sample_rng(seed, epoch, index): the same sample in the same epoch gets
 * the same crop whatever the number of workers or the order they run in.
 */
#include "runtime/rt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t rt_sample_rng(uint64_t seed, int64_t epoch, int64_t index) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull ^ (uint64_t)epoch * 0xc2b2ae3d27d4eb4full ^
                 (uint64_t)index * 0x165667b19e3779f9ull ^ 0xa46d5eedull;
    rt_splitmix64(&s); /* decorrelate neighbouring indices */
    return s;
}

static uint64_t rand_below(uint64_t *s, uint64_t n) { /* uniform in [0, n), n >= 1 */
    return rt_splitmix64(s) % n;
}

void rt_rrc_params(const rt_transform *t, uint64_t rng, int full_w, int full_h, rt_crop_params *out) {
    uint64_t s = rng;
    double area = (double)full_w * full_h, lr0 = log(t->ratio[0]), lr1 = log(t->ratio[1]);
    out->flip = 0;
    int found = 0;
    for (int attempt = 0; attempt < 10 && !found; attempt++) {
        double target = area * (t->scale[0] + (t->scale[1] - t->scale[0]) * rt_uniform01(&s));
        double aspect = exp(lr0 + (lr1 - lr0) * rt_uniform01(&s));
        int w = (int)lround(sqrt(target * aspect)), h = (int)lround(sqrt(target / aspect));
        if (w > 0 && h > 0 && w <= full_w && h <= full_h) {
            out->w = w;
            out->h = h;
            out->y = (int)rand_below(&s, (uint64_t)(full_h - h + 1));
            out->x = (int)rand_below(&s, (uint64_t)(full_w - w + 1));
            found = 1;
        }
    }
    if (!found) { /* timm's fallback: a center crop with the ratio clamped into range */
        double in_ratio = (double)full_w / full_h;
        if (in_ratio < t->ratio[0]) {
            out->w = full_w;
            out->h = (int)lround(full_w / t->ratio[0]);
        } else if (in_ratio > t->ratio[1]) {
            out->h = full_h;
            out->w = (int)lround(full_h * t->ratio[1]);
        } else {
            out->w = full_w;
            out->h = full_h;
        }
        if (out->w < 1) out->w = 1;
        if (out->h < 1) out->h = 1;
        if (out->w > full_w) out->w = full_w;
        if (out->h > full_h) out->h = full_h;
        out->y = (full_h - out->h) / 2;
        out->x = (full_w - out->w) / 2;
    }
    out->flip = t->flip_p > 0 && rt_uniform01(&s) < t->flip_p;
}

/* ---- PIL's resampling (Pillow's Resample.c, 8 bits a channel) on a rectangle ------------- */

#define COEF_FRAC_BITS (32 - 8 - 2)

static double bilinear(double x) { /* support 1 */
    if (x < 0) x = -x;
    return x < 1 ? 1 - x : 0;
}

static double bicubic(double x) { /* a = -0.5, support 2 */
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the output positions [first, first+n)
 * of out_size outputs from the box [b0, b1) of an input of in_size samples (box relative to
 * the input's origin): bounds (xmin, count) and ksize fixed-point weights each; ksize, or -1. */
static int coeffs(int in_size, double b0, double b1, int out_size, int first, int n, int cubic, int **bounds_out,
                  int32_t **kk_out) {
    double scale = (b1 - b0) / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = (cubic ? 2.0 : 1.0) * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc(sizeof(int) * 2 * (size_t)n);
    int32_t *kk = malloc(sizeof(int32_t) * (size_t)ksize * (size_t)n);
    double *w = malloc(sizeof(double) * (size_t)ksize);
    if (!bounds || !kk || !w) {
        free(bounds);
        free(kk);
        free(w);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        double center = b0 + (first + i + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax > ksize) xmax = ksize;
        for (int x = 0; x < xmax; x++) {
            double t = (x + xmin - center + 0.5) * ss;
            w[x] = cubic ? bicubic(t) : bilinear(t);
            ww += w[x];
        }
        int32_t *k = kk + (size_t)i * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax ? (ww != 0.0 ? w[x] / ww : w[x]) : 0.0;
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << COEF_FRAC_BITS)) : (int32_t)(0.5 + v * (1 << COEF_FRAC_BITS));
        }
        bounds[2 * i] = xmin;
        bounds[2 * i + 1] = xmax < 0 ? 0 : xmax;
    }
    free(w);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

static inline unsigned char clip8(int32_t v) {
    if (v >= (1 << COEF_FRAC_BITS << 8)) return 255;
    if (v <= 0) return 0;
    return (unsigned char)(v >> COEF_FRAC_BITS);
}

/* one output pixel: the weighted sum of n pixels `stride` bytes apart from p */
static inline void blend(const unsigned char *p, size_t stride, const int32_t *k, int n, unsigned char v[3]) {
    int32_t s0 = 1 << (COEF_FRAC_BITS - 1), s1 = s0, s2 = s0;
    for (int j = 0; j < n; j++, p += stride) {
        s0 += p[0] * k[j];
        s1 += p[1] * k[j];
        s2 += p[2] * k[j];
    }
    v[0] = clip8(s0);
    v[1] = clip8(s1);
    v[2] = clip8(s2);
}

int rt_resample_box(const rt_rgb_image *img, const rt_resample *r, uint8_t *out) {
    int *bh = NULL, *bv = NULL, ksh = 0, ksv = 0, rc = -1;
    int32_t *kh = NULL, *kv = NULL;
    unsigned char *tmp = NULL;
    int nw = r->nw, nh = r->nh;
    /* Pillow skips a pass whose size and box are the rectangle's own (it would be the identity) */
    int need_h = r->ow != r->rw || r->box[0] != 0 || r->box[2] != r->rw;
    int need_v = r->oh != r->rh || r->box[1] != 0 || r->box[3] != r->rh;
    if (need_h && (ksh = coeffs(r->rw, r->box[0], r->box[2], r->ow, r->ox, nw, r->cubic, &bh, &kh)) < 0) goto done;
    if (need_v && (ksv = coeffs(r->rh, r->box[1], r->box[3], r->oh, r->oy, nh, r->cubic, &bv, &kv)) < 0) goto done;
    /* the rectangle's rows the vertical pass reads (its output rows themselves without one) */
    int row0 = need_v ? bv[0] : r->oy, nrows = need_v ? bv[2 * (nh - 1)] + bv[2 * (nh - 1) + 1] - row0 : nh;
    if (nrows < 1) nrows = 1;
    tmp = malloc((size_t)nrows * nw * 3);
    if (!tmp) goto done;
    for (int y = 0; y < nrows; y++) { /* horizontal pass, rounded to uint8 */
        int sy = r->ry + row0 + y;
        if (sy >= img->h) sy = img->h - 1;
        const unsigned char *src = img->rgb + ((size_t)sy * img->w + r->rx) * 3;
        unsigned char *dst = tmp + (size_t)y * nw * 3;
        for (int x = 0; x < nw; x++) {
            if (need_h) blend(src + 3 * bh[2 * x], 3, kh + (size_t)x * ksh, bh[2 * x + 1], dst + 3 * x);
            else memcpy(dst + 3 * x, src + 3 * (r->ox + x), 3);
        }
    }
    size_t plane = (size_t)nw * nh;
    const int flip = r->flip, chw = r->chw; /* locals: out (bytes) may alias *r */
    for (int y = 0; y < nh; y++) /* vertical pass into CHW or HWC */
        for (int x = 0; x < nw; x++) {
            unsigned char v[3];
            if (need_v) blend(tmp + ((size_t)(bv[2 * y] - row0) * nw + x) * 3, (size_t)nw * 3, kv + (size_t)y * ksv,
                              bv[2 * y + 1], v);
            else memcpy(v, tmp + ((size_t)y * nw + x) * 3, 3);
            size_t o = (size_t)y * nw + (size_t)(flip ? nw - 1 - x : x);
            if (chw) {
                out[o] = v[0];
                out[plane + o] = v[1];
                out[2 * plane + o] = v[2];
            } else {
                memcpy(out + 3 * o, v, 3);
            }
        }
    rc = 0;
done:
    free(bh);
    free(kh);
    free(bv);
    free(kv);
    free(tmp);
    return rc;
}

/* the rectangle's box [bx0, bx1) x [by0, by1) resized to a whole ow x oh */
static int resample_rect(const rt_rgb_image *img, int rx, int ry, int rw, int rh, double bx0, double by0, double bx1,
                         double by1, int ow, int oh, int cubic, int flip, int chw, uint8_t *out) {
    rt_resample r = {rx, ry, rw, rh, {bx0, by0, bx1, by1}, ow, oh, 0, 0, ow, oh, cubic, flip, chw};
    return rt_resample_box(img, &r, out);
}

int rt_rrc_apply_box(const rt_rgb_image *img, const rt_crop_params *c, int size, uint8_t *out) {
    if (img->w == img->full_w && img->h == img->full_h) /* PIL: crop(box).resize(size, BICUBIC) */
        return resample_rect(img, c->x, c->y, c->w, c->h, 0, 0, c->w, c->h, size, size, 1, c->flip, 1, out);
    /* decoded smaller: the box in the small image's pixels, the rectangle its covering pixels */
    double sx = (double)img->w / img->full_w, sy = (double)img->h / img->full_h;
    double x0 = c->x * sx, y0 = c->y * sy, x1 = (c->x + c->w) * sx, y1 = (c->y + c->h) * sy;
    int rx = (int)floor(x0), ry = (int)floor(y0), rx1 = (int)ceil(x1), ry1 = (int)ceil(y1);
    if (rx1 > img->w) rx1 = img->w;
    if (ry1 > img->h) ry1 = img->h;
    if (rx1 <= rx) rx1 = rx + 1;
    if (ry1 <= ry) ry1 = ry + 1;
    return resample_rect(img, rx, ry, rx1 - rx, ry1 - ry, x0 - rx, y0 - ry, x1 - rx, y1 - ry, size, size, 1, c->flip, 1,
                         out);
}

int rt_image_resize_bilinear(const rt_rgb_image *img, int ow, int oh, uint8_t *out) {
    return resample_rect(img, 0, 0, img->w, img->h, 0, 0, img->w, img->h, ow, oh, 0, 0, 0, out);
}

static int light_apply(const rt_transform *t, uint64_t rng, const rt_rgb_image *img, uint8_t *out) {
    rt_crop_params c;
    rt_rrc_params(t, rng, img->full_w, img->full_h, &c);
    return rt_rrc_apply_box(img, &c, t->size, out);
}

static int light_shrink(const rt_transform *t, uint64_t rng, int full_w, int full_h) {
    rt_crop_params c;
    rt_rrc_params(t, rng, full_w, full_h, &c);
    /* the box keeps at least the output side (w * M / 8 >= size, h * M / 8 >= size), M a power of
     * two: libjpeg-turbo's 3/8, 5/8, 6/8 and 7/8 decode slower than 8/8 (no SIMD), while 1/2, 1/4
     * and 1/8 are faster, and the resize after them much cheaper */
    int m = 1;
    while (m < 8 && (c.w * m < 8 * t->size || c.h * m < 8 * t->size)) m *= 2;
    return m;
}

/* "randaug": light, then RandAugment on its output, from a stream of its own */
static int randaug_apply(const rt_transform *t, uint64_t rng, const rt_rgb_image *img, uint8_t *out) {
    if (light_apply(t, rng, img, out)) return -1;
    uint64_t s = rng ^ 0x52a4d0a6e5f3c1b7ull;
    rt_splitmix64(&s);
    return rt_randaug_apply(&t->ra, &s, out, t->size, t->size);
}

static int eval_apply(const rt_transform *t, uint64_t rng, const rt_rgb_image *img, uint8_t *out) {
    (void)rng;
    return rt_image_eval_crop(img, t->size, out);
}

int rt_transform_init(rt_transform *t, const char *name, int size, char *err, size_t errsize) {
    memset(t, 0, sizeof *t);
    t->size = size;
    if (!strcmp(name, "none")) {
        t->name = "none";
        t->apply = eval_apply;
        return 0;
    }
    if (!strcmp(name, "light")) {
        t->name = "light";
        t->apply = light_apply;
        t->shrink = light_shrink;
        t->scale[0] = 0.08;
        t->scale[1] = 1.0;
        t->ratio[0] = 3.0 / 4.0;
        t->ratio[1] = 4.0 / 3.0;
        t->flip_p = 0.5f;
        return 0;
    }
    if (!strcmp(name, "randaug")) { /* light + timm's rand-m9-mstd0.5-inc1 (randaug.c) */
        if (rt_transform_init(t, "light", size, err, errsize) || rt_randaug_parse("rand-m9-mstd0.5-inc1", &t->ra, err, errsize))
            return -1;
        t->name = "randaug";
        t->apply = randaug_apply;
        return 0;
    }
    if (!strcmp(name, "deit")) { /* DeiT's recipe: randaug + random erasing (p 0.25, pixel mode; erasing.c) */
        if (rt_transform_init(t, "randaug", size, err, errsize)) return -1;
        t->name = "deit";
        t->erase_p = 0.25f;
        return 0;
    }
    return rt_errorf(err, errsize, "--aug %s: unknown augmentation (none: resize and center crop; light: random "
                                   "resized crop and flip; randaug: light + RandAugment rand-m9-mstd0.5-inc1; "
                                   "deit: randaug + random erasing, p 0.25)", name);
}

int rt_transform_is_crop_flip(const rt_transform *t) { return t->apply == light_apply && t->erase_p <= 0; }

int rt_transform_set_parts(rt_transform *t, const char *rand_augment, double reprob, char *err, size_t errsize) {
    if (!rand_augment && reprob < 0) return 0;
    if (!strcmp(t->name, "none"))
        return rt_errorf(err, errsize, "%s: an option of the training transform, which --aug none has not (give --aug "
                                       "light, randaug or deit)", rand_augment ? "--rand-augment" : "--reprob");
    if (rand_augment && !strcmp(rand_augment, "none")) { /* crop and flip only */
        memset(&t->ra, 0, sizeof t->ra);
        t->apply = light_apply;
    } else if (rand_augment) {
        if (rt_randaug_parse(rand_augment, &t->ra, err, errsize)) return -1;
        t->apply = randaug_apply;
    }
    if (reprob >= 0) t->erase_p = (float)reprob;
    return 0;
}
