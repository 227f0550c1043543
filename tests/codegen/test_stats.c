/* test_stats.c: the step statistics and cost model (codegen/stats.c, cost_model.c) on a plan
 * small enough to count by hand, and the GEMM peak chosen from the operand types and the
 * precision.
 *
 * The plan: x [512,2048] and w [2048,1024] (f32 weights), y = x @ w [512,1024], z = gelu(y)
 * (an output), forward only (batch 512 for images/s). By hand:
 *   GEMM   1 call, FLOPs 2*512*1024*2048 = 2147483648,
 *          bytes (512*2048 + 2048*1024 + 512*1024) * 4 = 14680064
 *   GELU   1 launch, 524288 elements: bytes 2 * 524288 * 4 = 4194304 (read y, write z),
 *          FLOPs 15 per element (stats.c's count) = 7864320
 *   step   2 launches, 1 GEMM call, 1 distinct kernel, FLOPs 2155347968, bytes 18874368
 * H100 (fp32 66.9e12 FLOP/s, 3.35e12 B/s, 1.5e-6 s a launch):
 *   GEMM   max(2147483648/66.9e12 = 3.20999e-5, 14680064/3.35e12 = 4.3821e-6) + 1.5e-6
 *   GELU   max(7864320/66.9e12 = 1.1755e-7, 4194304/3.35e12 = 1.25203e-6) + 1.5e-6
 *   step   3.63519e-5 s; images/s 512 / that = 14084532; MFU 3.20999e-5 / 3.63519e-5 = 88.3%
 * The same plan at tf32 (494.7e12): the GEMM becomes memory-bound, 4.3821e-6 + 1.5e-6; step
 * 8.63414e-6 s. A100 fp32 (19.5e12, 2.039e12): GEMM 1.101274e-4 + 1.5e-6, GELU
 * 4194304/2.039e12 = 2.05704e-6 + 1.5e-6. */
#include "codegen/codegen.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/harness.h"

#include <string.h>

static const ir_loc NOLOC = {0};

static int near(double a, double b) { return fabs(a - b) <= 1e-9 * fabs(b); }

static pass_result *small_plan(void) {
    ir_graph *g = ir_graph_new();
    g->info.batch = 512;
    int64_t xs[2] = {512, 2048}, ws[2] = {2048, 1024};
    int x = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 2, xs, "x", NOLOC);
    int w = ir_leaf(g, IR_OP_WEIGHT, IR_F32, 2, ws, "w", NOLOC);
    ir_attrs a = {0};
    a.alpha = 1;
    int y = ir_binary(g, IR_OP_MATMUL, x, w, &a, "y", NOLOC);
    ir_attrs none = {0};
    int z = ir_unary(g, IR_OP_GELU, y, &none, "z", NOLOC);
    CHECK_MSG(z >= 0, "%s", g->error);
    g->nodes[z].flags |= IR_NODE_OUTPUT;
    pass_options o;
    pass_options_default(&o);
    o.training = 0;
    o.scratch_bytes = cg_scratch_bytes;
    char err[1024];
    pass_result *r = pass_pipeline_run(g, &o, NULL, err, sizeof err);
    CHECK_MSG(r != NULL, "%s", err);
    return r;
}

static void test_small_plan(void) {
    pass_result *r = small_plan();
    if (!r) return;
    cg_options co;
    cg_options_default(&co);
    char err[1024];
    cg_program *p = cg_program_new(r, &co, err, sizeof err);
    CHECK_MSG(p != NULL, "%s", err);
    if (!p) return;
    cg_stats s;
    cg_stats_of(p, &s);
    CHECK(s.distinct_kernels == 1 && s.launches == 2 && s.gemm_calls == 1 && s.nitems == 2);
    CHECK(s.gemm_flops == 2147483648ll && s.other_flops == 7864320ll);
    CHECK_MSG(s.bytes == 18874368ll, "bytes %lld", (long long)s.bytes);
    CHECK(s.items[0].part == CG_PART_GEMM && s.items[0].bytes == 14680064ll && s.items[0].peak == CG_PEAK_F32);
    CHECK(s.items[1].part == CG_PART_ELEMENTWISE && s.items[1].bytes == 4194304ll);
    CHECK(s.peak_bytes == r->mem->peak_bytes && s.peak_bytes > 0);

    const cg_gpu *h100 = cg_gpu_find("h100"), *a100 = cg_gpu_find("a100");
    CHECK(h100 && a100 && cg_gpu_find("h200") && !cg_gpu_find("v100"));
    cg_cost c;
    cg_cost_of(&s, h100, &c);
    double t = (2147483648.0 / 66.9e12 + 1.5e-6) + (4194304.0 / 3.35e12 + 1.5e-6);
    CHECK_MSG(near(c.time_s, t) && fabs(c.time_s - 3.63519e-5) < 1e-10,
              "time %.9g", c.time_s);
    CHECK(near(c.images_per_s, 512 / t) && (long)c.images_per_s == 14084531);
    CHECK(near(c.mfu, (2147483648.0 / 66.9e12) / t) && fabs(c.mfu - 0.88303) < 1e-5);
    CHECK(near(c.part_time[CG_PART_GEMM], 2147483648.0 / 66.9e12 + 1.5e-6) && c.part_time[CG_PART_LOSS] == 0);
    cg_cost_of(&s, a100, &c);
    CHECK(near(c.time_s, (2147483648.0 / 19.5e12 + 1.5e-6) + (4194304.0 / 2.039e12 + 1.5e-6)));

    /* the script-readable lines */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cg_stats_print(&s, h100, f);
    cg_stats_print_json(&s, h100, f);
    fclose(f);
    CHECK(strstr(text, "\nlaunches per step: 2\n") && strstr(text, "\nGEMM calls per step: 1\n"));
    CHECK(strstr(text, "\nbytes per step: 18874368\n") && strstr(text, "\nFLOPs per step: 2155347968\n"));
    CHECK_MSG(strstr(text, "\nmodeled images/s (h100): 14084532\n") && strstr(text, "modeled MFU (h100): 88.3%"), "%s",
              text);
    CHECK(strstr(text, "\"launches_per_step\": 2, ") && strstr(text, "\"modeled\": true"));
    free(text);
    cg_stats_free(&s);

    /* tf32: the same GEMM at the TF32 peak is memory-bound */
    p->precision = "tf32";
    cg_stats_of(p, &s);
    CHECK(s.items[0].peak == CG_PEAK_TF32 && s.gemm_flops_at[CG_PEAK_TF32] == 2147483648ll);
    cg_cost_of(&s, h100, &c);
    CHECK_MSG(near(c.time_s, (14680064.0 / 3.35e12 + 1.5e-6) + (4194304.0 / 3.35e12 + 1.5e-6)), "%.9g", c.time_s);
    cg_stats_free(&s);
    cg_program_free(p);
    pass_result_free(r);

    /* f16 / bf16 operands select the tensor-core peak whatever the precision name says */
    rt_gemm gm;
    memset(&gm, 0, sizeof gm);
    gm.a_type = gm.b_type = gm.c_type = RT_F32;
    CHECK(cg_gemm_peak(&gm, "fp32") == CG_PEAK_F32 && cg_gemm_peak(&gm, NULL) == CG_PEAK_F32);
    gm.a_type = gm.b_type = RT_BF16;
    CHECK(cg_gemm_peak(&gm, "bf16") == CG_PEAK_F16);
    gm.a_type = gm.b_type = RT_F16;
    CHECK(cg_gemm_peak(&gm, "fp32") == CG_PEAK_F16);
}

int main(void) {
    test_small_plan();
    return test_result();
}
