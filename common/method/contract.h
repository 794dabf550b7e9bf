/* contract.h: the typed job contract of method "shift" — every setting a run
 * spec may carry, its type, default, bounds, sfctl flag and one line of doc,
 * in one table (SF_SHIFT_SETTINGS below), and which settings travel in the
 * payload of each job kind, and what each kind's result holds.
 *
 * One table, four readers:
 *   the coordinator  reads a client's spec into sf_shift_params_t (checked
 *                    against the bounds) and writes each phase's payload
 *                    with sf_job_payload (only the keys that kind reads);
 *   the worker       parses a job's payload once, before its handler runs,
 *                    with sf_job_params_parse (defaults for what is absent,
 *                    the same bounds, unknown keys refused);
 *   sfctl submit     turns --flags into spec keys with sf_setting_by_flag and
 *                    prints them in its usage from the table;
 *   the docs test    checks that docs/configuration.md lists every key with
 *                    this type and default, and no key the method lacks
 *                    (tests/unit/test_contract.c).
 * A default is written here and nowhere else.  A payload key is the spec key
 * it comes from, so one name means one setting everywhere.
 */
#ifndef SF_CONTRACT_H
#define SF_CONTRACT_H

#include <math.h>
#include <stddef.h>

#include <cjson/cJSON.h>

typedef enum { SF_SET_UINT = 0, SF_SET_NUM, SF_SET_STR } sf_set_type_t;

/* String settings are held in fixed buffers of this size (a policy path is
 * at most 255 bytes: sf_spec_models_path_ok). */
#define SF_SET_STR_MAX 256

/* The SFT policy's file in a models folder: what sf-train writes and what
 * a run uses when its spec names no policy. */
#define SF_POLICY_SFT_FILE "policy-sft.safetensors"

/* The corpus phase's default instruction (common/method/corpus.h). */
#define SF_CORPUS_INSTRUCTION "Write a one-sentence caption for a photo of a {class}."

/* Job kinds of method "shift" (bits, for "which kinds read this setting"). */
enum {
    SF_K_EMBED = 1 << 0,
    SF_K_ROLLOUT = 1 << 1,
    SF_K_CAPTIONS = 1 << 2,
    SF_K_GENERATE = 1 << 3,
    SF_K_FILTER = 1 << 4,
    SF_K_MANIFEST = 1 << 5,
    SF_K_FINETUNE = 1 << 6,
    SF_K_CLASSIFY = 1 << 7,
    SF_K_EVALUATE = 1 << 8,
    SF_K_SUMMARIZE = 1 << 9,
    SF_K_CORPUS = 1 << 10,
};

/* The kinds of the real classifiers' evaluation (Table 2 and Fig. 6 with
 * timm folders): what "classifiers" and the fine-tune settings reach. */
#define SF_K_REAL_EVAL (SF_K_CLASSIFY | SF_K_FINETUNE | SF_K_EVALUATE | SF_K_SUMMARIZE)

/* X(name, type, default, min, max, kinds, flag, doc)
 *   name     the spec key, the payload key and the field of sf_shift_params_t
 *   type     UINT (a whole number), NUM or STR
 *   default  a number, or for STR a string literal
 *   min, max bounds of a number (ignored for STR; choices are the planner's)
 *   kinds    the job kinds whose payload carries it (SF_K_… bits, 0: none,
 *            the planner alone reads it)
 *   flag     the sfctl submit flag, or NULL
 * A NUM default of NAN is "unset": the setting is left out of payloads and
 * the worker chooses (filter_threshold: the embedder's own threshold).
 * Defaults marked "(planner: …)" in the doc are placeholders the planner
 * replaces (hook_scale depends on the strategy; world on the class list);
 * docs/configuration.md says "set by the coordinator" for them. */
#define SF_SHIFT_SETTINGS(X)                                                                                         \
    X(strategy, STR, "ppo", 0, 0, SF_K_CAPTIONS | SF_K_GENERATE | SF_K_FILTER, "--strategy",                           \
      "ppo (the method), sft (the SFT policy alone), or a baseline: best-of-n, d3s, low-density, base, or the ceiling " \
      "low-density-oracle")                                                                                            \
    X(policy, STR, SF_POLICY_SFT_FILE, 0, 0, SF_K_CAPTIONS, "--policy",                                          \
      "the SFT policy, a path inside the learner's and workers' models_dir")                                           \
    X(world, STR, "builtin:imagenet-a-r-86", 0, 0,                                                                     \
      SF_K_CORPUS | SF_K_EMBED | SF_K_ROLLOUT | SF_K_CAPTIONS | SF_K_GENERATE | SF_K_FILTER | SF_K_REAL_EVAL, NULL,                    \
      "the class list whose world workers render (planner: the 86 when every class is one of them, else all 1000)")   \
    X(run_classes, STR, "none", 0, 0, SF_K_ROLLOUT | SF_K_CAPTIONS | SF_K_REAL_EVAL, NULL,                             \
      "the run's classes as a hex mask over the world's list, for the reward's other-class check; none: no check "     \
      "(planner: from the run's classes)")                                                                             \
    X(corpus_model, STR, "none", 0, 0, SF_K_CORPUS, "--corpus-model",                                                  \
      "the corpus phase's instruction model, an HF LLaMA folder (with tokenizer.model) inside the learner's and "     \
      "workers' models_dir; none: no corpus phase (the SFT reads sft.corpus or the world's corpus)")                    \
    X(corpus_template, STR, "alpaca", 0, 0, SF_K_CORPUS, "--corpus-template",                                          \
      "the corpus prompt's template: alpaca (Stanford Alpaca's, no input) or a text with {instruction}")               \
    X(corpus_instruction, STR, SF_CORPUS_INSTRUCTION, 0, 0, SF_K_CORPUS, "--corpus-instruction",                      \
      "the instruction put into the template; {class} becomes the class's name")                                      \
    X(corpus_captions, UINT, 16, 1, 256, SF_K_CORPUS, "--corpus-captions",                                            \
      "captions the instruction model writes per class (the paper: 16)")                                              \
    X(corpus_attempts, UINT, 4, 1, 64, SF_K_CORPUS, "--corpus-attempts",                                              \
      "samples per caption at most: one that is not a sentence naming its class is drawn again, then dropped")        \
    X(corpus_temperature, NUM, 0.8, 0.05, 10, SF_K_CORPUS, "--corpus-temperature",                                    \
      "the instruction model's sampling temperature")                                                                  \
    X(corpus_top_p, NUM, 0.95, 0.01, 1, SF_K_CORPUS, "--corpus-top-p", "the instruction model's nucleus (top-p)")     \
    X(corpus_max_new_tokens, UINT, 48, 4, 512, SF_K_CORPUS, "--corpus-max-new-tokens",                                \
      "longest corpus caption, in the instruction model's tokens")                                                     \
    X(reference_source, STR, "world", 0, 0,                                                                          \
      SF_K_EMBED | SF_K_ROLLOUT | SF_K_CAPTIONS | SF_K_FILTER | SF_K_CLASSIFY | SF_K_FINETUNE, "--reference",         \
      "reference images: world, or a folder name under each worker's reference_root")                                  \
    X(generator, STR, "world", 0, 0, SF_K_ROLLOUT | SF_K_GENERATE | SF_K_FILTER, "--generator",                        \
      "the text-to-image generator: world or diffusion")                                                               \
    X(seed, UINT, 1, 0, 0x7fffffff, SF_K_ROLLOUT | SF_K_CAPTIONS | SF_K_GENERATE | SF_K_FINETUNE, "--seed",            \
      "seeds caption sampling, generation and fine-tuning")                                                            \
    X(reference_images, UINT, 128, 1, 100000,                                                                        \
      SF_K_ROLLOUT | SF_K_CAPTIONS | SF_K_FILTER | SF_K_CLASSIFY | SF_K_FINETUNE, "--reference-images",                \
      "base images per class behind the class mean (and, with real classifiers, Table 2's reference row and Fig. 6's " \
      "base images)")                                                                                                  \
    X(rollouts_per_job, UINT, 8, 1, 4096, 0, "--rollouts-per-job", "captions sampled and scored per rollout job")      \
    X(image_check, UINT, 2, 0, 64, SF_K_ROLLOUT, "--image-check",                                                      \
      "rollouts per rollout job whose image is also generated and scored (world generator only; 0: none)")            \
    X(captions_per_class, UINT, 16, 1, 1000000, 0, "--captions-per-class", "captions written per class")               \
    X(best_of_n, UINT, 8, 1, 64, SF_K_CAPTIONS | SF_K_GENERATE, "--best-of-n",                                         \
      "candidates per one kept: SFT samples per caption for best-of-n (the best by the reward kept), generations per " \
      "image for low-density (the least likely under the reference embeddings among those the filter keeps)")          \
    X(images_per_caption, UINT, 1, 1, 1000, SF_K_CAPTIONS | SF_K_GENERATE | SF_K_FILTER, "--images-per-caption",      \
      "images generated from each caption")                                                                            \
    X(max_new_tokens, UINT, 32, 4, 256, SF_K_ROLLOUT | SF_K_CAPTIONS, "--max-new-tokens",                             \
      "longest caption, in GPT-2 tokens")                                                                              \
    X(temperature, NUM, 1.0, 0.05, 10, SF_K_ROLLOUT | SF_K_CAPTIONS, "--temperature", "caption sampling temperature")  \
    X(shard_size, UINT, 64, 1, 1000000, 0, "--shard-size", "images per generate and filter job")                       \
    X(filter_threshold, NUM, NAN, -1, 1, SF_K_GENERATE | SF_K_FILTER, "--filter-threshold",                            \
      "keep an image when its CLIP cosine similarity to the class text is at least this (unset: the embedder's "      \
      "threshold, the world CLIP's calibrated one or 0.2 for any other CLIP)")                                         \
    X(diffusion_steps, UINT, 0, 0, 1000, SF_K_GENERATE, "--diffusion-steps",                                          \
      "DDIM steps of the diffusion generator (0: the pipeline's default)")                                             \
    X(guidance_scale, NUM, 0, 0, 100, SF_K_GENERATE, "--guidance-scale",                                              \
      "classifier-free guidance scale (0: the pipeline's default)")                                                    \
    X(eta, NUM, 0, 0, 1, SF_K_GENERATE, "--eta", "DDIM eta (0: the pipeline's default)")                               \
    X(hook_scale, NUM, 0, -100, 100, SF_K_GENERATE, "--hook-scale",                                                    \
      "scale of the pipeline's guidance hook (planner: 1 for low-density, else 0)")                                    \
    X(classifiers, STR, "world", 0, 0, SF_K_REAL_EVAL, "--classifiers",                                               \
      "the classifiers of Table 2 and Fig. 6: world (the world's ConvNeXt and ViT), or timm folders inside the "       \
      "workers' models_dir, comma-separated (at most 4; ImageNet-1k heads)")                                           \
    X(eval_sets, STR, "imagenet-r,imagenet-a", 0, 0, SF_K_EVALUATE | SF_K_SUMMARIZE, "--eval-sets",                   \
      "Fig. 6's test sets with real classifiers: folder names under each worker's reference_root, comma-separated")    \
    X(eval_images_per_class, UINT, 1000, 1, 100000, SF_K_EVALUATE, "--eval-images-per-class",                        \
      "most images of a class read from each test set (real classifiers)")                                             \
    X(finetune_images_per_class, UINT, 8, 0, 10000, SF_K_FINETUNE | SF_K_SUMMARIZE, "--finetune-images-per-class",    \
      "kept images per class in the Fig. 6 fine-tune (0: no finetune phase)")                                          \
    X(finetune_steps, UINT, 60, 1, 1000000, SF_K_FINETUNE | SF_K_SUMMARIZE, "--finetune-steps",                       \
      "optimiser steps of finetune_batch images in each fine-tune")                                                    \
    X(finetune_batch, UINT, 64, 1, 4096, SF_K_FINETUNE | SF_K_SUMMARIZE, "--finetune-batch",                          \
      "images per fine-tuning step")                                                                                   \
    X(finetune_seeds, UINT, 3, 1, 16, SF_K_FINETUNE | SF_K_EVALUATE | SF_K_SUMMARIZE, "--finetune-seeds",             \
      "fine-tunes per classifier, each with a control")                                                                \
    X(finetune_learning_rate, NUM, 2e-4, 1e-7, 1, SF_K_FINETUNE | SF_K_SUMMARIZE, "--finetune-learning-rate",         \
      "AdamW's learning rate of the fine-tunes")

/* The settings as a struct: numbers as double or long, strings in buffers. */
#define SF__SET_FIELD_UINT(name) long name;
#define SF__SET_FIELD_NUM(name) double name;
#define SF__SET_FIELD_STR(name) char name[SF_SET_STR_MAX];
#define SF__SET_FIELD(name, type, def, mn, mx, kinds, flag, doc) SF__SET_FIELD_##type(name)
typedef struct {
    SF_SHIFT_SETTINGS(SF__SET_FIELD)
} sf_shift_params_t;
#undef SF__SET_FIELD

typedef struct {
    const char *key;
    sf_set_type_t type;
    double def;             /* numbers */
    const char *sdef;       /* strings */
    double min, max;        /* numbers */
    unsigned kinds;         /* SF_K_… */
    const char *flag;       /* sfctl submit, or NULL */
    const char *doc;
    size_t off;             /* of the field in sf_shift_params_t */
} sf_setting_t;

/* The table, in the order above; *n gets its length. */
const sf_setting_t *sf_shift_settings(int *n);
/* The setting of a spec or payload key, or of an sfctl flag ("--seed"); NULL
 * when there is none. */
const sf_setting_t *sf_setting_find(const char *key);
const sf_setting_t *sf_setting_by_flag(const char *flag);
/* The SF_K_… bit of a job kind's name, 0 for a kind outside the method. */
unsigned sf_job_kind_bit(const char *kind);
/* 1 when the planner replaces the setting's default (its doc says
 * "(planner: …)"), else 0. */
int sf_setting_planner_set(const sf_setting_t *s);
/* Every key a run spec of method "shift" may hold, NULL-terminated: the
 * run's own (method, name, classes, priority, max_attempts, lease_ms,
 * retry_base_ms, retry_max_ms), the learner's (ppo, sft: run_spec.h) and
 * the settings of the table.  Static; never freed. */
const char *const *sf_shift_spec_keys(void);

/* Every setting at its default. */
void sf_shift_params_init(sf_shift_params_t *p);
/* Reads the settings of a run spec into p (p first at its defaults): each key
 * present is checked against its type and bounds; keys that are no setting
 * are left to the caller.  0, or SF_EINVAL with err naming the key:
 * "run spec: 'seed' must be a whole number in [0, 2147483647]". */
int sf_shift_params_from_spec(const cJSON *spec, sf_shift_params_t *p, char *err, size_t n);

/* The payload of a job of `kind`: the settings that kind reads, from p (a new
 * object; the caller frees it). */
cJSON *sf_job_payload(const char *kind, const sf_shift_params_t *p);
/* Parses a job's payload (JSON, len bytes; empty: "{}") of `kind` into p:
 * defaults for what is absent; a key the kind does not read, a wrong type
 * or a value out of bounds is SF_EINVAL naming it ("payload of filter:
 * 'filter_threshold' must be a number in [-1, 1]"). */
int sf_job_params_parse(const char *kind, const char *payload, size_t len, sf_shift_params_t *p, char *err,
                        size_t n);

/* A comma-separated list setting ("classifiers", "eval_sets") split into
 * out[0..max): the number of items, or -1 for an empty item, an item of
 * SF_SET_STR_MAX bytes or more, or more than max items. */
#define SF_MAX_CLASSIFIERS 4
#define SF_MAX_EVAL_SETS 4
int sf_setting_list(const char *s, char out[][SF_SET_STR_MAX], int max);
/* 1 when "classifiers" names timm folders rather than the world's own. */
int sf_real_classifiers(const sf_shift_params_t *p);

/* Results: the fields a kind's result object may hold, NULL-terminated (NULL
 * for a kind without a result object).  The coordinator counts "generated",
 * "kept" and "dropped" per class (sf_run_count_result). */
const char *const *sf_job_result_fields(const char *kind);

#endif
