/* The world carries the spurious correlations the paper relies on: a simple
 * classifier trained on base images of 10 classes is markedly less accurate
 * on world-R and world-A than on held-out base images.
 *
 * The classifier is 1-nearest-neighbour on 8x8 downsampled pixels plus a
 * 64-bin colour histogram — about the simplest model that exploits both
 * shape and context.  (A nearest class mean does worse even on base data,
 * 0.34, because averaging over positions and counts blurs the object away.)
 * It does well on base data because each class lives in its own scenes and
 * colours, and fails on the shifted sets because they keep the object and
 * move the context.
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/method/classes.h"
#include "common/runtime/error.h"
#include "sf_test.h"
#include "world/world.h"

#define NCLS 10
#define S 64
#define D 8
#define FEAT (D * D * 3 + 64)
#define NTRAIN 300
#define NTEST 500

static void features(const uint8_t *img, float *f) {
    int k = S / D;
    for (int y = 0; y < D; y++)
        for (int x = 0; x < D; x++)
            for (int c = 0; c < 3; c++) {
                int s = 0;
                for (int dy = 0; dy < k; dy++)
                    for (int dx = 0; dx < k; dx++) s += img[3 * ((y * k + dy) * S + x * k + dx) + c];
                f[(y * D + x) * 3 + c] = (float)s / (float)(k * k * 255);
            }
    float *h = f + D * D * 3;
    memset(h, 0, 64 * sizeof *h);
    for (int i = 0; i < S * S; i++)
        h[(img[3 * i] >> 6) * 16 + (img[3 * i + 1] >> 6) * 4 + (img[3 * i + 2] >> 6)] += 4.0f / (S * S);
}

TEST(base_classifier_breaks_on_shifted_sets) {
    /* Ten of the 86 ImageNet-A/R classes, spread over the list. */
    sf_classlist_t *all = NULL;
    char err[128];
    CHECK_EQ_INT(sf_classes_load("builtin:imagenet-a-r-86", &all, err, sizeof err), 0);
    sf_class_t pick[NCLS];
    for (int i = 0; i < NCLS; i++) pick[i] = all->v[i * 8 + 1];
    sf_classlist_t cl = {pick, NCLS};
    sf_world_t *w = NULL;
    CHECK_EQ_INT(sf_world_create(&cl, S, &w), 0);
    sf_classes_free(&all);

    float *train = malloc(sizeof(float) * FEAT * NTRAIN * NCLS);
    CHECK(train);
    uint8_t img[S * S * 3];
    for (int c = 0; c < NCLS; c++)
        for (int i = 0; i < NTRAIN; i++) {
            CHECK_EQ_INT(sf_world_base_sample(w, c, (uint64_t)i, img, NULL), 0);
            features(img, train + (size_t)(c * NTRAIN + i) * FEAT);
        }
    double acc[SF_WORLD_N_SETS];
    float f[FEAT];
    for (int set = 0; set < SF_WORLD_N_SETS; set++) {
        int right = 0;
        for (int i = 0; i < NTEST; i++) {
            int label;
            CHECK_EQ_INT(sf_world_testset_get(w, set, (uint64_t)i, img, &label, NULL), 0);
            features(img, f);
            int best = 0;
            double bd = 1e30;
            for (int n = 0; n < NTRAIN * NCLS; n++) {
                const float *t = train + (size_t)n * FEAT;
                double d = 0;
                for (int k = 0; k < FEAT; k++) d += (double)(f[k] - t[k]) * (f[k] - t[k]);
                if (d < bd) { bd = d; best = n / NTRAIN; }
            }
            right += best == label;
        }
        acc[set] = (double)right / NTEST;
        printf("  1-NN on base images, %d classes: %-8s accuracy %.3f\n", NCLS, sf_world_set_name(set),
               acc[set]);
    }
    free(train);
    /* Chance is 0.1. */
    CHECK(acc[SF_WORLD_SET_BASE] >= 0.6);
    CHECK(acc[SF_WORLD_SET_R] <= 0.65 * acc[SF_WORLD_SET_BASE]);
    CHECK(acc[SF_WORLD_SET_A] <= 0.65 * acc[SF_WORLD_SET_BASE]);
    sf_world_destroy(&w);
}

int main(void) {
    SF_RUN(base_classifier_breaks_on_shifted_sets);
    SF_DONE();
}
