/* test_interp_values.c: the interpreter's storage and threads change no bit of any result.
 *
 * A small DeiT (models/deit_tiny.yaml at micro sizes, batch 3, label smoothing and gradient
 * clipping on, LayerNorm statistics fused) trains 3 steps, in f32 and in f64, four ways:
 * every value kept on 1 thread (the plain reference), and with ir_interp_release_dead (values
 * pooled and freed after their last reader) on 1, 2 and 5 threads, every op cut into ranges of
 * 7 items (rows or elements) and every product threaded, however small, and on 2 threads in
 * ranges of 1 item (so the fused attention's 6 heads spread too). Each way must give the same
 * bits for the losses, every gradient output of every step and every weight and optimizer state
 * after the steps. A forward graph (logits only) checks the same for inference.
 */
#include "frontend/frontend.h"
#include "ir/interp_par.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/plan.h"
#include "runtime/rt.h"
#include "tests/harness.h"

#include <string.h>

enum { STEPS = 3 };

/* Everything a run reports: losses, then each output and leaf after each step, as doubles. */
typedef struct {
    double *v;
    size_t n, cap;
} record;

static void put(record *r, const double *v, int64_t n) {
    if (r->n + (size_t)n > r->cap) {
        r->cap = (r->n + (size_t)n) * 2;
        r->v = realloc(r->v, sizeof(double) * r->cap);
        if (!r->v) abort();
    }
    memcpy(r->v + r->n, v, sizeof(double) * (size_t)n);
    r->n += (size_t)n;
}

static ir_graph *build(int training) {
    char path[1024], err[1024];
    static const fe_define defs[] = {{"img_size", "32"}, {"patch_size", "8"}, {"num_classes", "10"},
                                     {"embed_dim", "64"}, {"depth", "2"}, {"num_heads", "2"}};
    snprintf(path, sizeof path, "%s/models/deit_tiny.yaml", test_env("DEITC_SOURCE_DIR"));
    ir_graph *g = NULL;
    CHECK_MSG(fe_load_model(path, defs, 6, 3, &g, err, sizeof err) == 0, "%s", err);
    if (!g) return NULL;
    pass_options po;
    pass_options_default(&po);
    po.training = training;
    po.train.label_smoothing = 0.1;
    po.train.clip_grad_norm = 0.5;
    po.fuse = "all,layer-norm-stats";
    g = pass_result_take_graph(pass_pipeline_run(g, &po, NULL, err, sizeof err));
    CHECK_MSG(g != NULL, "%s", err);
    return g;
}

/* Runs g for `steps` (forward: 1) the given way, recording into r. */
static void run_way(const ir_graph *g, int f64, int release, int threads, int steps, record *r) {
    ir_gemm_f64_set_threads(threads);
    ir_interp *it = ir_interp_new(g, f64);
    CHECK(it != NULL);
    if (!it) return;
    if (release) ir_interp_release_dead(it);
    int opt = ir_find(g, "opt"), loss = ir_find(g, "loss");
    uint64_t seed = 7;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        int64_t k = ir_numel(n);
        if (n->op == IR_OP_WEIGHT || (n->op == IR_OP_INPUT && i != opt && n->dtype != IR_I64)) {
            float *v = malloc(sizeof(float) * (size_t)(k ? k : 1));
            rt_init_fill(RT_INIT_TRUNC_NORMAL, n->op == IR_OP_WEIGHT ? 0.3 : 1.0, seed, n->name, v, k);
            ir_interp_set_f32(it, i, v);
            free(v);
        } else if (n->op == IR_OP_INPUT && n->dtype == IR_I64) {
            int64_t labels[3] = {3, 9, 0};
            ir_interp_set_i64(it, i, labels);
        }
    }
    for (int step = 1; step <= steps; step++) {
        if (opt >= 0) {
            double slots[IR_OPT_SLOTS];
            const rt_opt_run run = {0.05, 0.9, 0.999, 1e-8, 0, 0, 0};
            rt_opt_fill(slots, 1e-2, &run, step);
            ir_interp_set_f64(it, opt, slots);
        }
        CHECK_MSG(ir_interp_run(it) == 0, "%s", ir_interp_error(it));
        if (loss >= 0) {
            double l;
            ir_interp_get_f64(it, loss, &l);
            put(r, &l, 1);
        }
        for (int i = 0; i < g->n; i++) {
            const ir_node *n = &g->nodes[i];
            if (!(n->flags & IR_NODE_OUTPUT) && !(ir_op_flags(n->op) & IR_OPF_LEAF)) continue;
            double *v = malloc(sizeof(double) * (size_t)(ir_numel(n) + 1));
            ir_interp_get_f64(it, i, v);
            put(r, v, ir_numel(n));
            free(v);
        }
    }
    ir_interp_free(it);
}

static int count_op(const ir_graph *g, ir_op op) {
    int k = 0;
    for (int i = 0; i < g->n; i++) k += g->nodes[i].op == op;
    return k;
}

static void check_ways(const ir_graph *g, int f64, int steps, const char *what) {
    /* the last way spreads the fused attention's heads: the graph must have it (and its
     * derivative when training) */
    CHECK_MSG(count_op(g, IR_OP_ATTENTION) > 0, "%s: no fused attention in the graph", what);
    CHECK_MSG(steps == 1 || count_op(g, IR_OP_ATTENTION_BWD) > 0, "%s: no fused attention backward", what);
    record plain = {0};
    run_way(g, f64, 0, 1, steps, &plain);
    CHECK_MSG(plain.n > 0, "%s: nothing recorded", what);
    static const int threads[] = {1, 2, 5, 2}, grains[] = {7, 7, 7, 1};
    for (int t = 0; t < 4; t++) {
        record got = {0};
        ir_par_force_grain(grains[t]);
        run_way(g, f64, 1, threads[t], steps, &got);
        ir_par_force_grain(0);
        CHECK_MSG(got.n == plain.n && memcmp(got.v, plain.v, sizeof(double) * plain.n) == 0,
                  "%s%s: pooled values on %d threads (ranges of %d) differ from the plain run", what,
                  f64 ? " f64" : "", threads[t], grains[t]);
        free(got.v);
    }
    free(plain.v);
}

int main(void) {
    ir_graph *train = build(1), *fwd = build(0);
    if (train) {
        check_ways(train, 0, STEPS, "training");
        check_ways(train, 1, STEPS, "training");
    }
    if (fwd) check_ways(fwd, 0, 1, "forward");
    ir_graph_free(train);
    ir_graph_free(fwd);
    return test_result();
}
