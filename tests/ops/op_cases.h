/* op_cases.h: the cases of the per-op kernel test (op_cases.c builds them, op_kernel_test.c
 * checks, emits, runs and packages them). All cases live in one graph so that they compile
 * into one program; each case's nodes are named "cNNN.*". */
#ifndef DEITC_TESTS_OP_CASES_H
#define DEITC_TESTS_OP_CASES_H

#include "ir/ir.h"

enum { OP_MAX_CASES = 1024, OP_MAX_IO = 16 };

typedef struct {
    ir_op op;             /* the op under test */
    char variant[64];     /* what the case means to hit: "warp_c40_pad", "two_pass", ... */
    ir_dtype dtype;       /* the dtype under test */
    const char *expect;   /* a substring of its kernels' names or text, or "gemm_steps=N"; NULL */
    const char *reject;   /* a substring none of them may contain; NULL */
    double tol;           /* relative L2 bound against the interpreter */
    int nin, in[OP_MAX_IO];   /* leaves it binds */
    int nout, out[OP_MAX_IO]; /* nodes it compares (outputs, or leaves updated in place) */
} op_case;

typedef struct {
    ir_graph *g;
    op_case cases[OP_MAX_CASES];
    int ncases;
    double **leaf;        /* [node] the values bound to a leaf (NULL for others) */
    int cap;
} op_suite;

op_suite *op_suite_new(void);
void op_suite_free(op_suite *s);
/* NULL, or why the coverage check does not demand a case of op at dtype t */
const char *op_dtype_exempt(ir_op op, ir_dtype t);
/* one rounding step of dtype t (f32: 1e-6) */
double op_tol(ir_dtype t);

#endif
