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
 */
#if SF_HAVE_TORCH
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/image/png.h"
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
    int rc = -1, made = 0;
    uint8_t *rgb = malloc((size_t)(n ? n : 1) * S * S * 3);
    const char **prompts = calloc((size_t)(n ? n : 1), sizeof *prompts);
    uint64_t *seeds = calloc((size_t)(n ? n : 1), sizeof *seeds);
    int *cis = calloc((size_t)(n ? n : 1), sizeof *cis);
    if (!rgb || !prompts || !seeds || !cis || sf_mkdir_p(g->dir, 0775) != 0) {
        sf_kind_fail(job, SF_JOB_FAILED, "cannot create %s: %s", g->dir, strerror(errno));
        goto out;
    }
    for (int j = 0; j < n; j++) {
        uint32_t i = job->item_start + (uint32_t)j;
        if ((cis[j] = caption_of(g, i)) < 0) goto out;
        prompts[j] = caption_text(g->caps[cis[j]]);
        seeds[j] = sf_kind_gen_seed(p, job->wnid, i);
    }
    if (n && sf_diffusion_generate(sf_mc.diff, prompts, n, seeds, &o, rgb, diffusion_progress, job) != 0) {
        sf_kind_fail(job, SF_JOB_FAILED, "diffusion: %s", sf_diffusion_errstr(sf_mc.diff));
        goto out;
    }
    for (int j = 0; j < n; j++) {
        uint32_t i = job->item_start + (uint32_t)j;
        cJSON *m = gen_meta(job, i, prompts[j], cis[j], g->caps[cis[j]], seeds[j], "diffusion");
        cJSON_AddNumberToObject(m, "steps", o.steps);
        cJSON_AddNumberToObject(m, "guidance_scale", o.guidance_scale);
        cJSON_AddNumberToObject(m, "eta", o.eta);
        if (o.hook_scale != 0) cJSON_AddNumberToObject(m, "hook_scale", o.hook_scale);
        if (write_generated(g, i, rgb + (size_t)j * S * S * 3, S, m)) goto out;
        made++;
    }
    rc = gen_result(job, made, 0);
out:
    free(rgb);
    free(prompts);
    free(seeds);
    free(cis);
    return rc;
}

/* The job's images with the world's generator, one at a time. */
static int generate_world(gen_t *g, const sf_world_t *w, int k) {
    sf_job_t *job = g->job;
    const int S = sf_world_size(w);
    int made = 0, failed_gen = 0, rc = -1;
    uint8_t *rgb = malloc((size_t)S * S * 3);
    if (!rgb || sf_mkdir_p(g->dir, 0775) != 0) {
        sf_kind_fail(job, SF_JOB_FAILED, "cannot create %s: %s", g->dir, strerror(errno));
        goto out;
    }
    for (uint32_t i = job->item_start; i < job->item_start + job->item_count; i++) {
        int ci = caption_of(g, i);
        if (ci < 0) goto out;
        const char *cap = caption_text(g->caps[ci]);
        uint64_t gseed = sf_kind_gen_seed(g->p, job->wnid, i);
        sf_world_gen_t info = {.outcome = SF_GEN_OK};
        char basecap[400];
        if (!strcmp(g->p->strategy, "base")) {
            /* Base images the reference statistics never used. */
            sf_world_attrs_t a;
            if (sf_world_base_sample(w, k, (1u << 24) + i, rgb, &a) != 0) {
                sf_kind_fail(job, SF_JOB_FAILED, "world: base image");
                goto out;
            }
            sf_world_caption(w, &a, (1u << SF_ATTR_SCENE) | (1u << SF_ATTR_COLOR), 0, basecap, sizeof basecap);
            cap = basecap;
        } else if (sf_world_generate(w, cap, gseed, rgb, &info) != 0) {
            sf_kind_fail(job, SF_JOB_FAILED, "world generator failed");
            goto out;
        }
        failed_gen += info.outcome != SF_GEN_OK;
        cJSON *m = gen_meta(job, i, cap, ci, g->caps[ci], gseed, "world");
        cJSON_AddStringToObject(m, "generator_outcome", sf_world_outcome_name(info.outcome));
        if (write_generated(g, i, rgb, S, m)) goto out;
        made++;
    }
    rc = gen_result(job, made, failed_gen);
out:
    free(rgb);
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
