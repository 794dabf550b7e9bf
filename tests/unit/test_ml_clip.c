/* test_ml_clip: CLIP with HF names — the ViT-B/32 parameter list and
 * forward, the world config's embeddings (L2-normalised, causal text mask,
 * EOT pooling), preprocessing, checkpoints and bad checkpoints, training. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/formats/safetensors.h"
#include "ml/sf_ml.h"
#include "ml/sf_vision.h"
#include "sf_test.h"

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[4];
} pspec_t;

static int n_expect;
static pspec_t expect[512];

static void want(const char *name, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    pspec_t *p = &expect[n_expect++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->shape[0] = a, p->shape[1] = b, p->shape[2] = c, p->shape[3] = d;
}

static void want_layers(const char *tower, int L, int64_t C, int64_t M) {
    char n[128];
    static const char *proj[] = {"k_proj", "v_proj", "q_proj", "out_proj"};
    for (int i = 0; i < L; i++) {
        for (int k = 0; k < 4; k++) {
            snprintf(n, sizeof n, "%s.encoder.layers.%d.self_attn.%s.weight", tower, i, proj[k]);
            want(n, 2, C, C, 0, 0);
            snprintf(n, sizeof n, "%s.encoder.layers.%d.self_attn.%s.bias", tower, i, proj[k]);
            want(n, 1, C, 0, 0, 0);
        }
        const char *ln[] = {"layer_norm1", "layer_norm2"};
        for (int k = 0; k < 2; k++) {
            snprintf(n, sizeof n, "%s.encoder.layers.%d.%s.weight", tower, i, ln[k]);
            want(n, 1, C, 0, 0, 0);
            snprintf(n, sizeof n, "%s.encoder.layers.%d.%s.bias", tower, i, ln[k]);
            want(n, 1, C, 0, 0, 0);
        }
        snprintf(n, sizeof n, "%s.encoder.layers.%d.mlp.fc1.weight", tower, i);
        want(n, 2, M, C, 0, 0);
        snprintf(n, sizeof n, "%s.encoder.layers.%d.mlp.fc1.bias", tower, i);
        want(n, 1, M, 0, 0, 0);
        snprintf(n, sizeof n, "%s.encoder.layers.%d.mlp.fc2.weight", tower, i);
        want(n, 2, C, M, 0, 0);
        snprintf(n, sizeof n, "%s.encoder.layers.%d.mlp.fc2.bias", tower, i);
        want(n, 1, C, 0, 0, 0);
    }
}

/* The state_dict of HF's CLIPModel for openai/clip-vit-base-patch32 (without
 * the position_ids buffers, which are not parameters). */
static void expect_vit_b32(void) {
    n_expect = 0;
    want("text_model.embeddings.token_embedding.weight", 2, 49408, 512, 0, 0);
    want("text_model.embeddings.position_embedding.weight", 2, 77, 512, 0, 0);
    want_layers("text_model", 12, 512, 2048);
    want("text_model.final_layer_norm.weight", 1, 512, 0, 0, 0);
    want("text_model.final_layer_norm.bias", 1, 512, 0, 0, 0);
    want("vision_model.embeddings.class_embedding", 1, 768, 0, 0, 0);
    want("vision_model.embeddings.patch_embedding.weight", 4, 768, 3, 32, 32);
    want("vision_model.embeddings.position_embedding.weight", 2, 50, 768, 0, 0);
    want("vision_model.pre_layrnorm.weight", 1, 768, 0, 0, 0);
    want("vision_model.pre_layrnorm.bias", 1, 768, 0, 0, 0);
    want_layers("vision_model", 12, 768, 3072);
    want("vision_model.post_layernorm.weight", 1, 768, 0, 0, 0);
    want("vision_model.post_layernorm.bias", 1, 768, 0, 0, 0);
    want("visual_projection.weight", 2, 512, 768, 0, 0);
    want("text_projection.weight", 2, 512, 512, 0, 0);
    want("logit_scale", 0, 0, 0, 0, 0);
}

static void l2_check(const float *v, int n, int E, int *ok) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < E; k++) s += (double)v[i * E + k] * v[i * E + k];
        if (fabs(sqrt(s) - 1) > 1e-4) *ok = 0;
    }
}

TEST(vit_b32_names_shapes_forward) {
    sf_clip_config_t c;
    sf_clip_config_vit_b32(&c);
    sf_clip_t *m;
    char err[256];
    CHECK_EQ_INT(sf_clip_new(&c, "cpu", 1, &m, err, sizeof err), 0);
    expect_vit_b32();
    CHECK_EQ_INT(sf_clip_param_count(m), n_expect);
    for (int e = 0; e < n_expect; e++) {
        int found = 0;
        for (int i = 0; i < sf_clip_param_count(m) && !found; i++) {
            int nd;
            int64_t sh[4];
            const char *name = sf_clip_param(m, i, &nd, sh);
            if (strcmp(name, expect[e].name)) continue;
            found = 1;
            if (nd != expect[e].ndim) fprintf(stderr, "%s: %d dims\n", name, nd);
            CHECK_EQ_INT(nd, expect[e].ndim);
            for (int k = 0; k < nd; k++) CHECK_EQ_INT(sh[k], expect[e].shape[k]);
        }
        if (!found) fprintf(stderr, "missing %s\n", expect[e].name);
        CHECK(found);
    }
    CHECK_EQ_INT(sf_clip_num_params(m), 151277313);   /* the published count */
    /* One image and one 77-token text through the real shapes. */
    float *px = calloc(3 * 224 * 224, sizeof(float)), emb[2 * 512];
    int32_t tok[2 * 77] = {0};
    tok[0] = 49406, tok[1] = 320, tok[2] = 49407;
    tok[77] = 49406, tok[78] = 2368, tok[79] = 49407;
    CHECK_EQ_INT(sf_clip_encode_image(m, px, 1, emb), 0);
    CHECK_EQ_INT(sf_clip_encode_text(m, tok, 2, 77, emb), 0);
    int ok = 1;
    l2_check(emb, 2, 512, &ok);
    CHECK(ok);
    free(px);
    sf_clip_free(&m);
}

static sf_clip_t *small(void) {
    sf_clip_config_t c;
    sf_clip_config_world(&c);
    c.vocab_size = 100;
    c.eot_id = 99;
    sf_clip_t *m = NULL;
    char err[256];
    sf_clip_new(&c, "cpu", 7, &m, err, sizeof err);
    return m;
}

TEST(text_mask_and_eot_pooling) {
    sf_clip_t *m = small();
    CHECK(m);
    const int T = 8, E = sf_clip_config(m)->embed_dim;
    int32_t t[3 * 8] = {98, 5, 6, 99, 0, 0, 0, 0,
                        98, 5, 6, 99, 7, 8, 9, 10,     /* differs after the EOT only */
                        98, 5, 4, 99, 0, 0, 0, 0};     /* differs before it */
    float *e = malloc(sizeof(float) * 3 * E);
    CHECK_EQ_INT(sf_clip_encode_text(m, t, 3, T, e), 0);
    double d01 = 0, d02 = 0;
    for (int k = 0; k < E; k++) {
        d01 += fabs(e[k] - e[E + k]);
        d02 += fabs(e[k] - e[2 * E + k]);
    }
    CHECK(d01 < 1e-5);     /* causal mask + pooling at the EOT */
    CHECK(d02 > 1e-3);
    int ok = 1;
    l2_check(e, 3, E, &ok);
    CHECK(ok);
    /* Bad ids and lengths are errors, not crashes. */
    t[1] = 100;
    CHECK_EQ_INT(sf_clip_encode_text(m, t, 1, T, e), SF_EINVAL);
    CHECK(strstr(sf_clip_errstr(m), "vocabulary"));
    CHECK_EQ_INT(sf_clip_encode_text(m, t, 1, 33, e), SF_EINVAL);
    free(e);
    sf_clip_free(&m);
}

TEST(preprocess_resize_crop_normalise) {
    sf_clip_config_t c;
    sf_clip_config_world(&c);   /* 32 x 32 */
    /* A 64 x 48 image: left half black, right half white, one red column
     * at x = 0 that the centre crop must cut away. */
    uint8_t *rgb = calloc(64 * 48 * 3, 1);
    for (int y = 0; y < 48; y++)
        for (int x = 0; x < 64; x++)
            for (int k = 0; k < 3; k++) rgb[(y * 64 + x) * 3 + k] = x >= 32 ? 255 : (x == 0 && k == 0 ? 255 : 0);
    float out[3 * 32 * 32];
    CHECK_EQ_INT(sf_clip_preprocess(&c, rgb, 64, 48, out), 0);
    /* Resized to 43 x 32, cropped to the middle 32 columns (from x = 5). */
    for (int k = 0; k < 3; k++) {
        CHECK_NEAR(out[k * 1024 + 16 * 32 + 0], (0 - c.mean[k]) / c.std[k], 1e-5);
        CHECK_NEAR(out[k * 1024 + 16 * 32 + 31], (1 - c.mean[k]) / c.std[k], 1e-5);
    }
    CHECK_EQ_INT(sf_clip_preprocess(&c, rgb, 0, 48, out), SF_EINVAL);
    free(rgb);
}

TEST(save_load_and_bad_checkpoints) {
    sf_clip_t *m = small(), *n = NULL;
    CHECK(m);
    char dir[] = "/tmp/sf_clip_XXXXXX", p[128], q[128], err[256];
    CHECK(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/m.safetensors", dir);
    snprintf(q, sizeof q, "%s/bad.safetensors", dir);
    CHECK_EQ_INT(sf_clip_save(m, p), 0);
    CHECK_EQ_INT(sf_clip_load(p, NULL, "cpu", &n, err, sizeof err), 0);
    const int E = sf_clip_config(m)->embed_dim;
    float px[3 * 32 * 32], a[2 * 128], b[2 * 128];
    for (int i = 0; i < 3 * 32 * 32; i++) px[i] = sinf(i * 0.1f);
    int32_t t[8] = {98, 1, 2, 99, 0, 0, 0, 0};
    CHECK_EQ_INT(sf_clip_encode_image(m, px, 1, a), 0);
    CHECK_EQ_INT(sf_clip_encode_text(m, t, 1, 8, a + E), 0);
    CHECK_EQ_INT(sf_clip_encode_image(n, px, 1, b), 0);
    CHECK_EQ_INT(sf_clip_encode_text(n, t, 1, 8, b + E), 0);
    for (int k = 0; k < 2 * E; k++) CHECK_NEAR(a[k], b[k], 1e-6);
    sf_clip_free(&n);

    /* Truncated file. */
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len);
    CHECK(fread(buf, 1, len, f) == (size_t)len);
    fclose(f);
    f = fopen(q, "wb");
    fwrite(buf, 1, len / 2, f);
    fclose(f);
    CHECK_EQ_INT(sf_clip_load(q, NULL, "cpu", &n, err, sizeof err), SF_EFORMAT);
    CHECK(n == NULL);
    /* Header that lies: a length past the end. */
    memcpy(buf, &(uint64_t){(uint64_t)len * 4}, 8);
    f = fopen(q, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    CHECK_EQ_INT(sf_clip_load(q, NULL, "cpu", &n, err, sizeof err), SF_EFORMAT);
    free(buf);
    /* A config that disagrees with the file: wrong shapes. */
    sf_clip_config_t c = *sf_clip_config(m);
    c.text_width *= 2;
    c.text_mlp *= 2;
    int rc = sf_clip_load(p, &c, "cpu", &n, err, sizeof err);
    CHECK_EQ_INT(rc, SF_EFORMAT);
    CHECK(strstr(err, "shape"));
    /* Names the model does not know / missing names. */
    sf_st_writer_t *w;
    sf_st_writer_new(&w);
    float x = 1;
    int64_t one = 1;
    sf_st_writer_add(w, "vision_model.something_else", SF_ST_F32, 1, &one, &x, 4);
    CHECK_EQ_INT(sf_st_writer_save(w, q), 0);
    sf_st_writer_free(&w);
    c = *sf_clip_config(m);
    CHECK_EQ_INT(sf_clip_load(q, &c, "cpu", &n, err, sizeof err), SF_ENOTFOUND);
    if (!strstr(err, "no tensor")) fprintf(stderr, "%s\n", err);
    CHECK(strstr(err, "no tensor"));
    CHECK_EQ_INT(sf_clip_load(q, NULL, "cpu", &n, err, sizeof err), SF_EFORMAT);   /* no config */
    CHECK_EQ_INT(sf_clip_load("/nonexistent.safetensors", NULL, "cpu", &n, err, sizeof err) < 0, 1);
    c.vision_heads = 7;
    CHECK_EQ_INT(sf_clip_new(&c, "cpu", 1, &n, err, sizeof err), SF_EINVAL);
    CHECK_EQ_INT(sf_clip_new(sf_clip_config(m), "tpu:3", 1, &n, err, sizeof err), SF_EINVAL);
    unlink(p);
    unlink(q);
    rmdir(dir);
    sf_clip_free(&m);
}

TEST(contrastive_training_learns_pairs) {
    sf_clip_t *m = small();
    CHECK(m);
    /* 8 pairs: image i is a flat colour, text i is token i; the model must
     * learn to match them. */
    enum { B = 8, T = 4 };
    float px[B * 3 * 32 * 32];
    int32_t t[B * T];
    for (int i = 0; i < B; i++) {
        for (int k = 0; k < 3 * 1024; k++) px[i * 3 * 1024 + k] = ((i >> (k / 1024)) & 1) ? 1.0f : -1.0f + 0.2f * (i / 4);
        t[i * T] = 98, t[i * T + 1] = 10 + i, t[i * T + 2] = 99, t[i * T + 3] = 0;
    }
    float first = 0, loss = 0, acc = 0;
    for (int s = 0; s < 60; s++) {
        CHECK_EQ_INT(sf_clip_train_step(m, px, t, B, T, 1e-3f, &loss, &acc), 0);
        if (s == 0) first = loss;
    }
    CHECK(loss < first * 0.5);
    CHECK(acc > 0.99);
    CHECK(sf_clip_logit_scale(m) <= 100.0f + 1e-3f);
    CHECK_EQ_INT(sf_clip_train_step(m, px, t, 1, T, 1e-3f, &loss, &acc), SF_EINVAL);
    sf_clip_free(&m);
}

/* Tied rows: a caption with another caption's word added must come to embed like the
 * caption itself when tied to it, and not (as much) without the tie; more
 * tied rows than pairs is an error. */
static double tied_cos_after(int tied) {
    sf_clip_t *m = small();
    if (!m) return -2;
    enum { B = 8, T = 5 };
    float px[B * 3 * 32 * 32];
    int32_t t[2 * B * T];
    for (int i = 0; i < B; i++) {
        for (int k = 0; k < 3 * 1024; k++) px[i * 3 * 1024 + k] = ((i >> (k / 1024)) & 1) ? 1.0f : -1.0f + 0.2f * (i / 4);
        int32_t *a = t + i * T, *v = t + (B + i) * T;
        a[0] = 98, a[1] = 10 + i, a[2] = 99, a[3] = 0, a[4] = 0;
        v[0] = 98, v[1] = 10 + i, v[2] = 10 + (i + 1) % B, v[3] = 99, v[4] = 0; /* and a word of another caption */
    }
    float loss = 0, acc = 0;
    for (int s = 0; s < 60; s++)
        if (sf_clip_train_step_tied(m, px, t, B, T, tied ? B : 0, 1.0f, 1e-3f, &loss, &acc)) return -3;
    const int E = sf_clip_config(m)->embed_dim;
    float emb[2 * B * 512];
    if (E > 512 || sf_clip_encode_text(m, t, 2 * B, T, emb)) return -4;
    double cs = 0;
    for (int i = 0; i < B; i++)
        for (int k = 0; k < E; k++) cs += (double)emb[i * E + k] * emb[(B + i) * E + k];
    if (sf_clip_train_step_tied(m, px, t, B, T, B + 1, 1.0f, 1e-3f, &loss, &acc) != SF_EINVAL) cs = -5;
    sf_clip_free(&m);
    return cs / B;
}

TEST(tied_rows_embed_alike) {
    double with = tied_cos_after(1), without = tied_cos_after(0);
    printf("  mean 1 - cosine, caption / caption + another's word: tied %.4f, untied %.4f\n", 1 - with, 1 - without);
    CHECK(with > 0.99);
    CHECK(1 - with < 0.25 * (1 - without));
}

int main(void) {
    sf_ml_opts_t o = {.threads = 1, .quiet = 1};
    sf_ml_init(&o);
    SF_RUN(vit_b32_names_shapes_forward);
    SF_RUN(text_mask_and_eot_pooling);
    SF_RUN(preprocess_resize_crop_normalise);
    SF_RUN(save_load_and_bad_checkpoints);
    SF_RUN(contrastive_training_learns_pairs);
    SF_RUN(tied_rows_embed_alike);
    SF_DONE();
}
