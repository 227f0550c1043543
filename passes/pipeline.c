/* pipeline.c: the readable list of what runs in what order. Each stage is a plain function
 * over the pipeline's result; the verifier runs after every one (ir_verify on the graph, and
 * the schedule's and memory plan's own checks once they exist), so a stage that breaks an
 * invariant is caught where it happened.
 *
 *   check           the frontend's graph satisfies every shape rule
 *   forward-fusion  fusions with their own derivative rule (fusion.c: qkv-attention, layer-norm-stats;
 *                   fusion_rows.c: select-token-layer-norm)
 *   training        loss + autodiff + AdamW: one graph for the whole step (training.c)
 *   precision       fp32 as built; tf32 marks the matmuls; fp16/bf16: the casting pass (precision.c)
 *   fusion          fusions of the finished step (fusion_gemm.c: gelu-epilogue; fusion_grad.c:
 *                   bias-grad, bias-gelu-grad;
 *                   fusion.c: adamw-group, bias-gelu, elementwise-chain; fusion_rows.c:
 *                   residual-layer-norm, layer-norm-dbeta, residual-layer-norm-grad,
 *                   softmax-cross-entropy)
 *   schedule        the order the step's nodes run in (schedule.c)
 *   memplan         every value's place in one device arena (memplan.c)
 *
 * Codegen reads the result (graph, schedule, memory plan) and decides nothing of this itself.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*stage_fn)(pass_result *r, const pass_options *o, char *err, size_t errsize);

/* replaces r's graph by `g` (the stage's new graph), or fails when it is NULL */
static int replace_graph(pass_result *r, ir_graph *g) {
    if (!g) return -1;
    ir_graph_free(r->g);
    r->g = g;
    return 0;
}

static unsigned fuse_bits(const pass_options *o) {
    unsigned bits = 0;
    char err[256];
    if (pass_fuse_parse(o->fuse, &bits, err, sizeof err)) abort(); /* checked up front */
    return bits;
}

static int stage_check(pass_result *r, const pass_options *o, char *err, size_t errsize) {
    (void)r, (void)o, (void)err, (void)errsize;
    return 0; /* the verifier after this stage is the check */
}

static int stage_forward_fusion(pass_result *r, const pass_options *o, char *err, size_t errsize) {
    if (fuse_bits(o) & PASS_FUSE_QKV_ATTENTION) {
        r->fusions |= PASS_FUSE_QKV_ATTENTION;
        if (replace_graph(r, pass_fuse_qkv_attention(r->g, NULL, err, errsize))) return -1;
    }
    if (fuse_bits(o) & PASS_FUSE_SELECT_TOKEN_LAYER_NORM) { /* before layer-norm-stats: plain LayerNorms */
        int count;
        r->fusions |= PASS_FUSE_SELECT_TOKEN_LAYER_NORM;
        if (replace_graph(r, pass_fuse_select_token_layer_norm(r->g, &count, err, errsize))) return -1;
    }
    if (!(fuse_bits(o) & PASS_FUSE_LAYER_NORM_STATS)) return 0;
    r->fusions |= PASS_FUSE_LAYER_NORM_STATS;
    return replace_graph(r, pass_fuse_layer_norm_stats(r->g, err, errsize));
}

static int stage_training(pass_result *r, const pass_options *o, char *err, size_t errsize) {
    if (!o->training) return 0;
    return replace_graph(r, pass_training(r->g, &o->train, err, errsize));
}

static int stage_precision(pass_result *r, const pass_options *o, char *err, size_t errsize) {
    static const char *const names[] = {"fp32", "tf32", "fp16", "bf16"};
    r->precision = o->precision ? names[pass_precision_parse(o->precision, err, errsize)] : "fp32"; /* checked */
    ir_graph *g = pass_precision(r->g, o->precision, err, errsize);
    return g == r->g ? 0 : replace_graph(r, g);
}

static int stage_fusion(pass_result *r, const pass_options *o, char *err, size_t errsize) {
    if (fuse_bits(o) & PASS_FUSE_GELU_EPILOGUE) { /* first: it makes a new graph, and takes the tanh
                                                    MLPs before bias-gelu and bias-gelu-grad */
        int count;
        r->fusions |= PASS_FUSE_GELU_EPILOGUE;
        if (replace_graph(r, pass_fuse_gelu_epilogue(r->g, &count, err, errsize))) return -1;
    }
    if (fuse_bits(o) & PASS_FUSE_BIAS_GRAD) { /* a new graph too */
        int count;
        r->fusions |= PASS_FUSE_BIAS_GRAD;
        if (replace_graph(r, pass_fuse_bias_grad(r->g, &count, err, errsize))) return -1;
    }
    if (fuse_bits(o) & PASS_FUSE_SOFTMAX_CROSS_ENTROPY) { /* a new graph too */
        int count;
        r->fusions |= PASS_FUSE_SOFTMAX_CROSS_ENTROPY;
        if (replace_graph(r, pass_fuse_softmax_cross_entropy(r->g, &count, err, errsize))) return -1;
    }
    if (fuse_bits(o) & PASS_FUSE_BIAS_GELU_GRAD) { /* before elementwise-chain takes GELU_GRAD */
        r->fusions |= PASS_FUSE_BIAS_GELU_GRAD;
        pass_fuse_bias_gelu_grad(r->g);
    }
    if (fuse_bits(o) & PASS_FUSE_ADAMW_GROUP) {
        r->fusions |= PASS_FUSE_ADAMW_GROUP;
        pass_fuse_adamw_group(r->g);
    }
    if (fuse_bits(o) & PASS_FUSE_BIAS_GELU) {
        r->fusions |= PASS_FUSE_BIAS_GELU;
        pass_fuse_bias_gelu(r->g);
    }
    if (fuse_bits(o) & PASS_FUSE_ELEMENTWISE_CHAIN) {
        r->fusions |= PASS_FUSE_ELEMENTWISE_CHAIN;
        pass_fuse_elementwise_chain(r->g);
    }
    if (fuse_bits(o) & PASS_FUSE_RESIDUAL_LAYER_NORM) { /* after elementwise-chain: joins its chains */
        r->fusions |= PASS_FUSE_RESIDUAL_LAYER_NORM;
        pass_fuse_residual_layer_norm(r->g);
    }
    if (fuse_bits(o) & PASS_FUSE_LAYER_NORM_DBETA) {
        r->fusions |= PASS_FUSE_LAYER_NORM_DBETA;
        pass_fuse_layer_norm_dbeta(r->g);
    }
    if (fuse_bits(o) & PASS_FUSE_RESIDUAL_LAYER_NORM_GRAD) { /* after bias-grad: takes its chains */
        r->fusions |= PASS_FUSE_RESIDUAL_LAYER_NORM_GRAD;
        pass_fuse_residual_layer_norm_grad(r->g);
    }
    return 0;
}

static int stage_schedule(pass_result *r, const pass_options *o, char *err, size_t errsize) {
    (void)o, (void)err, (void)errsize;
    r->order = calloc((size_t)r->g->n + 1, sizeof *r->order);
    if (!r->order) abort();
    r->norder = pass_schedule(r->g, r->order);
    return 0;
}

static int stage_memplan(pass_result *r, const pass_options *o, char *err, size_t errsize) {
    (void)err, (void)errsize;
    r->scratch = calloc((size_t)r->g->n + 1, sizeof *r->scratch);
    if (!r->scratch) abort();
    for (int s = 0; o->scratch_bytes && s < r->norder; s++)
        r->scratch[r->order[s]] = o->scratch_bytes(r->g, r->order[s]);
    r->mem = pass_mem_plan_new(r->g, r->order, r->norder, r->scratch);
    return 0;
}

/* ORDER: pass_names below */
static const struct {
    const char *name;
    stage_fn run;
} stages[] = {
    {"check", stage_check},
    {"forward-fusion", stage_forward_fusion},
    {"training", stage_training},
    {"precision", stage_precision},
    {"fusion", stage_fusion},
    {"schedule", stage_schedule},
    {"memplan", stage_memplan},
};
enum { NSTAGES = sizeof stages / sizeof stages[0] };

const char *const pass_names[] = {"check", "forward-fusion", "training", "precision", "fusion",
                                  "schedule", "memplan", NULL};
_Static_assert(sizeof pass_names / sizeof pass_names[0] == NSTAGES + 1, "a name for every stage");

void pass_options_default(pass_options *o) {
    memset(o, 0, sizeof *o);
    o->training = 1;
    pass_train_options_default(&o->train);
}

int pass_options_check(const pass_options *o, char *err, size_t errsize) {
    unsigned bits;
    if (pass_fuse_parse(o->fuse, &bits, err, errsize)) return -1;
    return o->precision && pass_precision_parse(o->precision, err, errsize) < 0 ? -1 : 0;
}

/* The verifier after stage s: the graph, and the schedule and plan once they exist. */
static int verify(pass_result *r, int s, char *err, size_t errsize) {
    char why[512];
    if (ir_verify(r->g)) {
        if (s == 0) snprintf(err, errsize, "%s", r->g->error);
        else snprintf(err, errsize, "internal error after the %s stage: %s", stages[s].name, r->g->error);
        return -1;
    }
    if ((r->order && pass_schedule_check(r->g, r->order, r->norder, why, sizeof why)) ||
        (r->mem && pass_mem_plan_check(r->g, r->mem, r->scratch, why, sizeof why))) {
        snprintf(err, errsize, "internal error after the %s stage: %s", stages[s].name, why);
        return -1;
    }
    return 0;
}

pass_result *pass_pipeline_run(ir_graph *g, const pass_options *o, const char *stop_after,
                               char *err, size_t errsize) {
    int stop = NSTAGES - 1;
    if (stop_after) {
        for (stop = 0; stop < NSTAGES && strcmp(stages[stop].name, stop_after) != 0; stop++) {}
        if (stop == NSTAGES) {
            char list[256] = "";
            for (int i = 0; i < NSTAGES; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", stages[i].name);
            snprintf(err, errsize, "unknown pass '%s' (passes: %s)", stop_after, list);
            ir_graph_free(g);
            return NULL;
        }
    }
    if (pass_options_check(o, err, errsize)) {
        ir_graph_free(g);
        return NULL;
    }
    pass_result *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->g = g;
    r->precision = "fp32";
    for (int s = 0; s <= stop; s++) {
        r->last_stage = stages[s].name;
        if (stages[s].run(r, o, err, errsize) || verify(r, s, err, errsize)) {
            pass_result_free(r);
            return NULL;
        }
    }
    return r;
}

void pass_result_free(pass_result *r) {
    if (!r) return;
    ir_graph_free(r->g);
    free(r->order);
    free(r->scratch);
    pass_mem_plan_free(r->mem);
    free(r);
}

ir_graph *pass_result_take_graph(pass_result *r) {
    if (!r) return NULL;
    ir_graph *g = r->g;
    r->g = NULL;
    pass_result_free(r);
    return g;
}

void pass_result_print(const pass_result *r, FILE *out) {
    char names[256];
    ir_print(r->g, out);
    fprintf(out, "# after %s: precision %s, fusions %s\n", r->last_stage, r->precision,
            pass_fuse_names(r->fusions, names, sizeof names));
    if (r->order) {
        fprintf(out, "# schedule: %d steps\n", r->norder);
        for (int s = 0; s < r->norder; s++) {
            const ir_node *n = &r->g->nodes[r->order[s]];
            fprintf(out, "#   %4d: %%%d %s%s%s", s, r->order[s], ir_op_name(n->op), n->name ? " " : "",
                    n->name ? n->name : "");
            if (n->group) fprintf(out, " group=%d", n->group);
            fputc('\n', out);
        }
    }
    if (r->mem) {
        const pass_mem_plan *m = r->mem;
        fprintf(out, "# memory plan: arena %lld bytes (persistent %lld, peak %lld)\n",
                (long long)m->arena_bytes, (long long)m->persistent_bytes, (long long)m->peak_bytes);
        for (int i = 0; i < r->g->n; i++) {
            if (m->offset[i] < 0) continue;
            fprintf(out, "#   %%%d at %lld, %lld bytes", i, (long long)m->offset[i],
                    (long long)pass_mem_bytes(&r->g->nodes[i]));
            if (m->alias_of[i] != i) fprintf(out, " (view of %%%d)", m->alias_of[i]);
            else if (m->persistent[i]) fprintf(out, " persistent");
            else fprintf(out, " live steps %d..%d", m->pos[i], m->last[i]);
            if (m->scratch_offset[i] >= 0)
                fprintf(out, "; scratch at %lld, %lld bytes", (long long)m->scratch_offset[i],
                        (long long)r->scratch[i]);
            fputc('\n', out);
        }
    }
}
