/* op_kernel_test.c: every emitted kernel tested on its own (the idea of ggml's test-backend-ops).
 *
 *   op_kernel_test --coverage          every op the emitter compiles (codegen's per-op table)
 *                                      has a case at f32, f16 and bf16 (op_cases.c's exemptions
 *                                      aside); and the check itself fails when any op's cases
 *                                      are taken away
 *   op_kernel_test --expr              the elementwise expression builder composes chains
 *                                      (operands parenthesized where needed, intermediates
 *                                      rounded to their dtype)
 *   op_kernel_test --emu               coverage, then each case's kernels hit the variant it
 *                                      names; the cases compiled into one emu program (the
 *                                      op_kernel_check driver), run, compared with the
 *                                      interpreter (relative L2 per case: f32 1e-6, f16/bf16
 *                                      one rounding step)
 *   op_kernel_test --make-cuda-package OUTDIR [--arch sm_90]
 *                                      the same cases for a GPU: OUTDIR/op_kernel_check (cubin
 *                                      embedded, libcuda dlopen'd), op_kernel_cases.txt and
 *                                      op_kernel_data.safetensors next to it
 *   op_kernel_test --cuda-package      builds a package in a temporary folder, checks that it
 *                                      needs no shared library beyond libc/libm (ldd) and runs
 *                                      it: without a GPU it must say so and fail every case;
 *                                      with one, pass them (exit 77: no NVRTC here)
 *
 * The host compilers (DEITC_CC / DEITC_CXX, else cc / c++) build the program as `deitc
 * compile` does, against the runtime libraries CMake names (OKT_RUNTIME_LIB) and the driver
 * (OKT_DRIVER_LIB, tests/ops/op_kernel_check.c). */
#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "codegen/emit_internal.h"
#include "runtime/rt.h"
#include "tests/harness.h"
#include "tests/ops/op_cases.h"

#ifndef OKT_RUNTIME_DIR
#define OKT_RUNTIME_DIR ""
#endif
#ifndef OKT_RUNTIME_LIB
#define OKT_RUNTIME_LIB ""
#endif
#ifndef OKT_DRIVER_LIB
#define OKT_DRIVER_LIB ""
#endif
#ifdef DEITC_SANITIZE
#define SAN_FLAGS " -fsanitize=address,undefined -fno-omit-frame-pointer"
#else
#define SAN_FLAGS ""
#endif

static const ir_dtype FLOATS[3] = {IR_F32, IR_F16, IR_BF16};

/* ---- coverage ------------------------------------------------------------------------------ */

/* 0 when every op with kernels or GEMMs has a case at each float dtype (exemptions aside) among
 * the cases not masked out; else -1, the missing ones printed (unless quiet). */
static int coverage(const op_suite *s, const unsigned char *masked, int quiet) {
    int missing = 0;
    char err[256];
    if (cg_op_table_check(err, sizeof err)) {
        if (!quiet) fprintf(stderr, "%s\n", err);
        return -1;
    }
    for (int op = 0; op < IR_OP_COUNT; op++) {
        cg_op_kind k = cg_op_kind_of((ir_op)op);
        if (k != CG_OP_KERNELS && k != CG_OP_GEMM) continue;
        for (int d = 0; d < 3; d++) {
            int found = 0;
            for (int c = 0; c < s->ncases && !found; c++)
                found = (!masked || !masked[c]) && s->cases[c].op == (ir_op)op && s->cases[c].dtype == FLOATS[d];
            if (found || op_dtype_exempt((ir_op)op, FLOATS[d])) continue;
            if (!quiet)
                fprintf(stderr, "coverage: op %s has kernels but no %s case in tests/ops/op_cases.c\n",
                        ir_op_name((ir_op)op), ir_dtype_name(FLOATS[d]));
            missing++;
        }
    }
    return missing ? -1 : 0;
}

static int test_coverage(const op_suite *s) {
    CHECK(s->ncases > 0);
    CHECK(coverage(s, NULL, 0) == 0);
    /* the check has teeth: without any one op's cases it fails */
    unsigned char *masked = calloc((size_t)s->ncases, 1);
    if (!masked) abort();
    int ops = 0;
    for (int op = 0; op < IR_OP_COUNT; op++) {
        cg_op_kind k = cg_op_kind_of((ir_op)op);
        if (k != CG_OP_KERNELS && k != CG_OP_GEMM) continue;
        ops++;
        for (int c = 0; c < s->ncases; c++) masked[c] = s->cases[c].op == (ir_op)op;
        CHECK_MSG(coverage(s, masked, 1) != 0, "coverage passes without the cases of %s", ir_op_name((ir_op)op));
    }
    free(masked);
    fprintf(stderr, "coverage: %d cases over %d ops with kernels\n", s->ncases, ops);
    return test_result();
}

/* ---- the program ----------------------------------------------------------------------------- */

/* the case a step belongs to, from its label "%N cNNN.name ..." (-1: none) */
static int step_case(const rt_plan_step *st) {
    const char *w = st->what ? strchr(st->what, ' ') : NULL;
    int c;
    if (!w || sscanf(w + 1, "c%d.", &c) != 1) return -1;
    return c;
}

/* Each case's kernels contain its `expect` and not its `reject`; GEMM cases count their steps. */
static void check_variants(const op_suite *s, const cg_program *p) {
    for (int c = 0; c < s->ncases; c++) {
        const op_case *k = &s->cases[c];
        int found = !k->expect, rejected = 0, gemms = 0, steps = 0, want_gemms = -1, want_epi = -1;
        if (k->expect && sscanf(k->expect, "gemm_steps=%d", &want_gemms) == 1) found = 1;
        if (k->expect && sscanf(k->expect, "gemm_epilogue=%d", &want_epi) == 1) want_gemms = 1; /* one GEMM, no kernel */
        for (int i = 0; i < p->nsteps; i++) {
            const rt_plan_step *st = &p->steps[i];
            if (step_case(st) != c) continue;
            steps++;
            if (st->kind == RT_STEP_GEMM) {
                gemms++;
                if (want_epi >= 0 && (int)st->gemm.epilogue == want_epi) found = 1;
                continue;
            }
            const cg_kernel *kn = &p->kernels[st->kernel];
            if (k->expect && want_gemms < 0 && (strstr(kn->name, k->expect) || strstr(kn->text, k->expect))) found = 1;
            if (k->reject && (strstr(kn->name, k->reject) || strstr(kn->text, k->reject))) rejected = 1;
        }
        CHECK_MSG(steps > 0, "case %d (%s %s %s) has no steps", c, ir_op_name(k->op), k->variant, ir_dtype_name(k->dtype));
        CHECK_MSG(found, "case %d (%s %s %s): no kernel contains '%s'", c, ir_op_name(k->op), k->variant,
                  ir_dtype_name(k->dtype), k->expect);
        CHECK_MSG(!rejected, "case %d (%s %s %s): a kernel contains '%s'", c, ir_op_name(k->op), k->variant,
                  ir_dtype_name(k->dtype), k->reject);
        CHECK_MSG(want_gemms < 0 || gemms == want_gemms, "case %d (%s %s): %d GEMM steps, expected %d", c,
                  ir_op_name(k->op), k->variant, gemms, want_gemms);
        CHECK_MSG(want_epi < 0 || steps == gemms, "case %d (%s %s): %d kernel steps beside the epilogue's GEMM", c,
                  ir_op_name(k->op), k->variant, steps - gemms);
    }
}

static uint16_t to_bits16(ir_dtype t, double v) {
    return t == IR_F16 ? rt_float_to_half((float)v) : rt_float_to_bf16((float)v);
}

/* the values as the dtype's bytes */
static void *pack(ir_dtype t, const double *v, int64_t n, size_t *bytes) {
    *bytes = (size_t)n * ir_dtype_size(t);
    unsigned char *b = malloc(*bytes + 1);
    if (!b) abort();
    for (int64_t i = 0; i < n; i++) {
        if (t == IR_F32) {
            float f = (float)v[i];
            memcpy(b + 4 * i, &f, 4);
        } else if (t == IR_F16 || t == IR_BF16) {
            uint16_t h = to_bits16(t, v[i]);
            memcpy(b + 2 * i, &h, 2);
        } else if (t == IR_I32) {
            int32_t k = (int32_t)v[i];
            memcpy(b + 4 * i, &k, 4);
        } else {
            int64_t k = (int64_t)v[i];
            memcpy(b + 8 * i, &k, 8);
        }
    }
    return b;
}

/* op_kernel_cases.txt and op_kernel_data.safetensors (inputs; the interpreter's results) */
static int write_data(const op_suite *s, const char *dir) {
    const ir_graph *g = s->g;
    ir_interp *it = ir_interp_new(g, 0);
    if (!it) return -1;
    for (int i = 0; i < s->cap && i < g->n; i++) {
        if (!s->leaf[i]) continue;
        if (ir_dtype_is_float(g->nodes[i].dtype)) {
            ir_interp_set_f64(it, i, s->leaf[i]);
        } else {
            int64_t n = ir_numel(&g->nodes[i]);
            int64_t *v = malloc(sizeof *v * (size_t)n);
            if (!v) abort();
            for (int64_t k = 0; k < n; k++) v[k] = (int64_t)s->leaf[i][k];
            ir_interp_set_i64(it, i, v);
            free(v);
        }
    }
    if (ir_interp_run(it)) {
        fprintf(stderr, "interpreter: %s\n", ir_interp_error(it));
        ir_interp_free(it);
        return -1;
    }
    int cap = 0;
    for (int c = 0; c < s->ncases; c++) cap += s->cases[c].nin + s->cases[c].nout;
    rt_tensor *ts = calloc((size_t)cap + 1, sizeof *ts);
    if (!ts) abort();
    int nt = 0;
    char path[1200];
    snprintf(path, sizeof path, "%s/op_kernel_cases.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "op_kernel_cases 1 %d\n", s->ncases);
    for (int c = 0; c < s->ncases; c++) {
        const op_case *k = &s->cases[c];
        fprintf(f, "%s %s %s %.3g %d %d", ir_op_name(k->op), k->variant, ir_dtype_name(k->dtype), k->tol, k->nin,
                k->nout);
        for (int j = 0; j < k->nin; j++) {
            const ir_node *n = &g->nodes[k->in[j]];
            fprintf(f, " %s", n->name);
            rt_tensor *t = &ts[nt++];
            t->name = ir_arena_printf((ir_arena *)&g->arena, "in/%s", n->name);
            t->dtype = (rt_dtype)n->dtype;
            t->ndim = n->ndim;
            memcpy(t->shape, n->shape, sizeof(int64_t) * (size_t)n->ndim);
            t->data = pack(n->dtype, s->leaf[k->in[j]], ir_numel(n), &t->nbytes);
        }
        for (int j = 0; j < k->nout; j++) {
            const ir_node *n = &g->nodes[k->out[j]];
            fprintf(f, " %s", n->name);
            int64_t numel = ir_numel(n);
            double *v = malloc(sizeof *v * (size_t)numel + 1);
            if (!v) abort();
            ir_interp_get_f64(it, k->out[j], v);
            rt_tensor *t = &ts[nt++];
            t->name = ir_arena_printf((ir_arena *)&g->arena, "want/%s", n->name);
            t->dtype = RT_F32;
            t->ndim = n->ndim;
            memcpy(t->shape, n->shape, sizeof(int64_t) * (size_t)n->ndim);
            t->data = pack(IR_F32, v, numel, &t->nbytes);
            free(v);
        }
        fprintf(f, "\n");
    }
    int rc = fclose(f) ? -1 : 0;
    char err[512];
    snprintf(path, sizeof path, "%s/op_kernel_data.safetensors", dir);
    if (!rc && rt_safetensors_write(path, ts, nt, NULL, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        rc = -1;
    }
    for (int i = 0; i < nt; i++) free(ts[i].data);
    free(ts);
    ir_interp_free(it);
    return rc;
}

static int write_text(const char *dir, const char *name, const char *text) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f) ? -1 : 0;
}

static const char *env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* Writes dir/op_kernel_check (emu or cuda for arch) and its data; 0 on success. */
static int build_package(const op_suite *s, const char *dir, int emu, const char *arch) {
    char err[16384], path[1200];
    if (cg_mkdir_p(dir)) {
        fprintf(stderr, "cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    cg_options o;
    cg_options_default(&o);
    o.target = emu ? "emu" : "cuda";
    o.arch = arch;
    /* the suite's graph (a copy: the pipeline takes over what it is given) through the stages
     * a compile runs: no training step; of the fusions adamw-group (the multi-tensor AdamW case
     * is its group), bias-gelu, elementwise-chain, bias-gelu-grad, residual-layer-norm(-grad) and
     * layer-norm-dbeta (the chain cases), which mark
     * nodes without rebuilding, and bias-grad, gelu-epilogue and softmax-cross-entropy, whose new
     * graphs move no node
     * here (the cases are built in the order they make), so node ids stay */
    ir_graph *copy = ir_graph_new();
    copy->info = s->g->info;
    for (int i = 0; i < s->g->n; i++)
        if (ir_copy_node(copy, s->g, i, NULL) != i) {
            fprintf(stderr, "copying the suite's graph: %s\n", copy->error);
            ir_graph_free(copy);
            return -1;
        }
    pass_options po;
    pass_options_default(&po);
    po.training = 0;
    po.fuse = "adamw-group,bias-gelu,elementwise-chain,bias-gelu-grad,bias-grad,gelu-epilogue,residual-layer-norm,layer-norm-dbeta,"
              "residual-layer-norm-grad,softmax-cross-entropy";
    po.scratch_bytes = cg_scratch_bytes;
    pass_result *r = pass_pipeline_run(copy, &po, NULL, err, sizeof err);
    for (int i = 0; r && i < s->g->n; i++) /* the cases' node ids held */
        if (r->g->n != s->g->n || r->g->nodes[i].op != s->g->nodes[i].op) {
            fprintf(stderr, "the fusion stage moved node %%%d of the cases' graph\n", i);
            pass_result_free(r);
            return -1;
        }
    cg_program *p = r ? cg_program_new(r, &o, err, sizeof err) : NULL;
    if (!p) {
        fprintf(stderr, "%s\n", err);
        pass_result_free(r);
        return -1;
    }
    check_variants(s, p);
    int rc = -1;
    char *src = cg_kernels_source(p);
    cg_headers headers = {0};
    cg_nvrtc_result nv = {0};
    char cubin[1300], ptx[1300];
    snprintf(cubin, sizeof cubin, "%s/kernels.cubin", dir);
    snprintf(ptx, sizeof ptx, "%s/kernels.ptx", dir);
    if (write_text(dir, "kernels.cu", src) || write_data(s, dir)) goto done;
    if (!emu) {
        if (cg_headers_read(&headers, OKT_RUNTIME_DIR, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            goto done;
        }
        if (cg_nvrtc_compile(p, src, &headers, arch, &nv, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            goto done;
        }
        int maxreg = 0, spills = 0;
        for (int k = 0; k < p->nkernels; k++) {
            if (p->kernels[k].registers > maxreg) maxreg = p->kernels[k].registers;
            if (p->kernels[k].spill_bytes > 0) spills += p->kernels[k].spill_bytes;
        }
        fprintf(stderr, "nvrtc %s: %d kernels, at most %d registers, %d spill bytes\n", arch, p->nkernels, maxreg, spills);
        const char *report = getenv("OKT_KERNEL_REPORT"); /* kernels whose name holds it: registers, spills */
        for (int k = 0; report && *report && k < p->nkernels; k++)
            if (strstr(p->kernels[k].name, report))
                fprintf(stderr, "  %s %s: %d registers, %d spill bytes; %s\n", arch, p->kernels[k].name,
                        p->kernels[k].registers, p->kernels[k].spill_bytes, p->kernels[k].desc);
        CHECK_MSG(spills == 0, "%d bytes of register spills for %s", spills, arch);
        FILE *f = fopen(cubin, "wb"), *g = fopen(ptx, "wb");
        int bad = !f || !g || fwrite(nv.cubin, 1, nv.cubin_size, f) != nv.cubin_size ||
                  fwrite(nv.ptx, 1, nv.ptx_size, g) != nv.ptx_size;
        if (f && fclose(f)) bad = 1;
        if (g && fclose(g)) bad = 1;
        if (bad) goto done;
    }
    cg_plan_target t = {o.target, arch, emu ? NULL : cubin, emu ? NULL : ptx, nv.cubin_size, "fp32", NULL};
    snprintf(path, sizeof path, "%s/plan.c", dir);
    FILE *f = fopen(path, "w");
    if (!f || cg_write_plan(p, &t, f) || fclose(f)) goto done;
    if (emu) {
        snprintf(path, sizeof path, "%s/emu_glue.cc", dir);
        f = fopen(path, "w");
        if (!f || cg_write_emu_glue(p, f) || fclose(f)) goto done;
    }
    /* compile (emu: the glue and plan in parallel) and link */
    const char *cc = env_or("DEITC_CC", "cc"), *cxx = env_or("DEITC_CXX", "c++");
    char libs[4096];
    snprintf(libs, sizeof libs, "%s", OKT_RUNTIME_LIB);
    for (char *c = libs; *c; c++)
        if (*c == ':') *c = ' ';
    char plan_cc[2400];
    snprintf(plan_cc, sizeof plan_cc, "%s -std=gnu11 -O1%s -I'%s/..' -c plan.c -o plan.o", cc, SAN_FLAGS, OKT_RUNTIME_DIR);
    if (emu) {
        /* -O0: the glue of ~340 kernels compiles 6x faster than at -O1 (3 s against 16 s of CPU)
         * and the cases are too small for the speed of their code to matter; IEEE float either
         * way (no fast-math; x86-64 has no contraction into FMA by default) */
        if (test_sh("cd '%s' && { %s & pid=$!; %s -std=c++17 -O0%s -DDEITC_EMU -I'%s' -c emu_glue.cc -o emu_glue.o; "
                    "r=$?; wait $pid && test $r = 0; }",
                    dir, plan_cc, cxx, SAN_FLAGS, OKT_RUNTIME_DIR) != 0)
            goto done;
    } else if (test_sh("cd '%s' && %s", dir, plan_cc) != 0) {
        goto done;
    }
    if (test_sh("cd '%s' && %s%s plan.o %s '%s' %s -lm -lpthread -ldl -o op_kernel_check", dir, emu ? cxx : cc,
                SAN_FLAGS, emu ? "emu_glue.o" : "", OKT_DRIVER_LIB, libs) != 0)
        goto done;
    rc = 0;
done:
    cg_nvrtc_result_free(&nv);
    cg_headers_free(&headers);
    free(src);
    cg_program_free(p);
    pass_result_free(r);
    return rc;
}

/* Runs dir/op_kernel_check; fills passed/failed from its last line; returns its exit status and
 * whether its output mentions `needle` (when given). */
static int run_check(const char *dir, int *passed, int *failed, const char *needle, int *saw) {
    char cmd[1400], line[1024];
    snprintf(cmd, sizeof cmd, "'%s/op_kernel_check' 2>&1", dir);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    *passed = *failed = -1;
    if (saw) *saw = 0;
    while (fgets(line, sizeof line, f)) {
        fputs(line, stderr);
        sscanf(line, "%d passed, %d failed", passed, failed);
        if (needle && strstr(line, needle)) *saw = 1;
    }
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void make_tmp(char *tmp, size_t size) {
    snprintf(tmp, size, "%s/deitc_ops_XXXXXX", env_or("TMPDIR", "/tmp"));
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void remove_tmp(const char *tmp) {
    if (test_failures && getenv("OKT_KEEP")) return;
    test_sh("rm -rf '%s'", tmp);
}

static int test_emu(const op_suite *s) {
    test_coverage(s);
    char tmp[512];
    make_tmp(tmp, sizeof tmp);
    CHECK(build_package(s, tmp, 1, NULL) == 0);
    if (!test_failures) {
        int passed, failed;
        CHECK(run_check(tmp, &passed, &failed, NULL, NULL) == 0);
        CHECK_MSG(passed == s->ncases && failed == 0, "%d passed, %d failed of %d cases", passed, failed, s->ncases);
    }
    remove_tmp(tmp);
    return test_result();
}

static int have_nvrtc(void) {
    const char *env = getenv("DEITC_NVRTC_LIB");
    const char *names[] = {env, "/usr/local/cuda/lib64/libnvrtc.so", "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *h = names[i] ? dlopen(names[i], RTLD_NOW | RTLD_LOCAL) : NULL;
        if (h) return 1; /* kept open: closing NVRTC orphans its load-time allocations */
    }
    return 0;
}

/* every library the executable needs is one of libc's (the sanitizers' runtimes in their builds) */
static void check_ldd(const char *exe) {
    static const char *const ok[] = {"linux-vdso", "libc.so", "libm.so", "libdl.so", "libpthread.so", "ld-linux",
                                     "librt.so", "libasan", "libubsan", "libstdc++", "libgcc_s"};
    char cmd[1400], line[1024];
    snprintf(cmd, sizeof cmd, "ldd '%s' 2>&1", exe);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    if (!f) return;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char lib[512];
        if (sscanf(line, " %511s", lib) != 1) continue;
        n++;
        int good = 0;
        for (size_t i = 0; i < sizeof ok / sizeof ok[0] && !good; i++) good = strstr(lib, ok[i]) != NULL;
#ifdef DEITC_SANITIZE /* sanitizer builds link the image libraries shared (runtime/CMakeLists.txt) */
        good = good || strstr(lib, "libjpeg") || strstr(lib, "libpng") || strstr(lib, "libz.so");
#else
        good = good && !strstr(lib, "libasan") && !strstr(lib, "libubsan") && !strstr(lib, "libstdc++");
#endif
        CHECK_MSG(good && !strstr(line, "not found"), "%s needs %s", exe, line);
    }
    pclose(f);
    CHECK_MSG(n > 0, "ldd printed nothing for %s", exe);
}

static int test_cuda_package(const op_suite *s) {
    if (!have_nvrtc()) {
        fprintf(stderr, "no NVRTC: skipped\n");
        return 77;
    }
    char tmp[512], dir[600];
    make_tmp(tmp, sizeof tmp);
    snprintf(dir, sizeof dir, "%s/op_kernels", tmp);
    CHECK(build_package(s, dir, 0, "sm_90") == 0);
    if (!test_failures) {
        char exe[700];
        snprintf(exe, sizeof exe, "%s/op_kernel_check", dir);
        check_ldd(exe);
        int passed, failed, saw;
        int rc = run_check(dir, &passed, &failed, "CUDA", &saw);
        if (rc == 0) { /* a machine with a GPU */
            CHECK_MSG(passed == s->ncases && failed == 0, "%d passed, %d failed", passed, failed);
        } else { /* none: it starts, says what is missing and fails every case */
            CHECK_MSG(rc == 1 && saw && passed == 0 && failed == s->ncases,
                      "exit %d, passed %d, failed %d, mentions CUDA: %d", rc, passed, failed, saw);
        }
    }
    remove_tmp(tmp);
    return test_result();
}

/* ---- the expression builder ------------------------------------------------------------ */

static void check_expr(char *got, const char *want) {
    CHECK_MSG(got && strcmp(got, want) == 0, "expression '%s', want '%s'", got ? got : "(null)", want);
    free(got);
}

static ir_node enode(ir_op op, ir_dtype t, double alpha) {
    ir_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.dtype = t;
    n.attrs.alpha = alpha;
    return n;
}

static int test_expr(void) {
    ir_node add = enode(IR_OP_ADD, IR_F32, 0), sub = enode(IR_OP_SUB, IR_F32, 0), mul = enode(IR_OP_MUL, IR_F32, 0);
    ir_node scale = enode(IR_OP_SCALE, IR_F32, 0.5), gelu = enode(IR_OP_GELU, IR_F32, 0);
    ir_node cast16 = enode(IR_OP_CAST, IR_F16, 0), castb = enode(IR_OP_CAST, IR_BF16, 0), erfg = enode(IR_OP_ERF_GRAD, IR_F32, 0);
    ir_node cnst = enode(IR_OP_CONST, IR_F32, -0.25), sqrtn = enode(IR_OP_SQRT, IR_F32, 0);
    /* the unfused texts (what kernels.cu has always had) */
    check_expr(cg_expr_op(&add, (const char *[]){"a", "b"}), "a + b");
    check_expr(cg_expr_op(&scale, (const char *[]){"a"}), "a * 0.5f");
    check_expr(cg_expr_op(&erfg, (const char *[]){"a", "b"}), "a * 1.12837917f * dc_exp(-b * b)");
    check_expr(cg_expr_op(&cnst, (const char *[]){NULL}), "-0.25f");
    /* chains: bias + GELU + cast to f16, as one expression */
    char *sum = cg_expr_op(&add, (const char *[]){"x0[i]", "x1[i % 384]"});
    check_expr(strdup(sum), "x0[i] + x1[i % 384]");
    char *g = cg_expr_value(&gelu, (const char *[]){sum});
    check_expr(strdup(g), "dc_gelu_erf(x0[i] + x1[i % 384])");
    check_expr(cg_expr_op(&cast16, (const char *[]){g}), "dc_gelu_erf(x0[i] + x1[i % 384])");
    check_expr(cg_expr_value(&cast16, (const char *[]){g}), "dc_h2f(dc_f2h(dc_gelu_erf(x0[i] + x1[i % 384])))");
    check_expr(cg_expr_value(&castb, (const char *[]){"a"}), "dc_b2f(dc_f2b(a))");
    /* operands in an operator's place are parenthesized unless atoms */
    check_expr(cg_expr_op(&scale, (const char *[]){sum}), "(x0[i] + x1[i % 384]) * 0.5f");
    check_expr(cg_expr_op(&sub, (const char *[]){"a", "b - c"}), "a - (b - c)");
    check_expr(cg_expr_op(&mul, (const char *[]){"dc_erf(a) + b", "dc_erf(a)"}), "(dc_erf(a) + b) * dc_erf(a)");
    check_expr(cg_expr_op(&mul, (const char *[]){"-0.25f", "a4.x"}), "(-0.25f) * a4.x");
    check_expr(cg_expr_op(&mul, (const char *[]){"f(a)[0]", "(a)"}), "(f(a)[0]) * ((a))");
    check_expr(cg_expr_op(&erfg, (const char *[]){"dy", "x * 2.0f"}), "dy * 1.12837917f * dc_exp(-(x * 2.0f) * (x * 2.0f))");
    check_expr(cg_expr_op(&sqrtn, (const char *[]){"a + b"}), "dc_sqrt(a + b)");
    free(g);
    free(sum);
    return test_result();
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: op_kernel_test --coverage | --expr | --emu | --cuda-package | "
                        "--make-cuda-package OUTDIR [--arch sm_XX]\n");
        return 2;
    }
    if (strcmp(argv[1], "--expr") == 0) return test_expr();
    op_suite *s = op_suite_new();
    int rc;
    if (strcmp(argv[1], "--coverage") == 0) {
        rc = test_coverage(s);
    } else if (strcmp(argv[1], "--emu") == 0) {
        rc = test_emu(s);
    } else if (strcmp(argv[1], "--cuda-package") == 0) {
        rc = test_cuda_package(s);
    } else if (strcmp(argv[1], "--make-cuda-package") == 0 && argc >= 3) {
        const char *arch = "sm_90";
        for (int i = 3; i + 1 < argc; i += 2)
            if (strcmp(argv[i], "--arch") == 0) arch = argv[i + 1];
        if (coverage(s, NULL, 0) || build_package(s, argv[2], 0, arch) || test_failures) {
            fprintf(stderr, "op_kernel_test: could not build the cuda package in %s\n", argv[2]);
            rc = 1;
        } else {
            fprintf(stderr, "op_kernel_test: wrote %s/op_kernel_check (%s, %d cases)\n", argv[2], arch, s->ncases);
            rc = 0;
        }
    } else {
        fprintf(stderr, "op_kernel_test: unknown mode %s\n", argv[1]);
        rc = 2;
    }
    op_suite_free(s);
    return rc;
}
