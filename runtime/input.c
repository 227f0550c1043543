/* input.c: opening and reading the files deitc and the executables take as input (models,
 * weights, datasets, images, ONNX external data), whoever wrote them.
 *
 * Invariants: an input is opened non-blocking and checked to be a regular file before a byte
 * is read, so a FIFO, a device or a directory is refused with a message instead of blocking
 * (the flag is cleared again once the file is known to be regular); a whole-file read
 * allocates the size fstat reports, never a size the file's contents claim, and an
 * allocation that fails is an error message, never an abort.
 */
#include "runtime/rt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *rt_file_kind(unsigned mode) {
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symbolic link";
    default: return "of an unknown kind";
    }
}

int rt_input_open(const char *path, int flags, int64_t *size, char *err, size_t errsize) {
    int oflags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | (flags & RT_INPUT_NOFOLLOW ? O_NOFOLLOW : 0);
    int fd = open(path, oflags);
    if (fd < 0) {
        int e = errno;
        struct stat st;
        if ((flags & RT_INPUT_NOFOLLOW) && e == ELOOP && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
            return rt_errorf(err, errsize, "%s: is a symbolic link, which is not followed here", path);
        return rt_errorf(err, errsize, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rt_errorf(err, errsize, "%s: cannot read its size: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return rt_errorf(err, errsize, "%s: not a regular file (it is %s)", path, rt_file_kind(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        return rt_errorf(err, errsize, "%s: fcntl: %s", path, strerror(e));
    }
    if (size) *size = (int64_t)st.st_size;
    return fd;
}

FILE *rt_input_fopen(const char *path, int flags, int64_t *size, char *err, size_t errsize) {
    int fd = rt_input_open(path, flags, size, err, errsize);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        rt_errorf(err, errsize, "%s: cannot open: %s", path, strerror(e));
    }
    return f;
}

int rt_input_pread(int fd, const char *path, void *buf, size_t n, int64_t offset, char *err, size_t errsize) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(offset + (int64_t)got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return rt_errorf(err, errsize, "%s: read error: %s", path, strerror(errno));
        if (k == 0)
            return rt_errorf(err, errsize, "%s: ends after %lld bytes (it was changed while being read?)", path,
                             (long long)(offset + (int64_t)got));
        got += (size_t)k;
    }
    return 0;
}

int rt_input_read(const char *path, int flags, size_t max_bytes, void **buf, size_t *len, char *err,
                  size_t errsize) {
    *buf = NULL;
    *len = 0;
    int64_t size = 0;
    int fd = rt_input_open(path, flags, &size, err, errsize);
    if (fd < 0) return -1;
    if (size < 0 || (uint64_t)size > max_bytes) {
        close(fd);
        return rt_errorf(err, errsize, "%s: %lld bytes, more than the %zu bytes allowed", path,
                         (long long)size, max_bytes);
    }
    void *b = malloc((size_t)size + 1); /* +1: room for a terminating NUL, and never malloc(0) */
    if (!b) {
        close(fd);
        return rt_errorf(err, errsize, "%s: out of memory reading its %lld bytes", path, (long long)size);
    }
    int rc = rt_input_pread(fd, path, b, (size_t)size, 0, err, errsize);
    close(fd);
    if (rc) {
        free(b);
        return -1;
    }
    ((char *)b)[size] = 0;
    *buf = b;
    *len = (size_t)size;
    return 0;
}
