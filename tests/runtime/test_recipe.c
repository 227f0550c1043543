/* test_recipe.c: the training recipe's run-time side (issue 17), on emu executables of a micro
 * DeiT (10 classes) compiled here: argv deitc, the model YAML, an ImageFolder directory.
 *   1. run-time options: --label-smoothing / --clip-grad / --beta1 given to a plain executable
 *      give the same bits as the same values compiled in; 0 turns a compiled-in value off, bit
 *      for bit the plain executable; each option changes the result; --clip-grad on an
 *      executable compiled without clipping is refused.
 *   2. validation: --val-data of 7 images at batch 4 (the last batch padded) each epoch, a
 *      summary.csv with timm's columns, --save-best; `EXE eval` of the best weights counts
 *      top-1 / top-5 / loss as this test does from the interpreter's logits (`deitc run`), and
 *      the best top-1 is the summary's best; a val folder with other classes is refused.
 *   3. the weights' EMA (compile --ema): 0.5 w0 + 0.5 w1 after a step at decay 0.5, the weights at
 *      decay 0, continued exactly by a resumed run, evaluated beside the weights.
 *   4. --freeze at run time: the same bits as compiled in.
 *   5. checkpoints: another model, another compile, another batch are refused and nothing is
 *      written; SIGINT mid-epoch checkpoints, exits 130 and prints the resume command, which
 *      ends byte-identical to an uninterrupted run; SIGTERM exits 143; a second SIGINT exits
 *      at once and leaves the last checkpoint loadable.
 */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *deitc, *model, *folder;
static char dir[256];
static char out_text[65536], err_text[65536];

enum { K = 10, C = 3, HW = 32, NTRAIN = 12, NVAL = 7 };
#define DEFS "-D img_size=32 -D patch_size=8 -D embed_dim=32 -D depth=1 -D num_heads=2 -D num_classes=10"

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return test_sh_capture(dir, args, out_text, sizeof out_text, err_text, sizeof err_text, 1);
}

static void write_dataset(const char *name, int n, uint64_t seed) {
    float *img = malloc(sizeof(float) * (size_t)(n * C * HW * HW));
    int64_t *lab = malloc(sizeof(int64_t) * (size_t)n);
    for (long i = 0; i < (long)n * C * HW * HW; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        img[i] = (float)((double)(seed >> 11) / (double)(1ull << 53) * 2 - 1);
    }
    for (int i = 0; i < n; i++) lab[i] = (i * 7 + (int)(seed % 3)) % K;
    rt_tensor t[2];
    memset(t, 0, sizeof t);
    t[0].name = "images", t[0].dtype = RT_F32, t[0].ndim = 4;
    t[0].shape[0] = n, t[0].shape[1] = C, t[0].shape[2] = HW, t[0].shape[3] = HW;
    t[0].nbytes = sizeof(float) * (size_t)(n * C * HW * HW), t[0].data = img;
    t[1].name = "labels", t[1].dtype = RT_I64, t[1].ndim = 1, t[1].shape[0] = n;
    t[1].nbytes = sizeof(int64_t) * (size_t)n, t[1].data = lab;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_MSG(rt_safetensors_write(path, t, 2, NULL, err, sizeof err) == 0, "%s", err);
    free(img);
    free(lab);
}

static int same(const char *a, const char *b) { return sh("cmp -s %s %s", a, b) == 0; }

/* the first number after "key": in text, or NAN */
static double json_num(const char *text, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(text, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

static void test_run_options(void) {
    const char *run = "train --data train.safetensors --steps 4 --lr 0.002 --seed 5 --save";
    CHECK(sh("./plain %s p.st && ./plain %s p_ls.st --label-smoothing 0.1 && ./plain %s p_b1.st --beta1 0.8 "
             "--beta2 0.99 --adam-eps 1e-6", run, run, run) == 0);
    CHECK(sh("./comp %s c.st && ./comp %s c_off.st --label-smoothing 0 --clip-grad 0 && "
             "./comp %s c_noclip.st --clip-grad 0 && ./comp %s c_clip.st --clip-grad 0.01 && "
             "./comp %s c_given.st --label-smoothing 0.1 --clip-grad 0.5", run, run, run, run, run) == 0);
    CHECK_MSG(same("c_off.st", "p.st"), "compiled-in options turned off at run time must give the plain bits");
    CHECK_MSG(same("c_noclip.st", "p_ls.st"), "--label-smoothing 0.1 at run time must equal it compiled in");
    CHECK(same("c.st", "c_given.st"));
    CHECK(!same("p.st", "p_ls.st") && !same("p.st", "p_b1.st") && !same("c.st", "c_clip.st") &&
          !same("c.st", "c_noclip.st"));
    CHECK(sh("./plain %s x.st --clip-grad 1", run) == 1 && strstr(err_text, "compiled without gradient clipping"));
    CHECK(sh("./plain %s x.st --label-smoothing 1", run) == 2 && strstr(err_text, "--label-smoothing expects"));
    CHECK(sh("./plain train --data train.safetensors --steps 2 --min-lr 1 --lr 0.1") == 2 && strstr(err_text, "above --lr"));
    CHECK(sh("./plain train --data train.safetensors --steps 2 --summary s.csv") == 2 && strstr(err_text, "needs --val-data"));
    /* --lr defaults to 5e-4 x batch / 512 */
    CHECK(sh("./plain train --data train.safetensors --steps 1") == 0 && strstr(out_text, "lr 3.90625e-06"));
    /* warm-up in epochs, cosine to --min-lr: the last step's lr is near min-lr, the first warm */
    CHECK(sh("./plain train --data train.safetensors --epochs 4 --lr 0.01 --min-lr 0.001 --warmup-epochs 1 --schedule cosine "
             "--metrics lr.jsonl") == 0);
    char m[65536];
    char path[512];
    snprintf(path, sizeof path, "%s/lr.jsonl", dir);
    test_slurp(path, m, sizeof m);
    const char *last = strstr(m, "\"step\":12,");
    CHECK(strstr(m, "\"step\":1,") && fabs(json_num(strstr(m, "\"step\":1,"), "lr") - 0.01 / 3) < 1e-9);
    CHECK(last && json_num(last, "lr") > 0.001 && json_num(last, "lr") < 0.0015);
}

static void test_validation(void) {
    CHECK(sh("./plain train --data train.safetensors --epochs 2 --lr 0.003 --val-data val.safetensors --summary s.csv --save-best "
             "best.st --metrics m.jsonl --plot curves.png") == 0);
    /* the log line's fields, the metrics' fields, the plot (a PNG: its signature and IHDR size) */
    CHECK(strstr(out_text, "step 3/6  loss ") && strstr(out_text, "(avg ") && strstr(out_text, "epoch 1 [3/3]") &&
          strstr(out_text, "data ") && strstr(out_text, "device ") && strstr(out_text, "ETA ") && strstr(out_text, "MiB"));
    CHECK(strstr(out_text, "plot: curves.png: loss "));
    char png[64] = {0}, mpath[512];
    snprintf(mpath, sizeof mpath, "%s/curves.png", dir);
    FILE *pf = fopen(mpath, "rb");
    size_t got = pf ? fread(png, 1, 24, pf) : 0;
    if (pf) fclose(pf);
    CHECK(got == 24 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8) && !memcmp(png + 12, "IHDR", 4) &&
          (unsigned char)png[18] == 800 / 256 && (unsigned char)png[19] == 800 % 256 && (unsigned char)png[23] == 600 % 256);
    char mj[65536];
    snprintf(mpath, sizeof mpath, "%s/m.jsonl", dir);
    test_slurp(mpath, mj, sizeof mj);
    CHECK(strstr(mj, "\"loss_avg\":") && strstr(mj, "\"data_s\":") && strstr(mj, "\"device_s\":") &&
          strstr(mj, "\"eta_s\":") && strstr(mj, "\"mem_bytes\":") && strstr(mj, "\"eval_top5\":"));
    CHECK(strstr(out_text, "eval: epoch 1 step 3/6") && strstr(out_text, "eval: epoch 2 step 6/6") &&
          strstr(out_text, "(7 images)"));
    char csv[4096], path[512];
    snprintf(path, sizeof path, "%s/s.csv", dir);
    test_slurp(path, csv, sizeof csv);
    CHECK_MSG(strncmp(csv, "epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\n0,", 52) == 0 && strstr(csv, "\n1,"),
              "summary.csv: %s", csv);
    double best = -1;
    for (const char *l = strchr(csv, '\n'); l && l[1]; l = strchr(l + 1, '\n')) {
        double e, tl, el, t1;
        if (sscanf(l + 1, "%lf,%lf,%lf,%lf", &e, &tl, &el, &t1) == 4 && t1 > best) best = t1;
    }
    /* the interpreter's logits of the best weights, counted here */
    CHECK(sh("'%s' run '%s' " DEFS " --weights best.st --input val.safetensors -o logits.st", deitc, model) == 0);
    rt_tensor_set set;
    char err[512];
    snprintf(path, sizeof path, "%s/logits.st", dir);
    int ok = rt_safetensors_read(path, &set, err, sizeof err) == 0;
    CHECK_MSG(ok, "%s", err);
    const rt_tensor *lg = ok ? rt_tensor_set_find(&set, "logits") : NULL;
    rt_tensor_set vs;
    snprintf(path, sizeof path, "%s/val.safetensors", dir);
    int vok = rt_safetensors_read(path, &vs, err, sizeof err) == 0;
    const rt_tensor *lab = vok ? rt_tensor_set_find(&vs, "labels") : NULL;
    CHECK(lg && lab && lg->shape[0] == NVAL && lg->shape[1] == K);
    if (lg && lab && lg->shape[0] == NVAL) {
        const float *z = lg->data;
        const int64_t *y = lab->data;
        int top1 = 0, top5 = 0;
        double loss = 0;
        for (int i = 0; i < NVAL; i++) {
            int above = 0;
            double mx = z[i * K], s = 0;
            for (int c = 0; c < K; c++) mx = z[i * K + c] > mx ? z[i * K + c] : mx;
            for (int c = 0; c < K; c++) {
                above += z[i * K + c] > z[i * K + y[i]];
                s += exp(z[i * K + c] - mx);
            }
            top1 += above == 0;
            top5 += above < 5;
            loss += log(s) + mx - z[i * K + y[i]];
        }
        loss /= NVAL;
        CHECK(sh("./plain eval --data val.safetensors --init best.st") == 0);
        CHECK_MSG(json_num(out_text, "images") == NVAL && json_num(out_text, "top1") == top1 &&
                      json_num(out_text, "top5") == top5 && fabs(json_num(out_text, "loss") - loss) < 1e-4 * loss,
                  "eval %s; counted top-1 %d top-5 %d loss %.6f", out_text, top1, top5, loss);
        CHECK_MSG(fabs(best - 100.0 * top1 / NVAL) < 1e-4, "best top-1 in summary %.4f, best.st's %.4f", best,
                  100.0 * top1 / NVAL);
        printf("validation: 7 images at batch 4, top-1 %d, top-5 %d, loss %.6f (eval and this count agree)\n", top1,
               top5, loss);
    }
    if (ok) rt_tensor_set_free(&set);
    if (vok) rt_tensor_set_free(&vs);
    /* a val folder with other classes */
    CHECK(sh("mkdir -p tf vf && cp -r '%s/cat' '%s/dog' tf/ && cp -r '%s/cat' '%s/zebra' vf/", folder, folder, folder,
             folder) == 0);
    CHECK(sh("./plain train --data tf --val-data vf --steps 1 --save never.st") == 1 &&
          strstr(err_text, "classes differ") && strstr(err_text, "'zebra'") && access("never.st", F_OK) != 0);
}

/* --init of a "pretrained" file of 1000 classes at a 6x6 patch grid (made from this model's own
 * weights) into the 10-class, 4x4-grid model: the head re-initialized, pos_embed resampled */
static void test_finetune(void) {
    rt_tensor_set set;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/p.st", dir);
    if (rt_safetensors_read(path, &set, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    enum { D = 32, BIG = 1000, TOK = 37 };
    float *hw = calloc(BIG * D, sizeof(float)), *hb = calloc(BIG, sizeof(float)), *pe = calloc(TOK * D, sizeof(float));
    for (int i = 0; i < BIG * D; i++) hw[i] = 0.5f;
    for (int i = 0; i < BIG; i++) hb[i] = 0.25f;
    for (int i = 0; i < TOK * D; i++) pe[i] = (float)(i / D) * 0.01f + (float)(i % D) * 0.001f;
    for (int i = 0; i < set.count; i++) {
        rt_tensor *t = &set.tensors[i];
        void *mine = !strcmp(t->name, "head.weight") ? hw : !strcmp(t->name, "head.bias") ? hb
                     : !strcmp(t->name, "pos_embed") ? pe : NULL;
        if (!mine) continue;
        free(t->data);
        t->data = mine;
        if (mine == hw) t->shape[0] = BIG, t->nbytes = sizeof(float) * BIG * D;
        if (mine == hb) t->shape[0] = BIG, t->nbytes = sizeof(float) * BIG;
        if (mine == pe) t->shape[1] = TOK, t->nbytes = sizeof(float) * TOK * D;
    }
    snprintf(path, sizeof path, "%s/big.st", dir);
    CHECK_MSG(rt_safetensors_write(path, set.tensors, set.count, NULL, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < set.count; i++) /* back to what set_free frees */
        if (set.tensors[i].data == hw || set.tensors[i].data == hb || set.tensors[i].data == pe) set.tensors[i].data = NULL;
    rt_tensor_set_free(&set);
    free(hw), free(hb), free(pe);
    CHECK(sh("./plain train --init big.st --data train.safetensors --steps 1 --lr 1e-12 --save ft.st") == 0);
    CHECK_MSG(strstr(err_text, "'head.weight' is [1000,32] (1000 classes), the model's [10,32] (10 classes): the head "
                               "is re-initialized as timm does (trunc_normal std 0.02)") &&
                  strstr(err_text, "'head.bias' is [1000] (1000 classes)") &&
                  strstr(err_text, "'pos_embed' is [1,37,32] (a 6x6 patch grid), the model's [1,17,32] (4x4): resampled"),
              "%s", err_text);
    snprintf(path, sizeof path, "%s/ft.st", dir);
    if (rt_safetensors_read(path, &set, err, sizeof err) == 0) {
        const rt_tensor *w = rt_tensor_set_find(&set, "head.weight"), *p = rt_tensor_set_find(&set, "pos_embed");
        CHECK(w && w->shape[0] == K && p && p->shape[1] == 17);
        if (w && p) {
            const float *x = w->data, *q = p->data;
            double ss = 0, mx = 0;
            for (int i = 0; i < K * D; i++) ss += (double)x[i] * x[i], mx = fabs(x[i]) > mx ? fabs(x[i]) : mx;
            CHECK_MSG(sqrt(ss / (K * D)) > 0.012 && sqrt(ss / (K * D)) < 0.024 && mx <= 0.0401, "head std %g max %g",
                      sqrt(ss / (K * D)), mx);
            CHECK(fabs(q[0] - 0.0f) < 1e-6 && fabs(q[5] - 0.005f) < 1e-6); /* the class token kept */
        }
        rt_tensor_set_free(&set);
    }
}

/* t's f32 values from dir/name (malloc'ed, n into *n), or NULL */
static float *tensor_of(const char *name, const char *tensor, int64_t *n) {
    rt_tensor_set set;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (rt_safetensors_read(path, &set, err, sizeof err)) return NULL;
    const rt_tensor *t = rt_tensor_set_find(&set, tensor);
    float *out = t && t->dtype == RT_F32 ? malloc(t->nbytes) : NULL;
    if (out) memcpy(out, t->data, t->nbytes), *n = (int64_t)(t->nbytes / sizeof(float));
    rt_tensor_set_free(&set);
    return out;
}

/* the weights' EMA (deitc compile --ema): ema = d ema + (1 - d) w after each step, from the
 * weights at the start; decay 0 is the weights; a resumed run continues it exactly */
static void test_ema(void) {
    CHECK(sh("./plain train --data train.safetensors --steps 1 --lr 0.01 --save w0.st") == 0);
    CHECK(sh("./ema train --init w0.st --data train.safetensors --steps 1 --lr 0.01 --ema-decay 0.5 --save w1.st "
             "--save-ema e1.st") == 0 && strstr(out_text, "EMA weights: saved"));
    static const char *const names[] = {"head.weight", "blocks.0.attn.qkv.weight", "pos_embed", "norm.bias"};
    for (int k = 0; k < 4; k++) {
        int64_t n0 = 0, n1 = 0, ne = 0;
        float *w0 = tensor_of("w0.st", names[k], &n0), *w1 = tensor_of("w1.st", names[k], &n1),
              *e1 = tensor_of("e1.st", names[k], &ne);
        CHECK_MSG(w0 && w1 && e1 && n0 == n1 && n0 == ne, "%s", names[k]);
        double worst = 0, moved = 0;
        for (int64_t i = 0; w0 && w1 && e1 && n0 == ne && i < n0; i++) {
            double want = 0.5 * w0[i] + 0.5 * w1[i], d = fabs(e1[i] - want) / (fabs(want) + 1e-6);
            worst = d > worst ? d : worst;
            moved += fabs(w1[i] - w0[i]);
        }
        CHECK_MSG(worst < 1e-6 && moved > 0, "%s: EMA off by %g (the weights moved %g)", names[k], worst, moved);
        free(w0), free(w1), free(e1);
    }
    CHECK(sh("./ema train --data train.safetensors --steps 3 --lr 0.01 --ema-decay 0 --save w.st --save-ema e.st") == 0);
    CHECK_MSG(same("w.st", "e.st"), "with decay 0 the EMA is the weights");
    /* resumed: the EMA is in the checkpoint */
    CHECK(sh("./ema train --data train.safetensors --steps 5 --lr 0.01 --ema-decay 0.9 --save-ema ea.st") == 0);
    CHECK(sh("./ema train --data train.safetensors --steps 2 --lr 0.01 --ema-decay 0.9 --checkpoint ce.st") == 0);
    CHECK(sh("./ema train --data train.safetensors --steps 5 --lr 0.01 --ema-decay 0.9 --resume ce.st --resume-override "
             "--save-ema eb.st") == 0);
    CHECK_MSG(same("ea.st", "eb.st"), "a resumed run's EMA must be the uninterrupted one's");
    CHECK(sh("./ema train --data train.safetensors --steps 3 --val-data val.safetensors") == 0 &&
          strstr(out_text, "eval (EMA): epoch 1"));
    CHECK(sh("./plain train --data train.safetensors --steps 1 --save-ema x.st") == 1 &&
          strstr(err_text, "keeps no EMA of the weights"));
}

/* --freeze at run time: the same bits as deitc compile --freeze (no clipping) */
static void test_freeze(void) {
    CHECK(sh("./frozen train --data train.safetensors --steps 4 --lr 0.01 --save fc.st") == 0);
    CHECK(sh("./plain train --data train.safetensors --steps 4 --lr 0.01 --save fr.st --freeze 'blocks.*'") == 0 &&
          strstr(out_text, "freeze: 12 weight tensors"));
    CHECK_MSG(same("fc.st", "fr.st"), "--freeze at run time must equal it compiled in");
    CHECK(sh("./plain train --data train.safetensors --steps 1 --freeze 'nothing*'") == 1 &&
          strstr(err_text, "no weight of this model matches"));
}

/* ms since an arbitrary start */
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* lines in dir/name (0 when absent) */
static int lines(const char *name) {
    char path[512], buf[65536];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    test_slurp(path, buf, sizeof buf);
    int n = 0;
    for (const char *p = buf; *p; p++) n += *p == '\n';
    return n;
}

/* Starts `./plain ARGS` in dir (stdout, stderr to out.txt, err.txt); once `metrics` has `after`
 * lines sends sig (twice with `twice`); returns the exit status. */
static int run_and_signal(const char *args, const char *metrics, int after, int sig, int twice) {
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir) || !freopen("out.txt", "w", stdout) || !freopen("err.txt", "w", stderr)) _exit(99);
        execl("/bin/sh", "sh", "-c", args, (char *)NULL);
        _exit(98);
    }
    double t0 = now_ms();
    while (lines(metrics) < after && now_ms() - t0 < 60000) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return -1; /* finished before the signal */
        usleep(2000);
    }
    kill(pid, sig);
    if (twice) {
        usleep(1000);
        kill(pid, sig);
    }
    int st;
    waitpid(pid, &st, 0);
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    test_slurp(path, out_text, sizeof out_text);
    snprintf(path, sizeof path, "%s/err.txt", dir);
    test_slurp(path, err_text, sizeof err_text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_checkpoints(void) {
    const char *run = "train --data train.safetensors --steps 24 --lr 0.002 --seed 9 --schedule cosine";
    /* uninterrupted reference, then SIGINT mid-epoch (3 steps an epoch) and the printed resume */
    CHECK(sh("./plain %s --save ref.st", run) == 0);
    char args[1024];
    snprintf(args, sizeof args, "exec ./plain %s --checkpoint ck.st --metrics mi.jsonl --save wi.st", run);
    int rc = run_and_signal(args, "mi.jsonl", 4, SIGINT, 0);
    CHECK_MSG(rc == 130, "SIGINT: exit %d, want 130; %s %s", rc, out_text, err_text);
    const char *resume = strstr(out_text, "resume with: ");
    CHECK(strstr(out_text, "interrupted (SIGINT) after step") && resume && access("wi.st", F_OK) != 0);
    long at = 0;
    const char *ia = strstr(out_text, "after step ");
    if (ia) at = strtol(ia + 11, NULL, 10);
    CHECK_MSG(at >= 4 && at < 24, "interrupted after step %ld", at);
    if (resume) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "%.*s", (int)strcspn(resume + 13, "\n"), resume + 13);
        CHECK(strstr(cmd, "--resume ck.st"));
        CHECK(sh("%s", cmd) == 0 && strstr(out_text, "resuming from ck.st"));
        CHECK_MSG(same("wi.st", "ref.st"), "an interrupted and resumed run must end byte-identical");
        CHECK(lines("mi.jsonl") == 24);
    }
    /* SIGTERM: 143 */
    snprintf(args, sizeof args, "exec ./plain %s --checkpoint ct.st --metrics mt.jsonl", run);
    rc = run_and_signal(args, "mt.jsonl", 2, SIGTERM, 0);
    CHECK_MSG(rc == 143, "SIGTERM: exit %d, want 143", rc);
    /* a second SIGINT: at once; the checkpoint of --checkpoint-every is loadable */
    snprintf(args, sizeof args, "exec ./plain %s --checkpoint c2.st --checkpoint-every 1 --metrics m2.jsonl", run);
    rc = run_and_signal(args, "m2.jsonl", 3, SIGINT, 1);
    CHECK_MSG(rc == 130, "second SIGINT: exit %d", rc);
    CHECK(sh("./plain %s --resume c2.st --save w2.st", run) == 0 && same("w2.st", "ref.st"));
    /* refusals, nothing written: another batch, another compile, another model */
    CHECK(sh("cp ck.st keep.st") == 0);
    CHECK(sh("./batch5 %s --resume ck.st --checkpoint ck.st --save no.st", run) == 1 &&
          strstr(err_text, "batch 4; this executable's batch is 5"));
    CHECK(sh("./comp %s --resume ck.st --checkpoint ck.st --save no.st", run) == 1 &&
          strstr(err_text, "another compile"));
    int64_t step = 3;
    rt_tensor t;
    memset(&t, 0, sizeof t);
    t.name = "checkpoint.step", t.dtype = RT_I64, t.ndim = 1, t.shape[0] = 1, t.nbytes = sizeof step, t.data = &step;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/other.st", dir);
    CHECK(rt_safetensors_write(path, &t, 1, "{\"format\":\"pt\",\"model\":\"another_model\"}", err, sizeof err) == 0);
    CHECK(sh("./plain %s --resume other.st --checkpoint ck.st --save no.st", run) == 1 &&
          strstr(err_text, "a checkpoint of model 'another_model'"));
    CHECK(same("ck.st", "keep.st") && access("no.st", F_OK) != 0);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: test_recipe DEITC MODEL.yaml IMAGEFOLDER\n");
        return 2;
    }
    deitc = argv[1], model = argv[2], folder = argv[3];
    snprintf(dir, sizeof dir, "/tmp/deitc_recipe_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    int rc = sh("'%s' compile '%s' " DEFS " --target emu --batch 4 -o plain > c1.txt && "
                "'%s' compile '%s' " DEFS " --target emu --batch 4 --label-smoothing 0.1 --clip-grad 0.5 -o comp "
                "> c2.txt && '%s' compile '%s' " DEFS " --target emu --batch 5 -o batch5 > c3.txt && "
                "'%s' compile '%s' " DEFS " --target emu --batch 4 --ema -o ema > c4.txt && "
                "'%s' compile '%s' " DEFS " --target emu --batch 4 --freeze 'blocks.*' -o frozen > c5.txt",
                deitc, model, deitc, model, deitc, model, deitc, model, deitc, model);
    CHECK_MSG(rc == 0, "compile failed: %s", err_text);
    if (rc == 0) {
        write_dataset("train.safetensors", NTRAIN, 1);
        write_dataset("val.safetensors", NVAL, 2);
        test_run_options();
        test_finetune();
        test_validation();
        test_ema();
        test_freeze();
        test_checkpoints();
    }
    if (!test_failures) sh("rm -rf '%s'", dir);
    else fprintf(stderr, "kept %s\n", dir);
    return test_result();
}
