/* rt.h: the runtime that training executables link (and that the compiler shares for weight
 * files). It never includes IR headers: an executable carries no compiler.
 *
 * Sections follow the files that implement them:
 *   safetensors.c  reading and writing safetensors files, dtype conversion
 *   init.c         deterministic weight initialization (timm's DeiT scheme)
 */
#ifndef DEITC_RT_H
#define DEITC_RT_H

#include <stddef.h>
#include <stdint.h>

/* ---- safetensors.c ---------------------------------------------------------------------- */

/* ORDER: same numbering as ir_dtype (IR_F32 ...), so the compiler can pass dtypes through. */
typedef enum { RT_F32, RT_F16, RT_BF16, RT_I32, RT_I64, RT_DTYPE_COUNT } rt_dtype;

#define RT_MAX_DIMS 8

typedef struct {
    char *name;
    rt_dtype dtype;
    int ndim;
    int64_t shape[RT_MAX_DIMS];
    size_t nbytes;
    void *data; /* nbytes, little-endian elements */
} rt_tensor;

typedef struct {
    rt_tensor *tensors;
    int count;
    char *metadata; /* the raw JSON text of "__metadata__", or NULL */
} rt_tensor_set;

const char *rt_dtype_name(rt_dtype t); /* safetensors spelling: "F32" */
size_t rt_dtype_size(rt_dtype t);
int64_t rt_tensor_numel(const rt_tensor *t);

/* Reads a whole safetensors file. 0 on success; else -1 with err naming the file and what is
 * wrong (truncated body, bad header JSON, unknown dtype, offsets that disagree with shapes). */
int rt_safetensors_read(const char *path, rt_tensor_set *out, char *err, size_t errsize);
/* Same from a memory buffer (fuzzing, tests); `what` names the source in messages. */
int rt_safetensors_parse(const unsigned char *buf, size_t size, const char *what,
                         rt_tensor_set *out, char *err, size_t errsize);
/* Writes tensors (in the given order) to path via a temporary file and rename, so a failed
 * write never leaves a half-written file. metadata_json: an object's text or NULL. */
int rt_safetensors_write(const char *path, const rt_tensor *tensors, int count,
                         const char *metadata_json, char *err, size_t errsize);
void rt_tensor_set_free(rt_tensor_set *s);
const rt_tensor *rt_tensor_set_find(const rt_tensor_set *s, const char *name);

/* Converts a float tensor (F32, F16, BF16) to float32; -1 if the dtype is not a float. */
int rt_tensor_to_f32(const rt_tensor *t, float *out);
/* Converts an integer tensor (I32, I64) to int64; -1 if not an integer dtype. */
int rt_tensor_to_i64(const rt_tensor *t, int64_t *out);
float rt_half_to_float(uint16_t h);
uint16_t rt_float_to_half(float f); /* round to nearest even */
float rt_bf16_to_float(uint16_t h);
uint16_t rt_float_to_bf16(float f); /* round to nearest even */

/* ---- init.c ---------------------------------------------------------------------------- */

/* ORDER: same numbering as ir_init. */
typedef enum { RT_INIT_ZEROS, RT_INIT_ONES, RT_INIT_TRUNC_NORMAL } rt_init;

/* Fills out[0..n) for the weight `name`: zeros, ones, or a normal(0, std) truncated at 2 std.
 * Deterministic in (seed, name), independent of the order weights are initialized in. */
void rt_init_fill(rt_init kind, double std, uint64_t seed, const char *name, float *out, int64_t n);

#endif
