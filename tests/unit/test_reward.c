/* test_reward.c: the paper's reward and the complete-sentence heuristic. */
#include <math.h>
#include <string.h>

#include "common/method/classes.h"
#include "common/runtime/error.h"
#include "common/method/reward.h"
#include "tests/unit/sf_test.h"

TEST(test_sentences_accepted) {
    const char *ok[] = {
        "A great white shark swims near a coral reef.",
        "a sketch of a goldfish in a bowl at night.",
        "Two tabby cats sleep on a red sofa!",
        "Is that a tench on the snowy road?",
        "An oil painting of a bald eagle, flying over a foggy forest at 3.5 km altitude.",
        "A cartoon of a jellyfish glowing in a dark cave.\n",
        "The photo shows \"a golden retriever\" playing in the sand.\"",
        "A café in München with a red panda. It is raining.",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (!sf_reward_is_sentence(ok[i])) fprintf(stderr, "rejected: %s\n", ok[i]);
        CHECK(sf_reward_is_sentence(ok[i]));
    }
}

TEST(test_sentences_rejected) {
    const char *bad[] = {
        "",
        "shark.",                                        /* too short */
        "A great white shark swims near a coral reef",   /* no final mark */
        "A great white shark swims near the...",         /* trails off */
        "A photo of a shark in the.",                    /* cut off after "the" */
        "A shark shark shark in the sea.",               /* degenerate repeat */
        "!!! ### $$$ %%% 123 456 ok.",                   /* mostly not letters */
        "A shark.<|endoftext|> swims.",
        "A shark\x01 swims in water.",                   /* control character */
        "A shark \xff swims in water.",                  /* invalid UTF-8 */
        "One shark. Two sharks. Three sharks. Four sharks.",   /* run-on fragments */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sf_reward_is_sentence(bad[i])) fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK(!sf_reward_is_sentence(bad[i]));
    }
    char longc[1024] = "A shark";
    for (int i = 0; i < 70; i++) strcat(longc, " swims");
    strcat(longc, ".");
    CHECK(!sf_reward_is_sentence(longc));   /* over 60 words (and repeats) */
    CHECK(!sf_reward_is_sentence(NULL));
}

TEST(test_cosine) {
    float a[3] = {1, 0, 0}, b[3] = {0, 2, 0}, c[3] = {-3, 0, 0}, z[3] = {0, 0, 0};
    float r;
    CHECK_EQ_INT(sf_reward_cosine(a, a, 3, &r), 0);
    CHECK_NEAR(r, 1, 1e-7);
    CHECK_EQ_INT(sf_reward_cosine(a, b, 3, &r), 0);
    CHECK_NEAR(r, 0, 1e-7);
    CHECK_EQ_INT(sf_reward_cosine(a, c, 3, &r), 0);
    CHECK_NEAR(r, -1, 1e-7);
    float d[3] = {1, 1, 0};
    CHECK_EQ_INT(sf_reward_cosine(a, d, 3, &r), 0);
    CHECK_NEAR(r, 1 / sqrt(2), 1e-6);
    CHECK_EQ_INT(sf_reward_cosine(a, z, 3, &r), SF_EINVAL);
    float nan3[3] = {NAN, 0, 0};
    CHECK_EQ_INT(sf_reward_cosine(a, nan3, 3, &r), SF_EINVAL);
}

TEST(test_dot) {
    /* 1*4 + 2*-5 + 3*6 = 12, by hand; an empty vector gives 0. */
    const float a[3] = {1, 2, 3}, b[3] = {4, -5, 6};
    CHECK(sf_dot_f32(a, b, 3) == 12.0f);
    CHECK(sf_dot_f32(a, b, 0) == 0.0f);
    CHECK(sf_dot_f32(a, b, 2) == -6.0f);
}

TEST(test_score) {
    const sf_class_t *shark = sf_classes_lookup("great white shark");
    CHECK(shark);
    float mean[4] = {1, 0, 0, 0}, away[4] = {-1, 1, 0, 0}, near[4] = {2, 0.1f, 0, 0};
    float r;
    int why = -1;
    const char *good = "A great white shark swims through a snowy forest at night.";
    CHECK_EQ_INT(sf_reward_score(shark, NULL, good, away, mean, 4, &r, &why), 0);
    CHECK_EQ_INT(why, SF_REWARD_OK);
    CHECK_NEAR(r, 1 / sqrt(2), 1e-6);   /* -cos(135 degrees) */
    float r_near;
    CHECK_EQ_INT(sf_reward_score(shark, NULL, good, near, mean, 4, &r_near, &why), 0);
    CHECK(r_near < r);                  /* closer to the class mean, lower reward */
    /* The class not mentioned: worst value however far the embedding is. */
    CHECK_EQ_INT(sf_reward_score(shark, NULL, "A goldfish swims through a snowy forest.", away, mean, 4,
                                 &r, &why), 0);
    CHECK_EQ_INT(why, SF_REWARD_NO_CLASS);
    CHECK(r == SF_REWARD_WORST);
    /* Not a sentence: worst value too. */
    CHECK_EQ_INT(sf_reward_score(shark, NULL, "great white shark snowy forest", away, mean, 4, &r, &why), 0);
    CHECK_EQ_INT(why, SF_REWARD_NOT_SENTENCE);
    CHECK(r == -1.0f);
    /* A lemma counts as a mention. */
    CHECK(shark->n_lemmas > 0);
    char buf[256];
    snprintf(buf, sizeof buf, "A %s swims in a dark cave.", shark->lemmas[shark->n_lemmas - 1]);
    CHECK_EQ_INT(sf_reward_check(shark, NULL, buf), SF_REWARD_OK);
    /* A zero embedding from a broken model is an error, not a reward. */
    float z[4] = {0};
    CHECK_EQ_INT(sf_reward_score(shark, NULL, good, z, mean, 4, &r, &why), SF_EINVAL);
}

TEST(test_other_class_is_nonsense) {
    /* A caption that names another of the run's classes, beside the target,
     * is nonsense (the world draws the first class it reads); one that names
     * only the other class has no class. */
    sf_classlist_t *w86 = NULL;
    char err[256];
    CHECK_EQ_INT(sf_classes_load("builtin:imagenet-a-r-86", &w86, err, sizeof err), 0);
    const sf_class_t *junco = sf_classes_lookup("junco"), *tiger = sf_classes_lookup("tiger"),
                     *tshark = sf_classes_lookup("tiger shark"), *scorpion = sf_classes_lookup("scorpion");
    CHECK(junco && tiger && tshark && scorpion);
    sf_class_t two[2] = {*junco, *scorpion}, tt[2] = {*tiger, *tshark};
    const sf_classlist_t run = {two, 2}, run_t = {tt, 2};
    CHECK_EQ_INT(sf_reward_check(junco, &run, "A junco perched beside a scorpion in the snow."), SF_REWARD_OTHER_CLASS);
    CHECK_EQ_INT(sf_reward_check(junco, &run, "Two scorpions crawl past a junco at night."), SF_REWARD_OTHER_CLASS);
    CHECK_EQ_INT(sf_reward_check(junco, &run, "A scorpion in the snow at night."), SF_REWARD_NO_CLASS);
    CHECK_EQ_INT(sf_reward_check(junco, &run, "A junco perched on a mossy log in the snow."), SF_REWARD_OK);
    CHECK_EQ_INT(sf_reward_check(junco, NULL, "A junco perched beside a scorpion in the snow."), SF_REWARD_OK);
    /* The score of such a caption is the worst, however far its embedding. */
    float mean[2] = {1, 0}, away[2] = {-1, 0}, r = 0;
    int why = -1;
    CHECK_EQ_INT(sf_reward_score(junco, &run, "A junco perched beside a scorpion in the snow.", away, mean, 2, &r, &why), 0);
    CHECK_EQ_INT(why, SF_REWARD_OTHER_CLASS);
    CHECK(r == SF_REWARD_WORST);
    /* A class whose name is part of the target's is not another mention
     * ("tiger" inside "tiger shark"); the reverse is ("tiger shark" is more
     * than the target "tiger"). */
    CHECK_EQ_INT(sf_reward_check(tshark, &run_t, "A tiger shark swims through a dark forest."), SF_REWARD_OK);
    CHECK_EQ_INT(sf_reward_check(tiger, &run_t, "A tiger shark swims through a dark forest."), SF_REWARD_OTHER_CLASS);
    CHECK_EQ_INT(sf_reward_check(tiger, &run_t, "A tiger and a tiger shark meet on a beach."), SF_REWARD_OTHER_CLASS);
    CHECK_EQ_INT(sf_reward_check(tiger, &run_t, "A tiger rests on a beach at dawn."), SF_REWARD_OK);
    /* Why the run's classes and not the generator's whole list: ImageNet-1k
     * and the 86-class world name scenes ("beach", "volcano") that an unusual
     * context of another class mentions. */
    CHECK_EQ_INT(sf_reward_check(tiger, sf_classes_imagenet1k(), "A tiger rests on a beach at dawn."),
                 SF_REWARD_OTHER_CLASS);
    CHECK_EQ_INT(sf_reward_check(junco, w86, "A junco flies over a volcano at night."), SF_REWARD_OTHER_CLASS);
    CHECK_EQ_INT(sf_reward_check(junco, &run, "A junco flies over a volcano at night."), SF_REWARD_OK);
    sf_classes_free(&w86);
}

int main(void) {
    SF_RUN(test_sentences_accepted);
    SF_RUN(test_sentences_rejected);
    SF_RUN(test_cosine);
    SF_RUN(test_dot);
    SF_RUN(test_score);
    SF_RUN(test_other_class_is_nonsense);
    SF_DONE();
}
