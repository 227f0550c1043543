/* test_image_folder.c: ImageFolder datasets (runtime/image_folder.c).
 *   load   tests/data/image_folder/train through rt_dataset_load with a hand-made plan (3x32x32,
 *          3 classes) against the pixels PIL gives (tests/tools/make_image_folder.py wrote
 *          expected.safetensors): labels exact, PNG within 1, JPEG within 2; loaded twice, the
 *          same; the normalization of the uint8 store; too many classes, in_chans 1
 *   bad    every bad input (made in a temp dir) gives -1 and a message naming the file
 *   budget (argv[1] = "budget") four 16384x4096 PNGs on four threads stay within the decoders'
 *          shared memory budget (peak RSS of the load)
 *   exe    (argv[1] = "exe") deitc compile an emu EXE, train/eval on the folder, ldd shows no
 *          libjpeg/libpng/libz (static; sanitizer builds link them shared), and the bad inputs
 *          exit 1 naming the file
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/rt.h"
#include "tests/harness.h"

static rt_plan_tensor images_t = {"images", RT_ROLE_INPUT, RT_F32, 4, {4, 3, 32, 32}, 0, 4 * 3 * 32 * 32 * 4,
                                  RT_INIT_ZEROS, 0, 0, NULL, 0};

static rt_plan make_plan(int64_t classes, int64_t chans) {
    rt_plan p;
    memset(&p, 0, sizeof p);
    p.model_name = "test";
    p.batch = 4;
    p.img_size = 32;
    p.in_chans = chans;
    p.num_classes = classes;
    p.num_tensors = chans == 3 ? 1 : 0; /* in_chans 1: the header fields decide */
    p.tensors = &images_t;
    return p;
}

static char tmp[256], err[2048];

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (!b || fread(b, 1, *n, f) != *n) exit(2);
    fclose(f);
    return b;
}

static void test_load(const char *root) {
    char path[512];
    snprintf(path, sizeof path, "%.400s/train", root);
    rt_plan p = make_plan(3, 3);
    rt_dataset ds, again;
    int rc = rt_dataset_load(path, &p, &ds, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc) return;
    snprintf(path, sizeof path, "%.400s/expected.safetensors", root);
    rt_tensor_set set;
    rc = rt_safetensors_read(path, &set, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc) {
        rt_dataset_free(&ds);
        return;
    }
    const rt_tensor *px = rt_tensor_set_find(&set, "pixels"), *lb = rt_tensor_set_find(&set, "labels"),
                    *ll = rt_tensor_set_find(&set, "lossless");
    CHECK(px && lb && ll && px->ndim == 4);
    int64_t n = px ? px->shape[0] : 0;
    CHECK(ds.n == n && ds.c == 3 && ds.h == 32 && ds.w == 32 && ds.classes == 3 && ds.images == NULL &&
          ds.images_u8 != NULL);
    if (ds.n == n && n > 0 && lb && ll) {
        float *ref = malloc(sizeof(float) * (size_t)rt_tensor_numel(px));
        int64_t *labels = malloc(sizeof(int64_t) * (size_t)n);
        rt_tensor_to_f32(px, ref);
        rt_tensor_to_i64(lb, labels);
        const int32_t *lossless = ll->data;
        int max_png = 0, max_jpeg = 0;
        long jpeg_diff = 0, jpeg_count = 0;
        for (int64_t i = 0; i < n; i++) {
            CHECK_MSG(ds.labels[i] == labels[i], "image %lld: label %lld, expected %lld", (long long)i,
                      (long long)ds.labels[i], (long long)labels[i]);
            int worst = 0;
            for (int64_t j = 0; j < 3 * 32 * 32; j++) {
                int d = abs((int)ds.images_u8[i * 3 * 32 * 32 + j] - (int)ref[i * 3 * 32 * 32 + j]);
                if (d > worst) worst = d;
                if (!lossless[i]) {
                    jpeg_diff += d != 0;
                    jpeg_count++;
                }
            }
            if (lossless[i]) max_png = worst > max_png ? worst : max_png;
            else max_jpeg = worst > max_jpeg ? worst : max_jpeg;
            CHECK_MSG(worst <= (lossless[i] ? 1 : 2), "image %lld: max abs difference %d vs PIL", (long long)i, worst);
        }
        fprintf(stderr, "vs PIL: PNG max abs difference %d, JPEG max abs difference %d (%ld of %ld values differ)\n",
                max_png, max_jpeg, jpeg_diff, jpeg_count);
        free(ref);
        free(labels);
        /* normalization of the uint8 store */
        float img[3 * 32 * 32];
        rt_dataset_image(&ds, 1, img);
        const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
        for (int c = 0; c < 3; c++) {
            int j = c * 1024 + 5 * 32 + 7;
            float want = ((float)ds.images_u8[3 * 32 * 32 + j] / 255.0f - mean[c]) / stdv[c];
            CHECK(img[j] == want);
        }
    }
    rt_tensor_set_free(&set);
    /* loading twice: no state carried over */
    snprintf(path, sizeof path, "%.400s/train", root);
    rc = rt_dataset_load(path, &p, &again, err, sizeof err);
    CHECK(rc == 0 && again.n == ds.n && memcmp(again.images_u8, ds.images_u8, (size_t)ds.n * 3 * 32 * 32) == 0 &&
          memcmp(again.labels, ds.labels, sizeof(int64_t) * (size_t)ds.n) == 0);
    if (rc == 0) rt_dataset_free(&again);
    rt_dataset_free(&ds);
    /* more classes than the model has; a model that does not take RGB */
    rt_plan two = make_plan(2, 3), gray = make_plan(3, 1);
    CHECK(rt_dataset_load(path, &two, &ds, err, sizeof err) == -1 && strstr(err, "3 class folders") &&
          strstr(err, "has 2 classes"));
    CHECK(rt_dataset_load(path, &gray, &ds, err, sizeof err) == -1 && strstr(err, "1 channels") &&
          strstr(err, "directory"));
}

/* Bad inputs under tmp; each entry: --data path, what the message must name, and contain. */
typedef struct {
    char data[512], names[512];
    const char *what;
} bad_case;

static int make_bad_cases(const char *root, bad_case *cases) {
    char p[600];
    size_t n_jpg, n_png;
    char src[512];
    snprintf(src, sizeof src, "%.400s/train/cat/a_rgb.jpg", root);
    unsigned char *jpg = read_bytes(src, &n_jpg);
    snprintf(src, sizeof src, "%.400s/train/cat/c_rgba.png", root);
    unsigned char *png = read_bytes(src, &n_png);
    int n = 0;
#define CASE(dir_, name_, what_)                                                                 \
    do {                                                                                         \
        snprintf(cases[n].data, sizeof cases[n].data, "%s/%s", tmp, dir_);                       \
        snprintf(cases[n].names, sizeof cases[n].names, "%s", name_);                            \
        cases[n].what = what_;                                                                   \
        n++;                                                                                     \
    } while (0)
    CASE("missing", "missing", "No such file");
    snprintf(p, sizeof p, "%s/data.dat", tmp);
    write_bytes(p, "x", 1);
    CASE("data.dat", "data.dat", "unknown dataset type");
    snprintf(p, sizeof p, "%s/empty", tmp);
    if (test_sh("mkdir -p '%s/empty' '%s/noimg/a' '%s/noimg/b' '%s/trunc/a' '%s/randpng/a' '%s/zero/a' "
                         "'%s/cmyk/a' '%s/huge/a' '%s/badcrc/a' '%s/truncpng/a'",
                         tmp, tmp, tmp, tmp, tmp, tmp, tmp, tmp, tmp, tmp)) exit(2);
    CASE("empty", "empty", "no class subfolders");
    snprintf(p, sizeof p, "%s/noimg/a/x.jpg", tmp);
    write_bytes(p, jpg, n_jpg);
    snprintf(p, sizeof p, "%s/noimg/b/readme.txt", tmp);
    write_bytes(p, "hi", 2);
    CASE("noimg", "noimg/b", "class 'b' has no images");
    snprintf(p, sizeof p, "%s/trunc/a/t.jpg", tmp);
    write_bytes(p, jpg, n_jpg / 2);
    CASE("trunc", "trunc/a/t.jpg", "Premature end of JPEG file");
    unsigned char rnd[300];
    uint64_t st = 42;
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)rt_splitmix64(&st);
    snprintf(p, sizeof p, "%s/randpng/a/r.png", tmp);
    write_bytes(p, rnd, sizeof rnd);
    CASE("randpng", "randpng/a/r.png", "not a JPEG or PNG");
    snprintf(p, sizeof p, "%s/zero/a/z.jpg", tmp);
    write_bytes(p, "", 0);
    CASE("zero", "zero/a/z.jpg", "empty file");
    snprintf(p, sizeof p, "%s/cmyk/a/c.jpg", tmp);
    snprintf(src, sizeof src, "%.400s/bad/cmyk.jpg", root);
    size_t n_cmyk;
    unsigned char *cmyk = read_bytes(src, &n_cmyk);
    write_bytes(p, cmyk, n_cmyk);
    free(cmyk);
    CASE("cmyk", "cmyk/a/c.jpg", "CMYK");
    /* a JPEG whose frame header claims 20000 x 20000 pixels */
    for (size_t i = 0; i + 9 < n_jpg; i++)
        if (jpg[i] == 0xff && (jpg[i + 1] == 0xc0 || jpg[i + 1] == 0xc2)) {
            jpg[i + 5] = 20000 >> 8;
            jpg[i + 6] = 20000 & 255;
            jpg[i + 7] = 20000 >> 8;
            jpg[i + 8] = 20000 & 255;
            break;
        }
    snprintf(p, sizeof p, "%s/huge/a/h.jpg", tmp);
    write_bytes(p, jpg, n_jpg);
    CASE("huge", "huge/a/h.jpg", "20000x20000 pixels refused");
    /* a PNG with a flipped byte in its image data (CRC error), and one cut short */
    png[n_png - 20] ^= 0x55;
    snprintf(p, sizeof p, "%s/badcrc/a/b.png", tmp);
    write_bytes(p, png, n_png);
    CASE("badcrc", "badcrc/a/b.png", "corrupt or truncated PNG");
    png[n_png - 20] ^= 0x55;
    snprintf(p, sizeof p, "%s/truncpng/a/t.png", tmp);
    write_bytes(p, png, n_png / 2);
    CASE("truncpng", "truncpng/a/t.png", "corrupt or truncated PNG");
    /* entries that cannot be read are errors naming them, not silently left out (issue 15):
     * a dangling link among the images, a class that is a link to itself, a FIFO image */
    if (test_sh("mkdir -p '%s/dangling/a' '%s/loop/a' '%s/fifo/a' && ln -s nowhere.jpg '%s/dangling/a/x.jpg' && "
                "ln -s b '%s/loop/b' && mkfifo '%s/fifo/a/x.jpg'", tmp, tmp, tmp, tmp, tmp, tmp)) exit(2);
    snprintf(p, sizeof p, "%s/dangling/a/y.png", tmp); /* a good image beside each (png is whole again) */
    write_bytes(p, png, n_png);
    CASE("dangling", "dangling/a/x.jpg", "No such file or directory (a symbolic link whose target cannot be reached)");
    snprintf(p, sizeof p, "%s/loop/a/y.png", tmp);
    write_bytes(p, png, n_png);
    CASE("loop", "loop/b", "Too many levels of symbolic links");
    CASE("fifo", "fifo/a/x.jpg", "not a regular file (it is a FIFO)");
    if (geteuid() != 0) { /* root reads anything: then this case cannot be made */
        if (test_sh("mkdir -p '%s/noperm/a'", tmp)) exit(2);
        snprintf(p, sizeof p, "%s/noperm/a/x.png", tmp);
        write_bytes(p, png, n_png);
        if (test_sh("chmod 0600 '%s/noperm/a'", tmp)) exit(2); /* names readable, files not */
        CASE("noperm", "noperm/a/x.png", "Permission denied");
    } else {
        printf("as root, the unreadable class folder case is not made\n");
    }
    free(jpg);
    free(png);
    return n;
}

static void test_bad_load(bad_case *cases, int n) {
    rt_plan p = make_plan(3, 3);
    for (int i = 0; i < n; i++) {
        rt_dataset ds;
        int rc = rt_dataset_load(cases[i].data, &p, &ds, err, sizeof err);
        CHECK_MSG(rc == -1 && strstr(err, cases[i].names) && strstr(err, cases[i].what), "%s: rc %d, message: %s",
                  cases[i].data, rc, err);
        if (rc == 0) rt_dataset_free(&ds);
    }
}

static int has(const char *file, const char *s) {
    size_t n;
    unsigned char *b = read_bytes(file, &n);
    char *t = realloc(b, n + 1);
    t[n] = 0;
    int r = strstr(t, s) != NULL;
    free(t);
    return r;
}

static void test_exe(const char *root, bad_case *cases, int n) {
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    int rc = test_sh("'%s' compile '%s/models/deit_tiny.yaml' -D img_size=32 -D patch_size=8 -D embed_dim=64 "
                     "-D depth=2 -D num_heads=2 -D num_classes=3 --target emu --batch 4 -o '%s/exe' > '%s/compile.txt' "
                     "2>&1",
                     bin, src, tmp, tmp);
    CHECK_MSG(rc == 0, "deitc compile failed; see %s/compile.txt", tmp);
    if (rc) return;
    char out[600];
    snprintf(out, sizeof out, "%s/train.txt", tmp);
    rc = test_sh("cd '%s' && ./exe train --data '%s/train' --steps 2 --save w.safetensors > train.txt 2>&1", tmp, root);
    CHECK_MSG(rc == 0, "train failed; see %s", out);
    CHECK(rc || (has(out, "data: ") && has(out, "12 images, 3 classes, decoded in") && has(out, "step 2")));
    snprintf(out, sizeof out, "%s/eval.txt", tmp);
    rc = test_sh("cd '%s' && ./exe eval --data '%s/train' --init w.safetensors > eval.txt 2>&1", tmp, root);
    CHECK_MSG(rc == 0, "eval failed; see %s", out);
    CHECK(rc || has(out, "eval: 12 images"));
    /* static image libraries: nothing but libc, libm, libdl, libpthread and the loader.
     * Sanitizer builds link the shared ones (their executables need libasan.so anyway). */
    CHECK(test_sh("ldd '%s/exe' > '%s/ldd.txt' 2>&1", tmp, tmp) == 0);
    snprintf(out, sizeof out, "%s/ldd.txt", tmp);
#ifndef DEITC_SANITIZE
    CHECK_MSG(!has(out, "libjpeg") && !has(out, "libpng") && !has(out, "libz."), "see %s", out);
    CHECK_MSG(test_sh("grep '=>' '%s' | grep -vE 'lib(c|m|dl|pthread)\\.so' >&2", out) != 0,
              "unexpected shared libraries in %s", out);
#endif
    for (int i = 0; i < n; i++) {
        snprintf(out, sizeof out, "%s/bad%d.txt", tmp, i);
        rc = test_sh("cd '%s' && ./exe train --data '%s' --steps 1 > '%s' 2>&1", tmp, cases[i].data, out);
        CHECK_MSG(rc == 1 && has(out, cases[i].names) && has(out, cases[i].what), "%s: exit %d; see %s",
                  cases[i].data, rc, out);
    }
}

/* ---- the decoders' shared memory budget (issue 15) ------------------------------------------ */

#if __has_include(<zlib.h>)
#include <sys/resource.h>
#include <zlib.h>

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void png_chunk(FILE *f, const char *type, const unsigned char *data, uint32_t n) {
    unsigned char b[8];
    put32(b, n);
    memcpy(b + 4, type, 4);
    fwrite(b, 1, 8, f);
    if (n) fwrite(data, 1, n, f);
    uLong crc = crc32(0, b + 4, 4);
    if (n) crc = crc32(crc, data, n); /* crc32(c, NULL, 0) would be the initial value, not c */
    put32(b, (uint32_t)crc);
    fwrite(b, 1, 4, f);
}

/* An RGB PNG of w x h black pixels (zlib level 9: 16384 x 4096 is about 200 KB). */
static void write_black_png(const char *path, uint32_t w, uint32_t h) {
    size_t row = 1 + 3 * (size_t)w, cap = 4u << 20;
    unsigned char *in = calloc(row, 1), *out = malloc(cap);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (!in || !out || deflateInit(&z, 9) != Z_OK) exit(2);
    z.next_out = out;
    z.avail_out = (uInt)cap;
    for (uint32_t y = 0; y < h; y++) {
        z.next_in = in;
        z.avail_in = (uInt)row;
        if (deflate(&z, y + 1 == h ? Z_FINISH : Z_NO_FLUSH) == Z_STREAM_ERROR || z.avail_out == 0) exit(2);
    }
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    unsigned char ihdr[13] = {0};
    put32(ihdr, w);
    put32(ihdr + 4, h);
    ihdr[8] = 8, ihdr[9] = 2; /* 8-bit RGB */
    FILE *f = fopen(path, "wb");
    if (!f) exit(2);
    fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
    png_chunk(f, "IHDR", ihdr, 13);
    png_chunk(f, "IDAT", out, (uint32_t)n);
    png_chunk(f, "IEND", NULL, 0);
    fclose(f);
    free(in);
    free(out);
}

/* Four 16384x4096 PNGs (192 MB each decoded) on four decoder threads under a 256 MiB budget:
 * the load's peak memory stays near one image, not four (it was 4 x 200 MB: a thread each). */
static void test_budget(void) {
    char p[600];
    if (test_sh("mkdir -p '%s/big/a'", tmp)) exit(2);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/big/a/%d.png", tmp, i);
        if (i == 0) write_black_png(p, 16384, 4096);
        else if (test_sh("cp '%s/big/a/0.png' '%s'", tmp, p)) exit(2);
    }
    snprintf(p, sizeof p, "%s/big", tmp);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { /* the load alone in a fresh process, for its peak memory */
        setenv("DEITC_DECODE_THREADS", "4", 1);
        setenv("DEITC_DECODE_MEMORY", "256", 1);
        setenv("DEITC_DECODE_REPORT", "1", 1);
        rt_plan pl = make_plan(3, 3);
        rt_dataset ds;
        int rc = rt_dataset_load(p, &pl, &ds, err, sizeof err);
        if (rc) fprintf(stderr, "%s\n", err);
        else rt_dataset_free(&ds);
        _exit(rc ? 1 : 0);
    }
    int status = 0;
    struct rusage ru;
    CHECK(pid > 0 && wait4(pid, &status, 0, &ru) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the load failed (status %d)", status);
    long mb = ru.ru_maxrss / 1024;
    printf("4 PNGs of 16384x4096 on 4 threads, 256 MiB decode budget: peak RSS %ld MB\n", mb);
    CHECK_MSG(mb < 256 + 96, "peak RSS %ld MB (the budget is 256 MiB; 4 images at once would be 800 MB)", mb);
}
#else
static void test_budget(void) { printf("no zlib.h: the decode budget test is not built\n"); }
#endif

int main(int argc, char **argv) {
    const char *src = test_env("DEITC_SOURCE_DIR");
    char root[512];
    snprintf(root, sizeof root, "%s/tests/data/image_folder", src);
    snprintf(tmp, sizeof tmp, "%s/deitc_images_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) return 2;
    bad_case cases[24];
    int n = make_bad_cases(root, cases);
    if (argc > 1 && strcmp(argv[1], "exe") == 0) {
        test_exe(root, cases, n);
    } else if (argc > 1 && strcmp(argv[1], "budget") == 0) {
        test_budget();
    } else {
        test_load(root);
        test_bad_load(cases, n);
    }
    if (!test_failures) test_sh("chmod -R u+rwx '%s'; rm -rf '%s'", tmp, tmp);
    else fprintf(stderr, "kept %s\n", tmp);
    return test_result();
}
