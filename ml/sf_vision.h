/* sf_vision.h: the vision models of the shim — CLIP and image classifiers.
 *
 * CLIP is the embedder behind the reward, the filter, the reference
 * statistics and every metric of the method; the classifiers (ConvNeXt,
 * ViT) are the models whose robustness the generated data tests.  Both are
 * the real architectures, parameterised by config, with the parameter names
 * of HF's CLIPModel and of timm, so the published checkpoints load into the
 * same code that trains the small world models here.
 *
 * Same conventions as sf_ml.h (call sf_ml_init first): plain C, opaque
 * objects used by one thread at a time, negative SF_E… codes with the
 * object's errstr, images as float NCHW arrays and tokens as int32 arrays.
 */
#ifndef SF_VISION_H
#define SF_VISION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CLIP ---- */

typedef struct {
    /* vision tower (HF CLIPVisionConfig) */
    int image_size;       /* 224 */
    int patch_size;       /* 32 */
    int vision_width;     /* 768 */
    int vision_layers;    /* 12 */
    int vision_heads;     /* 12 */
    int vision_mlp;       /* 3072 */
    /* text tower (HF CLIPTextConfig) */
    int vocab_size;       /* 49408 */
    int context_length;   /* 77 (max_position_embeddings) */
    int text_width;       /* 512 */
    int text_layers;      /* 12 */
    int text_heads;       /* 8 */
    int text_mlp;         /* 2048 */
    int eot_id;           /* 49407: the text feature is taken at the first EOT token */
    int embed_dim;        /* 512 (projection_dim) */
    float ln_eps;         /* 1e-5 */
    int quick_gelu;       /* 1: x * sigmoid(1.702 x) (CLIP); 0: erf GELU */
    float mean[3], std[3];/* preprocessing normalisation (OpenAI CLIP's) */
} sf_clip_config_t;

void sf_clip_config_vit_b32(sf_clip_config_t *c);
/* The small CLIP trained on the embedded world (32x32 inputs); vocab_size
 * must then be set to the tokenizer's. */
void sf_clip_config_world(sf_clip_config_t *c);
int sf_clip_config_check(const sf_clip_config_t *c, char *err, size_t errlen);

/* Reads an HF CLIPConfig config.json (path): model_type "clip" (another, or
 * architectures other than CLIPModel, is SF_EUNSUPPORTED "unknown
 * architecture 'x' in PATH"); text_config {vocab_size, hidden_size,
 * intermediate_size, num_hidden_layers, num_attention_heads,
 * max_position_embeddings, hidden_act, layer_norm_eps, eos_token_id},
 * vision_config {image_size, patch_size, hidden_size, intermediate_size,
 * num_hidden_layers, num_attention_heads, hidden_act, layer_norm_eps} (the
 * legacy text_config_dict / vision_config_dict override them, as in HF) and
 * projection_dim.  Absent keys take HF's defaults (CLIPTextConfig,
 * CLIPVisionConfig, CLIPConfig), which are ViT-B/32's; mean/std stay
 * OpenAI's.
 *   hidden_act: "quick_gelu" or "gelu"; both towers must agree, and so must
 *     their layer_norm_eps (SF_EUNSUPPORTED otherwise).
 *   eot_id: eos_token_id, except HF's legacy value 2 (OpenAI's converted
 *     configs), which becomes vocab_size - 1 (49407): HF pools those models
 *     at the argmax of the ids, which for any text from CLIP's tokenizer is
 *     the first end token, the last id of the vocabulary.  (A row without an
 *     end token is pooled at its last token here, at its largest id by HF.)
 * SF_EFORMAT for a file that is not JSON or a value of the wrong type. */
int sf_clip_config_load(const char *config_json, sf_clip_config_t *c, char *err, size_t errlen);

typedef struct sf_clip_s sf_clip_t;

/* A CLIP with weights drawn from `seed` (normal 0.02, unit LayerNorms,
 * logit_scale ln(50)), on `device`. */
int sf_clip_new(const sf_clip_config_t *c, const char *device, uint64_t seed, sf_clip_t **out,
                char *err, size_t errlen);
/* Loads a .safetensors with HF CLIPModel names: one written by sf_clip_save
 * (config in its metadata), or an HF model.safetensors with `c` given (c may
 * be NULL only for the former).  Missing, misshapen or non-float tensors are
 * SF_ENOTFOUND / SF_EFORMAT with the tensor's name; extra tensors (e.g.
 * position_ids buffers) are ignored. */
int sf_clip_load(const char *path, const sf_clip_config_t *c, const char *device,
                 sf_clip_t **out, char *err, size_t errlen);

/* Loads a CLIP folder: config.json (HF, see sf_clip_config_load) with
 * model.safetensors (HF CLIPModel names, F32/F16/BF16; buffers such as
 * position_ids ignored), and preprocessor_config.json's image_mean /
 * image_std when present; or, without config.json, a model.safetensors
 * written by sf_clip_save (config in its metadata: the layout of
 * models/clip-world).  vocab.json and merges.txt are the caller's
 * (common/text/clip_bpe.h).  A path to a file is loaded as sf_clip_load(path,
 * NULL).  Errors as for sf_gpt2_load: each names the file and, for a tensor,
 * its name, shapes or dtype. */
int sf_clip_load_dir(const char *dir, const char *device, sf_clip_t **out, char *err, size_t errlen);

/* Saves F32 weights, also from a bf16 / fp16 model (the rounded values). */
int sf_clip_save(sf_clip_t *m, const char *path);
void sf_clip_free(sf_clip_t **m);

/* Casts the weights to "fp32", "bf16" or "fp16" for inference
 * (encode_image, encode_text); embeddings stay float32 and are normalised in
 * float32.  sf_clip_train_step on a model that is not fp32 is
 * SF_EUNSUPPORTED.  As sf_gpt2_set_dtype: fp16 is SF_EUNSUPPORTED (model
 * unchanged) where the device lacks the kernels (the CPU with libtorch 1.13),
 * and a cast back to fp32 keeps the rounded values. */
int sf_clip_set_dtype(sf_clip_t *m, const char *dtype);
const char *sf_clip_dtype(const sf_clip_t *m);    /* "fp32", "bf16" or "fp16" */

const sf_clip_config_t *sf_clip_config(const sf_clip_t *m);
const char *sf_clip_errstr(const sf_clip_t *m);
int64_t sf_clip_num_params(const sf_clip_t *m);
/* Parameter i in the module's order: its HF name (borrowed) and shape
 * (up to 4 dims; *ndim set).  NULL when i is out of range. */
const char *sf_clip_param(const sf_clip_t *m, int i, int *ndim, int64_t shape[4]);
int sf_clip_param_count(const sf_clip_t *m);

/* CLIP preprocessing of one 8-bit RGB HWC image of w x h: bilinear resize of
 * the shorter side to image_size, centre crop, /255, (x - mean) / std.
 * out: (3, image_size, image_size). */
int sf_clip_preprocess(const sf_clip_config_t *c, const uint8_t *rgb, int w, int h, float *out);

/* L2-normalised embeddings.
 *   pixels (B, 3, S, S) preprocessed images     -> out (B, embed_dim)
 *   tokens (B, T) ids, T <= context_length, each row holding an eot_id (the
 *          feature is read there; rows without one use their last token) */
int sf_clip_encode_image(sf_clip_t *m, const float *pixels, int B, float *out);
int sf_clip_encode_text(sf_clip_t *m, const int32_t *tokens, int B, int T, float *out);
float sf_clip_logit_scale(const sf_clip_t *m);   /* exp(logit_scale) */

/* One AdamW step (betas 0.9/0.999, weight decay 0.05 on matrices) of the
 * symmetric contrastive loss over B pairs; lr as given (the caller schedules
 * it).  *loss before the step, *acc the fraction of images whose own caption
 * scores highest.  fp32 models only (SF_EUNSUPPORTED otherwise). */
int sf_clip_train_step(sf_clip_t *m, const float *pixels, const int32_t *tokens, int B, int T,
                       float lr, float *loss, float *acc);
/* The same step with n_tied (<= B) more token rows after the B captions: row
 * B + j is a variant of caption j that must embed alike (unknown words added,
 * punctuation), and tied_weight * mean(1 - cosine(row B + j, row j)) joins the
 * loss.  *loss includes it; n_tied 0 is sf_clip_train_step. */
int sf_clip_train_step_tied(sf_clip_t *m, const float *pixels, const int32_t *tokens, int B, int T, int n_tied,
                            float tied_weight, float lr, float *loss, float *acc);

/* ---- classifiers (timm) ---- */

typedef enum { SF_CLS_CONVNEXT = 0, SF_CLS_VIT = 1 } sf_cls_arch_t;

typedef struct {
    sf_cls_arch_t arch;
    int n_classes;        /* 1000 */
    int image_size;       /* 224 (ViT: fixes the position table; ConvNeXt: any) */
    /* ConvNeXt */
    int n_stages;         /* 4 */
    int depths[4];        /* atto: 2 2 6 2 */
    int dims[4];          /* atto: 40 80 160 320 */
    int conv_mlp;         /* atto: 1 (1x1 convs, timm names mlp.fc1/fc2 with 4-d weights) */
    int stem_patch;       /* 4 */
    float ls_init;        /* layer scale init, 1e-6 */
    /* ViT */
    int patch_size;       /* 16 */
    int width;            /* tiny: 192 */
    int depth;            /* 12 */
    int heads;            /* 3 */
    int mlp_ratio;        /* 4 */
    float ln_eps;         /* 1e-6 for both */
    float mean[3], std[3];/* ImageNet normalisation */
    /* timm's evaluation transform (pretrained_cfg): the shorter side resized
     * to floor(image_size / crop_pct) with `interpolation` as PIL resizes,
     * then a centre crop of image_size (sf_classifier_preprocess). */
    float crop_pct;       /* atto 0.95, tiny 0.9 */
    int interpolation;    /* SF_INTERP_BICUBIC for both */
} sf_classifier_config_t;

enum { SF_INTERP_BILINEAR = 0, SF_INTERP_BICUBIC = 1 };

void sf_classifier_config_convnext_atto(sf_classifier_config_t *c, int n_classes);
void sf_classifier_config_vit_tiny(sf_classifier_config_t *c, int n_classes);
int sf_classifier_config_check(const sf_classifier_config_t *c, char *err, size_t errlen);

typedef struct sf_classifier_s sf_classifier_t;

int sf_classifier_new(const sf_classifier_config_t *c, const char *device, uint64_t seed,
                      sf_classifier_t **out, char *err, size_t errlen);
/* Loads a file written by sf_classifier_save, or a timm safetensors with `c`
 * given.  Errors as for sf_clip_load. */
int sf_classifier_load(const char *path, const sf_classifier_config_t *c, const char *device,
                       sf_classifier_t **out, char *err, size_t errlen);
int sf_classifier_save(sf_classifier_t *m, const char *path);
void sf_classifier_free(sf_classifier_t **m);

/* Loads a timm folder as timm publishes models on the HF hub: config.json
 * ({"architecture": "convnext_atto" | "vit_tiny_patch16_224" | ...,
 * "num_classes", "pretrained_cfg": {"input_size", "crop_pct",
 * "interpolation", "mean", "std", ...}}) with model.safetensors (or its
 * sharded index) in timm's parameter names.  An architecture this build does
 * not know is SF_EUNSUPPORTED naming it; a missing or misshapen tensor
 * SF_ENOTFOUND / SF_EFORMAT naming it; a head whose class count disagrees
 * with num_classes SF_EFORMAT naming both.  Errors name the folder. */
int sf_classifier_load_dir(const char *dir, const char *device, sf_classifier_t **out, char *err,
                           size_t errlen);

/* timm's evaluation transform of one 8-bit RGB HWC image of w x h, exactly
 * as torchvision does it on a PIL image (PIL's resampling, rounded to 8
 * bits): the shorter side resized to floor(image_size / crop_pct) with the
 * config's interpolation, a centre crop of image_size, /255, (x - mean) / std.
 * out: (3, image_size, image_size). */
int sf_classifier_preprocess(const sf_classifier_config_t *c, const uint8_t *rgb, int w, int h, float *out);

/* The training state — weights and the AdamW moments and step — for a
 * fine-tuning job that must resume where a killed worker stopped.  load_state
 * refuses a file of another configuration (SF_EFORMAT naming it). */
int sf_classifier_save_state(sf_classifier_t *m, const char *path);
int sf_classifier_load_state(sf_classifier_t *m, const char *path);

const sf_classifier_config_t *sf_classifier_config(const sf_classifier_t *m);
const char *sf_classifier_errstr(const sf_classifier_t *m);
int64_t sf_classifier_num_params(const sf_classifier_t *m);
int sf_classifier_param_count(const sf_classifier_t *m);
const char *sf_classifier_param(const sf_classifier_t *m, int i, int *ndim, int64_t shape[4]);

/* pixels (B, 3, S, S) normalised with the config's mean/std -> logits
 * (B, n_classes) (may be NULL) and argmax labels (may be NULL). */
int sf_classifier_forward(sf_classifier_t *m, const float *pixels, int B, float *logits,
                          int *pred);
/* One AdamW step (weight decay 0.05, label smoothing 0.1) of cross-entropy;
 * *loss and *acc (on the batch, before the step) may be NULL. */
int sf_classifier_train_step(sf_classifier_t *m, const float *pixels, const int *labels, int B,
                             float lr, float *loss, float *acc);

#ifdef __cplusplus
}
#endif

#endif
