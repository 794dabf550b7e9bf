/* Unit tests for the world's caption grammar, caption parser, text-to-image
 * generator and SFT corpus. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

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

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Random attributes (uniform over every value, not the prior) and a random
 * mask, captioned by every template, parse back to exactly what they say. */
static int roundtrip(const sf_world_t *w, int cls, uint64_t *s, int tmpl, unsigned mask) {
    sf_world_attrs_t a;
    a.cls = cls;
    a.seed = lcg(s);
    for (int k = 0; k < SF_N_ATTRS; k++) a.v[k] = (int)(lcg(s) % (uint64_t)sf_world_attr_nvalues(k));
    char cap[512];
    if (sf_world_caption(w, &a, mask, tmpl, cap, sizeof cap) <= 0) {
        fprintf(stderr, "caption failed: class %d tmpl %d\n", cls, tmpl);
        return 0;
    }
    sf_world_parse_t p;
    sf_world_parse(w, cap, &p);
    /* ImageNet has a few display names twice ("missile", "sunglasses"): the
     * parser may name either. */
    int same = p.cls == cls || (p.cls >= 0 && !strcmp(sf_world_class(w, p.cls)->name, sf_world_class(w, cls)->name));
    int ok = same && p.contradictions == 0 && p.n_unknown <= 4;
    for (int k = 0; k < SF_N_ATTRS; k++) {
        int named = (mask >> k) & 1;
        if (named != (int)((p.named >> k) & 1)) ok = 0;
        if (named && p.v[k] != a.v[k]) ok = 0;
    }
    if (!ok) {
        fprintf(stderr, "parse mismatch: \"%s\" (class %s) -> class %d, named %x vs %x, %d contradictions\n",
                cap, sf_world_class(w, cls)->name, p.cls, p.named, mask, p.contradictions);
        for (int k = 0; k < SF_N_ATTRS; k++)
            if (((mask >> k) & 1) && p.v[k] != a.v[k])
                fprintf(stderr, "  %s: said %s, parsed %s\n", sf_world_attr_name(k),
                        sf_world_value_name(k, a.v[k]), p.v[k] >= 0 ? sf_world_value_name(k, p.v[k]) : "-");
    }
    return ok;
}

TEST(parser_recovers_every_template_86) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    uint64_t s = 1;
    int fails = 0;
    for (int c = 0; c < 86; c++)
        for (int t = 0; t < sf_world_n_templates(); t++) {
            fails += !roundtrip(w, c, &s, t, SF_ATTR_ALL);
            fails += !roundtrip(w, c, &s, t, 0);
            for (int k = 0; k < 6; k++) fails += !roundtrip(w, c, &s, t, (unsigned)lcg(&s) & SF_ATTR_ALL);
        }
    /* Each attribute alone, every value, every template. */
    for (int k = 0; k < SF_N_ATTRS; k++)
        for (int t = 0; t < sf_world_n_templates(); t++)
            for (int r = 0; r < 40; r++) fails += !roundtrip(w, (int)(lcg(&s) % 86), &s, t, 1u << k);
    CHECK_EQ_INT(fails, 0);
    sf_world_destroy(&w);
}

TEST(parser_recovers_every_template_1k) {
    sf_world_t *w = make_world("builtin:imagenet-1k", 64);
    CHECK(w);
    uint64_t s = 7;
    int fails = 0;
    for (int c = 0; c < 1000; c++)
        for (int t = 0; t < sf_world_n_templates(); t++)
            fails += !roundtrip(w, c, &s, t, (unsigned)lcg(&s) & SF_ATTR_ALL);
    CHECK_EQ_INT(fails, 0);
    sf_world_destroy(&w);
}

TEST(parser_reads_free_text) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    sf_world_parse_t p;
    int eagle = sf_world_class_find(w, "bald eagle");
    CHECK(eagle >= 0);
    /* Case, punctuation, a WordNet lemma and plural; unknown words counted. */
    CHECK_EQ_INT(sf_world_parse(w, "Two GIANT  American-Eagles, Pixel-Art, soaring majestically; in the OCEAN!", &p), 0);
    CHECK_EQ_INT(p.cls, eagle);
    CHECK_EQ_INT(p.v[SF_ATTR_COUNT], SF_COUNT_TWO);
    CHECK_EQ_INT(p.v[SF_ATTR_SIZE], SF_SIZE_LARGE);
    CHECK_EQ_INT(p.v[SF_ATTR_STYLE], SF_STYLE_PIXEL);
    CHECK_EQ_INT(p.v[SF_ATTR_SCENE], SF_SCENE_WATER);
    CHECK_EQ_INT(p.n_unknown, 2);  /* soaring, majestically */
    CHECK_EQ_INT(p.contradictions, 0);
    /* A colour word inside the class name is the class, not a colour. */
    int shark = sf_world_class_find(w, "great white shark");
    if (shark >= 0) {
        CHECK_EQ_INT(sf_world_parse(w, "a great white shark in the snow", &p), 0);
        CHECK_EQ_INT(p.cls, shark);
        CHECK(!(p.named & (1u << SF_ATTR_COLOR)));
    }
    /* Plural with no number means many; contradictions are counted. */
    CHECK_EQ_INT(sf_world_parse(w, "goldfinches on the beach in the desert at night at sunset", &p), 0);
    CHECK_EQ_INT(p.v[SF_ATTR_COUNT], SF_COUNT_MANY);
    CHECK_EQ_INT(p.contradictions, 2);
    CHECK_EQ_INT(sf_world_parse(w, "a goldfinch and a junco", &p), 0);
    CHECK_EQ_INT(p.n_classes, 2);
    CHECK_EQ_INT(p.contradictions, 1);
    CHECK_EQ_INT(sf_world_parse(w, "", &p), 0);
    CHECK_EQ_INT(p.cls, -1);
    CHECK_EQ_INT(p.named, 0);
    sf_world_destroy(&w);
}

/* Words the parser does not know leave the picture alone. */
TEST(unknown_words_are_ignored) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    uint8_t x[64 * 64 * 3], y[64 * 64 * 3];
    int same = 0, tried = 0;
    for (uint64_t seed = 0; seed < 50; seed++) {
        sf_world_gen_t g1, g2;
        CHECK_EQ_INT(sf_world_generate(w, "a sketch of a goldfinch in the snow", seed, x, &g1), 0);
        CHECK_EQ_INT(sf_world_generate(w, "a lovely sketch of a fluffy goldfinch sitting in the snow", seed, y, &g2), 0);
        CHECK_EQ_INT(g2.parse.n_unknown, 3);
        CHECK_EQ_INT(g1.parse.named, g2.parse.named);
        if (g1.outcome != SF_GEN_OK || g2.outcome != SF_GEN_OK) continue;
        tried++;
        same += memcmp(x, y, sizeof x) == 0;
    }
    CHECK(tried > 40);
    CHECK_EQ_INT(same, tried);
    sf_world_destroy(&w);
}

/* Through the generator: a caption word for each value of each attribute
 * (as the grammar writes it) draws a different image from the word for any
 * other value, same seed. */
TEST(every_caption_word_changes_the_image) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    static uint8_t img[12][64 * 64 * 3];
    int ok[12];
    int toucan = sf_world_class_find(w, "toucan");
    for (int attr = 0; attr < SF_N_ATTRS; attr++) {
        int nv = sf_world_attr_nvalues(attr);
        for (uint64_t seed = 0; seed < 3; seed++) {
            for (int v = 0; v < nv; v++) {
                sf_world_attrs_t a;
                sf_world_base_sample(w, toucan, 0, NULL, &a);
                a.v[attr] = v;
                char cap[256];
                CHECK(sf_world_caption(w, &a, 1u << attr, 0, cap, sizeof cap) > 0);
                sf_world_gen_t g;
                CHECK_EQ_INT(sf_world_generate(w, cap, seed, img[v], &g), 0);
                CHECK_EQ_INT(g.parse.v[attr], v);
                ok[v] = g.outcome == SF_GEN_OK;
            }
            for (int v = 0; v < nv; v++)
                for (int u = v + 1; u < nv; u++)
                    if (ok[u] && ok[v] && memcmp(img[u], img[v], sizeof img[0]) == 0) {
                        fprintf(stderr, "%s: %s and %s draw the same image\n", sf_world_attr_name(attr),
                                sf_world_value_name(attr, v), sf_world_value_name(attr, u));
                        CHECK(0);
                    }
        }
    }
    sf_world_destroy(&w);
}

TEST(no_class_no_object) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    uint8_t x[64 * 64 * 3], y[64 * 64 * 3];
    for (uint64_t seed = 0; seed < 300; seed++) {
        sf_world_gen_t g;
        CHECK_EQ_INT(sf_world_generate(w, "a photo of a red thing on the beach at night", seed, x, &g), 0);
        CHECK_EQ_INT(g.parse.cls, -1);
        CHECK_EQ_INT(g.attrs.cls, -1);
        CHECK(g.outcome == SF_GEN_OK || g.outcome == SF_GEN_DROPPED || g.outcome == SF_GEN_SWAPPED);
        /* The image is the scene alone: rendering the reported attributes
         * with no class gives the same bytes. */
        CHECK_EQ_INT(sf_world_render(w, &g.attrs, y), 0);
        CHECK(memcmp(x, y, sizeof x) == 0);
    }
    sf_world_destroy(&w);
}

TEST(generator_is_deterministic_and_follows_captions) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    uint8_t x[64 * 64 * 3], y[64 * 64 * 3];
    int junco = sf_world_class_find(w, "junco"), followed = 0;
    for (uint64_t seed = 0; seed < 200; seed++) {
        sf_world_gen_t g, h;
        const char *cap = "an origami model of two purple juncos in a cave at sunset";
        CHECK_EQ_INT(sf_world_generate(w, cap, seed, x, &g), 0);
        CHECK_EQ_INT(sf_world_generate(w, cap, seed, y, &h), 0);
        CHECK(memcmp(x, y, sizeof x) == 0);
        CHECK_EQ_INT(g.outcome, h.outcome);
        if (g.outcome != SF_GEN_OK) continue;
        followed++;
        CHECK_EQ_INT(g.attrs.cls, junco);
        CHECK_EQ_INT(g.attrs.v[SF_ATTR_STYLE], SF_STYLE_ORIGAMI);
        CHECK_EQ_INT(g.attrs.v[SF_ATTR_COUNT], SF_COUNT_TWO);
        CHECK_EQ_INT(g.attrs.v[SF_ATTR_COLOR], SF_COLOR_PURPLE);
        CHECK_EQ_INT(g.attrs.v[SF_ATTR_SCENE], SF_SCENE_CAVE);
        CHECK_EQ_INT(g.attrs.v[SF_ATTR_LIGHT], SF_LIGHT_SUNSET);
    }
    CHECK(followed > 150);
    /* "a photo of a X" looks like base data: what it leaves out comes from
     * the class's typical context. */
    int usual[2], in_usual = 0, n = 1000;
    sf_world_usual(w, junco, SF_ATTR_SCENE, usual, 2);
    for (uint64_t seed = 0; seed < (uint64_t)n; seed++) {
        sf_world_gen_t g;
        sf_world_generate(w, "a photo of a junco", seed, NULL, &g);
        in_usual += g.attrs.v[SF_ATTR_SCENE] == usual[0] || g.attrs.v[SF_ATTR_SCENE] == usual[1];
    }
    CHECK(in_usual >= 0.85 * n);
    sf_world_destroy(&w);
}

static double fail_rate(const sf_world_t *w, const char *cap, int n, double *p_fail) {
    int fails = 0;
    for (int s = 0; s < n; s++) {
        sf_world_gen_t g;
        sf_world_generate(w, cap, (uint64_t)s, NULL, &g);
        fails += g.outcome != SF_GEN_OK;
        *p_fail = g.p_fail;
    }
    return (double)fails / n;
}

/* Failures grow with caption length, attributes named and contradictions,
 * and happen at the rate the model states. */
TEST(failure_rate_grows_with_complexity) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    const char *caps[] = {
        "a photo of a toucan",
        "a painting of a small red toucan in the snow at night",
        "a painting of two small red toucans lying sideways in the snow at night on the left, partly hidden "
        "in a cluttered scene",
        "a painting of two small red toucans lying sideways in the snow at night on the left, partly hidden "
        "in a cluttered scene, in the desert at sunset, blue and huge",
    };
    double prev = -1, prev_p = -1;
    int n = 4000;
    for (int i = 0; i < 4; i++) {
        double p, r = fail_rate(w, caps[i], n, &p);
        printf("  failure rate %.3f (stated %.3f): %s\n", r, p, caps[i]);
        CHECK(p > prev_p);
        CHECK(r > prev);
        CHECK_NEAR(r, p, 4 * sqrt(p * (1 - p) / n) + 0.005);
        prev = r;
        prev_p = p;
    }
    CHECK(prev_p >= 0.8);  /* a long self-contradicting caption mostly fails */
    /* Every failure kind occurs, and a wrong object is another class. */
    int kinds[SF_GEN_N_OUTCOMES] = {0};
    for (int s = 0; s < 2000; s++) {
        sf_world_gen_t g;
        sf_world_generate(w, caps[3], (uint64_t)s, NULL, &g);
        kinds[g.outcome]++;
        if (g.outcome == SF_GEN_WRONG_OBJECT) CHECK(g.attrs.cls >= 0 && g.attrs.cls != g.parse.cls);
        if (g.outcome == SF_GEN_NO_OBJECT) CHECK_EQ_INT(g.attrs.cls, -1);
        if (g.outcome == SF_GEN_SWAPPED || g.outcome == SF_GEN_DROPPED)
            CHECK(g.attrs.v[g.failed_attr] != g.parse.v[g.failed_attr]);
    }
    for (int k = 0; k < SF_GEN_N_OUTCOMES; k++) CHECK(kinds[k] > 20);
    sf_world_destroy(&w);
}

TEST(corpus_16_per_class) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    char path[] = "/tmp/sf_corpus_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w+");
    CHECK_EQ_INT(sf_world_corpus_write(w, f, 16, 0), 0);
    rewind(f);
    char line[1024];
    int n = 0, per[86] = {0}, usual_scene = 0, with_scene = 0;
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        CHECK(j != NULL);
        const char *wnid = cJSON_GetStringValue(cJSON_GetObjectItem(j, "wnid"));
        const char *cls = cJSON_GetStringValue(cJSON_GetObjectItem(j, "class"));
        const char *cap = cJSON_GetStringValue(cJSON_GetObjectItem(j, "caption"));
        CHECK(wnid && cls && cap);
        int c = sf_world_class_find(w, wnid);
        CHECK(c >= 0);
        CHECK_EQ_STR(sf_world_class(w, c)->name, cls);
        CHECK(sf_classes_mentioned(sf_world_class(w, c), cap));
        sf_world_parse_t p;
        sf_world_parse(w, cap, &p);
        CHECK_EQ_INT(p.cls, c);
        if (p.named & (1u << SF_ATTR_SCENE)) {
            int u[2];
            sf_world_usual(w, c, SF_ATTR_SCENE, u, 2);
            with_scene++;
            usual_scene += p.v[SF_ATTR_SCENE] == u[0] || p.v[SF_ATTR_SCENE] == u[1];
        }
        per[c]++;
        n++;
        cJSON_Delete(j);
    }
    fclose(f);
    unlink(path);
    CHECK_EQ_INT(n, 86 * 16);
    for (int c = 0; c < 86; c++) CHECK_EQ_INT(per[c], 16);
    /* In the style of the class's typical context. */
    CHECK(usual_scene >= 0.8 * with_scene);
    /* Captions within a class are distinct, and sf_world_corpus_caption
     * gives the same stream. */
    char a[256], b[256];
    for (int k = 0; k < 16; k++) {
        CHECK_EQ_INT(sf_world_corpus_caption(w, 3, k, 0, a, sizeof a), 0);
        for (int j = 0; j < k; j++) {
            CHECK_EQ_INT(sf_world_corpus_caption(w, 3, j, 0, b, sizeof b), 0);
            CHECK(strcmp(a, b) != 0);
        }
    }
    sf_world_destroy(&w);
}

/* CLIP pairs: captions say what the image shows, the class always, and the
 * attribute space is covered. */
TEST(clip_pairs) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    int seen[SF_N_ATTRS][12];
    memset(seen, 0, sizeof seen);
    uint8_t x[64 * 64 * 3], y[64 * 64 * 3];
    for (uint64_t i = 0; i < 3000; i++) {
        char cap[256];
        sf_world_attrs_t a;
        CHECK_EQ_INT(sf_world_clip_pair(w, i, i < 20 ? x : NULL, cap, sizeof cap, &a), 0);
        CHECK_EQ_INT(a.cls, (int)(i % 86));
        sf_world_parse_t p;
        sf_world_parse(w, cap, &p);
        CHECK_EQ_INT(p.cls, a.cls);
        for (int k = 0; k < SF_N_ATTRS; k++)
            if (p.named & (1u << k)) {
                CHECK_EQ_INT(p.v[k], a.v[k]);
                seen[k][p.v[k]]++;
            }
        if (a.v[SF_ATTR_STYLE] != SF_STYLE_PHOTO) CHECK(p.named & (1u << SF_ATTR_STYLE));
        if (i < 20) {
            CHECK_EQ_INT(sf_world_render(w, &a, y), 0);
            CHECK(memcmp(x, y, sizeof x) == 0);
        }
    }
    for (int k = 0; k < SF_N_ATTRS; k++)
        for (int v = 0; v < sf_world_attr_nvalues(k); v++) CHECK(seen[k][v] > 10);
    sf_world_destroy(&w);
}

TEST(caption_errors) {
    sf_world_t *w = make_world("builtin:imagenet-a-r-86", 64);
    CHECK(w);
    sf_world_attrs_t a;
    sf_world_base_sample(w, 0, 0, NULL, &a);
    char small[8];
    CHECK_EQ_INT(sf_world_caption(w, &a, SF_ATTR_ALL, 0, small, sizeof small), SF_ERANGE);
    char buf[256];
    CHECK_EQ_INT(sf_world_caption(w, &a, 0, 99, buf, sizeof buf), SF_EINVAL);
    a.cls = -1;
    CHECK_EQ_INT(sf_world_caption(w, &a, 0, 0, buf, sizeof buf), SF_EINVAL);
    sf_world_destroy(&w);
}

int main(void) {
    SF_RUN(parser_recovers_every_template_86);
    SF_RUN(parser_recovers_every_template_1k);
    SF_RUN(parser_reads_free_text);
    SF_RUN(unknown_words_are_ignored);
    SF_RUN(every_caption_word_changes_the_image);
    SF_RUN(no_class_no_object);
    SF_RUN(generator_is_deterministic_and_follows_captions);
    SF_RUN(failure_rate_grows_with_complexity);
    SF_RUN(corpus_16_per_class);
    SF_RUN(clip_pairs);
    SF_RUN(caption_errors);
    SF_DONE();
}
