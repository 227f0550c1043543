/* exe_stage.c: train's per-step data without a host synchronization. A step's inputs (the
 * batch as uint8, its labels, the optimizer slots, mixup's and drop path's inputs) are written
 * into one of the device's two stage slots (rt.h: pinned host memory on cuda), which goes to
 * the device in one copy on a copy stream; the step stream waits for that copy (an event),
 * copies each part into its arena tensor and runs dc_data_normalize (dc_data.cuh) on the
 * images, so the host neither normalizes the batch nor waits for the device. Outside a staged
 * step (eval, validation, bench without --data) rt_exe_put uploads at once, as before; so does
 * everything with DEITC_HOST_DATA=1 (the host-normalized path, kept to compare against).
 *
 * A raw .dpk trained with --aug light goes rawer still: the workers copy each sample as it is
 * and sample its box (loader.c's raw_bytes), dc_data_crop resizes, flips and normalizes.
 *
 * Slot layout: [uint8 images, batch x C x H x W, or the raw samples][mean[3], std[3]][crop
 * boxes, batch x 8 long long][the other parts], each part 256-byte aligned. The values the device computes are the host path's bits (dc_data.cuh).
 */
#include "runtime/exe_internal.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN(x) (((x) + 255) / 256 * 256)

static uint64_t images_bytes(const session *s) { return (uint64_t)(s->p->batch * s->image_numel); }
static uint64_t params_at(const session *s) {
    uint64_t n = images_bytes(s);
    return ALIGN(s->stage_region > n ? s->stage_region : n);
}
static uint64_t meta_at(const session *s) { return params_at(s) + 256; }
static uint64_t parts_at(const session *s) { return meta_at(s) + ALIGN((uint64_t)s->p->batch * 8 * sizeof(int64_t)); }

static int open_slots(session *s) {
    const rt_plan_tensor *parts[] = {s->labels, s->opt, s->mix, s->drop_path};
    uint64_t bytes = parts_at(s);
    for (int i = 0; i < 4; i++)
        if (parts[i]) bytes += ALIGN(parts[i]->bytes);
    return s->dev->stage_open(s->dev, bytes) ? rt_exe_error("%s", s->dev->err) : 0;
}

int rt_exe_stage_open(session *s) {
    s->stage_slot = -1;
    rt_device *d = s->dev;
    char err[1200];
    int host = 0; /* DEITC_HOST_DATA=1: the blocking uploads of host-normalized batches, as before */
    if (rt_env_flag("DEITC_HOST_DATA", &host, err, sizeof err)) return rt_exe_error("%s", err);
    if (host || !d || !d->stage_open || !d->copy_to_arena || !d->launch_kernel) return 0;
    if (open_slots(s)) return 1;
    s->stage_kernel = rt_plan_kernel(s->p, "dc_data_normalize");
    s->stage_crop_kernel = rt_plan_kernel(s->p, "dc_data_crop");
    s->stage_on = 1;
    return 0;
}

int rt_exe_stage_reserve(session *s, uint64_t bytes) {
    if (!s->stage_on || bytes <= params_at(s)) return 0;
    s->stage_region = bytes;
    return open_slots(s);
}

int rt_exe_stage_crop(session *s, const void *raw, uint64_t bytes, const int64_t *meta, const float mean[3],
                      const float stdv[3]) {
    if (s->stage_slot < 0 || s->stage_crop_kernel < 0 || bytes > s->stage_region)
        return rt_exe_error("the device's crop: no stage slot open, no dc_data_crop in the plan, or %llu bytes of "
                            "samples for a region of %llu", (unsigned long long)bytes,
                            (unsigned long long)s->stage_region);
    unsigned char *host = s->dev->stage_host[s->stage_slot];
    memcpy(host, raw, (size_t)bytes);
    memcpy(host + params_at(s), mean, 3 * sizeof(float));
    memcpy(host + params_at(s) + 3 * sizeof(float), stdv, 3 * sizeof(float));
    for (int64_t i = 0; i < s->p->batch * 8; i++) ((long long *)(host + meta_at(s)))[i] = (long long)meta[i];
    s->stage_images = 2;
    return 0;
}

int rt_exe_stage_begin(session *s) {
    if (!s->stage_on) return 0;
    int slot = (int)(s->stage_batches++ & 1);
    if (s->dev->stage_begin(s->dev, slot)) return rt_exe_error("%s", s->dev->err);
    s->stage_slot = slot;
    s->stage_used = parts_at(s);
    s->stage_images = 0;
    s->stage_ncopies = 0;
    return 0;
}

uint8_t *rt_exe_stage_u8(session *s, const float mean[3], const float stdv[3]) {
    if (s->stage_slot < 0 || s->stage_kernel < 0) return NULL;
    unsigned char *host = s->dev->stage_host[s->stage_slot];
    memcpy(host + params_at(s), mean, 3 * sizeof(float));
    memcpy(host + params_at(s) + 3 * sizeof(float), stdv, 3 * sizeof(float));
    s->stage_images = 1;
    return host;
}

int rt_exe_put(session *s, uint64_t offset, const void *src, uint64_t bytes) {
    if (s->stage_slot < 0) return s->dev->upload(s->dev, offset, src, bytes) ? rt_exe_error("%s", s->dev->err) : 0;
    unsigned char *host = s->dev->stage_host[s->stage_slot];
    for (int i = 0; i < s->stage_ncopies; i++)
        if (s->stage_copies[i].offset == offset && s->stage_copies[i].bytes == bytes) { /* this step's again */
            memcpy(host + s->stage_copies[i].at, src, (size_t)bytes);
            return 0;
        }
    int max = (int)(sizeof s->stage_copies / sizeof s->stage_copies[0]);
    if (s->stage_ncopies == max || s->stage_used + bytes > s->dev->stage_bytes)
        return rt_exe_error("the step's data does not fit its stage slot (%d parts, %llu + %llu bytes of %llu)",
                            s->stage_ncopies, (unsigned long long)s->stage_used, (unsigned long long)bytes,
                            (unsigned long long)s->dev->stage_bytes);
    memcpy(host + s->stage_used, src, (size_t)bytes);
    s->stage_copies[s->stage_ncopies].offset = offset;
    s->stage_copies[s->stage_ncopies].at = s->stage_used;
    s->stage_copies[s->stage_ncopies].bytes = bytes;
    s->stage_ncopies++;
    s->stage_used += ALIGN(bytes);
    return 0;
}

int rt_exe_stage_end(session *s) {
    if (s->stage_slot < 0) return 0;
    rt_device *d = s->dev;
    int slot = s->stage_slot;
    s->stage_slot = -1;
    uint64_t twin = d->stage_device[slot];
    if (d->stage_end(d, slot, s->stage_used)) return rt_exe_error("%s", d->err);
    for (int i = 0; i < s->stage_ncopies; i++)
        if (d->copy_to_arena(d, s->stage_copies[i].offset, twin + s->stage_copies[i].at, s->stage_copies[i].bytes))
            return rt_exe_error("%s", d->err);
    if (s->stage_images) { /* normalize (1): src, params, dst; crop (2): src, meta, params, dst */
        uint64_t n = images_bytes(s);
        int crop = s->stage_images == 2;
        rt_arg_value v[4];
        v[0].address = twin;
        v[1].address = twin + (crop ? meta_at(s) : params_at(s));
        v[2].address = crop ? twin + params_at(s) : d->arena_address + s->images->offset;
        v[3].address = d->arena_address + s->images->offset;
        void *args[4] = {&v[0], &v[1], &v[2], &v[3]};
        unsigned grid[3] = {(unsigned)((n + 255) / 256), 1, 1}, block[3] = {256, 1, 1};
        if (d->launch_kernel(d, crop ? s->stage_crop_kernel : s->stage_kernel, grid, block, args))
            return rt_exe_error("%s", d->err);
    }
    if (d->stage_done(d, slot)) return rt_exe_error("%s", d->err);
    return 0;
}
