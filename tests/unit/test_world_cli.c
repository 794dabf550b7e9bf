/* Unit tests for `sfctl world`: the commands write what they say, and bad
 * usage exits 2 with a message instead of writing anything. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/image/png.h"
#include "sf_test.h"
#include "world/world.h"

static int run(int argc, const char **argv) { return sf_world_cli_main(argc, (char **)argv); }

static char dir[] = "/tmp/sf_wcli_XXXXXX";

TEST(sheet_writes_a_png) {
    char out[256];
    snprintf(out, sizeof out, "%s/s.png", dir);
    const char *sets[] = {"base", "world-R", "world-A", "caption:a sketch of a {class} at night", "attr:scene"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
        const char *argv[] = {"world", "sheet", "--classes", "builtin:imagenet-a-r-86", "--set", sets[i],
                              "--n", "6", "--cols", "3", "--size", "40", "--scale", "1", "--out", out};
        CHECK_EQ_INT(run(16, argv), 0);
        uint8_t *pix = NULL;
        int w, h;
        CHECK_EQ_INT(sf_png_read(out, &pix, &w, &h, NULL, 0), 0);
        CHECK(w > 3 * 40 && h > 2 * 40);
        free(pix);
        unlink(out);
    }
}

TEST(corpus_writes_jsonl) {
    char out[256];
    snprintf(out, sizeof out, "%s/c.jsonl", dir);
    const char *argv[] = {"world", "corpus", "--classes", "builtin:imagenet-a-r-86", "--out", out};
    CHECK_EQ_INT(run(6, argv), 0);
    FILE *f = fopen(out, "r");
    CHECK(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        CHECK(strncmp(line, "{\"wnid\":\"n", 10) == 0);
        CHECK(strstr(line, "\"caption\":\"") != NULL);
        n++;
    }
    fclose(f);
    CHECK_EQ_INT(n, 86 * 16);
    unlink(out);
}

TEST(bad_usage_exits_2) {
    const char *no_classes[] = {"world", "sheet", "--set", "base"};
    CHECK_EQ_INT(run(4, no_classes), 2);
    const char *bad_set[] = {"world", "sheet", "--classes", "builtin:imagenet-a-r-86", "--set", "nope"};
    CHECK_EQ_INT(run(6, bad_set), 2);
    const char *bad_class[] = {"world", "corpus", "--classes", "builtin:nope"};
    CHECK_EQ_INT(run(4, bad_class), 2);
    const char *bad_n[] = {"world", "sheet", "--classes", "builtin:imagenet-a-r-86", "--set", "base", "--n", "x"};
    CHECK_EQ_INT(run(8, bad_n), 2);
    const char *bad_size[] = {"world", "sheet", "--classes", "builtin:imagenet-a-r-86", "--set", "base", "--size", "16"};
    CHECK_EQ_INT(run(8, bad_size), 2);
    const char *unknown[] = {"world", "paint"};
    CHECK_EQ_INT(run(2, unknown), 2);
    const char *none[] = {"world"};
    CHECK_EQ_INT(run(1, none), 2);
    const char *help[] = {"world", "--help"};
    CHECK_EQ_INT(run(2, help), 0);
    const char *parse[] = {"world", "parse", "--classes", "builtin:imagenet-a-r-86", "a goldfinch in the snow"};
    CHECK_EQ_INT(run(5, parse), 0);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    SF_RUN(sheet_writes_a_png);
    SF_RUN(corpus_writes_jsonl);
    SF_RUN(bad_usage_exits_2);
    rmdir(dir);
    SF_DONE();
}
