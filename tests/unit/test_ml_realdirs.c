/* test_ml_realdirs: real model folders and inference dtypes.
 *
 * Operators point workers and the learner at HF checkpoint folders
 * (config.json, model.safetensors, tokenizer files).  None can be downloaded
 * here, so each test writes its folder: a tiny GPT-2 and a tiny CLIP with HF
 * config keys and HF tensor names, some tensors in BF16 and F16 and the
 * buffers HF files carry (position_ids, attn.bias), and broken folders, one
 * fault each, whose errors must name the file, the tensor, the shapes or the
 * dtype.  Then bf16 (and fp16 where the CPU has the kernels) inference against
 * fp32, and training refused on a cast model.
 */
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/text/clip_bpe.h"
#include "common/runtime/error.h"
#include "common/formats/safetensors.h"
#include "ml/sf_ml.h"
#include "ml/sf_vision.h"
#include "sf_test.h"
#include "sf_test_dirs.h"

/* ---- rewriting a safetensors image as an HF file ---- */

/* The storage dtype of each float tensor in the HF files here: a mix, as
 * real checkpoints converted or saved in half precision have. */
static sf_st_dtype_t gpt2_dtype(const char *name) {
    if (!strcmp(name, "wte.weight") || strstr(name, "mlp.")) return SF_ST_BF16;
    if (strstr(name, "attn.c_attn.")) return SF_ST_F16;
    return SF_ST_F32;
}

static sf_st_dtype_t clip_dtype(const char *name) {
    if (strstr(name, "token_embedding") || (strstr(name, "vision_model") && strstr(name, "mlp.")))
        return SF_ST_BF16;
    if (strstr(name, "text_model") && strstr(name, "self_attn.")) return SF_ST_F16;
    return SF_ST_F32;
}

static float round_to(sf_st_dtype_t dt, float x) {
    if (dt == SF_ST_BF16) return sf_st_bf16_to_f32(sf_st_f32_to_bf16(x));
    if (dt == SF_ST_F16) return sf_st_f16_to_f32(sf_st_f32_to_f16(x));
    return x;
}

typedef struct {
    const char *name;     /* as written (prefix included) */
    sf_st_dtype_t dtype;
    int ndim;
    int64_t shape[4];
} extra_t;

/* What to write: every tensor of src (F32) under prefix + name, stored as
 * dtype(name) (or F32 holding the rounded values when `rounded_f32`), with
 * one fault at most, plus buffers. */
typedef struct {
    const char *prefix;
    sf_st_dtype_t (*dtype)(const char *name);
    int rounded_f32;
    const char *skip_prefix;   /* tensors whose names start so are left out */
    const char *drop;          /* one tensor left out */
    const char *reshape;       /* one tensor written with shape `shape` */
    int64_t shape[2];
    const char *bad;           /* one tensor written as bad_dtype */
    sf_st_dtype_t bad_dtype;
    const char *meta_key;      /* metadata copied from src */
    float scale;               /* when set, matrices (2-d and more) are multiplied by it */
    const extra_t *extra;
    int n_extra;
} hfspec_t;

static int write_st(const sf_st_t *src, const hfspec_t *h, const char *path) {
    sf_st_writer_t *w;
    if (sf_st_writer_new(&w)) return -1;
    int n = sf_st_count(src), rc = 0;
    void **bufs = calloc((size_t)n + (size_t)h->n_extra, sizeof *bufs);
    int nb = 0;
    if (h->meta_key) rc |= sf_st_writer_meta(w, h->meta_key, sf_st_meta(src, h->meta_key));
    rc |= sf_st_writer_meta(w, "format", "pt");
    for (int i = 0; i < n && rc == 0; i++) {
        const sf_st_tensor_t *t = sf_st_get(src, i);
        if (h->skip_prefix && !strncmp(t->name, h->skip_prefix, strlen(h->skip_prefix))) continue;
        if (h->drop && !strcmp(t->name, h->drop)) continue;
        char name[256];
        snprintf(name, sizeof name, "%s%s", h->prefix ? h->prefix : "", t->name);
        float *x = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
        sf_st_to_f32(t, x, (size_t)t->numel);
        if (h->scale && t->ndim >= 2)
            for (int64_t k = 0; k < t->numel; k++) x[k] *= h->scale;
        int ndim = t->ndim;
        int64_t shape[SF_ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        int64_t numel = t->numel;
        if (h->reshape && !strcmp(t->name, h->reshape)) {
            ndim = 2, shape[0] = h->shape[0], shape[1] = h->shape[1];
            numel = shape[0] * shape[1];
            x = realloc(x, sizeof(float) * (size_t)numel);
            for (int64_t k = 0; k < numel; k++) x[k] = 0.01f;
        }
        sf_st_dtype_t dt = h->dtype ? h->dtype(t->name) : SF_ST_F32;
        void *data = x;
        size_t nbytes = sizeof(float) * (size_t)numel;
        if (h->bad && !strcmp(t->name, h->bad)) {
            dt = h->bad_dtype;
            nbytes = sf_st_dtype_size(dt) * (size_t)numel;
            uint8_t *b = calloc(1, nbytes ? nbytes : 1);
            for (size_t k = 0; k < nbytes; k++) b[k] = (uint8_t)(k * 7);
            free(x);
            data = b;
        } else if (h->rounded_f32 || dt == SF_ST_F32) {
            for (int64_t k = 0; k < numel; k++) x[k] = round_to(dt, x[k]);
            dt = SF_ST_F32;
        } else {
            uint16_t *hv = malloc(2 * (size_t)numel + 1);
            for (int64_t k = 0; k < numel; k++)
                hv[k] = dt == SF_ST_BF16 ? sf_st_f32_to_bf16(x[k]) : sf_st_f32_to_f16(x[k]);
            free(x);
            data = hv;
            nbytes = 2 * (size_t)numel;
        }
        bufs[nb++] = data;
        rc |= sf_st_writer_add(w, name, dt, ndim, shape, data, nbytes);
    }
    for (int i = 0; i < h->n_extra && rc == 0; i++) {
        const extra_t *e = &h->extra[i];
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
        size_t nbytes = sf_st_dtype_size(e->dtype) * (size_t)numel;
        uint8_t *b = calloc(1, nbytes ? nbytes : 1);
        bufs[nb++] = b;
        rc |= sf_st_writer_add(w, e->name, e->dtype, e->ndim, e->shape, b, nbytes);
    }
    if (rc == 0) rc = sf_st_writer_save(w, path);
    sf_st_writer_free(&w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    free(bufs);
    return rc;
}

static int write_st_in(const sf_st_t *src, const hfspec_t *h, const char *dir) {
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    return write_st(src, h, p);
}

/* Every tensor of `got` (an F32 image written by the shim) equals the one of
 * `src` as rounded by dtype(name) — bit for bit. */
static int same_values(const sf_st_t *src, const sf_st_t *got, sf_st_dtype_t (*dtype)(const char *)) {
    int bad = 0;
    for (int i = 0; i < sf_st_count(src); i++) {
        const sf_st_tensor_t *a = sf_st_get(src, i), *b = sf_st_find(got, a->name);
        if (!b || b->numel != a->numel) return fprintf(stderr, "  %s missing\n", a->name), 0;
        float *x = malloc(sizeof(float) * (size_t)(a->numel + 1)), *y = malloc(sizeof(float) * (size_t)(a->numel + 1));
        sf_st_to_f32(a, x, (size_t)a->numel);
        sf_st_to_f32(b, y, (size_t)b->numel);
        for (int64_t k = 0; k < a->numel; k++)
            if (round_to(dtype(a->name), x[k]) != y[k]) {
                fprintf(stderr, "  %s[%lld]: %.9g, want %.9g\n", a->name, (long long)k, y[k],
                        round_to(dtype(a->name), x[k]));
                bad = 1;
                break;
            }
        free(x);
        free(y);
    }
    return !bad;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* ---- GPT-2 ---- */

enum { GL = 2, GH = 2, GC = 16, GT = 32, GV = 64 };

static void gpt2_tiny(sf_gpt2_config_t *c) {
    sf_gpt2_config_124m(c);
    c->n_layer = GL, c->n_head = GH, c->n_embd = GC, c->n_ctx = GT, c->vocab_size = GV;
    c->eos_id = GV - 1;
}

static const char *gpt2_config_json =
    "{\"activation_function\": \"gelu_new\", \"architectures\": [\"GPT2LMHeadModel\"],\n"
    " \"attn_pdrop\": 0.1, \"bos_token_id\": 63, \"embd_pdrop\": 0.1, \"eos_token_id\": 63,\n"
    " \"initializer_range\": 0.02, \"layer_norm_epsilon\": 1e-05, \"model_type\": \"gpt2\",\n"
    " \"n_ctx\": 32, \"n_embd\": 16, \"n_head\": 2, \"n_inner\": null, \"n_layer\": 2,\n"
    " \"n_positions\": 32, \"resid_pdrop\": 0.1, \"scale_attn_weights\": true,\n"
    " \"summary_type\": \"cls_index\", \"task_specific_params\": {\"text-generation\": "
    "{\"do_sample\": true, \"max_length\": 50}},\n"
    " \"tie_word_embeddings\": true, \"torch_dtype\": \"float32\", \"vocab_size\": 64}\n";

/* The buffers GPT2LMHeadModel's state_dict carries besides the parameters. */
static const extra_t gpt2_buffers[] = {
    {"lm_head.weight", SF_ST_F32, 2, {GV, GC}},
    {"transformer.h.0.attn.bias", SF_ST_U8, 4, {1, 1, GT, GT}},
    {"transformer.h.0.attn.masked_bias", SF_ST_F32, 0, {0}},
    {"transformer.h.1.attn.bias", SF_ST_U8, 4, {1, 1, GT, GT}},
};

static sf_gpt2_t *gpt2_m0;
static sf_st_t *gpt2_st0;
static uint8_t *gpt2_img;

TEST(gpt2_hf_folder_loads_and_values_survive) {
    sf_gpt2_config_t c;
    gpt2_tiny(&c);
    char err[512];
    CHECK_EQ_INT(sf_gpt2_new(&c, "cpu", 7, &gpt2_m0, err, sizeof err), 0);
    size_t len;
    CHECK_EQ_INT(sf_gpt2_to_bytes(gpt2_m0, &gpt2_img, &len), 0);
    CHECK_EQ_INT(sf_st_parse(gpt2_img, len, 0, &gpt2_st0, err, sizeof err), 0);

    /* The HF folder: "transformer."-prefixed names, BF16/F16/F32, buffers,
     * and the value head TRL saves beside them. */
    char hf[256];
    snprintf(hf, sizeof hf, "%s", folder("gpt2-hf"));
    CHECK_EQ_INT(write_text(hf, "config.json", gpt2_config_json), 0);
    hfspec_t h = {.prefix = "transformer.", .dtype = gpt2_dtype, .extra = gpt2_buffers,
                  .n_extra = (int)(sizeof gpt2_buffers / sizeof gpt2_buffers[0])};
    CHECK_EQ_INT(write_st_in(gpt2_st0, &h, hf), 0);
    /* The same (rounded) values in our own format, config in the metadata. */
    char ours[300];
    snprintf(ours, sizeof ours, "%s/ours.safetensors", root);
    hfspec_t o = {.dtype = gpt2_dtype, .rounded_f32 = 1, .meta_key = "sf_gpt2_config"};
    CHECK_EQ_INT(write_st(gpt2_st0, &o, ours), 0);

    sf_gpt2_t *m = NULL, *ref = NULL;
    int rc = sf_gpt2_load(hf, "cpu", &m, err, sizeof err);
    if (rc) fprintf(stderr, "load: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK(memcmp(sf_gpt2_config(m), &c, sizeof c) == 0);
    CHECK_EQ_INT(sf_gpt2_load(ours, "cpu", &ref, err, sizeof err), 0);

    /* Every value is the stored one, bit for bit. */
    uint8_t *img;
    sf_st_t *st1;
    CHECK_EQ_INT(sf_gpt2_to_bytes(m, &img, &len), 0);
    CHECK_EQ_INT(sf_st_parse(img, len, 0, &st1, err, sizeof err), 0);
    int same = same_values(gpt2_st0, st1, gpt2_dtype);
    sf_st_free(&st1);
    free(img);
    CHECK(same);

    /* It runs: logits and values equal those of our own file's model, and
     * within the rounding of the fp32 original. */
    enum { B = 2, T = 12 };
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 29 + 3) % GV);
    static float l0[B * T * GV], l1[B * T * GV], l2[B * T * GV], v1[B * T], v2[B * T];
    CHECK_EQ_INT(sf_gpt2_forward(m, tok, NULL, B, T, l1, v1), 0);
    CHECK_EQ_INT(sf_gpt2_forward(ref, tok, NULL, B, T, l2, v2), 0);
    CHECK_EQ_INT(sf_gpt2_forward(gpt2_m0, tok, NULL, B, T, l0, NULL), 0);
    CHECK(memcmp(l1, l2, sizeof l1) == 0);
    CHECK(memcmp(v1, v2, sizeof v1) == 0);
    double d = max_diff(l0, l1, (size_t)B * T * GV);
    printf("# HF folder vs fp32 original: max |logit diff| %.3g\n", d);
    CHECK(d < 0.02);

    /* The same folder as a sharded checkpoint (an index and two shards, as
     * HF writes large models) loads to the same model. */
    {
        char src[300], sh[256], p1[400], idx[4096];
        snprintf(src, sizeof src, "%s/model.safetensors", hf);
        snprintf(sh, sizeof sh, "%s", folder("gpt2-sharded"));
        CHECK_EQ_INT(write_text(sh, "config.json", gpt2_config_json), 0);
        sf_st_t *all;
        CHECK_EQ_INT(sf_st_load(src, &all, err, sizeof err), 0);
        const int n = sf_st_count(all);
        int o = snprintf(idx, sizeof idx, "{\"metadata\": {}, \"weight_map\": {");
        for (int part = 0; part < 2; part++) {
            sf_st_writer_t *w;
            CHECK_EQ_INT(sf_st_writer_new(&w), 0);
            for (int i = part; i < n; i += 2) {
                const sf_st_tensor_t *t = sf_st_get(all, i);
                CHECK_EQ_INT(sf_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes), 0);
                o += snprintf(idx + o, sizeof idx - (size_t)o, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
                              o > 40 ? ", " : "", t->name, part + 1);
            }
            snprintf(p1, sizeof p1, "%s/model-0000%d-of-00002.safetensors", sh, part + 1);
            CHECK_EQ_INT(sf_st_writer_save(w, p1), 0);
            sf_st_writer_free(&w);
        }
        snprintf(idx + o, sizeof idx - (size_t)o, "}}");
        CHECK_EQ_INT(write_text(sh, "model.safetensors.index.json", idx), 0);
        sf_st_free(&all);
        sf_gpt2_t *ms = NULL;
        rc = sf_gpt2_load(sh, "cpu", &ms, err, sizeof err);
        if (rc) fprintf(stderr, "sharded load: %s\n", err);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(sf_gpt2_forward(ms, tok, NULL, B, T, l2, v2), 0);
        CHECK(memcmp(l1, l2, sizeof l1) == 0);
        sf_gpt2_free(&ms);
    }

    /* And samples as our own model does. */
    int32_t prompt[2 * 4] = {1, 2, 3, 4, 5, 6, 0, 0};
    int plen[2] = {4, 2};
    sf_sample_opts_t so;
    sf_sample_opts_default(&so);
    so.max_new_tokens = 10;
    so.seed = 11;
    sf_samples_t s1, s2;
    CHECK_EQ_INT(sf_gpt2_sample(m, prompt, plen, 2, 4, &so, &s1), 0);
    CHECK_EQ_INT(sf_gpt2_sample(ref, prompt, plen, 2, 4, &so, &s2), 0);
    CHECK(memcmp(s1.tokens, s2.tokens, sizeof(int32_t) * 20) == 0);
    sf_samples_free(&s1);
    sf_samples_free(&s2);
    sf_gpt2_free(&m);
    sf_gpt2_free(&ref);
}

/* Writes the tiny GPT-2 as an HF folder with one fault and loads it:
 * returns the code, the message in err. */
static int gpt2_faulty(const char *name, const hfspec_t *fault, const char *config, char *err,
                       size_t errlen, const char **dir) {
    const char *d = folder(name);
    if (dir) *dir = d;
    if (config) write_text(d, "config.json", config);
    hfspec_t h = *fault;
    h.prefix = "transformer.";
    if (!h.dtype) h.dtype = gpt2_dtype;
    if (write_st_in(gpt2_st0, &h, d)) return 1;
    sf_gpt2_t *m = NULL;
    int rc = sf_gpt2_load(d, "cpu", &m, err, errlen);
    if (rc == 0) sf_gpt2_free(&m);
    printf("# %s: %s\n", name, rc ? err : "(loaded)");
    return rc;
}

TEST(gpt2_folder_errors) {
    CHECK(gpt2_st0);
    char err[512], want[512];
    const char *d;
    hfspec_t none = {0};

    /* Wrong shape: the tensor's name and both shapes. */
    hfspec_t shape = {.reshape = "h.1.mlp.c_fc.weight", .shape = {GC, 2 * GC}};
    CHECK_EQ_INT(gpt2_faulty("shape", &shape, gpt2_config_json, err, sizeof err, NULL), SF_EFORMAT);
    CHECK(contains(err, "h.1.mlp.c_fc.weight") && contains(err, "[16,32]") && contains(err, "[16,64]"));
    CHECK(contains(err, "model.safetensors"));

    /* Integer tensors where floats belong: the name and the dtype. */
    hfspec_t i64 = {.bad = "wte.weight", .bad_dtype = SF_ST_I64};
    CHECK_EQ_INT(gpt2_faulty("i64", &i64, gpt2_config_json, err, sizeof err, NULL), SF_EFORMAT);
    CHECK(contains(err, "wte.weight") && contains(err, "I64"));
    hfspec_t u8 = {.bad = "ln_f.weight", .bad_dtype = SF_ST_U8};
    CHECK_EQ_INT(gpt2_faulty("u8", &u8, gpt2_config_json, err, sizeof err, NULL), SF_EFORMAT);
    CHECK(contains(err, "ln_f.weight") && contains(err, "U8"));

    /* A tensor missing. */
    hfspec_t drop = {.drop = "h.1.ln_2.bias"};
    CHECK_EQ_INT(gpt2_faulty("drop", &drop, gpt2_config_json, err, sizeof err, NULL), SF_ENOTFOUND);
    CHECK(contains(err, "h.1.ln_2.bias"));

    /* Another architecture: named, with the config's path. */
    CHECK_EQ_INT(gpt2_faulty("llama", &none,
                             "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], "
                             "\"hidden_size\": 16}", err, sizeof err, &d), SF_EUNSUPPORTED);
    snprintf(want, sizeof want, "unknown architecture 'llama' in %s/config.json", d);
    CHECK(contains(err, want));
    CHECK_EQ_INT(gpt2_faulty("cls", &none,
                             "{\"model_type\": \"gpt2\", \"architectures\": "
                             "[\"GPT2ForSequenceClassification\"], \"n_layer\": 2}",
                             err, sizeof err, &d), SF_EUNSUPPORTED);
    snprintf(want, sizeof want, "unknown architecture 'GPT2ForSequenceClassification' in %s/config.json", d);
    CHECK(contains(err, want));
    /* A GPT-2 variant this code does not compute. */
    CHECK_EQ_INT(gpt2_faulty("relu", &none,
                             "{\"model_type\": \"gpt2\", \"activation_function\": \"relu\", "
                             "\"n_layer\": 2, \"n_head\": 2, \"n_embd\": 16, \"n_positions\": 32, "
                             "\"vocab_size\": 64, \"eos_token_id\": 63}", err, sizeof err, NULL),
                 SF_EUNSUPPORTED);
    CHECK(contains(err, "relu"));

    /* config.json that is not JSON. */
    CHECK_EQ_INT(gpt2_faulty("notjson", &none, "{\"n_layer\": 2,, oops", err, sizeof err, &d), SF_EFORMAT);
    snprintf(want, sizeof want, "%s/config.json", d);
    CHECK(contains(err, want) && contains(err, "JSON"));

    /* Truncated weights: the file named. */
    CHECK_EQ_INT(gpt2_faulty("trunc", &none, gpt2_config_json, err, sizeof err, &d), 0);
    snprintf(want, sizeof want, "%s/model.safetensors", d);
    FILE *f = fopen(want, "r+");
    CHECK(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    CHECK_EQ_INT(truncate(want, size / 2), 0);
    sf_gpt2_t *m = NULL;
    CHECK_EQ_INT(sf_gpt2_load(d, "cpu", &m, err, sizeof err), SF_EFORMAT);
    printf("# truncated: %s\n", err);
    CHECK(contains(err, want));

    /* No model.safetensors: the path, and what the folder has instead. */
    d = folder("bin");
    write_text(d, "config.json", gpt2_config_json);
    write_text(d, "pytorch_model.bin", "not really a pickle");
    CHECK_EQ_INT(sf_gpt2_load(d, "cpu", &m, err, sizeof err), SF_ENOTFOUND);
    printf("# bin only: %s\n", err);
    snprintf(want, sizeof want, "%s/model.safetensors not found", d);
    CHECK(contains(err, want) && contains(err, "pytorch_model.bin") && contains(err, "convert"));
    d = folder("empty");
    write_text(d, "config.json", gpt2_config_json);
    CHECK_EQ_INT(sf_gpt2_load(d, "cpu", &m, err, sizeof err), SF_ENOTFOUND);
    CHECK(contains(err, "/empty/model.safetensors not found"));
    /* No folder at all. */
    CHECK_EQ_INT(sf_gpt2_load("/nonexistent/gpt2", "cpu", &m, err, sizeof err), SF_EIO);
    CHECK(contains(err, "/nonexistent/gpt2"));
    CHECK(m == NULL);
}

/* ---- CLIP ---- */

static sf_clip_bpe_t *tok;
static sf_clip_config_t clip_c;
static sf_clip_t *clip_m0;
static sf_st_t *clip_st0;
enum { CS = 32, CCTX = 16 };

static void clip_config_text(char *buf, size_t n, int vocab, const char *act, int eos) {
    snprintf(buf, n,
             "{\"architectures\": [\"CLIPModel\"], \"initializer_factor\": 1.0,\n"
             " \"logit_scale_init_value\": 2.6592, \"model_type\": \"clip\", \"projection_dim\": 24,\n"
             " \"text_config\": {\"bos_token_id\": 0, \"eos_token_id\": %d, \"hidden_act\": \"%s\",\n"
             "   \"hidden_size\": 32, \"intermediate_size\": 64, \"layer_norm_eps\": 1e-05,\n"
             "   \"max_position_embeddings\": %d, \"model_type\": \"clip_text_model\",\n"
             "   \"num_attention_heads\": 2, \"num_hidden_layers\": 2, \"pad_token_id\": 1,\n"
             "   \"vocab_size\": %d},\n"
             " \"torch_dtype\": \"float32\",\n"
             " \"vision_config\": {\"hidden_act\": \"%s\", \"hidden_size\": 32, \"image_size\": %d,\n"
             "   \"intermediate_size\": 64, \"layer_norm_eps\": 1e-05, \"model_type\": \"clip_vision_model\",\n"
             "   \"num_attention_heads\": 2, \"num_channels\": 3, \"num_hidden_layers\": 2, \"patch_size\": 8}}\n",
             eos, act, CCTX, vocab, act, CS);
}

static const extra_t clip_buffers[] = {
    {"text_model.embeddings.position_ids", SF_ST_I64, 2, {1, CCTX}},
    {"vision_model.embeddings.position_ids", SF_ST_I64, 2, {1, (CS / 8) * (CS / 8) + 1}},
};

static void clip_inputs(float *px, int B, int32_t *ids, const char *const *texts) {
    for (int i = 0; i < B * 3 * CS * CS; i++) px[i] = (float)((i * 2654435761u) >> 24) / 128.0f - 1;
    for (int b = 0; b < B; b++) sf_clip_bpe_encode(tok, texts[b], ids + b * CCTX, CCTX);
}

TEST(clip_hf_folder_loads_and_values_survive) {
    const char *words[] = {"a", "red", "green", "blue", "circle", "square", "of", "photo"};
    CHECK_EQ_INT(sf_clip_bpe_from_words(words, 8, &tok), 0);
    const int V = sf_clip_bpe_vocab_size(tok);
    CHECK_EQ_INT(sf_clip_bpe_eot(tok), V - 1);   /* as CLIP's 49407 of 49408 */

    sf_clip_config_vit_b32(&clip_c);
    clip_c.image_size = CS, clip_c.patch_size = 8;
    clip_c.vision_width = 32, clip_c.vision_layers = 2, clip_c.vision_heads = 2, clip_c.vision_mlp = 64;
    clip_c.vocab_size = V, clip_c.context_length = CCTX, clip_c.eot_id = V - 1;
    clip_c.text_width = 32, clip_c.text_layers = 2, clip_c.text_heads = 2, clip_c.text_mlp = 64;
    clip_c.embed_dim = 24;
    char err[512], p[300];
    CHECK_EQ_INT(sf_clip_new(&clip_c, "cpu", 3, &clip_m0, err, sizeof err), 0);
    snprintf(p, sizeof p, "%s/clip0.safetensors", root);
    CHECK_EQ_INT(sf_clip_save(clip_m0, p), 0);
    CHECK_EQ_INT(sf_st_load(p, &clip_st0, err, sizeof err), 0);

    /* The HF folder, with OpenAI's legacy eos_token_id 2, a preprocessor
     * config and the tokenizer. */
    char hf[256], own[256];
    snprintf(hf, sizeof hf, "%s", folder("clip-hf"));
    char cfg[2048];
    clip_config_text(cfg, sizeof cfg, V, "quick_gelu", 2);
    CHECK_EQ_INT(write_text(hf, "config.json", cfg), 0);
    CHECK_EQ_INT(write_text(hf, "preprocessor_config.json",
                            "{\"crop_size\": 32, \"do_normalize\": true, \"image_mean\": [0.5, 0.5, 0.5],"
                            " \"image_std\": [0.25, 0.25, 0.25], \"size\": 32}"), 0);
    char voc[300], mer[300];
    snprintf(voc, sizeof voc, "%s/vocab.json", hf);
    snprintf(mer, sizeof mer, "%s/merges.txt", hf);
    CHECK_EQ_INT(sf_clip_bpe_save(tok, voc, mer), 0);
    hfspec_t h = {.dtype = clip_dtype, .extra = clip_buffers, .n_extra = 2};
    CHECK_EQ_INT(write_st_in(clip_st0, &h, hf), 0);
    /* Our own layout of the same rounded values: model.safetensors with the
     * config in its metadata, no config.json (as models/clip-world). */
    snprintf(own, sizeof own, "%s", folder("clip-own"));
    hfspec_t o = {.dtype = clip_dtype, .rounded_f32 = 1, .meta_key = "sf_clip_config"};
    CHECK_EQ_INT(write_st_in(clip_st0, &o, own), 0);

    sf_clip_t *m = NULL, *ref = NULL;
    int rc = sf_clip_load_dir(hf, "cpu", &m, err, sizeof err);
    if (rc) fprintf(stderr, "load: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(sf_clip_load_dir(own, "cpu", &ref, err, sizeof err), 0);
    const sf_clip_config_t *got = sf_clip_config(m);
    CHECK_EQ_INT(got->eot_id, V - 1);
    CHECK_EQ_INT(got->embed_dim, 24);
    CHECK(got->mean[1] == 0.5f && got->std[2] == 0.25f);
    sf_clip_config_t want = clip_c;
    memcpy(want.mean, got->mean, sizeof want.mean);
    memcpy(want.std, got->std, sizeof want.std);
    CHECK(memcmp(got, &want, sizeof want) == 0);
    sf_clip_bpe_t *t2;
    CHECK_EQ_INT(sf_clip_bpe_load(voc, mer, &t2, err, sizeof err), 0);
    CHECK_EQ_INT(sf_clip_bpe_vocab_size(t2), V);
    sf_clip_bpe_free(&t2);

    snprintf(p, sizeof p, "%s/clip1.safetensors", root);
    CHECK_EQ_INT(sf_clip_save(m, p), 0);
    sf_st_t *st1;
    CHECK_EQ_INT(sf_st_load(p, &st1, err, sizeof err), 0);
    int same = same_values(clip_st0, st1, clip_dtype);
    sf_st_free(&st1);
    CHECK(same);

    enum { B = 3 };
    static float px[B * 3 * CS * CS], a[B * 24], b[B * 24], c0[B * 24];
    int32_t ids[B * CCTX];
    const char *texts[B] = {"a photo of a red circle", "a blue square", "green"};
    clip_inputs(px, B, ids, texts);
    CHECK_EQ_INT(sf_clip_encode_image(m, px, B, a), 0);
    CHECK_EQ_INT(sf_clip_encode_image(ref, px, B, b), 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK_EQ_INT(sf_clip_encode_image(clip_m0, px, B, c0), 0);
    double di = max_diff(a, c0, B * 24);
    CHECK_EQ_INT(sf_clip_encode_text(m, ids, B, CCTX, a), 0);
    CHECK_EQ_INT(sf_clip_encode_text(ref, ids, B, CCTX, b), 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK_EQ_INT(sf_clip_encode_text(clip_m0, ids, B, CCTX, c0), 0);
    double dt = max_diff(a, c0, B * 24);
    printf("# HF CLIP folder vs fp32 original: image %.3g, text %.3g\n", di, dt);
    CHECK(di < 0.02 && dt < 0.02);
    sf_clip_free(&m);
    sf_clip_free(&ref);
}

TEST(clip_config_defaults_and_eos) {
    const char *d = folder("clip-cfg");
    char p[300], err[512];
    snprintf(p, sizeof p, "%s/config.json", d);
    sf_clip_config_t c, b32;
    sf_clip_config_vit_b32(&b32);
    /* Omitted keys are HF's defaults: ViT-B/32. */
    write_text(d, "config.json", "{\"model_type\": \"clip\"}");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), 0);
    CHECK(memcmp(&c, &b32, sizeof c) == 0);
    /* The legacy eos 2 means the vocabulary's last id. */
    write_text(d, "config.json", "{\"text_config\": {\"eos_token_id\": 2}, \"vision_config\": {}}");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.eot_id, 49407);
    write_text(d, "config.json", "{\"text_config\": {\"eos_token_id\": 2, \"vocab_size\": 1000}}");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.eot_id, 999);
    write_text(d, "config.json", "{\"text_config\": {\"eos_token_id\": 7, \"vocab_size\": 1000}}");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.eot_id, 7);
    /* The legacy *_config_dict wins over *_config, as in HF. */
    write_text(d, "config.json", "{\"text_config\": {\"hidden_size\": 512, \"num_attention_heads\": 8},"
                                 " \"text_config_dict\": {\"hidden_size\": 256, \"num_attention_heads\": 4},"
                                 " \"vision_config\": {\"image_size\": 336, \"patch_size\": 14},"
                                 " \"projection_dim\": 768}");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), 0);
    CHECK(c.text_width == 256 && c.text_heads == 4 && c.image_size == 336 && c.patch_size == 14);
    CHECK_EQ_INT(c.embed_dim, 768);
    /* gelu in both towers; towers that disagree, or another activation. */
    write_text(d, "config.json", "{\"text_config\": {\"hidden_act\": \"gelu\"}, "
                                 "\"vision_config\": {\"hidden_act\": \"gelu\"}}");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), 0);
    CHECK_EQ_INT(c.quick_gelu, 0);
    write_text(d, "config.json", "{\"text_config\": {\"hidden_act\": \"gelu\"}}");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), SF_EUNSUPPORTED);
    CHECK(contains(err, "hidden_act"));
    write_text(d, "config.json", "{\"text_config\": {\"hidden_act\": \"relu\"}}");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), SF_EUNSUPPORTED);
    CHECK(contains(err, "relu"));
    /* Wrong types, not JSON, another model. */
    write_text(d, "config.json", "{\"text_config\": {\"hidden_size\": \"512\"}}");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), SF_EFORMAT);
    CHECK(contains(err, "text_config.hidden_size"));
    write_text(d, "config.json", "model_type: clip");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), SF_EFORMAT);
    CHECK(contains(err, p) && contains(err, "JSON"));
    write_text(d, "config.json", "{\"model_type\": \"siglip\"}");
    CHECK_EQ_INT(sf_clip_config_load(p, &c, err, sizeof err), SF_EUNSUPPORTED);
    char want[400];
    snprintf(want, sizeof want, "unknown architecture 'siglip' in %s", p);
    CHECK(contains(err, want));
}

static int clip_faulty(const char *name, const hfspec_t *fault, const char *config, char *err,
                       size_t errlen, const char **dir) {
    const char *d = folder(name);
    if (dir) *dir = d;
    if (config) write_text(d, "config.json", config);
    hfspec_t h = *fault;
    if (!h.dtype) h.dtype = clip_dtype;
    if (write_st_in(clip_st0, &h, d)) return 1;
    sf_clip_t *m = NULL;
    int rc = sf_clip_load_dir(d, "cpu", &m, err, errlen);
    if (rc == 0) sf_clip_free(&m);
    printf("# %s: %s\n", name, rc ? err : "(loaded)");
    return rc;
}

TEST(clip_folder_errors) {
    CHECK(clip_st0);
    char cfg[2048], err[512], want[512];
    clip_config_text(cfg, sizeof cfg, clip_c.vocab_size, "quick_gelu", clip_c.eot_id);
    const char *d;
    hfspec_t none = {0};
    CHECK_EQ_INT(clip_faulty("clip-good", &none, cfg, err, sizeof err, NULL), 0);

    hfspec_t shape = {.reshape = "text_projection.weight", .shape = {24, 16}};
    CHECK_EQ_INT(clip_faulty("clip-shape", &shape, cfg, err, sizeof err, NULL), SF_EFORMAT);
    CHECK(contains(err, "text_projection.weight") && contains(err, "[24,16]") && contains(err, "[24,32]"));
    hfspec_t u8 = {.bad = "vision_model.embeddings.class_embedding", .bad_dtype = SF_ST_U8};
    CHECK_EQ_INT(clip_faulty("clip-u8", &u8, cfg, err, sizeof err, NULL), SF_EFORMAT);
    CHECK(contains(err, "vision_model.embeddings.class_embedding") && contains(err, "U8"));
    hfspec_t drop = {.drop = "logit_scale"};
    CHECK_EQ_INT(clip_faulty("clip-drop", &drop, cfg, err, sizeof err, NULL), SF_ENOTFOUND);
    CHECK(contains(err, "logit_scale"));

    CHECK_EQ_INT(clip_faulty("clip-arch", &none, "{\"architectures\": [\"CLIPVisionModel\"]}", err,
                             sizeof err, &d), SF_EUNSUPPORTED);
    snprintf(want, sizeof want, "unknown architecture 'CLIPVisionModel' in %s/config.json", d);
    CHECK(contains(err, want));
    CHECK_EQ_INT(clip_faulty("clip-json", &none, "{\"text_config\": {", err, sizeof err, &d), SF_EFORMAT);
    snprintf(want, sizeof want, "%s/config.json", d);
    CHECK(contains(err, want));

    /* Our layout without its metadata: nothing says what model it is. */
    CHECK_EQ_INT(clip_faulty("clip-nometa", &none, NULL, err, sizeof err, NULL), SF_EFORMAT);
    CHECK(contains(err, "no config.json"));

    CHECK_EQ_INT(clip_faulty("clip-trunc", &none, cfg, err, sizeof err, &d), 0);
    snprintf(want, sizeof want, "%s/model.safetensors", d);
    CHECK_EQ_INT(truncate(want, 100), 0);
    sf_clip_t *m = NULL;
    CHECK_EQ_INT(sf_clip_load_dir(d, "cpu", &m, err, sizeof err), SF_EFORMAT);
    printf("# clip truncated: %s\n", err);
    CHECK(contains(err, want));

    d = folder("clip-bin");
    write_text(d, "config.json", cfg);
    write_text(d, "pytorch_model.bin", "pickle");
    CHECK_EQ_INT(sf_clip_load_dir(d, "cpu", &m, err, sizeof err), SF_ENOTFOUND);
    snprintf(want, sizeof want, "%s/model.safetensors not found", d);
    CHECK(contains(err, want) && contains(err, "pytorch_model.bin"));
    CHECK_EQ_INT(sf_clip_load_dir("/nonexistent/clip", "cpu", &m, err, sizeof err), SF_EIO);
    CHECK(contains(err, "/nonexistent/clip"));
    CHECK(m == NULL);
}

/* ---- inference dtypes ---- */

/* bf16 keeps 8 bits of mantissa: each weight and activation is off by up to
 * 2^-9 relative.  Measured on these tiny models (libtorch 1.13, CPU): GPT-2
 * logits and values within 0.0021 of fp32, sampled log-probs within 0.0016;
 * CLIP's unit embeddings (weights sd 0.32) within 0.0098.  The bounds are
 * 3-5x that, and well below how much the outputs differ from one input to
 * the next (checked), so a broken cast cannot pass.  fp16 keeps 11 bits:
 * where the CPU has its kernels, the same bounds hold. */
#define BF16_LOGIT_TOL 0.01
#define BF16_LOGP_TOL 0.01
#define BF16_EMB_TOL 0.03

TEST(gpt2_bf16_inference_and_training_refused) {
    CHECK(gpt2_m0);
    sf_gpt2_t *m;
    CHECK_EQ_INT(sf_gpt2_clone(gpt2_m0, &m), 0);
    CHECK_EQ_STR(sf_gpt2_dtype(m), "fp32");
    enum { B = 3, P = 5, N = 12, T = P + N };
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)((i * 17 + 5) % GV);
    static float l32[B * T * GV], l16[B * T * GV], v32[B * T], v16[B * T];
    CHECK_EQ_INT(sf_gpt2_forward(m, tok, NULL, B, T, l32, v32), 0);
    double spread = 0;
    for (int i = 0; i < B * T * GV; i++) spread = fmax(spread, fabs(l32[i] - l32[i % GV]));
    printf("# GPT-2 fp32 logits differ across positions by up to %.3g\n", spread);
    CHECK(spread > 20 * BF16_LOGIT_TOL);

    CHECK_EQ_INT(sf_gpt2_set_dtype(m, "int8"), SF_EINVAL);
    CHECK_EQ_INT(sf_gpt2_set_dtype(m, "bf16"), 0);
    CHECK_EQ_STR(sf_gpt2_dtype(m), "bf16");
    CHECK_EQ_INT(sf_gpt2_forward(m, tok, NULL, B, T, l16, v16), 0);
    double dl = max_diff(l32, l16, (size_t)B * T * GV), dv = max_diff(v32, v16, (size_t)B * T);
    printf("# GPT-2 bf16 vs fp32: logits %.3g, values %.3g\n", dl, dv);
    CHECK(dl < BF16_LOGIT_TOL && dv < BF16_LOGIT_TOL);

    /* Sampling in bf16, with and without the cache: its log-probs are the
     * fp32 model's log-probs of the drawn tokens, within the tolerance. */
    int plen[B] = {P, P, P};
    sf_sample_opts_t so;
    sf_sample_opts_default(&so);
    so.max_new_tokens = N;
    so.eos_id = -2;
    so.seed = 5;
    for (int cache = 1; cache >= 0; cache--) {
        so.use_cache = cache;
        sf_samples_t s;
        CHECK_EQ_INT(sf_gpt2_sample(m, tok, plen, B, T, &so, &s), 0);
        int32_t seq[B * T];
        for (int i = 0; i < B; i++) {
            CHECK_EQ_INT(s.lengths[i], N);
            memcpy(seq + i * T, tok + i * T, sizeof(int32_t) * P);
            for (int t = 0; t < N; t++) {
                CHECK(s.tokens[i * N + t] >= 0 && s.tokens[i * N + t] < GV);
                seq[i * T + P + t] = s.tokens[i * N + t];
            }
        }
        CHECK_EQ_INT(sf_gpt2_forward(gpt2_m0, seq, NULL, B, T, l32, NULL), 0);
        double dlp = 0;
        for (int i = 0; i < B; i++)
            for (int t = 0; t < N; t++) {
                const float *row = l32 + ((size_t)i * T + P - 1 + t) * GV;
                double mx = row[0], z = 0;
                for (int v = 1; v < GV; v++) mx = fmax(mx, row[v]);
                for (int v = 0; v < GV; v++) z += exp(row[v] - mx);
                double lp = row[seq[i * T + P + t]] - mx - log(z);
                CHECK(isfinite(s.logprobs[i * N + t]) && s.logprobs[i * N + t] <= 0);
                dlp = fmax(dlp, fabs(lp - s.logprobs[i * N + t]));
            }
        printf("# bf16 sampling (cache %d): max |logprob - fp32| %.3g\n", cache, dlp);
        CHECK(dlp < BF16_LOGP_TOL);
        sf_samples_free(&s);
    }

    /* Training refuses a cast model, with a message. */
    int32_t seqs[2 * 8] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    int pl[2] = {3, 3}, sl[2] = {8, 8};
    float loss;
    CHECK_EQ_INT(sf_gpt2_sft_step(m, seqs, pl, sl, 2, 8, 1e-3f, 1.0f, &loss), SF_EUNSUPPORTED);
    printf("# SFT on bf16: %s\n", sf_gpt2_errstr(m));
    CHECK(contains(sf_gpt2_errstr(m), "fp32") && contains(sf_gpt2_errstr(m), "bf16"));
    sf_ppo_t *ppo;
    char err[256];
    int rc;
    CHECK_EQ_INT(sf_ppo_new(m, NULL, NULL, &ppo, err, sizeof err), 0);
    int qlen[2] = {3, 3}, rlen[2] = {5, 5};
    float scores[2] = {1, -1};
    sf_ppo_batch_t batch = {2, 8, 8, seqs, qlen, seqs + 3, rlen, NULL, NULL, scores};
    sf_ppo_stats_t st;
    CHECK_EQ_INT(sf_ppo_step(ppo, &batch, &st), SF_EUNSUPPORTED);
    CHECK(contains(sf_ppo_errstr(ppo), "fp32"));
    sf_ppo_free(&ppo);
    /* A bf16 reference under an fp32 policy is fine: it only runs forward. */
    sf_gpt2_t *pol, *rf;
    CHECK_EQ_INT(sf_gpt2_clone(gpt2_m0, &pol), 0);
    CHECK_EQ_INT(sf_gpt2_clone(gpt2_m0, &rf), 0);
    CHECK_EQ_INT(sf_gpt2_set_dtype(rf, "bf16"), 0);
    CHECK_EQ_INT(sf_ppo_new(pol, rf, NULL, &ppo, err, sizeof err), 0);
    rc = sf_ppo_step(ppo, &batch, &st);
    if (rc) fprintf(stderr, "PPO with a bf16 reference: %s\n", sf_ppo_errstr(ppo));
    CHECK_EQ_INT(rc, 0);
    CHECK(isfinite(st.kl) && fabs(st.kl) < 0.1);   /* same weights up to bf16 rounding */
    sf_ppo_free(&ppo);
    sf_gpt2_free(&pol);
    sf_gpt2_free(&rf);

    /* The worker's path: a float32 policy image into a bf16 model; a clone
     * stays bf16. */
    sf_gpt2_t *c;
    CHECK_EQ_INT(sf_gpt2_clone(m, &c), 0);
    CHECK_EQ_STR(sf_gpt2_dtype(c), "bf16");
    size_t len = 0;
    uint8_t *img;
    CHECK_EQ_INT(sf_gpt2_to_bytes(gpt2_m0, &img, &len), 0);
    CHECK_EQ_INT(sf_gpt2_load_bytes(c, img, len), 0);
    free(img);
    CHECK_EQ_STR(sf_gpt2_dtype(c), "bf16");
    CHECK_EQ_INT(sf_gpt2_forward(gpt2_m0, tok, NULL, B, T, l32, NULL), 0);
    CHECK_EQ_INT(sf_gpt2_forward(c, tok, NULL, B, T, l16, NULL), 0);
    CHECK(max_diff(l32, l16, (size_t)B * T * GV) < BF16_LOGIT_TOL);
    sf_gpt2_free(&c);

    /* Back to fp32: training works again. */
    CHECK_EQ_INT(sf_gpt2_set_dtype(m, "fp32"), 0);
    CHECK_EQ_INT(sf_gpt2_sft_step(m, seqs, pl, sl, 2, 8, 1e-3f, 1.0f, &loss), 0);
    CHECK(isfinite(loss));

    /* fp16: works where the device has the kernels, else a clean refusal
     * that leaves the model as it was. */
    rc = sf_gpt2_set_dtype(m, "fp16");
    printf("# GPT-2 fp16 on the CPU: %s\n", rc ? sf_gpt2_errstr(m) : "supported");
    if (rc) {
        CHECK_EQ_INT(rc, SF_EUNSUPPORTED);
        CHECK(contains(sf_gpt2_errstr(m), "fp16") && contains(sf_gpt2_errstr(m), "CUDA"));
        CHECK_EQ_STR(sf_gpt2_dtype(m), "fp32");
        CHECK_EQ_INT(sf_gpt2_forward(m, tok, NULL, B, T, l16, NULL), 0);
    } else {
        CHECK_EQ_STR(sf_gpt2_dtype(m), "fp16");
        CHECK_EQ_INT(sf_gpt2_forward(gpt2_m0, tok, NULL, B, T, l32, NULL), 0);
        CHECK_EQ_INT(sf_gpt2_forward(m, tok, NULL, B, T, l16, NULL), 0);
        CHECK(max_diff(l32, l16, (size_t)B * T * GV) < BF16_LOGIT_TOL);
    }
    sf_ml_empty_cache();   /* no CUDA here: a no-op that must not fail */
    sf_gpt2_free(&m);
}

TEST(clip_bf16_inference_and_training_refused) {
    CHECK(clip_m0);
    /* Weights 16x those of a fresh model (sd 0.32): with sd 0.02 random
     * images all get nearly the same embedding (they differ by 0.001), which
     * would hide any error. */
    char err[256], p[300];
    snprintf(p, sizeof p, "%s/clip-x8.safetensors", root);
    hfspec_t x8 = {.meta_key = "sf_clip_config", .scale = 16};
    CHECK_EQ_INT(write_st(clip_st0, &x8, p), 0);
    sf_clip_t *m;
    CHECK_EQ_INT(sf_clip_load(p, NULL, "cpu", &m, err, sizeof err), 0);
    enum { B = 4, E = 24 };
    static float px[B * 3 * CS * CS], i32[B * E], i16[B * E], t32[B * E], t16[B * E];
    int32_t ids[B * CCTX];
    const char *texts[B] = {"a red circle", "a photo of a green square", "blue", "a blue circle of red"};
    clip_inputs(px, B, ids, texts);
    CHECK_EQ_INT(sf_clip_encode_image(m, px, B, i32), 0);
    CHECK_EQ_INT(sf_clip_encode_text(m, ids, B, CCTX, t32), 0);
    CHECK_EQ_STR(sf_clip_dtype(m), "fp32");
    CHECK_EQ_INT(sf_clip_set_dtype(m, "half-ish"), SF_EINVAL);
    CHECK_EQ_INT(sf_clip_set_dtype(m, "bf16"), 0);
    CHECK_EQ_STR(sf_clip_dtype(m), "bf16");
    CHECK_EQ_INT(sf_clip_encode_image(m, px, B, i16), 0);
    CHECK_EQ_INT(sf_clip_encode_text(m, ids, B, CCTX, t16), 0);
    double di = max_diff(i32, i16, B * E), dt = max_diff(t32, t16, B * E);
    printf("# CLIP bf16 vs fp32: image %.3g, text %.3g\n", di, dt);
    CHECK(di < BF16_EMB_TOL && dt < BF16_EMB_TOL);
    double si = max_diff(i32, i32 + E, E), st = max_diff(t32, t32 + E, E);
    printf("# CLIP fp32 embeddings of the first two inputs differ by %.3g (image), %.3g (text)\n", si, st);
    CHECK(si > 5 * BF16_EMB_TOL && st > 5 * BF16_EMB_TOL);
    for (int b = 0; b < B; b++) {   /* normalised in float32 */
        double n2 = 0, m2 = 0;
        for (int k = 0; k < E; k++) n2 += (double)i16[b * E + k] * i16[b * E + k], m2 += (double)t16[b * E + k] * t16[b * E + k];
        CHECK_NEAR(n2, 1.0, 1e-5);
        CHECK_NEAR(m2, 1.0, 1e-5);
    }
    CHECK(sf_clip_logit_scale(m) > 1);

    float loss, acc;
    CHECK_EQ_INT(sf_clip_train_step(m, px, ids, B, CCTX, 1e-3f, &loss, &acc), SF_EUNSUPPORTED);
    printf("# CLIP training on bf16: %s\n", sf_clip_errstr(m));
    CHECK(contains(sf_clip_errstr(m), "fp32"));
    CHECK_EQ_INT(sf_clip_set_dtype(m, "fp32"), 0);
    CHECK_EQ_INT(sf_clip_train_step(m, px, ids, B, CCTX, 1e-3f, &loss, &acc), 0);
    CHECK(isfinite(loss));

    sf_clip_t *h;
    CHECK_EQ_INT(sf_clip_load(p, NULL, "cpu", &h, err, sizeof err), 0);
    int rc = sf_clip_set_dtype(h, "fp16");
    printf("# CLIP fp16 on the CPU: %s\n", rc ? sf_clip_errstr(h) : "supported");
    if (rc) {
        CHECK_EQ_INT(rc, SF_EUNSUPPORTED);
        CHECK(contains(sf_clip_errstr(h), "fp16"));
        CHECK_EQ_STR(sf_clip_dtype(h), "fp32");
        CHECK_EQ_INT(sf_clip_encode_image(h, px, B, i16), 0);
        CHECK(memcmp(i16, i32, sizeof i16) == 0);
    } else {
        CHECK_EQ_INT(sf_clip_encode_image(h, px, B, i16), 0);
        CHECK(max_diff(i32, i16, B * E) < BF16_EMB_TOL);
    }
    sf_clip_free(&h);
    sf_clip_free(&m);
}

int main(void) {
    sf_ml_opts_t o = {.threads = 1, .quiet = 1};
    sf_ml_init(&o);
    snprintf(root, sizeof root, "/tmp/sf_realdirs_XXXXXX");
    if (!mkdtemp(root)) return 1;
    SF_RUN(gpt2_hf_folder_loads_and_values_survive);
    SF_RUN(gpt2_folder_errors);
    SF_RUN(clip_hf_folder_loads_and_values_survive);
    SF_RUN(clip_config_defaults_and_eos);
    SF_RUN(clip_folder_errors);
    SF_RUN(gpt2_bf16_inference_and_training_refused);
    SF_RUN(clip_bf16_inference_and_training_refused);
    sf_gpt2_free(&gpt2_m0);
    sf_st_free(&gpt2_st0);
    free(gpt2_img);
    sf_clip_free(&clip_m0);
    sf_st_free(&clip_st0);
    sf_clip_bpe_free(&tok);
    rm_rf(root);
    SF_DONE();
}
