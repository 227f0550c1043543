/* dc_data.cuh: the data kernels' device functions (device library; dc_base.cuh, dc_convert.cuh).
 * Every training plan with an "images" input carries a kernel `dc_data_normalize` (codegen/emit.c:
 * cg_add_data_kernels) that the runtime launches itself, outside the plan's steps, between two
 * training steps (runtime/exe_stage.c): the batch arrives as uint8 (a quarter of the bytes of
 * f32) and is normalized on the device into the images tensor's dtype.
 *
 *   dc_data_normalize_at(src, params, dst, i, channels, plane)
 *       dst[i] = (src[i] / 255 - mean[c]) / std[c], c = (i / plane) % channels (the last of
 *       three for more), params = {mean[3], std[3]}: the same float operations, in the same
 *       order, as the host's rt_dataset_image (data.c), so the values are the same bits (IEEE
 *       division: NVRTC's default --prec-div=true), then rounded to nearest even into f16/bf16
 *       as the host's rt_float_to_half/bf16 do.
 */
#ifndef DEITC_DC_DATA_CUH
#define DEITC_DC_DATA_CUH

#include "dc_base.cuh"
#include "dc_convert.cuh"

DC_DEV void dc_data_store(float *p, float v) { *p = v; }
DC_DEV void dc_data_store(dc_half *p, float v) { *p = dc_f2h(v); }
DC_DEV void dc_data_store(dc_bf16 *p, float v) { *p = dc_f2b(v); }

template <typename T>
DC_DEV void dc_data_normalize_at(const unsigned char *src, const float *params, T *dst, long long i, int channels,
                                 long long plane) {
    int c = (int)((i / plane) % channels);
    if (c > 2) c = 2;
    dc_data_store(dst + i, ((float)src[i] / 255.0f - params[c]) / params[3 + c]);
}

#endif /* DEITC_DC_DATA_CUH */
