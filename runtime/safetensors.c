/* safetensors.c: reader and writer for the safetensors format, plus fp16/bf16 conversions.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"k": "v"}}
 * then the body; offsets are relative to the body. The reader trusts nothing: every length,
 * offset, shape and dtype is checked against the file before any tensor is handed out.
 */
#include "runtime/rt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const dtype_names[RT_DTYPE_COUNT] = {"F32", "F16", "BF16", "I32", "I64", "F64"};
static const size_t dtype_sizes[RT_DTYPE_COUNT] = {4, 2, 2, 4, 8, 8};

const char *rt_dtype_name(rt_dtype t) { return (unsigned)t < RT_DTYPE_COUNT ? dtype_names[t] : "?"; }
size_t rt_dtype_size(rt_dtype t) { return dtype_sizes[t]; }

int64_t rt_tensor_numel(const rt_tensor *t) {
    int64_t k = 1;
    for (int i = 0; i < t->ndim; i++) k *= t->shape[i];
    return k;
}

/* ---- a minimal JSON reader for the header ----------------------------------------------- */

typedef struct {
    const char *s, *end, *begin;
    char *err;
    size_t errsize;
    const char *what;
} json;

static void skip_ws(json *j) {
    while (j->s < j->end && (*j->s == ' ' || *j->s == '\n' || *j->s == '\t' || *j->s == '\r')) j->s++;
}

static int expect(json *j, char c) {
    skip_ws(j);
    if (j->s >= j->end || *j->s != c)
        return rt_errorf(j->err, j->errsize, "%s: header JSON: expected '%c' at header byte %ld", j->what,
                    c, (long)(j->s - j->begin));
    j->s++;
    return 0;
}

/* Parses a JSON string into a malloc'ed C string (escapes \" \\ \/ \uXXXX as '?'). */
static char *parse_string(json *j) {
    skip_ws(j);
    if (j->s >= j->end || *j->s != '"') {
        rt_errorf(j->err, j->errsize, "%s: header JSON: expected a string", j->what);
        return NULL;
    }
    j->s++;
    size_t cap = 32, n = 0;
    char *out = malloc(cap);
    if (!out) {
        rt_errorf(j->err, j->errsize, "%s: header JSON: out of memory", j->what);
        return NULL;
    }
    while (j->s < j->end && *j->s != '"') {
        char c = *j->s++;
        if (c == '\\') {
            if (j->s >= j->end) break;
            c = *j->s++;
            if (c == 'u') {
                j->s += (j->end - j->s) >= 4 ? 4 : (j->end - j->s);
                c = '?';
            } else if (c == 'n') {
                c = '\n';
            } else if (c == 't') {
                c = '\t';
            }
        }
        if (n + 2 > cap) {
            char *grown = realloc(out, cap * 2);
            if (!grown) {
                free(out);
                rt_errorf(j->err, j->errsize, "%s: header JSON: out of memory", j->what);
                return NULL;
            }
            out = grown;
            cap *= 2;
        }
        out[n++] = c;
    }
    if (j->s >= j->end) {
        free(out);
        rt_errorf(j->err, j->errsize, "%s: header JSON: unterminated string", j->what);
        return NULL;
    }
    j->s++;
    out[n] = 0;
    return out;
}

static int parse_uint(json *j, uint64_t *v) {
    skip_ws(j);
    if (j->s >= j->end || *j->s < '0' || *j->s > '9')
        return rt_errorf(j->err, j->errsize, "%s: header JSON: expected a non-negative integer", j->what);
    uint64_t x = 0;
    while (j->s < j->end && *j->s >= '0' && *j->s <= '9') {
        if (x > (UINT64_MAX - 9) / 10) return rt_errorf(j->err, j->errsize, "%s: header JSON: integer too large", j->what);
        x = x * 10 + (uint64_t)(*j->s++ - '0');
    }
    *v = x;
    return 0;
}

/* Skips any JSON value (used for unknown keys and __metadata__). depth bounds recursion. */
static int skip_value(json *j, int depth) {
    skip_ws(j);
    if (j->s >= j->end || depth > 64) return rt_errorf(j->err, j->errsize, "%s: header JSON: bad value", j->what);
    char c = *j->s;
    if (c == '"') {
        char *s = parse_string(j);
        free(s);
        return s ? 0 : -1;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->s++;
        skip_ws(j);
        if (j->s < j->end && *j->s == close) {
            j->s++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                char *k = parse_string(j);
                if (!k) return -1;
                free(k);
                if (expect(j, ':')) return -1;
            }
            if (skip_value(j, depth + 1)) return -1;
            skip_ws(j);
            if (j->s < j->end && *j->s == ',') {
                j->s++;
                continue;
            }
            return expect(j, close);
        }
    }
    /* number, true, false, null */
    const char *start = j->s;
    while (j->s < j->end && *j->s != ',' && *j->s != '}' && *j->s != ']' && *j->s != ' ' && *j->s != '\n') j->s++;
    return j->s > start ? 0 : rt_errorf(j->err, j->errsize, "%s: header JSON: bad value", j->what);
}

/* {"dtype": "F32", "shape": [..], "data_offsets": [b, e]} */
static int parse_entry(json *j, rt_tensor *t, uint64_t off[2]) {
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (expect(j, '{')) return -1;
    for (;;) {
        char *key = parse_string(j);
        if (!key) return -1;
        if (expect(j, ':')) {
            free(key);
            return -1;
        }
        int rc = 0;
        if (strcmp(key, "dtype") == 0) {
            char *d = parse_string(j);
            if (!d) rc = -1;
            else {
                int found = -1;
                for (int i = 0; i < RT_DTYPE_COUNT; i++)
                    if (strcmp(d, dtype_names[i]) == 0) found = i;
                if (found < 0)
                    rc = rt_errorf(j->err, j->errsize, "%s: tensor '%s': unsupported dtype '%s'", j->what,
                              t->name, d);
                t->dtype = (rt_dtype)found;
                free(d);
                have_dtype = 1;
            }
        } else if (strcmp(key, "shape") == 0 || strcmp(key, "data_offsets") == 0) {
            int is_shape = key[0] == 's', n = 0;
            rc = expect(j, '[');
            skip_ws(j);
            if (!rc && j->s < j->end && *j->s == ']') j->s++;
            else
                while (!rc) {
                    uint64_t v = 0;
                    if ((rc = parse_uint(j, &v))) break;
                    if (is_shape ? n >= RT_MAX_DIMS : n >= 2) {
                        rc = rt_errorf(j->err, j->errsize, "%s: tensor '%s': too many %s entries", j->what,
                                  t->name, key);
                        break;
                    }
                    if (is_shape) {
                        if (v > ((uint64_t)1 << 40)) {
                            rc = rt_errorf(j->err, j->errsize, "%s: tensor '%s': dimension too large", j->what, t->name);
                            break;
                        }
                        t->shape[n++] = (int64_t)v;
                    } else
                        off[n++] = v;
                    skip_ws(j);
                    if (j->s < j->end && *j->s == ',') {
                        j->s++;
                        continue;
                    }
                    rc = expect(j, ']');
                    break;
                }
            if (!rc && is_shape) t->ndim = n, have_shape = 1;
            if (!rc && !is_shape) {
                if (n != 2) rc = rt_errorf(j->err, j->errsize, "%s: tensor '%s': data_offsets needs 2 entries", j->what, t->name);
                have_offsets = 1;
            }
        } else {
            rc = skip_value(j, 0);
        }
        free(key);
        if (rc) return -1;
        skip_ws(j);
        if (j->s < j->end && *j->s == ',') {
            j->s++;
            continue;
        }
        if (expect(j, '}')) return -1;
        break;
    }
    if (!have_dtype || !have_shape || !have_offsets)
        return rt_errorf(j->err, j->errsize, "%s: tensor '%s': needs dtype, shape and data_offsets", j->what, t->name);
    return 0;
}

/* ---- the name index ---------------------------------------------------------------------- */

static uint32_t name_hash(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Slot of `name` in s->index: the one holding it, else the empty one where it would go. */
static size_t index_slot(const rt_tensor_set *s, const char *name) {
    size_t mask = (size_t)s->index_cap - 1, k = name_hash(name) & mask;
    while (s->index[k] >= 0 && strcmp(s->tensors[s->index[k]].name, name) != 0) k = (k + 1) & mask;
    return k;
}

/* Adds tensor i (its name already set) to the index, growing it to keep it at most half
 * full; 1 when the name is already there, -1 when out of memory, else 0. */
static int index_add(rt_tensor_set *s, int i) {
    if (((size_t)i + 1) * 2 > (size_t)s->index_cap) {
        int cap = s->index_cap ? 2 * s->index_cap : 128;
        int *ix = malloc(sizeof(int) * (size_t)cap);
        if (!ix) return -1;
        memset(ix, 0xff, sizeof(int) * (size_t)cap);
        int *old = s->index;
        s->index = ix;
        s->index_cap = cap;
        for (int k = 0; k < i; k++) s->index[index_slot(s, s->tensors[k].name)] = k;
        free(old);
    }
    size_t k = index_slot(s, s->tensors[i].name);
    if (s->index[k] >= 0) return 1;
    s->index[k] = i;
    return 0;
}

void rt_tensor_set_free(rt_tensor_set *s) {
    for (int i = 0; i < s->count; i++) {
        free(s->tensors[i].name);
        free(s->tensors[i].data);
    }
    free(s->tensors);
    free(s->metadata);
    free(s->index);
    memset(s, 0, sizeof *s);
}

int rt_safetensors_parse(const unsigned char *buf, size_t size, const char *what,
                         rt_tensor_set *out, char *err, size_t errsize) {
    memset(out, 0, sizeof *out);
    if (size < 8) return rt_errorf(err, errsize, "%s: too short for a safetensors file (%zu bytes)", what, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > size - 8 || hlen > (100u << 20))
        return rt_errorf(err, errsize, "%s: header length %llu exceeds the file (%zu bytes): truncated or not safetensors",
                    what, (unsigned long long)hlen, size);
    const unsigned char *body = buf + 8 + hlen;
    size_t body_size = size - 8 - (size_t)hlen;
    json j = {(const char *)buf + 8, (const char *)buf + 8 + hlen, (const char *)buf + 8, err, errsize, what};
    int cap = 0;
    if (expect(&j, '{')) goto bad;
    skip_ws(&j);
    if (j.s < j.end && *j.s == '}') j.s++;
    else
        for (;;) {
            char *key = parse_string(&j);
            if (!key) goto bad;
            if (expect(&j, ':')) {
                free(key);
                goto bad;
            }
            if (strcmp(key, "__metadata__") == 0) {
                const char *start = j.s;
                free(key);
                if (skip_value(&j, 0)) goto bad;
                free(out->metadata);
                out->metadata = strndup(start, (size_t)(j.s - start));
            } else {
                if (out->count == cap) {
                    rt_tensor *nt = cap < (1 << 29) ? realloc(out->tensors, sizeof(rt_tensor) * (size_t)(cap ? cap * 2 : 64)) : NULL;
                    if (!nt) {
                        rt_errorf(err, errsize, "%s: out of memory for %d tensors", what, out->count + 1);
                        free(key);
                        goto bad;
                    }
                    out->tensors = nt;
                    cap = cap ? cap * 2 : 64;
                }
                rt_tensor *t = &out->tensors[out->count];
                memset(t, 0, sizeof *t);
                t->name = key;
                int dup = index_add(out, out->count);
                if (dup) {
                    if (dup > 0) rt_errorf(err, errsize, "%s: tensor '%s' appears twice", what, key);
                    else rt_errorf(err, errsize, "%s: out of memory for %d tensors", what, out->count + 1);
                    free(key);
                    goto bad;
                }
                out->count++;
                uint64_t off[2] = {0, 0};
                if (parse_entry(&j, t, off)) goto bad;
                uint64_t want = rt_dtype_size(t->dtype);
                for (int d = 0; d < t->ndim; d++)
                    if (__builtin_mul_overflow(want, (uint64_t)t->shape[d], &want)) {
                        rt_errorf(err, errsize, "%s: tensor '%s': shape too large", what, t->name);
                        goto bad;
                    }
                if (off[1] < off[0] || off[1] - off[0] != want)
                    { rt_errorf(err, errsize, "%s: tensor '%s': data_offsets [%llu,%llu) hold %llu bytes, shape and dtype need %llu",
                         what, t->name, (unsigned long long)off[0], (unsigned long long)off[1],
                         (unsigned long long)(off[1] - off[0]), (unsigned long long)want); goto bad; }
                if (off[1] > body_size)
                    { rt_errorf(err, errsize, "%s: tensor '%s': data ends at byte %llu of a %zu-byte body: file is truncated",
                         what, t->name, (unsigned long long)off[1], body_size); goto bad; }
                t->nbytes = (size_t)want;
                t->data = malloc(t->nbytes ? t->nbytes : 1);
                if (!t->data) {
                    rt_errorf(err, errsize, "%s: tensor '%s': out of memory for its %zu bytes", what, t->name, t->nbytes);
                    goto bad;
                }
                memcpy(t->data, body + off[0], t->nbytes);
            }
            skip_ws(&j);
            if (j.s < j.end && *j.s == ',') {
                j.s++;
                continue;
            }
            if (expect(&j, '}')) goto bad;
            break;
        }
    return 0;
bad:
    rt_tensor_set_free(out);
    return -1;
}

int rt_safetensors_read(const char *path, rt_tensor_set *out, char *err, size_t errsize) {
    memset(out, 0, sizeof *out);
    void *buf;
    size_t size;
    if (rt_input_read(path, 0, SIZE_MAX / 2, &buf, &size, err, errsize)) return -1;
    char shown[1024];
    int rc = rt_safetensors_parse(buf, size, rt_path_show(path, shown, sizeof shown), out, err, errsize);
    free(buf);
    return rc;
}

const rt_tensor *rt_tensor_set_find(const rt_tensor_set *s, const char *name) {
    if (s->index) {
        int i = s->index[index_slot(s, name)];
        return i >= 0 ? &s->tensors[i] : NULL;
    }
    for (int i = 0; i < s->count; i++)
        if (strcmp(s->tensors[i].name, name) == 0) return &s->tensors[i];
    return NULL;
}

int rt_safetensors_write(const char *path, const rt_tensor *tensors, int count,
                         const char *metadata_json, char *err, size_t errsize) {
    /* the header in memory first; its metadata carries the checksums (checksum.c) */
    rt_strbuf h = {0};
    rt_sb_puts(&h, "{");
    uint64_t off = 0;
    for (int i = 0; i < count; i++) {
        const rt_tensor *t = &tensors[i];
        if (i) rt_sb_puts(&h, ",");
        rt_sb_json_string(&h, t->name);
        rt_sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", rt_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) rt_sb_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        rt_sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                     (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    rt_sb_printf(&h, "%s\"__metadata__\":{", count ? "," : "");
    if (metadata_json) { /* an object's text: its members go first */
        const char *open = strchr(metadata_json, '{'), *close = strrchr(metadata_json, '}');
        if (open && close && close > open) {
            size_t before = h.len;
            rt_sb_putn(&h, open + 1, (size_t)(close - open - 1));
            size_t k = before;
            while (k < h.len && (h.s[k] == ' ' || h.s[k] == '\n')) k++;
            if (k < h.len) rt_sb_puts(&h, ",");
        }
    }
    rt_sb_puts(&h, "\"deitc.crc32\":\"");
    rt_checksum_tensors(tensors, count, &h);
    rt_sb_puts(&h, "\",\"deitc.header_crc32\":\"00000000\"}}");
    while (h.len % 8 != 0) rt_sb_puts(&h, " ");
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    rt_checksum_seal_header(len8, h.s, h.len);

    rt_output o;
    if (rt_output_open(&o, path, err, errsize)) {
        rt_sb_free(&h);
        return -1;
    }
    int ok = fwrite(len8, 1, 8, o.f) == 8 && fwrite(h.s, 1, h.len, o.f) == h.len;
    for (int i = 0; ok && i < count; i++)
        ok = fwrite(tensors[i].data, 1, tensors[i].nbytes, o.f) == tensors[i].nbytes;
    rt_sb_free(&h);
    if (!ok) {
        char shown[1024];
        int e = errno;
        rt_output_abort(&o);
        return rt_errorf(err, errsize, "%s: write failed: %s", rt_path_show(path, shown, sizeof shown), strerror(e));
    }
    return rt_output_commit(&o, err, errsize);
}

/* ---- conversions ------------------------------------------------------------------------ */

float rt_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f)
        bits = sign | 0x7f800000u | (mant << 13);
    else if (exp == 0) {
        if (mant == 0)
            bits = sign;
        else { /* subnormal: normalize */
            int e = -1;
            do {
                mant <<= 1;
                e++;
            } while (!(mant & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t rt_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) { /* subnormal or zero in half */
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000;
        int shift = 14 - e;
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into exp: correct */
    return (uint16_t)half;
}

float rt_bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t rt_float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

float rt_round_tf32(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) x |= 0x400000; /* NaN: quiet, payload kept */
    else x = (x + 0xfff + ((x >> 13) & 1)) & ~0x1fffu; /* may carry into the exponent: correct */
    memcpy(&f, &x, 4);
    return f;
}

int rt_tensor_to_f32(const rt_tensor *t, float *out) {
    int64_t n = rt_tensor_numel(t);
    const unsigned char *p = t->data;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        switch (t->dtype) {
        case RT_F32:
            memcpy(&out[i], p + 4 * i, 4);
            break;
        case RT_F16:
            memcpy(&h, p + 2 * i, 2);
            out[i] = rt_half_to_float(h);
            break;
        case RT_BF16:
            memcpy(&h, p + 2 * i, 2);
            out[i] = rt_bf16_to_float(h);
            break;
        case RT_F64: { /* some tools write weights in float64: rounded to nearest float */
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
            break;
        }
        default:
            return -1;
        }
    }
    return 0;
}

static void dims_text(const int64_t *shape, int ndim, char *buf, size_t size) {
    size_t k = 0;
    buf[0] = 0;
    for (int d = 0; d < ndim && k < size; d++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", d ? "," : "", (long long)shape[d]);
}

int rt_tensor_check_finite(const rt_tensor *t, const char *path, char *err, size_t errsize) {
    int64_t n = rt_tensor_numel(t);
    const unsigned char *p = t->data;
    for (int64_t j = 0; j < n; j++) {
        float x;
        uint16_t h;
        if (t->dtype == RT_F32) {
            memcpy(&x, p + 4 * j, 4);
        } else if (t->dtype == RT_F16 || t->dtype == RT_BF16) {
            memcpy(&h, p + 2 * j, 2);
            x = t->dtype == RT_F16 ? rt_half_to_float(h) : rt_bf16_to_float(h);
        } else {
            return 0; /* integers are always finite */
        }
        if (!isfinite(x))
            return rt_errorf(err, errsize, "%s: tensor '%s' holds a NaN or infinity at element %lld", path, t->name,
                             (long long)j);
    }
    return 0;
}

int rt_weight_read(const rt_tensor_set *file, const char *path, const char *name, int ndim,
                   const int64_t *shape, float *out, char *err, size_t errsize) {
    const rt_tensor *t = rt_tensor_set_find(file, name);
    if (!t) return 0;
    char want[160], got[160];
    dims_text(shape, ndim, want, sizeof want);
    dims_text(t->shape, t->ndim, got, sizeof got);
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same)
        return rt_errorf(err, errsize, "%s: tensor '%s' has shape [%s], the model expects [%s]", path, name,
                         got, want);
    if (rt_tensor_to_f32(t, out))
        return rt_errorf(err, errsize, "%s: tensor '%s' is %s, the model expects a float tensor", path, name,
                         rt_dtype_name(t->dtype));
    int64_t n = rt_tensor_numel(t);
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(out[j]))
            return rt_errorf(err, errsize, "%s: tensor '%s' holds a NaN or infinity at element %lld", path,
                             name, (long long)j);
    return 1;
}

int rt_tensor_to_i64(const rt_tensor *t, int64_t *out) {
    int64_t n = rt_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == RT_I64)
            memcpy(&out[i], (const char *)t->data + 8 * i, 8);
        else if (t->dtype == RT_I32) {
            int32_t v;
            memcpy(&v, (const char *)t->data + 4 * i, 4);
            out[i] = v;
        } else
            return -1;
    }
    return 0;
}

int rt_weight_is_head(const char *name) {
    return strncmp(name, "head.", 5) == 0 || strncmp(name, "head_dist.", 10) == 0;
}

void rt_weights_missing_text(const char *path, const char *const *missing, int n, int total, int partial,
                             char *buf, size_t size) {
    int heads = 0;
    for (int k = 0; k < n; k++) heads += rt_weight_is_head(missing[k]);
    char list[600];
    size_t len = 0;
    list[0] = 0;
    for (int k = 0; k < n && k < 6 && len < sizeof list - 1; k++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s'%s'", k ? ", " : "", missing[k]);
    if (n > 6 && len < sizeof list - 1) snprintf(list + len, sizeof list - len, ", ...");
    const char *head = heads == n ? " (a new classifier head, for fine-tuning)" : "";
    if (partial)
        snprintf(buf, size, "%s: --partial-init: %d of the model's %d weights are not in the file and keep the "
                 "model's own values%s: %s", path, n, total, head, list);
    else if (heads == n)
        snprintf(buf, size, "%s: the classifier head is not in the file or has another number of classes (%s); "
                 "to fine-tune a new head from these weights, pass --partial-init", path, list);
    else
        snprintf(buf, size, "%s: gives only part of the model's weights: %d of %d are missing (%s); pass "
                 "--partial-init if the rest is meant to keep the model's own values", path, n, total, list);
}

const char *rt_weights_prefix(const rt_tensor_set *s, const char *path, char *msg, size_t size) {
    static const char *const prefixes[] = {"module.", "model."};
    static _Thread_local char found[64];
    size_t len = 0;
    found[0] = 0;
    for (int again = 1; again && s->count > 0;) {
        again = 0;
        for (size_t k = 0; k < sizeof prefixes / sizeof *prefixes && !again; k++) {
            size_t n = strlen(prefixes[k]);
            int all = len + n < sizeof found;
            for (int i = 0; i < s->count && all; i++)
                all = strncmp(s->tensors[i].name + len, prefixes[k], n) == 0 && s->tensors[i].name[len + n];
            if (!all) continue;
            memcpy(found + len, prefixes[k], n + 1);
            len += n;
            again = 1;
        }
    }
    if (len)
        snprintf(msg, size, "%s: every tensor is named under '%s' (a DistributedDataParallel or wrapped model's "
                 "state_dict): read as named without it", path, found);
    return found;
}
