/* nvrtc.c: kernels.cu -> cubin + PTX with NVRTC, behind an on-disk cache.
 *
 * NVRTC is loaded with dlopen (DEITC_NVRTC_LIB, the toolkit found at build time, then the
 * loader's path), so deitc builds and runs without CUDA; only the cuda target needs it.
 * Options: --gpu-architecture=sm_XX --std=c++17 --ptxas-options=-v (registers and spills
 * land in the log) --split-compile=2 (both cores). The device library (kernel_prelude.cuh
 * and the dc_*.cuh headers it includes, cg_headers_read) is handed to NVRTC as in-memory
 * headers, so the cache key (a 128-bit hash of source, every header's name and text, options
 * and NVRTC's version) covers everything the output depends on. A cache entry is one file, written to a
 * temporary name and renamed, so concurrent compiles never see half an entry.
 */
#include "codegen/codegen.h"
#include "runtime/rt.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DEITC_NVRTC_DEFAULT
#define DEITC_NVRTC_DEFAULT "/usr/local/cuda/lib64/libnvrtc.so"
#endif

typedef int nvrtc_result;
typedef void *nvrtc_program;
typedef struct {
    void *lib;
    nvrtc_result (*version)(int *, int *);
    nvrtc_result (*create)(nvrtc_program *, const char *, const char *, int, const char *const *,
                           const char *const *);
    nvrtc_result (*compile)(nvrtc_program, int, const char *const *);
    nvrtc_result (*log_size)(nvrtc_program, size_t *);
    nvrtc_result (*log)(nvrtc_program, char *);
    nvrtc_result (*cubin_size)(nvrtc_program, size_t *);
    nvrtc_result (*cubin)(nvrtc_program, char *);
    nvrtc_result (*ptx_size)(nvrtc_program, size_t *);
    nvrtc_result (*ptx)(nvrtc_program, char *);
    nvrtc_result (*destroy)(nvrtc_program *);
    const char *(*error_string)(nvrtc_result);
} nvrtc_api;

#ifdef DEITC_SANITIZE
/* libnvrtc allocates a buffer at load time that it never frees (its own C++ runtime's); that is
 * not ours to fix, so LeakSanitizer is told to ignore leaks from inside it. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libnvrtc.so\n"; }
#endif

/* Loaded once and never closed: closing NVRTC would orphan what its C++ runtime allocated for
 * the life of the process (LeakSanitizer reports that as a leak). */
static nvrtc_api loaded;
static const char *loaded_name; /* the name dlopen found it by */

static int nvrtc_load(nvrtc_api *a, char *err, size_t errsize) {
    if (loaded.lib) {
        *a = loaded;
        return 0;
    }
    memset(a, 0, sizeof *a);
    const char *env = getenv("DEITC_NVRTC_LIB");
    const char *names[] = {env, DEITC_NVRTC_DEFAULT, "libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12",
                           "/usr/local/cuda/lib64/libnvrtc.so.13"}; /* the last: CUDA runtime images */
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !a->lib; i++)
        if (names[i] && *names[i] && (a->lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL))) loaded_name = names[i];
    if (!a->lib) {
        snprintf(err, errsize, "the cuda target needs NVRTC: cannot load libnvrtc.so (%s); install the CUDA "
                 "toolkit, set DEITC_NVRTC_LIB, or use --target emu", dlerror());
        return -1;
    }
#define SYM(field, name)                                                                 \
    do {                                                                                 \
        *(void **)&a->field = dlsym(a->lib, name);                                       \
        if (!a->field) {                                                                 \
            snprintf(err, errsize, "libnvrtc has no symbol %s", name);                   \
            dlclose(a->lib);                                                             \
            return -1;                                                                   \
        }                                                                                \
    } while (0)
    SYM(version, "nvrtcVersion");
    SYM(create, "nvrtcCreateProgram");
    SYM(compile, "nvrtcCompileProgram");
    SYM(log_size, "nvrtcGetProgramLogSize");
    SYM(log, "nvrtcGetProgramLog");
    SYM(cubin_size, "nvrtcGetCUBINSize");
    SYM(cubin, "nvrtcGetCUBIN");
    SYM(ptx_size, "nvrtcGetPTXSize");
    SYM(ptx, "nvrtcGetPTX");
    SYM(destroy, "nvrtcDestroyProgram");
    SYM(error_string, "nvrtcGetErrorString");
#undef SYM
    loaded = *a;
    return 0;
}

int cg_nvrtc_version(char *buf, size_t size, char *err, size_t errsize) {
    nvrtc_api a;
    if (nvrtc_load(&a, err, errsize)) return -1;
    int major = 0, minor = 0;
    if (a.version(&major, &minor)) {
        snprintf(err, errsize, "nvrtcVersion failed (%s)", loaded_name);
        return -1;
    }
    snprintf(buf, size, "%d.%d (%s)", major, minor, loaded_name);
    return 0;
}

/* ---- cache ------------------------------------------------------------------------------------ */

typedef struct {
    uint64_t h[2];
} key128;

static void hash_bytes(key128 *k, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        k->h[0] = (k->h[0] ^ p[i]) * 1099511628211ull;
        k->h[1] = (k->h[1] ^ p[i]) * 0x100000001b3ull + (k->h[1] >> 29);
    }
    /* separator, so ("ab","c") != ("a","bc") */
    k->h[0] = (k->h[0] ^ 0xff) * 1099511628211ull;
    k->h[1] = (k->h[1] ^ (uint64_t)n) * 0x9e3779b97f4a7c15ull;
}

int cg_mkdir_p(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *c = buf + 1; *c; c++) {
        if (*c != '/') continue;
        *c = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return -1;
        *c = '/';
    }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

/* the cache directory, or "" when caching is off */
static void cache_dir(char *out, size_t size) {
    const char *off = getenv("DEITC_NO_CACHE"), *dir = getenv("DEITC_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    out[0] = 0;
    if (off && *off && strcmp(off, "0") != 0) return;
    if (dir && *dir) snprintf(out, size, "%s", dir);
    else if (xdg && *xdg) snprintf(out, size, "%s/deitc", xdg);
    else if (home && *home) snprintf(out, size, "%s/.cache/deitc", home);
}

/* An entry: magic, sizes of cubin, PTX and ptxas log, a checksum of those three, then the three.
 * A short, longer, or corrupted entry (checksum mismatch) is a miss: NVRTC runs again and the
 * entry is rewritten, so a damaged cache never reaches an executable. */
static const char CACHE_MAGIC[8] = {'D', 'E', 'I', 'T', 'C', 'N', 'V', '2'};

static uint64_t payload_checksum(const cg_nvrtc_result *r, size_t log_size) {
    key128 k = {{0xcbf29ce484222325ull, 0x6a09e667f3bcc909ull}};
    hash_bytes(&k, r->cubin, r->cubin_size);
    hash_bytes(&k, r->ptx, r->ptx_size);
    hash_bytes(&k, r->log, log_size);
    return k.h[0] ^ (k.h[1] * 0x9e3779b97f4a7c15ull);
}

static int cache_read(const char *path, cg_nvrtc_result *r) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char magic[8];
    uint64_t sz[4];
    int ok = fread(magic, 1, 8, f) == 8 && memcmp(magic, CACHE_MAGIC, 8) == 0 && fread(sz, sizeof sz[0], 4, f) == 4 &&
             sz[0] < (1ull << 32) && sz[1] < (1ull << 32) && sz[2] < (1ull << 32);
    if (ok) {
        r->cubin = malloc(sz[0] + 1);
        r->ptx = malloc(sz[1] + 1);
        r->log = malloc(sz[2] + 1);
        if (!r->cubin || !r->ptx || !r->log) abort();
        ok = fread(r->cubin, 1, sz[0], f) == sz[0] && fread(r->ptx, 1, sz[1], f) == sz[1] &&
             fread(r->log, 1, sz[2], f) == sz[2] && fgetc(f) == EOF;
        r->cubin_size = sz[0];
        r->ptx_size = sz[1];
        r->ptx[sz[1]] = 0;
        r->log[sz[2]] = 0;
        ok = ok && payload_checksum(r, sz[2]) == sz[3];
    }
    fclose(f);
    if (!ok) {
        cg_nvrtc_result_free(r);
        return -1;
    }
    r->cached = 1;
    return 0;
}

static void cache_write(const char *dir, const char *path, const cg_nvrtc_result *r) {
    if (cg_mkdir_p(dir)) return; /* a cache we cannot write is no error */
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    int tracked = rt_tmp_track(tmp, 0);
    size_t ls = strlen(r->log);
    uint64_t sz[4] = {r->cubin_size, r->ptx_size, ls, payload_checksum(r, ls)};
    int ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(sz, sizeof sz[0], 4, f) == 4 &&
             fwrite(r->cubin, 1, r->cubin_size, f) == r->cubin_size &&
             fwrite(r->ptx, 1, r->ptx_size, f) == r->ptx_size && fwrite(r->log, 1, ls, f) == ls;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path)) unlink(tmp);
    rt_tmp_untrack(tracked);
}

/* ---- log parsing ------------------------------------------------------------------------------- */

static cg_kernel *kernel_named(cg_program *p, const char *s, size_t n) {
    for (int k = 0; k < p->nkernels; k++)
        if (strlen(p->kernels[k].name) == n && strncmp(p->kernels[k].name, s, n) == 0) return &p->kernels[k];
    return NULL;
}

void cg_parse_ptxas_log(cg_program *p, const char *log) {
    cg_kernel *cur = NULL;
    for (const char *line = log; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf ? len : sizeof buf - 1), line);
        const char *s;
        if ((s = strstr(buf, "Function properties for ")) != NULL) {
            s += strlen("Function properties for ");
            cur = kernel_named(p, s, strcspn(s, " \r'"));
        } else if ((s = strstr(buf, "Compiling entry function '")) != NULL) {
            s += strlen("Compiling entry function '");
            cur = kernel_named(p, s, strcspn(s, "'"));
        } else if (cur && (s = strstr(buf, "bytes spill stores")) != NULL) {
            const char *q = s;
            while (q > buf && q[-1] == ' ') q--;
            while (q > buf && q[-1] >= '0' && q[-1] <= '9') q--;
            long stores = strtol(q, NULL, 10), loads = 0;
            const char *l = strstr(s, "bytes spill stores, ");
            if (l) loads = strtol(l + strlen("bytes spill stores, "), NULL, 10);
            cur->spill_bytes = (int)(stores + loads);
        } else if (cur && (s = strstr(buf, "Used ")) != NULL && strstr(buf, "registers")) {
            cur->registers = (int)strtol(s + 5, NULL, 10);
        }
        line = eol ? eol + 1 : NULL;
    }
}

/* NVRTC's log with every "kernels.cu(LINE)" error annotated with the kernel it is in */
static void annotate_log(const cg_program *p, const char *log, char *err, size_t errsize) {
    size_t n = strlen(err);
    for (const char *line = log; line && *line && n + 1 < errsize;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        n += (size_t)snprintf(err + n, errsize - n, "%.*s", (int)len, line);
        if (n >= errsize) break;
        const char *s = strstr(line, "kernels.cu(");
        if (s && s < line + len) {
            int ln = atoi(s + strlen("kernels.cu("));
            for (int k = 0; k < p->nkernels; k++)
                if (ln >= p->kernels[k].line && ln < p->kernels[k].line + p->kernels[k].nlines)
                    n += (size_t)snprintf(err + n, errsize - n, "  [in kernel %s]", p->kernels[k].name);
        }
        if (n + 1 < errsize) err[n++] = '\n', err[n] = 0;
        line = eol ? eol + 1 : NULL;
    }
}

/* ---- compile ----------------------------------------------------------------------------------- */

static int valid_arch(const char *a) {
    if (strncmp(a, "sm_", 3) != 0 || !(a[3] >= '0' && a[3] <= '9')) return 0;
    const char *c = a + 3;
    while (*c >= '0' && *c <= '9') c++;
    if (*c == 'a' || *c == 'f') c++;
    return *c == 0 && c - a <= 8;
}

/* ORDER: the entry header first; the others as it includes them */
static const char *const device_headers[] = {"kernel_prelude.cuh", "dc_base.cuh", "dc_convert.cuh",
                                             "dc_memory.cuh", "dc_reduce.cuh", "dc_mma.cuh", "dc_data.cuh"};

int cg_headers_read(cg_headers *h, const char *rt_dir, char *err, size_t errsize) {
    memset(h, 0, sizeof *h);
    _Static_assert(sizeof device_headers / sizeof device_headers[0] <= CG_MAX_HEADERS, "CG_MAX_HEADERS");
    for (size_t i = 0; i < sizeof device_headers / sizeof device_headers[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", rt_dir, device_headers[i]);
        FILE *f = fopen(path, "rb");
        long n = -1;
        if (f && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
        char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
        if (!f || !s || fseek(f, 0, SEEK_SET) != 0 || fread(s, 1, (size_t)n, f) != (size_t)n) {
            snprintf(err, errsize, "cannot read the device library header %s: %s", path, strerror(errno));
            if (f) fclose(f);
            free(s);
            cg_headers_free(h);
            return -1;
        }
        fclose(f);
        s[n] = 0;
        h->names[h->n] = device_headers[i];
        h->texts[h->n++] = s;
    }
    return 0;
}

void cg_headers_free(cg_headers *h) {
    for (int i = 0; i < h->n; i++) free(h->texts[i]);
    h->n = 0;
}

int cg_nvrtc_compile(cg_program *p, const char *source, const cg_headers *headers, const char *arch,
                     cg_nvrtc_result *out, char *err, size_t errsize) {
    memset(out, 0, sizeof *out);
    if (!valid_arch(arch)) {
        snprintf(err, errsize, "--arch '%s': expected sm_XX (e.g. sm_80, sm_90)", arch);
        return -1;
    }
    nvrtc_api api;
    if (nvrtc_load(&api, err, errsize)) return -1;
    int major = 0, minor = 0;
    api.version(&major, &minor);
    char archopt[64], version[32];
    snprintf(archopt, sizeof archopt, "--gpu-architecture=%s", arch);
    snprintf(version, sizeof version, "nvrtc %d.%d", major, minor);
    const char *opts[] = {archopt, "--std=c++17", "--ptxas-options=-v", "--split-compile=2", "--minimal"};
    int nopts = (int)(sizeof opts / sizeof opts[0]);

    key128 key = {{1469598103934665603ull, 0x6a09e667f3bcc908ull}};
    hash_bytes(&key, source, strlen(source));
    for (int i = 0; i < headers->n; i++) { /* names too: a header renamed is another program */
        hash_bytes(&key, headers->names[i], strlen(headers->names[i]) + 1);
        hash_bytes(&key, headers->texts[i], strlen(headers->texts[i]) + 1);
    }
    for (int i = 0; i < nopts; i++) hash_bytes(&key, opts[i], strlen(opts[i]));
    hash_bytes(&key, version, strlen(version));
    char dir[4096], path[4200];
    cache_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%016llx%016llx.nvrtc", dir, (unsigned long long)key.h[0],
             (unsigned long long)key.h[1]);
    if (dir[0] && cache_read(path, out) == 0) {
        cg_parse_ptxas_log(p, out->log);
        return 0;
    }

    nvrtc_program prog = NULL;
    int rc = api.create(&prog, source, "kernels.cu", headers->n, (const char *const *)headers->texts, headers->names);
    if (rc) {
        snprintf(err, errsize, "nvrtcCreateProgram failed: %s", api.error_string(rc));
        return -1;
    }
    rc = api.compile(prog, nopts, opts);
    size_t ls = 0;
    api.log_size(prog, &ls);
    char *log = calloc(ls + 1, 1);
    if (!log) abort();
    if (ls) api.log(prog, log);
    if (rc) {
        if (strstr(log, "gpu-architecture"))
            snprintf(err, errsize, "unknown arch '%s': NVRTC %d.%d rejects it (%s)", arch, major, minor,
                     strtok(log, "\n") ? log : "");
        else {
            snprintf(err, errsize, "NVRTC failed to compile kernels.cu for %s (%s):\n", arch, api.error_string(rc));
            annotate_log(p, log, err, errsize);
        }
        free(log);
        api.destroy(&prog);
        return -1;
    }
    api.cubin_size(prog, &out->cubin_size);
    api.ptx_size(prog, &out->ptx_size);
    out->cubin = malloc(out->cubin_size + 1);
    out->ptx = malloc(out->ptx_size + 1);
    if (!out->cubin || !out->ptx) abort();
    api.cubin(prog, (char *)out->cubin);
    api.ptx(prog, out->ptx);
    out->ptx[out->ptx_size] = 0;
    if (out->ptx_size && out->ptx[out->ptx_size - 1] == 0) out->ptx_size--; /* size counts the NUL */
    out->log = log;
    api.destroy(&prog);
    cg_parse_ptxas_log(p, out->log);
    if (dir[0]) cache_write(dir, path, out);
    return 0;
}

void cg_nvrtc_result_free(cg_nvrtc_result *r) {
    free(r->cubin);
    free(r->ptx);
    free(r->log);
    memset(r, 0, sizeof *r);
}

/* ---- the local GPU's architecture ------------------------------------------------------------ */

const char *cg_default_arch(char *buf, size_t size) {
    snprintf(buf, size, "sm_90");
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return buf; /* no driver: no GPU to match */
    typedef int (*init_fn)(unsigned);
    typedef int (*count_fn)(int *);
    typedef int (*get_fn)(int *, int);
    typedef int (*attr_fn)(int *, int, int);
    init_fn cu_init = (init_fn)dlsym(lib, "cuInit");
    count_fn cu_count = (count_fn)dlsym(lib, "cuDeviceGetCount");
    get_fn cu_get = (get_fn)dlsym(lib, "cuDeviceGet");
    attr_fn cu_attr = (attr_fn)dlsym(lib, "cuDeviceGetAttribute");
    int n = 0, dev = 0, major = 0, minor = 0;
    enum { CC_MAJOR = 75, CC_MINOR = 76 }; /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_* */
    if (cu_init && cu_count && cu_get && cu_attr && cu_init(0) == 0 && cu_count(&n) == 0 && n > 0 &&
        cu_get(&dev, 0) == 0 && cu_attr(&major, CC_MAJOR, dev) == 0 && cu_attr(&minor, CC_MINOR, dev) == 0 &&
        major > 0)
        snprintf(buf, size, "sm_%d%d", major, minor);
    dlclose(lib);
    return buf;
}
