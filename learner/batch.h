/* batch.h: the learner's rules for the rollouts workers send — which are
 * too old to keep, when the rollouts held make a PPO batch, which of them it
 * takes, the batch's nonsense share and its image-side check — apart from
 * sockets, Redis and the models, so that tests/unit/test_learner_batch.c can
 * check them.
 */
#ifndef SF_LEARNER_BATCH_H
#define SF_LEARNER_BATCH_H

#include <stdint.h>
#include <stdlib.h>

/* One rollout as kept until it is used. */
typedef struct {
    int32_t *query, *response;
    float *logprobs, *values; /* rn each: the behaviour policy's (NULL when the worker sent none) */
    int qn, rn;
    float score;
    uint32_t version;
    /* The worker's image-side check (docs/method.md): image_score and
     * faithful mean something only when image_checked. */
    int image_checked, faithful;
    float image_score;
} roll_t;

static inline void roll_free(roll_t *x) {
    free(x->query);
    free(x->response);
    free(x->logprobs);
    free(x->values);
    x->query = x->response = NULL;
    x->logprobs = x->values = NULL;
}

/* What becomes of a batch of rollouts sampled with policy_version. */
enum { LEARNER_ROLL_ACCEPT, LEARNER_ROLL_STALE, LEARNER_ROLL_FAILED };

/* The verdict on a batch of rollouts for a run in `state` (L_* of
 * learner.h) at `version`: FAILED when the run failed; STALE when they were
 * sampled with a policy more than max_staleness versions older than the
 * run's (docs/configuration.md, ppo.max_staleness); ACCEPT otherwise, and
 * always while the run's spec — hence its max_staleness — is not known
 * yet (L_LOADING_SPEC). */
int learner_rollouts_verdict(int state, uint32_t version, uint32_t policy_version, int max_staleness);

/* 1 when a run in `state` holding n_buf rollouts starts a PPO update: it is
 * ready (not loading, not updating already, not failed), holds at least
 * batch_size rollouts, and has made fewer than target_updates updates. */
int learner_batch_ready(int state, int n_buf, int batch_size, uint64_t updates, uint64_t target_updates);

/* Moves the n oldest of the *n_buf rollouts in buf (the order they came
 * in) to batch, which has room for n, and shifts the rest to the front;
 * n <= *n_buf.  The rollouts' memory moves with them. */
void learner_batch_take(roll_t *buf, int *n_buf, roll_t *batch, int n);

/* Drops (and frees) the rollouts of buf that came without the behaviour
 * policy's log-probs and values, keeping the others in order; how many were
 * dropped.  A run that uses them (ppo.use_rollout_logprobs) refuses such
 * rollouts, except while its spec was still being read. */
int learner_batch_drop_without_behaviour(roll_t *buf, int *n_buf);

/* The share of the n rollouts scored as nonsense (the reward's -1). */
double learner_batch_nonsense(const roll_t *batch, int n);

/* The image-side check of a batch, over its checked rollouts alone. */
typedef struct {
    int checked;        /* rollouts checked */
    double image_score; /* their mean image score; NAN when none */
    double faithful;    /* the share of them whose image shows the class; NAN when none */
} learner_image_check_t;

/* The image-side check of the n rollouts of batch. */
learner_image_check_t learner_batch_image_check(const roll_t *batch, int n);

#endif
