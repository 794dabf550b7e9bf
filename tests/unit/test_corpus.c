/* test_corpus.c: the corpus phase's prompt and store key
 * (common/method/corpus.h).  The expected prompt is Stanford Alpaca's
 * published template (no input field), written out here by hand. */
#include <stdio.h>
#include <string.h>

#include "common/method/contract.h"
#include "common/method/corpus.h"
#include "common/runtime/error.h"
#include "tests/unit/sf_test.h"

TEST(test_default_prompt_is_alpacas) {
    char out[1024];
    CHECK_EQ_INT(sf_corpus_prompt(NULL, NULL, "junco", out, sizeof out), 0);
    CHECK_EQ_STR(out, "Below is an instruction that describes a task. Write a response that appropriately "
                      "completes the request.\n\n### Instruction:\nWrite a one-sentence caption for a photo of a "
                      "junco.\n\n### Response:\n");
}

TEST(test_placeholders_and_limits) {
    char out[256];
    /* {class} may be in the template, and appear more than once. */
    CHECK_EQ_INT(sf_corpus_prompt("[{class}] {instruction} ({class})", "Describe it.", "bald eagle", out, sizeof out), 0);
    CHECK_EQ_STR(out, "[bald eagle] Describe it. (bald eagle)");
    CHECK_EQ_INT(sf_corpus_prompt("no placeholder", "A {class}.", "x", out, sizeof out), SF_EINVAL);
    CHECK_EQ_INT(sf_corpus_prompt("{instruction}", "no class here", "x", out, sizeof out), SF_EINVAL);
    /* "Q: A junco." is 11 bytes and needs 12: one fewer is too small. */
    CHECK_EQ_INT(sf_corpus_prompt("Q: {instruction}", "A {class}.", "junco", out, 12), 0);
    CHECK_EQ_STR(out, "Q: A junco.");
    CHECK_EQ_INT(sf_corpus_prompt("Q: {instruction}", "A {class}.", "junco", out, 11), SF_ERANGE);
}

TEST(test_key_names_what_decides_the_captions) {
    sf_shift_params_t a, b;
    sf_shift_params_init(&a);
    snprintf(a.corpus_model, sizeof a.corpus_model, "instruct-world");
    char ka[17], kb[17];
    sf_corpus_key(&a, ka);
    CHECK_EQ_INT((int)strlen(ka), 16);
    /* The run's own settings (seed, strategy) are not part of it... */
    b = a;
    b.seed = 99;
    snprintf(b.strategy, sizeof b.strategy, "ppo");
    sf_corpus_key(&b, kb);
    CHECK_EQ_STR(ka, kb);
    /* ...the model, the prompt and each sampling setting are. */
#define DIFFERS(change)        \
    do {                       \
        b = a;                 \
        change;                \
        sf_corpus_key(&b, kb); \
        CHECK(strcmp(ka, kb)); \
    } while (0)
    DIFFERS(snprintf(b.corpus_model, sizeof b.corpus_model, "llama/alpaca-7b"));
    DIFFERS(snprintf(b.corpus_template, sizeof b.corpus_template, "{instruction}"));
    DIFFERS(snprintf(b.corpus_instruction, sizeof b.corpus_instruction, "Caption a {class}."));
    DIFFERS(b.corpus_captions = 8);
    DIFFERS(b.corpus_attempts = 2);
    DIFFERS(b.corpus_temperature = 0.7);
    DIFFERS(b.corpus_top_p = 1);
    DIFFERS(b.corpus_max_new_tokens = 32);
#undef DIFFERS
    /* "alpaca" is Alpaca's template: naming it or writing it out is one corpus. */
    b = a;
    snprintf(b.corpus_template, sizeof b.corpus_template, "%s", SF_CORPUS_TEMPLATE_ALPACA);
    sf_corpus_key(&b, kb);
    CHECK_EQ_STR(ka, kb);
}

TEST(test_paths_and_seeds) {
    sf_shift_params_t p;
    sf_shift_params_init(&p);
    snprintf(p.corpus_model, sizeof p.corpus_model, "instruct-world");
    char key[17], dir[256], jsonl[256], meta[256], want[256];
    sf_corpus_key(&p, key);
    sf_corpus_paths("/d", key, "n01534433", dir, sizeof dir, jsonl, sizeof jsonl, meta, sizeof meta);
    snprintf(want, sizeof want, "/d/corpus/%s", key);
    CHECK_EQ_STR(dir, want);
    snprintf(want, sizeof want, "/d/corpus/%s/n01534433.jsonl", key);
    CHECK_EQ_STR(jsonl, want);
    snprintf(want, sizeof want, "/d/corpus/%s/n01534433.json", key);
    CHECK_EQ_STR(meta, want);
    const uint64_t s = sf_corpus_seed(key, "n01534433", 0);
    CHECK(s == sf_corpus_seed(key, "n01534433", 0));
    CHECK(s != sf_corpus_seed(key, "n01534433", 1));
    CHECK(s != sf_corpus_seed(key, "n01498041", 0));
    p.seed = 5; /* the run's seed does not move it */
    sf_corpus_key(&p, key);
    CHECK(s == sf_corpus_seed(key, "n01534433", 0));
}

int main(void) {
    SF_RUN(test_default_prompt_is_alpacas);
    SF_RUN(test_placeholders_and_limits);
    SF_RUN(test_key_names_what_decides_the_captions);
    SF_RUN(test_paths_and_seeds);
    SF_DONE();
}
