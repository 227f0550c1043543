/* dist_nccl.c: the cuda target's gradient all-reduce on NCCL. libnccl (DEITC_NCCL_LIBRARY, else
 * libnccl.so.2: the CUDA toolkit's lib64, or the nvidia-nccl-cu* wheel beside PyTorch) is
 * loaded with dlopen only when a multi-rank cuda run asks for it, so a single-process
 * executable never needs it; nccl.h gives the types only. libcuda's stream and event calls are
 * looked up in the library the device layer already loaded (DEITC_LIBCUDA, else libcuda.so.1).
 *
 * Ordering: bucket b is started after the compute stream's step that writes its last
 * gradient: an event recorded there, the comm stream waits for it, ncclAllReduce(ncclAvg) of
 * each of the bucket's regions in one ncclGroupStart/End (NCCL fuses them), an event recorded
 * on the comm stream; the first step reading the bucket makes the compute stream wait for that
 * event. Under CUDA Graph capture this is the documented fork/join pattern (event record +
 * wait across streams joins the comm stream into the capture), and NCCL (>= 2.9.6, with CUDA
 * >= 11.3) supports capturing its collectives, so the whole step, collectives included, is
 * one graph replay.
 * Determinism: NCCL's ring/tree order is fixed for a fixed communicator topology and
 * algorithm choice, so reruns on the same machines give the same bits; it does not promise
 * the same bits across world sizes or topologies (NCCL_ALGO/NCCL_PROTO pin the choice).
 * Failure: rt_nccl_sync polls the compute stream and ncclCommGetAsyncError; a remote error or
 * DEITC_DIST_TIMEOUT seconds without progress aborts the communicator and names the cause.
 */
#include "runtime/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DEITC_HAVE_NCCL_HEADERS

int rt_nccl_open(rt_dist *d, rt_device *dev, int nbuckets, rt_nccl **out, char *err, size_t errsize) {
    (void)d;
    (void)dev;
    (void)nbuckets;
    *out = NULL;
    return rt_errorf(err, errsize, "this executable's runtime was built without nccl.h, so it cannot train a cuda "
                                   "plan on several ranks");
}
void rt_nccl_close(rt_nccl *n) { (void)n; }
int rt_nccl_post(rt_nccl *n, int b, const rt_plan_grad *const *regions, int nregions, char *err, size_t errsize) {
    (void)n, (void)b, (void)regions, (void)nregions;
    return rt_errorf(err, errsize, "no NCCL");
}
int rt_nccl_wait(rt_nccl *n, int b, char *err, size_t errsize) {
    (void)n, (void)b;
    return rt_errorf(err, errsize, "no NCCL");
}
int rt_nccl_sync(rt_nccl *n, double timeout_s, char *err, size_t errsize) {
    (void)n, (void)timeout_s;
    return rt_errorf(err, errsize, "no NCCL");
}

#else

#include <cuda.h>
#include <dlfcn.h>
#include <nccl.h>
#include <time.h>
#include <unistd.h>

#define NCCL_FUNCS(X)                                                                                            \
    X(ncclGetVersion) X(ncclGetUniqueId) X(ncclCommInitRank) X(ncclCommDestroy) X(ncclCommAbort)                 \
    X(ncclCommGetAsyncError) X(ncclAllReduce) X(ncclGroupStart) X(ncclGroupEnd) X(ncclGetErrorString)

#define STR_(x) #x
#define XSTR(x) STR_(x)

struct rt_nccl {
    void *lib, *libcuda;
#define X(f) __typeof__(&f) p_##f;
    NCCL_FUNCS(X)
#undef X
    __typeof__(&cuStreamCreate) p_cuStreamCreate;
    __typeof__(&cuStreamDestroy) p_cuStreamDestroy;
    __typeof__(&cuEventCreate) p_cuEventCreate;
    __typeof__(&cuEventDestroy) p_cuEventDestroy;
    __typeof__(&cuEventRecord) p_cuEventRecord;
    __typeof__(&cuStreamWaitEvent) p_cuStreamWaitEvent;
    __typeof__(&cuStreamQuery) p_cuStreamQuery;
    ncclComm_t comm;
    CUstream compute, comm_stream;
    CUevent *ready, *done; /* [nbuckets] */
    int nbuckets;
    rt_device *dev;
};

static int nccl_fail(rt_nccl *n, ncclResult_t r, const char *call, char *err, size_t errsize) {
    return rt_errorf(err, errsize, "%s failed: %s", call, n->p_ncclGetErrorString ? n->p_ncclGetErrorString(r) : "?");
}

static int cu_fail(CUresult r, const char *call, char *err, size_t errsize) {
    return rt_errorf(err, errsize, "%s failed (CUresult %d)", call, (int)r);
}

int rt_nccl_open(rt_dist *d, rt_device *dev, int nbuckets, rt_nccl **out, char *err, size_t errsize) {
    *out = NULL;
    rt_nccl *n = calloc(1, sizeof *n);
    if (!n) abort();
    n->dev = dev;
    const char *env = getenv("DEITC_NCCL_LIBRARY");
    n->lib = dlopen(env && *env ? env : "libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) {
        rt_errorf(err, errsize, "this run has %d ranks on cuda, and their gradient all-reduce needs NCCL: cannot load "
                  "%s (%s). Install NCCL (the CUDA toolkit's lib64, or pip's nvidia-nccl-cu12) and put it on "
                  "LD_LIBRARY_PATH, or set DEITC_NCCL_LIBRARY=/path/to/libnccl.so.2",
                  rt_dist_world(d), env && *env ? env : "libnccl.so.2", dlerror());
        free(n);
        return -1;
    }
#define X(f)                                                                                                     \
    if (!(n->p_##f = (__typeof__(&f))dlsym(n->lib, #f))) {                                                        \
        rt_errorf(err, errsize, "libnccl lacks %s (NCCL >= 2.10 is needed)", #f);                                   \
        rt_nccl_close(n);                                                                                        \
        return -1;                                                                                               \
    }
    NCCL_FUNCS(X)
#undef X
    const char *cenv = getenv("DEITC_LIBCUDA");
    n->libcuda = dlopen(cenv && *cenv ? cenv : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!n->libcuda) {
        rt_errorf(err, errsize, "cannot load libcuda.so.1 for NCCL's streams: %s", dlerror());
        rt_nccl_close(n);
        return -1;
    }
#define C(f, field)                                                                                              \
    if (!(n->field = (__typeof__(n->field))dlsym(n->libcuda, XSTR(f)))) {                                         \
        rt_errorf(err, errsize, "libcuda lacks %s", XSTR(f));                                                     \
        rt_nccl_close(n);                                                                                        \
        return -1;                                                                                               \
    }
    C(cuStreamCreate, p_cuStreamCreate) C(cuStreamDestroy, p_cuStreamDestroy) C(cuEventCreate, p_cuEventCreate)
    C(cuEventDestroy, p_cuEventDestroy) C(cuEventRecord, p_cuEventRecord) C(cuStreamWaitEvent, p_cuStreamWaitEvent)
    C(cuStreamQuery, p_cuStreamQuery)
#undef C
    int version = 0;
    n->p_ncclGetVersion(&version);
    if (version < 21000) {
        rt_errorf(err, errsize, "NCCL %d is too old: ncclAvg needs NCCL >= 2.10", version);
        rt_nccl_close(n);
        return -1;
    }
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t r;
    if (rt_dist_rank(d) == 0 && (r = n->p_ncclGetUniqueId(&id))) {
        nccl_fail(n, r, "ncclGetUniqueId", err, errsize);
        rt_nccl_close(n);
        return -1;
    }
    if (rt_dist_bcast(d, &id, sizeof id)) {
        rt_errorf(err, errsize, "sending NCCL's unique id: %s", rt_dist_error(d));
        rt_nccl_close(n);
        return -1;
    }
    if ((r = n->p_ncclCommInitRank(&n->comm, rt_dist_world(d), id, rt_dist_rank(d)))) {
        nccl_fail(n, r, "ncclCommInitRank", err, errsize);
        n->comm = NULL;
        rt_nccl_close(n);
        return -1;
    }
    n->compute = (CUstream)dev->native_stream;
    CUresult cr;
    if ((cr = n->p_cuStreamCreate(&n->comm_stream, CU_STREAM_NON_BLOCKING))) {
        cu_fail(cr, "cuStreamCreate", err, errsize);
        rt_nccl_close(n);
        return -1;
    }
    n->nbuckets = nbuckets;
    n->ready = calloc((size_t)nbuckets + 1, sizeof *n->ready);
    n->done = calloc((size_t)nbuckets + 1, sizeof *n->done);
    if (!n->ready || !n->done) abort();
    for (int b = 0; b < nbuckets; b++)
        if ((cr = n->p_cuEventCreate(&n->ready[b], CU_EVENT_DISABLE_TIMING)) ||
            (cr = n->p_cuEventCreate(&n->done[b], CU_EVENT_DISABLE_TIMING))) {
            cu_fail(cr, "cuEventCreate", err, errsize);
            rt_nccl_close(n);
            return -1;
        }
    *out = n;
    return 0;
}

void rt_nccl_close(rt_nccl *n) {
    if (!n) return;
    if (n->comm) n->p_ncclCommDestroy(n->comm);
    for (int b = 0; b < n->nbuckets; b++) {
        if (n->ready && n->ready[b]) n->p_cuEventDestroy(n->ready[b]);
        if (n->done && n->done[b]) n->p_cuEventDestroy(n->done[b]);
    }
    if (n->comm_stream) n->p_cuStreamDestroy(n->comm_stream);
    free(n->ready);
    free(n->done);
    /* libnccl and libcuda stay loaded: a library holding CUDA state is not unloaded safely */
    free(n);
}

static ncclDataType_t nccl_type(rt_dtype t) {
    return t == RT_F16 ? ncclFloat16 : t == RT_BF16 ? ncclBfloat16 : ncclFloat32;
}

int rt_nccl_post(rt_nccl *n, int b, const rt_plan_grad *const *regions, int nregions, char *err, size_t errsize) {
    CUresult cr;
    if ((cr = n->p_cuEventRecord(n->ready[b], n->compute))) return cu_fail(cr, "cuEventRecord", err, errsize);
    if ((cr = n->p_cuStreamWaitEvent(n->comm_stream, n->ready[b], 0))) return cu_fail(cr, "cuStreamWaitEvent", err, errsize);
    ncclResult_t r;
    if ((r = n->p_ncclGroupStart())) return nccl_fail(n, r, "ncclGroupStart", err, errsize);
    for (int i = 0; i < nregions; i++) {
        const rt_plan_grad *g = regions[i];
        void *ptr = (void *)(uintptr_t)(n->dev->arena_address + g->offset);
        size_t count = (size_t)(g->bytes / rt_dtype_size(g->dtype));
        if ((r = n->p_ncclAllReduce(ptr, ptr, count, nccl_type(g->dtype), ncclAvg, n->comm,
                                    (cudaStream_t)n->comm_stream))) {
            n->p_ncclGroupEnd();
            return nccl_fail(n, r, "ncclAllReduce", err, errsize);
        }
    }
    if ((r = n->p_ncclGroupEnd())) return nccl_fail(n, r, "ncclGroupEnd", err, errsize);
    if ((cr = n->p_cuEventRecord(n->done[b], n->comm_stream))) return cu_fail(cr, "cuEventRecord", err, errsize);
    return 0;
}

int rt_nccl_wait(rt_nccl *n, int b, char *err, size_t errsize) {
    CUresult cr = n->p_cuStreamWaitEvent(n->compute, n->done[b], 0);
    return cr ? cu_fail(cr, "cuStreamWaitEvent", err, errsize) : 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int rt_nccl_sync(rt_nccl *n, double timeout_s, char *err, size_t errsize) {
    double deadline = now_s() + timeout_s;
    for (;;) {
        CUresult cr = n->p_cuStreamQuery(n->compute);
        if (cr == CUDA_SUCCESS) return 0;
        if (cr != CUDA_ERROR_NOT_READY) return cu_fail(cr, "cuStreamQuery (the step with its all-reduce)", err, errsize);
        ncclResult_t async = ncclSuccess;
        n->p_ncclCommGetAsyncError(n->comm, &async);
        if (async != ncclSuccess && async != ncclInProgress) {
            n->p_ncclCommAbort(n->comm);
            n->comm = NULL;
            return rt_errorf(err, errsize, "NCCL reported an error during the gradient all-reduce (a rank lost?): %s",
                             n->p_ncclGetErrorString(async));
        }
        if (now_s() > deadline) {
            n->p_ncclCommAbort(n->comm);
            n->comm = NULL;
            return rt_errorf(err, errsize, "the step's gradient all-reduce made no progress for %g s "
                             "(DEITC_DIST_TIMEOUT): a rank is lost or hung; aborted the NCCL communicator", timeout_s);
        }
        usleep(100);
    }
}

#endif
