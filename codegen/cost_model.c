/* cost_model.c: a roofline model of one training step on a named GPU, from stats.c's work
 * items: each item takes max(flops / peak, bytes / bandwidth) plus its launches' cost, and
 * the step is their sum (a CUDA Graph runs the plan's steps one after another). Every figure
 * it gives is modeled, never measured; benchmarks/gpu_check is what calibrates it.
 *
 * The GPU constants are the vendor's datasheet peaks (dense, no sparsity), except the launch
 * cost, which is an estimate. */
#include "codegen/emit_internal.h"

/* Launch cost of one kernel node in a replayed CUDA Graph. Not a datasheet figure: an
 * estimate of the gap between dependent kernel nodes on Ampere/Hopper (graph replay removes
 * the ~4-5 us of a stream launch's CPU overhead; what is left is the GPU front end's ~1-2 us
 * per dependent node). To be calibrated by benchmarks/gpu_check. */
#define CG_GRAPH_NODE_LAUNCH_S 1.5e-6

static const cg_gpu gpus[] = {
    /* NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column: FP16/BF16 Tensor Core 1,979
     * TFLOPS with sparsity (989.4 dense), TF32 989 with sparsity (494.7 dense), FP32 67 TFLOPS,
     * GPU memory bandwidth 3.35 TB/s */
    {"h100", "H100 SXM", {66.9e12, 494.7e12, 989.4e12}, 3.35e12, CG_GRAPH_NODE_LAUNCH_S},
    /* NVIDIA H200 Tensor Core GPU datasheet, H200 SXM: the H100's compute (same GH100 chip and
     * clocks), HBM3e bandwidth 4.8 TB/s */
    {"h200", "H200 SXM", {66.9e12, 494.7e12, 989.4e12}, 4.8e12, CG_GRAPH_NODE_LAUNCH_S},
    /* NVIDIA A100 Tensor Core GPU datasheet, A100 80GB SXM: FP16/BF16 Tensor Core 312 TFLOPS
     * (dense), TF32 156 TFLOPS (dense), FP32 19.5 TFLOPS, bandwidth 2,039 GB/s */
    {"a100", "A100 SXM 80GB", {19.5e12, 156e12, 312e12}, 2.039e12, CG_GRAPH_NODE_LAUNCH_S},
};
enum { NGPUS = sizeof gpus / sizeof gpus[0] };

const cg_gpu *cg_gpu_find(const char *name) {
    for (int i = 0; name && i < NGPUS; i++)
        if (strcmp(gpus[i].name, name) == 0) return &gpus[i];
    return NULL;
}

const char *cg_gpu_names(void) { return "h100, h200, a100"; }

static double item_time(const cg_work *w, const cg_gpu *gpu) {
    double compute = (double)w->flops / gpu->peak[w->peak], memory = (double)w->bytes / gpu->bandwidth;
    return (compute > memory ? compute : memory) + w->launches * gpu->launch_s;
}

void cg_cost_of(const cg_stats *s, const cg_gpu *gpu, cg_cost *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < s->nitems; i++) {
        const cg_work *w = &s->items[i];
        double t = item_time(w, gpu);
        c->time_s += t;
        c->part_time[w->part] += t;
        c->part_launches[w->part] += w->launches;
        c->part_gemms[w->part] += w->gemms;
        c->part_flops[w->part] += w->flops;
        c->part_bytes[w->part] += w->bytes;
    }
    double at_peak = 0;
    for (int k = 0; k < CG_PEAK_COUNT; k++) at_peak += (double)s->gemm_flops_at[k] / gpu->peak[k];
    if (c->time_s > 0) {
        c->images_per_s = (double)s->batch / c->time_s;
        c->mfu = at_peak / c->time_s;
    }
}

static const char *peak_label(const cg_stats *s) {
    static const char *const names[CG_PEAK_COUNT] = {"fp32", "tf32", "fp16/bf16"};
    int best = 0;
    for (int k = 1; k < CG_PEAK_COUNT; k++)
        if (s->gemm_flops_at[k] > s->gemm_flops_at[best]) best = k;
    return names[best];
}

void cg_stats_print(const cg_stats *s, const cg_gpu *gpu, FILE *f) {
    cg_cost c;
    cg_cost_of(s, gpu, &c);
    fprintf(f, "step statistics (batch %lld, precision %s; counted from the plan, times modeled on %s)\n",
            (long long)s->batch, s->precision, gpu->full);
    fprintf(f, "distinct kernels: %d\n", s->distinct_kernels);
    fprintf(f, "launches per step: %lld\n", (long long)s->launches);
    fprintf(f, "GEMM calls per step: %lld\n", (long long)s->gemm_calls);
    fprintf(f, "FLOPs per step: %lld\n", (long long)(s->gemm_flops + s->other_flops));
    fprintf(f, "GEMM FLOPs per step: %lld\n", (long long)s->gemm_flops);
    fprintf(f, "other FLOPs per step: %lld\n", (long long)s->other_flops);
    fprintf(f, "bytes per step: %lld\n", (long long)s->bytes);
    fprintf(f, "peak arena bytes: %lld\n", (long long)s->peak_bytes);
    fprintf(f, "arena bytes: %lld\n", (long long)s->arena_bytes);
    fprintf(f, "modeled GPU: %s (%.1f TFLOP/s fp16/bf16, %.1f tf32, %.1f fp32; %.2f TB/s; %.1f us a launch)\n",
            gpu->full, gpu->peak[CG_PEAK_F16] / 1e12, gpu->peak[CG_PEAK_TF32] / 1e12, gpu->peak[CG_PEAK_F32] / 1e12,
            gpu->bandwidth / 1e12, gpu->launch_s * 1e6);
    fprintf(f, "modeled step time (%s): %.3f ms\n", gpu->name, c.time_s * 1e3);
    fprintf(f, "modeled images/s (%s): %.0f\n", gpu->name, c.images_per_s);
    fprintf(f, "modeled MFU (%s): %.1f%% (GEMMs at the %s peak)\n", gpu->name, 100 * c.mfu, peak_label(s));
    fprintf(f, "modeled breakdown (%s):\n", gpu->name);
    fprintf(f, "  %-12s %9s %6s %14s %14s %11s %6s\n", "part", "launches", "GEMMs", "FLOPs", "bytes", "time ms",
            "share");
    for (int k = 0; k < CG_PART_COUNT; k++)
        fprintf(f, "  %-12s %9lld %6lld %14lld %14lld %11.3f %5.1f%%\n", cg_part_name((cg_part)k),
                (long long)c.part_launches[k], (long long)c.part_gemms[k], (long long)c.part_flops[k],
                (long long)c.part_bytes[k], c.part_time[k] * 1e3, c.time_s > 0 ? 100 * c.part_time[k] / c.time_s : 0);
}

void cg_stats_print_json(const cg_stats *s, const cg_gpu *gpu, FILE *f) {
    cg_cost c;
    cg_cost_of(s, gpu, &c);
    fprintf(f, "{\"modeled\": true, \"gpu\": \"%s\", \"batch\": %lld, \"precision\": \"%s\", ", gpu->name,
            (long long)s->batch, s->precision);
    fprintf(f, "\"distinct_kernels\": %d, \"launches_per_step\": %lld, \"gemm_calls_per_step\": %lld, ",
            s->distinct_kernels, (long long)s->launches, (long long)s->gemm_calls);
    fprintf(f, "\"flops_per_step\": %lld, \"gemm_flops_per_step\": %lld, \"other_flops_per_step\": %lld, ",
            (long long)(s->gemm_flops + s->other_flops), (long long)s->gemm_flops, (long long)s->other_flops);
    fprintf(f, "\"bytes_per_step\": %lld, \"peak_arena_bytes\": %lld, \"arena_bytes\": %lld, ", (long long)s->bytes,
            (long long)s->peak_bytes, (long long)s->arena_bytes);
    fprintf(f, "\"modeled_step_time_s\": %.9g, \"modeled_images_per_s\": %.6g, \"modeled_mfu\": %.6g, \"parts\": {",
            c.time_s, c.images_per_s, c.mfu);
    for (int k = 0; k < CG_PART_COUNT; k++)
        fprintf(f, "%s\"%s\": {\"launches\": %lld, \"gemm_calls\": %lld, \"flops\": %lld, \"bytes\": %lld, "
                   "\"modeled_time_s\": %.9g}",
                k ? ", " : "", cg_part_name((cg_part)k), (long long)c.part_launches[k], (long long)c.part_gemms[k],
                (long long)c.part_flops[k], (long long)c.part_bytes[k], c.part_time[k]);
    fprintf(f, "}}\n");
}
