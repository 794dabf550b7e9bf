/* bench_ml_classifier.c: the classifiers of Table 2 and Fig. 6 —
 * ConvNeXt-Atto and ViT-Tiny shapes (1000 classes, 224x224) — on one device:
 * how fast they classify, how fast they fine-tune, and what timm's
 * evaluation transform costs per image.
 *
 *   build/bench/bench_ml_classifier [--device cpu|cuda|cuda:N] [--dtype fp32|bf16|fp16|all]
 *                                   [--small] [--only convnext|vit] [--threads N] [--reps N]
 *                                   [--batch 32] [--train-batch 16]
 *
 * Random weights (sf_classifier_new), so only speed means anything.  One
 * table, a row per model and measurement:
 *   - classify: sf_classifier_forward on `batch` images (logits and argmax
 *     copied back), after one warm-up batch; best of reps;
 *   - fine-tune: sf_classifier_train_step (AdamW) on `train-batch` images,
 *     after one warm-up step (which also makes the optimiser); best of reps;
 *     steps/s and images/s;
 *   - preprocess: sf_classifier_preprocess of one 8-bit RGB image (a
 *     500x375 ImageNet-sized photo and a 256x256 generated one; the small
 *     configurations use 48x40 and 40x40) to the model's input: microseconds
 *     per image on this CPU thread, whatever the device (it runs on the host).
 * Pixels are uploaded from host memory on every call, as the worker's are,
 * and every result comes back to host memory, so wall-clock times are the
 * device's.
 *
 * The classifier API holds weights in fp32 only (sf_vision.h has no
 * set_dtype for it): --dtype bf16 or fp16 prints a row saying so, so that
 * tools/gpu_check.sh's DTYPE conventions apply unchanged.  --small (or
 * SMALL=1 in the environment) uses tiny configurations at 32x32 with 10
 * classes: seconds on a CPU, what tools/gpu_check.sh runs with DEVICE=cpu
 * SMALL=1 to check itself.  With no arguments (make bench) the real shapes
 * run on the CPU with one thread, or $SF_THREADS: more threads than free
 * cores cost several times over on a shared machine.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ml/sf_ml.h"
#include "ml/sf_vision.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
    const char *device;
    const char *dtypes[3];
    int n_dtypes;
    int small, reps, threads;
    int batch, train_batch;
} opts_t;

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

static void header(void) {
    printf("%-14s %9s %-5s %-7s %-26s %5s %10s %10s %9s\n", "model", "params", "dtype", "device", "measurement",
           "batch", "per batch", "images/s", "steps/s");
}

/* One row; steps_s < 0 leaves its column empty. */
static void row(const char *name, int64_t params, const char *dtype, const char *device, const char *what,
                int batch, double secs, double steps_s) {
    char steps[32] = "-";
    if (steps_s >= 0) snprintf(steps, sizeof steps, "%.2f", steps_s);
    printf("%-14s %8.2fM %-5s %-7s %-26s %5d %8.3f s %10.1f %9s\n", name, params / 1e6, dtype, device, what,
           batch, secs, batch / secs, steps);
    fflush(stdout);
}

static void config_small(sf_cls_arch_t arch, sf_classifier_config_t *c) {
    if (arch == SF_CLS_CONVNEXT) {
        sf_classifier_config_convnext_atto(c, 10);
        c->n_stages = 3;
        const int depths[4] = {1, 1, 1, 0}, dims[4] = {16, 32, 64, 0};
        memcpy(c->depths, depths, sizeof depths);
        memcpy(c->dims, dims, sizeof dims);
    } else {
        sf_classifier_config_vit_tiny(c, 10);
        c->patch_size = 8;
        c->width = 64;
        c->depth = 2;
        c->heads = 2;
    }
    c->image_size = 32;
}

/* Microseconds per image of timm's evaluation transform of a w x h photo. */
static int bench_preprocess(const char *name, const sf_classifier_config_t *c, int w, int h) {
    const int S = c->image_size;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    float *out = malloc(sizeof(float) * 3 * S * S);
    uint32_t seed = 4242;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) rgb[i] = (uint8_t)(lcg(&seed) >> 24);
    int rc = sf_classifier_preprocess(c, rgb, w, h, out);   /* warm-up */
    double best = 1e30;
    /* Enough images per repetition that the clock's resolution does not matter. */
    const int n = (w * h > 100000) ? 20 : 200;
    for (int r = 0; r < 3 && rc == 0; r++) {
        double a = now();
        for (int i = 0; i < n && rc == 0; i++) rc = sf_classifier_preprocess(c, rgb, w, h, out);
        double t = (now() - a) / n;
        if (t < best) best = t;
    }
    if (rc == 0) {
        char what[64];
        snprintf(what, sizeof what, "preprocess %dx%d->%d", w, h, S);
        printf("%-14s %9s %-5s %-7s %-26s %5d %7.0f us %10.1f %9s\n", name, "", "u8", "host", what, 1, best * 1e6,
               1 / best, "-");
    } else {
        fprintf(stderr, "%s preprocess %dx%d: error %d\n", name, w, h, rc);
    }
    free(rgb);
    free(out);
    return rc != 0;
}

static int bench_model(const opts_t *o, sf_cls_arch_t arch) {
    sf_classifier_config_t c;
    const char *name;
    if (o->small) {
        config_small(arch, &c);
        name = arch == SF_CLS_CONVNEXT ? "convnext-small" : "vit-small";
    } else if (arch == SF_CLS_CONVNEXT) {
        sf_classifier_config_convnext_atto(&c, 1000);
        name = "convnext-atto";
    } else {
        sf_classifier_config_vit_tiny(&c, 1000);
        name = "vit-tiny";
    }
    char err[512];
    sf_classifier_t *m;
    if (sf_classifier_new(&c, o->device, 1, &m, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 1;
    }
    const int64_t params = sf_classifier_num_params(m);
    const int S = c.image_size, K = c.n_classes;
    const int B = o->batch, BT = o->train_batch, BX = B > BT ? B : BT;
    float *px = malloc(sizeof(float) * (size_t)BX * 3 * S * S);
    float *logits = malloc(sizeof(float) * (size_t)B * K);
    int *pred = malloc(sizeof(int) * B), *labels = malloc(sizeof(int) * BT);
    uint32_t seed = 777;
    /* Roughly what normalised images span: (u - mean) / std for u in [0, 1). */
    for (size_t i = 0; i < (size_t)BX * 3 * S * S; i++) px[i] = (float)(lcg(&seed) >> 8) / (1 << 23) * 2.2f - 2.1f;
    for (int i = 0; i < BT; i++) labels[i] = (int)(lcg(&seed) % (uint32_t)K);
    char what[64];
    int rc = 0;
    for (int d = 0; d < o->n_dtypes && rc == 0; d++) {
        const char *dt = o->dtypes[d];
        if (strcmp(dt, "fp32")) {
            printf("%-14s %8.2fM %-5s %-7s unsupported: the classifier API holds fp32 weights only\n", name,
                   params / 1e6, dt, o->device);
            continue;
        }
        /* Classification. */
        if (sf_classifier_forward(m, px, B, logits, pred)) {   /* warm-up */
            fprintf(stderr, "%s forward: %s\n", name, sf_classifier_errstr(m));
            rc = 1;
            break;
        }
        double best = 1e30;
        for (int r = 0; r < o->reps && rc == 0; r++) {
            double a = now();
            rc = sf_classifier_forward(m, px, B, logits, pred);
            double t = now() - a;
            if (t < best) best = t;
        }
        if (rc) {
            fprintf(stderr, "%s forward: %s\n", name, sf_classifier_errstr(m));
            break;
        }
        snprintf(what, sizeof what, "classify %dx%d", S, S);
        row(name, params, dt, o->device, what, B, best, -1);
        /* Fine-tuning. */
        float loss;
        if (sf_classifier_train_step(m, px, labels, BT, 1e-4f, &loss, NULL)) {   /* warm-up, makes AdamW */
            fprintf(stderr, "%s train step: %s\n", name, sf_classifier_errstr(m));
            rc = 1;
            break;
        }
        best = 1e30;
        for (int r = 0; r < o->reps && rc == 0; r++) {
            double a = now();
            rc = sf_classifier_train_step(m, px, labels, BT, 1e-4f, &loss, NULL);
            double t = now() - a;
            if (t < best) best = t;
        }
        if (rc) {
            fprintf(stderr, "%s train step: %s\n", name, sf_classifier_errstr(m));
            break;
        }
        snprintf(what, sizeof what, "fine-tune step %dx%d", S, S);
        row(name, params, dt, o->device, what, BT, best, 1 / best);
    }
    if (rc == 0) {
        if (o->small) rc |= bench_preprocess(name, &c, 48, 40) | bench_preprocess(name, &c, 40, 40);
        else rc |= bench_preprocess(name, &c, 500, 375) | bench_preprocess(name, &c, 256, 256);
    }
    free(px);
    free(logits);
    free(pred);
    free(labels);
    sf_classifier_free(&m);
    sf_ml_empty_cache();
    return rc;
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--device cpu|cuda|cuda:N] [--dtype fp32|bf16|fp16|all] [--small]\n"
            "          [--only convnext|vit] [--threads N] [--reps N] [--batch N] [--train-batch N]\n",
            argv0);
    return 2;
}

int main(int argc, char **argv) {
    opts_t o = {.device = "cpu", .dtypes = {"fp32"}, .n_dtypes = 1, .reps = 3, .batch = 32, .train_batch = 16};
    o.threads = getenv("SF_THREADS") ? atoi(getenv("SF_THREADS")) : 1;
    const char *small = getenv("SMALL");
    o.small = small && !strcmp(small, "1");
    const char *only = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--small")) { o.small = 1; continue; }
        if (!v) return usage(argv[0]);
        i++;
        if (!strcmp(a, "--device")) o.device = v;
        else if (!strcmp(a, "--dtype")) {
            /* fp32 first, as bench_ml_real orders them. */
            o.dtypes[0] = "fp32", o.n_dtypes = 1;
            if (!strcmp(v, "all")) o.dtypes[o.n_dtypes++] = "bf16";
            else if (!strcmp(v, "bf16") || !strcmp(v, "fp16")) o.dtypes[o.n_dtypes++] = v;
            else if (strcmp(v, "fp32")) return usage(argv[0]);
        }
        else if (!strcmp(a, "--only")) {
            if (strcmp(v, "convnext") && strcmp(v, "vit")) return usage(argv[0]);
            only = v;
        }
        else if (!strcmp(a, "--threads")) o.threads = atoi(v);
        else if (!strcmp(a, "--reps")) o.reps = atoi(v);
        else if (!strcmp(a, "--batch")) o.batch = atoi(v);
        else if (!strcmp(a, "--train-batch")) o.train_batch = atoi(v);
        else return usage(argv[0]);
    }
    if (o.reps < 1 || o.batch < 1 || o.train_batch < 1 || o.threads < 1) return usage(argv[0]);
    sf_ml_opts_t mo = {.threads = o.threads, .quiet = 1};
    sf_ml_init(&mo);
    if (sf_ml_device_check(o.device)) {
        fprintf(stderr, "device %s: %s\n", o.device, sf_ml_errstr());
        return 1;
    }
    printf("# bench_ml_classifier: device %s (%d CUDA device(s) seen), %s shapes, %d torch thread(s), BLAS %s;\n"
           "# best of %d after a warm-up; random weights\n",
           o.device, sf_ml_cuda_count(), o.small ? "small (32x32, 10 classes)" : "real (224x224, 1000 classes)",
           o.threads, sf_ml_blas_name(), o.reps);
    header();
    fflush(stdout);
    int rc = 0;
    if (strcmp(only, "vit")) rc |= bench_model(&o, SF_CLS_CONVNEXT);
    if (strcmp(only, "convnext")) rc |= bench_model(&o, SF_CLS_VIT);
    return rc;
}
