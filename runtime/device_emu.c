/* device_emu.c: the emu target's device: the arena is host memory, kernels are the plan's
 * emu_kernels (kernels.cu compiled against cuda_emu.h) called with cuLaunchKernel-style
 * argument pointers, GEMMs run on the CPU (gemm_cpu.c), timing is the wall clock. Launches
 * are synchronous, so synchronize has nothing to wait for; there is no graph capture.
 * The stage slots and the readback buffer (rt.h) are host memory, their copies memcpy at once
 * (the order the cuda target's streams keep); the calls that block on cuda count in d->syncs.
 */
#include "runtime/rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    unsigned char *arena;
    double t0;
    unsigned char *stage[2], *twin[2], *readback;
} emu_impl;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static unsigned char *arena(rt_device *d) { return ((emu_impl *)d->impl)->arena; }

static int range_ok(rt_device *d, const char *what, uint64_t offset, uint64_t bytes) {
    if (offset <= d->plan->arena_bytes && bytes <= d->plan->arena_bytes - offset) return 0;
    snprintf(d->err, sizeof d->err, "emu %s: range [%llu, +%llu) outside the arena (%llu bytes)", what,
             (unsigned long long)offset, (unsigned long long)bytes, (unsigned long long)d->plan->arena_bytes);
    return -1;
}

static int emu_upload(rt_device *d, uint64_t offset, const void *src, uint64_t bytes) {
    d->syncs++; /* blocking on cuda (pageable memory, then a stream synchronize) */
    if (range_ok(d, "upload", offset, bytes)) return -1;
    if (bytes) memcpy(arena(d) + offset, src, bytes);
    return 0;
}

static int emu_download(rt_device *d, void *dst, uint64_t offset, uint64_t bytes) {
    d->syncs++;
    if (range_ok(d, "download", offset, bytes)) return -1;
    if (bytes) memcpy(dst, arena(d) + offset, bytes);
    return 0;
}

static int emu_zero(rt_device *d, uint64_t offset, uint64_t bytes) {
    if (range_ok(d, "zero", offset, bytes)) return -1;
    if (bytes) memset(arena(d) + offset, 0, bytes);
    return 0;
}

static int emu_launch(rt_device *d, int step) {
    const rt_plan_step *s = &d->plan->steps[step];
    rt_kernel_args ka;
    rt_kernel_args_fill(&ka, s, (uint64_t)(uintptr_t)arena(d));
    d->plan->emu_kernels[s->kernel](s->grid, s->block, s->shared_bytes, ka.args);
    rt_kernel_args_release(&ka);
    return 0;
}

static int emu_gemm(rt_device *d, int step) {
    const rt_gemm *g = &d->plan->steps[step].gemm;
    unsigned char *base = arena(d);
    rt_gemm_cpu(g, base + g->a, base + g->b, base + g->c);
    if (g->epilogue != RT_EPILOGUE_NONE) rt_gemm_cpu_epilogue(g, base + g->c, base + g->bias, base + g->aux);
    return 0;
}

static int emu_synchronize(rt_device *d) {
    d->syncs++;
    return 0;
}

/* ---- the stage slots and the readback buffer (rt.h) ---------------------------------------- */

static int emu_stage_open(rt_device *d, uint64_t bytes) {
    emu_impl *e = d->impl;
    for (int i = 0; i < 2; i++) {
        free(e->stage[i]);
        free(e->twin[i]);
        e->stage[i] = malloc(bytes ? bytes : 1);
        e->twin[i] = malloc(bytes ? bytes : 1);
        if (!e->stage[i] || !e->twin[i]) {
            snprintf(d->err, sizeof d->err, "emu: cannot allocate the stage slots (2 x 2 x %llu bytes)",
                     (unsigned long long)bytes);
            return -1;
        }
        d->stage_host[i] = e->stage[i];
        d->stage_device[i] = (uint64_t)(uintptr_t)e->twin[i];
    }
    d->stage_bytes = bytes;
    return 0;
}

static int slot_ok(rt_device *d, int slot, uint64_t bytes) {
    if (slot >= 0 && slot < 2 && ((emu_impl *)d->impl)->stage[slot] && bytes <= d->stage_bytes) return 0;
    snprintf(d->err, sizeof d->err, "emu: stage slot %d (%llu bytes) not open or too small (%llu bytes)", slot,
             (unsigned long long)bytes, (unsigned long long)d->stage_bytes);
    return -1;
}

static int emu_stage_begin(rt_device *d, int slot) { return slot_ok(d, slot, 0); }

static int emu_stage_end(rt_device *d, int slot, uint64_t bytes) {
    if (slot_ok(d, slot, bytes)) return -1;
    emu_impl *e = d->impl;
    if (bytes) memcpy(e->twin[slot], e->stage[slot], bytes);
    return 0;
}

static int emu_stage_done(rt_device *d, int slot) { return slot_ok(d, slot, 0); }

static int emu_copy_to_arena(rt_device *d, uint64_t offset, uint64_t src_address, uint64_t bytes) {
    if (range_ok(d, "copy", offset, bytes)) return -1;
    if (bytes) memcpy(arena(d) + offset, (const void *)(uintptr_t)src_address, bytes);
    return 0;
}

static int emu_launch_kernel(rt_device *d, int kernel, const unsigned grid[3], const unsigned block[3], void **args) {
    if (kernel < 0 || kernel >= d->plan->num_kernels) {
        snprintf(d->err, sizeof d->err, "emu: kernel %d out of range (%d kernels)", kernel, d->plan->num_kernels);
        return -1;
    }
    d->plan->emu_kernels[kernel](grid, block, 0, args);
    return 0;
}

static int emu_readback_open(rt_device *d, uint64_t bytes) {
    emu_impl *e = d->impl;
    free(e->readback);
    e->readback = calloc(1, bytes ? bytes : 1);
    if (!e->readback) {
        snprintf(d->err, sizeof d->err, "emu: cannot allocate the readback buffer (%llu bytes)", (unsigned long long)bytes);
        return -1;
    }
    d->readback_host = e->readback;
    d->readback_bytes = bytes;
    return 0;
}

static int emu_download_async(rt_device *d, uint64_t readback_offset, uint64_t offset, uint64_t bytes) {
    if (range_ok(d, "download", offset, bytes)) return -1;
    if (!d->readback_host || readback_offset > d->readback_bytes || bytes > d->readback_bytes - readback_offset) {
        snprintf(d->err, sizeof d->err, "emu: readback range [%llu, +%llu) outside the buffer (%llu bytes)",
                 (unsigned long long)readback_offset, (unsigned long long)bytes, (unsigned long long)d->readback_bytes);
        return -1;
    }
    if (bytes) memcpy((unsigned char *)d->readback_host + readback_offset, arena(d) + offset, bytes);
    return 0;
}

static int emu_readback_wait(rt_device *d) {
    d->syncs++;
    return 0;
}

static int emu_timer_start(rt_device *d) {
    ((emu_impl *)d->impl)->t0 = now_ms();
    return 0;
}

static int emu_timer_stop(rt_device *d, double *ms) {
    d->syncs++;
    *ms = now_ms() - ((emu_impl *)d->impl)->t0;
    return 0;
}

static void emu_destroy(rt_device *d) {
    emu_impl *e = d->impl;
    if (e) {
        free(e->arena);
        for (int i = 0; i < 2; i++) {
            free(e->stage[i]);
            free(e->twin[i]);
        }
        free(e->readback);
    }
    free(e);
    free(d);
}

int rt_device_emu_new(const rt_plan *p, rt_device **out, char *err, size_t errsize) {
    *out = NULL;
    rt_device *d = calloc(1, sizeof *d);
    emu_impl *e = calloc(1, sizeof *e);
    size_t bytes = (size_t)((p->arena_bytes + 255) / 256 * 256);
    if (!d || !e || p->arena_bytes > (uint64_t)SIZE_MAX / 2) {
        free(d);
        free(e);
        snprintf(err, errsize, "emu: out of memory");
        return -1;
    }
    e->arena = aligned_alloc(256, bytes ? bytes : 256);
    if (!e->arena) {
        snprintf(err, errsize, "emu: cannot allocate the arena (%llu bytes) in host memory",
                 (unsigned long long)p->arena_bytes);
        free(d);
        free(e);
        return -1;
    }
    memset(e->arena, 0, bytes);
    d->target = "emu";
    snprintf(d->name, sizeof d->name, "CPU (emulated CUDA)");
    d->plan = p;
    d->impl = e;
    d->mem_bytes = p->arena_bytes;
    d->arena_address = (uint64_t)(uintptr_t)e->arena;
    d->upload = emu_upload;
    d->download = emu_download;
    d->zero = emu_zero;
    d->launch = emu_launch;
    d->gemm = emu_gemm;
    d->synchronize = emu_synchronize;
    d->timer_start = emu_timer_start;
    d->timer_stop = emu_timer_stop;
    d->destroy = emu_destroy;
    d->stage_open = emu_stage_open;
    d->stage_begin = emu_stage_begin;
    d->stage_end = emu_stage_end;
    d->stage_done = emu_stage_done;
    d->copy_to_arena = emu_copy_to_arena;
    d->launch_kernel = emu_launch_kernel;
    d->readback_open = emu_readback_open;
    d->download_async = emu_download_async;
    d->readback_wait = emu_readback_wait;
    *out = d;
    return 0;
}
