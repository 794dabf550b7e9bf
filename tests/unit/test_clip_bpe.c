/* test_clip_bpe: CLIP's BPE tokenizer — splitting, merges by rank, start and
 * end tokens, the 77-token cut, file round trips and corrupt files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/runtime/fileio.h"
#include "common/text/clip_bpe.h"
#include "common/runtime/error.h"
#include "sf_test.h"

static const char *const words[] = {"a", "photo", "of", "cat", "cats", "the", "on", "beach", "sketch", "it"};
#define NW (int)(sizeof words / sizeof words[0])

static sf_clip_bpe_t *make(void) {
    sf_clip_bpe_t *b = NULL;
    sf_clip_bpe_from_words(words, NW, &b);
    return b;
}

static const char *tok(const sf_clip_bpe_t *b, int32_t id) { return sf_clip_bpe_token(b, id); }

TEST(words_are_single_tokens) {
    sf_clip_bpe_t *b = make();
    CHECK(b);
    int32_t ids[77];
    int n = sf_clip_bpe_encode(b, "  A Photo of\ta CAT on the beach!", ids, 77);
    CHECK_EQ_INT(n, 11);
    CHECK_EQ_INT(ids[0], sf_clip_bpe_sot(b));
    CHECK_EQ_STR(tok(b, ids[1]), "a</w>");
    CHECK_EQ_STR(tok(b, ids[2]), "photo</w>");
    CHECK_EQ_STR(tok(b, ids[3]), "of</w>");
    CHECK_EQ_STR(tok(b, ids[5]), "cat</w>");
    CHECK_EQ_STR(tok(b, ids[8]), "beach</w>");
    CHECK_EQ_STR(tok(b, ids[9]), "!</w>");
    CHECK_EQ_INT(ids[10], sf_clip_bpe_eot(b));
    for (int i = 11; i < 77; i++) CHECK_EQ_INT(ids[i], 0);
    /* The real layout: 256 bytes, 256 bytes with </w>, merges, then the two
     * special tokens last. */
    CHECK_EQ_STR(tok(b, 0), "!");
    CHECK_EQ_STR(tok(b, 256), "!</w>");
    CHECK_EQ_INT(sf_clip_bpe_eot(b), sf_clip_bpe_vocab_size(b) - 1);
    CHECK_EQ_STR(tok(b, sf_clip_bpe_sot(b)), "<|startoftext|>");
    sf_clip_bpe_free(&b);
    CHECK(b == NULL);
}

TEST(unknown_words_fall_back_to_pieces) {
    sf_clip_bpe_t *b = make();
    int32_t ids[77];
    int n = sf_clip_bpe_encode(b, "zebra", ids, 77);
    CHECK(n > 3);
    char joined[64] = "";
    for (int i = 1; i < n - 1; i++) strcat(joined, tok(b, ids[i]));
    CHECK_EQ_STR(joined, "zebra</w>");
    /* Prefixes reuse merges: "cats" is its own token, "catsup" is not. */
    n = sf_clip_bpe_encode(b, "cats catsup", ids, 77);
    CHECK_EQ_STR(tok(b, ids[1]), "cats</w>");
    CHECK(n > 4);
    sf_clip_bpe_free(&b);
}

TEST(splitting_rules) {
    sf_clip_bpe_t *b = make();
    int32_t ids[77];
    /* Contractions, single digits, runs of punctuation; lower-cased.  Here
     * "'s" and "..." are not in the vocabulary, so they come in pieces:
     * sot it ' s 4 2 . . . eot. */
    int n = sf_clip_bpe_encode(b, "IT's 42...", ids, 77);
    CHECK_EQ_INT(n, 10);
    CHECK_EQ_STR(tok(b, ids[8]), ".</w>");
    CHECK_EQ_STR(tok(b, ids[1]), "it</w>");
    char s[32] = "";
    strcat(s, tok(b, ids[2]));
    strcat(s, tok(b, ids[3]));
    CHECK_EQ_STR(s, "'s</w>");
    CHECK_EQ_STR(tok(b, ids[4]), "4</w>");
    CHECK_EQ_STR(tok(b, ids[5]), "2</w>");
    sf_clip_bpe_free(&b);
}

TEST(context_cut_keeps_eot) {
    sf_clip_bpe_t *b = make();
    int32_t ids[77];
    char text[2000] = "";
    for (int i = 0; i < 100; i++) strcat(text, "a cat ");
    int n = sf_clip_bpe_encode(b, text, ids, 77);
    CHECK_EQ_INT(n, 77);
    CHECK_EQ_INT(ids[76], sf_clip_bpe_eot(b));
    CHECK_EQ_INT(sf_clip_bpe_encode(b, "a", ids, 1), SF_EINVAL);
    n = sf_clip_bpe_encode(b, "a cat", ids, 3);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(ids[2], sf_clip_bpe_eot(b));
    sf_clip_bpe_free(&b);
}

TEST(save_load_round_trip_and_fixture) {
    sf_clip_bpe_t *b = make(), *c = NULL;
    char dir[] = "/tmp/sf_clip_bpe_XXXXXX", v[128], m[128], err[256];
    CHECK(mkdtemp(dir));
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    CHECK_EQ_INT(sf_clip_bpe_save(b, v, m), 0);
    CHECK_EQ_INT(sf_clip_bpe_load(v, m, &c, err, sizeof err), 0);
    const char *texts[] = {"a sketch of the cat", "zebra on the beach, at night", "cats!!"};
    for (int i = 0; i < 3; i++) {
        int32_t x[77], y[77];
        CHECK_EQ_INT(sf_clip_bpe_encode(b, texts[i], x, 77), sf_clip_bpe_encode(c, texts[i], y, 77));
        CHECK(memcmp(x, y, sizeof x) == 0);
    }
    sf_clip_bpe_free(&c);
    /* The checked-in fixture is this word list's tokenizer; its ids are fixed. */
    const char *root = getenv("SF_ROOT") ? getenv("SF_ROOT") : ".";
    char fv[512], fm[512];
    snprintf(fv, sizeof fv, "%s/tests/fixtures/clip/vocab.json", root);
    snprintf(fm, sizeof fm, "%s/tests/fixtures/clip/merges.txt", root);
    CHECK_EQ_INT(sf_clip_bpe_load(fv, fm, &c, err, sizeof err), 0);
    int32_t x[8];
    CHECK_EQ_INT(sf_clip_bpe_encode(c, "a photo of a cat", x, 8), 7);
    /* The expected ids are read from the fixture's vocab.json with cJSON,
     * not from a tokenizer: each word of the text is one token there. */
    char *vj = sf_file_text(fv, NULL);
    cJSON *vocab = vj ? cJSON_Parse(vj) : NULL;
    free(vj);
    CHECK(vocab != NULL);
    const char *tokens[7] = {"<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", "<|endoftext|>"};
    for (int i = 0; i < 7; i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(vocab, tokens[i]);
        if (!cJSON_IsNumber(id) || x[i] != id->valueint) {
            fprintf(stderr, "token %d: got id %d, vocab.json has %s = %d\n", i, x[i], tokens[i],
                    cJSON_IsNumber(id) ? id->valueint : -1);
            cJSON_Delete(vocab);
            CHECK(0);
        }
    }
    cJSON_Delete(vocab);
    CHECK_EQ_STR(sf_clip_bpe_token(c, x[2]), "photo</w>");
    sf_clip_bpe_free(&c);
    sf_clip_bpe_free(&b);
    unlink(v);
    unlink(m);
    rmdir(dir);
}

TEST(corrupt_files_are_errors) {
    char dir[] = "/tmp/sf_clip_bpe_XXXXXX", v[128], m[128], err[256];
    CHECK(mkdtemp(dir));
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    sf_clip_bpe_t *c = NULL;
    CHECK_EQ_INT(sf_clip_bpe_load("/nonexistent/vocab.json", m, &c, err, sizeof err), SF_EIO);
    FILE *f = fopen(v, "w");
    fputs("{\"a\": 0, \"b\": 1, \"<|startoftext|>\": 2, \"<|endoftext|>\": 3", f);   /* truncated */
    fclose(f);
    f = fopen(m, "w");
    fputs("#version: 0.2\na b\n", f);
    fclose(f);
    CHECK_EQ_INT(sf_clip_bpe_load(v, m, &c, err, sizeof err), SF_EFORMAT);
    f = fopen(v, "w");
    fputs("{\"a\": 0, \"b\": 1, \"<|startoftext|>\": 2, \"<|endoftext|>\": 3}", f);
    fclose(f);
    /* "a b" makes "ab", which is not in the vocabulary. */
    CHECK_EQ_INT(sf_clip_bpe_load(v, m, &c, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "merge"));
    f = fopen(v, "w");
    fputs("{\"a\": 0, \"b\": 5, \"<|startoftext|>\": 2, \"<|endoftext|>\": 3}", f);   /* hole in ids */
    fclose(f);
    CHECK_EQ_INT(sf_clip_bpe_load(v, m, &c, err, sizeof err), SF_EFORMAT);
    f = fopen(v, "w");
    fputs("{\"a\": 0, \"b\": 1}", f);   /* no special tokens */
    fclose(f);
    CHECK_EQ_INT(sf_clip_bpe_load(v, m, &c, err, sizeof err), SF_EFORMAT);
    CHECK(c == NULL);
    unlink(v);
    unlink(m);
    rmdir(dir);
}

/* The in-memory loader gives the tokenizer the files give; an id past the
 * entries' count is refused before any table is sized for it. */
TEST(load_mem) {
    sf_clip_bpe_t *b = make(), *c = NULL;
    char dir[] = "/tmp/sf_clip_bpe_XXXXXX", v[128], m[128], err[256];
    CHECK(mkdtemp(dir));
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    CHECK_EQ_INT(sf_clip_bpe_save(b, v, m), 0);
    char *vt = NULL, *mt = NULL;
    size_t vl = 0, ml = 0;
    FILE *f = fopen(v, "rb");
    CHECK(f && getdelim(&vt, &vl, 0, f) > 0);
    fclose(f);
    f = fopen(m, "rb");
    CHECK(f && getdelim(&mt, &ml, 0, f) > 0);
    fclose(f);
    CHECK_EQ_INT(sf_clip_bpe_load_mem(vt, strlen(vt), mt, strlen(mt), &c, err, sizeof err), 0);
    int32_t x[77], y[77];
    CHECK_EQ_INT(sf_clip_bpe_encode(b, "a sketch of the cats", x, 77), sf_clip_bpe_encode(c, "a sketch of the cats", y, 77));
    CHECK(memcmp(x, y, sizeof x) == 0);
    sf_clip_bpe_free(&c);
    free(vt);
    free(mt);
    static const char huge[] = "{\"<|startoftext|>\": 0, \"<|endoftext|>\": 16777216}";
    CHECK_EQ_INT(sf_clip_bpe_load_mem(huge, sizeof huge - 1, "", 0, &c, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "vocab.json"));
    CHECK(c == NULL);
    sf_clip_bpe_free(&b);
    unlink(v);
    unlink(m);
    rmdir(dir);
}

int main(int argc, char **argv) {
    /* `test_clip_bpe --write-fixture DIR` regenerates the fixture files. */
    if (argc == 3 && strcmp(argv[1], "--write-fixture") == 0) {
        sf_clip_bpe_t *b = make();
        char v[512], m[512];
        snprintf(v, sizeof v, "%s/vocab.json", argv[2]);
        snprintf(m, sizeof m, "%s/merges.txt", argv[2]);
        int rc = sf_clip_bpe_save(b, v, m);
        sf_clip_bpe_free(&b);
        return rc ? 1 : 0;
    }
    SF_RUN(words_are_single_tokens);
    SF_RUN(unknown_words_fall_back_to_pieces);
    SF_RUN(splitting_rules);
    SF_RUN(context_cut_keeps_eot);
    SF_RUN(save_load_round_trip_and_fixture);
    SF_RUN(corrupt_files_are_errors);
    SF_RUN(load_mem);
    SF_DONE();
}
