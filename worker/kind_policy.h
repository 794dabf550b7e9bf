/* kind_policy.h: what rollout and captions share — a job that samples
 * captions with a policy: the run's current one, which the learner sends
 * (fetched on the loop thread, then the model work on the thread pool), or
 * a policy file (strategy sft: no learner involved).
 *
 *   sf_policy_start   loop thread: asks the learner for the run's policy at
 *                     the job's version or later (need_learner), then runs
 *                     pj->locked on the thread pool, under the model cache's
 *                     lock, and pj->after back on the loop;
 *   sf_policy_sample  from pj->locked;
 *   sf_policy_done    loop thread: frees pj and completes its job.
 */
#ifndef SF_KIND_POLICY_H
#define SF_KIND_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ml/sf_ml.h"
#include "world/world.h"
#include "worker/worker.h"

typedef struct sf_pjob_s sf_pjob_t;
struct sf_pjob_s {
    sf_job_t *job;
    sf_wk_t *wk;
    const sf_wk_env_t *env;
    const sf_shift_params_t *p;  /* job->params */
    uv_work_t work;
    /* The model work: on the thread pool, under the model cache's lock; 0,
     * or -1 with the job failed. */
    int (*locked)(sf_pjob_t *pj);
    /* Then, on the loop, when it succeeded: what completes the job (it ends
     * in sf_policy_done); NULL: the job is complete. */
    void (*after)(sf_pjob_t *pj);
    void (*destroy)(sf_pjob_t *pj); /* frees what the kind added (NULL: nothing) */
    int failed;
    /* the policy image from the learner */
    uint8_t *blob;
    size_t blob_len;
    uint32_t version;
};

/* Starts pj (calloc'd by the kind, possibly as the first member of its own
 * struct, with locked, after and destroy set; sf_policy_start fills the
 * rest and takes ownership).  0, or -1 with the job failed and pj freed. */
int sf_policy_start(sf_wk_t *wk, sf_job_t *job, sf_pjob_t *pj, int need_learner);
/* Frees pj and completes its job (loop thread). */
void sf_policy_done(sf_pjob_t *pj);

/* Makes the model cache's policy pj's: the file `file` (a path in
 * models_dir), or when NULL the learner's image of the run's policy. */
int sf_policy_ensure(sf_pjob_t *pj, const char *file);
/* Samples n captions for class k of w with the cache's policy, seeded by
 * seed: *prompt (plen tokens), the samples, and the decoded texts (*texts,
 * n malloc'd strings of valid UTF-8).  The caller frees all three. */
int sf_policy_sample(sf_pjob_t *pj, const sf_world_t *w, int k, int n, uint64_t seed, int32_t **prompt, int *plen,
                     sf_samples_t *out, char ***texts);

#endif
