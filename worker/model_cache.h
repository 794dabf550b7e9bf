/* model_cache.h: the models a worker keeps between jobs of the method's
 * kinds (built with libtorch): CLIP and its tokenizer, GPT-2's BPE, the
 * policy, the worlds, the world classifiers, the diffusion pipeline — each
 * loaded on first use and kept — and the client of the learner.
 *
 * Locking.  One mutex (sf_mc_lock) serialises model work in the worker,
 * because a worker is one device: a job holds it from its first ensure_*
 * to its last use of a model, and every field below but lc is read and
 * written under it.  Waiting for the learner (a policy, an acknowledgement)
 * happens on the loop thread, outside the mutex; lc is the loop thread's
 * alone, so it needs none.
 *
 * The ensure_* functions make a model ready or fail the job (status and
 * error: sf_kind_fail) and return -1.
 */
#ifndef SF_MODEL_CACHE_H
#define SF_MODEL_CACHE_H

#include <pthread.h>
#include <stdint.h>

#include "common/text/bpe.h"
#include "common/text/clip_bpe.h"
#include "ml/sf_diffusion.h"
#include "ml/sf_llama.h"
#include "ml/sf_ml.h"
#include "ml/sf_spm.h"
#include "ml/sf_vision.h"
#include "world/world.h"
#include "worker/learner_client.h"
#include "worker/worker.h"

#define SF_MC_MAX_WORLDS 4

typedef struct {
    pthread_mutex_t mu;
    int ml_ready;
    sf_clip_t *clip;
    sf_clip_bpe_t *ctok;
    char clip_tag[64];      /* names the reference statistics of this CLIP */
    double clip_threshold;  /* the filter's threshold for this CLIP (filter.json, else 0.2) */
    char clip_threshold_from[64]; /* "filter.json" or "paper default" */
    sf_bpe_t *bpe;
    sf_gpt2_t *policy;
    char policy_key[1200];  /* "run@version" or the file it came from */
    struct { char name[64]; sf_world_t *w; } worlds[SF_MC_MAX_WORLDS];
    sf_classifier_t *cls[2];  /* the world's ConvNeXt and ViT (trained on the 86-class world) */
    int cls_tried;
    sf_diffusion_t *diff;     /* the TorchScript pipeline of diffusion_dir */
    sf_llama_t *llama;        /* the corpus phase's instruction model */
    sf_spm_t *spm;            /* and its tokenizer.model */
    char llama_dir[1100];     /* the folder they came from */
    sf_lc_t *lc;              /* loop thread only */
} sf_mc_t;

/* The worker's one cache. */
extern sf_mc_t sf_mc;

void sf_mc_lock(void);
void sf_mc_unlock(void);

/* Under the lock. */
int sf_mc_ensure_ml(const sf_wk_env_t *env, sf_job_t *job);
int sf_mc_ensure_clip(const sf_wk_env_t *env, sf_job_t *job);
int sf_mc_ensure_bpe(const sf_wk_env_t *env, sf_job_t *job);
int sf_mc_ensure_diffusion(const sf_wk_env_t *env, sf_job_t *job);
/* Makes sf_mc.llama and sf_mc.spm the instruction model in `model`, an HF
 * LLaMA folder inside models_dir with its tokenizer.model. */
int sf_mc_ensure_instruct(const sf_wk_env_t *env, sf_job_t *job, const char *model);
/* Makes sf_mc.policy the file `file` (a path inside models_dir, or
 * absolute: strategy sft), or when file is NULL the run's policy at
 * `version` from the learner's image blob (len bytes, borrowed). */
int sf_mc_ensure_policy(const sf_wk_env_t *env, sf_job_t *job, const char *file, uint32_t version,
                        const uint8_t *blob, size_t len);
/* The world classifiers, when models_dir has them (0 if not: the evaluation
 * then has no classifier figures; each missing one is warned about once). */
int sf_mc_ensure_classifiers(const sf_wk_env_t *env);
/* The world of a class list (sf_classes_load's names), or NULL with the job
 * failed; the cache holds SF_MC_MAX_WORLDS and drops the first when full. */
sf_world_t *sf_mc_world(const char *name, sf_job_t *job);

/* Loop thread.  The learner client, connected on first use; NULL when it
 * cannot be. */
sf_lc_t *sf_mc_learner(sf_wk_t *wk);
/* Closes the learner client (loop thread, when the worker leaves). */
void sf_mc_close(void);

#endif
