/* sf_t5.h: a T5 v1.1 text encoder run as TorchScript — plain C over libtorch.
 *
 * DeepFloyd IF conditions its UNets on the per-token embeddings of
 * T5-v1.1-XXL's encoder, which the IF pipeline runs as a TorchScript module
 * (ml/sf_diffusion.h's text-encoder contract: tokens -> last_hidden_state
 * with attention_mask = tokens != pad).  This module is that encoder,
 * written from the published T5 v1.1 architecture (Raffel et al. 2020 and
 * the v1.1 changes: HF's T5EncoderModel with feed_forward_proj
 * "gated-gelu"), compiled with torch::jit::compile so that it runs through
 * the same TorchScript interpreter as an exported module:
 *   - token embeddings (no scaling), no absolute positions;
 *   - per layer: T5's RMS layer norm (no mean, no bias; variance in
 *     float32) before self-attention and before the feed-forward block,
 *     each added back to the residual stream;
 *   - self-attention without biases and without 1/sqrt(d) scaling, over
 *     num_heads heads of d_kv, plus a relative position bias (bidirectional
 *     buckets, relative_attention_num_buckets of them, logarithmic up to
 *     relative_attention_max_distance) that the first layer's table gives
 *     and every layer shares, plus the padding mask; softmax in float32;
 *   - the gated-GELU feed-forward: wo(gelu_tanh(wi_0 x) * wi_1 x);
 *   - a final RMS layer norm.
 * Dropout is absent (inference only).
 *
 * Its one use today is measuring the encoder's speed on a device
 * (tests/bench/bench_ml_t5.c) with random weights; real weights reach IF
 * through the user's exported TorchScript module.
 *
 * Every C++ exception is caught inside; functions return 0 or a negative
 * SF_E… code (common/runtime/error.h) with a message in the caller's err
 * buffer (creation) or the model's errstr.  A model is used by one thread at
 * a time.
 */
#ifndef SF_T5_H
#define SF_T5_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* HF T5Config's fields that the encoder uses. */
typedef struct {
    int vocab_size;                        /* 32128 */
    int d_model;                           /* 4096 for XXL */
    int d_kv;                              /* 64 */
    int d_ff;                              /* 10240 */
    int num_layers;                        /* 24 encoder layers */
    int num_heads;                         /* 64 */
    int relative_attention_num_buckets;    /* 32 */
    int relative_attention_max_distance;   /* 128 */
    float layer_norm_epsilon;              /* 1e-6 */
    int pad_token_id;                      /* 0: the mask is tokens != pad */
} sf_t5_config_t;

/* google/t5-v1_1-xxl's encoder, as DeepFloyd IF uses it. */
void sf_t5_config_v1_1_xxl(sf_t5_config_t *c);

typedef struct sf_t5_s sf_t5_t;

/* A model of config c (borrowed) with random weights on `device` ("cpu",
 * "cuda", "cuda:N") in `dtype` ("fp32", "bf16", "fp16"; NULL = fp32).  The
 * weights are drawn from torch's CPU generator seeded with `seed` (its own,
 * not the global one), uniform with the standard deviations of HF's
 * T5PreTrainedModel._init_weights (embeddings 1, q (d_model d_kv)^-1/2,
 * k and v d_model^-1/2, o (heads d_kv)^-1/2, wi d_model^-1/2, wo d_ff^-1/2,
 * the position table d_model^-1/2), norms 1.  SF_EINVAL for sizes that do
 * not fit together, SF_EUNSUPPORTED for a dtype the device lacks, SF_ENOMEM
 * when the weights do not fit.  The caller frees *out with sf_t5_free(). */
int sf_t5_create_random(const sf_t5_config_t *c, uint64_t seed, const char *device, const char *dtype,
                        sf_t5_t **out, char *err, size_t errlen);

/* Frees *m and sets it to NULL; a NULL pointer or *m is fine. */
void sf_t5_free(sf_t5_t **m);

/* The encoder's last hidden state for a batch of padded token rows.
 *   tokens  (B, T)     ids (borrowed); positions holding pad_token_id are
 *                      masked out of attention, as IF's tokenizer pads
 *   out     (B, T, D)  float32 (also from a bf16 model), D = d_model
 * SF_EINVAL for an id outside the vocabulary. */
int sf_t5_encode(sf_t5_t *m, const int32_t *tokens, int B, int T, float *out);

/* Writes the model as an HF folder into dir (which must exist): config.json
 * (T5Config's fields, feed_forward_proj "gated-gelu") and model.safetensors
 * in F32 with T5EncoderModel's names (shared.weight,
 * encoder.block.N.layer.0.SelfAttention.q.weight, ...,
 * encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight,
 * encoder.block.N.layer.1.DenseReluDense.wi_0.weight, ...,
 * encoder.final_layer_norm.weight), so that a reference written elsewhere
 * can run the same weights (tools/numerics/t5_ref.py).  SF_EIO names the
 * file that could not be written. */
int sf_t5_save(sf_t5_t *m, const char *dir);

/* The model's configuration (valid while m lives), parameter count,
 * weights' dtype ("fp32", "bf16", "fp16") and last error ("" if none). */
const sf_t5_config_t *sf_t5_config(const sf_t5_t *m);
int64_t sf_t5_num_params(const sf_t5_t *m);
const char *sf_t5_dtype(const sf_t5_t *m);
const char *sf_t5_errstr(const sf_t5_t *m);

#ifdef __cplusplus
}
#endif

#endif
