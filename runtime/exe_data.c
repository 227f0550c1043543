/* exe_data.c: train's streamed data: an ImageFolder is streamed (loader.c: --workers threads
 * decode and transform batches ahead of the step) when it is trained with an augmentation
 * (--aug light), when --stream asks for it, or when its decoded pixels would exceed
 * DEITC_DATA_CACHE_MB (default 1024 MiB); otherwise it is decoded once at start-up, as
 * before (exe_session.c), and both give the very same batches for --aug none.
 * Streaming reports a file that cannot be decoded when the step that needs it comes.
 * A packed .dpk (pack.c) is always streamed, in a quasi-random order (windows of the file).
 * Where the device can (exe_stage.c), batches go up as uint8 and are normalized there; a raw
 * .dpk trained with --aug light is cropped, flipped and normalized there too (the workers only
 * copy samples and sample boxes); DEITC_HOST_DATA=1 keeps all of it on the host.
 * Also `EXE pack` (rt_exe_cmd_pack).
 */
#include "runtime/exe_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long cache_mib(void) {
    const char *v = getenv("DEITC_DATA_CACHE_MB");
    char *end;
    long n = v && *v ? strtol(v, &end, 10) : -1;
    return v && *v && !*end && n >= 0 ? n : 1024;
}

int rt_exe_default_workers(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* --aug's preset, with --rand-augment and --reprob in place of its parts */
static int transform_init(const exe_args *a, int size, rt_transform *tf, char *err, size_t errsize) {
    return rt_transform_init(tf, a->aug ? a->aug : "none", size, err, errsize) ||
           rt_transform_set_parts(tf, a->rand_augment, a->has_reprob ? a->reprob : -1, err, errsize);
}

/* A .dpk is always streamed, in windows of this many samples (quasi-random order). */
#define DPK_WINDOW 1024

static int open_dpk(const exe_args *a, const rt_plan *p, exe_stream *st) {
    char err[1200];
    int size;
    if (rt_plan_rgb_side(a->data, p, &size, err, sizeof err) || rt_dpk_open(a->data, &st->dpk, err, sizeof err))
        return rt_exe_error("%s", err);
    st->is_dpk = 1;
    if ((int64_t)st->dpk.classes > p->num_classes) {
        rt_exe_error("%s: %llu classes but the model has %lld classes (num_classes)", a->data,
                     (unsigned long long)st->dpk.classes, (long long)p->num_classes);
        rt_exe_stream_free(st);
        return 1;
    }
    if (transform_init(a, size, &st->tf, err, sizeof err)) {
        rt_exe_stream_free(st);
        return rt_exe_error("%s", err);
    }
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    memcpy(st->list.mean, mean, sizeof mean);
    memcpy(st->list.std, stdv, sizeof stdv);
    st->list.n = (int64_t)st->dpk.n;
    st->list.classes = (int64_t)st->dpk.classes;
    st->src = rt_dpk_source(&st->dpk);
    st->on = 1;
    st->iota = malloc(sizeof(int64_t) * (size_t)(p->batch > 0 ? p->batch : 1));
    if (!st->iota) abort();
    for (int64_t i = 0; i < p->batch; i++) st->iota[i] = i;
    return 0;
}

int rt_exe_stream_open(const exe_args *a, const rt_plan *p, exe_stream *st) {
    memset(st, 0, sizeof *st);
    struct stat sb;
    size_t len = a->data ? strlen(a->data) : 0;
    if (!a->synthetic && len >= 4 && !strcmp(a->data + len - 4, ".dpk")) return open_dpk(a, p, st);
    if (a->synthetic || !a->data || stat(a->data, &sb) != 0 || !S_ISDIR(sb.st_mode)) return 0;
    const char *aug = a->aug ? a->aug : "none";
    char err[1200];
    if (rt_image_folder_list(a->data, p, &st->list, err, sizeof err)) return rt_exe_error("%s", err);
    long long bytes = (long long)st->list.n * 3 * st->list.crop * st->list.crop;
    if (strcmp(aug, "none") == 0 && !a->stream && bytes <= (long long)cache_mib() << 20) {
        rt_image_list_free(&st->list); /* small enough to decode once (rt_exe_load_data) */
        return 0;
    }
    if (transform_init(a, st->list.crop, &st->tf, err, sizeof err)) {
        rt_exe_stream_free(st);
        return rt_exe_error("%s", err);
    }
    st->src = rt_image_list_source(&st->list);
    st->on = 1;
    st->iota = malloc(sizeof(int64_t) * (size_t)(p->batch > 0 ? p->batch : 1));
    if (!st->iota) abort();
    for (int64_t i = 0; i < p->batch; i++) st->iota[i] = i;
    return 0;
}

/* The workers also normalize (float slots) when the model takes f32 images and 4 such batches
 * fit in this much memory; else they hand over uint8 and the step's thread normalizes. */
#define FLOAT_SLOTS_MAX (512ll << 20)

/* A raw .dpk trained with crop + flip only (--aug light, or a preset with --rand-augment none
 * --reprob 0) on a plan with dc_data_crop: the largest sample's bytes (the
 * device crops; exe_stage.c), else 0. */
static int64_t device_crop_bytes(const exe_stream *st, const session *s) {
    if (!st->is_dpk || st->dpk.kind != RT_DPK_RAW || !rt_transform_is_crop_flip(&st->tf) || !s->stage_on ||
        s->stage_crop_kernel < 0)
        return 0;
    int64_t most = 0;
    for (uint64_t i = 0; i < st->dpk.n; i++) {
        rt_dpk_sample e;
        rt_dpk_entry(&st->dpk, (int64_t)i, &e);
        if (3 * (int64_t)e.w * e.h > most) most = 3 * (int64_t)e.w * e.h;
    }
    return most;
}

int rt_exe_stream_start(exe_stream *st, session *s, const exe_args *a, const rt_plan *p, long first_step) {
    /* uint8 batches normalized on the device where the plan can (exe_stage.c), unless erasing;
     * a raw .dpk with --aug light: cropped there too */
    int on_device = s->stage_on && s->stage_kernel >= 0;
    st->raw_bytes = device_crop_bytes(st, s);
    if (st->raw_bytes && rt_exe_stage_reserve(s, (uint64_t)(st->raw_bytes * p->batch))) return 1;
    st->f32 = s->images->dtype == RT_F32 && ((!on_device && 4 * p->batch * s->image_numel * (long long)sizeof(float) <= FLOAT_SLOTS_MAX) ||
                                               st->tf.erase_p > 0); /* erasing: on normalized pixels, in the workers */
    rt_loader_config c = {.src = &st->src, .tf = &st->tf, .batch = p->batch,
                          .workers = a->workers > 0 ? (int)a->workers : rt_exe_default_workers(), .depth = 4,
                          .seed = a->seed, .shuffle = a->shuffle, .window = st->is_dpk ? DPK_WINDOW : 0,
                          .rank = st->rank, .world = st->world, .first_step = first_step,
                          .mean = st->f32 ? st->list.mean : NULL, .std = st->f32 ? st->list.std : NULL,
                          .raw_bytes = st->raw_bytes};
    char err[1200];
    if (rt_loader_open(&st->loader, &c, err, sizeof err)) return rt_exe_error("%s: %s", a->data, err);
    char parts[160] = "";
    if (a->rand_augment || a->has_reprob)
        snprintf(parts, sizeof parts, " with --rand-augment %.80s, --reprob %g",
                 a->rand_augment ? a->rand_augment : "as the preset", (double)st->tf.erase_p);
    printf("data: %s: %lld images, %lld classes, streamed by %d workers (--aug %s%s%s)\n", rt_exe_shown(a->data),
           (long long)st->list.n, (long long)st->list.classes, c.workers, st->tf.name, parts,
           st->raw_bytes ? ", raw samples cropped, flipped and normalized on the device"
           : st->f32 ? ", normalized by the workers" : on_device ? ", uint8 batches normalized on the device" : "");
    return 0;
}

int rt_exe_stream_batch(session *s, exe_stream *st) {
    const void *images;
    const int64_t *labels;
    char err[1200];
    if (rt_loader_next(st->loader, &images, &labels, err, sizeof err)) return rt_exe_error("%s", err);
    const rt_plan *p = s->p;
    if (st->raw_bytes) { /* raw samples and their boxes: the device crops (exe_stage.c) */
        for (int64_t i = 0; i < p->batch; i++) {
            if (s->labels->dtype == RT_I64) ((int64_t *)s->label_stage)[i] = labels[i];
            else ((int32_t *)s->label_stage)[i] = (int32_t)labels[i];
        }
        if (rt_exe_stage_crop(s, images, (uint64_t)(st->raw_bytes * p->batch), rt_loader_meta(st->loader),
                              st->list.mean, st->list.std))
            return 1;
        return rt_exe_put(s, s->labels->offset, s->label_stage, (uint64_t)p->batch * rt_dtype_size(s->labels->dtype));
    }
    if (st->f32) { /* already the images tensor's bytes: only the labels are converted */
        for (int64_t i = 0; i < p->batch; i++) {
            if (s->labels->dtype == RT_I64) ((int64_t *)s->label_stage)[i] = labels[i];
            else ((int32_t *)s->label_stage)[i] = (int32_t)labels[i];
        }
        if (s->dev->upload(s->dev, s->images->offset, images, (uint64_t)(p->batch * s->image_numel) * sizeof(float)))
            return rt_exe_error("%s", s->dev->err);
        return rt_exe_put(s, s->labels->offset, s->label_stage, (uint64_t)p->batch * rt_dtype_size(s->labels->dtype));
    }
    rt_dataset view; /* the batch as a dataset of `batch` images: the in-memory path's gather */
    memset(&view, 0, sizeof view);
    view.n = s->p->batch;
    view.c = 3;
    view.h = view.w = st->tf.size;
    view.images_u8 = (uint8_t *)images; /* read only */
    view.labels = (int64_t *)labels;
    memcpy(view.mean, st->list.mean, sizeof view.mean);
    memcpy(view.std, st->list.std, sizeof view.std);
    return rt_exe_fill_batch(s, &view, st->iota);
}

void rt_exe_stream_free(exe_stream *st) {
    rt_loader_free(st->loader);
    if (st->is_dpk) {
        rt_dpk_close(&st->dpk);
        memset(&st->list, 0, sizeof st->list); /* only counts were set */
    }
    rt_image_list_free(&st->list);
    free(st->iota);
    memset(st, 0, sizeof *st);
}

/* EXE pack DIR -o OUT.dpk [--max-side S] [--jpeg-quality Q | --raw] [--workers N] */
int rt_exe_cmd_pack(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    long max_side = 256, quality = 90, workers = rt_exe_default_workers();
    int raw = 0, has_quality = 0;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = !strcmp(s, "--max-side") ? &max_side : !strcmp(s, "--jpeg-quality") ? &quality
                  : !strcmp(s, "--workers") ? &workers : NULL;
        if (!strcmp(s, "-o")) {
            if (!next) return rt_exe_error("-o needs a file name"), 2;
            out = next;
            i++;
        } else if (num) {
            long lo = 1, hi = num == &quality ? 100 : num == &workers ? 256 : 16384;
            char *end;
            long v = next && *next ? strtol(next, &end, 10) : 0;
            if (!next || !*next || *end || v < lo || v > hi)
                return rt_exe_error("%s expects a decimal integer from %ld to %ld, got '%s'", s, lo, hi,
                                    next ? next : ""), 2;
            *num = v;
            if (num == &quality) has_quality = 1;
            i++;
        } else if (!strcmp(s, "--raw")) {
            raw = 1;
        } else if (s[0] != '-' && !dir) {
            dir = s;
        } else {
            return rt_exe_error("pack: unexpected argument '%s' (usage: pack DIR -o OUT.dpk [--max-side S] "
                                "[--jpeg-quality Q | --raw] [--workers N])", s), 2;
        }
    }
    if (!dir || !out) return rt_exe_error("usage: pack DIR -o OUT.dpk [--max-side S] [--jpeg-quality Q | --raw] "
                                          "[--workers N]"), 2;
    if (raw && has_quality) return rt_exe_error("pack: --raw and --jpeg-quality exclude each other"), 2;
    char err[1200];
    if (rt_dpk_pack(dir, out, (int)max_side, (int)quality, raw, (int)workers, err, sizeof err))
        return rt_exe_error("%s", err);
    rt_dpk d; /* what was written, read back as train will */
    if (rt_dpk_open(out, &d, err, sizeof err)) return rt_exe_error("%s", err);
    printf("packed %llu images of %llu classes from %s into %s (%s, shorter side at most %ld): %.1f MB\n",
           (unsigned long long)d.n, (unsigned long long)d.classes, rt_exe_shown(dir), out, raw ? "raw RGB" : "JPEG",
           max_side, (double)d.size / 1e6);
    rt_dpk_close(&d);
    return 0;
}

int rt_exe_bench_stream_open(const exe_args *a, const rt_plan *p, exe_stream *st) {
    memset(st, 0, sizeof *st);
    if (!a->data) return 0;
    exe_args streamed = *a;
    streamed.stream = 1; /* bench measures the streaming path, never a cache */
    if (rt_exe_stream_open(&streamed, p, st)) return 1;
    if (!st->on) return rt_exe_error("bench --data %s: bench measures streamed data: an ImageFolder directory or a "
                                     ".dpk file", a->data);
    return 0;
}
