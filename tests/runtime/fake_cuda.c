/* fake_cuda.c: a stand-in for libcuda.so.1 and libcublasLt.so (one shared library, loaded by
 * the runtime through DEITC_LIBCUDA and DEITC_CUBLASLT) that runs everything on the host, so
 * the cuda device layer (runtime/device_cuda.c) can be tested on a machine without a GPU:
 * driver calls, argument marshalling, stream capture and graph replay, and above all the
 * row-major -> column-major mapping of GEMMs onto cuBLASLt.
 *
 * Device pointers are host pointers. cuModuleGetFunction finds `fake_kernel_NAME` (and the
 * int `fake_kernel_NAME_nargs`) exported by the executable. Between cuStreamBeginCapture and
 * cuStreamEndCapture, launches, memsets and matmuls are recorded (argument values copied, as
 * CUDA does) and cuGraphLaunch replays them. cublasLtMatmul implements the column-major
 * definition D = alpha op(A) op(B) + beta C from cuBLAS's documentation, f32 only, and rejects
 * layouts whose shapes disagree with the operation (what a wrong mapping would produce).
 * FAKE_CUDA_FAULT=N makes the N-th kernel run (1-based) "fault" as a GPU kernel does: the launch
 * succeeds and every synchronizing call after it returns CUDA_ERROR_ILLEGAL_ADDRESS.
 * The two paths only a GPU reaches, made to fail on purpose:
 *   FAKE_CUDA_MIN_ALIGN=B       the heuristic finds no algorithm when an operand is promised
 *                               fewer than B bytes of alignment (a strided batch 4 bytes apart)
 *   FAKE_CUDA_HEURISTIC_FAIL=N  the N-th heuristic query of a handle returns CUBLAS_STATUS_NOT_SUPPORTED
 *   FAKE_CUDA_CAPTURE_MATMUL=fail        cublasLtMatmul inside a stream capture returns an error
 *   FAKE_CUDA_CAPTURE_MATMUL=invalidate  it succeeds but invalidates the capture, so
 *                               cuStreamEndCapture returns CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
 * fake_cuda_counts() (found with dlsym) tells a test how many matmul descriptors the last handle
 * made with each compute type.
 */
#include <cublasLt.h>
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

typedef void (*kernel_fn)(const unsigned grid[3], const unsigned block[3], unsigned shared, void **args);
typedef struct {
    kernel_fn fn;
    int nargs;
} fake_func;

typedef struct {
    int32_t ta, tb;
    int tf32; /* CUBLAS_COMPUTE_32F_FAST_TF32: operands rounded to TF32 (nearest even) */
} fake_desc;
typedef struct {
    int64_t rows, cols, ld, stride;
    int32_t batch;
    cudaDataType type;
} fake_layout;

typedef struct {
    int kind; /* 0 kernel, 1 memset, 2 matmul, 3 NCCL all-reduce (fake_nccl below) */
    fake_func *f;
    unsigned grid[3], block[3], shared;
    uint64_t argv[32];
    CUdeviceptr dst;
    size_t bytes;
    const fake_desc *desc;
    const fake_layout *la, *lb, *lc;
    float alpha, beta;
    const void *a, *b, *c;
    void *d;
} op;

static int capturing, capture_broken;
/* fake_nccl: one rank (the mean over one rank is the rank's own value): calls and bytes counted */
static int nccl_calls, nccl_captured;
static long long nccl_bytes;
static void nccl_run(const op *o) {
    nccl_calls++;
    nccl_bytes += (long long)o->bytes;
}
static int descs_32f, descs_tf32, heuristics;

EXPORT void fake_cuda_counts(int *f32, int *tf32) {
    *f32 = descs_32f;
    *tf32 = descs_tf32;
}

static long env_long(const char *name) {
    const char *v = getenv(name);
    return v && *v ? atol(v) : 0;
}
static op *recorded;
static int nrecorded, caprecorded;
static int launches, matmuls, tf32_matmuls, replays;

/* x rounded to TF32 as the emu models it (runtime's rt_round_tf32, written out again here so
 * that this stand-in shares no code with what it checks) */
static double tf32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000) == 0x7f800000) return x;
    u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
    memcpy(&x, &u, 4);
    return x;
}

static void record(const op *o) {
    if (nrecorded == caprecorded) {
        caprecorded = caprecorded ? 2 * caprecorded : 64;
        recorded = realloc(recorded, sizeof *recorded * (size_t)caprecorded);
        if (!recorded) abort();
    }
    recorded[nrecorded++] = *o;
}

static int faulted; /* sticky, as a real context's fault is */

static void run_kernel(const op *o) {
    void *ptrs[32];
    uint64_t vals[32];
    for (int i = 0; i < o->f->nargs; i++) {
        vals[i] = o->argv[i];
        ptrs[i] = &vals[i];
    }
    o->f->fn(o->grid, o->block, o->shared, ptrs);
    launches++;
    const char *fault = getenv("FAKE_CUDA_FAULT");
    if (fault && atoi(fault) == launches) faulted = 1;
}

/* element i of a matrix of type t (32F, 16F, 16BF): the compiler's _Float16 does the f16
 * conversions, so this shares no code with the runtime's */
static int fake_type_ok(cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }
static size_t fake_type_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }
static double fake_load(const void *p, cudaDataType t, int64_t i) {
    if (t == CUDA_R_16F) {
        _Float16 h;
        memcpy(&h, (const char *)p + 2 * i, 2);
        return (double)h;
    }
    if (t == CUDA_R_16BF) {
        uint16_t h;
        memcpy(&h, (const char *)p + 2 * i, 2);
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    float f;
    memcpy(&f, (const char *)p + 4 * i, 4);
    return f;
}
static void fake_store(void *p, cudaDataType t, int64_t i, double v) {
    float f = (float)v;
    if (t == CUDA_R_16F) {
        _Float16 h = (_Float16)f;
        memcpy((char *)p + 2 * i, &h, 2);
    } else if (t == CUDA_R_16BF) {
        uint32_t u;
        memcpy(&u, &f, 4);
        uint16_t h = (u & 0x7fffffff) > 0x7f800000 ? (uint16_t)((u >> 16) | 0x40)
                                                   : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        memcpy((char *)p + 2 * i, &h, 2);
    } else {
        memcpy((char *)p + 4 * i, &f, 4);
    }
}

static int run_matmul(const op *o) {
    const fake_layout *la = o->la, *lb = o->lb, *lc = o->lc;
    int64_t m = lc->rows, n = lc->cols, k = o->desc->ta ? la->rows : la->cols;
    /* op(A) is m x k, op(B) is k x n */
    if ((o->desc->ta ? la->cols : la->rows) != m || (o->desc->tb ? lb->cols : lb->rows) != k ||
        (o->desc->tb ? lb->rows : lb->cols) != n || la->ld < la->rows || lb->ld < lb->rows || lc->ld < lc->rows ||
        la->batch != lc->batch || lb->batch != lc->batch || !fake_type_ok(la->type) || !fake_type_ok(lb->type) ||
        !fake_type_ok(lc->type) || (o->desc->tf32 && (la->type != CUDA_R_32F || lb->type != CUDA_R_32F))) {
        fprintf(stderr, "fake cublasLtMatmul: inconsistent layouts: A %lldx%lld ld %lld op %d, B %lldx%lld ld %lld op %d, "
                        "C %lldx%lld ld %lld\n",
                (long long)la->rows, (long long)la->cols, (long long)la->ld, o->desc->ta, (long long)lb->rows,
                (long long)lb->cols, (long long)lb->ld, o->desc->tb, (long long)lc->rows, (long long)lc->cols,
                (long long)lc->ld);
        return -1;
    }
    for (int32_t bi = 0; bi < lc->batch; bi++) {
        const char *a = (const char *)o->a + bi * la->stride * (int64_t)fake_type_size(la->type),
                   *b = (const char *)o->b + bi * lb->stride * (int64_t)fake_type_size(lb->type),
                   *c = (const char *)o->c + bi * lc->stride * (int64_t)fake_type_size(lc->type);
        char *d = (char *)o->d + bi * lc->stride * (int64_t)fake_type_size(lc->type);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++) {
                    double x = fake_load(a, la->type, o->desc->ta ? p + i * la->ld : i + p * la->ld);
                    double y = fake_load(b, lb->type, o->desc->tb ? j + p * lb->ld : p + j * lb->ld);
                    if (o->desc->tf32) x = tf32((float)x), y = tf32((float)y);
                    s += x * y;
                }
                double old = o->beta != 0 ? o->beta * fake_load(c, lc->type, i + j * lc->ld) : 0;
                fake_store(d, lc->type, i + j * lc->ld, o->alpha * s + old);
            }
    }
    matmuls++;
    tf32_matmuls += o->desc->tf32;
    return 0;
}

/* ---- the driver API ---- */

EXPORT CUresult cuInit(unsigned flags) { return flags ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS; }
EXPORT CUresult cuDriverGetVersion(int *v) { *v = 13000; return CUDA_SUCCESS; }
EXPORT CUresult cuGetErrorName(CUresult r, const char **s) {
    *s = r == CUDA_SUCCESS                            ? "CUDA_SUCCESS"
         : r == CUDA_ERROR_ILLEGAL_ADDRESS            ? "CUDA_ERROR_ILLEGAL_ADDRESS"
         : r == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED ? "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"
                                                      : "CUDA_ERROR_FAKE";
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGetErrorString(CUresult r, const char **s) { *s = r ? "fake error" : "no error"; return CUDA_SUCCESS; }
EXPORT CUresult cuDeviceGetCount(int *n) { *n = 1; return CUDA_SUCCESS; }
EXPORT CUresult cuDeviceGet(CUdevice *d, int i) { *d = i; return i ? CUDA_ERROR_INVALID_DEVICE : CUDA_SUCCESS; }
EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice d) { (void)d; snprintf(name, (size_t)len, "Fake GPU"); return CUDA_SUCCESS; }
EXPORT CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d) {
    (void)d;
    *v = a == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR ? 9 : 0;
    return CUDA_SUCCESS;
}
static int ctx_refs;
EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) { (void)d; ctx_refs++; *c = (CUcontext)&ctx_refs; return CUDA_SUCCESS; }
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { (void)d; return ctx_refs-- > 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT; }
EXPORT CUresult cuCtxSetCurrent(CUcontext c) { return c == (CUcontext)&ctx_refs ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT; }
static int stream_token;
EXPORT CUresult cuStreamCreate(CUstream *s, unsigned f) { (void)f; *s = (CUstream)&stream_token; return CUDA_SUCCESS; }
EXPORT CUresult cuStreamDestroy_v2(CUstream s) { (void)s; return CUDA_SUCCESS; }
EXPORT CUresult cuStreamSynchronize(CUstream s) {
    (void)s;
    return capturing ? CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED : faulted ? CUDA_ERROR_ILLEGAL_ADDRESS : CUDA_SUCCESS;
}
EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
    void *m = aligned_alloc(256, (n + 255) / 256 * 256);
    if (!m) return CUDA_ERROR_OUT_OF_MEMORY;
    memset(m, 0xA5, (n + 255) / 256 * 256); /* garbage, as device memory is */
    *p = (CUdeviceptr)(uintptr_t)m;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)(uintptr_t)p); return CUDA_SUCCESS; }
EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, CUstream st) {
    (void)st;
    if (capturing) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    memcpy((void *)(uintptr_t)d, s, n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, CUstream st) {
    (void)st;
    if (capturing) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (faulted) return CUDA_ERROR_ILLEGAL_ADDRESS;
    memcpy(d, (void *)(uintptr_t)s, n);
    return CUDA_SUCCESS;
}
/* the stage slots (pinned host buffers, device-to-device copies, event queries): stream order
 * is program order here, so every event has completed when it is queried */
EXPORT CUresult cuMemHostAlloc(void **p, size_t n, unsigned f) {
    (void)f;
    *p = malloc(n ? n : 1);
    return *p ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}
EXPORT CUresult cuMemFreeHost(void *p) { free(p); return CUDA_SUCCESS; }
EXPORT CUresult cuEventQuery(CUevent e) { (void)e; return faulted ? CUDA_ERROR_ILLEGAL_ADDRESS : CUDA_SUCCESS; }
EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) {
    (void)st;
    if (capturing) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    memmove((void *)(uintptr_t)d, (const void *)(uintptr_t)s, n);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream st) {
    (void)st;
    op o = {.kind = 1, .dst = d, .bytes = n};
    if (capturing) record(&o);
    else memset((void *)(uintptr_t)d, v, n);
    return CUDA_SUCCESS;
}
static int module_token;
EXPORT CUresult cuModuleLoadData(CUmodule *m, const void *image) {
    (void)image;
    *m = NULL;
    return CUDA_ERROR_NO_BINARY_FOR_GPU; /* take the PTX path */
}
EXPORT CUresult cuModuleLoadDataEx(CUmodule *m, const void *image, unsigned n, CUjit_option *o, void **v) {
    (void)n, (void)o, (void)v;
    if (!image || strncmp(image, "//", 2)) return CUDA_ERROR_INVALID_IMAGE;
    *m = (CUmodule)&module_token;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuModuleUnload(CUmodule m) { return m == (CUmodule)&module_token ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }
EXPORT CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
    (void)m;
    char sym[300];
    snprintf(sym, sizeof sym, "fake_kernel_%s", name);
    kernel_fn fn = (kernel_fn)dlsym(RTLD_DEFAULT, sym);
    snprintf(sym, sizeof sym, "fake_kernel_%s_nargs", name);
    const int *nargs = dlsym(RTLD_DEFAULT, sym);
    if (!fn || !nargs) return CUDA_ERROR_NOT_FOUND;
    static fake_func funcs[64];
    static int nfuncs;
    if (nfuncs == 64) return CUDA_ERROR_OUT_OF_MEMORY;
    fake_func *ff = &funcs[nfuncs++];
    ff->fn = fn;
    ff->nargs = *nargs;
    *f = (CUfunction)ff;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v) { (void)f, (void)a, (void)v; return CUDA_SUCCESS; }
EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, unsigned shared, CUstream s, void **params, void **extra) {
    (void)s;
    if (extra) return CUDA_ERROR_INVALID_VALUE;
    op o = {.kind = 0, .f = (fake_func *)f, .grid = {gx, gy, gz}, .block = {bx, by, bz}, .shared = shared};
    for (int i = 0; i < o.f->nargs; i++) memcpy(&o.argv[i], params[i], 8); /* the runtime's slots are 8 bytes */
    if (capturing) record(&o);
    else run_kernel(&o);
    return CUDA_SUCCESS;
}
static int events[2];
EXPORT CUresult cuEventCreate(CUevent *e, unsigned f) { (void)f; *e = (CUevent)&events[0]; return CUDA_SUCCESS; }
EXPORT CUresult cuEventDestroy_v2(CUevent e) { (void)e; return CUDA_SUCCESS; }
EXPORT CUresult cuEventRecord(CUevent e, CUstream s) { (void)e, (void)s; return CUDA_SUCCESS; }
EXPORT CUresult cuEventSynchronize(CUevent e) { (void)e; return faulted ? CUDA_ERROR_ILLEGAL_ADDRESS : CUDA_SUCCESS; }
EXPORT CUresult cuEventElapsedTime_v2(float *ms, CUevent a, CUevent b) { (void)a, (void)b; *ms = 1.0f; return CUDA_SUCCESS; }
EXPORT CUresult cuStreamBeginCapture_v2(CUstream s, CUstreamCaptureMode m) {
    (void)s, (void)m;
    if (capturing) return CUDA_ERROR_ILLEGAL_STATE;
    capturing = 1;
    capture_broken = 0;
    nrecorded = 0;
    return CUDA_SUCCESS;
}
static int graph_token, exec_token;
EXPORT CUresult cuStreamEndCapture(CUstream s, CUgraph *g) {
    (void)s;
    if (!capturing) return CUDA_ERROR_ILLEGAL_STATE;
    capturing = 0;
    if (capture_broken) {
        *g = NULL;
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    *g = (CUgraph)&graph_token;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec *e, CUgraph g, unsigned long long f) {
    (void)f;
    if (g != (CUgraph)&graph_token) return CUDA_ERROR_INVALID_VALUE;
    *e = (CUgraphExec)&exec_token;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGraphLaunch(CUgraphExec e, CUstream s) {
    (void)s;
    if (e != (CUgraphExec)&exec_token || capturing) return CUDA_ERROR_INVALID_VALUE;
    for (int i = 0; i < nrecorded; i++) {
        const op *o = &recorded[i];
        if (o->kind == 0) run_kernel(o);
        else if (o->kind == 1) memset((void *)(uintptr_t)o->dst, 0, o->bytes);
        else if (o->kind == 3) nccl_run(o);
        else if (run_matmul(o)) return CUDA_ERROR_INVALID_VALUE;
    }
    replays++;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGraphDestroy(CUgraph g) { (void)g; return CUDA_SUCCESS; }
EXPORT CUresult cuGraphExecDestroy(CUgraphExec e) {
    (void)e;
    fprintf(stderr, "fake cuda: %d kernel launches, %d matmuls (%d tf32), %d graph replays\n", launches, matmuls,
            tf32_matmuls, replays);
    if (nccl_calls) fprintf(stderr, "fake nccl: %d all-reduces (%d captured), %lld bytes\n", nccl_calls, nccl_captured, nccl_bytes);
    free(recorded);
    recorded = NULL;
    nrecorded = caprecorded = 0;
    return CUDA_SUCCESS;
}

/* ---- cuBLASLt ---- */

static int lt_token;
EXPORT cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) { /* the counts are per handle */
    descs_32f = descs_tf32 = heuristics = 0;
    *h = (cublasLtHandle_t)&lt_token;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { (void)h; return CUBLAS_STATUS_SUCCESS; }
EXPORT size_t cublasLtGetVersion(void) { return 130000; }
EXPORT const char *cublasLtGetStatusString(cublasStatus_t s) { return s ? "fake cuBLASLt error" : "success"; }
EXPORT cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t c, cudaDataType_t s) {
    if (c != CUBLAS_COMPUTE_32F && c != CUBLAS_COMPUTE_32F_FAST_TF32) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (s != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (c == CUBLAS_COMPUTE_32F_FAST_TF32) descs_tf32++;
    else descs_32f++;
    fake_desc *fd = calloc(1, sizeof *fd);
    fd->tf32 = c == CUBLAS_COMPUTE_32F_FAST_TF32;
    *d = (cublasLtMatmulDesc_t)fd;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { free(d); return CUBLAS_STATUS_SUCCESS; }
EXPORT cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                     const void *buf, size_t size) {
    fake_desc *fd = (fake_desc *)d;
    if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    if (a == CUBLASLT_MATMUL_DESC_TRANSA) memcpy(&fd->ta, buf, 4);
    else if (a == CUBLASLT_MATMUL_DESC_TRANSB) memcpy(&fd->tb, buf, 4);
    else return CUBLAS_STATUS_NOT_SUPPORTED;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows, uint64_t cols,
                                                 int64_t ld) {
    fake_layout *fl = calloc(1, sizeof *fl);
    fl->rows = (int64_t)rows, fl->cols = (int64_t)cols, fl->ld = ld, fl->batch = 1, fl->type = t;
    *l = (cublasLtMatrixLayout_t)fl;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { free(l); return CUBLAS_STATUS_SUCCESS; }
EXPORT cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
                                                       const void *buf, size_t size) {
    fake_layout *fl = (fake_layout *)l;
    if (a == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT && size == 4) memcpy(&fl->batch, buf, 4);
    else if (a == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET && size == 8) memcpy(&fl->stride, buf, 8);
    else return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}
static uint32_t pref_align[4]; /* MIN_ALIGNMENT_{A,B,C,D}_BYTES of the one preference */
EXPORT cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) { *p = (cublasLtMatmulPreference_t)pref_align; return CUBLAS_STATUS_SUCCESS; }
EXPORT cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { (void)p; return CUBLAS_STATUS_SUCCESS; }
EXPORT cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                           cublasLtMatmulPreferenceAttributes_t a, const void *b, size_t s) {
    (void)p;
    static const cublasLtMatmulPreferenceAttributes_t al[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++)
        if (a == al[i] && s == 4) memcpy(&pref_align[i], b, 4);
    return s == 4 || s == 8 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}
EXPORT cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                                     cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                                     cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t p, int n,
                                                     cublasLtMatmulHeuristicResult_t *r, int *found) {
    (void)h, (void)d, (void)a, (void)b, (void)p;
    if (c != dd || n < 1) return CUBLAS_STATUS_INVALID_VALUE;
    memset(r, 0, sizeof *r);
    *found = 0;
    if (++heuristics == env_long("FAKE_CUDA_HEURISTIC_FAIL")) return CUBLAS_STATUS_NOT_SUPPORTED;
    long min_align = env_long("FAKE_CUDA_MIN_ALIGN");
    for (int i = 0; i < 4; i++)
        if (pref_align[i] && pref_align[i] < min_align) return CUBLAS_STATUS_SUCCESS; /* none found */
    r->state = CUBLAS_STATUS_SUCCESS;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}
EXPORT cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
                                     cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                                     const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                                     const cublasLtMatmulAlgo_t *algo, void *ws, size_t wss, cudaStream_t s) {
    (void)h, (void)algo, (void)s;
    if (lc != ld || C != D || !ws || wss < 1) return CUBLAS_STATUS_INVALID_VALUE;
    op o = {.kind = 2, .desc = (const fake_desc *)desc, .la = (const fake_layout *)la, .lb = (const fake_layout *)lb,
            .lc = (const fake_layout *)lc, .alpha = *(const float *)alpha, .beta = *(const float *)beta, .a = A, .b = B,
            .c = C, .d = D};
    if (capturing) {
        const char *how = getenv("FAKE_CUDA_CAPTURE_MATMUL");
        if (how && !strcmp(how, "fail")) return CUBLAS_STATUS_NOT_SUPPORTED;
        if (how && !strcmp(how, "invalidate")) capture_broken = 1;
        record(&o);
        return CUBLAS_STATUS_SUCCESS;
    }
    return run_matmul(&o) ? CUBLAS_STATUS_INVALID_VALUE : CUBLAS_STATUS_SUCCESS;
}

/* ---- fake_nccl: libnccl for one rank (DEITC_NCCL_LIBRARY=this library) ---------------------
 * Enough of NCCL's API for the runtime's dist_nccl.c with a world of one: the communicator,
 * group calls, all-reduce (recorded like a launch while capturing, so a graph replay repeats
 * it), async errors (never). Stream/event calls the comm stream needs are above, as no-ops:
 * everything here runs in call order on the host. */
typedef struct { char internal[128]; } fake_nccl_id;
static int nccl_comm_token, nccl_group;
EXPORT int ncclGetVersion(int *v) { *v = 22800; return 0; }
EXPORT int ncclGetUniqueId(fake_nccl_id *id) { memset(id, 7, sizeof *id); return 0; }
EXPORT int ncclCommInitRank(void **comm, int nranks, fake_nccl_id id, int rank) {
    (void)id;
    if (nranks != 1 || rank != 0) return 4; /* ncclInvalidArgument: the fake has one rank */
    *comm = &nccl_comm_token;
    return 0;
}
EXPORT int ncclCommDestroy(void *comm) { return comm == &nccl_comm_token ? 0 : 4; }
EXPORT int ncclCommAbort(void *comm) { return comm == &nccl_comm_token ? 0 : 4; }
EXPORT int ncclCommGetAsyncError(void *comm, int *r) { *r = 0; return comm == &nccl_comm_token ? 0 : 4; }
EXPORT int ncclGroupStart(void) { nccl_group++; return 0; }
EXPORT int ncclGroupEnd(void) { return nccl_group-- > 0 ? 0 : 5; }
EXPORT const char *ncclGetErrorString(int r) { return r ? "fake nccl error" : "no error"; }
EXPORT int ncclAllReduce(const void *send, void *recv, size_t count, int type, int redop, void *comm, void *stream) {
    (void)stream;
    if (comm != &nccl_comm_token || redop != 4 /* ncclAvg */ || (type != 7 && type != 6 && type != 9)) return 4;
    size_t bytes = count * (type == 7 ? 4 : 2);
    if (send != recv) memcpy(recv, send, bytes);
    op o = {.kind = 3, .bytes = bytes};
    if (capturing) {
        record(&o);
        nccl_captured++;
    } else {
        nccl_run(&o);
    }
    return 0;
}
EXPORT CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned f) { (void)s, (void)e, (void)f; return CUDA_SUCCESS; }
EXPORT CUresult cuStreamQuery(CUstream s) { (void)s; return faulted ? CUDA_ERROR_ILLEGAL_ADDRESS : CUDA_SUCCESS; }
