/* Unit tests for common/classes: built-in lists, parsing and validation of
 * users' lists, and the "class mentioned" check. */
#include <string.h>

#include "common/method/classes.h"
#include "common/runtime/error.h"
#include "sf_test.h"

TEST(builtin_lists_load) {
    sf_classlist_t *cl = NULL;
    char err[256];
    CHECK_EQ_INT(sf_classes_load("builtin:imagenet-1k", &cl, err, sizeof err), 0);
    CHECK_EQ_INT(cl->n, 1000);
    CHECK_EQ_STR(cl->v[0].wnid, "n01440764");
    CHECK_EQ_STR(cl->v[0].name, "tench");
    CHECK_EQ_INT(cl->v[2].n_lemmas, 5);
    CHECK_EQ_STR(cl->v[2].lemmas[1], "white shark");
    sf_classes_free(&cl);
    CHECK(cl == NULL);
    CHECK_EQ_INT(sf_classes_load("builtin:imagenet-a-r-86", &cl, err, sizeof err), 0);
    CHECK_EQ_INT(cl->n, 86);
    CHECK_EQ_STR(cl->v[0].name, "stingray");
    CHECK_EQ_INT(cl->v[0].index, 6);
    sf_classes_free(&cl);
    CHECK(sf_classes_load("builtin:nope", &cl, err, sizeof err) == SF_EINVAL);
    CHECK(strstr(err, "nope") != NULL);
}

TEST(parse_by_wnid_and_name) {
    const char *txt = "# my classes\nn01440764\nGoldfish\n  junco  # a bird\n\n";
    sf_classlist_t *cl = NULL;
    char err[256];
    CHECK_EQ_INT(sf_classes_parse(txt, strlen(txt), &cl, err, sizeof err), 0);
    CHECK_EQ_INT(cl->n, 3);
    CHECK_EQ_STR(cl->v[1].wnid, "n01443537");
    CHECK_EQ_STR(cl->v[2].name, "junco");
    sf_classes_free(&cl);
}

TEST(bad_lists_name_the_line) {
    sf_classlist_t *cl = NULL;
    char err[256];
    const char *unk = "tench\ngoldfish\ndgo\n";
    CHECK_EQ_INT(sf_classes_parse(unk, strlen(unk), &cl, err, sizeof err), SF_EINVAL);
    CHECK(cl == NULL);
    CHECK(strstr(err, "line 3") && strstr(err, "dgo"));
    const char *dup = "tench\nn01440764\n";
    CHECK_EQ_INT(sf_classes_parse(dup, strlen(dup), &cl, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "line 2") && strstr(err, "duplicate"));
    const char *empty = "# nothing\n\n";
    CHECK_EQ_INT(sf_classes_parse(empty, strlen(empty), &cl, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "empty"));
    const char *amb = "missile\n";
    CHECK_EQ_INT(sf_classes_parse(amb, strlen(amb), &cl, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "ambiguous"));
    CHECK(sf_classes_load("/nonexistent/list.txt", &cl, err, sizeof err) == SF_EIO);
}

/* A control character anywhere in a line (name or comment) is refused by
 * line and code, and the line is not echoed: an error or a table would
 * otherwise carry it to a terminal. */
TEST(control_characters_are_refused_by_line) {
    static const struct { const char *txt; size_t len; const char *want; } bad[] = {
        {"tench\ngold\x1b[31mfish\n", 0, "line 2: control character 0x1b (column 5)"},
        {"tench\ngoldfish # \x1b]0;title\x07\n", 0, "line 2: control character 0x1b"},
        {"tench\n\x7f\n", 0, "line 2: control character 0x7f"},
        {"junco\vtench\n", 0, "line 1: control character 0x0b"},
        {"tench\rgoldfish\n", 0, "line 1: control character 0x0d (column 6)"},
        {"tench\ngoldfish\0junco\n", 21, "line 2: control character 0x00"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sf_classlist_t *cl = NULL;
        char err[256] = "";
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].txt);
        CHECK_EQ_INT(sf_classes_parse(bad[i].txt, len, &cl, err, sizeof err), SF_EINVAL);
        CHECK(cl == NULL);
        if (!strstr(err, bad[i].want)) fprintf(stderr, "case %zu: '%s', want '%s'\n", i, err, bad[i].want);
        CHECK(strstr(err, bad[i].want) != NULL);
        for (const char *c = err; *c; c++) CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
    }
    /* What stays allowed: a TSV row's tabs and a CRLF file's CR. */
    const char *ok = "0\tn01440764\ttench\ttench, Tinca tinca\r\ngoldfish\r\n";
    sf_classlist_t *cl = NULL;
    char err[256];
    CHECK_EQ_INT(sf_classes_parse(ok, strlen(ok), &cl, err, sizeof err), 0);
    CHECK_EQ_INT(cl->n, 2);
    sf_classes_free(&cl);
}

TEST(mentioned_by_name_or_lemma) {
    const sf_class_t *shark = sf_classes_lookup("great white shark");
    CHECK(shark != NULL);
    CHECK(sf_classes_mentioned(shark, "A Great White Shark in the snow."));
    CHECK(sf_classes_mentioned(shark, "a man-eater at night"));
    CHECK(sf_classes_mentioned(shark, "two white sharks on the road"));
    CHECK(!sf_classes_mentioned(shark, "a whiteshark"));
    CHECK(!sf_classes_mentioned(shark, "a shark in the sky"));
    const sf_class_t *junco = sf_classes_lookup("n01534433");
    CHECK(sf_classes_mentioned(junco, "a snowbird on a branch"));
    CHECK(!sf_classes_mentioned(junco, "snowbirding is fun"));
    const sf_class_t *fly = sf_classes_lookup("dragonfly");
    CHECK(fly != NULL);
    CHECK(sf_classes_mentioned(fly, "three dragonflies over the water"));
    CHECK(sf_classes_mentioned(fly, "a dragonfly"));
    const sf_class_t *monarch = sf_classes_lookup("monarch butterfly");
    CHECK(sf_classes_mentioned(monarch, "two monarch butterflies, painted"));
}

TEST(glosses_of_all_1000_classes) {
    char g[512];
    CHECK_EQ_INT(sf_class_gloss("n01443537", g, sizeof g), 0);
    CHECK(strstr(g, "freshwater fishes") != NULL);
    const sf_classlist_t *all = sf_classes_imagenet1k();
    int found = 0;
    for (int i = 0; i < all->n; i++) found += sf_class_gloss(all->v[i].wnid, g, sizeof g) == 0 && strlen(g) > 5;
    CHECK_EQ_INT(found, 1000);
    CHECK_EQ_INT(sf_class_gloss("n99999999", g, sizeof g), SF_ENOTFOUND);
    CHECK_EQ_INT(g[0], 0);
    CHECK_EQ_INT(sf_class_gloss("n0144353", g, sizeof g), SF_ENOTFOUND); /* a prefix is not a wnid */
}

int main(void) {
    SF_RUN(builtin_lists_load);
    SF_RUN(glosses_of_all_1000_classes);
    SF_RUN(parse_by_wnid_and_name);
    SF_RUN(bad_lists_name_the_line);
    SF_RUN(control_characters_are_refused_by_line);
    SF_RUN(mentioned_by_name_or_lemma);
    SF_DONE();
}
