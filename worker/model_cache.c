/* model_cache.c: the models a worker keeps between jobs (model_cache.h). */
#if SF_HAVE_TORCH
#include "worker/model_cache.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/formats/safetensors.h"
#include "common/method/classes.h"
#include "common/net/blob.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/json_strict.h"
#include "common/runtime/log.h"
#include "worker/kind_util.h"

sf_mc_t sf_mc = {.mu = PTHREAD_MUTEX_INITIALIZER};

void sf_mc_lock(void) { pthread_mutex_lock(&sf_mc.mu); }
void sf_mc_unlock(void) { pthread_mutex_unlock(&sf_mc.mu); }

/* libtorch's intra-op thread count is OpenMP's, which is a setting of each
 * thread: a job on another thread of the pool than the one that first set
 * it would run on every core, and its reductions would then depend on the
 * scheduling (a fine-tune resumed on another thread came out different).
 * So each thread sets it once. */
static __thread int thread_ml_ready;

int sf_mc_ensure_ml(const sf_wk_env_t *env, sf_job_t *job) {
    if (sf_mc.ml_ready && thread_ml_ready) return 0;
    sf_ml_opts_t o = {0};
    o.threads = env->threads;
    if (sf_ml_init(&o) != 0) return sf_kind_fail(job, SF_JOB_FATAL, "libtorch: %s", sf_ml_errstr());
    sf_mc.ml_ready = 1;
    thread_ml_ready = 1;
    return 0;
}

/* With swap_models, one large model lives on the device at a time: loading
 * `keep` frees the others and hands their memory back to the device (a GPU
 * worker that holds CLIP, the policy and a diffusion model at once may not
 * fit).  The small world classifiers stay. */
enum { KEEP_CLIP = 1, KEEP_POLICY = 2, KEEP_DIFFUSION = 4, KEEP_INSTRUCT = 8 };
static void swap_to(const sf_wk_env_t *env, int keep) {
    if (!env->swap_models) return;
    int freed = 0;
    if (!(keep & KEEP_CLIP) && sf_mc.clip) sf_clip_free(&sf_mc.clip), freed = 1;
    if (!(keep & KEEP_POLICY) && sf_mc.policy) sf_gpt2_free(&sf_mc.policy), sf_mc.policy_key[0] = 0, freed = 1;
    if (!(keep & KEEP_DIFFUSION) && sf_mc.diff) sf_diffusion_free(&sf_mc.diff), freed = 1;
    if (!(keep & KEEP_INSTRUCT) && sf_mc.llama) sf_llama_free(&sf_mc.llama), freed = 1;
    if (freed) sf_ml_empty_cache();
}

/* The CRC of a checkpoint: its file, or a sharded index and then its shards
 * (sf_st_files).  0, or -1 with the reason in err. */
static int weights_crc(const char *path, uint32_t *crc, char *err, size_t errlen) {
    char **files;
    int n, rc = sf_st_files(path, &files, &n, err, errlen);
    for (int i = 0; rc == 0 && i < n; i++)
        if (sf_crc32_file(files[i], crc) != 0) rc = sf_errf(SF_EIO, err, errlen, "cannot read %s: %s", files[i], strerror(errno));
    if (files) sf_st_files_free(files, n);
    return rc ? -1 : 0;
}

/* The filter's threshold for the CLIP in dir: "threshold" of dir/filter.json
 * (sf-train filter calibrates the world CLIP's, docs/models.md), else 0.2,
 * the paper's for CLIP ViT-B/32.  A filter.json that is there but unreadable
 * is an error: a silent 0.2 would keep what the calibration drops. */
static int clip_threshold(const char *dir, char *err, size_t en) {
    char path[1200];
    snprintf(path, sizeof path, "%s/filter.json", dir);
    size_t len;
    char *text = sf_file_text(path, &len);
    if (!text) {
        if (errno != ENOENT) return sf_errf(SF_EIO, err, en, "cannot read %s: %s", path, strerror(errno));
        sf_mc.clip_threshold = 0.2;
        snprintf(sf_mc.clip_threshold_from, sizeof sf_mc.clip_threshold_from, "paper default");
        return 0;
    }
    cJSON *o = NULL;
    int rc = sf_json_parse_strict(text, len, path, &o, err, en);
    free(text);
    const cJSON *t = rc == 0 ? cJSON_GetObjectItemCaseSensitive(o, "threshold") : NULL;
    if (rc == 0 && !(cJSON_IsNumber(t) && t->valuedouble >= -1 && t->valuedouble <= 1))
        rc = sf_errf(SF_EINVAL, err, en, "%s: \"threshold\" must be a number in [-1, 1]", path);
    if (rc == 0) {
        sf_mc.clip_threshold = t->valuedouble;
        snprintf(sf_mc.clip_threshold_from, sizeof sf_mc.clip_threshold_from, "filter.json");
    }
    cJSON_Delete(o);
    return rc;
}

int sf_mc_ensure_clip(const sf_wk_env_t *env, sf_job_t *job) {
    swap_to(env, KEEP_CLIP);
    if (sf_mc.clip) return 0;
    if (sf_mc_ensure_ml(env, job)) return -1;
    /* clip_dir: an HF CLIP folder (or our own layout); the tag that names the
     * reference statistics comes from the weights' bytes, so statistics of
     * one embedder are never read with another. */
    char dir[1100], path[1200], voc[1200], mer[1200], err[256];
    if (env->clip_dir && *env->clip_dir) snprintf(dir, sizeof dir, "%s", env->clip_dir);
    else snprintf(dir, sizeof dir, "%s/clip-world", env->models_dir);
    snprintf(voc, sizeof voc, "%s/vocab.json", dir);
    snprintf(mer, sizeof mer, "%s/merges.txt", dir);
    uint32_t crc = 0;
    if (sf_st_folder_weights(dir, path, sizeof path) != 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "CLIP: no %s (run make models, or set clip_dir)", path);
    if (weights_crc(path, &crc, err, sizeof err) != 0) return sf_kind_fail(job, SF_JOB_FATAL, "CLIP: %s", err);
    const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    char safe[32];
    size_t k = 0;
    for (const char *c = base; *c && k < sizeof safe - 1; c++)
        safe[k++] = (isalnum((unsigned char)*c) || *c == '-' || *c == '_') ? *c : '_';
    safe[k] = 0;
    snprintf(sf_mc.clip_tag, sizeof sf_mc.clip_tag, "%s-%08x", k ? safe : "clip", crc);
    if (clip_threshold(dir, err, sizeof err) != 0) return sf_kind_fail(job, SF_JOB_FATAL, "CLIP: %s", err);
    if (sf_clip_load_dir(dir, env->device, &sf_mc.clip, err, sizeof err) != 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "CLIP: %s", err);
    if (strcmp(env->dtype, "fp32") && sf_clip_set_dtype(sf_mc.clip, env->dtype) != 0) {
        sf_kind_fail(job, SF_JOB_FATAL, "CLIP in %s: %s", env->dtype, sf_clip_errstr(sf_mc.clip));
        sf_clip_free(&sf_mc.clip);
        return -1;
    }
    if (!sf_mc.ctok && sf_clip_bpe_load(voc, mer, &sf_mc.ctok, err, sizeof err) != 0) {
        sf_clip_free(&sf_mc.clip);
        return sf_kind_fail(job, SF_JOB_FATAL, "CLIP tokenizer: %s", err);
    }
    sf_info("loaded CLIP %s (%s, %s; filter threshold %.4f, %s)", dir, sf_mc.clip_tag, env->dtype,
            sf_mc.clip_threshold, sf_mc.clip_threshold_from);
    return 0;
}

int sf_mc_ensure_bpe(const sf_wk_env_t *env, sf_job_t *job) {
    if (sf_mc.bpe) return 0;
    char err[256];
    if (sf_bpe_load_dir(env->gpt2_vocab, &sf_mc.bpe, err, sizeof err) != 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "GPT-2 vocabulary: %s", err);
    return 0;
}

int sf_mc_ensure_diffusion(const sf_wk_env_t *env, sf_job_t *job) {
    swap_to(env, KEEP_DIFFUSION);
    if (sf_mc.diff) return 0;
    if (sf_mc_ensure_ml(env, job)) return -1;
    char err[300];
    if (sf_diffusion_load(env->diffusion_dir, env->device, env->dtype, &sf_mc.diff, err, sizeof err) != 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "diffusion pipeline: %s", err);
    sf_info("loaded diffusion pipeline %s (%s on %s)", env->diffusion_dir, env->dtype, env->device);
    return 0;
}

int sf_mc_ensure_instruct(const sf_wk_env_t *env, sf_job_t *job, const char *model) {
    char dir[1100], tok[1200], err[400];
    snprintf(dir, sizeof dir, "%s/%s", env->models_dir, model);
    swap_to(env, KEEP_INSTRUCT);
    if (sf_mc.llama && sf_mc.spm && !strcmp(sf_mc.llama_dir, dir)) return 0;
    if (sf_mc_ensure_ml(env, job)) return -1;
    sf_llama_free(&sf_mc.llama);
    sf_spm_free(&sf_mc.spm);
    sf_mc.llama_dir[0] = 0;
    /* LLaMA's tokenizer rules: <s> before the prompt, </s> ends a caption. */
    sf_spm_opts_t so = {.family = SF_SPM_LLAMA};
    snprintf(tok, sizeof tok, "%s/tokenizer.model", dir);
    if (sf_llama_load(dir, env->device, env->dtype, &sf_mc.llama, err, sizeof err) != 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "instruction model: %s", err);
    if (sf_spm_load(tok, &so, &sf_mc.spm, err, sizeof err) != 0) {
        sf_llama_free(&sf_mc.llama);
        return sf_kind_fail(job, SF_JOB_FATAL, "instruction model's tokenizer: %s", err);
    }
    if (sf_spm_vocab_size(sf_mc.spm) > sf_llama_config(sf_mc.llama)->vocab_size) {
        int v = sf_spm_vocab_size(sf_mc.spm);
        sf_spm_free(&sf_mc.spm);
        sf_llama_free(&sf_mc.llama);
        return sf_kind_fail(job, SF_JOB_FATAL, "instruction model %s: tokenizer.model has %d pieces, more than the "
                            "model's vocab_size", dir, v);
    }
    snprintf(sf_mc.llama_dir, sizeof sf_mc.llama_dir, "%s", dir);
    sf_info("loaded instruction model %s (%lld parameters, %s on %s)", dir, (long long)sf_llama_num_params(sf_mc.llama),
            sf_llama_dtype(sf_mc.llama), env->device);
    return 0;
}

int sf_mc_ensure_policy(const sf_wk_env_t *env, sf_job_t *job, const char *file, uint32_t version,
                        const uint8_t *blob, size_t len) {
    char key[1200], err[256];
    if (file) snprintf(key, sizeof key, "file:%s/%s", file[0] == '/' ? "" : env->models_dir, file);
    else snprintf(key, sizeof key, "%s@%u", job->run, version);
    swap_to(env, KEEP_POLICY);
    if (sf_mc.policy && strcmp(key, sf_mc.policy_key) == 0) return 0;
    int rc;
    if (file) {
        sf_gpt2_free(&sf_mc.policy);
        rc = sf_gpt2_load(key + 5, env->device, &sf_mc.policy, err, sizeof err);
        if (rc) return sf_kind_fail(job, SF_JOB_FATAL, "policy %s: %s", key + 5, err);
    } else if (sf_mc.policy && sf_gpt2_load_bytes(sf_mc.policy, blob, len) == 0) {
        rc = 0;
    } else {
        sf_gpt2_free(&sf_mc.policy);
        rc = sf_gpt2_from_bytes(blob, len, env->device, &sf_mc.policy, err, sizeof err);
        if (rc) return sf_kind_fail(job, SF_JOB_FAILED, "policy image from the learner: %s", err);
    }
    /* Sampling only: the learner trains in fp32 and sends fp32 images. */
    if (strcmp(env->dtype, "fp32") && sf_gpt2_set_dtype(sf_mc.policy, env->dtype) != 0) {
        rc = sf_kind_fail(job, SF_JOB_FATAL, "policy in %s: %s", env->dtype, sf_gpt2_errstr(sf_mc.policy));
        sf_gpt2_free(&sf_mc.policy);
        return rc;
    }
    snprintf(sf_mc.policy_key, sizeof sf_mc.policy_key, "%s", key);
    return 0;
}

int sf_mc_ensure_classifiers(const sf_wk_env_t *env) {
    if (sf_mc.cls_tried) return sf_mc.cls[0] && sf_mc.cls[1];
    sf_mc.cls_tried = 1;
    const char *names[2] = {"convnext", "vit"};
    for (int i = 0; i < 2; i++) {
        char path[1200], err[256];
        snprintf(path, sizeof path, "%s/%s-world.safetensors", env->models_dir, names[i]);
        if (sf_classifier_load(path, NULL, env->device, &sf_mc.cls[i], err, sizeof err) != 0)
            sf_warn("no %s classifier for the evaluation: %s", names[i], err);
    }
    return sf_mc.cls[0] && sf_mc.cls[1];
}

sf_world_t *sf_mc_world(const char *name, sf_job_t *job) {
    int free_slot = -1;
    for (int i = 0; i < SF_MC_MAX_WORLDS; i++) {
        if (sf_mc.worlds[i].w && strcmp(sf_mc.worlds[i].name, name) == 0) return sf_mc.worlds[i].w;
        if (!sf_mc.worlds[i].w && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) free_slot = 0, sf_world_destroy(&sf_mc.worlds[0].w);
    sf_classlist_t *cl;
    char err[256];
    if (sf_classes_load(name, &cl, err, sizeof err) != 0) {
        sf_kind_fail(job, SF_JOB_FATAL, "world '%s': %s", name, err);
        return NULL;
    }
    int rc = sf_world_create(cl, SF_WORLD_DEFAULT_SIZE, &sf_mc.worlds[free_slot].w);
    sf_classes_free(&cl);
    if (rc != 0) {
        sf_kind_fail(job, SF_JOB_FATAL, "world '%s': %s", name, sf_strerror(rc));
        return NULL;
    }
    snprintf(sf_mc.worlds[free_slot].name, sizeof sf_mc.worlds[free_slot].name, "%s", name);
    return sf_mc.worlds[free_slot].w;
}

sf_lc_t *sf_mc_learner(sf_wk_t *wk) {
    const sf_wk_env_t *env = sf_wk_env(wk);
    if (!sf_mc.lc && sf_lc_init(sf_wk_loop(wk), env->zctx, env->learner, &sf_mc.lc) != 0) return NULL;
    return sf_mc.lc;
}

static void lc_closed(void) {}

void sf_mc_close(void) {
    if (sf_mc.lc) sf_lc_close(sf_mc.lc, lc_closed);
    sf_mc.lc = NULL;
}

#endif
