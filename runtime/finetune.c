/* finetune.c: what --init does with a checkpoint made for another task or resolution, as timm's
 * fine-tuning does:
 *   - a classifier head (head.*, head_dist.*) of another number of classes is re-initialized
 *     with timm's init (init_weights_vit_timm: weight trunc_normal std 0.02, bias zeros), and
 *     only the head; the run says so;
 *   - a pos_embed of another patch grid (197 tokens into a model at 160 or 384) is resampled as
 *     timm's resample_abs_pos_embed does: the prefix tokens (class, distillation) kept, the grid
 *     resized by F.interpolate(mode='bicubic', align_corners=False, antialias=True), i.e.
 *     separable PIL-style bicubic (a = -0.5) with the filter widened when shrinking; the run
 *     says so.
 * rt_resample_bicubic_aa is exported for its test against torch.
 */
#include "runtime/exe_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* torch's antialiased bicubic filter (aten UpSampleKernel.cpp, a = -0.5, as PIL) */
static double aa_bicubic(double x) {
    const double a = -0.5;
    x = fabs(x);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

/* weights of output i over the inputs [*lo, *lo + *count) for in -> out, align_corners=False */
static void aa_weights(int64_t in, int64_t out, int64_t i, int64_t *lo, int64_t *count, double *w) {
    double scale = (double)in / (double)out, support = scale >= 1 ? 2 * scale : 2.0;
    double invscale = scale >= 1 ? 1 / scale : 1.0, center = scale * ((double)i + 0.5), total = 0;
    int64_t xmin = (int64_t)(center - support + 0.5), xmax = (int64_t)(center + support + 0.5);
    if (xmin < 0) xmin = 0;
    if (xmax > in) xmax = in;
    for (int64_t j = xmin; j < xmax; j++) total += w[j - xmin] = aa_bicubic(((double)j - center + 0.5) * invscale);
    for (int64_t j = xmin; j < xmax; j++) w[j - xmin] = total != 0 ? w[j - xmin] / total : 0;
    *lo = xmin;
    *count = xmax - xmin;
}

/* src (sh, sw, c) channels last -> dst (dh, dw, c): rows first, then columns (as torch's
 * separable pass), each in double */
void rt_resample_bicubic_aa(const float *src, int64_t sh, int64_t sw, int64_t c, float *dst, int64_t dh, int64_t dw) {
    double *mid = calloc((size_t)(sh * dw * c), sizeof(double));
    int64_t wmax = 4 * (sh > sw ? sh : sw) + 8;
    double *w = malloc(sizeof(double) * (size_t)wmax);
    if (!mid || !w) abort();
    for (int64_t x = 0; x < dw; x++) { /* horizontal: (sh, sw) -> (sh, dw) */
        int64_t lo, n;
        aa_weights(sw, dw, x, &lo, &n, w);
        for (int64_t y = 0; y < sh; y++)
            for (int64_t k = 0; k < n; k++)
                for (int64_t ch = 0; ch < c; ch++) mid[(y * dw + x) * c + ch] += w[k] * src[(y * sw + lo + k) * c + ch];
    }
    for (int64_t y = 0; y < dh; y++) { /* vertical: (sh, dw) -> (dh, dw) */
        int64_t lo, n;
        aa_weights(sh, dh, y, &lo, &n, w);
        for (int64_t x = 0; x < dw; x++)
            for (int64_t ch = 0; ch < c; ch++) {
                double v = 0;
                for (int64_t k = 0; k < n; k++) v += w[k] * mid[((lo + k) * dw + x) * c + ch];
                dst[(y * dw + x) * c + ch] = (float)v;
            }
    }
    free(mid);
    free(w);
}

/* float -> the plan tensor's dtype, uploaded */
static int upload_f32(session *s, const rt_plan_tensor *t, const float *buf) {
    int64_t n = rt_exe_numel(t);
    size_t bytes = (size_t)n * rt_dtype_size(t->dtype);
    void *conv = malloc(bytes ? bytes : 1);
    if (!conv) abort();
    if (t->dtype == RT_F32) memcpy(conv, buf, bytes);
    else
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)conv)[i] = t->dtype == RT_F16 ? rt_float_to_half(buf[i]) : rt_float_to_bf16(buf[i]);
    int rc = s->dev->upload(s->dev, t->offset, conv, bytes) ? rt_exe_error("%s", s->dev->err) : 0;
    free(conv);
    return rc;
}

static int same_but_first(const rt_tensor *ft, const rt_plan_tensor *t) {
    if (ft->ndim != t->ndim || ft->ndim < 1) return 0;
    for (int d = 1; d < t->ndim; d++)
        if (ft->shape[d] != t->shape[d]) return 0;
    return ft->shape[0] != t->shape[0];
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t len = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && len < size; d++) len += (size_t)snprintf(buf + len, size - len, "%s%lld", d ? "," : "", (long long)shape[d]);
    if (len < size) snprintf(buf + len, size - len, "]");
}

/* the prefix tokens before the patch grid in pos_embed: cls_token, dist_token */
static int64_t prefix_tokens(const rt_plan *p) {
    int64_t n = 0;
    for (int i = 0; i < p->num_tensors; i++)
        if (p->tensors[i].role == RT_ROLE_WEIGHT &&
            (!strcmp(p->tensors[i].name, "cls_token") || !strcmp(p->tensors[i].name, "dist_token")))
            n++;
    return n;
}

static int64_t isqrt_exact(int64_t v) {
    int64_t r = (int64_t)llround(sqrt((double)v));
    return r >= 1 && r * r == v ? r : -1;
}

int rt_exe_init_adapt(session *s, const rt_plan_tensor *t, const rt_tensor *ft, const char *path, uint64_t seed) {
    char fs[96], ms[96];
    shape_text(ft->ndim, ft->shape, fs, sizeof fs);
    shape_text(t->ndim, t->shape, ms, sizeof ms);
    int64_t n = rt_exe_numel(t);
    if (rt_weight_is_head(t->name) && same_but_first(ft, t)) {
        float *buf = malloc(sizeof(float) * (size_t)(n ? n : 1));
        if (!buf) abort();
        int weight = t->ndim >= 2;
        if (weight) rt_init_fill(RT_INIT_TRUNC_NORMAL, 0.02f, seed, t->name, buf, n);
        else memset(buf, 0, sizeof(float) * (size_t)n);
        fprintf(stderr, "%s: note: %s: '%s' is %s (%lld classes), the model's %s (%lld classes): the head is "
                        "re-initialized as timm does (%s)\n",
                rt_exe_prog, path, t->name, fs, (long long)ft->shape[0], ms, (long long)t->shape[0],
                weight ? "trunc_normal std 0.02" : "zeros");
        int rc = upload_f32(s, t, buf);
        free(buf);
        return rc ? -1 : 1;
    }
    int64_t prefix = prefix_tokens(s->p);
    if (!strcmp(t->name, "pos_embed") && ft->ndim == 3 && t->ndim == 3 && ft->shape[0] == 1 && t->shape[0] == 1 &&
        ft->shape[2] == t->shape[2] && (ft->dtype == RT_F32 || ft->dtype == RT_F16 || ft->dtype == RT_BF16)) {
        int64_t gs = isqrt_exact(ft->shape[1] - prefix), gd = isqrt_exact(t->shape[1] - prefix), dim = t->shape[2];
        if (gs < 0 || gd < 0) return 0;
        float *src = malloc(sizeof(float) * (size_t)(ft->shape[1] * dim)), *dst = malloc(sizeof(float) * (size_t)n);
        if (!src || !dst) abort();
        int rc = rt_tensor_to_f32(ft, src);
        for (int64_t i = 0; !rc && i < ft->shape[1] * dim; i++)
            if (!isfinite(src[i])) rc = rt_exe_error("%s: 'pos_embed' holds a NaN or infinity at element %lld", path, (long long)i);
        if (!rc) {
            memcpy(dst, src, sizeof(float) * (size_t)(prefix * dim)); /* class (and distillation) token kept */
            rt_resample_bicubic_aa(src + prefix * dim, gs, gs, dim, dst + prefix * dim, gd, gd);
            fprintf(stderr, "%s: note: %s: 'pos_embed' is %s (a %lldx%lld patch grid), the model's %s (%lldx%lld): "
                            "resampled as timm's resample_abs_pos_embed (bicubic, antialias; %lld prefix token%s "
                            "kept)\n",
                    rt_exe_prog, path, fs, (long long)gs, (long long)gs, ms, (long long)gd, (long long)gd,
                    (long long)prefix, prefix == 1 ? "" : "s");
            rc = upload_f32(s, t, dst);
        }
        free(src);
        free(dst);
        return rc ? -1 : 1;
    }
    return 0;
}
