/* compile.c: cg_compile, the chain from the pipeline's result (a training graph, its schedule and
 * memory plan) to a standalone executable.
 *
 *   program (emit.c) -> kernels.cu, plan.c, report.txt in the work dir (--emit-dir, else a
 *   temporary dir removed afterwards)
 *   init.bin: the weights' values from the model file (if any), embedded by plan.c
 *   cuda: NVRTC -> kernels.cubin + kernels.ptx, embedded by plan.c; cc plan.c
 *   emu:  c++ -DDEITC_EMU emu_glue.cc (which includes kernels.cu) and cc plan.c, in parallel
 *   link with the runtime's static libraries into EXE.tmp.PID, then rename to EXE.
 *
 * Where the runtime is: DEITC_RUNTIME_DIR (the runtime/ folder with plan.h, rt.h, the prelude
 * and cuda_emu.h) and DEITC_RUNTIME_LIB (colon-separated static libraries), from the
 * environment, else the values CMake compiled in. DEITC_CC / DEITC_CXX pick the host compilers.
 */
#include "codegen/codegen.h"
#include "runtime/rt.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#ifndef DEITC_RUNTIME_DIR
#define DEITC_RUNTIME_DIR ""
#endif
#ifndef DEITC_RUNTIME_LIB
#define DEITC_RUNTIME_LIB ""
#endif

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    if (!s) abort();
    size_t k;
    while ((k = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (n + 1 == cap) {
            cap *= 2;
            s = realloc(s, cap);
            if (!s) abort();
        }
    }
    fclose(f);
    s[n] = 0;
    return s;
}

static int write_file(const char *path, const void *data, size_t n, char *err, size_t errsize) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        snprintf(err, errsize, "cannot write %s: %s", path, strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    return 0;
}

/* ---- running the host compiler ------------------------------------------------------------------ */

typedef struct {
    char *argv[64];
    int argc;
    char log[4200]; /* file receiving stdout+stderr */
    pid_t pid;
} job;

static void job_arg(job *j, const char *s) {
    if (j->argc < 62) {
        j->argv[j->argc++] = strdup(s);
        j->argv[j->argc] = NULL;
    }
}

/* j = `compiler FLAGS... -c dir/src -o dir/obj`, logging to dir/log (sanitized like deitc
 * itself in sanitizer builds, so the executable's ASan runtime matches). */
static void compile_job(job *j, const char *compiler, const char *const *flags, const char *dir, const char *src,
                        const char *obj, const char *log) {
    char path[4300];
    job_arg(j, compiler);
    for (; *flags; flags++) job_arg(j, *flags);
#ifdef DEITC_SANITIZE
    job_arg(j, "-fsanitize=address,undefined");
    job_arg(j, "-fno-omit-frame-pointer");
#endif
    job_arg(j, "-c");
    snprintf(path, sizeof path, "%s/%s", dir, src);
    job_arg(j, path);
    job_arg(j, "-o");
    snprintf(path, sizeof path, "%s/%s", dir, obj);
    job_arg(j, path);
    snprintf(j->log, sizeof j->log, "%s/%s", dir, log);
}

static void job_free(job *j) {
    for (int i = 0; i < j->argc; i++) free(j->argv[i]);
    j->argc = 0;
}

static int job_start(job *j, char *err, size_t errsize) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, j->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawnp(&j->pid, j->argv[0], &fa, NULL, j->argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) {
        snprintf(err, errsize, "cannot run the host compiler '%s': %s", j->argv[0], strerror(rc));
        return -1;
    }
    return 0;
}

static int job_wait(job *j, char *err, size_t errsize) {
    int status = 0;
    while (waitpid(j->pid, &status, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    char *log = read_text(j->log);
    size_t n = (size_t)snprintf(err, errsize, "host compile step failed:");
    for (int i = 0; i < j->argc && n < errsize; i++) n += (size_t)snprintf(err + n, errsize - n, " %s", j->argv[i]);
    if (n < errsize && log) {
        size_t len = strlen(log), keep = errsize / 2;
        snprintf(err + n, errsize - n, "\n%s", len > keep ? log + len - keep : log);
    }
    free(log);
    return -1;
}

static int run_jobs(job *jobs, int n, char *err, size_t errsize) {
    int rc = 0, started = 0;
    for (; started < n; started++)
        if (job_start(&jobs[started], err, errsize)) {
            rc = -1;
            break;
        }
    for (int i = 0; i < started; i++) {
        char e2[2048];
        if (job_wait(&jobs[i], e2, sizeof e2) && rc == 0) {
            rc = -1;
            snprintf(err, errsize, "%s", e2);
        }
    }
    return rc;
}

/* ---- the chain ---------------------------------------------------------------------------------- */

typedef struct {
    char dir[4096];
    int temporary;
} workdir;

static void remove_dir(const char *dir) {
    static const char *const files[] = {"kernels.cu", "plan.c", "plan.o", "emu_glue.cc", "emu_glue.o",
                                        "kernels.cubin", "kernels.ptx", "init.bin", "report.txt", "cc_plan.log",
                                        "cc_emu.log", "link.log"};
    char p[4300];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static int add_libs(job *j, const char *libs) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", libs);
    int n = 0;
    for (char *s = strtok(buf, ":"); s; s = strtok(NULL, ":")) {
        if (!*s) continue;
        job_arg(j, s);
        n++;
    }
    return n;
}

int cg_compile(const pass_result *r, const cg_options *o, char *err, size_t errsize) {
    double t0 = now_s();
    const char *target = o->target ? o->target : "cuda";
    int emu = strcmp(target, "emu") == 0;
    if (!emu && strcmp(target, "cuda") != 0) {
        snprintf(err, errsize, "unknown --target '%s' (cuda or emu)", target);
        return -1;
    }
    char local_arch[16];
    const char *arch = o->arch ? o->arch : cg_default_arch(local_arch, sizeof local_arch);
    if (!o->output || !*o->output) {
        snprintf(err, errsize, "compile needs -o EXE");
        return -1;
    }
    const char *rt_dir = getenv("DEITC_RUNTIME_DIR");
    if (!rt_dir || !*rt_dir) rt_dir = DEITC_RUNTIME_DIR;
    const char *rt_libs = getenv("DEITC_RUNTIME_LIB");
    if (!rt_libs || !*rt_libs) rt_libs = DEITC_RUNTIME_LIB;
    char plan_h[4200], tmp_exe[4200];
    snprintf(plan_h, sizeof plan_h, "%s/plan.h", rt_dir);
    if (!*rt_dir || access(plan_h, R_OK)) {
        snprintf(err, errsize, "cannot find the runtime headers (%s); set DEITC_RUNTIME_DIR to deitc's runtime/ folder",
                 *rt_dir ? plan_h : "no DEITC_RUNTIME_DIR");
        return -1;
    }
    if (!emu && (strncmp(arch, "sm_", 3) != 0 || !arch[3])) {
        snprintf(err, errsize, "--arch '%s': expected sm_XX (e.g. sm_80, sm_90)", arch);
        return -1;
    }
    if (o->emit_dir && cg_mkdir_p(o->emit_dir)) {
        snprintf(err, errsize, "cannot create --emit-dir '%s': %s", o->emit_dir, strerror(errno));
        return -1;
    }
    /* the output must be writable before any work is done */
    snprintf(tmp_exe, sizeof tmp_exe, "%s.tmp.%ld", o->output, (long)getpid());
    FILE *probe = fopen(tmp_exe, "wb");
    if (!probe) {
        snprintf(err, errsize, "cannot write the executable '%s': %s", o->output, strerror(errno));
        return -1;
    }
    fclose(probe);
    int tracked_exe = rt_tmp_track(tmp_exe, 0), tracked_dir = -1;

    int rc = -1;
    workdir w = {{0}, 0};
    cg_program *p = NULL;
    char *src = NULL;
    cg_headers headers = {0};
    cg_nvrtc_result nv = {0};
    job jobs[3];
    memset(jobs, 0, sizeof jobs);
    if (o->emit_dir) {
        snprintf(w.dir, sizeof w.dir, "%s", o->emit_dir);
    } else {
        const char *tmpdir = getenv("TMPDIR");
        snprintf(w.dir, sizeof w.dir, "%s/deitc-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
        if (!mkdtemp(w.dir)) {
            snprintf(err, errsize, "cannot create a temporary directory %s: %s", w.dir, strerror(errno));
            goto done;
        }
        w.temporary = 1;
        tracked_dir = rt_tmp_track(w.dir, 1);
    }
    p = cg_program_new(r, o, err, errsize);
    if (!p) goto done;
    src = cg_kernels_source(p);
    char path[4300], cubin_path[4300], ptx_path[4300];
    snprintf(path, sizeof path, "%s/kernels.cu", w.dir);
    if (write_file(path, src, strlen(src), err, errsize)) goto done;
    double t_nvrtc = 0;
    if (!emu) {
        if (cg_headers_read(&headers, rt_dir, err, errsize)) goto done;
        double t1 = now_s();
        if (cg_nvrtc_compile(p, src, &headers, arch, &nv, err, errsize)) goto done;
        t_nvrtc = now_s() - t1;
        snprintf(cubin_path, sizeof cubin_path, "%s/kernels.cubin", w.dir);
        snprintf(ptx_path, sizeof ptx_path, "%s/kernels.ptx", w.dir);
        if (write_file(cubin_path, nv.cubin, nv.cubin_size, err, errsize) ||
            write_file(ptx_path, nv.ptx, nv.ptx_size, err, errsize))
            goto done;
    }
    /* init.bin, plan.c, emu_glue.cc, report.txt */
    char init_path[4300];
    snprintf(init_path, sizeof init_path, "%s/init.bin", w.dir);
    FILE *f = fopen(init_path, "wb");
    int64_t init_bytes = f ? cg_write_init_data(p, f) : -1;
    if (!f || fclose(f) || init_bytes < 0) {
        snprintf(err, errsize, "cannot write %s: %s", init_path, strerror(errno));
        goto done;
    }
    cg_plan_target t = {target, arch, emu ? NULL : cubin_path, emu ? NULL : ptx_path, nv.cubin_size, p->precision,
                        init_bytes ? init_path : NULL};
    snprintf(path, sizeof path, "%s/plan.c", w.dir);
    f = fopen(path, "w");
    if (!f || cg_write_plan(p, &t, f) || fclose(f)) {
        snprintf(err, errsize, "cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    if (emu) {
        snprintf(path, sizeof path, "%s/emu_glue.cc", w.dir);
        f = fopen(path, "w");
        if (!f || cg_write_emu_glue(p, f) || fclose(f)) {
            snprintf(err, errsize, "cannot write %s: %s", path, strerror(errno));
            goto done;
        }
    }
    snprintf(path, sizeof path, "%s/report.txt", w.dir);
    f = fopen(path, "w");
    if (f) {
        cg_write_report(p, f);
        fclose(f);
    }
    /* host compiles (in parallel), then the link */
    const char *cc = getenv("DEITC_CC"), *cxx = getenv("DEITC_CXX");
    if (!cc || !*cc) cc = "cc";
    if (!cxx || !*cxx) cxx = "c++";
    char inc_root[4200], inc_rt[4300], obj[4300];
    snprintf(inc_root, sizeof inc_root, "-I%s/..", rt_dir);
    snprintf(inc_rt, sizeof inc_rt, "-I%s", rt_dir);
    job *jl = &jobs[2];
    int njobs = 0;
    compile_job(&jobs[njobs++], cc, (const char *[]){"-std=gnu11", "-O1", inc_root, NULL}, w.dir, "plan.c",
                "plan.o", "cc_plan.log");
    if (emu) /* -O3: ~10% faster fiber kernels than -O2 (inlined rendezvous); same IEEE results */
        compile_job(&jobs[njobs++], cxx, (const char *[]){"-std=c++17", "-O3", "-DDEITC_EMU", inc_rt, NULL}, w.dir,
                    "emu_glue.cc", "emu_glue.o", "cc_emu.log");
    if (run_jobs(jobs, njobs, err, errsize)) goto done;
    job_arg(jl, emu ? cxx : cc);
#ifdef DEITC_SANITIZE
    job_arg(jl, "-fsanitize=address,undefined");
#endif
    snprintf(obj, sizeof obj, "%s/plan.o", w.dir);
    job_arg(jl, obj);
    if (emu) {
        snprintf(obj, sizeof obj, "%s/emu_glue.o", w.dir);
        job_arg(jl, obj);
    }
    if (add_libs(jl, rt_libs) == 0) {
        snprintf(err, errsize, "no runtime library to link (set DEITC_RUNTIME_LIB to libdeitc_exe.a)");
        goto done;
    }
    job_arg(jl, "-lm");
    job_arg(jl, "-lpthread");
    job_arg(jl, "-ldl");
    job_arg(jl, "-o");
    job_arg(jl, tmp_exe);
    snprintf(jl->log, sizeof jl->log, "%s/link.log", w.dir);
    if (run_jobs(jl, 1, err, errsize)) goto done;
    chmod(tmp_exe, 0755);
    if (rename(tmp_exe, o->output)) {
        snprintf(err, errsize, "cannot write the executable '%s': %s", o->output, strerror(errno));
        goto done;
    }
    int maxreg = 0, spills = 0;
    for (int k = 0; k < p->nkernels; k++) {
        if (p->kernels[k].registers > maxreg) maxreg = p->kernels[k].registers;
        if (p->kernels[k].spill_bytes > 0) spills += p->kernels[k].spill_bytes;
    }
    printf("deitc: wrote %s (%s%s%s): %d kernels, %d steps, arena %.1f MiB (peak live %.1f MiB)", o->output, target,
           emu ? "" : " ", emu ? "" : arch, p->nkernels, p->nsteps, (double)p->mem->arena_bytes / 1048576.0,
           (double)p->mem->peak_bytes / 1048576.0);
    if (!emu)
        printf(" + %lld MiB GEMM workspace; nvrtc %s %.2f s, max %d registers, %d spill bytes",
               CG_GEMM_WORKSPACE_BYTES >> 20, nv.cached ? "cached" : "compiled", t_nvrtc, maxreg, spills);
    printf("; %.2f s\n", now_s() - t0);
    if (spills) fprintf(stderr, "deitc: warning: %d bytes of register spills (see report.txt in --emit-dir)\n", spills);
    rc = 0;
done:
    for (int i = 0; i < 3; i++) job_free(&jobs[i]);
    unlink(tmp_exe);
    rt_tmp_untrack(tracked_exe);
    cg_nvrtc_result_free(&nv);
    free(src);
    cg_headers_free(&headers);
    cg_program_free(p);
    if (w.temporary) remove_dir(w.dir);
    rt_tmp_untrack(tracked_dir);
    return rc;
}
