/* fuzz_onnx.c: libFuzzer target for the ONNX reader (frontend/onnx*.c): protobuf parsing,
 * tensor decoding, constant folding, lowering and pattern recovery.
 * Input: the bytes of a .onnx file. Properties checked beyond "no crash, no leak": a failed
 * load leaves no graph and a message that starts with the model's name; a successful one gives
 * a graph the IR verifier accepts, with one INPUT "images" and an output "logits".
 * External data paths resolve under a folder that does not exist, so no file is ever read.
 * Built with -fsanitize=fuzzer under clang (DEITC_FUZZ=ON); replay_main.c drives the same
 * function from files for gcc builds. */
#include "frontend/frontend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define FUZZ_PATH "/nonexistent-deitc-fuzz/fuzz.onnx"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    ir_graph *g = NULL;
    char err[1024];
    int batch = size ? 1 + data[size - 1] % 3 : 1;
    int rc = fe_onnx_load_buffer(data, size, FUZZ_PATH, NULL, 0, batch, &g, err, sizeof err);
    if (rc) {
        if (g || strncmp(err, FUZZ_PATH, strlen(FUZZ_PATH)) != 0) {
            fprintf(stderr, "bad failure: graph %p, message '%s'\n", (void *)g, err);
            abort();
        }
        return 0;
    }
    if (!g || ir_verify(g) || ir_find(g, "images") < 0 || ir_find(g, "logits") < 0) {
        fprintf(stderr, "bad graph: %s\n", g ? g->error : "none");
        abort();
    }
    FILE *f = fopen("/dev/null", "w");
    if (f) {
        ir_print(g, f);
        fclose(f);
    }
    ir_graph_free(g);
    return 0;
}
