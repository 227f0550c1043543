/* cuda_emu.h: runs the CUDA C of a generated kernels.cu on the CPU (the `emu` target).
 *
 * Compile kernels.cu with the host C++ compiler: `g++ -std=c++17 -O3 -DDEITC_EMU -I runtime`
 * (no -ffast-math: fp16 emulation and inf/nan handling rely on IEEE floats). Header only: no
 * object file to link, pthreads for the optional second OS thread (link -pthread).
 *
 * What is emulated: the qualifiers (__global__, __device__, __forceinline__, __shared__,
 * __launch_bounds__, __align__); dim3/uint3, float2/float4/int2/int4/uint2/uint4 + make_*;
 * threadIdx/blockIdx/blockDim/gridDim (per fiber); __syncthreads, __syncwarp, warp shuffles
 * (__shfl_sync/_xor/_down/_up with width, full mask only) and __ballot/__any/__all_sync with
 * real semantics over the 32 lanes; atomics (atomicAdd on float/double/int/unsigned/ull,
 * atomicMax/Min/Exch/CAS); the CUDA math names (expf, __expf, erff, tanhf, rsqrtf, ...);
 * bit casts (__float_as_int ...); __half/__nv_bfloat16 storage types with bit-exact
 * round-to-nearest-even conversions (subnormals, inf, nan -> canonical 0x7fff); the
 * tensor-core warp operations of the prelude's dc_mma.cuh (cuda_emu_mma.h).
 * Never write `extern __shared__`: use the prelude's DC_DYNAMIC_SHARED(T, name).
 *
 * How to launch (from C++ host code in the same translation unit as the kernels):
 *
 *     EMU_LAUNCH(softmax_rows, dim3(rows), dim3(128), dyn_shared_bytes, true, y, x, cols);
 *     // = emu_launch("softmax_rows", softmax_rows, grid, block, dyn_shared_bytes,
 *     //              needs_fibers, args...)
 *
 * Both are macros that make the kernel a template argument (so it must be a kernel's name, not
 * a function pointer variable): the compiler inlines it into the per-block thread loop.
 *
 * needs_fibers: pass true when the kernel (or a helper it calls) uses __syncthreads, a warp
 * shuffle/vote or __syncwarp; its threads then run as cooperative fibers. Pass false for
 * barrier-free kernels: each block's threads run as a plain loop (much faster). A barrier met
 * without fibers, a thread that exits while others wait at a barrier (deadlock), a shuffle in
 * a partial warp or with a mask other than 0xffffffff: each aborts with a message naming the
 * kernel, the block and the thread, and exits with status 3. Launches are synchronous.
 *
 * Blocks run one after another; emu_set_threads(n) or DEITC_EMU_THREADS=n spreads them over n
 * OS threads (default 1: deterministic order of float atomics). __shared__ is `static
 * thread_local`: one copy per OS thread, owned by the block that thread runs.
 *
 * Fibers switch with a 14-instruction x86-64 stack swap (elsewhere, or with -DEMU_USE_UCONTEXT,
 * ucontext). Under AddressSanitizer every switch is annotated (__sanitizer_*_switch_fiber),
 * so out-of-bounds accesses in kernels are reported as in any host code.
 *
 * Where the time goes (and what keeps it low): a fiber kernel costs about one stack swap
 * (~15-20 ns with its cache misses) per thread and rendezvous, plus one per thread start.
 * So: a waiting thread hands control straight to the next runnable one (no scheduler in
 * between); fibers live on from block to block and launch to launch, parked between threads
 * (no context set-up per block); dc_warp_sum/max and dc_block_sum/sum2/max meet once instead of
 * once per shuffle and barrier (emu::warp_reduce, emu::block_reduce: the GPU arithmetic, bit for
 * bit); stack tops are staggered against L1 set aliasing. Fewer threads per reduction help most:
 * codegen gives rows of up to 1024 one warp each (32 fibers a row, not 200+).
 */
#ifndef DEITC_CUDA_EMU_H
#define DEITC_CUDA_EMU_H

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__) && !defined(EMU_USE_UCONTEXT)
#define EMU_USE_UCONTEXT 1
#endif
#ifdef EMU_USE_UCONTEXT
#include <ucontext.h>
#endif

/* ---- qualifiers and built-in types ------------------------------------------------------ */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ static thread_local
#define __constant__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

/* Per-fiber built-ins: the scheduler sets them before it resumes a thread. */
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

/* ---- math and bit casts ----------------------------------------------------------------- */

/* glibc declares __expf & co itself (they are expf & co): macros, not functions */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __tanhf(x) tanhf(x)
#define __powf(x, y) powf(x, y)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
template <typename T> static inline T __ldg(const T *p) { return *p; }
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* ---- fp16 / bf16: storage types, bit-exact round-to-nearest-even conversions ------------- */

struct __align__(2) __half { unsigned short x; };
struct __align__(2) __nv_bfloat16 { unsigned short x; };

static inline unsigned short emu_f32_to_f16_bits(float f) {
    uint32_t u = (uint32_t)__float_as_uint(f);
    unsigned short sign = (unsigned short)((u >> 16) & 0x8000u);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u) return 0x7fff;                 /* nan: canonical, as cvt.rn.f16.f32 */
    if (u >= 0x477ff000u) return sign | 0x7c00;         /* >= 65520 rounds to inf */
    if (u >= 0x38800000u) {                             /* normal half: >= 2^-14 */
        uint32_t r = u + 0xfffu + ((u >> 13) & 1u);     /* round the 13 dropped bits, ties even */
        return (unsigned short)(sign | ((r >> 13) - (112u << 10)));
    }
    int shift = 126 - (int)(u >> 23);                   /* subnormal half: units of 2^-24 */
    if (shift > 24) return sign;                        /* < 2^-25: rounds to zero */
    uint32_t m = (u & 0x7fffffu) | 0x800000u, q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (unsigned short)(sign | q);
}
static inline float emu_f16_bits_to_f32(unsigned short h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0) return __uint_as_float(sign);
        e = 113;
        while (!(m & 0x400u)) { m <<= 1; e--; }
        return __uint_as_float(sign | (e << 23) | ((m & 0x3ffu) << 13));
    }
    return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}
static inline unsigned short emu_f32_to_bf16_bits(float f) {
    uint32_t u = (uint32_t)__float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline __half __float2half_rn(float f) { return {emu_f32_to_f16_bits(f)}; }
static inline __half __float2half(float f) { return __float2half_rn(f); }
static inline float __half2float(__half h) { return emu_f16_bits_to_f32(h.x); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {emu_f32_to_bf16_bits(f)}; }
static inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
static inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float((uint32_t)b.x << 16); }

/* ---- atomics (real ones: blocks may run on several OS threads) -------------------------- */

template <typename T> static inline T emu_atomic_update(T *p, T v, int op) {
    T old, nw;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    do {
        nw = op == 0 ? old + v : op == 1 ? (v > old ? v : old) : (v < old ? v : old);
    } while (!__atomic_compare_exchange(p, &old, &nw, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
static inline float atomicAdd(float *p, float v) { return emu_atomic_update(p, v, 0); }
static inline double atomicAdd(double *p, double v) { return emu_atomic_update(p, v, 0); }
static inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
static inline int atomicMax(int *p, int v) { return emu_atomic_update(p, v, 1); }
static inline int atomicMin(int *p, int v) { return emu_atomic_update(p, v, 2); }
static inline unsigned atomicMax(unsigned *p, unsigned v) { return emu_atomic_update(p, v, 1); }
static inline unsigned atomicMin(unsigned *p, unsigned v) { return emu_atomic_update(p, v, 2); }
template <typename T> static inline T atomicExch(T *p, T v) {
    T old;
    __atomic_exchange(p, &v, &old, __ATOMIC_RELAXED);
    return old;
}
template <typename T> static inline T atomicCAS(T *p, T cmp, T v) {
    __atomic_compare_exchange(p, &cmp, &v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp; /* the old value either way */
}

/* ---- fibers: a context switch ------------------------------------------------------------ */

namespace emu {

#ifdef EMU_USE_UCONTEXT
typedef ucontext_t Ctx;
static inline void ctx_swap(Ctx *from, Ctx *to) { swapcontext(from, to); }
static inline void ctx_make(Ctx *c, char *stack, size_t size, void (*fn)()) {
    getcontext(c);
    c->uc_stack.ss_sp = stack;
    c->uc_stack.ss_size = size;
    c->uc_link = nullptr;
    makecontext(c, fn, 0);
}
#else
struct Ctx { void *sp; };
extern "C" void emu_ctx_swap_x64(void **save_sp, void *load_sp);
extern "C" void emu_fiber_start_x64();
/* Saves the callee-saved registers on the current stack, stores rsp, loads the other stack
 * and pops its registers; a fresh stack "returns" into emu_fiber_start_x64, which calls r13. */
asm(R"(
    .pushsection .text
    .weak emu_ctx_swap_x64
    .type emu_ctx_swap_x64, @function
emu_ctx_swap_x64:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_swap_x64, .-emu_ctx_swap_x64
    .weak emu_fiber_start_x64
    .type emu_fiber_start_x64, @function
emu_fiber_start_x64:
    callq *%r13
    ud2
    .size emu_fiber_start_x64, .-emu_fiber_start_x64
    .popsection
)");
static inline void ctx_swap(Ctx *from, Ctx *to) { emu_ctx_swap_x64(&from->sp, to->sp); }
static inline void ctx_make(Ctx *c, char *stack, size_t size, void (*fn)()) {
    void **sp = (void **)(stack + size) - 9; /* after the 7 pops, rsp is 16-byte aligned */
    memset(sp, 0, 9 * sizeof(void *));
    sp[2] = (void *)fn;                      /* r13 */
    sp[6] = (void *)emu_fiber_start_x64;     /* return address */
    c->sp = sp;
}
#endif

/* ---- the scheduler ----------------------------------------------------------------------- */

/* WAIT_BLOCK: at __syncthreads; WAIT_WARP: at a warp operation; WAIT_RED: at a block reduction */
enum { RUNNABLE, WAIT_BLOCK, WAIT_WARP, WAIT_RED, DONE, NSTATES };
#ifdef EMU_ASAN
constexpr size_t STACK_BYTES = 256 << 10;
#else
constexpr size_t STACK_BYTES = 64 << 10;
#endif
constexpr size_t GUARD_BYTES = 4096;

struct Launch {
    const char *name;
    dim3 grid, block;
    size_t dyn_bytes;
    bool fibers;
    void (*call)(void *);   /* runs the kernel body once for the current thread */
    void (*call_block)(void *, dim3); /* runs it for every thread of a block in turn (no fibers) */
    void *ctx;
    long nblocks, next;     /* next: the block to take (atomic) */
};

struct Fiber {
    Ctx ctx;
    void *asan_fake;
    int state, idx;           /* idx: linear thread index in the block */
    uint3 tid;
    unsigned lane, warp, seq; /* seq: warp operations done (selects the exchange buffer) */
};

/* One per OS thread (thread_local, zero-initialized, so no constructor runs). */
struct Worker {
    Fiber *fibers;
    char *stacks;             /* cap stacks of GUARD_BYTES + STACK_BYTES, guard at the bottom */
    int cap, made;            /* made: fibers 0..made-1 exist (parked between blocks) */
    Ctx sched;
    void *sched_fake;
    const void *sched_bottom;
    size_t sched_size;
    const Launch *L;
    Fiber *cur;               /* the running fiber; null in a plain-loop block */
    int nthreads, n_wait_block, n_wait_red, n_done;
    int warp_arrived[32];
    unsigned long long xchg[32][2][32]; /* [warp][seq & 1][lane]: values of warp operations */
    float red_in[1024][2];    /* block reductions: each thread's (up to 2) values */
    float red_out[32][2];     /* ... and the results, by lane */
    unsigned char *dyn_smem;
    unsigned long long switches;
};
inline thread_local Worker tls_worker;

[[noreturn]] __attribute__((format(printf, 1, 2))) static inline void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("emu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(nullptr);
    _Exit(3); /* a kernel bug: exit status 3 (break on _Exit in a debugger) */
}

static inline void asan_start(void **fake, const void *bottom, size_t size) {
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(fake, bottom, size);
#else
    (void)fake, (void)bottom, (void)size;
#endif
}
static inline void asan_finish(void *fake, const void **bottom_old, size_t *size_old) {
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, bottom_old, size_old);
#else
    (void)fake, (void)bottom_old, (void)size_old;
#endif
}
static inline char *stack_of(Worker *w, int i) {
    return w->stacks + (size_t)i * (GUARD_BYTES + STACK_BYTES) + GUARD_BYTES;
}

static inline const char *thread_str(char *buf, uint3 t) {
    snprintf(buf, 48, "(%u,%u,%u)", t.x, t.y, t.z);
    return buf;
}

[[noreturn]] static inline void deadlock(Worker *w) {
    int n[NSTATES] = {0}, first[NSTATES];
    for (int s = 0; s < NSTATES; s++) first[s] = -1;
    for (int i = 0; i < w->nthreads; i++) {
        int s = w->fibers[i].state;
        if (first[s] < 0) first[s] = i;
        n[s]++;
    }
    char b[4][48];
    for (int s = WAIT_BLOCK; s <= DONE; s++)
        if (first[s] < 0) strcpy(b[s - 1], "-");
        else thread_str(b[s - 1], w->fibers[first[s]].tid);
    fatal("deadlock in kernel '%s', block (%u,%u,%u) of %d threads: %d exited (first: thread %s), "
          "%d wait at __syncthreads (first: %s), %d wait at a warp operation (first: %s), %d wait at "
          "a block reduction (first: %s); every thread of the block must reach each __syncthreads "
          "and dc_block_*, and all 32 lanes each warp operation",
          w->L->name, blockIdx.x, blockIdx.y, blockIdx.z, w->nthreads, n[DONE], b[DONE - 1], n[WAIT_BLOCK],
          b[WAIT_BLOCK - 1], n[WAIT_WARP], b[WAIT_WARP - 1], n[WAIT_RED], b[WAIT_RED - 1]);
}

/* The running fiber f stops (its state is already WAIT_* or DONE): control goes straight to
 * the next runnable fiber of the block after it (round robin), or back to the scheduler once
 * every thread of the block has exited. One stack swap, no trip through the scheduler. */
static inline void switch_from(Worker *w, Fiber *f) {
    const int n = w->nthreads;
    Fiber *fs = w->fibers;
    int j = f->idx;
    Fiber *g = nullptr;
    for (int k = 0; k < n; k++) {
        if (++j == n) j = 0;
        if (fs[j].state == RUNNABLE) {
            g = &fs[j];
            break;
        }
    }
    w->switches++;
    if (g) {
        w->cur = g;
        threadIdx = g->tid;
        asan_start(&f->asan_fake, stack_of(w, j), STACK_BYTES);
        ctx_swap(&f->ctx, &g->ctx);
    } else {
        if (w->n_done < n) deadlock(w);
        w->cur = nullptr;
        asan_start(&f->asan_fake, w->sched_bottom, w->sched_size);
        ctx_swap(&f->ctx, &w->sched);
    }
    asan_finish(f->asan_fake, nullptr, nullptr);
}

/* A fiber runs thread idx of every block (and launch) this OS thread runs: when the thread
 * exits it parks here, and the next block resumes it (no new context, warm stack). */
static void fiber_main() {
    Worker *w = &tls_worker;
    Fiber *f = w->cur;
    const void *bottom = nullptr;
    size_t size = 0;
    asan_finish(nullptr, &bottom, &size);
    if (f->idx == 0) w->sched_bottom = bottom, w->sched_size = size; /* fiber 0: started by the scheduler */
    for (;;) {
        w->L->call(w->L->ctx);
        f->state = DONE;
        w->n_done++;
        switch_from(w, f);
    }
}

static inline void stacks_unmap(Worker *w) {
    if (!w->stacks) return;
    size_t bytes = (size_t)w->cap * (GUARD_BYTES + STACK_BYTES);
#ifdef EMU_ASAN
    __asan_unpoison_memory_region(w->stacks, bytes); /* parked fibers' frames */
#endif
    munmap(w->stacks, bytes);
}

/* n fibers, made (fresh contexts) where they do not exist yet. Growing drops the parked ones. */
static inline void fibers_reserve(Worker *w, int n) {
    if (n > w->cap) {
        stacks_unmap(w);
        free(w->fibers);
        size_t bytes = (size_t)n * (GUARD_BYTES + STACK_BYTES);
        void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) fatal("cannot map %zu bytes of fiber stacks", bytes);
        w->stacks = (char *)p;
        for (int i = 0; i < n; i++) mprotect(stack_of(w, i) - GUARD_BYTES, GUARD_BYTES, PROT_NONE);
        w->fibers = (Fiber *)calloc((size_t)n, sizeof(Fiber));
        if (!w->fibers) fatal("out of memory");
        w->cap = n, w->made = 0;
    }
    /* Stack tops are staggered by 64 bytes a fiber so that the hot frames of a block's threads
     * do not all fall into the same L1 cache sets (the stacks are 68 KiB apart). */
    for (int i = w->made; i < n; i++) {
        Fiber *f = &w->fibers[i];
        f->idx = i;
        f->asan_fake = nullptr;
#ifdef EMU_ASAN
        __asan_unpoison_memory_region(stack_of(w, i), STACK_BYTES);
#endif
        ctx_make(&f->ctx, stack_of(w, i), STACK_BYTES - (size_t)(i & 63) * 64, fiber_main);
    }
    if (n > w->made) w->made = n;
}

static inline void worker_release(Worker *w) {
    stacks_unmap(w);
    free(w->fibers);
    w->stacks = nullptr, w->fibers = nullptr, w->cap = 0, w->made = 0;
}

/* Runs one block as fibers. The scheduler resumes thread 0; from then on the fibers pass
 * control among themselves (switch_from) until the last one exits. Order: round robin; the
 * thread that completes a barrier runs on first. */
static inline void run_block_fibers(Worker *w) {
    const dim3 b = w->L->block;
    int n = w->nthreads;
    for (int i = 0; i < n; i++) {
        Fiber *f = &w->fibers[i];
        f->state = RUNNABLE;
        f->tid = {i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
        f->lane = (unsigned)i % 32, f->warp = (unsigned)i / 32, f->seq = 0;
    }
    w->n_done = 0, w->n_wait_block = 0, w->n_wait_red = 0;
    memset(w->warp_arrived, 0, sizeof w->warp_arrived);
    Fiber *f0 = &w->fibers[0];
    w->cur = f0;
    threadIdx = f0->tid;
    w->switches++;
    asan_start(&w->sched_fake, stack_of(w, 0), STACK_BYTES);
    ctx_swap(&w->sched, &f0->ctx);
    asan_finish(w->sched_fake, nullptr, nullptr);
    if (w->n_done != n) fatal("kernel '%s': the scheduler resumed early", w->L->name);
    w->cur = nullptr;
}

static inline void run_blocks(const Launch *Lc) {
    Launch *L = const_cast<Launch *>(Lc);
    Worker *w = &tls_worker;
    w->L = L;
    w->nthreads = (int)(L->block.x * L->block.y * L->block.z);
    w->cur = nullptr;
    blockDim = L->block, gridDim = L->grid;
    if (L->fibers) fibers_reserve(w, w->nthreads);
    w->dyn_smem = L->dyn_bytes ? (unsigned char *)malloc(L->dyn_bytes) : nullptr;
    if (L->dyn_bytes && !w->dyn_smem) fatal("out of memory for dynamic shared memory");
    for (;;) {
        long bi = __atomic_fetch_add(&L->next, 1, __ATOMIC_RELAXED);
        if (bi >= L->nblocks) break;
        blockIdx = {(unsigned)(bi % L->grid.x), (unsigned)(bi / L->grid.x % L->grid.y),
                    (unsigned)(bi / ((long)L->grid.x * L->grid.y))};
        if (L->fibers) {
            run_block_fibers(w);
            continue;
        }
        L->call_block(L->ctx, L->block);
    }
    free(w->dyn_smem);
    w->dyn_smem = nullptr;
    w->L = nullptr;
}

static inline void *helper_thread(void *L) {
    run_blocks((const Launch *)L);
    worker_release(&tls_worker);
    return nullptr;
}

inline int n_os_threads = 0; /* 0: not yet read from DEITC_EMU_THREADS */

static inline void launch(Launch *L) {
    long nt = (long)L->block.x * L->block.y * L->block.z;
    if (L->block.x == 0 || L->block.y == 0 || L->block.z == 0 || nt > 1024 || L->block.z > 64)
        fatal("kernel '%s': invalid block (%u,%u,%u)", L->name, L->block.x, L->block.y, L->block.z);
    if (L->grid.x == 0 || L->grid.y == 0 || L->grid.z == 0 || L->grid.y > 65535 || L->grid.z > 65535)
        fatal("kernel '%s': invalid grid (%u,%u,%u)", L->name, L->grid.x, L->grid.y, L->grid.z);
    if (tls_worker.L) fatal("kernel '%s' launched from inside kernel '%s'", L->name, tls_worker.L->name);
    L->nblocks = (long)L->grid.x * L->grid.y * L->grid.z;
    L->next = 0;
    if (n_os_threads == 0) {
        const char *s = getenv("DEITC_EMU_THREADS");
        n_os_threads = s && atoi(s) > 0 ? atoi(s) : 1;
    }
    int nh = (int)(n_os_threads - 1 < L->nblocks - 1 ? n_os_threads - 1 : L->nblocks - 1);
    pthread_t th[64];
    if (nh > 64) nh = 64;
    for (int i = 0; i < nh; i++)
        if (pthread_create(&th[i], nullptr, helper_thread, L)) fatal("pthread_create failed");
    run_blocks(L);
    for (int i = 0; i < nh; i++) pthread_join(th[i], nullptr);
}

/* The running fiber, checked: warp and block operations need one. */
static inline Fiber *fiber_for(Worker *w, const char *op) {
    Fiber *f = w->cur;
    if (!f)
        fatal("kernel '%s' uses %s but was launched with needs_fibers=false", w->L ? w->L->name : "?", op);
    return f;
}
static inline void check_full_warp(Worker *w, Fiber *f, const char *op) {
    char b[48];
    if ((f->warp + 1) * 32 > (unsigned)w->nthreads)
        fatal("kernel '%s': %s in a partial warp (thread %s, %d threads per block is not a multiple of 32)",
              w->L->name, op, thread_str(b, f->tid), w->nthreads);
}

/* The rendezvous of a warp operation: stores this lane's value, waits for all 32 lanes and
 * returns the warp's 32 values (valid until this lane's next warp operation). finish, when
 * given, is run once by the last lane to arrive, over the 32 values in place. */
static inline const unsigned long long *warp_gather(unsigned long long v, unsigned mask, const char *op,
                                                    void (*finish)(unsigned long long *, int) = nullptr,
                                                    int arg = 0) {
    Worker *w = &tls_worker;
    Fiber *f = fiber_for(w, op);
    if (mask != 0xffffffffu)
        fatal("kernel '%s': %s with mask 0x%x: only full-warp masks are emulated", w->L->name, op, mask);
    check_full_warp(w, f, op);
    unsigned buf = f->seq++ & 1u;
    unsigned long long *x = w->xchg[f->warp][buf];
    x[f->lane] = v;
    if (++w->warp_arrived[f->warp] == 32) { /* last lane: release the others, go on */
        w->warp_arrived[f->warp] = 0;
        if (finish) finish(x, arg);
        for (unsigned l = 0; l < 32; l++) {
            Fiber *g = &w->fibers[f->warp * 32 + l];
            if (g->state == WAIT_WARP) g->state = RUNNABLE;
        }
    } else {
        f->state = WAIT_WARP;
        switch_from(w, f);
    }
    return x;
}

template <typename T> static inline unsigned long long to_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    unsigned long long u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <typename T> static inline T from_bits(unsigned long long u) {
    T v;
    memcpy(&v, &u, sizeof v);
    return v;
}
/* kind: 0 indexed, 1 xor, 2 down, 3 up; returns the source lane (own lane when out of range) */
static inline unsigned shfl_src(unsigned lane, int kind, unsigned arg, int width) {
    unsigned w = (unsigned)width, base = lane & ~(w - 1), src;
    switch (kind) {
    case 0: return base + (arg & (w - 1));
    case 1: src = lane ^ arg; return src < base + w ? src : lane;
    case 2: return (lane - base) + arg < w ? lane + arg : lane;
    default: return lane - base >= arg ? lane - arg : lane;
    }
}
template <typename T> static inline T shfl(unsigned mask, T v, int kind, unsigned arg, int width, const char *op) {
    if (width < 1 || width > 32 || (width & (width - 1))) fatal("%s: width %d is not a power of two <= 32", op, width);
    const unsigned long long *vals = warp_gather(to_bits(v), mask, op);
    return from_bits<T>(vals[shfl_src(tls_worker.cur->lane, kind, arg, width)]);
}

/* ---- reductions in one rendezvous (what the prelude's dc_warp_* and dc_block_* use) ------- *
 * On a GPU, dc_warp_sum is 5 xor shuffles and dc_block_sum two of those around two barriers:
 * 12 rendezvous, each a fiber switch per thread in the emu. Here the values meet once and the
 * last thread to arrive does the GPU's arithmetic for everyone, the same operations in the same
 * order (lane l gets op(v[l], v[l ^ o]) for o = 16, 8, 4, 2, 1; warp partials taken from lane
 * 0, the second butterfly over them padded with the identity), so the results are bit for bit
 * those of the shuffle code (tests/emu checks this against it, nan and -0 included). */
enum { RED_SUM, RED_MAX };
static inline void butterfly(float *v, int op) {
    for (int o = 16; o > 0; o >>= 1) {
        float t[32];
        if (op == RED_SUM)
            for (int l = 0; l < 32; l++) t[l] = v[l] + v[l ^ o];
        else
            for (int l = 0; l < 32; l++) t[l] = fmaxf(v[l], v[l ^ o]);
        memcpy(v, t, sizeof t);
    }
}
__attribute__((noinline)) static void warp_reduce_finish(unsigned long long *x, int op) {
    float v[32];
    for (int l = 0; l < 32; l++) v[l] = from_bits<float>(x[l]);
    butterfly(v, op);
    for (int l = 0; l < 32; l++) x[l] = to_bits(v[l]);
}
static inline float warp_reduce(float v, int op, const char *what) {
    const unsigned long long *x = warp_gather(to_bits(v), 0xffffffffu, what, warp_reduce_finish, op);
    return from_bits<float>(x[tls_worker.cur->lane]);
}

/* The last thread of the block to arrive: reduces red_in into red_out, releases the others.
 * Out of line: the waiting threads' stack frames stay small (fewer cache lines a switch). */
__attribute__((noinline)) static void block_reduce_finish(Worker *w, int ncomp, int op) {
    const int n = w->nthreads, nwarps = n / 32;
    const float ident = op == RED_SUM ? 0.0f : -__int_as_float(0x7f800000);
    for (int c = 0; c < ncomp; c++) {
        float part[32], v[32];
        for (int wi = 0; wi < nwarps; wi++) {
            for (int l = 0; l < 32; l++) v[l] = w->red_in[wi * 32 + l][c];
            butterfly(v, op);
            part[wi] = v[0];
        }
        for (int l = 0; l < 32; l++) v[l] = l < nwarps ? part[l] : ident;
        butterfly(v, op);
        for (int l = 0; l < 32; l++) w->red_out[l][c] = v[l];
    }
    for (int i = 0; i < n; i++)
        if (w->fibers[i].state == WAIT_RED) w->fibers[i].state = RUNNABLE;
}
[[noreturn]] __attribute__((noinline)) static void block_reduce_bad(Worker *w, const char *what) {
    fatal("kernel '%s': %s needs a 1-D block of whole warps, not (%u,%u,%u)", w->L->name, what, w->L->block.x,
          w->L->block.y, w->L->block.z);
}

/* Every thread of the (1-D, whole-warp) block brings ncomp values; all get the results. */
static inline float2 block_reduce(float a, float b, int ncomp, int op, const char *what) {
    Worker *w = &tls_worker;
    Fiber *f = fiber_for(w, what);
    const int n = w->nthreads;
    if (__builtin_expect(w->L->block.y != 1 || w->L->block.z != 1 || n % 32, 0)) block_reduce_bad(w, what);
    w->red_in[f->idx][0] = a, w->red_in[f->idx][1] = b;
    if (++w->n_wait_red == n) { /* last thread: reduce, release the others, go on */
        w->n_wait_red = 0;
        block_reduce_finish(w, ncomp, op);
    } else {
        f->state = WAIT_RED;
        switch_from(w, f);
    }
    /* red_out stays valid: no thread can complete the next reduction before this one read it */
    return make_float2(w->red_out[f->lane][0], w->red_out[f->lane][1]);
}

} /* namespace emu */

/* ---- barriers, warp operations ----------------------------------------------------------- */

static inline void __syncthreads() {
    emu::Worker *w = &emu::tls_worker;
    emu::Fiber *f = emu::fiber_for(w, "__syncthreads");
    if (++w->n_wait_block == w->nthreads) { /* last thread: release the others, go on */
        w->n_wait_block = 0;
        for (int i = 0; i < w->nthreads; i++)
            if (w->fibers[i].state == emu::WAIT_BLOCK) w->fibers[i].state = emu::RUNNABLE;
        return;
    }
    f->state = emu::WAIT_BLOCK;
    emu::switch_from(w, f);
}
static inline void __syncwarp(unsigned mask = 0xffffffffu) { emu::warp_gather(0, mask, "__syncwarp"); }
template <typename T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return emu::shfl(mask, v, 0, (unsigned)src, width, "__shfl_sync");
}
template <typename T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return emu::shfl(mask, v, 1, (unsigned)lane_mask, width, "__shfl_xor_sync");
}
template <typename T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return emu::shfl(mask, v, 2, delta, width, "__shfl_down_sync");
}
template <typename T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return emu::shfl(mask, v, 3, delta, width, "__shfl_up_sync");
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    const unsigned long long *v = emu::warp_gather(pred != 0, mask, "__ballot_sync");
    unsigned r = 0;
    for (int l = 0; l < 32; l++) r |= (unsigned)v[l] << l;
    return r;
}
static inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == 0xffffffffu; }

/* ---- launch API ---------------------------------------------------------------------------- */

/* The dynamic shared memory of the running block (what DC_DYNAMIC_SHARED names). */
static inline void *emu_dynamic_shared() { return emu::tls_worker.dyn_smem; }
/* Spread blocks over n OS threads (default: DEITC_EMU_THREADS, else 1). */
static inline void emu_set_threads(int n) { emu::n_os_threads = n > 0 ? n : 1; }
/* Context switches done by this OS thread so far (for measurements). */
static inline unsigned long long emu_switch_count() { return emu::tls_worker.switches; }

namespace emu {
/* The kernel is a template argument, so the compiler inlines it into these two: one call per
 * thread start (fibers), or one loop over the block's threads with the kernel's body inside
 * (barrier-free kernels: no call per thread, loop-invariant work hoisted). */
template <typename Body> static void call_body(void *c) { (*static_cast<Body *>(c))(); }
template <typename Body> __attribute__((flatten)) static void call_body_block(void *c, dim3 b) {
    Body &body = *static_cast<Body *>(c);
    for (unsigned z = 0; z < b.z; z++)
        for (unsigned y = 0; y < b.y; y++)
            for (unsigned x = 0; x < b.x; x++) {
                threadIdx = {x, y, z};
                body();
            }
}
template <auto Kernel, typename... A>
static inline void launch_kernel(const char *name, dim3 grid, dim3 block, size_t dyn_shared_bytes, bool needs_fibers,
                                 A... args) {
    auto body = [&]() { Kernel(args...); };
    Launch L = {name, grid, block, dyn_shared_bytes, needs_fibers, call_body<decltype(body)>,
                call_body_block<decltype(body)>, &body, 0, 0};
    launch(&L);
}
} /* namespace emu */

/* emu_launch(name, kernel, grid, block, dyn_shared_bytes, needs_fibers, args...): kernel must
 * name a kernel (a constant, not a function pointer variable): it becomes a template argument. */
#define emu_launch(name, kernel, ...) emu::launch_kernel<kernel>(name, __VA_ARGS__)
#define EMU_LAUNCH(kernel, grid, block, dyn_shared_bytes, needs_fibers, ...) \
    emu::launch_kernel<kernel>(#kernel, grid, block, dyn_shared_bytes, needs_fibers, __VA_ARGS__)

#include "cuda_emu_mma.h" /* the tensor-core twins: mma.sync m16n8k16, ldmatrix */

#endif /* DEITC_CUDA_EMU_H */
