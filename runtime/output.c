/* output.c: how the runtime and the compiler write output files, and the checks on their paths
 * before any work is done.
 *
 *   - A new path or a regular file is written to PATH.tmp.PID beside it and renamed over PATH
 *     once complete: an interrupted or failed write leaves the old file (or none), never half a
 *     file. PATH.tmp.N files of processes that no longer exist (a kill -9) are removed first.
 *   - Anything else that exists (a device such as /dev/null, a FIFO) is written in place: a
 *     rename would replace the node itself. Write errors (ENOSPC from /dev/full) are reported.
 *   - A directory is refused.
 *   - An output that is the same file (device and inode) as one of the inputs is refused before
 *     anything is read or written, naming both.
 *   - File names are printed with control characters escaped (rt_path_show).
 */
#include "runtime/rt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *rt_path_show(const char *path, char *buf, size_t size) {
    if (!path) return "(null)";
    size_t k = 0;
    for (const unsigned char *s = (const unsigned char *)path; *s && k + 5 < size; s++) {
        if (*s < 0x20 || *s == 0x7f) {
            static const char esc[] = "\a\b\t\n\v\f\r", let[] = "abtnvfr";
            const char *e = strchr(esc, *s);
            k += (size_t)(e ? snprintf(buf + k, size - k, "\\%c", let[e - esc])
                            : snprintf(buf + k, size - k, "\\x%02x", *s));
        } else if (*s == '\\') {
            buf[k++] = '\\';
            buf[k++] = '\\';
        } else {
            buf[k++] = (char)*s;
        }
    }
    if (size) buf[k < size ? k : size - 1] = 0;
    return buf;
}

/* ---- abandoned temporaries ------------------------------------------------------------------- */

void rt_tmp_remove_stale(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) : 0, blen = strlen(base);
    char *dirname = malloc(dlen + 2);
    if (!dirname || !blen) {
        free(dirname);
        return;
    }
    if (slash) {
        memcpy(dirname, path, dlen);
        dirname[dlen] = 0;
        if (!dlen) strcpy(dirname, "/");
    } else {
        strcpy(dirname, ".");
    }
    DIR *d = opendir(dirname);
    if (!d) {
        free(dirname);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (strncmp(n, base, blen) != 0) continue;
        const char *tail = n + blen;
        if (strncmp(tail, ".tmp.", 5) == 0) tail += 5;
        else if (strncmp(tail, ".probe.", 7) == 0) tail += 7;
        else continue;
        if (!*tail || strspn(tail, "0123456789") != strlen(tail) || strlen(tail) > 9) continue;
        long pid = strtol(tail, NULL, 10);
        if (pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive (or not ours to judge) */
        size_t len = strlen(dirname) + strlen(n) + 2;
        char *full = malloc(len);
        if (!full) break;
        snprintf(full, len, "%s/%s", dirname, n);
        struct stat st;
        if (lstat(full, &st) == 0 && S_ISREG(st.st_mode)) unlink(full);
        free(full);
    }
    closedir(d);
    free(dirname);
}

/* ---- writing ----------------------------------------------------------------------------------- */

int rt_output_check(const char *path, char *err, size_t errsize) {
    char shown[1024];
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return rt_errorf(err, errsize, "%s: is a directory", rt_path_show(path, shown, sizeof shown));
        if (!S_ISREG(st.st_mode)) { /* written in place: it must take writes */
            if (access(path, W_OK))
                return rt_errorf(err, errsize, "cannot write %s: %s", rt_path_show(path, shown, sizeof shown),
                                 strerror(errno));
            return 0;
        }
    }
    /* a new or regular file: the temporary beside it must be creatable */
    rt_tmp_remove_stale(path);
    size_t n = strlen(path) + 32;
    char *probe = malloc(n);
    if (!probe) abort();
    snprintf(probe, n, "%s.probe.%d", path, (int)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
    int rc = fd >= 0 ? 0
                     : rt_errorf(err, errsize, "cannot write %s: %s", rt_path_show(path, shown, sizeof shown),
                                 strerror(errno));
    if (fd >= 0) {
        close(fd);
        unlink(probe);
    }
    free(probe);
    return rc;
}

int rt_output_open(rt_output *o, const char *path, char *err, size_t errsize) {
    memset(o, 0, sizeof *o);
    o->tracked = -1;
    char shown[1024];
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (exists && S_ISDIR(st.st_mode))
        return rt_errorf(err, errsize, "%s: is a directory", rt_path_show(path, shown, sizeof shown));
    o->path = strdup(path);
    if (!o->path) abort();
    if (exists && !S_ISREG(st.st_mode)) { /* a device or FIFO: in place, never replaced */
        o->f = fopen(path, "wb");
        if (!o->f) {
            int e = errno;
            rt_output_abort(o);
            return rt_errorf(err, errsize, "%s: cannot write: %s", rt_path_show(path, shown, sizeof shown), strerror(e));
        }
        return 0;
    }
    rt_tmp_remove_stale(path);
    size_t n = strlen(path) + 32;
    o->tmp = malloc(n);
    if (!o->tmp) abort();
    snprintf(o->tmp, n, "%s.tmp.%d", path, (int)getpid());
    int fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC, exists ? (st.st_mode & 07777) : 0666);
    o->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!o->f) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(o->tmp);
        }
        rt_output_abort(o);
        return rt_errorf(err, errsize, "%s: cannot write: %s", rt_path_show(path, shown, sizeof shown), strerror(e));
    }
    if (exists) fchmod(fd, st.st_mode & 07777); /* the umask aside, a rewritten file keeps its mode */
    o->tracked = rt_tmp_track(o->tmp, 0);
    return 0;
}

int rt_output_commit(rt_output *o, char *err, size_t errsize) {
    char shown[1024];
    int ok = fflush(o->f) == 0 && !ferror(o->f);
    int e = errno;
    if (fclose(o->f) != 0 && ok) ok = 0, e = errno;
    o->f = NULL;
    if (ok && o->tmp && rename(o->tmp, o->path) != 0) ok = 0, e = errno;
    if (!ok) {
        rt_errorf(err, errsize, "%s: write failed: %s", rt_path_show(o->path, shown, sizeof shown), strerror(e));
        rt_output_abort(o);
        return -1;
    }
    rt_tmp_untrack(o->tracked);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    return 0;
}

void rt_output_abort(rt_output *o) {
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    rt_tmp_untrack(o->tracked);
    free(o->tmp);
    free(o->path);
    memset(o, 0, sizeof *o);
    o->tracked = -1;
}

/* ---- outputs that are inputs ------------------------------------------------------------------ */

int rt_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The absolute path a file has or would have (its folder resolved), malloc'ed; NULL if the
 * folder does not exist. */
static char *canonical(const char *path) {
    char *full = realpath(path, NULL);
    if (full) return full;
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!dir) abort();
    char *rdir = realpath(dir, NULL);
    free(dir);
    if (!rdir) return NULL;
    const char *base = slash ? slash + 1 : path;
    size_t n = strlen(rdir) + strlen(base) + 2;
    full = malloc(n);
    if (!full) abort();
    snprintf(full, n, "%s/%s", rdir, base);
    free(rdir);
    return full;
}

/* 1 when outputs a and b are one file: the same inode, or the same path not yet created. */
static int same_output(const char *a, const char *b) {
    if (rt_same_file(a, b)) return 1;
    struct stat st;
    if (stat(a, &st) == 0 || stat(b, &st) == 0) return 0; /* one exists: only the inode says */
    char *ca = canonical(a), *cb = canonical(b);
    int same = ca && cb && strcmp(ca, cb) == 0;
    free(ca);
    free(cb);
    return same;
}

int rt_paths_check(const rt_named_path *outputs, int nout, const rt_named_path *inputs, int nin, char *err,
                   size_t errsize) {
    char a[1024], b[1024];
    for (int i = 0; i < nout; i++) {
        const char *o = outputs[i].path;
        struct stat so;
        if (!o) continue;
        int regular_or_new = stat(o, &so) != 0 || S_ISREG(so.st_mode); /* /dev/null twice is fine */
        for (int j = 0; j < nin + nout && regular_or_new; j++) {
            const rt_named_path *x = j < nin ? &inputs[j] : &outputs[j - nin];
            if (!x->path || (j >= nin && j - nin <= i)) continue;
            if (j < nin ? rt_same_file(o, x->path) : same_output(o, x->path))
                return rt_errorf(err, errsize, "%s %s is the same file as %s %s: refusing to overwrite %s",
                                 outputs[i].what, rt_path_show(o, a, sizeof a), x->what,
                                 rt_path_show(x->path, b, sizeof b), j < nin ? "an input" : "one output with another");
        }
    }
    return 0;
}

/* ---- reading ------------------------------------------------------------------------------------ */

int rt_file_read(const char *path, unsigned char **buf, size_t *size, char *err, size_t errsize) {
    /* through input.c: a FIFO or device is refused at once, never waited on */
    void *b = NULL;
    *buf = NULL;
    *size = 0;
    if (rt_input_read(path, 0, SIZE_MAX / 2, &b, size, err, errsize)) return -1;
    *buf = b;
    return 0;
}

/* ---- messages ------------------------------------------------------------------------------------ */

void rt_message_escape(const char *msg, char *const *args, int nargs, rt_strbuf *out) {
    char shown[1024];
    for (const char *s = msg; *s;) {
        int matched = 0;
        for (int i = 0; i < nargs && !matched; i++) { /* an argument with control characters, escaped */
            const char *a = args[i];
            size_t n = a ? strlen(a) : 0;
            int control = 0;
            for (size_t k = 0; k < n && !control; k++) control = (unsigned char)a[k] < 0x20 || a[k] == 0x7f;
            if (control && strncmp(s, a, n) == 0) {
                rt_sb_puts(out, rt_path_show(a, shown, sizeof shown));
                s += n;
                matched = 1;
            }
        }
        if (matched) continue;
        unsigned char c = (unsigned char)*s++;
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) rt_sb_printf(out, "\\x%02x", c);
        else rt_sb_putn(out, (const char *)&c, 1);
    }
}
