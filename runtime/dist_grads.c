/* dist_grads.c: the gradient all-reduce of data-parallel training, hooked into the device's
 * step loop (rt_device.step_hook). The plan lists the gradients in backward production order
 * with the step that writes each last and the first that reads it (codegen/grads.c); they are
 * grouped here into buckets of about --bucket-mb MiB (DDP's 25 by default), one dtype each,
 * closed early where a gradient of the bucket is read before the next one is written (so a
 * bucket is always complete before any step needs it).
 *   after step i:  every bucket whose last gradient step i wrote is started
 *   before step i: every bucket step i reads from is waited for (the clip norm and AdamW come
 *                  after the whole backward pass, so in practice they wait for all of them)
 * emu: a communication thread averages the buckets in order (rt_dist_mean: rank-order sums,
 *      the same bits on every rank) while the main thread computes the rest of the backward
 *      pass; the bucket's gradients are packed into one message and unpacked in place.
 * cuda: NCCL on a communication stream, ordered by events (dist_nccl.c).
 * The mean is over ranks of per-rank means over the rank's batch: the mean over the global
 * batch, as the per-rank losses are means over equal per-rank batches.
 */
#include "runtime/dist.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int first, count;          /* the plan's grads[first .. first + count) */
    uint64_t bytes;
    rt_dtype dtype;
    int ready_step, use_step;  /* after ready_step all its gradients are final; use_step reads one */
} bucket;

typedef struct {
    rt_dist *d;
    rt_device *dev;
    const rt_plan *p;
    bucket *b;
    int nb;
    const rt_plan_grad **regions; /* [num_grads] the plan's, for rt_nccl_post */
    rt_nccl *nccl;                /* cuda; NULL on emu */
    /* emu: the communication thread */
    pthread_t thread;
    int thread_on;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int posted, done, failed, quit; /* buckets [0, posted) started, [0, done) averaged */
    unsigned char *pack;
    uint64_t pack_bytes;
} grads_state;

static int reduce_bucket(grads_state *g, const bucket *bk) {
    unsigned char *arena = (unsigned char *)(uintptr_t)g->dev->arena_address;
    if (bk->count == 1)
        return rt_dist_mean(g->d, arena + g->p->grads[bk->first].offset, bk->bytes, bk->dtype);
    uint64_t at = 0;
    for (int i = bk->first; i < bk->first + bk->count; i++) {
        memcpy(g->pack + at, arena + g->p->grads[i].offset, g->p->grads[i].bytes);
        at += g->p->grads[i].bytes;
    }
    if (rt_dist_mean(g->d, g->pack, bk->bytes, bk->dtype)) return -1;
    at = 0;
    for (int i = bk->first; i < bk->first + bk->count; i++) {
        memcpy(arena + g->p->grads[i].offset, g->pack + at, g->p->grads[i].bytes);
        at += g->p->grads[i].bytes;
    }
    return 0;
}

static void *comm_thread(void *arg) {
    grads_state *g = arg;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->quit && !g->failed && g->done == g->posted) pthread_cond_wait(&g->cv, &g->mu);
        if (g->quit || g->failed) break;
        const bucket *bk = &g->b[g->done];
        pthread_mutex_unlock(&g->mu);
        int rc = reduce_bucket(g, bk);
        pthread_mutex_lock(&g->mu);
        if (rc) g->failed = 1;
        else g->done++;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static int hook_error(grads_state *g) {
    size_t size;
    const char *msg = rt_dist_err_buf(g->d, &size);
    snprintf(g->dev->err, sizeof g->dev->err, "data parallel (rank %d of %d): %s", rt_dist_rank(g->d),
             rt_dist_world(g->d), msg);
    return -1;
}

static int post(grads_state *g, int b) {
    if (g->nccl) {
        size_t size;
        char *err = rt_dist_err_buf(g->d, &size);
        return rt_nccl_post(g->nccl, b, g->regions + g->b[b].first, g->b[b].count, err, size) ? hook_error(g) : 0;
    }
    pthread_mutex_lock(&g->mu);
    g->posted = b + 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static int wait_for(grads_state *g, int b) {
    if (g->nccl) {
        size_t size;
        char *err = rt_dist_err_buf(g->d, &size);
        return rt_nccl_wait(g->nccl, b, err, size) ? hook_error(g) : 0;
    }
    pthread_mutex_lock(&g->mu);
    while (!g->failed && g->done <= b) pthread_cond_wait(&g->cv, &g->mu);
    int failed = g->failed;
    pthread_mutex_unlock(&g->mu);
    return failed ? hook_error(g) : 0;
}

static int step_hook(rt_device *dev, int step, int after) {
    grads_state *g = dev->hook_ctx;
    if (after && step == -1 && !g->nccl) { /* a new step: the last one's buckets are all done */
        pthread_mutex_lock(&g->mu);
        g->posted = g->done = 0;
        pthread_mutex_unlock(&g->mu);
    }
    for (int b = 0; b < g->nb; b++) {
        if (after && g->b[b].ready_step == step && post(g, b)) return -1;
        if (!after && g->b[b].use_step == step && wait_for(g, b)) return -1;
    }
    return 0;
}

/* Buckets in the plan's order: a new one at a dtype change, past the size, or where the next
 * gradient is written at or after a step that reads one already in the bucket. */
static int make_buckets(grads_state *g, double bucket_mb) {
    const rt_plan *p = g->p;
    uint64_t cap = (uint64_t)(bucket_mb * 1048576.0);
    g->b = calloc((size_t)p->num_grads + 1, sizeof *g->b);
    if (!g->b) abort();
    for (int i = 0; i < p->num_grads; i++) {
        const rt_plan_grad *gr = &p->grads[i];
        bucket *cur = g->nb ? &g->b[g->nb - 1] : NULL;
        if (!cur || cur->dtype != gr->dtype || cur->bytes >= cap || gr->ready_step >= cur->use_step) {
            cur = &g->b[g->nb++];
            cur->first = i;
            cur->dtype = gr->dtype;
            cur->ready_step = gr->ready_step;
            cur->use_step = gr->use_step;
        }
        cur->count++;
        cur->bytes += gr->bytes;
        if (gr->ready_step > cur->ready_step) cur->ready_step = gr->ready_step;
        if (gr->use_step < cur->use_step) cur->use_step = gr->use_step;
        if (cur->count > 1 && cur->bytes > g->pack_bytes) g->pack_bytes = cur->bytes;
    }
    return 0;
}

int rt_dist_attach(rt_dist *d, rt_device *dev, double bucket_mb, char *err, size_t errsize) {
    const rt_plan *p = dev->plan;
    grads_state *g = calloc(1, sizeof *g);
    if (!g) abort();
    g->d = d;
    g->dev = dev;
    g->p = p;
    make_buckets(g, bucket_mb);
    g->regions = malloc(sizeof *g->regions * (size_t)(p->num_grads + 1));
    if (!g->regions) abort();
    for (int i = 0; i < p->num_grads; i++) g->regions[i] = &p->grads[i];
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    *rt_dist_grads_slot(d) = g;
    /* NCCL first: a machine without it hears so whatever the plan */
    if (!strcmp(dev->target, "cuda") && rt_nccl_open(d, dev, g->nb, &g->nccl, err, errsize)) return -1;
    if (p->num_grads < 1 || !p->grads)
        return rt_errorf(err, errsize, "this executable's plan lists no gradients to all-reduce (compiled by an older "
                                       "deitc?): it cannot train on %d ranks", rt_dist_world(d));
    if (!g->nccl) {
        if (g->pack_bytes && !(g->pack = malloc((size_t)g->pack_bytes))) abort();
        if (pthread_create(&g->thread, NULL, comm_thread, g))
            return rt_errorf(err, errsize, "cannot start the communication thread");
        g->thread_on = 1;
    }
    dev->hook_ctx = g;
    dev->step_hook = step_hook;
    return 0;
}

int rt_dist_allreduce_all(rt_dist *d) {
    grads_state *g = d ? *rt_dist_grads_slot(d) : NULL;
    if (!g) return 0;
    if (!g->nccl) {
        pthread_mutex_lock(&g->mu);
        g->posted = g->done = 0;
        pthread_mutex_unlock(&g->mu);
    }
    for (int b = 0; b < g->nb; b++)
        if (post(g, b)) return -1;
    for (int b = 0; b < g->nb; b++)
        if (wait_for(g, b)) return -1;
    return rt_dist_step_wait(d);
}

uint64_t rt_dist_grad_bytes(const rt_dist *d) {
    grads_state *g = d ? *rt_dist_grads_slot((rt_dist *)d) : NULL;
    uint64_t n = 0;
    for (int b = 0; g && b < g->nb; b++) n += g->b[b].bytes;
    return n;
}

int rt_dist_step_wait(rt_dist *d) {
    grads_state *g = d ? *rt_dist_grads_slot(d) : NULL;
    if (!g || !g->nccl) return 0;
    size_t size;
    char *err = rt_dist_err_buf(d, &size);
    return rt_nccl_sync(g->nccl, rt_dist_timeout(d), err, size);
}

int rt_dist_bucket_count(const rt_dist *d) {
    grads_state *g = d ? *rt_dist_grads_slot((rt_dist *)d) : NULL;
    return g ? g->nb : 0;
}

void rt_dist_grads_free(void *state) {
    grads_state *g = state;
    if (!g) return;
    if (g->thread_on) {
        pthread_mutex_lock(&g->mu);
        g->quit = 1;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        pthread_join(g->thread, NULL);
    }
    if (g->dev && g->dev->hook_ctx == g) {
        g->dev->step_hook = NULL;
        g->dev->hook_ctx = NULL;
    }
    rt_nccl_close(g->nccl);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g->pack);
    free(g->regions);
    free(g->b);
    free(g);
}
