/* onnx.c: the ONNX reader. Turns a model exported by torch.onnx.export (opsets 13 to 23, either exporter) into
 * the same IR forward graph the YAML frontend builds.
 *
 * Three steps, in one walk over the (topologically sorted) ONNX nodes:
 *   1. constants: initializers (raw_data, typed fields, or external data files next to the
 *      model), Constant nodes and everything computed from them alone are folded here, on
 *      the CPU. Once the batch is fixed, every Shape of a runtime value is a constant too, so
 *      the shape arithmetic of the dynamic batch axis (Shape/Gather/Unsqueeze/Concat/
 *      ConstantOfShape/Equal/Where/Expand/Reshape -1 and 0) disappears entirely.
 *   2. lowering: the other nodes become IR nodes. A float initializer with more than one
 *      element is a trainable WEIGHT named by the initializer (data copied into the graph's
 *      arena); scalar constants fold into SCALE / matmul alpha / CONST.
 *   3. pattern recovery, as each IR node is made: a spelled-out LayerNorm becomes LAYER_NORM,
 *      the erf GELU becomes GELU and the tanh one (torch's Mul/Add/Tanh spelling of
 *      gelu(approximate='tanh'), with Pow or Mul cubes) GELU with gelu_tanh; a Tanh anywhere
 *      else is refused. A MatMul of a transposed operand sets trans_a/trans_b, a scaled MatMul
 *      or one of scaled operands takes the scales as alpha, reshape-of-reshape and
 *      permute-of-permute collapse, and a Conv with stride == kernel is PATCHIFY + MATMUL.
 *      Nodes a pattern made dead are dropped at the end (dead-code elimination rebuilds the
 *      graph), so a DeiT has the same op histogram as from YAML, whether exported with
 *      do_constant_folding or not, with a dynamic or a static batch.
 *
 * The graph's one runtime input becomes INPUT "images" (whatever the export called it; the
 * batch errors quote the original name) and its first output is marked "logits".
 * Every error names the ONNX node (name, op type, index, opset) or the tensor it is about.
 */
#ifdef DEITC_HAVE_ONNX
#include "frontend/frontend.h"

#include "runtime/rt.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"

#define OX_MAX_FILE ((size_t)2 << 30)  /* bytes of a model file (protobuf's own limit) */
#define OX_MAX_FOLD ((int64_t)1 << 24) /* elements of one folded constant */
#define OX_MAX_NUMEL ((int64_t)1 << 40)
#define OX_MAX_FOLD_TOTAL ((int64_t)1 << 26) /* elements of all folded constants together */
#define OX_MAX_EXT_FILES 4096                /* distinct external data files */

/* ONNX TensorProto.DataType values */
enum {
    OT_FLOAT = 1, OT_UINT8 = 2, OT_INT8 = 3, OT_UINT16 = 4, OT_INT16 = 5, OT_INT32 = 6,
    OT_INT64 = 7, OT_STRING = 8, OT_BOOL = 9, OT_FLOAT16 = 10, OT_DOUBLE = 11, OT_UINT32 = 12,
    OT_UINT64 = 13, OT_BFLOAT16 = 16
};

static int etype_is_float(int t) {
    return t == OT_FLOAT || t == OT_FLOAT16 || t == OT_DOUBLE || t == OT_BFLOAT16;
}

static int etype_size(int t) {
    switch (t) {
    case OT_UINT8: case OT_INT8: case OT_BOOL: return 1;
    case OT_UINT16: case OT_INT16: case OT_FLOAT16: case OT_BFLOAT16: return 2;
    case OT_FLOAT: case OT_INT32: case OT_UINT32: return 4;
    case OT_INT64: case OT_DOUBLE: case OT_UINT64: return 8;
    default: return 0;
    }
}

static const char *etype_name(int t) {
    static const char *const names[] = {"undefined", "float", "uint8", "int8", "uint16", "int16",
                                        "int32", "int64", "string", "bool", "float16", "double",
                                        "uint32", "uint64", "complex64", "complex128", "bfloat16"};
    return t >= 0 && t <= 16 ? names[t] : "unknown";
}

/* ---- values ----------------------------------------------------------------------------- */

enum { VAL_UNSET, VAL_CONST, VAL_IR };

/* One ONNX value (initializer, graph input or node output). A constant holds its elements
 * as float (float types) or int64 (integer and bool types); a float initializer with more
 * than one element is a weight: it folds never, and becomes a WEIGHT leaf when used. */
typedef struct {
    const char *name; /* points into the protobuf message */
    int kind;         /* VAL_* */
    int etype;        /* ONNX element type (constants) */
    int ndim;
    int64_t shape[IR_MAX_DIMS];
    int64_t numel;
    float *f;         /* float elements (heap), or NULL */
    int64_t *i;       /* integer elements (heap), or NULL */
    int weight;       /* trainable weight (float initializer, numel > 1) */
    int ir;           /* IR node (VAL_IR, or a constant made into a leaf), else -1 */
} oval;

/* An external data file read during this load, and how many of its bytes were read: each
 * byte may back one tensor only, so a file cannot be multiplied by overlapping tensors. */
typedef struct {
    dev_t dev;
    ino_t ino;
    int64_t size, used;
} ext_file;

typedef struct {
    const char *path;
    char *err;
    size_t errsize;
    int failed;
    char dir[4096];          /* the model's folder, for external data ("" or ending in '/') */
    char realdir[PATH_MAX];  /* its real path (no symbolic links), found when first needed */
    ext_file *ext;           /* next of them */
    int next;
    int64_t folded;          /* elements of the constants folded so far */
    int64_t init_bytes;      /* float bytes of the initializers */
    int64_t copied;          /* bytes of weights copied for Identity nodes */
    Onnx__ModelProto *model;
    int64_t opset;
    ir_graph *g;
    oval *vals;
    int nvals, capvals;
    int *hash; /* open addressing: index into vals, -1 empty */
    int hashcap;
    const Onnx__NodeProto *node; /* the node being lowered, for messages and names */
    int node_index;
    const char *node_name;
    const char *input_name; /* the graph input's own name */
} octx;

static int fail(octx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(octx *c, const char *fmt, ...) {
    if (c->failed) return -1; /* keep the first, most specific message */
    c->failed = 1;
    char why[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (c->node)
        snprintf(c->err, c->errsize, "%s: node '%s' (%s, node #%d, opset %lld): %s", c->path,
                 c->node_name, c->node->op_type ? c->node->op_type : "?", c->node_index,
                 (long long)c->opset, why);
    else
        snprintf(c->err, c->errsize, "%s: %s", c->path, why);
    return -1;
}

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static oval *val_find(octx *c, const char *name) {
    if (!name) return NULL;
    for (uint32_t k = hash_str(name) & (uint32_t)(c->hashcap - 1);; k = (k + 1) & (uint32_t)(c->hashcap - 1)) {
        int i = c->hash[k];
        if (i < 0) return NULL;
        if (strcmp(c->vals[i].name, name) == 0) return &c->vals[i];
    }
}

/* A new value named `name`; NULL (with an error) if the name is taken or empty. */
static oval *val_define(octx *c, const char *name, const char *what) {
    if (!name || !*name) {
        fail(c, "%s has no name", what);
        return NULL;
    }
    if (val_find(c, name)) {
        fail(c, "value '%s' is defined twice (%s)", name, what);
        return NULL;
    }
    if (c->nvals == c->capvals) {
        fail(c, "too many values"); /* cannot happen: capvals counts every definition */
        return NULL;
    }
    oval *v = &c->vals[c->nvals];
    memset(v, 0, sizeof *v);
    v->name = name;
    v->ir = -1;
    uint32_t k = hash_str(name) & (uint32_t)(c->hashcap - 1);
    while (c->hash[k] >= 0) k = (k + 1) & (uint32_t)(c->hashcap - 1);
    c->hash[k] = c->nvals++;
    return v;
}

static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < size) snprintf(buf + k, size - k, "]");
    return buf;
}

/* Makes v a constant of the given type and shape with zeroed elements. */
static int val_set_const(octx *c, oval *v, int etype, int ndim, const int64_t *shape) {
    char s[128];
    if (ndim < 0 || ndim > IR_MAX_DIMS) return fail(c, "'%s' has %d dimensions (at most %d)", v->name, ndim, IR_MAX_DIMS);
    int64_t k = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return fail(c, "'%s' has a negative dimension", v->name);
        if (__builtin_mul_overflow(k, shape[i], &k) || k > OX_MAX_FOLD)
            return fail(c, "constant '%s' of shape %s is too large to fold (more than %lld elements)",
                        v->name, shape_str(ndim, shape, s, sizeof s), (long long)OX_MAX_FOLD);
    }
    if ((c->folded += k) > OX_MAX_FOLD_TOTAL)
        return fail(c, "constant '%s' of shape %s: the constants folded so far exceed %lld elements in all",
                    v->name, shape_str(ndim, shape, s, sizeof s), (long long)OX_MAX_FOLD_TOTAL);
    v->kind = VAL_CONST;
    v->etype = etype;
    v->ndim = ndim;
    if (ndim > 0) memcpy(v->shape, shape, sizeof(int64_t) * (size_t)ndim);
    v->numel = k;
    size_t n = (size_t)(k ? k : 1);
    if (etype_is_float(etype)) v->f = calloc(n, sizeof(float));
    else v->i = calloc(n, sizeof(int64_t));
    if (!v->f && !v->i)
        return fail(c, "out of memory for constant '%s' of shape %s", v->name, shape_str(ndim, shape, s, sizeof s));
    return 0;
}

static void val_set_ir(octx *c, oval *v, int id) {
    v->kind = VAL_IR;
    v->ir = id;
    const ir_node *n = &c->g->nodes[id];
    v->ndim = n->ndim;
    memcpy(v->shape, n->shape, sizeof v->shape);
    v->numel = ir_numel(n);
    v->etype = n->dtype == IR_F32 ? OT_FLOAT : n->dtype == IR_I64 ? OT_INT64 : OT_FLOAT;
}

static int is_const(const oval *v) { return v && v->kind == VAL_CONST && !v->weight; }

static double cget(const oval *v, int64_t k) { return v->f ? (double)v->f[k] : (double)v->i[k]; }

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
                return fail(c, "%s '%s': external data %s '%s' is not a byte count", what, v->name, e->key, e->value);
            if (e->key[0] == 'o') *off = x; else len = x;
        }
    }
    if (!loc || !*loc) return fail(c, "%s '%s': external data without a location", what, v->name);
    if (loc[0] == '/' || strstr(loc, ".."))
        return fail(c, "%s '%s': external data location '%s' must be a path inside the model's folder",
                    what, v->name, loc);
    if (len >= 0 && (size_t)len != want)
        return fail(c, "%s '%s': external data length %lld, but shape %s of %s needs %zu bytes", what,
                    v->name, len, shape_str(v->ndim, v->shape, (char[128]){0}, 128), etype_name(v->etype), want);
    char real[PATH_MAX], why[1200];
    snprintf(full, fullsize, "%s%s", c->dir, loc);
    if (!c->realdir[0] && !realpath(c->dir[0] ? c->dir : ".", c->realdir))
        return fail(c, "%s '%s': cannot resolve the model's folder '%s': %s", what, v->name, c->dir[0] ? c->dir : ".",
                    strerror(errno));
    if (!realpath(full, real))
        return fail(c, "%s '%s': cannot open external data file '%s': %s", what, v->name, full, strerror(errno));
    size_t k = strlen(c->realdir);
    if (strncmp(real, c->realdir, k) != 0 || !(real[k] == '/' || real[k] == 0 || c->realdir[k - 1] == '/'))
        return fail(c, "%s '%s': external data file '%s' is '%s', outside the model's folder '%s' (a symbolic "
                    "link out of it): refused", what, v->name, full, real, c->realdir);
    int64_t size;
    int fd = rt_input_open(real, RT_INPUT_NOFOLLOW, &size, why, sizeof why);
    if (fd < 0) return fail(c, "%s '%s': external data %s", what, v->name, why);
    if (*off > size || want > (uint64_t)(size - *off)) {
        close(fd);
        return fail(c, "%s '%s': external data file '%s' has %lld bytes, but shape %s of %s needs %zu at offset %lld",
                    what, v->name, full, (long long)size, shape_str(v->ndim, v->shape, (char[128]){0}, 128),
                    etype_name(v->etype), want, (long long)*off);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int why_errno = errno;
        close(fd);
        return fail(c, "%s '%s': external data file '%s': %s", what, v->name, full, strerror(why_errno));
    }
    int e = 0;
    while (e < c->next && !(c->ext[e].dev == st.st_dev && c->ext[e].ino == st.st_ino)) e++;
    if (e == c->next) {
        ext_file *grown = c->next < OX_MAX_EXT_FILES ? realloc(c->ext, sizeof *c->ext * (size_t)(c->next + 1)) : NULL;
        if (!grown) {
            close(fd);
            return fail(c, "%s '%s': more than %d external data files (or out of memory)", what, v->name,
                        OX_MAX_EXT_FILES);
        }
        c->ext = grown;
        c->ext[c->next++] = (ext_file){st.st_dev, st.st_ino, size, 0};
    }
    if ((c->ext[e].used += (int64_t)want) > c->ext[e].size) {
        close(fd);
        return fail(c, "%s '%s': the tensors stored in external data file '%s' need more bytes than its %lld: "
                    "their data overlap", what, v->name, full, (long long)size);
    }
    return fd;
}

/* NaN is no value of a model; ±inf neither for a weight (training would spread it), and
 * the --init reader refuses the same. Scalar constants may be infinite (masks, clip bounds). */
static int check_finite(octx *c, const oval *v, const char *what, int weight) {
    for (int64_t k = 0; v->f && k < v->numel; k++)
        if (isnan(v->f[k]) || (weight && isinf(v->f[k])))
            return fail(c, "%s '%s' holds a NaN or infinity at element %lld", what, v->name, (long long)k);
    return 0;
}

/* Decodes TensorProto t into constant v (already named). */
static int tensor_decode(octx *c, const Onnx__TensorProto *t, oval *v, const char *what) {
    char s[128];
    if (t->n_dims > IR_MAX_DIMS)
        return fail(c, "%s '%s' has %zu dimensions (at most %d)", what, v->name, t->n_dims, IR_MAX_DIMS);
    int64_t numel = 1;
    for (size_t d = 0; d < t->n_dims; d++)
        if (t->dims[d] < 0 || __builtin_mul_overflow(numel, t->dims[d], &numel) || numel > OX_MAX_NUMEL)
            return fail(c, "%s '%s' has a bad shape", what, v->name);
    int et = t->data_type, sz = etype_size(et);
    if (!sz) return fail(c, "%s '%s' has element type %s (%d), which is not supported", what, v->name, etype_name(et), et);
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
            return fail(c, "%s '%s': %s holds %zu values, but shape %s needs %lld", what, v->name, field,
                        have, shape_str((int)t->n_dims, t->dims, s, sizeof s), (long long)numel);
    } else if (have != want) {
        return fail(c, "%s '%s': %s holds %zu bytes, but shape %s of %s needs %zu", what, v->name,
                    field, have, shape_str((int)t->n_dims, t->dims, s, sizeof s), etype_name(et), want);
    }
    if (numel > OX_MAX_FOLD && !(et == OT_FLOAT || etype_is_float(et)))
        return fail(c, "%s '%s': integer tensor of %lld elements is too large", what, v->name, (long long)numel);
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
        return fail(c, "%s '%s': out of memory for its %lld elements (shape %s)", what, v->name, (long long)numel,
                    shape_str((int)t->n_dims, t->dims, s, sizeof s));
    }
    if (external) { /* float data straight into place (little-endian host), others converted */
        char why[1200];
        int rc = rt_input_pread(fd, file, raw ? (void *)raw : (void *)v->f, want, off, why, sizeof why);
        close(fd);
        if (!rc && raw) fill_from_raw(v, raw);
        free(raw);
        if (rc) return fail(c, "%s '%s': external data: %s", what, v->name, why);
        return check_finite(c, v, what, 0);
    }
    if (t->has_raw_data) {
        fill_from_raw(v, t->raw_data.data);
        return check_finite(c, v, what, 0);
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
    return check_finite(c, v, what, 0);
}

/* ---- attributes ------------------------------------------------------------------------- */

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t k = 0; k < n->n_attribute; k++)
        if (n->attribute[k] && n->attribute[k]->name && strcmp(n->attribute[k]->name, name) == 0)
            return n->attribute[k];
    return NULL;
}

static int64_t attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_i ? a->i : dflt;
}

static double attr_f(const Onnx__NodeProto *n, const char *name, double dflt) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_f ? a->f : dflt;
}

/* Copies a string attribute into buf ("" when absent). */
static const char *attr_s(const Onnx__NodeProto *n, const char *name, char *buf, size_t size) {
    const Onnx__AttributeProto *a = attr(n, name);
    size_t k = a && a->has_s ? a->s.len : 0;
    if (k >= size) k = size - 1;
    if (k) memcpy(buf, a->s.data, k);
    buf[k] = 0;
    return buf;
}

/* A list-of-ints attribute into out (at most max); its length, or -1 when absent. */
static int attr_ints(octx *c, const char *name, int64_t *out, int max) {
    const Onnx__AttributeProto *a = attr(c->node, name);
    if (!a || (!a->n_ints && !(a->has_type && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS))) return -1;
    if (a->n_ints > (size_t)max) return fail(c, "attribute %s has %zu values (at most %d)", name, a->n_ints, max), -2;
    if (a->n_ints) memcpy(out, a->ints, sizeof(int64_t) * a->n_ints);
    return (int)a->n_ints;
}

/* A constant integer list (1-D or scalar) into out; its length, or -2 with an error. */
static int const_ints(octx *c, const oval *v, int64_t *out, int max, const char *what) {
    if (!is_const(v))
        return fail(c, "%s must be a constant (it is computed at run time)", what), -2;
    if (v->ndim > 1 || v->numel > max)
        return fail(c, "%s must be a list of at most %d integers", what, max), -2;
    for (int64_t k = 0; k < v->numel; k++) {
        double x = cget(v, k);
        if (v->f && (x != floor(x) || fabs(x) > 9e18)) return fail(c, "%s must hold integers", what), -2;
        out[k] = v->f ? (int64_t)x : v->i[k];
    }
    return (int)v->numel;
}

/* Normalizes axis a for rank r; -1 with an error when out of range. */
static int norm_axis(octx *c, int64_t *a, int r, const char *what) {
    if (*a < -r || *a >= (r ? r : 1)) return fail(c, "%s %lld is out of range for rank %d", what, (long long)*a, r);
    if (*a < 0) *a += r;
    return 0;
}

/* ---- IR builders with peepholes --------------------------------------------------------- */

static ir_loc here(octx *c) {
    ir_loc l = {c->path, c->node_index + 1, 1}; /* line: 1-based index of the ONNX node */
    return l;
}

static int check_ir(octx *c, int id) {
    if (id < 0) return fail(c, "%s", c->g->error);
    const ir_node *n = &c->g->nodes[id];
    int64_t k = 1;
    for (int i = 0; i < n->ndim; i++)
        if (__builtin_mul_overflow(k, n->shape[i], &k) || k > OX_MAX_NUMEL) {
            c->g->n--;
            return fail(c, "tensor of more than 2^40 elements");
        }
    return id;
}

static int b_node(octx *c, ir_op op, const int *in, int nin, const ir_attrs *a, int ndim, const int64_t *shape) {
    if (c->failed) return -1;
    for (int k = 0; k < nin; k++)
        if (in[k] < 0) return -1;
    ir_dtype t = nin ? c->g->nodes[in[0]].dtype : IR_F32;
    return check_ir(c, ir_add(c->g, op, in, nin, a, t, ndim, shape, c->node_name, here(c)));
}

static const ir_node *nd(octx *c, int id) { return &c->g->nodes[id]; }

static int b_const(octx *c, double value, int ndim, const int64_t *shape) {
    ir_attrs a = {0};
    a.alpha = value;
    int64_t one = 1;
    if (ndim == 0) ndim = 1, shape = &one;
    if (c->failed) return -1;
    return check_ir(c, ir_add(c->g, IR_OP_CONST, NULL, 0, &a, IR_F32, ndim, shape, NULL, here(c)));
}

static int is_scalar_const(octx *c, int id, double *value) {
    const ir_node *n = nd(c, id);
    if (n->op != IR_OP_CONST || ir_numel(n) != 1) return 0;
    if (value) *value = n->attrs.alpha;
    return 1;
}

static int near(double a, double b) { return fabs(a - b) <= 1e-6 * fmax(1.0, fabs(b)); }

static int b_permute(octx *c, int x, const int64_t *perm);
static int is_last_swap(octx *c, int x);

static int b_reshape(octx *c, int x, int ndim, const int64_t *shape) {
    if (x < 0) return -1;
    while (nd(c, x)->op == IR_OP_RESHAPE) x = nd(c, x)->inputs[0];
    const ir_node *n = nd(c, x);
    if (n->ndim == ndim && memcmp(n->shape, shape, sizeof(int64_t) * (size_t)ndim) == 0) return x;
    /* reshape(swap-last-two(y)) that only regroups the leading dims is swap-last-two of y
     * reshaped: the dynamo exporter's k^T of scaled_dot_product_attention, [B,H,N,d] ->
     * [B*H,N,d] -> [B*H,d,N] -> [B,H,d,N], becomes one swap, which the MATMUL then absorbs */
    if (is_last_swap(c, x) && ndim >= 2 && shape[ndim - 2] == n->shape[n->ndim - 2] &&
        shape[ndim - 1] == n->shape[n->ndim - 1]) {
        int64_t inner[IR_MAX_DIMS], perm[IR_MAX_DIMS];
        memcpy(inner, shape, sizeof(int64_t) * (size_t)ndim);
        inner[ndim - 2] = shape[ndim - 1], inner[ndim - 1] = shape[ndim - 2];
        for (int i = 0; i < ndim; i++) perm[i] = i;
        perm[ndim - 2] = ndim - 1, perm[ndim - 1] = ndim - 2;
        return b_permute(c, b_reshape(c, n->inputs[0], ndim, inner), perm);
    }
    return b_node(c, IR_OP_RESHAPE, &x, 1, NULL, ndim, shape);
}

static int b_permute(octx *c, int x, const int64_t *perm) {
    if (x < 0) return -1;
    int r = nd(c, x)->ndim;
    int64_t p[IR_MAX_DIMS];
    memcpy(p, perm, sizeof(int64_t) * (size_t)r);
    while (nd(c, x)->op == IR_OP_PERMUTE) { /* out i = y p[i] = x q[p[i]] */
        int64_t q[IR_MAX_DIMS];
        for (int i = 0; i < r; i++) q[i] = nd(c, x)->attrs.perm[p[i]];
        memcpy(p, q, sizeof q);
        x = nd(c, x)->inputs[0];
    }
    int identity = 1;
    for (int i = 0; i < r; i++) identity &= p[i] == i;
    if (identity) return x;
    ir_attrs a = {0};
    memcpy(a.perm, p, sizeof(int64_t) * (size_t)r);
    return b_node(c, IR_OP_PERMUTE, &x, 1, &a, 0, NULL);
}

/* is x a PERMUTE that swaps its last two dims only? */
static int is_last_swap(octx *c, int x) {
    const ir_node *n = nd(c, x);
    if (n->op != IR_OP_PERMUTE || n->ndim < 2) return 0;
    for (int i = 0; i < n->ndim - 2; i++)
        if (n->attrs.perm[i] != i) return 0;
    return n->attrs.perm[n->ndim - 2] == n->ndim - 1 && n->attrs.perm[n->ndim - 1] == n->ndim - 2;
}

static int b_matmul(octx *c, int a, int b, int ta, int tb, double alpha) {
    if (a < 0 || b < 0) return -1;
    /* operands scaled (q * s, k^T * s of an exported scaled_dot_product_attention) or
     * transposed in their last two dims: alpha and trans_a/trans_b take them */
    for (int k = 0; k < 2; k++) {
        int *x = k ? &b : &a, *t = k ? &tb : &ta;
        for (;;) {
            if (nd(c, *x)->op == IR_OP_SCALE) alpha *= nd(c, *x)->attrs.alpha, *x = nd(c, *x)->inputs[0];
            else if (is_last_swap(c, *x)) *x = nd(c, *x)->inputs[0], *t = !*t;
            else break;
        }
    }
    ir_attrs at = {0};
    at.trans_a = ta;
    at.trans_b = tb;
    at.alpha = alpha;
    int in[2] = {a, b};
    return b_node(c, IR_OP_MATMUL, in, 2, &at, 0, NULL);
}

static int try_gelu(octx *c, int r);

/* x * alpha, folded into a MATMUL or SCALE it follows */
static int b_scale(octx *c, int x, double alpha) {
    if (x < 0) return -1;
    if (alpha == 1.0) return x;
    const ir_node *n = nd(c, x);
    if (n->op == IR_OP_MATMUL)
        return b_matmul(c, n->inputs[0], n->inputs[1], n->attrs.trans_a, n->attrs.trans_b, n->attrs.alpha * alpha);
    if (n->op == IR_OP_SCALE) return b_scale(c, n->inputs[0], n->attrs.alpha * alpha);
    ir_attrs a = {0};
    a.alpha = alpha;
    int y = b_node(c, IR_OP_SCALE, &x, 1, &a, 0, NULL);
    return y < 0 ? -1 : try_gelu(c, y);
}

static int try_layer_norm(octx *c, int r);

/* Elementwise binary op; the full-size operand goes first for ADD and MUL (bias adds then
 * read add(matmul, bias) as the YAML frontend builds them). */
static int b_binary(octx *c, ir_op op, int a, int b) {
    if (a < 0 || b < 0) return -1;
    if ((op == IR_OP_ADD || op == IR_OP_MUL) && ir_numel(nd(c, a)) < ir_numel(nd(c, b)) &&
        nd(c, a)->ndim <= nd(c, b)->ndim) {
        int t = a;
        a = b, b = t;
    }
    int in[2] = {a, b};
    int y = b_node(c, op, in, 2, NULL, 0, NULL);
    if (y < 0) return -1;
    if (op == IR_OP_ADD) return try_layer_norm(c, y);
    if (op == IR_OP_MUL) return try_gelu(c, y);
    return y;
}

/* ---- pattern recovery ------------------------------------------------------------------- */

/* Collects the factors of a product tree of MUL/SCALE/scalar CONST under r (depth <= 3). */
static void product(octx *c, int r, int depth, double *k, int *f, int *nf) {
    const ir_node *n = nd(c, r);
    double v;
    if (is_scalar_const(c, r, &v)) {
        *k *= v;
    } else if (n->op == IR_OP_SCALE && depth < 3) {
        *k *= n->attrs.alpha;
        product(c, n->inputs[0], depth + 1, k, f, nf);
    } else if (n->op == IR_OP_MUL && depth < 3) {
        product(c, n->inputs[0], depth + 1, k, f, nf);
        product(c, n->inputs[1], depth + 1, k, f, nf);
    } else if (*nf < 4) {
        f[(*nf)++] = r;
    } else {
        *nf = 5; /* too many: no match */
    }
}

/* The tanh GELU has no Tanh op in the IR to lower to: a Tanh node whose input is
 * sqrt(2/pi) * (x + 0.044715 x^3) becomes a marker, ERF(x) with attrs.gelu_tanh = 1, which
 * only the pattern below reads; prune() refuses a graph where a marker outlived it. */
static int is_tanh_marker(octx *c, int id) {
    return nd(c, id)->op == IR_OP_ERF && nd(c, id)->attrs.gelu_tanh;
}

/* 1 + erf(x / sqrt 2) or 1 + tanh-marker(x), in either order: returns x (*tanh set), else -1 */
static int gelu_term(octx *c, int id, int *tanh) {
    const ir_node *n = nd(c, id);
    if (n->op != IR_OP_ADD) return -1;
    double one;
    int e = n->inputs[0], k = n->inputs[1];
    if (is_scalar_const(c, e, NULL)) e = n->inputs[1], k = n->inputs[0];
    if (!is_scalar_const(c, k, &one) || !near(one, 1.0) || nd(c, e)->op != IR_OP_ERF) return -1;
    if ((*tanh = is_tanh_marker(c, e))) return nd(c, e)->inputs[0];
    const ir_node *u = nd(c, nd(c, e)->inputs[0]);
    if (u->op != IR_OP_SCALE || !near(u->attrs.alpha, M_SQRT1_2)) return -1;
    return u->inputs[0];
}

/* 0.5 * x * (1 + erf(x / sqrt 2)) in any association -> GELU(x); the same with the tanh
 * marker -> GELU(x) with gelu_tanh */
static int try_gelu(octx *c, int r) {
    double k = 1;
    int f[5], nf = 0;
    product(c, r, 0, &k, f, &nf);
    if (nf != 2 || !near(k, 0.5)) return r;
    for (int i = 0; i < 2; i++) {
        int tanh = 0, x = gelu_term(c, f[i], &tanh);
        if (x >= 0 && x == f[1 - i]) {
            ir_attrs a = {0};
            a.gelu_tanh = tanh;
            return b_node(c, IR_OP_GELU, &x, 1, &a, 0, NULL);
        }
    }
    return r;
}

/* sqrt(2/pi) * (x + 0.044715 * x^3), each product in any association: returns x, else -1 */
static int tanh_gelu_arg(octx *c, int u) {
    double k = 1;
    int f[5], nf = 0;
    product(c, u, 0, &k, f, &nf);
    if (nf != 1 || !near(k, sqrt(2.0 / M_PI)) || nd(c, f[0])->op != IR_OP_ADD) return -1;
    const ir_node *add = nd(c, f[0]);
    for (int i = 0; i < 2; i++) {
        int x = add->inputs[i], cube[5], ncube = 0;
        double k3 = 1;
        product(c, add->inputs[1 - i], 0, &k3, cube, &ncube);
        if (ncube == 3 && near(k3, 0.044715) && cube[0] == x && cube[1] == x && cube[2] == x) return x;
    }
    return -1;
}

static int is_mean_last(octx *c, int id, int x) {
    const ir_node *n = nd(c, id);
    return n->op == IR_OP_REDUCE_MEAN && n->inputs[0] == x && n->attrs.axis == nd(c, x)->ndim - 1;
}

/* x - mean(x) over the last dim: returns x, else -1 */
static int centered(octx *c, int id) {
    const ir_node *n = nd(c, id);
    if (n->op != IR_OP_SUB) return -1;
    int x = n->inputs[0];
    return is_mean_last(c, n->inputs[1], x) ? x : -1;
}

static int is_vec(octx *c, int id, int64_t dim) {
    const ir_node *n = nd(c, id);
    return n->ndim == 1 && n->shape[0] == dim && (n->op == IR_OP_WEIGHT || n->op == IR_OP_CONST);
}

/* (x - mean) / sqrt(mean((x - mean)^2) + eps) * gamma + beta  ->  LAYER_NORM(x, gamma, beta) */
static int try_layer_norm(octx *c, int r) {
    const ir_node *add = nd(c, r);
    int mul = add->inputs[0], beta = add->inputs[1];
    if (nd(c, mul)->op != IR_OP_MUL) return r;
    int dv = nd(c, mul)->inputs[0], gamma = nd(c, mul)->inputs[1];
    if (nd(c, dv)->op != IR_OP_DIV) return r;
    int s = nd(c, dv)->inputs[0], sd = nd(c, dv)->inputs[1];
    int x = centered(c, s);
    if (x < 0 || nd(c, sd)->op != IR_OP_SQRT) return r;
    const ir_node *ve = nd(c, nd(c, sd)->inputs[0]);
    if (ve->op != IR_OP_ADD) return r;
    int var = ve->inputs[0], epsn = ve->inputs[1];
    double eps;
    if (is_scalar_const(c, var, NULL)) var = ve->inputs[1], epsn = ve->inputs[0];
    if (!is_scalar_const(c, epsn, &eps) || !(eps > 0)) return r;
    const ir_node *vn = nd(c, var);
    if (vn->op != IR_OP_REDUCE_MEAN || vn->attrs.axis != vn->ndim - 1) return r;
    const ir_node *sq = nd(c, vn->inputs[0]);
    if (sq->op != IR_OP_MUL || sq->inputs[0] != sq->inputs[1]) return r;
    if (sq->inputs[0] != s && centered(c, sq->inputs[0]) != x) return r;
    int64_t dim = nd(c, x)->shape[nd(c, x)->ndim - 1];
    if (!is_vec(c, gamma, dim) || !is_vec(c, beta, dim) || !ir_same_shape(nd(c, x), add)) return r;
    ir_attrs a = {0};
    a.eps = eps;
    int in[3] = {x, gamma, beta};
    return b_node(c, IR_OP_LAYER_NORM, in, 3, &a, 0, NULL);
}

/* ---- materializing values --------------------------------------------------------------- */

/* The IR node of v: a constant becomes a leaf (trainable WEIGHT for weights, CONST when all
 * elements are equal, else a fixed WEIGHT holding the data). */
static int ir_of(octx *c, oval *v) {
    if (c->failed) return -1;
    if (v->ir >= 0) return v->ir;
    if (v->kind != VAL_CONST) return fail(c, "value '%s' is not defined", v->name);
    if (!v->f) return fail(c, "integer tensor '%s' used as data is not supported", v->name);
    if (v->numel == 0) return fail(c, "empty tensor '%s' used as data", v->name);
    int uniform = !v->weight;
    for (int64_t k = 1; uniform && k < v->numel; k++) uniform = v->f[k] == v->f[0];
    int id;
    if (uniform) {
        id = b_const(c, v->f[0], v->ndim, v->shape);
    } else {
        static const char *const reserved[] = {"images", "labels", "logits", "loss", "opt"};
        for (size_t k = 0; k < sizeof reserved / sizeof *reserved; k++)
            if (strcmp(v->name, reserved[k]) == 0)
                return fail(c, "tensor '%s' has a name deitc keeps for its own inputs and outputs", v->name);
        id = check_ir(c, ir_leaf(c->g, IR_OP_WEIGHT, IR_F32, v->ndim, v->shape, v->name, here(c)));
        if (id < 0) return -1;
        c->g->nodes[id].data = v->f; /* copied into the arena of the final graph */
        if (v->weight) c->g->nodes[id].flags |= IR_NODE_TRAINABLE;
    }
    v->ir = id;
    return id;
}

/* ---- constant folding ------------------------------------------------------------------- */

/* numpy broadcast of two shapes; -1 with an error when they do not */
static int broadcast(octx *c, int na, const int64_t *a, int nb, const int64_t *b, int *no, int64_t *o) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = na - n + i, ib = nb - n + i;
        int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char s0[128], s1[128];
            return fail(c, "shapes %s and %s do not broadcast", shape_str(na, a, s0, sizeof s0), shape_str(nb, b, s1, sizeof s1));
        }
        o[i] = da == 1 ? db : da;
    }
    *no = n;
    return 0;
}

/* flat index into v of the output element with multi-index idx (rank n), broadcasting */
static int64_t bcast_index(const oval *v, int n, const int64_t *idx) {
    int64_t k = 0;
    for (int i = 0; i < v->ndim; i++) {
        int64_t d = v->shape[i], j = idx[n - v->ndim + i];
        k = k * d + (d == 1 ? 0 : j);
    }
    return k;
}

static void unravel(int64_t flat, int n, const int64_t *shape, int64_t *idx) {
    for (int i = n - 1; i >= 0; i--) {
        idx[i] = shape[i] ? flat % shape[i] : 0;
        flat = shape[i] ? flat / shape[i] : 0;
    }
}

static int64_t to_i64(double x);

static void cset(oval *v, int64_t k, double x) {
    if (v->f) v->f[k] = (float)x;
    else v->i[k] = to_i64(x);
}

static void ccopy(oval *dst, int64_t k, const oval *src, int64_t j) {
    if (dst->f) dst->f[k] = src->f ? src->f[j] : (float)src->i[j];
    else dst->i[k] = src->i ? src->i[j] : to_i64(src->f[j]);
}

/* double -> int64 without undefined behaviour (saturates; NaN -> 0) */
static int64_t to_i64(double x) {
    if (!(x == x)) return 0;
    if (x >= 9.2e18) return INT64_MAX;
    if (x <= -9.2e18) return INT64_MIN;
    return (int64_t)x;
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
static int fold_elementwise(octx *c, const char *op, oval **in, int nin, oval *out) {
    int n = in[0]->ndim;
    int64_t shape[IR_MAX_DIMS];
    memcpy(shape, in[0]->shape, sizeof shape);
    for (int k = 1; k < nin; k++)
        if (broadcast(c, n, shape, in[k]->ndim, in[k]->shape, &n, shape)) return -1;
    int cmp = strcmp(op, "Equal") == 0 || strcmp(op, "Less") == 0 || strcmp(op, "Greater") == 0 ||
              strcmp(op, "Not") == 0;
    int where = strcmp(op, "Where") == 0;
    int arith = strcmp(op, "Add") == 0 || strcmp(op, "Sub") == 0 || strcmp(op, "Mul") == 0 ||
                strcmp(op, "Div") == 0;
    int et = cmp ? OT_BOOL : where ? in[1]->etype : in[0]->etype;
    if (!cmp && !where)
        for (int k = 1; k < nin; k++)
            if (etype_is_float(in[k]->etype) && !etype_is_float(et)) et = in[k]->etype;
    if (val_set_const(c, out, et, n, shape)) return -1;
    int fl = etype_is_float(et);
    int64_t idx[IR_MAX_DIMS];
    for (int64_t k = 0; k < out->numel; k++) {
        unravel(k, n, shape, idx);
        double x[3] = {0, 0, 0};
        int64_t xi[3] = {0, 0, 0};
        int64_t p[3] = {0, 0, 0};
        for (int j = 0; j < nin; j++) {
            p[j] = bcast_index(in[j], n, idx);
            x[j] = cget(in[j], p[j]);
            xi[j] = in[j]->i ? in[j]->i[p[j]] : to_i64(x[j]);
        }
        if (where) {
            ccopy(out, k, in[x[0] != 0 ? 1 : 2], p[x[0] != 0 ? 1 : 2]);
            continue;
        }
        if (!fl && arith) {
            if (int_arith(op, xi[0], xi[1], &out->i[k]))
                return fail(c, "integer %s overflows or divides by zero (%lld, %lld)", op,
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
        cset(out, k, y);
    }
    return 0;
}

/* copy of v with a new shape of the same element count */
static int fold_reshape(octx *c, const oval *v, int ndim, const int64_t *shape, oval *out) {
    if (val_set_const(c, out, v->etype, ndim, shape)) return -1;
    if (out->numel != v->numel) return fail(c, "cannot reshape %lld elements", (long long)v->numel);
    for (int64_t k = 0; k < v->numel; k++) ccopy(out, k, v, k);
    return 0;
}

/* out[... j ...] = v[... start + j*step ...] along axis */
static int fold_slice(octx *c, const oval *v, int axis, int64_t start, int64_t count, int64_t step, oval *out) {
    int64_t shape[IR_MAX_DIMS], idx[IR_MAX_DIMS];
    memcpy(shape, v->shape, sizeof shape);
    shape[axis] = count;
    if (val_set_const(c, out, v->etype, v->ndim, shape)) return -1;
    for (int64_t k = 0; k < out->numel; k++) {
        unravel(k, v->ndim, shape, idx);
        idx[axis] = start + idx[axis] * step;
        int64_t j = 0;
        for (int i = 0; i < v->ndim; i++) j = j * v->shape[i] + idx[i];
        ccopy(out, k, v, j);
    }
    return 0;
}

/* ---- the lowering of one node ----------------------------------------------------------- */

typedef struct {
    oval *in[16];
    int nin;
    oval *out[16];
    int nout;
} onode;

static int lower_alias(octx *c, onode *o);
static int lower_tanh(octx *c, onode *o);

static int unsupported(octx *c, const char *why) {
    return fail(c, "%s", why);
}

/* Reshape target: ONNX rules for 0 (copy, unless allowzero) and -1 (infer). */
static int reshape_target(octx *c, const oval *x, const int64_t *spec, int n, int allowzero, int64_t *out) {
    int infer = -1;
    int64_t known = 1;
    char s0[128];
    if (n > IR_MAX_DIMS) return fail(c, "reshape to %d dimensions (at most %d)", n, IR_MAX_DIMS);
    for (int i = 0; i < n; i++) {
        int64_t d = spec[i];
        if (d == 0 && !allowzero) {
            if (i >= x->ndim) return fail(c, "reshape copies dimension %d of a rank-%d input", i, x->ndim);
            d = x->shape[i];
        }
        if (d == -1) {
            if (infer >= 0) return fail(c, "reshape has two -1 dimensions");
            infer = i;
            d = 1;
        } else if (d < 0) {
            return fail(c, "reshape to a negative dimension %lld", (long long)d);
        }
        out[i] = d;
        if (__builtin_mul_overflow(known, d, &known)) return fail(c, "reshape overflows");
    }
    if (infer >= 0) {
        if (known == 0 || x->numel % known)
            return fail(c, "cannot reshape %s (%lld elements) with -1", shape_str(x->ndim, x->shape, s0, sizeof s0), (long long)x->numel);
        out[infer] = x->numel / known;
    } else if (known != x->numel) {
        char s1[128];
        return fail(c, "cannot reshape %s into %s", shape_str(x->ndim, x->shape, s0, sizeof s0), shape_str(n, out, s1, sizeof s1));
    }
    return 0;
}

/* Makes out = x reshaped (constant, weight or runtime). */
static int set_reshaped(octx *c, oval *x, int ndim, const int64_t *shape, oval *out) {
    if (is_const(x)) return fold_reshape(c, x, ndim, shape, out);
    int id = b_reshape(c, ir_of(c, x), ndim, shape);
    if (id < 0) return -1;
    val_set_ir(c, out, id);
    return 0;
}

/* axes from input k (opset >= since) or attribute "axes"; returns count or -2 on error, -1 absent */
static int get_axes(octx *c, onode *o, int k, int since, int64_t *axes, int max) {
    if (c->opset >= since) {
        if (o->nin <= k || !o->in[k]) return -1;
        return const_ints(c, o->in[k], axes, max, "axes");
    }
    return attr_ints(c, "axes", axes, max);
}

static int lower_squeeze(octx *c, onode *o, int unsq) {
    oval *x = o->in[0];
    int64_t axes[IR_MAX_DIMS * 2];
    int na = get_axes(c, o, 1, 13, axes, IR_MAX_DIMS);
    if (na == -2) return -1;
    int64_t shape[IR_MAX_DIMS * 2];
    int n = 0;
    if (unsq) {
        if (na < 0) return fail(c, "Unsqueeze needs axes");
        int r = x->ndim + na, mark[IR_MAX_DIMS * 2] = {0};
        if (r > IR_MAX_DIMS) return fail(c, "result has %d dimensions (at most %d)", r, IR_MAX_DIMS);
        for (int i = 0; i < na; i++) {
            if (norm_axis(c, &axes[i], r, "axis")) return -1;
            if (mark[axes[i]]++) return fail(c, "axis %lld repeated", (long long)axes[i]);
        }
        for (int i = 0, j = 0; i < r; i++) shape[n++] = mark[i] ? 1 : x->shape[j++];
    } else {
        int mark[IR_MAX_DIMS] = {0};
        for (int i = 0; i < na; i++) {
            if (norm_axis(c, &axes[i], x->ndim, "axis")) return -1;
            if (x->shape[axes[i]] != 1) return fail(c, "cannot squeeze axis %lld of size %lld", (long long)axes[i], (long long)x->shape[axes[i]]);
            mark[axes[i]] = 1;
        }
        for (int i = 0; i < x->ndim; i++)
            if (!(na < 0 ? x->shape[i] == 1 : mark[i])) shape[n++] = x->shape[i];
    }
    return set_reshaped(c, x, n, shape, o->out[0]);
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
    if (is_const(x)) return fold_slice(c, x, axis, start, count, step, out);
    if (step != 1) return fail(c, "slices with step %lld of runtime tensors are not supported", (long long)step);
    if (count <= 0) return fail(c, "empty slice of a runtime tensor");
    int id = ir_of(c, x);
    if (id < 0) return -1;
    if (start != 0 || count != x->shape[axis]) {
        ir_attrs a = {0};
        a.axis = axis;
        a.start = start;
        a.end = start + count;
        id = b_node(c, IR_OP_SLICE, &id, 1, &a, 0, NULL);
        if (id < 0) return -1;
    }
    val_set_ir(c, out, id);
    return 0;
}

static int lower_slice(octx *c, onode *o) {
    int64_t starts[IR_MAX_DIMS], ends[IR_MAX_DIMS], axes[IR_MAX_DIMS], steps[IR_MAX_DIMS];
    int ns, ne, na = -1, nst = -1;
    oval *x = o->in[0];
    if (c->opset >= 10) {
        if (o->nin < 3 || !o->in[1] || !o->in[2]) return fail(c, "Slice needs starts and ends");
        if ((ns = const_ints(c, o->in[1], starts, IR_MAX_DIMS, "starts")) < 0) return -1;
        if ((ne = const_ints(c, o->in[2], ends, IR_MAX_DIMS, "ends")) < 0) return -1;
        if (o->nin > 3 && o->in[3] && (na = const_ints(c, o->in[3], axes, IR_MAX_DIMS, "axes")) < -1) return -1;
        if (o->nin > 4 && o->in[4] && (nst = const_ints(c, o->in[4], steps, IR_MAX_DIMS, "steps")) < -1) return -1;
    } else {
        if ((ns = attr_ints(c, "starts", starts, IR_MAX_DIMS)) < 0 || (ne = attr_ints(c, "ends", ends, IR_MAX_DIMS)) < 0)
            return c->failed ? -1 : fail(c, "Slice needs starts and ends");
        if ((na = attr_ints(c, "axes", axes, IR_MAX_DIMS)) == -2) return -1;
    }
    if (ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return fail(c, "starts, ends, axes and steps differ in length");
    oval cur = *x, tmp;
    oval *src = x;
    /* chain one slice per axis through temporaries owned here */
    float *ownf = NULL;
    int64_t *owni = NULL;
    int rc = 0;
    for (int k = 0; k < ns && !rc; k++) {
        int64_t ax = na >= 0 ? axes[k] : k, st = nst >= 0 ? steps[k] : 1, s = starts[k];
        if (st == 0) { rc = fail(c, "slice step 0"); break; }
        if (norm_axis(c, &ax, src->ndim, "axis")) { rc = -1; break; }
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
        if (is_const(x)) return fold_reshape(c, x, x->ndim, x->shape, o->out[0]);
        int id = ir_of(c, x);
        if (id < 0) return -1;
        val_set_ir(c, o->out[0], id);
        return 0;
    }
    const char *nm = o->out[0]->name;
    *o->out[0] = cur; /* takes over the temporaries */
    o->out[0]->name = nm;
    return 0;
}

static int lower_split(octx *c, onode *o) {
    oval *x = o->in[0];
    int64_t axis = attr_i(c->node, "axis", 0);
    if (norm_axis(c, &axis, x->ndim, "axis")) return -1;
    int64_t sizes[16];
    int n = -1;
    if (c->opset >= 13 && o->nin > 1 && o->in[1]) {
        if ((n = const_ints(c, o->in[1], sizes, 16, "split")) < 0) return -1;
    } else if (c->opset < 13) {
        if ((n = attr_ints(c, "split", sizes, 16)) == -2) return -1;
    }
    if (n < 0) { /* equal parts (opset 18: ceil) */
        n = o->nout;
        int64_t d = x->shape[axis], part = (d + n - 1) / n;
        for (int i = 0; i < n; i++) sizes[i] = i < n - 1 ? part : d - part * (n - 1);
    }
    if (n != o->nout) return fail(c, "split into %d parts for %d outputs", n, o->nout);
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (sizes[i] < 0 || at + sizes[i] > x->shape[axis]) return fail(c, "split sizes exceed dimension %lld", (long long)x->shape[axis]);
        if (o->out[i] && take_range(c, x, (int)axis, at, sizes[i], 1, o->out[i])) return -1;
        at += sizes[i];
    }
    if (at != x->shape[axis]) return fail(c, "split sizes sum to %lld, not %lld", (long long)at, (long long)x->shape[axis]);
    return 0;
}

static int lower_gather(octx *c, onode *o) {
    oval *x = o->in[0], *ind = o->in[1];
    int64_t axis = attr_i(c->node, "axis", 0);
    if (norm_axis(c, &axis, x->ndim, "axis")) return -1;
    if (!is_const(ind)) return unsupported(c, "Gather with indices computed at run time is not supported");
    if (ind->ndim > 1) return unsupported(c, "Gather with indices of rank > 1 is not supported");
    int64_t dim = x->shape[axis], ni = ind->numel;
    int64_t idx[16];
    if (ni > 16 && !is_const(x)) return fail(c, "Gather of more than 16 indices of a runtime tensor");
    /* result shape: x.shape[:axis] + ind.shape + x.shape[axis+1:] */
    int r = x->ndim - 1 + ind->ndim;
    if (r > IR_MAX_DIMS) return fail(c, "result has too many dimensions");
    int64_t shape[IR_MAX_DIMS];
    for (int i = 0, j = 0; i < x->ndim; i++) {
        if (i == axis) {
            if (ind->ndim) shape[j++] = ni;
        } else {
            shape[j++] = x->shape[i];
        }
    }
    if (is_const(x)) {
        if (val_set_const(c, o->out[0], x->etype, r, shape)) return -1;
        int64_t inner = 1, outer = 1;
        for (int i = (int)axis + 1; i < x->ndim; i++) inner *= x->shape[i];
        for (int i = 0; i < axis; i++) outer *= x->shape[i];
        for (int64_t a = 0; a < outer; a++)
            for (int64_t k = 0; k < ni; k++) {
                int64_t j = ind->i ? ind->i[k] : to_i64(ind->f[k]);
                if (j < 0) j += dim;
                if (j < 0 || j >= dim) return fail(c, "index %lld outside dimension %lld", (long long)j, (long long)dim);
                for (int64_t b = 0; b < inner; b++)
                    ccopy(o->out[0], (a * ni + k) * inner + b, x, (a * dim + j) * inner + b);
            }
        return 0;
    }
    for (int64_t k = 0; k < ni; k++) {
        idx[k] = ind->i ? ind->i[k] : to_i64(ind->f[k]);
        if (idx[k] < 0) idx[k] += dim;
        if (idx[k] < 0 || idx[k] >= dim) return fail(c, "index %lld outside dimension %lld", (long long)idx[k], (long long)dim);
    }
    if (ni == 0) return fail(c, "Gather of no indices");
    int xid = ir_of(c, x);
    int parts[16], np = 0;
    for (int64_t k = 0; k < ni;) { /* runs of consecutive indices become one slice each */
        int64_t e = k + 1;
        while (e < ni && idx[e] == idx[e - 1] + 1) e++;
        ir_attrs a = {0};
        a.axis = axis;
        a.start = idx[k];
        a.end = idx[e - 1] + 1;
        parts[np] = a.start == 0 && a.end == dim ? xid : b_node(c, IR_OP_SLICE, &xid, 1, &a, 0, NULL);
        if (parts[np++] < 0) return -1;
        k = e;
    }
    if (np > IR_MAX_INPUTS) return fail(c, "Gather of more than %d index runs of a runtime tensor", IR_MAX_INPUTS);
    int y = parts[0];
    if (np > 1) {
        ir_attrs a = {0};
        a.axis = axis;
        y = b_node(c, IR_OP_CONCAT, parts, np, &a, 0, NULL);
    }
    y = b_reshape(c, y, r, shape);
    if (y < 0) return -1;
    val_set_ir(c, o->out[0], y);
    return 0;
}

static int lower_concat(octx *c, onode *o) {
    int64_t axis = attr_i(c->node, "axis", 0);
    oval *first = NULL;
    int all_const = 1, n = 0;
    for (int k = 0; k < o->nin; k++) {
        if (!o->in[k]) continue;
        if (!is_const(o->in[k])) all_const = 0;
        if (!first) first = o->in[k];
    }
    if (!first) return fail(c, "Concat of nothing");
    if (norm_axis(c, &axis, first->ndim, "axis")) return -1;
    int64_t shape[IR_MAX_DIMS];
    memcpy(shape, first->shape, sizeof shape);
    shape[axis] = 0;
    for (int k = 0; k < o->nin; k++) {
        oval *v = o->in[k];
        if (!v) continue;
        if (v->ndim != first->ndim) return fail(c, "Concat inputs differ in rank");
        for (int d = 0; d < v->ndim; d++)
            if (d != axis && v->shape[d] != first->shape[d]) return fail(c, "Concat inputs differ off the axis");
        shape[axis] += v->shape[axis];
    }
    if (all_const) {
        int et = first->etype;
        if (val_set_const(c, o->out[0], et, first->ndim, shape)) return -1;
        int64_t inner = 1, outer = 1, at = 0;
        for (int i = (int)axis + 1; i < first->ndim; i++) inner *= shape[i];
        for (int i = 0; i < axis; i++) outer *= shape[i];
        for (int k = 0; k < o->nin; k++) {
            oval *v = o->in[k];
            if (!v) continue;
            int64_t w = v->shape[axis] * inner;
            for (int64_t a = 0; a < outer; a++)
                for (int64_t j = 0; j < w; j++) ccopy(o->out[0], a * shape[axis] * inner + at + j, v, a * w + j);
            at += w;
        }
        return 0;
    }
    int in[IR_MAX_INPUTS];
    for (int k = 0; k < o->nin; k++) {
        if (!o->in[k] || o->in[k]->numel == 0) continue;
        if (n == IR_MAX_INPUTS) return fail(c, "Concat of more than %d runtime tensors", IR_MAX_INPUTS);
        if ((in[n++] = ir_of(c, o->in[k])) < 0) return -1;
    }
    int y = n == 1 ? in[0] : b_node(c, IR_OP_CONCAT, in, n, &(ir_attrs){.axis = axis}, 0, NULL);
    if (y < 0) return -1;
    val_set_ir(c, o->out[0], y);
    return 0;
}

static int lower_expand(octx *c, onode *o) {
    oval *x = o->in[0];
    int64_t spec[IR_MAX_DIMS], shape[IR_MAX_DIMS];
    int n = o->nin > 1 && o->in[1] ? const_ints(c, o->in[1], spec, IR_MAX_DIMS, "shape") : (fail(c, "Expand needs a shape"), -2);
    if (n < 0) return -1;
    int r;
    if (broadcast(c, x->ndim, x->shape, n, spec, &r, shape)) return -1;
    if (is_const(x)) {
        if (val_set_const(c, o->out[0], x->etype, r, shape)) return -1;
        int64_t idx[IR_MAX_DIMS];
        for (int64_t k = 0; k < o->out[0]->numel; k++) {
            unravel(k, r, shape, idx);
            ccopy(o->out[0], k, x, bcast_index(x, r, idx));
        }
        return 0;
    }
    int id = ir_of(c, x);
    if (id < 0) return -1;
    /* kept even when it changes nothing (batch 1), as the YAML frontend's cls_token expand */
    id = b_node(c, IR_OP_EXPAND, &id, 1, NULL, r, shape);
    if (id < 0) return -1;
    val_set_ir(c, o->out[0], id);
    return 0;
}

static int lower_transpose(octx *c, onode *o) {
    oval *x = o->in[0];
    int64_t perm[IR_MAX_DIMS];
    int n = attr_ints(c, "perm", perm, IR_MAX_DIMS);
    if (n == -2) return -1;
    if (n < 0) {
        n = x->ndim;
        for (int i = 0; i < n; i++) perm[i] = n - 1 - i;
    }
    int seen[IR_MAX_DIMS] = {0};
    if (n != x->ndim) return fail(c, "perm has %d entries for rank %d", n, x->ndim);
    for (int i = 0; i < n; i++)
        if (perm[i] < 0 || perm[i] >= n || seen[perm[i]]++) return fail(c, "perm is not a permutation");
    if (is_const(x)) {
        int64_t shape[IR_MAX_DIMS], idx[IR_MAX_DIMS], src[IR_MAX_DIMS];
        for (int i = 0; i < n; i++) shape[i] = x->shape[perm[i]];
        if (val_set_const(c, o->out[0], x->etype, n, shape)) return -1;
        for (int64_t k = 0; k < o->out[0]->numel; k++) {
            unravel(k, n, shape, idx);
            for (int i = 0; i < n; i++) src[perm[i]] = idx[i];
            int64_t j = 0;
            for (int i = 0; i < n; i++) j = j * x->shape[i] + src[i];
            ccopy(o->out[0], k, x, j);
        }
        return 0;
    }
    int id = b_permute(c, ir_of(c, x), perm);
    if (id < 0) return -1;
    val_set_ir(c, o->out[0], id);
    return 0;
}

/* Add/Sub/Mul/Div/Pow with at least one runtime operand */
static int lower_arith(octx *c, const char *op, onode *o) {
    oval *a = o->in[0], *b = o->in[1];
    double ka = 0, kb = 0;
    int sa = is_const(a) && a->numel == 1 && a->f, sb = is_const(b) && b->numel == 1 && b->f;
    if (sa) ka = a->f[0];
    if (sb) kb = b->f[0];
    int y;
    /* a scalar constant keeps the other operand's shape only if it does not add dims */
    if (sa && a->ndim > b->ndim) sa = 0;
    if (sb && b->ndim > a->ndim) sb = 0;
    if (strcmp(op, "Pow") == 0) {
        if (!sb) return unsupported(c, "Pow with an exponent other than a constant scalar is not supported");
        int x = ir_of(c, a);
        if (kb == 1) y = x;
        else if (kb == 2) y = b_binary(c, IR_OP_MUL, x, x);
        else if (kb == 3) y = b_binary(c, IR_OP_MUL, x, b_binary(c, IR_OP_MUL, x, x));
        else if (kb == 0.5) y = b_node(c, IR_OP_SQRT, &x, 1, NULL, 0, NULL);
        else return fail(c, "Pow with exponent %g is not supported (only 0.5, 1, 2 and 3)", kb);
    } else if (strcmp(op, "Mul") == 0 && (sa || sb)) {
        y = b_scale(c, ir_of(c, sa ? b : a), sa ? ka : kb);
    } else if (strcmp(op, "Div") == 0 && sb) {
        if (kb == 0) return fail(c, "division by the constant 0");
        y = b_scale(c, ir_of(c, a), 1.0 / kb);
    } else if ((strcmp(op, "Add") == 0 && (sa || sb)) || (strcmp(op, "Sub") == 0 && sb)) {
        double k = sa ? ka : strcmp(op, "Sub") == 0 ? -kb : kb;
        int x = ir_of(c, sa ? b : a);
        y = k == 0 ? x : b_binary(c, IR_OP_ADD, x, b_const(c, k, 0, NULL));
    } else {
        ir_op irop = strcmp(op, "Add") == 0 ? IR_OP_ADD : strcmp(op, "Sub") == 0 ? IR_OP_SUB
                   : strcmp(op, "Mul") == 0 ? IR_OP_MUL : IR_OP_DIV;
        y = b_binary(c, irop, ir_of(c, a), ir_of(c, b));
    }
    if (y < 0) return -1;
    val_set_ir(c, o->out[0], y);
    return 0;
}

static int lower_conv(octx *c, onode *o) {
    oval *x = o->in[0], *w = o->in[1], *bias = o->nin > 2 ? o->in[2] : NULL;
    char s0[128], s1[128];
    if (x->ndim != 4 || !w || w->ndim != 4 || w->shape[1] != x->shape[1] || w->shape[2] != w->shape[3])
        return fail(c, "only 2-D Conv with square kernels is supported (input %s, weight %s)",
                    shape_str(x->ndim, x->shape, s0, sizeof s0), w ? shape_str(w->ndim, w->shape, s1, sizeof s1) : "none");
    int64_t p = w->shape[2], v[8];
    int n;
    if ((n = attr_ints(c, "strides", v, 8)) == -2) return -1;
    if (n != 2 || v[0] != p || v[1] != p)
        return unsupported(c, "only Conv with stride equal to the kernel (a patch embedding) is supported");
    if ((n = attr_ints(c, "pads", v, 8)) == -2) return -1;
    for (int i = 0; i < n; i++)
        if (v[i]) return unsupported(c, "Conv with padding is not supported");
    if ((n = attr_ints(c, "dilations", v, 8)) == -2) return -1;
    for (int i = 0; i < n; i++)
        if (v[i] != 1) return unsupported(c, "Conv with dilation is not supported");
    if ((n = attr_ints(c, "kernel_shape", v, 8)) == -2) return -1;
    if (n >= 0 && (n != 2 || v[0] != p || v[1] != p)) return fail(c, "kernel_shape disagrees with the weight");
    char ap[32];
    attr_s(c->node, "auto_pad", ap, sizeof ap);
    if (*ap && strcmp(ap, "NOTSET") && strcmp(ap, "VALID")) return unsupported(c, "Conv with auto_pad SAME is not supported");
    if (attr_i(c->node, "group", 1) != 1) return unsupported(c, "grouped Conv is not supported");
    if (x->shape[2] % p || x->shape[3] % p)
        return fail(c, "image %s is not divisible into %lldx%lld patches", shape_str(4, x->shape, s0, sizeof s0), (long long)p, (long long)p);
    int64_t D = w->shape[0], B = x->shape[0], h = x->shape[2] / p, ww = x->shape[3] / p;
    /* as fe_patch_embed: W [D,C,P,P] -> [D,C*P*P]; patches [B,h*w,C*P*P] @ W^T + b */
    int wid = ir_of(c, w);
    int64_t w2[2] = {D, w->shape[1] * p * p};
    wid = b_reshape(c, wid, 2, w2);
    int xid = ir_of(c, x);
    ir_attrs pa = {0};
    pa.patch = p;
    int pt = xid < 0 ? -1 : b_node(c, IR_OP_PATCHIFY, &xid, 1, &pa, 0, NULL);
    int y = b_matmul(c, pt, wid, 0, 1, 1.0);
    if (bias) {
        if (bias->ndim != 1 || bias->shape[0] != D) return fail(c, "Conv bias must be [%lld]", (long long)D);
        y = b_binary(c, IR_OP_ADD, y, ir_of(c, bias));
    }
    /* [B,h*w,D] -> [B,D,h*w] -> [B,D,h,w]; a following flatten+transpose undoes both */
    y = b_permute(c, y, (const int64_t[]){0, 2, 1});
    y = b_reshape(c, y, 4, (const int64_t[]){B, D, h, ww});
    if (y < 0) return -1;
    val_set_ir(c, o->out[0], y);
    return 0;
}

static int lower_matmul(octx *c, onode *o, int gemm) {
    oval *a = o->in[0], *b = o->in[1];
    if (!a || !b) return fail(c, "needs two operands");
    if (a->ndim < 2 || b->ndim < 2) return unsupported(c, "MatMul of 1-D operands is not supported");
    int ta = gemm ? (int)attr_i(c->node, "transA", 0) : 0, tb = gemm ? (int)attr_i(c->node, "transB", 0) : 0;
    double alpha = gemm ? attr_f(c->node, "alpha", 1.0) : 1.0, beta = gemm ? attr_f(c->node, "beta", 1.0) : 1.0;
    int y = b_matmul(c, ir_of(c, a), ir_of(c, b), ta, tb, alpha);
    if (gemm && o->nin > 2 && o->in[2] && beta != 0) {
        int cc = ir_of(c, o->in[2]);
        cc = beta == 1 ? cc : b_scale(c, cc, beta);
        y = b_binary(c, IR_OP_ADD, y, cc);
    }
    if (y < 0) return -1;
    val_set_ir(c, o->out[0], y);
    return 0;
}

static int lower_reduce_mean(octx *c, onode *o) {
    oval *x = o->in[0];
    int64_t axes[IR_MAX_DIMS];
    int na = get_axes(c, o, 1, 18, axes, IR_MAX_DIMS);
    if (na == -2) return -1;
    int keep = (int)attr_i(c->node, "keepdims", 1);
    if (na <= 0) { /* no axes: all of them, or none with noop_with_empty_axes */
        if (attr_i(c->node, "noop_with_empty_axes", 0)) return lower_alias(c, o);
        na = x->ndim;
        for (int i = 0; i < na; i++) axes[i] = i;
    }
    int mark[IR_MAX_DIMS] = {0};
    int y = ir_of(c, x);
    for (int i = 0; i < na; i++) {
        if (norm_axis(c, &axes[i], x->ndim, "axis")) return -1;
        if (mark[axes[i]]++) continue;
        ir_attrs a = {0};
        a.axis = axes[i];
        y = b_node(c, IR_OP_REDUCE_MEAN, &y, 1, &a, 0, NULL);
    }
    if (y < 0) return -1;
    if (!keep) {
        int64_t shape[IR_MAX_DIMS];
        int n = 0;
        for (int i = 0; i < x->ndim; i++)
            if (!mark[i]) shape[n++] = x->shape[i];
        if (n == 0) shape[n++] = 1;
        y = b_reshape(c, y, n, shape);
    }
    if (y < 0) return -1;
    val_set_ir(c, o->out[0], y);
    return 0;
}

static int lower_layer_norm(octx *c, onode *o) {
    oval *x = o->in[0], *scale = o->nin > 1 ? o->in[1] : NULL, *bias = o->nin > 2 ? o->in[2] : NULL;
    int64_t axis = attr_i(c->node, "axis", -1);
    if (norm_axis(c, &axis, x->ndim, "axis")) return -1;
    if (axis != x->ndim - 1) return unsupported(c, "LayerNormalization over more than the last axis is not supported");
    int64_t D = x->shape[x->ndim - 1];
    if (!scale || scale->ndim != 1 || scale->shape[0] != D || (bias && (bias->ndim != 1 || bias->shape[0] != D)))
        return fail(c, "LayerNormalization scale and bias must be [%lld]", (long long)D);
    double eps = attr_f(c->node, "epsilon", 1e-5);
    if (!(eps > 0)) return fail(c, "epsilon must be positive");
    ir_attrs a = {0};
    a.eps = eps;
    int in[3] = {ir_of(c, x), ir_of(c, scale), bias ? ir_of(c, bias) : b_const(c, 0, 1, &D)};
    int y = b_node(c, IR_OP_LAYER_NORM, in, 3, &a, 0, NULL);
    if (y < 0) return -1;
    val_set_ir(c, o->out[0], y);
    return 0;
}

static int lower_softmax(octx *c, onode *o) {
    oval *x = o->in[0];
    const Onnx__AttributeProto *given = attr(c->node, "axis");
    int64_t axis = attr_i(c->node, "axis", c->opset >= 13 ? -1 : 1), asked = axis;
    if (norm_axis(c, &axis, x->ndim, "axis")) return -1;
    /* before opset 13, axis a means softmax over the flattened dims a.. (the same when last) */
    if (axis != x->ndim - 1) {
        char s[128];
        return fail(c, "Softmax over axis %lld%s of a %s tensor is not supported (only over "
                    "the last axis)", (long long)asked,
                    given && given->has_i ? "" : c->opset >= 13 ? " (the default)" : " (the default before opset 13)",
                    shape_str(x->ndim, x->shape, s, sizeof s));
    }
    int id = ir_of(c, x);
    id = b_node(c, IR_OP_SOFTMAX, &id, 1, NULL, 0, NULL);
    if (id < 0) return -1;
    val_set_ir(c, o->out[0], id);
    return 0;
}

static int lower_unary(octx *c, onode *o, ir_op op, int gelu_tanh) {
    int id = ir_of(c, o->in[0]);
    ir_attrs a = {0};
    a.gelu_tanh = gelu_tanh;
    id = b_node(c, op, &id, 1, &a, 0, NULL);
    if (id < 0) return -1;
    val_set_ir(c, o->out[0], id);
    return 0;
}

/* Tanh of a runtime tensor: only inside the tanh GELU (see is_tanh_marker) */
static int lower_tanh(octx *c, onode *o) {
    int u = ir_of(c, o->in[0]);
    if (u < 0) return -1;
    int x = tanh_gelu_arg(c, u);
    if (x < 0)
        return unsupported(c, "Tanh is supported only inside the tanh-approximate GELU "
                              "0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), and its input "
                              "is not sqrt(2/pi) * (x + 0.044715 * x^3)");
    ir_attrs a = {0};
    a.gelu_tanh = 1; /* the marker */
    int id = b_node(c, IR_OP_ERF, &x, 1, &a, 0, NULL);
    if (id < 0) return -1;
    val_set_ir(c, o->out[0], id);
    return 0;
}

/* out = in (Identity, Dropout at inference, Cast between float types) */
static int lower_alias(octx *c, onode *o) {
    oval *x = o->in[0];
    if (is_const(x)) return fold_reshape(c, x, x->ndim, x->shape, o->out[0]);
    int id = ir_of(c, x);
    if (id < 0) return -1;
    val_set_ir(c, o->out[0], id);
    return 0;
}

/* Identity of a weight: torch's export (eval mode) keeps one initializer of several with equal
 * values and makes the others Identity nodes of it: norm2.weight = Identity(norm1.weight) when
 * both are ones, every zero bias an Identity of one of them (a fresh timm model). They are
 * separate parameters: each becomes a trainable weight of its own, named by the Identity's
 * output (the PyTorch name), with a copy of the data. */
static int lower_identity(octx *c, onode *o) {
    oval *x = o->in[0], *v = o->out[0];
    if (!(x->kind == VAL_CONST && x->weight)) return lower_alias(c, o);
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
        return fail(c, "the Identity copies of weights exceed the initializers' own %lld bytes", (long long)c->init_bytes);
    v->f = malloc((size_t)bytes);
    if (!v->f) return fail(c, "out of memory copying weight '%s' (%lld bytes)", x->name, (long long)bytes);
    memcpy(v->f, x->f, (size_t)bytes);
    return 0;
}

/* Cast to `to` (Cast's attribute, or CastLike's second input's type) */
static int lower_cast_to(octx *c, onode *o, int to) {
    oval *x = o->in[0];
    if (!etype_size(to)) return fail(c, "Cast to %s is not supported", etype_name(to));
    if (is_const(x)) {
        if (val_set_const(c, o->out[0], to, x->ndim, x->shape)) return -1;
        for (int64_t k = 0; k < x->numel; k++) {
            double v = cget(x, k);
            if (x->i && !etype_is_float(to)) o->out[0]->i[k] = to == OT_BOOL ? x->i[k] != 0 : x->i[k];
            else cset(o->out[0], k, to == OT_BOOL ? v != 0 : etype_is_float(to) ? v : trunc(v));
        }
        return 0;
    }
    if (!etype_is_float(to)) return unsupported(c, "Cast of a runtime tensor to an integer type is not supported");
    return lower_alias(c, o); /* the graph computes in f32; precision is a later pass */
}

static int lower_cast(octx *c, onode *o) { return lower_cast_to(c, o, (int)attr_i(c->node, "to", 0)); }

/* CastLike(x, like) (opset 15; torch's dynamo export with optimize=False): x cast to the type
 * of `like`, a constant's element type, or float for a runtime tensor (the graph's f32) */
static int lower_cast_like(octx *c, onode *o) {
    oval *like = o->nin > 1 ? o->in[1] : NULL;
    if (!like) return fail(c, "CastLike needs a second input (the type to cast to)");
    return lower_cast_to(c, o, like->kind == VAL_CONST ? like->etype : OT_FLOAT);
}

/* Attention (opset 23; torch's scaled_dot_product_attention exported at opset 23): Q, K, V
 * [B,H,S,hd] -> softmax(scale * Q K^T) V, built as fe_attention builds timm's attention
 * (MATMUL with trans_b and alpha, SOFTMAX, MATMUL), so that the fusion passes see one shape */
static int lower_attention(octx *c, onode *o) {
    if (o->nin < 3 || !o->in[1] || !o->in[2]) return fail(c, "Attention needs Q, K and V");
    for (int k = 3; k < o->nin; k++)
        if (o->in[k]) return unsupported(c, "Attention with a mask or a key/value cache is not supported");
    for (int k = 1; k < o->nout; k++)
        if (o->out[k]) return unsupported(c, "Attention's present key/value and qk outputs are not supported");
    oval *q = o->in[0], *kk = o->in[1], *v = o->in[2];
    char s0[128];
    if (q->ndim != 4 || kk->ndim != 4 || v->ndim != 4)
        return fail(c, "Attention is supported on 4-D [batch, heads, sequence, head size] inputs only "
                       "(Q is %s)", shape_str(q->ndim, q->shape, s0, sizeof s0));
    if (attr_i(c->node, "is_causal", 0)) return unsupported(c, "causal Attention is not supported");
    if (attr_f(c->node, "softcap", 0.0) != 0.0) return unsupported(c, "Attention with softcap is not supported");
    if (attr_i(c->node, "qk_matmul_output_mode", 0) != 0)
        return fail(c, "Attention's qk_matmul_output_mode %lld is not supported",
                    (long long)attr_i(c->node, "qk_matmul_output_mode", 0));
    if (q->shape[1] != kk->shape[1] || kk->shape[1] != v->shape[1])
        return unsupported(c, "grouped-query Attention (fewer key/value heads) is not supported");
    double scale = attr_f(c->node, "scale", 1.0 / sqrt((double)q->shape[3]));
    int att = b_matmul(c, ir_of(c, q), ir_of(c, kk), 0, 1, scale);
    att = att < 0 ? -1 : b_node(c, IR_OP_SOFTMAX, &att, 1, NULL, 0, NULL);
    int y = b_matmul(c, att, ir_of(c, v), 0, 0, 1.0);
    if (y < 0) return -1;
    val_set_ir(c, o->out[0], y);
    return 0;
}

static int lower_flatten(octx *c, onode *o) {
    oval *x = o->in[0];
    int64_t axis = attr_i(c->node, "axis", 1);
    if (axis < -x->ndim || axis > x->ndim) return fail(c, "axis %lld out of range", (long long)axis);
    if (axis < 0) axis += x->ndim;
    int64_t s[2] = {1, 1};
    for (int i = 0; i < x->ndim; i++) s[i >= axis] *= x->shape[i];
    return set_reshaped(c, x, 2, s, o->out[0]);
}

static int lower_constant(octx *c, onode *o) {
    const Onnx__NodeProto *n = c->node;
    oval *v = o->out[0];
    for (size_t k = 0; k < n->n_attribute; k++) {
        const Onnx__AttributeProto *a = n->attribute[k];
        if (!a || !a->name) continue;
        if (strcmp(a->name, "value") == 0 && a->t) return tensor_decode(c, a->t, v, "Constant");
        int64_t one = (int64_t)a->n_floats, onei = (int64_t)a->n_ints;
        if (strcmp(a->name, "value_float") == 0) {
            if (val_set_const(c, v, OT_FLOAT, 0, NULL)) return -1;
            v->f[0] = a->f;
            return 0;
        }
        if (strcmp(a->name, "value_int") == 0) {
            if (val_set_const(c, v, OT_INT64, 0, NULL)) return -1;
            v->i[0] = a->i;
            return 0;
        }
        if (strcmp(a->name, "value_floats") == 0) {
            if (val_set_const(c, v, OT_FLOAT, 1, &one)) return -1;
            if (one) memcpy(v->f, a->floats, sizeof(float) * a->n_floats);
            return 0;
        }
        if (strcmp(a->name, "value_ints") == 0) {
            if (val_set_const(c, v, OT_INT64, 1, &onei)) return -1;
            if (onei) memcpy(v->i, a->ints, sizeof(int64_t) * a->n_ints);
            return 0;
        }
    }
    return fail(c, "Constant without a value (value, value_float(s) or value_int(s))");
}

static int lower_constant_of_shape(octx *c, onode *o) {
    int64_t shape[IR_MAX_DIMS];
    int n = const_ints(c, o->in[0], shape, IR_MAX_DIMS, "shape");
    if (n < 0) return -1;
    const Onnx__AttributeProto *a = attr(c->node, "value");
    oval fill;
    memset(&fill, 0, sizeof fill);
    fill.name = o->out[0]->name;
    int et = OT_FLOAT;
    double value = 0;
    if (a && a->t) {
        if (tensor_decode(c, a->t, &fill, "ConstantOfShape value")) {
            free(fill.f);
            free(fill.i);
            return -1;
        }
        if (fill.numel != 1) {
            free(fill.f);
            free(fill.i);
            return fail(c, "ConstantOfShape value must hold one element");
        }
        et = fill.etype;
        value = cget(&fill, 0);
        free(fill.f);
        free(fill.i);
    }
    if (val_set_const(c, o->out[0], et, n, shape)) return -1;
    for (int64_t k = 0; k < o->out[0]->numel; k++) cset(o->out[0], k, value);
    return 0;
}

static int lower_range(octx *c, onode *o) {
    for (int k = 0; k < 3; k++)
        if (o->nin <= k || !is_const(o->in[k]) || o->in[k]->numel != 1) return fail(c, "Range needs constant scalars");
    double s = cget(o->in[0], 0), l = cget(o->in[1], 0), d = cget(o->in[2], 0);
    if (d == 0) return fail(c, "Range with delta 0");
    double cnt = ceil((l - s) / d);
    int64_t n = cnt > 0 ? (int64_t)fmin(cnt, (double)OX_MAX_FOLD + 1) : 0;
    if (val_set_const(c, o->out[0], o->in[0]->etype, 1, &n)) return -1;
    for (int64_t k = 0; k < n; k++) cset(o->out[0], k, s + (double)k * d);
    return 0;
}

static int lower_shape(octx *c, onode *o, int size) {
    oval *x = o->in[0];
    if (size) {
        if (val_set_const(c, o->out[0], OT_INT64, 0, NULL)) return -1;
        o->out[0]->i[0] = x->numel;
        return 0;
    }
    int64_t start = attr_i(c->node, "start", 0), end = attr_i(c->node, "end", x->ndim);
    if (start < 0) start += x->ndim;
    if (end < 0) end += x->ndim;
    start = start < 0 ? 0 : start > x->ndim ? x->ndim : start;
    end = end < start ? start : end > x->ndim ? x->ndim : end;
    int64_t n = end - start;
    if (val_set_const(c, o->out[0], OT_INT64, 1, &n)) return -1;
    for (int64_t k = 0; k < n; k++) o->out[0]->i[k] = x->shape[start + k];
    return 0;
}

static int lower_node(octx *c, onode *o) {
    const char *op = c->node->op_type;
    int all_const = 1;
    for (int k = 0; k < o->nin; k++)
        if (o->in[k] && !is_const(o->in[k])) all_const = 0;
    int need = strcmp(op, "Constant") == 0 || strcmp(op, "Range") == 0 ? 0 : 1;
    if (o->nin < need || (need && !o->in[0])) return fail(c, "missing input");
    if (strcmp(op, "Constant") == 0) return lower_constant(c, o);
    if (strcmp(op, "Shape") == 0) return lower_shape(c, o, 0);
    if (strcmp(op, "Size") == 0) return lower_shape(c, o, 1);
    if (strcmp(op, "ConstantOfShape") == 0) return lower_constant_of_shape(c, o);
    if (strcmp(op, "Range") == 0) return lower_range(c, o);
    if (strcmp(op, "Identity") == 0) return lower_identity(c, o);
    if (strcmp(op, "Dropout") == 0) return lower_alias(c, o);
    if (strcmp(op, "Cast") == 0) return lower_cast(c, o);
    if (strcmp(op, "CastLike") == 0) return lower_cast_like(c, o);
    if (strcmp(op, "Attention") == 0) return lower_attention(c, o);
    if (strcmp(op, "Reshape") == 0) {
        int64_t spec[IR_MAX_DIMS], shape[IR_MAX_DIMS];
        int n = o->nin > 1 && o->in[1] ? const_ints(c, o->in[1], spec, IR_MAX_DIMS, "shape") : (fail(c, "Reshape needs a shape"), -2);
        if (n < 0 || reshape_target(c, o->in[0], spec, n, (int)attr_i(c->node, "allowzero", 0), shape)) return -1;
        return set_reshaped(c, o->in[0], n, shape, o->out[0]);
    }
    if (strcmp(op, "Flatten") == 0) return lower_flatten(c, o);
    if (strcmp(op, "Squeeze") == 0) return lower_squeeze(c, o, 0);
    if (strcmp(op, "Unsqueeze") == 0) return lower_squeeze(c, o, 1);
    if (strcmp(op, "Concat") == 0) return lower_concat(c, o);
    if (strcmp(op, "Gather") == 0) return o->nin < 2 || !o->in[1] ? fail(c, "Gather needs indices") : lower_gather(c, o);
    if (strcmp(op, "Slice") == 0) return lower_slice(c, o);
    if (strcmp(op, "Split") == 0) return lower_split(c, o);
    if (strcmp(op, "Expand") == 0) return lower_expand(c, o);
    if (strcmp(op, "Transpose") == 0) return lower_transpose(c, o);
    static const char *const elementwise[] = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Neg",
                                              "Equal", "Less", "Greater", "Not", "Where", "Tanh"};
    for (size_t k = 0; k < sizeof elementwise / sizeof *elementwise; k++) {
        if (strcmp(op, elementwise[k]) != 0) continue;
        int arity = k < 5 || (k >= 8 && k < 11) ? 2 : k == 12 ? 3 : 1;
        if (o->nin != arity) return fail(c, "takes %d inputs, got %d", arity, o->nin);
        for (int j = 0; j < arity; j++)
            if (!o->in[j]) return fail(c, "missing input %d", j);
        if (all_const) return fold_elementwise(c, op, o->in, arity, o->out[0]);
        if (k < 5) return lower_arith(c, op, o);
        if (k == 5) return lower_unary(c, o, IR_OP_SQRT, 0);
        if (k == 6) return lower_unary(c, o, IR_OP_ERF, 0);
        if (k == 7) {
            int id = b_scale(c, ir_of(c, o->in[0]), -1.0);
            if (id < 0) return -1;
            val_set_ir(c, o->out[0], id);
            return 0;
        }
        if (k == 13) return lower_tanh(c, o);
        return fail(c, "%s of a tensor computed at run time is not supported (only shape arithmetic folds)", op);
    }
    if (strcmp(op, "MatMul") == 0) return lower_matmul(c, o, 0);
    if (strcmp(op, "Gemm") == 0) return lower_matmul(c, o, 1);
    if (strcmp(op, "Conv") == 0) return lower_conv(c, o);
    if (strcmp(op, "ReduceMean") == 0) return lower_reduce_mean(c, o);
    if (strcmp(op, "LayerNormalization") == 0) return lower_layer_norm(c, o);
    if (strcmp(op, "Softmax") == 0) return lower_softmax(c, o);
    if (strcmp(op, "Gelu") == 0) {
        char ap[16];
        attr_s(c->node, "approximate", ap, sizeof ap);
        if (*ap && strcmp(ap, "none") && strcmp(ap, "tanh")) return fail(c, "Gelu approximate '%s' is not supported", ap);
        return lower_unary(c, o, IR_OP_GELU, strcmp(ap, "tanh") == 0);
    }
    return fail(c, "operator %s is not supported", op);
}

/* ---- the graph -------------------------------------------------------------------------- */

static int op_is_known(const char *op) {
    static const char *const ops[] = {
        "Constant", "Shape", "Size", "ConstantOfShape", "Range", "Identity", "Dropout", "Cast",
        "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Gather", "Slice", "Split",
        "Expand", "Transpose", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Neg", "Equal",
        "Less", "Greater", "Not", "Where", "Tanh", "MatMul", "Gemm", "Conv", "ReduceMean",
        "LayerNormalization", "Softmax", "Gelu", "CastLike", "Attention"};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
        if (strcmp(op, ops[k]) == 0) return 1;
    return 0;
}

static int lower_graph(octx *c, const Onnx__GraphProto *gp, int64_t batch) {
    /* initializers */
    for (size_t k = 0; k < gp->n_initializer; k++) {
        const Onnx__TensorProto *t = gp->initializer[k];
        if (!t) continue;
        oval *v = val_define(c, t->name, "initializer");
        if (!v || tensor_decode(c, t, v, "initializer")) return -1;
        v->weight = v->f && v->numel > 1;
        if (v->weight && check_finite(c, v, "initializer", 1)) return -1;
        if (v->f) c->init_bytes += (int64_t)sizeof(float) * v->numel;
    }
    /* the one runtime input */
    const Onnx__ValueInfoProto *input = NULL;
    for (size_t k = 0; k < gp->n_input; k++) {
        const Onnx__ValueInfoProto *vi = gp->input[k];
        if (!vi || !vi->name || val_find(c, vi->name)) continue; /* old exports list initializers */
        if (input) return fail(c, "the graph has more than one runtime input ('%s' and '%s')", input->name, vi->name);
        input = vi;
    }
    if (!input) return fail(c, "the graph has no runtime input");
    c->input_name = input->name;
    const Onnx__TypeProto__Tensor *tt = input->type ? input->type->tensor_type : NULL;
    if (!tt || !tt->shape) return fail(c, "input '%s' has no tensor shape", input->name);
    if (tt->has_elem_type && !etype_is_float(tt->elem_type))
        return fail(c, "input '%s' is %s; a float image tensor is expected", input->name, etype_name(tt->elem_type));
    int ndim = (int)tt->shape->n_dim;
    if (ndim < 1 || ndim > IR_MAX_DIMS) return fail(c, "input '%s' has rank %d", input->name, ndim);
    int64_t shape[IR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        int fixed = d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (i == 0) {
            int64_t want = batch > 0 ? batch : fixed && d->dim_value > 0 ? d->dim_value : 1;
            if (fixed && d->dim_value > 0 && d->dim_value != want)
                return fail(c, "input '%s' has a fixed batch of %lld, but batch %lld is asked for "
                            "(export with dynamic_axes={'%s': {0: 'batch'}})", input->name,
                            (long long)d->dim_value, (long long)want, input->name);
            shape[0] = want;
        } else if (!fixed || d->dim_value <= 0 || d->dim_value > (1 << 24)) {
            return fail(c, "input '%s': dimension %d must be a fixed positive size", input->name, i);
        } else {
            shape[i] = d->dim_value;
        }
    }
    oval *in = val_define(c, input->name, "graph input");
    if (!in) return -1;
    /* the IR calls it "images" whatever the export named it */
    int id = check_ir(c, ir_leaf(c->g, IR_OP_INPUT, IR_F32, ndim, shape, "images", (ir_loc){c->path, 0, 0}));
    if (id < 0) return -1;
    val_set_ir(c, in, id);

    for (size_t k = 0; k < gp->n_node; k++) {
        const Onnx__NodeProto *n = gp->node[k];
        if (!n) continue;
        c->node = n;
        c->node_index = (int)k;
        c->node_name = n->name && *n->name ? n->name : n->n_output && n->output[0] ? n->output[0] : "";
        if (!n->op_type) return fail(c, "node without an op type");
        if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx"))
            return fail(c, "operator %s of domain '%s' is not supported", n->op_type, n->domain);
        if (!op_is_known(n->op_type)) return fail(c, "operator %s is not supported", n->op_type);
        onode o;
        memset(&o, 0, sizeof o);
        if (n->n_input > 16 || n->n_output > 16) return fail(c, "too many inputs or outputs");
        o.nin = (int)n->n_input;
        o.nout = (int)n->n_output;
        for (int i = 0; i < o.nin; i++) {
            const char *nm = n->input[i];
            if (!nm || !*nm) continue; /* optional input left out */
            o.in[i] = val_find(c, nm);
            if (!o.in[i] || o.in[i]->kind == VAL_UNSET)
                return fail(c, "input '%s' is not defined by an earlier node or initializer", nm);
        }
        if (o.nout < 1) return fail(c, "node without outputs");
        for (int i = 0; i < o.nout; i++) {
            const char *nm = n->output[i];
            if (!nm || !*nm) continue;
            if (!(o.out[i] = val_define(c, nm, "node output"))) return -1;
        }
        if (!o.out[0]) return fail(c, "the first output has no name");
        if (lower_node(c, &o)) return -1;
    }
    c->node = NULL;
    return 0;
}

/* Keeps the nodes the output needs (and the input), in order, in a new graph. */
static ir_graph *prune(octx *c, int out) {
    ir_graph *g = c->g;
    char *live = calloc((size_t)g->n, 1);
    int *map = malloc(sizeof(int) * (size_t)g->n);
    if (!live || !map) {
        free(live);
        free(map);
        fail(c, "out of memory for the %d nodes of the graph", g->n);
        return NULL;
    }
    live[out] = 1;
    for (int i = g->n - 1; i >= 0; i--) {
        if (g->nodes[i].op == IR_OP_INPUT) live[i] = 1;
        if (!live[i]) continue;
        for (int k = 0; k < g->nodes[i].ninputs; k++) live[g->nodes[i].inputs[k]] = 1;
    }
    for (int i = 0; i < g->n; i++) {
        if (!live[i] || !is_tanh_marker(c, i)) continue;
        /* a Tanh of the GELU's inner form whose 0.5 * x * (1 + tanh) never followed */
        int k = g->nodes[i].loc.line - 1;
        const Onnx__GraphProto *gp = c->model->graph;
        c->node = k >= 0 && (size_t)k < gp->n_node ? gp->node[k] : NULL;
        c->node_index = k;
        c->node_name = c->node && c->node->name && *c->node->name ? c->node->name : g->nodes[i].name ? g->nodes[i].name : "";
        fail(c, "Tanh is supported only inside the tanh-approximate GELU "
                "0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), and its result is used otherwise");
        c->node = NULL;
        free(live);
        free(map);
        return NULL;
    }
    ir_graph *ng = ir_graph_new();
    for (int i = 0; i < g->n; i++) {
        map[i] = -1;
        if (live[i] && (map[i] = ir_copy_node(ng, g, i, map)) < 0) {
            fail(c, "%s%s", strstr(ng->error, "out of memory") ? "" : "internal error: ", ng->error);
            ir_graph_free(ng);
            ng = NULL;
            break;
        }
    }
    free(live);
    if (ng) ir_node_set_output(ng, map[out], "logits");
    free(map);
    return ng;
}

/* Model facts for `deitc inspect`, read off the recovered graph. */
static void fill_info(octx *c, ir_graph *g, int64_t batch) {
    ir_model_info *m = &g->info;
    const char *base = strrchr(c->path, '/');
    base = base ? base + 1 : c->path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".onnx") == 0) n -= 5; /* torch names every graph torch_jit */
    m->model_name = ir_arena_printf(&g->arena, "%.*s", (int)n, base);
    m->batch = batch;
    int64_t dim = 0;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op == IR_OP_INPUT && n->ndim == 4) {
            m->in_chans = n->shape[1];
            m->img_size = n->shape[2];
        } else if (n->op == IR_OP_PATCHIFY && !m->patch_size) {
            m->patch_size = n->attrs.patch;
        } else if (n->op == IR_OP_LAYER_NORM && !dim) {
            dim = m->embed_dim = n->shape[n->ndim - 1];
        } else if (n->op == IR_OP_SOFTMAX) {
            if (!m->depth && n->ndim == 4) m->num_heads = n->shape[1];
            m->depth++;
        } else if (n->op == IR_OP_GELU && dim && m->mlp_ratio == 0) {
            m->mlp_ratio = (double)n->shape[n->ndim - 1] / (double)dim;
        }
        if (n->flags & IR_NODE_OUTPUT) m->num_classes = n->shape[n->ndim - 1];
    }
}

/* -D overrides cannot change an ONNX model: they may only restate what it has. */
static int check_defines(octx *c, const ir_model_info *m, const fe_define *d, int nd) {
    const struct { const char *name; double value; } facts[] = {
        {"img_size", (double)m->img_size},   {"patch_size", (double)m->patch_size},
        {"in_chans", (double)m->in_chans},   {"num_classes", (double)m->num_classes},
        {"embed_dim", (double)m->embed_dim}, {"depth", (double)m->depth},
        {"num_heads", (double)m->num_heads}, {"mlp_ratio", m->mlp_ratio}};
    for (int k = 0; k < nd; k++) {
        size_t j = 0;
        while (j < sizeof facts / sizeof *facts && strcmp(facts[j].name, d[k].name)) j++;
        if (j == sizeof facts / sizeof *facts)
            return fail(c, "-D %s=%s: an ONNX model has no parameter '%s' (its shapes are fixed by the file)",
                        d[k].name, d[k].value, d[k].name);
        char *end;
        double v = strtod(d[k].value, &end);
        if (*end || v != facts[j].value)
            return fail(c, "-D %s=%s: the ONNX model has %s = %g, and its shapes are fixed by the file",
                        d[k].name, d[k].value, d[k].name, facts[j].value);
    }
    return 0;
}

/* fe_onnx_load on a file's bytes in memory (fuzzing, tests); `path` names the model in
 * messages and locates external data files. */
int fe_onnx_load_buffer(const void *data, size_t len, const char *path, const fe_define *defines,
                        int ndefines, int64_t batch, ir_graph **out, char *err, size_t errsize);

int fe_onnx_load_buffer(const void *data, size_t len, const char *path, const fe_define *defines,
                        int ndefines, int64_t batch, ir_graph **out, char *err, size_t errsize) {
    static char dummy[1];
    if (!err || !errsize) err = dummy, errsize = 1;
    err[0] = 0;
    *out = NULL;
    octx c;
    memset(&c, 0, sizeof c);
    c.path = path;
    c.err = err;
    c.errsize = errsize;
    const char *slash = strrchr(path, '/');
    if (slash && (size_t)(slash - path) + 2 < sizeof c.dir) memcpy(c.dir, path, (size_t)(slash - path) + 1);
    char why[400];
    if (fe_onnx_scan(data, len, why, sizeof why)) return fail(&c, "not a supported ONNX model: %s", why);
    c.model = onnx__model_proto__unpack(NULL, len, data);
    if (!c.model) return fail(&c, "not an ONNX model (the protobuf does not parse: truncated or corrupt file)");
    int rc = -1;
    const Onnx__GraphProto *gp = c.model->graph;
    if (!gp) {
        fail(&c, "not an ONNX model (no graph)");
        goto done;
    }
    c.opset = -1;
    for (size_t k = 0; k < c.model->n_opset_import; k++) {
        const Onnx__OperatorSetIdProto *o = c.model->opset_import[k];
        if (o && (!o->domain || !*o->domain || strcmp(o->domain, "ai.onnx") == 0) && o->has_version)
            c.opset = o->version;
    }
    if (c.opset < 0) {
        fail(&c, "the model imports no version of the default opset");
        goto done;
    }
    if (c.opset < 7 || c.opset > 23) {
        fail(&c, "opset %lld is not supported (7 to 23; torch.onnx.export writes 17 by default with "
             "dynamo=False, 18 to 20 by default with dynamo=True, and up to 23 when asked)", (long long)c.opset);
        goto done;
    }
    /* every value: initializers, inputs, node outputs */
    size_t nv = gp->n_initializer + gp->n_input + 1;
    for (size_t k = 0; k < gp->n_node; k++) nv += gp->node[k] ? gp->node[k]->n_output : 0;
    if (nv > (1u << 24)) {
        fail(&c, "graph too large");
        goto done;
    }
    c.capvals = (int)nv;
    c.vals = calloc(nv, sizeof(oval));
    for (c.hashcap = 16; (size_t)c.hashcap < 2 * nv;) c.hashcap *= 2;
    c.hash = malloc(sizeof(int) * (size_t)c.hashcap);
    if (!c.vals || !c.hash) {
        fail(&c, "out of memory for the %zu values of the graph", nv);
        goto done;
    }
    memset(c.hash, 0xff, sizeof(int) * (size_t)c.hashcap);
    c.g = ir_graph_new();
    if (lower_graph(&c, gp, batch)) goto done;
    if (gp->n_output < 1 || !gp->output[0] || !gp->output[0]->name) {
        fail(&c, "the graph has no output");
        goto done;
    }
    oval *o = val_find(&c, gp->output[0]->name);
    if (!o || o->kind == VAL_UNSET) {
        fail(&c, "output '%s' is not computed by any node", gp->output[0]->name);
        goto done;
    }
    if (o->kind != VAL_IR || ir_op_flags(c.g->nodes[o->ir].op) & IR_OPF_LEAF) {
        fail(&c, "output '%s' does not depend on the input", o->name);
        goto done;
    }
    ir_graph *g = prune(&c, o->ir);
    if (!g || !(g = fe_onnx_timm_names(g, err, errsize))) goto done;
    fill_info(&c, g, batch > 0 ? batch : g->nodes[0].shape[0]);
    if (check_defines(&c, &g->info, defines, ndefines)) {
        ir_graph_free(g);
        goto done;
    }
    *out = g;
    rc = 0;
done:
    for (int k = 0; k < c.nvals; k++) {
        free(c.vals[k].f);
        free(c.vals[k].i);
    }
    free(c.vals);
    free(c.hash);
    free(c.ext);
    ir_graph_free(c.g);
    onnx__model_proto__free_unpacked(c.model, NULL);
    return rc;
}

int fe_onnx_load(const char *path, const fe_define *defines, int ndefines, int64_t batch,
                 ir_graph **out, char *err, size_t errsize) {
    *out = NULL;
    void *buf;
    size_t len;
    char why[1200];
    if (rt_input_read(path, 0, OX_MAX_FILE, &buf, &len, why, sizeof why)) {
        snprintf(err, errsize, "%s%s", why, strstr(why, "bytes allowed") ? " (keep weights in external data files)" : "");
        return -1;
    }
    int rc = fe_onnx_load_buffer(buf, len, path, defines, ndefines, batch, out, err, errsize);
    free(buf);
    return rc;
}

#else
typedef int fe_onnx_not_built; /* ISO C wants a translation unit to declare something */
#endif
