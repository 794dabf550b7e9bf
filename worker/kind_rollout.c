/* kind_rollout.c: rollout — captions sampled with the learner's current
 * policy, scored with the paper's reward, sent to sf-learner; the result is
 * the learner's acknowledgement.  The policy arrives and the batch goes out
 * on the loop thread; sampling and scoring run on the thread pool, under
 * the model cache's lock (kind_policy.h).  The first image_check rollouts
 * of a job are also checked on the image side (image_check below). */
#if SF_HAVE_TORCH
#include <stdlib.h>
#include <string.h>

#include "common/method/reward.h"
#include "common/runtime/error.h"
#include "common/runtime/hash.h"
#include "worker/kind_policy.h"
#include "worker/kind_util.h"
#include "worker/kinds.h"
#include "worker/model_cache.h"

/* A rollout job in flight: the policy job, and what goes to the learner. */
typedef struct {
    sf_pjob_t pj; /* first: a rollout_t is freed as its sf_pjob_t */
    Sf__Rollout *rolls;
    Sf__Rollout **rollp;
    int n_rolls;
    double score_sum;
    int nonsense;
    char example[256];
} rollout_t;

static void rollout_destroy(sf_pjob_t *pj) {
    rollout_t *ro = (rollout_t *)pj;
    for (int i = 0; i < ro->n_rolls; i++) {
        free(ro->rolls[i].query);
        free(ro->rolls[i].response);
        free(ro->rolls[i].logprobs);
        free(ro->rolls[i].values);
    }
    free(ro->rolls);
    free(ro->rollp);
}

/* Rollout i: the prompt, sample i of s (tokens, log-probabilities, values)
 * and its score.  0, or SF_ENOMEM. */
static int fill_rollout(Sf__Rollout *r, int k, const int32_t *prompt, int plen, const sf_samples_t *s, int i,
                        float score) {
    const int L = s->lengths[i];
    r->cls = (uint32_t)k;
    r->n_query = (size_t)plen;
    r->query = malloc(sizeof(int32_t) * (plen ? plen : 1));
    r->n_response = r->n_logprobs = r->n_values = (size_t)L;
    r->response = malloc(sizeof(int32_t) * (L ? L : 1));
    r->logprobs = malloc(sizeof(float) * (L ? L : 1));
    r->values = malloc(sizeof(float) * (L ? L : 1));
    if (!r->query || !r->response || !r->logprobs || !r->values) return SF_ENOMEM;
    memcpy(r->query, prompt, sizeof(int32_t) * plen);
    memcpy(r->response, s->tokens + (size_t)i * s->max_new, sizeof(int32_t) * L);
    memcpy(r->logprobs, s->logprobs + (size_t)i * s->max_new, sizeof(float) * L);
    memcpy(r->values, s->values + (size_t)i * s->max_new, sizeof(float) * L);
    r->score = score;
    return 0;
}

/* The image-side check: the reward reads the caption's text alone, so a
 * policy can raise it by moving the text embedding while the generator
 * ignores the words that moved it.  The first image_check rollouts' captions
 * (nonsense ones too) are drawn by the world's generator, each with its own
 * seed from the job's and the rollout's index, embedded by the worker's CLIP
 * and scored as the text is, -cos to the class mean; faithful when the
 * generator drew the target class (the outcome alone would not say it: a
 * caption naming another class or none is drawn "ok").  The learner reports
 * both per update beside the text reward (docs/method.md).  With the
 * diffusion generator nothing is checked: it would run the pipeline once per
 * checked rollout, in the middle of PPO.  0, or -1 with the job failed. */
static int image_check(rollout_t *ro, const sf_world_t *w, int k, char **texts, uint64_t seed, const float *mean,
                       int E) {
    sf_job_t *job = ro->pj.job;
    const int m = ro->pj.p->image_check < ro->n_rolls ? (int)ro->pj.p->image_check : ro->n_rolls;
    if (m <= 0 || strcmp(ro->pj.p->generator, "world")) return 0;
    const int S = sf_world_size(w);
    uint8_t *rgb = malloc((size_t)m * S * S * 3);
    const uint8_t **rows = malloc(sizeof *rows * m);
    float *iemb = malloc(sizeof(float) * (size_t)m * E);
    int rc = -1;
    if (!rgb || !rows || !iemb) { sf_kind_fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    for (int i = 0; i < m; i++) {
        sf_world_gen_t info;
        uint8_t *px = rgb + (size_t)i * S * S * 3;
        rows[i] = px;
        uint64_t iseed = sf_mix2(seed ^ 0x696d616765ull /* "image" */, (uint64_t)i);
        if (sf_world_generate(w, texts[i], iseed, px, &info) != 0) {
            sf_kind_fail(job, SF_JOB_FAILED, "world generator failed on the image check");
            goto out;
        }
        ro->rolls[i].faithful = info.attrs.cls == k;
    }
    if (sf_kind_embed_images(rows, S, NULL, NULL, m, iemb, job)) goto out;
    for (int i = 0; i < m; i++) {
        float c;
        /* An embedding of zero norm has no cosine: the rollout stays unchecked. */
        if (sf_reward_cosine(iemb + (size_t)i * E, mean, (size_t)E, &c) != 0) {
            ro->rolls[i].faithful = 0;
            continue;
        }
        ro->rolls[i].image_checked = 1;
        ro->rolls[i].image_score = -c;
    }
    rc = 0;
out:
    free(rgb);
    free(rows);
    free(iemb);
    return rc;
}

static int rollout_locked(sf_pjob_t *pj) {
    rollout_t *ro = (rollout_t *)pj;
    sf_job_t *job = pj->job;
    sf_world_t *w;
    int k;
    sf_classlist_t among = {0};
    if (sf_mc_ensure_clip(pj->env, job) || sf_mc_ensure_bpe(pj->env, job) || sf_policy_ensure(pj, NULL) ||
        !(w = sf_mc_world(pj->p->world, job)) || (k = sf_kind_class(w, job)) < 0 ||
        sf_kind_run_classes(w, job, pj->p->run_classes, &among))
        return -1;
    const int E = sf_clip_config(sf_mc.clip)->embed_dim, n = (int)job->item_count;
    float *mean = malloc(sizeof(float) * E), *temb = malloc(sizeof(float) * (size_t)n * E);
    int32_t *prompt = NULL;
    int plen = 0, rc = -1;
    sf_samples_t s = {0};
    char **texts = NULL;
    uint64_t seed = sf_mix2(sf_mix2((uint64_t)pj->p->seed, job->id & 0xffffffffu), job->attempt);
    if (!mean || !temb) { sf_kind_fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    if (sf_kind_load_mean(pj->env, job, mean, E) ||
        sf_policy_sample(pj, w, k, n, seed, &prompt, &plen, &s, &texts) || sf_kind_embed_texts(texts, n, temb, job))
        goto out;
    ro->rolls = calloc((size_t)n, sizeof *ro->rolls);
    ro->rollp = calloc((size_t)n, sizeof *ro->rollp);
    if (!ro->rolls || !ro->rollp) { sf_kind_fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    for (int i = 0; i < n; i++) {
        Sf__Rollout *r = &ro->rolls[i];
        sf__rollout__init(r);
        ro->rollp[i] = r;
        ro->n_rolls++;
        float score;
        int why = 0;
        sf_reward_score(sf_world_class(w, k), &among, texts[i], temb + (size_t)i * E, mean, (size_t)E, &score, &why);
        if (fill_rollout(r, k, prompt, plen, &s, i, score) != 0) { sf_kind_fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
        ro->score_sum += score;
        ro->nonsense += why != 0;
        if (i == 0) snprintf(ro->example, sizeof ro->example, "%s", texts[i]);
    }
    if (image_check(ro, w, k, texts, seed, mean, E)) goto out;
    rc = 0;
out:
    free(among.v);
    free(mean);
    free(temb);
    free(prompt);
    sf_samples_free(&s);
    sf_kind_free_texts(texts, n);
    return rc;
}

static void on_ack(void *arg, int status, uint32_t accepted, uint32_t stale, uint32_t version, const char *err) {
    rollout_t *ro = arg;
    sf_job_t *job = ro->pj.job;
    if (status != 0 || (err && *err)) {
        sf_kind_fail(job, SF_JOB_FAILED, "learner: %s", err && *err ? err : sf_strerror(status));
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "n", ro->n_rolls);
        cJSON_AddNumberToObject(o, "accepted", accepted);
        cJSON_AddNumberToObject(o, "stale", stale);
        cJSON_AddNumberToObject(o, "policy_version", ro->pj.version);
        cJSON_AddNumberToObject(o, "learner_version", version);
        cJSON_AddNumberToObject(o, "mean_score", ro->n_rolls ? ro->score_sum / ro->n_rolls : 0);
        cJSON_AddNumberToObject(o, "nonsense", ro->nonsense);
        cJSON_AddStringToObject(o, "example", ro->example);
        sf_kind_result(job, o);
    }
    sf_policy_done(&ro->pj);
}

/* On the loop: the rollouts go to the learner; its acknowledgement
 * completes the job. */
static void rollout_send(sf_pjob_t *pj) {
    rollout_t *ro = (rollout_t *)pj;
    Sf__RolloutBatch b = SF__ROLLOUT_BATCH__INIT;
    b.run = ro->pj.job->run;
    b.policy_version = ro->pj.version;
    b.n_rollouts = (size_t)ro->n_rolls;
    b.rollouts = ro->rollp;
    sf_lc_send_rollouts(sf_mc.lc, &b, on_ack, ro);
}

int sf_rollout_job(sf_wk_t *wk, sf_job_t *job) {
    rollout_t *ro = calloc(1, sizeof *ro);
    if (!ro) return sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    ro->pj.locked = rollout_locked;
    ro->pj.after = rollout_send;
    ro->pj.destroy = rollout_destroy;
    return sf_policy_start(wk, job, &ro->pj, 1);
}

#endif
