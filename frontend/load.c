/* load.c: fe_load_model, the one entry the deitc command calls: picks the reader by the
 * file's extension (.yaml/.yml: yaml.c, .onnx: onnx.c when built with DEITC_HAVE_ONNX) and
 * checks the graph it returns with the IR verifier. The model name it leaves in info is safe
 * to print into JSON and C. */
#include "frontend/frontend.h"

#include <string.h>

static int has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), k = strlen(ext);
    return n > k && strcmp(path + n - k, ext) == 0;
}

int fe_load_model(const char *path, const fe_define *defines, int ndefines, int64_t batch,
                  ir_graph **out, char *err, size_t errsize) {
    *out = NULL;
    if (errsize) err[0] = 0;
    int r;
    if (has_ext(path, ".yaml") || has_ext(path, ".yml")) {
        r = fe_yaml_load(path, defines, ndefines, batch, out, err, errsize);
    } else if (has_ext(path, ".onnx")) {
#ifdef DEITC_HAVE_ONNX
        r = fe_onnx_load(path, defines, ndefines, batch, out, err, errsize);
#else
        snprintf(err, errsize, "%s: ONNX support not built", path);
        return -1;
#endif
    } else {
        snprintf(err, errsize, "%s: unknown model format (expected a .yaml, .yml or .onnx file)",
                 path);
        return -1;
    }
    if (r) return -1;
    /* -D overrides make another model: its name says so (deit_tiny_patch16_224.depth-2), so
     * that `EXE info`, metrics and saved files do not claim the file's model. */
    for (int i = 0; i < ndefines; i++)
        (*out)->info.model_name = ir_arena_printf(&(*out)->arena, "%s.%s-%s", (*out)->info.model_name,
                                                  defines[i].name, defines[i].value);
    /* The model's name ends up in JSON headers, generated C and file names: keep it to
     * [A-Za-z0-9_.-], whatever the model file says. */
    char *name = (char *)(*out)->info.model_name;
    for (char *q = name; q && *q; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
              *q == '_' || *q == '.' || *q == '-'))
            *q = '_';
    if (ir_verify(*out)) { /* a frontend bug, but say so rather than go on */
        snprintf(err, errsize, "%s: internal error: the graph built from it fails verification: %s",
                 path, (*out)->error);
        ir_graph_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}
