/* emit_text.c: the CUDA-text helpers every kernel family uses: a growing string, float
 * loads/stores through a dtype's conversion and float literals that read back exactly (into
 * caller buffers, never truncated: a result that does not fit aborts as an internal error), and
 * index arithmetic (offset terms, broadcasting). */
#include "codegen/emit_internal.h"

#include <math.h>

/* ---- string builder ------------------------------------------------------------------------ */

void cg_sb_vprintf(sb *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int k = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (b->n + (size_t)k + 1 > b->cap) {
        b->cap = (b->n + (size_t)k + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s) abort();
    }
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    b->n += (size_t)k;
}

void cg_sb_printf(sb *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cg_sb_vprintf(b, fmt, ap);
    va_end(ap);
}

/* ---- small helpers --------------------------------------------------------------------------- */

/* The fixed-buffer helpers below never truncate silently: a result that does not fit is an
 * internal error (every caller sizes its buffer for the expressions it builds). */
static const char *fits(const char *buf, int k, size_t size, const char *what) {
    if (k < 0 || (size_t)k >= size) {
        fprintf(stderr, "codegen: internal error: %s of %d bytes does not fit its %zu-byte buffer\n", what, k, size);
        abort();
    }
    return buf;
}

const char *cg_ld(char *buf, size_t size, ir_dtype t, const char *ref) {
    int k;
    switch (t) {
    case IR_F32: k = snprintf(buf, size, "%s", ref); break;
    case IR_F16: k = snprintf(buf, size, "dc_h2f(%s)", ref); break;
    case IR_BF16: k = snprintf(buf, size, "dc_b2f(%s)", ref); break;
    default: k = snprintf(buf, size, "(float)%s", ref); break;
    }
    return fits(buf, k, size, "a load expression");
}

const char *cg_st(char *buf, size_t size, ir_dtype t, const char *v) {
    int k;
    switch (t) {
    case IR_F32: k = snprintf(buf, size, "%s", v); break;
    case IR_F16: k = snprintf(buf, size, "dc_f2h(%s)", v); break;
    case IR_BF16: k = snprintf(buf, size, "dc_f2b(%s)", v); break;
    case IR_I32: k = snprintf(buf, size, "(int)(%s)", v); break;
    default: k = snprintf(buf, size, "(long long)(%s)", v); break;
    }
    return fits(buf, k, size, "a store expression");
}

const char *cg_flit(char *buf, size_t size, double x) {
    float f = (float)x;
    char s[64];
    if (isnan(f)) snprintf(s, sizeof s, "__int_as_float(0x7fc00000)");
    else if (isinf(f)) snprintf(s, sizeof s, f > 0 ? "DC_INF" : "(-DC_INF)");
    else {
        snprintf(s, sizeof s, "%.9g", (double)f);
        if (!strpbrk(s, ".en")) strcat(s, ".0");
        strcat(s, "f");
    }
    return fits(buf, snprintf(buf, size, "%s", s), size, "a float literal");
}

/* ---- index terms (emit_internal.h) ---------------------------------------------------------- */

void cg_emit_terms(sb *b, const char *iv, const term *t, int nt) {
    int any = 0;
    for (int k = 0; k < nt; k++) {
        if (t[k].mul == 0) continue;
        cg_sb_printf(b, "%s", any ? " + " : "");
        int paren = t[k].mul != 1 && (t[k].div != 1 || t[k].mod);
        if (paren) cg_sb_printf(b, "(");
        cg_sb_printf(b, "%s", iv);
        if (t[k].div != 1) cg_sb_printf(b, " / %lld", (long long)t[k].div);
        if (t[k].mod) cg_sb_printf(b, " %% %lld", (long long)t[k].mod);
        if (paren) cg_sb_printf(b, ")");
        if (t[k].mul != 1) cg_sb_printf(b, " * %lld", (long long)t[k].mul);
        any = 1;
    }
    if (!any) cg_sb_printf(b, "0");
}

int cg_bcast_terms(const ir_node *in, int nd, const int64_t *out, term *t) {
    int64_t ind[IR_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        int k = d - (nd - in->ndim);
        ind[d] = k >= 0 ? in->shape[k] : 1;
    }
    int nt = 0;
    int64_t ostride = 1, istride = 1, total = 1;
    for (int d = 0; d < nd; d++) total *= out[d];
    /* walk dims from the innermost, grouping runs of kept (ind == out) dims */
    for (int d = nd - 1; d >= 0;) {
        if (out[d] == 1) { d--; continue; }
        if (ind[d] == 1) { ostride *= out[d]; d--; continue; }
        int64_t size = 1;
        while (d >= 0 && (out[d] == 1 || ind[d] == out[d])) size *= out[d--];
        t[nt].div = ostride;
        t[nt].mod = ostride * size >= total ? 0 : size;
        t[nt].mul = istride;
        nt++;
        ostride *= size;
        istride *= size;
    }
    return nt;
}
