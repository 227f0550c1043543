/* tiny_plan.c: a hand-written plan (what `deitc compile` will generate) for a tiny problem, to
 * test the executable's runtime end to end without the code generator: a linear softmax
 * classifier over 2x2 one-channel images, 3 classes, batch 4, trained with AdamW.
 *   step 0 GEMM    logits[4,3] = images[4,4] @ head.weight[3,4]^T
 *   step 1 kernel  softmax_ce: logits += bias; loss = mean CE; dlogits = (p - onehot)/4;
 *                  dbias = column sums of dlogits
 *   step 2 zero    dW
 *   step 3 GEMM    dW[3,4] += dlogits^T @ images        (trans_a, beta 1)
 *   step 4 kernel  adamw over head.weight (decay)       grid 2 x block 8 for 12 elements
 *   step 5 kernel  adamw over head.bias (no decay)
 * Built three times: as an emu plan (kernels are the C functions below); with -DTINY_CUDA as a
 * cuda plan (dummy PTX) to check what an executable says on a machine without a GPU; and with
 * -DTINY_CUDA -DTINY_FAKE as a cuda plan whose kernels are exported as fake_kernel_NAME for
 * tests/runtime/fake_cuda.c, the host stand-in for libcuda and cuBLASLt. With -DTINY_ODD_NAME
 * the model's name is 1000+ characters with quotes, backslashes and control characters (what
 * the saved files' JSON must survive).
 */
#include <math.h>
#include <stdint.h>

#include "runtime/plan.h"

enum {
    OFF_W = 0, OFF_B = 256, OFF_MW = 512, OFF_VW = 768, OFF_MB = 1024, OFF_VB = 1280,
    OFF_IMAGES = 1536, OFF_LABELS = 1792, OFF_OPT = 2048, OFF_LOGITS = 2304, OFF_LOSS = 2560,
    OFF_DLOGITS = 2816, OFF_DW = 3072, OFF_DB = 3328, ARENA = 3584
};

static const rt_plan_tensor tensors[] = {
    {"head.weight", RT_ROLE_WEIGHT, RT_F32, 2, {3, 4}, OFF_W, 48, RT_INIT_TRUNC_NORMAL, 0.5f, 1, NULL, 0},
    {"head.bias", RT_ROLE_WEIGHT, RT_F32, 1, {3}, OFF_B, 12, RT_INIT_ZEROS, 0, 0, NULL, 0},
    {"adam_m.head.weight", RT_ROLE_STATE, RT_F32, 2, {3, 4}, OFF_MW, 48, RT_INIT_ZEROS, 0, 0, NULL, 0},
    {"adam_v.head.weight", RT_ROLE_STATE, RT_F32, 2, {3, 4}, OFF_VW, 48, RT_INIT_ZEROS, 0, 0, NULL, 0},
    {"adam_m.head.bias", RT_ROLE_STATE, RT_F32, 1, {3}, OFF_MB, 12, RT_INIT_ZEROS, 0, 0, NULL, 0},
    {"adam_v.head.bias", RT_ROLE_STATE, RT_F32, 1, {3}, OFF_VB, 12, RT_INIT_ZEROS, 0, 0, NULL, 0},
    {"images", RT_ROLE_INPUT, RT_F32, 4, {4, 1, 2, 2}, OFF_IMAGES, 64, RT_INIT_ZEROS, 0, 0, NULL, 0},
    {"labels", RT_ROLE_INPUT, RT_I64, 1, {4}, OFF_LABELS, 32, RT_INIT_ZEROS, 0, 0, NULL, 0},
    {"opt", RT_ROLE_INPUT, RT_F32, 1, {RT_OPT_SLOTS}, OFF_OPT, 4 * RT_OPT_SLOTS, RT_INIT_ZEROS, 0, 0, NULL, 0},
    {"logits", RT_ROLE_OUTPUT, RT_F32, 2, {4, 3}, OFF_LOGITS, 48, RT_INIT_ZEROS, 0, 0, NULL, 0},
    {"loss", RT_ROLE_OUTPUT, RT_F32, 0, {0}, OFF_LOSS, 4, RT_INIT_ZEROS, 0, 0, NULL, 0},
};

static const rt_arg ce_args[] = {
    {RT_ARG_PTR, OFF_LOGITS, 0, 0}, {RT_ARG_PTR, OFF_LABELS, 0, 0}, {RT_ARG_PTR, OFF_B, 0, 0},
    {RT_ARG_PTR, OFF_LOSS, 0, 0},   {RT_ARG_PTR, OFF_DLOGITS, 0, 0}, {RT_ARG_PTR, OFF_DB, 0, 0},
    {RT_ARG_I64, 0, 4, 0},          {RT_ARG_I64, 0, 3, 0},
};
static const rt_arg adamw_w_args[] = {
    {RT_ARG_PTR, OFF_W, 0, 0},   {RT_ARG_PTR, OFF_DW, 0, 0}, {RT_ARG_PTR, OFF_MW, 0, 0},
    {RT_ARG_PTR, OFF_VW, 0, 0},  {RT_ARG_PTR, OFF_OPT, 0, 0}, {RT_ARG_I64, 0, 12, 0},
    {RT_ARG_I64, 0, 1, 0},       {RT_ARG_F32, 0, 0, 1e-8f},
};
static const rt_arg adamw_b_args[] = {
    {RT_ARG_PTR, OFF_B, 0, 0},   {RT_ARG_PTR, OFF_DB, 0, 0}, {RT_ARG_PTR, OFF_MB, 0, 0},
    {RT_ARG_PTR, OFF_VB, 0, 0},  {RT_ARG_PTR, OFF_OPT, 0, 0}, {RT_ARG_I64, 0, 3, 0},
    {RT_ARG_I64, 0, 0, 0},       {RT_ARG_F32, 0, 0, 1e-8f},
};

static const rt_plan_step steps[] = {
    {.kind = RT_STEP_GEMM, .what = "logits = images @ head.weight^T",
     .gemm = {.trans_b = 1, .m = 4, .n = 3, .k = 4, .batch = 1, .lda = 4, .ldb = 4, .ldc = 3, .alpha = 1,
              .beta = 0, .a = OFF_IMAGES, .b = OFF_W, .c = OFF_LOGITS}},
    {.kind = RT_STEP_KERNEL, .what = "softmax_cross_entropy", .kernel = 0, .grid = {1, 1, 1},
     .block = {1, 1, 1}, .nargs = 8, .args = ce_args},
    {.kind = RT_STEP_ZERO, .what = "zero dW", .offset = OFF_DW, .bytes = 48},
    {.kind = RT_STEP_GEMM, .what = "dW += dlogits^T @ images",
     .gemm = {.trans_a = 1, .m = 3, .n = 4, .k = 4, .batch = 1, .lda = 3, .ldb = 4, .ldc = 4, .alpha = 1,
              .beta = 1, .a = OFF_DLOGITS, .b = OFF_IMAGES, .c = OFF_DW}},
    {.kind = RT_STEP_KERNEL, .what = "adamw head.weight", .kernel = 1, .grid = {2, 1, 1}, .block = {8, 1, 1},
     .nargs = 8, .args = adamw_w_args},
    {.kind = RT_STEP_KERNEL, .what = "adamw head.bias", .kernel = 1, .grid = {1, 1, 1}, .block = {4, 1, 1},
     .nargs = 8, .args = adamw_b_args},
};

/* what data-parallel training averages: dbias (final after step 1), dW (after step 3); AdamW reads them */
static const rt_plan_grad grads[] = {
    {"grad.head.bias", RT_F32, OFF_DB, 12, 1, 5},
    {"grad.head.weight", RT_F32, OFF_DW, 48, 3, 4},
};

static const char *const kernel_names[] = {"softmax_cross_entropy", "adamw"};

#if !defined(TINY_CUDA) || defined(TINY_FAKE)
static void softmax_ce(const unsigned grid[3], const unsigned block[3], unsigned shared, void **args) {
    (void)grid, (void)block, (void)shared;
    float *z = *(float **)args[0];
    const int64_t *labels = *(int64_t **)args[1];
    const float *bias = *(float **)args[2];
    float *loss = *(float **)args[3], *dz = *(float **)args[4], *db = *(float **)args[5];
    int64_t rows = *(int64_t *)args[6], cols = *(int64_t *)args[7];
    float total = 0;
    for (int64_t c = 0; c < cols; c++) db[c] = 0;
    for (int64_t i = 0; i < rows; i++) {
        float mx = -INFINITY, sum = 0;
        for (int64_t c = 0; c < cols; c++) {
            z[i * cols + c] += bias[c];
            mx = fmaxf(mx, z[i * cols + c]);
        }
        for (int64_t c = 0; c < cols; c++) sum += expf(z[i * cols + c] - mx);
        total += logf(sum) + mx - z[i * cols + labels[i]];
        for (int64_t c = 0; c < cols; c++) {
            float g = (expf(z[i * cols + c] - mx) / sum - (c == labels[i])) / (float)rows;
            dz[i * cols + c] = g;
            db[c] += g;
        }
    }
    *loss = total / (float)rows;
}

/* one "thread" per element: x = blockIdx.x * blockDim.x + threadIdx.x */
static void adamw(const unsigned grid[3], const unsigned block[3], unsigned shared, void **args) {
    (void)shared;
    float *w = *(float **)args[0], *g = *(float **)args[1], *m = *(float **)args[2], *v = *(float **)args[3];
    const float *opt = *(float **)args[4];
    int64_t n = *(int64_t *)args[5], decay = *(int64_t *)args[6];
    float eps = *(float *)args[7];
    for (unsigned bx = 0; bx < grid[0]; bx++)
        for (unsigned tx = 0; tx < block[0]; tx++) {
            int64_t i = (int64_t)bx * block[0] + tx;
            if (i >= n) continue;
            float gi = g[i] * opt[RT_OPT_GRAD_SCALE];
            m[i] = 0.9f * m[i] + 0.1f * gi;
            v[i] = 0.999f * v[i] + 0.001f * gi * gi;
            float mh = m[i] / opt[RT_OPT_BIAS_CORR1], vh = v[i] / opt[RT_OPT_BIAS_CORR2];
            w[i] -= opt[RT_OPT_LR] * (mh / (sqrtf(vh) + eps) + (decay ? opt[RT_OPT_WEIGHT_DECAY] * w[i] : 0));
        }
}

#ifdef TINY_FAKE
#define FAKE_EXPORT __attribute__((visibility("default")))
FAKE_EXPORT void fake_kernel_softmax_cross_entropy(const unsigned g[3], const unsigned b[3], unsigned s, void **a);
FAKE_EXPORT void fake_kernel_adamw(const unsigned g[3], const unsigned b[3], unsigned s, void **a);
void fake_kernel_softmax_cross_entropy(const unsigned g[3], const unsigned b[3], unsigned s, void **a) {
    softmax_ce(g, b, s, a);
}
void fake_kernel_adamw(const unsigned g[3], const unsigned b[3], unsigned s, void **a) { adamw(g, b, s, a); }
FAKE_EXPORT extern const int fake_kernel_softmax_cross_entropy_nargs, fake_kernel_adamw_nargs;
const int fake_kernel_softmax_cross_entropy_nargs = 8, fake_kernel_adamw_nargs = 8;
#else
static const rt_emu_kernel_fn emu_kernels[] = {softmax_ce, adamw};
#endif
#endif

#ifdef TINY_ODD_NAME
#define X10 "xxxxxxxxxx"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10
#define ODD_NAME "tiny \"odd\" \\ \x01\x1f\t\n\x7f \xc3\xa9 \xff" X100 X100 X100 X100 X100 X100 X100 X100 X100 X100 "end"
#else
#define ODD_NAME "tiny_linear"
#endif

const rt_plan deitc_plan = {
    .model_name = ODD_NAME,
    .batch = 4, .img_size = 2, .in_chans = 1, .num_classes = 3,
    .precision = "fp32",
#ifdef TINY_FAKE
    .arena_bytes = ARENA + 4096, .peak_bytes = ARENA,
#else
    .arena_bytes = ARENA, .peak_bytes = ARENA,
#endif
    .num_tensors = sizeof tensors / sizeof tensors[0], .tensors = tensors,
    .num_steps = sizeof steps / sizeof steps[0], .steps = steps,
    .num_kernels = 2, .kernel_names = kernel_names,
    .num_grads = 2, .grads = grads,
#ifdef TINY_CUDA
    .ptx = "// dummy PTX: the test machine has no GPU\n", .arch = "sm_90",
#endif
#ifdef TINY_FAKE /* cuBLASLt's workspace in the arena, as deitc's cuda plans have it */
    .gemm_workspace_offset = ARENA, .gemm_workspace_bytes = 4096,
#endif
#ifndef TINY_CUDA
    .emu_kernels = emu_kernels,
#endif
    .beta1 = 0.9, .beta2 = 0.999, .adam_eps = 1e-8,
};
