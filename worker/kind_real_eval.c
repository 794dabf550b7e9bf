/* kind_real_eval.c: Table 2 and Fig. 6 with real classifiers — timm folders
 * ("classifiers" in the run spec, inside models_dir) whose 1000 outputs are
 * ImageNet-1k's classes in sorted-wnid order (docs/evaluation.md):
 *
 *   classify   one class: its kept images and its first reference_images
 *              reference photos labelled by every classifier, 1000-way and
 *              restricted to the run's classes; the kept images' labels go
 *              to runs/<run>/classify/<wnid>.jsonl (the manifest job joins
 *              them into the manifest), the counts to
 *              datasets/<run>/classify/<wnid>.json and the job's result;
 *   finetune   one fine-tuning run (the job's item: classifier x seed x
 *              {control, with generated}): AdamW on base images of the run's
 *              classes (reference photos), and for "with generated" the
 *              class's kept images half of the time, from the same start and
 *              batches as its control; checkpointed (weights and optimiser)
 *              so that the worker that picks the job up after a crash
 *              resumes it; the weights to runs/<run>/finetune/<name>.safetensors;
 *   evaluate   one class: its images in each test set (ImageNet-R, -A under
 *              reference_root) through the original and every fine-tuned
 *              model, logits restricted to the test set's classes (its
 *              folders), as Hendrycks et al. evaluate those sets; hits to
 *              runs/<run>/eval/<wnid>.json;
 *   summarize  finetune.json from the evaluations: accuracies and the paired
 *              per-image gain with its standard error.
 */
#if SF_HAVE_TORCH
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/image/image.h"
#include "common/image/imagefolder.h"
#include "common/runtime/clock.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/hash.h"
#include "common/runtime/log.h"
#include "worker/kind_util.h"
#include "worker/kinds.h"
#include "worker/model_cache.h"

#define RE_BATCH 32
#define IN1K 1000

/* ---- shared ---------------------------------------------------------------- */

static int cmp_wnid(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const sf_class_t *)elem)->wnid);
}

/* A wnid's index among ImageNet-1k's classes in sorted-wnid order (the
 * order timm's heads use), or -1. */
static int in1k_index(const char *wnid) {
    const sf_classlist_t *l = sf_classes_imagenet1k();
    const sf_class_t *c = l ? bsearch(wnid, l->v, (size_t)l->n, sizeof *l->v, cmp_wnid) : NULL;
    return c ? (int)(c - l->v) : -1;
}

/* The run's classes as ImageNet-1k indices (idx, n) and a mask over the
 * 1000.  0, or -1 with the job failed. */
static int run_classes(sf_job_t *job, int *idx, int *n, char mask[IN1K]) {
    const sf_shift_params_t *p = job->params;
    sf_world_t *w = sf_mc_world(p->world, job);
    sf_classlist_t rc;
    if (!w || sf_kind_run_classes(w, job, p->run_classes, &rc)) return -1;
    memset(mask, 0, IN1K);
    *n = 0;
    for (int i = 0; i < rc.n; i++) {
        int k = in1k_index(rc.v[i].wnid);
        if (k < 0) {
            free(rc.v);
            return sf_kind_fail(job, SF_JOB_FATAL, "class %s is not an ImageNet-1k class: the classifiers' heads "
                                                   "know those 1000 only", rc.v[i].wnid);
        }
        if (!mask[k]) mask[k] = 1, idx[(*n)++] = k;
    }
    free(rc.v);
    if (!*n) return sf_kind_fail(job, SF_JOB_FATAL, "the job's run_classes names no class");
    return 0;
}

/* Loads classifier folder `name` (inside models_dir): a timm folder with an
 * ImageNet-1k head.  0, or -1 with the job failed (fatal: a bad folder stays
 * bad on every worker). */
static int load_timm(const sf_wk_env_t *env, const char *name, sf_classifier_t **m, sf_job_t *job) {
    char dir[1400], err[512];
    snprintf(dir, sizeof dir, "%s/%s", env->models_dir, name);
    if (sf_classifier_load_dir(dir, env->device, m, err, sizeof err) != 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "classifier '%s': %s", name, err);
    if (sf_classifier_config(*m)->n_classes != IN1K) {
        int k = sf_classifier_config(*m)->n_classes;
        sf_classifier_free(m);
        return sf_kind_fail(job, SF_JOB_FATAL, "classifier '%s' (%s) has %d classes; Table 2 and Fig. 6 need an "
                                               "ImageNet-1k head of 1000 outputs in sorted-wnid order", name, dir, k);
    }
    return 0;
}

/* The arg-max of logits (IN1K) over the classes in mask (NULL: all). */
static int argmax_in(const float *logits, const char *mask) {
    int best = -1;
    for (int k = 0; k < IN1K; k++)
        if ((!mask || mask[k]) && (best < 0 || logits[k] > logits[best])) best = k;
    return best;
}

/* Labels n images (rgb, w, h) with each of the nm models m[] (one
 * classifier and its fine-tuned copies: one preprocessing, that of m[0], done
 * once per image for all of them): model r's 1000-way top-1 into top[r][] and
 * its top-1 among mask's classes into sub[r][] (top or sub, or an entry of
 * them, may be NULL). */
static int label_images(sf_classifier_t *const *m, int nm, uint8_t *const *rgb, const int *w, const int *h, int n,
                        const char *mask, int *const *top, int *const *sub, sf_job_t *job) {
    const sf_classifier_config_t *c = sf_classifier_config(m[0]);
    const size_t per = (size_t)3 * c->image_size * c->image_size;
    float *px = malloc(sizeof(float) * per * RE_BATCH), *lg = malloc(sizeof(float) * IN1K * RE_BATCH);
    int rc = px && lg ? 0 : sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    for (int i0 = 0; rc == 0 && i0 < n; i0 += RE_BATCH) {
        const int b = n - i0 < RE_BATCH ? n - i0 : RE_BATCH;
        for (int j = 0; rc == 0 && j < b; j++)
            if (sf_classifier_preprocess(c, rgb[i0 + j], w[i0 + j], h[i0 + j], px + per * j) != 0)
                rc = sf_kind_fail(job, SF_JOB_FAILED, "cannot preprocess a %dx%d image", w[i0 + j], h[i0 + j]);
        for (int r = 0; rc == 0 && r < nm; r++) {
            if (sf_classifier_forward(m[r], px, b, lg, NULL) != 0)
                rc = sf_kind_fail(job, SF_JOB_FAILED, "classifier: %s", sf_classifier_errstr(m[r]));
            for (int j = 0; rc == 0 && j < b; j++) {
                if (top && top[r]) top[r][i0 + j] = argmax_in(lg + (size_t)IN1K * j, NULL);
                if (sub && sub[r]) sub[r][i0 + j] = argmax_in(lg + (size_t)IN1K * j, mask);
            }
        }
    }
    free(px);
    free(lg);
    return rc;
}

/* A set of decoded images. */
typedef struct {
    uint8_t **rgb;
    int *w, *h;
    char **file; /* the dataset-relative file of a kept image, or NULL */
    int n, cap;
} imgs_t;

static void imgs_free(imgs_t *s) {
    for (int i = 0; i < s->n; i++) free(s->rgb[i]), free(s->file ? s->file[i] : NULL);
    free(s->rgb), free(s->w), free(s->h), free(s->file);
    memset(s, 0, sizeof *s);
}

static int imgs_add(imgs_t *s, uint8_t *rgb, int w, int h, const char *file) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        uint8_t **r = realloc(s->rgb, sizeof *r * (size_t)cap);
        if (r) s->rgb = r;
        int *w2 = r ? realloc(s->w, sizeof *w2 * (size_t)cap) : NULL;
        if (w2) s->w = w2;
        int *h2 = w2 ? realloc(s->h, sizeof *h2 * (size_t)cap) : NULL;
        if (h2) s->h = h2;
        char **f2 = h2 ? realloc(s->file, sizeof *f2 * (size_t)cap) : NULL;
        if (f2) s->file = f2;
        if (!f2) return SF_ENOMEM;
        s->cap = cap;
    }
    s->rgb[s->n] = rgb, s->w[s->n] = w, s->h[s->n] = h;
    s->file[s->n++] = file ? strdup(file) : NULL;
    return 0;
}

/* The first `max` readable images of wnid in reference_root/<set> into s
 * (appended); *unreadable counts the others looked at, err_first keeps the
 * first one's message.  0 (also when the class has no folder there: *absent
 * set), or -1 with the job failed. */
static int read_folder(const sf_wk_env_t *env, const char *set, const char *wnid, int max, imgs_t *s, int *unreadable,
                       int *absent, char *err_first, size_t en, sf_job_t *job) {
    if (!env->reference_root || !*env->reference_root)
        return sf_kind_fail(job, SF_JOB_FATAL, "'%s' needs the worker's reference_root", set);
    char root[1200], cdir[1300], err[400];
    snprintf(root, sizeof root, "%s/%s", env->reference_root, set);
    snprintf(cdir, sizeof cdir, "%s/%s", root, wnid);
    if (absent) {
        *absent = access(cdir, F_OK) != 0;
        if (*absent) return 0;
    }
    sf_imagefolder_t *f = NULL;
    if (sf_imagefolder_open(root, &wnid, 1, &f, err, sizeof err) != 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "%s: %s", set, err);
    sf_imagefolder_batch_t b = {0};
    int rc = sf_imagefolder_read_batch(f, wnid, 0, -1, max, &b, err, sizeof err);
    sf_imagefolder_free(&f);
    if (rc != 0) return sf_kind_fail(job, SF_JOB_FAILED, "%s: %s", set, err);
    for (int i = 0; rc == 0 && i < b.n_images; i++) {
        rc = imgs_add(s, b.images[i].rgb, b.images[i].w, b.images[i].h, NULL);
        if (rc == 0) b.images[i].rgb = NULL; /* s owns it now */
    }
    *unreadable += b.n_skipped;
    if (b.n_skipped && err_first && !*err_first) snprintf(err_first, en, "%s", b.first_err);
    sf_imagefolder_batch_free(&b);
    return rc ? sf_kind_fail(job, SF_JOB_FAILED, "out of memory") : 0;
}

/* The kept images of class wnid, from the filter's manifest shards
 * (runs/<run>/manifest/<wnid>-*.jsonl, in name order, then line order), at
 * most max (< 0: all).  0, or -1 with the job failed. */
static int read_kept(const sf_wk_env_t *env, sf_job_t *job, const char *wnid, int max, imgs_t *s) {
    char mdir[1400];
    sf_kind_run_dir(env, job->run, "manifest", mdir, sizeof mdir);
    struct dirent **names = NULL;
    int nn = scandir(mdir, &names, NULL, alphasort), rc = 0;
    const size_t wl = strlen(wnid);
    for (int i = 0; i < nn; i++) {
        const char *nm = names[i]->d_name;
        size_t l = strlen(nm);
        if (rc == 0 && (max < 0 || s->n < max) && !strncmp(nm, wnid, wl) && nm[wl] == '-' && l > 6 &&
            !strcmp(nm + l - 6, ".jsonl")) {
            char path[1700];
            snprintf(path, sizeof path, "%s/%s", mdir, nm);
            char *text = sf_file_text(path, NULL);
            for (char *save = NULL, *ln = text ? strtok_r(text, "\n", &save) : NULL; rc == 0 && ln && (max < 0 || s->n < max);
                 ln = strtok_r(NULL, "\n", &save)) {
                cJSON *o = cJSON_Parse(ln);
                const cJSON *file = cJSON_GetObjectItemCaseSensitive(o, "file");
                if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "kept")) && cJSON_IsString(file)) {
                    char ip[1700], er[300];
                    uint8_t *rgb = NULL;
                    int w, h;
                    snprintf(ip, sizeof ip, "%s/datasets/%s/%s", env->data_dir, job->run, file->valuestring);
                    if (sf_image_read(ip, &rgb, &w, &h, er, sizeof er) != 0)
                        rc = sf_kind_fail(job, SF_JOB_FAILED, "kept image %s: %s", ip, er);
                    else if (imgs_add(s, rgb, w, h, file->valuestring) != 0)
                        free(rgb), rc = sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
                }
                cJSON_Delete(o);
            }
            free(text);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

/* ---- classify (Table 2) ------------------------------------------------------ */

static int classify_locked(const sf_wk_env_t *env, sf_job_t *job) {
    const sf_shift_params_t *p = job->params;
    if (sf_mc_ensure_ml(env, job)) return -1;
    char names[SF_MAX_CLASSIFIERS][SF_SET_STR_MAX], mask[IN1K], errf[320] = "";
    int idx[IN1K], nrun, unreadable = 0, rc = 0;
    const int nc = sf_setting_list(p->classifiers, names, SF_MAX_CLASSIFIERS);
    const int target = in1k_index(job->wnid);
    if (nc < 1) return sf_kind_fail(job, SF_JOB_FATAL, "classify: 'classifiers' names no timm folder");
    if (target < 0) return sf_kind_fail(job, SF_JOB_FATAL, "classify: %s is not an ImageNet-1k class", job->wnid);
    if (run_classes(job, idx, &nrun, mask)) return -1;
    imgs_t gen = {0}, ref = {0};
    if (read_kept(env, job, job->wnid, -1, &gen) ||
        read_folder(env, p->reference_source, job->wnid, (int)p->reference_images, &ref, &unreadable, NULL, errf,
                    sizeof errf, job)) {
        imgs_free(&gen), imgs_free(&ref);
        return -1;
    }
    const int ng = gen.n, nr = ref.n, nmax = (ng > nr ? ng : nr) + 1;
    int *top = malloc(sizeof(int) * (size_t)nmax), *sub = malloc(sizeof(int) * (size_t)nmax);
    /* labels[c][i]: kept image i's 1000-way and restricted labels. */
    int *gl[SF_MAX_CLASSIFIERS][2] = {{0}};
    cJSON *res = cJSON_CreateObject(), *acc = cJSON_CreateObject(), *counts = cJSON_CreateObject();
    if (!top || !sub) rc = sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    for (int c = 0; rc == 0 && c < nc; c++) {
        sf_classifier_t *m = NULL;
        if ((rc = load_timm(env, names[c], &m, job))) break;
        gl[c][0] = malloc(sizeof(int) * (size_t)nmax), gl[c][1] = malloc(sizeof(int) * (size_t)nmax);
        if (!gl[c][0] || !gl[c][1]) rc = sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
        if (rc == 0) rc = label_images(&m, 1, gen.rgb, gen.w, gen.h, ng, mask, &gl[c][0], &gl[c][1], job);
        int gok = 0, gsub = 0, rok = 0, rsub = 0;
        for (int i = 0; rc == 0 && i < ng; i++) gok += gl[c][0][i] == target, gsub += gl[c][1][i] == target;
        if (rc == 0) rc = label_images(&m, 1, ref.rgb, ref.w, ref.h, nr, mask, &top, &sub, job);
        for (int i = 0; rc == 0 && i < nr; i++) rok += top[i] == target, rsub += sub[i] == target;
        sf_classifier_free(&m);
        if (rc) break;
        cJSON *o = cJSON_AddObjectToObject(counts, names[c]);
        cJSON_AddNumberToObject(o, "generated_correct", gok);
        cJSON_AddNumberToObject(o, "generated_correct_run_classes", gsub);
        cJSON_AddNumberToObject(o, "reference_correct", rok);
        cJSON_AddNumberToObject(o, "reference_correct_run_classes", rsub);
        cJSON *a = cJSON_AddObjectToObject(acc, names[c]);
        if (ng) cJSON_AddNumberToObject(a, "generated", 100.0 * gok / ng);
        if (nr) cJSON_AddNumberToObject(a, "reference", 100.0 * rok / nr);
    }
    /* The kept images' labels, for the manifest, and the counts, for the
     * report. */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (int i = 0; rc == 0 && i < ng; i++) {
        cJSON *o = cJSON_CreateObject(), *l = cJSON_AddObjectToObject(o, "classifiers");
        cJSON_AddStringToObject(o, "file", gen.file[i]);
        const sf_classlist_t *in = sf_classes_imagenet1k();
        for (int c = 0; c < nc; c++) {
            cJSON *e = cJSON_AddObjectToObject(l, names[c]);
            cJSON_AddStringToObject(e, "label", in->v[gl[c][0][i]].wnid);
            cJSON_AddBoolToObject(e, "correct", gl[c][0][i] == target);
            cJSON_AddStringToObject(e, "run_classes_label", in->v[gl[c][1][i]].wnid);
            cJSON_AddBoolToObject(e, "run_classes_correct", gl[c][1][i] == target);
        }
        if (sf_kind_jsonl_add(&buf, &len, &cap, o) != 0) rc = sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
        cJSON_Delete(o);
    }
    char dir[1400], path[1500];
    if (rc == 0) {
        sf_kind_run_dir(env, job->run, "classify", dir, sizeof dir);
        snprintf(path, sizeof path, "%s/%s.jsonl", dir, job->wnid);
        if (sf_mkdir_p(dir, 0775) != 0 || sf_write_file_atomic(path, buf ? buf : "", len) != 0)
            rc = sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s", path);
    }
    if (rc == 0) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "class", job->wnid);
        cJSON_AddNumberToObject(f, "generated_images", ng);
        cJSON_AddNumberToObject(f, "reference_images", nr);
        cJSON_AddNumberToObject(f, "reference_unreadable", unreadable);
        cJSON_AddNumberToObject(f, "run_classes", nrun);
        cJSON_AddItemToObject(f, "classifiers", counts), counts = NULL;
        char *js = cJSON_PrintUnformatted(f);
        cJSON_Delete(f);
        snprintf(dir, sizeof dir, "%s/datasets/%s/classify", env->data_dir, job->run);
        snprintf(path, sizeof path, "%s/%s.json", dir, job->wnid);
        if (!js || sf_mkdir_p(dir, 0775) != 0 || sf_write_file_atomic(path, js, strlen(js)) != 0)
            rc = sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s", path);
        free(js);
    }
    if (unreadable) sf_warn("classify %s: %d unreadable reference file(s); first: %s", job->wnid, unreadable, errf);
    free(buf), free(top), free(sub);
    for (int c = 0; c < nc; c++) free(gl[c][0]), free(gl[c][1]);
    imgs_free(&gen), imgs_free(&ref);
    cJSON_Delete(counts);
    if (rc) {
        cJSON_Delete(res), cJSON_Delete(acc);
        return rc;
    }
    cJSON_AddNumberToObject(res, "generated_images", ng);
    cJSON_AddNumberToObject(res, "reference_images", nr);
    cJSON_AddNumberToObject(res, "unreadable", unreadable);
    cJSON_AddItemToObject(res, "accuracy", acc);
    return sf_kind_result(job, res);
}

int sf_classify_job(sf_wk_t *wk, sf_job_t *job) {
    if (!sf_kind_safe_name(job->run) || !sf_kind_safe_name(job->wnid))
        return sf_kind_fail(job, SF_JOB_FATAL, "classify: bad run id or class");
    sf_mc_lock();
    int rc = classify_locked(sf_wk_env(wk), job);
    sf_mc_unlock();
    return rc;
}

/* ---- finetune (Fig. 6), one run per job --------------------------------------- */

/* Job item j: classifier j / (2 seeds), seed (j / 2) % seeds, variant j % 2
 * (0: the control, base images alone; 1: with generated images). */
static void ft_run_name(const sf_shift_params_t *p, uint32_t j, int *c, int *s, int *v, char *out, size_t n) {
    const int seeds = (int)p->finetune_seeds;
    *c = (int)(j / (uint32_t)(2 * seeds)), *s = (int)(j / 2 % (uint32_t)seeds), *v = (int)(j % 2);
    snprintf(out, n, "c%d-s%d-%s", *c, *s, *v ? "with_generated" : "control");
}

/* The files of an image pool: paths, and per class the range of them. */
typedef struct {
    char **path;
    int n, cap;
    int *first, *count; /* per run class */
} pool_t;

static void pool_free(pool_t *q) {
    for (int i = 0; i < q->n; i++) free(q->path[i]);
    free(q->path), free(q->first), free(q->count);
    memset(q, 0, sizeof *q);
}

static int pool_add(pool_t *q, const char *path) {
    if (q->n == q->cap) {
        int cap = q->cap ? 2 * q->cap : 256;
        char **p2 = realloc(q->path, sizeof *p2 * (size_t)cap);
        if (!p2) return SF_ENOMEM;
        q->path = p2, q->cap = cap;
    }
    return (q->path[q->n] = strdup(path)) ? (q->n++, 0) : SF_ENOMEM;
}

/* Decodes pool image i of class slot k, passing over unreadable files to the
 * class's next one (in order, wrapping), so that the same files always give
 * the same batches.  0, or -1 when none of the class's files decodes. */
static int pool_read(const pool_t *q, int k, int i, uint8_t **rgb, int *w, int *h) {
    char err[200];
    for (int t = 0; t < q->count[k]; t++) {
        const char *path = q->path[q->first[k] + (i + t) % q->count[k]];
        if (sf_image_read(path, rgb, w, h, err, sizeof err) == 0) return 0;
    }
    return -1;
}

/* The base pool: the first reference_images files of each run class in the
 * reference set; the generated pool: each class's first
 * finetune_images_per_class kept images (absent with_gen). */
static int ft_pools(const sf_wk_env_t *env, sf_job_t *job, const int *idx, int nrun, int with_gen, pool_t *base,
                    pool_t *gen) {
    const sf_shift_params_t *p = job->params;
    const sf_classlist_t *in = sf_classes_imagenet1k();
    base->first = calloc((size_t)nrun, sizeof(int)), base->count = calloc((size_t)nrun, sizeof(int));
    gen->first = calloc((size_t)nrun, sizeof(int)), gen->count = calloc((size_t)nrun, sizeof(int));
    if (!base->first || !base->count || !gen->first || !gen->count)
        return sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    char root[1200], err[400], path[1600];
    snprintf(root, sizeof root, "%s/%s", env->reference_root ? env->reference_root : "", p->reference_source);
    for (int k = 0; k < nrun; k++) {
        const char *wnid = in->v[idx[k]].wnid;
        sf_imagefolder_t *f = NULL;
        if (sf_imagefolder_open(root, &wnid, 1, &f, err, sizeof err) != 0)
            return sf_kind_fail(job, SF_JOB_FATAL, "finetune: base images: %s", err);
        int cnt = sf_imagefolder_count(f, wnid);
        if (cnt > (int)p->reference_images) cnt = (int)p->reference_images;
        base->first[k] = base->n;
        for (int i = 0; i < cnt; i++)
            if (sf_imagefolder_path(f, wnid, i, path, sizeof path) == 0 && pool_add(base, path) != 0) {
                sf_imagefolder_free(&f);
                return sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
            }
        base->count[k] = base->n - base->first[k];
        sf_imagefolder_free(&f);
        if (!base->count[k])
            return sf_kind_fail(job, SF_JOB_FATAL, "finetune: no base images of %s in %s/%s", wnid, root, wnid);
        gen->first[k] = gen->n;
        if (with_gen) {
            imgs_t s = {0};
            /* Only the file names are kept; read_kept also checks they decode. */
            if (read_kept(env, job, wnid, (int)p->finetune_images_per_class, &s)) {
                imgs_free(&s);
                return -1;
            }
            for (int i = 0; i < s.n; i++) {
                snprintf(path, sizeof path, "%s/datasets/%s/%s", env->data_dir, job->run, s.file[i]);
                if (pool_add(gen, path) != 0) {
                    imgs_free(&s);
                    return sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
                }
            }
            imgs_free(&s);
        }
        gen->count[k] = gen->n - gen->first[k];
    }
    return 0;
}

/* The step's batch: classes uniformly among the run's; a class with
 * generated images shows one half of the time (with_gen); the control draws
 * the same numbers and shows a base image instead.  A random horizontal flip
 * (timm's training default) after timm's evaluation transform. */
static int ft_batch(const pool_t *base, const pool_t *gen, const int *idx, int nrun, int with_gen, uint64_t seed,
                    int step, int B, const sf_classifier_config_t *c, float *px, int *labels) {
    const int I = c->image_size;
    const size_t per = (size_t)3 * I * I;
    for (int j = 0; j < B; j++) {
        uint64_t r = sf_mix2(seed, (uint64_t)step * (uint64_t)B + (uint64_t)j);
        const int k = (int)(r % (uint64_t)nrun);
        const pool_t *q = with_gen && gen->count[k] && (r >> 40 & 1) ? gen : base;
        uint8_t *rgb = NULL;
        int w, h;
        if (pool_read(q, k, (int)((r >> 41) % (uint64_t)q->count[k]), &rgb, &w, &h) != 0) return -1;
        int rc = sf_classifier_preprocess(c, rgb, w, h, px + per * j);
        free(rgb);
        if (rc) return -1;
        if (r >> 63) {
            float *x = px + per * j;
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < I; y++) {
                    float *row = x + ((size_t)ch * I + y) * I;
                    for (int a = 0, b = I - 1; a < b; a++, b--) {
                        float t = row[a];
                        row[a] = row[b], row[b] = t;
                    }
                }
        }
        labels[j] = idx[k];
    }
    return 0;
}

/* The checkpoint of a fine-tuning run: <name>.ckpt.json {"step": k, "state":
 * file} naming the state file of step k (sf_classifier_save_state), written
 * after that file, so that the pointer never names a half-written state. */
static int ckpt_read(const char *dir, const char *name, sf_classifier_t *m, int *step) {
    char jp[1600], sp[1700];
    snprintf(jp, sizeof jp, "%s/%s.ckpt.json", dir, name);
    char *t = sf_file_text(jp, NULL);
    cJSON *o = t ? cJSON_Parse(t) : NULL;
    free(t);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step"), *f = cJSON_GetObjectItemCaseSensitive(o, "state");
    int rc = -1;
    if (cJSON_IsNumber(s) && cJSON_IsString(f) && !strchr(f->valuestring, '/')) {
        snprintf(sp, sizeof sp, "%s/%s", dir, f->valuestring);
        if (sf_classifier_load_state(m, sp) == 0) *step = (int)s->valuedouble, rc = 0;
        else sf_warn("finetune %s: checkpoint %s unusable (%s); starting over", name, sp, sf_classifier_errstr(m));
    }
    cJSON_Delete(o);
    return rc;
}

static int ckpt_write(const char *dir, const char *name, sf_classifier_t *m, int step, int prev) {
    char sp[1700], jp[1600], js[256];
    snprintf(sp, sizeof sp, "%s/%s.step%d.state", dir, name, step);
    if (sf_classifier_save_state(m, sp) != 0) return -1;
    snprintf(jp, sizeof jp, "%s/%s.ckpt.json", dir, name);
    snprintf(js, sizeof js, "{\"step\":%d,\"state\":\"%s.step%d.state\"}", step, name, step);
    if (sf_write_file_atomic(jp, js, strlen(js)) != 0) return -1;
    if (prev > 0) {
        snprintf(sp, sizeof sp, "%s/%s.step%d.state", dir, name, prev);
        unlink(sp);
    }
    return 0;
}

static void ckpt_remove(const char *dir, const char *name, int step) {
    char p[1700];
    snprintf(p, sizeof p, "%s/%s.ckpt.json", dir, name);
    unlink(p);
    if (step > 0) {
        snprintf(p, sizeof p, "%s/%s.step%d.state", dir, name, step);
        unlink(p);
    }
}

static int finetune_real_locked(const sf_wk_env_t *env, sf_job_t *job) {
    const sf_shift_params_t *p = job->params;
    if (sf_mc_ensure_ml(env, job)) return -1;
    char names[SF_MAX_CLASSIFIERS][SF_SET_STR_MAX], name[64], mask[IN1K], dir[1400], out[1600];
    int idx[IN1K], nrun, c, s, v;
    const int nc = sf_setting_list(p->classifiers, names, SF_MAX_CLASSIFIERS);
    ft_run_name(p, job->item_start, &c, &s, &v, name, sizeof name);
    if (nc < 1 || c >= nc) return sf_kind_fail(job, SF_JOB_FATAL, "finetune: item %u names no classifier", job->item_start);
    if (run_classes(job, idx, &nrun, mask)) return -1;
    sf_kind_run_dir(env, job->run, "finetune", dir, sizeof dir);
    snprintf(out, sizeof out, "%s/%s.safetensors", dir, name);
    if (sf_mkdir_p(dir, 0775) != 0) return sf_kind_fail(job, SF_JOB_FAILED, "cannot create %s", dir);
    pool_t base = {0}, gen = {0};
    sf_classifier_t *m = NULL;
    const int B = (int)p->finetune_batch, steps = (int)p->finetune_steps;
    /* Control and fine-tune of a seed share the start and the numbers. */
    const uint64_t seed = ((uint64_t)p->seed * 1000 + (uint64_t)c) * 131 + (uint64_t)s;
    int rc = 0, step = 0, resumed = 0;
    if (access(out, F_OK) == 0) {
        /* An earlier attempt finished and lost only its result. */
        sf_info("finetune %s: %s is there already", name, out);
        step = steps;
    }
    if (step < steps && (load_timm(env, names[c], &m, job) || ft_pools(env, job, idx, nrun, v, &base, &gen))) rc = -1;
    if (rc == 0 && step < steps && ckpt_read(dir, name, m, &step) == 0) {
        resumed = step;
        sf_info("finetune %s: resuming from the checkpoint of step %d of %d", name, step, steps);
    }
    const sf_classifier_config_t *cf = m ? sf_classifier_config(m) : NULL;
    float *px = cf ? malloc(sizeof(float) * 3 * (size_t)cf->image_size * cf->image_size * (size_t)B) : NULL;
    int *labels = malloc(sizeof(int) * (size_t)B);
    if (rc == 0 && step < steps && (!px || !labels)) rc = sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    /* A checkpoint a tenth of the way, and at least every 60 s. */
    const int every = steps / 10 > 1 ? steps / 10 : 1;
    int last_ck = resumed;
    double t_ck = sf_clock_mono_s();
    while (rc == 0 && step < steps) {
        if (job->cancelled) {
            rc = sf_kind_fail(job, SF_JOB_CANCELLED, "cancelled");
            break;
        }
        if (ft_batch(&base, &gen, idx, nrun, v, seed, step, B, cf, px, labels) != 0)
            rc = sf_kind_fail(job, SF_JOB_FAILED, "finetune %s: a class has no readable image in its pool", name);
        else if (sf_classifier_train_step(m, px, labels, B, (float)p->finetune_learning_rate, NULL, NULL) != 0)
            rc = sf_kind_fail(job, SF_JOB_FAILED, "finetune %s: %s", name, sf_classifier_errstr(m));
        else if (++step < steps && (step % every == 0 || sf_clock_mono_s() - t_ck > 60)) {
            if (ckpt_write(dir, name, m, step, last_ck) == 0) last_ck = step, t_ck = sf_clock_mono_s();
            else sf_warn("finetune %s: cannot write a checkpoint in %s", name, dir);
            sf_info("finetune %s: step %d of %d", name, step, steps);
        }
    }
    if (rc == 0 && m) {
        char tmp[1700];
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        if (sf_classifier_save(m, tmp) != 0 || rename(tmp, out) != 0)
            rc = sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s", out);
        else ckpt_remove(dir, name, last_ck);
    }
    free(px), free(labels);
    const int nbase = base.n, ngen = gen.n;
    pool_free(&base), pool_free(&gen);
    sf_classifier_free(&m);
    if (rc) return rc;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "classifier", names[c]);
    cJSON_AddNumberToObject(res, "seed", s);
    cJSON_AddStringToObject(res, "variant", v ? "with_generated" : "control");
    cJSON_AddNumberToObject(res, "steps", steps);
    cJSON_AddNumberToObject(res, "base_images", nbase);
    cJSON_AddNumberToObject(res, "generated_images", ngen);
    cJSON_AddNumberToObject(res, "resumed_from_step", resumed);
    return sf_kind_result(job, res);
}

int sf_finetune_real_job(sf_wk_t *wk, sf_job_t *job) {
    if (!sf_kind_safe_name(job->run)) return sf_kind_fail(job, SF_JOB_FATAL, "finetune: bad run id");
    sf_mc_lock();
    int rc = finetune_real_locked(sf_wk_env(wk), job);
    sf_mc_unlock();
    return rc;
}

/* ---- evaluate: the test sets, class by class ------------------------------------ */

/* The classes of test set `set` (its folders) as a mask over ImageNet-1k.
 * 0, or -1 with the job failed: a missing set, or a folder that is no
 * ImageNet-1k wnid (its labels could not be compared). */
static int set_mask(const sf_wk_env_t *env, const char *set, char mask[IN1K], sf_job_t *job) {
    char root[1200], err[400];
    snprintf(root, sizeof root, "%s/%s", env->reference_root ? env->reference_root : "", set);
    sf_imagefolder_t *f = NULL;
    if (sf_imagefolder_open(root, NULL, 0, &f, err, sizeof err) != 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "test set '%s': %s", set, err);
    memset(mask, 0, IN1K);
    int rc = 0;
    for (int i = 0; rc == 0 && i < sf_imagefolder_nclasses(f); i++) {
        int k = in1k_index(sf_imagefolder_class(f, i));
        if (k < 0)
            rc = sf_kind_fail(job, SF_JOB_FATAL, "test set '%s': folder %s/%s is not an ImageNet-1k wnid", set, root,
                              sf_imagefolder_class(f, i));
        else mask[k] = 1;
    }
    if (rc == 0 && sf_imagefolder_nclasses(f) == 0)
        rc = sf_kind_fail(job, SF_JOB_FATAL, "test set '%s': %s has no class folders", set, root);
    sf_imagefolder_free(&f);
    return rc;
}

/* The hits of n labels against target as a string of '0' and '1'. */
static void add_hits(cJSON *o, const char *key, const int *lab, int n, int target) {
    char *h = malloc((size_t)n + 1);
    if (!h) return;
    for (int i = 0; i < n; i++) h[i] = lab[i] == target ? '1' : '0';
    h[n] = 0;
    cJSON_AddStringToObject(o, key, h);
    free(h);
}

static int evaluate_locked(const sf_wk_env_t *env, sf_job_t *job) {
    const sf_shift_params_t *p = job->params;
    if (sf_mc_ensure_ml(env, job)) return -1;
    char names[SF_MAX_CLASSIFIERS][SF_SET_STR_MAX], sets[SF_MAX_EVAL_SETS][SF_SET_STR_MAX];
    const int nc = sf_setting_list(p->classifiers, names, SF_MAX_CLASSIFIERS),
              ns = sf_setting_list(p->eval_sets, sets, SF_MAX_EVAL_SETS), seeds = (int)p->finetune_seeds;
    const int target = in1k_index(job->wnid);
    if (nc < 1 || ns < 1 || target < 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "evaluate: no classifiers, no test sets, or %s outside ImageNet-1k",
                            job->wnid);
    char (*mask)[IN1K] = malloc(sizeof *mask * (size_t)ns), errf[320] = "", dir[1400];
    imgs_t img[SF_MAX_EVAL_SETS] = {{0}};
    int absent[SF_MAX_EVAL_SETS] = {0}, unreadable = 0, total = 0, rc = mask ? 0 : SF_ENOMEM;
    for (int t = 0; rc == 0 && t < ns; t++)
        if ((rc = set_mask(env, sets[t], mask[t], job)) == 0)
            rc = read_folder(env, sets[t], job->wnid, (int)p->eval_images_per_class, &img[t], &unreadable, &absent[t],
                             errf, sizeof errf, job);
    cJSON *doc = cJSON_CreateObject(), *so = cJSON_AddObjectToObject(doc, "sets");
    cJSON_AddStringToObject(doc, "class", job->wnid);
    sf_kind_run_dir(env, job->run, "finetune", dir, sizeof dir);
    for (int t = 0; rc == 0 && t < ns; t++) total += img[t].n;
    for (int t = 0; rc == 0 && t < ns; t++) {
        cJSON *o = cJSON_AddObjectToObject(so, sets[t]);
        cJSON_AddBoolToObject(o, "absent", absent[t]);
        cJSON_AddNumberToObject(o, "images", img[t].n);
        cJSON_AddObjectToObject(o, "hits");
    }
    /* Each classifier: the original, then every fine-tuned run, loaded
     * together so that each image is preprocessed once for all of them. */
    const int nm = 1 + 2 * seeds;
    sf_classifier_t **m = calloc((size_t)nm, sizeof *m);
    int **labs = calloc((size_t)nm, sizeof *labs);
    char (*key)[64] = calloc((size_t)nm, sizeof *key);
    if (rc == 0 && (!m || !labs || !key)) rc = sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    for (int r = 0; rc == 0 && r < nm; r++)
        if (!(labs[r] = malloc(sizeof(int) * (size_t)(total + 1)))) rc = sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    for (int c = 0; rc == 0 && c < nc; c++) {
        for (int r = 0; rc == 0 && r < nm; r++) {
            if (r == 0) {
                snprintf(key[r], sizeof key[r], "original");
                rc = load_timm(env, names[c], &m[r], job);
            } else {
                char path[1600], err[400], nmf[64];
                int cc, s, v;
                ft_run_name(p, (uint32_t)(c * 2 * seeds + r - 1), &cc, &s, &v, nmf, sizeof nmf);
                snprintf(key[r], sizeof key[r], "%s", strchr(nmf, '-') + 1); /* "s<seed>-<variant>" */
                snprintf(path, sizeof path, "%s/%s.safetensors", dir, nmf);
                if (sf_classifier_load(path, NULL, env->device, &m[r], err, sizeof err) != 0)
                    rc = sf_kind_fail(job, SF_JOB_FAILED, "evaluate: fine-tuned model: %s", err);
            }
        }
        for (int t = 0; rc == 0 && t < ns; t++) {
            if (!img[t].n) continue;
            rc = label_images(m, nm, img[t].rgb, img[t].w, img[t].h, img[t].n, mask[t], NULL, labs, job);
            cJSON *h = cJSON_GetObjectItem(cJSON_GetObjectItem(so, sets[t]), "hits");
            cJSON *hc = cJSON_AddObjectToObject(h, names[c]);
            for (int r = 0; rc == 0 && r < nm; r++) add_hits(hc, key[r], labs[r], img[t].n, target);
        }
        for (int r = 0; m && r < nm; r++) sf_classifier_free(&m[r]);
    }
    for (int r = 0; labs && r < nm; r++) free(labs[r]);
    free(m), free(labs), free(key);
    if (rc == 0) {
        char edir[1400], path[1500];
        sf_kind_run_dir(env, job->run, "eval", edir, sizeof edir);
        snprintf(path, sizeof path, "%s/%s.json", edir, job->wnid);
        char *js = cJSON_PrintUnformatted(doc);
        if (!js || sf_mkdir_p(edir, 0775) != 0 || sf_write_file_atomic(path, js, strlen(js)) != 0)
            rc = sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s", path);
        free(js);
    }
    if (unreadable) sf_warn("evaluate %s: %d unreadable test image(s); first: %s", job->wnid, unreadable, errf);
    int nabsent = 0;
    for (int t = 0; t < ns; t++) nabsent += absent[t], imgs_free(&img[t]);
    free(mask);
    cJSON_Delete(doc);
    if (rc) return rc;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddNumberToObject(res, "images", total);
    cJSON_AddNumberToObject(res, "unreadable", unreadable);
    cJSON_AddNumberToObject(res, "absent_sets", nabsent);
    return sf_kind_result(job, res);
}

int sf_evaluate_job(sf_wk_t *wk, sf_job_t *job) {
    if (!sf_kind_safe_name(job->run) || !sf_kind_safe_name(job->wnid))
        return sf_kind_fail(job, SF_JOB_FATAL, "evaluate: bad run id or class");
    sf_mc_lock();
    int rc = evaluate_locked(sf_wk_env(wk), job);
    sf_mc_unlock();
    return rc;
}

/* ---- summarize: finetune.json ------------------------------------------------------ */

/* Hits string h's share of '1', and its length. */
static int hits_of(const cJSON *o, const char *key, const char **h) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, key);
    *h = cJSON_IsString(s) ? s->valuestring : NULL;
    return *h ? (int)strlen(*h) : -1;
}

static int summarize_locked(const sf_wk_env_t *env, sf_job_t *job) {
    const sf_shift_params_t *p = job->params;
    if (sf_mc_ensure_ml(env, job)) return -1;
    char names[SF_MAX_CLASSIFIERS][SF_SET_STR_MAX], sets[SF_MAX_EVAL_SETS][SF_SET_STR_MAX], mask[IN1K];
    int idx[IN1K], nrun;
    const int nc = sf_setting_list(p->classifiers, names, SF_MAX_CLASSIFIERS),
              ns = sf_setting_list(p->eval_sets, sets, SF_MAX_EVAL_SETS), seeds = (int)p->finetune_seeds;
    if (nc < 1 || ns < 1) return sf_kind_fail(job, SF_JOB_FATAL, "summarize: no classifiers or test sets");
    if (run_classes(job, idx, &nrun, mask)) return -1;
    const sf_classlist_t *in = sf_classes_imagenet1k();
    /* Every class's evaluation, in the run's class order. */
    cJSON **ev = calloc((size_t)nrun, sizeof *ev);
    int rc = ev ? 0 : sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    for (int k = 0; rc == 0 && k < nrun; k++) {
        char edir[1400], path[1500];
        sf_kind_run_dir(env, job->run, "eval", edir, sizeof edir);
        snprintf(path, sizeof path, "%s/%s.json", edir, in->v[idx[k]].wnid);
        char *t = sf_file_text(path, NULL);
        if (!t || !(ev[k] = cJSON_Parse(t))) rc = sf_kind_fail(job, SF_JOB_FAILED, "summarize: cannot read %s", path);
        free(t);
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON *cl = cJSON_AddArrayToObject(doc, "classifiers"), *ts = cJSON_AddArrayToObject(doc, "test_sets");
    cJSON *skipped = cJSON_CreateObject();
    for (int c = 0; c < nc; c++) cJSON_AddItemToArray(cl, cJSON_CreateString(names[c]));
    cJSON_AddStringToObject(doc, "scope", "run_classes");
    cJSON_AddNumberToObject(doc, "images_per_class", (double)p->finetune_images_per_class);
    cJSON_AddNumberToObject(doc, "steps", (double)p->finetune_steps);
    cJSON_AddNumberToObject(doc, "batch", (double)p->finetune_batch);
    cJSON_AddNumberToObject(doc, "learning_rate", (float)p->finetune_learning_rate);
    cJSON_AddNumberToObject(doc, "seeds", seeds);
    int used_sets = 0;
    for (int t = 0; rc == 0 && t < ns; t++) {
        int images = 0, classes = 0;
        for (int k = 0; k < nrun; k++) {
            const cJSON *so = cJSON_GetObjectItem(cJSON_GetObjectItem(ev[k], "sets"), sets[t]);
            int n = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(so, "images"));
            images += n > 0 ? n : 0, classes += n > 0;
        }
        if (!images) {
            /* Visible, not silent: the report prints why the set is missing. */
            cJSON_AddStringToObject(skipped, sets[t], "no readable image of the run's classes in this test set");
            sf_warn("summarize: test set '%s' has no readable image of the run's classes; left out", sets[t]);
            continue;
        }
        used_sets++;
        cJSON_AddItemToArray(ts, cJSON_CreateString(sets[t]));
        for (int c = 0; c < nc; c++) {
            /* Per image: the original's hit, and the gain (with generated
             * minus control) averaged over seeds. */
            double orig = 0, ctl = 0, gen = 0, sum_d = 0, sum_d2 = 0;
            int n = 0;
            for (int k = 0; rc == 0 && k < nrun; k++) {
                const cJSON *so = cJSON_GetObjectItem(cJSON_GetObjectItem(ev[k], "sets"), sets[t]);
                const cJSON *h = cJSON_GetObjectItem(cJSON_GetObjectItem(so, "hits"), names[c]);
                const int m = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(so, "images"));
                if (m <= 0) continue;
                const char *ho;
                if (hits_of(h, "original", &ho) != m) {
                    rc = sf_kind_fail(job, SF_JOB_FAILED, "summarize: %s's evaluation of %s on %s is incomplete",
                                      in->v[idx[k]].wnid, names[c], sets[t]);
                    break;
                }
                double *d = calloc((size_t)m, sizeof(double));
                for (int s = 0; d && rc == 0 && s < seeds; s++) {
                    char kc[32], kg[32];
                    const char *hc, *hg;
                    snprintf(kc, sizeof kc, "s%d-control", s), snprintf(kg, sizeof kg, "s%d-with_generated", s);
                    if (hits_of(h, kc, &hc) != m || hits_of(h, kg, &hg) != m) {
                        rc = sf_kind_fail(job, SF_JOB_FAILED, "summarize: %s's evaluation of %s seed %d is incomplete",
                                          in->v[idx[k]].wnid, names[c], s);
                        break;
                    }
                    for (int i = 0; i < m; i++) {
                        ctl += (hc[i] == '1') / (double)seeds, gen += (hg[i] == '1') / (double)seeds;
                        d[i] += ((hg[i] == '1') - (hc[i] == '1')) / (double)seeds;
                    }
                }
                for (int i = 0; d && i < m; i++) orig += ho[i] == '1', sum_d += d[i], sum_d2 += d[i] * d[i];
                n += m;
                free(d);
            }
            if (rc) break;
            const double mean = sum_d / n, var = n > 1 ? (sum_d2 - n * mean * mean) / (n - 1) : 0;
            cJSON *co = cJSON_GetObjectItem(doc, names[c]);
            if (!co) co = cJSON_AddObjectToObject(doc, names[c]);
            cJSON *o = cJSON_AddObjectToObject(co, sets[t]);
            cJSON_AddNumberToObject(o, "images", n);
            cJSON_AddNumberToObject(o, "classes", classes);
            cJSON_AddNumberToObject(o, "original_run_classes", 100.0 * orig / n);
            cJSON_AddNumberToObject(o, "base_only_run_classes", 100.0 * ctl / n);
            cJSON_AddNumberToObject(o, "with_generated_run_classes", 100.0 * gen / n);
            cJSON_AddNumberToObject(o, "gain_run_classes_se", 100.0 * sqrt(var > 0 ? var : 0) / sqrt((double)n));
        }
    }
    cJSON_AddItemToObject(doc, "skipped_test_sets", skipped);
    for (int k = 0; ev && k < nrun; k++) cJSON_Delete(ev[k]);
    free(ev);
    if (rc == 0 && !used_sets)
        rc = sf_kind_fail(job, SF_JOB_FATAL, "summarize: no test set (%s) has a readable image of the run's classes "
                                             "under the workers' reference_root", p->eval_sets);
    if (rc == 0) {
        char path[1400];
        snprintf(path, sizeof path, "%s/datasets/%s/finetune.json", env->data_dir, job->run);
        char *js = cJSON_PrintUnformatted(doc);
        if (!js || sf_write_file_atomic(path, js, strlen(js)) != 0)
            rc = sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s", path);
        free(js);
    }
    if (rc) {
        cJSON_Delete(doc);
        return rc;
    }
    cJSON *res = cJSON_CreateObject();
    cJSON_AddItemToObject(res, "classifiers", cJSON_Duplicate(cl, 1));
    cJSON_AddItemToObject(res, "test_sets", cJSON_Duplicate(ts, 1));
    cJSON_AddNumberToObject(res, "seeds", seeds);
    cJSON_Delete(doc);
    return sf_kind_result(job, res);
}

int sf_summarize_job(sf_wk_t *wk, sf_job_t *job) {
    if (!sf_kind_safe_name(job->run)) return sf_kind_fail(job, SF_JOB_FATAL, "summarize: bad run id");
    sf_mc_lock();
    int rc = summarize_locked(sf_wk_env(wk), job);
    sf_mc_unlock();
    return rc;
}

#endif
