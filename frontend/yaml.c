/* yaml.c: the YAML model format, read with libyaml's document API, into an IR forward graph.
 *
 *   name: deit_tiny_patch16_224          # optional; defaults to the file's name
 *   description: free text               # optional
 *   params:                              # hyperparameters, named as timm names them
 *     img_size: 224                      # values: numbers, true/false, erf/tanh, or arithmetic
 *     embed_dim: 192                     #   over other params: + - * / // % ( )
 *     ...
 *   layers:                              # applied in order to the current value, which
 *     - {op: patch_embed, name: patch_embed}   #   starts as INPUT images [B,in_chans,img,img]
 *     - repeat: depth                    # a counted block: names get NAME.{i}.
 *       name: blocks
 *       layers: [...]
 *     - {op: residual, layers: [...]}    # x + layers(x)
 *
 * The ops, their keys and defaults are the table `ops` below; every value may be an expression
 * over the params (hidden: embed_dim * mlp_ratio). -D name=value replaces a param's value
 * before anything is evaluated. Every error names file:line:column and what was expected.
 * Params are evaluated lazily (a param may use others, in any order; cycles are an error).
 */
#include "frontend/frontend.h"
#include "runtime/rt.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define FE_MAX_FILE (1 << 20)   /* bytes of YAML (a DeiT is 2 KB; libyaml's document of a
                                   1 MiB file of tiny nodes takes about 80 MB) */
#define FE_MAX_NODES 100000     /* IR nodes: a DeiT-B is about 500 */
#define FE_MAX_NEST 32          /* nested layer lists (residual, repeat) */
#define FE_MAX_SIZE (1 << 24)   /* any one size-like value */
#define FE_MAX_REPEAT 10000

/* ---- hyperparameters -------------------------------------------------------------------- */

typedef enum { P_INT, P_FLOAT, P_BOOL, P_GELU } param_kind;

/* ORDER: the P_* indices below */
static const struct {
    const char *name;
    param_kind kind;
    const char *dflt; /* NULL: required */
} param_defs[] = {
    {"img_size", P_INT, NULL},      {"patch_size", P_INT, NULL},  {"in_chans", P_INT, "3"},
    {"num_classes", P_INT, "1000"}, {"embed_dim", P_INT, NULL},   {"depth", P_INT, NULL},
    {"num_heads", P_INT, NULL},     {"mlp_ratio", P_FLOAT, "4"},  {"qkv_bias", P_BOOL, "true"},
    {"layer_norm_eps", P_FLOAT, "1e-6"}, {"gelu", P_GELU, "erf"},
};
enum { IMG_SIZE, PATCH_SIZE, IN_CHANS, NUM_CLASSES, EMBED_DIM, DEPTH, NUM_HEADS, MLP_RATIO,
       QKV_BIAS, LAYER_NORM_EPS, GELU, NPARAMS };
#define PARAM_NAMES                                                                             \
    "img_size, patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio, "    \
    "qkv_bias, layer_norm_eps, gelu"

typedef struct {
    const char *text; /* the value as written (YAML scalar or -D value) */
    ir_loc loc;       /* where it was written; line 0 for -D (file is then "-D name=value") */
    int state;        /* 0 not evaluated, 1 being evaluated, 2 done */
    double value;     /* numbers; bools 0/1; gelu 0 erf, 1 tanh */
} param;

typedef struct {
    const char *path;
    yaml_document_t *doc;
    ir_graph *g;
    char *err;
    size_t errsize;
    param params[NPARAMS];
    char define_where[NPARAMS][160];
    int64_t batch;
} yctx;

static int fail(yctx *c, ir_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(yctx *c, ir_loc loc, const char *fmt, ...) {
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (!loc.file) loc.file = c->path;
    ir_loc_format(c->err, c->errsize, loc, "%s", why);
    return -1;
}

static ir_loc node_loc(yctx *c, const yaml_node_t *n) {
    ir_loc l = {c->path, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1};
    return l;
}

static int param_value(yctx *c, int i, double *out);

/* ---- expressions: expr := term {(+|-) term}; term := unary {(*|/|//|%) unary};
 *      unary := (-|+) unary | number | param name | ( expr ) ------------------------------ */

typedef struct {
    yctx *c;
    const char *s;
    size_t pos, len;
    ir_loc loc; /* of the text's first character */
    int depth;
} expr_parser;

static int expr_fail(expr_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int expr_fail(expr_parser *p, const char *fmt, ...) {
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    ir_loc l = p->loc;
    if (l.line > 0) l.col += (int)p->pos;
    return fail(p->c, l, "%s in '%.*s'", why, (int)(p->len > 80 ? 80 : p->len), p->s);
}

static void skip_space(expr_parser *p) {
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t')) p->pos++;
}

static int is_ident(char ch, int first) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
           (!first && ch >= '0' && ch <= '9');
}

static int parse_expr(expr_parser *p, double *v);

static int parse_unary(expr_parser *p, double *v) {
    skip_space(p);
    if (p->pos >= p->len) return expr_fail(p, "expected a number or a param name");
    char ch = p->s[p->pos];
    if (ch == '-' || ch == '+') {
        if (++p->depth > 64) return expr_fail(p, "expression nested too deeply");
        p->pos++;
        if (parse_unary(p, v)) return -1;
        p->depth--;
        if (ch == '-') *v = -*v;
        return 0;
    }
    if (ch == '(') {
        if (++p->depth > 64) return expr_fail(p, "expression nested too deeply");
        p->pos++;
        if (parse_expr(p, v)) return -1;
        skip_space(p);
        if (p->pos >= p->len || p->s[p->pos] != ')') return expr_fail(p, "expected ')'");
        p->pos++;
        p->depth--;
        return 0;
    }
    if ((ch >= '0' && ch <= '9') || ch == '.') {
        size_t b = p->pos;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos < p->len && p->s[p->pos] == '.') p->pos++;
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
            size_t e = p->pos + 1;
            if (e < p->len && (p->s[e] == '+' || p->s[e] == '-')) e++;
            if (e < p->len && p->s[e] >= '0' && p->s[e] <= '9') {
                p->pos = e;
                while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++;
            }
        }
        char buf[64];
        size_t n = p->pos - b;
        if (n >= sizeof buf || (n == 1 && ch == '.')) {
            p->pos = b;
            return expr_fail(p, "bad number");
        }
        memcpy(buf, p->s + b, n);
        buf[n] = 0;
        *v = strtod(buf, NULL);
        if (!isfinite(*v)) {
            p->pos = b;
            return expr_fail(p, "number out of range");
        }
        return 0;
    }
    if (is_ident(ch, 1)) {
        size_t b = p->pos;
        while (p->pos < p->len && is_ident(p->s[p->pos], 0)) p->pos++;
        for (int i = 0; i < NPARAMS; i++)
            if (strlen(param_defs[i].name) == p->pos - b &&
                memcmp(param_defs[i].name, p->s + b, p->pos - b) == 0) {
                if (param_defs[i].kind == P_BOOL || param_defs[i].kind == P_GELU) {
                    p->pos = b;
                    return expr_fail(p, "'%s' is not a number", param_defs[i].name);
                }
                return param_value(p->c, i, v);
            }
        size_t n = p->pos - b;
        p->pos = b;
        return expr_fail(p, "unknown name '%.*s' (expected a number or one of: " PARAM_NAMES ")",
                         (int)(n > 40 ? 40 : n), p->s + b);
    }
    return expr_fail(p, "unexpected character '%c'", ch >= ' ' && ch < 127 ? ch : '?');
}

static int parse_term(expr_parser *p, double *v) {
    if (parse_unary(p, v)) return -1;
    for (;;) {
        skip_space(p);
        if (p->pos >= p->len) return 0;
        char ch = p->s[p->pos];
        int floordiv = ch == '/' && p->pos + 1 < p->len && p->s[p->pos + 1] == '/';
        if (ch != '*' && ch != '/' && ch != '%') return 0;
        size_t at = p->pos;
        p->pos += floordiv ? 2 : 1;
        double r;
        if (parse_unary(p, &r)) return -1;
        if (ch == '*') {
            *v *= r;
        } else {
            if (r == 0) {
                p->pos = at;
                return expr_fail(p, "division by zero");
            }
            if (ch == '%')
                *v = *v - r * floor(*v / r);
            else
                *v = floordiv ? floor(*v / r) : *v / r;
        }
        if (!isfinite(*v)) {
            p->pos = at;
            return expr_fail(p, "result out of range");
        }
    }
}

static int parse_expr(expr_parser *p, double *v) {
    if (parse_term(p, v)) return -1;
    for (;;) {
        skip_space(p);
        if (p->pos >= p->len) return 0;
        char ch = p->s[p->pos];
        if (ch != '+' && ch != '-') return 0;
        size_t at = p->pos++;
        double r;
        if (parse_term(p, &r)) return -1;
        *v = ch == '+' ? *v + r : *v - r;
        if (!isfinite(*v)) {
            p->pos = at;
            return expr_fail(p, "result out of range");
        }
    }
}

static int eval_number(yctx *c, const char *text, ir_loc loc, double *v) {
    expr_parser p = {c, text, 0, strlen(text), loc, 0};
    if (parse_expr(&p, v)) return -1;
    skip_space(&p);
    if (p.pos < p.len) return expr_fail(&p, "unexpected '%c'", text[p.pos] >= ' ' ? text[p.pos] : '?');
    return 0;
}

static int eval_int(yctx *c, const char *text, ir_loc loc, const char *what, int64_t lo,
                    int64_t hi, int64_t *out) {
    double v;
    if (eval_number(c, text, loc, &v)) return -1;
    if (v != floor(v))
        return fail(c, loc, "%s must be a whole number, '%s' is %g", what, text, v);
    if (v < (double)lo || v > (double)hi)
        return fail(c, loc, "%s must be between %lld and %lld, '%s' is %.17g", what,
                    (long long)lo, (long long)hi, text, v);
    *out = (int64_t)v;
    return 0;
}

static int word_is(const char *s, const char *w) { return strcmp(s, w) == 0; }

/* true/false (also yes/no/on/off, any case of the first letter) or the name qkv_bias */
static int eval_bool(yctx *c, const char *t, ir_loc loc, const char *what, int *out) {
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "off", "Off"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (word_is(t, yes[i])) return *out = 1, 0;
        if (word_is(t, no[i])) return *out = 0, 0;
    }
    for (int i = 0; i < NPARAMS; i++)
        if (param_defs[i].kind == P_BOOL && word_is(t, param_defs[i].name)) {
            double v;
            if (param_value(c, i, &v)) return -1;
            return *out = v != 0, 0;
        }
    return fail(c, loc, "%s must be true or false, got '%s'", what, t);
}

/* erf | tanh, or the name gelu; *tanh = 1 for the tanh approximation */
static int eval_gelu(yctx *c, const char *t, ir_loc loc, const char *what, int *tanh_approx) {
    if (word_is(t, "erf") || word_is(t, "none")) return *tanh_approx = 0, 0;
    if (word_is(t, "tanh")) return *tanh_approx = 1, 0;
    if (word_is(t, "gelu")) {
        double v;
        if (param_value(c, GELU, &v)) return -1;
        return *tanh_approx = v != 0, 0;
    }
    return fail(c, loc, "%s must be erf or tanh, got '%s'", what, t);
}

/* Evaluates param i once (lazily), with its kind's checks. */
static int param_value(yctx *c, int i, double *out) {
    param *p = &c->params[i];
    if (p->state == 2) return *out = p->value, 0;
    if (p->state == 1)
        return fail(c, p->loc, "param %s is defined in terms of itself", param_defs[i].name);
    p->state = 1;
    const char *name = param_defs[i].name;
    int r = 0, b;
    int64_t k = 0;
    switch (param_defs[i].kind) {
    case P_INT: {
        int64_t lo = 1, hi = i == DEPTH ? FE_MAX_REPEAT : FE_MAX_SIZE;
        r = eval_int(c, p->text, p->loc, name, lo, hi, &k);
        p->value = (double)k;
        break;
    }
    case P_FLOAT:
        r = eval_number(c, p->text, p->loc, &p->value);
        if (!r && !(p->value > 0))
            r = fail(c, p->loc, "%s must be positive, '%s' is %g", name, p->text, p->value);
        break;
    case P_BOOL:
        r = eval_bool(c, p->text, p->loc, name, &b);
        p->value = b;
        break;
    case P_GELU:
        r = eval_gelu(c, p->text, p->loc, name, &b);
        p->value = b;
        break;
    }
    if (r) return -1;
    p->state = 2;
    *out = p->value;
    return 0;
}


static int64_t param_int(yctx *c, int i) { return (int64_t)c->params[i].value; }

/* ---- YAML document helpers -------------------------------------------------------------- */

/* The text of a scalar node (NUL-free), or -1 with an error naming `what`. */
static int scalar(yctx *c, yaml_node_t *n, const char *what, const char **out) {
    if (!n || n->type != YAML_SCALAR_NODE)
        return fail(c, node_loc(c, n), "%s must be a single value, not a %s", what,
                    n && n->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
    if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
        return fail(c, node_loc(c, n), "%s contains a NUL character", what);
    *out = (const char *)n->data.scalar.value;
    return 0;
}

/* Checks that every key of a mapping is a scalar. */
static int keys_scalar(yctx *c, yaml_node_t *map) {
    for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top; a++) {
        const char *ks;
        if (scalar(c, yaml_document_get_node(c->doc, a->key), "a key", &ks)) return -1;
    }
    return 0;
}

/* Checks that a mapping's keys are scalars from the space-separated list `allowed`, each once. */
static int check_keys(yctx *c, yaml_node_t *map, const char *allowed, const char *where) {
    for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top; a++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, a->key);
        const char *ks;
        if (scalar(c, k, "a key", &ks)) return -1;
        size_t kl = strlen(ks);
        int found = 0;
        for (const char *f = allowed; *f && !found;) { /* the words of allowed */
            size_t wl = strcspn(f, " ");
            found = wl == kl && memcmp(f, ks, kl) == 0;
            f += wl + (f[wl] == ' ');
        }
        if (!found)
            return fail(c, node_loc(c, k), "unknown key '%.60s' in %s (expected: %s)", ks, where,
                        allowed);
        for (yaml_node_pair_t *b = map->data.mapping.pairs.start; b < a; b++) {
            yaml_node_t *k2 = yaml_document_get_node(c->doc, b->key);
            if (strcmp((const char *)k2->data.scalar.value, ks) == 0)
                return fail(c, node_loc(c, k), "duplicate key '%s' in %s (first at line %d)", ks,
                            where, (int)k2->start_mark.line + 1);
        }
    }
    return 0;
}

/* Value node of key in a mapping whose keys check_keys accepted; NULL if absent. */
static yaml_node_t *map_get(yctx *c, yaml_node_t *map, const char *key) {
    for (yaml_node_pair_t *a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top; a++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, a->key);
        if (strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(c->doc, a->value);
    }
    return NULL;
}

static const char *type_name(yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE ? "a single value"
           : n->type == YAML_SEQUENCE_NODE ? "a list" : "a mapping";
}

/* weight-name parts: letters, digits, _ and - (dots come from composition only) */
static int check_name(yctx *c, yaml_node_t *n, const char *s) {
    if (!*s) return fail(c, node_loc(c, n), "a name must not be empty");
    for (const char *q = s; *q; q++)
        if (!is_ident(*q, 0) && *q != '-')
            return fail(c, node_loc(c, n),
                        "name '%.60s' may hold only letters, digits, '_' and '-' (dots come "
                        "from nesting)", s);
    if (strlen(s) > 100) return fail(c, node_loc(c, n), "name longer than 100 characters");
    return 0;
}

/* ---- layers ----------------------------------------------------------------------------- */

/* keys: what a layer of this op may hold besides `op`. */
static const struct {
    const char *op;
    const char *keys;
} ops[] = {
    {"patch_embed", "name dim patch"},   /* images -> patch tokens; dim=embed_dim patch=patch_size */
    {"cls_token", "name"},               /* prepend one learned token (name: cls_token) */
    {"tokens", "names"},                 /* prepend learned tokens in order: [cls_token, dist_token] */
    {"pos_embed", "name"},               /* + learned position embedding (name: pos_embed) */
    {"layer_norm", "name eps"},          /* eps=layer_norm_eps */
    {"attention", "name heads qkv_bias"},/* heads=num_heads qkv_bias=qkv_bias */
    {"mlp", "name hidden gelu"},         /* hidden=embed_dim*mlp_ratio gelu=gelu */
    {"linear", "name out bias"},         /* out required; bias=true */
    {"residual", "name layers"},         /* x + layers(x) */
    {"select_token", "index"},           /* [B,N,D] -> [B,D], index=0 */
    {"distilled_head", "names out"},     /* (head(x[:,0]) + head_dist(x[:,1])) / 2, out=num_classes */
};
#define OP_NAMES                                                                                \
    "patch_embed, cls_token, tokens, pos_embed, layer_norm, attention, mlp, linear, residual, " \
    "select_token, distilled_head (or a 'repeat' block)"

static int build_list(yctx *c, yaml_node_t *list, const char *prefix, int x, int nest,
                      const char *what);

/* prefix.name in the graph arena; NULL name gives prefix (or NULL) */
static const char *join(yctx *c, const char *prefix, const char *name) {
    if (!name) return prefix;
    if (!prefix || !*prefix) return ir_arena_strdup(&c->g->arena, name);
    return ir_arena_printf(&c->g->arena, "%s.%s", prefix, name);
}

/* The layer's name key composed with the prefix; dflt when absent (NULL: required). */
static int layer_name(yctx *c, yaml_node_t *layer, const char *op, const char *prefix,
                      const char *dflt, const char **out) {
    yaml_node_t *n = map_get(c, layer, "name");
    const char *s = dflt;
    if (n && (scalar(c, n, "name", &s) || check_name(c, n, s))) return -1;
    if (!s) return fail(c, node_loc(c, layer), "layer '%s' needs a name (its weights are named NAME.weight ...)", op);
    *out = join(c, prefix, s);
    return 0;
}

/* Integer option: the key's expression, else the default expression dflt. */
static int opt_int(yctx *c, yaml_node_t *layer, const char *key, const char *dflt, int64_t lo,
                   int64_t *out) {
    yaml_node_t *n = map_get(c, layer, key);
    const char *t = dflt;
    ir_loc loc = node_loc(c, layer);
    if (n) {
        if (scalar(c, n, key, &t)) return -1;
        loc = node_loc(c, n);
    }
    if (!t) return fail(c, loc, "layer needs '%s'", key);
    return eval_int(c, t, loc, key, lo, FE_MAX_SIZE, out);
}

/* list of names (tokens: names, distilled_head: names) into out[max] */
static int opt_names(yctx *c, yaml_node_t *layer, const char *prefix, const char *const *dflt,
                     int ndflt, int min, int max, const char **out, int *count) {
    yaml_node_t *n = map_get(c, layer, "names");
    if (!n) {
        for (int i = 0; i < ndflt; i++) out[i] = join(c, prefix, dflt[i]);
        *count = ndflt;
        return ndflt ? 0 : fail(c, node_loc(c, layer), "layer needs 'names'");
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(c, node_loc(c, n), "names must be a list, not %s", type_name(n));
    int k = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (k < min || k > max)
        return fail(c, node_loc(c, n), "names must list %d to %d names, not %d", min, max, k);
    for (int i = 0; i < k; i++) {
        yaml_node_t *it = yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
        const char *s = NULL;
        if (scalar(c, it, "a name", &s) || check_name(c, it, s)) return -1;
        out[i] = join(c, prefix, s);
    }
    *count = k;
    return 0;
}

static int graph_fail(yctx *c) {
    snprintf(c->err, c->errsize, "%s", c->g->error);
    return -1;
}

static int64_t last_dim(yctx *c, int x) { return c->g->nodes[x].shape[c->g->nodes[x].ndim - 1]; }

/* Builds one layer (mapping) onto x; returns the new current value or -1. */
static int build_layer(yctx *c, yaml_node_t *layer, const char *prefix, int x, int nest) {
    ir_loc loc = node_loc(c, layer);
    if (layer->type != YAML_MAPPING_NODE)
        return fail(c, loc, "a layer must be a mapping like {op: linear, ...}, not %s",
                    type_name(layer));
    if (c->g->n > FE_MAX_NODES)
        return fail(c, loc, "model too large (more than %d IR nodes)", FE_MAX_NODES);
    if (keys_scalar(c, layer)) return -1; /* map_get trusts that keys are scalars */
    yaml_node_t *opn = map_get(c, layer, "op"), *rep = map_get(c, layer, "repeat");

    if (rep) {
        if (opn) return fail(c, loc, "a layer has either 'op' or 'repeat', not both");
        if (check_keys(c, layer, "repeat name layers", "a repeat block")) return -1;
        const char *t;
        int64_t count = 0;
        if (scalar(c, rep, "repeat", &t) ||
            eval_int(c, t, node_loc(c, rep), "repeat", 1, FE_MAX_REPEAT, &count))
            return -1;
        yaml_node_t *body = map_get(c, layer, "layers");
        if (!body) return fail(c, loc, "a repeat block needs 'layers'");
        const char *base = prefix;
        if (map_get(c, layer, "name") && layer_name(c, layer, "repeat", prefix, NULL, &base))
            return -1;
        for (int64_t i = 0; i < count && x >= 0; i++) {
            const char *p = base ? ir_arena_printf(&c->g->arena, "%s.%lld", base, (long long)i)
                                 : ir_arena_printf(&c->g->arena, "%lld", (long long)i);
            x = build_list(c, body, p, x, nest + 1, "repeat");
        }
        return x;
    }
    if (!opn) return fail(c, loc, "a layer needs 'op' (one of: " OP_NAMES ")");
    const char *op;
    if (scalar(c, opn, "op", &op)) return -1;
    int k = -1;
    for (int i = 0; i < (int)(sizeof ops / sizeof *ops); i++)
        if (strcmp(ops[i].op, op) == 0) k = i;
    if (k < 0)
        return fail(c, node_loc(c, opn), "unknown op '%.60s' (expected one of: " OP_NAMES ")", op);
    char allowed[96], where[96];
    snprintf(allowed, sizeof allowed, "op %s", ops[k].keys);
    snprintf(where, sizeof where, "layer '%s'", op);
    if (check_keys(c, layer, allowed, where)) return -1;

    ir_graph *g = c->g;
    const ir_node *xn = &g->nodes[x];
    int rank = xn->ndim;
    if (strcmp(op, "patch_embed") != 0 && rank == 4)
        return fail(c, loc, "'%s' cannot come first: the layers start with the images [B,C,H,W], "
                    "which need op: patch_embed", op);
    const char *name;
    int y;
    if (strcmp(op, "patch_embed") == 0) {
        int64_t dim, patch;
        if (rank != 4)
            return fail(c, loc, "patch_embed takes the images [B,C,H,W]; it must be the first layer");
        if (layer_name(c, layer, op, prefix, NULL, &name) ||
            opt_int(c, layer, "dim", "embed_dim", 1, &dim) ||
            opt_int(c, layer, "patch", "patch_size", 1, &patch))
            return -1;
        y = fe_patch_embed(g, x, xn->shape[1], patch, dim, name, loc);
    } else if (strcmp(op, "cls_token") == 0 || strcmp(op, "tokens") == 0) {
        const char *names[4];
        int n = 1;
        if (op[0] == 'c') {
            if (layer_name(c, layer, op, prefix, "cls_token", &names[0])) return -1;
        } else if (opt_names(c, layer, prefix, NULL, 0, 1, 4, names, &n)) {
            return -1;
        }
        y = fe_prepend_tokens(g, x, names, n, loc);
    } else if (strcmp(op, "pos_embed") == 0) {
        if (layer_name(c, layer, op, prefix, "pos_embed", &name)) return -1;
        y = fe_pos_embed(g, x, name, loc);
    } else if (strcmp(op, "layer_norm") == 0) {
        yaml_node_t *e = map_get(c, layer, "eps");
        double eps = c->params[LAYER_NORM_EPS].value;
        const char *t;
        if (layer_name(c, layer, op, prefix, NULL, &name)) return -1;
        if (e && (scalar(c, e, "eps", &t) || eval_number(c, t, node_loc(c, e), &eps))) return -1;
        if (e && !(eps > 0)) return fail(c, node_loc(c, e), "eps must be positive");
        y = fe_layer_norm(g, x, last_dim(c, x), eps, name, loc);
    } else if (strcmp(op, "attention") == 0) {
        int64_t heads;
        int bias = (int)param_int(c, QKV_BIAS);
        yaml_node_t *b = map_get(c, layer, "qkv_bias");
        const char *t;
        if (layer_name(c, layer, op, prefix, NULL, &name) ||
            opt_int(c, layer, "heads", "num_heads", 1, &heads))
            return -1;
        if (b && (scalar(c, b, "qkv_bias", &t) || eval_bool(c, t, node_loc(c, b), "qkv_bias", &bias)))
            return -1;
        if (last_dim(c, x) % heads) {
            yaml_node_t *h = map_get(c, layer, "heads");
            return fail(c, h ? node_loc(c, h) : loc,
                        "attention: the embedding dim %lld is not divisible by heads=%lld",
                        (long long)last_dim(c, x), (long long)heads);
        }
        y = fe_attention(g, x, last_dim(c, x), heads, bias, name, loc);
    } else if (strcmp(op, "mlp") == 0) {
        int64_t hidden;
        int tanh_approx = (int)param_int(c, GELU);
        yaml_node_t *gn = map_get(c, layer, "gelu");
        const char *t;
        if (layer_name(c, layer, op, prefix, NULL, &name) ||
            opt_int(c, layer, "hidden", "embed_dim * mlp_ratio // 1", 1, &hidden))
            return -1;
        if (gn && (scalar(c, gn, "gelu", &t) || eval_gelu(c, t, node_loc(c, gn), "gelu", &tanh_approx)))
            return -1;
        y = fe_mlp(g, x, last_dim(c, x), hidden, tanh_approx, name, loc);
    } else if (strcmp(op, "linear") == 0) {
        int64_t out;
        int bias = 1;
        yaml_node_t *b = map_get(c, layer, "bias");
        const char *t;
        if (layer_name(c, layer, op, prefix, NULL, &name) ||
            opt_int(c, layer, "out", NULL, 1, &out))
            return -1;
        if (b && (scalar(c, b, "bias", &t) || eval_bool(c, t, node_loc(c, b), "bias", &bias)))
            return -1;
        y = fe_linear(g, x, last_dim(c, x), out, bias, name, loc);
    } else if (strcmp(op, "residual") == 0) {
        yaml_node_t *body = map_get(c, layer, "layers");
        const char *inner = prefix;
        if (!body) return fail(c, loc, "residual needs 'layers'");
        if (map_get(c, layer, "name") && layer_name(c, layer, op, prefix, NULL, &inner)) return -1;
        y = build_list(c, body, inner, x, nest + 1, "residual");
        if (y < 0) return -1;
        if (!ir_same_shape(&g->nodes[x], &g->nodes[y])) {
            char s0[96], s1[96];
            return fail(c, loc, "residual: its layers change the shape %s into %s",
                        ir_shape_str(&g->nodes[x], s0, 96), ir_shape_str(&g->nodes[y], s1, 96));
        }
        int in[2] = {x, y};
        y = ir_add(g, IR_OP_ADD, in, 2, NULL, g->nodes[x].dtype, 0, NULL,
                   join(c, inner, "residual"), loc);
    } else if (strcmp(op, "select_token") == 0) {
        int64_t index;
        if (opt_int(c, layer, "index", "0", 0, &index)) return -1;
        y = fe_select_token(g, x, index, NULL, loc);
    } else { /* distilled_head */
        static const char *const dflt[2] = {"head", "head_dist"};
        const char *names[2];
        int n;
        int64_t out;
        if (opt_names(c, layer, prefix, dflt, 2, 2, 2, names, &n) ||
            opt_int(c, layer, "out", "num_classes", 1, &out))
            return -1;
        y = fe_distilled_head(g, x, out, names[0], names[1], loc);
    }
    return y < 0 ? graph_fail(c) : y;
}

static int build_list(yctx *c, yaml_node_t *list, const char *prefix, int x, int nest,
                      const char *what) {
    if (nest > FE_MAX_NEST)
        return fail(c, node_loc(c, list), "layers nested more than %d deep", FE_MAX_NEST);
    if (list->type != YAML_SEQUENCE_NODE)
        return fail(c, node_loc(c, list), "%s: 'layers' must be a list of layers, not %s", what,
                    type_name(list));
    if (list->data.sequence.items.top == list->data.sequence.items.start)
        return fail(c, node_loc(c, list), "%s: 'layers' is empty", what);
    for (yaml_node_item_t *it = list->data.sequence.items.start;
         it < list->data.sequence.items.top && x >= 0; it++)
        x = build_layer(c, yaml_document_get_node(c->doc, *it), prefix, x, nest);
    return x;
}

/* ---- the model -------------------------------------------------------------------------- */

static int cmp_weight(const void *a, const void *b, void *g) {
    const ir_node *na = &((ir_graph *)g)->nodes[*(const int *)a];
    const ir_node *nb = &((ir_graph *)g)->nodes[*(const int *)b];
    int r = strcmp(na->name, nb->name);
    return r ? r : *(const int *)a - *(const int *)b;
}

/* qsort with a context, without depending on qsort_r's platform differences */
static void sort_ids(int *ids, int n, ir_graph *g) {
    for (int gap = n / 2; gap > 0; gap /= 2) /* shell sort: fine for thousands of weights */
        for (int i = gap; i < n; i++)
            for (int j = i - gap; j >= 0 && cmp_weight(&ids[j], &ids[j + gap], g) > 0; j -= gap) {
                int t = ids[j];
                ids[j] = ids[j + gap];
                ids[j + gap] = t;
            }
}

static int check_unique_weights(yctx *c) {
    ir_graph *g = c->g;
    int *ids = malloc(sizeof(int) * (size_t)(g->n ? g->n : 1)), n = 0, r = 0;
    if (!ids) return fail(c, (ir_loc){c->path, 0, 0}, "out of memory");
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].op == IR_OP_WEIGHT) ids[n++] = i;
    sort_ids(ids, n, g);
    for (int i = 1; i < n && !r; i++) {
        const ir_node *a = &g->nodes[ids[i - 1]], *b = &g->nodes[ids[i]];
        if (strcmp(a->name, b->name) == 0)
            r = fail(c, b->loc, "weight '%s' is made twice (first by the layer at line %d); give "
                     "the layers different names", b->name, a->loc.line);
    }
    free(ids);
    return r;
}

static int load_params(yctx *c, yaml_node_t *pm, const fe_define *defines, int ndefines,
                       ir_loc root_loc) {
    if (!pm) return fail(c, root_loc, "the model needs 'params' (hyperparameters: " PARAM_NAMES ")");
    if (pm->type != YAML_MAPPING_NODE)
        return fail(c, node_loc(c, pm), "'params' must be a mapping of hyperparameters, not %s",
                    type_name(pm));
    char allowed[256] = "";
    for (int i = 0; i < NPARAMS; i++) {
        strcat(allowed, i ? " " : "");
        strcat(allowed, param_defs[i].name);
    }
    if (check_keys(c, pm, allowed, "params")) return -1;
    for (int i = 0; i < NPARAMS; i++) {
        yaml_node_t *v = map_get(c, pm, param_defs[i].name);
        param *p = &c->params[i];
        if (v) {
            if (scalar(c, v, param_defs[i].name, &p->text)) return -1;
            p->loc = node_loc(c, v);
        } else {
            p->text = param_defs[i].dflt;
            p->loc = node_loc(c, pm);
        }
    }
    for (int d = 0; d < ndefines; d++) {
        int k = -1;
        const char *nm = defines[d].name ? defines[d].name : "";
        const char *val = defines[d].value ? defines[d].value : "";
        for (int i = 0; i < NPARAMS; i++)
            if (strcmp(param_defs[i].name, nm) == 0) k = i;
        char where[160];
        snprintf(where, sizeof where, "-D %.60s=%.60s", nm, val);
        if (k < 0)
            return fail(c, (ir_loc){where, 0, 0},
                        "unknown hyperparameter '%.60s' (expected one of: " PARAM_NAMES ")", nm);
        snprintf(c->define_where[k], sizeof c->define_where[k], "-D %s=%.100s", nm, val);
        c->params[k].text = val;
        c->params[k].loc = (ir_loc){c->define_where[k], 0, 0};
    }
    for (int i = 0; i < NPARAMS; i++)
        if (!c->params[i].text)
            return fail(c, node_loc(c, pm), "params: missing '%s'", param_defs[i].name);
    double v;
    for (int i = 0; i < NPARAMS; i++)
        if (param_value(c, i, &v)) return -1;
    int64_t img = param_int(c, IMG_SIZE), patch = param_int(c, PATCH_SIZE);
    int64_t dim = param_int(c, EMBED_DIM), heads = param_int(c, NUM_HEADS);
    /* point at a -D if one of the two came from there, else at the divisor */
#define EITHER(a, b) (c->params[a].loc.line == 0 ? c->params[a].loc : c->params[b].loc)
    if (img % patch)
        return fail(c, EITHER(IMG_SIZE, PATCH_SIZE),
                    "img_size %lld is not divisible by patch_size %lld", (long long)img,
                    (long long)patch);
    if (dim % heads)
        return fail(c, EITHER(EMBED_DIM, NUM_HEADS), "embed_dim %lld is not divisible by num_heads %lld",
                    (long long)dim, (long long)heads);
#undef EITHER
    return 0;
}

static int build_model(yctx *c, yaml_node_t *root, const fe_define *defines, int ndefines) {
    ir_loc root_loc = {c->path, 1, 1};
    if (!root)
        return fail(c, root_loc, "empty file: expected a YAML mapping with 'params' and 'layers'");
    root_loc = node_loc(c, root);
    if (root->type != YAML_MAPPING_NODE)
        return fail(c, root_loc, "the model must be a YAML mapping with 'params' and 'layers', "
                    "not %s", type_name(root));
    if (check_keys(c, root, "name description params layers", "the model")) return -1;
    if (load_params(c, map_get(c, root, "params"), defines, ndefines, root_loc)) return -1;

    ir_graph *g = c->g;
    ir_model_info *mi = &g->info;
    yaml_node_t *nm = map_get(c, root, "name");
    const char *model_name = NULL;
    if (nm && scalar(c, nm, "name", &model_name)) return -1;
    for (const char *q = model_name; q && *q; q++) /* it ends up in files and messages */
        if (*q < ' ' || *q > '~' || *q == '"' || *q == '\\' || q - model_name >= 100)
            return fail(c, node_loc(c, nm), "the model name may hold up to 100 printable ASCII "
                        "characters, without '\"' or '\\'");
    yaml_node_t *desc = map_get(c, root, "description");
    const char *ignored;
    if (desc && scalar(c, desc, "description", &ignored)) return -1;
    if (!model_name) { /* the file's name without folders and extension */
        const char *b = strrchr(c->path, '/');
        b = b ? b + 1 : c->path;
        const char *e = strrchr(b, '.');
        long n = e && e > b ? e - b : (long)strlen(b);
        char *m = ir_arena_printf(&g->arena, "%.*s", (int)(n > 100 ? 100 : n), b);
        for (char *q = m; *q; q++)
            if (*q < ' ' || *q > '~' || *q == '"' || *q == '\\') *q = '_';
        model_name = m;
    }
    mi->model_name = ir_arena_strdup(&g->arena, model_name);
    mi->img_size = param_int(c, IMG_SIZE);
    mi->patch_size = param_int(c, PATCH_SIZE);
    mi->in_chans = param_int(c, IN_CHANS);
    mi->num_classes = param_int(c, NUM_CLASSES);
    mi->embed_dim = param_int(c, EMBED_DIM);
    mi->depth = param_int(c, DEPTH);
    mi->num_heads = param_int(c, NUM_HEADS);
    mi->mlp_ratio = c->params[MLP_RATIO].value;
    mi->batch = c->batch;

    yaml_node_t *layers = map_get(c, root, "layers");
    if (!layers) return fail(c, root_loc, "the model needs 'layers' (a list of layers)");
    ir_loc in_loc = node_loc(c, layers);
    int64_t ishape[4] = {c->batch, mi->in_chans, mi->img_size, mi->img_size};
    int x = ir_leaf(g, IR_OP_INPUT, IR_F32, 4, ishape, "images", in_loc);
    if (x < 0) return graph_fail(c);
    x = build_list(c, layers, NULL, x, 0, "the model");
    if (x < 0) return -1;
    const ir_node *out = &g->nodes[x];
    char s[96];
    if (out->ndim != 2 || out->shape[1] != mi->num_classes)
        return fail(c, in_loc, "the layers end with %s; expected logits [%lld,%lld] "
                    "(batch, num_classes): end with select_token and a linear head",
                    ir_shape_str(out, s, sizeof s), (long long)c->batch,
                    (long long)mi->num_classes);
    if (out->op == IR_OP_INPUT || out->op == IR_OP_WEIGHT)
        return fail(c, in_loc, "the layers compute nothing");
    ir_node_set_output(g, x, "logits");
    return check_unique_weights(c);
}

/* line:col (1-based) of byte offset `off` in text */
static void offset_pos(const char *text, size_t len, size_t off, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

int fe_yaml_load_string(const char *text, size_t len, const char *path, const fe_define *defines,
                        int ndefines, int64_t batch, ir_graph **out, char *err, size_t errsize) {
    *out = NULL;
    if (errsize) err[0] = 0;
    if (!path) path = "<yaml>";
    if (batch <= 0) batch = 1;
    if (batch > FE_MAX_SIZE) {
        snprintf(err, errsize, "%s: batch %lld is too large", path, (long long)batch);
        return -1;
    }
    const char *nul = memchr(text, 0, len);
    if (nul) {
        int line, col;
        offset_pos(text, len, (size_t)(nul - text), &line, &col);
        ir_loc_format(err, errsize, (ir_loc){path, line, col}, "binary file (a NUL byte); expected YAML text");
        return -1;
    }
    size_t k = 0;
    while (k < len && (text[k] == ' ' || text[k] == '\n' || text[k] == '\r' || text[k] == '\t'))
        k++;
    if (k == len) {
        ir_loc_format(err, errsize, (ir_loc){path, 1, 1},
                      "empty file: expected a YAML mapping with 'params' and 'layers'");
        return -1;
    }

    if (fe_yaml_check_depth(text, len, path, err, errsize)) return -1;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errsize, "%s: cannot initialize the YAML parser", path);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int line = (int)parser.problem_mark.line + 1, col = (int)parser.problem_mark.column + 1;
        if (parser.error == YAML_READER_ERROR)
            offset_pos(text, len, parser.problem_offset, &line, &col);
        const char *problem = parser.problem ? parser.problem : "malformed YAML";
        if (parser.context)
            ir_loc_format(err, errsize, (ir_loc){path, line, col}, "YAML syntax error: %s (%s at line %d:%d)",
                          problem, parser.context, (int)parser.context_mark.line + 1,
                          (int)parser.context_mark.column + 1);
        else
            ir_loc_format(err, errsize, (ir_loc){path, line, col}, "YAML syntax error: %s", problem);
        yaml_parser_delete(&parser);
        return -1;
    }
    yctx c = {0};
    c.path = path;
    c.doc = &doc;
    c.err = err;
    c.errsize = errsize;
    c.batch = batch;
    c.g = ir_graph_new();
    int r = build_model(&c, yaml_document_get_root_node(&doc), defines, ndefines);
    yaml_document_delete(&doc);
    if (r == 0) { /* a second document would be ignored silently: refuse it */
        yaml_document_t extra;
        if (!yaml_parser_load(&parser, &extra)) {
            r = -1;
            ir_loc_format(err, errsize,
                          (ir_loc){path, (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1},
                          "YAML syntax error after the model: %s", parser.problem ? parser.problem : "malformed YAML");
        } else {
            yaml_node_t *root = yaml_document_get_root_node(&extra);
            if (root) {
                r = -1;
                ir_loc_format(err, errsize,
                              (ir_loc){path, (int)root->start_mark.line + 1, (int)root->start_mark.column + 1},
                              "a second YAML document; a model file holds one");
            }
            yaml_document_delete(&extra);
        }
    }
    yaml_parser_delete(&parser);
    if (r) {
        ir_graph_free(c.g);
        return -1;
    }
    *out = c.g;
    return 0;
}

int fe_yaml_load(const char *path, const fe_define *defines, int ndefines, int64_t batch,
                 ir_graph **out, char *err, size_t errsize) {
    *out = NULL;
    void *buf;
    size_t n;
    char why[1024];
    if (rt_input_read(path, 0, FE_MAX_FILE, &buf, &n, why, sizeof why)) {
        snprintf(err, errsize, "%s%s", why, strstr(why, "bytes allowed") ? " for a model description" : "");
        return -1;
    }
    int r = fe_yaml_load_string(buf, n, path, defines, ndefines, batch, out, err, errsize);
    free(buf);
    return r;
}
