/* kind_embed.c: embed — CLIP image embeddings of a class's reference images
 * -> the class's statistics file (stats/<embedder>/<source>/<wnid>), kept
 * and reused across runs.  The references are the world's base images, or
 * the first readable photos of the class in reference_root/<source>/<wnid>/
 * (reference_source names the folder). */
#if SF_HAVE_TORCH
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/formats/safetensors.h"
#include "common/image/imagefolder.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/log.h"
#include "worker/kind_util.h"
#include "worker/kinds.h"
#include "worker/model_cache.h"

/* Embeds the first `want` readable reference images of the job's class from
 * reference_root/<source>/<wnid>/ into *emb (new); returns how many (>= 1)
 * or -1 with the job failed.  b keeps the count of unreadable files. */
static int embed_folder(const sf_wk_env_t *env, const char *source, sf_job_t *job, int want,
                        sf_imagefolder_batch_t *b, float **emb) {
    if (!env->reference_root || !*env->reference_root)
        return sf_kind_fail(job, SF_JOB_FATAL, "reference source '%s' needs the worker's reference_root", source);
    char root[1200], err[400];
    snprintf(root, sizeof root, "%s/%s", env->reference_root, source);
    const char *wn = job->wnid;
    sf_imagefolder_t *f = NULL;
    if (sf_imagefolder_open(root, &wn, 1, &f, err, sizeof err) != 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "reference images: %s", err);
    int rc = sf_imagefolder_read_batch(f, job->wnid, 0, -1, want, b, err, sizeof err);
    sf_imagefolder_free(&f);
    if (rc != 0) return sf_kind_fail(job, SF_JOB_FAILED, "reference images: %s", err);
    if (b->n_images == 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "reference images: no readable image of %s in %s/%s (%d unreadable%s%s)",
                            job->wnid, root, job->wnid, b->n_skipped, b->n_skipped ? "; first: " : "", b->first_err);
    if (b->n_skipped)
        sf_warn("reference images of %s: %d unreadable file(s) skipped; first: %s", job->wnid, b->n_skipped, b->first_err);
    const int n = b->n_images, E = sf_clip_config(sf_mc.clip)->embed_dim;
    const uint8_t **rgb = calloc((size_t)n, sizeof *rgb);
    int *ws = calloc((size_t)n, sizeof *ws), *hs = calloc((size_t)n, sizeof *hs);
    *emb = malloc(sizeof(float) * (size_t)n * E);
    rc = !rgb || !ws || !hs || !*emb ? sf_kind_fail(job, SF_JOB_FAILED, "out of memory") : 0;
    for (int i = 0; rc == 0 && i < n; i++) rgb[i] = b->images[i].rgb, ws[i] = b->images[i].w, hs[i] = b->images[i].h;
    if (rc == 0) rc = sf_kind_embed_images(rgb, 0, ws, hs, n, *emb, job);
    free(rgb);
    free(ws);
    free(hs);
    return rc ? -1 : n;
}

/* Embeds the job's n base images of class k of the world into *emb (new).
 * 0, or -1 with the job failed. */
static int embed_world(const sf_world_t *w, int k, sf_job_t *job, int n, float **emb) {
    const int E = sf_clip_config(sf_mc.clip)->embed_dim, S = sf_world_size(w);
    uint8_t *pix = malloc((size_t)n * S * S * 3);
    const uint8_t **rows = calloc((size_t)n ? (size_t)n : 1, sizeof *rows);
    *emb = malloc(sizeof(float) * (size_t)n * E);
    int rc = !*emb || !pix || !rows ? sf_kind_fail(job, SF_JOB_FAILED, "out of memory") : 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        rows[i] = pix + (size_t)i * S * S * 3;
        if (sf_world_base_sample(w, k, (uint64_t)(job->item_start + i), pix + (size_t)i * S * S * 3, NULL) != 0)
            rc = sf_kind_fail(job, SF_JOB_FATAL, "world: cannot render base image %d of %s", i, job->wnid);
    }
    if (rc == 0) rc = sf_kind_embed_images(rows, S, NULL, NULL, n, *emb, job);
    free(pix);
    free(rows);
    return rc;
}

/* Whether path holds the statistics of this embedder for `want` images
 * (*have: how many it has).  Stored for the same number of images asked
 * for: a folder may have given fewer, "requested" says what was asked. */
static int cached(const char *path, int want, int E, int *have) {
    sf_st_t *old;
    char err[256];
    if (sf_st_load(path, &old, err, sizeof err) != 0) return 0;
    const sf_st_tensor_t *t = sf_st_find(old, "embeddings");
    const char *req = sf_st_meta(old, "requested");
    *have = t && t->ndim == 2 ? (int)t->shape[0] : -1;
    int same = t && t->ndim == 2 && t->shape[1] == E && (req ? atoi(req) == want : *have == want);
    sf_st_free(&old);
    return same;
}

/* Writes the statistics: n embeddings (n × E), their mean, and what they are. */
static int write_stats(sf_job_t *job, const char *path, const float *emb, const float *mean, int n, int E,
                       int requested) {
    char dir[1400];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    sf_st_writer_t *sw;
    if (sf_mkdir_p(dir, 0775) != 0 || sf_st_writer_new(&sw) != 0)
        return sf_kind_fail(job, SF_JOB_FAILED, "cannot create %s: %s", dir, strerror(errno));
    int64_t s2[2] = {n, E}, s1[1] = {E};
    char nb[32];
    snprintf(nb, sizeof nb, "%d", n);
    sf_st_writer_add(sw, "embeddings", SF_ST_F32, 2, s2, emb, sizeof(float) * (size_t)n * E);
    sf_st_writer_add(sw, "mean", SF_ST_F32, 1, s1, mean, sizeof(float) * E);
    sf_st_writer_meta(sw, "class", job->wnid);
    sf_st_writer_meta(sw, "source", job->params->reference_source);
    sf_st_writer_meta(sw, "embedder", sf_mc.clip_tag);
    sf_st_writer_meta(sw, "n", nb);
    snprintf(nb, sizeof nb, "%d", requested);
    sf_st_writer_meta(sw, "requested", nb);
    int wrc = sf_st_writer_save(sw, path);
    sf_st_writer_free(&sw);
    return wrc ? sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s: %s", path, sf_strerror(wrc)) : 0;
}

static int embed_locked(const sf_wk_env_t *env, sf_job_t *job) {
    const sf_shift_params_t *p = job->params;
    const char *source = p->reference_source;
    sf_world_t *w;
    int k, n = (int)job->item_count;
    if (sf_mc_ensure_clip(env, job) || !(w = sf_mc_world(p->world, job)) || (k = sf_kind_class(w, job)) < 0)
        return -1;
    const int E = sf_clip_config(sf_mc.clip)->embed_dim, requested = n;
    char path[1400];
    sf_kind_stats_path(env, source, job->wnid, path, sizeof path);
    int have, unreadable = 0;
    cJSON *o = cJSON_CreateObject();
    if (cached(path, n, E, &have)) {
        cJSON_AddNumberToObject(o, "n", have);
        cJSON_AddBoolToObject(o, "cached", 1);
        cJSON_AddStringToObject(o, "embedder", sf_mc.clip_tag);
        return sf_kind_result(job, o);
    }
    float *emb = NULL, *mean = NULL;
    int rc;
    if (strcmp(source, "world") != 0) {
        /* Real reference images: the first n readable files of the class in
         * reference_root/<source>/<wnid>/, unreadable ones skipped and
         * counted (the coordinator checked that source is a name). */
        sf_imagefolder_batch_t b = {0};
        rc = (n = embed_folder(env, source, job, n, &b, &emb)) < 0 ? -1 : 0;
        unreadable = b.n_skipped;
        sf_imagefolder_batch_free(&b);
    } else {
        rc = embed_world(w, k, job, n, &emb);
    }
    if (rc == 0 && !(mean = calloc((size_t)E, sizeof(float)))) rc = sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    for (int i = 0; rc == 0 && i < n; i++)
        for (int e = 0; e < E; e++) mean[e] += emb[(size_t)i * E + e] / n;
    if (rc == 0) rc = write_stats(job, path, emb, mean, n, E, requested);
    free(emb);
    free(mean);
    if (rc) {
        cJSON_Delete(o);
        return rc;
    }
    cJSON_AddNumberToObject(o, "n", n);
    cJSON_AddBoolToObject(o, "cached", 0);
    cJSON_AddNumberToObject(o, "unreadable", unreadable);
    cJSON_AddStringToObject(o, "embedder", sf_mc.clip_tag);
    return sf_kind_result(job, o);
}

int sf_embed_job(sf_wk_t *wk, sf_job_t *job) {
    sf_mc_lock();
    int rc = embed_locked(sf_wk_env(wk), job);
    sf_mc_unlock();
    return rc;
}

#endif
