/* emit_gemm.c: matmul lowered to rt_gemm steps (cuBLASLt on cuda, the CPU GEMM on emu):
 * row-major, batch dims flattened into M when the right operand is shared, else one strided
 * batched GEMM, or one GEMM per output matrix under a partial broadcast. */
#include "codegen/emit_internal.h"

/* ---- matrix products ------------------------------------------------------------------------ */

static rt_dtype rtd(ir_dtype t) { return (rt_dtype)t; }

/* GEMM steps of MATMUL node e->node; epi (may be NULL) sets an epilogue on a single product and
 * returns 0, or -1 when the product is not single (then nothing is added) */
static int emit_gemm(emitter *e, int (*epi)(emitter *e, rt_gemm *gm, void *ctx), void *ctx) {
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
    /* leading dimensions: the stored rows' pitch (the memory plan pads 16-bit attention rows) */
    const int64_t *pitch = e->m->pitch;
    gm.lda = pitch ? pitch[n->inputs[0]] : ta ? M : K;
    gm.ldb = pitch ? pitch[n->inputs[1]] : tb ? K : N;
    gm.ldc = pitch ? pitch[e->node] : N;
    assert(gm.lda >= (ta ? M : K) && gm.ldb >= (tb ? K : N) && gm.ldc >= N);
    int64_t mat_a = (ta ? K : M) * gm.lda, mat_b = (tb ? N : K) * gm.ldb, mat_c = M * gm.ldc; /* per matrix */
    gm.alpha = (float)n->attrs.alpha;
    gm.beta = 0;
    gm.a_type = rtd(a->dtype);
    gm.b_type = rtd(b->dtype);
    gm.c_type = rtd(n->dtype);
    gm.compute = (rt_compute)n->attrs.compute;
    gm.a = (uint64_t)off_of(e, n->inputs[0]);
    gm.b = (uint64_t)off_of(e, n->inputs[1]);
    gm.c = (uint64_t)off_of(e, e->node);
    int simple = (ab == batch || ab == 1) && (bbt == batch || bbt == 1);
    rt_plan_step s;
    memset(&s, 0, sizeof s);
    s.kind = RT_STEP_GEMM;
    if (simple) {
        gm.stride_a = ab == 1 ? 0 : mat_a;
        gm.stride_b = bbt == 1 ? 0 : mat_b;
        gm.stride_c = mat_c;
        if (batch > 1 && bbt == 1 && ab == batch && !ta) { /* [batch*M, K] @ B: one GEMM */
            gm.m = batch * M;
            gm.batch = 1;
            gm.stride_a = gm.stride_b = gm.stride_c = 0;
        }
        if (gm.batch == 1) gm.stride_a = gm.stride_b = gm.stride_c = 0;
        if (epi && (gm.batch != 1 || epi(e, &gm, ctx))) return -1;
        s.gemm = gm;
        s.what = cg_node_label(e->g, e->node);
        cg_add_step(e->p, &s);
        return 0;
    }
    /* partial broadcast over several batch dims: one GEMM per output matrix */
    if (epi) return -1;
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
        g1.a += (uint64_t)(oa * mat_a) * ir_dtype_size(a->dtype);
        g1.b += (uint64_t)(ob * mat_b) * ir_dtype_size(b->dtype);
        g1.c += (uint64_t)(t * mat_c) * es;
        s.gemm = g1;
        s.what = cg_node_label(e->g, e->node);
        cg_add_step(e->p, &s);
    }
    return 0;
}

int cg_emit_matmul(emitter *e) { return emit_gemm(e, NULL, NULL); }

/* ---- GEMM epilogues (gelu-epilogue: a chain that starts with the MATMUL) ------------------- */

typedef struct {
    const int *nodes; /* the chain: MATMUL, then ADD + GELU or GELU_GRAD + SUM_TO */
} epi_chain;

static int set_epilogue(emitter *e, rt_gemm *gm, void *ctx) {
    const int *nodes = ((const epi_chain *)ctx)->nodes;
    const ir_graph *g = e->g;
    const ir_node *a = &g->nodes[nodes[1]], *b = &g->nodes[nodes[2]];
    if (a->op == IR_OP_ADD) { /* y = gelu(h), h = mm + bias: y in C, h in aux */
        gm->epilogue = RT_EPILOGUE_GELU_AUX_BIAS;
        gm->c = (uint64_t)off_of(e, nodes[2]);
        gm->bias = (uint64_t)off_of(e, a->inputs[1]);
        gm->aux = (uint64_t)off_of(e, nodes[1]);
    } else { /* dh = g * gelu'(h): dh in C, h from aux, db = column sums of dh */
        gm->epilogue = RT_EPILOGUE_DGELU_BGRAD;
        gm->c = (uint64_t)off_of(e, nodes[1]);
        gm->aux = (uint64_t)off_of(e, a->inputs[1]);
        gm->bias = (uint64_t)off_of(e, nodes[2]);
    }
    (void)b;
    gm->ldaux = gm->n;
    return gm->ldc == gm->n ? 0 : -1;
}

int cg_emit_gemm_epilogue(emitter *e, const int *nodes, int count) {
    epi_chain ctx = {nodes};
    int saved = e->node;
    e->node = nodes[0];
    int rc = count == 3 ? emit_gemm(e, set_epilogue, &ctx) : -1;
    e->node = saved;
    if (rc) {
        snprintf(e->err, e->errsize, "codegen: GEMM epilogue chain at %%%d is not a single product", nodes[0]);
        return -1;
    }
    rt_plan_step *step = &e->p->steps[e->p->nsteps - 1]; /* it names every member */
    sb what = {0};
    cg_sb_printf(&what, "%s", step->what);
    for (int m = 1; m < count; m++) {
        char *label = cg_node_label(e->g, nodes[m]);
        cg_sb_printf(&what, ", %s", label);
        free(label);
    }
    free((void *)step->what);
    step->what = what.s;
    return 0;
}
