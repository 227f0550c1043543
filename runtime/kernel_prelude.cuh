/* kernel_prelude.cuh: the device library every generated kernel uses; kernels.cu includes it
 * first (`#include "kernel_prelude.cuh"`). It includes the rest of the library, a few headers
 * each with its own list of helpers: dc_base.cuh (qualifiers), dc_convert.cuh (fp16/bf16),
 * dc_memory.cuh (vector access, cp.async), dc_reduce.cuh (warp/block reductions), dc_mma.cuh
 * (mma.sync m16n8k16, ldmatrix, with the fragment layouts), dc_data.cuh (the data kernels the
 * runtime launches: uint8 batches normalized on the device); the math is here. The same text
 * compiles two ways:
 *   - NVRTC for a GPU: options `--gpu-architecture=sm_80|sm_90 --std=c++17 -I<runtime dir>`
 *     (add `-Xptxas=-v` to get registers and spill bytes in the log), or the headers handed to
 *     NVRTC by name (codegen/nvrtc.c: CG_DEVICE_HEADERS). No CUDA header at all: fp16/bf16
 *     conversions, mma, ldmatrix and cp.async are inline PTX, everything else NVRTC builtins.
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
 * What exists (each header lists its own): DC_KERNEL, DC_DEV, DC_DYNAMIC_SHARED, DC_UNROLL,
 * DC_INF, DC_FLT_MAX (dc_base.cuh); dc_half, dc_bf16, dc_h2f/dc_f2h/dc_b2f/dc_f2b, dc_pack2
 * (dc_convert.cuh); dc_load4/dc_store4 (f32), dc_load8/dc_store8 (f16, bf16), dc_cp_async16,
 * dc_atomic_add (dc_memory.cuh); dc_warp_sum/max, dc_block_sum/sum2/max (dc_reduce.cuh);
 * dc_mma_f16/bf16, dc_ldmatrix_x1/x2/x4[_trans] (dc_mma.cuh); and here:
 *   dc_exp, dc_erf, dc_tanh, dc_rsqrt, dc_sqrt  accurate float math;  dc_fast_exp = __expf
 *   dc_gelu_erf(x), dc_gelu_tanh(x)  GELU forward; dc_gelu_erf_grad(x), dc_gelu_tanh_grad(x):
 *                             d gelu / dx (multiply by the incoming gradient)
 * CUDA names usable directly (the emu has them too): threadIdx/blockIdx/blockDim/gridDim,
 * __syncthreads, __syncwarp, __shfl_{,xor_,down_,up_}sync (mask 0xffffffff only),
 * __ballot/__any/__all_sync, atomicAdd/Max/Min/Exch/CAS, expf logf sqrtf fmaxf fminf fabsf erff
 * tanhf rsqrtf __expf __fdividef fmaf, min/max on int, __float_as_int & co, float2/float4 + make_*.
 * The launch must say whether the kernel needs fibers in the emu: yes when it uses
 * __syncthreads, a shuffle/vote, __syncwarp, dc_warp_* / dc_block_*, dc_mma_* or dc_ldmatrix_*.
 */
#ifndef DEITC_KERNEL_PRELUDE_CUH
#define DEITC_KERNEL_PRELUDE_CUH

#include "dc_base.cuh"
#include "dc_convert.cuh"
#include "dc_memory.cuh"
#include "dc_reduce.cuh"
#include "dc_mma.cuh"
#include "dc_data.cuh"

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

#endif /* DEITC_KERNEL_PRELUDE_CUH */
