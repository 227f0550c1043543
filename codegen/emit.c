/* emit.c: from a training graph to a program: CUDA C kernels and the steps that run them.
 *
 * Every scheduled node becomes steps: MATMUL a GEMM (rt_gemm, row-major, batch dims
 * flattened into M when the right operand is shared), RESHAPE and ADAMW's output nothing
 * (aliases), every other op one or two kernel launches. A kernel is specialized on its shapes
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
 *   adamw: one launch for a run of ADAMW nodes, a table of tensors in the kernel
 */
#include "codegen/codegen.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- string builder ------------------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t n, cap;
} sb;

static void sb_vprintf(sb *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int k = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (b->n + (size_t)k + 1 > b->cap) {
        b->cap = (b->n + (size_t)k + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s) abort();
    }
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    b->n += (size_t)k;
}

static void sb_printf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

static char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) abort();
    return d;
}

/* ---- small helpers --------------------------------------------------------------------------- */

/* An expression loading `ref` (an lvalue of dtype t) as float. */
static const char *ld(char *buf, size_t size, ir_dtype t, const char *ref) {
    switch (t) {
    case IR_F32: snprintf(buf, size, "%s", ref); break;
    case IR_F16: snprintf(buf, size, "dc_h2f(%s)", ref); break;
    case IR_BF16: snprintf(buf, size, "dc_b2f(%s)", ref); break;
    default: snprintf(buf, size, "(float)%s", ref); break;
    }
    return buf;
}

/* The float expression `v` converted for a store to dtype t. */
static const char *st(char *buf, size_t size, ir_dtype t, const char *v) {
    switch (t) {
    case IR_F32: snprintf(buf, size, "%s", v); break;
    case IR_F16: snprintf(buf, size, "dc_f2h(%s)", v); break;
    case IR_BF16: snprintf(buf, size, "dc_f2b(%s)", v); break;
    case IR_I32: snprintf(buf, size, "(int)(%s)", v); break;
    default: snprintf(buf, size, "(long long)(%s)", v); break;
    }
    return buf;
}

/* A float literal that reads back as the float nearest to x. */
static const char *flit(char *buf, size_t size, double x) {
    float f = (float)x;
    if (isnan(f)) snprintf(buf, size, "__int_as_float(0x7fc00000)");
    else if (isinf(f)) snprintf(buf, size, f > 0 ? "DC_INF" : "(-DC_INF)");
    else {
        snprintf(buf, size, "%.9g", (double)f);
        if (!strpbrk(buf, ".en")) strncat(buf, ".0", size - strlen(buf) - 1);
        strncat(buf, "f", size - strlen(buf) - 1);
    }
    return buf;
}

static int64_t pow2ceil(int64_t x) {
    int64_t p = 1;
    while (p < x) p *= 2;
    return p;
}

static int64_t round32(int64_t x) { return (x + 31) / 32 * 32; }

static int64_t last_dim(const ir_node *n) { return n->shape[n->ndim - 1]; }

/* ---- index terms: offset = sum over terms of ((i / div) % mod) * mul -------------------------- */

typedef struct {
    int64_t div, mod, mul; /* mod 0: no modulo needed */
} term;

static void emit_terms(sb *b, const char *iv, const term *t, int nt) {
    int any = 0;
    for (int k = 0; k < nt; k++) {
        if (t[k].mul == 0) continue;
        sb_printf(b, "%s", any ? " + " : "");
        int paren = t[k].mul != 1 && (t[k].div != 1 || t[k].mod);
        if (paren) sb_printf(b, "(");
        sb_printf(b, "%s", iv);
        if (t[k].div != 1) sb_printf(b, " / %lld", (long long)t[k].div);
        if (t[k].mod) sb_printf(b, " %% %lld", (long long)t[k].mod);
        if (paren) sb_printf(b, ")");
        if (t[k].mul != 1) sb_printf(b, " * %lld", (long long)t[k].mul);
        any = 1;
    }
    if (!any) sb_printf(b, "0");
}

/* Terms of the offset into `in` (right-aligned, broadcast over size-1 dims) of output
 * element i of shape out[0..nd). Consecutive dims of the same kind are merged. */
static int bcast_terms(const ir_node *in, int nd, const int64_t *out, term *t) {
    int64_t ind[IR_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        int k = d - (nd - in->ndim);
        ind[d] = k >= 0 ? in->shape[k] : 1;
    }
    int nt = 0;
    int64_t ostride = 1, istride = 1, total = 1;
    for (int d = 0; d < nd; d++) total *= out[d];
    /* walk dims from the innermost, grouping runs of kept (ind == out) dims */
    for (int d = nd - 1; d >= 0;) {
        if (out[d] == 1) { d--; continue; }
        if (ind[d] == 1) { ostride *= out[d]; d--; continue; }
        int64_t size = 1;
        while (d >= 0 && (out[d] == 1 || ind[d] == out[d])) size *= out[d--];
        t[nt].div = ostride;
        t[nt].mod = ostride * size >= total ? 0 : size;
        t[nt].mul = istride;
        nt++;
        ostride *= size;
        istride *= size;
    }
    return nt;
}

/* ---- the program under construction ---------------------------------------------------------- */

typedef struct {
    cg_program *p;
    const ir_graph *g;
    const pass_mem_plan *m;
    int node;            /* the node being emitted */
    char *err;
    size_t errsize;
} emitter;

/* One launch being built: parameters (type, name, arena offset) and the body text. */
typedef struct {
    sb body;
    int np;
    const char *ptype[CG_MAX_PARAMS];
    char pname[CG_MAX_PARAMS][16];
    int64_t off[CG_MAX_PARAMS];
    int fibers;
    const char *tag; /* kernel name suffix: op name or a variant */
} launch;

static void param(launch *l, const char *type, const char *name, int64_t off) {
    assert(l->np < CG_MAX_PARAMS && off >= 0);
    l->ptype[l->np] = type;
    snprintf(l->pname[l->np], sizeof l->pname[0], "%s", name);
    l->off[l->np++] = off;
}

static const char *in_type(ir_dtype t) {
    switch (t) {
    case IR_F32: return "const float *";
    case IR_F16: return "const dc_half *";
    case IR_BF16: return "const dc_bf16 *";
    case IR_I32: return "const int *";
    default: return "const long long *";
    }
}

static const char *out_type(ir_dtype t) {
    switch (t) {
    case IR_F32: return "float *";
    case IR_F16: return "dc_half *";
    case IR_BF16: return "dc_bf16 *";
    case IR_I32: return "int *";
    default: return "long long *";
    }
}

static void add_step(cg_program *p, const rt_plan_step *s) {
    if (p->nsteps == p->scap) {
        p->scap = p->scap ? p->scap * 2 : 256;
        p->steps = realloc(p->steps, sizeof *p->steps * (size_t)p->scap);
        if (!p->steps) abort();
    }
    p->steps[p->nsteps++] = *s;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static char *node_label(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    char buf[512];
    snprintf(buf, sizeof buf, "%%%d%s%s", i, n->name ? " " : "", n->name ? n->name : "");
    return xstrdup(buf);
}

static void shape_desc(sb *b, const ir_node *n) {
    char shape[128];
    sb_printf(b, "%s%s", ir_dtype_name(n->dtype), ir_shape_str(n, shape, sizeof shape));
}

/* Finishes a launch: dedupes its kernel and appends the step. */
static void finish(emitter *e, launch *l, int64_t grid, int block) {
    cg_program *p = e->p;
    sb body = {0};
    sb_printf(&body, "(");
    for (int k = 0; k < l->np; k++)
        sb_printf(&body, "%s%s__restrict__ %s", k ? ", " : "", l->ptype[k], l->pname[k]);
    sb_printf(&body, ") {\n%s}\n", l->body.s ? l->body.s : "");
    free(l->body.s);
    uint64_t h = fnv1a(body.s);
    int k;
    for (k = 0; k < p->nkernels; k++)
        if (p->kernels[k].hash == h && strcmp(p->kernels[k].body, body.s) == 0) break;
    const ir_node *n = &e->g->nodes[e->node];
    char *label = node_label(e->g, e->node);
    if (k == p->nkernels) {
        if (p->nkernels == p->kcap) {
            p->kcap = p->kcap ? p->kcap * 2 : 64;
            p->kernels = realloc(p->kernels, sizeof *p->kernels * (size_t)p->kcap);
            if (!p->kernels) abort();
        }
        cg_kernel *kn = &p->kernels[p->nkernels++];
        memset(kn, 0, sizeof *kn);
        char name[96];
        snprintf(name, sizeof name, "k%03d_%s", k, l->tag);
        kn->name = xstrdup(name);
        kn->body = body.s;
        kn->hash = h;
        kn->needs_fibers = l->fibers;
        kn->nparams = l->np;
        for (int q = 0; q < l->np; q++) kn->param_types[q] = l->ptype[q];
        sb d = {0};
        sb_printf(&d, "%s ", ir_op_name(n->op));
        for (int q = 0; q < n->ninputs; q++) {
            sb_printf(&d, "%s", q ? ", " : "(");
            shape_desc(&d, &e->g->nodes[n->inputs[q]]);
        }
        sb_printf(&d, "%s -> ", n->ninputs ? ")" : "");
        shape_desc(&d, n);
        sb_printf(&d, "; grid %lld, block %d", (long long)grid, block);
        kn->desc = d.s;
        kn->nodes = label;
        kn->registers = kn->spill_bytes = -1;
    } else {
        free(body.s);
        cg_kernel *kn = &p->kernels[k];
        /* list the first few nodes, then only count */
        if (kn->nuses < 6) {
            sb d = {0};
            sb_printf(&d, "%s, %s", kn->nodes, label);
            free(kn->nodes);
            kn->nodes = d.s;
        }
        free(label);
    }
    p->kernels[k].nuses++;
    rt_plan_step s;
    memset(&s, 0, sizeof s);
    s.kind = RT_STEP_KERNEL;
    s.what = node_label(e->g, e->node);
    s.kernel = k;
    s.grid[0] = (unsigned)grid;
    s.grid[1] = s.grid[2] = 1;
    s.block[0] = (unsigned)block;
    s.block[1] = s.block[2] = 1;
    s.nargs = l->np;
    rt_arg *args = calloc((size_t)l->np + 1, sizeof *args);
    if (!args) abort();
    for (int q = 0; q < l->np; q++) {
        args[q].kind = RT_ARG_PTR;
        args[q].offset = (uint64_t)l->off[q];
    }
    s.args = args;
    add_step(p, &s);
}

static int64_t off_of(emitter *e, int node) {
    int64_t o = e->m->offset[node];
    assert(o >= 0);
    return o;
}

/* int indices while i + gridDim.x * blockDim.x cannot overflow */
static const char *idx_type(int64_t n) { return n < ((int64_t)1 << 30) ? "int" : "long long"; }

/* grid for a grid-stride loop over n elements with 256 threads */
static int64_t stride_grid(int64_t n) {
    int64_t g = (n + 255) / 256;
    if (g > 8192) g = 8192;
    return g < 1 ? 1 : g;
}

/* ---- elementwise and gather kernels ------------------------------------------------------ */

/* Opens the grid-stride loop over the node's elements (variable i). */
static void loop_open(launch *l, int64_t total) {
    const char *it = idx_type(total);
    sb_printf(&l->body, "    for (%s i = (%s)blockIdx.x * blockDim.x + threadIdx.x; i < %lld; i += (%s)gridDim.x * blockDim.x) {\n",
              it, it, (long long)total, it);
}

static void loop_close(emitter *e, launch *l, int64_t total) {
    sb_printf(&l->body, "    }\n");
    finish(e, l, stride_grid(total), 256);
}

/* How an elementwise input is read when four consecutive outputs go together (float4). */
typedef enum { VEC_NO, VEC_LOAD4, VEC_SPLAT } vec_kind;

/* VEC_LOAD4: outputs 4j..4j+3 read 4 consecutive, 16-byte aligned input elements (same shape,
 * or a broadcast whose innermost run, like a bias over the last dim, is a multiple of 4);
 * VEC_SPLAT: they all read one element (a scalar, or broadcast along a last dim of 4k). */
static vec_kind vec_kind_of(const term *t, int nt) {
    if (nt == 0) return VEC_SPLAT;
    if (t[0].div == 1 && t[0].mul == 1 && t[0].mod % 4 == 0) return VEC_LOAD4;
    for (int k = 0; k < nt; k++)
        if (t[k].div % 4) return VEC_NO;
    return VEC_SPLAT;
}

/* y[i] = expr, with expr over a, b: the node's inputs loaded with broadcasting. All-f32 nodes
 * whose inputs allow it go four elements at a time (dc_load4/dc_store4). */
static int emit_elementwise(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    l.tag = ir_op_name(n->op);
    char c1[64], c2[320], ref[512], lb[600];
    int64_t total = ir_numel(n);
    term t[2][IR_MAX_DIMS];
    int nt[2];
    vec_kind vk[2];
    int vec = n->dtype == IR_F32 && total % 4 == 0 && n->ninputs <= 2;
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    for (int k = 0; k < n->ninputs; k++) {
        const ir_node *in = &e->g->nodes[n->inputs[k]];
        char nm[16];
        snprintf(nm, sizeof nm, "x%d", k);
        param(&l, in_type(in->dtype), nm, off_of(e, n->inputs[k]));
        nt[k] = bcast_terms(in, n->ndim, n->shape, t[k]);
        vk[k] = vec_kind_of(t[k], nt[k]);
        if (in->dtype != IR_F32 || vk[k] == VEC_NO) vec = 0;
    }
    const char *expr;
    char ex[256];
    switch (n->op) {
    case IR_OP_ADD: expr = "a + b"; break;
    case IR_OP_SUB: expr = "a - b"; break;
    case IR_OP_MUL: expr = "a * b"; break;
    case IR_OP_DIV: expr = "a / b"; break;
    case IR_OP_SCALE:
        snprintf(ex, sizeof ex, "a * %s", flit(c1, sizeof c1, n->attrs.alpha));
        expr = ex;
        break;
    case IR_OP_SQRT: expr = "dc_sqrt(a)"; break;
    case IR_OP_ERF: expr = "dc_erf(a)"; break;
    case IR_OP_GELU: expr = n->attrs.gelu_tanh ? "dc_gelu_tanh(a)" : "dc_gelu_erf(a)"; break;
    case IR_OP_GELU_GRAD: expr = n->attrs.gelu_tanh ? "a * dc_gelu_tanh_grad(b)" : "a * dc_gelu_erf_grad(b)"; break;
    case IR_OP_ERF_GRAD: expr = "a * 1.12837917f * dc_exp(-b * b)"; break;
    case IR_OP_CAST: case IR_OP_EXPAND: expr = "a"; break;
    case IR_OP_CONST: expr = flit(ex, sizeof ex, n->attrs.alpha); break;
    default: assert(0); expr = "0";
    }
    if (!vec) {
        loop_open(&l, total);
        for (int k = 0; k < n->ninputs; k++) {
            const ir_node *in = &e->g->nodes[n->inputs[k]];
            sb idx = {0};
            emit_terms(&idx, "i", t[k], nt[k]);
            snprintf(ref, sizeof ref, "x%d[%s]", k, idx.s);
            free(idx.s);
            sb_printf(&l.body, "        const float %c = %s;\n", 'a' + k, ld(lb, sizeof lb, in->dtype, ref));
        }
        sb_printf(&l.body, "        y[i] = %s;\n", st(c2, sizeof c2, n->dtype, expr));
        loop_close(e, &l, total);
        return 0;
    }
    /* four at a time: i4 counts float4s, i = 4 * i4 the first element */
    sb *b = &l.body;
    const char *it = idx_type(total);
    sb_printf(b, "    for (%s i4 = (%s)blockIdx.x * blockDim.x + threadIdx.x; i4 < %lld; i4 += (%s)gridDim.x * blockDim.x) {\n",
              it, it, (long long)total / 4, it);
    sb_printf(b, "        const %s i = 4 * i4;\n", it);
    for (int k = 0; k < n->ninputs; k++) {
        sb idx = {0};
        emit_terms(&idx, "i", t[k], nt[k]);
        if (vk[k] == VEC_LOAD4) sb_printf(b, "        const float4 %c4 = dc_load4(x%d + %s);\n", 'a' + k, k, idx.s);
        else sb_printf(b, "        const float %c = x%d[%s];\n", 'a' + k, k, idx.s);
        free(idx.s);
    }
    /* the expression as a lambda of the scalar inputs, applied to each component */
    sb_printf(b, "        const auto f = [](%s%s%s) { return %s; };\n", n->ninputs > 0 ? "float a" : "",
              n->ninputs > 1 ? ", " : "", n->ninputs > 1 ? "float b" : "", expr);
    sb_printf(b, "        dc_store4(y + i, make_float4(");
    const char comp[4] = {'x', 'y', 'z', 'w'};
    for (int c = 0; c < 4; c++) {
        sb_printf(b, "%sf(", c ? ", " : "");
        for (int k = 0; k < n->ninputs; k++) {
            sb_printf(b, "%s", k ? ", " : "");
            if (vk[k] == VEC_LOAD4) sb_printf(b, "%c4.%c", 'a' + k, comp[c]);
            else sb_printf(b, "%c", 'a' + k);
        }
        sb_printf(b, ")");
    }
    sb_printf(b, "));\n    }\n");
    finish(e, &l, stride_grid(total / 4), 256);
    return 0;
}

/* outer/len/inner view of a node around axis: i = (o * len + k) * inner + r */
static void axis_view(const ir_node *n, int64_t axis, int64_t *outer, int64_t *inner) {
    *outer = *inner = 1;
    for (int d = 0; d < axis; d++) *outer *= n->shape[d];
    for (int d = (int)axis + 1; d < n->ndim; d++) *inner *= n->shape[d];
}

static int emit_gather(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *x = &e->g->nodes[n->inputs[0]];
    launch l = {0};
    l.tag = ir_op_name(n->op);
    char lb[600], sbuf[700];
    int64_t total = ir_numel(n);
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    for (int k = 0; k < n->ninputs; k++) {
        char nm[16];
        snprintf(nm, sizeof nm, "x%d", k);
        param(&l, in_type(e->g->nodes[n->inputs[k]].dtype), nm, off_of(e, n->inputs[k]));
    }
    /* four at a time where every output run of 4 comes from 4 aligned consecutive inputs */
    int vec = total % 4 == 0 && n->dtype == IR_F32;
    for (int k = 0; k < n->ninputs; k++) vec &= e->g->nodes[n->inputs[k]].dtype == IR_F32;
    if (n->op == IR_OP_PERMUTE) {
        int d = n->ndim - 1;
        int64_t run = n->shape[d];
        while (d > 0 && n->attrs.perm[d - 1] == n->attrs.perm[d] - 1) run *= n->shape[--d];
        vec &= n->attrs.perm[n->ndim - 1] == n->ndim - 1 && run % 4 == 0;
    } else if (n->op == IR_OP_PATCHIFY || n->op == IR_OP_UNPATCHIFY) {
        vec &= n->attrs.patch % 4 == 0;
    } else {
        int64_t outer, inner;
        axis_view(n, n->attrs.axis, &outer, &inner);
        vec &= inner % 4 == 0;
    }
    const char *it = idx_type(total);
    sb *b = &l.body;
    if (vec) {
        sb_printf(b, "    for (%s i4 = (%s)blockIdx.x * blockDim.x + threadIdx.x; i4 < %lld; i4 += (%s)gridDim.x * blockDim.x) {\n",
                  it, it, (long long)total / 4, it);
        sb_printf(b, "        const %s i = 4 * i4;\n", it);
    } else {
        loop_open(&l, total);
    }
    /* a copy is `<open>x0[...]<close>;` */
    const char *open = vec ? "dc_store4(y + i, dc_load4(&" : "y[i] = ", *close = vec ? "))" : "";
    switch (n->op) {
    case IR_OP_PERMUTE: {
        int64_t istride[IR_MAX_DIMS], ostride[IR_MAX_DIMS];
        for (int d = x->ndim - 1, s = 1; d >= 0; d--) {
            istride[d] = s;
            s *= (int)x->shape[d];
        }
        for (int d = n->ndim - 1, s = 1; d >= 0; d--) {
            ostride[d] = s;
            s *= (int)n->shape[d];
        }
        term t[IR_MAX_DIMS];
        int nt = 0;
        for (int d = n->ndim - 1; d >= 0;) {
            /* merge d with earlier dims while they stay consecutive in the input */
            int e0 = d;
            int64_t size = n->shape[d];
            while (d > 0 && n->attrs.perm[d - 1] == n->attrs.perm[d] - 1) size *= n->shape[--d];
            t[nt].div = ostride[e0];
            t[nt].mod = d == 0 ? 0 : size;
            t[nt].mul = istride[n->attrs.perm[e0]];
            nt++;
            d--;
        }
        sb idx = {0};
        emit_terms(&idx, "i", t, nt);
        snprintf(sbuf, sizeof sbuf, "x0[%s]", idx.s);
        free(idx.s);
        sb_printf(b, "        %s%s%s;\n", open, sbuf, close);
        break;
    }
    case IR_OP_SLICE: {
        int64_t outer, inner, len = n->attrs.end - n->attrs.start, dim = x->shape[n->attrs.axis];
        axis_view(n, n->attrs.axis, &outer, &inner);
        sb_printf(b, "        const %s o = i / %lld, k = i / %lld %% %lld, r = i %% %lld;\n", it,
                  (long long)(len * inner), (long long)inner, (long long)len, (long long)inner);
        sb_printf(b, "        %sx0[(o * %lld + %lld + k) * %lld + r]%s;\n", open, (long long)dim,
                  (long long)n->attrs.start, (long long)inner, close);
        break;
    }
    case IR_OP_PAD: {
        int64_t outer, inner, len = n->attrs.end - n->attrs.start, dim = n->shape[n->attrs.axis];
        axis_view(n, n->attrs.axis, &outer, &inner);
        char zero[64];
        st(zero, sizeof zero, n->dtype, "0.0f");
        sb_printf(b, "        const %s o = i / %lld, k = i / %lld %% %lld - %lld, r = i %% %lld;\n", it,
                  (long long)(dim * inner), (long long)inner, (long long)dim, (long long)n->attrs.start,
                  (long long)inner);
        sb_printf(b, "        if (k >= 0 && k < %lld) %sx0[(o * %lld + k) * %lld + r]%s;\n", (long long)len, open,
                  (long long)len, (long long)inner, close);
        if (vec) sb_printf(b, "        else dc_store4(y + i, make_float4(0.0f, 0.0f, 0.0f, 0.0f));\n");
        else sb_printf(b, "        else y[i] = %s;\n", zero);
        break;
    }
    case IR_OP_CONCAT: {
        int64_t outer, inner, dim = n->shape[n->attrs.axis], at = 0;
        axis_view(n, n->attrs.axis, &outer, &inner);
        sb_printf(b, "        const %s o = i / %lld, k = i / %lld %% %lld, r = i %% %lld;\n", it,
                  (long long)(dim * inner), (long long)inner, (long long)dim, (long long)inner);
        for (int q = 0; q < n->ninputs; q++) {
            int64_t len = e->g->nodes[n->inputs[q]].shape[n->attrs.axis];
            if (q + 1 < n->ninputs) sb_printf(b, "        %sif (k < %lld) ", q ? "else " : "", (long long)(at + len));
            else sb_printf(b, "        %s", q ? "else " : "");
            sb_printf(b, "%sx%d[(o * %lld + k - %lld) * %lld + r]%s;\n", open, q, (long long)len, (long long)at,
                      (long long)inner, close);
            at += len;
        }
        break;
    }
    case IR_OP_PATCHIFY: {
        int64_t P = n->attrs.patch, C = x->shape[1], H = x->shape[2], W = x->shape[3];
        int64_t pw = W / P, np = (H / P) * pw, K = C * P * P;
        sb_printf(b, "        const %s bt = i / %lld, p = i / %lld %% %lld, k = i %% %lld;\n", it,
                  (long long)(np * K), (long long)K, (long long)np, (long long)K);
        sb_printf(b, "        const %s c = k / %lld, yy = p / %lld * %lld + k / %lld %% %lld, xx = p %% %lld * %lld + k %% %lld;\n",
                  it, (long long)(P * P), (long long)pw, (long long)P, (long long)P, (long long)P,
                  (long long)pw, (long long)P, (long long)P);
        sb_printf(b, "        %sx0[((bt * %lld + c) * %lld + yy) * %lld + xx]%s;\n", open, (long long)C, (long long)H,
                  (long long)W, close);
        break;
    }
    case IR_OP_UNPATCHIFY: {
        int64_t P = n->attrs.patch, C = n->shape[1], H = n->shape[2], W = n->shape[3];
        int64_t pw = W / P, np = (H / P) * pw, K = C * P * P;
        sb_printf(b, "        const %s bt = i / %lld, c = i / %lld %% %lld, yy = i / %lld %% %lld, xx = i %% %lld;\n",
                  it, (long long)(C * H * W), (long long)(H * W), (long long)C, (long long)W, (long long)H,
                  (long long)W);
        sb_printf(b, "        const %s p = yy / %lld * %lld + xx / %lld, k = c * %lld + yy %% %lld * %lld + xx %% %lld;\n",
                  it, (long long)P, (long long)pw, (long long)P, (long long)(P * P), (long long)P,
                  (long long)P, (long long)P);
        sb_printf(b, "        %sx0[(bt * %lld + p) * %lld + k]%s;\n", open, (long long)np, (long long)K, close);
        break;
    }
    default:
        assert(0);
    }
    (void)lb;
    if (vec) {
        sb_printf(b, "    }\n");
        finish(e, &l, stride_grid(total / 4), 256);
    } else {
        loop_close(e, &l, total);
    }
    return 0;
}

/* ---- reductions: sum_to, reduce_mean, layer_norm_dgamma's column sums ------------------------ */

/* Block shape for nout outputs of r reduced elements each: tx outputs x ty partials. */
static void reduce_shape(int64_t nout, int64_t r, int *tx, int *ty) {
    int64_t x = nout >= 32 ? 32 : pow2ceil(nout);
    int64_t y = 256 / x, pr = pow2ceil(r);
    if (y > pr) y = pr;
    if (x * y < 32) x = 32 / y; /* at least one warp */
    *tx = (int)x;
    *ty = (int)y;
}

/* Two-pass plan of a reduction of nout outputs over R elements each. A GPU needs a few hundred
 * blocks: a bias gradient of DeiT-S at batch 256 has 384 outputs (12 column tiles) of 50432
 * rows each. Pass 1 cuts the rows into `chunks` ranges of `rows` and gives every (chunk, column
 * tile) a block, which writes its partial sums to scratch part[chunk][nout]; pass 2 sums the
 * partials of each output in chunk order. Both orders are fixed: the result is deterministic
 * (no atomics). chunks == 1: one pass, straight into the output. */
enum { RED_TARGET_BLOCKS = 512, RED_MIN_ROWS = 256 };
typedef struct {
    int tx, ty;
    int64_t tiles;   /* column tiles of tx outputs */
    int64_t chunks;  /* row ranges (1: single pass) */
    int64_t rows;    /* rows of a range, a multiple of ty */
} red_plan;

static red_plan red_plan_of(int64_t nout, int64_t R) {
    red_plan p;
    reduce_shape(nout, R, &p.tx, &p.ty);
    p.tiles = (nout + p.tx - 1) / p.tx;
    int64_t want = (RED_TARGET_BLOCKS + p.tiles - 1) / p.tiles, most = R / RED_MIN_ROWS;
    if (want > most) want = most;
    p.chunks = 1;
    p.rows = R;
    if (want < 2) return p;
    p.rows = (R + want - 1) / want;
    p.rows = (p.rows + p.ty - 1) / p.ty * p.ty;
    p.chunks = (R + p.rows - 1) / p.rows;
    return p;
}

/* Appends the partial-sum combination and the store; `acc` holds this thread's partial. */
static void reduce_finish(launch *l, int tx, int ty, int64_t nout, const char *store_fmt) {
    sb *b = &l->body;
    if (ty > 1) {
        sb_printf(b, "    __shared__ float red[%d][%d];\n", ty, tx);
        sb_printf(b, "    red[ty][tx] = acc;\n    __syncthreads();\n");
        sb_printf(b, "    if (ty == 0 && o < %lld) {\n", (long long)nout);
        sb_printf(b, "        float s = 0.0f;\n        for (int k = 0; k < %d; k++) s += red[k][tx];\n", ty);
        sb_printf(b, "        ");
        sb_printf(b, store_fmt, "s");
        sb_printf(b, "\n    }\n");
        l->fibers = 1;
    } else {
        sb_printf(b, "    if (o < %lld) ", (long long)nout);
        sb_printf(b, store_fmt, "acc");
        sb_printf(b, "\n");
    }
}

/* Pass 2 of a two-pass reduction: y[o] = scale * sum over k < chunks of part[k][o], in k order
 * (one tx x ty block per column tile, the ty partial sums combined in a fixed order). */
static void emit_partials_sum(emitter *e, int64_t part, int64_t chunks, int64_t nout, double scale) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    char tag[64], fl[64], v[128], stb[256], fmt[300];
    snprintf(tag, sizeof tag, "%s_pass2", ir_op_name(n->op));
    l.tag = tag;
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    param(&l, "const float *", "part", part);
    int tx, ty;
    reduce_shape(nout, chunks, &tx, &ty);
    sb *b = &l.body;
    sb_printf(b, "    const int tx = threadIdx.x %% %d, ty = threadIdx.x / %d;\n", tx, tx);
    sb_printf(b, "    const int o = (int)blockIdx.x * %d + tx;\n", tx);
    sb_printf(b, "    float acc = 0.0f;\n");
    sb_printf(b, "    if (o < %lld)\n", (long long)nout);
    sb_printf(b, "        for (int k = ty; k < %lld; k += %d) acc += part[(long long)k * %lld + o];\n", (long long)chunks,
              ty, (long long)nout);
    if (scale != 1) snprintf(v, sizeof v, "%%s * %s", flit(fl, sizeof fl, scale));
    else snprintf(v, sizeof v, "%%s");
    snprintf(fmt, sizeof fmt, "y[o] = %s;", st(stb, sizeof stb, n->dtype, v));
    reduce_finish(&l, tx, ty, nout, fmt);
    finish(e, &l, (nout + tx - 1) / tx, tx * ty);
}

/* outputs and reduced elements per output of a sum_to / reduce_mean node */
static void reduce_sizes(const ir_graph *g, const ir_node *n, int64_t *nout, int64_t *R) {
    *nout = ir_numel(n);
    *R = ir_numel(&g->nodes[n->inputs[0]]) / (*nout ? *nout : 1);
}

/* sum (or mean, scale != 1) of x over the dims where the node is 1 (right-aligned) */
static int emit_reduce(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *x = &e->g->nodes[n->inputs[0]];
    int nd = x->ndim;
    int64_t od[IR_MAX_DIMS], nout, R;
    reduce_sizes(e->g, n, &nout, &R);
    double scale = 1;
    if (n->op == IR_OP_REDUCE_MEAN) {
        for (int d = 0; d < nd; d++) od[d] = d == n->attrs.axis ? 1 : x->shape[d];
        scale = 1.0 / (double)x->shape[n->attrs.axis];
    } else {
        for (int d = 0; d < nd; d++) {
            int k = d - (nd - n->ndim);
            od[d] = k >= 0 ? n->shape[k] : 1;
        }
    }
    /* kept terms over the output index o, reduced terms over r (both merged runs) */
    term kt[IR_MAX_DIMS], rt[IR_MAX_DIMS];
    int nk = 0, nr = 0;
    int64_t ko = 1, ro = 1, is = 1;
    for (int d = nd - 1; d >= 0;) {
        if (x->shape[d] == 1) { d--; continue; }
        int kept = od[d] == x->shape[d];
        int64_t size = 1;
        while (d >= 0 && (x->shape[d] == 1 || (od[d] == x->shape[d]) == kept)) size *= x->shape[d--];
        term *t = kept ? &kt[nk++] : &rt[nr++];
        int64_t *os = kept ? &ko : &ro;
        t->div = *os;
        t->mod = size;
        t->mul = is;
        *os *= size;
        is *= size;
    }
    for (int k = 0; k < nk; k++) if (kt[k].div * kt[k].mod >= nout) kt[k].mod = 0;
    for (int k = 0; k < nr; k++) if (rt[k].div * rt[k].mod >= R) rt[k].mod = 0;
    const red_plan rp = red_plan_of(nout, R);
    int64_t part = rp.chunks > 1 ? e->m->scratch_offset[e->node] : -1;
    assert(rp.chunks == 1 || part >= 0);
    launch l = {0};
    char tag[64];
    snprintf(tag, sizeof tag, "%s%s", ir_op_name(n->op), rp.chunks > 1 ? "_pass1" : "");
    l.tag = tag;
    if (rp.chunks > 1) param(&l, "float *", "part", part);
    else param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    param(&l, in_type(x->dtype), "x0", off_of(e, n->inputs[0]));
    const char *it = idx_type(ir_numel(x));
    sb *b = &l.body;
    sb_printf(b, "    const int tx = threadIdx.x %% %d, ty = threadIdx.x / %d;\n", rp.tx, rp.tx);
    if (rp.chunks > 1) {
        sb_printf(b, "    const int chunk = blockIdx.x / %lld;\n", (long long)rp.tiles);
        sb_printf(b, "    const %s o = (%s)(blockIdx.x %% %lld) * %d + tx;\n", it, it, (long long)rp.tiles, rp.tx);
        sb_printf(b, "    const %s r0 = (%s)chunk * %lld, r1 = r0 + %lld < %lld ? r0 + %lld : %lld;\n", it, it,
                  (long long)rp.rows, (long long)rp.rows, (long long)R, (long long)rp.rows, (long long)R);
    } else {
        sb_printf(b, "    const %s o = (%s)blockIdx.x * %d + tx;\n", it, it, rp.tx);
    }
    sb_printf(b, "    float acc = 0.0f;\n    if (o < %lld) {\n", (long long)nout);
    sb_printf(b, "        const %s base = ", it);
    emit_terms(b, "o", kt, nk);
    if (rp.chunks > 1) sb_printf(b, ";\n        for (%s r = r0 + ty; r < r1; r += %d) {\n", it, rp.ty);
    else sb_printf(b, ";\n        for (%s r = ty; r < %lld; r += %d) {\n", it, (long long)R, rp.ty);
    sb s = {0};
    emit_terms(&s, "r", rt, nr);
    char ref[600], lbuf[700], fl[64], stb[700], fmt[800];
    snprintf(ref, sizeof ref, "x0[base + %s]", s.s);
    free(s.s);
    sb_printf(b, "            acc += %s;\n        }\n    }\n", ld(lbuf, sizeof lbuf, x->dtype, ref));
    if (rp.chunks > 1) {
        snprintf(fmt, sizeof fmt, "part[(long long)chunk * %lld + o] = %%s;", (long long)nout);
    } else {
        char v[128];
        if (scale != 1) snprintf(v, sizeof v, "%%s * %s", flit(fl, sizeof fl, scale));
        else snprintf(v, sizeof v, "%%s");
        snprintf(fmt, sizeof fmt, "y[o] = %s;", st(stb, sizeof stb, n->dtype, v));
    }
    reduce_finish(&l, rp.tx, rp.ty, nout, fmt);
    finish(e, &l, rp.tiles * rp.chunks, rp.tx * rp.ty);
    if (rp.chunks > 1) emit_partials_sum(e, part, rp.chunks, nout, scale);
    return 0;
}

/* ---- row kernels: one block per row of the last dim ---------------------------------------- */

static int row_block(int64_t cols) {
    int64_t b = round32(cols);
    return (int)(b > 256 ? 256 : b);
}

/* How a row kernel (layer_norm*, softmax*) covers its rows. Rows of up to ROW_WARP_MAX: one
 * warp per row, ROWS_PER_BLOCK rows a block; each lane walks the row with stride 32 and the
 * reductions are dc_warp_* (shuffles only). On a GPU that beats a block per row for DeiT's
 * 192..768-wide rows (and 197-wide attention rows): no __syncthreads or shared-memory round trip
 * between the passes, 6..24 independent loads per lane, full occupancy with 128-thread blocks;
 * in the emu a reduction is then a rendezvous of 32 fibers instead of 200+ (7x fewer context
 * switches). Wider rows: one block per row (up to 256 threads), dc_block_* reductions. */
enum { ROW_WARP_MAX = 1024, ROWS_PER_BLOCK = 4 };
typedef struct {
    int warp;                     /* one warp per row */
    int64_t grid;
    int block;
    const char *c0, *step;        /* a thread's first column and stride */
    const char *sum, *max, *lead; /* reductions; lead: the thread that stores a row result */
} row_shape;

static row_shape row_shape_of(int64_t C, int64_t rows) {
    row_shape r;
    if (C <= ROW_WARP_MAX) {
        r = (row_shape){1, (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, "lane", "32",
                        "dc_warp_sum", "dc_warp_max", "lane == 0"};
    } else {
        r = (row_shape){0, rows, row_block(C), "threadIdx.x", "blockDim.x", "dc_block_sum", "dc_block_max",
                        "threadIdx.x == 0"};
    }
    return r;
}

/* the kernel's first lines: r = the row index (type it); in warp mode also lane, and warps past
 * the last row leave (a whole warp at once: no shuffle loses a lane) */
static void emit_row_head(sb *b, const row_shape *rs, const char *it, int64_t rows) {
    if (rs->warp) {
        sb_printf(b, "    const int lane = threadIdx.x & 31;\n");
        sb_printf(b, "    const %s r = (%s)blockIdx.x * %d + (threadIdx.x >> 5);\n", it, it, ROWS_PER_BLOCK);
        if (rows % ROWS_PER_BLOCK) sb_printf(b, "    if (r >= %lld) return;\n", (long long)rows);
    } else {
        sb_printf(b, "    const %s r = blockIdx.x;\n", it);
    }
}

/* row statistics into mean, rstd (every thread gets them); x is the row's base pointer */
static void emit_row_stats(sb *b, const row_shape *rs, const char *xr, ir_dtype t, int64_t C, double eps) {
    char ref[64], lb[128], fl[64];
    snprintf(ref, sizeof ref, "%s[c]", xr);
    ld(lb, sizeof lb, t, ref);
    sb_printf(b, "    float s = 0.0f;\n");
    sb_printf(b, "    for (int c = %s; c < %lld; c += %s) s += %s;\n", rs->c0, (long long)C, rs->step, lb);
    sb_printf(b, "    const float mean = %s(s) * %s;\n", rs->sum, flit(fl, sizeof fl, 1.0 / (double)C));
    sb_printf(b, "    float ss = 0.0f;\n");
    sb_printf(b, "    for (int c = %s; c < %lld; c += %s) {\n", rs->c0, (long long)C, rs->step);
    sb_printf(b, "        const float d = %s - mean;\n        ss += d * d;\n    }\n", lb);
    sb_printf(b, "    const float rstd = 1.0f / dc_sqrt(%s(ss) * %s + ", rs->sum, flit(fl, sizeof fl, 1.0 / (double)C));
    sb_printf(b, "%s);\n", flit(fl, sizeof fl, eps));
}

/* ---- row kernels, rows of up to ROW_WARP_MAX: one warp per row, the row in registers ---------
 *
 * Lane l holds columns l, l + 32, ... (K = ceil(C / 32) values, arrays indexed by unrolled
 * constants: registers), so each row is read from memory once and every pass after the first
 * (mean, variance, exp, the outputs) works on registers: softmax computes exp once per element.
 * Padding lanes (C not a multiple of 32) hold a neutral value and store nothing. */

/* `float name[K]` = the row's columns lane + 32 k loaded from ref (a pointer expression
 * indexed by c), `pad` where c >= C */
static void emit_row_load(sb *b, const char *name, const char *ptr, ir_dtype t, int64_t C, const char *pad) {
    char ref[128], lb[192];
    int64_t K = (C + 31) / 32;
    snprintf(ref, sizeof ref, "%s[c]", ptr);
    ld(lb, sizeof lb, t, ref);
    sb_printf(b, "    float %s[%lld];\n", name, (long long)K);
    sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)K);
    sb_printf(b, "        const int c = lane + 32 * k;\n");
    if (C % 32) sb_printf(b, "        %s[k] = c < %lld ? %s : %s;\n    }\n", name, (long long)C, lb, pad);
    else sb_printf(b, "        %s[k] = %s;\n    }\n", name, lb);
}

/* opens an unrolled loop over the lane's columns (c defined); guard: skip padding columns */
static void emit_row_for(sb *b, int64_t C, int guard) {
    sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)(C + 31) / 32);
    sb_printf(b, "        const int c = lane + 32 * k;\n");
    if (guard && C % 32) sb_printf(b, "        if (c >= %lld) continue;\n", (long long)C);
}

/* mean and rstd of the row held in xv (padding holds 0) */
static void emit_row_stats_reg(sb *b, int64_t C, double eps) {
    char fl[64], fe[64];
    flit(fl, sizeof fl, 1.0 / (double)C);
    sb_printf(b, "    float s = 0.0f;\n");
    sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) s += xv[k];\n", (long long)(C + 31) / 32);
    sb_printf(b, "    const float mean = dc_warp_sum(s) * %s;\n", fl);
    sb_printf(b, "    float ss = 0.0f;\n");
    if (C % 32) {
        emit_row_for(b, C, 1);
        sb_printf(b, "        const float d = xv[k] - mean;\n        ss += d * d;\n    }\n");
    } else {
        sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)C / 32);
        sb_printf(b, "        const float d = xv[k] - mean;\n        ss += d * d;\n    }\n");
    }
    sb_printf(b, "    const float rstd = 1.0f / dc_sqrt(dc_warp_sum(ss) * %s + %s);\n", fl, flit(fe, sizeof fe, eps));
}

/* The start every LayerNorm / LayerNorm-dx row kernel shares, one warp or one block a row:
 * the launch, its parameters (y, then x gamma beta or dy x gamma), the row head, `row` and the
 * row pointers xr (and dyr). */
static void begin_layer_norm(emitter *e, launch *l, const row_shape *rs) {
    static const char *const names[2][3] = {{"x", "gamma", "beta"}, {"dy", "x", "gamma"}};
    const ir_node *n = &e->g->nodes[e->node];
    int is_dx = n->op == IR_OP_LAYER_NORM_DX;
    const ir_node *x = &e->g->nodes[n->inputs[is_dx ? 1 : 0]];
    int64_t C = last_dim(x), rows = ir_numel(x) / C;
    const char *it = idx_type(ir_numel(x));
    l->tag = ir_op_name(n->op);
    l->fibers = 1;
    param(l, out_type(n->dtype), "y", off_of(e, e->node));
    for (int i = 0; i < 3; i++)
        param(l, in_type(e->g->nodes[n->inputs[i]].dtype), names[is_dx][i], off_of(e, n->inputs[i]));
    emit_row_head(&l->body, rs, it, rows);
    sb_printf(&l->body, "    const %s row = r * %lld;\n", it, (long long)C);
    sb_printf(&l->body, "    const auto *xr = x + row;\n%s", is_dx ? "    const auto *dyr = dy + row;\n" : "");
}

/* The same for softmax (x) and softmax-dx (dy, yv): parameters, row head, `row`. */
static void begin_softmax(emitter *e, launch *l, const row_shape *rs) {
    const ir_node *n = &e->g->nodes[e->node];
    int64_t C = last_dim(n), rows = ir_numel(n) / C;
    const char *it = idx_type(ir_numel(n));
    l->tag = ir_op_name(n->op);
    l->fibers = 1;
    param(l, out_type(n->dtype), "y", off_of(e, e->node));
    if (n->op == IR_OP_SOFTMAX) {
        param(l, in_type(e->g->nodes[n->inputs[0]].dtype), "x", off_of(e, n->inputs[0]));
    } else {
        param(l, in_type(e->g->nodes[n->inputs[0]].dtype), "dy", off_of(e, n->inputs[0]));
        param(l, in_type(e->g->nodes[n->inputs[1]].dtype), "yv", off_of(e, n->inputs[1]));
    }
    emit_row_head(&l->body, rs, it, rows);
    sb_printf(&l->body, "    const %s row = r * %lld;\n", it, (long long)C);
}

static int emit_layer_norm_warp(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int is_dx = n->op == IR_OP_LAYER_NORM_DX;
    const ir_node *x = &e->g->nodes[n->inputs[is_dx ? 1 : 0]];
    int64_t C = last_dim(x), rows = ir_numel(x) / C;
    const row_shape rs = row_shape_of(C, rows);
    assert(rs.warp);
    launch l = {0};
    char a[128], bb[128], res[512], sres[600], fl[64];
    begin_layer_norm(e, &l, &rs);
    sb *b = &l.body;
    if (!is_dx) {
        const ir_node *gm = &e->g->nodes[n->inputs[1]], *bt = &e->g->nodes[n->inputs[2]];
        emit_row_load(b, "xv", "xr", x->dtype, C, "0.0f");
        emit_row_stats_reg(b, C, n->attrs.eps);
        emit_row_for(b, C, 1);
        snprintf(res, sizeof res, "(xv[k] - mean) * rstd * %s + %s", ld(a, sizeof a, gm->dtype, "gamma[c]"),
                 ld(bb, sizeof bb, bt->dtype, "beta[c]"));
        sb_printf(b, "        y[row + c] = %s;\n    }\n", st(sres, sizeof sres, n->dtype, res));
    } else {
        const ir_node *dy = &e->g->nodes[n->inputs[0]], *gm = &e->g->nodes[n->inputs[2]];
        emit_row_load(b, "xv", "xr", x->dtype, C, "0.0f");
        emit_row_stats_reg(b, C, n->attrs.eps);
        /* gv = dy * gamma; xv becomes xhat */
        sb_printf(b, "    float gv[%lld], s1 = 0.0f, s2 = 0.0f;\n", (long long)(C + 31) / 32);
        sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)(C + 31) / 32);
        sb_printf(b, "        const int c = lane + 32 * k;\n");
        snprintf(res, sizeof res, "%s * %s", ld(a, sizeof a, dy->dtype, "dyr[c]"), ld(bb, sizeof bb, gm->dtype, "gamma[c]"));
        if (C % 32) sb_printf(b, "        gv[k] = c < %lld ? %s : 0.0f;\n", (long long)C, res);
        else sb_printf(b, "        gv[k] = %s;\n", res);
        sb_printf(b, "        xv[k] = (xv[k] - mean) * rstd;\n");
        sb_printf(b, "        s1 += gv[k];\n        s2 += gv[k] * xv[k];\n    }\n");
        flit(fl, sizeof fl, 1.0 / (double)C);
        sb_printf(b, "    s1 = dc_warp_sum(s1) * %s;\n    s2 = dc_warp_sum(s2) * %s;\n", fl, fl);
        emit_row_for(b, C, 1);
        sb_printf(b, "        y[row + c] = %s;\n    }\n", st(sres, sizeof sres, n->dtype, "rstd * (gv[k] - s1 - xv[k] * s2)"));
    }
    finish(e, &l, rs.grid, rs.block);
    return 0;
}

/* layer_norm_dgamma rows of up to ROW_WARP_MAX: blocks of DGAMMA_WARPS warps take ranges of
 * `rows` rows (a warp every DGAMMA_WARPS-th row of the range); a warp recomputes its row's mean
 * and rstd from the row in registers (x is read once anyway, so keeping the forward's
 * statistics would save arithmetic, not memory traffic) and adds dy * xhat into per-lane column
 * sums; the block adds its warps' sums in warp order into part[chunk][C]. Pass 2 (chunks > 1)
 * sums the chunks in order. Deterministic; no atomics. */
enum { DGAMMA_WARPS = 8, DGAMMA_MIN_ROWS = 32 };
static int64_t dgamma_rows(int64_t rows) {
    int64_t chunks = rows / DGAMMA_MIN_ROWS;
    if (chunks > RED_TARGET_BLOCKS) chunks = RED_TARGET_BLOCKS;
    if (chunks < 2) return rows;
    return (rows + chunks - 1) / chunks;
}
static int64_t dgamma_chunks(int64_t rows) {
    int64_t rc = dgamma_rows(rows);
    return (rows + rc - 1) / rc;
}

static int emit_layer_norm_dgamma_warp(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *dy = &e->g->nodes[n->inputs[0]], *x = &e->g->nodes[n->inputs[1]];
    int64_t C = last_dim(x), rows = ir_numel(x) / C, K = (C + 31) / 32;
    int64_t rc = dgamma_rows(rows), chunks = dgamma_chunks(rows);
    int64_t part = chunks > 1 ? e->m->scratch_offset[e->node] : -1;
    assert(chunks == 1 || part >= 0);
    const char *it = idx_type(ir_numel(x));
    char a[128], tag[64], sres[128];
    launch l = {0};
    snprintf(tag, sizeof tag, "layer_norm_dgamma%s", chunks > 1 ? "_pass1" : "");
    l.tag = tag;
    l.fibers = 1;
    if (chunks > 1) param(&l, "float *", "part", part);
    else param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    param(&l, in_type(dy->dtype), "dy", off_of(e, n->inputs[0]));
    param(&l, in_type(x->dtype), "x", off_of(e, n->inputs[1]));
    sb *b = &l.body;
    sb_printf(b, "    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;\n");
    sb_printf(b, "    const %s r0 = (%s)blockIdx.x * %lld, r1 = r0 + %lld < %lld ? r0 + %lld : %lld;\n", it, it,
              (long long)rc, (long long)rc, (long long)rows, (long long)rc, (long long)rows);
    sb_printf(b, "    float acc[%lld];\n", (long long)K);
    sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) acc[k] = 0.0f;\n", (long long)K);
    sb_printf(b, "    for (%s r = r0 + w; r < r1; r += %d) { /* the same for the whole warp */\n", it, DGAMMA_WARPS);
    sb row = {0};
    sb_printf(&row, "    const auto *xr = x + r * %lld;\n    const auto *dyr = dy + r * %lld;\n", (long long)C, (long long)C);
    emit_row_load(&row, "xv", "xr", x->dtype, C, "0.0f");
    emit_row_stats_reg(&row, C, n->attrs.eps);
    emit_row_for(&row, C, 1);
    sb_printf(&row, "        acc[k] += %s * ((xv[k] - mean) * rstd);\n    }\n", ld(a, sizeof a, dy->dtype, "dyr[c]"));
    for (const char *p = row.s, *q; *p; p = q + 1) { /* indented one level */
        q = strchr(p, '\n');
        sb_printf(b, "    %.*s\n", (int)(q - p), p);
    }
    free(row.s);
    sb_printf(b, "    }\n");
    sb_printf(b, "    __shared__ float sum[%d][%lld];\n", DGAMMA_WARPS, (long long)(32 * K));
    sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) sum[w][lane + 32 * k] = acc[k];\n", (long long)K);
    sb_printf(b, "    __syncthreads();\n");
    sb_printf(b, "    for (int c = threadIdx.x; c < %lld; c += %d) {\n", (long long)C, 32 * DGAMMA_WARPS);
    sb_printf(b, "        float s = 0.0f;\n        for (int q = 0; q < %d; q++) s += sum[q][c];\n", DGAMMA_WARPS);
    if (chunks > 1) sb_printf(b, "        part[(long long)blockIdx.x * %lld + c] = s;\n    }\n", (long long)C);
    else sb_printf(b, "        y[c] = %s;\n    }\n", st(sres, sizeof sres, n->dtype, "s"));
    finish(e, &l, chunks, 32 * DGAMMA_WARPS);
    if (chunks > 1) emit_partials_sum(e, part, chunks, C, 1);
    return 0;
}

static int emit_softmax_warp(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int64_t C = last_dim(n), rows = ir_numel(n) / C, K = (C + 31) / 32;
    const row_shape rs = row_shape_of(C, rows);
    assert(rs.warp);
    launch l = {0};
    char sres[300];
    begin_softmax(e, &l, &rs);
    sb *b = &l.body;
    if (n->op == IR_OP_SOFTMAX) {
        const ir_node *x = &e->g->nodes[n->inputs[0]];
        sb_printf(b, "    const auto *xr = x + row;\n");
        emit_row_load(b, "xv", "xr", x->dtype, C, "-DC_INF");
        sb_printf(b, "    float m = -DC_INF;\n");
        sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) m = fmaxf(m, xv[k]);\n", (long long)K);
        sb_printf(b, "    m = dc_warp_max(m);\n    float s = 0.0f;\n");
        sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) {\n", (long long)K);
        sb_printf(b, "        xv[k] = dc_exp(xv[k] - m); /* padding: exp(-inf) = 0 */\n        s += xv[k];\n    }\n");
        sb_printf(b, "    const float inv = 1.0f / dc_warp_sum(s);\n");
        emit_row_for(b, C, 1);
        sb_printf(b, "        y[row + c] = %s;\n    }\n", st(sres, sizeof sres, n->dtype, "xv[k] * inv"));
    } else {
        const ir_node *dy = &e->g->nodes[n->inputs[0]], *y = &e->g->nodes[n->inputs[1]];
        sb_printf(b, "    const auto *dyr = dy + row;\n    const auto *yr = yv + row;\n");
        emit_row_load(b, "dv", "dyr", dy->dtype, C, "0.0f");
        emit_row_load(b, "pv", "yr", y->dtype, C, "0.0f");
        sb_printf(b, "    float dot = 0.0f;\n");
        sb_printf(b, "    DC_UNROLL for (int k = 0; k < %lld; k++) dot += dv[k] * pv[k];\n", (long long)K);
        sb_printf(b, "    dot = dc_warp_sum(dot);\n");
        emit_row_for(b, C, 1);
        sb_printf(b, "        y[row + c] = %s;\n    }\n", st(sres, sizeof sres, n->dtype, "pv[k] * (dv[k] - dot)"));
    }
    finish(e, &l, rs.grid, rs.block);
    return 0;
}

/* ---- row kernels, wider rows: one block per row ---------------------------------------------- */

static int emit_layer_norm(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int is_dx = n->op == IR_OP_LAYER_NORM_DX;
    const ir_node *x = &e->g->nodes[n->inputs[is_dx ? 1 : 0]];
    int64_t C = last_dim(x), rows = ir_numel(x) / C;
    if (C <= ROW_WARP_MAX) return emit_layer_norm_warp(e);
    const row_shape rs = row_shape_of(C, rows);
    launch l = {0};
    char a[128], bb[128], c[128], res[512], sres[600];
    begin_layer_norm(e, &l, &rs);
    sb *b = &l.body;
    if (!is_dx) {
        const ir_node *gm = &e->g->nodes[n->inputs[1]], *bt = &e->g->nodes[n->inputs[2]];
        emit_row_stats(b, &rs, "xr", x->dtype, C, n->attrs.eps);
        sb_printf(b, "    for (int c = %s; c < %lld; c += %s)\n", rs.c0, (long long)C, rs.step);
        snprintf(res, sizeof res, "(%s - mean) * rstd * %s + %s", ld(a, sizeof a, x->dtype, "xr[c]"),
                 ld(bb, sizeof bb, gm->dtype, "gamma[c]"), ld(c, sizeof c, bt->dtype, "beta[c]"));
        sb_printf(b, "        y[row + c] = %s;\n", st(sres, sizeof sres, n->dtype, res));
    } else {
        const ir_node *dy = &e->g->nodes[n->inputs[0]], *gm = &e->g->nodes[n->inputs[2]];
        char fl[64];
        emit_row_stats(b, &rs, "xr", x->dtype, C, n->attrs.eps);
        sb_printf(b, "    float s1 = 0.0f, s2 = 0.0f;\n");
        sb_printf(b, "    for (int c = %s; c < %lld; c += %s) {\n", rs.c0, (long long)C, rs.step);
        sb_printf(b, "        const float g = %s * %s;\n", ld(a, sizeof a, dy->dtype, "dyr[c]"),
                  ld(bb, sizeof bb, gm->dtype, "gamma[c]"));
        sb_printf(b, "        s1 += g;\n        s2 += g * (%s - mean) * rstd;\n    }\n", ld(c, sizeof c, x->dtype, "xr[c]"));
        flit(fl, sizeof fl, 1.0 / (double)C);
        sb_printf(b, "    s1 = %s(s1) * %s;\n    s2 = %s(s2) * %s;\n", rs.sum, fl, rs.sum, fl);
        sb_printf(b, "    for (int c = %s; c < %lld; c += %s) {\n", rs.c0, (long long)C, rs.step);
        sb_printf(b, "        const float xh = (%s - mean) * rstd;\n", c);
        snprintf(res, sizeof res, "rstd * (%s * %s - s1 - xh * s2)", a, bb);
        sb_printf(b, "        y[row + c] = %s;\n    }\n", st(sres, sizeof sres, n->dtype, res));
    }
    finish(e, &l, rs.grid, rs.block);
    return 0;
}

/* layer_norm_dgamma(dy, x), wide rows: row stats into scratch (mean, rstd per row), then
 * column sums */
static int emit_layer_norm_dgamma(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *dy = &e->g->nodes[n->inputs[0]], *x = &e->g->nodes[n->inputs[1]];
    if (last_dim(x) <= ROW_WARP_MAX) return emit_layer_norm_dgamma_warp(e);
    int64_t C = last_dim(x), rows = ir_numel(x) / C, scratch = e->m->scratch_offset[e->node];
    assert(scratch >= 0);
    const char *it = idx_type(ir_numel(x));
    char a[128], c[128], fmt[256], sv[128];
    {
        const row_shape rs = row_shape_of(C, rows);
        launch l = {0};
        l.tag = "layer_norm_stats";
        l.fibers = 1;
        param(&l, "float *", "stats", scratch);
        param(&l, in_type(x->dtype), "x", off_of(e, n->inputs[1]));
        sb *b = &l.body;
        emit_row_head(b, &rs, it, rows);
        sb_printf(b, "    const auto *xr = x + r * %lld;\n", (long long)C);
        emit_row_stats(b, &rs, "xr", x->dtype, C, n->attrs.eps);
        sb_printf(b, "    if (%s) {\n        stats[2 * r] = mean;\n", rs.lead);
        sb_printf(b, "        stats[2 * r + 1] = rstd;\n    }\n");
        finish(e, &l, rs.grid, rs.block);
    }
    launch l = {0};
    l.tag = "layer_norm_dgamma";
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    param(&l, in_type(dy->dtype), "dy", off_of(e, n->inputs[0]));
    param(&l, in_type(x->dtype), "x", off_of(e, n->inputs[1]));
    param(&l, "const float *", "stats", scratch);
    int tx, ty;
    reduce_shape(C, rows, &tx, &ty);
    sb *b = &l.body;
    sb_printf(b, "    const int tx = threadIdx.x %% %d, ty = threadIdx.x / %d;\n", tx, tx);
    sb_printf(b, "    const int o = blockIdx.x * %d + tx;\n", tx);
    sb_printf(b, "    float acc = 0.0f;\n    if (o < %lld) {\n", (long long)C);
    sb_printf(b, "        for (%s r = ty; r < %lld; r += %d) {\n", it, (long long)rows, ty);
    sb_printf(b, "            const %s at = r * %lld + o;\n", it, (long long)C);
    sb_printf(b, "            acc += %s * (%s - stats[2 * r]) * stats[2 * r + 1];\n", ld(a, sizeof a, dy->dtype, "dy[at]"),
              ld(c, sizeof c, x->dtype, "x[at]"));
    sb_printf(b, "        }\n    }\n");
    snprintf(fmt, sizeof fmt, "y[o] = %s;", st(sv, sizeof sv, n->dtype, "%s"));
    reduce_finish(&l, tx, ty, C, fmt);
    finish(e, &l, (C + tx - 1) / tx, tx * ty);
    return 0;
}

static int emit_softmax(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int64_t C = last_dim(n), rows = ir_numel(n) / C;
    if (C <= ROW_WARP_MAX) return emit_softmax_warp(e);
    const row_shape rs = row_shape_of(C, rows);
    launch l = {0};
    char a[128], bb[128], res[512], sres[600];
    begin_softmax(e, &l, &rs);
    sb *b = &l.body;
    if (n->op == IR_OP_SOFTMAX) {
        const ir_node *x = &e->g->nodes[n->inputs[0]];
        ld(a, sizeof a, x->dtype, "x[row + c]");
        sb_printf(b, "    float m = -DC_INF;\n");
        sb_printf(b, "    for (int c = %s; c < %lld; c += %s) m = fmaxf(m, %s);\n", rs.c0, (long long)C, rs.step, a);
        sb_printf(b, "    m = %s(m);\n    float s = 0.0f;\n", rs.max);
        sb_printf(b, "    for (int c = %s; c < %lld; c += %s) s += dc_exp(%s - m);\n", rs.c0, (long long)C, rs.step, a);
        sb_printf(b, "    const float inv = 1.0f / %s(s);\n", rs.sum);
        snprintf(res, sizeof res, "dc_exp(%s - m) * inv", a);
    } else {
        const ir_node *dy = &e->g->nodes[n->inputs[0]], *y = &e->g->nodes[n->inputs[1]];
        ld(a, sizeof a, dy->dtype, "dy[row + c]");
        ld(bb, sizeof bb, y->dtype, "yv[row + c]");
        sb_printf(b, "    float dot = 0.0f;\n");
        sb_printf(b, "    for (int c = %s; c < %lld; c += %s) dot += %s * %s;\n", rs.c0, (long long)C, rs.step, a, bb);
        sb_printf(b, "    dot = %s(dot);\n", rs.sum);
        snprintf(res, sizeof res, "%s * (%s - dot)", bb, a);
    }
    sb_printf(b, "    for (int c = %s; c < %lld; c += %s) y[row + c] = %s;\n", rs.c0, (long long)C, rs.step,
              st(sres, sizeof sres, n->dtype, res));
    finish(e, &l, rs.grid, rs.block);
    return 0;
}

/* Pass 2 of a scalar reduction: y[0] = scale * (sum of part[0..nparts)), one block, each thread
 * summing a fixed stride of the partials, then dc_block_sum (a fixed tree): deterministic. */
static void emit_block_total(emitter *e, int64_t part, int64_t nparts, double scale) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    char tag[64], fl[64], v[128], sres[200];
    snprintf(tag, sizeof tag, "%s_pass2", ir_op_name(n->op));
    l.tag = tag;
    l.fibers = 1;
    param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    param(&l, "const float *", "part", part);
    sb *b = &l.body;
    sb_printf(b, "    float s = 0.0f;\n");
    sb_printf(b, "    for (int i = threadIdx.x; i < %lld; i += blockDim.x) s += part[i];\n", (long long)nparts);
    sb_printf(b, "    s = dc_block_sum(s);\n");
    if (scale != 1) snprintf(v, sizeof v, "s * %s", flit(fl, sizeof fl, scale));
    else snprintf(v, sizeof v, "s");
    sb_printf(b, "    if (threadIdx.x == 0) y[0] = %s;\n", st(sres, sizeof sres, n->dtype, v));
    finish(e, &l, 1, 256);
}

/* log-sum-exp of the row at xr into lse (every thread) */
static void emit_lse(sb *b, ir_dtype t, int64_t K) {
    char a[64];
    ld(a, sizeof a, t, "xr[c]");
    sb_printf(b, "        float m = -DC_INF;\n");
    sb_printf(b, "        for (int c = threadIdx.x; c < %lld; c += blockDim.x) m = fmaxf(m, %s);\n", (long long)K, a);
    sb_printf(b, "        m = dc_block_max(m);\n        float s = 0.0f;\n");
    sb_printf(b, "        for (int c = threadIdx.x; c < %lld; c += blockDim.x) s += dc_exp(%s - m);\n", (long long)K, a);
    sb_printf(b, "        const float lse = m + logf(dc_block_sum(s));\n");
}

static int emit_cross_entropy(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int grad = n->op == IR_OP_CROSS_ENTROPY_GRAD;
    const ir_node *x = &e->g->nodes[n->inputs[grad ? 1 : 0]], *lab = &e->g->nodes[n->inputs[grad ? 2 : 1]];
    int64_t B = x->shape[0], K = x->shape[1];
    double sm = n->attrs.smoothing;
    char a[64], fl[64], fl2[64], res[256], sres[300];
    launch l = {0};
    l.tag = ir_op_name(n->op);
    l.fibers = 1;
    sb *b = &l.body;
    /* forward: pass 1 (one block per row) writes the rows' losses to scratch, pass 2 adds them
     * in order */
    int64_t part = grad ? -1 : e->m->scratch_offset[e->node];
    assert(grad || part >= 0);
    if (grad) param(&l, out_type(n->dtype), "y", off_of(e, e->node));
    else param(&l, "float *", "loss_rows", part);
    if (grad) param(&l, in_type(e->g->nodes[n->inputs[0]].dtype), "dloss", off_of(e, n->inputs[0]));
    param(&l, in_type(x->dtype), "x", off_of(e, n->inputs[grad ? 1 : 0]));
    param(&l, in_type(lab->dtype), "labels", off_of(e, n->inputs[grad ? 2 : 1]));
    ld(a, sizeof a, x->dtype, "xr[c]");
    if (!grad) {
        l.tag = "cross_entropy_pass1";
        sb_printf(b, "    const int bi = blockIdx.x;\n    {\n");
        sb_printf(b, "        const auto *xr = x + (long long)bi * %lld;\n", (long long)K);
        emit_lse(b, x->dtype, K);
        sb_printf(b, "        const long long t = (long long)labels[bi];\n");
        sb_printf(b, "        const float xt = t >= 0 && t < %lld ? %s : __int_as_float(0x7fc00000);\n", (long long)K,
                  ld(res, sizeof res, x->dtype, "xr[t]"));
        if (sm != 0) {
            sb_printf(b, "        float sx = 0.0f;\n");
            sb_printf(b, "        for (int c = threadIdx.x; c < %lld; c += blockDim.x) sx += %s;\n", (long long)K, a);
            sb_printf(b, "        sx = dc_block_sum(sx);\n");
            sb_printf(b, "        if (threadIdx.x == 0) loss_rows[bi] = %s * (lse - xt) + %s * (lse - sx * %s);\n",
                      flit(fl, sizeof fl, 1 - sm), flit(fl2, sizeof fl2, sm), flit(res, sizeof res, 1.0 / (double)K));
        } else {
            sb_printf(b, "        if (threadIdx.x == 0) loss_rows[bi] = lse - xt;\n");
        }
        sb_printf(b, "    }\n");
        finish(e, &l, B, row_block(K));
        emit_block_total(e, part, B, 1.0 / (double)B);
        return 0;
    }
    const ir_node *dl = &e->g->nodes[n->inputs[0]];
    char dlb[64];
    sb_printf(b, "    const int bi = blockIdx.x;\n    {\n");
    sb_printf(b, "        const auto *xr = x + (long long)bi * %lld;\n", (long long)K);
    emit_lse(b, x->dtype, K);
    sb_printf(b, "        const long long t = (long long)labels[bi];\n");
    sb_printf(b, "        const float scale = %s * %s;\n", ld(dlb, sizeof dlb, dl->dtype, "dloss[0]"),
              flit(fl, sizeof fl, 1.0 / (double)B));
    sb_printf(b, "        for (int c = threadIdx.x; c < %lld; c += blockDim.x) {\n", (long long)K);
    sb_printf(b, "            const float target = (c == t ? %s : 0.0f) + %s;\n", flit(fl, sizeof fl, 1 - sm),
              flit(fl2, sizeof fl2, sm / (double)K));
    snprintf(res, sizeof res, "scale * (dc_exp(%s - lse) - target)", a);
    sb_printf(b, "            y[(long long)bi * %lld + c] = %s;\n        }\n    }\n", (long long)K,
              st(sres, sizeof sres, n->dtype, res));
    finish(e, &l, B, row_block(K));
    return 0;
}

/* sum_squares(x0, x1, ...) -> [1]: pass 1 gives each input ceil(numel / SS_TILE) blocks (in
 * input order), each block's sum of squares goes to part[block]; pass 2 adds them in order. */
enum { SS_TILE = 4096 };
static int64_t sum_squares_blocks(const ir_graph *g, const ir_node *n) {
    int64_t nb = 0;
    for (int k = 0; k < n->ninputs; k++) nb += (ir_numel(&g->nodes[n->inputs[k]]) + SS_TILE - 1) / SS_TILE;
    return nb;
}

static int emit_sum_squares(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    int64_t part = e->m->scratch_offset[e->node], nb = sum_squares_blocks(e->g, n), at = 0;
    assert(part >= 0);
    launch l = {0};
    l.tag = "sum_squares_pass1";
    l.fibers = 1;
    sb *b = &l.body;
    char a[64];
    param(&l, "float *", "part", part);
    sb_printf(b, "    const int bi = blockIdx.x;\n    float s = 0.0f;\n");
    for (int k = 0; k < n->ninputs; k++) {
        const ir_node *x = &e->g->nodes[n->inputs[k]];
        char nm[16], ref[32];
        int64_t numel = ir_numel(x), blocks = (numel + SS_TILE - 1) / SS_TILE;
        snprintf(nm, sizeof nm, "x%d", k);
        snprintf(ref, sizeof ref, "x%d[i]", k);
        param(&l, in_type(x->dtype), nm, off_of(e, n->inputs[k]));
        const char *it = idx_type(numel + SS_TILE);
        sb_printf(b, "    %sif (bi < %lld) {\n", k ? "else " : "", (long long)(at + blocks));
        sb_printf(b, "        const %s i0 = (%s)(bi - %lld) * %d, i1 = i0 + %d < %lld ? i0 + %d : %lld;\n", it, it,
                  (long long)at, SS_TILE, SS_TILE, (long long)numel, SS_TILE, (long long)numel);
        sb_printf(b, "        for (%s i = i0 + threadIdx.x; i < i1; i += blockDim.x) {\n", it);
        sb_printf(b, "            const float v = %s;\n            s += v * v;\n        }\n    }\n", ld(a, sizeof a, x->dtype, ref));
        at += blocks;
    }
    sb_printf(b, "    s = dc_block_sum(s);\n    if (threadIdx.x == 0) part[bi] = s;\n");
    finish(e, &l, nb, 256);
    emit_block_total(e, part, nb, 1);
    return 0;
}

/* (sum_squares [1], opt) -> opt with GRAD_SCALE *= min(1, alpha / (sqrt(ss) * |GRAD_SCALE| + 1e-6)) */
static int emit_clip_coef(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    launch l = {0};
    char fl[64];
    l.tag = "clip_coef";
    param(&l, "float *", "y", off_of(e, e->node));
    param(&l, "const float *", "ss", off_of(e, n->inputs[0]));
    param(&l, "const float *", "opt", off_of(e, n->inputs[1]));
    sb *b = &l.body;
    sb_printf(b, "    const int i = threadIdx.x;\n    if (i >= %d) return;\n", IR_OPT_SLOTS);
    sb_printf(b, "    const float gs = opt[%d];\n", IR_OPT_GRAD_SCALE);
    sb_printf(b, "    const float coef = %s / (dc_sqrt(ss[0]) * fabsf(gs) + 1e-6f);\n", flit(fl, sizeof fl, n->attrs.alpha));
    sb_printf(b, "    y[i] = i == %d ? gs * fminf(coef, 1.0f) : opt[i];\n", IR_OPT_GRAD_SCALE);
    finish(e, &l, 1, 32);
    return 0;
}

/* (param, grad, m, v, opt): in place on param, m, v */
static int emit_adamw(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *pn = &e->g->nodes[n->inputs[0]], *gn = &e->g->nodes[n->inputs[1]];
    const ir_node *mn = &e->g->nodes[n->inputs[2]], *vn = &e->g->nodes[n->inputs[3]];
    const ir_attrs *at = &n->attrs;
    int64_t total = ir_numel(pn);
    launch l = {0};
    l.tag = "adamw";
    param(&l, out_type(pn->dtype), "p", off_of(e, n->inputs[0]));
    param(&l, in_type(gn->dtype), "grad", off_of(e, n->inputs[1]));
    param(&l, out_type(mn->dtype), "m", off_of(e, n->inputs[2]));
    param(&l, out_type(vn->dtype), "v", off_of(e, n->inputs[3]));
    param(&l, "const float *", "opt", off_of(e, n->inputs[4]));
    sb *b = &l.body;
    char f1[64], f2[64], f3[64], f4[64], f5[64], lb[128], sb1[128];
    sb_printf(b, "    const float lr = opt[%d], wd = %s, bc1 = opt[%d], sbc2 = dc_sqrt(opt[%d]), gs = opt[%d];\n",
              IR_OPT_LR, at->decay ? "opt[1]" : "0.0f", IR_OPT_BIAS_CORR1, IR_OPT_BIAS_CORR2, IR_OPT_GRAD_SCALE);
    loop_open(&l, total);
    sb_printf(b, "        const float g = %s * gs;\n", ld(lb, sizeof lb, gn->dtype, "grad[i]"));
    sb_printf(b, "        const float mi = %s * %s + %s * g;\n", flit(f1, sizeof f1, at->beta1),
              ld(lb, sizeof lb, mn->dtype, "m[i]"), flit(f2, sizeof f2, 1 - at->beta1));
    sb_printf(b, "        const float vi = %s * %s + %s * g * g;\n", flit(f3, sizeof f3, at->beta2),
              ld(lb, sizeof lb, vn->dtype, "v[i]"), flit(f4, sizeof f4, 1 - at->beta2));
    sb_printf(b, "        m[i] = %s;\n", st(sb1, sizeof sb1, mn->dtype, "mi"));
    sb_printf(b, "        v[i] = %s;\n", st(sb1, sizeof sb1, vn->dtype, "vi"));
    sb_printf(b, "        const float denom = dc_sqrt(vi) / sbc2 + %s;\n", flit(f5, sizeof f5, at->eps));
    char upd[256], sb2[300];
    snprintf(upd, sizeof upd, "%s * (1.0f - lr * wd) - (lr / bc1) * mi / denom", ld(lb, sizeof lb, pn->dtype, "p[i]"));
    sb_printf(b, "        p[i] = %s;\n", st(sb2, sizeof sb2, pn->dtype, upd));
    loop_close(e, &l, total);
    return 0;
}

/* Whether ADAMW node i can join a multi-tensor launch: f32 parameter, gradient and state. */
static int adamw_multi_ok(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    if (n->op != IR_OP_ADAMW) return 0;
    for (int k = 0; k < 4; k++)
        if (g->nodes[n->inputs[k]].dtype != IR_F32) return 0;
    return 1;
}

/* A run of ADAMW nodes (consecutive in the schedule, same opt input): one launch instead of
 * one per tensor. The kernel takes the arena's base and carries a table (one row a tensor):
 * first block, elements, then the parameter's, gradient's, m's and v's offsets in floats, and
 * whether it decays. Block b updates ADAMW_TILE elements of the tensor whose row holds the
 * last first-block <= b (binary search); the arithmetic is emit_adamw's. */
enum { ADAMW_TILE = 2048 };
static void emit_adamw_multi(emitter *e, const int *nodes, int count) {
    const ir_graph *g = e->g;
    const ir_attrs *at = &g->nodes[nodes[0]].attrs;
    launch l = {0};
    l.tag = "adamw_multi";
    param(&l, "float *", "arena", 0);
    param(&l, "const float *", "opt", off_of(e, g->nodes[nodes[0]].inputs[4]));
    sb *b = &l.body;
    char f1[64], f2[64], f3[64], f4[64], f5[64];
    sb_printf(b, "    /* per tensor: first block, elements, offsets (floats) of param, grad, m, v; decay */\n");
    sb_printf(b, "    static const long long tab[%d][7] = {\n", count);
    int64_t blocks = 0;
    for (int q = 0; q < count; q++) {
        const ir_node *n = &g->nodes[nodes[q]];
        int64_t numel = ir_numel(&g->nodes[n->inputs[0]]);
        sb_printf(b, "        {%lld, %lld", (long long)blocks, (long long)numel);
        for (int k = 0; k < 4; k++) {
            int64_t o = off_of(e, n->inputs[k]);
            assert(o % (int64_t)sizeof(float) == 0);
            sb_printf(b, ", %lld", (long long)(o / (int64_t)sizeof(float)));
        }
        sb_printf(b, ", %d}, /* %s */\n", n->attrs.decay ? 1 : 0, g->nodes[n->inputs[0]].name ? g->nodes[n->inputs[0]].name : "");
        blocks += (numel + ADAMW_TILE - 1) / ADAMW_TILE;
    }
    sb_printf(b, "    };\n");
    sb_printf(b, "    int lo = 0, hi = %d;\n", count - 1);
    sb_printf(b, "    while (lo < hi) {\n        const int mid = (lo + hi + 1) / 2;\n");
    sb_printf(b, "        if (tab[mid][0] <= (long long)blockIdx.x) lo = mid;\n        else hi = mid - 1;\n    }\n");
    sb_printf(b, "    const long long *t = tab[lo];\n");
    sb_printf(b, "    float *p = arena + t[2], *m = arena + t[4], *v = arena + t[5];\n");
    sb_printf(b, "    const float *grad = arena + t[3];\n");
    sb_printf(b, "    const float lr = opt[%d], wd = t[6] ? opt[1] : 0.0f, bc1 = opt[%d], sbc2 = dc_sqrt(opt[%d]), gs = opt[%d];\n",
              IR_OPT_LR, IR_OPT_BIAS_CORR1, IR_OPT_BIAS_CORR2, IR_OPT_GRAD_SCALE);
    sb_printf(b, "    const long long i0 = ((long long)blockIdx.x - t[0]) * %d, i1 = i0 + %d < t[1] ? i0 + %d : t[1];\n",
              ADAMW_TILE, ADAMW_TILE, ADAMW_TILE);
    sb_printf(b, "    for (long long i = i0 + threadIdx.x; i < i1; i += blockDim.x) {\n");
    sb_printf(b, "        const float g = grad[i] * gs;\n");
    sb_printf(b, "        const float mi = %s * m[i] + %s * g;\n", flit(f1, sizeof f1, at->beta1), flit(f2, sizeof f2, 1 - at->beta1));
    sb_printf(b, "        const float vi = %s * v[i] + %s * g * g;\n", flit(f3, sizeof f3, at->beta2), flit(f4, sizeof f4, 1 - at->beta2));
    sb_printf(b, "        m[i] = mi;\n        v[i] = vi;\n");
    sb_printf(b, "        const float denom = dc_sqrt(vi) / sbc2 + %s;\n", flit(f5, sizeof f5, at->eps));
    sb_printf(b, "        p[i] = p[i] * (1.0f - lr * wd) - (lr / bc1) * mi / denom;\n    }\n");
    int saved = e->node;
    e->node = nodes[0];
    finish(e, &l, blocks, 256);
    e->node = saved;
    /* name the whole run in the step and the kernel's header: "%A first .. %B last (N adamw)" */
    rt_plan_step *st = &e->p->steps[e->p->nsteps - 1];
    cg_kernel *kn = &e->p->kernels[st->kernel];
    char *last = node_label(g, nodes[count - 1]), buf[1200];
    snprintf(buf, sizeof buf, "%s .. %s (%d adamw nodes)", st->what, last, count);
    free(last);
    free((void *)st->what);
    st->what = xstrdup(buf);
    if (kn->nuses == 1) {
        free(kn->nodes);
        kn->nodes = xstrdup(buf);
    }
}

/* ---- matrix products ------------------------------------------------------------------------ */

static rt_dtype rtd(ir_dtype t) { return (rt_dtype)t; }

static int emit_matmul(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    const ir_node *a = &e->g->nodes[n->inputs[0]], *b = &e->g->nodes[n->inputs[1]];
    int ta = n->attrs.trans_a, tb = n->attrs.trans_b;
    int64_t M = n->shape[n->ndim - 2], N = n->shape[n->ndim - 1];
    int64_t K = a->shape[a->ndim - (ta ? 2 : 1)];
    int64_t batch = ir_numel(n) / (M * N), ab = ir_numel(a) / (M * K), bbt = ir_numel(b) / (K * N);
    size_t es = ir_dtype_size(n->dtype);
    rt_gemm gm;
    memset(&gm, 0, sizeof gm);
    gm.trans_a = ta;
    gm.trans_b = tb;
    gm.m = M;
    gm.n = N;
    gm.k = K;
    gm.batch = batch;
    gm.lda = ta ? M : K;
    gm.ldb = tb ? K : N;
    gm.ldc = N;
    gm.alpha = (float)n->attrs.alpha;
    gm.beta = 0;
    gm.a_type = rtd(a->dtype);
    gm.b_type = rtd(b->dtype);
    gm.c_type = rtd(n->dtype);
    gm.a = (uint64_t)off_of(e, n->inputs[0]);
    gm.b = (uint64_t)off_of(e, n->inputs[1]);
    gm.c = (uint64_t)off_of(e, e->node);
    int simple = (ab == batch || ab == 1) && (bbt == batch || bbt == 1);
    rt_plan_step s;
    memset(&s, 0, sizeof s);
    s.kind = RT_STEP_GEMM;
    if (simple) {
        gm.stride_a = ab == 1 ? 0 : M * K;
        gm.stride_b = bbt == 1 ? 0 : K * N;
        gm.stride_c = M * N;
        if (batch > 1 && bbt == 1 && ab == batch && !ta) { /* [batch*M, K] @ B: one GEMM */
            gm.m = batch * M;
            gm.batch = 1;
            gm.stride_a = gm.stride_b = gm.stride_c = 0;
        }
        if (gm.batch == 1) gm.stride_a = gm.stride_b = gm.stride_c = 0;
        s.gemm = gm;
        s.what = node_label(e->g, e->node);
        add_step(e->p, &s);
        return 0;
    }
    /* partial broadcast over several batch dims: one GEMM per output matrix */
    int nb = n->ndim - 2;
    ir_node av = *a, bv = *b;
    av.ndim -= 2;
    bv.ndim -= 2;
    for (int64_t t = 0; t < batch; t++) {
        int64_t idx[IR_MAX_DIMS], rem = t, oa = 0, ob = 0;
        for (int d = nb - 1; d >= 0; d--) {
            idx[d] = rem % n->shape[d];
            rem /= n->shape[d];
        }
        for (int d = 0; d < av.ndim; d++) oa = oa * av.shape[d] + (av.shape[d] == 1 ? 0 : idx[nb - av.ndim + d]);
        for (int d = 0; d < bv.ndim; d++) ob = ob * bv.shape[d] + (bv.shape[d] == 1 ? 0 : idx[nb - bv.ndim + d]);
        rt_gemm g1 = gm;
        g1.batch = 1;
        g1.a += (uint64_t)(oa * M * K) * es;
        g1.b += (uint64_t)(ob * K * N) * es;
        g1.c += (uint64_t)(t * M * N) * es;
        s.gemm = g1;
        s.what = node_label(e->g, e->node);
        add_step(e->p, &s);
    }
    return 0;
}

/* ---- driver ---------------------------------------------------------------------------------- */

static int emit_node(emitter *e) {
    const ir_node *n = &e->g->nodes[e->node];
    switch (n->op) {
    case IR_OP_ADD: case IR_OP_SUB: case IR_OP_MUL: case IR_OP_DIV: case IR_OP_SCALE:
    case IR_OP_SQRT: case IR_OP_ERF: case IR_OP_GELU: case IR_OP_GELU_GRAD: case IR_OP_CAST:
    case IR_OP_EXPAND: case IR_OP_CONST: case IR_OP_ERF_GRAD:
        return emit_elementwise(e);
    case IR_OP_CLIP_COEF:
        return emit_clip_coef(e);
    case IR_OP_RESHAPE:
        return 0; /* shares its input's buffer */
    case IR_OP_PERMUTE: case IR_OP_SLICE: case IR_OP_PAD: case IR_OP_CONCAT: case IR_OP_PATCHIFY:
    case IR_OP_UNPATCHIFY:
        return emit_gather(e);
    case IR_OP_SUM_TO: case IR_OP_REDUCE_MEAN:
        return emit_reduce(e);
    case IR_OP_MATMUL:
        return emit_matmul(e);
    case IR_OP_LAYER_NORM: case IR_OP_LAYER_NORM_DX:
        return emit_layer_norm(e);
    case IR_OP_LAYER_NORM_DGAMMA:
        return emit_layer_norm_dgamma(e);
    case IR_OP_SOFTMAX: case IR_OP_SOFTMAX_GRAD:
        return emit_softmax(e);
    case IR_OP_CROSS_ENTROPY: case IR_OP_CROSS_ENTROPY_GRAD:
        return emit_cross_entropy(e);
    case IR_OP_SUM_SQUARES:
        return emit_sum_squares(e);
    case IR_OP_ADAMW:
        return emit_adamw(e);
    default:
        snprintf(e->err, e->errsize, "codegen: node %%%d '%s': no kernel for op %s", e->node,
                 n->name ? n->name : "", ir_op_name(n->op));
        return -1;
    }
}

/* Bytes of scratch a node's kernels need while it runs (partial sums of two-pass reductions). */
static int64_t scratch_bytes_of(const ir_graph *g, int i) {
    const ir_node *n = &g->nodes[i];
    const int64_t f = (int64_t)sizeof(float);
    switch (n->op) {
    case IR_OP_SUM_TO: case IR_OP_REDUCE_MEAN: {
        int64_t nout, R;
        reduce_sizes(g, n, &nout, &R);
        const red_plan rp = red_plan_of(nout, R);
        return rp.chunks > 1 ? f * rp.chunks * nout : 0;
    }
    case IR_OP_LAYER_NORM_DGAMMA: {
        const ir_node *x = &g->nodes[n->inputs[1]];
        int64_t C = last_dim(x), rows = ir_numel(x) / C;
        if (C > ROW_WARP_MAX) return 2 * f * rows; /* row statistics */
        const int64_t chunks = dgamma_chunks(rows);
        return chunks > 1 ? f * chunks * C : 0;
    }
    case IR_OP_CROSS_ENTROPY:
        return f * g->nodes[n->inputs[0]].shape[0]; /* the rows' losses */
    case IR_OP_SUM_SQUARES:
        return f * sum_squares_blocks(g, n); /* the blocks' partial sums */
    default:
        return 0;
    }
}

cg_program *cg_program_new(const ir_graph *g, const cg_options *o, char *err, size_t errsize) {
    (void)o;
    cg_program *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->g = g;
    p->beta1 = 0.9;
    p->beta2 = 0.999;
    p->adam_eps = 1e-8;
    p->order = calloc((size_t)g->n + 1, sizeof *p->order);
    int64_t *scratch = calloc((size_t)g->n + 1, sizeof *scratch);
    if (!p->order || !scratch) abort();
    p->norder = pass_schedule(g, p->order);
    for (int s = 0; s < p->norder; s++) {
        const ir_node *n = &g->nodes[p->order[s]];
        scratch[p->order[s]] = scratch_bytes_of(g, p->order[s]);
        if (n->op == IR_OP_ADAMW) {
            p->beta1 = n->attrs.beta1;
            p->beta2 = n->attrs.beta2;
            p->adam_eps = n->attrs.eps;
        }
    }
    p->mem = pass_mem_plan_new(g, p->order, p->norder, scratch);
    free(scratch);
    emitter e = {p, g, p->mem, 0, err, errsize};
    /* CONST leaves are persistent; fill them first each step */
    for (int i = 0; i < g->n; i++) {
        if (g->nodes[i].op != IR_OP_CONST) continue;
        e.node = i;
        if (emit_elementwise(&e)) goto fail;
    }
    int loss = ir_find(g, "loss"), logits = ir_find(g, "logits");
    for (int s = 0; s < p->norder; s++) {
        e.node = p->order[s];
        if (adamw_multi_ok(g, e.node)) { /* a run of ADAMW nodes: one launch */
            int s2 = s + 1, opt = g->nodes[e.node].inputs[4];
            while (s2 < p->norder && adamw_multi_ok(g, p->order[s2]) && g->nodes[p->order[s2]].inputs[4] == opt &&
                   g->nodes[p->order[s2]].attrs.beta1 == g->nodes[e.node].attrs.beta1 &&
                   g->nodes[p->order[s2]].attrs.beta2 == g->nodes[e.node].attrs.beta2 &&
                   g->nodes[p->order[s2]].attrs.eps == g->nodes[e.node].attrs.eps)
                s2++;
            if (s2 - s > 1) {
                emit_adamw_multi(&e, &p->order[s], s2 - s);
                s = s2 - 1;
                continue;
            }
        }
        if (emit_node(&e)) goto fail;
        if (e.node == loss || e.node == logits) p->neval_steps = p->nsteps; /* the later of the two */
    }
    /* the kernels' full text: header comment + definition */
    for (int k = 0; k < p->nkernels; k++) {
        cg_kernel *kn = &p->kernels[k];
        sb t = {0};
        sb_printf(&t, "/* %s: %s\n * computes %s%s", kn->name, kn->desc, kn->nodes, kn->nuses > 6 ? ", ..." : "");
        sb_printf(&t, " (%d launch%s) */\n", kn->nuses, kn->nuses == 1 ? "" : "es");
        sb_printf(&t, "DC_KERNEL %s%s", kn->name, kn->body);
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
    free(p->order);
    pass_mem_plan_free(p->mem);
    free(p);
}
