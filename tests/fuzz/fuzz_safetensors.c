/* fuzz_safetensors.c: libFuzzer target for the safetensors reader. Any byte string must be
 * rejected with a message or parsed into tensors whose sizes agree with their shapes; never a
 * crash, an overread or a leak. */
#include <stdint.h>
#include <stdlib.h>

#include "runtime/rt.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    char err[512];
    rt_tensor_set s;
    if (rt_safetensors_parse(data, size, "fuzz", &s, err, sizeof err) == 0) {
        for (int i = 0; i < s.count; i++) {
            const rt_tensor *t = &s.tensors[i];
            uint64_t bytes = rt_dtype_size(t->dtype);
            for (int d = 0; d < t->ndim; d++)
                if (__builtin_mul_overflow(bytes, (uint64_t)t->shape[d], &bytes)) abort();
            if (bytes != t->nbytes) abort();
        }
        rt_tensor_set_free(&s);
    }
    return 0;
}
