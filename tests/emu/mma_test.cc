/* mma_test.cc: the device library's tensor-core, cp.async and vector helpers (test_mma.cu) on
 * the emu, each against a plain loop written from the PTX ISA's description, not from the twin:
 *   ldmatrix  every variant's registers per lane against the documented ownership (and lanes
 *             whose address is not read may pass garbage)
 *   mma       fragments packed by hand per the documented layout: exact where the sums are
 *             exact (small integers, f16 subnormals), else within float rounding of the order;
 *             f16 and bf16
 *   tile      16x16 by 16x8 through cp.async, ldmatrix (x4; x2; x2.trans) and mma, both B
 *             layouts giving the same bits, against a triple loop on the same rounded inputs
 *   vec8      dc_load8/dc_store8 for f16 and bf16, bit-exact against the scalar conversions */
#include <vector>

#include "test_mma.cu"
#include "tests/harness.h"

static unsigned rng_state = 777;
static unsigned rng() { return rng_state = rng_state * 1664525u + 1013904223u; }
static float frand() { return (float)((rng() >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

static unsigned short to16(float f, bool bf16) { return bf16 ? __float2bfloat16_rn(f).x : __float2half_rn(f).x; }
static float from16(unsigned short h, bool bf16) {
    return bf16 ? __bfloat162float(__nv_bfloat16{h}) : __half2float(__half{h});
}

static void test_ldmatrix(void) {
    std::vector<unsigned short> tile(32 * 8);
    for (int i = 0; i < 32 * 8; i++) tile[i] = (unsigned short)(i * 7 + 3); /* row r, col c: distinct */
    std::vector<unsigned> out(6 * 32 * 4, 0xdeadbeefu);
    EMU_LAUNCH(ldmatrix_dump, dim3(1), dim3(32), 0, true, out.data(), tile.data());
    int bad = 0;
    for (int mode = 0; mode < 6; mode++) {
        const int n = 1 << (mode % 3);
        const bool trans = mode >= 3;
        for (int l = 0; l < 32; l++)
            for (int i = 0; i < 4; i++) {
                unsigned want = 0;
                if (i < n) { /* matrix i = tile rows 8i..8i+7 */
                    const int r = l / 4, c = 2 * (l % 4);
                    unsigned lo = trans ? tile[(8 * i + c) * 8 + r] : tile[(8 * i + r) * 8 + c];
                    unsigned hi = trans ? tile[(8 * i + c + 1) * 8 + r] : tile[(8 * i + r) * 8 + c + 1];
                    want = lo | hi << 16;
                }
                unsigned got = out[(mode * 32 + l) * 4 + i];
                if (got != want && bad++ < 5)
                    fprintf(stderr, "ldmatrix mode %d lane %d r[%d]: %08x, want %08x\n", mode, l, i, got, want);
            }
    }
    CHECK_MSG(bad == 0, "%d ldmatrix registers wrong", bad);
}

/* A [16][16], B [16][8] (already representable) into lane fragments per dc_mma.cuh */
static void pack_frags(const float *A, const float *B, bool bf16, unsigned *af, unsigned *bf) {
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, t = l % 4;
        const int arow[4] = {g, g + 8, g, g + 8}, acol[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
        for (int i = 0; i < 4; i++)
            af[4 * l + i] = to16(A[arow[i] * 16 + acol[i]], bf16) | (unsigned)to16(A[arow[i] * 16 + acol[i] + 1], bf16) << 16;
        const int brow[2] = {2 * t, 2 * t + 8};
        for (int i = 0; i < 2; i++)
            bf[2 * l + i] = to16(B[brow[i] * 8 + g], bf16) | (unsigned)to16(B[(brow[i] + 1) * 8 + g], bf16) << 16;
    }
}

/* D = A B + C through mma_frag; returns the worst |d - ref| / (sum |a b| + |c|), exact: 0 required */
static double run_mma(const float *A, const float *B, const float *C, bool bf16) {
    std::vector<unsigned> af(128), bf(64);
    std::vector<float> c(128), d(128);
    pack_frags(A, B, bf16, af.data(), bf.data());
    for (int l = 0; l < 32; l++) /* C's layout: c[i] = C[g + 8 (i >> 1)][2t + (i & 1)] */
        for (int i = 0; i < 4; i++) c[4 * l + i] = C[(l / 4 + 8 * (i >> 1)) * 8 + 2 * (l % 4) + (i & 1)];
    EMU_LAUNCH(mma_frag, dim3(1), dim3(32), 0, true, d.data(), af.data(), bf.data(), c.data(), bf16 ? 1 : 0);
    double worst = 0;
    for (int l = 0; l < 32; l++)
        for (int i = 0; i < 4; i++) {
            const int row = l / 4 + 8 * (i >> 1), col = 2 * (l % 4) + (i & 1);
            double ref = C[row * 8 + col], mag = fabs(ref);
            for (int k = 0; k < 16; k++) {
                ref += (double)A[row * 16 + k] * B[k * 8 + col];
                mag += fabs((double)A[row * 16 + k] * B[k * 8 + col]);
            }
            double e = fabs(d[4 * l + i] - ref) / (mag > 0 ? mag : 1);
            if (!(e <= worst)) worst = e; /* NaN stays */
        }
    return worst;
}

static void test_mma(void) {
    for (int bf = 0; bf < 2; bf++) {
        std::vector<float> A(256), B(128), C(128);
        /* exact: small integers, and (f16) subnormal multiples of 2^-24 times integers */
        for (int i = 0; i < 256; i++) A[i] = (float)((int)(rng() % 15) - 7);
        for (int i = 0; i < 128; i++) B[i] = (float)((int)(rng() % 9) - 4), C[i] = (float)((int)(rng() % 101) - 50);
        double e = run_mma(A.data(), B.data(), C.data(), bf);
        CHECK_MSG(e == 0, "%s mma, integer inputs: error %g (must be exact)", bf ? "bf16" : "f16", e);
        if (!bf) {
            for (int i = 0; i < 256; i++) A[i] = (float)((int)(rng() % 31) - 15) * ldexpf(1.0f, -24);
            std::vector<float> zero(128, 0.0f); /* sums of multiples of 2^-24: exact without C */
            e = run_mma(A.data(), B.data(), zero.data(), false);
            CHECK_MSG(e == 0, "f16 mma, subnormal inputs: error %g (must be exact)", e);
        }
        /* random: rounded inputs, float sums in some order */
        for (int i = 0; i < 256; i++) A[i] = from16(to16(4 * frand(), bf), bf);
        for (int i = 0; i < 128; i++) B[i] = from16(to16(4 * frand(), bf), bf), C[i] = frand();
        e = run_mma(A.data(), B.data(), C.data(), bf);
        CHECK_MSG(e < 2e-6, "%s mma, random inputs: error %g", bf ? "bf16" : "f16", e);
        /* an infinity in A row 3 makes its D row infinite or nan (inf - inf), never finite */
        A[3 * 16 + 5] = INFINITY;
        std::vector<unsigned> af(128), bfr(64);
        std::vector<float> c(128, 0.0f), d(128);
        for (int i = 0; i < 128; i++) B[i] = 1.0f;
        pack_frags(A.data(), B.data(), bf, af.data(), bfr.data());
        EMU_LAUNCH(mma_frag, dim3(1), dim3(32), 0, true, d.data(), af.data(), bfr.data(), c.data(), bf);
        int finite = 0;
        for (int l = 12; l < 16; l++) finite += isfinite(d[4 * l]) + isfinite(d[4 * l + 1]); /* g = 3: row 3 */
        CHECK_MSG(finite == 0, "%s mma: %d finite values in a row with an infinite input", bf ? "bf16" : "f16", finite);
    }
}

template <typename T>
static void run_tile(bool bf16, void (*launch)(float *, float *, const T *, const T *, const T *)) {
    std::vector<T> a(256), bt(128), bk(128);
    std::vector<float> A(256), B(128), d0(128), d1(128);
    for (int i = 0; i < 256; i++) {
        a[i].x = to16(2 * frand(), bf16);
        A[i] = from16(a[i].x, bf16);
    }
    for (int k = 0; k < 16; k++)
        for (int n = 0; n < 8; n++) {
            unsigned short h = to16(2 * frand(), bf16);
            B[k * 8 + n] = from16(h, bf16);
            bk[k * 8 + n].x = h;
            bt[n * 16 + k].x = h;
        }
    launch(d0.data(), d1.data(), a.data(), bt.data(), bk.data());
    double worst = 0;
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 8; n++) {
            double ref = 0, mag = 0;
            for (int k = 0; k < 16; k++) ref += (double)A[m * 16 + k] * B[k * 8 + n], mag += fabs((double)A[m * 16 + k] * B[k * 8 + n]);
            worst = std::max(worst, fabs(d0[m * 8 + n] - ref) / (mag > 0 ? mag : 1));
            CHECK_MSG(d0[m * 8 + n] == d1[m * 8 + n], "%s tile (%d,%d): the two B layouts give %g and %g", bf16 ? "bf16" : "f16",
                      m, n, d0[m * 8 + n], d1[m * 8 + n]);
        }
    CHECK_MSG(worst < 2e-6, "%s tile through ldmatrix + mma: error %g", bf16 ? "bf16" : "f16", worst);
}
static void launch_f16(float *d0, float *d1, const dc_half *a, const dc_half *bt, const dc_half *bk) {
    EMU_LAUNCH(mma_tile_f16, dim3(1), dim3(32), 0, true, d0, d1, a, bt, bk);
}
static void launch_bf16(float *d0, float *d1, const dc_bf16 *a, const dc_bf16 *bt, const dc_bf16 *bk) {
    EMU_LAUNCH(mma_tile_bf16, dim3(1), dim3(32), 0, true, d0, d1, a, bt, bk);
}

static void test_vec8(void) {
    const int n8 = 100;
    std::vector<dc_half> xh(8 * n8), yh(8 * n8);
    std::vector<dc_bf16> xb(8 * n8), yb(8 * n8);
    for (int i = 0; i < 8 * n8; i++) {
        float v = 100 * frand() * (i % 7 == 0 ? 1e-4f : 1.0f);
        xh[i] = __float2half_rn(v);
        xb[i] = __float2bfloat16_rn(v);
    }
    EMU_LAUNCH(vec8_affine, dim3(3), dim3(32), 0, false, yh.data(), xh.data(), yb.data(), xb.data(), n8);
    int bad = 0;
    for (int i = 0; i < 8 * n8; i++) {
        bad += yh[i].x != __float2half_rn(2.0f * __half2float(xh[i]) + 1.0f).x;
        bad += yb[i].x != __float2bfloat16_rn(2.0f * __bfloat162float(xb[i]) + 1.0f).x;
    }
    CHECK_MSG(bad == 0, "%d vec8 elements differ from the scalar conversions", bad);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "misaligned")) { /* a used row address off by 2 bytes */
        std::vector<float> d(128);
        std::vector<dc_half> a(256 + 8), b(128);
        EMU_LAUNCH(mma_tile_f16, dim3(1), dim3(32), 0, true, d.data(), d.data(), a.data() + 1, b.data(), b.data());
        fprintf(stderr, "the emu missed a misaligned cp.async\n");
        return 1;
    }
    test_ldmatrix();
    test_mma();
    run_tile<dc_half>(false, launch_f16);
    run_tile<dc_bf16>(true, launch_bf16);
    test_vec8();
    return test_result();
}
