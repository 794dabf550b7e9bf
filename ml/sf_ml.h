/* sf_ml.h: the model shim — plain C over libtorch.
 *
 * Everything shiftforge does with neural networks goes through this header:
 * the C++ inside ml/ never leaks out, every C++ exception is caught at the
 * boundary and becomes a negative SF_E… code plus a message (the object's
 * errstr, and sf_ml_errstr() for the calling thread).
 *
 * This part holds the runtime (threads, BLAS check, devices, the CUDA
 * cache), GPT-2 with a value head — the caption policy — with KV-cache
 * sampling, the SFT step and TRL's classic PPO step, and weights as bytes.
 * Tensors cross the boundary as plain row-major float / int32 arrays whose
 * shapes are written next to each parameter.  Weights are float32; a model
 * may be cast to bf16 or fp16 for inference (sf_gpt2_set_dtype), and its
 * outputs stay float32.
 *
 * Threading: a model object is used by one thread at a time (the worker's
 * model thread, the learner's update thread); different objects may be used
 * from different threads.
 */
#ifndef SF_ML_H
#define SF_ML_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- runtime ---- */

typedef struct {
    int threads;          /* intra-op threads (torch and OpenBLAS); 0 = number of CPUs */
    int quiet;            /* 1: do not print the BLAS warning to stderr */
    int malloc_default;   /* 1: leave glibc malloc's settings alone (see sf_ml_init) */
} sf_ml_opts_t;

/* Sets the thread counts and checks which BLAS is loaded.  Call once at
 * start-up, before any model work; later calls only change the intra-op
 * thread count.  Debian's libtorch runs some 50x slower on the reference
 * BLAS, so a missing OpenBLAS is reported (once, on stderr, and through
 * sf_ml_blas_name()) but is not an error.
 *
 * Unless opts->malloc_default, it also keeps glibc from handing large freed
 * blocks back to the kernel (M_MMAP_MAX 0, a large M_TRIM_THRESHOLD): every
 * training step allocates and frees logits of (batch, tokens, 50257) floats,
 * and on a VM the page faults of fresh mappings cost more than the maths
 * (measured: PPO step of the tiny config 25 s -> see docs/performance.md).  The
 * price is that the process keeps its peak heap. */
int sf_ml_init(const sf_ml_opts_t *opts);

/* The BLAS library that sgemm_ resolves to (a path), and 1 if it is
 * OpenBLAS or MKL, 0 if it is something slow, -1 if unknown. */
const char *sf_ml_blas_name(void);
int sf_ml_blas_fast(void);

/* Checks a device string: "cpu", "cuda" or "cuda:N".  SF_EUNSUPPORTED when
 * libtorch was built without CUDA or the GPU does not exist. */
int sf_ml_device_check(const char *device);

/* Number of CUDA devices libtorch sees (0 on CPU-only builds). */
int sf_ml_cuda_count(void);

/* Hands the CUDA caching allocator's unused blocks back to the driver (after
 * freeing a model, so that another process or a larger model can have the
 * memory).  A no-op without CUDA, or where the shim was built without the
 * CUDA headers (Debian's CPU libtorch). */
void sf_ml_empty_cache(void);

/* The last error message of the calling thread ("" if none). */
const char *sf_ml_errstr(void);

/* ---- GPT-2 with a value head ---- */

typedef struct {
    int n_layer;          /* 12 for GPT-2 124M */
    int n_head;           /* 12 */
    int n_embd;           /* 768 */
    int n_ctx;            /* 1024 (HF: n_positions) */
    int vocab_size;       /* 50257 */
    int eos_id;           /* 50256 */
    float ln_eps;         /* 1e-5 */
} sf_gpt2_config_t;

/* The real GPT-2 small (124M) configuration. */
void sf_gpt2_config_124m(sf_gpt2_config_t *c);

/* Reads an HF config.json (n_layer, n_head, n_embd, n_positions or n_ctx,
 * vocab_size, layer_norm_epsilon, eos_token_id; absent ones keep the 124M
 * values, as HF's GPT2Config does).  A model_type other than "gpt2", or
 * architectures other than GPT2LMHeadModel / GPT2Model / GPT2DoubleHeadsModel,
 * is SF_EUNSUPPORTED "unknown architecture 'llama' in PATH"; so are the
 * variants this code does not implement (activation_function other than
 * gelu_new, n_inner other than 4 n_embd, untied embeddings, unscaled or
 * layer-scaled attention).  A file that is not JSON is SF_EFORMAT. */
int sf_gpt2_config_load(const char *path, sf_gpt2_config_t *c, char *err, size_t errlen);

/* Checks that a configuration is usable (positive sizes, heads divide the
 * width, ids inside the vocabulary). */
int sf_gpt2_config_check(const sf_gpt2_config_t *c, char *err, size_t errlen);

typedef struct sf_gpt2_s sf_gpt2_t;

/* A GPT-2 with a value head, weights drawn as HF initialises them (normal
 * 0.02, residual projections scaled by 1/sqrt(2 n_layer)) from `seed`, on
 * `device`.  The caller frees it with sf_gpt2_free(). */
int sf_gpt2_new(const sf_gpt2_config_t *c, const char *device, uint64_t seed, sf_gpt2_t **out,
                char *err, size_t errlen);

/* Loads an HF checkpoint: `path` is a directory with config.json and
 * model.safetensors, or a .safetensors file written by sf_gpt2_save (its
 * config travels in the metadata) or sitting next to a config.json.  HF names
 * with or without the "transformer." prefix; F32, F16 or BF16 data;
 * lm_head.weight and attention-mask buffers are ignored (lm_head is tied to
 * wte).  A file without the value head ("v_head.summary.*") gets a fresh
 * one, as TRL does.  The model is float32 (sf_gpt2_set_dtype casts it).
 *
 * Errors name the file: a folder's config.json is checked first (see
 * sf_gpt2_config_load); a folder without model.safetensors is SF_ENOTFOUND,
 * saying what it holds instead (pytorch_model.bin is not read: convert it);
 * a truncated file, a tensor of the wrong shape (both shapes given) or of a
 * non-float dtype (I64, U8, ...) is SF_EFORMAT with the tensor's name; a
 * missing tensor is SF_ENOTFOUND. */
int sf_gpt2_load(const char *path, const char *device, sf_gpt2_t **out, char *err, size_t errlen);

/* Saves the weights with HF names (plus v_head.summary.*) as safetensors,
 * the config in the metadata.  Always F32, also from a bf16 / fp16 model
 * (then holding the rounded values). */
int sf_gpt2_save(sf_gpt2_t *m, const char *path);

/* Weights as bytes, for publishing policy versions: a safetensors image in
 * a malloc'd buffer the caller frees. */
int sf_gpt2_to_bytes(sf_gpt2_t *m, uint8_t **buf, size_t *len);

/* Loads weights from such an image into an existing model of the same
 * configuration (the worker's path: no reallocation).  A bf16 / fp16 model
 * stays in its dtype: the float32 image is rounded into it. */
int sf_gpt2_load_bytes(sf_gpt2_t *m, const void *buf, size_t len);

/* A new model from such an image (its configuration from the metadata). */
int sf_gpt2_from_bytes(const void *buf, size_t len, const char *device, sf_gpt2_t **out,
                       char *err, size_t errlen);

/* A copy of m's weights in a new model, on the same device, in the same
 * dtype. */
int sf_gpt2_clone(sf_gpt2_t *m, sf_gpt2_t **out);

void sf_gpt2_free(sf_gpt2_t **m);

/* The model's configuration, parameter count (value head included) and
 * last error. */
const sf_gpt2_config_t *sf_gpt2_config(const sf_gpt2_t *m);
int64_t sf_gpt2_num_params(const sf_gpt2_t *m);
const char *sf_gpt2_errstr(const sf_gpt2_t *m);

/* Casts the weights to "fp32", "bf16" or "fp16" for inference: forward and
 * sampling run in that dtype (the tied lm_head in float32 on the cast
 * weights: GPT-2's logits reach magnitudes near 100, where bf16's step is
 * 0.5), and their outputs stay float32 arrays.  SFT and PPO steps on a model
 * that is not fp32 return SF_EUNSUPPORTED.  Casting back to fp32 does not
 * restore the precision a cast lost (reload the weights for that).  fp16 needs
 * kernels the device has: Debian's libtorch 1.13 has no fp16 matmul on the
 * CPU, so there it is SF_EUNSUPPORTED and the model is unchanged (use bf16
 * on the CPU; fp16 is for CUDA).  SF_EINVAL for an unknown name. */
int sf_gpt2_set_dtype(sf_gpt2_t *m, const char *dtype);

/* The weights' dtype: "fp32", "bf16" or "fp16" (static string). */
const char *sf_gpt2_dtype(const sf_gpt2_t *m);

/* Forward pass over a padded batch.
 *   tokens  (B, T)  ids
 *   mask    (B, T)  1 for real tokens, 0 for padding; NULL = all real.  Any
 *                   padding layout works (left-padded prompts, right-padded
 *                   responses): positions count real tokens only.
 *   logits  (B, T, V) out, or NULL
 *   values  (B, T)    out (value head), or NULL */
int sf_gpt2_forward(sf_gpt2_t *m, const int32_t *tokens, const uint8_t *mask, int B, int T,
                    float *logits, float *values);

/* ---- sampling ---- */

typedef struct {
    int max_new_tokens;   /* default 32 */
    float temperature;    /* default 1 */
    int top_k;            /* 0 = off (the PPO default: pure sampling) */
    float top_p;          /* 1 = off */
    int eos_id;           /* stop token; -1 = the config's eos_id; -2 = never stop */
    int use_cache;        /* 1 (default): KV cache; 0: recompute the whole prefix each step */
    uint64_t seed;        /* the draws depend only on the seed, not on the device */
} sf_sample_opts_t;

void sf_sample_opts_default(sf_sample_opts_t *o);

/* Responses, one row per prompt, right-padded with the eos id.
 *   tokens   (n, max_new)
 *   logprobs (n, max_new)  log p(token) under the model's own distribution
 *                          (before temperature, top-k, top-p), which is what
 *                          PPO's ratio needs; 0 after the end
 *   values   (n, max_new)  the value head at the state the token was drawn in
 *   lengths  (n)           tokens up to and including the eos
 * Owned by the struct; free with sf_samples_free(). */
typedef struct {
    int n, max_new;
    int32_t *tokens;
    float *logprobs;
    float *values;
    int *lengths;
} sf_samples_t;

void sf_samples_free(sf_samples_t *s);

/* Samples a response for each of n prompts.  prompts (n, prompt_stride) with
 * prompt_lens[i] real tokens at the start of row i (1 <= len <= stride).
 * Prompts are left-padded inside, so any mix of lengths works. */
int sf_gpt2_sample(sf_gpt2_t *m, const int32_t *prompts, const int *prompt_lens, int n,
                   int prompt_stride, const sf_sample_opts_t *opts, sf_samples_t *out);

/* ---- SFT ---- */

/* One optimiser step (Adam, learning rate lr) of next-token loss on the
 * response only: seqs (n, stride) hold prompt then response; prompt_lens[i]
 * and seq_lens[i] delimit them (prompt_len >= 1, seq_len > prompt_len).
 * *loss is the mean loss over response tokens before the step.
 * SF_EUNSUPPORTED when m is not fp32 (see sf_gpt2_set_dtype). */
int sf_gpt2_sft_step(sf_gpt2_t *m, const int32_t *seqs, const int *prompt_lens,
                     const int *seq_lens, int n, int stride, float lr, float max_grad_norm,
                     float *loss);

/* A whole SFT: `steps` steps of `batch` rows drawn uniformly with
 * replacement (splitmix64 from seed), learning rate rising linearly over
 * `warmup` steps to lr, then cosine down to lr_min. */
typedef struct {
    int steps, batch, warmup;
    float lr, lr_min, max_grad_norm;
    uint64_t seed;
} sf_sft_opts_t;

/* steps 1000, batch 16, warmup 100, lr 3e-3 -> 3e-4, no clipping, seed 5. */
void sf_sft_opts_default(sf_sft_opts_t *o);

/* Called after each step with its loss; a non-zero return stops the SFT
 * (sf_gpt2_sft then returns SF_ECANCELED). */
typedef int (*sf_sft_progress_fn)(void *arg, int step, int steps, float loss);

/* Runs o->steps steps of sf_gpt2_sft_step over the n rows (layout of
 * sf_gpt2_sft_step).  *first_loss is the first step's loss, *last_loss the
 * mean of the last min(25, steps) (either may be NULL). */
int sf_gpt2_sft(sf_gpt2_t *m, const int32_t *seqs, const int *prompt_lens, const int *seq_lens, int n,
                int stride, const sf_sft_opts_t *o, sf_sft_progress_fn progress, void *arg,
                float *first_loss, float *last_loss);

/* ---- PPO (TRL's classic PPOTrainer) ---- */

typedef enum { SF_KL_KL = 0, SF_KL_ABS = 1, SF_KL_MSE = 2 } sf_kl_penalty_t;

typedef struct {
    float learning_rate;      /* 1.41e-5 (Adam) */
    int mini_batch_size;      /* 1 */
    int ppo_epochs;           /* 4 */
    float gamma;              /* 1 */
    float lam;                /* 0.95 */
    float cliprange;          /* 0.2 */
    float cliprange_value;    /* 0.2 */
    float vf_coef;            /* 0.1 */
    int adap_kl_ctrl;         /* 1 */
    float init_kl_coef;       /* 0.2 */
    float target;             /* 6 (target KL per sequence, nats) */
    float horizon;            /* 10000 */
    sf_kl_penalty_t kl_penalty; /* SF_KL_KL: logp - logp_ref */
    float max_grad_norm;      /* 0 = no clipping (TRL: None) */
    float ratio_threshold;    /* 10: a minibatch whose mean ratio exceeds it is skipped */
    int early_stopping;       /* 0 */
    float target_kl;          /* 1: with early_stopping, stop epochs when approx KL > 1.5x */
    float score_clip;         /* 0 = off */
    int use_score_scaling;    /* 0: 1 divides scores by their running std (TRL) */
    int use_score_norm;       /* 0: with scaling, also subtract the running mean */
    int whiten_rewards;       /* 0 */
    int prompt_baseline;      /* 0; 1: subtract from each score the mean score of the
                                 batch's other rollouts of the same prompt (leave-one-out;
                                 a rollout whose prompt is alone in the batch: of all the
                                 others), before scaling and clipping */
    int use_rollout_logprobs; /* 0: recompute old log-probs and values with the current
                                 policy, as TRL does; 1: use the rollout's (behaviour policy,
                                 for workers a version or two behind) */
    uint64_t seed;            /* minibatch shuffling */
} sf_ppo_config_t;

void sf_ppo_config_default(sf_ppo_config_t *c);

/* A batch of rollouts as plain arrays, as workers produce them.
 *   query        (n, query_stride)     prompt ids, query_len[i] real ones first
 *   response     (n, response_stride)  response ids, response_len[i] >= 1 real ones first
 *   logprobs     (n, response_stride)  behaviour log-probs (may be NULL unless
 *                                      use_rollout_logprobs)
 *   values       (n, response_stride)  behaviour values (may be NULL, same rule)
 *   scores       (n)                   the scalar reward of each response */
typedef struct {
    int n;
    int query_stride, response_stride;
    const int32_t *query;
    const int *query_len;
    const int32_t *response;
    const int *response_len;
    const float *logprobs;
    const float *values;
    const float *scores;
} sf_ppo_batch_t;

/* What TRL logs per step (names as in TRL). */
typedef struct {
    float mean_score;        /* ppo/mean_scores (before scaling and clipping) */
    float kl;                /* objective/kl: mean over sequences of sum_t (logp - logp_ref) */
    float kl_coef;           /* objective/kl_coef: beta used for this step */
    float entropy;           /* objective/entropy: mean over sequences of -sum_t logp */
    float policy_entropy;    /* ppo/policy/entropy: mean token entropy of the logits */
    float pg_loss;           /* ppo/loss/policy */
    float vf_loss;           /* ppo/loss/value */
    float total_loss;        /* ppo/loss/total */
    float clipfrac;          /* ppo/policy/clipfrac */
    float vf_clipfrac;       /* ppo/val/clipfrac */
    float approxkl;          /* ppo/policy/approxkl */
    float policykl;          /* ppo/policy/policykl */
    float ratio_mean;        /* mean of exp(logp - logp_old) */
    float returns_mean;      /* ppo/returns/mean */
    float values_mean;       /* ppo/val/mean */
    float advantages_mean;   /* mean advantage before whitening */
    float next_kl_coef;      /* beta after the controller's update */
    int minibatches;         /* optimiser steps taken */
    int skipped;             /* minibatches dropped by the ratio threshold */
} sf_ppo_stats_t;

typedef struct sf_ppo_s sf_ppo_t;

/* A trainer for `policy` (borrowed; it must outlive the trainer).  `ref` is
 * the frozen reference (borrowed), or NULL for a frozen copy of the policy as
 * it is now (TRL's create_reference_model).  Owns its Adam state and KL
 * controller. */
int sf_ppo_new(sf_gpt2_t *policy, sf_gpt2_t *ref, const sf_ppo_config_t *cfg, sf_ppo_t **out,
               char *err, size_t errlen);
void sf_ppo_free(sf_ppo_t **p);
const char *sf_ppo_errstr(const sf_ppo_t *p);

/* One PPO step over a batch of rollouts (all of it: TRL's batch_size is the
 * batch's n).  SF_EUNSUPPORTED when the policy is not fp32; the reference
 * may be bf16 (it only runs forward). */
int sf_ppo_step(sf_ppo_t *p, const sf_ppo_batch_t *b, sf_ppo_stats_t *stats);

/* The KL coefficient beta now. */
float sf_ppo_kl_coef(const sf_ppo_t *p);

/* ---- the PPO pieces, on plain arrays (the step uses the same code) ----
 * All (n, T) arrays are row-major, mask 1 for response tokens. */

/* Per-token rewards: -beta * penalty(logp - logp_ref), plus score[i] at the
 * last masked token of row i. */
int sf_ppo_rewards(const float *scores, const float *logprobs, const float *ref_logprobs,
                   const float *mask, int n, int T, float beta, sf_kl_penalty_t pen,
                   float *rewards);

/* GAE: advantages and returns (= advantages + values), not whitened. */
int sf_ppo_gae(const float *values, const float *rewards, const float *mask, int n, int T,
               float gamma, float lam, float *advantages, float *returns);

/* Masked whitening with Bessel's correction and eps 1e-8; shift_mean 0 adds
 * the mean back (as TRL does for rewards). */
int sf_ppo_whiten(const float *x, const float *mask, int count, int shift_mean, float *out);

/* TRL's loss on one minibatch; fills pg_loss, vf_loss, total_loss,
 * clipfrac, vf_clipfrac, approxkl, policykl, ratio_mean of *s (and returns
 * them even when the ratio guard would skip the minibatch). */
int sf_ppo_loss(const float *old_logprobs, const float *logprobs, const float *old_values,
                const float *vpreds, const float *advantages, const float *returns,
                const float *mask, int count, const sf_ppo_config_t *cfg, sf_ppo_stats_t *s);

/* The adaptive KL controller: value *= 1 + clip(kl/target - 1, -0.2, 0.2) *
 * n_steps / horizon.  Returns the new value. */
float sf_ppo_kl_update(float value, float current_kl, int n_steps, float target, float horizon);

#ifdef __cplusplus
}
#endif

#endif
