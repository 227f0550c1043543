/* kernel_prelude.cuh: the device helpers every generated kernel uses; kernels.cu includes it
 * first (`#include "kernel_prelude.cuh"`). The same text compiles two ways:
 *   - NVRTC for a GPU: options `--gpu-architecture=sm_80|sm_90 --std=c++17 -I<runtime dir>`
 *     (add `-Xptxas=-v` to get registers and spill bytes in the log). Needs no header at all:
 *     fp16/bf16 conversions are inline PTX (cvt.rn), everything else is an NVRTC builtin.
 *   - the host C++ compiler with -DDEITC_EMU: each helper maps to its twin in cuda_emu.h
 *     (see there how to launch).
 *
 * How a kernel is written (helpers only; no other header, no libc, no `extern __shared__`):
 *
 *   DC_KERNEL softmax_rows(float *__restrict__ y, const float *__restrict__ x, int cols) {
 *       const float *row = x + (size_t)blockIdx.x * cols;       // one block per row
 *       float m = -DC_INF;
 *       for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, row[c]);
 *       m = dc_block_max(m);                                   // every thread gets the max
 *       ...
 *   }
 *
 * What exists:
 *   DC_KERNEL                 `extern "C" __global__ void`: unmangled names for cuModuleGetFunction
 *   DC_DEV                    `static __device__ __forceinline__` for helpers the generator emits
 *   DC_DYNAMIC_SHARED(T, p)   declares `T *p` = the block's dynamic shared memory (16-aligned;
 *                             size given at launch); may appear in several kernels
 *   DC_UNROLL                 before a `for` with a constant trip count: unroll it fully (so that
 *                             arrays indexed by the counter live in registers); nothing in the emu
 *   DC_INF, DC_FLT_MAX        +inf and FLT_MAX as float expressions (NVRTC has no INFINITY)
 *   dc_warp_sum(v), dc_warp_max(v)   xor-butterfly over the 32 lanes: every lane gets the result;
 *                             all 32 lanes must call it (full warps only)
 *   dc_block_sum(v), dc_block_max(v) the same over the whole block; every thread gets the result.
 *                             1-D blocks, blockDim.x a multiple of 32 (<= 1024); contains
 *                             __syncthreads, so every thread of the block must call it (no early
 *                             return before it); may be called repeatedly in one kernel
 *   dc_block_sum2(float2 v)   both components summed over the block in one pass (same rules)
 *   dc_atomic_add(p, v)       float atomic add to global memory (order is not deterministic)
 *   dc_half, dc_bf16          16-bit storage types (member .x holds the bits); compute in float
 *   dc_h2f, dc_f2h, dc_b2f, dc_f2b   conversions, round to nearest even, bit-exact in the emu
 *   dc_load4(p), dc_store4(p, v)     float4 access, p 16-byte aligned (index multiple of 4)
 *   dc_exp, dc_erf, dc_tanh, dc_rsqrt, dc_sqrt  accurate float math;  dc_fast_exp = __expf
 *   dc_gelu_erf(x), dc_gelu_tanh(x)  GELU forward; dc_gelu_erf_grad(x), dc_gelu_tanh_grad(x):
 *                             d gelu / dx (multiply by the incoming gradient)
 * CUDA names usable directly (the emu has them too): threadIdx/blockIdx/blockDim/gridDim,
 * __syncthreads, __syncwarp, __shfl_{,xor_,down_,up_}sync (mask 0xffffffff only),
 * __ballot/__any/__all_sync, atomicAdd/Max/Min/Exch/CAS, expf logf sqrtf fmaxf fminf fabsf erff
 * tanhf rsqrtf __expf __fdividef fmaf, min/max on int, __float_as_int & co, float2/float4 + make_*.
 * The launch must say whether the kernel needs fibers in the emu: yes when it uses
 * __syncthreads, a shuffle/vote, __syncwarp or dc_warp_* / dc_block_*.
 */
#ifndef DEITC_KERNEL_PRELUDE_CUH
#define DEITC_KERNEL_PRELUDE_CUH

#if defined(DEITC_EMU)
#include "cuda_emu.h"
typedef __half dc_half;
typedef __nv_bfloat16 dc_bf16;
#define DC_DEV static __device__ __forceinline__
DC_DEV float dc_h2f(dc_half h) { return __half2float(h); }
DC_DEV dc_half dc_f2h(float f) { return __float2half_rn(f); }
DC_DEV float dc_b2f(dc_bf16 b) { return __bfloat162float(b); }
DC_DEV dc_bf16 dc_f2b(float f) { return __float2bfloat16_rn(f); }
#define DC_DYNAMIC_SHARED(T, p) T *p = reinterpret_cast<T *>(emu_dynamic_shared())
#define DC_UNROLL /* the host compiler unrolls what pays at -O3 */

#elif defined(__CUDACC__) || defined(__CUDACC_RTC__)
struct __align__(2) dc_half { unsigned short x; };
struct __align__(2) dc_bf16 { unsigned short x; };
#define DC_DEV static __device__ __forceinline__
DC_DEV float dc_h2f(dc_half h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.x));
    return f;
}
DC_DEV dc_half dc_f2h(float f) {
    dc_half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x) : "f"(f));
    return h;
}
DC_DEV float dc_b2f(dc_bf16 b) { return __uint_as_float((unsigned)b.x << 16); }
DC_DEV dc_bf16 dc_f2b(float f) { /* sm_80+ */
    dc_bf16 b;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(b.x) : "f"(f));
    return b;
}
#define DC_UNROLL _Pragma("unroll")
#define DC_DYNAMIC_SHARED(T, p)                                    \
    extern __shared__ __align__(16) unsigned char dc_dyn_smem_[]; \
    T *p = reinterpret_cast<T *>(dc_dyn_smem_)

#else
#error "kernel_prelude.cuh: compile with NVRTC (or nvcc), or with -DDEITC_EMU against cuda_emu.h"
#endif

#define DC_KERNEL extern "C" __global__ void
#define DC_INF __int_as_float(0x7f800000)
#define DC_FLT_MAX 3.402823466e+38f

/* ---- math ------------------------------------------------------------------------------ */

DC_DEV float dc_exp(float x) { return expf(x); }
DC_DEV float dc_fast_exp(float x) { return __expf(x); }
DC_DEV float dc_erf(float x) { return erff(x); }
DC_DEV float dc_tanh(float x) { return tanhf(x); }
DC_DEV float dc_rsqrt(float x) { return rsqrtf(x); }
DC_DEV float dc_sqrt(float x) { return sqrtf(x); }

DC_DEV float dc_gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
DC_DEV float dc_gelu_erf_grad(float x) {
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}
DC_DEV float dc_gelu_tanh(float x) {
    float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}
DC_DEV float dc_gelu_tanh_grad(float x) {
    float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    float t = tanhf(u);
    float du = 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

/* ---- memory ------------------------------------------------------------------------------ */

#if defined(DEITC_EMU)
/* The emu twins copy element by element (no type punning) and insist on the alignment a GPU's
 * 128-bit access needs, so a misaligned index fails here rather than on the device. */
DC_DEV void dc_check_align4(const float *p, const char *what) {
    if (reinterpret_cast<uintptr_t>(p) & 15u) emu::fatal("%s: address %p is not 16-byte aligned", what, (const void *)p);
}
DC_DEV float4 dc_load4(const float *p) {
    dc_check_align4(p, "dc_load4");
    return make_float4(p[0], p[1], p[2], p[3]);
}
DC_DEV void dc_store4(float *p, float4 v) {
    dc_check_align4(p, "dc_store4");
    p[0] = v.x, p[1] = v.y, p[2] = v.z, p[3] = v.w;
}
#else
DC_DEV float4 dc_load4(const float *p) { return *reinterpret_cast<const float4 *>(p); }
DC_DEV void dc_store4(float *p, float4 v) { *reinterpret_cast<float4 *>(p) = v; }
#endif
DC_DEV void dc_atomic_add(float *p, float v) { atomicAdd(p, v); }

/* ---- reductions --------------------------------------------------------------------------- */

#if defined(DEITC_EMU)
/* The emu does each of these in one rendezvous of the warp or block instead of one per
 * shuffle and barrier, with the very arithmetic of the GPU code below (bit for bit; see
 * emu::block_reduce in cuda_emu.h, tested in tests/emu against that code). */
DC_DEV float dc_warp_sum(float v) { return emu::warp_reduce(v, emu::RED_SUM, "dc_warp_sum"); }
DC_DEV float dc_warp_max(float v) { return emu::warp_reduce(v, emu::RED_MAX, "dc_warp_max"); }
DC_DEV float dc_block_sum(float v) { return emu::block_reduce(v, 0.0f, 1, emu::RED_SUM, "dc_block_sum").x; }
DC_DEV float2 dc_block_sum2(float2 v) { return emu::block_reduce(v.x, v.y, 2, emu::RED_SUM, "dc_block_sum2"); }
DC_DEV float dc_block_max(float v) { return emu::block_reduce(v, 0.0f, 1, emu::RED_MAX, "dc_block_max").x; }
#else
DC_DEV float dc_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
DC_DEV float dc_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Warp partials go through 32 floats of shared memory; the leading barrier keeps a second call
 * from overwriting them while a slow warp still reads the first call's. */
DC_DEV float dc_block_sum(float v) {
    __shared__ float dc_partial_[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = dc_warp_sum(v);
    __syncthreads();
    if (lane == 0) dc_partial_[warp] = v;
    __syncthreads();
    return dc_warp_sum(lane < nwarps ? dc_partial_[lane] : 0.0f);
}
/* Two sums in one pass (LayerNorm backward: sum dy*g and sum dy*g*xhat): .x and .y reduced. */
DC_DEV float2 dc_block_sum2(float2 v) {
    __shared__ float2 dc_partial2_[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v.x = dc_warp_sum(v.x);
    v.y = dc_warp_sum(v.y);
    __syncthreads();
    if (lane == 0) dc_partial2_[warp] = v;
    __syncthreads();
    float2 p = lane < nwarps ? dc_partial2_[lane] : make_float2(0.0f, 0.0f);
    return make_float2(dc_warp_sum(p.x), dc_warp_sum(p.y));
}
DC_DEV float dc_block_max(float v) {
    __shared__ float dc_partial_[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = dc_warp_max(v);
    __syncthreads();
    if (lane == 0) dc_partial_[warp] = v;
    __syncthreads();
    return dc_warp_max(lane < nwarps ? dc_partial_[lane] : -DC_INF);
}
#endif

#endif /* DEITC_KERNEL_PRELUDE_CUH */
