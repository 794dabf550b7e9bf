/* Unit tests for common/runtime/json_strict: one JSON value and nothing
 * after it but whitespace, and no key twice at any depth, with errors that
 * name the text, the line and the key's path.  Expected values are written
 * by hand from RFC 8259 (whitespace is space, tab, CR and LF). */
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/runtime/json_strict.h"
#include "sf_test.h"

/* Parses s (all of it) as `what`; the error goes to err. */
static int parse(const char *s, cJSON **out, char *err, size_t n) {
    return sf_json_parse_strict(s, strlen(s), "test.json", out, err, n);
}

/* 1 if s is refused with an error holding `want`; else says what came. */
static int refused(const char *s, const char *want) {
    cJSON *o = (cJSON *)1;
    char err[256] = "";
    int rc = parse(s, &o, err, sizeof err);
    if (rc == SF_EINVAL && o == NULL && strstr(err, want)) return 1;
    fprintf(stderr, "'%s': rc %d, '%s', want '%s'\n", s, rc, err, want);
    if (rc == 0) cJSON_Delete(o);
    return 0;
}

TEST(accepts_one_value_with_whitespace_around) {
    static const char *const good[] = {
        "{}", "  {\"a\": 1}  \n", "\r\n\t[1, 2, {\"b\": [true, null]}]\n\n", "3", "\"x\"", "null",
        /* The same key in different objects is no repeat. */
        "{\"a\": {\"a\": 1}, \"b\": {\"a\": 2}, \"c\": [{\"a\": 1}, {\"a\": 2}]}",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cJSON *o = NULL;
        char err[256] = "";
        int rc = parse(good[i], &o, err, sizeof err);
        if (rc) fprintf(stderr, "'%s': %s\n", good[i], err);
        CHECK_EQ_INT(rc, 0);
        CHECK(o != NULL);
        cJSON_Delete(o);
    }
    /* Only len bytes are read: what follows them is not the text's. */
    const char buf[] = "{\"a\": 1}garbage";
    cJSON *o = NULL;
    char err[256];
    CHECK_EQ_INT(sf_json_parse_strict(buf, 8, "buf", &o, err, sizeof err), 0);
    CHECK_EQ_INT(cJSON_GetObjectItemCaseSensitive(o, "a")->valueint, 1);
    cJSON_Delete(o);
}

TEST(refuses_text_after_the_value) {
    CHECK(refused("{\"a\": 1} x", "test.json: unexpected text after the JSON value at line 1, column 10"));
    CHECK(refused("{\"a\": 1}\n}\n", "after the JSON value at line 2, column 1"));
    CHECK(refused("{\"a\": 1}{\"b\": 2}", "after the JSON value at line 1, column 9"));
    CHECK(refused("[1] [2]", "after the JSON value"));
    CHECK(refused("12abc", "after the JSON value at line 1, column 3"));
    CHECK(refused("true false", "after the JSON value"));
    /* cJSON would skip any byte up to 32 as space; JSON does not. */
    CHECK(refused("{}\x0c", "after the JSON value"));
    CHECK(refused("{}\x1b[31m", "after the JSON value"));
    /* A NUL inside the text is text too. */
    const char nul[] = "{}\0{}";
    cJSON *o = NULL;
    char err[256];
    CHECK_EQ_INT(sf_json_parse_strict(nul, sizeof nul - 1, "nul", &o, err, sizeof err), SF_EINVAL);
    CHECK(o == NULL);
}

TEST(refuses_a_key_given_twice_at_any_depth) {
    CHECK(refused("{\"a\": 1, \"a\": 2}", "test.json: key 'a' is given twice"));
    CHECK(refused("{\"a\": 1, \"b\": 2, \"a\": 1}", "key 'a' is given twice"));
    CHECK(refused("{\"ppo\": {\"updates\": 3, \"updates\": 4}}", "key 'ppo.updates' is given twice"));
    CHECK(refused("{\"phases\": [{\"kind\": \"noop\"}, {\"name\": \"x\", \"payload\": {\"ms\": 1, \"ms\": 2}}]}",
                  "key 'phases[1].payload.ms' is given twice"));
    CHECK(refused("[[{\"k\": 1, \"k\": 1}]]", "key '[0][0].k' is given twice"));
    /* Keys are compared exactly: case differs, so no repeat. */
    cJSON *o = NULL;
    char err[256];
    CHECK_EQ_INT(parse("{\"a\": 1, \"A\": 2}", &o, err, sizeof err), 0);
    cJSON_Delete(o);
    /* An object too large for the small path of the check (32 keys). */
    char big[4096];
    size_t at = (size_t)snprintf(big, sizeof big, "{");
    for (int i = 0; i < 100; i++) at += (size_t)snprintf(big + at, sizeof big - at, "\"k%d\": %d, ", i, i);
    snprintf(big + at, sizeof big - at, "\"k57\": 0}");
    CHECK(refused(big, "key 'k57' is given twice"));
    big[at] = 0;
    snprintf(big + at, sizeof big - at, "\"k100\": 0}");
    CHECK_EQ_INT(parse(big, &o, err, sizeof err), 0);
    CHECK_EQ_INT(cJSON_GetArraySize(o), 101);
    cJSON_Delete(o);
}

TEST(invalid_and_empty_texts_name_the_line) {
    CHECK(refused("", "test.json: empty, not JSON"));
    CHECK(refused(" \n\t", "empty, not JSON"));
    CHECK(refused("{\"a\": 1,\n \"b\": }", "test.json: invalid JSON near line 2"));
    CHECK(refused("{\"a\": 1", "invalid JSON near line 1"));
    CHECK(refused("nope", "invalid JSON"));
}

TEST(unique_keys_on_a_tree) {
    cJSON *o = cJSON_Parse("{\"x\": {\"y\": 1, \"y\": 2}}"); /* cJSON keeps both */
    CHECK(o != NULL);
    char err[256];
    CHECK_EQ_INT(sf_json_unique_keys(o, "spec", err, sizeof err), SF_EINVAL);
    CHECK_EQ_STR(err, "spec: key 'x.y' is given twice");
    cJSON_Delete(o);
    CHECK_EQ_INT(sf_json_unique_keys(NULL, "spec", err, sizeof err), 0);
}

int main(void) {
    SF_RUN(accepts_one_value_with_whitespace_around);
    SF_RUN(refuses_text_after_the_value);
    SF_RUN(refuses_a_key_given_twice_at_any_depth);
    SF_RUN(invalid_and_empty_texts_name_the_line);
    SF_RUN(unique_keys_on_a_tree);
    SF_DONE();
}
