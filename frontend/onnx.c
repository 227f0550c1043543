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
 *
 * The reader is split by concern (onnx_internal.h lists what the files share): this file has
 * the entry points fe_onnx_load/_buffer, the value table, node attributes and the walk over
 * the nodes (lower_node dispatches on the op type); onnx_tensor.c decodes tensors and folds
 * constants, onnx_patterns.c holds the IR builders and the pattern recovery of step 3, and
 * onnx_ops.c the per-op importers of step 2.
 */
#ifdef DEITC_HAVE_ONNX
#include "frontend/onnx_internal.h"

int fe_ox_fail(octx *c, const char *fmt, ...) {
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
        fe_ox_fail(c, "%s has no name", what);
        return NULL;
    }
    if (val_find(c, name)) {
        fe_ox_fail(c, "value '%s' is defined twice (%s)", name, what);
        return NULL;
    }
    if (c->nvals == c->capvals) {
        fe_ox_fail(c, "too many values"); /* cannot happen: capvals counts every definition */
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

const char *fe_ox_shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < size) snprintf(buf + k, size - k, "]");
    return buf;
}

/* Makes v a constant of the given type and shape with zeroed elements. */
int fe_ox_val_set_const(octx *c, oval *v, int etype, int ndim, const int64_t *shape) {
    char s[128];
    if (ndim < 0 || ndim > IR_MAX_DIMS) return fe_ox_fail(c, "'%s' has %d dimensions (at most %d)", v->name, ndim, IR_MAX_DIMS);
    int64_t k = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return fe_ox_fail(c, "'%s' has a negative dimension", v->name);
        if (__builtin_mul_overflow(k, shape[i], &k) || k > OX_MAX_FOLD)
            return fe_ox_fail(c, "constant '%s' of shape %s is too large to fold (more than %lld elements)",
                        v->name, fe_ox_shape_str(ndim, shape, s, sizeof s), (long long)OX_MAX_FOLD);
    }
    if ((c->folded += k) > OX_MAX_FOLD_TOTAL)
        return fe_ox_fail(c, "constant '%s' of shape %s: the constants folded so far exceed %lld elements in all",
                    v->name, fe_ox_shape_str(ndim, shape, s, sizeof s), (long long)OX_MAX_FOLD_TOTAL);
    v->kind = VAL_CONST;
    v->etype = etype;
    v->ndim = ndim;
    if (ndim > 0) memcpy(v->shape, shape, sizeof(int64_t) * (size_t)ndim);
    v->numel = k;
    size_t n = (size_t)(k ? k : 1);
    if (etype_is_float(etype)) v->f = calloc(n, sizeof(float));
    else v->i = calloc(n, sizeof(int64_t));
    if (!v->f && !v->i)
        return fe_ox_fail(c, "out of memory for constant '%s' of shape %s", v->name, fe_ox_shape_str(ndim, shape, s, sizeof s));
    return 0;
}

void fe_ox_val_set_ir(octx *c, oval *v, int id) {
    v->kind = VAL_IR;
    v->ir = id;
    const ir_node *n = &c->g->nodes[id];
    v->ndim = n->ndim;
    memcpy(v->shape, n->shape, sizeof v->shape);
    v->numel = ir_numel(n);
    v->etype = n->dtype == IR_F32 ? OT_FLOAT : n->dtype == IR_I64 ? OT_INT64 : OT_FLOAT;
}

/* ---- attributes ------------------------------------------------------------------------- */

const Onnx__AttributeProto *fe_ox_attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t k = 0; k < n->n_attribute; k++)
        if (n->attribute[k] && n->attribute[k]->name && strcmp(n->attribute[k]->name, name) == 0)
            return n->attribute[k];
    return NULL;
}

int64_t fe_ox_attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
    const Onnx__AttributeProto *a = fe_ox_attr(n, name);
    return a && a->has_i ? a->i : dflt;
}

double fe_ox_attr_f(const Onnx__NodeProto *n, const char *name, double dflt) {
    const Onnx__AttributeProto *a = fe_ox_attr(n, name);
    return a && a->has_f ? a->f : dflt;
}

/* Copies a string attribute into buf ("" when absent). */
const char *fe_ox_attr_s(const Onnx__NodeProto *n, const char *name, char *buf, size_t size) {
    const Onnx__AttributeProto *a = fe_ox_attr(n, name);
    size_t k = a && a->has_s ? a->s.len : 0;
    if (k >= size) k = size - 1;
    if (k) memcpy(buf, a->s.data, k);
    buf[k] = 0;
    return buf;
}

/* A list-of-ints attribute into out (at most max); its length, or -1 when absent. */
int fe_ox_attr_ints(octx *c, const char *name, int64_t *out, int max) {
    const Onnx__AttributeProto *a = fe_ox_attr(c->node, name);
    if (!a || (!a->n_ints && !(a->has_type && a->type == ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS))) return -1;
    if (a->n_ints > (size_t)max) return fe_ox_fail(c, "attribute %s has %zu values (at most %d)", name, a->n_ints, max), -2;
    if (a->n_ints) memcpy(out, a->ints, sizeof(int64_t) * a->n_ints);
    return (int)a->n_ints;
}

/* A constant integer list (1-D or scalar) into out; its length, or -2 with an error. */
int fe_ox_const_ints(octx *c, const oval *v, int64_t *out, int max, const char *what) {
    if (!fe_ox_is_const(v))
        return fe_ox_fail(c, "%s must be a constant (it is computed at run time)", what), -2;
    if (v->ndim > 1 || v->numel > max)
        return fe_ox_fail(c, "%s must be a list of at most %d integers", what, max), -2;
    for (int64_t k = 0; k < v->numel; k++) {
        double x = fe_ox_cget(v, k);
        if (v->f && (x != floor(x) || fabs(x) > 9e18)) return fe_ox_fail(c, "%s must hold integers", what), -2;
        out[k] = v->f ? (int64_t)x : v->i[k];
    }
    return (int)v->numel;
}

/* Normalizes axis a for rank r; -1 with an error when out of range. */
int fe_ox_norm_axis(octx *c, int64_t *a, int r, const char *what) {
    if (*a < -r || *a >= (r ? r : 1)) return fe_ox_fail(c, "%s %lld is out of range for rank %d", what, (long long)*a, r);
    if (*a < 0) *a += r;
    return 0;
}

/* ---- the walk: dispatch, graph, pruning, entry points ------------------------------------ */

static int lower_node(octx *c, onode *o) {
    const char *op = c->node->op_type;
    int all_const = 1;
    for (int k = 0; k < o->nin; k++)
        if (o->in[k] && !fe_ox_is_const(o->in[k])) all_const = 0;
    int need = strcmp(op, "Constant") == 0 || strcmp(op, "Range") == 0 ? 0 : 1;
    if (o->nin < need || (need && !o->in[0])) return fe_ox_fail(c, "missing input");
    if (strcmp(op, "Constant") == 0) return fe_ox_lower_constant(c, o);
    if (strcmp(op, "Shape") == 0) return fe_ox_lower_shape(c, o, 0);
    if (strcmp(op, "Size") == 0) return fe_ox_lower_shape(c, o, 1);
    if (strcmp(op, "ConstantOfShape") == 0) return fe_ox_lower_constant_of_shape(c, o);
    if (strcmp(op, "Range") == 0) return fe_ox_lower_range(c, o);
    if (strcmp(op, "Identity") == 0) return fe_ox_lower_identity(c, o);
    if (strcmp(op, "Dropout") == 0) return fe_ox_lower_alias(c, o);
    if (strcmp(op, "Cast") == 0) return fe_ox_lower_cast(c, o);
    if (strcmp(op, "CastLike") == 0) return fe_ox_lower_cast_like(c, o);
    if (strcmp(op, "Attention") == 0) return fe_ox_lower_attention(c, o);
    if (strcmp(op, "Reshape") == 0) {
        int64_t spec[IR_MAX_DIMS], shape[IR_MAX_DIMS];
        int n = o->nin > 1 && o->in[1] ? fe_ox_const_ints(c, o->in[1], spec, IR_MAX_DIMS, "shape") : (fe_ox_fail(c, "Reshape needs a shape"), -2);
        if (n < 0 || fe_ox_reshape_target(c, o->in[0], spec, n, (int)fe_ox_attr_i(c->node, "allowzero", 0), shape)) return -1;
        return fe_ox_set_reshaped(c, o->in[0], n, shape, o->out[0]);
    }
    if (strcmp(op, "Flatten") == 0) return fe_ox_lower_flatten(c, o);
    if (strcmp(op, "Squeeze") == 0) return fe_ox_lower_squeeze(c, o, 0);
    if (strcmp(op, "Unsqueeze") == 0) return fe_ox_lower_squeeze(c, o, 1);
    if (strcmp(op, "Concat") == 0) return fe_ox_lower_concat(c, o);
    if (strcmp(op, "Gather") == 0) return o->nin < 2 || !o->in[1] ? fe_ox_fail(c, "Gather needs indices") : fe_ox_lower_gather(c, o);
    if (strcmp(op, "Slice") == 0) return fe_ox_lower_slice(c, o);
    if (strcmp(op, "Split") == 0) return fe_ox_lower_split(c, o);
    if (strcmp(op, "Expand") == 0) return fe_ox_lower_expand(c, o);
    if (strcmp(op, "Transpose") == 0) return fe_ox_lower_transpose(c, o);
    static const char *const elementwise[] = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Neg",
                                              "Equal", "Less", "Greater", "Not", "Where", "Tanh"};
    for (size_t k = 0; k < sizeof elementwise / sizeof *elementwise; k++) {
        if (strcmp(op, elementwise[k]) != 0) continue;
        int arity = k < 5 || (k >= 8 && k < 11) ? 2 : k == 12 ? 3 : 1;
        if (o->nin != arity) return fe_ox_fail(c, "takes %d inputs, got %d", arity, o->nin);
        for (int j = 0; j < arity; j++)
            if (!o->in[j]) return fe_ox_fail(c, "missing input %d", j);
        if (all_const) return fe_ox_fold_elementwise(c, op, o->in, arity, o->out[0]);
        if (k < 5) return fe_ox_lower_arith(c, op, o);
        if (k == 5) return fe_ox_lower_unary(c, o, IR_OP_SQRT, 0);
        if (k == 6) return fe_ox_lower_unary(c, o, IR_OP_ERF, 0);
        if (k == 7) {
            int id = fe_ox_b_scale(c, fe_ox_ir_of(c, o->in[0]), -1.0);
            if (id < 0) return -1;
            fe_ox_val_set_ir(c, o->out[0], id);
            return 0;
        }
        if (k == 13) return fe_ox_lower_tanh(c, o);
        return fe_ox_fail(c, "%s of a tensor computed at run time is not supported (only shape arithmetic folds)", op);
    }
    if (strcmp(op, "MatMul") == 0) return fe_ox_lower_matmul(c, o, 0);
    if (strcmp(op, "Gemm") == 0) return fe_ox_lower_matmul(c, o, 1);
    if (strcmp(op, "Conv") == 0) return fe_ox_lower_conv(c, o);
    if (strcmp(op, "ReduceMean") == 0) return fe_ox_lower_reduce_mean(c, o);
    if (strcmp(op, "LayerNormalization") == 0) return fe_ox_lower_layer_norm(c, o);
    if (strcmp(op, "Softmax") == 0) return fe_ox_lower_softmax(c, o);
    if (strcmp(op, "Gelu") == 0) {
        char ap[16];
        fe_ox_attr_s(c->node, "approximate", ap, sizeof ap);
        if (*ap && strcmp(ap, "none") && strcmp(ap, "tanh")) return fe_ox_fail(c, "Gelu approximate '%s' is not supported", ap);
        return fe_ox_lower_unary(c, o, IR_OP_GELU, strcmp(ap, "tanh") == 0);
    }
    return fe_ox_fail(c, "operator %s is not supported", op);
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
        if (!v || fe_ox_tensor_decode(c, t, v, "initializer")) return -1;
        v->weight = v->f && v->numel > 1;
        if (v->weight && fe_ox_check_finite(c, v, "initializer", 1)) return -1;
        if (v->f) c->init_bytes += (int64_t)sizeof(float) * v->numel;
    }
    /* the one runtime input */
    const Onnx__ValueInfoProto *input = NULL;
    for (size_t k = 0; k < gp->n_input; k++) {
        const Onnx__ValueInfoProto *vi = gp->input[k];
        if (!vi || !vi->name || val_find(c, vi->name)) continue; /* old exports list initializers */
        if (input) return fe_ox_fail(c, "the graph has more than one runtime input ('%s' and '%s')", input->name, vi->name);
        input = vi;
    }
    if (!input) return fe_ox_fail(c, "the graph has no runtime input");
    c->input_name = input->name;
    const Onnx__TypeProto__Tensor *tt = input->type ? input->type->tensor_type : NULL;
    if (!tt || !tt->shape) return fe_ox_fail(c, "input '%s' has no tensor shape", input->name);
    if (tt->has_elem_type && !etype_is_float(tt->elem_type))
        return fe_ox_fail(c, "input '%s' is %s; a float image tensor is expected", input->name, etype_name(tt->elem_type));
    int ndim = (int)tt->shape->n_dim;
    if (ndim < 1 || ndim > IR_MAX_DIMS) return fe_ox_fail(c, "input '%s' has rank %d", input->name, ndim);
    int64_t shape[IR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        int fixed = d && d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (i == 0) {
            int64_t want = batch > 0 ? batch : fixed && d->dim_value > 0 ? d->dim_value : 1;
            if (fixed && d->dim_value > 0 && d->dim_value != want)
                return fe_ox_fail(c, "input '%s' has a fixed batch of %lld, but batch %lld is asked for "
                            "(export with dynamic_axes={'%s': {0: 'batch'}})", input->name,
                            (long long)d->dim_value, (long long)want, input->name);
            shape[0] = want;
        } else if (!fixed || d->dim_value <= 0 || d->dim_value > (1 << 24)) {
            return fe_ox_fail(c, "input '%s': dimension %d must be a fixed positive size", input->name, i);
        } else {
            shape[i] = d->dim_value;
        }
    }
    oval *in = val_define(c, input->name, "graph input");
    if (!in) return -1;
    /* the IR calls it "images" whatever the export named it */
    int id = fe_ox_check_ir(c, ir_leaf(c->g, IR_OP_INPUT, IR_F32, ndim, shape, "images", (ir_loc){c->path, 0, 0}));
    if (id < 0) return -1;
    fe_ox_val_set_ir(c, in, id);

    for (size_t k = 0; k < gp->n_node; k++) {
        const Onnx__NodeProto *n = gp->node[k];
        if (!n) continue;
        c->node = n;
        c->node_index = (int)k;
        c->node_name = n->name && *n->name ? n->name : n->n_output && n->output[0] ? n->output[0] : "";
        if (!n->op_type) return fe_ox_fail(c, "node without an op type");
        if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx"))
            return fe_ox_fail(c, "operator %s of domain '%s' is not supported", n->op_type, n->domain);
        if (!op_is_known(n->op_type)) return fe_ox_fail(c, "operator %s is not supported", n->op_type);
        onode o;
        memset(&o, 0, sizeof o);
        if (n->n_input > 16 || n->n_output > 16) return fe_ox_fail(c, "too many inputs or outputs");
        o.nin = (int)n->n_input;
        o.nout = (int)n->n_output;
        for (int i = 0; i < o.nin; i++) {
            const char *nm = n->input[i];
            if (!nm || !*nm) continue; /* optional input left out */
            o.in[i] = val_find(c, nm);
            if (!o.in[i] || o.in[i]->kind == VAL_UNSET)
                return fe_ox_fail(c, "input '%s' is not defined by an earlier node or initializer", nm);
        }
        if (o.nout < 1) return fe_ox_fail(c, "node without outputs");
        for (int i = 0; i < o.nout; i++) {
            const char *nm = n->output[i];
            if (!nm || !*nm) continue;
            if (!(o.out[i] = val_define(c, nm, "node output"))) return -1;
        }
        if (!o.out[0]) return fe_ox_fail(c, "the first output has no name");
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
        fe_ox_fail(c, "out of memory for the %d nodes of the graph", g->n);
        return NULL;
    }
    live[out] = 1;
    for (int i = g->n - 1; i >= 0; i--) {
        if (g->nodes[i].op == IR_OP_INPUT) live[i] = 1;
        if (!live[i]) continue;
        for (int k = 0; k < g->nodes[i].ninputs; k++) live[g->nodes[i].inputs[k]] = 1;
    }
    for (int i = 0; i < g->n; i++) {
        if (!live[i] || !fe_ox_is_tanh_marker(c, i)) continue;
        /* a Tanh of the GELU's inner form whose 0.5 * x * (1 + tanh) never followed */
        int k = g->nodes[i].loc.line - 1;
        const Onnx__GraphProto *gp = c->model->graph;
        c->node = k >= 0 && (size_t)k < gp->n_node ? gp->node[k] : NULL;
        c->node_index = k;
        c->node_name = c->node && c->node->name && *c->node->name ? c->node->name : g->nodes[i].name ? g->nodes[i].name : "";
        fe_ox_fail(c, "Tanh is supported only inside the tanh-approximate GELU "
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
            fe_ox_fail(c, "%s%s", strstr(ng->error, "out of memory") ? "" : "internal error: ", ng->error);
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
            return fe_ox_fail(c, "-D %s=%s: an ONNX model has no parameter '%s' (its shapes are fixed by the file)",
                        d[k].name, d[k].value, d[k].name);
        char *end;
        double v = strtod(d[k].value, &end);
        if (*end || v != facts[j].value)
            return fe_ox_fail(c, "-D %s=%s: the ONNX model has %s = %g, and its shapes are fixed by the file",
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
    if (fe_onnx_scan(data, len, why, sizeof why)) return fe_ox_fail(&c, "not a supported ONNX model: %s", why);
    c.model = onnx__model_proto__unpack(NULL, len, data);
    if (!c.model) return fe_ox_fail(&c, "not an ONNX model (the protobuf does not parse: truncated or corrupt file)");
    int rc = -1;
    const Onnx__GraphProto *gp = c.model->graph;
    if (!gp) {
        fe_ox_fail(&c, "not an ONNX model (no graph)");
        goto done;
    }
    c.opset = -1;
    for (size_t k = 0; k < c.model->n_opset_import; k++) {
        const Onnx__OperatorSetIdProto *o = c.model->opset_import[k];
        if (o && (!o->domain || !*o->domain || strcmp(o->domain, "ai.onnx") == 0) && o->has_version)
            c.opset = o->version;
    }
    if (c.opset < 0) {
        fe_ox_fail(&c, "the model imports no version of the default opset");
        goto done;
    }
    if (c.opset < 7 || c.opset > 23) {
        fe_ox_fail(&c, "opset %lld is not supported (7 to 23; torch.onnx.export writes 17 by default with "
             "dynamo=False, 18 to 20 by default with dynamo=True, and up to 23 when asked)", (long long)c.opset);
        goto done;
    }
    /* every value: initializers, inputs, node outputs */
    size_t nv = gp->n_initializer + gp->n_input + 1;
    for (size_t k = 0; k < gp->n_node; k++) nv += gp->node[k] ? gp->node[k]->n_output : 0;
    if (nv > (1u << 24)) {
        fe_ox_fail(&c, "graph too large");
        goto done;
    }
    c.capvals = (int)nv;
    c.vals = calloc(nv, sizeof(oval));
    for (c.hashcap = 16; (size_t)c.hashcap < 2 * nv;) c.hashcap *= 2;
    c.hash = malloc(sizeof(int) * (size_t)c.hashcap);
    if (!c.vals || !c.hash) {
        fe_ox_fail(&c, "out of memory for the %zu values of the graph", nv);
        goto done;
    }
    memset(c.hash, 0xff, sizeof(int) * (size_t)c.hashcap);
    c.g = ir_graph_new();
    if (lower_graph(&c, gp, batch)) goto done;
    if (gp->n_output < 1 || !gp->output[0] || !gp->output[0]->name) {
        fe_ox_fail(&c, "the graph has no output");
        goto done;
    }
    oval *o = val_find(&c, gp->output[0]->name);
    if (!o || o->kind == VAL_UNSET) {
        fe_ox_fail(&c, "output '%s' is not computed by any node", gp->output[0]->name);
        goto done;
    }
    if (o->kind != VAL_IR || ir_op_flags(c.g->nodes[o->ir].op) & IR_OPF_LEAF) {
        fe_ox_fail(&c, "output '%s' does not depend on the input", o->name);
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
