/* test_bpe.c: the GPT-2 tokenizer against GPT-2's reference ids.
 *
 * tests/fixtures/bpe/gpt2_cases.json holds 320 strings (spaces, punctuation,
 * digits, contractions, non-ASCII scripts, emoji, whitespace runs) with the
 * ids that the reference encoder of gpt-3-encoder@1.1.4 gives them
 * (tools/gen_bpe_fixture.js made it once).
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/text/bpe.h"
#include "common/runtime/error.h"
#include "tests/unit/sf_test.h"

static sf_bpe_t *tok;

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[n] = 0; *len = (size_t)n; }
    return buf;
}

TEST(test_load) {
    char err[256] = "";
    int rc = sf_bpe_load_gpt2(NULL, &tok, err, sizeof err);
    if (rc) fprintf(stderr, "load: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(sf_bpe_vocab_size(tok), 50257);
    CHECK_EQ_INT(sf_bpe_eot(tok), 50256);
}

TEST(test_reference_fixture) {
    CHECK(tok);
    size_t len;
    char *text = read_all("tests/fixtures/bpe/gpt2_cases.json", &len);
    CHECK(text);
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    CHECK(cJSON_IsArray(root));
    int n = cJSON_GetArraySize(root), bad = 0, nonascii = 0;
    for (int i = 0; i < n; i++) {
        cJSON *c = cJSON_GetArrayItem(root, i);
        const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
        cJSON *want = cJSON_GetObjectItem(c, "ids");
        for (const char *p = s; *p; p++) nonascii += (unsigned char)*p >= 0x80 ? 1 : 0;
        int32_t *ids;
        size_t m;
        int rc = sf_bpe_encode(tok, s, strlen(s), &ids, &m);
        int ok = rc == 0 && (int)m == cJSON_GetArraySize(want);
        for (size_t k = 0; ok && k < m; k++)
            ok = ids[k] == cJSON_GetArrayItem(want, (int)k)->valueint;
        char *back = NULL;
        if (ok && sf_bpe_decode(tok, ids, m, &back, NULL) == 0) ok = strcmp(back, s) == 0;
        else ok = 0;
        if (!ok && bad++ < 5) {
            fprintf(stderr, "mismatch on case %d \"%s\": got", i, s);
            for (size_t k = 0; k < m; k++) fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n");
        }
        free(back);
        free(ids);
    }
    cJSON_Delete(root);
    CHECK(n >= 200);
    CHECK(nonascii > 100);   /* the fixture does exercise non-ASCII text */
    CHECK_EQ_INT(bad, 0);
}

TEST(test_known_ids) {
    /* Spot checks that do not depend on the fixture file. */
    int32_t *ids;
    size_t n;
    CHECK_EQ_INT(sf_bpe_encode(tok, "Hello world", 11, &ids, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(ids[0], 15496);
    CHECK_EQ_INT(ids[1], 995);
    free(ids);
    CHECK_EQ_INT(sf_bpe_encode(tok, "", 0, &ids, &n), 0);
    CHECK_EQ_INT(n, 0);
    size_t l;
    const uint8_t *b = sf_bpe_token_bytes(tok, 995, &l);
    CHECK(b && l == 6 && memcmp(b, " world", 6) == 0);
    CHECK(sf_bpe_token_bytes(tok, 50257, &l) == NULL);
}

TEST(test_invalid_utf8_roundtrips) {
    const char s[] = "ok \xff\xfe bad \xe2\x82 cut \xc3";
    int32_t *ids;
    size_t n;
    CHECK_EQ_INT(sf_bpe_encode(tok, s, sizeof s - 1, &ids, &n), 0);
    char *back;
    size_t bl;
    CHECK_EQ_INT(sf_bpe_decode(tok, ids, n, &back, &bl), 0);
    CHECK_EQ_INT(bl, sizeof s - 1);
    CHECK(memcmp(back, s, bl) == 0);
    free(back);
    free(ids);
}

TEST(test_decode_rejects_bad_ids) {
    int32_t ids[2] = {15496, 99999};
    char *t;
    CHECK_EQ_INT(sf_bpe_decode(tok, ids, 2, &t, NULL), SF_EINVAL);
    ids[1] = -1;
    CHECK_EQ_INT(sf_bpe_decode(tok, ids, 2, &t, NULL), SF_EINVAL);
}

TEST(test_bad_files) {
    char dir[] = "/tmp/sf_bpe_XXXXXX";
    CHECK(mkdtemp(dir));
    char enc[256], voc[256], err[256];
    snprintf(enc, sizeof enc, "%s/encoder.json", dir);
    snprintf(voc, sizeof voc, "%s/vocab.bpe", dir);
    sf_bpe_t *b = NULL;
    CHECK_EQ_INT(sf_bpe_load(enc, voc, &b, err, sizeof err), SF_EIO);
    FILE *f = fopen(enc, "w");
    fputs("{\"a\": 0, \"b\": ", f);   /* truncated JSON */
    fclose(f);
    CHECK_EQ_INT(sf_bpe_load(enc, voc, &b, err, sizeof err), SF_EFORMAT);
    f = fopen(enc, "w");
    fputs("{\"a\": 0, \"b\": 1, \"ab\": 1}", f);   /* duplicate id */
    fclose(f);
    CHECK_EQ_INT(sf_bpe_load(enc, voc, &b, err, sizeof err), SF_EFORMAT);
    f = fopen(enc, "w");
    fputs("{\"a\": 0, \"b\": 1, \"ab\": 2}", f);
    fclose(f);
    f = fopen(voc, "w");
    fputs("#version: 0.2\na b\nnospace\n", f);
    fclose(f);
    CHECK_EQ_INT(sf_bpe_load(enc, voc, &b, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, ":3:") != NULL);
    f = fopen(voc, "w");
    fputs("#version: 0.2\na b\n", f);
    fclose(f);
    CHECK_EQ_INT(sf_bpe_load(enc, voc, &b, err, sizeof err), 0);
    int32_t *ids;
    size_t n;
    CHECK_EQ_INT(sf_bpe_encode(b, "ab", 2, &ids, &n), 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ids[0], 2);
    free(ids);
    /* A byte that the vocabulary lacks is an error, not a crash. */
    CHECK_EQ_INT(sf_bpe_encode(b, "c", 1, &ids, &n), SF_EFORMAT);
    sf_bpe_free(&b);
    CHECK(b == NULL);
    unlink(enc);
    unlink(voc);
    rmdir(dir);
}

/* The in-memory loader reads the same files the same way (GPT-2's own
 * vocabulary gives the same ids), and its contents need no NUL. */
TEST(test_load_mem) {
    CHECK(tok);
    size_t el, vl;
    char *enc = read_all("data/gpt2/encoder.json", &el), *voc = read_all("data/gpt2/vocab.bpe", &vl);
    CHECK(enc && voc);
    sf_bpe_t *b = NULL;
    char err[256];
    CHECK_EQ_INT(sf_bpe_load_mem(enc, el, voc, vl, &b, err, sizeof err), 0);
    free(enc);
    free(voc);
    CHECK_EQ_INT(sf_bpe_vocab_size(b), 50257);
    const char s[] = "A photo of a goldfinch, isn't it? 123 \xc3\xa9t\xc3\xa9";
    int32_t *x, *y;
    size_t nx, ny;
    CHECK_EQ_INT(sf_bpe_encode(tok, s, sizeof s - 1, &x, &nx), 0);
    CHECK_EQ_INT(sf_bpe_encode(b, s, sizeof s - 1, &y, &ny), 0);
    CHECK_EQ_INT(nx, ny);
    CHECK(memcmp(x, y, nx * sizeof *x) == 0);
    free(x);
    free(y);
    sf_bpe_free(&b);

    static const char e[] = "{\"a\": 0, \"b\": 1, \"ab\": 2}XXXX";
    static const char v[] = "#version: 0.2\na b\nXXXX";
    CHECK_EQ_INT(sf_bpe_load_mem(e, sizeof e - 5, v, sizeof v - 5, &b, err, sizeof err), 0);
    CHECK_EQ_INT(sf_bpe_encode(b, "ab", 2, &x, &nx), 0);
    CHECK_EQ_INT(nx, 1);
    CHECK_EQ_INT(x[0], 2);
    free(x);
    sf_bpe_free(&b);
    static const char bad[] = "#version: 0.2\na b\na\0 b\n";   /* a NUL is a byte of a bad merge */
    CHECK_EQ_INT(sf_bpe_load_mem(e, sizeof e - 5, bad, sizeof bad - 1, &b, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "vocab.bpe:3:") != NULL);
    CHECK(b == NULL);
}

int main(void) {
    SF_RUN(test_load);
    SF_RUN(test_load_mem);
    SF_RUN(test_reference_fixture);
    SF_RUN(test_known_ids);
    SF_RUN(test_invalid_utf8_roundtrips);
    SF_RUN(test_decode_rejects_bad_ids);
    SF_RUN(test_bad_files);
    sf_bpe_free(&tok);
    SF_DONE();
}
