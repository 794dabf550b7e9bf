/* kind_captions.c: captions — the run's captions for a class, one JSON line
 * each in runs/<run>/captions/<wnid>.jsonl.  Strategies:
 *   ppo          the run's final policy, from the learner;
 *   sft          the SFT policy file (the payload's policy), no learner;
 *   best-of-n    best_of_n samples of the SFT policy per caption, the ones
 *                with the highest reward kept (search without PPO);
 *   d3s          D3S's template with its ten backgrounds (no policy);
 *   base,        "a photo of a <class>" (no policy; low-density's choice
 *   low-density  among generations is the generate phase's);
 *   low-density-oracle  attributes the class rarely shows, read from the
 *                world's ground truth (a ceiling, not a baseline a real
 *                system could run).
 * kind_policy.h has the learned ones.
 */
#if SF_HAVE_TORCH
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/method/classes.h"
#include "common/method/reward.h"
#include "common/runtime/fileio.h"
#include "common/runtime/hash.h"
#include "worker/kind_policy.h"
#include "worker/kind_util.h"
#include "worker/kinds.h"
#include "worker/model_cache.h"

/* D3S's ten backgrounds (Kattakinda et al. 2022). */
static const char *const d3s_backgrounds[10] = {"grass", "road", "forest", "water", "sand",
                                                "indoors", "snow", "rain", "night", "cave"};

/* Caption i of a baseline strategy into buf (no policy involved). */
static int baseline_caption(const sf_shift_params_t *p, const sf_world_t *w, int k, const char *wnid, uint32_t i,
                            char *buf, size_t n) {
    const char *name = sf_world_class(w, k)->name;
    if (!strcmp(p->strategy, "d3s")) {
        char gloss[400];
        sf_class_gloss(wnid, gloss, sizeof gloss);
        snprintf(buf, n, "a photo of a %s, %s, %s", name, gloss, d3s_backgrounds[i % 10]);
        return 0;
    }
    if (!strcmp(p->strategy, "base") || !strcmp(p->strategy, "low-density")) {
        snprintf(buf, n, "a photo of a %s", name);
        return 0;
    }
    /* low-density-oracle: attributes from the class prior raised to -1 (what the
     * class rarely shows), all named; a draw the generator would fail on is
     * rejected and drawn again (up to 32 times).  The check generates the
     * caption's first image with the generate phase's seed, so it needs the
     * run's images_per_caption (the captions payload carries it). */
    const uint32_t ipc = (uint32_t)p->images_per_caption;
    for (int j = 0; j < 32; j++) {
        sf_world_attrs_t a;
        uint64_t sd = sf_mix2(sf_mix2((uint64_t)p->seed ^ 0x10ede5ull, sf_fnv1a_str(wnid)), (uint64_t)i * 64 + j);
        sf_world_tempered_sample(w, k, sd, -1.0, &a);
        unsigned mask = SF_ATTR_ALL & ~((1u << SF_ATTR_POS) | (1u << SF_ATTR_ROT));
        if (sf_world_caption(w, &a, mask, (int)(sd % (uint64_t)sf_world_n_templates()), buf, n) < 0) continue;
        sf_world_gen_t info;
        if (sf_world_generate(w, buf, sf_kind_gen_seed(p, wnid, i * ipc), NULL, &info) == 0 &&
            info.outcome == SF_GEN_OK)
            return 0;
    }
    return 1; /* the last draw stands; its generation may fail */
}

/* The learned strategies: n captions sampled with the policy (the run's, or
 * the file `policy_file`), nonsense drawn again.  *resampled counts the
 * redraws.  0, or -1 with the job failed. */
static int learned_captions(sf_pjob_t *pj, const sf_world_t *w, int k, const sf_classlist_t *among, int n,
                            uint64_t seed, const char *policy_file, char ***texts, int *resampled) {
    sf_job_t *job = pj->job;
    int32_t *prompt = NULL;
    int plen, rc = -1;
    sf_samples_t s = {0};
    if (sf_mc_ensure_ml(pj->env, job) || sf_mc_ensure_bpe(pj->env, job) || sf_policy_ensure(pj, policy_file) ||
        sf_policy_sample(pj, w, k, n, seed, &prompt, &plen, &s, texts))
        goto out;
    /* A nonsensical caption (not a sentence, the class not named, or
     * another class named too) is
     * drawn again, up to 8 times, with the same sampler: the dataset
     * wants captions of the class, as the reward does. */
    for (int round = 1; round <= 8; round++) {
        int bad[4096], nb = 0;
        for (int i = 0; i < n && nb < 4096; i++)
            if (sf_reward_check(sf_world_class(w, k), among, (*texts)[i]) != 0) bad[nb++] = i;
        if (!nb) break;
        int32_t *p2 = NULL;
        int pl2;
        sf_samples_t s2 = {0};
        char **t2 = NULL;
        if (sf_policy_sample(pj, w, k, nb, sf_mix2(seed, (uint64_t)round), &p2, &pl2, &s2, &t2)) {
            free(p2);
            goto out;
        }
        for (int j = 0; j < nb; j++) {
            free((*texts)[bad[j]]);
            (*texts)[bad[j]] = t2[j];
            t2[j] = NULL;
        }
        *resampled += nb;
        sf_kind_free_texts(t2, nb);
        free(p2);
        sf_samples_free(&s2);
    }
    rc = 0;
out:
    free(prompt);
    sf_samples_free(&s);
    return rc;
}

/* best-of-n: n * best_of_n captions of the SFT policy (nonsense drawn
 * again, as for sft), scored by the rollouts' reward (sf_reward_score: -cos
 * to the class mean, nonsense worst); the n best are kept, in the order
 * they were sampled, so that PPO is compared with search on the same
 * policy and the same objective.  0, or -1 with the job failed. */
static int best_of_n(sf_pjob_t *pj, const sf_world_t *w, int k, const sf_classlist_t *among, int n, uint64_t seed,
                     char ***texts, int *resampled) {
    sf_job_t *job = pj->job;
    const int m = n * (int)pj->p->best_of_n;
    if (m > 4096) return sf_kind_fail(job, SF_JOB_FATAL, "best-of-n: %d samples in one job (at most 4096: fewer "
                                                         "captions per job or a smaller best_of_n)", m);
    char **all = NULL;
    if (learned_captions(pj, w, k, among, m, seed, pj->p->policy, &all, resampled)) return -1;
    int rc = -1;
    float *mean = NULL, *temb = NULL, *score = malloc(sizeof(float) * (size_t)m);
    int *order = malloc(sizeof(int) * (size_t)m);
    char *chosen = calloc((size_t)m, 1);
    if (sf_mc_ensure_clip(pj->env, job)) goto out;
    const int E = sf_clip_config(sf_mc.clip)->embed_dim;
    mean = malloc(sizeof(float) * E), temb = malloc(sizeof(float) * (size_t)m * E);
    *texts = calloc((size_t)n, sizeof **texts);
    if (!score || !order || !chosen || !mean || !temb || !*texts) { sf_kind_fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    if (sf_kind_load_mean(pj->env, job, mean, E) || sf_kind_embed_texts(all, m, temb, job)) goto out;
    for (int i = 0; i < m; i++) {
        sf_reward_score(sf_world_class(w, k), among, all[i], temb + (size_t)i * E, mean, (size_t)E, &score[i], NULL);
        order[i] = i;
    }
    /* The n best (highest reward; the earlier sample on a tie)... */
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && (score[order[j]] > score[order[j - 1]] ||
                                  (score[order[j]] == score[order[j - 1]] && order[j] < order[j - 1])); j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    /* ...in sample order. */
    for (int i = 0; i < n; i++) chosen[order[i]] = 1;
    for (int i = 0, at = 0; i < m; i++)
        if (chosen[i]) (*texts)[at++] = all[i], all[i] = NULL;
    rc = 0;
out:
    sf_kind_free_texts(all, m);
    free(mean), free(temb), free(score), free(order), free(chosen);
    return rc;
}

static int captions_locked(sf_pjob_t *pj) {
    sf_job_t *job = pj->job;
    const sf_shift_params_t *p = pj->p;
    const char *strategy = p->strategy;
    const int n = (int)job->item_count;
    sf_world_t *w;
    int k;
    char **texts = NULL;
    const int learned = !strcmp(strategy, "ppo") || !strcmp(strategy, "sft") || !strcmp(strategy, "best-of-n");
    const char *policy_file = strcmp(strategy, "ppo") ? p->policy : NULL;
    uint64_t seed = sf_mix2(sf_mix2((uint64_t)p->seed, sf_fnv1a_str(job->wnid)), 0xca971075ull + job->item_start);
    sf_classlist_t among = {0};
    if (!(w = sf_mc_world(p->world, job)) || (k = sf_kind_class(w, job)) < 0 ||
        sf_kind_run_classes(w, job, p->run_classes, &among))
        return -1;
    int resampled = 0, rc = -1;
    if (!strcmp(strategy, "best-of-n")) {
        if (best_of_n(pj, w, k, &among, n, seed, &texts, &resampled)) goto out;
    } else if (learned) {
        if (learned_captions(pj, w, k, &among, n, seed, policy_file, &texts, &resampled)) goto out;
    } else {
        texts = calloc((size_t)n, sizeof *texts);
        for (int i = 0; texts && i < n; i++) {
            char buf[600];
            baseline_caption(p, w, k, job->wnid, job->item_start + (uint32_t)i, buf, sizeof buf);
            texts[i] = strdup(buf);
        }
        if (!texts) { sf_kind_fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
        policy_file = "";
    }
    char dir[1400], path[1500];
    sf_kind_captions_path(pj->env, job, dir, sizeof dir, path, sizeof path);
    size_t cap = 0, len = 0;
    char *buf = NULL;
    int nonsense = 0, brc = 0;
    for (int i = 0; brc == 0 && i < n; i++) {
        int why = sf_reward_check(sf_world_class(w, k), &among, texts[i]);
        nonsense += why != 0;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", job->item_start + i);
        cJSON_AddStringToObject(o, "caption", texts[i]);
        cJSON_AddStringToObject(o, "strategy", strategy);
        cJSON_AddNumberToObject(o, "policy_version", policy_file ? 0 : pj->version);
        if (learned) cJSON_AddNumberToObject(o, "seed", (double)(seed & 0xffffffffffffull));
        cJSON_AddBoolToObject(o, "nonsense", why != 0);
        brc = sf_kind_jsonl_add(&buf, &len, &cap, o);
        cJSON_Delete(o);
    }
    if (brc || sf_mkdir_p(dir, 0775) != 0 || sf_write_file_atomic(path, buf ? buf : "", len) != 0) {
        sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s: %s", path, strerror(errno));
        free(buf);
        goto out;
    }
    free(buf);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "captions", n);
    cJSON_AddNumberToObject(o, "nonsense", nonsense);
    cJSON_AddNumberToObject(o, "resampled", resampled);
    cJSON_AddNumberToObject(o, "policy_version", policy_file && *policy_file ? 0 : pj->version);
    rc = sf_kind_result(job, o);
out:
    free(among.v);
    sf_kind_free_texts(texts, n);
    return rc;
}

int sf_captions_job(sf_wk_t *wk, sf_job_t *job) {
    sf_pjob_t *pj = calloc(1, sizeof *pj);
    if (!pj) return sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    pj->locked = captions_locked;
    /* Only the method's own strategy needs the learner: sft reads a file and
     * the baselines need no policy at all. */
    return sf_policy_start(wk, job, pj, !strcmp(job->params->strategy, "ppo"));
}

#endif
