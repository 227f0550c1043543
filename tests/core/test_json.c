/* test_json.c: the runtime's small text helpers (issue 15): the JSON writer (json.c) escapes
 * anything into valid JSON (python3's json reads it back to the same text, invalid UTF-8 as
 * U+FFFD) and grows past any fixed size; the metadata reader undoes the escapes; CRC-32 is
 * zlib's; file names and messages are printed with control characters escaped (output.c). */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <string.h>
#include <unistd.h>

int main(void) {
    CHECK(rt_crc32(0, "123456789", 9) == 0xcbf43926u); /* the standard check value */
    CHECK(rt_crc32(rt_crc32(0, "1234", 4), "56789", 5) == 0xcbf43926u);
    char big[4000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 7);
    uint32_t whole = rt_crc32(0, big, sizeof big), parts = rt_crc32(rt_crc32(0, big, 13), big + 13, sizeof big - 13);
    CHECK(whole == parts);

    /* strings that would break a hand-formatted JSON text */
    static char longname[5000];
    memset(longname, 'n', sizeof longname - 1);
    const char *inputs[] = {"plain", "quote \" backslash \\ slash /", "\x01\x02\x1f\x7f tab\t nl\n cr\r",
                            "utf-8 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "bad \xff \xc3 \xed\xa0\x80 end", longname, ""};
    const char *expect[] = {"plain", "quote \" backslash \\ slash /", "\x01\x02\x1f\x7f tab\t nl\n cr\r",
                            "utf-8 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                            "bad \xef\xbf\xbd \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end", longname, ""};
    enum { K = sizeof inputs / sizeof inputs[0] };
    rt_strbuf obj = {0};
    rt_sb_puts(&obj, "{");
    for (int i = 0; i < K; i++) {
        rt_sb_printf(&obj, "%s\"k%d\":", i ? "," : "", i);
        rt_sb_json_string(&obj, inputs[i]);
    }
    rt_sb_puts(&obj, ",\"n\":");
    rt_sb_json_number(&obj, 1.0 / 0.0);
    rt_sb_puts(&obj, "}");
    CHECK(obj.len > sizeof longname);
    for (size_t i = 0; i < obj.len; i++) CHECK((unsigned char)obj.s[i] >= 0x20 && (unsigned char)obj.s[i] != 0x7f);
    for (int i = 0; i < K; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i);
        rt_strbuf v = {0};
        CHECK_MSG(rt_json_get_string(obj.s, key, &v) == 1 && strcmp(v.s, expect[i]) == 0, "%s read back as '%.40s'", key,
                  v.s ? v.s : "(none)");
        rt_sb_free(&v);
    }
    rt_strbuf v = {0};
    CHECK(rt_json_get_string(obj.s, "absent", &v) == 0);
    CHECK(rt_json_get_string("{\"a\":\"x\"", "a", &v) == -1);
    /* an empty value into a buffer that held a longer one reads as "" */
    CHECK(rt_json_get_string("{\"a\":\"long\",\"b\":\"\"}", "a", &v) == 1 &&
          rt_json_get_string("{\"a\":\"long\",\"b\":\"\"}", "b", &v) == 1 && strcmp(v.s, "") == 0);
    CHECK(rt_json_get_string("{\"a\":\"\\u00e9\\u20ac\\\"\"}", "a", &v) == 1 && strcmp(v.s, "\xc3\xa9\xe2\x82\xac\"") == 0);
    rt_sb_free(&v);
    if (access("/usr/bin/python3", X_OK) == 0) { /* the same text through python3's json */
        FILE *p = popen("/usr/bin/python3 -c \"import json,sys; d=json.loads(sys.stdin.buffer.read().decode('utf-8')); "
                        "assert d['n'] is None; sys.stdout.buffer.write(json.dumps([d['k%d' % i] for i in range(7)], "
                        "ensure_ascii=False).encode('utf-8'))\" > /tmp/deitc_test_json.out", "w");
        CHECK(p && fwrite(obj.s, 1, obj.len, p) == obj.len);
        CHECK(p && pclose(p) == 0);
        FILE *f = fopen("/tmp/deitc_test_json.out", "rb");
        static char back[20000];
        size_t n = f ? fread(back, 1, sizeof back - 1, f) : 0;
        back[n] = 0;
        if (f) fclose(f);
        remove("/tmp/deitc_test_json.out");
        /* python writes \u0001-style escapes for control characters: compare through our reader */
        rt_strbuf arr = {0};
        rt_sb_puts(&arr, "{");
        /* turn ["a","b",...] into {"k0":"a",...} */
        CHECK(back[0] == '[');
        const char *s = back + 1;
        for (int i = 0; i < K && *s == '"'; i++) {
            const char *q = s + 1;
            while (*q && *q != '"') q += *q == '\\' ? 2 : 1;
            rt_sb_printf(&arr, "%s\"k%d\":", i ? "," : "", i);
            rt_sb_putn(&arr, s, (size_t)(q + 1 - s));
            s = q + 1;
            if (*s == ',') s++;
            while (*s == ' ') s++;
        }
        rt_sb_puts(&arr, "}");
        for (int i = 0; i < K; i++) {
            char key[8];
            snprintf(key, sizeof key, "k%d", i);
            rt_strbuf w = {0};
            CHECK_MSG(rt_json_get_string(arr.s, key, &w) == 1 && strcmp(w.s, expect[i]) == 0, "python3 read %s as '%.40s'",
                      key, w.s ? w.s : "(none)");
            rt_sb_free(&w);
        }
        rt_sb_free(&arr);
    } else {
        fprintf(stderr, "no /usr/bin/python3: checked by our reader only\n");
    }
    rt_sb_free(&obj);

    /* names in messages */
    char buf[256];
    CHECK(strcmp(rt_path_show("a\nb\x1b[0m\\c", buf, sizeof buf), "a\\nb\\x1b[0m\\\\c") == 0);
    CHECK(strcmp(rt_path_show("plain/dir/f.st", buf, sizeof buf), "plain/dir/f.st") == 0);
    char *args[] = {"x\ny.st"};
    rt_strbuf m = {0};
    rt_message_escape("x\ny.st: cannot open\nsecond line \x07", args, 1, &m);
    CHECK_MSG(strcmp(m.s, "x\\ny.st: cannot open\nsecond line \\x07") == 0, "%s", m.s);
    rt_sb_free(&m);
    return test_result();
}
