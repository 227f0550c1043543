/* init.c: deterministic weight initialization shared by `deitc run` and the executables.
 * timm's DeiT: trunc_normal(std=0.02) for linear weights, cls/pos tokens and the patch
 * projection, zeros for biases, ones/zeros for LayerNorm. The stream of each weight is seeded
 * from (seed, name) with splitmix64, so adding a weight never changes another's values. */
#include "runtime/rt.h"

#include <math.h>


void rt_init_fill(rt_init kind, double std, uint64_t seed, const char *name, float *out, int64_t n) {
    uint64_t state = seed ^ 0x5eed5eed5eedull;
    for (const char *p = name; p && *p; p++) state = (state ^ (unsigned char)*p) * 0x100000001b3ull;
    for (int64_t i = 0; i < n; i++) {
        if (kind == RT_INIT_ZEROS) {
            out[i] = 0;
        } else if (kind == RT_INIT_ONES) {
            out[i] = 1;
        } else {
            double z;
            do { /* Box-Muller, redrawn until within 2 std */
                z = sqrt(-2 * log(rt_uniform01(&state))) * cos(6.283185307179586 * rt_uniform01(&state));
            } while (fabs(z) > 2);
            out[i] = (float)(z * std);
        }
    }
}
