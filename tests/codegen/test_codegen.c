/* test_codegen.c: tests of the code generator (codegen/, passes/schedule.c, memplan.c).
 *
 *   test_codegen plan                 memory plan and step invariants on DeiT-micro/-small graphs
 *   test_codegen nvrtc MODEL...       every kernel compiles with NVRTC for sm_80 and sm_90,
 *                                     registers reported, no spills (exit 77: no NVRTC, skipped)
 *   test_codegen identical            two compiles give byte-identical kernels.cu and plan.c
 *   test_codegen errors               unknown arch, unwritable output: message, no EXE left
 *   test_codegen emu CASE [-D ..]...  emu EXE trains 3 steps on tests/data/CASE: losses within
 *                                     1e-4 of expected.safetensors, weights within 5e-3
 *                                     (relative L2) of after_steps.safetensors
 *   test_codegen emu_vs_run EXTRA...  emu EXE vs `deitc run --steps 3` with the same training
 *                                     options (label smoothing, gradient clipping)
 *   test_codegen emu_big              the same on a model large enough for the two-pass
 *                                     reductions (random data, the EXE's initial weights)
 *   test_codegen ln_stats             --fuse all,layer-norm-stats: the emu EXE (LayerNorm
 *                                     keeping its statistics, warp and block rows) vs `deitc run`
 *   test_codegen fuse                 --fuse none: one AdamW launch per weight, all: one; the
 *                                     same weights after 3 emu steps (1e-6)
 * Everything is written under a fresh temporary directory, removed at the end.
 */
#include <dlfcn.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "runtime/rt.h"
#include "tests/harness.h"

static char tmp[512];

static void make_tmp(void) {
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/deitc_cg_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void remove_tmp(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    if (!s) abort();
    s[fread(s, 1, (size_t)n, f)] = 0;
    fclose(f);
    return s;
}

static const char *MICRO = "-D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2";

/* ---- plan: graph-level invariants ------------------------------------------------------------- */

/* the whole pipeline (schedule and memory plan included) with --fuse `fuse` */
static pass_result *training_step(const char *model, const fe_define *defs, int ndefs, int64_t batch,
                                  const char *fuse) {
    char err[1024];
    ir_graph *g = NULL;
    if (fe_load_model(model, defs, ndefs, batch, &g, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    pass_options po;
    pass_options_default(&po);
    po.fuse = fuse;
    po.scratch_bytes = cg_scratch_bytes;
    pass_result *r = pass_pipeline_run(g, &po, NULL, err, sizeof err);
    if (!r) fprintf(stderr, "%s\n", err);
    return r;
}

static int in_arena(const cg_program *p, uint64_t off, uint64_t bytes) {
    return off % PASS_MEM_ALIGN == 0 && off + bytes <= (uint64_t)p->mem->arena_bytes;
}

static void check_program(const pass_result *r, int max_kernels) {
    char err[1024];
    const ir_graph *g = r->g;
    cg_options o;
    cg_options_default(&o);
    cg_program *p = cg_program_new(r, &o, err, sizeof err);
    CHECK_MSG(p != NULL, "%s", err);
    if (!p) return;
    const pass_mem_plan *m = p->mem;
    /* every scheduled value and its lifetime, recomputed independently */
    int n = g->n, *pos = calloc((size_t)n, sizeof(int)), *last = calloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) pos[i] = last[i] = -1;
    for (int s = 0; s < p->norder; s++) {
        int i = p->order[s];
        pos[i] = s;
        CHECK(!(ir_op_flags(g->nodes[i].op) & IR_OPF_LEAF));
        for (int k = 0; k < g->nodes[i].ninputs; k++) CHECK(g->nodes[i].inputs[k] < i || pos[g->nodes[i].inputs[k]] < s ||
                                                            (ir_op_flags(g->nodes[g->nodes[i].inputs[k]].op) & IR_OPF_LEAF));
    }
    for (int s = 0; s < p->norder; s++) {
        const ir_node *nd = &g->nodes[p->order[s]];
        int r = m->alias_of[p->order[s]];
        if (last[r] < s) last[r] = s;
        for (int k = 0; k < nd->ninputs; k++) last[m->alias_of[nd->inputs[k]]] = s;
    }
    for (int i = 0; i < n; i++) {
        const ir_node *nd = &g->nodes[i];
        if (nd->op == IR_OP_RESHAPE) CHECK(m->offset[i] == m->offset[nd->inputs[0]]);
        if (m->offset[i] < 0) continue;
        CHECK(in_arena(p, (uint64_t)m->offset[i], (uint64_t)pass_mem_bytes(nd)));
    }
    /* buffers of values alive at the same step never overlap */
    for (int a = 0; a < n; a++) {
        if (m->alias_of[a] != a || m->offset[a] < 0) continue;
        int a_start = m->persistent[a] ? -1 : pos[a], a_end = m->persistent[a] ? 1 << 30 : last[a];
        for (int b = a + 1; b < n; b++) {
            if (m->alias_of[b] != b || m->offset[b] < 0) continue;
            int b_start = m->persistent[b] ? -1 : pos[b], b_end = m->persistent[b] ? 1 << 30 : last[b];
            if (a_start > b_end || b_start > a_end) continue;
            int64_t a0 = m->offset[a], a1 = a0 + pass_mem_bytes(&g->nodes[a]);
            int64_t b0 = m->offset[b], b1 = b0 + pass_mem_bytes(&g->nodes[b]);
            CHECK_MSG(a1 <= b0 || b1 <= a0, "%%%d [%lld,%lld) and %%%d [%lld,%lld) overlap while both live", a,
                      (long long)a0, (long long)a1, b, (long long)b0, (long long)b1);
        }
    }
    CHECK(m->peak_bytes <= m->arena_bytes && m->persistent_bytes <= m->peak_bytes);
    /* steps reference the arena and existing kernels only */
    for (int s = 0; s < p->nsteps; s++) {
        const rt_plan_step *st = &p->steps[s];
        if (st->kind == RT_STEP_KERNEL) {
            CHECK(st->kernel >= 0 && st->kernel < p->nkernels);
            CHECK(st->nargs == p->kernels[st->kernel].nparams);
            CHECK(st->block[0] % 32 == 0 && st->block[0] <= 1024 && st->grid[0] >= 1);
            for (int a = 0; a < st->nargs; a++) CHECK(in_arena(p, st->args[a].offset, 4));
        } else if (st->kind == RT_STEP_GEMM) {
            const rt_gemm *gm = &st->gemm;
            uint64_t ra = gm->trans_a ? gm->k : gm->m, rb = gm->trans_b ? gm->n : gm->k;
            uint64_t last_b = (uint64_t)(gm->batch - 1);
            CHECK(gm->c % 4 == 0 && gm->a % 4 == 0 && gm->b % 4 == 0);
            CHECK(gm->a + 4 * (last_b * gm->stride_a + ra * gm->lda) <= (uint64_t)m->arena_bytes);
            CHECK(gm->b + 4 * (last_b * gm->stride_b + rb * gm->ldb) <= (uint64_t)m->arena_bytes);
            CHECK(gm->c + 4 * (last_b * gm->stride_c + gm->m * gm->ldc) <= (uint64_t)m->arena_bytes);
        }
    }
    CHECK_MSG(p->nkernels <= max_kernels, "%d kernels (blocks should share theirs)", p->nkernels);
    /* determinism: the same graph gives the same kernels.cu */
    cg_program *q = cg_program_new(r, &o, err, sizeof err);
    char *s1 = cg_kernels_source(p), *s2 = cg_kernels_source(q);
    CHECK(strcmp(s1, s2) == 0);
    CHECK(strstr(s1, "DC_KERNEL k000_") != NULL);
    free(s1);
    free(s2);
    cg_program_free(q);
    cg_program_free(p);
    free(pos);
    free(last);
}

static int test_plan(void) {
    const char *src = test_env("DEITC_SOURCE_DIR");
    char model[1024];
    snprintf(model, sizeof model, "%s/models/deit_tiny.yaml", src);
    fe_define micro[] = {{"img_size", "32"}, {"patch_size", "8"}, {"num_classes", "10"},
                         {"embed_dim", "64"}, {"depth", "2"}, {"num_heads", "2"}};
    pass_result *r = training_step(model, micro, 6, 4, NULL);
    CHECK(r != NULL);
    if (r) check_program(r, 60);
    pass_result_free(r);
    snprintf(model, sizeof model, "%s/models/deit_small.yaml", src);
    r = training_step(model, NULL, 0, 2, NULL);
    CHECK(r != NULL);
    if (r) check_program(r, 60);
    pass_result_free(r);
    return test_result();
}

/* ---- nvrtc: every kernel compiles for sm_80 and sm_90 without spills ------------------------- */

static int have_nvrtc(void) {
    const char *env = getenv("DEITC_NVRTC_LIB");
    const char *names[] = {env, "/usr/local/cuda/lib64/libnvrtc.so", "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *h = names[i] ? dlopen(names[i], RTLD_NOW | RTLD_LOCAL) : NULL;
        if (h) return 1; /* kept open: closing NVRTC orphans its load-time allocations */
    }
    return 0;
}

/* the cache returns what NVRTC made; a broken kernel's error names the kernel */
static void check_cache_and_errors(void) {
    const char *src = test_env("DEITC_SOURCE_DIR");
    char model[1024], path[1100], err[8192], cache[600];
    snprintf(model, sizeof model, "%s/models/deit_tiny.yaml", src);
    snprintf(path, sizeof path, "%s/runtime", src);
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    setenv("DEITC_CACHE_DIR", cache, 1);
    unsetenv("DEITC_NO_CACHE");
    fe_define micro[] = {{"img_size", "32"}, {"patch_size", "8"}, {"num_classes", "10"},
                         {"embed_dim", "64"}, {"depth", "2"}, {"num_heads", "2"}};
    pass_result *res = training_step(model, micro, 6, 4, NULL);
    cg_headers headers;
    int have_headers = cg_headers_read(&headers, path, err, sizeof err) == 0;
    CHECK_MSG(res && have_headers, "%s", err);
    if (!res || !have_headers) {
        if (have_headers) cg_headers_free(&headers);
        pass_result_free(res);
        return;
    }
    cg_options o;
    cg_options_default(&o);
    cg_program *p = cg_program_new(res, &o, err, sizeof err);
    char *text = cg_kernels_source(p);
    cg_nvrtc_result r1, r2;
    CHECK_MSG(cg_nvrtc_compile(p, text, &headers, "sm_90", &r1, err, sizeof err) == 0, "%s", err);
    CHECK(r1.cached == 0 && r1.cubin_size > 0 && r1.ptx_size > 0);
    CHECK_MSG(cg_nvrtc_compile(p, text, &headers, "sm_90", &r2, err, sizeof err) == 0, "%s", err);
    CHECK(r2.cached == 1 && r2.cubin_size == r1.cubin_size && memcmp(r1.cubin, r2.cubin, r1.cubin_size) == 0);
    CHECK(p->kernels[3].registers > 0 && p->kernels[3].spill_bytes == 0);
    cg_nvrtc_result_free(&r2);
    /* a damaged entry (one flipped byte, cut short, bytes appended) is a miss, never a bad cubin */
    const char *damage[] = {"flip", "truncate", "append"};
    for (int d = 0; d < 3; d++) {
        CHECK(test_sh("f=$(ls '%s'/*.nvrtc) && n=$(stat -c %%s \"$f\") && case %s in "
                      "flip) printf '\\377' | dd of=\"$f\" bs=1 seek=$((n / 2)) conv=notrunc status=none ;; "
                      "truncate) truncate -s $((n - 7)) \"$f\" ;; append) printf x >> \"$f\" ;; esac",
                      cache, damage[d]) == 0);
        CHECK_MSG(cg_nvrtc_compile(p, text, &headers, "sm_90", &r2, err, sizeof err) == 0, "%s", err);
        CHECK_MSG(r2.cached == 0, "a cache entry damaged by '%s' was used", damage[d]);
        CHECK(r2.cubin_size == r1.cubin_size && memcmp(r1.cubin, r2.cubin, r1.cubin_size) == 0);
        cg_nvrtc_result_free(&r2);
        CHECK(cg_nvrtc_compile(p, text, &headers, "sm_90", &r2, err, sizeof err) == 0 && r2.cached == 1);
        cg_nvrtc_result_free(&r2);
    }
    /* the key covers every header of the device library, not only the prelude: a comment added
     * to the last one makes a new entry */
    CHECK(headers.n > 1);
    char *last = headers.texts[headers.n - 1], *changed = malloc(strlen(last) + 32);
    sprintf(changed, "%s/* changed */\n", last);
    headers.texts[headers.n - 1] = changed;
    CHECK_MSG(cg_nvrtc_compile(p, text, &headers, "sm_90", &r2, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(r2.cached == 0, "a changed %s hit the cache entry of the unchanged one", headers.names[headers.n - 1]);
    cg_nvrtc_result_free(&r2);
    headers.texts[headers.n - 1] = last;
    free(changed);
    cg_nvrtc_result_free(&r1);
    free(text);
    /* break kernel 3: the error must say so */
    char *bad = malloc(strlen(p->kernels[3].text) + 64);
    sprintf(bad, "%s", p->kernels[3].text);
    char *brace = strstr(bad, ") {\n");
    CHECK(brace != NULL);
    if (brace) {
        memmove(brace + 4 + 18, brace + 4, strlen(brace + 4) + 1);
        memcpy(brace + 4, "    undeclared_x;\n", 18);
    }
    free(p->kernels[3].text);
    p->kernels[3].text = bad;
    text = cg_kernels_source(p);
    int rc = cg_nvrtc_compile(p, text, &headers, "sm_90", &r1, err, sizeof err);
    CHECK(rc != 0);
    char want[128];
    snprintf(want, sizeof want, "[in kernel %s]", p->kernels[3].name);
    fprintf(stderr, "broken kernel, as expected:\n%.600s\n", err);
    CHECK_MSG(rc && strstr(err, want) && strstr(err, "undeclared_x"), "error lacks '%s': %s", want, err);
    cg_nvrtc_result_free(&r1);
    free(text);
    cg_headers_free(&headers);
    cg_program_free(p);
    pass_result_free(res);
}

static int test_nvrtc(int argc, char **argv) {
    if (!have_nvrtc()) {
        fprintf(stderr, "NVRTC not available: skipped\n");
        return 77;
    }
    check_cache_and_errors();
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    const char *arches[] = {"sm_80", "sm_90"};
    int first = 2;
    char prec[64] = ""; /* "nvrtc --precision P MODEL...": P's kernels (else the cuda default, fp16) */
    if (argc > 3 && strcmp(argv[2], "--precision") == 0) snprintf(prec, sizeof prec, "--precision %s", argv[3]), first = 4;
    for (int a = first; a < argc; a++)
        for (int k = 0; k < 2; k++) {
            char dir[1024], path[1100];
            snprintf(dir, sizeof dir, "%s/%s_%s", tmp, argv[a], arches[k]);
            int rc = test_sh("DEITC_NO_CACHE=1 '%s' compile '%s/models/%s.yaml' --arch %s %s -o '%s/exe' --emit-dir '%s'",
                             bin, src, argv[a], arches[k], prec, dir, dir);
            CHECK_MSG(rc == 0, "%s for %s: deitc compile failed", argv[a], arches[k]);
            snprintf(path, sizeof path, "%s/report.txt", dir);
            char *rep = slurp(path);
            CHECK_MSG(rep != NULL, "no %s", path);
            if (!rep) continue;
            int nk = 0;
            for (char *line = strstr(rep, "\nk"); line; line = strstr(line + 1, "\nk")) {
                char name[128], fib[8];
                int uses, regs, spill;
                if (sscanf(line + 1, "%127s %d %7s %d %d", name, &uses, fib, &regs, &spill) != 5) continue;
                nk++;
                CHECK_MSG(regs > 0, "%s %s: kernel %s has no register count", argv[a], arches[k], name);
                CHECK_MSG(spill == 0, "%s %s: kernel %s spills %d bytes", argv[a], arches[k], name, spill);
            }
            CHECK_MSG(nk > 10, "%s %s: only %d kernels in the report", argv[a], arches[k], nk);
            fprintf(stderr, "%s %s %s: %d kernels, registers and spills checked\n", argv[a], arches[k], prec, nk);
            free(rep);
        }
    return test_result();
}

/* ---- identical: byte-identical output ----------------------------------------------------------- */

static int test_identical(void) {
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    const char *targets[] = {"emu", "cuda"};
    for (int t = 0; t < (have_nvrtc() ? 2 : 1); t++) {
        char *text[2][2] = {{0}};
        for (int r = 0; r < 2; r++) {
            char path[1100];
            int rc = test_sh("'%s' compile '%s/models/deit_small.yaml' --batch 2 --target %s -o '%s/exe' --emit-dir '%s/%s'",
                        bin, src, targets[t], tmp, tmp, targets[t]);
            CHECK(rc == 0);
            snprintf(path, sizeof path, "%s/%s/kernels.cu", tmp, targets[t]);
            text[r][0] = slurp(path);
            snprintf(path, sizeof path, "%s/%s/plan.c", tmp, targets[t]);
            text[r][1] = slurp(path);
        }
        for (int f = 0; f < 2; f++) {
            CHECK(text[0][f] && text[1][f] && strcmp(text[0][f], text[1][f]) == 0);
            free(text[0][f]);
            free(text[1][f]);
        }
    }
    return test_result();
}

/* ---- errors -------------------------------------------------------------------------------------- */

static int test_errors(void) {
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    char exe[1024], log[1024];
    snprintf(exe, sizeof exe, "%s/exe", tmp);
    snprintf(log, sizeof log, "%s/log", tmp);
    struct {
        const char *args, *expect;
        int needs_nvrtc;
    } cases[] = {
        {"--arch sm_12", "unknown arch 'sm_12': NVRTC", 1},
        {"--arch compute_90x", "--arch 'compute_90x': expected sm_XX", 1},
        {"--target fpga", "unknown --target 'fpga'", 0},
        {"--precision FP16", "--precision FP16: unknown (fp32, tf32, fp16, bf16)", 0},
        {"--fuse gelu-bias", "--fuse gelu-bias: unknown fusion", 0},
        {"--fuse adamw-group,gelu-bias",
         "unknown fusion 'gelu-bias' (known: adamw-group, layer-norm-stats, bias-gelu, elementwise-chain", 0},
        {"--precision int8", "--precision int8: unknown", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].needs_nvrtc && !have_nvrtc()) continue;
        int rc = test_sh("DEITC_NO_CACHE=1 '%s' compile '%s/models/deit_tiny.yaml' %s -o '%s' 2>'%s'", bin, src, cases[i].args,
                    exe, log);
        char *msg = slurp(log);
        CHECK_MSG(rc == 1, "%s: exit %d", cases[i].args, rc);
        CHECK_MSG(msg && strstr(msg, cases[i].expect), "%s: message '%s' lacks '%s'", cases[i].args, msg ? msg : "",
                  cases[i].expect);
        CHECK_MSG(access(exe, F_OK) != 0, "%s: an executable was left behind", cases[i].args);
        free(msg);
    }
    int rc = test_sh("'%s' compile '%s/models/deit_tiny.yaml' --target emu -o '%s/no/such/dir/exe' 2>'%s'", bin, src, tmp, log);
    char *msg = slurp(log);
    CHECK(rc == 1);
    CHECK_MSG(msg && strstr(msg, "cannot write the executable"), "message: %s", msg ? msg : "");
    free(msg);
    /* nothing but the log in the temp dir: no partial executables */
    rc = test_sh("test -z \"$(ls -A '%s' | grep -v '^log$')\"", tmp);
    CHECK_MSG(rc == 0, "files left in %s", tmp);
    return test_result();
}

/* ---- emu end to end ------------------------------------------------------------------------------ */

/* the "loss" values of a metrics.jsonl, in order */
static int read_losses(const char *path, float *out, int max) {
    char *s = slurp(path);
    int n = 0;
    for (char *p = s; p && n < max && (p = strstr(p, "\"loss\":")); p += 7) out[n++] = strtof(p + 7, NULL);
    free(s);
    return n;
}

static const rt_tensor *find(const rt_tensor_set *s, const char *name) {
    const rt_tensor *t = rt_tensor_set_find(s, name);
    CHECK_MSG(t != NULL, "no tensor %s", name);
    return t;
}

/* relative L2 error of every tensor of `want` (except skip) against `got` */
/* Every tensor of `want` (but "losses") must be in `got` within tol (relative L2); with a base
 * set, the changes from base are compared instead (weights move little in a few steps). */
static void compare_sets_from(const rt_tensor_set *got, const rt_tensor_set *want, const rt_tensor_set *base,
                              double tol, const char *what) {
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < want->count; i++) {
        const rt_tensor *w = &want->tensors[i];
        if (strcmp(w->name, "losses") == 0) continue;
        /* the key third of a qkv bias has an exactly zero gradient (softmax ignores a shift
         * shared by all keys), so Adam moves it by +-lr times the sign of rounding noise: its
         * change is noise in any precision. The absolute check still covers it. */
        if (base && strstr(w->name, "qkv.bias")) continue;
        const rt_tensor *g = find(got, w->name), *b0 = base ? find(base, w->name) : NULL;
        CHECK_MSG(g && (!base || b0), "%s: '%s' missing", what, w->name);
        if (!g || (base && !b0)) continue;
        int64_t n = rt_tensor_numel(w);
        CHECK(rt_tensor_numel(g) == n && (!b0 || rt_tensor_numel(b0) == n));
        if (rt_tensor_numel(g) != n || (b0 && rt_tensor_numel(b0) != n)) continue;
        float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
        CHECK(rt_tensor_to_f32(g, a) == 0 && rt_tensor_to_f32(w, b) == 0);
        if (b0) {
            float *c = malloc(sizeof(float) * (size_t)n);
            CHECK(rt_tensor_to_f32(b0, c) == 0);
            for (int64_t k = 0; k < n; k++) a[k] -= c[k], b[k] -= c[k];
            free(c);
        }
        double e = test_rel_l2(a, b, n);
        CHECK_MSG(e <= tol, "%s: %s relative error %.3g > %.3g", what, w->name, e, tol);
        if (e > worst) worst = e, worst_name = w->name;
        free(a);
        free(b);
    }
    fprintf(stderr, "%s: worst relative error %.3g (%s)\n", what, worst, worst_name);
}

static void compare_sets(const rt_tensor_set *got, const rt_tensor_set *want, double tol, const char *what) {
    compare_sets_from(got, want, NULL, tol, what);
}

static void build_args(char *buf, size_t size, int argc, char **argv, int from) {
    buf[0] = 0;
    for (int i = from; i < argc; i++) {
        strncat(buf, " '", size - strlen(buf) - 1);
        strncat(buf, argv[i], size - strlen(buf) - 1);
        strncat(buf, "'", size - strlen(buf) - 1);
    }
}

static int train_emu(const char *defs, const char *data, const char *extra) {
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    /* the case's batch, from its config.json */
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", data);
    char *cfg = slurp(path), *at = cfg ? strstr(cfg, "\"batch\":") : NULL;
    long batch = at ? strtol(at + 8, NULL, 10) : 4;
    free(cfg);
    int rc = test_sh("'%s' compile '%s/models/deit_tiny.yaml' %s %s --batch %ld --target emu -o '%s/exe' --emit-dir '%s/emit'",
                bin, src, defs, extra, batch, tmp, tmp);
    CHECK_MSG(rc == 0, "compile failed");
    if (rc) return -1;
    rc = test_sh("'%s/exe' train --data '%s/batch.safetensors' --steps 3 --no-shuffle --lr 1e-3 --weight-decay 0.05 "
            "--init '%s/init.safetensors' --save '%s/out.safetensors' --metrics '%s/m.jsonl'",
            tmp, data, data, tmp, tmp);
    CHECK_MSG(rc == 0, "training failed");
    return rc ? -1 : 0;
}

static int test_emu(int argc, char **argv) {
    char data[1024], defs[2048], path[1100], err[1024];
    if (argc < 3) return 2;
    snprintf(data, sizeof data, "%s/%s", test_env("DEITC_TESTDATA"), argv[2]);
    build_args(defs, sizeof defs, argc, argv, 3);
    if (train_emu(defs, data, "")) return test_result();
    float got[8];
    snprintf(path, sizeof path, "%s/m.jsonl", tmp);
    int n = read_losses(path, got, 8);
    CHECK_MSG(n == 3, "%d losses in metrics", n);
    rt_tensor_set exp = {0}, after = {0}, out = {0};
    snprintf(path, sizeof path, "%s/expected.safetensors", data);
    CHECK(rt_safetensors_read(path, &exp, err, sizeof err) == 0);
    const rt_tensor *losses = find(&exp, "losses");
    if (losses && n == 3) {
        float want[3];
        rt_tensor_to_f32(losses, want);
        double e = test_rel_l2(got, want, 3);
        fprintf(stderr, "losses %g %g %g (expected %g %g %g): relative error %.3g\n", got[0], got[1], got[2], want[0],
                want[1], want[2], e);
        CHECK_MSG(e <= 1e-4, "losses: relative error %.3g > 1e-4", e);
    }
    snprintf(path, sizeof path, "%s/after_steps.safetensors", data);
    CHECK(rt_safetensors_read(path, &after, err, sizeof err) == 0);
    snprintf(path, sizeof path, "%s/out.safetensors", tmp);
    CHECK_MSG(rt_safetensors_read(path, &out, err, sizeof err) == 0, "%s", err);
    compare_sets(&out, &after, 5e-3, "weights after 3 steps");
    rt_tensor_set init = {0};
    snprintf(path, sizeof path, "%s/init.safetensors", data);
    CHECK(rt_safetensors_read(path, &init, err, sizeof err) == 0);
    compare_sets_from(&out, &after, &init, 2e-2, "weight changes in 3 steps"); /* measured worst 5.8e-3 */
    rt_tensor_set_free(&init);
    rt_tensor_set_free(&exp);
    rt_tensor_set_free(&after);
    rt_tensor_set_free(&out);
    return test_result();
}

/* The emu EXE and the interpreter agree on the first step's loss (the forward pass, before any
 * update) to 1e-5, and on all three losses to 1e-4 (Adam's first updates amplify rounding). */
static void check_losses_vs_interpreter(const float *got, const float *want) {
    double first = fabs((double)got[0] - want[0]) / fabs((double)want[0]), all = test_rel_l2(got, want, 3);
    fprintf(stderr, "losses %g %g %g (interpreter %g %g %g): first %.3g, all %.3g\n", got[0], got[1], got[2],
            want[0], want[1], want[2], first, all);
    CHECK_MSG(first <= 1e-5, "first loss: relative error %.3g > 1e-5", first);
    CHECK_MSG(all <= 1e-4, "losses: relative error %.3g > 1e-4", all);
}

/* The emu run (tmp/m.jsonl, tmp/out.safetensors) against `deitc run` (tmp/ref.safetensors):
 * losses as above, weights after 3 steps within 5e-3. */
static void compare_with_interpreter(void) {
    char path[1100], err[1024];
    rt_tensor_set ref = {0}, out = {0}, ref_losses = {0};
    snprintf(path, sizeof path, "%s/ref_losses.safetensors", tmp);
    CHECK(rt_safetensors_read(path, &ref_losses, err, sizeof err) == 0);
    snprintf(path, sizeof path, "%s/ref.safetensors", tmp);
    CHECK(rt_safetensors_read(path, &ref, err, sizeof err) == 0);
    snprintf(path, sizeof path, "%s/out.safetensors", tmp);
    CHECK(rt_safetensors_read(path, &out, err, sizeof err) == 0);
    float got[8], want[3];
    snprintf(path, sizeof path, "%s/m.jsonl", tmp);
    int n = read_losses(path, got, 8);
    const rt_tensor *losses = rt_tensor_set_find(&ref_losses, "losses");
    CHECK(n == 3 && losses && !rt_tensor_set_find(&ref, "losses"));
    if (n == 3 && losses) {
        rt_tensor_to_f32(losses, want);
        check_losses_vs_interpreter(got, want);
    }
    compare_sets(&out, &ref, 5e-3, "weights vs interpreter");
    rt_tensor_set_free(&ref_losses);
    rt_tensor_set_free(&ref);
    rt_tensor_set_free(&out);
}

static int test_emu_vs_run(int argc, char **argv) {
    char data[1024], extra[2048];
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    snprintf(data, sizeof data, "%s/deit_micro", test_env("DEITC_TESTDATA"));
    build_args(extra, sizeof extra, argc, argv, 2);
    if (train_emu(MICRO, data, extra)) return test_result();
    int rc = test_sh("'%s' run '%s/models/deit_tiny.yaml' %s %s --weights '%s/init.safetensors' --input '%s/batch.safetensors' "
                "--steps 3 --lr 1e-3 --weight-decay 0.05 -o '%s/ref.safetensors' --losses '%s/ref_losses.safetensors'",
                bin, src, MICRO, extra, data, data, tmp, tmp);
    CHECK(rc == 0);
    compare_with_interpreter();
    return test_result();
}

/* ---- emu_big: the two-pass reductions and multi-block kernels on sizes that take them -------- */

/* A model whose reductions are large enough for the two-pass kernels (1028 rows: bias
 * gradients in 4 row chunks, LayerNorm dgamma in 32), with rows that are not a multiple of
 * 32 (embed 40, attention rows of 257), label smoothing (cross-entropy's per-row pass) and
 * gradient clipping (multi-block sum of squares). Random data and the EXE's own initial
 * weights (saved after a step at lr 1e-30); the emu EXE must match `deitc run` on 3 steps. */
static const char *BIG = "-D img_size=64 -D patch_size=4 -D num_classes=10 -D embed_dim=40 -D depth=1 -D num_heads=2";

/* Random images of side S (batch 4), the EXE built with `defs copts` and its own initial
 * weights, 3 steps against `deitc run` with `defs ropts`; kernels.cu must hold each of
 * `kernels` (the variants the case is for). */
static int random_vs_run(const char *defs, int S, const char *copts, const char *ropts, const char *const *kernels) {
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    enum { N = 4 };
    char path[1100], err[1024];
    float *img = malloc(sizeof(float) * N * 3 * (size_t)(S * S));
    int64_t labels[N] = {3, 7, 0, 9};
    uint64_t seed = 12345;
    for (int i = 0; i < N * 3 * S * S; i++) img[i] = (float)(rt_uniform01(&seed) * 2 - 1);
    rt_tensor t[2] = {{"images", RT_F32, 4, {N, 3, S, S}, sizeof(float) * N * 3 * (size_t)(S * S), img},
                      {"labels", RT_I64, 1, {N}, sizeof labels, labels}};
    snprintf(path, sizeof path, "%s/data.safetensors", tmp);
    CHECK(rt_safetensors_write(path, t, 2, NULL, err, sizeof err) == 0);
    free(img);
    int rc = test_sh("'%s' compile '%s/models/deit_tiny.yaml' %s %s --batch %d --target emu -o '%s/exe' --emit-dir '%s/emit'",
                bin, src, defs, copts, N, tmp, tmp);
    CHECK_MSG(rc == 0, "compile failed");
    if (rc) return test_result();
    char *cu = slurp((snprintf(path, sizeof path, "%s/emit/kernels.cu", tmp), path));
    for (int k = 0; kernels[k]; k++)
        CHECK_MSG(cu && strstr(cu, kernels[k]), "kernels.cu lacks %s, which this test is for", kernels[k]);
    free(cu);
    rc = test_sh("'%s/exe' train --data '%s/data.safetensors' --steps 1 --no-shuffle --lr 1e-30 --weight-decay 0 "
            "--save '%s/init.safetensors'", tmp, tmp, tmp);
    CHECK_MSG(rc == 0, "saving the initial weights failed");
    rc = rc ? rc : test_sh("'%s/exe' train --data '%s/data.safetensors' --steps 3 --no-shuffle --lr 1e-3 --weight-decay 0.05 "
                      "--init '%s/init.safetensors' --save '%s/out.safetensors' --metrics '%s/m.jsonl'",
                      tmp, tmp, tmp, tmp, tmp);
    CHECK_MSG(rc == 0, "training failed");
    rc = rc ? rc : test_sh("'%s' run '%s/models/deit_tiny.yaml' %s %s --weights '%s/init.safetensors' --input '%s/data.safetensors' "
                      "--steps 3 --lr 1e-3 --weight-decay 0.05 -o '%s/ref.safetensors' --losses '%s/ref_losses.safetensors'",
                      bin, src, defs, ropts, tmp, tmp, tmp, tmp);
    CHECK(rc == 0);
    if (rc) return test_result();
    compare_with_interpreter();
    return test_result();
}

static int test_emu_big(void) {
    const char *opts = "--label-smoothing 0.1 --clip-grad 0.5";
    const char *const kernels[] = {"sum_to_pass2", "layer_norm_dgamma_dbeta_pass2", "cross_entropy_pass2",
                                   "sum_squares_pass2", NULL};
    return random_vs_run(BIG, 64, opts, opts, kernels);
}

/* ---- ln_stats: layer-norm-stats end to end (emu EXE vs the plain interpreter) ------------- *
 * The EXE built with --fuse all,layer-norm-stats (LayerNorm keeps its rows' mean and rstd,
 * its dx reads them) against `deitc run` without the fusion: rows up to the warp limit (one
 * warp a row) and wider (1056: one block a row; without a qkv bias, whose key third has an
 * exactly zero gradient that Adam turns into +-lr steps of rounding noise, 2e-2 here). */
static int test_ln_stats(void) {
    const char *fuse = "--fuse all,layer-norm-stats";
    const char *const kernels[] = {"_layer_norm_stats(", "_layer_norm_dx_stats(",
                                   "if (lane == 0) {\n        mean_out[r] = mean;", NULL};
    random_vs_run(MICRO, 32, fuse, "", kernels);
    const char *wide = "-D img_size=16 -D patch_size=8 -D num_classes=10 -D embed_dim=1056 -D depth=1 -D num_heads=2 "
                       "-D mlp_ratio=0.25 -D qkv_bias=false"; /* no qkv bias: its key third's zero gradient is noise */
    const char *const block_rows[] = {"_layer_norm_stats(", "_layer_norm_dx_stats(",
                                      "if (threadIdx.x == 0) {\n        mean_out[r] = mean;", NULL};
    return random_vs_run(wide, 16, fuse, "", block_rows);
}

/* ---- fuse: --fuse none vs all -------------------------------------------------------------- *
 * adamw-group under all: one AdamW launch for every weight; none: one launch per weight; the
 * two emu EXEs reach the same weights after 3 steps (relative L2 1e-6: the same arithmetic). */
static int adamw_launches(const pass_result *r, int *nadamw) {
    char err[1024];
    cg_options o;
    cg_options_default(&o);
    cg_program *p = cg_program_new(r, &o, err, sizeof err);
    CHECK_MSG(p != NULL, "%s", err);
    if (!p) return -1;
    int launches = 0;
    *nadamw = 0;
    for (int i = 0; i < r->g->n; i++) *nadamw += r->g->nodes[i].op == IR_OP_ADAMW;
    for (int s = 0; s < p->nsteps; s++)
        launches += p->steps[s].kind == RT_STEP_KERNEL && strstr(p->kernels[p->steps[s].kernel].name, "_adamw") != NULL;
    cg_program_free(p);
    return launches;
}

/* The EXE (emu) of `defs` built with `fuse` and trained 3 steps on random images of side S
 * (batch 4) from its own initial weights: weights into *out, losses into losses[3]; its
 * kernels.cu must (want 1) or must not (want 0) hold `kernel`. */
static int train_random(const char *defs, int S, const char *fuse, const char *kernel, int want, rt_tensor_set *out,
                        float *losses) {
    const char *bin = test_env("DEITC_BIN"), *src = test_env("DEITC_SOURCE_DIR");
    enum { N = 4 };
    char path[1100], err[1024];
    float *img = malloc(sizeof(float) * N * 3 * (size_t)(S * S));
    int64_t labels[N] = {2, 0, 1, 2};
    uint64_t seed = 777;
    for (int i = 0; i < N * 3 * S * S; i++) img[i] = (float)(rt_uniform01(&seed) * 2 - 1);
    rt_tensor t[2] = {{"images", RT_F32, 4, {N, 3, S, S}, sizeof(float) * N * 3 * (size_t)(S * S), img},
                      {"labels", RT_I64, 1, {N}, sizeof labels, labels}};
    snprintf(path, sizeof path, "%s/rand.safetensors", tmp);
    CHECK(rt_safetensors_write(path, t, 2, NULL, err, sizeof err) == 0);
    free(img);
    int rc = test_sh("'%s' compile '%s/models/deit_tiny.yaml' %s --fuse %s --batch %d --target emu -o '%s/exe' "
                     "--emit-dir '%s/emit'", bin, src, defs, fuse, N, tmp, tmp);
    CHECK_MSG(rc == 0, "compile failed");
    rc = rc ? rc : test_sh("'%s/exe' train --data '%s/rand.safetensors' --steps 3 --no-shuffle --lr 1e-3 "
                           "--weight-decay 0.05 --save '%s/out.safetensors' --metrics '%s/m.jsonl'", tmp, tmp, tmp, tmp);
    CHECK_MSG(rc == 0, "training failed");
    if (rc) return -1;
    char *cu = slurp((snprintf(path, sizeof path, "%s/emit/kernels.cu", tmp), path));
    CHECK_MSG(cu && (strstr(cu, kernel) != NULL) == want, "--fuse %s: kernels.cu %s %s", fuse, want ? "lacks" : "has",
              kernel);
    free(cu);
    snprintf(path, sizeof path, "%s/m.jsonl", tmp);
    CHECK(read_losses(path, losses, 3) == 3);
    snprintf(path, sizeof path, "%s/out.safetensors", tmp);
    CHECK_MSG(rt_safetensors_read(path, out, err, sizeof err) == 0, "%s", err);
    return 0;
}

/* bias-gelu and elementwise-chain on a size of their own (3 heads of 16, depth 3, mlp_ratio 2,
 * 7 classes): fused and unfused EXEs agree on losses and weights after 3 steps (relative L2 1e-5; the same float
 * expressions, so in fact to the bit) */
static void fuse_bias_gelu_own_size(void) {
    const char *defs = "-D img_size=24 -D patch_size=8 -D num_classes=7 -D embed_dim=48 -D depth=3 -D num_heads=3 "
                       "-D mlp_ratio=2";
    rt_tensor_set out[3] = {{0}};
    float losses[3][3] = {{0}};
    const char *modes[3] = {"none", "bias-gelu", "elementwise-chain"};
    const char *kernel[3] = {"_chain(", "_bias_gelu(", "_chain("};
    for (int m = 0; m < 3; m++)
        if (train_random(defs, 24, modes[m], kernel[m], m > 0, &out[m], losses[m])) return;
    for (int m = 1; m < 3; m++) {
        char what[128];
        snprintf(what, sizeof what, "weights after 3 steps, --fuse %s vs none (own size)", modes[m]);
        double e = test_rel_l2(losses[m], losses[0], 3);
        CHECK_MSG(e <= 1e-5, "losses, %s vs none: relative L2 %.3g", modes[m], e);
        compare_sets(&out[m], &out[0], 1e-5, what);
        CHECK(out[0].count == out[m].count && out[0].count > 40);
    }
    for (int m = 0; m < 3; m++) rt_tensor_set_free(&out[m]);
}

static int count_chains(const pass_result *r, int *bias_gelu_launches) {
    char err[1024];
    int chains = 0;
    for (int i = 0; i < r->g->n; i++) chains = r->g->nodes[i].chain > chains ? r->g->nodes[i].chain : chains;
    cg_options o;
    cg_options_default(&o);
    cg_program *p = cg_program_new(r, &o, err, sizeof err);
    *bias_gelu_launches = 0;
    for (int s = 0; p && s < p->nsteps; s++)
        *bias_gelu_launches +=
            p->steps[s].kind == RT_STEP_KERNEL && strstr(p->kernels[p->steps[s].kernel].name, "_bias_gelu") != NULL &&
            strstr(p->kernels[p->steps[s].kernel].name, "_bias_gelu_grad") == NULL;
    cg_program_free(p);
    return chains;
}

/* Zeros the key third of every qkv bias (f32): its gradient is exactly zero (softmax ignores a
 * shift shared by all keys), so Adam moves it by +-lr times the sign of rounding noise, which a
 * fusion summing a gradient in another order (layer-norm-dbeta, under all) changes. */
static void key_bias_zero(rt_tensor_set *s) {
    for (int i = 0; i < s->count; i++) {
        rt_tensor *t = &s->tensors[i];
        int64_t n = rt_tensor_numel(t);
        if (!strstr(t->name, "qkv.bias") || t->dtype != RT_F32 || n % 3) continue;
        memset((float *)t->data + n / 3, 0, sizeof(float) * (size_t)(n / 3));
    }
}

static int test_fuse(void) {
    const char *src = test_env("DEITC_SOURCE_DIR");
    char model[1024], data[1024], path[1100], err[1024];
    snprintf(model, sizeof model, "%s/models/deit_tiny.yaml", src);
    fe_define micro[] = {{"img_size", "32"}, {"patch_size", "8"}, {"num_classes", "10"},
                         {"embed_dim", "64"}, {"depth", "2"}, {"num_heads", "2"}};
    const char *modes[2] = {"none", "all"};
    for (int m = 0; m < 2; m++) {
        pass_result *r = training_step(model, micro, 6, 4, modes[m]);
        CHECK(r != NULL);
        if (!r) continue;
        int nadamw = 0, launches = adamw_launches(r, &nadamw);
        fprintf(stderr, "--fuse %s: %d adamw nodes, %d adamw launches\n", modes[m], nadamw, launches);
        CHECK(nadamw > 30 && launches == (m == 0 ? nadamw : 1));
        /* bias-gelu: one chain and launch per block's MLP; elementwise-chain: the bias adds of
         * attn.proj and fc2 with the residual adds after them (2 a block); bias-gelu-grad and
         * bias-grad (test_fuse_grad.c): 2 + 3; residual-layer-norm: the LayerNorms after those
         * chains join them, the pos_embed add and norm1 a chain of their own: 1; layer-norm-dbeta:
         * one per LayerNorm, 5; residual-layer-norm-grad: the LayerNorm dxs with the residual
         * gradient's add after them, 3 joining bias-grad's chains of that add, and block 0's norm1
         * (its sum feeds pos_embed's gradient) a chain of its own: 1; softmax-cross-entropy: the
         * loss and its derivative, 1 */
        int bg = 0, chains = count_chains(r, &bg);
        CHECK_MSG(chains == (m == 0 ? 0 : 19) && bg == (m == 0 ? 0 : 2), "--fuse %s: %d chains, %d bias_gelu launches",
                  modes[m], chains, bg);
        pass_result_free(r);
    }
    snprintf(data, sizeof data, "%s/deit_micro", test_env("DEITC_TESTDATA"));
    /* deit_micro: none, all but qkv-attention (which sums in another order: attention_e2e_*),
     * and each fusion of the fusion stage on its own (qkv biases: their
     * query and value thirds, key_bias_zero says why) */
    enum { RUNS = 4 };
    const char *runs[RUNS] = {"none", "adamw-group,bias-gelu,elementwise-chain", "bias-gelu", "elementwise-chain"};
    rt_tensor_set out[RUNS] = {{0}};
    float losses[RUNS][3] = {{0}};
    for (int m = 0; m < RUNS; m++) {
        char extra[64];
        snprintf(extra, sizeof extra, "--fuse %s", runs[m]);
        if (train_emu(MICRO, data, extra)) return test_result();
        snprintf(path, sizeof path, "%s/out.safetensors", tmp);
        CHECK_MSG(rt_safetensors_read(path, &out[m], err, sizeof err) == 0, "%s", err);
        snprintf(path, sizeof path, "%s/m.jsonl", tmp);
        CHECK(read_losses(path, losses[m], 3) == 3);
        char *cu = slurp((snprintf(path, sizeof path, "%s/emit/kernels.cu", tmp), path));
        CHECK_MSG(cu && (strstr(cu, "_bias_gelu(") != NULL) == (m > 0), "--fuse %s: bias_gelu kernel", runs[m]);
        free(cu);
    }
    for (int m = 0; m < RUNS; m++) key_bias_zero(&out[m]);
    for (int m = 1; m < RUNS; m++) {
        char what[128];
        snprintf(what, sizeof what, "weights after 3 steps, --fuse %s vs none", runs[m]);
        compare_sets(&out[m], &out[0], 1e-6, what);
        double e = test_rel_l2(losses[m], losses[0], 3);
        CHECK_MSG(e <= 1e-5, "losses, --fuse %s vs none: relative L2 %.3g", runs[m], e);
        CHECK(out[0].count == out[m].count && out[0].count > 30);
    }
    for (int m = 0; m < RUNS; m++) rt_tensor_set_free(&out[m]);
    fuse_bias_gelu_own_size();
    return test_result();
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_codegen plan|nvrtc MODEL...|identical|errors|emu CASE [-D ..]|emu_vs_run ARGS|emu_big|"
                        "ln_stats|fuse\n");
        return 2;
    }
    make_tmp();
    int rc = 2;
    if (strcmp(argv[1], "plan") == 0) rc = test_plan();
    else if (strcmp(argv[1], "nvrtc") == 0) rc = test_nvrtc(argc, argv);
    else if (strcmp(argv[1], "identical") == 0) rc = test_identical();
    else if (strcmp(argv[1], "errors") == 0) rc = test_errors();
    else if (strcmp(argv[1], "emu") == 0) rc = test_emu(argc, argv);
    else if (strcmp(argv[1], "emu_vs_run") == 0) rc = test_emu_vs_run(argc, argv);
    else if (strcmp(argv[1], "emu_big") == 0) rc = test_emu_big();
    else if (strcmp(argv[1], "ln_stats") == 0) rc = test_ln_stats();
    else if (strcmp(argv[1], "fuse") == 0) rc = test_fuse();
    else fprintf(stderr, "unknown mode %s\n", argv[1]);
    remove_tmp();
    return rc;
}
