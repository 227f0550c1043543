/* device_cuda_stage.c: the cuda target's per-step data path (rt.h's stage slots and readback
 * buffer): two slots of pinned host memory and their device twins, a second (copy) stream,
 * an event per slot the step stream waits on after the slot's copy and one the next copy into
 * its twin waits on (the step stream has read it); device-to-device parts and runtime-launched
 * kernels (dc_data.cuh) on the step stream; loss read-backs into pinned memory, waited for by
 * one event. Every wait that blocks the host counts in d->syncs. Built only with the CUDA
 * headers, as device_cuda.c.
 */
#include "runtime/rt.h"

#ifdef DEITC_HAVE_CUDA_HEADERS

#include "runtime/device_cuda_impl.h"

#include <stdio.h>
#include <string.h>

void rt_cuda_stage_release(cuda_impl *c, int all) {
    for (int i = 0; i < 2; i++) {
        if (c->stage_host[i]) c->p_cuMemFreeHost(c->stage_host[i]);
        if (c->twin[i]) c->p_cuMemFree(c->twin[i]);
        c->stage_host[i] = NULL;
        c->twin[i] = 0;
    }
    if (!all) return;
    if (c->readback) c->p_cuMemFreeHost(c->readback);
    for (int i = 0; i < 2; i++) {
        if (c->copied[i]) c->p_cuEventDestroy(c->copied[i]);
        if (c->consumed[i]) c->p_cuEventDestroy(c->consumed[i]);
    }
    if (c->read_done) c->p_cuEventDestroy(c->read_done);
    if (c->copy_stream) c->p_cuStreamDestroy(c->copy_stream);
}

static int cuda_stage_open(rt_device *d, uint64_t bytes) {
    cuda_impl *c = impl(d);
    if (c->stream && CU(d, cuStreamSynchronize, c->stream)) return -1; /* no copy in flight into the old slots */
    if (c->copy_stream && CU(d, cuStreamSynchronize, c->copy_stream)) return -1;
    rt_cuda_stage_release(c, 0);
    if (!c->copy_stream && CU(d, cuStreamCreate, &c->copy_stream, CU_STREAM_NON_BLOCKING)) return -1;
    for (int i = 0; i < 2; i++) {
        if ((!c->copied[i] && CU(d, cuEventCreate, &c->copied[i], CU_EVENT_DISABLE_TIMING)) ||
            (!c->consumed[i] && CU(d, cuEventCreate, &c->consumed[i], CU_EVENT_DISABLE_TIMING)) ||
            CU(d, cuMemHostAlloc, &c->stage_host[i], (size_t)(bytes ? bytes : 1), 0) ||
            CU(d, cuMemAlloc, &c->twin[i], (size_t)(bytes ? bytes : 1)))
            return -1;
        c->copy_pending[i] = c->consume_pending[i] = 0;
        d->stage_host[i] = c->stage_host[i];
        d->stage_device[i] = (uint64_t)c->twin[i];
    }
    d->stage_bytes = bytes;
    return 0;
}

static int slot_ok(rt_device *d, int slot, uint64_t bytes) {
    if (slot >= 0 && slot < 2 && impl(d)->stage_host[slot] && bytes <= d->stage_bytes) return 0;
    snprintf(d->err, sizeof d->err, "cuda: stage slot %d (%llu bytes) not open or too small (%llu bytes)", slot,
             (unsigned long long)bytes, (unsigned long long)d->stage_bytes);
    return -1;
}

static int cuda_stage_begin(rt_device *d, int slot) {
    cuda_impl *c = impl(d);
    if (slot_ok(d, slot, 0)) return -1;
    if (!c->copy_pending[slot]) return 0;
    CUresult r = c->p_cuEventQuery(c->copied[slot]);
    if (r == CUDA_ERROR_NOT_READY) { /* the copy of two batches ago still runs: wait (counted) */
        d->syncs++;
        r = c->p_cuEventSynchronize(c->copied[slot]);
    }
    c->copy_pending[slot] = 0;
    return rt_cuda_check(d, r, "cuEventSynchronize (a stage slot's copy)") ? rt_cuda_async_hint(d) : 0;
}

static int cuda_stage_end(rt_device *d, int slot, uint64_t bytes) {
    cuda_impl *c = impl(d);
    if (slot_ok(d, slot, bytes)) return -1;
    if (c->consume_pending[slot] && CU(d, cuStreamWaitEvent, c->copy_stream, c->consumed[slot], 0)) return -1;
    if ((bytes && CU(d, cuMemcpyHtoDAsync, c->twin[slot], c->stage_host[slot], (size_t)bytes, c->copy_stream)) ||
        CU(d, cuEventRecord, c->copied[slot], c->copy_stream) || CU(d, cuStreamWaitEvent, c->stream, c->copied[slot], 0))
        return rt_cuda_async_hint(d);
    c->copy_pending[slot] = 1;
    return 0;
}

static int cuda_stage_done(rt_device *d, int slot) {
    cuda_impl *c = impl(d);
    if (slot_ok(d, slot, 0) || CU(d, cuEventRecord, c->consumed[slot], c->stream)) return -1;
    c->consume_pending[slot] = 1;
    return 0;
}

static int cuda_copy_to_arena(rt_device *d, uint64_t offset, uint64_t src_address, uint64_t bytes) {
    if (!bytes) return 0;
    return CU(d, cuMemcpyDtoDAsync, impl(d)->arena + offset, (CUdeviceptr)src_address, (size_t)bytes, impl(d)->stream)
               ? rt_cuda_async_hint(d) : 0;
}

static int cuda_launch_kernel(rt_device *d, int kernel, const unsigned grid[3], const unsigned block[3], void **args) {
    cuda_impl *c = impl(d);
    if (kernel < 0 || kernel >= d->plan->num_kernels) {
        snprintf(d->err, sizeof d->err, "cuda: kernel %d out of range (%d kernels)", kernel, d->plan->num_kernels);
        return -1;
    }
    if (CU(d, cuLaunchKernel, c->funcs[kernel], grid[0], grid[1], grid[2], block[0], block[1], block[2], 0, c->stream,
           args, NULL)) {
        size_t n = strlen(d->err);
        snprintf(d->err + n, sizeof d->err - n, " (kernel '%s')", d->plan->kernel_names[kernel]);
        return -1;
    }
    return 0;
}

static int cuda_readback_open(rt_device *d, uint64_t bytes) {
    cuda_impl *c = impl(d);
    if (c->readback) {
        if (CU(d, cuStreamSynchronize, c->stream)) return -1;
        c->p_cuMemFreeHost(c->readback);
        c->readback = NULL;
    }
    if ((!c->read_done && CU(d, cuEventCreate, &c->read_done, CU_EVENT_DISABLE_TIMING)) ||
        CU(d, cuMemHostAlloc, &c->readback, (size_t)(bytes ? bytes : 1), 0))
        return -1;
    memset(c->readback, 0, (size_t)(bytes ? bytes : 1));
    d->readback_host = c->readback;
    d->readback_bytes = bytes;
    return 0;
}

static int cuda_download_async(rt_device *d, uint64_t readback_offset, uint64_t offset, uint64_t bytes) {
    cuda_impl *c = impl(d);
    if (!c->readback || readback_offset > d->readback_bytes || bytes > d->readback_bytes - readback_offset) {
        snprintf(d->err, sizeof d->err, "cuda: readback range [%llu, +%llu) outside the buffer (%llu bytes)",
                 (unsigned long long)readback_offset, (unsigned long long)bytes, (unsigned long long)d->readback_bytes);
        return -1;
    }
    if (!bytes) return 0;
    return CU(d, cuMemcpyDtoHAsync, (char *)c->readback + readback_offset, c->arena + offset, (size_t)bytes, c->stream)
               ? rt_cuda_async_hint(d) : 0;
}

static int cuda_readback_wait(rt_device *d) {
    cuda_impl *c = impl(d);
    d->syncs++;
    return CU(d, cuEventRecord, c->read_done, c->stream) || CU(d, cuEventSynchronize, c->read_done) ? rt_cuda_async_hint(d)
                                                                                                     : 0;
}

void rt_cuda_stage_install(rt_device *d) {
    d->stage_open = cuda_stage_open;
    d->stage_begin = cuda_stage_begin;
    d->stage_end = cuda_stage_end;
    d->stage_done = cuda_stage_done;
    d->copy_to_arena = cuda_copy_to_arena;
    d->launch_kernel = cuda_launch_kernel;
    d->readback_open = cuda_readback_open;
    d->download_async = cuda_download_async;
    d->readback_wait = cuda_readback_wait;
}

#else
typedef int rt_device_cuda_stage_unused; /* ISO C wants a declaration in every file */
#endif /* DEITC_HAVE_CUDA_HEADERS */
