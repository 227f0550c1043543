/* test_gemm.c: the emu target's CPU GEMM (runtime/gemm_cpu.c) against a naive double loop
 * over every combination of transposes, batch broadcast (stride 0), padded leading dimensions,
 * alpha/beta (beta 0 must ignore NaN in C), K = 0, block edges (sizes around MR/NR/KC/MC/NC),
 * f16/bf16 operands, TF32 products (RT_COMPUTE_32F_FAST_TF32: the operands rounded as
 * rt_round_tf32, whose edge values are checked against a reference written with frexp); and the
 * same bits whatever the thread count. */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <float.h>
#include <string.h>

static uint64_t rng = 12345;
static float frand(void) { return (float)((double)(rt_splitmix64(&rng) >> 11) * 0x1p-53 * 2 - 1); }

static float get(const unsigned char *p, rt_dtype t, int64_t i) {
    if (t == RT_F16) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return rt_half_to_float(h);
    }
    if (t == RT_BF16) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return rt_bf16_to_float(h);
    }
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
}

static void put(unsigned char *p, rt_dtype t, int64_t i, float v) {
    if (t == RT_F16) {
        uint16_t h = rt_float_to_half(v);
        memcpy(p + 2 * i, &h, 2);
    } else if (t == RT_BF16) {
        uint16_t h = rt_float_to_bf16(v);
        memcpy(p + 2 * i, &h, 2);
    } else {
        memcpy(p + 4 * i, &v, 4);
    }
}

static int64_t extent(int64_t rows, int64_t ld, int64_t batch, int64_t stride) {
    return (batch - 1) * stride + rows * ld + 1;
}

static int cases, compared;
static rt_compute case_compute; /* the compute type of run_case's GEMMs */

/* the nearest value with 10 mantissa bits (ties to even), f32's exponent range: a reference for
 * rt_round_tf32 that shares no code with it */
static double ref_tf32(double x) {
    if (x == 0 || !isfinite(x)) return x;
    int e;
    frexp(x, &e);
    if (e - 1 < -126) e = -125;
    double q = ldexp(1.0, e - 1 - 10), r = nearbyint(x / q) * q;
    return fabs(r) > 0x1.ffcp127 ? copysign(INFINITY, x) : r;
}

static void test_tf32_rounding(void) {
    static const float edges[] = {1 + 0x1p-11f,      1 + 3 * 0x1p-11f, 1 + 0x1p-11f + 0x1p-23f, -(1 + 0x1p-11f),
                                  0x1.ffep127f,      0x1.ffcp127f,      FLT_MAX,                  -FLT_MAX,
                                  0x1p-126f,         0x1p-140f,         0x1.0018p-140f,           0x1p-149f,
                                  0x1.8p-137f,       65504.5f,          0,                        -0.0f,
                                  INFINITY,          -INFINITY,         3.14159265f,              1e-30f};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        float got = rt_round_tf32(edges[i]);
        double want = ref_tf32(edges[i]);
        CHECK_MSG(got == want && !signbit(got) == !signbit(want), "rt_round_tf32(%a) = %a, want %a", edges[i], got, want);
    }
    CHECK(isnan(rt_round_tf32(NAN)));
    for (int i = 0; i < 100000; i++) { /* random bit patterns, every exponent */
        uint32_t u = (uint32_t)rt_splitmix64(&rng);
        float f;
        memcpy(&f, &u, 4);
        if (isnan(f)) continue;
        float got = rt_round_tf32(f);
        if (!(got == ref_tf32(f))) {
            CHECK_MSG(0, "rt_round_tf32(%a) = %a, want %a", f, got, ref_tf32(f));
            break;
        }
    }
}

static void run_case(int64_t m, int64_t n, int64_t k, int ta, int tb, int64_t batch, int bca, int bcb, float alpha,
                     float beta, rt_dtype at, rt_dtype bt, rt_dtype ct) {
    rt_gemm g;
    memset(&g, 0, sizeof g);
    g.m = m, g.n = n, g.k = k, g.batch = batch, g.trans_a = ta, g.trans_b = tb, g.alpha = alpha, g.beta = beta;
    g.a_type = at, g.b_type = bt, g.c_type = ct, g.compute = case_compute;
    int64_t arows = ta ? k : m, acols = ta ? m : k, brows = tb ? n : k, bcols = tb ? k : n;
    g.lda = acols + 3, g.ldb = bcols + 1, g.ldc = n + 2;
    g.stride_a = bca ? 0 : arows * g.lda + 5;
    g.stride_b = bcb ? 0 : brows * g.ldb + 7;
    g.stride_c = m * g.ldc + 4;
    int64_t na = extent(arows, g.lda, batch, g.stride_a), nb = extent(brows, g.ldb, batch, g.stride_b),
            nc = extent(m, g.ldc, batch, g.stride_c);
    unsigned char *a = malloc((size_t)na * 4), *b = malloc((size_t)nb * 4), *c0 = malloc((size_t)nc * 4),
                  *c1 = malloc((size_t)nc * 4), *c2 = malloc((size_t)nc * 4);
    for (int64_t i = 0; i < na; i++) put(a, at, i, frand());
    for (int64_t i = 0; i < nb; i++) put(b, bt, i, frand());
    for (int64_t i = 0; i < nc; i++) put(c0, ct, i, beta == 0 ? NAN : frand());
    memcpy(c1, c0, (size_t)nc * 4);
    memcpy(c2, c0, (size_t)nc * 4);
    rt_gemm_cpu_set_threads(1);
    rt_gemm_cpu(&g, a, b, c1);
    rt_gemm_cpu_set_threads(3);
    rt_gemm_cpu(&g, a, b, c2);
    CHECK_MSG(memcmp(c1, c2, (size_t)nc * rt_dtype_size(ct)) == 0, "m %lld n %lld k %lld: 1 vs 3 threads differ",
              (long long)m, (long long)n, (long long)k);
    int bad = 0;
    for (int64_t bi = 0; bi < batch && !bad; bi++)
        for (int64_t i = 0; i < m && !bad; i++)
            for (int64_t j = 0; j < n && !bad; j++) {
                double s = 0, mag = 0;
                for (int64_t p = 0; p < k; p++) {
                    double x = get(a, at, bi * g.stride_a + (ta ? p * g.lda + i : i * g.lda + p));
                    double y = get(b, bt, bi * g.stride_b + (tb ? j * g.ldb + p : p * g.ldb + j));
                    if (case_compute == RT_COMPUTE_32F_FAST_TF32) x = ref_tf32(x), y = ref_tf32(y);
                    s += x * y;
                    mag += fabs(x * y);
                }
                int64_t at_c = bi * g.stride_c + i * g.ldc + j;
                double old = beta == 0 ? 0 : beta * (double)get(c0, ct, at_c);
                double want = alpha * s + old, got = get(c1, ct, at_c);
                double tol = (ct == RT_F32 ? 1e-5 : ct == RT_F16 ? 2e-3 : 1e-2) * (fabs(alpha) * mag + fabs(old) + 1e-3);
                if (!(fabs(got - want) <= tol)) {
                    CHECK_MSG(0, "m %lld n %lld k %lld ta %d tb %d batch %lld bc %d%d alpha %g beta %g types %d%d%d: "
                              "C[%lld][%lld][%lld] = %g, want %g",
                              (long long)m, (long long)n, (long long)k, ta, tb, (long long)batch, bca, bcb, alpha, beta,
                              at, bt, ct, (long long)bi, (long long)i, (long long)j, got, want);
                    bad = 1;
                }
                compared++;
            }
    /* padding between rows of C is untouched */
    int pad_written = 0;
    for (int64_t bi = 0; bi < batch; bi++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = n; j < g.ldc; j++) {
                int64_t at_c = bi * g.stride_c + i * g.ldc + j;
                size_t es = rt_dtype_size(ct);
                if (memcmp(c0 + at_c * (int64_t)es, c1 + at_c * (int64_t)es, es)) pad_written = 1;
            }
    CHECK_MSG(!pad_written, "m %lld n %lld k %lld: padding of C was written", (long long)m, (long long)n,
              (long long)k);
    cases++;
    free(a), free(b), free(c0), free(c1), free(c2);
}

int main(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {6, 16, 256}, {13, 37, 300}, {4, 5, 0}, {100, 270, 513}};
    static const float ab[][2] = {{1, 0}, {0.5f, 2}, {1, 1}, {-1.5f, 0}};
    int v = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int batch = 1; batch <= 3; batch += 2)
                    for (int bca = 0; bca < (batch > 1 ? 2 : 1); bca++)
                        for (int bcb = 0; bcb < (batch > 1 ? 2 : 1); bcb++, v++)
                            run_case(shapes[s][0], shapes[s][1], shapes[s][2], ta, tb, batch, bca, bcb, ab[v % 4][0],
                                     ab[v % 4][1], RT_F32, RT_F32, RT_F32);
    /* reduced precision operands and results */
    run_case(13, 37, 300, 0, 1, 3, 0, 1, 1, 0, RT_F16, RT_F16, RT_F32);
    run_case(13, 37, 300, 1, 0, 2, 1, 0, 0.5f, 1, RT_BF16, RT_F16, RT_F16);
    run_case(70, 20, 40, 0, 0, 1, 0, 0, 1, 0.5f, RT_F32, RT_BF16, RT_BF16);
    /* TF32 products: within 1e-5 of the rounded operands' exact products (fp32 products of the
     * unrounded operands are about 1e-3 off, so this fails if the rounding is skipped) */
    test_tf32_rounding();
    case_compute = RT_COMPUTE_32F_FAST_TF32;
    run_case(13, 37, 300, 0, 1, 3, 0, 1, 1, 0, RT_F32, RT_F32, RT_F32);
    run_case(70, 21, 600, 1, 0, 2, 1, 0, 0.5f, 1, RT_F32, RT_F32, RT_F32);
    run_case(5, 200, 9, 1, 1, 1, 0, 0, -1.5f, 0.25f, RT_F32, RT_F32, RT_F32);
    case_compute = RT_COMPUTE_32F;
    fprintf(stderr, "%d GEMM cases, %d elements compared\n", cases, compared);
    return test_result();
}
