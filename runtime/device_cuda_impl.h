/* device_cuda_impl.h: the cuda target's private state, shared by device_cuda.c (the device)
 * and device_cuda_stage.c (its stage slots and readback buffer): the driver and cuBLASLt entry
 * points it loads, the impl struct, the checked-call macro. Included only with the CUDA headers
 * (DEITC_HAVE_CUDA_HEADERS), by those two files.
 */
#ifndef DEITC_DEVICE_CUDA_IMPL_H
#define DEITC_DEVICE_CUDA_IMPL_H

#include "runtime/rt.h"

#include <cublasLt.h>
#include <cuda.h>

#define STR_(x) #x
#define XSTR(x) STR_(x) /* the ABI name: cuMemAlloc -> "cuMemAlloc_v2" */

#define CU_FUNCS(X)                                                                                              \
    X(cuInit) X(cuDriverGetVersion) X(cuGetErrorName) X(cuGetErrorString) X(cuDeviceGetCount) X(cuDeviceGet)     \
    X(cuDeviceGetName) X(cuDeviceGetAttribute) X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease)          \
    X(cuCtxSetCurrent) X(cuStreamCreate) X(cuStreamDestroy) X(cuStreamSynchronize) X(cuMemAlloc) X(cuMemFree)    \
    X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync) X(cuMemsetD8Async) X(cuModuleLoadData)                           \
    X(cuModuleLoadDataEx) X(cuModuleUnload) X(cuModuleGetFunction) X(cuFuncSetAttribute) X(cuLaunchKernel)       \
    X(cuEventCreate) X(cuEventDestroy) X(cuEventRecord) X(cuEventSynchronize) X(cuEventElapsedTime)              \
    X(cuStreamBeginCapture) X(cuStreamEndCapture) X(cuGraphInstantiate) X(cuGraphLaunch) X(cuGraphDestroy)       \
    X(cuGraphExecDestroy) X(cuMemHostAlloc) X(cuMemFreeHost) X(cuStreamWaitEvent) X(cuEventQuery)                \
    X(cuMemcpyDtoDAsync)

#define LT_FUNCS(X)                                                                                              \
    X(cublasLtCreate) X(cublasLtDestroy) X(cublasLtGetVersion) X(cublasLtGetStatusString)                        \
    X(cublasLtMatmulDescCreate) X(cublasLtMatmulDescDestroy) X(cublasLtMatmulDescSetAttribute)                   \
    X(cublasLtMatrixLayoutCreate) X(cublasLtMatrixLayoutDestroy) X(cublasLtMatrixLayoutSetAttribute)             \
    X(cublasLtMatmulPreferenceCreate) X(cublasLtMatmulPreferenceDestroy)                                         \
    X(cublasLtMatmulPreferenceSetAttribute) X(cublasLtMatmulAlgoGetHeuristic) X(cublasLtMatmul)

#define DECLARE_FN(f) __typeof__(&f) p_##f;

enum { WORKSPACE_BYTES = 32 << 20 };

typedef struct {
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc; /* cuBLAS's A (our B), B (our A), C = D */
    cublasLtMatmulAlgo_t algo;
} cuda_gemm;

typedef struct {
    CU_FUNCS(DECLARE_FN)
    LT_FUNCS(DECLARE_FN)
    void *libcuda, *liblt;
    int have_ctx;
    CUdevice dev;
    CUcontext ctx;
    CUstream stream;
    CUmodule module;
    CUfunction *funcs;     /* per kernel of the plan */
    CUdeviceptr arena, workspace; /* workspace: in the arena, or own_workspace */
    uint64_t workspace_bytes;
    int own_workspace;
    CUevent ev_start, ev_stop;
    CUgraph graph;
    CUgraphExec exec;
    cublasLtHandle_t lt;
    cuda_gemm *gemms;      /* per step of the plan (used by GEMM steps only) */
    int step;              /* the step being prepared or run, for messages; -1 none */
    int capturing;         /* between cuStreamBeginCapture and cuStreamEndCapture */
    int sync_each;         /* DEITC_CUDA_SYNC: synchronize after every eager step */
    int driver_version;    /* cuDriverGetVersion: 13000 is CUDA 13.0 */
    /* the stage slots (rt.h): pinned host buffers, device twins, the copy stream and its events */
    CUstream copy_stream;
    void *stage_host[2], *readback;
    CUdeviceptr twin[2];
    CUevent copied[2], consumed[2], read_done;
    int copy_pending[2], consume_pending[2];
} cuda_impl;

static inline cuda_impl *impl(rt_device *d) { return d->impl; }

/* device_cuda.c: a driver call checked (0, or -1 with d->err naming the call and the plan step),
 * and the hint after a failed synchronizing call (returns -1) */
int rt_cuda_check(rt_device *d, CUresult r, const char *call);
int rt_cuda_async_hint(rt_device *d);
#define CU(d, fn, ...) rt_cuda_check((d), impl(d)->p_##fn(__VA_ARGS__), #fn)

/* device_cuda_stage.c: the stage slots and the readback buffer (rt.h) into d's table; their
 * release (all: also the copy stream and the events, at the device's end) */
void rt_cuda_stage_install(rt_device *d);
void rt_cuda_stage_release(cuda_impl *c, int all);

#endif /* DEITC_DEVICE_CUDA_IMPL_H */
