/* onnx_export.c: `deitc export`, the way back to ONNX. Writes the original ONNX model with
 * trained weights (a safetensors file keyed by initializer name, as `deitc run --steps`
 * writes them) as its initializers; nodes, opsets, inputs, outputs, metadata and fields this
 * protobuf-c schema does not know are written back as they were read.
 *
 * Invariants: the model must load with the ONNX reader (so it is one deitc can train); every
 * tensor of the weights file names an initializer of the main graph with the same shape and
 * dtype; replaced initializers hold their values inline (raw_data, never external data);
 * the output appears whole (temporary file + rename) or not at all.
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
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(err, errsize, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t cap = 0, k = 1;
    for (*len = 0; k > 0 && cap <= EX_MAX_FILE; *len += k) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            if (!(buf = realloc(buf, cap))) abort();
        }
        k = fread(buf + *len, 1, cap - *len, f);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad || cap > EX_MAX_FILE) {
        free(buf);
        fail(err, errsize, "%s: %s", path, bad ? "read error" : "larger than 2 GiB");
        return NULL;
    }
    return buf;
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
    p->has_raw_data = 1;
    p->raw_data.len = t->nbytes;
    p->raw_data.data = t->data;
    p->n_float_data = p->n_int32_data = p->n_int64_data = p->n_double_data = p->n_uint64_data = 0;
    p->has_data_location = 0;
    p->n_external_data = 0;
    return 0;
}

/* Packs m into a temporary file beside out, then renames it to out. */
static int write_model(const Onnx__ModelProto *m, const char *out, char *err, size_t errsize) {
    size_t n = onnx__model_proto__get_packed_size(m);
    if (n > EX_MAX_FILE) return fail(err, errsize, "%s: the model would be larger than 2 GiB", out);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) abort();
    onnx__model_proto__pack(m, buf);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(buf, 1, n, f) == n;
    if (f && fclose(f)) ok = 0;
    free(buf);
    if (!ok || rename(tmp, out)) {
        int e = errno;
        if (f) unlink(tmp);
        return fail(err, errsize, "cannot write %s: %s", out, strerror(e));
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
    if (fe_onnx_load_buffer(data, len, model, NULL, 0, 1, &g, err, errsize)) {
        free(data);
        return -1;
    }
    ir_graph_free(g);
    rt_tensor_set w = {0};
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, data);
    Onnx__TensorProto *saved = NULL; /* the replaced initializers as read, restored before freeing */
    int rc = -1, replaced = 0;
    if (!m || !m->graph) {
        fail(err, errsize, "%s: not an ONNX model", model);
        goto done;
    }
    if (rt_safetensors_read(weights, &w, err, errsize)) goto done;
    Onnx__GraphProto *gp = m->graph;
    saved = malloc(sizeof *saved * (gp->n_initializer + 1));
    if (!saved) abort();
    for (size_t k = 0; k < gp->n_initializer; k++) saved[k] = *gp->initializer[k];
    for (int i = 0; i < w.count; i++) {
        const rt_tensor *t = &w.tensors[i];
        int found = 0;
        for (size_t k = 0; k < gp->n_initializer; k++) {
            Onnx__TensorProto *p = gp->initializer[k];
            if (!p->name || strcmp(p->name, t->name) != 0) continue;
            if (replace(p, t, weights, err, errsize)) goto done;
            found = 1;
        }
        if (!found && !run_extra(t->name)) {
            fail(err, errsize, "%s: tensor '%s' is not an initializer of %s", weights, t->name, model);
            goto done;
        }
        replaced += found;
    }
    if (write_model(m, out, err, errsize)) goto done;
    rc = replaced;
done:
    if (saved)
        for (size_t k = 0; k < m->graph->n_initializer; k++) *m->graph->initializer[k] = saved[k];
    free(saved);
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
