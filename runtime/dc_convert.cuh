/* dc_convert.cuh: fp16 and bf16 storage and conversions (device library; dc_base.cuh).
 *   dc_half, dc_bf16          16-bit storage types (member .x holds the bits); compute in float
 *   dc_h2f, dc_b2f            exact widening to float
 *   dc_f2h, dc_f2b            round to nearest even: subnormals kept, overflow to inf, nan to
 *                             the canonical 0x7fff (cvt.rn.f16.f32 / cvt.rn.bf16.f32)
 *   dc_pack2(lo, hi)          two 16-bit values in one 32-bit register, lo in bits 0..15 (the
 *                             f16x2/bf16x2 operand order of mma and ldmatrix)
 *   dc_lo16(r), dc_hi16(r)    the halves back
 * Emu: the twins are cuda_emu.h's bit-exact conversions (tests/emu checks every f16 and a
 * sweep of floats against an independent reference). */
#ifndef DEITC_DC_CONVERT_CUH
#define DEITC_DC_CONVERT_CUH

#include "dc_base.cuh"

#if defined(DEITC_EMU)
typedef __half dc_half;
typedef __nv_bfloat16 dc_bf16;
DC_DEV float dc_h2f(dc_half h) { return __half2float(h); }
DC_DEV dc_half dc_f2h(float f) { return __float2half_rn(f); }
DC_DEV float dc_b2f(dc_bf16 b) { return __bfloat162float(b); }
DC_DEV dc_bf16 dc_f2b(float f) { return __float2bfloat16_rn(f); }
#else
struct __align__(2) dc_half { unsigned short x; };
struct __align__(2) dc_bf16 { unsigned short x; };
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
#endif

DC_DEV unsigned dc_pack2(unsigned short lo, unsigned short hi) { return (unsigned)lo | ((unsigned)hi << 16); }
DC_DEV unsigned short dc_lo16(unsigned r) { return (unsigned short)(r & 0xffffu); }
DC_DEV unsigned short dc_hi16(unsigned r) { return (unsigned short)(r >> 16); }

#endif /* DEITC_DC_CONVERT_CUH */
