/* precision.c: the precision stage (--precision).
 *
 * fp32 is what this deitc builds: the stage keeps the graph as it is. tf32, fp16 and bf16
 * (casts, loss scaling) are a pass still to come; until then they are refused here rather
 * than built as fp32 under another name.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <string.h>

int pass_precision(ir_graph *g, const char *precision, char *err, size_t errsize) {
    (void)g;
    if (!precision || strcmp(precision, "fp32") == 0) return 0;
    if (strcmp(precision, "tf32") == 0 || strcmp(precision, "fp16") == 0 || strcmp(precision, "bf16") == 0)
        snprintf(err, errsize, "--precision %s: not supported yet (this deitc builds fp32 executables only)",
                 precision);
    else
        snprintf(err, errsize, "--precision %s: unknown (fp32; tf32, fp16 and bf16 to come)", precision);
    return -1;
}
