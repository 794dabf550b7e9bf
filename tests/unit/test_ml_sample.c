/* test_ml_sample.c: KV-cache sampling against full recomputation, and the
 * sampler's log-probs and values against the forward pass that PPO uses. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "ml/sf_ml.h"
#include "tests/unit/sf_test.h"

enum { V = 61, NCTX = 48, STRIDE = 8, N = 5 };

static sf_gpt2_t *m;
static int32_t prompts[N * STRIDE];
static int plens[N] = {1, 8, 3, 5, 2};

static void setup(void) {
    sf_gpt2_config_t c = {3, 2, 32, NCTX, V, V - 1, 1e-5f};
    char err[256];
    if (sf_gpt2_new(&c, "cpu", 42, &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    for (int i = 0; i < N * STRIDE; i++) prompts[i] = (i * 7 + 3) % (V - 1);
}

static int same_samples(const sf_samples_t *a, const sf_samples_t *b, double tol) {
    if (a->n != b->n || a->max_new != b->max_new) return 0;
    for (int i = 0; i < a->n; i++) {
        if (a->lengths[i] != b->lengths[i]) return 0;
        for (int t = 0; t < a->max_new; t++) {
            size_t k = (size_t)i * a->max_new + t;
            if (a->tokens[k] != b->tokens[k]) return 0;
            if (fabs(a->logprobs[k] - b->logprobs[k]) > tol) return 0;
            if (fabs(a->values[k] - b->values[k]) > tol) return 0;
        }
    }
    return 1;
}

TEST(test_cache_matches_recompute) {
    /* Pure sampling, then top-k and top-p: same seed, same tokens. */
    struct { int top_k; float top_p; float temp; } modes[] = {{0, 1, 1}, {5, 1, 0.7f}, {0, 0.8f, 1.3f}};
    for (int k = 0; k < 3; k++) {
        sf_sample_opts_t o;
        sf_sample_opts_default(&o);
        o.max_new_tokens = 32;
        o.seed = 1234 + k;
        o.top_k = modes[k].top_k;
        o.top_p = modes[k].top_p;
        o.temperature = modes[k].temp;
        o.eos_id = -2;   /* run all 32 steps */
        sf_samples_t a, b;
        CHECK_EQ_INT(sf_gpt2_sample(m, prompts, plens, N, STRIDE, &o, &a), 0);
        o.use_cache = 0;
        CHECK_EQ_INT(sf_gpt2_sample(m, prompts, plens, N, STRIDE, &o, &b), 0);
        CHECK(same_samples(&a, &b, 1e-4));
        for (int i = 0; i < N; i++) CHECK_EQ_INT(a.lengths[i], 32);
        /* A different seed gives different tokens. */
        o.seed += 100;
        o.use_cache = 1;
        sf_samples_t c;
        CHECK_EQ_INT(sf_gpt2_sample(m, prompts, plens, N, STRIDE, &o, &c), 0);
        CHECK(memcmp(a.tokens, c.tokens, sizeof(int32_t) * N * 32) != 0);
        sf_samples_free(&a);
        sf_samples_free(&b);
        sf_samples_free(&c);
    }
}

TEST(test_logprobs_and_values_match_forward) {
    /* What the sampler reports for each token equals what a forward pass
     * over prompt + response computes: PPO's recomputed "old" log-probs. */
    sf_sample_opts_t o;
    sf_sample_opts_default(&o);
    o.max_new_tokens = 12;
    o.seed = 9;
    o.eos_id = -2;
    sf_samples_t s;
    CHECK_EQ_INT(sf_gpt2_sample(m, prompts, plens, N, STRIDE, &o, &s), 0);
    for (int i = 0; i < N; i++) {
        int T = plens[i] + 12;
        int32_t seq[STRIDE + 12];
        memcpy(seq, prompts + i * STRIDE, sizeof(int32_t) * plens[i]);
        memcpy(seq + plens[i], s.tokens + i * 12, sizeof(int32_t) * 12);
        static float lg[(STRIDE + 12) * V], val[STRIDE + 12];
        CHECK_EQ_INT(sf_gpt2_forward(m, seq, NULL, 1, T, lg, val), 0);
        for (int t = 0; t < 12; t++) {
            const float *row = lg + (size_t)(plens[i] - 1 + t) * V;
            double mx = row[0], z = 0;
            for (int v = 1; v < V; v++) mx = fmax(mx, row[v]);
            for (int v = 0; v < V; v++) z += exp(row[v] - mx);
            double lp = row[s.tokens[i * 12 + t]] - mx - log(z);
            CHECK_NEAR(s.logprobs[i * 12 + t], lp, 1e-4);
            CHECK_NEAR(s.values[i * 12 + t], val[plens[i] - 1 + t], 1e-4);
        }
    }
    sf_samples_free(&s);
}

TEST(test_greedy_and_eos) {
    sf_sample_opts_t o;
    sf_sample_opts_default(&o);
    o.max_new_tokens = 6;
    o.top_k = 1;   /* greedy */
    o.eos_id = -2;
    sf_samples_t s;
    CHECK_EQ_INT(sf_gpt2_sample(m, prompts, plens, 1, STRIDE, &o, &s), 0);
    float lg[V];
    CHECK_EQ_INT(sf_gpt2_forward(m, prompts, NULL, 1, 1, lg, NULL), 0);
    int best = 0;
    for (int v = 1; v < V; v++)
        if (lg[v] > lg[best]) best = v;
    CHECK_EQ_INT(s.tokens[0], best);
    /* Make the greedy third token the stop token: rows stop there and are
     * padded with it. */
    int stop = s.tokens[2];
    int first = 0;
    while (s.tokens[first] != stop) first++;
    sf_samples_free(&s);
    o.eos_id = stop;
    CHECK_EQ_INT(sf_gpt2_sample(m, prompts, plens, 1, STRIDE, &o, &s), 0);
    CHECK_EQ_INT(s.lengths[0], first + 1);
    for (int t = first + 1; t < 6; t++) {
        CHECK_EQ_INT(s.tokens[t], stop);
        CHECK(s.logprobs[t] == 0.0f);
    }
    sf_samples_free(&s);
}

TEST(test_bad_options) {
    sf_sample_opts_t o;
    sf_sample_opts_default(&o);
    sf_samples_t s;
    int bad_len[1] = {0};
    CHECK_EQ_INT(sf_gpt2_sample(m, prompts, bad_len, 1, STRIDE, &o, &s), SF_EINVAL);
    o.max_new_tokens = NCTX;
    CHECK_EQ_INT(sf_gpt2_sample(m, prompts, plens, 1, STRIDE, &o, &s), SF_ERANGE);
    sf_sample_opts_default(&o);
    o.temperature = 0;
    CHECK_EQ_INT(sf_gpt2_sample(m, prompts, plens, 1, STRIDE, &o, &s), SF_EINVAL);
    sf_sample_opts_default(&o);
    int32_t badp[STRIDE] = {V + 5};
    CHECK_EQ_INT(sf_gpt2_sample(m, badp, plens, 1, STRIDE, &o, &s), SF_EINVAL);
    CHECK(s.tokens == NULL);
}

int main(void) {
    sf_ml_opts_t opts = {.threads = 1};
    sf_ml_init(&opts);
    setup();
    SF_RUN(test_cache_matches_recompute);
    SF_RUN(test_logprobs_and_values_match_forward);
    SF_RUN(test_greedy_and_eos);
    SF_RUN(test_bad_options);
    sf_gpt2_free(&m);
    SF_DONE();
}
