/* test_sft_rows.c: the policy's prompt and its SFT rows (common/text/sft_rows.h). */
#include <stdlib.h>
#include <string.h>

#include "common/text/bpe.h"
#include "common/runtime/error.h"
#include "common/text/sft_rows.h"
#include "tests/unit/sf_test.h"

static sf_bpe_t *bpe;

static char *decode(const int32_t *ids, int n) {
    char *t = NULL;
    size_t len = 0;
    if (sf_bpe_decode(bpe, ids, (size_t)n, &t, &len) != 0) return strdup("(undecodable)");
    return t;
}

TEST(test_prompt) {
    char buf[64];
    CHECK_EQ_INT(sf_policy_prompt("goldfish", buf, sizeof buf), 0);
    CHECK(!strcmp(buf, "Caption of a goldfish:"));
    CHECK_EQ_INT(sf_policy_prompt("goldfish", buf, 10), SF_ERANGE);
    CHECK_EQ_INT(sf_policy_prompt(NULL, buf, sizeof buf), SF_EINVAL);
}

TEST(test_rows) {
    sf_sft_rows_t r;
    CHECK_EQ_INT(sf_sft_rows_init(&r, 64), 0);
    CHECK_EQ_INT(sf_sft_rows_add(&r, bpe, "junco", "A junco in the snow"), 0);
    CHECK_EQ_INT(sf_sft_rows_add(&r, bpe, "junco", "  Is it a junco?  "), 0);
    CHECK_EQ_INT(r.n, 2);
    /* Row 0: the prompt, then " A junco in the snow." (a full stop added), then the end of text. */
    char *p = decode(r.seqs, r.plen[0]);
    CHECK(!strcmp(p, "Caption of a junco:"));
    free(p);
    char *resp = decode(r.seqs + r.plen[0], r.slen[0] - r.plen[0] - 1);
    CHECK(!strcmp(resp, " A junco in the snow."));
    free(resp);
    CHECK_EQ_INT(r.seqs[r.slen[0] - 1], sf_bpe_eot(bpe));
    CHECK_EQ_INT(r.seqs[r.slen[0]], 0); /* padding after the row */
    /* Row 1: spaces trimmed, its own '?' kept. */
    resp = decode(r.seqs + 64 + r.plen[1], r.slen[1] - r.plen[1] - 1);
    CHECK(!strcmp(resp, " Is it a junco?"));
    free(resp);
    /* Bad captions are refused and add nothing. */
    CHECK_EQ_INT(sf_sft_rows_add(&r, bpe, "junco", "   "), SF_EINVAL);
    CHECK_EQ_INT(sf_sft_rows_add(&r, bpe, "junco", "a\001b"), SF_EINVAL);
    CHECK_EQ_INT(r.n, 2);
    sf_sft_rows_free(&r);
}

/* A plain-text row (pretraining): the end of text as its one-token prompt,
 * then the caption as an SFT row has it. */
TEST(test_plain_rows) {
    sf_sft_rows_t r;
    CHECK_EQ_INT(sf_sft_rows_init(&r, 64), 0);
    CHECK_EQ_INT(sf_sft_rows_add_plain(&r, bpe, "A junco in the snow"), 0);
    CHECK_EQ_INT(r.n, 1);
    CHECK_EQ_INT(r.plen[0], 1);
    CHECK_EQ_INT(r.seqs[0], sf_bpe_eot(bpe));
    char *resp = decode(r.seqs + 1, r.slen[0] - 2);
    CHECK(!strcmp(resp, " A junco in the snow."));
    free(resp);
    CHECK_EQ_INT(r.seqs[r.slen[0] - 1], sf_bpe_eot(bpe));
    CHECK_EQ_INT(sf_sft_rows_add_plain(&r, bpe, " "), SF_EINVAL);
    CHECK_EQ_INT(sf_sft_rows_add_plain(&r, NULL, "x"), SF_EINVAL);
    CHECK_EQ_INT(sf_sft_rows_add(&r, bpe, NULL, "x"), SF_EINVAL);
    CHECK_EQ_INT(r.n, 1);
    sf_sft_rows_free(&r);
}

TEST(test_truncation) {
    /* A caption longer than the stride loses its end but keeps the end of text. */
    sf_sft_rows_t r;
    CHECK_EQ_INT(sf_sft_rows_init(&r, 16), 0);
    CHECK_EQ_INT(sf_sft_rows_init(&r, 3), SF_EINVAL);
    CHECK_EQ_INT(sf_sft_rows_init(&r, 16), 0);
    char longc[1024] = "A junco";
    for (int i = 0; i < 60; i++) strcat(longc, " and a junco");
    for (int i = 0; i < 300; i++) CHECK_EQ_INT(sf_sft_rows_add(&r, bpe, "junco", i % 2 ? longc : "A junco"), 0);
    CHECK_EQ_INT(r.n, 300); /* grown past the first allocation */
    CHECK_EQ_INT(r.slen[1], 16);
    CHECK_EQ_INT(r.seqs[16 + 15], sf_bpe_eot(bpe));
    CHECK(r.plen[1] < 16 && r.slen[0] < 16);
    sf_sft_rows_free(&r);
}

int main(void) {
    char err[256];
    if (sf_bpe_load_gpt2(NULL, &bpe, err, sizeof err) != 0) {
        fprintf(stderr, "test_sft_rows: %s (make deps fetches data/gpt2)\n", err);
        return 1;
    }
    SF_RUN(test_prompt);
    SF_RUN(test_rows);
    SF_RUN(test_plain_rows);
    SF_RUN(test_truncation);
    sf_bpe_free(&bpe);
    SF_DONE();
}
