/* models.c: the job kinds of the method, on the worker (built with libtorch).
 *
 *   embed     CLIP image embeddings of a class's reference images -> the
 *             class's statistics file (kept and reused across runs);
 *   rollout   captions sampled with the learner's current policy, scored
 *             with the paper's reward, sent to sf-learner;
 *   captions  the run's captions for a class (final PPO policy or SFT);
 *   generate  captions -> images (the world's text-to-image generator);
 *   filter    CLIP similarity of each image to its class text; kept images
 *             and the manifest go to the dataset.
 *
 * Files live under the worker's data_dir (shared by the workers of a
 * cluster; docs/method.md):
 *   stats/<embedder>/<source>/<wnid>.safetensors   embeddings, mean
 *   runs/<run>/captions/<wnid>.jsonl               one caption a line
 *   runs/<run>/images/<wnid>/<item>.png, .json     generated, with metadata
 *   runs/<run>/manifest/<wnid>-<start>.jsonl       filter verdicts per shard
 *   datasets/<run>/<wnid>/<wnid>-<item>.png        kept images (ImageFolder)
 *   datasets/<run>/manifest.jsonl                  every image, kept or not
 * Every file is written to a temporary name and renamed, so a job retried
 * after a crash rewrites the same bytes and a reader never sees half a file.
 *
 * Models are loaded once and kept; one mutex serialises model work in the
 * worker (a worker is one device), and waiting for the learner happens on
 * the loop, outside it.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/worker.h"

#if SF_HAVE_TORCH
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/net/blob.h"
#include "common/text/bpe.h"
#include "common/runtime/fileio.h"
#include "common/method/classes.h"
#include "common/text/clip_bpe.h"
#include "common/runtime/error.h"
#include "worker/learner_client.h"
#include "common/runtime/log.h"
#include "common/image/png.h"
#include "common/method/reward.h"
#include "common/formats/safetensors.h"
#include "common/text/sft_rows.h"
#include "common/image/image.h"
#include "common/image/imagefolder.h"
#include "ml/sf_diffusion.h"
#include "ml/sf_ml.h"
#include "ml/sf_vision.h"
#include "world/world.h"

#define MAX_WORLDS 4

static struct {
    pthread_mutex_t mu;
    int ml_ready;
    sf_clip_t *clip;
    sf_clip_bpe_t *ctok;
    char clip_tag[64];
    sf_bpe_t *bpe;
    sf_gpt2_t *policy;
    char policy_key[1200];  /* "run@version" or the file it came from */
    struct { char name[64]; sf_world_t *w; } worlds[MAX_WORLDS];
    sf_classifier_t *cls[2];  /* the world's ConvNeXt and ViT (trained on the 86-class world) */
    sf_diffusion_t *diff;     /* the TorchScript pipeline of diffusion_dir */
    int cls_tried;
    sf_lc_t *lc;            /* loop thread only */
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* A model job in flight. */
typedef struct {
    sf_job_t *job;
    sf_wk_t *wk;
    const sf_wk_env_t *env;
    cJSON *p;               /* the payload */
    uv_work_t work;
    int failed;
    /* rollout / captions: the policy image from the learner */
    uint8_t *blob;
    size_t blob_len;
    uint32_t version;
    /* rollout results */
    Sf__Rollout *rolls;
    Sf__Rollout **rollp;
    int n_rolls;
    double score_sum;
    int nonsense;
    char example[256];
} mjob_t;

/* ---- small helpers ----------------------------------------------------------- */

static int fail(sf_job_t *job, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(sf_job_t *job, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->error, sizeof job->error, fmt, ap);
    va_end(ap);
    job->status = status;
    return -1;
}

static double pnum(const cJSON *p, const char *k, double def) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(p, k);
    return cJSON_IsNumber(it) ? it->valuedouble : def;
}

static const char *pstr(const cJSON *p, const char *k, const char *def) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(p, k);
    return cJSON_IsString(it) ? it->valuestring : def;
}

static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t z = a * 0x9e3779b97f4a7c15ull + b + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Run ids and wnids become path parts: only [A-Za-z0-9_-], bounded. */
static int safe_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-'))
            return 0;
    return 1;
}

static int mkdir_p(const char *path) {
    char tmp[1400];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *q = tmp + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            if (mkdir(tmp, 0775) != 0 && errno != EEXIST) return -1;
            *q = '/';
        }
    return mkdir(tmp, 0775) != 0 && errno != EEXIST ? -1 : 0;
}

/* Writes len bytes to path through path.tmp.<pid> and a rename. */
static int write_file(const char *path, const void *buf, size_t len) {
    char tmp[1500];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    int ok = fwrite(buf, 1, len, f) == len;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ---- models (under M.mu) ------------------------------------------------------- */

static int ensure_ml(const sf_wk_env_t *env, sf_job_t *job) {
    if (M.ml_ready) return 0;
    sf_ml_opts_t o = {0};
    o.threads = env->threads;
    if (sf_ml_init(&o) != 0) return fail(job, SF_JOB_FATAL, "libtorch: %s", sf_ml_errstr());
    M.ml_ready = 1;
    return 0;
}

/* With swap_models, one large model lives on the device at a time: loading
 * `keep` frees the others and hands their memory back to the device (a GPU
 * worker that holds CLIP, the policy and a diffusion model at once may not
 * fit).  The small world classifiers stay. */
enum { KEEP_CLIP = 1, KEEP_POLICY = 2, KEEP_DIFFUSION = 4 };
static void swap_to(const sf_wk_env_t *env, int keep) {
    if (!env->swap_models) return;
    int freed = 0;
    if (!(keep & KEEP_CLIP) && M.clip) sf_clip_free(&M.clip), freed = 1;
    if (!(keep & KEEP_POLICY) && M.policy) sf_gpt2_free(&M.policy), M.policy_key[0] = 0, freed = 1;
    if (!(keep & KEEP_DIFFUSION) && M.diff) sf_diffusion_free(&M.diff), freed = 1;
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

static int ensure_clip(const sf_wk_env_t *env, sf_job_t *job) {
    swap_to(env, KEEP_CLIP);
    if (M.clip) return 0;
    if (ensure_ml(env, job)) return -1;
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
        return fail(job, SF_JOB_FATAL, "CLIP: no %s (run make models, or set clip_dir)", path);
    if (weights_crc(path, &crc, err, sizeof err) != 0) return fail(job, SF_JOB_FATAL, "CLIP: %s", err);
    const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    char safe[32];
    size_t k = 0;
    for (const char *c = base; *c && k < sizeof safe - 1; c++)
        safe[k++] = (isalnum((unsigned char)*c) || *c == '-' || *c == '_') ? *c : '_';
    safe[k] = 0;
    snprintf(M.clip_tag, sizeof M.clip_tag, "%s-%08x", k ? safe : "clip", crc);
    if (sf_clip_load_dir(dir, env->device, &M.clip, err, sizeof err) != 0) return fail(job, SF_JOB_FATAL, "CLIP: %s", err);
    if (strcmp(env->dtype, "fp32") && sf_clip_set_dtype(M.clip, env->dtype) != 0) {
        fail(job, SF_JOB_FATAL, "CLIP in %s: %s", env->dtype, sf_clip_errstr(M.clip));
        sf_clip_free(&M.clip);
        return -1;
    }
    if (!M.ctok && sf_clip_bpe_load(voc, mer, &M.ctok, err, sizeof err) != 0) {
        sf_clip_free(&M.clip);
        return fail(job, SF_JOB_FATAL, "CLIP tokenizer: %s", err);
    }
    sf_info("loaded CLIP %s (%s, %s)", dir, M.clip_tag, env->dtype);
    return 0;
}

static int ensure_bpe(const sf_wk_env_t *env, sf_job_t *job) {
    if (M.bpe) return 0;
    char err[256];
    if (sf_bpe_load_dir(env->gpt2_vocab, &M.bpe, err, sizeof err) != 0)
        return fail(job, SF_JOB_FATAL, "GPT-2 vocabulary: %s", err);
    return 0;
}

static sf_world_t *get_world(const char *name, sf_job_t *job) {
    int free_slot = -1;
    for (int i = 0; i < MAX_WORLDS; i++) {
        if (M.worlds[i].w && strcmp(M.worlds[i].name, name) == 0) return M.worlds[i].w;
        if (!M.worlds[i].w && free_slot < 0) free_slot = i;
    }
    if (free_slot < 0) free_slot = 0, sf_world_destroy(&M.worlds[0].w);
    sf_classlist_t *cl;
    char err[256];
    if (sf_classes_load(name, &cl, err, sizeof err) != 0) {
        fail(job, SF_JOB_FATAL, "world '%s': %s", name, err);
        return NULL;
    }
    int rc = sf_world_create(cl, SF_WORLD_DEFAULT_SIZE, &M.worlds[free_slot].w);
    sf_classes_free(&cl);
    if (rc != 0) {
        fail(job, SF_JOB_FATAL, "world '%s': %s", name, sf_strerror(rc));
        return NULL;
    }
    snprintf(M.worlds[free_slot].name, sizeof M.worlds[free_slot].name, "%s", name);
    return M.worlds[free_slot].w;
}

/* The class of the job in its world, or -1 with the job failed. */
static int job_class(const sf_world_t *w, sf_job_t *job) {
    int k = sf_world_class_find(w, job->wnid);
    if (k < 0) fail(job, SF_JOB_FATAL, "class '%s' is not in the world", job->wnid);
    return k;
}

static void stats_path(const sf_wk_env_t *env, const char *source, const char *wnid, char *out, size_t n) {
    snprintf(out, n, "%s/stats/%s/%s/%s.safetensors", env->data_dir, M.clip_tag, source, wnid);
}

/* The class mean (E floats) from its statistics file. */
static int load_mean(const sf_wk_env_t *env, const cJSON *p, sf_job_t *job, float *mean, int E) {
    char path[1400], err[256];
    stats_path(env, pstr(p, "source", "world"), job->wnid, path, sizeof path);
    sf_st_t *st;
    if (sf_st_load(path, &st, err, sizeof err) != 0)
        return fail(job, SF_JOB_FAILED, "no reference statistics for %s (the embed phase writes %s): %s", job->wnid,
                    path, err);
    const sf_st_tensor_t *t = sf_st_find(st, "mean");
    int rc = t && t->numel == E ? sf_st_to_f32(t, mean, (size_t)E) : SF_EFORMAT;
    sf_st_free(&st);
    return rc ? fail(job, SF_JOB_FAILED, "%s: no 'mean' of %d floats", path, E) : 0;
}

static int embed_texts(char **texts, int n, float *out, sf_job_t *job) {
    const sf_clip_config_t *cfg = sf_clip_config(M.clip);
    const int T = cfg->context_length;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n * T);
    if (!ids) return fail(job, SF_JOB_FAILED, "out of memory");
    int L = 1;
    for (int i = 0; i < n; i++) {
        int l = sf_clip_bpe_encode(M.ctok, texts[i], ids + (size_t)i * T, T);
        L = l > L ? l : L;
    }
    for (int i = 0; i < n; i++) memmove(ids + (size_t)i * L, ids + (size_t)i * T, sizeof(int32_t) * L);
    int rc = sf_clip_encode_text(M.clip, ids, n, L, out);
    free(ids);
    return rc ? fail(job, SF_JOB_FAILED, "CLIP text: %s", sf_clip_errstr(M.clip)) : 0;
}

/* CLIP image embeddings of n RGB images: all size x size, or (ws, hs given)
 * each of its own size (real reference photos). */
static int embed_rgb_sized(const uint8_t *const *rgb, int size, const int *ws, const int *hs, int n, float *out,
                           sf_job_t *job) {
    const sf_clip_config_t *cfg = sf_clip_config(M.clip);
    const int S = cfg->image_size, B = 64, E = cfg->embed_dim;
    float *px = malloc(sizeof(float) * B * 3 * S * S);
    if (!px) return fail(job, SF_JOB_FAILED, "out of memory");
    int rc = 0;
    for (int i0 = 0; rc == 0 && i0 < n; i0 += B) {
        int b = n - i0 < B ? n - i0 : B;
        for (int j = 0; rc == 0 && j < b; j++)
            rc = sf_clip_preprocess(cfg, rgb[i0 + j], ws ? ws[i0 + j] : size, hs ? hs[i0 + j] : size,
                                    px + (size_t)j * 3 * S * S);
        if (rc == 0) rc = sf_clip_encode_image(M.clip, px, b, out + (size_t)i0 * E);
    }
    free(px);
    return rc ? fail(job, SF_JOB_FAILED, "CLIP image: %s", sf_clip_errstr(M.clip)) : 0;
}

static int embed_rgb(const uint8_t *const *rgb, int size, int n, float *out, sf_job_t *job) {
    return embed_rgb_sized(rgb, size, NULL, NULL, n, out, job);
}

static float dotf(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static float cosf_(const float *a, const float *b, int n) {
    float c;
    return sf_reward_cosine(a, b, (size_t)n, &c) == 0 ? c : 0.f;
}

/* The world classifiers, when models_dir has them (0 if not: the evaluation
 * then has no classifier figures). */
static int ensure_classifiers(const sf_wk_env_t *env) {
    if (M.cls_tried) return M.cls[0] && M.cls[1];
    M.cls_tried = 1;
    const char *names[2] = {"convnext", "vit"};
    for (int i = 0; i < 2; i++) {
        char path[1200], err[256];
        snprintf(path, sizeof path, "%s/%s-world.safetensors", env->models_dir, names[i]);
        if (sf_classifier_load(path, NULL, env->device, &M.cls[i], err, sizeof err) != 0)
            sf_warn("no %s classifier for the evaluation: %s", names[i], err);
    }
    return M.cls[0] && M.cls[1];
}

/* Labels the world classifiers give n images (S x S): pred[m][i]. */
static int classify(const uint8_t *const *imgs, int S, int n, int *pred[2]) {
    for (int m = 0; m < 2; m++) {
        const sf_classifier_config_t *c = sf_classifier_config(M.cls[m]);
        const int I = c->image_size;
        float *px = malloc(sizeof(float) * (size_t)3 * I * I * (n ? n : 1));
        if (!px) return SF_ENOMEM;
        int rc = 0;
        for (int i = 0; rc == 0 && i < n; i++) rc = sf_world_to_input(imgs[i], S, I, c->mean, c->std, 0, px + (size_t)i * 3 * I * I);
        if (rc == 0) rc = sf_classifier_forward(M.cls[m], px, n, NULL, pred[m]);
        free(px);
        if (rc) return rc;
    }
    return 0;
}

/* ---- embed ------------------------------------------------------------------- */

/* Embeds the first `want` readable reference images of the job's class from
 * reference_root/<source>/<wnid>/ into *emb (new); returns how many (>= 1)
 * or -1 with the job failed.  b keeps the count of unreadable files. */
static int embed_folder(const sf_wk_env_t *env, const char *source, sf_job_t *job, int want,
                        sf_imagefolder_batch_t *b, float **emb) {
    if (!env->reference_root || !*env->reference_root)
        return fail(job, SF_JOB_FATAL, "reference source '%s' needs the worker's reference_root", source);
    char root[1200], err[400];
    snprintf(root, sizeof root, "%s/%s", env->reference_root, source);
    const char *wn = job->wnid;
    sf_imagefolder_t *f = NULL;
    if (sf_imagefolder_open(root, &wn, 1, &f, err, sizeof err) != 0)
        return fail(job, SF_JOB_FATAL, "reference images: %s", err);
    int rc = sf_imagefolder_read_batch(f, job->wnid, 0, -1, want, b, err, sizeof err);
    sf_imagefolder_free(&f);
    if (rc != 0) return fail(job, SF_JOB_FAILED, "reference images: %s", err);
    if (b->n_images == 0)
        return fail(job, SF_JOB_FATAL, "reference images: no readable image of %s in %s/%s (%d unreadable%s%s)", job->wnid,
                    root, job->wnid, b->n_skipped, b->n_skipped ? "; first: " : "", b->first_err);
    if (b->n_skipped)
        sf_warn("reference images of %s: %d unreadable file(s) skipped; first: %s", job->wnid, b->n_skipped, b->first_err);
    const int n = b->n_images, E = sf_clip_config(M.clip)->embed_dim;
    const uint8_t **rgb = calloc((size_t)n, sizeof *rgb);
    int *ws = calloc((size_t)n, sizeof *ws), *hs = calloc((size_t)n, sizeof *hs);
    *emb = malloc(sizeof(float) * (size_t)n * E);
    rc = !rgb || !ws || !hs || !*emb ? fail(job, SF_JOB_FAILED, "out of memory") : 0;
    for (int i = 0; rc == 0 && i < n; i++) rgb[i] = b->images[i].rgb, ws[i] = b->images[i].w, hs[i] = b->images[i].h;
    if (rc == 0) rc = embed_rgb_sized(rgb, 0, ws, hs, n, *emb, job);
    free(rgb);
    free(ws);
    free(hs);
    return rc ? -1 : n;
}

static int embed(sf_wk_t *wk, sf_job_t *job) {
    const sf_wk_env_t *env = sf_wk_env(wk);
    cJSON *p = cJSON_ParseWithLength(job->payload ? job->payload : "{}", job->payload_len ? job->payload_len : 2);
    pthread_mutex_lock(&M.mu);
    int rc = -1;
    sf_world_t *w;
    int k, n = (int)job->item_count;
    float *emb = NULL, *mean = NULL;
    uint8_t *pix = NULL;
    const uint8_t **rows = NULL;
    if (ensure_clip(env, job) || !(w = get_world(pstr(p, "world", "builtin:imagenet-a-r-86"), job)) ||
        (k = job_class(w, job)) < 0)
        goto out;
    const int E = sf_clip_config(M.clip)->embed_dim, S = sf_world_size(w);
    char path[1400], err[256];
    const char *source = pstr(p, "source", "world");
    stats_path(env, source, job->wnid, path, sizeof path);
    sf_st_t *old;
    if (sf_st_load(path, &old, err, sizeof err) == 0) {
        /* Stored for the same number of images asked for (a folder may have
         * given fewer: "requested" says what was asked). */
        const sf_st_tensor_t *t = sf_st_find(old, "embeddings");
        const char *req = sf_st_meta(old, "requested");
        int have = t && t->ndim == 2 ? (int)t->shape[0] : -1;
        int same = t && t->ndim == 2 && t->shape[1] == E && (req ? atoi(req) == n : have == n);
        sf_st_free(&old);
        if (same) {
            job->out_len = (size_t)asprintf(&job->out, "{\"n\":%d,\"cached\":true,\"embedder\":\"%s\"}", have, M.clip_tag);
            job->status = SF_JOB_OK;
            rc = 0;
            goto done;
        }
    }
    int unreadable = 0;
    const int requested = n;
    if (strcmp(source, "world") != 0) {
        /* Real reference images: the first n readable files of the class in
         * reference_root/<source>/<wnid>/, unreadable ones skipped and
         * counted (the coordinator checked that source is a name). */
        sf_imagefolder_batch_t b = {0};
        if ((n = embed_folder(env, source, job, n, &b, &emb)) < 0) goto done;
        unreadable = b.n_skipped;
        sf_imagefolder_batch_free(&b);
        mean = calloc((size_t)E, sizeof(float));
        if (!mean) { fail(job, SF_JOB_FAILED, "out of memory"); goto done; }
    } else {
        emb = malloc(sizeof(float) * (size_t)n * E), mean = calloc((size_t)E, sizeof(float));
        pix = malloc((size_t)n * S * S * 3);
        rows = calloc((size_t)n ? (size_t)n : 1, sizeof *rows);
        if (!emb || !mean || !pix || !rows) { fail(job, SF_JOB_FAILED, "out of memory"); goto done; }
        for (int i = 0; i < n; i++) {
            rows[i] = pix + (size_t)i * S * S * 3;
            if (sf_world_base_sample(w, k, (uint64_t)(job->item_start + i), pix + (size_t)i * S * S * 3, NULL) != 0) {
                fail(job, SF_JOB_FATAL, "world: cannot render base image %d of %s", i, job->wnid);
                goto done;
            }
        }
        if (embed_rgb(rows, S, n, emb, job)) goto done;
    }
    for (int i = 0; i < n; i++)
        for (int e = 0; e < E; e++) mean[e] += emb[(size_t)i * E + e] / n;
    char dir[1400];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    sf_st_writer_t *sw;
    if (mkdir_p(dir) != 0 || sf_st_writer_new(&sw) != 0) {
        fail(job, SF_JOB_FAILED, "cannot create %s: %s", dir, strerror(errno));
        goto done;
    }
    int64_t s2[2] = {n, E}, s1[1] = {E};
    char nb[32];
    snprintf(nb, sizeof nb, "%d", n);
    sf_st_writer_add(sw, "embeddings", SF_ST_F32, 2, s2, emb, sizeof(float) * (size_t)n * E);
    sf_st_writer_add(sw, "mean", SF_ST_F32, 1, s1, mean, sizeof(float) * E);
    sf_st_writer_meta(sw, "class", job->wnid);
    sf_st_writer_meta(sw, "source", source);
    sf_st_writer_meta(sw, "embedder", M.clip_tag);
    sf_st_writer_meta(sw, "n", nb);
    snprintf(nb, sizeof nb, "%d", requested);
    sf_st_writer_meta(sw, "requested", nb);
    int wrc = sf_st_writer_save(sw, path);
    sf_st_writer_free(&sw);
    if (wrc) { fail(job, SF_JOB_FAILED, "cannot write %s: %s", path, sf_strerror(wrc)); goto done; }
    job->out_len = (size_t)asprintf(&job->out, "{\"n\":%d,\"cached\":false,\"unreadable\":%d,\"embedder\":\"%s\"}", n,
                                    unreadable, M.clip_tag);
    job->status = SF_JOB_OK;
    rc = 0;
done:
    free(emb);
    free(mean);
    free(pix);
    free(rows);
    pthread_mutex_unlock(&M.mu);
    cJSON_Delete(p);
    return rc;
out:
    pthread_mutex_unlock(&M.mu);
    cJSON_Delete(p);
    return rc;
}

/* ---- the policy ----------------------------------------------------------------- */

/* Makes M.policy the run's policy at mj->version (from the learner's image)
 * or the file `path` (strategy sft). */
static int ensure_policy(mjob_t *mj, const char *path) {
    sf_job_t *job = mj->job;
    char key[1200], err[256];
    if (path) snprintf(key, sizeof key, "file:%s/%s", path[0] == '/' ? "" : mj->env->models_dir, path);
    else snprintf(key, sizeof key, "%s@%u", job->run, mj->version);
    swap_to(mj->env, KEEP_POLICY);
    if (M.policy && strcmp(key, M.policy_key) == 0) return 0;
    int rc;
    if (path) {
        sf_gpt2_free(&M.policy);
        rc = sf_gpt2_load(key + 5, mj->env->device, &M.policy, err, sizeof err);
        if (rc) return fail(job, SF_JOB_FATAL, "policy %s: %s", key + 5, err);
    } else if (M.policy && sf_gpt2_load_bytes(M.policy, mj->blob, mj->blob_len) == 0) {
        rc = 0;
    } else {
        sf_gpt2_free(&M.policy);
        rc = sf_gpt2_from_bytes(mj->blob, mj->blob_len, mj->env->device, &M.policy, err, sizeof err);
        if (rc) return fail(job, SF_JOB_FAILED, "policy image from the learner: %s", err);
    }
    /* Sampling only: the learner trains in fp32 and sends fp32 images. */
    if (strcmp(mj->env->dtype, "fp32") && sf_gpt2_set_dtype(M.policy, mj->env->dtype) != 0) {
        rc = fail(job, SF_JOB_FATAL, "policy in %s: %s", mj->env->dtype, sf_gpt2_errstr(M.policy));
        sf_gpt2_free(&M.policy);
        return rc;
    }
    snprintf(M.policy_key, sizeof M.policy_key, "%s", key);
    return 0;
}

/* A caption as valid UTF-8 (a copy): GPT-2's byte-level tokens can stop in
 * the middle of a character, and the manifest is JSON, so every byte that
 * does not start a complete, shortest-form sequence becomes U+FFFD.  A NUL
 * ends the text. */
static char *utf8_clean(const char *s, size_t n) {
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && u[i]) {
        unsigned c = u[i];
        int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        int ok = len > 0 && i + (size_t)len <= n;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (int k = 1; ok && k < len; k++) {
            ok = (u[i + k] & 0xc0) == 0x80;
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        if (ok && ((len == 2 && cp < 0x80) || (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
                   (len == 4 && (cp < 0x10000 || cp > 0x10ffff))))
            ok = 0;
        if (ok) {
            memcpy(o, s + i, (size_t)len);
            o += len, i += (size_t)len;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3, i++;
        }
    }
    *o = 0;
    return out;
}

/* Samples n captions for class k with M.policy: prompts, responses and
 * the decoded texts (malloc'd). */
static int sample_captions(mjob_t *mj, const sf_world_t *w, int k, int n, uint64_t seed, int32_t **prompt, int *plen,
                           sf_samples_t *out, char ***texts) {
    sf_job_t *job = mj->job;
    char buf[300];
    size_t np;
    if (sf_policy_prompt(sf_world_class(w, k)->name, buf, sizeof buf) != 0 ||
        sf_bpe_encode(M.bpe, buf, strlen(buf), prompt, &np) != 0)
        return fail(job, SF_JOB_FAILED, "cannot tokenise the prompt");
    *plen = (int)np;
    int32_t *prompts = malloc(sizeof(int32_t) * (size_t)n * np);
    int *lens = malloc(sizeof(int) * (size_t)n);
    *texts = calloc((size_t)n, sizeof **texts);
    if (!prompts || !lens || !*texts) { free(prompts); free(lens); return fail(job, SF_JOB_FAILED, "out of memory"); }
    for (int i = 0; i < n; i++) memcpy(prompts + (size_t)i * np, *prompt, sizeof(int32_t) * np), lens[i] = (int)np;
    sf_sample_opts_t o;
    sf_sample_opts_default(&o);
    o.max_new_tokens = (int)pnum(mj->p, "max_new_tokens", 32);
    o.temperature = (float)pnum(mj->p, "temperature", 1.0);
    o.seed = seed;
    int rc = sf_gpt2_sample(M.policy, prompts, lens, n, (int)np, &o, out);
    free(prompts);
    free(lens);
    if (rc) return fail(job, SF_JOB_FAILED, "sampling: %s", sf_gpt2_errstr(M.policy));
    const int eos = sf_gpt2_config(M.policy)->eos_id;
    for (int i = 0; i < n; i++) {
        int L = out->lengths[i];
        const int32_t *t = out->tokens + (size_t)i * out->max_new;
        if (L > 0 && t[L - 1] == eos) L--;
        char *s = NULL;
        size_t sl;
        if (sf_bpe_decode(M.bpe, t, (size_t)L, &s, &sl) != 0) s = strdup(""), sl = 0;
        char *a = s;
        while (*a == ' ') a++;
        (*texts)[i] = utf8_clean(a, sl - (size_t)(a - s));
        free(s);
    }
    return 0;
}

static void free_texts(char **t, int n) {
    for (int i = 0; t && i < n; i++) free(t[i]);
    free(t);
}

/* ---- rollout -------------------------------------------------------------------- */

static void mjob_free(mjob_t *mj) {
    for (int i = 0; i < mj->n_rolls; i++) {
        free(mj->rolls[i].query);
        free(mj->rolls[i].response);
        free(mj->rolls[i].logprobs);
        free(mj->rolls[i].values);
    }
    free(mj->rolls);
    free(mj->rollp);
    free(mj->blob);
    cJSON_Delete(mj->p);
    free(mj);
}

static void mjob_complete(mjob_t *mj) {
    sf_job_t *job = mj->job;
    sf_wk_t *wk = mj->wk;
    mjob_free(mj);
    sf_wk_complete(wk, job);
}

static void rollout_work(uv_work_t *wq) {
    mjob_t *mj = wq->data;
    sf_job_t *job = mj->job;
    pthread_mutex_lock(&M.mu);
    sf_world_t *w;
    int k;
    mj->failed = 1;
    if (ensure_clip(mj->env, job) || ensure_bpe(mj->env, job) || ensure_policy(mj, NULL) ||
        !(w = get_world(pstr(mj->p, "world", "builtin:imagenet-a-r-86"), job)) || (k = job_class(w, job)) < 0) {
        pthread_mutex_unlock(&M.mu);
        return;
    }
    const int E = sf_clip_config(M.clip)->embed_dim, n = (int)job->item_count;
    float *mean = malloc(sizeof(float) * E), *temb = malloc(sizeof(float) * (size_t)n * E);
    int32_t *prompt = NULL;
    int plen = 0;
    sf_samples_t s = {0};
    char **texts = NULL;
    uint64_t seed = mix(mix((uint64_t)pnum(mj->p, "seed", 1), job->id & 0xffffffffu), job->attempt);
    if (!mean || !temb) { fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    if (load_mean(mj->env, mj->p, job, mean, E) || sample_captions(mj, w, k, n, seed, &prompt, &plen, &s, &texts) ||
        embed_texts(texts, n, temb, job))
        goto out;
    mj->rolls = calloc((size_t)n, sizeof *mj->rolls);
    mj->rollp = calloc((size_t)n, sizeof *mj->rollp);
    if (!mj->rolls || !mj->rollp) { fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    for (int i = 0; i < n; i++) {
        Sf__Rollout *r = &mj->rolls[i];
        sf__rollout__init(r);
        mj->rollp[i] = r;
        mj->n_rolls++;
        float score;
        int why = 0;
        sf_reward_score(sf_world_class(w, k), texts[i], temb + (size_t)i * E, mean, (size_t)E, &score, &why);
        int L = s.lengths[i];
        r->cls = (uint32_t)k;
        r->n_query = (size_t)plen;
        r->query = malloc(sizeof(int32_t) * plen);
        memcpy(r->query, prompt, sizeof(int32_t) * plen);
        r->n_response = r->n_logprobs = r->n_values = (size_t)L;
        r->response = malloc(sizeof(int32_t) * (L ? L : 1));
        r->logprobs = malloc(sizeof(float) * (L ? L : 1));
        r->values = malloc(sizeof(float) * (L ? L : 1));
        memcpy(r->response, s.tokens + (size_t)i * s.max_new, sizeof(int32_t) * L);
        memcpy(r->logprobs, s.logprobs + (size_t)i * s.max_new, sizeof(float) * L);
        memcpy(r->values, s.values + (size_t)i * s.max_new, sizeof(float) * L);
        r->score = score;
        mj->score_sum += score;
        mj->nonsense += why != 0;
        if (i == 0) snprintf(mj->example, sizeof mj->example, "%s", texts[i]);
    }
    mj->failed = 0;
out:
    pthread_mutex_unlock(&M.mu);
    free(mean);
    free(temb);
    free(prompt);
    sf_samples_free(&s);
    free_texts(texts, n);
}

static void on_ack(void *arg, int status, uint32_t accepted, uint32_t stale, uint32_t version, const char *err) {
    mjob_t *mj = arg;
    sf_job_t *job = mj->job;
    if (status != 0 || (err && *err)) {
        fail(job, SF_JOB_FAILED, "learner: %s", err && *err ? err : sf_strerror(status));
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "n", mj->n_rolls);
        cJSON_AddNumberToObject(o, "accepted", accepted);
        cJSON_AddNumberToObject(o, "stale", stale);
        cJSON_AddNumberToObject(o, "policy_version", mj->version);
        cJSON_AddNumberToObject(o, "learner_version", version);
        cJSON_AddNumberToObject(o, "mean_score", mj->n_rolls ? mj->score_sum / mj->n_rolls : 0);
        cJSON_AddNumberToObject(o, "nonsense", mj->nonsense);
        cJSON_AddStringToObject(o, "example", mj->example);
        job->out = cJSON_PrintUnformatted(o);
        job->out_len = job->out ? strlen(job->out) : 0;
        cJSON_Delete(o);
        job->status = SF_JOB_OK;
    }
    mjob_complete(mj);
}

static void rollout_after(uv_work_t *wq, int status) {
    mjob_t *mj = wq->data;
    if (status == UV_ECANCELED) { fail(mj->job, SF_JOB_CANCELLED, "cancelled"); mjob_complete(mj); return; }
    if (mj->failed) { mjob_complete(mj); return; }
    Sf__RolloutBatch b = SF__ROLLOUT_BATCH__INIT;
    b.run = mj->job->run;
    b.policy_version = mj->version;
    b.n_rollouts = (size_t)mj->n_rolls;
    b.rollouts = mj->rollp;
    sf_lc_send_rollouts(M.lc, &b, on_ack, mj);
}

static void captions_work(uv_work_t *wq);
static void captions_after(uv_work_t *wq, int status);

static void on_policy(void *arg, int status, const char *err, uint32_t version, const uint8_t *blob, size_t len,
                      int done) {
    mjob_t *mj = arg;
    (void)done;
    if (status != 0) {
        fail(mj->job, SF_JOB_FAILED, "learner: %s", err && *err ? err : sf_strerror(status));
        mjob_complete(mj);
        return;
    }
    mj->version = version;
    mj->blob = malloc(len ? len : 1);
    if (!mj->blob) { fail(mj->job, SF_JOB_FAILED, "out of memory"); mjob_complete(mj); return; }
    memcpy(mj->blob, blob, len);
    mj->blob_len = len;
    mj->work.data = mj;
    if (strcmp(mj->job->kind, "rollout") == 0) uv_queue_work(sf_wk_loop(mj->wk), &mj->work, rollout_work, rollout_after);
    else uv_queue_work(sf_wk_loop(mj->wk), &mj->work, captions_work, captions_after);
}

/* Starts a job that needs the run's policy from the learner. */
static int start_with_policy(sf_wk_t *wk, sf_job_t *job, int need_learner) {
    mjob_t *mj = calloc(1, sizeof *mj);
    if (!mj) return fail(job, SF_JOB_FAILED, "out of memory");
    mj->job = job;
    mj->wk = wk;
    mj->env = sf_wk_env(wk);
    mj->p = cJSON_ParseWithLength(job->payload ? job->payload : "{}", job->payload_len ? job->payload_len : 2);
    if (!mj->p || !safe_name(job->run) || !safe_name(job->wnid)) {
        mjob_free(mj);
        return fail(job, SF_JOB_FATAL, "%s: bad payload, run id or class", job->kind);
    }
    if (!need_learner) {
        mj->work.data = mj;
        uv_queue_work(sf_wk_loop(wk), &mj->work, captions_work, captions_after);
        return 0;
    }
    if (!M.lc && sf_lc_init(sf_wk_loop(wk), mj->env->zctx, mj->env->learner, &M.lc) != 0) {
        mjob_free(mj);
        return fail(job, SF_JOB_FAILED, "cannot connect to the learner at %s", mj->env->learner);
    }
    sf_lc_get_policy(M.lc, job->run, job->policy_version, on_policy, mj);
    return 0;
}

static int rollout(sf_wk_t *wk, sf_job_t *job) { return start_with_policy(wk, job, 1); }

/* ---- captions ------------------------------------------------------------------- */

/* D3S's ten backgrounds (Kattakinda et al. 2022). */
static const char *const d3s_backgrounds[10] = {"grass", "road", "forest", "water", "sand",
                                                "indoors", "snow", "rain", "night", "cave"};

/* The same generation seed the generate phase uses for item `item`. */
static uint64_t gen_seed(const cJSON *p, const char *wnid, uint32_t item) {
    return mix(mix((uint64_t)pnum(p, "seed", 1), str_hash(wnid)), item) & 0xffffffffffffull;
}

/* Caption i of a baseline strategy into buf (no policy involved). */
static int baseline_caption(const cJSON *p, const sf_world_t *w, int k, const char *wnid, const char *strategy,
                            uint32_t i, char *buf, size_t n) {
    const char *name = sf_world_class(w, k)->name;
    if (!strcmp(strategy, "d3s")) {
        char gloss[400];
        sf_class_gloss(wnid, gloss, sizeof gloss);
        snprintf(buf, n, "a photo of a %s, %s, %s", name, gloss, d3s_backgrounds[i % 10]);
        return 0;
    }
    if (!strcmp(strategy, "base")) {
        snprintf(buf, n, "a photo of a %s", name);
        return 0;
    }
    /* low-density: attributes from the class prior raised to -1 (what the
     * class rarely shows), all named; a draw the generator would fail on is
     * rejected and drawn again (up to 32 times). */
    const int ipc = (int)pnum(p, "images_per_caption", 1);
    for (int j = 0; j < 32; j++) {
        sf_world_attrs_t a;
        uint64_t sd = mix(mix((uint64_t)pnum(p, "seed", 1) ^ 0x10ede5ull, str_hash(wnid)), (uint64_t)i * 64 + j);
        sf_world_tempered_sample(w, k, sd, -1.0, &a);
        unsigned mask = SF_ATTR_ALL & ~((1u << SF_ATTR_POS) | (1u << SF_ATTR_ROT));
        if (sf_world_caption(w, &a, mask, (int)(sd % (uint64_t)sf_world_n_templates()), buf, n) < 0) continue;
        sf_world_gen_t info;
        if (sf_world_generate(w, buf, gen_seed(p, wnid, i * (uint32_t)(ipc > 0 ? ipc : 1)), NULL, &info) == 0 &&
            info.outcome == SF_GEN_OK)
            return 0;
    }
    return 1; /* the last draw stands; its generation may fail */
}

static void run_dir(const sf_wk_env_t *env, const char *run, const char *sub, char *out, size_t n) {
    snprintf(out, n, "%s/runs/%s/%s", env->data_dir, run, sub);
}

static void captions_work(uv_work_t *wq) {
    mjob_t *mj = wq->data;
    sf_job_t *job = mj->job;
    const char *strategy = pstr(mj->p, "strategy", "ppo");
    const int n = (int)job->item_count;
    pthread_mutex_lock(&M.mu);
    sf_world_t *w;
    int k;
    mj->failed = 1;
    int32_t *prompt = NULL;
    int plen;
    sf_samples_t s = {0};
    char **texts = NULL;
    const int learned = !strcmp(strategy, "ppo") || !strcmp(strategy, "sft");
    const char *policy_file = strcmp(strategy, "ppo") ? pstr(mj->p, "policy", "policy-sft.safetensors") : NULL;
    uint64_t seed = mix(mix((uint64_t)pnum(mj->p, "seed", 1), str_hash(job->wnid)), 0xca971075ull + job->item_start);
    if (!(w = get_world(pstr(mj->p, "world", "builtin:imagenet-a-r-86"), job)) || (k = job_class(w, job)) < 0)
        goto out;
    int resampled = 0;
    if (learned) {
        if (ensure_ml(mj->env, job) || ensure_bpe(mj->env, job) || ensure_policy(mj, policy_file) ||
            sample_captions(mj, w, k, n, seed, &prompt, &plen, &s, &texts))
            goto out;
        /* A nonsensical caption (not a sentence, or the class not named) is
         * drawn again, up to 8 times, with the same sampler: the dataset
         * wants captions of the class, as the reward does. */
        for (int round = 1; round <= 8; round++) {
            int bad[4096], nb = 0;
            for (int i = 0; i < n && nb < 4096; i++)
                if (sf_reward_check(sf_world_class(w, k), texts[i]) != 0) bad[nb++] = i;
            if (!nb) break;
            int32_t *p2 = NULL;
            int pl2;
            sf_samples_t s2 = {0};
            char **t2 = NULL;
            if (sample_captions(mj, w, k, nb, mix(seed, (uint64_t)round), &p2, &pl2, &s2, &t2)) {
                free(p2);
                goto out;
            }
            for (int j = 0; j < nb; j++) {
                free(texts[bad[j]]);
                texts[bad[j]] = t2[j];
                t2[j] = NULL;
            }
            resampled += nb;
            free_texts(t2, nb);
            free(p2);
            sf_samples_free(&s2);
        }
    } else {
        texts = calloc((size_t)n, sizeof *texts);
        for (int i = 0; texts && i < n; i++) {
            char buf[600];
            baseline_caption(mj->p, w, k, job->wnid, strategy, job->item_start + (uint32_t)i, buf, sizeof buf);
            texts[i] = strdup(buf);
        }
        if (!texts) { fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
        policy_file = "";
    }
    char dir[1400], path[1500];
    run_dir(mj->env, job->run, "captions", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s.jsonl", dir, job->wnid);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int nonsense = 0;
    for (int i = 0; buf && i < n; i++) {
        int why = sf_reward_check(sf_world_class(w, k), texts[i]);
        nonsense += why != 0;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", job->item_start + i);
        cJSON_AddStringToObject(o, "caption", texts[i]);
        cJSON_AddStringToObject(o, "strategy", strategy);
        cJSON_AddNumberToObject(o, "policy_version", policy_file ? 0 : mj->version);
        if (learned) cJSON_AddNumberToObject(o, "seed", (double)(seed & 0xffffffffffffull));
        cJSON_AddBoolToObject(o, "nonsense", why != 0);
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        size_t l = strlen(line);
        while (len + l + 2 > cap) buf = realloc(buf, cap *= 2);
        memcpy(buf + len, line, l);
        len += l;
        buf[len++] = '\n';
        free(line);
    }
    if (!buf || mkdir_p(dir) != 0 || write_file(path, buf, len) != 0) {
        fail(job, SF_JOB_FAILED, "cannot write %s: %s", path, strerror(errno));
        free(buf);
        goto out;
    }
    free(buf);
    job->out_len = (size_t)asprintf(&job->out, "{\"captions\":%d,\"nonsense\":%d,\"resampled\":%d,\"policy_version\":%u}",
                                    n, nonsense, resampled, policy_file && *policy_file ? 0 : mj->version);
    job->status = SF_JOB_OK;
    mj->failed = 0;
out:
    pthread_mutex_unlock(&M.mu);
    free(prompt);
    sf_samples_free(&s);
    free_texts(texts, n);
}

static void captions_after(uv_work_t *wq, int status) {
    mjob_t *mj = wq->data;
    if (status == UV_ECANCELED) fail(mj->job, SF_JOB_CANCELLED, "cancelled");
    mjob_complete(mj);
}

static int captions(sf_wk_t *wk, sf_job_t *job) {
    cJSON *p = cJSON_ParseWithLength(job->payload ? job->payload : "{}", job->payload_len ? job->payload_len : 2);
    int ppo = strcmp(pstr(p, "strategy", "ppo"), "ppo") == 0;
    cJSON_Delete(p);
    return start_with_policy(wk, job, ppo);
}


/* ---- generate ------------------------------------------------------------------- */

/* The class's captions file: n lines of JSON (caller frees with cJSON_Delete
 * on each). */
static cJSON **read_captions(const sf_wk_env_t *env, sf_job_t *job, int *n) {
    char dir[1400], path[1500];
    run_dir(env, job->run, "captions", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s.jsonl", dir, job->wnid);
    char *text = sf_file_text(path, NULL);
    if (!text) {
        fail(job, SF_JOB_FAILED, "no captions for %s (the captions phase writes %s)", job->wnid, path);
        return NULL;
    }
    int cap = 64;
    cJSON **v = malloc(sizeof *v * cap);
    *n = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(line);
        if (!o) continue;
        if (*n == cap) v = realloc(v, sizeof *v * (cap *= 2));
        v[(*n)++] = o;
    }
    free(text);
    return v;
}

/* Writes image `item` of a generate job: <item>.png and its metadata
 * <item>.json (the filter's input), each by rename. */
static int write_generated(sf_job_t *job, const char *dir, uint32_t item, const uint8_t *rgb, int S, cJSON *meta) {
    char path[1600];
    uint8_t *png;
    size_t plen;
    if (sf_png_encode(rgb, S, S, 3, &png, &plen) != 0) return fail(job, SF_JOB_FAILED, "PNG encoding failed");
    snprintf(path, sizeof path, "%s/%u.png", dir, item);
    int wrc = write_file(path, png, plen);
    free(png);
    char *js = cJSON_PrintUnformatted(meta);
    if (wrc == 0 && js) {
        snprintf(path, sizeof path, "%s/%u.json", dir, item);
        wrc = write_file(path, js, strlen(js));
    }
    free(js);
    return wrc || !js ? fail(job, SF_JOB_FAILED, "cannot write %s: %s", path, strerror(errno)) : 0;
}

/* The metadata of generated image `item` (what the filter and the manifest
 * carry), whichever generator made it; the generator adds its own fields. */
static cJSON *gen_meta(const sf_job_t *job, uint32_t item, const char *caption, int ci, const cJSON *cap,
                       uint64_t seed, const char *generator) {
    cJSON *o = cJSON_CreateObject();
    char id[96];
    snprintf(id, sizeof id, "%s-%u", job->wnid, item);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "class", job->wnid);
    cJSON_AddStringToObject(o, "caption", caption);
    cJSON_AddNumberToObject(o, "caption_index", ci);
    cJSON_AddNumberToObject(o, "caption_seed", pnum(cap, "seed", 0));
    cJSON_AddNumberToObject(o, "policy_version", pnum(cap, "policy_version", 0));
    cJSON_AddStringToObject(o, "strategy", pstr(cap, "strategy", ""));
    cJSON_AddNumberToObject(o, "seed", (double)seed);
    cJSON_AddStringToObject(o, "generator", generator);
    return o;
}

static void diffusion_progress(int step, int steps, void *user) {
    sf_job_t *job = user;
    sf_debug("generate %s: DDIM step %d/%d", job->wnid, step, steps);
}

/* generate with the worker's TorchScript diffusion pipeline: the job's
 * captions in batches, each image with its own seed (so a retried or
 * re-sharded job draws the same images). */
static int generate_diffusion(const sf_wk_env_t *env, sf_job_t *job, const cJSON *p) {
    int rc = -1, ncap = 0, made = 0;
    cJSON **caps = NULL;
    uint8_t *rgb = NULL;
    const char **prompts = NULL;
    uint64_t *seeds = NULL;
    if (!env->diffusion_dir || !*env->diffusion_dir)
        return fail(job, SF_JOB_FATAL, "generate: generator 'diffusion' needs the worker's diffusion_dir");
    if (!(caps = read_captions(env, job, &ncap))) return -1;
    pthread_mutex_lock(&M.mu);
    swap_to(env, KEEP_DIFFUSION);
    char err[300];
    if (!M.diff) {
        if (ensure_ml(env, job)) goto out;
        if (sf_diffusion_load(env->diffusion_dir, env->device, env->dtype, &M.diff, err, sizeof err) != 0) {
            fail(job, SF_JOB_FATAL, "diffusion pipeline: %s", err);
            goto out;
        }
        sf_info("loaded diffusion pipeline %s (%s on %s)", env->diffusion_dir, env->dtype, env->device);
    }
    const int ipc = (int)pnum(p, "images_per_caption", 1), S = sf_diffusion_image_size(M.diff);
    sf_diffusion_opts_t o;
    sf_diffusion_opts_default(&o);
    o.steps = (int)pnum(p, "steps", 0);
    o.guidance_scale = (float)pnum(p, "guidance_scale", 0);
    o.eta = (float)pnum(p, "eta", 0);
    o.hook_scale = (float)pnum(p, "hook_scale", 0);
    sf_diffusion_opts_resolve(M.diff, &o, &o);  /* the values used, for the metadata */
    if (o.hook_scale != 0 && !sf_diffusion_has_hook(M.diff)) {
        fail(job, SF_JOB_FATAL, "generate: hook_scale %.3g needs a guidance module in %s", o.hook_scale, env->diffusion_dir);
        goto out;
    }
    const int n = (int)job->item_count;
    char dir[1400];
    run_dir(env, job->run, "images/", dir, sizeof dir);
    strncat(dir, job->wnid, sizeof dir - strlen(dir) - 1);
    rgb = malloc((size_t)(n ? n : 1) * S * S * 3);
    prompts = calloc((size_t)(n ? n : 1), sizeof *prompts);
    seeds = calloc((size_t)(n ? n : 1), sizeof *seeds);
    if (!rgb || !prompts || !seeds || mkdir_p(dir) != 0) { fail(job, SF_JOB_FAILED, "cannot create %s: %s", dir, strerror(errno)); goto out; }
    for (int j = 0; j < n; j++) {
        uint32_t i = job->item_start + (uint32_t)j;
        int ci = (int)(i / (uint32_t)(ipc > 0 ? ipc : 1));
        if (ci >= ncap) { fail(job, SF_JOB_FAILED, "item %u needs caption %d; the class has %d", i, ci, ncap); goto out; }
        prompts[j] = pstr(caps[ci], "caption", "");
        seeds[j] = gen_seed(p, job->wnid, i);
    }
    if (n && sf_diffusion_generate(M.diff, prompts, n, seeds, &o, rgb, diffusion_progress, job) != 0) {
        fail(job, SF_JOB_FAILED, "diffusion: %s", sf_diffusion_errstr(M.diff));
        goto out;
    }
    for (int j = 0; j < n; j++) {
        uint32_t i = job->item_start + (uint32_t)j;
        int ci = (int)(i / (uint32_t)(ipc > 0 ? ipc : 1));
        cJSON *o2 = gen_meta(job, i, prompts[j], ci, caps[ci], seeds[j], "diffusion");
        cJSON_AddNumberToObject(o2, "steps", o.steps);
        cJSON_AddNumberToObject(o2, "guidance_scale", o.guidance_scale);
        cJSON_AddNumberToObject(o2, "eta", o.eta);
        if (o.hook_scale != 0) cJSON_AddNumberToObject(o2, "hook_scale", o.hook_scale);
        int wrc = write_generated(job, dir, i, rgb + (size_t)j * S * S * 3, S, o2);
        cJSON_Delete(o2);
        if (wrc) goto out;
        made++;
    }
    job->out_len = (size_t)asprintf(&job->out, "{\"generated\":%d,\"generator_failures\":0}", made);
    job->status = SF_JOB_OK;
    rc = 0;
out:
    pthread_mutex_unlock(&M.mu);
    for (int i = 0; i < ncap; i++) cJSON_Delete(caps[i]);
    free(caps);
    free(rgb);
    free(prompts);
    free(seeds);
    return rc;
}

static int generate(sf_wk_t *wk, sf_job_t *job) {
    const sf_wk_env_t *env = sf_wk_env(wk);
    cJSON *p = cJSON_ParseWithLength(job->payload ? job->payload : "{}", job->payload_len ? job->payload_len : 2);
    int rc = -1, ncap = 0, made = 0, failed_gen = 0;
    cJSON **caps = NULL;
    uint8_t *rgb = NULL;
    if (!p || !safe_name(job->run) || !safe_name(job->wnid)) { fail(job, SF_JOB_FATAL, "generate: bad payload, run id or class"); goto out; }
    if (!strcmp(pstr(p, "generator", "world"), "diffusion")) {
        rc = generate_diffusion(env, job, p);
        goto out;
    }
    if (strcmp(pstr(p, "generator", "world"), "world") != 0) {
        fail(job, SF_JOB_FATAL, "generate: generator '%s' is not in this worker", pstr(p, "generator", ""));
        goto out;
    }
    pthread_mutex_lock(&M.mu);
    sf_world_t *w = get_world(pstr(p, "world", "builtin:imagenet-a-r-86"), job);
    pthread_mutex_unlock(&M.mu);
    int k = w ? job_class(w, job) : -1;
    if (k < 0 || !(caps = read_captions(env, job, &ncap))) goto out;
    const int ipc = (int)pnum(p, "images_per_caption", 1), S = sf_world_size(w);
    const uint64_t seed = (uint64_t)pnum(p, "seed", 1);
    char dir[1400];
    run_dir(env, job->run, "images/", dir, sizeof dir);
    strncat(dir, job->wnid, sizeof dir - strlen(dir) - 1);
    rgb = malloc((size_t)S * S * 3);
    if (!rgb || mkdir_p(dir) != 0) { fail(job, SF_JOB_FAILED, "cannot create %s: %s", dir, strerror(errno)); goto out; }
    for (uint32_t i = job->item_start; i < job->item_start + job->item_count; i++) {
        int ci = (int)(i / (uint32_t)(ipc > 0 ? ipc : 1));
        if (ci >= ncap) { fail(job, SF_JOB_FAILED, "item %u needs caption %d; the class has %d", i, ci, ncap); goto out; }
        const char *cap = pstr(caps[ci], "caption", "");
        uint64_t gseed = gen_seed(p, job->wnid, i);
        (void)seed;
        sf_world_gen_t info = {.outcome = SF_GEN_OK};
        char basecap[400];
        if (!strcmp(pstr(p, "strategy", ""), "base")) {
            /* Base images the reference statistics never used. */
            sf_world_attrs_t a;
            if (sf_world_base_sample(w, k, (1u << 24) + i, rgb, &a) != 0) { fail(job, SF_JOB_FAILED, "world: base image"); goto out; }
            sf_world_caption(w, &a, (1u << SF_ATTR_SCENE) | (1u << SF_ATTR_COLOR), 0, basecap, sizeof basecap);
            cap = basecap;
        } else if (sf_world_generate(w, cap, gseed, rgb, &info) != 0) {
            fail(job, SF_JOB_FAILED, "world generator failed");
            goto out;
        }
        failed_gen += info.outcome != SF_GEN_OK;
        cJSON *o = gen_meta(job, i, cap, ci, caps[ci], gseed, "world");
        cJSON_AddStringToObject(o, "generator_outcome", sf_world_outcome_name(info.outcome));
        int wrc = write_generated(job, dir, i, rgb, S, o);
        cJSON_Delete(o);
        if (wrc) goto out;
        made++;
    }
    job->out_len = (size_t)asprintf(&job->out, "{\"generated\":%d,\"generator_failures\":%d}", made, failed_gen);
    job->status = SF_JOB_OK;
    rc = 0;
out:
    for (int i = 0; caps && i < ncap; i++) cJSON_Delete(caps[i]);
    free(caps);
    free(rgb);
    cJSON_Delete(p);
    return rc;
}

/* ---- filter --------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Writes datasets/<run>/manifest.jsonl from the per-shard files (in name
 * order), under a lock so that two writers never interleave. */
static int rebuild_manifest(const sf_wk_env_t *env, const char *run, const char *out_dir) {
    char mdir[1400], lock[1500], path[1500];
    run_dir(env, run, "manifest", mdir, sizeof mdir);
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
    char *all = malloc(tc);
    for (int i = 0; rc == 0 && i < nn; i++) {
        snprintf(path, sizeof path, "%s/%s", mdir, names[i]);
        size_t l;
        char *t = sf_file_text(path, &l);
        if (!t) continue;
        while (tl + l + 1 > tc) all = realloc(all, tc *= 2);
        memcpy(all + tl, t, l);
        tl += l;
        free(t);
    }
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names);
    snprintf(path, sizeof path, "%s/manifest.jsonl", out_dir);
    if (rc == 0) rc = write_file(path, all, tl);
    free(all);
    flock(fd, LOCK_UN);
    close(fd);
    return rc;
}

static int filter(sf_wk_t *wk, sf_job_t *job) {
    const sf_wk_env_t *env = sf_wk_env(wk);
    cJSON *p = cJSON_ParseWithLength(job->payload ? job->payload : "{}", job->payload_len ? job->payload_len : 2);
    const int n = (int)job->item_count;
    int rc = -1, kept = 0, dropped = 0, k;
    char **caps = calloc((size_t)n, sizeof *caps);
    cJSON **meta = calloc((size_t)n, sizeof *meta);
    uint8_t **imgs = calloc((size_t)n, sizeof *imgs);
    float *emb = NULL, *mean = NULL, *ctext = NULL;
    char *manifest = NULL;
    size_t mlen = 0, mcap = 0;
    sf_world_t *w;
    if (!p || !caps || !meta || !imgs || !safe_name(job->run) || !safe_name(job->wnid)) {
        fail(job, SF_JOB_FATAL, "filter: bad payload, run id or class");
        goto free_all;
    }
    pthread_mutex_lock(&M.mu);
    if (ensure_clip(env, job) || !(w = get_world(pstr(p, "world", "builtin:imagenet-a-r-86"), job)) ||
        (k = job_class(w, job)) < 0)
        goto out;
    const int E = sf_clip_config(M.clip)->embed_dim;
    const float thr = (float)pnum(p, "threshold", 0.2);
    emb = malloc(sizeof(float) * (size_t)(n ? n : 1) * E);
    mean = malloc(sizeof(float) * E);
    ctext = malloc(sizeof(float) * E);
    if (!emb || !mean || !ctext) { fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    if (load_mean(env, p, job, mean, E)) goto out;
    char text[300], *tp = text;
    snprintf(text, sizeof text, "a photo of a %s", sf_world_class(w, k)->name);
    if (embed_texts(&tp, 1, ctext, job)) goto out;
    char idir[1400], path[1600], odir[1400];
    run_dir(env, job->run, "images/", idir, sizeof idir);
    strncat(idir, job->wnid, sizeof idir - strlen(idir) - 1);
    int S = 0;
    for (int i = 0; i < n; i++) {
        uint32_t item = job->item_start + (uint32_t)i;
        snprintf(path, sizeof path, "%s/%u.json", idir, item);
        char *js = sf_file_text(path, NULL), err[200];
        meta[i] = js ? cJSON_Parse(js) : NULL;
        free(js);
        if (!meta[i]) { fail(job, SF_JOB_FAILED, "no metadata %s (the generate phase writes it)", path); goto out; }
        snprintf(path, sizeof path, "%s/%u.png", idir, item);
        int iw, ih;
        if (sf_png_read(path, &imgs[i], &iw, &ih, err, sizeof err) != 0 || iw != ih || (S && iw != S)) {
            fail(job, SF_JOB_FAILED, "image %s: %s", path, imgs[i] ? "not square or of another size" : err);
            goto out;
        }
        S = iw;
    }
    if (n && embed_rgb((const uint8_t *const *)imgs, S, n, emb, job)) goto out;
    /* Table 2: the world classifiers' labels (their labels are the 86-class
     * world's class indices). */
    int *pred[2] = {NULL, NULL};
    int have_pred = 0;
    if (n && !strcmp(pstr(p, "world", ""), "builtin:imagenet-a-r-86") && !strcmp(pstr(p, "generator", "world"), "world") &&
        ensure_classifiers(env)) {
        pred[0] = malloc(sizeof(int) * (size_t)n), pred[1] = malloc(sizeof(int) * (size_t)n);
        have_pred = pred[0] && pred[1] && classify((const uint8_t *const *)imgs, S, n, pred) == 0;
    }
    snprintf(odir, sizeof odir, "%s/datasets/%s/%s", env->data_dir, job->run, job->wnid);
    char mdir[1400];
    run_dir(env, job->run, "manifest", mdir, sizeof mdir);
    if (mkdir_p(odir) != 0 || mkdir_p(mdir) != 0) { fail(job, SF_JOB_FAILED, "cannot create %s: %s", odir, strerror(errno)); goto out; }
    for (int i = 0; i < n; i++) {
        float st = dotf(emb + (size_t)i * E, ctext, E), sm = cosf_(emb + (size_t)i * E, mean, E);
        int keep = st >= thr;
        const char *id = pstr(meta[i], "id", "");
        char file[200];
        snprintf(file, sizeof file, "%s/%s.png", job->wnid, id);
        if (keep) {
            uint32_t item = job->item_start + (uint32_t)i;
            char src[1600], dst[1700];
            snprintf(src, sizeof src, "%s/%u.png", idir, item);
            snprintf(dst, sizeof dst, "%s/%s.png", odir, id);
            size_t l;
            char *b = sf_file_text(src, &l);
            if (!b || write_file(dst, b, l) != 0) { free(b); fail(job, SF_JOB_FAILED, "cannot write %s", dst); goto out; }
            free(b);
            kept++;
        } else {
            dropped++;
        }
        cJSON *o = cJSON_Duplicate(meta[i], 1);
        cJSON_AddStringToObject(o, "name", sf_world_class(w, k)->name);
        cJSON_AddStringToObject(o, "embedder", M.clip_tag);
        cJSON_AddNumberToObject(o, "clip_class_text", st);
        cJSON_AddNumberToObject(o, "clip_class_mean", sm);
        if (have_pred) {
            cJSON_AddBoolToObject(o, "convnext_correct", pred[0][i] == k);
            cJSON_AddBoolToObject(o, "vit_correct", pred[1][i] == k);
        }
        cJSON_AddBoolToObject(o, "kept", keep);
        if (keep) cJSON_AddStringToObject(o, "file", file);
        else {
            char why[96];
            snprintf(why, sizeof why, "similarity to the class text %.3f is below %.3f", st, thr);
            cJSON_AddStringToObject(o, "why", why);
        }
        char *line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        size_t l = strlen(line);
        while (mlen + l + 2 > mcap) manifest = realloc(manifest, mcap = mcap ? mcap * 2 : 8192);
        memcpy(manifest + mlen, line, l);
        mlen += l;
        manifest[mlen++] = '\n';
        free(line);
    }
    free(pred[0]);
    free(pred[1]);
    /* The shard's CLIP embeddings, for the evaluation (docs/evaluation.md). */
    char edir[1400];
    run_dir(env, job->run, "embeddings", edir, sizeof edir);
    snprintf(path, sizeof path, "%s/%s-%08u.safetensors", edir, job->wnid, job->item_start);
    sf_st_writer_t *sw = NULL;
    if (n && (mkdir_p(edir) != 0 || sf_st_writer_new(&sw) != 0)) { fail(job, SF_JOB_FAILED, "cannot create %s", edir); goto out; }
    if (sw) {
        int64_t shp[2] = {n, E};
        sf_st_writer_add(sw, "embeddings", SF_ST_F32, 2, shp, emb, sizeof(float) * (size_t)n * E);
        sf_st_writer_meta(sw, "class", job->wnid);
        sf_st_writer_meta(sw, "embedder", M.clip_tag);
        int wrc = sf_st_writer_save(sw, path);
        sf_st_writer_free(&sw);
        if (wrc) { fail(job, SF_JOB_FAILED, "cannot write %s: %s", path, sf_strerror(wrc)); goto out; }
    }
    snprintf(path, sizeof path, "%s/%s-%08u.jsonl", mdir, job->wnid, job->item_start);
    *strrchr(odir, '/') = 0;
    if (write_file(path, manifest ? manifest : "", mlen) != 0) {
        fail(job, SF_JOB_FAILED, "cannot write the manifest %s: %s", path, strerror(errno));
        goto out;
    }
    job->out_len = (size_t)asprintf(&job->out, "{\"kept\":%d,\"dropped\":%d,\"threshold\":%g}", kept, dropped, thr);
    job->status = SF_JOB_OK;
    rc = 0;
out:
    pthread_mutex_unlock(&M.mu);
free_all:
    for (int i = 0; i < n; i++) {
        if (meta) cJSON_Delete(meta[i]);
        if (imgs) free(imgs[i]);
    }
    free(caps);
    free(meta);
    free(imgs);
    free(emb);
    free(mean);
    free(ctext);
    free(manifest);
    cJSON_Delete(p);
    return rc;
}

/* ---- finetune (Fig. 6) ---------------------------------------------------------- */

/* Test images per class of the run's classes in the Fig. 6 figures: ten would
 * leave a 10-class gain within +-5 points of noise, so they get many more
 * than the 10 per class of the whole-set figure. */
#define FT_TEST_PER_RUN_CLASS 100

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

/* Fine-tunes a fresh copy of the world classifier `arch` for `steps` steps of
 * 64 images of classes drawn uniformly: base images, and for the run's
 * classes (when gen) their kept images half of the time; then measures it. */
static int finetune_one(const sf_wk_env_t *env, int arch, const sf_world_t *w, uint8_t *const *gen, const int *gen_lab,
                        int ngen, int steps, float lr, uint64_t seed, const char *mask, double acc[6], uint8_t *hits[3],
                        sf_job_t *job) {
    const char *names[2] = {"convnext", "vit"};
    char path[1200], err[256];
    snprintf(path, sizeof path, "%s/%s-world.safetensors", env->models_dir, names[arch]);
    sf_classifier_t *m;
    if (sf_classifier_load(path, NULL, env->device, &m, err, sizeof err) != 0)
        return fail(job, SF_JOB_FATAL, "finetune: %s", err);
    const sf_classifier_config_t *c = sf_classifier_config(m);
    const int K = sf_world_n_classes(w), S = sf_world_size(w), I = c->image_size, B = 64;
    float *px = malloc(sizeof(float) * (size_t)B * 3 * I * I);
    uint8_t *rgb = malloc((size_t)S * S * 3);
    int labels[64], rc = px && rgb ? 0 : SF_ENOMEM;
    uint64_t r = seed;
    for (int step = 0; rc == 0 && step < steps; step++) {
        for (int j = 0; rc == 0 && j < B; j++) {
            r = mix(r, (uint64_t)step * B + j);
            /* Classes stay balanced (a class uniformly at random); a class
             * with generated images shows one of them half of the time. */
            const uint8_t *img = rgb;
            labels[j] = (int)(r % (uint64_t)K);
            int cnt = 0;
            for (int g = 0; g < ngen; g++) cnt += gen_lab[g] == labels[j];
            if (cnt && (r >> 40) & 1) {
                int pick = (int)((r >> 41) % (uint64_t)cnt);
                for (int g = 0; g < ngen; g++)
                    if (gen_lab[g] == labels[j] && pick-- == 0) { img = gen[g]; break; }
            } else rc = sf_world_base_sample(w, labels[j], (1ull << 30) + (r >> 20) % 100000, rgb, NULL);
            if (rc == 0) rc = sf_world_to_input(img, S, I, c->mean, c->std, (int)(r >> 63), px + (size_t)j * 3 * I * I);
        }
        if (rc == 0) rc = sf_classifier_train_step(m, px, labels, B, lr, NULL, NULL);
    }
    for (int set = 0; rc == 0 && set < SF_WORLD_N_SETS; set++)
        rc = test_acc(m, w, set, mask, &acc[2 * set], &acc[2 * set + 1], hits[set]);
    free(px);
    free(rgb);
    if (rc) fail(job, SF_JOB_FAILED, "finetune: %s", sf_classifier_errstr(m));
    sf_classifier_free(&m);
    return rc ? -1 : 0;
}

static int finetune(sf_wk_t *wk, sf_job_t *job) {
    const sf_wk_env_t *env = sf_wk_env(wk);
    cJSON *p = cJSON_ParseWithLength(job->payload ? job->payload : "{}", job->payload_len ? job->payload_len : 2);
    int rc = -1, ngen = 0, cap = 0;
    uint8_t **gen = NULL;
    int *gen_lab = NULL;
    char *text = NULL;
    if (!p || !safe_name(job->run)) { fail(job, SF_JOB_FATAL, "finetune: bad payload or run id"); goto free_all; }
    pthread_mutex_lock(&M.mu);
    sf_world_t *w = get_world(pstr(p, "world", "builtin:imagenet-a-r-86"), job);
    if (!w || ensure_ml(env, job)) goto out;
    const int K = sf_world_n_classes(w), per = (int)pnum(p, "images_per_class", 8), steps = (int)pnum(p, "steps", 60);
    const float lr = (float)pnum(p, "learning_rate", 2e-4);
    char *mask = calloc((size_t)K, 1), *count = calloc((size_t)K, 1);
    char path[1400];
    snprintf(path, sizeof path, "%s/datasets/%s/manifest.jsonl", env->data_dir, job->run);
    text = sf_file_text(path, NULL);
    if (!text || !mask || !count) { fail(job, SF_JOB_FAILED, "finetune: cannot read %s", path); free(mask); free(count); goto out; }
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(l);
        const cJSON *file = cJSON_GetObjectItem(o, "file");
        int k = o ? sf_world_class_find(w, pstr(o, "class", "")) : -1;
        if (k >= 0 && cJSON_IsString(file) && count[k] < per) {
            char ip[1700], er[200];
            int iw, ih;
            uint8_t *img = NULL;
            snprintf(ip, sizeof ip, "%s/datasets/%s/%s", env->data_dir, job->run, file->valuestring);
            if (sf_png_read(ip, &img, &iw, &ih, er, sizeof er) == 0 && iw == sf_world_size(w) && ih == iw) {
                if (ngen == cap) gen = realloc(gen, sizeof *gen * (size_t)(cap = cap ? cap * 2 : 64)),
                                 gen_lab = realloc(gen_lab, sizeof *gen_lab * (size_t)cap);
                gen[ngen] = img, gen_lab[ngen++] = k;
                count[k]++, mask[k] = 1;
            } else {
                free(img);
            }
        }
        cJSON_Delete(o);
    }
    free(count);
    if (!ngen) { fail(job, SF_JOB_FAILED, "finetune: no kept images of the world's classes in %s", path); free(mask); goto out; }
    /* Fine-tuning noise: each of `seeds` seeds fine-tunes a control and a
     * model with generated images from the same start and batches. */
    const int seeds = (int)fmin(16, fmax(1, pnum(p, "seeds", 3)));
    int nsel = 0;
    for (int k = 0; k < K; k++) nsel += mask[k] != 0;
    const int ns = nsel * FT_TEST_PER_RUN_CLASS;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddNumberToObject(res, "images_per_class", per);
    cJSON_AddNumberToObject(res, "generated_images", ngen);
    cJSON_AddNumberToObject(res, "steps", steps);
    cJSON_AddNumberToObject(res, "batch", 64);
    cJSON_AddNumberToObject(res, "learning_rate", lr);
    cJSON_AddNumberToObject(res, "seeds", seeds);
    cJSON_AddNumberToObject(res, "test_images_per_class", 10);
    cJSON_AddNumberToObject(res, "test_images_per_run_class", FT_TEST_PER_RUN_CLASS);
    const char *names[2] = {"convnext", "vit"}, *sets[3] = {"base", "world_R", "world_A"};
    /* d[set][i]: test image i's hits with generated images minus the
     * control's, summed over seeds. */
    int *d[3] = {calloc((size_t)ns + 1, sizeof(int)), calloc((size_t)ns + 1, sizeof(int)), calloc((size_t)ns + 1, sizeof(int))};
    uint8_t *hc[3], *hf[3];
    for (int t = 0; t < 3; t++) hc[t] = malloc((size_t)ns + 1), hf[t] = malloc((size_t)ns + 1);
    rc = 0;
    for (int t = 0; t < 3; t++)
        if (!d[t] || !hc[t] || !hf[t]) rc = fail(job, SF_JOB_FAILED, "finetune: out of memory");
    for (int a = 0; rc == 0 && a < 2; a++) {
        /* Control: as many steps on base images alone, so that a gain is the
         * generated data's and not the extra training's. */
        double ctl[6] = {0}, ft[6] = {0};
        for (int t = 0; t < 3; t++) memset(d[t], 0, sizeof(int) * ((size_t)ns + 1));
        for (int sd_i = 0; rc == 0 && sd_i < seeds; sd_i++) {
            double c1[6], f1[6];
            uint64_t sd = ((uint64_t)pnum(p, "seed", 1) * 1000 + (uint64_t)a) * 131 + (uint64_t)sd_i;
            rc = finetune_one(env, a, w, gen, gen_lab, 0, steps, lr, sd, mask, c1, hc, job);
            if (rc == 0) rc = finetune_one(env, a, w, gen, gen_lab, ngen, steps, lr, sd, mask, f1, hf, job);
            for (int i = 0; rc == 0 && i < 6; i++) ctl[i] += c1[i] / seeds, ft[i] += f1[i] / seeds;
            for (int t = 0; rc == 0 && t < 3; t++)
                for (int i = 0; i < ns; i++) d[t][i] += (int)hf[t][i] - (int)hc[t][i];
        }
        if (rc) break;
        double orig[6];
        ensure_classifiers(env);
        if (M.cls[a])
            for (int set = 0; set < SF_WORLD_N_SETS; set++)
                test_acc(M.cls[a], w, set, mask, &orig[2 * set], &orig[2 * set + 1], NULL);
        cJSON *o = cJSON_AddObjectToObject(res, names[a]);
        for (int set = 0; set < 3; set++) {
            /* The standard error of the run classes' gain: over test images
             * of the per-image gain (averaged over seeds), in points. */
            double mean = 0, var = 0;
            for (int i = 0; i < ns; i++) mean += (double)d[set][i] / seeds;
            mean /= ns ? ns : 1;
            for (int i = 0; i < ns; i++) var += pow((double)d[set][i] / seeds - mean, 2);
            double se = ns > 1 ? 100.0 * sqrt(var / (ns - 1) / ns) : 0;
            cJSON *so = cJSON_AddObjectToObject(o, sets[set]);
            if (M.cls[a]) {
                cJSON_AddNumberToObject(so, "original", orig[2 * set]);
                cJSON_AddNumberToObject(so, "original_run_classes", orig[2 * set + 1]);
            }
            cJSON_AddNumberToObject(so, "base_only", ctl[2 * set]);
            cJSON_AddNumberToObject(so, "with_generated", ft[2 * set]);
            cJSON_AddNumberToObject(so, "base_only_run_classes", ctl[2 * set + 1]);
            cJSON_AddNumberToObject(so, "with_generated_run_classes", ft[2 * set + 1]);
            cJSON_AddNumberToObject(so, "gain_run_classes_se", se);
        }
    }
    for (int t = 0; t < 3; t++) free(d[t]), free(hc[t]), free(hf[t]);
    free(mask);
    if (rc == 0) {
        char *js = cJSON_PrintUnformatted(res);
        snprintf(path, sizeof path, "%s/datasets/%s/finetune.json", env->data_dir, job->run);
        if (!js || write_file(path, js, strlen(js)) != 0) rc = fail(job, SF_JOB_FAILED, "cannot write %s", path);
        else job->out = js, job->out_len = strlen(js), js = NULL, job->status = SF_JOB_OK;
        free(js);
    }
    cJSON_Delete(res);
out:
    pthread_mutex_unlock(&M.mu);
free_all:
    for (int i = 0; i < ngen; i++) free(gen[i]);
    free(gen);
    free(gen_lab);
    free(text);
    cJSON_Delete(p);
    return rc;
}

/* ---- manifest: one job after the filter phase ----------------------------------- */

static int manifest_join(sf_wk_t *wk, sf_job_t *job) {
    const sf_wk_env_t *env = sf_wk_env(wk);
    if (!safe_name(job->run)) return fail(job, SF_JOB_FATAL, "manifest: bad run id");
    char out[1400];
    snprintf(out, sizeof out, "%s/datasets/%s", env->data_dir, job->run);
    if (mkdir_p(out) != 0 || rebuild_manifest(env, job->run, out) != 0)
        return fail(job, SF_JOB_FAILED, "cannot write %s/manifest.jsonl: %s", out, strerror(errno));
    job->status = SF_JOB_OK;
    return 0;
}

static void lc_closed(void) {}

void sf_models_close(sf_wk_t *wk) {
    (void)wk;
    if (M.lc) sf_lc_close(M.lc, lc_closed);
    M.lc = NULL;
}

const sf_handler_t sf_model_handlers[] = {
    {"embed", SF_RUN_THREAD, embed, "CLIP embeddings of a class's reference images -> its statistics"},
    {"rollout", SF_RUN_ASYNC, rollout, "PPO rollouts with the learner's policy, scored, sent to the learner"},
    {"captions", SF_RUN_ASYNC, captions, "a class's captions from the final (or SFT) policy"},
    {"generate", SF_RUN_THREAD, generate, "captions -> images (the world's generator)"},
    {"filter", SF_RUN_THREAD, filter, "keeps images whose CLIP similarity to the class text is >= threshold"},
    {"manifest", SF_RUN_THREAD, manifest_join, "joins the filter's manifest shards into the dataset's manifest.jsonl"},
    {"finetune", SF_RUN_THREAD, finetune, "fine-tunes the world classifiers on base + generated images (Fig. 6)"},
    {NULL, 0, NULL, NULL},
};

#else /* no libtorch: no model kinds */

const sf_handler_t sf_model_handlers[] = {{NULL, 0, NULL, NULL}};
void sf_models_close(sf_wk_t *wk) { (void)wk; }

#endif
