/* onnx_export.c: `deitc export`, the way back to ONNX. Writes the original ONNX model with
 * trained weights (a safetensors file keyed by initializer name, as `deitc run --steps`
 * writes them) as its initializers; nodes, opsets, inputs, outputs, metadata and fields this
 * protobuf-c schema does not know are written back as they were read.
 *
 * Invariants: the model must load with the ONNX reader (so it is one deitc can train); every
 * tensor of the weights file names an initializer of the main graph, or the output of an
 * Identity node of one (torch's export deduplicates equal initializers into such nodes; the
 * reader makes each its own weight), with the same shape and dtype and finite values (NaN and
 * infinities are refused, naming the tensor, as the reader refuses them); replaced
 * initializers hold their values inline (raw_data, never external data); such an Identity
 * node is dropped and a new initializer of its output's name takes its place (untied from
 * its source); the output appears whole (temporary file + rename) or not at all.
 */
#include "frontend/frontend.h"
#include "runtime/rt.h"

#ifdef DEITC_HAVE_ONNX
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "onnx.pb-c.h"

#define EX_MAX_FILE ((size_t)2 << 30) /* protobuf's limit for one message */

static int fail(char *err, size_t errsize, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errsize, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
    return -1;
}

/* The ONNX data_type of a safetensors dtype (TensorProto.DataType). */
static int onnx_dtype(rt_dtype t) {
    static const int types[RT_DTYPE_COUNT] = {[RT_F32] = 1, [RT_F16] = 10, [RT_BF16] = 16, [RT_I32] = 6, [RT_I64] = 7};
    return types[t];
}

/* Tensors of `deitc run --steps` output that are not weights: skipped, not errors. */
static int run_extra(const char *name) { return strcmp(name, "losses") == 0 || strncmp(name, "grad.", 5) == 0; }

/* The whole file in a heap buffer (at most EX_MAX_FILE bytes), or NULL with err. */
static uint8_t *read_file(const char *path, size_t *len, char *err, size_t errsize) {
    void *buf;
    return rt_input_read(path, 0, EX_MAX_FILE, &buf, len, err, errsize) ? NULL : buf;
}

/* "64,3,8,8" */
static const char *dims_str(const int64_t *dims, size_t n, char *buf, size_t size) {
    buf[0] = 0;
    for (size_t d = 0, k = 0; d < n && k < size; d++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", d ? "," : "", (long long)dims[d]);
    return buf;
}

/* Checks weight t against initializer p and points p at t's bytes (inline raw_data). */
static int replace(Onnx__TensorProto *p, const rt_tensor *t, const char *wpath, char *err, size_t errsize) {
    char want[160], got[160];
    int same = (size_t)t->ndim == p->n_dims;
    for (int d = 0; same && d < t->ndim; d++) same = p->dims[d] == t->shape[d];
    if (!same)
        return fail(err, errsize, "%s: tensor '%s' has shape [%s], the model's initializer is [%s]", wpath, t->name,
                    dims_str(t->shape, (size_t)t->ndim, got, sizeof got), dims_str(p->dims, p->n_dims, want, sizeof want));
    if (onnx_dtype(t->dtype) != p->data_type) {
        const char *name = "another type";
        for (int k = 0; k < RT_DTYPE_COUNT; k++)
            if (onnx_dtype((rt_dtype)k) == p->data_type) name = rt_dtype_name((rt_dtype)k);
        return fail(err, errsize, "%s: tensor '%s' is %s, the model's initializer is %s (ONNX data_type %d)", wpath,
                    t->name, rt_dtype_name(t->dtype), name, (int)p->data_type);
    }
    if (rt_tensor_check_finite(t, wpath, err, errsize)) return -1; /* as --init and the reader refuse it */
    p->has_raw_data = 1;
    p->raw_data.len = t->nbytes;
    p->raw_data.data = t->data;
    p->n_float_data = p->n_int32_data = p->n_int64_data = p->n_double_data = p->n_uint64_data = 0;
    p->has_data_location = 0;
    p->n_external_data = 0;
    return 0;
}

/* A tensor named as the reader renamed a weight (timm's name, PyTorch's layout: onnx_names.c)
 * as the model file holds it: *out gets the initializer's name (borrowed) and its layout (data
 * owned); out->name stays NULL when t needs no conversion. */
static int to_source(const ir_graph *g, const rt_tensor *t, rt_tensor *out, const char *wpath, char *err,
                     size_t errsize) {
    int id = ir_find(g, t->name);
    if (id < 0 || g->nodes[id].op != IR_OP_WEIGHT || !g->nodes[id].src_name) return 0;
    const ir_node *n = &g->nodes[id];
    int same = t->ndim == n->ndim;
    for (int d = 0; same && d < n->ndim; d++) same = t->shape[d] == n->shape[d];
    if (!same || t->dtype != RT_F32)
        return fail(err, errsize, "%s: tensor '%s' must be f32 of the model's shape to be written back as "
                    "initializer '%s'", wpath, t->name, n->src_name);
    *out = *t;
    out->name = (char *)n->src_name;
    out->data = malloc(t->nbytes ? t->nbytes : 1);
    if (!out->data) abort();
    const float *src = t->data;
    float *dst = out->data;
    if (n->src_layout == IR_SRC_TRANSPOSED) { /* [out,in] -> [in,out] */
        int64_t o = n->shape[0], in = n->shape[1];
        out->shape[0] = in, out->shape[1] = o;
        for (int64_t i = 0; i < in; i++)
            for (int64_t k = 0; k < o; k++) dst[i * o + k] = src[k * in + i];
    } else if (n->src_layout == IR_SRC_REPEATED) { /* [1,...] -> [B,...]: B equal rows */
        int64_t b = g->info.batch > 0 ? g->info.batch : 1, row = rt_tensor_numel(t);
        free(out->data);
        out->data = malloc(t->nbytes * (size_t)b + 1);
        if (!out->data) abort();
        for (int64_t k = 0; k < b; k++) memcpy((float *)out->data + k * row, src, t->nbytes);
        out->shape[0] = b;
        out->nbytes = t->nbytes * (size_t)b;
    } else {
        memcpy(dst, src, t->nbytes);
    }
    return 0;
}

/* Packs m into a temporary file beside out, then renames it to out. */
static int write_model(const Onnx__ModelProto *m, const char *out, char *err, size_t errsize) {
    size_t n = onnx__model_proto__get_packed_size(m);
    if (n > EX_MAX_FILE) return fail(err, errsize, "%s: the model would be larger than 2 GiB", out);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return fail(err, errsize, "%s: out of memory for the model's %zu bytes", out, n);
    onnx__model_proto__pack(m, buf);
    rt_output o; /* a temporary and rename; a device or FIFO in place */
    if (rt_output_open(&o, out, err, errsize)) {
        free(buf);
        return -1;
    }
    int ok = fwrite(buf, 1, n, o.f) == n;
    int e = errno;
    free(buf);
    if (!ok) {
        rt_output_abort(&o);
        return fail(err, errsize, "cannot write %s: %s", out, strerror(e));
    }
    return rt_output_commit(&o, err, errsize);
}

/* An ONNX-domain Identity node with one input and one output */
static int is_identity(const Onnx__NodeProto *n) {
    return n->op_type && strcmp(n->op_type, "Identity") == 0 &&
           (!n->domain || !*n->domain || strcmp(n->domain, "ai.onnx") == 0) && n->n_input == 1 && n->n_output == 1 &&
           n->input[0] && n->output[0];
}

/* The initializer of the graph named `name`, or NULL */
static Onnx__TensorProto *find_init(const Onnx__GraphProto *gp, const char *name) {
    for (size_t k = 0; k < gp->n_initializer; k++)
        if (gp->initializer[k]->name && strcmp(gp->initializer[k]->name, name) == 0) return gp->initializer[k];
    return NULL;
}

/* The initializer behind `name` when `name` is the output of an Identity node whose input is
 * an initializer or, in a chain, the output of such a node; the node's index in *node. NULL
 * when `name` is no such output. */
static Onnx__TensorProto *identity_of_init(const Onnx__GraphProto *gp, const char *name, size_t *node) {
    for (size_t hops = 0; hops <= gp->n_node; hops++) {
        size_t k = 0;
        while (k < gp->n_node && !(is_identity(gp->node[k]) && strcmp(gp->node[k]->output[0], name) == 0)) k++;
        if (k == gp->n_node) return NULL;
        if (hops == 0) *node = k;
        name = gp->node[k]->input[0];
        Onnx__TensorProto *p = find_init(gp, name);
        if (p) return p;
    }
    return NULL; /* a cycle: not a valid graph */
}

/* A graph input for a new initializer `name` beside source initializer `src` when the model
 * lists its initializers among its inputs (IR version < 4 requires it): a shallow copy of
 * src's input, renamed, appended to gp's inputs (room for it is there). 0 when src is not an
 * input or its copy is added, -1 when out of memory. */
static int add_input_for(Onnx__GraphProto *gp, const char *src, char *name) {
    for (size_t k = 0; k < gp->n_input; k++)
        if (gp->input[k]->name && strcmp(gp->input[k]->name, src) == 0) {
            Onnx__ValueInfoProto *v = malloc(sizeof *v);
            if (!v) return -1;
            *v = *gp->input[k];
            v->base.n_unknown_fields = 0;
            v->base.unknown_fields = NULL;
            v->name = name;
            gp->input[gp->n_input++] = v;
            return 0;
        }
    return 0;
}

int fe_onnx_export(const char *model, const char *weights, const char *out, char *err, size_t errsize) {
    size_t len = strlen(model);
    if ((len > 5 && strcmp(model + len - 5, ".yaml") == 0) || (len > 4 && strcmp(model + len - 4, ".yml") == 0))
        return fail(err, errsize, "%s: export writes an ONNX model back with new weights; a YAML model has no ONNX "
                    "graph to write (export the model from PyTorch to ONNX, train that, then export)", model);
    uint8_t *data = read_file(model, &len, err, errsize);
    if (!data) return -1;
    /* the reader's checks first: a model deitc loads (and so has trained) */
    ir_graph *g = NULL;
    if (fe_onnx_load_buffer(data, len, model, NULL, 0, 0, &g, err, errsize)) {
        free(data);
        return -1;
    }
    rt_tensor_set w = {0};
    rt_tensor *conv = NULL; /* tensors renamed and re-laid back to the file's initializers */
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, data);
    /* what was read, restored before freeing: the replaced initializers' contents and the
     * graph's node, initializer and input arrays (new entries are ours, borrowing strings) */
    Onnx__TensorProto *saved = NULL, **inits = NULL;
    Onnx__NodeProto **nodes = NULL;
    Onnx__ValueInfoProto **inputs = NULL;
    Onnx__GraphProto *gp = NULL;
    size_t n_init = 0, n_node = 0, n_input = 0;
    int rc = -1, replaced = 0;
    if (!m || !m->graph) {
        fail(err, errsize, "%s: not an ONNX model", model);
        goto done;
    }
    if (rt_safetensors_read(weights, &w, err, errsize)) goto done;
    conv = calloc((size_t)w.count + 1, sizeof *conv);
    if (!conv) abort();
    for (int i = 0; i < w.count; i++)
        if (to_source(g, &w.tensors[i], &conv[i], weights, err, errsize)) goto done;
    gp = m->graph;
    n_init = gp->n_initializer, n_node = gp->n_node, n_input = gp->n_input;
    saved = malloc(sizeof *saved * (n_init + 1));
    /* room for one new initializer and input per Identity node */
    Onnx__TensorProto **new_inits = malloc(sizeof *gp->initializer * (n_init + n_node + 1));
    Onnx__NodeProto **new_nodes = malloc(sizeof *gp->node * (n_node + 1));
    Onnx__ValueInfoProto **new_inputs = malloc(sizeof *gp->input * (n_input + n_node + 1));
    if (!saved || !new_inits || !new_nodes || !new_inputs) {
        free(new_inits), free(new_nodes), free(new_inputs);
        fail(err, errsize, "%s: out of memory for its %zu initializers and %zu nodes", model, n_init, n_node);
        goto done;
    }
    inits = gp->initializer, nodes = gp->node, inputs = gp->input;
    for (size_t k = 0; k < n_init; k++) saved[k] = *inits[k];
    gp->initializer = new_inits, gp->node = new_nodes, gp->input = new_inputs;
    memcpy(gp->initializer, inits, sizeof *inits * n_init);
    memcpy(gp->node, nodes, sizeof *nodes * n_node);
    memcpy(gp->input, inputs, sizeof *inputs * n_input);
    for (int i = 0; i < w.count; i++) {
        const rt_tensor *t = conv[i].name ? &conv[i] : &w.tensors[i];
        int found = 0;
        for (size_t k = 0; k < gp->n_initializer; k++) {
            Onnx__TensorProto *p = gp->initializer[k];
            if (!p->name || strcmp(p->name, t->name) != 0) continue;
            if (replace(p, t, weights, err, errsize)) goto done;
            found = 1;
        }
        size_t k = 0;
        const Onnx__TensorProto *src = found ? NULL : identity_of_init(gp, t->name, &k);
        if (src) { /* Identity(initializer) -> a new initializer of the Identity's output name */
            Onnx__TensorProto *p = malloc(sizeof *p);
            if (!p) {
                fail(err, errsize, "%s: out of memory", model);
                goto done;
            }
            onnx__tensor_proto__init(p);
            p->n_dims = src->n_dims;
            p->dims = src->dims;
            p->has_data_type = 1;
            p->data_type = src->data_type;
            p->name = gp->node[k]->output[0];
            gp->initializer[gp->n_initializer++] = p;
            if (replace(p, t, weights, err, errsize)) goto done;
            if (add_input_for(gp, src->name, p->name)) {
                fail(err, errsize, "%s: out of memory", model);
                goto done;
            }
            memmove(gp->node + k, gp->node + k + 1, sizeof *gp->node * (gp->n_node - k - 1));
            gp->n_node--;
            found = 1;
        }
        if (!found && !run_extra(t->name)) {
            fail(err, errsize, "%s: tensor '%s' is not an initializer of %s, nor the output of an Identity node of one",
                 weights, t->name, model);
            goto done;
        }
        replaced += found;
    }
    if (write_model(m, out, err, errsize)) goto done;
    rc = replaced;
done:
    if (inits) {
        for (size_t k = n_init; k < gp->n_initializer; k++) free(gp->initializer[k]);
        for (size_t k = n_input; k < gp->n_input; k++) free(gp->input[k]);
        free(gp->initializer), free(gp->node), free(gp->input);
        gp->initializer = inits, gp->node = nodes, gp->input = inputs;
        gp->n_initializer = n_init, gp->n_node = n_node, gp->n_input = n_input;
        for (size_t k = 0; k < n_init; k++) *inits[k] = saved[k];
    }
    free(saved);
    for (int i = 0; conv && i < w.count; i++) free(conv[i].data);
    free(conv);
    ir_graph_free(g);
    onnx__model_proto__free_unpacked(m, NULL);
    rt_tensor_set_free(&w);
    free(data);
    return rc;
}

#else
int fe_onnx_export(const char *model, const char *weights, const char *out, char *err, size_t errsize) {
    (void)weights, (void)out;
    snprintf(err, errsize, "%s: ONNX support not built", model);
    return -1;
}
#endif
