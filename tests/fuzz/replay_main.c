/* replay_main.c: a main() for fuzz targets when libFuzzer is not there (gcc builds): runs
 * LLVMFuzzerTestOneInput on every file named (folders: every file inside, sorted), and with
 * --mutations N also on N deterministic mutations of each (truncation, byte changes, YAML
 * tokens inserted, spans deleted or doubled), so plain ASan builds still fuzz a little.
 *   fuzz_yaml_replay [--mutations N] FILE_OR_DIR... */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) { /* xorshift64 */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char *const tokens[] = {
    ":", "-", " ", "\n", "[", "]", "{", "}", ",", "&a ", "*a", "'", "\"", "#", "0", "-1", "1e9",
    "99999999999", "embed_dim", "depth", " * ", " / ", "(", ")", "op: residual", "repeat: 3",
    "layers: ", "name: x", "op: attention", "heads: 7", "\t", "\xff", "!!map ", "? ", "%YAML 1.1\n",
    "---\n", "...\n", "    ", "op: linear, out: 10", "op: select_token", "names: [a, b]"};

static void run(const unsigned char *p, size_t n) {
    unsigned char *copy = malloc(n ? n : 1); /* exact size, so ASan sees overreads */
    memcpy(copy, p, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
}

static void mutate_and_run(const unsigned char *src, size_t n, int count) {
    unsigned char *buf = malloc(2 * n + 256);
    for (int i = 0; i < count; i++) {
        size_t m = n;
        memcpy(buf, src, n);
        int edits = 1 + (int)(next() % 3);
        for (int e = 0; e < edits && m > 0; e++) {
            size_t at = next() % m;
            switch (next() % 5) {
            case 0: m = at; break; /* truncate */
            case 1: buf[at] = (unsigned char)(next() & 0xff); break;
            case 2: { /* delete a span */
                size_t len = 1 + next() % 16;
                if (len > m - at) len = m - at;
                memmove(buf + at, buf + at + len, m - at - len);
                m -= len;
                break;
            }
            case 3: { /* insert a token */
                const char *t = tokens[next() % (sizeof tokens / sizeof *tokens)];
                size_t len = strlen(t);
                if (m + len > 2 * n + 256) break;
                memmove(buf + at + len, buf + at, m - at);
                memcpy(buf + at, t, len);
                m += len;
                break;
            }
            default: { /* double a span */
                size_t len = 1 + next() % 64;
                if (len > m - at) len = m - at;
                if (m + len > 2 * n + 256) break;
                memmove(buf + at + len, buf + at, m - at);
                m += len;
                break;
            }
            }
        }
        run(buf, m);
    }
    free(buf);
}

static int run_file(const char *path, int mutations) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    unsigned char *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    run(buf, n);
    if (mutations) mutate_and_run(buf, n, mutations);
    free(buf);
    return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    int mutations = 0, files = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mutations") == 0 && i + 1 < argc) {
            mutations = atoi(argv[++i]);
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            bad |= run_file(argv[i], mutations);
            files++;
            continue;
        }
        char **names = NULL;
        int k = 0;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            names = realloc(names, sizeof *names * (size_t)(k + 1));
            names[k] = malloc(strlen(argv[i]) + strlen(e->d_name) + 2);
            sprintf(names[k++], "%s/%s", argv[i], e->d_name);
        }
        closedir(d);
        if (k) qsort(names, (size_t)k, sizeof *names, cmp);
        for (int j = 0; j < k; j++) {
            bad |= run_file(names[j], mutations);
            files++;
            free(names[j]);
        }
        free(names);
    }
    printf("replayed %d inputs (%d mutations each)\n", files, mutations);
    return bad || files == 0;
}
