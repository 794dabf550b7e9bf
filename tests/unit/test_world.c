/* Unit tests for world/: rendering, base priors, test sets and the float
 * helper.  The grammar, parser and generator are in test_world_grammar.c;
 * the spurious-correlation check is in test_world_shift.c. */
#include <stdint.h>
#include <stdlib.h>

#include "common/method/classes.h"
#include "common/runtime/error.h"
#include "sf_test.h"
#include "world/world.h"

static sf_world_t *make_world(const char *spec, int size) {
    sf_classlist_t *cl = NULL;
    char err[256];
    if (sf_classes_load(spec, &cl, err, sizeof err)) return NULL;
    sf_world_t *w = NULL;
    int rc = sf_world_create(cl, size, &w);
    sf_classes_free(&cl);
    return rc ? NULL : w;
}

/* A class made by hand: the world must accept any wnid, known or not. */
TEST(any_class_list_works) {
    char *lem[] = {"widget", "gizmo"};
    sf_class_t c[2] = {{"n99999999", 0, "widget", lem, 2}, {"n99999998", 1, "doohickey", NULL, 0}};
    sf_classlist_t cl = {c, 2};
    sf_world_t *w = NULL;
    CHECK_EQ_INT(sf_world_create(&cl, 48, &w), 0);
    CHECK_EQ_INT(sf_world_n_classes(w), 2);
    CHECK_EQ_INT((int)sf_world_image_bytes(w), 48 * 48 * 3);
    CHECK_EQ_INT(sf_world_class_find(w, "Widget"), 0);
    CHECK_EQ_INT(sf_world_class_find(w, "n99999998"), 1);
    CHECK_EQ_INT(sf_world_class_find(w, "gadget"), -1);
    uint8_t img[48 * 48 * 3];
    CHECK_EQ_INT(sf_world_base_sample(w, 1, 0, img, NULL), 0);
    sf_world_destroy(&w);
    CHECK(w == NULL);
    sf_classlist_t empty = {NULL, 0};
    CHECK_EQ_INT(sf_world_create(&empty, 64, &w), SF_EINVAL);
    CHECK_EQ_INT(sf_world_create(&cl, 31, &w), SF_EINVAL);
    CHECK_EQ_INT(sf_world_create(&cl, 257, &w), SF_EINVAL);
    CHECK(w == NULL);
}

TEST(deterministic_bytes) {
    sf_world_t *a = make_world("builtin:imagenet-a-r-86", 64);
    sf_world_t *b = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(a && b);
    uint8_t x[64 * 64 * 3], y[64 * 64 * 3];
    for (int set = 0; set < SF_WORLD_N_SETS; set++)
        for (uint64_t i = 0; i < 200; i += 7) {
            CHECK_EQ_INT(sf_world_testset_get(a, set, i, x, NULL, NULL), 0);
            CHECK_EQ_INT(sf_world_testset_get(b, set, i, y, NULL, NULL), 0);
            CHECK(memcmp(x, y, sizeof x) == 0);
        }
    for (int c = 0; c < 86; c += 5) {
        sf_world_base_sample(a, c, 3, x, NULL);
        sf_world_base_sample(b, c, 3, y, NULL);
        CHECK(memcmp(x, y, sizeof x) == 0);
        sf_world_base_sample(b, c, 4, y, NULL);
        CHECK(memcmp(x, y, sizeof x) != 0);
    }
    /* A class looks the same whatever list it is in: "junco" in a list of
     * one renders as it does among the 86. */
    sf_classlist_t *cl = NULL;
    char err[128];
    CHECK_EQ_INT(sf_classes_parse("junco\n", 6, &cl, err, sizeof err), 0);
    sf_world_t *j = NULL;
    CHECK_EQ_INT(sf_world_create(cl, 64, &j), 0);
    sf_classes_free(&cl);
    sf_world_attrs_t at;
    sf_world_base_sample(a, sf_world_class_find(a, "junco"), 11, x, &at);
    at.cls = 0;
    CHECK_EQ_INT(sf_world_render(j, &at, y), 0);
    CHECK(memcmp(x, y, sizeof x) == 0);
    sf_world_destroy(&j);
    sf_world_destroy(&a);
    sf_world_destroy(&b);
}

/* Every value of every attribute draws a different picture, in every style,
 * for several classes. */
TEST(every_attribute_value_changes_the_image) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    enum { MAXV = 12 };
    static uint8_t img[MAXV][64 * 64 * 3];
    int classes[] = {0, 17, 42, 85};
    for (size_t ci = 0; ci < sizeof classes / sizeof classes[0]; ci++)
        for (int style = 0; style < SF_N_STYLES; style++)
            for (int attr = 0; attr < SF_N_ATTRS; attr++) {
                sf_world_attrs_t a;
                sf_world_base_sample(w, classes[ci], (uint64_t)style, NULL, &a);
                a.v[SF_ATTR_STYLE] = style;
                a.v[SF_ATTR_COUNT] = SF_COUNT_ONE;
                a.v[SF_ATTR_OCCL] = SF_OCCL_NONE;
                a.v[SF_ATTR_LIGHT] = SF_LIGHT_DAY;
                int nv = sf_world_attr_nvalues(attr);
                for (int v = 0; v < nv; v++) {
                    a.v[attr] = v;
                    CHECK_EQ_INT(sf_world_render(w, &a, img[v]), 0);
                }
                for (int v = 0; v < nv; v++)
                    for (int u = v + 1; u < nv; u++)
                        if (memcmp(img[u], img[v], sizeof img[0]) == 0) {
                            fprintf(stderr, "class %d style %s: %s %s == %s\n", classes[ci],
                                    sf_world_value_name(SF_ATTR_STYLE, style), sf_world_attr_name(attr),
                                    sf_world_value_name(attr, v), sf_world_value_name(attr, u));
                            CHECK(0);
                        }
            }
    sf_world_destroy(&w);
}

/* Class shapes are distinct: with scene, colour, size and pose held fixed,
 * 1-nearest-neighbour on the pixels tells all 86 classes apart across
 * jitter (position, angle and texture vary with the seed). */
TEST(class_shapes_are_distinct) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    enum { N = 86, REF = 4, PROBE = 3, P = 64 * 64 * 3 };
    uint8_t *ref = malloc((size_t)N * REF * P), img[P];
    CHECK(ref);
    sf_world_attrs_t a;
    sf_world_base_sample(w, 0, 0, NULL, &a);
    a.v[SF_ATTR_STYLE] = SF_STYLE_PHOTO;
    a.v[SF_ATTR_SCENE] = SF_SCENE_SNOW;
    a.v[SF_ATTR_LIGHT] = SF_LIGHT_DAY;
    a.v[SF_ATTR_COLOR] = SF_COLOR_RED;
    a.v[SF_ATTR_SIZE] = SF_SIZE_LARGE;
    a.v[SF_ATTR_POS] = SF_POS_CENTER;
    a.v[SF_ATTR_ROT] = SF_ROT_UPRIGHT;
    a.v[SF_ATTR_COUNT] = SF_COUNT_ONE;
    a.v[SF_ATTR_OCCL] = SF_OCCL_NONE;
    a.v[SF_ATTR_CLUTTER] = SF_CLUTTER_NONE;
    for (int c = 0; c < N; c++)
        for (int k = 0; k < REF; k++) {
            a.cls = c;
            a.seed = (uint64_t)k;
            CHECK_EQ_INT(sf_world_render(w, &a, ref + ((size_t)c * REF + k) * P), 0);
        }
    int right = 0;
    for (int c = 0; c < N; c++)
        for (int k = 0; k < PROBE; k++) {
            a.cls = c;
            a.seed = 1000 + (uint64_t)k;
            sf_world_render(w, &a, img);
            long best = -1;
            int who = -1;
            for (int r = 0; r < N * REF; r++) {
                const uint8_t *q = ref + (size_t)r * P;
                long d = 0;
                for (int i = 0; i < P; i++) d += abs((int)img[i] - (int)q[i]);
                if (best < 0 || d < best) { best = d; who = r / REF; }
            }
            right += who == c;
            if (who != c) fprintf(stderr, "  %s -> %s\n", sf_world_class(w, c)->name, sf_world_class(w, who)->name);
        }
    printf("  shape-only 1-NN over 86 classes: %d/%d\n", right, N * PROBE);
    CHECK(right >= N * PROBE * 9 / 10);
    free(ref);
    sf_world_destroy(&w);
}

/* Tempered priors: beta 1 is the base prior, 0 uniform, negative favours
 * what is rare for the class. */
TEST(tempered_sampling_moves_to_low_density) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    int u[2];
    sf_world_usual(w, 4, SF_ATTR_SCENE, u, 2);
    double beta[3] = {1, 0, -1}, in_usual[3];
    for (int b = 0; b < 3; b++) {
        int n = 4000, hits = 0, photo = 0;
        for (int i = 0; i < n; i++) {
            sf_world_attrs_t a;
            sf_world_tempered_sample(w, 4, (uint64_t)i, beta[b], &a);
            CHECK_EQ_INT(a.cls, 4);
            hits += a.v[SF_ATTR_SCENE] == u[0] || a.v[SF_ATTR_SCENE] == u[1];
            photo += a.v[SF_ATTR_STYLE] == SF_STYLE_PHOTO;
        }
        in_usual[b] = (double)hits / n;
        if (b == 1) CHECK_NEAR((double)photo / n, 1.0 / SF_N_STYLES, 0.03);
    }
    CHECK(in_usual[0] > 0.85);
    CHECK_NEAR(in_usual[1], 2.0 / SF_N_SCENES, 0.03);
    CHECK(in_usual[2] < 0.02);
    sf_world_destroy(&w);
}

TEST(bad_attributes_are_rejected) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    uint8_t img[64 * 64 * 3];
    sf_world_attrs_t a;
    sf_world_base_sample(w, 0, 0, NULL, &a);
    a.v[SF_ATTR_SCENE] = SF_N_SCENES;
    CHECK_EQ_INT(sf_world_render(w, &a, img), SF_EINVAL);
    a.v[SF_ATTR_SCENE] = 0;
    a.cls = 86;
    CHECK_EQ_INT(sf_world_render(w, &a, img), SF_EINVAL);
    a.cls = -1;  /* the scene alone is fine */
    CHECK_EQ_INT(sf_world_render(w, &a, img), 0);
    CHECK_EQ_INT(sf_world_base_sample(w, -1, 0, img, NULL), SF_EINVAL);
    CHECK_EQ_INT(sf_world_testset_get(w, 7, 0, img, NULL, NULL), SF_EINVAL);
    CHECK_EQ_INT(sf_world_value_lookup(SF_ATTR_STYLE, "Pixel Art"), SF_STYLE_PIXEL);
    CHECK_EQ_INT(sf_world_value_lookup(SF_ATTR_SCENE, "moon"), -1);
    CHECK_EQ_INT(sf_world_set_lookup("WORLD-r"), SF_WORLD_SET_R);
    sf_world_destroy(&w);
}

/* Every size from 32 to 256 renders every style. */
TEST(sizes_32_to_256) {
    sf_classlist_t *cl = NULL;
    char err[128];
    CHECK_EQ_INT(sf_classes_load("builtin:imagenet-a-r-86", &cl, err, sizeof err), 0);
    int sizes[] = {32, 33, 64, 100, 128, 255, 256};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        sf_world_t *w = NULL;
        CHECK_EQ_INT(sf_world_create(cl, sizes[s], &w), 0);
        uint8_t *img = malloc(sf_world_image_bytes(w));
        for (int st = 0; st < SF_N_STYLES; st++)
            for (int sc = 0; sc < SF_N_SCENES; sc++) {
                sf_world_attrs_t a;
                sf_world_base_sample(w, st * 7 + sc, 1, NULL, &a);
                a.v[SF_ATTR_STYLE] = st;
                a.v[SF_ATTR_SCENE] = sc;
                a.v[SF_ATTR_COUNT] = (st + sc) % SF_N_COUNTS;
                a.v[SF_ATTR_OCCL] = sc % SF_N_OCCLUSIONS;
                a.v[SF_ATTR_CLUTTER] = st & 1;
                a.v[SF_ATTR_SIZE] = SF_SIZE_LARGE;
                CHECK_EQ_INT(sf_world_render(w, &a, img), 0);
            }
        free(img);
        sf_world_destroy(&w);
    }
    sf_classes_free(&cl);
}

/* The base priors hold their stated skew over 10,000 samples per class. */
TEST(base_priors_hold_their_skew) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    for (int c = 0; c < 86; c += 9) {
        int usual_scene[2], usual_color[2];
        CHECK_EQ_INT(sf_world_usual(w, c, SF_ATTR_SCENE, usual_scene, 2), 2);
        CHECK_EQ_INT(sf_world_usual(w, c, SF_ATTR_COLOR, usual_color, 2), 2);
        int n = 10000, in_scene = 0, in_color = 0, photo = 0, day = 0, one = 0, medium = 0;
        int hist[SF_N_ATTRS][16];
        memset(hist, 0, sizeof hist);
        for (int i = 0; i < n; i++) {
            sf_world_attrs_t a;
            CHECK_EQ_INT(sf_world_base_sample(w, c, (uint64_t)i, NULL, &a), 0);
            CHECK_EQ_INT(a.cls, c);
            for (int k = 0; k < SF_N_ATTRS; k++) hist[k][a.v[k]]++;
            in_scene += a.v[SF_ATTR_SCENE] == usual_scene[0] || a.v[SF_ATTR_SCENE] == usual_scene[1];
            in_color += a.v[SF_ATTR_COLOR] == usual_color[0] || a.v[SF_ATTR_COLOR] == usual_color[1];
            photo += a.v[SF_ATTR_STYLE] == SF_STYLE_PHOTO;
            day += a.v[SF_ATTR_LIGHT] == SF_LIGHT_DAY;
            one += a.v[SF_ATTR_COUNT] == SF_COUNT_ONE;
            medium += a.v[SF_ATTR_SIZE] == SF_SIZE_MEDIUM;
        }
        CHECK(in_scene >= 0.85 * n);
        CHECK(in_color >= 0.85 * n);
        CHECK(photo >= 0.95 * n);
        CHECK(day >= 0.8 * n);
        CHECK(one >= 0.85 * n);
        CHECK(medium >= 0.75 * n);
        /* The empirical distribution matches the stated prior. */
        for (int k = 0; k < SF_N_ATTRS; k++) {
            double p[16];
            CHECK_EQ_INT(sf_world_prior(w, c, k, p), 0);
            double sum = 0;
            for (int v = 0; v < sf_world_attr_nvalues(k); v++) {
                sum += p[v];
                CHECK_NEAR((double)hist[k][v] / n, p[v], 0.015);
            }
            CHECK_NEAR(sum, 1.0, 1e-9);
        }
    }
    /* Priors differ between classes: not every class has the same usual
     * scenes. */
    int first[2], distinct = 0;
    sf_world_usual(w, 0, SF_ATTR_SCENE, first, 2);
    for (int c = 1; c < 86; c++) {
        int u[2];
        sf_world_usual(w, c, SF_ATTR_SCENE, u, 2);
        distinct += u[0] != first[0] || u[1] != first[1];
    }
    CHECK(distinct > 60);
    sf_world_destroy(&w);
}

/* world-R: non-photo styles in the class's usual scenes; world-A: photos in
 * unusual scenes with exactly one hard factor, each factor about as often. */
TEST(test_sets_are_shifted_as_stated) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    int style_seen[SF_N_STYLES] = {0}, factor_seen[6] = {0};
    for (uint64_t i = 0; i < 2000; i++) {
        sf_world_attrs_t a;
        int label;
        CHECK_EQ_INT(sf_world_testset_get(w, SF_WORLD_SET_R, i, NULL, &label, &a), 0);
        CHECK_EQ_INT(label, (int)(i % 86));
        CHECK_EQ_INT(a.cls, label);
        CHECK(a.v[SF_ATTR_STYLE] != SF_STYLE_PHOTO);
        style_seen[a.v[SF_ATTR_STYLE]]++;
        int u[2];
        sf_world_usual(w, label, SF_ATTR_SCENE, u, 2);
        CHECK(a.v[SF_ATTR_SCENE] == u[0] || a.v[SF_ATTR_SCENE] == u[1]);

        CHECK_EQ_INT(sf_world_testset_get(w, SF_WORLD_SET_A, i, NULL, &label, &a), 0);
        CHECK_EQ_INT(a.v[SF_ATTR_STYLE], SF_STYLE_PHOTO);
        CHECK(a.v[SF_ATTR_SCENE] != u[0] && a.v[SF_ATTR_SCENE] != u[1]);
        int hard = (a.v[SF_ATTR_SIZE] == SF_SIZE_SMALL) + (a.v[SF_ATTR_OCCL] != SF_OCCL_NONE) +
                   (a.v[SF_ATTR_LIGHT] != SF_LIGHT_DAY) + (a.v[SF_ATTR_CLUTTER] != SF_CLUTTER_NONE) +
                   (a.v[SF_ATTR_ROT] >= SF_ROT_SIDEWAYS);
        int uc[2];
        sf_world_usual(w, label, SF_ATTR_COLOR, uc, 2);
        hard += a.v[SF_ATTR_COLOR] != uc[0] && a.v[SF_ATTR_COLOR] != uc[1];
        CHECK_EQ_INT(hard, 1);
        factor_seen[(a.v[SF_ATTR_SIZE] == SF_SIZE_SMALL) * 1 + (a.v[SF_ATTR_OCCL] != SF_OCCL_NONE) * 2 +
                    (a.v[SF_ATTR_LIGHT] != SF_LIGHT_DAY) * 3 + (a.v[SF_ATTR_CLUTTER] != SF_CLUTTER_NONE) * 4 +
                    (a.v[SF_ATTR_ROT] >= SF_ROT_SIDEWAYS) * 5]++;
    }
    /* Index 0: the off-colour factor (none of the others). */
    for (int f = 0; f < 6; f++) CHECK(factor_seen[f] > 2000 / 6 - 60 && factor_seen[f] < 2000 / 6 + 60);
    for (int s = 1; s < SF_N_STYLES; s++) CHECK(style_seen[s] > 2000 / 7 - 40);
    /* The held-out base set is base-distributed but not the training items. */
    uint8_t x[64 * 64 * 3], y[64 * 64 * 3];
    sf_world_testset_get(w, SF_WORLD_SET_BASE, 5, x, NULL, NULL);
    for (uint64_t it = 0; it < 100; it++) {
        sf_world_base_sample(w, 5, it, y, NULL);
        CHECK(memcmp(x, y, sizeof x) != 0);
    }
    sf_world_destroy(&w);
}

TEST(chw_normalisation) {
    uint8_t rgb[2 * 2 * 3] = {0, 255, 51, 255, 0, 102, 10, 20, 30, 40, 50, 60};
    float out[12];
    float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.5f, 0.25f, 1.0f};
    CHECK_EQ_INT(sf_world_to_chw(rgb, 2, 2, mean, std, out), 0);
    CHECK_NEAR(out[0], -1.0, 1e-6);           /* c0 (0,0): (0-0.5)/0.5 */
    CHECK_NEAR(out[1], 1.0, 1e-6);            /* c0 (1,0) */
    CHECK_NEAR(out[4], (1.0 - 0.5) / 0.25, 1e-6);  /* c1 (0,0) */
    CHECK_NEAR(out[8 + 1], 102 / 255.0 - 0.5, 1e-6);
    CHECK_EQ_INT(sf_world_to_chw(rgb, 2, 2, NULL, NULL, out), 0);
    CHECK_NEAR(out[11], 60 / 255.0, 1e-6);
    float zero[3] = {1, 0, 1};
    CHECK_EQ_INT(sf_world_to_chw(rgb, 2, 2, NULL, zero, out), SF_EINVAL);
}

int main(void) {
    SF_RUN(any_class_list_works);
    SF_RUN(deterministic_bytes);
    SF_RUN(every_attribute_value_changes_the_image);
    SF_RUN(class_shapes_are_distinct);
    SF_RUN(tempered_sampling_moves_to_low_density);
    SF_RUN(bad_attributes_are_rejected);
    SF_RUN(sizes_32_to_256);
    SF_RUN(base_priors_hold_their_skew);
    SF_RUN(test_sets_are_shifted_as_stated);
    SF_RUN(chw_normalisation);
    SF_DONE();
}
