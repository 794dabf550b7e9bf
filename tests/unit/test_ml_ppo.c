/* test_ml_ppo.c: the PPO pieces against hand-computed values, the SFT step,
 * the ratio guard, the fast PPO step against the straightforward one, and an
 * RL sanity run: a tiny GPT-2 rewarded for one word learns to say it while
 * its KL to the reference stays bounded. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/runtime/error.h"
#include "ml/sf_ml.h"
#include "tests/unit/sf_test.h"

TEST(test_rewards) {
    /* -beta * (logp - logp_ref) per token, the score at the last masked one. */
    float lp[6] = {-1, -2, -0.5f, -1, -1, 0}, ref[6] = {-1.5f, -2, -1, -0.5f, -1, 0};
    float mask[6] = {1, 1, 1, 1, 1, 0}, scores[2] = {2, -1}, r[6];
    CHECK_EQ_INT(sf_ppo_rewards(scores, lp, ref, mask, 2, 3, 0.5f, SF_KL_KL, r), 0);
    float want[6] = {-0.25f, 0, 1.75f, 0.25f, -1, 0};
    for (int i = 0; i < 6; i++) CHECK_NEAR(r[i], want[i], 1e-6);
    CHECK_EQ_INT(sf_ppo_rewards(scores, lp, ref, mask, 2, 3, 0.5f, SF_KL_ABS, r), 0);
    CHECK_NEAR(r[3], -0.25, 1e-6);   /* |-0.5| penalised, not rewarded */
}

TEST(test_gae) {
    /* gamma 1, lambda 0.5, by hand:
     * row 0: delta = (1, 1, -2) -> A = (1 + .5 * 0, 1 + .5 * -2, -2) = (1, 0, -2)
     * row 1 (last token masked): values (1, 2, 0), rewards (0, 1, 0)
     *        delta = (1, -1, 0) -> A = (0.5, -1, 0) */
    float v[6] = {1, 2, 3, 1, 2, 7}, r[6] = {0, 0, 1, 0, 1, 5}, m[6] = {1, 1, 1, 1, 1, 0};
    float a[6], ret[6];
    CHECK_EQ_INT(sf_ppo_gae(v, r, m, 2, 3, 1.0f, 0.5f, a, ret), 0);
    float wa[6] = {1, 0, -2, 0.5f, -1, 0}, wr[6] = {2, 2, 1, 1.5f, 1, 0};
    for (int i = 0; i < 6; i++) {
        CHECK_NEAR(a[i], wa[i], 1e-6);
        CHECK_NEAR(ret[i], wr[i], 1e-6);
    }
    /* gamma 0.9, lambda 1: A_t = sum_k 0.9^k delta_{t+k}. */
    float v1[2] = {0, 0}, r1[2] = {1, 2}, m1[2] = {1, 1};
    CHECK_EQ_INT(sf_ppo_gae(v1, r1, m1, 1, 2, 0.9f, 1.0f, a, ret), 0);
    CHECK_NEAR(a[0], 1 + 0.9 * 2, 1e-6);
    CHECK_NEAR(a[1], 2, 1e-6);
}

TEST(test_whiten) {
    float x[5] = {1, 2, 3, 4, 100}, m[5] = {1, 1, 1, 1, 0}, w[5];
    CHECK_EQ_INT(sf_ppo_whiten(x, m, 5, 1, w), 0);
    double sd = sqrt(5.0 / 3.0);   /* Bessel: 5/4 * 4/3 */
    for (int i = 0; i < 4; i++) CHECK_NEAR(w[i], (x[i] - 2.5) / sd, 1e-5);
    CHECK_EQ_INT(sf_ppo_whiten(x, m, 5, 0, w), 0);
    for (int i = 0; i < 4; i++) CHECK_NEAR(w[i], (x[i] - 2.5) / sd + 2.5, 1e-5);
}

TEST(test_loss_clipping) {
    /* ratios 1.5, 0.5, 1.1 with advantages 1, 1, -1 and clip 0.2:
     *   pg = mean(max(-A r, -A clip(r))) = mean(-1.2, -0.5, 1.1) = -0.2
     * values 0.5, -0.1, 0.3 from old 0 with clip 0.2 against returns 1, 0, 0:
     *   vf = 0.5 * mean(max(.25, .64), max(.01, .01), max(.09, .04)) = 0.74 / 6 */
    sf_ppo_config_t c;
    sf_ppo_config_default(&c);
    float old_lp[3] = {0, 0, 0}, lp[3] = {logf(1.5f), logf(0.5f), logf(1.1f)};
    float old_v[3] = {0, 0, 0}, vp[3] = {0.5f, -0.1f, 0.3f}, adv[3] = {1, 1, -1},
          ret[3] = {1, 0, 0}, m[3] = {1, 1, 1};
    sf_ppo_stats_t s;
    CHECK_EQ_INT(sf_ppo_loss(old_lp, lp, old_v, vp, adv, ret, m, 3, &c, &s), 0);
    CHECK_NEAR(s.pg_loss, -0.2, 1e-6);
    CHECK_NEAR(s.vf_loss, 0.74 / 6, 1e-6);
    CHECK_NEAR(s.total_loss, -0.2 + 0.1 * 0.74 / 6, 1e-6);
    CHECK_NEAR(s.clipfrac, 1.0 / 3, 1e-6);
    CHECK_NEAR(s.vf_clipfrac, 1.0 / 3, 1e-6);
    double d0 = log(1.5), d1 = log(0.5), d2 = log(1.1);
    CHECK_NEAR(s.approxkl, 0.5 * (d0 * d0 + d1 * d1 + d2 * d2) / 3, 1e-6);
    CHECK_NEAR(s.policykl, -(d0 + d1 + d2) / 3, 1e-6);
    CHECK_NEAR(s.ratio_mean, 3.1 / 3, 1e-6);
    /* A mask drops the third token from every mean. */
    float m2[3] = {1, 1, 0};
    CHECK_EQ_INT(sf_ppo_loss(old_lp, lp, old_v, vp, adv, ret, m2, 3, &c, &s), 0);
    CHECK_NEAR(s.pg_loss, -0.85, 1e-6);
}

TEST(test_kl_controller) {
    /* error clipped to +-0.2, scaled by n_steps / horizon */
    CHECK_NEAR(sf_ppo_kl_update(0.2f, 9.0f, 256, 6, 10000), 0.2 * (1 + 0.2 * 256 / 10000.0), 1e-7);
    CHECK_NEAR(sf_ppo_kl_update(0.2f, 5.4f, 256, 6, 10000), 0.2 * (1 - 0.1 * 256 / 10000.0), 1e-7);
    CHECK_NEAR(sf_ppo_kl_update(0.2f, 0.0f, 10000, 6, 10000), 0.2 * 0.8, 1e-7);
    CHECK_NEAR(sf_ppo_kl_update(0.2f, 6.0f, 256, 6, 10000), 0.2, 1e-7);
}

/* ---- with a model ---- */

enum { V = 32, QLEN = 4, RLEN = 6, NB = 32, TARGET = 7 };

static sf_gpt2_t *new_tiny(uint64_t seed) {
    sf_gpt2_config_t c = {2, 2, 32, 16, V, V - 1, 1e-5f};
    sf_gpt2_t *m = NULL;
    char err[256];
    if (sf_gpt2_new(&c, "cpu", seed, &m, err, sizeof err)) fprintf(stderr, "%s\n", err);
    return m;
}

TEST(test_sft_learns) {
    sf_gpt2_t *m = new_tiny(3);
    CHECK(m);
    /* Prompt [i] -> response [i+1, i+2]: loss on the response falls. */
    int32_t seqs[8 * 3];
    int pl[8], sl[8];
    for (int i = 0; i < 8; i++) {
        seqs[i * 3] = i;
        seqs[i * 3 + 1] = i + 1;
        seqs[i * 3 + 2] = i + 2;
        pl[i] = 1;
        sl[i] = 3;
    }
    float first = 0, loss = 0;
    for (int s = 0; s < 60; s++) {
        CHECK_EQ_INT(sf_gpt2_sft_step(m, seqs, pl, sl, 8, 3, 1e-2f, 1.0f, &loss), 0);
        if (s == 0) first = loss;
    }
    printf("# SFT loss %.3f -> %.3f\n", first, loss);
    CHECK(first > 3.0f);          /* about log(32) at random init */
    CHECK(loss < 0.1f * first);
    int bad_pl[1] = {3};
    CHECK_EQ_INT(sf_gpt2_sft_step(m, seqs, bad_pl, sl, 1, 3, 1e-2f, 0, &loss), SF_EINVAL);
    sf_gpt2_free(&m);
}

static int stop_at_5(void *arg, int step, int steps, float loss) {
    (void)steps, (void)loss;
    *(int *)arg = step;
    return step >= 5;
}

static int count_steps(void *arg, int step, int steps, float loss) {
    (void)steps, (void)loss;
    *(int *)arg = step;
    return 0;
}

TEST(test_sft_loop) {
    /* sf_gpt2_sft: the whole loop (rows drawn with replacement, warm-up and
     * cosine) learns the same toy task; progress sees every step and can stop it. */
    sf_gpt2_t *m = new_tiny(4);
    CHECK(m);
    int32_t seqs[8 * 4] = {0};
    int pl[8], sl[8];
    for (int i = 0; i < 8; i++) {
        seqs[i * 4] = i, seqs[i * 4 + 1] = i + 1, seqs[i * 4 + 2] = i + 2;
        pl[i] = 1, sl[i] = 3;
    }
    sf_sft_opts_t o;
    sf_sft_opts_default(&o);
    o.steps = 80, o.batch = 8, o.warmup = 5, o.lr = 1e-2f, o.lr_min = 1e-3f;
    float first = 0, last = 0;
    int seen = 0;
    CHECK_EQ_INT(sf_gpt2_sft(m, seqs, pl, sl, 8, 4, &o, count_steps, &seen, &first, &last), 0);
    printf("# SFT loop loss %.3f -> %.3f\n", first, last);
    CHECK_EQ_INT(seen, 80);
    CHECK(first > 3.0f);
    CHECK(last < 0.2f * first);
    seen = 0;
    CHECK_EQ_INT(sf_gpt2_sft(m, seqs, pl, sl, 8, 4, &o, stop_at_5, &seen, NULL, NULL), SF_ECANCELED);
    CHECK_EQ_INT(seen, 5);
    o.steps = 0;
    CHECK_EQ_INT(sf_gpt2_sft(m, seqs, pl, sl, 8, 4, &o, NULL, NULL, NULL, NULL), SF_EINVAL);
    sf_gpt2_free(&m);
}

/* Samples NB rollouts and scores them: the number of TARGET tokens. */
static int rollouts(sf_gpt2_t *m, uint64_t seed, int32_t *q, int *ql, sf_samples_t *s, float *scores) {
    for (int i = 0; i < NB; i++) {
        ql[i] = 1 + (int)((seed + i) % QLEN);
        for (int t = 0; t < QLEN; t++) q[i * QLEN + t] = (int32_t)((seed * 31 + i * 7 + t * 3) % (V - 1));
    }
    sf_sample_opts_t o;
    sf_sample_opts_default(&o);
    o.max_new_tokens = RLEN;
    o.eos_id = -2;
    o.seed = seed;
    int rc = sf_gpt2_sample(m, q, ql, NB, QLEN, &o, s);
    if (rc) return rc;
    for (int i = 0; i < NB; i++) {
        scores[i] = 0;
        for (int t = 0; t < s->lengths[i]; t++) scores[i] += s->tokens[i * RLEN + t] == TARGET;
    }
    return 0;
}

static sf_ppo_batch_t batch_of(const int32_t *q, const int *ql, const sf_samples_t *s,
                               const float *scores) {
    sf_ppo_batch_t b = {NB, QLEN, RLEN, q, ql, s->tokens, s->lengths, s->logprobs, s->values, scores};
    return b;
}

TEST(test_ratio_guard_skips) {
    sf_gpt2_t *m = new_tiny(5);
    CHECK(m);
    sf_ppo_config_t c;
    sf_ppo_config_default(&c);
    c.mini_batch_size = 8;
    c.learning_rate = 1e-2f;
    c.ratio_threshold = 0.5f;   /* every minibatch's ratio (about 1) is over it */
    sf_ppo_t *p;
    char err[256];
    CHECK_EQ_INT(sf_ppo_new(m, NULL, &c, &p, err, sizeof err), 0);
    int32_t q[NB * QLEN];
    int ql[NB];
    float scores[NB];
    sf_samples_t s;
    CHECK_EQ_INT(rollouts(m, 1, q, ql, &s, scores), 0);
    uint8_t *before, *after;
    size_t lb, la;
    CHECK_EQ_INT(sf_gpt2_to_bytes(m, &before, &lb), 0);
    sf_ppo_batch_t b = batch_of(q, ql, &s, scores);
    sf_ppo_stats_t st;
    CHECK_EQ_INT(sf_ppo_step(p, &b, &st), 0);
    CHECK_EQ_INT(st.skipped, 4 * NB / 8);
    CHECK_EQ_INT(st.minibatches, 0);
    CHECK_EQ_INT(sf_gpt2_to_bytes(m, &after, &la), 0);
    CHECK(lb == la && memcmp(before, after, lb) == 0);
    /* On-policy, the recomputed old log-probs equal the sampler's: ratio 1,
     * KL to the just-copied reference 0. */
    CHECK_NEAR(st.ratio_mean, 1.0, 1e-4);
    CHECK_NEAR(st.kl, 0.0, 1e-4);
    /* The controller moved beta by the formula (KL 0 < target: down). */
    CHECK_NEAR(sf_ppo_kl_coef(p), 0.2 * (1 - 0.2 * NB / 10000.0), 1e-6);
    /* Responses of different lengths (the batch padded to its longest; log-
     * probs are computed on real tokens only): still ratio 1 and KL 0, and
     * the entropy is that of the real tokens. */
    int full[NB];
    memcpy(full, s.lengths, sizeof full);
    for (int i = 0; i < NB; i++) s.lengths[i] = 1 + i % RLEN;
    double ent = 0;
    for (int i = 0; i < NB; i++)
        for (int t = 0; t < s.lengths[i]; t++) ent -= s.logprobs[i * RLEN + t] / NB;
    CHECK_EQ_INT(sf_ppo_step(p, &b, &st), 0);
    CHECK_NEAR(st.ratio_mean, 1.0, 1e-4);
    CHECK_NEAR(st.kl, 0.0, 1e-4);
    CHECK_NEAR(st.entropy, ent, 1e-3);
    memcpy(s.lengths, full, sizeof full);
    /* Bad batches are refused with a message. */
    b.n = 0;
    CHECK_EQ_INT(sf_ppo_step(p, &b, &st), SF_EINVAL);
    int one[1] = {1};
    b.n = 1;
    b.response_len = one;   /* a single response token cannot be whitened */
    CHECK_EQ_INT(sf_ppo_step(p, &b, &st), SF_EINVAL);
    b.response_len = s.lengths;   /* one rollout of six tokens can */
    CHECK_EQ_INT(sf_ppo_step(p, &b, &st), 0);
    b.n = NB;
    int bad_len[NB];
    memcpy(bad_len, s.lengths, sizeof bad_len);
    bad_len[3] = RLEN + 1;
    b.response_len = bad_len;
    CHECK_EQ_INT(sf_ppo_step(p, &b, &st), SF_EINVAL);
    CHECK(strstr(sf_ppo_errstr(p), "rollout 3") != NULL);
    free(before);
    free(after);
    sf_samples_free(&s);
    sf_ppo_free(&p);
    sf_gpt2_free(&m);
}

TEST(test_rollout_logprobs_and_explicit_ref) {
    /* The learner's path for rollouts from workers: behaviour log-probs and
     * values come with the batch, the reference is a separate model. */
    sf_gpt2_t *m = new_tiny(6), *ref;
    CHECK(m);
    CHECK_EQ_INT(sf_gpt2_clone(m, &ref), 0);
    sf_ppo_config_t c;
    sf_ppo_config_default(&c);
    c.mini_batch_size = 16;
    c.use_rollout_logprobs = 1;
    c.ratio_threshold = 0.5f;   /* skip the updates: the ratio is then exactly the sampler's */
    sf_ppo_t *p;
    char err[256];
    CHECK_EQ_INT(sf_ppo_new(m, ref, &c, &p, err, sizeof err), 0);
    int32_t q[NB * QLEN];
    int ql[NB];
    float scores[NB];
    sf_samples_t s;
    CHECK_EQ_INT(rollouts(m, 2, q, ql, &s, scores), 0);
    sf_ppo_batch_t b = batch_of(q, ql, &s, scores);
    sf_ppo_stats_t st;
    CHECK_EQ_INT(sf_ppo_step(p, &b, &st), 0);
    CHECK_NEAR(st.ratio_mean, 1.0, 1e-4);   /* sampler log-probs = forward log-probs */
    CHECK_NEAR(st.kl, 0.0, 1e-3);
    double mean = 0;
    for (int i = 0; i < NB; i++) mean += scores[i] / NB;
    CHECK_NEAR(st.mean_score, mean, 1e-5);
    b.logprobs = NULL;
    CHECK_EQ_INT(sf_ppo_step(p, &b, &st), SF_EINVAL);
    sf_ppo_free(&p);
    /* Score scaling and clipping take the paths TRL's options take. */
    c.use_rollout_logprobs = 0;
    c.use_score_scaling = 1;
    c.use_score_norm = 1;
    c.score_clip = 0.5f;
    CHECK_EQ_INT(sf_ppo_new(m, ref, &c, &p, err, sizeof err), 0);
    b = batch_of(q, ql, &s, scores);
    CHECK_EQ_INT(sf_ppo_step(p, &b, &st), 0);
    CHECK_NEAR(st.mean_score, mean, 1e-5);   /* logged before scaling */
    sf_samples_free(&s);
    sf_ppo_free(&p);
    sf_gpt2_free(&ref);
    sf_gpt2_free(&m);
}

TEST(test_stale_rollouts_keep_their_ratio) {
    /* A rollout sampled two versions ago (ppo.max_staleness 2) by a worker:
     * with its own log-probs as the old ones (use_rollout_logprobs), the
     * first minibatch's per-token ratio is the current policy's probability
     * over the behaviour policy's, not 1, and the clipped objective clips it; with the
     * old log-probs recomputed by the current policy (TRL's synchronous rule)
     * the ratio is exactly 1 and nothing is clipped. */
    sf_gpt2_t *m = new_tiny(8), *ref, *m2;
    CHECK(m);
    CHECK_EQ_INT(sf_gpt2_clone(m, &ref), 0);
    sf_ppo_config_t c;
    sf_ppo_config_default(&c);
    c.mini_batch_size = NB;   /* one minibatch, one epoch: the ratio before any step of this update */
    c.ppo_epochs = 1;
    c.learning_rate = 1e-2f;
    c.ratio_threshold = 1e9f;
    c.use_rollout_logprobs = 1;
    sf_ppo_t *p, *p2;
    char err[256];
    CHECK_EQ_INT(sf_ppo_new(m, ref, &c, &p, err, sizeof err), 0);
    int32_t q0[NB * QLEN], q[NB * QLEN];
    int ql0[NB], ql[NB];
    float sc0[NB], sc[NB];
    sf_samples_t s0, s;
    sf_ppo_stats_t st;
    CHECK_EQ_INT(rollouts(m, 21, q0, ql0, &s0, sc0), 0);   /* version 0: the stale batch */
    for (int v = 0; v < 2; v++) {   /* versions 1 and 2, each on its own fresh rollouts */
        CHECK_EQ_INT(rollouts(m, 22 + (uint64_t)v, q, ql, &s, sc), 0);
        sf_ppo_batch_t b = batch_of(q, ql, &s, sc);
        CHECK_EQ_INT(sf_ppo_step(p, &b, &st), 0);
        CHECK_NEAR(st.ratio_mean, 1.0, 1e-4);   /* on-policy */
        sf_samples_free(&s);
    }
    CHECK_EQ_INT(sf_gpt2_clone(m, &m2), 0);   /* the version-2 policy, for the recomputed case */
    sf_ppo_batch_t b0 = batch_of(q0, ql0, &s0, sc0);
    CHECK_EQ_INT(sf_ppo_step(p, &b0, &st), 0);
    printf("# stale batch: ratio mean %.4f, clipfrac %.3f, approx KL %.4f\n", st.ratio_mean, st.clipfrac, st.approxkl);
    /* The mean ratio stays near 1 (importance weights average to 1 under
     * the behaviour policy); the per-token ratios do not: approx KL is half
     * the mean squared log-ratio, and clipfrac the share beyond the clip. */
    CHECK(st.approxkl > 1e-3);
    CHECK(st.clipfrac > 0.05);
    c.use_rollout_logprobs = 0;
    CHECK_EQ_INT(sf_ppo_new(m2, ref, &c, &p2, err, sizeof err), 0);
    CHECK_EQ_INT(sf_ppo_step(p2, &b0, &st), 0);
    printf("# recomputed: ratio mean %.6f, clipfrac %.3f, approx KL %.6f\n", st.ratio_mean, st.clipfrac, st.approxkl);
    CHECK_NEAR(st.ratio_mean, 1.0, 1e-5);
    CHECK_NEAR(st.clipfrac, 0.0, 1e-9);
    CHECK(st.approxkl < 1e-8);
    sf_samples_free(&s0);
    sf_ppo_free(&p);
    sf_ppo_free(&p2);
    sf_gpt2_free(&m2);
    sf_gpt2_free(&ref);
    sf_gpt2_free(&m);
}

/* Max |difference| of two models' logits on a few fixed rows. */
static double logit_gap(sf_gpt2_t *a, sf_gpt2_t *b) {
    enum { B = 4, T = 6 };
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 7 + 3) % (V - 1));
    float *la = malloc(sizeof(float) * B * T * V), *lb = malloc(sizeof(float) * B * T * V);
    double gap = -1;
    if (la && lb && !sf_gpt2_forward(a, tok, NULL, B, T, la, NULL) && !sf_gpt2_forward(b, tok, NULL, B, T, lb, NULL)) {
        gap = 0;
        for (int i = 0; i < B * T * V; i++) gap = fmax(gap, fabs((double)la[i] - lb[i]));
    }
    free(la);
    free(lb);
    return gap;
}

TEST(test_prompt_baseline) {
    /* With prompt_baseline each score is measured against the other rollouts
     * of its prompt: adding a constant to every score of one prompt changes
     * nothing, while without it the same shift changes the update. */
    enum { G = 4 };
    int32_t q[NB * QLEN] = {0};
    int ql[NB];
    for (int i = 0; i < NB; i++) {
        ql[i] = 2;
        q[i * QLEN] = (int32_t)(i % G + 1);
        q[i * QLEN + 1] = (int32_t)(i % G + 5);
    }
    const float shift[G] = {3.0f, -2.0f, 0.5f, 7.0f};
    double gap[2];
    for (int pb = 0; pb < 2; pb++) {
        sf_gpt2_t *m = new_tiny(12), *m2;
        CHECK(m);
        CHECK_EQ_INT(sf_gpt2_clone(m, &m2), 0);
        sf_sample_opts_t o;
        sf_sample_opts_default(&o);
        o.max_new_tokens = RLEN;
        o.eos_id = -2;
        o.seed = 7;
        sf_samples_t s;
        CHECK_EQ_INT(sf_gpt2_sample(m, q, ql, NB, QLEN, &o, &s), 0);
        float sc[NB], sc2[NB];
        for (int i = 0; i < NB; i++) {
            sc[i] = 0;
            for (int t = 0; t < s.lengths[i]; t++) sc[i] += s.tokens[i * RLEN + t] == TARGET;
            sc2[i] = sc[i] + shift[i % G];
        }
        sf_ppo_config_t c;
        sf_ppo_config_default(&c);
        c.mini_batch_size = 8;
        c.learning_rate = 1e-2f;
        c.seed = 3;
        c.prompt_baseline = pb;
        sf_ppo_t *p, *p2;
        char err[256];
        CHECK_EQ_INT(sf_ppo_new(m, NULL, &c, &p, err, sizeof err), 0);
        CHECK_EQ_INT(sf_ppo_new(m2, NULL, &c, &p2, err, sizeof err), 0);
        sf_ppo_batch_t b = batch_of(q, ql, &s, sc), b2 = batch_of(q, ql, &s, sc2);
        sf_ppo_stats_t st, st2;
        CHECK_EQ_INT(sf_ppo_step(p, &b, &st), 0);
        CHECK_EQ_INT(sf_ppo_step(p2, &b2, &st2), 0);
        gap[pb] = logit_gap(m, m2);
        CHECK(gap[pb] >= 0);
        /* The logged score is the raw one either way. */
        double mean = 0, mean2 = 0;
        for (int i = 0; i < NB; i++) mean += sc[i] / NB, mean2 += sc2[i] / NB;
        CHECK_NEAR(st.mean_score, mean, 1e-5);
        CHECK_NEAR(st2.mean_score, mean2, 1e-5);
        if (pb) {
            /* A batch of one has no other rollout: its baseline is 0. */
            b.n = 1;
            CHECK_EQ_INT(sf_ppo_step(p, &b, &st), 0);
            CHECK(isfinite(st.total_loss));
        }
        sf_samples_free(&s);
        sf_ppo_free(&p);
        sf_ppo_free(&p2);
        sf_gpt2_free(&m2);
        sf_gpt2_free(&m);
    }
    printf("# logit gap after one update with per-prompt shifted scores: %.2e without, %.2e with the baseline\n",
           gap[0], gap[1]);
    CHECK(gap[0] > 0.1);
    CHECK(gap[1] < 1e-3);   /* float rounding of the shifted scores, through 16 Adam steps */
}

/* ---- the fast step against the straightforward one ---- */

/* ml/ppo.cpp's hook for this test: on, a trainer's steps take the
 * straightforward path (log_softmax and gather on the full logits, dense
 * embedding gradient, torch::optim::Adam), which the fast path (fused
 * vocabulary head, oneDNN or BLAS products, sparse embedding gradient, Adam
 * in one pass, minibatches without their all-padding columns) must equal up
 * to rounding. */
void sf__ppo_reference(sf_ppo_t *p, int on);
/* ml/gpt2.cpp's: on, the fast path takes the tensor operations and torch's
 * products that other CPUs and GPUs take, instead of its AVX2 and oneDNN
 * code (the chunked vocabulary head, attention of packed sequences). */
void sf__gpt2_portable(int on);

/* A vocabulary of three of the head's 2,048-word chunks, the last short and
 * no multiple of its 8-float vectors. */
enum { WV = 5003, WQ = 5, WR = 9 };

static sf_gpt2_t *new_wide(uint64_t seed) {
    sf_gpt2_config_t c = {2, 2, 32, 16, WV, WV - 1, 1e-5f};
    sf_gpt2_t *m = NULL;
    char err[256];
    if (sf_gpt2_new(&c, "cpu", seed, &m, err, sizeof err)) fprintf(stderr, "%s\n", err);
    return m;
}

/* Max |difference| of two models' logits and values on fixed rows. */
static double wide_gap(sf_gpt2_t *a, sf_gpt2_t *b) {
    enum { B = 3, T = 7 };
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 131 + 17) % (WV - 1));
    float *la = malloc(sizeof(float) * B * T * WV), *lb = malloc(sizeof(float) * B * T * WV);
    float va[B * T], vb[B * T];
    double gap = -1;
    if (la && lb && !sf_gpt2_forward(a, tok, NULL, B, T, la, va) && !sf_gpt2_forward(b, tok, NULL, B, T, lb, vb)) {
        gap = 0;
        for (int i = 0; i < B * T * WV; i++) gap = fmax(gap, fabs((double)la[i] - lb[i]));
        for (int i = 0; i < B * T; i++) gap = fmax(gap, fabs((double)va[i] - vb[i]));
    }
    free(la);
    free(lb);
    return gap;
}

TEST(test_fast_step_matches_reference) {
    /* Two copies of a policy, one trained by each path on the same three
     * batches (four prompts, responses of 1 to 9 tokens, prompts of 2 to 5),
     * first sampled by the policy with the old log-probs recomputed, then
     * sampled by the initial policy with the rollouts' own log-probs (stale
     * rollouts, ratios away from 1), then as the first with the fast path's
     * portable head: the statistics of every step agree, and the two
     * policies after three updates differ by rounding, a thousandth of what
     * the updates moved them. */
    for (int run = 0; run < 3; run++) {
        const int own = run == 1, portable = run == 2;
        sf__gpt2_portable(portable);
        sf_gpt2_t *mr = new_wide(31), *mf = new_wide(31), *m0 = new_wide(31);
        CHECK(mr && mf && m0);
        sf_ppo_config_t c;
        sf_ppo_config_default(&c);
        c.mini_batch_size = 8;
        c.learning_rate = 3e-3f;
        c.init_kl_coef = 0.1f;
        c.prompt_baseline = 1;
        c.use_rollout_logprobs = own;
        c.seed = 4;
        sf_ppo_t *pr, *pf;
        char err[256];
        CHECK_EQ_INT(sf_ppo_new(mr, NULL, &c, &pr, err, sizeof err), 0);
        CHECK_EQ_INT(sf_ppo_new(mf, NULL, &c, &pf, err, sizeof err), 0);
        sf__ppo_reference(pr, 1);
        for (int step = 0; step < 3; step++) {
            int32_t q[NB * WQ] = {0};
            int ql[NB];
            for (int i = 0; i < NB; i++) {
                ql[i] = 2 + (i % 4);
                for (int t = 0; t < ql[i]; t++) q[i * WQ + t] = (int32_t)((i % 4) * 97 + t * 13 + 1);
            }
            sf_sample_opts_t o;
            sf_sample_opts_default(&o);
            o.max_new_tokens = WR;
            o.eos_id = -2;
            o.seed = 100 + (uint64_t)step;
            sf_samples_t smp;
            CHECK_EQ_INT(sf_gpt2_sample(own ? m0 : mr, q, ql, NB, WQ, &o, &smp), 0);
            float sc[NB];
            for (int i = 0; i < NB; i++) {
                smp.lengths[i] = 1 + (i * 5 + step) % WR;
                sc[i] = 0;
                for (int t = 0; t < smp.lengths[i]; t++) sc[i] += (float)(smp.tokens[i * WR + t] % 7) / 7.0f;
            }
            sf_ppo_batch_t b = {NB, WQ, WR, q, ql, smp.tokens, smp.lengths, smp.logprobs, smp.values, sc};
            sf_ppo_stats_t sr, sf;
            CHECK_EQ_INT(sf_ppo_step(pr, &b, &sr), 0);
            CHECK_EQ_INT(sf_ppo_step(pf, &b, &sf), 0);
            printf("# %s log-probs%s, step %d: pg %.6f / %.6f, vf %.6f / %.6f, entropy %.5f / %.5f, kl %.6f / %.6f, "
                   "clipfrac %.3f / %.3f\n", own ? "own" : "recomputed", portable ? " (portable)" : "", step, sr.pg_loss, sf.pg_loss, sr.vf_loss,
                   sf.vf_loss, sr.policy_entropy, sf.policy_entropy, sr.kl, sf.kl, sr.clipfrac, sf.clipfrac);
            CHECK_NEAR(sf.pg_loss, sr.pg_loss, 2e-4);
            CHECK_NEAR(sf.vf_loss, sr.vf_loss, 2e-4);
            CHECK_NEAR(sf.total_loss, sr.total_loss, 2e-4);
            CHECK_NEAR(sf.policy_entropy, sr.policy_entropy, 2e-4);
            CHECK_NEAR(sf.kl, sr.kl, 2e-4);
            CHECK_NEAR(sf.entropy, sr.entropy, 2e-4);
            CHECK_NEAR(sf.approxkl, sr.approxkl, 2e-5);
            CHECK_NEAR(sf.policykl, sr.policykl, 2e-5);
            CHECK_NEAR(sf.ratio_mean, sr.ratio_mean, 2e-5);
            CHECK_NEAR(sf.clipfrac, sr.clipfrac, 0.02);
            CHECK_NEAR(sf.values_mean, sr.values_mean, 2e-4);
            CHECK_EQ_INT(sf.minibatches, sr.minibatches);
            sf_samples_free(&smp);
        }
        double moved = wide_gap(m0, mr), apart = wide_gap(mr, mf);
        printf("# %s log-probs%s: three updates moved logits and values by %.3g, the two paths are %.3g apart\n",
               own ? "own" : "recomputed", portable ? " (portable)" : "", moved, apart);
        CHECK(moved > 0.05);
        CHECK(apart >= 0 && apart < 1e-3 * moved);
        sf_ppo_free(&pr);
        sf_ppo_free(&pf);
        sf_gpt2_free(&m0);
        sf_gpt2_free(&mf);
        sf_gpt2_free(&mr);
    }
    sf__gpt2_portable(0);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

TEST(test_rl_learns_a_word) {
    sf_gpt2_t *m = new_tiny(11);
    CHECK(m);
    sf_ppo_config_t c;
    sf_ppo_config_default(&c);
    c.learning_rate = 1e-3f;   /* a tiny random model, not a pretrained one */
    c.mini_batch_size = 8;
    c.seed = 1;
    sf_ppo_t *p;
    char err[256];
    CHECK_EQ_INT(sf_ppo_new(m, NULL, &c, &p, err, sizeof err), 0);
    int32_t q[NB * QLEN];
    int ql[NB];
    float scores[NB];
    enum { STEPS = 150, WINDOW = 10 };
    double early = 0, late = 0, max_kl = 0, t0 = now();
    sf_ppo_stats_t st = {0};
    for (int step = 0; step < STEPS; step++) {
        sf_samples_t s;
        CHECK_EQ_INT(rollouts(m, 1000 + step, q, ql, &s, scores), 0);
        sf_ppo_batch_t b = batch_of(q, ql, &s, scores);
        int rc = sf_ppo_step(p, &b, &st);
        sf_samples_free(&s);
        if (rc) fprintf(stderr, "step %d: %s\n", step, sf_ppo_errstr(p));
        CHECK_EQ_INT(rc, 0);
        CHECK(isfinite(st.kl) && isfinite(st.total_loss));
        if (step == 0) early = st.mean_score;   /* scored before any update */
        if (step >= STEPS - WINDOW) late += st.mean_score / WINDOW;
        if (st.kl > max_kl) max_kl = st.kl;
        if (step % 25 == 0 || step == STEPS - 1)
            printf("# step %3d score %.2f kl %.2f beta %.4f pg %.3f vf %.3f clipfrac %.2f "
                   "entropy %.2f\n", step, st.mean_score, st.kl, st.kl_coef, st.pg_loss,
                   st.vf_loss, st.clipfrac, st.policy_entropy);
    }
    printf("# mean score %.2f -> %.2f of %d, max KL %.2f nats, %.1f s\n", early, late, RLEN,
           max_kl, now() - t0);
    /* Chance is RLEN / V = 0.19 target words per response; the last ten
     * steps must average over half the response. */
    CHECK(early < 1.0);
    CHECK(late > 3.0);
    /* Saying only the target costs RLEN * log(V) = 20.8 nats against a
     * near-uniform reference; the penalty keeps the policy below that. */
    CHECK(max_kl < RLEN * log((double)V));
    sf_ppo_free(&p);
    sf_gpt2_free(&m);
}

int main(void) {
    sf_ml_opts_t o = {.threads = 1};
    sf_ml_init(&o);
    SF_RUN(test_rewards);
    SF_RUN(test_gae);
    SF_RUN(test_whiten);
    SF_RUN(test_loss_clipping);
    SF_RUN(test_kl_controller);
    SF_RUN(test_sft_learns);
    SF_RUN(test_sft_loop);
    SF_RUN(test_ratio_guard_skips);
    SF_RUN(test_rollout_logprobs_and_explicit_ref);
    SF_RUN(test_stale_rollouts_keep_their_ratio);
    SF_RUN(test_prompt_baseline);
    SF_RUN(test_fast_step_matches_reference);
    SF_RUN(test_rl_learns_a_word);
    SF_DONE();
}
