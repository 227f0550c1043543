/* test_training_cli.c: `deitc dump --after training` and `deitc run --steps` through the
 * command line (DEITC_BIN): the dump shows the backward graph and the optimizer; bad input
 * (a batch without labels, labels out of range, a non-positive lr) gives a message and a
 * non-zero exit, never a crash; --freeze leaves frozen weights untouched. Everything is
 * written under a fresh temporary directory, removed at the end.
 */
#include "runtime/rt.h"
#include "tests/harness.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[256], model[1024];
static const char *deitc, *data;
static const char *sizes = "-D img_size=32 -D patch_size=8 -D num_classes=10 -D embed_dim=64 -D depth=2 -D num_heads=2";

/* Runs `deitc ARGS`, stdout+stderr into tmp/out.txt; returns the exit status (-1: a signal). */
static int run(const char *args, char **output) {
    char cmd[4096], path[512];
    snprintf(path, sizeof path, "%s/out.txt", tmp);
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", deitc, args, path);
    int st = system(cmd);
    FILE *f = fopen(path, "rb");
    size_t cap = 1 << 22, n = 0;
    char *buf = calloc(1, cap + 1);
    if (f) {
        n = fread(buf, 1, cap, f);
        fclose(f);
    }
    buf[n] = 0;
    *output = buf;
    if (WIFSIGNALED(st) || !WIFEXITED(st)) return -1;
    int rc = WEXITSTATUS(st);
    return rc >= 126 ? -1 : rc; /* 126+: the shell reports a crash or no binary */
}

static void expect_error(const char *what, const char *args, const char *needle) {
    char *out;
    int rc = run(args, &out);
    CHECK_MSG(rc > 0, "%s: exit status %d (want a clean non-zero exit)", what, rc);
    CHECK_MSG(strstr(out, needle) != NULL, "%s: no '%s' in the message: %s", what, needle, out);
    CHECK_MSG(!strstr(out, "Sanitizer") && !strstr(out, "runtime error"), "%s: %s", what, out);
    char *nl = strchr(out, '\n');
    if (nl) *nl = 0;
    printf("%-22s exit %d: %s\n", what, rc, out);
    free(out);
}

/* writes batch.safetensors with images of deit_micro and the given labels (NULL: none) */
static void write_batch(const char *name, const int64_t *labels) {
    char err[512], path[512];
    rt_tensor_set in = {0};
    snprintf(path, sizeof path, "%s/deit_micro/batch.safetensors", data);
    CHECK_MSG(rt_safetensors_read(path, &in, err, sizeof err) == 0, "%s", err);
    const rt_tensor *images = rt_tensor_set_find(&in, "images");
    if (!images) return;
    rt_tensor t[2];
    t[0] = *images;
    memset(&t[1], 0, sizeof t[1]);
    t[1].name = (char *)"labels";
    t[1].dtype = RT_I64;
    t[1].ndim = 1;
    t[1].shape[0] = images->shape[0];
    t[1].nbytes = sizeof(int64_t) * (size_t)images->shape[0];
    t[1].data = (void *)labels;
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    CHECK_MSG(rt_safetensors_write(path, t, labels ? 2 : 1, NULL, err, sizeof err) == 0, "%s", err);
    rt_tensor_set_free(&in);
}

int main(void) {
    deitc = test_env("DEITC_BIN");
    data = test_env("DEITC_TESTDATA");
    snprintf(model, sizeof model, "%s/models/deit_tiny.yaml", test_env("DEITC_SOURCE_DIR"));
    snprintf(tmp, sizeof tmp, "/tmp/deitc_training_XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    char args[4096], *out;

    /* the dump after training: backward ops, outputs, optimizer; clipping adds clip_coef */
    snprintf(args, sizeof args, "dump '%s' %s --after training --clip-grad 1.0", model, sizes);
    int rc = run(args, &out);
    CHECK_MSG(rc == 0, "dump exit %d: %.500s", rc, out);
    int adamw = 0, lndx = 0;
    for (const char *p = out; (p = strstr(p, "= adamw(")); p++) adamw++;
    for (const char *p = out; (p = strstr(p, "= layer_norm_dx(")); p++) lndx++;
    CHECK_MSG(adamw > 0 && lndx > 0, "dump has %d adamw and %d layer_norm_dx lines", adamw, lndx);
    CHECK(strstr(out, "-> loss") && strstr(out, "-> grad.blocks.0.attn.qkv.weight"));
    CHECK(strstr(out, "= clip_coef(") && strstr(out, "= attention_bwd(") && strstr(out, "= unpatchify(") == NULL);
    printf("dump --after training: %d adamw, %d layer_norm_dx lines\n", adamw, lndx);
    free(out);

    /* bad input */
    char micro[1024];
    snprintf(micro, sizeof micro, "%s/deit_micro", data);
    write_batch("nolabels.safetensors", NULL);
    int64_t bad[4] = {1, 2, 10, 0}, good[4] = {1, 2, 3, 0};
    write_batch("badlabels.safetensors", bad);
    write_batch("good.safetensors", good);
    snprintf(args, sizeof args, "run '%s' %s --weights '%s/init.safetensors' --input '%s/nolabels.safetensors' --steps 2 -o '%s/o.safetensors'",
             model, sizes, micro, tmp, tmp);
    expect_error("no labels", args, "labels");
    snprintf(args, sizeof args, "run '%s' %s --weights '%s/init.safetensors' --input '%s/badlabels.safetensors' --steps 2 -o '%s/o.safetensors'",
             model, sizes, micro, tmp, tmp);
    expect_error("label out of range", args, "label 10");
    snprintf(args, sizeof args, "run '%s' %s --input '%s/good.safetensors' --steps 2 --lr 0 -o '%s/o.safetensors'",
             model, sizes, tmp, tmp);
    expect_error("lr 0", args, "--lr");
    snprintf(args, sizeof args, "run '%s' %s --input '%s/good.safetensors' --steps 2 --lr -1e-3 -o '%s/o.safetensors'",
             model, sizes, tmp, tmp);
    expect_error("lr negative", args, "--lr");
    snprintf(args, sizeof args, "run '%s' %s --input '%s/good.safetensors' --steps 2 --freeze 'blocks.*' --output nothing -o '%s/o.safetensors'",
             model, sizes, tmp, tmp);
    expect_error("unknown --output", args, "nothing");

    /* --freeze: frozen weights come back unchanged, the others move; losses has K entries */
    snprintf(args, sizeof args, "run '%s' %s --weights '%s/init.safetensors' --input '%s/good.safetensors' --steps 2 --freeze 'blocks.*' --freeze 'pos_embed' -o '%s/o.safetensors' --losses '%s/l.safetensors'",
             model, sizes, micro, tmp, tmp, tmp);
    rc = run(args, &out);
    CHECK_MSG(rc == 0, "freeze run exit %d: %.500s", rc, out);
    free(out);
    char err[512], path[1100];
    rt_tensor_set init = {0}, res = {0};
    snprintf(path, sizeof path, "%s/init.safetensors", micro);
    CHECK(rt_safetensors_read(path, &init, err, sizeof err) == 0);
    snprintf(path, sizeof path, "%s/o.safetensors", tmp);
    if (rc == 0 && rt_safetensors_read(path, &res, err, sizeof err) == 0) {
        int same = 0, moved = 0;
        for (int i = 0; i < init.count; i++) {
            const rt_tensor *a = &init.tensors[i], *b = rt_tensor_set_find(&res, a->name);
            CHECK_MSG(b && b->nbytes == a->nbytes, "no %s in the output", a->name);
            if (!b || b->nbytes != a->nbytes) continue;
            int eq = memcmp(a->data, b->data, a->nbytes) == 0;
            int frozen = strncmp(a->name, "blocks.", 7) == 0 || strcmp(a->name, "pos_embed") == 0;
            CHECK_MSG(eq == frozen, "%s %s", a->name, frozen ? "changed though frozen" : "did not move");
            same += eq, moved += !eq;
        }
        /* the weights file holds the weights alone; the losses are in --losses */
        CHECK(res.count == init.count && !rt_tensor_set_find(&res, "losses"));
        rt_tensor_set ls = {0};
        snprintf(path, sizeof path, "%s/l.safetensors", tmp);
        CHECK(rt_safetensors_read(path, &ls, err, sizeof err) == 0);
        const rt_tensor *l = rt_tensor_set_find(&ls, "losses");
        CHECK(l && rt_tensor_numel(l) == 2 && ls.count == 1);
        rt_tensor_set_free(&ls);
        printf("freeze blocks.* pos_embed: %d weights unchanged, %d updated\n", same, moved);
    } else {
        CHECK_MSG(0, "cannot read %s", path);
    }
    rt_tensor_set_free(&init);
    rt_tensor_set_free(&res);

    static const char *const files[] = {"out.txt", "nolabels.safetensors", "badlabels.safetensors",
                                        "good.safetensors", "o.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        unlink(path);
    }
    rmdir(tmp);
    return test_result();
}
