/* fuzz_yaml.c: libFuzzer target for the YAML frontend (and the layer builders behind it).
 * Input: optional header lines "#D name=value" (at most 4, -D overrides), then YAML text.
 * Properties checked beyond "no crash, no leak": a failed load names where (the message
 * starts with the file name or "-D "), and a successful load gives a graph the IR verifier
 * accepts, with one output "logits" and printable text form.
 * Built with -fsanitize=fuzzer under clang (DEITC_FUZZ=ON); replay_main.c drives the same
 * function from files for gcc builds. */
#include "frontend/frontend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    const char *text = (const char *)data;
    char dbuf[4][2][64];
    fe_define d[4];
    int nd = 0;
    /* header lines are YAML comments, so positions in messages stay the input's own */
    for (size_t off = 0; nd < 4 && size - off > 3 && memcmp(text + off, "#D ", 3) == 0;) {
        const char *line = text + off;
        const char *nl = memchr(line, '\n', size - off);
        size_t n = nl ? (size_t)(nl - line) : size - off;
        const char *eq = memchr(line + 3, '=', n - 3);
        if (!eq || memchr(line, 0, n)) break;
        size_t kn = (size_t)(eq - line - 3), vn = n - 3 - kn - 1;
        if (kn >= 64 || vn >= 64) break;
        memcpy(dbuf[nd][0], line + 3, kn);
        dbuf[nd][0][kn] = 0;
        memcpy(dbuf[nd][1], eq + 1, vn);
        dbuf[nd][1][vn] = 0;
        d[nd].name = dbuf[nd][0];
        d[nd].value = dbuf[nd][1];
        nd++;
        off += n + (nl ? 1 : 0);
    }
    char err[512];
    ir_graph *g = NULL;
    int64_t batch = size % 3; /* 0 (the default, 1), 1 or 2 */
    int r = fe_yaml_load_string(text, size, "fuzz.yaml", d, nd, batch, &g, err, sizeof err);
    if (r) {
        if (g || (strncmp(err, "fuzz.yaml", 9) != 0 && strncmp(err, "-D ", 3) != 0)) {
            fprintf(stderr, "error without a location: '%s'\n", err);
            abort();
        }
        return 0;
    }
    if (g->n < 5000 && ir_verify(g)) {
        fprintf(stderr, "loaded graph fails verification: %s\n", g->error);
        abort();
    }
    int lg = ir_find(g, "logits");
    if (lg < 0 || !(g->nodes[lg].flags & IR_NODE_OUTPUT) || g->nodes[lg].ndim != 2) {
        fprintf(stderr, "no logits [B,K] output\n");
        abort();
    }
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    if (devnull) ir_print(g, devnull);
    ir_graph_free(g);
    return 0;
}
