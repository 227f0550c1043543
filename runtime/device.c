/* device.c: what both targets share: choosing the target from the plan, checking the plan's
 * invariants before anything touches memory, and running one training step (eagerly, or
 * captured once as a CUDA Graph and replayed). The targets themselves are device_emu.c and
 * device_cuda.c, each filling an rt_device's table of operations.
 */
#include "runtime/rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rt_kernel_args_fill(rt_kernel_args *ka, const rt_plan_step *s, uint64_t arena_base) {
    ka->values = ka->inline_values;
    ka->args = ka->inline_args;
    if (s->nargs > 32) {
        ka->values = malloc(sizeof *ka->values * (size_t)s->nargs);
        ka->args = malloc(sizeof *ka->args * (size_t)s->nargs);
        if (!ka->values || !ka->args) abort();
    }
    for (int i = 0; i < s->nargs; i++) {
        const rt_arg *a = &s->args[i];
        if (a->kind == RT_ARG_PTR)
            ka->values[i].address = arena_base + a->offset;
        else if (a->kind == RT_ARG_I64)
            ka->values[i].i64 = a->i64;
        else
            ka->values[i].f32 = a->f32;
        ka->args[i] = &ka->values[i];
    }
}

void rt_kernel_args_release(rt_kernel_args *ka) {
    if (ka->values != ka->inline_values) {
        free(ka->values);
        free(ka->args);
    }
}

int rt_plan_kernel(const rt_plan *p, const char *name) {
    for (int k = 0; k < p->num_kernels; k++)
        if (p->kernel_names && p->kernel_names[k] && strcmp(p->kernel_names[k], name) == 0) return k;
    return -1;
}

int rt_plan_is_cuda(const rt_plan *p) {
    if (p->emu_kernels) return 0;
    return p->cubin != NULL || p->ptx != NULL || p->arch != NULL;
}

static int in_arena(const rt_plan *p, uint64_t offset, uint64_t bytes) {
    return offset <= p->arena_bytes && bytes <= p->arena_bytes - offset;
}

/* Bytes from an operand's first element to one past its last: rows x cols with pitch ld,
 * batch copies stride elements apart. */
static int gemm_extent(int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t stride, rt_dtype t,
                       uint64_t *bytes) {
    if (rows < 0 || cols < 0 || ld < cols || batch < 1 || stride < 0 || t < 0 || t >= RT_DTYPE_COUNT) return -1;
    if (rows == 0 || cols == 0) {
        *bytes = 0;
        return 0;
    }
    double elems = (double)(batch - 1) * (double)stride + (double)(rows - 1) * (double)ld + (double)cols;
    if (elems * (double)rt_dtype_size(t) > 1e18) return -1;
    *bytes = (uint64_t)((batch - 1) * stride + (rows - 1) * ld + cols) * rt_dtype_size(t);
    return 0;
}

int rt_plan_check(const rt_plan *p, char *err, size_t errsize) {
    if (p->batch < 1 || p->num_tensors < 0 || p->num_steps < 0 || p->num_kernels < 0)
        return rt_errorf(err, errsize, "plan: bad sizes (batch %lld, %d tensors, %d steps, %d kernels)",
                    (long long)p->batch, p->num_tensors, p->num_steps, p->num_kernels);
    if (p->gemm_workspace_bytes && (p->gemm_workspace_offset % 256 ||
                                    !in_arena(p, p->gemm_workspace_offset, p->gemm_workspace_bytes)))
        return rt_errorf(err, errsize, "plan: the GEMM workspace [%llu, +%llu) is not an aligned region of the arena",
                         (unsigned long long)p->gemm_workspace_offset, (unsigned long long)p->gemm_workspace_bytes);
    for (int i = 0; i < p->num_tensors; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        if (!t->name || t->ndim < 0 || t->ndim > RT_MAX_DIMS || t->dtype < 0 || t->dtype >= RT_DTYPE_COUNT)
            return rt_errorf(err, errsize, "plan: tensor %d has a bad name, rank or dtype", i);
        if (t->offset % rt_dtype_size(t->dtype) || !in_arena(p, t->offset, t->bytes) ||
            (uint64_t)numel * rt_dtype_size(t->dtype) > t->bytes)
            return rt_errorf(err, errsize,
                        "plan: tensor '%s' (offset %llu, %llu bytes) is misaligned, outside the arena (%llu "
                        "bytes) or smaller than its shape",
                        t->name, (unsigned long long)t->offset, (unsigned long long)t->bytes,
                        (unsigned long long)p->arena_bytes);
    }
    for (int i = 0; i < p->num_steps; i++) {
        const rt_plan_step *s = &p->steps[i];
        const char *what = s->what ? s->what : "?";
        if (s->kind == RT_STEP_KERNEL) {
            if (s->kernel < 0 || s->kernel >= p->num_kernels)
                return rt_errorf(err, errsize, "plan: step %d (%s): kernel index %d out of range", i, what, s->kernel);
            if (s->nargs < 0 || (s->nargs > 0 && !s->args))
                return rt_errorf(err, errsize, "plan: step %d (%s): bad argument list", i, what);
            for (int a = 0; a < s->nargs; a++)
                if (s->args[a].kind == RT_ARG_PTR && s->args[a].offset > p->arena_bytes)
                    return rt_errorf(err, errsize, "plan: step %d (%s): argument %d points outside the arena", i,
                                what, a);
            for (int d = 0; d < 3; d++)
                if (s->grid[d] == 0 || s->block[d] == 0)
                    return rt_errorf(err, errsize, "plan: step %d (%s): empty grid or block", i, what);
        } else if (s->kind == RT_STEP_GEMM) {
            const rt_gemm *g = &s->gemm;
            uint64_t ea, eb, ec;
            int bad = g->m < 0 || g->n < 0 || g->k < 0 || g->batch < 1;
            bad = bad || gemm_extent(g->trans_a ? g->k : g->m, g->trans_a ? g->m : g->k, g->lda, g->batch,
                                     g->stride_a, g->a_type, &ea);
            bad = bad || gemm_extent(g->trans_b ? g->n : g->k, g->trans_b ? g->k : g->n, g->ldb, g->batch,
                                     g->stride_b, g->b_type, &eb);
            bad = bad || gemm_extent(g->m, g->n, g->ldc, g->batch, g->stride_c, g->c_type, &ec);
            if (bad)
                return rt_errorf(err, errsize, "plan: step %d (%s): bad GEMM shape, leading dimension or stride", i,
                            what);
            if (!in_arena(p, g->a, ea) || !in_arena(p, g->b, eb) || !in_arena(p, g->c, ec))
                return rt_errorf(err, errsize, "plan: step %d (%s): GEMM operand outside the arena", i, what);
        } else if (s->kind == RT_STEP_ZERO) {
            if (!in_arena(p, s->offset, s->bytes))
                return rt_errorf(err, errsize, "plan: step %d (%s): zeroed range outside the arena", i, what);
        } else {
            return rt_errorf(err, errsize, "plan: step %d (%s): unknown step kind %d", i, what, (int)s->kind);
        }
    }
    for (int i = 0; i < p->num_grads; i++) {
        const rt_plan_grad *g = &p->grads[i];
        if (!p->grads || g->dtype < 0 || g->dtype >= RT_DTYPE_COUNT || !in_arena(p, g->offset, g->bytes) ||
            g->ready_step < -1 || g->ready_step >= p->num_steps || g->use_step <= g->ready_step ||
            g->use_step > p->num_steps)
            return rt_errorf(err, errsize, "plan: gradient %d (%s) has a bad region or step range", i,
                             p->grads && g->name ? g->name : "?");
    }
    if (p->num_kernels > 0 && !p->kernel_names)
        return rt_errorf(err, errsize, "plan: kernels without names");
    return 0;
}

int rt_device_new(const rt_plan *p, rt_device **out, char *err, size_t errsize) {
    *out = NULL;
    if (rt_plan_check(p, err, errsize)) return -1;
    if (rt_plan_is_cuda(p)) return rt_device_cuda_new(p, out, err, errsize);
    if (p->num_kernels > 0 && !p->emu_kernels)
        return rt_errorf(err, errsize, "plan: %d kernels but neither GPU code nor emulated kernels", p->num_kernels);
    return rt_device_emu_new(p, out, err, errsize);
}

void rt_device_free(rt_device *d) {
    if (d) d->destroy(d);
}

static int run_steps(rt_device *d, int nsteps) {
    const rt_plan *p = d->plan;
    int hooks = d->step_hook && nsteps == p->num_steps; /* the whole step: its gradients are all-reduced */
    if (hooks && d->step_hook(d, -1, 1)) return -1;
    for (int i = 0; i < nsteps; i++) {
        const rt_plan_step *s = &p->steps[i];
        int rc = 0;
        double ms = 0;
        if (hooks && d->step_hook(d, i, 0)) return -1;
        if (d->profile_ms && d->timer_start(d)) return -1;
        if (s->kind == RT_STEP_KERNEL) rc = d->launch(d, i);
        else if (s->kind == RT_STEP_GEMM) rc = d->gemm(d, i);
        else rc = d->zero(d, s->offset, s->bytes);
        if (rc) return -1;
        if (hooks && d->step_hook(d, i, 1)) return -1;
        if (d->profile_ms) {
            if (d->timer_stop(d, &ms)) return -1;
            d->profile_ms[i] += ms;
        }
    }
    if (hooks && d->step_hook(d, nsteps, 0)) return -1;
    return 0;
}

int rt_device_run_forward(rt_device *d) {
    const rt_plan *p = d->plan;
    return run_steps(d, p->num_eval_steps > 0 && p->num_eval_steps <= p->num_steps ? p->num_eval_steps : p->num_steps);
}

int rt_device_run(rt_device *d, int use_graph) {
    if (!use_graph || !d->capture_begin || d->profile_ms) return run_steps(d, d->plan->num_steps);
    if (!d->captured) {
        if (d->capture_begin(d)) return -1;
        if (run_steps(d, d->plan->num_steps)) {
            char saved[sizeof d->err];
            memcpy(saved, d->err, sizeof saved);
            d->capture_end(d); /* ends the broken capture; its error is secondary */
            memcpy(d->err, saved, sizeof saved);
            return -1;
        }
        if (d->capture_end(d)) return -1;
        d->captured = 1;
    }
    return d->replay(d);
}
