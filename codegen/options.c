/* options.c: the defaults of `deitc compile`. */
#include "codegen/codegen.h"

#include <string.h>

void cg_options_default(cg_options *o) {
    memset(o, 0, sizeof *o);
    o->target = "cuda";
    o->batch = 8;
}
