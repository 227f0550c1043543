/* exe_session.c: what every command of the executable stands on (exe.c has the overview): the
 * session (the plan tensors the runtime fills and reads, the device, the host batch staging),
 * weights (--init, the model's own values or the plan's initializers), the data (--data,
 * --synthetic), the per-step uploads (batch, optimizer slots) and downloads, and checkpoints:
 * --save and --checkpoint files (never with a NaN or infinity) and --resume (checksums verified,
 * the run's options compared).
 */
#include "runtime/exe_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the session: plan tensors, device, host staging ----------------------------------------- */

static const rt_plan_tensor *find_tensor(const rt_plan *p, rt_role role, const char *name) {
    for (int i = 0; i < p->num_tensors; i++)
        if (p->tensors[i].role == role && strcmp(p->tensors[i].name, name) == 0) return &p->tensors[i];
    return NULL;
}

int64_t rt_exe_numel(const rt_plan_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* float -> the tensor's dtype (f32, f16, bf16) */
static void from_f32(const float *src, int64_t n, rt_dtype t, void *dst) {
    if (t == RT_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
    } else {
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++) h[i] = t == RT_F16 ? rt_float_to_half(src[i]) : rt_float_to_bf16(src[i]);
    }
}

static void to_f32(const void *src, int64_t n, rt_dtype t, float *dst) {
    rt_tensor tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.dtype = t;
    tmp.ndim = 1;
    tmp.shape[0] = n;
    tmp.nbytes = (size_t)n * rt_dtype_size(t);
    tmp.data = (void *)src;
    if (rt_tensor_to_f32(&tmp, dst)) memset(dst, 0, sizeof(float) * (size_t)n);
}

static int is_float(rt_dtype t) { return t == RT_F32 || t == RT_F16 || t == RT_BF16; }

void rt_exe_session_free(session *s) {
    rt_device_free(s->dev);
    free(s->batch_f32);
    free(s->stage);
    free(s->label_stage);
    memset(s, 0, sizeof *s);
}

/* Finds the tensors the runtime fills and reads, checks them, opens the device. */
int rt_exe_session_open(session *s, const rt_plan *p, int need_device) {
    memset(s, 0, sizeof *s);
    s->p = p;
    s->best_top1 = -1;
    s->stage_slot = -1; /* uploads at once, unless train stages a step (exe_stage.c) */
    char err[1200];
    if (rt_plan_check(p, err, sizeof err)) return rt_exe_error("%s", err);
    for (int i = 0; i < p->num_tensors; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if (t->role == RT_ROLE_INPUT && strcmp(t->name, "images") && strcmp(t->name, "labels") &&
            strcmp(t->name, "opt") && strcmp(t->name, "mix") && strcmp(t->name, "drop_path"))
            return rt_exe_error("plan: input '%s' is not one the runtime fills (images, labels, opt, mix, drop_path)",
                                t->name);
    }
    s->images = find_tensor(p, RT_ROLE_INPUT, "images");
    s->labels = find_tensor(p, RT_ROLE_INPUT, "labels");
    s->opt = find_tensor(p, RT_ROLE_INPUT, "opt");
    s->loss = find_tensor(p, RT_ROLE_OUTPUT, "loss");
    s->logits = find_tensor(p, RT_ROLE_OUTPUT, "logits");
    s->scaler = find_tensor(p, RT_ROLE_STATE, "loss_scaler");
    s->mix = find_tensor(p, RT_ROLE_INPUT, "mix");
    s->drop_path = find_tensor(p, RT_ROLE_INPUT, "drop_path");
    if (s->scaler && (s->scaler->dtype != RT_F32 || rt_exe_numel(s->scaler) != RT_SCALER_SLOTS || !s->scaler->init_data))
        return rt_exe_error("plan: the state 'loss_scaler' must be f32 [%d] with its initial value", RT_SCALER_SLOTS);
    if (!s->images || s->images->ndim != 4 || s->images->shape[0] != p->batch || !is_float(s->images->dtype))
        return rt_exe_error("plan: needs a float input 'images' of shape [batch=%lld,C,H,W]", (long long)p->batch);
    if (!s->labels || rt_exe_numel(s->labels) != p->batch || (s->labels->dtype != RT_I64 && s->labels->dtype != RT_I32))
        return rt_exe_error("plan: needs an integer input 'labels' of shape [%lld]", (long long)p->batch);
    if (!s->opt || s->opt->dtype != RT_F32 || rt_exe_numel(s->opt) < RT_OPT_SLOTS)
        return rt_exe_error("plan: needs an f32 input 'opt' with %d slots", RT_OPT_SLOTS);
    if (!s->loss || !is_float(s->loss->dtype) || rt_exe_numel(s->loss) < 1)
        return rt_exe_error("plan: needs a float output 'loss'");
    if (s->logits && (!is_float(s->logits->dtype) || rt_exe_numel(s->logits) != p->batch * p->num_classes))
        s->logits = NULL; /* not the [batch, classes] logits eval can use */
    s->image_numel = s->images->shape[1] * s->images->shape[2] * s->images->shape[3];
    s->batch_f32 = malloc(sizeof(float) * (size_t)(p->batch * s->image_numel));
    s->stage = malloc(sizeof(float) * (size_t)(p->batch * s->image_numel));
    s->label_stage = malloc(sizeof(int64_t) * (size_t)p->batch);
    if (!s->batch_f32 || !s->stage || !s->label_stage) return rt_exe_error("out of memory for the host batch");
    if (need_device && getenv("DEITC_TF32"))
        fprintf(stderr, "note: DEITC_TF32 is ignored: this executable was compiled with --precision %s "
                        "(TF32 products: deitc compile --precision tf32)\n", p->precision ? p->precision : "fp32");
    if (need_device && rt_device_new(p, &s->dev, err, sizeof err)) return rt_exe_error("%s", err);
    return 0;
}

/* Uploads plan tensor t (converted to its dtype) from file (`path` in messages), else, when the
 * file lacks it, from fallback: the model's own values (init_data), else its initializer.
 * Returns 1 when the file had it, 0 when the fallback was used (none given: nothing uploaded),
 * -1 on error (reported). */
static int upload_tensor(session *s, const rt_plan_tensor *t, const rt_tensor_set *file, const char *path,
                         const char *prefix, int fallback, uint64_t seed) {
    char err[1200];
    int64_t n = rt_exe_numel(t);
    float *buf = malloc(sizeof(float) * (size_t)(n ? n : 1));
    void *conv = malloc((size_t)(n ? n : 1) * rt_dtype_size(t->dtype) + 4);
    if (!buf || !conv) abort();
    char full[600];
    snprintf(full, sizeof full, "%s%s", prefix, t->name);
    int found = file ? rt_weight_read(file, path, full, t->ndim, t->shape, buf, err, sizeof err) : 0;
    if (found < 0) rt_exe_error("%s", err);
    else if (!found && fallback && t->init_data) memcpy(buf, t->init_data, sizeof(float) * (size_t)n);
    else if (!found && fallback) rt_init_fill(t->init, t->init_std, seed, t->name, buf, n);
    if (found > 0 || (found == 0 && fallback)) {
        from_f32(buf, n, t->dtype, conv);
        if (s->dev->upload(s->dev, t->offset, conv, (uint64_t)n * rt_dtype_size(t->dtype))) {
            rt_exe_error("%s", s->dev->err);
            found = -1;
        }
        /* its 16-bit copies (mixed precision): the master as stored, rounded once */
        for (int j = 0; j < s->p->num_tensors && found >= 0; j++) {
            const rt_plan_tensor *c = &s->p->tensors[j];
            if (c->copy_of - 1 != (int)(t - s->p->tensors)) continue;
            to_f32(conv, n, t->dtype, buf);
            from_f32(buf, n, c->dtype, conv);
            if (s->dev->upload(s->dev, c->offset, conv, (uint64_t)n * rt_dtype_size(c->dtype))) {
                rt_exe_error("%s", s->dev->err);
                found = -1;
            }
        }
    }
    free(buf);
    free(conv);
    return found;
}

/* Weights from --init (checked tensor by tensor), else the model file's values embedded in
 * the plan, else the plan's initializers; state zeroed (or set to its embedded start). --init must give every weight unless
 * `partial` (--partial-init), with which a classifier head of another shape is left out too. */
int rt_exe_load_weights(session *s, const char *init, int partial, uint64_t seed) {
    const rt_plan *p = s->p;
    rt_tensor_set set;
    memset(&set, 0, sizeof set);
    char err[1200];
    if (partial && !init) return rt_exe_error("--partial-init needs --init");
    if (init && rt_safetensors_read_checked(init, 0, &set, err, sizeof err) < 0) return rt_exe_error("%s", err);
    char note[600], full[600];
    const char *prefix = init ? rt_weights_prefix(&set, init, note, sizeof note) : "";
    if (*prefix) fprintf(stderr, "%s: note: %s\n", rt_exe_prog, note);
    const char **missing = calloc((size_t)p->num_tensors + 1, sizeof *missing);
    if (!missing) abort();
    int rc = 0, used = 0, nmissing = 0, total = 0;
    for (int i = 0; i < p->num_tensors && !rc; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if (t->role == RT_ROLE_STATE) { /* zero, its embedded start (the loss scaler's), or a weight's
                                           16-bit copy, which is made with the weight */
            int failed = t->copy_of ? 0
                         : t->init_data ? upload_tensor(s, t, NULL, NULL, "", 1, seed) < 0
                                        : s->dev->zero(s->dev, t->offset, t->bytes) != 0;
            if (failed) rc = t->init_data ? 1 : rt_exe_error("%s", s->dev->err);
            continue;
        }
        if (t->role != RT_ROLE_WEIGHT) continue;
        total++;
        snprintf(full, sizeof full, "%s%s", prefix, t->name);
        const rt_tensor *ft = init ? rt_tensor_set_find(&set, full) : NULL;
        int same = ft && ft->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = ft->shape[d] == t->shape[d];
        int adapted = ft && !same ? rt_exe_init_adapt(s, t, ft, init, seed) : 0; /* finetune.c: new head, pos_embed */
        if (adapted) {
            if (adapted < 0) rc = 1;
            used++;
            continue;
        }
        int skip = ft && !same && partial && rt_weight_is_head(t->name); /* a new head */
        int found = upload_tensor(s, t, init && !skip ? &set : NULL, init, prefix, !init || partial, seed);
        if (found < 0) rc = 1;
        else if (found) used++;
        else if (init) missing[nmissing++] = t->name, used += skip; /* a skipped head is no stray tensor */
    }
    if (!rc && nmissing) {
        char msg[1024];
        rt_weights_missing_text(init, missing, nmissing, total, partial, msg, sizeof msg);
        if (partial) fprintf(stderr, "%s: note: %s\n", rt_exe_prog, msg);
        else rc = rt_exe_error("%s", msg);
    }
    free(missing);
    if (!rc && init && used < set.count) {
        const char *first = "?";
        for (int i = 0; i < set.count; i++)
            if (!find_tensor(p, RT_ROLE_WEIGHT, set.tensors[i].name + strlen(prefix))) {
                first = set.tensors[i].name;
                break;
            }
        fprintf(stderr, "%s: note: %d tensor(s) in %s are not weights of this model (e.g. '%s'); ignored\n",
                rt_exe_prog, set.count - used, init, first);
    }
    rt_tensor_set_free(&set);
    return rc;
}

/* Gathers images/labels idx[0..batch) of ds and uploads them. */
int rt_exe_fill_batch(session *s, const rt_dataset *ds, const int64_t *idx) {
    const rt_plan *p = s->p;
    int64_t n = p->batch * s->image_numel;
    /* a staged step (exe_stage.c): the uint8 bytes only, normalized on the device */
    uint8_t *u8 = !ds->images && ds->images_u8 && ds->c * ds->h * ds->w == s->image_numel
                      ? rt_exe_stage_u8(s, ds->mean, ds->std) : NULL;
    if (u8) {
        for (int64_t i = 0; i < p->batch; i++)
            memcpy(u8 + i * s->image_numel, ds->images_u8 + idx[i] * s->image_numel, (size_t)s->image_numel);
    } else {
        for (int64_t i = 0; i < p->batch; i++) rt_dataset_image(ds, idx[i], s->batch_f32 + i * s->image_numel);
        const void *img = s->batch_f32;
        if (s->images->dtype != RT_F32) {
            from_f32(s->batch_f32, n, s->images->dtype, s->stage);
            img = s->stage;
        }
        if (s->dev->upload(s->dev, s->images->offset, img, (uint64_t)n * rt_dtype_size(s->images->dtype)))
            return rt_exe_error("%s", s->dev->err);
    }
    for (int64_t i = 0; i < p->batch; i++) {
        if (s->labels->dtype == RT_I64) ((int64_t *)s->label_stage)[i] = ds->labels[idx[i]];
        else ((int32_t *)s->label_stage)[i] = (int32_t)ds->labels[idx[i]];
    }
    return rt_exe_put(s, s->labels->offset, s->label_stage, (uint64_t)p->batch * rt_dtype_size(s->labels->dtype));
}

int rt_exe_set_opt(session *s, double lr, const rt_opt_run *r, long t) {
    double exact[RT_OPT_SLOTS];
    float slots[RT_OPT_SLOTS];
    rt_opt_fill(exact, lr, r, t);
    for (int k = 0; k < RT_OPT_SLOTS; k++) slots[k] = (float)exact[k];
    if (rt_exe_put(s, s->opt->offset, slots, sizeof slots)) return 1;
    /* unmixed, nothing dropped, unless train sets this step's after */
    return rt_exe_set_mix(s, NULL, 0, t) || rt_exe_set_drop_path(s, 0, 0, t);
}

int rt_exe_read_f32(session *s, const rt_plan_tensor *t, int64_t n, float *out) {
    size_t bytes = (size_t)n * rt_dtype_size(t->dtype);
    void *raw = malloc(bytes ? bytes : 1);
    if (!raw) abort();
    int rc = s->dev->download(s->dev, raw, t->offset, bytes);
    if (!rc) to_f32(raw, n, t->dtype, out);
    free(raw);
    return rc ? rt_exe_error("%s", s->dev->err) : 0;
}

int rt_exe_load_data(const exe_args *a, const rt_plan *p, rt_dataset *ds) {
    char err[1200];
    if (a->synthetic) {
        if (rt_dataset_synthetic(p, p->batch, a->seed, ds, err, sizeof err)) return rt_exe_error("%s", err);
        return 0;
    }
    if (!a->data)
        return rt_exe_error("%s needs --data D (an ImageFolder directory, a .safetensors tensor dataset or CIFAR-10 "
                            ".bin)%s", a->cmd, strcmp(a->cmd, "train") ? "" : ", or --synthetic");
    if (rt_dataset_load(a->data, p, ds, err, sizeof err)) return rt_exe_error("%s", err);
    if (ds->images_u8)
        printf("data: %s: %lld images, %lld classes, decoded in %.2f s\n", rt_exe_shown(a->data), (long long)ds->n,
               (long long)ds->classes, ds->load_s);
    return 0;
}

/* ---- checkpoints -------------------------------------------------------------------------- */

/* The index of the first element of a float tensor that is not finite, or -1. */
static int64_t first_nonfinite(const void *data, int64_t n, rt_dtype t) {
    if (!is_float(t)) return -1;
    float chunk[1024];
    for (int64_t i = 0; i < n; i += 1024) {
        int64_t k = n - i < 1024 ? n - i : 1024;
        to_f32((const char *)data + (size_t)i * rt_dtype_size(t), k, t, chunk);
        for (int64_t j = 0; j < k; j++)
            if (!isfinite(chunk[j])) return i + j;
    }
    return -1;
}

/* The run's options a checkpoint keeps, as metadata keys and values: what --resume compares. */
typedef struct {
    const char *key;
    char value[64];
} run_option;
/* the keys every run has (run_options fills their values in this order) */
static const char *const run_option_keys[] = {"steps", "lr", "weight_decay", "schedule", "warmup_steps", "seed",
                                              "shuffle", "min_lr", "warmup_epochs", "schedule_per",
                                              "label_smoothing", "clip_grad", "beta1", "beta2", "adam_eps",
                                              "ema_decay", "freeze", "aug", "rand_augment", "reprob"};
enum {
    BASE_RUN_OPTIONS = (int)(sizeof run_option_keys / sizeof run_option_keys[0]),
    RUN_OPTIONS = BASE_RUN_OPTIONS + 2 + 1 + 1 /* the loss scaler's 2, mixup's 1, drop path's 1 */
};

_Static_assert(BASE_RUN_OPTIONS == 20, "run_options fills o[0..19]: a new key needs its value there");

/* v in the fewest digits that read back as v (0.1, not 0.10000000000000001) */
static void shortest(double v, char *buf, size_t size) {
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* how many: BASE_RUN_OPTIONS, 2 more for a plan with a loss scaler, mixup's and drop path's */
static int run_options(const session *s, const exe_args *a, const rt_plan *p, long total, run_option o[RUN_OPTIONS]) {
    rt_opt_run r;
    rt_exe_run_opt(a, p, &r);
    for (int i = 0; i < BASE_RUN_OPTIONS; i++) o[i].key = run_option_keys[i];
    snprintf(o[0].value, sizeof o[0].value, "%ld", total);
    shortest(rt_exe_base_lr(a, p), o[1].value, sizeof o[1].value);
    shortest(a->weight_decay, o[2].value, sizeof o[2].value);
    snprintf(o[3].value, sizeof o[3].value, "%s", a->cosine ? "cosine" : "constant");
    snprintf(o[4].value, sizeof o[4].value, "%ld", a->warmup_steps);
    snprintf(o[5].value, sizeof o[5].value, "%llu", (unsigned long long)a->seed);
    snprintf(o[6].value, sizeof o[6].value, "%s", a->shuffle ? "yes" : "no");
    shortest(a->min_lr, o[7].value, sizeof o[7].value);
    shortest(a->warmup_epochs, o[8].value, sizeof o[8].value);
    snprintf(o[9].value, sizeof o[9].value, "%s", a->schedule_per_epoch ? "epoch" : "step");
    shortest(r.label_smoothing, o[10].value, sizeof o[10].value);
    shortest(r.clip_norm, o[11].value, sizeof o[11].value);
    shortest(r.beta1, o[12].value, sizeof o[12].value);
    shortest(r.beta2, o[13].value, sizeof o[13].value);
    shortest(r.adam_eps, o[14].value, sizeof o[14].value);
    shortest(r.ema_decay, o[15].value, sizeof o[15].value);
    snprintf(o[16].value, sizeof o[16].value, "%.63s", a->freeze ? a->freeze : "none");
    snprintf(o[17].value, sizeof o[17].value, "%s", a->aug ? a->aug : "none");
    snprintf(o[18].value, sizeof o[18].value, "%.63s", a->rand_augment ? a->rand_augment : "--aug's");
    if (a->has_reprob) shortest(a->reprob, o[19].value, sizeof o[19].value);
    else snprintf(o[19].value, sizeof o[19].value, "--aug's");
    int k = BASE_RUN_OPTIONS;
    const char *sk[2];
    char sv[2][64];
    for (int i = 0, n = rt_exe_scaler_run_options(s, a, sk, sv); i < n; i++, k++) {
        o[k].key = sk[i];
        memcpy(o[k].value, sv[i], sizeof sv[i]);
    }
    if (rt_exe_mix_run_option(s, &a->mix, &o[k].key, o[k].value, sizeof o[k].value)) k++;
    if (s->drop_path) {
        o[k].key = "drop_path";
        shortest(a->drop_path, o[k].value, sizeof o[k].value);
        k++;
    }
    return k;
}

/* What a checkpoint must match, whatever --resume-override says: the model, the batch and the
 * compile (a fingerprint of the plan: tensors, their shapes, dtypes and offsets, the steps'
 * kernels, the precision), as metadata "model", "deitc.batch", "deitc.plan". */
static void plan_fingerprint(const rt_plan *p, char out[17]) {
    uint64_t h = 1469598103934665603ull;
#define MIX(ptr, len)                                                                    \
    for (size_t k_ = 0; k_ < (size_t)(len); k_++) h = (h ^ ((const unsigned char *)(ptr))[k_]) * 1099511628211ull
    const char *prec = p->precision ? p->precision : "";
    MIX(prec, strlen(prec) + 1);
    MIX(&p->arena_bytes, sizeof p->arena_bytes);
    MIX(&p->num_steps, sizeof p->num_steps);
    for (int i = 0; i < p->num_tensors; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        MIX(t->name, strlen(t->name) + 1);
        MIX(&t->role, sizeof t->role);
        MIX(&t->dtype, sizeof t->dtype);
        MIX(t->shape, sizeof(int64_t) * (size_t)t->ndim);
        MIX(&t->offset, sizeof t->offset);
    }
    for (int i = 0; i < p->num_kernels; i++) MIX(p->kernel_names[i], strlen(p->kernel_names[i]) + 1);
#undef MIX
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* The trained weights (--save: timm's names, loadable by timm), or with with_state a checkpoint
 * (--checkpoint): the weights, the optimizer state (adam_m.*, adam_v.*) and the step reached,
 * as the I64 tensor "checkpoint.step", which --resume continues from. dtype (--save-dtype):
 * f32 weights written as F16 or BF16 (round to nearest even; half the bytes, timm loads both);
 * checkpoints always keep what the plan holds, so that a resumed run is exact. */
int rt_exe_save_weights(session *s, const char *path, long steps, int with_state, const exe_args *a, long total,
                        rt_dtype dtype) {
    const rt_plan *p = s->p;
    rt_tensor *ts = calloc((size_t)p->num_tensors + 2, sizeof *ts);
    if (!ts) abort();
    int n = 0, rc = 0;
    int64_t step64 = steps;
    for (int i = 0; i < p->num_tensors && !rc; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if (t->role != RT_ROLE_WEIGHT && !(with_state && t->role == RT_ROLE_STATE)) continue;
        rt_tensor *o = &ts[n++];
        o->name = (char *)t->name;
        o->dtype = t->dtype;
        o->ndim = t->ndim;
        memcpy(o->shape, t->shape, sizeof o->shape);
        o->nbytes = (size_t)rt_exe_numel(t) * rt_dtype_size(t->dtype);
        o->data = malloc(o->nbytes ? o->nbytes : 1);
        if (!o->data) abort();
        if (s->dev->download(s->dev, o->data, t->offset, o->nbytes)) rc = rt_exe_error("%s", s->dev->err);
        int64_t bad = rc ? -1 : first_nonfinite(o->data, rt_exe_numel(t), t->dtype);
        if (bad >= 0)
            rc = rt_exe_error("not writing %s: %s '%s' holds a NaN or infinity at element %lld after step %ld "
                              "(training diverged: try a smaller --lr); the file is left as it was",
                              path, t->role == RT_ROLE_STATE ? "optimizer state" : "weight", t->name, (long long)bad,
                              steps);
        if (!rc && !with_state && t->dtype == RT_F32 && dtype != RT_F32) { /* narrowed in place */
            const float *f = o->data;
            uint16_t *h = o->data;
            for (int64_t k = 0; k < rt_exe_numel(t); k++)
                h[k] = dtype == RT_F16 ? rt_float_to_half(f[k]) : rt_float_to_bf16(f[k]);
            o->dtype = dtype;
            o->nbytes /= 2;
        }
    }
    rt_strbuf meta = {0};
    if (!rc) {
        char err[1200];
        rt_sb_puts(&meta, "{\"format\":\"pt\",\"model\":");
        rt_sb_json_string(&meta, p->model_name ? p->model_name : "?");
        rt_sb_printf(&meta, ",\"steps\":\"%ld\",\"producer\":\"deitc\"", steps);
        if (with_state) {
            char fp[17];
            plan_fingerprint(p, fp);
            rt_sb_printf(&meta, ",\"deitc.batch\":\"%lld\",\"deitc.plan\":\"%s\"", (long long)p->batch, fp);
            rt_sb_printf(&meta, ",\"deitc.state.best_top1\":\"%.17g\",\"deitc.state.epoch_loss_sum\":\"%.17g\""
                                ",\"deitc.state.epoch_loss_steps\":\"%ld\"",
                         s->best_top1, s->epoch_loss_sum, s->epoch_loss_steps);
            run_option ro[RUN_OPTIONS];
            int nro = run_options(s, a, p, total, ro);
            for (int i = 0; i < nro; i++) {
                rt_sb_printf(&meta, ",\"deitc.run.%s\":", ro[i].key);
                rt_sb_json_string(&meta, ro[i].value);
            }
        }
        rt_sb_puts(&meta, "}");
        if (with_state) {
            rt_tensor *o = &ts[n++];
            o->name = "checkpoint.step";
            o->dtype = RT_I64;
            o->ndim = 1;
            o->shape[0] = 1;
            o->nbytes = sizeof step64;
            o->data = malloc(sizeof step64);
            if (!o->data) abort();
            memcpy(o->data, &step64, sizeof step64);
        }
        if (rt_safetensors_write(path, ts, n, meta.s, err, sizeof err)) rc = rt_exe_error("%s", err);
        else if (with_state) printf("checkpoint at step %ld: %s\n", steps, rt_exe_shown(path));
        else printf("saved %d weight tensors to %s\n", n, rt_exe_shown(path));
    }
    rt_sb_free(&meta);
    for (int i = 0; i < n; i++) free(ts[i].data);
    free(ts);
    return rc;
}

/* metadata key's string value, or "not recorded" */
static const char *meta_value(const char *object, const char *key, rt_strbuf *v) {
    return rt_json_get_string(object, key, v) == 1 && v->s ? v->s : "not recorded";
}

/* --resume: a checkpoint (its checksums verified) of a run with these options (unless
 * --resume-override): its weights and optimizer state (every one of this model's, with its
 * shape) and the step it reached, into *step. */
int rt_exe_load_checkpoint(session *s, const exe_args *a, long total, long *step) {
    const rt_plan *p = s->p;
    const char *path = a->resume;
    rt_tensor_set set;
    memset(&set, 0, sizeof set);
    char err[1200];
    if (rt_safetensors_read_checked(path, 1, &set, err, sizeof err)) return rt_exe_error("%s", err);
    int rc = 0;
    const rt_tensor *st = rt_tensor_set_find(&set, "checkpoint.step");
    int64_t at = 0;
    if (!st || st->dtype != RT_I64 || st->nbytes != sizeof at)
        rc = rt_exe_error("%s: not a checkpoint: it has no I64 tensor 'checkpoint.step' (write one with train "
                          "--checkpoint)", path);
    else {
        memcpy(&at, st->data, sizeof at);
        if (at < 1 || at > LONG_MAX) rc = rt_exe_error("%s: checkpoint.step = %lld is not a step", path, (long long)at);
    }
    if (!rc) { /* another model, batch or compile: never continued, whatever --resume-override says */
        rt_strbuf v = {0};
        char fp[17], batch[32];
        plan_fingerprint(p, fp);
        snprintf(batch, sizeof batch, "%lld", (long long)p->batch);
        const char *model = p->model_name ? p->model_name : "?", *got;
        if (strcmp(got = meta_value(set.metadata, "model", &v), model))
            rc = rt_exe_error("%s: a checkpoint of model '%s', not of this executable's '%s': not resumed", path, got,
                              model);
        else if (strcmp(got = meta_value(set.metadata, "deitc.batch", &v), batch))
            rc = rt_exe_error("%s: a checkpoint of a run at batch %s; this executable's batch is %s: not resumed (a "
                              "run continues at its own batch: deitc compile --batch N)", path, got, batch);
        else if (strcmp(got = meta_value(set.metadata, "deitc.plan", &v), fp))
            rc = rt_exe_error("%s: a checkpoint of another compile of '%s' (plan %s, this executable's %s: other "
                              "compile options, precision or deitc version): not resumed", path, model, got, fp);
        rt_sb_free(&v);
    }
    if (!rc) {
        run_option ro[RUN_OPTIONS];
        int nro = run_options(s, a, p, total, ro);
        rt_strbuf diff = {0}, v = {0};
        for (int i = 0; i < nro; i++) {
            char key[64];
            snprintf(key, sizeof key, "deitc.run.%s", ro[i].key);
            int found = rt_json_get_string(set.metadata, key, &v);
            if (found != 1 || strcmp(v.s, ro[i].value))
                rt_sb_printf(&diff, "%s%s %s (the checkpoint's run: %s)", diff.len ? ", " : "", ro[i].key, ro[i].value,
                             found == 1 ? v.s : "not recorded");
        }
        if (diff.len && !a->resume_override)
            rc = rt_exe_error("%s: this run differs from the checkpoint's: %s; give the same options to continue that "
                              "run, or --resume-override to continue with these",
                              path, diff.s);
        else if (diff.len)
            fprintf(stderr, "%s: note: --resume-override: continuing %s with other options: %s\n", rt_exe_prog, path,
                    diff.s);
        rt_sb_free(&diff);
        rt_sb_free(&v);
    }
    for (int i = 0; i < p->num_tensors && !rc; i++) {
        const rt_plan_tensor *t = &p->tensors[i];
        if (t->role != RT_ROLE_WEIGHT && t->role != RT_ROLE_STATE) continue;
        int found = upload_tensor(s, t, &set, path, "", 0, 0);
        if (found < 0) rc = 1;
        else if (!found)
            rc = rt_exe_error("%s: has no tensor '%s' (%s of this model): not a checkpoint of it", path, t->name,
                              t->role == RT_ROLE_STATE ? "optimizer state" : "a weight");
    }
    if (!rc) { /* the run's state besides the tensors (absent in older checkpoints: a fresh state) */
        rt_strbuf v = {0};
        if (rt_json_get_string(set.metadata, "deitc.state.best_top1", &v) == 1) s->best_top1 = strtod(v.s, NULL);
        if (rt_json_get_string(set.metadata, "deitc.state.epoch_loss_sum", &v) == 1)
            s->epoch_loss_sum = strtod(v.s, NULL);
        if (rt_json_get_string(set.metadata, "deitc.state.epoch_loss_steps", &v) == 1)
            s->epoch_loss_steps = strtol(v.s, NULL, 10);
        rt_sb_free(&v);
    }
    rt_tensor_set_free(&set);
    if (!rc) *step = (long)at;
    return rc;
}

