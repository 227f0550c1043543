/* pipeline.c: the readable list of what runs in what order. Each pass is a plain function
 * over a graph; the verifier runs after every one, so a pass that breaks an invariant is
 * caught where it happened.
 *
 *   check     the frontend's graph satisfies every shape rule
 *   training  loss + autodiff + AdamW: one graph for the whole step (training.c)
 *
 * Mixed precision and fusion passes will slot in after training. The last two passes,
 * schedule (schedule.c) and memory plan (memplan.c), turn the graph into an order and arena
 * offsets rather than a new graph; codegen calls them on the pipeline's result. */
#include "passes/passes.h"

#include <stdio.h>
#include <string.h>

const char *const pass_names[] = {"check", "training", NULL};

ir_graph *pass_pipeline_run(ir_graph *g, const pass_options *o, const char *stop_after,
                            char *err, size_t errsize) {
    if (stop_after) {
        int known = 0;
        for (int i = 0; pass_names[i]; i++) known |= strcmp(pass_names[i], stop_after) == 0;
        if (!known) {
            char list[256] = "";
            for (int i = 0; pass_names[i]; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", pass_names[i]);
            snprintf(err, errsize, "unknown pass '%s' (passes: %s)", stop_after, list);
            ir_graph_free(g);
            return NULL;
        }
    }
    /* check: the frontend's graph must satisfy every shape rule */
    if (ir_verify(g)) {
        snprintf(err, errsize, "%s", g->error);
        ir_graph_free(g);
        return NULL;
    }
    if (stop_after && strcmp(stop_after, "check") == 0) return g;

    if (o->training) {
        ir_graph *t = pass_training(g, &o->train, err, errsize);
        ir_graph_free(g);
        if (!t) return NULL;
        g = t;
        if (ir_verify(g)) {
            snprintf(err, errsize, "internal error after training pass: %s", g->error);
            ir_graph_free(g);
            return NULL;
        }
    }
    return g;
}
