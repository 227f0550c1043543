/* dist.c: the ranks of a data-parallel run: who this process is (the launcher's environment),
 * how the ranks meet (TCP to rank 0 at MASTER_ADDR:MASTER_PORT, or a port rank 0 picks and
 * announces over MPI), and the host collectives over those connections.
 *
 * Wire protocol (a star around rank 0; every socket blocking, every wait bounded by poll):
 *   hello    rank r -> 0: {magic, rank, world, pid, host[64]}; 0 answers each with a frame
 *   collective: each rank r > 0 sends its payload (size known to both sides); rank 0 combines
 *            its own and then ranks 1..W-1 in that order, and sends every rank a frame:
 *            {FRAME_OK, bytes} + the result, or {FRAME_ABORT, n} + a message naming the rank
 *            it lost, so every survivor says which rank died rather than "rank 0 is gone".
 * A rank that dies closes its socket: the others see it at once (EOF, reset). One that hangs
 * is given up on after DEITC_DIST_TIMEOUT seconds (default 300).
 */
#include "runtime/dist.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { HELLO_MAGIC = 0x64647031, FRAME_OK = 1, FRAME_ABORT = 2, HOST_LEN = 64 };

typedef struct {
    uint32_t magic, rank, world, pid;
    char host[HOST_LEN];
} hello_msg;

typedef struct {
    int fd;
    uint32_t pid;
    char host[HOST_LEN];
} peer;

struct rt_dist {
    rt_dist_env env;
    int fd0;            /* rank > 0: the socket to rank 0 */
    peer *peers;        /* rank 0: [world], peers[0] unused */
    int mpi;            /* MPI_Init was called */
    unsigned char *tmp; /* rank 0: a peer's payload */
    size_t tmp_size;
    char err[1024];
    void *grads;        /* dist_grads.c's state (rt_dist_attach) */
};

/* ---- the environment ------------------------------------------------------------------------ */

/* -1: unset; -2: not a number in [0, max] */
static long env_long(const char *name, long max) {
    const char *v = getenv(name);
    if (!v || !*v) return -1;
    if (!rt_is_decimal(v) || strchr(v, '.') || strchr(v, '-') || strlen(v) > 9) return -2;
    long x = strtol(v, NULL, 10);
    return x > max ? -2 : x;
}

static int read_triple(rt_dist_env *e, const char *src, const char *rank, const char *world, const char *local,
                       char *err, size_t errsize) {
    long r = env_long(rank, 1 << 20), w = env_long(world, 1 << 20), l = local ? env_long(local, 1 << 20) : -1;
    if (r == -2 || w == -2 || l == -2)
        return rt_errorf(err, errsize, "launcher environment (%s): %s=%s, %s=%s must be non-negative integers", src,
                         rank, getenv(rank) ? getenv(rank) : "", world, getenv(world) ? getenv(world) : "");
    if ((r < 0) != (w < 0))
        return rt_errorf(err, errsize, "launcher environment: %s is set but %s is not (set both, or neither)",
                         r < 0 ? world : rank, r < 0 ? rank : world);
    if (w < 1 || r >= w)
        return rt_errorf(err, errsize, "launcher environment (%s): rank %ld is not below the world size %ld", src, r, w);
    e->rank = (int)r;
    e->world = (int)w;
    e->local_rank = l >= 0 ? (int)l : -1;
    e->source = src;
    return 0;
}

int rt_dist_env_read(rt_dist_env *e, char *err, size_t errsize) {
    memset(e, 0, sizeof *e);
    e->world = 1;
    e->local_rank = -1;
    e->timeout_s = 300;
    const char *t = getenv("DEITC_DIST_TIMEOUT");
    if (t && *t) {
        double v = rt_is_decimal(t) ? strtod(t, NULL) : NAN;
        if (!(v > 0) || v > 1e6)
            return rt_errorf(err, errsize, "DEITC_DIST_TIMEOUT=%s: expected seconds, a number > 0", t);
        e->timeout_s = v;
    }
    int rc = 0;
    if (getenv("RANK") || getenv("WORLD_SIZE"))
        rc = read_triple(e, "RANK/WORLD_SIZE", "RANK", "WORLD_SIZE", "LOCAL_RANK", err, errsize);
    else if (getenv("OMPI_COMM_WORLD_SIZE"))
        rc = read_triple(e, "OMPI_COMM_WORLD_*", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                         "OMPI_COMM_WORLD_LOCAL_RANK", err, errsize);
    else if (getenv("PMI_SIZE"))
        rc = read_triple(e, "PMI_*", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", err, errsize);
    else if (getenv("SLURM_STEP_ID") && getenv("SLURM_STEP_NUM_TASKS")) /* inside srun, not the batch script */
        rc = read_triple(e, "SLURM_*", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", err, errsize);
    if (rc) return -1;
    const char *addr = getenv("MASTER_ADDR");
    long port = env_long("MASTER_PORT", 65535);
    if (port == -2 || port == 0)
        return rt_errorf(err, errsize, "MASTER_PORT=%s: expected a TCP port from 1 to 65535", getenv("MASTER_PORT"));
    if ((addr && *addr) != (port > 0))
        return rt_errorf(err, errsize, "launcher environment: set both MASTER_ADDR and MASTER_PORT, or neither "
                                       "(MASTER_%s is missing)", port > 0 ? "ADDR" : "PORT");
    e->master_addr = addr && *addr ? addr : NULL;
    e->master_port = port > 0 ? (int)port : 0;
    return 0;
}

/* ---- sockets ---------------------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *who(rt_dist *d, int r, char *buf, size_t size) {
    if (d->env.rank == 0 && r > 0 && d->peers && d->peers[r].pid)
        snprintf(buf, size, "rank %d (pid %u on %s)", r, d->peers[r].pid, d->peers[r].host);
    else
        snprintf(buf, size, "rank %d", r);
    return buf;
}

/* Waits for fd to be ready (POLLIN or POLLOUT) up to the timeout; -1 with d->err naming rank r. */
static int wait_fd(rt_dist *d, int fd, short events, int r, const char *doing) {
    double deadline = now_s() + d->env.timeout_s;
    for (;;) {
        struct pollfd p = {fd, events, 0};
        double left = deadline - now_s();
        int ms = left > 0 ? (int)(left * 1000) + 1 : 0;
        int n = poll(&p, 1, ms > 1000 ? 1000 : ms);
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR) {
            snprintf(d->err, sizeof d->err, "poll: %s", strerror(errno));
            return -1;
        }
        if (left <= 0) {
            char b[128];
            snprintf(d->err, sizeof d->err, "%s sent nothing for %g s while %s (DEITC_DIST_TIMEOUT): giving it up "
                     "as lost", who(d, r, b, sizeof b), d->env.timeout_s, doing);
            return -1;
        }
    }
}

static int send_all(rt_dist *d, int fd, const void *buf, size_t n, int r) {
    const unsigned char *p = buf;
    while (n) {
        if (wait_fd(d, fd, POLLOUT, r, "sending to it")) return -1;
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) {
            char b[128];
            snprintf(d->err, sizeof d->err, "lost %s: %s", who(d, r, b, sizeof b), strerror(errno));
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int recv_all(rt_dist *d, int fd, void *buf, size_t n, int r) {
    unsigned char *p = buf;
    while (n) {
        if (wait_fd(d, fd, POLLIN, r, "waiting for it")) return -1;
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) {
            char b[128];
            snprintf(d->err, sizeof d->err, "lost %s: %s", who(d, r, b, sizeof b),
                     k == 0 ? "it closed the connection (the process exited or was killed)" : strerror(errno));
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Rank 0, after losing a peer: tells every other rank which one (best effort), and keeps the
 * message. */
static void abort_all(rt_dist *d) {
    uint32_t hdr[2] = {FRAME_ABORT, (uint32_t)strlen(d->err)};
    for (int r = 1; r < d->env.world; r++) {
        if (d->peers[r].fd < 0) continue;
        if (send(d->peers[r].fd, hdr, sizeof hdr, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)sizeof hdr)
            (void)!send(d->peers[r].fd, d->err, hdr[1], MSG_NOSIGNAL | MSG_DONTWAIT);
        close(d->peers[r].fd);
        d->peers[r].fd = -1;
    }
}

/* Rank > 0: reads rank 0's frame header; an abort frame becomes d->err. */
static int read_frame(rt_dist *d, uint32_t expect_bytes) {
    uint32_t hdr[2];
    if (recv_all(d, d->fd0, hdr, sizeof hdr, 0)) return -1;
    if (hdr[0] == FRAME_ABORT && hdr[1] < sizeof d->err - 16) {
        char msg[1024] = "";
        if (recv_all(d, d->fd0, msg, hdr[1], 0)) return -1;
        msg[hdr[1]] = 0;
        snprintf(d->err, sizeof d->err, "rank 0 gave up: %.990s", msg);
        return -1;
    }
    if (hdr[0] != FRAME_OK || hdr[1] != expect_bytes) {
        snprintf(d->err, sizeof d->err, "rank 0 sent a malformed frame (type %u, %u bytes; expected %u): are all "
                 "ranks the same executable with the same options?", hdr[0], hdr[1], expect_bytes);
        return -1;
    }
    return 0;
}

static int send_frame(rt_dist *d, int r, const void *buf, uint32_t bytes) {
    uint32_t hdr[2] = {FRAME_OK, bytes};
    return send_all(d, d->peers[r].fd, hdr, sizeof hdr, r) || send_all(d, d->peers[r].fd, buf, bytes, r) ? -1 : 0;
}

/* ---- the collectives ------------------------------------------------------------------------ */

typedef void (*combine_fn)(void *acc, const void *x, size_t bytes, void *ctx);

/* The star: ranks > 0 send buf; rank 0 combines in rank order, then finish(acc) and sends the
 * result to every rank, which stores it in buf. Payloads over 4 GiB go in chunks. */
static int star(rt_dist *d, void *buf, size_t bytes, combine_fn combine, void (*finish)(void *, size_t, void *),
                void *ctx) {
    const size_t chunk_max = (size_t)1 << 30;
    for (size_t off = 0; off < bytes || (bytes == 0 && off == 0); off += chunk_max) {
        size_t n = bytes - off < chunk_max ? bytes - off : chunk_max;
        unsigned char *p = (unsigned char *)buf + off;
        if (d->env.rank > 0) {
            if (send_all(d, d->fd0, p, n, 0) || read_frame(d, (uint32_t)n) || recv_all(d, d->fd0, p, n, 0)) return -1;
        } else {
            if (n > d->tmp_size) {
                free(d->tmp);
                d->tmp = malloc(n);
                if (!d->tmp) abort();
                d->tmp_size = n;
            }
            for (int r = 1; r < d->env.world; r++) {
                if (recv_all(d, d->peers[r].fd, d->tmp, n, r)) {
                    abort_all(d);
                    return -1;
                }
                if (combine) combine(p, d->tmp, n, ctx);
            }
            if (finish) finish(p, n, ctx);
            for (int r = 1; r < d->env.world; r++)
                if (send_frame(d, r, p, (uint32_t)n)) {
                    abort_all(d);
                    return -1;
                }
        }
        if (bytes == 0) break;
    }
    return 0;
}

static void add_f64(void *acc, const void *x, size_t bytes, void *ctx) {
    (void)ctx;
    double *a = acc;
    const double *b = x;
    for (size_t i = 0; i < bytes / sizeof *a; i++) a[i] += b[i];
}

static void add_i64(void *acc, const void *x, size_t bytes, void *ctx) {
    (void)ctx;
    int64_t *a = acc;
    const int64_t *b = x;
    for (size_t i = 0; i < bytes / sizeof *a; i++) a[i] = (int64_t)((uint64_t)a[i] + (uint64_t)b[i]);
}

static void max_i32(void *acc, const void *x, size_t bytes, void *ctx) {
    (void)ctx;
    int32_t *a = acc;
    const int32_t *b = x;
    for (size_t i = 0; i < bytes / sizeof *a; i++)
        if (b[i] > a[i]) a[i] = b[i];
}

int rt_dist_sum_f64(rt_dist *d, double *v, int n) { return star(d, v, sizeof *v * (size_t)n, add_f64, NULL, NULL); }
int rt_dist_sum_i64(rt_dist *d, int64_t *v, int n) { return star(d, v, sizeof *v * (size_t)n, add_i64, NULL, NULL); }
int rt_dist_max_i32(rt_dist *d, int32_t *v, int n) { return star(d, v, sizeof *v * (size_t)n, max_i32, NULL, NULL); }
int rt_dist_bcast(rt_dist *d, void *buf, size_t bytes) { return star(d, buf, bytes, NULL, NULL, NULL); }
int rt_dist_barrier(rt_dist *d) {
    unsigned char b = 0;
    return star(d, &b, 1, NULL, NULL, NULL);
}

/* The mean of f32/f16/bf16 values: rank 0 widens its own to float once (ctx: the float sums),
 * adds each rank's in order, divides by W and narrows once. */
typedef struct {
    rt_dtype t;
    float *sum;
    int world, started;
} mean_ctx;

static float load(rt_dtype t, const void *p, size_t i) {
    if (t == RT_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return t == RT_F16 ? rt_half_to_float(h) : rt_bf16_to_float(h);
}

static void add_mean(void *acc, const void *x, size_t bytes, void *ctx) {
    mean_ctx *m = ctx;
    size_t n = bytes / rt_dtype_size(m->t);
    if (!m->started) {
        for (size_t i = 0; i < n; i++) m->sum[i] = load(m->t, acc, i);
        m->started = 1;
    }
    for (size_t i = 0; i < n; i++) m->sum[i] += load(m->t, x, i);
}

static void finish_mean(void *acc, size_t bytes, void *ctx) {
    mean_ctx *m = ctx;
    size_t n = bytes / rt_dtype_size(m->t);
    if (!m->started) return; /* one rank: its values are the mean */
    float w = (float)m->world;
    for (size_t i = 0; i < n; i++) {
        float v = m->sum[i] / w;
        if (m->t == RT_F32) ((float *)acc)[i] = v;
        else ((uint16_t *)acc)[i] = m->t == RT_F16 ? rt_float_to_half(v) : rt_float_to_bf16(v);
    }
    m->started = 0;
}

int rt_dist_mean(rt_dist *d, void *buf, uint64_t bytes, rt_dtype t) {
    if (t != RT_F32 && t != RT_F16 && t != RT_BF16) {
        snprintf(d->err, sizeof d->err, "all-reduce: gradients of dtype %d cannot be averaged", (int)t);
        return -1;
    }
    if (d->env.world == 1) return 0;
    size_t es = rt_dtype_size(t), chunk = ((size_t)1 << 24) * es; /* 16 Mi elements a round */
    float *sum = d->env.rank == 0 ? malloc(sizeof(float) * (bytes / es < (1u << 24) ? bytes / es + 1 : 1u << 24)) : NULL;
    if (d->env.rank == 0 && !sum) abort();
    int rc = 0;
    for (uint64_t off = 0; off < bytes && !rc; off += chunk) {
        size_t n = bytes - off < chunk ? (size_t)(bytes - off) : chunk;
        mean_ctx m = {t, sum, d->env.world, 0};
        rc = star(d, (unsigned char *)buf + off, n, add_mean, finish_mean, &m);
    }
    free(sum);
    return rc;
}

/* ---- the rendezvous ------------------------------------------------------------------------ */

static int listen_on(rt_dist *d, int port, int *out_port) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0), v6 = 1;
    if (fd < 0) {
        v6 = 0;
        fd = socket(AF_INET, SOCK_STREAM, 0);
    }
    if (fd < 0) {
        snprintf(d->err, sizeof d->err, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (v6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* IPv4 too */
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_any;
        a->sin6_port = htons((uint16_t)port);
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_ANY);
        a->sin_port = htons((uint16_t)port);
        len = sizeof *a;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 128)) {
        snprintf(d->err, sizeof d->err, "rank 0 cannot listen on port %d (MASTER_PORT): %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *out_port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static void tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
}

static int accept_peers(rt_dist *d, int lfd) {
    for (int got = 1; got < d->env.world; got++) {
        if (wait_fd(d, lfd, POLLIN, -1, "") < 0) {
            snprintf(d->err, sizeof d->err, "rank 0: only %d of %d ranks connected within %g s (DEITC_DIST_TIMEOUT); "
                     "missing:", got, d->env.world, d->env.timeout_s);
            for (int r = 1; r < d->env.world; r++)
                if (d->peers[r].fd < 0) {
                    size_t n = strlen(d->err);
                    snprintf(d->err + n, sizeof d->err - n, " %d", r);
                }
            return -1;
        }
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            got--;
            continue;
        }
        tune(fd);
        hello_msg h;
        if (recv_all(d, fd, &h, sizeof h, -1) || h.magic != HELLO_MAGIC || h.world != (uint32_t)d->env.world ||
            h.rank == 0 || h.rank >= (uint32_t)d->env.world || d->peers[h.rank].fd >= 0) {
            char why[1100];
            snprintf(why, sizeof why, "rank 0: a connection on the rendezvous port is not a rank of this run (rank "
                     "%u of %u, expected a distinct rank of %d): %s", h.rank, h.world, d->env.world,
                     h.magic == HELLO_MAGIC ? "a second run on the same MASTER_PORT, or mismatched launches?" :
                     "something else uses MASTER_PORT");
            memcpy(d->err, why, sizeof d->err);
            d->err[sizeof d->err - 1] = 0;
            close(fd);
            return -1;
        }
        h.host[HOST_LEN - 1] = 0;
        d->peers[h.rank].fd = fd;
        d->peers[h.rank].pid = h.pid;
        memcpy(d->peers[h.rank].host, h.host, HOST_LEN);
    }
    return 0;
}

static int connect_root(rt_dist *d, const char *addr, int port) {
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    double deadline = now_s() + d->env.timeout_s;
    const char *last = "no address";
    for (;;) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        int gai = getaddrinfo(addr, ports, &hints, &res);
        if (gai == 0) {
            for (struct addrinfo *a = res; a; a = a->ai_next) {
                int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
                if (fd < 0) continue;
                if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
                    freeaddrinfo(res);
                    tune(fd);
                    d->fd0 = fd;
                    return 0;
                }
                last = strerror(errno);
                close(fd);
            }
            freeaddrinfo(res);
        } else {
            last = gai_strerror(gai);
        }
        if (now_s() > deadline) {
            snprintf(d->err, sizeof d->err, "rank %d: cannot reach rank 0 at %s:%d within %g s (DEITC_DIST_TIMEOUT): "
                     "%s", d->env.rank, addr, port, d->env.timeout_s, last);
            return -1;
        }
        usleep(50000);
    }
}

int rt_dist_open(const rt_dist_env *e, rt_dist **out, char *err, size_t errsize) {
    *out = NULL;
    rt_dist *d = calloc(1, sizeof *d);
    if (!d) abort();
    d->env = *e;
    d->fd0 = -1;
    if (e->rank == 0) {
        d->peers = calloc((size_t)e->world, sizeof *d->peers);
        if (!d->peers) abort();
        for (int r = 0; r < e->world; r++) d->peers[r].fd = -1;
    }
    if (e->world == 1) { /* DEITC_DIST=1 alone: nobody to meet */
        *out = d;
        return 0;
    }
    /* where rank 0 listens: MASTER_*, else a free port it announces over MPI */
    char addr[320];
    int port = e->master_port, lfd = -1;
    snprintf(addr, sizeof addr, "%s", e->master_addr ? e->master_addr : "");
    if (e->rank == 0 && (lfd = listen_on(d, port, &port)) < 0) goto fail;
    if (!e->master_addr) {
        char blob[300];
        memset(blob, 0, sizeof blob);
        if (e->rank == 0) {
            /* every rank on this node: the loopback; else this host's name */
            const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
            char host[200] = "127.0.0.1";
            if (!ls || atoi(ls) != e->world) gethostname(host, sizeof host - 1);
            snprintf(blob, sizeof blob, "%s %d", host, port);
        }
        char merr[512];
        if (rt_dist_mpi_bcast(blob, (int)sizeof blob, e->rank, merr, sizeof merr)) {
            snprintf(d->err, sizeof d->err, "%s (%s launch without MASTER_ADDR/MASTER_PORT: the ranks meet over MPI)",
                     merr, e->source);
            goto fail;
        }
        d->mpi = 1;
        blob[sizeof blob - 1] = 0;
        char *sp = strrchr(blob, ' ');
        if (!sp) {
            snprintf(d->err, sizeof d->err, "rendezvous over MPI: a malformed address from rank 0");
            goto fail;
        }
        *sp = 0;
        snprintf(addr, sizeof addr, "%s", blob);
        port = atoi(sp + 1);
    }
    if (e->rank == 0) {
        int rc = accept_peers(d, lfd);
        close(lfd);
        lfd = -1;
        if (rc) {
            abort_all(d);
            goto fail;
        }
        for (int r = 1; r < e->world; r++)
            if (send_frame(d, r, "", 0)) {
                abort_all(d);
                goto fail;
            }
    } else {
        if (connect_root(d, addr, port)) goto fail;
        hello_msg h;
        memset(&h, 0, sizeof h);
        h.magic = HELLO_MAGIC;
        h.rank = (uint32_t)e->rank;
        h.world = (uint32_t)e->world;
        h.pid = (uint32_t)getpid();
        gethostname(h.host, HOST_LEN - 1);
        if (send_all(d, d->fd0, &h, sizeof h, 0) || read_frame(d, 0)) goto fail;
    }
    *out = d;
    return 0;
fail:
    if (lfd >= 0) close(lfd);
    snprintf(err, errsize, "%s", d->err);
    rt_dist_close(d);
    return -1;
}

void rt_dist_close(rt_dist *d) {
    if (!d) return;
    rt_dist_grads_free(d->grads);
    if (d->fd0 >= 0) close(d->fd0);
    if (d->peers)
        for (int r = 1; r < d->env.world; r++)
            if (d->peers[r].fd >= 0) close(d->peers[r].fd);
    if (d->mpi) rt_dist_mpi_finalize();
    free(d->peers);
    free(d->tmp);
    free(d);
}

int rt_dist_rank(const rt_dist *d) { return d ? d->env.rank : 0; }
int rt_dist_world(const rt_dist *d) { return d ? d->env.world : 1; }
const char *rt_dist_error(const rt_dist *d) { return d->err; }

void **rt_dist_grads_slot(rt_dist *d) { return &d->grads; }
char *rt_dist_err_buf(rt_dist *d, size_t *size) {
    *size = sizeof d->err;
    return d->err;
}
double rt_dist_timeout(const rt_dist *d) { return d->env.timeout_s; }

/* ---- the data shard (DistributedSampler's semantics) --------------------------------------- */

int64_t rt_dist_shard_size(int64_t n, int world) { return (n + world - 1) / world; }

void rt_dist_shard(const int64_t *perm, int64_t n, int rank, int world, int64_t *shard) {
    int64_t m = rt_dist_shard_size(n, world);
    for (int64_t j = 0; j < m; j++) shard[j] = perm[(j * world + rank) % n]; /* padded by wrapping around */
}

int rt_dist_check_same(rt_dist *d, const char *what, uint64_t value) {
    uint64_t root = value;
    if (rt_dist_bcast(d, &root, sizeof root)) return -1;
    int64_t differs[2] = {root != value, root != value ? d->env.rank : 0}; /* how many; the sum of their ranks */
    int32_t first = root != value ? d->env.rank : INT32_MAX;
    if (rt_dist_sum_i64(d, differs, 2)) return -1;
    first = -first;
    if (rt_dist_max_i32(d, &first, 1)) return -1; /* the lowest differing rank */
    if (!differs[0]) return 0;
    snprintf(d->err, sizeof d->err, "%lld of %d ranks (rank %d first) disagree with rank 0 on %s: every rank must "
             "run the same executable with the same options and data", (long long)differs[0], d->env.world, -first, what);
    return -1;
}

uint64_t rt_dist_fingerprint(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    if (!h) h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
