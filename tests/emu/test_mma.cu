/* test_mma.cu: kernels that use each helper of the device library's newer headers
 * (dc_mma.cuh: mma.sync m16n8k16 f16/bf16, ldmatrix x1/x2/x4 and .trans; dc_memory.cuh:
 * cp.async, 8-element f16/bf16 vectors), compiled by NVRTC for sm_80/sm_90 (emu_nvrtc) and run
 * on the emu against plain loops (mma_test.cc). One warp (32 threads) a block unless said. */
#include "kernel_prelude.cuh"

/* ldmatrix's fragment ownership: tile is 32 rows of 8 b16 (4 matrices of 8 rows), copied to
 * shared memory with cp.async; out[mode][lane][4] = what each of the six variants (x1, x2, x4,
 * then the same .trans) hands each lane (registers past n left 0). Lanes whose address the
 * variant does not read pass a misaligned one: the emu must ignore it, as the GPU does.
 * grid 1, block 32, fibers. */
DC_KERNEL ldmatrix_dump(unsigned *__restrict__ out, const unsigned short *__restrict__ tile) {
    __shared__ __align__(16) unsigned short sm[32 * 8];
    const int lane = threadIdx.x;
    dc_cp_async16(&sm[lane * 8], &tile[lane * 8]);
    dc_cp_async_commit();
    dc_cp_async_wait<0>();
    __syncthreads();
    const unsigned char *bogus = reinterpret_cast<const unsigned char *>(sm) + 2;
    for (int mode = 0; mode < 6; mode++) {
        const int n = 1 << (mode % 3);
        const void *row = lane < 8 * n ? static_cast<const void *>(&sm[lane * 8]) : static_cast<const void *>(bogus);
        unsigned r[4] = {0, 0, 0, 0};
        switch (mode) {
        case 0: dc_ldmatrix_x1(r, row); break;
        case 1: dc_ldmatrix_x2(r, row); break;
        case 2: dc_ldmatrix_x4(r, row); break;
        case 3: dc_ldmatrix_x1_trans(r, row); break;
        case 4: dc_ldmatrix_x2_trans(r, row); break;
        default: dc_ldmatrix_x4_trans(r, row); break;
        }
        for (int i = 0; i < 4; i++) out[(mode * 32 + lane) * 4 + i] = r[i];
    }
}

/* mma on fragments the host built by the documented layout: lane l's a[4], b[2], c[4] at
 * af[4l..], bf[2l..], c[4l..]; d[4l..] = its part of D. bf16 != 0: bf16 operands.
 * grid 1, block 32, fibers. */
DC_KERNEL mma_frag(float *__restrict__ d, const unsigned *__restrict__ af, const unsigned *__restrict__ bf,
                   const float *__restrict__ c, int bf16) {
    const int l = threadIdx.x;
    unsigned a[4], b[2];
    float cv[4], dv[4];
    for (int i = 0; i < 4; i++) a[i] = af[4 * l + i], cv[i] = c[4 * l + i];
    for (int i = 0; i < 2; i++) b[i] = bf[2 * l + i];
    if (bf16) dc_mma_bf16(dv, a, b, cv);
    else dc_mma_f16(dv, a, b, cv);
    for (int i = 0; i < 4; i++) d[4 * l + i] = dv[i];
}

/* A (16x16 row-major) times B, B given twice: bt [8][16] (n rows, k contiguous) and bk [16][8]
 * (k rows), through shared memory (cp.async), A's fragment by ldmatrix_x4 (dc_mma.cuh's
 * recipe) and B's by ldmatrix_x2 from bt and ldmatrix_x2_trans from bk; d0 and d1 (16x8
 * row-major) are the two products, c = 0. */
template <typename T, bool BF16> DC_DEV void mma_tile(float *d0, float *d1, const T *a, const T *bt, const T *bk) {
    __shared__ __align__(16) T sa[16 * 16], sbt[8 * 16], sbk[16 * 8];
    const int l = threadIdx.x, g = l >> 2, t = l & 3;
    dc_cp_async16(&sa[l * 8], &a[l * 8]); /* 32 chunks of 8 elements: all of A */
    if (l < 16) {
        dc_cp_async16(&sbt[l * 8], &bt[l * 8]);
        dc_cp_async16(&sbk[l * 8], &bk[l * 8]);
    }
    dc_cp_async_commit();
    dc_cp_async_wait<0>();
    __syncthreads();
    unsigned fa[4], fb0[2], fb1[2];
    dc_ldmatrix_x4(fa, &sa[(l & 15) * 16 + (l >> 4) * 8]);
    dc_ldmatrix_x2(fb0, &sbt[(l & 7) * 16 + ((l >> 3) & 1) * 8]);
    dc_ldmatrix_x2_trans(fb1, &sbk[(l & 15) * 8]);
    const float zero[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float r0[4], r1[4];
    if (BF16) {
        dc_mma_bf16(r0, fa, fb0, zero);
        dc_mma_bf16(r1, fa, fb1, zero);
    } else {
        dc_mma_f16(r0, fa, fb0, zero);
        dc_mma_f16(r1, fa, fb1, zero);
    }
    for (int i = 0; i < 4; i++) {
        const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        d0[row * 8 + col] = r0[i];
        d1[row * 8 + col] = r1[i];
    }
}

/* grid 1, block 32, fibers */
DC_KERNEL mma_tile_f16(float *__restrict__ d0, float *__restrict__ d1, const dc_half *__restrict__ a,
                       const dc_half *__restrict__ bt, const dc_half *__restrict__ bk) {
    mma_tile<dc_half, false>(d0, d1, a, bt, bk);
}
DC_KERNEL mma_tile_bf16(float *__restrict__ d0, float *__restrict__ d1, const dc_bf16 *__restrict__ a,
                        const dc_bf16 *__restrict__ bt, const dc_bf16 *__restrict__ bk) {
    mma_tile<dc_bf16, true>(d0, d1, a, bt, bk);
}

/* y = 2x + 1 eight elements at a time (dc_load8/dc_store8), f16 and bf16; grid-stride over
 * n8 vectors; no fibers */
DC_KERNEL vec8_affine(dc_half *__restrict__ yh, const dc_half *__restrict__ xh, dc_bf16 *__restrict__ yb,
                      const dc_bf16 *__restrict__ xb, int n8) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += gridDim.x * blockDim.x) {
        dc_half8 h = dc_load8(xh + 8 * i);
        dc_bf16x8 b = dc_load8(xb + 8 * i);
        DC_UNROLL for (int k = 0; k < 8; k++) {
            h.v[k] = dc_f2h(2.0f * dc_h2f(h.v[k]) + 1.0f);
            b.v[k] = dc_f2b(2.0f * dc_b2f(b.v[k]) + 1.0f);
        }
        dc_store8(yh + 8 * i, h);
        dc_store8(yb + 8 * i, b);
    }
}
