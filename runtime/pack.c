/* pack.c: the packed dataset (.dpk): an ImageFolder converted once (`EXE pack DIR -o X.dpk`)
 * into one file the executables mmap: samples stored as JPEG (re-encoded) or raw uint8 RGB,
 * their shorter side capped at --max-side (PIL BILINEAR, the eval resize's own arithmetic: a
 * raw pack at max-side floor(size / 0.875) gives the eval transform's very pixels), in a
 * seeded shuffled order (so that windows of neighbouring samples mix the classes), and an
 * index. Layout (little-endian), version 1:
 *   header  32 bytes: "DEITCDPK", u32 version, u32 kind (1 JPEG, 2 raw), u64 n, u32 max_side,
 *           u32 classes
 *   samples each at an 8-aligned offset
 *   index   n entries of 48 bytes: u64 offset, u64 size, u64 label, u32 w, u32 h, u64 source
 *           (the image's place in the folder's sorted listing), u32 crc32 of the sample, u32 0;
 *           then per class: u32 length, the folder name's bytes
 *   trailer 32 bytes: u64 index offset, u64 index size, u32 crc32 of the index, u32 version,
 *           "DPKTAIL\0"
 * Written through rt_output (a temporary renamed at the end: an interrupted pack leaves no
 * file). Read: every offset and size is checked against the file's real size before use, the
 * index's checksum at open, each sample's when it is read; errors name the sample and offset.
 */
#include "runtime/rt.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define DPK_VERSION 1u
#define DPK_HEADER 32
#define DPK_ENTRY 48
#define DPK_TRAILER 32
#define DPK_MAX_SIDE 16384

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* ---- reading ------------------------------------------------------------------------------ */

int rt_dpk_open(const char *path, rt_dpk *d, char *err, size_t errsize) {
    memset(d, 0, sizeof *d);
    d->path = path;
    int64_t size = 0;
    int fd = rt_input_open(path, 0, &size, err, errsize);
    if (fd < 0) return -1;
    if (size < DPK_HEADER + DPK_TRAILER) {
        close(fd);
        return rt_errorf(err, errsize, "%s: %lld bytes: too short for a .dpk file (truncated?)", path, (long long)size);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return rt_errorf(err, errsize, "%s: cannot map the file: %s", path, strerror(errno));
    d->map = map;
    d->size = (uint64_t)size;
    const unsigned char *b = map, *t = b + size - DPK_TRAILER;
    int rc = -1;
    if (memcmp(b, "DEITCDPK", 8) != 0) {
        rt_errorf(err, errsize, "%s: not a .dpk file (no DEITCDPK magic at offset 0)", path);
        goto done;
    }
    uint32_t version = get_u32(b + 8);
    if (version != DPK_VERSION) {
        rt_errorf(err, errsize, "%s: .dpk version %u; this executable reads version %u (pack the folder again)", path,
                  version, DPK_VERSION);
        goto done;
    }
    d->kind = (int)get_u32(b + 12);
    d->n = get_u64(b + 16);
    d->max_side = (int)get_u32(b + 24);
    d->classes = get_u32(b + 28);
    if (d->kind != RT_DPK_JPEG && d->kind != RT_DPK_RAW) {
        rt_errorf(err, errsize, "%s: unknown sample kind %d at offset 12 (1 JPEG, 2 raw)", path, d->kind);
        goto done;
    }
    if (memcmp(t + 24, "DPKTAIL", 8) != 0 || get_u32(t + 20) != DPK_VERSION) {
        rt_errorf(err, errsize, "%s: no .dpk trailer at offset %llu: the file is truncated or was not finished", path,
                  (unsigned long long)(size - DPK_TRAILER));
        goto done;
    }
    uint64_t ioff = get_u64(t), isize = get_u64(t + 8), end = (uint64_t)size - DPK_TRAILER;
    if (ioff < DPK_HEADER || ioff > end || isize != end - ioff) {
        rt_errorf(err, errsize, "%s: bad index position (offset %llu, %llu bytes) in a file of %lld bytes", path,
                  (unsigned long long)ioff, (unsigned long long)isize, (long long)size);
        goto done;
    }
    if (d->n == 0 || d->n > isize / DPK_ENTRY || d->classes == 0 || d->classes > (isize - d->n * DPK_ENTRY) / 4) {
        rt_errorf(err, errsize, "%s: header counts (%llu samples, %llu classes) do not fit its %llu-byte index", path,
                  (unsigned long long)d->n, (unsigned long long)d->classes, (unsigned long long)isize);
        goto done;
    }
    if (rt_crc32(0, b + ioff, isize) != get_u32(t + 16)) {
        rt_errorf(err, errsize, "%s: the index (offset %llu) fails its checksum: the file is damaged", path,
                  (unsigned long long)ioff);
        goto done;
    }
    d->index = b + ioff;
    d->samples_end = ioff;
    d->labels = malloc(sizeof(int64_t) * d->n);
    d->class_names = calloc(d->classes, sizeof(char *));
    if (!d->labels || !d->class_names) {
        rt_errorf(err, errsize, "%s: out of memory", path);
        goto done;
    }
    const unsigned char *names = d->index + d->n * DPK_ENTRY, *names_end = b + end;
    for (uint64_t k = 0; k < d->classes; k++) {
        if ((uint64_t)(names_end - names) < 4 || get_u32(names) > (uint64_t)(names_end - names) - 4) {
            rt_errorf(err, errsize, "%s: class name %llu runs past the index's end", path, (unsigned long long)k);
            goto done;
        }
        uint32_t len = get_u32(names);
        if (!(d->class_names[k] = malloc(len + 1))) {
            rt_errorf(err, errsize, "%s: out of memory", path);
            goto done;
        }
        memcpy(d->class_names[k], names + 4, len);
        d->class_names[k][len] = 0;
        names += 4 + len;
    }
    for (uint64_t i = 0; i < d->n; i++) {
        const unsigned char *e = d->index + i * DPK_ENTRY;
        uint64_t off = get_u64(e), sz = get_u64(e + 8), label = get_u64(e + 16);
        uint32_t w = get_u32(e + 24), h = get_u32(e + 28);
        const char *bad = NULL;
        if (off < DPK_HEADER || off > ioff || sz > ioff - off || sz == 0) bad = "its bytes lie outside the samples";
        else if (label >= d->classes) bad = "its label is not one of the classes";
        else if (w < 1 || h < 1 || w > DPK_MAX_SIDE || h > DPK_MAX_SIDE) bad = "its size is out of range";
        else if (d->kind == RT_DPK_RAW && sz != (uint64_t)w * h * 3) bad = "its byte count is not 3 x w x h";
        if (bad) {
            rt_errorf(err, errsize, "%s: sample %llu (index entry at offset %llu): %s (offset %llu, %llu bytes, %ux%u, "
                      "label %llu)", path, (unsigned long long)i, (unsigned long long)(ioff + i * DPK_ENTRY), bad,
                      (unsigned long long)off, (unsigned long long)sz, w, h, (unsigned long long)label);
            goto done;
        }
        d->labels[i] = (int64_t)label;
    }
    rc = 0;
done:
    if (rc) rt_dpk_close(d);
    return rc;
}

void rt_dpk_close(rt_dpk *d) {
    if (d->map) munmap((void *)d->map, d->size);
    free(d->labels);
    if (d->class_names)
        for (uint64_t k = 0; k < d->classes; k++) free(d->class_names[k]);
    free(d->class_names);
    memset(d, 0, sizeof *d);
}

void rt_dpk_entry(const rt_dpk *d, int64_t i, rt_dpk_sample *s) {
    const unsigned char *e = d->index + (uint64_t)i * DPK_ENTRY;
    s->offset = get_u64(e);
    s->size = get_u64(e + 8);
    s->w = (int)get_u32(e + 24);
    s->h = (int)get_u32(e + 28);
    s->source = (int64_t)get_u64(e + 32);
    s->crc = get_u32(e + 40);
    s->bytes = d->map + s->offset;
}

int rt_dpk_decode(const rt_dpk *d, int64_t i, const rt_decode_shrink *shrink, rt_rgb_image *img, char *err,
                  size_t errsize) {
    rt_dpk_sample s;
    rt_dpk_entry(d, i, &s);
    memset(img, 0, sizeof *img);
    if (rt_crc32(0, s.bytes, s.size) != s.crc)
        return rt_errorf(err, errsize, "%s: sample %lld (offset %llu, %llu bytes) fails its checksum: the file is "
                         "damaged", d->path, (long long)i, (unsigned long long)s.offset, (unsigned long long)s.size);
    if (d->kind == RT_DPK_RAW) {
        if (!(img->rgb = malloc(s.size))) return rt_errorf(err, errsize, "%s: out of memory", d->path);
        memcpy(img->rgb, s.bytes, s.size);
        img->w = img->full_w = s.w;
        img->h = img->full_h = s.h;
        return 0;
    }
    char name[64];
    snprintf(name, sizeof name, "sample %lld", (long long)i);
    if (rt_image_decode_mem(name, s.bytes, s.size, shrink, img, err, errsize)) {
        char inner[1000];
        snprintf(inner, sizeof inner, "%.900s", err);
        return rt_errorf(err, errsize, "%s: %s (offset %llu)", d->path, inner, (unsigned long long)s.offset);
    }
    if (img->full_w != s.w || img->full_h != s.h) {
        free(img->rgb);
        img->rgb = NULL;
        return rt_errorf(err, errsize, "%s: sample %lld (offset %llu) decodes to %dx%d, its index says %dx%d", d->path,
                         (long long)i, (unsigned long long)s.offset, img->full_w, img->full_h, s.w, s.h);
    }
    return 0;
}

static int dpk_source_decode(void *ctx, int64_t i, const rt_decode_shrink *shrink, rt_rgb_image *img, char *err,
                             size_t errsize) {
    return rt_dpk_decode(ctx, i, shrink, img, err, errsize);
}

rt_sample_source rt_dpk_source(const rt_dpk *d) {
    rt_sample_source s = {(int64_t)d->n, d->labels, (void *)d, dpk_source_decode};
    return s;
}

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct {
    const rt_image_list *list;
    const int64_t *order; /* stored sample i is list item order[i] */
    int64_t first, count; /* this chunk: stored samples [first, first + count) */
    int max_side, quality, raw;
    unsigned char **bytes; /* (count) encoded samples */
    size_t *sizes;
    int *w, *h;
    pthread_mutex_t lock;
    int64_t next, failed; /* next to claim (relative), lowest failure or count */
    char err[1200];
} pack_chunk;

/* One sample: decoded at full size, its shorter side capped, as raw RGB or re-encoded. */
static int pack_one(pack_chunk *c, int64_t r, char *err, size_t errsize) {
    const char *path = c->list->paths[c->order[c->first + r]];
    rt_rgb_image img;
    if (rt_image_decode(path, NULL, &img, err, errsize)) return -1;
    int ow = img.w, oh = img.h, shorter = img.w < img.h ? img.w : img.h;
    unsigned char *pix = img.rgb;
    if (shorter > c->max_side) { /* torchvision's Resize(int) sizes */
        if (img.w <= img.h) {
            ow = c->max_side;
            oh = (int)((double)c->max_side * img.h / img.w);
        } else {
            oh = c->max_side;
            ow = (int)((double)c->max_side * img.w / img.h);
        }
        if (!(pix = malloc((size_t)ow * oh * 3)) || rt_image_resize_bilinear(&img, ow, oh, pix)) {
            free(pix);
            free(img.rgb);
            return rt_errorf(err, errsize, "%s: out of memory while resizing", path);
        }
        free(img.rgb);
    }
    c->w[r] = ow;
    c->h[r] = oh;
    if (c->raw) {
        c->bytes[r] = pix;
        c->sizes[r] = (size_t)ow * oh * 3;
        return 0;
    }
    int rc = rt_jpeg_encode(pix, ow, oh, c->quality, &c->bytes[r], &c->sizes[r], err, errsize);
    free(pix);
    if (rc) {
        char inner[1000];
        snprintf(inner, sizeof inner, "%.900s", err);
        return rt_errorf(err, errsize, "%s: %s", path, inner);
    }
    return 0;
}

static void *pack_worker(void *arg) {
    pack_chunk *c = arg;
    char err[1200];
    for (;;) {
        pthread_mutex_lock(&c->lock);
        int64_t r = c->failed < c->count || c->next >= c->count ? -1 : c->next++;
        pthread_mutex_unlock(&c->lock);
        if (r < 0) break;
        if (pack_one(c, r, err, sizeof err)) {
            pthread_mutex_lock(&c->lock);
            if (r < c->failed) {
                c->failed = r;
                snprintf(c->err, sizeof c->err, "%s", err);
            }
            pthread_mutex_unlock(&c->lock);
        }
    }
    return NULL;
}

static int put_entry(rt_strbuf *index, uint64_t off, uint64_t size, int64_t label, int w, int h, int64_t source,
                     uint32_t crc) {
    unsigned char e[DPK_ENTRY] = {0};
    put_u64(e, off);
    put_u64(e + 8, size);
    put_u64(e + 16, (uint64_t)label);
    put_u32(e + 24, (uint32_t)w);
    put_u32(e + 28, (uint32_t)h);
    put_u64(e + 32, (uint64_t)source);
    put_u32(e + 40, crc);
    rt_sb_putn(index, (const char *)e, DPK_ENTRY);
    return 0;
}

int rt_dpk_pack(const char *dir, const char *out, int max_side, int quality, int raw, int workers, char *err,
                size_t errsize) {
    rt_plan p; /* the listing's checks: 3 channels, any number of classes */
    memset(&p, 0, sizeof p);
    p.in_chans = 3;
    p.img_size = 1;
    p.num_classes = INT64_MAX;
    rt_image_list list;
    if (rt_image_folder_list(dir, &p, &list, err, errsize)) return -1;
    int64_t *order = malloc(sizeof(int64_t) * (size_t)list.n);
    int64_t chunk = 64 * (int64_t)workers;
    pack_chunk c;
    memset(&c, 0, sizeof c);
    c.bytes = calloc((size_t)chunk, sizeof *c.bytes);
    c.sizes = calloc((size_t)chunk, sizeof *c.sizes);
    c.w = calloc((size_t)chunk, sizeof(int));
    c.h = calloc((size_t)chunk, sizeof(int));
    rt_strbuf index = {0};
    rt_output o;
    memset(&o, 0, sizeof o);
    int rc = -1, opened = 0;
    if (!order || !c.bytes || !c.sizes || !c.w || !c.h) {
        rt_errorf(err, errsize, "%s: out of memory", dir);
        goto done;
    }
    rt_shuffle(order, list.n, 0x9ac4ull, 0); /* a fixed order: the same file for the same folder */
    if (rt_output_open(&o, out, err, errsize)) goto done;
    opened = 1;
    unsigned char hdr[DPK_HEADER] = {0};
    memcpy(hdr, "DEITCDPK", 8);
    put_u32(hdr + 8, DPK_VERSION);
    put_u32(hdr + 12, raw ? RT_DPK_RAW : RT_DPK_JPEG);
    put_u64(hdr + 16, (uint64_t)list.n);
    put_u32(hdr + 24, (uint32_t)max_side);
    put_u32(hdr + 28, (uint32_t)list.classes);
    fwrite(hdr, 1, sizeof hdr, o.f);
    uint64_t off = DPK_HEADER;
    c.list = &list;
    c.order = order;
    c.max_side = max_side;
    c.quality = quality;
    c.raw = raw;
    pthread_mutex_init(&c.lock, NULL);
    pthread_t threads[256];
    for (int64_t first = 0; first < list.n; first += chunk) {
        c.first = first;
        c.count = list.n - first < chunk ? list.n - first : chunk;
        c.next = 0;
        c.failed = c.count;
        int started = 0;
        for (int t = 1; t < workers && t < 256; t++)
            if (pthread_create(&threads[started], NULL, pack_worker, &c) == 0) started++;
        pack_worker(&c);
        for (int t = 0; t < started; t++) pthread_join(threads[t], NULL);
        int bad = c.failed < c.count;
        for (int64_t r = 0; r < c.count && !bad; r++) {
            static const unsigned char zeros[8] = {0};
            int64_t item = order[first + r];
            fwrite(c.bytes[r], 1, c.sizes[r], o.f);
            if (put_entry(&index, off, c.sizes[r], list.labels[item], c.w[r], c.h[r], item,
                          rt_crc32(0, c.bytes[r], c.sizes[r])))
                abort();
            off += c.sizes[r];
            size_t pad = (size_t)((8 - off % 8) % 8);
            fwrite(zeros, 1, pad, o.f);
            off += pad;
        }
        for (int64_t r = 0; r < c.count; r++) {
            free(c.bytes[r]);
            c.bytes[r] = NULL;
        }
        if (bad) {
            pthread_mutex_destroy(&c.lock);
            rt_errorf(err, errsize, "%s", c.err);
            goto done;
        }
        if (ferror(o.f)) {
            pthread_mutex_destroy(&c.lock);
            rt_errorf(err, errsize, "%s: write failed: %s", out, strerror(errno));
            goto done;
        }
    }
    pthread_mutex_destroy(&c.lock);
    for (int64_t k = 0; k < list.classes; k++) {
        unsigned char len[4];
        put_u32(len, (uint32_t)strlen(list.class_names[k]));
        rt_sb_putn(&index, (const char *)len, 4);
        rt_sb_putn(&index, list.class_names[k], strlen(list.class_names[k]));
    }
    fwrite(index.s, 1, index.len, o.f);
    unsigned char tail[DPK_TRAILER] = {0};
    put_u64(tail, off);
    put_u64(tail + 8, index.len);
    put_u32(tail + 16, rt_crc32(0, index.s, index.len));
    put_u32(tail + 20, DPK_VERSION);
    memcpy(tail + 24, "DPKTAIL", 8);
    fwrite(tail, 1, sizeof tail, o.f);
    opened = 0;
    if (rt_output_commit(&o, err, errsize)) goto done;
    rc = 0;
done:
    if (opened) rt_output_abort(&o);
    rt_sb_free(&index);
    free(order);
    free(c.bytes);
    free(c.sizes);
    free(c.w);
    free(c.h);
    rt_image_list_free(&list);
    return rc;
}

/* ---- as a dataset ------------------------------------------------------------------------- */

int rt_plan_rgb_side(const char *what, const rt_plan *p, int *size, char *err, size_t errsize) {
    int64_t chw[3];
    rt_plan_image_shape(p, chw);
    if (chw[0] != 3)
        return rt_errorf(err, errsize, "%s: the images are 3-channel RGB but the model takes %lld channels (in_chans)",
                         what, (long long)chw[0]);
    if (chw[1] != chw[2] || chw[1] < 1 || chw[1] > 4096)
        return rt_errorf(err, errsize, "%s: image datasets need a square image size, not %lldx%lld", what,
                         (long long)chw[1], (long long)chw[2]);
    *size = (int)chw[1];
    return 0;
}

int rt_dpk_load(const char *path, const rt_plan *p, rt_dataset *ds, char *err, size_t errsize) {
    memset(ds, 0, sizeof *ds);
    int size = 0;
    if (rt_plan_rgb_side(path, p, &size, err, errsize)) return -1;
    rt_dpk d;
    if (rt_dpk_open(path, &d, err, errsize)) return -1;
    rt_transform tf;
    rt_loader *L = NULL;
    int rc = -1;
    if ((int64_t)d.classes > p->num_classes) {
        rt_errorf(err, errsize, "%s: %llu classes but the model has %lld (num_classes)", path,
                  (unsigned long long)d.classes, (long long)p->num_classes);
        goto done;
    }
    rt_transform_init(&tf, "none", size, err, errsize);
    rt_sample_source src = rt_dpk_source(&d);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    rt_loader_config c = {.src = &src, .tf = &tf, .batch = 1, .workers = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu,
                          .depth = 64, .seed = 0, .shuffle = 0, .rank = 0, .world = 1, .first_step = 1};
    size_t per = (size_t)3 * size * size;
    ds->images_u8 = malloc(per * d.n);
    ds->labels = malloc(sizeof(int64_t) * d.n);
    if (!ds->images_u8 || !ds->labels) {
        rt_errorf(err, errsize, "%s: out of memory (%llu images)", path, (unsigned long long)d.n);
        goto done;
    }
    if (rt_loader_open(&L, &c, err, errsize)) goto done;
    for (uint64_t i = 0; i < d.n; i++) {
        const void *img;
        const int64_t *label;
        if (rt_loader_next(L, &img, &label, err, errsize)) goto done;
        memcpy(ds->images_u8 + i * per, img, per);
        ds->labels[i] = *label;
    }
    ds->n = (int64_t)d.n;
    ds->c = 3;
    ds->h = ds->w = size;
    ds->classes = (int64_t)d.classes;
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    memcpy(ds->mean, mean, sizeof mean);
    memcpy(ds->std, stdv, sizeof stdv);
    rc = 0;
done:
    rt_loader_free(L);
    rt_dpk_close(&d);
    if (rc) rt_dataset_free(ds);
    return rc;
}
