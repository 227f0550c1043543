/* test_tmp_cleanup.c: a temporary file or folder tracked with rt_tmp_track is removed when the
 * process dies of SIGINT / SIGTERM / SIGHUP, and the process still dies of that signal; an
 * untracked path stays; a signal the process ignores stays ignored. Each case runs in a child. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/rt.h"
#include "tests/harness.h"

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void touch(const char *p) {
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
}

/* forks; the child makes FILE and DIR/inner, tracks them as asked, then raises sig.
 * Returns the child's wait status. */
static int child(const char *file, const char *dir, int track_file, int track_dir, int untrack, int ignore, int sig) {
    pid_t pid = fork();
    if (pid == 0) {
        char inner[600];
        touch(file);
        mkdir(dir, 0755);
        snprintf(inner, sizeof inner, "%s/inner", dir);
        touch(inner);
        /* start from the default action, whatever the test runner left (a background job
         * inherits SIGINT ignored) */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        if (ignore) signal(sig, SIG_IGN);
        int hf = track_file ? rt_tmp_track(file, 0) : -1, hd = track_dir ? rt_tmp_track(dir, 1) : -1;
        if ((track_file && hf < 0) || (track_dir && hd < 0)) _exit(3);
        if (untrack) {
            rt_tmp_untrack(hf);
            rt_tmp_untrack(hd);
        }
        raise(sig);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

int main(void) {
    char dir[400], file[500], sub[500];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%.300s/deitc_tmpclean_XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(file, sizeof file, "%s/out.safetensors.tmp.1", dir);
    snprintf(sub, sizeof sub, "%s/deitc-work", dir);

    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        int st = child(file, sub, 1, 1, 0, 0, sigs[i]);
        CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == sigs[i], "signal %d: the child did not die of it", sigs[i]);
        CHECK_MSG(!exists(file) && !exists(sub), "signal %d: a tracked path was left behind", sigs[i]);
    }
    /* untracked: left alone, and the default action still kills */
    int st = child(file, sub, 1, 1, 1, 0, SIGTERM);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    CHECK_MSG(exists(file) && exists(sub), "an untracked path was removed");
    /* an ignored signal stays ignored: the child lives on and removes nothing */
    st = child(file, sub, 1, 1, 0, 1, SIGHUP);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "an ignored SIGHUP was acted on (status %d)", st);
    CHECK(exists(file) && exists(sub));
    CHECK(test_sh("rm -rf '%s'", dir) == 0);
    return test_result();
}
