/* test_ml_timm: timm classifier folders as timm publishes them on the HF hub,
 * and the training state a killed fine-tuning job resumes from.
 *
 * No hub folder can be downloaded here, so each test writes its folder: a
 * config.json with the keys and layout of the published ones
 * (timm/convnext_atto.d2_in1k, timm/vit_tiny_patch16_224.augreg_*: what
 * timm's save_config_for_hf writes) and a model.safetensors as timm writes
 * it — the state_dict's names, no metadata but "format", F32 or half
 * precision — from a model of this shim.  The architecture table is checked
 * against the names and shapes of timm's modules and the parameter counts on
 * timm's model cards; every broken folder must be refused with a message
 * naming the file and the tensor or value.  Then the training state: k steps,
 * save, load into another model, n - k more steps must give the bytes of n
 * steps run straight through; a damaged or foreign state file is refused
 * with the model and its optimiser untouched.
 */
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/formats/safetensors.h"
#include "common/runtime/error.h"
#include "ml/sf_ml.h"
#include "ml/sf_vision.h"
#include "sf_test.h"
#include "sf_test_dirs.h"


/* A whole file (malloc'd) and its length; NULL if it cannot be read. */
static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) free(b), b = NULL;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(b, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Whether two files hold the same bytes. */
static int same_file(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- timm's names and shapes, from timm's module code ---- */

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
} tspec_t;

static tspec_t specs[512];
static int n_specs;

static void spec(int ndim, int64_t a, int64_t b, int64_t c, int64_t d, const char *fmt, ...) {
    tspec_t *t = &specs[n_specs++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = ndim;
    t->shape[0] = a, t->shape[1] = b, t->shape[2] = c, t->shape[3] = d;
}

/* timm ConvNeXt's state_dict: the patch stem, four stages (a downsample
 * from the second on), blocks with layer scale, the norm-then-fc head;
 * conv_mlp stores the MLP as 1x1 convs (4-d weights). */
static void convnext_specs(const int depths[4], const int dims[4], int conv_mlp, int classes) {
    n_specs = 0;
    spec(4, dims[0], 3, 4, 4, "stem.0.weight");
    spec(1, dims[0], 0, 0, 0, "stem.0.bias");
    spec(1, dims[0], 0, 0, 0, "stem.1.weight");
    spec(1, dims[0], 0, 0, 0, "stem.1.bias");
    for (int s = 0; s < 4; s++) {
        const int d = dims[s];
        if (s > 0) {
            spec(1, dims[s - 1], 0, 0, 0, "stages.%d.downsample.0.weight", s);
            spec(1, dims[s - 1], 0, 0, 0, "stages.%d.downsample.0.bias", s);
            spec(4, d, dims[s - 1], 2, 2, "stages.%d.downsample.1.weight", s);
            spec(1, d, 0, 0, 0, "stages.%d.downsample.1.bias", s);
        }
        for (int b = 0; b < depths[s]; b++) {
            spec(1, d, 0, 0, 0, "stages.%d.blocks.%d.gamma", s, b);
            spec(4, d, 1, 7, 7, "stages.%d.blocks.%d.conv_dw.weight", s, b);
            spec(1, d, 0, 0, 0, "stages.%d.blocks.%d.conv_dw.bias", s, b);
            spec(1, d, 0, 0, 0, "stages.%d.blocks.%d.norm.weight", s, b);
            spec(1, d, 0, 0, 0, "stages.%d.blocks.%d.norm.bias", s, b);
            spec(conv_mlp ? 4 : 2, 4 * d, d, 1, 1, "stages.%d.blocks.%d.mlp.fc1.weight", s, b);
            spec(1, 4 * d, 0, 0, 0, "stages.%d.blocks.%d.mlp.fc1.bias", s, b);
            spec(conv_mlp ? 4 : 2, d, 4 * d, 1, 1, "stages.%d.blocks.%d.mlp.fc2.weight", s, b);
            spec(1, d, 0, 0, 0, "stages.%d.blocks.%d.mlp.fc2.bias", s, b);
        }
    }
    spec(1, dims[3], 0, 0, 0, "head.norm.weight");
    spec(1, dims[3], 0, 0, 0, "head.norm.bias");
    spec(2, classes, dims[3], 0, 0, "head.fc.weight");
    spec(1, classes, 0, 0, 0, "head.fc.bias");
}

/* timm VisionTransformer (class token, no registers, token pooling). */
static void vit_specs(int width, int depth, int patch, int image, int classes) {
    n_specs = 0;
    const int64_t g = image / patch;
    spec(3, 1, 1, width, 0, "cls_token");
    spec(3, 1, g * g + 1, width, 0, "pos_embed");
    spec(4, width, 3, patch, patch, "patch_embed.proj.weight");
    spec(1, width, 0, 0, 0, "patch_embed.proj.bias");
    for (int i = 0; i < depth; i++) {
        spec(1, width, 0, 0, 0, "blocks.%d.norm1.weight", i);
        spec(1, width, 0, 0, 0, "blocks.%d.norm1.bias", i);
        spec(2, 3 * width, width, 0, 0, "blocks.%d.attn.qkv.weight", i);
        spec(1, 3 * width, 0, 0, 0, "blocks.%d.attn.qkv.bias", i);
        spec(2, width, width, 0, 0, "blocks.%d.attn.proj.weight", i);
        spec(1, width, 0, 0, 0, "blocks.%d.attn.proj.bias", i);
        spec(1, width, 0, 0, 0, "blocks.%d.norm2.weight", i);
        spec(1, width, 0, 0, 0, "blocks.%d.norm2.bias", i);
        spec(2, 4 * width, width, 0, 0, "blocks.%d.mlp.fc1.weight", i);
        spec(1, 4 * width, 0, 0, 0, "blocks.%d.mlp.fc1.bias", i);
        spec(2, width, 4 * width, 0, 0, "blocks.%d.mlp.fc2.weight", i);
        spec(1, width, 0, 0, 0, "blocks.%d.mlp.fc2.bias", i);
    }
    spec(1, width, 0, 0, 0, "norm.weight");
    spec(1, width, 0, 0, 0, "norm.bias");
    spec(2, classes, width, 0, 0, "head.weight");
    spec(1, classes, 0, 0, 0, "head.bias");
}

/* Whether st's tensors are exactly specs (names and shapes, any order). */
static int names_are_timms(const sf_st_t *st) {
    if (sf_st_count(st) != n_specs) {
        fprintf(stderr, "  %d tensors, timm has %d\n", sf_st_count(st), n_specs);
        return 0;
    }
    for (int i = 0; i < n_specs; i++) {
        const sf_st_tensor_t *t = sf_st_find(st, specs[i].name);
        int same = t && t->ndim == specs[i].ndim;
        for (int k = 0; same && k < t->ndim; k++) same = t->shape[k] == specs[i].shape[k];
        if (!same) {
            fprintf(stderr, "  %s missing or of another shape\n", specs[i].name);
            return 0;
        }
    }
    return 1;
}

/* ---- writing a timm model.safetensors ---- */

static float round_to(sf_st_dtype_t dt, float x) {
    if (dt == SF_ST_BF16) return sf_st_bf16_to_f32(sf_st_f32_to_bf16(x));
    if (dt == SF_ST_F16) return sf_st_f16_to_f32(sf_st_f32_to_f16(x));
    return x;
}

/* How to write: every tensor of src under its own name (timm's), stored as
 * dtype(name) or F32 holding the rounded values (`rounded_f32`), with one
 * fault at most; the metadata is {"format": "pt"} alone, as in a hub file. */
typedef struct {
    sf_st_dtype_t (*dtype)(const char *name);
    int rounded_f32;
    const char *drop;          /* one tensor left out */
    const char *reshape;       /* one tensor written with shape `shape` (ndim `ndim`), values 0.01 */
    int ndim;
    int64_t shape[4];
    const char *extra;         /* one more tensor, F32 [4] */
} wspec_t;

static int write_st(const sf_st_t *src, const wspec_t *h, const char *path) {
    sf_st_writer_t *w;
    if (sf_st_writer_new(&w)) return -1;
    int n = sf_st_count(src), rc = 0, nb = 0;
    void **bufs = calloc((size_t)n + 1, sizeof *bufs);
    rc |= sf_st_writer_meta(w, "format", "pt");
    for (int i = 0; i < n && rc == 0; i++) {
        const sf_st_tensor_t *t = sf_st_get(src, i);
        if (h->drop && !strcmp(t->name, h->drop)) continue;
        int ndim = t->ndim;
        int64_t shape[SF_ST_MAX_DIMS], numel = t->numel;
        memcpy(shape, t->shape, sizeof shape);
        float *x = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
        sf_st_to_f32(t, x, (size_t)numel);
        if (h->reshape && !strcmp(t->name, h->reshape)) {
            ndim = h->ndim, numel = 1;
            for (int d = 0; d < ndim; d++) shape[d] = h->shape[d], numel *= shape[d];
            x = realloc(x, sizeof(float) * (size_t)numel);
            for (int64_t k = 0; k < numel; k++) x[k] = 0.01f;
        }
        sf_st_dtype_t dt = h->dtype ? h->dtype(t->name) : SF_ST_F32;
        void *data = x;
        size_t nbytes = sizeof(float) * (size_t)numel;
        if (h->rounded_f32 || dt == SF_ST_F32) {
            for (int64_t k = 0; k < numel; k++) x[k] = round_to(dt, x[k]);
            dt = SF_ST_F32;
        } else {
            uint16_t *hv = malloc(2 * (size_t)numel + 2);
            for (int64_t k = 0; k < numel; k++)
                hv[k] = dt == SF_ST_BF16 ? sf_st_f32_to_bf16(x[k]) : sf_st_f32_to_f16(x[k]);
            free(x);
            data = hv;
            nbytes = 2 * (size_t)numel;
        }
        bufs[nb++] = data;
        rc |= sf_st_writer_add(w, t->name, dt, ndim, shape, data, nbytes);
    }
    float zeros[4] = {0};
    int64_t four = 4;
    if (h->extra && rc == 0) rc = sf_st_writer_add(w, h->extra, SF_ST_F32, 1, &four, zeros, sizeof zeros);
    if (rc == 0) rc = sf_st_writer_save(w, path);
    sf_st_writer_free(&w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    free(bufs);
    return rc;
}

static int write_st_in(const sf_st_t *src, const wspec_t *h, const char *dir) {
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    return write_st(src, h, p);
}

/* Zero weights of the shapes in specs, as dir/model.safetensors: the
 * architecture test needs the real sizes, not the values. */
static int write_specs_in(const char *dir) {
    int64_t most = 1;
    for (int i = 0; i < n_specs; i++) {
        int64_t n = 1;
        for (int d = 0; d < specs[i].ndim; d++) n *= specs[i].shape[d];
        if (n > most) most = n;
    }
    float *zeros = calloc((size_t)most, sizeof(float));
    sf_st_writer_t *w;
    int rc = zeros ? sf_st_writer_new(&w) : -1;
    if (rc) return free(zeros), -1;
    rc = sf_st_writer_meta(w, "format", "pt");
    for (int i = 0; i < n_specs && rc == 0; i++) {
        int64_t n = 1;
        for (int d = 0; d < specs[i].ndim; d++) n *= specs[i].shape[d];
        rc = sf_st_writer_add(w, specs[i].name, SF_ST_F32, specs[i].ndim, specs[i].shape, zeros,
                              sizeof(float) * (size_t)n);
    }
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (rc == 0) rc = sf_st_writer_save(w, p);
    sf_st_writer_free(&w);
    free(zeros);
    return rc;
}

/* The image sf_classifier_save writes for m, parsed (the caller frees). */
static sf_st_t *saved_image(sf_classifier_t *m) {
    char p[300], err[256];
    snprintf(p, sizeof p, "%s/src.safetensors", root);
    sf_st_t *st = NULL;
    if (sf_classifier_save(m, p) != 0 || sf_st_load(p, &st, err, sizeof err) != 0) return NULL;
    unlink(p);
    return st;
}

/* ---- config.json texts ---- */

/* As published for timm/convnext_atto.d2_in1k (architecture without its
 * tag, the tag in pretrained_cfg, test sizes beside the train ones). */
static void atto_config(char *buf, size_t n, const char *arch) {
    snprintf(buf, n,
             "{\n  \"architecture\": \"%s\",\n  \"num_classes\": 1000,\n  \"num_features\": 320,\n"
             "  \"pretrained_cfg\": {\n    \"tag\": \"d2_in1k\",\n    \"custom_load\": false,\n"
             "    \"input_size\": [3, 224, 224],\n    \"test_input_size\": [3, 288, 288],\n"
             "    \"fixed_input_size\": false,\n    \"interpolation\": \"bicubic\",\n"
             "    \"crop_pct\": 0.875,\n    \"test_crop_pct\": 0.95,\n    \"crop_mode\": \"center\",\n"
             "    \"mean\": [0.485, 0.456, 0.406],\n    \"std\": [0.229, 0.224, 0.225],\n"
             "    \"num_classes\": 1000,\n    \"pool_size\": [7, 7],\n    \"first_conv\": \"stem.0\",\n"
             "    \"classifier\": \"head.fc\"\n  }\n}\n",
             arch);
}

/* As published for timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k
 * (Inception mean/std, crop 0.9, a fixed input size, token pooling). */
static void vit_config(char *buf, size_t n, int input) {
    snprintf(buf, n,
             "{\n  \"architecture\": \"vit_tiny_patch16_224\",\n  \"num_classes\": 1000,\n"
             "  \"num_features\": 192,\n  \"global_pool\": \"token\",\n  \"pretrained_cfg\": {\n"
             "    \"tag\": \"augreg_in21k_ft_in1k\",\n    \"custom_load\": true,\n"
             "    \"input_size\": [3, %d, %d],\n    \"fixed_input_size\": true,\n"
             "    \"interpolation\": \"bicubic\",\n    \"crop_pct\": 0.9,\n    \"crop_mode\": \"center\",\n"
             "    \"mean\": [0.5, 0.5, 0.5],\n    \"std\": [0.5, 0.5, 0.5],\n    \"num_classes\": 1000,\n"
             "    \"pool_size\": null,\n    \"first_conv\": \"patch_embed.proj\",\n"
             "    \"classifier\": \"head\"\n  }\n}\n",
             input, input);
}

/* Deterministic pixels of B images of S x S. */
static float *pixels(int B, int S) {
    float *px = malloc(sizeof(float) * (size_t)B * 3 * S * S);
    for (int i = 0; i < B * 3 * S * S; i++) px[i] = sinf(0.37f * (float)i) + 0.3f * cosf(0.011f * (float)i);
    return px;
}

/* The models and images the folder tests share. */
static sf_classifier_t *atto0, *vit0;
static sf_st_t *atto_st, *vit_st;

static int load(const char *dir, sf_classifier_t **m, char *err, size_t n) {
    int rc = sf_classifier_load_dir(dir, "cpu", m, err, n);
    if (rc) fprintf(stderr, "  load %s: %s\n", dir, err);
    return rc;
}

/* ---- the folders ---- */

TEST(convnext_atto_hub_folder_loads) {
    sf_classifier_config_t c;
    char err[512], cfg[2048];
    sf_classifier_config_convnext_atto(&c, 1000);
    CHECK_EQ_INT(sf_classifier_new(&c, "cpu", 11, &atto0, err, sizeof err), 0);
    CHECK((atto_st = saved_image(atto0)) != NULL);
    /* sf_classifier_save writes timm's names (and its own config, which a
     * hub file lacks and the folder loader must not need). */
    const int depths[4] = {2, 2, 6, 2}, dims[4] = {40, 80, 160, 320};
    convnext_specs(depths, dims, 1, 1000);
    CHECK(names_are_timms(atto_st));
    CHECK(sf_st_meta(atto_st, "sf_classifier_config") != NULL);

    const char *d = folder("atto");
    atto_config(cfg, sizeof cfg, "convnext_atto");
    CHECK_EQ_INT(write_text(d, "config.json", cfg), 0);
    wspec_t f32 = {0};
    CHECK_EQ_INT(write_st_in(atto_st, &f32, d), 0);
    sf_classifier_t *m = NULL;
    CHECK_EQ_INT(load(d, &m, err, sizeof err), 0);
    /* The config is atto's with pretrained_cfg's crop_pct (0.875, not the
     * test_crop_pct 0.95 the preset carries). */
    sf_classifier_config_t want;
    sf_classifier_config_convnext_atto(&want, 1000);
    want.crop_pct = 0.875f;
    CHECK(memcmp(sf_classifier_config(m), &want, sizeof want) == 0);

    /* The same logits as the model the file was written from, bit for bit. */
    enum { B = 2, S = 224 };
    float *px = pixels(B, S);
    static float l0[B * 1000], l1[B * 1000];
    CHECK_EQ_INT(sf_classifier_forward(atto0, px, B, l0, NULL), 0);
    CHECK_EQ_INT(sf_classifier_forward(m, px, B, l1, NULL), 0);
    CHECK(memcmp(l0, l1, sizeof l0) == 0);
    sf_classifier_free(&m);

    /* The architecture with its tag, as timm.create_model takes it. */
    atto_config(cfg, sizeof cfg, "convnext_atto.d2_in1k");
    CHECK_EQ_INT(write_text(d, "config.json", cfg), 0);
    CHECK_EQ_INT(load(d, &m, err, sizeof err), 0);
    CHECK(memcmp(sf_classifier_config(m), &want, sizeof want) == 0);
    sf_classifier_free(&m);

    /* A sharded checkpoint (an index and two shards, as the hub holds large
     * models) loads to the same logits. */
    const char *sh = folder("atto-sharded");
    CHECK_EQ_INT(write_text(sh, "config.json", cfg), 0);
    static char idx[65536];
    int o = snprintf(idx, sizeof idx, "{\"metadata\": {}, \"weight_map\": {");
    for (int part = 0; part < 2; part++) {
        sf_st_writer_t *w;
        CHECK_EQ_INT(sf_st_writer_new(&w), 0);
        for (int i = part; i < sf_st_count(atto_st); i += 2) {
            const sf_st_tensor_t *t = sf_st_get(atto_st, i);
            CHECK_EQ_INT(sf_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes), 0);
            o += snprintf(idx + o, sizeof idx - (size_t)o, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
                          o > 40 ? ", " : "", t->name, part + 1);
        }
        char p[400];
        snprintf(p, sizeof p, "%s/model-0000%d-of-00002.safetensors", sh, part + 1);
        CHECK_EQ_INT(sf_st_writer_save(w, p), 0);
        sf_st_writer_free(&w);
    }
    snprintf(idx + o, sizeof idx - (size_t)o, "}}");
    CHECK_EQ_INT(write_text(sh, "model.safetensors.index.json", idx), 0);
    CHECK_EQ_INT(load(sh, &m, err, sizeof err), 0);
    CHECK_EQ_INT(sf_classifier_forward(m, px, B, l1, NULL), 0);
    CHECK(memcmp(l0, l1, sizeof l0) == 0);
    sf_classifier_free(&m);
    rm_rf(sh);
    free(px);
}

/* Half precision as hub files converted or saved so hold it: the MLPs in
 * BF16, the attention in F16, the rest F32. */
static sf_st_dtype_t vit_dtype(const char *name) {
    if (strstr(name, "mlp.")) return SF_ST_BF16;
    if (strstr(name, "attn.qkv.")) return SF_ST_F16;
    return SF_ST_F32;
}

TEST(vit_tiny_hub_folder_half_precision_loads) {
    sf_classifier_config_t c;
    char err[512], cfg[2048];
    sf_classifier_config_vit_tiny(&c, 1000);
    CHECK_EQ_INT(sf_classifier_new(&c, "cpu", 12, &vit0, err, sizeof err), 0);
    CHECK((vit_st = saved_image(vit0)) != NULL);
    vit_specs(192, 12, 16, 224, 1000);
    CHECK(names_are_timms(vit_st));

    const char *d = folder("vit");
    vit_config(cfg, sizeof cfg, 224);
    CHECK_EQ_INT(write_text(d, "config.json", cfg), 0);
    wspec_t half = {.dtype = vit_dtype};
    CHECK_EQ_INT(write_st_in(vit_st, &half, d), 0);
    /* The same rounded values as F32, loaded with the config given: what
     * the half-precision file must equal exactly. */
    char ref_path[300];
    snprintf(ref_path, sizeof ref_path, "%s/vit-rounded.safetensors", root);
    wspec_t rounded = {.dtype = vit_dtype, .rounded_f32 = 1};
    CHECK_EQ_INT(write_st(vit_st, &rounded, ref_path), 0);

    sf_classifier_t *m = NULL, *ref = NULL;
    CHECK_EQ_INT(load(d, &m, err, sizeof err), 0);
    const sf_classifier_config_t *got = sf_classifier_config(m);
    CHECK_EQ_INT(got->arch, SF_CLS_VIT);
    CHECK_EQ_INT(got->image_size, 224);
    CHECK_EQ_INT(got->n_classes, 1000);
    CHECK_EQ_INT(got->interpolation, SF_INTERP_BICUBIC);
    CHECK(got->crop_pct == 0.9f);
    for (int i = 0; i < 3; i++) CHECK(got->mean[i] == 0.5f && got->std[i] == 0.5f);
    sf_classifier_config_t want = c;
    for (int i = 0; i < 3; i++) want.mean[i] = want.std[i] = 0.5f;
    CHECK(memcmp(got, &want, sizeof want) == 0);
    CHECK_EQ_INT(sf_classifier_load(ref_path, &want, "cpu", &ref, err, sizeof err), 0);

    enum { B = 2, S = 224 };
    float *px = pixels(B, S);
    static float l0[B * 1000], l1[B * 1000], l2[B * 1000];
    CHECK_EQ_INT(sf_classifier_forward(m, px, B, l1, NULL), 0);
    CHECK_EQ_INT(sf_classifier_forward(ref, px, B, l2, NULL), 0);
    CHECK_EQ_INT(sf_classifier_forward(vit0, px, B, l0, NULL), 0);
    CHECK(memcmp(l1, l2, sizeof l1) == 0);
    double diff = 0;
    for (int i = 0; i < B * 1000; i++) diff = fmax(diff, fabs((double)l0[i] - l1[i]));
    printf("# ViT from BF16/F16 tensors vs its fp32 original: max |logit diff| %.3g\n", diff);
    CHECK(diff > 0 && diff < 0.05);
    free(px);
    sf_classifier_free(&m);
    sf_classifier_free(&ref);
    unlink(ref_path);
}

TEST(pretrained_cfg_values_land_in_the_config) {
    CHECK(atto_st);
    char err[512];
    wspec_t f32 = {0};
    sf_classifier_config_t want;
    sf_classifier_config_convnext_atto(&want, 1000);
    want.image_size = 160;
    want.crop_pct = 0.8f;
    want.interpolation = SF_INTERP_BILINEAR;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(want.mean, mean, sizeof mean);
    memcpy(want.std, std, sizeof std);
    /* Values unlike the preset's in each field; pretrained_cfg's num_classes
     * is overridden by the top level's, as timm reads it. */
    static const char *const configs[2] = {
        "{\"architecture\": \"convnext_atto\", \"num_classes\": 1000, \"pretrained_cfg\": {"
        "\"input_size\": [3, 160, 160], \"interpolation\": \"bilinear\", \"crop_pct\": 0.8, "
        "\"crop_mode\": \"center\", \"mean\": [0.48145466, 0.4578275, 0.40821073], "
        "\"std\": [0.26862954, 0.26130258, 0.27577711], \"num_classes\": 999}}",
        /* The older single-object form: the same keys at the top level. */
        "{\"architecture\": \"convnext_atto\", \"num_classes\": 1000, \"input_size\": [3, 160, 160], "
        "\"interpolation\": \"bilinear\", \"crop_pct\": 0.8, \"mean\": [0.48145466, 0.4578275, 0.40821073], "
        "\"std\": [0.26862954, 0.26130258, 0.27577711], \"first_conv\": \"stem.0\", \"classifier\": \"head.fc\"}",
    };
    const char *d = folder("values");
    CHECK_EQ_INT(write_st_in(atto_st, &f32, d), 0);
    for (int k = 0; k < 2; k++) {
        CHECK_EQ_INT(write_text(d, "config.json", configs[k]), 0);
        sf_classifier_t *m = NULL;
        CHECK_EQ_INT(load(d, &m, err, sizeof err), 0);
        const sf_classifier_config_t *got = sf_classifier_config(m);
        CHECK_EQ_INT(got->image_size, 160);
        CHECK_EQ_INT(got->interpolation, SF_INTERP_BILINEAR);
        CHECK(got->crop_pct == 0.8f);
        CHECK(memcmp(got->mean, mean, sizeof mean) == 0 && memcmp(got->std, std, sizeof std) == 0);
        CHECK(memcmp(got, &want, sizeof want) == 0);
        /* ConvNeXt runs at the size the config gives. */
        float *px = pixels(1, 160);
        int pred = -1;
        CHECK_EQ_INT(sf_classifier_forward(m, px, 1, NULL, &pred), 0);
        CHECK(pred >= 0 && pred < 1000);
        free(px);
        sf_classifier_free(&m);
    }
}

/* Each architecture of the table: a folder of zero weights with timm's names
 * and shapes (from timm's module code above) loads, and has the parameter
 * count of timm's model card for it (Params (M), one decimal; pico's card
 * says 9.0 and timm's ONNX table 9.1, so 0.06M of slack). */
TEST(architecture_table_matches_timm) {
    static const struct {
        const char *name;
        int vit, depths[4], dims[4], conv_mlp, width, heads;
        double card_m;
    } archs[] = {
        {"convnext_atto", 0, {2, 2, 6, 2}, {40, 80, 160, 320}, 1, 0, 0, 3.7},
        {"convnext_femto", 0, {2, 2, 6, 2}, {48, 96, 192, 384}, 1, 0, 0, 5.2},
        {"convnext_pico", 0, {2, 2, 6, 2}, {64, 128, 256, 512}, 1, 0, 0, 9.0},
        {"convnext_nano", 0, {2, 2, 8, 2}, {80, 160, 320, 640}, 1, 0, 0, 15.6},
        {"convnext_tiny", 0, {3, 3, 9, 3}, {96, 192, 384, 768}, 0, 0, 0, 28.6},
        {"vit_tiny_patch16_224", 1, {0}, {0}, 0, 192, 3, 5.7},
        {"vit_small_patch16_224", 1, {0}, {0}, 0, 384, 6, 22.1},
        {"vit_base_patch16_224", 1, {0}, {0}, 0, 768, 12, 86.6},
    };
    char err[512], cfg[512];
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        double t0 = now_s();
        if (archs[a].vit) vit_specs(archs[a].width, 12, 16, 224, 1000);
        else convnext_specs(archs[a].depths, archs[a].dims, archs[a].conv_mlp, 1000);
        const char *d = folder("arch");
        snprintf(cfg, sizeof cfg, "{\"architecture\": \"%s\", \"num_classes\": 1000, \"pretrained_cfg\": "
                 "{\"input_size\": [3, 224, 224], \"interpolation\": \"bicubic\", \"crop_pct\": 0.9}}",
                 archs[a].name);
        CHECK_EQ_INT(write_text(d, "config.json", cfg), 0);
        CHECK_EQ_INT(write_specs_in(d), 0);
        sf_classifier_t *m = NULL;
        CHECK_EQ_INT(load(d, &m, err, sizeof err), 0);
        const sf_classifier_config_t *c = sf_classifier_config(m);
        CHECK_EQ_INT(c->arch, archs[a].vit ? SF_CLS_VIT : SF_CLS_CONVNEXT);
        if (archs[a].vit) {
            CHECK_EQ_INT(c->width, archs[a].width);
            CHECK_EQ_INT(c->heads, archs[a].heads);
        } else {
            CHECK_EQ_INT(c->conv_mlp, archs[a].conv_mlp);
        }
        const double got = (double)sf_classifier_num_params(m) / 1e6;
        printf("# %s: %.3fM parameters (model card %.1fM), %.1f s\n", archs[a].name, got, archs[a].card_m,
               now_s() - t0);
        CHECK(fabs(got - archs[a].card_m) <= 0.06);
        sf_classifier_free(&m);
        rm_rf(d);
    }
}

/* Writes folder `name` with config (NULL: none) and the atto or ViT weights
 * with one fault, loads it, and returns the code, the message in err. */
static int faulty(const char *name, const char *config, const sf_st_t *src, const wspec_t *fault, char *err,
                  size_t errlen, const char **dir) {
    const char *d = folder(name);
    if (dir) *dir = d;
    if (config) write_text(d, "config.json", config);
    if (src && write_st_in(src, fault, d)) return 1;
    sf_classifier_t *m = NULL;
    int rc = sf_classifier_load_dir(d, "cpu", &m, err, errlen);
    if (rc == 0) sf_classifier_free(&m);
    printf("# %s: %s\n", name, rc ? err : "(loaded)");
    return rc;
}

TEST(broken_folders_are_refused_naming_what) {
    CHECK(atto_st && vit_st);
    char err[512], want[512], cfg[2048];
    const char *d;
    wspec_t none = {0};
    atto_config(cfg, sizeof cfg, "convnext_atto");

    /* No config.json. */
    CHECK_EQ_INT(faulty("nocfg", NULL, atto_st, &none, err, sizeof err, &d), SF_ENOTFOUND);
    snprintf(want, sizeof want, "%s/config.json", d);
    CHECK(contains(err, want));
    /* Not JSON. */
    CHECK_EQ_INT(faulty("notjson", "{\"architecture\": \"convnext_atto\",, oops", NULL, &none, err, sizeof err, &d),
                 SF_EFORMAT);
    snprintf(want, sizeof want, "%s/config.json: not valid JSON", d);
    CHECK(contains(err, want));
    /* An architecture this build does not know. */
    CHECK_EQ_INT(faulty("resnet", "{\"architecture\": \"resnet50\", \"num_classes\": 1000}", atto_st, &none, err,
                        sizeof err, &d), SF_EUNSUPPORTED);
    snprintf(want, sizeof want, "%s/config.json: unknown architecture 'resnet50'", d);
    CHECK(contains(err, want));
    /* A variant with the same family name is another architecture. */
    CHECK_EQ_INT(faulty("hnf", "{\"architecture\": \"convnext_tiny_hnf.a2h_in1k\"}", NULL, &none, err, sizeof err,
                        NULL), SF_EUNSUPPORTED);
    CHECK(contains(err, "'convnext_tiny_hnf.a2h_in1k'"));
    /* An interpolation the preprocessing does not do. */
    CHECK_EQ_INT(faulty("nearest", "{\"architecture\": \"convnext_atto\", \"pretrained_cfg\": "
                        "{\"interpolation\": \"nearest\"}}", NULL, &none, err, sizeof err, &d), SF_EUNSUPPORTED);
    CHECK(contains(err, "config.json") && contains(err, "pretrained_cfg.interpolation 'nearest'"));
    /* Values out of range or of the wrong type. */
    CHECK_EQ_INT(faulty("crop", "{\"architecture\": \"convnext_atto\", \"pretrained_cfg\": {\"crop_pct\": 1.5}}",
                        NULL, &none, err, sizeof err, NULL), SF_EINVAL);
    CHECK(contains(err, "config.json") && contains(err, "crop_pct 1.5"));
    CHECK_EQ_INT(faulty("mean", "{\"architecture\": \"convnext_atto\", \"pretrained_cfg\": {\"mean\": [0.5, 0.5]}}",
                        NULL, &none, err, sizeof err, NULL), SF_EFORMAT);
    CHECK(contains(err, "pretrained_cfg.mean is not a list of 3 numbers"));
    CHECK_EQ_INT(faulty("pool", "{\"architecture\": \"vit_tiny_patch16_224\", \"global_pool\": \"avg\"}", NULL,
                        &none, err, sizeof err, NULL), SF_EUNSUPPORTED);
    CHECK(contains(err, "global_pool 'avg'"));
    CHECK_EQ_INT(faulty("margs", "{\"architecture\": \"vit_tiny_patch16_224\", \"model_args\": "
                        "{\"drop_path_rate\": 0.1, \"class_token\": false}}", NULL, &none, err, sizeof err, NULL),
                 SF_EUNSUPPORTED);
    CHECK(contains(err, "model_args.class_token"));

    /* pytorch_model.bin only: convert it. */
    d = folder("bin");
    CHECK_EQ_INT(write_text(d, "config.json", cfg), 0);
    CHECK_EQ_INT(write_text(d, "pytorch_model.bin", "PK\003\004 a pickle"), 0);
    sf_classifier_t *m = NULL;
    CHECK_EQ_INT(sf_classifier_load_dir(d, "cpu", &m, err, sizeof err), SF_ENOTFOUND);
    printf("# bin: %s\n", err);
    snprintf(want, sizeof want, "%s/pytorch_model.bin", d);
    CHECK(contains(err, want) && contains(err, "convert them to model.safetensors"));

    /* A tensor missing: its name and the file. */
    wspec_t drop = {.drop = "stages.2.blocks.3.mlp.fc1.bias"};
    CHECK_EQ_INT(faulty("drop", cfg, atto_st, &drop, err, sizeof err, &d), SF_ENOTFOUND);
    snprintf(want, sizeof want, "%s/model.safetensors", d);
    CHECK(contains(err, want) && contains(err, "'stages.2.blocks.3.mlp.fc1.bias'"));
    /* A tensor of another shape: its name and both shapes. */
    wspec_t shape = {.reshape = "stages.1.downsample.1.weight", .ndim = 4, .shape = {80, 40, 3, 3}};
    CHECK_EQ_INT(faulty("shape", cfg, atto_st, &shape, err, sizeof err, &d), SF_EFORMAT);
    snprintf(want, sizeof want, "%s/model.safetensors", d);
    CHECK(contains(err, want) && contains(err, "stages.1.downsample.1.weight"));
    CHECK(contains(err, "[80,40,3,3]") && contains(err, "[80,40,2,2]"));
    /* A head of 999 classes under num_classes 1000: both named. */
    wspec_t head = {.reshape = "head.fc.weight", .ndim = 2, .shape = {999, 320}};
    CHECK_EQ_INT(faulty("head", cfg, atto_st, &head, err, sizeof err, &d), SF_EFORMAT);
    CHECK(contains(err, "head.fc.weight") && contains(err, "999 classes") && contains(err, "num_classes 1000"));
    snprintf(want, sizeof want, "%s/config.json", d);
    CHECK(contains(err, want));
    /* A tensor the architecture lacks (a variant with a pre-logits layer). */
    wspec_t extra = {.extra = "head.pre_logits.fc.weight"};
    CHECK_EQ_INT(faulty("extra", cfg, atto_st, &extra, err, sizeof err, NULL), SF_EFORMAT);
    CHECK(contains(err, "model.safetensors") && contains(err, "'head.pre_logits.fc.weight'"));
    /* ViT: input_size against the size the position table was made for. */
    vit_config(cfg, sizeof cfg, 384);
    CHECK_EQ_INT(faulty("pos", cfg, vit_st, &none, err, sizeof err, NULL), SF_EFORMAT);
    CHECK(contains(err, "pos_embed") && contains(err, "[1,197,192]") && contains(err, "224x224"));
    CHECK(contains(err, "input_size 384") && contains(err, "config.json"));
    /* A file where the folder belongs. */
    snprintf(want, sizeof want, "%s/bin/config.json", root);
    CHECK_EQ_INT(sf_classifier_load_dir(want, "cpu", &m, err, sizeof err), SF_EINVAL);
    CHECK(contains(err, "is not a folder"));
    CHECK(m == NULL);
}

/* ---- the training state ---- */

enum { TB = 4, TS = 32, TN = 5 };

/* Small models of both architectures, so that many steps are cheap. */
static void small_config(sf_classifier_config_t *c, int vit, int classes) {
    if (vit) {
        sf_classifier_config_vit_tiny(c, classes);
        c->image_size = TS, c->patch_size = 8, c->width = 32, c->depth = 2, c->heads = 2;
    } else {
        sf_classifier_config_convnext_atto(c, classes);
        const int depths[4] = {1, 1, 2, 1}, dims[4] = {8, 16, 24, 32};
        memcpy(c->depths, depths, sizeof depths);
        memcpy(c->dims, dims, sizeof dims);
        c->image_size = TS;
    }
}

static float *batches;   /* two batches of TB images */
static const int labels[2][TB] = {{0, 1, 2, 3}, {4, 3, 1, 0}};

/* Steps [from, to) of the fine-tuning run: alternating batches, a learning
 * rate that changes every step (the caller's schedule). */
static int train(sf_classifier_t *m, int from, int to) {
    for (int s = from; s < to; s++) {
        int rc = sf_classifier_train_step(m, batches + (size_t)(s % 2) * TB * 3 * TS * TS, labels[s % 2], TB,
                                          1e-3f * (float)(1 + s % 3), NULL, NULL);
        if (rc) return rc;
    }
    return 0;
}

static sf_classifier_t *small(int vit, int classes, uint64_t seed) {
    sf_classifier_config_t c;
    small_config(&c, vit, classes);
    sf_classifier_t *m = NULL;
    char err[256];
    if (sf_classifier_new(&c, "cpu", seed, &m, err, sizeof err)) fprintf(stderr, "  new: %s\n", err);
    return m;
}

static void state_round_trip(int vit) {
    enum { N = 6 };
    char a_state[300], c_state[300], mid[300], a_w[300], c_w[300], wonly[300];
    snprintf(a_state, sizeof a_state, "%s/a.state", root);
    snprintf(c_state, sizeof c_state, "%s/c.state", root);
    snprintf(mid, sizeof mid, "%s/mid.state", root);
    snprintf(a_w, sizeof a_w, "%s/a.safetensors", root);
    snprintf(c_w, sizeof c_w, "%s/c.safetensors", root);
    snprintf(wonly, sizeof wonly, "%s/weights-only.safetensors", root);
    float la[TB * TN], lc[TB * TN];

    /* The uninterrupted run. */
    sf_classifier_t *a = small(vit, TN, 5);
    CHECK(a);
    CHECK_EQ_INT(train(a, 0, N), 0);
    CHECK_EQ_INT(sf_classifier_save_state(a, a_state), 0);
    CHECK_EQ_INT(sf_classifier_save(a, a_w), 0);
    CHECK_EQ_INT(sf_classifier_forward(a, batches, TB, la, NULL), 0);

    for (int k = 0; k <= 3; k += 3) {
        /* Killed after k steps ... */
        sf_classifier_t *b = small(vit, TN, 5);
        CHECK(b);
        CHECK_EQ_INT(train(b, 0, k), 0);
        CHECK_EQ_INT(sf_classifier_save_state(b, mid), 0);
        sf_classifier_free(&b);
        /* ... and resumed in a model of other weights (seed 9) and, the
         * second time, one whose optimiser has state of its own. */
        sf_classifier_t *c = small(vit, TN, 9);
        CHECK(c);
        if (k) CHECK_EQ_INT(train(c, 7, 9), 0);
        CHECK_EQ_INT(sf_classifier_load_state(c, mid), 0);
        CHECK_EQ_INT(train(c, k, N), 0);
        CHECK_EQ_INT(sf_classifier_save_state(c, c_state), 0);
        CHECK_EQ_INT(sf_classifier_save(c, c_w), 0);
        CHECK_EQ_INT(sf_classifier_forward(c, batches, TB, lc, NULL), 0);
        /* The same bytes: weights, moments and steps, and the logits. */
        CHECK(same_file(a_state, c_state));
        CHECK(same_file(a_w, c_w));
        CHECK(memcmp(la, lc, sizeof la) == 0);
        sf_classifier_free(&c);
    }

    /* The control: resuming from the weights alone (a fresh optimiser) gives
     * other weights, so the comparison above sees the optimiser's state. */
    sf_classifier_t *b = small(vit, TN, 5), *w = NULL;
    CHECK(b);
    CHECK_EQ_INT(train(b, 0, 3), 0);
    CHECK_EQ_INT(sf_classifier_save(b, wonly), 0);
    sf_classifier_config_t cfg = *sf_classifier_config(b);
    char err[256];
    CHECK_EQ_INT(sf_classifier_load(wonly, &cfg, "cpu", &w, err, sizeof err), 0);
    CHECK_EQ_INT(train(w, 3, N), 0);
    CHECK_EQ_INT(sf_classifier_save(w, c_w), 0);
    CHECK(!same_file(a_w, c_w));
    sf_classifier_free(&w);
    /* A state file is a weights file too. */
    CHECK_EQ_INT(sf_classifier_load(mid, NULL, "cpu", &w, err, sizeof err), 0);
    CHECK_EQ_INT(sf_classifier_save(w, c_w), 0);
    CHECK(same_file(wonly, c_w));
    sf_classifier_free(&w);
    sf_classifier_free(&b);
    sf_classifier_free(&a);
    unlink(a_state), unlink(c_state), unlink(mid), unlink(a_w), unlink(c_w), unlink(wonly);
}

TEST(state_round_trip_is_bit_exact_convnext) { state_round_trip(0); }
TEST(state_round_trip_is_bit_exact_vit) { state_round_trip(1); }

/* A state file refused: SF_EFORMAT (unless given), errstr names the file and
 * `what`; then m must still equal ref, which never saw the file — its logits,
 * and one more step saved as a state (weights, moments and steps). */
static int refused(sf_classifier_t *m, sf_classifier_t *ref, const char *path, int code, const char *what) {
    int rc = sf_classifier_load_state(m, path);
    printf("# %s\n", sf_classifier_errstr(m));
    if (rc != code) return fprintf(stderr, "  load_state %s: %d, want %d\n", path, rc, code), 0;
    if (!contains(sf_classifier_errstr(m), path) || !contains(sf_classifier_errstr(m), what)) return 0;
    float lm[TB * TN], lr[TB * TN];
    if (sf_classifier_forward(m, batches, TB, lm, NULL) || sf_classifier_forward(ref, batches, TB, lr, NULL) ||
        memcmp(lm, lr, sizeof lm) != 0)
        return fprintf(stderr, "  the model changed\n"), 0;
    return 1;
}

TEST(bad_state_files_are_refused_model_unchanged) {
    char good[300], bad[300], other[300], wonly[300], err[256];
    snprintf(good, sizeof good, "%s/good.state", root);
    snprintf(bad, sizeof bad, "%s/bad.state", root);
    snprintf(other, sizeof other, "%s/other.state", root);
    snprintf(wonly, sizeof wonly, "%s/weights.safetensors", root);
    /* m and ref: the same two steps; good: a state of another run (seed 3,
     * four steps) that m must not take in part. */
    sf_classifier_t *m = small(0, TN, 5), *ref = small(0, TN, 5), *g = small(0, TN, 3), *o = small(0, TN + 1, 5);
    CHECK(m && ref && g && o);
    CHECK_EQ_INT(train(m, 0, 2), 0);
    CHECK_EQ_INT(train(ref, 0, 2), 0);
    CHECK_EQ_INT(train(g, 0, 4), 0);
    CHECK_EQ_INT(sf_classifier_save_state(g, good), 0);
    CHECK_EQ_INT(sf_classifier_save_state(o, other), 0);
    CHECK_EQ_INT(sf_classifier_save(g, wonly), 0);
    size_t n;
    unsigned char *img = slurp(good, &n);
    CHECK(img && n > 4096);

    /* Truncated: the file's last half lost. */
    CHECK_EQ_INT(spit(bad, img, n / 2), 0);
    CHECK(refused(m, ref, bad, SF_EFORMAT, "byte"));
    /* One byte of the data changed. */
    img[n - n / 4] ^= 0x10;
    CHECK_EQ_INT(spit(bad, img, n), 0);
    CHECK(refused(m, ref, bad, SF_EFORMAT, "checksum"));
    img[n - n / 4] ^= 0x10;
    /* The header damaged. */
    img[8] = '#';
    CHECK_EQ_INT(spit(bad, img, n), 0);
    CHECK(refused(m, ref, bad, SF_EFORMAT, "JSON"));
    /* Another configuration (6 classes): the field named. */
    CHECK(refused(m, ref, other, SF_EFORMAT, "n_classes 6 in the file, 5 in this model"));
    /* Weights without the optimiser. */
    CHECK(refused(m, ref, wonly, SF_EFORMAT, "not a training state"));
    /* No file at all: an I/O error, not a format one. */
    snprintf(bad, sizeof bad, "%s/none.state", root);
    CHECK(refused(m, ref, bad, SF_EIO, "none.state"));

    /* The optimiser is untouched too: one more step on each gives the same
     * state, bytes for bytes. */
    CHECK_EQ_INT(train(m, 2, 3), 0);
    CHECK_EQ_INT(train(ref, 2, 3), 0);
    char sm[300], sr[300];
    snprintf(sm, sizeof sm, "%s/m.state", root);
    snprintf(sr, sizeof sr, "%s/r.state", root);
    CHECK_EQ_INT(sf_classifier_save_state(m, sm), 0);
    CHECK_EQ_INT(sf_classifier_save_state(ref, sr), 0);
    CHECK(same_file(sm, sr));
    /* And the good file is taken whole. */
    CHECK_EQ_INT(sf_classifier_load_state(m, good), 0);
    CHECK_EQ_INT(sf_classifier_save_state(m, sm), 0);
    CHECK(same_file(sm, good));
    (void)err;
    free(img);
    sf_classifier_free(&m);
    sf_classifier_free(&ref);
    sf_classifier_free(&g);
    sf_classifier_free(&o);
}

int main(void) {
    sf_ml_opts_t o = {.threads = 1, .quiet = 1};
    sf_ml_init(&o);
    snprintf(root, sizeof root, "/tmp/sf_timm_XXXXXX");
    if (!mkdtemp(root)) return 1;
    batches = pixels(2 * TB, TS);
    SF_RUN(convnext_atto_hub_folder_loads);
    SF_RUN(vit_tiny_hub_folder_half_precision_loads);
    SF_RUN(pretrained_cfg_values_land_in_the_config);
    SF_RUN(architecture_table_matches_timm);
    SF_RUN(broken_folders_are_refused_naming_what);
    SF_RUN(state_round_trip_is_bit_exact_convnext);
    SF_RUN(state_round_trip_is_bit_exact_vit);
    SF_RUN(bad_state_files_are_refused_model_unchanged);
    sf_classifier_free(&atto0);
    sf_classifier_free(&vit0);
    sf_st_free(&atto_st);
    sf_st_free(&vit_st);
    free(batches);
    rm_rf(root);
    SF_DONE();
}
