/* test_outputs.c: what the executable (the tiny plan of tiny_plan.c: argv[1]; the same plan with
 * a long, odd model name: argv[2]) and deitc do with their outputs and command lines when a
 * user, or an attacker, gets them wrong (issue 15):
 *   - an output that is one of the inputs (or another output) is refused before any work;
 *   - an output that is a device or FIFO is written in place (a device stays a device, its
 *     write errors are reported), never replaced by a regular file;
 *   - a diverging run (--lr 1e30) stops with exit 1 and never writes NaN over a checkpoint;
 *   - checkpoints and weights carry checksums: a damaged one is refused, naming the tensor;
 *   - --resume with other options than the checkpoint's run is refused (--resume-override);
 *     a checkpoint at its run's last step is turned into --save output;
 *   - output lost on stdout (> /dev/full) is exit 1; options given twice, numbers that are not
 *     decimal and out-of-range counts are usage errors; file names are printed escaped;
 *   - the JSON the executable writes stays valid (python3's json) whatever the model's name;
 *   - a PATH.tmp.PID left by a killed process is removed by the next write of PATH.
 * Device nodes are made here with mknod (as root) in the test's own folder, never the system's
 * (a regression would replace /dev/null with a regular file); a FIFO covers machines without. */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *exe, *exe_odd, *deitc, *src_dir;
static char dir[256];
static char out_text[65536], err_text[65536];

/* Runs the shell command (in the temp dir, stdout/stderr to out.txt/err.txt unless the
 * command redirects them itself); returns its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return test_sh_capture(dir, args, out_text, sizeof out_text, err_text, sizeof err_text, 2);
}

static char *path_in(const char *name) {
    static char bufs[4][512];
    static int which;
    char *p = bufs[which++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static long file_size(const char *name) {
    struct stat st;
    return stat(path_in(name), &st) == 0 ? (long)st.st_size : -1;
}

static int same_bytes(const char *a, const char *b) { return sh("cmp -s '%s' '%s'", a, b) == 0; }

static void write_dataset(const char *name) {
    enum { N = 8 };
    float im[N * 4];
    int64_t lb[N];
    uint64_t st = 3;
    for (int i = 0; i < N; i++) {
        lb[i] = i % 3;
        for (int f = 0; f < 4; f++) im[i * 4 + f] = (f == lb[i] ? 1.0f : 0) + (float)(rt_uniform01(&st) - 0.5);
    }
    rt_tensor t[2];
    memset(t, 0, sizeof t);
    t[0].name = "images", t[0].dtype = RT_F32, t[0].ndim = 4;
    t[0].shape[0] = N, t[0].shape[1] = 1, t[0].shape[2] = 2, t[0].shape[3] = 2;
    t[0].nbytes = sizeof im, t[0].data = im;
    t[1].name = "labels", t[1].dtype = RT_I64, t[1].ndim = 1, t[1].shape[0] = N;
    t[1].nbytes = sizeof lb, t[1].data = lb;
    char err[512];
    CHECK(rt_safetensors_write(path_in(name), t, 2, NULL, err, sizeof err) == 0);
}

/* a node of this test's own (never the system's): 1 made, 0 when mknod is not allowed here */
static int make_node(const char *name, mode_t kind, int major_, int minor_) {
    unlink(path_in(name));
    return mknod(path_in(name), kind | 0666, makedev(major_, minor_)) == 0;
}

static int is_char_device(const char *path, dev_t rdev) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == rdev;
}

static void flip_byte(const char *from, const char *to, long pos) {
    CHECK(sh("cp '%s' '%s'", from, to) == 0);
    int fd = open(path_in(to), O_RDWR);
    unsigned char c = 0;
    CHECK(fd >= 0 && pread(fd, &c, 1, pos) == 1);
    c ^= 0x10;
    CHECK(pwrite(fd, &c, 1, pos) == 1);
    close(fd);
}

/* ---- outputs that are inputs ------------------------------------------------------------- */

static void test_same_file(void) {
    write_dataset("d.safetensors");
    CHECK(sh("cp d.safetensors d_orig.st && cp d.safetensors init.st") == 0);
    const char *cases[][2] = {
        {"--save d.safetensors", "--save d.safetensors is the same file as --data d.safetensors"},
        {"--checkpoint d.safetensors", "--checkpoint d.safetensors is the same file as --data d.safetensors"},
        {"--metrics d.safetensors", "--metrics d.safetensors is the same file as --data d.safetensors"},
        {"--save ./d.safetensors", "is the same file as --data d.safetensors"},
        {"--save hard.st", "--save hard.st is the same file as --data d.safetensors"},
        {"--save link.st", "--save link.st is the same file as --data d.safetensors"},
        {"--save new.st --checkpoint ./new.st", "refusing to overwrite one output with another"},
        {"--save m.jsonl --metrics m.jsonl", "refusing to overwrite one output with another"},
    };
    CHECK(link(path_in("d.safetensors"), path_in("hard.st")) == 0 && symlink("d.safetensors", path_in("link.st")) == 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = sh("'%s' train --data d.safetensors --steps 2 %s", exe, cases[i][0]);
        CHECK_MSG(rc == 1 && strstr(err_text, cases[i][1]) && !strstr(out_text, "step 1"), "%s: exit %d, said: %s",
                  cases[i][0], rc, err_text);
        CHECK_MSG(same_bytes("d.safetensors", "d_orig.st"), "%s: the data was changed", cases[i][0]);
        CHECK(sh("rm -f d.safetensors && cp d_orig.st d.safetensors && rm -f hard.st && ln d.safetensors hard.st") == 0);
    }
    CHECK(file_size("new.st") < 0 && file_size("m.jsonl") < 0);
    CHECK(sh("'%s' train --data d.safetensors --init init.st --steps 2 --save init.st", exe) == 1 &&
          strstr(err_text, "--save init.st is the same file as --init init.st"));
    CHECK(sh("cp '%s' exe_copy && ./exe_copy train --data d.safetensors --steps 1 --save exe_copy", exe) == 1 &&
          strstr(err_text, "the executable"));
    /* --resume C --checkpoint C continues C: allowed */
    CHECK(sh("'%s' train --data d.safetensors --steps 4 --checkpoint c.st --checkpoint-every 1 --save full.st && "
             "'%s' train --data d.safetensors --steps 4 --checkpoint c2.st --checkpoint-every 2 && "
             "cp c2.st c2_orig.st && '%s' train --data d.safetensors --steps 4 --resume c2.st --checkpoint c2.st",
             exe, exe, exe) == 1); /* c2.st is at the last step: nothing left without --save */
    CHECK(strstr(err_text, "nothing left to train"));
    /* deitc: the model, --weights, --input are inputs of run; the model of compile and export */
    CHECK(sh("cp '%s/tests/frontend/micro.yaml' m.yaml && cp m.yaml m_orig.yaml", src_dir) == 0);
    CHECK(sh("'%s' compile m.yaml --target emu -o m.yaml", deitc) == 1 && strstr(err_text, "the same file as the model"));
    CHECK(same_bytes("m.yaml", "m_orig.yaml"));
    CHECK(sh("cp m_orig.yaml m.yaml") == 0); /* whatever happened, the next cases need it */
    CHECK(sh("'%s' run m.yaml --input d.safetensors -o d.safetensors", deitc) == 1 && strstr(err_text, "-o d.safetensors is the same file as --input d.safetensors"));
    CHECK(sh("'%s' run m.yaml --input d.safetensors --weights init.st -o init.st", deitc) == 1 &&
          strstr(err_text, "the same file as --weights init.st"));
    CHECK(same_bytes("d.safetensors", "d_orig.st"));
    CHECK(sh("cp d_orig.st d.safetensors && cp d_orig.st init.st") == 0);
    CHECK(sh("cp '%s/tests/data/deit_micro/deit_opset17.onnx' m.onnx && cp m.onnx m_orig.onnx && "
             "'%s' export m.onnx --weights init.st -o m.onnx", src_dir, deitc) == 1 &&
          strstr(err_text, "the same file as the model"));
    CHECK(same_bytes("m.onnx", "m_orig.onnx"));
    /* compile -o EXISTING_DIR: before the compile, so at once and with nothing written */
    CHECK(mkdir(path_in("outdir"), 0755) == 0);
    CHECK(sh("'%s' compile m.yaml --target emu -o outdir", deitc) == 1 && strstr(err_text, "outdir: is a directory"));
}

/* ---- devices and FIFOs -------------------------------------------------------------------------- */

static void test_devices(void) {
    /* never the system's /dev/null: a regression would replace it with a regular file */
    if (make_node("null", S_IFCHR, 1, 3) && make_node("full", S_IFCHR, 1, 7) &&
        sh("echo x > null") == 0) { /* nodes work in this folder (not a nodev mount) */
        CHECK(sh("'%s' train --data d.safetensors --steps 2 --save null --checkpoint null --metrics null", exe) == 0 &&
              strstr(out_text, "saved 2 weight tensors to null"));
        CHECK(is_char_device(path_in("null"), makedev(1, 3)));
        CHECK(sh("ls | grep -q 'null\\.'") == 1); /* no null.tmp.PID or null.probe.PID left */
        int rc = sh("'%s' train --data d.safetensors --steps 2 --save full", exe);
        CHECK_MSG(rc == 1 && strstr(err_text, "full: write failed: No space left on device"), "exit %d: %s", rc, err_text);
        CHECK(is_char_device(path_in("full"), makedev(1, 7)));
        CHECK(sh("'%s' compile m.yaml --target emu -o full", deitc) == 1 && strstr(err_text, "not a regular file"));
        CHECK(is_char_device(path_in("full"), makedev(1, 7)));
        CHECK(sh("'%s' run m.yaml --input '%s/tests/data/deit_micro/batch.safetensors' -o full", deitc, src_dir) == 1 &&
              strstr(err_text, "full: write failed: No space left on device"));
        CHECK(is_char_device(path_in("full"), makedev(1, 7)));
    } else {
        fprintf(stderr, "mknod not allowed or nodes unusable in %s: the own-node cases skipped\n", dir);
    }
    /* a FIFO is written in place, to the reader at its other end */
    unlink(path_in("fifo"));
    CHECK(mkfifo(path_in("fifo"), 0644) == 0);
    CHECK(sh("timeout 20 cat fifo > from_fifo.st & '%s' train --data d.safetensors --steps 2 --save fifo --checkpoint ck.st; wait", exe) == 0);
    struct stat st;
    CHECK(stat(path_in("fifo"), &st) == 0 && S_ISFIFO(st.st_mode));
    rt_tensor_set set;
    char err[1024];
    CHECK_MSG(rt_safetensors_read_checked(path_in("from_fifo.st"), 0, &set, err, sizeof err) == 0 &&
                  rt_tensor_set_find(&set, "head.weight"),
              "%s", err);
    rt_tensor_set_free(&set);
    /* stdout lost: an error */
    const char *cmds[] = {"info", "train --data d.safetensors --steps 2", "eval --data d.safetensors", "bench --steps 2 --warmup 0",
                          "--help"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int rc = sh("'%s' %s > /dev/full", exe, cmds[i]);
        CHECK_MSG(rc == 1 && strstr(err_text, "writing the standard output failed: No space left on device"),
                  "%s > /dev/full: exit %d: %s", cmds[i], rc, err_text);
    }
    const char *dcmds[] = {"dump m.yaml", "inspect m.yaml", "--help"};
    for (size_t i = 0; i < sizeof dcmds / sizeof dcmds[0]; i++) {
        int rc = sh("'%s' %s > /dev/full", deitc, dcmds[i]);
        CHECK_MSG(rc == 1 && strstr(err_text, "writing the standard output failed"), "deitc %s > /dev/full: exit %d: %s",
                  dcmds[i], rc, err_text);
    }
}

/* ---- divergence ------------------------------------------------------------------------------ */

static void test_divergence(void) {
    /* a good checkpoint first; then a run at lr 1e30 that diverges must leave it and write no --save */
    CHECK(sh("'%s' train --data d.safetensors --steps 4 --lr 1e30 --checkpoint div.st --checkpoint-every 1 --save w_div.st",
             exe) == 1);
    CHECK_MSG(strstr(err_text, "NaN or infinity") || strstr(err_text, "training diverged"), "%s", err_text);
    CHECK(file_size("w_div.st") < 0);
    rt_tensor_set set;
    char err[1024];
    CHECK_MSG(rt_safetensors_read_checked(path_in("div.st"), 1, &set, err, sizeof err) == 0, "%s", err);
    const rt_tensor *w = rt_tensor_set_find(&set, "head.weight"), *step = rt_tensor_set_find(&set, "checkpoint.step");
    CHECK(w && step && *(const int64_t *)step->data == 1);
    for (int i = 0; w && i < 12; i++) CHECK(isfinite(((const float *)w->data)[i]));
    rt_tensor_set_free(&set);
    /* a non-finite loss stops at once: no step after it, exit 1 */
    CHECK(sh("'%s' train --data d.safetensors --steps 6 --lr 1e30", exe) == 1);
    CHECK_MSG(strstr(err_text, "training diverged") && !strstr(out_text, "trained"), "%s", err_text);
    /* deitc run --steps: the same, and no output file */
    CHECK(sh("'%s' run '%s/tests/frontend/micro.yaml' --input '%s/tests/data/deit_micro/batch.safetensors' --steps 4 "
             "--lr 1e30 -o run_div.st",
             deitc, src_dir, src_dir) == 1);
    CHECK_MSG(strstr(err_text, "training diverged") || strstr(err_text, "NaN or infinity"), "%s", err_text);
    CHECK(file_size("run_div.st") < 0);
}

/* ---- checksums, --resume's options, the last step ----------------------------------------------- */

static void test_checkpoints(void) {
    /* c.st: the 4-step run's checkpoint at step 4 (test_same_file); resume a step-2 one */
    CHECK(sh("'%s' train --data d.safetensors --steps 4 --checkpoint c2.st --checkpoint-every 2 && cp c2.st at4.st", exe) == 0);
    CHECK(sh("'%s' train --data d.safetensors --steps 4 --lr 0.01 --seed 3 --checkpoint h.st --checkpoint-every 2 --save h_full.st "
             "&& cp h.st h4.st", exe) == 0);
    /* a checkpoint at the run's last step becomes --save output: the same bytes as the run's */
    CHECK(sh("'%s' train --data d.safetensors --steps 4 --lr 0.01 --seed 3 --resume h4.st --save h_again.st", exe) == 0 &&
          strstr(out_text, "nothing left to train; writing its weights"));
    CHECK(same_bytes("h_full.st", "h_again.st"));
    /* other options than the checkpoint's run: refused, named; --resume-override continues */
    const char *diffs[][2] = {
        {"--lr 0.01 --steps 4 --seed 4", "seed 4 (the checkpoint's run: 3)"},
        {"--lr 0.02 --steps 4 --seed 3", "lr 0.02 (the checkpoint's run: 0.01)"},
        {"--lr 0.01 --steps 6 --seed 3", "steps 6 (the checkpoint's run: 4)"},
        {"--lr 0.01 --steps 4 --seed 3 --schedule cosine", "schedule cosine (the checkpoint's run: constant)"},
        {"--lr 0.01 --steps 4 --seed 3 --weight-decay 0.1", "weight_decay 0.1 (the checkpoint's run: 0.05)"},
        {"--lr 0.01 --steps 4 --seed 3 --warmup-steps 1", "warmup_steps 1 (the checkpoint's run: 0)"},
        {"--lr 0.01 --steps 4 --seed 3 --no-shuffle", "shuffle no (the checkpoint's run: yes)"},
        {"--lr 0.01 --epochs 1 --seed 3", "steps 2 (the checkpoint's run: 4)"},
    };
    for (size_t i = 0; i < sizeof diffs / sizeof diffs[0]; i++) {
        int rc = sh("cp h.st r.st && '%s' train --data d.safetensors %s --resume r.st", exe, diffs[i][0]);
        CHECK_MSG(rc == 1 && strstr(err_text, diffs[i][1]) && strstr(err_text, "--resume-override"), "%s: exit %d: %s",
                  diffs[i][0], rc, err_text);
    }
    CHECK(sh("cp h.st r.st; '%s' train --data d.safetensors --lr 0.01 --steps 4 --seed 4 --resume r.st --resume-override", exe) == 1 &&
          strstr(err_text, "nothing left")); /* at step 4 of 4: accepted, then nothing to do */
    CHECK(strstr(err_text, "note: --resume-override"));
    /* a damaged checkpoint: refused, naming the tensor (or the metadata) */
    unsigned char *buf;
    size_t size;
    char err[1024];
    CHECK(rt_file_read(path_in("at4.st"), &buf, &size, err, sizeof err) == 0);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    rt_tensor_set set;
    CHECK(rt_safetensors_parse(buf, size, "at4.st", &set, err, sizeof err) == 0);
    long body = 8 + (long)hlen, pos[] = {3, 40, body - 20, body + 1, (long)size - 1};
    for (size_t k = 0; k < sizeof pos / sizeof pos[0]; k++) {
        flip_byte("at4.st", "bad.st", pos[k]);
        int rc = sh("'%s' train --data d.safetensors --steps 4 --resume bad.st --save never.st", exe);
        const char *want = pos[k] < body ? "metadata" : pos[k] == body + 1 ? "tensor 'head.weight' is damaged"
                                                                           : "is damaged";
        CHECK_MSG(rc == 1 && strstr(err_text, want) && file_size("never.st") < 0, "byte %ld: exit %d: %s", pos[k], rc,
                  err_text);
        rc = sh("'%s' eval --data d.safetensors --init bad.st", exe);
        CHECK_MSG(rc == 1 && (strstr(err_text, "damaged") || strstr(err_text, "header")), "--init, byte %ld: exit %d: %s",
                  pos[k], rc, err_text);
    }
    rt_tensor_set_free(&set);
    free(buf);
    /* a checkpoint of the last step (tensor checkpoint.step: the last 8 bytes) changed by one */
    flip_byte("at4.st", "bad.st", (long)size - 8);
    CHECK(sh("'%s' train --data d.safetensors --steps 4 --resume bad.st", exe) == 1 &&
          strstr(err_text, "tensor 'checkpoint.step' is damaged"));
}

/* ---- command lines --------------------------------------------------------------------------- */

static void test_command_lines(void) {
    const char *usage_errors[][2] = {
        {"train --data d.safetensors --steps 2 --steps 3", "--steps is given twice"},
        {"train --data d.safetensors --data d.safetensors", "--data is given twice"},
        {"train --data d.safetensors -v --verbose", "given twice"},
        {"train --data d.safetensors --no-shuffle --no-shuffle", "--no-shuffle is given twice"},
        {"eval --data d.safetensors --seed 1 --seed 1", "--seed is given twice"},
        {"bench --warmup 1 --warmup 2", "--warmup is given twice"},
        {"train --data d.safetensors --steps 0x10", "decimal"},
        {"train --data d.safetensors --steps ' 5'", "decimal"},
        {"train --data d.safetensors --steps +5", "decimal"},
        {"train --data d.safetensors --lr 0x1p-3", "decimal"},
        {"train --data d.safetensors --lr inf", "decimal"},
        {"train --data d.safetensors --lr nan", "decimal"},
        {"bench --warmup 9223372036854775807", "--warmup expects a decimal integer from 0 to"},
        {"bench --steps 9223372036854775807", "--steps expects a decimal integer from 1 to"},
        {"train --data d.safetensors --steps 1 --resume-override", "--resume-override needs --resume"},
    };
    for (size_t i = 0; i < sizeof usage_errors / sizeof usage_errors[0]; i++) {
        int rc = sh("'%s' %s", exe, usage_errors[i][0]);
        CHECK_MSG(rc == 2 && strstr(err_text, usage_errors[i][1]), "%s: exit %d: %s", usage_errors[i][0], rc, err_text);
    }
    CHECK(sh("'%s' bench --steps 2000000", exe) == 1 && strstr(err_text, "at most 1000000"));
    CHECK(sh("'%s' train --data d.safetensors --steps 2 --lr 1e-2 --weight-decay 5e-2", exe) == 0); /* decimal exponents are fine */
    const char *deitc_errors[][2] = {
        {"inspect m.yaml --batch 0x10", "--batch expects a decimal number, got '0x10'"},
        {"inspect m.yaml --batch 1.5", "positive decimal integer"},
        {"inspect m.yaml --batch 16 --batch 16", "--batch is given twice"},
        {"inspect m.yaml -D depth=1 -D depth=2", "-D depth is given twice"},
        {"run m.yaml --input d.safetensors -o a.st -o b.st", "-o is given twice"},
        {"run m.yaml --input d.safetensors -o a.st --lr 0x10", "decimal number"},
        {"run m.yaml --input d.safetensors -o a.st --steps 1e0x", "decimal number"},
    };
    for (size_t i = 0; i < sizeof deitc_errors / sizeof deitc_errors[0]; i++) {
        int rc = sh("'%s' %s", deitc, deitc_errors[i][0]);
        CHECK_MSG(rc == 2 && strstr(err_text, deitc_errors[i][1]), "deitc %s: exit %d: %s", deitc_errors[i][0], rc,
                  err_text);
    }
    /* what may repeat: -D of different names, --freeze */
    CHECK(sh("'%s' dump m.yaml --after training -D depth=1 -D num_heads=2 --freeze 'blocks.*' --freeze 'head.*' "
             "> /dev/null", deitc) == 0);
    /* file names with control characters are printed escaped */
    int rc = sh("'%s' train --data \"$(printf 'no\\033[31mpe\\nx.st')\" --steps 1", exe);
    CHECK_MSG(rc == 1 && strstr(err_text, "no\\x1b[31mpe\\nx.st") && !strchr(err_text, 033), "exit %d: %s", rc, err_text);
    rc = sh("'%s' inspect \"$(printf 'm\\001\\n.yaml')\"", deitc);
    CHECK_MSG(rc == 1 && strstr(err_text, "m\\x01\\n.yaml") && !strchr(err_text, 1), "exit %d: %s", rc, err_text);
}

/* ---- valid JSON whatever the model's name; abandoned temporaries ------------------------------------ */

static void test_json_and_stale(void) {
    CHECK(sh("'%s' train --data d.safetensors --steps 2 --save odd.st --checkpoint oddc.st && '%s' bench --steps 2 --warmup 0 | "
             "tail -1 > bench.json",
             exe_odd, exe_odd) == 0);
    if (access("/usr/bin/python3", X_OK) == 0) {
        int rc = sh("/usr/bin/python3 -c \"\nimport json, struct, sys\nfor f in ['odd.st', 'oddc.st']:\n"
                    "    b = open(f, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]\n"
                    "    m = json.loads(b[8:8 + n].decode('utf-8'))['__metadata__']\n"
                    "    name = m['model']; assert len(name) > 1000, len(name)\n"
                    "    assert name.startswith('tiny \\\"odd\\\" \\\\\\\\ \\\\x01\\\\x1f\\\\t\\\\n\\\\x7f \\\\u00e9 \\\\ufffd'), repr(name[:40])\n"
                    "    assert name.endswith('xend'), repr(name[-10:])\n"
                    "j = json.loads(open('bench.json', encoding='utf-8').read()); assert j['bench'].endswith('end')\n"
                    "print('json ok')\n\"");
        CHECK_MSG(rc == 0 && strstr(out_text, "json ok"), "python3: %s%s", out_text, err_text);
    } else {
        fprintf(stderr, "no /usr/bin/python3: the JSON is checked by the reader only\n");
    }
    rt_tensor_set set;
    char err[1024];
    CHECK_MSG(rt_safetensors_read_checked(path_in("oddc.st"), 1, &set, err, sizeof err) == 0, "%s", err);
    rt_strbuf name = {0};
    CHECK(rt_json_get_string(set.metadata, "model", &name) == 1 && name.len > 1000 && strstr(name.s, "xend"));
    rt_sb_free(&name);
    rt_tensor_set_free(&set);
    /* PATH.tmp.PID of a process that is gone is removed by the next write of PATH; a live one's stays */
    pid_t gone = fork();
    if (gone == 0) _exit(0);
    waitpid(gone, NULL, 0);
    char stale[64], live[64];
    snprintf(stale, sizeof stale, "w.st.tmp.%d", (int)gone);
    snprintf(live, sizeof live, "w.st.tmp.%d", (int)getpid());
    CHECK(sh("echo half > %s && echo half > %s && echo half > w.st.probe.%d", stale, live, (int)gone) == 0);
    CHECK(sh("'%s' train --data d.safetensors --steps 1 --save w.st", exe) == 0);
    CHECK(file_size(stale) < 0 && file_size(live) > 0 && file_size("w.st") > 0);
    unlink(path_in(live));
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_outputs TINY_EXE TINY_ODD_NAME_EXE\n");
        return 2;
    }
    static char a[4096], b[4096];
    if (!realpath(argv[1], a) || !realpath(argv[2], b)) return 2;
    exe = a, exe_odd = b;
    deitc = test_env("DEITC_BIN");
    src_dir = test_env("DEITC_SOURCE_DIR");
    setenv("ASAN_OPTIONS", "exitcode=86", 0);
    setenv("UBSAN_OPTIONS", "halt_on_error=1:exitcode=87", 0);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/deitc_out_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return 1;
    test_same_file();
    test_devices();
    test_divergence();
    test_checkpoints();
    test_command_lines();
    test_json_and_stale();
    if (!test_failures) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    } else {
        fprintf(stderr, "left %s for inspection\n", dir);
    }
    return test_result();
}
