/* test_exe.c: the training executable's runtime end to end on the emu target, with the
 * hand-written plan of tiny_plan.c (argv[1]: that EXE; argv[2]: the same plan built for cuda).
 * Runs the EXE as a user would, in a temporary directory, and checks: train against a host
 * re-implementation of the same model and AdamW (data order with and without shuffling, opt
 * slots, --init), determinism, the metrics file, the lr schedule, --save and its round trip
 * through --init and eval, bench and info, the messages for bad data and options, and that
 * the cuda build says "no CUDA driver" (exit 1) on a machine without one. */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *exe, *exe_cuda;
static char env_prefix[2048]; /* VAR=value ... put before the command */
static char dir[256];
static char out_text[65536], err_text[65536];

static void slurp(const char *name, char *buf, size_t size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    test_slurp(path, buf, size);
}

/* Runs `bin ARGS` in the temp dir; returns its exit status, stdout/stderr in out_text/err_text. */
static int run(const char *bin, const char *fmt, ...) {
    char args[2048], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s '%s' %s", env_prefix, bin, args);
    return test_sh_capture(dir, cmd, out_text, sizeof out_text, err_text, sizeof err_text, 2);
}

static char *path_in(const char *name) {
    static char bufs[4][512];
    static int which;
    char *p = bufs[which++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

/* ---- data ---------------------------------------------------------------------------------- */

enum { N = 12, C = 3, F = 4, B = 4 };
static float images[N * F];
static int64_t labels[N];

static void write_dataset(const char *name, int64_t n, int64_t c, int64_t h, int64_t w, const float *im,
                          const int64_t *lb, rt_dtype label_type) {
    rt_tensor t[2];
    memset(t, 0, sizeof t);
    t[0].name = "images", t[0].dtype = RT_F32, t[0].ndim = 4;
    t[0].shape[0] = n, t[0].shape[1] = c, t[0].shape[2] = h, t[0].shape[3] = w;
    t[0].nbytes = sizeof(float) * (size_t)(n * c * h * w), t[0].data = (void *)im;
    int32_t lb32[64];
    for (int64_t i = 0; i < n && i < 64; i++) lb32[i] = (int32_t)lb[i];
    t[1].name = "labels", t[1].dtype = label_type, t[1].ndim = 1, t[1].shape[0] = n;
    t[1].nbytes = rt_dtype_size(label_type) * (size_t)n;
    t[1].data = label_type == RT_I32 ? (void *)lb32 : (void *)lb;
    char err[512];
    if (rt_safetensors_write(path_in(name), t, 2, NULL, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
}

static void write_weights(const char *name, const float *w, const int64_t *wshape, int wdim, const float *b) {
    rt_tensor t[2];
    memset(t, 0, sizeof t);
    t[0].name = "head.weight", t[0].dtype = RT_F32, t[0].ndim = wdim;
    int64_t n = 1;
    for (int d = 0; d < wdim; d++) n *= (t[0].shape[d] = wshape[d]);
    t[0].nbytes = sizeof(float) * (size_t)n, t[0].data = (void *)w;
    t[1].name = "head.bias", t[1].dtype = RT_F32, t[1].ndim = 1, t[1].shape[0] = C;
    t[1].nbytes = sizeof(float) * C, t[1].data = (void *)b;
    char err[512];
    if (rt_safetensors_write(path_in(name), t, b ? 2 : 1, NULL, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
}

/* ---- the host reference: the tiny plan's model and AdamW, in float ------------------------------ */

static float ref_step(float *W, float *bias, float *m, float *v, const int64_t *idx, double lr, double wd, long t) {
    float z[B][C], dz[B][C], dW[C * F] = {0}, db[C] = {0}, total = 0;
    for (int i = 0; i < B; i++)
        for (int c = 0; c < C; c++) {
            float s = 0;
            for (int f = 0; f < F; f++) s += images[idx[i] * F + f] * W[c * F + f];
            z[i][c] = s + bias[c];
        }
    for (int i = 0; i < B; i++) {
        float mx = -INFINITY, sum = 0;
        for (int c = 0; c < C; c++) mx = fmaxf(mx, z[i][c]);
        for (int c = 0; c < C; c++) sum += expf(z[i][c] - mx);
        total += logf(sum) + mx - z[i][labels[idx[i]]];
        for (int c = 0; c < C; c++) {
            dz[i][c] = (expf(z[i][c] - mx) / sum - (c == labels[idx[i]])) / B;
            db[c] += dz[i][c];
        }
    }
    for (int c = 0; c < C; c++)
        for (int f = 0; f < F; f++)
            for (int i = 0; i < B; i++) dW[c * F + f] += dz[i][c] * images[idx[i] * F + f];
    float bc1 = (float)(1 - pow(0.9, (double)t)), bc2 = (float)(1 - pow(0.999, (double)t));
    for (int j = 0; j < C * F + C; j++) {
        float *w = j < C * F ? &W[j] : &bias[j - C * F], g = j < C * F ? dW[j] : db[j - C * F];
        m[j] = 0.9f * m[j] + 0.1f * g;
        v[j] = 0.999f * v[j] + 0.001f * g * g;
        float mh = m[j] / bc1, vh = v[j] / bc2;
        *w -= (float)lr * (mh / (sqrtf(vh) + 1e-8f) + (j < C * F ? (float)wd * *w : 0));
    }
    return total / B;
}

static void ref_train(float *W, float *bias, long steps, double lr, double wd, int shuffle, uint64_t seed,
                      float *losses) {
    float m[C * F + C] = {0}, v[C * F + C] = {0};
    int64_t perm[N];
    for (long s = 1; s <= steps; s++) {
        long e = (s - 1) / (N / B), pos = ((s - 1) % (N / B)) * B;
        if ((s - 1) % (N / B) == 0) {
            if (shuffle) rt_shuffle(perm, N, seed, e);
            else
                for (int i = 0; i < N; i++) perm[i] = i;
        }
        losses[s - 1] = ref_step(W, bias, m, v, perm + pos, lr, wd, s);
    }
}

/* ---- metrics ------------------------------------------------------------------------------- */

typedef struct {
    long step;
    double loss, lr, ips;
} metric;

static int read_metrics(const char *name, metric *ms, int max) {
    char buf[65536];
    slurp(name, buf, sizeof buf);
    int n = 0;
    for (char *line = strtok(buf, "\n"); line && n < max; line = strtok(NULL, "\n")) {
        long long epoch;
        if (sscanf(line, "{\"step\":%ld,\"epoch\":%lld,\"loss\":%lf,\"lr\":%lf,\"images_per_s\":%lf}", &ms[n].step,
                   &epoch, &ms[n].loss, &ms[n].lr, &ms[n].ips) == 5)
            n++;
        else
            CHECK_MSG(0, "bad metrics line: %s", line);
    }
    return n;
}

static int losses_match(const metric *ms, int n, const float *ref, double tol) {
    for (int i = 0; i < n; i++)
        if (!(fabs(ms[i].loss - ref[i]) <= tol * (1 + fabs(ref[i])))) {
            fprintf(stderr, "step %d: loss %.7g, reference %.7g\n", i + 1, ms[i].loss, ref[i]);
            return 0;
        }
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_exe EMU_EXE CUDA_EXE\n");
        return 2;
    }
    static char exe_abs[4096], cuda_abs[4096]; /* the commands run in the temp dir */
    if (!realpath(argv[1], exe_abs) || !realpath(argv[2], cuda_abs)) {
        fprintf(stderr, "test_exe: cannot find %s or %s\n", argv[1], argv[2]);
        return 1;
    }
    exe = exe_abs, exe_cuda = cuda_abs;
    /* under the sanitizers a report (a leak on an error path...) must not pass for exit 1 */
    setenv("ASAN_OPTIONS", "exitcode=86", 0);
    setenv("UBSAN_OPTIONS", "halt_on_error=1:exitcode=87", 0);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/deitc_rt_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    /* class c lights up feature c (feature 3 is noise) */
    uint64_t st = 7;
    for (int i = 0; i < N; i++) {
        labels[i] = i % C;
        for (int f = 0; f < F; f++)
            images[i * F + f] = (f == labels[i] ? 1.5f : 0) + (float)((double)(rt_splitmix64(&st) >> 11) * 0x1p-53 - 0.5);
    }
    write_dataset("data.safetensors", N, 1, 2, 2, images, labels, RT_I64);
    float W0[C * F], b0[C] = {0.1f, -0.2f, 0.05f};
    for (int j = 0; j < C * F; j++) W0[j] = 0.1f * (float)((j * 7) % 5) - 0.2f;
    int64_t wshape[2] = {C, F};
    write_weights("init.safetensors", W0, wshape, 2, b0);

    /* info */
    CHECK(run(exe, "info -v") == 0);
    CHECK(strstr(out_text, "parameters: 15") && strstr(out_text, "target: emu") && strstr(out_text, "adamw"));

    /* train with --init, no shuffle, against the host reference */
    enum { K = 30 };
    float W[C * F], bias[C], ref[K];
    metric ms[64];
    memcpy(W, W0, sizeof W), memcpy(bias, b0, sizeof bias);
    ref_train(W, bias, K, 0.05, 0.1, 0, 0, ref);
    CHECK(run(exe, "train --init init.safetensors --data data.safetensors --steps %d --lr 0.05 --weight-decay 0.1 "
                   "--no-shuffle --metrics m1.jsonl --save w1.safetensors",
              K) == 0);
    int n = read_metrics("m1.jsonl", ms, 64);
    CHECK_MSG(n == K, "%d metrics lines", n);
    CHECK(n == K && losses_match(ms, K, ref, 1e-4));
    CHECK(n == K && ms[0].step == 1 && ms[K - 1].step == K && ms[K - 1].loss < ms[0].loss * 0.7);
    CHECK(n == K && ms[3].lr == 0.05 && ms[3].ips > 0);
    CHECK(strstr(out_text, "step 30/30") && strstr(out_text, "saved 2 weight tensors"));
    /* the saved weights are the reference's */
    rt_tensor_set saved;
    char err[512];
    CHECK(rt_safetensors_read(path_in("w1.safetensors"), &saved, err, sizeof err) == 0);
    const rt_tensor *sw = rt_tensor_set_find(&saved, "head.weight"), *sb = rt_tensor_set_find(&saved, "head.bias");
    CHECK(sw && sb && sw->ndim == 2 && sw->shape[0] == C && sw->shape[1] == F && sb->shape[0] == C);
    if (sw && sb) {
        CHECK(test_rel_l2(sw->data, W, C * F) < 1e-4);
        CHECK(test_rel_l2(sb->data, bias, C) < 1e-4);
    }
    rt_tensor_set_free(&saved);

    /* shuffled: the order rt_shuffle gives for the seed, deterministic, seed-dependent */
    memcpy(W, W0, sizeof W), memcpy(bias, b0, sizeof bias);
    ref_train(W, bias, K, 0.05, 0.1, 1, 5, ref);
    CHECK(run(exe, "train --init init.safetensors --data data.safetensors --steps %d --lr 0.05 --weight-decay 0.1 "
                   "--seed 5 --metrics m2.jsonl",
              K) == 0);
    n = read_metrics("m2.jsonl", ms, 64);
    CHECK(n == K && losses_match(ms, K, ref, 1e-4));
    CHECK(run(exe, "train --init init.safetensors --data data.safetensors --steps %d --lr 0.05 --weight-decay 0.1 "
                   "--seed 5 --metrics m3.jsonl",
              K) == 0);
    metric ms3[64];
    CHECK(read_metrics("m3.jsonl", ms3, 64) == K);
    int same = 1;
    for (int i = 0; i < K; i++) same &= ms3[i].loss == ms[i].loss;
    CHECK_MSG(same, "two runs with the same seed differ");
    CHECK(run(exe, "train --init init.safetensors --data data.safetensors --steps %d --lr 0.05 --seed 6 "
                   "--metrics m4.jsonl",
              K) == 0);
    CHECK(read_metrics("m4.jsonl", ms3, 64) == K);
    same = 1;
    for (int i = 0; i < K; i++) same &= ms3[i].loss == ms[i].loss;
    CHECK_MSG(!same, "seeds 5 and 6 shuffle alike");

    /* --epochs, warm-up and cosine schedule, no --init (plan initializers) */
    CHECK(run(exe, "train --data data.safetensors --epochs 4 --lr 0.01 --warmup-steps 4 --schedule cosine "
                   "--metrics m5.jsonl")
          == 0);
    n = read_metrics("m5.jsonl", ms, 64);
    CHECK_MSG(n == 12, "--epochs 4 of 3 steps: %d steps", n);
    if (n == 12) {
        CHECK(fabs(ms[0].lr - 0.0025) < 1e-9 && fabs(ms[3].lr - 0.01) < 1e-9);
        CHECK(fabs(ms[4].lr - 0.01) < 1e-9 && ms[11].lr < ms[8].lr && ms[11].lr > 0);
        CHECK(fabs(ms[11].lr - 0.01 * 0.5 * (1 + cos(3.141592653589793 * 7 / 8))) < 1e-9);
    }

    /* eval of the saved weights: the host's loss and accuracy on the data */
    CHECK(run(exe, "eval --init w1.safetensors --data data.safetensors") == 0);
    {
        rt_tensor_set w;
        double want = 0;
        int correct = 0;
        if (rt_safetensors_read(path_in("w1.safetensors"), &w, err, sizeof err) || !rt_tensor_set_find(&w, "head.weight") ||
            !rt_tensor_set_find(&w, "head.bias")) {
            fprintf(stderr, "%s\n", err);
            return test_result() | 1;
        }
        const float *ww = rt_tensor_set_find(&w, "head.weight")->data, *wb = rt_tensor_set_find(&w, "head.bias")->data;
        for (int i = 0; i < N; i++) {
            double z[C], mx = -INFINITY, sum = 0;
            int best = 0;
            for (int c = 0; c < C; c++) {
                z[c] = wb[c];
                for (int f = 0; f < F; f++) z[c] += (double)images[i * F + f] * ww[c * F + f];
                if (z[c] > z[best]) best = c;
            }
            mx = z[best];
            for (int c = 0; c < C; c++) sum += exp(z[c] - mx);
            want += log(sum) + mx - z[labels[i]];
            correct += best == labels[i];
        }
        want /= N;
        double loss = -1, acc = -1;
        long long imgs = 0;
        const char *js = strstr(out_text, "{\"images\"");
        CHECK(js && sscanf(js, "{\"images\":%lld,\"loss\":%lf,\"accuracy\":%lf}", &imgs, &loss, &acc) == 3);
        CHECK_MSG(imgs == N && fabs(loss - want) < 1e-4 && fabs(acc - correct / (double)N) < 1e-9,
                  "eval: %lld images loss %g acc %g, want loss %g acc %g", imgs, loss, acc, want, correct / (double)N);
        rt_tensor_set_free(&w);
    }
    /* eval leaves weights alone: evaluating twice in one process would differ otherwise; here
     * a partial last batch (N=10 is not a multiple of 4) is handled by the logits */
    write_dataset("ten.safetensors", 10, 1, 2, 2, images, labels, RT_I32);
    CHECK(run(exe, "eval --init w1.safetensors --data ten.safetensors") == 0 && strstr(out_text, "10 images"));

    /* bench (synthetic data) */
    CHECK(run(exe, "bench --steps 5 --warmup 1") == 0);
    CHECK(strstr(out_text, "\"median_ms\":") && strstr(out_text, "\"target\":\"emu\"") &&
          strstr(out_text, "\"images_per_s\":"));
    CHECK(run(exe, "train --synthetic --steps 3") == 0);

    /* bad input: clear messages, exit 1, no crash */
    CHECK(run(exe, "train --data missing.safetensors --steps 1") == 1 && strstr(err_text, "missing.safetensors"));
    float big[N * 3 * 2 * 2] = {0};
    write_dataset("shape.safetensors", N, 3, 2, 2, big, labels, RT_I64);
    CHECK(run(exe, "train --data shape.safetensors --steps 1") == 1 && strstr(err_text, "'images' has shape [12,3,2,2]") &&
          strstr(err_text, "[N,1,2,2]"));
    int64_t badl[N];
    memcpy(badl, labels, sizeof badl);
    badl[7] = 3;
    write_dataset("labels.safetensors", N, 1, 2, 2, images, badl, RT_I64);
    CHECK(run(exe, "train --data labels.safetensors --steps 1") == 1 && strstr(err_text, "labels[7] = 3") &&
          strstr(err_text, "3 classes"));
    badl[7] = -1;
    write_dataset("labels2.safetensors", N, 1, 2, 2, images, badl, RT_I64);
    CHECK(run(exe, "eval --data labels2.safetensors") == 1 && strstr(err_text, "labels[7] = -1"));
    write_dataset("small.safetensors", 2, 1, 2, 2, images, labels, RT_I64);
    CHECK(run(exe, "train --data small.safetensors --steps 1") == 1 && strstr(err_text, "batch size 4"));
    int64_t wrong[2] = {F, C};
    write_weights("wrong.safetensors", W0, wrong, 2, b0);
    CHECK(run(exe, "train --data data.safetensors --init wrong.safetensors") == 1 &&
          strstr(err_text, "'head.weight' has shape [4,3]") && strstr(err_text, "[3,4]"));
    write_weights("nobias.safetensors", W0, wshape, 2, NULL);
    CHECK(run(exe, "train --data data.safetensors --init nobias.safetensors") == 1 && strstr(err_text, "'head.bias'"));
    FILE *f = fopen(path_in("junk.safetensors"), "wb");
    if (f) {
        fputs("not a safetensors file at all", f);
        fclose(f);
    }
    CHECK(run(exe, "train --data junk.safetensors") == 1 && strstr(err_text, "junk.safetensors"));
    CHECK(run(exe, "train --data data.safetensors --steps 0") == 2 && strstr(err_text, "--steps"));
    CHECK(run(exe, "train --data data.safetensors --steps abc") == 2);
    CHECK(run(exe, "train --data data.safetensors --bogus") == 2 && strstr(err_text, "--bogus"));
    CHECK(run(exe, "train --steps 1") == 1 && strstr(err_text, "--data"));
    CHECK(run(exe, "frobnicate") == 2);
    CHECK(run(exe, "train --data data.safetensors --steps 1 --save nodir/x.safetensors") == 1 &&
          strstr(err_text, "nodir/x.safetensors"));
    CHECK(run(exe, "train --data %s --steps 1", dir) == 1 && strstr(err_text, "directory"));
    /* refused before the first step, not after the whole run */
    CHECK(run(exe, "train --data data.safetensors --steps 1 --save %s", dir) == 1 && strstr(err_text, "directory") &&
          !strstr(out_text, "trained"));
    float nan_images[N * F];
    memcpy(nan_images, images, sizeof nan_images);
    nan_images[2 * F + 1] = NAN;
    write_dataset("nan.safetensors", N, 1, 2, 2, nan_images, labels, RT_I64);
    CHECK(run(exe, "train --data nan.safetensors --steps 1") == 1 && strstr(err_text, "NaN") &&
          strstr(err_text, "image 2") && !strstr(out_text, "step 1"));
    write_dataset("empty.safetensors", 0, 1, 2, 2, images, labels, RT_I64);
    CHECK(run(exe, "eval --data empty.safetensors") == 1 && strstr(err_text, "no images"));
    CHECK(run(exe, "train --data data.safetensors --epochs 9223372036854775807") == 1 && strstr(err_text, "--epochs") &&
          !strstr(out_text, "trained"));
    if (access("/dev/full", W_OK) == 0) /* a metrics file that cannot be written stops the run at once */
        CHECK(run(exe, "train --data data.safetensors --steps 5 --metrics /dev/full") == 1 &&
              strstr(err_text, "/dev/full") && !strstr(out_text, "trained"));

    /* the cuda build on a machine without the driver */
    if (access("/dev/nvidia0", F_OK) == 0) {
        fprintf(stderr, "a GPU is present: skipping the no-driver check\n");
    } else {
        CHECK(run(exe_cuda, "train --synthetic --steps 1") == 1);
        CHECK_MSG(strstr(err_text, "no CUDA driver") || strstr(err_text, "no usable CUDA device") ||
                      strstr(err_text, "without the CUDA headers"),
                  "stderr: %s", err_text);
        CHECK(strstr(err_text, "--target emu"));
        CHECK(run(exe_cuda, "info") == 0 && strstr(out_text, "target: cuda sm_90"));
    }

    /* the cuda device layer against fake_cuda.c (host stand-ins for libcuda and cuBLASLt): the
     * same numbers as the host reference, with graph capture and replay from step 2 on */
    const char *fake_exe = getenv("RT_FAKE_EXE"), *fake_lib = getenv("RT_FAKE_LIB");
    if (fake_exe && fake_lib) {
        snprintf(env_prefix, sizeof env_prefix, "DEITC_LIBCUDA='%s' DEITC_CUBLASLT='%s'", fake_lib, fake_lib);
        memcpy(W, W0, sizeof W), memcpy(bias, b0, sizeof bias);
        ref_train(W, bias, K, 0.05, 0.1, 0, 0, ref);
        CHECK(run(fake_exe, "train --init init.safetensors --data data.safetensors --steps %d --lr 0.05 "
                            "--weight-decay 0.1 --no-shuffle --metrics f1.jsonl --save f1.safetensors",
                  K) == 0);
        CHECK_MSG(strstr(out_text, "Fake GPU") != NULL, "stdout: %s\nstderr: %s", out_text, err_text);
        CHECK_MSG(strstr(err_text, "29 graph replays") != NULL, "stderr: %s", err_text);
        n = read_metrics("f1.jsonl", ms, 64);
        CHECK(n == K && losses_match(ms, K, ref, 1e-4));
        CHECK(run(fake_exe, "train --data data.safetensors --steps 4 --no-graph") == 0 &&
              !strstr(err_text, "graph replays"));
        CHECK(run(fake_exe, "bench --steps 3 --warmup 1") == 0 && strstr(out_text, "\"graph\":true") &&
              strstr(out_text, "\"target\":\"cuda\"") && strstr(out_text, "\"median_ms\":1.0000"));
        CHECK(run(fake_exe, "bench --steps 2 --warmup 0 --profile") == 0 && strstr(out_text, "softmax_cross_entropy"));
        CHECK_MSG(strstr(out_text, "\"startup_wall_ms\":") && strstr(out_text, "\"timed_wall_ms\":") &&
                      strstr(out_text, "wall clock: start-up"),
                  "stdout: %s", out_text);
        /* DEITC_NO_GRAPH and DEITC_CUDA_SYNC parse their values: 0 keeps the graph (it used to turn
         * it off, as any value did), 1 is --no-graph, anything else is an error naming the variable */
        size_t gl = strlen(env_prefix);
        snprintf(env_prefix + gl, sizeof env_prefix - gl, " DEITC_NO_GRAPH=0");
        CHECK(run(fake_exe, "bench --steps 2 --warmup 1") == 0 && strstr(out_text, "\"graph\":true"));
        snprintf(env_prefix + gl, sizeof env_prefix - gl, " DEITC_NO_GRAPH=true");
        CHECK(run(fake_exe, "bench --steps 2 --warmup 1") == 0 && strstr(out_text, "\"graph\":false"));
        snprintf(env_prefix + gl, sizeof env_prefix - gl, " DEITC_NO_GRAPH=maybe");
        CHECK_MSG(run(fake_exe, "bench --steps 2 --warmup 1") == 2 &&
                      strstr(err_text, "DEITC_NO_GRAPH=maybe: expected 0, 1, true or false"),
                  "stderr: %s", err_text);
        snprintf(env_prefix + gl, sizeof env_prefix - gl, " DEITC_CUDA_SYNC=on");
        CHECK_MSG(run(fake_exe, "bench --steps 2 --warmup 1") == 1 &&
                      strstr(err_text, "DEITC_CUDA_SYNC=on: expected 0, 1, true or false"),
                  "stderr: %s", err_text);
        env_prefix[gl] = 0;
        /* cuBLASLt failing inside graph capture: the message names the step, the GEMM's shape and
         * --no-graph, which then runs (what gpu_check falls back to) */
        size_t el = strlen(env_prefix);
        snprintf(env_prefix + el, sizeof env_prefix - el, " FAKE_CUDA_CAPTURE_MATMUL=fail");
        CHECK(run(fake_exe, "bench --steps 2 --warmup 1") == 1);
        CHECK_MSG(strstr(err_text, "cublasLtMatmul failed") &&
                      strstr(err_text, "plan step 0: logits = images @ head.weight^T; m 4 n 3 k 4 batch 1, trans 01") &&
                      strstr(err_text, "--no-graph"),
                  "stderr: %s", err_text);
        CHECK(run(fake_exe, "bench --steps 2 --warmup 1 --no-graph") == 0 && strstr(out_text, "\"graph\":false"));
        env_prefix[el] = 0;
        CHECK(run(fake_exe, "eval --init f1.safetensors --data data.safetensors") == 0 && strstr(out_text, "12 images"));
        /* a kernel fault shows at the next synchronizing call: the message says how to find the
         * step, and DEITC_CUDA_SYNC=1 names it (the 2nd launch is step 4, adamw head.weight) */
        size_t pl = strlen(env_prefix);
        snprintf(env_prefix + pl, sizeof env_prefix - pl, " FAKE_CUDA_FAULT=2");
        CHECK(run(fake_exe, "train --data data.safetensors --steps 2 --no-graph") == 1);
        CHECK_MSG(strstr(err_text, "DEITC_CUDA_SYNC=1") && !strstr(err_text, "plan step 4"), "stderr: %s", err_text);
        snprintf(env_prefix + pl, sizeof env_prefix - pl, " FAKE_CUDA_FAULT=2 DEITC_CUDA_SYNC=1");
        CHECK(run(fake_exe, "train --data data.safetensors --steps 2 --no-graph") == 1);
        CHECK_MSG(strstr(err_text, "cuStreamSynchronize failed") && strstr(err_text, "plan step 4: adamw head.weight"),
                  "stderr: %s", err_text);
        snprintf(env_prefix + pl, sizeof env_prefix - pl, " DEITC_CUDA_SYNC=1");
        CHECK(run(fake_exe, "train --data data.safetensors --steps 3") == 0 && strstr(err_text, "2 graph replays"));
        env_prefix[0] = 0;
    } else {
        fprintf(stderr, "RT_FAKE_EXE/RT_FAKE_LIB not set: cuda device layer not exercised\n");
    }

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_result();
}
