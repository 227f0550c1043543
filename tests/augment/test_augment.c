/* test_augment.c: the training augmentations (runtime/randaug.c, transform.c's "randaug").
 *   ops      each RandAugment op at fixed magnitudes and signs on a generated image against
 *            timm's AugmentOp on PIL (randaug_ref.py run by DEITC_TORCH_PYTHON, else the venv's,
 *            else /usr/bin/python3; without timm, PIL with timm's mappings restated): every byte within
 *            1 of 255; skips (77), saying why, without numpy or PIL.
 *   determinism  the same sample RNG gives the same bytes, other RNGs other images; the loader's
 *            batches with --aug randaug are the same bytes for 1, 2 and 4 workers; the ops drawn
 *            cover the set with about timm's frequencies (2 layers, p 0.5); bad specs refused.
 *   erasing  Random Erasing (--aug deit): boxes erased 0.25 of the time, areas and aspects in
 *            timm's ranges, a standard normal fill inside only, the loader's float batches the
 *            same for any worker count, uint8 batches refused.
 */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char err[512];

static int read_all(const char *path, uint8_t **buf, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)n);
    *size = (size_t)n;
    int ok = *buf && fread(*buf, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    return ok ? 0 : -1;
}

static int test_ops(void) {
    const char *py = getenv("DEITC_TORCH_PYTHON");
    if (!py || !*py)
        py = access("/work/venv-torch/bin/python", X_OK) == 0 ? "/work/venv-torch/bin/python" : "/usr/bin/python3";
    char out[512];
    snprintf(out, sizeof out, "augment_ref_%d.bin", (int)getpid());
    int rc = test_sh("'%s' '%s/tests/augment/randaug_ref.py' '%s'", py, test_env("DEITC_SOURCE_DIR"), out);
    if (rc == 77 || rc == 126 || rc == 127) {
        fprintf(stderr, "SKIP: %s (python with numpy and PIL; timm if there) is not usable here: no reference for the ops\n", py);
        remove(out);
        return 77;
    }
    CHECK_MSG(rc == 0, "randaug_ref.py exited %d", rc);
    uint8_t *buf = NULL;
    size_t size = 0;
    if (rc || read_all(out, &buf, &size)) {
        remove(out);
        free(buf);
        return test_result() ? test_result() : 1;
    }
    remove(out);
    int32_t w, h, n;
    CHECK(size > 19 && !memcmp(buf, "RAREF1\n", 7));
    memcpy(&w, buf + 7, 4);
    memcpy(&h, buf + 11, 4);
    memcpy(&n, buf + 15, 4);
    size_t plane = (size_t)w * h, at = 19;
    const uint8_t *input = buf + at;
    at += 3 * plane;
    uint8_t *chw = malloc(3 * plane);
    const uint8_t fill[3] = {124, 116, 104};
    int worst_op_diff[RT_RA_NUM_OPS] = {0}, covered[RT_RA_NUM_OPS] = {0};
    for (int c = 0; c < n && at + 16 + 3 * plane <= size; c++) {
        int32_t op, neg;
        double mag;
        memcpy(&op, buf + at, 4);
        memcpy(&mag, buf + at + 4, 8);
        memcpy(&neg, buf + at + 12, 4);
        const uint8_t *ref = buf + at + 16;
        at += 16 + 3 * plane;
        for (size_t i = 0; i < plane; i++)
            for (int ch = 0; ch < 3; ch++) chw[ch * plane + i] = input[3 * i + ch];
        CHECK(rt_randaug_op(op, mag, neg, fill, chw, w, h) == 0);
        int worst = 0;
        long off = 0;
        for (size_t i = 0; i < plane; i++)
            for (int ch = 0; ch < 3; ch++) {
                int d = abs((int)chw[ch * plane + i] - (int)ref[3 * i + ch]);
                if (d > worst) worst = d;
                off += d > 0;
            }
        covered[op] = 1;
        if (worst > worst_op_diff[op]) worst_op_diff[op] = worst;
        CHECK_MSG(worst <= 1, "%s magnitude %g%s: max |C - PIL| %d (%ld of %zu bytes differ)", rt_randaug_op_name(op),
                  mag, neg ? " negated" : "", worst, off, 3 * plane);
    }
    for (int op = 0; op < RT_RA_NUM_OPS; op++) {
        CHECK_MSG(covered[op], "no reference case for %s", rt_randaug_op_name(op));
        fprintf(stderr, "  %-22s max |C - PIL| %d\n", rt_randaug_op_name(op), worst_op_diff[op]);
    }
    free(chw);
    free(buf);
    return test_result();
}

/* an in-memory source of generated images of mixed sizes */
static int gen_decode(void *ctx, int64_t i, const rt_decode_shrink *shrink, rt_rgb_image *img, char *e, size_t es) {
    (void)ctx;
    (void)shrink;
    (void)e;
    (void)es;
    int w = 30 + (int)(i * 7 % 23), h = 26 + (int)(i * 5 % 19);
    img->rgb = malloc((size_t)w * h * 3);
    if (!img->rgb) return -1;
    uint64_t s = (uint64_t)i + 99;
    for (int k = 0; k < w * h * 3; k++) img->rgb[k] = (uint8_t)((k % (3 * w)) * 2 + (k / (3 * w)) * 3 + rt_splitmix64(&s) % 32);
    img->w = img->full_w = w;
    img->h = img->full_h = h;
    return 0;
}

static uint8_t *run_loader(const rt_sample_source *src, const rt_transform *tf, int workers, int steps) {
    rt_loader_config c = {.src = src, .tf = tf, .batch = 4, .workers = workers, .depth = 3, .seed = 11,
                          .shuffle = 1, .rank = 0, .world = 1, .first_step = 1};
    rt_loader *L;
    if (rt_loader_open(&L, &c, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return NULL;
    }
    size_t per = (size_t)3 * tf->size * tf->size * 4;
    uint8_t *all = malloc(per * (size_t)steps);
    for (int s = 0; s < steps; s++) {
        const void *img;
        const int64_t *lb;
        if (rt_loader_next(L, &img, &lb, err, sizeof err)) {
            CHECK_MSG(0, "%s", err);
            break;
        }
        memcpy(all + per * (size_t)s, img, per);
    }
    rt_loader_free(L);
    return all;
}

static int test_determinism(void) {
    rt_transform tf, light;
    CHECK(rt_transform_init(&tf, "randaug", 24, err, sizeof err) == 0 && !strcmp(tf.name, "randaug"));
    CHECK(rt_transform_init(&light, "light", 24, err, sizeof err) == 0);
    CHECK(tf.ra.num_layers == 2 && tf.ra.magnitude == 9 && tf.ra.mstd == 0.5 && tf.ra.prob == 0.5);
    rt_rgb_image img;
    CHECK(gen_decode(NULL, 3, NULL, &img, err, sizeof err) == 0);
    size_t bytes = 3 * 24 * 24;
    uint8_t *a = malloc(bytes), *b = malloc(bytes), *l = malloc(bytes);
    int differ_from_light = 0, differ_between = 0;
    for (int k = 0; k < 20; k++) {
        uint64_t r = rt_sample_rng(5, 1, k);
        CHECK(tf.apply(&tf, r, &img, a) == 0 && tf.apply(&tf, r, &img, b) == 0);
        CHECK_MSG(!memcmp(a, b, bytes), "randaug: the same rng gave other bytes (sample %d)", k);
        CHECK(light.apply(&light, r, &img, l) == 0);
        differ_from_light += memcmp(a, l, bytes) != 0;
        CHECK(tf.apply(&tf, rt_sample_rng(5, 2, k), &img, b) == 0);
        differ_between += memcmp(a, b, bytes) != 0;
    }
    /* P(no op applied) = 0.25 (plus ops that change nothing): most samples differ from light's */
    CHECK_MSG(differ_from_light >= 8 && differ_from_light < 20 + 1, "randaug changed %d of 20 crops", differ_from_light);
    CHECK_MSG(differ_between >= 18, "another epoch gave other images for only %d of 20", differ_between);
    free(img.rgb);
    free(a);
    free(b);
    free(l);

    /* the op draws: uniform over the 15 ops, each layer applied with probability 0.5 */
    rt_randaug ra;
    CHECK(rt_randaug_parse("rand-m9-mstd0.5-inc1", &ra, err, sizeof err) == 0);
    ra.magnitude = 0; /* cheap: the draws are what is counted, not the pixels */
    long applied = 0, trials = 20000;
    uint8_t px[3 * 4 * 4] = {0};
    for (long t = 0; t < trials; t++) {
        uint64_t s = rt_sample_rng(1, 0, t), s2 = s;
        for (int layer = 0; layer < 2; layer++) { /* mirror rt_randaug_apply's draws */
            rt_splitmix64(&s2);
            double u = rt_uniform01(&s2);
            rt_uniform01(&s2);
            rt_uniform01(&s2);
            rt_uniform01(&s2);
            applied += u <= 0.5;
        }
        CHECK(rt_randaug_apply(&ra, &s, px, 4, 4) == 0);
        if (s != s2) {
            CHECK_MSG(0, "rt_randaug_apply's draws are not 5 per layer");
            break;
        }
    }
    double frac = (double)applied / (2.0 * trials);
    CHECK_MSG(fabs(frac - 0.5) < 0.02, "ops applied %.3f of the time, want 0.5", frac);

    /* the loader: the same bytes for 1, 2 and 4 workers */
    rt_sample_source src = {.n = 24, .labels = NULL, .ctx = NULL, .decode = gen_decode};
    int64_t labels[24] = {0};
    src.labels = labels;
    uint8_t *w1 = run_loader(&src, &tf, 1, 6), *w2 = run_loader(&src, &tf, 2, 6), *w4 = run_loader(&src, &tf, 4, 6);
    size_t all = (size_t)3 * 24 * 24 * 4 * 6;
    CHECK_MSG(w1 && w2 && w4 && !memcmp(w1, w2, all) && !memcmp(w1, w4, all),
              "randaug: the loader's batches depend on the number of workers");
    free(w1);
    free(w2);
    free(w4);

    /* bad specs: refused with a message naming the spec */
    const char *bad[] = {"rand-m11-inc1", "rand-m9-q3-inc1", "rand-m9", "augmix-m9-inc1", "rand-m9-mstd-inc1", "rand-n0-inc1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        CHECK_MSG(rt_randaug_parse(bad[i], &ra, err, sizeof err) != 0 && strstr(err, bad[i]), "%s accepted (%s)", bad[i],
                  err);
    }
    CHECK(rt_randaug_parse("rand-m7-n3-mstd1-p0.7-inc1", &ra, err, sizeof err) == 0 && ra.magnitude == 7 &&
          ra.num_layers == 3 && ra.mstd == 1 && ra.prob == 0.7);
    CHECK(rt_transform_init(&tf, "randaug-bogus", 24, err, sizeof err) != 0 && strstr(err, "randaug"));
    return test_result();
}

/* Random Erasing: the box distribution, the fill, determinism, the loader's float batches */
static int test_erasing(void) {
    rt_transform tf;
    CHECK(rt_transform_init(&tf, "deit", 32, err, sizeof err) == 0 && tf.erase_p == 0.25f && tf.ra.num_layers == 2);
    long n = 40000, erased = 0;
    double area_sum = 0, min_area = 1, max_area = 0, min_aspect = 100, max_aspect = 0;
    for (long i = 0; i < n; i++) {
        rt_erase_params e;
        if (!rt_erase_box(&tf, rt_sample_rng(2, 0, i), &e)) continue;
        erased++;
        CHECK(e.x >= 0 && e.y >= 0 && e.w >= 1 && e.h >= 1 && e.w < 32 && e.h < 32 && e.x + e.w <= 32 &&
              e.y + e.h <= 32);
        double a = (double)e.w * e.h / (32.0 * 32.0), r = (double)e.h / e.w;
        area_sum += a;
        if (a < min_area) min_area = a;
        if (a > max_area) max_area = a;
        if (r < min_aspect) min_aspect = r;
        if (r > max_aspect) max_aspect = r;
    }
    double frac = (double)erased / n, mean_area = area_sum / (erased ? erased : 1);
    fprintf(stderr, "  erasing: %.4f of the samples, area %.4f-%.4f (mean %.4f), aspect h/w %.3f-%.3f\n", frac, min_area,
            max_area, mean_area, min_aspect, max_aspect);
    CHECK_MSG(fabs(frac - 0.25) < 0.01, "erased %.4f of the samples, want 0.25", frac);
    /* areas 0.02-1/3 of the image (rounded sides), aspects 0.3-3.33 (rounded) */
    CHECK(min_area > 0.012 && min_area < 0.025 && max_area > 0.30 && max_area < 0.36);
    CHECK(min_aspect > 0.25 && min_aspect < 0.36 && max_aspect > 2.8 && max_aspect < 4.0);
    /* the mean of U(0.02, 1/3) is 0.177; the boxes that do not fit (tall or wide large ones) pull it lower */
    CHECK_MSG(mean_area > 0.13 && mean_area < 0.18, "mean erased area %.4f", mean_area);

    /* the fill: standard normal inside the box, nothing changed outside; the same rng the same bytes */
    size_t plane = 32 * 32;
    float *x = malloc(sizeof(float) * 3 * plane), *y = malloc(sizeof(float) * 3 * plane);
    double sum = 0, sq = 0;
    long cnt = 0, outside_changed = 0;
    for (long i = 0; i < 400; i++) {
        uint64_t r = rt_sample_rng(3, 1, i);
        for (size_t k = 0; k < 3 * plane; k++) x[k] = y[k] = 7.0f;
        rt_erase_apply(&tf, r, x);
        rt_erase_apply(&tf, r, y);
        CHECK(!memcmp(x, y, sizeof(float) * 3 * plane));
        rt_erase_params e;
        int on = rt_erase_box(&tf, r, &e);
        for (int c = 0; c < 3; c++)
            for (int yy = 0; yy < 32; yy++)
                for (int xx = 0; xx < 32; xx++) {
                    float v = x[c * plane + yy * 32 + xx];
                    int in = on && xx >= e.x && xx < e.x + e.w && yy >= e.y && yy < e.y + e.h;
                    if (in) {
                        sum += v;
                        sq += (double)v * v;
                        cnt++;
                    } else
                        outside_changed += v != 7.0f;
                }
    }
    double mean = sum / cnt, var = sq / cnt - mean * mean;
    fprintf(stderr, "  erasing fill: %ld values, mean %.4f, variance %.4f\n", cnt, mean, var);
    CHECK(cnt > 10000 && fabs(mean) < 0.03 && fabs(var - 1.0) < 0.05 && outside_changed == 0);
    free(x);
    free(y);

    /* the loader: float batches the same for 1 and 3 workers; uint8 batches refused */
    rt_sample_source src = {.n = 16, .ctx = NULL, .decode = gen_decode};
    int64_t labels[16] = {0};
    src.labels = labels;
    const float mean3[3] = {0.485f, 0.456f, 0.406f}, std3[3] = {0.229f, 0.224f, 0.225f};
    float *batches[2] = {NULL, NULL};
    size_t per = sizeof(float) * 3 * plane * 4;
    for (int k = 0; k < 2; k++) {
        rt_loader_config c = {.src = &src, .tf = &tf, .batch = 4, .workers = 1 + 2 * k, .depth = 2, .seed = 4,
                              .shuffle = 1, .world = 1, .first_step = 1, .mean = mean3, .std = std3};
        rt_loader *L;
        if (rt_loader_open(&L, &c, err, sizeof err)) {
            CHECK_MSG(0, "%s", err);
            continue;
        }
        batches[k] = malloc(per * 4);
        for (int s = 0; s < 4; s++) {
            const void *img;
            const int64_t *lb;
            CHECK(rt_loader_next(L, &img, &lb, err, sizeof err) == 0);
            memcpy((char *)batches[k] + per * s, img, per);
        }
        rt_loader_free(L);
    }
    CHECK_MSG(batches[0] && batches[1] && !memcmp(batches[0], batches[1], per * 4),
              "deit: the loader's float batches depend on the number of workers");
    free(batches[0]);
    free(batches[1]);
    rt_loader_config c8 = {.src = &src, .tf = &tf, .batch = 4, .workers = 1, .depth = 2, .world = 1, .first_step = 1};
    rt_loader *L8 = NULL;
    err[0] = 0;
    CHECK_MSG(rt_loader_open(&L8, &c8, err, sizeof err) != 0 && strstr(err, "erasing"), "uint8 + erasing: %s", err);
    if (L8) rt_loader_free(L8);
    return test_result();
}

/* `test_augment bench [N]`: one thread's CPU ms per image of each transform at 224 on a
 * generated 500x375 image (not a test: the README's figures) */
static int bench(int n) {
    const char *names[] = {"light", "randaug", "deit"};
    rt_rgb_image img = {malloc(500 * 375 * 3), 500, 375, 500, 375};
    uint64_t s = 1;
    for (int k = 0; k < 500 * 375 * 3; k++)
        img.rgb[k] = (uint8_t)((k % 1500) / 6 + (k / 1500) % 40 + rt_splitmix64(&s) % 24);
    uint8_t *out = malloc(3 * 224 * 224);
    float *f = malloc(sizeof(float) * 3 * 224 * 224);
    for (int t = 0; t < 3; t++) {
        rt_transform tf;
        if (rt_transform_init(&tf, names[t], 224, err, sizeof err)) return 1;
        struct timespec a, b;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
        for (int i = 0; i < n; i++) {
            uint64_t r = rt_sample_rng(0, 0, i);
            if (tf.apply(&tf, r, &img, out)) return 1;
            for (int k = 0; k < 3 * 224 * 224; k++) f[k] = out[k] / 255.0f;
            if (tf.erase_p > 0) rt_erase_apply(&tf, r, f);
        }
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
        printf("--aug %-8s %.3f CPU ms/image (224, from 500x375, %d images, one thread, + float conversion)\n",
               names[t], ((b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6) / n, n);
    }
    free(img.rgb);
    free(out);
    free(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "ops")) return test_ops();
    if (argc > 1 && !strcmp(argv[1], "erasing")) return test_erasing();
    if (argc > 1 && !strcmp(argv[1], "bench")) return bench(argc > 2 ? atoi(argv[2]) : 200);
    return test_determinism();
}
