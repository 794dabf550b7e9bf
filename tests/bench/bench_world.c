/* bench_world: how fast the embedded world renders, parses and generates.
 *
 * The world stands in for a text-to-image model inside training loops, so
 * its speed bounds how fast CLIP and the classifiers can be fed.  Target:
 * at least 5,000 base images of 64x64 per second on one core.  Prints one
 * line per measurement; asserts nothing (benchmarks are not tests).
 *
 *   build/bench/bench_world [SECONDS-PER-MEASUREMENT]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/method/classes.h"
#include "world/world.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef int (*job_fn)(const sf_world_t *w, uint64_t i, uint8_t *img);

static int job_base(const sf_world_t *w, uint64_t i, uint8_t *img) {
    int n = sf_world_n_classes(w);
    return sf_world_base_sample(w, (int)(i % (uint64_t)n), i / (uint64_t)n, img, NULL);
}
static int job_r(const sf_world_t *w, uint64_t i, uint8_t *img) {
    return sf_world_testset_get(w, SF_WORLD_SET_R, i, img, NULL, NULL);
}
static int job_a(const sf_world_t *w, uint64_t i, uint8_t *img) {
    return sf_world_testset_get(w, SF_WORLD_SET_A, i, img, NULL, NULL);
}
static int job_gen(const sf_world_t *w, uint64_t i, uint8_t *img) {
    char cap[256];
    const sf_class_t *c = sf_world_class(w, (int)(i % (uint64_t)sf_world_n_classes(w)));
    snprintf(cap, sizeof cap, "a painting of two small red %ss on the beach at sunset", c->name);
    return sf_world_generate(w, cap, i, img, NULL);
}
static int job_parse(const sf_world_t *w, uint64_t i, uint8_t *img) {
    (void)img;
    sf_world_parse_t p;
    const sf_class_t *c = sf_world_class(w, (int)(i % (uint64_t)sf_world_n_classes(w)));
    char cap[256];
    snprintf(cap, sizeof cap, "A sketch of a tiny blue %s lying sideways in the snow at night", c->name);
    return sf_world_parse(w, cap, &p);
}

static void measure(const char *what, const sf_world_t *w, job_fn fn, double secs) {
    uint8_t *img = malloc(sf_world_image_bytes(w));
    uint64_t n = 0;
    double t0 = now(), t;
    do {
        for (int k = 0; k < 64; k++, n++)
            if (fn(w, n, img)) {
                fprintf(stderr, "bench_world: %s failed\n", what);
                exit(1);
            }
        t = now() - t0;
    } while (t < secs);
    printf("%-40s %10.0f /s  (%llu in %.2f s)\n", what, (double)n / t, (unsigned long long)n, t);
    free(img);
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    sf_classlist_t *cl = NULL;
    char err[256];
    if (sf_classes_load("builtin:imagenet-a-r-86", &cl, err, sizeof err)) {
        fprintf(stderr, "bench_world: %s\n", err);
        return 1;
    }
    static const int sizes[] = {64, 32, 128, 256};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        sf_world_t *w = NULL;
        double t0 = now();
        if (sf_world_create(cl, sizes[s], &w)) return 1;
        if (s == 0) printf("%-40s %10.1f ms\n", "world create (86 classes)", (now() - t0) * 1e3);
        char what[64];
        snprintf(what, sizeof what, "base images %dx%d, one core", sizes[s], sizes[s]);
        measure(what, w, job_base, secs);
        if (s == 0) {
            measure("world-R images 64x64", w, job_r, secs);
            measure("world-A images 64x64", w, job_a, secs);
            measure("generate (caption -> image) 64x64", w, job_gen, secs);
            measure("parse caption (86 classes)", w, job_parse, secs);
        }
        sf_world_destroy(&w);
    }
    sf_classes_free(&cl);
    return 0;
}
