/* test_onnx_hostile.c: hostile ONNX files (issue 15), each made here at test time with the
 * protobuf-c code of onnx.proto (or, where protobuf-c itself would pay for it, as raw bytes):
 *   sizes     external data whose shape claims more bytes than the file has (aborted before:
 *             the tensor was allocated first); a size the file does back but memory cannot
 *             hold is an error message (a sparse file of 4 TiB)
 *   paths     external data through a symbolic link out of the model's folder (read /etc/passwd
 *             into a weight before), a dangling link, a FIFO (blocked forever), overlapping
 *             tensors; a model file that is a FIFO; `deitc export` of such a model
 *   finite    NaN or infinite initializers refused, naming the tensor (scalar infinities are
 *             constants and stay); `deitc export` refuses NaN weights
 *   counts    5 million empty initializers (10 MB; 1.3 GB unpacked before) and 1 million
 *             refused before unpacking, in little time and memory
 */
#include "frontend/frontend.h"
#include "runtime/rt.h"
#include "tests/harness.h"

#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "onnx.pb-c.h"

static char dir[512], err[2048];

/* One float initializer: inline raw_data (data != NULL), or external data (location). */
typedef struct {
    const char *name;
    int ndim;
    int64_t dims[4];
    const float *data;
    const char *location;
    long long offset;
} init_spec;

typedef struct {
    Onnx__TensorProto t;
    Onnx__StringStringEntryProto kv[2];
    Onnx__StringStringEntryProto *kvp[2];
    char off[32];
} init_msg;

/* Writes MatMul(x [1,4], w) -> y with the given initializers (the first is w) to path. */
static void write_model(const char *path, const init_spec *spec, int n) {
    init_msg *im = calloc((size_t)n, sizeof *im);
    Onnx__TensorProto **inits = calloc((size_t)n, sizeof *inits);
    for (int k = 0; k < n; k++) {
        Onnx__TensorProto *t = &im[k].t;
        onnx__tensor_proto__init(t);
        t->name = (char *)spec[k].name;
        t->has_data_type = 1;
        t->data_type = 1;
        t->n_dims = (size_t)spec[k].ndim;
        t->dims = (int64_t *)spec[k].dims;
        int64_t numel = 1;
        for (int d = 0; d < spec[k].ndim; d++) numel *= spec[k].dims[d];
        if (spec[k].location) {
            t->has_data_location = 1;
            t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
            snprintf(im[k].off, sizeof im[k].off, "%lld", spec[k].offset);
            const char *keys[2] = {"location", "offset"}, *vals[2] = {spec[k].location, im[k].off};
            for (int e = 0; e < 2; e++) {
                onnx__string_string_entry_proto__init(&im[k].kv[e]);
                im[k].kv[e].key = (char *)keys[e];
                im[k].kv[e].value = (char *)vals[e];
                im[k].kvp[e] = &im[k].kv[e];
            }
            t->n_external_data = 2;
            t->external_data = im[k].kvp;
        } else {
            t->has_raw_data = 1;
            t->raw_data.len = sizeof(float) * (size_t)numel;
            t->raw_data.data = (uint8_t *)spec[k].data;
        }
        inits[k] = t;
    }
    Onnx__NodeProto node;
    onnx__node_proto__init(&node);
    char *ins[2] = {"x", (char *)spec[0].name}, *outs[1] = {"y"};
    node.name = "mm";
    node.op_type = "MatMul";
    node.n_input = 2;
    node.input = ins;
    node.n_output = 1;
    node.output = outs;
    Onnx__NodeProto *nodes[1] = {&node};
    Onnx__TensorShapeProto__Dimension d0, d1, *dp[2] = {&d0, &d1};
    onnx__tensor_shape_proto__dimension__init(&d0);
    onnx__tensor_shape_proto__dimension__init(&d1);
    d0.value_case = d1.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    d0.dim_value = 1;
    d1.dim_value = 4;
    Onnx__TensorShapeProto shape;
    onnx__tensor_shape_proto__init(&shape);
    shape.n_dim = 2;
    shape.dim = dp;
    Onnx__TypeProto__Tensor tt;
    onnx__type_proto__tensor__init(&tt);
    tt.has_elem_type = 1;
    tt.elem_type = 1;
    tt.shape = &shape;
    Onnx__TypeProto type;
    onnx__type_proto__init(&type);
    type.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type.tensor_type = &tt;
    Onnx__ValueInfoProto xin, yout, *inp[1] = {&xin}, *outp[1] = {&yout};
    onnx__value_info_proto__init(&xin);
    onnx__value_info_proto__init(&yout);
    xin.name = "x";
    xin.type = &type;
    yout.name = "y";
    Onnx__GraphProto g;
    onnx__graph_proto__init(&g);
    g.name = "g";
    g.n_node = 1;
    g.node = nodes;
    g.n_initializer = (size_t)n;
    g.initializer = inits;
    g.n_input = 1;
    g.input = inp;
    g.n_output = 1;
    g.output = outp;
    Onnx__OperatorSetIdProto op, *opp[1] = {&op};
    onnx__operator_set_id_proto__init(&op);
    op.domain = "";
    op.has_version = 1;
    op.version = 17;
    Onnx__ModelProto m;
    onnx__model_proto__init(&m);
    m.has_ir_version = 1;
    m.ir_version = 8;
    m.n_opset_import = 1;
    m.opset_import = opp;
    m.graph = &g;
    size_t len = onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = malloc(len);
    onnx__model_proto__pack(&m, buf);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(buf, 1, len, f) == len);
    if (f) fclose(f);
    free(buf);
    free(inits);
    free(im);
}

static const char *at(const char *name) {
    static char p[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n);
    if (f) fclose(f);
}

/* Loads path; 0 when it loads. The message is in err. */
static int load(const char *path) {
    ir_graph *g = NULL;
    err[0] = 0;
    int rc = fe_onnx_load(path, NULL, 0, 1, &g, err, sizeof err);
    ir_graph_free(g);
    return rc;
}

#define EXPECT_REFUSED(path, ...)                                                              \
    do {                                                                                       \
        const char *needles_[] = {__VA_ARGS__, NULL};                                          \
        int rc_ = load(path);                                                                  \
        CHECK_MSG(rc_ != 0, "%s: loaded", path);                                               \
        for (int k_ = 0; needles_[k_]; k_++)                                                   \
            CHECK_MSG(strstr(err, needles_[k_]), "%s: '%s' not in: %s", path, needles_[k_], err); \
        printf("  %s\n", err);                                                                 \
    } while (0)

static const float w16[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};

static void test_sizes(void) {
    write_bytes(at("small.bin"), w16, sizeof w16);
    /* the 196-byte model: dims [2^33] backed by 64 bytes (it aborted in malloc) */
    init_spec huge = {"w", 2, {4, (int64_t)1 << 31}, NULL, "small.bin", 0};
    write_model(at("huge.onnx"), &huge, 1);
    EXPECT_REFUSED(at("huge.onnx"), "initializer 'w'", "small.bin' has 64 bytes", "needs 34359738368 at offset 0");
    init_spec tera = {"w", 2, {4, (int64_t)1 << 38}, NULL, "small.bin", 0}; /* 4 TiB */
    write_model(at("tera.onnx"), &tera, 1);
    EXPECT_REFUSED(at("tera.onnx"), "initializer 'w'", "has 64 bytes", "needs 4398046511104");
    init_spec past = {"w", 2, {4, 4}, NULL, "small.bin", 8}; /* 64 bytes at offset 8 of 64 */
    write_model(at("past.onnx"), &past, 1);
    EXPECT_REFUSED(at("past.onnx"), "has 64 bytes", "needs 64 at offset 8");
    /* a size the (sparse) file does back, but no memory can hold: an error, not an abort */
    FILE *ov = fopen("/proc/sys/vm/overcommit_memory", "r");
    int mode = ov && fscanf(ov, "%d", &mode) == 1 ? mode : 0;
    if (ov) fclose(ov);
    if (truncate(at("small.bin"), (off_t)1 << 42) != 0 || mode == 1) {
        printf("  SKIPPED the out-of-memory case: %s\n", mode == 1 ? "vm.overcommit_memory is 1 (malloc never fails)"
                                                                  : "no 4 TiB sparse file here");
    } else {
        EXPECT_REFUSED(at("tera.onnx"), "initializer 'w'", "out of memory");
    }
    unlink(at("small.bin"));
}

static void test_paths(void) {
    char outside[600], cmd[2200];
    snprintf(outside, sizeof outside, "%s/outside", dir);
    CHECK(mkdir(outside, 0700) == 0);
    char model_dir[600];
    snprintf(model_dir, sizeof model_dir, "%s/model", dir);
    CHECK(mkdir(model_dir, 0700) == 0);
    write_bytes(at("outside/secret.bin"), w16, sizeof w16);
    write_bytes(at("model/w.bin"), w16, sizeof w16);
    CHECK(symlink("../outside/secret.bin", at("model/link.bin")) == 0);
    CHECK(symlink("/etc/passwd", at("model/passwd.bin")) == 0);
    CHECK(symlink("w.bin", at("model/inside.bin")) == 0);
    CHECK(symlink("nowhere.bin", at("model/dangling.bin")) == 0);
    CHECK(mkfifo(at("model/fifo.bin"), 0600) == 0);
    static const char *const locs[] = {"link.bin", "passwd.bin", "inside.bin", "dangling.bin", "fifo.bin", "w.bin"};
    for (int k = 0; k < 6; k++) {
        init_spec s = {"w", 2, {4, 4}, NULL, locs[k], 0};
        char name[64];
        snprintf(name, sizeof name, "model/m%d.onnx", k);
        write_model(at(name), &s, 1);
    }
    EXPECT_REFUSED(at("model/m0.onnx"), "link.bin", "outside the model's folder", "outside/secret.bin");
    EXPECT_REFUSED(at("model/m1.onnx"), "passwd.bin' is '/etc/passwd', outside the model's folder");
    CHECK_MSG(load(at("model/m2.onnx")) == 0, "a link inside the folder: %s", err);
    EXPECT_REFUSED(at("model/m3.onnx"), "dangling.bin", "No such file or directory");
    EXPECT_REFUSED(at("model/m4.onnx"), "fifo.bin: not a regular file (it is a FIFO)");
    CHECK_MSG(load(at("model/m5.onnx")) == 0, "plain external data: %s", err);
    /* two tensors over the same bytes: the file would be multiplied */
    init_spec two[2] = {{"w", 2, {4, 4}, NULL, "w.bin", 0}, {"w2", 2, {4, 4}, NULL, "w.bin", 0}};
    write_model(at("model/overlap.onnx"), two, 2);
    EXPECT_REFUSED(at("model/overlap.onnx"), "initializer 'w2'", "overlap");
    /* the model file itself a FIFO */
    CHECK(mkfifo(at("model/pipe.onnx"), 0600) == 0);
    EXPECT_REFUSED(at("model/pipe.onnx"), "pipe.onnx: not a regular file (it is a FIFO)");
    /* `deitc export` reads through the same reader: the secret is not copied out */
    rt_tensor wt = {"w", RT_F32, 2, {4, 4}, sizeof w16, (void *)w16};
    CHECK(rt_safetensors_write(at("w.safetensors"), &wt, 1, NULL, err, sizeof err) == 0);
    snprintf(cmd, sizeof cmd, "\"%s\" export \"%s\" --weights \"%s\" -o \"%s\" 2>\"%s\"", test_env("DEITC_BIN"),
             at("model/m1.onnx"), at("w.safetensors"), at("out.onnx"), at("export.log"));
    CHECK(test_sh("%s", cmd) != 0);
    CHECK(access(at("out.onnx"), F_OK) != 0);
    CHECK(test_sh("grep -q 'outside the model' \"%s\"", at("export.log")) == 0);
}

static void test_finite(void) {
    float nan16[16], inf16[16];
    memcpy(nan16, w16, sizeof w16);
    memcpy(inf16, w16, sizeof w16);
    nan16[5] = NAN;
    inf16[15] = -INFINITY;
    static const float one_nan = NAN, minus_inf = -INFINITY;
    init_spec a[2] = {{"w", 2, {4, 4}, nan16, NULL, 0}};
    write_model(at("nan.onnx"), a, 1);
    EXPECT_REFUSED(at("nan.onnx"), "initializer 'w' holds a NaN or infinity at element 5");
    a[0].data = inf16;
    write_model(at("inf.onnx"), a, 1);
    EXPECT_REFUSED(at("inf.onnx"), "initializer 'w' holds a NaN or infinity at element 15");
    init_spec b[2] = {{"w", 2, {4, 4}, w16, NULL, 0}, {"c", 0, {0}, &one_nan, NULL, 0}};
    write_model(at("scalar_nan.onnx"), b, 2);
    EXPECT_REFUSED(at("scalar_nan.onnx"), "initializer 'c' holds a NaN");
    b[1].data = &minus_inf; /* a scalar -inf is a constant (a mask's fill value): it stays */
    write_model(at("scalar_inf.onnx"), b, 2);
    CHECK_MSG(load(at("scalar_inf.onnx")) == 0, "scalar -inf: %s", err);
    /* export: a NaN in the trained weights is not written into the model */
    write_model(at("fine.onnx"), b, 1);
    rt_tensor wt = {"w", RT_F32, 2, {4, 4}, sizeof nan16, nan16};
    CHECK(rt_safetensors_write(at("nan.safetensors"), &wt, 1, NULL, err, sizeof err) == 0);
    CHECK(test_sh("\"%s\" export \"%s\" --weights \"%s\" -o \"%s\" 2>\"%s\"", test_env("DEITC_BIN"), at("fine.onnx"),
                  at("nan.safetensors"), at("nan_out.onnx"), at("nan.log")) != 0);
    CHECK(access(at("nan_out.onnx"), F_OK) != 0);
    CHECK(test_sh("grep -q \"tensor 'w' holds a NaN or infinity at element 5\" \"%s\"", at("nan.log")) == 0);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Model{graph: Graph{initializer: {} x n}} as raw protobuf bytes. */
static void write_empty_initializers(const char *path, long n) {
    size_t body = 2 * (size_t)n, k = 0;
    uint8_t *b = malloc(body + 16);
    b[k++] = 0x3a; /* ModelProto.graph = 7, length-delimited */
    for (size_t v = body;; v >>= 7) {
        b[k++] = (uint8_t)((v & 127) | (v >= 128 ? 128 : 0));
        if (v < 128) break;
    }
    for (long i = 0; i < n; i++) b[k++] = 0x2a, b[k++] = 0; /* GraphProto.initializer = 5, empty */
    write_bytes(path, b, k);
    free(b);
}

static void test_counts(void) {
    write_empty_initializers(at("five_million.onnx"), 5000000);
    write_empty_initializers(at("one_million.onnx"), 1000000);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s();
    EXPECT_REFUSED(at("five_million.onnx"), "5000000 entries in field 'initializer' of one GraphProto");
    EXPECT_REFUSED(at("one_million.onnx"), "unpacking its 2.0 MB would take about");
    double dt = now_s() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    long grew_mb = (ru1.ru_maxrss - ru0.ru_maxrss) / 1024;
    printf("  refused in %.2f s, peak memory grew by %ld MB\n", dt, grew_mb);
#ifdef DEITC_SANITIZE
    double limit = 30.0; /* sanitizer builds are slower */
#else
    double limit = 5.0;
#endif
    CHECK_MSG(dt < limit, "took %.2f s", dt);
    CHECK_MSG(grew_mb < 200, "peak memory grew by %ld MB", grew_mb);
    unlink(at("five_million.onnx"));
    unlink(at("one_million.onnx"));
}

/* test_onnx_hostile [counts|sizes|paths|finite]: one part, or all of them */
int main(int argc, char **argv) {
    const char *only = argc > 1 ? argv[1] : NULL;
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%.400s/deitc_onnx_hostile_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    static const struct {
        const char *name;
        void (*run)(void);
    } parts[] = {{"counts", test_counts}, /* first: the peak memory it measures is this process's */
                 {"sizes", test_sizes},
                 {"paths", test_paths},
                 {"finite", test_finite}};
    for (size_t k = 0; k < sizeof parts / sizeof *parts; k++)
        if (!only || strcmp(only, parts[k].name) == 0) parts[k].run();
    test_sh("rm -rf \"%s\"", dir);
    return test_result();
}
