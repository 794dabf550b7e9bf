/* sf-train: trains the embedded world's models into a models folder.
 *
 *   sf-train all|clip|convnext|vit|sft|sft-scratch|instruct|filter --out DIR [--threads N] [--force] [--scale X]
 *   sf-train toy-diffusion --out DIR --vocab V --merges M [--latent] [--hook]
 *   sf-train toy-diffusion --out DIR --if --spm SPIECE_MODEL [--stage1-only]
 *
 * Every model is trained deterministically (fixed seeds, fixed step counts,
 * fixed thread count) and cached: DIR/<model>.stamp holds a key of its
 * settings and of what the world renders, and a model whose stamp matches is
 * skipped, so a second run does nothing.  Quality figures go to
 * DIR/<model>.quality.json and, for `all`, together into DIR/quality.json.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/method/classes.h"
#include "common/runtime/clock.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "ml/sf_diffusion.h"
#include "ml/sf_ml.h"
#include "trainer/data.h"
#include "trainer/instruct.h"

static int usage(void) {
    fprintf(stderr, "usage: sf-train all|clip|convnext|vit|sft|sft-scratch|instruct|filter --out DIR [--threads N] [--force] [--scale X]\n"
                    "       sf-train toy-diffusion --out DIR --vocab V --merges M [--latent] [--hook]\n"
                    "       sf-train toy-diffusion --out DIR --if --spm SPIECE_MODEL [--stage1-only]\n");
    return 2;
}

/* A tiny random TorchScript diffusion pipeline (ml/sf_diffusion.h) for tests
 * and dry runs; needs no world.  --if writes DeepFloyd IF's cascade (a T5
 * spiece.model, stage I at 64x64 and, unless --stage1-only, stage II to
 * 256x256) instead of an SD-style one. */
static int toy_diffusion(int argc, char **argv) {
    const char *out = NULL, *vocab = NULL, *merges = NULL, *spm = NULL;
    int latent = 0, hook = 0, is_if = 0, stage1_only = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--merges") && i + 1 < argc) merges = argv[++i];
        else if (!strcmp(argv[i], "--spm") && i + 1 < argc) spm = argv[++i];
        else if (!strcmp(argv[i], "--latent")) latent = 1;
        else if (!strcmp(argv[i], "--hook")) hook = 1;
        else if (!strcmp(argv[i], "--if")) is_if = 1;
        else if (!strcmp(argv[i], "--stage1-only")) stage1_only = 1;
        else return usage();
    }
    /* IF's options and SD's do not mix: a --latent IF would be silently
     * something else. */
    if (!out || (is_if ? !spm || vocab || merges || latent || hook : !vocab || !merges || spm || stage1_only))
        return usage();
    sf_ml_opts_t mo = {.threads = 1, .quiet = 1};
    char err[512];
    if (sf_ml_init(&mo)) {
        fprintf(stderr, "sf-train: %s\n", sf_ml_errstr());
        return 1;
    }
    if (is_if ? sf_diffusion_write_toy_if(out, spm, !stage1_only, 1, err, sizeof err)
              : sf_diffusion_write_toy(out, vocab, merges, latent, hook, 1, err, sizeof err)) {
        fprintf(stderr, "sf-train: toy-diffusion: %s\n", err);
        return 1;
    }
    printf("%s/sf-diffusion.json\n", out);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    const char *what = argv[1];
    if (!strcmp(what, "toy-diffusion")) return toy_diffusion(argc, argv);
    sf_train_ctx_t c = {.out = "models", .threads = 1, .scale = 1.0};
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) c.out = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) c.threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc) c.scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--force")) c.force = 1;
        else return usage();
    }
    if (c.threads < 1 || !(c.scale > 0)) return usage();
    if (sf_mkdir_p(c.out, 0777)) {
        fprintf(stderr, "sf-train: cannot create %s: %s\n", c.out, strerror(errno));
        return 1;
    }
    sf_ml_opts_t mo = {.threads = c.threads};
    if (sf_ml_init(&mo)) {
        fprintf(stderr, "sf-train: %s\n", sf_ml_errstr());
        return 1;
    }
    sf_classlist_t *cl;
    char err[256];
    if (sf_classes_load("builtin:imagenet-a-r-86", &cl, err, sizeof err) ||
        sf_world_create(cl, SF_WORLD_DEFAULT_SIZE, &c.world)) {
        fprintf(stderr, "sf-train: cannot make the world: %s\n", err);
        return 1;
    }
    sf_classes_free(&cl);
    static const char *const names[] = {"clip", "convnext", "vit", "sft", "instruct", "filter"};
    int all = !strcmp(what, "all"), rc = 0, any = 0;
    double t0 = sf_clock_mono_s();
    /* With `all`, CLIP trains in a child process while this one trains the
     * rest: two single-threaded trainers use two cores without the thread
     * pools spinning against each other, and each stays deterministic. */
    pid_t child = -1;
    if (all && c.threads == 1) {
        fflush(NULL);
        child = fork();
        if (child == 0) _exit(sf_train_clip(&c) ? 1 : 0);
        if (child < 0) rc = sf_train_clip(&c);
        any = 1;
    } else if (all || !strcmp(what, "clip")) any = 1, rc = sf_train_clip(&c);
    if (all || !strcmp(what, "convnext")) any = 1, rc = rc ? rc : sf_train_classifier(&c, 0);
    if (all || !strcmp(what, "vit")) any = 1, rc = rc ? rc : sf_train_classifier(&c, 1);
    if (all || !strcmp(what, "sft")) any = 1, rc = rc ? rc : sf_train_sft(&c, 0);
    if (!strcmp(what, "sft-scratch")) any = 1, rc = rc ? rc : sf_train_sft(&c, 1);
    if (all || !strcmp(what, "instruct")) any = 1, rc = rc ? rc : sf_train_instruct(&c);
    if (child > 0) {
        int st = 0;
        if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) rc = rc ? rc : SF_EIO;
    }
    /* The filter's threshold needs the trained CLIP. */
    if (all || !strcmp(what, "filter")) any = 1, rc = rc ? rc : sf_train_filter(&c);
    if (!any) {
        sf_world_destroy(&c.world);
        return usage();
    }
    if (rc == 0 && all) rc = sf_train_quality_join(&c, names, 6);
    sf_world_destroy(&c.world);
    if (rc) {
        fprintf(stderr, "sf-train: failed (%s)\n", sf_strerror(rc));
        return 1;
    }
    if (sf_clock_mono_s() - t0 > 1) fprintf(stderr, "sf-train: done in %.0f s\n", sf_clock_mono_s() - t0);
    return 0;
}
