/* dist.h: data-parallel training, private to the executable's runtime. One process per GPU (or
 * per emulated device); the ranks find each other from the launcher's environment and then
 * talk over TCP to rank 0 (a star). Sections follow the files:
 *   dist.c       the launcher's environment, the rendezvous, host collectives (fixed order)
 *   dist_mpi.c   the rendezvous blob over MPI (libmpi dlopen'd) when mpirun sets no MASTER_*
 *   dist_grads.c gradient buckets and the device hooks: the emu's all-reduce on a thread
 *   dist_nccl.c  the cuda target's all-reduce on NCCL (libnccl dlopen'd), on a comm stream
 *
 * Determinism: every host collective and the emu's gradient all-reduce add the ranks' values
 * in rank order 0, 1, ..., W-1 on rank 0 and send the result back, so every rank holds the
 * same bits, and a run is reproducible for a fixed world size whatever launched it.
 */
#ifndef DEITC_RT_DIST_H
#define DEITC_RT_DIST_H

#include "runtime/rt.h"

#include <stddef.h>
#include <stdint.h>

/* ---- dist.c ------------------------------------------------------------------------------- */

typedef struct {
    int rank, world, local_rank; /* world 1: a single process, no launcher */
    const char *source;          /* which variables said so: "RANK/WORLD_SIZE", "OMPI_COMM_WORLD_*", ... */
    const char *master_addr;     /* MASTER_ADDR, or NULL */
    int master_port;             /* MASTER_PORT, or 0 */
    double timeout_s;            /* DEITC_DIST_TIMEOUT: the longest wait for another rank */
} rt_dist_env;

typedef struct rt_dist rt_dist;

/* Reads the launcher's environment. Precedence: RANK/WORLD_SIZE (torchrun and most
 * schedulers), then OMPI_COMM_WORLD_* (Open MPI's mpirun), PMI_RANK/PMI_SIZE (MPICH, Intel
 * MPI), SLURM_PROCID/SLURM_STEP_NUM_TASKS (srun). None set: world 1. -1 with err when they
 * are malformed or inconsistent. */
int rt_dist_env_read(rt_dist_env *e, char *err, size_t errsize);
/* Connects the ranks (world > 1): rank 0 listens on MASTER_PORT (or, under mpirun without
 * MASTER_*, on a free port it tells the others over MPI), the others connect to it. */
int rt_dist_open(const rt_dist_env *e, rt_dist **out, char *err, size_t errsize);
void rt_dist_close(rt_dist *d); /* NULL is fine */
int rt_dist_rank(const rt_dist *d);
int rt_dist_world(const rt_dist *d);
const char *rt_dist_error(const rt_dist *d); /* the last failure, naming the rank lost */

/* Host collectives (every rank calls them in the same order); -1 on a lost rank. */
int rt_dist_sum_f64(rt_dist *d, double *v, int n);    /* sum, added in rank order */
int rt_dist_sum_i64(rt_dist *d, int64_t *v, int n);   /* exact: validation counts */
int rt_dist_max_i32(rt_dist *d, int32_t *v, int n);   /* the fp16 overflow flag: any rank's */
int rt_dist_bcast(rt_dist *d, void *buf, size_t bytes); /* rank 0's bytes to every rank */
int rt_dist_barrier(rt_dist *d);

/* 0 when every rank passes the same value (a fingerprint of what must agree: the plan, the
 * data, the options); else -1 on every rank, the message naming `what` and the first rank off. */
int rt_dist_check_same(rt_dist *d, const char *what, uint64_t value);
uint64_t rt_dist_fingerprint(const void *data, size_t n, uint64_t h); /* FNV-1a over data, from h (0: the basis) */

/* The element-wise mean over ranks of `bytes` of dtype (f32, f16, bf16) at buf, in place:
 * summed in float in rank order, divided by the world size, rounded once. What the gradient
 * buckets use; any thread, but one call at a time. */
int rt_dist_mean(rt_dist *d, void *buf, uint64_t bytes, rt_dtype t);

/* DistributedSampler's shard of an epoch's permutation perm[0..n) (the same on every rank):
 * padded to a multiple of world by wrapping around, then every world-th index from rank:
 * rt_dist_shard_size(n, world) = ceil(n / world) of them into shard. */
int64_t rt_dist_shard_size(int64_t n, int world);
void rt_dist_shard(const int64_t *perm, int64_t n, int rank, int world, int64_t *shard);

/* for dist_grads.c: its state's slot in d, d's message buffer, DEITC_DIST_TIMEOUT */
void **rt_dist_grads_slot(rt_dist *d);
char *rt_dist_err_buf(rt_dist *d, size_t *size);
double rt_dist_timeout(const rt_dist *d);
void rt_dist_grads_free(void *grads); /* dist_grads.c: what rt_dist_attach made (NULL is fine) */

/* ---- dist_mpi.c --------------------------------------------------------------------------- */

/* Under an MPI launcher: MPI_Init, then rank 0's `bytes` at blob to every rank (MPI_Bcast).
 * rt_dist_mpi_finalize at the end. -1 with err when libmpi cannot be loaded or fails. */
int rt_dist_mpi_bcast(void *blob, int bytes, int rank, char *err, size_t errsize);
void rt_dist_mpi_finalize(void);

/* ---- dist_grads.c ------------------------------------------------------------------------- */

/* Groups the plan's gradients into buckets of about bucket_mb MiB in backward production order
 * and installs dev's step hooks: each bucket is averaged over the ranks as soon as its last
 * gradient is written (a thread on emu; NCCL on a communication stream on cuda), and the first
 * step that reads one of its gradients waits for it. -1 with err (a plan without gradients,
 * NCCL missing). */
int rt_dist_attach(rt_dist *d, rt_device *dev, double bucket_mb, char *err, size_t errsize);
/* After rt_device_run: waits for the step's collectives (cuda: NCCL's async errors, the
 * timeout); 0 on emu, where the hooks already waited. */
int rt_dist_step_wait(rt_dist *d);
int rt_dist_bucket_count(const rt_dist *d);
uint64_t rt_dist_grad_bytes(const rt_dist *d); /* the bytes all-reduced a step */
/* Every bucket all-reduced once, back to back, outside any step (EXE allreduce: timing). The
 * hooks' error is in dev->err; NCCL's sync error in rt_dist_error. */
int rt_dist_allreduce_all(rt_dist *d);

/* ---- dist_nccl.c -------------------------------------------------------------------------- */

typedef struct rt_nccl rt_nccl;
/* Loads libnccl (DEITC_NCCL_LIBRARY, else libnccl.so.2), makes the communicator (rank 0's
 * unique id sent over d) and a communication stream. -1 with err naming what is missing. */
int rt_nccl_open(rt_dist *d, rt_device *dev, int nbuckets, rt_nccl **out, char *err, size_t errsize);
void rt_nccl_close(rt_nccl *n);
/* Enqueues: comm stream waits for the compute stream's work so far, all-reduces (average) the
 * regions, records bucket b's done event; rt_nccl_wait: the compute stream waits for it. */
int rt_nccl_post(rt_nccl *n, int b, const rt_plan_grad *const *regions, int nregions, char *err, size_t errsize);
int rt_nccl_wait(rt_nccl *n, int b, char *err, size_t errsize);
/* Host side: waits for the compute stream, polling NCCL's async error, up to timeout_s. */
int rt_nccl_sync(rt_nccl *n, double timeout_s, char *err, size_t errsize);

#endif
