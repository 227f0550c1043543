/* dc_base.cuh: what every header of the device library starts from: the two ways the same
 * text compiles (NVRTC/nvcc for a GPU; the host C++ compiler with -DDEITC_EMU against
 * cuda_emu.h, where each helper has its twin), the qualifiers and a few constants.
 *   DC_KERNEL                 `extern "C" __global__ void`: unmangled names for cuModuleGetFunction
 *   DC_DEV                    `static __device__ __forceinline__` for helpers
 *   DC_DYNAMIC_SHARED(T, p)   declares `T *p` = the block's dynamic shared memory (16-aligned;
 *                             size given at launch); may appear in several kernels
 *   DC_UNROLL                 before a `for` with a constant trip count: unroll it fully (so that
 *                             arrays indexed by the counter live in registers); nothing in the emu
 *   DC_INF, DC_FLT_MAX        +inf and FLT_MAX as float expressions (NVRTC has no INFINITY)
 * The library (kernel_prelude.cuh includes all of it): dc_convert.cuh (fp16/bf16),
 * dc_memory.cuh (vector access, cp.async), dc_reduce.cuh (warp and block reductions),
 * dc_mma.cuh (tensor-core tiles: mma.sync m16n8k16, ldmatrix). codegen/nvrtc.c hands every
 * one of them to NVRTC by name (and hashes them all into its cache key). */
#ifndef DEITC_DC_BASE_CUH
#define DEITC_DC_BASE_CUH

#if defined(DEITC_EMU)
#include "cuda_emu.h"
#define DC_DEV static __device__ __forceinline__
#define DC_DYNAMIC_SHARED(T, p) T *p = reinterpret_cast<T *>(emu_dynamic_shared())
#define DC_UNROLL /* the host compiler unrolls what pays at -O3 */

#elif defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define DC_DEV static __device__ __forceinline__
#define DC_UNROLL _Pragma("unroll")
#define DC_DYNAMIC_SHARED(T, p)                                    \
    extern __shared__ __align__(16) unsigned char dc_dyn_smem_[]; \
    T *p = reinterpret_cast<T *>(dc_dyn_smem_)
/* a generic pointer to shared memory as the 32-bit shared address PTX instructions take */
DC_DEV unsigned dc_smem_addr(const void *p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

#else
#error "the deitc device library: compile with NVRTC (or nvcc), or with -DDEITC_EMU against cuda_emu.h"
#endif

#define DC_KERNEL extern "C" __global__ void
#define DC_INF __int_as_float(0x7f800000)
#define DC_FLT_MAX 3.402823466e+38f

#endif /* DEITC_DC_BASE_CUH */
