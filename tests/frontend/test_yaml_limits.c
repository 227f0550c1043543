/* test_yaml_limits.c: hostile YAML model files (issue 15): deep nesting is refused with
 * file:line:column before libyaml parses it (200 KB of `[[[...]]]` ran past 60 s there), in
 * flow and block style; brackets that are text (quoted, comments, block and plain scalars)
 * do not count, so a model nesting as deep as the frontend allows still loads; a FIFO is
 * refused instead of blocking; a file over the size cap is refused before it is read.
 * Every hostile file is made here, at test time. */
#include "frontend/frontend.h"
#include "runtime/rt.h"
#include "tests/harness.h"

#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char err[2048];

typedef struct {
    char *s;
    size_t n, cap;
} text;

static void add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->n + (size_t)k + 1 > t->cap) {
        t->cap = (t->n + (size_t)k + 1) * 2;
        t->s = realloc(t->s, t->cap);
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    t->n += (size_t)k;
}

static void repeat(text *t, const char *piece, int n) {
    for (int i = 0; i < n; i++) add(t, "%s", piece);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Loads t; returns 0 when it loads. The message is in err. */
static int load(const text *t) {
    ir_graph *g = NULL;
    int rc = fe_yaml_load_string(t->s, t->n, "hostile.yaml", NULL, 0, 1, &g, err, sizeof err);
    ir_graph_free(g);
    return rc;
}

static int refused_deep(const text *t, const char *where) {
    return load(t) != 0 && strstr(err, "YAML nested more than 128 deep") && strstr(err, where);
}

/* The model of tests/frontend/micro.yaml with `extra` (more top-level keys' text) added. */
static void micro(text *t, const char *extra) {
    add(t, "name: micro\n%sparams: {img_size: 32, patch_size: 8, num_classes: 10, embed_dim: 64, depth: 1, "
           "num_heads: 2}\n", extra);
    add(t, "layers:\n  - {op: patch_embed, name: patch_embed}\n  - {op: cls_token}\n  - {op: pos_embed}\n"
           "  - {op: layer_norm, name: norm}\n  - {op: select_token}\n  - {op: linear, name: head, out: num_classes}\n");
}

static void test_nesting(void) {
    /* the file: 200 KB of [[[...]]] (minutes in libyaml); refused at once */
    text t = {0};
    repeat(&t, "[", 100000);
    repeat(&t, "]", 100000);
    double t0 = now_s();
    CHECK_MSG(refused_deep(&t, "hostile.yaml:1:129:"), "flow: %s", err);
    double dt = now_s() - t0;
#ifdef DEITC_SANITIZE
    double limit = 10.0; /* sanitizer builds are slower; libyaml took minutes */
#else
    double limit = 1.0;
#endif
    CHECK_MSG(dt < limit, "200 KB of nested brackets took %.2f s", dt);
    free(t.s);
    /* flow mappings */
    t = (text){0};
    repeat(&t, "{a: ", 20000);
    add(&t, "1");
    repeat(&t, "}", 20000);
    CHECK_MSG(refused_deep(&t, "hostile.yaml:1:513:"), "flow map: %s", err);
    free(t.s);
    /* block sequences in compact form, "- - - - x" */
    t = (text){0};
    add(&t, "layers:\n  ");
    repeat(&t, "- ", 50000);
    add(&t, "x\n");
    CHECK_MSG(refused_deep(&t, "hostile.yaml:2:257:"), "compact block: %s", err);
    free(t.s);
    /* block mappings by indentation: a: / b: / c: ... one more space each */
    t = (text){0};
    for (int i = 0; i < 600; i++) add(&t, "%*sk%d:\n", i, "", i);
    CHECK_MSG(refused_deep(&t, "hostile.yaml:129:129:"), "indented block: %s", err);
    free(t.s);
    /* block and flow together count as one depth */
    t = (text){0};
    for (int i = 0; i < 100; i++) add(&t, "%*sk%d:\n", i, "", i);
    add(&t, "%*s", 100, "");
    repeat(&t, "[", 40);
    repeat(&t, "]", 40);
    CHECK_MSG(refused_deep(&t, "hostile.yaml:101:129:"), "block + flow: %s", err);
    free(t.s);
    /* 128 levels are still YAML: the scan lets them through (the model is then wrong) */
    t = (text){0};
    add(&t, "params: ");
    repeat(&t, "[", 127);
    repeat(&t, "]", 127);
    CHECK_MSG(load(&t) != 0 && !strstr(err, "nested more than"), "128 deep: %s", err);
    free(t.s);
}

/* Brackets that are text never count: a real model with 300 of them in each kind of scalar
 * and in comments loads. */
static void test_text_brackets(void) {
    text extra = {0};
    add(&extra, "description: \"");
    repeat(&extra, "[{", 300);
    add(&extra, " \\\" [[\"\n# a comment ");
    repeat(&extra, "[", 300);
    add(&extra, "\nnote: '");
    repeat(&extra, "[", 150);
    add(&extra, "'' [[[\n  ");
    repeat(&extra, "{", 150);
    add(&extra, "'\nnote2: it's a[");
    repeat(&extra, "[", 300);
    add(&extra, " 'x\n  still plain ' [[[[");
    repeat(&extra, "[", 300);
    add(&extra, "\nnote3: |\n  ");
    repeat(&extra, "[", 300);
    add(&extra, "\n\n    ");
    repeat(&extra, "{", 300);
    add(&extra, "\nnote4: >-\n   ");
    repeat(&extra, "[", 300);
    add(&extra, "\n");
    text t = {0};
    micro(&t, extra.s);
    CHECK_MSG(load(&t) != 0 && strstr(err, "unknown key 'note'"), "text brackets: %s", err);
    free(t.s);
    /* and the same with only a description, which the model may have: it loads */
    t = (text){0};
    micro(&t, "description: \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\" # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n");
    CHECK_MSG(load(&t) == 0, "description: %s", err);
    free(t.s);
    free(extra.s);
}

/* A model as deep as the frontend's nested layer lists may go (31 residuals inside one
 * another, block style: about 66 YAML levels) passes the scan and loads. */
static void test_deep_model(void) {
    text t = {0};
    add(&t, "params: {img_size: 32, patch_size: 8, num_classes: 10, embed_dim: 64, depth: 1, num_heads: 2}\n"
            "layers:\n  - {op: patch_embed, name: patch_embed}\n  - {op: cls_token}\n  - {op: pos_embed}\n");
    int ind = 2;
    for (int i = 0; i < 31; i++, ind += 4) add(&t, "%*s- op: residual\n%*s  layers:\n", ind, "", ind, "");
    add(&t, "%*s- {op: layer_norm, name: deep}\n", ind, "");
    add(&t, "  - {op: layer_norm, name: norm}\n  - {op: select_token}\n  - {op: linear, name: head, out: num_classes}\n");
    CHECK_MSG(load(&t) == 0, "31 nested residuals: %s", err);
    free(t.s);
}

static void test_files(void) {
    char dir[512], path[1024];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%.400s/deitc_yaml_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    ir_graph *g = NULL;
    /* a FIFO with no writer: refused, not waited on */
    snprintf(path, sizeof path, "%s/fifo.yaml", dir);
    CHECK(mkfifo(path, 0600) == 0);
    CHECK(fe_load_model(path, NULL, 0, 1, &g, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "fifo.yaml: not a regular file (it is a FIFO)"), "fifo: %s", err);
    unlink(path);
    /* over the 1 MiB cap: refused before it is read */
    snprintf(path, sizeof path, "%s/big.yaml", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    for (int i = 0; f && i < 70000; i++) fprintf(f, "# padding line %05d\n", i);
    if (f) fclose(f);
    CHECK(fe_load_model(path, NULL, 0, 1, &g, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "more than the 1048576 bytes allowed for a model description"), "big: %s", err);
    unlink(path);
    rmdir(dir);
}

/* test_yaml_limits scan FILE...: prints 1 (refused) or 0 per file, for the PyYAML comparison */
static int scan_files(int argc, char **argv) {
    for (int i = 2; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) return 2;
        text t = {0};
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) add(&t, "%.*s", (int)n, buf);
        fclose(f);
        printf("%d\n", fe_yaml_check_depth(t.s ? t.s : "", t.n, argv[i], err, sizeof err) ? 1 : 0);
        free(t.s);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "scan") == 0) return scan_files(argc, argv);
    test_nesting();
    test_text_brackets();
    test_deep_model();
    test_files();
    return test_result();
}
