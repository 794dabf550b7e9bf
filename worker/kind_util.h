/* kind_util.h: small helpers the method's job kinds share (built with
 * libtorch): failing a job, the result object, names that become paths,
 * the files under data_dir, CLIP embeddings of texts and images, the class
 * mean, caption text, and the seed of a generated image.
 *
 * Files live under the worker's data_dir (shared by the workers of a
 * cluster; docs/method.md):
 *   stats/<embedder>/<source>/<wnid>.safetensors   embeddings, mean
 *   runs/<run>/captions/<wnid>.jsonl               one caption a line
 *   runs/<run>/images/<wnid>/<item>.png, .json     generated, with metadata
 *   runs/<run>/manifest/<wnid>-<start>.jsonl       filter verdicts per shard
 *   runs/<run>/embeddings/<wnid>-<start>.safetensors  the shard's CLIP embeddings
 *   datasets/<run>/<wnid>/<wnid>-<item>.png        kept images (ImageFolder)
 *   datasets/<run>/manifest.jsonl                  every image, kept or not
 *   datasets/<run>/finetune.json                   Fig. 6
 * Every file is written to a temporary name and renamed
 * (sf_write_file_atomic), so a job retried after a crash rewrites the same
 * bytes and a reader never sees half a file.
 */
#ifndef SF_KIND_UTIL_H
#define SF_KIND_UTIL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "world/world.h"
#include "worker/worker.h"

/* Fails the job: its status and error (printf-style).  Returns -1. */
int sf_kind_fail(sf_job_t *job, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The job's result: o (takes ownership), whose keys must be among the
 * kind's result fields (sf_job_result_fields), becomes job->out and the job
 * succeeds.  0, or -1 with the job failed. */
int sf_kind_result(sf_job_t *job, cJSON *o);

/* Run ids and wnids become path parts: only [A-Za-z0-9_-], 1 to 64 bytes. */
int sf_kind_safe_name(const char *s);

/* The class of the job in its world, or -1 with the job failed. */
int sf_kind_class(const sf_world_t *w, sf_job_t *job);

/* The run's classes (the job's "run_classes" mask over the world's list,
 * coordinator/shift.c) into *out, whose v is a new array of borrowed class
 * records (free(out->v) only): for the reward's other-class check.  "none"
 * (the setting's default, a run planned before it) gives no classes.  0, or
 * -1 with the job failed on a malformed mask. */
int sf_kind_run_classes(const sf_world_t *w, sf_job_t *job, const char *mask, sf_classlist_t *out);

/* data_dir/runs/<run>/<sub>. */
void sf_kind_run_dir(const sf_wk_env_t *env, const char *run, const char *sub, char *out, size_t n);
/* data_dir/runs/<run>/images/<wnid>: the job's class's generated images. */
void sf_kind_images_dir(const sf_wk_env_t *env, const sf_job_t *job, char *out, size_t n);
/* data_dir/runs/<run>/captions, and in it <wnid>.jsonl (path may be NULL). */
void sf_kind_captions_path(const sf_wk_env_t *env, const sf_job_t *job, char *dir, size_t dn, char *path, size_t pn);
/* The statistics file of a class's reference images, for the loaded CLIP. */
void sf_kind_stats_path(const sf_wk_env_t *env, const char *source, const char *wnid, char *out, size_t n);

/* Under the model cache's lock, CLIP loaded. */
/* The class mean (E floats) from the statistics of the job's
 * reference_source. */
int sf_kind_load_mean(const sf_wk_env_t *env, sf_job_t *job, float *mean, int E);
/* The same, and the reference embeddings themselves (emb: *m x E floats,
 * malloc'd; on failure *emb is NULL or to be freed all the same). */
int sf_kind_load_stats(const sf_wk_env_t *env, sf_job_t *job, float *mean, int E, float **emb, int *m);
/* CLIP text embeddings of n texts into out (n × E). */
int sf_kind_embed_texts(char **texts, int n, float *out, sf_job_t *job);
/* CLIP image embeddings of n RGB images into out (n × E): all size x size,
 * or (ws, hs given) each of its own size (real reference photos). */
int sf_kind_embed_images(const uint8_t *const *rgb, int size, const int *ws, const int *hs, int n, float *out,
                         sf_job_t *job);

/* The filter's rule (kind_filter.c; low-density's choice in kind_generate.c
 * heeds it too): the CLIP embedding of its class text, "a photo of a
 * <class>", into out (E floats), and the threshold the job's settings give
 * (unset: the loaded CLIP's own, model_cache.c). */
int sf_kind_filter_text(const sf_world_t *w, int k, float *out, sf_job_t *job);
double sf_kind_filter_threshold(const sf_shift_params_t *p);

/* A caption as valid UTF-8 (a copy, malloc'd; NULL when out of memory). */
char *sf_kind_utf8_clean(const char *s, size_t n);
/* Frees n texts and their array. */
void sf_kind_free_texts(char **t, int n);

/* Appends o as one line of JSON to *buf (*len bytes of *cap, grown).  0, or
 * SF_ENOMEM. */
int sf_kind_jsonl_add(char **buf, size_t *len, size_t *cap, const cJSON *o);

/* The generation seed of image `item` of class wnid: the same in the
 * generate phase and in the low-density baseline's check of its captions. */
uint64_t sf_kind_gen_seed(const sf_shift_params_t *p, const char *wnid, uint32_t item);

#endif
