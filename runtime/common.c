/* common.c: the small helpers every runtime file (and the compiler, through deitc_rt) uses:
 * error formatting into a caller's buffer, the splitmix64 random stream behind weight init,
 * shuffling and synthetic data, and the removal of temporary files on a fatal signal. */
#include "runtime/plan.h"
#include "runtime/rt.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

int rt_errorf(char *err, size_t errsize, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
    return -1;
}

void rt_opt_fill(double slots[RT_OPT_SLOTS], double lr, double wd, double beta1, double beta2, long t) {
    slots[RT_OPT_LR] = lr;
    slots[RT_OPT_WEIGHT_DECAY] = wd;
    slots[RT_OPT_BIAS_CORR1] = 1 - pow(beta1, (double)t);
    slots[RT_OPT_BIAS_CORR2] = 1 - pow(beta2, (double)t);
    slots[RT_OPT_GRAD_SCALE] = 1;
    slots[RT_OPT_SKIP] = 0;
}

int rt_loss_scale_parse(const char *opt, const char *s, int *mode, double *scale, char *err, size_t errsize) {
    if (s && !strcmp(s, "none")) *mode = RT_LOSS_SCALE_NONE, *scale = 1;
    else if (s && !strcmp(s, "dynamic")) *mode = RT_LOSS_SCALE_DYNAMIC, *scale = 0;
    else if (!rt_loss_scale_value(s, scale)) *mode = RT_LOSS_SCALE_STATIC;
    else
        return rt_errorf(err, errsize, "%s expects none, dynamic or a static scale (a decimal number > 0, at most "
                         "3.4e38), got '%s'", opt, s ? s : "");
    return 0;
}

int rt_loss_scale_value(const char *s, double *scale) {
    double v = s && rt_is_decimal(s) ? strtod(s, NULL) : NAN;
    if (!(v > 0) || !((float)v <= 3.402823466e38f) || (float)v == 0) return -1;
    *scale = v;
    return 0;
}

int rt_env_flag(const char *name, int *on, char *err, size_t errsize) {
    const char *v = getenv(name);
    *on = 0;
    if (!v || !*v || !strcmp(v, "0") || !strcasecmp(v, "false")) return 0;
    if (!strcmp(v, "1") || !strcasecmp(v, "true")) {
        *on = 1;
        return 0;
    }
    return rt_errorf(err, errsize, "%s=%s: expected 0, 1, true or false", name, v);
}

int rt_is_decimal(const char *s) {
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    size_t a = strspn(p, "0123456789");
    p += a;
    size_t b = 0;
    if (*p == '.') b = strspn(++p, "0123456789"), p += b;
    if (!a && !b) return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        size_t e = strspn(p, "0123456789");
        if (!e) return 0;
        p += e;
    }
    return *p == 0;
}

uint64_t rt_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rt_uniform01(uint64_t *state) { return ((double)(rt_splitmix64(state) >> 11) + 0.5) * 0x1p-53; }

/* ---- temporary files removed on SIGINT / SIGTERM / SIGHUP ----------------------------------- */

#define TMP_SLOTS 8
static struct {
    char path[4096];
    int is_dir;
    volatile sig_atomic_t used;
} tmp_slots[TMP_SLOTS];
static const int tmp_signals[] = {SIGINT, SIGTERM, SIGHUP};
static int tmp_handlers_installed;

/* Only async-signal-safe calls: unlink, rmdir, fork, execve, waitpid, signal, raise. */
static void remove_tmp_and_die(int sig) {
    for (int i = 0; i < TMP_SLOTS; i++) {
        if (!tmp_slots[i].used) continue;
        if (!tmp_slots[i].is_dir) {
            unlink(tmp_slots[i].path);
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            char *const argv[] = {"rm", "-rf", "--", tmp_slots[i].path, NULL};
            char *const envp[] = {NULL};
            execve("/bin/rm", argv, envp);
            _exit(127);
        }
        if (pid > 0) waitpid(pid, NULL, 0);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

int rt_tmp_track(const char *path, int is_dir) {
    if (!tmp_handlers_installed) {
        tmp_handlers_installed = 1;
        for (size_t k = 0; k < sizeof tmp_signals / sizeof tmp_signals[0]; k++) {
            struct sigaction old, sa;
            if (sigaction(tmp_signals[k], NULL, &old) || old.sa_handler != SIG_DFL) continue;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = remove_tmp_and_die;
            sigemptyset(&sa.sa_mask);
            for (size_t j = 0; j < sizeof tmp_signals / sizeof tmp_signals[0]; j++)
                sigaddset(&sa.sa_mask, tmp_signals[j]);
            sigaction(tmp_signals[k], &sa, NULL);
        }
    }
    if (strlen(path) >= sizeof tmp_slots[0].path) return -1;
    for (int i = 0; i < TMP_SLOTS; i++) {
        if (tmp_slots[i].used) continue;
        memcpy(tmp_slots[i].path, path, strlen(path) + 1);
        tmp_slots[i].is_dir = is_dir;
        tmp_slots[i].used = 1;
        return i;
    }
    return -1;
}

void rt_tmp_untrack(int handle) {
    if (handle >= 0 && handle < TMP_SLOTS) tmp_slots[handle].used = 0;
}
