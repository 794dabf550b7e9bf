/* sf_diffusion.h: the text-to-image diffusion backend — DDIM and DDPM
 * samplers in C/C++ that drive TorchScript modules the user exported
 * (tools/export_diffusion.py): latent Stable Diffusion 1.x pipelines, and
 * DeepFloyd IF's pixel cascade (stage I at 64x64 with a T5 text encoder,
 * stage II, the upscaler, to 256x256), or anything with the same contract.
 *
 * Same conventions as sf_ml.h (call sf_ml_init first): plain C, an opaque
 * object used by one thread at a time, negative SF_E… codes with the
 * object's errstr; C++ exceptions never cross this header.
 *
 * ---- The contract: a pipeline directory ----
 *
 * DIR/sf-diffusion.json names TorchScript files (torch.jit.save; paths
 * relative to DIR unless absolute) whose forward() must be:
 *
 *   text encoder  forward(tokens: int64[B,T]) -> float[B,T,D]
 *                 per-token embeddings, the context of cross-attention
 *                 (SD: CLIPTextModel's last_hidden_state; IF: T5EncoderModel's
 *                 last_hidden_state with attention_mask = tokens != 0, the
 *                 pad id, computed inside the module).
 *   unet          forward(x: float[B,C,H,W], t: int64[B], context: float[B,T,D])
 *                     -> float[B,C',H,W], C' >= C
 *                 the noise prediction (or v, see prediction_type) in the
 *                 first C channels; with variance_type "learned_range" the
 *                 next C channels are the learned variance v in [-1, 1]
 *                 (C' >= 2C; IF stage I predicts 6 = noise + variance); the
 *                 rest is dropped.
 *   upscaler.unet forward(x: float[B,2C,S,S], t: int64[B], context: float[B,T,D],
 *   (optional)          noise_level: int64[B]) -> float[B,C',S,S], C' >= C
 *                 IF stage II: x is the sample (first C channels) concatenated
 *                 with the noised upscaled stage I image (next C), as
 *                 IFSuperResolutionPipeline feeds UNet2DConditionModel, and
 *                 noise_level is its class_labels; the output is read as the
 *                 stage I unet's (noise, then variance).
 *   decoder       forward(z: float[B,C,h,w]) -> float[B,3,S,S] in [-1,1]
 *   (optional)    for latent models (SD's VAE decode); called with
 *                 z = latents / latent_scale.  Without a decoder the sample
 *                 itself is the image: C must be 3 and sample_size == image_size.
 *   guidance      forward(x0: float[B,C,H,W], t: int64[B]) -> float[B,C,H,W]
 *   (optional)    a direction h at the predicted clean sample x0 (latent space
 *                 for latent models), added to the predicted noise:
 *                     eps += hook_scale * sqrt(1 - alpha_bar_t) * h(x0, t)
 *                 Sign convention: eps ~ -sqrt(1 - alpha_bar_t) * grad log p,
 *                 so for h = grad log q (the gradient of a log-density q), a
 *                 positive hook_scale lowers q along the trajectory — samples
 *                 move away from q's dense regions, which is the low-density
 *                 baseline — and a negative one is ordinary classifier
 *                 guidance towards them.
 *
 * Modules are loaded with torch::jit::load onto the device, their
 * floating-point parameters and buffers cast to the dtype, and run by the
 * plain TorchScript interpreter (no graph optimisation, whose first calls
 * and later ones need not agree bit for bit); inputs are cast to the dtype
 * (tokens and t stay int64), outputs read back as fp32.
 *
 * sf-diffusion.json (unknown keys are errors naming the key):
 *   text_encoder   string, required
 *   unet           string, required
 *   decoder        string, optional (null = none)
 *   guidance       string, optional (null = none)
 *   tokenizer      required, one of:
 *                  {"kind": "clip", "vocab": "vocab.json", "merges": "merges.txt",
 *                   "context": 77, "pad": "eot" | "zero"}
 *                    pad: what fills the row after <|endoftext|> — "eot"
 *                    repeats the end token (SD 1.x's tokenizer, the default),
 *                    "zero" writes id 0 (SD 2.x's "!").
 *                  {"kind": "t5", "model": "spiece.model", "context": 77}
 *                    IF's T5Tokenizer (ml/sf_spm.h, SF_SPM_T5): the prompt
 *                    lower-cased (ASCII) and stripped of surrounding
 *                    whitespace, as IF's _text_preprocessing does without
 *                    clean_caption, its pieces then </s>, cut to context
 *                    keeping the </s>, padded with the pad id (0) to context.
 *                  Keys of the other kind are errors.
 *   channels       C, required
 *   sample_size    H = W of the sample (latent or pixel), required
 *   image_size     S, the output side in pixels, required
 *   latent_scale   default 1 (SD 1.x: 0.18215)
 *   schedule       required object, diffusers' DDIMScheduler config; missing
 *                  keys take diffusers' defaults:
 *                  beta_schedule "linear" | "scaled_linear" | "squaredcos_cap_v2"
 *                  ("linear"), beta_start (0.0001), beta_end (0.02),
 *                  num_train_timesteps (1000), steps_offset (0),
 *                  set_alpha_to_one (true), prediction_type "epsilon" |
 *                  "v_prediction" ("epsilon"), clip_sample (true),
 *                  clip_sample_range (1.0); and for IF, diffusers'
 *                  DDPMScheduler keys: sampler "ddim" | "ddpm" ("ddim"),
 *                  variance_type "fixed_small" | "learned_range"
 *                  ("fixed_small"; only DDPM reads it), thresholding (false),
 *                  dynamic_thresholding_ratio (0.995), sample_max_value (1.0).
 *                  IF's stage I: ddpm, squaredcos_cap_v2, learned_range,
 *                  thresholding with ratio 0.95 and sample_max_value 1.5.
 *   defaults       optional: {"steps": 50, "eta": 0, "guidance_scale": 7.5}
 *                  (IF stage I: 100 steps, guidance 7.0)
 *   upscaler       optional object, IF's stage II (then channels is 3, there
 *                  is no decoder, and image_size is upscaler.sample_size):
 *                  unet          string, required
 *                  sample_size   S, required, >= sample_size
 *                  schedule      required, as above (IF: ddpm, learned_range,
 *                                thresholding, sample_max_value 1.0)
 *                  noise_schedule  optional, the image_noising_scheduler's
 *                                betas (the schedule keys; default: schedule's)
 *                  noise_level   0..num_train_timesteps-1 (250, as IF)
 *                  defaults      optional: {"steps": 50, "guidance_scale": 4.0}
 *   source         optional string, informational (where it was exported from)
 *
 * ---- Sampling ----
 *
 * DDIM as diffusers' DDIMScheduler with timestep_spacing "leading":
 * ratio = num_train // steps, timesteps = arange(steps) * ratio reversed,
 * plus steps_offset; prev_t = t - ratio; alpha_prev = alphas_cumprod[prev_t],
 * or 1 (set_alpha_to_one) / alphas_cumprod[0] when prev_t < 0.  Each step:
 * the unet on [uncond; cond] (cond only at guidance 1), guidance combined,
 * v turned into eps, the hook's term added (when hook_scale != 0; it sees the
 * x0 the step would predict, clamped as clip_sample says or thresholded),
 * the DDIM step.
 * The state and all the sampler's maths are fp32 on the host, through
 * sf_ddim_step and sf_cfg_combine below, whatever the modules' dtype and
 * device.
 *
 * DDPM (sampler "ddpm") as diffusers' DDPMScheduler with the same "leading"
 * timesteps: prev_t = t - ratio, alpha_prev = alphas_cumprod[prev_t] or 1
 * below 0.  Each step: the unet, guidance as IF applies it (sf_cfg_split:
 * the noise channels guided, the variance channels taken from the
 * conditional half), x0 predicted and then dynamically thresholded per
 * image (sf_dynamic_threshold) when thresholding is on, else clamped as
 * clip_sample says, then sf_ddpm_step, whose noise is drawn for every step
 * but the one at t = 0 (eta is DDIM's; DDPM ignores it).  DDIM with
 * thresholding steps from the thresholded x0 (sf_ddim_step_x0).
 *
 * With an upscaler, stage I's final sample (b, 3, H, H), in [-1, 1] as IF's
 * output_type "pt" leaves it, is resized to S x S (sf_upsample_bilinear,
 * align_corners as IF's F.interpolate), noised to noise_level with the
 * noise schedule (sqrt(abar) x + sqrt(1 - abar) n), and stage II samples
 * from fresh noise with its own schedule, steps and guidance scale on the
 * same prompt embeddings (and the same "" for guidance).
 *
 * Noise: image i's initial noise and its steps' noise come from one torch CPU
 * generator seeded with seeds[i] (sf_diffusion_noise), so a device or a batch
 * changes nothing in them.  The same (prompt, seed) gives bit-identical
 * images in any batch on CPU as long as the modules themselves compute each
 * sample independently of the batch (the toy modules do; CPU convolutions
 * and GPU kernels may differ in the last bits with the batch size).  The
 * initial noise is torch.randn((C, H, W), generator=torch.Generator().manual_seed(seed)),
 * which is what diffusers draws for one fp32 image with that CPU generator.
 */
#ifndef SF_DIFFUSION_H
#define SF_DIFFUSION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the scheduler's maths (plain C, no torch) ---- */

typedef enum {
    SF_BETA_LINEAR = 0,        /* linspace(beta_start, beta_end, N) */
    SF_BETA_SCALED_LINEAR = 1, /* linspace(sqrt(beta_start), sqrt(beta_end), N)^2 (SD) */
    SF_BETA_SQUAREDCOS = 2,    /* squaredcos_cap_v2: the cosine alpha_bar, betas capped at 0.999 */
} sf_beta_schedule_t;

typedef enum { SF_PRED_EPSILON = 0, SF_PRED_V = 1 } sf_prediction_t;

typedef enum { SF_SAMPLER_DDIM = 0, SF_SAMPLER_DDPM = 1 } sf_sampler_t;

/* DDPM's posterior variance: the fixed one, or IF's interpolation (in log
 * space) between it and the step's beta by the unet's variance channels. */
typedef enum { SF_VAR_FIXED_SMALL = 0, SF_VAR_LEARNED_RANGE = 1 } sf_variance_t;

typedef struct {
    sf_beta_schedule_t beta_schedule;
    float beta_start, beta_end;   /* ignored by squaredcos_cap_v2 */
    int num_train_timesteps;
    int steps_offset;
    int set_alpha_to_one;         /* alpha_prev of the last step: 1, or alphas_cumprod[0] */
    sf_prediction_t prediction_type;
    int clip_sample;              /* clamp the predicted x0 to +-clip_sample_range */
    float clip_sample_range;
    /* DDPMScheduler's (IF's); the defaults leave DDIM as it was. */
    sf_sampler_t sampler;
    sf_variance_t variance_type;  /* read by DDPM only */
    int thresholding;             /* sf_dynamic_threshold on x0, instead of clip_sample */
    float dynamic_thresholding_ratio;
    float sample_max_value;
} sf_ddim_config_t;

/* diffusers' DDIMScheduler defaults (linear 0.0001..0.02, 1000 steps,
 * offset 0, set_alpha_to_one, epsilon, clip_sample 1.0; sampler DDIM,
 * fixed_small, no thresholding, ratio 0.995, sample_max_value 1.0). */
void sf_ddim_config_default(sf_ddim_config_t *c);

/* Checks a configuration and a step count: betas in (0, 1), 1 <= steps <=
 * num_train_timesteps, every timestep (offset included) below
 * num_train_timesteps. */
int sf_ddim_config_check(const sf_ddim_config_t *c, int steps, char *err, size_t errlen);

/* timesteps (steps) in sampling order, and alphas_cumprod
 * (num_train_timesteps).  Either output may be NULL. */
int sf_ddim_schedule(const sf_ddim_config_t *c, int steps, int *timesteps, float *alphas_cumprod);

/* alpha_bar of the step after t: alphas_cumprod[t - num_train / steps], or
 * the final value when that is negative. */
float sf_ddim_alpha_prev(const sf_ddim_config_t *c, const float *alphas_cumprod, int t, int steps);

/* One DDIM step over n values:
 *   x0     = (x - sqrt(1 - a_t) * eps) / sqrt(a_t)
 *   std    = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
 *   x_prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev - std^2) * eps + std * noise
 * noise may be NULL when eta == 0; x0 may be NULL; x_prev may be x. */
void sf_ddim_step(const float *x, const float *eps, int n, float a_t, float a_prev, float eta,
                  const float *noise, float *x_prev, float *x0);
/* The same with x0 clamped to +-clip_range before it is used (clip_sample;
 * eps is not recomputed, as in diffusers); clip_range <= 0 is no clamp. */
void sf_ddim_step_clip(const float *x, const float *eps, int n, float a_t, float a_prev,
                       float eta, const float *noise, float clip_range, float *x_prev,
                       float *x0);

/* v-prediction to noise: eps = sqrt(a_t) * v + sqrt(1 - a_t) * x (eps may be v). */
void sf_ddim_v_to_eps(const float *x, const float *v, int n, float a_t, float *eps);

/* Classifier-free guidance: out = eps_uncond + scale * (eps_cond - eps_uncond);
 * out may alias either input. */
void sf_cfg_combine(const float *eps_uncond, const float *eps_cond, int n, float scale, float *out);

/* ---- DDPM and IF's additions (plain C, no torch) ---- */

/* alpha_bar of DDPM's step after t: alphas_cumprod[t - num_train / steps],
 * or 1 when that is negative (DDPMScheduler's `one`, whatever
 * set_alpha_to_one says). */
float sf_ddpm_alpha_prev(const sf_ddim_config_t *c, const float *alphas_cumprod, int t, int steps);

/* The predicted clean sample: x0 = (x - sqrt(1 - a_t) * eps) / sqrt(a_t). */
void sf_pred_x0(const float *x, const float *eps, int n, float a_t, float *x0);

/* Dynamic thresholding (Imagen; DDPMScheduler._threshold_sample) of ONE
 * sample's n values, in place: s = the `ratio` quantile of |x0| (linear
 * interpolation between order statistics, as torch.quantile: position
 * ratio * (n - 1)), clamped to [1, max_value]; then x0 = clamp(x0, -s, s) / s.
 * *s_out (may be NULL) receives s.  0, SF_EINVAL (n < 1, ratio outside
 * [0, 1], max_value < 1) or SF_ENOMEM. */
int sf_dynamic_threshold(float *x0, int n, float ratio, float max_value, float *s_out);

/* One DDPM step (DDPMScheduler.step) over n values from the predicted x0,
 * already thresholded or clipped:
 *   beta  = 1 - a_t / a_prev        (the step's beta, over skipped timesteps)
 *   mean  = sqrt(a_prev) * beta / (1 - a_t) * x0
 *         + sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * x
 *   var   = max((1 - a_prev) / (1 - a_t) * beta, 1e-20)
 *   fixed_small (v NULL):    x_prev = mean + sqrt(var) * noise
 *   learned_range (v given): f = (v + 1) / 2,
 *                            x_prev = mean + exp((f log(beta) + (1 - f) log(var)) / 2) * noise
 * noise NULL adds nothing (the step at t = 0).  x_prev may be x. */
void sf_ddpm_step(const float *x, const float *x0, const float *v, int n, float a_t, float a_prev,
                  const float *noise, float *x_prev);

/* DDIM's step from a given (thresholded) x0 and eps:
 *   x_prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev - std^2) * eps + std * noise,
 * std as in sf_ddim_step.  x_prev may be x0 or eps. */
void sf_ddim_step_x0(const float *x0, const float *eps, int n, float a_t, float a_prev, float eta,
                     const float *noise, float *x_prev);

/* Guidance over a unet's output as IF applies it.  out holds b images of
 * cout channels of hw values; with cfg, 2b of them, the b unconditional
 * ones first.  eps (b * C * hw) receives the first C channels, guided with
 * sf_cfg_combine's formula under cfg; var (may be NULL; b * C * hw) the next
 * C channels of the conditional half, unguided (IF splits the variance off
 * the text branch).  cout >= C, and >= 2C when var is given. */
void sf_cfg_split(const float *out, int b, int cfg, int C, int cout, int hw, float scale, float *eps,
                  float *var);

/* Bilinear resize of `planes` planes of h x w to H x W with align_corners
 * (F.interpolate(mode="bilinear", align_corners=True)): output pixel (Y, X)
 * samples the input at (Y (h - 1) / (H - 1), X (w - 1) / (W - 1)). */
void sf_upsample_bilinear(const float *in, int planes, int h, int w, int H, int W, float *out);

/* The noise stream of one image: `draws` consecutive torch::randn draws of
 * `per_draw` values each from a CPU generator seeded with `seed`, into out
 * (draws * per_draw).  The sampler draws the initial noise (C*H*W) first,
 * then one C*H*W draw per step that adds noise (DDIM with eta > 0; DDPM
 * but at t = 0), then, with an upscaler, stage II's initial noise (C*S*S),
 * the upscaled image's noise (C*S*S, IF's order) and its steps' draws. */
int sf_diffusion_noise(uint64_t seed, int per_draw, int draws, float *out);
/* The same with draws of different sizes (stage II's are larger):
 * sizes[0..draws) values each, one after the other, into out. */
int sf_diffusion_noise_sizes(uint64_t seed, const int *sizes, int draws, float *out);

/* ---- the pipeline ---- */

typedef struct sf_diffusion_s sf_diffusion_t;

typedef struct {
    int steps;            /* 0/negative: the pipeline's defaults.steps */
    float eta;            /* 0/negative: defaults.eta (set that to 0 for deterministic DDIM) */
    float guidance_scale; /* 0/negative: defaults.guidance_scale; 1 = no guidance */
    float hook_scale;     /* 0 = the hook is not called; either sign (see the contract) */
    int batch;            /* images per forward (doubled inside with guidance); 0 = 8 */
    /* Stage II (upscaler) only; resolved to 0 without one. */
    int sr_steps;             /* 0/negative: upscaler.defaults.steps */
    float sr_guidance_scale;  /* 0/negative: upscaler.defaults.guidance_scale */
    int noise_level;          /* 0/negative: upscaler.noise_level */
} sf_diffusion_opts_t;

void sf_diffusion_opts_default(sf_diffusion_opts_t *o);

/* The options generate would use: o (NULL = the defaults) with its 0/negative
 * fields replaced by the pipeline's defaults, e.g. to record the steps and
 * guidance an image was made with. */
void sf_diffusion_opts_resolve(const sf_diffusion_t *m, const sf_diffusion_opts_t *o,
                               sf_diffusion_opts_t *out);

/* Loads the pipeline in dir onto device ("cpu", "cuda", "cuda:N") in dtype
 * ("fp32", "fp16", "bf16"; NULL = fp32).  fp16 needs a CUDA device
 * (SF_EUNSUPPORTED on CPU: libtorch has no CPU half convolutions).  Checks
 * the JSON, the tokenizer files and each module's forward arity; a module
 * whose outputs break the contract fails the first generate, naming it. */
int sf_diffusion_load(const char *dir, const char *device, const char *dtype,
                      sf_diffusion_t **out, char *err, size_t errlen);

/* Output side S in pixels; 1 if the pipeline has a guidance module; 1 if
 * it has an upscaler (stage II). */
int sf_diffusion_image_size(const sf_diffusion_t *m);
int sf_diffusion_has_hook(const sf_diffusion_t *m);
int sf_diffusion_has_upscaler(const sf_diffusion_t *m);
/* The upscaler's schedule and its noising schedule (NULL without one). */
const sf_ddim_config_t *sf_diffusion_upscaler_config(const sf_diffusion_t *m);
const sf_ddim_config_t *sf_diffusion_noising_config(const sf_diffusion_t *m);
/* The configuration as loaded (its schedule and defaults). */
const sf_ddim_config_t *sf_diffusion_schedule_config(const sf_diffusion_t *m);
const char *sf_diffusion_errstr(const sf_diffusion_t *m);

/* The token row the text encoder receives for prompt (borrowed): context
 * ids into ids (caller's, at least context), padding included; returns
 * context, or a negative SF_E code (the prompt cannot be tokenized). */
int sf_diffusion_tokenize(sf_diffusion_t *m, const char *prompt, int64_t *ids, int cap);

/* n images, image i from prompts[i] (borrowed) with its own seeds[i].
 * Classifier-free guidance against the empty prompt "" when guidance_scale
 * != 1 (one batched forward of uncond + cond).  rgb (n * S * S * 3 bytes,
 * caller's) receives HWC images mapped from [-1,1] to [0,255], rounded and
 * clamped.  progress (may be NULL) is called after each step with the steps
 * done so far and the total over all batches of this call. */
int sf_diffusion_generate(sf_diffusion_t *m, const char *const *prompts, int n,
                          const uint64_t *seeds, const sf_diffusion_opts_t *o, uint8_t *rgb,
                          void (*progress)(int step, int steps, void *user), void *user);

/* Frees the pipeline and, on CUDA, hands the allocator's cache back to the
 * device; *m becomes NULL. */
void sf_diffusion_free(sf_diffusion_t **m);

/* ---- toy pipelines (tests, dry runs) ----
 *
 * Tiny random-weight TorchScript modules with the contract's signatures,
 * built in C++ (torch::jit::Module::define, no Python), plus
 * sf-diffusion.json (SD 1.x's schedule; defaults 8 steps, eta 0, guidance
 * 1.5) and copies of the CLIP tokenizer files, written to dir (created if
 * needed).  The text encoder is an embedding table of the tokenizer's
 * vocabulary; the unet predicts the exact noise for Gaussian data around a
 * mean made of a random pattern and the prompt's embeddings, bent by a 3x3
 * convolution of x and a timestep term, so images depend on the prompt and
 * the seed.  latent = 0: 3 channels of 16x16, and the unet returns 6, as
 * IF's does; latent = 1: 4 latent channels of 8x8, latent_scale 2 and a
 * decoder (2x nearest upsampling, a per-pixel map to RGB) to 16x16.
 * hook = 1 adds a guidance module, the gradient of a Gaussian log-density,
 * drawn after the others: the same seed with and without it gives the same
 * text encoder and unet.  Every operation computes each sample on its own,
 * so batches do not change results. */
int sf_diffusion_write_toy(const char *dir, const char *clip_vocab, const char *clip_merges,
                           int latent, int hook, uint64_t seed, char *err, size_t errlen);

/* A toy DeepFloyd IF cascade: a T5 tokenizer (a copy of spm_model, a T5
 * spiece.model, as DIR/spiece.model), a text encoder that is an embedding
 * table of its vocabulary (the pad and end rows zero), stage I as the toy
 * unet above on 3 x 64 x 64 returning 6 channels (noise, then a variance in
 * [-1, 1]) with IF's stage I scheduler (ddpm, squaredcos_cap_v2,
 * learned_range, thresholding 0.95 / 1.5; defaults 8 steps, guidance 2),
 * and with upscaler = 1 stage II to 256 x 256: the exact noise for data
 * around the upscaled image (recovered from its noised copy and
 * noise_level), nudged by the prompt, with IF's stage II scheduler
 * (sample_max_value 1.0; defaults 4 steps, guidance 2, noise_level 250).
 * Batch-independent as the other toys. */
int sf_diffusion_write_toy_if(const char *dir, const char *spm_model, int upscaler, uint64_t seed, char *err,
                              size_t errlen);

/* An IF-shaped pipeline (t5 tokenizer, ddpm, learned_range, thresholding)
 * on 3 x 8 x 8 whose unet returns `value` in its 3 noise channels and
 * `var` in its 3 variance channels, and with upscaler = 1 a stage II to
 * 20 x 20 whose unet does the same plus 0.25 times its conditioning
 * channels (the noised upscaled image) in the noise: the cascade can then
 * be checked against the plain-C maths alone.  Stage I: linear betas
 * 0.01..0.2 over 20 timesteps, thresholding 0.9 / 1.5, 5 steps; stage II
 * the same with sample_max_value 1.2 and 4 steps, noised with linear betas
 * 0.02..0.3 over 20 to noise_level 6; guidance 1 in both. */
int sf_diffusion_write_const_if(const char *dir, const char *spm_model, float value, float var, int upscaler,
                                char *err, size_t errlen);

/* A pixel pipeline (3 channels, 8x8) whose unet returns `value` everywhere
 * in out_channels channels (out_channels < 3 breaks the contract, for
 * tests), with the toy text encoder: the sampler's loop can then be
 * checked against sf_ddim_step alone. */
int sf_diffusion_write_const(const char *dir, const char *clip_vocab, const char *clip_merges,
                             float value, int out_channels, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
