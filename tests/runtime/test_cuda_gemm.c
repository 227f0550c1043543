/* test_cuda_gemm.c: the cuda device layer's GEMM mapping (row-major plan.h semantics run as
 * column-major cuBLASLt products) for every transpose / batch / broadcast / alpha-beta
 * combination, on fake_cuda.c (RT_FAKE_LIB: a host cuBLASLt that implements cuBLAS's
 * column-major definition and rejects inconsistent layouts), against the emu's CPU GEMM.
 * Every third step asks for TF32 products (RT_COMPUTE_32F_FAST_TF32): the fake rounds the
 * operands as the emu does, so both agree, and differ from fp32 products (the compute type
 * reached cuBLASLt). Four more take f16 / bf16 operands with fp32 accumulation and an f32
 * result (what mixed precision's matrix products are): the same within 1e-5. Also: graph
 * capture and replay give the same bits as eager runs; the compute type of every descriptor is
 * the plan's, whatever DEITC_TF32 says (it is no longer read); the paths only a GPU reaches (no
 * algorithm for a 4-byte-aligned strided batch, a failed heuristic query, a cuBLASLt call that
 * breaks graph capture) fail with the plan step and the GEMM's shape named, and the same device
 * still runs the step without a graph; a 16-bit operand with 16-byte rows but a batch stride off
 * 16 bytes is refused at start-up. Skips without RT_FAKE_LIB. */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <dlfcn.h>
#include <string.h>

typedef void (*counts_fn)(int *f32, int *tf32);

/* A device for plan p under the environment variable name=value (NULL: unset); 0 and err on failure. */
static rt_device *device_with(const rt_plan *p, const char *name, const char *value, char *err, size_t errsize) {
    if (value) setenv(name, value, 1);
    else unsetenv(name);
    rt_device *d = NULL;
    err[0] = 0;
    if (rt_device_new(p, &d, err, errsize)) d = NULL;
    unsetenv(name);
    return d;
}

static void check_failures(const rt_plan *p, counts_fn counts, int ns) {
    char err[1200];
    /* the plan's compute type for every descriptor; DEITC_TF32 (once an environment switch,
     * which turned TF32 on even for "0") changes nothing now */
    int want_tf32 = 0, want_f32 = 0;
    for (int i = 0; i < p->num_steps; i++) {
        const rt_gemm *g = &p->steps[i].gemm;
        if (p->steps[i].kind != RT_STEP_GEMM || g->m == 0 || g->n == 0) continue;
        if (g->compute == RT_COMPUTE_32F_FAST_TF32) want_tf32++;
        else want_f32++;
    }
    CHECK(want_tf32 + want_f32 == ns && want_tf32 > 0);
    static const char *values[] = {NULL, "0", "1", "true", "yes"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        rt_device *d = device_with(p, "DEITC_TF32", values[i], err, sizeof err);
        CHECK_MSG(d != NULL, "DEITC_TF32=%s: %s", values[i] ? values[i] : "(unset)", err);
        int f32 = -1, t32 = -1;
        counts(&f32, &t32);
        CHECK_MSG(t32 == want_tf32 && f32 == want_f32, "DEITC_TF32=%s: %d fp32 and %d tf32 descriptors, the plan asks %d and %d",
                  values[i] ? values[i] : "(unset)", f32, t32, want_f32, want_tf32);
        rt_device_free(d);
    }
    /* no algorithm for operands only 4 bytes aligned: step 1 is the first strided batch (its
     * strides are 22, 28 and 55 floats: 8, 16 and 4 bytes) */
    rt_device *d = device_with(p, "FAKE_CUDA_MIN_ALIGN", "16", err, sizeof err);
    CHECK_MSG(d == NULL && strstr(err, "no algorithm for plan step 1 (test gemm)") &&
                  strstr(err, "m 5 n 7 k 3 batch 3, trans 00") && strstr(err, "batch strides 22/28/55") &&
                  strstr(err, "aligned 8/16/4 bytes"),
              "%s", err);
    rt_device_free(d);
    /* a heuristic query that fails: the 3rd is step 2 */
    d = device_with(p, "FAKE_CUDA_HEURISTIC_FAIL", "3", err, sizeof err);
    CHECK_MSG(d == NULL && strstr(err, "cublasLtMatmulAlgoGetHeuristic failed") &&
                  strstr(err, "(plan step 2: test gemm; m 5 n 7 k 3 batch 3"),
              "%s", err);
    rt_device_free(d);
    /* cuBLASLt failing inside graph capture names the first GEMM captured; without the graph the
     * same device runs the step */
    d = device_with(p, "FAKE_CUDA_MIN_ALIGN", NULL, err, sizeof err);
    CHECK_MSG(d != NULL, "%s", err);
    if (d) {
        setenv("FAKE_CUDA_CAPTURE_MATMUL", "fail", 1);
        CHECK(rt_device_run(d, 1) != 0);
        CHECK_MSG(strstr(d->err, "cublasLtMatmul failed") && strstr(d->err, "plan step 0: test gemm; m 5 n 7 k 3 batch 1") &&
                      strstr(d->err, "while capturing the step as a CUDA Graph: --no-graph"),
                  "%s", d->err);
        CHECK_MSG(rt_device_run(d, 0) == 0, "%s", d->err);
        /* a capture that cuBLASLt invalidates shows only at its end */
        setenv("FAKE_CUDA_CAPTURE_MATMUL", "invalidate", 1);
        CHECK(rt_device_run(d, 1) != 0);
        CHECK_MSG(strstr(d->err, "cuStreamEndCapture failed: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED") &&
                      strstr(d->err, "--no-graph or DEITC_NO_GRAPH=1"),
                  "%s", d->err);
        CHECK_MSG(rt_device_run(d, 0) == 0, "%s", d->err);
        unsetenv("FAKE_CUDA_CAPTURE_MATMUL");
        CHECK_MSG(rt_device_run(d, 1) == 0 && d->captured, "%s", d->err);
        rt_device_free(d);
    }
}

static uint64_t rng = 99;
static float frand(void) { return (float)((double)(rt_splitmix64(&rng) >> 11) * 0x1p-53 * 2 - 1); }

int main(void) {
    const char *lib = getenv("RT_FAKE_LIB");
    if (!lib || !*lib) {
        fprintf(stderr, "RT_FAKE_LIB not set: skipped\n");
        return 0;
    }
    setenv("DEITC_LIBCUDA", lib, 1);
    setenv("DEITC_CUBLASLT", lib, 1);
    enum { MAXSTEPS = 64 };
    rt_plan_step steps[MAXSTEPS];
    memset(steps, 0, sizeof steps);
    int ns = 0;
    uint64_t off = 0;
    static const int64_t shapes[][3] = {{5, 7, 3}, {1, 9, 4}, {8, 1, 6}, {6, 5, 1}};
    static const float ab[][2] = {{1, 0}, {0.5f, 2}, {1, 1}, {-1.5f, 0.25f}};
    int v = 0;
    for (int s = 0; s < 4; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int mode = 0; mode < 3 && ns < MAXSTEPS; mode++, v++) { /* single, batched, broadcast */
                    rt_gemm *g = &steps[ns].gemm;
                    steps[ns].kind = RT_STEP_GEMM;
                    steps[ns].what = "test gemm";
                    g->m = shapes[s][0], g->n = shapes[s][1], g->k = shapes[s][2];
                    g->trans_a = ta, g->trans_b = tb, g->batch = mode ? 3 : 1;
                    g->alpha = ab[v % 4][0], g->beta = ab[v % 4][1];
                    g->compute = v % 3 == 1 ? RT_COMPUTE_32F_FAST_TF32 : RT_COMPUTE_32F;
                    int64_t ar = ta ? g->k : g->m, ac = ta ? g->m : g->k, br = tb ? g->n : g->k, bc = tb ? g->k : g->n;
                    g->lda = ac + 1, g->ldb = bc + 2, g->ldc = g->n + 3;
                    g->stride_a = mode == 2 && (v & 1) ? 0 : ar * g->lda + 2;
                    g->stride_b = mode == 2 && !(v & 1) ? 0 : br * g->ldb + 1;
                    g->stride_c = g->m * g->ldc + 5;
                    g->a = off, off += 256 * ((4 * (uint64_t)(2 * ar * g->lda + 2 * g->stride_a + 8) + 255) / 256);
                    g->b = off, off += 256 * ((4 * (uint64_t)(2 * br * g->ldb + 2 * g->stride_b + 8) + 255) / 256);
                    g->c = off, off += 256 * ((4 * (uint64_t)(2 * g->m * g->ldc + 2 * g->stride_c + 8) + 255) / 256);
                    ns++;
                }
    /* 16-bit operands, f32 results: (m, n, k, ta, tb, batch, type) */
    static const int typed[4][7] = {{9, 17, 33, 0, 1, 1, RT_F16}, {16, 8, 40, 1, 0, 3, RT_F16},
                                    {7, 24, 16, 0, 0, 2, RT_BF16}, {12, 5, 64, 1, 1, 1, RT_BF16}};
    int first_typed = ns;
    for (int t = 0; t < 4 && ns < MAXSTEPS; t++) {
        rt_gemm *g = &steps[ns].gemm;
        steps[ns].kind = RT_STEP_GEMM;
        steps[ns].what = "test gemm 16-bit";
        g->m = typed[t][0], g->n = typed[t][1], g->k = typed[t][2], g->trans_a = typed[t][3], g->trans_b = typed[t][4];
        g->batch = typed[t][5], g->alpha = 1, g->beta = t == 1 ? 1 : 0;
        g->a_type = g->b_type = (rt_dtype)typed[t][6], g->c_type = RT_F32;
        int64_t ar = g->trans_a ? g->k : g->m, br = g->trans_b ? g->n : g->k;
        g->lda = (g->trans_a ? g->m : g->k) + 8, g->ldb = (g->trans_b ? g->k : g->n) + 8, g->ldc = g->n;
        g->stride_a = g->batch > 1 ? ar * g->lda : 0, g->stride_b = g->batch > 1 ? br * g->ldb : 0;
        g->stride_c = g->batch > 1 ? g->m * g->ldc : 0;
        g->a = off, off += 256 * ((2 * (uint64_t)(g->batch * ar * g->lda) + 255) / 256);
        g->b = off, off += 256 * ((2 * (uint64_t)(g->batch * br * g->ldb) + 255) / 256);
        g->c = off, off += 256 * ((4 * (uint64_t)(g->batch * g->m * g->ldc) + 255) / 256);
        ns++;
    }
    rt_plan p;
    memset(&p, 0, sizeof p);
    p.model_name = "gemm_test", p.batch = 1, p.precision = "fp32", p.arena_bytes = off;
    p.num_steps = ns, p.steps = steps, p.ptx = "// none\n", p.arch = "sm_90";
    p.beta1 = 0.9, p.beta2 = 0.999;
    float *init = malloc(off), *want = malloc(off), *got = malloc(off), *got2 = malloc(off);
    for (uint64_t i = 0; i < off / 4; i++) init[i] = frand();
    for (int i = first_typed; i < ns; i++) { /* the 16-bit operands: valid f16 / bf16 values */
        const rt_gemm *g = &steps[i].gemm;
        uint16_t *h = (uint16_t *)((char *)init + g->a);
        for (uint64_t e = 0; e < (g->c - g->a) / 2; e++)
            h[e] = g->a_type == RT_F16 ? rt_float_to_half(frand()) : rt_float_to_bf16(frand());
    }
    memcpy(want, init, off);
    float *want32 = malloc(off);
    memcpy(want32, init, off);
    for (int i = 0; i < ns; i++) {
        const rt_gemm *g = &steps[i].gemm;
        rt_gemm_cpu(g, (char *)want + g->a, (char *)want + g->b, (char *)want + g->c);
        rt_gemm g32 = *g;
        g32.compute = RT_COMPUTE_32F;
        rt_gemm_cpu(&g32, (char *)want32 + g->a, (char *)want32 + g->b, (char *)want32 + g->c);
    }
    /* TF32's 10-bit operands move the products by about 1e-3 relative: the steps differ */
    int tf32_steps = 0, tf32_moved = 0;
    for (int i = 0; i < ns; i++) {
        const rt_gemm *g = &steps[i].gemm;
        if (g->compute != RT_COMPUTE_32F_FAST_TF32) continue;
        tf32_steps++;
        int moved = 0;
        for (int64_t e = 0; e < g->m * g->ldc; e++) {
            float x = want[g->c / 4 + e], y = want32[g->c / 4 + e];
            moved |= fabsf(x - y) > 1e-5f * (1 + fabsf(y));
        }
        tf32_moved += moved;
    }
    CHECK_MSG(tf32_steps == 16 && tf32_moved >= 12, "%d TF32 steps, %d differ from fp32", tf32_steps, tf32_moved);
    free(want32);
    char err[1200];
    rt_device *d = NULL;
    int ok = rt_device_new(&p, &d, err, sizeof err) == 0;
    CHECK_MSG(ok, "%s", err);
    if (ok) {
        CHECK(d->upload(d, 0, init, off) == 0 && rt_device_run(d, 0) == 0 && d->download(d, got, 0, off) == 0);
        CHECK_MSG(!d->err[0], "%s", d->err);
        int bad = 0;
        for (uint64_t i = 0; i < off / 4 && bad < 5; i++)
            if (!(fabsf(got[i] - want[i]) <= 1e-5f * (1 + fabsf(want[i])))) {
                fprintf(stderr, "arena float %llu: cuda layer %g, cpu gemm %g\n", (unsigned long long)i, got[i], want[i]);
                bad++;
            }
        CHECK(bad == 0);
        /* captured once, replayed twice = two eager runs */
        CHECK(d->upload(d, 0, init, off) == 0 && rt_device_run(d, 0) == 0 && rt_device_run(d, 0) == 0 &&
              d->download(d, got, 0, off) == 0);
        CHECK(d->upload(d, 0, init, off) == 0 && rt_device_run(d, 1) == 0 && rt_device_run(d, 1) == 0 &&
              d->download(d, got2, 0, off) == 0 && d->captured);
        CHECK(memcmp(got, got2, off) == 0);
        rt_device_free(d);
    }
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL); /* the runtime's handle: the same counters */
    counts_fn counts = h ? (counts_fn)dlsym(h, "fake_cuda_counts") : NULL;
    CHECK_MSG(counts != NULL, "fake_cuda_counts in %s: %s", lib, dlerror());
    if (counts) check_failures(&p, counts, ns);
    /* TF32 products of f16 operands: refused at start-up, naming the step */
    {
        rt_plan_step bad;
        memset(&bad, 0, sizeof bad);
        bad.kind = RT_STEP_GEMM, bad.what = "f16 gemm";
        bad.gemm.m = bad.gemm.n = bad.gemm.k = 8, bad.gemm.batch = 1, bad.gemm.lda = bad.gemm.ldb = bad.gemm.ldc = 8;
        bad.gemm.alpha = 1, bad.gemm.a_type = bad.gemm.b_type = RT_F16, bad.gemm.c_type = RT_F32;
        bad.gemm.b = 256, bad.gemm.c = 512, bad.gemm.compute = RT_COMPUTE_32F_FAST_TF32;
        rt_plan pb = p;
        pb.num_steps = 1, pb.steps = &bad, pb.arena_bytes = 1024;
        rt_device *db = NULL;
        CHECK(rt_device_new(&pb, &db, err, sizeof err) != 0);
        CHECK_MSG(strstr(err, "step 0 (f16 gemm): GEMM compute type 1 with F16 x F16 operands is not supported"), "%s",
                  err);
        rt_device_free(db);
    }
    /* 16-bit alignment at start-up: a batch stride off 16 bytes with 16-byte rows is refused
     * (naming the step and operand); the same GEMM with padded strides (what the memory plan
     * makes of attention's N = 197 rows) and one with rows the model fixes (ld 10) start */
    for (int v = 0; v < 3; v++) {
        rt_plan_step st;
        memset(&st, 0, sizeof st);
        st.kind = RT_STEP_GEMM, st.what = "f16 batched gemm";
        rt_gemm *g = &st.gemm;
        g->m = 5, g->n = 8, g->k = v == 2 ? 10 : 13, g->batch = 2, g->alpha = 1;
        g->lda = v == 2 ? 10 : 16, g->ldb = 8, g->ldc = 8;
        g->stride_a = v == 0 ? 5 * 13 : 5 * g->lda, g->stride_b = g->k * 8, g->stride_c = 5 * 8;
        g->a_type = g->b_type = RT_F16, g->c_type = RT_F32;
        g->a = 0, g->b = 512, g->c = 1024;
        rt_plan pa = p;
        pa.num_steps = 1, pa.steps = &st, pa.arena_bytes = 2048;
        rt_device *da = NULL;
        int rc = rt_device_new(&pa, &da, err, sizeof err);
        if (v == 0)
            CHECK_MSG(rc != 0 && strstr(err, "plan step 0 (f16 batched gemm): 16-bit GEMM operand A has 16-byte rows (ld 16)") &&
                          strstr(err, "batch strides 65/"),
                      "%s", err);
        else
            CHECK_MSG(rc == 0, "case %d: %s", v, err);
        rt_device_free(da);
    }
    fprintf(stderr, "%d GEMM steps through the cuda device layer\n", ns);
    free(init), free(want), free(got), free(got2);
    return test_result();
}
