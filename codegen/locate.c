/* locate.c: where deitc's own files are: the runtime the link step needs, and the models that
 * `deitc compile deit_small` finds by name. Two layouts:
 *
 *   installed (cmake --install, the .deb, the container image), found from the executable's own
 *   path (/proc/self/exe), so a prefix can be moved or copied elsewhere as a whole:
 *     PREFIX/bin/deitc
 *     PREFIX/lib/deitc/runtime/     plan.h rt.h cuda_emu*.h, the device library *.cuh (-I PREFIX/lib/deitc)
 *     PREFIX/lib/deitc/LIB.a         DEITC_INSTALL_LIBS, in link order (the runtime's and the
 *                                   image libraries it bundles)
 *     PREFIX/share/deitc/models/    NAME.yaml
 *   build tree: the absolute paths CMake compiled in (DEITC_RUNTIME_DIR, DEITC_RUNTIME_LIB,
 *     DEITC_MODELS_DIR), used only where no installed layout surrounds the executable.
 *
 * The environment (DEITC_RUNTIME_DIR with DEITC_RUNTIME_LIB, DEITC_MODELS_DIR) overrides both.
 */
#include "codegen/codegen.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DEITC_RUNTIME_DIR
#define DEITC_RUNTIME_DIR ""
#endif
#ifndef DEITC_RUNTIME_LIB
#define DEITC_RUNTIME_LIB ""
#endif
#ifndef DEITC_MODELS_DIR
#define DEITC_MODELS_DIR ""
#endif
#ifndef DEITC_INSTALL_LIBS
#define DEITC_INSTALL_LIBS "libdeitc_exe.a:libdeitc_rt.a"
#endif

static int readable(const char *dir, const char *file) {
    char p[CG_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return access(p, R_OK) == 0;
}

/* PREFIX of an executable PREFIX/bin/NAME: its path with symlinks resolved, two components off */
static int exe_prefix(const char *exe, char *out, size_t size) {
    char real[PATH_MAX];
    if (!realpath(exe, real)) return -1;
    for (int k = 0; k < 2; k++) {
        char *slash = strrchr(real, '/');
        if (!slash) return -1;
        *slash = 0;
    }
    if (!real[0]) snprintf(real, sizeof real, "/"); /* /bin/deitc: prefix / */
    if (strlen(real) + 1 > size) return -1;
    snprintf(out, size, "%s", real);
    return 0;
}

int cg_paths_find(const char *exe, cg_paths *out) {
    memset(out, 0, sizeof *out);
    char prefix[CG_PATH_MAX] = "", rt[CG_PATH_MAX + 32] = "";
    int installed = 0;
    const char *root = ""; /* PREFIX, "" for / */
    if (exe_prefix(exe ? exe : "/proc/self/exe", prefix, sizeof prefix) == 0) {
        root = strcmp(prefix, "/") ? prefix : "";
        snprintf(rt, sizeof rt, "%s/lib/deitc/runtime", root);
        installed = readable(rt, "plan.h");
    }
    if (installed) {
        snprintf(out->prefix, sizeof out->prefix, "%s", prefix);
        snprintf(out->runtime_dir, sizeof out->runtime_dir, "%s", rt);
        size_t n = 0;
        char names[sizeof DEITC_INSTALL_LIBS];
        snprintf(names, sizeof names, "%s", DEITC_INSTALL_LIBS);
        for (char *s = strtok(names, ":"); s; s = strtok(NULL, ":")) {
            if (!*s) continue;
            /* a relative name is a file in PREFIX/lib/deitc; an absolute one stays as it is */
            int w = s[0] == '/' ? snprintf(out->runtime_libs + n, sizeof out->runtime_libs - n, "%s%s", n ? ":" : "", s)
                                : snprintf(out->runtime_libs + n, sizeof out->runtime_libs - n, "%s%s/lib/deitc/%s",
                                           n ? ":" : "", root, s);
            if (w < 0 || (size_t)w >= sizeof out->runtime_libs - n) break;
            n += (size_t)w;
        }
        snprintf(out->models_dir, sizeof out->models_dir, "%s/share/deitc/models", root);
        out->runtime_from = out->models_from = "installed prefix";
    } else {
        snprintf(out->runtime_dir, sizeof out->runtime_dir, "%s", DEITC_RUNTIME_DIR);
        snprintf(out->runtime_libs, sizeof out->runtime_libs, "%s", DEITC_RUNTIME_LIB);
        snprintf(out->models_dir, sizeof out->models_dir, "%s", DEITC_MODELS_DIR);
        out->runtime_from = out->models_from = "build tree";
    }
    const char *env_rt = getenv("DEITC_RUNTIME_DIR"), *env_lib = getenv("DEITC_RUNTIME_LIB");
    const char *env_models = getenv("DEITC_MODELS_DIR");
    if (env_rt && *env_rt) {
        snprintf(out->runtime_dir, sizeof out->runtime_dir, "%s", env_rt);
        out->runtime_from = "DEITC_RUNTIME_DIR";
    }
    if (env_lib && *env_lib) {
        snprintf(out->runtime_libs, sizeof out->runtime_libs, "%s", env_lib);
        out->runtime_from = env_rt && *env_rt ? "DEITC_RUNTIME_DIR, DEITC_RUNTIME_LIB" : "DEITC_RUNTIME_LIB";
    }
    if (env_models && *env_models) {
        snprintf(out->models_dir, sizeof out->models_dir, "%s", env_models);
        out->models_from = "DEITC_MODELS_DIR";
    }
    return installed;
}

static int has_model_ext(const char *s) {
    size_t n = strlen(s);
    return (n > 5 && strcmp(s + n - 5, ".yaml") == 0) || (n > 4 && strcmp(s + n - 4, ".yml") == 0) ||
           (n > 5 && strcmp(s + n - 5, ".onnx") == 0);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int cg_models_list(const cg_paths *p, char *out, size_t size) {
    if (size) out[0] = 0;
    DIR *d = opendir(p->models_dir);
    if (!d) return -1;
    char *names[256];
    int count = 0;
    for (struct dirent *e; (e = readdir(d)) && count < 256;) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || n <= 5 || strcmp(e->d_name + n - 5, ".yaml") != 0) continue;
        names[count] = strndup(e->d_name, n - 5);
        if (!names[count]) abort();
        count++;
    }
    closedir(d);
    qsort(names, (size_t)count, sizeof names[0], by_name);
    size_t used = 0;
    for (int i = 0; i < count; i++) {
        int w = snprintf(out + used, size > used ? size - used : 0, "%s%s", i ? " " : "", names[i]);
        if (w > 0 && used + (size_t)w < size) used += (size_t)w;
        free(names[i]);
    }
    return count;
}

int cg_model_resolve(const char *model, const cg_paths *p, char *out, size_t size, char *err, size_t errsize) {
    if (strchr(model, '/') || access(model, F_OK) == 0 || !*model) {
        snprintf(out, size, "%s", model); /* a path: the frontend reports what is wrong with it */
        return 0;
    }
    char cand[2][CG_PATH_MAX + 300];
    int ncand = 0;
    snprintf(cand[ncand++], sizeof cand[0], "%s/%s", p->models_dir, model);
    if (!has_model_ext(model)) snprintf(cand[ncand++], sizeof cand[0], "%s/%s.yaml", p->models_dir, model);
    for (int i = ncand - 1; i >= 0; i--)
        if (*p->models_dir && access(cand[i], R_OK) == 0) {
            if (strlen(cand[i]) + 1 > size) break;
            snprintf(out, size, "%s", cand[i]);
            return 0;
        }
    char list[2048];
    int n = *p->models_dir ? cg_models_list(p, list, sizeof list) : -1;
    if (n < 0)
        snprintf(err, errsize, "%s: no such file, and no models folder to find it by name in (%s%s%s)", model,
                 *p->models_dir ? p->models_dir : "none known", *p->models_dir ? ": " : "",
                 *p->models_dir ? strerror(errno) : "set DEITC_MODELS_DIR");
    else
        snprintf(err, errsize, "%s: no such file, and no model of that name in %s (%s: %s)", model, p->models_dir,
                 n ? "models" : "it has no models", n ? list : "no .yaml files");
    return -1;
}
