/* common.c: the small helpers every runtime file (and the compiler, through deitc_rt) uses:
 * error formatting into a caller's buffer, and the splitmix64 random stream behind weight
 * init, shuffling and synthetic data. */
#include "runtime/rt.h"

#include <stdarg.h>
#include <stdio.h>

int rt_errorf(char *err, size_t errsize, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
    return -1;
}

uint64_t rt_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rt_uniform01(uint64_t *state) { return ((double)(rt_splitmix64(state) >> 11) + 0.5) * 0x1p-53; }
