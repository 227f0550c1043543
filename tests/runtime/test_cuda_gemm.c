/* test_cuda_gemm.c: the cuda device layer's GEMM mapping (row-major plan.h semantics run as
 * column-major cuBLASLt products) for every transpose / batch / broadcast / alpha-beta
 * combination, on fake_cuda.c (RT_FAKE_LIB: a host cuBLASLt that implements cuBLAS's
 * column-major definition and rejects inconsistent layouts), against the emu's CPU GEMM.
 * Also: graph capture and replay give the same bits as eager runs; DEITC_TF32 is parsed (0 and
 * false keep fp32, 1 and true ask cuBLASLt for TF32, anything else is an error); the paths only a
 * GPU reaches (no algorithm for a 4-byte-aligned strided batch, a failed heuristic query, a
 * cuBLASLt call that breaks graph capture) fail with the plan step and the GEMM's shape named,
 * and the same device still runs the step without a graph. Skips without RT_FAKE_LIB. */
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
    /* DEITC_TF32: the compute type of every f32 GEMM descriptor */
    static const struct {
        const char *value;
        int tf32;
    } tf[] = {{NULL, 0}, {"", 0}, {"0", 0}, {"false", 0}, {"FALSE", 0}, {"1", 1}, {"true", 1}, {"True", 1}};
    for (size_t i = 0; i < sizeof tf / sizeof tf[0]; i++) {
        rt_device *d = device_with(p, "DEITC_TF32", tf[i].value, err, sizeof err);
        CHECK_MSG(d != NULL, "DEITC_TF32=%s: %s", tf[i].value ? tf[i].value : "(unset)", err);
        int f32 = -1, t32 = -1;
        counts(&f32, &t32);
        CHECK_MSG(t32 == (tf[i].tf32 ? ns : 0) && f32 == (tf[i].tf32 ? 0 : ns),
                  "DEITC_TF32=%s: %d fp32 and %d tf32 descriptors of %d", tf[i].value ? tf[i].value : "(unset)",
                  f32, t32, ns);
        rt_device_free(d);
    }
    static const char *bad[] = {"yes", "2", "on", "0x1", " 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rt_device *d = device_with(p, "DEITC_TF32", bad[i], err, sizeof err);
        char want[64];
        snprintf(want, sizeof want, "DEITC_TF32=%s: expected 0, 1, true or false", bad[i]);
        CHECK_MSG(d == NULL && strstr(err, want), "DEITC_TF32=%s: %s", bad[i], err);
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
    rt_plan p;
    memset(&p, 0, sizeof p);
    p.model_name = "gemm_test", p.batch = 1, p.precision = "fp32", p.arena_bytes = off;
    p.num_steps = ns, p.steps = steps, p.ptx = "// none\n", p.arch = "sm_90";
    p.beta1 = 0.9, p.beta2 = 0.999;
    float *init = malloc(off), *want = malloc(off), *got = malloc(off), *got2 = malloc(off);
    for (uint64_t i = 0; i < off / 4; i++) init[i] = frand();
    memcpy(want, init, off);
    for (int i = 0; i < ns; i++) {
        const rt_gemm *g = &steps[i].gemm;
        rt_gemm_cpu(g, (char *)want + g->a, (char *)want + g->b, (char *)want + g->c);
    }
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
    fprintf(stderr, "%d GEMM steps through the cuda device layer\n", ns);
    free(init), free(want), free(got), free(got2);
    return test_result();
}
