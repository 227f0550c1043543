/* interp.c: the CPU reference interpreter, which defines what every op means.
 *
 * Plain and obviously right rather than fast. Every value is held as a double array; each op
 * computes in double and, unless the interpreter was made with use_f64, rounds its result to
 * the node's dtype (f32, f16, bf16: round to nearest even), so the f32 interpreter is a float32
 * program whose every op is correctly rounded. Integer values (labels) are exact in double.
 * ADAMW nodes update their WEIGHT and STATE inputs in place (and a 16-bit copy of the weight,
 * their sixth input, which the first run makes from the bound weight before any node, as the
 * executables make it where they load weights), LOSS_SCALE_UPDATE its scaler STATE. Bound
 * float leaves are rounded to their dtype. A node with several outputs holds them one after
 * another in its value; PROJECT copies one out.
 *
 * Values live in ir/interp_values.c (pooled, and freed after their last reader once
 * ir_interp_release_dead is on); the row-wise ops run over ranges of rows on the host threads
 * of ir/interp_par.c, each row computed as on one thread, so no result depends on the thread
 * count.
 */
#include "ir/interp_par.h"
#include "ir/interp_values.h"
#include "ir/ir.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where output k starts in node n's value (elements). */
static int64_t output_start(const ir_node *n, int k) {
    int64_t at = 0;
    for (int j = 0; j < k; j++) {
        ir_node o;
        ir_node_output(n, j, &o);
        at += ir_numel(&o);
    }
    return at;
}

struct ir_interp {
    const ir_graph *g;
    int use_f64;
    ir_values values;
    double **val; /* values.val: val[i] holds node i's value, NULL while none is held */
    int runs;     /* ir_interp_run calls so far */
    char error[512];
};

ir_interp *ir_interp_new(const ir_graph *g, int use_f64) {
    ir_interp *it = calloc(1, sizeof *it);
    if (!it) abort();
    it->g = g;
    it->use_f64 = use_f64;
    int bad = ir_values_init(&it->values, g);
    it->val = it->values.val;
    if (bad) {
        ir_interp_free(it);
        return NULL;
    }
    return it;
}

void ir_interp_free(ir_interp *it) {
    if (!it) return;
    ir_values_free(&it->values);
    ir_gemm_f64_release();
    free(it);
}

void ir_interp_release_dead(ir_interp *it) { ir_values_release_dead(&it->values); }

const char *ir_interp_error(const ir_interp *it) { return it->error; }

/* ---- rounding to a dtype ---------------------------------------------------------------- */

/* Round a float to the nearest value with `mant` explicit mantissa bits and minimum normal
 * exponent emin (IEEE-style, ties to even, with subnormals and overflow to inf). */
static double round_to_format(double x, int mant, int emin, double maxval) {
    if (x == 0 || !isfinite(x)) return x;
    int e;
    frexp(x, &e); /* x = f * 2^e, 0.5 <= |f| < 1 */
    int exp = e - 1;
    if (exp < emin) exp = emin;
    double quantum = ldexp(1.0, exp - mant);
    double r = nearbyint(x / quantum) * quantum; /* default rounding mode: ties to even */
    if (fabs(r) > maxval) return copysign(INFINITY, x);
    return r;
}

static inline double round_dtype(double x, ir_dtype t) {
    switch (t) {
    case IR_F32:
        return (double)(float)x;
    case IR_F16:
        return round_to_format((double)(float)x, 10, -14, 65504.0);
    case IR_BF16:
        return round_to_format((double)(float)x, 7, -126, 3.3895313892515355e38);
    default:
        return x;
    }
}

/* ---- binding and reading ---------------------------------------------------------------- */

/* node's array, taken when it holds none (a leaf always does) */
static double *bound(ir_interp *it, int node) {
    double *v = ir_values_take(&it->values, node);
    if (!v) abort();
    return v;
}

void ir_interp_set_f32(ir_interp *it, int node, const float *data) {
    const ir_node *n = &it->g->nodes[node];
    int64_t k = ir_numel(n);
    double *v = bound(it, node);
    for (int64_t i = 0; i < k; i++) v[i] = it->use_f64 ? data[i] : round_dtype(data[i], n->dtype);
}

void ir_interp_set_f64(ir_interp *it, int node, const double *data) {
    memcpy(bound(it, node), data, sizeof(double) * (size_t)ir_numel(&it->g->nodes[node]));
}

void ir_interp_set_i64(ir_interp *it, int node, const int64_t *data) {
    int64_t k = ir_numel(&it->g->nodes[node]);
    double *v = bound(it, node);
    for (int64_t i = 0; i < k; i++) v[i] = (double)data[i];
}

/* A value read after it was given back (see ir_interp_release_dead) is the caller's bug. */
static void check_held(const ir_interp *it, int node) {
    if (it->val[node]) return;
    fprintf(stderr, "ir_interp: node %d (%s) holds no value: not run yet, or released after its last reader\n",
            node, it->g->nodes[node].name ? it->g->nodes[node].name : ir_op_name(it->g->nodes[node].op));
    abort();
}

void ir_interp_get_f32(const ir_interp *it, int node, float *out) {
    check_held(it, node);
    int64_t k = ir_numel(&it->g->nodes[node]);
    for (int64_t i = 0; i < k; i++) out[i] = (float)it->val[node][i];
}

void ir_interp_get_f64(const ir_interp *it, int node, double *out) {
    check_held(it, node);
    memcpy(out, it->val[node], sizeof(double) * (size_t)ir_numel(&it->g->nodes[node]));
}

void ir_interp_get_i64(const ir_interp *it, int node, int64_t *out) {
    check_held(it, node);
    int64_t k = ir_numel(&it->g->nodes[node]);
    for (int64_t i = 0; i < k; i++) out[i] = (int64_t)it->val[node][i];
}

/* ---- index helpers ---------------------------------------------------------------------- */

/* Index into `in` (right-aligned, broadcast) of the element at multi-index idx of an ndim
 * output. */
static int64_t bcast_offset(const ir_node *in, int ndim, const int64_t *idx) {
    int64_t off = 0;
    for (int d = 0; d < in->ndim; d++) {
        int64_t i = idx[ndim - in->ndim + d];
        off = off * in->shape[d] + (in->shape[d] == 1 ? 0 : i);
    }
    return off;
}

static void unravel(int64_t lin, int ndim, const int64_t *shape, int64_t *idx) {
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = lin % shape[d];
        lin /= shape[d];
    }
}

/* rows x cols view: cols = last dim */
static int64_t last_dim(const ir_node *n) { return n->shape[n->ndim - 1]; }

/* ---- ops -------------------------------------------------------------------------------- */

static const double SQRT1_2 = 0.70710678118654752440;
static const double SQRT_2_PI = 0.79788456080286535588;

static double gelu(double x, int tanh_approx) {
    if (tanh_approx) return 0.5 * x * (1 + tanh(SQRT_2_PI * (x + 0.044715 * x * x * x)));
    return 0.5 * x * (1 + erf(x * SQRT1_2));
}

static double gelu_grad(double x, int tanh_approx) {
    if (tanh_approx) {
        double u = SQRT_2_PI * (x + 0.044715 * x * x * x), t = tanh(u);
        double du = SQRT_2_PI * (1 + 3 * 0.044715 * x * x);
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du;
    }
    double cdf = 0.5 * (1 + erf(x * SQRT1_2));
    double pdf = exp(-0.5 * x * x) * 0.39894228040143267794;
    return cdf + x * pdf;
}

/* How output element i of n finds its element of input `in`: 0 at i itself (same shape), 1 at
 * i modulo in's size (in is n's trailing dims: a bias, a pos_embed), 2 by the broadcast index. */
static int bcast_kind(const ir_node *in, const ir_node *n) {
    if (ir_numel(in) == ir_numel(n)) return 0;
    int d = 0;
    while (d < in->ndim && in->shape[d] == 1) d++;
    for (int k = d; k < in->ndim; k++)
        if (in->shape[k] != n->shape[n->ndim - in->ndim + k]) return 2;
    return 1;
}

/* elements [lo, hi) */
static void run_elementwise(const ir_graph *g, const ir_node *n, double **v, double *out, int64_t lo,
                            int64_t hi) {
    int64_t idx[IR_MAX_DIMS];
    const ir_node *a = &g->nodes[n->inputs[0]];
    const ir_node *b = n->ninputs > 1 ? &g->nodes[n->inputs[1]] : NULL;
    const double *va = v[n->inputs[0]], *vb = b ? v[n->inputs[1]] : NULL;
    int ka = bcast_kind(a, n), kb = b ? bcast_kind(b, n) : 0;
    int64_t na = ir_numel(a), nb = b ? ir_numel(b) : 1;
    int64_t ia = na ? lo % na : 0, ib = nb ? lo % nb : 0; /* i % na and i % nb as i counts up */
    for (int64_t i = lo; i < hi; i++, ia = ia + 1 == na ? 0 : ia + 1, ib = ib + 1 == nb ? 0 : ib + 1) {
        if (ka == 2 || kb == 2) unravel(i, n->ndim, n->shape, idx);
        double x = va[ka == 0 ? i : ka == 1 ? ia : bcast_offset(a, n->ndim, idx)];
        double y = b ? vb[kb == 0 ? i : kb == 1 ? ib : bcast_offset(b, n->ndim, idx)] : 0;
        double r;
        switch (n->op) {
        case IR_OP_ADD: r = x + y; break;
        case IR_OP_SUB: r = x - y; break;
        case IR_OP_MUL: r = x * y; break;
        case IR_OP_DIV: r = x / y; break;
        case IR_OP_SCALE: r = x * n->attrs.alpha; break;
        case IR_OP_SQRT: r = sqrt(x); break;
        case IR_OP_ERF: r = erf(x); break;
        case IR_OP_GELU: r = gelu(x, n->attrs.gelu_tanh); break;
        case IR_OP_GELU_GRAD: r = x * gelu_grad(y, n->attrs.gelu_tanh); break; /* (dy, x) */
        case IR_OP_CAST: r = x; break;
        case IR_OP_ERF_GRAD: r = x * 1.12837916709551257390 * exp(-y * y); break; /* (dy, x) */
        default: assert(0); r = 0;
        }
        out[i] = r;
    }
}

/* elements [lo, hi): the output's multi-index counts up, its input offset along with it */
static void run_permute(const ir_graph *g, const ir_node *n, const double *x, double *out, int64_t lo,
                        int64_t hi) {
    const ir_node *in = &g->nodes[n->inputs[0]];
    int64_t stride[IR_MAX_DIMS], step[IR_MAX_DIMS], idx[IR_MAX_DIMS];
    int64_t s = 1;
    for (int d = in->ndim - 1; d >= 0; d--) {
        stride[d] = s;
        s *= in->shape[d];
    }
    if (lo >= hi) return;
    unravel(lo, n->ndim, n->shape, idx);
    int64_t off = 0;
    for (int d = 0; d < n->ndim; d++) {
        step[d] = stride[n->attrs.perm[d]];
        off += idx[d] * step[d];
    }
    for (int64_t i = lo; i < hi; i++) {
        out[i] = x[off];
        for (int d = n->ndim - 1; d >= 0; d--) { /* the next multi-index */
            off += step[d];
            if (++idx[d] < n->shape[d]) break;
            off -= idx[d] * step[d];
            idx[d] = 0;
        }
    }
}

/* SLICE (copy a range out) and PAD (copy into a range, zeros elsewhere) share the walk */
static void run_slice(const ir_node *big, const ir_node *n, int64_t axis, int64_t start,
                      int64_t len, const double *src, double *dst, int pad) {
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++) outer *= big->shape[d];
    for (int d = (int)axis + 1; d < big->ndim; d++) inner *= big->shape[d];
    int64_t dim = big->shape[axis];
    if (pad) memset(dst, 0, sizeof(double) * (size_t)ir_numel(n));
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < len; k++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t bi = (o * dim + start + k) * inner + i, si = (o * len + k) * inner + i;
                if (pad)
                    dst[bi] = src[si];
                else
                    dst[si] = src[bi];
            }
}

/* images [B,C,H,W] <-> patches [B, (H/P)(W/P), C*P*P]; `to_patches` picks the direction */
static void run_patchify(const ir_node *img, int64_t p, double *image, double *patches,
                         int to_patches) {
    int64_t B = img->shape[0], C = img->shape[1], H = img->shape[2], W = img->shape[3];
    int64_t ph = H / p, pw = W / p, K = C * p * p;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++) {
                    int64_t patch = (y / p) * pw + x / p, k = c * p * p + (y % p) * p + x % p;
                    int64_t pi = (b * ph * pw + patch) * K + k, ii = ((b * C + c) * H + y) * W + x;
                    if (to_patches)
                        patches[pi] = image[ii];
                    else
                        image[ii] = patches[pi];
                }
}

/* TF32 (compute=tf32): an f32 operand rounded to 10 mantissa bits, nearest even, f32's range */
static double round_tf32(double x) { return round_to_format(x, 10, -126, 0x1.ffcp127); }

/* round_tf32 of every element of node k's value: a new array */
static double *tf32_copy(const ir_graph *g, int k, double **v) {
    int64_t cnt = ir_numel(&g->nodes[k]);
    double *c = malloc(sizeof(double) * (size_t)(cnt ? cnt : 1));
    if (!c) abort();
    for (int64_t i = 0; i < cnt; i++) c[i] = round_tf32(v[k][i]);
    return c;
}

/* `tf32`: the operands as tensor cores take them under compute=tf32 (not in the f64 mode) */
static void run_matmul(const ir_graph *g, const ir_node *n, double **v, double *out, int tf32) {
    const ir_node *a = &g->nodes[n->inputs[0]], *b = &g->nodes[n->inputs[1]];
    double *ta32 = tf32 ? tf32_copy(g, n->inputs[0], v) : NULL, *tb32 = tf32 ? tf32_copy(g, n->inputs[1], v) : NULL;
    ir_gemm_f64 p = {0};
    p.trans_a = n->attrs.trans_a, p.trans_b = n->attrs.trans_b;
    p.m = n->shape[n->ndim - 2], p.n = n->shape[n->ndim - 1];
    p.k = a->shape[a->ndim - (p.trans_a ? 2 : 1)];
    p.alpha = n->attrs.alpha;
    int nb = n->ndim - 2;
    int64_t idx[IR_MAX_DIMS];
    p.batch = 1;
    for (int d = 0; d < nb; d++) p.batch *= n->shape[d];
    /* batch views of a and b without their matrix dims */
    ir_node ab = *a, bb = *b;
    ab.ndim -= 2;
    bb.ndim -= 2;
    int64_t *off = malloc(sizeof(int64_t) * 2 * (size_t)p.batch);
    if (!off) abort();
    for (int64_t t = 0; t < p.batch; t++) {
        unravel(t, nb, n->shape, idx);
        off[t] = bcast_offset(&ab, nb, idx) * p.m * p.k;
        off[p.batch + t] = bcast_offset(&bb, nb, idx) * p.k * p.n;
    }
    p.a = tf32 ? ta32 : v[n->inputs[0]], p.b = tf32 ? tb32 : v[n->inputs[1]], p.c = out;
    p.a_off = off, p.b_off = off + p.batch;
    ir_gemm_f64_run(&p);
    free(off);
    free(ta32);
    free(tb32);
}

/* per-row mean and 1/sqrt(var + eps) of an [rows, C] view */
static void row_stats(const double *x, int64_t C, double eps, double *mean, double *rstd) {
    double s = 0, ss = 0;
    for (int64_t j = 0; j < C; j++) s += x[j];
    *mean = s / (double)C;
    for (int64_t j = 0; j < C; j++) ss += (x[j] - *mean) * (x[j] - *mean);
    *rstd = 1.0 / sqrt(ss / (double)C + eps);
}

/* LAYER_NORM, LAYER_NORM_STATS (y, then the rows' mean and rstd), LAYER_NORM_DX (statistics
 * recomputed), LAYER_NORM_DX_STATS (statistics from its inputs 3 and 4): rows [lo, hi);
 * LAYER_NORM_DGAMMA (a sum over the rows): all rows at once, lo 0 and hi the row count */
static void run_layer_norm(const ir_graph *g, const ir_node *n, double **v, double *out, int64_t lo,
                           int64_t hi) {
    int fwd = n->op == IR_OP_LAYER_NORM || n->op == IR_OP_LAYER_NORM_STATS;
    const ir_node *xn = &g->nodes[n->inputs[fwd ? 0 : 1]];
    int64_t C = last_dim(xn), rows = ir_numel(xn) / C;
    double eps = n->attrs.eps;
    if (n->op == IR_OP_LAYER_NORM_DGAMMA) memset(out, 0, sizeof(double) * (size_t)C);
    for (int64_t r = lo; r < hi; r++) {
        double mean, rstd;
        if (fwd) {
            const double *x = v[n->inputs[0]] + r * C, *gm = v[n->inputs[1]], *bt = v[n->inputs[2]];
            row_stats(x, C, eps, &mean, &rstd);
            for (int64_t j = 0; j < C; j++) out[r * C + j] = (x[j] - mean) * rstd * gm[j] + bt[j];
            if (n->op == IR_OP_LAYER_NORM_STATS) {
                out[rows * C + r] = mean;
                out[rows * C + rows + r] = rstd;
            }
        } else if (n->op == IR_OP_LAYER_NORM_DX || n->op == IR_OP_LAYER_NORM_DX_STATS) {
            const double *dy = v[n->inputs[0]] + r * C, *x = v[n->inputs[1]] + r * C;
            const double *gm = v[n->inputs[2]];
            if (n->op == IR_OP_LAYER_NORM_DX_STATS) {
                mean = v[n->inputs[3]][r];
                rstd = v[n->inputs[4]][r];
            } else {
                row_stats(x, C, eps, &mean, &rstd);
            }
            double s1 = 0, s2 = 0;
            for (int64_t j = 0; j < C; j++) {
                double dxh = dy[j] * gm[j], xh = (x[j] - mean) * rstd;
                s1 += dxh;
                s2 += dxh * xh;
            }
            s1 /= (double)C;
            s2 /= (double)C;
            for (int64_t j = 0; j < C; j++) {
                double xh = (x[j] - mean) * rstd;
                out[r * C + j] = rstd * (dy[j] * gm[j] - s1 - xh * s2);
            }
        } else {
            const double *dy = v[n->inputs[0]] + r * C, *x = v[n->inputs[1]] + r * C;
            row_stats(x, C, eps, &mean, &rstd);
            for (int64_t j = 0; j < C; j++) out[j] += dy[j] * (x[j] - mean) * rstd;
        }
    }
}

/* rows [lo, hi) */
static void run_softmax(const ir_graph *g, const ir_node *n, double **v, double *out, int64_t lo, int64_t hi) {
    int64_t C = last_dim(n);
    (void)g;
    for (int64_t r = lo; r < hi; r++) {
        double *o = out + r * C;
        if (n->op == IR_OP_SOFTMAX) {
            const double *x = v[n->inputs[0]] + r * C;
            double mx = -INFINITY, s = 0;
            for (int64_t j = 0; j < C; j++) mx = x[j] > mx ? x[j] : mx;
            for (int64_t j = 0; j < C; j++) s += (o[j] = exp(x[j] - mx));
            for (int64_t j = 0; j < C; j++) o[j] /= s;
        } else {
            const double *dy = v[n->inputs[0]] + r * C, *y = v[n->inputs[1]] + r * C;
            double dot = 0;
            for (int64_t j = 0; j < C; j++) dot += dy[j] * y[j];
            for (int64_t j = 0; j < C; j++) o[j] = y[j] * (dy[j] - dot);
        }
    }
}

/* mean over the batch of (1-s) * -log p[label] + s * mean_k(-log p[k]) */
static int run_cross_entropy(ir_interp *it, const ir_node *n, double *out) {
    int grad = n->op == IR_OP_CROSS_ENTROPY_GRAD;
    const ir_node *ln = &it->g->nodes[n->inputs[grad ? 1 : 0]];
    const double *logits = it->val[n->inputs[grad ? 1 : 0]], *labels = it->val[n->inputs[grad ? 2 : 1]];
    int64_t B = ln->shape[0], K = ln->shape[1];
    double s = it->val[n->inputs[grad ? 3 : 2]][IR_OPT_LABEL_SMOOTHING], total = 0;
    double dloss = grad ? it->val[n->inputs[0]][0] : 0;
    for (int64_t b = 0; b < B; b++) {
        const double *x = logits + b * K;
        double lab = labels[b];
        if (!(lab >= 0 && lab < (double)K)) {
            snprintf(it->error, sizeof it->error, "label %g of sample %lld is outside [0, %lld)", lab,
                     (long long)b, (long long)K);
            return -1;
        }
        int64_t y = (int64_t)lab;
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < K; j++) mx = x[j] > mx ? x[j] : mx;
        for (int64_t j = 0; j < K; j++) sum += exp(x[j] - mx);
        double lse = mx + log(sum);
        if (grad) {
            for (int64_t j = 0; j < K; j++) {
                double target = (j == y ? 1 - s : 0) + s / (double)K;
                out[b * K + j] = dloss / (double)B * (exp(x[j] - lse) - target);
            }
        } else {
            double mean_nll = 0;
            for (int64_t j = 0; j < K; j++) mean_nll += lse - x[j];
            total += (1 - s) * (lse - x[y]) + s * mean_nll / (double)K;
        }
    }
    if (!grad) out[0] = total / (double)B;
    return 0;
}

static void run_adamw(ir_interp *it, const ir_node *n, double *out) {
    const ir_attrs *a = &n->attrs;
    double *p = it->val[n->inputs[0]], *m = it->val[n->inputs[2]], *vv = it->val[n->inputs[3]];
    const double *gr = it->val[n->inputs[1]], *opt = it->val[n->inputs[4]];
    double lr = opt[IR_OPT_LR], wd = a->decay ? opt[IR_OPT_WEIGHT_DECAY] : 0;
    double bc1 = opt[IR_OPT_BIAS_CORR1], bc2 = opt[IR_OPT_BIAS_CORR2], gs = opt[IR_OPT_GRAD_SCALE];
    double b1 = opt[IR_OPT_BETA1], nb1 = opt[IR_OPT_ONE_MINUS_BETA1], b2 = opt[IR_OPT_BETA2];
    double nb2 = opt[IR_OPT_ONE_MINUS_BETA2], eps = opt[IR_OPT_ADAM_EPS];
    ir_dtype pt = it->g->nodes[n->inputs[0]].dtype;
    int64_t k = ir_numel(n);
    if (opt[IR_OPT_SKIP] != 0) { /* a skipped step (loss scaling): weight and moments as they are */
        memcpy(out, p, sizeof(double) * (size_t)k);
        return;
    }
    for (int64_t i = 0; i < k; i++) {
        double g = gr[i] * gs;
        m[i] = b1 * m[i] + nb1 * g;
        vv[i] = b2 * vv[i] + nb2 * g * g;
        double denom = sqrt(vv[i]) / sqrt(bc2) + eps;
        double np = p[i] * (1 - lr * wd) - (lr / bc1) * m[i] / denom;
        if (!it->use_f64) {
            m[i] = (float)m[i];
            vv[i] = (float)vv[i];
            np = round_dtype(np, pt);
        }
        p[i] = out[i] = np;
        if (n->ninputs > 5) it->val[n->inputs[5]][i] = it->use_f64 ? np : round_dtype(np, it->g->nodes[n->inputs[5]].dtype);
    }
}

/* Before the first run: every ADAMW's 16-bit copy is its bound weight, rounded. */
static void make_weight_copies(ir_interp *it) {
    for (int i = 0; i < it->g->n; i++) {
        const ir_node *n = &it->g->nodes[i];
        if (n->op != IR_OP_ADAMW || n->ninputs < 6) continue;
        const ir_node *c = &it->g->nodes[n->inputs[5]];
        for (int64_t j = 0; j < ir_numel(c); j++)
            it->val[n->inputs[5]][j] = it->use_f64 ? it->val[n->inputs[0]][j] : round_dtype(it->val[n->inputs[0]][j], c->dtype);
    }
}

/* Loss scaling (LOSS_SCALE_OPT, LOSS_SCALE_UPDATE): float arithmetic throughout, the scaler
 * being an f32 state, as the kernels compute it. The step's gradients count as finite when their
 * SUM_SQUARES is not NaN (NaN: some gradient was inf or NaN; +inf from finite values is a sum
 * that overflowed) and, for a scale below 1 (inv = (float)(1 / (double)scale) > 1), also
 * (float)ss * inv * inv is finite: unscaling must not overflow. With a scale of at least 1 that
 * is exactly GradScaler's "every unscaled gradient finite". */
static float scaler_inv(const double *sc) { return (float)(1.0 / (double)(float)sc[IR_SCALER_SCALE]); }

static int scaler_finite(const double *sc, double ss) {
    float inv = scaler_inv(sc), s = (float)ss, u = s * inv;
    u *= inv;
    return s == s && (inv <= 1.0f || fabsf(u) <= 0x1.fffffep127f);
}

static void run_loss_scale_opt(ir_interp *it, const ir_node *n, double *out) {
    const double *ss = it->val[n->inputs[0]], *opt = it->val[n->inputs[1]], *sc = it->val[n->inputs[2]];
    int skip = (int)sc[IR_SCALER_MODE] != IR_LOSS_SCALE_NONE && !scaler_finite(sc, ss[0]);
    double t = (double)(float)sc[IR_SCALER_STEP] + 1.0;
    memcpy(out, opt, sizeof(double) * IR_OPT_SLOTS);
    out[IR_OPT_GRAD_SCALE] = (float)opt[IR_OPT_GRAD_SCALE] * scaler_inv(sc);
    out[IR_OPT_BIAS_CORR1] = 1 - pow(n->attrs.beta1, t);
    out[IR_OPT_BIAS_CORR2] = 1 - pow(n->attrs.beta2, t);
    out[IR_OPT_SKIP] = skip || opt[IR_OPT_SKIP] != 0 ? 1 : 0;
}

/* GradScaler.update, and the optimizer's step count, in place on the scaler */
static void run_loss_scale_update(ir_interp *it, const ir_node *n, double *out) {
    double *sc = it->val[n->inputs[0]];
    int finite = scaler_finite(sc, it->val[n->inputs[1]][0]), mode = (int)sc[IR_SCALER_MODE];
    float scale = (float)sc[IR_SCALER_SCALE], growth = (float)sc[IR_SCALER_GROWTH];
    sc[IR_SCALER_OVERFLOW] = finite ? 0 : 1;
    if (finite || mode == IR_LOSS_SCALE_NONE) sc[IR_SCALER_STEP] = (float)sc[IR_SCALER_STEP] + 1.0f;
    else sc[IR_SCALER_SKIPPED] = (float)sc[IR_SCALER_SKIPPED] + 1.0f;
    if (mode == IR_LOSS_SCALE_DYNAMIC) {
        if (!finite) {
            scale *= 0.5f;
            growth = 0;
        } else if (growth + 1.0f >= (float)sc[IR_SCALER_INTERVAL]) {
            float grown = scale * 2.0f;
            if (fabsf(grown) <= 0x1.fffffep127f) scale = grown;
            growth = 0;
        } else {
            growth += 1.0f;
        }
        sc[IR_SCALER_SCALE] = scale;
        sc[IR_SCALER_GROWTH] = growth;
    }
    memcpy(out, sc, sizeof(double) * IR_SCALER_SLOTS);
}

/* ---- threads: row-wise ops over ranges of rows, rounding each range as it is done -------- */

enum { GRAIN = 1 << 14 }; /* elements a thread takes at least */

static void round_range(double *at, int64_t lo, int64_t hi, ir_dtype t) {
    for (int64_t j = lo; j < hi; j++) at[j] = round_dtype(at[j], t);
}

typedef struct {
    ir_interp *it;
    int node;
    int64_t width; /* elements of output 0 a row holds */
    double *at;    /* rounding only: the output's elements */
    ir_dtype dtype;
} range_job;

/* rows [lo, hi) of a row-wise op, in pieces of about CACHE_PIECE elements, each rounded while
 * it is in cache */
enum { CACHE_PIECE = 1 << 12 };

static void rows_piece(const range_job *r, int64_t lo, int64_t hi);

static void rows_range(void *ctx, int64_t lo, int64_t hi) {
    const range_job *r = ctx;
    int64_t piece = CACHE_PIECE / r->width + 1;
    for (int64_t at = lo; at < hi; at += piece) rows_piece(r, at, hi - at < piece ? hi : at + piece);
}

static void rows_piece(const range_job *r, int64_t lo, int64_t hi) {
    const ir_graph *g = r->it->g;
    const ir_node *n = &g->nodes[r->node];
    double **v = r->it->val, *out = v[r->node];
    switch (n->op) {
    case IR_OP_PERMUTE:
        run_permute(g, n, v[n->inputs[0]], out, lo, hi);
        break;
    case IR_OP_SOFTMAX: case IR_OP_SOFTMAX_GRAD:
        run_softmax(g, n, v, out, lo, hi);
        break;
    case IR_OP_LAYER_NORM: case IR_OP_LAYER_NORM_DX: case IR_OP_LAYER_NORM_STATS: case IR_OP_LAYER_NORM_DX_STATS:
        run_layer_norm(g, n, v, out, lo, hi);
        break;
    default:
        run_elementwise(g, n, v, out, lo, hi);
        break;
    }
    if (!r->it->use_f64) round_range(out, lo * r->width, hi * r->width, r->dtype); /* output 0 */
}

static void round_job(void *ctx, int64_t lo, int64_t hi) {
    const range_job *r = ctx;
    round_range(r->at, lo, hi, r->dtype);
}

/* Rounds outputs first.. of node i to their dtypes, on the host threads. */
static void round_outputs(ir_interp *it, int i, int first) {
    const ir_node *n = &it->g->nodes[i];
    for (int k = first; k < ir_op_outputs(n->op) && !it->use_f64; k++) {
        ir_node o;
        ir_node_output(n, k, &o);
        range_job r = {it, i, 1, it->val[i] + output_start(n, k), o.dtype};
        ir_par_for(ir_numel(&o), GRAIN, round_job, &r);
    }
}

/* Node i, a row-wise op: `rows` rows of `width` elements of output 0, computed (and rounded)
 * in ranges of rows on the host threads; its other outputs rounded after. */
static int run_rows(ir_interp *it, int i, int64_t rows, int64_t width) {
    ir_node o;
    ir_node_output(&it->g->nodes[i], 0, &o);
    range_job r = {it, i, width, NULL, o.dtype};
    ir_par_for(rows, GRAIN / width + 1, rows_range, &r);
    round_outputs(it, i, 1);
    return 0;
}

static int run_node(ir_interp *it, int i) {
    const ir_graph *g = it->g;
    const ir_node *n = &g->nodes[i];
    double *out = it->val[i], **v = it->val;
    const ir_node *x = n->ninputs ? &g->nodes[n->inputs[0]] : NULL;
    int64_t total = ir_numel(n);
    switch (n->op) {
    case IR_OP_INPUT:
    case IR_OP_WEIGHT:
    case IR_OP_STATE:
        return 0; /* bound from outside (or updated in place) */
    case IR_OP_CONST:
        for (int64_t k = 0; k < total; k++) out[k] = n->attrs.alpha;
        break;
    case IR_OP_RESHAPE:
        memcpy(out, v[n->inputs[0]], sizeof(double) * (size_t)total);
        break;
    case IR_OP_PROJECT: /* already rounded by the node that computed it */
        memcpy(out, v[n->inputs[0]] + output_start(x, n->attrs.output), sizeof(double) * (size_t)total);
        return 0;
    case IR_OP_PERMUTE:
        return run_rows(it, i, total, 1);
    case IR_OP_FLIP_BATCH: { /* y[b] = x[B-1-b] */
        int64_t nb = n->shape[0], inner = nb ? total / nb : 0;
        for (int64_t b = 0; b < nb; b++)
            memcpy(out + b * inner, v[n->inputs[0]] + (nb - 1 - b) * inner, sizeof(double) * (size_t)inner);
        break;
    }
    case IR_OP_EXPAND: {
        int64_t idx[IR_MAX_DIMS];
        for (int64_t k = 0; k < total; k++) {
            unravel(k, n->ndim, n->shape, idx);
            out[k] = v[n->inputs[0]][bcast_offset(x, n->ndim, idx)];
        }
        break;
    }
    case IR_OP_SUM_TO: {
        int64_t idx[IR_MAX_DIMS], in_total = ir_numel(x);
        memset(out, 0, sizeof(double) * (size_t)total);
        for (int64_t k = 0; k < in_total; k++) {
            unravel(k, x->ndim, x->shape, idx);
            out[bcast_offset(n, x->ndim, idx)] += v[n->inputs[0]][k];
        }
        break;
    }
    case IR_OP_CONCAT: {
        int64_t at = 0;
        for (int k = 0; k < n->ninputs; k++) {
            const ir_node *in = &g->nodes[n->inputs[k]];
            int64_t len = in->shape[n->attrs.axis];
            int64_t outer = 1, inner = 1, dim = n->shape[n->attrs.axis];
            for (int d = 0; d < n->attrs.axis; d++) outer *= n->shape[d];
            for (int d = (int)n->attrs.axis + 1; d < n->ndim; d++) inner *= n->shape[d];
            for (int64_t o = 0; o < outer; o++)
                memcpy(out + (o * dim + at) * inner, v[n->inputs[k]] + o * len * inner,
                       sizeof(double) * (size_t)(len * inner));
            at += len;
        }
        break;
    }
    case IR_OP_SLICE:
        run_slice(x, n, n->attrs.axis, n->attrs.start, n->attrs.end - n->attrs.start,
                  v[n->inputs[0]], out, 0);
        break;
    case IR_OP_PAD:
        run_slice(n, n, n->attrs.axis, n->attrs.start, n->attrs.end - n->attrs.start,
                  v[n->inputs[0]], out, 1);
        break;
    case IR_OP_PATCHIFY:
        run_patchify(x, n->attrs.patch, v[n->inputs[0]], out, 1);
        break;
    case IR_OP_UNPATCHIFY:
        run_patchify(n, n->attrs.patch, out, v[n->inputs[0]], 0);
        break;
    case IR_OP_MATMUL:
        run_matmul(g, n, v, out, n->attrs.compute == IR_COMPUTE_TF32 && !it->use_f64);
        break;
    case IR_OP_REDUCE_MEAN: {
        int64_t outer = 1, inner = 1, dim = x->shape[n->attrs.axis];
        for (int d = 0; d < n->attrs.axis; d++) outer *= x->shape[d];
        for (int d = (int)n->attrs.axis + 1; d < x->ndim; d++) inner *= x->shape[d];
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i2 = 0; i2 < inner; i2++) {
                double s = 0;
                for (int64_t k = 0; k < dim; k++) s += v[n->inputs[0]][(o * dim + k) * inner + i2];
                out[o * inner + i2] = s / (double)dim;
            }
        break;
    }
    case IR_OP_LAYER_NORM_DGAMMA: {
        int64_t C = last_dim(&g->nodes[n->inputs[1]]);
        run_layer_norm(g, n, v, out, 0, ir_numel(&g->nodes[n->inputs[1]]) / C);
        break;
    }
    case IR_OP_LAYER_NORM: case IR_OP_LAYER_NORM_DX:
    case IR_OP_LAYER_NORM_STATS: case IR_OP_LAYER_NORM_DX_STATS:
    case IR_OP_SOFTMAX: case IR_OP_SOFTMAX_GRAD: {
        const ir_node *xn = &g->nodes[n->inputs[n->op == IR_OP_LAYER_NORM_DX || n->op == IR_OP_LAYER_NORM_DX_STATS]];
        return run_rows(it, i, ir_numel(xn) / last_dim(xn), last_dim(xn));
    }
    case IR_OP_CROSS_ENTROPY: case IR_OP_CROSS_ENTROPY_GRAD:
        if (run_cross_entropy(it, n, out)) return -1;
        break;
    case IR_OP_SUM_SQUARES: {
        double s = 0;
        for (int k = 0; k < n->ninputs; k++) {
            int64_t m = ir_numel(&g->nodes[n->inputs[k]]);
            for (int64_t j = 0; j < m; j++) /* a value not finite: NaN (+inf: the sum overflowed) */
                s += isfinite(v[n->inputs[k]][j]) ? v[n->inputs[k]][j] * v[n->inputs[k]][j] : NAN;
        }
        out[0] = s;
        break;
    }
    case IR_OP_CLIP_COEF: { /* torch.nn.utils.clip_grad_norm_, on the unscaled gradients */
        const double *opt = v[n->inputs[1]];
        double gs = opt[IR_OPT_GRAD_SCALE], norm = sqrt(v[n->inputs[0]][0]) * fabs(gs);
        double max_norm = opt[IR_OPT_CLIP_NORM], coef = max_norm / (norm + 1e-6);
        memcpy(out, opt, sizeof(double) * IR_OPT_SLOTS);
        if (max_norm > 0) out[IR_OPT_GRAD_SCALE] = gs * (coef < 1 ? coef : 1);
        break;
    }
    case IR_OP_ATTENTION: case IR_OP_ATTENTION_BWD:
        ir_interp_attention(g, n, v, out);
        break;
    case IR_OP_ADAMW:
        run_adamw(it, n, out);
        return 0;
    case IR_OP_LOSS_SCALE_OPT:
        run_loss_scale_opt(it, n, out);
        break;
    case IR_OP_LOSS_SCALE_UPDATE:
        run_loss_scale_update(it, n, out);
        return 0;
    case IR_OP_EMA: { /* in place on the state: ema = d ema + (1 - d) w */
        double *ema = v[n->inputs[0]];
        const double *w = v[n->inputs[1]], *opt = v[n->inputs[2]];
        double d = opt[IR_OPT_EMA_DECAY], nd = opt[IR_OPT_ONE_MINUS_EMA_DECAY];
        for (int64_t k = 0; k < total; k++) {
            double e = d * ema[k] + nd * w[k];
            if (!it->use_f64) e = round_dtype(e, n->dtype);
            ema[k] = out[k] = e;
        }
        return 0;
    }
    default: /* the elementwise ops */
        assert(ir_op_flags(n->op) & IR_OPF_ELEMENTWISE);
        return run_rows(it, i, total, 1);
    }
    round_outputs(it, i, 0); /* each output to its dtype */
    return 0;
}

int ir_interp_run(ir_interp *it) {
    it->error[0] = 0;
    if (it->runs++ == 0) make_weight_copies(it);
    for (int i = 0; i < it->g->n; i++) {
        if (!ir_values_take(&it->values, i)) {
            const ir_node *n = &it->g->nodes[i];
            snprintf(it->error, sizeof it->error, "%s '%.200s': out of memory for its value (%lld doubles)",
                     ir_op_name(n->op), n->name ? n->name : "", (long long)ir_value_len(n));
            return -1;
        }
        if (run_node(it, i)) {
            const ir_node *n = &it->g->nodes[i];
            char why[256];
            snprintf(why, sizeof why, "%.255s", it->error);
            snprintf(it->error, sizeof it->error, "%s '%.200s': %s", ir_op_name(n->op),
                     n->name ? n->name : "", why);
            return -1;
        }
        ir_values_after_node(&it->values, i);
    }
    return 0;
}
