/* interp_gemm.c: the reference interpreter's matrix product (MATMUL, so attention's q k^T and
 * a v too), in double: cache-blocked and spread over a few host threads.
 *
 * The semantics are the plain triple loop's: each C element is alpha * (sum over k = 0, 1, ...
 * K-1 of a[i,k] * b[k,j]), the sum started at +0 and taken in ascending k with one rounding
 * per multiply and per add (no fused multiply-add: this file is built with -ffp-contract=off
 * and the vector kernel uses separate multiply and add). Blocking only changes where partial
 * sums wait between K slices (in C itself), never their order, so the result is bit-identical
 * to the unblocked loop and independent of the thread count.
 *
 * A batch whose b is shared and whose a and c follow one another is one tall product. B is
 * packed first, once, into NR-column strips per (NB columns, KC slice) panel (zero-padded at the
 * edges), the panels spread over the threads; then work units, (batch matrix, MB rows, NB
 * columns) tiles of C taken from an atomic counter, walk K in KC slices, pack their A slice into
 * MR-row strips and run an MR x NR register kernel (AVX2 when
 * the CPU has it and DEITC_GEMM_NO_AVX2 is not set, else portable C). Threads: the interpreter's
 * host threads (ir/interp_par.c).
 */
#include "ir/interp_par.h"
#include "ir/ir.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IG_X86 1
#include <immintrin.h>
#endif

enum { MR = 4, NR = 8, KC = 192, MB = 48, NB = 192 };

typedef struct {
    const ir_gemm_f64 *p;
    double *bpack;       /* every batch matrix's B, packed: npad * k doubles each */
    int64_t npad;        /* n rounded up to NR */
    int64_t units_m, units_n, units;
    atomic_llong next;
    int avx2;
} ig_job;

void ir_gemm_f64_set_threads(int n) { ir_host_threads_set(n); }

/* Packs a kc x width block whose element (k, x) is base[k * ks + x * xs] into W-wide strips,
 * zero-padded: strip s (x from s to s+W), row k, column x - s at s * kc + k * W + x - s. Rows
 * of the block are copied whole when x runs along memory (xs 1), else gathered. */
static inline void pack_strips(const double *base, int64_t ks, int64_t xs, int64_t width, int64_t kc, int W,
                               double *dst) {
    for (int64_t s = 0; s < width; s += W, dst += W * kc) {
        int64_t cnt = width - s < W ? width - s : W;
        if (cnt < W) memset(dst, 0, sizeof(double) * (size_t)(W * kc));
        if (xs == 1) {
            for (int64_t k = 0; k < kc; k++) memcpy(dst + k * W, base + k * ks + s, sizeof(double) * (size_t)cnt);
            continue;
        }
        const double *src[NR > MR ? NR : MR] = {0}; /* (the first cnt are set; -O3 cannot see it) */
        for (int64_t x = 0; x < cnt; x++) src[x] = base + (s + x) * xs;
        if (cnt == W) /* a fixed count (W is a constant where this is inlined): unrolled */
            for (int64_t k = 0; k < kc; k++)
                for (int x = 0; x < W; x++) dst[k * W + x] = src[x][k * ks];
        else
            for (int64_t k = 0; k < kc; k++)
                for (int64_t x = 0; x < cnt; x++) dst[k * W + x] = src[x][k * ks];
    }
}

/* A[i0.., p0..] (mb x kc) into MR-row strips: strip s, column k, row r at (s*kc + k)*MR + r */
static void pack_a(const ir_gemm_f64 *p, const double *a, int64_t i0, int64_t mb, int64_t p0, int64_t kc,
                   double *dst) {
    if (p->trans_a) pack_strips(a + p0 * p->m + i0, p->m, 1, mb, kc, MR, dst);
    else pack_strips(a + i0 * p->k + p0, 1, p->k, mb, kc, MR, dst);
}

/* B[p0.., j0..] (kc x nb) into NR-column strips: strip s, row k, column c at (s*kc + k)*NR + c */
static void pack_b(const ir_gemm_f64 *p, const double *b, int64_t p0, int64_t kc, int64_t j0, int64_t nb,
                   double *dst) {
    if (p->trans_b) pack_strips(b + j0 * p->k + p0, 1, p->k, nb, kc, NR, dst);
    else pack_strips(b + p0 * p->n + j0, p->n, 1, nb, kc, NR, dst);
}

/* C[MR][NR] (row stride ldc) += strip a (kc x MR) times strip b (kc x NR), k ascending */
static void kernel_generic(int64_t kc, const double *ap, const double *bp, double *acc, int64_t ldc) {
    double t[MR][NR];
    for (int r = 0; r < MR; r++) memcpy(t[r], acc + r * ldc, sizeof t[r]);
    for (int64_t k = 0; k < kc; k++, ap += MR, bp += NR)
        for (int r = 0; r < MR; r++)
            for (int c = 0; c < NR; c++) t[r][c] += ap[r] * bp[c];
    for (int r = 0; r < MR; r++) memcpy(acc + r * ldc, t[r], sizeof t[r]);
}

#ifdef IG_X86
__attribute__((target("avx2"))) static void kernel_avx2(int64_t kc, const double *ap, const double *bp,
                                                        double *acc, int64_t ldc) {
    double *r0 = acc, *r1 = acc + ldc, *r2 = acc + 2 * ldc, *r3 = acc + 3 * ldc;
    __m256d c00 = _mm256_loadu_pd(r0), c01 = _mm256_loadu_pd(r0 + 4);
    __m256d c10 = _mm256_loadu_pd(r1), c11 = _mm256_loadu_pd(r1 + 4);
    __m256d c20 = _mm256_loadu_pd(r2), c21 = _mm256_loadu_pd(r2 + 4);
    __m256d c30 = _mm256_loadu_pd(r3), c31 = _mm256_loadu_pd(r3 + 4);
    for (int64_t k = 0; k < kc; k++, ap += MR, bp += NR) {
        __m256d b0 = _mm256_loadu_pd(bp), b1 = _mm256_loadu_pd(bp + 4);
        __m256d a = _mm256_broadcast_sd(ap + 0);
        c00 = _mm256_add_pd(c00, _mm256_mul_pd(a, b0)), c01 = _mm256_add_pd(c01, _mm256_mul_pd(a, b1));
        a = _mm256_broadcast_sd(ap + 1);
        c10 = _mm256_add_pd(c10, _mm256_mul_pd(a, b0)), c11 = _mm256_add_pd(c11, _mm256_mul_pd(a, b1));
        a = _mm256_broadcast_sd(ap + 2);
        c20 = _mm256_add_pd(c20, _mm256_mul_pd(a, b0)), c21 = _mm256_add_pd(c21, _mm256_mul_pd(a, b1));
        a = _mm256_broadcast_sd(ap + 3);
        c30 = _mm256_add_pd(c30, _mm256_mul_pd(a, b0)), c31 = _mm256_add_pd(c31, _mm256_mul_pd(a, b1));
    }
    _mm256_storeu_pd(r0, c00), _mm256_storeu_pd(r0 + 4, c01);
    _mm256_storeu_pd(r1, c10), _mm256_storeu_pd(r1 + 4, c11);
    _mm256_storeu_pd(r2, c20), _mm256_storeu_pd(r2 + 4, c21);
    _mm256_storeu_pd(r3, c30), _mm256_storeu_pd(r3 + 4, c31);
}

static int cpu_has_avx2(void) {
    const char *off = getenv("DEITC_GEMM_NO_AVX2"); /* tests run the portable kernel too */
    if (off && *off && strcmp(off, "0") != 0) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#else
static int cpu_has_avx2(void) { return 0; }
#endif

/* Where B's panel (columns j0.., slice p0..) of batch matrix t lies in job->bpack: batch
 * matrices one after another, in each its NB-column tiles (nbp columns wide, a multiple of NR),
 * in each tile its KC slices, each (kc x nbp) in NR-column strips. */
static double *b_panel(const ig_job *job, int64_t t, int64_t j0, int64_t p0) {
    int64_t nbp = job->npad - j0 < NB ? job->npad - j0 : NB;
    return job->bpack + t * job->npad * job->p->k + j0 * job->p->k + p0 * nbp;
}

/* Packs every KC slice of B's tile t / job->units_n, columns (t % units_n) * NB.. */
static void pack_b_tiles(void *ctx, int64_t lo, int64_t hi) {
    const ig_job *job = ctx;
    const ir_gemm_f64 *p = job->p;
    for (int64_t x = lo; x < hi; x++) {
        int64_t t = x / job->units_n, j0 = x % job->units_n * NB, nb = p->n - j0 < NB ? p->n - j0 : NB;
        for (int64_t p0 = 0; p0 < p->k; p0 += KC)
            pack_b(p, p->b + p->b_off[t], p0, p->k - p0 < KC ? p->k - p0 : KC, j0, nb, b_panel(job, t, j0, p0));
    }
}

/* One tile of C: rows [i0, i0+mb), columns [j0, j0+nb) of batch matrix t. */
static void run_unit(ig_job *job, int64_t u, double *ap) {
    const ir_gemm_f64 *p = job->p;
    int64_t t = u / (job->units_m * job->units_n), r = u % (job->units_m * job->units_n);
    int64_t i0 = r / job->units_n * MB, j0 = r % job->units_n * NB;
    int64_t mb = p->m - i0 < MB ? p->m - i0 : MB, nb = p->n - j0 < NB ? p->n - j0 : NB;
    const double *a = p->a + p->a_off[t];
    double *c = p->c + t * p->m * p->n;
    for (int64_t i = 0; i < mb; i++) memset(c + (i0 + i) * p->n + j0, 0, sizeof(double) * (size_t)nb);
    for (int64_t p0 = 0; p0 < p->k; p0 += KC) {
        int64_t kc = p->k - p0 < KC ? p->k - p0 : KC;
        const double *bp = b_panel(job, t, j0, p0);
        pack_a(p, a, i0, mb, p0, kc, ap);
        for (int64_t s = 0; s < mb; s += MR)
            for (int64_t q = 0; q < nb; q += NR) {
                int64_t rows = mb - s < MR ? mb - s : MR, cols = nb - q < NR ? nb - q : NR;
                double *ct = c + (i0 + s) * p->n + j0 + q, edge[MR * NR];
                int full = rows == MR && cols == NR;
                if (!full) { /* an edge tile works on a copy, zero-padded */
                    memset(edge, 0, sizeof edge);
                    for (int64_t y = 0; y < rows; y++) memcpy(edge + y * NR, ct + y * p->n, sizeof(double) * (size_t)cols);
                }
                double *dst = full ? ct : edge;
                int64_t ld = full ? p->n : NR;
                const double *as = ap + s * kc, *bs = bp + q * kc;
#ifdef IG_X86
                if (job->avx2) kernel_avx2(kc, as, bs, dst, ld);
                else
#endif
                    kernel_generic(kc, as, bs, dst, ld);
                if (!full)
                    for (int64_t y = 0; y < rows; y++) memcpy(ct + y * p->n, edge + y * NR, sizeof(double) * (size_t)cols);
            }
    }
    if (p->alpha != 1.0)
        for (int64_t i = 0; i < mb; i++)
            for (int64_t j = 0; j < nb; j++) c[(i0 + i) * p->n + j0 + j] *= p->alpha;
}

static void *worker(void *arg) {
    ig_job *job = arg;
    double *ap = malloc(sizeof(double) * (size_t)(MB * KC));
    if (!ap) abort();
    for (;;) {
        int64_t u = atomic_fetch_add(&job->next, 1);
        if (u >= job->units) break;
        run_unit(job, u, ap);
    }
    free(ap);
    return NULL;
}

/* The packed-B buffer, kept by each calling thread from one product to the next: a new one
 * each time would cost a page fault per 4 KiB (a DeiT-B fc1 weight packs into 19 MB). */
static _Thread_local double *bpack_cache;
static _Thread_local int64_t bpack_cap;

void ir_gemm_f64_release(void) {
    free(bpack_cache);
    bpack_cache = NULL;
    bpack_cap = 0;
}

static double *bpack_take(int64_t n) {
    if (n > bpack_cap) {
        free(bpack_cache);
        bpack_cache = malloc(sizeof(double) * (size_t)n);
        if (!bpack_cache) abort();
        bpack_cap = n;
    }
    return bpack_cache;
}

/* A batch sharing b, with a and c matrices back to back (x @ w^T over [B, N, C] tokens), is one
 * product of batch * m rows: the same sums, longer strips, B packed once. */
static int one_tall_product(const ir_gemm_f64 *p) {
    if (p->batch < 2 || p->trans_a) return 0;
    for (int64_t t = 1; t < p->batch; t++)
        if (p->b_off[t] != p->b_off[0] || p->a_off[t] != p->a_off[0] + t * p->m * p->k) return 0;
    return 1;
}

void ir_gemm_f64_run(const ir_gemm_f64 *p_in) {
    ir_gemm_f64 tall = *p_in;
    const ir_gemm_f64 *p = p_in;
    if (one_tall_product(p_in)) {
        tall.m *= tall.batch;
        tall.batch = 1;
        p = &tall;
    }
    ig_job job;
    job.p = p;
    job.units_m = (p->m + MB - 1) / MB;
    job.units_n = (p->n + NB - 1) / NB;
    job.units = p->batch * job.units_m * job.units_n;
    atomic_init(&job.next, 0);
    job.avx2 = cpu_has_avx2();
    if (job.units == 0) return;
    if (p->k == 0) { /* an empty sum: +0 everywhere (alpha * 0) */
        for (int64_t x = 0; x < p->batch * p->m * p->n; x++) p->c[x] = p->alpha * 0.0;
        return;
    }
    /* about 2 MFLOP a thread at least, so small products stay on the calling thread */
    int64_t flops = 2 * p->batch * p->m * p->n * p->k;
    int nt = ir_host_threads();
    if (nt > job.units) nt = (int)job.units;
    if (nt > 1 && flops / nt < (1 << 21) && !ir_par_forced_grain()) nt = (int)(flops >> 21) > 1 ? (int)(flops >> 21) : 1;
    job.npad = (p->n + NR - 1) / NR * NR;
    job.bpack = bpack_take(p->batch * job.npad * p->k);
    /* B's panels over the threads (one range when the product stays on this thread) */
    ir_par_for(p->batch * job.units_n, nt > 1 ? 1 : p->batch * job.units_n, pack_b_tiles, &job);
    ir_par_run(nt, worker, &job);
}
