/* test_ml_diffusion: the TorchScript diffusion backend — the DDIM schedule
 * and step against values worked out by hand, classifier-free guidance, the
 * sampling loop against the same loop in plain C, the toy pipelines
 * (seeds, prompts, batches, the decoder, bf16, the hook) and the errors a
 * user meets with a broken pipeline directory. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/text/clip_bpe.h"
#include "common/runtime/error.h"
#include "ml/sf_diffusion.h"
#include "ml/sf_ml.h"
#include "sf_test.h"
#include "sf_test_dirs.h"
#include "diffusion_test_util.h"

static char vocab[256], merges[256];



static const char *in(const char *dir, const char *file) {
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, file);
    return p[k];
}

/* The tests' tokenizer: every word of the prompts is one token. */
static int make_tokenizer(void) {
    static const char *const words[] = {"a", "photo", "of", "cat", "dog", "sketch", "the", "beach", "on"};
    sf_clip_bpe_t *b = NULL;
    snprintf(vocab, sizeof vocab, "%s/vocab.json", root);
    snprintf(merges, sizeof merges, "%s/merges.txt", root);
    int rc = sf_clip_bpe_from_words(words, (int)(sizeof words / sizeof *words), &b);
    if (rc == 0) rc = sf_clip_bpe_save(b, vocab, merges);
    sf_clip_bpe_free(&b);
    return rc;
}


static double mean_diff(const uint8_t *a, const uint8_t *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += abs((int)a[i] - (int)b[i]);
    return s / (double)n;
}


/* Writes a toy pipeline, saying why if it cannot. */
static int write_toy(const char *dir, int latent, int hook, uint64_t seed) {
    char err[512];
    int rc = sf_diffusion_write_toy(dir, vocab, merges, latent, hook, seed, err, sizeof err);
    if (rc) fprintf(stderr, "write_toy: %s\n", err);
    return rc;
}

/* ---- the maths ---- */

TEST(ddim_schedule_by_hand) {
    /* Linear betas 0.05, 0.10, ..., 0.50 over N = 10 (linspace(0.05, 0.5, 10)),
     * alphas 0.95, 0.90, ..., 0.50, and their running products:
     *   0.95, 0.95*0.9 = 0.855, *0.85 = 0.72675, *0.8 = 0.5814, *0.75 = 0.43605,
     *   *0.7 = 0.305235, *0.65 = 0.19840275, *0.6 = 0.11904165,
     *   *0.55 = 0.0654729075, *0.5 = 0.03273645375. */
    static const double want[10] = {0.95, 0.855, 0.72675, 0.5814, 0.43605, 0.305235, 0.19840275,
                                    0.11904165, 0.0654729075, 0.03273645375};
    sf_ddim_config_t c;
    sf_ddim_config_default(&c);
    c.beta_schedule = SF_BETA_LINEAR;
    c.beta_start = 0.05f;
    c.beta_end = 0.5f;
    c.num_train_timesteps = 10;
    float ac[10];
    int ts[10];
    CHECK_EQ_INT(sf_ddim_schedule(&c, 5, ts, ac), 0);
    for (int i = 0; i < 10; i++) CHECK_NEAR(ac[i], want[i], 1e-6);
    /* "leading" spacing, 5 steps: ratio 10 // 5 = 2, arange(5) * 2 = 0 2 4 6 8,
     * reversed: 8 6 4 2 0. */
    static const int t5[5] = {8, 6, 4, 2, 0};
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(ts[i], t5[i]);
    /* prev of 8 is 6; prev of 0 is -2 < 0: the final alpha, 1 with
     * set_alpha_to_one, else alphas_cumprod[0] = 0.95. */
    CHECK_NEAR(sf_ddim_alpha_prev(&c, ac, 8, 5), 0.19840275, 1e-6);
    CHECK_NEAR(sf_ddim_alpha_prev(&c, ac, 0, 5), 1.0, 0);
    /* 4 steps: ratio 10 // 4 = 2 (not 2.5): 6 4 2 0; with steps_offset 1:
     * 7 5 3 1.  3 steps: ratio 3: 6 3 0. */
    CHECK_EQ_INT(sf_ddim_schedule(&c, 4, ts, NULL), 0);
    CHECK(ts[0] == 6 && ts[1] == 4 && ts[2] == 2 && ts[3] == 0);
    c.steps_offset = 1;
    c.set_alpha_to_one = 0;
    CHECK_EQ_INT(sf_ddim_schedule(&c, 4, ts, NULL), 0);
    CHECK(ts[0] == 7 && ts[1] == 5 && ts[2] == 3 && ts[3] == 1);
    CHECK_NEAR(sf_ddim_alpha_prev(&c, ac, 1, 4), 0.95, 1e-7);   /* 1 - 2 < 0: alphas_cumprod[0] */
    CHECK_NEAR(sf_ddim_alpha_prev(&c, ac, 7, 4), 0.305235, 1e-6); /* 7 - 2 = 5: ac[5] */
    c.steps_offset = 0;
    CHECK_EQ_INT(sf_ddim_schedule(&c, 3, ts, NULL), 0);
    CHECK(ts[0] == 6 && ts[1] == 3 && ts[2] == 0);
    /* 10 steps with offset 1 would reach timestep 10: refused; so are 11 steps. */
    c.steps_offset = 1;
    char err[256] = "";
    CHECK(sf_ddim_config_check(&c, 10, err, sizeof err) == SF_EINVAL && strstr(err, "timestep 10"));
    c.steps_offset = 0;
    CHECK(sf_ddim_config_check(&c, 11, err, sizeof err) == SF_EINVAL);
    c.beta_end = 1.0f;
    CHECK(sf_ddim_config_check(&c, 5, err, sizeof err) == SF_EINVAL && strstr(err, "beta_end"));

    /* scaled_linear 0.01..0.09 over 3: sqrt gives 0.1 0.2 0.3, squared 0.01
     * 0.04 0.09; products 0.99, 0.99*0.96 = 0.9504, *0.91 = 0.864864. */
    c.beta_schedule = SF_BETA_SCALED_LINEAR;
    c.beta_start = 0.01f;
    c.beta_end = 0.09f;
    c.num_train_timesteps = 3;
    CHECK_EQ_INT(sf_ddim_schedule(&c, 1, ts, ac), 0);
    CHECK_NEAR(ac[0], 0.99, 1e-6);
    CHECK_NEAR(ac[1], 0.9504, 1e-6);
    CHECK_NEAR(ac[2], 0.864864, 1e-6);
    /* squaredcos_cap_v2 over 4: f(t) = cos((t + 0.008) / 1.008 * pi/2)^2,
     * beta_i = min(1 - f((i+1)/4) / f(i/4), 0.999):
     *   0.152987839, 0.416958088, 0.707858712, 0.999 (f(1) ~ 0: capped);
     * products 0.847012161, 0.493843590, 0.144272102, 0.000144272. */
    c.beta_schedule = SF_BETA_SQUAREDCOS;
    c.num_train_timesteps = 4;
    CHECK_EQ_INT(sf_ddim_schedule(&c, 2, ts, ac), 0);
    CHECK_NEAR(ac[0], 0.847012161, 1e-6);
    CHECK_NEAR(ac[1], 0.493843590, 1e-6);
    CHECK_NEAR(ac[2], 0.144272102, 1e-6);
    CHECK_NEAR(ac[3], 0.000144272, 1e-8);
}

TEST(ddim_step_by_hand) {
    /* a_t = 0.36 (sqrt 0.6, sqrt(1 - a_t) 0.8), a_prev = 0.64 (sqrt 0.8,
     * sqrt(1 - a_prev) 0.6), the constant predictor eps = 0.5.
     * x = 1:  x0 = (1 - 0.8 * 0.5) / 0.6 = 1.0
     * x = -2: x0 = (-2 - 0.4) / 0.6 = -4.0
     * eta = 0: x_prev = 0.8 * x0 + 0.6 * 0.5 = 0.8 x0 + 0.3 -> 1.1, -2.9 */
    const float x[2] = {1.0f, -2.0f}, eps[2] = {0.5f, 0.5f};
    float xp[2], x0[2];
    sf_ddim_step(x, eps, 2, 0.36f, 0.64f, 0.0f, NULL, xp, x0);
    CHECK_NEAR(x0[0], 1.0, 1e-6);
    CHECK_NEAR(x0[1], -4.0, 1e-6);
    CHECK_NEAR(xp[0], 1.1, 1e-6);
    CHECK_NEAR(xp[1], -2.9, 1e-6);
    /* eta = 1: variance = (1 - 0.64) / (1 - 0.36) * (1 - 0.36 / 0.64)
     *                   = 0.5625 * 0.4375 = 0.24609375, std = 0.49607837;
     * direction = sqrt(1 - 0.64 - 0.24609375) * 0.5 = sqrt(0.11390625) * 0.5
     *           = 0.3375 * 0.5 = 0.16875;
     * noise 2, -1: x_prev = 0.8 * 1 + 0.16875 + 0.49607837 * 2 = 1.96090674
     *              x_prev = 0.8 * -4 + 0.16875 - 0.49607837 = -3.52732837 */
    const float noise[2] = {2.0f, -1.0f};
    sf_ddim_step(x, eps, 2, 0.36f, 0.64f, 1.0f, noise, xp, NULL);
    CHECK_NEAR(xp[0], 1.96090674, 2e-6);
    CHECK_NEAR(xp[1], -3.52732837, 2e-6);
    /* eta = 0.5: std = 0.24803919, std^2 = 0.0615234375, direction =
     * sqrt(0.36 - 0.0615234375) * 0.5 = 0.54633009 * 0.5 = 0.27316504;
     * x_prev = 0.8 + 0.27316504 + 0.24803919 * 2 = 1.56924341 */
    sf_ddim_step(x, eps, 1, 0.36f, 0.64f, 0.5f, noise, xp, NULL);
    CHECK_NEAR(xp[0], 1.56924341, 2e-6);
    /* In place, as the sampler calls it. */
    float xx[2] = {1.0f, -2.0f};
    sf_ddim_step(xx, eps, 2, 0.36f, 0.64f, 0.0f, NULL, xx, NULL);
    CHECK_NEAR(xx[0], 1.1, 1e-6);
    CHECK_NEAR(xx[1], -2.9, 1e-6);
    /* clip_sample with range 1: x0 -4 becomes -1; x_prev = -0.8 + 0.3 = -0.5. */
    sf_ddim_step_clip(x, eps, 2, 0.36f, 0.64f, 0.0f, NULL, 1.0f, xp, x0);
    CHECK_NEAR(x0[1], -1.0, 0);
    CHECK_NEAR(xp[1], -0.5, 1e-6);
    CHECK_NEAR(xp[0], 1.1, 1e-6);
    /* v-prediction: eps = sqrt(a) v + sqrt(1 - a) x = 0.6 * 0.5 + 0.8 * 1 = 1.1
     * and 0.3 - 1.6 = -1.3. */
    float e2[2];
    sf_ddim_v_to_eps(x, eps, 2, 0.36f, e2);
    CHECK_NEAR(e2[0], 1.1, 1e-6);
    CHECK_NEAR(e2[1], -1.3, 1e-6);
}

TEST(cfg_combine_formula) {
    /* eps_u + s (eps_c - eps_u): 1 + 7.5 * 2 = 16; -0.5 + 7.5 * 1 = 7;
     * s = 1 gives eps_c; s = 0 gives eps_u. */
    const float u[2] = {1.0f, -0.5f}, c[2] = {3.0f, 0.5f};
    float out[2];
    sf_cfg_combine(u, c, 2, 7.5f, out);
    CHECK_NEAR(out[0], 16.0, 1e-6);
    CHECK_NEAR(out[1], 7.0, 1e-6);
    sf_cfg_combine(u, c, 2, 1.0f, out);
    CHECK(out[0] == c[0] && out[1] == c[1]);
    sf_cfg_combine(u, c, 2, 0.0f, out);
    CHECK(out[0] == u[0] && out[1] == u[1]);
}

/* ---- the sampling loop against plain C ---- */

/* Writes the schedule a const pipeline is tested with: linear 0.01..0.1 over
 * 10 (mild enough that most values stay inside [-1, 1]). */
static int set_schedule(const char *dir, const char *pred, int clip, int offset) {
    cJSON *j = json_read(dir);
    if (!j) return -1;
    cJSON *s = cJSON_GetObjectItem(j, "schedule");
    cJSON_ReplaceItemInObject(s, "beta_start", cJSON_CreateNumber(0.01));
    cJSON_ReplaceItemInObject(s, "beta_end", cJSON_CreateNumber(0.1));
    cJSON_ReplaceItemInObject(s, "num_train_timesteps", cJSON_CreateNumber(10));
    cJSON_ReplaceItemInObject(s, "steps_offset", cJSON_CreateNumber(offset));
    cJSON_ReplaceItemInObject(s, "set_alpha_to_one", cJSON_CreateBool(0));
    cJSON_ReplaceItemInObject(s, "prediction_type", cJSON_CreateString(pred));
    cJSON_ReplaceItemInObject(s, "clip_sample", cJSON_CreateBool(clip));
    cJSON_ReplaceItemInObject(s, "clip_sample_range", cJSON_CreateNumber(0.8));
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "defaults"), "steps", cJSON_CreateNumber(5));
    int rc = json_write(dir, j);
    cJSON_Delete(j);
    return rc;
}

/* The sampler by hand for one image of the constant predictor. */
static void plain_c_loop(const sf_ddim_config_t *c, uint64_t seed, int steps, float eta, float value,
                         uint8_t *rgb) {
    enum { CHW = 3 * 8 * 8 };
    float ac[10], x[CHW], eps[CHW], all[CHW * 6];
    int ts[5];
    sf_ddim_schedule(c, steps, ts, ac);
    sf_diffusion_noise(seed, CHW, eta > 0 ? 1 + steps : 1, all);
    memcpy(x, all, sizeof x);
    for (int s = 0; s < steps; s++) {
        const float a = ac[ts[s]], ap = sf_ddim_alpha_prev(c, ac, ts[s], steps);
        for (int i = 0; i < CHW; i++) eps[i] = value;
        if (c->prediction_type == SF_PRED_V) sf_ddim_v_to_eps(x, eps, CHW, a, eps);
        sf_ddim_step_clip(x, eps, CHW, a, ap, eta, eta > 0 ? all + (size_t)(s + 1) * CHW : NULL,
                          c->clip_sample ? c->clip_sample_range : 0, x, NULL);
    }
    for (int y = 0; y < 8; y++)
        for (int xx = 0; xx < 8; xx++)
            for (int ch = 0; ch < 3; ch++) {
                float u = x[(ch * 8 + y) * 8 + xx] * 0.5f + 0.5f;
                u = u < 0 ? 0 : u > 1 ? 1 : u;
                rgb[(y * 8 + xx) * 3 + ch] = (uint8_t)lroundf(u * 255.0f);
            }
}

TEST(sampling_loop_matches_plain_c) {
    const char *dir = sub("const");
    char err[512];
    /* 6 output channels: the first 3 are the noise, as with IF. */
    CHECK_EQ_INT(sf_diffusion_write_const(dir, vocab, merges, 0.5f, 6, err, sizeof err), 0);
    static const struct { const char *pred; int clip, offset; float eta; } cases[] = {
        {"epsilon", 0, 0, 0.0f}, {"epsilon", 0, 1, 0.7f}, {"v_prediction", 0, 1, 0.0f}, {"epsilon", 1, 0, 0.3f},
    };
    const char *prompts[2] = {"a photo of a cat", "a dog"};
    const uint64_t seeds[2] = {11, 12};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        CHECK_EQ_INT(set_schedule(dir, cases[k].pred, cases[k].clip, cases[k].offset), 0);
        sf_diffusion_t *m = NULL;
        CHECK_EQ_INT(sf_diffusion_load(dir, "cpu", NULL, &m, err, sizeof err), 0);
        CHECK_EQ_INT(sf_diffusion_image_size(m), 8);
        const sf_ddim_config_t *c = sf_diffusion_schedule_config(m);
        CHECK_EQ_INT(c->num_train_timesteps, 10);
        uint8_t got[2 * 192], want[2 * 192], guided[2 * 192];
        sf_diffusion_opts_t o;
        sf_diffusion_opts_default(&o);
        o.eta = cases[k].eta;
        o.guidance_scale = 1;
        o.batch = 1;
        CHECK_EQ_INT(sf_diffusion_generate(m, prompts, 2, seeds, &o, got, NULL, NULL), 0);
        /* With guidance the constant's two halves agree, so nothing changes:
         * this runs the batched uncond + cond path through the same loop. */
        o.guidance_scale = 5;
        o.batch = 2;
        CHECK_EQ_INT(sf_diffusion_generate(m, prompts, 2, seeds, &o, guided, NULL, NULL), 0);
        for (int i = 0; i < 2; i++) plain_c_loop(c, seeds[i], 5, cases[k].eta, 0.5f, want + i * 192);
        sf_diffusion_free(&m);
        CHECK(m == NULL);
        CHECK_EQ_INT(max_diff(got, want, sizeof got), 0);
        CHECK_EQ_INT(max_diff(guided, want, sizeof got), 0);
        /* Not a degenerate image: the noise made it. */
        CHECK(distinct_values(got, 192) > 20);
    }
    /* The noise stream: draws depend on the seed only. */
    float a[64], b[64];
    CHECK_EQ_INT(sf_diffusion_noise(7, 32, 2, a), 0);
    CHECK_EQ_INT(sf_diffusion_noise(7, 32, 2, b), 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK_EQ_INT(sf_diffusion_noise(8, 32, 2, b), 0);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

/* ---- the toy pipelines ---- */

static int prog_calls, prog_last, prog_total;
static void on_progress(int step, int steps, void *user) {
    (void)user;
    prog_calls++;
    if (step != prog_last + 1) prog_last = -1000;
    else prog_last = step;
    prog_total = steps;
}

TEST(toy_seeds_prompts_batches) {
    const char *dir = sub("toy");
    char err[512];
    CHECK_EQ_INT(write_toy(dir, 0, 0, 42), 0);
    sf_diffusion_t *m = NULL;
    CHECK_EQ_INT(sf_diffusion_load(dir, "cpu", "fp32", &m, err, sizeof err), 0);
    const int S = sf_diffusion_image_size(m);
    CHECK_EQ_INT(S, 16);
    CHECK_EQ_INT(sf_diffusion_has_hook(m), 0);
    const size_t one = (size_t)S * S * 3;
    const char *prompts[3] = {"a photo of a cat", "a sketch of the beach", "a photo of a cat"};
    const uint64_t seeds[3] = {1, 2, 3};
    uint8_t b2[3 * 768], b1[3 * 768], b3[3 * 768], solo[768];
    sf_diffusion_opts_t o;
    sf_diffusion_opts_default(&o);
    o.steps = 6;
    o.batch = 2;
    prog_calls = prog_last = prog_total = 0;
    CHECK_EQ_INT(sf_diffusion_generate(m, prompts, 3, seeds, &o, b2, on_progress, NULL), 0);
    /* Two batches of 6 steps, counted in order over the whole call. */
    CHECK_EQ_INT(prog_calls, 12);
    CHECK_EQ_INT(prog_last, 12);
    CHECK_EQ_INT(prog_total, 12);
    o.batch = 1;
    CHECK_EQ_INT(sf_diffusion_generate(m, prompts, 3, seeds, &o, b1, NULL, NULL), 0);
    o.batch = 3;
    CHECK_EQ_INT(sf_diffusion_generate(m, prompts, 3, seeds, &o, b3, NULL, NULL), 0);
    CHECK(memcmp(b1, b2, sizeof b1) == 0);
    CHECK(memcmp(b3, b2, sizeof b1) == 0);
    /* The third image alone, in a call of its own. */
    CHECK_EQ_INT(sf_diffusion_generate(m, prompts + 2, 1, seeds + 2, &o, solo, NULL, NULL), 0);
    CHECK(memcmp(solo, b2 + 2 * one, one) == 0);
    /* Same prompt, another seed: another image; another prompt, same seed:
     * another image.  And images, not saturated planes. */
    const uint64_t seed1 = 1;
    CHECK_EQ_INT(sf_diffusion_generate(m, prompts + 1, 1, &seed1, &o, solo, NULL, NULL), 0);
    int sat = 0;
    for (size_t i = 0; i < 3 * one; i++) sat += b2[i] == 0 || b2[i] == 255;
    printf("# toy: mean |diff| %.1f levels between seeds, %.1f between prompts; %d of %d values at 0 or 255\n",
           mean_diff(b2, b2 + 2 * one, one), mean_diff(b2, solo, one), sat, (int)(3 * one));
    CHECK(mean_diff(b2, b2 + 2 * one, one) > 5);
    CHECK(mean_diff(b2, solo, one) > 5);
    CHECK(distinct_values(b2, one) > 50);
    CHECK(sat < (int)one);
    /* The pipeline's defaults (8 steps, guidance 1.5) differ from 6 steps. */
    sf_diffusion_opts_default(&o);
    sf_diffusion_opts_t r;
    sf_diffusion_opts_resolve(m, &o, &r);
    CHECK(r.steps == 8 && r.eta == 0 && r.guidance_scale == 1.5f && r.hook_scale == 0 && r.batch == 8);
    o.steps = 3;
    sf_diffusion_opts_resolve(m, &o, &r);
    CHECK_EQ_INT(r.steps, 3);
    o.steps = 0;
    CHECK_EQ_INT(sf_diffusion_generate(m, prompts, 1, seeds, &o, solo, NULL, NULL), 0);
    CHECK(memcmp(solo, b2, one) != 0);
    sf_diffusion_free(&m);
}

TEST(toy_guidance_scale) {
    const char *dir = sub("toy");   /* written by the test before */
    char err[512];
    sf_diffusion_t *m = NULL;
    CHECK_EQ_INT(sf_diffusion_load(dir, "cpu", NULL, &m, err, sizeof err), 0);
    const char *cat[1] = {"a photo of a cat"}, *empty[1] = {""};
    const uint64_t seed = 9;
    uint8_t g1[768], g1b[768], g4[768], g0[768], e1[768];
    sf_diffusion_opts_t o;
    sf_diffusion_opts_default(&o);
    o.steps = 6;
    o.guidance_scale = 1;   /* cond only: one forward of the prompt */
    CHECK_EQ_INT(sf_diffusion_generate(m, cat, 1, &seed, &o, g1, NULL, NULL), 0);
    o.guidance_scale = 1.0001f;   /* the batched uncond + cond path */
    CHECK_EQ_INT(sf_diffusion_generate(m, cat, 1, &seed, &o, g1b, NULL, NULL), 0);
    CHECK(max_diff(g1, g1b, sizeof g1) <= 1);
    o.guidance_scale = 4;
    CHECK_EQ_INT(sf_diffusion_generate(m, cat, 1, &seed, &o, g4, NULL, NULL), 0);
    CHECK(mean_diff(g1, g4, sizeof g1) > 3);
    /* A scale near 0 leaves the empty prompt's prediction: the image of "". */
    o.guidance_scale = 1e-5f;
    CHECK_EQ_INT(sf_diffusion_generate(m, cat, 1, &seed, &o, g0, NULL, NULL), 0);
    o.guidance_scale = 1;
    CHECK_EQ_INT(sf_diffusion_generate(m, empty, 1, &seed, &o, e1, NULL, NULL), 0);
    CHECK(max_diff(g0, e1, sizeof g0) <= 1);
    CHECK(mean_diff(g0, g1, sizeof g0) > 3);
    sf_diffusion_free(&m);
}

TEST(toy_latent_decoder_and_dtypes) {
    const char *dir = sub("latent");
    char err[512];
    CHECK_EQ_INT(write_toy(dir, 1, 0, 5), 0);
    cJSON *j = json_read(dir);
    CHECK(j);
    const int sample = cJSON_GetObjectItem(j, "sample_size")->valueint;
    cJSON_Delete(j);
    sf_diffusion_t *m = NULL, *mb = NULL;
    CHECK_EQ_INT(sf_diffusion_load(dir, "cpu", "fp32", &m, err, sizeof err), 0);
    CHECK_EQ_INT(sf_diffusion_image_size(m), 2 * sample);
    const char *prompts[2] = {"a dog on the beach", "a cat"};
    const uint64_t seeds[2] = {3, 4};
    uint8_t f32[2 * 768], b16[2 * 768];
    sf_diffusion_opts_t o;
    sf_diffusion_opts_default(&o);
    o.steps = 5;
    CHECK_EQ_INT(sf_diffusion_generate(m, prompts, 2, seeds, &o, f32, NULL, NULL), 0);
    CHECK(distinct_values(f32, 768) > 30);
    CHECK(mean_diff(f32, f32 + 768, 768) > 3);
    /* bf16 runs on the CPU and lands near fp32. */
    CHECK_EQ_INT(sf_diffusion_load(dir, "cpu", "bf16", &mb, err, sizeof err), 0);
    CHECK_EQ_INT(sf_diffusion_generate(mb, prompts, 2, seeds, &o, b16, NULL, NULL), 0);
    const double d = mean_diff(f32, b16, sizeof f32);
    printf("# latent toy: bf16 vs fp32 mean |diff| %.2f levels\n", d);
    CHECK(d > 0 && d < 6);   /* the cast happened, and did little */
    sf_diffusion_free(&m);
    sf_diffusion_free(&mb);
    /* fp16 on the CPU is refused, not crashed into. */
    CHECK_EQ_INT(sf_diffusion_load(dir, "cpu", "fp16", &m, err, sizeof err), SF_EUNSUPPORTED);
    CHECK(strstr(err, "fp16"));
    CHECK(m == NULL);
}

TEST(toy_hook) {
    const char *plain = sub("toy"), *dir = sub("hook");
    char err[512];
    CHECK_EQ_INT(write_toy(dir, 0, 1, 42), 0);
    sf_diffusion_t *m = NULL, *p = NULL;
    CHECK_EQ_INT(sf_diffusion_load(dir, "cpu", NULL, &m, err, sizeof err), 0);
    CHECK_EQ_INT(sf_diffusion_load(plain, "cpu", NULL, &p, err, sizeof err), 0);
    CHECK_EQ_INT(sf_diffusion_has_hook(m), 1);
    const char *pr[1] = {"a photo of a dog"};
    const uint64_t seed = 21;
    uint8_t base[768], h0[768], h2[768];
    sf_diffusion_opts_t o;
    sf_diffusion_opts_default(&o);
    o.steps = 6;
    /* The same seed wrote the same text encoder and unet (the hook is drawn
     * last), so hook_scale 0 must give the plain toy's image exactly. */
    CHECK_EQ_INT(sf_diffusion_generate(p, pr, 1, &seed, &o, base, NULL, NULL), 0);
    CHECK_EQ_INT(sf_diffusion_generate(m, pr, 1, &seed, &o, h0, NULL, NULL), 0);
    CHECK(memcmp(base, h0, sizeof base) == 0);
    o.hook_scale = 2;
    CHECK_EQ_INT(sf_diffusion_generate(m, pr, 1, &seed, &o, h2, NULL, NULL), 0);
    CHECK(mean_diff(h0, h2, sizeof h0) > 2);
    /* A hook_scale for a pipeline without a hook is an error naming it. */
    CHECK(sf_diffusion_generate(p, pr, 1, &seed, &o, h2, NULL, NULL) == SF_EINVAL);
    CHECK(strstr(sf_diffusion_errstr(p), "guidance"));
    sf_diffusion_free(&m);
    sf_diffusion_free(&p);
}

/* ---- errors ---- */


/* A copy of the toy pipeline to break. */
static const char *fresh(const char *name) {
    const char *dir = sub(name);
    if (write_toy(dir, 0, 0, 1)) return NULL;
    return dir;
}


static int copy(const char *from, const char *to, long limit) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int c;
    long k = 0;
    while (a && b && (limit < 0 || k < limit) && (c = fgetc(a)) != EOF) fputc(c, b), k++;
    if (a) fclose(a);
    if (b) fclose(b);
    return a && b ? 0 : -1;
}

TEST(errors_name_the_culprit) {
    char err[512] = "";
    /* No directory, no JSON. */
    CHECK_EQ_INT(load_err(sub("nowhere"), err, sizeof err), SF_ENOTFOUND);
    CHECK(strstr(err, "sf-diffusion.json"));
    const char *d;
    /* Unknown keys, at the top and inside an object; a missing key. */
    CHECK((d = fresh("e_key")));
    CHECK_EQ_INT(edit(d, NULL, "colour", cJSON_CreateNumber(1)), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "'colour'"));
    CHECK_EQ_INT(edit(d, NULL, "colour", NULL), 0);
    CHECK_EQ_INT(edit(d, "schedule", "beta_sched", cJSON_CreateString("linear")), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "'schedule.beta_sched'"));
    CHECK_EQ_INT(edit(d, "schedule", "beta_sched", NULL), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), 0);
    CHECK_EQ_INT(edit(d, NULL, "unet", NULL), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "'unet'"));
    CHECK_EQ_INT(edit(d, NULL, "unet", cJSON_CreateString("unet.pt")), 0);
    /* Bad schedule values. */
    CHECK_EQ_INT(edit(d, "schedule", "beta_schedule", cJSON_CreateString("cosine")), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "cosine") && strstr(err, "squaredcos_cap_v2"));
    CHECK_EQ_INT(edit(d, "schedule", "beta_schedule", cJSON_CreateString("linear")), 0);
    CHECK_EQ_INT(edit(d, "schedule", "num_train_timesteps", cJSON_CreateNumber(4)), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "steps 8"));
    CHECK_EQ_INT(edit(d, "schedule", "num_train_timesteps", cJSON_CreateNumber(1000)), 0);
    CHECK_EQ_INT(edit(d, "schedule", "beta_end", cJSON_CreateNumber(1.5)), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "beta_end"));
    CHECK_EQ_INT(edit(d, "schedule", "beta_end", cJSON_CreateNumber(0.012)), 0);
    CHECK_EQ_INT(edit(d, "tokenizer", "kind", cJSON_CreateString("t5")), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "t5"));
    CHECK_EQ_INT(edit(d, "tokenizer", "kind", cJSON_CreateString("clip")), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), 0);
    /* Unknown dtype and device. */
    sf_diffusion_t *m = NULL;
    CHECK_EQ_INT(sf_diffusion_load(d, "cpu", "fp8", &m, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "fp8"));
    CHECK(sf_diffusion_load(d, "tpu", NULL, &m, err, sizeof err) != 0);
    CHECK(strstr(err, "tpu"));

    /* Module files: missing, truncated, garbage, the wrong arity. */
    CHECK((d = fresh("e_mod")));
    const char *unet = in(d, "unet.pt"), *keep = in(d, "unet.keep");
    CHECK_EQ_INT(rename(unet, keep), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_ENOTFOUND);
    CHECK(strstr(err, "unet.pt"));
    struct stat st;
    CHECK_EQ_INT(stat(keep, &st), 0);
    CHECK_EQ_INT(copy(keep, unet, (long)st.st_size / 2), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "unet.pt"));
    FILE *f = fopen(unet, "w");
    CHECK(f);
    fputs("this is not a zip archive", f);
    fclose(f);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "unet.pt"));
    CHECK_EQ_INT(copy(in(d, "text_encoder.pt"), unet, -1), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "unet.pt") && strstr(err, "takes 1 argument"));
    CHECK_EQ_INT(copy(keep, unet, -1), 0);
    CHECK_EQ_INT(load_err(d, err, sizeof err), 0);

    /* A unet that returns too few channels: found at the first call. */
    const char *cd = sub("e_shape");
    CHECK_EQ_INT(sf_diffusion_write_const(cd, vocab, merges, 0.1f, 2, err, sizeof err), 0);
    CHECK_EQ_INT(sf_diffusion_load(cd, "cpu", NULL, &m, err, sizeof err), 0);
    const char *pr[1] = {"a cat"};
    const uint64_t seed = 1;
    uint8_t rgb[192];
    sf_diffusion_opts_t o;
    sf_diffusion_opts_default(&o);
    CHECK_EQ_INT(sf_diffusion_generate(m, pr, 1, &seed, &o, rgb, NULL, NULL), SF_EFORMAT);
    printf("# %s\n", sf_diffusion_errstr(m));
    CHECK(strstr(sf_diffusion_errstr(m), "unet.pt") && strstr(sf_diffusion_errstr(m), "[1, 2, 8, 8]"));
    /* Too many steps for the schedule. */
    o.steps = 5000;
    CHECK_EQ_INT(sf_diffusion_generate(m, pr, 1, &seed, &o, rgb, NULL, NULL), SF_EINVAL);
    CHECK(strstr(sf_diffusion_errstr(m), "5000"));
    sf_diffusion_free(&m);
}

int main(void) {
    sf_ml_opts_t mo = {.threads = 2, .quiet = 1};
    snprintf(root, sizeof root, "/tmp/sf_diffusion_XXXXXX");
    if (sf_ml_init(&mo) != 0 || !mkdtemp(root) || make_tokenizer() != 0) {
        fprintf(stderr, "test_ml_diffusion: set-up failed\n");
        return 1;
    }
    SF_RUN(ddim_schedule_by_hand);
    SF_RUN(ddim_step_by_hand);
    SF_RUN(cfg_combine_formula);
    SF_RUN(sampling_loop_matches_plain_c);
    SF_RUN(toy_seeds_prompts_batches);
    SF_RUN(toy_guidance_scale);
    SF_RUN(toy_latent_decoder_and_dtypes);
    SF_RUN(toy_hook);
    SF_RUN(errors_name_the_culprit);
    rm_rf(root);
    SF_DONE();
}
