/* image_encode.c: JPEG encoding (libjpeg-turbo) of 8-bit RGB images, for `pack --jpeg-quality`
 * (pack.c re-encodes samples at a capped side) and for the generated images of the tests and
 * benchmarks/dataload. Baseline, 4:2:0, into a malloc'ed buffer. Also PNG encoding (libpng,
 * 8-bit RGB) for the tests' generated ImageFolders.
 */
#include "runtime/rt.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DEITC_HAVE_JPEG
#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} encode_err;

static void encode_fail(j_common_ptr cinfo) {
    encode_err *e = (encode_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

int rt_jpeg_encode(const uint8_t *rgb, int w, int h, int quality, uint8_t **out, size_t *size, char *err,
                   size_t errsize) {
    struct jpeg_compress_struct cinfo;
    encode_err jerr;
    unsigned char *volatile buf = NULL;
    unsigned long n = 0;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = encode_fail;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buf);
        return rt_errorf(err, errsize, "JPEG encoding failed (libjpeg: %s)", jerr.msg);
    }
    jpeg_create_compress(&cinfo);
    unsigned char *mem = NULL;
    jpeg_mem_dest(&cinfo, &mem, &n);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * w * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    buf = mem;
    jpeg_destroy_compress(&cinfo);
    *out = buf;
    *size = n;
    return 0;
}
#else
int rt_jpeg_encode(const uint8_t *rgb, int w, int h, int quality, uint8_t **out, size_t *size, char *err,
                   size_t errsize) {
    (void)rgb, (void)w, (void)h, (void)quality, (void)out, (void)size;
    return rt_errorf(err, errsize, "this build has no JPEG support (libjpeg)");
}
#endif

#ifdef DEITC_HAVE_PNG
#include <png.h>

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} png_sink;

static void png_sink_write(png_structp png, png_bytep data, png_size_t n) {
    png_sink *k = png_get_io_ptr(png);
    if (k->len + n > k->cap) {
        size_t cap = k->cap ? k->cap : 4096;
        while (cap < k->len + n) cap *= 2;
        uint8_t *b = realloc(k->buf, cap);
        if (!b) png_error(png, "out of memory");
        k->buf = b, k->cap = cap;
    }
    memcpy(k->buf + k->len, data, n);
    k->len += n;
}

static void png_sink_flush(png_structp png) { (void)png; }

int rt_png_encode(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *size, char *err, size_t errsize) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_sink sink = {NULL, 0, 0};
    if (!png || !info) {
        if (png) png_destroy_write_struct(&png, NULL);
        return rt_errorf(err, errsize, "PNG encoding failed (libpng: out of memory)");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(sink.buf);
        return rt_errorf(err, errsize, "PNG encoding of a %dx%d image failed (libpng)", w, h);
    }
    png_set_write_fn(png, &sink, png_sink_write, png_sink_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)w * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = sink.buf;
    *size = sink.len;
    return 0;
}
#else
int rt_png_encode(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *size, char *err, size_t errsize) {
    (void)rgb, (void)w, (void)h, (void)out, (void)size;
    return rt_errorf(err, errsize, "this build has no PNG support (libpng)");
}
#endif
