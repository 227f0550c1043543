/* onnx_ops.c: the per-op importers of the ONNX reader (see onnx.c): one lower_* function per
 * ONNX op type (or family) turns a node into IR through the builders of onnx_patterns.c, or
 * into a folded constant when all its inputs are constant. onnx.c's lower_node dispatches on
 * the op type.
 */
#ifdef DEITC_HAVE_ONNX
#include "frontend/onnx_internal.h"

/* ---- the lowering of one node ----------------------------------------------------------- */

static int unsupported(octx *c, const char *why) {
    return fe_ox_fail(c, "%s", why);
}

/* Reshape target: ONNX rules for 0 (copy, unless allowzero) and -1 (infer). */
int fe_ox_reshape_target(octx *c, const oval *x, const int64_t *spec, int n, int allowzero, int64_t *out) {
    int infer = -1;
    int64_t known = 1;
    char s0[128];
    if (n > IR_MAX_DIMS) return fe_ox_fail(c, "reshape to %d dimensions (at most %d)", n, IR_MAX_DIMS);
    for (int i = 0; i < n; i++) {
        int64_t d = spec[i];
        if (d == 0 && !allowzero) {
            if (i >= x->ndim) return fe_ox_fail(c, "reshape copies dimension %d of a rank-%d input", i, x->ndim);
            d = x->shape[i];
        }
        if (d == -1) {
            if (infer >= 0) return fe_ox_fail(c, "reshape has two -1 dimensions");
            infer = i;
            d = 1;
        } else if (d < 0) {
            return fe_ox_fail(c, "reshape to a negative dimension %lld", (long long)d);
        }
        out[i] = d;
        if (__builtin_mul_overflow(known, d, &known)) return fe_ox_fail(c, "reshape overflows");
    }
    if (infer >= 0) {
        if (known == 0 || x->numel % known)
            return fe_ox_fail(c, "cannot reshape %s (%lld elements) with -1", fe_ox_shape_str(x->ndim, x->shape, s0, sizeof s0), (long long)x->numel);
        out[infer] = x->numel / known;
    } else if (known != x->numel) {
        char s1[128];
        return fe_ox_fail(c, "cannot reshape %s into %s", fe_ox_shape_str(x->ndim, x->shape, s0, sizeof s0), fe_ox_shape_str(n, out, s1, sizeof s1));
    }
    return 0;
}

/* Makes out = x reshaped (constant, weight or runtime). */
int fe_ox_set_reshaped(octx *c, oval *x, int ndim, const int64_t *shape, oval *out) {
    if (fe_ox_is_const(x)) return fe_ox_fold_reshape(c, x, ndim, shape, out);
    int id = fe_ox_b_reshape(c, fe_ox_ir_of(c, x), ndim, shape);
    if (id < 0) return -1;
    fe_ox_val_set_ir(c, out, id);
    return 0;
}

/* axes from input k (opset >= since) or attribute "axes"; returns count or -2 on error, -1 absent */
static int get_axes(octx *c, onode *o, int k, int since, int64_t *axes, int max) {
    if (c->opset >= since) {
        if (o->nin <= k || !o->in[k]) return -1;
        return fe_ox_const_ints(c, o->in[k], axes, max, "axes");
    }
    return fe_ox_attr_ints(c, "axes", axes, max);
}

int fe_ox_lower_squeeze(octx *c, onode *o, int unsq) {
    oval *x = o->in[0];
    int64_t axes[IR_MAX_DIMS * 2];
    int na = get_axes(c, o, 1, 13, axes, IR_MAX_DIMS);
    if (na == -2) return -1;
    int64_t shape[IR_MAX_DIMS * 2];
    int n = 0;
    if (unsq) {
        if (na < 0) return fe_ox_fail(c, "Unsqueeze needs axes");
        int r = x->ndim + na, mark[IR_MAX_DIMS * 2] = {0};
        if (r > IR_MAX_DIMS) return fe_ox_fail(c, "result has %d dimensions (at most %d)", r, IR_MAX_DIMS);
        for (int i = 0; i < na; i++) {
            if (fe_ox_norm_axis(c, &axes[i], r, "axis")) return -1;
            if (mark[axes[i]]++) return fe_ox_fail(c, "axis %lld repeated", (long long)axes[i]);
        }
        for (int i = 0, j = 0; i < r; i++) shape[n++] = mark[i] ? 1 : x->shape[j++];
    } else {
        int mark[IR_MAX_DIMS] = {0};
        for (int i = 0; i < na; i++) {
            if (fe_ox_norm_axis(c, &axes[i], x->ndim, "axis")) return -1;
            if (x->shape[axes[i]] != 1) return fe_ox_fail(c, "cannot squeeze axis %lld of size %lld", (long long)axes[i], (long long)x->shape[axes[i]]);
            mark[axes[i]] = 1;
        }
        for (int i = 0; i < x->ndim; i++)
            if (!(na < 0 ? x->shape[i] == 1 : mark[i])) shape[n++] = x->shape[i];
    }
    return fe_ox_set_reshaped(c, x, n, shape, o->out[0]);
}

/* ONNX slice range clamping for one axis (step != 0); count of elements */
static int64_t slice_range(int64_t dim, int64_t *start, int64_t end, int64_t step) {
    int64_t s = *start, e = end;
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (step > 0) {
        s = s < 0 ? 0 : s > dim ? dim : s;
        e = e < 0 ? 0 : e > dim ? dim : e;
        *start = s;
        return e > s ? (e - s + step - 1) / step : 0;
    }
    s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
    e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
    *start = s;
    return s > e ? (s - e + (-step) - 1) / (-step) : 0;
}

/* Takes [start, start+count) of x along axis (step 1) as a constant or IR SLICE. */
static int take_range(octx *c, oval *x, int axis, int64_t start, int64_t count, int64_t step, oval *out) {
    if (fe_ox_is_const(x)) return fe_ox_fold_slice(c, x, axis, start, count, step, out);
    if (step != 1) return fe_ox_fail(c, "slices with step %lld of runtime tensors are not supported", (long long)step);
    if (count <= 0) return fe_ox_fail(c, "empty slice of a runtime tensor");
    int id = fe_ox_ir_of(c, x);
    if (id < 0) return -1;
    if (start != 0 || count != x->shape[axis]) {
        ir_attrs a = {0};
        a.axis = axis;
        a.start = start;
        a.end = start + count;
        id = fe_ox_b_node(c, IR_OP_SLICE, &id, 1, &a, 0, NULL);
        if (id < 0) return -1;
    }
    fe_ox_val_set_ir(c, out, id);
    return 0;
}

int fe_ox_lower_slice(octx *c, onode *o) {
    int64_t starts[IR_MAX_DIMS], ends[IR_MAX_DIMS], axes[IR_MAX_DIMS], steps[IR_MAX_DIMS];
    int ns, ne, na = -1, nst = -1;
    oval *x = o->in[0];
    if (c->opset >= 10) {
        if (o->nin < 3 || !o->in[1] || !o->in[2]) return fe_ox_fail(c, "Slice needs starts and ends");
        if ((ns = fe_ox_const_ints(c, o->in[1], starts, IR_MAX_DIMS, "starts")) < 0) return -1;
        if ((ne = fe_ox_const_ints(c, o->in[2], ends, IR_MAX_DIMS, "ends")) < 0) return -1;
        if (o->nin > 3 && o->in[3] && (na = fe_ox_const_ints(c, o->in[3], axes, IR_MAX_DIMS, "axes")) < -1) return -1;
        if (o->nin > 4 && o->in[4] && (nst = fe_ox_const_ints(c, o->in[4], steps, IR_MAX_DIMS, "steps")) < -1) return -1;
    } else {
        if ((ns = fe_ox_attr_ints(c, "starts", starts, IR_MAX_DIMS)) < 0 || (ne = fe_ox_attr_ints(c, "ends", ends, IR_MAX_DIMS)) < 0)
            return c->failed ? -1 : fe_ox_fail(c, "Slice needs starts and ends");
        if ((na = fe_ox_attr_ints(c, "axes", axes, IR_MAX_DIMS)) == -2) return -1;
    }
    if (ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return fe_ox_fail(c, "starts, ends, axes and steps differ in length");
    oval cur = *x, tmp;
    oval *src = x;
    /* chain one slice per axis through temporaries owned here */
    float *ownf = NULL;
    int64_t *owni = NULL;
    int rc = 0;
    for (int k = 0; k < ns && !rc; k++) {
        int64_t ax = na >= 0 ? axes[k] : k, st = nst >= 0 ? steps[k] : 1, s = starts[k];
        if (st == 0) { rc = fe_ox_fail(c, "slice step 0"); break; }
        if (fe_ox_norm_axis(c, &ax, src->ndim, "axis")) { rc = -1; break; }
        int64_t cnt = slice_range(src->shape[ax], &s, ends[k], st);
        memset(&tmp, 0, sizeof tmp);
        tmp.name = o->out[0]->name;
        tmp.ir = -1;
        rc = take_range(c, src, (int)ax, s, cnt, st, &tmp);
        free(ownf);
        free(owni);
        ownf = tmp.f, owni = tmp.i;
        cur = tmp;
        src = &cur;
    }
    if (rc) {
        free(ownf);
        free(owni);
        return -1;
    }
    if (src == x) { /* no axes: a copy */
        if (fe_ox_is_const(x)) return fe_ox_fold_reshape(c, x, x->ndim, x->shape, o->out[0]);
        int id = fe_ox_ir_of(c, x);
        if (id < 0) return -1;
        fe_ox_val_set_ir(c, o->out[0], id);
        return 0;
    }
    const char *nm = o->out[0]->name;
    *o->out[0] = cur; /* takes over the temporaries */
    o->out[0]->name = nm;
    return 0;
}

int fe_ox_lower_split(octx *c, onode *o) {
    oval *x = o->in[0];
    int64_t axis = fe_ox_attr_i(c->node, "axis", 0);
    if (fe_ox_norm_axis(c, &axis, x->ndim, "axis")) return -1;
    int64_t sizes[16];
    int n = -1;
    if (c->opset >= 13 && o->nin > 1 && o->in[1]) {
        if ((n = fe_ox_const_ints(c, o->in[1], sizes, 16, "split")) < 0) return -1;
    } else if (c->opset < 13) {
        if ((n = fe_ox_attr_ints(c, "split", sizes, 16)) == -2) return -1;
    }
    if (n < 0) { /* equal parts (opset 18: ceil) */
        n = o->nout;
        int64_t d = x->shape[axis], part = (d + n - 1) / n;
        for (int i = 0; i < n; i++) sizes[i] = i < n - 1 ? part : d - part * (n - 1);
    }
    if (n != o->nout) return fe_ox_fail(c, "split into %d parts for %d outputs", n, o->nout);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (sizes[i] < 0 || at + sizes[i] > x->shape[axis]) return fe_ox_fail(c, "split sizes exceed dimension %lld", (long long)x->shape[axis]);
        if (o->out[i] && take_range(c, x, (int)axis, at, sizes[i], 1, o->out[i])) return -1;
        at += sizes[i];
    }
    if (at != x->shape[axis]) return fe_ox_fail(c, "split sizes sum to %lld, not %lld", (long long)at, (long long)x->shape[axis]);
    return 0;
}

int fe_ox_lower_gather(octx *c, onode *o) {
    oval *x = o->in[0], *ind = o->in[1];
    int64_t axis = fe_ox_attr_i(c->node, "axis", 0);
    if (fe_ox_norm_axis(c, &axis, x->ndim, "axis")) return -1;
    if (!fe_ox_is_const(ind)) return unsupported(c, "Gather with indices computed at run time is not supported");
    if (ind->ndim > 1) return unsupported(c, "Gather with indices of rank > 1 is not supported");
    int64_t dim = x->shape[axis], ni = ind->numel;
    int64_t idx[16];
    if (ni > 16 && !fe_ox_is_const(x)) return fe_ox_fail(c, "Gather of more than 16 indices of a runtime tensor");
    /* result shape: x.shape[:axis] + ind.shape + x.shape[axis+1:] */
    int r = x->ndim - 1 + ind->ndim;
    if (r > IR_MAX_DIMS) return fe_ox_fail(c, "result has too many dimensions");
    int64_t shape[IR_MAX_DIMS];
    for (int i = 0, j = 0; i < x->ndim; i++) {
        if (i == axis) {
            if (ind->ndim) shape[j++] = ni;
        } else {
            shape[j++] = x->shape[i];
        }
    }
    if (fe_ox_is_const(x)) {
        if (fe_ox_val_set_const(c, o->out[0], x->etype, r, shape)) return -1;
        int64_t inner = 1, outer = 1;
        for (int i = (int)axis + 1; i < x->ndim; i++) inner *= x->shape[i];
        for (int i = 0; i < axis; i++) outer *= x->shape[i];
        for (int64_t a = 0; a < outer; a++)
            for (int64_t k = 0; k < ni; k++) {
                int64_t j = ind->i ? ind->i[k] : fe_ox_to_i64(ind->f[k]);
                if (j < 0) j += dim;
                if (j < 0 || j >= dim) return fe_ox_fail(c, "index %lld outside dimension %lld", (long long)j, (long long)dim);
                for (int64_t b = 0; b < inner; b++)
                    fe_ox_ccopy(o->out[0], (a * ni + k) * inner + b, x, (a * dim + j) * inner + b);
            }
        return 0;
    }
    for (int64_t k = 0; k < ni; k++) {
        idx[k] = ind->i ? ind->i[k] : fe_ox_to_i64(ind->f[k]);
        if (idx[k] < 0) idx[k] += dim;
        if (idx[k] < 0 || idx[k] >= dim) return fe_ox_fail(c, "index %lld outside dimension %lld", (long long)idx[k], (long long)dim);
    }
    if (ni == 0) return fe_ox_fail(c, "Gather of no indices");
    int xid = fe_ox_ir_of(c, x);
    int parts[16], np = 0;
    for (int64_t k = 0; k < ni;) { /* runs of consecutive indices become one slice each */
        int64_t e = k + 1;
        while (e < ni && idx[e] == idx[e - 1] + 1) e++;
        ir_attrs a = {0};
        a.axis = axis;
        a.start = idx[k];
        a.end = idx[e - 1] + 1;
        parts[np] = a.start == 0 && a.end == dim ? xid : fe_ox_b_node(c, IR_OP_SLICE, &xid, 1, &a, 0, NULL);
        if (parts[np++] < 0) return -1;
        k = e;
    }
    if (np > IR_MAX_INPUTS) return fe_ox_fail(c, "Gather of more than %d index runs of a runtime tensor", IR_MAX_INPUTS);
    int y = parts[0];
    if (np > 1) {
        ir_attrs a = {0};
        a.axis = axis;
        y = fe_ox_b_node(c, IR_OP_CONCAT, parts, np, &a, 0, NULL);
    }
    y = fe_ox_b_reshape(c, y, r, shape);
    if (y < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], y);
    return 0;
}

int fe_ox_lower_concat(octx *c, onode *o) {
    int64_t axis = fe_ox_attr_i(c->node, "axis", 0);
    oval *first = NULL;
    int all_const = 1, n = 0;
    for (int k = 0; k < o->nin; k++) {
        if (!o->in[k]) continue;
        if (!fe_ox_is_const(o->in[k])) all_const = 0;
        if (!first) first = o->in[k];
    }
    if (!first) return fe_ox_fail(c, "Concat of nothing");
    if (fe_ox_norm_axis(c, &axis, first->ndim, "axis")) return -1;
    int64_t shape[IR_MAX_DIMS];
    memcpy(shape, first->shape, sizeof shape);
    shape[axis] = 0;
    for (int k = 0; k < o->nin; k++) {
        oval *v = o->in[k];
        if (!v) continue;
        if (v->ndim != first->ndim) return fe_ox_fail(c, "Concat inputs differ in rank");
        for (int d = 0; d < v->ndim; d++)
            if (d != axis && v->shape[d] != first->shape[d]) return fe_ox_fail(c, "Concat inputs differ off the axis");
        shape[axis] += v->shape[axis];
    }
    if (all_const) {
        int et = first->etype;
        if (fe_ox_val_set_const(c, o->out[0], et, first->ndim, shape)) return -1;
        int64_t inner = 1, outer = 1, at = 0;
        for (int i = (int)axis + 1; i < first->ndim; i++) inner *= shape[i];
        for (int i = 0; i < axis; i++) outer *= shape[i];
        for (int k = 0; k < o->nin; k++) {
            oval *v = o->in[k];
            if (!v) continue;
            int64_t w = v->shape[axis] * inner;
            for (int64_t a = 0; a < outer; a++)
                for (int64_t j = 0; j < w; j++) fe_ox_ccopy(o->out[0], a * shape[axis] * inner + at + j, v, a * w + j);
            at += w;
        }
        return 0;
    }
    int in[IR_MAX_INPUTS];
    for (int k = 0; k < o->nin; k++) {
        if (!o->in[k] || o->in[k]->numel == 0) continue;
        if (n == IR_MAX_INPUTS) return fe_ox_fail(c, "Concat of more than %d runtime tensors", IR_MAX_INPUTS);
        if ((in[n++] = fe_ox_ir_of(c, o->in[k])) < 0) return -1;
    }
    int y = n == 1 ? in[0] : fe_ox_b_node(c, IR_OP_CONCAT, in, n, &(ir_attrs){.axis = axis}, 0, NULL);
    if (y < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], y);
    return 0;
}

int fe_ox_lower_expand(octx *c, onode *o) {
    oval *x = o->in[0];
    int64_t spec[IR_MAX_DIMS], shape[IR_MAX_DIMS];
    int n = o->nin > 1 && o->in[1] ? fe_ox_const_ints(c, o->in[1], spec, IR_MAX_DIMS, "shape") : (fe_ox_fail(c, "Expand needs a shape"), -2);
    if (n < 0) return -1;
    int r;
    if (fe_ox_broadcast(c, x->ndim, x->shape, n, spec, &r, shape)) return -1;
    if (fe_ox_is_const(x)) {
        if (fe_ox_val_set_const(c, o->out[0], x->etype, r, shape)) return -1;
        int64_t idx[IR_MAX_DIMS];
        for (int64_t k = 0; k < o->out[0]->numel; k++) {
            fe_ox_unravel(k, r, shape, idx);
            fe_ox_ccopy(o->out[0], k, x, fe_ox_bcast_index(x, r, idx));
        }
        return 0;
    }
    int id = fe_ox_ir_of(c, x);
    if (id < 0) return -1;
    /* kept even when it changes nothing (batch 1), as the YAML frontend's cls_token expand */
    id = fe_ox_b_node(c, IR_OP_EXPAND, &id, 1, NULL, r, shape);
    if (id < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], id);
    return 0;
}

int fe_ox_lower_transpose(octx *c, onode *o) {
    oval *x = o->in[0];
    int64_t perm[IR_MAX_DIMS];
    int n = fe_ox_attr_ints(c, "perm", perm, IR_MAX_DIMS);
    if (n == -2) return -1;
    if (n < 0) {
        n = x->ndim;
        for (int i = 0; i < n; i++) perm[i] = n - 1 - i;
    }
    int seen[IR_MAX_DIMS] = {0};
    if (n != x->ndim) return fe_ox_fail(c, "perm has %d entries for rank %d", n, x->ndim);
    for (int i = 0; i < n; i++)
        if (perm[i] < 0 || perm[i] >= n || seen[perm[i]]++) return fe_ox_fail(c, "perm is not a permutation");
    if (fe_ox_is_const(x)) {
        int64_t shape[IR_MAX_DIMS], idx[IR_MAX_DIMS], src[IR_MAX_DIMS];
        for (int i = 0; i < n; i++) shape[i] = x->shape[perm[i]];
        if (fe_ox_val_set_const(c, o->out[0], x->etype, n, shape)) return -1;
        for (int64_t k = 0; k < o->out[0]->numel; k++) {
            fe_ox_unravel(k, n, shape, idx);
            for (int i = 0; i < n; i++) src[perm[i]] = idx[i];
            int64_t j = 0;
            for (int i = 0; i < n; i++) j = j * x->shape[i] + src[i];
            fe_ox_ccopy(o->out[0], k, x, j);
        }
        return 0;
    }
    int id = fe_ox_b_permute(c, fe_ox_ir_of(c, x), perm);
    if (id < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], id);
    return 0;
}

/* Add/Sub/Mul/Div/Pow with at least one runtime operand */
int fe_ox_lower_arith(octx *c, const char *op, onode *o) {
    oval *a = o->in[0], *b = o->in[1];
    double ka = 0, kb = 0;
    int sa = fe_ox_is_const(a) && a->numel == 1 && a->f, sb = fe_ox_is_const(b) && b->numel == 1 && b->f;
    if (sa) ka = a->f[0];
    if (sb) kb = b->f[0];
    int y;
    /* a scalar constant keeps the other operand's shape only if it does not add dims */
    if (sa && a->ndim > b->ndim) sa = 0;
    if (sb && b->ndim > a->ndim) sb = 0;
    if (strcmp(op, "Pow") == 0) {
        if (!sb) return unsupported(c, "Pow with an exponent other than a constant scalar is not supported");
        int x = fe_ox_ir_of(c, a);
        if (kb == 1) y = x;
        else if (kb == 2) y = fe_ox_b_binary(c, IR_OP_MUL, x, x);
        else if (kb == 3) y = fe_ox_b_binary(c, IR_OP_MUL, x, fe_ox_b_binary(c, IR_OP_MUL, x, x));
        else if (kb == 0.5) y = fe_ox_b_node(c, IR_OP_SQRT, &x, 1, NULL, 0, NULL);
        else return fe_ox_fail(c, "Pow with exponent %g is not supported (only 0.5, 1, 2 and 3)", kb);
    } else if (strcmp(op, "Mul") == 0 && (sa || sb)) {
        y = fe_ox_b_scale(c, fe_ox_ir_of(c, sa ? b : a), sa ? ka : kb);
    } else if (strcmp(op, "Div") == 0 && sb) {
        if (kb == 0) return fe_ox_fail(c, "division by the constant 0");
        y = fe_ox_b_scale(c, fe_ox_ir_of(c, a), 1.0 / kb);
    } else if ((strcmp(op, "Add") == 0 && (sa || sb)) || (strcmp(op, "Sub") == 0 && sb)) {
        double k = sa ? ka : strcmp(op, "Sub") == 0 ? -kb : kb;
        int x = fe_ox_ir_of(c, sa ? b : a);
        y = k == 0 ? x : fe_ox_b_binary(c, IR_OP_ADD, x, fe_ox_b_const(c, k, 0, NULL));
    } else {
        ir_op irop = strcmp(op, "Add") == 0 ? IR_OP_ADD : strcmp(op, "Sub") == 0 ? IR_OP_SUB
                   : strcmp(op, "Mul") == 0 ? IR_OP_MUL : IR_OP_DIV;
        y = fe_ox_b_binary(c, irop, fe_ox_ir_of(c, a), fe_ox_ir_of(c, b));
    }
    if (y < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], y);
    return 0;
}

int fe_ox_lower_conv(octx *c, onode *o) {
    oval *x = o->in[0], *w = o->in[1], *bias = o->nin > 2 ? o->in[2] : NULL;
    char s0[128], s1[128];
    if (x->ndim != 4 || !w || w->ndim != 4 || w->shape[1] != x->shape[1] || w->shape[2] != w->shape[3])
        return fe_ox_fail(c, "only 2-D Conv with square kernels is supported (input %s, weight %s)",
                    fe_ox_shape_str(x->ndim, x->shape, s0, sizeof s0), w ? fe_ox_shape_str(w->ndim, w->shape, s1, sizeof s1) : "none");
    int64_t p = w->shape[2], v[8];
    int n;
    if ((n = fe_ox_attr_ints(c, "strides", v, 8)) == -2) return -1;
    if (n != 2 || v[0] != p || v[1] != p)
        return unsupported(c, "only Conv with stride equal to the kernel (a patch embedding) is supported");
    if ((n = fe_ox_attr_ints(c, "pads", v, 8)) == -2) return -1;
    for (int i = 0; i < n; i++)
        if (v[i]) return unsupported(c, "Conv with padding is not supported");
    if ((n = fe_ox_attr_ints(c, "dilations", v, 8)) == -2) return -1;
    for (int i = 0; i < n; i++)
        if (v[i] != 1) return unsupported(c, "Conv with dilation is not supported");
    if ((n = fe_ox_attr_ints(c, "kernel_shape", v, 8)) == -2) return -1;
    if (n >= 0 && (n != 2 || v[0] != p || v[1] != p)) return fe_ox_fail(c, "kernel_shape disagrees with the weight");
    char ap[32];
    fe_ox_attr_s(c->node, "auto_pad", ap, sizeof ap);
    if (*ap && strcmp(ap, "NOTSET") && strcmp(ap, "VALID")) return unsupported(c, "Conv with auto_pad SAME is not supported");
    if (fe_ox_attr_i(c->node, "group", 1) != 1) return unsupported(c, "grouped Conv is not supported");
    if (x->shape[2] % p || x->shape[3] % p)
        return fe_ox_fail(c, "image %s is not divisible into %lldx%lld patches", fe_ox_shape_str(4, x->shape, s0, sizeof s0), (long long)p, (long long)p);
    int64_t D = w->shape[0], B = x->shape[0], h = x->shape[2] / p, ww = x->shape[3] / p;
    /* as fe_patch_embed: W [D,C,P,P] -> [D,C*P*P]; patches [B,h*w,C*P*P] @ W^T + b */
    int wid = fe_ox_ir_of(c, w);
    int64_t w2[2] = {D, w->shape[1] * p * p};
    wid = fe_ox_b_reshape(c, wid, 2, w2);
    int xid = fe_ox_ir_of(c, x);
    ir_attrs pa = {0};
    pa.patch = p;
    int pt = xid < 0 ? -1 : fe_ox_b_node(c, IR_OP_PATCHIFY, &xid, 1, &pa, 0, NULL);
    int y = fe_ox_b_matmul(c, pt, wid, 0, 1, 1.0);
    if (bias) {
        if (bias->ndim != 1 || bias->shape[0] != D) return fe_ox_fail(c, "Conv bias must be [%lld]", (long long)D);
        y = fe_ox_b_binary(c, IR_OP_ADD, y, fe_ox_ir_of(c, bias));
    }
    /* [B,h*w,D] -> [B,D,h*w] -> [B,D,h,w]; a following flatten+transpose undoes both */
    y = fe_ox_b_permute(c, y, (const int64_t[]){0, 2, 1});
    y = fe_ox_b_reshape(c, y, 4, (const int64_t[]){B, D, h, ww});
    if (y < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], y);
    return 0;
}

int fe_ox_lower_matmul(octx *c, onode *o, int gemm) {
    oval *a = o->in[0], *b = o->in[1];
    if (!a || !b) return fe_ox_fail(c, "needs two operands");
    if (a->ndim < 2 || b->ndim < 2) return unsupported(c, "MatMul of 1-D operands is not supported");
    int ta = gemm ? (int)fe_ox_attr_i(c->node, "transA", 0) : 0, tb = gemm ? (int)fe_ox_attr_i(c->node, "transB", 0) : 0;
    double alpha = gemm ? fe_ox_attr_f(c->node, "alpha", 1.0) : 1.0, beta = gemm ? fe_ox_attr_f(c->node, "beta", 1.0) : 1.0;
    int y = fe_ox_b_matmul(c, fe_ox_ir_of(c, a), fe_ox_ir_of(c, b), ta, tb, alpha);
    if (gemm && o->nin > 2 && o->in[2] && beta != 0) {
        int cc = fe_ox_ir_of(c, o->in[2]);
        cc = beta == 1 ? cc : fe_ox_b_scale(c, cc, beta);
        y = fe_ox_b_binary(c, IR_OP_ADD, y, cc);
    }
    if (y < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], y);
    return 0;
}

int fe_ox_lower_reduce_mean(octx *c, onode *o) {
    oval *x = o->in[0];
    int64_t axes[IR_MAX_DIMS];
    int na = get_axes(c, o, 1, 18, axes, IR_MAX_DIMS);
    if (na == -2) return -1;
    int keep = (int)fe_ox_attr_i(c->node, "keepdims", 1);
    if (na <= 0) { /* no axes: all of them, or none with noop_with_empty_axes */
        if (fe_ox_attr_i(c->node, "noop_with_empty_axes", 0)) return fe_ox_lower_alias(c, o);
        na = x->ndim;
        for (int i = 0; i < na; i++) axes[i] = i;
    }
    int mark[IR_MAX_DIMS] = {0};
    int y = fe_ox_ir_of(c, x);
    for (int i = 0; i < na; i++) {
        if (fe_ox_norm_axis(c, &axes[i], x->ndim, "axis")) return -1;
        if (mark[axes[i]]++) continue;
        ir_attrs a = {0};
        a.axis = axes[i];
        y = fe_ox_b_node(c, IR_OP_REDUCE_MEAN, &y, 1, &a, 0, NULL);
    }
    if (y < 0) return -1;
    if (!keep) {
        int64_t shape[IR_MAX_DIMS];
        int n = 0;
        for (int i = 0; i < x->ndim; i++)
            if (!mark[i]) shape[n++] = x->shape[i];
        if (n == 0) shape[n++] = 1;
        y = fe_ox_b_reshape(c, y, n, shape);
    }
    if (y < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], y);
    return 0;
}

int fe_ox_lower_layer_norm(octx *c, onode *o) {
    oval *x = o->in[0], *scale = o->nin > 1 ? o->in[1] : NULL, *bias = o->nin > 2 ? o->in[2] : NULL;
    int64_t axis = fe_ox_attr_i(c->node, "axis", -1);
    if (fe_ox_norm_axis(c, &axis, x->ndim, "axis")) return -1;
    if (axis != x->ndim - 1) return unsupported(c, "LayerNormalization over more than the last axis is not supported");
    int64_t D = x->shape[x->ndim - 1];
    if (!scale || scale->ndim != 1 || scale->shape[0] != D || (bias && (bias->ndim != 1 || bias->shape[0] != D)))
        return fe_ox_fail(c, "LayerNormalization scale and bias must be [%lld]", (long long)D);
    double eps = fe_ox_attr_f(c->node, "epsilon", 1e-5);
    if (!(eps > 0)) return fe_ox_fail(c, "epsilon must be positive");
    ir_attrs a = {0};
    a.eps = eps;
    int in[3] = {fe_ox_ir_of(c, x), fe_ox_ir_of(c, scale), bias ? fe_ox_ir_of(c, bias) : fe_ox_b_const(c, 0, 1, &D)};
    int y = fe_ox_b_node(c, IR_OP_LAYER_NORM, in, 3, &a, 0, NULL);
    if (y < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], y);
    return 0;
}

int fe_ox_lower_softmax(octx *c, onode *o) {
    oval *x = o->in[0];
    const Onnx__AttributeProto *given = fe_ox_attr(c->node, "axis");
    int64_t axis = fe_ox_attr_i(c->node, "axis", c->opset >= 13 ? -1 : 1), asked = axis;
    if (fe_ox_norm_axis(c, &axis, x->ndim, "axis")) return -1;
    /* before opset 13, axis a means softmax over the flattened dims a.. (the same when last) */
    if (axis != x->ndim - 1) {
        char s[128];
        return fe_ox_fail(c, "Softmax over axis %lld%s of a %s tensor is not supported (only over "
                    "the last axis)", (long long)asked,
                    given && given->has_i ? "" : c->opset >= 13 ? " (the default)" : " (the default before opset 13)",
                    fe_ox_shape_str(x->ndim, x->shape, s, sizeof s));
    }
    int id = fe_ox_ir_of(c, x);
    id = fe_ox_b_node(c, IR_OP_SOFTMAX, &id, 1, NULL, 0, NULL);
    if (id < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], id);
    return 0;
}

int fe_ox_lower_unary(octx *c, onode *o, ir_op op, int gelu_tanh) {
    int id = fe_ox_ir_of(c, o->in[0]);
    ir_attrs a = {0};
    a.gelu_tanh = gelu_tanh;
    id = fe_ox_b_node(c, op, &id, 1, &a, 0, NULL);
    if (id < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], id);
    return 0;
}

/* Tanh of a runtime tensor: only inside the tanh GELU (see is_tanh_marker) */
int fe_ox_lower_tanh(octx *c, onode *o) {
    int u = fe_ox_ir_of(c, o->in[0]);
    if (u < 0) return -1;
    int x = fe_ox_tanh_gelu_arg(c, u);
    if (x < 0)
        return unsupported(c, "Tanh is supported only inside the tanh-approximate GELU "
                              "0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), and its input "
                              "is not sqrt(2/pi) * (x + 0.044715 * x^3)");
    ir_attrs a = {0};
    a.gelu_tanh = 1; /* the marker */
    int id = fe_ox_b_node(c, IR_OP_ERF, &x, 1, &a, 0, NULL);
    if (id < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], id);
    return 0;
}

/* out = in (Identity, Dropout at inference, Cast between float types) */
int fe_ox_lower_alias(octx *c, onode *o) {
    oval *x = o->in[0];
    if (fe_ox_is_const(x)) return fe_ox_fold_reshape(c, x, x->ndim, x->shape, o->out[0]);
    int id = fe_ox_ir_of(c, x);
    if (id < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], id);
    return 0;
}

/* Identity of a weight: torch's export (eval mode) keeps one initializer of several with equal
 * values and makes the others Identity nodes of it: norm2.weight = Identity(norm1.weight) when
 * both are ones, every zero bias an Identity of one of them (a fresh timm model). They are
 * separate parameters: each becomes a trainable weight of its own, named by the Identity's
 * output (the PyTorch name), with a copy of the data. */
int fe_ox_lower_identity(octx *c, onode *o) {
    oval *x = o->in[0], *v = o->out[0];
    if (!(x->kind == VAL_CONST && x->weight)) return fe_ox_lower_alias(c, o);
    v->kind = VAL_CONST;
    v->etype = x->etype;
    v->ndim = x->ndim;
    memcpy(v->shape, x->shape, sizeof v->shape);
    v->numel = x->numel;
    v->weight = 1;
    /* each copy is as big as its weight: all of them together may not outgrow the model's
     * initializers (plus 64 MiB), or a few nodes could multiply a large weight */
    int64_t bytes = (int64_t)sizeof(float) * x->numel;
    if ((c->copied += bytes) > c->init_bytes + ((int64_t)64 << 20))
        return fe_ox_fail(c, "the Identity copies of weights exceed the initializers' own %lld bytes", (long long)c->init_bytes);
    v->f = malloc((size_t)bytes);
    if (!v->f) return fe_ox_fail(c, "out of memory copying weight '%s' (%lld bytes)", x->name, (long long)bytes);
    memcpy(v->f, x->f, (size_t)bytes);
    return 0;
}

/* Cast to `to` (Cast's attribute, or CastLike's second input's type) */
static int lower_cast_to(octx *c, onode *o, int to) {
    oval *x = o->in[0];
    if (!etype_size(to)) return fe_ox_fail(c, "Cast to %s is not supported", etype_name(to));
    if (fe_ox_is_const(x)) {
        if (fe_ox_val_set_const(c, o->out[0], to, x->ndim, x->shape)) return -1;
        for (int64_t k = 0; k < x->numel; k++) {
            double v = fe_ox_cget(x, k);
            if (x->i && !etype_is_float(to)) o->out[0]->i[k] = to == OT_BOOL ? x->i[k] != 0 : x->i[k];
            else fe_ox_cset(o->out[0], k, to == OT_BOOL ? v != 0 : etype_is_float(to) ? v : trunc(v));
        }
        return 0;
    }
    if (!etype_is_float(to)) return unsupported(c, "Cast of a runtime tensor to an integer type is not supported");
    return fe_ox_lower_alias(c, o); /* the graph computes in f32; precision is a later pass */
}

int fe_ox_lower_cast(octx *c, onode *o) { return lower_cast_to(c, o, (int)fe_ox_attr_i(c->node, "to", 0)); }

/* CastLike(x, like) (opset 15; torch's dynamo export with optimize=False): x cast to the type
 * of `like`, a constant's element type, or float for a runtime tensor (the graph's f32) */
int fe_ox_lower_cast_like(octx *c, onode *o) {
    oval *like = o->nin > 1 ? o->in[1] : NULL;
    if (!like) return fe_ox_fail(c, "CastLike needs a second input (the type to cast to)");
    return lower_cast_to(c, o, like->kind == VAL_CONST ? like->etype : OT_FLOAT);
}

/* Attention (opset 23; torch's scaled_dot_product_attention exported at opset 23): Q, K, V
 * [B,H,S,hd] -> softmax(scale * Q K^T) V, built as fe_attention builds timm's attention
 * (MATMUL with trans_b and alpha, SOFTMAX, MATMUL), so that the fusion passes see one shape */
int fe_ox_lower_attention(octx *c, onode *o) {
    if (o->nin < 3 || !o->in[1] || !o->in[2]) return fe_ox_fail(c, "Attention needs Q, K and V");
    for (int k = 3; k < o->nin; k++)
        if (o->in[k]) return unsupported(c, "Attention with a mask or a key/value cache is not supported");
    for (int k = 1; k < o->nout; k++)
        if (o->out[k]) return unsupported(c, "Attention's present key/value and qk outputs are not supported");
    oval *q = o->in[0], *kk = o->in[1], *v = o->in[2];
    char s0[128];
    if (q->ndim != 4 || kk->ndim != 4 || v->ndim != 4)
        return fe_ox_fail(c, "Attention is supported on 4-D [batch, heads, sequence, head size] inputs only "
                       "(Q is %s)", fe_ox_shape_str(q->ndim, q->shape, s0, sizeof s0));
    if (fe_ox_attr_i(c->node, "is_causal", 0)) return unsupported(c, "causal Attention is not supported");
    if (fe_ox_attr_f(c->node, "softcap", 0.0) != 0.0) return unsupported(c, "Attention with softcap is not supported");
    if (fe_ox_attr_i(c->node, "qk_matmul_output_mode", 0) != 0)
        return fe_ox_fail(c, "Attention's qk_matmul_output_mode %lld is not supported",
                    (long long)fe_ox_attr_i(c->node, "qk_matmul_output_mode", 0));
    if (q->shape[1] != kk->shape[1] || kk->shape[1] != v->shape[1])
        return unsupported(c, "grouped-query Attention (fewer key/value heads) is not supported");
    double scale = fe_ox_attr_f(c->node, "scale", 1.0 / sqrt((double)q->shape[3]));
    int att = fe_ox_b_matmul(c, fe_ox_ir_of(c, q), fe_ox_ir_of(c, kk), 0, 1, scale);
    att = att < 0 ? -1 : fe_ox_b_node(c, IR_OP_SOFTMAX, &att, 1, NULL, 0, NULL);
    int y = fe_ox_b_matmul(c, att, fe_ox_ir_of(c, v), 0, 0, 1.0);
    if (y < 0) return -1;
    fe_ox_val_set_ir(c, o->out[0], y);
    return 0;
}

int fe_ox_lower_flatten(octx *c, onode *o) {
    oval *x = o->in[0];
    int64_t axis = fe_ox_attr_i(c->node, "axis", 1);
    if (axis < -x->ndim || axis > x->ndim) return fe_ox_fail(c, "axis %lld out of range", (long long)axis);
    if (axis < 0) axis += x->ndim;
    int64_t s[2] = {1, 1};
    for (int i = 0; i < x->ndim; i++) s[i >= axis] *= x->shape[i];
    return fe_ox_set_reshaped(c, x, 2, s, o->out[0]);
}

#else
typedef int fe_onnx_not_built; /* ISO C wants a translation unit to declare something */
#endif
