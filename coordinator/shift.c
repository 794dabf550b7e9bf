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

#include "common/error.h"
#include "coordinator/coord.h"

#define DEFAULT_POLICY "policy-sft.safetensors"

static int get_num(const cJSON *spec, const char *key, double def, double min, double max, double *out, char *err,
                   size_t n) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(spec, key);
    if (!it) { *out = def; return 0; }
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= min && it->valuedouble <= max))
        return sf_errf(SF_EINVAL, err, n, "run spec: '%s' must be a number in [%g, %g]", key, min, max);
    *out = it->valuedouble;
    return 0;
}

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

/* A run spec comes from a client: its policy is a path inside the learner's
 * and workers' models_dir, never absolute and never climbing out ("..").
 * (The learner takes absolute paths from its operators' own specs in tests;
 * through the coordinator only this form arrives.) */
static int policy_path_ok(const char *s) {
    size_t l = strlen(s);
    if (l == 0 || l > 255 || s[0] == '/') return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
              *c == '_' || *c == '-' || *c == '/'))
            return 0;
    for (const char *c = s; c; c = strchr(c, '/')) {
        if (*c == '/') c++;
        if (*c == '/' || *c == 0 || (c[0] == '.' && (c[1] == '/' || c[1] == 0)) ||
            (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == 0)))
            return 0;
    }
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

/* "sft": the learner fine-tunes the named policy on a caption corpus before
 * PPO (docs/configuration.md).  Only the ppo strategy has a learner. */
static int check_sft(const cJSON *spec, int ppo, char *err, size_t n) {
    const cJSON *sft = cJSON_GetObjectItemCaseSensitive(spec, "sft");
    if (!sft) return 0;
    if (!cJSON_IsObject(sft)) return sf_errf(SF_EINVAL, err, n, "run spec: 'sft' must be an object");
    if (!ppo)
        return sf_errf(SF_EINVAL, err, n, "run spec: 'sft' needs strategy ppo (the learner fine-tunes the policy; "
                                          "other strategies name an already fine-tuned \"policy\")");
    static const char *const allowed[] = {"steps", "batch_size", "learning_rate", "min_learning_rate", "warmup",
                                          "captions_per_class", "corpus", NULL};
    int rc = sf_plan_check_keys(sft, allowed, err, n);
    long steps, batch, warmup, per;
    double lr, lr_min;
    if (rc || (rc = sf_plan_uint(sft, "steps", 0, 1, 10000000, &steps, err, n)) ||
        (rc = sf_plan_uint(sft, "batch_size", 16, 1, 4096, &batch, err, n)) ||
        (rc = sf_plan_uint(sft, "warmup", 0, 0, 10000000, &warmup, err, n)) ||
        (rc = sf_plan_uint(sft, "captions_per_class", 16, 1, 64, &per, err, n)) ||
        (rc = get_num(sft, "learning_rate", 3e-3, 1e-9, 10, &lr, err, n)) ||
        (rc = get_num(sft, "min_learning_rate", 0, 0, 10, &lr_min, err, n)))
        return rc;
    if (!cJSON_GetObjectItemCaseSensitive(sft, "steps")) return sf_errf(SF_EINVAL, err, n, "run spec: sft.steps is required");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(sft, "corpus");
    if (c && (!cJSON_IsString(c) || (strcmp(c->valuestring, "world") && !policy_path_ok(c->valuestring))))
        return sf_errf(SF_EINVAL, err, n,
                       "run spec: sft.corpus must be \"world\" or a JSONL file's path inside the learner's models_dir "
                       "(letters, digits, '.', '_', '-', '/'; not absolute, no '..')");
    return 0;
}

/* "ppo": the learner's settings (learner.c configure() reads the same keys).
 * Checked here so that a misspelt key or a value out of range is refused at
 * submit time instead of being replaced by a default on the learner. */
static int check_ppo(const cJSON *spec, long *updates, long *batch, char *err, size_t n) {
    const cJSON *ppo = cJSON_GetObjectItemCaseSensitive(spec, "ppo");
    if (ppo && !cJSON_IsObject(ppo)) return sf_errf(SF_EINVAL, err, n, "run spec: 'ppo' must be an object");
    static const char *const allowed[] = {
        "updates", "batch_size", "mini_batch_size", "ppo_epochs", "max_staleness", "learning_rate", "init_kl_coef",
        "target", "horizon", "cliprange", "cliprange_value", "vf_coef", "gamma", "lam", "max_grad_norm",
        "prompt_baseline", NULL};
    char e[256] = "";
    long mb, epochs, stale, pb;
    double d;
    int rc = ppo ? sf_plan_check_keys(ppo, allowed, e, sizeof e) : 0;
    if (!rc && !((rc = sf_plan_uint(ppo, "updates", 100, 1, 10000000, updates, e, sizeof e)) ||
                 (rc = sf_plan_uint(ppo, "batch_size", 64, 1, 65536, batch, e, sizeof e)) ||
                 (rc = sf_plan_uint(ppo, "mini_batch_size", 8, 1, 65536, &mb, e, sizeof e)) ||
                 (rc = sf_plan_uint(ppo, "ppo_epochs", 4, 1, 100, &epochs, e, sizeof e)) ||
                 (rc = sf_plan_uint(ppo, "max_staleness", 2, 0, 1000, &stale, e, sizeof e)) ||
                 (rc = sf_plan_uint(ppo, "prompt_baseline", 1, 0, 1, &pb, e, sizeof e)) ||
                 (rc = get_num(ppo, "learning_rate", 0, 1e-12, 1, &d, e, sizeof e)) ||
                 (rc = get_num(ppo, "init_kl_coef", 0, 0, 100, &d, e, sizeof e)) ||
                 (rc = get_num(ppo, "target", 6, 1e-6, 1e6, &d, e, sizeof e)) ||
                 (rc = get_num(ppo, "horizon", 1e4, 1, 1e9, &d, e, sizeof e)) ||
                 (rc = get_num(ppo, "cliprange", 0, 0, 10, &d, e, sizeof e)) ||
                 (rc = get_num(ppo, "cliprange_value", 0, 0, 1e6, &d, e, sizeof e)) ||
                 (rc = get_num(ppo, "vf_coef", 0, 0, 100, &d, e, sizeof e)) ||
                 (rc = get_num(ppo, "gamma", 0, 0, 1, &d, e, sizeof e)) ||
                 (rc = get_num(ppo, "lam", 0, 0, 1, &d, e, sizeof e)) ||
                 (rc = get_num(ppo, "max_grad_norm", 0, 0, 1e6, &d, e, sizeof e))) &&
        *batch % mb != 0)
        rc = sf_errf(SF_EINVAL, e, sizeof e, "'batch_size' %ld must be a multiple of 'mini_batch_size' %ld", *batch,
                     mb);
    if (!rc) return 0;
    const char *m = strncmp(e, "run spec: ", 10) ? e : e + 10;
    return sf_errf(rc, err, n, "run spec: in 'ppo', %s", m);
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
    int rc = sf_plan_check_keys(spec, allowed, err, n);
    if (rc) return rc;
    const char *strategy, *generator, *source, *policy;
    long seed, nref, rpj, ncap, ipc, maxtok, shard, ft_per, ft_steps, ft_seeds, dsteps;
    double thr, temp, gscale, eta, hook;
    if ((rc = get_str(spec, "strategy", "ppo", strategies, &strategy, err, n)) ||
        (rc = get_str(spec, "generator", "world", generators, &generator, err, n)) ||
        (rc = get_str(spec, "reference_source", "world", NULL, &source, err, n)) ||
        (rc = get_str(spec, "policy", DEFAULT_POLICY, NULL, &policy, err, n)) ||
        (rc = sf_plan_uint(spec, "seed", 1, 0, 0x7fffffffL, &seed, err, n)) ||
        (rc = sf_plan_uint(spec, "reference_images", 128, 1, 100000, &nref, err, n)) ||
        (rc = sf_plan_uint(spec, "rollouts_per_job", 8, 1, 4096, &rpj, err, n)) ||
        (rc = sf_plan_uint(spec, "captions_per_class", 16, 1, 1000000, &ncap, err, n)) ||
        (rc = sf_plan_uint(spec, "images_per_caption", 1, 1, 1000, &ipc, err, n)) ||
        (rc = sf_plan_uint(spec, "max_new_tokens", 32, 4, 256, &maxtok, err, n)) ||
        (rc = sf_plan_uint(spec, "shard_size", 64, 1, 1000000, &shard, err, n)) ||
        (rc = sf_plan_uint(spec, "finetune_images_per_class", 8, 0, 10000, &ft_per, err, n)) ||
        (rc = sf_plan_uint(spec, "finetune_steps", 60, 1, 1000000, &ft_steps, err, n)) ||
        (rc = sf_plan_uint(spec, "finetune_seeds", 3, 1, 16, &ft_seeds, err, n)) ||
        (rc = get_num(spec, "filter_threshold", 0.2, -1, 1, &thr, err, n)) ||
        (rc = get_num(spec, "temperature", 1.0, 0.05, 10, &temp, err, n)) ||
        (rc = sf_plan_uint(spec, "diffusion_steps", 0, 0, 1000, &dsteps, err, n)) ||
        (rc = get_num(spec, "guidance_scale", 0, 0, 100, &gscale, err, n)) ||
        (rc = get_num(spec, "eta", 0, 0, 1, &eta, err, n)) ||
        (rc = get_num(spec, "hook_scale", strcmp(strategy, "low-density") ? 0 : 1, -100, 100, &hook, err, n)))
        return rc;
    /* A reference source other than the world names a folder under each
     * worker's reference_root (never a path: the name becomes one there). */
    if (!source_name_ok(source))
        return sf_errf(SF_EINVAL, err, n,
                       "run spec: 'reference_source' = \"%.100s\" must be \"world\" or a folder name under the "
                       "workers' reference_root (letters, digits, '.', '_', '-'; no leading '.'; at most 64)",
                       source);
    if (!policy_path_ok(policy))
        return sf_errf(SF_EINVAL, err, n,
                       "run spec: 'policy' = \"%.100s\" must be a path inside the models_dir of the learner and "
                       "workers (letters, digits, '.', '_', '-', '/'; not absolute, no '..' or empty parts)",
                       policy);
    const int ppo = strcmp(strategy, "ppo") == 0;
    long updates = 0, batch = 0;
    if ((rc = check_ppo(spec, &updates, &batch, err, n))) return rc;
    if ((rc = check_sft(spec, ppo, err, n))) return rc;
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
