/* image_folder.c: ImageFolder datasets for `EXE train|eval --data DIR` (torchvision semantics).
 * Each immediate subdirectory of DIR is a class; classes sorted by name (byte order), label =
 * index. In a class, files ending in .jpg/.jpeg/.png (any case) sorted by name; hidden entries
 * and other files are ignored. Images are decoded (libjpeg-turbo, libpng) by one worker thread
 * per core (DEITC_DECODE_THREADS) at load time and kept as uint8 [N,3,H,W]; exe.c normalizes
 * when it gathers a batch. What the decoders hold at once is bounded by one budget they share
 * (mem_budget; DEITC_DECODE_MEMORY MiB), not only by the per-image pixel limit.
 *
 * Transform (timm's eval transform, deterministic, crop_pct 0.875):
 *   1. to 8-bit RGB: grayscale replicated, alpha dropped, palette expanded, 16-bit PNG samples
 *      reduced to their high byte (what PIL does for 16-bit RGB; PIL clips 16-bit grayscale
 *      instead, we take the high byte there too). CMYK/YCCK JPEGs are refused.
 *   2. resize so the shorter side is S = floor(img_size / 0.875), the longer one
 *      int(S * long / short) (torchvision's Resize(int)), with PIL's BILINEAR filter: separable
 *      triangle filter whose support grows with the downscale factor (antialiased), horizontal
 *      pass then vertical pass, 22-bit fixed-point coefficients, rounded to uint8 after each
 *      pass: the very arithmetic of Pillow's Resample.c, so results match PIL bit for bit.
 *   3. center crop img_size x img_size (torchvision: offset round((size - crop) / 2), ties to even).
 *   4. (at batch time) x / 255, then (x - mean) / std with ImageNet's mean and std.
 * Only the output pixels the crop keeps are computed (each is independent of the others).
 * Corrupt or truncated files are errors: libjpeg's warnings ("Premature end of JPEG file") and
 * libpng's errors longjmp out and name the file.
 */
#include "runtime/rt.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef DEITC_HAVE_JPEG
#include <jpeglib.h>
#endif
#ifdef DEITC_HAVE_PNG
#include <png.h>
#endif

#define RT_IMG_MAX_SIDE 16384
#define RT_IMG_MAX_PIXELS (1ll << 26)
#define RT_IMG_MEM_CAP (32ll << 30)

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

/* ---- listing ------------------------------------------------------------------------------ */

typedef struct {
    char **names;
    size_t count, cap;
} name_list;

static void names_free(name_list *l) {
    for (size_t i = 0; i < l->count; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static int names_add(name_list *l, const char *s) {
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **n = realloc(l->names, cap * sizeof *n);
        if (!n) return -1;
        l->names = n;
        l->cap = cap;
    }
    if (!(l->names[l->count] = strdup(s))) return -1;
    l->count++;
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

static int is_image_name(const char *name) {
    size_t n = strlen(name);
    return (n > 4 && (!strcasecmp(name + n - 4, ".jpg") || !strcasecmp(name + n - 4, ".png"))) ||
           (n > 5 && !strcasecmp(name + n - 5, ".jpeg"));
}

/* Names in dir (sorted), hidden ones skipped: want_dirs 1 -> subdirectories (other entries
 * ignored), 0 -> image files. An entry that cannot be stat'ed (a dangling symbolic link, a
 * loop, no permission) is an error naming it, since it may be a class or an image the dataset
 * would silently lack; so is an image name that is not a regular file (a FIFO, a folder). */
static int list_dir(const char *dir, int want_dirs, name_list *out, char *err, size_t errsize) {
    DIR *d = opendir(dir);
    if (!d) return rt_errorf(err, errsize, "%s: cannot open the folder: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    for (;;) {
        errno = 0;
        if (rc || (e = readdir(d)) == NULL) break;
        if (e->d_name[0] == '.') continue;
        if (!want_dirs && !is_image_name(e->d_name)) continue;
        char *full = join(dir, e->d_name);
        struct stat st, lst;
        if (!full) {
            rc = rt_errorf(err, errsize, "%s: out of memory", dir);
        } else if (stat(full, &st) != 0) {
            int why = errno;
            int link = lstat(full, &lst) == 0 && S_ISLNK(lst.st_mode);
            rc = rt_errorf(err, errsize, "%s: cannot read this %s: %s%s", full,
                           want_dirs ? "entry of the dataset folder" : "image", strerror(why),
                           link ? " (a symbolic link whose target cannot be reached)" : "");
        } else if (!want_dirs && !S_ISREG(st.st_mode)) {
            rc = rt_errorf(err, errsize, "%s: not a regular file (it is %s)", full, rt_file_kind(st.st_mode));
        } else if ((!want_dirs || S_ISDIR(st.st_mode)) && names_add(out, e->d_name)) {
            rc = rt_errorf(err, errsize, "%s: out of memory", dir);
        }
        free(full);
    }
    if (!rc && errno) rc = rt_errorf(err, errsize, "%s: cannot read the folder: %s", dir, strerror(errno));
    closedir(d);
    if (!rc && out->count) qsort(out->names, out->count, sizeof *out->names, cmp_names);
    return rc;
}

/* ---- decoding ----------------------------------------------------------------------------- */

typedef rt_rgb_image rgb_image; /* 8-bit RGB, rows of 3*w bytes (rt.h) */

/* The memory the decoder threads share (a 205 KB PNG of 16384x4096 decodes to 192 MB, and
 * there is a thread per core). An image reserves its file's bytes before reading it and, once
 * its header gives the size, what decoding it allocates (pixels, row pointers, the resize's
 * rows) before allocating that. A first reservation waits (first come, first served) until it
 * fits or nothing else is held, so one image larger than the budget still decodes, alone; a
 * thread already holding one only tries to add, and on failure gives everything back and
 * waits for the whole amount (no thread ever waits while holding: no deadlock). */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    int64_t budget, used, peak; /* bytes */
    uint64_t next_ticket, serving;
} mem_budget;

static void budget_acquire(mem_budget *b, int64_t n) {
    pthread_mutex_lock(&b->lock);
    uint64_t me = b->next_ticket++;
    while (me != b->serving || (b->used > 0 && b->used + n > b->budget)) pthread_cond_wait(&b->freed, &b->lock);
    b->serving++;
    b->used += n;
    if (b->used > b->peak) b->peak = b->used;
    pthread_cond_broadcast(&b->freed);
    pthread_mutex_unlock(&b->lock);
}

/* Adds n to a reservation of `held` bytes if it fits, or if this is the only one. */
static int budget_try_add(mem_budget *b, int64_t held, int64_t n) {
    pthread_mutex_lock(&b->lock);
    int ok = b->used + n <= b->budget || b->used == held;
    if (ok) {
        b->used += n;
        if (b->used > b->peak) b->peak = b->used;
    }
    pthread_mutex_unlock(&b->lock);
    return ok;
}

static void budget_release(mem_budget *b, int64_t n) {
    pthread_mutex_lock(&b->lock);
    b->used -= n;
    pthread_cond_broadcast(&b->freed);
    pthread_mutex_unlock(&b->lock);
}

/* One image's reservation while it decodes. */
typedef struct {
    mem_budget *b;
    int64_t held;   /* bytes reserved */
    int64_t file;   /* of which the file's */
    int64_t need;   /* decoding needs this many more than the file (0 until the header is read) */
    int crop;
} decode_mem;

#define DECODE_RETRY (-2) /* the reservation did not fit: release, wait for all of it, decode again */

/* Reserves what decoding a w x h image allocates, once its header is read: the RGB pixels, a
 * row pointer each (PNG), the resize's rows, and `extra` (the decoder's own: a progressive
 * JPEG's coefficients). */
static int decode_reserve(decode_mem *m, int64_t w, int64_t h, int64_t extra) {
    m->need = 3 * w * h + (int64_t)sizeof(void *) * h + 3 * h * m->crop + extra;
    if (m->held >= m->file + m->need) return 0;
    if (!budget_try_add(m->b, m->held, m->file + m->need - m->held)) return DECODE_RETRY;
    m->held = m->file + m->need;
    return 0;
}

static int check_dims(const char *path, long long w, long long h, char *err, size_t errsize) {
    if (w <= 0 || h <= 0 || w > RT_IMG_MAX_SIDE || h > RT_IMG_MAX_SIDE || w * h > RT_IMG_MAX_PIXELS)
        return rt_errorf(err, errsize,
                         "%s: image of %lldx%lld pixels refused (at most %d per side and %lld pixels in all)", path,
                         w, h, RT_IMG_MAX_SIDE, RT_IMG_MAX_PIXELS);
    return 0;
}

#ifdef DEITC_HAVE_JPEG
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings (level -1: "Premature end of JPEG file", corrupt data) are errors here; trace
 * messages (level >= 0) are ignored. */
static void jpeg_message(j_common_ptr cinfo, int level) {
    if (level < 0) jpeg_fail(cinfo);
}

static int decode_jpeg(const char *path, const unsigned char *buf, size_t size, decode_mem *mem,
                       const rt_decode_shrink *shrink, rgb_image *img, char *err, size_t errsize) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err jerr;
    unsigned char *volatile pix = NULL;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_fail;
    jerr.pub.emit_message = jpeg_message;
    jerr.msg[0] = 0;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        return rt_errorf(err, errsize, "%s: corrupt or truncated JPEG (libjpeg: %s)", path, jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        return rt_errorf(err, errsize, "%s: CMYK JPEG images are not supported (convert it to RGB)", path);
    }
    if (check_dims(path, cinfo.image_width, cinfo.image_height, err, errsize)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    int64_t jw = cinfo.image_width, jh = cinfo.image_height; /* coefficients: 2 bytes a sample */
    cinfo.out_color_space = JCS_RGB; /* grayscale is replicated, YCbCr converted */
    int eighths = shrink && shrink->pick ? shrink->pick(shrink->ctx, (int)jw, (int)jh) : 8;
    if (eighths >= 1 && eighths < 8) { /* DCT-domain scaling: decode at eighths/8 of the size */
        cinfo.scale_num = (unsigned)eighths;
        cinfo.scale_denom = 8;
        jpeg_calc_output_dimensions(&cinfo);
    }
    if (decode_reserve(mem, eighths >= 1 && eighths < 8 ? (int64_t)cinfo.output_width : jw,
                       eighths >= 1 && eighths < 8 ? (int64_t)cinfo.output_height : jh,
                       cinfo.progressive_mode ? 2 * jw * jh * cinfo.num_components : 0)) {
        jpeg_destroy_decompress(&cinfo);
        return DECODE_RETRY;
    }
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3) {
        jpeg_destroy_decompress(&cinfo);
        return rt_errorf(err, errsize, "%s: JPEG decodes to %d components, not RGB", path, cinfo.output_components);
    }
    size_t stride = (size_t)cinfo.output_width * 3;
    pix = malloc(stride * cinfo.output_height);
    if (!pix) {
        jpeg_destroy_decompress(&cinfo);
        return rt_errorf(err, errsize, "%s: out of memory", path);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pix + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    img->w = (int)cinfo.output_width;
    img->h = (int)cinfo.output_height;
    img->full_w = (int)jw;
    img->full_h = (int)jh;
    img->rgb = pix;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}
#endif

#ifdef DEITC_HAVE_PNG
typedef struct {
    const unsigned char *buf;
    size_t size, pos;
    jmp_buf jump;
    char msg[256];
} png_source;

static void png_fail(png_structp png, png_const_charp msg) {
    png_source *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    longjmp(s->jump, 1);
}

static void png_warn(png_structp png, png_const_charp msg) { /* ancillary-chunk trouble: harmless */
    (void)png;
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
    png_source *s = png_get_io_ptr(png);
    if (n > s->size - s->pos) png_error(png, "unexpected end of file (truncated)");
    memcpy(out, s->buf + s->pos, n);
    s->pos += n;
}

static int decode_png(const char *path, const unsigned char *buf, size_t size, decode_mem *mem, rgb_image *img,
                      char *err, size_t errsize) {
    png_source src = {.buf = buf, .size = size, .pos = 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_fail, png_warn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return rt_errorf(err, errsize, "%s: out of memory", path);
    }
    if (setjmp(src.jump)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(rows);
        return rt_errorf(err, errsize, "%s: corrupt or truncated PNG (libpng: %s)", path, src.msg);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_set_user_limits(png, RT_IMG_MAX_SIDE, RT_IMG_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (check_dims(path, w, h, err, errsize)) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    if (decode_reserve(mem, w, h, 0)) {
        png_destroy_read_struct(&png, &info, NULL);
        return DECODE_RETRY;
    }
    int type = png_get_color_type(png, info);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
    png_set_strip_16(png); /* high byte, as PIL does */
    /* alpha dropped, also the one palette_to_rgb makes of a tRNS chunk (PIL ignores it too) */
    if ((type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    if (!(type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t stride = png_get_rowbytes(png, info);
    if (stride != (size_t)w * 3)
        png_error(png, "unexpected row layout after conversion to 8-bit RGB");
    pix = malloc(stride * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pix || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pix + stride * y;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    img->rgb = pix;
    img->w = img->full_w = (int)w;
    img->h = img->full_h = (int)h;
    return 0;
}
#endif

/* Reads the (regular: a FIFO is refused, not waited on) file into *buf, reserving its bytes
 * first; *size is the size fstat gave. */
static int read_file(const char *path, decode_mem *mem, unsigned char **buf, size_t *size, char *err,
                     size_t errsize) {
    int64_t n;
    int fd = rt_input_open(path, 0, &n, err, errsize);
    if (fd < 0) return -1;
    if (n == 0) {
        close(fd);
        return rt_errorf(err, errsize, "%s: empty file (0 bytes)", path);
    }
    if (!mem->held) {
        budget_acquire(mem->b, n);
        mem->held = mem->file = n;
    } else if (n != mem->file) { /* a second read, after DECODE_RETRY */
        close(fd);
        return rt_errorf(err, errsize, "%s: changed while being read", path);
    }
    *size = (size_t)n;
    *buf = malloc(*size);
    int rc = *buf ? rt_input_pread(fd, path, *buf, *size, 0, err, errsize)
                  : rt_errorf(err, errsize, "%s: out of memory (%zu bytes)", path, *size);
    close(fd);
    if (rc) {
        free(*buf);
        *buf = NULL;
    }
    return rc;
}

/* Decodes by content (the magic bytes), whatever the extension says, within the budget: the
 * caller releases mem->held when done with img. */
static int decode_file(const char *path, decode_mem *mem, const rt_decode_shrink *shrink, rgb_image *img, char *err,
                       size_t errsize) {
    (void)shrink; /* JPEG only */
#if !defined(DEITC_HAVE_JPEG) && !defined(DEITC_HAVE_PNG)
    (void)img;
    (void)check_dims;
    (void)decode_reserve;
#endif
    for (int attempt = 0;; attempt++) {
        unsigned char *buf = NULL;
        size_t size = 0;
        if (read_file(path, mem, &buf, &size, err, errsize)) return -1;
        int rc;
        static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        if (size >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff) {
#ifdef DEITC_HAVE_JPEG
            rc = decode_jpeg(path, buf, size, mem, shrink, img, err, errsize);
#else
            rc = rt_errorf(err, errsize, "%s: this executable was built without JPEG support", path);
#endif
        } else if (size >= 8 && memcmp(buf, png_magic, 8) == 0) {
#ifdef DEITC_HAVE_PNG
            rc = decode_png(path, buf, size, mem, img, err, errsize);
#else
            rc = rt_errorf(err, errsize, "%s: this executable was built without PNG support", path);
#endif
        } else {
            rc = rt_errorf(err, errsize, "%s: not a JPEG or PNG file (unrecognized first bytes)", path);
        }
        free(buf);
        if (rc != DECODE_RETRY) return rc;
        if (attempt) /* cannot happen: the second time the whole amount is held */
            return rt_errorf(err, errsize, "%s: decoded to another size the second time", path);
        int64_t whole = mem->file + mem->need;
        budget_release(mem->b, mem->held);
        budget_acquire(mem->b, whole);
        mem->held = whole;
    }
}

/* ---- timm's eval transform: PIL's bilinear resize, restricted to the crop ---------------- */

static int round_half_even_half(int d) { /* Python's round(d / 2.0) for d >= 0 */
    return (int)rint((double)d / 2.0);
}

/* Resizes img (shorter side -> scale_size) and writes the center crop (crop x crop) as CHW
 * uint8 to out (transform.c's PIL resampling, only the crop's outputs computed). -1 only when
 * out of memory. */
static int resize_crop(const rgb_image *img, int scale_size, int crop, unsigned char *out) {
    int iw = img->w, ih = img->h, ow, oh;
    if (iw <= ih) {
        ow = scale_size;
        oh = (int)((double)scale_size * ih / iw);
    } else {
        oh = scale_size;
        ow = (int)((double)scale_size * iw / ih);
    }
    rt_resample r = {0, 0, iw, ih, {0, 0, iw, ih}, ow, oh, round_half_even_half(ow - crop),
                     round_half_even_half(oh - crop), crop, crop, 0, 0, 1};
    return rt_resample_box(img, &r, out);
}

/* ---- parallel load ------------------------------------------------------------------------ */

typedef struct {
    char **paths;            /* n files */
    int64_t n;
    int scale_size, crop;
    unsigned char *out;      /* n x 3 x crop x crop */
    pthread_mutex_t lock;
    int64_t next;            /* next index to claim */
    int64_t failed_at;       /* lowest failing index so far, or n */
    mem_budget mem;          /* what decoding may hold at once, all threads together */
    char err[1200];
} load_job;

static void *load_worker(void *arg) {
    load_job *j = arg;
    char err[1200];
    for (;;) {
        pthread_mutex_lock(&j->lock);
        int64_t i = j->failed_at < j->n || j->next >= j->n ? -1 : j->next++;
        pthread_mutex_unlock(&j->lock);
        if (i < 0) break;
        rgb_image img = {0};
        decode_mem mem = {&j->mem, 0, 0, 0, j->crop};
        int rc = decode_file(j->paths[i], &mem, NULL, &img, err, sizeof err);
        if (!rc && resize_crop(&img, j->scale_size, j->crop, j->out + (size_t)i * 3 * j->crop * j->crop)) {
            rc = -1;
            snprintf(err, sizeof err, "%s: out of memory while resizing", j->paths[i]);
        }
        free(img.rgb);
        if (mem.held) budget_release(&j->mem, mem.held);
        if (rc) {
            pthread_mutex_lock(&j->lock);
            if (i < j->failed_at) { /* the lowest index wins: the same message on every run */
                j->failed_at = i;
                snprintf(j->err, sizeof j->err, "%s", err);
            }
            pthread_mutex_unlock(&j->lock);
        }
    }
    return NULL;
}

static long long available_memory(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    long long kb = -1;
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
        fclose(f);
    }
    if (kb >= 0) return kb * 1024;
    long pages = sysconf(_SC_AVPHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    return pages > 0 && psize > 0 ? (long long)pages * psize : RT_IMG_MEM_CAP;
}

/* A positive count from the environment, else 0. */
static long env_count(const char *name) {
    const char *v = getenv(name);
    char *end;
    long n = v && *v ? strtol(v, &end, 10) : 0;
    return v && *v && !*end && n > 0 ? n : 0;
}

/* The decoders' shared budget: DEITC_DECODE_MEMORY (MiB) if set, else a quarter of the memory
 * left once the dataset itself is held, within [256 MiB, 2 GiB]. */
static int64_t decode_budget(long long left) {
    long mib = env_count("DEITC_DECODE_MEMORY");
    if (mib) return (int64_t)(mib < (1l << 30) ? mib : 1l << 30) << 20;
    long long b = left / 4;
    return b < (256ll << 20) ? 256ll << 20 : b > (2ll << 30) ? 2ll << 30 : b;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void rt_image_list_free(rt_image_list *l) {
    for (int64_t i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    free(l->labels);
    for (int64_t k = 0; k < l->classes; k++) free(l->class_names[k]);
    free(l->class_names);
    memset(l, 0, sizeof *l);
}

int rt_image_folder_list(const char *dir, const rt_plan *p, rt_image_list *l, char *err, size_t errsize) {
    memset(l, 0, sizeof *l);
#if !defined(DEITC_HAVE_JPEG) && !defined(DEITC_HAVE_PNG)
    return rt_errorf(err, errsize, "%s: ImageFolder directory: this executable was built without JPEG/PNG support",
                     dir);
#endif
    int64_t chw[3];
    rt_plan_image_shape(p, chw);
    int64_t c = chw[0], h = chw[1], w = chw[2];
    if (c != 3)
        return rt_errorf(err, errsize,
                         "%s: an ImageFolder directory gives 3-channel RGB images but the model takes %lld channels "
                         "(in_chans)",
                         dir, (long long)c);
    if (h != w || h < 1 || h > 4096)
        return rt_errorf(err, errsize, "%s: ImageFolder datasets need a square image size, not %lldx%lld", dir,
                         (long long)h, (long long)w);
    l->crop = (int)h;
    memcpy(l->mean, imagenet_mean, sizeof l->mean);
    memcpy(l->std, imagenet_std, sizeof l->std);
    name_list classes = {0}, files = {0};
    int64_t cap = 0;
    int rc = -1;
    if (list_dir(dir, 1, &classes, err, errsize)) goto done;
    if (classes.count == 0) {
        rt_errorf(err, errsize, "%s: no class subfolders (an ImageFolder directory holds one folder of images a class)",
                  dir);
        goto done;
    }
    if ((int64_t)classes.count > p->num_classes) {
        rt_errorf(err, errsize, "%s: %zu class folders but the model has %lld classes (num_classes)", dir,
                  classes.count, (long long)p->num_classes);
        goto done;
    }
    for (size_t k = 0; k < classes.count; k++) {
        char *cdir = join(dir, classes.names[k]);
        if (!cdir) {
            rt_errorf(err, errsize, "%s: out of memory", dir);
            goto done;
        }
        names_free(&files);
        int lrc = list_dir(cdir, 0, &files, err, errsize);
        if (!lrc && files.count == 0)
            lrc = rt_errorf(err, errsize, "%s: class '%s' has no images (.jpg, .jpeg or .png files)", cdir,
                            classes.names[k]);
        for (size_t i = 0; !lrc && i < files.count; i++) {
            if (l->n == cap) {
                cap = cap ? 2 * cap : 64;
                char **np = realloc(l->paths, sizeof(char *) * (size_t)cap);
                int64_t *nl = realloc(l->labels, sizeof(int64_t) * (size_t)cap);
                if (np) l->paths = np;
                if (nl) l->labels = nl;
                if (!np || !nl) {
                    lrc = rt_errorf(err, errsize, "%s: out of memory", dir);
                    break;
                }
            }
            if (!(l->paths[l->n] = join(cdir, files.names[i]))) {
                lrc = rt_errorf(err, errsize, "%s: out of memory", dir);
                break;
            }
            l->labels[l->n++] = (int64_t)k;
        }
        free(cdir);
        if (lrc) goto done;
    }
    l->class_names = classes.names; /* taken over */
    l->classes = (int64_t)classes.count;
    classes.names = NULL;
    classes.count = 0;
    rc = 0;
done:
    names_free(&classes);
    names_free(&files);
    if (rc) rt_image_list_free(l);
    return rc;
}

/* The streaming loader's decoders share one budget, as the start-up load's do. */
static mem_budget stream_budget = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0};
static pthread_once_t stream_budget_once = PTHREAD_ONCE_INIT;

static void stream_budget_init(void) {
    stream_budget.budget = decode_budget(available_memory());
}

int rt_image_decode(const char *path, const rt_decode_shrink *shrink, rt_rgb_image *img, char *err, size_t errsize) {
    pthread_once(&stream_budget_once, stream_budget_init);
    memset(img, 0, sizeof *img);
    decode_mem mem = {&stream_budget, 0, 0, 0, 0};
    int rc = decode_file(path, &mem, shrink, img, err, errsize);
    if (mem.held) budget_release(&stream_budget, mem.held);
    if (rc) {
        free(img->rgb);
        img->rgb = NULL;
    }
    return rc ? -1 : 0;
}

int rt_image_decode_mem(const char *name, const unsigned char *buf, size_t size, const rt_decode_shrink *shrink,
                        rt_rgb_image *img, char *err, size_t errsize) {
    pthread_once(&stream_budget_once, stream_budget_init);
    memset(img, 0, sizeof *img);
    decode_mem mem = {&stream_budget, 0, 0, 0, 0};
    static const unsigned char png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int rc;
    (void)shrink;
    for (int attempt = 0;; attempt++) {
        if (!mem.held) {
            budget_acquire(&stream_budget, (int64_t)size);
            mem.held = mem.file = (int64_t)size;
        }
        if (size >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff) {
#ifdef DEITC_HAVE_JPEG
            rc = decode_jpeg(name, buf, size, &mem, shrink, img, err, errsize);
#else
            rc = rt_errorf(err, errsize, "%s: this executable was built without JPEG support", name);
#endif
        } else if (size >= 8 && memcmp(buf, png_magic, 8) == 0) {
#ifdef DEITC_HAVE_PNG
            rc = decode_png(name, buf, size, &mem, img, err, errsize);
#else
            rc = rt_errorf(err, errsize, "%s: this executable was built without PNG support", name);
#endif
        } else {
            rc = rt_errorf(err, errsize, "%s: not a JPEG or PNG image (unrecognized first bytes)", name);
        }
        if (rc != DECODE_RETRY || attempt) break;
        int64_t whole = mem.file + mem.need;
        budget_release(&stream_budget, mem.held);
        budget_acquire(&stream_budget, whole);
        mem.held = whole;
    }
    budget_release(&stream_budget, mem.held);
    if (rc) {
        free(img->rgb);
        img->rgb = NULL;
        if (rc == DECODE_RETRY) rt_errorf(err, errsize, "%s: decoded to another size the second time", name);
    }
    return rc ? -1 : 0;
}

int rt_image_eval_crop(const rt_rgb_image *img, int crop, unsigned char *out) {
    return resize_crop(img, (int)floor((double)crop / 0.875), crop, out);
}

int rt_image_folder_load(const char *dir, const rt_plan *p, rt_dataset *ds, char *err, size_t errsize) {
    memset(ds, 0, sizeof *ds);
    rt_image_list list;
    double t0 = now_s();
    if (rt_image_folder_list(dir, p, &list, err, errsize)) return -1;
    int crop = list.crop, scale_size = (int)floor((double)crop / 0.875);
    load_job job;
    memset(&job, 0, sizeof job);
    job.paths = list.paths;
    job.n = list.n;
    int rc = -1;
    long long bytes = (long long)job.n * 3 * crop * crop, avail = available_memory();
    if (bytes > RT_IMG_MEM_CAP || bytes > avail) {
        rt_errorf(err, errsize,
                  "%s: %lld images of 3x%dx%d need %.2f GiB as uint8, more than %s (%.2f GiB): use a smaller dataset",
                  dir, (long long)job.n, crop, crop, (double)bytes / (1 << 30),
                  bytes > RT_IMG_MEM_CAP ? "the 32 GiB cap" : "the memory available", 
                  (double)(bytes > RT_IMG_MEM_CAP ? RT_IMG_MEM_CAP : avail) / (1 << 30));
        goto done;
    }
    job.out = malloc((size_t)bytes);
    if (!job.out) {
        rt_errorf(err, errsize, "%s: out of memory (%lld bytes of images)", dir, bytes);
        goto done;
    }
    job.scale_size = scale_size;
    job.crop = crop;
    job.failed_at = job.n;
    pthread_mutex_init(&job.lock, NULL);
    pthread_mutex_init(&job.mem.lock, NULL);
    pthread_cond_init(&job.mem.freed, NULL);
    job.mem.budget = decode_budget(avail - bytes);
    long ncpu = env_count("DEITC_DECODE_THREADS");
    if (ncpu <= 0) ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nthreads = (int)(ncpu < 1 ? 1 : ncpu > 256 ? 256 : ncpu);
    if (nthreads > job.n) nthreads = (int)job.n;
    pthread_t threads[256];
    int started = 0;
    for (int i = 1; i < nthreads; i++) { /* this thread is worker 0 */
        if (pthread_create(&threads[started], NULL, load_worker, &job) != 0) break;
        started++;
    }
    load_worker(&job);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&job.lock);
    pthread_mutex_destroy(&job.mem.lock);
    pthread_cond_destroy(&job.mem.freed);
    if (getenv("DEITC_DECODE_REPORT")) /* for tests: what the decoders held at most */
        fprintf(stderr, "decode memory: peak %lld of a %lld-byte budget, %d threads\n", (long long)job.mem.peak,
                (long long)job.mem.budget, started + 1);
    if (job.failed_at < job.n) {
        rt_errorf(err, errsize, "%s", job.err);
        goto done;
    }
    ds->n = job.n;
    ds->c = 3;
    ds->h = ds->w = crop;
    ds->images_u8 = job.out;
    job.out = NULL;
    memcpy(ds->mean, imagenet_mean, sizeof ds->mean);
    memcpy(ds->std, imagenet_std, sizeof ds->std);
    ds->classes = list.classes;
    ds->labels = list.labels;
    list.labels = NULL;
    ds->load_s = now_s() - t0;
    rc = 0;
done:
    free(job.out);
    rt_image_list_free(&list);
    if (rc) rt_dataset_free(ds);
    return rc;
}
