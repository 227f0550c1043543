/* drop_path.c: stochastic depth (timm's DropPath) as a training-graph option, built when
 * pass_train_options.drop_path is set: every residual add of the model (YAML models name them
 * "<block>.residual": ADD(x, branch)) becomes ADD(x, branch * s), where s [B,1,..] is the
 * residual's slice of one INPUT "drop_path" f32 [R*B] (R residuals, B samples) the host fills
 * each step (runtime/drop_path.c): 0 for a dropped sample, 1/keep_prob for a kept one (timm's
 * x * bernoulli(keep).div_(keep)), 1 everywhere in eval or with the rate 0. The derivative is
 * MUL's: the branch's gradient is the upstream one times the same s.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_residual(const ir_node *n) {
    size_t k = n->name ? strlen(n->name) : 0;
    return n->op == IR_OP_ADD && k >= 9 && strcmp(n->name + k - 9, ".residual") == 0 && n->ndim >= 1;
}

int pass_drop_path_count(const ir_graph *f) {
    int r = 0;
    for (int i = 0; i < f->n; i++) r += is_residual(&f->nodes[i]);
    return r;
}

ir_graph *pass_drop_path_forward(const ir_graph *f, char *err, size_t errsize) {
    int R = pass_drop_path_count(f);
    if (R == 0) {
        snprintf(err, errsize, "drop path: the model has no residual adds (nodes named '<block>.residual')");
        return NULL;
    }
    if (ir_find(f, "drop_path") >= 0) {
        snprintf(err, errsize, "drop path: the model already has a node named 'drop_path'");
        return NULL;
    }
    ir_graph *g = ir_graph_new();
    g->info = f->info;
    if (f->info.model_name) g->info.model_name = ir_arena_strdup(&g->arena, f->info.model_name);
    if (f->info.note) g->info.note = ir_arena_strdup(&g->arena, f->info.note);
    int *map = calloc((size_t)f->n, sizeof(int));
    if (!map) abort();
    int ok = 1, dp = -1, k = 0;
    int64_t B = -1;
    for (int i = 0; i < f->n && ok; i++) {
        const ir_node *n = &f->nodes[i];
        if (!is_residual(n)) {
            map[i] = ir_copy_node(g, f, i, map);
            ok = map[i] >= 0;
            continue;
        }
        if (dp < 0) {
            B = n->shape[0];
            int64_t len[1] = {(int64_t)R * B};
            dp = ir_leaf(g, IR_OP_INPUT, IR_F32, 1, len, "drop_path", n->loc);
        }
        if (n->shape[0] != B) {
            snprintf(g->error, sizeof g->error, "residual '%s' has batch %lld, not %lld", n->name,
                     (long long)n->shape[0], (long long)B);
            ok = 0;
            break;
        }
        ir_attrs a = {0};
        a.start = k * B;
        a.end = (k + 1) * B;
        int64_t sh[IR_MAX_DIMS];
        sh[0] = B;
        for (int d = 1; d < n->ndim; d++) sh[d] = 1;
        const char *nm = ir_arena_printf(&g->arena, "%s.drop_path", n->name);
        int s = dp < 0 ? -1 : ir_unary(g, IR_OP_SLICE, dp, &a, nm, n->loc);
        int sr = s < 0 ? -1 : ir_reshape(g, s, n->ndim, sh, nm, n->loc);
        int branch = n->inputs[1], keep = map[branch];
        int m = sr < 0 ? -1 : ir_binary(g, IR_OP_MUL, keep, sr, NULL, nm, n->loc);
        if (m < 0) {
            ok = 0;
            break;
        }
        map[branch] = m; /* the add reads the scaled branch */
        map[i] = ir_copy_node(g, f, i, map);
        map[branch] = keep;
        ok = map[i] >= 0;
        k++;
    }
    free(map);
    if (!ok) {
        snprintf(err, errsize, "drop path: %s", g->error);
        ir_graph_free(g);
        return NULL;
    }
    return g;
}
