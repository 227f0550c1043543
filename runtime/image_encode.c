/* image_encode.c: JPEG encoding (libjpeg-turbo) of 8-bit RGB images, for `pack --jpeg-quality`
 * (pack.c re-encodes samples at a capped side) and for the generated images of the tests and
 * benchmarks/dataload. Baseline, 4:2:0, into a malloc'ed buffer.
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
