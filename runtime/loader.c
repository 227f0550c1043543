/* loader.c: the streaming data loader: worker threads decode and transform samples into a ring
 * of `depth` batch slots while the device runs the step; the trainer takes one batch a step.
 * Memory is the ring (depth x batch x 3 x size x size bytes) plus what the decoders hold at
 * once (image_folder.c's shared budget), whatever the dataset's size.
 *
 * Order and determinism: item k (k = 0, 1, ... from the first step) is sample
 * perm_e[rank + world * pos] of epoch e = step / steps_per_epoch, pos its place in the epoch,
 * perm_e = rt_shuffle(seed, e) (what in-memory data uses, so resumes line up); its transform's
 * RNG is rt_sample_rng(seed, e, sample). Items are claimed in order and each is written to its
 * own place in its batch's slot: the bytes of every batch do not depend on the number of
 * workers or on their timing. A failing item stops the claiming; the batch holding the lowest
 * failing item reports that item's message, the batches before it are delivered as usual.
 *
 * With raw_bytes the workers only copy each raw sample and sample its crop box: the device
 * crops, flips and normalizes (dc_data.cuh's dc_data_crop, the same bytes as tf's apply).
 *
 * Ring invariant: slots hold batches [released, released + depth); the consumer holds batch
 * `released` from rt_loader_next until its next call; workers fill the others.
 */
#include "runtime/rt.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rt_loader {
    rt_loader_config c;
    int64_t per_epoch, sample_bytes; /* batches an epoch; 3 * size * size (x 4 as float) */
    uint8_t *slots;                  /* (depth, batch, 3, size, size) uint8 or float */
    float table[3][256];             /* with mean/std: each byte's normalized value per channel */
    int64_t *labels;                 /* (depth, batch) */
    int64_t *meta;                   /* raw_bytes: (depth, batch, 8) the device's crops */
    int64_t *done;                   /* (depth) items finished in each slot */
    int64_t *perm, perm_epoch;       /* the permutation of perm_epoch (-1: none yet) */
    pthread_mutex_t lock;
    pthread_cond_t space, ready;
    int64_t next_item, released, taken; /* items claimed; batches given back; batches handed out */
    int64_t failed_item;                /* the lowest failing item, or -1 */
    char failed_msg[1200];
    int stop;
    pthread_t *threads;
    int nthreads;
    double wait_s;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int64_t rt_loader_steps_per_epoch(const rt_loader_config *c) {
    int world = c->world > 0 ? c->world : 1;
    return c->batch > 0 ? (c->src->n / world) / c->batch : 0;
}

/* ---- the ImageFolder source --------------------------------------------------------------- */

static int list_decode(void *ctx, int64_t i, const rt_decode_shrink *shrink, rt_rgb_image *img, char *err,
                       size_t errsize) {
    const rt_image_list *l = ctx;
    return rt_image_decode(l->paths[i], shrink, img, err, errsize);
}

rt_sample_source rt_image_list_source(const rt_image_list *l) {
    rt_sample_source s = {l->n, l->labels, (void *)l, list_decode};
    return s;
}

/* ---- workers ------------------------------------------------------------------------------ */

typedef struct {
    const rt_transform *tf;
    uint64_t rng;
} shrink_ctx;

static int pick_shrink(void *ctx, int full_w, int full_h) {
    shrink_ctx *s = ctx;
    return s->tf->shrink ? s->tf->shrink(s->tf, s->rng, full_w, full_h) : 8;
}

static void *worker(void *arg) {
    rt_loader *L = arg;
    const rt_loader_config *c = &L->c;
    char err[1200];
    int64_t plane = (int64_t)c->tf->size * c->tf->size;
    uint8_t *u8 = c->mean ? malloc((size_t)(3 * plane)) : NULL; /* the transform's output, to normalize */
    if (c->mean && !u8) {
        pthread_mutex_lock(&L->lock);
        if (L->failed_item < 0) { /* stands for the next item: nothing is claimed after it */
            L->failed_item = L->next_item;
            snprintf(L->failed_msg, sizeof L->failed_msg, "data loader: out of memory");
        }
        pthread_cond_broadcast(&L->ready);
        pthread_mutex_unlock(&L->lock);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&L->lock);
        while (!L->stop && L->failed_item < 0 && L->next_item / c->batch >= L->released + c->depth)
            pthread_cond_wait(&L->space, &L->lock);
        if (L->stop || L->failed_item >= 0) {
            pthread_mutex_unlock(&L->lock);
            break;
        }
        int64_t k = L->next_item++, b = k / c->batch, j = k % c->batch;
        int64_t step = (int64_t)(c->first_step - 1) + b, epoch = step / L->per_epoch;
        int64_t pos = (step % L->per_epoch) * c->batch + j;
        if (epoch != L->perm_epoch) { /* claims are in order: no claim still needs the old one */
            if (c->shuffle) rt_shuffle_windowed(L->perm, c->src->n, c->window, c->seed, epoch);
            else
                for (int64_t i = 0; i < c->src->n; i++) L->perm[i] = i;
            L->perm_epoch = epoch;
        }
        int64_t sample = L->perm[c->rank + c->world * pos];
        pthread_mutex_unlock(&L->lock);

        int64_t slot = b % c->depth;
        uint8_t *out = L->slots + (slot * c->batch + j) * L->sample_bytes;
        shrink_ctx sc = {c->tf, rt_sample_rng(c->seed, epoch, sample)};
        rt_decode_shrink shrink = {pick_shrink, &sc};
        rt_rgb_image img;
        int rc = c->src->decode(c->src->ctx, sample, c->raw_bytes ? NULL : &shrink, &img, err, sizeof err);
        int decoded = rc == 0;
        if (decoded && c->raw_bytes) { /* the sample as it is, and the box the device will crop */
            int64_t *m = L->meta + (slot * c->batch + j) * 8;
            rt_crop_params cp;
            if (3 * (int64_t)img.w * img.h > c->raw_bytes || img.w != img.full_w || img.h != img.full_h) {
                rc = rt_errorf(err, sizeof err, "sample %lld (%dx%d) does not fit the raw batch slot (%lld bytes)",
                               (long long)sample, img.w, img.h, (long long)c->raw_bytes);
            } else {
                memcpy(out, img.rgb, (size_t)3 * img.w * img.h);
                rt_rrc_params(c->tf, sc.rng, img.full_w, img.full_h, &cp);
                int64_t v[8] = {j * L->sample_bytes, img.w, img.h, cp.x, cp.y, cp.w, cp.h, cp.flip};
                memcpy(m, v, sizeof v);
            }
        } else if (decoded && c->tf->apply(c->tf, sc.rng, &img, u8 ? u8 : out)) {
            rc = rt_errorf(err, sizeof err, "out of memory while transforming sample %lld", (long long)sample);
        }
        if (decoded) free(img.rgb);
        if (!rc && u8) {
            float *f = (float *)out;
            for (int ch = 0; ch < 3; ch++)
                for (int64_t q = 0; q < plane; q++) f[ch * plane + q] = L->table[ch][u8[ch * plane + q]];
            if (c->tf->erase_p > 0) rt_erase_apply(c->tf, sc.rng, f); /* after normalizing, as timm */
        }
        L->labels[slot * c->batch + j] = c->src->labels[sample];

        pthread_mutex_lock(&L->lock);
        if (rc && (L->failed_item < 0 || k < L->failed_item)) {
            L->failed_item = k;
            snprintf(L->failed_msg, sizeof L->failed_msg, "%s", err);
        }
        L->done[slot]++;
        pthread_cond_broadcast(&L->ready);
        pthread_cond_broadcast(&L->space); /* a failure wakes the waiting workers: they stop */
        pthread_mutex_unlock(&L->lock);
    }
    free(u8);
    return NULL;
}

int rt_loader_open(rt_loader **out, const rt_loader_config *cfg, char *err, size_t errsize) {
    *out = NULL;
    rt_loader *L = calloc(1, sizeof *L);
    if (!L) return rt_errorf(err, errsize, "data loader: out of memory");
    L->c = *cfg;
    rt_loader_config *c = &L->c;
    if (c->world < 1) c->world = 1;
    if (c->rank < 0 || c->rank >= c->world) {
        int world = c->world;
        free(L);
        return rt_errorf(err, errsize, "data loader: rank %d is outside 0..%d", cfg->rank, world - 1);
    }
    if (c->tf->erase_p > 0 && !c->mean) {
        free(L);
        return rt_errorf(err, errsize, "data loader: --aug %s's random erasing works on normalized pixels: it needs float "
                                       "batches (mean/std), not uint8 ones", cfg->tf->name);
    }
    if (c->raw_bytes && (c->mean || !rt_transform_is_crop_flip(c->tf))) {
        free(L);
        return rt_errorf(err, errsize, "data loader: raw samples for the device's crop take a crop + flip transform only (--aug light)");
    }
    if (c->workers < 1) c->workers = 1;
    if (c->workers > 256) c->workers = 256;
    if (c->depth < 2) c->depth = 2;
    L->per_epoch = rt_loader_steps_per_epoch(c);
    if (L->per_epoch < 1) {
        int64_t n = c->src->n;
        free(L);
        return rt_errorf(err, errsize, "data loader: %lld samples make no batch of %lld%s", (long long)n,
                         (long long)cfg->batch, cfg->world > 1 ? " on every rank" : "");
    }
    L->sample_bytes = c->raw_bytes ? c->raw_bytes : 3 * (int64_t)c->tf->size * c->tf->size * (c->mean ? (int64_t)sizeof(float) : 1);
    if (c->mean)
        for (int ch = 0; ch < 3; ch++) /* rt_dataset_image's arithmetic, so the bytes are the same */
            for (int v = 0; v < 256; v++) L->table[ch][v] = ((float)v / 255.0f - c->mean[ch]) / c->std[ch];
    L->slots = malloc((size_t)(c->depth * c->batch * L->sample_bytes));
    L->labels = calloc((size_t)(c->depth * c->batch), sizeof(int64_t));
    L->meta = calloc((size_t)(c->depth * c->batch * 8), sizeof(int64_t));
    L->done = calloc((size_t)c->depth, sizeof(int64_t));
    L->perm = malloc(sizeof(int64_t) * (size_t)c->src->n);
    L->threads = calloc((size_t)c->workers, sizeof(pthread_t));
    if (!L->slots || !L->labels || !L->meta || !L->done || !L->perm || !L->threads) {
        rt_loader_free(L);
        return rt_errorf(err, errsize, "data loader: out of memory (%d batches of %lld images in flight)", c->depth,
                         (long long)c->batch);
    }
    L->perm_epoch = -1;
    L->failed_item = -1;
    pthread_mutex_init(&L->lock, NULL);
    pthread_cond_init(&L->space, NULL);
    pthread_cond_init(&L->ready, NULL);
    for (int i = 0; i < c->workers; i++) {
        if (pthread_create(&L->threads[i], NULL, worker, L) != 0) break;
        L->nthreads++;
    }
    if (!L->nthreads) {
        rt_loader_free(L);
        return rt_errorf(err, errsize, "data loader: cannot start a worker thread");
    }
    *out = L;
    return 0;
}

int rt_loader_next(rt_loader *L, const void **images, const int64_t **labels, char *err, size_t errsize) {
    const rt_loader_config *c = &L->c;
    double t0 = now_s();
    pthread_mutex_lock(&L->lock);
    if (L->taken > L->released) { /* give the previous batch's slot back */
        L->done[L->released % c->depth] = 0;
        L->released++;
        pthread_cond_broadcast(&L->space);
    }
    int64_t b = L->released, slot = b % c->depth;
    for (;;) {
        /* a failure stops the claims after it: wait for what was claimed of this batch, so that
         * the lowest failing item (the same on every run) is the one reported */
        int failed_here = L->failed_item >= 0 && L->failed_item < (b + 1) * c->batch;
        int64_t end = L->next_item < (b + 1) * c->batch ? L->next_item : (b + 1) * c->batch;
        int64_t claimed = end > b * c->batch ? end - b * c->batch : 0;
        if (L->done[slot] == c->batch || (failed_here && L->done[slot] == claimed)) break;
        pthread_cond_wait(&L->ready, &L->lock);
    }
    int rc = 0;
    if (L->failed_item >= 0 && L->failed_item < (b + 1) * c->batch) {
        rc = rt_errorf(err, errsize, "%s", L->failed_msg);
    } else {
        L->taken = b + 1;
        *images = L->slots + slot * c->batch * L->sample_bytes;
        *labels = L->labels + slot * c->batch;
    }
    pthread_mutex_unlock(&L->lock);
    L->wait_s += now_s() - t0;
    return rc;
}

const int64_t *rt_loader_meta(const rt_loader *L) {
    return L->meta + ((L->taken > 0 ? L->taken - 1 : 0) % L->c.depth) * L->c.batch * 8;
}

double rt_loader_wait_s(const rt_loader *L) {
    return L->wait_s;
}

void rt_loader_free(rt_loader *L) {
    if (!L) return;
    if (L->nthreads) {
        pthread_mutex_lock(&L->lock);
        L->stop = 1;
        pthread_cond_broadcast(&L->space);
        pthread_mutex_unlock(&L->lock);
        for (int i = 0; i < L->nthreads; i++) pthread_join(L->threads[i], NULL);
        pthread_mutex_destroy(&L->lock);
        pthread_cond_destroy(&L->space);
        pthread_cond_destroy(&L->ready);
    }
    free(L->slots);
    free(L->labels);
    free(L->meta);
    free(L->done);
    free(L->perm);
    free(L->threads);
    free(L);
}
