/* onnx_scan.c: a pass over an ONNX file's protobuf wire format, before protobuf-c unpacks it,
 * that refuses what unpacking would not survive or would pay too much for:
 *   - nesting: protobuf-c unpacks nested messages by recursion without a depth limit, so a
 *     small file of graphs inside attributes inside graphs... would overflow the stack;
 *   - memory: every message costs its C struct (216 bytes for a TensorProto) plus protobuf-c's
 *     bookkeeping, so 5 million empty initializers (10 MB of file) took 1.3 GB. The scan adds
 *     up what unpacking allocates (structs, arrays, strings, bytes, unknown fields) and counts
 *     each repeated field of messages or strings; absurd counts and totals out of proportion
 *     to the file are refused.
 * It walks the generated descriptors of onnx.proto, so it follows the schema exactly; anything
 * malformed is left for protobuf-c to reject.
 */
#ifdef DEITC_HAVE_ONNX
#include "frontend/frontend.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "onnx.pb-c.h"

#define OX_MAX_NEST 64                           /* messages inside messages */
#define OX_MAX_REPEATED (1 << 20)                /* messages or strings in one repeated field */
#define OX_UNPACK_RATIO 4                        /* unpacked bytes allowed: 4x the file ... */
#define OX_UNPACK_SLACK ((uint64_t)64 << 20)     /* ... plus 64 MiB (a graph's structure without
                                                    its weights unpacks to 2-8x its bytes) */
#define OX_ALLOC_COST 16                         /* malloc's own bytes per allocation */
#define OX_MEMBER_COST 32                        /* protobuf-c's record of each field it meets */

typedef struct {
    uint64_t bytes; /* what unpacking would allocate, estimated from above */
    char *why;
    size_t whysize;
} pscan;

static int refuse(pscan *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(pscan *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, s->whysize, fmt, ap);
    va_end(ap);
    return -1;
}

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 127) << shift;
        if (!(b & 128)) return 0;
    }
    return -1;
}

static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessageDescriptor *d, uint64_t id) {
    unsigned lo = 0, hi = d->n_fields; /* fields are sorted by tag number */
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (d->fields[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < d->n_fields && d->fields[lo].id == id ? &d->fields[lo] : NULL;
}

/* The wire type a field of type t has when not packed. */
static int wire_type(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_SFIXED64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE: return 1;
    case PROTOBUF_C_TYPE_SFIXED32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT: return 5;
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_BYTES: case PROTOBUF_C_TYPE_MESSAGE: return 2;
    default: return 0;
    }
}

/* Bytes one element of a repeated field of type t takes in protobuf-c's array. */
static uint64_t element_size(ProtobufCType t) {
    switch (t) {
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    default: return 4;
    }
}

/* Scans the message of descriptor d in [p, end): adds to s->bytes, refuses deep nesting and
 * absurd repeated fields. 0 when fine (or malformed: protobuf-c will say), -1 refused. */
static int scan_message(pscan *s, const uint8_t *p, const uint8_t *end, const ProtobufCMessageDescriptor *d,
                        int depth) {
    if (depth > OX_MAX_NEST)
        return refuse(s, "graphs or types nested more than %d deep", OX_MAX_NEST);
    s->bytes += d->sizeof_message + OX_ALLOC_COST;
    uint64_t counts[64] = {0}; /* elements of each repeated message/string field, by index in d->fields */
    while (p < end) {
        uint64_t tag, v = 0;
        if (pb_varint(&p, end, &tag) || (tag >> 3) > UINT32_MAX) return 0;
        int wt = (int)(tag & 7);
        const uint8_t *payload = p;
        if (wt == 0) {
            if (pb_varint(&p, end, &v)) return 0;
        } else if (wt == 1 || wt == 5) {
            v = wt == 1 ? 8 : 4;
            if ((uint64_t)(end - p) < v) return 0;
            p += v;
        } else if (wt == 2) {
            if (pb_varint(&p, end, &v) || v > (uint64_t)(end - p)) return 0;
            payload = p;
            p += v;
        } else {
            return 0; /* groups: protobuf-c refuses them */
        }
        s->bytes += OX_MEMBER_COST;
        const ProtobufCFieldDescriptor *f = field_of(d, tag >> 3);
        int repeated = f && f->label == PROTOBUF_C_LABEL_REPEATED;
        int packed = f && repeated && wt == 2 && wire_type(f->type) != 2;
        if (!f || (wt != wire_type(f->type) && !packed)) { /* kept as an unknown field */
            s->bytes += sizeof(ProtobufCMessageUnknownField) + OX_ALLOC_COST + (wt == 2 ? v : 8);
            continue;
        }
        if (packed) { /* numbers back to back: their count from the bytes */
            uint64_t n = 0;
            if (wire_type(f->type) == 0)
                for (uint64_t k = 0; k < v; k++) n += !(payload[k] & 128);
            else
                n = v / (wire_type(f->type) == 1 ? 8 : 4);
            s->bytes += n * element_size(f->type);
            continue;
        }
        if (repeated) {
            s->bytes += element_size(f->type);
            size_t k = (size_t)(f - d->fields);
            if (wt == 2 && k < 64) counts[k]++;
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            if (scan_message(s, payload, payload + v, f->descriptor, depth + 1)) return -1;
        } else if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_BYTES) {
            s->bytes += v + 1 + OX_ALLOC_COST;
        }
    }
    for (unsigned k = 0; k < d->n_fields && k < 64; k++)
        if (counts[k] > OX_MAX_REPEATED)
            return refuse(s, "%llu entries in field '%s' of one %s (at most %d)", (unsigned long long)counts[k],
                          d->fields[k].name, d->short_name, OX_MAX_REPEATED);
    return 0;
}

int fe_onnx_scan(const void *data, size_t len, char *why, size_t whysize) {
    pscan s = {0, why, whysize};
    const uint8_t *p = data;
    if (scan_message(&s, p, p + len, &onnx__model_proto__descriptor, 0)) return -1;
    if (s.bytes > OX_UNPACK_RATIO * (uint64_t)len + OX_UNPACK_SLACK)
        return refuse(&s, "unpacking its %.1f MB would take about %.1f MB: far more messages (nodes, "
                      "initializers, attributes...) than a model of this size has", (double)len / 1e6,
                      (double)s.bytes / 1e6);
    return 0;
}

#else
typedef int fe_onnx_scan_not_built; /* ISO C wants a translation unit to declare something */
#endif
