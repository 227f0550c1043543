/* main.c: the training executable's entry point. Alone in its file so that tests can link the
 * rest of deitc_exe with their own main(); the plan (`deitc_plan`) comes from the generated
 * plan.c linked beside this library. */
#include "runtime/rt.h"

int main(int argc, char **argv) { return rt_main(&deitc_plan, argc, argv); }
