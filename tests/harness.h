/* harness.h: the few-line test harness every C test uses. CHECK records a failure with
 * file:line and goes on; a test's main returns test_result(). Paths come from the
 * environment ctest sets: DEITC_TESTDATA, DEITC_SOURCE_DIR, DEITC_BIN. */
#ifndef DEITC_TEST_HARNESS_H
#define DEITC_TEST_HARNESS_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static int test_failures;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
            test_failures++;                                                           \
        }                                                                              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                           \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
            test_failures++;                                                           \
        }                                                                              \
    } while (0)

static inline const char *test_env(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "test environment variable %s is not set (run through ctest)\n", name);
        exit(2);
    }
    return v;
}

/* relative L2 error ||a-b|| / ||b|| (absolute when b is all zero); NaN anywhere gives
 * INFINITY, so that a comparison `e < tol` can never pass on NaN */
static inline double test_rel_l2(const float *a, const float *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    double e = den > 0 ? sqrt(num / den) : sqrt(num);
    return isnan(e) ? INFINITY : e;
}

/* Runs a shell command (printf-style), echoed to stderr; returns its exit status (128 when it
 * did not exit normally). */
static inline int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int test_sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "+ %s\n", cmd);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Reads up to size-1 bytes of the file at path into buf, NUL-terminated ("" when it cannot). */
static inline void test_slurp(const char *path, char *buf, size_t size) {
    buf[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = 0;
    fclose(f);
}

/* Runs the shell command cmd in folder dir with its stdout and stderr in dir/out.txt and
 * dir/err.txt (unless cmd redirects them itself), read back into out and err. Returns the
 * exit status, or 128 + the signal that ended it; above `quiet_upto` the command and both
 * outputs are printed to stderr. */
static inline int test_sh_capture(const char *dir, const char *cmd, char *out, size_t out_size, char *err,
                                  size_t err_size, int quiet_upto) {
    char line[12288], path[1024];
    snprintf(line, sizeof line, "cd '%s' && { %s ; } > out.txt 2> err.txt", dir, cmd);
    int st = system(line);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    test_slurp(path, out, out_size);
    snprintf(path, sizeof path, "%s/err.txt", dir);
    test_slurp(path, err, err_size);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (rc > quiet_upto) fprintf(stderr, "'%s' exited %d\nstdout: %s\nstderr: %s\n", cmd, rc, out, err);
    return rc;
}

static inline int test_result(void) {
    if (test_failures) fprintf(stderr, "%d check(s) failed\n", test_failures);
    return test_failures ? 1 : 0;
}
#endif
