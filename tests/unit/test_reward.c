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
    CHECK_EQ_INT(sf_reward_score(shark, good, away, mean, 4, &r, &why), 0);
    CHECK_EQ_INT(why, SF_REWARD_OK);
    CHECK_NEAR(r, 1 / sqrt(2), 1e-6);   /* -cos(135 degrees) */
    float r_near;
    CHECK_EQ_INT(sf_reward_score(shark, good, near, mean, 4, &r_near, &why), 0);
    CHECK(r_near < r);                  /* closer to the class mean, lower reward */
    /* The class not mentioned: worst value however far the embedding is. */
    CHECK_EQ_INT(sf_reward_score(shark, "A goldfish swims through a snowy forest.", away, mean, 4,
                                 &r, &why), 0);
    CHECK_EQ_INT(why, SF_REWARD_NO_CLASS);
    CHECK(r == SF_REWARD_WORST);
    /* Not a sentence: worst value too. */
    CHECK_EQ_INT(sf_reward_score(shark, "great white shark snowy forest", away, mean, 4, &r, &why), 0);
    CHECK_EQ_INT(why, SF_REWARD_NOT_SENTENCE);
    CHECK(r == -1.0f);
    /* A lemma counts as a mention. */
    CHECK(shark->n_lemmas > 0);
    char buf[256];
    snprintf(buf, sizeof buf, "A %s swims in a dark cave.", shark->lemmas[shark->n_lemmas - 1]);
    CHECK_EQ_INT(sf_reward_check(shark, buf), SF_REWARD_OK);
    /* A zero embedding from a broken model is an error, not a reward. */
    float z[4] = {0};
    CHECK_EQ_INT(sf_reward_score(shark, good, z, mean, 4, &r, &why), SF_EINVAL);
}

int main(void) {
    SF_RUN(test_sentences_accepted);
    SF_RUN(test_sentences_rejected);
    SF_RUN(test_cosine);
    SF_RUN(test_dot);
    SF_RUN(test_score);
    SF_DONE();
}
