/* test_clip_bpe_ref: the C CLIP tokenizer against an independent reference.
 *
 * tests/fixtures/numerics/clip_bpe_ids.json holds the ids that OpenAI CLIP's
 * simple_tokenizer, written again in Python from its published algorithm
 * (tools/numerics/clip_bpe_ref.py, without ftfy), gives a few hundred
 * strings — ASCII, accents, other scripts, digits, punctuation, whitespace
 * runs, html entities, words outside the vocabulary, the empty string — under
 * two vocabularies: the unit tests' and the world CLIP's.  Each string is
 * encoded here with room to spare and cut to each context the fixture lists
 * (the cut keeps the first ids and ends with the end token), and must match
 * id for id.
 *
 * The C tokenizer's rules are ASCII's (clip_bpe.c: every byte >= 0x80 is a
 * letter, only ASCII whitespace and lower-casing, no html unescaping, the
 * special tokens' text is plain text).  The fixture marks the strings that
 * need more ("limits": unicode, html, special, read from the string alone);
 * those are not compared, only counted, with how many of them differ.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/runtime/fileio.h"
#include "common/text/clip_bpe.h"
#include "sf_test.h"

#define ROOM 1024

static const char *root(void) { return getenv("SF_ROOT") ? getenv("SF_ROOT") : "."; }

static cJSON *load_fixture(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/tests/fixtures/numerics/clip_bpe_ids.json", root());
    char *text = sf_file_text(p, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    if (!j) fprintf(stderr, "cannot read %s\n", p);
    free(text);
    return j;
}

/* Prints one string's ids when they differ (the first 10 such); returns 1
 * if they match. */
static int same_ids(const char *vocab, const char *text, int ctx, const int32_t *got, int n, const cJSON *want) {
    static int printed;
    int wn = cJSON_GetArraySize(want), ok = n == wn;
    for (int i = 0; ok && i < n; i++) ok = got[i] == cJSON_GetArrayItem(want, i)->valueint;
    if (!ok && printed++ < 10) {
        fprintf(stderr, "%s, context %d, \"", vocab, ctx);
        for (const char *p = text; *p; p++)
            if ((unsigned char)*p < 0x20) fprintf(stderr, "\\x%02x", *p);
            else fputc(*p, stderr);
        fprintf(stderr, "\": C gives %d ids:", n);
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n  the reference %d ids:", wn);
        for (int i = 0; i < wn; i++) fprintf(stderr, " %d", cJSON_GetArrayItem(want, i)->valueint);
        fprintf(stderr, "\n");
    }
    return ok;
}

/* All strings under one vocabulary; returns the number of compared ones
 * that differ.  *limited counts the strings marked with limits and *differ
 * those of them whose ids differ (not an error). */
static int compare_vocab(const cJSON *fx, const char *name, int *compared, int *limited, int *differ) {
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(fx, "vocabularies"), name);
    char vp[512], mp[512], err[256];
    snprintf(vp, sizeof vp, "%s/%s", root(), cJSON_GetObjectItem(v, "vocab")->valuestring);
    snprintf(mp, sizeof mp, "%s/%s", root(), cJSON_GetObjectItem(v, "merges")->valuestring);
    sf_clip_bpe_t *b = NULL;
    if (sf_clip_bpe_load(vp, mp, &b, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const cJSON *contexts = cJSON_GetObjectItem(fx, "contexts"), *c;
    int bad = 0;
    static int32_t ids[ROOM];
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx, "cases")) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        const cJSON *e = cJSON_GetObjectItem(c, name);
        const cJSON *full = cJSON_GetObjectItem(e, "ids");
        int n = sf_clip_bpe_encode(b, text, ids, ROOM);
        if (cJSON_GetObjectItem(c, "limits")) {
            int same = n == cJSON_GetArraySize(full);
            for (int i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(full, i)->valueint;
            (*limited)++;
            *differ += !same;
            continue;
        }
        int ok = same_ids(name, text, ROOM, ids, n, full);
        const cJSON *ctx;
        cJSON_ArrayForEach(ctx, contexts) {
            char key[16];
            snprintf(key, sizeof key, "cut%d", ctx->valueint);
            const cJSON *cut = cJSON_GetObjectItem(e, key);
            n = sf_clip_bpe_encode(b, text, ids, ctx->valueint);
            ok = same_ids(name, text, ctx->valueint, ids, n, cut ? cut : full) && ok;
            /* The rest of the row is padding. */
            for (int i = n; i < ctx->valueint; i++) ok = ok && ids[i] == 0;
        }
        bad += !ok;
        (*compared)++;
    }
    sf_clip_bpe_free(&b);
    return bad;
}

TEST(fixture_vocabulary_matches_reference) {
    cJSON *fx = load_fixture();
    CHECK(fx);
    int n = 0, lim = 0, dif = 0, bad = compare_vocab(fx, "fixture", &n, &lim, &dif);
    cJSON_Delete(fx);
    fprintf(stderr, "fixture: %d strings compared, %d differ; %d not compared (beyond ASCII rules), %d of those "
            "differ\n", n, bad, lim, dif);
    CHECK(n >= 250);
    CHECK_EQ_INT(bad, 0);
}

TEST(world_vocabulary_matches_reference) {
    cJSON *fx = load_fixture();
    CHECK(fx);
    int n = 0, lim = 0, dif = 0, bad = compare_vocab(fx, "world", &n, &lim, &dif);
    cJSON_Delete(fx);
    fprintf(stderr, "world: %d strings compared, %d differ; %d not compared (beyond ASCII rules), %d of those "
            "differ\n", n, bad, lim, dif);
    CHECK(n >= 250);
    CHECK_EQ_INT(bad, 0);
}

int main(void) {
    SF_RUN(fixture_vocabulary_matches_reference);
    SF_RUN(world_vocabulary_matches_reference);
    SF_DONE();
}
