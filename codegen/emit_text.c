/* emit_text.c: the CUDA-text helpers every kernel family uses: a growing string,
 * float loads/stores through a dtype's conversion, float literals that
 * read back exactly, and index arithmetic (offset terms, broadcasting). */
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

const char *cg_ld(char *buf, size_t size, ir_dtype t, const char *ref) {
    switch (t) {
    case IR_F32: snprintf(buf, size, "%s", ref); break;
    case IR_F16: snprintf(buf, size, "dc_h2f(%s)", ref); break;
    case IR_BF16: snprintf(buf, size, "dc_b2f(%s)", ref); break;
    default: snprintf(buf, size, "(float)%s", ref); break;
    }
    return buf;
}

const char *cg_st(char *buf, size_t size, ir_dtype t, const char *v) {
    switch (t) {
    case IR_F32: snprintf(buf, size, "%s", v); break;
    case IR_F16: snprintf(buf, size, "dc_f2h(%s)", v); break;
    case IR_BF16: snprintf(buf, size, "dc_f2b(%s)", v); break;
    case IR_I32: snprintf(buf, size, "(int)(%s)", v); break;
    default: snprintf(buf, size, "(long long)(%s)", v); break;
    }
    return buf;
}

const char *cg_flit(char *buf, size_t size, double x) {
    float f = (float)x;
    if (isnan(f)) snprintf(buf, size, "__int_as_float(0x7fc00000)");
    else if (isinf(f)) snprintf(buf, size, f > 0 ? "DC_INF" : "(-DC_INF)");
    else {
        snprintf(buf, size, "%.9g", (double)f);
        if (!strpbrk(buf, ".en")) strncat(buf, ".0", size - strlen(buf) - 1);
        strncat(buf, "f", size - strlen(buf) - 1);
    }
    return buf;
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
