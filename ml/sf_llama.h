/* sf_llama.h: a LLaMA-architecture causal LM — plain C over libtorch.
 *
 * The instruction model of the corpus phase: HF's LlamaForCausalLM (RMSNorm
 * before attention and MLP, rotary position embeddings in HF's rotate_half
 * convention with the config's rope_theta, grouped-query attention when
 * num_key_value_heads < num_attention_heads, a SwiGLU MLP, a final RMSNorm
 * and an lm_head tied to the embeddings or not, per tie_word_embeddings),
 * loaded from an HF folder: config.json and model.safetensors, or the
 * shards of model.safetensors.index.json, in the dtype asked for.  For the
 * world's own instruction model (trainer/instruct.c) it also trains: fresh
 * weights from a seed, supervised fine-tuning on (prompt, response) rows
 * with AdamW, and saving as an HF folder that sf_llama_load and
 * transformers read.
 *
 * Tensors cross the boundary as row-major int32 ids and float32 logits.
 * Every C++ exception is caught inside; functions return 0 or a negative
 * SF_E… code (common/runtime/error.h) with a message in the caller's err
 * buffer (loading) or the model's errstr.
 *
 * Threading: a model is used by one thread at a time.
 */
#ifndef SF_LLAMA_H
#define SF_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "ml/sf_ml.h"   /* sf_sample_opts_t */

#ifdef __cplusplus
extern "C" {
#endif

/* HF LlamaConfig's fields, as read from config.json. */
typedef struct {
    int num_hidden_layers;         /* 32 for LLaMA-7B */
    int num_attention_heads;       /* 32 */
    int num_key_value_heads;       /* 32 (LLaMA-2-70B: 8); absent: num_attention_heads */
    int hidden_size;               /* 4096 */
    int intermediate_size;         /* 11008 */
    int vocab_size;                /* 32000 */
    int head_dim;                  /* hidden_size / num_attention_heads */
    int max_position_embeddings;   /* 2048 (LLaMA-2: 4096); absent: 2048 */
    int bos_token_id;              /* absent: 1; null: -1 */
    int eos_token_id;              /* absent: 2; null: -1; a list: its first id */
    int tie_word_embeddings;       /* absent: 0 (HF LlamaConfig's default) */
    float rms_norm_eps;            /* absent: 1e-6 */
    float rope_theta;              /* absent: 10000 */
} sf_llama_config_t;

/* Reads an HF config.json.  The five sizes (num_hidden_layers,
 * num_attention_heads, hidden_size, intermediate_size, vocab_size) must be
 * there: HF's defaults for them are LLaMA-7B's, and a tiny checkpoint whose
 * config lost one would otherwise fail later on a tensor's shape, or not at
 * all.  The others take HF's defaults (above).  SF_EFORMAT "PATH: missing
 * key 'hidden_size'" or "...: 'vocab_size' is not an integer"; SF_EUNSUPPORTED
 * for another model_type or architecture, and for the variants this code
 * does not implement (rope_scaling, hidden_act other than silu, attention or
 * MLP biases, a head_dim other than hidden_size / heads); SF_EINVAL for
 * sizes that do not fit together (heads not dividing the width, kv heads not
 * dividing the heads, ids outside the vocabulary). */
int sf_llama_config_load(const char *path, sf_llama_config_t *c, char *err, size_t errlen);

typedef struct sf_llama_s sf_llama_t;

/* Loads an HF folder `dir` onto `device` ("cpu", "cuda", "cuda:N") with
 * weights in `dtype` ("fp32", "bf16", "fp16"; NULL = fp32): config.json
 * (sf_llama_config_load), then model.safetensors or, without it,
 * model.safetensors.index.json and its shards.  Weights of any float dtype
 * (F32, F16, BF16) are converted to `dtype` tensor by tensor, so the model
 * is never held in float32 on the way to bf16.  lm_head.weight is read when
 * tie_word_embeddings is false and ignored otherwise; rotary inv_freq
 * buffers in old checkpoints are ignored.
 *
 * Errors name the file: a missing folder or config.json is SF_EIO; a folder
 * without weights SF_ENOTFOUND (saying what it has instead); a truncated
 * file or a tensor of the wrong shape (both shapes given) SF_EFORMAT with
 * the tensor's name; a missing tensor SF_ENOTFOUND with its name; an
 * unknown dtype SF_EINVAL; fp16 where the device has no fp16 kernels (the
 * CPU, with Debian's libtorch) SF_EUNSUPPORTED.  The caller frees *out with
 * sf_llama_free(). */
int sf_llama_load(const char *dir, const char *device, const char *dtype, sf_llama_t **out, char *err,
                  size_t errlen);

void sf_llama_free(sf_llama_t **m);

/* The model's configuration (valid while m lives), parameter count, weights'
 * dtype ("fp32", "bf16", "fp16") and last error. */
const sf_llama_config_t *sf_llama_config(const sf_llama_t *m);
int64_t sf_llama_num_params(const sf_llama_t *m);
const char *sf_llama_dtype(const sf_llama_t *m);
const char *sf_llama_errstr(const sf_llama_t *m);

/* Forward pass over a right-padded batch.
 *   tokens  (B, T)  ids; row b's first lengths[b] are real, the rest is
 *                   padding of any value (it is not read)
 *   lengths (B)     1 <= lengths[b] <= T; NULL = every row is T long
 *   logits  (B, T, V) out, float32 (also from a bf16 model: its lm_head runs
 *                   in bf16 and the result is widened, as HF does); the
 *                   padded positions are 0
 * Positions are 0.. in every row, and attention is causal, so a row's real
 * positions never see its padding: a row's logits are those of the row
 * alone.  SF_ERANGE when T > max_position_embeddings, SF_EINVAL for an id
 * outside the vocabulary. */
int sf_llama_forward(sf_llama_t *m, const int32_t *tokens, const int *lengths, int B, int T, float *logits);

/* Samples `rows` continuations of one prompt (prompt_len >= 1 ids), each row
 * its own draws, with sf_ml.h's options: max_new_tokens, temperature, top_k,
 * top_p (HF's rules), eos_id (-1: the config's eos_token_id; -2: never
 * stop), use_cache (1: a KV cache of the keys and values after rotation,
 * num_key_value_heads wide; 0: every step recomputes the whole prefix, the
 * reference the cache must match) and seed (splitmix64; one draw per row per
 * step in row order, so the tokens depend only on the seed and the logits).
 * With fp32 weights the tokens are the same with and without the cache; in
 * bf16 the one-position products of the cached steps round differently
 * from the whole-prefix ones, so a draw near a boundary may part them.
 *   out      (rows, max_new_tokens)  ids, padded after a row's end with the
 *                                    eos id (or 0 when there is none)
 *   lengths  (rows)                  tokens up to and including the eos
 * SF_ERANGE when prompt_len + max_new_tokens > max_position_embeddings. */
int sf_llama_sample(sf_llama_t *m, const int32_t *prompt, int prompt_len, int rows, const sf_sample_opts_t *opts,
                    int32_t *out, int *lengths);

/* ---- training ---- */

/* A small config for tests and the world's model: 4 layers, hidden 128, 4
 * heads over 2 key-value heads (head_dim 32), intermediate 352, vocab 2000,
 * 256 positions, tied embeddings, bos 1, eos 2, HF's eps and theta. */
void sf_llama_config_small(sf_llama_config_t *c);

/* A model of config c (borrowed; head_dim is taken from the sizes, the rest
 * checked as for a config.json) on `device` with fresh float32 weights, as
 * HF's _init_weights makes them: the embeddings and every projection
 * N(0, 0.02), the RMSNorm weights 1, drawn on the CPU from `seed` alone
 * (the same seed gives the same weights on any device).  SF_EINVAL for a
 * config that does not fit together; the caller frees *out. */
int sf_llama_new(const sf_llama_config_t *c, const char *device, uint64_t seed, sf_llama_t **out, char *err,
                 size_t errlen);

#define SF_LLAMA_DECAY_COSINE 0
#define SF_LLAMA_DECAY_LINEAR 1

typedef struct {
    int steps;             /* optimiser steps (1000) */
    int batch;             /* rows a step (32) */
    int warmup;            /* steps of linear warmup from lr / warmup to lr (100) */
    float lr, lr_min;      /* peak and final learning rate (2e-3, 2e-4) */
    int decay;             /* after warmup, SF_LLAMA_DECAY_COSINE or _LINEAR to lr_min at the last step */
    float weight_decay;    /* AdamW's, on the matrices only, not the norms (0.1) */
    float beta1, beta2, eps; /* 0.9, 0.95, 1e-8 */
    float max_grad_norm;   /* clip the global gradient norm; 0 = no clipping (1) */
    uint64_t seed;         /* the batches' order (5) */
} sf_llama_sft_opts_t;

void sf_llama_sft_opts_default(sf_llama_sft_opts_t *o);

/* Called after each step (1-based) with its loss and learning rate; a
 * non-zero return stops the training (SF_ECANCELED). */
typedef int (*sf_llama_progress_cb)(void *arg, int step, int steps, float loss, float lr);

/* Supervised fine-tuning: o->steps AdamW steps of next-token cross-entropy
 * on the response tokens only.
 *   seqs        (n, stride)  rows of prompt then response ids (borrowed)
 *   prompt_lens (n)          1 <= prompt_lens[i] < seq_lens[i] <= stride
 *   seq_lens    (n)
 * Position t's logits are scored against token t + 1 for prompt_len - 1 <=
 * t < seq_len - 1 (the first response token to the last, typically </s>),
 * and the loss is their mean over the batch.  A step takes o->batch rows
 * from shuffled epochs over the n rows (splitmix64 from o->seed: each row
 * once per epoch), right-padded to the batch's longest row; rows never
 * see each other's padding (causal attention, positions 0.. in each row).
 * With the same rows, options, seed and torch thread count the weights
 * come out bit for bit the same.  A fresh optimiser each call; the model
 * is in float32 (SF_EUNSUPPORTED otherwise).  *first_loss is the first
 * step's loss, *last_loss the mean of the last min(25, steps) (either may
 * be NULL).  SF_EINVAL names a bad row before any step; SF_ERANGE for a
 * non-finite loss; SF_ECANCELED when progress asked to stop. */
int sf_llama_sft(sf_llama_t *m, const int32_t *seqs, const int *prompt_lens, const int *seq_lens, int n, int stride,
                 const sf_llama_sft_opts_t *o, sf_llama_progress_cb progress, void *arg, float *first_loss,
                 float *last_loss);

/* Writes the model as an HF folder `dir` (created if needed): config.json
 * (model_type llama, LlamaForCausalLM, the config's fields) and
 * model.safetensors (float32, HF's tensor names, no lm_head.weight when
 * tied), each written atomically.  The tokenizer is the caller's to add
 * (tokenizer.model).  SF_EIO names the file that could not be written. */
int sf_llama_save(sf_llama_t *m, const char *dir);

#ifdef __cplusplus
}
#endif

#endif
