/* freeze.c: `EXE train --freeze PATTERNS` (comma-separated fnmatch patterns of weight names,
 * as deitc compile --freeze takes them): weights frozen for this run only, in an executable
 * that trains them. The step still updates them; the host keeps their values from the start of
 * the run (or of the resumed checkpoint) and puts them back after every step, so every reader
 * (the next step, evaluation, checkpoints, --save) sees them unchanged. Without gradient
 * clipping the other weights train exactly as with the compile-time freeze (their updates do
 * not depend on the frozen ones'); with it, the global norm still counts the frozen gradients.
 * The price: one upload of the frozen weights a step (deitc compile --freeze costs nothing).
 */
#include "runtime/exe_internal.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int matches(const char *patterns, const char *name) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", patterns);
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save))
        if (fnmatch(p, name, 0) == 0) return 1;
    return 0;
}

int rt_exe_freeze_start(session *s, const char *patterns, rt_exe_frozen *f) {
    memset(f, 0, sizeof *f);
    if (!patterns) return 0;
    const rt_plan *p = s->p;
    f->index = calloc((size_t)p->num_tensors + 1, sizeof *f->index);
    f->data = calloc((size_t)p->num_tensors + 1, sizeof *f->data);
    f->ema = calloc((size_t)p->num_tensors + 1, sizeof *f->ema);
    if (!f->index || !f->data || !f->ema) abort();
    uint64_t bytes = 0;
    for (int i = 0; i < p->num_tensors; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if (t->role != RT_ROLE_WEIGHT || !matches(patterns, t->name)) continue;
        f->data[f->n] = malloc(t->bytes ? t->bytes : 1);
        if (!f->data[f->n]) abort();
        if (s->dev->download(s->dev, f->data[f->n], t->offset, t->bytes)) return rt_exe_error("%s", s->dev->err);
        f->ema[f->n] = -1; /* its EMA (compile --ema) stays what a constant's EMA is: the value */
        for (int j = 0; j < p->num_tensors; j++)
            if (p->tensors[j].role == RT_ROLE_STATE && !strncmp(p->tensors[j].name, "ema.", 4) &&
                !strcmp(p->tensors[j].name + 4, t->name) && p->tensors[j].bytes == t->bytes)
                f->ema[f->n] = j;
        f->index[f->n++] = i;
        bytes += t->bytes;
    }
    if (!f->n) return rt_exe_error("--freeze %s: no weight of this model matches", patterns);
    printf("freeze: %d weight tensors (%.2f MiB) kept as they are (first: %s)\n", f->n, (double)bytes / 1048576.0,
           p->tensors[f->index[0]].name);
    return 0;
}

int rt_exe_freeze_restore(session *s, const rt_exe_frozen *f) {
    for (int k = 0; k < f->n; k++) {
        const rt_plan_tensor *t = &s->p->tensors[f->index[k]];
        if (s->dev->upload(s->dev, t->offset, f->data[k], t->bytes) ||
            (f->ema[k] >= 0 && s->dev->upload(s->dev, s->p->tensors[f->ema[k]].offset, f->data[k], t->bytes)))
            return rt_exe_error("%s", s->dev->err);
    }
    return 0;
}

void rt_exe_freeze_free(rt_exe_frozen *f) {
    for (int k = 0; k < f->n; k++) free(f->data[k]);
    free(f->data);
    free(f->index);
    free(f->ema);
    memset(f, 0, sizeof *f);
}
