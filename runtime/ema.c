/* ema.c: the run's side of the weights' EMA (plans compiled with deitc compile --ema: STATE
 * ema.<w> updated on the device after each step by the EMA op, timm's ModelEmaV2 semantics,
 * decay from the opt slot, --ema-decay): a fresh run starts the EMA as a copy of the weights
 * (ModelEmaV2 deep-copies the model); a resumed one takes it from the checkpoint (it is
 * optimizer state). For evaluation the EMA is swapped into the weights and back; --save-ema
 * writes it under the weights' names (weights without an EMA, frozen ones, as they are), so
 * timm loads it like any other weights.
 */
#include "runtime/exe_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const rt_plan_tensor *weight_of(const rt_plan *p, const rt_plan_tensor *ema) {
    if (ema->role != RT_ROLE_STATE || strncmp(ema->name, "ema.", 4)) return NULL;
    for (int i = 0; i < p->num_tensors; i++)
        if (p->tensors[i].role == RT_ROLE_WEIGHT && !strcmp(p->tensors[i].name, ema->name + 4) &&
            p->tensors[i].bytes == ema->bytes)
            return &p->tensors[i];
    return NULL;
}

int rt_exe_has_ema(const rt_plan *p) {
    for (int i = 0; i < p->num_tensors; i++)
        if (weight_of(p, &p->tensors[i])) return 1;
    return 0;
}

/* copy (swap 0) or exchange (swap 1) every weight with its EMA, through the host */
static int ema_move(session *s, int swap) {
    const rt_plan *p = s->p;
    int rc = 0;
    for (int i = 0; i < p->num_tensors && !rc; i++) {
        const rt_plan_tensor *e = &p->tensors[i], *w = weight_of(p, e);
        if (!w) continue;
        void *wb = malloc(w->bytes ? w->bytes : 1), *eb = malloc(e->bytes ? e->bytes : 1);
        if (!wb || !eb) abort();
        if (s->dev->download(s->dev, wb, w->offset, w->bytes) || (swap && s->dev->download(s->dev, eb, e->offset, e->bytes)) ||
            s->dev->upload(s->dev, e->offset, wb, e->bytes) || (swap && s->dev->upload(s->dev, w->offset, eb, w->bytes)))
            rc = rt_exe_error("%s", s->dev->err);
        free(wb);
        free(eb);
    }
    return rc;
}

int rt_exe_ema_start(session *s) { return ema_move(s, 0); }
int rt_exe_ema_swap(session *s) { return ema_move(s, 1); }

int rt_exe_ema_save(session *s, const char *path, long step, const exe_args *a, long total) {
    /* the EMA in the weights' place, written as --save writes weights, and swapped back */
    if (rt_exe_ema_swap(s)) return 1;
    printf("EMA weights: ");
    int rc = rt_exe_save_weights(s, path, step, 0, a, total, a->save_dtype);
    if (rt_exe_ema_swap(s)) rc = 1;
    return rc;
}
