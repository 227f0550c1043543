/* drop_path.c: stochastic depth's per-step masks (see drop_path.h). */
#include "runtime/drop_path.h"

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

double rt_drop_path_prob(double rate, int k, int R) {
    int depth = R % 2 == 0 ? R / 2 : R, block = R % 2 == 0 ? k / 2 : k;
    return depth > 1 ? rate * (double)block / (double)(depth - 1) : rate;
}

void rt_drop_path_fill(double rate, int R, int64_t B, uint64_t seed, long step, float *out) {
    uint64_t key = splitmix64(splitmix64(seed ^ 0x64726f7070617468ULL /* "droppath" */) ^ (uint64_t)step);
    for (int k = 0; k < R; k++) {
        double p = rt_drop_path_prob(rate, k, R);
        float keep = (float)(1 - p), scale = p > 0 ? 1.0f / keep : 1.0f;
        for (int64_t b = 0; b < B; b++) {
            uint64_t x = splitmix64(key ^ splitmix64((uint64_t)k * (uint64_t)B + (uint64_t)b));
            double u = (double)(x >> 11) * 0x1.0p-53;
            out[k * B + b] = p <= 0 || u < (double)keep ? scale : 0.0f;
        }
    }
}
