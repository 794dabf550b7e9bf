/* sf-train: trains the embedded world's models into a models folder.
 *
 *   sf-train all|clip|convnext|vit|sft --out DIR [--threads N] [--force] [--scale X]
 *   sf-train toy-diffusion --out DIR --vocab V --merges M [--latent] [--hook]
 *
 * Every model is trained deterministically (fixed seeds, fixed step counts,
 * fixed thread count) and cached: DIR/<model>.stamp holds a key of its
 * settings and of what the world renders, and a model whose stamp matches is
 * skipped, so a second run does nothing.  Quality figures go to
 * DIR/<model>.quality.json and, for `all`, together into DIR/quality.json.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <time.h>

#include "common/method/classes.h"
#include "common/runtime/clock.h"
#include "common/runtime/error.h"
#include "common/runtime/hash.h"
#include "ml/sf_diffusion.h"
#include "ml/sf_ml.h"
#include "trainer/data.h"


void sf_train_input(const uint8_t *rgb, int s, int S, const float mean[3], const float std[3], int flip,
                    float *out) {
    sf_world_to_input(rgb, s, S, mean, std, flip, out);
}

uint64_t sf_train_world_fingerprint(const sf_world_t *w) {
    size_t nb = sf_world_image_bytes(w);
    uint8_t *rgb = malloc(nb);
    char cap[512];
    uint64_t h = SF_HASH_BASIS;
    for (int i = 0; rgb && i < 16; i++) {
        int label;
        if (sf_world_base_sample(w, i % sf_world_n_classes(w), (uint64_t)i, rgb, NULL) == 0)
            h = sf_fnv1a(h, rgb, nb);
        for (int set = 0; set < SF_WORLD_N_SETS; set++)
            if (sf_world_testset_get(w, set, (uint64_t)i * 7, rgb, &label, NULL) == 0)
                h = sf_fnv1a(h, rgb, nb);
        if (sf_world_clip_pair(w, (uint64_t)i, rgb, cap, sizeof cap, NULL) == 0) {
            h = sf_fnv1a(h, rgb, nb);
            h = sf_fnv1a(h, cap, strlen(cap));
        }
        if (sf_world_corpus_caption(w, i % sf_world_n_classes(w), i % 16, 1, cap, sizeof cap) >= 0)
            h = sf_fnv1a(h, cap, strlen(cap));
    }
    free(rgb);
    return h;
}

static void path_of(const sf_train_ctx_t *c, const char *name, const char *ext, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s%s", c->out, name, ext);
}

int sf_train_stamp_ok(const sf_train_ctx_t *c, const char *name, uint64_t key) {
    char p[1024], want[32], got[64] = "";
    path_of(c, name, ".stamp", p, sizeof p);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    if (!fgets(got, sizeof got, f)) got[0] = 0;
    fclose(f);
    snprintf(want, sizeof want, "%016" PRIx64 "\n", key);
    return strcmp(got, want) == 0;
}

int sf_train_stamp_write(const sf_train_ctx_t *c, const char *name, uint64_t key) {
    char p[1024];
    path_of(c, name, ".stamp", p, sizeof p);
    FILE *f = fopen(p, "w");
    if (!f) return SF_EIO;
    fprintf(f, "%016" PRIx64 "\n", key);
    return fclose(f) ? SF_EIO : 0;
}

int sf_train_quality_write(const sf_train_ctx_t *c, const char *name, const char *json) {
    char p[1024];
    path_of(c, name, ".quality.json", p, sizeof p);
    FILE *f = fopen(p, "w");
    if (!f) return SF_EIO;
    fprintf(f, "%s\n", json);
    return fclose(f) ? SF_EIO : 0;
}

void sf_train_progress(const char *name, int step, int steps, double t0, const char *extra) {
    double el = sf_clock_mono_s() - t0;
    double eta = step > 0 ? el * (steps - step) / step : 0;
    fprintf(stderr, "%s: step %d/%d  %s  %.0f s, eta %.0f s\n", name, step, steps, extra ? extra : "", el, eta);
}

/* Joins the per-model quality files into out/quality.json. */
static int quality_join(const sf_train_ctx_t *c, const char *const *names, int n) {
    char p[1024];
    path_of(c, "quality", ".json", p, sizeof p);
    FILE *o = fopen(p, "w");
    if (!o) return SF_EIO;
    fprintf(o, "{");
    int first = 1;
    for (int i = 0; i < n; i++) {
        char q[1024], buf[8192];
        path_of(c, names[i], ".quality.json", q, sizeof q);
        FILE *f = fopen(q, "r");
        if (!f) continue;
        size_t r = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[r] = 0;
        while (r && (buf[r - 1] == '\n' || buf[r - 1] == ' ')) buf[--r] = 0;
        fprintf(o, "%s\n  \"%s\": %s", first ? "" : ",", names[i], buf);
        first = 0;
    }
    fprintf(o, "\n}\n");
    return fclose(o) ? SF_EIO : 0;
}

static int usage(void) {
    fprintf(stderr, "usage: sf-train all|clip|convnext|vit|sft --out DIR [--threads N] [--force] [--scale X]\n"
                    "       sf-train toy-diffusion --out DIR --vocab V --merges M [--latent] [--hook]\n");
    return 2;
}

/* A tiny random TorchScript diffusion pipeline (ml/sf_diffusion.h) for tests
 * and dry runs; needs no world. */
static int toy_diffusion(int argc, char **argv) {
    const char *out = NULL, *vocab = NULL, *merges = NULL;
    int latent = 0, hook = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--merges") && i + 1 < argc) merges = argv[++i];
        else if (!strcmp(argv[i], "--latent")) latent = 1;
        else if (!strcmp(argv[i], "--hook")) hook = 1;
        else return usage();
    }
    if (!out || !vocab || !merges) return usage();
    sf_ml_opts_t mo = {.threads = 1, .quiet = 1};
    char err[512];
    if (sf_ml_init(&mo)) {
        fprintf(stderr, "sf-train: %s\n", sf_ml_errstr());
        return 1;
    }
    if (sf_diffusion_write_toy(out, vocab, merges, latent, hook, 1, err, sizeof err)) {
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
    if (mkdir(c.out, 0777) && errno != EEXIST) {
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
    static const char *const names[] = {"clip", "convnext", "vit", "sft"};
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
    if (all || !strcmp(what, "sft")) any = 1, rc = rc ? rc : sf_train_sft(&c);
    if (child > 0) {
        int st = 0;
        if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) rc = rc ? rc : SF_EIO;
    }
    if (!any) {
        sf_world_destroy(&c.world);
        return usage();
    }
    if (rc == 0 && all) rc = quality_join(&c, names, 4);
    sf_world_destroy(&c.world);
    if (rc) {
        fprintf(stderr, "sf-train: failed (%s)\n", sf_strerror(rc));
        return 1;
    }
    if (sf_clock_mono_s() - t0 > 1) fprintf(stderr, "sf-train: done in %.0f s\n", sf_clock_mono_s() - t0);
    return 0;
}
