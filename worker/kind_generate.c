/* kind_generate.c: generate — a class's captions -> images, each written as
 * runs/<run>/images/<wnid>/<item>.png with its metadata <item>.json (the
 * filter's input).  Item i is image i % images_per_caption of caption
 * i / images_per_caption, and has its own seed (sf_kind_gen_seed), so a
 * retried or re-sharded job draws the same images.  Generators:
 *   world      the world's text-to-image generator (strategy base: the
 *              world's base images, which the reference statistics never
 *              used);
 *   diffusion  the worker's TorchScript pipeline (diffusion_dir), the
 *              job's images in one batch.
 * Strategy low-density (Sehwag et al.'s idea with only what a deployment
 * has: the generator, CLIP and the reference statistics): every image is
 * the one of best_of_n candidates (the same plain caption, other seeds) that
 * the filter would keep and that is least likely under the class's
 * reference embeddings (lowdens_t).
 */
#if SF_HAVE_TORCH
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/image/png.h"
#include "common/method/reward.h"
#include "common/method/stats.h"
#include "common/runtime/hash.h"
#include "common/runtime/fileio.h"
#include "common/runtime/log.h"
#include "worker/kind_util.h"
#include "worker/kinds.h"
#include "worker/model_cache.h"

/* A generate job: its captions and where its images go. */
typedef struct {
    const sf_wk_env_t *env;
    sf_job_t *job;
    const sf_shift_params_t *p;
    cJSON **caps; /* the class's captions file, a line each */
    int ncap;
    char dir[1400];
} gen_t;

/* Reads the class's captions file into g->caps.  0, or -1 with the job
 * failed. */
static int read_captions(gen_t *g) {
    char dir[1400], path[1500];
    sf_kind_captions_path(g->env, g->job, dir, sizeof dir, path, sizeof path);
    char *text = sf_file_text(path, NULL);
    if (!text)
        return sf_kind_fail(g->job, SF_JOB_FAILED, "no captions for %s (the captions phase writes %s)", g->job->wnid,
                            path);
    int cap = 64;
    g->caps = malloc(sizeof *g->caps * cap);
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); g->caps && line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(line);
        if (!o) continue;
        if (g->ncap == cap) {
            cJSON **v = realloc(g->caps, sizeof *v * (cap *= 2));
            if (!v) { cJSON_Delete(o); break; }
            g->caps = v;
        }
        g->caps[g->ncap++] = o;
    }
    free(text);
    return g->caps ? 0 : sf_kind_fail(g->job, SF_JOB_FAILED, "out of memory");
}

static void gen_free(gen_t *g) {
    for (int i = 0; g->caps && i < g->ncap; i++) cJSON_Delete(g->caps[i]);
    free(g->caps);
}

/* The caption index of item i, or -1 with the job failed. */
static int caption_of(gen_t *g, uint32_t i) {
    int ci = (int)(i / (uint32_t)g->p->images_per_caption);
    if (ci >= g->ncap)
        return sf_kind_fail(g->job, SF_JOB_FAILED, "item %u needs caption %d; the class has %d", i, ci, g->ncap);
    return ci;
}

static const char *caption_text(const cJSON *cap) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(cap, "caption");
    return cJSON_IsString(it) ? it->valuestring : "";
}

/* The metadata of generated image `item` (what the filter and the manifest
 * carry), whichever generator made it; the generator adds its own fields. */
static cJSON *gen_meta(const sf_job_t *job, uint32_t item, const char *caption, int ci, const cJSON *cap,
                       uint64_t seed, const char *generator) {
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(cap, "seed");
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(cap, "policy_version");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(cap, "strategy");
    cJSON *o = cJSON_CreateObject();
    char id[96];
    snprintf(id, sizeof id, "%s-%u", job->wnid, item);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "class", job->wnid);
    cJSON_AddStringToObject(o, "caption", caption);
    cJSON_AddNumberToObject(o, "caption_index", ci);
    cJSON_AddNumberToObject(o, "caption_seed", cJSON_IsNumber(cs) ? cs->valuedouble : 0);
    cJSON_AddNumberToObject(o, "policy_version", cJSON_IsNumber(pv) ? pv->valuedouble : 0);
    cJSON_AddStringToObject(o, "strategy", cJSON_IsString(st) ? st->valuestring : "");
    cJSON_AddNumberToObject(o, "seed", (double)seed);
    cJSON_AddStringToObject(o, "generator", generator);
    return o;
}

/* Writes image `item`: <item>.png and its metadata <item>.json, each by
 * rename.  Takes ownership of meta. */
static int write_generated(gen_t *g, uint32_t item, const uint8_t *rgb, int S, cJSON *meta) {
    char path[1600];
    uint8_t *png;
    size_t plen;
    char *js = cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
    if (sf_png_encode(rgb, S, S, 3, &png, &plen) != 0) {
        free(js);
        return sf_kind_fail(g->job, SF_JOB_FAILED, "PNG encoding failed");
    }
    snprintf(path, sizeof path, "%s/%u.png", g->dir, item);
    int wrc = sf_write_file_atomic(path, png, plen);
    free(png);
    if (wrc == 0 && js) {
        snprintf(path, sizeof path, "%s/%u.json", g->dir, item);
        wrc = sf_write_file_atomic(path, js, strlen(js));
    }
    free(js);
    return wrc || !js ? sf_kind_fail(g->job, SF_JOB_FAILED, "cannot write %s: %s", path, strerror(errno)) : 0;
}

static int gen_result(sf_job_t *job, int made, int failures) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "generated", made);
    cJSON_AddNumberToObject(o, "generator_failures", failures);
    return sf_kind_result(job, o);
}

/* low-density's choice among an image's candidates: the class's reference
 * embeddings as a Gaussian with shrunk covariance (sf_gauss_fit_shrunk),
 * the filter's class text and threshold. */
typedef struct {
    int M, E;          /* candidates per image; CLIP's width */
    double *mu, *L, *x; /* the Gaussian; one embedding in doubles */
    float *ctext, thr;
} lowdens_t;

static void lowdens_free(lowdens_t *ld) {
    free(ld->mu), free(ld->L), free(ld->x), free(ld->ctext);
    memset(ld, 0, sizeof *ld);
}

/* Candidate c of an image whose own seed is `seed` (candidate 0 is the
 * image any other strategy would draw). */
static uint64_t candidate_seed(uint64_t seed, int c) {
    return c ? sf_mix2(seed, (uint64_t)c) & 0xffffffffffffull : seed;
}

/* Under the model cache's lock: CLIP, the Gaussian of class k's reference
 * embeddings and the filter's class text.  ld->M = 1 (no choice) for every
 * other strategy.  0, or -1 with the job failed. */
static int lowdens_init(gen_t *g, const sf_world_t *w, int k, lowdens_t *ld) {
    sf_job_t *job = g->job;
    memset(ld, 0, sizeof *ld);
    ld->M = 1;
    if (strcmp(g->p->strategy, "low-density")) return 0;
    if (sf_mc_ensure_clip(g->env, job)) return -1;
    const int E = ld->E = sf_clip_config(sf_mc.clip)->embed_dim;
    ld->M = (int)g->p->best_of_n;
    if ((long)ld->M * job->item_count > 4096)
        return sf_kind_fail(job, SF_JOB_FATAL, "low-density: %d candidates x %u images in one job (at most 4096: a "
                            "smaller shard_size or best_of_n)", ld->M, job->item_count);
    float *mean = malloc(sizeof(float) * E), *ref = NULL;
    int m = 0, rc = -1;
    ld->mu = malloc(sizeof(double) * E), ld->L = malloc(sizeof(double) * (size_t)E * E);
    ld->x = malloc(sizeof(double) * E), ld->ctext = malloc(sizeof(float) * E);
    double *refd = NULL;
    if (!mean || !ld->mu || !ld->L || !ld->x || !ld->ctext) { sf_kind_fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    if (sf_kind_load_stats(g->env, job, mean, E, &ref, &m)) goto out;
    if (!(refd = malloc(sizeof(double) * (size_t)m * E))) { sf_kind_fail(job, SF_JOB_FAILED, "out of memory"); goto out; }
    for (size_t i = 0; i < (size_t)m * E; i++) refd[i] = ref[i];
    if (sf_gauss_fit_shrunk(refd, m, E, ld->mu, ld->L) != 0) {
        sf_kind_fail(job, SF_JOB_FAILED, "low-density: the %d reference embeddings of %s give no density (fewer than 2, "
                     "or all the same)", m, job->wnid);
        goto out;
    }
    if (sf_kind_filter_text(w, k, ld->ctext, job)) goto out;
    ld->thr = (float)sf_kind_filter_threshold(g->p);
    rc = 0;
out:
    free(mean), free(ref), free(refd);
    return rc;
}

/* The candidate to keep among M whose CLIP embeddings are emb (M x E): the
 * least likely under the reference Gaussian among those the filter keeps,
 * else the one the filter scores highest.  *dist: its Mahalanobis distance. */
static int lowdens_choose(lowdens_t *ld, const float *emb, double *dist) {
    int best = -1, best_any = 0;
    double bd = -1, bs = -2, bd_any = 0;
    for (int c = 0; c < ld->M; c++) {
        const float *e = emb + (size_t)c * ld->E;
        float st = sf_dot_f32(e, ld->ctext, ld->E);
        for (int j = 0; j < ld->E; j++) ld->x[j] = e[j];
        double d = sf_mahalanobis(ld->L, ld->E, ld->x, ld->mu);
        if (st >= ld->thr && d > bd) best = c, bd = d;
        if (st > bs) bs = st, best_any = c, bd_any = d;
    }
    if (best < 0) best = best_any, bd = bd_any;
    *dist = bd;
    return best;
}

/* What the metadata of a chosen candidate adds. */
static void lowdens_meta(const lowdens_t *ld, cJSON *m, int c, double dist) {
    if (!ld->E) return; /* not low-density */
    cJSON_AddNumberToObject(m, "candidates", ld->M);
    cJSON_AddNumberToObject(m, "candidate", c);
    cJSON_AddNumberToObject(m, "reference_mahalanobis", dist);
}

static void diffusion_progress(int step, int steps, void *user) {
    sf_job_t *job = user;
    sf_debug("generate %s: DDIM step %d/%d", job->wnid, step, steps);
}

/* Under the model cache's lock: the job's images with the diffusion
 * pipeline, the captions in one batch, each image with its own seed. */
static int generate_diffusion(gen_t *g) {
    sf_job_t *job = g->job;
    const sf_shift_params_t *p = g->p;
    if (sf_mc_ensure_diffusion(g->env, job)) return -1;
    const int S = sf_diffusion_image_size(sf_mc.diff), n = (int)job->item_count;
    sf_diffusion_opts_t o;
    sf_diffusion_opts_default(&o);
    o.steps = (int)p->diffusion_steps;
    o.guidance_scale = (float)p->guidance_scale;
    o.eta = (float)p->eta;
    o.hook_scale = (float)p->hook_scale;
    sf_diffusion_opts_resolve(sf_mc.diff, &o, &o);  /* the values used, for the metadata */
    if (o.hook_scale != 0 && !sf_diffusion_has_hook(sf_mc.diff))
        return sf_kind_fail(job, SF_JOB_FATAL, "generate: hook_scale %.3g needs a guidance module in %s", o.hook_scale,
                            g->env->diffusion_dir);
    lowdens_t ld = {.M = 1};
    sf_world_t *w = NULL;
    int k = -1;
    if (!strcmp(p->strategy, "low-density") &&
        (!(w = sf_mc_world(p->world, job)) || (k = sf_kind_class(w, job)) < 0 || lowdens_init(g, w, k, &ld)))
        return lowdens_free(&ld), -1;
    /* Every image's candidates side by side: image j's candidate c is
     * generation j * M + c. */
    const int M = ld.M, nn = n * M;
    int rc = -1, made = 0;
    uint8_t *rgb = malloc((size_t)(nn ? nn : 1) * S * S * 3);
    const char **prompts = calloc((size_t)(nn ? nn : 1), sizeof *prompts);
    uint64_t *seeds = calloc((size_t)(nn ? nn : 1), sizeof *seeds);
    int *cis = calloc((size_t)(n ? n : 1), sizeof *cis);
    const uint8_t **imgs = ld.E ? calloc((size_t)nn, sizeof *imgs) : NULL;
    float *emb = ld.E ? malloc(sizeof(float) * (size_t)nn * ld.E) : NULL;
    if (!rgb || !prompts || !seeds || !cis || (ld.E && (!imgs || !emb)) || sf_mkdir_p(g->dir, 0775) != 0) {
        sf_kind_fail(job, SF_JOB_FAILED, "cannot create %s: %s", g->dir, strerror(errno));
        goto out;
    }
    for (int j = 0; j < n; j++) {
        uint32_t i = job->item_start + (uint32_t)j;
        if ((cis[j] = caption_of(g, i)) < 0) goto out;
        for (int c = 0; c < M; c++) {
            prompts[j * M + c] = caption_text(g->caps[cis[j]]);
            seeds[j * M + c] = candidate_seed(sf_kind_gen_seed(p, job->wnid, i), c);
        }
    }
    if (nn && sf_diffusion_generate(sf_mc.diff, prompts, nn, seeds, &o, rgb, diffusion_progress, job) != 0) {
        sf_kind_fail(job, SF_JOB_FAILED, "diffusion: %s", sf_diffusion_errstr(sf_mc.diff));
        goto out;
    }
    if (ld.E) {
        for (int t = 0; t < nn; t++) imgs[t] = rgb + (size_t)t * S * S * 3;
        if (sf_kind_embed_images(imgs, S, NULL, NULL, nn, emb, job)) goto out;
    }
    for (int j = 0; j < n; j++) {
        uint32_t i = job->item_start + (uint32_t)j;
        double dist = 0;
        int c = ld.E ? lowdens_choose(&ld, emb + (size_t)j * M * ld.E, &dist) : 0;
        cJSON *m = gen_meta(job, i, prompts[j * M], cis[j], g->caps[cis[j]], seeds[j * M + c], "diffusion");
        cJSON_AddNumberToObject(m, "steps", o.steps);
        cJSON_AddNumberToObject(m, "guidance_scale", o.guidance_scale);
        cJSON_AddNumberToObject(m, "eta", o.eta);
        if (o.hook_scale != 0) cJSON_AddNumberToObject(m, "hook_scale", o.hook_scale);
        if (o.sr_steps > 0) {   /* IF's stage II, with the pipeline's settings */
            cJSON_AddNumberToObject(m, "upscaler_steps", o.sr_steps);
            cJSON_AddNumberToObject(m, "upscaler_guidance_scale", o.sr_guidance_scale);
            cJSON_AddNumberToObject(m, "noise_level", o.noise_level);
        }
        lowdens_meta(&ld, m, c, dist);
        if (write_generated(g, i, rgb + (size_t)(j * M + c) * S * S * 3, S, m)) goto out;
        made++;
    }
    rc = gen_result(job, made, 0);
out:
    free(rgb);
    free(prompts);
    free(seeds);
    free(cis);
    free(imgs);
    free(emb);
    lowdens_free(&ld);
    return rc;
}

/* The job's images with the world's generator, one at a time. */
static int generate_world(gen_t *g, const sf_world_t *w, int k) {
    sf_job_t *job = g->job;
    const int S = sf_world_size(w);
    int made = 0, failed_gen = 0, rc = -1;
    lowdens_t ld;
    sf_mc_lock();
    int lrc = lowdens_init(g, w, k, &ld);
    sf_mc_unlock();
    if (lrc) return lowdens_free(&ld), -1;
    const int M = ld.M;
    /* The candidates of one image side by side (one for every strategy but
     * low-density). */
    uint8_t *rgb = malloc((size_t)M * S * S * 3);
    const uint8_t **imgs = calloc((size_t)M, sizeof *imgs);
    sf_world_gen_t *infos = calloc((size_t)M, sizeof *infos);
    float *emb = ld.E ? malloc(sizeof(float) * (size_t)M * ld.E) : NULL;
    if (!rgb || !imgs || !infos || (ld.E && !emb) || sf_mkdir_p(g->dir, 0775) != 0) {
        sf_kind_fail(job, SF_JOB_FAILED, "cannot create %s: %s", g->dir, strerror(errno));
        goto out;
    }
    for (int c = 0; c < M; c++) imgs[c] = rgb + (size_t)c * S * S * 3;
    for (uint32_t i = job->item_start; i < job->item_start + job->item_count; i++) {
        int ci = caption_of(g, i);
        if (ci < 0) goto out;
        const char *cap = caption_text(g->caps[ci]);
        uint64_t gseed = sf_kind_gen_seed(g->p, job->wnid, i);
        char basecap[400];
        int c = 0;
        double dist = 0;
        infos[0] = (sf_world_gen_t){.outcome = SF_GEN_OK};
        if (!strcmp(g->p->strategy, "base")) {
            /* Base images the reference statistics never used. */
            sf_world_attrs_t a;
            if (sf_world_base_sample(w, k, (1u << 24) + i, rgb, &a) != 0) {
                sf_kind_fail(job, SF_JOB_FAILED, "world: base image");
                goto out;
            }
            sf_world_caption(w, &a, (1u << SF_ATTR_SCENE) | (1u << SF_ATTR_COLOR), 0, basecap, sizeof basecap);
            cap = basecap;
        } else {
            for (int t = 0; t < M; t++)
                if (sf_world_generate(w, cap, candidate_seed(gseed, t), (uint8_t *)imgs[t], &infos[t]) != 0) {
                    sf_kind_fail(job, SF_JOB_FAILED, "world generator failed");
                    goto out;
                }
            if (ld.E) {
                sf_mc_lock();
                int erc = sf_kind_embed_images(imgs, S, NULL, NULL, M, emb, job);
                sf_mc_unlock();
                if (erc) goto out;
                c = lowdens_choose(&ld, emb, &dist);
                gseed = candidate_seed(gseed, c);
            }
        }
        failed_gen += infos[c].outcome != SF_GEN_OK;
        cJSON *m = gen_meta(job, i, cap, ci, g->caps[ci], gseed, "world");
        cJSON_AddStringToObject(m, "generator_outcome", sf_world_outcome_name(infos[c].outcome));
        /* The class drawn (null: no object): "ok" alone does not say it is
         * the target, a caption naming another class is drawn "ok" too. */
        const int drawn = strcmp(g->p->strategy, "base") ? infos[c].attrs.cls : k;
        if (drawn >= 0) cJSON_AddStringToObject(m, "drawn_class", sf_world_class(w, drawn)->wnid);
        else cJSON_AddNullToObject(m, "drawn_class");
        lowdens_meta(&ld, m, c, dist);
        if (write_generated(g, i, imgs[c], S, m)) goto out;
        made++;
    }
    rc = gen_result(job, made, failed_gen);
out:
    free(rgb);
    free(imgs);
    free(infos);
    free(emb);
    lowdens_free(&ld);
    return rc;
}

int sf_generate_job(sf_wk_t *wk, sf_job_t *job) {
    gen_t g = {.env = sf_wk_env(wk), .job = job, .p = job->params};
    const char *generator = g.p->generator;
    int rc = -1;
    if (!sf_kind_safe_name(job->run) || !sf_kind_safe_name(job->wnid))
        return sf_kind_fail(job, SF_JOB_FATAL, "generate: bad run id or class");
    sf_kind_images_dir(g.env, job, g.dir, sizeof g.dir);
    if (!strcmp(generator, "diffusion")) {
        if (!g.env->diffusion_dir || !*g.env->diffusion_dir)
            return sf_kind_fail(job, SF_JOB_FATAL, "generate: generator 'diffusion' needs the worker's diffusion_dir");
        if (read_captions(&g) == 0) {
            sf_mc_lock();
            rc = generate_diffusion(&g);
            sf_mc_unlock();
        }
    } else if (!strcmp(generator, "world")) {
        /* The world's generator is no model of the cache: the lock covers
         * the lookup of the world alone. */
        sf_mc_lock();
        sf_world_t *w = sf_mc_world(g.p->world, job);
        sf_mc_unlock();
        int k = w ? sf_kind_class(w, job) : -1;
        if (k >= 0 && read_captions(&g) == 0) rc = generate_world(&g, w, k);
    } else {
        sf_kind_fail(job, SF_JOB_FATAL, "generate: generator '%s' is not in this worker", generator);
    }
    gen_free(&g);
    return rc;
}

#endif
