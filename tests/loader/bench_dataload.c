/* bench_dataload.c: benchmarks/dataload's measurements (a tool, not a test).
 *   gen DIR N [CLASSES]  N generated ImageNet-like JPEGs: sides 400-600 x 300-450 (500x375 on
 *                        average), quality 90, textured so that they weigh what photos do
 *   bench DIR [SIZE]     images/s delivered at SIZE x SIZE (default 224) by each data path, with
 *                        the CPU time (all threads) and the bytes read per image
 * Paths: a single-threaded decode + eval-transform loop; the streaming loader (--aug light)
 * with 1, 2 and all cores' workers, with and without the DCT-domain shrink; packed .dpk files
 * (JPEG q90 and raw, shorter side 256) through the loader with host transforms.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/rt.h"

static char err[2048];

static double wall(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int gen(const char *dir, int n, int classes) {
    uint64_t s = 12345;
    for (int i = 0; i < n; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/c%03d", dir, i % classes);
        mkdir(dir, 0755);
        mkdir(path, 0755);
        int w = 400 + (int)(rt_splitmix64(&s) % 201), h = 300 + (int)(rt_splitmix64(&s) % 151);
        unsigned char *rgb = malloc((size_t)w * h * 3), *jpg;
        double f1 = 0.01 + 0.05 * rt_uniform01(&s), f2 = 0.01 + 0.05 * rt_uniform01(&s), ph = 6.28 * rt_uniform01(&s);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                unsigned char *p = rgb + ((size_t)y * w + x) * 3;
                uint64_t r = rt_splitmix64(&s);
                for (int c = 0; c < 3; c++) {
                    double v = 128 + 70 * sin(x * f1 * (c + 1) + ph) * cos(y * f2 * (3 - c)) + (double)((r >> (8 * c)) & 63) - 32;
                    p[c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        size_t size;
        if (rt_jpeg_encode(rgb, w, h, 90, &jpg, &size, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        snprintf(path, sizeof path, "%s/c%03d/img%06d.jpg", dir, i % classes, i);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(jpg, 1, size, f) != size || fclose(f)) {
            perror(path);
            return 1;
        }
        free(rgb);
        free(jpg);
    }
    printf("wrote %d JPEGs (%d classes) under %s\n", n, classes, dir);
    return 0;
}

static void row(const char *what, int threads, int64_t n, double secs, double cpus, double bytes) {
    printf("| %-44s | %7d | %9.1f | %13.1f | %9.2f | %9.1f |\n", what, threads, n / secs, n / secs / threads,
           1e3 * cpus / n, bytes / n / 1e3);
    fflush(stdout);
}

static int64_t file_bytes(const rt_image_list *l, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(l->paths[i], &st) == 0) b += st.st_size;
    }
    return b;
}

/* The loader over src for `n` images (whole batches of 32): wall and CPU seconds. */
static int run(const rt_sample_source *src, const rt_transform *tf, int workers, int64_t n, int64_t window,
               double *secs, double *cpus) {
    rt_loader_config c = {.src = src, .tf = tf, .batch = 32, .workers = workers, .depth = 4, .seed = 1,
                          .shuffle = 1, .window = window, .world = 1, .first_step = 1};
    rt_loader *L;
    double t0 = wall(), c0 = cpu();
    if (rt_loader_open(&L, &c, err, sizeof err)) return fprintf(stderr, "%s\n", err), -1;
    for (int64_t k = 0; k < n / 32; k++) {
        const void *img;
        const int64_t *lb;
        if (rt_loader_next(L, &img, &lb, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            rt_loader_free(L);
            return -1;
        }
    }
    rt_loader_free(L);
    *secs = wall() - t0;
    *cpus = cpu() - c0;
    return 0;
}

static int bench(const char *dir, int size) {
    rt_plan p;
    memset(&p, 0, sizeof p);
    p.img_size = size;
    p.in_chans = 3;
    p.num_classes = 100000;
    rt_image_list list;
    if (rt_image_folder_list(dir, &p, &list, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int64_t n = list.n / 32 * 32;
    printf("%lld images from %s at %dx%d, %d cores\n\n", (long long)n, dir, size, size, cores);
    printf("| %-44s | %7s | %9s | %13s | %9s | %9s |\n", "path", "threads", "images/s", "images/s/core", "CPU ms/im",
           "KB read/im");
    printf("|%s|---------|-----------|---------------|-----------|-----------|\n",
           "----------------------------------------------");
    rt_transform none, light, light_full;
    rt_transform_init(&none, "none", size, err, sizeof err);
    rt_transform_init(&light, "light", size, err, sizeof err);
    light_full = light;
    light_full.shrink = NULL;
    uint8_t *out = malloc((size_t)3 * size * size);
    double t0 = wall(), c0 = cpu();
    for (int64_t i = 0; i < n; i++) { /* the single-threaded loop */
        rt_rgb_image img;
        if (rt_image_decode(list.paths[i], NULL, &img, err, sizeof err) || rt_image_eval_crop(&img, size, out))
            return fprintf(stderr, "%s\n", err), 1;
        free(img.rgb);
    }
    double folder_bytes = (double)file_bytes(&list, n);
    row("one thread: decode + eval resize/crop", 1, n, wall() - t0, cpu() - c0, folder_bytes);
    free(out);
    rt_sample_source src = rt_image_list_source(&list);
    double secs, cpus;
    int counts[3] = {1, 2, cores};
    for (int k = 0; k < 3; k++) {
        if (k == 2 && cores <= 2) break;
        char what[80];
        snprintf(what, sizeof what, "folder, loader, aug light (DCT shrink)");
        if (run(&src, &light, counts[k], n, 0, &secs, &cpus)) return 1;
        row(what, counts[k], n, secs, cpus, folder_bytes);
    }
    if (run(&src, &light_full, cores, n, 0, &secs, &cpus)) return 1;
    row("folder, loader, aug light (full decode)", cores, n, secs, cpus, folder_bytes);
    if (run(&src, &none, cores, n, 0, &secs, &cpus)) return 1;
    row("folder, loader, aug none (eval transform)", cores, n, secs, cpus, folder_bytes);
    for (int raw = 0; raw <= 1; raw++) {
        char path[1200];
        snprintf(path, sizeof path, "%s.%s.dpk", dir, raw ? "raw" : "jpeg");
        double p0 = wall();
        if (rt_dpk_pack(dir, path, 256, 90, raw, cores, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
        double pack_s = wall() - p0;
        rt_dpk d;
        if (rt_dpk_open(path, &d, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
        rt_sample_source ds = rt_dpk_source(&d);
        double bytes = 0;
        for (int64_t i = 0; i < n; i++) {
            rt_dpk_sample s;
            rt_dpk_entry(&d, i, &s);
            bytes += (double)s.size;
        }
        for (int k = 0; k < 3; k++) {
            if (k == 2 && cores <= 2) break;
            if (run(&ds, &light, counts[k], n, 1024, &secs, &cpus)) return 1;
            row(raw ? "packed raw (256), loader, aug light" : "packed JPEG q90 (256), loader, aug light", counts[k],
                n, secs, cpus, bytes);
        }
        printf("|   (packing it took %.1f s on %d threads: %.1f MB)%*s|\n", pack_s, cores, d.size / 1e6, 50, "");
        rt_dpk_close(&d);
        unlink(path);
    }
    printf("\nraw + device augmentation kernel: not built (see README: not done)\n");
    rt_image_list_free(&list);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "gen")) return gen(argv[2], atoi(argv[3]), argc > 4 ? atoi(argv[4]) : 10);
    if (argc >= 3 && !strcmp(argv[1], "bench")) return bench(argv[2], argc > 3 ? atoi(argv[3]) : 224);
    fprintf(stderr, "usage: bench_dataload gen DIR N [CLASSES] | bench DIR [SIZE]\n");
    return 2;
}
