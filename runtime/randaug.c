/* randaug.c: timm's RandAugment (timm/data/auto_augment.py, rand_augment_transform) on the
 * transform's uint8 CHW output, after the random resized crop and flip, as timm's
 * transforms_imagenet_train orders them. The op set is _RAND_INCREASING_TRANSFORMS (`inc1`),
 * each op's PIL semantics reimplemented on 8-bit planes (ImageOps, ImageEnhance, Image.rotate /
 * Image.transform AFFINE with BICUBIC: DeiT trains with interpolation 'bicubic', so timm's
 * aa_params fix BICUBIC instead of the random BILINEAR/BICUBIC choice; the geometric ops fill
 * with timm's img_mean, round(255 * IMAGENET_DEFAULT_MEAN) = (124, 116, 104)).
 * Sampling per image (all from the sample's RNG, so reproducible with any worker count):
 * num_layers ops drawn uniformly with replacement; each applied with probability prob; its
 * magnitude gauss(m, mstd) clipped to [0, 10]; signed ops negated with probability 0.5.
 */
#include "runtime/rt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[RT_RA_NUM_OPS] = {
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
    "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"};

const char *rt_randaug_op_name(int op) { return op >= 0 && op < RT_RA_NUM_OPS ? op_names[op] : "?"; }

static void apply_lut(uint8_t *p, size_t n, const uint8_t lut[256]) {
    for (size_t i = 0; i < n; i++) p[i] = lut[p[i]];
}

static void luma(const uint8_t *chw, size_t plane, uint8_t *l) { /* PIL's convert("L") */
    for (size_t i = 0; i < plane; i++)
        l[i] = (uint8_t)((chw[i] * 19595u + chw[plane + i] * 38470u + chw[2 * plane + i] * 7471u + 0x8000u) >> 16);
}

/* PIL's Image.blend(degenerate, img, alpha): float, truncated, clipped */
static uint8_t blend1(uint8_t d, uint8_t v, float alpha) {
    float t = (float)d + alpha * (float)((int)v - (int)d);
    if (t <= 0.0f) return 0;
    if (t >= 255.0f) return 255;
    return (uint8_t)t;
}

/* PIL's ImageFilter.SMOOTH (3x3, 1 1 1 / 1 5 1 / 1 1 1, divisor 13) on one plane, the border
 * rows and columns copied */
static void smooth_plane(const uint8_t *in, int w, int h, uint8_t *out) {
    const float k = 1.0f / 13.0f;
    memcpy(out, in, (size_t)w * h);
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++) {
            const uint8_t *a = in + (size_t)(y - 1) * w + x, *b = a + w, *c = b + w;
            float s = (float)(a[-1] + a[0] + a[1] + b[-1] + b[1] + c[-1] + c[0] + c[1]) * k + (float)b[0] * 5.0f * k;
            out[(size_t)y * w + x] = s <= 0.0f ? 0 : s >= 255.0f ? 255 : (uint8_t)(s + 0.5f);
        }
}

/* PIL's bicubic_filter32RGB (a = -1) at (xin, yin) of one plane; 0 outside the image */
#define CUBIC(v1, v2, v3, v4, d)                                                                                     \
    ((v2) + (d) * ((-(v1) + (v3)) + (d) * ((2 * ((v1) - (v2)) + (v3) - (v4)) + (d) * (-(v1) + (v2) - (v3) + (v4)))))
static int bicubic_at(const uint8_t *p, int w, int h, double xin, double yin, uint8_t *out) {
    if (xin < 0.0 || xin >= w || yin < 0.0 || yin >= h) return 0;
    xin -= 0.5;
    yin -= 0.5;
    int x = (int)floor(xin), y = (int)floor(yin);
    double dx = xin - x, dy = yin - y, v[4];
    x--;
    y--;
    int xs[4];
    for (int i = 0; i < 4; i++) xs[i] = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
    for (int j = 0; j < 4; j++) {
        int yy = y + j;
        if (j == 0) yy = yy < 0 ? 0 : yy >= h ? h - 1 : yy;
        else if (yy < 0 || yy >= h) {
            v[j] = v[j - 1];
            continue;
        }
        const uint8_t *r = p + (size_t)yy * w;
        v[j] = CUBIC((double)r[xs[0]], (double)r[xs[1]], (double)r[xs[2]], (double)r[xs[3]], dx);
    }
    double s = CUBIC(v[0], v[1], v[2], v[3], dy);
    *out = s <= 0.0 ? 0 : s >= 255.0 ? 255 : (uint8_t)s;
    return 1;
}

/* PIL's Image.transform(size, AFFINE, a, BICUBIC, fillcolor=fill): output pixel (x, y) samples
 * the input at a * (x + 0.5, y + 0.5, 1) */
static int affine(uint8_t *chw, int w, int h, const double a[6], const uint8_t fill[3]) {
    size_t plane = (size_t)w * h;
    uint8_t *src = malloc(3 * plane);
    if (!src) return -1;
    memcpy(src, chw, 3 * plane);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double xi = x + 0.5, yi = y + 0.5;
                uint8_t *o = chw + c * plane + (size_t)y * w + x;
                if (!bicubic_at(src + c * plane, w, h, a[0] * xi + a[1] * yi + a[2], a[3] * xi + a[4] * yi + a[5], o))
                    *o = fill[c];
            }
    free(src);
    return 0;
}

static int enhance(uint8_t *chw, int w, int h, int kind, float factor) { /* 0 color, 1 contrast, 2 brightness, 3 sharpness */
    size_t plane = (size_t)w * h;
    uint8_t *deg = malloc(3 * plane);
    if (!deg) return -1;
    if (kind == 0) {
        luma(chw, plane, deg);
        memcpy(deg + plane, deg, plane);
        memcpy(deg + 2 * plane, deg, plane);
    } else if (kind == 1) {
        luma(chw, plane, deg);
        double sum = 0;
        for (size_t i = 0; i < plane; i++) sum += deg[i];
        memset(deg, (int)(sum / (double)plane + 0.5), 3 * plane);
    } else if (kind == 2) {
        memset(deg, 0, 3 * plane);
    } else {
        for (int c = 0; c < 3; c++) smooth_plane(chw + c * plane, w, h, deg + c * plane);
    }
    for (size_t i = 0; i < 3 * plane; i++) chw[i] = blend1(deg[i], chw[i], factor);
    free(deg);
    return 0;
}

int rt_randaug_op(int op, double magnitude, int negate, const uint8_t fill[3], uint8_t *chw, int w, int h) {
    size_t plane = (size_t)w * h;
    double level = magnitude / 10.0, sign = negate ? -1.0 : 1.0;
    uint8_t lut[256];
    switch (op) {
    case RT_RA_AUTOCONTRAST:
    case RT_RA_EQUALIZE:
        for (int c = 0; c < 3; c++) {
            uint8_t *p = chw + c * plane;
            int64_t hist[256] = {0};
            for (size_t i = 0; i < plane; i++) hist[p[i]]++;
            for (int i = 0; i < 256; i++) lut[i] = (uint8_t)i;
            if (op == RT_RA_AUTOCONTRAST) { /* ImageOps.autocontrast, cutoff 0 */
                int lo = 0, hi = 255;
                while (lo < 256 && !hist[lo]) lo++;
                while (hi >= 0 && !hist[hi]) hi--;
                if (hi > lo) {
                    double scale = 255.0 / (hi - lo), offset = -lo * scale;
                    for (int i = 0; i < 256; i++) {
                        double v = i * scale + offset;
                        int iv = (int)v;
                        lut[i] = (uint8_t)(iv < 0 ? 0 : iv > 255 ? 255 : iv);
                    }
                }
            } else { /* ImageOps.equalize */
                int64_t total = 0, last = 0, nonzero = 0;
                for (int i = 0; i < 256; i++)
                    if (hist[i]) {
                        total += hist[i];
                        last = hist[i];
                        nonzero++;
                    }
                int64_t step = nonzero > 1 ? (total - last) / 255 : 0;
                if (step) {
                    int64_t n = step / 2;
                    for (int i = 0; i < 256; i++) {
                        int64_t v = n / step;
                        lut[i] = (uint8_t)(v > 255 ? 255 : v);
                        n += hist[i];
                    }
                }
            }
            apply_lut(p, plane, lut);
        }
        return 0;
    case RT_RA_INVERT:
        for (size_t i = 0; i < 3 * plane; i++) chw[i] = (uint8_t)(255 - chw[i]);
        return 0;
    case RT_RA_POSTERIZE_INC: {
        int bits = 4 - (int)(level * 4);
        if (bits >= 8) return 0;
        int mask = ~((1 << (8 - bits)) - 1);
        for (int i = 0; i < 256; i++) lut[i] = (uint8_t)(i & mask);
        apply_lut(chw, 3 * plane, lut);
        return 0;
    }
    case RT_RA_SOLARIZE_INC: {
        int t = (int)(level * 256);
        int thresh = 256 - (t < 256 ? t : 256);
        for (int i = 0; i < 256; i++) lut[i] = (uint8_t)(i < thresh ? i : 255 - i);
        apply_lut(chw, 3 * plane, lut);
        return 0;
    }
    case RT_RA_SOLARIZE_ADD: {
        int add = (int)(level * 110);
        if (add > 128) add = 128;
        for (int i = 0; i < 256; i++) lut[i] = (uint8_t)(i < 128 ? (i + add < 255 ? i + add : 255) : i);
        apply_lut(chw, 3 * plane, lut);
        return 0;
    }
    case RT_RA_COLOR_INC:
    case RT_RA_CONTRAST_INC:
    case RT_RA_BRIGHTNESS_INC:
    case RT_RA_SHARPNESS_INC: {
        double f = 1.0 + sign * level * 0.9;
        if (f < 0.1) f = 0.1;
        return enhance(chw, w, h, op - RT_RA_COLOR_INC, (float)f);
    }
    case RT_RA_ROTATE: { /* Image.rotate(deg, BICUBIC, fillcolor): about the center, no expand */
        double deg = sign * level * 30.0, ang = -deg * M_PI / 180.0, cx = w / 2.0, cy = h / 2.0;
        double a[6] = {cos(ang), sin(ang), 0.0, -sin(ang), cos(ang), 0.0};
        a[2] = a[0] * -cx + a[1] * -cy + cx;
        a[5] = a[3] * -cx + a[4] * -cy + cy;
        return affine(chw, w, h, a, fill);
    }
    case RT_RA_SHEAR_X:
    case RT_RA_SHEAR_Y: {
        double f = sign * level * 0.3;
        double a[6] = {1, op == RT_RA_SHEAR_X ? f : 0, 0, op == RT_RA_SHEAR_Y ? f : 0, 1, 0};
        return affine(chw, w, h, a, fill);
    }
    case RT_RA_TRANSLATE_X_REL:
    case RT_RA_TRANSLATE_Y_REL: {
        double pct = sign * level * 0.45;
        double a[6] = {1, 0, op == RT_RA_TRANSLATE_X_REL ? pct * w : 0, 0, 1, op == RT_RA_TRANSLATE_Y_REL ? pct * h : 0};
        return affine(chw, w, h, a, fill);
    }
    default:
        return 0;
    }
}

static double gauss(uint64_t *s, double mean, double std) { /* Box-Muller */
    double u1 = rt_uniform01(s), u2 = rt_uniform01(s);
    return mean + std * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

int rt_randaug_apply(const rt_randaug *ra, uint64_t *rng, uint8_t *chw, int w, int h) {
    for (int l = 0; l < ra->num_layers; l++) {
        int op = (int)(rt_splitmix64(rng) % RT_RA_NUM_OPS);
        double u = rt_uniform01(rng), m = ra->mstd > 0 ? gauss(rng, ra->magnitude, ra->mstd) : ra->magnitude;
        int negate = rt_uniform01(rng) < 0.5;
        if (ra->prob < 1.0 && u > ra->prob) continue;
        m = m < 0 ? 0 : m > 10 ? 10 : m;
        if (rt_randaug_op(op, m, negate, ra->fill, chw, w, h)) return -1;
    }
    return 0;
}

int rt_randaug_parse(const char *spec, rt_randaug *ra, char *err, size_t errsize) {
    memset(ra, 0, sizeof *ra);
    ra->num_layers = 2;
    ra->magnitude = 10;
    ra->prob = 0.5;
    ra->fill[0] = 124; /* round(255 * (0.485, 0.456, 0.406)) */
    ra->fill[1] = 116;
    ra->fill[2] = 104;
    int inc = 0;
    if (strncmp(spec, "rand", 4) || (spec[4] && spec[4] != '-'))
        return rt_errorf(err, errsize, "--rand-augment %s: expected rand-m<M>[-n<N>][-mstd<S>][-p<P>]-inc1", spec);
    const char *s = spec + 4;
    while (*s == '-') {
        s++;
        char key[8] = {0};
        int k = 0;
        while (*s >= 'a' && *s <= 'z' && k < 7) key[k++] = *s++;
        char *end;
        double v = strtod(s, &end);
        if (end == s || (*end && *end != '-') || !isfinite(v) || v < 0)
            return rt_errorf(err, errsize, "--rand-augment %s: bad section '%s' (a key then a number >= 0)", spec, key);
        s = end;
        if (!strcmp(key, "m") && v <= 10) ra->magnitude = v;
        else if (!strcmp(key, "n") && v >= 1 && v <= 16 && v == floor(v)) ra->num_layers = (int)v;
        else if (!strcmp(key, "mstd") && v <= 100) ra->mstd = v;
        else if (!strcmp(key, "p") && v <= 1) ra->prob = v;
        else if (!strcmp(key, "inc") && (v == 0 || v == 1)) inc = (int)v;
        else
            return rt_errorf(err, errsize, "--rand-augment %s: section '%s%g' unknown or out of range (m 0-10, n 1-16, "
                                           "mstd 0-100, p 0-1, inc1)", spec, key, v);
    }
    if (*s) return rt_errorf(err, errsize, "--rand-augment %s: trailing '%s'", spec, s);
    if (!inc)
        return rt_errorf(err, errsize, "--rand-augment %s: only timm's increasing op set (inc1) is implemented", spec);
    return 0;
}
