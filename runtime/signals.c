/* signals.c: Ctrl-C and SIGTERM during `EXE train`. The first SIGINT or SIGTERM only raises a
 * flag: the step under way finishes, the loop writes a checkpoint (atomically: a temporary file
 * renamed over the old one) and prints how to resume, and the run exits 130 (SIGINT) or 143
 * (SIGTERM), as a shell reports a process killed by them. A second one exits at once (_exit):
 * a checkpoint being written then is left as it was (its temporary file is removed by the next
 * write), never half-written.
 */
#include "runtime/exe_internal.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t pending; /* the first signal's number, 0 when none */
static struct sigaction old_int, old_term;
static int installed;

static void on_signal(int sig) {
    if (pending) { /* the second: at once, as the user asked twice */
        static const char msg[] = "\ninterrupted again: exiting now (the last checkpoint is as it was)\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + sig);
    }
    pending = sig;
    static const char msg[] = "\ninterrupt: finishing this step, then writing a checkpoint (again to quit now)\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
}

void rt_exe_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    pending = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    installed = 1;
}

void rt_exe_signals_restore(void) {
    if (!installed) return;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    installed = 0;
}

int rt_exe_signal_pending(void) { return pending; }

/* s for a POSIX shell: as is when safe, else in single quotes */
static void shell_word(FILE *f, const char *s) {
    if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == strlen(s)) {
        fputs(s, f);
        return;
    }
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputs("'\\''", f);
        else fputc(*s, f);
    }
    fputc('\'', f);
}

void rt_exe_print_resume(FILE *f, int argc, char **argv, const char *checkpoint) {
    fprintf(f, "resume with:");
    for (int i = 0; i < argc; i++) {
        /* the checkpoint holds the weights: drop --init, --partial-init and an earlier --resume */
        if (i > 0 && (!strcmp(argv[i], "--init") || !strcmp(argv[i], "--resume"))) {
            i++;
            continue;
        }
        if (i > 0 && !strcmp(argv[i], "--partial-init")) continue;
        fputc(' ', f);
        shell_word(f, argv[i]);
    }
    fputs(" --resume ", f);
    shell_word(f, checkpoint);
    fputc('\n', f);
}
