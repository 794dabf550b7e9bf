/* kind_filter.c: filter and manifest.
 *   filter    CLIP similarity of each generated image of a shard to its
 *             class text; kept images go to the dataset
 *             (datasets/<run>/<wnid>/), every verdict to the shard's
 *             manifest file (runs/<run>/manifest/<wnid>-<start>.jsonl), the
 *             shard's embeddings to runs/<run>/embeddings/ for the
 *             evaluation (docs/evaluation.md), and — on the 86-class world
 *             with its generator — the world classifiers' labels (Table 2);
 *   manifest  one job after the filter phase: joins the shards' manifest
 *             files into datasets/<run>/manifest.jsonl.
 */
#if SF_HAVE_TORCH
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/formats/safetensors.h"
#include "common/image/png.h"
#include "common/method/reward.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "worker/kind_util.h"
#include "worker/kinds.h"
#include "worker/model_cache.h"

static float cosf_(const float *a, const float *b, int n) {
    float c;
    return sf_reward_cosine(a, b, (size_t)n, &c) == 0 ? c : 0.f;
}

/* Labels the world classifiers give n images (S x S): pred[m][i]. */
static int classify(const uint8_t *const *imgs, int S, int n, int *pred[2]) {
    for (int m = 0; m < 2; m++) {
        const sf_classifier_config_t *c = sf_classifier_config(sf_mc.cls[m]);
        const int I = c->image_size;
        float *px = malloc(sizeof(float) * (size_t)3 * I * I * (n ? n : 1));
        if (!px) return SF_ENOMEM;
        int rc = 0;
        for (int i = 0; rc == 0 && i < n; i++) rc = sf_world_to_input(imgs[i], S, I, c->mean, c->std, 0, px + (size_t)i * 3 * I * I);
        if (rc == 0) rc = sf_classifier_forward(sf_mc.cls[m], px, n, NULL, pred[m]);
        free(px);
        if (rc) return rc;
    }
    return 0;
}

/* A filter job's shard: the images, their metadata and embeddings. */
typedef struct {
    int n, S, E;
    cJSON **meta;     /* <item>.json of each image */
    uint8_t **imgs;   /* S x S RGB */
    float *emb;       /* n x E */
    int *pred[2];     /* the world classifiers' labels, or NULL */
} shard_t;

static void shard_free(shard_t *s) {
    for (int i = 0; i < s->n; i++) {
        if (s->meta) cJSON_Delete(s->meta[i]);
        if (s->imgs) free(s->imgs[i]);
    }
    free(s->meta);
    free(s->imgs);
    free(s->emb);
    free(s->pred[0]);
    free(s->pred[1]);
}

/* Reads the shard's images and metadata from idir and embeds the images.
 * 0, or -1 with the job failed. */
static int read_shard(sf_job_t *job, const char *idir, shard_t *s) {
    char path[1600];
    for (int i = 0; i < s->n; i++) {
        uint32_t item = job->item_start + (uint32_t)i;
        snprintf(path, sizeof path, "%s/%u.json", idir, item);
        char *js = sf_file_text(path, NULL), err[200];
        s->meta[i] = js ? cJSON_Parse(js) : NULL;
        free(js);
        if (!s->meta[i]) return sf_kind_fail(job, SF_JOB_FAILED, "no metadata %s (the generate phase writes it)", path);
        snprintf(path, sizeof path, "%s/%u.png", idir, item);
        int iw, ih;
        if (sf_png_read(path, &s->imgs[i], &iw, &ih, err, sizeof err) != 0 || iw != ih || (s->S && iw != s->S))
            return sf_kind_fail(job, SF_JOB_FAILED, "image %s: %s", path,
                                s->imgs[i] ? "not square or of another size" : err);
        s->S = iw;
    }
    return s->n ? sf_kind_embed_images((const uint8_t *const *)s->imgs, s->S, NULL, NULL, s->n, s->emb, job) : 0;
}

/* The shard's CLIP embeddings, for the evaluation (docs/evaluation.md). */
static int write_embeddings(const sf_wk_env_t *env, sf_job_t *job, const shard_t *s) {
    char edir[1400], path[1600];
    sf_kind_run_dir(env, job->run, "embeddings", edir, sizeof edir);
    snprintf(path, sizeof path, "%s/%s-%08u.safetensors", edir, job->wnid, job->item_start);
    sf_st_writer_t *sw = NULL;
    if (!s->n) return 0;
    if (sf_mkdir_p(edir, 0775) != 0 || sf_st_writer_new(&sw) != 0)
        return sf_kind_fail(job, SF_JOB_FAILED, "cannot create %s", edir);
    int64_t shp[2] = {s->n, s->E};
    sf_st_writer_add(sw, "embeddings", SF_ST_F32, 2, shp, s->emb, sizeof(float) * (size_t)s->n * s->E);
    sf_st_writer_meta(sw, "class", job->wnid);
    sf_st_writer_meta(sw, "embedder", sf_mc.clip_tag);
    int wrc = sf_st_writer_save(sw, path);
    sf_st_writer_free(&sw);
    return wrc ? sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s: %s", path, sf_strerror(wrc)) : 0;
}

/* The manifest line of image i: its metadata and the verdict. */
static cJSON *verdict(const sf_job_t *job, const sf_world_t *w, int k, const shard_t *s, int i, const char *id,
                      float st, float sm, int keep, double thr) {
    cJSON *o = cJSON_Duplicate(s->meta[i], 1);
    cJSON_AddStringToObject(o, "name", sf_world_class(w, k)->name);
    cJSON_AddStringToObject(o, "embedder", sf_mc.clip_tag);
    /* The reference set behind the class mean: the report's Table 1 reads
     * the same statistics. */
    cJSON_AddStringToObject(o, "reference_source", job->params->reference_source);
    cJSON_AddNumberToObject(o, "clip_class_text", st);
    cJSON_AddNumberToObject(o, "clip_class_mean", sm);
    if (s->pred[0] && s->pred[1]) {
        cJSON_AddBoolToObject(o, "convnext_correct", s->pred[0][i] == k);
        cJSON_AddBoolToObject(o, "vit_correct", s->pred[1][i] == k);
    }
    cJSON_AddBoolToObject(o, "kept", keep);
    cJSON_AddNumberToObject(o, "filter_threshold", thr);
    if (keep) {
        char file[200];
        snprintf(file, sizeof file, "%s/%s.png", job->wnid, id);
        cJSON_AddStringToObject(o, "file", file);
    } else {
        char why[96];
        snprintf(why, sizeof why, "similarity to the class text %.3f is below %.3f", st, thr);
        cJSON_AddStringToObject(o, "why", why);
    }
    return o;
}

static int filter_locked(const sf_wk_env_t *env, sf_job_t *job, shard_t *s) {
    const sf_shift_params_t *p = job->params;
    sf_world_t *w;
    int k;
    if (sf_mc_ensure_clip(env, job) || !(w = sf_mc_world(p->world, job)) || (k = sf_kind_class(w, job)) < 0)
        return -1;
    const int n = s->n, E = s->E = sf_clip_config(sf_mc.clip)->embed_dim;
    const double thr_d = sf_kind_filter_threshold(p);
    const float thr = (float)thr_d;
    int rc = -1, kept = 0, dropped = 0;
    float *mean = malloc(sizeof(float) * E), *ctext = malloc(sizeof(float) * E);
    char *manifest = NULL;
    size_t mlen = 0, mcap = 0;
    s->emb = malloc(sizeof(float) * (size_t)(n ? n : 1) * E);
    if (!s->emb || !mean || !ctext) { sf_kind_fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    if (sf_kind_load_mean(env, job, mean, E)) goto out;
    if (sf_kind_filter_text(w, k, ctext, job)) goto out;
    char idir[1400], path[1600], odir[1400], mdir[1400];
    sf_kind_images_dir(env, job, idir, sizeof idir);
    if (read_shard(job, idir, s)) goto out;
    /* Table 2: the world classifiers' labels (their labels are the 86-class
     * world's class indices). */
    if (n && !strcmp(p->world, "builtin:imagenet-a-r-86") && !strcmp(p->generator, "world") &&
        sf_mc_ensure_classifiers(env)) {
        s->pred[0] = malloc(sizeof(int) * (size_t)n), s->pred[1] = malloc(sizeof(int) * (size_t)n);
        if (!s->pred[0] || !s->pred[1] || classify((const uint8_t *const *)s->imgs, s->S, n, s->pred) != 0)
            free(s->pred[0]), free(s->pred[1]), s->pred[0] = s->pred[1] = NULL;
    }
    snprintf(odir, sizeof odir, "%s/datasets/%s/%s", env->data_dir, job->run, job->wnid);
    sf_kind_run_dir(env, job->run, "manifest", mdir, sizeof mdir);
    if (sf_mkdir_p(odir, 0775) != 0 || sf_mkdir_p(mdir, 0775) != 0) {
        sf_kind_fail(job, SF_JOB_FAILED, "cannot create %s: %s", odir, strerror(errno));
        goto out;
    }
    for (int i = 0; i < n; i++) {
        float st = sf_dot_f32(s->emb + (size_t)i * E, ctext, E), sm = cosf_(s->emb + (size_t)i * E, mean, E);
        int keep = st >= thr;
        const cJSON *idj = cJSON_GetObjectItemCaseSensitive(s->meta[i], "id");
        const char *id = cJSON_IsString(idj) ? idj->valuestring : "";
        if (keep) {
            char src[1600], dst[1700];
            snprintf(src, sizeof src, "%s/%u.png", idir, job->item_start + (uint32_t)i);
            snprintf(dst, sizeof dst, "%s/%s.png", odir, id);
            size_t l;
            char *b = sf_file_text(src, &l);
            if (!b || sf_write_file_atomic(dst, b, l) != 0) {
                free(b);
                sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s", dst);
                goto out;
            }
            free(b);
            kept++;
        } else {
            dropped++;
        }
        cJSON *o = verdict(job, w, k, s, i, id, st, sm, keep, thr_d);
        int arc = sf_kind_jsonl_add(&manifest, &mlen, &mcap, o);
        cJSON_Delete(o);
        if (arc) { sf_kind_fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    }
    if (write_embeddings(env, job, s)) goto out;
    snprintf(path, sizeof path, "%s/%s-%08u.jsonl", mdir, job->wnid, job->item_start);
    if (sf_write_file_atomic(path, manifest ? manifest : "", mlen) != 0) {
        sf_kind_fail(job, SF_JOB_FAILED, "cannot write the manifest %s: %s", path, strerror(errno));
        goto out;
    }
    cJSON *res = cJSON_CreateObject();
    cJSON_AddNumberToObject(res, "kept", kept);
    cJSON_AddNumberToObject(res, "dropped", dropped);
    cJSON_AddNumberToObject(res, "filter_threshold", thr_d);
    rc = sf_kind_result(job, res);
out:
    free(mean);
    free(ctext);
    free(manifest);
    return rc;
}

int sf_filter_job(sf_wk_t *wk, sf_job_t *job) {
    shard_t s = {.n = (int)job->item_count};
    s.meta = calloc((size_t)s.n, sizeof *s.meta);
    s.imgs = calloc((size_t)s.n, sizeof *s.imgs);
    int rc = -1;
    if (!s.meta || !s.imgs || !sf_kind_safe_name(job->run) || !sf_kind_safe_name(job->wnid)) {
        sf_kind_fail(job, SF_JOB_FATAL, "filter: bad run id or class");
    } else {
        sf_mc_lock();
        rc = filter_locked(sf_wk_env(wk), job, &s);
        sf_mc_unlock();
    }
    shard_free(&s);
    return rc;
}

/* ---- manifest ------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The classify job's labels of a class (runs/<run>/classify/<wnid>.jsonl,
 * real classifiers only): an object from each kept file to its labels, or
 * NULL when the class has none. */
static cJSON *class_labels(const sf_wk_env_t *env, const char *run, const char *wnid) {
    char dir[1400], path[1500];
    sf_kind_run_dir(env, run, "classify", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s.jsonl", dir, wnid);
    char *t = sf_file_text(path, NULL);
    if (!t) return NULL;
    cJSON *map = cJSON_CreateObject();
    for (char *save = NULL, *l = strtok_r(t, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(l);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "file");
        cJSON *c = cJSON_DetachItemFromObjectCaseSensitive(o, "classifiers");
        if (cJSON_IsString(f) && c) cJSON_AddItemToObject(map, f->valuestring, c);
        else cJSON_Delete(c);
        cJSON_Delete(o);
    }
    free(t);
    return map;
}

/* Appends shard text t (lines) to all, each kept line with its labels from
 * map (may be NULL: the text as it is). */
static int append_shard(char **all, size_t *tl, size_t *tc, const char *t, size_t l, const cJSON *map) {
    if (!map) {
        while (*tl + l + 1 > *tc) {
            char *a2 = realloc(*all, *tc *= 2);
            if (!a2) return -1;
            *all = a2;
        }
        memcpy(*all + *tl, t, l);
        *tl += l;
        return 0;
    }
    char *copy = strndup(t, l);
    int rc = copy ? 0 : -1;
    for (char *save = NULL, *ln = copy ? strtok_r(copy, "\n", &save) : NULL; rc == 0 && ln; ln = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(ln);
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "file");
        const cJSON *lab = cJSON_IsString(f) ? cJSON_GetObjectItemCaseSensitive(map, f->valuestring) : NULL;
        if (lab) cJSON_AddItemToObject(o, "classifiers", cJSON_Duplicate(lab, 1));
        rc = o ? sf_kind_jsonl_add(all, tl, tc, o) : -1;
        cJSON_Delete(o);
    }
    free(copy);
    return rc;
}

/* Writes datasets/<run>/manifest.jsonl from the per-shard files (in name
 * order), under a lock so that two writers never interleave. */
static int rebuild_manifest(const sf_wk_env_t *env, const char *run, const char *out_dir) {
    char mdir[1400], lock[1500], path[1500];
    sf_kind_run_dir(env, run, "manifest", mdir, sizeof mdir);
    snprintf(lock, sizeof lock, "%s/.lock", mdir);
    int fd = open(lock, O_CREAT | O_RDWR, 0664);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) { if (fd >= 0) close(fd); return -1; }
    DIR *d = opendir(mdir);
    char **names = NULL;
    int nn = 0, cap = 0, rc = d ? 0 : -1;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 7 || strcmp(e->d_name + l - 6, ".jsonl") != 0) continue;
        if (nn == cap) names = realloc(names, sizeof *names * (cap = cap ? cap * 2 : 64));
        names[nn++] = strdup(e->d_name);
    }
    if (d) closedir(d);
    qsort(names, (size_t)nn, sizeof *names, cmp_str);
    size_t tl = 0, tc = 65536;
    char *all = malloc(tc), cur[64] = "";
    cJSON *map = NULL; /* the current class's labels */
    if (!all) rc = -1;
    for (int i = 0; rc == 0 && i < nn; i++) {
        snprintf(path, sizeof path, "%s/%s", mdir, names[i]);
        /* Shards are <wnid>-<start>.jsonl: a new class, its labels. */
        const char *dash = strrchr(names[i], '-');
        size_t wl = dash ? (size_t)(dash - names[i]) : 0;
        if (wl && wl < sizeof cur && (strncmp(cur, names[i], wl) || cur[wl])) {
            memcpy(cur, names[i], wl), cur[wl] = 0;
            cJSON_Delete(map);
            map = class_labels(env, run, cur);
        }
        size_t l;
        char *t = sf_file_text(path, &l);
        if (!t) continue;
        rc = append_shard(&all, &tl, &tc, t, l, map);
        free(t);
    }
    cJSON_Delete(map);
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names);
    snprintf(path, sizeof path, "%s/manifest.jsonl", out_dir);
    if (rc == 0) rc = sf_write_file_atomic(path, all, tl);
    free(all);
    flock(fd, LOCK_UN);
    close(fd);
    return rc;
}

int sf_manifest_job(sf_wk_t *wk, sf_job_t *job) {
    const sf_wk_env_t *env = sf_wk_env(wk);
    if (!sf_kind_safe_name(job->run)) return sf_kind_fail(job, SF_JOB_FATAL, "manifest: bad run id");
    char out[1400];
    snprintf(out, sizeof out, "%s/datasets/%s", env->data_dir, job->run);
    if (sf_mkdir_p(out, 0775) != 0 || rebuild_manifest(env, job->run, out) != 0)
        return sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s/manifest.jsonl: %s", out, strerror(errno));
    job->status = SF_JOB_OK;
    return 0;
}

#endif
