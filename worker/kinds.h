/* kinds.h: the handlers of the job kinds, one file each, that the table in
 * kinds.c lists (the handler contract is worker.h's):
 *   kind_builtin.c   noop, sleep, fail, crash (tests, benchmarks, drills);
 *   kind_corpus.c    corpus       \
 *   kind_embed.c     embed         |
 *   kind_rollout.c   rollout       |
 *   kind_captions.c  captions      | the method's, built with libtorch; they
 *   kind_generate.c  generate      | share the model cache (model_cache.h),
 *   kind_filter.c    filter,       | small helpers (kind_util.h) and, for
 *                    manifest      | rollout and captions, the policy
 *   kind_finetune.c  finetune     /  (kind_policy.h).
 */
#ifndef SF_KINDS_H
#define SF_KINDS_H

#include "worker/worker.h"

int sf_noop_job(sf_wk_t *wk, sf_job_t *job);
int sf_sleep_job(sf_wk_t *wk, sf_job_t *job);
int sf_fail_job(sf_wk_t *wk, sf_job_t *job);
int sf_crash_job(sf_wk_t *wk, sf_job_t *job);

int sf_corpus_job(sf_wk_t *wk, sf_job_t *job);
int sf_embed_job(sf_wk_t *wk, sf_job_t *job);
int sf_rollout_job(sf_wk_t *wk, sf_job_t *job);
int sf_captions_job(sf_wk_t *wk, sf_job_t *job);
int sf_generate_job(sf_wk_t *wk, sf_job_t *job);
int sf_filter_job(sf_wk_t *wk, sf_job_t *job);
int sf_manifest_job(sf_wk_t *wk, sf_job_t *job);
int sf_finetune_job(sf_wk_t *wk, sf_job_t *job);
/* Real classifiers (kind_real_eval.c): Table 2's labels, Fig. 6's runs,
 * test sets and finetune.json; sf_finetune_job hands real runs to
 * sf_finetune_real_job. */
int sf_classify_job(sf_wk_t *wk, sf_job_t *job);
int sf_finetune_real_job(sf_wk_t *wk, sf_job_t *job);
int sf_evaluate_job(sf_wk_t *wk, sf_job_t *job);
int sf_summarize_job(sf_wk_t *wk, sf_job_t *job);

#endif
