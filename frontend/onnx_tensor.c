/* onnx_tensor.c: constant values of the ONNX reader (see onnx.c): the decoding of initializers
 * and Constant tensors (raw_data, typed fields, or external data files next to the model,
 * each byte of which may back one tensor only), the finiteness check of weights and
 * constants, the CPU folding of elementwise ops, reshapes and slices of constants, and the
 * lowering of the nodes that make constants (Constant, ConstantOfShape, Range, Shape).
 */
#ifdef DEITC_HAVE_ONNX
#include "frontend/onnx_internal.h"

/* ---- tensors ---------------------------------------------------------------------------- */

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        if (!man) {
            bits = sign;
        } else { /* subnormal */
            float f = ldexpf((float)man, -24);
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Element k of little-endian raw bytes of type t, as float or int64. */
static void raw_element(const uint8_t *p, int t, int64_t k, float *f, int64_t *i) {
    int sz = etype_size(t);
    const uint8_t *e = p + (size_t)k * (size_t)sz;
    uint64_t u = 0;
    memcpy(&u, e, (size_t)sz); /* little-endian host */
    switch (t) {
    case OT_FLOAT: { float x; memcpy(&x, e, 4); *f = x; break; }
    case OT_DOUBLE: { double x; memcpy(&x, e, 8); *f = (float)x; break; }
    case OT_FLOAT16: *f = half_to_float((uint16_t)u); break;
    case OT_BFLOAT16: { uint32_t b = (uint32_t)u << 16; memcpy(f, &b, 4); break; }
    case OT_INT8: *i = (int8_t)u; break;
    case OT_INT16: *i = (int16_t)u; break;
    case OT_INT32: *i = (int32_t)u; break;
    case OT_INT64: *i = (int64_t)u; break;
    case OT_BOOL: *i = u != 0; break;
    default: *i = (int64_t)u; break; /* unsigned types */
    }
}

static int fill_from_raw(oval *v, const uint8_t *p) {
    for (int64_t k = 0; k < v->numel; k++) raw_element(p, v->etype, k, v->f ? &v->f[k] : NULL, v->i ? &v->i[k] : NULL);
    return 0;
}

/* Opens the external data of tensor v (keys location, offset, length) and proves that the
 * file holds the `want` bytes the shape needs before anything is allocated for them. The
 * location must resolve (symbolic links followed) to a regular file inside the model's folder,
 * opened without blocking (a FIFO is refused), and no byte of it may back two tensors. Returns
 * the open descriptor, with the data's offset in *off and the file's path in full; -1 with
 * the reason. */
static int open_external(octx *c, const Onnx__TensorProto *t, const oval *v, size_t want, const char *what,
                         int64_t *off, char *full, size_t fullsize) {
    const char *loc = NULL;
    long long len = -1;
    *off = 0;
    for (size_t k = 0; k < t->n_external_data; k++) {
        const Onnx__StringStringEntryProto *e = t->external_data[k];
        if (!e || !e->key || !e->value) continue;
        char *end;
        if (strcmp(e->key, "location") == 0) {
            loc = e->value;
        } else if (strcmp(e->key, "offset") == 0 || strcmp(e->key, "length") == 0) {
            errno = 0;
            long long x = strtoll(e->value, &end, 10);
            if (errno || *end || x < 0)
                return fe_ox_fail(c, "%s '%s': external data %s '%s' is not a byte count", what, v->name, e->key, e->value);
            if (e->key[0] == 'o') *off = x; else len = x;
        }
    }
    if (!loc || !*loc) return fe_ox_fail(c, "%s '%s': external data without a location", what, v->name);
    if (loc[0] == '/' || strstr(loc, ".."))
        return fe_ox_fail(c, "%s '%s': external data location '%s' must be a path inside the model's folder",
                    what, v->name, loc);
    if (len >= 0 && (size_t)len != want)
        return fe_ox_fail(c, "%s '%s': external data length %lld, but shape %s of %s needs %zu bytes", what,
                    v->name, len, fe_ox_shape_str(v->ndim, v->shape, (char[128]){0}, 128), etype_name(v->etype), want);
    char real[PATH_MAX], why[1200];
    snprintf(full, fullsize, "%s%s", c->dir, loc);
    if (!c->realdir[0] && !realpath(c->dir[0] ? c->dir : ".", c->realdir))
        return fe_ox_fail(c, "%s '%s': cannot resolve the model's folder '%s': %s", what, v->name, c->dir[0] ? c->dir : ".",
                    strerror(errno));
    if (!realpath(full, real))
        return fe_ox_fail(c, "%s '%s': cannot open external data file '%s': %s", what, v->name, full, strerror(errno));
    size_t k = strlen(c->realdir);
    if (strncmp(real, c->realdir, k) != 0 || !(real[k] == '/' || real[k] == 0 || c->realdir[k - 1] == '/'))
        return fe_ox_fail(c, "%s '%s': external data file '%s' is '%s', outside the model's folder '%s' (a symbolic "
                    "link out of it): refused", what, v->name, full, real, c->realdir);
    int64_t size;
    int fd = rt_input_open(real, RT_INPUT_NOFOLLOW, &size, why, sizeof why);
    if (fd < 0) return fe_ox_fail(c, "%s '%s': external data %s", what, v->name, why);
    if (*off > size || want > (uint64_t)(size - *off)) {
        close(fd);
        return fe_ox_fail(c, "%s '%s': external data file '%s' has %lld bytes, but shape %s of %s needs %zu at offset %lld",
                    what, v->name, full, (long long)size, fe_ox_shape_str(v->ndim, v->shape, (char[128]){0}, 128),
                    etype_name(v->etype), want, (long long)*off);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int why_errno = errno;
        close(fd);
        return fe_ox_fail(c, "%s '%s': external data file '%s': %s", what, v->name, full, strerror(why_errno));
    }
    int e = 0;
    while (e < c->next && !(c->ext[e].dev == st.st_dev && c->ext[e].ino == st.st_ino)) e++;
    if (e == c->next) {
        ext_file *grown = c->next < OX_MAX_EXT_FILES ? realloc(c->ext, sizeof *c->ext * (size_t)(c->next + 1)) : NULL;
        if (!grown) {
            close(fd);
            return fe_ox_fail(c, "%s '%s': more than %d external data files (or out of memory)", what, v->name,
                        OX_MAX_EXT_FILES);
        }
        c->ext = grown;
        c->ext[c->next++] = (ext_file){st.st_dev, st.st_ino, size, 0};
    }
    if ((c->ext[e].used += (int64_t)want) > c->ext[e].size) {
        close(fd);
        return fe_ox_fail(c, "%s '%s': the tensors stored in external data file '%s' need more bytes than its %lld: "
                    "their data overlap", what, v->name, full, (long long)size);
    }
    return fd;
}

/* NaN is no value of a model; ±inf neither for a weight (training would spread it), and
 * the --init reader refuses the same. Scalar constants may be infinite (masks, clip bounds). */
int fe_ox_check_finite(octx *c, const oval *v, const char *what, int weight) {
    for (int64_t k = 0; v->f && k < v->numel; k++)
        if (isnan(v->f[k]) || (weight && isinf(v->f[k])))
            return fe_ox_fail(c, "%s '%s' holds a NaN or infinity at element %lld", what, v->name, (long long)k);
    return 0;
}

/* Decodes TensorProto t into constant v (already named). */
int fe_ox_tensor_decode(octx *c, const Onnx__TensorProto *t, oval *v, const char *what) {
    char s[128];
    if (t->n_dims > IR_MAX_DIMS)
        return fe_ox_fail(c, "%s '%s' has %zu dimensions (at most %d)", what, v->name, t->n_dims, IR_MAX_DIMS);
    int64_t numel = 1;
    for (size_t d = 0; d < t->n_dims; d++)
        if (t->dims[d] < 0 || __builtin_mul_overflow(numel, t->dims[d], &numel) || numel > OX_MAX_NUMEL)
            return fe_ox_fail(c, "%s '%s' has a bad shape", what, v->name);
    int et = t->data_type, sz = etype_size(et);
    if (!sz) return fe_ox_fail(c, "%s '%s' has element type %s (%d), which is not supported", what, v->name, etype_name(et), et);
    /* the data must be there before anything is allocated for it */
    size_t want = (size_t)numel * (size_t)sz;
    int external = t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    size_t have; /* bytes (raw_data, external data) or elements (typed fields) */
    const char *field;
    if (external) {
        have = want, field = "external data"; /* proven by open_external */
    } else if (t->has_raw_data) {
        have = t->raw_data.len, field = "raw_data";
    } else if (et == OT_FLOAT) {
        have = t->n_float_data, field = "float_data";
    } else if (et == OT_DOUBLE) {
        have = t->n_double_data, field = "double_data";
    } else if (et == OT_INT64) {
        have = t->n_int64_data, field = "int64_data";
    } else if (et == OT_UINT32 || et == OT_UINT64) {
        have = t->n_uint64_data, field = "uint64_data";
    } else {
        have = t->n_int32_data, field = "int32_data";
    }
    if (!external && !t->has_raw_data) {
        if (have != (size_t)numel)
            return fe_ox_fail(c, "%s '%s': %s holds %zu values, but shape %s needs %lld", what, v->name, field,
                        have, fe_ox_shape_str((int)t->n_dims, t->dims, s, sizeof s), (long long)numel);
    } else if (have != want) {
        return fe_ox_fail(c, "%s '%s': %s holds %zu bytes, but shape %s of %s needs %zu", what, v->name,
                    field, have, fe_ox_shape_str((int)t->n_dims, t->dims, s, sizeof s), etype_name(et), want);
    }
    if (numel > OX_MAX_FOLD && !(et == OT_FLOAT || etype_is_float(et)))
        return fe_ox_fail(c, "%s '%s': integer tensor of %lld elements is too large", what, v->name, (long long)numel);
    v->kind = VAL_CONST;
    v->etype = et;
    v->ndim = (int)t->n_dims;
    if (t->n_dims) memcpy(v->shape, t->dims, sizeof(int64_t) * t->n_dims);
    v->numel = numel;
    int64_t off = 0;
    char file[8192];
    int fd = external ? open_external(c, t, v, want, what, &off, file, sizeof file) : -1;
    if (external && fd < 0) return -1;
    /* allocate (float weights may exceed the folding limit): only sizes proven above */
    size_t n = (size_t)(numel ? numel : 1);
    if (etype_is_float(et)) v->f = malloc(n * sizeof(float));
    else v->i = malloc(n * sizeof(int64_t));
    uint8_t *raw = external && et != OT_FLOAT ? malloc(want ? want : 1) : NULL;
    if ((!v->f && !v->i) || (external && et != OT_FLOAT && !raw)) {
        free(raw);
        if (fd >= 0) close(fd);
        return fe_ox_fail(c, "%s '%s': out of memory for its %lld elements (shape %s)", what, v->name, (long long)numel,
                    fe_ox_shape_str((int)t->n_dims, t->dims, s, sizeof s));
    }
    if (external) { /* float data straight into place (little-endian host), others converted */
        char why[1200];
        int rc = rt_input_pread(fd, file, raw ? (void *)raw : (void *)v->f, want, off, why, sizeof why);
        close(fd);
        if (!rc && raw) fill_from_raw(v, raw);
        free(raw);
        if (rc) return fe_ox_fail(c, "%s '%s': external data: %s", what, v->name, why);
        return fe_ox_check_finite(c, v, what, 0);
    }
    if (t->has_raw_data) {
        fill_from_raw(v, t->raw_data.data);
        return fe_ox_check_finite(c, v, what, 0);
    }
    for (int64_t k = 0; k < numel; k++) {
        if (et == OT_FLOAT) v->f[k] = t->float_data[k];
        else if (et == OT_DOUBLE) v->f[k] = (float)t->double_data[k];
        else if (et == OT_INT64) v->i[k] = t->int64_data[k];
        else if (et == OT_UINT32 || et == OT_UINT64) v->i[k] = (int64_t)t->uint64_data[k];
        else if (et == OT_FLOAT16) v->f[k] = half_to_float((uint16_t)t->int32_data[k]);
        else if (et == OT_BFLOAT16) {
            uint32_t b = (uint32_t)t->int32_data[k] << 16;
            memcpy(&v->f[k], &b, 4);
        } else v->i[k] = et == OT_BOOL ? t->int32_data[k] != 0 : t->int32_data[k];
    }
    return fe_ox_check_finite(c, v, what, 0);
}

/* ---- constant folding ------------------------------------------------------------------- */

/* numpy broadcast of two shapes; -1 with an error when they do not */
int fe_ox_broadcast(octx *c, int na, const int64_t *a, int nb, const int64_t *b, int *no, int64_t *o) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = na - n + i, ib = nb - n + i;
        int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char s0[128], s1[128];
            return fe_ox_fail(c, "shapes %s and %s do not broadcast", fe_ox_shape_str(na, a, s0, sizeof s0), fe_ox_shape_str(nb, b, s1, sizeof s1));
        }
        o[i] = da == 1 ? db : da;
    }
    *no = n;
    return 0;
}

/* integer arithmetic of the shape computations; -1 on overflow or division by zero */
static int int_arith(const char *op, int64_t a, int64_t b, int64_t *y) {
    switch (op[0]) {
    case 'A': return __builtin_add_overflow(a, b, y) ? -1 : 0;
    case 'S': return __builtin_sub_overflow(a, b, y) ? -1 : 0;
    case 'M': return __builtin_mul_overflow(a, b, y) ? -1 : 0;
    default:
        if (b == 0 || (a == INT64_MIN && b == -1)) return -1;
        *y = a / b;
        return 0;
    }
}

/* elementwise op over up to three broadcast constants */
int fe_ox_fold_elementwise(octx *c, const char *op, oval **in, int nin, oval *out) {
    int n = in[0]->ndim;
    int64_t shape[IR_MAX_DIMS];
    memcpy(shape, in[0]->shape, sizeof shape);
    for (int k = 1; k < nin; k++)
        if (fe_ox_broadcast(c, n, shape, in[k]->ndim, in[k]->shape, &n, shape)) return -1;
    int cmp = strcmp(op, "Equal") == 0 || strcmp(op, "Less") == 0 || strcmp(op, "Greater") == 0 ||
              strcmp(op, "Not") == 0;
    int where = strcmp(op, "Where") == 0;
    int arith = strcmp(op, "Add") == 0 || strcmp(op, "Sub") == 0 || strcmp(op, "Mul") == 0 ||
                strcmp(op, "Div") == 0;
    int et = cmp ? OT_BOOL : where ? in[1]->etype : in[0]->etype;
    if (!cmp && !where)
        for (int k = 1; k < nin; k++)
            if (etype_is_float(in[k]->etype) && !etype_is_float(et)) et = in[k]->etype;
    if (fe_ox_val_set_const(c, out, et, n, shape)) return -1;
    int fl = etype_is_float(et);
    int64_t idx[IR_MAX_DIMS];
    for (int64_t k = 0; k < out->numel; k++) {
        fe_ox_unravel(k, n, shape, idx);
        double x[3] = {0, 0, 0};
        int64_t xi[3] = {0, 0, 0};
        int64_t p[3] = {0, 0, 0};
        for (int j = 0; j < nin; j++) {
            p[j] = fe_ox_bcast_index(in[j], n, idx);
            x[j] = fe_ox_cget(in[j], p[j]);
            xi[j] = in[j]->i ? in[j]->i[p[j]] : fe_ox_to_i64(x[j]);
        }
        if (where) {
            fe_ox_ccopy(out, k, in[x[0] != 0 ? 1 : 2], p[x[0] != 0 ? 1 : 2]);
            continue;
        }
        if (!fl && arith) {
            if (int_arith(op, xi[0], xi[1], &out->i[k]))
                return fe_ox_fail(c, "integer %s overflows or divides by zero (%lld, %lld)", op,
                            (long long)xi[0], (long long)xi[1]);
            continue;
        }
        double y = 0;
        if (strcmp(op, "Add") == 0) y = x[0] + x[1];
        else if (strcmp(op, "Sub") == 0) y = x[0] - x[1];
        else if (strcmp(op, "Mul") == 0) y = x[0] * x[1];
        else if (strcmp(op, "Div") == 0) y = x[0] / x[1];
        else if (strcmp(op, "Pow") == 0) y = pow(x[0], x[1]);
        else if (strcmp(op, "Sqrt") == 0) y = sqrt(x[0]);
        else if (strcmp(op, "Erf") == 0) y = erf(x[0]);
        else if (strcmp(op, "Tanh") == 0) y = tanh(x[0]);
        else if (strcmp(op, "Neg") == 0) y = -x[0];
        else if (strcmp(op, "Equal") == 0) y = x[0] == x[1];
        else if (strcmp(op, "Less") == 0) y = x[0] < x[1];
        else if (strcmp(op, "Greater") == 0) y = x[0] > x[1];
        else if (strcmp(op, "Not") == 0) y = x[0] == 0;
        fe_ox_cset(out, k, y);
    }
    return 0;
}

/* copy of v with a new shape of the same element count */
int fe_ox_fold_reshape(octx *c, const oval *v, int ndim, const int64_t *shape, oval *out) {
    if (fe_ox_val_set_const(c, out, v->etype, ndim, shape)) return -1;
    if (out->numel != v->numel) return fe_ox_fail(c, "cannot reshape %lld elements", (long long)v->numel);
    for (int64_t k = 0; k < v->numel; k++) fe_ox_ccopy(out, k, v, k);
    return 0;
}

/* out[... j ...] = v[... start + j*step ...] along axis */
int fe_ox_fold_slice(octx *c, const oval *v, int axis, int64_t start, int64_t count, int64_t step, oval *out) {
    int64_t shape[IR_MAX_DIMS], idx[IR_MAX_DIMS];
    memcpy(shape, v->shape, sizeof shape);
    shape[axis] = count;
    if (fe_ox_val_set_const(c, out, v->etype, v->ndim, shape)) return -1;
    for (int64_t k = 0; k < out->numel; k++) {
        fe_ox_unravel(k, v->ndim, shape, idx);
        idx[axis] = start + idx[axis] * step;
        int64_t j = 0;
        for (int i = 0; i < v->ndim; i++) j = j * v->shape[i] + idx[i];
        fe_ox_ccopy(out, k, v, j);
    }
    return 0;
}

/* ---- the nodes that make constants ------------------------------------------------------ */

int fe_ox_lower_constant(octx *c, onode *o) {
    const Onnx__NodeProto *n = c->node;
    oval *v = o->out[0];
    for (size_t k = 0; k < n->n_attribute; k++) {
        const Onnx__AttributeProto *a = n->attribute[k];
        if (!a || !a->name) continue;
        if (strcmp(a->name, "value") == 0 && a->t) return fe_ox_tensor_decode(c, a->t, v, "Constant");
        int64_t one = (int64_t)a->n_floats, onei = (int64_t)a->n_ints;
        if (strcmp(a->name, "value_float") == 0) {
            if (fe_ox_val_set_const(c, v, OT_FLOAT, 0, NULL)) return -1;
            v->f[0] = a->f;
            return 0;
        }
        if (strcmp(a->name, "value_int") == 0) {
            if (fe_ox_val_set_const(c, v, OT_INT64, 0, NULL)) return -1;
            v->i[0] = a->i;
            return 0;
        }
        if (strcmp(a->name, "value_floats") == 0) {
            if (fe_ox_val_set_const(c, v, OT_FLOAT, 1, &one)) return -1;
            if (one) memcpy(v->f, a->floats, sizeof(float) * a->n_floats);
            return 0;
        }
        if (strcmp(a->name, "value_ints") == 0) {
            if (fe_ox_val_set_const(c, v, OT_INT64, 1, &onei)) return -1;
            if (onei) memcpy(v->i, a->ints, sizeof(int64_t) * a->n_ints);
            return 0;
        }
    }
    return fe_ox_fail(c, "Constant without a value (value, value_float(s) or value_int(s))");
}

int fe_ox_lower_constant_of_shape(octx *c, onode *o) {
    int64_t shape[IR_MAX_DIMS];
    int n = fe_ox_const_ints(c, o->in[0], shape, IR_MAX_DIMS, "shape");
    if (n < 0) return -1;
    const Onnx__AttributeProto *a = fe_ox_attr(c->node, "value");
    oval fill;
    memset(&fill, 0, sizeof fill);
    fill.name = o->out[0]->name;
    int et = OT_FLOAT;
    double value = 0;
    if (a && a->t) {
        if (fe_ox_tensor_decode(c, a->t, &fill, "ConstantOfShape value")) {
            free(fill.f);
            free(fill.i);
            return -1;
        }
        if (fill.numel != 1) {
            free(fill.f);
            free(fill.i);
            return fe_ox_fail(c, "ConstantOfShape value must hold one element");
        }
        et = fill.etype;
        value = fe_ox_cget(&fill, 0);
        free(fill.f);
        free(fill.i);
    }
    if (fe_ox_val_set_const(c, o->out[0], et, n, shape)) return -1;
    for (int64_t k = 0; k < o->out[0]->numel; k++) fe_ox_cset(o->out[0], k, value);
    return 0;
}

int fe_ox_lower_range(octx *c, onode *o) {
    for (int k = 0; k < 3; k++)
        if (o->nin <= k || !fe_ox_is_const(o->in[k]) || o->in[k]->numel != 1) return fe_ox_fail(c, "Range needs constant scalars");
    double s = fe_ox_cget(o->in[0], 0), l = fe_ox_cget(o->in[1], 0), d = fe_ox_cget(o->in[2], 0);
    if (d == 0) return fe_ox_fail(c, "Range with delta 0");
    double cnt = ceil((l - s) / d);
    int64_t n = cnt > 0 ? (int64_t)fmin(cnt, (double)OX_MAX_FOLD + 1) : 0;
    if (fe_ox_val_set_const(c, o->out[0], o->in[0]->etype, 1, &n)) return -1;
    for (int64_t k = 0; k < n; k++) fe_ox_cset(o->out[0], k, s + (double)k * d);
    return 0;
}

int fe_ox_lower_shape(octx *c, onode *o, int size) {
    oval *x = o->in[0];
    if (size) {
        if (fe_ox_val_set_const(c, o->out[0], OT_INT64, 0, NULL)) return -1;
        o->out[0]->i[0] = x->numel;
        return 0;
    }
    int64_t start = fe_ox_attr_i(c->node, "start", 0), end = fe_ox_attr_i(c->node, "end", x->ndim);
    if (start < 0) start += x->ndim;
    if (end < 0) end += x->ndim;
    start = start < 0 ? 0 : start > x->ndim ? x->ndim : start;
    end = end < start ? start : end > x->ndim ? x->ndim : end;
    int64_t n = end - start;
    if (fe_ox_val_set_const(c, o->out[0], OT_INT64, 1, &n)) return -1;
    for (int64_t k = 0; k < n; k++) o->out[0]->i[k] = x->shape[start + k];
    return 0;
}

#else
typedef int fe_onnx_not_built; /* ISO C wants a translation unit to declare something */
#endif
