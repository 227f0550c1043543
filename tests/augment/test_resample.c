/* test_resample.c: the runtime's PIL resampling (transform.c's rt_resample_box) byte for byte
 * against PIL on generated images (resample_ref.py, run by DEITC_TORCH_PYTHON, else the venv's,
 * else /usr/bin/python3; skips, 77, without numpy and PIL): RandomResizedCrop given its box
 * (rt_rrc_apply_box: crop(box).resize(size, BICUBIC), flipped), timm's eval resize + center crop
 * (rt_image_eval_crop) and pack's bilinear resize (rt_image_resize_bilinear), boxes of the
 * output's size (no pass) and of one side's (one pass) among them.
 */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int read_all(const char *path, uint8_t **buf, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = n > 0 ? malloc((size_t)n) : NULL;
    int ok = *buf && fread(*buf, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    *size = ok ? (size_t)n : 0;
    return ok ? 0 : -1;
}

int main(void) {
    const char *py = getenv("DEITC_TORCH_PYTHON");
    if (!py || !*py)
        py = access("/work/venv-torch/bin/python", X_OK) == 0 ? "/work/venv-torch/bin/python" : "/usr/bin/python3";
    char out[512];
    snprintf(out, sizeof out, "resample_ref_%d.bin", (int)getpid());
    int rc = test_sh("'%s' '%s/tests/augment/resample_ref.py' '%s'", py, test_env("DEITC_SOURCE_DIR"), out);
    if (rc == 77 || rc == 126 || rc == 127) {
        fprintf(stderr, "SKIP: %s (python with numpy and PIL) is not usable here: no reference\n", py);
        remove(out);
        return 77;
    }
    CHECK_MSG(rc == 0, "resample_ref.py exited %d", rc);
    uint8_t *buf = NULL;
    size_t size = 0;
    if (rc || read_all(out, &buf, &size)) {
        remove(out);
        free(buf);
        CHECK_MSG(0, "no reference file %s", out);
        return test_result();
    }
    remove(out);
    int32_t n = 0;
    CHECK(size > 11 && !memcmp(buf, "RSREF1\n", 7));
    if (size > 11) memcpy(&n, buf + 7, 4);
    size_t at = 11;
    int done[3] = {0}, differ[3] = {0};
    for (int i = 0; i < n; i++) {
        int32_t v[9];
        if (at + sizeof v > size) break;
        memcpy(v, buf + at, sizeof v);
        at += sizeof v;
        int kind = v[0], w = v[1], h = v[2];
        size_t in_bytes = (size_t)w * h * 3;
        size_t out_bytes = kind == 0   ? (size_t)3 * v[7] * v[7]
                           : kind == 1 ? (size_t)3 * v[3] * v[3]
                                       : (size_t)3 * v[3] * v[4];
        if (kind < 0 || kind > 2 || at + in_bytes + out_bytes > size) break;
        rt_rgb_image img;
        memset(&img, 0, sizeof img);
        img.w = img.full_w = w, img.h = img.full_h = h;
        img.rgb = buf + at;
        const uint8_t *ref = buf + at + in_bytes;
        at += in_bytes + out_bytes;
        uint8_t *got = malloc(out_bytes);
        if (!got) abort();
        int r;
        if (kind == 0) {
            rt_crop_params c = {v[3], v[4], v[5], v[6], v[8]};
            r = rt_rrc_apply_box(&img, &c, v[7], got);
        } else if (kind == 1) {
            r = rt_image_eval_crop(&img, v[3], got);
        } else {
            r = rt_image_resize_bilinear(&img, v[3], v[4], got);
        }
        size_t first = 0;
        while (!r && first < out_bytes && got[first] == ref[first]) first++;
        differ[kind] += r || first < out_bytes;
        CHECK_MSG(!r && first == out_bytes, "case %d (kind %d, %dx%d, %d %d %d %d %d %d): byte %zu is %d, PIL's %d", i,
                  kind, w, h, v[3], v[4], v[5], v[6], v[7], v[8], first, first < out_bytes ? got[first] : -1,
                  first < out_bytes ? ref[first] : -1);
        done[kind]++;
        free(got);
    }
    CHECK_MSG(n > 0 && done[0] + done[1] + done[2] == n, "%d of %d cases read", done[0] + done[1] + done[2], n);
    printf("vs PIL, byte for byte: RandomResizedCrop %d cases (%d differ), eval resize + crop %d (%d), "
           "bilinear resize %d (%d)\n", done[0], differ[0], done[1], differ[1], done[2], differ[2]);
    free(buf);
    return test_result();
}
