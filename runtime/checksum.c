/* checksum.c: the integrity check of the safetensors files deitc writes (weights, checkpoints).
 *
 * rt_safetensors_write puts two entries in "__metadata__":
 *   "deitc.crc32":        the CRC-32 of each tensor's bytes, 8 hex digits each, comma-separated,
 *                         in the order of the tensors in the header;
 *   "deitc.header_crc32": the CRC-32 of the 8-byte length and the whole header (names, dtypes,
 *                         shapes, offsets, metadata, padding) with these 8 digits read as "00000000".
 * CRC-32 detects every error in up to 32 consecutive bits, so any one flipped byte is found, and
 * the message names the tensor whose bytes changed, or the metadata (the header) when it did.
 * Files from elsewhere (timm) have no checksum: rt_safetensors_read_checked accepts them unless
 * told a checksum is required, but a file that says deitc wrote it must carry a valid one.
 */
#define _GNU_SOURCE /* memmem */
#include "runtime/rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t crc_table[8][256];

static void crc_init(void) {
    if (crc_table[0][1]) return;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t rt_crc32(uint32_t crc, const void *data, size_t n) {
    crc_init();
    const unsigned char *p = data;
    crc = ~crc;
    while (n >= 8) { /* slicing by 8: about 1.5 GB/s, a DeiT-S checkpoint in 0.2 s */
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^
              crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static const char header_key[] = "\"deitc.header_crc32\":\"";

/* The position of the header checksum's 8 digits in hdr[0..n), or NULL. The last occurrence:
 * the metadata comes after every tensor entry. */
static char *find_header_crc(char *hdr, size_t n) {
    size_t k = sizeof header_key - 1;
    for (size_t i = n >= k + 8 ? n - k - 8 + 1 : 0; i-- > 0;)
        if (memcmp(hdr + i, header_key, k) == 0) return hdr + i + k;
    return NULL;
}

void rt_checksum_tensors(const rt_tensor *tensors, int count, rt_strbuf *out) {
    for (int i = 0; i < count; i++)
        rt_sb_printf(out, "%s%08x", i ? "," : "", (unsigned)rt_crc32(0, tensors[i].data, tensors[i].nbytes));
}

int rt_checksum_seal_header(const unsigned char len8[8], char *hdr, size_t n) {
    char *digits = find_header_crc(hdr, n);
    if (!digits) return -1;
    memset(digits, '0', 8);
    uint32_t crc = rt_crc32(rt_crc32(0, len8, 8), hdr, n);
    char hex[9];
    snprintf(hex, sizeof hex, "%08x", (unsigned)crc);
    memcpy(digits, hex, 8);
    return 0;
}

/* 1 when the header says deitc wrote the file (then it must carry a valid checksum): any one
 * of three separate marks, so that a single damaged byte cannot hide them all. */
static int claims_deitc(const char *hdr, size_t n) {
    static const char *marks[] = {"\"deitc.crc32\"", "\"deitc.header_crc32\"", "\"producer\":\"deitc\""};
    for (size_t m = 0; m < sizeof marks / sizeof marks[0]; m++)
        if (memmem(hdr, n, marks[m], strlen(marks[m]))) return 1;
    return 0;
}

int rt_safetensors_verify(const unsigned char *buf, size_t size, const rt_tensor_set *set, const char *what,
                          int required, char *err, size_t errsize) {
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (size < 8 || hlen > size - 8) return rt_errorf(err, errsize, "%s: header length exceeds the file", what);
    char *hdr = malloc((size_t)hlen + 1);
    if (!hdr) abort();
    memcpy(hdr, buf + 8, (size_t)hlen);
    hdr[hlen] = 0;
    char *digits = find_header_crc(hdr, (size_t)hlen);
    int rc = 0;
    if (!digits) {
        if (required || claims_deitc(hdr, (size_t)hlen))
            rc = rt_errorf(err, errsize, "%s: %s", what,
                           required ? "has no checksum (deitc.header_crc32): not a checkpoint written by this deitc, "
                                      "or its metadata is damaged"
                                    : "its metadata is damaged: it says deitc wrote it but has no checksum "
                                      "(deitc.header_crc32)");
        else
            rc = 1;
        free(hdr);
        return rc;
    }
    char want_hex[9];
    memcpy(want_hex, digits, 8);
    want_hex[8] = 0;
    memset(digits, '0', 8);
    char hex[9];
    snprintf(hex, sizeof hex, "%08x", (unsigned)rt_crc32(rt_crc32(0, buf, 8), hdr, (size_t)hlen));
    free(hdr);
    if (strcmp(hex, want_hex) != 0)
        return rt_errorf(err, errsize, "%s: the metadata is damaged (the header's checksum is %s, it says %s): "
                         "refusing to use the file", what, hex, want_hex);
    /* the header is intact, so the tensor checksums in its metadata are what was written */
    rt_strbuf list = {0};
    if (rt_json_get_string(set->metadata, "deitc.crc32", &list) != 1) {
        rt_sb_free(&list);
        return rt_errorf(err, errsize, "%s: the metadata has no tensor checksums (deitc.crc32)", what);
    }
    const char *s = list.s;
    for (int i = 0; i < set->count && !rc; i++) {
        char *end;
        unsigned long want = strtoul(s, &end, 16);
        if (end != s + 8 || (*end != ',' && *end != 0))
            rc = rt_errorf(err, errsize, "%s: the tensor checksums (deitc.crc32) do not list %d tensors", what, set->count);
        else if ((uint32_t)want != rt_crc32(0, set->tensors[i].data, set->tensors[i].nbytes))
            rc = rt_errorf(err, errsize, "%s: tensor '%s' is damaged (its checksum differs from the one written "
                           "with it): refusing to use the file", what, set->tensors[i].name);
        else
            s = *end ? end + 1 : end;
    }
    if (!rc && *s)
        rc = rt_errorf(err, errsize, "%s: the tensor checksums (deitc.crc32) list more than its %d tensors", what,
                       set->count);
    rt_sb_free(&list);
    return rc;
}

int rt_safetensors_parse_checked(const unsigned char *buf, size_t size, const char *what, int required,
                                 rt_tensor_set *out, char *err, size_t errsize) {
    int rc = rt_safetensors_parse(buf, size, what, out, err, errsize);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0 && size >= 8; i--) hlen = hlen << 8 | buf[i];
    size_t head = size < 8 ? 0 : hlen < size - 8 ? (size_t)hlen : size - 8;
    if (rc && (required || claims_deitc((const char *)buf + (size < 8 ? 0 : 8), head))) {
        /* what the parser found, and what it means for a file deitc wrote */
        size_t n = strlen(err);
        if (n + 40 < errsize) snprintf(err + n, errsize - n, " (the header or metadata is damaged)");
    }
    if (!rc) {
        int v = rt_safetensors_verify(buf, size, out, what, required, err, errsize);
        if (v < 0) {
            rt_tensor_set_free(out);
            rc = -1;
        }
    }
    return rc;
}

int rt_safetensors_read_checked(const char *path, int required, rt_tensor_set *out, char *err, size_t errsize) {
    memset(out, 0, sizeof *out);
    unsigned char *buf;
    size_t size;
    if (rt_file_read(path, &buf, &size, err, errsize)) return -1;
    char shown[1024];
    int rc = rt_safetensors_parse_checked(buf, size, rt_path_show(path, shown, sizeof shown), required, out, err,
                                          errsize);
    free(buf);
    return rc;
}
