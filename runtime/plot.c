/* plot.c: --plot curves.png: the run's curves drawn into an RGB raster and written with libpng
 * (the image library the ImageFolder loader links already; no image format of our own). Two
 * panels against the step: the loss (train: blue, each step; validation: orange, each
 * evaluation, joined) and, with --val-data, the validation top-1 (green, 0-100%). Grid lines
 * at tenths of each axis; the axes' ranges are printed when the file is written (the raster
 * carries no text).
 */
#include "runtime/exe_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DEITC_HAVE_PNG
#include <png.h>
#endif

enum { PW = 800, PH = 300, MARGIN = 30 }; /* one panel */

typedef struct {
    unsigned char *px; /* (h, w, 3) */
    int w, h;
} raster;

static void put(raster *r, int x, int y, const unsigned char c[3]) {
    if (x < 0 || y < 0 || x >= r->w || y >= r->h) return;
    memcpy(r->px + ((size_t)y * (size_t)r->w + (size_t)x) * 3, c, 3);
}

/* a line, two pixels thick (Bresenham) */
static void line(raster *r, int x0, int y0, int x1, int y1, const unsigned char c[3]) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
        put(r, x0, y0, c);
        put(r, x0, y0 + 1, c);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) e += dy, x0 += sx;
        if (e2 <= dx) e += dx, y0 += sy;
    }
}

/* panel at y offset oy: the frame, grid, and the series (x: step in [x0, x1], y in [lo, hi]) */
static void panel(raster *r, int oy, long x0, long x1, double lo, double hi, const rt_exe_point *pts, long n,
                  int use_top1, const unsigned char c[3]) {
    static const unsigned char grid[3] = {225, 225, 225}, frame[3] = {90, 90, 90};
    int left = MARGIN, right = PW - MARGIN, top = oy + MARGIN / 2, bottom = oy + PH - MARGIN / 2;
    for (int k = 0; k <= 10; k++) {
        int gx = left + (right - left) * k / 10, gy = top + (bottom - top) * k / 10;
        for (int y = top; y <= bottom; y++) put(r, gx, y, k % 10 ? grid : frame);
        for (int x = left; x <= right; x++) put(r, x, gy, k % 10 ? grid : frame);
    }
    double sx = x1 > x0 ? (double)(right - left) / (double)(x1 - x0) : 0, sy = hi > lo ? (bottom - top) / (hi - lo) : 0;
    int px = -1, py = -1;
    for (long i = 0; i < n; i++) {
        double v = use_top1 ? pts[i].top1 * 100 : pts[i].loss;
        if (!isfinite(v)) continue;
        int x = left + (int)lround((double)(pts[i].step - x0) * sx), y = bottom - (int)lround((v - lo) * sy);
        if (px >= 0) line(r, px, py, x, y, c);
        else put(r, x, y, c);
        px = x, py = y;
    }
}

#ifdef DEITC_HAVE_PNG
/* r as an 8-bit RGB PNG to f: 0, or -1 */
static int write_png(FILE *f, const raster *r) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        if (png) png_destroy_write_struct(&png, NULL);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)r->w, (png_uint_32)r->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < r->h; y++) png_write_row(png, r->px + (size_t)y * (size_t)r->w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}
#endif

int rt_exe_plot(const rt_exe_log *l, const char *path) {
#ifndef DEITC_HAVE_PNG
    (void)l;
    return rt_exe_error("--plot %s: this executable was built without libpng", path);
#else
    static const unsigned char blue[3] = {31, 119, 180}, orange[3] = {255, 127, 14}, green[3] = {44, 160, 44};
    int panels = l->neval ? 2 : 1;
    raster r = {calloc((size_t)PW * PH * (size_t)panels * 3, 1), PW, PH * panels};
    if (!r.px) abort();
    memset(r.px, 255, (size_t)PW * PH * (size_t)panels * 3);
    long x0 = l->ntrain ? l->train[0].step : 0, x1 = l->ntrain ? l->train[l->ntrain - 1].step : 1;
    double lo = INFINITY, hi = -INFINITY;
    for (long i = 0; i < l->ntrain; i++)
        if (isfinite(l->train[i].loss)) lo = fmin(lo, l->train[i].loss), hi = fmax(hi, l->train[i].loss);
    for (long i = 0; i < l->neval; i++)
        if (isfinite(l->eval[i].loss)) lo = fmin(lo, l->eval[i].loss), hi = fmax(hi, l->eval[i].loss);
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-12) hi = lo + 1;
    lo = lo > 0 && lo < 0.1 * hi ? 0 : lo; /* from 0 when the loss spans most of the way down */
    panel(&r, 0, x0, x1, lo, hi, l->train, l->ntrain, 0, blue);
    panel(&r, 0, x0, x1, lo, hi, l->eval, l->neval, 0, orange);
    if (l->neval) panel(&r, PH, x0, x1, 0, 100, l->eval, l->neval, 1, green);
    /* the PNG, written next to path and renamed over it: never a half-written file */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.plot", path);
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f) rc = rt_exe_error("--plot %s: cannot open for writing: %s", path, strerror(errno));
    if (f && write_png(f, &r)) rc = rt_exe_error("--plot %s: libpng failed writing it", path);
    if (f && (fclose(f) || rc)) {
        if (!rc) rc = rt_exe_error("--plot %s: write failed", path);
        remove(tmp);
    } else if (f && rename(tmp, path)) {
        rc = rt_exe_error("--plot %s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        remove(tmp);
    }
    if (!rc)
        printf("plot: %s: loss %.4g..%.4g over steps %ld..%ld (train blue, validation orange)%s\n", rt_exe_shown(path), lo,
               hi, x0, x1, l->neval ? "; below: validation top-1 0..100% (green)" : "");
    free(r.px);
    return rc;
#endif
}
