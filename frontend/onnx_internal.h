/* onnx_internal.h: what the ONNX reader's files share (private to frontend/onnx*.c).
 *
 * The reader (see onnx.c for the whole design) is split by concern:
 *   onnx.c           entry points fe_onnx_load/_buffer, the value table, node attributes, the
 *                    walk over the graph's nodes (lower_node dispatches on the op type), pruning
 *   onnx_tensor.c    initializer/tensor decoding, external data, finiteness checks, constant
 *                    folding, and the nodes that make constants
 *   onnx_patterns.c  IR builders with peepholes: LayerNorm and GELU recovery from decomposed
 *                    graphs, transposes and scales folded into MATMUL, reshape/permute collapse
 *   onnx_ops.c       the per-op importers (lower_*), attention included
 * Internal functions carry the prefix fe_ox_; each is documented where it is defined.
 */
#ifndef DEITC_ONNX_INTERNAL_H
#define DEITC_ONNX_INTERNAL_H

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
static inline int etype_is_float(int t) {
    return t == OT_FLOAT || t == OT_FLOAT16 || t == OT_DOUBLE || t == OT_BFLOAT16;
}

static inline int etype_size(int t) {
    switch (t) {
    case OT_UINT8: case OT_INT8: case OT_BOOL: return 1;
    case OT_UINT16: case OT_INT16: case OT_FLOAT16: case OT_BFLOAT16: return 2;
    case OT_FLOAT: case OT_INT32: case OT_UINT32: return 4;
    case OT_INT64: case OT_DOUBLE: case OT_UINT64: return 8;
    default: return 0;
    }
}

static inline const char *etype_name(int t) {
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

/* The inputs and outputs of the node being lowered. */
typedef struct {
    oval *in[16];
    int nin;
    oval *out[16];
    int nout;
} onode;

/* ---- element access of constants (inline: used in the folding loops) --------------------- */

static inline int fe_ox_is_const(const oval *v) { return v && v->kind == VAL_CONST && !v->weight; }

static inline double fe_ox_cget(const oval *v, int64_t k) { return v->f ? (double)v->f[k] : (double)v->i[k]; }

/* double -> int64 without undefined behaviour (saturates; NaN -> 0) */
static inline int64_t fe_ox_to_i64(double x) {
    if (!(x == x)) return 0;
    if (x >= 9.2e18) return INT64_MAX;
    if (x <= -9.2e18) return INT64_MIN;
    return (int64_t)x;
}

/* flat index into v of the output element with multi-index idx (rank n), broadcasting */
static inline int64_t fe_ox_bcast_index(const oval *v, int n, const int64_t *idx) {
    int64_t k = 0;
    for (int i = 0; i < v->ndim; i++) {
        int64_t d = v->shape[i], j = idx[n - v->ndim + i];
        k = k * d + (d == 1 ? 0 : j);
    }
    return k;
}

static inline void fe_ox_unravel(int64_t flat, int n, const int64_t *shape, int64_t *idx) {
    for (int i = n - 1; i >= 0; i--) {
        idx[i] = shape[i] ? flat % shape[i] : 0;
        flat = shape[i] ? flat / shape[i] : 0;
    }
}

static inline void fe_ox_cset(oval *v, int64_t k, double x) {
    if (v->f) v->f[k] = (float)x;
    else v->i[k] = fe_ox_to_i64(x);
}

static inline void fe_ox_ccopy(oval *dst, int64_t k, const oval *src, int64_t j) {
    if (dst->f) dst->f[k] = src->f ? src->f[j] : (float)src->i[j];
    else dst->i[k] = src->i ? src->i[j] : fe_ox_to_i64(src->f[j]);
}

/* ---- onnx.c: the value table, node attributes, the graph walk ------------------------ */

int fe_ox_fail(octx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *fe_ox_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);
int fe_ox_val_set_const(octx *c, oval *v, int etype, int ndim, const int64_t *shape);
void fe_ox_val_set_ir(octx *c, oval *v, int id);
const Onnx__AttributeProto *fe_ox_attr(const Onnx__NodeProto *n, const char *name);
int64_t fe_ox_attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt);
double fe_ox_attr_f(const Onnx__NodeProto *n, const char *name, double dflt);
const char *fe_ox_attr_s(const Onnx__NodeProto *n, const char *name, char *buf, size_t size);
int fe_ox_attr_ints(octx *c, const char *name, int64_t *out, int max);
int fe_ox_const_ints(octx *c, const oval *v, int64_t *out, int max, const char *what);
int fe_ox_norm_axis(octx *c, int64_t *a, int r, const char *what);

/* ---- onnx_tensor.c: tensor decoding, finiteness, constant folding, constant ops ------ */

int fe_ox_check_finite(octx *c, const oval *v, const char *what, int weight);
int fe_ox_tensor_decode(octx *c, const Onnx__TensorProto *t, oval *v, const char *what);
int fe_ox_broadcast(octx *c, int na, const int64_t *a, int nb, const int64_t *b, int *no, int64_t *o);
int fe_ox_fold_elementwise(octx *c, const char *op, oval **in, int nin, oval *out);
int fe_ox_fold_reshape(octx *c, const oval *v, int ndim, const int64_t *shape, oval *out);
int fe_ox_fold_slice(octx *c, const oval *v, int axis, int64_t start, int64_t count, int64_t step, oval *out);
int fe_ox_lower_constant(octx *c, onode *o);
int fe_ox_lower_constant_of_shape(octx *c, onode *o);
int fe_ox_lower_range(octx *c, onode *o);
int fe_ox_lower_shape(octx *c, onode *o, int size);

/* ---- onnx_patterns.c: IR builders and pattern recovery ------------------------------- */

int fe_ox_check_ir(octx *c, int id);
int fe_ox_b_node(octx *c, ir_op op, const int *in, int nin, const ir_attrs *a, int ndim, const int64_t *shape);
int fe_ox_b_const(octx *c, double value, int ndim, const int64_t *shape);
int fe_ox_b_reshape(octx *c, int x, int ndim, const int64_t *shape);
int fe_ox_b_permute(octx *c, int x, const int64_t *perm);
int fe_ox_b_matmul(octx *c, int a, int b, int ta, int tb, double alpha);
int fe_ox_b_scale(octx *c, int x, double alpha);
int fe_ox_b_binary(octx *c, ir_op op, int a, int b);
int fe_ox_is_tanh_marker(octx *c, int id);
int fe_ox_tanh_gelu_arg(octx *c, int u);
int fe_ox_ir_of(octx *c, oval *v);

/* ---- onnx_ops.c: the per-op importers ------------------------------------------------ */

int fe_ox_reshape_target(octx *c, const oval *x, const int64_t *spec, int n, int allowzero, int64_t *out);
int fe_ox_set_reshaped(octx *c, oval *x, int ndim, const int64_t *shape, oval *out);
int fe_ox_lower_squeeze(octx *c, onode *o, int unsq);
int fe_ox_lower_slice(octx *c, onode *o);
int fe_ox_lower_split(octx *c, onode *o);
int fe_ox_lower_gather(octx *c, onode *o);
int fe_ox_lower_concat(octx *c, onode *o);
int fe_ox_lower_expand(octx *c, onode *o);
int fe_ox_lower_transpose(octx *c, onode *o);
int fe_ox_lower_arith(octx *c, const char *op, onode *o);
int fe_ox_lower_conv(octx *c, onode *o);
int fe_ox_lower_matmul(octx *c, onode *o, int gemm);
int fe_ox_lower_reduce_mean(octx *c, onode *o);
int fe_ox_lower_layer_norm(octx *c, onode *o);
int fe_ox_lower_softmax(octx *c, onode *o);
int fe_ox_lower_unary(octx *c, onode *o, ir_op op, int gelu_tanh);
int fe_ox_lower_tanh(octx *c, onode *o);
int fe_ox_lower_alias(octx *c, onode *o);
int fe_ox_lower_identity(octx *c, onode *o);
int fe_ox_lower_cast(octx *c, onode *o);
int fe_ox_lower_cast_like(octx *c, onode *o);
int fe_ox_lower_attention(octx *c, onode *o);
int fe_ox_lower_flatten(octx *c, onode *o);

#endif /* DEITC_ONNX_INTERNAL_H */
