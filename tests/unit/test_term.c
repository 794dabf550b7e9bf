/* Unit tests for cli/term: others' text escaped for the terminal — C0
 * controls, DEL, the C1 controls and bytes that are not UTF-8 shown as
 * visible escapes, everything else (UTF-8 included) as it is, and cuts that
 * never split an escape or a character.  Expected strings are written by
 * hand from the byte values (ECMA-48 for the controls, RFC 3629 for UTF-8).
 *
 * term.c is sfctl's (cli/), which no library holds, so it is compiled into
 * this test directly. */
#include <stdlib.h>
#include <string.h>

#include "cli/term.h"
#include "sf_test.h"

static const char *esc(const char *s) {
    static char out[512];
    return sfctl_term_escape(s, out, sizeof out);
}

TEST(controls_are_shown_as_escapes) {
    CHECK_EQ_STR(esc("plain name"), "plain name");
    CHECK_EQ_STR(esc("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
    CHECK_EQ_STR(esc("\x1b]0;title\x07"), "\\x1b]0;title\\x07"); /* OSC: retitles the window */
    CHECK_EQ_STR(esc("a\nb\tc\rd"), "a\\nb\\tc\\rd");
    CHECK_EQ_STR(esc("\x01\x1f\x7f"), "\\x01\\x1f\\x7f");
    CHECK_EQ_STR(esc(""), "");
    CHECK_EQ_STR(esc(NULL), "");
    CHECK(sfctl_term_clean("goldfish, café, 金魚 🐟"));
    CHECK(!sfctl_term_clean("gold\x1b" "fish"));
    CHECK(!sfctl_term_clean("\xc2\x9b"));
}

TEST(c1_and_bad_utf8_are_shown_as_escapes) {
    /* U+009B (CSI in one character) and U+0085 (NEL), as UTF-8. */
    CHECK_EQ_STR(esc("a\xc2\x9b" "2Jb\xc2\x85"), "a\\u009b2Jb\\u0085");
    /* U+00A0 and up are text. */
    CHECK_EQ_STR(esc("\xc2\xa0\xc3\xa9"), "\xc2\xa0\xc3\xa9");
    /* A lone continuation byte, a raw C1 byte, 0xff, a cut sequence, an
     * overlong "/" and a surrogate: each byte that is not UTF-8. */
    CHECK_EQ_STR(esc("\x80"), "\\x80");
    CHECK_EQ_STR(esc("\x9b" "2J"), "\\x9b2J");
    CHECK_EQ_STR(esc("x\xff"), "x\\xff");
    CHECK_EQ_STR(esc("\xe9\x87"), "\\xe9\\x87");
    CHECK_EQ_STR(esc("\xc0\xaf"), "\\xc0\\xaf");
    CHECK_EQ_STR(esc("\xed\xa0\x80"), "\\xed\\xa0\\x80");
    CHECK_EQ_STR(esc("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
    CHECK_EQ_STR(esc("\xf0\x9f\x90\x9f"), "\xf0\x9f\x90\x9f");     /* U+1F41F */
}

TEST(cuts_never_split_an_escape_or_a_character) {
    char out[8];
    CHECK_EQ_STR(sfctl_term_escape("abc\x1b" "def", out, 6), "abc");  /* "\x1b" (4) does not fit in 2 */
    CHECK_EQ_STR(sfctl_term_escape("abc\x1b" "def", out, 8), "abc\\x1b");
    CHECK_EQ_STR(sfctl_term_escape("ab\xc3\xa9", out, 4), "ab");      /* é (2 bytes) does not fit in 1 */
    CHECK_EQ_STR(sfctl_term_escape("abc", out, 1), "");
    /* The bound: n bytes escape to at most SFCTL_TERM_GROWTH * n. */
    char all[256], big[256 * SFCTL_TERM_GROWTH + 1];
    for (int i = 1; i < 256; i++) all[i - 1] = (char)i;
    all[255] = 0;
    sfctl_term_escape(all, big, sizeof big);
    CHECK(strlen(big) <= 255 * SFCTL_TERM_GROWTH);
    for (const char *c = big; *c; c++) CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
    CHECK(strstr(big, "\\x1b") && strstr(big, "\\x9b") && strstr(big, "\\xff") && strstr(big, "\\x7f"));
}

TEST(json_trees_are_escaped_keys_and_values) {
    cJSON *o = cJSON_Parse("{\"name\":\"evil\\u001b[2J\",\"phases\":[{\"name\":\"ok\"}],"
                           "\"k\\u0007\":{\"v\":\"\\u009bx\"},\"n\":3}");
    CHECK(o != NULL);
    CHECK_EQ_INT(sfctl_term_escape_json(o), 0);
    CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring, "evil\\x1b[2J");
    CHECK_EQ_STR(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "phases"), 0)->child->valuestring, "ok");
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "k\\x07");
    CHECK(k != NULL);
    CHECK_EQ_STR(cJSON_GetObjectItemCaseSensitive(k, "v")->valuestring, "\\u009bx");
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(o, "n")->valueint, 3);
    cJSON_Delete(o);
    CHECK_EQ_INT(sfctl_term_escape_json(NULL), 0);
}

TEST(printf_escapes_all_but_the_final_newline) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    sfctl_term_printf(f, "sfctl: %s: %d\n", "no run 'r\x1b[2J\n'", 2);
    sfctl_term_printf(f, "%s", "no newline\x07");
    fclose(f);
    CHECK_EQ_STR(buf, "sfctl: no run 'r\\x1b[2J\\n': 2\nno newline\\x07");
    free(buf);
}

int main(void) {
    SF_RUN(controls_are_shown_as_escapes);
    SF_RUN(c1_and_bad_utf8_are_shown_as_escapes);
    SF_RUN(cuts_never_split_an_escape_or_a_character);
    SF_RUN(json_trees_are_escaped_keys_and_values);
    SF_RUN(printf_escapes_all_but_the_final_newline);
    SF_DONE();
}
