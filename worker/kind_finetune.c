/* kind_finetune.c: finetune (Fig. 6) — fine-tunes the world classifiers
 * (ConvNeXt, ViT) on base images plus the run's kept images, each against a
 * control fine-tuned as long on base images alone, and measures both on the
 * world's test sets; the result is also datasets/<run>/finetune.json
 * (docs/evaluation.md). */
#if SF_HAVE_TORCH
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/image/png.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/hash.h"
#include "common/runtime/log.h"
#include "worker/kind_util.h"
#include "worker/kinds.h"
#include "worker/model_cache.h"

/* Test images per class of the run's classes in the Fig. 6 figures: ten would
 * leave a 10-class gain within +-5 points of noise, so they get many more
 * than the 10 per class of the whole-set figure. */
#define FT_TEST_PER_RUN_CLASS 100

static const char *const arch_names[2] = {"convnext", "vit"};

/* Accuracy of m on test set `set` of the world: *all over the first 10
 * images of every class, and over FT_TEST_PER_RUN_CLASS images of each class
 * in mask (1 per class index), whose hits (1 right, 0 wrong; class by class
 * in index order, images in order) go to hits when it is not NULL. */
static int test_acc(sf_classifier_t *m, const sf_world_t *w, int set, const char *mask, double *all, double *sel,
                    uint8_t *hits) {
    const sf_classifier_config_t *c = sf_classifier_config(m);
    const int K = sf_world_n_classes(w), n = K * 10, S = sf_world_size(w), I = c->image_size, B = 128;
    int *selk = malloc(sizeof(int) * (size_t)K), nsel = 0; /* the run's class indices, in order */
    for (int k = 0; selk && k < K; k++)
        if (mask[k]) selk[nsel++] = k;
    const int ns = nsel * FT_TEST_PER_RUN_CLASS;
    float *px = malloc(sizeof(float) * (size_t)B * 3 * I * I);
    uint8_t *rgb = malloc((size_t)S * S * 3);
    int pred[128], lab[128], ok = 0, oks = 0, rc = px && rgb && selk ? 0 : SF_ENOMEM;
    /* Pass 0: the whole set; pass 1: the run's classes. */
    for (int pass = 0; pass < 2; pass++) {
        const int total = pass ? ns : n;
        for (int i0 = 0; rc == 0 && i0 < total; i0 += B) {
            int b = total - i0 < B ? total - i0 : B;
            for (int j = 0; rc == 0 && j < b; j++) {
                uint64_t idx = (uint64_t)(i0 + j);
                /* The q-th run class's i-th image: index i*K + k. */
                if (pass)
                    idx = (idx % FT_TEST_PER_RUN_CLASS) * (uint64_t)K + (uint64_t)selk[idx / FT_TEST_PER_RUN_CLASS];
                rc = sf_world_testset_get(w, set, idx, rgb, &lab[j], NULL);
                if (rc == 0) rc = sf_world_to_input(rgb, S, I, c->mean, c->std, 0, px + (size_t)j * 3 * I * I);
            }
            if (rc == 0) rc = sf_classifier_forward(m, px, b, NULL, pred);
            for (int j = 0; rc == 0 && j < b; j++) {
                int hit = pred[j] == lab[j];
                if (!pass) ok += hit;
                else {
                    oks += hit;
                    if (hits) hits[i0 + j] = (uint8_t)hit;
                }
            }
        }
    }
    *all = 100.0 * ok / n;
    *sel = ns ? 100.0 * oks / ns : 0;
    free(px);
    free(rgb);
    free(selk);
    return rc;
}

/* The run's kept images: up to `per` of each class of the world, with
 * their labels; mask[k] says class k has some. */
typedef struct {
    uint8_t **img;
    int *lab;
    int n, cap;
    char *mask; /* K */
} kept_t;

static void kept_free(kept_t *g) {
    for (int i = 0; i < g->n; i++) free(g->img[i]);
    free(g->img);
    free(g->lab);
    free(g->mask);
}

static int kept_add(kept_t *g, uint8_t *img, int k) {
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 64;
        uint8_t **i2 = realloc(g->img, sizeof *i2 * (size_t)cap);
        if (i2) g->img = i2;
        int *l2 = i2 ? realloc(g->lab, sizeof *l2 * (size_t)cap) : NULL;
        if (l2) g->lab = l2;
        if (!i2 || !l2) return SF_ENOMEM;
        g->cap = cap;
    }
    g->img[g->n] = img, g->lab[g->n++] = k;
    return 0;
}

/* Reads the kept images of the dataset's manifest.  0, or -1 with the job
 * failed. */
static int read_kept(const sf_wk_env_t *env, sf_job_t *job, const sf_world_t *w, int per, kept_t *g) {
    const int K = sf_world_n_classes(w);
    char path[1400];
    snprintf(path, sizeof path, "%s/datasets/%s/manifest.jsonl", env->data_dir, job->run);
    char *text = sf_file_text(path, NULL);
    int *count = calloc((size_t)K, sizeof *count);
    g->mask = calloc((size_t)K, 1);
    if (!text || !count || !g->mask) {
        free(text);
        free(count);
        return sf_kind_fail(job, SF_JOB_FAILED, "finetune: cannot read %s", path);
    }
    int rc = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); rc == 0 && l; l = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(l);
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(o, "file");
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(o, "class");
        int k = cJSON_IsString(cls) ? sf_world_class_find(w, cls->valuestring) : -1;
        if (k >= 0 && cJSON_IsString(file) && count[k] < per) {
            char ip[1700], er[200];
            int iw, ih;
            uint8_t *img = NULL;
            snprintf(ip, sizeof ip, "%s/datasets/%s/%s", env->data_dir, job->run, file->valuestring);
            if (sf_png_read(ip, &img, &iw, &ih, er, sizeof er) == 0 && iw == sf_world_size(w) && ih == iw &&
                (rc = kept_add(g, img, k)) == 0) {
                count[k]++, g->mask[k] = 1;
            } else {
                free(img);
            }
        }
        cJSON_Delete(o);
    }
    free(count);
    free(text);
    if (rc) return sf_kind_fail(job, SF_JOB_FAILED, "finetune: out of memory");
    if (!g->n) return sf_kind_fail(job, SF_JOB_FAILED, "finetune: no kept images of the world's classes in %s", path);
    return 0;
}

/* Fine-tunes a fresh copy of the world classifier `arch` for `steps` steps of
 * 64 images of classes drawn uniformly: base images, and for the run's
 * classes (when ngen) their kept images half of the time; then measures it. */
static int finetune_one(const sf_wk_env_t *env, int arch, const sf_world_t *w, const kept_t *g, int ngen, int steps,
                        float lr, uint64_t seed, double acc[6], uint8_t *hits[3], sf_job_t *job) {
    char path[1200], err[256];
    snprintf(path, sizeof path, "%s/%s-world.safetensors", env->models_dir, arch_names[arch]);
    sf_classifier_t *m;
    if (sf_classifier_load(path, NULL, env->device, &m, err, sizeof err) != 0)
        return sf_kind_fail(job, SF_JOB_FATAL, "finetune: %s", err);
    const sf_classifier_config_t *c = sf_classifier_config(m);
    const int K = sf_world_n_classes(w), S = sf_world_size(w), I = c->image_size, B = (int)job->params->finetune_batch;
    float *px = malloc(sizeof(float) * (size_t)B * 3 * I * I);
    uint8_t *rgb = malloc((size_t)S * S * 3);
    int *labels = malloc(sizeof(int) * (size_t)B), rc = px && rgb && labels ? 0 : SF_ENOMEM;
    uint64_t r = seed;
    for (int step = 0; rc == 0 && step < steps; step++) {
        for (int j = 0; rc == 0 && j < B; j++) {
            r = sf_mix2(r, (uint64_t)step * B + j);
            /* Classes stay balanced (a class uniformly at random); a class
             * with generated images shows one of them half of the time. */
            const uint8_t *img = rgb;
            labels[j] = (int)(r % (uint64_t)K);
            int cnt = 0;
            for (int i = 0; i < ngen; i++) cnt += g->lab[i] == labels[j];
            if (cnt && (r >> 40) & 1) {
                int pick = (int)((r >> 41) % (uint64_t)cnt);
                for (int i = 0; i < ngen; i++)
                    if (g->lab[i] == labels[j] && pick-- == 0) { img = g->img[i]; break; }
            } else rc = sf_world_base_sample(w, labels[j], (1ull << 30) + (r >> 20) % 100000, rgb, NULL);
            if (rc == 0) rc = sf_world_to_input(img, S, I, c->mean, c->std, (int)(r >> 63), px + (size_t)j * 3 * I * I);
        }
        if (rc == 0) rc = sf_classifier_train_step(m, px, labels, B, lr, NULL, NULL);
    }
    for (int set = 0; rc == 0 && set < SF_WORLD_N_SETS; set++)
        rc = test_acc(m, w, set, g->mask, &acc[2 * set], &acc[2 * set + 1], hits[set]);
    free(px);
    free(rgb);
    free(labels);
    if (rc) sf_kind_fail(job, SF_JOB_FAILED, "finetune: %s", sf_classifier_errstr(m));
    sf_classifier_free(&m);
    return rc ? -1 : 0;
}

/* The control's figures depend only on the classifier's weights, the world,
 * the device, the seed, the steps, the learning rate and the run's classes
 * (its batches are base images alone), so runs that share them — a report's
 * baselines, on the method's classes and seed — share the control: the first
 * run that needs one trains it and stores its figures in
 * <data>/controls/<arch>-<key>.bin, and the others read them.  A file of the
 * wrong size or magic is ignored (and rewritten). */
#define CTL_MAGIC "SFCTL1\n"

/* The bytes of a stored control of ns test images: magic, ns (int32), the
 * six accuracies (double), then the hits of each test set (ns bytes each). */
static size_t control_bytes(int ns) {
    return sizeof CTL_MAGIC + sizeof(int32_t) + 6 * sizeof(double) + 3 * (size_t)ns;
}

/* The part of a control's key that every seed of architecture a shares: the
 * classifier's weights (read once per finetune job and architecture), the
 * world, the device, the steps, the test sizes and the run's classes.  0, or
 * -1 when the weights cannot be read (then nothing is stored or reused). */
static int control_key(const sf_wk_env_t *env, int a, const sf_world_t *w, const char *mask, const char *world,
                       int steps, int batch, float lr, uint64_t *key) {
    char mp[1200];
    snprintf(mp, sizeof mp, "%s/%s-world.safetensors", env->models_dir, arch_names[a]);
    char *buf = NULL;
    size_t len = 0;
    if (sf_read_file(mp, SF_READ_ANY_SIZE, &buf, &len, NULL, 0) != 0) return -1;
    uint64_t h = sf_fnv1a(SF_HASH_BASIS, CTL_MAGIC, sizeof CTL_MAGIC);
    h = sf_fnv1a(h, buf, len);
    free(buf);
    const int K = sf_world_n_classes(w);
    const int32_t v[4] = {steps, batch, FT_TEST_PER_RUN_CLASS, K};
    h = sf_fnv1a(h, world, strlen(world) + 1);
    h = sf_fnv1a(h, env->device, strlen(env->device) + 1);
    h = sf_fnv1a(h, &lr, sizeof lr);
    h = sf_fnv1a(h, v, sizeof v);
    *key = sf_fnv1a(h, mask, (size_t)K);
    return 0;
}

/* The stored control of path: 0 with acc and hits (ns each) filled, or -1. */
static int control_read(const char *path, int ns, double acc[6], uint8_t *hits[3]) {
    char *buf = NULL;
    size_t len = 0;
    const size_t want = control_bytes(ns);
    if (sf_read_file(path, want, &buf, &len, NULL, 0) != 0) return -1;
    int32_t n32;
    int ok = len == want && memcmp(buf, CTL_MAGIC, sizeof CTL_MAGIC) == 0;
    if (ok) memcpy(&n32, buf + sizeof CTL_MAGIC, sizeof n32), ok = n32 == ns;
    if (ok) {
        const char *q = buf + sizeof CTL_MAGIC + sizeof n32;
        memcpy(acc, q, 6 * sizeof(double));
        for (int t = 0; t < 3; t++) memcpy(hits[t], q + 6 * sizeof(double) + (size_t)t * ns, (size_t)ns);
    }
    free(buf);
    return ok ? 0 : -1;
}

/* Stores a control (best effort: a failure costs the next run a retraining). */
static void control_write(const char *path, int ns, const double acc[6], uint8_t *const hits[3]) {
    const size_t len = control_bytes(ns);
    char *buf = malloc(len), dir[1500];
    if (!buf) return;
    const int32_t n32 = ns;
    memcpy(buf, CTL_MAGIC, sizeof CTL_MAGIC);
    memcpy(buf + sizeof CTL_MAGIC, &n32, sizeof n32);
    char *q = buf + sizeof CTL_MAGIC + sizeof n32;
    memcpy(q, acc, 6 * sizeof(double));
    for (int t = 0; t < 3; t++) memcpy(q + 6 * sizeof(double) + (size_t)t * ns, hits[t], (size_t)ns);
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    if (sf_mkdir_p(dir, 0755) == 0 && sf_write_file_atomic(path, buf, len) != 0)
        sf_warn("finetune: cannot store the control in %s", path);
    free(buf);
}

/* The control of seed sd (key: control_key's, have: it could be made): 1
 * when it was stored, 0 when trained (and stored), -1 with the job failed.
 * Stored in <data>/controls/<arch>-<key and seed>.bin. */
static int control_one(const sf_wk_env_t *env, int a, const sf_world_t *w, const kept_t *g, int ns, int steps,
                       float lr, int have, uint64_t key, uint64_t sd, double acc[6], uint8_t *hits[3], sf_job_t *job) {
    char path[1500];
    snprintf(path, sizeof path, "%s/controls/%s-%016llx.bin", env->data_dir, arch_names[a],
             (unsigned long long)sf_fnv1a(key, &sd, sizeof sd));
    if (have && control_read(path, ns, acc, hits) == 0) return 1;
    if (finetune_one(env, a, w, g, 0, steps, lr, sd, acc, hits, job)) return -1;
    if (have) control_write(path, ns, acc, hits);
    return 0;
}

/* Fine-tunes architecture a with and without the kept images, each with
 * every seed, and adds its figures to res.  ns: test images of the run's
 * classes; d, hc, hf: ns + 1 of scratch each, per test set.  0, or -1 with
 * the job failed. */
static int finetune_arch(const sf_wk_env_t *env, sf_job_t *job, const sf_world_t *w, const kept_t *g, int a, int ns,
                         int *d[3], uint8_t *hc[3], uint8_t *hf[3], cJSON *res) {
    const sf_shift_params_t *p = job->params;
    const int seeds = (int)p->finetune_seeds, steps = (int)p->finetune_steps;
    const float lr = (float)p->finetune_learning_rate;
    static const char *const sets[3] = {"base", "world_R", "world_A"};
    /* Control: as many steps on base images alone, so that a gain is the
     * generated data's and not the extra training's. */
    double ctl[6] = {0}, ft[6] = {0};
    int reused = 0;
    uint64_t key = 0;
    const int have = control_key(env, a, w, g->mask, p->world, steps, (int)p->finetune_batch, lr, &key) == 0;
    for (int t = 0; t < 3; t++) memset(d[t], 0, sizeof(int) * ((size_t)ns + 1));
    for (int sd_i = 0; sd_i < seeds; sd_i++) {
        double c1[6], f1[6];
        uint64_t sd = ((uint64_t)p->seed * 1000 + (uint64_t)a) * 131 + (uint64_t)sd_i;
        int c = control_one(env, a, w, g, ns, steps, lr, have, key, sd, c1, hc, job);
        if (c < 0 || finetune_one(env, a, w, g, g->n, steps, lr, sd, f1, hf, job)) return -1;
        reused += c;
        for (int i = 0; i < 6; i++) ctl[i] += c1[i] / seeds, ft[i] += f1[i] / seeds;
        for (int t = 0; t < 3; t++)
            for (int i = 0; i < ns; i++) d[t][i] += (int)hf[t][i] - (int)hc[t][i];
    }
    double orig[6];
    sf_mc_ensure_classifiers(env);
    if (sf_mc.cls[a])
        for (int set = 0; set < SF_WORLD_N_SETS; set++)
            test_acc(sf_mc.cls[a], w, set, g->mask, &orig[2 * set], &orig[2 * set + 1], NULL);
    cJSON *o = cJSON_AddObjectToObject(res, arch_names[a]);
    cJSON_AddNumberToObject(o, "controls_reused", reused);
    for (int set = 0; set < 3; set++) {
        /* The standard error of the run classes' gain: over test images
         * of the per-image gain (averaged over seeds), in points. */
        double mean = 0, var = 0;
        for (int i = 0; i < ns; i++) mean += (double)d[set][i] / seeds;
        mean /= ns ? ns : 1;
        for (int i = 0; i < ns; i++) var += pow((double)d[set][i] / seeds - mean, 2);
        double se = ns > 1 ? 100.0 * sqrt(var / (ns - 1) / ns) : 0;
        cJSON *so = cJSON_AddObjectToObject(o, sets[set]);
        if (sf_mc.cls[a]) {
            cJSON_AddNumberToObject(so, "original", orig[2 * set]);
            cJSON_AddNumberToObject(so, "original_run_classes", orig[2 * set + 1]);
        }
        cJSON_AddNumberToObject(so, "base_only", ctl[2 * set]);
        cJSON_AddNumberToObject(so, "with_generated", ft[2 * set]);
        cJSON_AddNumberToObject(so, "base_only_run_classes", ctl[2 * set + 1]);
        cJSON_AddNumberToObject(so, "with_generated_run_classes", ft[2 * set + 1]);
        cJSON_AddNumberToObject(so, "gain_run_classes_se", se);
    }
    return 0;
}

static int finetune_locked(const sf_wk_env_t *env, sf_job_t *job, kept_t *g) {
    const sf_shift_params_t *p = job->params;
    sf_world_t *w = sf_mc_world(p->world, job);
    if (!w || sf_mc_ensure_ml(env, job) || read_kept(env, job, w, (int)p->finetune_images_per_class, g)) return -1;
    /* Fine-tuning noise: each of `seeds` seeds fine-tunes a control and a
     * model with generated images from the same start and batches. */
    int nsel = 0;
    for (int k = 0; k < sf_world_n_classes(w); k++) nsel += g->mask[k] != 0;
    const int ns = nsel * FT_TEST_PER_RUN_CLASS;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddNumberToObject(res, "images_per_class", (double)p->finetune_images_per_class);
    cJSON_AddNumberToObject(res, "generated_images", g->n);
    cJSON_AddNumberToObject(res, "steps", (double)p->finetune_steps);
    cJSON_AddNumberToObject(res, "batch", (double)p->finetune_batch);
    cJSON_AddNumberToObject(res, "learning_rate", (float)p->finetune_learning_rate);
    cJSON_AddNumberToObject(res, "seeds", (double)p->finetune_seeds);
    cJSON_AddNumberToObject(res, "test_images_per_class", 10);
    cJSON_AddNumberToObject(res, "test_images_per_run_class", FT_TEST_PER_RUN_CLASS);
    /* d[set][i]: test image i's hits with generated images minus the
     * control's, summed over seeds. */
    int *d[3];
    uint8_t *hc[3], *hf[3];
    int rc = 0;
    for (int t = 0; t < 3; t++) {
        d[t] = calloc((size_t)ns + 1, sizeof(int)), hc[t] = malloc((size_t)ns + 1), hf[t] = malloc((size_t)ns + 1);
        if (!d[t] || !hc[t] || !hf[t]) rc = sf_kind_fail(job, SF_JOB_FAILED, "finetune: out of memory");
    }
    for (int a = 0; rc == 0 && a < 2; a++) rc = finetune_arch(env, job, w, g, a, ns, d, hc, hf, res);
    for (int t = 0; t < 3; t++) free(d[t]), free(hc[t]), free(hf[t]);
    char *js = rc ? NULL : cJSON_PrintUnformatted(res);
    if (rc == 0) {
        char path[1400];
        snprintf(path, sizeof path, "%s/datasets/%s/finetune.json", env->data_dir, job->run);
        if (!js || sf_write_file_atomic(path, js, strlen(js)) != 0)
            rc = sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s", path);
    }
    free(js);
    if (rc) {
        cJSON_Delete(res);
        return rc;
    }
    return sf_kind_result(job, res);
}

int sf_finetune_job(sf_wk_t *wk, sf_job_t *job) {
    if (sf_real_classifiers(job->params)) return sf_finetune_real_job(wk, job);
    if (!sf_kind_safe_name(job->run)) return sf_kind_fail(job, SF_JOB_FATAL, "finetune: bad run id");
    kept_t g = {0};
    sf_mc_lock();
    int rc = finetune_locked(sf_wk_env(wk), job, &g);
    sf_mc_unlock();
    kept_free(&g);
    return rc;
}

#endif
