/* run_spec.h: reading a run spec (JSON) with every key and range checked.
 *
 * The coordinator checks a client's spec before it accepts the run; the
 * learner reads the same spec back from Redis (where anyone with access may
 * have written it) and must apply the same rules.  The parts both read —
 * "ppo", "sft" and the "policy" path — are parsed here, once.  Errors name
 * the key: "run spec: in 'ppo', 'learning_rate' must be a number in …".
 */
#ifndef SF_RUN_SPEC_H
#define SF_RUN_SPEC_H

#include <stddef.h>

#include <cjson/cJSON.h>

/* Unknown or repeated keys of an object: SF_EINVAL naming the first. */
int sf_spec_keys(const cJSON *obj, const char *const *allowed, char *err, size_t n);
/* A whole number in [min, max], or def when the key is absent (obj may be NULL). */
int sf_spec_uint(const cJSON *obj, const char *key, long def, long min, long max, long *out, char *err, size_t n);
/* A number in [min, max], or def when absent. */
int sf_spec_num(const cJSON *obj, const char *key, double def, double min, double max, double *out, char *err,
                size_t n);
/* 1 if s names a file inside a models folder: relative, at most 255 bytes
 * of [A-Za-z0-9._/-], no empty, "." or ".." parts. */
int sf_spec_models_path_ok(const char *s);

/* "ppo": the learner's settings.  The numbers left NaN by sf_ppo_spec_init
 * are the PPO trainer's own defaults (TRL's, ml/sf_ml.h) unless given. */
typedef struct {
    long updates;          /* 100 */
    long batch_size;       /* 64 rollouts per update */
    long mini_batch_size;  /* 8; divides batch_size */
    long ppo_epochs;       /* 4 */
    long max_staleness;    /* 2 */
    long prompt_baseline;  /* 1 */
    long use_rollout_logprobs; /* 1 when max_staleness > 0, else 0: the old log-probs and values of
                                  the PPO ratio are the rollout's (the policy it was sampled with),
                                  not recomputed with the current policy as TRL does */
    double learning_rate, init_kl_coef, target, horizon, cliprange, cliprange_value, vf_coef, gamma, lam,
        max_grad_norm;     /* NaN: the trainer's default */
} sf_ppo_spec_t;

void sf_ppo_spec_init(sf_ppo_spec_t *p);
/* Reads spec's "ppo" (absent: the defaults). */
int sf_ppo_spec_parse(const cJSON *spec, sf_ppo_spec_t *p, char *err, size_t n);

/* "sft": fine-tuning of the policy on the learner before PPO. */
typedef struct {
    int on;                   /* the spec has "sft" */
    long steps;               /* required, 1..10,000,000 */
    long batch_size;          /* 16 */
    long warmup;              /* min(100, steps / 10) */
    long captions_per_class;  /* 16 (1..64), with the world's corpus */
    double learning_rate;     /* 3e-3 */
    double min_learning_rate; /* learning_rate / 10 */
    char corpus[256];         /* "" for the world's corpus, else a path inside models_dir */
} sf_sft_spec_t;

/* Reads spec's "sft" (absent: s->on = 0). */
int sf_sft_spec_parse(const cJSON *spec, sf_sft_spec_t *s, char *err, size_t n);

#endif
