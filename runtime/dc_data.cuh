/* dc_data.cuh: the data kernels' device functions (device library; dc_base.cuh, dc_convert.cuh).
 * Every training plan with an "images" input carries a kernel `dc_data_normalize` (codegen/emit.c:
 * cg_add_data_kernels) that the runtime launches itself, outside the plan's steps, between two
 * training steps (runtime/exe_stage.c): the batch arrives as uint8 (a quarter of the bytes of
 * f32) and is normalized on the device into the images tensor's dtype.
 *
 *   dc_data_normalize_at(src, params, dst, i, channels, plane)
 *       dst[i] = (src[i] / 255 - mean[c]) / std[c], c = (i / plane) % channels (the last of
 *       three for more), params = {mean[3], std[3]}: the same float operations, in the same
 *       order, as the host's rt_dataset_image (data.c), so the values are the same bits (IEEE
 *       division: NVRTC's default --prec-div=true), then rounded to nearest even into f16/bf16
 *       as the host's rt_float_to_half/bf16 do.
 *   dc_data_crop_u8(src, meta, size, i) -> element i of the (3, size, size) crop of one raw
 *       RGB sample (HWC uint8 at src + meta[0], meta = {offset, w, h, box x, y, w, h, flip}):
 *       RandomResizedCrop's resize of the box with PIL's BICUBIC (antialiased: the filter
 *       widens with the downscale; Pillow's fixed-point coefficients, horizontal pass rounded
 *       to uint8, then vertical) and the horizontal flip: transform.c's resample_rect for a
 *       full-size image, one output element per thread (the taps of its row and column are
 *       computed on the fly). Same bits as the host on emu; on a GPU the coefficients' double
 *       math may contract into FMAs, which can move a value by 1 (of 255).
 *   dc_data_crop_at(src, meta, params, dst, i, size): that, normalized as above, into dst[i]
 *       of a batch ((i / (3 size^2))-th image's meta at meta + 8 * image).
 */
#ifndef DEITC_DC_DATA_CUH
#define DEITC_DC_DATA_CUH

#include "dc_base.cuh"
#include "dc_convert.cuh"

DC_DEV void dc_data_store(float *p, float v) { *p = v; }
DC_DEV void dc_data_store(dc_half *p, float v) { *p = dc_f2h(v); }
DC_DEV void dc_data_store(dc_bf16 *p, float v) { *p = dc_f2b(v); }

template <typename T>
DC_DEV void dc_data_normalize_at(const unsigned char *src, const float *params, T *dst, long long i, int channels,
                                 long long plane) {
    int c = (int)((i / plane) % channels);
    if (c > 2) c = 2;
    dc_data_store(dst + i, ((float)src[i] / 255.0f - params[c]) / params[3 + c]);
}

/* Pillow's bicubic (a = -0.5) */
DC_DEV double dc_data_bicubic(double x) {
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

#define DC_DATA_FRAC 22 /* Pillow's COEF_FRAC_BITS for 8 bits a channel */

/* Output sample o of in_size inputs resized to out_size: its first input *first, its taps
 * *n; coefficient j of them is dc_data_tap(.., j) (Pillow's precompute + normalize_coeffs_8bpc). */
struct dc_data_taps {
    double center, support, ss, ww;
    int first, n;
};
DC_DEV dc_data_taps dc_data_taps_of(int in_size, int out_size, int o) {
    dc_data_taps t;
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    t.support = 2.0 * filterscale;
    int ksize = (int)ceil(t.support) * 2 + 1;
    t.center = (o + 0.5) * scale;
    t.ss = 1.0 / filterscale;
    int xmin = (int)(t.center - t.support + 0.5), xmax = (int)(t.center + t.support + 0.5);
    if (xmin < 0) xmin = 0;
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    if (xmax > ksize) xmax = ksize;
    t.first = xmin;
    t.n = xmax < 0 ? 0 : xmax;
    t.ww = 0.0;
    for (int x = 0; x < t.n; x++) t.ww += dc_data_bicubic((x + xmin - t.center + 0.5) * t.ss);
    return t;
}
DC_DEV int dc_data_tap(const dc_data_taps &t, int j) {
    double w = dc_data_bicubic((j + t.first - t.center + 0.5) * t.ss);
    double v = t.ww != 0.0 ? w / t.ww : w;
    return v < 0 ? (int)(-0.5 + v * (1 << DC_DATA_FRAC)) : (int)(0.5 + v * (1 << DC_DATA_FRAC));
}
DC_DEV unsigned char dc_data_clip8(int v) {
    if (v >= (1 << DC_DATA_FRAC << 8)) return 255;
    if (v <= 0) return 0;
    return (unsigned char)(v >> DC_DATA_FRAC);
}

DC_DEV unsigned char dc_data_crop_u8(const unsigned char *src, const long long *meta, int size, long long i) {
    int c = (int)(i / ((long long)size * size)), oy = (int)(i / size % size), ox = (int)(i % size);
    const unsigned char *img = src + meta[0];
    int w = (int)meta[1], h = (int)meta[2], bx = (int)meta[3], by = (int)meta[4], bw = (int)meta[5], bh = (int)meta[6];
    if (meta[7]) ox = size - 1 - ox;
    dc_data_taps tx = dc_data_taps_of(bw, size, ox), ty = dc_data_taps_of(bh, size, oy);
    int acc = 1 << (DC_DATA_FRAC - 1);
    for (int j = 0; j < ty.n; j++) {
        int sy = by + ty.first + j;
        if (sy >= h) sy = h - 1;
        const unsigned char *row = img + ((long long)sy * w + bx) * 3 + c;
        int hs = 1 << (DC_DATA_FRAC - 1);
        for (int k = 0; k < tx.n; k++) hs += row[3 * (tx.first + k)] * dc_data_tap(tx, k);
        acc += dc_data_clip8(hs) * dc_data_tap(ty, j);
    }
    return dc_data_clip8(acc);
}

template <typename T>
DC_DEV void dc_data_crop_at(const unsigned char *src, const long long *meta, const float *params, T *dst, long long i,
                            int size) {
    long long per = 3LL * size * size;
    int c = (int)(i % per / ((long long)size * size));
    unsigned v = dc_data_crop_u8(src, meta + 8 * (i / per), size, i % per);
    dc_data_store(dst + i, ((float)v / 255.0f - params[c]) / params[3 + c]);
}

#endif /* DEITC_DC_DATA_CUH */
