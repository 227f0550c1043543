/* test_safetensors.c: round trip of every dtype, the oracle files parse, and damaged files
 * (truncated, bad JSON, offsets that disagree with shapes, random bytes) are rejected with a
 * message instead of a crash; 200,000 tensors load in linear time (the duplicate check is a
 * hash set); a FIFO is refused instead of blocking. */
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/rt.h"
#include "tests/harness.h"

static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*size + 1);
    if (fread(b, 1, *size, f) != *size) *size = 0;
    fclose(f);
    return b;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A safetensors buffer of n empty F32 tensors t0..t{n-1}; with dup, the last is named t0. */
static unsigned char *many_tensors(int n, int dup, size_t *size) {
    size_t cap = 16 + (size_t)n * 64, k = 8;
    unsigned char *b = malloc(cap);
    b[k++] = '{';
    for (int i = 0; i < n; i++)
        k += (size_t)snprintf((char *)b + k, cap - k, "%s\"t%d\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
                              i ? "," : "", dup && i == n - 1 ? 0 : i);
    b[k++] = '}';
    uint64_t hl = k - 8;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hl >> (8 * i));
    *size = k;
    return b;
}

/* Issue 15 (8): 200,000 tensors in an 11 MB header took minutes (a linear duplicate check per
 * tensor); they load in well under 2 s now, and a duplicate name is still found. */
static void test_many_tensors(void) {
    enum { N = 200000 };
    char err[512];
    size_t size;
    unsigned char *b = many_tensors(N, 0, &size);
    rt_tensor_set s;
    double t0 = now_s();
    int rc = rt_safetensors_parse(b, size, "many", &s, err, sizeof err);
    double dt = now_s() - t0;
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(rc || s.count == N);
    CHECK(rc || (rt_tensor_set_find(&s, "t199999") == &s.tensors[N - 1] && !rt_tensor_set_find(&s, "t200000")));
#ifdef DEITC_SANITIZE
    double limit = 20.0; /* ASan + UBSan Debug builds are many times slower; quadratic is minutes */
#else
    double limit = 2.0;
#endif
    CHECK_MSG(dt < limit, "%d tensors took %.2f s to parse (limit %.0f s)", N, dt, limit);
    fprintf(stderr, "%d empty tensors (%zu bytes) parsed in %.3f s\n", N, size, dt);
    if (!rc) rt_tensor_set_free(&s);
    free(b);
    b = many_tensors(N, 1, &size);
    CHECK(rt_safetensors_parse(b, size, "dup", &s, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "tensor 't0' appears twice"), "message: %s", err);
    free(b);
}

int main(void) {
    char err[512], path[1024], dir[400];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%.300s/deitc_st_XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    CHECK(mkdtemp(dir) != NULL);

    /* round trip */
    float f32[6] = {1, -2, 3.5f, 0, 1e-8f, 65504};
    uint16_t f16[3] = {rt_float_to_half(1.5f), rt_float_to_half(-0.1f), rt_float_to_half(70000.f)};
    int64_t i64[2] = {7, -1};
    rt_tensor ts[3] = {
        {"a.weight", RT_F32, 2, {2, 3}, sizeof f32, f32},
        {"h", RT_F16, 1, {3}, sizeof f16, f16},
        {"labels", RT_I64, 1, {2}, sizeof i64, i64},
    };
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    CHECK(rt_safetensors_write(path, ts, 3, "{\"format\":\"pt\"}", err, sizeof err) == 0);
    rt_tensor_set s;
    CHECK(rt_safetensors_read(path, &s, err, sizeof err) == 0);
    CHECK(s.count == 3);
    const rt_tensor *a = rt_tensor_set_find(&s, "a.weight");
    CHECK(a && a->ndim == 2 && a->shape[1] == 3 && memcmp(a->data, f32, sizeof f32) == 0);
    float hf[3];
    CHECK(rt_tensor_to_f32(rt_tensor_set_find(&s, "h"), hf) == 0);
    CHECK(hf[0] == 1.5f && fabsf(hf[1] + 0.1f) < 1e-4f && isinf(hf[2]));
    CHECK(s.metadata && strstr(s.metadata, "\"pt\""));
    rt_tensor_set_free(&s);

    /* half conversions: every finite half survives a round trip through float */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = rt_half_to_float((uint16_t)h);
        if (isnan(f)) continue;
        if (rt_float_to_half(f) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d half values do not round-trip", bad);
    CHECK(rt_float_to_half(1.0f + 0x1p-11f) == 0x3c00);           /* tie -> even */
    CHECK(rt_float_to_half(1.0f + 3 * 0x1p-11f) == 0x3c02);       /* tie -> even (up) */
    CHECK(rt_float_to_bf16(1.0f + 0x1p-8f) == 0x3f80);

    /* the oracle files parse */
    snprintf(path, sizeof path, "%s/deit_micro/expected.safetensors", test_env("DEITC_TESTDATA"));
    CHECK(rt_safetensors_read(path, &s, err, sizeof err) == 0);
    CHECK(rt_tensor_set_find(&s, "logits") != NULL);
    rt_tensor_set_free(&s);

    /* damage: every truncation of a real file is rejected without a crash */
    size_t size = 0;
    unsigned char *buf = slurp(path, &size);
    CHECK(buf && size > 1000);
    int accepted = 0;
    for (size_t cut = 0; cut < size; cut += 997) {
        if (rt_safetensors_parse(buf, cut, "cut", &s, err, sizeof err) == 0) {
            accepted++;
            rt_tensor_set_free(&s);
        }
    }
    CHECK_MSG(accepted == 0, "%d truncated files were accepted", accepted);
    CHECK(rt_safetensors_parse(buf, size - 1, "cut", &s, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "truncated") != NULL, "message: %s", err);
    /* random bytes */
    unsigned seed = 1;
    for (int trial = 0; trial < 200; trial++) {
        unsigned char junk[256];
        for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(rand_r(&seed) >> 7);
        if (trial % 2) { junk[0] = 100; memset(junk + 1, 0, 7); junk[8] = '{'; }
        if (rt_safetensors_parse(junk, sizeof junk, "junk", &s, err, sizeof err) == 0) rt_tensor_set_free(&s);
    }
    /* a header whose offsets disagree with the shape */
    const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}";
    unsigned char doc[256] = {0};
    size_t hl = strlen(h);
    doc[0] = (unsigned char)hl;
    memcpy(doc + 8, h, hl);
    CHECK(rt_safetensors_parse(doc, 8 + hl + 16, "doc", &s, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "'w'") && strstr(err, "need 16"), "message: %s", err);
    free(buf);

    test_many_tensors();

    /* a directory is not a file; a shape whose byte count overflows is rejected */
    CHECK(rt_safetensors_read(dir, &s, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "not a regular file (it is a directory)"), "message: %s", err);
    /* a FIFO with no writer is refused, not waited on (issue 15, 9) */
    snprintf(path, sizeof path, "%s/fifo.safetensors", dir);
    CHECK(mkfifo(path, 0600) == 0);
    CHECK(rt_safetensors_read(path, &s, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "not a regular file (it is a FIFO)"), "message: %s", err);
    const char *h2 = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,4194304],\"data_offsets\":[0,0]}}";
    memset(doc, 0, sizeof doc);
    hl = strlen(h2);
    doc[0] = (unsigned char)hl;
    memcpy(doc + 8, h2, hl);
    CHECK(rt_safetensors_parse(doc, 8 + hl, "doc", &s, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "too large"), "message: %s", err);

    /* an unwritable path fails cleanly and leaves nothing */
    CHECK(rt_safetensors_write("/nonexistent-dir/x.safetensors", ts, 1, NULL, err, sizeof err) != 0);
    snprintf(path, sizeof path, "rm -rf %s", dir);
    CHECK(system(path) == 0);
    return test_result();
}
