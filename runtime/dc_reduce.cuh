/* dc_reduce.cuh: warp and block reductions (device library; dc_base.cuh).
 *   dc_warp_sum(v), dc_warp_max(v)   xor-butterfly over the 32 lanes: every lane gets the result;
 *                             all 32 lanes must call it (full warps only)
 *   dc_block_sum(v), dc_block_max(v) the same over the whole block; every thread gets the result.
 *                             1-D blocks, blockDim.x a multiple of 32 (<= 1024); contains
 *                             __syncthreads, so every thread of the block must call it (no early
 *                             return before it); may be called repeatedly in one kernel
 *   dc_block_sum2(float2 v)   both components summed over the block in one pass (same rules)
 * A kernel using any of them needs fibers in the emu. */
#ifndef DEITC_DC_REDUCE_CUH
#define DEITC_DC_REDUCE_CUH

#include "dc_base.cuh"

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

#endif /* DEITC_DC_REDUCE_CUH */
