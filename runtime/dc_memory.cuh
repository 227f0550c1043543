/* dc_memory.cuh: 16-byte vector access and asynchronous copies (device library; dc_base.cuh).
 *   dc_load4(p), dc_store4(p, v)   float4 at p (f32), p 16-byte aligned (index a multiple of 4)
 *   dc_load8(p), dc_store8(p, v)   8 elements at p (dc_half or dc_bf16): dc_half8 / dc_bf16x8,
 *                                  p 16-byte aligned (index a multiple of 8)
 *   dc_cp_async16(smem, gmem)      cp.async.cg: 16 bytes global -> shared without registers,
 *                                  both 16-byte aligned (sm_80+); visible after a wait
 *   dc_cp_async_commit()           closes the group of copies issued since the last commit
 *   dc_cp_async_wait<N>()          waits until at most N committed groups are pending
 *                                  (then __syncthreads before other threads read them)
 *   dc_atomic_add(p, v)            float atomic add to global memory (order not deterministic)
 * Emu twins: the same bytes moved element by element (no type punning), with the alignment a
 * GPU's 128-bit access needs checked, so a misaligned index fails in the emu rather than on the
 * device; cp.async copies at once (the wait has nothing to wait for). */
#ifndef DEITC_DC_MEMORY_CUH
#define DEITC_DC_MEMORY_CUH

#include "dc_base.cuh"
#include "dc_convert.cuh"

struct __align__(16) dc_half8 { dc_half v[8]; };
struct __align__(16) dc_bf16x8 { dc_bf16 v[8]; };

#if defined(DEITC_EMU)
DC_DEV void dc_check_align16(const void *p, const char *what) {
    if (reinterpret_cast<uintptr_t>(p) & 15u) emu::fatal("%s: address %p is not 16-byte aligned", what, p);
}
DC_DEV float4 dc_load4(const float *p) {
    dc_check_align16(p, "dc_load4");
    return make_float4(p[0], p[1], p[2], p[3]);
}
DC_DEV void dc_store4(float *p, float4 v) {
    dc_check_align16(p, "dc_store4");
    p[0] = v.x, p[1] = v.y, p[2] = v.z, p[3] = v.w;
}
DC_DEV dc_half8 dc_load8(const dc_half *p) {
    dc_check_align16(p, "dc_load8");
    dc_half8 r;
    for (int i = 0; i < 8; i++) r.v[i] = p[i];
    return r;
}
DC_DEV dc_bf16x8 dc_load8(const dc_bf16 *p) {
    dc_check_align16(p, "dc_load8");
    dc_bf16x8 r;
    for (int i = 0; i < 8; i++) r.v[i] = p[i];
    return r;
}
DC_DEV void dc_store8(dc_half *p, dc_half8 v) {
    dc_check_align16(p, "dc_store8");
    for (int i = 0; i < 8; i++) p[i] = v.v[i];
}
DC_DEV void dc_store8(dc_bf16 *p, dc_bf16x8 v) {
    dc_check_align16(p, "dc_store8");
    for (int i = 0; i < 8; i++) p[i] = v.v[i];
}
DC_DEV void dc_cp_async16(void *smem, const void *gmem) {
    dc_check_align16(smem, "dc_cp_async16 (shared)");
    dc_check_align16(gmem, "dc_cp_async16 (global)");
    memcpy(smem, gmem, 16);
}
DC_DEV void dc_cp_async_commit() {}
template <int N> DC_DEV void dc_cp_async_wait() {}
#else
DC_DEV float4 dc_load4(const float *p) { return *reinterpret_cast<const float4 *>(p); }
DC_DEV void dc_store4(float *p, float4 v) { *reinterpret_cast<float4 *>(p) = v; }
DC_DEV dc_half8 dc_load8(const dc_half *p) { return *reinterpret_cast<const dc_half8 *>(p); }
DC_DEV dc_bf16x8 dc_load8(const dc_bf16 *p) { return *reinterpret_cast<const dc_bf16x8 *>(p); }
DC_DEV void dc_store8(dc_half *p, dc_half8 v) { *reinterpret_cast<dc_half8 *>(p) = v; }
DC_DEV void dc_store8(dc_bf16 *p, dc_bf16x8 v) { *reinterpret_cast<dc_bf16x8 *>(p) = v; }
DC_DEV void dc_cp_async16(void *smem, const void *gmem) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dc_smem_addr(smem)), "l"(gmem) : "memory");
}
DC_DEV void dc_cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> DC_DEV void dc_cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }
#endif
DC_DEV void dc_atomic_add(float *p, float v) { atomicAdd(p, v); }

#endif /* DEITC_DC_MEMORY_CUH */
