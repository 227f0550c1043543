/* json.c: the one JSON writer the runtime and the compiler use for what they write (safetensors
 * headers and metadata, bench and eval lines), and the small reader of the flat string-to-string
 * objects a safetensors "__metadata__" holds.
 *
 * Invariants: a growing buffer, never a fixed one (a long model name never cuts a file); every
 * string is escaped (quote, backslash, control characters as \u00XX; bytes that are not UTF-8
 * become U+FFFD), so the text is valid JSON whatever the input; numbers that are not finite are
 * written as null. Out of memory aborts (a few bytes of text, not an input-sized allocation).
 */
#include "runtime/rt.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sb_reserve(rt_strbuf *b, size_t more) {
    if (b->len + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) abort();
    b->s = s;
    b->cap = cap;
}

void rt_sb_putn(rt_strbuf *b, const char *s, size_t n) {
    sb_reserve(b, n);
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void rt_sb_puts(rt_strbuf *b, const char *s) { rt_sb_putn(b, s, strlen(s)); }

void rt_sb_printf(rt_strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) abort();
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* The length of the well-formed UTF-8 sequence at s (1-4), or 0 if there is none. */
static int utf8_len(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (!n) return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    uint32_t cp = n == 2 ? (s[0] & 0x1fu) : n == 3 ? (s[0] & 0x0fu) : (s[0] & 0x07u);
    for (int i = 1; i < n; i++) cp = cp << 6 | (s[i] & 0x3fu);
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

void rt_sb_json_string(rt_strbuf *b, const char *str) {
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    rt_sb_putn(b, "\"", 1);
    while (*s) {
        int n = utf8_len(s);
        if (*s == '"' || *s == '\\') {
            char e[2] = {'\\', (char)*s};
            rt_sb_putn(b, e, 2);
        } else if (*s == '\n') {
            rt_sb_puts(b, "\\n");
        } else if (*s == '\t') {
            rt_sb_puts(b, "\\t");
        } else if (*s < 0x20 || *s == 0x7f) {
            rt_sb_printf(b, "\\u%04x", *s);
        } else if (n == 0) {
            rt_sb_puts(b, "\\ufffd");
            n = 1;
        } else {
            rt_sb_putn(b, (const char *)s, (size_t)n);
        }
        s += n ? n : 1;
    }
    rt_sb_putn(b, "\"", 1);
}

void rt_sb_json_number(rt_strbuf *b, double v) {
    if (isfinite(v)) rt_sb_printf(b, "%.17g", v);
    else rt_sb_puts(b, "null");
}

void rt_sb_free(rt_strbuf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

/* ---- reading a flat object of strings ------------------------------------------------------ */

static const char *skip_ws(const char *s) {
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    return s;
}

/* Reads the JSON string at s (at its opening quote) into out (NULL: skip it); returns the
 * position after the closing quote, or NULL when it is malformed. \uXXXX escapes of the BMP
 * become UTF-8 (surrogates become U+FFFD). */
static const char *read_string(const char *s, rt_strbuf *out) {
    if (*s != '"') return NULL;
    for (s++; *s != '"'; s++) {
        if (!*s || (unsigned char)*s < 0x20) return NULL;
        char c = *s;
        if (c == '\\') {
            c = *++s;
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *k = c ? strchr(from, c) : NULL;
            if (k) c = to[k - from];
            else if (c == 'u') {
                unsigned cp = 0;
                for (int i = 1; i <= 4; i++) {
                    char h = s[i];
                    int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                    if (d < 0) return NULL;
                    cp = cp << 4 | (unsigned)d;
                }
                s += 4;
                if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
                char u[3];
                int n = 0;
                if (cp < 0x80) u[n++] = (char)cp;
                else if (cp < 0x800) u[n++] = (char)(0xc0 | cp >> 6), u[n++] = (char)(0x80 | (cp & 0x3f));
                else
                    u[n++] = (char)(0xe0 | cp >> 12), u[n++] = (char)(0x80 | ((cp >> 6) & 0x3f)),
                    u[n++] = (char)(0x80 | (cp & 0x3f));
                if (out) rt_sb_putn(out, u, (size_t)n);
                continue;
            } else
                return NULL;
        }
        if (out) rt_sb_putn(out, &c, 1);
    }
    return s + 1;
}

int rt_json_get_string(const char *object, const char *key, rt_strbuf *value) {
    if (!object) return 0;
    const char *s = skip_ws(object);
    if (*s++ != '{') return -1;
    s = skip_ws(s);
    if (*s == '}') return 0;
    rt_strbuf k = {0};
    int found = 0;
    for (;;) {
        k.len = 0;
        s = read_string(s, &k);
        if (!s) break;
        s = skip_ws(s);
        if (*s++ != ':') break;
        s = skip_ws(s);
        int match = !found && k.s && strcmp(k.s, key) == 0;
        if (*s == '"') {
            if (match) { /* a reused buffer: an empty value must read as "" */
                value->len = 0;
                if (value->s) value->s[0] = 0;
            }
            s = read_string(s, match ? value : NULL);
            if (!s) break;
            if (match) {
                if (!value->s) rt_sb_putn(value, "", 0);
                found = 1;
            }
        } else { /* numbers, true, false, null: metadata ought to hold strings only */
            while (*s && *s != ',' && *s != '}' && *s != '{' && *s != '[' && *s != '"') s++;
        }
        s = skip_ws(s);
        if (*s == ',') {
            s = skip_ws(s + 1);
            continue;
        }
        if (*s == '}') {
            rt_sb_free(&k);
            return found;
        }
        break;
    }
    rt_sb_free(&k);
    return -1;
}
