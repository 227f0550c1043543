/* dc_mma.cuh: tensor-core tiles (device library; dc_base.cuh): mma.sync m16n8k16 with f16 or
 * bf16 operands and f32 accumulators, and ldmatrix to load its fragments from shared memory.
 * sm_80 and later. Every call is a warp operation: all 32 lanes of a full warp call it
 * together (in the emu the kernel needs fibers).
 *
 *   dc_mma_f16(d, a, b, c)    d[4] = a (16x16) * b (16x8) + c[4]: f16 operands, f32 accumulators
 *   dc_mma_bf16(d, a, b, c)   the same with bf16 operands
 *   dc_ldmatrix_x1/_x2/_x4(r, row)        r[0..n): n 8x8 b16 matrices from shared memory
 *   dc_ldmatrix_x1/_x2/_x4_trans(r, row)  the same, each matrix transposed
 *
 * Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16 with floating point type";
 * lane = 0..31, g = lane >> 2 (the group), t = lane & 3 (thread in the group)). A register
 * holds two 16-bit elements, the lower-indexed one in bits 0..15 (dc_pack2):
 *   A (16x16, row-major: "row"), unsigned a[4]:
 *     a[0] = A[g    ][2t, 2t+1]      a[1] = A[g + 8][2t, 2t+1]
 *     a[2] = A[g    ][2t+8, 2t+9]    a[3] = A[g + 8][2t+8, 2t+9]
 *   B (16x8, k x n, "col": each column's k elements are one operand), unsigned b[2]:
 *     b[0] = B[2t, 2t+1][g]          b[1] = B[2t+8, 2t+9][g]
 *   C and D (16x8 f32), float c[4]:
 *     c[0], c[1] = C[g][2t], C[g][2t+1]        c[2], c[3] = C[g + 8][2t], C[g + 8][2t+1]
 *
 * ldmatrix (PTX "ldmatrix"): matrix i (i < n for .xn) is 8 rows of 8 b16 elements, each row
 * 16 contiguous, 16-byte aligned bytes in shared memory; lane 8i + j passes the address of row j
 * of matrix i (lanes >= 8n pass anything: their address is not read). Then lane l receives in
 * r[i], for matrix M = matrix i:
 *   plain:   M[l >> 2][2(l & 3)], M[l >> 2][2(l & 3) + 1]        (row l/4, two adjacent columns)
 *   .trans:  M[2(l & 3)][l >> 2], M[2(l & 3) + 1][l >> 2]        (the same of the transpose)
 * So for a 16x16 row-major A tile at smem (pitch P elements), lane l passes
 * &A[l & 15][(l >> 4) * 8] to dc_ldmatrix_x4 and gets exactly a[0..3] above; for B stored
 * [n][k] (k contiguous), lane l passes &Bt[l & 7][((l >> 3) & 1) * 8] to dc_ldmatrix_x2 and gets
 * b[0..1]; for B stored [k][n] (n contiguous), &B[l & 15][0] to dc_ldmatrix_x2_trans.
 *
 * Emu twins (cuda_emu_mma.h): the same fragment ownership per lane; mma's inputs widen exactly
 * (f16 subnormals, inf, nan as the hardware reads them); the products are exact in f32 and are
 * summed in k order onto c, where the tensor core may add in another order (the only
 * difference). ldmatrix checks each row address for 16-byte alignment. */
#ifndef DEITC_DC_MMA_CUH
#define DEITC_DC_MMA_CUH

#include "dc_base.cuh"
#include "dc_convert.cuh"

#if defined(DEITC_EMU)
DC_DEV void dc_mma_f16(float *d, const unsigned *a, const unsigned *b, const float *c) {
    emu::mma_m16n8k16(d, a, b, c, false, "dc_mma_f16");
}
DC_DEV void dc_mma_bf16(float *d, const unsigned *a, const unsigned *b, const float *c) {
    emu::mma_m16n8k16(d, a, b, c, true, "dc_mma_bf16");
}
DC_DEV void dc_ldmatrix_x1(unsigned *r, const void *row) { emu::ldmatrix(r, row, 1, false, "dc_ldmatrix_x1"); }
DC_DEV void dc_ldmatrix_x2(unsigned *r, const void *row) { emu::ldmatrix(r, row, 2, false, "dc_ldmatrix_x2"); }
DC_DEV void dc_ldmatrix_x4(unsigned *r, const void *row) { emu::ldmatrix(r, row, 4, false, "dc_ldmatrix_x4"); }
DC_DEV void dc_ldmatrix_x1_trans(unsigned *r, const void *row) { emu::ldmatrix(r, row, 1, true, "dc_ldmatrix_x1_trans"); }
DC_DEV void dc_ldmatrix_x2_trans(unsigned *r, const void *row) { emu::ldmatrix(r, row, 2, true, "dc_ldmatrix_x2_trans"); }
DC_DEV void dc_ldmatrix_x4_trans(unsigned *r, const void *row) { emu::ldmatrix(r, row, 4, true, "dc_ldmatrix_x4_trans"); }
#else
DC_DEV void dc_mma_f16(float *d, const unsigned *a, const unsigned *b, const float *c) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%10, %11, %12, %13};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
                   "f"(c[3]));
}
DC_DEV void dc_mma_bf16(float *d, const unsigned *a, const unsigned *b, const float *c) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%10, %11, %12, %13};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
                   "f"(c[3]));
}
DC_DEV void dc_ldmatrix_x1(unsigned *r, const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(dc_smem_addr(row)));
}
DC_DEV void dc_ldmatrix_x2(unsigned *r, const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];" : "=r"(r[0]), "=r"(r[1])
                 : "r"(dc_smem_addr(row)));
}
DC_DEV void dc_ldmatrix_x4(unsigned *r, const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(dc_smem_addr(row)));
}
DC_DEV void dc_ldmatrix_x1_trans(unsigned *r, const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(dc_smem_addr(row)));
}
DC_DEV void dc_ldmatrix_x2_trans(unsigned *r, const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];" : "=r"(r[0]), "=r"(r[1])
                 : "r"(dc_smem_addr(row)));
}
DC_DEV void dc_ldmatrix_x4_trans(unsigned *r, const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(dc_smem_addr(row)));
}
#endif

#endif /* DEITC_DC_MMA_CUH */
