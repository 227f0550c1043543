/* test_locate.c: locate.c's lookup of the runtime and the models. A fake installed prefix
 * (PREFIX/bin/deitc, PREFIX/lib/deitc/runtime/plan.h, PREFIX/share/deitc/models/m1.yaml) is
 * found from the executable's path, still after the prefix is moved and through a symlink to
 * the executable (as /proc/self/exe resolves it); an executable with no layout around it gets
 * the build tree's paths; the environment overrides both; model names resolve in the models
 * folder, and an unknown name is refused with the names there are. */
#include "codegen/codegen.h"
#include "tests/harness.h"

#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void touch(const char *dir, const char *name) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    *strrchr(p, '/') = 0;
    cg_mkdir_p(p);
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    CHECK_MSG(f != NULL, "cannot create %s", p);
    if (f) fclose(f);
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* the installed layout under `prefix`, found for the executable `exe` */
static void check_installed(const char *exe, const char *prefix) {
    cg_paths p;
    char want[PATH_MAX + 64];
    CHECK_MSG(cg_paths_find(exe, &p) == 1, "no installed layout found for %s", exe);
    CHECK(strcmp(p.prefix, prefix) == 0);
    snprintf(want, sizeof want, "%s/lib/deitc/runtime", prefix);
    CHECK_MSG(strcmp(p.runtime_dir, want) == 0, "runtime %s, want %s", p.runtime_dir, want);
    snprintf(want, sizeof want, "%s/lib/deitc/libdeitc_exe.a:%s/lib/deitc/libdeitc_rt.a", prefix, prefix);
    CHECK_MSG(starts_with(p.runtime_libs, want), "libs %s, want %s...", p.runtime_libs, want);
    snprintf(want, sizeof want, "%s/share/deitc/models", prefix);
    CHECK_MSG(strcmp(p.models_dir, want) == 0, "models %s, want %s", p.models_dir, want);
    CHECK(strcmp(p.runtime_from, "installed prefix") == 0 && strcmp(p.models_from, "installed prefix") == 0);
    /* a model by name, with or without .yaml; a path as it is; an unknown name refused */
    char out[CG_PATH_MAX + 300], err[2048];
    snprintf(want, sizeof want, "%s/share/deitc/models/m1.yaml", prefix);
    CHECK(cg_model_resolve("m1", &p, out, sizeof out, err, sizeof err) == 0 && strcmp(out, want) == 0);
    CHECK(cg_model_resolve("m1.yaml", &p, out, sizeof out, err, sizeof err) == 0 && strcmp(out, want) == 0);
    CHECK(cg_model_resolve("sub/m1.yaml", &p, out, sizeof out, err, sizeof err) == 0 && strcmp(out, "sub/m1.yaml") == 0);
    CHECK(cg_model_resolve("m2", &p, out, sizeof out, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "m2: no such file, and no model of that name in") && strstr(err, "(models: m1 m3)"),
              "error: %s", err);
}

int main(void) {
    unsetenv("DEITC_RUNTIME_DIR");
    unsetenv("DEITC_RUNTIME_LIB");
    unsetenv("DEITC_MODELS_DIR");
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX], real[PATH_MAX], a[PATH_MAX + 8], b[PATH_MAX + 8], exe[PATH_MAX + 200], link[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/deitc_locate_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir) || !realpath(dir, real)) return 1;
    snprintf(a, sizeof a, "%s/a", real);
    touch(a, "bin/deitc");
    touch(a, "lib/deitc/runtime/plan.h");
    touch(a, "share/deitc/models/m1.yaml");
    touch(a, "share/deitc/models/m3.yaml");
    touch(a, "share/deitc/models/notes.txt");
    snprintf(exe, sizeof exe, "%s/bin/deitc", a);
    check_installed(exe, a);

    /* moved: the same answers under the new name */
    snprintf(b, sizeof b, "%s/b", real);
    CHECK(rename(a, b) == 0);
    snprintf(exe, sizeof exe, "%s/bin/deitc", b);
    check_installed(exe, b);
    /* through a symlink elsewhere (as /usr/local/bin/deitc -> PREFIX/bin/deitc) */
    snprintf(link, sizeof link, "%s/deitc-link", real);
    CHECK(symlink(exe, link) == 0);
    check_installed(link, b);

    /* the environment overrides the installed layout */
    setenv("DEITC_MODELS_DIR", "/somewhere/models", 1);
    setenv("DEITC_RUNTIME_DIR", "/somewhere/runtime", 1);
    cg_paths p;
    cg_paths_find(exe, &p);
    CHECK(strcmp(p.models_dir, "/somewhere/models") == 0 && strcmp(p.models_from, "DEITC_MODELS_DIR") == 0);
    CHECK(strcmp(p.runtime_dir, "/somewhere/runtime") == 0 && strcmp(p.runtime_from, "DEITC_RUNTIME_DIR") == 0);
    char out[CG_PATH_MAX + 300], err[2048];
    CHECK(cg_model_resolve("m1", &p, out, sizeof out, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "no models folder to find it by name in (/somewhere/models"), "error: %s", err);
    unsetenv("DEITC_MODELS_DIR");
    unsetenv("DEITC_RUNTIME_DIR");

    /* no layout around the executable (a half-copied prefix: no runtime headers): the build
     * tree's compiled-in paths, which are this source tree's */
    char plain[PATH_MAX + 64];
    snprintf(plain, sizeof plain, "%s/plain", real);
    touch(plain, "bin/deitc");
    touch(plain, "share/deitc/models/m1.yaml");
    snprintf(exe, sizeof exe, "%s/bin/deitc", plain);
    CHECK(cg_paths_find(exe, &p) == 0);
    CHECK(strcmp(p.runtime_from, "build tree") == 0 && p.prefix[0] == 0);
    const char *src = test_env("DEITC_SOURCE_DIR");
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/runtime", src);
    CHECK_MSG(strcmp(p.runtime_dir, want) == 0, "build-tree runtime %s, want %s", p.runtime_dir, want);
    snprintf(want, sizeof want, "%s/models", src);
    CHECK_MSG(strcmp(p.models_dir, want) == 0, "build-tree models %s, want %s", p.models_dir, want);
    CHECK(strstr(p.runtime_libs, "libdeitc_exe.a") != NULL);
    CHECK(cg_model_resolve("deit_small", &p, out, sizeof out, err, sizeof err) == 0 &&
          strcmp(out + strlen(out) - strlen("/models/deit_small.yaml"), "/models/deit_small.yaml") == 0);
    /* this test's own executable (NULL: /proc/self/exe) is in the build tree */
    CHECK(cg_paths_find(NULL, &p) == 0 && strcmp(p.runtime_from, "build tree") == 0);

    if (!test_failures) test_sh("rm -rf '%s'", real);
    else fprintf(stderr, "kept %s\n", real);
    return test_result();
}
