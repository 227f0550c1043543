/* test_data.cu: the data kernels of runtime/dc_data.cuh behind entry points of their own,
 * compiled both by NVRTC (emu_nvrtc, sm_80 and sm_90) and by the host compiler against
 * cuda_emu.h (data_test.cc, against the host transform). Launch: 1-D, block 256, no fibers. */
#include "kernel_prelude.cuh"

/* the uint8 crop of one sample: out (3, size, size) */
DC_KERNEL data_crop_u8(const unsigned char *__restrict__ src, const long long *__restrict__ meta,
                       unsigned char *__restrict__ out, int size) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < 3LL * size * size) out[i] = dc_data_crop_u8(src, meta, size, i);
}

/* a batch of n crops, normalized: f32, f16 and bf16 */
DC_KERNEL data_crop_f32(const unsigned char *__restrict__ src, const long long *__restrict__ meta,
                        const float *__restrict__ params, float *__restrict__ dst, int n, int size) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < 3LL * n * size * size) dc_data_crop_at(src, meta, params, dst, i, size);
}
DC_KERNEL data_crop_f16(const unsigned char *__restrict__ src, const long long *__restrict__ meta,
                        const float *__restrict__ params, dc_half *__restrict__ dst, int n, int size) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < 3LL * n * size * size) dc_data_crop_at(src, meta, params, dst, i, size);
}
DC_KERNEL data_crop_bf16(const unsigned char *__restrict__ src, const long long *__restrict__ meta,
                         const float *__restrict__ params, dc_bf16 *__restrict__ dst, int n, int size) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < 3LL * n * size * size) dc_data_crop_at(src, meta, params, dst, i, size);
}

/* the uint8 batch normalized (dc_data_normalize's body): n elements of 3 planes */
DC_KERNEL data_normalize_f32(const unsigned char *__restrict__ src, const float *__restrict__ params,
                             float *__restrict__ dst, long long n, long long plane) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dc_data_normalize_at(src, params, dst, i, 3, plane);
}
