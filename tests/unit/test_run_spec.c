/* test_run_spec.c: the "ppo" and "sft" parts of a run spec and the models
 * path rule (common/method/run_spec.h), which the coordinator and the learner share. */
#include <math.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/method/run_spec.h"
#include "tests/unit/sf_test.h"

static int parse_ppo(const char *json, sf_ppo_spec_t *p, char *err, size_t n) {
    cJSON *s = cJSON_Parse(json);
    sf_ppo_spec_init(p);
    int rc = s ? sf_ppo_spec_parse(s, p, err, n) : -100;
    cJSON_Delete(s);
    return rc;
}

static int parse_sft(const char *json, sf_sft_spec_t *p, char *err, size_t n) {
    cJSON *s = cJSON_Parse(json);
    int rc = s ? sf_sft_spec_parse(s, p, err, n) : -100;
    cJSON_Delete(s);
    return rc;
}

TEST(test_ppo_defaults_and_values) {
    sf_ppo_spec_t p;
    char err[256];
    CHECK_EQ_INT(parse_ppo("{}", &p, err, sizeof err), 0);
    CHECK_EQ_INT(p.updates, 100);
    CHECK_EQ_INT(p.batch_size, 64);
    CHECK_EQ_INT(p.mini_batch_size, 8);
    CHECK_EQ_INT(p.ppo_epochs, 4);
    CHECK_EQ_INT(p.max_staleness, 2);
    CHECK_EQ_INT(p.prompt_baseline, 1);
    CHECK_EQ_INT(p.use_rollout_logprobs, 1);   /* staleness 2: the rollouts' own log-probs */
    CHECK(isnan(p.learning_rate) && isnan(p.init_kl_coef) && isnan(p.max_grad_norm));   /* the trainer's */
    CHECK_EQ_INT(parse_ppo("{\"ppo\":{\"updates\":7,\"batch_size\":12,\"mini_batch_size\":4,\"learning_rate\":2e-4,"
                           "\"init_kl_coef\":0.03,\"prompt_baseline\":0,\"gamma\":0.9}}", &p, err, sizeof err), 0);
    CHECK_EQ_INT(p.updates, 7);
    CHECK_EQ_INT(p.batch_size, 12);
    CHECK_EQ_INT(p.mini_batch_size, 4);
    CHECK_EQ_INT(p.prompt_baseline, 0);
    CHECK_NEAR(p.learning_rate, 2e-4, 1e-12);
    CHECK_NEAR(p.init_kl_coef, 0.03, 1e-12);
    CHECK_NEAR(p.gamma, 0.9, 1e-12);
    CHECK(isnan(p.lam));
    CHECK_EQ_INT(p.use_rollout_logprobs, 1);
    /* Synchronous (no stale rollout): recomputed, as TRL; either can be set. */
    CHECK_EQ_INT(parse_ppo("{\"ppo\":{\"max_staleness\":0}}", &p, err, sizeof err), 0);
    CHECK_EQ_INT(p.use_rollout_logprobs, 0);
    CHECK_EQ_INT(parse_ppo("{\"ppo\":{\"max_staleness\":0,\"use_rollout_logprobs\":1}}", &p, err, sizeof err), 0);
    CHECK_EQ_INT(p.use_rollout_logprobs, 1);
    CHECK_EQ_INT(parse_ppo("{\"ppo\":{\"use_rollout_logprobs\":0}}", &p, err, sizeof err), 0);
    CHECK_EQ_INT(p.use_rollout_logprobs, 0);
}

TEST(test_ppo_errors_name_the_key) {
    static const struct { const char *json, *want; } bad[] = {
        {"{\"ppo\":3}", "'ppo' must be an object"},
        {"{\"ppo\":{\"learnig_rate\":1e-4}}", "in 'ppo', unknown key 'learnig_rate'"},
        {"{\"ppo\":{\"updates\":0}}", "in 'ppo', 'updates' = 0 is outside [1, 10000000]"},
        {"{\"ppo\":{\"batch_size\":2.5}}", "in 'ppo', 'batch_size' must be a whole number"},
        {"{\"ppo\":{\"learning_rate\":-1}}", "in 'ppo', 'learning_rate' must be a number in"},
        {"{\"ppo\":{\"gamma\":\"high\"}}", "in 'ppo', 'gamma' must be a number in"},
        {"{\"ppo\":{\"prompt_baseline\":2}}", "in 'ppo', 'prompt_baseline' = 2 is outside [0, 1]"},
        {"{\"ppo\":{\"use_rollout_logprobs\":true}}", "in 'ppo', 'use_rollout_logprobs' must be a whole number"},
        {"{\"ppo\":{\"batch_size\":32,\"mini_batch_size\":5}}",
         "in 'ppo', 'batch_size' 32 must be a multiple of 'mini_batch_size' 5"},
        {"{\"ppo\":{\"batch_size\":4}}", "'batch_size' 4 must be a multiple of 'mini_batch_size' 8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sf_ppo_spec_t p;
        char err[256] = "";
        CHECK_EQ_INT(parse_ppo(bad[i].json, &p, err, sizeof err), SF_EINVAL);
        if (!strstr(err, bad[i].want)) fprintf(stderr, "# %s: got '%s'\n", bad[i].json, err);
        CHECK(strstr(err, bad[i].want) != NULL);
        CHECK(strncmp(err, "run spec: ", 10) == 0);
    }
}

TEST(test_sft) {
    sf_sft_spec_t s;
    char err[256] = "";
    CHECK_EQ_INT(parse_sft("{}", &s, err, sizeof err), 0);
    CHECK_EQ_INT(s.on, 0);
    CHECK_EQ_INT(parse_sft("{\"sft\":{\"steps\":500}}", &s, err, sizeof err), 0);
    CHECK_EQ_INT(s.on, 1);
    CHECK_EQ_INT(s.steps, 500);
    CHECK_EQ_INT(s.batch_size, 16);
    CHECK_EQ_INT(s.warmup, 50);            /* min(100, steps / 10) */
    CHECK_EQ_INT(s.captions_per_class, 16);
    CHECK_NEAR(s.learning_rate, 3e-3, 1e-12);
    CHECK_NEAR(s.min_learning_rate, 3e-4, 1e-12);
    CHECK_EQ_STR(s.corpus, "");            /* the world's */
    CHECK_EQ_INT(parse_sft("{\"sft\":{\"steps\":5000,\"learning_rate\":1e-3,\"corpus\":\"corpora/a.jsonl\"}}", &s, err,
                           sizeof err), 0);
    CHECK_EQ_INT(s.warmup, 100);
    CHECK_NEAR(s.min_learning_rate, 1e-4, 1e-12);
    CHECK_EQ_STR(s.corpus, "corpora/a.jsonl");
    CHECK_EQ_INT(parse_sft("{\"sft\":{\"steps\":5,\"corpus\":\"world\"}}", &s, err, sizeof err), 0);
    CHECK_EQ_STR(s.corpus, "");
    static const struct { const char *json, *want; } bad[] = {
        {"{\"sft\":[]}", "'sft' must be an object"},
        {"{\"sft\":{\"corpus\":\"world\"}}", "in 'sft', 'steps' is required"},
        {"{\"sft\":{\"steps\":0}}", "in 'sft', 'steps' = 0 is outside"},
        {"{\"sft\":{\"steps\":5,\"epochs\":2}}", "in 'sft', unknown key 'epochs'"},
        {"{\"sft\":{\"steps\":5,\"captions_per_class\":65}}", "in 'sft', 'captions_per_class' = 65 is outside"},
        {"{\"sft\":{\"steps\":5,\"corpus\":\"/etc/passwd\"}}", "in 'sft', 'corpus' must be"},
        {"{\"sft\":{\"steps\":5,\"corpus\":\"a/../../b\"}}", "in 'sft', 'corpus' must be"},
        {"{\"sft\":{\"steps\":5,\"corpus\":7}}", "in 'sft', 'corpus' must be"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char e[256] = "";
        CHECK_EQ_INT(parse_sft(bad[i].json, &s, e, sizeof e), SF_EINVAL);
        if (!strstr(e, bad[i].want)) fprintf(stderr, "# %s: got '%s'\n", bad[i].json, e);
        CHECK(strstr(e, bad[i].want) != NULL);
    }
}

TEST(test_models_path) {
    static const char *const good[] = {"policy-sft.safetensors", "runs/r1/sft.safetensors", "a.b/c_d-e", NULL};
    static const char *const bad[] = {"", "/abs", "..", "../x", "a/../b", "a//b", "a/", "./a", "a/.", "a b",
                                      "a\\b", "~/x", NULL};
    for (const char *const *g = good; *g; g++) CHECK(sf_spec_models_path_ok(*g));
    for (const char *const *b = bad; *b; b++) {
        if (sf_spec_models_path_ok(*b)) fprintf(stderr, "# accepted '%s'\n", *b);
        CHECK(!sf_spec_models_path_ok(*b));
    }
    char longp[300];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    CHECK(!sf_spec_models_path_ok(longp));
}

TEST(repeated_keys_are_errors) {
    static const char *const allowed[] = {"world", "seed", NULL};
    char err[200] = "";
    cJSON *o = cJSON_Parse("{\"world\":\"a\",\"seed\":1,\"world\":\"b\"}");
    CHECK(o != NULL);
    CHECK_EQ_INT(sf_spec_keys(o, allowed, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "'world' is given twice") != NULL);
    cJSON_Delete(o);
    o = cJSON_Parse("{\"world\":\"a\",\"seed\":1}");
    CHECK_EQ_INT(sf_spec_keys(o, allowed, err, sizeof err), 0);
    cJSON_Delete(o);
}

int main(void) {
    SF_RUN(repeated_keys_are_errors);
    SF_RUN(test_ppo_defaults_and_values);
    SF_RUN(test_ppo_errors_name_the_key);
    SF_RUN(test_sft);
    SF_RUN(test_models_path);
    SF_DONE();
}
