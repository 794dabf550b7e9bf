/* shift.c: the planner of method "shift", the paper's method as phases.
 *
 *   embed     reference statistics: CLIP image embeddings of N base images
 *             per class, reduced to the class mean (one job per class;
 *             workers reuse what an earlier run stored);
 *   rollout   PPO rollouts (strategy "ppo" only): jobs of a few captions
 *             each, classes interleaved, handed out until the learner
 *             reaches its target number of updates;
 *   captions  K captions per class: from the final policy (strategy "ppo"),
 *             the SFT policy ("sft"), or the baselines — "d3s" (a photo of a
 *             {class}, {WordNet gloss}, {one of D3S's ten backgrounds}),
 *             "low-density" (attribute combinations the class rarely shows,
 *             rejecting ones the generator cannot render), "base" (the
 *             class's base images themselves, rendered by generate);
 *   generate  captions -> images with the configured generator: "world"
 *             (the embedded world's renderer) or "diffusion" (the worker's
 *             TorchScript pipeline, ml/sf_diffusion.h; DDIM steps, guidance,
 *             eta and the low-density hook's scale from the spec);
 *   filter    CLIP similarity to the class text; kept images go to the
 *             dataset and its manifest;
 *   manifest  one job: the filter's per-shard verdicts joined into the
 *             dataset's manifest.jsonl;
 *   finetune  one job: the world classifiers fine-tuned on base + kept
 *             images, measured on world-R/A against a base-only control.
 *
 * The settings each worker needs travel in the phase payloads, so a worker
 * never reads Redis.  The learner reads "policy" and "ppo" from the stored
 * spec; defaults the planner fills in are written into the spec, so what
 * Redis holds is what ran.
 */
#include <math.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/method/run_spec.h"
#include "coordinator/coord.h"

#define DEFAULT_POLICY "policy-sft.safetensors"

static int get_str(const cJSON *spec, const char *key, const char *def, const char *const *allowed, const char **out,
                   char *err, size_t n) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(spec, key);
    if (!it) { *out = def; return 0; }
    if (!cJSON_IsString(it) || !*it->valuestring || strlen(it->valuestring) > 1000)
        return sf_errf(SF_EINVAL, err, n, "run spec: '%s' must be a non-empty string", key);
    if (allowed) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, it->valuestring) == 0;
        if (!ok) return sf_errf(SF_EINVAL, err, n, "run spec: '%s' = \"%s\" is not one this build knows", key,
                                it->valuestring);
    }
    *out = it->valuestring;
    return 0;
}

static int source_name_ok(const char *s) {
    size_t l = strlen(s);
    if (l == 0 || l > 64 || s[0] == '.') return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
              *c == '_' || *c == '-'))
            return 0;
    return 1;
}

/* The world whose class shapes every worker renders: the 86-class list when
 * the run's classes are all in it (the world models were trained on it),
 * else all 1000. */
static const char *world_list(const sf_classlist_t *cl) {
    sf_classlist_t *w86 = NULL;
    char e[64];
    const char *res = "builtin:imagenet-a-r-86";
    if (sf_classes_load(res, &w86, e, sizeof e) != 0) return "builtin:imagenet-1k";
    for (int i = 0; i < cl->n; i++) {
        int found = 0;
        for (int j = 0; j < w86->n && !found; j++) found = strcmp(cl->v[i].wnid, w86->v[j].wnid) == 0;
        if (!found) { res = "builtin:imagenet-1k"; break; }
    }
    sf_classes_free(&w86);
    return res;
}

/* "sft" and "ppo" are the learner's (common/method/run_spec.c reads them for both);
 * only the ppo strategy has a learner to fine-tune the policy. */
static int check_learner_keys(const cJSON *spec, int ppo, long *updates, long *batch, char *err, size_t n) {
    sf_sft_spec_t sft;
    sf_ppo_spec_t p;
    sf_ppo_spec_init(&p);
    int rc = sf_sft_spec_parse(spec, &sft, err, n);
    if (!rc && sft.on && !ppo)
        rc = sf_errf(SF_EINVAL, err, n, "run spec: 'sft' needs strategy ppo (the learner fine-tunes the policy; "
                                        "other strategies name an already fine-tuned \"policy\")");
    if (!rc) rc = sf_ppo_spec_parse(spec, &p, err, n);
    *updates = p.updates;
    *batch = p.batch_size;
    return rc;
}

int sf_plan_shift(sf_run_t *r, cJSON *spec, long max_jobs, char *err, size_t n) {
    static const char *const allowed[] = {
        "method", "name", "classes", "priority", "max_attempts", "lease_ms", "retry_base_ms", "retry_max_ms",
        "strategy", "seed", "policy", "ppo", "reference_images", "reference_source", "rollouts_per_job",
        "captions_per_class", "images_per_caption", "filter_threshold", "generator", "max_new_tokens",
        "temperature", "shard_size", "finetune_images_per_class", "finetune_steps", "finetune_seeds", "diffusion_steps",
        "guidance_scale", "eta", "hook_scale", "sft", "world", NULL};
    static const char *const strategies[] = {"ppo", "sft", "d3s", "low-density", "base", NULL};
    static const char *const generators[] = {"world", "diffusion", NULL};
    int rc = sf_spec_keys(spec, allowed, err, n);
    if (rc) return rc;
    const char *strategy, *generator, *source, *policy;
    long seed, nref, rpj, ncap, ipc, maxtok, shard, ft_per, ft_steps, ft_seeds, dsteps;
    double thr, temp, gscale, eta, hook;
    if ((rc = get_str(spec, "strategy", "ppo", strategies, &strategy, err, n)) ||
        (rc = get_str(spec, "generator", "world", generators, &generator, err, n)) ||
        (rc = get_str(spec, "reference_source", "world", NULL, &source, err, n)) ||
        (rc = get_str(spec, "policy", DEFAULT_POLICY, NULL, &policy, err, n)) ||
        (rc = sf_spec_uint(spec, "seed", 1, 0, 0x7fffffffL, &seed, err, n)) ||
        (rc = sf_spec_uint(spec, "reference_images", 128, 1, 100000, &nref, err, n)) ||
        (rc = sf_spec_uint(spec, "rollouts_per_job", 8, 1, 4096, &rpj, err, n)) ||
        (rc = sf_spec_uint(spec, "captions_per_class", 16, 1, 1000000, &ncap, err, n)) ||
        (rc = sf_spec_uint(spec, "images_per_caption", 1, 1, 1000, &ipc, err, n)) ||
        (rc = sf_spec_uint(spec, "max_new_tokens", 32, 4, 256, &maxtok, err, n)) ||
        (rc = sf_spec_uint(spec, "shard_size", 64, 1, 1000000, &shard, err, n)) ||
        (rc = sf_spec_uint(spec, "finetune_images_per_class", 8, 0, 10000, &ft_per, err, n)) ||
        (rc = sf_spec_uint(spec, "finetune_steps", 60, 1, 1000000, &ft_steps, err, n)) ||
        (rc = sf_spec_uint(spec, "finetune_seeds", 3, 1, 16, &ft_seeds, err, n)) ||
        (rc = sf_spec_num(spec, "filter_threshold", 0.2, -1, 1, &thr, err, n)) ||
        (rc = sf_spec_num(spec, "temperature", 1.0, 0.05, 10, &temp, err, n)) ||
        (rc = sf_spec_uint(spec, "diffusion_steps", 0, 0, 1000, &dsteps, err, n)) ||
        (rc = sf_spec_num(spec, "guidance_scale", 0, 0, 100, &gscale, err, n)) ||
        (rc = sf_spec_num(spec, "eta", 0, 0, 1, &eta, err, n)) ||
        (rc = sf_spec_num(spec, "hook_scale", strcmp(strategy, "low-density") ? 0 : 1, -100, 100, &hook, err, n)))
        return rc;
    /* A reference source other than the world names a folder under each
     * worker's reference_root (never a path: the name becomes one there). */
    if (!source_name_ok(source))
        return sf_errf(SF_EINVAL, err, n,
                       "run spec: 'reference_source' = \"%.100s\" must be \"world\" or a folder name under the "
                       "workers' reference_root (letters, digits, '.', '_', '-'; no leading '.'; at most 64)",
                       source);
    if (!sf_spec_models_path_ok(policy))
        return sf_errf(SF_EINVAL, err, n,
                       "run spec: 'policy' = \"%.100s\" must be a path inside the models_dir of the learner and "
                       "workers (letters, digits, '.', '_', '-', '/'; not absolute, no '..' or empty parts)",
                       policy);
    const int ppo = strcmp(strategy, "ppo") == 0;
    long updates = 0, batch = 0;
    if ((rc = check_learner_keys(spec, ppo, &updates, &batch, err, n))) return rc;
    if (!cJSON_GetObjectItemCaseSensitive(spec, "policy")) cJSON_AddStringToObject(spec, "policy", policy);
    const char *world = world_list(r->classes);
    /* The learner's SFT reads the world's corpus of the run's classes. */
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "world");
    cJSON_AddStringToObject(spec, "world", world);
    const uint64_t C = (uint64_t)r->classes->n, images = (uint64_t)ncap * (uint64_t)ipc;

    /* Rollout jobs: the learner needs updates x batch_size fresh rollouts;
     * stale ones are dropped, so plan three times that (the phase ends as
     * soon as the learner is done; the rest are skipped). */
    uint64_t roll_jobs = 0, roll_items = 0;
    if (ppo) {
        roll_jobs = ((uint64_t)updates * (uint64_t)batch * 3 + (uint64_t)rpj - 1) / (uint64_t)rpj + 2 * C;
        roll_items = (roll_jobs + C - 1) / C * (uint64_t)rpj;
    }
    uint64_t total = C * (1 + (ppo ? roll_items / (uint64_t)rpj : 0) + 1 + 2 * ((images + shard - 1) / shard));
    if (images > 100000000 || roll_items > 100000000 || total > (uint64_t)max_jobs)
        return sf_errf(SF_ERANGE, err, n, "run spec: %llu jobs is over max_jobs_per_run (%ld)",
                       (unsigned long long)total, max_jobs);

    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "source", source);
    cJSON_AddStringToObject(p, "world", world);
    if ((rc = sf_plan_add_phase(r, "embed", "embed", (uint32_t)nref, (uint32_t)nref, p, err, n))) goto out;
    cJSON_Delete(p);

    p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "world", world);
    cJSON_AddStringToObject(p, "source", source);
    cJSON_AddNumberToObject(p, "reference_images", (double)nref);
    cJSON_AddNumberToObject(p, "seed", (double)seed);
    cJSON_AddNumberToObject(p, "max_new_tokens", (double)maxtok);
    cJSON_AddNumberToObject(p, "temperature", temp);
    if (ppo) {
        if ((rc = sf_plan_add_phase(r, "rollout", "rollout", (uint32_t)roll_items, (uint32_t)rpj, p, err, n))) goto out;
        r->phases[r->n_phases - 1].until_learner = 1;
        r->phases[r->n_phases - 1].interleave = 1;
        r->phases[r->n_phases - 1].per_update = (uint32_t)((batch + rpj - 1) / rpj);
    }
    cJSON_AddStringToObject(p, "strategy", strategy);
    if (!strcmp(strategy, "sft")) cJSON_AddStringToObject(p, "policy", policy);
    if ((rc = sf_plan_add_phase(r, "captions", "captions", (uint32_t)ncap, (uint32_t)ncap, p, err, n))) goto out;
    cJSON_Delete(p);

    p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "generator", generator);
    if (!strcmp(generator, "diffusion")) {
        /* 0 = the pipeline's own defaults (its sf-diffusion.json). */
        cJSON_AddNumberToObject(p, "steps", (double)dsteps);
        cJSON_AddNumberToObject(p, "guidance_scale", gscale);
        cJSON_AddNumberToObject(p, "eta", eta);
        cJSON_AddNumberToObject(p, "hook_scale", hook);
    }
    cJSON_AddStringToObject(p, "world", world);
    cJSON_AddNumberToObject(p, "images_per_caption", (double)ipc);
    cJSON_AddNumberToObject(p, "seed", (double)seed);
    cJSON_AddStringToObject(p, "strategy", strategy);
    if ((rc = sf_plan_add_phase(r, "generate", "generate", (uint32_t)images, (uint32_t)shard, p, err, n))) goto out;
    cJSON_Delete(p);

    p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "world", world);
    cJSON_AddStringToObject(p, "source", source);
    cJSON_AddNumberToObject(p, "reference_images", (double)nref);
    cJSON_AddNumberToObject(p, "threshold", thr);
    cJSON_AddStringToObject(p, "generator", generator);
    cJSON_AddNumberToObject(p, "images_per_caption", (double)ipc);
    cJSON_AddStringToObject(p, "strategy", strategy);
    if ((rc = sf_plan_add_phase(r, "filter", "filter", (uint32_t)images, (uint32_t)shard, p, err, n))) goto out;
    cJSON_Delete(p);
    p = NULL;
    /* The dataset's manifest.jsonl, joined once from the filter's shards. */
    if ((rc = sf_plan_add_single(r, "manifest", "manifest", 1, NULL, err, n))) goto out;

    /* Fig. 6: fine-tune the world classifiers on base + kept images (they
     * know the 86-class world only). */
    if (ft_per > 0 && strcmp(strategy, "base") && !strcmp(world, "builtin:imagenet-a-r-86") &&
        !strcmp(generator, "world")) {
        p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "world", world);
        cJSON_AddNumberToObject(p, "images_per_class", (double)ft_per);
        cJSON_AddNumberToObject(p, "steps", (double)ft_steps);
        cJSON_AddNumberToObject(p, "seeds", (double)ft_seeds);
        cJSON_AddNumberToObject(p, "seed", (double)seed);
        rc = sf_plan_add_single(r, "finetune", "finetune", (uint32_t)ft_per, p, err, n);
    }
out:
    cJSON_Delete(p);
    return rc;
}
