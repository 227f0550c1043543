/* cuda_emu_mma.h: the emu twins of the tensor-core helpers of dc_mma.cuh (included by
 * cuda_emu.h). Each is one warp operation: the lanes' registers (or row addresses) meet in
 * warp rendezvous (emu::warp_gather, so a partial warp or a kernel without fibers is reported
 * as for shuffles), then every lane computes what the hardware hands it, with dc_mma.cuh's
 * fragment layouts (lane l: g = l >> 2, t = l & 3; low 16 bits = lower-indexed element).
 *
 * mma_m16n8k16: D = A * B + C. Inputs widen exactly from f16 (subnormals, inf, nan) or bf16;
 * a product of two such values is exact in float, and the 16 products are added onto c in k
 * order, each sum rounded to float. The tensor core adds in an order of its own (and may keep
 * more bits between adds): results can differ in the last bits, and only by order.
 * ldmatrix: each lane reads its two elements of each matrix from the row address the owning
 * lane passed; each address used must be 16-byte aligned (as the hardware requires). */
#ifndef DEITC_CUDA_EMU_MMA_H
#define DEITC_CUDA_EMU_MMA_H

namespace emu {

/* all[l][k] = word k of lane l, for N words per lane (N rendezvous: a gathered buffer stays
 * valid only until this lane's next warp operation, so each is copied at once) */
template <int N> static inline void warp_share(const unsigned long long (&mine)[N], unsigned long long (&all)[32][N],
                                               const char *op) {
    for (int k = 0; k < N; k++) {
        const unsigned long long *x = warp_gather(mine[k], 0xffffffffu, op);
        for (int l = 0; l < 32; l++) all[l][k] = x[l];
    }
}

static inline float mma_widen(unsigned short bits, bool bf16) {
    return bf16 ? __uint_as_float((uint32_t)bits << 16) : emu_f16_bits_to_f32(bits);
}

static inline void mma_m16n8k16(float *d, const unsigned *a, const unsigned *b, const float *c, bool bf16,
                                const char *op) {
    const unsigned long long mine[3] = {a[0] | (unsigned long long)a[1] << 32, a[2] | (unsigned long long)a[3] << 32,
                                        b[0] | (unsigned long long)b[1] << 32};
    unsigned long long all[32][3];
    warp_share(mine, all, op);
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, t = l & 3;
        const unsigned ar[4] = {(unsigned)all[l][0], (unsigned)(all[l][0] >> 32), (unsigned)all[l][1],
                                (unsigned)(all[l][1] >> 32)};
        const unsigned br[2] = {(unsigned)all[l][2], (unsigned)(all[l][2] >> 32)};
        for (int i = 0; i < 4; i++) { /* a[i]: row g + 8 (i & 1), columns 2t + 8 (i >> 1) + {0, 1} */
            const int row = g + 8 * (i & 1), col = 2 * t + 8 * (i >> 1);
            A[row][col] = mma_widen((unsigned short)(ar[i] & 0xffffu), bf16);
            A[row][col + 1] = mma_widen((unsigned short)(ar[i] >> 16), bf16);
        }
        for (int i = 0; i < 2; i++) { /* b[i]: rows 2t + 8i + {0, 1}, column g */
            B[2 * t + 8 * i][g] = mma_widen((unsigned short)(br[i] & 0xffffu), bf16);
            B[2 * t + 8 * i + 1][g] = mma_widen((unsigned short)(br[i] >> 16), bf16);
        }
    }
    const int lane = (int)tls_worker.cur->lane, g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++) { /* d[i]: row g + 8 (i >> 1), column 2t + (i & 1) */
        const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        float s = c[i];
        for (int k = 0; k < 16; k++) s += A[row][k] * B[k][col];
        d[i] = s;
    }
}

static inline unsigned short ldmatrix_elem(const unsigned long long *addr, int row, int col) {
    unsigned short v;
    memcpy(&v, (const unsigned char *)(uintptr_t)addr[row] + 2 * col, 2);
    return v;
}

static inline void ldmatrix(unsigned *r, const void *row, int n, bool trans, const char *op) {
    const unsigned long long *x = warp_gather((unsigned long long)(uintptr_t)row, 0xffffffffu, op);
    unsigned long long addr[32];
    memcpy(addr, x, sizeof addr);
    for (int j = 0; j < 8 * n; j++)
        if (addr[j] & 15u)
            fatal("kernel '%s': %s: lane %d's row address %p is not 16-byte aligned", tls_worker.L->name, op, j,
                  (const void *)(uintptr_t)addr[j]);
    const int lane = (int)tls_worker.cur->lane, g = lane >> 2, t = lane & 3;
    for (int i = 0; i < n; i++) {
        const unsigned long long *m = addr + 8 * i; /* the rows of matrix i */
        unsigned short lo, hi;
        if (!trans) lo = ldmatrix_elem(m, g, 2 * t), hi = ldmatrix_elem(m, g, 2 * t + 1);
        else lo = ldmatrix_elem(m, 2 * t, g), hi = ldmatrix_elem(m, 2 * t + 1, g);
        r[i] = (unsigned)lo | ((unsigned)hi << 16);
    }
}

} /* namespace emu */

#endif /* DEITC_CUDA_EMU_MMA_H */
