/* emu_test.cc: runs tests/emu/test_kernels.cu on the CUDA emulator (cuda_emu.h) and checks
 * every kernel against plain C; fp16/bf16 conversions against an independent reference.
 * Modes (argv[1]): none = all checks; "deadlock", "nofibers", "partialwarp", "block2d", "oob" = planted
 * bugs the emu must diagnose (the test expects the message); "bench" = fiber-switch cost. */
#include <algorithm>
#include <chrono>
#include <vector>

#include "test_kernels.cu"
#include "tests/harness.h"

static unsigned rng_state = 12345;
static unsigned rng() { return rng_state = rng_state * 1664525u + 1013904223u; }
static float frand() { return (float)((rng() >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

static void test_softmax(void) {
    const int rows = 37, cols = 301;
    std::vector<float> x(rows * cols), y(rows * cols);
    for (auto &v : x) v = 8.0f * frand();
    EMU_LAUNCH(softmax_rows, dim3(rows), dim3(128), cols * sizeof(float), true, y.data(), x.data(), cols);
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double m = -INFINITY, s = 0;
        for (int c = 0; c < cols; c++) m = std::max(m, (double)x[r * cols + c]);
        for (int c = 0; c < cols; c++) s += exp(x[r * cols + c] - m);
        for (int c = 0; c < cols; c++) {
            double ref = exp(x[r * cols + c] - m) / s;
            worst = std::max(worst, fabs(y[r * cols + c] - ref) / ref);
        }
    }
    CHECK_MSG(worst < 1e-5, "softmax relative error %g", worst);
}

static void test_layernorm(void) {
    const int rows = 9, cols = 200;
    std::vector<float> x(rows * cols), y(rows * cols), g(cols), b(cols);
    std::vector<__half> yh(rows * cols);
    for (auto &v : x) v = 3.0f * frand() + 1.0f;
    for (auto &v : g) v = 1.0f + 0.5f * frand();
    for (auto &v : b) v = frand();
    EMU_LAUNCH(layernorm_rows, dim3(rows), dim3(64), 0, true, y.data(), yh.data(), x.data(), g.data(), b.data(), cols, 1e-6f);
    double worst = 0;
    int bad_half = 0;
    for (int r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (int c = 0; c < cols; c++) mean += x[r * cols + c];
        mean /= cols;
        for (int c = 0; c < cols; c++) var += (x[r * cols + c] - mean) * (x[r * cols + c] - mean);
        var /= cols;
        for (int c = 0; c < cols; c++) {
            double ref = (x[r * cols + c] - mean) / sqrt(var + 1e-6) * g[c] + b[c];
            worst = std::max(worst, fabs(y[r * cols + c] - ref));
            bad_half += yh[r * cols + c].x != __float2half_rn(y[r * cols + c]).x;
        }
    }
    CHECK_MSG(worst < 1e-5, "layernorm abs error %g", worst);
    CHECK(bad_half == 0);
}

static void test_row_sums2(void) {
    const int rows = 5, cols = 1000;
    std::vector<float> x(rows * cols), out(2 * rows);
    for (auto &v : x) v = frand();
    EMU_LAUNCH(row_sums2, dim3(rows), dim3(96), 0, true, out.data(), x.data(), cols);
    for (int r = 0; r < rows; r++) {
        double s = 0, q = 0;
        for (int c = 0; c < cols; c++) s += x[r * cols + c], q += (double)x[r * cols + c] * x[r * cols + c];
        CHECK_MSG(fabs(out[2 * r] - s) < 1e-3 && fabs(out[2 * r + 1] - q) < 1e-3, "row %d: %g %g, want %g %g", r,
                  out[2 * r], out[2 * r + 1], s, q);
    }
}

static void test_warp_ops(void) {
    const int n = 256;
    std::vector<int> in(n), out(8 * n);
    std::vector<float> fout(n);
    for (int i = 0; i < n; i++) in[i] = (int)(rng() % 1000) + (i == 77 ? 5000 : 0);
    in[130] = -3; /* warp 4 has a negative: __all_sync false there */
    EMU_LAUNCH(warp_ops, dim3(n / 64), dim3(64), 0, true, out.data(), fout.data(), in.data());
    int bad = 0;
    for (int w = 0; w < n / 32; w++) {
        const int *v = &in[32 * w];
        unsigned ballot = 0;
        int all = 1, any = 0;
        float sum = 0, mx = -INFINITY;
        for (int l = 0; l < 32; l++) {
            ballot |= (unsigned)(v[l] & 1) << l;
            all &= v[l] >= 0, any |= v[l] > 1000;
            sum += (float)v[l], mx = std::max(mx, (float)v[l]);
        }
        for (int l = 0; l < 32; l++) {
            const int *o = &out[8 * (32 * w + l)];
            int exp[8] = {v[l ^ 5], l + 3 < 32 ? v[l + 3] : v[l], l >= 2 ? v[l - 2] : v[l],
                          v[(l & ~15) + 7], (l % 8) + 1 < 8 ? v[l + 1] : v[l], (int)ballot,
                          all + 2 * any, v[l ^ 1]};
            for (int k = 0; k < 8; k++) bad += o[k] != exp[k];
            bad += fabsf(fout[32 * w + l] - (sum + mx)) > 1e-3f * fabsf(sum + mx);
        }
    }
    CHECK_MSG(bad == 0, "%d wrong warp-operation results", bad);
}

/* dc_warp_* / dc_block_* (one rendezvous in the emu) give the bits of the shuffle-and-barrier
 * code they stand for: values of wide-ranging magnitude (the summation order shows), signed
 * zeros, nans, infinities. Not compared: a nan's payload (the host compiler may swap the
 * operands of a + b, which picks the payload on x86) and the sign of a zero maximum (glibc's
 * fmaxf(-0, +0) returns its first argument and the compiler may swap those too); a GPU gives
 * the canonical nan and +0 anyway. */
static bool same_result(float a, float b, bool is_max) {
    if (a != a || b != b) return a != a && b != b;
    return is_max ? a == b : memcmp(&a, &b, 4) == 0;
}
static float special_value(int flavor) {
    unsigned u;
    float f;
    switch (flavor) {
    case 0: return frand() * ldexpf(1.0f, (int)(rng() % 60) - 30);
    case 1: return (rng() & 1) ? 0.0f : -0.0f;
    case 2:
        if (rng() % 7) return frand() * 100.0f;
        u = 0x7fc00000u | (rng() & 0x3fffffu) | (rng() & 1u) << 31;
        memcpy(&f, &u, 4);
        return f;
    case 3: return (rng() % 3) ? frand() : ((rng() & 1) ? INFINITY : -INFINITY);
    case 4: return -0.0f;
    default: return (rng() % 5) ? -INFINITY : frand();
    }
}
static void test_reductions_bitexact(void) {
    int bad = 0;
    for (int block : {32, 96, 224, 1024}) {
        const int nblocks = 6, n = block * nblocks;
        std::vector<float> in(2 * n), out(12 * n);
        for (int i = 0; i < n; i++) in[2 * i] = special_value(i / block), in[2 * i + 1] = special_value((i / block + 3) % 6);
        EMU_LAUNCH(reductions, dim3(nblocks), dim3(block), 0, true, out.data(), in.data());
        for (int i = 0; i < n; i++)
            for (int k = 0; k < 12; k += 2)
                if (!same_result(out[12 * i + k], out[12 * i + k + 1], k == 2 || k == 6) && bad++ < 5)
                    fprintf(stderr, "block %d thread %d result %d: %a (0x%08x), the shuffle code gives %a\n", block, i,
                            k / 2, out[12 * i + k], (unsigned)__float_as_uint(out[12 * i + k]), out[12 * i + k + 1]);
    }
    CHECK_MSG(bad == 0, "%d reductions differ from the shuffle code", bad);
}

static void test_gelu(void) {
    const int n = 4096;
    std::vector<float> x(n), y(n);
    for (auto &v : x) v = 4.0f * frand();
    EMU_LAUNCH(axpb_gelu, dim3(3), dim3(100), 0, false, y.data(), x.data(), 1.5f, 0.25f, n);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double t = 1.5 * x[i] + 0.25;
        double ref = (i % 4 < 2) ? 0.5 * t * (1 + erf(t / sqrt(2.0)))
                                 : 0.5 * t * (1 + tanh(sqrt(2 / M_PI) * (t + 0.044715 * t * t * t)));
        worst = std::max(worst, fabs(y[i] - ref));
    }
    CHECK_MSG(worst < 1e-5, "gelu abs error %g", worst);
    /* the gradients against central differences in double */
    for (float t = -5.0f; t <= 5.0f; t += 0.37f) {
        double h = 1e-4, d;
        d = (0.5 * (t + h) * (1 + erf((t + h) / sqrt(2.0))) - 0.5 * (t - h) * (1 + erf((t - h) / sqrt(2.0)))) / (2 * h);
        CHECK_MSG(fabs(dc_gelu_erf_grad(t) - d) < 1e-5, "gelu_erf_grad(%g) = %g, want %g", t, dc_gelu_erf_grad(t), d);
        auto gt = [](double u) { return 0.5 * u * (1 + tanh(sqrt(2 / M_PI) * (u + 0.044715 * u * u * u))); };
        d = (gt(t + h) - gt(t - h)) / (2 * h);
        CHECK_MSG(fabs(dc_gelu_tanh_grad(t) - d) < 1e-5, "gelu_tanh_grad(%g) = %g, want %g", t, dc_gelu_tanh_grad(t), d);
    }
}

/* ---- fp16 / bf16 against references that share no code with the emu --------------------- */

static double half_value(unsigned h) { /* exact value of a finite half */
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
    return (h & 0x8000) ? -v : v;
}
static std::vector<double> half_pos; /* values of halves 0x0000..0x7bff, increasing */
static unsigned ref_f2h(float f) {  /* nearest half, ties to the even bit pattern */
    if (f != f) return 0x7fff;
    unsigned sign = signbit(f) ? 0x8000 : 0;
    double a = fabs((double)f);
    if (a >= 65520.0) return sign | 0x7c00;
    size_t hi = std::lower_bound(half_pos.begin(), half_pos.end(), a) - half_pos.begin();
    if (hi < half_pos.size() && half_pos[hi] == a) return sign | (unsigned)hi;
    size_t lo = hi - 1;
    if (hi == half_pos.size()) return sign | (unsigned)lo; /* 65504 < a < 65520 */
    double dl = a - half_pos[lo], dh = half_pos[hi] - a;
    return sign | (unsigned)(dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi));
}
static double bf16_value(unsigned b) { /* exponent 255 (inf) counts as 2^128 for rounding */
    unsigned u = b << 16;
    float t;
    memcpy(&t, &u, 4);
    return ((b >> 7) & 0xff) == 0xff ? copysign(ldexp(1.0, 128), t) : (double)t;
}
static unsigned ref_f2b(float f) {
    if (f != f) return 0x7fff;
    unsigned u;
    memcpy(&u, &f, 4);
    unsigned lo = u >> 16, hi = lo + 1;
    if ((u & 0xffff) == 0) return lo;
    double dl = fabs((double)f - bf16_value(lo)), dh = fabs(bf16_value(hi) - (double)f);
    return dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi);
}

static void test_half_bits(void) {
    const int n = 65536;
    std::vector<unsigned short> bits(n), back(n);
    std::vector<float> f(n);
    for (int i = 0; i < n; i++) bits[i] = (unsigned short)i;
    EMU_LAUNCH(half_roundtrip, dim3(n / 256), dim3(256), 0, false, f.data(), back.data(), bits.data(), n);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int e = (i >> 10) & 31, m = i & 1023;
        if (e == 31 && m) { /* nan: stays nan, comes back as the canonical 0x7fff */
            bad += !(f[i] != f[i]) || back[i] != 0x7fff;
        } else if (e == 31) {
            bad += f[i] != ((i & 0x8000) ? -INFINITY : INFINITY) || back[i] != i;
        } else {
            bad += (double)f[i] != half_value(i) || back[i] != i || signbit(f[i]) != !!(i & 0x8000);
        }
    }
    CHECK_MSG(bad == 0, "%d of 65536 half bit patterns convert wrongly", bad);
}

static void test_float_to_16(void) {
    std::vector<float> x;
    for (unsigned h = 0; h < 0x7c00; h++) { /* every half, the midpoints to the next, +-1 ulp */
        float v = (float)half_value(h), mid = (float)((half_value(h) + half_value(h + 1)) / 2);
        for (float t : {v, mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY)}) x.push_back(t), x.push_back(-t);
    }
    const float special[] = {0.0f, -0.0f, 65504.0f, 65519.996f, 65520.0f, 1e9f, 5.960464e-8f, 2.9802322e-8f,
                             2.9802326e-8f, 1e-30f, 1e-45f, 3.4028235e38f, -3.4028235e38f, INFINITY, -INFINITY, NAN,
                             1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 1.00390625f, 1.01171875f, 0.33333334f};
    for (float t : special) x.push_back(t);
    for (int i = 0; i < 2000000; i++) {
        unsigned u = rng();
        float t;
        memcpy(&t, &u, 4);
        x.push_back(t);
    }
    for (int i = 0; i < 200000; i++) { /* bf16 ties and near-ties */
        unsigned u = (rng() & 0xffff0000u) | (0x8000u + (rng() % 3) - 1);
        float t;
        memcpy(&t, &u, 4);
        x.push_back(t);
    }
    int n = (int)x.size();
    std::vector<unsigned short> h(n), b(n);
    std::vector<float> bf(n);
    EMU_LAUNCH(float_to_16, dim3((n + 255) / 256), dim3(256), 0, false, h.data(), b.data(), bf.data(), x.data(), n);
    int bad_h = 0, bad_b = 0;
    for (int i = 0; i < n; i++) {
        unsigned rh = ref_f2h(x[i]), rb = ref_f2b(x[i]);
        if (h[i] != rh && bad_h++ < 5) fprintf(stderr, "f2h(%a) = 0x%04x, want 0x%04x\n", x[i], h[i], rh);
        if (b[i] != rb && bad_b++ < 5) fprintf(stderr, "f2b(%a) = 0x%04x, want 0x%04x\n", x[i], b[i], rb);
        unsigned ub = (unsigned)b[i] << 16, uf;
        memcpy(&uf, &bf[i], 4);
        bad_b += uf != ub;
    }
    CHECK_MSG(bad_h == 0, "%d of %d float->half conversions wrong", bad_h, n);
    CHECK_MSG(bad_b == 0, "%d of %d float->bf16 conversions wrong", bad_b, n);
#if defined(__FLT16_MAX__)
    int bad_gcc = 0; /* the compiler's own _Float16 conversion (libgcc) agrees, nan aside */
    for (int i = 0; i < n; i++) {
        _Float16 t = (_Float16)x[i];
        unsigned short u;
        memcpy(&u, &t, 2);
        bad_gcc += x[i] == x[i] && u != h[i];
    }
    CHECK_MSG(bad_gcc == 0, "%d conversions differ from _Float16", bad_gcc);
#endif
}

static void test_atomics(void) {
    const int n = 100000, nb = 17;
    std::vector<int> idx(n), count(nb, 0), rc(nb, 0);
    std::vector<float> w(n), bins(nb, 0.0f);
    std::vector<double> rb(nb, 0.0);
    for (int i = 0; i < n; i++) idx[i] = (int)(rng() % nb), w[i] = (float)(rng() % 8), rb[idx[i]] += w[i], rc[idx[i]]++;
    EMU_LAUNCH(atomic_hist, dim3((n + 127) / 128), dim3(128), 0, false, bins.data(), count.data(), idx.data(), w.data(), n);
    for (int k = 0; k < nb; k++) {
        CHECK(count[k] == rc[k]);
        CHECK((double)bins[k] == rb[k]); /* small integers: exact in any order */
    }
}

static void bench(void) {
    const int grid = 64, block = 256, iters = 100;
    std::vector<float> out(grid * block);
    for (int fibers = 1; fibers >= 0; fibers--) {
        unsigned long long s0 = emu_switch_count();
        auto t0 = std::chrono::steady_clock::now();
        if (fibers)
            EMU_LAUNCH(barrier_loop, dim3(grid), dim3(block), 0, true, out.data(), iters);
        else
            EMU_LAUNCH(axpb_gelu, dim3(grid), dim3(block), 0, false, out.data(), out.data(), 1.0f, 0.0f, grid * block);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        unsigned long long sw = emu_switch_count() - s0;
        if (fibers)
            printf("barrier_loop %dx%d, %d barriers/thread: %.3f s, %llu switches, %.1f ns/switch (%s)\n", grid, block,
                   2 * iters, s, sw, 1e9 * s / (double)sw,
#ifdef EMU_USE_UCONTEXT
                   "ucontext"
#else
                   "x86-64 swap"
#endif
            );
        else
            printf("axpb_gelu %dx%d as a plain loop: %.3f ms (%.1f ns/thread)\n", grid, block, 1e3 * s, 1e9 * s / (grid * block));
    }
    { /* the prototype's case in architecture.md: 512 blocks x 128 threads, 11 barriers each */
        std::vector<float> o2(512 * 128);
        auto t0 = std::chrono::steady_clock::now();
        EMU_LAUNCH(barrier_loop, dim3(512), dim3(128), 0, true, o2.data(), 5); /* 2*5 + 1 switches */
        printf("barrier_loop 512x128, 10 barriers/thread: %.3f s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    for (int i = 0; i < block; i++) /* each round adds the right neighbour's value */
        CHECK(out[i] > 0.0f);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    std::vector<float> buf(256);
    if (!strcmp(mode, "deadlock")) {
        EMU_LAUNCH(bad_barrier, dim3(2), dim3(64), 0, true, buf.data());
        fprintf(stderr, "the emu missed the deadlock\n");
        return 1;
    }
    if (!strcmp(mode, "nofibers")) {
        EMU_LAUNCH(bad_barrier, dim3(2), dim3(64), 0, false, buf.data());
        fprintf(stderr, "the emu missed the barrier without fibers\n");
        return 1;
    }
    if (!strcmp(mode, "partialwarp")) { /* 48 threads: the second warp has 16 lanes */
        std::vector<int> in(64), out(8 * 64);
        EMU_LAUNCH(warp_ops, dim3(1), dim3(48), 0, true, out.data(), buf.data(), in.data());
        fprintf(stderr, "the emu missed the shuffle in a partial warp\n");
        return 1;
    }
    if (!strcmp(mode, "block2d")) { /* dc_block_* on a (32, 2) block: the GPU code would race */
        std::vector<float> in(2 * 64), out(12 * 64);
        EMU_LAUNCH(reductions, dim3(1), dim3(32, 2), 0, true, out.data(), in.data());
        fprintf(stderr, "the emu missed the 2-D block reduction\n");
        return 1;
    }
    if (!strcmp(mode, "oob")) { /* heap buffer of exactly n floats; the kernel writes n+1 */
        float *out = (float *)malloc(256 * sizeof(float));
        EMU_LAUNCH(bad_oob, dim3(2), dim3(128), 0, true, out, 256);
        free(out);
        fprintf(stderr, "the out-of-bounds write went unnoticed\n");
        return 1;
    }
    if (!strcmp(mode, "bench")) {
        bench();
        return test_result();
    }
    for (int i = 0; i < 0x7c01; i++) half_pos.push_back(half_value(i));
    test_softmax();
    test_layernorm();
    test_row_sums2();
    test_warp_ops();
    test_reductions_bitexact();
    test_gelu();
    test_half_bits();
    test_float_to_16();
    test_atomics();
    return test_result();
}
