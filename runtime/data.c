/* data.c: the training data an executable reads, checked against the plan before any step
 * runs: a .safetensors tensor dataset (`images` float [N,C,H,W], already normalized; `labels`
 * integer [N]), or a CIFAR-10 binary batch (.bin: records of 1 label byte + 3x32x32 bytes,
 * normalized here with CIFAR-10's channel mean/std), or an ImageFolder directory (image_folder.c,
 * kept as uint8). Also synthetic data for benchmarks and the deterministic per-epoch shuffle.
 */
#include "runtime/rt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void rt_dataset_image(const rt_dataset *ds, int64_t i, float *out) {
    int64_t plane = ds->h * ds->w;
    if (ds->images) {
        memcpy(out, ds->images + i * ds->c * plane, sizeof(float) * (size_t)(ds->c * plane));
        return;
    }
    const uint8_t *src = ds->images_u8 + i * ds->c * plane;
    for (int64_t c = 0; c < ds->c; c++) {
        float mean = ds->mean[c < 3 ? c : 2], stdv = ds->std[c < 3 ? c : 2], value[256];
        for (int v = 0; v < 256; v++) value[v] = ((float)v / 255.0f - mean) / stdv; /* each byte's, once */
        for (int64_t j = 0; j < plane; j++) out[c * plane + j] = value[src[c * plane + j]];
    }
}

void rt_shuffle(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch) {
    uint64_t state = seed * 0x2545f4914f6cdd1dull ^ (uint64_t)epoch * 0x9e3779b97f4a7c15ull ^ 0x5eedf00dull;
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)(rt_splitmix64(&state) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void rt_dataset_free(rt_dataset *ds) {
    free(ds->images);
    free(ds->images_u8);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

static const rt_plan_tensor *find_input(const rt_plan *p, const char *name) {
    for (int i = 0; i < p->num_tensors; i++)
        if (p->tensors[i].role == RT_ROLE_INPUT && strcmp(p->tensors[i].name, name) == 0) return &p->tensors[i];
    return NULL;
}

/* The model's image shape (C, H, W) from the plan's `images` input, else its header fields. */
void rt_plan_image_shape(const rt_plan *p, int64_t chw[3]) {
    const rt_plan_tensor *t = find_input(p, "images");
    if (t && t->ndim == 4) {
        chw[0] = t->shape[1];
        chw[1] = t->shape[2];
        chw[2] = t->shape[3];
    } else {
        chw[0] = p->in_chans;
        chw[1] = chw[2] = p->img_size;
    }
}

static int check_labels(const char *path, const rt_plan *p, const rt_dataset *ds, char *err, size_t errsize) {
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= p->num_classes)
            return rt_errorf(err, errsize, "%s: labels[%lld] = %lld is out of range: the model has %lld classes", path,
                        (long long)i, (long long)ds->labels[i], (long long)p->num_classes);
    return 0;
}

static int load_safetensors(const char *path, const rt_plan *p, rt_dataset *ds, char *err, size_t errsize) {
    rt_tensor_set set;
    if (rt_safetensors_read(path, &set, err, errsize)) return -1;
    int rc = -1;
    int64_t chw[3];
    rt_plan_image_shape(p, chw);
    rt_tensor *im = (rt_tensor *)rt_tensor_set_find(&set, "images");
    const rt_tensor *lb = rt_tensor_set_find(&set, "labels");
    if (!im || !lb) {
        rt_errorf(err, errsize, "%s: a tensor dataset needs tensors 'images' (f32 [N,%lld,%lld,%lld]) and 'labels' (i64 [N]); "
                           "'%s' is missing",
             path, (long long)chw[0], (long long)chw[1], (long long)chw[2], im ? "labels" : "images");
        goto done;
    }
    if (im->ndim != 4 || im->shape[1] != chw[0] || im->shape[2] != chw[1] || im->shape[3] != chw[2]) {
        char got[160] = "";
        for (int d = 0; d < im->ndim; d++) {
            size_t n = strlen(got);
            snprintf(got + n, sizeof got - n, "%s%lld", d ? "," : "", (long long)im->shape[d]);
        }
        rt_errorf(err, errsize, "%s: tensor 'images' has shape [%s] but the model takes [N,%lld,%lld,%lld]", path, got,
             (long long)chw[0], (long long)chw[1], (long long)chw[2]);
        goto done;
    }
    if (im->dtype != RT_F32 && im->dtype != RT_F16 && im->dtype != RT_BF16) {
        rt_errorf(err, errsize, "%s: tensor 'images' must be a float tensor, not %s", path, rt_dtype_name(im->dtype));
        goto done;
    }
    if (lb->ndim != 1 || lb->shape[0] != im->shape[0]) {
        rt_errorf(err, errsize, "%s: tensor 'labels' must have shape [%lld] (one per image)", path,
             (long long)im->shape[0]);
        goto done;
    }
    if (lb->dtype != RT_I64 && lb->dtype != RT_I32) {
        rt_errorf(err, errsize, "%s: tensor 'labels' must be an integer tensor (I64), not %s", path,
             rt_dtype_name(lb->dtype));
        goto done;
    }
    ds->n = im->shape[0];
    ds->c = chw[0];
    ds->h = chw[1];
    ds->w = chw[2];
    ds->labels = malloc(sizeof(int64_t) * (size_t)(ds->n ? ds->n : 1));
    if (!ds->labels) {
        rt_errorf(err, errsize, "%s: out of memory", path);
        goto done;
    }
    rt_tensor_to_i64(lb, ds->labels);
    if (im->dtype == RT_F32) { /* take the buffer over: no copy */
        ds->images = im->data;
        im->data = NULL;
    } else {
        ds->images = malloc(sizeof(float) * (size_t)(rt_tensor_numel(im) ? rt_tensor_numel(im) : 1));
        if (!ds->images) {
            rt_errorf(err, errsize, "%s: out of memory", path);
            goto done;
        }
        rt_tensor_to_f32(im, ds->images);
    }
    int64_t count = ds->n * ds->c * ds->h * ds->w;
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(ds->images[i])) {
            rt_errorf(err, errsize, "%s: tensor 'images' holds a NaN or infinity (image %lld, element %lld)", path,
                      (long long)(i / (ds->c * ds->h * ds->w)), (long long)(i % (ds->c * ds->h * ds->w)));
            goto done;
        }
    rc = check_labels(path, p, ds, err, errsize);
done:
    rt_tensor_set_free(&set);
    if (rc) rt_dataset_free(ds);
    return rc;
}

static int load_cifar(const char *path, const rt_plan *p, rt_dataset *ds, char *err, size_t errsize) {
    int64_t chw[3];
    rt_plan_image_shape(p, chw);
    if (chw[0] != 3 || chw[1] != 32 || chw[2] != 32)
        return rt_errorf(err, errsize, "%s: CIFAR-10 images are [3,32,32] but the model takes [%lld,%lld,%lld]", path,
                    (long long)chw[0], (long long)chw[1], (long long)chw[2]);
    int64_t size = 0;
    FILE *f = rt_input_fopen(path, 0, &size, err, errsize); /* a FIFO is refused, not waited on */
    if (!f) return -1;
    enum { REC = 1 + 3 * 32 * 32 };
    if (size <= 0 || size % REC) {
        fclose(f);
        return rt_errorf(err, errsize, "%s: size %lld is not a multiple of CIFAR-10's %d-byte records", path,
                         (long long)size, REC);
    }
    ds->n = size / REC;
    ds->c = 3;
    ds->h = ds->w = 32;
    ds->images = malloc(sizeof(float) * (size_t)ds->n * 3 * 32 * 32);
    ds->labels = malloc(sizeof(int64_t) * (size_t)ds->n);
    unsigned char rec[REC];
    static const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, stdv[3] = {0.2470f, 0.2435f, 0.2616f};
    int rc = ds->images && ds->labels ? 0 : rt_errorf(err, errsize, "%s: out of memory", path);
    for (int64_t i = 0; i < ds->n && !rc; i++) {
        if (fread(rec, 1, REC, f) != REC) {
            rc = rt_errorf(err, errsize, "%s: read error at record %lld", path, (long long)i);
            break;
        }
        ds->labels[i] = rec[0];
        float *dst = ds->images + i * 3 * 32 * 32;
        for (int j = 0; j < 3 * 32 * 32; j++) dst[j] = ((float)rec[1 + j] / 255.0f - mean[j / 1024]) / stdv[j / 1024];
    }
    fclose(f);
    if (!rc) rc = check_labels(path, p, ds, err, errsize);
    if (rc) rt_dataset_free(ds);
    return rc;
}

int rt_dataset_load(const char *path, const rt_plan *p, rt_dataset *ds, char *err, size_t errsize) {
    memset(ds, 0, sizeof *ds);
    struct stat st;
    if (stat(path, &st) != 0) return rt_errorf(err, errsize, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return rt_image_folder_load(path, p, ds, err, errsize);
    size_t n = strlen(path);
    if (n >= 4 && strcmp(path + n - 4, ".bin") == 0) return load_cifar(path, p, ds, err, errsize);
    if (n >= 4 && strcmp(path + n - 4, ".dpk") == 0) return rt_dpk_load(path, p, ds, err, errsize);
    if (n < 12 || strcmp(path + n - 12, ".safetensors") != 0)
        return rt_errorf(err, errsize,
                         "%s: unknown dataset type: --data takes an ImageFolder directory, a CIFAR-10 .bin, a "
                         ".safetensors tensor dataset or a packed .dpk",
                         path);
    return load_safetensors(path, p, ds, err, errsize);
}

int rt_dataset_synthetic(const rt_plan *p, int64_t n, uint64_t seed, rt_dataset *ds, char *err, size_t errsize) {
    memset(ds, 0, sizeof *ds);
    int64_t chw[3];
    rt_plan_image_shape(p, chw);
    ds->n = n;
    ds->c = chw[0];
    ds->h = chw[1];
    ds->w = chw[2];
    int64_t per = chw[0] * chw[1] * chw[2];
    ds->images = malloc(sizeof(float) * (size_t)(n * per > 0 ? n * per : 1));
    ds->labels = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!ds->images || !ds->labels) {
        rt_dataset_free(ds);
        return rt_errorf(err, errsize, "synthetic data: out of memory (%lld images)", (long long)n);
    }
    uint64_t state = seed ^ 0xda7a5eedull;
    for (int64_t i = 0; i < n * per; i += 2) { /* Box-Muller pairs */
        double u1 = rt_uniform01(&state), u2 = rt_uniform01(&state);
        double r = sqrt(-2 * log(u1));
        ds->images[i] = (float)(r * cos(6.283185307179586 * u2));
        if (i + 1 < n * per) ds->images[i + 1] = (float)(r * sin(6.283185307179586 * u2));
    }
    for (int64_t i = 0; i < n; i++)
        ds->labels[i] = p->num_classes > 0 ? (int64_t)(rt_splitmix64(&state) % (uint64_t)p->num_classes) : 0;
    return 0;
}

void rt_shuffle_windowed(int64_t *perm, int64_t n, int64_t window, uint64_t seed, int64_t epoch) {
    if (window <= 0 || window >= n) {
        rt_shuffle(perm, n, seed, epoch);
        return;
    }
    int64_t nw = (n + window - 1) / window;
    int64_t *order = malloc(sizeof(int64_t) * (size_t)nw);
    if (!order) abort();
    rt_shuffle(order, nw, seed, epoch); /* which window comes when */
    uint64_t state = seed * 0x94d049bb133111ebull ^ (uint64_t)epoch * 0xbf58476d1ce4e5b9ull ^ 0x3d1ull;
    int64_t at = 0;
    for (int64_t k = 0; k < nw; k++) {
        int64_t lo = order[k] * window, len = n - lo < window ? n - lo : window;
        for (int64_t i = 0; i < len; i++) perm[at + i] = lo + i;
        for (int64_t i = len - 1; i > 0; i--) {
            int64_t j = (int64_t)(rt_splitmix64(&state) % (uint64_t)(i + 1));
            int64_t t = perm[at + i];
            perm[at + i] = perm[at + j];
            perm[at + j] = t;
        }
        at += len;
    }
    free(order);
}
