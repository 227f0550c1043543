/* gemm_cpu.c: the emu target's matrix products: row-major batched GEMM in float on the host,
 * with the semantics of rt_gemm (plan.h): transposes, leading dimensions, batch strides
 * (0 broadcasts), alpha/beta (beta == 0 ignores C's old contents, NaN included).
 *
 * BLIS-like blocking: work units are (batch, MC rows, NC columns) tiles of C; a unit walks K in
 * KC slices, packs its A slice into MR-row strips and its B slice into NR-column strips (in
 * float, converting f16/bf16 operands, rounding to TF32 under RT_COMPUTE_32F_FAST_TF32), and runs an MR x NR micro-kernel (AVX2+FMA when the
 * CPU has it, else portable C). Units are spread over a few pthreads; each C element is
 * computed by one thread in a fixed order, so results do not depend on the thread count.
 */
#include "runtime/rt.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GEMM_X86 1
#include <immintrin.h>
#endif

enum { MR = 6, NR = 16, KC = 256, MC = 72, NC = 256 };

typedef struct {
    const rt_gemm *g;
    const unsigned char *a, *b;
    unsigned char *c;
    int64_t units_m, units_n, units;
    atomic_llong next;
    int use_avx2;
} gemm_job;

static int gemm_threads_setting; /* 0: not decided yet */

void rt_gemm_cpu_set_threads(int n) { gemm_threads_setting = n < 1 ? 1 : n; }

static int gemm_threads(void) {
    if (gemm_threads_setting > 0) return gemm_threads_setting;
    const char *env = getenv("DEITC_GEMM_THREADS");
    long n = env && *env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > 16) n = 16;
    gemm_threads_setting = (int)n;
    return gemm_threads_setting;
}

static inline float load_elem(const unsigned char *base, rt_dtype t, int64_t i) {
    switch (t) {
    case RT_F16: {
        uint16_t h;
        memcpy(&h, base + 2 * i, 2);
        return rt_half_to_float(h);
    }
    case RT_BF16: {
        uint16_t h;
        memcpy(&h, base + 2 * i, 2);
        return rt_bf16_to_float(h);
    }
    default: {
        float f;
        memcpy(&f, base + 4 * i, 4);
        return f;
    }
    }
}

static inline void store_elem(unsigned char *base, rt_dtype t, int64_t i, float v) {
    if (t == RT_F16) {
        uint16_t h = rt_float_to_half(v);
        memcpy(base + 2 * i, &h, 2);
    } else if (t == RT_BF16) {
        uint16_t h = rt_float_to_bf16(v);
        memcpy(base + 2 * i, &h, 2);
    } else {
        memcpy(base + 4 * i, &v, 4);
    }
}

/* Packs opA(A)[i0 .. i0+mc, p0 .. p0+kc) into strips: ap[strip][p][MR], zero-padded rows. */
static void pack_a(const rt_gemm *g, const unsigned char *a, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                   float *ap) {
    for (int64_t is = 0; is < mc; is += MR) {
        float *dst = ap + is * kc;
        for (int64_t i = 0; i < MR; i++) {
            int64_t row = i0 + is + i;
            if (is + i >= mc) {
                for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = 0;
            } else if (g->a_type == RT_F32) {
                const float *src = (const float *)a;
                if (g->trans_a)
                    for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = src[(p0 + p) * g->lda + row];
                else
                    for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = src[row * g->lda + p0 + p];
            } else {
                for (int64_t p = 0; p < kc; p++)
                    dst[p * MR + i] = load_elem(a, g->a_type, g->trans_a ? (p0 + p) * g->lda + row
                                                                         : row * g->lda + p0 + p);
            }
        }
    }
}

/* Packs opB(B)[p0 .. p0+kc, j0 .. j0+nc) into strips: bp[strip][p][NR], zero-padded columns. */
static void pack_b(const rt_gemm *g, const unsigned char *b, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                   float *bp) {
    for (int64_t js = 0; js < nc; js += NR) {
        float *dst = bp + js * kc;
        int64_t nr = nc - js < NR ? nc - js : NR;
        for (int64_t p = 0; p < kc; p++) {
            float *d = dst + p * NR;
            if (g->b_type == RT_F32 && !g->trans_b) {
                const float *src = (const float *)b + (p0 + p) * g->ldb + j0 + js;
                for (int64_t j = 0; j < nr; j++) d[j] = src[j];
            } else if (g->b_type == RT_F32) {
                const float *src = (const float *)b;
                for (int64_t j = 0; j < nr; j++) d[j] = src[(j0 + js + j) * g->ldb + p0 + p];
            } else {
                for (int64_t j = 0; j < nr; j++)
                    d[j] = load_elem(b, g->b_type, g->trans_b ? (j0 + js + j) * g->ldb + p0 + p
                                                              : (p0 + p) * g->ldb + j0 + js + j);
            }
            for (int64_t j = nr; j < NR; j++) d[j] = 0;
        }
    }
}

/* acc[MR][NR] = sum_p ap[p][:] (outer) bp[p][:] */
static void kernel_generic(int64_t kc, const float *ap, const float *bp, float *acc) {
    float c[MR][NR];
    memset(c, 0, sizeof c);
    for (int64_t p = 0; p < kc; p++) {
        const float *av = ap + p * MR, *bv = bp + p * NR;
        for (int i = 0; i < MR; i++) {
            float x = av[i];
            for (int j = 0; j < NR; j++) c[i][j] += x * bv[j];
        }
    }
    memcpy(acc, c, sizeof c);
}

#ifdef GEMM_X86
__attribute__((target("avx2,fma"))) static void kernel_avx2(int64_t kc, const float *ap, const float *bp,
                                                            float *acc) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
           c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
           c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
           c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        const float *av = ap + p * MR;
        __m256 b0 = _mm256_loadu_ps(bp + p * NR), b1 = _mm256_loadu_ps(bp + p * NR + 8), x;
        x = _mm256_broadcast_ss(av + 0);
        c00 = _mm256_fmadd_ps(x, b0, c00);
        c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(av + 1);
        c10 = _mm256_fmadd_ps(x, b0, c10);
        c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(av + 2);
        c20 = _mm256_fmadd_ps(x, b0, c20);
        c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(av + 3);
        c30 = _mm256_fmadd_ps(x, b0, c30);
        c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(av + 4);
        c40 = _mm256_fmadd_ps(x, b0, c40);
        c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(av + 5);
        c50 = _mm256_fmadd_ps(x, b0, c50);
        c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    _mm256_storeu_ps(acc + 0 * NR, c00);
    _mm256_storeu_ps(acc + 0 * NR + 8, c01);
    _mm256_storeu_ps(acc + 1 * NR, c10);
    _mm256_storeu_ps(acc + 1 * NR + 8, c11);
    _mm256_storeu_ps(acc + 2 * NR, c20);
    _mm256_storeu_ps(acc + 2 * NR + 8, c21);
    _mm256_storeu_ps(acc + 3 * NR, c30);
    _mm256_storeu_ps(acc + 3 * NR + 8, c31);
    _mm256_storeu_ps(acc + 4 * NR, c40);
    _mm256_storeu_ps(acc + 4 * NR + 8, c41);
    _mm256_storeu_ps(acc + 5 * NR, c50);
    _mm256_storeu_ps(acc + 5 * NR + 8, c51);
}

static int cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int cpu_has_avx2(void) { return 0; }
#endif

/* Computes one (batch, row block, column block) unit of C. */
static void gemm_unit(gemm_job *job, int64_t u, float *ap, float *bp) {
    const rt_gemm *g = job->g;
    int64_t per_batch = job->units_m * job->units_n;
    int64_t bi = u / per_batch, r = u % per_batch;
    int64_t i0 = (r / job->units_n) * MC, j0 = (r % job->units_n) * NC;
    int64_t mc = g->m - i0 < MC ? g->m - i0 : MC, nc = g->n - j0 < NC ? g->n - j0 : NC;
    const unsigned char *a = job->a + bi * g->stride_a * (int64_t)rt_dtype_size(g->a_type);
    const unsigned char *b = job->b + bi * g->stride_b * (int64_t)rt_dtype_size(g->b_type);
    unsigned char *c = job->c + bi * g->stride_c * (int64_t)rt_dtype_size(g->c_type);
    float acc[MR * NR];
    if (g->k == 0) { /* C = beta * C */
        for (int64_t i = 0; i < mc; i++)
            for (int64_t j = 0; j < nc; j++) {
                int64_t at = (i0 + i) * g->ldc + j0 + j;
                store_elem(c, g->c_type, at, g->beta == 0 ? 0.0f : g->beta * load_elem(c, g->c_type, at));
            }
        return;
    }
    for (int64_t p0 = 0; p0 < g->k; p0 += KC) {
        int64_t kc = g->k - p0 < KC ? g->k - p0 : KC;
        float beta = p0 == 0 ? g->beta : 1.0f;
        pack_a(g, a, i0, mc, p0, kc, ap);
        pack_b(g, b, p0, kc, j0, nc, bp);
        if (g->compute == RT_COMPUTE_32F_FAST_TF32) { /* the tensor cores' TF32 operands */
            int64_t na = ((mc + MR - 1) / MR) * MR * kc, nb = ((nc + NR - 1) / NR) * NR * kc;
            for (int64_t i = 0; i < na; i++) ap[i] = rt_round_tf32(ap[i]);
            for (int64_t i = 0; i < nb; i++) bp[i] = rt_round_tf32(bp[i]);
        }
        for (int64_t js = 0; js < nc; js += NR) {
            int64_t nr = nc - js < NR ? nc - js : NR;
            for (int64_t is = 0; is < mc; is += MR) {
                int64_t mr = mc - is < MR ? mc - is : MR;
#ifdef GEMM_X86
                if (job->use_avx2)
                    kernel_avx2(kc, ap + is * kc, bp + js * kc, acc);
                else
#endif
                    kernel_generic(kc, ap + is * kc, bp + js * kc, acc);
                for (int64_t i = 0; i < mr; i++) {
                    int64_t row = (i0 + is + i) * g->ldc + j0 + js;
                    if (g->c_type == RT_F32) {
                        float *cr = (float *)c + row;
                        if (beta == 0)
                            for (int64_t j = 0; j < nr; j++) cr[j] = g->alpha * acc[i * NR + j];
                        else if (beta == 1)
                            for (int64_t j = 0; j < nr; j++) cr[j] += g->alpha * acc[i * NR + j];
                        else
                            for (int64_t j = 0; j < nr; j++) cr[j] = g->alpha * acc[i * NR + j] + beta * cr[j];
                    } else {
                        for (int64_t j = 0; j < nr; j++) {
                            float old = beta == 0 ? 0.0f : beta * load_elem(c, g->c_type, row + j);
                            store_elem(c, g->c_type, row + j, g->alpha * acc[i * NR + j] + old);
                        }
                    }
                }
            }
        }
    }
}

static void *gemm_worker(void *arg) {
    gemm_job *job = arg;
    float *ap = malloc(sizeof(float) * (MC + MR) * KC), *bp = malloc(sizeof(float) * (NC + NR) * KC);
    if (!ap || !bp) abort();
    for (;;) {
        long long u = atomic_fetch_add(&job->next, 1);
        if (u >= job->units) break;
        gemm_unit(job, u, ap, bp);
    }
    free(ap);
    free(bp);
    return NULL;
}

void rt_gemm_cpu(const rt_gemm *g, const void *a, const void *b, void *c) {
    if (g->m <= 0 || g->n <= 0 || g->batch <= 0) return;
    static int avx2 = -1;
    if (avx2 < 0) avx2 = cpu_has_avx2() && !getenv("DEITC_GEMM_GENERIC");
    gemm_job job = {.g = g, .a = a, .b = b, .c = c, .use_avx2 = avx2};
    job.units_m = (g->m + MC - 1) / MC;
    job.units_n = (g->n + NC - 1) / NC;
    job.units = job.units_m * job.units_n * g->batch;
    atomic_init(&job.next, 0);
    int nt = gemm_threads();
    double flops = 2.0 * (double)g->m * (double)g->n * (double)(g->k > 0 ? g->k : 1) * (double)g->batch;
    if (flops < 4e6) nt = 1;
    if (nt > job.units) nt = (int)job.units;
    pthread_t th[16];
    int started = 0;
    for (int t = 1; t < nt; t++)
        if (pthread_create(&th[started], NULL, gemm_worker, &job) == 0) started++;
    gemm_worker(&job);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
}

/* ---- epilogues (plan.h's rt_epilogue), after the product is in C --------------------------- */

/* tanh GELU and its derivative: the float expressions of the kernels' dc_gelu_tanh and
 * dc_gelu_tanh_grad (kernel_prelude.cuh), so the fused and unfused emu steps agree */
static float gelu_tanh(float x) {
    float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

static float gelu_tanh_grad(float x) {
    float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    float t = tanhf(u);
    float du = 0.79788456080286536f * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

void rt_gemm_cpu_epilogue(const rt_gemm *g, void *c, void *bias, void *aux) {
    rt_dtype t = g->c_type;
    unsigned char *cb = c, *bb = bias, *ab = aux;
    if (g->epilogue == RT_EPILOGUE_GELU_AUX_BIAS) {
        for (int64_t i = 0; i < g->m; i++)
            for (int64_t j = 0; j < g->n; j++) {
                float h = load_elem(cb, t, i * g->ldc + j) + load_elem(bb, t, j);
                store_elem(ab, t, i * g->ldaux + j, h);
                store_elem(cb, t, i * g->ldc + j, gelu_tanh(load_elem(ab, t, i * g->ldaux + j)));
            }
    } else if (g->epilogue == RT_EPILOGUE_DGELU_BGRAD) {
        float *sum = calloc((size_t)g->n + 1, sizeof(float)); /* in float, stored once */
        if (!sum) abort();
        for (int64_t i = 0; i < g->m; i++)
            for (int64_t j = 0; j < g->n; j++) {
                float d = load_elem(cb, t, i * g->ldc + j) * gelu_tanh_grad(load_elem(ab, t, i * g->ldaux + j));
                store_elem(cb, t, i * g->ldc + j, d);
                sum[j] += load_elem(cb, t, i * g->ldc + j);
            }
        for (int64_t j = 0; j < g->n; j++) store_elem(bb, t, j, sum[j]);
        free(sum);
    }
}
