/* test_pack.c: packed datasets (runtime/pack.c) on tests/data/image_folder/train (12 images of 3
 * classes, JPEG and PNG of mixed sizes):
 *   round trip  raw at an unlimited side: every sample's bytes, size and label equal its file's
 *               decode, each file exactly once; raw at side 36 (= floor(32 / 0.875)): the
 *               eval transform of the pack equals the folder's start-up decode bit for bit;
 *               JPEG q90 at side 36: opens, every sample decodes to its indexed size
 *   bad files   truncated, a sample's byte flipped (named with its offset when read), the index
 *               damaged, another version, an entry pointing outside the samples (with a valid
 *               index checksum): refused naming what and where
 *   atomic      a pack that fails part-way (a corrupt image) leaves neither the file nor a
 *               temporary beside it
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/rt.h"
#include "tests/harness.h"

static char err[2048], tmp[256];

static unsigned char *slurp(const char *path, size_t *n) {
    unsigned char *b;
    if (rt_file_read(path, &b, n, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(b, 1, n, f) != n) || fclose(f)) exit(2);
}

static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void set32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint64_t get64(const unsigned char *p) {
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}
static void set64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static rt_plan make_plan(void) {
    rt_plan p;
    memset(&p, 0, sizeof p);
    p.model_name = "test";
    p.batch = 4;
    p.img_size = 32;
    p.in_chans = 3;
    p.num_classes = 3;
    return p;
}

/* refused by rt_dpk_open (or, with sample >= 0, by decoding that sample) with both strings */
static void expect_refused(const char *path, int64_t sample, const char *a, const char *b) {
    rt_dpk d;
    int rc = rt_dpk_open(path, &d, err, sizeof err);
    if (rc == 0 && sample >= 0) {
        rt_rgb_image img;
        rc = rt_dpk_decode(&d, sample, NULL, &img, err, sizeof err);
        if (rc == 0) free(img.rgb);
    }
    if (rc == 0) rt_dpk_close(&d);
    else if (sample >= 0 && d.map) rt_dpk_close(&d);
    CHECK_MSG(rc == -1 && strstr(err, a) && strstr(err, b), "%s: rc %d, message: %s", path, rc, err);
}

static void test_round_trip(const char *dir) {
    char raw[600], eval36[600], jpg[600];
    snprintf(raw, sizeof raw, "%s/raw.dpk", tmp);
    snprintf(eval36, sizeof eval36, "%s/raw36.dpk", tmp);
    snprintf(jpg, sizeof jpg, "%s/j.dpk", tmp);
    CHECK_MSG(rt_dpk_pack(dir, raw, 16384, 90, 1, 3, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(rt_dpk_pack(dir, eval36, 36, 90, 1, 2, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(rt_dpk_pack(dir, jpg, 36, 90, 0, 2, err, sizeof err) == 0, "%s", err);
    rt_plan p = make_plan();
    rt_image_list list;
    if (rt_image_folder_list(dir, &p, &list, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    rt_dpk d;
    if (rt_dpk_open(raw, &d, err, sizeof err) == 0) {
        CHECK(d.n == (uint64_t)list.n && d.classes == 3 && d.kind == RT_DPK_RAW && !strcmp(d.class_names[1], "dog"));
        int seen[64] = {0}, equal = 1;
        for (uint64_t i = 0; i < d.n; i++) {
            rt_dpk_sample s;
            rt_dpk_entry(&d, (int64_t)i, &s);
            rt_rgb_image a, b;
            CHECK(s.source >= 0 && s.source < list.n);
            if (s.source < 0 || s.source >= list.n) continue;
            seen[s.source]++;
            CHECK(d.labels[i] == list.labels[s.source]);
            if (rt_image_decode(list.paths[s.source], NULL, &a, err, sizeof err) ||
                rt_dpk_decode(&d, (int64_t)i, NULL, &b, err, sizeof err)) {
                CHECK_MSG(0, "%s", err);
                continue;
            }
            equal &= a.w == b.w && a.h == b.h && memcmp(a.rgb, b.rgb, (size_t)a.w * a.h * 3) == 0;
            free(a.rgb);
            free(b.rgb);
        }
        CHECK_MSG(equal, "a raw sample's bytes differ from its file's decode");
        for (int64_t i = 0; i < list.n; i++) CHECK(seen[i] == 1);
        rt_dpk_close(&d);
    } else {
        CHECK_MSG(0, "%s", err);
    }
    /* the eval transform over the side-36 pack is the folder's, bit for bit */
    rt_dataset folder, packed;
    if (rt_dataset_load(dir, &p, &folder, err, sizeof err) == 0) {
        if (rt_dataset_load(eval36, &p, &packed, err, sizeof err) == 0 && rt_dpk_open(eval36, &d, err, sizeof err) == 0) {
            int exact = packed.n == folder.n;
            for (int64_t i = 0; i < packed.n && exact; i++) {
                rt_dpk_sample s;
                rt_dpk_entry(&d, i, &s);
                exact &= memcmp(packed.images_u8 + i * 3 * 32 * 32, folder.images_u8 + s.source * 3 * 32 * 32,
                                3 * 32 * 32) == 0 && packed.labels[i] == folder.labels[s.source];
            }
            CHECK_MSG(exact, "the eval transform of the side-36 raw pack differs from the folder's");
            rt_dpk_close(&d);
            rt_dataset_free(&packed);
        } else {
            CHECK_MSG(0, "%s", err);
        }
        rt_dataset_free(&folder);
    }
    if (rt_dpk_open(jpg, &d, err, sizeof err) == 0) {
        CHECK(d.kind == RT_DPK_JPEG);
        for (uint64_t i = 0; i < d.n; i++) {
            rt_rgb_image img;
            rt_dpk_sample s;
            rt_dpk_entry(&d, (int64_t)i, &s);
            CHECK((s.w < s.h ? s.w : s.h) <= 36);
            CHECK_MSG(rt_dpk_decode(&d, (int64_t)i, NULL, &img, err, sizeof err) == 0, "%s", err);
            free(img.rgb);
        }
        rt_dpk_close(&d);
    } else {
        CHECK_MSG(0, "%s", err);
    }
    rt_image_list_free(&list);
}

static void test_bad(void) {
    char raw[600], bad[600];
    snprintf(raw, sizeof raw, "%s/raw36.dpk", tmp);
    snprintf(bad, sizeof bad, "%s/bad.dpk", tmp);
    size_t n;
    unsigned char *b = slurp(raw, &n);
    spit(bad, b, n - 100); /* truncated */
    expect_refused(bad, -1, "no .dpk trailer", "truncated");
    spit(bad, b, 10);
    expect_refused(bad, -1, "too short", "10 bytes");
    uint64_t ioff = get64(b + n - 32), isize = get64(b + n - 24);
    uint64_t off3 = get64(b + ioff + 3 * 48); /* sample 3's bytes */
    b[off3 + 5] ^= 1;
    spit(bad, b, n);
    char where[64];
    snprintf(where, sizeof where, "sample 3 (offset %llu", (unsigned long long)off3);
    expect_refused(bad, 3, where, "fails its checksum");
    b[off3 + 5] ^= 1;
    b[ioff + 7 * 48 + 17] ^= 4; /* sample 7's label */
    spit(bad, b, n);
    expect_refused(bad, -1, "the index (offset", "fails its checksum");
    b[ioff + 7 * 48 + 17] ^= 4;
    set32(b + 8, 2); /* another version */
    spit(bad, b, n);
    expect_refused(bad, -1, ".dpk version 2", "reads version 1");
    set32(b + 8, 1);
    set64(b + ioff + 5 * 48, n + 4096); /* sample 5 outside the samples, the index checksum made valid */
    set32(b + n - 16, rt_crc32(0, b + ioff, isize));
    spit(bad, b, n);
    expect_refused(bad, -1, "sample 5 (index entry at offset", "outside the samples");
    free(b);
    /* an ImageFolder with a corrupt image: the pack fails and leaves nothing */
    char src[600], out[600];
    snprintf(src, sizeof src, "%s/../bad/cmyk.jpg", test_env("DEITC_TESTDATA"));
    if (test_sh("mkdir -p '%s/f/a' && cp '%s/image_folder/train/cat/a_rgb.jpg' '%s/f/a/1.jpg' && "
                "head -c 200 '%s/image_folder/train/cat/a_rgb.jpg' > '%s/f/a/2.jpg'",
                tmp, test_env("DEITC_TESTDATA"), tmp, test_env("DEITC_TESTDATA"), tmp))
        exit(2);
    snprintf(src, sizeof src, "%s/f", tmp);
    snprintf(out, sizeof out, "%s/f.dpk", tmp);
    CHECK(rt_dpk_pack(src, out, 256, 90, 0, 2, err, sizeof err) == -1 && strstr(err, "f/a/2.jpg"));
    CHECK_MSG(access(out, F_OK) != 0 && test_sh("ls '%s' | grep -q 'f.dpk'", tmp) != 0,
              "a failed pack left a file beside %s", out);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/deitc_pack_XXXXXX");
    if (!mkdtemp(tmp)) return 2;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/image_folder/train", test_env("DEITC_TESTDATA"));
    test_round_trip(dir);
    test_bad();
    test_sh("rm -rf '%s'", tmp);
    return test_result();
}
