/* test_export.c: an ONNX model's own weights, both ways.
 *   init       the emu EXE compiled from deit_micro's ONNX files (opsets 17 and 13) starts from
 *              the model's initializers with no --init: 3 training steps give the oracle's
 *              losses, eval the oracle's loss; an --init holding one tensor takes the rest
 *              from the model.
 *   roundtrip  deitc run --steps 3 -> deitc export -> deitc run on the exported model gives the
 *              logits of the original model with the trained weights; exporting with no
 *              weights to replace gives the input file byte for byte.
 *   errors     wrong shape or dtype, unknown tensor, unwritable output, YAML or corrupt model:
 *              exit 1, a message naming the tensor/file, and no output file (an existing one
 *              is left as it was).
 *   dedup      a fresh model whose equal initializers torch's export turned into Identity
 *              nodes (onnx/export/dedup, opsets 17 and 13): the same round trip, the Identity
 *              outputs now initializers of their own (untied: trained LayerNorms differ); a
 *              weights file with one such tensor changes that parameter alone; a wrong shape
 *              for one is an error naming it.
 */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <dirent.h>
#include <string.h>

static const char *data, *bin;
static char dir[256];

static char *slurp(const char *name, size_t *len) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return s;
}

static float expected(const char *name, int i) {
    char path[600], err[512];
    rt_tensor_set s;
    snprintf(path, sizeof path, "%s/deit_micro/expected.safetensors", data);
    if (rt_safetensors_read(path, &s, err, sizeof err)) return NAN;
    const rt_tensor *t = rt_tensor_set_find(&s, name);
    float v = t && rt_tensor_numel(t) > i ? ((const float *)t->data)[i] : NAN;
    rt_tensor_set_free(&s);
    return v;
}

/* the k-th "loss" value in a file of JSON lines */
static double nth_loss(const char *name, int k) {
    char *s = slurp(name, NULL);
    const char *p = s;
    double v = NAN;
    for (int i = 0; p && i <= k; i++)
        if ((p = strstr(p, "\"loss\":"))) p += 7;
    if (p) sscanf(p, "%lf", &v);
    free(s);
    return v;
}

static int close_to(double got, double want) { return fabs(got - want) <= 1e-4 * fmax(1, fabs(want)); }

static void test_init(void) {
    for (int o = 0; o < 2; o++) {
        const char *opset = o ? "13" : "17";
        int rc = test_sh("cd '%s' && '%s' compile '%s/deit_micro/deit_opset%s.onnx' --target emu --batch 4 -o x%s "
                    "> compile%s.txt 2>&1",
                    dir, bin, data, opset, opset, opset);
        CHECK_MSG(rc == 0, "compile of opset %s failed; see %s/compile%s.txt", opset, dir, opset);
        if (rc) continue;
        rc = test_sh("cd '%s' && ./x%s train --data '%s/deit_micro/batch.safetensors' --steps 3 --no-shuffle --lr 1e-3 "
                "--weight-decay 0.05 --metrics m%s.jsonl > train%s.txt 2>&1 && ./x%s eval --data "
                "'%s/deit_micro/batch.safetensors' > eval%s.txt 2>&1",
                dir, opset, data, opset, opset, opset, data, opset);
        CHECK_MSG(rc == 0, "opset %s: train/eval failed; see %s", opset, dir);
        char name[64];
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "m%s.jsonl", opset);
            double got = nth_loss(name, k), want = expected("losses", k);
            CHECK_MSG(close_to(got, want), "opset %s step %d: loss %.7f, oracle %.7f", opset, k + 1, got, want);
        }
        snprintf(name, sizeof name, "eval%s.txt", opset);
        double got = nth_loss(name, 0), want = expected("loss", 0);
        CHECK_MSG(close_to(got, want), "opset %s eval: loss %.7f, oracle %.7f", opset, got, want);
    }
    /* --init with one tensor: an error naming what is missing; with --partial-init that one from
     * the file, the others from the model */
    char path[600], err[512];
    float bias[10];
    for (int i = 0; i < 10; i++) bias[i] = 0.1f * (float)i;
    rt_tensor t = {"head.bias", RT_F32, 1, {10}, sizeof bias, bias};
    snprintf(path, sizeof path, "%s/one.safetensors", dir);
    CHECK(rt_safetensors_write(path, &t, 1, NULL, err, sizeof err) == 0);
    CHECK(test_sh("cd '%s' && ./x17 eval --init one.safetensors --data '%s/deit_micro/batch.safetensors' > eval0.txt 2>&1",
             dir, data) != 0);
    char *msg = slurp("eval0.txt", NULL);
    CHECK_MSG(msg && strstr(msg, "gives only part of the model's weights") && strstr(msg, "'patch_embed.proj.weight'") &&
              strstr(msg, "--partial-init"), "eval --init one tensor said: %s", msg ? msg : "");
    free(msg);
    CHECK(test_sh("cd '%s' && ./x17 eval --init one.safetensors --partial-init --data '%s/deit_micro/batch.safetensors' > eval1.txt 2>&1",
             dir, data) == 0);
    double l = nth_loss("eval1.txt", 0);
    CHECK_MSG(isfinite(l) && l > 2.0 && l < 2.6 && !close_to(l, expected("loss", 0)), "eval with head.bias = 0.1 i: %g", l);
}

/* logits from `deitc run MODEL [--weights W]` on BATCH (a safetensors file) into OUT */
static int logits_of(const char *model, const char *weights, const char *batch, const char *out, float *buf, int n) {
    char path[600], err[512];
    int rc = test_sh("cd '%s' && '%s' run '%s' %s%s --input '%s' -o %s > %s.txt 2>&1", dir, bin, model,
                weights ? "--weights " : "", weights ? weights : "", batch, out, out);
    rt_tensor_set s;
    snprintf(path, sizeof path, "%s/%s", dir, out);
    if (rc || rt_safetensors_read(path, &s, err, sizeof err)) return -1;
    const rt_tensor *t = rt_tensor_set_find(&s, "logits");
    rc = t && rt_tensor_numel(t) == n ? 0 : -1;
    if (!rc) memcpy(buf, t->data, sizeof(float) * (size_t)n);
    rt_tensor_set_free(&s);
    return rc;
}

/* the same on deit_micro's batch */
static int logits(const char *model, const char *weights, const char *out, float *buf, int n) {
    char batch[600];
    snprintf(batch, sizeof batch, "%s/deit_micro/batch.safetensors", data);
    return logits_of(model, weights, batch, out, buf, n);
}

static void test_roundtrip(void) {
    char model[512];
    snprintf(model, sizeof model, "%s/deit_micro/deit_opset17.onnx", data);
    int rc = test_sh("cd '%s' && '%s' run '%s' --steps 3 --input '%s/deit_micro/batch.safetensors' -o trained.safetensors "
                "> train.txt 2>&1 && '%s' export '%s' --weights trained.safetensors -o out.onnx > export.txt 2>&1",
                dir, bin, model, data, bin, model);
    CHECK_MSG(rc == 0, "train or export failed; see %s", dir);
    char *msg = slurp("export.txt", NULL);
    CHECK_MSG(msg && strstr(msg, "wrote out.onnx (32 initializers"), "export said: %s", msg ? msg : "");
    free(msg);
    float a[40], b[40], c[40];
    CHECK(logits("out.onnx", NULL, "a.safetensors", a, 40) == 0);
    CHECK(logits(model, "trained.safetensors", "b.safetensors", b, 40) == 0);
    CHECK(logits(model, NULL, "c.safetensors", c, 40) == 0);
    double e = test_rel_l2(a, b, 40), moved = test_rel_l2(c, b, 40);
    fprintf(stderr, "exported vs trained logits: rel L2 %.2e (trained vs initial: %.2e)\n", e, moved);
    CHECK(e < 1e-6 && moved > 1e-3);
    /* nothing to replace ("losses" is deitc run's, not a weight): the same bytes */
    char path[600], err[512];
    float z[3] = {0};
    rt_tensor t = {"losses", RT_F32, 1, {3}, sizeof z, z};
    snprintf(path, sizeof path, "%s/losses.safetensors", dir);
    CHECK(rt_safetensors_write(path, &t, 1, NULL, err, sizeof err) == 0);
    CHECK(test_sh("cd '%s' && cp '%s' orig.onnx && '%s' export orig.onnx --weights losses.safetensors -o same.onnx "
             "> /dev/null 2>&1 && cmp -s orig.onnx same.onnx", dir, model, bin) == 0);
}

/* export with weights W (a tensor with the given name, dtype and length) must fail naming `what` */
static void expect_failure(const char *model, const char *name, rt_dtype dtype, int n, const char *out,
                           const char *what) {
    char path[600], err[512];
    static float buf[64];
    rt_tensor t = {(char *)name, dtype, 1, {n}, (size_t)n * rt_dtype_size(dtype), buf};
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    CHECK(rt_safetensors_write(path, &t, 1, NULL, err, sizeof err) == 0);
    int rc = test_sh("cd '%s' && '%s' export '%s' --weights bad.safetensors -o '%s' > err.txt 2>&1", dir, bin, model, out);
    char *msg = slurp("err.txt", NULL);
    CHECK_MSG(rc == 1 && msg && strstr(msg, what), "export of %s with '%s': exit %d, said: %s", model, name, rc,
              msg ? msg : "");
    free(msg);
}

static void test_errors(void) {
    char model[512];
    snprintf(model, sizeof model, "%s/deit_micro/deit_opset17.onnx", data);
    CHECK(test_sh("cd '%s' && echo old > kept.onnx && printf 'not protobuf' > junk.onnx", dir) == 0);
    expect_failure(model, "head.bias", RT_F32, 11, "kept.onnx", "'head.bias' has shape [11], the model's initializer is [10]");
    expect_failure(model, "head.bias", RT_F16, 10, "kept.onnx", "'head.bias' is F16, the model's initializer is F32");
    expect_failure(model, "blocks.9.norm1.weight", RT_F32, 64, "kept.onnx", "'blocks.9.norm1.weight' is not an initializer");
    expect_failure(model, "head.bias", RT_F32, 10, "no/such/dir/out.onnx", "cannot write no/such/dir/out.onnx");
    expect_failure("junk.onnx", "head.bias", RT_F32, 10, "out2.onnx", "junk.onnx: not an ONNX model");
    char yaml[512];
    snprintf(yaml, sizeof yaml, "%s/models/deit_tiny.yaml", test_env("DEITC_SOURCE_DIR"));
    expect_failure(yaml, "head.bias", RT_F32, 10, "out2.onnx", "a YAML model has no ONNX graph");
    CHECK(test_sh("cd '%s' && '%s' export '%s' -o out2.onnx > err.txt 2>&1", dir, bin, model) == 1);
    char *kept = slurp("kept.onnx", NULL);
    CHECK_MSG(kept && strcmp(kept, "old\n") == 0, "a failed export changed an existing output");
    free(kept);
    /* no output, no temporary file left behind */
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        CHECK_MSG(strcmp(e->d_name, "out2.onnx") && !strstr(e->d_name, ".tmp."), "left behind: %s", e->d_name);
    if (d) closedir(d);
}

/* a copy of tensor `name` of safetensors file `path` in *out (data malloc'ed), 0 on success */
static int tensor_of(const char *path, const char *name, rt_tensor *out) {
    char err[512];
    rt_tensor_set s;
    if (rt_safetensors_read(path, &s, err, sizeof err)) return -1;
    const rt_tensor *t = rt_tensor_set_find(&s, name);
    int rc = -1;
    if (t) {
        *out = *t;
        out->name = (char *)name;
        out->data = malloc(t->nbytes ? t->nbytes : 1);
        if (out->data) memcpy(out->data, t->data, t->nbytes), rc = 0;
    }
    rt_tensor_set_free(&s);
    return rc;
}

static void test_dedup(void) {
    char batch[600], path[700], err[512];
    snprintf(batch, sizeof batch, "%s/onnx/export/dedup/batch.safetensors", data);
    const char *files[] = {"deit_opset17.onnx", "deit_opset13_nofold.onnx"};
    enum { N = 2 * 3 }; /* batch 2, 3 classes */
    for (int f = 0; f < 2; f++) {
        char model[600];
        snprintf(model, sizeof model, "%s/onnx/export/dedup/%s", data, files[f]);
        int rc = test_sh("cd '%s' && '%s' run '%s' --steps 3 --input '%s' -o d%d.safetensors > dtrain%d.txt 2>&1 && '%s' "
                    "export '%s' --weights d%d.safetensors -o d%d.onnx > dexport%d.txt 2>&1",
                    dir, bin, model, batch, f, f, bin, model, f, f, f);
        CHECK_MSG(rc == 0, "%s: train or export failed; see %s/dtrain%d.txt, dexport%d.txt", files[f], dir, f, f);
        if (rc) continue;
        char name[64];
        snprintf(name, sizeof name, "dexport%d.txt", f);
        char *msg = slurp(name, NULL);
        snprintf(name, sizeof name, "wrote d%d.onnx (32 initializers", f);
        CHECK_MSG(msg && strstr(msg, name), "%s: export said: %s", files[f], msg ? msg : "");
        free(msg);
        float a[N], b[N], c[N];
        char w[64], o[64];
        snprintf(w, sizeof w, "d%d.safetensors", f);
        snprintf(o, sizeof o, "d%d.onnx", f);
        CHECK(logits_of(o, NULL, batch, "da.safetensors", a, N) == 0);
        CHECK(logits_of(model, w, batch, "db.safetensors", b, N) == 0);
        CHECK(logits_of(model, NULL, batch, "dc.safetensors", c, N) == 0);
        double e = test_rel_l2(a, b, N), moved = test_rel_l2(c, b, N);
        fprintf(stderr, "%s: exported vs trained logits: rel L2 %.2e (trained vs initial: %.2e)\n", files[f], e, moved);
        CHECK_MSG(e < 1e-6 && moved > 1e-3, "%s: rel L2 %.2e, moved %.2e", files[f], e, moved);
        /* untied: Identity copies of one initializer were trained apart */
        rt_tensor n1 = {0}, n2 = {0};
        snprintf(path, sizeof path, "%s/%s", dir, w);
        CHECK(tensor_of(path, "blocks.0.norm1.weight", &n1) == 0 && tensor_of(path, "blocks.1.norm2.weight", &n2) == 0);
        CHECK(n1.data && n2.data && n1.nbytes == n2.nbytes && memcmp(n1.data, n2.data, n1.nbytes) != 0);
        free(n1.data), free(n2.data);
    }
    /* one Identity output alone: that parameter changes, its source and the others do not */
    char model[600];
    snprintf(model, sizeof model, "%s/onnx/export/dedup/%s", data, files[0]);
    float v[16];
    for (int i = 0; i < 16; i++) v[i] = 0.05f * (float)(i - 8);
    rt_tensor t = {"blocks.1.norm1.bias", RT_F32, 1, {16}, sizeof v, v};
    snprintf(path, sizeof path, "%s/one.safetensors", dir);
    CHECK(rt_safetensors_write(path, &t, 1, NULL, err, sizeof err) == 0);
    CHECK(test_sh("cd '%s' && '%s' export '%s' --weights one.safetensors -o one.onnx > one.txt 2>&1", dir, bin, model) == 0);
    char *msg = slurp("one.txt", NULL);
    CHECK_MSG(msg && strstr(msg, "(1 initializers"), "export said: %s", msg ? msg : "");
    free(msg);
    float a[N], b[N], c[N];
    CHECK(logits_of("one.onnx", NULL, batch, "oa.safetensors", a, N) == 0);
    /* a file of one weight is a partial file: an error naming what is missing, unless --partial-init */
    CHECK(test_sh("cd '%s' && '%s' run '%s' --weights one.safetensors --input '%s' -o op.safetensors > op.txt 2>&1", dir,
                  bin, model, batch) != 0);
    msg = slurp("op.txt", NULL);
    CHECK_MSG(msg && strstr(msg, "gives only part of the model's weights: 31 of 32 are missing (") &&
                  strstr(msg, "pass --partial-init"), "partial file: %s", msg ? msg : "");
    free(msg);
    CHECK(logits_of(model, "one.safetensors --partial-init", batch, "ob.safetensors", b, N) == 0);
    msg = slurp("ob.safetensors.txt", NULL);
    CHECK_MSG(msg && strstr(msg, "--partial-init: 31 of the model's 32 weights are not in the file"), "note: %s", msg ? msg : "");
    free(msg);
    CHECK(logits_of(model, NULL, batch, "oc.safetensors", c, N) == 0);
    CHECK_MSG(test_rel_l2(a, b, N) < 1e-6 && test_rel_l2(c, b, N) > 1e-4, "one tensor: rel L2 %.2e, moved %.2e",
              test_rel_l2(a, b, N), test_rel_l2(c, b, N));
    /* the exported model trains on: its new initializer is a weight like any other */
    CHECK(test_sh("cd '%s' && '%s' run one.onnx --steps 1 --input '%s' -o one_t.safetensors > one_t.txt 2>&1", dir, bin,
             batch) == 0);
    rt_tensor got = {0};
    snprintf(path, sizeof path, "%s/one_t.safetensors", dir);
    int ok = tensor_of(path, "blocks.1.norm1.bias", &got) == 0 && got.nbytes == sizeof v;
    double far = 0;
    for (int i = 0; ok && i < 16; i++) far = fmax(far, fabs(((const float *)got.data)[i] - v[i]));
    CHECK_MSG(ok && far > 0 && far < 0.01, "one step from one.onnx: blocks.1.norm1.bias moved %g from its value", far);
    free(got.data);
    /* a wrong shape for an Identity output: named, nothing written */
    expect_failure(model, "blocks.0.norm1.bias", RT_F32, 15, "bad.onnx",
                   "'blocks.0.norm1.bias' has shape [15], the model's initializer is [16]");
    expect_failure(model, "blocks.0.norm1.bias", RT_F16, 16, "bad.onnx", "'blocks.0.norm1.bias' is F16");
    snprintf(path, sizeof path, "%s/bad.onnx", dir);
    FILE *bad = fopen(path, "rb");
    CHECK_MSG(!bad, "a failed export wrote bad.onnx");
    if (bad) fclose(bad);
}

int main(int argc, char **argv) {
    data = test_env("DEITC_TESTDATA"), bin = test_env("DEITC_BIN");
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/deitc_export_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (argc != 2 || !mkdtemp(dir)) return 2;
    if (strcmp(argv[1], "init") == 0) test_init();
    else if (strcmp(argv[1], "roundtrip") == 0) test_roundtrip();
    else if (strcmp(argv[1], "errors") == 0) test_errors();
    else if (strcmp(argv[1], "dedup") == 0) test_dedup();
    else return 2;
    if (!test_failures) test_sh("rm -rf '%s'", dir);
    else fprintf(stderr, "kept %s for inspection\n", dir);
    return test_result();
}
