/* test_loader.c: the streaming loader (runtime/loader.c) and the transforms (runtime/transform.c),
 * in process, on tests/data/image_folder/train (12
 * images of 3 classes) and on images generated here (rt_jpeg_encode).
 *   stream   aug none: the loader's batches over 3 epochs equal the start-up decode gathered
 *            in rt_shuffle's order, for 1 and 4 workers and from a later first step; aug light:
 *            the same bytes for 1, 2 and 4 workers, other crops in another epoch; two ranks
 *            split each epoch's permutation; a corrupt file stops at its batch, naming it
 *   transform RandomResizedCrop's boxes lie in the image with ratio and area in range, the
 *            fallback for a 400x10 image; an identity box gives the image back, flipped
 *            mirrors it; a JPEG decoded at 2/8 and 6/8 in the DCT domain gives a crop close to
 *            the full decode's
 *   windowed rt_shuffle_windowed (a .dpk's order) is a permutation made of whole windows
 * (.dpk files: test_pack.c; benchmarks/dataload: bench_dataload.c)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/rt.h"
#include "tests/harness.h"

static char err[2048], tmp[256];

static rt_plan make_plan(int64_t size, int64_t classes) {
    static rt_plan_tensor t;
    rt_plan p;
    memset(&p, 0, sizeof p);
    memset(&t, 0, sizeof t);
    p.model_name = "test";
    p.batch = 4;
    p.img_size = size;
    p.in_chans = 3;
    p.num_classes = classes;
    return p;
}

/* All batches of steps [first, first + steps) from a loader. */
static uint8_t *run_loader(const rt_sample_source *src, const rt_transform *tf, int workers, long first, int steps,
                           int rank, int world, int64_t **labels_out) {
    rt_loader_config c = {.src = src, .tf = tf, .batch = 4, .workers = workers, .depth = 3, .seed = 7,
                          .shuffle = 1, .rank = rank, .world = world, .first_step = first};
    rt_loader *L;
    if (rt_loader_open(&L, &c, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return NULL;
    }
    size_t per = (size_t)3 * tf->size * tf->size;
    uint8_t *all = malloc(per * 4 * (size_t)steps);
    int64_t *labels = malloc(sizeof(int64_t) * 4 * (size_t)steps);
    for (int s = 0; s < steps; s++) {
        const void *img;
        const int64_t *lb;
        if (rt_loader_next(L, &img, &lb, err, sizeof err)) {
            CHECK_MSG(0, "%s", err);
            break;
        }
        memcpy(all + per * 4 * (size_t)s, img, per * 4);
        memcpy(labels + 4 * s, lb, sizeof(int64_t) * 4);
    }
    rt_loader_free(L);
    if (labels_out) *labels_out = labels;
    else free(labels);
    return all;
}

static void test_stream(const char *dir) {
    rt_plan p = make_plan(32, 3);
    rt_dataset ds;
    rt_image_list list;
    if (rt_image_folder_load(dir, &p, &ds, err, sizeof err) || rt_image_folder_list(dir, &p, &list, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    rt_sample_source src = rt_image_list_source(&list);
    rt_transform none, light;
    CHECK(rt_transform_init(&none, "none", 32, err, sizeof err) == 0);
    CHECK(rt_transform_init(&light, "light", 32, err, sizeof err) == 0);
    CHECK(rt_transform_init(&light, "heavy", 32, err, sizeof err) == -1 && strstr(err, "unknown augmentation"));
    rt_transform_init(&light, "light", 32, err, sizeof err);
    const size_t per = 3 * 32 * 32;
    enum { STEPS = 9 }; /* 3 epochs of 3 batches */
    int64_t *l1, *l4;
    uint8_t *a = run_loader(&src, &none, 1, 1, STEPS, 0, 1, &l1), *b = run_loader(&src, &none, 4, 1, STEPS, 0, 1, &l4);
    uint8_t *late = run_loader(&src, &none, 2, 5, STEPS - 4, 0, 1, NULL);
    int64_t perm[12];
    int same = a && b && late;
    for (int s = 0; s < STEPS && same; s++) {
        rt_shuffle(perm, 12, 7, s / 3);
        for (int j = 0; j < 4; j++) {
            int64_t i = perm[(s % 3) * 4 + j];
            same &= memcmp(a + per * (4 * s + j), ds.images_u8 + per * i, per) == 0 && l1[4 * s + j] == ds.labels[i];
        }
    }
    CHECK_MSG(same, "aug none: the streamed batches differ from the start-up decode in rt_shuffle's order");
    CHECK(a && b && memcmp(a, b, per * 4 * STEPS) == 0 && memcmp(l1, l4, sizeof(int64_t) * 4 * STEPS) == 0);
    CHECK(a && late && memcmp(a + per * 4 * 4, late, per * 4 * (STEPS - 4)) == 0);
    free(a), free(b), free(late), free(l1), free(l4);
    /* light: the same bytes whatever the workers; another epoch, other crops */
    a = run_loader(&src, &light, 1, 1, STEPS, 0, 1, NULL);
    b = run_loader(&src, &light, 2, 1, STEPS, 0, 1, NULL);
    uint8_t *c = run_loader(&src, &light, 4, 1, STEPS, 0, 1, NULL);
    CHECK(a && b && c && memcmp(a, b, per * 4 * STEPS) == 0 && memcmp(a, c, per * 4 * STEPS) == 0);
    int differs = 0; /* epoch 0's first batch and epoch 1's: each image's crop in another place */
    for (int s = 0; a && s < 3; s++) differs |= memcmp(a + per * 4 * s, a + per * 4 * (s + 3), per * 4) != 0;
    CHECK(differs);
    free(a), free(b), free(c);
    /* two ranks: rank r gets perm[r], perm[r + 2], ...: one batch an epoch (6 samples -> 1 batch of 4) */
    int64_t *r0, *r1;
    a = run_loader(&src, &none, 2, 1, 2, 0, 2, &r0);
    b = run_loader(&src, &none, 2, 1, 2, 1, 2, &r1);
    rt_shuffle(perm, 12, 7, 0);
    int split = a && b;
    for (int j = 0; j < 4 && split; j++)
        split &= memcmp(a + per * j, ds.images_u8 + per * perm[2 * j], per) == 0 &&
                 memcmp(b + per * j, ds.images_u8 + per * perm[2 * j + 1], per) == 0;
    CHECK_MSG(split, "ranks 0 and 1 do not read perm[0::2] and perm[1::2]");
    free(a), free(b), free(r0), free(r1);
    rt_dataset_free(&ds);
    rt_image_list_free(&list);
}

/* a folder of 1 class with 8 good images and one cut short, listed 6th (names sorted) */
static void test_stream_error(const char *dir) {
    char src[600], bad[600];
    snprintf(src, sizeof src, "%.400s/cat/a_rgb.jpg", dir);
    if (test_sh("mkdir -p '%s/err/a' && for i in 1 2 3 4 5 7 8 9; do cp '%s' \"%s/err/a/$i.jpg\"; done && "
                "head -c 300 '%s' > '%s/err/a/6.jpg'", tmp, src, tmp, src, tmp))
        exit(2);
    snprintf(bad, sizeof bad, "%s/err", tmp);
    rt_plan p = make_plan(32, 3);
    rt_image_list list;
    if (rt_image_folder_list(bad, &p, &list, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    rt_sample_source s = rt_image_list_source(&list);
    rt_transform none;
    rt_transform_init(&none, "none", 32, err, sizeof err);
    for (int workers = 1; workers <= 3; workers += 2) {
        rt_loader_config c = {.src = &s, .tf = &none, .batch = 4, .workers = workers, .depth = 2, .seed = 0,
                              .shuffle = 0, .world = 1, .first_step = 1};
        rt_loader *L;
        const void *img;
        const int64_t *lb;
        if (rt_loader_open(&L, &c, err, sizeof err)) {
            CHECK_MSG(0, "%s", err);
            break;
        }
        CHECK(rt_loader_next(L, &img, &lb, err, sizeof err) == 0);                     /* 1..4 */
        CHECK(rt_loader_next(L, &img, &lb, err, sizeof err) == -1 && strstr(err, "err/a/6.jpg")); /* 5..8 */
        rt_loader_free(L);
    }
    rt_image_list_free(&list);
}

/* rt_shuffle_windowed: a permutation whose runs of `window` positions each hold one window */
static void test_windowed(void) {
    enum { N = 1000, W = 64 };
    int64_t perm[N], other[N];
    rt_shuffle_windowed(perm, N, W, 3, 0);
    rt_shuffle_windowed(other, N, W, 3, 1);
    int seen[N] = {0}, windows_ok = 1;
    for (int i = 0; i < N; i++) seen[perm[i]]++;
    for (int i = 0; i < N; i++) CHECK(seen[i] == 1);
    /* every position range [k*W, (k+1)*W) but the last window's holds samples of one window; the
     * last (short) one may come anywhere, so check the windows by their first sample */
    for (int at = 0; at < N;) {
        int64_t w = perm[at] / W, len = w == N / W ? N % W : W;
        for (int64_t j = 0; j < len; j++) windows_ok &= perm[at + j] / W == w;
        at += (int)len;
    }
    CHECK(windows_ok);
    CHECK(memcmp(perm, other, sizeof perm) != 0);
    rt_shuffle_windowed(other, N, 0, 3, 0); /* window 0: rt_shuffle itself */
    rt_shuffle(perm, N, 3, 0);
    CHECK(memcmp(perm, other, sizeof perm) == 0);
}

static void test_transform(void) {
    rt_transform t;
    rt_transform_init(&t, "light", 16, err, sizeof err);
    int ratio_ok = 1, fallback = 0, flips = 0;
    for (int64_t i = 0; i < 2000; i++) {
        rt_crop_params c;
        int W = 100 + (int)(i % 37) * 11, H = 80 + (int)(i % 23) * 13;
        rt_rrc_params(&t, rt_sample_rng(1, 0, i), W, H, &c);
        CHECK(c.x >= 0 && c.y >= 0 && c.w >= 1 && c.h >= 1 && c.x + c.w <= W && c.y + c.h <= H);
        double r = (double)c.w / c.h, area = (double)c.w * c.h / ((double)W * H);
        if (c.w == W && c.h == H) fallback++;
        else ratio_ok &= r > 0.70 && r < 1.42 && area > 0.07 && area < 1.01; /* rounding to whole pixels */
        flips += c.flip;
    }
    CHECK(ratio_ok && fallback < 40 && flips > 850 && flips < 1150);
    rt_crop_params c;
    rt_rrc_params(&t, rt_sample_rng(1, 0, 0), 400, 10, &c); /* no try fits: a 4/3 center crop */
    CHECK_MSG(c.h == 10 && c.w == 13 && c.x == 193 && c.y == 0, "%d %d %d %d", c.x, c.y, c.w, c.h);
    /* an identity box gives the image back (CHW), a flip mirrors it */
    rt_rgb_image img = {malloc(16 * 16 * 3), 16, 16, 16, 16};
    for (int k = 0; k < 16 * 16 * 3; k++) img.rgb[k] = (unsigned char)(k * 37 + k / 7);
    uint8_t out[3 * 16 * 16], mir[3 * 16 * 16];
    rt_crop_params id = {0, 0, 16, 16, 0}, fl = {0, 0, 16, 16, 1};
    CHECK(rt_rrc_apply_box(&img, &id, 16, out) == 0 && rt_rrc_apply_box(&img, &fl, 16, mir) == 0);
    int exact = 1;
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++)
            for (int ch = 0; ch < 3; ch++)
                exact &= out[ch * 256 + y * 16 + x] == img.rgb[(y * 16 + x) * 3 + ch] &&
                         mir[ch * 256 + y * 16 + 15 - x] == img.rgb[(y * 16 + x) * 3 + ch];
    CHECK(exact);
    free(img.rgb);
}

/* A smooth generated picture (w x h RGB) encoded as JPEG into path. */
static void write_jpeg(const char *path, int w, int h, int seed, int quality) {
    unsigned char *rgb = malloc((size_t)w * h * 3), *jpg;
    size_t n;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                rgb[((size_t)y * w + x) * 3 + c] =
                    (unsigned char)(128 + 60 * sin(x * 0.031 * (c + 1) + seed) + 50 * cos(y * 0.023 * (3 - c) + seed * 0.7) +
                                    ((x * 7 + y * 13 + seed) % 9));
    if (rt_jpeg_encode(rgb, w, h, quality, &jpg, &n, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(jpg, 1, n, f) != n || fclose(f)) exit(2);
    free(rgb);
    free(jpg);
}

static int pick_eighths(void *ctx, int w, int h) { /* *ctx / 8 */
    (void)w, (void)h;
    return *(int *)ctx;
}

static void test_shrink(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/big.jpg", tmp);
    write_jpeg(path, 640, 480, 3, 90);
    rt_rgb_image full, small;
    CHECK(rt_image_decode(path, NULL, &full, err, sizeof err) == 0 && full.w == 640 && full.h == 480);
    static const int eighths[2] = {2, 6}, want_w[2] = {160, 480}, want_h[2] = {120, 360};
    for (int k = 0; k < 2; k++) {
        rt_decode_shrink by = {pick_eighths, (void *)&eighths[k]};
        CHECK(rt_image_decode(path, &by, &small, err, sizeof err) == 0 && small.w == want_w[k] &&
              small.h == want_h[k] && small.full_w == 640 && small.full_h == 480);
        rt_crop_params c = {100, 60, 400, 300, 1};
        uint8_t a[3 * 64 * 64], b[3 * 64 * 64];
        CHECK(rt_rrc_apply_box(&full, &c, 64, a) == 0 && rt_rrc_apply_box(&small, &c, 64, b) == 0);
        double sum = 0;
        for (int i = 0; i < 3 * 64 * 64; i++) sum += abs((int)a[i] - (int)b[i]);
        CHECK_MSG(sum / (3 * 64 * 64) < 3.0, "DCT-shrunk (%d/8) crop differs by %.2f on average", eighths[k],
                  sum / (3 * 64 * 64));
        free(small.rgb);
    }
    /* light's own choice: the smallest of 1/8, 2/8, 4/8, 8/8 that keeps the box at the output side */
    rt_transform t;
    rt_transform_init(&t, "light", 64, err, sizeof err);
    for (int64_t i = 0; i < 200; i++) {
        rt_crop_params q;
        rt_rrc_params(&t, rt_sample_rng(5, 1, i), 640, 480, &q);
        int m = t.shrink(&t, rt_sample_rng(5, 1, i), 640, 480);
        CHECK((m == 1 || m == 2 || m == 4 || m == 8) && (m == 8 || (q.w * m >= 8 * 64 && q.h * m >= 8 * 64)) &&
              (m == 1 || q.w * m / 2 < 8 * 64 || q.h * m / 2 < 8 * 64));
    }
    free(full.rgb);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/deitc_loader_XXXXXX");
    if (!mkdtemp(tmp)) return 2;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/image_folder/train", test_env("DEITC_TESTDATA"));
    test_windowed();
    test_transform();
    test_shrink();
    test_stream(dir);
    test_stream_error(dir);
    test_sh("rm -rf '%s'", tmp);
    return test_result();
}
