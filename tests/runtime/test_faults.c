/* test_faults.c: checkpoints under faults (issue 15), on a micro DeiT compiled for emu (argv[1]:
 * models/deit_tiny.yaml, shrunk with -D; the -D values are zero-padded so that the model's name
 * is nearly 600 characters, longer than the 512-byte buffer its metadata once went through).
 *   1. SIGKILL at 20 seeded random moments of a run that checkpoints every step: each time the
 *      last checkpoint verifies (rt_safetensors_read_checked, as --resume reads it), resuming
 *      from it ends with the very bytes of an uninterrupted run (weights and final checkpoint),
 *      and no temporary file is left beside them.
 *   2. One flipped bit at every byte of a checkpoint's header and at the first, middle and last
 *      byte of each tensor: refused, naming the metadata (header) or that very tensor; a few of
 *      them through the executable's --resume too.
 *   3. The long name reads back from the checkpoint's metadata as valid JSON (python3's json).
 */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { STEPS = 24, KILLS = 20 };

static char dir[256], exe[512];
static char out_text[16384], err_text[16384];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return test_sh_capture(dir, args, out_text, sizeof out_text, err_text, sizeof err_text, 1);
}

static char *path_in(const char *name) {
    static char bufs[4][512];
    static int which;
    char *p = bufs[which++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static int exists(const char *name) { return access(path_in(name), F_OK) == 0; }

/* 1 while a checkpoint is being written (its temporary exists) */
static int tmp_present(void) {
    DIR *d = opendir(dir);
    int found = 0;
    for (struct dirent *e; d && !found && (e = readdir(d));) found = strncmp(e->d_name, "c.st.tmp.", 9) == 0;
    if (d) closedir(d);
    return found;
}

/* 1 once the child has exited; it stays a zombie (WNOWAIT) until waitpid, so its pid cannot be
 * reused by another process and the kill below can only ever reach our own child */
static int ended(pid_t pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

/* the training run, in the background: its pid */
static pid_t start_train(const char *extra) {
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir)) _exit(126);
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "exec ./exe train --synthetic --steps %d --seed 7 --checkpoint c.st --checkpoint-every 1 --save w.st "
                 "%s > run_out.txt 2> run_err.txt",
                 STEPS, extra);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void test_kills(void) {
    /* the uninterrupted run, timed: the moments are drawn from its span */
    double t0 = now_s();
    pid_t pid = start_train("");
    int st;
    waitpid(pid, &st, 0);
    double span = now_s() - t0;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(sh("mv c.st straight_c.st && mv w.st straight_w.st") == 0);
    uint64_t rng = 15;
    int mid_write = 0, at_last_step = 0;
    int finished = 0; /* draws that came after the run's end: drawn again */
    for (int k = 0; k < KILLS && finished < 3 * KILLS; k++) {
        sh("rm -f c.st w.st c.st.tmp.* w.st.tmp.*");
        pid = start_train("");
        /* from the first checkpoint on (before it there is nothing to resume), a seeded moment;
         * every other kill aims at a write: as soon as a temporary is seen */
        double start = now_s();
        while (!exists("c.st") && !ended(pid) && now_s() - start < 60) usleep(200);
        double wait = rt_uniform01(&rng) * span * 0.9;
        if (k % 2) { /* polled every 20 us, sleeping: the run keeps its core on a loaded machine */
            wait = 0;
            long skip = (long)(rt_uniform01(&rng) * STEPS / 2); /* writes let by first */
            while (!ended(pid) && now_s() - start < 60) {
                if (tmp_present()) {
                    if (skip-- == 0) break;
                    while (tmp_present()) usleep(20);
                }
                usleep(20);
            }
        }
        usleep((useconds_t)(wait * 1e6));
        int killed = kill(pid, SIGKILL) == 0;
        waitpid(pid, &st, 0);
        killed = killed && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
        if (!killed) {
            finished++, k--;
            continue;
        }
        mid_write += sh("ls | grep -q '\\.tmp\\.'") == 0;
        /* the last checkpoint verifies */
        rt_tensor_set set;
        char err[1200];
        int ok = rt_safetensors_read_checked(path_in("c.st"), 1, &set, err, sizeof err) == 0;
        CHECK_MSG(ok, "kill %d (%.3f s in): %s", k, wait, err);
        const rt_tensor *step = ok ? rt_tensor_set_find(&set, "checkpoint.step") : NULL;
        long at = step ? (long)*(const int64_t *)step->data : -1;
        if (ok) rt_tensor_set_free(&set);
        /* it resumes, and ends with the uninterrupted run's bytes */
        int rc = sh("./exe train --synthetic --steps %d --seed 7 --checkpoint c.st --checkpoint-every 1 --save w.st "
                    "--resume c.st",
                    STEPS);
        at_last_step += at == STEPS;
        CHECK_MSG(rc == 0 && (strstr(out_text, "resuming from c.st at step") || strstr(out_text, "nothing left to train")),
                  "kill %d at step %ld: resume exit %d: %s", k, at, rc, err_text);
        CHECK_MSG(sh("cmp w.st straight_w.st && cmp c.st straight_c.st") == 0,
                  "kill %d (checkpoint at step %ld): the resumed run differs from the uninterrupted one", k, at);
        CHECK_MSG(sh("ls | grep -q '\\.tmp\\.\\|\\.probe\\.'") == 1, "kill %d: a temporary file is left", k);
    }
    CHECK_MSG(finished < 3 * KILLS, "%d of the moments drawn came after the run's end", finished);
    fprintf(stderr, "%d kills over a %.2f s run of %d steps (%d moments drawn again: the run had ended): %d during a "
            "write (a .tmp. file left, then removed), %d with the checkpoint at the last step\n",
            KILLS, span, STEPS, finished, mid_write, at_last_step);
}

/* every header byte, and three bytes of each tensor, flipped one at a time */
static void test_flips(void) {
    unsigned char *buf;
    size_t size;
    char err[1200];
    if (rt_file_read(path_in("straight_c.st"), &buf, &size, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    rt_tensor_set set;
    CHECK(rt_safetensors_parse_checked(buf, size, "c.st", 1, &set, err, sizeof err) == 0);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    size_t body = 8 + (size_t)hlen;
    int tried = 0, refused = 0, named = 0;
    for (size_t pos = 0; pos < size; pos++) {
        int tensor = -1;
        size_t off = body;
        for (int t = 0; t < set.count && pos >= body; t++) {
            size_t n = set.tensors[t].nbytes;
            if (pos >= off && pos < off + n && (pos == off || pos == off + n / 2 || pos == off + n - 1)) tensor = t;
            off += n;
        }
        if (pos >= body && tensor < 0) continue;
        buf[pos] ^= 0x04;
        rt_tensor_set bad;
        char msg[1200];
        int rc = rt_safetensors_parse_checked(buf, size, "c.st", 1, &bad, msg, sizeof msg);
        buf[pos] ^= 0x04;
        tried++;
        if (rc == 0) {
            rt_tensor_set_free(&bad);
            CHECK_MSG(0, "byte %zu flipped: accepted", pos);
            continue;
        }
        refused++;
        char want[300];
        if (tensor >= 0) snprintf(want, sizeof want, "tensor '%s' is damaged", set.tensors[tensor].name);
        int ok = tensor >= 0 ? strstr(msg, want) != NULL : strstr(msg, "metadata") || strstr(msg, "header");
        named += ok;
        CHECK_MSG(ok, "byte %zu (%s) flipped: %s", pos, tensor >= 0 ? set.tensors[tensor].name : "header", msg);
    }
    fprintf(stderr, "%d single-bit flips (%zu header bytes, 3 in each of %d tensors): %d refused, %d naming the "
            "damaged part\n", tried, body, set.count, refused, named);
    /* through the executable */
    size_t some[] = {5, body / 2, body + 3, size - 2};
    for (size_t i = 0; i < sizeof some / sizeof some[0]; i++) {
        buf[some[i]] ^= 0x04;
        FILE *f = fopen(path_in("bad.st"), "wb");
        CHECK(f && fwrite(buf, 1, size, f) == size && fclose(f) == 0);
        buf[some[i]] ^= 0x04;
        int rc = sh("./exe train --synthetic --steps %d --seed 7 --resume bad.st --save never.st", STEPS);
        CHECK_MSG(rc == 1 && strstr(err_text, "damaged") && !exists("never.st"), "byte %zu: exit %d: %s", some[i], rc,
                  err_text);
    }
    rt_tensor_set_free(&set);
    free(buf);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_faults MODEL.yaml\n");
        return 2;
    }
    const char *deitc = test_env("DEITC_BIN");
    setenv("ASAN_OPTIONS", "exitcode=86", 0);
    setenv("UBSAN_OPTIONS", "halt_on_error=1:exitcode=87", 0);
    setenv("DEITC_GEMM_THREADS", "1", 0);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/deitc_faults_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return 1;
    snprintf(exe, sizeof exe, "%s/exe", dir);
    double t0 = now_s();
    /* a compile killed earlier left exe.tmp.PID (of a process that is gone): this compile removes it */
    pid_t gone = fork();
    if (gone == 0) _exit(0);
    waitpid(gone, NULL, 0);
    char stale[64];
    snprintf(stale, sizeof stale, "exe.tmp.%d", (int)gone);
    FILE *sf = fopen(path_in(stale), "w");
    if (sf) fclose(sf);
    char z[61];
    memset(z, '0', 60);
    z[60] = 0;
    if (sh("'%s' compile '%s' --target emu -D img_size=%s32 -D patch_size=%s8 -D embed_dim=%s32 -D depth=%s1 "
           "-D num_heads=%s2 -D num_classes=%s3 -D in_chans=%s3 -D mlp_ratio=%s2 --batch 4 -o exe",
           deitc, argv[1], z, z, z, z, z, z, z, z) != 0) {
        fprintf(stderr, "compile failed: %s\n", err_text);
        return 1;
    }
    CHECK_MSG(!exists(stale), "%s left beside the executable", stale);
    double t1 = now_s();
    test_kills();
    double t2 = now_s();
    test_flips();
    fprintf(stderr, "times: compile %.1f s, kills and resumes %.1f s, flips %.1f s\n", t1 - t0, t2 - t1, now_s() - t2);
    /* the name, longer than 512 bytes, reads back as JSON */
    if (access("/usr/bin/python3", X_OK) == 0) {
        int rc = sh("/usr/bin/python3 -c \"\nimport json, struct\nb = open('straight_c.st', 'rb').read()\n"
                    "m = json.loads(b[8:8 + struct.unpack('<Q', b[:8])[0]])['__metadata__']\n"
                    "assert len(m['model']) > 512 and m['model'].endswith('mlp_ratio-%s2'), m['model']\n"
                    "assert m['deitc.run.steps'] == '%d'\nprint('name', len(m['model']))\n\"",
                    z, STEPS);
        CHECK_MSG(rc == 0 && strstr(out_text, "name "), "python3: %s%s", out_text, err_text);
    }
    if (!test_failures) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    } else {
        fprintf(stderr, "left %s for inspection\n", dir);
    }
    return test_result();
}
