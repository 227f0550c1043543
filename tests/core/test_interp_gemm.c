/* test_interp_gemm.c: the interpreter's blocked, threaded matrix product (ir/interp_gemm.c)
 * gives bit for bit what the plain triple loop gives (k ascending from +0, one rounding per
 * multiply and add), for every transpose, edge sizes around the block sizes, broadcast batch
 * and per-matrix b operands (x @ w^T over tokens, and attention's products) and alpha, with 1, 2
 * and 5 threads, with the AVX2 kernel (where the CPU has it) and
 * the portable one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/harness.h"

static uint64_t rng = 88172645463325252ull;
static double rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(int64_t)(rng >> 11) / (double)(1ull << 52) - 1.0; /* [-1, 1) with 52 bits */
}

static void naive(const ir_gemm_f64 *p, double *c) {
    for (int64_t t = 0; t < p->batch; t++)
        for (int64_t i = 0; i < p->m; i++)
            for (int64_t j = 0; j < p->n; j++) {
                const double *a = p->a + p->a_off[t], *b = p->b + p->b_off[t];
                double s = 0;
                for (int64_t k = 0; k < p->k; k++)
                    s += (p->trans_a ? a[k * p->m + i] : a[i * p->k + k]) * (p->trans_b ? b[j * p->k + k] : b[k * p->n + j]);
                c[(t * p->m + i) * p->n + j] = p->alpha * s;
            }
}

int main(void) {
    static const int64_t sizes[][4] = {{1, 1, 1, 1}, {1, 5, 7, 3}, {2, 47, 49, 193}, {3, 197, 64, 197},
                                       {1, 200, 385, 50}, {2, 9, 17, 400}, {1, 4, 8, 0}};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int tr = 0; tr < 8; tr++) {
            int64_t B = sizes[s][0], M = sizes[s][1], N = sizes[s][2], K = sizes[s][3];
            int own_b = tr >= 4; /* each batch matrix its own b */
            if (own_b && B == 1) continue;
            size_t na = (size_t)(B * M * K), nb = (size_t)(K * N * (own_b ? B : 1)), nc = (size_t)(B * M * N);
            double *a = malloc(sizeof(double) * (na + 1)), *b = malloc(sizeof(double) * (nb + 1));
            double *want = malloc(sizeof(double) * nc), *got = malloc(sizeof(double) * nc);
            int64_t ao[3], bo[3];
            for (size_t k = 0; k < na; k++) a[k] = rnd();
            for (size_t k = 0; k < nb; k++) b[k] = k % 7 ? rnd() : 0.0;
            for (int64_t t = 0; t < B; t++) ao[t] = t * M * K, bo[t] = own_b ? t * K * N : 0; /* b broadcast, or not */
            ir_gemm_f64 p = {a, b, NULL, ao, bo, B, M, N, K, tr & 1, (tr >> 1) & 1, s % 2 ? 0.125 : 1.0};
            naive(&p, want);
            for (int th = 1; th <= 5; th += th == 1 ? 1 : 3) {
                ir_gemm_f64_set_threads(th);
                setenv("DEITC_GEMM_NO_AVX2", th == 2 ? "1" : "0", 1);
                memset(got, 0xff, sizeof(double) * nc);
                p.c = got;
                ir_gemm_f64_run(&p);
                CHECK_MSG(memcmp(got, want, sizeof(double) * nc) == 0,
                          "batch %lld m %lld n %lld k %lld trans %d own b %d threads %d differs from the loop",
                          (long long)B, (long long)M, (long long)N, (long long)K, tr & 3, own_b, th);
            }
            free(a), free(b), free(want), free(got);
        }
    return test_result();
}
