/* emit.c: from the pipeline's result (a training graph, its schedule and memory plan, both
 * made by passes/) to a program: CUDA C kernels and the steps that run them. The driver: the
 * program, its steps, kernel deduplication and the per-op table; the kernel families live in
 * emit_*.c (emit_internal.h lists them). It decides no schedule, placement or fusion itself.
 *
 * Every scheduled node becomes steps: MATMUL a GEMM (rt_gemm, row-major, batch dims
 * flattened into M when the right operand is shared), the views (RESHAPE, PROJECT) and
 * ADAMW's output nothing (aliases), every other op one or two kernel launches. A kernel is specialized on its shapes
 * (every size is a compile-time constant) and written without a name; launches whose kernel
 * text is identical share one kernel (the 12 blocks of a DeiT share theirs), named
 * kNNN_op in first-use order. Kernels only take pointers into the arena; their arguments are
 * arena offsets (adamw_multi takes the arena's base and finds its tensors in a table). All arithmetic is float; values load/store through the dtype's conversion,
 * so f16/bf16 storage needs no other change here.
 *
 * Kernel shapes used (block sizes are multiples of 32):
 *   elementwise / gather: one thread per output element (per 4 elements, float4 through
 *   dc_load4/dc_store4, where every input allows it: same shape, bias over a last dim of 4k,
 *   runs of 4k contiguous elements), grid-stride loop, 256 threads, at most 8192 blocks
 *   row ops (layer_norm*, softmax*): rows of up to 1024: one warp per row, 4 rows (128 threads)
 *   a block, the row held in registers (read once), warp-shuffle reductions (no shared memory,
 *   no barrier); wider rows one block per row, block reductions (see row_shape_of).
 *   cross_entropy_grad: one block per row
 *   reductions (sum_to, reduce_mean, layer_norm_dgamma, cross_entropy, sum_squares): two
 *   passes where one would give a GPU too few blocks: pass 1 writes partial sums to the node's
 *   scratch, pass 2 adds them in a fixed order (deterministic, no atomics; see red_plan)
 *   adamw: one launch for a fusion group of ADAMW nodes (adamw-group), a table of tensors in
 *   the kernel
 */
#include "codegen/emit_internal.h"

/* ---- the program under construction ---------------------------------------------------------- */

void cg_add_step(cg_program *p, const rt_plan_step *s) {
    if (p->nsteps == p->scap) {
        p->scap = p->scap ? p->scap * 2 : 256;
        p->steps = realloc(p->steps, sizeof *p->steps * (size_t)p->scap);
        p->step_node = realloc(p->step_node, sizeof *p->step_node * (size_t)p->scap);
        if (!p->steps || !p->step_node) abort();
    }
    p->step_node[p->nsteps] = p->emitting;
    p->steps[p->nsteps++] = *s;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

char *cg_node_label(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    sb b = {0};
    cg_sb_printf(&b, "%%%d%s%s", i, n->name ? " " : "", n->name ? n->name : "");
    return b.s;
}

static void shape_desc(sb *b, const ir_node *n) {
    char shape[128];
    cg_sb_printf(b, "%s%s", ir_dtype_name(n->dtype), ir_shape_str(n, shape, sizeof shape));
}

/* A zeroed kernel appended to the program's table (grown by doubling). */
static cg_kernel *push_kernel(cg_program *p) {
    if (p->nkernels == p->kcap) {
        p->kcap = p->kcap ? p->kcap * 2 : 64;
        p->kernels = realloc(p->kernels, sizeof *p->kernels * (size_t)p->kcap);
        if (!p->kernels) abort();
    }
    cg_kernel *kn = &p->kernels[p->nkernels++];
    memset(kn, 0, sizeof *kn);
    return kn;
}

/* Finishes a launch: dedupes its kernel and appends the step. */
void cg_finish(emitter *e, launch *l, int64_t grid, int block) {
    cg_program *p = e->p;
    sb body = {0};
    cg_sb_printf(&body, "(");
    for (int k = 0; k < l->np; k++)
        cg_sb_printf(&body, "%s%s__restrict__ %s", k ? ", " : "", l->ptype[k], l->pname[k]);
    cg_sb_printf(&body, ") {\n%s}\n", l->body.s ? l->body.s : "");
    free(l->body.s);
    uint64_t h = fnv1a(body.s);
    int k;
    for (k = 0; k < p->nkernels; k++)
        if (p->kernels[k].hash == h && strcmp(p->kernels[k].body, body.s) == 0) break;
    const ir_node *n = &e->g->nodes[e->node];
    char *label = cg_node_label(e->g, e->node);
    if (k == p->nkernels) {
        cg_kernel *kn = push_kernel(p);
        sb name = {0};
        cg_sb_printf(&name, "k%03d_%s", k, l->tag);
        kn->name = name.s;
        kn->body = body.s;
        kn->hash = h;
        kn->needs_fibers = l->fibers;
        kn->nparams = l->np;
        for (int q = 0; q < l->np; q++) kn->param_types[q] = l->ptype[q];
        sb d = {0};
        cg_sb_printf(&d, "%s ", ir_op_name(n->op));
        for (int q = 0; q < n->ninputs; q++) {
            cg_sb_printf(&d, "%s", q ? ", " : "(");
            shape_desc(&d, &e->g->nodes[n->inputs[q]]);
        }
        cg_sb_printf(&d, "%s -> ", n->ninputs ? ")" : "");
        shape_desc(&d, n);
        cg_sb_printf(&d, "; grid %lld, block %d", (long long)grid, block);
        if (l->dyn_shared) cg_sb_printf(&d, ", %u bytes of dynamic shared memory", l->dyn_shared);
        kn->desc = d.s;
        kn->nodes = label;
        kn->registers = kn->spill_bytes = -1;
    } else {
        free(body.s);
        cg_kernel *kn = &p->kernels[k];
        /* list the first few nodes, then only count */
        if (kn->nuses < 6) {
            sb d = {0};
            cg_sb_printf(&d, "%s, %s", kn->nodes, label);
            free(kn->nodes);
            kn->nodes = d.s;
        }
        free(label);
    }
    p->kernels[k].nuses++;
    rt_plan_step s;
    memset(&s, 0, sizeof s);
    s.kind = RT_STEP_KERNEL;
    s.what = cg_node_label(e->g, e->node);
    s.kernel = k;
    s.grid[0] = (unsigned)grid;
    s.grid[1] = s.grid[2] = 1;
    s.block[0] = (unsigned)block;
    s.block[1] = s.block[2] = 1;
    s.shared_bytes = l->dyn_shared;
    s.nargs = l->np;
    rt_arg *args = calloc((size_t)l->np + 1, sizeof *args);
    if (!args) abort();
    for (int q = 0; q < l->np; q++) {
        args[q].kind = RT_ARG_PTR;
        args[q].offset = (uint64_t)l->off[q];
    }
    s.args = args;
    cg_add_step(p, &s);
}

/* ---- the per-op table: every op has a row ------------------------------------------------ */

#define KERNELS(fn, scratch) {CG_OP_KERNELS, fn, scratch, NULL}
static const cg_op_row op_table[IR_OP_COUNT] = {
    /* leaves: arena storage; CONST is filled at the start of every step (cg_program_new) */
    [IR_OP_INPUT] = {CG_OP_LEAF, NULL, NULL, "bound from outside: the batch, labels, opt slots"},
    [IR_OP_WEIGHT] = {CG_OP_LEAF, NULL, NULL, "the executable's parameters"},
    [IR_OP_STATE] = {CG_OP_LEAF, NULL, NULL, "optimizer state, zeroed at start"},
    [IR_OP_CONST] = KERNELS(cg_emit_elementwise, NULL),
    /* emit_pointwise.c */
    [IR_OP_ADD] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_SUB] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_MUL] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_DIV] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_SCALE] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_SQRT] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_ERF] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_GELU] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_GELU_GRAD] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_ERF_GRAD] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_CAST] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_EXPAND] = KERNELS(cg_emit_elementwise, NULL),
    [IR_OP_RESHAPE] = {CG_OP_ALIAS, NULL, NULL, "shares its input's buffer"},
    [IR_OP_PROJECT] = {CG_OP_ALIAS, NULL, NULL, "one output's place in its input's buffer"},
    [IR_OP_PERMUTE] = KERNELS(cg_emit_gather, NULL),
    [IR_OP_FLIP_BATCH] = KERNELS(cg_emit_gather, NULL),
    [IR_OP_SLICE] = KERNELS(cg_emit_gather, NULL),
    [IR_OP_PAD] = KERNELS(cg_emit_gather, NULL),
    [IR_OP_CONCAT] = KERNELS(cg_emit_gather, NULL),
    [IR_OP_PATCHIFY] = KERNELS(cg_emit_gather, NULL),
    [IR_OP_UNPATCHIFY] = KERNELS(cg_emit_gather, NULL),
    /* emit_reduce.c */
    [IR_OP_SUM_TO] = KERNELS(cg_emit_reduce, cg_reduce_scratch),
    [IR_OP_REDUCE_MEAN] = KERNELS(cg_emit_reduce, cg_reduce_scratch),
    [IR_OP_SUM_SQUARES] = KERNELS(cg_emit_sum_squares, cg_sum_squares_scratch),
    /* emit_rows.c */
    [IR_OP_LAYER_NORM] = KERNELS(cg_emit_layer_norm, NULL),
    [IR_OP_LAYER_NORM_DX] = KERNELS(cg_emit_layer_norm, NULL),
    [IR_OP_LAYER_NORM_STATS] = KERNELS(cg_emit_layer_norm, NULL),
    [IR_OP_LAYER_NORM_DX_STATS] = KERNELS(cg_emit_layer_norm, NULL),
    [IR_OP_LAYER_NORM_DGAMMA] = KERNELS(cg_emit_layer_norm_dgamma, cg_layer_norm_dgamma_scratch),
    [IR_OP_SOFTMAX] = KERNELS(cg_emit_softmax, NULL),
    [IR_OP_SOFTMAX_GRAD] = KERNELS(cg_emit_softmax, NULL),
    [IR_OP_CROSS_ENTROPY] = KERNELS(cg_emit_cross_entropy, cg_cross_entropy_scratch),
    [IR_OP_CROSS_ENTROPY_GRAD] = KERNELS(cg_emit_cross_entropy, NULL),
    /* emit_optim.c (a fusion group of ADAMW nodes goes to cg_emit_adamw_multi instead) */
    [IR_OP_ADAMW] = KERNELS(cg_emit_adamw, NULL),
    [IR_OP_CLIP_COEF] = KERNELS(cg_emit_clip_coef, NULL),
    /* emit_loss_scale.c */
    [IR_OP_LOSS_SCALE_OPT] = KERNELS(cg_emit_loss_scale_opt, NULL),
    [IR_OP_LOSS_SCALE_UPDATE] = KERNELS(cg_emit_loss_scale_update, NULL),
    [IR_OP_EMA] = KERNELS(cg_emit_ema, NULL),
    /* emit_gemm.c */
    [IR_OP_MATMUL] = {CG_OP_GEMM, cg_emit_matmul, NULL, NULL},
    /* emit_attention.c */
    [IR_OP_ATTENTION] = KERNELS(cg_emit_attention, NULL),
    [IR_OP_ATTENTION_BWD] = KERNELS(cg_emit_attention, NULL),
};
#undef KERNELS

cg_op_kind cg_op_kind_of(ir_op op) { return (unsigned)op < IR_OP_COUNT ? op_table[op].kind : CG_OP_NO_ROW; }

int cg_op_table_check(char *err, size_t errsize) {
    for (int op = 0; op < IR_OP_COUNT; op++) {
        const cg_op_row *r = &op_table[op];
        int launches = r->kind == CG_OP_KERNELS || r->kind == CG_OP_GEMM;
        int view = (ir_op_flags((ir_op)op) & IR_OPF_ALIAS) != 0; /* ops.def: a view, no kernel */
        if (r->kind == CG_OP_NO_ROW || launches != (r->emit != NULL) || (!launches && !r->why) ||
            view != (r->kind == CG_OP_ALIAS)) {
            snprintf(err, errsize, "codegen: op %s has no complete row in the emitter's op table (codegen/emit.c)",
                     ir_op_name((ir_op)op));
            return -1;
        }
    }
    return 0;
}

/* ---- driver ---------------------------------------------------------------------------------- */

static int emit_node(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const cg_op_row *r = &op_table[n->op];
    if (r->emit) return r->emit(e);
    if (r->kind == CG_OP_ALIAS) return 0;
    snprintf(e->err, e->errsize, "codegen: node %%%d '%s': no kernel for op %s", e->node,
             n->name ? n->name : "", ir_op_name(n->op));
    return -1;
}

int64_t cg_scratch_bytes(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    const cg_op_row *r = (unsigned)n->op < IR_OP_COUNT ? &op_table[n->op] : NULL;
    return r && r->scratch ? r->scratch(g, n) : 0;
}

static cg_kernel *new_data_kernel(cg_program *p, const char *name) {
    cg_kernel *kn = push_kernel(p);
    sb t = {0}, nodes = {0};
    cg_sb_printf(&t, "%s", name);
    cg_sb_printf(&nodes, "the batch's upload");
    kn->name = t.s;
    kn->nodes = nodes.s;
    kn->registers = kn->spill_bytes = -1;
    return kn;
}

/* The data kernels the runtime launches itself between steps (runtime/dc_data.cuh, exe_stage.c),
 * for plans with a 4-D float "images" INPUT; no step launches them (0 uses):
 *   dc_data_normalize(src, params, dst)  the uint8 batch (images' shape, CHW) into images' dtype
 *   dc_data_crop(src, meta, params, dst) RandomResizedCrop + flip + normalize of raw RGB samples
 *                                        (3-channel square images only) */
static void add_data_kernels(cg_program *p, const ir_graph *g) {
    int im = ir_find(g, "images");
    if (im < 0) return;
    const ir_node *n = &g->nodes[im];
    if (n->op != IR_OP_INPUT || n->ndim != 4 || (n->dtype != IR_F32 && n->dtype != IR_F16 && n->dtype != IR_BF16))
        return;
    long long numel = n->shape[0] * n->shape[1] * n->shape[2] * n->shape[3], plane = n->shape[2] * n->shape[3];
    const char *dt = out_type(n->dtype);
    cg_kernel *kn = new_data_kernel(p, "dc_data_normalize");
    sb body = {0}, d = {0};
    cg_sb_printf(&body, "(const unsigned char *__restrict__ src, const float *__restrict__ params, %s__restrict__ dst) {\n"
                        "    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
                        "    if (i < %lldLL) dc_data_normalize_at(src, params, dst, i, %lld, %lldLL);\n}\n",
                 dt, numel, (long long)n->shape[1], plane);
    cg_sb_printf(&d, "the uint8 batch u8[%lld,%lld,%lld,%lld] -> images %s, normalized (runtime-launched, block 256)",
                 (long long)n->shape[0], (long long)n->shape[1], (long long)n->shape[2], (long long)n->shape[3],
                 ir_dtype_name(n->dtype));
    kn->body = body.s;
    kn->desc = d.s;
    kn->hash = fnv1a(body.s);
    kn->nparams = 3;
    kn->param_types[0] = "const unsigned char *";
    kn->param_types[1] = "const float *";
    kn->param_types[2] = dt;
    if (n->shape[1] != 3 || n->shape[2] != n->shape[3]) return;
    kn = new_data_kernel(p, "dc_data_crop");
    sb body2 = {0}, d2 = {0};
    cg_sb_printf(&body2, "(const unsigned char *__restrict__ src, const long long *__restrict__ meta, "
                         "const float *__restrict__ params, %s__restrict__ dst) {\n"
                         "    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
                         "    if (i < %lldLL) dc_data_crop_at(src, meta, params, dst, i, %lld);\n}\n",
                 dt, numel, (long long)n->shape[2]);
    cg_sb_printf(&d2, "raw RGB samples -> images %s[%lld,3,%lld,%lld]: RandomResizedCrop (PIL bicubic), flip, normalized "
                      "(runtime-launched, block 256)", ir_dtype_name(n->dtype), (long long)n->shape[0],
                 (long long)n->shape[2], (long long)n->shape[3]);
    kn->body = body2.s;
    kn->desc = d2.s;
    kn->hash = fnv1a(body2.s);
    kn->nparams = 4;
    kn->param_types[0] = "const unsigned char *";
    kn->param_types[1] = "const long long *";
    kn->param_types[2] = "const float *";
    kn->param_types[3] = dt;
}

cg_program *cg_program_new(const pass_result *r, const cg_options *o, char *err, size_t errsize) {
    (void)o;
    if (cg_op_table_check(err, errsize)) return NULL;
    if (!r->mem) {
        snprintf(err, errsize, "codegen: the pipeline stopped after '%s', before the memory plan", r->last_stage);
        return NULL;
    }
    const ir_graph *g = r->g;
    /* the pipeline's memory plan must hold the scratch these kernels need */
    for (int s = 0; s < r->norder; s++) {
        int i = r->order[s];
        int64_t need = cg_scratch_bytes(g, i);
        if (need > 0 && (r->mem->scratch_offset[i] < 0 || r->scratch[i] < need)) {
            snprintf(err, errsize, "codegen: node %%%d needs %lld bytes of scratch the memory plan lacks "
                     "(the pipeline ran without cg_scratch_bytes)", i, (long long)need);
            return NULL;
        }
    }
    cg_program *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->g = g;
    p->precision = r->precision;
    p->beta1 = 0.9;
    p->beta2 = 0.999;
    p->adam_eps = 1e-8;
    p->order = r->order;
    p->norder = r->norder;
    p->mem = r->mem;
    for (int s = 0; s < p->norder; s++) {
        const ir_node *n = &g->nodes[p->order[s]];
        if (n->op == IR_OP_ADAMW) {
            p->beta1 = n->attrs.beta1;
            p->beta2 = n->attrs.beta2;
            p->adam_eps = n->attrs.eps;
        }
        if (n->op == IR_OP_CROSS_ENTROPY) p->label_smoothing = n->attrs.smoothing;
        if (n->op == IR_OP_CLIP_COEF) p->clip_grad_norm = n->attrs.alpha;
    }
    emitter e = {p, g, p->mem, 0, err, errsize};
    /* CONST leaves are persistent; fill them first each step */
    for (int i = 0; i < g->n; i++) {
        if (g->nodes[i].op != IR_OP_CONST) continue;
        e.node = p->emitting = i;
        if (cg_emit_elementwise(&e)) goto fail;
    }
    int loss = ir_find(g, "loss"), logits = ir_find(g, "logits");
    for (int s = 0; s < p->norder; s++) {
        e.node = p->emitting = p->order[s];
        int group = g->nodes[e.node].group;
        if (group) { /* a fusion group (adamw-group): its members are consecutive, one launch */
            int s2 = s;
            while (s2 < p->norder && g->nodes[p->order[s2]].group == group) {
                if (!cg_adamw_multi_ok(g, p->order[s2])) {
                    snprintf(err, errsize, "codegen: fusion group %d holds %%%d, which the grouped AdamW "
                             "kernel cannot run (f32 adamw only)", group, p->order[s2]);
                    goto fail;
                }
                s2++;
            }
            cg_emit_adamw_multi(&e, &p->order[s], s2 - s);
            s = s2 - 1;
            continue;
        }
        int chain = g->nodes[e.node].chain;
        if (chain) { /* an elementwise chain (bias-gelu): consecutive members, one kernel */
            int s2 = s;
            while (s2 < p->norder && g->nodes[p->order[s2]].chain == chain) s2++;
            if (g->nodes[e.node].op == IR_OP_MATMUL) { /* gelu-epilogue: one GEMM */
                if (cg_emit_gemm_epilogue(&e, &p->order[s], s2 - s)) goto fail;
            } else {
                cg_emit_chain(&e, &p->order[s], s2 - s);
            }
            e.node = p->order[s2 - 1];
            s = s2 - 1;
        } else if (emit_node(&e)) {
            goto fail;
        }
        if (e.node == loss || e.node == logits) p->neval_steps = p->nsteps; /* the later of the two */
    }
    add_data_kernels(p, g);
    /* the kernels' full text: header comment + definition */
    for (int k = 0; k < p->nkernels; k++) {
        cg_kernel *kn = &p->kernels[k];
        sb t = {0};
        cg_sb_printf(&t, "/* %s: %s\n * computes %s%s", kn->name, kn->desc, kn->nodes, kn->nuses > 6 ? ", ..." : "");
        cg_sb_printf(&t, " (%d launch%s) */\n", kn->nuses, kn->nuses == 1 ? "" : "es");
        cg_sb_printf(&t, "DC_KERNEL %s%s", kn->name, kn->body);
        kn->text = t.s;
    }
    return p;
fail:
    cg_program_free(p);
    return NULL;
}

void cg_program_free(cg_program *p) {
    if (!p) return;
    for (int k = 0; k < p->nkernels; k++) {
        free(p->kernels[k].name);
        free(p->kernels[k].text);
        free(p->kernels[k].body);
        free(p->kernels[k].desc);
        free(p->kernels[k].nodes);
    }
    for (int s = 0; s < p->nsteps; s++) {
        free((void *)p->steps[s].what);
        free((void *)p->steps[s].args);
    }
    free(p->kernels);
    free(p->steps);
    free(p->step_node);
    free(p);
}
