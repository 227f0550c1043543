/* yaml_depth.c: a pre-scan of YAML text that refuses deep nesting before libyaml sees it.
 *
 * libyaml's scanner does work proportional to the flow nesting depth for every token (its
 * stack of possible simple keys), so 200 KB of `[[[[...]]]]` took minutes. This scan tracks
 * the nesting of flow collections ([ {) and of block collections (the columns of `- ` entries
 * and of `key:` entries, as an indentation stack) in one linear pass, and refuses the text
 * at the line and column where the depth passes FE_YAML_MAX_DEPTH. It knows just enough YAML
 * to not count brackets that are text: quoted scalars, comments, block scalars (| >) and plain
 * scalars (where a quote is text). Malformed text is left to libyaml to report.
 */
#include "frontend/frontend.h"

#include <stdio.h>
#include <string.h>

enum { AT_NODE, IN_PLAIN, AFTER_NODE }; /* where the scan is: before a node, inside a plain
                                           scalar, after a complete node (quoted, alias, ]) */

typedef struct {
    const char *s;
    size_t n, i;
    int line;          /* 1-based line of s[i] */
    size_t line_start; /* offset of that line's first byte */
    int stack[FE_YAML_MAX_DEPTH + 1]; /* columns of the open block collections, increasing */
    char kind[FE_YAML_MAX_DEPTH + 1];  /* 's' sequence, 'm' mapping, for each */
    int nstack;
    int flow;          /* open flow collections */
    const char *path;
    char *err;
    size_t errsize;
} yscan;

static int blank_or_end(const yscan *y, size_t i) {
    return i >= y->n || y->s[i] == ' ' || y->s[i] == '\t' || y->s[i] == '\n' || y->s[i] == '\r';
}

static int flow_indicator(const yscan *y, size_t i) {
    return i < y->n && strchr(",[]{}", y->s[i]) != NULL;
}

static int too_deep(yscan *y, size_t at) {
    snprintf(y->err, y->errsize,
             "%s:%d:%d: YAML nested more than %d deep (collections inside collections); a model "
             "description needs far fewer levels", y->path, y->line, (int)(at - y->line_start) + 1,
             FE_YAML_MAX_DEPTH);
    return -1;
}

/* A block collection entry at column col, of a sequence (`- `, kind 's') or a mapping (`? `
 * or a key, 'm'): the collections indented deeper are closed, and one at col is opened unless
 * it is open already. A sequence may sit at its mapping's column (`key:` then `- x` below
 * it): that is one level more, closed by the mapping's next key. */
static int block_entry(yscan *y, int col, char kind, size_t at) {
    int n = y->nstack;
    while (n && (y->stack[n - 1] > col ||
                 (kind == 'm' && y->kind[n - 1] == 's' && y->stack[n - 1] == col && n >= 2 && y->stack[n - 2] == col)))
        n--;
    y->nstack = n;
    if (n && y->stack[n - 1] == col && (y->kind[n - 1] == kind || kind == 'm')) return 0;
    if (y->nstack + y->flow >= FE_YAML_MAX_DEPTH) return too_deep(y, at);
    y->stack[y->nstack] = col;
    y->kind[y->nstack++] = kind;
    return 0;
}

static void newline(yscan *y) {
    if (y->s[y->i] == '\r' && y->i + 1 < y->n && y->s[y->i + 1] == '\n') y->i++;
    y->i++;
    y->line++;
    y->line_start = y->i;
}

static void skip_to_eol(yscan *y) {
    while (y->i < y->n && y->s[y->i] != '\n' && y->s[y->i] != '\r') y->i++;
}

/* Skips a quoted scalar starting at s[i] (lines counted); -1 when it does not end. */
static int skip_quoted(yscan *y) {
    char q = y->s[y->i++];
    while (y->i < y->n) {
        char ch = y->s[y->i];
        if (ch == '\n' || ch == '\r') {
            newline(y);
        } else if (q == '"' && ch == '\\') {
            y->i += 2;
            if (y->i > y->n) y->i = y->n;
        } else if (ch == q && q == '\'' && y->i + 1 < y->n && y->s[y->i + 1] == '\'') {
            y->i += 2;
        } else {
            y->i++;
            if (ch == q) return 0;
        }
    }
    return -1;
}

/* Indentation (spaces) of the line starting at offset i, and whether it holds only spaces. */
static int line_indent(const yscan *y, size_t i, int *empty) {
    int k = 0;
    while (i + (size_t)k < y->n && y->s[i + (size_t)k] == ' ') k++;
    size_t e = i + (size_t)k;
    *empty = e >= y->n || y->s[e] == '\n' || y->s[e] == '\r';
    return k;
}

/* Skips a block scalar (| or > at s[i]) through its last content line: the header line, then
 * the lines indented at least as deep as the content (the first non-empty line's indentation,
 * or the header's explicit indentation digit), which must exceed the enclosing collection's. */
static void skip_block_scalar(yscan *y) {
    int parent = y->nstack ? y->stack[y->nstack - 1] : -1, content = 0;
    for (size_t k = y->i + 1; k < y->n && (y->s[k] == '+' || y->s[k] == '-' || (y->s[k] >= '1' && y->s[k] <= '9'));
         k++)
        if (y->s[k] >= '1' && y->s[k] <= '9') content = (parent >= 0 ? parent : 0) + (y->s[k] - '0');
    skip_to_eol(y);
    while (y->i < y->n) {
        newline(y);
        int empty, ind = line_indent(y, y->i, &empty);
        if (!empty && !content) content = ind > parent ? ind : parent + 1;
        if (!empty && ind < content) {
            y->i = y->line_start; /* this line is not the scalar's: the caller scans it */
            return;
        }
        skip_to_eol(y);
    }
}

/* Skips an anchor, tag or alias name (to a blank, or a flow indicator inside a flow). */
static void skip_name(yscan *y) {
    y->i++;
    while (!blank_or_end(y, y->i) && !(y->flow && flow_indicator(y, y->i))) y->i++;
}

int fe_yaml_check_depth(const char *text, size_t len, const char *path, char *err, size_t errsize) {
    yscan y;
    memset(&y, 0, sizeof y);
    y.s = text, y.n = len, y.line = 1, y.path = path, y.err = err, y.errsize = errsize;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) y.i = y.line_start = 3; /* UTF-8 BOM */
    int state = AT_NODE, key_col = -1, line_begins = 1, blank_before = 1;
    while (y.i < y.n) {
        if (line_begins) {
            line_begins = 0;
            blank_before = 1;
            int empty, ind = line_indent(&y, y.i, &empty);
            y.i += (size_t)ind;
            if (empty || y.s[y.i] == '#' || y.flow) continue; /* a flow goes on across lines */
            key_col = -1; /* a key (a simple key) is on one line */
            if (ind == 0 && y.n - y.i >= 3 && (!memcmp(y.s + y.i, "---", 3) || !memcmp(y.s + y.i, "...", 3)) &&
                blank_or_end(&y, y.i + 3)) { /* a document marker: everything is closed */
                y.nstack = 0;
                y.i += 3;
                state = AT_NODE;
                continue;
            }
            if (ind == 0 && y.s[y.i] == '%') { /* a directive */
                skip_to_eol(&y);
                continue;
            }
            /* a multi-line plain scalar goes on in lines indented deeper than its collection */
            if (!(state == IN_PLAIN && ind > (y.nstack ? y.stack[y.nstack - 1] : -1))) state = AT_NODE;
        }
        char ch = y.s[y.i];
        if (ch == '\n' || ch == '\r') {
            newline(&y);
            line_begins = 1;
            continue;
        }
        if (ch == ' ' || ch == '\t') {
            blank_before = 1;
            y.i++;
            continue;
        }
        if (ch == '#' && blank_before) { /* a comment */
            skip_to_eol(&y);
            continue;
        }
        blank_before = 0;
        int col = (int)(y.i - y.line_start);
        if (!y.flow) {
            if ((ch == '-' || ch == '?' || ch == ':') && blank_or_end(&y, y.i + 1)) {
                int c = ch == ':' ? key_col : col;
                if (c >= 0 && block_entry(&y, c, ch == '-' ? 's' : 'm', y.line_start + (size_t)c)) return -1;
                key_col = -1;
                state = AT_NODE;
                y.i++;
                continue;
            }
            if (state != AT_NODE) { /* text of a plain scalar (or junk after a node: libyaml says) */
                state = IN_PLAIN;
                y.i++;
                continue;
            }
            if (key_col < 0) key_col = col;
            if (ch == '|' || ch == '>') {
                skip_block_scalar(&y);
                state = AT_NODE;
                line_begins = 1;
                continue;
            }
        } else {
            if (ch == ']' || ch == '}') {
                y.flow--;
                state = AFTER_NODE;
                y.i++;
                continue;
            }
            if (ch == ',') {
                state = AT_NODE;
                y.i++;
                continue;
            }
            if ((ch == '?' || ch == ':') && (blank_or_end(&y, y.i + 1) || flow_indicator(&y, y.i + 1) ||
                                             (ch == ':' && state == AFTER_NODE))) {
                state = AT_NODE;
                y.i++;
                continue;
            }
            if (ch != '[' && ch != '{' && state != AT_NODE) { /* inside a plain scalar */
                state = IN_PLAIN;
                y.i++;
                continue;
            }
        }
        /* a node starts here (or, inside a flow, any [ or { opens one) */
        switch (ch) {
        case '[':
        case '{':
            if (y.nstack + y.flow >= FE_YAML_MAX_DEPTH) return too_deep(&y, y.i);
            y.flow++;
            state = AT_NODE;
            y.i++;
            break;
        case '\'':
        case '"':
            if (skip_quoted(&y)) return 0; /* unterminated: libyaml reports it */
            state = AFTER_NODE;
            break;
        case '&':
        case '!':
            skip_name(&y); /* a node follows */
            break;
        case '*':
            skip_name(&y);
            state = AFTER_NODE;
            break;
        default:
            state = IN_PLAIN;
            y.i++;
        }
    }
    return 0;
}
