/* data_test.cc: the data kernels of runtime/dc_data.cuh (tests/emu/test_data.cu) on the emu
 * against the host: RandomResizedCrop + flip of raw RGB samples against transform.c's
 * rt_rrc_apply_box with the same sampled boxes (the same bytes: the bound is 1/255),
 * over down- and upscaling boxes, odd sizes and flips; the normalized f32/f16/bf16 batch
 * against the host formula (rt_dataset_image's) and rt_float_to_half/bf16; dc_data_normalize's
 * body against rt_dataset_image. */
#include <stdint.h>
#include <string.h>

#include <vector>

#include "test_data.cu"
#include "tests/harness.h"

extern "C" {
#include "runtime/rt.h"
}

static float norm(unsigned v, float mean, float stdv) { return ((float)v / 255.0f - mean) / stdv; }

int main(void) {
    static const float params[6] = {0.485f, 0.456f, 0.406f, 0.229f, 0.224f, 0.225f};
    uint64_t rng = 12345;
    const int sizes[] = {24, 32, 17};
    int cases = 0, flips = 0, upscaled = 0, max_diff = 0;
    long long mismatched = 0, elements = 0;
    for (int si = 0; si < 3; si++) {
        int size = sizes[si];
        rt_transform tf;
        char err[256];
        CHECK(rt_transform_init(&tf, "light", size, err, sizeof err) == 0);
        const int n = 6; /* a batch of n samples of other sizes, one buffer */
        std::vector<unsigned char> src;
        std::vector<long long> meta(8 * n);
        std::vector<unsigned char> want((size_t)3 * n * size * size);
        for (int b = 0; b < n; b++) {
            int w = 8 + (int)(rt_splitmix64(&rng) % 300), h = 8 + (int)(rt_splitmix64(&rng) % 300);
            size_t at = src.size();
            src.resize(at + (size_t)3 * w * h);
            for (size_t k = 0; k < (size_t)3 * w * h; k++) /* smooth with noise: ringing and clipping both occur */
                src[at + k] = (unsigned char)(((k / 3 % w) * 255 / w + (rt_splitmix64(&rng) % 64)) & 255);
            rt_crop_params c;
            rt_rrc_params(&tf, rt_sample_rng(7, si, b), w, h, &c);
            rt_rgb_image img = {&src[at], w, h, w, h};
            CHECK(rt_rrc_apply_box(&img, &c, size, &want[(size_t)b * 3 * size * size]) == 0);
            long long m[8] = {(long long)at, w, h, c.x, c.y, c.w, c.h, c.flip};
            memcpy(&meta[8 * b], m, sizeof m);
            cases++;
            flips += c.flip;
            upscaled += c.w < size || c.h < size;
        }
        /* one sample at a time, uint8 */
        for (int b = 0; b < n; b++) {
            std::vector<unsigned char> got((size_t)3 * size * size);
            unsigned blocks = (unsigned)((got.size() + 255) / 256);
            emu_launch("data_crop_u8", data_crop_u8, dim3(blocks), dim3(256), 0, false, src.data(), &meta[8 * b],
                       got.data(), size);
            for (size_t k = 0; k < got.size(); k++) {
                int d = abs((int)got[k] - (int)want[(size_t)b * got.size() + k]);
                if (d > max_diff) max_diff = d;
                mismatched += d != 0;
                elements++;
            }
        }
        /* the batch normalized into f32, f16 and bf16 */
        size_t total = want.size();
        std::vector<float> f32(total);
        std::vector<dc_half> f16(total);
        std::vector<dc_bf16> bf16(total);
        unsigned blocks = (unsigned)((total + 255) / 256);
        emu_launch("data_crop_f32", data_crop_f32, dim3(blocks), dim3(256), 0, false, src.data(), meta.data(), params,
                   f32.data(), n, size);
        emu_launch("data_crop_f16", data_crop_f16, dim3(blocks), dim3(256), 0, false, src.data(), meta.data(), params,
                   f16.data(), n, size);
        emu_launch("data_crop_bf16", data_crop_bf16, dim3(blocks), dim3(256), 0, false, src.data(), meta.data(),
                   params, bf16.data(), n, size);
        int bad = 0;
        for (size_t k = 0; k < total; k++) {
            int c = (int)(k / ((size_t)size * size) % 3);
            float v = norm(want[k], params[c], params[3 + c]);
            uint16_t h16, b16;
            memcpy(&h16, &f16[k], 2);
            memcpy(&b16, &bf16[k], 2);
            bad += memcmp(&v, &f32[k], 4) != 0 || h16 != rt_float_to_half(v) || b16 != rt_float_to_bf16(v);
        }
        CHECK_MSG(bad == 0, "size %d: %d normalized values differ from the host's", size, bad);
    }
    printf("crop: %d samples (%d flipped, %d upscaled), %lld elements, %lld differ, max difference %d/255\n", cases,
           flips, upscaled, elements, mismatched, max_diff);
    CHECK_MSG(flips > 0 && flips < cases && upscaled > 0, "the cases miss flips or upscaling boxes");
    CHECK_MSG(mismatched == 0, "%lld of %lld crop bytes differ from transform.c's (max %d)", mismatched, elements, max_diff);
    /* dc_data_normalize's body == rt_dataset_image */
    const int64_t plane = 7 * 5, n = 4 * 3 * plane;
    std::vector<unsigned char> u8((size_t)n);
    for (int64_t k = 0; k < n; k++) u8[(size_t)k] = (unsigned char)(rt_splitmix64(&rng) & 255);
    std::vector<float> got((size_t)n), host((size_t)n);
    emu_launch("data_normalize_f32", data_normalize_f32, dim3((unsigned)((n + 255) / 256)), dim3(256), 0, false,
               u8.data(), params, got.data(), (long long)n, (long long)plane);
    rt_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n = 4;
    ds.c = 3;
    ds.h = 7;
    ds.w = 5;
    ds.images_u8 = u8.data();
    memcpy(ds.mean, params, sizeof ds.mean);
    memcpy(ds.std, params + 3, sizeof ds.std);
    for (int64_t i = 0; i < 4; i++) rt_dataset_image(&ds, i, &host[(size_t)(i * 3 * plane)]);
    CHECK_MSG(memcmp(got.data(), host.data(), sizeof(float) * (size_t)n) == 0, "dc_data_normalize != rt_dataset_image");
    return test_result();
}
