/* kinds.c: the worker's handler table, the one list of the kinds a build
 * has (worker.h; the handlers are kinds.h's).  Without libtorch the method's
 * kinds are compiled out and a worker has the test kinds alone. */
#include "worker/kinds.h"

#if SF_HAVE_TORCH
#include "worker/model_cache.h"
#endif

const sf_handler_t sf_handlers[] = {
    {"noop", SF_RUN_INLINE, sf_noop_job, "succeeds at once"},
    {"sleep", SF_RUN_TIMER, sf_sleep_job, "succeeds after payload ms per item"},
    {"fail", SF_RUN_INLINE, sf_fail_job, "fails payload times attempts, then succeeds"},
    {"crash", SF_RUN_INLINE, sf_crash_job, "kills the worker process"},
#if SF_HAVE_TORCH
    {"corpus", SF_RUN_THREAD, sf_corpus_job, "a class's SFT corpus from the instruction model (kept and reused)"},
    {"embed", SF_RUN_THREAD, sf_embed_job, "CLIP embeddings of a class's reference images -> its statistics"},
    {"rollout", SF_RUN_ASYNC, sf_rollout_job, "PPO rollouts with the learner's policy, scored, sent to the learner"},
    {"captions", SF_RUN_ASYNC, sf_captions_job, "a class's captions from the final (or SFT) policy"},
    {"generate", SF_RUN_THREAD, sf_generate_job, "captions -> images (the world's generator)"},
    {"filter", SF_RUN_THREAD, sf_filter_job, "keeps images whose CLIP similarity to the class text is >= threshold"},
    {"manifest", SF_RUN_THREAD, sf_manifest_job, "joins the filter's manifest shards into the dataset's manifest.jsonl"},
    {"finetune", SF_RUN_THREAD, sf_finetune_job, "fine-tunes classifiers on base + generated images (Fig. 6)"},
    {"classify", SF_RUN_THREAD, sf_classify_job, "labels a class's kept and reference images with timm classifiers (Table 2)"},
    {"evaluate", SF_RUN_THREAD, sf_evaluate_job, "a class's test-set images through the fine-tuned classifiers (Fig. 6)"},
    {"summarize", SF_RUN_THREAD, sf_summarize_job, "joins the test sets' evaluations into finetune.json (Fig. 6)"},
#endif
    {NULL, 0, NULL, NULL},
};

void sf_kinds_close(sf_wk_t *wk) {
    (void)wk;
#if SF_HAVE_TORCH
    sf_mc_close();
#endif
}
