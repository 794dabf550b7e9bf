/* shift.c: the planner of method "shift", the paper's method as phases.
 *
 *   corpus    (with a corpus_model) the SFT corpus of each class, written by
 *             the instruction model before the learner's SFT reads it (one
 *             job per class; workers reuse a corpus an earlier run made with
 *             the same model, prompt and settings);
 *   embed     reference statistics: CLIP image embeddings of N base images
 *             per class, reduced to the class mean (one job per class;
 *             workers reuse what an earlier run stored);
 *   rollout   PPO rollouts (strategy "ppo" only): jobs of a few captions
 *             each, classes interleaved, handed out until the learner
 *             reaches its target number of updates;
 *   captions  K captions per class: from the final policy (strategy "ppo"),
 *             the SFT policy ("sft"), or the baselines — "d3s" (a photo of a
 *             {class}, {WordNet gloss}, {one of D3S's ten backgrounds}),
 *             "best-of-n" (the best of best_of_n SFT samples by the
 *             reward), "low-density" (a photo of a {class}; generate keeps
 *             the least likely of best_of_n generations under the reference
 *             embeddings), "low-density-oracle" (attribute combinations the
 *             class rarely shows, read from the world's ground truth,
 *             rejecting ones the generator cannot render: a ceiling), "base"
 *             (the class's base images themselves, rendered by generate);
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
 * With real classifiers ("classifiers": timm folders), Table 2 and Fig. 6
 * are phases of their own (worker/kind_real_eval.c):
 *   classify  (before manifest) each class's kept and reference images
 *             labelled by every classifier;
 *   finetune  one job per fine-tuning run: classifier x seed x {control,
 *             with generated images}, checkpointed so a killed worker's
 *             successor resumes it;
 *   evaluate  each class's images of the test sets (ImageNet-R, -A)
 *             through every fine-tuned model and the original;
 *   summarize one job: finetune.json from the evaluations.
 *
 * The settings, their types, defaults and bounds, and which of them each
 * kind's payload carries are the job contract (common/method/contract.h);
 * what the planner checks beyond it is here: the strategies and generators
 * this build knows, the reference source and policy path rules, the
 * learner's keys and the size of the run.  The settings each worker needs
 * travel in the phase payloads, so a worker never reads Redis.  The learner
 * reads "policy", "world", "ppo" and "sft" from the stored spec; what the
 * planner fills in (the policy when defaulted, the world always) is written
 * into the spec, so what Redis holds is what ran.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/method/contract.h"
#include "common/method/corpus.h"
#include "common/method/run_spec.h"
#include "common/runtime/error.h"
#include "coordinator/coord.h"

#define WORLD_86 "builtin:imagenet-a-r-86"

/* A string setting that must be one of `allowed`. */
static int one_of(const char *key, const char *v, const char *const *allowed, char *err, size_t n) {
    for (const char *const *a = allowed; *a; a++)
        if (!strcmp(*a, v)) return 0;
    return sf_errf(SF_EINVAL, err, n, "run spec: '%s' = \"%.100s\" is not one this build knows", key, v);
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
    const char *res = WORLD_86;
    if (sf_classes_load(res, &w86, e, sizeof e) != 0) return "builtin:imagenet-1k";
    for (int i = 0; i < cl->n; i++) {
        int found = 0;
        for (int j = 0; j < w86->n && !found; j++) found = strcmp(cl->v[i].wnid, w86->v[j].wnid) == 0;
        if (!found) { res = "builtin:imagenet-1k"; break; }
    }
    sf_classes_free(&w86);
    return res;
}

/* The run's classes as a mask over the world's list (bit i of the mask is
 * class i; hex digit j holds classes 4j..4j+3, lowest bit first): what the
 * reward's other-class check reads on workers (worker/kind_util.h). */
static int run_classes_mask(const char *world, const sf_classlist_t *cl, char *out, size_t size, char *err,
                            size_t n) {
    sf_classlist_t *wl = NULL;
    char e[128];
    if (sf_classes_load(world, &wl, e, sizeof e) != 0)
        return sf_errf(SF_ESTATE, err, n, "cannot load the world's class list %s: %s", world, e);
    int digits = (wl->n + 3) / 4, rc = 0;
    if ((size_t)digits + 1 > size) {
        rc = sf_errf(SF_ESTATE, err, n, "the world %s has too many classes for a class mask", world);
    } else {
        unsigned char *bits = calloc((size_t)digits, 1);
        if (!bits) rc = sf_errf(SF_ENOMEM, err, n, "out of memory");
        for (int i = 0; bits && i < cl->n; i++)
            for (int j = 0; j < wl->n; j++)
                if (strcmp(cl->v[i].wnid, wl->v[j].wnid) == 0) bits[j / 4] |= (unsigned char)(1u << (j % 4));
        for (int j = 0; bits && j < digits; j++) out[j] = "0123456789abcdef"[bits[j]];
        if (bits) out[digits] = 0;
        free(bits);
    }
    sf_classes_free(&wl);
    return rc;
}

/* The real classifiers' settings: timm folders inside models_dir, test sets
 * by folder name, and real reference images to compare with and fine-tune
 * on. */
static int check_real_eval(const sf_shift_params_t *p, char *err, size_t n) {
    char items[SF_MAX_CLASSIFIERS][SF_SET_STR_MAX];
    if (!sf_real_classifiers(p)) return 0;
    int k = sf_setting_list(p->classifiers, items, SF_MAX_CLASSIFIERS);
    if (k < 0)
        return sf_errf(SF_EINVAL, err, n, "run spec: 'classifiers' = \"%.100s\" must be \"world\" or 1 to %d "
                       "comma-separated folders", p->classifiers, SF_MAX_CLASSIFIERS);
    for (int i = 0; i < k; i++) {
        if (!sf_spec_models_path_ok(items[i]) || !strcmp(items[i], "world"))
            return sf_errf(SF_EINVAL, err, n, "run spec: classifier \"%.100s\" must be a timm folder inside the "
                           "workers' models_dir (letters, digits, '.', '_', '-', '/'; not absolute, no '..')", items[i]);
        for (int j = 0; j < i; j++)
            if (!strcmp(items[i], items[j]))
                return sf_errf(SF_EINVAL, err, n, "run spec: classifier \"%.100s\" is named twice", items[i]);
    }
    char sets[SF_MAX_EVAL_SETS][SF_SET_STR_MAX];
    k = sf_setting_list(p->eval_sets, sets, SF_MAX_EVAL_SETS);
    if (k < 0)
        return sf_errf(SF_EINVAL, err, n, "run spec: 'eval_sets' = \"%.100s\" must be 1 to %d comma-separated "
                       "folder names", p->eval_sets, SF_MAX_EVAL_SETS);
    for (int i = 0; i < k; i++)
        if (!source_name_ok(sets[i]))
            return sf_errf(SF_EINVAL, err, n, "run spec: test set \"%.100s\" must be a folder name under the "
                           "workers' reference_root", sets[i]);
    if (!strcmp(p->reference_source, "world"))
        return sf_errf(SF_EINVAL, err, n, "run spec: real classifiers are compared with and fine-tuned on real "
                       "images: set 'reference_source' to a folder under the workers' reference_root");
    return 0;
}

/* "sft" and "ppo" are the learner's (common/method/run_spec.c reads them for both);
 * only the ppo strategy has a learner to fine-tune the policy. */
static int check_learner_keys(const cJSON *spec, int ppo, sf_sft_spec_t *sft, long *updates, long *batch, char *err,
                              size_t n) {
    sf_ppo_spec_t p;
    sf_ppo_spec_init(&p);
    int rc = sf_sft_spec_parse(spec, sft, err, n);
    if (!rc && sft->on && !ppo)
        rc = sf_errf(SF_EINVAL, err, n, "run spec: 'sft' needs strategy ppo (the learner fine-tunes the policy; "
                                        "other strategies name an already fine-tuned \"policy\")");
    if (!rc) rc = sf_ppo_spec_parse(spec, &p, err, n);
    *updates = p.updates;
    *batch = p.batch_size;
    return rc;
}

/* The corpus phase's settings: an instruction model inside models_dir, a
 * run that fine-tunes (the corpus is the SFT's) and names no corpus file
 * too, a prompt with its placeholders; corpus settings without a model
 * would be ignored, so they are refused. */
static int check_corpus(const cJSON *spec, const sf_shift_params_t *p, int ppo, const sf_sft_spec_t *sft, char *err,
                        size_t n) {
    if (!strcmp(p->corpus_model, "none")) {
        for (const cJSON *it = spec->child; it; it = it->next)
            if (!strncmp(it->string, "corpus_", 7) && strcmp(it->string, "corpus_model"))
                return sf_errf(SF_EINVAL, err, n, "run spec: '%s' is a setting of the corpus phase, which runs only "
                               "with a 'corpus_model'", it->string);
        return 0;
    }
    if (!sf_spec_models_path_ok(p->corpus_model))
        return sf_errf(SF_EINVAL, err, n, "run spec: 'corpus_model' = \"%.100s\" must be an HF LLaMA folder inside "
                       "the workers' models_dir (letters, digits, '.', '_', '-', '/'; not absolute, no '..')",
                       p->corpus_model);
    if (!ppo || !sft->on)
        return sf_errf(SF_EINVAL, err, n, "run spec: the corpus phase writes the SFT corpus: 'corpus_model' needs "
                       "strategy ppo and an 'sft' object");
    if (sft->corpus[0])
        return sf_errf(SF_EINVAL, err, n, "run spec: 'corpus_model' and 'sft.corpus' both name the SFT corpus; "
                       "give one");
    char prompt[4096];
    int rc = sf_corpus_prompt(sf_corpus_template(p), p->corpus_instruction, "x", prompt, sizeof prompt);
    if (rc == SF_EINVAL)
        return sf_errf(SF_EINVAL, err, n, "run spec: 'corpus_template' needs {instruction}, and it or "
                       "'corpus_instruction' needs {class}");
    return rc ? sf_errf(rc, err, n, "run spec: the corpus prompt is longer than 4095 bytes") : 0;
}

/* A phase of `kind` whose payload is the settings that kind reads (a kind
 * that reads none, the manifest, has no payload); `single`: one job for the
 * run (sf_plan_add_single). */
static int add_phase(sf_run_t *r, const char *kind, uint32_t items, uint32_t shard, int single,
                     const sf_shift_params_t *p, char *err, size_t n) {
    cJSON *o = sf_job_payload(kind, p);
    if (!o) return SF_ENOMEM;
    const cJSON *payload = o->child ? o : NULL;
    int rc = single ? sf_plan_add_single(r, kind, kind, items, payload, err, n)
                    : sf_plan_add_phase(r, kind, kind, items, shard, payload, err, n);
    cJSON_Delete(o);
    return rc;
}

int sf_plan_shift(sf_run_t *r, cJSON *spec, long max_jobs, char *err, size_t n) {
    static const char *const strategies[] = {"ppo",  "sft",  "best-of-n", "d3s", "low-density", "low-density-oracle",
                                             "base", NULL};
    static const char *const generators[] = {"world", "diffusion", NULL};
    int rc = sf_spec_keys(spec, sf_shift_spec_keys(), err, n);
    if (rc) return rc;
    /* Any "world" or "run_classes" a client sends is replaced by what its
     * classes make. */
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "world");
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "run_classes");
    sf_shift_params_t p;
    if ((rc = sf_shift_params_from_spec(spec, &p, err, n)) ||
        (rc = one_of("strategy", p.strategy, strategies, err, n)) ||
        (rc = one_of("generator", p.generator, generators, err, n)))
        return rc;
    /* A reference source other than the world names a folder under each
     * worker's reference_root (never a path: the name becomes one there). */
    if (!source_name_ok(p.reference_source))
        return sf_errf(SF_EINVAL, err, n,
                       "run spec: 'reference_source' = \"%.100s\" must be \"world\" or a folder name under the "
                       "workers' reference_root (letters, digits, '.', '_', '-'; no leading '.'; at most 64)",
                       p.reference_source);
    if (!sf_spec_models_path_ok(p.policy))
        return sf_errf(SF_EINVAL, err, n,
                       "run spec: 'policy' = \"%.100s\" must be a path inside the models_dir of the learner and "
                       "workers (letters, digits, '.', '_', '-', '/'; not absolute, no '..' or empty parts)",
                       p.policy);
    /* The oracle reads the world's ground truth: it has nothing to say
     * about another generator. */
    if (!strcmp(p.strategy, "low-density-oracle") && strcmp(p.generator, "world"))
        return sf_errf(SF_EINVAL, err, n,
                       "run spec: strategy 'low-density-oracle' reads the embedded world's ground truth and runs only "
                       "with generator 'world' (for '%s' use 'low-density')", p.generator);
    const int real = sf_real_classifiers(&p);
    if ((rc = check_real_eval(&p, err, n))) return rc;
    const int ppo = strcmp(p.strategy, "ppo") == 0;
    long updates = 0, batch = 0;
    sf_sft_spec_t sft;
    if ((rc = check_learner_keys(spec, ppo, &sft, &updates, &batch, err, n)) ||
        (rc = check_corpus(spec, &p, ppo, &sft, err, n)))
        return rc;
    const int corpus = strcmp(p.corpus_model, "none") != 0;
    /* The low-density baseline pushes away from dense regions unless told
     * otherwise (the table's default, 0, is every other strategy's). */
    if (!cJSON_GetObjectItemCaseSensitive(spec, "hook_scale") && !strcmp(p.strategy, "low-density"))
        p.hook_scale = 1;
    if (!cJSON_GetObjectItemCaseSensitive(spec, "policy")) cJSON_AddStringToObject(spec, "policy", p.policy);
    /* The learner's SFT reads the world's corpus of the run's classes. */
    snprintf(p.world, sizeof p.world, "%s", world_list(r->classes));
    cJSON_AddStringToObject(spec, "world", p.world);
    if ((rc = run_classes_mask(p.world, r->classes, p.run_classes, sizeof p.run_classes, err, n))) return rc;
    cJSON_AddStringToObject(spec, "run_classes", p.run_classes);
    const uint64_t C = (uint64_t)r->classes->n, rpj = (uint64_t)p.rollouts_per_job,
                   shard = (uint64_t)p.shard_size,
                   images = (uint64_t)p.captions_per_class * (uint64_t)p.images_per_caption;

    /* Rollout jobs: the learner needs updates x batch_size fresh rollouts;
     * stale ones are dropped, so plan three times that (the phase ends as
     * soon as the learner is done; the rest are skipped). */
    uint64_t roll_jobs = 0, roll_items = 0;
    if (ppo) {
        roll_jobs = ((uint64_t)updates * (uint64_t)batch * 3 + rpj - 1) / rpj + 2 * C;
        roll_items = (roll_jobs + C - 1) / C * rpj;
    }
    uint64_t total = C * ((uint64_t)corpus + 1 + (ppo ? roll_items / rpj : 0) + 1 + 2 * ((images + shard - 1) / shard));
    if (images > 100000000 || roll_items > 100000000 || total > (uint64_t)max_jobs)
        return sf_errf(SF_ERANGE, err, n, "run spec: %llu jobs is over max_jobs_per_run (%ld)",
                       (unsigned long long)total, max_jobs);

    const uint32_t nref = (uint32_t)p.reference_images, ncap = (uint32_t)p.captions_per_class;
    /* The corpus first: the learner's SFT, at the first rollout, reads it. */
    if (corpus) {
        const uint32_t nc = (uint32_t)p.corpus_captions;
        if ((rc = add_phase(r, "corpus", nc, nc, 0, &p, err, n))) return rc;
        r->phases[r->n_phases - 1].required = 1;
    }
    if ((rc = add_phase(r, "embed", nref, nref, 0, &p, err, n))) return rc;
    /* Every later phase reads the reference statistics of every class. */
    r->phases[r->n_phases - 1].required = 1;
    if (ppo) {
        if ((rc = add_phase(r, "rollout", (uint32_t)roll_items, (uint32_t)rpj, 0, &p, err, n))) return rc;
        sf_phase_t *ph = &r->phases[r->n_phases - 1];
        ph->until_learner = 1;
        ph->interleave = 1;
        ph->per_update = (uint32_t)(((uint64_t)batch + rpj - 1) / rpj);
    }
    if ((rc = add_phase(r, "captions", ncap, ncap, 0, &p, err, n)) ||
        (rc = add_phase(r, "generate", (uint32_t)images, (uint32_t)shard, 0, &p, err, n)) ||
        (rc = add_phase(r, "filter", (uint32_t)images, (uint32_t)shard, 0, &p, err, n)))
        return rc;
    /* Table 2 with real classifiers: each class's kept and reference images
     * labelled, before the manifest that carries the labels. */
    if (real && (rc = add_phase(r, "classify", 1, 1, 0, &p, err, n))) return rc;
    /* Each of these reads every output of the one before: a dead job there
     * would fail its successors with an error about a missing file. */
    for (int i = 0; i < r->n_phases; i++)
        if (!strcmp(r->phases[i].kind, "captions") || !strcmp(r->phases[i].kind, "generate")) r->phases[i].required = 1;
    /* The dataset's manifest.jsonl, joined once from the filter's shards. */
    if ((rc = add_phase(r, "manifest", 1, 1, 1, &p, err, n))) return rc;

    if (p.finetune_images_per_class == 0 || !strcmp(p.strategy, "base")) return 0;
    if (real) {
        /* Fig. 6 with real classifiers: each fine-tuning run (classifier x
         * seed x {control, with generated}) is one job, resumable from its
         * checkpoint; the test sets' images are evaluated class by class;
         * one job joins the figures into finetune.json. */
        char names[SF_MAX_CLASSIFIERS][SF_SET_STR_MAX];
        const uint32_t runs = (uint32_t)sf_setting_list(p.classifiers, names, SF_MAX_CLASSIFIERS) *
                              (uint32_t)p.finetune_seeds * 2;
        cJSON *o = sf_job_payload("finetune", &p);
        rc = o ? sf_plan_add_runwide(r, "finetune", "finetune", runs, 1, o, err, n) : SF_ENOMEM;
        cJSON_Delete(o);
        if (rc || (rc = add_phase(r, "evaluate", 1, 1, 0, &p, err, n))) return rc;
        r->phases[r->n_phases - 2].required = 1;
        r->phases[r->n_phases - 1].required = 1;
        return add_phase(r, "summarize", 1, 0, 1, &p, err, n);
    }
    /* Fig. 6: fine-tune the world classifiers on base + kept images (they
     * know the 86-class world only). */
    if (!strcmp(p.world, WORLD_86) && !strcmp(p.generator, "world"))
        rc = add_phase(r, "finetune", (uint32_t)p.finetune_images_per_class, 0, 1, &p, err, n);
    return rc;
}
