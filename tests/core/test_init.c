/* test_init.c: weights that no file gives start as timm's DeiT does: LayerNorm scales at one,
 * biases at zero, projections, tokens and position embeddings from a normal(0, 0.02)
 * truncated at 2 std; the values are deterministic in (seed, name) and differ between names. */
#include <string.h>

#include "frontend/frontend.h"
#include "runtime/rt.h"
#include "tests/harness.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int main(void) {
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/models/deit_tiny.yaml", test_env("DEITC_SOURCE_DIR"));
    ir_graph *g = NULL;
    CHECK_MSG(fe_load_model(path, NULL, 0, 1, &g, err, sizeof err) == 0, "%s", err);
    if (!g) return test_result();
    int weights = 0, normals = 0;
    for (int i = 0; i < g->n; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->op != IR_OP_WEIGHT) continue;
        weights++;
        int is_norm_scale = strstr(n->name, "norm") && ends_with(n->name, ".weight");
        if (is_norm_scale) CHECK_MSG(n->attrs.init == IR_INIT_ONES, "%s", n->name);
        else if (ends_with(n->name, ".bias")) CHECK_MSG(n->attrs.init == IR_INIT_ZEROS, "%s", n->name);
        else {
            CHECK_MSG(n->attrs.init == IR_INIT_TRUNC_NORMAL && n->attrs.init_std == 0.02, "%s", n->name);
            normals++;
        }
    }
    CHECK_MSG(weights == 152 && normals == 52, "%d weights, %d normal", weights, normals);

    /* the truncated normal: mean 0, std 0.02 * 0.8796 (truncation at 2 std), |w| <= 0.04 */
    int64_t k = 192 * 576;
    float *a = malloc(sizeof(float) * (size_t)k), *b = malloc(sizeof(float) * (size_t)k);
    rt_init_fill(RT_INIT_TRUNC_NORMAL, 0.02, 0, "blocks.0.attn.qkv.weight", a, k);
    double s = 0, ss = 0, mx = 0;
    for (int64_t i = 0; i < k; i++) {
        s += a[i];
        ss += (double)a[i] * a[i];
        mx = fabs(a[i]) > mx ? fabs(a[i]) : mx;
    }
    double mean = s / (double)k, sd = sqrt(ss / (double)k - mean * mean);
    CHECK_MSG(fabs(mean) < 2e-4 && fabs(sd - 0.02 * 0.8796) < 3e-4 && mx <= 0.04, "mean %g sd %g max %g",
              mean, sd, mx);
    rt_init_fill(RT_INIT_TRUNC_NORMAL, 0.02, 0, "blocks.0.attn.qkv.weight", b, k);
    CHECK(memcmp(a, b, sizeof(float) * (size_t)k) == 0);
    rt_init_fill(RT_INIT_TRUNC_NORMAL, 0.02, 0, "blocks.1.attn.qkv.weight", b, k);
    CHECK(memcmp(a, b, sizeof(float) * (size_t)k) != 0);
    free(a);
    free(b);
    ir_graph_free(g);
    return test_result();
}
