/* test_recipe_e2e.c: issue 17's end-to-end recipe test, on an emu executable of a micro DeiT
 * compiled here with --recipe deit (= --mix --stochastic-depth --ema; argv: deitc, the model
 * YAML); with its parts off at run time it trains as a plain compile, bit for bit.
 *   1. an ImageFolder is generated: 6 classes of JPEG and PNG images of mixed sizes (train 24,
 *      val 9, so the last val batch of 4 is padded), plus one truncated JPEG; the loader's rule
 *      for a corrupt file is to refuse the run naming it (exit 1, nothing saved): asserted, then
 *      the file is moved out;
 *   2. 2 epochs with --aug deit, --mixup 0.8 --cutmix 1.0, --drop-path 0.1 and an EMA, validated
 *      each epoch: the reported image count is this test's own count of the val folder, and the
 *      last epoch's top-1 / top-5 / loss (weights and EMA) are what this test counts from the
 *      interpreter's logits (`deitc run`) of the val images it decoded and cropped itself, and
 *      what `EXE eval` reports;
 *      summary.csv has a row an epoch;
 *   3. the same run sent SIGINT mid-epoch (once its metrics show step 1 of epoch 1's 6), exit
 *      130, its checkpoint recording the recipe's options, resumed with the printed command: its
 *      weights and EMA byte-identical to the uninterrupted run's.
 */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *deitc, *model;
static char dir[256];
static char out_text[65536], err_text[65536];

enum { CLASSES = 6, K = 10, TRAIN_EACH = 4, HW = 32 };
static const int val_each[CLASSES] = {2, 1, 2, 1, 2, 1}; /* 9 val images */
#define DEFS "-D img_size=32 -D patch_size=8 -D embed_dim=32 -D depth=2 -D num_heads=2 -D num_classes=10"
#define RUN                                                                                                        \
    "train --data train --val-data val --epochs 2 --aug deit --mixup 0.8 --cutmix 1.0 "           \
    "--drop-path 0.1 --ema-decay 0.9 --lr 0.002 --seed 11 --workers 2 --schedule cosine"

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return test_sh_capture(dir, args, out_text, sizeof out_text, err_text, sizeof err_text, 1);
}

static int same(const char *a, const char *b) { return sh("cmp -s %s %s", a, b) == 0; }

static void write_file(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f && fwrite(b, 1, n, f) == n, "cannot write %s", path);
    if (f) fclose(f);
}

/* image j of class c: w x h, a gradient whose direction and colour depend on the class, plus
 * noise; JPEG (odd j) or PNG (even j). Returns the encoded bytes' length, the bytes in *out. */
static size_t make_image(int c, int j, int w, int h, uint64_t seed, uint8_t **out) {
    uint8_t *rgb = malloc((size_t)w * (size_t)h * 3);
    if (!rgb) abort();
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            int noise = (int)(seed >> 59) - 16, t = (c % 2 ? x * 255 / w : y * 255 / h);
            for (int ch = 0; ch < 3; ch++) {
                int v = (ch == c % 3 ? t : 255 - t) / (1 + c / 3) + noise;
                rgb[((size_t)y * w + x) * 3 + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    size_t n = 0;
    char err[512];
    int rc = j % 2 ? rt_jpeg_encode(rgb, w, h, 90, out, &n, err, sizeof err)
                   : rt_png_encode(rgb, w, h, out, &n, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    free(rgb);
    return rc ? 0 : n;
}

/* dir/split/cK/ with count(K) images each, of sizes 20-75 px, not square */
static void write_split(const char *split, int train, uint64_t seed) {
    char path[512];
    for (int c = 0; c < CLASSES; c++) {
        snprintf(path, sizeof path, "%s/%s/c%d", dir, split, c);
        CHECK(sh("mkdir -p '%s'", path) == 0);
        int n = train ? TRAIN_EACH : val_each[c];
        for (int j = 0; j < n; j++) {
            int w = 20 + (int)((seed >> 8) % 56), h = 20 + (int)((seed >> 20) % 56);
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            uint8_t *b = NULL;
            size_t len = make_image(c, j + c, w, h, seed, &b);
            snprintf(path, sizeof path, "%s/%s/c%d/img%d.%s", dir, split, c, j, (j + c) % 2 ? "jpg" : "png");
            if (len) write_file(path, b, len);
            free(b);
        }
    }
}

/* the .jpg/.png files under dir/split/ (this test's own count) */
static int count_images(const char *split) {
    int n = 0;
    char path[512];
    for (int c = 0; c < CLASSES; c++) {
        snprintf(path, sizeof path, "%s/%s/c%d", dir, split, c);
        DIR *d = opendir(path);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            size_t l = strlen(e->d_name);
            n += l > 4 && (!strcmp(e->d_name + l - 4, ".jpg") || !strcmp(e->d_name + l - 4, ".png"));
        }
        closedir(d);
    }
    return n;
}

/* The val images as timm's eval transform gives them (decoded, resized, center-cropped: the
 * runtime's PIL-exact crop), ImageNet-normalized, with their labels, in dir/val.st. */
static int write_val_tensor(int n) {
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
    float *img = malloc(sizeof(float) * (size_t)n * 3 * HW * HW);
    int64_t *lab = malloc(sizeof(int64_t) * (size_t)n);
    uint8_t crop[3 * HW * HW];
    if (!img || !lab) abort();
    int k = 0, rc = 0;
    char path[512], err[512];
    for (int c = 0; c < CLASSES && !rc; c++)
        for (int j = 0; j < val_each[c] && !rc; j++) { /* the folder's sorted order: img0, img1 */
            snprintf(path, sizeof path, "%s/val/c%d/img%d.%s", dir, c, j, (j + c) % 2 ? "jpg" : "png");
            rt_rgb_image im;
            memset(&im, 0, sizeof im);
            if (rt_image_decode(path, NULL, &im, err, sizeof err) || rt_image_eval_crop(&im, HW, crop)) {
                CHECK_MSG(0, "%s: %s", path, err);
                rc = 1;
            }
            free(im.rgb);
            for (int i = 0; i < 3 * HW * HW && !rc; i++) {
                int ch = i / (HW * HW);
                img[(size_t)k * 3 * HW * HW + i] = ((float)crop[i] / 255.0f - mean[ch]) / stdv[ch];
            }
            lab[k++] = c;
        }
    rt_tensor t[2];
    memset(t, 0, sizeof t);
    t[0].name = "images", t[0].dtype = RT_F32, t[0].ndim = 4;
    t[0].shape[0] = n, t[0].shape[1] = 3, t[0].shape[2] = HW, t[0].shape[3] = HW;
    t[0].nbytes = sizeof(float) * (size_t)n * 3 * HW * HW, t[0].data = img;
    t[1].name = "labels", t[1].dtype = RT_I64, t[1].ndim = 1, t[1].shape[0] = n;
    t[1].nbytes = sizeof(int64_t) * (size_t)n, t[1].data = lab;
    snprintf(path, sizeof path, "%s/val.st", dir);
    if (!rc && k == n) rc = rt_safetensors_write(path, t, 2, NULL, err, sizeof err);
    CHECK_MSG(rc == 0 && k == n, "val tensor: %d of %d images; %s", k, n, err);
    free(img);
    free(lab);
    return rc == 0 && k == n;
}

typedef struct {
    int top1, top5;
    double loss;
} counted;

/* top-1 / top-5 / mean cross-entropy of `weights` on val.st, from the interpreter's logits */
static int count_predictions(const char *weights, int n, counted *r) {
    memset(r, 0, sizeof *r);
    if (sh("'%s' run '%s' " DEFS " --weights %s --input val.st -o logits_%s", deitc, model, weights, weights)) {
        CHECK_MSG(0, "deitc run --weights %s: %s", weights, err_text);
        return 0;
    }
    rt_tensor_set set;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/logits_%s", dir, weights);
    if (rt_safetensors_read(path, &set, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return 0;
    }
    const rt_tensor *lg = rt_tensor_set_find(&set, "logits");
    int ok = lg && lg->dtype == RT_F32 && lg->shape[0] == n && lg->shape[1] == K;
    CHECK_MSG(ok, "logits of %s: missing or not [%d,%d]", weights, n, K);
    for (int i = 0, k = 0, seen = 0; ok && i < n; i++) {
        while (seen >= val_each[k]) k++, seen = 0; /* label of image i */
        seen++;
        const float *z = (const float *)lg->data + (size_t)i * K;
        int above = 0;
        double mx = z[0], s = 0;
        for (int c = 0; c < K; c++) mx = z[c] > mx ? z[c] : mx;
        for (int c = 0; c < K; c++) {
            above += z[c] > z[k] || (z[c] == z[k] && c < k);
            s += exp(z[c] - mx);
        }
        r->top1 += above == 0;
        r->top5 += above < 5;
        r->loss += log(s) + mx - z[k];
    }
    r->loss /= n;
    rt_tensor_set_free(&set);
    return ok;
}

/* "LABEL epoch 2 step S/T  loss L  top-1 A%  top-5 B%" in out_text: the line's three numbers */
static int eval_line(const char *label, double *loss, double *top1, double *top5) {
    char key[64];
    snprintf(key, sizeof key, "%s epoch 2 step ", label);
    const char *p = strstr(out_text, key);
    return p && sscanf(strstr(p, "  loss "), "  loss %lf  top-1 %lf%%  top-5 %lf%%", loss, top1, top5) == 3;
}

static void check_eval(const char *label, const char *weights, int n, counted *out) {
    counted c;
    double loss, t1, t5;
    char saved[sizeof out_text];
    memcpy(saved, out_text, sizeof saved);
    if (!count_predictions(weights, n, &c)) return;
    *out = c;
    memcpy(out_text, saved, sizeof saved);
    CHECK_MSG(eval_line(label, &loss, &t1, &t5), "no '%s epoch 2' line", label);
    double w1 = 100.0 * c.top1 / n, w5 = 100.0 * c.top5 / n;
    CHECK_MSG(fabs(t1 - w1) < 0.006 && fabs(t5 - w5) < 0.006 && fabs(loss - c.loss) < 1e-4 * (c.loss + 1),
              "%s: the run reports top-1 %.2f%% top-5 %.2f%% loss %.6f; counted from the logits of %s: %.2f%% %.2f%% "
              "%.6f", label, t1, t5, loss, weights, w1, w5, c.loss);
    printf("%s after epoch 2: top-1 %d/%d, top-5 %d/%d, loss %.6f (the run and this count agree)\n", label, c.top1, n,
           c.top5, n, c.loss);
    /* EXE eval of the same weights: the same count */
    if (sh("./exe eval --data val --init %s", weights) == 0) {
        const char *js = strstr(out_text, "{\"images\":");
        long long im = -1, a1 = -1, a5 = -1;
        if (js) {
            const char *p1 = strstr(js, "\"top1\":"), *p5 = strstr(js, "\"top5\":");
            im = strtoll(js + 10, NULL, 10);
            a1 = p1 ? strtoll(p1 + 7, NULL, 10) : -1;
            a5 = p5 ? strtoll(p5 + 7, NULL, 10) : -1;
        }
        CHECK_MSG(im == n && a1 == c.top1 && a5 == c.top5, "EXE eval of %s: %s", weights, out_text);
    } else {
        CHECK_MSG(0, "EXE eval of %s: %s", weights, err_text);
    }
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* lines of dir/name holding "\"loss\"" (the training steps' records; 0 when absent) */
static int step_lines(const char *name) {
    char path[512], buf[65536];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    test_slurp(path, buf, sizeof buf);
    int n = 0;
    for (const char *p = buf; (p = strstr(p, "\"loss\":")) != NULL; p++) n++;
    return n;
}

/* `args` in dir (stdout, stderr to out.txt, err.txt), SIGINT once `metrics` has `after` step
 * records; the exit status (-1: finished before the signal) */
static int run_and_interrupt(const char *args, const char *metrics, int after) {
    fflush(stdout); /* else the child's freopen writes what is buffered a second time */
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir) || !freopen("out.txt", "w", stdout) || !freopen("err.txt", "w", stderr)) _exit(99);
        execl("/bin/sh", "sh", "-c", args, (char *)NULL);
        _exit(98);
    }
    double t0 = now_ms();
    int st;
    while (step_lines(metrics) < after && now_ms() - t0 < 120000) {
        if (waitpid(pid, &st, WNOHANG) == pid) return -1;
        usleep(1000);
    }
    kill(pid, SIGINT);
    waitpid(pid, &st, 0);
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    test_slurp(path, out_text, sizeof out_text);
    snprintf(path, sizeof path, "%s/err.txt", dir);
    test_slurp(path, err_text, sizeof err_text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_recipe(void) {
    write_split("train", 1, 7);
    write_split("val", 0, 8);
    int ntrain = count_images("train"), nval = count_images("val");
    CHECK(ntrain == CLASSES * TRAIN_EACH && nval == 9);
    int have_val = write_val_tensor(nval);
    /* the corrupt file: a JPEG cut short; the run is refused, naming it, and writes nothing */
    CHECK(sh("head -c 300 train/c1/img0.jpg > train/c2/zz_cut.jpg") == 0);
    CHECK(sh("./exe " RUN " --save never.st") == 1);
    CHECK_MSG(strstr(err_text, "train/c2/zz_cut.jpg: corrupt or truncated JPEG") && access("never.st", F_OK) != 0,
              "%s", err_text);
    CHECK(sh("mv train/c2/zz_cut.jpg .") == 0);

    /* --recipe deit's parts off at run time (mixup, cutmix, drop path 0): the plain compile's bits */
    CHECK(sh("./exe train --data train --steps 4 --aug light --lr 0.003 --mixup 0 --cutmix 0 --drop-path 0 --save "
             "off.st && ./plain train --data train --steps 4 --aug light --lr 0.003 --save plain.st") == 0);
    CHECK_MSG(same("off.st", "plain.st"), "--recipe deit with mixup, cutmix and drop path off must train as plain");
    /* the plain compile refuses them, naming the compile flags */
    CHECK(sh("./plain train --data train --steps 1 --mixup 0.8") == 1 &&
          strstr(err_text, "deitc compile --mix, or --recipe deit"));
    CHECK(sh("./plain train --data train --steps 1 --drop-path 0.1") == 1 &&
          strstr(err_text, "--stochastic-depth, or --recipe deit"));

    /* the uninterrupted run */
    CHECK(sh("./exe " RUN " --save ref.st --save-ema ref_ema.st --summary s.csv > ref.txt") == 0);
    CHECK(sh("cat ref.txt") == 0);
    char want[64];
    snprintf(want, sizeof want, "(%d images)", nval);
    int evals = 0; /* each epoch's eval line counts every val image */
    for (const char *p = strstr(out_text, "\neval: epoch "); p; p = strstr(p + 1, "\neval: epoch "))
        evals += strstr(p, want) && strstr(p, want) < strchr(p + 1, '\n');
    CHECK_MSG(evals == 2 && strstr(out_text, "eval: epoch 1 step 6/12") && strstr(out_text, "eval: epoch 2 step 12/12") &&
                  strstr(out_text, "eval (EMA): epoch 1 ") && strstr(out_text, "(--aug deit"),
              "want 2 eval lines of %s: %s", want, out_text);
    counted w = {-1, -1, 0}, e = {-1, -1, 0};
    if (have_val) {
        check_eval("eval:", "ref.st", nval, &w);
        CHECK(sh("cat ref.txt") == 0);
        check_eval("eval (EMA):", "ref_ema.st", nval, &e);
    }
    /* summary.csv: a row an epoch, the last one's top-1 the weights' */
    char csv[4096], path[512];
    snprintf(path, sizeof path, "%s/s.csv", dir);
    test_slurp(path, csv, sizeof csv);
    const char *row = strstr(csv, "\n1,");
    double tl, el, t1 = -1;
    CHECK_MSG(!strncmp(csv, "epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\n0,", 52) && row &&
                  sscanf(row + 3, "%lf,%lf,%lf", &tl, &el, &t1) == 3 && fabs(t1 - 100.0 * w.top1 / nval) < 1e-4,
              "summary.csv (weights' top-1 %d/%d): %s", w.top1, nval, csv);
    CHECK_MSG(!same("ref.st", "ref_ema.st"), "the EMA must differ from the weights at decay 0.9");

    /* SIGINT in epoch 1 (6 steps an epoch), the printed resume: the same bytes */
    int rc = run_and_interrupt("exec ./exe " RUN " --save wi.st --save-ema wi_ema.st --checkpoint ck.st "
                               "--metrics mi.jsonl", "mi.jsonl", 1);
    CHECK_MSG(rc == 130, "SIGINT: exit %d, want 130 (-1: the run ended first); %s %s", rc, out_text, err_text);
    const char *ia = strstr(out_text, "interrupted (SIGINT) after step "), *resume = strstr(out_text, "resume with: ");
    long at = ia ? strtol(ia + 32, NULL, 10) : 0;
    CHECK_MSG(at >= 1 && at < 12 && at % 6 != 0 && resume && access("wi.st", F_OK) != 0,
              "interrupted after step %ld (want mid-epoch); %s", at, out_text);
    printf("interrupted after step %ld of 12\n", at);
    /* the checkpoint is of this recipe: mixup/cutmix, drop path and the augmentation recorded */
    rt_tensor_set ck;
    char err[512];
    snprintf(path, sizeof path, "%s/ck.st", dir);
    if (rt_safetensors_read(path, &ck, err, sizeof err) == 0) {
        CHECK_MSG(ck.metadata && strstr(ck.metadata, "\"deitc.run.mixup\":\"0.8,1,1,0.5\"") &&
                      strstr(ck.metadata, "\"deitc.run.drop_path\":\"0.1\"") &&
                      strstr(ck.metadata, "\"deitc.run.aug\":\"deit\"") && rt_tensor_set_find(&ck, "ema.pos_embed"),
                  "checkpoint metadata: %s", ck.metadata ? ck.metadata : "none");
        rt_tensor_set_free(&ck);
    } else {
        CHECK_MSG(0, "%s", err);
    }
    if (resume) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "%.*s", (int)strcspn(resume + 13, "\n"), resume + 13);
        CHECK(sh("%s", cmd) == 0 && strstr(out_text, "resuming from ck.st"));
        CHECK_MSG(same("wi.st", "ref.st"), "the interrupted and resumed run's weights differ from the straight run's");
        CHECK_MSG(same("wi_ema.st", "ref_ema.st"), "the interrupted and resumed run's EMA differs");
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_recipe_e2e DEITC MODEL.yaml\n");
        return 2;
    }
    deitc = argv[1], model = argv[2];
    snprintf(dir, sizeof dir, "/tmp/deitc_recipe_e2e_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    int rc = sh("'%s' compile '%s' " DEFS " --target emu --batch 4 --recipe deit -o exe > c.txt && "
                "'%s' compile '%s' " DEFS " --target emu --batch 4 -o plain > c2.txt",
                deitc, model, deitc, model);
    CHECK_MSG(rc == 0, "compile failed: %s", err_text);
    if (rc == 0) test_recipe();
    if (!test_failures) sh("rm -rf '%s'", dir);
    else fprintf(stderr, "kept %s\n", dir);
    return test_result();
}
