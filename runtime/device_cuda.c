/* device_cuda.c: the cuda target's device. The CUDA driver (libcuda.so.1) and cuBLASLt are
 * loaded with dlopen, so an executable starts on any machine and says what is missing; the
 * CUDA headers give the types and the ABI names only (cuda.h maps e.g. cuMemAlloc to
 * cuMemAlloc_v2: the symbol looked up is the macro-expanded name).
 *
 * Start-up does all the slow work once: primary context, one stream, the arena and a GEMM
 * workspace in device memory, the module (cubin; PTX if the cubin does not fit the GPU), one
 * CUfunction per kernel, and for every GEMM step its cuBLASLt descriptors, layouts and the
 * heuristic's algorithm. plan.h's GEMMs are row-major; cuBLASLt is column-major, so each is
 * run as C^T = op(B)^T op(A)^T: cuBLAS's "A" is our B, its "B" our A, m and n swapped.
 * Every call is checked; a failure names the call and the plan step.
 *
 * Kernel faults (an illegal address, say) surface at the next synchronizing call, far from the
 * step that caused them; DEITC_CUDA_SYNC=1 synchronizes after every step run eagerly (not
 * while capturing a graph) so the failure names its step: use it with DEITC_NO_GRAPH=1.
 * The per-step data path (stage slots, copy stream, readback) is device_cuda_stage.c; the state
 * both share is device_cuda_impl.h.
 * libcuda and cuBLASLt stay loaded once a context exists: unloading libraries that hold a
 * context (cuBLASLt links the CUDA runtime statically) is a known source of crashes at exit.
 */
#include "runtime/rt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DEITC_HAVE_CUDA_HEADERS

int rt_device_cuda_new(const rt_plan *p, rt_device **out, char *err, size_t errsize) {
    (void)p;
    *out = NULL;
    snprintf(err, errsize,
             "this executable's runtime was built without the CUDA headers, so it cannot run --target "
             "cuda plans; build one for the CPU with `deitc compile MODEL --target emu -o EXE`");
    return -1;
}

#else

#include "runtime/device_cuda_impl.h"

#include <dlfcn.h>

/* Alignment (bytes) cuBLASLt is promised for an operand; defined with the GEMM set-up below. */
static uint32_t alignment(uint64_t offset, int64_t batch, int64_t stride, rt_dtype t);

/* A GEMM step's shape as a message names it: "m M n N k K batch B, trans TT, A x B -> C, ld
 * LDA/LDB/LDC, batch strides SA/SB/SC elements, aligned A/B/C bytes" (row-major, plan.h's terms). */
static void gemm_shape(const rt_gemm *g, char *buf, size_t size) {
    snprintf(buf, size,
             "m %lld n %lld k %lld batch %lld, trans %d%d, %s x %s -> %s, ld %lld/%lld/%lld, batch strides "
             "%lld/%lld/%lld elements, aligned %u/%u/%u bytes",
             (long long)g->m, (long long)g->n, (long long)g->k, (long long)g->batch, g->trans_a, g->trans_b,
             rt_dtype_name(g->a_type), rt_dtype_name(g->b_type), rt_dtype_name(g->c_type), (long long)g->lda,
             (long long)g->ldb, (long long)g->ldc, (long long)g->stride_a, (long long)g->stride_b,
             (long long)g->stride_c, alignment(g->a, g->batch, g->stride_a, g->a_type),
             alignment(g->b, g->batch, g->stride_b, g->b_type), alignment(g->c, g->batch, g->stride_c, g->c_type));
}

/* " (plan step S: WHAT[; GEMM shape][; while capturing ...])" for the step being prepared or run. */
static void step_context(rt_device *d, char *buf, size_t size) {
    int s = impl(d)->step;
    if (s < 0 || s >= d->plan->num_steps) {
        buf[0] = 0;
        return;
    }
    const rt_plan_step *st = &d->plan->steps[s];
    char shape[320] = "";
    if (st->kind == RT_STEP_GEMM) {
        snprintf(shape, 3, "; ");
        gemm_shape(&st->gemm, shape + 2, sizeof shape - 2);
    }
    snprintf(buf, size, " (plan step %d: %s%s%s)", s, st->what ? st->what : "?", shape,
             impl(d)->capturing ? "; while capturing the step as a CUDA Graph: --no-graph runs it without one" : "");
}

/* Checks a driver call: 0, or -1 with d->err "CALL failed: NAME (text) (plan step ...)". */
int rt_cuda_check(rt_device *d, CUresult r, const char *call) {
    if (r == CUDA_SUCCESS) return 0;
    cuda_impl *c = impl(d);
    const char *name = NULL, *text = NULL;
    if (c->p_cuGetErrorName) c->p_cuGetErrorName(r, &name);
    if (c->p_cuGetErrorString) c->p_cuGetErrorString(r, &text);
    char ctx[700];
    step_context(d, ctx, sizeof ctx);
    snprintf(d->err, sizeof d->err, "%s failed: %s (%s)%s", call, name ? name : "unknown error",
             text ? text : "no description", ctx);
    return -1;
}

static int lt_check(rt_device *d, cublasStatus_t s, const char *call) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    cuda_impl *c = impl(d);
    char ctx[700];
    step_context(d, ctx, sizeof ctx);
    snprintf(d->err, sizeof d->err, "%s failed: %s (status %d)%s", call,
             c->p_cublasLtGetStatusString ? c->p_cublasLtGetStatusString(s) : "cuBLASLt error", (int)s, ctx);
    return -1;
}

/* After a failed synchronizing call: the fault may be an earlier step's (kernels run
 * asynchronously); says how to find which, unless steps are synchronized already. */
int rt_cuda_async_hint(rt_device *d) {
    if (!impl(d)->sync_each) {
        size_t n = strlen(d->err);
        snprintf(d->err + n, sizeof d->err - n,
                 "\n(the fault may come from any kernel or GEMM queued before this call: rerun with "
                 "DEITC_NO_GRAPH=1 DEITC_CUDA_SYNC=1 to name the plan step that fails)");
    }
    return -1;
}

/* Notes a driver older than the CUDA these kernels and cuBLASLt were built with. */
static void old_driver_note(rt_device *d) {
    int v = impl(d)->driver_version;
    if (v > 0 && v / 1000 < CUDA_VERSION / 1000) {
        size_t n = strlen(d->err);
        snprintf(d->err + n, sizeof d->err - n,
                 "\n(the driver supports CUDA %d.%d, older than the CUDA %d.%d this executable was built with: "
                 "update the NVIDIA driver)",
                 v / 1000, v % 1000 / 10, CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10);
    }
}

#define LT(d, fn, ...) lt_check((d), impl(d)->p_##fn(__VA_ARGS__), #fn)

/* ---- operations ---------------------------------------------------------------------------- */

/* The copies are stream-ordered and synchronous to the host: pageable host memory, never
 * inside a capture (the runtime uploads and reads between steps only). */
static int cuda_upload(rt_device *d, uint64_t offset, const void *src, uint64_t bytes) {
    if (!bytes) return 0;
    d->syncs++;
    if (CU(d, cuMemcpyHtoDAsync, impl(d)->arena + offset, src, bytes, impl(d)->stream)) return rt_cuda_async_hint(d);
    return CU(d, cuStreamSynchronize, impl(d)->stream) ? rt_cuda_async_hint(d) : 0;
}

static int cuda_download(rt_device *d, void *dst, uint64_t offset, uint64_t bytes) {
    if (!bytes) return 0;
    d->syncs++;
    if (CU(d, cuMemcpyDtoHAsync, dst, impl(d)->arena + offset, bytes, impl(d)->stream)) return rt_cuda_async_hint(d);
    return CU(d, cuStreamSynchronize, impl(d)->stream) ? rt_cuda_async_hint(d) : 0;
}

/* DEITC_CUDA_SYNC: waits for the step just queued, so a fault names it (c->step is set). */
static int sync_step(rt_device *d) {
    cuda_impl *c = impl(d);
    if (!c->sync_each || c->capturing) return 0;
    return CU(d, cuStreamSynchronize, c->stream);
}

static int cuda_zero(rt_device *d, uint64_t offset, uint64_t bytes) {
    if (!bytes) return 0;
    return CU(d, cuMemsetD8Async, impl(d)->arena + offset, 0, bytes, impl(d)->stream) || sync_step(d) ? -1 : 0;
}

static int cuda_launch(rt_device *d, int step) {
    cuda_impl *c = impl(d);
    const rt_plan_step *s = &d->plan->steps[step];
    rt_kernel_args ka;
    rt_kernel_args_fill(&ka, s, (uint64_t)c->arena);
    c->step = step;
    int rc = CU(d, cuLaunchKernel, c->funcs[s->kernel], s->grid[0], s->grid[1], s->grid[2], s->block[0],
                s->block[1], s->block[2], s->shared_bytes, c->stream, ka.args, NULL);
    if (!rc) rc = sync_step(d);
    c->step = -1;
    rt_kernel_args_release(&ka);
    return rc;
}

static int cuda_gemm_run(rt_device *d, int step) {
    cuda_impl *c = impl(d);
    const rt_gemm *g = &d->plan->steps[step].gemm;
    cuda_gemm *cg = &c->gemms[step];
    if (g->m == 0 || g->n == 0) return 0;
    c->step = step;
    int rc = LT(d, cublasLtMatmul, c->lt, cg->desc, &g->alpha, (const void *)(uintptr_t)(c->arena + g->b), cg->la,
                (const void *)(uintptr_t)(c->arena + g->a), cg->lb, &g->beta,
                (const void *)(uintptr_t)(c->arena + g->c), cg->lc, (void *)(uintptr_t)(c->arena + g->c), cg->lc,
                &cg->algo, (void *)(uintptr_t)c->workspace, (size_t)c->workspace_bytes, c->stream);
    if (!rc) rc = sync_step(d);
    c->step = -1;
    return rc;
}

static int cuda_synchronize(rt_device *d) {
    d->syncs++;
    return CU(d, cuStreamSynchronize, impl(d)->stream) ? rt_cuda_async_hint(d) : 0;
}

static int cuda_capture_begin(rt_device *d) {
    cuda_impl *c = impl(d);
    if (c->exec) c->p_cuGraphExecDestroy(c->exec);
    if (c->graph) c->p_cuGraphDestroy(c->graph);
    c->exec = NULL;
    c->graph = NULL;
    if (CU(d, cuStreamBeginCapture, c->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)) return -1;
    c->capturing = 1;
    return 0;
}

/* A capture that breaks here (an operation CUDA Graphs cannot hold, cuBLASLt's included) names
 * no step: every step was queued without an error. */
static int capture_hint(rt_device *d) {
    size_t n = strlen(d->err);
    snprintf(d->err + n, sizeof d->err - n,
             " (capturing the training step's %d plan steps as a CUDA Graph; --no-graph or DEITC_NO_GRAPH=1 runs "
             "them without one)",
             d->plan->num_steps);
    return -1;
}

static int cuda_capture_end(rt_device *d) {
    cuda_impl *c = impl(d);
    c->capturing = 0;
    if (CU(d, cuStreamEndCapture, c->stream, &c->graph)) return capture_hint(d);
    return CU(d, cuGraphInstantiate, &c->exec, c->graph, 0) ? capture_hint(d) : 0;
}

static int cuda_replay(rt_device *d) {
    cuda_impl *c = impl(d);
    return CU(d, cuGraphLaunch, c->exec, c->stream) ? rt_cuda_async_hint(d) : 0;
}

static int cuda_timer_start(rt_device *d) { return CU(d, cuEventRecord, impl(d)->ev_start, impl(d)->stream); }

static int cuda_timer_stop(rt_device *d, double *ms) {
    cuda_impl *c = impl(d);
    float f = 0;
    d->syncs++;
    if (CU(d, cuEventRecord, c->ev_stop, c->stream) || CU(d, cuEventSynchronize, c->ev_stop) ||
        CU(d, cuEventElapsedTime, &f, c->ev_start, c->ev_stop))
        return rt_cuda_async_hint(d);
    *ms = f;
    return 0;
}

static void cuda_destroy(rt_device *d) {
    cuda_impl *c = impl(d);
    if (c) {
        if (c->have_ctx) {
            if (c->stream) c->p_cuStreamSynchronize(c->stream);
            if (c->copy_stream) c->p_cuStreamSynchronize(c->copy_stream);
            rt_cuda_stage_release(c, 1);
            if (c->exec) c->p_cuGraphExecDestroy(c->exec);
            if (c->graph) c->p_cuGraphDestroy(c->graph);
            if (c->gemms)
                for (int i = 0; i < d->plan->num_steps; i++) {
                    cuda_gemm *g = &c->gemms[i];
                    if (g->la) c->p_cublasLtMatrixLayoutDestroy(g->la);
                    if (g->lb) c->p_cublasLtMatrixLayoutDestroy(g->lb);
                    if (g->lc) c->p_cublasLtMatrixLayoutDestroy(g->lc);
                    if (g->desc) c->p_cublasLtMatmulDescDestroy(g->desc);
                }
            if (c->lt) c->p_cublasLtDestroy(c->lt);
            if (c->ev_start) c->p_cuEventDestroy(c->ev_start);
            if (c->ev_stop) c->p_cuEventDestroy(c->ev_stop);
            if (c->module) c->p_cuModuleUnload(c->module);
            if (c->own_workspace) c->p_cuMemFree(c->workspace);
            if (c->arena) c->p_cuMemFree(c->arena);
            if (c->stream) c->p_cuStreamDestroy(c->stream);
            c->p_cuDevicePrimaryCtxRelease(c->dev);
        }
        free(c->gemms);
        free(c->funcs);
        /* once a context exists the libraries stay loaded until exit (see the top) */
        if (c->liblt && !c->have_ctx) dlclose(c->liblt);
        if (c->libcuda && !c->have_ctx) dlclose(c->libcuda);
        free(c);
    }
    free(d);
}

/* ---- start-up ------------------------------------------------------------------------------ */

static int load_driver(rt_device *d) {
    cuda_impl *c = impl(d);
    const char *env = getenv("DEITC_LIBCUDA");
    c->libcuda = dlopen(env && *env ? env : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!c->libcuda) {
        const char *why = dlerror();
        snprintf(d->err, sizeof d->err,
                 "no CUDA driver: cannot load libcuda.so.1 (%s).\nThis executable was compiled for --target "
                 "cuda and needs an NVIDIA GPU with its driver. On this machine, build one that runs on the "
                 "CPU instead: deitc compile MODEL --target emu -o EXE",
                 why ? why : "not found");
        return -1;
    }
    /* drivers before 12.8 have only the first cuEventElapsedTime (same signature) */
#define LOAD_CU(f)                                                                                               \
    if (!(c->p_##f = (__typeof__(&f))dlsym(c->libcuda, XSTR(f))) &&                                              \
        !(strcmp(XSTR(f), "cuEventElapsedTime_v2") == 0 &&                                                       \
          (c->p_##f = (__typeof__(&f))dlsym(c->libcuda, "cuEventElapsedTime")))) {                               \
        snprintf(d->err, sizeof d->err, "the CUDA driver is too old: libcuda.so.1 has no %s (update the driver)", \
                 XSTR(f));                                                                                       \
        return -1;                                                                                               \
    }
    CU_FUNCS(LOAD_CU)
#undef LOAD_CU
    return 0;
}

static int load_cublaslt(rt_device *d) {
    cuda_impl *c = impl(d);
    const char *env = getenv("DEITC_CUBLASLT");
    const char *names[] = {env && *env ? env : "libcublasLt.so.13", "libcublasLt.so.13", "libcublasLt.so",
                           "/usr/local/cuda/lib64/libcublasLt.so.13", "/usr/local/cuda/lib64/libcublasLt.so"};
    const char *why = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !c->liblt; i++) {
        c->liblt = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!c->liblt && !why) why = dlerror();
    }
    if (!c->liblt) {
        snprintf(d->err, sizeof d->err,
                 "cannot load cuBLASLt (libcublasLt.so.13: %s): install the CUDA 13 cuBLAS library, or point "
                 "DEITC_CUBLASLT at libcublasLt.so",
                 why ? why : "not found");
        return -1;
    }
#define LOAD_LT(f)                                                                                               \
    if (!(c->p_##f = (__typeof__(&f))dlsym(c->liblt, XSTR(f)))) {                                                \
        snprintf(d->err, sizeof d->err, "cuBLASLt library too old: it has no %s", XSTR(f));                      \
        return -1;                                                                                               \
    }
    LT_FUNCS(LOAD_LT)
#undef LOAD_LT
    return 0;
}

static int load_module(rt_device *d) {
    cuda_impl *c = impl(d);
    const rt_plan *p = d->plan;
    int major = 0, minor = 0;
    c->p_cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, c->dev);
    c->p_cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, c->dev);
    char cubin_err[512] = "";
    if (p->cubin && p->cubin_size) {
        if (CU(d, cuModuleLoadData, &c->module, p->cubin) == 0) return 0;
        snprintf(cubin_err, sizeof cubin_err, "%.500s", d->err);
        c->module = NULL;
    }
    if (p->ptx) {
        char log[4096] = "";
        CUjit_option opts[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
        void *vals[2] = {log, (void *)(uintptr_t)sizeof log};
        if (CU(d, cuModuleLoadDataEx, &c->module, p->ptx, 2, opts, vals) == 0) return 0;
        c->module = NULL;
        size_t n = strlen(d->err);
        snprintf(d->err + n, sizeof d->err - n, "%s%s\n(kernels built for %s; this GPU is sm_%d%d)",
                 cubin_err[0] ? "\nafter the cubin: " : "", cubin_err, p->arch ? p->arch : "?", major, minor);
        if (log[0]) {
            n = strlen(d->err);
            snprintf(d->err + n, sizeof d->err - n, "\nPTX JIT log: %.600s", log);
        }
        old_driver_note(d);
        return -1;
    }
    if (cubin_err[0]) {
        size_t n = strlen(d->err);
        snprintf(d->err + n, sizeof d->err - n,
                 "\n(kernels built for %s; this GPU is sm_%d%d: recompile with --arch sm_%d%d)",
                 p->arch ? p->arch : "?", major, minor, major, minor);
        old_driver_note(d);
        return -1;
    }
    if (p->num_kernels > 0) {
        snprintf(d->err, sizeof d->err, "plan: %d kernels but no cubin or PTX", p->num_kernels);
        return -1;
    }
    return 0;
}

static cudaDataType_t lt_type(rt_dtype t) {
    return t == RT_F16 ? CUDA_R_16F : t == RT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

/* Largest power of two (<= 256) dividing the operand's address and its batch stride. */
static uint32_t alignment(uint64_t offset, int64_t batch, int64_t stride, rt_dtype t) {
    uint32_t a = 256;
    while (a > 1 && (offset % a || (batch > 1 && ((uint64_t)stride * rt_dtype_size(t)) % a))) a /= 2;
    return a;
}

static int make_layout(rt_device *d, cublasLtMatrixLayout_t *l, rt_dtype t, int64_t rows, int64_t cols, int64_t ld,
                       int64_t batch, int64_t stride) {
    if (LT(d, cublasLtMatrixLayoutCreate, l, lt_type(t), (uint64_t)rows, (uint64_t)cols, ld)) return -1;
    if (batch > 1) {
        int32_t count = (int32_t)batch;
        if (LT(d, cublasLtMatrixLayoutSetAttribute, *l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count) ||
            LT(d, cublasLtMatrixLayoutSetAttribute, *l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
               sizeof stride))
            return -1;
    }
    return 0;
}

/* The start-up check of a GEMM's 16-bit operands: an operand whose leading dimension keeps
 * 16-byte rows (a multiple of 8 elements: the memory plan pads attention's rows to one) must
 * start and stride (batch) on 16 bytes too, or the tensor-core algorithms would be chosen for
 * a layout they cannot take. A leading dimension the model fixes below that (10 classes, say)
 * is passed to cuBLASLt with its true alignment (slower algorithms, not an error). */
static int check_16bit_alignment(rt_device *d, int s) {
    const rt_gemm *g = &d->plan->steps[s].gemm;
    const struct {
        const char *name;
        rt_dtype t;
        int64_t ld, stride;
        uint64_t off;
    } ops[3] = {{"A", g->a_type, g->lda, g->stride_a, g->a},
                {"B", g->b_type, g->ldb, g->stride_b, g->b},
                {"C", g->c_type, g->ldc, g->stride_c, g->c}};
    for (int k = 0; k < 3; k++) {
        if (ops[k].t != RT_F16 && ops[k].t != RT_BF16) continue;
        if ((ops[k].ld * 2) % 16 || alignment(ops[k].off, g->batch, ops[k].stride, ops[k].t) >= 16) continue;
        char shape[400];
        gemm_shape(g, shape, sizeof shape);
        snprintf(d->err, sizeof d->err,
                 "plan step %d (%s): 16-bit GEMM operand %s has 16-byte rows (ld %lld) but starts or strides off 16 "
                 "bytes (%s); tensor cores need 16-byte-aligned operands: the plan is not one deitc's memory plan makes",
                 s, d->plan->steps[s].what ? d->plan->steps[s].what : "?", ops[k].name, (long long)ops[k].ld, shape);
        return -1;
    }
    return 0;
}

/* The plan's epilogue (plan.h's rt_epilogue) on the descriptor: cuBLASLt's GELU_AUX_BIAS or
 * DGELU_BGRAD, the bias (or bias gradient) and aux pointers into the arena and aux's leading
 * dimension. Column-major, cuBLASLt's D is our C transposed: its m (rows) is our n, so the
 * bias over D's rows is ours over C's columns, and aux, [m, n] row-major with pitch ldaux, is
 * D's layout with ld = ldaux. */
static int set_epilogue(rt_device *d, int s, const rt_gemm *g, cuda_gemm *cg) {
    cuda_impl *c = impl(d);
    if (g->batch != 1 || g->beta != 0 || g->ldaux % 8 != 0 || g->ldaux < g->n) {
        snprintf(d->err, sizeof d->err, "step %d (%s): GEMM epilogue %d needs batch 1, beta 0 and an aux pitch that is "
                 "a multiple of 8 and at least n (batch %lld, ldaux %lld, n %lld)", s,
                 d->plan->steps[s].what ? d->plan->steps[s].what : "?", (int)g->epilogue, (long long)g->batch,
                 (long long)g->ldaux, (long long)g->n);
        return -1;
    }
    cublasLtEpilogue_t epi =
        g->epilogue == RT_EPILOGUE_GELU_AUX_BIAS ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_DGELU_BGRAD;
    void *bias = (void *)(uintptr_t)(c->arena + g->bias), *aux = (void *)(uintptr_t)(c->arena + g->aux);
    int64_t ld = g->ldaux;
    cudaDataType_t t = g->c_type == RT_F16 ? CUDA_R_16F : g->c_type == RT_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    return LT(d, cublasLtMatmulDescSetAttribute, cg->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) ||
           LT(d, cublasLtMatmulDescSetAttribute, cg->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias) ||
           LT(d, cublasLtMatmulDescSetAttribute, cg->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &t, sizeof t) ||
           LT(d, cublasLtMatmulDescSetAttribute, cg->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux) ||
           LT(d, cublasLtMatmulDescSetAttribute, cg->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld) ||
           LT(d, cublasLtMatmulDescSetAttribute, cg->desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE, &t, sizeof t);
}

/* Descriptors, layouts and algorithm of GEMM step s, made once. */
static int prepare_gemm(rt_device *d, int s, cublasLtMatmulPreference_t pref_base) {
    cuda_impl *c = impl(d);
    const rt_gemm *g = &d->plan->steps[s].gemm;
    cuda_gemm *cg = &c->gemms[s];
    if (g->m == 0 || g->n == 0) return 0;
    c->step = s;
    if (check_16bit_alignment(d, s)) return -1;
    /* the plan's compute type (--precision tf32); DEITC_TF32 is no longer read */
    if (g->compute != RT_COMPUTE_32F && (g->compute != RT_COMPUTE_32F_FAST_TF32 || g->a_type != RT_F32 ||
                                         g->b_type != RT_F32)) {
        snprintf(d->err, sizeof d->err, "step %d (%s): GEMM compute type %d with %s x %s operands is not supported",
                 s, d->plan->steps[s].what ? d->plan->steps[s].what : "?", (int)g->compute, rt_dtype_name(g->a_type),
                 rt_dtype_name(g->b_type));
        return -1;
    }
    cublasComputeType_t compute =
        g->compute == RT_COMPUTE_32F_FAST_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    if (LT(d, cublasLtMatmulDescCreate, &cg->desc, compute, CUDA_R_32F)) return -1;
    int32_t op_first = g->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_second = g->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (LT(d, cublasLtMatmulDescSetAttribute, cg->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first) ||
        LT(d, cublasLtMatmulDescSetAttribute, cg->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second))
        return -1;
    if (g->epilogue != RT_EPILOGUE_NONE && set_epilogue(d, s, g, cg)) return -1;
    /* cuBLAS A = our B as stored (column-major view of row-major storage swaps rows/cols) */
    if (make_layout(d, &cg->la, g->b_type, g->trans_b ? g->k : g->n, g->trans_b ? g->n : g->k, g->ldb, g->batch,
                    g->stride_b) ||
        make_layout(d, &cg->lb, g->a_type, g->trans_a ? g->m : g->k, g->trans_a ? g->k : g->m, g->lda, g->batch,
                    g->stride_a) ||
        make_layout(d, &cg->lc, g->c_type, g->n, g->m, g->ldc, g->batch, g->stride_c))
        return -1;
    cublasLtMatmulPreference_t pref = pref_base;
    uint32_t al_a = alignment(g->b, g->batch, g->stride_b, g->b_type);
    uint32_t al_b = alignment(g->a, g->batch, g->stride_a, g->a_type);
    uint32_t al_c = alignment(g->c, g->batch, g->stride_c, g->c_type);
    if (LT(d, cublasLtMatmulPreferenceSetAttribute, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
           sizeof al_a) ||
        LT(d, cublasLtMatmulPreferenceSetAttribute, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
           sizeof al_b) ||
        LT(d, cublasLtMatmulPreferenceSetAttribute, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c,
           sizeof al_c) ||
        LT(d, cublasLtMatmulPreferenceSetAttribute, pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c,
           sizeof al_c))
        return -1;
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    memset(&result, 0, sizeof result);
    if (LT(d, cublasLtMatmulAlgoGetHeuristic, c->lt, cg->desc, cg->la, cg->lb, cg->lc, cg->lc, pref, 1, &result,
           &found))
        return -1;
    if (found < 1 || result.state != CUBLAS_STATUS_SUCCESS) {
        char shape[320];
        gemm_shape(g, shape, sizeof shape);
        snprintf(d->err, sizeof d->err, "cuBLASLt has no algorithm for plan step %d (%s): %s, compute %s", s,
                 d->plan->steps[s].what ? d->plan->steps[s].what : "?", shape, g->compute == RT_COMPUTE_32F_FAST_TF32 ? "32F_FAST_TF32" : "32F");
        return -1;
    }
    cg->algo = result.algo;
    c->step = -1;
    return 0;
}

static int start(rt_device *d) {
    cuda_impl *c = impl(d);
    const rt_plan *p = d->plan;
    if (load_driver(d)) return -1;
    CUresult r = c->p_cuInit(0);
    if (r != CUDA_SUCCESS) {
        rt_cuda_check(d, r, "cuInit");
        char why[600];
        snprintf(why, sizeof why, "%.590s", d->err);
        snprintf(d->err, sizeof d->err,
                 "no usable CUDA device: %s.\nOn a machine without a GPU, build an executable for the CPU: "
                 "deitc compile MODEL --target emu -o EXE",
                 why);
        return -1;
    }
    int count = 0, version = 0;
    if (CU(d, cuDeviceGetCount, &count)) return -1;
    if (count < 1) {
        snprintf(d->err, sizeof d->err, "no CUDA device found (the driver sees none)");
        return -1;
    }
    const char *env = getenv("DEITC_DEVICE");
    int ordinal = env && *env ? atoi(env) : 0;
    if (ordinal < 0 || ordinal >= count) {
        snprintf(d->err, sizeof d->err, "DEITC_DEVICE=%s: there are %d CUDA devices", env, count);
        return -1;
    }
    if (CU(d, cuDeviceGet, &c->dev, ordinal)) return -1;
    if (CU(d, cuDevicePrimaryCtxRetain, &c->ctx, c->dev)) return -1;
    c->have_ctx = 1;
    if (CU(d, cuCtxSetCurrent, c->ctx)) return -1;
    char gpu[200] = "?";
    int major = 0, minor = 0;
    c->p_cuDeviceGetName(gpu, sizeof gpu, c->dev);
    c->p_cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, c->dev);
    c->p_cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, c->dev);
    c->p_cuDriverGetVersion(&version);
    c->driver_version = version;
    snprintf(d->name, sizeof d->name, "%s (sm_%d%d), driver %d.%d", gpu, major, minor, version / 1000,
             version % 1000 / 10);
    if (CU(d, cuStreamCreate, &c->stream, CU_STREAM_NON_BLOCKING)) return -1;
    if (CU(d, cuEventCreate, &c->ev_start, CU_EVENT_DEFAULT) || CU(d, cuEventCreate, &c->ev_stop, CU_EVENT_DEFAULT))
        return -1;
    if (p->arena_bytes) {
        if (CU(d, cuMemAlloc, &c->arena, (size_t)p->arena_bytes)) {
            size_t n = strlen(d->err);
            snprintf(d->err + n, sizeof d->err - n, " allocating the arena (%.1f MiB)",
                     (double)p->arena_bytes / (1 << 20));
            return -1;
        }
        if (CU(d, cuMemsetD8Async, c->arena, 0, (size_t)p->arena_bytes, c->stream)) return -1;
    }
    d->mem_bytes = p->arena_bytes;
    d->native_stream = c->stream;
    d->arena_address = (uint64_t)c->arena;
    if (load_module(d)) return -1;
    c->funcs = calloc((size_t)p->num_kernels + 1, sizeof *c->funcs);
    if (!c->funcs) abort();
    for (int k = 0; k < p->num_kernels; k++) {
        if (rt_cuda_check(d, c->p_cuModuleGetFunction(&c->funcs[k], c->module, p->kernel_names[k]),
                     "cuModuleGetFunction")) {
            size_t n = strlen(d->err);
            snprintf(d->err + n, sizeof d->err - n, " for kernel '%s'", p->kernel_names[k]);
            return -1;
        }
        unsigned max_shared = 0;
        for (int s = 0; s < p->num_steps; s++)
            if (p->steps[s].kind == RT_STEP_KERNEL && p->steps[s].kernel == k && p->steps[s].shared_bytes > max_shared)
                max_shared = p->steps[s].shared_bytes;
        if (max_shared > 48 * 1024 &&
            rt_cuda_check(d, c->p_cuFuncSetAttribute(c->funcs[k], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                                (int)max_shared),
                     "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)")) {
            size_t n = strlen(d->err);
            snprintf(d->err + n, sizeof d->err - n, " for kernel '%s' (%u bytes)", p->kernel_names[k], max_shared);
            return -1;
        }
    }
    int gemms = 0;
    for (int s = 0; s < p->num_steps; s++) gemms += p->steps[s].kind == RT_STEP_GEMM;
    c->gemms = calloc((size_t)p->num_steps + 1, sizeof *c->gemms);
    if (!c->gemms) abort();
    if (gemms) {
        if (load_cublaslt(d)) return -1;
        if (LT(d, cublasLtCreate, &c->lt)) {
            old_driver_note(d);
            return -1;
        }
        if (p->gemm_workspace_bytes) { /* the plan reserved it in the arena */
            c->workspace = c->arena + p->gemm_workspace_offset;
            c->workspace_bytes = p->gemm_workspace_bytes;
        } else {
            if (CU(d, cuMemAlloc, &c->workspace, (size_t)WORKSPACE_BYTES)) return -1;
            c->own_workspace = 1;
            c->workspace_bytes = WORKSPACE_BYTES;
            d->mem_bytes += WORKSPACE_BYTES;
        }
        cublasLtMatmulPreference_t pref = NULL;
        uint64_t ws = c->workspace_bytes;
        if (LT(d, cublasLtMatmulPreferenceCreate, &pref)) return -1;
        int rc = LT(d, cublasLtMatmulPreferenceSetAttribute, pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                    sizeof ws);
        for (int s = 0; s < p->num_steps && !rc; s++)
            if (p->steps[s].kind == RT_STEP_GEMM) rc = prepare_gemm(d, s, pref);
        c->p_cublasLtMatmulPreferenceDestroy(pref);
        if (rc) return -1;
    }
    return CU(d, cuStreamSynchronize, c->stream);
}

int rt_device_cuda_new(const rt_plan *p, rt_device **out, char *err, size_t errsize) {
    *out = NULL;
    rt_device *d = calloc(1, sizeof *d);
    cuda_impl *c = calloc(1, sizeof *c);
    if (!d || !c) abort();
    c->step = -1;
    if (rt_env_flag("DEITC_CUDA_SYNC", &c->sync_each, err, errsize)) { /* 0 and false are off */
        free(c);
        free(d);
        return -1;
    }
    d->target = "cuda";
    d->plan = p;
    d->impl = c;
    d->upload = cuda_upload;
    d->download = cuda_download;
    d->zero = cuda_zero;
    d->launch = cuda_launch;
    d->gemm = cuda_gemm_run;
    d->synchronize = cuda_synchronize;
    d->capture_begin = cuda_capture_begin;
    d->capture_end = cuda_capture_end;
    d->replay = cuda_replay;
    d->timer_start = cuda_timer_start;
    d->timer_stop = cuda_timer_stop;
    d->destroy = cuda_destroy;
    rt_cuda_stage_install(d);
    if (start(d)) {
        snprintf(err, errsize, "%s", d->err);
        cuda_destroy(d);
        return -1;
    }
    *out = d;
    return 0;
}

#endif /* DEITC_HAVE_CUDA_HEADERS */
