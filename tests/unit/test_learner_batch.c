/* Unit tests of the learner's rollout rules (learner/batch.h): which
 * rollouts are dropped as stale, when the rollouts held make a PPO batch,
 * which ones it takes, and the batch's nonsense share.
 *
 * Expected values come from the documented rules: rollouts sampled with a
 * policy more than ppo.max_staleness versions old are dropped
 * (docs/configuration.md, docs/method.md); an update takes ppo.batch_size
 * rollouts (docs/configuration.md) and a run makes ppo.updates of them
 * (`done` once it has, docs/redis-keys.md); the nonsense share is the share
 * of the batch scored -1 (docs/method.md, docs/redis-keys.md); the
 * image-side check is the mean image score and the faithful share over the
 * batch's checked rollouts alone, and says "none" rather than 0 when none
 * were checked (docs/method.md, "The image-side check"). */
#include <stdint.h>

#include "learner/batch.h"
#include "learner/learner.h"
#include "tests/unit/sf_test.h"

TEST(rollouts_more_than_max_staleness_versions_old_are_dropped) {
    /* A run at version 10 with max_staleness 2 keeps rollouts of versions
     * 8, 9, 10 and drops those of 7 and older. */
    CHECK_EQ_INT(learner_rollouts_verdict(L_READY, 10, 10, 2), LEARNER_ROLL_ACCEPT);
    CHECK_EQ_INT(learner_rollouts_verdict(L_READY, 10, 9, 2), LEARNER_ROLL_ACCEPT);
    CHECK_EQ_INT(learner_rollouts_verdict(L_READY, 10, 8, 2), LEARNER_ROLL_ACCEPT);
    CHECK_EQ_INT(learner_rollouts_verdict(L_READY, 10, 7, 2), LEARNER_ROLL_STALE);
    CHECK_EQ_INT(learner_rollouts_verdict(L_READY, 10, 0, 2), LEARNER_ROLL_STALE);
    /* max_staleness 0: only the current version's. */
    CHECK_EQ_INT(learner_rollouts_verdict(L_READY, 5, 5, 0), LEARNER_ROLL_ACCEPT);
    CHECK_EQ_INT(learner_rollouts_verdict(L_READY, 5, 4, 0), LEARNER_ROLL_STALE);
    /* A version newer than the learner's (a restarted learner behind its
     * checkpoint's workers) is not old. */
    CHECK_EQ_INT(learner_rollouts_verdict(L_READY, 3, 6, 2), LEARNER_ROLL_ACCEPT);
    /* The rule holds while an update runs or the model loads. */
    CHECK_EQ_INT(learner_rollouts_verdict(L_UPDATING, 10, 7, 2), LEARNER_ROLL_STALE);
    CHECK_EQ_INT(learner_rollouts_verdict(L_UPDATING, 10, 8, 2), LEARNER_ROLL_ACCEPT);
    CHECK_EQ_INT(learner_rollouts_verdict(L_LOADING_MODEL, 10, 7, 2), LEARNER_ROLL_STALE);
}

TEST(rollouts_are_kept_before_the_spec_is_known_and_refused_after_failure) {
    /* Before the spec says max_staleness, nothing is dropped as stale. */
    CHECK_EQ_INT(learner_rollouts_verdict(L_LOADING_SPEC, 10, 0, 0), LEARNER_ROLL_ACCEPT);
    /* A failed run takes none, stale or not. */
    CHECK_EQ_INT(learner_rollouts_verdict(L_FAILED, 10, 10, 2), LEARNER_ROLL_FAILED);
    CHECK_EQ_INT(learner_rollouts_verdict(L_FAILED, 10, 0, 2), LEARNER_ROLL_FAILED);
}

TEST(an_update_starts_with_a_full_batch_on_a_ready_run) {
    /* batch_size 4, 3 updates to make. */
    CHECK_EQ_INT(learner_batch_ready(L_READY, 3, 4, 0, 3), 0);
    CHECK_EQ_INT(learner_batch_ready(L_READY, 4, 4, 0, 3), 1);
    CHECK_EQ_INT(learner_batch_ready(L_READY, 9, 4, 2, 3), 1);
    /* The run made its updates: no more, however many rollouts wait. */
    CHECK_EQ_INT(learner_batch_ready(L_READY, 9, 4, 3, 3), 0);
    /* One update at a time, none while loading or failed. */
    CHECK_EQ_INT(learner_batch_ready(L_UPDATING, 9, 4, 0, 3), 0);
    CHECK_EQ_INT(learner_batch_ready(L_LOADING_MODEL, 9, 4, 0, 3), 0);
    CHECK_EQ_INT(learner_batch_ready(L_LOADING_SPEC, 9, 4, 0, 3), 0);
    CHECK_EQ_INT(learner_batch_ready(L_FAILED, 9, 4, 0, 3), 0);
}

TEST(a_batch_takes_the_oldest_rollouts_and_keeps_the_rest_in_order) {
    roll_t buf[6], batch[4];
    int32_t tok[6];
    memset(buf, 0, sizeof buf);
    for (int i = 0; i < 6; i++) {
        tok[i] = 100 + i;
        buf[i].query = &tok[i];
        buf[i].qn = 1;
        buf[i].score = (float)i;
        buf[i].version = (uint32_t)i;
    }
    int n = 6;
    learner_batch_take(buf, &n, batch, 4);
    CHECK_EQ_INT(n, 2);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(batch[i].version, i);
        CHECK(batch[i].query == &tok[i]); /* the memory moves with it */
    }
    CHECK_EQ_INT(buf[0].version, 4);
    CHECK_EQ_INT(buf[1].version, 5);
    CHECK(buf[1].query == &tok[5]);
    /* Taking all leaves none. */
    roll_t two[2];
    learner_batch_take(buf, &n, two, 2);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(two[0].version, 4);
    CHECK_EQ_INT(two[1].version, 5);
}

TEST(rollouts_without_log_probs_are_dropped_in_order) {
    /* What a run that uses the rollouts' log-probs does with the ones it
     * kept before its spec was read: those with log-probs and values stay,
     * in order; the others are freed. */
    roll_t buf[5];
    memset(buf, 0, sizeof buf);
    for (int i = 0; i < 5; i++) {
        buf[i].version = (uint32_t)i;
        buf[i].query = malloc(sizeof(int32_t));
        if (i != 1 && i != 3) buf[i].logprobs = malloc(sizeof(float)), buf[i].values = malloc(sizeof(float));
    }
    free(buf[4].values), buf[4].values = NULL;   /* log-probs alone are not enough */
    int n = 5;
    CHECK_EQ_INT(learner_batch_drop_without_behaviour(buf, &n), 3);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(buf[0].version, 0);
    CHECK_EQ_INT(buf[1].version, 2);
    CHECK_EQ_INT(learner_batch_drop_without_behaviour(buf, &n), 0);   /* nothing more to drop */
    CHECK_EQ_INT(n, 2);
    for (int i = 0; i < n; i++) roll_free(&buf[i]);
}

TEST(nonsense_share_counts_rollouts_scored_minus_one) {
    roll_t b[8];
    memset(b, 0, sizeof b);
    float scores[8] = {-1.0f, 0.5f, -1.0f, 0.0f, -0.99f, 0.9f, -1.0f, -0.5f};
    for (int i = 0; i < 8; i++) b[i].score = scores[i];
    /* 3 of 8 score -1; -0.99 is a poor caption, not nonsense. */
    CHECK(fabs(learner_batch_nonsense(b, 8) - 3.0 / 8.0) < 1e-12);
    CHECK(fabs(learner_batch_nonsense(b, 1) - 1.0) < 1e-12);
    CHECK(fabs(learner_batch_nonsense(b + 1, 1)) < 1e-12);
}

TEST(image_check_averages_the_checked_rollouts_alone) {
    roll_t b[6];
    memset(b, 0, sizeof b);
    /* Checked: 0, 2, 3, 5 with image scores -0.5, -0.25, 0.125, 0.375 and
     * faithful 1, 0, 1, 1.  Rollouts 1 and 4 are not checked: their score
     * and faithful flag (left as a careless sender might) do not count. */
    const int checked[6] = {1, 0, 1, 1, 0, 1}, faithful[6] = {1, 1, 0, 1, 1, 1};
    const float image[6] = {-0.5f, 0.9f, -0.25f, 0.125f, -0.9f, 0.375f};
    for (int i = 0; i < 6; i++) {
        b[i].score = -1.0f; /* the text reward plays no part */
        b[i].image_checked = checked[i];
        b[i].faithful = faithful[i];
        b[i].image_score = image[i];
    }
    learner_image_check_t c = learner_batch_image_check(b, 6);
    CHECK_EQ_INT(c.checked, 4);
    /* (-0.5 - 0.25 + 0.125 + 0.375) / 4 = -0.0625; 3 of 4 faithful. */
    CHECK(fabs(c.image_score - -0.0625) < 1e-12);
    CHECK(fabs(c.faithful - 0.75) < 1e-12);
    /* One checked rollout: its own values. */
    c = learner_batch_image_check(b + 2, 1);
    CHECK_EQ_INT(c.checked, 1);
    CHECK(fabs(c.image_score - -0.25) < 1e-12);
    CHECK(fabs(c.faithful) < 1e-12);
    /* None checked: a count of 0 and no values, not a score of 0. */
    c = learner_batch_image_check(b + 4, 1);
    CHECK_EQ_INT(c.checked, 0);
    CHECK(isnan(c.image_score) && isnan(c.faithful));
    c = learner_batch_image_check(b, 0);
    CHECK_EQ_INT(c.checked, 0);
    CHECK(isnan(c.image_score) && isnan(c.faithful));
}

int main(void) {
    SF_RUN(rollouts_more_than_max_staleness_versions_old_are_dropped);
    SF_RUN(rollouts_are_kept_before_the_spec_is_known_and_refused_after_failure);
    SF_RUN(an_update_starts_with_a_full_batch_on_a_ready_run);
    SF_RUN(a_batch_takes_the_oldest_rollouts_and_keeps_the_rest_in_order);
    SF_RUN(rollouts_without_log_probs_are_dropped_in_order);
    SF_RUN(nonsense_share_counts_rollouts_scored_minus_one);
    SF_RUN(image_check_averages_the_checked_rollouts_alone);
    SF_DONE();
}
