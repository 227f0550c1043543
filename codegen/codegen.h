/* codegen.h: from an optimized training graph to a standalone executable.
 *
 * Sections follow the files that implement them (the code-generation module fills them in):
 *   compile.c  cg_compile: schedule + memory plan -> kernels.cu + plan -> NVRTC or host C++ ->
 *              link with the runtime into EXE
 */
#ifndef DEITC_CODEGEN_H
#define DEITC_CODEGEN_H

#include "ir/ir.h"

typedef struct {
    const char *target;    /* "cuda" (default) or "emu" */
    const char *arch;      /* "sm_90"...; NULL: the local GPU's, else sm_90 */
    const char *precision; /* "fp32" (default), "fp16", "bf16" */
    const char *fuse;      /* "all" (default), "none", or a comma list of fusion names */
    const char *emit_dir;  /* keep kernels.cu and the plan here; NULL: a temporary dir */
    const char *output;    /* the executable to write */
    long batch;            /* the batch the graph was built for */
} cg_options;

void cg_options_default(cg_options *o);

/* Writes the executable for training graph g. 0 on success, else -1 with err; never leaves a
 * partial executable behind. */
int cg_compile(const ir_graph *g, const cg_options *o, char *err, size_t errsize);

#endif
